"""The "gemm" variant of the shared-filter convolution on the GPU: images unfolded into
columns (cuda_src/cudaconv2/unfold.cu) and every pass done as cuBLAS products. New in this
port; the 2012 kernels (filter_acts.py, img_acts.py, weight_acts.py) stay the default.

Chosen by `set_conv_kernels("gemm")` (the training loop's --conv-kernels=gemm), and by
"winograd", which sends 3x3 stride-1 filterActs and imgActs on to conv_winograd.py. This
module also dispatches "implicit" (all three passes to conv_implicit.py) and "fastest",
each pass to whichever of the three measured fastest for it on an H100 (FASTEST).
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
from . import conv_implicit, conv_winograd, nvmatrix
from .nvmatrix import gemm_batched, launch_1d, ptr, row_stride, scale_targets

SRC = "cudaconv2/unfold.cu"
THREADS = 256                   # UNFOLD_THREADS of unfold.cu
INSTANTIATIONS = [(SRC, "kIm2Col", ()), (SRC, "kCol2Im", ())]
FORMATS = {"kIm2Col": "PPiiiiiiiiiii", "kCol2Im": "PPiiiiiiiiiiiiiff"}

_variant = "2012"

# "fastest", pass by pass, from benchmarks/gpu_step.py on an H100 (2026-11-26, AlexNet,
# minibatch 128, ms per tower or input; the table is in docs/performance.md):
#   filterActs  winograd where it applies (conv3-5: 0.18-0.27 against implicit's 0.33-0.49),
#               else implicit (conv1 0.61, conv2 0.80, against gemm's 1.41 and 1.42)
#   imgActs     winograd where it applies (0.20-0.27 against gemm's 0.36-0.52), else gemm
#               (conv2 1.26: implicit's gather takes 1.81, and 175 at conv1's stride 4)
#   weightActs  implicit (0.39-0.85 on all but conv4, where gemm's 0.56 beats its 0.77)
FASTEST = {"filterActs": "implicit", "imgActs": "gemm", "weightActs": "implicit"}


def set_conv_kernels(name):
    """Which kernels the conv passes run: "2012" (the ported 2012 kernels), "gemm",
    "winograd", "implicit" or "fastest"."""
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
    return _variant in ("winograd", "fastest") and conv_winograd.applies(g)


def _implicit(op):
    """Whether pass `op` goes to conv_implicit.py (after winograd had its turn)."""
    return _variant == "implicit" or (_variant == "fastest" and FASTEST[op] == "implicit")


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


def _unfold_args(g, image_matrix, m0, m1):
    """The integer arguments both kernels of unfold.cu start with, for ConvGeometry g
    (image_matrix: the one in the images' layout, whose row stride they take)."""
    return tuple(np.int32(v) for v in (g.numImages, row_stride(image_matrix), g.numImgColors, g.imgSizeY, g.imgSizeX,
                                       g.numModulesX, m0, m1, g.filterSize, g.paddingStart, g.moduleStride))


def _rows(g):
    """Rows of the column buffer: (colour, filter row, filter column), all groups."""
    return g.numImgColors * g.filterPixels


def im2col(g, images, cols, m0, m1):
    lc = launch_1d(SRC, "kIm2Col", (m1 - m0) * g.numImages, _rows(g), THREADS)
    nvmatrix.launch(lc, FORMATS["kIm2Col"], ptr(images), ptr(cols), *_unfold_args(g, images, m0, m1))


def col2im(g, cols, targets, m0, m1, scaleTargets, scaleOutput):
    """Adds the gradients in `cols` (modules m0..m1) into the image rows they touch; with
    several chunks targets must already be scaled (scaleTargets 1 then)."""
    mX, stride = g.numModulesX, g.moduleStride
    yStart = max(0, g.paddingStart + (m0 // mX) * stride)
    yEnd = min(g.imgSizeY, g.paddingStart + ((m1 - 1) // mX) * stride + g.filterSize)
    if yEnd <= yStart:
        return
    lc = launch_1d(SRC, "kCol2Im", (yEnd - yStart) * g.imgSizeX * g.numImages, g.numImgColors, THREADS)
    nvmatrix.launch(lc, FORMATS["kCol2Im"], ptr(cols), ptr(targets), *_unfold_args(g, targets, m0, m1),
                    np.int32(yStart), np.int32(yEnd), np.float32(scaleTargets), np.float32(scaleOutput))


# The three passes, for the ConvGeometry g of the call (backends/numpy's, which the 2012
# checks produced). Below N = numImages, F = numFilters, Fg = numFiltersPerGroup, G =
# numGroups, M = numModules, K = Kg (filter rows per group), w = a chunk's columns.

def filterActs(g, images, filters, targets, scaleTargets, scaleOutput):
    """targets (F * M, N) = scaleTargets * targets + scaleOutput * conv(images, filters)."""
    if g.numImages == 0:
        return
    if _winograd(g):
        return conv_winograd.filterActs(g, images, filters, targets, scaleTargets, scaleOutput)
    if _implicit("filterActs"):
        return conv_implicit.filterActs(g, images, filters, targets, scaleTargets, scaleOutput)
    N, F, Fg, K = g.numImages, g.numFilters, g.numFiltersPerGroup, g.Kg
    ldt = g.numModules * N                   # targets as (F, M * N)
    for m0, m1, _ in module_chunks(g.numModules, _rows(g) * N):
        w = (m1 - m0) * N
        cols = nvmatrix.empty(_rows(g), w)
        im2col(g, images, cols, m0, m1)
        # per group: targets_g (Fg, w) = filters_g^T (Fg, K) @ cols_g (K, w)
        gemm_batched(True, False, Fg, w, K, scaleOutput, ptr(filters), F, Fg, ptr(cols), w, K * w,
                     scaleTargets, ptr(targets) + 4 * m0 * N, ldt, Fg * ldt, g.numGroups)


def imgActs(g, hidActs, filters, targets, scaleTargets, scaleOutput):
    """targets (C * imgPixels, N) = scaleTargets * targets + scaleOutput * d conv / d images."""
    if g.numImages == 0:
        return
    if _winograd(g):
        return conv_winograd.imgActs(g, hidActs, filters, targets, scaleTargets, scaleOutput)
    if _implicit("imgActs"):
        return conv_implicit.imgActs(g, hidActs, filters, targets, scaleTargets, scaleOutput)
    N, F, Fg, K = g.numImages, g.numFilters, g.numFiltersPerGroup, g.Kg
    ldh = g.numModules * N                   # hidActs as (F, M * N)
    chunks = module_chunks(g.numModules, _rows(g) * N)
    if len(chunks) > 1:                      # chunks overlap in image rows: scale once, then add
        scale_targets(targets, scaleTargets)
        scaleTargets = 1.0
    for m0, m1, _ in chunks:
        w = (m1 - m0) * N
        cols = nvmatrix.empty(_rows(g), w)
        # per group: cols_g (K, w) = filters_g (K, Fg) @ hidActs_g (Fg, w)
        gemm_batched(False, False, K, w, Fg, 1.0, ptr(filters), F, Fg, ptr(hidActs) + 4 * m0 * N, ldh, Fg * ldh,
                     0.0, ptr(cols), w, K * w, g.numGroups)
        col2im(g, cols, targets, m0, m1, scaleTargets, scaleOutput)


def weightActs(g, images, hidActs, targets, partialSum, scaleTargets, scaleOutput):
    """targets (M / partialSum * K, F): per partial sum p, scaleTargets * targets_p +
    scaleOutput * the filter gradient summed over its modules."""
    if _implicit("weightActs") and conv_implicit.fits(g, partialSum):
        return conv_implicit.weightActs(g, images, hidActs, targets, partialSum, scaleTargets, scaleOutput)
    if g.numImages == 0:
        scale_targets(targets, scaleTargets)
        return
    N, F, Fg, K = g.numImages, g.numFilters, g.numFiltersPerGroup, g.Kg
    ps = partialSum or g.numModules
    ldh = g.numModules * N
    for m0, m1, first in module_chunks(g.numModules, _rows(g) * N, ps):
        w = (m1 - m0) * N
        cols = nvmatrix.empty(_rows(g), w)
        im2col(g, images, cols, m0, m1)
        span = min(ps, m1 - m0) * N          # columns per product
        p = m0 // ps                         # the first partial sum of the chunk
        beta = scaleTargets if first else 1.0
        for grp in range(g.numGroups):
            # targets_p (K, Fg) = cols_g[p] (K, span) @ hidActs_g[p]^T (span, Fg), for each p
            gemm_batched(False, True, K, Fg, span, scaleOutput, ptr(cols) + 4 * grp * K * w, w, span,
                         ptr(hidActs) + 4 * (grp * Fg * ldh + m0 * N), ldh, span,
                         beta, ptr(targets) + 4 * (p * K * F + grp * Fg), F, K * F, w // span)
