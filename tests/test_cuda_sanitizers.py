"""The emulated CUDA kernels once more, under AddressSanitizer and under ThreadSanitizer:
the CPU stand-ins for compute-sanitizer's memcheck and racecheck; and under UBSan's
alignment check.

The emulated tests (test_cuda_conv.py, test_cuda_conv_gemm.py, test_cuda_util_emulated.py)
check what the kernels compute. Three kinds of kernel bug pass them:
  - a read outside an array whose value goes unused. On a GPU it is undefined (garbage, or
    an illegal-address fault when the array ends a page). Under ASan every access outside
    the host arrays (the stand-ins for device memory, allocated through ASan's malloc) or
    outside a __shared__ array fails.
  - a float4 access to an address that is not 16-byte aligned: a fault on the GPU
    ("misaligned address"), where the CPU reads the same numbers. UBSan's alignment check
    fails it; that run covers the kernels that use float4, those of implicit_gemm.cu
    (test_float4_is_only_where_the_alignment_run_looks keeps it so).
  - a missing barrier: a thread reads what another thread of its block writes (or both
    write) with no __syncthreads/__syncwarp between them. The emulation's OS threads
    seldom interleave badly enough to change a result; a GPU's warps may. Under TSan every
    such pair of accesses fails, however the threads were scheduled: the emulation's
    barriers are atomics, which TSan follows, so it knows what they order.
Asynchronous copies (cp.async): the plain tests land them when their wait returns, the
latest a GPU may; the TSan run lands them at once as well, the earliest, so that a copy
issued into a buffer other threads may still be reading is reported too.
And blocks: the emulation runs them one after another, so both runs take them in reverse
order (CUDACONVNET_EMULATE_BLOCK_ORDER), where the plain tests take them in order: a block
that overwrites another's output, or reads it, changes the result one way or the other.
A child pytest runs those tests with the kernels built by g++ -fsanitize=... and the
sanitizer's runtime preloaded into the child, libstdc++ after it (so that it finds the real
__cxa_throw, which the emulation's barriers throw through when a launch deadlocks). The
child does not capture output (-s): the sanitizer ends the process, and its report must get
out. OpenBLAS runs one thread in the child: TSan cannot see how its threads synchronise.

Before each run, controls: a kernel with each bug the run is for must be reported, so that
a sanitizer that is silently not there fails the test instead of passing it.
"""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

FILES = ["tests/test_cuda_conv.py", "tests/test_cuda_conv_gemm.py", "tests/test_cuda_util_emulated.py"]

# What each run covers, with its time on the CI machine (2 cores):
#  address: every emulated case but the new conv kernels' full 128-image ones (200 s; those
#    take three more minutes, and the partial-tile cases are the ones that reach the edges);
#  thread: every emulated case of the kernels that have barriers (293 s): the gemm and
#    winograd convolutions (unfold.cu, winograd.cu) have none, and their products run on
#    kSgemm, which test_cuda_util_emulated.py covers;
#  alignment: every emulated case of implicit_gemm.cu, the one file with float4 accesses (40 s).
SANITIZERS = {
    "address": dict(runtime="libasan.so", flags="address", options={"ASAN_OPTIONS": "detect_leaks=0"},
                    controls={"kReadPastEnd": "ERROR: AddressSanitizer"},
                    select="emulated and not (conv_gemm and N128)"),
    "thread": dict(runtime="libtsan.so", flags="thread",
                   options={"TSAN_OPTIONS": "halt_on_error=1", "CUDACONVNET_EMULATE_ASYNC_COPIES": "at-issue"},
                   controls={"kMissingBarrier": "WARNING: ThreadSanitizer"},
                   select="emulated and not (conv_gemm and (N128 or not implicit))"),
    "alignment": dict(runtime="libubsan.so", flags="alignment -fno-sanitize-recover=alignment",
                      options={"UBSAN_OPTIONS": "print_stacktrace=1"},
                      controls={"kMisalignedFloat4": "runtime error: "},
                      select="emulated and implicit"),
}
FLOAT4_FILES = {"cudaconv2/implicit_gemm.cu"}   # what the alignment run's selection covers

BUGS_CU = """
// thread 0 reads a[n], one past the end of the n floats of a
__global__ void kReadPastEnd(float* a, const int n) {
    if (threadIdx.x == 0) { a[0] = a[n]; }
}
// each thread writes its slot of s, then reads its neighbour's without a __syncthreads
__global__ void kMissingBarrier(float* a, const int n) {
    __shared__ float s[64];
    s[threadIdx.x] = a[threadIdx.x];
    a[threadIdx.x] = s[(threadIdx.x + 1) % 64];
}
// thread 0 reads a float4 from a + 1: 4 bytes past a 16-byte boundary (a itself is aligned)
__global__ void kMisalignedFloat4(float* a, const int n) {
    if (threadIdx.x == 0) { a[0] = reinterpret_cast<const float4*>(a + 1)->x; }
}
"""

# launches one kernel of BUGS_CU (argv: work folder, kernel) on 64 threads
CONTROL = """
import struct, sys
import numpy as np
sys.path.insert(0, "tests")
import cuda_emulation
work, kernel = sys.argv[1:]
emu = cuda_emulation.Emulator(work, src_root=work)
a = np.zeros(4096, np.float32)
emu._launch(("bugs.cu", kernel, ()), (1, 1), (64, 1, 1), struct.pack("Pi", a.ctypes.data, a.size))
"""


def _gcc_library(name):
    """The path g++ links `name` from, or None."""
    path = subprocess.run(["g++", "-print-file-name=%s" % name], capture_output=True, text=True).stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


def _sanitized_env(name):
    if shutil.which("g++") is None or not sys.platform.startswith("linux"):
        pytest.skip("the CUDA emulation needs g++ on Linux")
    if "-fsanitize=" in os.environ.get("CUDACONVNET_EMULATE_CFLAGS", ""):
        pytest.skip("this run is under a sanitizer already")
    san = SANITIZERS[name]
    libs = [_gcc_library(san["runtime"]), _gcc_library("libstdc++.so")]
    if None in libs:
        pytest.skip("g++ has no %s here" % san["runtime"])
    return dict(os.environ, CUDACONVNET_EMULATE_CFLAGS="-fsanitize=%s -fno-omit-frame-pointer" % san["flags"],
                LD_PRELOAD=" ".join(libs), OPENBLAS_NUM_THREADS="1", CUDACONVNET_EMULATE_ALL="",
                CUDACONVNET_EMULATE_BLOCK_ORDER="reverse", **san["options"])


def _report(out, markers):
    """The output from the first sanitizer report on, or its end when there is none."""
    found = [out.find(m) for m in markers if m in out]
    return out[min(found):][:6000] if found else out[-6000:]


@pytest.mark.parametrize("name", SANITIZERS)
def test_emulated_kernels_under_sanitizer(name, tmp_path):
    """address: no kernel reads or writes outside its arrays; thread: no two threads of a
    block touch the same memory, one of them writing, without a barrier between them;
    alignment: no float4 access is misaligned. And all: the results do not depend on the
    order of the blocks."""
    env, san = _sanitized_env(name), SANITIZERS[name]
    (tmp_path / "bugs.cu").write_text(BUGS_CU)
    for kernel, report in san["controls"].items():
        control = subprocess.run([sys.executable, "-c", CONTROL, str(tmp_path), kernel], cwd=REPO, env=env,
                                 capture_output=True, text=True, timeout=300)
        out = control.stdout + control.stderr
        assert control.returncode != 0 and report in out and kernel in out, \
            "the %s sanitizer missed the bug of %s:\n%s" % (name, kernel, out[-3000:])

    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-x", "-p", "no:cacheprovider",
                           "-k", san["select"]] + FILES, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=1500)
    out = proc.stdout + proc.stderr
    reports = san["controls"].values()
    assert proc.returncode == 0 and not any(r in out for r in reports), _report(out, reports)
    assert " passed" in proc.stdout and " failed" not in proc.stdout


def test_float4_is_only_where_the_alignment_run_looks():
    """The alignment run covers the kernels of FLOAT4_FILES only: a kernel elsewhere that
    takes up 16-byte accesses needs its tests added to that run's selection."""
    from cudaconvnet.backends.cuda.loader import CUDA_SRC
    users = {str(p.relative_to(CUDA_SRC)) for p in CUDA_SRC.rglob("*.cu*") if "float4" in p.read_text()}
    assert users <= FLOAT4_FILES, "float4 in %s: add its emulated tests to SANITIZERS['alignment']" % (
        sorted(users - FLOAT4_FILES))
