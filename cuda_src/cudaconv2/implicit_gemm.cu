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
 *     (64 multiply-adds per 16 numbers read from shared memory); the side of C that is the
 *     filters' or colours' count may take 64-wide tiles instead (template argument BM or
 *     BN), which waste less of the block on AlexNet's 48 and 192 filters per tower;
 *   - the next 8-deep slices of A and B are on their way while the current ones are
 *     multiplied, one barrier per slice, in one of two ways (template argument async):
 *     loaded into registers and stored to the other of two shared buffers after the
 *     multiplication (any GPU), or copied straight into shared memory by sm_80's
 *     asynchronous copies (cp.async), two slices ahead, in three buffers;
 *   - 16-byte loads and stores wherever four consecutive elements are adjacent and aligned
 *     (template arguments vecA, vecB, which the host sets from the sizes and addresses).
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
#define IG_TILE     128     // rows and columns of C per block (64 on a side with BM or BN 64)
#define IG_DEPTH    8       // k per slice
#define IG_STAGES   3       // shared buffers per operand (the register path uses 2)

/*
 * How a thread's four elements of an operand slice (IG_DEPTH x W, k by column, W the
 * tile's width: 64 or 128) lie:
 *   wide: row k0 + threadIdx.x / (W / 4), columns (threadIdx.x % (W / 4)) * 4 + [0, 4)
 *   deep: column threadIdx.x / 2, rows k0 + (threadIdx.x % 2) * 4 + [0, 4)
 * Each loader takes the one whose four elements are adjacent in memory. The slice needs the
 * first 2 * W threads; with W = 64 the others load nothing.
 */
template <bool wide, int W>
struct Lie {
    static __device__ __forceinline__ int row() { return wide ? threadIdx.x / (W / 4) : (threadIdx.x % 2) * 4; }
    static __device__ __forceinline__ int col() { return wide ? (threadIdx.x % (W / 4)) * 4 : threadIdx.x / 2; }
    static __device__ __forceinline__ bool active() { return threadIdx.x < 2 * W; }
};

/*
 * Asynchronous copies of 4 or 16 bytes from global to shared memory (sm_80 on), a group
 * boundary after the copies issued so far, and waiting until at most n groups are pending.
 * Before sm_80, plain copies. The tests' CPU emulation (tests/cuda_emulation.py) supplies
 * its own, which land as late or as early as a GPU's may, so that it checks the waits too.
 */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
__device__ __forceinline__ void asyncCopy4(float* s, const float* g) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"((unsigned)__cvta_generic_to_shared(s)), "l"(g));
}
__device__ __forceinline__ void asyncCopy16(float* s, const float* g) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"((unsigned)__cvta_generic_to_shared(s)), "l"(g));
}
__device__ __forceinline__ void asyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int n>
__device__ __forceinline__ void asyncWait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(n)); }
#elif defined(EMU_ASYNC_COPIES)
__device__ __forceinline__ void asyncCopy4(float* s, const float* g) { emu_async_copy(s, g, 4); }
__device__ __forceinline__ void asyncCopy16(float* s, const float* g) { emu_async_copy(s, g, 16); }
__device__ __forceinline__ void asyncCommit() { emu_async_commit(); }
template <int n>
__device__ __forceinline__ void asyncWait() { emu_async_wait(n); }
#else
__device__ __forceinline__ void asyncCopy4(float* s, const float* g) { *s = *g; }
__device__ __forceinline__ void asyncCopy16(float* s, const float* g) {
    *reinterpret_cast<float4*>(s) = *reinterpret_cast<const float4*>(g);
}
__device__ __forceinline__ void asyncCommit() {}
template <int n>
__device__ __forceinline__ void asyncWait() {}
#endif

// p[j] = p0 + j, or all null when p0 is: four adjacent elements
__device__ __forceinline__ void quad(const float* p0, const float* p[4]) {
    for (int j = 0; j < 4; j++) {
        p[j] = p0 != 0 ? p0 + j : 0;
    }
}

/*
 * Every loader has src(k0, p): the addresses of this thread's four elements of the slice
 * [k0, k0 + IG_DEPTH) of its operand, null for those that are zero (past K, outside the
 * operand, padding); with Load::vec they are adjacent and 16-byte aligned (all or none).
 */

// src of a deep loader, from its one(k): the element at depth k, or null
template <class Load>
__device__ __forceinline__ void deepSrc(const Load& l, const int k0, const float* p[4]) {
    const int k = k0 + Lie<false, Load::W>::row();
    if (Load::vec) {
        quad(l.one(k), p);
    } else {
        for (int j = 0; j < 4; j++) {
            p[j] = l.one(k + j);
        }
    }
}

// this thread's four elements of the slice at k0, into registers
template <class Load>
__device__ __forceinline__ void fetchSlice(const Load& l, const int k0, float v[4]) {
    const float* p[4];
    l.src(k0, p);
    if (Load::vec) {
        if (p[0] != 0) {
            const float4 q = *reinterpret_cast<const float4*>(p[0]);
            v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
        } else {
            v[0] = v[1] = v[2] = v[3] = 0.0f;
        }
    } else {
        for (int j = 0; j < 4; j++) {
            v[j] = p[j] != 0 ? *p[j] : 0.0f;
        }
    }
}

// this thread's four elements of the slice at k0, copied asynchronously into shared slice s
// (zeros stored directly: they are there before the barrier that ends the copies' wait)
template <class Load>
__device__ __forceinline__ void copySlice(const Load& l, const int k0, float* s) {
    typedef Lie<Load::wide, Load::W> L;
    const float* p[4];
    l.src(k0, p);
    if (Load::vec && Load::wide) {
        float* d = &s[L::row() * Load::W + L::col()];
        if (p[0] != 0) {
            asyncCopy16(d, p[0]);
        } else {
            *reinterpret_cast<float4*>(d) = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
    } else {
        for (int j = 0; j < 4; j++) {
            float* d = Load::wide ? &s[L::row() * Load::W + L::col() + j] : &s[(L::row() + j) * Load::W + L::col()];
            if (p[j] != 0) {
                asyncCopy4(d, p[j]);
            } else {
                *d = 0.0f;
            }
        }
    }
}

// this thread's four elements of a slice, from registers into shared slice s
template <class Load>
__device__ __forceinline__ void putSlice(float* s, const float v[4]) {
    typedef Lie<Load::wide, Load::W> L;
    if (Load::wide) {
        *reinterpret_cast<float4*>(&s[L::row() * Load::W + L::col()]) = make_float4(v[0], v[1], v[2], v[3]);
    } else {
        for (int j = 0; j < 4; j++) {
            s[(L::row() + j) * Load::W + L::col()] = v[j];
        }
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

// four numbers of a 16-byte aligned float4 in shared memory, into r
__device__ __forceinline__ void read4(const float* s, float* r) {
    const float4 q = *reinterpret_cast<const float4*>(s);
    r[0] = q.x, r[1] = q.y, r[2] = q.z, r[3] = q.w;
}

// acc += the product of shared slices a (IG_DEPTH x BM) and b (IG_DEPTH x BN), this
// thread's RM x RN outputs (see implicitGemm)
template <int BM, int BN>
__device__ __forceinline__ void multiplySlice(const float* a, const float* b, float (&acc)[BM / 16][BN / 16]) {
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
#pragma unroll
    for (int kk = 0; kk < IG_DEPTH; kk++) {
        float ra[BM / 16], rb[BN / 16];
#pragma unroll
        for (int band = 0; band < BM / 64; band++) {
            read4(&a[kk * BM + band * 64 + ty * 4], &ra[band * 4]);
        }
#pragma unroll
        for (int band = 0; band < BN / 64; band++) {
            read4(&b[kk * BN + band * 64 + tx * 4], &rb[band * 4]);
        }
#pragma unroll
        for (int i = 0; i < BM / 16; i++) {
#pragma unroll
            for (int j = 0; j < BN / 16; j++) {
                acc[i][j] += ra[i] * rb[j];
            }
        }
    }
}

/*
 * The core. Block: IG_THREADS threads, tile [mTile, mTile + BM) x [nTile, nTile + BN) of
 * C, with BM = LoadA::W and BN = LoadB::W, each 64 or 128 (the loaders and `out` carry
 * the offsets). Thread (ty, tx) = (threadIdx.x / 16, threadIdx.x % 16) owns rows b * 64 +
 * ty * 4 + [0, 4) of the tile for each 64-row band b, and the same columns with tx (bands,
 * so that a warp's reads of shared memory are 16-byte and conflict-free): 8 x 8 outputs in
 * a 128 x 128 tile, 4 x 8 with BM 64.
 *
 * As, Bs:  IG_STAGES * IG_DEPTH * BM and IG_STAGES * IG_DEPTH * BN floats, shared
 * la, lb:  the loaders of A and B (src, above); LoadX::wide names their lie
 * out:     at(m, n): C's element (tile coordinates); M, N: C's extent from the tile's corner
 * K:       the product's depth
 *
 * C = scaleTargets * C + scaleOutput * A^T B, where C is not read when scaleTargets is 0.
 */
template <bool async, bool vecOut, class LoadA, class LoadB, class Out>
__device__ void implicitGemm(float* As, float* Bs, const LoadA& la, const LoadB& lb, const Out& out, const int K,
                             const float scaleTargets, const float scaleOutput) {
    const int BM = LoadA::W, BN = LoadB::W, RM = BM / 16, RN = BN / 16;   // outputs per thread: RM x RN
    const int SA = IG_DEPTH * BM, SB = IG_DEPTH * BN;                       // a slice's floats
    const bool loadA = Lie<LoadA::wide, BM>::active(), loadB = Lie<LoadB::wide, BN>::active();
    float acc[RM][RN];
#pragma unroll
    for (int i = 0; i < RM; i++) {
#pragma unroll
        for (int j = 0; j < RN; j++) {
            acc[i][j] = 0.0f;
        }
    }
    if (async) {
        // slices 0 .. IG_STAGES - 2 on their way, one copy group each (empty past K)
        for (int st = 0; st < IG_STAGES - 1; st++) {
            if (st * IG_DEPTH < K) {
                if (loadA) {
                    copySlice(la, st * IG_DEPTH, As + st * SA);
                }
                if (loadB) {
                    copySlice(lb, st * IG_DEPTH, Bs + st * SB);
                }
            }
            asyncCommit();
        }
        for (int k0 = 0, it = 0; k0 < K; k0 += IG_DEPTH, it++) {
            asyncWait<IG_STAGES - 2>();  // this thread's copies of slice it are in
            __syncthreads();              // everyone's; and slice it - 1 is multiplied
            const int next = k0 + (IG_STAGES - 1) * IG_DEPTH, nb = (it + IG_STAGES - 1) % IG_STAGES;
            if (next < K) {  // into the buffer of slice it - 1
                if (loadA) {
                    copySlice(la, next, As + nb * SA);
                }
                if (loadB) {
                    copySlice(lb, next, Bs + nb * SB);
                }
            }
            asyncCommit();
            multiplySlice<BM, BN>(As + (it % IG_STAGES) * SA, Bs + (it % IG_STAGES) * SB, acc);
        }
    } else {
        float va[4], vb[4];
        if (loadA) {
            fetchSlice(la, 0, va);
            putSlice<LoadA>(As, va);
        }
        if (loadB) {
            fetchSlice(lb, 0, vb);
            putSlice<LoadB>(Bs, vb);
        }
        __syncthreads();
        int buf = 0;
        for (int k0 = 0; k0 < K; k0 += IG_DEPTH) {
            const bool more = k0 + IG_DEPTH < K;
            if (more) {  // the next slice, in flight while this one is multiplied
                if (loadA) {
                    fetchSlice(la, k0 + IG_DEPTH, va);
                }
                if (loadB) {
                    fetchSlice(lb, k0 + IG_DEPTH, vb);
                }
            }
            multiplySlice<BM, BN>(As + buf * SA, Bs + buf * SB, acc);
            if (more) {  // the other buffer was last read before the previous barrier
                if (loadA) {
                    putSlice<LoadA>(As + (buf ^ 1) * SA, va);
                }
                if (loadB) {
                    putSlice<LoadB>(Bs + (buf ^ 1) * SB, vb);
                }
            }
            __syncthreads();
            buf ^= 1;
        }
    }
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    // (unrolled, so that acc stays in registers)
#pragma unroll
    for (int i = 0; i < RM; i++) {
        const int m = (i / 4) * 64 + ty * 4 + i % 4;
        if (m >= out.M) {
            continue;
        }
#pragma unroll
        for (int h = 0; h < RN / 4; h++) {
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

// a tile of C in a row-major matrix: c is its corner, rows ld floats apart; M, N: the rows
// and columns that exist from the corner on
struct RowMajorTile {
    float* c;
    size_t ld;
    int M, N;

    __device__ float* at(const int m, const int n) const { return &c[m * ld + n]; }
};

// The thread's four columns nTile + col + j of N (place, image) pairs, the place split into
// (y, x) of a row `width` long (filterActs: modules; imgActs: pixels); y = -1 past the last
__device__ __forceinline__ void splitColumns(const int nTile, const int numImages, const int width, const int N,
                                             int (&y)[4], int (&x)[4], int (&i)[4]) {
    for (int j = 0; j < 4; j++) {
        const int n = nTile + Lie<true, IG_TILE>::col() + j, place = n / numImages;
        y[j] = n < N ? place / width : -1, x[j] = place % width, i[j] = n % numImages;
    }
}

/* ===================================================================================== *
 * filterActs                                                                            *
 * ===================================================================================== */

// A[k][f] = filters[k, g's filter f]: four adjacent filters of one row (wide)
template <bool vector, int width>
struct FilterActsA {
    static const bool wide = true;
    static const int W = width;   // the tile's width
    static const bool vec = vector;
    const float* filters;   // at this thread's first filter
    int numFilters, K, left; // left: how many of the four filters exist

    __device__ void src(const int k0, const float* p[4]) const {
        const int k = k0 + Lie<wide, W>::row();
        for (int j = 0; j < 4; j++) {
            p[j] = k < K && j < left ? &filters[(size_t)k * numFilters + j] : 0;
        }
    }
};

// B[(c, fy, fx)][(m, i)] = images[g's colour c, pixel (fy, fx) of module m, image i] (wide);
// with vec, numImages % 4 == 0 and the four columns are images i..i+3 of one module
template <bool vector, int width>
struct FilterActsB {
    static const bool wide = true;
    static const int W = width;   // the tile's width
    static const bool vec = vector;
    ImagePixels img;
    int color0, filterPixels, K;
    int my[4], mx[4], i[4];   // the thread's columns (my = -1: past the last)

    __device__ void src(const int k0, const float* p[4]) const {
        const int k = k0 + Lie<wide, W>::row();
        const int c = color0 + k / filterPixels, px = k % filterPixels;
        const int fy = px / img.filterSize, fx = px % img.filterSize;
        if (vec) {
            quad(k < K && my[0] >= 0 ? img.at(c, fy, fx, my[0], mx[0], i[0]) : 0, p);
        } else {
            for (int j = 0; j < 4; j++) {
                p[j] = k < K && my[j] >= 0 ? img.at(c, fy, fx, my[j], mx[j], i[j]) : 0;
            }
        }
    }
};

/*
 * Block: IG_THREADS threads. blockIdx.x: columns [blockIdx.x * IG_TILE, ...) of the
 * (module, image) pairs; blockIdx.y = group * tilesM + the tile of BM of the group's filters.
 *
 * images:   (numGroups * numFilterColors * imgSizeY * imgSizeX, numImages), rows imgStride apart
 * filters:  (numFilterColors * filterSize^2, numFilters)
 * targets:  (numFilters * numModulesY * numModulesX, numImages), contiguous
 *
 * targets = scaleTargets * targets + scaleOutput * the convolution (targets not read when
 * scaleTargets is 0). vecA: numFilters and its groups' share divide by 4, filters aligned;
 * vecB: numImages and imgStride divide by 4, images and targets aligned.
 */
template <int BM, bool async, bool vecA, bool vecB>
__global__ void __launch_bounds__(IG_THREADS, 2)
kImplicitFilterActs(const float* images, const float* filters, float* targets, const int numImages,
                    const int imgStride, const int numGroups, const int numFilterColors, const int numFilters,
                    const int imgSizeY, const int imgSizeX, const int numModulesY, const int numModulesX,
                    const int filterSize, const int paddingStart, const int moduleStride,
                    const float scaleTargets, const float scaleOutput) {
    __shared__ __align__(16) float As[IG_STAGES * IG_DEPTH * BM];   // (read as float4)
    __shared__ __align__(16) float Bs[IG_STAGES * IG_DEPTH * IG_TILE];
    const int numFiltersPerGroup = numFilters / numGroups;
    const int tilesM = DIVUP(numFiltersPerGroup, BM);
    const int g = blockIdx.y / tilesM, mTile = (blockIdx.y % tilesM) * BM, nTile = blockIdx.x * IG_TILE;
    const int filterPixels = filterSize * filterSize, K = numFilterColors * filterPixels;
    const int N = numModulesY * numModulesX * numImages;

    FilterActsA<vecA, BM> la;
    const int f = mTile + Lie<true, BM>::col();
    la.filters = &filters[g * numFiltersPerGroup + f];
    la.numFilters = numFilters, la.K = K, la.left = numFiltersPerGroup - f;

    FilterActsB<vecB, IG_TILE> lb;
    lb.img = ImagePixels{images, imgStride, imgSizeY, imgSizeX, paddingStart, moduleStride, filterSize};
    lb.color0 = g * numFilterColors, lb.filterPixels = filterPixels, lb.K = K;
    splitColumns(nTile, numImages, numModulesX, N, lb.my, lb.mx, lb.i);

    const RowMajorTile out{&targets[(size_t)(g * numFiltersPerGroup + mTile) * N + nTile], (size_t)N,
                           numFiltersPerGroup - mTile, N - nTile};
    implicitGemm<async, vecB>(As, Bs, la, lb, out, K, scaleTargets, scaleOutput);
}

/* ===================================================================================== *
 * imgActs                                                                               *
 * ===================================================================================== */

// A[((fy, fx), f)][c] = filters[(g's colour c, fy, fx), g's filter f]: four adjacent
// filters of one row (deep); with vec, the group's filter count divides by 4
template <bool vector, int width>
struct ImgActsA {
    static const bool wide = false;
    static const int W = width;   // the tile's width
    static const bool vec = vector;
    const float* filters;   // at row (g's colour c, 0, 0), column g's first filter
    int numFilters, numFiltersPerGroup, K;
    bool valid;              // c exists

    __device__ const float* one(const int k) const {
        return valid && k < K ? &filters[(size_t)(k / numFiltersPerGroup) * numFilters + k % numFiltersPerGroup] : 0;
    }

    __device__ void src(const int k0, const float* p[4]) const { deepSrc(*this, k0, p); }
};

// B[((fy, fx), f)][(pixel, i)] = hidActs[g's filter f, the module whose pixel (fy, fx) is
// that pixel, i], or 0 (wide); with vec, the four columns are images i..i+3 of one pixel
template <bool vector, int width>
struct ImgActsB {
    static const bool wide = true;
    static const int W = width;   // the tile's width
    static const bool vec = vector;
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

    __device__ void src(const int k0, const float* p[4]) const {
        const int k = k0 + Lie<wide, W>::row();
        const int px = k / numFiltersPerGroup, f = k % numFiltersPerGroup;
        const int fy = px / filterSize, fx = px % filterSize;
        if (vec) {
            quad(k < K ? at(fy, fx, f, 0) : 0, p);
        } else {
            for (int j = 0; j < 4; j++) {
                p[j] = k < K ? at(fy, fx, f, j) : 0;
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
 * (pixel, image) pairs; blockIdx.y = group * tilesM + the tile of BM of the group's colours.
 *
 * hidActs:  (numFilters * numModulesY * numModulesX, numImages), contiguous
 * filters:  (numFilterColors * filterSize^2, numFilters)
 * targets:  (numGroups * numFilterColors * imgSizeY * imgSizeX, numImages), rows targetStride apart
 *
 * targets = scaleTargets * targets + scaleOutput * the gradient w.r.t. the images (targets
 * not read when scaleTargets is 0). vecA: numFilters and its groups' share divide by 4,
 * filters aligned; vecB: numImages and targetStride divide by 4, hidActs and targets aligned.
 */
template <int BM, bool async, bool vecA, bool vecB>
__global__ void __launch_bounds__(IG_THREADS, 2)
kImplicitImgActs(const float* hidActs, const float* filters, float* targets, const int numImages,
                 const int targetStride, const int numGroups, const int numFilterColors, const int numFilters,
                 const int imgSizeY, const int imgSizeX, const int numModulesY, const int numModulesX,
                 const int filterSize, const int paddingStart, const int moduleStride,
                 const float scaleTargets, const float scaleOutput) {
    __shared__ __align__(16) float As[IG_STAGES * IG_DEPTH * BM];   // (read as float4)
    __shared__ __align__(16) float Bs[IG_STAGES * IG_DEPTH * IG_TILE];
    const int numFiltersPerGroup = numFilters / numGroups;
    const int tilesM = DIVUP(numFilterColors, BM);
    const int g = blockIdx.y / tilesM, mTile = (blockIdx.y % tilesM) * BM, nTile = blockIdx.x * IG_TILE;
    const int filterPixels = filterSize * filterSize, K = filterPixels * numFiltersPerGroup;
    const int imgPixels = imgSizeY * imgSizeX, N = imgPixels * numImages;

    ImgActsA<vecA, BM> la;
    const int c = mTile + Lie<false, BM>::col();
    la.valid = c < numFilterColors;
    la.filters = &filters[(size_t)(la.valid ? c : 0) * filterPixels * numFilters + g * numFiltersPerGroup];
    la.numFilters = numFilters, la.numFiltersPerGroup = numFiltersPerGroup, la.K = K;

    ImgActsB<vecB, IG_TILE> lb;
    lb.hidActs = &hidActs[(size_t)g * numFiltersPerGroup * numModulesY * numModulesX * numImages];
    lb.numImages = numImages, lb.numFiltersPerGroup = numFiltersPerGroup, lb.numModulesY = numModulesY;
    lb.numModulesX = numModulesX, lb.filterSize = filterSize, lb.paddingStart = paddingStart;
    lb.moduleStride = moduleStride, lb.K = K;
    splitColumns(nTile, numImages, imgSizeX, N, lb.y, lb.x, lb.i);

    const ImgActsOut out{&targets[(size_t)g * numFilterColors * imgPixels * targetStride], imgPixels, numImages,
                         targetStride, numFilterColors - mTile, N - nTile, mTile, nTile};
    implicitGemm<async, vecB>(As, Bs, la, lb, out, K, scaleTargets, scaleOutput);
}

/* ===================================================================================== *
 * weightActs                                                                            *
 * ===================================================================================== */

// A[q][(c, fy, fx)] = images[g's colour c, pixel (fy, fx) of module m0 + q / numImages,
// image q % numImages], q from the slice's start (deep); with vec, numImages % 4 == 0, so
// four adjacent q are images i..i+3 of one module
template <bool vector, int width>
struct WeightActsA {
    static const bool wide = false;
    static const int W = width;   // the tile's width
    static const bool vec = vector;
    ImagePixels img;
    int numImages, numModulesX, m0, q0, K;
    int c, fy, fx;          // the thread's row (c = -1: past the last)

    __device__ const float* one(const int k) const {
        const int q = q0 + k, m = m0 + q / numImages;
        return c >= 0 && k < K ? img.at(c, fy, fx, m / numModulesX, m % numModulesX, q % numImages) : 0;
    }

    __device__ void src(const int k0, const float* p[4]) const { deepSrc(*this, k0, p); }
};

// B[q][f] = hidActs[g's filter f, (module m0, image 0) + q] (deep: adjacent q are adjacent)
template <bool vector, int width>
struct WeightActsB {
    static const bool wide = false;
    static const int W = width;   // the tile's width
    static const bool vec = vector;
    const float* hidActs;   // at (this thread's filter, module m0, image 0) + q0
    int K;
    bool valid;             // the filter exists

    __device__ const float* one(const int k) const { return valid && k < K ? &hidActs[k] : 0; }

    __device__ void src(const int k0, const float* p[4]) const { deepSrc(*this, k0, p); }
};

/*
 * Block: IG_THREADS threads. blockIdx.x: columns [blockIdx.x * BN, ...) of the group's
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
template <int BN, bool async, bool vecA, bool vecB>
__global__ void __launch_bounds__(IG_THREADS, 2)
kImplicitWeightActs(const float* images, const float* hidActs, float* targets, const int numImages,
                    const int imgStride, const int numGroups, const int numFilterColors, const int numFilters,
                    const int imgSizeY, const int imgSizeX, const int numModulesY, const int numModulesX,
                    const int filterSize, const int paddingStart, const int moduleStride, const int partialSum,
                    const int numSlices, const int sliceLen, const float scaleTargets, const float scaleOutput) {
    __shared__ __align__(16) float As[IG_STAGES * IG_DEPTH * IG_TILE];   // (read as float4)
    __shared__ __align__(16) float Bs[IG_STAGES * IG_DEPTH * BN];
    const int numFiltersPerGroup = numFilters / numGroups, numModules = numModulesY * numModulesX;
    const int filterPixels = filterSize * filterSize, rows = numFilterColors * filterPixels;
    const int numPartialSums = numModules / partialSum;
    const int tilesM = DIVUP(rows, IG_TILE);
    const int mTile = (blockIdx.y % tilesM) * IG_TILE, nTile = blockIdx.x * BN;
    const int z = blockIdx.y / tilesM;   // ((g * numPartialSums + p) * numSlices + s)
    const int s = z % numSlices, p = (z / numSlices) % numPartialSums, g = z / numSlices / numPartialSums;
    const int m0 = p * partialSum, q0 = s * sliceLen;
    const int K = MIN(sliceLen, partialSum * numImages - q0);

    WeightActsA<vecA, IG_TILE> la;
    la.img = ImagePixels{images, imgStride, imgSizeY, imgSizeX, paddingStart, moduleStride, filterSize};
    la.numImages = numImages, la.numModulesX = numModulesX, la.m0 = m0, la.q0 = q0, la.K = K;
    const int r = mTile + Lie<false, IG_TILE>::col(), rp = r % filterPixels;
    la.c = r < rows ? g * numFilterColors + r / filterPixels : -1, la.fy = rp / filterSize, la.fx = rp % filterSize;

    WeightActsB<vecB, BN> lb;
    const int f = nTile + Lie<false, BN>::col();
    lb.valid = f < numFiltersPerGroup;
    lb.hidActs = &hidActs[((size_t)(g * numFiltersPerGroup + (lb.valid ? f : 0)) * numModules + m0) * numImages + q0];
    lb.K = K;

    const RowMajorTile out{&targets[((size_t)(s * numPartialSums + p) * rows + mTile) * numFilters
                                    + g * numFiltersPerGroup + nTile],
                           (size_t)numFilters, rows - mTile, numFiltersPerGroup - nTile};
    implicitGemm<async, false>(As, Bs, la, lb, out, K, scaleTargets, scaleOutput);
}
