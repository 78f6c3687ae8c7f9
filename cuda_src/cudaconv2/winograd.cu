/*
 * winograd.cu: the "winograd" variant of the 3x3, stride-1 shared-filter convolution, new
 * in this port (no 2012 counterpart). Winograd's minimal filtering F(2x2, 3x3): each 2x2
 * tile of outputs comes from a 4x4 tile of inputs with 16 multiplications per (filter,
 * colour) pair instead of 36, the 16 being 16 independent matrix products over colours
 * that cuBLAS does as one strided batch (Lavin & Gray, "Fast Algorithms for Convolutional
 * Neural Networks", 2015):
 *
 *   U = G g G^T          per (colour, filter): the 3x3 filter g -> 4x4
 *   V = B^T d B          per (colour, tile, image): the 4x4 input tile d -> 4x4
 *   M[k] = U[k]^T V[k]   for each of the 16 positions k of the 4x4 tiles (cuBLAS)
 *   Y = A^T M A          per (filter, tile, image): 4x4 -> the 2x2 outputs
 *
 * with B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5;
 * 0 0 1], A^T = [1 1 1 0; 0 1 -1 -1].
 *
 * The input gradient (imgActs) is the same computation on hidActs with each filter turned
 * by 180 degrees (flip) and colours and filters exchanged, and padding 2 - padding.
 *
 *   kWinogradFilters   filters -> U
 *   kWinogradInputs    images (or hidActs) -> V
 *   kWinogradOutputs   M -> targets, scaled and added as the 2012 kernels do
 *
 * Host side: cudaconvnet/backends/cuda/conv_winograd.py (--conv-kernels=winograd, which
 * falls back to the gemm variant for other filter sizes, strides and for weightActs).
 * Reference: cudaconvnet/backends/numpy/{filter,img}_acts.py; checked against it by
 * tests/test_cuda_conv_gemm.py.
 *
 * Layouts (cases fastest, as everywhere in cudaconv2):
 *   filters  (numFilterColors * 9, numFilters): row (c, fy, fx)
 *   U        (16, numFilterColors, numFilters): U[k] is laid out like one tap of filters
 *   images   (numColors, imgSizeY, imgSizeX, numImages), rows imgStride apart
 *   V        (16, numColors, tilesY * tilesX * numImages)
 *   M        (16, numFilters, tilesY * tilesX * numImages)
 *   targets  (numFilters, outY, outX, numImages)
 * Tile (ty, tx) covers outputs (2ty + [0, 2), 2tx + [0, 2)) and inputs paddingStart + 2ty
 * + [0, 4) (and the same for x); inputs outside the image are zeros, outputs past outY /
 * outX are not written.
 */
#include "cudaconv2/cudaconv2.cuh"

#define WINOGRAD_THREADS 256

/*
 * One thread per (colour, filter): blockIdx.x * WINOGRAD_THREADS + threadIdx.x = c *
 * numFilters + f.
 *
 * filters: (numFilterColors * 9, numFilters)
 * U:       (16, numFilterColors, numFilters)
 *
 * U[k][c][f] = (G g G^T)[k / 4][k % 4], g = the 3x3 filter f of colour c, turned by 180
 * degrees when flip is not 0.
 */
__global__ void kWinogradFilters(const float* filters, float* U, const int numFilterColors, const int numFilters,
                                 const int flip) {
    const int idx = blockIdx.x * WINOGRAD_THREADS + threadIdx.x;
    if (idx >= numFilterColors * numFilters) {
        return;
    }
    const int c = idx / numFilters, f = idx % numFilters;
    float g[3][3];
    for (int y = 0; y < 3; y++) {
        for (int x = 0; x < 3; x++) {
            const int p = flip ? (2 - y) * 3 + (2 - x) : y * 3 + x;
            g[y][x] = filters[(size_t)(c * 9 + p) * numFilters + f];
        }
    }
    // Gg: 4x3 (rows of G applied down each column of g)
    float t[4][3];
    for (int x = 0; x < 3; x++) {
        t[0][x] = g[0][x];
        t[1][x] = 0.5f * (g[0][x] + g[1][x] + g[2][x]);
        t[2][x] = 0.5f * (g[0][x] - g[1][x] + g[2][x]);
        t[3][x] = g[2][x];
    }
    // (Gg) G^T: 4x4
    const size_t plane = (size_t)numFilterColors * numFilters;
    for (int y = 0; y < 4; y++) {
        const float u[4] = {t[y][0], 0.5f * (t[y][0] + t[y][1] + t[y][2]), 0.5f * (t[y][0] - t[y][1] + t[y][2]),
                            t[y][2]};
        for (int x = 0; x < 4; x++) {
            U[(y * 4 + x) * plane + idx] = u[x];
        }
    }
}

/*
 * One thread per (colour, tile, image): blockIdx.x * WINOGRAD_THREADS + threadIdx.x =
 * (ty * tilesX + tx) * numImages + i, blockIdx.y walks the colours gridDim.y apart.
 * Consecutive threads take consecutive images: reads and writes coalesce.
 *
 * images: (numColors, imgSizeY, imgSizeX, numImages), rows imgStride apart
 * V:      (16, numColors, tilesY * tilesX * numImages)
 *
 * V[k][c][(t, i)] = (B^T d B)[k / 4][k % 4], d = the 4x4 inputs of tile t in colour c of
 * image i (zeros outside the image).
 */
__global__ void kWinogradInputs(const float* images, float* V, const int numImages, const int imgStride,
                                const int numColors, const int imgSizeY, const int imgSizeX, const int tilesX,
                                const int numTiles, const int paddingStart) {
    const int j = blockIdx.x * WINOGRAD_THREADS + threadIdx.x;
    const int width = numTiles * numImages;
    if (j >= width) {
        return;
    }
    const int t = j / numImages, i = j % numImages;
    const int y0 = paddingStart + 2 * (t / tilesX), x0 = paddingStart + 2 * (t % tilesX);
    const size_t plane = (size_t)numColors * width;
    for (int c = blockIdx.y; c < numColors; c += gridDim.y) {
        float d[4][4];
        for (int y = 0; y < 4; y++) {
            for (int x = 0; x < 4; x++) {
                const int iy = y0 + y, ix = x0 + x;
                d[y][x] = iy >= 0 && iy < imgSizeY && ix >= 0 && ix < imgSizeX
                        ? images[((size_t)(c * imgSizeY + iy) * imgSizeX + ix) * imgStride + i] : 0.0f;
            }
        }
        // B^T d: 4x4
        float e[4][4];
        for (int x = 0; x < 4; x++) {
            e[0][x] = d[0][x] - d[2][x];
            e[1][x] = d[1][x] + d[2][x];
            e[2][x] = d[2][x] - d[1][x];
            e[3][x] = d[1][x] - d[3][x];
        }
        // (B^T d) B
        float* v = V + (size_t)c * width + j;
        for (int y = 0; y < 4; y++) {
            v[(y * 4 + 0) * plane] = e[y][0] - e[y][2];
            v[(y * 4 + 1) * plane] = e[y][1] + e[y][2];
            v[(y * 4 + 2) * plane] = e[y][2] - e[y][1];
            v[(y * 4 + 3) * plane] = e[y][1] - e[y][3];
        }
    }
}

/*
 * One thread per (filter, tile, image): blockIdx.x * WINOGRAD_THREADS + threadIdx.x =
 * (ty * tilesX + tx) * numImages + i, blockIdx.y walks the filters gridDim.y apart.
 *
 * M:        (16, numFilters, tilesY * tilesX * numImages)
 * targets:  (numFilters, outY, outX, numImages)
 *
 * The 2x2 outputs Y = A^T m A of the tile (m = the 16 values of M for (f, t, i)) go to
 * targets as scaleTargets * targets + scaleOutput * Y (targets not read when scaleTargets
 * is 0), those past outY / outX dropped.
 */
__global__ void kWinogradOutputs(const float* M, float* targets, const int numImages, const int numFilters,
                                 const int outY, const int outX, const int tilesX, const int numTiles,
                                 const float scaleTargets, const float scaleOutput) {
    const int j = blockIdx.x * WINOGRAD_THREADS + threadIdx.x;
    const int width = numTiles * numImages;
    if (j >= width) {
        return;
    }
    const int t = j / numImages, i = j % numImages;
    const int oy = 2 * (t / tilesX), ox = 2 * (t % tilesX);
    const size_t plane = (size_t)numFilters * width;
    for (int f = blockIdx.y; f < numFilters; f += gridDim.y) {
        const float* m = M + (size_t)f * width + j;
        // A^T m: 2x4
        float e[2][4];
        for (int x = 0; x < 4; x++) {
            const float m0 = m[x * plane], m1 = m[(4 + x) * plane], m2 = m[(8 + x) * plane], m3 = m[(12 + x) * plane];
            e[0][x] = m0 + m1 + m2;
            e[1][x] = m1 - m2 - m3;
        }
        for (int y = 0; y < 2; y++) {
            const float out[2] = {e[y][0] + e[y][1] + e[y][2], e[y][1] - e[y][2] - e[y][3]};
            for (int x = 0; x < 2; x++) {
                if (oy + y < outY && ox + x < outX) {
                    float* dst = &targets[((size_t)(f * outY + oy + y) * outX + ox + x) * numImages + i];
                    *dst = scaleTargets == 0.0f ? scaleOutput * out[x] : scaleTargets * *dst + scaleOutput * out[x];
                }
            }
        }
    }
}
