"""The CUDA backend's conv_util, layer_kernels and nvmatrix operations against the NumPy
backend: the checks that tests/test_cuda_ops.py runs on the GPU and
tests/test_cuda_util_emulated.py under the CPU emulation, each at its own sizes (the
emulated file also asserts which kernel each call launched), and their helpers.

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
  GOLDEN    1e-5  of max|golden|, against the outputs of the original 2012 kernels.
"""
import json
from pathlib import Path

import numpy as np

from cudaconvnet.backends import get_backend

NP = get_backend("numpy")
SHARED = Path(__file__).resolve().parents[2] / "shared"

EXACT = 1e-6
FAST_MATH = 1e-5
GOLDEN = 1e-5


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


def gaussian(radius, stdev=1.0):
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-x ** 2 / (2 * stdev ** 2))
    return (g / g.sum()).astype(np.float32).reshape(1, -1)


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


def philox_words(seed, call, n):
    from test_cuda_util_selectors import philox4x32_10
    key = (seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF)
    return np.array([philox4x32_10((i, 0, call & 0xFFFFFFFF, call >> 32), key) for i in range(n)], dtype=np.uint64)


def golden_cases():
    """The golden cases of ../shared/golden/kernels for the operations here (not conv)."""
    manifest = SHARED / "golden" / "kernels" / "manifest.json"
    if not manifest.exists():
        return []
    return [c for c in json.loads(manifest.read_text())["cases"]
            if not c["kernel"].endswith(("FilterActs", "ImgActs", "WeightActs"))]


class OnDevice:
    """A stand-in for a NumPy backend module whose functions run on the CUDA backend: NumPy
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


# ==========================================================================================
# the checks: one operation (or a few related ones) on both backends, for given parameters
# ==========================================================================================
def old_target(shape, seed, scaleTargets):
    """A gradient's target before an undo: NaN where scaleTargets is 0, which the kernel
    must not read (2012's scaledStore), random values otherwise."""
    return R(shape, seed) if scaleTargets else np.full(shape, np.nan, np.float32)


def check_convLocalPool(be, p):
    pooler, nf, n, img, subsX, startX, strideX, outputsX = p
    images = R((nf * img * img, n), 1)
    if pooler == "maxabs":  # halves: +v and -v meet in windows, and which one wins is the kernel's order
        images = np.round(images * 2) / 2
    compare(be, "convLocalPool", (images, R((nf * outputsX ** 2, n), 2), nf, subsX, startX, strideX, outputsX,
                                  pooler), [1], EXACT)


def check_convLocalMaxUndo(be, u):
    nf, n, img, subsX, startX, strideX, ox, st, so = u
    images = np.round(R((nf * img * img, n), 3) * 2) / 2  # ties inside windows
    maxActs = np.empty((nf * ox * ox, n), np.float32)
    NP.convLocalPool(images, maxActs, nf, subsX, startX, strideX, ox, "max")
    compare(be, "convLocalMaxUndo", (images, R(maxActs.shape, 4), maxActs, old_target(images.shape, 5, st), subsX,
                                     startX, strideX, ox, st, so), [3], EXACT)


def check_convLocalAvgUndo(be, u):
    nf, n, img, subsX, startX, strideX, ox, st, so = u
    compare(be, "convLocalAvgUndo", (R((nf * ox * ox, n), 6), old_target((nf * img * img, n), 7, st), subsX, startX,
                                     strideX, ox, img, st, so), [1], EXACT)


def check_norm_forward(be, c, kind):
    nf, n, img, size = c
    shape = (nf * img * img, n)
    images = R(shape, 8, 5.0)
    if kind == "response":
        args = (images, R(shape, 9), R(shape, 10), nf, size, 0.01, 0.75)
        compare(be, "convResponseNorm", args, [1, 2], FAST_MATH)
    else:
        args = (images, R(shape, 11, 3.0), R(shape, 9), R(shape, 10), nf, size, 0.01, 0.75)
        compare(be, "convContrastNorm", args, [2, 3], FAST_MATH)


def check_norm_undo(be, u, kind):
    nf, n, img, size, st, so = u
    shape = (nf * img * img, n)
    inputs = R(shape, 12, 5.0)
    denoms, acts = np.empty(shape, np.float32), np.empty(shape, np.float32)
    NP.convResponseNorm(inputs, denoms, acts, nf, size, 0.01, 0.75)
    name = "convResponseNormUndo" if kind == "response" else "convContrastNormUndo"
    # outputs: target (4) and the overwritten acts (3)
    compare(be, name, (R(shape, 13), denoms, inputs, acts, old_target(shape, 14, st), nf, size, 0.01, 0.75, st, so),
            [3, 4], FAST_MATH)


def check_cross_map_forward(be, c):
    nf, n, img, sizeF, blocked, minDiv = c
    shape = (nf * img * img, n)
    images = R(shape, 15, 5.0)
    compare(be, "convResponseNormCrossMap", (images, R(shape, 1), R(shape, 2), nf, sizeF, 0.002, 0.75, blocked,
                                             minDiv), [1, 2], FAST_MATH)
    compare(be, "convContrastNormCrossMap", (images, R(shape, 16, 3.0), R(shape, 1), R(shape, 2), nf, sizeF,
                                             0.002, 0.75, blocked, minDiv), [2, 3], FAST_MATH)


def check_cross_map_undo(be, u):
    nf, n, img, sizeF, blocked, st, so = u
    shape = (nf * img * img, n)
    inputs = R(shape, 17, 5.0)
    denoms, acts = np.empty(shape, np.float32), np.empty(shape, np.float32)
    NP.convResponseNormCrossMap(inputs, denoms, acts, nf, sizeF, 0.002, 0.75, blocked, minDiv=2.0)
    compare(be, "convResponseNormCrossMapUndo", (R(shape, 18), denoms, inputs, acts, R(shape, 19), nf, sizeF,
                                                 0.002, 0.75, blocked, st, so), [3, 4], FAST_MATH)


def check_convGaussianBlur(be, b, horiz):
    r, nc, n, img, sym, st, so = b
    f = gaussian(r) if sym else np.abs(R((1, 2 * r + 1), 23))  # the 2012 quirk shows for asymmetric filters
    images = R((nc * img * img, n), 24)
    compare(be, "convGaussianBlur", (images, f, R(images.shape, 25), horiz, nc, st, so), [2], EXACT)


def check_bed_of_nails(be, b):
    nc, n, img, startX, strideX, st, so = b
    ox = -(-img // strideX)
    compare(be, "convBedOfNails", (R((nc * img * img, n), 27), R((nc * ox * ox, n), 28), nc, img, startX, strideX,
                                   st, so), [1], EXACT)
    compare(be, "convBedOfNailsUndo", (R((nc * ox * ox, n), 29), R((nc * img * img, n), 30), nc, img, startX,
                                       strideX, st, so), [1], EXACT)


def check_convResizeBilinear(be, r):
    nc, n, img, tgt = r
    compare(be, "convResizeBilinear", (R((nc * img * img, n), 31), R((nc * tgt * tgt, n), 32), img, tgt, img / tgt),
            [1], EXACT)


def check_convCrop(be, c):
    nc, n, img, tgt, y, x = c
    compare(be, "convCrop", (R((nc * img * img, n), 36), R((nc * tgt * tgt, n), 37), img, tgt, y, x), [1], 0.0)


def check_convReflectHorizontal(be, c):
    nc, n, img, st, so = c
    compare(be, "convReflectHorizontal", (R((nc * img * img, n), 38), R((nc * img * img, n), 39), img, st, so), [1],
            EXACT)
    x = R((nc * img * img, n), 40)
    ref = x.copy()
    NP.convReflectHorizontal(ref, ref, img)
    d = be.array(x)
    be.convReflectHorizontal(d, d, img)
    assert_close(be.to_host(d), ref, 0.0, "in place")


def check_add_scale(be, st, sb):
    compare(be, "add", (R((33, 70), 52), R((33, 70), 53), st, sb), [0], EXACT)
    compare(be, "scale", (R((33, 70), 54), -1.5, R((33, 70), 55)), [2], EXACT)


def check_addVector_and_byVector(be, rows, cols):
    for vshape in ((rows, 1), (1, cols)):
        compare(be, "addVector", (R((rows, cols), 59), R(vshape, 60), 0.5), [0], EXACT)
        compare(be, "eltwiseMultByVector", (R((rows, cols), 61), R(vshape, 62), R((rows, cols), 63)), [2], EXACT)


def check_eltwise(be):
    a, b = R((40, 130), 67), R((40, 130), 68)
    compare(be, "eltwiseMult", (a, b, R(a.shape, 69)), [2], EXACT)
    compare(be, "maximum", (a, b, R(a.shape, 70)), [2], 0.0)
    compare(be, "square", (a, R(a.shape, 71)), [1], EXACT)


def check_softmax(be, rows, cols):
    compare(be, "softmax", (R((rows, cols), 72, 4.0), R((rows, cols), 73)), [1], FAST_MATH)


def check_golden(be, monkeypatch, case):
    import test_golden_kernels as tg
    monkeypatch.setattr(tg, "conv_util", OnDevice(be))
    monkeypatch.setattr(tg, "layer_kernels", OnDevice(be))
    ours = tg._run(case)
    for name, spec in case["outputs"].items():
        gold = tg._load(spec)
        got = ours[name]
        assert np.all(np.isfinite(got)), "%s: non-finite values" % name
        scale = float(np.abs(gold).max())
        err = float(np.abs(got.astype(np.float64) - gold).max())
        assert err <= GOLDEN * scale, "%s.%s: max|err| %.3g > %g * max|golden| %.3g" % (
            case["name"], name, err, GOLDEN, scale)



def check_gradients(be, numOut, n, add):
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


def check_elementwise_costs(be, add):
    """CHM's cost.crossent2 and cost.rflickr: layer.cuh functors through kEltwiseBinaryOp /
    kEltwiseTernaryOp."""
    rng = np.random.default_rng(79)
    y = rng.uniform(0.01, 0.99, (10, 100)).astype(np.float32)
    t = (rng.random((10, 100)) < 0.3).astype(np.float32)
    compare(be, "computeCrossEnt2Cost", (t, y, R(y.shape, 80)), [2], FAST_MATH)
    compare(be, "computeRobustFlickrCost", (t, y, R(y.shape, 81)), [2], FAST_MATH)
    compare(be, "computeCrossEnt2Grad", (t, y, R(y.shape, 82), add, 0.7), [2], FAST_MATH)
    compare(be, "computeRobustFlickrGrad", (t, y, R(y.shape, 83), add, 0.7), [2], FAST_MATH)

NEURONS = [("ident", 0, 0), ("relu", 0, 0), ("brelu", 1.5, 0), ("abs", 0, 0), ("logistic", 0, 0),
           ("tanh", 1.7, 0.66), ("softrelu", 0, 0), ("square", 0, 0), ("sqrt", 0, 0), ("linear", 2.0, -0.5),
           ("drelu", 1.3, 0)]


def check_neurons(be, kind, a, b, numImages):
    x = R((30, numImages), 74, 3.0)
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


def check_nrelu(be):
    """nrelu draws noise: relu(relu(x) * (1 + z)), with z the Philox normals."""
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
