"""Gradient of conv and local layers with respect to their filters, on the GPU: the host
half of 2012 cudaconv2/weight_acts.cu (kernels: cuda_src/cudaconv2/weight_acts.cu).

Same functions, arguments and semantics as cudaconvnet/backends/numpy/weight_acts.py, on
pycuda GPUArrays: convWeightActs writes one partial sum per group of partialSum modules
(the layer adds them up), localWeightActs is the same kernel with partialSum 1.
`select_weight_acts` is the 2012 host code's choice of kernel, template arguments, grid
and block, as a pure function.

What the 2012 kernels cannot do and the NumPy reference can (KernelArgumentError here): numbers of
filters that are not a multiple of 16 per group; 4 or more colours that are not a
multiple of 4 (no groups), or colours per group that are not (groups).
"""
import numpy as np

from ..numpy.weight_acts import partial_sums, weight_acts_geometry
from . import conv_gemm
from .filter_acts import Launch, ptr, require, require_filters, require_groups, run, sweep
from .nvmatrix import DIVUP, check_gpu_matrix, check_grid

# the operations (select_weight_acts and INSTANTIATIONS are module attributes)
__all__ = ["convWeightActs", "localWeightActs"]

SRC = "cudaconv2/weight_acts.cu"
PRELOAD_CASES = 32


def select_weight_acts(numImages, numFilters, numImgColors, numGroups, numModules, partialSum, filterSize,
                       scaleTargets):
    """(kernel, template args, grid, block) for weightActs, as 2012 chose them.

    partialSum 0 means numModules. checkCaseBounds when numImages % 32 != 0; preloadCases 32.
    - more than 3 colours per group: conv_weight_acts_mc_mf<B_Y, B_X, filtersPerThread,
      colorsPerThread, 32, scale, checkCaseBounds> with (B_Y, B_X, filtersPerThread) =
      (4, 32, 2) when numFilters/numGroups % 64 == 0, (8, 16, 2) when % 32 == 0, else
      (8, 16, 1); colorsPerThread 8 if numFilterColors % 8 == 0 else 4; grid
      ((numModules/partialSum) * numFilters/(B_X*filtersPerThread),
       DIVUP(filterPixels, B_Y) * numFilterColors/colorsPerThread);
    - 1 to 3 colours: conv_weight_acts_c<B_Y, B_X, pixelsPerThread, 32, numColors, ...> with
      (B_Y, B_X) = (4, 32) and pixelsPerThread 8 (1 colour) or 5 when numFilters % 32 == 0,
      else (8, 16) and 5 or 2; grid ((numModules/partialSum) * numFilters/B_X,
      DIVUP(filterPixels, B_Y*pixelsPerThread)).
    """
    fn = "weightActs"
    numFilterColors = require_groups(fn, numImgColors, numGroups)
    require_filters(fn, numFilters, numGroups)
    require(numGroups > 1 or numImgColors <= 3 or numImgColors % 4 == 0, fn,
            "with one group, numImgColors must be 1, 2, 3 or a multiple of 4 (got %d)" % numImgColors)
    require(numGroups == 1 or numFilterColors % 4 == 0, fn,
            "with groups, the colours per group (numImgColors/numGroups = %d) must be a multiple of 4"
            % numFilterColors)
    require(partialSum >= 0, fn, "partialSum must be >= 0 (got %d)" % partialSum)
    partialSum = numModules if partialSum == 0 else partialSum
    require(numModules % partialSum == 0, fn,
            "partialSum (%d) must divide the number of modules (%d)" % (partialSum, numModules))
    numFiltersPerGroup = numFilters // numGroups
    numSums = numModules // partialSum
    filterPixels = filterSize * filterSize
    scale = scaleTargets != 0
    checkCaseBounds = numImages % PRELOAD_CASES != 0
    if numFilterColors > 3:
        filtersPerThread = 2 if numFiltersPerGroup % 32 == 0 else 1
        colorsPerThread = 8 if numFilterColors % 8 == 0 else 4
        by, bx = (4, 32) if numFiltersPerGroup % 64 == 0 else (8, 16)
        grid = (numSums * (numFilters // (bx * filtersPerThread)),
                DIVUP(filterPixels, by) * (numFilterColors // colorsPerThread))
        name, args = "conv_weight_acts_mc_mf", (by, bx, filtersPerThread, colorsPerThread, PRELOAD_CASES,
                                                scale, checkCaseBounds)
    else:
        # (numGroups is 1 here: the asserts above leave no other case)
        if numFilters % 32 == 0:
            by, bx, pixelsPerThread = 4, 32, (8 if numImgColors == 1 else 5)
        else:
            by, bx, pixelsPerThread = 8, 16, (5 if numImgColors == 1 else 2)
        grid = (numSums * (numFilters // bx), DIVUP(filterPixels, by * pixelsPerThread))
        name, args = "conv_weight_acts_c", (by, bx, pixelsPerThread, PRELOAD_CASES, numImgColors,
                                            scale, checkCaseBounds)
    return check_grid(fn, Launch(SRC, name, args, grid, (bx, by, 1)))


def _instantiations():
    cases = [dict(numImages=n, numFilters=f, numImgColors=c, numGroups=g, numModules=1, partialSum=0,
                  filterSize=3, scaleTargets=s)
             for n in (128, 1) for f in (16, 32, 64, 128) for c, g in
             ((1, 1), (2, 1), (3, 1), (4, 1), (8, 1), (8, 2))
             for s in (0.0, 1.0)]
    return sweep(select_weight_acts, cases)


# every (file, kernel, template args) select_weight_acts can return
INSTANTIATIONS = _instantiations()


def _weight_acts(fn, images, hidActs, targets, imgSizeY, numModulesY, numModulesX, filterSize, paddingStart,
                 moduleStride, numImgColors, numGroups, partialSum, scaleTargets, scaleOutput):
    imgStride = check_gpu_matrix(fn, "images", images, contiguous=False)
    check_gpu_matrix(fn, "hidActs", hidActs)
    geo = weight_acts_geometry(fn, images.shape, hidActs.shape, imgSizeY, numModulesY, numModulesX, filterSize,
                               paddingStart, moduleStride, numImgColors, numGroups)
    numImages, numFilters, numModules, imgSizeX = geo.numImages, geo.numFilters, geo.numModules, geo.imgSizeX
    if fn == "convWeightActs" and conv_gemm.active():
        sums = partial_sums(fn, numModules, partialSum)[1]
        check_gpu_matrix(fn, "targets", targets, sums * geo.Kg, numFilters)
        return conv_gemm.weightActs(geo, images, hidActs, targets, partialSum, scaleTargets, scaleOutput)
    launch = select_weight_acts(numImages, numFilters, numImgColors, numGroups, numModules, partialSum,
                                filterSize, scaleTargets)
    partialSum = numModules if partialSum == 0 else partialSum
    check_gpu_matrix(fn, "targets", targets, (numModules // partialSum) * geo.Kg, numFilters)
    i32, f32 = np.int32, np.float32
    args = (ptr(images), ptr(hidActs), ptr(targets), i32(numImages), i32(numFilters), i32(numModulesY),
            i32(numModulesX), i32(imgSizeY), i32(imgSizeX), i32(filterSize), i32(paddingStart),
            i32(moduleStride), i32(imgStride))
    if launch.name == "conv_weight_acts_mc_mf":
        args += (i32(numImgColors), i32(numGroups))
    # (numImages == 0 still launches: the gradient is then scaleTargets * targets)
    run(launch, args + (i32(partialSum), f32(scaleTargets), f32(scaleOutput)))


def convWeightActs(images, hidActs, targets, imgSizeY, numModulesY, numModulesX, filterSize, paddingStart,
                   moduleStride, numImgColors, numGroups, partialSum, scaleTargets=0.0, scaleOutput=1.0):
    """Filter gradient of convFilterActs, one partial sum per partialSum modules.

    images:   (numImgColors * imgSizeY * imgSizeX, numImages); rows may be strided
    hidActs:  (numFilters * numModulesY * numModulesX, numImages)
    targets:  (numModules/partialSum * numFilterColors * filterSize^2, numFilters), written in
              place; partialSum 0 means numModules (a single sum)
    As backends/numpy/weight_acts.convWeightActs.
    """
    _weight_acts("convWeightActs", images, hidActs, targets, imgSizeY, numModulesY, numModulesX, filterSize,
                 paddingStart, moduleStride, numImgColors, numGroups, partialSum, scaleTargets, scaleOutput)


def localWeightActs(images, hidActs, targets, imgSizeY, numModulesY, numModulesX, filterSize, paddingStart,
                    moduleStride, numImgColors, numGroups, scaleTargets=0.0, scaleOutput=1.0):
    """Filter gradient of localFilterActs (the same kernels with partialSum 1).

    targets:  (numModules * numFilterColors * filterSize^2, numFilters), written in place
    """
    _weight_acts("localWeightActs", images, hidActs, targets, imgSizeY, numModulesY, numModulesX, filterSize,
                 paddingStart, moduleStride, numImgColors, numGroups, 1, scaleTargets, scaleOutput)
