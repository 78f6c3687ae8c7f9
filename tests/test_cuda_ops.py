"""The CUDA backend's conv_util, layer_kernels and nvmatrix operations against the NumPy
reference, the 2012 golden cases, and the engine on both backends. Needs a GPU and PyCUDA
(marker `cuda`; conftest.py skips these cleanly without them):

    python -m pytest -m cuda tests/test_cuda_ops.py

Every operation runs on the same random inputs on both backends; the parameter sets reach
every branch of every selector (each kernel and each value of each template argument at
least once, not every combination: each new combination costs an nvcc run on first use;
CUDACONVNET_TEST_ALL_INSTANCES=1 adds the pooling cross product).

Tolerances, as max|cuda - numpy| <= TOL * max|numpy| per output:
  EXACT     1e-6  data movement, comparisons, and arithmetic of at most a few hundred terms
                  in IEEE float32: the two sides round alike except where nvcc fuses a
                  multiply-add or sums in another order (a few ulp of the largest value);
  FAST_MATH 1e-5  anything through the 2012 intrinsics __expf, __logf, __powf, __fdividef
                  (2-4 ulp each, more for __powf of large arguments) -- the bound the golden
                  cases of the original kernels meet against a float64 reference;
  SUMS      sums over long axes (addSum, sum) are compared against float64 and allowed
            2e-6 * sum|terms| (blocked float32 sums of n terms err by about log2(n) ulp of
            the sum of magnitudes);
  ENGINE    1e-4 relative, ten training steps of the 18% CIFAR net (the brief's bound: the
            per-op differences above, compounded through ten updates).
"""
import copy
import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from cudaconvnet.backends import get_backend

pytestmark = pytest.mark.cuda

NP = get_backend("numpy")
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

EXACT = 1e-6
FAST_MATH = 1e-5
GOLDEN = 1e-5
ENGINE = 1e-4
ALL = os.environ.get("CUDACONVNET_TEST_ALL_INSTANCES", "") not in ("", "0")


@pytest.fixture(scope="module")
def be(cuda_kernels):
    return cuda_kernels


def R(shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def assert_close(got, ref, tol, what=""):
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, "%s: shape %s != %s" % (what, got.shape, ref.shape)
    assert np.array_equal(np.isnan(got), np.isnan(ref)), "%s: NaNs differ" % what
    ok = ~np.isnan(ref)
    if not ok.any():
        return
    assert np.array_equal(np.isinf(got[ok]), np.isinf(ref[ok])), "%s: infinities differ" % what
    fin = ok & np.isfinite(ref)
    scale = max(float(np.abs(ref[fin]).max()) if fin.any() else 0.0, 1e-30)
    err = float(np.abs(got[fin] - ref[fin]).max()) if fin.any() else 0.0
    assert err <= tol * scale, "%s: max|err| %.3g > %g * max|ref| %.3g" % (what, err, tol, scale)


def pair(be, name, *args):
    """Runs operation `name` on both backends with the same arguments (NumPy arrays go to
    the GPU for the CUDA side). Returns (numpy-side args after the call, cuda-side args
    copied back), so that any in-place output can be compared."""
    host = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    dev = [be.array(a) if isinstance(a, np.ndarray) else a for a in args]
    getattr(NP, name)(*host)
    getattr(be, name)(*dev)
    back = [be.to_host(d) if hasattr(d, "gpudata") else d for d in dev]
    return host, back


def compare(be, name, args, outs, tol):
    host, back = pair(be, name, *args)
    for i in outs:
        assert_close(back[i], host[i], tol, "%s arg %d" % (name, i))


# ==========================================================================================
# pooling
# ==========================================================================================
POOLS = [  # (pooler, numFilters, numImages, imgSize, subsX, startX, strideX, outputsX)
    # kLocalPool2 (stride 1, window >= 6): imgsPerThread 8/4, filtersPerThread 4/3/2/1, checks
    ("max", 16, 128, 12, 6, -3, 1, 12), ("avg", 3, 100, 10, 7, -3, 1, 10), ("maxabs", 2, 64, 9, 6, 0, 1, 4),
    ("avg", 1, 130, 8, 6, -2, 1, 8), ("max", 5, 256, 8, 8, 0, 1, 1),
    # kLocalPool: filtersPerThread 2/1, imgsPerThread 4/2/1, checks
    ("max", 32, 128, 14, 3, 0, 2, 7), ("avg", 20, 64, 13, 3, 0, 2, 6), ("maxabs", 16, 100, 11, 5, 0, 1, 7),
    ("avg", 3, 32, 8, 3, -1, 2, 4), ("max", 64, 96, 6, 2, 1, 2, 3),
]
if ALL:
    POOLS += [(p, nf, n, 9, s, -1, st, 9 if st == 1 else 4) for p in ("max", "avg", "maxabs")
              for nf in (16, 3, 2, 1) for n in (128, 64, 100) for s, st in ((6, 1), (3, 2))]


@pytest.mark.parametrize("p", POOLS, ids=str)
def test_convLocalPool(be, p):
    pooler, nf, n, img, subsX, startX, strideX, outputsX = p
    images = R((nf * img * img, n), 1)
    compare(be, "convLocalPool", (images, R((nf * outputsX ** 2, n), 2), nf, subsX, startX, strideX, outputsX,
                                  pooler), [1], EXACT)


UNDOS = [  # (numFilters, numImages, imgSize, subsX, startX, strideX, outputsX, scaleTargets, scaleOutput)
    (32, 128, 14, 3, 0, 2, 7, 0, 1), (16, 64, 13, 3, 0, 2, 6, 1, 1), (16, 100, 8, 2, 0, 2, 4, 0.5, 2),
    (48, 32, 6, 3, 0, 1, 4, 0, 1), (16, 64, 8, 3, -1, 2, 4, 0, 2),
]


@pytest.mark.parametrize("u", UNDOS, ids=str)
def test_convLocalMaxUndo(be, u):
    nf, n, img, subsX, startX, strideX, ox, st, so = u
    images = np.round(R((nf * img * img, n), 3) * 2) / 2  # ties inside windows
    maxActs = np.empty((nf * ox * ox, n), np.float32)
    NP.convLocalPool(images, maxActs, nf, subsX, startX, strideX, ox, "max")
    compare(be, "convLocalMaxUndo", (images, R(maxActs.shape, 4), maxActs, R(images.shape, 5), subsX, startX,
                                     strideX, ox, st, so), [3], EXACT)


@pytest.mark.parametrize("u", UNDOS, ids=str)
def test_convLocalAvgUndo(be, u):
    nf, n, img, subsX, startX, strideX, ox, st, so = u
    compare(be, "convLocalAvgUndo", (R((nf * ox * ox, n), 6), R((nf * img * img, n), 7), subsX, startX, strideX,
                                     ox, img, st, so), [1], EXACT)


# ==========================================================================================
# normalisation within a map
# ==========================================================================================
CNORMS = [  # (numFilters, numImages, imgSize, size): manyfilter, fewfilter, kCNorm2
    (32, 128, 8, 5), (16, 100, 6, 3), (3, 128, 7, 5), (8, 64, 5, 3), (1, 33, 4, 3),
    (16, 128, 9, 6), (8, 100, 10, 7), (4, 64, 6, 9),
]


@pytest.mark.parametrize("c", CNORMS, ids=str)
@pytest.mark.parametrize("kind", ["response", "contrast"])
def test_norm_forward(be, c, kind):
    nf, n, img, size = c
    shape = (nf * img * img, n)
    images = R(shape, 8, 5.0)
    if kind == "response":
        args = (images, R(shape, 9), R(shape, 10), nf, size, 0.01, 0.75)
        compare(be, "convResponseNorm", args, [1, 2], FAST_MATH)
    else:
        args = (images, R(shape, 11, 3.0), R(shape, 9), R(shape, 10), nf, size, 0.01, 0.75)
        compare(be, "convContrastNorm", args, [2, 3], FAST_MATH)


RNORM_UNDOS = [  # (numFilters, numImages, imgSize, size, scaleTargets, scaleOutput)
    (32, 128, 8, 5, 0, 1), (16, 50, 5, 3, 1, 1), (16, 64, 4, 3, 0.5, 2),                   # kRNormUndo
    (16, 128, 9, 6, 0, 1), (16, 64, 8, 7, 1, 1), (32, 32, 6, 6, 0, 1), (16, 100, 6, 8, 0.5, 1),  # kRNormUndo2
]


@pytest.mark.parametrize("u", RNORM_UNDOS, ids=str)
@pytest.mark.parametrize("kind", ["response", "contrast"])
def test_norm_undo(be, u, kind):
    nf, n, img, size, st, so = u
    shape = (nf * img * img, n)
    inputs = R(shape, 12, 5.0)
    denoms, acts = np.empty(shape, np.float32), np.empty(shape, np.float32)
    NP.convResponseNorm(inputs, denoms, acts, nf, size, 0.01, 0.75)
    name = "convResponseNormUndo" if kind == "response" else "convContrastNormUndo"
    # outputs: target (4) and the overwritten acts (3)
    compare(be, name, (R(shape, 13), denoms, inputs, acts, R(shape, 14), nf, size, 0.01, 0.75, st, so), [3, 4],
            FAST_MATH)


# ==========================================================================================
# normalisation across maps
# ==========================================================================================
CMR = [  # (numFilters, numImages, imgSize, sizeF, blocked, minDiv)
    (32, 128, 5, 5, False, 1.0), (16, 100, 4, 3, True, 2.0), (32, 64, 3, 32, False, 2.0), (16, 64, 3, 16, True, 1.0),
    (16, 200, 3, 4, False, 1.0),
]


@pytest.mark.parametrize("c", CMR, ids=str)
def test_cross_map_forward(be, c):
    nf, n, img, sizeF, blocked, minDiv = c
    shape = (nf * img * img, n)
    images = R(shape, 15, 5.0)
    compare(be, "convResponseNormCrossMap", (images, R(shape, 1), R(shape, 2), nf, sizeF, 0.002, 0.75, blocked,
                                             minDiv), [1, 2], FAST_MATH)
    compare(be, "convContrastNormCrossMap", (images, R(shape, 16, 3.0), R(shape, 1), R(shape, 2), nf, sizeF,
                                             0.002, 0.75, blocked, minDiv), [2, 3], FAST_MATH)


CMR_UNDO = [  # (numFilters, numImages, imgSize, sizeF, blocked, scaleTargets, scaleOutput)
    (32, 128, 5, 5, False, 0, 1), (16, 100, 4, 3, True, 1, 1), (32, 64, 3, 7, False, 0.5, 2), (16, 200, 3, 4, True, 0, 1),
]


@pytest.mark.parametrize("u", CMR_UNDO, ids=str)
def test_cross_map_undo(be, u):
    nf, n, img, sizeF, blocked, st, so = u
    shape = (nf * img * img, n)
    inputs = R(shape, 17, 5.0)
    denoms, acts = np.empty(shape, np.float32), np.empty(shape, np.float32)
    NP.convResponseNormCrossMap(inputs, denoms, acts, nf, sizeF, 0.002, 0.75, blocked, minDiv=2.0)
    compare(be, "convResponseNormCrossMapUndo", (R(shape, 18), denoms, inputs, acts, R(shape, 19), nf, sizeF,
                                                 0.002, 0.75, blocked, st, so), [3, 4], FAST_MATH)


@pytest.mark.parametrize("t", [(16, 128, 6, 3, 0, 1), (32, 100, 5, 5, 0.5, 2)], ids=str)
def test_tica(be, t):
    nf, n, img, size, st, so = t
    shape = (nf * img * img, n)
    images = R(shape, 20)
    compare(be, "convTICA", (images, R(shape, 21), nf, size, st, so), [1], FAST_MATH)
    ticas = np.empty(shape, np.float32)
    NP.convTICA(images, ticas, nf, size, 0, 1)
    compare(be, "convTICAGrad", (images, ticas, R(shape, 22), nf, size, st, so), [2], FAST_MATH)


# ==========================================================================================
# image transforms
# ==========================================================================================
def gaussian(radius, stdev=1.0):
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-x ** 2 / (2 * stdev ** 2))
    return (g / g.sum()).astype(np.float32).reshape(1, -1)


BLURS = [  # (radius, numChannels, numImages, imgSize, symmetric filter, scaleTargets, scaleOutput)
    (1, 3, 128, 12, True, 0, 1), (2, 1, 100, 9, False, 1, 1), (3, 2, 64, 16, True, 0.5, 2), (4, 4, 33, 10, False, 0, 1),
]


@pytest.mark.parametrize("b", BLURS, ids=str)
@pytest.mark.parametrize("horiz", [True, False])
def test_convGaussianBlur(be, b, horiz):
    r, nc, n, img, sym, st, so = b
    f = gaussian(r) if sym else np.abs(R((1, 2 * r + 1), 23))  # the 2012 quirk shows for asymmetric filters
    images = R((nc * img * img, n), 24)
    compare(be, "convGaussianBlur", (images, f, R(images.shape, 25), horiz, nc, st, so), [2], EXACT)


def test_convGaussianBlur_in_place(be):
    images, f = R((3 * 81, 64), 26), gaussian(2)
    ref = images.copy()
    NP.convGaussianBlur(ref, f, ref, True, 3, 0.0, 1.0)
    d = be.array(images)
    be.convGaussianBlur(d, be.array(f), d, True, 3, 0.0, 1.0)
    assert_close(be.to_host(d), ref, EXACT, "in place")


NAILS = [(3, 128, 9, 0, 2, 0, 1), (16, 64, 10, 0, 3, 1, 1), (8, 33, 7, 2, 4, 0.5, 2), (4, 100, 8, 1, 2, 0, 1)]


@pytest.mark.parametrize("b", NAILS, ids=str)
def test_bed_of_nails(be, b):
    nc, n, img, startX, strideX, st, so = b
    ox = -(-img // strideX)
    compare(be, "convBedOfNails", (R((nc * img * img, n), 27), R((nc * ox * ox, n), 28), nc, img, startX, strideX,
                                   st, so), [1], EXACT)
    compare(be, "convBedOfNailsUndo", (R((nc * ox * ox, n), 29), R((nc * img * img, n), 30), nc, img, startX,
                                       strideX, st, so), [1], EXACT)


@pytest.mark.parametrize("r", [(3, 128, 32, 24), (1, 100, 16, 24), (2, 64, 10, 10), (3, 33, 20, 7)], ids=str)
def test_convResizeBilinear(be, r):
    nc, n, img, tgt = r
    compare(be, "convResizeBilinear", (R((nc * img * img, n), 31), R((nc * tgt * tgt, n), 32), img, tgt, img / tgt),
            [1], EXACT)


@pytest.mark.parametrize("n", [128, 64, 100])
def test_colour(be, n):
    x = np.random.default_rng(33).random((3 * 49, n)).astype(np.float32)
    compare(be, "convRGBToYUV", (x, R(x.shape, 34)), [1], EXACT)
    for center in (False, True):
        compare(be, "convRGBToLAB", (x, R(x.shape, 35), center), [1], FAST_MATH)


@pytest.mark.parametrize("c", [(3, 128, 12, 8, 2, 3), (1, 100, 10, 10, 0, 0), (2, 64, 9, 5, 4, 0)], ids=str)
def test_convCrop(be, c):
    nc, n, img, tgt, y, x = c
    compare(be, "convCrop", (R((nc * img * img, n), 36), R((nc * tgt * tgt, n), 37), img, tgt, y, x), [1], 0.0)


@pytest.mark.parametrize("c", [(3, 128, 6, 0, 1), (2, 100, 7, 1, 1), (1, 64, 5, 0.5, 2)], ids=str)
def test_convReflectHorizontal(be, c):
    nc, n, img, st, so = c
    compare(be, "convReflectHorizontal", (R((nc * img * img, n), 38), R((nc * img * img, n), 39), img, st, so), [1],
            EXACT)
    x = R((nc * img * img, n), 40)
    ref = x.copy()
    NP.convReflectHorizontal(ref, ref, img)
    d = be.array(x)
    be.convReflectHorizontal(d, d, img)
    assert_close(be.to_host(d), ref, 0.0, "in place")


# ==========================================================================================
# layer_kernels
# ==========================================================================================
def probs_with_ties(numOut, n, seed):
    rng = np.random.default_rng(seed)
    e = 3 * rng.standard_normal((numOut, n))
    p = np.exp(e - e.max(0))
    p = (p / p.sum(0)).astype(np.float32)
    for j in range(0, n, 7):  # a tie for the maximum in every 7th case
        top = int(p[:, j].argmax())
        p[(top + 1) % numOut, j] = p[top, j]
    labels = rng.integers(0, numOut, (1, n)).astype(np.float32)
    labels[0, ::7] = p[:, ::7].argmax(0)  # some labels on the tie
    return p, labels


@pytest.mark.parametrize("numOut,n", [(10, 128), (37, 100), (1000, 64)])
def test_costs(be, numOut, n):
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
    compare(be, "computeCrossEntCost", (dist, p, z(), z()), [2, 3], FAST_MATH)


@pytest.mark.parametrize("numOut,n", [(10, 128), (37, 100)])
@pytest.mark.parametrize("add", [False, True])
def test_gradients(be, numOut, n, add):
    p, labels = probs_with_ties(numOut, n, 44)
    t = lambda: R((numOut, n), 45)  # noqa: E731
    compare(be, "computeLogregGrad", (labels, p, t(), add, 0.7), [2], FAST_MATH)
    compare(be, "computeLogregSoftmaxGrad", (labels, p, t(), add, 0.7), [2], EXACT)
    # 2012's kernels loop sum_j g_j ((j == i) - y_j); the reference uses the closed form
    # g_i - sum_j g_j y_j: equal, rounded differently (hence FAST_MATH's bound)
    compare(be, "computeSoftmaxGrad", (p, R((numOut, n), 46), t(), add), [2], FAST_MATH)
    dist = np.random.default_rng(47).random((numOut, n)).astype(np.float32)
    compare(be, "computeCrossEntGrad", (dist, p, t(), add, 0.7), [2], FAST_MATH)
    compare(be, "computeCrossEntSoftmaxGrad", (dist, p, t(), add, 0.7), [2], FAST_MATH)
    a, b = np.round(R((numOut, n), 48)), np.round(R((numOut, n), 49))
    out = np.maximum(a, b)
    compare(be, "computeEltwiseMaxGrad", (R((numOut, n), 50), a, out, t(), add), [3], EXACT)


@pytest.mark.parametrize("add", [False, True])
def test_elementwise_costs(be, add):
    """CHM's cost.crossent2 and cost.rflickr: layer.cuh functors through kEltwiseBinaryOp /
    kEltwiseTernaryOp."""
    rng = np.random.default_rng(79)
    y = rng.uniform(0.01, 0.99, (10, 100)).astype(np.float32)
    t = (rng.random((10, 100)) < 0.3).astype(np.float32)
    compare(be, "computeCrossEnt2Cost", (t, y, R(y.shape, 80)), [2], FAST_MATH)
    compare(be, "computeRobustFlickrCost", (t, y, R(y.shape, 81)), [2], FAST_MATH)
    compare(be, "computeCrossEnt2Grad", (t, y, R(y.shape, 82), add, 0.7), [2], FAST_MATH)
    compare(be, "computeRobustFlickrGrad", (t, y, R(y.shape, 83), add, 0.7), [2], FAST_MATH)


# ==========================================================================================
# nvmatrix
# ==========================================================================================
def test_memory(be):
    x = R((7, 5), 51)
    d = be.array(x)
    assert d.shape == (7, 5) and np.array_equal(be.to_host(d), x)
    assert np.array_equal(be.to_host(be.zeros(3, 4)), np.zeros((3, 4), np.float32))
    assert be.empty(3, 4).shape == (3, 4)
    ia = be.int_array([3, 1, 2])
    assert np.array_equal(ia.get() if hasattr(ia, "get") else ia, np.array([3, 1, 2], np.int32))
    # reshape is a view: writing through it changes the original
    v = be.reshape(d, 5, 7)
    be.scale(v, 2.0, v)
    assert np.array_equal(be.to_host(d), 2 * x)
    # row slices are views, usable as operands and targets
    e = be.array(x)
    be.copy(be.array(np.ones((2, 5), np.float32)), e[2:4])
    want = x.copy()
    want[2:4] = 1
    assert np.array_equal(be.to_host(e), want)
    be.add(e[0:3], e[4:7], 1.0, 2.0)
    want[0:3] += 2 * want[4:7]
    assert_close(be.to_host(e), want, EXACT, "add on row slices")
    # column slices are copies
    s = be.slice_cols(d, 1, 4)
    assert np.array_equal(be.to_host(s), 2 * x[:, 1:4])
    c = be.empty(7, 5)
    be.copy(d, c)
    assert np.array_equal(be.to_host(c), be.to_host(d))


@pytest.mark.parametrize("st,sb", [(0, 1), (1, 1), (1, -2), (0.5, 3), (0, -0.25)])
def test_add_scale(be, st, sb):
    compare(be, "add", (R((33, 70), 52), R((33, 70), 53), st, sb), [0], EXACT)
    compare(be, "scale", (R((33, 70), 54), -1.5, R((33, 70), 55)), [2], EXACT)


@pytest.mark.parametrize("use_cublas", [True, False], ids=["cublas", "kSgemm"])
@pytest.mark.parametrize("transA,transB", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("st,sab", [(0, 1), (1, 0.5)])
def test_addProduct(be, monkeypatch, use_cublas, transA, transB, st, sab):
    from cudaconvnet.backends.cuda import cublas
    if use_cublas and not cublas.available():
        pytest.skip("no libcublas here: %s" % cublas.why_not())
    if not use_cublas:
        monkeypatch.setattr(cublas, "available", lambda: False)
    m, k, n = 37, 300, 128
    a = R((k, m) if transA else (m, k), 56)
    b = R((n, k) if transB else (k, n), 57)
    # float32 products of 300 terms, against float64: bound the error by the sum of |terms|
    t0 = R((m, n), 58)
    d = be.array(t0)
    be.addProduct(d, be.array(a), be.array(b), st, sab, transA, transB)
    a64, b64 = (a.T if transA else a).astype(np.float64), (b.T if transB else b).astype(np.float64)
    want = st * t0 + sab * (a64 @ b64)
    bound = 2e-6 * (abs(sab) * (np.abs(a64) @ np.abs(b64)) + abs(st) * np.abs(t0)) + 1e-7
    assert np.all(np.abs(be.to_host(d) - want) <= bound)


@pytest.mark.parametrize("rows,cols", [(10, 128), (1, 7), (64, 1), (5, 5)])
def test_addVector_and_byVector(be, rows, cols):
    for vshape in ((rows, 1), (1, cols)):
        compare(be, "addVector", (R((rows, cols), 59), R(vshape, 60), 0.5), [0], EXACT)
        compare(be, "eltwiseMultByVector", (R((rows, cols), 61), R(vshape, 62), R((rows, cols), 63)), [2], EXACT)


# shapes reaching every branch of select_aggregate (axis 1), and column sums (axis 0)
AGG_SHAPES = [(7, 1), (20000, 3), (20000, 8), (20000, 10), (20000, 16), (20000, 30), (16384, 48), (20000, 64),
              (20000, 100), (10, 600), (3, 50), (10, 100), (10, 200), (16383, 400), (32, 131072)]


@pytest.mark.parametrize("h,w", AGG_SHAPES, ids=str)
@pytest.mark.parametrize("st,ss", [(0, 1), (1, 0.5), (0, 2)])
def test_addSum(be, h, w, st, ss):
    m = R((h, w), 64)
    for axis in (0, 1):
        if axis == 0 and h * w > 2_000_000:
            continue
        shape = (1, w) if axis == 0 else (h, 1)
        t0 = R(shape, 65)
        d = be.array(t0)
        be.addSum(d, be.array(m), axis, st, ss)
        want = st * t0.astype(np.float64) + ss * m.sum(axis=axis, keepdims=True, dtype=np.float64)
        bound = 2e-6 * (abs(ss) * np.abs(m).sum(axis=axis, keepdims=True) + abs(st) * np.abs(t0)) + 1e-7
        assert np.all(np.abs(be.to_host(d) - want) <= bound), (axis, h, w)


@pytest.mark.parametrize("shape", [(3, 5), (64, 4096), (1000, 1000), (7, 100003)])
def test_sum_and_isfinite(be, shape):
    m = R(shape, 66)
    d = be.array(m)
    assert abs(be.sum(d) - m.sum(dtype=np.float64)) <= 2e-6 * np.abs(m).sum(dtype=np.float64)
    assert abs(be.sum_abs_mean(d) - np.abs(m).mean(dtype=np.float64)) <= 2e-6 * np.abs(m).mean()
    assert be.isfinite(d)
    for bad in (np.nan, np.inf, -np.inf):
        m2 = m.copy()
        m2.flat[m2.size // 2] = bad
        assert not be.isfinite(be.array(m2))


def test_eltwise(be):
    a, b = R((40, 130), 67), R((40, 130), 68)
    compare(be, "eltwiseMult", (a, b, R(a.shape, 69)), [2], EXACT)
    compare(be, "maximum", (a, b, R(a.shape, 70)), [2], 0.0)
    compare(be, "square", (a, R(a.shape, 71)), [1], EXACT)


@pytest.mark.parametrize("rows,cols", [(10, 128), (1000, 64), (3, 1)])
def test_softmax(be, rows, cols):
    compare(be, "softmax", (R((rows, cols), 72, 4.0), R((rows, cols), 73)), [1], FAST_MATH)


# -- random numbers ------------------------------------------------------------------------
def philox_words(seed, call, n):
    from test_cuda_util_selectors import philox4x32_10
    key = (seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF)
    return np.array([philox4x32_10((i, 0, call & 0xFFFFFFFF, call >> 32), key) for i in range(n)], dtype=np.uint64)


def test_uniform_mask_is_philox(be):
    be.seed(12345)
    m = be.to_host(be.uniform_mask((37, 64), 0.3))
    w = philox_words(12345, 0, 37 * 64)
    u = ((w[:, 0] >> 8).astype(np.float64) * 2.0 ** -24).astype(np.float32)
    assert np.array_equal(m.ravel(), (u < np.float32(0.3)).astype(np.float32))
    # the next call uses the next counter block
    m2 = be.to_host(be.uniform_mask((37, 64), 0.3))
    assert not np.array_equal(m, m2)


def test_randn_is_philox_box_muller(be):
    be.seed(7)
    be.uniform_mask((1, 1), 0.5)  # call 0
    z = be.to_host(be.randn((20, 50)))  # call 1
    w = philox_words(7, 1, 1000)
    u1 = ((w[:, 0] >> 8) + 1).astype(np.float64) * 2.0 ** -24
    u2 = (w[:, 1] >> 8).astype(np.float64) * 2.0 ** -24
    want = np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2)
    np.testing.assert_allclose(z.ravel(), want, rtol=1e-5, atol=1e-5)


def test_random_statistics_and_state(be):
    be.seed(3)
    m = be.to_host(be.uniform_mask((500, 400), 0.25))
    assert set(np.unique(m)) <= {0.0, 1.0} and abs(m.mean() - 0.25) < 0.005
    z = be.to_host(be.randn((500, 400)))
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    state = be.get_rng_state()
    a = (be.to_host(be.uniform_mask((8, 8), 0.5)), be.randint(100), be.rand())
    be.set_rng_state(state)
    b = (be.to_host(be.uniform_mask((8, 8), 0.5)), be.randint(100), be.rand())
    assert np.array_equal(a[0], b[0]) and a[1:] == b[1:]
    be.seed(3)
    assert np.array_equal(be.to_host(be.uniform_mask((500, 400), 0.25)), m)


# -- neurons --------------------------------------------------------------------------------
NEURONS = [("ident", 0, 0), ("relu", 0, 0), ("brelu", 1.5, 0), ("abs", 0, 0), ("logistic", 0, 0),
           ("tanh", 1.7, 0.66), ("softrelu", 0, 0), ("square", 0, 0), ("sqrt", 0, 0), ("linear", 2.0, -0.5),
           ("drelu", 1.3, 0)]


@pytest.mark.parametrize("kind,a,b", NEURONS)
def test_neurons(be, kind, a, b):
    x = R((30, 128), 74, 3.0)
    if kind == "sqrt":
        x = np.abs(x) + 0.1
    tol = FAST_MATH if kind in ("logistic", "tanh", "softrelu", "drelu", "sqrt") else EXACT
    host, back = pair(be, "neuronActivate", kind, x, R(x.shape, 75), a, b)
    # tanh/logistic near 0 cancel (a * (2/(1+e) - 1)): bound relative to the largest value
    assert_close(back[2], host[2], tol, kind + " activation")
    y = host[2]
    for add in (False, True):
        for gfo in ((False, True) if kind == "softrelu" else (False,)):
            host, back = pair(be, "neuronInputGrad", kind, R(x.shape, 76), x, y, R(x.shape, 77), add, a, b, gfo)
            assert_close(back[4], host[4], tol, "%s gradient add=%s" % (kind, add))


def test_nrelu(be):
    """nrelu draws noise: check it is relu(relu(x) * (1 + z)) with z the Philox normals."""
    x = R((16, 64), 78)
    be.seed(5)
    y = be.empty(16, 64)
    be.neuronActivate("nrelu", be.array(x), y)
    w = philox_words(5, 0, x.size)
    u1 = ((w[:, 0] >> 8) + 1).astype(np.float64) * 2.0 ** -24
    u2 = (w[:, 1] >> 8).astype(np.float64) * 2.0 ** -24
    z = (np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2)).reshape(x.shape)
    r = np.maximum(x, 0)
    np.testing.assert_allclose(be.to_host(y), np.maximum(r + r * z, 0), rtol=1e-5, atol=1e-5)


# ==========================================================================================
# the golden cases of the 2012 kernels (pooling, normalisations, logreg)
# ==========================================================================================
def _golden_cases():
    manifest = SHARED / "golden" / "kernels" / "manifest.json"
    if not manifest.exists():
        return []
    return [c for c in json.loads(manifest.read_text())["cases"]
            if not c["kernel"].endswith(("FilterActs", "ImgActs", "WeightActs"))]


class _OnDevice:
    """A stand-in for a NumPy backend module whose functions run on the GPU: NumPy
    arguments go over, and come back into the same arrays (outputs written in place)."""

    def __init__(self, be):
        self.be = be

    def __getattr__(self, name):
        fn = getattr(self.be, name)

        def run(*args):
            dev = [self.be.array(a) if isinstance(a, np.ndarray) else a for a in args]
            fn(*dev)
            for a, d in zip(args, dev):
                if isinstance(a, np.ndarray):
                    np.copyto(a, self.be.to_host(d).reshape(a.shape))
        return run


@pytest.mark.parametrize("case", _golden_cases(), ids=lambda c: c["name"])
def test_golden(be, monkeypatch, case):
    import test_golden_kernels as tg
    monkeypatch.setattr(tg, "conv_util", _OnDevice(be))
    monkeypatch.setattr(tg, "layer_kernels", _OnDevice(be))
    ours = tg._run(case)
    for name, spec in case["outputs"].items():
        gold = tg._load(spec)
        got = ours[name]
        assert np.all(np.isfinite(got)), "%s: non-finite values" % name
        scale = float(np.abs(gold).max())
        err = float(np.abs(got.astype(np.float64) - gold).max())
        assert err <= GOLDEN * scale, "%s.%s: max|err| %.3g > %g * max|golden| %.3g" % (
            case["name"], name, err, GOLDEN, scale)


# ==========================================================================================
# the engine on both backends
# ==========================================================================================
def _cfg(name):
    for d in (REPO / "layers_cfg", SHARED / "reference" / "cuda-convnet-2012-07" / "example-layers"):
        if (d / name).exists():
            return d / name
    pytest.skip("no %s in layers_cfg/ or ../shared" % name)


def _parse(layers_cfg, params_cfg, dims, ncls, seed=0):
    import numpy.random as nr

    from cudaconvnet import layer
    nr.seed(seed)  # the parser draws the initial weights from numpy's global generator
    model = layer.StaticModel(list(dims), ncls)
    with contextlib.redirect_stdout(io.StringIO()):
        return layer.LayerParser.parse_layers(str(layers_cfg), str(params_cfg), model, dialect=layer.CUDA_CONVNET)


def _weights(net):
    out = {}
    for lay in net.layers:
        for i, w in enumerate(getattr(lay, "weights", [])):
            out["%s.w%d" % (lay.name, i)] = net.be.to_host(w.W)
        if hasattr(lay, "biases"):
            out["%s.b" % lay.name] = net.be.to_host(lay.biases.W)
    return out


@pytest.fixture(params=["2012", "gemm", "winograd", "implicit"])
def conv_kernels(be, request):
    """Each choice of the CUDA backend's conv kernels (set_conv_kernels), reset afterwards."""
    be.set_conv_kernels(request.param)
    yield request.param
    be.set_conv_kernels("2012")


def test_18pct_ten_steps_match_numpy(be, conv_kernels):
    """Ten training steps of the 18% CIFAR-10 net (conv/pool max+avg/rnorm/relu/fc/softmax/
    logreg) from the same initial weights and data: costs and weights agree within 1e-4,
    with each choice of conv kernels (18pct's convs are 5x5: winograd runs as gemm there)."""
    from cudaconvnet.engine.net import ConvNet
    layers = _parse(_cfg("layers-18pct.cfg"), _cfg("layer-params-18pct.cfg"), (3072, 1), 10)
    rng = np.random.default_rng(0)
    data = [(rng.standard_normal((3072, 128)) * 30).astype(np.float32),
            rng.integers(0, 10, (1, 128)).astype(np.float32)]
    nets = {name: ConvNet(copy.deepcopy(layers), 128, b, seed=1, out=lambda s: None)
            for name, b in (("numpy", NP), ("cuda", be))}
    for step in range(10):
        costs = {name: net.train_batch(data).as_2012()[0] for name, net in nets.items()}
        assert costs["cuda"].keys() == costs["numpy"].keys()
        for k, (logprob, errors) in costs["numpy"].items():
            np.testing.assert_allclose(costs["cuda"][k][0], logprob, rtol=ENGINE, err_msg="step %d %s" % (step, k))
            # a near-tie between two classes may round either way: at most 2 of 128 flips
            assert abs(costs["cuda"][k][1] - errors) <= 2, (step, k)
    wn, wc = _weights(nets["numpy"]), _weights(nets["cuda"])
    assert wn.keys() == wc.keys()
    for k in wn:
        assert_close(wc[k], wn[k], ENGINE, k)


def test_gradient_check_on_the_gpu(be, conv_kernels):
    """The 2012 gradient check (ConvNet.checkGradients) passes on the CUDA backend for a
    small net of the layer types whose kernels live here (its conv is 3x3 at stride 1, so
    each choice of conv kernels takes its own path)."""
    from cudaconvnet.engine.net import ConvNet
    import tempfile
    ldef = """
[data]
type=data
dataIdx=0
[labels]
type=data
dataIdx=1
[conv1]
type=conv
inputs=data
channels=3
filters=16
padding=1
stride=1
filterSize=3
initW=0.3
partialSum=4
sharedBiases=1
neuron=tanh[1,1]
[pool1]
type=pool
pool=max
inputs=conv1
start=0
sizeX=2
stride=2
outputsX=0
channels=16
[rnorm1]
type=rnorm
inputs=pool1
channels=16
size=3
[cmr1]
type=cmrnorm
inputs=rnorm1
channels=16
size=5
[pool2]
type=pool
pool=avg
inputs=cmr1
start=0
sizeX=2
stride=2
outputsX=0
channels=16
[fc4]
type=fc
outputs=4
inputs=pool2
initW=1.0
[probs]
type=softmax
inputs=fc4
[logprob]
type=cost.logreg
inputs=labels,probs
"""
    lpar = ("[conv1]\nepsW=0.001\nepsB=0.002\nmomW=0.9\nmomB=0.9\nwc=0\n"
            "[fc4]\nepsW=0.001\nepsB=0.002\nmomW=0.9\nmomB=0.9\nwc=0\n"
            "[rnorm1]\nscale=0.001\npow=0.75\n[cmr1]\nscale=0.001\npow=0.75\n[logprob]\ncoeff=1\n")
    with tempfile.TemporaryDirectory() as tmp:
        lf, pf = Path(tmp) / "l.cfg", Path(tmp) / "p.cfg"
        lf.write_text(ldef)
        pf.write_text(lpar)
        layers = _parse(lf, pf, (192, 1), 4)
    rng = np.random.default_rng(0)
    data = [rng.random((192, 32), dtype=np.float32), rng.integers(0, 4, (1, 32)).astype(np.float32)]
    lines = []
    net = ConvNet(layers, 32, be, seed=0, out=lines.append)
    fails, tests = net.checkGradients(data)
    assert fails == 0 and tests > 0, "\n".join(lines)
