"""cuda_src/cudaconv2/{filter_acts,img_acts,weight_acts}.cu compile with nvcc, with every
template instantiation the selectors can return (no GPU needed; skipped without nvcc).

Each file is compiled once to PTX for sm_90 with all its instantiations (loader.build_source
+ loader.compile_ptx_with_nvcc, the loader's own options), and loader.entry_name must find
every one. Measured with nvcc 13.0 on 2 CPU cores: filter_acts.cu (80 instantiations) 5 s,
img_acts.cu (176) 19 s, weight_acts.cu (72) 24 s; the three files compile in parallel here.

Then the host code's argument lists are checked against the compiled kernels: for one call
of every public function per kernel it can pick (recorded instead of launched), the
argument types must match the .entry parameters in the PTX one for one (pointer: .u64,
int: .u32/.s32, float: .f32, bool: .u8).
"""
import re
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from cuda_emulation import FakeGPUArray  # the stand-in the emulation uses too

from cudaconvnet.backends.cuda import filter_acts as cfa
from cudaconvnet.backends.cuda import img_acts as cia
from cudaconvnet.backends.cuda import loader
from cudaconvnet.backends.cuda import sparse_acts as csa
from cudaconvnet.backends.cuda import weight_acts as cwa

pytestmark = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")

FILES = ("cudaconv2/filter_acts.cu", "cudaconv2/img_acts.cu", "cudaconv2/weight_acts.cu")


def instantiations(filename):
    every = cfa.INSTANTIATIONS + cia.INSTANTIATIONS + cwa.INSTANTIATIONS + csa.INSTANTIATIONS
    return [(n, a) for f, n, a in every if f == filename]


@pytest.fixture(scope="module")
def ptx():
    """{file: PTX with all its instantiations}; the files compile in parallel."""
    def one(f):
        return loader.compile_ptx_with_nvcc(loader.build_source(f, instantiations(f)))
    with ThreadPoolExecutor(max_workers=len(FILES)) as pool:
        return dict(zip(FILES, pool.map(one, FILES)))


@pytest.mark.parametrize("filename", FILES)
def test_every_instantiation_compiles(ptx, filename):
    insts = instantiations(filename)
    assert insts
    names = {loader.entry_name(ptx[filename], n, a) for n, a in insts}
    assert len(names) == len(insts)   # one distinct entry point each


def test_header_compiles_alone():
    loader.compile_ptx_with_nvcc('#include "cudaconv2/cudaconv2.cuh"\n'
                                 '__global__ void k(int* x) { x[0] = DIVUP(x[1], 4) + MIN(x[2], 3); }\n')


# ----------------------------------------------------------------------------------------
# host argument lists against the PTX parameters

def z(*shape, dtype=np.float32):
    return FakeGPUArray(np.zeros(shape, dtype))


def conns(C, FC, G):
    return FakeGPUArray(np.concatenate([np.arange(C)] * (FC * G // C)).astype(np.int32))


# 8x8 images, 3x3 filters, padding 1, stride 1: 64 modules; 128 images
CALLS = [
    # dense filterActs: color and sparse kernels, conv and local
    lambda: cfa.convFilterActs(z(3 * 64, 128), z(27, 32), z(32 * 64, 128), 8, 8, 8, -1, 1, 3, 1),
    lambda: cfa.localFilterActs(z(4 * 64, 128), z(64 * 36, 32), z(32 * 64, 128), 8, 8, 8, -1, 1, 4, 1, 1.0, 1.0),
    # imgActs: color, mediumcolor, manycolor
    lambda: cia.convImgActs(z(32 * 64, 128), z(27, 32), z(3 * 64, 128), 8, 8, 8, -1, 1, 3, 1),
    lambda: cia.localImgActs(z(32 * 64, 128), z(64 * 36, 32), z(4 * 64, 128), 8, 8, 8, -1, 1, 4, 1),
    lambda: cia.convImgActs(z(32 * 64, 128), z(144, 32), z(16 * 64, 128), 8, 8, 8, -1, 1, 16, 1, 0.5, 1.0),
    # weightActs: c and mc_mf
    lambda: cwa.convWeightActs(z(3 * 64, 128), z(32 * 64, 128), z(8 * 27, 32), 8, 8, 8, 3, -1, 1, 3, 1, 8),
    lambda: cwa.localWeightActs(z(8 * 64, 20), z(32 * 64, 20), z(64 * 72, 32), 8, 8, 8, 3, -1, 1, 8, 1),
    # sparse: filterActs, imgActs (mediumcolor, manycolor), weightActs
    lambda: csa.convFilterActsSparse(z(4 * 64, 128), z(18, 64), z(64 * 64, 128), conns(4, 2, 2), 8, 8, 8, -1, 1,
                                     4, 2, 2),
    lambda: csa.localImgActsSparse(z(64 * 64, 128), z(64 * 36, 64), z(2 * 4 * 64, 128), conns(4, 4, 2), 8, 8, 8,
                                   -1, 1, 4, 4, 2),
    lambda: csa.convImgActsSparse(z(64 * 64, 64), z(72, 64), z(2 * 8 * 64, 64), conns(8, 8, 2), 8, 8, 8, -1, 1,
                                  8, 8, 2),
    lambda: csa.convWeightActsSparse(z(8 * 64, 128), z(64 * 64, 128), z(8 * 36, 64), conns(8, 4, 2), 8, 8, 8, 3,
                                     -1, 1, 8, 4, 2, 8),
]

PTX_TYPE = {np.dtype(np.uintp): {"u64", "b64", "s64"}, np.dtype(np.int32): {"u32", "s32", "b32"},
            np.dtype(np.float32): {"f32"}, np.dtype(np.uint8): {"u8", "s8", "b8"}}


def _params(ptx_text, entry):
    start = ptx_text.index(".entry %s(" % entry)
    body = ptx_text[start:ptx_text.index(")", start)]
    return re.findall(r"\.param\s+\.(\w+)\s", body)


def test_host_arguments_match_kernel_parameters(ptx, monkeypatch):
    recorded = []
    for mod in (cfa, cia, cwa, csa):
        monkeypatch.setattr(mod, "run", lambda launch, args: recorded.append((launch, args)))
    for call in CALLS:
        call()
    assert len(recorded) == len(CALLS)
    kernels = {launch.name for launch, _ in recorded}
    assert kernels == {n for f in FILES for n, _ in instantiations(f)}   # every kernel once at least
    for launch, args in recorded:
        params = _params(ptx[launch.file], loader.entry_name(ptx[launch.file], launch.name, launch.args))
        assert len(params) == len(args), (launch.name, params, args)
        for i, (p, a) in enumerate(zip(params, args)):
            assert p in PTX_TYPE[np.asarray(a).dtype], (launch.name, i, p, np.asarray(a).dtype)
