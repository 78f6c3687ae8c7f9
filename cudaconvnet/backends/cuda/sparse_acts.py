"""Sparse random connectivity (randSparse) on the GPU: filter group g sees the image colours
dColorIndices[g*numFilterColors : (g+1)*numFilterColors]. The host half of the *Sparse
functions of 2012 cudaconv2/filter_acts.cu, img_acts.cu and weight_acts.cu; their kernels
(filterActs_YxX_sparse_random, img_acts_{medium,many}color_sparse_rand,
conv_weight_acts_mc_mf_rand) live in the same cuda_src files as the dense ones.

Same functions, arguments and semantics as cudaconvnet/backends/numpy/sparse_acts.py.
dColorIndices is either an int32 GPUArray of numGroups*numFilterColors entries (the layer's
filterConns, uploaded once; it is checked the first time it is seen and must not change
afterwards) or anything numpy turns into integers (checked and uploaded, cached).
Each run of numImgColors entries must be a permutation of the image's colours (the parser's
filterConns always are): imgActsSparse writes each colour of each run exactly once.

What the 2012 kernels cannot do and the NumPy reference can (KernelArgumentError here): a single
group; numbers of filters that are not a multiple of 16 per group; colours per group that
are odd (filterActs), 3 or fewer or odd (imgActs), not a multiple of 4 (weightActs).
"""
import numpy as np

from .. import KernelArgumentError
from ..numpy.filter_acts import check_geometry, exact_div, filter_size
from .filter_acts import Launch, kbool, ptr, require, require_filters, run, sweep
from .nvmatrix import DIVUP, check_gpu_matrix, check_grid, imgs_per_thread_128
from .weight_acts import PRELOAD_CASES

# the operations (the select_* functions and INSTANTIATIONS are module attributes)
__all__ = ["convFilterActsSparse", "localFilterActsSparse", "convImgActsSparse", "localImgActsSparse",
           "convWeightActsSparse", "localWeightActsSparse"]

FILTER_SRC = "cudaconv2/filter_acts.cu"
IMG_SRC = "cudaconv2/img_acts.cu"
WEIGHT_SRC = "cudaconv2/weight_acts.cu"


def _common_asserts(fn, numFilters, numImgColors, numFilterColors, numGroups):
    require(numGroups > 1, fn, "sparse connectivity needs more than one group (numGroups = %d)" % numGroups)
    require(numImgColors > 0 and numFilterColors > 0 and numImgColors % numFilterColors == 0, fn,
            "numImgColors (%d) must be a multiple of numFilterColors (%d)" % (numImgColors, numFilterColors))
    require((numFilterColors * numGroups) % numImgColors == 0, fn,
            "numFilterColors * numGroups (%d) must be a multiple of numImgColors (%d)"
            % (numFilterColors * numGroups, numImgColors))
    require_filters(fn, numFilters, numGroups)


# ----------------------------------------------------------------------------------------
# selectors (2012 _filterActsSparse, _imgActsSparse, _weightActsSparse)

def select_filter_acts_sparse(numImages, numFilters, numImgColors, numFilterColors, numGroups, numModules,
                              scaleTargets):
    """filterActs_YxX_sparse_random<4, 32, imgsPerThread 4/2/1 by numImages % 128 / % 64,
    filtersPerThread 8 if (numFilters/numGroups) % 32 == 0 else 4, colorCache 2, scale,
    checkImgBounds>; grid (DIVUP(numImages, 32*imgsPerThread),
    numModules*numFilters/(4*filtersPerThread)), block (32, 4)."""
    fn = "filterActsSparse"
    _common_asserts(fn, numFilters, numImgColors, numFilterColors, numGroups)
    require(numFilterColors % 2 == 0, fn, "numFilterColors (%d) must be even" % numFilterColors)
    imgsPerThread = imgs_per_thread_128(numImages)
    checkImgBounds = numImages % (32 * imgsPerThread) != 0
    filtersPerThread = 8 if (numFilters // numGroups) % 32 == 0 else 4
    grid = (DIVUP(numImages, 32 * imgsPerThread), numModules * numFilters // (4 * filtersPerThread))
    args = (4, 32, imgsPerThread, filtersPerThread, 2, scaleTargets != 0, checkImgBounds)
    return check_grid(fn, Launch(FILTER_SRC, "filterActs_YxX_sparse_random", args, grid, (32, 4, 1)))


def select_img_acts_sparse(numImages, numFilters, numImgColors, numFilterColors, numGroups, imgSizeY, imgSizeX,
                           scaleTargets, conv):
    """By numFilterColors: a multiple of 8 -> img_acts_manycolor_sparse_rand<4, 32,
    imgsPerThread 4/2/1, colorsPerThread 4 if % 16 == 0 else 2, scale, checkCaseBounds, conv>,
    block (32, 4), grid (DIVUP(numImages, 32*imgsPerThread) * numImgColors/(4*colorsPerThread),
    overSample * imgPixels); otherwise img_acts_mediumcolor_sparse_rand<imgsPerThread 8/4/2,
    colorsPerThread 4 if % 4 == 0 else 2, ...>, block (16, 16), grid
    (DIVUP(numImages, 16*imgsPerThread) * numImgColors/colorsPerThread, overSample * 4x4
    regions). overSample = numFilterColors*numGroups/numImgColors."""
    fn = "imgActsSparse"
    _common_asserts(fn, numFilters, numImgColors, numFilterColors, numGroups)
    require(numFilterColors > 3 and numFilterColors % 2 == 0, fn,
            "numFilterColors (%d) must be even and more than 3" % numFilterColors)
    overSample = numFilterColors * numGroups // numImgColors
    scale = scaleTargets != 0
    if numFilterColors % 8 == 0:
        block = (32, 4, 1)
        colorsPerThread = 4 if numFilterColors % 16 == 0 else 2
        imgsPerThread = imgs_per_thread_128(numImages, 4, 2, 1)
        grid = (DIVUP(numImages, 32 * imgsPerThread) * (numImgColors // (4 * colorsPerThread)),
                overSample * imgSizeY * imgSizeX)
        checkCaseBounds = numImages % (32 * imgsPerThread) != 0
        name, args = "img_acts_manycolor_sparse_rand", (4, 32, imgsPerThread, colorsPerThread, scale,
                                                        checkCaseBounds, bool(conv))
    else:
        block = (16, 16, 1)
        colorsPerThread = 4 if numFilterColors % 4 == 0 else 2
        imgsPerThread = imgs_per_thread_128(numImages, 8, 4, 2)
        grid = (DIVUP(numImages, 16 * imgsPerThread) * (numImgColors // colorsPerThread),
                overSample * DIVUP(imgSizeY, 4) * DIVUP(imgSizeX, 4))
        checkCaseBounds = numImages % (16 * imgsPerThread) != 0
        name, args = "img_acts_mediumcolor_sparse_rand", (imgsPerThread, colorsPerThread, scale,
                                                          checkCaseBounds, bool(conv))
    return check_grid(fn, Launch(IMG_SRC, name, args, grid, block))


def select_weight_acts_sparse(numImages, numFilters, numImgColors, numFilterColors, numGroups, numModules,
                              partialSum, filterSize, scaleTargets):
    """conv_weight_acts_mc_mf_rand with weightActs' choice for more than 3 colours:
    (B_Y, B_X, filtersPerThread) = (4, 32, 2), (8, 16, 2) or (8, 16, 1) by
    (numFilters/numGroups) % 64 / % 32, colorsPerThread 8 or 4 by numFilterColors % 8,
    preloadCases 32; partialSum 0 means numModules."""
    fn = "weightActsSparse"
    _common_asserts(fn, numFilters, numImgColors, numFilterColors, numGroups)
    require(numFilterColors % 4 == 0, fn, "numFilterColors (%d) must be a multiple of 4" % numFilterColors)
    require(partialSum >= 0, fn, "partialSum must be >= 0 (got %d)" % partialSum)
    partialSum = numModules if partialSum == 0 else partialSum
    require(numModules % partialSum == 0, fn,
            "partialSum (%d) must divide the number of modules (%d)" % (partialSum, numModules))
    numFiltersPerGroup = numFilters // numGroups
    filtersPerThread = 2 if numFiltersPerGroup % 32 == 0 else 1
    colorsPerThread = 8 if numFilterColors % 8 == 0 else 4
    by, bx = (4, 32) if numFiltersPerGroup % 64 == 0 else (8, 16)
    grid = ((numModules // partialSum) * (numFilters // (bx * filtersPerThread)),
            DIVUP(filterSize * filterSize, by) * (numFilterColors // colorsPerThread))
    args = (by, bx, filtersPerThread, colorsPerThread, PRELOAD_CASES, scaleTargets != 0,
            numImages % PRELOAD_CASES != 0)
    return check_grid(fn, Launch(WEIGHT_SRC, "conv_weight_acts_mc_mf_rand", args, grid, (bx, by, 1)))


def _instantiations():
    out = sweep(select_filter_acts_sparse, [
        dict(numImages=n, numFilters=f, numImgColors=4, numFilterColors=2, numGroups=2, numModules=1,
             scaleTargets=s)
        for n in (128, 64, 32, 1) for f in (32, 64) for s in (0.0, 1.0)])
    out += sweep(select_img_acts_sparse, [
        dict(numImages=n, numFilters=32, numImgColors=c, numFilterColors=c, numGroups=2, imgSizeY=4,
             imgSizeX=4, scaleTargets=s, conv=cv)
        for n in (128, 64, 32, 16, 1) for c in (4, 6, 8, 16) for s in (0.0, 1.0) for cv in (True, False)])
    out += sweep(select_weight_acts_sparse, [
        dict(numImages=n, numFilters=f, numImgColors=c, numFilterColors=c, numGroups=2, numModules=1,
             partialSum=0, filterSize=3, scaleTargets=s)
        for n in (128, 1) for f in (32, 64, 128) for c in (4, 8) for s in (0.0, 1.0)])
    return out


# every (file, kernel, template args) the sparse selectors can return
INSTANTIATIONS = _instantiations()


# ----------------------------------------------------------------------------------------
# the colour lists

_uploaded = {}      # host index bytes -> GPUArray
_checked = set()    # (device address, size) of GPU index arrays already checked


def _check_indices(fn, idx, numImgColors, numFilterColors, numGroups):
    n = numGroups * numFilterColors
    if idx.size != n:
        raise KernelArgumentError("%s: dColorIndices has %d entries, expected numGroups * numFilterColors = %d"
                         % (fn, idx.size, n))
    runs = idx.reshape(-1, numImgColors)
    if not (np.sort(runs, axis=1) == np.arange(numImgColors)).all():
        raise KernelArgumentError("%s: dColorIndices must be runs of permutations of the %d colours" % (fn, numImgColors))


def color_indices(fn, dColorIndices, numImgColors, numFilterColors, numGroups):
    """The device int32 array of the colour lists (see the module docstring)."""
    if hasattr(dColorIndices, "gpudata"):
        if np.dtype(dColorIndices.dtype) != np.int32:
            raise KernelArgumentError("%s: dColorIndices on the GPU must be int32, got %s" % (fn, dColorIndices.dtype))
        key = (int(dColorIndices.gpudata), dColorIndices.size)
        if key not in _checked:
            _check_indices(fn, dColorIndices.get().ravel(), numImgColors, numFilterColors, numGroups)
            _checked.add(key)
        return dColorIndices
    idx = np.asarray(dColorIndices)
    if idx.dtype.kind not in "iu":
        raise KernelArgumentError("%s: dColorIndices must be integers, got %s" % (fn, idx.dtype))
    idx = np.ascontiguousarray(idx.ravel(), dtype=np.int32)
    _check_indices(fn, idx, numImgColors, numFilterColors, numGroups)
    key = (numImgColors, idx.tobytes())
    if key not in _uploaded:
        from pycuda import gpuarray
        _uploaded[key] = gpuarray.to_gpu(idx)
    return _uploaded[key]


# ----------------------------------------------------------------------------------------
# filterActs

def _filter_acts_sparse(fn, images, filters, targets, dColorIndices, imgSizeY, numModulesY, numModulesX,
                        paddingStart, moduleStride, numImgColors, numFilterColors, numGroups, scaleTargets,
                        scaleOutput, conv):
    imgStride = check_gpu_matrix(fn, "images", images, contiguous=False)
    check_gpu_matrix(fn, "filters", filters)
    numImages, numFilters = images.shape[1], filters.shape[1]
    numModules = numModulesY * numModulesX
    launch = select_filter_acts_sparse(numImages, numFilters, numImgColors, numFilterColors, numGroups,
                                       numModules, scaleTargets)
    imgPixels = exact_div(fn, "images rows by numImgColors", images.shape[0], numImgColors)
    imgSizeX = exact_div(fn, "imgPixels by imgSizeY", imgPixels, imgSizeY)
    filterSize = filter_size(fn, filters.shape[0], numFilterColors, imgSizeY, imgSizeX, numModulesY, numModulesX,
                             paddingStart, moduleStride, conv)
    check_gpu_matrix(fn, "targets", targets, numFilters * numModules, numImages)
    colors = color_indices(fn, dColorIndices, numImgColors, numFilterColors, numGroups)
    if numImages == 0:
        return
    i32, f32 = np.int32, np.float32
    run(launch, (ptr(images), ptr(filters), ptr(targets), ptr(colors), i32(numImages), i32(numFilters),
                 i32(imgSizeY), i32(imgSizeX), i32(filterSize), i32(paddingStart), i32(moduleStride),
                 i32(numModulesY), i32(numModulesX), i32(imgStride), i32(numFilterColors), i32(numGroups),
                 f32(scaleTargets), f32(scaleOutput), kbool(conv)))


def convFilterActsSparse(images, filters, targets, dColorIndices, imgSizeY, numModulesY, numModulesX,
                         paddingStart, moduleStride, numImgColors, numFilterColors, numGroups,
                         scaleTargets=0.0, scaleOutput=1.0):
    """convFilterActs where filter group g sees the colours dColorIndices[g*fc:(g+1)*fc].

    filters:  (numFilterColors * filterSize^2, numFilters); targets (numFilters * numModules,
    numImages), written in place. As backends/numpy/sparse_acts.convFilterActsSparse.
    """
    _filter_acts_sparse("convFilterActsSparse", images, filters, targets, dColorIndices, imgSizeY,
                        numModulesY, numModulesX, paddingStart, moduleStride, numImgColors, numFilterColors,
                        numGroups, scaleTargets, scaleOutput, True)


def localFilterActsSparse(images, filters, targets, dColorIndices, imgSizeY, numModulesY, numModulesX,
                          paddingStart, moduleStride, numImgColors, numFilterColors, numGroups,
                          scaleTargets=0.0, scaleOutput=1.0):
    """localFilterActs with sparse colours; filters (numModules * numFilterColors * filterSize^2,
    numFilters)."""
    _filter_acts_sparse("localFilterActsSparse", images, filters, targets, dColorIndices, imgSizeY,
                        numModulesY, numModulesX, paddingStart, moduleStride, numImgColors, numFilterColors,
                        numGroups, scaleTargets, scaleOutput, False)


# ----------------------------------------------------------------------------------------
# imgActs

def _img_acts_sparse(fn, hidActs, filters, targets, dColorIndices, imgSizeY, imgSizeX, numModulesY, paddingStart,
                     moduleStride, numImgColors, numFilterColors, numGroups, scaleTargets, scaleOutput, conv):
    check_gpu_matrix(fn, "hidActs", hidActs)
    check_gpu_matrix(fn, "filters", filters)
    numImages, numFilters = hidActs.shape[1], filters.shape[1]
    launch = select_img_acts_sparse(numImages, numFilters, numImgColors, numFilterColors, numGroups, imgSizeY,
                                    imgSizeX, scaleTargets, conv)
    numModules = exact_div(fn, "hidActs rows by numFilters", hidActs.shape[0], numFilters)
    numModulesX = exact_div(fn, "numModules by numModulesY", numModules, numModulesY)
    filterSize = filter_size(fn, filters.shape[0], numFilterColors, imgSizeY, imgSizeX, numModulesY, numModulesX,
                             paddingStart, moduleStride, conv)
    overSample = numFilterColors * numGroups // numImgColors
    check_gpu_matrix(fn, "targets", targets, overSample * numImgColors * imgSizeY * imgSizeX, numImages)
    colors = color_indices(fn, dColorIndices, numImgColors, numFilterColors, numGroups)
    if numImages == 0:
        return
    i32, f32 = np.int32, np.float32
    run(launch, (ptr(hidActs), ptr(filters), ptr(targets), ptr(colors), i32(numModulesY), i32(numModulesX),
                 i32(numImages), i32(numFilters), i32(filterSize), i32(imgSizeY), i32(imgSizeX),
                 i32(paddingStart), i32(moduleStride), i32(numImgColors), i32(numFilterColors), i32(numGroups),
                 f32(scaleTargets), f32(scaleOutput)))


def convImgActsSparse(hidActs, filters, targets, dColorIndices, imgSizeY, imgSizeX, numModulesY, paddingStart,
                      moduleStride, numImgColors, numFilterColors, numGroups, scaleTargets=0.0, scaleOutput=1.0):
    """Input gradient of convFilterActsSparse.

    targets:  (overSample * numImgColors * imgPixels, numImages), overSample =
              numGroups*numFilterColors/numImgColors; block o holds the gradient through the
              o-th run of dColorIndices, in image colour order (the layer sums the blocks).
    As backends/numpy/sparse_acts.convImgActsSparse.
    """
    _img_acts_sparse("convImgActsSparse", hidActs, filters, targets, dColorIndices, imgSizeY, imgSizeX,
                     numModulesY, paddingStart, moduleStride, numImgColors, numFilterColors, numGroups,
                     scaleTargets, scaleOutput, True)


def localImgActsSparse(hidActs, filters, targets, dColorIndices, imgSizeY, imgSizeX, numModulesY, paddingStart,
                       moduleStride, numImgColors, numFilterColors, numGroups, scaleTargets=0.0, scaleOutput=1.0):
    """Input gradient of localFilterActsSparse (targets as convImgActsSparse)."""
    _img_acts_sparse("localImgActsSparse", hidActs, filters, targets, dColorIndices, imgSizeY, imgSizeX,
                     numModulesY, paddingStart, moduleStride, numImgColors, numFilterColors, numGroups,
                     scaleTargets, scaleOutput, False)


# ----------------------------------------------------------------------------------------
# weightActs

def _weight_acts_sparse(fn, images, hidActs, targets, dColorIndices, imgSizeY, numModulesY, numModulesX,
                        filterSize, paddingStart, moduleStride, numImgColors, numFilterColors, numGroups,
                        partialSum, scaleTargets, scaleOutput):
    imgStride = check_gpu_matrix(fn, "images", images, contiguous=False)
    check_gpu_matrix(fn, "hidActs", hidActs)
    numImages = images.shape[1]
    numModules = numModulesY * numModulesX
    require(numModules > 0, fn, "numModulesY and numModulesX must be positive")
    numFilters = exact_div(fn, "hidActs rows by numModules", hidActs.shape[0], numModules)
    launch = select_weight_acts_sparse(numImages, numFilters, numImgColors, numFilterColors, numGroups,
                                       numModules, partialSum, filterSize, scaleTargets)
    partialSum = numModules if partialSum == 0 else partialSum
    imgPixels = exact_div(fn, "images rows by numImgColors", images.shape[0], numImgColors)
    imgSizeX = exact_div(fn, "imgPixels by imgSizeY", imgPixels, imgSizeY)
    check_geometry(fn, imgSizeY, imgSizeX, numModulesY, numModulesX, filterSize, paddingStart, moduleStride)
    check_gpu_matrix(fn, "hidActs", hidActs, cols=numImages)
    check_gpu_matrix(fn, "targets", targets, (numModules // partialSum) * numFilterColors * filterSize ** 2,
                     numFilters)
    colors = color_indices(fn, dColorIndices, numImgColors, numFilterColors, numGroups)
    i32, f32 = np.int32, np.float32
    run(launch, (ptr(images), ptr(hidActs), ptr(targets), ptr(colors), i32(numImages), i32(numFilters),
                 i32(numModulesY), i32(numModulesX), i32(imgSizeY), i32(imgSizeX), i32(filterSize),
                 i32(paddingStart), i32(moduleStride), i32(imgStride), i32(numFilterColors), i32(numGroups),
                 i32(partialSum), f32(scaleTargets), f32(scaleOutput)))


def convWeightActsSparse(images, hidActs, targets, dColorIndices, imgSizeY, numModulesY, numModulesX, filterSize,
                         paddingStart, moduleStride, numImgColors, numFilterColors, numGroups, partialSum,
                         scaleTargets=0.0, scaleOutput=1.0):
    """Filter gradient of convFilterActsSparse; targets (numModules/partialSum *
    numFilterColors * filterSize^2, numFilters). As backends/numpy/sparse_acts.

    (The 2012 overload without scale arguments passed partialSum 0, scaleTargets 1,
    scaleOutput 0, leaving targets unchanged; the defaults here are the reference's.)
    """
    _weight_acts_sparse("convWeightActsSparse", images, hidActs, targets, dColorIndices, imgSizeY, numModulesY,
                        numModulesX, filterSize, paddingStart, moduleStride, numImgColors, numFilterColors,
                        numGroups, partialSum, scaleTargets, scaleOutput)


def localWeightActsSparse(images, hidActs, targets, dColorIndices, imgSizeY, numModulesY, numModulesX, filterSize,
                          paddingStart, moduleStride, numImgColors, numFilterColors, numGroups,
                          scaleTargets=0.0, scaleOutput=1.0):
    """Filter gradient of localFilterActsSparse (partialSum 1); targets (numModules *
    numFilterColors * filterSize^2, numFilters)."""
    _weight_acts_sparse("localWeightActsSparse", images, hidActs, targets, dColorIndices, imgSizeY, numModulesY,
                        numModulesX, filterSize, paddingStart, moduleStride, numImgColors, numFilterColors,
                        numGroups, 1, scaleTargets, scaleOutput)
