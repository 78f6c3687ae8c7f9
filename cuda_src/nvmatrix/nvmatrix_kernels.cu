/*
 * nvmatrix_kernels.cu -- the kernels under NVMatrix, cuda-convnet's 2-D float32 matrix:
 * element-wise maps of one, two or three operands, a matrix combined with a row or column
 * vector, reductions along rows, along columns and over everything, and random numbers.
 *
 * Stands for src/nvmatrix/nvmatrix_kernels.cu and the kernel templates of
 * include/nvmatrix/nvmatrix_kernels.cuh (cuda-convnet, 2012).
 *
 *   kEltwiseUnaryOp, kEltwiseBinaryOp, kEltwiseTernaryOp   dest = op(a[, b[, c]])
 *   kRowVectorOp, kColVectorOp                              dest = op(mat, broadcast vector)
 *   kAggRows, kAggRows_wholerow_nosync, kAggShortRows,
 *   kAggShortRows2                                          one aggregate per row
 *   kDumbAggCols                                            one aggregate per column
 *   kTotalAgg                                               partial aggregates of everything
 *   kUnaryRandomize, kBinaryRandomize                       random numbers (see below)
 *   kSgemm                                                  new: a plain matrix product, used
 *                                                           only where cuBLAS cannot be loaded
 *
 * The host side, which picks kernels, template arguments, grids and blocks as 2012 did, is
 * cudaconvnet/backends/cuda/nvmatrix.py; what each operation must compute is defined by
 * cudaconvnet/backends/numpy/nvmatrix.py, and tests/test_cuda_ops.py (GPU) and
 * tests/test_cuda_util_emulated.py (CPU emulation) hold the kernels to it.
 *
 * Matrices are row-major. height counts rows and width columns; a stride is the distance
 * in floats from the start of one row to the start of the next (at least width).
 *
 * Departures from 2012, and their reasons:
 *   - a functor is constructed inside the kernel from two floats (p0, p1) instead of being
 *     passed by value (see nvmatrix_operators.cuh);
 *   - the last reduction steps inside a warp: 2012 counted on a warp's 32 threads moving
 *     in lockstep (volatile shared memory and no barrier), which GPUs since Volta no longer
 *     promise; here every step reads, synchronises the warp (__syncwarp), then writes;
 *   - random numbers: 2012 kept an XORWOW curandState per thread (NUM_RND_STREAMS of them)
 *     and included curand_kernel.h. Here they come from Philox4x32-10, a counter-based
 *     generator, so the numbers for element i of the k-th random call depend on (seed, k, i)
 *     alone. The grid (NUM_RND_BLOCKS x NUM_RND_THREADS_PER_BLOCK) and the Randomizer
 *     functors stay; no header beyond the CUDA runtime is needed, and the whole generator
 *     state is two integers (seed, calls), which a checkpoint records exactly.
 */
#include "nvmatrix/nvmatrix_operators.cuh"

#ifndef DIVUP
#define DIVUP(x, y) (((x) + (y) - 1) / (y))
#endif

typedef unsigned int uint;

/* the most blocks a grid gets along an axis (CUDA's old limit, which 2012 kept to) */
#define NUM_BLOCKS_MAX                      65535

/* the fixed grid of the random kernels, and how many threads (streams) it holds */
#define NUM_RND_BLOCKS                      96
#define NUM_RND_THREADS_PER_BLOCK           128
#define NUM_RND_STREAMS                     (NUM_RND_BLOCKS * NUM_RND_THREADS_PER_BLOCK)

/* the block of the element-wise kernels */
#define ELTWISE_THREADS_X                   32
#define ELTWISE_THREADS_Y                   8

/* the block of kDumbAggCols */
#define NUM_SUM_COLS_THREADS_PER_BLOCK      256

/* kAggShortRows(2): the block's width and height, and the 8-row tiles per block */
#define AGG_SHORT_ROWS_THREADS_X            32
#define AGG_SHORT_ROWS_THREADS_Y            8
#define AGG_SHORT_ROWS_LOOPS_Y              32

/* kTotalAgg's block, and how many partial aggregates the host finishes itself */
#define DP_BLOCKSIZE                        512
#define CPUSUM_MAX                          4096

/* the block of kRowVectorOp and kColVectorOp */
#define ADD_VEC_THREADS_X                   64
#define ADD_VEC_THREADS_Y                   4

/* kAggRows_wholerow_nosync's block, in threads and in warps */
#define AWR_NUM_THREADS                     256
#define WARP_SIZE                           32
#define AWR_NUM_WARPS                       (AWR_NUM_THREADS / WARP_SIZE)

/* the tile of kSgemm */
#define SGEMM_TILE                          16

/* ===================================================================================== *
 * Element-wise                                                                          *
 * ===================================================================================== */

/*
 * Blocks of ELTWISE_THREADS_Y x ELTWISE_THREADS_X (8 x 32) threads in a grid of at most
 * NUM_BLOCKS_MAX blocks along each axis, which strides over the matrix: a thread does the
 * columns blockIdx.x * 32 + threadIdx.x + k * gridDim.x * 32 of the rows
 * blockIdx.y * 8 + threadIdx.y + k' * gridDim.y * 8.
 *
 * a:       (height, width), rows strideA apart
 * dest:    (height, width), rows strideDest apart; may be a
 *
 * dest = Op(p0, p1)(a)
 */
template<class Op>
__global__ void kEltwiseUnaryOp(const float* a, float* const dest,
                                const uint height, const uint width, const uint strideA, const uint strideDest,
                                const float p0, const float p1) {
    const Op op(p0, p1);
    const uint rowStep = gridDim.y * ELTWISE_THREADS_Y, colStep = gridDim.x * ELTWISE_THREADS_X;
    for (uint r = blockIdx.y * ELTWISE_THREADS_Y + threadIdx.y; r < height; r += rowStep) {
        for (uint c = blockIdx.x * ELTWISE_THREADS_X + threadIdx.x; c < width; c += colStep) {
            dest[r * strideDest + c] = op(a[r * strideA + c]);
        }
    }
}

/*
 * kEltwiseUnaryOp's layout, with two operands of one shape.
 *
 * a, b:    (height, width), rows strideA and strideB apart
 * dest:    (height, width), rows strideDest apart; may be a or b
 *
 * dest = Op(p0, p1)(a, b)
 */
template<class Op>
__global__ void kEltwiseBinaryOp(const float* a, const float* b, float* const dest,
                                 const uint height, const uint width,
                                 const uint strideA, const uint strideB, const uint strideDest,
                                 const float p0, const float p1) {
    const Op op(p0, p1);
    const uint rowStep = gridDim.y * ELTWISE_THREADS_Y, colStep = gridDim.x * ELTWISE_THREADS_X;
    for (uint r = blockIdx.y * ELTWISE_THREADS_Y + threadIdx.y; r < height; r += rowStep) {
        for (uint c = blockIdx.x * ELTWISE_THREADS_X + threadIdx.x; c < width; c += colStep) {
            dest[r * strideDest + c] = op(a[r * strideA + c], b[r * strideB + c]);
        }
    }
}

/*
 * kEltwiseUnaryOp's layout, with three operands of one shape (all row-major: 2012 took one
 * transposedness for all three here too).
 *
 * a, b, c: (height, width), rows strideA, strideB and strideC apart
 * dest:    (height, width), rows strideDest apart; may be any operand
 *
 * dest = Op(p0, p1)(a, b, c)
 */
template<class Op>
__global__ void kEltwiseTernaryOp(const float* a, const float* b, const float* c, float* const dest,
                                  const uint height, const uint width,
                                  const uint strideA, const uint strideB, const uint strideC, const uint strideDest,
                                  const float p0, const float p1) {
    const Op op(p0, p1);
    const uint rowStep = gridDim.y * ELTWISE_THREADS_Y, colStep = gridDim.x * ELTWISE_THREADS_X;
    for (uint r = blockIdx.y * ELTWISE_THREADS_Y + threadIdx.y; r < height; r += rowStep) {
        for (uint k = blockIdx.x * ELTWISE_THREADS_X + threadIdx.x; k < width; k += colStep) {
            dest[r * strideDest + k] = op(a[r * strideA + k], b[r * strideB + k], c[r * strideC + k]);
        }
    }
}

/* ===================================================================================== *
 * A matrix and a vector                                                                 *
 * ===================================================================================== */

/*
 * Blocks of ADD_VEC_THREADS_Y x ADD_VEC_THREADS_X (4 x 64) threads. A block takes the
 * matrix 64 columns at a time: batch blockIdx.x, then every gridDim.x-th batch. For each
 * batch the first row of threads copies the batch's 64 vector entries to shared memory;
 * then each thread does its column in rows blockIdx.y * 4 + threadIdx.y + k * gridDim.y * 4.
 *
 * mat:     (height, width), rows matStride apart
 * vec:     (1, width)
 * tgtMat:  (height, width), rows tgtStride apart; may be mat
 *
 * tgtMat[y, x] = Op(p0, p1)(mat[y, x], vec[x])
 */
template<class Op>
__global__ void kRowVectorOp(const float* mat, const float* vec, float* const tgtMat,
                             const uint width, const uint height, const uint matStride, const uint tgtStride,
                             const float p0, const float p1) {
    const Op op(p0, p1);
    __shared__ float shVec[ADD_VEC_THREADS_X];
    for (uint batch = ADD_VEC_THREADS_X * blockIdx.x; batch < width; batch += gridDim.x * ADD_VEC_THREADS_X) {
        const uint col = batch + threadIdx.x;
        __syncthreads();  // the previous batch is done with shVec
        if (threadIdx.y == 0 && col < width) {
            shVec[threadIdx.x] = vec[col];
        }
        __syncthreads();
        if (col >= width) {
            continue;
        }
        const float v = shVec[threadIdx.x];
        for (uint r = ADD_VEC_THREADS_Y * blockIdx.y + threadIdx.y; r < height; r += gridDim.y * ADD_VEC_THREADS_Y) {
            tgtMat[r * tgtStride + col] = op(mat[r * matStride + col], v);
        }
    }
}

/*
 * Blocks of ADD_VEC_THREADS_Y x ADD_VEC_THREADS_X (4 x 64) threads. A block takes the
 * matrix 4 rows at a time: batch blockIdx.y, then every gridDim.y-th batch. For each
 * batch the block's first 4 threads copy the batch's 4 vector entries to shared memory;
 * then the thread does row threadIdx.y of the batch in the columns blockIdx.x * 64 +
 * threadIdx.x + k * gridDim.x * 64.
 *
 * mat:     (height, width), rows matStride apart
 * vec:     (height, 1)
 * tgtMat:  (height, width), rows tgtStride apart; may be mat
 *
 * tgtMat[y, x] = Op(p0, p1)(mat[y, x], vec[y])
 */
template<class Op>
__global__ void kColVectorOp(const float* mat, const float* vec, float* const tgtMat,
                             const uint width, const uint height, const uint matStride, const uint tgtStride,
                             const float p0, const float p1) {
    const Op op(p0, p1);
    __shared__ float shVec[ADD_VEC_THREADS_Y];
    const uint tid = ADD_VEC_THREADS_X * threadIdx.y + threadIdx.x;
    for (uint batch = ADD_VEC_THREADS_Y * blockIdx.y; batch < height; batch += gridDim.y * ADD_VEC_THREADS_Y) {
        __syncthreads();  // the previous batch is done with shVec
        if (tid < ADD_VEC_THREADS_Y && batch + tid < height) {
            shVec[tid] = vec[batch + tid];
        }
        __syncthreads();
        const uint row = batch + threadIdx.y;
        if (row >= height) {
            continue;
        }
        const float v = shVec[threadIdx.y];
        for (uint c = ADD_VEC_THREADS_X * blockIdx.x + threadIdx.x; c < width; c += gridDim.x * ADD_VEC_THREADS_X) {
            tgtMat[row * tgtStride + c] = op(mat[row * matStride + c], v);
        }
    }
}

/* ===================================================================================== *
 * Aggregation                                                                           *
 * ===================================================================================== */

/*
 * A reduction step among the lanes of a warp that does not rely on lockstep: each lane in
 * `mask` reads the value d slots beyond its own, the lanes meet, then each overwrites its
 * own slot with the aggregate of the two, and the lanes meet again.
 */
template<class Agg>
__device__ __forceinline__ void warpAggStep(volatile float* slot, const uint d, const Agg& agg, const uint mask,
                                            const bool hasPartner = true) {
    const float partner = hasPartner ? slot[d] : agg.getBaseValue();
    __syncwarp(mask);
    slot[0] = agg(slot[0], partner);
    __syncwarp(mask);
}

/* the last six steps of a tree reduction over 64 slots, by the first warp */
template<class Agg>
__device__ __forceinline__ void warpAggLast64(volatile float* slot, const Agg& agg) {
    #pragma unroll
    for (uint d = WARP_SIZE; d > 0; d /= 2) {
        warpAggStep(slot, d, agg, 0xffffffffu);
    }
}

/*
 * Blocks of blockSize x 1 threads, blockSize being 32, 64, 128, 256 or 512.
 * blockIdx.x picks a batch of 2 * blockSize columns and blockIdx.y a row (then every
 * gridDim.y-th row). Each thread loads the batch's columns threadIdx.x and threadIdx.x +
 * blockSize, the block reduces its 2 * blockSize slots by halving, and thread 0 writes one
 * partial aggregate for the (row, batch). The host uses only widths that fit one batch,
 * so the partial aggregate is the row's.
 *
 * mat:     (height, width), rows width apart
 * matSum:  (height, sumWidth), sumWidth being the number of batches per row
 *
 * matSum[y, b] = BinaryOp(p0, p1)(matSum[y, b], Agg over the columns of batch b of row y)
 *
 * Every thread, past the end of the row or not, runs every iteration so that all meet at
 * the barriers; slots that no column fills keep the aggregator's base value.
 */
template<class Agg, class BinaryOp, int blockSize>
__global__ void kAggRows(const float* mat, float* matSum, const uint width, const uint height,
                         const uint sumWidth, const float p0, const float p1) {
    const Agg agg;
    const BinaryOp op(p0, p1);
    __shared__ float accum[blockSize * 2];
    const uint tx = threadIdx.x;
    const uint col = blockIdx.x * blockSize * 2 + tx;

    accum[tx] = agg.getBaseValue();
    accum[tx + blockSize] = agg.getBaseValue();
    for (uint row = blockIdx.y; row < height; row += gridDim.y) {
        const float* rowData = mat + row * width + col;
        if (col < width) {
            accum[tx] = rowData[0];
            if (col + blockSize < width) {
                accum[tx + blockSize] = rowData[blockSize];
            }
        }
        #pragma unroll
        for (int half = 512; half >= 64; half /= 2) {
            if (blockSize >= half) {
                __syncthreads();
                if (tx < (uint)half) {
                    accum[tx] = agg(accum[tx], accum[tx + half]);
                }
            }
        }
        __syncthreads();
        volatile float* slot = &accum[tx];
        if (tx < WARP_SIZE) {
            warpAggLast64(slot, agg);
        }
        if (tx == 0) {
            float* out = matSum + row * sumWidth + blockIdx.x;
            *out = op(*out, slot[0]);
        }
        __syncthreads();  // accum is reloaded for the next row
    }
}

/*
 * Blocks of AWR_NUM_THREADS x 1 (256) threads, for long rows (width >= 512); blockIdx.y
 * picks a row (then every gridDim.y-th row).
 *
 * Each thread folds the columns threadIdx.x + k * 256 of the row in a register. Each warp
 * then reduces its 32 values in shared memory with the "multiscan" of moderngpu.com: in
 * step i lane k adds in lane k + 2^i, so that lane 0 ends with the warp's aggregate. The
 * first AWR_NUM_WARPS threads reduce the warps' results the same way, and thread 0 writes.
 * A lane whose partner k + 2^i is past its warp's values adds the aggregator's base value
 * instead: 2012 read on, into the next warp's row while that warp was writing it (a data
 * race whose values only fed lanes nobody reads).
 *
 * mat:     (height, width), rows width apart
 * matSum:  (height, 1)
 *
 * matSum[y] = BinaryOp(p0, p1)(matSum[y], Agg over row y)
 */
template<class Agg, class BinaryOp>
__global__ void kAggRows_wholerow_nosync(const float* mat, float* matSum, const uint width, const uint height,
                                         const float p0, const float p1) {
    const Agg agg;
    const BinaryOp op(p0, p1);
    // one padded row of 33 slots per warp
    __shared__ float accum[(WARP_SIZE + 1) * AWR_NUM_WARPS];
    __shared__ float finalAccum[AWR_NUM_WARPS];
    const uint tid = threadIdx.x;
    const uint warp = tid / WARP_SIZE, lane = tid % WARP_SIZE;
    volatile float* mine = &accum[warp * (WARP_SIZE + 1) + lane];
    const uint warpsMask = (1u << AWR_NUM_WARPS) - 1;

    for (uint row = blockIdx.y; row < height; row += gridDim.y) {
        const float* rowData = mat + row * width;
        float partial = agg.getBaseValue();  // kept in a register while the row streams by
        for (uint c = tid; c < width; c += AWR_NUM_THREADS) {
            partial = agg(partial, rowData[c]);
        }
        mine[0] = partial;
        __syncwarp();
        #pragma unroll
        for (uint d = 1; d < WARP_SIZE; d *= 2) {
            warpAggStep(mine, d, agg, 0xffffffffu, lane + d < WARP_SIZE);
        }
        __syncthreads();
        if (tid < AWR_NUM_WARPS) {
            volatile float* fin = &finalAccum[tid];
            fin[0] = accum[tid * (WARP_SIZE + 1)];
            __syncwarp(warpsMask);
            #pragma unroll
            for (uint d = 1; d < AWR_NUM_WARPS; d *= 2) {
                warpAggStep(fin, d, agg, warpsMask, tid + d < AWR_NUM_WARPS);
            }
            if (tid == 0) {
                matSum[row] = op(matSum[row], fin[0]);
            }
        }
        __syncthreads();
    }
}

/*
 * Blocks of AGG_SHORT_ROWS_THREADS_Y x THREADS_X threads (8 x 4, 8, 12, 16 or 32), for
 * many short rows (height >= 16384, width <= 64). The block's flat index blockIdx.y *
 * gridDim.x + blockIdx.x picks a band of AGG_SHORT_ROWS_LOOPS_Y * 8 = 256 rows, which the
 * block does 8 rows at a time:
 *   - LOOPS_X == 1 (width <= THREADS_X <= 16): the block's threads, counted row-major,
 *     cover the 8 x width elements (row tid / width, column tid % width);
 *   - LOOPS_X > 1: thread (threadIdx.y, threadIdx.x) folds the columns threadIdx.x,
 *     threadIdx.x + THREADS_X, ... of row threadIdx.y.
 * The partial results go to shared memory, one row of THREADS_X + 1 slots per matrix row
 * (the padding keeps the reads below free of bank conflicts); then threads 0 to 7 each
 * fold one row's slots and write it.
 *
 * mat:     (height, width), rows width apart
 * matSum:  (height, 1)
 *
 * matSum[y] = BinaryOp(p0, p1)(matSum[y], Agg over row y)
 */
template<class Agg, class BinaryOp, int LOOPS_X, int THREADS_X>
__global__ void kAggShortRows(const float* mat, float* matSum, const uint width, const uint height,
                              const float p0, const float p1) {
    const Agg agg;
    const BinaryOp op(p0, p1);
    const uint padded = THREADS_X + 1;
    __shared__ float shmem[AGG_SHORT_ROWS_THREADS_Y * padded];

    const uint tid = threadIdx.y * THREADS_X + threadIdx.x;
    // where the thread reads: with one loop the threads are spread over the 8 x width tile
    const uint rowInTile = LOOPS_X == 1 ? tid / width : threadIdx.y;
    const uint colInTile = LOOPS_X == 1 ? tid % width : threadIdx.x;
    const uint firstRow = (blockIdx.y * gridDim.x + blockIdx.x) * AGG_SHORT_ROWS_LOOPS_Y * AGG_SHORT_ROWS_THREADS_Y;
    if (firstRow >= height) {
        return;
    }
    float* const slot = shmem + rowInTile * padded + colInTile;
    float* const ownSlot = shmem + threadIdx.y * padded + threadIdx.x;  // the slot the thread clears

    bool finisher = tid < AGG_SHORT_ROWS_THREADS_Y;  // threads 0..7 fold one row each
    #pragma unroll
    for (uint tile = 0; tile < AGG_SHORT_ROWS_LOOPS_Y * AGG_SHORT_ROWS_THREADS_Y; tile += AGG_SHORT_ROWS_THREADS_Y) {
        const uint tileRow = firstRow + tile;
        finisher = finisher && tileRow + tid < height;
        const bool reads = rowInTile < AGG_SHORT_ROWS_THREADS_Y && tileRow + rowInTile < height;
        const float* src = mat + (tileRow + rowInTile) * width + colInTile;

        ownSlot[0] = agg.getBaseValue();
        __syncthreads();
        #pragma unroll
        for (uint x = 0; x < LOOPS_X * THREADS_X; x += THREADS_X) {
            if (reads && colInTile + x < width) {
                slot[0] = agg(src[x], slot[0]);
            }
        }
        __syncthreads();
        if (finisher) {
            const float* rowSlots = shmem + tid * padded;
            float total = agg.getBaseValue();
            #pragma unroll
            for (uint i = 0; i < THREADS_X; i++) {
                total = agg(total, rowSlots[i]);
            }
            matSum[tileRow + tid] = op(matSum[tileRow + tid], total);
        }
        __syncthreads();
    }
}

/*
 * Blocks of AGG_SHORT_ROWS_THREADS_Y x AGG_SHORT_ROWS_THREADS_X (8 x 32) threads: the
 * LOOPS_X > 1 case of kAggShortRows for many rows of 65 or more columns, with the number
 * of column loops, DIVUP(width, 32), found at run time rather than fixed by a template
 * argument. Each thread clears and fills only its own slot here.
 *
 * mat:     (height, width), rows width apart
 * matSum:  (height, 1)
 */
template<class Agg, class BinaryOp>
__global__ void kAggShortRows2(const float* mat, float* matSum, const uint width, const uint height,
                               const float p0, const float p1) {
    const Agg agg;
    const BinaryOp op(p0, p1);
    const uint padded = AGG_SHORT_ROWS_THREADS_X + 1;
    __shared__ float shmem[AGG_SHORT_ROWS_THREADS_Y * padded];
    const uint colLimit = DIVUP(width, AGG_SHORT_ROWS_THREADS_X) * AGG_SHORT_ROWS_THREADS_X;
    const uint tid = threadIdx.y * AGG_SHORT_ROWS_THREADS_X + threadIdx.x;
    const uint firstRow = (blockIdx.y * gridDim.x + blockIdx.x) * AGG_SHORT_ROWS_LOOPS_Y * AGG_SHORT_ROWS_THREADS_Y;
    if (firstRow >= height) {
        return;
    }
    float* const slot = shmem + threadIdx.y * padded + threadIdx.x;

    bool finisher = tid < AGG_SHORT_ROWS_THREADS_Y;
    for (uint tile = 0; tile < AGG_SHORT_ROWS_LOOPS_Y * AGG_SHORT_ROWS_THREADS_Y; tile += AGG_SHORT_ROWS_THREADS_Y) {
        const uint tileRow = firstRow + tile;
        finisher = finisher && tileRow + tid < height;
        const bool reads = tileRow + threadIdx.y < height;
        const float* src = mat + (tileRow + threadIdx.y) * width + threadIdx.x;

        slot[0] = agg.getBaseValue();
        for (uint x = 0; x < colLimit; x += AGG_SHORT_ROWS_THREADS_X) {
            if (reads && threadIdx.x + x < width) {
                slot[0] = agg(src[x], slot[0]);
            }
        }
        __syncthreads();
        if (finisher) {
            const float* rowSlots = shmem + tid * padded;
            float total = agg.getBaseValue();
            #pragma unroll
            for (uint i = 0; i < AGG_SHORT_ROWS_THREADS_X; i++) {
                total = agg(total, rowSlots[i]);
            }
            matSum[tileRow + tid] = op(matSum[tileRow + tid], total);
        }
        __syncthreads();
    }
}

/*
 * Blocks of NUM_SUM_COLS_THREADS_PER_BLOCK x 1 (256) threads, one thread per column
 * (blockIdx.x * 256 + threadIdx.x), which walks down it. "Dumb" as in 2012: with few
 * columns most of the GPU idles.
 *
 * mat:     (height, width), rows width apart
 * vec:     (1, width)
 *
 * vec[x] = BinaryOp(p0, p1)(vec[x], Agg over column x)
 */
template<class Agg, class BinaryOp>
__global__ void kDumbAggCols(const float* mat, float* const vec, const uint width, const uint height,
                             const float p0, const float p1) {
    const Agg agg;
    const BinaryOp op(p0, p1);
    const uint col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= width) {
        return;
    }
    const float* p = mat + col;
    float total = p[0];
    for (uint r = 1; r < height; r++) {
        p += width;
        total = agg(*p, total);
    }
    vec[col] = op(vec[col], total);
}

/*
 * Blocks of DP_BLOCKSIZE x 1 (512) threads. The host treats the numElements values as
 * numCols interleaved columns (numCols = DIVUP(n, ceil(log2 n))): grid thread e < numCols
 * folds the elements e, e + numCols, e + 2 numCols, ...; the block reduces its 512 results
 * and stores one partial aggregate. The host runs this again on the partials until
 * CPUSUM_MAX or fewer remain, and adds those up itself.
 *
 * a:       numElements floats, contiguous
 * target:  (1, gridDim.x)
 */
template<class Agg>
__global__ void kTotalAgg(const float* a, float* const target, const uint numCols, const uint numElements) {
    const Agg agg;
    __shared__ float shmem[DP_BLOCKSIZE];
    const uint tid = threadIdx.x;
    const uint first = DP_BLOCKSIZE * blockIdx.x + tid;
    float partial = agg.getBaseValue();
    if (first < numCols) {
        for (uint e = first; e < numElements; e += numCols) {
            partial = agg(partial, a[e]);
        }
    }
    shmem[tid] = partial;
    #pragma unroll
    for (uint half = DP_BLOCKSIZE / 2; half >= 64; half /= 2) {
        __syncthreads();
        if (tid < half) {
            shmem[tid] = agg(shmem[tid], shmem[tid + half]);
        }
    }
    __syncthreads();
    if (tid < WARP_SIZE) {
        volatile float* slot = &shmem[tid];
        warpAggLast64(slot, agg);
        if (tid == 0) {
            target[blockIdx.x] = slot[0];
        }
    }
}

/* ===================================================================================== *
 * Random numbers                                                                        *
 * ===================================================================================== */

/*
 * Philox4x32-10 (J. Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011;
 * curand's PHILOX4_32_10): ten rounds, each two 32 x 32 -> 64-bit products mixed into a
 * 128-bit counter, under a 64-bit key that grows by the Weyl constants between rounds.
 * Callable on the host as well, so that a CPU build can be checked against the published
 * known answers (tests/test_cuda_compile.py).
 */
#define PHILOX_M4x32_0  0xD2511F53u
#define PHILOX_M4x32_1  0xCD9E8D57u
#define PHILOX_W32_0    0x9E3779B9u
#define PHILOX_W32_1    0xBB67AE85u

/* the high 32 bits of a * b */
__host__ __device__ __forceinline__ uint philoxMulHi(const uint a, const uint b) {
#ifdef __CUDA_ARCH__
    return __umulhi(a, b);
#else
    return (uint)(((unsigned long long)a * b) >> 32);
#endif
}

__host__ __device__ __forceinline__ uint4 philox4x32_10(uint4 ctr, uint2 key) {
    #pragma unroll
    for (int round = 0; round < 10; round++) {
        const uint prod0 = PHILOX_M4x32_0 * ctr.x, prod1 = PHILOX_M4x32_1 * ctr.z;  // low halves
        ctr = make_uint4(philoxMulHi(PHILOX_M4x32_1, ctr.z) ^ ctr.y ^ key.x, prod1,
                         philoxMulHi(PHILOX_M4x32_0, ctr.x) ^ ctr.w ^ key.y, prod0);
        key.x += PHILOX_W32_0;  // (the bump after the last round is never used)
        key.y += PHILOX_W32_1;
    }
    return ctr;
}

/* a float uniform on [0, 1): the word's top 24 bits, times 2^-24 */
__host__ __device__ __forceinline__ float rndUniform(const uint bits) {
    return (bits >> 8) * (1.0f / 16777216.0f);
}

/* a standard normal float from two words: Box-Muller, the cosine half */
__device__ __forceinline__ float rndNormal(const uint bits0, const uint bits1) {
    const float u1 = ((bits0 >> 8) + 1) * (1.0f / 16777216.0f);  // in (0, 1], so the log is finite
    const float u2 = (bits1 >> 8) * (1.0f / 16777216.0f);
    return sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
}

/*
 * The Randomizers (2012 names): what a random kernel makes of one element, given the
 * element's data (and, for the binary ones, a second operand) and four random words.
 */

/* uniform on [0, 1) (2012's curand_uniform drew from (0, 1]) */
class UniformUnaryRandomizer {
public:
    FUNCTOR_NO_SCALARS(UniformUnaryRandomizer)
    __device__ __forceinline__ float operator()(const float, const uint4 w) const { return rndUniform(w.x); }
};

/* mean + stdev * N(0, 1), with p0 = mean and p1 = stdev */
class GaussianUnaryRandomizer {
    float mean, stdev;
public:
    __device__ GaussianUnaryRandomizer(const float p0, const float p1) : mean(p0), stdev(p1) {}
    __device__ __forceinline__ float operator()(const float, const uint4 w) const {
        return mean + stdev * rndNormal(w.x, w.y);
    }
};

/* data + stdev * N(0, 1), with p0 = stdev */
class AddGaussianUnaryRandomizer {
    float stdev;
public:
    __device__ AddGaussianUnaryRandomizer(const float p0, const float = 0.0f) : stdev(p0) {}
    __device__ __forceinline__ float operator()(const float data, const uint4 w) const {
        return data + stdev * rndNormal(w.x, w.y);
    }
};

/* 1 with probability data: data > a uniform draw */
class BinarizeUnaryRandomizer {
public:
    FUNCTOR_NO_SCALARS(BinarizeUnaryRandomizer)
    __device__ __forceinline__ float operator()(const float data, const uint4 w) const {
        return data > rndUniform(w.x);
    }
};

/*
 * data + stdev * N(0, 1) with the standard deviation given per element: 2012's
 * AddGaussianBinaryRandomizer<false> (CHM's nrelu adds noise as large as the unit's output)
 */
class AddGaussianBinaryRandomizer {
public:
    FUNCTOR_NO_SCALARS(AddGaussianBinaryRandomizer)
    __device__ __forceinline__ float operator()(const float data, const float stdev, const uint4 w) const {
        return data + stdev * rndNormal(w.x, w.y);
    }
};

/* stdev * N(0, 1) with the standard deviation given per element */
class GaussianBinaryRandomizer {
public:
    FUNCTOR_NO_SCALARS(GaussianBinaryRandomizer)
    __device__ __forceinline__ float operator()(const float, const float stdev, const uint4 w) const {
        return stdev * rndNormal(w.x, w.y);
    }
};

/* the four random words of element i in a call: counter (i, 0, callLo, callHi), key = seed */
__device__ __forceinline__ uint4 elementWords(const uint i, const uint seedLo, const uint seedHi,
                                              const uint callLo, const uint callHi) {
    return philox4x32_10(make_uint4(i, 0, callLo, callHi), make_uint2(seedLo, seedHi));
}

/*
 * Blocks of NUM_RND_THREADS_PER_BLOCK (128) threads in a grid of NUM_RND_BLOCKS (96), the
 * 2012 shape: grid thread t does the elements t, t + NUM_RND_STREAMS, ... The host counts
 * its calls, so no two calls, and no two elements of a call, share a Philox counter.
 *
 * data:    numElements floats (unused by UniformUnaryRandomizer and GaussianUnaryRandomizer)
 * targets: numElements floats; may be data
 *
 * targets[i] = Randomizer(p0, p1)(data[i], the words of element i)
 */
template<class Randomizer>
__global__ void kUnaryRandomize(const float* data, float* targets,
                                const uint seedLo, const uint seedHi, const uint callLo, const uint callHi,
                                const uint numElements, const float p0, const float p1) {
    const Randomizer rnd(p0, p1);
    for (uint i = NUM_RND_THREADS_PER_BLOCK * blockIdx.x + threadIdx.x; i < numElements; i += NUM_RND_STREAMS) {
        targets[i] = rnd(data[i], elementWords(i, seedLo, seedHi, callLo, callHi));
    }
}

/*
 * kUnaryRandomize with a second operand.
 *
 * data, data2, targets: numElements floats; targets may be either operand
 *
 * targets[i] = Randomizer(p0, p1)(data[i], data2[i], the words of element i)
 */
template<class Randomizer>
__global__ void kBinaryRandomize(const float* data, const float* data2, float* targets,
                                 const uint seedLo, const uint seedHi, const uint callLo, const uint callHi,
                                 const uint numElements, const float p0, const float p1) {
    const Randomizer rnd(p0, p1);
    for (uint i = NUM_RND_THREADS_PER_BLOCK * blockIdx.x + threadIdx.x; i < numElements; i += NUM_RND_STREAMS) {
        targets[i] = rnd(data[i], data2[i], elementWords(i, seedLo, seedHi, callLo, callHi));
    }
}

/* ===================================================================================== *
 * Matrix product (new: 2012 called cublasSgemm)                                         *
 * ===================================================================================== */

/*
 * Run only when libcublas cannot be loaded (see cudaconvnet/backends/cuda/cublas.py), so
 * that the backend still works, slowly. Everything row-major.
 *
 * Blocks of SGEMM_TILE x SGEMM_TILE (16 x 16) threads: blockIdx.y picks a band of 16 rows
 * of C, blockIdx.x a band of 16 columns, and thread (threadIdx.y, threadIdx.x) one element
 * of C. The k axis goes by 16 at a time: the block copies a 16 x 16 tile of op(A) and one
 * of op(B) to shared memory, then each thread does 16 multiply-adds.
 *
 * A:   (m, k) with rows lda apart, or (k, m) when transA
 * B:   (k, n) with rows ldb apart, or (n, k) when transB
 * C:   (m, n) with rows ldc apart
 *
 * C = alpha * op(A) op(B) + beta * C, where C is not read when beta is 0
 */
template<bool transA, bool transB>
__global__ void kSgemm(const float* A, const float* B, float* C, const int m, const int n, const int k,
                       const int lda, const int ldb, const int ldc, const float alpha, const float beta) {
    __shared__ float shA[SGEMM_TILE][SGEMM_TILE + 1];
    __shared__ float shB[SGEMM_TILE][SGEMM_TILE + 1];
    const int row = blockIdx.y * SGEMM_TILE + threadIdx.y;
    const int col = blockIdx.x * SGEMM_TILE + threadIdx.x;
    float sum = 0.0f;
    for (int k0 = 0; k0 < k; k0 += SGEMM_TILE) {
        // shA[ty][tx] = op(A)[row, k0 + tx]; shB[ty][tx] = op(B)[k0 + ty, col]; 0 outside
        const int ka = k0 + threadIdx.x, kb = k0 + threadIdx.y;
        shA[threadIdx.y][threadIdx.x] = row < m && ka < k ? (transA ? A[ka * lda + row] : A[row * lda + ka]) : 0.0f;
        shB[threadIdx.y][threadIdx.x] = col < n && kb < k ? (transB ? B[col * ldb + kb] : B[kb * ldb + col]) : 0.0f;
        __syncthreads();
        #pragma unroll
        for (int i = 0; i < SGEMM_TILE; i++) {
            sum += shA[threadIdx.y][i] * shB[i][threadIdx.x];
        }
        __syncthreads();
    }
    if (row < m && col < n) {
        C[row * ldc + col] = beta == 0.0f ? alpha * sum : alpha * sum + beta * C[row * ldc + col];
    }
}
