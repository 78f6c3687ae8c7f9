/*
 * weight_acts.cu: gradient of convolutional and locally connected layers with respect to
 * their filters, the kernels of 2012 cudaconv2/weight_acts.cu.
 *
 *   conv_weight_acts_c           1, 2 or 3 colours; a block does B_Y*pixelsPerThread filter
 *                                pixels x B_X filters, every colour
 *   conv_weight_acts_mc_mf       4 or more colours per group (a multiple of 4); a block does
 *                                B_Y pixels x colorsPerThread colours x B_X*filtersPerThread
 *                                filters
 *   conv_weight_acts_mc_mf_rand  the same for sparse random connectivity
 *
 * Host side: cudaconvnet/backends/cuda/weight_acts.py (dense) and sparse_acts.py (sparse
 * random). Reference: cudaconvnet/backends/numpy/weight_acts.py; checked against it by
 * tests/test_cuda_conv.py (python -m pytest -m cuda).
 *
 * Shared by all three kernels:
 *   - the gradient is summed over the cases and over partialSum consecutive modules; the
 *     output holds one such partial sum per group of modules (numModules/partialSum of
 *     them), which the layer adds up afterwards. A locally connected layer runs the same
 *     kernels with partialSum = 1 (one filter bank per module).
 *   - cases are walked preloadCases at a time: per step the block stages its image pixels
 *     (each module's pixel under filter pixel p) and its filters' hidActs for those cases
 *     in shared memory, then each thread accumulates its pixels x colours x filters over
 *     the staged cases. The hidActs rows are padded to preloadCases+1 floats against bank
 *     conflicts.
 *   - the (row, column) of each of the block's filter pixels is computed once, packed as
 *     (row << 16) | column, so the inner loops need no division.
 *   - with scale the result is scaleTargets * targets + scaleOutputs * grad, otherwise
 *     scaleOutputs * grad (targets never read).
 *   - checkCaseBounds: numImages is not a multiple of preloadCases; cases past the end are
 *     staged as zeros (2012 left the hidActs of those cases unwritten, and relied on the
 *     zero image values; zeroing both also keeps stale NaNs out of the sums).
 *   - B_X*B_Y must be a multiple of preloadCases (the staging covers whole rows).
 *
 * Faster variant, chosen by --conv-kernels (the 2012 kernels stay the default): unfold.cu
 * (im2col, then one strided-batched cuBLAS product over a chunk's partial sums). Not
 * written yet: kernels in the 2012 structure with larger register tiles, 128-bit loads of
 * the cases, double-buffered staging, and the partial sums reduced in the same launch
 * instead of the layer's separate addSum.
 */
#include "cudaconv2/cudaconv2.cuh"

#define PX_ROW(yx)  ((yx) >> 16)
#define PX_COL(yx)  ((yx) & 0xFFFF)

/*
 * Threads: B_X x B_Y. Each block computes the gradient of B_X filters at
 * B_Y*pixelsPerThread filter pixels, every colour, summed over partialSum modules.
 *
 * blockIdx.x: which partial sum, and which batch of B_X filters
 *             (blockIdx.x = partialSumIdx * (numFilters / B_X) + filterBatch)
 * blockIdx.y: which batch of B_Y*pixelsPerThread filter pixels
 * threadIdx.x: filter within the batch
 * threadIdx.y: filter pixel within the batch (and every B_Y-th after it)
 *
 * images:      (numColors, imgSizeY, imgSizeX, numImages), rows imgStride apart
 * hidActs:     (numFilters, numModulesY, numModulesX, numImages)
 * targets:     (numModulesY*numModulesX/partialSum, numColors, filterPixels, numFilters)
 *
 * numColors is 1, 2 or 3 (no groups). numFilters must be a multiple of B_X; numModules a
 * multiple of partialSum; numImages a multiple of preloadCases unless checkCaseBounds.
 */
template <int B_Y, int B_X, int pixelsPerThread, int preloadCases, int numColors,
          bool scale, bool checkCaseBounds>
__global__ void conv_weight_acts_c(const float* images, const float* hidActs, float* targets,
                                   const int numImages, const int numFilters,
                                   const int numModulesY, const int numModulesX,
                                   const int imgSizeY, const int imgSizeX, const int filterSize,
                                   const int paddingStart, const int moduleStride, const int imgStride,
                                   const int partialSum,
                                   const float scaleTargets, const float scaleOutputs) {
    const int pixelsPerBlock = B_Y * pixelsPerThread;
    __shared__ float shImages[numColors * pixelsPerBlock][preloadCases];  // [colour, pixel][case]
    __shared__ float shHidActs[B_X][preloadCases + 1];                    // [filter][case]
    __shared__ int shPixelYX[pixelsPerBlock];

    const int numModules = numModulesY * numModulesX;
    const int filterPixels = filterSize * filterSize;
    const int imgPixels = imgSizeY * imgSizeX;

    const int filterBatches = numFilters / B_X;
    const int partialSumIdx = blockIdx.x / filterBatches;
    const int firstModule = partialSumIdx * partialSum;
    const int firstFilter = (blockIdx.x % filterBatches) * B_X;
    const int firstPixel = blockIdx.y * pixelsPerBlock;

    // staging: rowsPerPass rows x preloadCases cases per pass
    const int tid = threadIdx.y * B_X + threadIdx.x;
    const int stageRow = tid / preloadCases, stageCol = tid % preloadCases;
    const int rowsPerPass = (B_X * B_Y) / preloadCases;

    images += stageCol;
    hidActs += (firstFilter + stageRow) * numModules * numImages + firstModule * numImages + stageCol;
    targets += (partialSumIdx * numColors * filterPixels + firstPixel + threadIdx.y) * numFilters
             + firstFilter + threadIdx.x;

    if (tid < pixelsPerBlock) {
        const int p = firstPixel + tid;
        shPixelYX[tid] = ((p / filterSize) << 16) | (p % filterSize);
    }
    __syncthreads();

    float acc[numColors][pixelsPerThread];
    #pragma unroll
    for (int c = 0; c < numColors; c++) {
        #pragma unroll
        for (int p = 0; p < pixelsPerThread; p++) {
            acc[c][p] = 0;
        }
    }

    for (int m = firstModule; m < firstModule + partialSum; m++) {
        const int moduleTop = paddingStart + (m / numModulesX) * moduleStride;
        const int moduleLeft = paddingStart + (m % numModulesX) * moduleStride;
        for (int case0 = 0; case0 < numImages; case0 += preloadCases) {
            const bool caseOk = !checkCaseBounds || case0 + stageCol < numImages;
            // the image under each of the block's filter pixels, every colour
            for (int y = 0; y < pixelsPerBlock; y += rowsPerPass) {
                const int r = y + stageRow;
                if (pixelsPerBlock % rowsPerPass == 0 || r < pixelsPerBlock) {
                    bool inImage = false;
                    int pxOffset = 0;
                    if (caseOk && firstPixel + r < filterPixels) {
                        const int pxY = moduleTop + PX_ROW(shPixelYX[r]);
                        const int pxX = moduleLeft + PX_COL(shPixelYX[r]);
                        inImage = pxY >= 0 && pxY < imgSizeY && pxX >= 0 && pxX < imgSizeX;
                        pxOffset = (pxY * imgSizeX + pxX) * imgStride + case0;
                    }
                    #pragma unroll
                    for (int c = 0; c < numColors; c++) {
                        shImages[c * pixelsPerBlock + r][stageCol] =
                            inImage ? images[c * imgPixels * imgStride + pxOffset] : 0;
                    }
                }
            }
            // the block's B_X filters' hidActs of this module
            #pragma unroll
            for (int y = 0; y < B_X; y += rowsPerPass) {
                const int r = y + stageRow;
                if (B_X % rowsPerPass == 0 || r < B_X) {
                    shHidActs[r][stageCol] = caseOk ? hidActs[y * numModules * numImages + case0] : 0;
                }
            }
            __syncthreads();

            #pragma unroll
            for (int p = 0; p < pixelsPerThread; p++) {
                #pragma unroll
                for (int i = 0; i < preloadCases; i++) {
                    #pragma unroll
                    for (int c = 0; c < numColors; c++) {
                        acc[c][p] += shImages[c * pixelsPerBlock + p * B_Y + threadIdx.y][i] * shHidActs[threadIdx.x][i];
                    }
                }
            }
            __syncthreads();
        }
        hidActs += numImages;  // next module
    }

    #pragma unroll
    for (int p = 0; p < pixelsPerThread; p++) {
        if (firstPixel + p * B_Y + threadIdx.y < filterPixels) {
            #pragma unroll
            for (int c = 0; c < numColors; c++) {
                float* t = targets + (c * filterPixels + p * B_Y) * numFilters;
                *t = scale ? scaleTargets * *t + scaleOutputs * acc[c][p] : scaleOutputs * acc[c][p];
            }
        }
    }
}

/*
 * Threads: B_X x B_Y. Each block computes the gradient of B_X*filtersPerThread filters
 * (all in one group) at B_Y filter pixels for colorsPerThread consecutive filter colours,
 * summed over partialSum modules.
 *
 * blockIdx.x: which partial sum, and which batch of B_X*filtersPerThread filters
 *             (blockIdx.x = partialSumIdx * (numFilters / (B_X*filtersPerThread)) + filterBatch)
 * blockIdx.y: which batch of B_Y filter pixels, and which batch of colorsPerThread colours
 *             (blockIdx.y = pixelBatch * (numFilterColors / colorsPerThread) + colourBatch)
 * threadIdx.x: filter within the batch (and every B_X-th after it)
 * threadIdx.y: filter pixel within the batch
 *
 * images:      (numImgColors, imgSizeY, imgSizeX, numImages), rows imgStride apart
 * hidActs:     (numFilters, numModulesY, numModulesX, numImages)
 * targets:     (numModulesY*numModulesX/partialSum, numFilterColors, filterPixels, numFilters)
 *
 * numFilterColors = numImgColors / numGroups must be a multiple of colorsPerThread;
 * numFilters/numGroups a multiple of B_X*filtersPerThread; numModules a multiple of
 * partialSum; numImages a multiple of preloadCases unless checkCaseBounds.
 */
template <int B_Y, int B_X, int filtersPerThread, int colorsPerThread, int preloadCases,
          bool scale, bool checkCaseBounds>
__global__ void conv_weight_acts_mc_mf(const float* images, const float* hidActs, float* targets,
                                       const int numImages, const int numFilters,
                                       const int numModulesY, const int numModulesX,
                                       const int imgSizeY, const int imgSizeX, const int filterSize,
                                       const int paddingStart, const int moduleStride, const int imgStride,
                                       const int numImgColors, const int numGroups, const int partialSum,
                                       const float scaleTargets, const float scaleOutputs) {
    const int filtersPerBlock = B_X * filtersPerThread;
    __shared__ float shImages[colorsPerThread * B_Y][preloadCases];   // [colour, pixel][case]
    __shared__ float shHidActs[filtersPerBlock][preloadCases + 1];    // [filter][case]
    __shared__ int shPixelYX[B_Y];

    const int numModules = numModulesY * numModulesX;
    const int filterPixels = filterSize * filterSize;
    const int imgPixels = imgSizeY * imgSizeX;
    const int numFilterColors = numImgColors / numGroups;
    const int numFiltersPerGroup = numFilters / numGroups;

    const int filterBatches = numFilters / filtersPerBlock;
    const int partialSumIdx = blockIdx.x / filterBatches;
    const int firstModule = partialSumIdx * partialSum;
    const int firstFilter = (blockIdx.x % filterBatches) * filtersPerBlock;
    const int groupIdx = firstFilter / numFiltersPerGroup;

    const int colourBatches = numFilterColors / colorsPerThread;
    const int firstPixel = (blockIdx.y / colourBatches) * B_Y;
    const int firstFilterColor = (blockIdx.y % colourBatches) * colorsPerThread;
    const int firstImgColor = groupIdx * numFilterColors + firstFilterColor;

    const int tid = threadIdx.y * B_X + threadIdx.x;
    const int stageRow = tid / preloadCases, stageCol = tid % preloadCases;
    const int rowsPerPass = (B_X * B_Y) / preloadCases;

    images += firstImgColor * imgPixels * imgStride + stageCol;
    hidActs += (firstFilter + stageRow) * numModules * numImages + firstModule * numImages + stageCol;
    targets += (partialSumIdx * numFilterColors * filterPixels + firstFilterColor * filterPixels
                + firstPixel + threadIdx.y) * numFilters
             + firstFilter + threadIdx.x;

    if (tid < B_Y) {
        const int p = firstPixel + tid;
        shPixelYX[tid] = ((p / filterSize) << 16) | (p % filterSize);
    }
    __syncthreads();

    float acc[colorsPerThread][filtersPerThread];
    #pragma unroll
    for (int c = 0; c < colorsPerThread; c++) {
        #pragma unroll
        for (int f = 0; f < filtersPerThread; f++) {
            acc[c][f] = 0;
        }
    }

    for (int m = firstModule; m < firstModule + partialSum; m++) {
        const int moduleTop = paddingStart + (m / numModulesX) * moduleStride;
        const int moduleLeft = paddingStart + (m % numModulesX) * moduleStride;
        for (int case0 = 0; case0 < numImages; case0 += preloadCases) {
            const bool caseOk = !checkCaseBounds || case0 + stageCol < numImages;
            for (int y = 0; y < B_Y; y += rowsPerPass) {
                const int r = y + stageRow;
                if (B_Y % rowsPerPass == 0 || r < B_Y) {
                    bool inImage = false;
                    int pxOffset = 0;
                    if (caseOk && firstPixel + r < filterPixels) {
                        const int pxY = moduleTop + PX_ROW(shPixelYX[r]);
                        const int pxX = moduleLeft + PX_COL(shPixelYX[r]);
                        inImage = pxY >= 0 && pxY < imgSizeY && pxX >= 0 && pxX < imgSizeX;
                        pxOffset = (pxY * imgSizeX + pxX) * imgStride + case0;
                    }
                    #pragma unroll
                    for (int c = 0; c < colorsPerThread; c++) {
                        shImages[c * B_Y + r][stageCol] = inImage ? images[c * imgPixels * imgStride + pxOffset] : 0;
                    }
                }
            }
            #pragma unroll
            for (int y = 0; y < filtersPerBlock; y += rowsPerPass) {
                const int r = y + stageRow;
                if (filtersPerBlock % rowsPerPass == 0 || r < filtersPerBlock) {
                    shHidActs[r][stageCol] = caseOk ? hidActs[y * numModules * numImages + case0] : 0;
                }
            }
            __syncthreads();

            #pragma unroll
            for (int c = 0; c < colorsPerThread; c++) {
                #pragma unroll
                for (int i = 0; i < preloadCases; i++) {
                    #pragma unroll
                    for (int f = 0; f < filtersPerThread; f++) {
                        acc[c][f] += shImages[c * B_Y + threadIdx.y][i] * shHidActs[threadIdx.x + f * B_X][i];
                    }
                }
            }
            __syncthreads();
        }
        hidActs += numImages;
    }

    if (firstPixel + threadIdx.y < filterPixels) {
        #pragma unroll
        for (int f = 0; f < filtersPerThread; f++) {
            #pragma unroll
            for (int c = 0; c < colorsPerThread; c++) {
                float* t = targets + c * filterPixels * numFilters + f * B_X;
                *t = scale ? scaleTargets * *t + scaleOutputs * acc[c][f] : scaleOutputs * acc[c][f];
            }
        }
    }
}

/*
 * Threads: B_X x B_Y. As conv_weight_acts_mc_mf, for sparse random connectivity: filter
 * colour c of group g is image colour colorIndices[g*numFilterColors + c].
 *
 * blockIdx.x: which partial sum, and which batch of B_X*filtersPerThread filters
 * blockIdx.y: which batch of B_Y filter pixels, and which batch of colorsPerThread colours
 * threadIdx.x: filter within the batch (and every B_X-th after it)
 * threadIdx.y: filter pixel within the batch
 *
 * images:       (numImgColors, imgSizeY, imgSizeX, numImages), rows imgStride apart
 * hidActs:      (numFilters, numModulesY, numModulesX, numImages)
 * targets:      (numModulesY*numModulesX/partialSum, numFilterColors, filterPixels, numFilters)
 * colorIndices: (numGroups, numFilterColors)
 *
 * numFilterColors must be a multiple of colorsPerThread; numFilters/numGroups a multiple
 * of B_X*filtersPerThread; numModules a multiple of partialSum; numImages a multiple of
 * preloadCases unless checkCaseBounds.
 */
template <int B_Y, int B_X, int filtersPerThread, int colorsPerThread, int preloadCases,
          bool scale, bool checkCaseBounds>
__global__ void conv_weight_acts_mc_mf_rand(const float* images, const float* hidActs, float* targets,
                                            const int* colorIndices,
                                            const int numImages, const int numFilters,
                                            const int numModulesY, const int numModulesX,
                                            const int imgSizeY, const int imgSizeX, const int filterSize,
                                            const int paddingStart, const int moduleStride, const int imgStride,
                                            const int numFilterColors, const int numGroups, const int partialSum,
                                            const float scaleTargets, const float scaleOutputs) {
    const int filtersPerBlock = B_X * filtersPerThread;
    __shared__ float shImages[colorsPerThread * B_Y][preloadCases];
    __shared__ float shHidActs[filtersPerBlock][preloadCases + 1];
    __shared__ int shPixelYX[B_Y];
    __shared__ int shColorOffsets[colorsPerThread];  // offsets of the block's image colours

    const int numModules = numModulesY * numModulesX;
    const int filterPixels = filterSize * filterSize;
    const int imgPixels = imgSizeY * imgSizeX;
    const int numFiltersPerGroup = numFilters / numGroups;

    const int filterBatches = numFilters / filtersPerBlock;
    const int partialSumIdx = blockIdx.x / filterBatches;
    const int firstModule = partialSumIdx * partialSum;
    const int firstFilter = (blockIdx.x % filterBatches) * filtersPerBlock;
    const int groupIdx = firstFilter / numFiltersPerGroup;

    const int colourBatches = numFilterColors / colorsPerThread;
    const int firstPixel = (blockIdx.y / colourBatches) * B_Y;
    const int firstFilterColor = (blockIdx.y % colourBatches) * colorsPerThread;

    const int tid = threadIdx.y * B_X + threadIdx.x;
    const int stageRow = tid / preloadCases, stageCol = tid % preloadCases;
    const int rowsPerPass = (B_X * B_Y) / preloadCases;

    images += stageCol;
    hidActs += (firstFilter + stageRow) * numModules * numImages + firstModule * numImages + stageCol;
    targets += (partialSumIdx * numFilterColors * filterPixels + firstFilterColor * filterPixels
                + firstPixel + threadIdx.y) * numFilters
             + firstFilter + threadIdx.x;

    if (tid < B_Y) {
        const int p = firstPixel + tid;
        shPixelYX[tid] = ((p / filterSize) << 16) | (p % filterSize);
    }
    if (tid < colorsPerThread) {
        shColorOffsets[tid] = colorIndices[groupIdx * numFilterColors + firstFilterColor + tid] * imgPixels * imgStride;
    }
    __syncthreads();

    float acc[colorsPerThread][filtersPerThread];
    #pragma unroll
    for (int c = 0; c < colorsPerThread; c++) {
        #pragma unroll
        for (int f = 0; f < filtersPerThread; f++) {
            acc[c][f] = 0;
        }
    }

    for (int m = firstModule; m < firstModule + partialSum; m++) {
        const int moduleTop = paddingStart + (m / numModulesX) * moduleStride;
        const int moduleLeft = paddingStart + (m % numModulesX) * moduleStride;
        for (int case0 = 0; case0 < numImages; case0 += preloadCases) {
            const bool caseOk = !checkCaseBounds || case0 + stageCol < numImages;
            for (int y = 0; y < B_Y; y += rowsPerPass) {
                const int r = y + stageRow;
                if (B_Y % rowsPerPass == 0 || r < B_Y) {
                    bool inImage = false;
                    int pxOffset = 0;
                    if (caseOk && firstPixel + r < filterPixels) {
                        const int pxY = moduleTop + PX_ROW(shPixelYX[r]);
                        const int pxX = moduleLeft + PX_COL(shPixelYX[r]);
                        inImage = pxY >= 0 && pxY < imgSizeY && pxX >= 0 && pxX < imgSizeX;
                        pxOffset = (pxY * imgSizeX + pxX) * imgStride + case0;
                    }
                    #pragma unroll
                    for (int c = 0; c < colorsPerThread; c++) {
                        shImages[c * B_Y + r][stageCol] = inImage ? images[shColorOffsets[c] + pxOffset] : 0;
                    }
                }
            }
            #pragma unroll
            for (int y = 0; y < filtersPerBlock; y += rowsPerPass) {
                const int r = y + stageRow;
                if (filtersPerBlock % rowsPerPass == 0 || r < filtersPerBlock) {
                    shHidActs[r][stageCol] = caseOk ? hidActs[y * numModules * numImages + case0] : 0;
                }
            }
            __syncthreads();

            #pragma unroll
            for (int c = 0; c < colorsPerThread; c++) {
                #pragma unroll
                for (int i = 0; i < preloadCases; i++) {
                    #pragma unroll
                    for (int f = 0; f < filtersPerThread; f++) {
                        acc[c][f] += shImages[c * B_Y + threadIdx.y][i] * shHidActs[threadIdx.x + f * B_X][i];
                    }
                }
            }
            __syncthreads();
        }
        hidActs += numImages;
    }

    if (firstPixel + threadIdx.y < filterPixels) {
        #pragma unroll
        for (int f = 0; f < filtersPerThread; f++) {
            #pragma unroll
            for (int c = 0; c < colorsPerThread; c++) {
                float* t = targets + c * filterPixels * numFilters + f * B_X;
                *t = scale ? scaleTargets * *t + scaleOutputs * acc[c][f] : scaleOutputs * acc[c][f];
            }
        }
    }
}
