"""Pooling, normalisation and image-transform kernels on the GPU: the host side of
cuda_src/cudaconv2/conv_util.cu.

Stands for the host functions of cudaconv2/conv_util.cu and the convLocalPool template of
conv_util.cuh (2012), with the NumPy backend's signatures and semantics
(cudaconvnet/backends/numpy/conv_util.py is the reference).

Each kernel family has one selector, select_<family>(...), pure Python: the kernel, template
arguments, grid and block the 2012 host code chose for those sizes (its branches, without
its hundreds of hand-written launch sites). tests/test_cuda_util_selectors.py checks every
selector against a table of the 2012 branches, without a GPU.

Shape limits are the 2012 kernels' (the layer parser enforces them for real nets): e.g.
max/avg-pool gradients and the norm gradients need numFilters % 16 == 0; a selector says
so with a KernelArgumentError naming the operation.
"""
import functools

import numpy as np

from .. import KernelArgumentError
from ..numpy.conv_util import (avg_undo_check, blur_check, crop_check, max_undo_check, nails_check, norm_check,
                               pool_check, reflect_check, resize_check)
from ..numpy.filter_acts import exact_div
from .nvmatrix import DIVUP, Launch, check_grid, check_gpu_matrix, imgs_per_thread_128, launch, ptr, row_stride

f32 = np.float32
FILE = "cudaconv2/conv_util.cu"

__all__ = ["convLocalPool", "convLocalMaxUndo", "convLocalAvgUndo", "convContrastNorm",
           "convResponseNorm", "convResponseNormUndo", "convContrastNormUndo",
           "convContrastNormCrossMap", "convResponseNormCrossMap",
           "convResponseNormCrossMapUndo", "convTICA", "convTICAGrad", "convGaussianBlur",
           "convBedOfNails", "convBedOfNailsUndo", "convResizeBilinear", "convRGBToYUV",
           "convRGBToLAB", "convCrop", "convReflectHorizontal"]

POOLERS = {"avg": "AvgPooler", "max": "MaxPooler", "maxabs": "MaxAbsPooler"}


# ==========================================================================================
# selectors
# ==========================================================================================
def select_pool(pooler, numFilters, numImages, subsX, strideX, outputsX):
    """convLocalPool (conv_util.cuh): kLocalPool2 for stride 1 and windows of 6 or more,
    else kLocalPool."""
    agg = POOLERS[pooler]
    if strideX == 1 and subsX >= 6:
        imgs = 8 if numImages % 128 == 0 else 4
        fpt = 4 if numFilters % 4 == 0 else 3 if numFilters % 3 == 0 else 2 if numFilters % 2 == 0 else 1
        bx = 8
        ccb = numImages % (bx * imgs) != 0
        grid = (DIVUP(outputsX, 4) * DIVUP(numImages, bx * imgs), DIVUP(outputsX, 4) * numFilters // fpt)
        return check_grid("convLocalPool", Launch(FILE, "kLocalPool2", (agg, bx, imgs, fpt, ccb), grid, (bx, 16, 1)))
    fpt = 2 if numFilters % 8 == 0 else 1
    imgs = imgs_per_thread_128(numImages)
    ccb = numImages % (32 * imgs) != 0
    grid = (DIVUP(numImages, 32 * imgs) * outputsX, DIVUP(numFilters, 4 * fpt) * outputsX)
    return check_grid("convLocalPool", Launch(FILE, "kLocalPool", (agg, 4, 32, imgs, fpt, ccb), grid, (32, 4, 1)))


def _need16(fn, numFilters):
    if numFilters % 16 != 0:
        raise KernelArgumentError("%s: the 2012 kernel needs numFilters divisible by 16, got %d" % (fn, numFilters))


def _add(scaleTargets, scaleOutput):
    return not (scaleTargets == 0 and scaleOutput == 1)


def _select_pool_undo(fn, kernel, filtersPerThread, numFilters, numImages, imgSize, scaleTargets, scaleOutput):
    """The two pooling undos: `kernel` with 4x32 threads, filtersPerThread filters each."""
    _need16(fn, numFilters)
    imgs = imgs_per_thread_128(numImages)
    ccb = numImages % (32 * imgs) != 0
    grid = (DIVUP(numImages, 32 * imgs) * imgSize, (numFilters // (4 * filtersPerThread)) * imgSize)
    return check_grid(fn, Launch(FILE, kernel, (4, 32, imgs, filtersPerThread, _add(scaleTargets, scaleOutput), ccb),
                                 grid, (32, 4, 1)))


def select_max_undo(numFilters, numImages, imgSize, scaleTargets, scaleOutput):
    """convLocalMaxUndo: kLocalMaxUndo, 4x32 threads, 2 filters per thread."""
    return _select_pool_undo("convLocalMaxUndo", "kLocalMaxUndo", 2, numFilters, numImages, imgSize, scaleTargets,
                             scaleOutput)


def select_avg_undo(numFilters, numImages, imgSize, scaleTargets, scaleOutput):
    """convLocalAvgUndo: kLocalAvgUndo, 4x32 threads, 4 filters per thread."""
    return _select_pool_undo("convLocalAvgUndo", "kLocalAvgUndo", 4, numFilters, numImages, imgSize, scaleTargets,
                             scaleOutput)


def select_cnorm(numFilters, numImages, imgSize, sizeX):
    """convContrastNorm (and convResponseNorm): kCNorm2 for windows of 6 or more (and
    numFilters % 4 == 0), kCNorm_fewfilter for at most 8 filters, else kCNorm_manyfilter."""
    fn = "convContrastNorm"
    if not (numFilters % 16 == 0 or numFilters <= 8):
        raise KernelArgumentError("%s: the 2012 kernels need numFilters <= 8 or divisible by 16, got %d" % (fn, numFilters))
    if sizeX >= 6 and numFilters % 4 == 0:
        ccb = numImages % (8 * 8) != 0
        grid = (DIVUP(imgSize, 4) * DIVUP(numImages, 8 * 8), DIVUP(imgSize, 4) * numFilters // 4)
        return check_grid(fn, Launch(FILE, "kCNorm2", (8, 8, 4, ccb), grid, (8, 16, 1)))
    ccb = numImages % 128 != 0
    if numFilters <= 8:
        return check_grid(fn, Launch(FILE, "kCNorm_fewfilter", (1, numFilters, ccb),
                                      (DIVUP(numImages, 128) * imgSize, imgSize), (128, 1, 1)))
    return check_grid(fn, Launch(FILE, "kCNorm_manyfilter", (4, 32, 4, 2, ccb),
                                  (DIVUP(numImages, 32 * 4) * imgSize, (numFilters // (4 * 2)) * imgSize), (32, 4, 1)))


def select_rnorm_prelims(numElements):
    """kRNormUndoPrelims<128, 4>: at most 512 blocks of 128 threads."""
    return Launch(FILE, "kRNormUndoPrelims", (128, 4), (min(512, DIVUP(numElements, 128 * 4)), 1), (128, 1, 1))


def select_rnorm_undo(numFilters, numImages, imgSize, sizeX, scaleTargets, scaleOutput):
    """convResponseNormUndo (and convContrastNormUndo): kRNormUndoPrelims, then kRNormUndo2
    for windows of 6 or more (numFilters % 4 == 0), else kRNormUndo.

    2012 passed kRNormUndo2 add=true when scaleTargets == 0 and scaleOutput == 1 and
    add=false otherwise (the other way round from every other kernel): accumulating into a
    gradient then dropped the old one. Here add means what it says."""
    fn = "convResponseNormUndo"
    _need16(fn, numFilters)
    prelims = select_rnorm_prelims(numFilters * imgSize * imgSize * numImages)
    add = _add(scaleTargets, scaleOutput)
    if sizeX >= 6 and numFilters % 4 == 0:
        imgs = 8 if numImages % 128 == 0 else 4 if numImages % 64 == 0 else 2
        bx = 16
        ccb = numImages % (bx * imgs) != 0
        grid = (DIVUP(imgSize, 4) * DIVUP(numImages, bx * imgs), DIVUP(imgSize, 4) * numFilters // 4)
        return [prelims, check_grid(fn, Launch(FILE, "kRNormUndo2", (bx, imgs, 4, add, ccb), grid, (bx, 16, 1)))]
    imgs = 2 if numImages % 64 == 0 else 1
    ccb = numImages % (32 * imgs) != 0
    grid = (DIVUP(numImages, 32 * imgs) * imgSize, (numFilters // (4 * 2)) * imgSize)
    return [prelims, check_grid(fn, Launch(FILE, "kRNormUndo", (4, 32, imgs, 2, add, ccb), grid, (32, 4, 1)))]


def select_cross_map_norm(numFilters, numImages, imgSize, sizeF, blocked):
    """convContrastNormCrossMap (and convResponseNormCrossMap): kFCNorm<4, 32, 4>."""
    fn = "convResponseNormCrossMap"
    _need16(fn, numFilters)
    if not 0 < sizeF <= numFilters:
        raise KernelArgumentError("%s: sizeF (%d) must be in [1, numFilters = %d]" % (fn, sizeF, numFilters))
    ccb = numImages % 128 != 0
    grid = (DIVUP(numImages, 32 * 4) * imgSize, (numFilters // 4) * imgSize)
    return check_grid(fn, Launch(FILE, "kFCNorm", (4, 32, 4, ccb, bool(blocked)), grid, (32, 4, 1)))


def select_cross_map_undo(numFilters, numImages, imgSize, sizeF, blocked, scaleTargets, scaleOutput):
    """convResponseNormCrossMapUndo: kRNormUndoPrelims, then kFRNormUndo<4, 32, 4>."""
    fn = "convResponseNormCrossMapUndo"
    _need16(fn, numFilters)
    if not 0 < sizeF <= numFilters:
        raise KernelArgumentError("%s: sizeF (%d) must be in [1, numFilters = %d]" % (fn, sizeF, numFilters))
    ccb = numImages % 128 != 0
    grid = (DIVUP(numImages, 32 * 4) * imgSize, (numFilters // 4) * imgSize)
    return [select_rnorm_prelims(numFilters * imgSize * imgSize * numImages),
            check_grid(fn, Launch(FILE, "kFRNormUndo", (4, 32, 4, _add(scaleTargets, scaleOutput), ccb,
                                                         bool(blocked)), grid, (32, 4, 1)))]


def select_tica(grad, numFilters, numImages, imgSize, sizeX):
    """convTICA / convTICAGrad: kTICA_manyfilter / kTICAGrad_manyfilter<4, 32, 4, 2>; the
    2012 host code allowed only numFilters > 8 (divisible by 16) and sizeX < 6."""
    fn = "convTICAGrad" if grad else "convTICA"
    if not (numFilters > 8 and numFilters % 16 == 0):
        raise KernelArgumentError("%s: the 2012 kernel needs numFilters > 8 and divisible by 16, got %d" % (fn, numFilters))
    if sizeX >= 6:
        raise KernelArgumentError("%s: the 2012 kernel needs sizeX < 6, got %d" % (fn, sizeX))
    ccb = numImages % 128 != 0
    grid = (DIVUP(numImages, 32 * 4) * imgSize, (numFilters // (4 * 2)) * imgSize)
    name = "kTICAGrad_manyfilter" if grad else "kTICA_manyfilter"
    return check_grid(fn, Launch(FILE, name, (4, 32, 4, 2, ccb), grid, (32, 4, 1)))


def select_blur(radius, numChannels, numImages, imgSize):
    """convGaussianBlur: kGaussianBlur<4, 32, radius>, radius 1..4."""
    if not 1 <= radius <= 4:
        raise KernelArgumentError("convGaussianBlur: filter radius must be 1..4, got %d" % radius)
    return check_grid("convGaussianBlur", Launch(FILE, "kGaussianBlur", (4, 32, radius),
                                                  (DIVUP(numImages, 32), DIVUP(numChannels * imgSize, 4)),
                                                  (32, 4, 1)))


def select_bed_of_nails(numChannels, numImages, outputsX):
    """_convBedOfNails: kBedOfNails<4, 32, imgs, chans>, 2 channels per thread when
    numChannels % 8 == 0."""
    imgs = imgs_per_thread_128(numImages)
    ccb = numImages % (32 * imgs) != 0
    chans = 2 if numChannels % 8 == 0 else 1
    grid = (DIVUP(numImages, 32 * imgs) * outputsX, DIVUP(numChannels, 4 * chans) * outputsX)
    return check_grid("convBedOfNails", Launch(FILE, "kBedOfNails", (4, 32, imgs, chans, ccb), grid, (32, 4, 1)))


def select_resize(numChannels, numImages, tgtSize):
    """convResizeBilinear: kResizeBilinear<imgs>, 16x32 threads, one 4x4 chunk per block."""
    imgs = imgs_per_thread_128(numImages)
    ccb = numImages % (32 * imgs) != 0
    chunks = DIVUP(tgtSize, 4) ** 2
    return check_grid("convResizeBilinear", Launch(FILE, "kResizeBilinear", (imgs, ccb),
                                                    (DIVUP(numImages, imgs * 32), numChannels * chunks), (32, 16, 1)))


def select_color(kind, numImages, imgPixels, center=False):
    """convRGBToYUV / convRGBToLAB: kRGBToYUV<imgs> / kRGBToLAB<imgs, center>, 4x32 threads."""
    imgs = imgs_per_thread_128(numImages)
    ccb = numImages % (32 * imgs) != 0
    grid = (DIVUP(numImages, imgs * 32), DIVUP(imgPixels, 4))
    if kind == "yuv":
        return check_grid("convRGBToYUV", Launch(FILE, "kRGBToYUV", (imgs, ccb), grid, (32, 4, 1)))
    return check_grid("convRGBToLAB", Launch(FILE, "kRGBToLAB", (imgs, ccb, bool(center)), grid, (32, 4, 1)))


def select_crop(numChannels, numImages, tgtSize):
    """convCrop: kCrop<imgs>, 4x32 threads, 4 target pixels per block."""
    imgs = imgs_per_thread_128(numImages)
    ccb = numImages % (32 * imgs) != 0
    grid = (DIVUP(numImages, 32 * imgs), numChannels * DIVUP(tgtSize * tgtSize, 4))
    return check_grid("convCrop", Launch(FILE, "kCrop", (imgs, ccb), grid, (32, 4, 1)))


def select_reflect(numChannels, numImages, imgSize):
    """convReflectHorizontal (not 2012): kReflectH<imgs>, in the manner of kCrop."""
    imgs = imgs_per_thread_128(numImages)
    ccb = numImages % (32 * imgs) != 0
    pairs = imgSize * DIVUP(imgSize, 2)
    grid = (DIVUP(numImages, 32 * imgs), numChannels * DIVUP(pairs, 4))
    return check_grid("convReflectHorizontal", Launch(FILE, "kReflectH", (imgs, ccb), grid, (32, 4, 1)))


# Inputs that reach every branch of every selector (numImages 128/64/32/100 give
# imgsPerThread 4/2/1 and case checks on and off).
_NIMG = (128, 64, 32, 100, 96)


def _cover():
    out = []
    for pooler in POOLERS:
        for nf in (16, 3, 2, 1, 8, 12, 9, 10, 7):
            for n in _NIMG:
                out.append(select_pool(pooler, nf, n, 7, 1, 4))   # kLocalPool2
                out.append(select_pool(pooler, nf, n, 3, 2, 4))   # kLocalPool
    for n in _NIMG:
        for st, so in ((0, 1), (1, 1), (0, 2)):
            out.append(select_max_undo(16, n, 4, st, so))
            out.append(select_avg_undo(16, n, 4, st, so))
            for size in (3, 6):
                out += select_rnorm_undo(16, n, 4, size, st, so)
            for blocked in (False, True):
                out += select_cross_map_undo(16, n, 4, 3, blocked, st, so)
        for nf in (16, 4, 8, 1, 2, 3, 5, 6, 7):
            for size in (3, 6):
                out.append(select_cnorm(nf, n, 4, size))
        for blocked in (False, True):
            out.append(select_cross_map_norm(16, n, 4, 3, blocked))
        for grad in (False, True):
            out.append(select_tica(grad, 16, n, 4, 3))
        for radius in (1, 2, 3, 4):
            out.append(select_blur(radius, 3, n, 9))
        for nc in (3, 8):
            out.append(select_bed_of_nails(nc, n, 4))
        out.append(select_resize(3, n, 8))
        out.append(select_color("yuv", n, 16))
        for center in (False, True):
            out.append(select_color("lab", n, 16, center))
        out.append(select_crop(3, n, 4))
        out.append(select_reflect(3, n, 5))
    return out


# Every (file, kernel, template args) the selectors of this module can return.
INSTANTIATIONS = sorted({lc[:3] for lc in _cover()}, key=repr)


# ==========================================================================================
# helpers
# ==========================================================================================
# the checks are the NumPy backend's, with GPU matrices
_norm_check = functools.partial(norm_check, check=check_gpu_matrix)
GPU = dict(check=check_gpu_matrix, check_target=check_gpu_matrix)   # for the shared checks


def _run(lc, *args):
    fmt = FORMATS[lc.kernel]
    launch(lc, fmt, *args)


# argument formats of the kernels (pycuda struct codes)
FORMATS = {
    "kLocalPool": "PPiiiiiii", "kLocalPool2": "PPiiiiii",
    "kLocalMaxUndo": "PPPPiiiiiiiff", "kLocalAvgUndo": "PPiiiiiiiff",
    "kCNorm_fewfilter": "PPPPiiiff", "kCNorm_manyfilter": "PPPPiiiiff", "kCNorm2": "PPPPiiiiff",
    "kRNormUndoPrelims": "PPPIf", "kRNormUndo": "PPPPPiiiifff", "kRNormUndo2": "PPPPPiiiifff",
    "kFCNorm": "PPPPiiiifff", "kFRNormUndo": "PPPPPiiiifff",
    "kTICA_manyfilter": "PPiiiiff", "kTICAGrad_manyfilter": "PPPiiiiff",
    "kGaussianBlur": "PPPiiii?ff", "kBedOfNails": "PPiiiiii?ff", "kResizeBilinear": "PPiiiiff",
    "kRGBToYUV": "PPiii", "kRGBToLAB": "PPiii", "kCrop": "PPIiIIII", "kReflectH": "PPiiff",
}


# ==========================================================================================
# pooling
# ==========================================================================================
def convLocalPool(images, target, numFilters, subsX, startX, strideX, outputsX, pooler):
    """Pool each channel over subsX x subsX windows (see the NumPy reference).

    images:   (numFilters * imgSize^2, numImages)
    target:   (numFilters * outputsX^2, numImages), overwritten
    pooler:   'max', 'avg' or 'maxabs'
    """
    imgSize = pool_check("convLocalPool", images, target, numFilters, subsX, strideX, outputsX, pooler, **GPU)
    N = images.shape[1]
    if N == 0:
        return
    lc = select_pool(pooler, numFilters, N, subsX, strideX, outputsX)
    if lc.kernel == "kLocalPool2":
        _run(lc, ptr(images), ptr(target), imgSize, numFilters, N, subsX, startX, outputsX)
    else:
        _run(lc, ptr(images), ptr(target), imgSize, numFilters, N, subsX, startX, strideX, outputsX)


def convLocalMaxUndo(images, maxGrads, maxActs, target, subsX, startX, strideX, outputsX,
                     scaleTargets=0.0, scaleOutput=1.0):
    """Gradient of max pooling: every pixel equal to its window's maximum gets the window's
    gradient. images/target (numFilters * imgSize^2, numImages); maxGrads/maxActs
    (numFilters * outputsX^2, numImages). target = scaleTargets*target + scaleOutput*grad."""
    numFilters, imgSize = max_undo_check("convLocalMaxUndo", images, maxGrads, maxActs, target, subsX, strideX,
                                         outputsX, **GPU)
    N = images.shape[1]
    if N == 0:
        return
    lc = select_max_undo(numFilters, N, imgSize, scaleTargets, scaleOutput)
    _run(lc, ptr(images), ptr(maxGrads), ptr(maxActs), ptr(target), imgSize, numFilters, N, subsX, startX,
         strideX, outputsX, f32(scaleTargets), f32(scaleOutput))


def convLocalAvgUndo(avgGrads, target, subsX, startX, strideX, outputsX, imgSize,
                     scaleTargets=0.0, scaleOutput=1.0):
    """Gradient of average pooling. avgGrads (numFilters * outputsX^2, numImages); target
    (numFilters * imgSize^2, numImages)."""
    numFilters = avg_undo_check("convLocalAvgUndo", avgGrads, target, subsX, strideX, outputsX, imgSize, **GPU)
    N = avgGrads.shape[1]
    if N == 0:
        return
    lc = select_avg_undo(numFilters, N, imgSize, scaleTargets, scaleOutput)
    _run(lc, ptr(avgGrads), ptr(target), imgSize, numFilters, N, subsX, startX, strideX, outputsX,
         f32(scaleTargets), f32(scaleOutput))


# ==========================================================================================
# normalisation within a map
# ==========================================================================================
def convContrastNorm(images, meanDiffs, denoms, target, numFilters, sizeX, addScale, powScale):
    """denoms = 1 + addScale * (window sum of meanDiffs^2), target = images * denoms^-pow.
    All (numFilters * imgSize^2, numImages)."""
    fn = "convContrastNorm"
    imgSize = _norm_check(fn, numFilters, sizeX, (("images", images), ("meanDiffs", meanDiffs),
                                                  ("denoms", denoms), ("target", target)))
    N = images.shape[1]
    if N == 0:
        return
    lc = select_cnorm(numFilters, N, imgSize, sizeX)
    if lc.kernel == "kCNorm_fewfilter":
        _run(lc, ptr(images), ptr(meanDiffs), ptr(denoms), ptr(target), imgSize, N, sizeX, f32(addScale),
             f32(powScale))
    else:
        _run(lc, ptr(images), ptr(meanDiffs), ptr(denoms), ptr(target), imgSize, numFilters, N, sizeX,
             f32(addScale), f32(powScale))


def convResponseNorm(images, denoms, target, numFilters, sizeX, addScale, powScale):
    """convContrastNorm with meanDiffs = images."""
    convContrastNorm(images, images, denoms, target, numFilters, sizeX, addScale, powScale)


def _prelims(lc, acts, denoms, outGrads, addScale, powScale):
    _run(lc, ptr(acts), ptr(denoms), ptr(outGrads), acts.size, f32(-2.0 * addScale * powScale))


def convResponseNormUndo(outGrads, denoms, inputs, acts, target, numFilters, sizeX, addScale,
                         powScale, scaleTargets=0.0, scaleOutput=1.0):
    """Gradient of convResponseNorm. acts is OVERWRITTEN (2012's scratch): on return acts =
    -2*addScale*powScale * outGrads * acts / denoms."""
    fn = "convResponseNormUndo"
    imgSize = _norm_check(fn, numFilters, sizeX, (("outGrads", outGrads), ("denoms", denoms),
                                                  ("inputs", inputs), ("acts", acts), ("target", target)))
    N = outGrads.shape[1]
    if N == 0:
        return
    prelims, main = select_rnorm_undo(numFilters, N, imgSize, sizeX, scaleTargets, scaleOutput)
    _prelims(prelims, acts, denoms, outGrads, addScale, powScale)
    _run(main, ptr(outGrads), ptr(denoms), ptr(inputs), ptr(acts), ptr(target), imgSize, numFilters, N, sizeX,
         f32(powScale), f32(scaleTargets), f32(scaleOutput))


def convContrastNormUndo(outGrads, denoms, meanDiffs, acts, target, numFilters, sizeX, addScale,
                         powScale, scaleTargets=0.0, scaleOutput=1.0):
    """Gradient of convContrastNorm: convResponseNormUndo with inputs = meanDiffs."""
    convResponseNormUndo(outGrads, denoms, meanDiffs, acts, target, numFilters, sizeX, addScale, powScale,
                         scaleTargets, scaleOutput)


# ==========================================================================================
# normalisation across maps
# ==========================================================================================
def convContrastNormCrossMap(images, meanDiffs, denoms, target, numFilters, sizeF, addScale,
                             powScale, blocked, minDiv=1.0):
    """denoms[f] = minDiv + addScale * sum of meanDiffs[f']^2 over f's group of maps;
    target = images * denoms^-powScale. All (numFilters * imgPixels, numImages)."""
    fn = "convContrastNormCrossMap"
    imgSize = _norm_check(fn, numFilters, sizeF, (("images", images), ("meanDiffs", meanDiffs),
                                                  ("denoms", denoms), ("target", target)))
    N = images.shape[1]
    if N == 0:
        return
    lc = select_cross_map_norm(numFilters, N, imgSize, sizeF, blocked)
    _run(lc, ptr(images), ptr(meanDiffs), ptr(denoms), ptr(target), imgSize, numFilters, N, sizeF,
         f32(addScale), f32(powScale), f32(minDiv))


def convResponseNormCrossMap(images, denoms, target, numFilters, sizeF, addScale, powScale,
                             blocked, minDiv=1.0):
    """convContrastNormCrossMap with meanDiffs = images."""
    convContrastNormCrossMap(images, images, denoms, target, numFilters, sizeF, addScale, powScale, blocked,
                             minDiv)


def convResponseNormCrossMapUndo(outGrads, denoms, inputs, acts, target, numFilters, sizeF,
                                 addScale, powScale, blocked, scaleTargets=0.0,
                                 scaleOutput=1.0):
    """Gradient of convResponseNormCrossMap. acts is OVERWRITTEN as in convResponseNormUndo."""
    fn = "convResponseNormCrossMapUndo"
    imgSize = _norm_check(fn, numFilters, sizeF, (("outGrads", outGrads), ("denoms", denoms),
                                                  ("inputs", inputs), ("acts", acts), ("target", target)))
    N = outGrads.shape[1]
    if N == 0:
        return
    prelims, main = select_cross_map_undo(numFilters, N, imgSize, sizeF, blocked, scaleTargets, scaleOutput)
    _prelims(prelims, acts, denoms, outGrads, addScale, powScale)
    _run(main, ptr(outGrads), ptr(denoms), ptr(inputs), ptr(acts), ptr(target), imgSize, numFilters, N, sizeF,
         f32(powScale), f32(scaleTargets), f32(scaleOutput))


# ==========================================================================================
# TICA (CHM's cost.tica)
# ==========================================================================================
def convTICA(images, target, numFilters, sizeX, scaleTarget, scaleOutput):
    """target = scaleTarget*target + scaleOutput / (0.001 + sqrt(window sum of images^2))."""
    fn = "convTICA"
    imgSize = _norm_check(fn, numFilters, sizeX, (("images", images), ("target", target)))
    N = images.shape[1]
    if N == 0:
        return
    lc = select_tica(False, numFilters, N, imgSize, sizeX)
    _run(lc, ptr(images), ptr(target), imgSize, numFilters, N, sizeX, f32(scaleTarget), f32(scaleOutput))


def convTICAGrad(images, ticas, target, numFilters, sizeX, scaleTarget, scaleOutput):
    """The TICA cost's gradient, as the original computes it (see the NumPy reference)."""
    fn = "convTICAGrad"
    imgSize = _norm_check(fn, numFilters, sizeX, (("images", images), ("ticas", ticas), ("target", target)))
    N = images.shape[1]
    if N == 0:
        return
    lc = select_tica(True, numFilters, N, imgSize, sizeX)
    _run(lc, ptr(images), ptr(ticas), ptr(target), imgSize, numFilters, N, sizeX, f32(scaleTarget),
         f32(scaleOutput))


# ==========================================================================================
# image transforms
# ==========================================================================================
def convGaussianBlur(images, filter, target, horiz, numChannels, scaleTargets, scaleOutputs):
    """1-D blur along rows (horiz) or columns, zero outside the image; target may be
    images. filter (1, 2*radius + 1), radius 1..4."""
    imgSize, radius = blur_check("convGaussianBlur", images, filter, target, numChannels, **GPU)
    N = images.shape[1]
    if N == 0:
        return
    lc = select_blur(radius, numChannels, N, imgSize)
    _run(lc, ptr(images), ptr(filter), ptr(target), imgSize, N, row_stride(images), numChannels, bool(horiz),
         f32(scaleTargets), f32(scaleOutputs))


def convBedOfNails(images, target, numChannels, imgSize, startX, strideX, scaleTargets, scaleOutput):
    """Keep every strideX-th pixel from startX both ways. images (numChannels * imgSize^2,
    numImages); target (numChannels * outputsX^2, numImages), outputsX = ceil(imgSize/strideX)."""
    outputsX = nails_check("convBedOfNails", images, target, numChannels, imgSize, startX, strideX, False, **GPU)
    N = images.shape[1]
    if N == 0:
        return
    lc = select_bed_of_nails(numChannels, N, outputsX)
    _run(lc, ptr(images), ptr(target), imgSize, numChannels, N, startX, strideX, outputsX, False,
         f32(scaleTargets), f32(scaleOutput))


def convBedOfNailsUndo(actsGrad, target, numChannels, imgSize, startX, strideX, scaleTargets, scaleOutput):
    """Gradient of convBedOfNails: scatter back onto the nails. target (numChannels *
    imgSize^2, numImages) = scaleTargets*target + scaleOutput*scatter(actsGrad).

    2012 ran the kernel in reverse over a zeroed target (scaleTargets == 0; other scales
    tripped an assertion). Here the pixels between the nails are zeroed (scaleTargets == 0)
    or scaled by scaleTargets first, then the kernel scatters with scaleTargets 0 or 1."""
    from .nvmatrix import scale_targets
    outputsX = nails_check("convBedOfNailsUndo", actsGrad, target, numChannels, imgSize, startX, strideX, True,
                           **GPU)
    N = actsGrad.shape[1]
    if N == 0:
        return
    scale_targets(target, scaleTargets)
    lc = select_bed_of_nails(numChannels, N, outputsX)
    _run(lc, ptr(target), ptr(actsGrad), imgSize, numChannels, N, startX, strideX, outputsX, True,
         f32(0.0 if scaleTargets == 0 else 1.0), f32(scaleOutput))


def convResizeBilinear(images, target, imgSize, tgtSize, scale):
    """Bilinear resize of square images, centred: target pixel p samples the source at
    clamp(p*scale + centerScale, 0, imgSize - 1.01), centerScale = imgSize/2 - tgtSize/2*scale."""
    numChannels = resize_check("convResizeBilinear", images, target, imgSize, tgtSize, **GPU)
    N = images.shape[1]
    if N == 0:
        return
    # the host works in double and hands the kernel floats
    centerScale = f32(imgSize * 0.5 - tgtSize * 0.5 * float(f32(scale)))
    lc = select_resize(numChannels, N, tgtSize)
    _run(lc, ptr(images), ptr(target), imgSize, tgtSize, N, row_stride(images), f32(scale), centerScale)


def _rgb(fn, images, target):
    check_gpu_matrix(fn, "images", images)
    imgPixels = exact_div(fn, "images rows by 3", images.shape[0], 3)
    check_gpu_matrix(fn, "target", target, images.shape[0], images.shape[1])
    return imgPixels


def convRGBToYUV(images, target):
    """RGB -> YUV per pixel; images, target (3 * imgPixels, numImages)."""
    fn = "convRGBToYUV"
    imgPixels = _rgb(fn, images, target)
    N = images.shape[1]
    if N == 0:
        return
    lc = select_color("yuv", N, imgPixels)
    _run(lc, ptr(images), ptr(target), imgPixels, N, row_stride(images))


def convRGBToLAB(images, target, center):
    """RGB in [0, 1] -> L*a*b* per pixel; images, target (3 * imgPixels, numImages)."""
    fn = "convRGBToLAB"
    imgPixels = _rgb(fn, images, target)
    N = images.shape[1]
    if N == 0:
        return
    lc = select_color("lab", N, imgPixels, bool(center))
    _run(lc, ptr(images), ptr(target), imgPixels, N, row_stride(images))


def convCrop(imgs, target, imgSize, tgtSize, startY, startX):
    """A tgtSize x tgtSize window at (startY, startX) of every channel."""
    numChannels = crop_check("convCrop", imgs, target, imgSize, tgtSize, startY, startX, **GPU)
    N = imgs.shape[1]
    if N == 0:
        return
    lc = select_crop(numChannels, N, tgtSize)
    _run(lc, ptr(imgs), ptr(target), N, row_stride(imgs), imgSize, tgtSize, startY, startX)


def convReflectHorizontal(images, target, imgSize, scaleTargets=0.0, scaleOutput=1.0):
    """Mirror every image left-right (CHM's href layer); target may be images.
    target = scaleTargets*target + scaleOutput*flip(images)."""
    numChannels = reflect_check("convReflectHorizontal", images, target, imgSize, **GPU)
    N = images.shape[1]
    if N == 0:
        return
    lc = select_reflect(numChannels, N, imgSize)
    _run(lc, ptr(images), ptr(target), imgSize, N, f32(scaleTargets), f32(scaleOutput))
