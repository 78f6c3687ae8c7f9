"""Every instantiation the host modules conv_util / layer_kernels / nvmatrix / conv_gemm /
conv_winograd / conv_implicit can ask for compiles with nvcc, and the loader finds each one's entry point in
the PTX.

Runs where nvcc is on PATH (CI has it; no GPU needed), skips elsewhere. One nvcc run per
cuda_src file, with all of that file's INSTANTIATIONS forced, through the loader's own
build_source / compile_ptx_with_nvcc / entry_name. Measured on the development machine
(nvcc 13.0, sm_90): conv_util.cu 163 instances ~12 s, nvmatrix_kernels.cu 112 ~13 s,
layer_kernels.cu 16 ~1 s. CUDACONVNET_COMPILE_ARCHS (e.g. "sm_70 sm_90") compiles for
more architectures (each one as long again).

Also: the Philox generator of nvmatrix_kernels.cu, compiled for the host by nvcc, gives
the published known answers.
"""
import os
import shutil
import subprocess
import time
from collections import defaultdict

import pytest

from cudaconvnet.backends.cuda import (conv_gemm, conv_implicit, conv_util, conv_winograd, layer_kernels, loader,
                                       nvmatrix)

pytestmark = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")

ARCHS = os.environ.get("CUDACONVNET_COMPILE_ARCHS", "sm_90").split()


def _by_file():
    by = defaultdict(list)
    for mod in (conv_util, layer_kernels, nvmatrix, conv_gemm, conv_winograd, conv_implicit):
        for f, k, a in mod.INSTANTIATIONS:
            by[f].append((k, a))
    return dict(by)


FILES = _by_file()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("filename", sorted(FILES))
def test_compiles_with_every_instantiation(filename, arch):
    inst = FILES[filename]
    t0 = time.time()
    ptx = loader.compile_ptx_with_nvcc(loader.build_source(filename, inst), arch=arch)
    seconds = time.time() - t0
    missing = []
    for kernel, args in inst:
        try:
            loader.entry_name(ptx, kernel, args)
        except LookupError as e:
            missing.append(str(e))
    assert not missing, missing
    print("%s (%s): %d instantiations compiled in %.1f s" % (filename, arch, len(inst), seconds))


KAT_PROGRAM = r"""
#include "nvmatrix/nvmatrix_kernels.cu"
#include <cstdio>
int main() {
    const uint4 c[3] = {make_uint4(0, 0, 0, 0), make_uint4(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu),
                        make_uint4(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u)};
    const uint2 k[3] = {make_uint2(0, 0), make_uint2(0xffffffffu, 0xffffffffu),
                        make_uint2(0xa4093822u, 0x299f31d0u)};
    for (int i = 0; i < 3; i++) {
        const uint4 r = philox4x32_10(c[i], k[i]);
        printf("%08x %08x %08x %08x\n", r.x, r.y, r.z, r.w);
    }
    printf("%.9g %.9g\n", rndUniform(0xffffffffu), rndUniform(0x000000ffu));
    return 0;
}
"""


def test_philox_known_answers_on_the_host(tmp_path):
    src = tmp_path / "kat.cu"
    src.write_text(KAT_PROGRAM)
    exe = tmp_path / "kat"
    r = subprocess.run(["nvcc", "-std=c++14", "-I" + str(loader.CUDA_SRC), "-o", str(exe), str(src)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("nvcc could not build a host program here: %s" % r.stderr[-500:])
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:3] == ["6627e8d5 e169c58d bc57ac4c 9b00dbd8", "408f276d 41c83b0e a20bc7c6 6d5451fd",
                       "d16cfe09 94fdcceb 5001e420 24126ea1"]
    # uniform floats are in [0, 1): the largest word gives 1 - 2^-24, the low 8 bits are dropped
    assert out[3] == "%.9g %.9g" % (1 - 2 ** -24, 0.0)
