"""The "gemm" variant of the shared-filter convolution on the GPU: images unfolded into
columns (cuda_src/cudaconv2/unfold.cu) and every pass done as cuBLAS products. New in this
port; the 2012 kernels (filter_acts.py, img_acts.py, weight_acts.py) stay the default.

Chosen by `set_conv_kernels("gemm")` (the training loop's --conv-kernels=gemm), and by
"winograd", which sends 3x3 stride-1 filterActs and imgActs on to conv_winograd.py.
convFilterActs, convImgActs and convWeightActs come here after their own shape checks;
locally connected layers and sparse random connectivity always run the 2012 kernels. Same
arguments and results as the 2012 functions, so the NumPy reference checks both; unlike the
2012 kernels, any numbers of filters, colours and images are accepted.

Per pass, with K = numFilterColors * filterSize^2 rows per group and the modules taken in
chunks whose column buffer fits the workspace (CUDACONVNET_GEMM_WORKSPACE_MB, default 256):
  filterActs  cols = im2col(images);  targets[group rows, chunk] = filters_g^T cols_g
  imgActs     cols_g = filters_g hidActs_g[chunk];  targets += col2im(cols)
  weightActs  cols = im2col(images);  targets[partial sum p] = cols_g[p] hidActs_g[p]^T,
              one strided-batched product over the partial sums of a chunk (or, when one
              partial sum's columns do not fit, its chunks accumulate into it)
"""
import os

import numpy as np

from .. import CONV_KERNELS
from ..numpy.filter_acts import exact_div
from . import conv_winograd, nvmatrix
from .nvmatrix import MAX_GRID_Y, gemm_batched, ptr, row_stride

SRC = "cudaconv2/unfold.cu"
THREADS = 256                   # UNFOLD_THREADS of unfold.cu
INSTANTIATIONS = [(SRC, "kIm2Col", ()), (SRC, "kCol2Im", ())]
FORMATS = {"kIm2Col": "PPiiiiiiiiiii", "kCol2Im": "PPiiiiiiiiiiiiiff"}

_variant = "2012"


def set_conv_kernels(name):
    """Which kernels the conv passes run: "2012" (the ported 2012 kernels), "gemm" or
    "winograd"."""
    global _variant
    if name not in CONV_KERNELS:
        raise ValueError("conv kernels must be one of %s, got %r" % (", ".join(CONV_KERNELS), name))
    _variant = name


def conv_kernels():
    return _variant


def active():
    """Whether the conv passes come here instead of to the 2012 kernels."""
    return _variant != "2012"


def _winograd(g):
    return _variant == "winograd" and conv_winograd.applies(g)


def workspace_floats():
    mb = float(os.environ.get("CUDACONVNET_GEMM_WORKSPACE_MB", "256"))
    return max(1, int(mb * (1 << 20)) // 4)


def module_chunks(numModules, floats_per_module, partialSum=0):
    """[(m0, m1, first)]: the module ranges done one at a time, each one's columns within
    the workspace (at least one module). With partialSum, a range never crosses a partial
    sum's border and holds whole partial sums where they fit; `first` says the range
    starts its partial sum (so its product overwrites, the later ones accumulate)."""
    ps = partialSum or numModules
    fit = max(1, workspace_floats() // max(1, floats_per_module))
    if fit >= ps:
        step = fit // ps * ps
        return [(m0, min(numModules, m0 + step), True) for m0 in range(0, numModules, step)]
    return [(m0, min(p + ps, m0 + fit), m0 == p) for p in range(0, numModules, ps) for m0 in range(p, p + ps, fit)]


class Geometry:
    """The shapes of one call (of the 2012 function `fn`, whose checks they passed), in the
    kernels' terms."""

    def __init__(self, fn, numImages, numImgColors, imgSizeY, imgSizeX, numModulesY, numModulesX, filterSize,
                 paddingStart, moduleStride, numFilters, numGroups):
        exact_div(fn, "numFilters by numGroups", numFilters, numGroups)   # F / G filters per group
        self.N, self.C, self.imgSizeY, self.imgSizeX = numImages, numImgColors, imgSizeY, imgSizeX
        self.mY, self.mX, self.fs = numModulesY, numModulesX, filterSize
        self.pad, self.stride, self.F, self.G = paddingStart, moduleStride, numFilters, numGroups
        self.M = numModulesY * numModulesX
        self.Fg = numFilters // numGroups
        self.rows = numImgColors * filterSize ** 2          # rows of the column buffer, all groups
        self.K = self.rows // numGroups                     # rows per group

    def kernel_args(self, image_matrix, m0, m1):
        """The integer arguments both kernels start with (image_matrix: the one in the
        images' layout, whose row stride they take)."""
        return tuple(np.int32(v) for v in (self.N, row_stride(image_matrix), self.C, self.imgSizeY, self.imgSizeX,
                                           self.mX, m0, m1, self.fs, self.pad, self.stride))


def _launch(name, threads, rows):
    """A kernel of unfold.cu over `threads` threads of UNFOLD_THREADS per block and `rows`
    rows (or colours) in the grid's y."""
    grid = (max(1, -(-threads // THREADS)), max(1, min(rows, MAX_GRID_Y)))
    return nvmatrix.Launch(SRC, name, (), grid, (THREADS, 1, 1))


def im2col(g, images, cols, m0, m1):
    nvmatrix.launch(_launch("kIm2Col", (m1 - m0) * g.N, g.rows), FORMATS["kIm2Col"], ptr(images), ptr(cols),
           *g.kernel_args(images, m0, m1))


def col2im(g, cols, targets, m0, m1, scaleTargets, scaleOutput):
    """Adds the gradients in `cols` (modules m0..m1) into the image rows they touch; with
    several chunks targets must already be scaled (scaleTargets 1 then)."""
    yStart = max(0, g.pad + (m0 // g.mX) * g.stride)
    yEnd = min(g.imgSizeY, g.pad + ((m1 - 1) // g.mX) * g.stride + g.fs)
    if yEnd <= yStart:
        return
    nvmatrix.launch(_launch("kCol2Im", (yEnd - yStart) * g.imgSizeX * g.N, g.C), FORMATS["kCol2Im"], ptr(cols),
           ptr(targets), *g.kernel_args(targets, m0, m1), np.int32(yStart), np.int32(yEnd),
           np.float32(scaleTargets), np.float32(scaleOutput))


def _scale_in_place(m, s):
    if s == 0:
        nvmatrix.apply_unary("NVMatrixOps_Zero", m, m)
    elif s != 1:
        nvmatrix.scale(m, s, m)


def filterActs(g, images, filters, targets, scaleTargets, scaleOutput):
    """targets (F * M, N) = scaleTargets * targets + scaleOutput * conv(images, filters)."""
    if g.N == 0:
        return
    if _winograd(g):
        return conv_winograd.filterActs(g, images, filters, targets, scaleTargets, scaleOutput)
    ldt = g.M * g.N                          # targets as (F, M * N)
    for m0, m1, _ in module_chunks(g.M, g.rows * g.N):
        w = (m1 - m0) * g.N
        cols = nvmatrix.empty(g.rows, w)
        im2col(g, images, cols, m0, m1)
        # per group: targets_g (Fg, w) = filters_g^T (Fg, K) @ cols_g (K, w)
        gemm_batched(True, False, g.Fg, w, g.K, scaleOutput, ptr(filters), g.F, g.Fg, ptr(cols), w, g.K * w,
                     scaleTargets, ptr(targets) + 4 * m0 * g.N, ldt, g.Fg * ldt, g.G)


def imgActs(g, hidActs, filters, targets, scaleTargets, scaleOutput):
    """targets (C * imgPixels, N) = scaleTargets * targets + scaleOutput * d conv / d images."""
    if g.N == 0:
        return
    if _winograd(g):
        return conv_winograd.imgActs(g, hidActs, filters, targets, scaleTargets, scaleOutput)
    ldh = g.M * g.N                          # hidActs as (F, M * N)
    chunks = module_chunks(g.M, g.rows * g.N)
    if len(chunks) > 1:                      # chunks overlap in image rows: scale once, then add
        _scale_in_place(targets, scaleTargets)
        scaleTargets = 1.0
    for m0, m1, _ in chunks:
        w = (m1 - m0) * g.N
        cols = nvmatrix.empty(g.rows, w)
        # per group: cols_g (K, w) = filters_g (K, Fg) @ hidActs_g (Fg, w)
        gemm_batched(False, False, g.K, w, g.Fg, 1.0, ptr(filters), g.F, g.Fg, ptr(hidActs) + 4 * m0 * g.N, ldh,
                     g.Fg * ldh, 0.0, ptr(cols), w, g.K * w, g.G)
        col2im(g, cols, targets, m0, m1, scaleTargets, scaleOutput)


def weightActs(g, images, hidActs, targets, partialSum, scaleTargets, scaleOutput):
    """targets (M / partialSum * K, F): per partial sum p, scaleTargets * targets_p +
    scaleOutput * the filter gradient summed over its modules."""
    ps = partialSum or g.M
    if g.N == 0:
        _scale_in_place(targets, scaleTargets)
        return
    ldh = g.M * g.N
    for m0, m1, first in module_chunks(g.M, g.rows * g.N, ps):
        w = (m1 - m0) * g.N
        cols = nvmatrix.empty(g.rows, w)
        im2col(g, images, cols, m0, m1)
        span = min(ps, m1 - m0) * g.N        # columns per product
        batch = w // span
        p = m0 // ps                         # the first partial sum of the chunk
        beta = scaleTargets if first else 1.0
        for grp in range(g.G):
            # targets_p (K, Fg) = cols_g[p] (K, span) @ hidActs_g[p]^T (span, Fg), for each p
            gemm_batched(False, True, g.K, g.Fg, span, scaleOutput, ptr(cols) + 4 * grp * g.K * w, w, span,
                         ptr(hidActs) + 4 * (grp * g.Fg * ldh + m0 * g.N), ldh, span,
                         beta, ptr(targets) + 4 * (p * g.K * g.F + grp * g.Fg), g.F, g.K * g.F, batch)
