"""The 2-D float32 matrix operations the layers need, on numpy arrays.

Stands for nvmatrix/nvmatrix.cu and the element-wise functors of neuron.cuh and
nvmatrix_operators.cuh. A matrix is a C-contiguous float32 ndarray; activations are
(features, cases). Targets are written in place; `scaleTarget == 0` ignores their old
content, as NVMatrix did.
"""
import numpy as np

from .. import KernelArgumentError

f32 = np.float32


# -- memory -------------------------------------------------------------------------------
def empty(rows, cols):
    return np.empty((rows, cols), dtype=f32)


def zeros(rows, cols):
    return np.zeros((rows, cols), dtype=f32)


def array(host):
    """A device copy of a host array (float32, C order)."""
    return np.array(host, dtype=f32, order="C", copy=True)


def int_array(host):
    """A device copy of an integer index list (e.g. filterConns)."""
    return np.array(host, dtype=np.int32)


def to_host(m):
    """A host copy of a device matrix."""
    return np.array(m, dtype=f32, order="C", copy=True)


def copy(src, dst):
    np.copyto(dst, src)


def slice_cols(m, start, end):
    """Columns [start, end) as a contiguous matrix (a minibatch of cases)."""
    return np.ascontiguousarray(m[:, start:end])


def reshape(m, rows, cols):
    return m.reshape(rows, cols)


# -- arithmetic ---------------------------------------------------------------------------
def _store(target, result, scaleTarget):
    if scaleTarget == 0:
        np.copyto(target, result)
    elif scaleTarget == 1:
        target += result
    else:
        target *= f32(scaleTarget)
        target += result


# Elements per block of the blocked element-wise loops: enough that numpy's per-call cost
# vanishes, few enough that a block's operands stay in the L2 cache.
BLOCK = 1 << 16


def _blocked(target, b):
    """Whether to go through target and b block by block (both C-contiguous, the same
    shape, and big enough for it to pay)."""
    return (target.size >= 4 * BLOCK and target.shape == b.shape
            and target.flags.c_contiguous and b.flags.c_contiguous)


def add(target, b, scaleTarget=1.0, scaleB=1.0):
    """target = scaleTarget * target + scaleB * b.

    On big matrices (the weight update: inc = mom*inc + eps*grad; inc -= wc*eps*w; w += inc)
    this goes block by block, with no matrix-sized temporary and one pass over the memory;
    the float32 operations and their order are the same: scaleB*b, scaleTarget*target, sum.
    """
    if scaleB == 1 or not _blocked(target, b):
        _store(target, b if scaleB == 1 else f32(scaleB) * b, scaleTarget)
        return
    tflat, bflat = target.reshape(-1), b.reshape(-1)
    buf = np.empty(BLOCK, dtype=f32)
    for i in range(0, tflat.size, BLOCK):
        t, scaled = tflat[i:i + BLOCK], buf[:min(BLOCK, tflat.size - i)]
        np.multiply(bflat[i:i + BLOCK], f32(scaleB), out=scaled)
        _store(t, scaled, scaleTarget)


def scale(src, alpha, target):
    """target = alpha * src."""
    np.multiply(src, f32(alpha), out=target)


def addProduct(target, a, b, scaleTarget=0.0, scaleAB=1.0, transA=False, transB=False):
    """target = scaleTarget * target + scaleAB * op(a) @ op(b)."""
    a = a.T if transA else a
    b = b.T if transB else b
    if scaleTarget == 0:
        np.matmul(a, b, out=target)
        if scaleAB != 1:  # in place: no temporary the size of the product
            target *= f32(scaleAB)
        return
    prod = a @ b
    if scaleAB != 1:
        prod *= f32(scaleAB)
    _store(target, prod, scaleTarget)


def addVector(target, vec, scaleVec=1.0):
    """Adds a column vector (rows, 1) or a row vector (1, cols) to every column / row."""
    target += vec if scaleVec == 1 else f32(scaleVec) * vec


def addSum(target, m, axis, scaleTarget=0.0, scaleSum=1.0):
    """target = scaleTarget * target + scaleSum * m.sum(axis), kept 2-D."""
    s = m.sum(axis=axis, keepdims=True, dtype=f32)
    if scaleSum != 1:
        s *= f32(scaleSum)
    _store(target, s.reshape(target.shape), scaleTarget)


def sum(m):
    """The sum of all elements, as a Python float (accumulated in float64)."""
    return float(np.sum(m, dtype=np.float64))


def sum_abs_mean(m):
    return float(np.mean(np.abs(m), dtype=np.float64))


def eltwiseMult(a, b, target):
    np.multiply(a, b, out=target)


def eltwiseMultByVector(m, vec, target):
    np.multiply(m, vec, out=target)


def maximum(a, b, target):
    np.maximum(a, b, out=target)


def square(m, target):
    np.square(m, out=target)


def softmax(inputs, target):
    """Softmax over the features (axis 0) of every case, as SoftmaxLayer computed it:
    subtract the column max, exponentiate, divide by the column sum."""
    np.subtract(inputs, inputs.max(axis=0, keepdims=True), out=target)
    np.exp(target, out=target)
    target /= target.sum(axis=0, keepdims=True, dtype=f32)


def isfinite(m):
    return bool(np.isfinite(m).all())


# -- random numbers -----------------------------------------------------------------------
_rng = np.random.default_rng(0)


def seed(s):
    """Seeds the backend's generator (dropout masks, noisy neurons)."""
    global _rng
    _rng = np.random.default_rng(s)


def get_rng_state():
    """The generator's state, to store in a checkpoint."""
    return _rng.bit_generator.state


def set_rng_state(state):
    _rng.bit_generator.state = state


def uniform_mask(shape, keep):
    """1 where a uniform draw in [0, 1) is below `keep`, else 0 (the 2012 dropout mask)."""
    return (_rng.random(shape, dtype=f32) < f32(keep)).astype(f32)


def randn(shape):
    return _rng.standard_normal(shape, dtype=f32)


def randint(high):
    return int(_rng.integers(high))


def rand():
    return float(_rng.random())


# -- neurons: the element-wise functors of neuron.cuh -------------------------------------
def neuronActivate(kind, x, y, a=0.0, b=0.0):
    """y = f(x) for neuron `kind`."""
    a, b = f32(a), f32(b)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if kind == "ident":
            np.copyto(y, x)
        elif kind in ("relu", "nrelu"):
            # x < 0 ? 0 : x, in one pass (np.where is several times slower); NaN passes
            # through as in the kernel, only a -0.0 input comes out +0.0 (an equal value)
            np.maximum(x, f32(0), out=y)
            if kind == "nrelu":  # plus noise with stdev = the unit's output, rectified again
                y += y * randn(y.shape)
                np.maximum(y, f32(0), out=y)
        elif kind == "brelu":
            np.copyto(y, np.where(x < 0, f32(0), np.where(x > a, a, x)))
        elif kind == "abs":
            np.abs(x, out=y)
        elif kind == "logistic":
            np.copyto(y, f32(1) / (f32(1) + np.exp(-x)))
        elif kind == "tanh":  # a * tanh(b x), written as the kernel wrote it
            np.copyto(y, a * (f32(2) / (f32(1) + np.exp(x * (f32(-2) * b))) - f32(1)))
        elif kind == "softrelu":
            np.copyto(y, np.where(x > 4, x, np.log1p(np.exp(np.minimum(x, f32(4))))))
        elif kind == "square":
            np.square(x, out=y)
        elif kind == "sqrt":
            np.sqrt(x, out=y)
        elif kind == "linear":
            np.copyto(y, a * x + b)
        elif kind == "drelu":  # x - a tanh(x / a)
            np.copyto(y, x - a * (f32(2) / (f32(1) + np.exp((f32(-2) / a) * x)) - f32(1)))
        else:
            raise KernelArgumentError("unknown neuron type '%s'" % kind)


def neuronInputGrad(kind, actsGrad, x, y, target, add, a=0.0, b=0.0, grad_from_outputs=False):
    """target (+)= df/dx * actsGrad. `x` are the neuron's inputs, `y` its outputs.
    `grad_from_outputs` reproduces cuda-convnet r561's softrelu, which evaluated the
    derivative at the outputs instead of the inputs."""
    a, b = f32(a), f32(b)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if kind == "ident":
            g = actsGrad
        elif kind in ("relu", "nrelu"):
            if not add:  # the common case, without a temporary
                np.multiply(actsGrad, y > 0, out=target)
                return
            g = actsGrad * (y > 0)
        elif kind == "brelu":
            g = actsGrad * ((y > 0) & (y < a))
        elif kind == "abs":
            g = actsGrad * np.where(x > 0, f32(1), f32(-1))
        elif kind == "logistic":
            g = actsGrad * y * (f32(1) - y)
        elif kind == "tanh":
            t = (f32(1) - y / a) / f32(2)
            g = actsGrad * (f32(-4) * a * b) * (t * (t - f32(1)))
        elif kind == "softrelu":
            u = y if grad_from_outputs else x
            e = np.exp(np.minimum(u, f32(4)))
            g = np.where(u > 4, actsGrad, actsGrad * (e / (f32(1) + e)))
        elif kind == "square":
            g = actsGrad * f32(2) * x
        elif kind == "sqrt":
            g = actsGrad / (f32(2) * y)
        elif kind == "linear":
            g = actsGrad * a
        elif kind == "drelu":
            th = f32(2) / (f32(1) + np.exp((f32(-2) / a) * x)) - f32(1)
            g = actsGrad * (th * th)
        else:
            raise KernelArgumentError("unknown neuron type '%s'" % kind)
        _store(target, g.astype(f32, copy=False), 1.0 if add else 0.0)
