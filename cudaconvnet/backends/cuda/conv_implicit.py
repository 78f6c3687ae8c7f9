"""The "implicit" variant of the shared-filter convolution on the GPU: each pass one launch
of a register-tiled product that reads its operands straight from the images, filters and
hidActs (cuda_src/cudaconv2/implicit_gemm.cu). New in this port; no column buffer and no
cuBLAS. The 2012 kernels stay the default.

conv_gemm.py hands all three passes here under --conv-kernels=implicit, after the 2012
shape checks. Per pass the host picks the grid and the template arguments: the width (64
or 128) of the tile's side that counts filters or colours, whichever leaves less of the
block idle (AlexNet's 48 and 192 filters per tower take 64); async, sm_80's asynchronous
copies into shared memory, for filterActs and imgActs on GPUs that have them (see
async_copies); and vecA and vecB, 16-byte loads (and stores) where four consecutive
elements are adjacent and aligned, which the 2012 layouts give whenever numImages and the
row strides divide by 4.

weightActs: one block computes a tile (128 rows by 64 or 128 filters) of one partial sum's
gradient. When the partial sums are few (partialSum 0 is one sum over every module) that
leaves most of the GPU idle, so each sum is cut into slices of its numImages * partialSum
products, summed into a scratch matrix slice by slice, and the slices are added up after
(addSum).
"""
import os

import numpy as np

from . import loader, nvmatrix
from .nvmatrix import DIVUP, MAX_GRID_Y, Launch, ptr, row_stride

SRC = "cudaconv2/implicit_gemm.cu"
THREADS = 256                   # IG_THREADS of implicit_gemm.cu
TILE = 128                      # IG_TILE
DEPTH = 8                       # IG_DEPTH
KERNELS = ("kImplicitFilterActs", "kImplicitImgActs", "kImplicitWeightActs")
# (tile width, async, vecA, vecB); weightActs' vecA implies its vecB: both need numImages % 4 == 0
INSTANTIATIONS = [(SRC, k, (w, s, a, b)) for k in KERNELS for w in (64, TILE) for s in (False, True)
                  for a in (False, True) for b in (False, True) if not (k == "kImplicitWeightActs" and a and not b)]
FORMATS = {"kImplicitFilterActs": "PPPiiiiiiiiiiiiff", "kImplicitImgActs": "PPPiiiiiiiiiiiiff",
           "kImplicitWeightActs": "PPPiiiiiiiiiiiiiiiff"}
# weightActs: blocks wanted before a partial sum is sliced (a few per SM of an H100's 132),
# and the fewest products a slice takes
MIN_BLOCKS = 512
MIN_SLICE = 1024


def _aligned(*mats):
    return all(ptr(m) % 16 == 0 for m in mats)


_async = None         # True or False: every kernel's choice, fixed (set_async_copies)
_has_async = None     # whether the GPU in use has cp.async (sm_80 and later)


def async_copies(kernel):
    """Whether `kernel` copies into shared memory with sm_80's cp.async: filterActs and
    imgActs do on GPUs that have them; weightActs keeps its register path, faster on an
    H100 for every AlexNet layer (measured 2026-11-26: 0.385 against 0.577 ms for an input
    of conv3, 0.739 against 1.104 ms for a tower of conv1). CUDACONVNET_IMPLICIT_ASYNC=0 or
    1 (1: the pipeline, with plain copies before sm_80), or set_async_copies, fixes the
    choice for all three."""
    global _has_async
    if _async is not None:
        return _async
    choice = os.environ.get("CUDACONVNET_IMPLICIT_ASYNC", "")
    if choice in ("0", "1"):
        return choice == "1"
    if _has_async is None:
        _has_async = int(loader.device_arch()[3:]) >= 80
    return _has_async and kernel != "kImplicitWeightActs"


def set_async_copies(choice):
    """True or False fixes the choice of async_copies for every kernel; None gives it back
    to the GPU and the environment."""
    global _async
    _async = choice


def _launch(kernel, width, vecA, vecB, grid, *args):
    targs = (width, async_copies(kernel), bool(vecA), bool(vecB))
    nvmatrix.launch(Launch(SRC, kernel, targs, grid, (THREADS, 1, 1)), FORMATS[kernel], *args)


def tile_width(n):
    """The tile width for a side of n filters or colours: 64 where it pads n less than 128
    does (48 -> 64, 192 -> 3 x 64), else 128."""
    return 64 if DIVUP(n, 64) * 64 < DIVUP(n, TILE) * TILE else TILE


def _sizes(g):
    """The integer arguments after the image row stride, the same in all three kernels."""
    return tuple(np.int32(v) for v in (g.numGroups, g.numFilterColors, g.numFilters, g.imgSizeY, g.imgSizeX,
                                       g.numModulesY, g.numModulesX, g.filterSize, g.paddingStart, g.moduleStride))


def _filters_vec(g, filters):
    """Four adjacent filters of a group are adjacent and aligned in memory."""
    return g.numFilters % 4 == 0 and g.numFiltersPerGroup % 4 == 0 and _aligned(filters)


def _images_vec(g, stride, *mats):
    """Four adjacent images of a pixel are adjacent and aligned, in mats, whose rows (in the
    images' layout) are `stride` floats apart."""
    return g.numImages % 4 == 0 and stride % 4 == 0 and _aligned(*mats)


def _per_group(kernel, g, rows, columns, data, filters, targets, stride, vecB, scaleTargets, scaleOutput):
    """filterActs and imgActs: per group, C (rows, columns) in tiles of (tile_width(rows),
    TILE). data: images or hidActs; stride: the row stride of the one in the images' layout."""
    if g.numImages == 0:
        return
    bm = tile_width(rows)
    grid = (DIVUP(columns, TILE), DIVUP(rows, bm) * g.numGroups)
    _launch(kernel, bm, _filters_vec(g, filters), vecB, grid, ptr(data), ptr(filters), ptr(targets),
            np.int32(g.numImages), np.int32(stride), *_sizes(g), np.float32(scaleTargets), np.float32(scaleOutput))


def filterActs(g, images, filters, targets, scaleTargets, scaleOutput):
    """targets (F * M, N) = scaleTargets * targets + scaleOutput * conv(images, filters)."""
    stride = row_stride(images)
    _per_group("kImplicitFilterActs", g, g.numFiltersPerGroup, g.numModules * g.numImages, images, filters, targets,
               stride, _images_vec(g, stride, images, targets), scaleTargets, scaleOutput)


def imgActs(g, hidActs, filters, targets, scaleTargets, scaleOutput):
    """targets (C * imgPixels, N) = scaleTargets * targets + scaleOutput * d conv / d images."""
    stride = row_stride(targets)
    _per_group("kImplicitImgActs", g, g.numFilterColors, g.imgPixels * g.numImages, hidActs, filters, targets,
               stride, _images_vec(g, stride, hidActs, targets), scaleTargets, scaleOutput)


def slicing(g, partialSum):
    """(numSlices, sliceLen): how weightActs cuts each partial sum's partialSum * numImages
    products (sliceLen divides by DEPTH; every slice holds some)."""
    products = partialSum * g.numImages
    blocks = DIVUP(g.Kg, TILE) * DIVUP(g.numFiltersPerGroup, tile_width(g.numFiltersPerGroup)) * g.numGroups * \
        (g.numModules // partialSum)
    slices = max(1, min(DIVUP(MIN_BLOCKS, blocks), products // MIN_SLICE))
    sliceLen = max(DEPTH, DIVUP(DIVUP(products, slices), DEPTH) * DEPTH)
    return DIVUP(products, sliceLen), sliceLen


def fits(g, partialSum):
    """Whether weightActs' grid fits CUDA's 65535 blocks along y (conv_gemm takes the rest)."""
    ps = partialSum or g.numModules
    return DIVUP(g.Kg, TILE) * g.numGroups * (g.numModules // ps) * slicing(g, ps)[0] <= MAX_GRID_Y


def weightActs(g, images, hidActs, targets, partialSum, scaleTargets, scaleOutput):
    """targets (M / partialSum * K, F): per partial sum p, scaleTargets * targets_p +
    scaleOutput * the filter gradient summed over its modules."""
    if g.numImages == 0:
        nvmatrix.scale_targets(targets, scaleTargets)
        return
    ps = partialSum or g.numModules
    slices, sliceLen = slicing(g, ps)
    out = targets if slices == 1 else nvmatrix.empty(slices * targets.shape[0], targets.shape[1])
    vecA = _images_vec(g, row_stride(images), images)
    vecB = _images_vec(g, 4, hidActs)                  # (hidActs: rows numImages apart)
    bn = tile_width(g.numFiltersPerGroup)
    grid = (DIVUP(g.numFiltersPerGroup, bn), DIVUP(g.Kg, TILE) * g.numGroups * (g.numModules // ps) * slices)
    _launch("kImplicitWeightActs", bn, vecA, vecB, grid, ptr(images), ptr(hidActs), ptr(out), np.int32(g.numImages),
            np.int32(row_stride(images)), *_sizes(g), np.int32(ps), np.int32(slices), np.int32(sliceLen),
            np.float32(scaleTargets if slices == 1 else 0.0), np.float32(scaleOutput if slices == 1 else 1.0))
    if slices > 1:
        L = targets.size
        nvmatrix.addSum(targets.reshape(1, L), out.reshape(slices, L), 0, scaleTargets, scaleOutput)
