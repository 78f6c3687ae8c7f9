"""The CUDA conv kernels (cuda_src/cudaconv2, host code backends/cuda/{filter,img,weight,
sparse}_acts.py) against the NumPy reference, on random inputs that take every branch of
the 2012 host code, and against the golden outputs of the original 2012 kernels.

Each case runs two ways:
  test_gpu[...]       on the GPU through PyCUDA (marker `cuda`: skipped cleanly without a
                      GPU; run them with python -m pytest -m cuda). This is the real check.
  test_emulated[...]  the same .cu source compiled for the CPU by g++ with a small CUDA
                      emulation (tests/cuda_emulation.py: one OS thread per CUDA thread,
                      __syncthreads a barrier, __shared__ one static copy, filled with NaN
                      before each block), called through the same host code and the same
                      argument packing as PyCUDA. It checks the kernels' indexing, staging
                      and scaling and the host code's argument lists on any machine with
                      g++, but not the GPU itself (memory model, warps, PyCUDA, the
                      driver). By default a subset that takes every kernel with every
                      template-argument value; CUDACONVNET_EMULATE_ALL=1 runs every case.
                      CUDACONVNET_EMULATE_CFLAGS adds g++ flags: with "-fsanitize=address"
                      out-of-bounds reads and writes of the kernels are reported
                      (tests/test_cuda_sanitizers.py runs the emulated cases that way, and
                      under "-fsanitize=thread").

Tolerance (TOL_SQRT_K): every output is a sum of K float32 products (plus a scaled target),
which the GPU adds in a different order than the reference's BLAS. Either order's rounding
error is bounded by about K * eps * S, with S the same sum over the absolute values of the
terms (we get S by running the reference on |inputs|); rounding errors of random sign grow
like sqrt(K) * eps * S in practice. We allow 4 * sqrt(K) * eps * S per element: for the
sizes here (K <= a few thousand) that is far below the size of one missing or doubled
product (about S / K), and it holds for any summation order. The golden cases use the
criterion of test_golden_kernels.py: max|err| <= 1e-5 * max|golden|.
"""
import hashlib
import itertools
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from cuda_emulation import make_emulator

from cudaconvnet.backends.cuda import filter_acts as cfa
from cudaconvnet.backends.cuda import img_acts as cia
from cudaconvnet.backends.cuda import sparse_acts as csa
from cudaconvnet.backends.cuda import weight_acts as cwa
from cudaconvnet.backends.numpy import filter_acts as nfa
from cudaconvnet.backends.numpy import img_acts as nia
from cudaconvnet.backends.numpy import sparse_acts as nsa
from cudaconvnet.backends.numpy import weight_acts as nwa

EPS32 = float(np.finfo(np.float32).eps)
TOL_SQRT_K = 4.0
GOLDEN_REL_TOL = 1e-5
HOST_MODULES = (cfa, cia, cwa, csa)
GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden" / "kernels"

# (imgSizeY, imgSizeX, filterSize, padding, stride); modules per axis as layer.py counts
# them: 1 + ceil((2*padding + imgSize - filterSize) / stride)
GEOMETRIES = [
    (6, 6, 3, 1, 1),   # padding, stride 1
    (7, 7, 3, 0, 2),   # stride 2, the modules end exactly at the edge
    (8, 8, 3, 0, 2),   # the last module hangs one pixel past the edge
    (5, 5, 5, 2, 3),   # padding and stride 3; the last module hangs past the edge
    (9, 9, 4, 1, 3),   # an even filter size
    (4, 4, 1, 0, 1),   # 1x1 filters (fewer filter pixels than a block stages)
    (5, 7, 3, 1, 2),   # a rectangular image
]


def geometry(case):
    """(imgSizeY, imgSizeX, filterSize, padding, stride) of a case: its own ("geometry"),
    else GEOMETRIES[case["geo"]]."""
    return tuple(case["geometry"]) if "geometry" in case else GEOMETRIES[case["geo"]]


def modules(size, fs, pad, stride):
    return 1 + -(-(2 * pad + size - fs) // stride)


# ----------------------------------------------------------------------------------------
# the cases: every branch of every selector

def _dense_cases():
    out = []
    scales = [(0.0, 1.0), (0.5, 2.0), (0.0, 0.5), (1.0, -1.5)]
    # filterActs: imgsPerThread 4/2/1, checkImgBounds (20), colours 1-3 (color kernel),
    # 4, 6, grouped (sparse kernel), filtersPerThread 8/4
    for N, (C, G), Fg, sc, conv in itertools.product(
            (128, 64, 32, 20), ((1, 1), (2, 1), (3, 1), (4, 1), (6, 1), (4, 2), (16, 2)),
            (32, 16), scales[:2], (True, False)):
        out.append(dict(op="filterActs", conv=conv, N=N, C=C, G=G, F=Fg * G, st=sc[0], so=sc[1]))
    # imgActs: color (1-3), mediumcolor (4, 6, 12 colours; 4 per group), manycolor (8, 16;
    # 8, 16 per group); imgsPerThread 8/4/2 or 4/2/1 with and without case bounds
    for N, (C, G), Fg, sc, conv in itertools.product(
            (128, 64, 32, 16, 20), ((1, 1), (2, 1), (3, 1), (4, 1), (6, 1), (12, 1), (8, 2),
                                    (8, 1), (16, 1), (16, 2), (32, 2)),
            (16, 32), scales[:2], (True, False)):
        out.append(dict(op="imgActs", conv=conv, N=N, C=C, G=G, F=Fg * G, st=sc[0], so=sc[1]))
    # weightActs: c (1-3 colours, numFilters % 32), mc_mf (filters per group % 64 / % 32 /
    # 16, colours per group % 8), checkCaseBounds (20); conv with partial sums, and local
    for N, (C, G), Fg, sc, conv in itertools.product(
            (128, 20), ((1, 1), (2, 1), (3, 1), (4, 1), (8, 1), (8, 2), (16, 2)),
            (64, 32, 16), scales[:2], (True, False)):
        out.append(dict(op="weightActs", conv=conv, N=N, C=C, G=G, F=Fg * G, st=sc[0], so=sc[1]))
    return out


def _sparse_cases():
    out = []
    scales = [(0.0, 1.0), (0.5, 2.0)]
    # (numImgColors, numFilterColors, numGroups): overSample 1 or 2
    for N, (C, FC, G), Fg, sc, conv in itertools.product(
            (128, 64, 32, 20), ((4, 2, 2), (4, 2, 4), (8, 4, 4)), (32, 16), scales, (True, False)):
        out.append(dict(op="filterActsSparse", conv=conv, N=N, C=C, FC=FC, G=G, F=Fg * G, st=sc[0], so=sc[1]))
    for N, (C, FC, G), Fg, sc, conv in itertools.product(
            (128, 64, 32, 16, 20), ((8, 4, 4), (6, 6, 2), (12, 4, 3), (16, 8, 4), (16, 16, 2)),
            (16, 32), scales, (True, False)):
        out.append(dict(op="imgActsSparse", conv=conv, N=N, C=C, FC=FC, G=G, F=Fg * G, st=sc[0], so=sc[1]))
    for N, (C, FC, G), Fg, sc, conv in itertools.product(
            (128, 20), ((8, 4, 4), (8, 8, 2), (16, 8, 2)), (64, 32, 16), scales, (True, False)):
        out.append(dict(op="weightActsSparse", conv=conv, N=N, C=C, FC=FC, G=G, F=Fg * G, st=sc[0], so=sc[1]))
    return out


def case_launch(case):
    """The selector's launch for a case (pure Python)."""
    H, W, fs, pad, stride = GEOMETRIES[case["geo"]]
    nM = modules(H, fs, pad, stride) * modules(W, fs, pad, stride)
    op, N, C, G, F, st = case["op"], case["N"], case["C"], case["G"], case["F"], case["st"]
    if op == "filterActs":
        return cfa.select_filter_acts(N, F, C, G, nM, st)
    if op == "imgActs":
        return cia.select_img_acts(N, F, C, G, H, W, st, case["conv"])
    if op == "weightActs":
        return cwa.select_weight_acts(N, F, C, G, nM, case["partialSum"], fs, st)
    FC = case["FC"]
    if op == "filterActsSparse":
        return csa.select_filter_acts_sparse(N, F, C, FC, G, nM, st)
    if op == "imgActsSparse":
        return csa.select_img_acts_sparse(N, F, C, FC, G, H, W, st, case["conv"])
    return csa.select_weight_acts_sparse(N, F, C, FC, G, nM, case["partialSum"], fs, st)


def _build_cases():
    """One case per (instantiation, conv flag, op) among the products above, geometries
    and partial sums assigned round robin; the first filterActs and weightActs cases of
    each kernel also get strided (non-contiguous) images."""
    kept, seen = [], set()
    for c in _dense_cases() + _sparse_cases():
        c = dict(c, geo=len(kept) % len(GEOMETRIES))
        if c["op"].startswith("weightActs"):
            H, W, fs, pad, stride = GEOMETRIES[c["geo"]]
            nM = modules(H, fs, pad, stride) * modules(W, fs, pad, stride)
            mX = modules(W, fs, pad, stride)
            c["partialSum"] = 1 if not c["conv"] else (0, 1, mX, nM)[len(kept) % 4]
        launch = case_launch(c)
        key = (c["op"], c["conv"], launch.instantiation)
        if key in seen:
            continue
        seen.add(key)
        c["strided"] = c["op"] in ("filterActs", "weightActs", "filterActsSparse", "weightActsSparse") \
            and not any(k[2][1] == launch.name and k != key for k in seen)
        kept.append(c)
    return kept


def case_id(c):
    s = "%s-%s-N%d-C%d%s-G%d-F%d-geo%d-st%g" % (c["op"], "conv" if c["conv"] else "local", c["N"], c["C"],
                                                "-FC%d" % c["FC"] if "FC" in c else "", c["G"], c["F"], c["geo"],
                                                c["st"])
    if "partialSum" in c and c["conv"]:
        s += "-ps%d" % c["partialSum"]
    return s + ("-strided" if c["strided"] else "")


CASES = _build_cases()


def representative(cases):
    """A subset taking every kernel with every template-argument value, both conv flags,
    every op with every geometry, and strided images."""
    keep, have = [], set()
    for c in cases:
        launch = case_launch(c)
        feats = {(launch.name, i, v) for i, v in enumerate(launch.args)}
        feats |= {(launch.name, "conv", c["conv"]), (c["op"], "geo", c["geo"]), (c["op"], "strided", c["strided"])}
        if not feats <= have:
            keep.append(c)
            have |= feats
    return keep


EMULATE_ALL = os.environ.get("CUDACONVNET_EMULATE_ALL", "") not in ("", "0")
EMU_CASES = CASES if EMULATE_ALL else representative(CASES)


def test_cases_cover_every_instantiation():
    """The case table reaches every (file, kernel, template args) the selectors can return,
    and filterActs / weightActs kernels both as conv and as local."""
    want = set(cfa.INSTANTIATIONS + cia.INSTANTIATIONS + cwa.INSTANTIATIONS + csa.INSTANTIATIONS)
    got = {case_launch(c).instantiation for c in CASES}
    assert got == want, sorted(want - got)
    for name in ("filterActs_YxX_color", "filterActs_YxX_sparse", "filterActs_YxX_sparse_random",
                 "conv_weight_acts_c", "conv_weight_acts_mc_mf", "conv_weight_acts_mc_mf_rand"):
        assert {c["conv"] for c in CASES if case_launch(c).name == name} == {True, False}, name
    # and the emulated subset still takes every kernel and every template-argument value
    feats = lambda cs: {(case_launch(c).name, i, v) for c in cs for i, v in enumerate(case_launch(c).args)}
    assert feats(representative(CASES)) == feats(CASES)


# ----------------------------------------------------------------------------------------
# running one case on a device and on the reference

def _rand(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _perm_runs(rng, C, FC, G):
    """dColorIndices as the parser makes them: overSample runs, each a permutation of C."""
    overSample = FC * G // C
    return np.concatenate([rng.permutation(C) for _ in range(overSample)]).astype(np.int32)


def _operands(case, rng):
    """(name, reference function, device function, positional inputs, extra args, target
    shape, K) for a case."""
    op, conv, N, C, G, F = case["op"], case["conv"], case["N"], case["C"], case["G"], case["F"]
    H, W, fs, pad, stride = geometry(case)
    mY, mX = modules(H, fs, pad, stride), modules(W, fs, pad, stride)
    nM = mY * mX
    sparse = op.endswith("Sparse")
    FC = case["FC"] if sparse else C // G
    kind = "conv" if conv else "local"
    fp = fs * fs
    filt_rows = (1 if conv else nM) * FC * fp
    images = _rand(rng, (C * H * W, N))
    hid = _rand(rng, (F * nM, N))
    filters = _rand(rng, (filt_rows, F), 0.3)
    geo_args = (-pad, stride)
    colours = (_perm_runs(rng, C, FC, G),) if sparse else ()
    col_args = (C, FC, G) if sparse else (C, G)
    covering = math.ceil(fs / stride) ** 2
    if op.startswith("filterActs"):
        name = "%sFilterActs%s" % (kind, "Sparse" if sparse else "")
        ins = [("images", images), ("filters", filters)]
        extra = (H, mY, mX) + geo_args + col_args
        return name, ins, colours, extra, (F * nM, N), FC * fp
    if op.startswith("imgActs"):
        name = "%sImgActs%s" % (kind, "Sparse" if sparse else "")
        overSample = FC * G // C if sparse else 1
        ins = [("hidActs", hid), ("filters", filters)]
        extra = (H, W, mY) + geo_args + col_args
        return name, ins, colours, extra, (overSample * C * H * W, N), (F // G) * covering
    name = "%sWeightActs%s" % (kind, "Sparse" if sparse else "")
    ins = [("images", images), ("hidActs", hid)]
    ps = case["partialSum"]
    extra = (H, mY, mX, fs) + geo_args + col_args + ((ps,) if conv else ())
    sums = nM // (ps or nM) if conv else nM
    return name, ins, colours, extra, (sums * FC * fp, F), N * ((ps or nM) if conv else 1)


def _reference_module(name):
    return nsa if name.endswith("Sparse") else nfa if "FilterActs" in name else nia if "ImgActs" in name else nwa


def _device_module(name):
    return csa if name.endswith("Sparse") else cfa if "FilterActs" in name else cia if "ImgActs" in name else cwa


def put_strided(dev, a, extra, offset=0):
    """`a` on `dev` as columns [offset, offset + n) of a matrix `extra` columns wider (strided
    images: rows 3 floats longer, or the case's "pad", starting at its "offset")."""
    big = np.zeros((a.shape[0], a.shape[1] + extra), a.dtype)
    big[:, offset:offset + a.shape[1]] = a
    view = dev.put(big)[:, offset:offset + a.shape[1]]
    assert view.strides[0] == 4 * big.shape[1]
    return view


def check_case(dev, case):
    rng = np.random.default_rng(int(hashlib.sha256(case_id(case).encode()).hexdigest()[:8], 16))
    name, ins, colours, extra, tshape, K = _operands(case, rng)
    st, so = case["st"], case["so"]
    init = _rand(rng, tshape)
    ref_fn = getattr(_reference_module(name), name)
    # the reference, and the same sums over absolute values (the rounding scale S)
    ref = init.copy()
    ref_fn(*[a for _, a in ins], ref, *colours, *extra, st, so)
    absref = np.abs(init)
    ref_fn(*[np.abs(a) for _, a in ins], absref, *colours, *extra, abs(st), abs(so))
    # the device: targets start as NaN when they must not be read
    dev_ins = [put_strided(dev, a, case.get("pad", 3), case.get("offset", 0)) if (case["strided"] and n == "images")
               else dev.put(a) for n, a in ins]
    target = dev.put(init if st != 0 else np.full(tshape, np.nan, np.float32))
    dev_col = tuple(dev.put(c) for c in colours)
    getattr(_device_module(name), name)(*dev_ins, target, *dev_col, *extra, st, so)
    got = dev.get(target)
    assert got.shape == ref.shape
    assert np.isfinite(got).all(), "%s: non-finite outputs" % name
    err = np.abs(got.astype(np.float64) - ref)
    tol = case.get("tol_factor", 1.0) * TOL_SQRT_K     # (a variant may allow more: test_cuda_conv_gemm.py)
    bound = tol * math.sqrt(max(K, 1)) * EPS32 * absref.astype(np.float64) + 1e-37
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert (err <= bound).all(), "%s: |err| %.3g > bound %.3g at %s (ref %.6g, got %.6g; K=%d)" % (
        name, err[worst], bound[worst], worst, ref[worst], got[worst], K)


# ----------------------------------------------------------------------------------------
# the golden cases (outputs of the 2012 kernels)

def _golden_cases():
    mf = GOLDEN / "manifest.json"
    if not mf.exists():
        return []
    return [c for c in json.loads(mf.read_text())["cases"]
            if c["kernel"] in ("convFilterActs", "convImgActs", "convWeightActs",
                               "localFilterActs", "localImgActs", "localWeightActs")]


GOLDEN_CASES = _golden_cases()
# emulating these takes minutes (224x224 images): only with CUDACONVNET_EMULATE_ALL
EMU_HEAVY_GOLDEN = ("conv1_geom_n4",)


def _load(spec):
    return np.fromfile(GOLDEN / spec["file"], dtype="<f4").reshape(spec["shape"]).copy()


def check_golden(dev, case):
    k, a = case["kernel"], case["args"]
    i = {name: _load(spec) for name, spec in case["inputs"].items()}
    spec = case["outputs"]["targets"]
    gold = _load(spec)
    init = i.pop("targets_init", None)
    target = dev.put(init if init is not None else np.full(spec["shape"], np.nan, np.float32))
    if "FilterActs" in k:
        args = (dev.put(i["images"]), dev.put(i["filters"]), target, a["imgSizeY"], a["numModulesY"],
                a["numModulesX"], a["paddingStart"], a["moduleStride"], a["numImgColors"], a["numGroups"])
    elif "ImgActs" in k:
        args = (dev.put(i["hidActs"]), dev.put(i["filters"]), target, a["imgSizeY"], a["imgSizeX"],
                a["numModulesY"], a["paddingStart"], a["moduleStride"], a["numImgColors"], a["numGroups"])
    else:
        args = (dev.put(i["images"]), dev.put(i["hidActs"]), target, a["imgSizeY"], a["numModulesY"],
                a["numModulesX"], a["filterSize"], a["paddingStart"], a["moduleStride"], a["numImgColors"],
                a["numGroups"]) + ((a["partialSum"],) if k == "convWeightActs" else ())
    getattr(_device_module(k), k)(*args, a["scaleTargets"], a["scaleOutput"])
    got = dev.get(target)
    assert np.isfinite(got).all()
    err = float(np.abs(got.astype(np.float64) - gold).max())
    scale = float(np.abs(gold).max())
    assert err <= GOLDEN_REL_TOL * scale, "%s: max|err| %.3g > %g * max|golden| %.3g" % (
        case["name"], err, GOLDEN_REL_TOL, scale)


# ----------------------------------------------------------------------------------------
# the GPU

class GPU:
    """Inputs on the GPU as pycuda GPUArrays."""

    def __init__(self):
        from cudaconvnet.backends import cuda
        cuda.use_device()
        from pycuda import gpuarray
        self.gpuarray = gpuarray

    def put(self, a):
        return self.gpuarray.to_gpu(np.ascontiguousarray(a))

    def get(self, d):
        return d.get()


@pytest.fixture(scope="session")
def gpu(cuda_kernels):
    return GPU()


@pytest.mark.cuda
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_gpu(gpu, case):
    check_case(gpu, case)


@pytest.mark.cuda
@pytest.mark.parametrize("case", GOLDEN_CASES, ids=[c["name"] for c in GOLDEN_CASES])
def test_gpu_golden(gpu, case):
    check_golden(gpu, case)


@pytest.mark.cuda
def test_gpu_host_colour_list(gpu):
    """dColorIndices given as a host array is checked and uploaded."""
    case = next(c for c in CASES if c["op"] == "filterActsSparse")
    rng = np.random.default_rng(7)
    name, ins, colours, extra, tshape, _ = _operands(case, rng)
    ref = np.zeros(tshape, np.float32)
    getattr(nsa, name)(*[a for _, a in ins], ref, *colours, *extra)
    target = gpu.put(np.zeros(tshape, np.float32))
    getattr(csa, name)(*[gpu.put(a) for _, a in ins], target, colours[0].tolist(), *extra)
    assert np.allclose(gpu.get(target), ref, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="permutations"):
        bad = colours[0].copy()
        bad[1] = bad[0]
        getattr(csa, name)(*[gpu.put(a) for _, a in ins], target, bad, *extra)


# ----------------------------------------------------------------------------------------
# the CPU emulation (tests/cuda_emulation.py)

@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    emu = make_emulator(tmp_path_factory.mktemp("cuda_emulation"))
    emu.build([case_launch(c).instantiation for c in EMU_CASES])
    return emu


@pytest.fixture
def emu(emulator, monkeypatch):
    for mod in HOST_MODULES:
        monkeypatch.setattr(mod, "run", emulator.run)
    return emulator


@pytest.mark.slow
@pytest.mark.parametrize("case", EMU_CASES, ids=[case_id(c) for c in EMU_CASES])
def test_emulated(emu, case):
    check_case(emu, case)


@pytest.mark.slow
@pytest.mark.parametrize("case", GOLDEN_CASES, ids=[c["name"] for c in GOLDEN_CASES])
def test_emulated_golden(emu, case):
    if case["name"].split(".")[0] in EMU_HEAVY_GOLDEN and not EMULATE_ALL:
        pytest.skip("takes minutes under emulation (CUDACONVNET_EMULATE_ALL=1 runs it)")
    check_golden(emu, case)
