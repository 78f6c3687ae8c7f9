"""A small ctypes binding to cuBLAS: the two routines the backend needs, sgemm and its
strided-batched form.

sgemm stands for the cublasSgemm calls of nvmatrix/nvmatrix.cu (NVMatrix::rightMult and
addProduct), which the fully-connected layers' products go through; the strided-batched
form serves the "gemm" conv kernels (conv_gemm.py: one product per group or partial sum).

Why ctypes and not a package: the backend needs one function; scikit-cuda (the usual
PyCUDA companion) is unmaintained and breaks on current NumPy/CUDA; CuPy or nvmath-python
would bring a second array type and memory pool into a PyCUDA process. This file finds the
toolkit's libcublas (or the one NVIDIA's pip wheels install, e.g. beside PyTorch) and
calls cublasSgemm_v2 on the current CUDA context's default stream, the stream PyCUDA
launches on, so the kernels and the products stay in order.

Where no libcublas can be found, available() is False and nvmatrix.addProduct uses its
own kernel (kSgemm, slower) instead; CUDACONVNET_CUBLAS names the library file explicitly,
CUDACONVNET_NO_CUBLAS=1 turns cuBLAS off (to test the fallback).

cuBLAS is column-major. A row-major (r, c) matrix with rows ld floats apart is, to cuBLAS,
its (c, r) transpose with leading dimension ld; nvmatrix.addProduct does that swap.
"""
import ctypes
import ctypes.util
import glob
import os
import sys

OP_N, OP_T = 0, 1               # cublasOperation_t
CUBLAS_DEFAULT_MATH = 0         # cublasMath_t: plain fp32 (no TF32 unless NVIDIA_TF32_OVERRIDE)

_STATUS = {0: "CUBLAS_STATUS_SUCCESS", 1: "CUBLAS_STATUS_NOT_INITIALIZED", 3: "CUBLAS_STATUS_ALLOC_FAILED",
           7: "CUBLAS_STATUS_INVALID_VALUE", 8: "CUBLAS_STATUS_ARCH_MISMATCH", 11: "CUBLAS_STATUS_MAPPING_ERROR",
           13: "CUBLAS_STATUS_EXECUTION_FAILED", 14: "CUBLAS_STATUS_INTERNAL_ERROR",
           15: "CUBLAS_STATUS_NOT_SUPPORTED", 16: "CUBLAS_STATUS_LICENSE_ERROR"}


class CublasError(RuntimeError):
    pass


_lib = None
_handle = None
_load_error = None
_tried = False


def candidates():
    """Library files to try, in order."""
    out = []
    env = os.environ.get("CUDACONVNET_CUBLAS")
    if env:
        out.append(env)
    found = ctypes.util.find_library("cublas")
    if found:
        out.append(found)
    roots = [os.environ.get(k) for k in ("CUDA_HOME", "CUDA_PATH", "CUDA_ROOT")] + ["/usr/local/cuda"]
    for root in roots:
        if root:
            for sub in ("lib64", "lib", "targets/x86_64-linux/lib", "targets/sbsa-linux/lib"):
                out += sorted(glob.glob(os.path.join(root, sub, "libcublas.so*")), reverse=True)
    # NVIDIA's pip wheels (nvidia-cublas-cu12: nvidia/cublas/lib; CUDA 13: nvidia/cu13/lib)
    for p in sys.path:
        if p and os.path.isdir(os.path.join(p, "nvidia")):
            out += sorted(glob.glob(os.path.join(p, "nvidia", "*", "lib", "libcublas.so*")), reverse=True)
            out += sorted(glob.glob(os.path.join(p, "nvidia", "*", "*", "lib", "libcublas.so*")), reverse=True)
    out += ["libcublas.so", "libcublas.so.13", "libcublas.so.12", "libcublas.so.11"]
    seen, uniq = set(), []
    for c in out:
        if c not in seen:
            seen.add(c)
            uniq.append(c)
    return uniq


def _load():
    global _lib, _load_error, _tried
    _tried = True
    if os.environ.get("CUDACONVNET_NO_CUBLAS", "") not in ("", "0"):
        _load_error = "turned off by CUDACONVNET_NO_CUBLAS"
        return None
    errors = []
    for name in candidates():
        try:
            if os.path.isabs(name):
                # cuBLAS needs cuBLASLt from the same directory
                for lt in sorted(glob.glob(os.path.join(os.path.dirname(name), "libcublasLt.so*")), reverse=True):
                    try:
                        ctypes.CDLL(lt, mode=ctypes.RTLD_GLOBAL)
                        break
                    except OSError:
                        pass
            lib = ctypes.CDLL(name)
            lib.cublasCreate_v2
            lib.cublasSgemm_v2
            lib.cublasSgemmStridedBatched
        except (OSError, AttributeError) as e:
            errors.append("%s: %s" % (name, e))
            continue
        lib.cublasCreate_v2.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        lib.cublasCreate_v2.restype = ctypes.c_int
        lib.cublasDestroy_v2.argtypes = [ctypes.c_void_p]
        lib.cublasDestroy_v2.restype = ctypes.c_int
        lib.cublasSgemm_v2.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                       ctypes.c_int, ctypes.POINTER(ctypes.c_float), ctypes.c_void_p, ctypes.c_int,
                                       ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float),
                                       ctypes.c_void_p, ctypes.c_int]
        lib.cublasSgemm_v2.restype = ctypes.c_int
        ll = ctypes.c_longlong
        lib.cublasSgemmStridedBatched.argtypes = [
            ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
            ctypes.POINTER(ctypes.c_float), ctypes.c_void_p, ctypes.c_int, ll, ctypes.c_void_p, ctypes.c_int, ll,
            ctypes.POINTER(ctypes.c_float), ctypes.c_void_p, ctypes.c_int, ll, ctypes.c_int]
        lib.cublasSgemmStridedBatched.restype = ctypes.c_int
        if hasattr(lib, "cublasSetMathMode"):
            lib.cublasSetMathMode.argtypes = [ctypes.c_void_p, ctypes.c_int]
            lib.cublasSetMathMode.restype = ctypes.c_int
        _lib = lib
        return lib
    _load_error = "no libcublas could be loaded (%s)" % ("; ".join(errors[-3:]) or "none found")
    return None


def available():
    """Whether libcublas loads here (the product then goes through it)."""
    if not _tried:
        _load()
    return _lib is not None


def why_not():
    """Why available() is False, or None."""
    available()
    return _load_error


def _check(status, what):
    if status != 0:
        raise CublasError("%s failed: %s" % (what, _STATUS.get(status, "status %d" % status)))


def handle():
    """The cuBLAS handle, made once on the current CUDA context (the backend uses one
    context per process)."""
    global _handle
    if _handle is None:
        if not available():
            raise CublasError("cuBLAS is not available: %s" % _load_error)
        h = ctypes.c_void_p()
        _check(_lib.cublasCreate_v2(ctypes.byref(h)), "cublasCreate")
        if hasattr(_lib, "cublasSetMathMode"):
            _check(_lib.cublasSetMathMode(h, CUBLAS_DEFAULT_MATH), "cublasSetMathMode")
        _handle = h
    return _handle


def rowmajor_sgemm_args(transA, transB, m, n, k, lda, ldb, ldc):
    """The column-major sgemm call that computes the row-major product
    C (m x n, rows ldc apart) = op(A) (m x k) @ op(B) (k x n), with A and B row-major, rows
    lda / ldb apart. A row-major matrix is, to cuBLAS, its transpose, so C^T = op(B)^T op(A)^T
    is asked for: returns (transa, transb, M, N, K, first, lda', second, ldb', ldc) with
    first = 'B', second = 'A'."""
    return (OP_T if transB else OP_N, OP_T if transA else OP_N, n, m, k, "B", ldb, "A", lda, ldc)


def sgemm(transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
    """Column-major C (m x n, ldc) = alpha * op(A) op(B) + beta * C, on the default stream;
    A, B, C are device addresses (ints). C is not read when beta == 0."""
    status = _lib.cublasSgemm_v2(handle(), transa, transb, m, n, k, ctypes.byref(ctypes.c_float(alpha)),
                                 ctypes.c_void_p(A), lda, ctypes.c_void_p(B), ldb,
                                 ctypes.byref(ctypes.c_float(beta)), ctypes.c_void_p(C), ldc)
    _check(status, "cublasSgemm")


def sgemm_strided_batched(transa, transb, m, n, k, alpha, A, lda, strideA, B, ldb, strideB, beta, C, ldc, strideC,
                          batch):
    """`batch` column-major products C_b = alpha * op(A_b) op(B_b) + beta * C_b, where
    X_b = X + b * strideX (strides in floats), in one call on the default stream."""
    status = _lib.cublasSgemmStridedBatched(handle(), transa, transb, m, n, k, ctypes.byref(ctypes.c_float(alpha)),
                                            ctypes.c_void_p(A), lda, strideA, ctypes.c_void_p(B), ldb, strideB,
                                            ctypes.byref(ctypes.c_float(beta)), ctypes.c_void_p(C), ldc, strideC,
                                            batch)
    _check(status, "cublasSgemmStridedBatched")
