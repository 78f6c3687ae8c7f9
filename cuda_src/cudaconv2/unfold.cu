/*
 * unfold.cu: the "gemm" variant of the shared-filter convolution, new in this port (no 2012
 * counterpart). Images are unfolded into columns (im2col), so that each of the three conv
 * passes becomes one matrix product that cuBLAS does, and column gradients are folded back
 * into image gradients (col2im):
 *
 *   filterActs   targets  = filters^T . cols(images)                 per group
 *   imgActs      targets  = col2im(filters . hidActs)                per group
 *   weightActs   targets  = cols(images) . hidActs^T                 per group, per partial sum
 *
 *   kIm2Col     images -> columns, for a range of modules
 *   kCol2Im     columns -> image gradients, added into targets
 *
 * Host side (chunking by modules, the products, the partial sums):
 * cudaconvnet/backends/cuda/conv_gemm.py, selected by --conv-kernels=gemm. The 2012 kernels
 * (filter_acts.cu, img_acts.cu, weight_acts.cu) stay the default. Reference:
 * cudaconvnet/backends/numpy/{filter,img,weight}_acts.py (which unfold the same way on the
 * CPU); checked against it by tests/test_cuda_conv.py.
 *
 * Layouts (the 2012 ones, cases fastest):
 *   images   (numImgColors, imgSizeY, imgSizeX, numImages), rows imgStride apart
 *   cols     (numImgColors * filterSize * filterSize, (m1 - m0) * numImages), contiguous:
 *            row (c, fy, fx), column (m - m0, i) for the modules m0 <= m < m1 counted in
 *            (moduleY, moduleX) order. With groups, group g's rows are the block
 *            [g * numFilterColors * filterPixels, (g + 1) * ...), ready for its product.
 * Module m = (my, mx) covers image rows paddingStart + my * moduleStride + [0, filterSize)
 * and the same for columns; pixels outside the image are zeros.
 *
 * Both kernels are memory-bound: consecutive threads take consecutive images, so every
 * read and write is coalesced; indices into the column buffer are size_t (it can pass 2^31
 * floats when the host allows a large workspace).
 */
#include "cudaconv2/cudaconv2.cuh"

#define UNFOLD_THREADS 256

/*
 * Blocks of UNFOLD_THREADS threads. Thread blockIdx.x * UNFOLD_THREADS + threadIdx.x owns
 * column j = (m - m0) * numImages + i of the chunk; blockIdx.y walks the rows (c, fy, fx),
 * gridDim.y apart.
 *
 * images:  (numImgColors * imgSizeY * imgSizeX, numImages), rows imgStride apart
 * cols:    (numImgColors * filterSize^2, (m1 - m0) * numImages)
 *
 * cols[(c, fy, fx), (m - m0, i)] = images[(c, y, x), i], where (y, x) is pixel (fy, fx) of
 * module m, or 0 when that pixel lies outside the image.
 */
__global__ void kIm2Col(const float* images, float* cols, const int numImages, const int imgStride,
                        const int numImgColors, const int imgSizeY, const int imgSizeX, const int numModulesX,
                        const int m0, const int m1, const int filterSize, const int paddingStart,
                        const int moduleStride) {
    const int width = (m1 - m0) * numImages;
    const int j = blockIdx.x * UNFOLD_THREADS + threadIdx.x;
    if (j >= width) {
        return;
    }
    const int m = m0 + j / numImages, i = j % numImages;
    const int y0 = paddingStart + (m / numModulesX) * moduleStride;
    const int x0 = paddingStart + (m % numModulesX) * moduleStride;
    const int filterPixels = filterSize * filterSize;
    const int rows = numImgColors * filterPixels;
    for (int r = blockIdx.y; r < rows; r += gridDim.y) {
        const int c = r / filterPixels, p = r % filterPixels;
        const int y = y0 + p / filterSize, x = x0 + p % filterSize;
        const bool inside = y >= 0 && y < imgSizeY && x >= 0 && x < imgSizeX;
        cols[(size_t)r * width + j] = inside ? images[((size_t)(c * imgSizeY + y) * imgSizeX + x) * imgStride + i]
                                             : 0.0f;
    }
}

/*
 * Blocks of UNFOLD_THREADS threads. Thread blockIdx.x * UNFOLD_THREADS + threadIdx.x owns
 * one (pixel, image) pair j = ((y - yStart) * imgSizeX + x) * numImages + i of the image
 * rows yStart <= y < yEnd (the rows the chunk's modules touch); blockIdx.y walks the
 * colours, gridDim.y apart. A gather: each target element is written by one thread, so no
 * atomics are needed and the result does not depend on scheduling.
 *
 * cols:     (numImgColors * filterSize^2, (m1 - m0) * numImages), gradients w.r.t. the
 *           columns of modules m0 <= m < m1
 * targets:  (numImgColors * imgSizeY * imgSizeX, numImages), rows targetStride apart
 *
 * targets[(c, y, x), i] = scaleTargets * targets[(c, y, x), i] + scaleOutput * the sum, over
 * the filter pixels (fy, fx) and modules m0 <= m < m1 whose pixel (fy, fx) is (y, x), of
 * cols[(c, fy, fx), (m - m0, i)]. targets is not read when scaleTargets is 0.
 */
__global__ void kCol2Im(const float* cols, float* targets, const int numImages, const int targetStride,
                        const int numImgColors, const int imgSizeY, const int imgSizeX, const int numModulesX,
                        const int m0, const int m1, const int filterSize, const int paddingStart,
                        const int moduleStride, const int yStart, const int yEnd, const float scaleTargets,
                        const float scaleOutput) {
    const int j = blockIdx.x * UNFOLD_THREADS + threadIdx.x;
    if (j >= (yEnd - yStart) * imgSizeX * numImages) {
        return;
    }
    const int width = (m1 - m0) * numImages;
    const int i = j % numImages, p = j / numImages;
    const int y = yStart + p / imgSizeX, x = p % imgSizeX;
    for (int c = blockIdx.y; c < numImgColors; c += gridDim.y) {
        float sum = 0.0f;
        for (int fy = 0; fy < filterSize; fy++) {
            const int ty = y - paddingStart - fy;      // my * moduleStride for a module that sees y
            if (ty < 0 || ty % moduleStride != 0) {
                continue;
            }
            const int rowModules = (ty / moduleStride) * numModulesX;
            for (int fx = 0; fx < filterSize; fx++) {
                const int tx = x - paddingStart - fx;
                if (tx < 0 || tx % moduleStride != 0 || tx / moduleStride >= numModulesX) {
                    continue;
                }
                const int m = rowModules + tx / moduleStride;   // m >= m1 also past the last module row
                if (m >= m0 && m < m1) {
                    sum += cols[((size_t)(c * filterSize + fy) * filterSize + fx) * width
                                + (size_t)(m - m0) * numImages + i];
                }
            }
        }
        float* t = &targets[((size_t)(c * imgSizeY + y) * imgSizeX + x) * targetStride + i];
        *t = scaleTargets == 0.0f ? scaleOutput * sum : scaleTargets * *t + scaleOutput * sum;
    }
}
