"""The "winograd" variant of the 3x3, stride-1 shared-filter convolution on the GPU:
Winograd's F(2x2, 3x3) (cuda_src/cudaconv2/winograd.cu) with the 16 products per tile done
by cuBLAS as one strided batch. New in this port.

conv_gemm.py hands filterActs and imgActs here under --conv-kernels=winograd when the
filters are 3x3 and the stride is 1 (AlexNet's conv3-5); everything else, weightActs
included, stays with the gemm variant. The transform buffers are not chunked: V and M
hold 16 floats per (colour or filter, 2x2 output tile, image), about 4x the layer's
input and output.
"""
import numpy as np

from . import nvmatrix
from .nvmatrix import DIVUP, gemm_batched, launch_1d, ptr, row_stride

SRC = "cudaconv2/winograd.cu"
THREADS = 256                   # WINOGRAD_THREADS of winograd.cu
INSTANTIATIONS = [(SRC, "kWinogradFilters", ()), (SRC, "kWinogradInputs", ()), (SRC, "kWinogradOutputs", ())]
FORMATS = {"kWinogradFilters": "PPiii", "kWinogradInputs": "PPiiiiiiii", "kWinogradOutputs": "PPiiiiiiff"}


def applies(g):
    """Whether ConvGeometry g is one Winograd's F(2x2, 3x3) serves: 3x3 filters, stride 1."""
    return g.filterSize == 3 and g.moduleStride == 1


def _launch(name, threads, rows, *args):
    nvmatrix.launch(launch_1d(SRC, name, threads, rows, THREADS), FORMATS[name], *args)


def transform_filters(filters, flip):
    """U (16 * numFilterColors, numFilters): the filters in the Winograd domain, each turned
    by 180 degrees when flip (for the input gradient)."""
    colours, F = filters.shape[0] // 9, filters.shape[1]
    U = nvmatrix.empty(16 * colours, F)
    _launch("kWinogradFilters", colours * F, 1, ptr(filters), ptr(U), colours, F, int(flip))
    return U


def _convolve(inputs, U, targets, N, Cin, Cout, G, inY, inX, outY, outX, paddingStart, transA, scaleTargets,
              scaleOutput):
    """targets (Cout, outY, outX, N) = scaleTargets * targets + scaleOutput * the 3x3
    correlation of inputs (Cin, inY, inX, N) with the filters U stands for, group by group.
    U[k] is (filter colours, numFilters) whatever the direction; transA picks the product
    (fprop: outputs are U's columns; imgActs: outputs are U's rows)."""
    tilesY, tilesX = DIVUP(outY, 2), DIVUP(outX, 2)
    tiles = tilesY * tilesX
    w = tiles * N
    V = nvmatrix.empty(16 * Cin, w)
    _launch("kWinogradInputs", w, Cin, ptr(inputs), ptr(V), N, row_stride(inputs), Cin, inY, inX, tilesX, tiles,
            paddingStart)
    M = nvmatrix.empty(16 * Cout, w)
    rowsU, F = U.shape[0] // 16, U.shape[1]
    inG, outG = Cin // G, Cout // G
    for grp in range(G):
        # per position k: M[k]_g (outG, w) = op(U[k]_g) (outG, inG) @ V[k]_g (inG, w)
        colsU = grp * (outG if transA else inG)      # group g's filters are U's columns [g * F/G, ...)
        gemm_batched(transA, False, outG, w, inG, 1.0, ptr(U) + 4 * colsU, F, rowsU * F,
                     ptr(V) + 4 * grp * inG * w, w, Cin * w, 0.0, ptr(M) + 4 * grp * outG * w, w, Cout * w, 16)
    _launch("kWinogradOutputs", w, Cout, ptr(M), ptr(targets), N, Cout, outY, outX, tilesX, tiles,
            np.float32(scaleTargets), np.float32(scaleOutput))


def filterActs(g, images, filters, targets, scaleTargets, scaleOutput):
    U = transform_filters(filters, False)
    _convolve(images, U, targets, g.numImages, g.numImgColors, g.numFilters, g.numGroups, g.imgSizeY, g.imgSizeX,
              g.numModulesY, g.numModulesX, g.paddingStart, True, scaleTargets, scaleOutput)


def imgActs(g, hidActs, filters, targets, scaleTargets, scaleOutput):
    # the input gradient: hidActs correlated with the turned filters, padding 2 - padding
    U = transform_filters(filters, True)
    _convolve(hidActs, U, targets, g.numImages, g.numFilters, g.numImgColors, g.numGroups, g.numModulesY,
              g.numModulesX, g.imgSizeY, g.imgSizeX, -2 - g.paddingStart, False, scaleTargets, scaleOutput)
