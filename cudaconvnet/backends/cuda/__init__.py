"""The CUDA backend: the kernels of cuda_src/ (the 2012 cudaconv2, layer_kernels.cu and
nvmatrix kernels) run by PyCUDA, with the NumPy backend's operation set and signatures.

Imported only when asked for (cudaconvnet.backends.get_backend('cuda')); says plainly why
it cannot run when it cannot. Matrices are pycuda GPUArrays (float32, 2-D, row-major).

The operations, module by module (each the twin of the NumPy backend's module of the same
name, and the host side of the cuda_src file of that name):
  filter_acts, img_acts, weight_acts, sparse_acts   convolution (and locally connected)
  conv_util       pooling, normalisations, blur, bed of nails, resize, colour, crop, reflect
  layer_kernels   costs, softmax / element-wise-max gradients
  nvmatrix        memory, element-wise arithmetic, aggregations, products (cuBLAS),
                  random numbers, neurons
Anything the NumPy backend has that no module here implements (operations added there
later, or host routines of 2012 such as the multi-softmax) runs on the host through
_host_fallback, which copies its matrices over and back; HOST_FALLBACKS lists them.

One loader (loader.py) owns all compilation. This package never imports pycuda.autoinit:
use_device makes (or joins) the context.
"""
import functools

NAME = "cuda"

_device = None
_context = None
_IMPORT_ERROR = None

try:
    from .conv_gemm import conv_kernels, set_conv_kernels  # noqa: F401
    from .conv_util import *  # noqa: F401,F403
    from .filter_acts import convFilterActs, localFilterActs  # noqa: F401
    from .img_acts import convImgActs, localImgActs  # noqa: F401
    from .layer_kernels import *  # noqa: F401,F403
    from .nvmatrix import *  # noqa: F401,F403
    from .sparse_acts import *  # noqa: F401,F403
    from .weight_acts import convWeightActs, localWeightActs  # noqa: F401
except ImportError as e:  # check_available() reports it
    _IMPORT_ERROR = e


def check_available():
    """Raises BackendUnavailable (with the reason) unless PyCUDA and a GPU are usable, and
    the kernels can be had: nvcc to compile them, or prebuilt bundles for this GPU."""
    from .. import BackendUnavailable
    if _IMPORT_ERROR is not None:
        raise BackendUnavailable("the CUDA backend could not be imported: %s" % _IMPORT_ERROR)
    try:
        import pycuda.driver as drv
    except ImportError as e:
        raise BackendUnavailable("the CUDA backend needs PyCUDA (pip install -e '.[cuda]'): %s" % e) from None
    try:
        drv.init()
        if drv.Device.count() == 0:
            raise BackendUnavailable("the CUDA backend found no GPU")
        arch = "sm_%d%d" % drv.Device(0).compute_capability()
    except drv.Error as e:
        raise BackendUnavailable("the CUDA backend cannot use the GPU: %s" % e) from None
    import shutil

    from . import loader
    if shutil.which("nvcc") is None and not loader.bundles_present(arch):
        raise BackendUnavailable("the CUDA backend needs nvcc (the CUDA toolkit) on PATH to compile its kernels, "
                                 "or kernels built beforehand for %s (python -m cudaconvnet.backends.cuda "
                                 "--arch %s, into CUDACONVNET_KERNEL_CACHE=%s)" % (arch, arch, loader.cache_dir()))


def use_device(device_id=-1):
    """Makes GPU device_id's primary context (-1: device 0) current, once per process.

    The primary context is the one the CUDA runtime uses, so cuBLAS (and PyTorch, in the
    benchmark) share it with PyCUDA's kernels. Later calls return the device in use."""
    global _device, _context
    if _device is not None:
        return _device
    import pycuda.driver as drv
    drv.init()
    dev = drv.Device(max(int(device_id), 0))
    ctx = dev.retain_primary_context()
    ctx.push()
    import atexit

    def _release():
        try:
            from pycuda.tools import clear_context_caches
            clear_context_caches()
        except Exception:
            pass
        try:
            ctx.pop()
        except Exception:
            pass
    atexit.register(_release)
    _device, _context = dev, ctx
    return dev


def device_name():
    """The name of the GPU in use (after use_device)."""
    return use_device().name()


def prepare_kernels(out=print):
    """Compiles every kernel for the GPU in use (after use_device), all cuda_src files at
    once, when nvcc is there and their bundles are not yet in the cache; saying so, as it
    takes a while (about 20 s on two cores) once per change of the kernels. Without it the
    first training step would compile each kernel as it came, silently. Returns how many
    files it compiled. RuntimeError when nvcc or ptxas fails."""
    import shutil
    import time

    from . import loader
    arch = loader.device_arch()
    if shutil.which("nvcc") is None or loader.bundles_present(arch):
        return 0
    out("Compiling the CUDA kernels for %s into %s (once per change of cuda_src/)" % (arch, loader.cache_dir()))
    t0 = time.time()
    n = loader.build_all(arch, out=lambda line: out("  " + line))
    out("Compiled %d file(s) in %.0f s" % (n, time.time() - t0))
    return n


# ------------------------------------------------------------------------------------------
# the operation list, and host fallbacks for what has no kernel here
# ------------------------------------------------------------------------------------------
def numpy_operations():
    """The NumPy backend's operations, by name (the backend contract)."""
    import inspect

    from ..numpy import conv_util as c, filter_acts as f, img_acts as i, layer_kernels as lk
    from ..numpy import nvmatrix as nv, sparse_acts as sp, weight_acts as w
    names = set(c.__all__) | set(lk.__all__) | set(getattr(sp, "__all__", []))
    names |= {"convFilterActs", "localFilterActs", "convImgActs", "localImgActs", "convWeightActs",
              "localWeightActs"}
    names |= {n for n, v in vars(nv).items()
              if inspect.isfunction(v) and v.__module__ == nv.__name__ and not n.startswith("_")}
    del f, i, w
    return sorted(names)


def _host_fallback(name):
    """Runs NumPy backend operation `name` on host copies of its GPUArray arguments, copies
    back those it changed, and returns its result (arrays as GPUArrays)."""
    import numpy as np

    from .. import numpy as npb
    np_fn = getattr(npb, name)

    @functools.wraps(np_fn)
    def run(*args, **kwargs):
        from . import nvmatrix as nvm

        def down(a):
            if isinstance(a, (list, tuple)):
                return type(a)(down(x) for x in a)
            if hasattr(a, "gpudata") and hasattr(a, "get"):
                return a.get().copy()
            return a
        host_args = [down(a) for a in args]
        host_kwargs = {k: down(v) for k, v in kwargs.items()}
        before = [a.copy() if isinstance(a, np.ndarray) else None for a in host_args]
        result = np_fn(*host_args, **host_kwargs)
        for dev, host, old in zip(args, host_args, before):
            if old is not None and hasattr(dev, "gpudata") and not np.array_equal(host, old, equal_nan=True):
                dev.set(np.ascontiguousarray(host, dtype=dev.dtype))
        if isinstance(result, np.ndarray) and result.dtype == np.float32:
            return nvm.array(result)
        return result
    run.host_fallback = True
    return run


HOST_FALLBACKS = []
if _IMPORT_ERROR is None:
    for _name in numpy_operations():
        if _name not in globals():
            globals()[_name] = _host_fallback(_name)
            HOST_FALLBACKS.append(_name)
    del _name
