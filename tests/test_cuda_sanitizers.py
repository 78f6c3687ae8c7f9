"""The emulated CUDA kernels once more, under AddressSanitizer.

The emulated tests (test_cuda_conv.py, test_cuda_conv_gemm.py, test_cuda_util_emulated.py)
check what the kernels compute, so a read past the end of an array whose value goes unused
passes them; on a GPU such a read is undefined (garbage, or an illegal-address fault when
the array ends a page). Here a child pytest runs those tests with the kernels built by
g++ -fsanitize=address and libasan preloaded into the child, so every access outside the
host arrays (the stand-ins for device memory, allocated through ASan's malloc) or outside a
__shared__ array fails. libstdc++ is preloaded after libasan so that ASan finds the real
__cxa_throw, which the emulation's barriers throw through when a launch deadlocks. The
child does not capture output (-s): ASan ends the process, and its report must get out.
"""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

FILES = ["tests/test_cuda_conv.py", "tests/test_cuda_conv_gemm.py", "tests/test_cuda_util_emulated.py"]
# All their emulated cases but the new conv kernels' full 128-image ones (three minutes
# under ASan, against one and a half for their partial-tile cases, which are those that
# reach the edges of the arrays).
SELECT = "emulated and not (gemm and N128)"


def _gcc_library(name):
    """The path g++ links `name` from, or None."""
    path = subprocess.run(["g++", "-print-file-name=%s" % name], capture_output=True, text=True).stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


def test_emulated_kernels_stay_in_bounds():
    if shutil.which("g++") is None or not sys.platform.startswith("linux"):
        pytest.skip("the CUDA emulation needs g++ on Linux")
    if "-fsanitize=address" in os.environ.get("CUDACONVNET_EMULATE_CFLAGS", ""):
        pytest.skip("this run is under AddressSanitizer already")
    libs = [_gcc_library("libasan.so"), _gcc_library("libstdc++.so")]
    if None in libs:
        pytest.skip("g++ has no libasan here")
    env = dict(os.environ, CUDACONVNET_EMULATE_CFLAGS="-fsanitize=address -fno-omit-frame-pointer",
               LD_PRELOAD=" ".join(libs), ASAN_OPTIONS="detect_leaks=0", CUDACONVNET_EMULATE_ALL="")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-x", "-p", "no:cacheprovider", "-k", SELECT]
                          + FILES, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    out = proc.stdout + proc.stderr
    report = out[out.find("ERROR: AddressSanitizer"):] if "ERROR: AddressSanitizer" in out else out
    assert proc.returncode == 0 and "AddressSanitizer" not in out, report[:6000]
    assert " passed" in proc.stdout and " failed" not in proc.stdout
