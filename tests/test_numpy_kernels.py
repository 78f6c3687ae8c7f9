"""The NumPy reference kernels against slow, obviously-correct float64 loops.

Beyond the golden cases: every op on small random inputs (odd numbers of images, 1..32
colours, groups, padding, strides, modules hanging past the edge, partial sums, in-place
scaling), adjoint identities for the conv family, and the undos against finite differences
of their forward ops.
"""

import math
import zlib

import numpy as np
import pytest

from cudaconvnet.backends.numpy import conv_util as cu
from cudaconvnet.backends.numpy import filter_acts as fa
from cudaconvnet.backends.numpy import img_acts as ia
from cudaconvnet.backends.numpy import layer_kernels as lk
from cudaconvnet.backends.numpy import weight_acts as wa

# Named tolerances (relative to the largest reference magnitude).
TOL = 2e-5          # float32 kernel vs float64 loop
TOL_FD = 1e-4       # gradient vs central finite difference of a float64 forward
TOL_ADJ = 1e-5      # <A x, y> = <x, A^T y> with float32 operators


def rng_for(*key):
    """A generator seeded by the test's parameters (stable across runs and processes)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def close(got, ref, tol=TOL):
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape
    scale = max(np.abs(ref).max(), 1e-30)
    err = np.abs(got - ref).max()
    assert err <= tol * scale, "max|err| %.3g > %g * %.3g" % (err, tol, scale)


def nan_like(shape):
    return np.full(shape, np.nan, dtype=np.float32)


def modules_x(img, fs, pad, stride):
    """layer.py's formula: the last module may hang past the image edge."""
    return 1 + int(math.ceil((2 * pad + img - fs) / float(stride)))


def pool_outputs(img, size, start, stride):
    """layer.py's PoolLayerParser formula."""
    return int(math.ceil((img - start - size) / float(stride))) + 1


# ========================================================================================
# conv / local: slow references

def ref_filter_acts(images, filters, SY, SX, mY, mX, pad0, stride, C, G, conv):
    N, F = images.shape[1], filters.shape[1]
    fc, Fg = C // G, F // G
    fs = math.isqrt(filters.shape[0] // (fc * (1 if conv else mY * mX)))
    x = images.astype(np.float64).reshape(C, SY, SX, N)
    out = np.zeros((F, mY, mX, N))
    for my in range(mY):
        for mx in range(mX):
            m = my * mX + mx
            w = filters if conv else filters[m * fc * fs * fs:(m + 1) * fc * fs * fs]
            w = w.astype(np.float64).reshape(fc, fs, fs, F)
            for g in range(G):
                fsl = slice(g * Fg, (g + 1) * Fg)
                for c in range(fc):
                    for fy in range(fs):
                        for fx in range(fs):
                            y, xx = pad0 + my * stride + fy, pad0 + mx * stride + fx
                            if 0 <= y < SY and 0 <= xx < SX:
                                out[fsl, my, mx] += np.outer(w[c, fy, fx, fsl],
                                                             x[g * fc + c, y, xx])
    return out.reshape(F * mY * mX, N)


def ref_img_acts(hid, filters, SY, SX, mY, pad0, stride, C, G, conv):
    N, F = hid.shape[1], filters.shape[1]
    M = hid.shape[0] // F
    mX = M // mY
    fc, Fg = C // G, F // G
    fs = math.isqrt(filters.shape[0] // (fc * (1 if conv else M)))
    h = hid.astype(np.float64).reshape(F, mY, mX, N)
    out = np.zeros((C, SY, SX, N))
    for my in range(mY):
        for mx in range(mX):
            m = my * mX + mx
            w = filters if conv else filters[m * fc * fs * fs:(m + 1) * fc * fs * fs]
            w = w.astype(np.float64).reshape(fc, fs, fs, F)
            for g in range(G):
                fsl = slice(g * Fg, (g + 1) * Fg)
                for c in range(fc):
                    for fy in range(fs):
                        for fx in range(fs):
                            y, xx = pad0 + my * stride + fy, pad0 + mx * stride + fx
                            if 0 <= y < SY and 0 <= xx < SX:
                                out[g * fc + c, y, xx] += w[c, fy, fx, fsl] @ h[fsl, my, mx]
    return out.reshape(C * SY * SX, N)


def ref_weight_acts_per_module(images, hid, SY, mY, mX, fs, pad0, stride, C, G):
    """(numModules, fc, fs, fs, F): each module's own filter gradient."""
    N = images.shape[1]
    M = mY * mX
    F = hid.shape[0] // M
    fc, Fg = C // G, F // G
    SX = images.shape[0] // C // SY
    x = images.astype(np.float64).reshape(C, SY, SX, N)
    h = hid.astype(np.float64).reshape(F, mY, mX, N)
    out = np.zeros((M, fc, fs, fs, F))
    for my in range(mY):
        for mx in range(mX):
            m = my * mX + mx
            for g in range(G):
                fsl = slice(g * Fg, (g + 1) * Fg)
                for c in range(fc):
                    for fy in range(fs):
                        for fx in range(fs):
                            y, xx = pad0 + my * stride + fy, pad0 + mx * stride + fx
                            if 0 <= y < SY and 0 <= xx < SX:
                                out[m, c, fy, fx, fsl] += h[fsl, my, mx] @ x[g * fc + c, y, xx]
    return out


# (colours, groups, filters, imgSizeY, imgSizeX, filterSize, padding, stride, images)
CONV_CASES = [
    (1, 1, 16, 7, 7, 3, 0, 1, 5),
    (2, 1, 16, 6, 6, 3, 1, 2, 40),
    (3, 1, 16, 9, 9, 5, 2, 3, 5),      # last module hangs 3 past the edge
    (4, 2, 32, 8, 8, 4, 1, 4, 40),     # stride 4, groups 2
    (16, 4, 32, 5, 5, 3, 1, 2, 5),     # groups 4
    (32, 2, 16, 4, 4, 3, 2, 1, 3),     # padding 2 > needed: corner modules see 1 pixel
    (3, 1, 16, 6, 8, 3, 1, 2, 7),      # non-square image and module grid
    (4, 4, 16, 7, 7, 2, 0, 2, 40),     # one colour per group
    # stride 1 with numFilters <= numImgColors: imgActs runs as a flipped convolution
    (16, 1, 16, 6, 8, 3, 0, 1, 5),     # no padding, non-square
    (16, 1, 16, 5, 5, 3, 3, 1, 4),     # padding 3 >= filterSize: edge modules see nothing
    (16, 2, 16, 7, 7, 5, 2, 1, 40),    # the 18pct conv2 geometry, small, groups 2
]


def conv_setup(case, conv=True, seed=0):
    C, G, F, SY, SX, fs, pad, stride, N = case
    mY, mX = modules_x(SY, fs, pad, stride), modules_x(SX, fs, pad, stride)
    rng = rng_for("conv", case, conv, seed)
    fc = C // G
    nW = fc * fs * fs * (1 if conv else mY * mX)
    return dict(C=C, G=G, F=F, SY=SY, SX=SX, fs=fs, pad0=-pad, stride=stride, N=N, mY=mY,
                mX=mX, images=randn(rng, C * SY * SX, N), filters=randn(rng, nW, F, scale=.3),
                hid=randn(rng, F * mY * mX, N), rng=rng)


@pytest.fixture(params=["default", "tiny", "medium"])
def chunking(request, monkeypatch):
    """Run the conv ops with their default im2col chunk, one module row per chunk, and an
    in-between size, so that every chunking path is exercised."""
    size = {"default": fa.COLS_CHUNK_BYTES, "tiny": 1, "medium": 3000}[request.param]
    monkeypatch.setattr(fa, "COLS_CHUNK_BYTES", size)
    return request.param


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
@pytest.mark.parametrize("conv", [True, False], ids=["conv", "local"])
def test_filter_acts(case, conv, chunking):
    s = conv_setup(case, conv)
    fn = fa.convFilterActs if conv else fa.localFilterActs
    ref = ref_filter_acts(s["images"], s["filters"], s["SY"], s["SX"], s["mY"], s["mX"],
                          s["pad0"], s["stride"], s["C"], s["G"], conv)
    t = nan_like(ref.shape)
    fn(s["images"], s["filters"], t, s["SY"], s["mY"], s["mX"], s["pad0"], s["stride"], s["C"],
       s["G"])
    close(t, ref)
    # accumulate: target = 0.5 * target - 2 * result
    init = randn(s["rng"], *ref.shape)
    t = init.copy()
    fn(s["images"], s["filters"], t, s["SY"], s["mY"], s["mX"], s["pad0"], s["stride"], s["C"],
       s["G"], 0.5, -2.0)
    close(t, 0.5 * init.astype(np.float64) - 2 * ref)


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
@pytest.mark.parametrize("conv", [True, False], ids=["conv", "local"])
def test_img_acts(case, conv, chunking):
    s = conv_setup(case, conv)
    fn = ia.convImgActs if conv else ia.localImgActs
    ref = ref_img_acts(s["hid"], s["filters"], s["SY"], s["SX"], s["mY"], s["pad0"],
                       s["stride"], s["C"], s["G"], conv)
    t = nan_like(ref.shape)
    fn(s["hid"], s["filters"], t, s["SY"], s["SX"], s["mY"], s["pad0"], s["stride"], s["C"],
       s["G"])
    close(t, ref)
    init = randn(s["rng"], *ref.shape)
    t = init.copy()
    fn(s["hid"], s["filters"], t, s["SY"], s["SX"], s["mY"], s["pad0"], s["stride"], s["C"],
       s["G"], 1.0, 0.25)
    close(t, init.astype(np.float64) + 0.25 * ref)


def divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv_weight_acts(case, monkeypatch):
    s = conv_setup(case, True)
    C, G, F, fs = s["C"], s["G"], s["F"], s["fs"]
    M = s["mY"] * s["mX"]
    K = C // G * fs * fs
    per_module = ref_weight_acts_per_module(s["images"], s["hid"], s["SY"], s["mY"], s["mX"],
                                            fs, s["pad0"], s["stride"], C, G).reshape(M, K, F)
    row_bytes = C * fs * fs * s["mX"] * s["N"] * 4
    # every partialSum, with im2col chunks of 1, 2, 3 module rows and the default: chunks
    # holding several partial sums, and partial sums spread over several chunks
    for rows in (1, 2, 3, None):
        monkeypatch.setattr(fa, "COLS_CHUNK_BYTES", rows * row_bytes if rows else 8 << 20)
        for ps in [0] + divisors(M):
            P = M // (ps or M)
            ref = per_module.reshape(P, M // P, K, F).sum(axis=1).reshape(P * K, F)
            t = nan_like(ref.shape)
            wa.convWeightActs(s["images"], s["hid"], t, s["SY"], s["mY"], s["mX"], fs,
                              s["pad0"], s["stride"], C, G, ps)
            close(t, ref)
    # accumulate with partialSum 1 (also the layout of localWeightActs)
    ref = per_module.reshape(M * K, F)
    init = randn(s["rng"], *ref.shape)
    t = init.copy()
    wa.convWeightActs(s["images"], s["hid"], t, s["SY"], s["mY"], s["mX"], fs, s["pad0"],
                      s["stride"], C, G, 1, 0.9, 0.125)
    close(t, 0.9 * init.astype(np.float64) + 0.125 * ref)


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_local_weight_acts(case):
    s = conv_setup(case, False)
    C, G, F, fs = s["C"], s["G"], s["F"], s["fs"]
    M = s["mY"] * s["mX"]
    ref = ref_weight_acts_per_module(s["images"], s["hid"], s["SY"], s["mY"], s["mX"], fs,
                                     s["pad0"], s["stride"], C, G).reshape(M * (C // G) * fs
                                                                           * fs, F)
    t = nan_like(ref.shape)
    wa.localWeightActs(s["images"], s["hid"], t, s["SY"], s["mY"], s["mX"], fs, s["pad0"],
                       s["stride"], C, G)
    close(t, ref)
    init = randn(s["rng"], *ref.shape)
    t = init.copy()
    wa.localWeightActs(s["images"], s["hid"], t, s["SY"], s["mY"], s["mX"], fs, s["pad0"],
                       s["stride"], C, G, 0.9, 0.5)
    close(t, 0.9 * init.astype(np.float64) + 0.5 * ref)


def dot64(a, b):
    return float(np.dot(a.astype(np.float64).ravel(), b.astype(np.float64).ravel()))


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
@pytest.mark.parametrize("conv", [True, False], ids=["conv", "local"])
def test_adjoints(case, conv):
    """<filterActs(x, w), h> = <x, imgActs(h, w)> = <w, sum of weightActs(x, h)>."""
    s = conv_setup(case, conv, seed=1)
    C, G, F, fs, N = s["C"], s["G"], s["F"], s["fs"], s["N"]
    M = s["mY"] * s["mX"]
    x, w, h = s["images"], s["filters"], s["hid"]
    y = np.empty((F * M, N), np.float32)
    (fa.convFilterActs if conv else fa.localFilterActs)(x, w, y, s["SY"], s["mY"], s["mX"],
                                                        s["pad0"], s["stride"], C, G)
    xt = np.empty_like(x)
    (ia.convImgActs if conv else ia.localImgActs)(h, w, xt, s["SY"], s["SX"], s["mY"],
                                                  s["pad0"], s["stride"], C, G)
    if conv:
        wt = np.empty((M * w.shape[0], F), np.float32)
        wa.convWeightActs(x, h, wt, s["SY"], s["mY"], s["mX"], fs, s["pad0"], s["stride"], C,
                          G, 1)
        wt = wt.reshape(M, w.shape[0], F).sum(axis=0)
    else:
        wt = np.empty_like(w)
        wa.localWeightActs(x, h, wt, s["SY"], s["mY"], s["mX"], fs, s["pad0"], s["stride"], C,
                           G)
    a, b, c = dot64(y, h), dot64(x, xt), dot64(w, wt)
    scale = np.abs(y).sum() * np.abs(h).max()
    assert abs(a - b) <= TOL_ADJ * scale and abs(a - c) <= TOL_ADJ * scale, (a, b, c)


def test_conv_equals_local_with_tiled_filters():
    """A local layer whose every module holds the same filters is the conv layer."""
    s = conv_setup(CONV_CASES[3], True)
    M = s["mY"] * s["mX"]
    args = (s["SY"], s["mY"], s["mX"], s["pad0"], s["stride"], s["C"], s["G"])
    a = np.empty((s["F"] * M, s["N"]), np.float32)
    b = np.empty_like(a)
    fa.convFilterActs(s["images"], s["filters"], a, *args)
    fa.localFilterActs(s["images"], np.tile(s["filters"], (M, 1)), b, *args)
    close(b, a)


def test_conv_shape_errors():
    s = conv_setup(CONV_CASES[1], True)
    args = (s["SY"], s["mY"], s["mX"], s["pad0"], s["stride"], s["C"], s["G"])
    M, F, N = s["mY"] * s["mX"], s["F"], s["N"]
    good = np.empty((F * M, N), np.float32)
    with pytest.raises(ValueError, match="targets"):
        fa.convFilterActs(s["images"], s["filters"], np.empty((F * M + 1, N), np.float32), *args)
    with pytest.raises(ValueError, match="float32"):
        fa.convFilterActs(s["images"].astype(np.float64), s["filters"], good, *args)
    with pytest.raises(ValueError, match="numGroups"):
        fa.convFilterActs(s["images"], s["filters"], good, *args[:-2], s["C"], 3)
    with pytest.raises(ValueError, match="reach"):
        fa.convFilterActs(s["images"], s["filters"], np.empty((F * 4, N), np.float32),
                          s["SY"], 2, 2, s["pad0"], s["stride"], s["C"], s["G"])
    with pytest.raises(ValueError, match="paddingStart"):
        fa.convFilterActs(s["images"], s["filters"], good, s["SY"], s["mY"], s["mX"], 1,
                          s["stride"], s["C"], s["G"])
    with pytest.raises(ValueError, match="hidActs"):
        ia.convImgActs(s["hid"][:-1], s["filters"], np.empty_like(s["images"]), s["SY"],
                       s["SX"], s["mY"], s["pad0"], s["stride"], s["C"], s["G"])
    K = s["C"] // s["G"] * s["fs"] ** 2
    with pytest.raises(ValueError, match="partialSum"):      # 16 modules, partialSum 7
        wa.convWeightActs(s["images"], s["hid"], np.empty((K, F), np.float32), s["SY"],
                          s["mY"], s["mX"], s["fs"], s["pad0"], s["stride"], s["C"], s["G"], 7)
    with pytest.raises(ValueError, match="targets"):
        wa.convWeightActs(s["images"], s["hid"], np.empty((K + 1, F), np.float32), s["SY"],
                          s["mY"], s["mX"], s["fs"], s["pad0"], s["stride"], s["C"], s["G"], 0)
    with pytest.raises(ValueError, match="targets"):        # not C-contiguous
        wa.convWeightActs(s["images"], s["hid"], np.empty((F, K), np.float32).T, s["SY"],
                          s["mY"], s["mX"], s["fs"], s["pad0"], s["stride"], s["C"], s["G"], 0)


# ========================================================================================
# pooling

def ref_pool(images, C, size, start, stride, outX, pooler):
    N = images.shape[1]
    S = math.isqrt(images.shape[0] // C)
    x = images.astype(np.float64).reshape(C, S, S, N)
    out = np.zeros((C, outX, outX, N))
    for oy in range(outX):
        for ox in range(outX):
            y0, x0 = start + oy * stride, start + ox * stride
            px = [(y, xx) for y in range(y0, y0 + size) for xx in range(x0, x0 + size)
                  if 0 <= y < S and 0 <= xx < S]          # row-major, as the kernel scans
            if pooler == "max":
                acc = np.full((C, N), -2e38)
                for y, xx in px:
                    acc = np.maximum(acc, x[:, y, xx])
            elif pooler == "avg":
                acc = sum(x[:, y, xx] for y, xx in px) / len(px)
            else:    # maxabs: keep the current value only if strictly larger in magnitude
                acc = np.zeros((C, N))
                for y, xx in px:
                    v = x[:, y, xx]
                    acc = np.where(np.abs(acc) > np.abs(v), acc, v)
            out[:, oy, ox] = acc
    return out.reshape(C * outX * outX, N)


def ref_max_undo(images, grads, acts, C, size, start, stride, outX):
    N = images.shape[1]
    S = math.isqrt(images.shape[0] // C)
    x = images.astype(np.float64).reshape(C, S, S, N)
    g = grads.astype(np.float64).reshape(C, outX, outX, N)
    a = acts.astype(np.float64).reshape(C, outX, outX, N)
    out = np.zeros((C, S, S, N))
    for oy in range(outX):
        for ox in range(outX):
            for y in range(start + oy * stride, start + oy * stride + size):
                for xx in range(start + ox * stride, start + ox * stride + size):
                    if 0 <= y < S and 0 <= xx < S:
                        out[:, y, xx] += (x[:, y, xx] == a[:, oy, ox]) * g[:, oy, ox]
    return out.reshape(C * S * S, N)


@pytest.fixture(params=["default", "one-channel"])
def pool_blocks(request, monkeypatch):
    """Pool ops with their default channel blocking and with one channel per block."""
    if request.param == "one-channel":
        monkeypatch.setattr(cu, "POOL_BLOCK_BYTES", 1)
    return request.param


# (channels, imgSize, sizeX, start, stride, images)
POOL_CASES = [
    (16, 14, 3, 0, 2, 5),      # the 2012 overlapping pool; last window clipped
    (3, 9, 3, 0, 3, 40),
    (2, 8, 2, 0, 2, 3),
    (4, 7, 4, -1, 2, 6),       # negative start: first windows clipped on the left
    (1, 6, 5, -2, 1, 5),       # contrast norm's mean pool: stride 1, start -size/2
    (32, 10, 3, 1, 2, 7),      # positive start
    (2, 5, 3, 0, 3, 4),        # last window has a single row/column inside
]


def pool_setup(case, seed=0, ties=False):
    C, S, size, start, stride, N = case
    rng = rng_for("pool", case, seed, ties)
    outX = pool_outputs(S, size, start, stride)
    if ties:   # few distinct values, both signs: ties in max and in |.|
        images = rng.integers(-3, 4, size=(C * S * S, N)).astype(np.float32)
    else:
        images = randn(rng, C * S * S, N)
    return C, S, size, start, stride, N, outX, images, rng


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
@pytest.mark.parametrize("pooler", ["max", "avg", "maxabs"])
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_local_pool(case, pooler, ties, pool_blocks):
    C, S, size, start, stride, N, outX, images, _ = pool_setup(case, ties=ties)
    ref = ref_pool(images, C, size, start, stride, outX, pooler)
    t = nan_like(ref.shape)
    cu.convLocalPool(images, t, C, size, start, stride, outX, pooler)
    close(t, ref, 0 if pooler != "avg" else TOL)


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_max_undo(case, ties, pool_blocks):
    C, S, size, start, stride, N, outX, images, rng = pool_setup(case, ties=ties)
    acts = np.empty((C * outX * outX, N), np.float32)
    cu.convLocalPool(images, acts, C, size, start, stride, outX, "max")
    grads = randn(rng, *acts.shape)
    ref = ref_max_undo(images, grads, acts, C, size, start, stride, outX)
    t = nan_like(images.shape)
    cu.convLocalMaxUndo(images, grads, acts, t, size, start, stride, outX)
    close(t, ref)
    init = randn(rng, *images.shape)
    t = init.copy()
    cu.convLocalMaxUndo(images, grads, acts, t, size, start, stride, outX, 2.0, -1.0)
    close(t, 2 * init.astype(np.float64) - ref)


def directional_fd(f, x, v, eps):
    """Central difference of f (float64 -> float) at x along v."""
    return (f(x + eps * v) - f(x - eps * v)) / (2 * eps)


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_max_undo_is_gradient(case):
    C, S, size, start, stride, N, outX, images, rng = pool_setup(case, seed=2)
    acts = np.empty((C * outX * outX, N), np.float32)
    cu.convLocalPool(images, acts, C, size, start, stride, outX, "max")
    grads = randn(rng, *acts.shape)
    t = np.empty_like(images)
    cu.convLocalMaxUndo(images, grads, acts, t, size, start, stride, outX)
    v = rng.standard_normal(images.shape)
    fd = directional_fd(lambda z: dot64(ref_pool(z, C, size, start, stride, outX, "max"),
                                        grads), images.astype(np.float64), v, 1e-7)
    assert abs(fd - dot64(t, v)) <= TOL_FD * np.abs(t).sum() * np.abs(v).max()


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_avg_undo(case, pool_blocks):
    """avgUndo is the adjoint of the (linear) avg pool: <pool(x), g> = <x, undo(g)>."""
    C, S, size, start, stride, N, outX, images, rng = pool_setup(case, seed=3)
    grads = randn(rng, C * outX * outX, N)
    t = nan_like(images.shape)
    cu.convLocalAvgUndo(grads, t, size, start, stride, outX, S)
    pooled = ref_pool(images, C, size, start, stride, outX, "avg")
    assert abs(dot64(pooled, grads) - dot64(images, t)) <= \
        TOL_ADJ * np.abs(pooled).sum() * np.abs(grads).max()
    # explicitly: every window spreads grad/regionSize over its in-image pixels
    ref = np.zeros((C, S, S, N))
    g = grads.astype(np.float64).reshape(C, outX, outX, N)
    for oy in range(outX):
        for ox in range(outX):
            ys = [y for y in range(start + oy * stride, start + oy * stride + size) if 0 <= y < S]
            xs = [x for x in range(start + ox * stride, start + ox * stride + size) if 0 <= x < S]
            for y in ys:
                for x in xs:
                    ref[:, y, x] += g[:, oy, ox] / (len(ys) * len(xs))
    close(t, ref.reshape(images.shape))
    init = randn(rng, *images.shape)
    t = init.copy()
    cu.convLocalAvgUndo(grads, t, size, start, stride, outX, S, 0.5, 3.0)
    close(t, 0.5 * init.astype(np.float64) + 3 * ref.reshape(images.shape))


def test_pool_errors():
    x = np.zeros((16 * 36, 4), np.float32)
    with pytest.raises(ValueError, match="target"):
        cu.convLocalPool(x, np.zeros((16 * 9 + 1, 4), np.float32), 16, 2, 0, 2, 3, "max")
    with pytest.raises(ValueError, match="pooler"):
        cu.convLocalPool(x, np.zeros((16 * 9, 4), np.float32), 16, 2, 0, 2, 3, "min")
    with pytest.raises(ValueError, match="not a positive perfect square"):
        cu.convLocalPool(x, np.zeros((16 * 9, 4), np.float32), 32, 2, 0, 2, 3, "max")
    with pytest.raises(ValueError, match="strideX"):
        cu.convLocalAvgUndo(np.zeros((16 * 9, 4), np.float32), x, 2, 0, 3, 3, 6)


# ========================================================================================
# response / contrast normalisation within maps

def ref_box(x, lo, hi):
    """Sum over the (C, S, S, N) window offsets [lo, hi] in y and x, clipped."""
    C, S, _, N = x.shape
    out = np.zeros_like(x)
    for y in range(S):
        for xx in range(S):
            for dy in range(lo, hi + 1):
                for dx in range(lo, hi + 1):
                    if 0 <= y + dy < S and 0 <= xx + dx < S:
                        out[:, y, xx] += x[:, y + dy, xx + dx]
    return out


def ref_cnorm(images, meanDiffs, C, size, addScale, powScale):
    N = images.shape[1]
    S = math.isqrt(images.shape[0] // C)
    md = meanDiffs.astype(np.float64).reshape(C, S, S, N)
    lo = -(size // 2)
    d = 1 + addScale * ref_box(md ** 2, lo, lo + size - 1)
    out = images.astype(np.float64).reshape(C, S, S, N) * d ** -powScale
    return d.reshape(images.shape), out.reshape(images.shape)


# (channels, imgSize, size, images); addScale large enough that the cross terms matter
NORM_CASES = [(16, 6, 5, 5), (4, 5, 3, 40), (3, 7, 4, 3), (1, 4, 1, 6), (8, 3, 6, 2)]


@pytest.mark.parametrize("case", NORM_CASES, ids=str)
def test_response_norm(case):
    C, S, size, N = case
    rng = rng_for("rnorm", case)
    x = randn(rng, C * S * S, N, scale=2)
    d_ref, y_ref = ref_cnorm(x, x, C, size, 0.03, 0.75)
    d, y = nan_like(x.shape), nan_like(x.shape)
    cu.convResponseNorm(x, d, y, C, size, 0.03, 0.75)
    close(d, d_ref)
    close(y, y_ref)
    md = randn(rng, *x.shape)
    d_ref, y_ref = ref_cnorm(x, md, C, size, 0.03, 0.75)
    cu.convContrastNorm(x, md, d, y, C, size, 0.03, 0.75)
    close(d, d_ref)
    close(y, y_ref)


@pytest.mark.parametrize("case", NORM_CASES, ids=str)
def test_response_norm_undo(case):
    """The undo is the gradient of images * denoms(images)^-pow; it leaves
    -2*addScale*pow * outGrads * acts / denoms in acts."""
    C, S, size, N = case
    a, p = 0.03, 0.75
    rng = rng_for("rnorm-undo", case)
    x = randn(rng, C * S * S, N, scale=2)
    d, y = np.empty_like(x), np.empty_like(x)
    cu.convResponseNorm(x, d, y, C, size, a, p)
    g = randn(rng, *x.shape)
    acts = y.copy()
    t = nan_like(x.shape)
    cu.convResponseNormUndo(g, d, x, acts, t, C, size, a, p)
    close(acts, -2 * a * p * g.astype(np.float64) * y / d)
    v = rng.standard_normal(x.shape)
    fd = directional_fd(lambda z: dot64(ref_cnorm(z, z, C, size, a, p)[1], g),
                        x.astype(np.float64), v, 1e-6)
    assert abs(fd - dot64(t, v)) <= TOL_FD * np.abs(t).sum() * np.abs(v).max()
    # accumulate
    init = randn(rng, *x.shape)
    t2 = init.copy()
    acts = y.copy()
    cu.convResponseNormUndo(g, d, x, acts, t2, C, size, a, p, 1.0, 0.5)
    close(t2, init.astype(np.float64) + 0.5 * t)


@pytest.mark.parametrize("case", NORM_CASES, ids=str)
def test_contrast_norm_undo(case):
    """cnorm's undo differentiates images * (1 + a*box((images - mu)^2))^-p with the local
    mean mu held constant, as the original does (meanDiffs moves with the images)."""
    C, S, size, N = case
    a, p = 0.03, 0.75
    rng = rng_for("cnorm-undo", case)
    x = randn(rng, C * S * S, N, scale=2)
    # meanDiffs as ContrastNormLayer makes them: images - avgpool(images), stride 1
    mean = np.empty_like(x)
    cu.convLocalPool(x, mean, C, size, -(size // 2), 1, S, "avg")
    md = x - mean
    close(mean, ref_pool(x, C, size, -(size // 2), 1, S, "avg"))
    d, y = np.empty_like(x), np.empty_like(x)
    cu.convContrastNorm(x, md, d, y, C, size, a, p)
    g = randn(rng, *x.shape)
    acts = y.copy()
    t = nan_like(x.shape)
    cu.convContrastNormUndo(g, d, md, acts, t, C, size, a, p)
    close(acts, -2 * a * p * g.astype(np.float64) * y / d)
    mu = mean.astype(np.float64)
    v = rng.standard_normal(x.shape)
    fd = directional_fd(lambda z: dot64(ref_cnorm(z, z - mu, C, size, a, p)[1], g),
                        x.astype(np.float64), v, 1e-6)
    assert abs(fd - dot64(t, v)) <= TOL_FD * np.abs(t).sum() * np.abs(v).max()


# ========================================================================================
# cross-map response normalisation

def ref_cmrnorm(images, F, sizeF, addScale, powScale, blocked, minDiv):
    N = images.shape[1]
    x = images.astype(np.float64).reshape(F, -1, N)
    d = np.zeros_like(x)
    for f in range(F):
        if blocked:
            lo = (f // sizeF) * sizeF
            fs = range(lo, min(F, lo + sizeF))
        else:
            lo = f - sizeF // 2
            fs = range(max(0, lo), min(F, lo + sizeF))
        d[f] = minDiv + addScale * sum(x[k] ** 2 for k in fs)
    return d.reshape(images.shape), (x * d ** -powScale).reshape(images.shape)


# (filters, imgSize, sizeF, blocked, minDiv, images)
CMR_CASES = [(32, 3, 5, False, 1.0, 5), (32, 3, 5, True, 1.0, 40), (16, 2, 4, False, 2.0, 3),
             (16, 2, 3, True, 2.0, 7), (20, 2, 6, True, 1.0, 4), (5, 3, 5, False, 1.0, 2)]


@pytest.mark.parametrize("case", CMR_CASES, ids=str)
def test_cross_map_norm(case):
    F, S, sizeF, blocked, k, N = case
    rng = rng_for("cmr", case)
    x = randn(rng, F * S * S, N, scale=2)
    d_ref, y_ref = ref_cmrnorm(x, F, sizeF, 0.02, 0.75, blocked, k)
    d, y = nan_like(x.shape), nan_like(x.shape)
    cu.convResponseNormCrossMap(x, d, y, F, sizeF, 0.02, 0.75, blocked, minDiv=k)
    close(d, d_ref)
    close(y, y_ref)
    md = randn(rng, *x.shape)
    cu.convContrastNormCrossMap(x, md, d, y, F, sizeF, 0.02, 0.75, blocked, k)
    d_ref = ref_cmrnorm(md, F, sizeF, 0.02, 0.75, blocked, k)[0]
    close(d, d_ref)
    close(y, x.astype(np.float64) * d_ref ** -0.75)


@pytest.mark.parametrize("case", CMR_CASES, ids=str)
def test_cross_map_norm_undo(case):
    F, S, sizeF, blocked, k, N = case
    a, p = 0.02, 0.75
    rng = rng_for("cmr-undo", case)
    x = randn(rng, F * S * S, N, scale=2)
    d, y = np.empty_like(x), np.empty_like(x)
    cu.convResponseNormCrossMap(x, d, y, F, sizeF, a, p, blocked, minDiv=k)
    g = randn(rng, *x.shape)
    acts = y.copy()
    t = nan_like(x.shape)
    cu.convResponseNormCrossMapUndo(g, d, x, acts, t, F, sizeF, a, p, blocked)
    close(acts, -2 * a * p * g.astype(np.float64) * y / d)
    v = rng.standard_normal(x.shape)
    fd = directional_fd(lambda z: dot64(ref_cmrnorm(z, F, sizeF, a, p, blocked, k)[1], g),
                        x.astype(np.float64), v, 1e-6)
    assert abs(fd - dot64(t, v)) <= TOL_FD * np.abs(t).sum() * np.abs(v).max()
    init = randn(rng, *x.shape)
    t2 = init.copy()
    acts = y.copy()
    cu.convResponseNormCrossMapUndo(g, d, x, acts, t2, F, sizeF, a, p, blocked, 0.5, 2.0)
    close(t2, 0.5 * init.astype(np.float64) + 2 * t)


def test_norm_errors():
    x = np.zeros((32 * 9, 4), np.float32)
    d = np.zeros_like(x)
    with pytest.raises(ValueError, match="denoms"):
        cu.convResponseNorm(x, d[:-1], np.zeros_like(x), 32, 3, 1e-3, .75)
    with pytest.raises(ValueError, match="sizeF"):
        cu.convResponseNormCrossMap(x, d, np.zeros_like(x), 32, 33, 1e-3, .75, False)
    with pytest.raises(ValueError, match="acts"):
        cu.convResponseNormUndo(x, d, x, x[:, :3].copy(), np.zeros_like(x), 32, 3, 1e-3, .75)


def test_tica():
    C, S, N, size = 16, 5, 3, 3
    rng = rng_for("tica")
    x = randn(rng, C * S * S, N)
    xx = x.astype(np.float64).reshape(C, S, S, N)
    lo = -(size // 2)
    ref = 1 / (0.001 + np.sqrt(ref_box(xx ** 2, lo, lo + size - 1)))
    t = nan_like(x.shape)
    cu.convTICA(x, t, C, size, 0, 1)
    close(t, ref.reshape(x.shape))
    T = ref_box(ref, lo, lo + size - 1)
    g = nan_like(x.shape)
    cu.convTICAGrad(x, t, g, C, size, 0, 2.0)
    close(g, (2 * -xx * T).reshape(x.shape))
    # the original's accumulating branch takes a square root of the window sum
    init = randn(rng, *x.shape)
    g = init.copy()
    cu.convTICAGrad(x, t, g, C, size, 1, 2.0)
    close(g, init + (2 * -xx * np.sqrt(T)).reshape(x.shape))


# ========================================================================================
# image transforms

def ref_blur_kernel(images, filt, horiz, C):
    """Literal run of the original's streaming 1-D blur (phases as in the kernel)."""
    N = images.shape[1]
    S = math.isqrt(images.shape[0] // C)
    x = images.astype(np.float64).reshape(C, S, S, N)
    f = filt.astype(np.float64).ravel()
    r = f.size // 2
    out = np.zeros_like(x)
    for c in range(C):
        for line in range(S):
            px = x[c, line, :] if horiz else x[c, :, line]
            res = np.zeros((S, N))
            acc = [np.zeros(N) for _ in range(2 * r)]
            for col in range(r):
                for k in range(r + 1 + col):
                    acc[k] = acc[k] + px[col] * f[r + col - k]
            for col in range(r, S):
                res[col - r] = acc[0] + px[col] * f[0]
                for k in range(1, 2 * r):
                    acc[k - 1] = acc[k] + px[col] * f[k]
                acc[2 * r - 1] = px[col] * f[0]
            for k in range(r):
                res[S - r + k] = acc[k]
            if horiz:
                out[c, line, :] = res
            else:
                out[c, :, line] = res
    return out.reshape(images.shape)


@pytest.mark.parametrize("radius", [1, 2, 3, 4])
@pytest.mark.parametrize("horiz", [True, False])
def test_gaussian_blur(radius, horiz):
    C, S, N = 2, 9, 5
    rng = rng_for("blur", radius, horiz)
    x = randn(rng, C * S * S, N)
    # an asymmetric filter shows exactly which tap the kernel applies where
    filt = randn(rng, 1, 2 * radius + 1)
    t = nan_like(x.shape)
    cu.convGaussianBlur(x, filt, t, horiz, C, 0, 1)
    close(t, ref_blur_kernel(x, filt, horiz, C))
    # a Gaussian (symmetric) filter is a plain zero-padded correlation; in place, scaled
    g = np.exp(-(np.arange(2 * radius + 1) - radius) ** 2 / 2.0).astype(np.float32)[None]
    g /= g.sum()
    xx = x.astype(np.float64).reshape(C, S, S, N)
    ref = np.zeros_like(xx)
    for d in range(-radius, radius + 1):
        for i in range(S):
            if 0 <= i + d < S:
                if horiz:
                    ref[:, :, i] += g[0, radius + d] * xx[:, :, i + d]
                else:
                    ref[:, i] += g[0, radius + d] * xx[:, i + d]
    y = x.copy()
    cu.convGaussianBlur(y, g, y, horiz, C, 0.5, 2.0)
    close(y, 0.5 * x.astype(np.float64) + 2 * ref.reshape(x.shape))


@pytest.mark.parametrize("S,stride", [(8, 2), (9, 2), (32, 3), (7, 4)])
def test_bed_of_nails(S, stride):
    C, N = 3, 5
    outX = -(-S // stride)
    start = (S - stride * (outX - 1)) // 2          # layer.py's choice
    rng = rng_for("nails", S, stride)
    x = randn(rng, C * S * S, N)
    t = nan_like((C * outX * outX, N))
    cu.convBedOfNails(x, t, C, S, start, stride, 0, 1)
    xx = x.reshape(C, S, S, N)
    ref = np.array([[[xx[c, start + i * stride, start + j * stride] for j in range(outX)]
                     for i in range(outX)] for c in range(C)])
    close(t, ref.reshape(t.shape), 0)
    g = randn(rng, *t.shape)
    back = nan_like(x.shape)
    cu.convBedOfNailsUndo(g, back, C, S, start, stride, 0, 1)
    assert abs(dot64(t, g) - dot64(x, back)) <= TOL_ADJ * np.abs(t).sum() * np.abs(g).max()
    init = randn(rng, *x.shape)
    back2 = init.copy()
    cu.convBedOfNailsUndo(g, back2, C, S, start, stride, 1, 1)
    close(back2, init.astype(np.float64) + back)
    with pytest.raises(ValueError, match="outside"):
        cu.convBedOfNails(x, t, C, S, start + stride, stride, 0, 1)


def ref_resize(images, S, T, scale):
    f32 = np.float32
    C, N = images.shape[0] // (S * S), images.shape[1]
    x = images.reshape(C, S, S, N)
    cs = f32(S * 0.5 - T * 0.5 * float(f32(scale)))
    out = np.zeros((C, T, T, N), np.float32)
    for py in range(T):
        for px in range(T):
            sx = max(f32(0), min(f32(S) - f32(1.01), f32(px) * f32(scale) + cs))
            sy = max(f32(0), min(f32(S) - f32(1.01), f32(py) * f32(scale) + cs))
            u = f32(math.floor(sx + f32(1))) - sx
            w = sy - f32(math.floor(sy))
            y0, x0 = int(math.floor(sy)), int(math.floor(sx))
            v0, v1 = x[:, y0, x0], x[:, y0, x0 + 1]
            v2, v3 = x[:, y0 + 1, x0], x[:, y0 + 1, x0 + 1]
            c0 = u * (v0 - v1) + v1
            c1 = u * (v2 - v3) + v3
            out[:, py, px] = w * (c1 - c0) + c0
    return out.reshape(C * T * T, N)


@pytest.mark.parametrize("S,scale", [(12, 1.5), (10, 0.75), (9, 1.0), (16, 2.0)])
def test_resize_bilinear(S, scale):
    T = int(math.floor(S / scale))          # layer.py's tgtSize
    rng = rng_for("resize", S, scale)
    x = randn(rng, 2 * S * S, 3)
    t = nan_like((2 * T * T, 3))
    cu.convResizeBilinear(x, t, S, T, scale)
    close(t, ref_resize(x, S, T, scale), 1e-6)


def test_rgb_to_yuv_and_lab():
    rng = rng_for("color")
    x = rng.random((3 * 16, 5)).astype(np.float32)
    x[:, 0] = 0.001                         # below the L*a*b* cube-root threshold
    R, G, B = (x.astype(np.float64).reshape(3, 16, 5)[i] for i in range(3))
    t = nan_like(x.shape)
    cu.convRGBToYUV(x, t)
    ref = np.stack([.2126 * R + .7152 * G + .0722 * B, -.09991 * R - .33609 * G + .436 * B,
                    .615 * R - .55861 * G - .05639 * B]).reshape(x.shape)
    close(t, ref)

    def lab(v):
        return np.where(v > 0.0088564517, v ** 0.3333, 7.787037 * v + 0.13793103)
    X = lab(.49 * R + .31 * G + .2 * B)
    Y = lab(.17697 * R + .8124 * G + .01063 * B)
    Z = lab(.01 * G + .99 * B)
    for center in (False, True):
        cu.convRGBToLAB(x, t, center)
        ref = np.stack([116 * Y - 16 - (50 if center else 0), 500 * (X - Y), 200 * (Y - Z)])
        close(t, ref.reshape(x.shape), 1e-5)


def test_crop_and_reflect():
    C, S, N = 3, 7, 5
    rng = rng_for("crop")
    x = randn(rng, C * S * S, N)
    xx = x.reshape(C, S, S, N)
    t = nan_like((C * 16, N))
    cu.convCrop(x, t, S, 4, 1, 3)
    close(t, np.array([[[xx[c, 1 + i, 3 + j] for j in range(4)] for i in range(4)]
                       for c in range(C)]).reshape(t.shape), 0)
    with pytest.raises(ValueError, match="fit"):
        cu.convCrop(x, t, S, 4, 4, 0)
    t = nan_like(x.shape)
    cu.convReflectHorizontal(x, t, S)
    close(t, np.array([[[xx[c, i, S - 1 - j] for j in range(S)] for i in range(S)]
                       for c in range(C)]).reshape(x.shape), 0)
    y = x.copy()
    cu.convReflectHorizontal(y, y, S)      # in place
    cu.convReflectHorizontal(y, y, S)      # its own inverse
    close(y, x, 0)
    cu.convReflectHorizontal(x, y, S, 1.0, 1.0)
    close(y, x.astype(np.float64) + t, 1e-6)


# ========================================================================================
# layer kernels

def softmax_probs(rng, numOut, N, ties=0):
    z = 3 * rng.standard_normal((numOut, N))
    p = np.exp(z - z.max(axis=0))
    p = (p / p.sum(axis=0)).astype(np.float32)
    for j in range(ties):        # two equal maxima in column j
        top = np.argsort(p[:, j])[-2:]
        p[top, j] = p[top, j].max()
    return p


@pytest.mark.parametrize("numOut,N", [(10, 5), (7, 40), (1000, 3)])
def test_logreg(numOut, N):
    rng = rng_for("logreg", numOut, N)
    p = softmax_probs(rng, numOut, N, ties=min(N, 3))
    lab = rng.integers(0, numOut, N)
    lab[:2] = np.argmax(p[:, :2], axis=0)          # a tie containing the label
    labels = lab.astype(np.float32)[None]
    llp, cp = nan_like((1, N)), nan_like((1, N))
    lk.computeLogregCost(labels, p, llp, cp)
    for i in range(N):
        assert llp[0, i] == pytest.approx(math.log(p[lab[i], i]), rel=1e-6, abs=1e-6)
        nmax = int((p[:, i] == p[:, i].max()).sum())
        assert cp[0, i] == (1.0 / nmax if p[lab[i], i] == p[:, i].max() else 0.0)
    assert cp[0, 0] == 0.5
    onehot = np.zeros((numOut, N))
    onehot[lab, np.arange(N)] = 1
    t = nan_like(p.shape)
    lk.computeLogregGrad(labels, p, t, False, 2.0)
    close(t, 2 * onehot / p)
    t = nan_like(p.shape)
    lk.computeLogregSoftmaxGrad(labels, p, t, False, 2.0)
    close(t, 2 * (onehot - p))
    # the fused kernel is softmaxGrad(logregGrad)
    t2 = np.empty_like(p)
    lk.computeLogregGrad(labels, p, t2, False, 2.0)
    t3 = np.ones_like(p)
    lk.computeSoftmaxGrad(p, t2, t3, True)
    close(t3, 1 + 2 * (onehot - p), 1e-5)
    with pytest.raises(ValueError, match="labels"):
        lk.computeLogregCost(np.full((1, N), numOut, np.float32), p, llp, cp)


def test_multi_softmax_cost():
    """CHM's top-k score, against a direct count."""
    rng = rng_for("msm")
    numOut, N, k = 9, 40, 3
    p = rng.integers(1, 6, size=(numOut, N)).astype(np.float32)   # many ties
    lab = rng.integers(0, numOut, N)
    labels = lab.astype(np.float32)[None]
    e = randn(rng, numOut, N)
    for use_e, rank in ((False, p), (True, e)):
        llp, cp, tk = nan_like((1, N)), nan_like((1, N)), nan_like((1, N))
        lk.computeMultiSoftmaxCost(labels, p, e, llp, cp, tk, k, use_e)
        for i in range(N):
            r = rank[:, i]
            above, same = int((r > r[lab[i]]).sum()), int((r == r[lab[i]]).sum())
            slots = k - above
            assert tk[0, i] == pytest.approx(0 if slots <= 0 else min(1.0, slots / same))
            assert cp[0, i] == pytest.approx(1.0 / same if r[lab[i]] == r.max() else 0.0)
        close(llp, np.log(p[lab, np.arange(N)].astype(np.float64))[None])
    # with probs that have no ties, top-1 agrees with computeLogregCost
    q = softmax_probs(rng, numOut, N)
    a, b, c = nan_like((1, N)), nan_like((1, N)), nan_like((1, N))
    lk.computeMultiSoftmaxCost(labels, q, q, a, b, c, 1, False)
    a2, b2 = nan_like((1, N)), nan_like((1, N))
    lk.computeLogregCost(labels, q, a2, b2)
    close(a, a2, 0)
    close(b, b2, 0)
    close(c, b2, 0)


def test_softmax_grad_is_jacobian_transpose():
    rng = rng_for("softmax")
    numOut, N = 6, 5
    p = softmax_probs(rng, numOut, N)
    g = randn(rng, numOut, N)
    t = nan_like(p.shape)
    lk.computeSoftmaxGrad(p, g, t, False)
    ref = np.zeros((numOut, N))
    for n in range(N):
        y = p[:, n].astype(np.float64)
        J = np.diag(y) - np.outer(y, y)      # dy_i/dx_j
        ref[:, n] = J.T @ g[:, n]
    close(t, ref)
    init = randn(rng, numOut, N)
    t = init.copy()
    lk.computeSoftmaxGrad(p, g, t, True)
    close(t, init.astype(np.float64) + ref)


def test_cross_entropy():
    rng = rng_for("xent")
    numOut, N = 8, 6
    p = softmax_probs(rng, numOut, N, ties=2)
    p[0, 5] = 0                                       # safelog -> -50
    lab = rng.random((numOut, N)).astype(np.float32)
    lab[:, 3] = 0
    lab[np.argmax(p[:, 3]), 3] = 1                    # column 3 labels its top output
    lab[np.argmax(p[:, 2]), 2] = 0                    # column 2 does not
    lab /= np.maximum(lab.sum(axis=0), 1e-6)
    llp, cp = nan_like((1, N)), nan_like((1, N))
    lk.computeCrossEntCost(lab, p, llp, cp)
    logp = np.where(p > 0, np.log(np.where(p > 0, p, 1)), -50.0)
    close(llp, (lab * logp).sum(axis=0)[None], 1e-6)
    for i in range(N):
        top = p[:, i] == p[:, i].max()
        assert cp[0, i] == (1.0 / top.sum() if (top & (lab[:, i] > 0)).any() else 0.0)
    assert cp[0, 3] == 1.0 and cp[0, 2] == 0.0 and cp[0, 1] == 0.5   # column 1: a tie
    q = p.copy()
    q[0, 5] = 0.5
    t = nan_like(p.shape)
    lk.computeCrossEntGrad(lab, q, t, False, 1.5)
    close(t, 1.5 * lab / q)
    t = nan_like(p.shape)
    lk.computeCrossEntSoftmaxGrad(lab, p, t, False, 1.5)
    close(t, 1.5 * (lab - p * lab.sum(axis=0)))


def test_eltwise_max_grad():
    rng = rng_for("emax")
    a, b = randn(rng, 6, 5), randn(rng, 6, 5)
    b[0] = a[0]                                       # ties: both inputs get the gradient
    out = np.maximum(a, b)
    g = randn(rng, 6, 5)
    t = nan_like(a.shape)
    lk.computeEltwiseMaxGrad(g, a, out, t, False)
    close(t, g * (a == out), 0)
    lk.computeEltwiseMaxGrad(g, b, out, t, True)
    close(t, g * (a == out) + g * (b == out), 0)
    assert np.all(t[0] == 2 * g[0])


# ========================================================================================
# scaleTargets == 0 never reads the target

def test_nan_target_ignored_everywhere():
    rng = rng_for("nan")
    C, S, N = 16, 6, 3
    x = randn(rng, C * S * S, N)
    pooled = np.empty((C * 9, N), np.float32)
    cu.convLocalPool(x, pooled, C, 2, 0, 2, 3, "max")
    for fn, args, shape in [
        (cu.convLocalMaxUndo, (x, pooled, pooled), x.shape),
        (cu.convLocalAvgUndo, (pooled,), x.shape),
    ]:
        t = nan_like(shape)
        if fn is cu.convLocalMaxUndo:
            fn(*args, t, 2, 0, 2, 3, 0, 3.0)
        else:
            fn(*args, t, 2, 0, 2, 3, S, 0, 3.0)
        assert np.all(np.isfinite(t))
    d, y = np.empty_like(x), np.empty_like(x)
    cu.convResponseNorm(x, d, y, C, 3, 1e-2, .75)
    t = nan_like(x.shape)
    cu.convResponseNormUndo(x, d, x, y.copy(), t, C, 3, 1e-2, .75, 0, 2.0)
    assert np.all(np.isfinite(t))
    t = nan_like(x.shape)
    cu.convGaussianBlur(x, np.ones((1, 3), np.float32), t, True, C, 0, 2.0)
    assert np.all(np.isfinite(t))


# ========================================================================================
# paths the engine takes rarely or never (found untested by a mutation audit)

def test_blocked_add_matches_the_plain_formula():
    """add() on a matrix of 4 blocks or more (an AlexNet fc update) goes block by block;
    every element, the first block's too, is scaleTarget * t + scaleB * b as the small path."""
    from cudaconvnet.backends.numpy import nvmatrix as nvm
    rng = rng_for("blocked add")
    t, b = randn(rng, 600, 600), randn(rng, 600, 600)
    assert t.size >= 4 * nvm.BLOCK
    want = t * np.float32(0.9) + np.float32(0.01) * b
    nvm.add(t, b, 0.9, 0.01)
    np.testing.assert_array_equal(t, want)


def test_cross_entropy_softmax_grad_scales_by_the_label_mass():
    rng = rng_for("xent mass")
    p = softmax_probs(rng, 5, 4)
    lab = 2 * rng.random((5, 4)).astype(np.float32)   # columns summing to anything
    t = nan_like(p.shape)
    lk.computeCrossEntSoftmaxGrad(lab, p, t, False, 1.5)
    close(t, 1.5 * (lab - p * lab.sum(axis=0)))


def test_msm_logadd_bands():
    """2012's log(e^x + e^y): M + log(1 + e^-d) below d = 5, M + e^-d up to 15, M beyond."""
    x = np.array([0.0, 0.0, 0.0, 0.0])
    y = -np.array([3.0, 12.0, 16.0, 0.0])
    got = lk._msm_logadd(x, y)
    np.testing.assert_allclose(got, [np.log1p(np.exp(-3.0)), np.exp(-12.0), 0.0, np.log(2.0)], rtol=1e-12, atol=0)


def test_img_acts_sparse_scales_its_target():
    from cudaconvnet.backends.numpy import sparse_acts as sa
    rng = rng_for("sparse scale")
    C, G, FC, F, N = 8, 2, 4, 32, 4           # 8 colours, 2 groups each seeing 4, 16 filters a group
    hid, flt = randn(rng, 64 * F, N), randn(rng, 9 * FC, F)
    idx = np.array([0, 2, 4, 6, 1, 3, 5, 7], np.int32)
    alone = nan_like((C * 64, N))
    sa.convImgActsSparse(hid, flt, alone, idx, 8, 8, 8, -1, 1, C, FC, G, 0.0, 1.0)
    t = randn(rng, C * 64, N)
    want = 0.5 * t.astype(np.float64) + alone
    sa.convImgActsSparse(hid, flt, t, idx, 8, 8, 8, -1, 1, C, FC, G, 0.5, 1.0)
    close(t, want, 1e-5)


def test_softmax_tree_update_divides_decay_by_the_node_size():
    w, inc, g = (np.full((3, 2), v, np.float32) for v in (2.0, 0.5, 1.0))
    lk.softmaxTreeUpdateWeights(w, inc, g, [1, 2, 4], 0.1, 0.9, 0.01)
    s = np.array([[1.0], [2.0], [4.0]])
    want_inc = 0.9 * 0.5 + (0.1 / s) * (1.0 - (0.01 / s) * 2.0)
    close(inc, np.repeat(want_inc, 2, axis=1), 1e-6)
    close(w, 2.0 + np.repeat(want_inc, 2, axis=1), 1e-6)


def test_random_pool_draws_every_pixel_of_clipped_windows():
    """pool=rand over 3x3 windows at stride 2 from -1 on a 5x5 image: windows clipped to 2x2,
    2x3, 3x2 and 3x3 pixels. Each output is a pixel of its own window, and every pixel of
    every window is drawn."""
    from cudaconvnet.backends.numpy import nvmatrix as nvm
    nvm.seed(4)
    N = 400
    pixel = np.arange(25, dtype=np.float32)               # the value says where it came from
    images = np.repeat(pixel[:, None], N, axis=1)
    out = np.empty((9, N), np.float32)
    cu.convLocalRandomPool(images, out, 1, 3, -1, 2, 3)
    for oy in range(3):
        for ox in range(3):
            ys = range(max(0, 2 * oy - 1), min(5, 2 * oy + 2))
            xs = range(max(0, 2 * ox - 1), min(5, 2 * ox + 2))
            window = {5 * y + x for y in ys for x in xs}
            assert set(out[3 * oy + ox].astype(int)) == window, (oy, ox)
