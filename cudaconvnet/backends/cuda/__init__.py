"""The CUDA backend: the kernels of cuda_src/ (the 2012 cudaconv2, layer_kernels.cu and
nvmatrix kernels) run by PyCUDA, with the NumPy backend's operation set and signatures.

Imported only when asked for (cudaconvnet.backends.get_backend('cuda')); says plainly why
it cannot run when it cannot.
"""
NAME = "cuda"

_device = None


def check_available():
    """Raises BackendUnavailable (with the reason) unless PyCUDA and a GPU are usable."""
    from .. import BackendUnavailable
    try:
        import pycuda.driver as drv
    except ImportError as e:
        raise BackendUnavailable("the CUDA backend needs PyCUDA (pip install -e '.[cuda]'): %s" % e) from None
    try:
        drv.init()
        if drv.Device.count() == 0:
            raise BackendUnavailable("the CUDA backend found no GPU")
    except drv.Error as e:
        raise BackendUnavailable("the CUDA backend cannot use the GPU: %s" % e) from None


def use_device(device_id=-1):
    """Makes a context on GPU device_id (-1: device 0) current, once per process."""
    global _device
    import pycuda.driver as drv
    if _device is not None:
        return _device
    drv.init()
    dev = drv.Device(max(device_id, 0))
    ctx = dev.make_context()
    import atexit
    atexit.register(ctx.pop)
    _device = dev
    return dev
