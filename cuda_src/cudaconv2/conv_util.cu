/*
 * conv_util.cu -- the image-layout kernels besides convolution: pooling and its two
 * gradients, response / contrast normalisation within a map and across maps (with their
 * gradients), CHM's TICA cost, a 1-D Gaussian blur, bed of nails, bilinear resize, two
 * colour-space conversions, crop, and a left-right mirror.
 *
 * Stands for src/cudaconv2/conv_util.cu of cuda-convnet (2012) together with the pooling
 * template of its include/cudaconv2/conv_util.cuh; adds what the CHM AlexNet release used
 * on top (MaxAbsPooler, the minDiv constant of the cross-map norm, the href mirror).
 *
 *   kernel                                         what it computes
 *   kLocalPool, kLocalPool2                        pooling (2: stride 1 with big windows)
 *   kLocalMaxUndo, kLocalAvgUndo                   gradient of max / average pooling
 *   kCNorm_fewfilter, kCNorm_manyfilter, kCNorm2   norm within a map (denoms and outputs)
 *   kRNormUndoPrelims, kRNormUndo, kRNormUndo2     its gradient
 *   kFCNorm, kFRNormUndo                           norm across maps, and its gradient
 *   kTICA_manyfilter, kTICAGrad_manyfilter         CHM's TICA cost and its gradient
 *   kGaussianBlur, kBedOfNails, kResizeBilinear    image transforms
 *   kRGBToYUV, kRGBToLAB, kCrop, kReflectH
 *
 * Which kernel and template arguments a call gets, and its grid and block, is decided in
 * cudaconvnet/backends/cuda/conv_util.py (one selector per family, the 2012 host logic).
 * The NumPy twin, cudaconvnet/backends/numpy/conv_util.py, defines the results;
 * tests/test_cuda_ops.py compares the two on a GPU, tests/test_cuda_util_emulated.py on a
 * CPU emulation of these kernels.
 *
 * Memory layout. An image matrix holds numChannels * imgSize * imgSize rows of numImages
 * cases: channel-major, then pixel row, then pixel column, cases adjacent in memory.
 * Images are square. A "filter" in the names below is a channel of the layer's input.
 *
 * Conventions shared by the kernels:
 *   - threadIdx.x runs along the cases, so that a warp reads 32 adjacent floats; a thread
 *     handles imgsPerThread cases spaced B_X (or 32) apart;
 *   - with checkCaseBounds the number of cases need not fill the last block of cases, and
 *     every case index is tested against numImages before it is touched;
 *   - an `add` kernel stores scaleTargets * old + scaleOutputs * new, and reads the old
 *     value only when scaleTargets is not 0; otherwise it overwrites the target unread.
 *
 * Where this file departs from 2012 (each spot says so again):
 *   - the pooler object is constructed inside the kernel rather than passed in by value;
 *   - kFCNorm adds minDiv to its denominators (CHM's k; cuda-convnet r561 added 1);
 *   - kGaussianBlur's shared filter holds all 2*radius taps it uses (2012 sized it radius)
 *     and each thread checks its line against numChannels * imgSize;
 *   - kResizeBilinear rounds every product and sum on its own, as NumPy does, instead of
 *     leaving nvcc free to fuse them;
 *   - no accumulating kernel reads its target when scaleTargets is 0.
 */

#include "cudaconv2/cudaconv2.cuh"

typedef unsigned int uint;

__device__ __forceinline__ float square(const float v) {
    return v * v;
}

/* scaleTargets * old + scaleOutputs * v; `old` is not looked at when scaleTargets is 0 */
__device__ __forceinline__ float scaledStore(const float old, const float v, const float scaleTargets,
                                             const float scaleOutputs) {
    if (scaleTargets == 0.0f) {
        return scaleOutputs * v;
    }
    return scaleTargets * old + scaleOutputs * v;
}

/* *dst = result, or with `add` the scaled sum of the old value and the result */
template<bool add>
__device__ __forceinline__ void storeResult(float* dst, const float result, const float scaleTargets,
                                            const float scaleOutputs) {
    *dst = add ? scaledStore(*dst, result, scaleTargets, scaleOutputs) : result;
}

/* case c exists (always true without checkCaseBounds) */
template<bool checkCaseBounds>
__device__ __forceinline__ bool caseInRange(const int c, const int numImages) {
    return !checkCaseBounds || c < numImages;
}

/* every entry of a per-thread register tile set to v */
template<int rows, int cols>
__device__ __forceinline__ void fillTile(float (&tile)[rows][cols], const float v) {
    #pragma unroll
    for (int r = 0; r < rows; r++) {
        #pragma unroll
        for (int c = 0; c < cols; c++) {
            tile[r][c] = v;
        }
    }
}

/*
 * The block coordinates of the kernels that give each block one pixel (or one output) and
 * a batch of cases and channels: blockIdx.x = column * caseBlocks + case batch and
 * blockIdx.y = row * chanBlocks + channel batch.
 */
struct PixelBlock {
    int col, row;       // the pixel (output) of the block
    int firstCase;      // the block's first case
    int firstChan;      // the block's first channel (filter)
    __device__ __forceinline__ PixelBlock(const int caseBlocks, const int casesPerBlock, const int chanBlocks,
                                          const int chansPerBlock)
        : col(blockIdx.x / caseBlocks), row(blockIdx.y / chanBlocks),
          firstCase((blockIdx.x % caseBlocks) * casesPerBlock), firstChan((blockIdx.y % chanBlocks) * chansPerBlock) {}
};

/* the outputs along one axis whose pooling windows cover pixel p: [first, last) */
__device__ __forceinline__ void windowsCovering(const int p, const int startX, const int subsX, const int strideX,
                                                const int outputsX, int& first, int& last) {
    const int offset = p - startX;
    first = offset < subsX ? 0 : 1 + (offset - subsX) / strideX;
    last = MIN(outputsX, 1 + offset / strideX);
}

/* some pooling window covers pixel p along one axis */
__device__ __forceinline__ bool coveredByPooling(const int p, const int startX, const int subsX, const int strideX,
                                                 const int outputsX) {
    return p >= startX && p < startX + strideX * (outputsX - 1) + subsX;
}

/*
 * The staging step of kLocalPool2, kCNorm2 and kRNormUndo2 (blocks of 16 x B_X threads):
 * the whole block copies one pixel of filtersPerThread channels for its
 * B_X * imgsPerThread cases into shared memory. The threads, numbered tid = threadIdx.y *
 * B_X + threadIdx.x, form B_X / 2 rows of 32: row tid / 32 copies channels tid / 32,
 * tid / 32 + B_X / 2, ... and column tid % 32 the cases tid % 32, tid % 32 + 32, ...
 *
 * src points at (first channel + tid / 32, this pixel, first case + tid % 32);
 * chanStride is the distance between two channels (imgPixels * numImages).
 */
template<int B_X, int imgsPerThread, int filtersPerThread, bool checkCaseBounds>
__device__ __forceinline__ void stagePixel(float (&sh)[filtersPerThread][B_X * imgsPerThread], const float* src,
                                           const int chanStride, const int loadRow, const int loadCol,
                                           const int firstCase, const int numImages) {
    #pragma unroll
    for (int ch = 0; ch < filtersPerThread; ch += B_X / 2) {
        // (with filtersPerThread a multiple of B_X / 2 every row of threads has a channel)
        if (filtersPerThread % (B_X / 2) == 0 || ch + loadRow < filtersPerThread) {
            #pragma unroll
            for (int c = 0; c < B_X * imgsPerThread; c += 32) {
                if (caseInRange<checkCaseBounds>(firstCase + c + loadCol, numImages)) {
                    sh[ch + loadRow][c + loadCol] = src[ch * chanStride + c];
                }
            }
        }
    }
}

/* ===================================================================================== *
 * The poolers: the reduction a pooling window applies to its pixels                     *
 * ===================================================================================== */

/* average over the in-image pixels of the window */
class AvgPooler {
public:
    __device__ __forceinline__ float getBaseValue() const { return 0.0f; }
    __device__ __forceinline__ float operator()(const float acc, const float px) const { return acc + px; }
    __device__ __forceinline__ float output(const float acc, const int regionSize) const { return acc / regionSize; }
};

/* largest pixel (fmaxf drops NaNs); -2e38 when no pixel of the window is in the image */
class MaxPooler {
public:
    __device__ __forceinline__ float getBaseValue() const { return -2e38f; }
    __device__ __forceinline__ float operator()(const float acc, const float px) const { return fmaxf(acc, px); }
    __device__ __forceinline__ float output(const float acc, const int) const { return acc; }
};

/* CHM: the pixel of largest absolute value; on a tie the later pixel (row-major) wins */
class MaxAbsPooler {
public:
    __device__ __forceinline__ float getBaseValue() const { return 0.0f; }
    __device__ __forceinline__ float operator()(const float acc, const float px) const {
        return fabsf(acc) > fabsf(px) ? acc : px;
    }
    __device__ __forceinline__ float output(const float acc, const int) const { return acc; }
};

/* ===================================================================================== *
 * Pooling                                                                               *
 * ===================================================================================== */

/*
 * Blocks of B_Y x B_X threads (4 x 32 from the host); each block computes one output pixel
 * for a batch of cases and a batch of channels.
 *
 * blockIdx.x = output column * DIVUP(numImages, B_X * imgsPerThread) + case batch
 * blockIdx.y = output row * DIVUP(numFilters, B_Y * filtersPerThread) + channel batch
 * threadIdx.x: the thread's first case; it also does the cases B_X, 2 B_X, ... after it
 * threadIdx.y: which run of filtersPerThread adjacent channels the thread does; threads
 *              whose run starts at or past numFilters return at once
 *
 * imgs:    (numFilters, imgSize * imgSize, numImages)
 * target:  (numFilters, outputsX * outputsX, numImages), overwritten
 *
 * Output (oy, ox) reduces, with Agg, the pixels of rows startX + oy * strideX ... that
 * plus subsX - 1, and the same range of columns, that lie inside the image; regionSize
 * is how many of them there are.
 */
template<class Agg, int B_Y, int B_X, int imgsPerThread, int filtersPerThread, bool checkCaseBounds>
__global__ void kLocalPool(float* imgs, float* target,
                           const int imgSize, const int numFilters, const int numImages,
                           const int subsX, const int startX, const int strideX, const int outputsX) {
    const Agg pool;
    const PixelBlock blk(DIVUP(numImages, B_X * imgsPerThread), B_X * imgsPerThread,
                         DIVUP(numFilters, B_Y * filtersPerThread), B_Y * filtersPerThread);
    const int chan = blk.firstChan + threadIdx.y * filtersPerThread;
    if (chan >= numFilters) {
        return;
    }
    const int caseIdx = blk.firstCase + threadIdx.x;
    const int imgPixels = imgSize * imgSize;
    const int numOutputs = outputsX * outputsX;
    const int chanStride = imgPixels * numImages;

    // the window of this output, clipped to the image
    const int winY = startX + blk.row * strideX;
    const int winX = startX + blk.col * strideX;
    const int yBegin = MAX(0, winY), yEnd = MIN(imgSize, winY + subsX);
    const int xBegin = MAX(0, winX), xEnd = MIN(imgSize, winX + subsX);
    const int regionSize = (yEnd - yBegin) * (xEnd - xBegin);

    const float* src = imgs + chan * chanStride + caseIdx;
    float acc[filtersPerThread][imgsPerThread];
    fillTile(acc, pool.getBaseValue());
    for (int y = yBegin; y < yEnd; y++) {
        for (int x = xBegin; x < xEnd; x++) {
            const float* px = src + (y * imgSize + x) * numImages;
            #pragma unroll
            for (int i = 0; i < imgsPerThread; i++) {
                if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
                    #pragma unroll
                    for (int f = 0; f < filtersPerThread; f++) {
                        acc[f][i] = pool(acc[f][i], px[f * chanStride + i * B_X]);
                    }
                }
            }
        }
    }

    float* dst = target + (chan * numOutputs + blk.row * outputsX + blk.col) * numImages + caseIdx;
    #pragma unroll
    for (int i = 0; i < imgsPerThread; i++) {
        if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
            #pragma unroll
            for (int f = 0; f < filtersPerThread; f++) {
                dst[f * numOutputs * numImages + i * B_X] = pool.output(acc[f][i], regionSize);
            }
        }
    }
}

/*
 * Blocks of 16 x B_X threads (B_X = 8 from the host), for stride-1 pooling with big
 * windows (subsX >= 6), where neighbouring outputs share nearly all their pixels: each
 * block computes a 4 x 4 square of outputs and reads every pixel under it once, into
 * shared memory, for all 16 of them.
 *
 * blockIdx.x = (first output column / 4) * DIVUP(numImages, B_X * imgsPerThread) + case batch
 * blockIdx.y = (first output row / 4) * (numFilters / filtersPerThread) + channel batch
 * threadIdx.x: the thread's first case (and every B_X-th after it)
 * threadIdx.y: the thread's output in the square, row threadIdx.y / 4, column
 *              threadIdx.y % 4; the thread does all filtersPerThread channels of the block
 *
 * imgs:    (numFilters, imgSize * imgSize, numImages)
 * target:  (numFilters, outputsX * outputsX, numImages), overwritten
 *
 * The block walks the pixels under the union of its 16 windows; for each, all threads
 * stage it (see stagePixel), and then each thread whose window holds the pixel folds it
 * into its outputs and counts it in its regionSize. Threads of outputs past the edge
 * take part in the staging but write nothing.
 *
 * Needs B_X * imgsPerThread a multiple of 32 and numFilters a multiple of
 * filtersPerThread. The stores coalesce fully only for B_X = 32; the loads, which
 * dominate, always do.
 */
template<class Agg, int B_X, int imgsPerThread, int filtersPerThread, bool checkCaseBounds>
__global__ void kLocalPool2(float* imgs, float* target,
                            const int imgSize, const int numFilters, const int numImages,
                            const int subsX, const int startX, const int outputsX) {
    const Agg pool;
    __shared__ float shImgs[filtersPerThread][B_X * imgsPerThread];
    const int caseBlocks = DIVUP(numImages, B_X * imgsPerThread);
    const int chanBlocks = numFilters / filtersPerThread;
    const int squareX = 4 * (blockIdx.x / caseBlocks);
    const int squareY = 4 * (blockIdx.y / chanBlocks);
    const int firstCase = (blockIdx.x % caseBlocks) * B_X * imgsPerThread;
    const int firstChan = (blockIdx.y % chanBlocks) * filtersPerThread;
    const int imgPixels = imgSize * imgSize;
    const int numOutputs = outputsX * outputsX;

    const int tid = threadIdx.y * B_X + threadIdx.x;
    const int loadRow = tid / 32, loadCol = tid % 32;

    const int outX = squareX + threadIdx.y % 4;
    const int outY = squareY + threadIdx.y / 4;

    // stride 1: output k's window starts at pixel startX + k; the square's 16 windows
    // together span subsX + 3 pixels each way
    const int myTop = startX + outY, myLeft = startX + outX;
    const int myBottom = myTop + subsX, myRight = myLeft + subsX;
    const int yBegin = MAX(0, startX + squareY), yEnd = MIN(imgSize, startX + squareY + subsX + 3);
    const int xBegin = MAX(0, startX + squareX), xEnd = MIN(imgSize, startX + squareX + subsX + 3);

    const int caseIdx = firstCase + threadIdx.x;
    imgs += (firstChan + loadRow) * imgPixels * numImages + firstCase + loadCol;  // what this thread stages
    target += (firstChan * numOutputs + outY * outputsX + outX) * numImages + caseIdx;

    float acc[filtersPerThread][imgsPerThread];
    fillTile(acc, pool.getBaseValue());
    int regionSize = 0;
    for (int y = yBegin; y < yEnd; y++) {
        const bool rowInWindow = y >= myTop && y < myBottom;
        for (int x = xBegin; x < xEnd; x++) {
            stagePixel<B_X, imgsPerThread, filtersPerThread, checkCaseBounds>(
                shImgs, imgs + (y * imgSize + x) * numImages, imgPixels * numImages, loadRow, loadCol, firstCase,
                numImages);
            __syncthreads();

            if (rowInWindow && x >= myLeft && x < myRight) {
                #pragma unroll
                for (int i = 0; i < imgsPerThread; i++) {
                    if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
                        #pragma unroll
                        for (int f = 0; f < filtersPerThread; f++) {
                            acc[f][i] = pool(acc[f][i], shImgs[f][threadIdx.x + i * B_X]);
                        }
                    }
                }
                regionSize++;
            }
            __syncthreads();  // before the next pixel overwrites the stage
        }
    }

    if (outY < outputsX && outX < outputsX) {
        #pragma unroll
        for (int i = 0; i < imgsPerThread; i++) {
            if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
                #pragma unroll
                for (int f = 0; f < filtersPerThread; f++) {
                    target[f * numOutputs * numImages + i * B_X] = pool.output(acc[f][i], regionSize);
                }
            }
        }
    }
}

/*
 * Blocks of B_Y x B_X threads (4 x 32); each block computes the gradient at one input
 * pixel for a batch of cases and of channels.
 *
 * blockIdx.x = pixel column * DIVUP(numImages, B_X * imgsPerThread) + case batch
 * blockIdx.y = pixel row * (numFilters / (B_Y * filtersPerThread)) + channel batch
 * threadIdx.x: the thread's first case (and every B_X-th after it)
 * threadIdx.y: the thread's first channel of the batch; it also does the channels B_Y,
 *              2 B_Y, ... after it (filtersPerThread of them)
 *
 * imgs:        (numFilters, imgPixels, numImages), the input of the max pooling
 * maxGrads:    (numFilters, numOutputs, numImages), the gradient of its outputs
 * maxActs:     (numFilters, numOutputs, numImages), its outputs
 * target:      (numFilters, imgPixels, numImages)
 *
 * A pixel collects maxGrads[o] from every window o that covers it and whose maximum
 * maxActs[o] it equals (ties all collect). The thread parks its own input pixels in
 * shared memory (no other thread reads them) while it loops over the windows.
 *
 * Needs numFilters a multiple of B_Y * filtersPerThread.
 */
template<int B_Y, int B_X, int imgsPerThread, int filtersPerThread, bool add, bool checkCaseBounds>
__global__ void kLocalMaxUndo(float* imgs, float* maxGrads, float* maxActs, float* target,
                              const int imgSize, const int numFilters, const int numImages,
                              const int subsX, const int startX, const int strideX, const int outputsX,
                              const float scaleTargets, const float scaleOutputs) {
    __shared__ float shImgs[B_Y * filtersPerThread][B_X * imgsPerThread];
    const PixelBlock blk(DIVUP(numImages, B_X * imgsPerThread), B_X * imgsPerThread,
                         numFilters / (B_Y * filtersPerThread), B_Y * filtersPerThread);
    const int imgPixels = imgSize * imgSize;
    const int numOutputs = outputsX * outputsX;
    const int caseIdx = blk.firstCase + threadIdx.x;
    const int chan = blk.firstChan + threadIdx.y;
    const int chanStep = B_Y * imgPixels * numImages;       // between a thread's channels, in imgs
    const int outChanStep = B_Y * numOutputs * numImages;   // the same in maxActs / maxGrads

    // from here on each pointer is at the thread's first channel and case (and imgs and
    // target at the block's pixel)
    const int pixelOffset = (chan * imgPixels + blk.row * imgSize + blk.col) * numImages + caseIdx;
    imgs += pixelOffset;
    target += pixelOffset;
    maxActs += chan * numOutputs * numImages + caseIdx;
    maxGrads += chan * numOutputs * numImages + caseIdx;

    float acc[filtersPerThread][imgsPerThread];
    fillTile(acc, 0.0f);

    if (coveredByPooling(blk.col, startX, subsX, strideX, outputsX)
            && coveredByPooling(blk.row, startX, subsX, strideX, outputsX)) {
        int oyFirst, oyLast, oxFirst, oxLast;
        windowsCovering(blk.row, startX, subsX, strideX, outputsX, oyFirst, oyLast);
        windowsCovering(blk.col, startX, subsX, strideX, outputsX, oxFirst, oxLast);
        #pragma unroll
        for (int i = 0; i < imgsPerThread; i++) {
            if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
                #pragma unroll
                for (int f = 0; f < filtersPerThread; f++) {
                    shImgs[threadIdx.y + B_Y * f][threadIdx.x + B_X * i] = imgs[f * chanStep + i * B_X];
                }
            }
        }
        for (int oy = oyFirst; oy < oyLast; oy++) {
            for (int ox = oxFirst; ox < oxLast; ox++) {
                const int o = (oy * outputsX + ox) * numImages;
                #pragma unroll
                for (int i = 0; i < imgsPerThread; i++) {
                    if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
                        #pragma unroll
                        for (int f = 0; f < filtersPerThread; f++) {
                            const float winMax = maxActs[o + f * outChanStep + i * B_X];
                            const float winGrad = maxGrads[o + f * outChanStep + i * B_X];
                            const float mine = shImgs[threadIdx.y + B_Y * f][threadIdx.x + B_X * i];
                            acc[f][i] += (mine == winMax) * winGrad;
                        }
                    }
                }
            }
        }
    }

    #pragma unroll
    for (int i = 0; i < imgsPerThread; i++) {
        if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
            #pragma unroll
            for (int f = 0; f < filtersPerThread; f++) {
                storeResult<add>(&target[f * chanStep + i * B_X], acc[f][i], scaleTargets, scaleOutputs);
            }
        }
    }
}

/*
 * Blocks of B_Y x B_X threads (4 x 32), laid out as in kLocalMaxUndo.
 *
 * avgGrads:    (numFilters, numOutputs, numImages), the gradient of the average pooling
 * target:      (numFilters, imgPixels, numImages)
 *
 * A pixel collects avgGrads[o] / regionSize(o) from every window o that covers it, where
 * regionSize(o) counts the window's pixels inside the image, as the forward pass did. The
 * reciprocal is formed once per window, outside the case loop.
 *
 * Needs numFilters a multiple of B_Y * filtersPerThread.
 */
template<int B_Y, int B_X, int imgsPerThread, int filtersPerThread, bool add, bool checkCaseBounds>
__global__ void kLocalAvgUndo(float* avgGrads, float* target,
                              const int imgSize, const int numFilters, const int numImages,
                              const int subsX, const int startX, const int strideX, const int outputsX,
                              const float scaleTargets, const float scaleOutputs) {
    const PixelBlock blk(DIVUP(numImages, B_X * imgsPerThread), B_X * imgsPerThread,
                         numFilters / (B_Y * filtersPerThread), B_Y * filtersPerThread);
    const int imgPixels = imgSize * imgSize;
    const int numOutputs = outputsX * outputsX;
    const int caseIdx = blk.firstCase + threadIdx.x;
    const int chan = blk.firstChan + threadIdx.y;
    const int gradOffset = chan * numOutputs * numImages + caseIdx;
    const int outChanStep = B_Y * numOutputs * numImages;

    float acc[filtersPerThread][imgsPerThread];
    fillTile(acc, 0.0f);

    if (coveredByPooling(blk.col, startX, subsX, strideX, outputsX)
            && coveredByPooling(blk.row, startX, subsX, strideX, outputsX)) {
        int oyFirst, oyLast, oxFirst, oxLast;
        windowsCovering(blk.row, startX, subsX, strideX, outputsX, oyFirst, oyLast);
        windowsCovering(blk.col, startX, subsX, strideX, outputsX, oxFirst, oxLast);
        for (int oy = oyFirst; oy < oyLast; oy++) {
            const int top = startX + oy * strideX;
            const float height = fminf(imgSize, top + subsX) - fmaxf(0, top);
            for (int ox = oxFirst; ox < oxLast; ox++) {
                const int left = startX + ox * strideX;
                const float width = fminf(imgSize, left + subsX) - fmaxf(0, left);
                const float invRegion = 1.0f / (width * height);
                const int o = gradOffset + (oy * outputsX + ox) * numImages;
                #pragma unroll
                for (int i = 0; i < imgsPerThread; i++) {
                    if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
                        #pragma unroll
                        for (int f = 0; f < filtersPerThread; f++) {
                            acc[f][i] += avgGrads[o + f * outChanStep + i * B_X] * invRegion;
                        }
                    }
                }
            }
        }
    }

    float* dst = target + (chan * imgPixels + blk.row * imgSize + blk.col) * numImages + caseIdx;
    #pragma unroll
    for (int i = 0; i < imgsPerThread; i++) {
        if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
            #pragma unroll
            for (int f = 0; f < filtersPerThread; f++) {
                storeResult<add>(&dst[f * B_Y * imgPixels * numImages + i * B_X], acc[f][i], scaleTargets,
                                 scaleOutputs);
            }
        }
    }
}

/* ===================================================================================== *
 * Normalisation within a map. Response norm passes the images as meanDiffs; contrast    *
 * norm passes the images minus their local mean.                                        *
 * ===================================================================================== */

/*
 * denoms = 1 + addScale * s, output = image * denoms^-powScale, for one pixel of one
 * channel and one case, s being the window's sum of squares; __powf as in 2012
 */
__device__ __forceinline__ void normOutputs(const float s, const float addScale, const float powScale,
                                            const float image, float* denom, float* out) {
    const float d = 1 + addScale * s;
    *denom = d;
    *out = image * __powf(d, -powScale);
}

/*
 * Blocks of 128 x 1 threads, for layers of at most 8 channels (numFilters is a template
 * argument here); each block does one pixel of every channel for a batch of cases.
 *
 * blockIdx.x = pixel column * DIVUP(numImages, 128 * imgsPerThread) + case batch
 * blockIdx.y = pixel row
 * threadIdx.x: the thread's first case (and every 128th after it)
 *
 * imgs:        (numFilters, imgPixels, numImages)
 * meanDiffs:   (numFilters, imgPixels, numImages)
 * denoms:      (numFilters, imgPixels, numImages), written
 * target:      (numFilters, imgPixels, numImages), written
 *
 * s = sum of meanDiffs^2 over the sizeX x sizeX window whose top left pixel is
 * (y - sizeX/2, x - sizeX/2), clipped to the image; denoms = 1 + addScale * s and
 * target = imgs * denoms^-powScale.
 */
template<int imgsPerThread, int numFilters, bool checkCaseBounds>
__global__ void kCNorm_fewfilter(float* imgs, float* meanDiffs, float* denoms, float* target,
                                 const int imgSize, const int numImages, const int sizeX,
                                 const float addScale, const float powScale) {
    const int caseBlocks = DIVUP(numImages, 128 * imgsPerThread);
    const int pxX = blockIdx.x / caseBlocks;
    const int pxY = blockIdx.y;
    const int caseIdx = (blockIdx.x % caseBlocks) * 128 * imgsPerThread + threadIdx.x;
    const int imgPixels = imgSize * imgSize;
    const int chanStride = imgPixels * numImages;

    const int top = pxY - sizeX / 2, left = pxX - sizeX / 2;
    const int yBegin = MAX(0, top), yEnd = MIN(imgSize, top + sizeX);
    const int xBegin = MAX(0, left), xEnd = MIN(imgSize, left + sizeX);

    float acc[numFilters][imgsPerThread];
    fillTile(acc, 0.0f);
    for (int y = yBegin; y < yEnd; y++) {
        for (int x = xBegin; x < xEnd; x++) {
            const float* diffs = meanDiffs + (y * imgSize + x) * numImages + caseIdx;
            #pragma unroll
            for (int i = 0; i < imgsPerThread; i++) {
                if (caseInRange<checkCaseBounds>(caseIdx + i * 128, numImages)) {
                    #pragma unroll
                    for (int f = 0; f < numFilters; f++) {
                        acc[f][i] += square(diffs[f * chanStride + i * 128]);
                    }
                }
            }
        }
    }

    const int here = (pxY * imgSize + pxX) * numImages + caseIdx;
    #pragma unroll
    for (int i = 0; i < imgsPerThread; i++) {
        if (caseInRange<checkCaseBounds>(caseIdx + i * 128, numImages)) {
            #pragma unroll
            for (int f = 0; f < numFilters; f++) {
                const int e = here + f * chanStride + i * 128;
                normOutputs(acc[f][i], addScale, powScale, imgs[e], &denoms[e], &target[e]);
            }
        }
    }
}

/*
 * Blocks of B_Y x B_X threads (4 x 32), for small windows (sizeX below 6); each block does
 * one pixel for a batch of cases and of channels.
 *
 * blockIdx.x = pixel column * DIVUP(numImages, B_X * imgsPerThread) + case batch
 * blockIdx.y = pixel row * (numFilters / (B_Y * filtersPerThread)) + channel batch
 * threadIdx.x: the thread's first case (and every B_X-th after it)
 * threadIdx.y: the thread's first channel (and every B_Y-th after it)
 *
 * imgs, meanDiffs, denoms (written), target (written): (numFilters, imgPixels, numImages)
 *
 * Computes what kCNorm_fewfilter does. Needs numFilters a multiple of B_Y * filtersPerThread.
 */
template<int B_Y, int B_X, int imgsPerThread, int filtersPerThread, bool checkCaseBounds>
__global__ void kCNorm_manyfilter(float* imgs, float* meanDiffs, float* denoms, float* target,
                                  const int imgSize, const int numFilters, const int numImages, const int sizeX,
                                  const float addScale, const float powScale) {
    const PixelBlock blk(DIVUP(numImages, B_X * imgsPerThread), B_X * imgsPerThread,
                         numFilters / (B_Y * filtersPerThread), B_Y * filtersPerThread);
    const int imgPixels = imgSize * imgSize;
    const int caseIdx = blk.firstCase + threadIdx.x;
    const int chan = blk.firstChan + threadIdx.y;
    const int chanStep = B_Y * imgPixels * numImages;

    const int top = blk.row - sizeX / 2, left = blk.col - sizeX / 2;
    const int yBegin = MAX(0, top), yEnd = MIN(imgSize, top + sizeX);
    const int xBegin = MAX(0, left), xEnd = MIN(imgSize, left + sizeX);

    float acc[filtersPerThread][imgsPerThread];
    fillTile(acc, 0.0f);
    for (int y = yBegin; y < yEnd; y++) {
        for (int x = xBegin; x < xEnd; x++) {
            const float* diffs = meanDiffs + (chan * imgPixels + y * imgSize + x) * numImages + caseIdx;
            #pragma unroll
            for (int i = 0; i < imgsPerThread; i++) {
                if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
                    #pragma unroll
                    for (int f = 0; f < filtersPerThread; f++) {
                        acc[f][i] += square(diffs[f * chanStep + i * B_X]);
                    }
                }
            }
        }
    }

    const int here = (chan * imgPixels + blk.row * imgSize + blk.col) * numImages + caseIdx;
    #pragma unroll
    for (int i = 0; i < imgsPerThread; i++) {
        if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
            #pragma unroll
            for (int f = 0; f < filtersPerThread; f++) {
                const int e = here + f * chanStep + i * B_X;
                normOutputs(acc[f][i], addScale, powScale, imgs[e], &denoms[e], &target[e]);
            }
        }
    }
}

/*
 * Blocks of 16 x B_X threads (B_X = 8 from the host), for big windows (sizeX >= 6), with
 * the staging scheme of kLocalPool2: each block does a 4 x 4 square of pixels for a
 * batch of cases and filtersPerThread channels.
 *
 * blockIdx.x = (first pixel column / 4) * DIVUP(numImages, B_X * imgsPerThread) + case batch
 * blockIdx.y = (first pixel row / 4) * (numFilters / filtersPerThread) + channel batch
 * threadIdx.x: the thread's first case (and every B_X-th after it)
 * threadIdx.y: the thread's pixel in the square (row threadIdx.y / 4, column % 4)
 *
 * imgs, meanDiffs, denoms (written), target (written): (numFilters, imgPixels, numImages)
 *
 * Pixel p's window runs from p - sizeX/2 to p + DIVUP(sizeX, 2) (exclusive) each way. The
 * block stages meanDiffs at every pixel under the square's 16 windows, and each thread
 * whose window holds the staged pixel adds its square. Results as kCNorm_fewfilter.
 *
 * Needs B_X * imgsPerThread a multiple of 32 and numFilters a multiple of filtersPerThread.
 */
template<int B_X, int imgsPerThread, int filtersPerThread, bool checkCaseBounds>
__global__ void kCNorm2(float* imgs, float* meanDiffs, float* denoms, float* target,
                        const int imgSize, const int numFilters, const int numImages, const int sizeX,
                        const float addScale, const float powScale) {
    __shared__ float shDiffs[filtersPerThread][B_X * imgsPerThread];
    const int caseBlocks = DIVUP(numImages, B_X * imgsPerThread);
    const int chanBlocks = numFilters / filtersPerThread;
    const int squareX = 4 * (blockIdx.x / caseBlocks);
    const int squareY = 4 * (blockIdx.y / chanBlocks);
    const int firstCase = (blockIdx.x % caseBlocks) * B_X * imgsPerThread;
    const int firstChan = (blockIdx.y % chanBlocks) * filtersPerThread;
    const int imgPixels = imgSize * imgSize;
    const int chanStride = imgPixels * numImages;

    const int tid = threadIdx.y * B_X + threadIdx.x;
    const int loadRow = tid / 32, loadCol = tid % 32;

    const int before = sizeX / 2, after = DIVUP(sizeX, 2);  // window of p: [p - before, p + after)
    const int yBegin = MAX(0, squareY - before), yEnd = MIN(imgSize, squareY + after + 3);
    const int xBegin = MAX(0, squareX - before), xEnd = MIN(imgSize, squareX + after + 3);

    const int myX = squareX + threadIdx.y % 4;
    const int myY = squareY + threadIdx.y / 4;
    const int caseIdx = firstCase + threadIdx.x;
    const float* src = meanDiffs + (firstChan + loadRow) * chanStride + firstCase + loadCol;

    float acc[filtersPerThread][imgsPerThread];
    fillTile(acc, 0.0f);
    for (int y = yBegin; y < yEnd; y++) {
        const bool rowInWindow = y >= myY - before && y < myY + after;
        for (int x = xBegin; x < xEnd; x++) {
            stagePixel<B_X, imgsPerThread, filtersPerThread, checkCaseBounds>(
                shDiffs, src + (y * imgSize + x) * numImages, chanStride, loadRow, loadCol, firstCase, numImages);
            __syncthreads();

            if (rowInWindow && x >= myX - before && x < myX + after) {
                #pragma unroll
                for (int i = 0; i < imgsPerThread; i++) {
                    if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
                        #pragma unroll
                        for (int f = 0; f < filtersPerThread; f++) {
                            acc[f][i] += square(shDiffs[f][threadIdx.x + i * B_X]);
                        }
                    }
                }
            }
            __syncthreads();
        }
    }

    if (myX < imgSize && myY < imgSize) {
        const int here = (firstChan * imgPixels + myY * imgSize + myX) * numImages + caseIdx;
        #pragma unroll
        for (int i = 0; i < imgsPerThread; i++) {
            if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
                #pragma unroll
                for (int f = 0; f < filtersPerThread; f++) {
                    const int e = here + f * chanStride + i * B_X;
                    normOutputs(acc[f][i], addScale, powScale, imgs[e], &denoms[e], &target[e]);
                }
            }
        }
    }
}

/*
 * Blocks of B_X x 1 threads (128); at most 512 blocks, which stride over the data. Per
 * stride a thread does eltsPerThread elements B_X apart.
 *
 * acts, denoms, outGrads: numElements floats each
 *
 * acts = scale * outGrads * acts / denoms, in place (the host passes scale = -2 *
 * addScale * powScale), which leaves the gradient kernels below only sums to do.
 */
template<int B_X, int eltsPerThread>
__global__ void kRNormUndoPrelims(float* acts, float* denoms, float* outGrads,
                                  const uint numElements, const float scale) {
    const uint step = B_X * gridDim.x * eltsPerThread;
    for (uint e = B_X * blockIdx.x * eltsPerThread + threadIdx.x; e < numElements; e += step) {
        #pragma unroll
        for (uint k = 0; k < eltsPerThread; k++) {
            const uint j = e + k * B_X;
            if (j < numElements) {
                acts[j] = __fdividef(scale * outGrads[j] * acts[j], denoms[j]);
            }
        }
    }
}

/* the norm gradient at one element: input * (sum of the prepared acts) + outGrad * denom^-pow */
__device__ __forceinline__ float normGradient(const float input, const float actsSum, const float outGrad,
                                              const float denom, const float powScale) {
    return input * actsSum + outGrad * __powf(denom, -powScale);
}

/*
 * Blocks of B_Y x B_X threads (4 x 32), for small windows; each block does one pixel for a
 * batch of cases and of channels, laid out as kCNorm_manyfilter.
 *
 * outGrads:    (numFilters, imgPixels, numImages), the gradient of the norm's output
 * denoms:      (numFilters, imgPixels, numImages), from the forward pass
 * inputs:      (numFilters, imgPixels, numImages), the norm's input (or meanDiffs)
 * acts:        (numFilters, imgPixels, numImages), as kRNormUndoPrelims left them
 * target:      (numFilters, imgPixels, numImages)
 *
 * gradient at p = inputs[p] * (sum of acts[q] over the pixels q whose windows contain p,
 * q from p - DIVUP(sizeX, 2) + 1 to p + sizeX/2 each way) + outGrads[p] * denoms[p]^-powScale
 *
 * Needs numFilters a multiple of B_Y * filtersPerThread.
 */
template<int B_Y, int B_X, int imgsPerThread, int filtersPerThread, bool add, bool checkCaseBounds>
__global__ void kRNormUndo(float* outGrads, float* denoms, float* inputs, float* acts, float* target,
                           const int imgSize, const int numFilters, const int numImages, const int sizeX,
                           const float powScale, const float scaleTargets, const float scaleOutputs) {
    const PixelBlock blk(DIVUP(numImages, B_X * imgsPerThread), B_X * imgsPerThread,
                         numFilters / (B_Y * filtersPerThread), B_Y * filtersPerThread);
    const int imgPixels = imgSize * imgSize;
    const int caseIdx = blk.firstCase + threadIdx.x;
    const int chan = blk.firstChan + threadIdx.y;
    const int chanStep = B_Y * imgPixels * numImages;

    // the pixels whose windows reach this one
    const int yBegin = MAX(0, blk.row + sizeX / 2 - sizeX + 1), yEnd = MIN(imgSize, blk.row + sizeX / 2 + 1);
    const int xBegin = MAX(0, blk.col + sizeX / 2 - sizeX + 1), xEnd = MIN(imgSize, blk.col + sizeX / 2 + 1);

    float acc[filtersPerThread][imgsPerThread];
    fillTile(acc, 0.0f);
    for (int y = yBegin; y < yEnd; y++) {
        for (int x = xBegin; x < xEnd; x++) {
            const float* a = acts + (chan * imgPixels + y * imgSize + x) * numImages + caseIdx;
            #pragma unroll
            for (int i = 0; i < imgsPerThread; i++) {
                if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
                    #pragma unroll
                    for (int f = 0; f < filtersPerThread; f++) {
                        acc[f][i] += a[f * chanStep + i * B_X];
                    }
                }
            }
        }
    }

    const int here = (chan * imgPixels + blk.row * imgSize + blk.col) * numImages + caseIdx;
    #pragma unroll
    for (int i = 0; i < imgsPerThread; i++) {
        if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
            #pragma unroll
            for (int f = 0; f < filtersPerThread; f++) {
                const int e = here + f * chanStep + i * B_X;
                acc[f][i] = normGradient(inputs[e], acc[f][i], outGrads[e], denoms[e], powScale);
                storeResult<add>(&target[e], acc[f][i], scaleTargets, scaleOutputs);
            }
        }
    }
}

/*
 * Blocks of 16 x B_X threads (B_X = 16 from the host), for big windows (sizeX >= 6): the
 * staging scheme of kCNorm2 applied to the gradient of kRNormUndo.
 *
 * blockIdx.x = (first pixel column / 4) * DIVUP(numImages, B_X * imgsPerThread) + case batch
 * blockIdx.y = (first pixel row / 4) * (numFilters / filtersPerThread) + channel batch
 * threadIdx.x: the thread's first case (and every B_X-th after it)
 * threadIdx.y: the thread's pixel in the 4 x 4 square
 *
 * outGrads, denoms, inputs, acts (after kRNormUndoPrelims), target:
 *     (numFilters, imgPixels, numImages)
 *
 * The block stages the acts of every pixel whose window reaches its square; each thread
 * sums those whose window holds its own pixel. The gradient is kRNormUndo's.
 *
 * Needs B_X * imgsPerThread a multiple of 32 and numFilters a multiple of filtersPerThread.
 */
template<int B_X, int imgsPerThread, int filtersPerThread, bool add, bool checkCaseBounds>
__global__ void kRNormUndo2(float* outGrads, float* denoms, float* inputs, float* acts, float* target,
                            const int imgSize, const int numFilters, const int numImages, const int sizeX,
                            const float powScale, const float scaleTargets, const float scaleOutputs) {
    __shared__ float shActs[filtersPerThread][B_X * imgsPerThread];
    const int caseBlocks = DIVUP(numImages, B_X * imgsPerThread);
    const int chanBlocks = numFilters / filtersPerThread;
    const int squareX = 4 * (blockIdx.x / caseBlocks);
    const int squareY = 4 * (blockIdx.y / chanBlocks);
    const int firstCase = (blockIdx.x % caseBlocks) * B_X * imgsPerThread;
    const int firstChan = (blockIdx.y % chanBlocks) * filtersPerThread;
    const int imgPixels = imgSize * imgSize;
    const int chanStride = imgPixels * numImages;

    const int tid = threadIdx.y * B_X + threadIdx.x;
    const int loadRow = tid / 32, loadCol = tid % 32;

    // q's window holds p for q in [p - reachBefore, p + reachAfter)
    const int reachBefore = DIVUP(sizeX, 2) - 1, reachAfter = sizeX / 2 + 1;
    const int yBegin = MAX(0, squareY - reachBefore), yEnd = MIN(imgSize, squareY + reachAfter + 3);
    const int xBegin = MAX(0, squareX - reachBefore), xEnd = MIN(imgSize, squareX + reachAfter + 3);

    const int myX = squareX + threadIdx.y % 4;
    const int myY = squareY + threadIdx.y / 4;
    const int caseIdx = firstCase + threadIdx.x;
    const float* src = acts + (firstChan + loadRow) * chanStride + firstCase + loadCol;

    float acc[filtersPerThread][imgsPerThread];
    fillTile(acc, 0.0f);
    for (int y = yBegin; y < yEnd; y++) {
        const bool rowReaches = y >= myY - reachBefore && y < myY + reachAfter;
        for (int x = xBegin; x < xEnd; x++) {
            stagePixel<B_X, imgsPerThread, filtersPerThread, checkCaseBounds>(
                shActs, src + (y * imgSize + x) * numImages, chanStride, loadRow, loadCol, firstCase, numImages);
            __syncthreads();

            if (rowReaches && x >= myX - reachBefore && x < myX + reachAfter) {
                #pragma unroll
                for (int i = 0; i < imgsPerThread; i++) {
                    if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
                        #pragma unroll
                        for (int f = 0; f < filtersPerThread; f++) {
                            acc[f][i] += shActs[f][threadIdx.x + i * B_X];
                        }
                    }
                }
            }
            __syncthreads();
        }
    }

    if (myX < imgSize && myY < imgSize) {
        const int here = (firstChan * imgPixels + myY * imgSize + myX) * numImages + caseIdx;
        #pragma unroll
        for (int i = 0; i < imgsPerThread; i++) {
            if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
                #pragma unroll
                for (int f = 0; f < filtersPerThread; f++) {
                    const int e = here + f * chanStride + i * B_X;
                    acc[f][i] = normGradient(inputs[e], acc[f][i], outGrads[e], denoms[e], powScale);
                    storeResult<add>(&target[e], acc[f][i], scaleTargets, scaleOutputs);
                }
            }
        }
    }
}

/* ===================================================================================== *
 * Normalisation across maps (cmrnorm)                                                   *
 * ===================================================================================== */

/*
 * Blocks of B_Y x B_X threads (4 x 32); each block does one pixel for a batch of cases and
 * B_Y channels, one channel per row of threads.
 *
 * blockIdx.x = pixel column * DIVUP(numImages, B_X * imgsPerThread) + case batch
 * blockIdx.y = pixel row * (numFilters / B_Y) + channel batch
 * threadIdx.x: the thread's first case (and every B_X-th after it)
 * threadIdx.y: the thread's channel in the batch
 *
 * imgs:        (numFilters, imgPixels, numImages)
 * meanDiffs:   (numFilters, imgPixels, numImages) (the response norm passes imgs)
 * denoms:      (numFilters, imgPixels, numImages), written
 * target:      (numFilters, imgPixels, numImages), written
 *
 * For channel f: s = sum of meanDiffs^2 over the channels of f's group, which is
 * f - sizeF/2 ... f - sizeF/2 + sizeF - 1 cut to [0, numFilters), or with blocked the
 * aligned block of sizeF channels holding f (cut at numFilters);
 * denoms = minDiv + addScale * s and target = imgs * denoms^-powScale.
 * minDiv is CHM's constant k; the kernel of cuda-convnet r561 had 1 there.
 *
 * Needs numFilters a multiple of B_Y.
 */
template<int B_Y, int B_X, int imgsPerThread, bool checkCaseBounds, bool blocked>
__global__ void kFCNorm(float* imgs, float* meanDiffs, float* denoms, float* target,
                        const int imgSize, const int numFilters, const int numImages, const int sizeF,
                        const float addScale, const float powScale, const float minDiv) {
    const PixelBlock blk(DIVUP(numImages, B_X * imgsPerThread), B_X * imgsPerThread, numFilters / B_Y, B_Y);
    const int chan = blk.firstChan + threadIdx.y;
    const int caseIdx = blk.firstCase + threadIdx.x;
    const int imgPixels = imgSize * imgSize;
    const int chanStride = imgPixels * numImages;
    const int pixelOffset = (blk.row * imgSize + blk.col) * numImages + caseIdx;

    const int groupStart = blocked ? (chan / sizeF) * sizeF : chan - sizeF / 2;
    const int fBegin = blocked ? groupStart : MAX(0, groupStart);
    const int fEnd = MIN(numFilters, groupStart + sizeF);

    float acc[imgsPerThread];
    #pragma unroll
    for (int i = 0; i < imgsPerThread; i++) {
        acc[i] = 0;
    }
    for (int f = fBegin; f < fEnd; f++) {
        #pragma unroll
        for (int i = 0; i < imgsPerThread; i++) {
            if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
                acc[i] += square(meanDiffs[pixelOffset + f * chanStride + i * B_X]);
            }
        }
    }

    const int here = pixelOffset + chan * chanStride;
    #pragma unroll
    for (int i = 0; i < imgsPerThread; i++) {
        if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
            const float d = minDiv + addScale * acc[i];
            denoms[here + i * B_X] = d;
            target[here + i * B_X] = imgs[here + i * B_X] * __powf(d, -powScale);
        }
    }
}

/*
 * Blocks of B_Y x B_X threads (4 x 32), laid out as kFCNorm.
 *
 * outGrads, denoms, inputs, acts (after kRNormUndoPrelims), target:
 *     (numFilters, imgPixels, numImages)
 *
 * gradient of channel f = inputs[f] * (sum of acts[g] over the channels g whose group
 * holds f: f - sizeF + sizeF/2 + 1 ... f + sizeF/2 cut to [0, numFilters), or with blocked
 * f's own block) + outGrads[f] * denoms[f]^-powScale. minDiv only shifts the denominators,
 * so it does not appear here.
 *
 * Needs numFilters a multiple of B_Y.
 */
template<int B_Y, int B_X, int imgsPerThread, bool add, bool checkCaseBounds, bool blocked>
__global__ void kFRNormUndo(float* outGrads, float* denoms, float* inputs, float* acts, float* target,
                            const int imgSize, const int numFilters, const int numImages, const int sizeF,
                            const float powScale, const float scaleTargets, const float scaleOutputs) {
    const PixelBlock blk(DIVUP(numImages, B_X * imgsPerThread), B_X * imgsPerThread, numFilters / B_Y, B_Y);
    const int chan = blk.firstChan + threadIdx.y;
    const int caseIdx = blk.firstCase + threadIdx.x;
    const int imgPixels = imgSize * imgSize;
    const int chanStride = imgPixels * numImages;
    const int pixelOffset = (blk.row * imgSize + blk.col) * numImages + caseIdx;

    const int groupStart = blocked ? (chan / sizeF) * sizeF : chan - sizeF + sizeF / 2 + 1;
    const int fBegin = blocked ? groupStart : MAX(0, groupStart);
    const int fEnd = MIN(numFilters, groupStart + sizeF);

    float acc[imgsPerThread];
    #pragma unroll
    for (int i = 0; i < imgsPerThread; i++) {
        acc[i] = 0;
    }
    for (int f = fBegin; f < fEnd; f++) {
        #pragma unroll
        for (int i = 0; i < imgsPerThread; i++) {
            if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
                acc[i] += acts[pixelOffset + f * chanStride + i * B_X];
            }
        }
    }

    const int here = pixelOffset + chan * chanStride;
    #pragma unroll
    for (int i = 0; i < imgsPerThread; i++) {
        if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
            const int e = here + i * B_X;
            acc[i] = normGradient(inputs[e], acc[i], outGrads[e], denoms[e], powScale);
            storeResult<add>(&target[e], acc[i], scaleTargets, scaleOutputs);
        }
    }
}

/* ===================================================================================== *
 * CHM's TICA cost                                                                       *
 * ===================================================================================== */

/*
 * Blocks of B_Y x B_X threads (4 x 32), laid out as kCNorm_manyfilter.
 *
 * imgs:    (numFilters, imgPixels, numImages)
 * target:  (numFilters, imgPixels, numImages)
 *
 * With s the sum of imgs^2 over the window of kCNorm_manyfilter (sizeX wide, starting
 * sizeX/2 before the pixel, clipped): target = scaleTarget * target + scaleOutput /
 * (0.001 + sqrt(s)); the old target is not read when scaleTarget is 0.
 * Needs numFilters a multiple of B_Y * filtersPerThread.
 */
template<int B_Y, int B_X, int imgsPerThread, int filtersPerThread, bool checkCaseBounds>
__global__ void kTICA_manyfilter(float* imgs, float* target,
                                 const int imgSize, const int numFilters, const int numImages, const int sizeX,
                                 const float scaleTarget, const float scaleOutput) {
    const PixelBlock blk(DIVUP(numImages, B_X * imgsPerThread), B_X * imgsPerThread,
                         numFilters / (B_Y * filtersPerThread), B_Y * filtersPerThread);
    const int imgPixels = imgSize * imgSize;
    const int caseIdx = blk.firstCase + threadIdx.x;
    const int chan = blk.firstChan + threadIdx.y;
    const int chanStep = B_Y * imgPixels * numImages;

    const int top = blk.row - sizeX / 2, left = blk.col - sizeX / 2;
    const int yBegin = MAX(0, top), yEnd = MIN(imgSize, top + sizeX);
    const int xBegin = MAX(0, left), xEnd = MIN(imgSize, left + sizeX);

    float acc[filtersPerThread][imgsPerThread];
    fillTile(acc, 0.0f);
    for (int y = yBegin; y < yEnd; y++) {
        for (int x = xBegin; x < xEnd; x++) {
            const float* v = imgs + (chan * imgPixels + y * imgSize + x) * numImages + caseIdx;
            #pragma unroll
            for (int i = 0; i < imgsPerThread; i++) {
                if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
                    #pragma unroll
                    for (int f = 0; f < filtersPerThread; f++) {
                        acc[f][i] += square(v[f * chanStep + i * B_X]);
                    }
                }
            }
        }
    }

    float* dst = target + (chan * imgPixels + blk.row * imgSize + blk.col) * numImages + caseIdx;
    #pragma unroll
    for (int i = 0; i < imgsPerThread; i++) {
        if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
            #pragma unroll
            for (int f = 0; f < filtersPerThread; f++) {
                float* t = dst + f * chanStep + i * B_X;
                *t = scaledStore(*t, __fdividef(1.0f, 0.001f + sqrtf(acc[f][i])), scaleTarget, scaleOutput);
            }
        }
    }
}

/*
 * Blocks of B_Y x B_X threads (4 x 32), laid out as kCNorm_manyfilter.
 *
 * imgs:    (numFilters, imgPixels, numImages)
 * ticas:   (numFilters, imgPixels, numImages), what kTICA_manyfilter wrote
 * target:  (numFilters, imgPixels, numImages)
 *
 * With t the sum of ticas over kTICA_manyfilter's window:
 *   scaleTarget == 0:  target = scaleOutput * -imgs * t
 *   otherwise:         target = scaleTarget * target + scaleOutput * -imgs * sqrt(t)
 * (the square root on the accumulating path only is how CHM wrote it, and is kept.)
 * Needs numFilters a multiple of B_Y * filtersPerThread.
 */
template<int B_Y, int B_X, int imgsPerThread, int filtersPerThread, bool checkCaseBounds>
__global__ void kTICAGrad_manyfilter(float* imgs, float* ticas, float* target,
                                     const int imgSize, const int numFilters, const int numImages, const int sizeX,
                                     const float scaleTarget, const float scaleOutput) {
    const PixelBlock blk(DIVUP(numImages, B_X * imgsPerThread), B_X * imgsPerThread,
                         numFilters / (B_Y * filtersPerThread), B_Y * filtersPerThread);
    const int imgPixels = imgSize * imgSize;
    const int caseIdx = blk.firstCase + threadIdx.x;
    const int chan = blk.firstChan + threadIdx.y;
    const int chanStep = B_Y * imgPixels * numImages;

    const int top = blk.row - sizeX / 2, left = blk.col - sizeX / 2;
    const int yBegin = MAX(0, top), yEnd = MIN(imgSize, top + sizeX);
    const int xBegin = MAX(0, left), xEnd = MIN(imgSize, left + sizeX);

    float acc[filtersPerThread][imgsPerThread];
    fillTile(acc, 0.0f);
    for (int y = yBegin; y < yEnd; y++) {
        for (int x = xBegin; x < xEnd; x++) {
            const float* v = ticas + (chan * imgPixels + y * imgSize + x) * numImages + caseIdx;
            #pragma unroll
            for (int i = 0; i < imgsPerThread; i++) {
                if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
                    #pragma unroll
                    for (int f = 0; f < filtersPerThread; f++) {
                        acc[f][i] += v[f * chanStep + i * B_X];
                    }
                }
            }
        }
    }

    const int here = (chan * imgPixels + blk.row * imgSize + blk.col) * numImages + caseIdx;
    #pragma unroll
    for (int i = 0; i < imgsPerThread; i++) {
        if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
            #pragma unroll
            for (int f = 0; f < filtersPerThread; f++) {
                const int e = here + f * chanStep + i * B_X;
                const float img = imgs[e];
                target[e] = scaleTarget == 0 ? scaleOutput * -img * acc[f][i]
                                             : scaleTarget * target[e] + scaleOutput * -img * sqrtf(acc[f][i]);
            }
        }
    }
}

/* ===================================================================================== *
 * Image transforms                                                                      *
 * ===================================================================================== */

/*
 * Blocks of B_Y x B_X threads (4 x 32); one thread per line and case.
 *
 * B_X * blockIdx.x + threadIdx.x: the case
 * B_Y * blockIdx.y + threadIdx.y: the line, channel * imgSize + k, which is pixel row k of
 *     the channel when horiz, else pixel column k
 *
 * imgs:    (numChannels, imgPixels, numImages), rows imgStride apart
 * filter:  (1, 2*radius + 1), radius 1 to 4
 * target:  (numChannels, imgPixels, numImages); may be imgs itself (a thread always reads
 *          a pixel of its line before it writes there)
 *
 * Convolves each line with the filter, treating pixels beyond the image as 0. The thread
 * walks its line once, keeping the 2*radius outputs still waiting for pixels in registers:
 * each new pixel is added into them and completes the oldest, which is stored. The taps
 * follow 2012 exactly: pixels before index radius are weighted filter[radius + d], later
 * ones filter[radius - d] (d = source - output), and filter[0] stands in where
 * filter[2 radius] belongs -- identical for the symmetric filters the blur layer passes.
 *
 * The shared copy of the filter has 2*radius entries (2012 declared radius of them and
 * wrote 2*radius), written by the block's first row of threads (2012 had every row write
 * the same values at once, a data race); lines past numChannels * imgSize do nothing
 * (2012 did not check).
 */
template<int B_Y, int B_X, int radius>
__global__ void kGaussianBlur(float* imgs, float* filter, float* target,
                              const int imgSize, const int numImages, const int imgStride, const int numChannels,
                              const bool horiz, const float scaleTargets, const float scaleOutputs) {
    __shared__ float shFilter[2 * radius];
    const int taps = 2 * radius;  // the entries of filter that are used

    const int line = B_Y * blockIdx.y + threadIdx.y;
    const int chan = line / imgSize;
    const int k = line % imgSize;
    const int caseIdx = B_X * blockIdx.x + threadIdx.x;
    const int imgPixels = imgSize * imgSize;

    // consecutive pixels of a line are 1 (rows) or imgSize (columns) pixels apart
    const int firstPx = horiz ? k * imgSize : k;
    const int srcStep = horiz ? imgStride : imgStride * imgSize;
    const int dstStep = horiz ? numImages : numImages * imgSize;
    const float* src = imgs + (chan * imgPixels + firstPx) * imgStride + caseIdx;
    float* dst = target + (chan * imgPixels + firstPx) * numImages + caseIdx;

    float pending[taps];
    #pragma unroll
    for (int r = 0; r < taps; r++) {
        pending[r] = 0;
    }
    if (threadIdx.y == 0 && threadIdx.x < taps) {
        shFilter[threadIdx.x] = filter[threadIdx.x];
    }
    __syncthreads();

    if (caseIdx >= numImages || line >= numChannels * imgSize) {
        return;
    }
    // the first radius pixels feed the first 2*radius outputs
    #pragma unroll
    for (int p = 0; p < radius; p++) {
        const float v = *src;
        #pragma unroll
        for (int r = 0; r <= radius + p; r++) {
            pending[r] += v * shFilter[radius + p - r];
        }
        src += srcStep;
    }
    // each later pixel completes the oldest output and opens the newest
    for (int p = radius; p < imgSize; p++) {
        const float v = *src;
        const float done = pending[0] + v * shFilter[0];
        *dst = scaleTargets == 0 ? scaleOutputs * done : scaleTargets * *dst + scaleOutputs * done;
        #pragma unroll
        for (int r = 1; r < taps; r++) {
            pending[r - 1] = pending[r] + v * shFilter[r];
        }
        pending[taps - 1] = v * shFilter[0];
        src += srcStep;
        dst += dstStep;
    }
    // the last radius outputs have all their pixels now
    #pragma unroll
    for (int r = 0; r < radius; r++) {
        *dst = scaleTargets == 0 ? scaleOutputs * pending[r] : scaleTargets * *dst + scaleOutputs * pending[r];
        dst += dstStep;
    }
}

/*
 * Blocks of B_Y x B_X threads (4 x 32); each block does one nail (an output pixel) for a
 * batch of cases and channels, with the layout of kLocalPool.
 *
 * blockIdx.x = output column * DIVUP(numImages, B_X * imgsPerThread) + case batch
 * blockIdx.y = output row * DIVUP(numChannels, B_Y * chansPerThread) + channel batch
 * threadIdx.x: the thread's first case (and every B_X-th after it)
 * threadIdx.y: which run of chansPerThread adjacent channels the thread does
 *
 * imgs:    (numChannels, imgPixels, numImages)
 * target:  (numChannels, outputsX * outputsX, numImages), outputsX = DIVUP(imgSize, strideX)
 *
 * Nail (oy, ox) sits on pixel (startX + oy * strideX, startX + ox * strideX).
 *   forward (reverse false): target[nail] = scaleTargets * target[nail] + scaleOutput * imgs[pixel]
 *   reverse:                 imgs[pixel] = scaleTargets * imgs[pixel] + scaleOutput * target[nail]
 * The gradient runs in reverse; the host has already zeroed or scaled the pixels of imgs
 * that carry no nail.
 */
template<int B_Y, int B_X, int imgsPerThread, int chansPerThread, bool checkCaseBounds>
__global__ void kBedOfNails(float* imgs, float* target,
                            const int imgSize, const int numChannels, const int numImages,
                            const int startX, const int strideX, const int outputsX,
                            const bool reverse, const float scaleTargets, const float scaleOutput) {
    const PixelBlock blk(DIVUP(numImages, B_X * imgsPerThread), B_X * imgsPerThread,
                         DIVUP(numChannels, B_Y * chansPerThread), B_Y * chansPerThread);
    const int chan = blk.firstChan + threadIdx.y * chansPerThread;
    if (chan >= numChannels) {
        return;
    }
    const int caseIdx = blk.firstCase + threadIdx.x;
    const int imgPixels = imgSize * imgSize;
    const int numOutputs = outputsX * outputsX;
    const int pixel = (startX + blk.row * strideX) * imgSize + startX + blk.col * strideX;

    float* px = imgs + (chan * imgPixels + pixel) * numImages + caseIdx;
    float* nail = target + (chan * numOutputs + blk.row * outputsX + blk.col) * numImages + caseIdx;
    #pragma unroll
    for (int i = 0; i < imgsPerThread; i++) {
        if (caseInRange<checkCaseBounds>(caseIdx + i * B_X, numImages)) {
            #pragma unroll
            for (int c = 0; c < chansPerThread; c++) {
                float* a = px + c * imgPixels * numImages + i * B_X;
                float* b = nail + c * numOutputs * numImages + i * B_X;
                float* to = reverse ? a : b;
                *to = scaledStore(*to, reverse ? *b : *a, scaleTargets, scaleOutput);
            }
        }
    }
}

/* t * a + (1 - t) * b, evaluated as t * (a - b) + b with each step rounded on its own */
__device__ __forceinline__ float blendRounded(const float t, const float a, const float b) {
    return __fadd_rn(__fmul_rn(t, a - b), b);
}

/* where target coordinate p samples the source: p * scale + centerScale, clamped */
__device__ __forceinline__ float sourceCoord(const int p, const float scale, const float centerScale,
                                             const float maxCoord) {
    return fmaxf(0.0f, fminf(maxCoord, __fadd_rn(__fmul_rn(__int2float_rn(p), scale), centerScale)));
}

/*
 * Blocks of 16 x 32 threads; each block does a 4 x 4 chunk of one channel of the output
 * for a batch of cases.
 *
 * blockIdx.x: the batch of 32 * imgsPerThread cases
 * blockIdx.y = channel * DIVUP(tgtSize, 4)^2 + chunk, chunks numbered row-major
 * threadIdx.x: the thread's first case (and every 32nd after it)
 * threadIdx.y: the thread's pixel in the chunk (row threadIdx.y / 4, column % 4)
 *
 * imgs:    (numChannels, imgSize^2, numImages), rows imgStride apart
 * target:  (numChannels, tgtSize^2, numImages)
 *
 * Target pixel p reads the source at clamp(p * scale + centerScale, 0, imgSize - 1.01)
 * along each axis (imgSize is about scale * tgtSize) and blends its four neighbours
 * bilinearly. A simple kernel that counts on the cache; resizing costs next to nothing in
 * a net. Every product and sum is rounded separately (__fmul_rn, __fadd_rn), as the NumPy
 * reference rounds them, so the sample positions agree bit for bit.
 */
template<int imgsPerThread, bool checkCaseBounds>
__global__ void kResizeBilinear(float* imgs, float* target, const int imgSize, const int tgtSize,
                                const int numImages, const int imgStride,
                                const float scale, const float centerScale) {
    const int chunksPerRow = DIVUP(tgtSize, 4);
    const int chunksPerChannel = chunksPerRow * chunksPerRow;
    const int chan = blockIdx.y / chunksPerChannel;
    const int chunk = blockIdx.y % chunksPerChannel;
    const int tx = 4 * (chunk % chunksPerRow) + threadIdx.y % 4;
    const int ty = 4 * (chunk / chunksPerRow) + threadIdx.y / 4;
    if (tx >= tgtSize || ty >= tgtSize) {
        return;
    }
    const int caseIdx = blockIdx.x * 32 * imgsPerThread + threadIdx.x;

    // (upsampling bends the last row and column slightly, through the clamp; so did 2012)
    const float maxCoord = __int2float_rn(imgSize) - 1.01f;
    const float sx = sourceCoord(tx, scale, centerScale, maxCoord);
    const float sy = sourceCoord(ty, scale, centerScale, maxCoord);
    const float leftWeight = floorf(sx + 1) - sx;
    const float lowerWeight = sy - floorf(sy);

    const int topLeft = __float2int_rd(sy) * imgSize + __float2int_rd(sx);
    const int bottomLeft = topLeft + imgSize;
    const float* src = imgs + chan * imgSize * imgSize * imgStride + caseIdx;
    float* dst = target + (chan * tgtSize * tgtSize + ty * tgtSize + tx) * numImages + caseIdx;

    #pragma unroll
    for (int i = 0; i < imgsPerThread; i++) {
        if (caseInRange<checkCaseBounds>(caseIdx + i * 32, numImages)) {
            const float* s = src + i * 32;
            const float upper = blendRounded(leftWeight, s[topLeft * imgStride], s[(topLeft + 1) * imgStride]);
            const float lower = blendRounded(leftWeight, s[bottomLeft * imgStride], s[(bottomLeft + 1) * imgStride]);
            dst[i * 32] = blendRounded(lowerWeight, lower, upper);
        }
    }
}

/* k0 * x0 + k1 * x1 + k2 * x2, summed left to right (a row of a colour matrix) */
__device__ __forceinline__ float rowTimes(const float k0, const float k1, const float k2,
                                          const float x0, const float x1, const float x2) {
    return k0 * x0 + k1 * x1 + k2 * x2;
}

/*
 * Blocks of 4 x 32 threads.
 *
 * blockIdx.x: the batch of 32 * imgsPerThread cases
 * blockIdx.y: the batch of 4 pixels
 * threadIdx.x: the thread's first case (and every 32nd after it)
 * threadIdx.y: the thread's pixel in the batch
 *
 * imgs:    (3, imgPixels, numImages), rows imgStride apart
 * target:  (3, imgPixels, numImages)
 *
 * Each thread maps its (R, G, B) pixels to (Y, U, V) by the BT.709 matrix
 *     Y =  0.2126  R + 0.7152  G + 0.0722  B
 *     U = -0.09991 R - 0.33609 G + 0.436   B
 *     V =  0.615   R - 0.55861 G - 0.05639 B
 */
template<int imgsPerThread, bool checkCaseBounds>
__global__ void kRGBToYUV(float* imgs, float* target, const int imgPixels, const int numImages, const int imgStride) {
    const int caseIdx = blockIdx.x * 32 * imgsPerThread + threadIdx.x;
    const int px = blockIdx.y * 4 + threadIdx.y;
    if (px >= imgPixels) {
        return;
    }
    const float* red = imgs + px * imgStride + caseIdx;
    const float* green = red + imgPixels * imgStride;
    const float* blue = green + imgPixels * imgStride;
    float* lum = target + px * numImages + caseIdx;
    float* chromaU = lum + imgPixels * numImages;
    float* chromaV = chromaU + imgPixels * numImages;

    #pragma unroll
    for (int i = 0; i < imgsPerThread; i++) {
        if (caseInRange<checkCaseBounds>(caseIdx + i * 32, numImages)) {
            const int c = i * 32;
            const float R = red[c], G = green[c], B = blue[c];
            lum[c] = rowTimes(0.2126f, 0.7152f, 0.0722f, R, G, B);
            chromaU[c] = rowTimes(-0.09991f, -0.33609f, 0.436f, R, G, B);
            chromaV[c] = rowTimes(0.615f, -0.55861f, -0.05639f, R, G, B);
        }
    }
}

/* the L*a*b* companding curve: t^(1/3) above (6/29)^3, below it the tangent line */
__device__ __forceinline__ float labf(const float t) {
    return t > 0.0088564517f ? __powf(t, 0.3333f) : 7.787037f * t + 0.13793103f;
}

/*
 * Blocks of 4 x 32 threads, laid out as kRGBToYUV.
 *
 * imgs:    (3, imgPixels, numImages), rows imgStride apart; values in [0, 1], not
 *          mean-subtracted
 * target:  (3, imgPixels, numImages)
 *
 * Each thread maps its (R, G, B) pixels first to (X, Y, Z) by
 *     X = 0.49 R + 0.31 G + 0.2 B,  Y = 0.17697 R + 0.8124 G + 0.01063 B,  Z = 0.01 G + 0.99 B
 * (the 2012 comment mentions a factor of 5.6506753 the code never applies), then to
 *     L* = 116 f(Y) - 16, less 50 with center;  a* = 500 (f(X) - f(Y));  b* = 200 (f(Y) - f(Z)).
 */
template<int imgsPerThread, bool checkCaseBounds, bool center>
__global__ void kRGBToLAB(float* imgs, float* target, const int imgPixels, const int numImages, const int imgStride) {
    const int caseIdx = blockIdx.x * 32 * imgsPerThread + threadIdx.x;
    const int px = blockIdx.y * 4 + threadIdx.y;
    if (px >= imgPixels) {
        return;
    }
    const float* red = imgs + px * imgStride + caseIdx;
    const float* green = red + imgPixels * imgStride;
    const float* blue = green + imgPixels * imgStride;
    float* outL = target + px * numImages + caseIdx;
    float* outA = outL + imgPixels * numImages;
    float* outB = outA + imgPixels * numImages;

    #pragma unroll
    for (int i = 0; i < imgsPerThread; i++) {
        if (caseInRange<checkCaseBounds>(caseIdx + i * 32, numImages)) {
            const int c = i * 32;
            const float R = red[c], G = green[c], B = blue[c];
            const float fX = labf(rowTimes(0.49f, 0.31f, 0.2f, R, G, B));
            const float fY = labf(rowTimes(0.17697f, 0.8124f, 0.01063f, R, G, B));
            const float fZ = labf(0.01f * G + 0.99f * B);
            outL[c] = 116.0f * fY - 16.0f - (center ? 50.0f : 0.0f);
            outA[c] = 500.0f * (fX - fY);
            outB[c] = 200.0f * (fY - fZ);
        }
    }
}

/*
 * Blocks of 4 x 32 threads.
 *
 * blockIdx.x: the batch of 32 * imgsPerThread cases
 * blockIdx.y = channel * DIVUP(tgtSize^2, 4) + batch of 4 target pixels
 * threadIdx.x: the thread's first case (and every 32nd after it)
 * threadIdx.y: the thread's target pixel in the batch
 *
 * imgs:    (numChannels, imgSize^2, numImages), rows imgStride apart
 * target:  (numChannels, tgtSize^2, numImages)
 *
 * target pixel (y, x) = imgs pixel (startY + y, startX + x); unsigned arithmetic, as 2012.
 */
template<int imgsPerThread, bool checkCaseBounds>
__global__ void kCrop(float* imgs, float* target, const uint numImages, const int imgStride,
                      const uint imgSize, const uint tgtSize, const uint startY, const uint startX) {
    const uint tgtPixels = tgtSize * tgtSize;
    const uint batchesPerChannel = DIVUP(tgtPixels, 4);
    const uint chan = blockIdx.y / batchesPerChannel;
    const uint tgtPx = 4 * (blockIdx.y % batchesPerChannel) + threadIdx.y;
    if (tgtPx >= tgtPixels) {
        return;
    }
    const uint caseIdx = blockIdx.x * 32 * imgsPerThread + threadIdx.x;
    const uint srcPx = (startY + tgtPx / tgtSize) * imgSize + startX + tgtPx % tgtSize;
    const float* src = imgs + (chan * imgSize * imgSize + srcPx) * imgStride + caseIdx;
    float* dst = target + (chan * tgtPixels + tgtPx) * numImages + caseIdx;

    #pragma unroll
    for (uint i = 0; i < imgsPerThread; i++) {
        if (!checkCaseBounds || caseIdx + 32 * i < numImages) {
            dst[32 * i] = src[32 * i];
        }
    }
}

/*
 * Not in the 2012 sources: CHM's href layer calls a convReflectHorizontal whose kernel the
 * release does not include. Written after kCrop.
 *
 * Blocks of 4 x 32 threads.
 *
 * blockIdx.x: the batch of 32 * imgsPerThread cases
 * blockIdx.y = channel * DIVUP(numPairs, 4) + batch of 4 mirror pairs, with numPairs =
 *              imgSize * DIVUP(imgSize, 2)
 * threadIdx.x: the thread's first case (and every 32nd after it)
 * threadIdx.y: the thread's pair in the batch; pair k is row k / DIVUP(imgSize, 2) at the
 *              columns x = k % DIVUP(imgSize, 2) and imgSize - 1 - x (the same column in
 *              the middle of an odd row)
 *
 * imgs:    (numChannels, imgPixels, numImages)
 * target:  (numChannels, imgPixels, numImages); may be imgs (both pixels of a pair are read
 *          before either is written, and no other thread touches them)
 *
 * target[y, x] = scaleTargets * target[y, x] + scaleOutput * imgs[y, imgSize - 1 - x]
 */
template<int imgsPerThread, bool checkCaseBounds>
__global__ void kReflectH(float* imgs, float* target, const int imgSize, const int numImages,
                          const float scaleTargets, const float scaleOutput) {
    const int half = DIVUP(imgSize, 2);
    const int numPairs = imgSize * half;
    const int batchesPerChannel = DIVUP(numPairs, 4);
    const int pair = 4 * (blockIdx.y % batchesPerChannel) + threadIdx.y;
    if (pair >= numPairs) {
        return;
    }
    const int chan = blockIdx.y / batchesPerChannel;
    const int caseIdx = blockIdx.x * 32 * imgsPerThread + threadIdx.x;
    const int rowStart = (pair / half) * imgSize;
    const int left = rowStart + pair % half;
    const int right = rowStart + imgSize - 1 - pair % half;
    const int base = chan * imgSize * imgSize * numImages + caseIdx;

    #pragma unroll
    for (int i = 0; i < imgsPerThread; i++) {
        if (caseInRange<checkCaseBounds>(caseIdx + 32 * i, numImages)) {
            const int l = base + left * numImages + 32 * i;
            const int r = base + right * numImages + 32 * i;
            const float fromLeft = imgs[l], fromRight = imgs[r];
            const float oldLeft = scaleTargets == 0 ? 0.0f : target[l];
            const float oldRight = scaleTargets == 0 ? 0.0f : target[r];
            target[l] = scaledStore(oldLeft, fromRight, scaleTargets, scaleOutput);
            if (r != l) {
                target[r] = scaledStore(oldRight, fromLeft, scaleTargets, scaleOutput);
            }
        }
    }
}
