"""Forward pass of conv and local layers on the GPU: the host half of 2012
cudaconv2/filter_acts.cu (the kernels are cuda_src/cudaconv2/filter_acts.cu).

Same functions, arguments and semantics as cudaconvnet/backends/numpy/filter_acts.py, on
pycuda GPUArrays (2-D float32, the 2012 layouts, cases fastest; targets preallocated and
written in place). `select_filter_acts` is the 2012 host code's choice of kernel, template
arguments, grid and block, as a pure function; the launch code below it only checks shapes,
asks the selector and launches. PyCUDA is imported only when a kernel is launched.

Also home of what the conv-family host modules share (Launch, the GPU matrix checks, run).

What the 2012 kernels cannot do and the NumPy reference can (KernelArgumentError here): numbers of
filters that are not a multiple of 16 per group; 4 or more colours that are odd (no
groups) or an odd number of colours per group; grids whose second dimension would pass
65535 blocks (numModules * numFilters / 32 or / 16).
"""
from collections import namedtuple

import numpy as np

from .. import KernelArgumentError
from ..numpy.filter_acts import filter_acts_geometry
from . import conv_gemm
from .nvmatrix import DIVUP, check_gpu_matrix, check_grid, imgs_per_thread_128

# the operations (select_filter_acts and INSTANTIATIONS are module attributes)
__all__ = ["convFilterActs", "localFilterActs"]

SRC = "cudaconv2/filter_acts.cu"

class Launch(namedtuple("Launch", "file name args grid block")):
    """One kernel launch as the 2012 host code makes it: the cuda_src file, the kernel's
    name, its template arguments, grid (x, y) and block (x, y, z)."""
    __slots__ = ()

    @property
    def instantiation(self):
        return (self.file, self.name, self.args)


def require(cond, fn, message):
    """A 2012 host-code assert, as a KernelArgumentError naming the function."""
    if not cond:
        raise KernelArgumentError("%s: %s" % (fn, message))


def require_groups(fn, numImgColors, numGroups):
    """The conv wrappers' assert on the colours and groups; returns numFilterColors."""
    require(numImgColors > 0 and numGroups > 0 and numImgColors % numGroups == 0, fn,
            "numImgColors (%d) must be a positive multiple of numGroups (%d)" % (numImgColors, numGroups))
    return numImgColors // numGroups


def require_filters(fn, numFilters, numGroups):
    """The conv wrappers' assert on the filter count: 16 per group at least."""
    require(numFilters > 0 and numFilters % (16 * numGroups) == 0, fn,
            "numFilters (%d) must be a multiple of 16 * numGroups (%d)" % (numFilters, 16 * numGroups))


def sweep(selector, cases):
    """Every distinct instantiation `selector` returns over `cases` (keyword dicts), in a
    stable order; cases the selector refuses are skipped."""
    seen = {}
    for kw in cases:
        try:
            launch = selector(**kw)
        except ValueError:
            continue
        seen.setdefault(launch.instantiation, None)
    return list(seen)


# ----------------------------------------------------------------------------------------
# the selector (2012 _filterActs, the part that picks the kernel)

def select_filter_acts(numImages, numFilters, numImgColors, numGroups, numModules, scaleTargets):
    """(kernel, template args, grid, block) for filterActs, as 2012 chose them.

    - imgsPerThread 4, 2 or 1 by numImages % 128 / % 64; checkImgBounds when numImages is
      not a multiple of 32*imgsPerThread (so only with imgsPerThread 1);
    - 1 to 3 colours: filterActs_YxX_color<4, 32, imgsPerThread, 8 or 4 by numFilters % 32,
      numColors, scale, checkImgBounds>;
    - more (or groups): filterActs_YxX_sparse<4, 32, imgsPerThread, 8 or 4 by
      (numFilters/numGroups) % 32, colorCache 2, scale, checkImgBounds>;
    - grid (DIVUP(numImages, 32*imgsPerThread), numModules*numFilters / (4*filtersPerThread)),
      block (32, 4); scale is scaleTargets != 0.
    """
    fn = "filterActs"
    numFilterColors = require_groups(fn, numImgColors, numGroups)
    require(numGroups > 1 or numImgColors <= 3 or numImgColors % 2 == 0, fn,
            "with one group, numImgColors must be 1, 2, 3 or even (got %d)" % numImgColors)
    require(numGroups == 1 or numFilterColors % 2 == 0, fn,
            "with groups, the colours per group (numImgColors/numGroups = %d) must be even" % numFilterColors)
    require_filters(fn, numFilters, numGroups)
    numFiltersPerGroup = numFilters // numGroups
    imgsPerThread = imgs_per_thread_128(numImages)
    checkImgBounds = numImages % (32 * imgsPerThread) != 0
    scale = scaleTargets != 0
    if numImgColors <= 3:
        # (numGroups is 1 here: the asserts above leave no other case)
        filtersPerThread = 8 if numFilters % 32 == 0 else 4
        name, args = "filterActs_YxX_color", (4, 32, imgsPerThread, filtersPerThread, numImgColors,
                                              scale, checkImgBounds)
    else:
        filtersPerThread = 8 if numFiltersPerGroup % 32 == 0 else 4
        name, args = "filterActs_YxX_sparse", (4, 32, imgsPerThread, filtersPerThread, 2,
                                               scale, checkImgBounds)
    blocksY = numModules * numFilters // (4 * (8 if numFiltersPerGroup % 32 == 0 else 4))
    grid = (DIVUP(numImages, 32 * imgsPerThread), blocksY)
    return check_grid(fn, Launch(SRC, name, args, grid, (32, 4, 1)))


def _instantiations():
    cases = [dict(numImages=n, numFilters=f, numImgColors=c, numGroups=g, numModules=1, scaleTargets=s)
             for n in (128, 64, 32, 1) for f in (16, 32, 64) for c, g in ((1, 1), (2, 1), (3, 1), (4, 1), (8, 2))
             for s in (0.0, 1.0)]
    return sweep(select_filter_acts, cases)


# every (file, kernel, template args) select_filter_acts can return
INSTANTIATIONS = _instantiations()


# ----------------------------------------------------------------------------------------
# launching (shared by img_acts, weight_acts and sparse_acts)

def ptr(a):
    """The device address of a GPUArray (views included) as a kernel argument."""
    return np.uintp(int(a.gpudata))


def kbool(b):
    """A C++ bool kernel argument: one byte (PyCUDA packs numpy scalars by their type, and
    np.bool_ is not one it accepts)."""
    return np.uint8(1 if b else 0)


_prepared = {}


def run(launch, args):
    """Launch `launch` with `args` (device addresses and numpy scalars, in the kernel's
    parameter order). Compiles on first use (loader.kernel).

    The kernel is prepared once with the arguments' struct format, as nvmatrix.launch does,
    so that a launch packs its arguments in one call instead of typing each one again."""
    func = _prepared.get(launch.instantiation)
    if func is None:
        from . import loader
        func = loader.kernel(launch.file, launch.name, launch.args)
        # 2012 asked for the larger shared memory split on every launch
        import pycuda.driver as drv
        try:
            func.set_cache_config(drv.func_cache.PREFER_SHARED)
        except (AttributeError, drv.Error):
            pass
        func.prepare("".join(a.dtype.char for a in args))
        _prepared[launch.instantiation] = func
    func.prepared_call(tuple(int(g) for g in launch.grid), tuple(int(b) for b in launch.block), *args)


# ----------------------------------------------------------------------------------------
# convFilterActs / localFilterActs

def _filter_acts(fn, images, filters, targets, imgSizeY, numModulesY, numModulesX, paddingStart,
                 moduleStride, numImgColors, numGroups, scaleTargets, scaleOutput, conv):
    imgStride = check_gpu_matrix(fn, "images", images, contiguous=False)
    check_gpu_matrix(fn, "filters", filters)
    geo = filter_acts_geometry(fn, images.shape, filters.shape, imgSizeY, numModulesY, numModulesX, paddingStart,
                               moduleStride, numImgColors, numGroups, conv)
    numImages, numFilters, numModules = geo.numImages, geo.numFilters, geo.numModules
    imgSizeX, filterSize = geo.imgSizeX, geo.filterSize
    check_gpu_matrix(fn, "targets", targets, numFilters * numModules, numImages)
    if conv and conv_gemm.active():
        return conv_gemm.filterActs(geo, images, filters, targets, scaleTargets, scaleOutput)
    launch = select_filter_acts(numImages, numFilters, numImgColors, numGroups, numModules, scaleTargets)
    if numImages == 0:
        return
    i32, f32 = np.int32, np.float32
    if launch.name == "filterActs_YxX_color":
        args = (ptr(images), ptr(filters), ptr(targets), i32(numImages), i32(numFilters),
                i32(imgSizeY), i32(imgSizeX), i32(filterSize), i32(paddingStart), i32(moduleStride),
                i32(numModulesY), i32(numModulesX), i32(imgStride), f32(scaleTargets), f32(scaleOutput),
                kbool(conv))
    else:
        args = (ptr(images), ptr(filters), ptr(targets), i32(numImages), i32(numFilters),
                i32(imgSizeY), i32(imgSizeX), i32(filterSize), i32(paddingStart), i32(moduleStride),
                i32(numModulesY), i32(numModulesX), i32(imgStride), i32(numImgColors), i32(numGroups),
                f32(scaleTargets), f32(scaleOutput), kbool(conv))
    run(launch, args)


def convFilterActs(images, filters, targets, imgSizeY, numModulesY, numModulesX, paddingStart,
                   moduleStride, numImgColors, numGroups, scaleTargets=0.0, scaleOutput=1.0):
    """Convolution with shared filters: targets = scaleTargets*targets + scaleOutput*conv.

    images:   (numImgColors * imgSizeY * imgSizeX, numImages); rows may be strided
    filters:  (numFilterColors * filterSize^2, numFilters), numFilterColors = numImgColors/numGroups
    targets:  (numFilters * numModulesY * numModulesX, numImages), written in place
    As backends/numpy/filter_acts.convFilterActs.
    """
    _filter_acts("convFilterActs", images, filters, targets, imgSizeY, numModulesY, numModulesX,
                 paddingStart, moduleStride, numImgColors, numGroups, scaleTargets, scaleOutput, True)


def localFilterActs(images, filters, targets, imgSizeY, numModulesY, numModulesX, paddingStart,
                    moduleStride, numImgColors, numGroups, scaleTargets=0.0, scaleOutput=1.0):
    """Locally connected layer (a filter bank per module); as convFilterActs but

    filters:  (numModules * numFilterColors * filterSize^2, numFilters), module-major
    """
    _filter_acts("localFilterActs", images, filters, targets, imgSizeY, numModulesY, numModulesX,
                 paddingStart, moduleStride, numImgColors, numGroups, scaleTargets, scaleOutput, False)
