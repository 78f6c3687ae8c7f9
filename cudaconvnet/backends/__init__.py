"""The engines' backends: one module per device, each exposing the same operations.

A backend is a module with
  * the 2012 kernels, under their 2012 names and argument order (cudaconv2 and
    layer_kernels.cu): convFilterActs, convImgActs, convWeightActs, localFilterActs,
    localImgActs, localWeightActs, convLocalPool, convLocalMaxUndo, convLocalAvgUndo,
    convResponseNorm(+Undo), convResponseNormCrossMap(+Undo), convContrastNorm(+Undo),
    convGaussianBlur, convBedOfNails(+Undo), convResizeBilinear, convRGBToYUV, convRGBToLAB,
    convCrop, convReflectHorizontal, computeLogregCost, computeLogregGrad,
    computeLogregSoftmaxGrad, computeSoftmaxGrad, computeEltwiseMaxGrad, ...;
  * the NVMatrix operations of nvmatrix.py: empty, zeros, array, to_host, copy, slice_cols,
    reshape, add, scale, addProduct, addVector, addSum, sum, eltwiseMult, maximum, square,
    softmax, neuronActivate, neuronInputGrad, seed, uniform_mask, randn, ...
on 2-D float32 matrices in the 2012 layouts ((features, cases), cases fastest).

`numpy` is the reference; `cuda` runs the kernels of cuda_src/ through PyCUDA. Importing
this package never imports pycuda.
"""
import importlib

NAMES = ("numpy", "cuda")
# The CUDA backend's choices of convolution kernels (set_conv_kernels): the 2012 kernels, the
# "gemm" variant (cuda_src/cudaconv2/unfold.cu + cuBLAS), "winograd" (gemm, with Winograd's
# F(2x2, 3x3) for 3x3 stride-1 fprop and input gradients), "implicit" (register-tiled
# products straight from the images, cuda_src/cudaconv2/implicit_gemm.cu), or "fastest"
# (each pass by whichever of those three measured fastest for it). The NumPy backend has one.
CONV_KERNELS = ("2012", "gemm", "winograd", "implicit", "fastest")


class BackendUnavailable(Exception):
    """The asked-for backend cannot run here; the message says why."""


class KernelArgumentError(ValueError):
    """Arguments an operation refuses, its message naming the operation. These are the
    2012 host code's asserts, which aborted the process; the engine names the layer."""


def get_backend(name="auto"):
    """The backend module for 'numpy', 'cuda' or 'auto' (the GPU when there is one)."""
    if name == "auto":
        try:
            return get_backend("cuda")
        except BackendUnavailable:
            return get_backend("numpy")
    if name not in NAMES:
        raise BackendUnavailable("unknown backend '%s' (choose numpy, cuda or auto)" % name)
    if name == "cuda":
        try:
            mod = importlib.import_module("cudaconvnet.backends.cuda")
        except ImportError as e:
            raise BackendUnavailable("the CUDA backend is not available: %s" % e) from None
        mod.check_available()
        return mod
    return importlib.import_module("cudaconvnet.backends.numpy")
