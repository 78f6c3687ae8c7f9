/*
 * filter_acts.cu: forward pass of convolutional (shared filters) and locally connected
 * (unshared filters) layers, the kernels of 2012 cudaconv2/filter_acts.cu.
 *
 *   filterActs_YxX_color          1, 2 or 3 image colours, no groups
 *   filterActs_YxX_sparse         more colours, optionally in groups; colours staged
 *                                 colorCache at a time
 *   filterActs_YxX_sparse_random  the same for sparse random connectivity: group g sees
 *                                 the colours colorIndices[g*numFilterColors ...]
 *
 * Host side (which kernel, which template arguments, grid and block):
 * cudaconvnet/backends/cuda/filter_acts.py (dense) and sparse_acts.py (sparse random).
 * Reference: cudaconvnet/backends/numpy/filter_acts.py; checked against it by
 * tests/test_cuda_conv.py (python -m pytest -m cuda). Compiled by
 * cudaconvnet/backends/cuda/loader.py, which instantiates the templates it is asked for.
 *
 * Shared by all three kernels:
 *   - a module is one position of the filter on the image: module (my, mx) covers image
 *     rows paddingStart + my*moduleStride + [0, filterSize) and the same for columns;
 *     pixels outside the image (padding, or a last module hanging past the edge) are zeros.
 *   - the block is B_X x B_Y threads. threadIdx.x picks the image (case), threadIdx.y the
 *     filter; a thread accumulates filtersPerThread filters (threadIdx.y + f*B_Y) times
 *     imgsPerThread images (threadIdx.x + i*B_X).
 *   - the filter pixels are walked B_Y at a time: per step every thread stages one pixel of
 *     its images (row threadIdx.y of the step) and the block stages the same B_Y pixels of
 *     its B_Y*filtersPerThread filters, both for every colour of the stage, in shared
 *     memory; then each thread does its filtersPerThread x imgsPerThread dot products over
 *     the B_Y*colours staged rows.
 *   - with scale the result is scaleTargets * targets + scaleOutputs * acts, otherwise
 *     scaleOutputs * acts (targets are then never read).
 *   - checkImgBounds: numImages is not a multiple of B_X*imgsPerThread, so the last block
 *     of images checks each case against numImages.
 *   - conv (a runtime flag, as in 2012): shared filters; otherwise each module has its own
 *     (local layer) and the filter pointer moves to the module's bank.
 *
 * Faster variants live in their own files, chosen by --conv-kernels, the 2012 kernels
 * staying the default: unfold.cu (im2col + cuBLAS products, every pass) and winograd.cu
 * (Winograd F(2x2,3x3) for 3x3 stride-1 fprop and input gradients). Not written yet:
 * direct kernels in the 2012 structure tuned for today's GPUs (wider register tiles than
 * the 2012 thread's 8 filters x 4 images, 128-bit loads of the contiguous cases, more
 * colours per stage than colorCache 2, double-buffered staging with cp.async on sm_80+).
 */
#include "cudaconv2/cudaconv2.cuh"

/*
 * Threads: B_X x B_Y. One block = one module x B_Y*filtersPerThread filters x
 * B_X*imgsPerThread images: it produces those filters' outputs at that module.
 *
 * blockIdx.x: which batch of B_X*imgsPerThread images
 * blockIdx.y: which module, and which batch of B_Y*filtersPerThread filters in it
 *             (blockIdx.y = module * (numFilters / (B_Y*filtersPerThread)) + batch)
 * threadIdx.x: image within the batch (and every B_X-th after it)
 * threadIdx.y: filter within the batch (and every B_Y-th after it)
 *
 * images:      (numColors, imgSizeY, imgSizeX, numImages), rows imgStride apart
 * filters:     conv:  (numColors, filterPixels, numFilters)
 *              local: (numModules, numColors, filterPixels, numFilters)
 * targets:     (numFilters, numModulesY, numModulesX, numImages)
 *
 * numColors is 1, 2 or 3, all staged at once (shared memory: 2 * B_Y*numColors rows).
 * numFilters must be a multiple of B_Y*filtersPerThread; numImages a multiple of
 * B_X*imgsPerThread unless checkImgBounds. B_X must be a multiple of filtersPerThread
 * (the filter staging assumes it).
 */
template <int B_Y, int B_X, int imgsPerThread, int filtersPerThread, int numColors,
          bool scale, bool checkImgBounds>
__global__ void filterActs_YxX_color(const float* images, const float* filters, float* targets,
                                     const int numImages, const int numFilters,
                                     const int imgSizeY, const int imgSizeX, const int filterSize,
                                     const int paddingStart, const int moduleStride,
                                     const int numModulesY, const int numModulesX,
                                     const int imgStride,
                                     const float scaleTargets, const float scaleOutputs,
                                     const bool conv) {
    const int filtersPerBlock = B_Y * filtersPerThread;
    const int stageRows = B_Y * numColors;  // staged (colour, pixel) rows per step
    __shared__ float shFilters[stageRows][filtersPerBlock];
    __shared__ float shImages[stageRows][B_X * imgsPerThread];

    const int numModules = numModulesY * numModulesX;
    const int imgPixels = imgSizeY * imgSizeX;
    const int filterPixels = filterSize * filterSize;

    const int filterBatches = numFilters / filtersPerBlock;
    const int mod = blockIdx.y / filterBatches;
    const int firstFilter = (blockIdx.y % filterBatches) * filtersPerBlock;
    const int moduleTop = paddingStart + (mod / numModulesX) * moduleStride;
    const int moduleLeft = paddingStart + (mod % numModulesX) * moduleStride;

    // filter staging: thread tid copies column (filter) fLoadX of staged pixel rows
    // fLoadY, fLoadY + fRowsPerPass, ...
    const int tid = threadIdx.y * B_X + threadIdx.x;
    const int fLoadY = tid / filtersPerBlock;
    const int fLoadX = tid % filtersPerBlock;
    const int fRowsPerPass = (B_X * B_Y) / filtersPerBlock;

    const int myCase = blockIdx.x * B_X * imgsPerThread + threadIdx.x;

    images += myCase;
    filters += firstFilter + fLoadX;
    if (!conv) {
        filters += mod * numColors * filterPixels * numFilters;
    }
    targets += (firstFilter + threadIdx.y) * numModules * numImages
             + mod * numImages + myCase;

    float acc[filtersPerThread][imgsPerThread];
    #pragma unroll
    for (int f = 0; f < filtersPerThread; f++) {
        #pragma unroll
        for (int i = 0; i < imgsPerThread; i++) {
            acc[f][i] = 0;
        }
    }

    for (int p0 = 0; p0 < filterPixels; p0 += B_Y) {
        // B_Y pixels x numColors of the block's filters; pixels past the filter are zeros
        #pragma unroll
        for (int r0 = 0; r0 < B_Y; r0 += fRowsPerPass) {
            const int r = r0 + fLoadY;
            if (r < B_Y) {
                const bool inFilter = p0 + r < filterPixels;
                #pragma unroll
                for (int c = 0; c < numColors; c++) {
                    shFilters[c * B_Y + r][fLoadX] =
                        inFilter ? filters[(c * filterPixels + p0 + r) * numFilters] : 0;
                }
            }
        }

        // pixel p0 + threadIdx.y of this thread's images, every colour; zeros outside the
        // image, past the filter, and (checkImgBounds) past the last image
        const int p = p0 + threadIdx.y;
        const int y = moduleTop + p / filterSize;
        const int x = moduleLeft + p % filterSize;
        const bool inImage = p < filterPixels && y >= 0 && y < imgSizeY && x >= 0 && x < imgSizeX;
        #pragma unroll
        for (int i = 0; i < imgsPerThread; i++) {
            if (inImage && (!checkImgBounds || myCase + i * B_X < numImages)) {
                const float* src = images + (y * imgSizeX + x) * imgStride + i * B_X;
                #pragma unroll
                for (int c = 0; c < numColors; c++) {
                    shImages[c * B_Y + threadIdx.y][threadIdx.x + i * B_X] = src[c * imgPixels * imgStride];
                }
            } else {
                #pragma unroll
                for (int c = 0; c < numColors; c++) {
                    shImages[c * B_Y + threadIdx.y][threadIdx.x + i * B_X] = 0;
                }
            }
        }
        __syncthreads();

        #pragma unroll
        for (int k = 0; k < stageRows; k++) {
            #pragma unroll
            for (int f = 0; f < filtersPerThread; f++) {
                #pragma unroll
                for (int i = 0; i < imgsPerThread; i++) {
                    acc[f][i] += shImages[k][threadIdx.x + i * B_X] * shFilters[k][threadIdx.y + f * B_Y];
                }
            }
        }
        __syncthreads();
    }

    #pragma unroll
    for (int i = 0; i < imgsPerThread; i++) {
        if (!checkImgBounds || myCase + i * B_X < numImages) {
            #pragma unroll
            for (int f = 0; f < filtersPerThread; f++) {
                float* t = targets + f * B_Y * numModules * numImages + i * B_X;
                *t = scale ? scaleTargets * *t + scaleOutputs * acc[f][i] : scaleOutputs * acc[f][i];
            }
        }
    }
}

/*
 * Threads: B_X x B_Y. One block = one module x B_Y*filtersPerThread filters x
 * B_X*imgsPerThread images, as filterActs_YxX_color; the block's filters all lie in one
 * group, so it reads that group's colours only, colorCache of them per step.
 *
 * blockIdx.x: which batch of B_X*imgsPerThread images
 * blockIdx.y: which module, and which batch of B_Y*filtersPerThread filters in it
 * threadIdx.x: image within the batch (and every B_X-th after it)
 * threadIdx.y: filter within the batch (and every B_Y-th after it)
 *
 * images:      (numImgColors, imgSizeY, imgSizeX, numImages), rows imgStride apart
 * filters:     conv:  (numFilterColors, filterPixels, numFilters)
 *              local: (numModules, numFilterColors, filterPixels, numFilters)
 * targets:     (numFilters, numModulesY, numModulesX, numImages)
 *
 * numFilterColors = numImgColors / numGroups; filters [g*F/G, (g+1)*F/G) see colours
 * [g*numFilterColors, (g+1)*numFilterColors).
 * numFilters/numGroups must be a multiple of B_Y*filtersPerThread (a block never straddles
 * two groups); numFilterColors a multiple of colorCache; numImages a multiple of
 * B_X*imgsPerThread unless checkImgBounds.
 */
template <int B_Y, int B_X, int imgsPerThread, int filtersPerThread, int colorCache,
          bool scale, bool checkImgBounds>
__global__ void filterActs_YxX_sparse(const float* images, const float* filters, float* targets,
                                      const int numImages, const int numFilters,
                                      const int imgSizeY, const int imgSizeX, const int filterSize,
                                      const int paddingStart, const int moduleStride,
                                      const int numModulesY, const int numModulesX,
                                      const int imgStride, const int numImgColors,
                                      const int numGroups,
                                      const float scaleTargets, const float scaleOutputs,
                                      const bool conv) {
    const int filtersPerBlock = B_Y * filtersPerThread;
    const int stageRows = B_Y * colorCache;
    __shared__ float shFilters[stageRows][filtersPerBlock];
    __shared__ float shImages[stageRows][B_X * imgsPerThread];

    const int numModules = numModulesY * numModulesX;
    const int imgPixels = imgSizeY * imgSizeX;
    const int filterPixels = filterSize * filterSize;
    const int numFilterColors = numImgColors / numGroups;
    const int numFiltersPerGroup = numFilters / numGroups;

    const int filterBatches = numFilters / filtersPerBlock;
    const int mod = blockIdx.y / filterBatches;
    const int firstFilter = (blockIdx.y % filterBatches) * filtersPerBlock;
    const int groupIdx = firstFilter / numFiltersPerGroup;
    const int firstColor = groupIdx * numFilterColors;  // first colour of the group
    const int moduleTop = paddingStart + (mod / numModulesX) * moduleStride;
    const int moduleLeft = paddingStart + (mod % numModulesX) * moduleStride;

    const int tid = threadIdx.y * B_X + threadIdx.x;
    const int fLoadY = tid / filtersPerBlock;
    const int fLoadX = tid % filtersPerBlock;
    const int fRowsPerPass = (B_X * B_Y) / filtersPerBlock;

    const int myCase = blockIdx.x * B_X * imgsPerThread + threadIdx.x;

    images += firstColor * imgPixels * imgStride + myCase;
    filters += firstFilter + fLoadX;
    if (!conv) {
        filters += mod * numFilterColors * filterPixels * numFilters;
    }
    targets += (firstFilter + threadIdx.y) * numModules * numImages
             + mod * numImages + myCase;

    float acc[filtersPerThread][imgsPerThread];
    #pragma unroll
    for (int f = 0; f < filtersPerThread; f++) {
        #pragma unroll
        for (int i = 0; i < imgsPerThread; i++) {
            acc[f][i] = 0;
        }
    }

    for (int c0 = 0; c0 < numFilterColors; c0 += colorCache) {
        for (int p0 = 0; p0 < filterPixels; p0 += B_Y) {
            // B_Y pixels x colorCache colours of the block's filters
            #pragma unroll
            for (int r0 = 0; r0 < B_Y; r0 += fRowsPerPass) {
                const int r = r0 + fLoadY;
                if (r < B_Y) {
                    const bool inFilter = p0 + r < filterPixels;
                    #pragma unroll
                    for (int c = 0; c < colorCache; c++) {
                        shFilters[c * B_Y + r][fLoadX] =
                            inFilter ? filters[((c0 + c) * filterPixels + p0 + r) * numFilters] : 0;
                    }
                }
            }

            // pixel p0 + threadIdx.y of this thread's images, colours c0 .. c0+colorCache-1
            const int p = p0 + threadIdx.y;
            const int y = moduleTop + p / filterSize;
            const int x = moduleLeft + p % filterSize;
            const bool inImage = p < filterPixels && y >= 0 && y < imgSizeY && x >= 0 && x < imgSizeX;
            #pragma unroll
            for (int i = 0; i < imgsPerThread; i++) {
                if (inImage && (!checkImgBounds || myCase + i * B_X < numImages)) {
                    const float* src = images + (c0 * imgPixels + y * imgSizeX + x) * imgStride + i * B_X;
                    #pragma unroll
                    for (int c = 0; c < colorCache; c++) {
                        shImages[c * B_Y + threadIdx.y][threadIdx.x + i * B_X] = src[c * imgPixels * imgStride];
                    }
                } else {
                    #pragma unroll
                    for (int c = 0; c < colorCache; c++) {
                        shImages[c * B_Y + threadIdx.y][threadIdx.x + i * B_X] = 0;
                    }
                }
            }
            __syncthreads();

            #pragma unroll
            for (int k = 0; k < stageRows; k++) {
                #pragma unroll
                for (int f = 0; f < filtersPerThread; f++) {
                    #pragma unroll
                    for (int i = 0; i < imgsPerThread; i++) {
                        acc[f][i] += shImages[k][threadIdx.x + i * B_X] * shFilters[k][threadIdx.y + f * B_Y];
                    }
                }
            }
            __syncthreads();
        }
    }

    #pragma unroll
    for (int i = 0; i < imgsPerThread; i++) {
        if (!checkImgBounds || myCase + i * B_X < numImages) {
            #pragma unroll
            for (int f = 0; f < filtersPerThread; f++) {
                float* t = targets + f * B_Y * numModules * numImages + i * B_X;
                *t = scale ? scaleTargets * *t + scaleOutputs * acc[f][i] : scaleOutputs * acc[f][i];
            }
        }
    }
}

/*
 * Threads: B_X x B_Y. As filterActs_YxX_sparse, but filter colour c of group g is image
 * colour colorIndices[g*numFilterColors + c] (sparse random connectivity); the block looks
 * up its colorCache colours per step in shared memory.
 *
 * blockIdx.x: which batch of B_X*imgsPerThread images
 * blockIdx.y: which module, and which batch of B_Y*filtersPerThread filters in it
 * threadIdx.x: image within the batch (and every B_X-th after it)
 * threadIdx.y: filter within the batch (and every B_Y-th after it)
 *
 * images:       (numImgColors, imgSizeY, imgSizeX, numImages), rows imgStride apart
 * filters:      conv:  (numFilterColors, filterPixels, numFilters)
 *               local: (numModules, numFilterColors, filterPixels, numFilters)
 * targets:      (numFilters, numModulesY, numModulesX, numImages)
 * colorIndices: (numGroups, numFilterColors), image colour of each group's filter colour
 *
 * numFilters/numGroups must be a multiple of B_Y*filtersPerThread; numFilterColors a
 * multiple of colorCache; colorCache <= B_X*B_Y; numImages a multiple of
 * B_X*imgsPerThread unless checkImgBounds.
 */
template <int B_Y, int B_X, int imgsPerThread, int filtersPerThread, int colorCache,
          bool scale, bool checkImgBounds>
__global__ void filterActs_YxX_sparse_random(const float* images, const float* filters, float* targets,
                                             const int* colorIndices,
                                             const int numImages, const int numFilters,
                                             const int imgSizeY, const int imgSizeX, const int filterSize,
                                             const int paddingStart, const int moduleStride,
                                             const int numModulesY, const int numModulesX,
                                             const int imgStride, const int numFilterColors,
                                             const int numGroups,
                                             const float scaleTargets, const float scaleOutputs,
                                             const bool conv) {
    const int filtersPerBlock = B_Y * filtersPerThread;
    const int stageRows = B_Y * colorCache;
    __shared__ float shFilters[stageRows][filtersPerBlock];
    __shared__ float shImages[stageRows][B_X * imgsPerThread];
    __shared__ int shColorOffsets[colorCache];  // offsets of this step's image colours

    const int numModules = numModulesY * numModulesX;
    const int imgPixels = imgSizeY * imgSizeX;
    const int filterPixels = filterSize * filterSize;
    const int numFiltersPerGroup = numFilters / numGroups;

    const int filterBatches = numFilters / filtersPerBlock;
    const int mod = blockIdx.y / filterBatches;
    const int firstFilter = (blockIdx.y % filterBatches) * filtersPerBlock;
    const int groupIdx = firstFilter / numFiltersPerGroup;
    const int moduleTop = paddingStart + (mod / numModulesX) * moduleStride;
    const int moduleLeft = paddingStart + (mod % numModulesX) * moduleStride;

    const int tid = threadIdx.y * B_X + threadIdx.x;
    const int fLoadY = tid / filtersPerBlock;
    const int fLoadX = tid % filtersPerBlock;
    const int fRowsPerPass = (B_X * B_Y) / filtersPerBlock;

    const int myCase = blockIdx.x * B_X * imgsPerThread + threadIdx.x;

    images += myCase;
    filters += firstFilter + fLoadX;
    if (!conv) {
        filters += mod * numFilterColors * filterPixels * numFilters;
    }
    targets += (firstFilter + threadIdx.y) * numModules * numImages
             + mod * numImages + myCase;
    colorIndices += groupIdx * numFilterColors;

    float acc[filtersPerThread][imgsPerThread];
    #pragma unroll
    for (int f = 0; f < filtersPerThread; f++) {
        #pragma unroll
        for (int i = 0; i < imgsPerThread; i++) {
            acc[f][i] = 0;
        }
    }

    for (int c0 = 0; c0 < numFilterColors; c0 += colorCache) {
        // the previous step's last __syncthreads() guarantees nobody still reads these
        if (tid < colorCache) {
            shColorOffsets[tid] = colorIndices[c0 + tid] * imgPixels * imgStride;
        }
        __syncthreads();
        for (int p0 = 0; p0 < filterPixels; p0 += B_Y) {
            #pragma unroll
            for (int r0 = 0; r0 < B_Y; r0 += fRowsPerPass) {
                const int r = r0 + fLoadY;
                if (r < B_Y) {
                    const bool inFilter = p0 + r < filterPixels;
                    #pragma unroll
                    for (int c = 0; c < colorCache; c++) {
                        shFilters[c * B_Y + r][fLoadX] =
                            inFilter ? filters[((c0 + c) * filterPixels + p0 + r) * numFilters] : 0;
                    }
                }
            }

            const int p = p0 + threadIdx.y;
            const int y = moduleTop + p / filterSize;
            const int x = moduleLeft + p % filterSize;
            const bool inImage = p < filterPixels && y >= 0 && y < imgSizeY && x >= 0 && x < imgSizeX;
            #pragma unroll
            for (int i = 0; i < imgsPerThread; i++) {
                if (inImage && (!checkImgBounds || myCase + i * B_X < numImages)) {
                    const float* src = images + (y * imgSizeX + x) * imgStride + i * B_X;
                    #pragma unroll
                    for (int c = 0; c < colorCache; c++) {
                        shImages[c * B_Y + threadIdx.y][threadIdx.x + i * B_X] = src[shColorOffsets[c]];
                    }
                } else {
                    #pragma unroll
                    for (int c = 0; c < colorCache; c++) {
                        shImages[c * B_Y + threadIdx.y][threadIdx.x + i * B_X] = 0;
                    }
                }
            }
            __syncthreads();

            #pragma unroll
            for (int k = 0; k < stageRows; k++) {
                #pragma unroll
                for (int f = 0; f < filtersPerThread; f++) {
                    #pragma unroll
                    for (int i = 0; i < imgsPerThread; i++) {
                        acc[f][i] += shImages[k][threadIdx.x + i * B_X] * shFilters[k][threadIdx.y + f * B_Y];
                    }
                }
            }
            __syncthreads();
        }
    }

    #pragma unroll
    for (int i = 0; i < imgsPerThread; i++) {
        if (!checkImgBounds || myCase + i * B_X < numImages) {
            #pragma unroll
            for (int f = 0; f < filtersPerThread; f++) {
                float* t = targets + f * B_Y * numModules * numImages + i * B_X;
                *t = scale ? scaleTargets * *t + scaleOutputs * acc[f][i] : scaleOutputs * acc[f][i];
            }
        }
    }
}
