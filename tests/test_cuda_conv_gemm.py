"""The "gemm", "winograd" and "implicit" conv kernels (host code backends/cuda/conv_gemm.py,
conv_winograd.py and conv_implicit.py, kernels cuda_src/cudaconv2/unfold.cu, winograd.cu
and implicit_gemm.cu, the products of the first two by cuBLAS; chosen by set_conv_kernels)
against the NumPy reference, with the tolerance and the case runner of
tests/test_cuda_conv.py.

The cases take every path of the host code: groups, strided images, scaled and NaN
(unread) targets, numbers of filters and images that the 2012 kernels refuse (5 filters per
group, 20 images), partial sums that do and do not follow module rows, and module chunks:
the whole call in one chunk, several chunks of whole partial sums, and partial sums split
across chunks (a tiny workspace forces the last two). The winograd cases are 3x3 filters
at stride 1 (its own kernels: odd and even output sizes, so tiles that hang past the edge,
paddings 0, 1 and 2) and, for weightActs and other filters, the gemm path it falls back to.
The implicit cases take 13 or 128 images (16-byte accesses and single ones), 8 to 72
filters and colours per group (both tile widths), each case once with registers and once
with asynchronous copies (under the emulation, copies that land when their wait returns:
see tests/cuda_emulation.py), strided images whose row stride does and does not divide by
4, and which start 16-byte aligned or 4 bytes past it, and for weightActs partial sums in
one slice, in several, and, with 'tiny', cut into slices of a few products each. The
"fastest" cases run each pass on a winograd geometry and a stride-2 one, and check which
variant's kernels each launches (conv_gemm.FASTEST).

  test_gpu[...]        on the GPU: the kernels and cuBLAS (marker `cuda`);
  test_emulated[...]   the kernels under the CPU emulation of tests/cuda_emulation.py, the
                       products by the emulated kSgemm kernel (cuBLAS is off there).
"""
import itertools
import re
from types import SimpleNamespace

import pytest
from cuda_emulation import emulate_backend, make_emulator
from test_cuda_conv import GEOMETRIES, GPU, check_case, modules
from test_cuda_util_selectors import kernel_signatures

from cudaconvnet.backends.cuda import conv_gemm, conv_implicit, conv_winograd, nvmatrix
from cudaconvnet.backends.cuda.loader import CUDA_SRC

# test_cuda_conv's geometries, then 3x3 stride-1 ones for Winograd: AlexNet's conv3-5 (an odd
# output, so the last tiles hang past the edge), no padding with a rectangular image, padding
# 2 (modules past both edges), and a 2x3 image (one row of tiles)
GEOMETRIES = GEOMETRIES + [(13, 13, 3, 1, 1), (7, 5, 3, 0, 1), (5, 5, 3, 2, 1), (2, 3, 3, 1, 1)]
WINOGRAD_GEOMETRIES = [i for i, (H, W, fs, pad, stride) in enumerate(GEOMETRIES) if fs == 3 and stride == 1]
# Winograd rounds more than a direct sum: the 4x4 input tiles are sums and differences of up
# to 4 inputs and the filter taps of up to 3, before the products, and each output sums 9
# products after them, so its errors scale with those larger intermediate values rather than
# with the sum S of |terms| of test_cuda_conv's bound. We allow WINOGRAD_TOL_FACTOR times
# that bound: with K = 9 terms a missing or doubled product (about S / 9) is still over a
# thousand times larger than what this allows.
WINOGRAD_TOL_FACTOR = 8.0
SCALES = [(0.0, 1.0), (0.5, 2.0), (0.0, 0.5), (1.0, -1.5)]
# the 2012 conv kernels, which no case here may launch
KERNELS_2012 = ("filterActs_YxX_color", "filterActs_YxX_sparse", "img_acts_color", "img_acts_mediumcolor",
                "img_acts_manycolor", "conv_weight_acts_c", "conv_weight_acts_mc_mf")


def _cases():
    out = []
    groups = ((1, 1, 16), (3, 1, 16), (4, 2, 5), (6, 3, 8), (2, 1, 32))     # (colours, groups, filters per group)
    # implicit also: 72 filters and 72 colours, which take its 128-wide tiles (fewer take 64)
    implicit_groups = groups + ((2, 1, 72), (72, 1, 8))
    i = -1
    for variant, op, (C, G, Fg), N in itertools.chain(
            itertools.product(("gemm", "winograd"), ("filterActs", "imgActs", "weightActs"), groups, (20, 128)),
            itertools.product(("implicit",), ("filterActs", "imgActs", "weightActs"), implicit_groups, (13, 128))):
        for chunking in ("whole", "tiny"):
            i += 1
            if chunking == "tiny" and op != "weightActs" and variant != "gemm":
                continue            # winograd does not chunk, implicit slices weightActs only
            if variant == "winograd" and op != "weightActs":
                geo = WINOGRAD_GEOMETRIES[i % len(WINOGRAD_GEOMETRIES)]
            else:
                geo = i % len(GEOMETRIES)
            st, so = SCALES[i % len(SCALES)]
            c = dict(variant=variant, op=op, conv=True, N=N, C=C, G=G, F=Fg * G, st=st, so=so, geo=geo,
                     geometry=GEOMETRIES[geo], chunking=chunking,
                     strided=op != "imgActs" and i % 3 == (2 if variant == "implicit" else 0))
            if variant == "winograd" and op != "weightActs":
                c["tol_factor"] = WINOGRAD_TOL_FACTOR
            if op == "weightActs":
                H, W, fs, pad, stride = GEOMETRIES[geo]
                mY, mX = modules(H, fs, pad, stride), modules(W, fs, pad, stride)
                divisors = [d for d in range(2, mY * mX) if (mY * mX) % d == 0 and d != mX]
                c["partialSum"] = (0, 1, mX, mY * mX, divisors[0] if divisors else 1)[i % 5]
            if variant == "implicit":   # each case with registers and with asynchronous copies
                out += [dict(c, async_copies=False), dict(c, async_copies=True)]
                if c["strided"] and N % 4 == 0:
                    # rows 4 floats longer: 16-byte accesses (the others' 3 rule them out),
                    # unless the images start 4 bytes past a 16-byte boundary (offset 1)
                    out += [dict(c, async_copies=False, pad=4), dict(c, async_copies=False, pad=4, offset=1),
                            dict(c, async_copies=True, pad=4, offset=1)]
            else:
                out.append(c)
    return out


def _fastest_cases():
    """"fastest" on a 3x3 stride-1 geometry (winograd's) and a stride-2 one, each pass."""
    out = []
    for op in ("filterActs", "imgActs", "weightActs"):
        base = next(c for c in CASES if c["variant"] == "gemm" and c["op"] == op and c["chunking"] == "whole" and
                    c["N"] == 128 and c["G"] == 1)
        for geo in (WINOGRAD_GEOMETRIES[0], 2):
            c = dict(base, variant="fastest", geo=geo, geometry=GEOMETRIES[geo])
            if op == "weightActs":
                c["partialSum"] = 0
            elif geo in WINOGRAD_GEOMETRIES:
                c["tol_factor"] = WINOGRAD_TOL_FACTOR
            out.append(c)
    return out


CASES = _cases()
CASES += _fastest_cases()


def case_id(c):
    s = "%s-%s-N%d-C%d-G%d-F%d-geo%d-st%g-%s" % (c["variant"], c["op"], c["N"], c["C"], c["G"], c["F"], c["geo"],
                                               c["st"], c["chunking"])
    if "partialSum" in c:
        s += "-ps%d" % c["partialSum"]
    s += ("-strided" if c["strided"] else "") + ("-pad%d" % c["pad"] if "pad" in c else "")
    return s + ("-offset%d" % c["offset"] if c.get("offset") else "") + ("-async" if c.get("async_copies") else "")


def _configure(monkeypatch, case):
    """The case's conv kernels; with 'tiny', room for the columns of 3 modules, so that the
    modules go in several chunks and partial sums of more than 3 modules are split across
    chunks; for implicit, its copies, and with 'tiny' slices of 24 products (several per
    partial sum, the last one short)."""
    monkeypatch.setattr(conv_gemm, "_variant", case["variant"])
    monkeypatch.setattr(conv_implicit, "_async", case.get("async_copies", False))
    if case["variant"] == "implicit" and case["chunking"] == "tiny":
        monkeypatch.setattr(conv_implicit, "MIN_BLOCKS", 1 << 30)
        monkeypatch.setattr(conv_implicit, "MIN_SLICE", 24)
    elif case["chunking"] == "tiny":
        H, W, fs, pad, stride = case["geometry"]
        floats = 3 * case["C"] * fs * fs * case["N"]
        monkeypatch.setenv("CUDACONVNET_GEMM_WORKSPACE_MB", repr((4 * floats + 2) / float(1 << 20)))
    else:
        monkeypatch.delenv("CUDACONVNET_GEMM_WORKSPACE_MB", raising=False)


def test_cases_take_every_chunking_path():
    def plan(c):
        H, W, fs, pad, stride = c["geometry"]
        M = modules(H, fs, pad, stride) * modules(W, fs, pad, stride)
        fit = 3 if c["chunking"] == "tiny" else M
        ps = c.get("partialSum") or M
        chunks = len(range(0, M, fit)) if fit < ps else -(-M // (fit // ps * ps))
        return chunks > 1, fit < ps
    paths = {(c["op"],) + plan(c) for c in CASES}
    for op in ("filterActs", "imgActs"):
        assert {(op, False, False), (op, True, True)} <= paths     # (no partial sums: ps = all modules)
    assert {("weightActs", False, False), ("weightActs", True, False), ("weightActs", True, True)} <= paths
    # winograd: every 3x3 stride-1 geometry, both passes, groups and image counts
    wino = [c for c in CASES if c["variant"] == "winograd" and c["op"] != "weightActs"]
    for op in ("filterActs", "imgActs"):
        assert {c["geo"] for c in wino if c["op"] == op} == set(WINOGRAD_GEOMETRIES)
        assert {(c["G"], c["N"]) for c in wino if c["op"] == op} >= {(1, 20), (1, 128), (2, 20), (3, 128)}


def _geometry(c):
    H, W, fs, pad, stride = c["geometry"]
    M = modules(H, fs, pad, stride) * modules(W, fs, pad, stride)
    return SimpleNamespace(numImages=c["N"], numGroups=c["G"], numFiltersPerGroup=c["F"] // c["G"], numModules=M,
                           Kg=c["C"] // c["G"] * fs * fs)


def implicit_targs(c):
    """The template arguments (tile width, async, vecA, vecB) conv_implicit should pick for
    case c: 64-wide tiles for up to 64 filters per group (colours per group for imgActs),
    the case's choice of copies, and 16-byte accesses where numImages, the image row stride
    (numImages + pad when strided, pad 3 unless the case says) and, for the filters, the
    filter counts divide by 4, and the images start 16-byte aligned (as the test arrays do,
    unless the case gives them an offset)."""
    Fg = c["F"] // c["G"]
    width = 64 if (c["C"] // c["G"] if c["op"] == "imgActs" else Fg) <= 64 else 128
    images4 = c["N"] % 4 == 0 and (not c["strided"] or (c.get("pad", 3) % 4 == 0 and not c.get("offset")))
    filters4 = c["F"] % 4 == 0 and Fg % 4 == 0
    if c["op"] == "weightActs":
        return width, c["async_copies"], images4, c["N"] % 4 == 0
    return width, c["async_copies"], filters4, images4 if c["op"] == "filterActs" else c["N"] % 4 == 0


def test_implicit_cases_take_every_template_and_slicing():
    """Every tile width, both kinds of copies and every (vecA, vecB) of each kernel (not
    every combination), and weightActs in one slice and in several."""
    implicit = [c for c in CASES if c["variant"] == "implicit"]
    for op in ("filterActs", "imgActs", "weightActs"):
        want = {lc[2] for lc in conv_implicit.INSTANTIATIONS if lc[1].endswith(op[0].upper() + op[1:])}
        got = {implicit_targs(c) for c in implicit if c["op"] == op}
        assert got <= want, op
        for part in (slice(0, 1), slice(1, 2), slice(2, 4)):
            assert {t[part] for t in got} == {t[part] for t in want}, (op, part)
    assert [conv_implicit.tile_width(n) for n in (5, 48, 64, 65, 72, 128, 129, 192, 256)] == [
        64, 64, 64, 128, 128, 128, 64, 64, 128]

    def slices(c):
        g = _geometry(c)
        return conv_implicit.slicing(g, c["partialSum"] or g.numModules)[0]
    whole = [slices(c) for c in implicit if c["op"] == "weightActs" and c["chunking"] == "whole"]
    assert 1 in whole and max(whole) > 1
    assert all(conv_implicit.fits(_geometry(c), c["partialSum"]) for c in implicit if c["op"] == "weightActs")


def test_implicit_slicing():
    g = SimpleNamespace(numImages=128, numGroups=2, numFiltersPerGroup=48, numModules=3025, Kg=363)  # AlexNet conv1
    # one partial sum: 6 blocks, so 86 slices (512 blocks wanted) of a multiple of 8 products
    n, length = conv_implicit.slicing(g, 3025)
    assert n == 86 and length % 8 == 0 and (n - 1) * length < 3025 * 128 <= n * length
    assert conv_implicit.slicing(g, 5) == (1, 5 * 128)           # 605 partial sums fill the GPU alone
    small = SimpleNamespace(numImages=13, numGroups=1, numFiltersPerGroup=16, numModules=4, Kg=27)
    assert conv_implicit.slicing(small, 4) == (1, 56)           # 52 products: too few to cut
    huge = SimpleNamespace(numImages=128, numGroups=1, numFiltersPerGroup=64, numModules=3025, Kg=147 * 128 + 1)
    assert not conv_implicit.fits(huge, 1) and conv_implicit.fits(huge, 3025)   # 148 * 3025 rows of blocks


@pytest.mark.parametrize("mod", [conv_gemm, conv_winograd, conv_implicit], ids=lambda m: m.__name__.rsplit(".")[-1])
def test_formats_and_constants_match_the_kernels(mod):
    """The struct codes the host packs arguments with are the kernels' parameter types, and
    the block and tile sizes it plans with are the file's."""
    sigs = kernel_signatures(CUDA_SRC / mod.SRC)
    for _, kernel, _ in mod.INSTANTIATIONS:
        assert mod.FORMATS[kernel] == sigs[kernel], kernel
    defines = dict(re.findall(r"#define\s+(\w+)\s+(\d+)", (CUDA_SRC / mod.SRC).read_text()))
    prefix = {conv_gemm: "UNFOLD", conv_winograd: "WINOGRAD", conv_implicit: "IG"}[mod]
    for name in ("THREADS", "TILE", "DEPTH"):
        if hasattr(mod, name):
            assert int(defines["%s_%s" % (prefix, name)]) == getattr(mod, name), name


def test_module_chunks(monkeypatch):
    monkeypatch.setenv("CUDACONVNET_GEMM_WORKSPACE_MB", repr(40 / float(1 << 20)))   # 10 floats
    # without partial sums every module adds into one sum: only the first chunk overwrites
    assert conv_gemm.module_chunks(7, 5) == [(0, 2, True), (2, 4, False), (4, 6, False), (6, 7, False)]
    assert conv_gemm.module_chunks(12, 2, partialSum=4) == [(0, 4, True), (4, 8, True), (8, 12, True)]
    assert conv_gemm.module_chunks(12, 1, partialSum=4) == [(0, 8, True), (8, 12, True)]
    assert conv_gemm.module_chunks(8, 3, partialSum=4) == [(0, 3, True), (3, 4, False), (4, 7, True),
                                                           (7, 8, False)]
    assert conv_gemm.module_chunks(3, 100) == [(0, 1, True), (1, 2, False), (2, 3, False)]  # one module at least


def test_set_conv_kernels():
    before = conv_gemm.conv_kernels()
    try:
        for name in ("gemm", "winograd", "implicit", "fastest"):
            conv_gemm.set_conv_kernels(name)
            assert conv_gemm.active() and conv_gemm.conv_kernels() == name
        conv_gemm.set_conv_kernels("2012")
        assert not conv_gemm.active()
        with pytest.raises(ValueError, match="2012, gemm, winograd, implicit, fastest"):
            conv_gemm.set_conv_kernels("fast")
    finally:
        conv_gemm.set_conv_kernels(before)


# ----------------------------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_gpu(cuda_kernels, monkeypatch, case):
    _configure(monkeypatch, case)
    check_case(GPU(), case)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    emu = make_emulator(tmp_path_factory.mktemp("gemm_emulation"))
    sgemm = [nvmatrix.select_sgemm(ta, tb, 1, 1)[:3] for ta in (False, True) for tb in (False, True)]
    scale = [nvmatrix.select_eltwise(1, op, 1, 1)[:3] for op in ("NVMatrixOps_Zero", "NVMatrixOps_MultByScalar")]
    emu.build(conv_gemm.INSTANTIATIONS + conv_winograd.INSTANTIATIONS + conv_implicit.INSTANTIATIONS + sgemm + scale)
    return emu


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_emulated(emulator, monkeypatch, case):
    emulate_backend(monkeypatch, emulator)
    _configure(monkeypatch, case)
    start = len(emulator.launches)
    check_case(emulator, case)
    names = {k for _, k, _ in emulator.launches[start:]}
    assert not names & set(KERNELS_2012)
    if case["variant"] == "fastest":
        assert names & CONV_FAMILIES == fastest_kernels(case), names
        return
    if case["variant"] == "implicit":
        kernel = "kImplicit" + case["op"][0].upper() + case["op"][1:]
        assert {(k, a) for _, k, a in emulator.launches[start:] if k.startswith("kImplicit")} == {
            (kernel, implicit_targs(case))}
        assert not names & {"kSgemm", "kIm2Col", "kCol2Im"}
        return
    winograd = case["variant"] == "winograd" and case["op"] != "weightActs"
    assert "kSgemm" in names
    assert names & {"kIm2Col", "kCol2Im"} if not winograd else names >= {"kWinogradFilters", "kWinogradInputs",
                                                                        "kWinogradOutputs"}


# the conv kernels of the three variants (other launches: scaling, sums of slices)
CONV_FAMILIES = {"kWinogradFilters", "kWinogradInputs", "kWinogradOutputs", "kSgemm", "kIm2Col", "kCol2Im",
                 "kImplicitFilterActs", "kImplicitImgActs", "kImplicitWeightActs"}


def fastest_kernels(case):
    """The conv kernels "fastest" launches for a case (conv_gemm.FASTEST)."""
    winograd = case["geo"] in WINOGRAD_GEOMETRIES and case["op"] != "weightActs"
    if winograd:
        return {"kWinogradFilters", "kWinogradInputs", "kWinogradOutputs", "kSgemm"}
    return {"filterActs": {"kImplicitFilterActs"}, "imgActs": {"kSgemm", "kCol2Im"},
            "weightActs": {"kImplicitWeightActs"}}[case["op"]]


def test_fastest_cases_take_each_rule():
    fastest = [c for c in CASES if c["variant"] == "fastest"]
    assert {(c["op"], c["geo"] in WINOGRAD_GEOMETRIES) for c in fastest} == {
        (op, w) for op in ("filterActs", "imgActs", "weightActs") for w in (False, True)}
    assert set(conv_gemm.FASTEST.values()) <= {"gemm", "implicit"}


def test_implicit_copies_by_kernel(monkeypatch):
    """On a GPU with cp.async, filterActs and imgActs take the pipeline and weightActs its
    registers, unless CUDACONVNET_IMPLICIT_ASYNC or set_async_copies fixes all three."""
    kernels = conv_implicit.KERNELS
    monkeypatch.setattr(conv_implicit, "_async", None)
    monkeypatch.delenv("CUDACONVNET_IMPLICIT_ASYNC", raising=False)
    monkeypatch.setattr(conv_implicit, "_has_async", True)
    assert [conv_implicit.async_copies(k) for k in kernels] == [True, True, False]
    monkeypatch.setattr(conv_implicit, "_has_async", False)
    assert [conv_implicit.async_copies(k) for k in kernels] == [False, False, False]
    for env in ("0", "1"):
        monkeypatch.setenv("CUDACONVNET_IMPLICIT_ASYNC", env)
        assert [conv_implicit.async_copies(k) for k in kernels] == [env == "1"] * 3
    monkeypatch.setenv("CUDACONVNET_IMPLICIT_ASYNC", "0")
    conv_implicit.set_async_copies(True)
    try:
        assert [conv_implicit.async_copies(k) for k in kernels] == [True] * 3
    finally:
        conv_implicit.set_async_copies(None)


@pytest.mark.parametrize("variant", ["gemm", "winograd", "implicit", "fastest"])
def test_emulated_no_images_and_bad_groups(emulator, monkeypatch, variant):
    """No images: fprop and imgActs leave targets alone, weightActs scales them (as the
    2012 functions do); filters that do not split into the groups are refused by name."""
    import numpy as np
    be = emulate_backend(monkeypatch, emulator)
    monkeypatch.setattr(conv_gemm, "_variant", variant)
    rng = np.random.default_rng(3)
    images, hid = be.array(np.zeros((2 * 25, 0), np.float32)), be.array(np.zeros((8 * 25, 0), np.float32))
    filters = be.array(rng.standard_normal((2 * 9, 8)).astype(np.float32))
    acts = be.array(np.zeros((8 * 25, 0), np.float32))
    be.convFilterActs(images, filters, acts, 5, 5, 5, -1, 1, 2, 1, 0.0, 1.0)
    be.convImgActs(hid, filters, images, 5, 5, 5, -1, 1, 2, 1, 0.0, 1.0)
    grads = rng.standard_normal((2 * 9, 8)).astype(np.float32)
    target = be.array(grads)
    be.convWeightActs(images, hid, target, 5, 5, 5, 3, -1, 1, 2, 1, 0, 0.5, 1.0)
    assert np.array_equal(be.to_host(target), grads * np.float32(0.5))
    with pytest.raises(ValueError, match="convFilterActs: numFilters by numGroups"):
        be.convFilterActs(be.array(np.zeros((2 * 25, 4), np.float32)), be.array(np.zeros((9, 7), np.float32)),
                          be.array(np.zeros((7 * 25, 4), np.float32)), 5, 5, 5, -1, 1, 2, 2, 0.0, 1.0)
