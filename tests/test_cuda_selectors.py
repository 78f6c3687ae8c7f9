"""The CUDA backend's kernel selectors against the 2012 host code's branches (runs
everywhere: the selectors are pure Python and need neither PyCUDA nor a GPU).

Each table row is one path through the if/else chains of 2012 _filterActs,
_filterActsSparse, _imgActs, _imgActsSparse, _weightActs and _weightActsSparse
(cudaconv2/filter_acts.cu, img_acts.cu, weight_acts.cu), written down by reading them:
the inputs, then the kernel, its template arguments, the grid and the block the 2012 code
launches for them. The rows that must fail are the 2012 asserts.
"""
import itertools
import subprocess
import sys

import numpy as np
import pytest

from cudaconvnet.backends.cuda import filter_acts as cfa
from cudaconvnet.backends.cuda import img_acts as cia
from cudaconvnet.backends.cuda import sparse_acts as csa
from cudaconvnet.backends.cuda import weight_acts as cwa

F, T = False, True
FA, FAS = "filterActs_YxX_color", "filterActs_YxX_sparse"
IC, IM, IMC = "img_acts_color", "img_acts_mediumcolor", "conv_img_acts_manycolor"
WC, WM = "conv_weight_acts_c", "conv_weight_acts_mc_mf"


def _check(launch, name, args, grid, block):
    assert (launch.name, launch.args, launch.grid, launch.block) == (name, args, grid, block)


# ----------------------------------------------------------------------------------------
# filterActs: (numImages, numFilters, numImgColors, numGroups, numModules, scaleTargets)
#   -> (kernel, <B_Y, B_X, imgsPerThread, filtersPerThread, numColors|colorCache, scale,
#       checkImgBounds>, grid, block)

FILTER_ACTS = [
    # imgsPerThread 4 (numImages % 128 == 0); 1-3 colours: the color kernel, filtersPerThread
    # 8 when numFilters % 32 == 0, else 4; grid.y = modules * filters / (4 * 8 or 4 * 4)
    ((128, 32, 3, 1, 4, 0.0), FA, (4, 32, 4, 8, 3, F, F), (1, 4), (32, 4, 1)),
    ((128, 16, 3, 1, 4, 0.0), FA, (4, 32, 4, 4, 3, F, F), (1, 4), (32, 4, 1)),
    ((256, 96, 3, 1, 3025, 0.0), FA, (4, 32, 4, 8, 3, F, F), (2, 9075), (32, 4, 1)),  # AlexNet conv1
    ((128, 48, 1, 1, 9, 1.0), FA, (4, 32, 4, 4, 1, T, F), (1, 27), (32, 4, 1)),
    # imgsPerThread 2 (numImages % 64 == 0)
    ((64, 32, 1, 1, 4, 1.0), FA, (4, 32, 2, 8, 1, T, F), (1, 4), (32, 4, 1)),
    ((192, 16, 2, 1, 4, 0.0), FA, (4, 32, 2, 4, 2, F, F), (3, 4), (32, 4, 1)),
    # imgsPerThread 1; checkImgBounds when numImages % 32 != 0
    ((96, 32, 2, 1, 4, 0.0), FA, (4, 32, 1, 8, 2, F, F), (3, 4), (32, 4, 1)),
    ((100, 32, 2, 1, 4, 0.5), FA, (4, 32, 1, 8, 2, T, T), (4, 4), (32, 4, 1)),
    ((1, 16, 3, 1, 1, 0.0), FA, (4, 32, 1, 4, 3, F, T), (1, 1), (32, 4, 1)),
    # 4 or more colours, or groups: the sparse kernel, colorCache 2, filtersPerThread by
    # (numFilters / numGroups) % 32
    ((128, 64, 4, 1, 4, 0.0), FAS, (4, 32, 4, 8, 2, F, F), (1, 8), (32, 4, 1)),
    ((128, 48, 16, 1, 4, 0.0), FAS, (4, 32, 4, 4, 2, F, F), (1, 12), (32, 4, 1)),
    ((128, 64, 64, 2, 25, 0.0), FAS, (4, 32, 4, 8, 2, F, F), (1, 50), (32, 4, 1)),
    ((128, 64, 64, 4, 25, 1.0), FAS, (4, 32, 4, 4, 2, T, F), (1, 100), (32, 4, 1)),
    ((128, 128, 48, 1, 729, 0.0), FAS, (4, 32, 4, 8, 2, F, F), (1, 2916), (32, 4, 1)),  # conv2 tower
    ((64, 32, 6, 1, 4, 0.0), FAS, (4, 32, 2, 8, 2, F, F), (1, 4), (32, 4, 1)),
    ((40, 32, 8, 2, 4, 1.0), FAS, (4, 32, 1, 4, 2, T, T), (2, 8), (32, 4, 1)),
]


@pytest.mark.parametrize("inp,name,args,grid,block", FILTER_ACTS)
def test_filter_acts_table(inp, name, args, grid, block):
    _check(cfa.select_filter_acts(*inp), name, args, grid, block)


@pytest.mark.parametrize("inp,match", [
    ((128, 32, 5, 1, 4, 0.0), "1, 2, 3 or even"),          # odd colours without groups
    ((128, 32, 6, 2, 4, 0.0), "must be even"),             # 3 colours per group
    ((128, 32, 3, 3, 4, 0.0), "must be even"),
    ((128, 24, 3, 1, 4, 0.0), "multiple of 16"),
    ((128, 32, 8, 4, 4, 0.0), "multiple of 16"),            # 32 filters, 4 groups
    ((128, 32, 6, 4, 4, 0.0), "multiple of numGroups"),
    ((128, 1024, 3, 1, 3025, 0.0), "blocks in y"),          # past CUDA's 65535
])
def test_filter_acts_asserts(inp, match):
    with pytest.raises(ValueError, match=match):
        cfa.select_filter_acts(*inp)


# ----------------------------------------------------------------------------------------
# imgActs: (numImages, numFilters, numImgColors, numGroups, imgSizeY, imgSizeX, scaleTargets,
#           conv) -> (kernel, template args, grid, block)

IMG_ACTS = [
    # 1-3 colours per group: img_acts_color<imgsPerThread 8/4/2, numColors, scale,
    # checkCaseBounds, conv>, block 16x16, grid (case blocks, 4x4 regions)
    ((128, 32, 3, 1, 10, 10, 0.0, T), IC, (8, 3, F, F, T), (1, 9), (16, 16, 1)),
    ((256, 32, 3, 1, 224, 224, 0.0, T), IC, (8, 3, F, F, T), (2, 3136), (16, 16, 1)),
    ((64, 16, 1, 1, 10, 10, 1.0, F), IC, (4, 1, T, F, F), (1, 9), (16, 16, 1)),
    ((32, 16, 2, 1, 8, 8, 0.0, T), IC, (2, 2, F, F, T), (1, 4), (16, 16, 1)),
    ((16, 16, 2, 1, 8, 8, 0.0, T), IC, (2, 2, F, T, T), (1, 4), (16, 16, 1)),
    ((200, 16, 3, 1, 5, 7, 0.0, F), IC, (2, 3, F, T, F), (7, 4), (16, 16, 1)),
    # more than 3 colours per group, not a multiple of 8: img_acts_mediumcolor<imgsPerThread,
    # colorsPerThread 4 if % 4 == 0 else 2, ...>, grid.x = case blocks * colours / colorsPerThread
    ((128, 32, 4, 1, 10, 10, 0.0, T), IM, (8, 4, F, F, T), (1, 9), (16, 16, 1)),
    ((128, 32, 6, 1, 10, 10, 0.0, T), IM, (8, 2, F, F, T), (3, 9), (16, 16, 1)),
    ((64, 32, 8, 2, 10, 10, 1.0, F), IM, (4, 4, T, F, F), (2, 9), (16, 16, 1)),
    ((20, 16, 12, 1, 6, 6, 0.0, T), IM, (2, 4, F, T, T), (3, 4), (16, 16, 1)),
    # a multiple of 8 colours per group: conv_img_acts_manycolor<4, 32, imgsPerThread 4/2/1,
    # colorsPerThread 4 if % 16 == 0 else 2, ...>, block 32x4,
    # grid (case blocks * colours / (4 * colorsPerThread), image pixels)
    ((128, 32, 8, 1, 10, 10, 0.0, T), IMC, (4, 32, 4, 2, F, F, T), (1, 100), (32, 4, 1)),
    ((128, 32, 16, 1, 10, 10, 0.0, F), IMC, (4, 32, 4, 4, F, F, F), (1, 100), (32, 4, 1)),
    ((128, 64, 64, 2, 5, 5, 0.0, T), IMC, (4, 32, 4, 4, F, F, T), (4, 25), (32, 4, 1)),
    ((128, 32, 24, 1, 5, 5, 1.0, T), IMC, (4, 32, 4, 2, T, F, T), (3, 25), (32, 4, 1)),
    ((64, 32, 48, 1, 5, 7, 0.0, T), IMC, (4, 32, 2, 4, F, F, T), (3, 35), (32, 4, 1)),
    ((96, 32, 16, 1, 5, 5, 0.0, T), IMC, (4, 32, 1, 4, F, F, T), (3, 25), (32, 4, 1)),
    ((20, 32, 16, 1, 5, 5, 1.0, F), IMC, (4, 32, 1, 4, T, T, F), (1, 25), (32, 4, 1)),
    ((128, 192, 256, 1, 13, 13, 0.0, T), IMC, (4, 32, 4, 4, F, F, T), (16, 169), (32, 4, 1)),  # conv3
]


@pytest.mark.parametrize("inp,name,args,grid,block", IMG_ACTS)
def test_img_acts_table(inp, name, args, grid, block):
    _check(cia.select_img_acts(*inp), name, args, grid, block)


@pytest.mark.parametrize("inp,match", [
    ((128, 32, 5, 1, 8, 8, 0.0, T), "1, 2, 3 or even"),
    ((128, 32, 6, 2, 8, 8, 0.0, T), "multiple of 4"),        # 3 colours per group
    ((128, 32, 12, 2, 8, 8, 0.0, T), "multiple of 4"),       # 6 colours per group
    ((128, 40, 3, 1, 8, 8, 0.0, T), "multiple of 16"),
    ((128, 16, 8, 2, 8, 8, 0.0, T), "multiple of 16"),
    ((128, 32, 16, 1, 256, 256, 0.0, T), "blocks in y"),     # one block row per pixel
])
def test_img_acts_asserts(inp, match):
    with pytest.raises(ValueError, match=match):
        cia.select_img_acts(*inp)


# ----------------------------------------------------------------------------------------
# weightActs: (numImages, numFilters, numImgColors, numGroups, numModules, partialSum,
#              filterSize, scaleTargets) -> (kernel, template args, grid, block)

WEIGHT_ACTS = [
    # 1-3 colours: conv_weight_acts_c<B_Y, B_X, pixelsPerThread, 32, numColors, scale,
    # checkCaseBounds>; numFilters % 32 == 0: 4x32 and 8 (1 colour) or 5 pixels per thread,
    # else 8x16 and 5 or 2; grid (partial sums * numFilters / B_X,
    # DIVUP(filterPixels, B_Y * pixelsPerThread))
    ((128, 32, 3, 1, 9, 0, 5, 0.0), WC, (4, 32, 5, 32, 3, F, F), (1, 2), (32, 4, 1)),
    ((128, 32, 1, 1, 9, 3, 5, 0.0), WC, (4, 32, 8, 32, 1, F, F), (3, 1), (32, 4, 1)),
    ((128, 64, 2, 1, 9, 1, 5, 1.0), WC, (4, 32, 5, 32, 2, T, F), (18, 2), (32, 4, 1)),
    ((128, 16, 3, 1, 9, 0, 5, 0.0), WC, (8, 16, 2, 32, 3, F, F), (1, 2), (16, 8, 1)),
    ((128, 48, 1, 1, 4, 2, 3, 0.0), WC, (8, 16, 5, 32, 1, F, F), (6, 1), (16, 8, 1)),
    ((20, 16, 2, 1, 4, 0, 3, 0.0), WC, (8, 16, 2, 32, 2, F, T), (1, 1), (16, 8, 1)),
    ((128, 96, 3, 1, 3025, 5, 11, 0.0), WC, (4, 32, 5, 32, 3, F, F), (1815, 7), (32, 4, 1)),  # conv1
    # more than 3 colours per group: conv_weight_acts_mc_mf<B_Y, B_X, filtersPerThread,
    # colorsPerThread, 32, ...>; filters per group % 64: 4x32, 2; % 32: 8x16, 2; else 8x16, 1;
    # colours per group % 8: 8 else 4; grid (partial sums * numFilters / (B_X *
    # filtersPerThread), DIVUP(filterPixels, B_Y) * colours / colorsPerThread)
    ((128, 64, 4, 1, 9, 0, 3, 0.0), WM, (4, 32, 2, 4, 32, F, F), (1, 3), (32, 4, 1)),
    ((128, 32, 8, 1, 9, 9, 3, 0.0), WM, (8, 16, 2, 8, 32, F, F), (1, 2), (16, 8, 1)),
    ((128, 16, 16, 1, 9, 1, 3, 1.0), WM, (8, 16, 1, 8, 32, T, F), (9, 4), (16, 8, 1)),
    ((128, 128, 64, 2, 25, 5, 3, 0.0), WM, (4, 32, 2, 8, 32, F, F), (10, 12), (32, 4, 1)),
    ((100, 64, 12, 1, 9, 3, 3, 0.0), WM, (4, 32, 2, 4, 32, F, T), (3, 9), (32, 4, 1)),
    ((128, 48, 8, 1, 9, 0, 3, 0.0), WM, (8, 16, 1, 8, 32, F, F), (3, 2), (16, 8, 1)),
    ((128, 128, 48, 1, 729, 3, 5, 0.0), WM, (4, 32, 2, 8, 32, F, F), (486, 42), (32, 4, 1)),  # conv2
]


@pytest.mark.parametrize("inp,name,args,grid,block", WEIGHT_ACTS)
def test_weight_acts_table(inp, name, args, grid, block):
    _check(cwa.select_weight_acts(*inp), name, args, grid, block)


@pytest.mark.parametrize("inp,match", [
    ((128, 32, 6, 1, 9, 0, 3, 0.0), "multiple of 4"),    # filterActs takes 6 colours, weightActs not
    ((128, 32, 4, 2, 9, 0, 3, 0.0), "multiple of 4"),    # 2 colours per group
    ((128, 24, 3, 1, 9, 0, 3, 0.0), "multiple of 16"),
    ((128, 32, 3, 1, 9, 4, 3, 0.0), "must divide"),
    ((128, 32, 3, 1, 9, -1, 3, 0.0), ">= 0"),
])
def test_weight_acts_asserts(inp, match):
    with pytest.raises(ValueError, match=match):
        cwa.select_weight_acts(*inp)


# ----------------------------------------------------------------------------------------
# sparse random connectivity

FILTER_ACTS_SPARSE = [
    # (numImages, numFilters, numImgColors, numFilterColors, numGroups, numModules, scaleTargets)
    ((128, 64, 4, 2, 2, 4, 0.0), (4, 32, 4, 8, 2, F, F), (1, 8)),
    ((128, 64, 4, 2, 4, 4, 1.0), (4, 32, 4, 4, 2, T, F), (1, 16)),
    ((64, 128, 16, 8, 4, 9, 0.0), (4, 32, 2, 8, 2, F, F), (1, 36)),
    ((20, 32, 8, 4, 2, 1, 0.0), (4, 32, 1, 4, 2, F, T), (1, 2)),   # 16 filters per group
    ((20, 64, 8, 4, 2, 1, 0.0), (4, 32, 1, 8, 2, F, T), (1, 2)),
]


@pytest.mark.parametrize("inp,args,grid", FILTER_ACTS_SPARSE)
def test_filter_acts_sparse_table(inp, args, grid):
    _check(csa.select_filter_acts_sparse(*inp), "filterActs_YxX_sparse_random", args, grid, (32, 4, 1))


IMG_ACTS_SPARSE = [
    # (numImages, numFilters, numImgColors, numFilterColors, numGroups, imgSizeY, imgSizeX,
    #  scaleTargets, conv); overSample = numFilterColors * numGroups / numImgColors multiplies grid.y
    ((128, 64, 8, 4, 4, 8, 8, 0.0, T), "img_acts_mediumcolor_sparse_rand", (8, 4, F, F, T), (2, 8), (16, 16, 1)),
    ((64, 32, 6, 6, 2, 8, 8, 1.0, F), "img_acts_mediumcolor_sparse_rand", (4, 2, T, F, F), (3, 8), (16, 16, 1)),
    ((20, 48, 12, 4, 3, 5, 5, 0.0, T), "img_acts_mediumcolor_sparse_rand", (2, 4, F, T, T), (3, 4), (16, 16, 1)),
    ((128, 64, 16, 8, 4, 5, 5, 0.0, T), "img_acts_manycolor_sparse_rand", (4, 32, 4, 2, F, F, T), (2, 50),
     (32, 4, 1)),
    ((32, 32, 16, 16, 2, 5, 5, 1.0, F), "img_acts_manycolor_sparse_rand", (4, 32, 1, 4, T, F, F), (1, 50),
     (32, 4, 1)),
]


@pytest.mark.parametrize("inp,name,args,grid,block", IMG_ACTS_SPARSE)
def test_img_acts_sparse_table(inp, name, args, grid, block):
    _check(csa.select_img_acts_sparse(*inp), name, args, grid, block)


WEIGHT_ACTS_SPARSE = [
    # (numImages, numFilters, numImgColors, numFilterColors, numGroups, numModules, partialSum,
    #  filterSize, scaleTargets)
    ((128, 128, 8, 4, 2, 9, 0, 3, 0.0), (4, 32, 2, 4, 32, F, F), (2, 3), (32, 4, 1)),
    ((128, 64, 16, 8, 2, 9, 3, 3, 1.0), (8, 16, 2, 8, 32, T, F), (6, 2), (16, 8, 1)),
    ((20, 64, 8, 4, 4, 4, 1, 3, 0.0), (8, 16, 1, 4, 32, F, T), (16, 2), (16, 8, 1)),
]


@pytest.mark.parametrize("inp,args,grid,block", WEIGHT_ACTS_SPARSE)
def test_weight_acts_sparse_table(inp, args, grid, block):
    _check(csa.select_weight_acts_sparse(*inp), "conv_weight_acts_mc_mf_rand", args, grid, block)


@pytest.mark.parametrize("selector,inp,match", [
    (csa.select_filter_acts_sparse, (128, 64, 4, 2, 1, 4, 0.0), "more than one group"),
    (csa.select_filter_acts_sparse, (128, 64, 6, 3, 2, 4, 0.0), "must be even"),
    (csa.select_filter_acts_sparse, (128, 64, 6, 4, 2, 4, 0.0), "multiple of numFilterColors"),
    (csa.select_filter_acts_sparse, (128, 96, 8, 2, 3, 4, 0.0), "multiple of numImgColors"),
    (csa.select_filter_acts_sparse, (128, 32, 4, 2, 4, 4, 0.0), "multiple of 16"),
    (csa.select_img_acts_sparse, (128, 64, 4, 2, 2, 8, 8, 0.0, T), "more than 3"),
    (csa.select_img_acts_sparse, (128, 64, 10, 5, 2, 8, 8, 0.0, T), "even"),
    (csa.select_weight_acts_sparse, (128, 64, 12, 6, 2, 4, 0, 3, 0.0), "multiple of 4"),
    (csa.select_weight_acts_sparse, (128, 64, 8, 4, 2, 4, 3, 3, 0.0), "must divide"),
])
def test_sparse_asserts(selector, inp, match):
    with pytest.raises(ValueError, match=match):
        selector(*inp)


# ----------------------------------------------------------------------------------------
# INSTANTIATIONS: exactly what the selectors can return

def _all_launches():
    """Every selector over a wide grid of inputs."""
    Ns = (1, 16, 20, 31, 32, 33, 64, 96, 100, 128, 192, 256)
    Fs = (16, 32, 48, 64, 96, 128, 192, 256)
    out = set()
    for N, Fn, C, G, s in itertools.product(Ns, Fs, range(1, 40), (1, 2, 3, 4, 8), (0.0, 1.0)):
        for sel, args in ((cfa.select_filter_acts, (N, Fn, C, G, 4, s)),
                          (cwa.select_weight_acts, (N, Fn, C, G, 4, 0, 3, s)),
                          (cia.select_img_acts, (N, Fn, C, G, 5, 5, s, True)),
                          (cia.select_img_acts, (N, Fn, C, G, 5, 5, s, False))):
            try:
                out.add(sel(*args).instantiation)
            except ValueError:
                pass
    for N, Fn, (C, FC, G), s in itertools.product(
            Ns, Fs, [(C, FC, G) for C in (2, 3, 4, 6, 8, 12, 16, 24, 32) for FC in (2, 3, 4, 5, 6, 8, 12, 16, 32)
                     for G in (2, 3, 4, 8)],
            (0.0, 1.0)):
        for sel, args in ((csa.select_filter_acts_sparse, (N, Fn, C, FC, G, 4, s)),
                          (csa.select_weight_acts_sparse, (N, Fn, C, FC, G, 4, 0, 3, s)),
                          (csa.select_img_acts_sparse, (N, Fn, C, FC, G, 5, 5, s, True)),
                          (csa.select_img_acts_sparse, (N, Fn, C, FC, G, 5, 5, s, False))):
            try:
                out.add(sel(*args).instantiation)
            except ValueError:
                pass
    return out


def test_instantiations_are_exactly_what_selectors_return():
    listed = cfa.INSTANTIATIONS + cia.INSTANTIATIONS + cwa.INSTANTIATIONS + csa.INSTANTIATIONS
    assert len(listed) == len(set(listed))
    assert set(listed) == _all_launches()
    assert (len(cfa.INSTANTIATIONS), len(cia.INSTANTIATIONS), len(cwa.INSTANTIATIONS),
            len(csa.INSTANTIATIONS)) == (64, 112, 48, 104)


def test_unreachable_2012_branches_are_not_instantiated():
    """2012 wrote out launches no input reaches: checkImgBounds / checkCaseBounds with more
    than one image per thread (numImages % 128 == 0 means no ragged last block)."""
    fa = {a for f, n, a in cfa.INSTANTIATIONS}
    assert (4, 32, 4, 8, 3, False, True) not in fa and (4, 32, 2, 4, 1, True, True) not in fa
    assert (4, 32, 1, 8, 3, False, True) in fa
    ia = {(n, a) for f, n, a in cia.INSTANTIATIONS}
    assert (IC, (8, 3, False, True, True)) not in ia and (IC, (2, 3, False, True, True)) in ia


def test_instantiation_arguments_are_mangleable():
    for f, n, a in cfa.INSTANTIATIONS + cia.INSTANTIATIONS + cwa.INSTANTIATIONS + csa.INSTANTIATIONS:
        assert f.startswith("cudaconv2/") and f.endswith(".cu")
        assert all(isinstance(x, (bool, int)) for x in a), (n, a)


# ----------------------------------------------------------------------------------------
# the host code without a GPU

def test_import_does_not_need_pycuda():
    code = ("import sys; import cudaconvnet.backends.cuda.filter_acts, cudaconvnet.backends.cuda.img_acts, "
            "cudaconvnet.backends.cuda.weight_acts, cudaconvnet.backends.cuda.sparse_acts; "
            "assert 'pycuda' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


class FakeGPUArray:
    def __init__(self, a):
        self.a = a
        self.shape, self.dtype, self.strides, self.size = a.shape, a.dtype, a.strides, a.size
        self.gpudata = a.__array_interface__["data"][0]


@pytest.fixture
def launches(monkeypatch):
    """Records what the host code would launch instead of launching it."""
    got = []
    for mod in (cfa, cia, cwa, csa):
        monkeypatch.setattr(mod, "run", lambda launch, args: got.append((launch, args)))
    return got


def _z(*shape):
    return FakeGPUArray(np.zeros(shape, np.float32))


def test_host_code_checks_shapes(launches):
    img, flt = _z(3 * 64, 128), _z(27, 32)
    with pytest.raises(ValueError, match="targets has 100 rows"):
        cfa.convFilterActs(img, flt, _z(100, 128), 8, 8, 8, -1, 1, 3, 1)
    with pytest.raises(ValueError, match="not a positive perfect square"):
        cfa.convFilterActs(img, _z(24, 32), _z(32 * 64, 128), 8, 8, 8, -1, 1, 3, 1)
    with pytest.raises(ValueError, match="do not reach the end"):
        cfa.convFilterActs(img, flt, _z(32 * 25, 128), 8, 5, 5, 0, 1, 3, 1)
    with pytest.raises(ValueError, match="float32"):
        cfa.convFilterActs(FakeGPUArray(np.zeros((192, 128))), flt, _z(32 * 64, 128), 8, 8, 8, -1, 1, 3, 1)
    with pytest.raises(ValueError, match="C-contiguous"):
        big = np.zeros((32 * 64, 130), np.float32)
        cfa.convFilterActs(img, flt, FakeGPUArray(big[:, :128]), 8, 8, 8, -1, 1, 3, 1)
    with pytest.raises(ValueError, match="1, 2, 3 or even"):
        cfa.convFilterActs(_z(5 * 64, 128), _z(45, 32), _z(32 * 64, 128), 8, 8, 8, -1, 1, 5, 1)
    assert launches == []
    cfa.convFilterActs(img, flt, _z(32 * 64, 128), 8, 8, 8, -1, 1, 3, 1)
    launch, args = launches[-1]
    assert launch.name == FA and args[-1] == np.uint8(1)


def test_host_code_strided_images(launches):
    """images (filterActs, weightActs) may be a column slice: the kernels get its row stride."""
    big = np.zeros((3 * 64, 200), np.float32)
    img = FakeGPUArray(big[:, :128])
    cfa.localFilterActs(img, _z(64 * 27, 32), _z(32 * 64, 128), 8, 8, 8, -1, 1, 3, 1)
    launch, args = launches[-1]
    assert args[12] == 200 and args[-1] == np.uint8(0)   # imgStride, conv = false
    cwa.convWeightActs(img, _z(32 * 64, 128), _z(8 * 27, 32), 8, 8, 8, 3, -1, 1, 3, 1, 8)
    launch, args = launches[-1]
    assert launch.name == WC and args[12] == 200          # imgStride
    with pytest.raises(ValueError, match="C-contiguous"):
        cia.convImgActs(_z(32 * 64, 128), _z(27, 32), FakeGPUArray(big[:, :128]), 8, 8, 8, -1, 1, 3, 1)


def test_host_code_sparse_colour_lists(launches):
    img, flt = _z(4 * 64, 128), _z(2 * 9, 64)
    conns = FakeGPUArray(np.array([0, 1, 2, 3], np.int32))
    conns.get = lambda: conns.a.copy()
    csa.convFilterActsSparse(img, flt, _z(64 * 64, 128), conns, 8, 8, 8, -1, 1, 4, 2, 2)
    assert launches[-1][0].name == "filterActs_YxX_sparse_random"
    assert launches[-1][1][3] == conns.gpudata
    bad = FakeGPUArray(np.array([0, 1, 1, 3], np.int32))
    bad.get = lambda: bad.a.copy()
    with pytest.raises(ValueError, match="permutations"):
        csa.convFilterActsSparse(img, flt, _z(64 * 64, 128), bad, 8, 8, 8, -1, 1, 4, 2, 2)
    with pytest.raises(ValueError, match="entries"):
        csa.convImgActsSparse(_z(64 * 64, 128), _z(4 * 9, 64), _z(2 * 4 * 64, 128), [0, 1, 2], 8, 8, 8, -1, 1,
                              4, 4, 2)
