"""Gradient of conv and local layers with respect to their input images, on the GPU: the
host half of 2012 cudaconv2/img_acts.cu (kernels: cuda_src/cudaconv2/img_acts.cu).

Same functions, arguments and semantics as cudaconvnet/backends/numpy/img_acts.py, on
pycuda GPUArrays. `select_img_acts` is the 2012 host code's choice of kernel, template
arguments, grid and block, as a pure function.

What the 2012 kernels cannot do and the NumPy reference can (KernelArgumentError here): numbers of
filters that are not a multiple of 16 per group; 4 or more colours that are odd (no
groups); colours per group that are not a multiple of 4 (groups); more than 65535 image
pixels with 8 or more colours per group (one block row per pixel). Unlike filterActs the
hidActs, filters and targets must all be C-contiguous (as in 2012).
"""
import numpy as np

from ..numpy.img_acts import img_acts_geometry
from . import conv_gemm
from .filter_acts import Launch, ptr, require, require_filters, require_groups, run, sweep
from .nvmatrix import DIVUP, check_gpu_matrix, check_grid, imgs_per_thread_128

# the operations (select_img_acts and INSTANTIATIONS are module attributes)
__all__ = ["convImgActs", "localImgActs"]

SRC = "cudaconv2/img_acts.cu"


def select_img_acts(numImages, numFilters, numImgColors, numGroups, imgSizeY, imgSizeX, scaleTargets, conv):
    """(kernel, template args, grid, block) for imgActs, as 2012 chose them.

    By numFilterColors = numImgColors / numGroups:
    - a multiple of 8: conv_img_acts_manycolor<4, 32, imgsPerThread 4/2/1 by numImages % 128 /
      % 64, colorsPerThread 4 if numFilterColors % 16 == 0 else 2, scale, checkCaseBounds,
      conv>, block (32, 4), grid (DIVUP(numImages, 32*imgsPerThread) * numImgColors /
      (4*colorsPerThread), imgPixels);
    - more than 3: img_acts_mediumcolor<imgsPerThread 8/4/2, colorsPerThread 4 if
      numFilterColors % 4 == 0 else 2, ...>, block (16, 16), grid
      (DIVUP(numImages, 16*imgsPerThread) * numImgColors / colorsPerThread, 4x4 regions);
    - 1 to 3: img_acts_color<imgsPerThread 8/4/2, numFilterColors, ...>, block (16, 16),
      grid (DIVUP(numImages, 16*imgsPerThread), 4x4 regions).
    checkCaseBounds when numImages is not a multiple of block.x * imgsPerThread.
    """
    fn = "imgActs"
    numFilterColors = require_groups(fn, numImgColors, numGroups)
    require_filters(fn, numFilters, numGroups)
    require(numGroups > 1 or numImgColors <= 3 or numImgColors % 2 == 0, fn,
            "with one group, numImgColors must be 1, 2, 3 or even (got %d)" % numImgColors)
    require(numGroups == 1 or numFilterColors % 4 == 0, fn,
            "with groups, the colours per group (numImgColors/numGroups = %d) must be a multiple of 4"
            % numFilterColors)
    scale = scaleTargets != 0
    imgPixels = imgSizeY * imgSizeX
    regions = DIVUP(imgSizeY, 4) * DIVUP(imgSizeX, 4)
    if numFilterColors % 8 == 0:
        block = (32, 4, 1)
        colorsPerThread = 4 if numFilterColors % 16 == 0 else 2
        imgsPerThread = imgs_per_thread_128(numImages, 4, 2, 1)
        checkCaseBounds = numImages % (32 * imgsPerThread) != 0
        grid = (DIVUP(numImages, 32 * imgsPerThread) * (numImgColors // (4 * colorsPerThread)), imgPixels)
        name, args = "conv_img_acts_manycolor", (4, 32, imgsPerThread, colorsPerThread, scale,
                                                 checkCaseBounds, bool(conv))
    elif numFilterColors > 3:
        block = (16, 16, 1)
        colorsPerThread = 4 if numFilterColors % 4 == 0 else 2
        imgsPerThread = imgs_per_thread_128(numImages, 8, 4, 2)
        checkCaseBounds = numImages % (16 * imgsPerThread) != 0
        grid = (DIVUP(numImages, 16 * imgsPerThread) * (numImgColors // colorsPerThread), regions)
        name, args = "img_acts_mediumcolor", (imgsPerThread, colorsPerThread, scale, checkCaseBounds, bool(conv))
    else:
        block = (16, 16, 1)
        imgsPerThread = imgs_per_thread_128(numImages, 8, 4, 2)
        checkCaseBounds = numImages % (16 * imgsPerThread) != 0
        grid = (DIVUP(numImages, 16 * imgsPerThread), regions)
        name, args = "img_acts_color", (imgsPerThread, numFilterColors, scale, checkCaseBounds, bool(conv))
    return check_grid(fn, Launch(SRC, name, args, grid, block))


def _instantiations():
    cases = [dict(numImages=n, numFilters=f, numImgColors=c, numGroups=g, imgSizeY=4, imgSizeX=4,
                  scaleTargets=s, conv=cv)
             for n in (128, 64, 32, 16, 1) for f in (16, 32) for c, g in
             ((1, 1), (2, 1), (3, 1), (4, 1), (6, 1), (8, 1), (16, 1), (8, 2))
             for s in (0.0, 1.0) for cv in (True, False)]
    return sweep(select_img_acts, cases)


# every (file, kernel, template args) select_img_acts can return
INSTANTIATIONS = _instantiations()


def _img_acts(fn, hidActs, filters, targets, imgSizeY, imgSizeX, numModulesY, paddingStart, moduleStride,
              numImgColors, numGroups, scaleTargets, scaleOutput, conv):
    check_gpu_matrix(fn, "hidActs", hidActs)
    check_gpu_matrix(fn, "filters", filters)
    geo = img_acts_geometry(fn, hidActs.shape, filters.shape, imgSizeY, imgSizeX, numModulesY, paddingStart,
                            moduleStride, numImgColors, numGroups, conv)
    numImages, numFilters, numModulesX, filterSize = geo.numImages, geo.numFilters, geo.numModulesX, geo.filterSize
    check_gpu_matrix(fn, "targets", targets, numImgColors * imgSizeY * imgSizeX, numImages)
    if conv and conv_gemm.active():
        return conv_gemm.imgActs(geo, hidActs, filters, targets, scaleTargets, scaleOutput)
    launch = select_img_acts(numImages, numFilters, numImgColors, numGroups, imgSizeY, imgSizeX,
                             scaleTargets, conv)
    if numImages == 0:
        return
    i32, f32 = np.int32, np.float32
    args = (ptr(hidActs), ptr(filters), ptr(targets), i32(numModulesY), i32(numModulesX), i32(numImages),
            i32(numFilters), i32(filterSize), i32(imgSizeY), i32(imgSizeX), i32(paddingStart),
            i32(moduleStride))
    if launch.name != "img_acts_color":
        args += (i32(numImgColors), i32(numGroups))
    run(launch, args + (f32(scaleTargets), f32(scaleOutput)))


def convImgActs(hidActs, filters, targets, imgSizeY, imgSizeX, numModulesY, paddingStart, moduleStride,
                numImgColors, numGroups, scaleTargets=0.0, scaleOutput=1.0):
    """Input gradient of convFilterActs: targets = scaleTargets*targets + scaleOutput*grad.

    hidActs:  (numFilters * numModulesY * numModulesX, numImages)
    filters:  (numFilterColors * filterSize^2, numFilters)
    targets:  (numImgColors * imgSizeY * imgSizeX, numImages), written in place
    As backends/numpy/img_acts.convImgActs.
    """
    _img_acts("convImgActs", hidActs, filters, targets, imgSizeY, imgSizeX, numModulesY, paddingStart,
              moduleStride, numImgColors, numGroups, scaleTargets, scaleOutput, True)


def localImgActs(hidActs, filters, targets, imgSizeY, imgSizeX, numModulesY, paddingStart, moduleStride,
                 numImgColors, numGroups, scaleTargets=0.0, scaleOutput=1.0):
    """Input gradient of localFilterActs; as convImgActs but

    filters:  (numModules * numFilterColors * filterSize^2, numFilters)
    """
    _img_acts("localImgActs", hidActs, filters, targets, imgSizeY, imgSizeX, numModulesY, paddingStart,
              moduleStride, numImgColors, numGroups, scaleTargets, scaleOutput, False)
