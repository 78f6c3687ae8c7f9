"""Shared test fixtures: where ../shared is, and the GPU marker that skips cleanly."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(*parts):
    """A path under ../shared, or a clean skip when this checkout has none."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip("../shared is not beside this checkout (%s)" % p)
    return p


def _gpu_available():
    try:
        import pycuda.driver as drv
        drv.init()
        return drv.Device.count() > 0
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    if not any("cuda" in item.keywords for item in items):
        return
    if _gpu_available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU and PyCUDA")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def cuda_kernels():
    """The CUDA backend on the GPU, with every kernel's bundle built for it first (all
    cuda_src files compiled in parallel, or found in CUDACONVNET_KERNEL_CACHE), so that no
    test waits on nvcc and the tests run the same cubins as training does."""
    from cudaconvnet.backends import get_backend
    from cudaconvnet.backends.cuda import loader
    be = get_backend("cuda")
    be.use_device()
    be.prepare_kernels(out=lambda s: None)
    assert loader.bundles_present(loader.device_arch())
    return be
