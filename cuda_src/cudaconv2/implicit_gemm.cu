/*
 * implicit_gemm.cu: the "implicit" variant of the shared-filter convolution, new in this
 * port (no 2012 counterpart). Each pass is a matrix product C = A^T B whose operands are
 * read straight from images, filters and hidActs (an implicit GEMM: no column buffer, no
 * cuBLAS), by one register-tiled product core that the three kernels share:
 *
 *   kImplicitFilterActs   C[f, (m, i)]         A[(c, fy, fx), f] = filters
 *                                              B[(c, fy, fx), (m, i)] = images at pixel (fy, fx) of module m
 *   kImplicitImgActs      C[c, (pixel, i)]     A[((fy, fx), f), c] = filters
 *                                              B[((fy, fx), f), (pixel, i)] = hidActs of the module whose
 *                                              pixel (fy, fx) is that pixel (0 when none is)
 *   kImplicitWeightActs   C[(c, fy, fx), f]    A[(m, i), (c, fy, fx)] = images, B[(m, i), f] = hidActs,
 *                                              over the modules of one partial sum, or a slice of it
 *
 * What the 2012 kernels predate, and this core does:
 *   - a 128 x 128 tile of C per block of 256 threads, 8 x 8 outputs per thread in registers
 *     (64 multiply-adds per 16 numbers read from shared memory);
 *   - two shared buffers per operand: the next 8-deep slice of A and B is loaded into
 *     registers while the current one is multiplied, and stored to the other buffer after,
 *     so there is one barrier per slice and global latency hides behind the arithmetic;
 *   - 16-byte loads and stores wherever four consecutive elements are adjacent and aligned
 *     (template arguments vecA, vecB, which the host sets from the sizes and addresses).
 * It reaches the same data as an sm_80 async copy would, through registers, so it runs on
 * every architecture the other kernels do.
 *
 * Host side: cudaconvnet/backends/cuda/conv_implicit.py (--conv-kernels=implicit).
 * Reference: cudaconvnet/backends/numpy/{filter,img,weight}_acts.py; checked against it by
 * tests/test_cuda_conv_gemm.py.
 *
 * Layouts (the 2012 ones, images fastest):
 *   images   (numGroups * numFilterColors, imgSizeY, imgSizeX, numImages), rows imgStride apart
 *   filters  (numFilterColors, filterSize, filterSize, numFilters); group g's filters are
 *            the columns [g * numFilters / numGroups, (g + 1) * numFilters / numGroups)
 *   hidActs  (numFilters, numModulesY, numModulesX, numImages), contiguous
 * Module (my, mx) covers image rows paddingStart + my * moduleStride + [0, filterSize) and
 * the same for columns; pixels outside the image are zeros.
 */
#include "cudaconv2/cudaconv2.cuh"

#define IG_THREADS  256     // threads per block
#define IG_TILE     128     // rows and columns of C per block
#define IG_DEPTH    8       // k per slice
#define IG_SLICE    (IG_DEPTH * IG_TILE)

/*
 * How a thread's four elements of an operand slice (IG_DEPTH x IG_TILE, k by column) lie:
 *   wide: row k0 + threadIdx.x / 32, columns (threadIdx.x % 32) * 4 + [0, 4)
 *   deep: column threadIdx.x / 2, rows k0 + (threadIdx.x % 2) * 4 + [0, 4)
 * Each loader takes the one whose four elements are adjacent in memory.
 */
__device__ __forceinline__ int wideRow() { return threadIdx.x / 32; }
__device__ __forceinline__ int wideCol() { return (threadIdx.x % 32) * 4; }
__device__ __forceinline__ int deepRow() { return (threadIdx.x % 2) * 4; }
__device__ __forceinline__ int deepCol() { return threadIdx.x / 2; }

template <bool wide>
__device__ __forceinline__ void putSlice(float* s, const float v[4]) {
    if (wide) {
        *reinterpret_cast<float4*>(&s[wideRow() * IG_TILE + wideCol()]) = make_float4(v[0], v[1], v[2], v[3]);
    } else {
        for (int j = 0; j < 4; j++) {
            s[(deepRow() + j) * IG_TILE + deepCol()] = v[j];
        }
    }
}

__device__ __forceinline__ void zero4(float v[4]) {
    v[0] = v[1] = v[2] = v[3] = 0.0f;
}

// four adjacent floats at p (16-byte aligned), or zeros when p is null
__device__ __forceinline__ void load4(const float* p, float v[4]) {
    if (p != 0) {
        const float4 q = *reinterpret_cast<const float4*>(p);
        v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
    } else {
        zero4(v);
    }
}

/*
 * The images' element for colour c (of all numImgColors), pixel (fy, fx) of the filter at
 * module (my, mx), image i: its address, or null when that pixel is padding.
 */
struct ImagePixels {
    const float* images;
    int imgStride, imgSizeY, imgSizeX, paddingStart, moduleStride, filterSize;

    __device__ const float* at(const int c, const int fy, const int fx, const int my, const int mx,
                               const int i) const {
        const int y = paddingStart + my * moduleStride + fy, x = paddingStart + mx * moduleStride + fx;
        if (y < 0 || y >= imgSizeY || x < 0 || x >= imgSizeX) {
            return 0;
        }
        return &images[((size_t)(c * imgSizeY + y) * imgSizeX + x) * imgStride + i];
    }
};

/*
 * The core. Block: IG_THREADS threads, tile [mTile, mTile + IG_TILE) x [nTile, nTile +
 * IG_TILE) of C (the loaders and `out` carry the offsets). Thread (ty, tx) = (threadIdx.x /
 * 16, threadIdx.x % 16) owns rows ty * 4 + [0, 4) and 64 + ty * 4 + [0, 4) of the tile and
 * the same columns with tx (two bands each, so that a warp's reads of shared memory are
 * 16-byte and conflict-free).
 *
 * As, Bs:  2 * IG_SLICE floats each, shared
 * la, lb:  fetch(k0, v): this thread's four elements of the slice [k0, k0 + IG_DEPTH) of
 *          A / B (zeros past K and outside the operand); LoadX::wide names their lie
 * out:     at(m, n): C's element (tile coordinates); M, N: C's extent from the tile's corner
 * K:       the product's depth
 *
 * C = scaleTargets * C + scaleOutput * A^T B, where C is not read when scaleTargets is 0.
 */
template <bool vecOut, class LoadA, class LoadB, class Out>
__device__ void implicitGemm(float* As, float* Bs, const LoadA& la, const LoadB& lb, const Out& out, const int K,
                             const float scaleTargets, const float scaleOutput) {
    float acc[8][8];
#pragma unroll
    for (int i = 0; i < 8; i++) {
#pragma unroll
        for (int j = 0; j < 8; j++) {
            acc[i][j] = 0.0f;
        }
    }
    float va[4], vb[4];
    la.fetch(0, va);
    lb.fetch(0, vb);
    putSlice<LoadA::wide>(As, va);
    putSlice<LoadB::wide>(Bs, vb);
    __syncthreads();
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    int buf = 0;
    for (int k0 = 0; k0 < K; k0 += IG_DEPTH) {
        const bool more = k0 + IG_DEPTH < K;
        if (more) {  // the next slice, in flight while this one is multiplied
            la.fetch(k0 + IG_DEPTH, va);
            lb.fetch(k0 + IG_DEPTH, vb);
        }
        const float* a = As + buf * IG_SLICE;
        const float* b = Bs + buf * IG_SLICE;
#pragma unroll
        for (int kk = 0; kk < IG_DEPTH; kk++) {
            float ra[8], rb[8];
            const float4 a0 = *reinterpret_cast<const float4*>(&a[kk * IG_TILE + ty * 4]);
            const float4 a1 = *reinterpret_cast<const float4*>(&a[kk * IG_TILE + 64 + ty * 4]);
            const float4 b0 = *reinterpret_cast<const float4*>(&b[kk * IG_TILE + tx * 4]);
            const float4 b1 = *reinterpret_cast<const float4*>(&b[kk * IG_TILE + 64 + tx * 4]);
            ra[0] = a0.x, ra[1] = a0.y, ra[2] = a0.z, ra[3] = a0.w;
            ra[4] = a1.x, ra[5] = a1.y, ra[6] = a1.z, ra[7] = a1.w;
            rb[0] = b0.x, rb[1] = b0.y, rb[2] = b0.z, rb[3] = b0.w;
            rb[4] = b1.x, rb[5] = b1.y, rb[6] = b1.z, rb[7] = b1.w;
#pragma unroll
            for (int i = 0; i < 8; i++) {
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    acc[i][j] += ra[i] * rb[j];
                }
            }
        }
        if (more) {  // the other buffer was last read before the previous barrier
            putSlice<LoadA::wide>(As + (buf ^ 1) * IG_SLICE, va);
            putSlice<LoadB::wide>(Bs + (buf ^ 1) * IG_SLICE, vb);
        }
        __syncthreads();
        buf ^= 1;
    }
    // (unrolled, so that acc stays in registers)
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const int m = (i < 4 ? 0 : 64) + ty * 4 + i % 4;
        if (m >= out.M) {
            continue;
        }
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int n = h * 64 + tx * 4;
            const float* v = &acc[i][h * 4];
            if (vecOut) {  // the four columns are adjacent and aligned, and all or none exist
                if (n < out.N) {
                    float4* p = reinterpret_cast<float4*>(out.at(m, n));
                    float4 r = make_float4(scaleOutput * v[0], scaleOutput * v[1], scaleOutput * v[2],
                                           scaleOutput * v[3]);
                    if (scaleTargets != 0.0f) {
                        const float4 t = *p;
                        r.x += scaleTargets * t.x, r.y += scaleTargets * t.y;
                        r.z += scaleTargets * t.z, r.w += scaleTargets * t.w;
                    }
                    *p = r;
                }
            } else {
#pragma unroll
                for (int j = 0; j < 4 && n + j < out.N; j++) {
                    float* p = out.at(m, n + j);
                    *p = scaleTargets == 0.0f ? scaleOutput * v[j] : scaleTargets * *p + scaleOutput * v[j];
                }
            }
        }
    }
}

// C's tile of rows rows0 + [mTile, ...) and columns [nTile, ...) of a row-major matrix
struct RowMajorTile {
    float* c;
    size_t ld;
    int M, N;

    __device__ float* at(const int m, const int n) const { return &c[m * ld + n]; }
};

/* ===================================================================================== *
 * filterActs                                                                            *
 * ===================================================================================== */

// A[k][f] = filters[k, g's filter f]: four adjacent filters of one row (wide)
template <bool vec>
struct FilterActsA {
    static const bool wide = true;
    const float* filters;   // at this thread's first filter
    int numFilters, K, left; // left: how many of the four filters exist

    __device__ void fetch(const int k0, float v[4]) const {
        const int k = k0 + wideRow();
        const float* p = &filters[(size_t)k * numFilters];
        if (vec) {
            load4(k < K && left > 0 ? p : 0, v);
        } else {
            for (int j = 0; j < 4; j++) {
                v[j] = k < K && j < left ? p[j] : 0.0f;
            }
        }
    }
};

// B[(c, fy, fx)][(m, i)] = images[g's colour c, pixel (fy, fx) of module m, image i] (wide);
// with vec, numImages % 4 == 0 and the four columns are images i..i+3 of one module
template <bool vec>
struct FilterActsB {
    static const bool wide = true;
    ImagePixels img;
    int color0, filterPixels, K;
    int my[4], mx[4], i[4];   // the thread's columns (my = -1: past the last)

    __device__ void fetch(const int k0, float v[4]) const {
        const int k = k0 + wideRow();
        if (k >= K) {
            zero4(v);
            return;
        }
        const int c = color0 + k / filterPixels, p = k % filterPixels;
        const int fy = p / img.filterSize, fx = p % img.filterSize;
        if (vec) {
            load4(my[0] >= 0 ? img.at(c, fy, fx, my[0], mx[0], i[0]) : 0, v);
        } else {
            for (int j = 0; j < 4; j++) {
                const float* q = my[j] >= 0 ? img.at(c, fy, fx, my[j], mx[j], i[j]) : 0;
                v[j] = q != 0 ? *q : 0.0f;
            }
        }
    }
};

/*
 * Block: IG_THREADS threads. blockIdx.x: columns [blockIdx.x * IG_TILE, ...) of the
 * (module, image) pairs; blockIdx.y = group * tilesM + the tile of the group's filters.
 *
 * images:   (numGroups * numFilterColors * imgSizeY * imgSizeX, numImages), rows imgStride apart
 * filters:  (numFilterColors * filterSize^2, numFilters)
 * targets:  (numFilters * numModulesY * numModulesX, numImages), contiguous
 *
 * targets = scaleTargets * targets + scaleOutput * the convolution (targets not read when
 * scaleTargets is 0). vecA: numFilters and its groups' share divide by 4, filters aligned;
 * vecB: numImages and imgStride divide by 4, images and targets aligned.
 */
template <bool vecA, bool vecB>
__global__ void __launch_bounds__(IG_THREADS, 2)
kImplicitFilterActs(const float* images, const float* filters, float* targets, const int numImages,
                    const int imgStride, const int numGroups, const int numFilterColors, const int numFilters,
                    const int imgSizeY, const int imgSizeX, const int numModulesY, const int numModulesX,
                    const int filterSize, const int paddingStart, const int moduleStride,
                    const float scaleTargets, const float scaleOutput) {
    __shared__ __align__(16) float As[2 * IG_SLICE];   // (read as float4)
    __shared__ __align__(16) float Bs[2 * IG_SLICE];
    const int numFiltersPerGroup = numFilters / numGroups;
    const int tilesM = DIVUP(numFiltersPerGroup, IG_TILE);
    const int g = blockIdx.y / tilesM, mTile = (blockIdx.y % tilesM) * IG_TILE, nTile = blockIdx.x * IG_TILE;
    const int filterPixels = filterSize * filterSize, K = numFilterColors * filterPixels;
    const int N = numModulesY * numModulesX * numImages;

    FilterActsA<vecA> la;
    const int f = mTile + wideCol();
    la.filters = &filters[g * numFiltersPerGroup + f];
    la.numFilters = numFilters, la.K = K, la.left = numFiltersPerGroup - f;

    FilterActsB<vecB> lb;
    lb.img = ImagePixels{images, imgStride, imgSizeY, imgSizeX, paddingStart, moduleStride, filterSize};
    lb.color0 = g * numFilterColors, lb.filterPixels = filterPixels, lb.K = K;
    for (int j = 0; j < 4; j++) {
        const int n = nTile + wideCol() + j, m = n / numImages;
        lb.my[j] = n < N ? m / numModulesX : -1, lb.mx[j] = m % numModulesX, lb.i[j] = n % numImages;
    }

    const RowMajorTile out{&targets[(size_t)(g * numFiltersPerGroup + mTile) * N + nTile], (size_t)N,
                           numFiltersPerGroup - mTile, N - nTile};
    implicitGemm<vecB>(As, Bs, la, lb, out, K, scaleTargets, scaleOutput);
}

/* ===================================================================================== *
 * imgActs                                                                               *
 * ===================================================================================== */

// A[((fy, fx), f)][c] = filters[(g's colour c, fy, fx), g's filter f]: four adjacent
// filters of one row (deep); with vec, the group's filter count divides by 4
template <bool vec>
struct ImgActsA {
    static const bool wide = false;
    const float* filters;   // at row (g's colour c, 0, 0), column g's first filter
    int numFilters, numFiltersPerGroup, K;
    bool valid;              // c exists

    __device__ void fetch(const int k0, float v[4]) const {
        const int k = k0 + deepRow();
        if (vec) {
            const int p = k / numFiltersPerGroup, f = k % numFiltersPerGroup;
            load4(valid && k < K ? &filters[(size_t)p * numFilters + f] : 0, v);
        } else {
            for (int j = 0; j < 4; j++) {
                const int p = (k + j) / numFiltersPerGroup, f = (k + j) % numFiltersPerGroup;
                v[j] = valid && k + j < K ? filters[(size_t)p * numFilters + f] : 0.0f;
            }
        }
    }
};

// B[((fy, fx), f)][(pixel, i)] = hidActs[g's filter f, the module whose pixel (fy, fx) is
// that pixel, i], or 0 (wide); with vec, the four columns are images i..i+3 of one pixel
template <bool vec>
struct ImgActsB {
    static const bool wide = true;
    const float* hidActs;   // at g's first filter
    int numImages, numFiltersPerGroup, numModulesY, numModulesX, filterSize, paddingStart, moduleStride, K;
    int y[4], x[4], i[4];   // the thread's columns (y = -1: past the last)

    __device__ const float* at(const int fy, const int fx, const int f, const int j) const {
        const int ty = y[j] - paddingStart - fy, tx = x[j] - paddingStart - fx;   // my, mx times the stride
        if (y[j] < 0 || ty < 0 || tx < 0 || ty % moduleStride != 0 || tx % moduleStride != 0) {
            return 0;
        }
        const int my = ty / moduleStride, mx = tx / moduleStride;
        if (my >= numModulesY || mx >= numModulesX) {
            return 0;
        }
        return &hidActs[((size_t)f * numModulesY * numModulesX + my * numModulesX + mx) * numImages + i[j]];
    }

    __device__ void fetch(const int k0, float v[4]) const {
        const int k = k0 + wideRow();
        if (k >= K) {
            zero4(v);
            return;
        }
        const int p = k / numFiltersPerGroup, f = k % numFiltersPerGroup;
        const int fy = p / filterSize, fx = p % filterSize;
        if (vec) {
            load4(at(fy, fx, f, 0), v);
        } else {
            for (int j = 0; j < 4; j++) {
                const float* q = at(fy, fx, f, j);
                v[j] = q != 0 ? *q : 0.0f;
            }
        }
    }
};

// C[c][(pixel, i)] = targets[(g's colour c, pixel), i]
struct ImgActsOut {
    float* targets;         // at g's first colour
    int imgPixels, numImages, targetStride, M, N, mTile, nTile;

    __device__ float* at(const int m, const int n) const {
        const int col = nTile + n;
        return &targets[((size_t)(mTile + m) * imgPixels + col / numImages) * targetStride + col % numImages];
    }
};

/*
 * Block: IG_THREADS threads. blockIdx.x: columns [blockIdx.x * IG_TILE, ...) of the
 * (pixel, image) pairs; blockIdx.y = group * tilesM + the tile of the group's colours.
 *
 * hidActs:  (numFilters * numModulesY * numModulesX, numImages), contiguous
 * filters:  (numFilterColors * filterSize^2, numFilters)
 * targets:  (numGroups * numFilterColors * imgSizeY * imgSizeX, numImages), rows targetStride apart
 *
 * targets = scaleTargets * targets + scaleOutput * the gradient w.r.t. the images (targets
 * not read when scaleTargets is 0). vecA: numFilters and its groups' share divide by 4,
 * filters aligned; vecB: numImages and targetStride divide by 4, hidActs and targets aligned.
 */
template <bool vecA, bool vecB>
__global__ void __launch_bounds__(IG_THREADS, 2)
kImplicitImgActs(const float* hidActs, const float* filters, float* targets, const int numImages,
                 const int targetStride, const int numGroups, const int numFilterColors, const int numFilters,
                 const int imgSizeY, const int imgSizeX, const int numModulesY, const int numModulesX,
                 const int filterSize, const int paddingStart, const int moduleStride,
                 const float scaleTargets, const float scaleOutput) {
    __shared__ __align__(16) float As[2 * IG_SLICE];   // (read as float4)
    __shared__ __align__(16) float Bs[2 * IG_SLICE];
    const int numFiltersPerGroup = numFilters / numGroups;
    const int tilesM = DIVUP(numFilterColors, IG_TILE);
    const int g = blockIdx.y / tilesM, mTile = (blockIdx.y % tilesM) * IG_TILE, nTile = blockIdx.x * IG_TILE;
    const int filterPixels = filterSize * filterSize, K = filterPixels * numFiltersPerGroup;
    const int imgPixels = imgSizeY * imgSizeX, N = imgPixels * numImages;

    ImgActsA<vecA> la;
    const int c = mTile + deepCol();
    la.valid = c < numFilterColors;
    la.filters = &filters[(size_t)(la.valid ? c : 0) * filterPixels * numFilters + g * numFiltersPerGroup];
    la.numFilters = numFilters, la.numFiltersPerGroup = numFiltersPerGroup, la.K = K;

    ImgActsB<vecB> lb;
    lb.hidActs = &hidActs[(size_t)g * numFiltersPerGroup * numModulesY * numModulesX * numImages];
    lb.numImages = numImages, lb.numFiltersPerGroup = numFiltersPerGroup, lb.numModulesY = numModulesY;
    lb.numModulesX = numModulesX, lb.filterSize = filterSize, lb.paddingStart = paddingStart;
    lb.moduleStride = moduleStride, lb.K = K;
    for (int j = 0; j < 4; j++) {
        const int n = nTile + wideCol() + j, pixel = n / numImages;
        lb.y[j] = n < N ? pixel / imgSizeX : -1, lb.x[j] = pixel % imgSizeX, lb.i[j] = n % numImages;
    }

    const ImgActsOut out{&targets[(size_t)g * numFilterColors * imgPixels * targetStride], imgPixels, numImages,
                         targetStride, numFilterColors - mTile, N - nTile, mTile, nTile};
    implicitGemm<vecB>(As, Bs, la, lb, out, K, scaleTargets, scaleOutput);
}

/* ===================================================================================== *
 * weightActs                                                                            *
 * ===================================================================================== */

// A[q][(c, fy, fx)] = images[g's colour c, pixel (fy, fx) of module m0 + q / numImages,
// image q % numImages], q from the slice's start (deep); with vec, numImages % 4 == 0, so
// four adjacent q are images i..i+3 of one module
template <bool vec>
struct WeightActsA {
    static const bool wide = false;
    ImagePixels img;
    int numImages, numModulesX, m0, q0, K;
    int c, fy, fx;          // the thread's row (c = -1: past the last)

    __device__ float one(const int q) const {
        const int m = m0 + q / numImages;
        const float* p = img.at(c, fy, fx, m / numModulesX, m % numModulesX, q % numImages);
        return p != 0 ? *p : 0.0f;
    }

    __device__ void fetch(const int k0, float v[4]) const {
        const int k = k0 + deepRow();
        if (vec) {
            const int q = q0 + k, m = m0 + q / numImages;
            load4(c >= 0 && k < K ? img.at(c, fy, fx, m / numModulesX, m % numModulesX, q % numImages) : 0, v);
        } else {
            for (int j = 0; j < 4; j++) {
                v[j] = c >= 0 && k + j < K ? one(q0 + k + j) : 0.0f;
            }
        }
    }
};

// B[q][f] = hidActs[g's filter f, (module m0, image 0) + q] (deep: adjacent q are adjacent)
template <bool vec>
struct WeightActsB {
    static const bool wide = false;
    const float* hidActs;   // at (this thread's filter, module m0, image 0) + q0
    int K;
    bool valid;             // the filter exists

    __device__ void fetch(const int k0, float v[4]) const {
        const int k = k0 + deepRow();
        if (vec) {
            load4(valid && k < K ? &hidActs[k] : 0, v);
        } else {
            for (int j = 0; j < 4; j++) {
                v[j] = valid && k + j < K ? hidActs[k + j] : 0.0f;
            }
        }
    }
};

/*
 * Block: IG_THREADS threads. blockIdx.x: columns [blockIdx.x * IG_TILE, ...) of the group's
 * filters; blockIdx.y = ((group * numPartialSums + partial sum) * numSlices + slice) *
 * tilesM + the tile of the rows (c, fy, fx). A partial sum covers partialSum modules, i.e.
 * partialSum * numImages products per filter weight; slice s takes [s * sliceLen, (s + 1)
 * * sliceLen) of them (sliceLen divides by IG_DEPTH), so that a layer with few partial sums
 * still fills the GPU (the host adds the slices up).
 *
 * images:   (numGroups * numFilterColors * imgSizeY * imgSizeX, numImages), rows imgStride apart
 * hidActs:  (numFilters * numModulesY * numModulesX, numImages), contiguous
 * targets:  (numSlices * numPartialSums * numFilterColors * filterSize^2, numFilters): slice
 *           s's sum for partial sum p at rows (s * numPartialSums + p) * numFilterColors *
 *           filterSize^2
 *
 * targets = scaleTargets * targets + scaleOutput * the filter gradient (targets not read
 * when scaleTargets is 0). vecA: numImages and imgStride divide by 4, images aligned; vecB:
 * numImages divides by 4, hidActs aligned.
 */
template <bool vecA, bool vecB>
__global__ void __launch_bounds__(IG_THREADS, 2)
kImplicitWeightActs(const float* images, const float* hidActs, float* targets, const int numImages,
                    const int imgStride, const int numGroups, const int numFilterColors, const int numFilters,
                    const int imgSizeY, const int imgSizeX, const int numModulesY, const int numModulesX,
                    const int filterSize, const int paddingStart, const int moduleStride, const int partialSum,
                    const int numSlices, const int sliceLen, const float scaleTargets, const float scaleOutput) {
    __shared__ __align__(16) float As[2 * IG_SLICE];   // (read as float4)
    __shared__ __align__(16) float Bs[2 * IG_SLICE];
    const int numFiltersPerGroup = numFilters / numGroups, numModules = numModulesY * numModulesX;
    const int filterPixels = filterSize * filterSize, rows = numFilterColors * filterPixels;
    const int numPartialSums = numModules / partialSum;
    const int tilesM = DIVUP(rows, IG_TILE);
    const int mTile = (blockIdx.y % tilesM) * IG_TILE, nTile = blockIdx.x * IG_TILE;
    const int z = blockIdx.y / tilesM;   // ((g * numPartialSums + p) * numSlices + s)
    const int s = z % numSlices, p = (z / numSlices) % numPartialSums, g = z / numSlices / numPartialSums;
    const int m0 = p * partialSum, q0 = s * sliceLen;
    const int K = MIN(sliceLen, partialSum * numImages - q0);

    WeightActsA<vecA> la;
    la.img = ImagePixels{images, imgStride, imgSizeY, imgSizeX, paddingStart, moduleStride, filterSize};
    la.numImages = numImages, la.numModulesX = numModulesX, la.m0 = m0, la.q0 = q0, la.K = K;
    const int r = mTile + deepCol(), rp = r % filterPixels;
    la.c = r < rows ? g * numFilterColors + r / filterPixels : -1, la.fy = rp / filterSize, la.fx = rp % filterSize;

    WeightActsB<vecB> lb;
    const int f = nTile + deepCol();
    lb.valid = f < numFiltersPerGroup;
    lb.hidActs = &hidActs[((size_t)(g * numFiltersPerGroup + (lb.valid ? f : 0)) * numModules + m0) * numImages + q0];
    lb.K = K;

    const RowMajorTile out{&targets[((size_t)(s * numPartialSums + p) * rows + mTile) * numFilters
                                    + g * numFiltersPerGroup + nTile],
                           (size_t)numFilters, rows - mTile, numFiltersPerGroup - nTile};
    implicitGemm<false>(As, Bs, la, lb, out, K, scaleTargets, scaleOutput);
}
