"""The kernels of cuda_src/cudaconv2/conv_util.cu, cuda_src/layer_kernels.cu and
cuda_src/nvmatrix/nvmatrix_kernels.cu, run on the CPU by the emulation of
tests/cuda_emulation.py through the CUDA backend's real host code (selectors, shape checks,
argument packing), against the NumPy reference and against the golden outputs of the
original 2012 kernels (../shared/golden/kernels; skipped where ../shared is absent).

The sizes are small but every selector branch is taken: each kernel with each value of
each template argument (imgsPerThread, filtersPerThread, checkCaseBounds, add, blocked,
radius, center, the poolers, the aggregation block sizes ...), not every combination. The
checks and tolerances are those of tests/cuda_op_checks.py, which tests/test_cuda_ops.py
runs on the GPU; emulated, the fast-math intrinsics are the host's IEEE functions, so the
emulated results sit closer to the reference than the GPU's will.

The aggregation branches for 16384 rows or more (kAggShortRows, kAggShortRows2) take a
few seconds each under emulation: four of their eight instantiations run by default, all
with CUDACONVNET_EMULATE_ALL=1.
"""
import os
import struct

import numpy as np
import pytest
from cuda_emulation import emulate_backend, make_emulator
from cuda_op_checks import (EXACT, FAST_MATH, NEURONS, NP, R, assert_close, check_add_scale,
                            check_addVector_and_byVector, check_bed_of_nails, check_convCrop, check_convGaussianBlur,
                            check_convLocalAvgUndo, check_convLocalMaxUndo, check_convLocalPool,
                            check_convReflectHorizontal, check_convResizeBilinear, check_cross_map_forward,
                            check_cross_map_undo, check_elementwise_costs, check_eltwise, check_golden, check_gradients,
                            check_neurons, check_norm_forward, check_norm_undo, check_nrelu, check_softmax, compare,
                            gaussian, golden_cases, pair, philox_words, probs_with_ties)

from cudaconvnet.backends.cuda import conv_util, layer_kernels, loader, nvmatrix

EMULATE_ALL = os.environ.get("CUDACONVNET_EMULATE_ALL", "") not in ("", "0")


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    emu = make_emulator(tmp_path_factory.mktemp("cuda_util_emulation"))
    emu.build(conv_util.INSTANTIATIONS + layer_kernels.INSTANTIATIONS + nvmatrix.INSTANTIATIONS)
    return emu


@pytest.fixture
def be(emulator, monkeypatch):
    """The CUDA backend, its launches emulated and its GPUArrays in host memory."""
    return emulate_backend(monkeypatch, emulator)


@pytest.fixture
def kernels(emulator):
    """The kernels a test launched, as (file, kernel, template args): a test asserts the
    branch it is meant to take."""
    start = len(emulator.launches)

    class Launched:
        def names(self):
            return [k for _, k, _ in emulator.launches[start:]]

        def all(self):
            return emulator.launches[start:]

    return Launched()


# ==========================================================================================
# pooling
# ==========================================================================================
POOLS = [  # (pooler, numFilters, numImages, imgSize, subsX, startX, strideX, outputsX)
    # kLocalPool2 (stride 1, window >= 6): imgsPerThread 8/4, filtersPerThread 4/3/2/1,
    # checkCaseBounds; a last band of outputs that is not full (outputsX 5)
    ("max", 4, 128, 7, 6, -2, 1, 4), ("avg", 3, 100, 6, 6, -3, 1, 4), ("maxabs", 2, 64, 6, 7, -3, 1, 5),
    ("avg", 1, 32, 5, 6, -1, 1, 3), ("max", 5, 20, 6, 6, -2, 1, 3),
    # kLocalPool: filtersPerThread 2/1 (and numFilters not a multiple of the block's),
    # imgsPerThread 4/2/1, checkCaseBounds, windows hanging off either edge
    ("max", 8, 128, 6, 3, 0, 2, 3), ("avg", 5, 64, 7, 3, -1, 2, 4), ("maxabs", 16, 100, 5, 2, 0, 1, 4),
    ("avg", 3, 32, 8, 4, 0, 3, 3), ("maxabs", 8, 40, 5, 3, -1, 2, 3),
]


@pytest.mark.parametrize("p", POOLS, ids=str)
def test_convLocalPool(be, kernels, p):
    check_convLocalPool(be, p)
    subsX, strideX = p[4], p[6]
    assert kernels.names() == ["kLocalPool2" if strideX == 1 and subsX >= 6 else "kLocalPool"]


UNDOS = [  # (numFilters, numImages, imgSize, subsX, startX, strideX, outputsX, scaleTargets, scaleOutput)
    # imgsPerThread 4/2/1, checkCaseBounds, add (any scale but (0, 1))
    (16, 128, 6, 3, 0, 2, 3, 0, 1), (16, 64, 5, 2, 0, 2, 3, 1, 1), (16, 100, 6, 3, -1, 2, 3, 0.5, 2),
    (32, 32, 5, 3, 0, 1, 3, 0, 2),
]


@pytest.mark.parametrize("u", UNDOS, ids=str)
def test_convLocalMaxUndo(be, kernels, u):
    check_convLocalMaxUndo(be, u)
    assert kernels.names() == ["kLocalMaxUndo"]


@pytest.mark.parametrize("u", UNDOS, ids=str)
def test_convLocalAvgUndo(be, kernels, u):
    check_convLocalAvgUndo(be, u)
    assert kernels.names() == ["kLocalAvgUndo"]


# ==========================================================================================
# normalisation within a map
# ==========================================================================================
CNORMS = [  # (numFilters, numImages, imgSize, size) -> kernel
    ((16, 128, 5, 3), "kCNorm_manyfilter"), ((16, 100, 4, 5), "kCNorm_manyfilter"),
    # kCNorm_fewfilter: numFilters (a template argument) 1 to 8
    ((3, 128, 5, 3), "kCNorm_fewfilter"), ((8, 50, 4, 5), "kCNorm_fewfilter"), ((1, 33, 4, 3), "kCNorm_fewfilter"),
    ((2, 64, 3, 3), "kCNorm_fewfilter"), ((4, 32, 3, 5), "kCNorm_fewfilter"), ((5, 20, 3, 3), "kCNorm_fewfilter"),
    ((6, 128, 3, 1), "kCNorm_fewfilter"), ((7, 64, 3, 6), "kCNorm_fewfilter"),  # a big window, numFilters % 4 != 0
    # kCNorm2: windows of 6 or more, numFilters % 4 == 0
    ((8, 64, 7, 6), "kCNorm2"), ((4, 100, 6, 7), "kCNorm2"), ((16, 64, 5, 9), "kCNorm2"),
]


@pytest.mark.parametrize("c,kernel", CNORMS, ids=str)
@pytest.mark.parametrize("kind", ["response", "contrast"])
def test_norm_forward(be, kernels, c, kernel, kind):
    check_norm_forward(be, c, kind)
    assert kernels.names() == [kernel]


RNORM_UNDOS = [  # (numFilters, numImages, imgSize, size, scaleTargets, scaleOutput) -> kernel
    ((16, 64, 4, 3, 0, 1), "kRNormUndo"), ((16, 50, 4, 5, 1, 1), "kRNormUndo"),
    ((16, 128, 5, 6, 0, 1), "kRNormUndo2"), ((16, 64, 4, 7, 0.5, 2), "kRNormUndo2"),
    ((16, 40, 4, 6, 1, 1), "kRNormUndo2"),
    # images big enough that a 4x4 square's reach is not cut off by the edge on both sides
    ((16, 64, 8, 6, 0, 1), "kRNormUndo2"), ((16, 64, 9, 7, 1, 1), "kRNormUndo2"),
]


@pytest.mark.parametrize("u,kernel", RNORM_UNDOS, ids=str)
@pytest.mark.parametrize("kind", ["response", "contrast"])
def test_norm_undo(be, kernels, u, kernel, kind):
    check_norm_undo(be, u, kind)
    assert kernels.names() == ["kRNormUndoPrelims", kernel]


def test_rnorm_prelims_grid_stride(be, kernels):
    """kRNormUndoPrelims with more elements than its 512 blocks of 128 x 4 cover at once."""
    n = 512 * 128 * 4 + 777
    acts, denoms, grads = R((1, n), 84), np.abs(R((1, n), 85)) + 1, R((1, n), 86)
    d = be.array(acts)
    lc = conv_util.select_rnorm_prelims(n)
    conv_util._prelims(lc, d, be.array(denoms), be.array(grads), 0.01, 0.75)
    want = (np.float32(-2 * 0.01 * 0.75) * grads * acts / denoms).astype(np.float32)
    assert_close(be.to_host(d), want, FAST_MATH, "prelims")
    assert lc.grid == (512, 1)


# ==========================================================================================
# normalisation across maps
# ==========================================================================================
CMR = [  # (numFilters, numImages, imgSize, sizeF, blocked, minDiv): checkCaseBounds, blocked, sizes
    (16, 128, 3, 5, False, 1.0), (16, 100, 3, 3, True, 2.0), (16, 64, 2, 16, False, 2.0), (32, 32, 2, 4, True, 1.0),
    (16, 40, 2, 4, False, 1.0),
]


@pytest.mark.parametrize("c", CMR, ids=str)
def test_cross_map_forward(be, kernels, c):
    check_cross_map_forward(be, c)
    assert kernels.names() == ["kFCNorm"] * 2


CMR_UNDO = [  # (numFilters, numImages, imgSize, sizeF, blocked, scaleTargets, scaleOutput)
    (16, 128, 3, 5, False, 0, 1), (16, 100, 3, 3, True, 1, 1), (16, 64, 2, 7, False, 0.5, 2),
    (32, 40, 2, 4, True, 0, 1), (16, 128, 2, 4, False, 0, 1),
]


@pytest.mark.parametrize("u", CMR_UNDO, ids=str)
def test_cross_map_undo(be, kernels, u):
    check_cross_map_undo(be, u)
    assert kernels.names() == ["kRNormUndoPrelims", "kFRNormUndo"]


TICAS = [(16, 128, 4, 3, 0, 1), (16, 100, 4, 5, 0.5, 2)]


@pytest.mark.parametrize("t", TICAS, ids=str)
def test_tica(be, kernels, t):
    nf, n, img, size, st, so = t
    shape = (nf * img * img, n)
    images = R(shape, 20)
    compare(be, "convTICA", (images, R(shape, 21), nf, size, st, so), [1], FAST_MATH)
    ticas = np.empty(shape, np.float32)
    NP.convTICA(images, ticas, nf, size, 0, 1)
    compare(be, "convTICAGrad", (images, np.abs(ticas), R(shape, 22), nf, size, st, so), [2], FAST_MATH)
    assert kernels.names() == ["kTICA_manyfilter", "kTICAGrad_manyfilter"]


# ==========================================================================================
# image transforms
# ==========================================================================================
BLURS = [  # (radius, numChannels, numImages, imgSize, symmetric filter, scaleTargets, scaleOutput)
    (1, 3, 64, 6, True, 0, 1), (2, 1, 40, 7, False, 1, 1), (3, 2, 32, 8, True, 0.5, 2), (4, 1, 33, 9, False, 0, 1),
]


@pytest.mark.parametrize("b", BLURS, ids=str)
@pytest.mark.parametrize("horiz", [True, False])
def test_convGaussianBlur(be, kernels, b, horiz):
    check_convGaussianBlur(be, b, horiz)
    assert kernels.all() == [(conv_util.FILE, "kGaussianBlur", (4, 32, b[0]))]


def test_convGaussianBlur_in_place(be):
    images, f = R((3 * 49, 40), 26), gaussian(2)
    ref = images.copy()
    NP.convGaussianBlur(ref, f, ref, True, 3, 0.0, 1.0)
    NP.convGaussianBlur(ref, f, ref, False, 3, 0.0, 1.0)
    d = be.array(images)
    be.convGaussianBlur(d, be.array(f), d, True, 3, 0.0, 1.0)
    be.convGaussianBlur(d, be.array(f), d, False, 3, 0.0, 1.0)
    assert_close(be.to_host(d), ref, EXACT, "in place")


NAILS = [  # (numChannels, numImages, imgSize, startX, strideX, scaleTargets, scaleOutput)
    (3, 128, 7, 0, 2, 0, 1), (8, 64, 8, 0, 3, 1, 1), (8, 33, 7, 2, 4, 0.5, 2), (4, 100, 6, 1, 2, 0, 1),
]


@pytest.mark.parametrize("b", NAILS, ids=str)
def test_bed_of_nails(be, kernels, b):
    check_bed_of_nails(be, b)
    assert [k for k in kernels.names() if k == "kBedOfNails"] == ["kBedOfNails"] * 2


RESIZES = [(3, 128, 8, 6), (1, 100, 5, 8), (2, 64, 6, 6), (1, 33, 7, 4)]


@pytest.mark.parametrize("r", RESIZES, ids=str)
def test_convResizeBilinear(be, kernels, r):
    check_convResizeBilinear(be, r)
    assert kernels.names() == ["kResizeBilinear"]


COLOUR_N = [128, 64, 100, 32]


@pytest.mark.parametrize("n", COLOUR_N)
def test_colour(be, kernels, n):
    x = np.random.default_rng(33).random((3 * 9, n)).astype(np.float32)
    x[:, 0] = 0.001  # below the L*a*b* curve's knee
    compare(be, "convRGBToYUV", (x, R(x.shape, 34)), [1], EXACT)
    for center in (False, True):
        compare(be, "convRGBToLAB", (x, R(x.shape, 35), center), [1], FAST_MATH)
    assert kernels.names() == ["kRGBToYUV", "kRGBToLAB", "kRGBToLAB"]


CROPS = [(3, 128, 6, 4, 1, 2), (1, 100, 5, 5, 0, 0), (2, 64, 6, 3, 3, 0), (1, 32, 4, 3, 0, 1)]


@pytest.mark.parametrize("c", CROPS, ids=str)
def test_convCrop(be, kernels, c):
    check_convCrop(be, c)
    assert kernels.names() == ["kCrop"]


REFLECTS = [(3, 128, 4, 0, 1), (2, 100, 5, 1, 1), (1, 64, 3, 0.5, 2), (1, 32, 1, 0, 1)]


@pytest.mark.parametrize("c", REFLECTS, ids=str)
def test_convReflectHorizontal(be, kernels, c):
    check_convReflectHorizontal(be, c)
    assert kernels.names() == ["kReflectH"] * 2


# ==========================================================================================
# layer_kernels
# ==========================================================================================
COST_SIZES = [(10, 128), (37, 100)]


@pytest.mark.parametrize("numOut,n", COST_SIZES)
def test_costs(be, kernels, numOut, n):
    p, labels = probs_with_ties(numOut, n, 41)
    z = lambda: R((1, n), 42)  # noqa: E731
    compare(be, "computeLogregCost", (labels, p, z(), z()), [2, 3], FAST_MATH)
    for setSize in (1, 3, 5):
        for useE in (False, True):
            energies = np.log(p) if useE else p
            compare(be, "computeMultiSoftmaxCost", (labels, p, energies.astype(np.float32), z(), z(), z(), setSize,
                                                    useE), [3, 4, 5], FAST_MATH)
    dist = np.random.default_rng(43).random((numOut, n)).astype(np.float32)
    dist[dist < 0.5] = 0
    dist[:, 3] = 0  # no label mass at all
    p2 = p.copy()
    p2[0, 5] = 0  # safelog's zero probability
    compare(be, "computeCrossEntCost", (dist, p2, z(), z()), [2, 3], FAST_MATH)
    got = {k for k in kernels.names() if k != "kDumbAggCols"}
    assert got == {"kLogregCost", "kMultiSoftmaxCost", "kMultiSoftmaxCost_engs", "kCrossEntCost"}


@pytest.mark.parametrize("numOut,n", COST_SIZES)
@pytest.mark.parametrize("add", [False, True])
def test_gradients(be, kernels, numOut, n, add):
    check_gradients(be, numOut, n, add)
    assert {targs for _, _, targs in kernels.all()} == ({(add,), (128, add)})
    assert set(kernels.names()) == {"kLogregCostGrad", "kLogregSoftmaxGrad", "kSoftmaxGrad", "kCrossEntGrad",
                                    "kCrossEntSoftmaxGrad", "kEltwiseMaxGrad"}


@pytest.mark.parametrize("add", [False, True])
def test_elementwise_costs(be, add):
    check_elementwise_costs(be, add)


# ==========================================================================================
# nvmatrix
# ==========================================================================================
def test_memory_and_views(be):
    x = R((7, 5), 51)
    d = be.array(x)
    assert d.shape == (7, 5) and np.array_equal(be.to_host(d), x)
    assert np.array_equal(be.to_host(be.zeros(3, 4)), np.zeros((3, 4), np.float32))
    v = be.reshape(d, 5, 7)
    be.scale(v, 2.0, v)
    assert np.array_equal(be.to_host(d), 2 * x)
    e = be.array(x)
    be.copy(be.array(np.ones((2, 5), np.float32)), e[2:4])
    want = x.copy()
    want[2:4] = 1
    assert np.array_equal(be.to_host(e), want)
    be.add(e[0:3], e[4:7], 1.0, 2.0)  # row slices as operands and targets
    want[0:3] += 2 * want[4:7]
    assert_close(be.to_host(e), want, EXACT, "add on row slices")
    assert np.array_equal(be.to_host(be.slice_cols(d, 1, 4)), 2 * x[:, 1:4])


@pytest.mark.parametrize("st,sb", [(0, 1), (1, 1), (1, -2), (0.5, 3)])
def test_add_scale(be, kernels, st, sb):
    check_add_scale(be, st, sb)
    assert set(kernels.names()) <= {"kEltwiseUnaryOp", "kEltwiseBinaryOp"}


def test_eltwise_grid_stride(be, monkeypatch):
    """The element-wise kernels stride over a matrix larger than their grid (2012 capped the
    grid at NUM_BLOCKS_MAX blocks each way; a smaller cap here makes that happen)."""
    monkeypatch.setattr(nvmatrix, "NUM_BLOCKS_MAX", 2)
    a, b, c = R((37, 150), 90), R((37, 150), 91), R((37, 150), 92)
    compare(be, "add", (a, b, 0.5, 2.0), [0], EXACT)
    host, back = pair(be, "neuronInputGrad", "relu", a, b, np.maximum(b, 0), c, True)
    assert_close(back[4], host[4], EXACT, "ternary")
    compare(be, "addVector", (a, R((37, 1), 93), 0.5), [0], EXACT)
    compare(be, "addVector", (a, R((1, 150), 94), 0.5), [0], EXACT)


@pytest.mark.parametrize("transA,transB", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("st,sab", [(0, 1), (1, 0.5)])
def test_addProduct_kSgemm(be, kernels, monkeypatch, transA, transB, st, sab):
    from cudaconvnet.backends.cuda import cublas
    monkeypatch.setattr(cublas, "available", lambda: False)
    m, k, n = 19, 37, 21
    a = R((k, m) if transA else (m, k), 56)
    b = R((n, k) if transB else (k, n), 57)
    t0 = R((m, n), 58)
    d = be.array(t0 if st else np.full((m, n), np.nan, np.float32))
    be.addProduct(d, be.array(a), be.array(b), st, sab, transA, transB)
    a64, b64 = (a.T if transA else a).astype(np.float64), (b.T if transB else b).astype(np.float64)
    want = st * t0 + sab * (a64 @ b64)
    bound = 2e-6 * (abs(sab) * (np.abs(a64) @ np.abs(b64)) + abs(st) * np.abs(t0)) + 1e-7
    assert np.all(np.abs(be.to_host(d) - want) <= bound)
    assert kernels.all() == [(nvmatrix.FILE, "kSgemm", (transA, transB))]


@pytest.mark.parametrize("rows,cols", [(10, 70), (1, 7), (9, 1), (5, 5)])
def test_addVector_and_byVector(be, kernels, rows, cols):
    check_addVector_and_byVector(be, rows, cols)
    assert set(kernels.names()) == {"kRowVectorOp", "kColVectorOp"}


# (rows, cols) -> the kernel select_aggregate picks for one value per row
# (the many-row branches take seconds each: LOOPS_X 1 and > 1, a THREADS_X that is not a
# power of 2 with a last band of rows that is not full, and kAggShortRows2 by default)
AGG_SHAPES = [((7, 1), "kEltwiseBinaryOp"), ((10, 600), "kAggRows_wholerow_nosync"),
              ((3, 1100), "kAggRows_wholerow_nosync"), ((3, 50), "kAggRows"), ((10, 100), "kAggRows"),
              ((5, 200), "kAggRows"), ((4, 400), "kAggRows"), ((6, 64), "kAggRows"),
              ((16384, 3), "kAggShortRows"), ((16390, 12), "kAggShortRows"), ((16384, 30), "kAggShortRows"),
              ((16400, 100), "kAggShortRows2")]
AGG_SHAPES_SLOW = [((16384, 8), "kAggShortRows"), ((16384, 16), "kAggShortRows"), ((16384, 48), "kAggShortRows"),
                   ((16384, 64), "kAggShortRows")]
if EMULATE_ALL:
    AGG_SHAPES += AGG_SHAPES_SLOW


@pytest.mark.parametrize("kernel, cap, width", [("kAggRows_wholerow_nosync", "AWR_MAX_ROW_BLOCKS", 600),
                                               ("kAggRows", "NUM_BLOCKS_MAX", 100)])
def test_row_sum_blocks_take_several_rows(be, kernels, monkeypatch, kernel, cap, width):
    """The row kernels' blocks go on to another row when the rows outnumber them. 2012 capped
    their grids at 1024 and 65535 blocks (kAggRows never meets the second: from 16384 rows
    on the host picks kAggShortRows); capped at 2 here so that 5 rows are enough."""
    from cudaconvnet.backends.cuda import nvmatrix as nvm
    monkeypatch.setattr(nvm, cap, 2)
    m = R((5, width), 66)
    d = be.array(np.full((5, 1), np.nan, np.float32))
    be.addSum(d, be.array(m), 1, 0, 1)
    np.testing.assert_allclose(be.to_host(d), m.astype(np.float64).sum(axis=1, keepdims=True), rtol=1e-5)
    assert kernels.names() == [kernel]


@pytest.mark.parametrize("shape,kernel", AGG_SHAPES, ids=str)
def test_addSum(be, kernels, shape, kernel):
    h, w = shape
    m = R((h, w), 64)
    for axis, (st, ss) in ((1, (0, 1)), (1, (1, 0.5)), (1, (0, 2)), (0, (1, 0.5))):
        if (axis == 0 or (st, ss) == (0, 1)) and h > 1000:
            continue
        tshape = (1, w) if axis == 0 else (h, 1)
        t0 = R(tshape, 65)
        d = be.array(t0 if st else np.full(tshape, np.nan, np.float32))
        be.addSum(d, be.array(m), axis, st, ss)
        want = st * t0.astype(np.float64) + ss * m.sum(axis=axis, keepdims=True, dtype=np.float64)
        bound = 2e-6 * (abs(ss) * np.abs(m).sum(axis=axis, keepdims=True) + abs(st) * np.abs(t0)) + 1e-7
        assert np.all(np.abs(be.to_host(d) - want) <= bound), (axis, st, ss)
    assert kernel in kernels.names()


@pytest.mark.parametrize("shape", [(10, 600), (3, 50), (9, 1), (700, 3)], ids=str)
def test_max_cols_and_rows(be, shape):
    """NVMatrixAggs_Max through the column kernel (softmax's max) and the row kernels."""
    m = R(shape, 95) - 3.0
    mx = be.to_host(nvmatrix.max_cols(be.array(m)))
    assert np.array_equal(mx, m.max(axis=0, keepdims=True))
    t = be.empty(shape[0], 1)
    nvmatrix.aggregate(be.array(m), 1, t, "NVMatrixAggs_Max", "NVMatrixBinaryOps_Second")
    assert np.array_equal(be.to_host(t), m.max(axis=1, keepdims=True))


@pytest.mark.parametrize("shape", [(3, 5), (64, 100), (70, 1000)], ids=str)
def test_sum_and_isfinite(be, kernels, shape):
    m = R(shape, 66)
    d = be.array(m)
    assert abs(be.sum(d) - m.sum(dtype=np.float64)) <= 2e-6 * np.abs(m).sum(dtype=np.float64)
    assert abs(be.sum_abs_mean(d) - np.abs(m).mean(dtype=np.float64)) <= 2e-6 * np.abs(m).mean()
    assert be.isfinite(d)
    for bad in (np.nan, np.inf, -np.inf):
        m2 = m.copy()
        m2.flat[m2.size // 2] = bad
        assert not be.isfinite(be.array(m2))
    passes = len(nvmatrix.select_total_agg(m.size, "NVMatrixAggs_Sum"))
    assert ("kTotalAgg" in kernels.names()) == (passes > 0)


def test_eltwise(be):
    check_eltwise(be)


@pytest.mark.parametrize("rows,cols", [(10, 128), (300, 20), (3, 1)])
def test_softmax(be, rows, cols):
    check_softmax(be, rows, cols)


# -- random numbers ------------------------------------------------------------------------
def test_uniform_mask_is_philox(be, kernels):
    be.seed(12345)
    m = be.to_host(be.uniform_mask((37, 64), 0.3))
    w = philox_words(12345, 0, 37 * 64)
    u = ((w[:, 0] >> 8).astype(np.float64) * 2.0 ** -24).astype(np.float32)
    assert np.array_equal(m.ravel(), (u < np.float32(0.3)).astype(np.float32))
    m2 = be.to_host(be.uniform_mask((37, 64), 0.3))  # the next call: the next counter block
    assert not np.array_equal(m, m2)
    assert kernels.all()[0] == (nvmatrix.FILE, "kUnaryRandomize", ("UniformUnaryRandomizer",))


def test_randn_is_philox_box_muller(be):
    be.seed(7)
    be.uniform_mask((1, 1), 0.5)  # call 0
    n = 96 * 128 + 300  # more elements than the 2012 grid has threads
    z = be.to_host(be.randn((1, n)))  # call 1
    w = philox_words(7, 1, n)
    u1 = ((w[:, 0] >> 8) + 1).astype(np.float64) * 2.0 ** -24
    u2 = (w[:, 1] >> 8).astype(np.float64) * 2.0 ** -24
    want = np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2)
    np.testing.assert_allclose(z.ravel(), want, rtol=1e-5, atol=1e-5)


def test_random_state_restores(be):
    be.seed(3)
    state = be.get_rng_state()
    a = (be.to_host(be.uniform_mask((8, 8), 0.5)), be.randint(100), be.rand())
    be.set_rng_state(state)
    b = (be.to_host(be.uniform_mask((8, 8), 0.5)), be.randint(100), be.rand())
    assert np.array_equal(a[0], b[0]) and a[1:] == b[1:]


def test_nrelu_noise(be, kernels):
    check_nrelu(be)
    assert "kBinaryRandomize" in kernels.names()


# -- neurons --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,a,b", NEURONS)
def test_neurons(be, kind, a, b):
    check_neurons(be, kind, a, b, 40)


# ==========================================================================================
# the golden cases of the 2012 kernels (pooling, normalisations, logreg)
# ==========================================================================================
@pytest.mark.parametrize("case", golden_cases(), ids=lambda c: c["name"])
def test_golden(be, monkeypatch, case):
    check_golden(be, monkeypatch, case)


def _planned_launches():
    """The launches the case tables above ask the selectors for (pure Python)."""
    out = []
    for pooler, nf, n, img, subsX, startX, strideX, ox in POOLS:
        out.append(conv_util.select_pool(pooler, nf, n, subsX, strideX, ox))
    for nf, n, img, subsX, startX, strideX, ox, st, so in UNDOS:
        out += [conv_util.select_max_undo(nf, n, img, st, so), conv_util.select_avg_undo(nf, n, img, st, so)]
    for (nf, n, img, size), _ in CNORMS:
        out.append(conv_util.select_cnorm(nf, n, img, size))
    for (nf, n, img, size, st, so), _ in RNORM_UNDOS:
        out += conv_util.select_rnorm_undo(nf, n, img, size, st, so)
    for nf, n, img, sizeF, blocked, _ in CMR:
        out.append(conv_util.select_cross_map_norm(nf, n, img, sizeF, blocked))
    for nf, n, img, sizeF, blocked, st, so in CMR_UNDO:
        out += conv_util.select_cross_map_undo(nf, n, img, sizeF, blocked, st, so)
    for nf, n, img, size, _, _ in TICAS:
        out += [conv_util.select_tica(grad, nf, n, img, size) for grad in (False, True)]
    for r, nc, n, img, _, _, _ in BLURS:
        out.append(conv_util.select_blur(r, nc, n, img))
    for nc, n, img, _, strideX, _, _ in NAILS:
        out.append(conv_util.select_bed_of_nails(nc, n, -(-img // strideX)))
    for nc, n, img, tgt in RESIZES:
        out.append(conv_util.select_resize(nc, n, tgt))
    for n in COLOUR_N:
        out += [conv_util.select_color("yuv", n, 9)] + [conv_util.select_color("lab", n, 9, c) for c in (0, 1)]
    for nc, n, img, tgt, _, _ in CROPS:
        out.append(conv_util.select_crop(nc, n, tgt))
    for nc, n, img, _, _ in REFLECTS:
        out.append(conv_util.select_reflect(nc, n, img))
    for numOut, n in COST_SIZES:
        out += [layer_kernels.select_cost(k, n) for k in ("kLogregCost", "kCrossEntCost")]
        out += [layer_kernels.select_multisoftmax(e, n) for e in (False, True)]
        for add in (False, True):
            out += [layer_kernels.select_grad(k, add, numOut, n) for k in layer_kernels.GRAD_KERNELS]
            out.append(layer_kernels.select_eltwise_max_grad(add, numOut * n))
    return out


def test_cases_take_every_template_argument_value():
    """Every (kernel, template argument, value) among the conv_util and layer_kernels
    instantiations is launched by some case above (each kernel with each value of each
    of its template arguments, not every combination)."""
    def features(launches):
        return {(k, i, v) for _, k, args in launches for i, v in enumerate(args)} | {k for _, k, _ in launches}
    planned = features([lc[:3] for lc in _planned_launches()])
    want = features(conv_util.INSTANTIATIONS + layer_kernels.INSTANTIATIONS)
    assert want <= planned, sorted(want - planned, key=repr)


# -- the emulation itself -----------------------------------------------------------------------------------
def one_file_emulator(tmp_path, name, text):
    """An Emulator over a source folder holding one .cu file, `name`, of `text`."""
    import cuda_emulation
    make_emulator(tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / name).write_text(text)
    return cuda_emulation.Emulator(tmp_path, src_root=tmp_path / "src")


DEADLOCK_CU = """
__global__ void kSkipBarrier(float* out, const int skipper) {
    if ((int)threadIdx.x != skipper) { __syncthreads(); }
    out[threadIdx.x] = 1.0f;
}
__global__ void kSkipWarpBarrier(float* out, const int skipper) {
    if ((int)threadIdx.x != skipper) { __syncwarp(); }
    out[threadIdx.x] = 1.0f;
}
"""


@pytest.mark.parametrize("kernel", ["kSkipBarrier", "kSkipWarpBarrier"])
def test_a_deadlocked_launch_fails(tmp_path, monkeypatch, kernel):
    """A thread that skips a barrier the others wait at (a regression such as a deleted last
    __syncthreads) fails its launch once no barrier has completed for
    CUDACONVNET_EMULATE_BARRIER_TIMEOUT seconds, instead of hanging the test run; the next
    launch runs normally."""
    import cuda_emulation
    emu = one_file_emulator(tmp_path, "deadlock.cu", DEADLOCK_CU)
    monkeypatch.setattr(cuda_emulation, "BARRIER_TIMEOUT", 0.5)
    out = np.zeros(64, np.float32)
    inst = ("deadlock.cu", kernel, ())

    def launch(skipper):
        out[:] = 0
        emu._launch(inst, (1, 1), (64, 1, 1), struct.pack("Pi", out.ctypes.data, skipper))

    launch(-1)
    assert (out == 1).all()
    with pytest.raises(AssertionError, match=r"emulated %s\[\], grid \(1, 1\), block \(64, 1, 1\): no barrier "
                                             r"completed in 0.5 s" % kernel):
        launch(5)
    launch(-1)
    assert (out == 1).all()


ORDER_CU = """
__global__ void kLastBlockWins(int* out) {
    const int block = blockIdx.y * gridDim.x + blockIdx.x;
    if (threadIdx.x == 0) {
        out[0] = block;
        out[1 + block] += 1;
    }
}
"""


@pytest.mark.parametrize("order, last", [("forward", 5), ("reverse", 0)])
def test_block_order(tmp_path, monkeypatch, order, last):
    """Every block of a grid runs once, in blockIdx order (x fastest) or, with
    CUDACONVNET_EMULATE_BLOCK_ORDER=reverse, the other way round: a kernel whose blocks
    overwrite each other's output, as this one does, then shows a different result."""
    import cuda_emulation
    emu = one_file_emulator(tmp_path, "order.cu", ORDER_CU)
    monkeypatch.setattr(cuda_emulation, "BLOCK_ORDER", order)
    out = np.zeros(7, np.int32)
    emu._launch(("order.cu", "kLastBlockWins", ()), (3, 2), (32, 1, 1), struct.pack("P", out.ctypes.data))
    assert out[0] == last and (out[1:] == 1).all()


ASYNC_CU = """
#include "cudaconv2/implicit_gemm.cu"
// thread t copies a[t] and a[64 + t] into two shared arrays asynchronously, in two groups,
// and records what its slots hold before waiting, after waiting for the first group, and
// after waiting for both
__global__ void kAsyncTiming(const float* a, float* out) {
    __shared__ __align__(16) float s[2][64];
    s[0][threadIdx.x] = s[1][threadIdx.x] = -1.0f;
    asyncCopy4(&s[0][threadIdx.x], &a[threadIdx.x]);
    asyncCommit();
    asyncCopy4(&s[1][threadIdx.x], &a[64 + threadIdx.x]);
    asyncCommit();
    for (int step = 0; step < 3; step++) {
        if (step == 1) { asyncWait<1>(); }
        if (step == 2) { asyncWait<0>(); }
        out[(step * 2) * 64 + threadIdx.x] = s[0][threadIdx.x];
        out[(step * 2 + 1) * 64 + threadIdx.x] = s[1][threadIdx.x];
    }
}
// a copy that is never waited for
__global__ void kAsyncNeverWaited(const float* a, float* out) {
    __shared__ float s[64];
    asyncCopy4(&s[threadIdx.x], &a[threadIdx.x]);
    asyncCommit();
}
// 16-byte copies to shared addresses 4 bytes past 16-byte boundaries
__global__ void kAsyncMisaligned(const float* a, float* out) {
    __shared__ __align__(16) float s[4 * 64 + 4];
    asyncCopy16(&s[4 * threadIdx.x + 1], &a[4 * threadIdx.x]);
    asyncCommit();
    asyncWait<0>();
}
"""


@pytest.mark.parametrize("mode", ["at-wait", "at-issue"])
def test_async_copies_land_at_their_wait_or_at_once(tmp_path, monkeypatch, mode):
    """implicit_gemm.cu's asynchronous copies (cp.async on the GPU) land in shared memory,
    by CUDACONVNET_EMULATE_ASYNC_COPIES, when the wait that retires their group returns (a
    kernel that reads a buffer before waiting for it reads what was there before, as it may
    on a GPU) or at once; and a copy never waited for, or not aligned to its size, fails the
    launch."""
    import cuda_emulation
    monkeypatch.setattr(cuda_emulation, "ASYNC_COPIES", mode)
    emu = one_file_emulator(tmp_path, "async.cu", ASYNC_CU)
    (tmp_path / "src" / "cudaconv2").symlink_to(loader.CUDA_SRC / "cudaconv2")
    a = np.arange(4 * 64, dtype=np.float32)
    out = np.zeros((6, 64), np.float32)

    def launch(kernel):
        emu._launch(("async.cu", kernel, ()), (1, 1), (64, 1, 1), struct.pack("PP", a.ctypes.data, out.ctypes.data))
    launch("kAsyncTiming")
    first, second, unset = a[:64], a[64:128], np.full(64, -1, np.float32)
    landed = [(first, second)] * 3 if mode == "at-issue" else [(unset, unset), (first, unset), (first, second)]
    np.testing.assert_array_equal(out, np.concatenate([x for pair in landed for x in pair]).reshape(6, 64))
    with pytest.raises(AssertionError, match=r"kAsyncNeverWaited.*: a thread's block ended with cp.async copies it "
                                             r"never waited for"):
        launch("kAsyncNeverWaited")
    with pytest.raises(AssertionError, match=r"kAsyncMisaligned.*: a cp.async whose shared or global address is "
                                             r"not aligned to its size"):
        launch("kAsyncMisaligned")
    launch("kAsyncTiming")
    assert out[5, 0] == a[64]
