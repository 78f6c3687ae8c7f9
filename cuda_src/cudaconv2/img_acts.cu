/*
 * img_acts.cu: gradient of convolutional and locally connected layers with respect to
 * their input images (the adjoint of filter_acts.cu), the kernels of 2012
 * cudaconv2/img_acts.cu.
 *
 *   img_acts_color                  1, 2 or 3 colours; a block does a 4x4 pixel region
 *   img_acts_mediumcolor            more colours that are not a multiple of 8 per group; a
 *                                   block does a 4x4 region for colorsPerThread colours
 *   conv_img_acts_manycolor         a multiple of 8 colours per group; a block does one
 *                                   pixel for B_Y*colorsPerThread colours (conv and local)
 *   img_acts_mediumcolor_sparse_rand, img_acts_manycolor_sparse_rand
 *                                   the same for sparse random connectivity
 *
 * Host side: cudaconvnet/backends/cuda/img_acts.py (dense) and sparse_acts.py (sparse
 * random). Reference: cudaconvnet/backends/numpy/img_acts.py; checked against it by
 * tests/test_cuda_conv.py (python -m pytest -m cuda).
 *
 * Shared by all kernels:
 *   - pixel (y, x) receives, from every module whose filter covers it and every filter f
 *     of its colour's group, filters[c, pixel's place in the module, f] * hidActs[f, module];
 *     the modules covering a pixel are a rectangle [modY0, modY1) x [modX0, modX1) of the
 *     module grid, computed once per block.
 *   - filters are walked 16 at a time: per step the block stages 16 filters' hidActs of
 *     the block's cases (coalesced: 32 consecutive cases per warp) and the 16 filters'
 *     weights for its pixels and colours in shared memory, then each thread accumulates
 *     its colours x imgsPerThread cases over the 16 filters. The weight rows are padded to
 *     17 floats against bank conflicts.
 *   - with scale the result is scaleTargets * targets + scaleOutputs * grad, otherwise
 *     scaleOutputs * grad (targets never read).
 *   - checkCaseBounds: numImages is not a multiple of the block's cases, so the last block
 *     checks each case against numImages.
 *   - conv (a template flag here, as in 2012): shared filters; otherwise the module's own
 *     filter bank is used.
 *   - the 4x4-region kernels stage hidActs with 256 threads as 8 rows x 32 cases, so
 *     16*imgsPerThread must be a multiple of 32.
 *
 * Faster variants, chosen by --conv-kernels (the 2012 kernels stay the default): unfold.cu
 * (a cuBLAS product into columns, folded back by kCol2Im) and winograd.cu (a stride-1 3x3
 * layer's input gradient as a forward convolution of hidActs with the filters turned by
 * 180 degrees, in Winograd's F(2x2,3x3)). Not written yet: kernels in the 2012 structure
 * with larger tiles than 16 filters per step and no idle threads outside a module.
 */
#include "cudaconv2/cudaconv2.cuh"

/*
 * Threads: 16 x 16. Each block computes the gradient of one 4x4 region of pixels, all
 * numColors colours, for 16*imgsPerThread cases.
 *
 * blockIdx.x: which batch of 16*imgsPerThread cases
 * blockIdx.y: which 4x4 region (row-major over DIVUP(imgSizeY,4) x DIVUP(imgSizeX,4))
 * threadIdx.x: case within the batch (and every 16th after it)
 * threadIdx.y: pixel within the region (row threadIdx.y / 4, column threadIdx.y % 4)
 *
 * hidActs:     (numFilters, numModulesY, numModulesX, numImages)
 * filters:     conv:  (numColors, filterPixels, numFilters)
 *              local: (numModulesY, numModulesX, numColors, filterPixels, numFilters)
 * targets:     (numColors, imgSizeY, imgSizeX, numImages)
 *
 * numColors is 1, 2 or 3 (no groups). numFilters must be a multiple of 16; numImages a
 * multiple of 16*imgsPerThread unless checkCaseBounds; imgsPerThread even.
 */
template <int imgsPerThread, int numColors, bool scale, bool checkCaseBounds, bool conv>
__global__ void img_acts_color(const float* hidActs, const float* filters, float* targets,
                               const int numModulesY, const int numModulesX,
                               const int numImages, const int numFilters,
                               const int filterSize, const int imgSizeY, const int imgSizeX,
                               const int paddingStart, const int moduleStride,
                               const float scaleTargets, const float scaleOutputs) {
    const int casesPerBlock = 16 * imgsPerThread;
    __shared__ float shFilters[numColors * 16][16 + 1];  // [colour, pixel][filter]
    __shared__ float shHidActs[16][casesPerBlock];       // [filter][case]

    const int numModules = numModulesY * numModulesX;
    const int filterPixels = filterSize * filterSize;
    const int imgPixels = imgSizeY * imgSizeX;

    const int firstCase = blockIdx.x * casesPerBlock;
    const int regionsX = DIVUP(imgSizeX, 4);
    const int regionTop = (blockIdx.y / regionsX) * 4;
    const int regionLeft = (blockIdx.y % regionsX) * 4;
    const int pxY = regionTop + threadIdx.y / 4;
    const int pxX = regionLeft + threadIdx.y % 4;
    const bool pxInImage = pxY < imgSizeY && pxX < imgSizeX;

    // hidActs staging: 8 rows (filters) x 32 cases per pass
    const int tid = threadIdx.y * 16 + threadIdx.x;
    const int hLoadY = tid / 32, hLoadX = tid % 32;

    hidActs += hLoadY * numModules * numImages + firstCase + hLoadX;
    filters += threadIdx.x;
    targets += (pxY * imgSizeX + pxX) * numImages + firstCase + threadIdx.x;

    float acc[numColors][imgsPerThread];
    #pragma unroll
    for (int c = 0; c < numColors; c++) {
        #pragma unroll
        for (int i = 0; i < imgsPerThread; i++) {
            acc[c][i] = 0;
        }
    }

    // the modules whose filters touch some pixel of the region
    const int modY0 = regionTop - paddingStart < filterSize ? 0
                    : 1 + (regionTop - paddingStart - filterSize) / moduleStride;
    const int modY1 = MIN(numModulesY, 1 + (regionTop + 3 - paddingStart) / moduleStride);
    const int modX0 = regionLeft - paddingStart < filterSize ? 0
                    : 1 + (regionLeft - paddingStart - filterSize) / moduleStride;
    const int modX1 = MIN(numModulesX, 1 + (regionLeft + 3 - paddingStart) / moduleStride);

    for (int my = modY0; my < modY1; my++) {
        const int offY = pxY - (paddingStart + my * moduleStride);
        for (int mx = modX0; mx < modX1; mx++) {
            const int mod = my * numModulesX + mx;
            const int offX = pxX - (paddingStart + mx * moduleStride);
            const bool pxInModule = offY >= 0 && offY < filterSize
                                   && offX >= 0 && offX < filterSize;
            const int filterPx = offY * filterSize + offX;

            for (int f = 0; f < numFilters; f += 16) {
                const float* hSrc = hidActs + (f * numModules + mod) * numImages;
                #pragma unroll
                for (int i = 0; i < casesPerBlock; i += 32) {
                    const bool caseOk = !checkCaseBounds || firstCase + i + hLoadX < numImages;
                    #pragma unroll
                    for (int j = 0; j < 16; j += 8) {
                        shHidActs[hLoadY + j][hLoadX + i] = caseOk ? hSrc[j * numModules * numImages + i] : 0;
                    }
                }
                // the 16 threads of a pixel fetch its weights for filters f .. f+15
                if (pxInImage && pxInModule) {
                    const float* fSrc = conv ? filters + filterPx * numFilters + f
                                             : filters + (mod * numColors * filterPixels + filterPx) * numFilters + f;
                    #pragma unroll
                    for (int c = 0; c < numColors; c++) {
                        shFilters[c * 16 + threadIdx.y][threadIdx.x] = fSrc[c * filterPixels * numFilters];
                    }
                }
                __syncthreads();

                if (pxInImage && pxInModule) {
                    #pragma unroll
                    for (int c = 0; c < numColors; c++) {
                        #pragma unroll
                        for (int w = 0; w < 16; w++) {
                            #pragma unroll
                            for (int i = 0; i < imgsPerThread; i++) {
                                acc[c][i] += shFilters[c * 16 + threadIdx.y][w] * shHidActs[w][threadIdx.x + i * 16];
                            }
                        }
                    }
                }
                __syncthreads();
            }
        }
    }

    if (pxInImage) {
        #pragma unroll
        for (int i = 0; i < imgsPerThread; i++) {
            if (!checkCaseBounds || firstCase + threadIdx.x + i * 16 < numImages) {
                #pragma unroll
                for (int c = 0; c < numColors; c++) {
                    float* t = targets + c * imgPixels * numImages + i * 16;
                    *t = scale ? scaleTargets * *t + scaleOutputs * acc[c][i] : scaleOutputs * acc[c][i];
                }
            }
        }
    }
}

/*
 * Threads: 16 x 16. Each block computes the gradient of one 4x4 region of pixels for
 * colorsPerThread consecutive colours (all in one group) and 16*imgsPerThread cases.
 *
 * blockIdx.x: which batch of 16*imgsPerThread cases, and which batch of colorsPerThread
 *             colours (blockIdx.x = colourBatch * DIVUP(numImages, 16*imgsPerThread) + caseBatch)
 * blockIdx.y: which 4x4 region (row-major over DIVUP(imgSizeY,4) x DIVUP(imgSizeX,4))
 * threadIdx.x: case within the batch (and every 16th after it)
 * threadIdx.y: pixel within the region (row threadIdx.y / 4, column threadIdx.y % 4)
 *
 * hidActs:     (numFilters, numModulesY, numModulesX, numImages)
 * filters:     conv:  (numFilterColors, filterPixels, numFilters)
 *              local: (numModulesY, numModulesX, numFilterColors, filterPixels, numFilters)
 * targets:     (numImgColors, imgSizeY, imgSizeX, numImages)
 *
 * numFilterColors = numImgColors / numGroups must be a multiple of colorsPerThread;
 * numFilters/numGroups a multiple of 16; numImages a multiple of 16*imgsPerThread unless
 * checkCaseBounds; imgsPerThread even. For 4 to 16 colours.
 */
template <int imgsPerThread, int colorsPerThread, bool scale, bool checkCaseBounds, bool conv>
__global__ void img_acts_mediumcolor(const float* hidActs, const float* filters, float* targets,
                                     const int numModulesY, const int numModulesX,
                                     const int numImages, const int numFilters,
                                     const int filterSize, const int imgSizeY, const int imgSizeX,
                                     const int paddingStart, const int moduleStride,
                                     const int numImgColors, const int numGroups,
                                     const float scaleTargets, const float scaleOutputs) {
    const int casesPerBlock = 16 * imgsPerThread;
    __shared__ float shFilters[colorsPerThread * 16][16 + 1];
    __shared__ float shHidActs[16][casesPerBlock];

    const int numModules = numModulesY * numModulesX;
    const int filterPixels = filterSize * filterSize;
    const int imgPixels = imgSizeY * imgSizeX;
    const int numFilterColors = numImgColors / numGroups;
    const int numFiltersPerGroup = numFilters / numGroups;

    const int numCaseBlocks = DIVUP(numImages, casesPerBlock);
    const int firstCase = (blockIdx.x % numCaseBlocks) * casesPerBlock;
    const int firstImgColor = (blockIdx.x / numCaseBlocks) * colorsPerThread;  // first image colour
    const int groupIdx = firstImgColor / numFilterColors;
    const int firstFilterColor = firstImgColor % numFilterColors;              // its place in the group
    const int firstFilter = groupIdx * numFiltersPerGroup;

    const int regionsX = DIVUP(imgSizeX, 4);
    const int regionTop = (blockIdx.y / regionsX) * 4;
    const int regionLeft = (blockIdx.y % regionsX) * 4;
    const int pxY = regionTop + threadIdx.y / 4;
    const int pxX = regionLeft + threadIdx.y % 4;
    const bool pxInImage = pxY < imgSizeY && pxX < imgSizeX;

    const int tid = threadIdx.y * 16 + threadIdx.x;
    const int hLoadY = tid / 32, hLoadX = tid % 32;

    hidActs += (firstFilter + hLoadY) * numModules * numImages + firstCase + hLoadX;
    filters += firstFilter + firstFilterColor * filterPixels * numFilters + threadIdx.x;
    targets += (firstImgColor * imgPixels + pxY * imgSizeX + pxX) * numImages + firstCase + threadIdx.x;

    float acc[colorsPerThread][imgsPerThread];
    #pragma unroll
    for (int c = 0; c < colorsPerThread; c++) {
        #pragma unroll
        for (int i = 0; i < imgsPerThread; i++) {
            acc[c][i] = 0;
        }
    }

    const int modY0 = regionTop - paddingStart < filterSize ? 0
                    : 1 + (regionTop - paddingStart - filterSize) / moduleStride;
    const int modY1 = MIN(numModulesY, 1 + (regionTop + 3 - paddingStart) / moduleStride);
    const int modX0 = regionLeft - paddingStart < filterSize ? 0
                    : 1 + (regionLeft - paddingStart - filterSize) / moduleStride;
    const int modX1 = MIN(numModulesX, 1 + (regionLeft + 3 - paddingStart) / moduleStride);

    for (int my = modY0; my < modY1; my++) {
        const int offY = pxY - (paddingStart + my * moduleStride);
        for (int mx = modX0; mx < modX1; mx++) {
            const int mod = my * numModulesX + mx;
            const int offX = pxX - (paddingStart + mx * moduleStride);
            const bool pxInModule = offY >= 0 && offY < filterSize
                                   && offX >= 0 && offX < filterSize;
            const int filterPx = offY * filterSize + offX;

            for (int f = 0; f < numFiltersPerGroup; f += 16) {
                const float* hSrc = hidActs + (f * numModules + mod) * numImages;
                #pragma unroll
                for (int i = 0; i < casesPerBlock; i += 32) {
                    const bool caseOk = !checkCaseBounds || firstCase + i + hLoadX < numImages;
                    #pragma unroll
                    for (int j = 0; j < 16; j += 8) {
                        shHidActs[hLoadY + j][hLoadX + i] = caseOk ? hSrc[j * numModules * numImages + i] : 0;
                    }
                }
                if (pxInImage && pxInModule) {
                    const float* fSrc = conv ? filters + filterPx * numFilters + f
                                             : filters + (mod * numFilterColors * filterPixels + filterPx) * numFilters + f;
                    #pragma unroll
                    for (int c = 0; c < colorsPerThread; c++) {
                        shFilters[c * 16 + threadIdx.y][threadIdx.x] = fSrc[c * filterPixels * numFilters];
                    }
                }
                __syncthreads();

                if (pxInImage && pxInModule) {
                    #pragma unroll
                    for (int c = 0; c < colorsPerThread; c++) {
                        #pragma unroll
                        for (int w = 0; w < 16; w++) {
                            #pragma unroll
                            for (int i = 0; i < imgsPerThread; i++) {
                                acc[c][i] += shFilters[c * 16 + threadIdx.y][w] * shHidActs[w][threadIdx.x + i * 16];
                            }
                        }
                    }
                }
                __syncthreads();
            }
        }
    }

    if (pxInImage) {
        #pragma unroll
        for (int i = 0; i < imgsPerThread; i++) {
            if (!checkCaseBounds || firstCase + threadIdx.x + i * 16 < numImages) {
                #pragma unroll
                for (int c = 0; c < colorsPerThread; c++) {
                    float* t = targets + c * imgPixels * numImages + i * 16;
                    *t = scale ? scaleTargets * *t + scaleOutputs * acc[c][i] : scaleOutputs * acc[c][i];
                }
            }
        }
    }
}

/*
 * Threads: B_X x B_Y. Each block computes the gradient of one pixel for
 * B_Y*colorsPerThread consecutive colours (all in one group) and B_X*imgsPerThread cases.
 * Used for conv and local layers alike (the conv flag picks the filter layout).
 *
 * blockIdx.x: which batch of B_X*imgsPerThread cases, and which batch of
 *             B_Y*colorsPerThread colours
 *             (blockIdx.x = colourBatch * DIVUP(numImages, B_X*imgsPerThread) + caseBatch)
 * blockIdx.y: which pixel (y * imgSizeX + x)
 * threadIdx.x: case within the batch (and every B_X-th after it)
 * threadIdx.y: colour within the batch (and every B_Y-th after it)
 *
 * hidActs:     (numFilters, numModulesY, numModulesX, numImages)
 * filters:     conv:  (numFilterColors, filterPixels, numFilters)
 *              local: (numModulesY, numModulesX, numFilterColors, filterPixels, numFilters)
 * targets:     (numImgColors, imgSizeY, imgSizeX, numImages)
 *
 * numFilterColors must be a multiple of B_Y*colorsPerThread; numFilters/numGroups a
 * multiple of 16; numImages a multiple of B_X*imgsPerThread unless checkCaseBounds;
 * B_X*imgsPerThread and B_X*B_Y multiples of 32. For 8 or more colours per group.
 */
template <int B_Y, int B_X, int imgsPerThread, int colorsPerThread, bool scale, bool checkCaseBounds, bool conv>
__global__ void conv_img_acts_manycolor(const float* hidActs, const float* filters, float* targets,
                                        const int numModulesY, const int numModulesX,
                                        const int numImages, const int numFilters,
                                        const int filterSize, const int imgSizeY, const int imgSizeX,
                                        const int paddingStart, const int moduleStride,
                                        const int numImgColors, const int numGroups,
                                        const float scaleTargets, const float scaleOutputs) {
    const int casesPerBlock = B_X * imgsPerThread;
    const int colorsPerBlock = B_Y * colorsPerThread;
    __shared__ float shFilters[colorsPerBlock][16 + 1];  // [colour][filter]
    __shared__ float shHidActs[16][casesPerBlock];       // [filter][case]

    const int numModules = numModulesY * numModulesX;
    const int filterPixels = filterSize * filterSize;
    const int imgPixels = imgSizeY * imgSizeX;
    const int numFilterColors = numImgColors / numGroups;
    const int numFiltersPerGroup = numFilters / numGroups;

    const int numCaseBlocks = DIVUP(numImages, casesPerBlock);
    const int firstCase = (blockIdx.x % numCaseBlocks) * casesPerBlock;
    const int firstImgColor = (blockIdx.x / numCaseBlocks) * colorsPerBlock;
    const int groupIdx = firstImgColor / numFilterColors;
    const int firstFilterColor = firstImgColor % numFilterColors;
    const int firstFilter = groupIdx * numFiltersPerGroup;

    const int pixel = blockIdx.y;
    const int pxY = pixel / imgSizeX;
    const int pxX = pixel % imgSizeX;

    // hidActs staging: (B_X*B_Y)/32 rows x 32 cases per pass; weight staging: 16 filters
    // wide, (B_X*B_Y)/16 colours per pass
    const int tid = threadIdx.y * B_X + threadIdx.x;
    const int hLoadY = tid / 32, hLoadX = tid % 32;
    const int hRowsPerPass = (B_X * B_Y) / 32;
    const int fLoadY = tid / 16, fLoadX = tid % 16;
    const int fRowsPerPass = (B_X * B_Y) / 16;

    hidActs += (firstFilter + hLoadY) * numModules * numImages + firstCase + hLoadX;
    filters += firstFilter + (firstFilterColor + fLoadY) * filterPixels * numFilters + fLoadX;
    targets += ((firstImgColor + threadIdx.y) * imgPixels + pixel) * numImages + firstCase + threadIdx.x;

    float acc[colorsPerThread][imgsPerThread];
    #pragma unroll
    for (int c = 0; c < colorsPerThread; c++) {
        #pragma unroll
        for (int i = 0; i < imgsPerThread; i++) {
            acc[c][i] = 0;
        }
    }

    // the modules whose filters cover this pixel
    const int modY0 = pxY - paddingStart < filterSize ? 0
                    : 1 + (pxY - paddingStart - filterSize) / moduleStride;
    const int modY1 = MIN(numModulesY, 1 + (pxY - paddingStart) / moduleStride);
    const int modX0 = pxX - paddingStart < filterSize ? 0
                    : 1 + (pxX - paddingStart - filterSize) / moduleStride;
    const int modX1 = MIN(numModulesX, 1 + (pxX - paddingStart) / moduleStride);

    for (int my = modY0; my < modY1; my++) {
        const int offY = pxY - (paddingStart + my * moduleStride);
        for (int mx = modX0; mx < modX1; mx++) {
            const int mod = my * numModulesX + mx;
            const int offX = pxX - (paddingStart + mx * moduleStride);
            const int filterPx = offY * filterSize + offX;

            for (int f = 0; f < numFiltersPerGroup; f += 16) {
                const float* hSrc = hidActs + (f * numModules + mod) * numImages;
                #pragma unroll
                for (int i = 0; i < casesPerBlock; i += 32) {
                    const bool caseOk = !checkCaseBounds || firstCase + i + hLoadX < numImages;
                    #pragma unroll
                    for (int j = 0; j < 16; j += hRowsPerPass) {
                        if (16 % hRowsPerPass == 0 || j + hLoadY < 16) {
                            shHidActs[hLoadY + j][hLoadX + i] = caseOk ? hSrc[j * numModules * numImages + i] : 0;
                        }
                    }
                }
                const float* fSrc = conv ? filters + filterPx * numFilters + f
                                         : filters + (mod * numFilterColors * filterPixels + filterPx) * numFilters + f;
                #pragma unroll
                for (int r = 0; r < colorsPerBlock; r += fRowsPerPass) {
                    if (colorsPerBlock % fRowsPerPass == 0 || r + fLoadY < colorsPerBlock) {
                        shFilters[r + fLoadY][fLoadX] = fSrc[r * filterPixels * numFilters];
                    }
                }
                __syncthreads();

                #pragma unroll
                for (int c = 0; c < colorsPerThread; c++) {
                    #pragma unroll
                    for (int w = 0; w < 16; w++) {
                        #pragma unroll
                        for (int i = 0; i < imgsPerThread; i++) {
                            acc[c][i] += shFilters[c * B_Y + threadIdx.y][w] * shHidActs[w][threadIdx.x + i * B_X];
                        }
                    }
                }
                __syncthreads();
            }
        }
    }

    #pragma unroll
    for (int i = 0; i < imgsPerThread; i++) {
        if (!checkCaseBounds || firstCase + threadIdx.x + i * B_X < numImages) {
            #pragma unroll
            for (int c = 0; c < colorsPerThread; c++) {
                float* t = targets + c * B_Y * imgPixels * numImages + i * B_X;
                *t = scale ? scaleTargets * *t + scaleOutputs * acc[c][i] : scaleOutputs * acc[c][i];
            }
        }
    }
}

/*
 * Threads: 16 x 16. As img_acts_mediumcolor, for sparse random connectivity: filter colour
 * c of group g is image colour colorIndices[g*numFilterColors + c], and each image colour
 * is seen by overSample = numGroups*numFilterColors/numImgColors groups, one per "sample";
 * sample s (groups [s*G/overSample, (s+1)*G/overSample)) writes its own gradient block.
 *
 * blockIdx.x: which batch of 16*imgsPerThread cases, and which batch of colorsPerThread
 *             colours of the sample's numImgColors (colourBatch * caseBatches + caseBatch)
 * blockIdx.y: which sample, and which 4x4 region (sample * regions + region)
 * threadIdx.x: case within the batch (and every 16th after it)
 * threadIdx.y: pixel within the region (row threadIdx.y / 4, column threadIdx.y % 4)
 *
 * hidActs:      (numFilters, numModulesY, numModulesX, numImages)
 * filters:      conv:  (numFilterColors, filterPixels, numFilters)
 *               local: (numModulesY, numModulesX, numFilterColors, filterPixels, numFilters)
 * targets:      (overSample, numImgColors, imgSizeY, imgSizeX, numImages)
 * colorIndices: (numGroups, numFilterColors); within a sample each image colour appears once
 *
 * numFilterColors must be a multiple of colorsPerThread; numFilters/numGroups a multiple
 * of 16; numImages a multiple of 16*imgsPerThread unless checkCaseBounds.
 */
template <int imgsPerThread, int colorsPerThread, bool scale, bool checkCaseBounds, bool conv>
__global__ void img_acts_mediumcolor_sparse_rand(const float* hidActs, const float* filters, float* targets,
                                                 const int* colorIndices,
                                                 const int numModulesY, const int numModulesX,
                                                 const int numImages, const int numFilters,
                                                 const int filterSize, const int imgSizeY, const int imgSizeX,
                                                 const int paddingStart, const int moduleStride,
                                                 const int numImgColors, const int numFilterColors,
                                                 const int numGroups,
                                                 const float scaleTargets, const float scaleOutputs) {
    const int casesPerBlock = 16 * imgsPerThread;
    __shared__ float shFilters[colorsPerThread * 16][16 + 1];
    __shared__ float shHidActs[16][casesPerBlock];
    __shared__ int shColorOffsets[colorsPerThread];  // target offsets of the block's colours

    const int numModules = numModulesY * numModulesX;
    const int filterPixels = filterSize * filterSize;
    const int imgPixels = imgSizeY * imgSizeX;
    const int numFiltersPerGroup = numFilters / numGroups;

    const int numCaseBlocks = DIVUP(numImages, casesPerBlock);
    const int firstCase = (blockIdx.x % numCaseBlocks) * casesPerBlock;
    const int firstImgColor = (blockIdx.x / numCaseBlocks) * colorsPerThread;  // colour within the sample

    const int regionsX = DIVUP(imgSizeX, 4);
    const int regions = DIVUP(imgSizeY, 4) * regionsX;
    const int overSample = gridDim.y / regions;
    const int sampleIdx = blockIdx.y / regions;
    const int regionIdx = blockIdx.y % regions;
    const int sampleGroups = numGroups / overSample;
    const int groupIdx = firstImgColor / numFilterColors + sampleIdx * sampleGroups;
    const int firstFilterColor = firstImgColor % numFilterColors;
    const int firstFilter = groupIdx * numFiltersPerGroup;

    const int regionTop = (regionIdx / regionsX) * 4;
    const int regionLeft = (regionIdx % regionsX) * 4;
    const int pxY = regionTop + threadIdx.y / 4;
    const int pxX = regionLeft + threadIdx.y % 4;
    const bool pxInImage = pxY < imgSizeY && pxX < imgSizeX;

    const int tid = threadIdx.y * 16 + threadIdx.x;
    const int hLoadY = tid / 32, hLoadX = tid % 32;

    hidActs += (firstFilter + hLoadY) * numModules * numImages + firstCase + hLoadX;
    filters += firstFilter + firstFilterColor * filterPixels * numFilters + threadIdx.x;
    targets += (sampleIdx * numImgColors * imgPixels + pxY * imgSizeX + pxX) * numImages
             + firstCase + threadIdx.x;

    if (tid < colorsPerThread) {
        shColorOffsets[tid] = colorIndices[groupIdx * numFilterColors + firstFilterColor + tid] * imgPixels * numImages;
    }
    __syncthreads();

    float acc[colorsPerThread][imgsPerThread];
    #pragma unroll
    for (int c = 0; c < colorsPerThread; c++) {
        #pragma unroll
        for (int i = 0; i < imgsPerThread; i++) {
            acc[c][i] = 0;
        }
    }

    const int modY0 = regionTop - paddingStart < filterSize ? 0
                    : 1 + (regionTop - paddingStart - filterSize) / moduleStride;
    const int modY1 = MIN(numModulesY, 1 + (regionTop + 3 - paddingStart) / moduleStride);
    const int modX0 = regionLeft - paddingStart < filterSize ? 0
                    : 1 + (regionLeft - paddingStart - filterSize) / moduleStride;
    const int modX1 = MIN(numModulesX, 1 + (regionLeft + 3 - paddingStart) / moduleStride);

    for (int my = modY0; my < modY1; my++) {
        const int offY = pxY - (paddingStart + my * moduleStride);
        for (int mx = modX0; mx < modX1; mx++) {
            const int mod = my * numModulesX + mx;
            const int offX = pxX - (paddingStart + mx * moduleStride);
            const bool pxInModule = offY >= 0 && offY < filterSize
                                   && offX >= 0 && offX < filterSize;
            const int filterPx = offY * filterSize + offX;

            for (int f = 0; f < numFiltersPerGroup; f += 16) {
                const float* hSrc = hidActs + (f * numModules + mod) * numImages;
                #pragma unroll
                for (int i = 0; i < casesPerBlock; i += 32) {
                    const bool caseOk = !checkCaseBounds || firstCase + i + hLoadX < numImages;
                    #pragma unroll
                    for (int j = 0; j < 16; j += 8) {
                        shHidActs[hLoadY + j][hLoadX + i] = caseOk ? hSrc[j * numModules * numImages + i] : 0;
                    }
                }
                if (pxInImage && pxInModule) {
                    const float* fSrc = conv ? filters + filterPx * numFilters + f
                                             : filters + (mod * numFilterColors * filterPixels + filterPx) * numFilters + f;
                    #pragma unroll
                    for (int c = 0; c < colorsPerThread; c++) {
                        shFilters[c * 16 + threadIdx.y][threadIdx.x] = fSrc[c * filterPixels * numFilters];
                    }
                }
                __syncthreads();

                if (pxInImage && pxInModule) {
                    #pragma unroll
                    for (int c = 0; c < colorsPerThread; c++) {
                        #pragma unroll
                        for (int w = 0; w < 16; w++) {
                            #pragma unroll
                            for (int i = 0; i < imgsPerThread; i++) {
                                acc[c][i] += shFilters[c * 16 + threadIdx.y][w] * shHidActs[w][threadIdx.x + i * 16];
                            }
                        }
                    }
                }
                __syncthreads();
            }
        }
    }

    if (pxInImage) {
        #pragma unroll
        for (int i = 0; i < imgsPerThread; i++) {
            if (!checkCaseBounds || firstCase + threadIdx.x + i * 16 < numImages) {
                #pragma unroll
                for (int c = 0; c < colorsPerThread; c++) {
                    float* t = targets + shColorOffsets[c] + i * 16;
                    *t = scale ? scaleTargets * *t + scaleOutputs * acc[c][i] : scaleOutputs * acc[c][i];
                }
            }
        }
    }
}

/*
 * Threads: B_X x B_Y. As conv_img_acts_manycolor, for sparse random connectivity (see
 * img_acts_mediumcolor_sparse_rand for the samples).
 *
 * blockIdx.x: which batch of B_X*imgsPerThread cases, and which batch of
 *             B_Y*colorsPerThread colours of the sample's numImgColors
 * blockIdx.y: which sample, and which pixel (sample * imgPixels + y * imgSizeX + x)
 * threadIdx.x: case within the batch (and every B_X-th after it)
 * threadIdx.y: colour within the batch (and every B_Y-th after it)
 *
 * hidActs:      (numFilters, numModulesY, numModulesX, numImages)
 * filters:      conv:  (numFilterColors, filterPixels, numFilters)
 *               local: (numModulesY, numModulesX, numFilterColors, filterPixels, numFilters)
 * targets:      (overSample, numImgColors, imgSizeY, imgSizeX, numImages)
 * colorIndices: (numGroups, numFilterColors); within a sample each image colour appears once
 *
 * numFilterColors must be a multiple of B_Y*colorsPerThread; numFilters/numGroups a
 * multiple of 16; numImages a multiple of B_X*imgsPerThread unless checkCaseBounds;
 * B_Y*colorsPerThread <= B_X*B_Y.
 */
template <int B_Y, int B_X, int imgsPerThread, int colorsPerThread, bool scale, bool checkCaseBounds, bool conv>
__global__ void img_acts_manycolor_sparse_rand(const float* hidActs, const float* filters, float* targets,
                                               const int* colorIndices,
                                               const int numModulesY, const int numModulesX,
                                               const int numImages, const int numFilters,
                                               const int filterSize, const int imgSizeY, const int imgSizeX,
                                               const int paddingStart, const int moduleStride,
                                               const int numImgColors, const int numFilterColors,
                                               const int numGroups,
                                               const float scaleTargets, const float scaleOutputs) {
    const int casesPerBlock = B_X * imgsPerThread;
    const int colorsPerBlock = B_Y * colorsPerThread;
    __shared__ float shFilters[colorsPerBlock][16 + 1];
    __shared__ float shHidActs[16][casesPerBlock];
    __shared__ int shColorOffsets[colorsPerBlock];

    const int numModules = numModulesY * numModulesX;
    const int filterPixels = filterSize * filterSize;
    const int imgPixels = imgSizeY * imgSizeX;
    const int numFiltersPerGroup = numFilters / numGroups;

    const int numCaseBlocks = DIVUP(numImages, casesPerBlock);
    const int firstCase = (blockIdx.x % numCaseBlocks) * casesPerBlock;
    const int firstImgColor = (blockIdx.x / numCaseBlocks) * colorsPerBlock;

    const int overSample = gridDim.y / imgPixels;
    const int sampleIdx = blockIdx.y / imgPixels;
    const int pixel = blockIdx.y % imgPixels;
    const int pxY = pixel / imgSizeX;
    const int pxX = pixel % imgSizeX;
    const int sampleGroups = numGroups / overSample;
    const int groupIdx = firstImgColor / numFilterColors + sampleIdx * sampleGroups;
    const int firstFilterColor = firstImgColor % numFilterColors;
    const int firstFilter = groupIdx * numFiltersPerGroup;

    const int tid = threadIdx.y * B_X + threadIdx.x;
    const int hLoadY = tid / 32, hLoadX = tid % 32;
    const int hRowsPerPass = (B_X * B_Y) / 32;
    const int fLoadY = tid / 16, fLoadX = tid % 16;
    const int fRowsPerPass = (B_X * B_Y) / 16;

    hidActs += (firstFilter + hLoadY) * numModules * numImages + firstCase + hLoadX;
    filters += firstFilter + (firstFilterColor + fLoadY) * filterPixels * numFilters + fLoadX;
    targets += (sampleIdx * numImgColors * imgPixels + pixel) * numImages + firstCase + threadIdx.x;

    if (tid < colorsPerBlock) {
        shColorOffsets[tid] = colorIndices[groupIdx * numFilterColors + firstFilterColor + tid] * imgPixels * numImages;
    }
    __syncthreads();

    float acc[colorsPerThread][imgsPerThread];
    #pragma unroll
    for (int c = 0; c < colorsPerThread; c++) {
        #pragma unroll
        for (int i = 0; i < imgsPerThread; i++) {
            acc[c][i] = 0;
        }
    }

    const int modY0 = pxY - paddingStart < filterSize ? 0
                    : 1 + (pxY - paddingStart - filterSize) / moduleStride;
    const int modY1 = MIN(numModulesY, 1 + (pxY - paddingStart) / moduleStride);
    const int modX0 = pxX - paddingStart < filterSize ? 0
                    : 1 + (pxX - paddingStart - filterSize) / moduleStride;
    const int modX1 = MIN(numModulesX, 1 + (pxX - paddingStart) / moduleStride);

    for (int my = modY0; my < modY1; my++) {
        const int offY = pxY - (paddingStart + my * moduleStride);
        for (int mx = modX0; mx < modX1; mx++) {
            const int mod = my * numModulesX + mx;
            const int offX = pxX - (paddingStart + mx * moduleStride);
            const int filterPx = offY * filterSize + offX;

            for (int f = 0; f < numFiltersPerGroup; f += 16) {
                const float* hSrc = hidActs + (f * numModules + mod) * numImages;
                #pragma unroll
                for (int i = 0; i < casesPerBlock; i += 32) {
                    const bool caseOk = !checkCaseBounds || firstCase + i + hLoadX < numImages;
                    #pragma unroll
                    for (int j = 0; j < 16; j += hRowsPerPass) {
                        if (16 % hRowsPerPass == 0 || j + hLoadY < 16) {
                            shHidActs[hLoadY + j][hLoadX + i] = caseOk ? hSrc[j * numModules * numImages + i] : 0;
                        }
                    }
                }
                const float* fSrc = conv ? filters + filterPx * numFilters + f
                                         : filters + (mod * numFilterColors * filterPixels + filterPx) * numFilters + f;
                #pragma unroll
                for (int r = 0; r < colorsPerBlock; r += fRowsPerPass) {
                    if (colorsPerBlock % fRowsPerPass == 0 || r + fLoadY < colorsPerBlock) {
                        shFilters[r + fLoadY][fLoadX] = fSrc[r * filterPixels * numFilters];
                    }
                }
                __syncthreads();

                #pragma unroll
                for (int c = 0; c < colorsPerThread; c++) {
                    #pragma unroll
                    for (int w = 0; w < 16; w++) {
                        #pragma unroll
                        for (int i = 0; i < imgsPerThread; i++) {
                            acc[c][i] += shFilters[c * B_Y + threadIdx.y][w] * shHidActs[w][threadIdx.x + i * B_X];
                        }
                    }
                }
                __syncthreads();
            }
        }
    }

    #pragma unroll
    for (int i = 0; i < imgsPerThread; i++) {
        if (!checkCaseBounds || firstCase + threadIdx.x + i * B_X < numImages) {
            #pragma unroll
            for (int c = 0; c < colorsPerThread; c++) {
                float* t = targets + shColorOffsets[c * B_Y + threadIdx.y] + i * B_X;
                *t = scale ? scaleTargets * *t + scaleOutputs * acc[c][i] : scaleOutputs * acc[c][i];
            }
        }
    }
}
