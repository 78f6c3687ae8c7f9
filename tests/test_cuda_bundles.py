"""The loader's prebuilt kernel bundles (one cubin per cuda_src file with every
instantiation; `python -m cudaconvnet.backends.cuda`): built with nvcc + ptxas on any
machine (skipped without nvcc), named so that a stale bundle is never found, and looked up
by the same key that loader.kernel asks with (checked with a stand-in pycuda.driver, so no
GPU is needed)."""
import shutil
import sys
import types

import pytest

from cudaconvnet.backends.cuda import layer_kernels, loader

needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
FILE = "layer_kernels.cu"   # the smallest file: 16 instantiations, about a second


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDACONVNET_KERNEL_CACHE", str(tmp_path))
    loader._bundle.cache_clear()
    yield tmp_path
    loader._bundle.cache_clear()


def test_every_host_module_is_in_the_bundles():
    every = loader.all_instantiations()
    assert set(every) == {"cudaconv2/filter_acts.cu", "cudaconv2/img_acts.cu", "cudaconv2/weight_acts.cu",
                          "cudaconv2/unfold.cu", "cudaconv2/winograd.cu", "cudaconv2/implicit_gemm.cu",
                          "cudaconv2/conv_util.cu", "layer_kernels.cu", "nvmatrix/nvmatrix_kernels.cu"}
    assert sorted(every[FILE]) == sorted((n, tuple(a)) for f, n, a in layer_kernels.INSTANTIATIONS)


def test_bundle_name_follows_everything_that_changes_the_code(cache, monkeypatch):
    inst = loader.all_instantiations()[FILE]
    base = loader.bundle_path(FILE, inst, "sm_90")
    assert base.parent == cache
    assert loader.bundle_path(FILE, inst, "sm_80") != base
    assert loader.bundle_path(FILE, inst[:-1], "sm_90") != base
    monkeypatch.setenv("CUDACONVNET_NVCC_OPTIONS", "-lineinfo")
    assert loader.bundle_path(FILE, inst, "sm_90") != base
    monkeypatch.delenv("CUDACONVNET_NVCC_OPTIONS")
    monkeypatch.setattr(loader, "source_digest", lambda: "another source")
    assert loader.bundle_path(FILE, inst, "sm_90") != base
    monkeypatch.undo()
    # not the checkout's location: a bundle built in another clone of the same source fits
    monkeypatch.setattr(loader, "CUDA_SRC", loader.CUDA_SRC)
    monkeypatch.setattr(loader, "nvcc_options", lambda: loader.NVCC_OPTIONS + ["-I/elsewhere/cuda_src"])
    assert loader.bundle_path(FILE, inst, "sm_90").name == base.name


def _fake_driver(monkeypatch, loaded):
    """A stand-in pycuda.driver: a compute-capability 9.0 device whose modules hand back
    the name of the function asked for."""
    drv = types.ModuleType("pycuda.driver")

    class Module:
        def __init__(self, data):
            loaded.append(data)

        def get_function(self, name):
            return ("bundle", name)
    drv.module_from_buffer = Module
    drv.Context = types.SimpleNamespace(get_device=lambda: types.SimpleNamespace(compute_capability=lambda: (9, 0)))
    pycuda = types.ModuleType("pycuda")
    pycuda.driver = drv
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    monkeypatch.setitem(sys.modules, "pycuda.compiler", types.ModuleType("pycuda.compiler"))


@needs_nvcc
def test_built_bundle_serves_every_instantiation(cache, monkeypatch):
    inst = loader.all_instantiations()[FILE]
    path = loader.build_bundle(FILE, inst, "sm_90")
    assert path == loader.bundle_path(FILE, inst, "sm_90") and path.exists()
    assert path.read_bytes()[:4] == b"\x7fELF"           # a cubin, loaded without a JIT
    ptx = loader.compile_ptx_with_nvcc(loader.build_source(FILE, inst))
    lines = open(str(path) + ".entries").read().splitlines()
    assert len(lines) == len(inst)
    loaded = []
    _fake_driver(monkeypatch, loaded)
    for name, args in inst:
        got = loader.kernel.__wrapped__(FILE, name, list(args))   # args as a list: the key is normalised
        assert got == ("bundle", loader.entry_name(ptx, name, args))
    assert len(loaded) == 1 and loaded[0] == path.read_bytes()   # one module load for the whole file
    # nothing to do the second time
    monkeypatch.setattr(loader, "all_instantiations", lambda: {FILE: inst})
    assert loader.build_all("sm_90", out=lambda s: None) == 0


def test_without_a_bundle_the_kernel_is_compiled_alone(cache, monkeypatch):
    loaded = []
    _fake_driver(monkeypatch, loaded)
    compiled = []

    def fake_compile(source, **kw):
        compiled.append(source)
        return b".entry _Z11kLogregCostPfS_S_S_S_iii(\n"
    sys.modules["pycuda.compiler"].compile = fake_compile
    got = loader.kernel.__wrapped__(FILE, "kLogregCost", ())
    assert got == ("bundle", "_Z11kLogregCostPfS_S_S_S_iii") and len(compiled) == 1
    assert "cudaconvnet_instance_0 = (void*)&kLogregCost;" in compiled[0]


@needs_nvcc
def test_command_line(cache, monkeypatch, capsys):
    from cudaconvnet.backends.cuda import __main__ as cli
    monkeypatch.setattr(loader, "all_instantiations", lambda: {FILE: INST})
    assert cli.main(["--arch", "sm_90", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 bundle(s) built for sm_90" in out and len(list(cache.glob("*.cubin"))) == 1
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(loader, "all_instantiations", lambda: {FILE: INST[:1]})
    assert cli.main([]) == 1
    assert capsys.readouterr().err.strip() == "cudaconvnet: nvcc is not on PATH"


INST = loader.all_instantiations()[FILE]


@needs_nvcc
def test_prepare_kernels_builds_what_is_missing_and_says_so(cache, monkeypatch):
    """What the training loop calls after use_device: the missing bundles are compiled,
    with a line before, one per file and one after; then nothing more to do."""
    from cudaconvnet.backends import cuda
    monkeypatch.setattr(loader, "all_instantiations", lambda: {FILE: INST})
    monkeypatch.setattr(loader, "device_arch", lambda: "sm_90")
    lines = []
    assert cuda.prepare_kernels(out=lines.append) == 1
    assert lines[0] == "Compiling the CUDA kernels for sm_90 into %s (once per change of cuda_src/)" % cache
    assert FILE in lines[1] and lines[2].startswith("Compiled 1 file(s) in") and len(lines) == 3
    assert loader.bundles_present("sm_90")
    lines.clear()
    assert cuda.prepare_kernels(out=lines.append) == 0 and lines == []


# ----------------------------------------------------------------------------------------
# on the GPU

@pytest.mark.cuda
def test_gpu_loads_every_bundle(cuda_kernels):
    """After the GPU tests' fixture built them, every cuda_src file's kernels come from its
    bundle (the cubins that training uses)."""
    loader._bundle.cache_clear()
    for f, inst in loader.all_instantiations().items():
        bundle = loader._bundle(f)
        assert bundle is not None, f
        assert set(bundle[1]) == {repr((n, tuple(a))) for n, a in inst}


@pytest.mark.cuda
def test_gpu_single_specialisation_matches_the_bundle(cuda_kernels, monkeypatch):
    """The fallback (one specialisation compiled by PyCUDA) and the bundle run the same
    element-wise kernel to the same bits."""
    import numpy as np

    from cudaconvnet.backends.cuda import nvmatrix
    be = cuda_kernels
    x = be.array(np.random.default_rng(0).standard_normal((37, 53)).astype(np.float32))
    lc = nvmatrix.select_eltwise(1, "NVMatrixOps_Exp", 37, 53)
    results = []
    for use_bundle in (True, False):
        fn = loader.kernel.__wrapped__ if not use_bundle else loader.kernel
        if not use_bundle:
            monkeypatch.setattr(loader, "_bundle", lambda filename: None)
        f = fn(lc.file, lc.kernel, lc.targs)
        f.prepare(nvmatrix.FORMATS[lc.kernel])
        y = be.empty(37, 53)
        f.prepared_call(lc.grid, lc.block, nvmatrix.ptr(x), nvmatrix.ptr(y), 37, 53, 53, 53, np.float32(0),
                        np.float32(0))
        results.append(be.to_host(y))
    assert np.array_equal(results[0], results[1])
    assert np.allclose(results[0], np.exp(be.to_host(x)), rtol=1e-5)


def test_without_nvcc_the_backend_needs_the_bundles(cache, monkeypatch):
    """No nvcc and no bundles for this GPU: get_backend('cuda') says so in one line (and
    'auto' falls back to NumPy); with every bundle present the backend is usable."""
    from cudaconvnet import backends
    from cudaconvnet.backends import cuda
    loaded = []
    _fake_driver(monkeypatch, loaded)
    drv = sys.modules["pycuda.driver"]
    drv.init = lambda: None
    drv.Error = RuntimeError
    drv.Device = type("Device", (), {"count": staticmethod(lambda: 1),
                                     "__init__": lambda self, i: None, "compute_capability": lambda self: (9, 0)})
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(backends.BackendUnavailable, match="needs nvcc .* or kernels built beforehand for sm_90"):
        cuda.check_available()
    assert backends.get_backend("auto").NAME == "numpy"
    for f, inst in loader.all_instantiations().items():
        path = loader.bundle_path(f, inst, "sm_90")
        path.write_bytes(b"")
    cuda.check_available()
