"""The 2-D float32 matrix operations the layers need, on PyCUDA GPUArrays.

Stands for nvmatrix/nvmatrix.cu (the host side of NVMatrix: apply, applyBinary(V),
applyTernary, _aggregate, _totalAgg, addProduct, the randomizers) and the neurons of
neuron.cuh; its kernels are cuda_src/nvmatrix/nvmatrix_kernels.cu. Same functions and
semantics as cudaconvnet/backends/numpy/nvmatrix.py, the reference.

A matrix is a pycuda GPUArray, float32, 2-D, row-major; rows may be a stride apart (a
row slice m[a:b] of a matrix is a view and works everywhere), columns must be adjacent.
Targets are written in place; scaleTarget == 0 never reads them.

The selectors (select_*) are pure Python: which kernel, template arguments, grid and block
the 2012 host code picked; tests/test_cuda_util_selectors.py checks them without a GPU.
"""
import math
from collections import namedtuple

import numpy as np

from .. import KernelArgumentError
from . import cublas, loader

f32 = np.float32
# CUDA's limit on gridDim.y (the 2012 grids put modules or pixels there); every kernel
# indexes with 32-bit ints
MAX_GRID_Y = 65535
MAX_ELEMENTS = 2 ** 31 - 1
FILE = "nvmatrix/nvmatrix_kernels.cu"

# the operations (those of the NumPy backend's nvmatrix.py); the rest is this backend's plumbing
__all__ = ["empty", "zeros", "array", "int_array", "to_host", "copy", "slice_cols", "reshape", "add", "scale",
           "addProduct", "addVector", "addSum", "sum", "sum_abs_mean", "eltwiseMult", "eltwiseMultByVector",
           "maximum", "square", "softmax", "isfinite", "seed", "get_rng_state", "set_rng_state", "uniform_mask",
           "randn", "randint", "rand", "neuronActivate", "neuronInputGrad"]

# Mirrors of the #defines of nvmatrix_kernels.cu (checked against the file by the tests).
NUM_BLOCKS_MAX = 65535
NUM_RND_BLOCKS = 96
NUM_RND_THREADS_PER_BLOCK = 128
NUM_RND_STREAMS = NUM_RND_BLOCKS * NUM_RND_THREADS_PER_BLOCK
ELTWISE_THREADS_X = 32
ELTWISE_THREADS_Y = 8
NUM_SUM_COLS_THREADS_PER_BLOCK = 256
AGG_SHORT_ROWS_THREADS_X = 32
AGG_SHORT_ROWS_THREADS_Y = 8
AGG_SHORT_ROWS_LOOPS_Y = 32
DP_BLOCKSIZE = 512
CPUSUM_MAX = 4096
ADD_VEC_THREADS_X = 64
ADD_VEC_THREADS_Y = 4
AWR_NUM_THREADS = 256
AWR_MAX_ROW_BLOCKS = 1024  # kAggRows_wholerow_nosync's grid: at most this many blocks, one row each in turn
SGEMM_TILE = 16


def DIVUP(a, b):
    return (a + b - 1) // b


# One kernel launch: cuda_src file, kernel name, template arguments, grid, block.
Launch = namedtuple("Launch", "file kernel targs grid block")


# ==========================================================================================
# selectors: the 2012 host logic, one per kernel family (pure Python)
# ==========================================================================================
ELTWISE_KERNELS = {1: "kEltwiseUnaryOp", 2: "kEltwiseBinaryOp", 3: "kEltwiseTernaryOp"}


def select_eltwise(arity, op, height, width):
    """NVMatrix::apply / applyBinary / applyTernary (all operands row-major, so never the
    2012 *Trans variants): an 8x32 block, a grid of at most NUM_BLOCKS_MAX each way that
    strides over the matrix."""
    grid = (min(NUM_BLOCKS_MAX, DIVUP(width, ELTWISE_THREADS_X)),
            min(NUM_BLOCKS_MAX, DIVUP(height, ELTWISE_THREADS_Y)))
    return Launch(FILE, ELTWISE_KERNELS[arity], (op,), grid, (ELTWISE_THREADS_X, ELTWISE_THREADS_Y, 1))


def select_vector_op(op, vec_is_row, height, width):
    """NVMatrix::applyBinaryV: kRowVectorOp for a (1, width) vector, kColVectorOp for a
    (height, 1) one. (2012 chose by the vector's row count first, which for a 1-row matrix
    and a (1, width) vector took the column kernel and broadcast vec[0]; the choice here
    follows the vector's orientation, as NumPy broadcasting does.)"""
    grid = (min(NUM_BLOCKS_MAX, DIVUP(width, ADD_VEC_THREADS_X)),
            min(NUM_BLOCKS_MAX, DIVUP(height, ADD_VEC_THREADS_Y)))
    name = "kRowVectorOp" if vec_is_row else "kColVectorOp"
    return Launch(FILE, name, (op,), grid, (ADD_VEC_THREADS_X, ADD_VEC_THREADS_Y, 1))


def select_aggregate(axis, height, width, agg, op):
    """NVMatrix::_aggregate for a row-major (height, width) matrix.

    axis 0 (one value per column): kDumbAggCols.
    axis 1 (one value per row):
      width 1             -> kEltwiseBinaryOp<op> of (target, m) (2012 copied m over the
                             target, dropping op's scales; this applies them)
      height >= 16384     -> kAggShortRows<agg, op, LOOPS_X, THREADS_X> (width <= 64) or
                             kAggShortRows2 (wider)
      width >= 512        -> kAggRows_wholerow_nosync
      otherwise           -> kAggRows<agg, op, blockSize>, one pass (2 * blockSize >= width)
    """
    if axis == 0:
        blocks = DIVUP(width, NUM_SUM_COLS_THREADS_PER_BLOCK)
        if blocks >= NUM_BLOCKS_MAX:
            raise KernelArgumentError("aggregate: %d columns is more than the 2012 kernel's grid holds" % width)
        return Launch(FILE, "kDumbAggCols", (agg, op), (blocks, 1), (NUM_SUM_COLS_THREADS_PER_BLOCK, 1, 1))
    if axis != 1:
        raise KernelArgumentError("aggregate: axis must be 0 or 1, got %r" % (axis,))
    if width == 1:
        return select_eltwise(2, op, height, 1)
    if height >= 16384:
        blocks_x, blocks_y = 1, DIVUP(height, AGG_SHORT_ROWS_THREADS_Y * AGG_SHORT_ROWS_LOOPS_Y)
        while blocks_y > NUM_BLOCKS_MAX:
            blocks_y = DIVUP(blocks_y, 2)
            blocks_x *= 2
        threads_x = (4 if width <= 4 else 8 if width <= 8 else 12 if width <= 12 else 16 if width <= 16
                     else AGG_SHORT_ROWS_THREADS_X)
        block = (threads_x, AGG_SHORT_ROWS_THREADS_Y, 1)
        if width <= 16:
            return Launch(FILE, "kAggShortRows", (agg, op, 1, threads_x), (blocks_x, blocks_y), block)
        if width <= 64:
            loops = 2 if width <= 32 else 3 if width <= 48 else 4
            return Launch(FILE, "kAggShortRows", (agg, op, loops, AGG_SHORT_ROWS_THREADS_X),
                          (blocks_x, blocks_y), block)
        return Launch(FILE, "kAggShortRows2", (agg, op), (blocks_x, blocks_y), block)
    if width >= 512:
        return Launch(FILE, "kAggRows_wholerow_nosync", (agg, op), (1, min(AWR_MAX_ROW_BLOCKS, height)),
                      (AWR_NUM_THREADS, 1, 1))
    threads_x = 32 if width <= 64 else 64 if width <= 128 else 128 if width <= 256 else 256
    blocks_x = DIVUP(width, 2 * threads_x)
    assert blocks_x == 1  # so the one pass writes the row's whole aggregate
    return Launch(FILE, "kAggRows", (agg, op, threads_x), (blocks_x, min(height, NUM_BLOCKS_MAX)),
                  (threads_x, 1, 1))


def select_total_agg(num_elements, agg):
    """NVMatrix::_totalAgg: kTotalAgg passes, each over numCols = DIVUP(n, ceil(log2 n))
    columns with DIVUP(numCols, 512) blocks of 512 threads, until at most CPUSUM_MAX partial
    aggregates are left (the host finishes). Returns [(Launch, numCols, n)]."""
    passes = []
    n = num_elements
    while n > CPUSUM_MAX:
        logn = int(math.ceil(math.log(n) / math.log(2)))
        num_cols = DIVUP(n, logn)
        blocks = DIVUP(num_cols, DP_BLOCKSIZE)
        passes.append((Launch(FILE, "kTotalAgg", (agg,), (blocks, 1), (DP_BLOCKSIZE, 1, 1)), num_cols, n))
        n = blocks
    return passes


def select_randomize(binary, randomizer):
    """NVMatrix::_unaryRandomize / _binaryRandomize: NUM_RND_BLOCKS blocks of
    NUM_RND_THREADS_PER_BLOCK threads, whatever the size."""
    name = "kBinaryRandomize" if binary else "kUnaryRandomize"
    return Launch(FILE, name, (randomizer,), (NUM_RND_BLOCKS, 1), (NUM_RND_THREADS_PER_BLOCK, 1, 1))


def select_sgemm(transA, transB, m, n):
    """The stand-in for cublasSgemm (not 2012): 16x16 tiles of C."""
    return Launch(FILE, "kSgemm", (bool(transA), bool(transB)), (DIVUP(n, SGEMM_TILE), DIVUP(m, SGEMM_TILE)),
                  (SGEMM_TILE, SGEMM_TILE, 1))


# The functors each operation can ask for (class names of nvmatrix_operators.cuh).
UNARY_OPS = ("NVMatrixOps_Exp", "NVMatrixOps_Logistic", "NVMatrixOps_Square", "NVMatrixOps_Sqrt",
             "NVMatrixOps_Abs", "NVMatrixOps_Identity", "NVMatrixOps_Zero", "NVMatrixOps_SmallerThanScalar",
             "NVMatrixOps_MultByScalar", "ReluOperator", "BoundedReluOperator", "TanhOperator",
             "SoftReluOperator", "LinearOperator", "DoubleReluOperator")
GRADIENT_OPS = ("ReluGradientOperator", "BoundedReluGradientOperator", "AbsGradientOperator",
                "LogisticGradientOperator", "TanhGradientOperator", "SoftReluGradientOperator",
                "SquareGradientOperator", "SqrtGradientOperator", "DoubleReluGradientOperator")
COST_OPS = ("CrossEntOperator", "RobustFlickrCostOperator")          # CHM's element-wise costs
COST_GRADIENT_OPS = ("CrossEntGradientOperator", "RobustFlickrCostGradientOperator")
BINARY_OPS = ("NVMatrixBinaryOps_Add", "NVMatrixBinaryOps_WeightedAdd", "NVMatrixBinaryOps_Multiply",
              "NVMatrixBinaryOps_SecondScaled", "NVMatrixBinaryOps_Second", "NVMatrixAggs_Max",
              "AddGradientOperator_NVMatrixOps_MultByScalar") + GRADIENT_OPS + COST_OPS + COST_GRADIENT_OPS
TERNARY_OPS = tuple("AddGradientBinaryOperator_" + g for g in GRADIENT_OPS + COST_GRADIENT_OPS) + (
    "AddGradientBinaryOperator_NVMatrixBinaryOps_Multiply",)
VECTOR_OPS = ("NVMatrixBinaryOps_WeightedAdd", "NVMatrixBinaryOps_Multiply", "NVMatrixBinaryOps_Divide")
# (aggregator, binary operator) pairs of the aggregations
AGGREGATIONS = (("NVMatrixAggs_Sum", "NVMatrixBinaryOps_Second"),
                ("NVMatrixAggs_Sum", "NVMatrixBinaryOps_WeightedAdd"),
                ("NVMatrixAggs_Sum", "NVMatrixBinaryOps_SecondScaled"),
                ("NVMatrixAggs_Max", "NVMatrixBinaryOps_Second"))
TOTAL_AGGS = ("NVMatrixAggs_Sum", "NVMatrixAggs_NonFinite")
RANDOMIZERS = (("kUnaryRandomize", "UniformUnaryRandomizer"), ("kUnaryRandomize", "GaussianUnaryRandomizer"),
               ("kBinaryRandomize", "AddGaussianBinaryRandomizer"))

# (height, width) pairs that reach every branch of select_aggregate
AGGREGATE_COVER = ((7, 1), (20000, 3), (20000, 8), (20000, 12), (20000, 16), (20000, 30), (20000, 40),
                   (20000, 60), (20000, 100), (10, 600), (10, 50), (10, 100), (10, 200), (10, 400))


def _instantiations():
    out = set()
    for arity, ops in ((1, UNARY_OPS), (2, BINARY_OPS), (3, TERNARY_OPS)):
        for op in ops:
            out.add(select_eltwise(arity, op, 8, 8)[:3])
    for op in VECTOR_OPS:
        for row in (False, True):
            out.add(select_vector_op(op, row, 8, 8)[:3])
    for agg, op in AGGREGATIONS:
        out.add(select_aggregate(0, 8, 8, agg, op)[:3])
        for h, w in AGGREGATE_COVER:
            out.add(select_aggregate(1, h, w, agg, op)[:3])
    for agg in TOTAL_AGGS:
        out.add(select_total_agg(100000, agg)[0][0][:3])
    for kernel, rnd in RANDOMIZERS:
        out.add(select_randomize(kernel == "kBinaryRandomize", rnd)[:3])
    for ta in (False, True):
        for tb in (False, True):
            out.add(select_sgemm(ta, tb, 8, 8)[:3])
    return sorted(out, key=repr)


# Every (file, kernel, template args) the selectors of this module can return.
INSTANTIATIONS = _instantiations()


# ==========================================================================================
# device plumbing
# ==========================================================================================
_ga = None
_drv = None
_pool = None


def _pycuda():
    """pycuda.gpuarray and pycuda.driver, imported on first use (and a context made)."""
    global _ga, _drv
    if _ga is None:
        import pycuda.driver as drv
        import pycuda.gpuarray as ga
        _ga, _drv = ga, drv
    from . import use_device
    use_device()
    return _ga, _drv


def allocator():
    """The allocator of every matrix this backend makes: a PyCUDA device memory pool, so
    that per-step temporaries (dropout masks, softmax scratch) reuse freed blocks instead
    of calling cuMemAlloc each time (2012's NVMatrix allocated through cublasAlloc)."""
    global _pool
    if _pool is None:
        _pycuda()
        from pycuda.tools import DeviceMemoryPool
        _pool = DeviceMemoryPool()
    return _allocate


def _allocate(nbytes):
    """The pool's allocation, its out-of-memory error (raised after the pool has given back
    the blocks it held) as Python's MemoryError, which the command-line programs report in
    one line."""
    try:
        return _pool.allocate(nbytes)
    except _drv.MemoryError as e:
        raise MemoryError("the GPU has no room for %d more bytes (%s)" % (nbytes, e)) from None


_prepared = {}

# argument formats (pycuda struct codes: P pointer, I uint32, i int32, f float32)
FORMATS = {
    "kEltwiseUnaryOp": "PPIIIIff", "kEltwiseBinaryOp": "PPPIIIIIff", "kEltwiseTernaryOp": "PPPPIIIIIIff",
    "kRowVectorOp": "PPPIIIIff", "kColVectorOp": "PPPIIIIff",
    "kAggRows": "PPIIIff", "kAggRows_wholerow_nosync": "PPIIff", "kAggShortRows": "PPIIff",
    "kAggShortRows2": "PPIIff", "kDumbAggCols": "PPIIff", "kTotalAgg": "PPII",
    "kUnaryRandomize": "PPIIIIIff", "kBinaryRandomize": "PPPIIIIIff", "kSgemm": "PPPiiiiiiff",
}


def launch(lc, fmt, *args):
    """Runs Launch `lc` with the packed arguments `args` (struct codes `fmt`)."""
    key = (lc.file, lc.kernel, lc.targs)
    f = _prepared.get(key)
    if f is None:
        _pycuda()
        f = loader.kernel(lc.file, lc.kernel, lc.targs)
        f.prepare(fmt)
        _prepared[key] = f
    grid = tuple(int(g) for g in lc.grid)
    if min(grid) < 1:
        return
    f.prepared_call(grid, tuple(int(b) for b in lc.block), *args)


def ptr(m):
    """The device address of a GPUArray (or view) as an int."""
    return int(m.gpudata)


def is_gpuarray(a):
    ga, _ = _pycuda()
    return isinstance(a, ga.GPUArray)


def row_stride(m):
    """Floats between the starts of two rows."""
    return m.strides[0] // 4 if m.shape[0] > 1 else m.shape[1]


def is_contiguous(m):
    rows, cols = m.shape
    return m.size == 0 or ((cols <= 1 or m.strides[1] == 4) and (rows <= 1 or m.strides[0] == 4 * cols))


def check_gpu_matrix(fn, name, a, rows=None, cols=None, contiguous=True):
    """Raise KernelArgumentError unless `a` is a 2-D float32 GPU matrix of that shape whose columns
    are adjacent (and, with `contiguous`, whose rows follow one another: a row slice is, a
    column slice is not); return its row stride in floats. Every host module of this
    backend checks its arguments with it."""
    shape = getattr(a, "shape", None)
    if shape is None or not hasattr(a, "gpudata") or len(shape) != 2:
        raise KernelArgumentError("%s: %s must be a 2-D pycuda GPUArray, got %s" % (
            fn, name, "%d-D" % len(shape) if shape is not None and hasattr(a, "gpudata") else type(a).__name__))
    if np.dtype(a.dtype) != f32:
        raise KernelArgumentError("%s: %s must be float32, got %s" % (fn, name, a.dtype))
    if rows is not None and shape[0] != rows:
        raise KernelArgumentError("%s: %s has %d rows, expected %d" % (fn, name, shape[0], rows))
    if cols is not None and shape[1] != cols:
        raise KernelArgumentError("%s: %s has %d columns, expected %d" % (fn, name, shape[1], cols))
    r, c = shape
    s0, s1 = a.strides
    if r > 1 or c > 1:
        if c > 1 and s1 != 4 or s0 % 4 or (r > 1 and s0 < 4 * c):
            raise KernelArgumentError("%s: %s must have adjacent columns (strides %s)" % (fn, name, a.strides))
        if contiguous and r > 1 and s0 != 4 * c:
            raise KernelArgumentError("%s: %s must be C-contiguous (strides %s)" % (fn, name, a.strides))
    stride = s0 // 4 if r > 1 else c
    if r * max(stride, c) > MAX_ELEMENTS:
        raise KernelArgumentError("%s: %s has more than 2^31 elements (the kernels index with int)" % (fn, name))
    return stride


def check_grid(fn, launch):
    """A launch whose grid CUDA can run (at most 65535 blocks in y), else KernelArgumentError."""
    gy = launch.grid[1]
    if gy > MAX_GRID_Y:
        raise KernelArgumentError("%s: the 2012 grid for this shape has %d blocks in y, more than CUDA's %d (too many "
                         "modules x filters, or image pixels, for the 2012 kernel)" % (fn, gy, MAX_GRID_Y))
    return launch


def imgs_per_thread_128(numImages, big=4, mid=2, small=1):
    """The 2012 choice of cases per thread by minibatch size: `big` when numImages % 128
    == 0, `mid` when % 64 == 0, else `small`."""
    return big if numImages % 128 == 0 else mid if numImages % 64 == 0 else small


def same_shape(fn, names, mats):
    s = mats[0].shape
    for n, m in zip(names[1:], mats[1:]):
        if m.shape != s:
            raise KernelArgumentError("%s: %s has shape %s, expected %s (as %s)" % (fn, n, m.shape, s, names[0]))


# ==========================================================================================
# memory
# ==========================================================================================
def empty(rows, cols):
    ga, _ = _pycuda()
    return ga.empty((int(rows), int(cols)), dtype=f32, allocator=allocator())


def zeros(rows, cols):
    """(rows, cols) zeros (by the Zero functor: every kernel this backend runs is compiled
    by loader.py, none by PyCUDA's own elementwise machinery)."""
    m = empty(rows, cols)
    apply_unary("NVMatrixOps_Zero", m, m)
    return m


def array(host):
    """A device copy of a host array (float32, C order, its shape kept)."""
    ga, _ = _pycuda()
    return ga.to_gpu(np.array(host, dtype=f32, order="C", copy=True), allocator=allocator())


def int_array(host):
    """A device copy of an integer index list (e.g. filterConns)."""
    ga, _ = _pycuda()
    return ga.to_gpu(np.array(host, dtype=np.int32), allocator=allocator())


def to_host(m):
    """A host copy of a device matrix (float32, C order)."""
    if isinstance(m, np.ndarray):
        return np.array(m, dtype=f32, order="C", copy=True)
    _pycuda()
    return np.ascontiguousarray(m.get(), dtype=f32)


def _copy2d(src, dst):
    """dst = src for two (rows, cols) matrices whose rows may be strided."""
    _, drv = _pycuda()
    rows, cols = src.shape
    if src.size == 0:
        return
    if is_contiguous(src) and is_contiguous(dst):
        drv.memcpy_dtod(ptr(dst), ptr(src), src.size * 4)
        return
    c = drv.Memcpy2D()
    c.set_src_device(ptr(src))
    c.src_pitch = row_stride(src) * 4
    c.set_dst_device(ptr(dst))
    c.dst_pitch = row_stride(dst) * 4
    c.width_in_bytes = cols * 4
    c.height = rows
    c(aligned=False)


def copy(src, dst):
    """dst = src (same shape; rows of either may be strided, e.g. row slices)."""
    fn = "copy"
    check_gpu_matrix(fn, "src", src, contiguous=False)
    check_gpu_matrix(fn, "dst", dst, src.shape[0], src.shape[1], contiguous=False)
    _copy2d(src, dst)


def slice_cols(m, start, end):
    """Columns [start, end) as a new contiguous matrix (a minibatch of cases)."""
    fn = "slice_cols"
    check_gpu_matrix(fn, "m", m, contiguous=False)
    if not 0 <= start <= end <= m.shape[1]:
        raise KernelArgumentError("%s: columns [%d, %d) are not inside [0, %d)" % (fn, start, end, m.shape[1]))
    out = empty(m.shape[0], end - start)
    if out.size:
        _copy2d(m[:, start:end], out)
    return out


def reshape(m, rows, cols):
    """A view of a contiguous matrix with another shape (no copy)."""
    check_gpu_matrix("reshape", "m", m)
    if rows * cols != m.size:
        raise KernelArgumentError("reshape: cannot view %s as (%d, %d)" % (m.shape, rows, cols))
    return m.reshape(int(rows), int(cols))


# ==========================================================================================
# element-wise launches (NVMatrix::apply, applyBinary, applyTernary, applyBinaryV)
# ==========================================================================================
def _height_width(m):
    return m.shape[0], m.shape[1]


def apply_unary(op, a, dest, p0=0.0, p1=0.0):
    """dest = op(a) (2012 NVMatrix::apply)."""
    h, w = _height_width(dest)
    if dest.size == 0:
        return
    lc = select_eltwise(1, op, h, w)
    launch(lc, FORMATS[lc.kernel], ptr(a), ptr(dest), h, w, row_stride(a), row_stride(dest), f32(p0), f32(p1))


def apply_binary(op, a, b, dest, p0=0.0, p1=0.0):
    """dest = op(a, b) (2012 NVMatrix::applyBinary)."""
    h, w = _height_width(dest)
    if dest.size == 0:
        return
    lc = select_eltwise(2, op, h, w)
    launch(lc, FORMATS[lc.kernel], ptr(a), ptr(b), ptr(dest), h, w, row_stride(a), row_stride(b),
           row_stride(dest), f32(p0), f32(p1))


def apply_ternary(op, a, b, c, dest, p0=0.0, p1=0.0):
    """dest = op(a, b, c) (2012 NVMatrix::applyTernary)."""
    h, w = _height_width(dest)
    if dest.size == 0:
        return
    lc = select_eltwise(3, op, h, w)
    launch(lc, FORMATS[lc.kernel], ptr(a), ptr(b), ptr(c), ptr(dest), h, w, row_stride(a), row_stride(b),
           row_stride(c), row_stride(dest), f32(p0), f32(p1))


def apply_vector(op, mat, vec, dest, p0=0.0, p1=0.0):
    """dest = op(mat, vec) with vec (rows, 1) or (1, cols) broadcast (2012 applyBinaryV)."""
    h, w = _height_width(mat)
    if mat.size == 0:
        return
    if vec.shape == (h, 1) and vec.shape != (1, w):
        row = False  # (for a 1-row matrix a (1, 1) vector is a scalar: the column kernel)
    elif vec.shape == (1, w):
        row = True
    else:
        raise KernelArgumentError("vector operation: the vector has shape %s; for a %dx%d matrix it must be (%d, 1) or "
                         "(1, %d)" % (vec.shape, h, w, h, w))
    if not is_contiguous(vec):
        raise KernelArgumentError("vector operation: the vector must be contiguous")
    lc = select_vector_op(op, row, h, w)
    launch(lc, FORMATS[lc.kernel], ptr(mat), ptr(vec), ptr(dest), w, h, row_stride(mat), row_stride(dest),
           f32(p0), f32(p1))


# ==========================================================================================
# aggregations (NVMatrix::_aggregate, _totalAgg)
# ==========================================================================================
def aggregate(m, axis, target, agg="NVMatrixAggs_Sum", op="NVMatrixBinaryOps_Second", p0=0.0, p1=0.0):
    """target = op(target, agg of m along axis): axis 0 gives one value per column (target
    (1, cols)), axis 1 one per row (target (rows, 1)); target may have any shape of that
    size, contiguous."""
    h, w = m.shape
    if m.size == 0:
        raise KernelArgumentError("aggregate: empty matrix")
    if not is_contiguous(m):
        raise KernelArgumentError("aggregate: the matrix must be contiguous")
    lc = select_aggregate(axis, h, w, agg, op)
    if lc.kernel == "kEltwiseBinaryOp":  # a single column: each row's aggregate is itself
        t = target.reshape(h, 1)
        launch(lc, FORMATS[lc.kernel], ptr(t), ptr(m), ptr(t), h, 1, 1, 1, 1, f32(p0), f32(p1))
        return
    if lc.kernel == "kAggRows":
        launch(lc, FORMATS[lc.kernel], ptr(m), ptr(target), w, h, lc.grid[0], f32(p0), f32(p1))
    else:
        launch(lc, FORMATS[lc.kernel], ptr(m), ptr(target), w, h, f32(p0), f32(p1))


def total_aggregate(m, agg="NVMatrixAggs_Sum"):
    """The host array of at most CPUSUM_MAX partial aggregates of all of m's elements."""
    if not is_contiguous(m):
        raise KernelArgumentError("total aggregate: the matrix must be contiguous")
    src = m
    for lc, num_cols, n in select_total_agg(m.size, agg):
        out = empty(1, lc.grid[0])
        launch(lc, FORMATS[lc.kernel], ptr(src), ptr(out), num_cols, n)
        src = out
    return to_host(src).ravel()


def max_cols(m):
    """The (1, cols) column maxima of m (2012 m.max(0))."""
    out = empty(1, m.shape[1])
    aggregate(m, 0, out, "NVMatrixAggs_Max", "NVMatrixBinaryOps_Second")
    return out


# ==========================================================================================
# arithmetic
# ==========================================================================================
def add(target, b, scaleTarget=1.0, scaleB=1.0):
    """target = scaleTarget * target + scaleB * b (2012 NVMatrix::add)."""
    fn = "add"
    check_gpu_matrix(fn, "target", target, contiguous=False)
    check_gpu_matrix(fn, "b", b, target.shape[0], target.shape[1], contiguous=False)
    if scaleTarget == 0:
        apply_unary("NVMatrixOps_MultByScalar", b, target, scaleB)
    elif scaleTarget == 1 and scaleB == 1:
        apply_binary("NVMatrixBinaryOps_Add", target, b, target)
    else:
        apply_binary("NVMatrixBinaryOps_WeightedAdd", target, b, target, scaleTarget, scaleB)


def scale_targets(target, scaleTargets):
    """target = scaleTargets * target, the 2012 kernels' way: 0 overwrites (target is not
    read, so NaN or garbage there does not survive), 1 leaves it alone."""
    if scaleTargets == 0:
        apply_unary("NVMatrixOps_Zero", target, target)
    elif scaleTargets != 1:
        apply_unary("NVMatrixOps_MultByScalar", target, target, scaleTargets)


def launch_1d(file, kernel, threads, rows, block):
    """The Launch of a kernel with one thread per item along x (blocks of `block`) and
    `rows` along y, capped at CUDA's 65535 (the kernel then strides over the rest)."""
    return Launch(file, kernel, (), (max(1, DIVUP(threads, block)), max(1, min(rows, MAX_GRID_Y))), (block, 1, 1))


def scale(src, alpha, target):
    """target = alpha * src (2012 NVMatrix::scale; by 1 in place is skipped)."""
    fn = "scale"
    check_gpu_matrix(fn, "src", src, contiguous=False)
    check_gpu_matrix(fn, "target", target, src.shape[0], src.shape[1], contiguous=False)
    if alpha == 1 and ptr(src) == ptr(target) and src.strides == target.strides:
        return
    apply_unary("NVMatrixOps_MultByScalar", src, target, alpha)


def addProduct(target, a, b, scaleTarget=0.0, scaleAB=1.0, transA=False, transB=False):
    """target = scaleTarget * target + scaleAB * op(a) @ op(b), by cuBLAS sgemm (the 2012
    call), or by the kSgemm kernel where libcublas cannot be loaded."""
    fn = "addProduct"
    check_gpu_matrix(fn, "a", a, contiguous=False)
    check_gpu_matrix(fn, "b", b, contiguous=False)
    m, k = (a.shape[1], a.shape[0]) if transA else a.shape
    k2, n = (b.shape[1], b.shape[0]) if transB else b.shape
    if k != k2:
        raise KernelArgumentError("%s: op(a) is %dx%d but op(b) is %dx%d" % (fn, m, k, k2, n))
    check_gpu_matrix(fn, "target", target, m, n, contiguous=False)
    if target.size == 0:
        return
    if k == 0:
        scale_targets(target, scaleTarget)
        return
    gemm_batched(transA, transB, m, n, k, scaleAB, ptr(a), row_stride(a), 0, ptr(b), row_stride(b), 0,
                 scaleTarget, ptr(target), row_stride(target), 0, 1)


def gemm_batched(transA, transB, m, n, k, alpha, A, lda, strideA, B, ldb, strideB, beta, C, ldc, strideC, batch):
    """C_b = alpha * op(A_b) @ op(B_b) + beta * C_b for b < batch: row-major (m, n) = (m, k)
    @ (k, n) products on device addresses A, B, C (ints), rows lda / ldb / ldc floats apart,
    X_b = X + b * strideX floats. C is not read when beta is 0. One cuBLAS strided-batched
    sgemm, or one kSgemm launch per product where libcublas cannot be loaded."""
    if batch <= 0 or m == 0 or n == 0:
        return
    if k <= 0:
        raise KernelArgumentError("gemm_batched: k must be positive, got %d" % k)
    _pycuda()
    if cublas.available():
        # row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T
        ta, tb, M, N, K, _, ld1, _, ld2, ldc = cublas.rowmajor_sgemm_args(transA, transB, m, n, k, lda, ldb, ldc)
        if batch == 1:
            cublas.sgemm(ta, tb, M, N, K, float(alpha), B, ld1, A, ld2, float(beta), C, ldc)
        else:
            cublas.sgemm_strided_batched(ta, tb, M, N, K, float(alpha), B, ld1, strideB, A, ld2, strideA, float(beta),
                                         C, ldc, strideC, batch)
        return
    lc = select_sgemm(transA, transB, m, n)
    for b in range(batch):
        launch(lc, FORMATS[lc.kernel], A + 4 * b * strideA, B + 4 * b * strideB, C + 4 * b * strideC, m, n, k,
               lda, ldb, ldc, f32(alpha), f32(beta))


def addVector(target, vec, scaleVec=1.0):
    """Adds scaleVec times a column vector (rows, 1) or a row vector (1, cols) to every
    column / row (2012 NVMatrix::addVector)."""
    fn = "addVector"
    check_gpu_matrix(fn, "target", target, contiguous=False)
    check_gpu_matrix(fn, "vec", vec)
    apply_vector("NVMatrixBinaryOps_WeightedAdd", target, vec, target, 1.0, scaleVec)


def addSum(target, m, axis, scaleTarget=0.0, scaleSum=1.0):
    """target = scaleTarget * target + scaleSum * m.sum(axis) (2012 NVMatrix::addSum)."""
    fn = "addSum"
    check_gpu_matrix(fn, "m", m)
    check_gpu_matrix(fn, "target", target)
    want = m.shape[1] if axis == 0 else m.shape[0]
    if target.size != want:
        raise KernelArgumentError("%s: target has %d elements, the sum over axis %d has %d" % (fn, target.size, axis, want))
    if scaleTarget != 0:
        aggregate(m, axis, target, "NVMatrixAggs_Sum", "NVMatrixBinaryOps_WeightedAdd", scaleTarget, scaleSum)
    else:
        aggregate(m, axis, target, "NVMatrixAggs_Sum", "NVMatrixBinaryOps_SecondScaled", scaleSum)


def sum(m):
    """The sum of all elements, as a Python float (partial sums on the GPU, the last
    CPUSUM_MAX of them added on the host in float64)."""
    check_gpu_matrix("sum", "m", m)
    if m.size == 0:
        return 0.0
    return float(np.sum(total_aggregate(m, "NVMatrixAggs_Sum"), dtype=np.float64))


def sum_abs_mean(m):
    check_gpu_matrix("sum_abs_mean", "m", m)
    tmp = empty(*m.shape)
    apply_unary("NVMatrixOps_Abs", m, tmp)
    return float(np.sum(total_aggregate(tmp, "NVMatrixAggs_Sum"), dtype=np.float64)) / m.size


def eltwiseMult(a, b, target):
    fn = "eltwiseMult"
    for n, x in (("a", a), ("b", b), ("target", target)):
        check_gpu_matrix(fn, n, x, contiguous=False)
    same_shape(fn, ("a", "b", "target"), (a, b, target))
    apply_binary("NVMatrixBinaryOps_Multiply", a, b, target)


def eltwiseMultByVector(m, vec, target):
    fn = "eltwiseMultByVector"
    check_gpu_matrix(fn, "m", m, contiguous=False)
    check_gpu_matrix(fn, "vec", vec)
    check_gpu_matrix(fn, "target", target, m.shape[0], m.shape[1], contiguous=False)
    apply_vector("NVMatrixBinaryOps_Multiply", m, vec, target)


def maximum(a, b, target):
    """target = max(a, b) element-wise (2012's eltmax layer: applyBinary(NVMatrixAggs::Max))."""
    fn = "maximum"
    for n, x in (("a", a), ("b", b), ("target", target)):
        check_gpu_matrix(fn, n, x, contiguous=False)
    same_shape(fn, ("a", "b", "target"), (a, b, target))
    apply_binary("NVMatrixAggs_Max", a, b, target)


def square(m, target):
    fn = "square"
    check_gpu_matrix(fn, "m", m, contiguous=False)
    check_gpu_matrix(fn, "target", target, m.shape[0], m.shape[1], contiguous=False)
    apply_unary("NVMatrixOps_Square", m, target)


def softmax(inputs, target):
    """Softmax over the features (axis 0) of every case, as SoftmaxLayer::fpropActs did:
    column max, subtract it (addVector), __expf, column sum, divide (__fdividef)."""
    fn = "softmax"
    check_gpu_matrix(fn, "inputs", inputs)
    check_gpu_matrix(fn, "target", target, inputs.shape[0], inputs.shape[1])
    mx = max_cols(inputs)
    apply_vector("NVMatrixBinaryOps_WeightedAdd", inputs, mx, target, 1.0, -1.0)
    apply_unary("NVMatrixOps_Exp", target, target)
    s = empty(1, inputs.shape[1])
    aggregate(target, 0, s, "NVMatrixAggs_Sum", "NVMatrixBinaryOps_Second")
    apply_vector("NVMatrixBinaryOps_Divide", target, s, target)


def isfinite(m):
    check_gpu_matrix("isfinite", "m", m)
    if m.size == 0:
        return True
    return bool(np.isfinite(total_aggregate(m, "NVMatrixAggs_NonFinite")).all())


# ==========================================================================================
# random numbers
# ==========================================================================================
# The device generator is Philox4x32-10 keyed by the seed; the k-th random call uses counter
# block k. Host draws (randint, rand) come from a NumPy generator seeded alike.
_rng = {"seed": 0, "calls": 0}
_host_rng = np.random.default_rng(0)
RNG_NAME = "philox4x32-10"


def _numpy_backend_nvmatrix():
    from ..numpy import nvmatrix as np_nvmatrix
    return np_nvmatrix


def seed(s):
    """Seeds the backend's generators (dropout masks, noisy neurons; host draws; and the
    NumPy backend's generator, which the host fallbacks use)."""
    global _host_rng
    s = int(s)
    _rng["seed"] = s % (1 << 64)
    _rng["calls"] = 0
    _host_rng = np.random.default_rng(s)
    _numpy_backend_nvmatrix().seed(s)


def get_rng_state():
    """The generators' state, to store in a checkpoint (plain Python values)."""
    return {"generator": RNG_NAME, "seed": _rng["seed"], "calls": _rng["calls"],
            "host": _host_rng.bit_generator.state, "numpy_backend": _numpy_backend_nvmatrix().get_rng_state()}


def set_rng_state(state):
    """Restores get_rng_state()'s value. A NumPy-backend state (a checkpoint written by the
    NumPy engine) sets the host generator and seeds the device one from it."""
    global _host_rng
    if isinstance(state, dict) and state.get("generator") == RNG_NAME:
        _rng["seed"], _rng["calls"] = int(state["seed"]), int(state["calls"])
        _host_rng = np.random.default_rng()
        _host_rng.bit_generator.state = state["host"]
        if state.get("numpy_backend") is not None:
            _numpy_backend_nvmatrix().set_rng_state(state["numpy_backend"])
        return
    _numpy_backend_nvmatrix().set_rng_state(state)
    _host_rng = np.random.default_rng()
    _host_rng.bit_generator.state = state
    _rng["seed"] = int(_host_rng.integers(1 << 63))
    _rng["calls"] = 0


def _next_call():
    c = _rng["calls"]
    _rng["calls"] = c + 1
    s = _rng["seed"]
    return (s & 0xFFFFFFFF, (s >> 32) & 0xFFFFFFFF, c & 0xFFFFFFFF, (c >> 32) & 0xFFFFFFFF)


def randomize_unary(randomizer, data, target, p0=0.0, p1=0.0):
    """target[i] = randomizer(data[i], random words of element i)."""
    if target.size == 0:
        return
    lc = select_randomize(False, randomizer)
    launch(lc, FORMATS[lc.kernel], ptr(data), ptr(target), *_next_call(), target.size, f32(p0), f32(p1))


def randomize_binary(randomizer, data, data2, target, p0=0.0, p1=0.0):
    if target.size == 0:
        return
    lc = select_randomize(True, randomizer)
    launch(lc, FORMATS[lc.kernel], ptr(data), ptr(data2), ptr(target), *_next_call(), target.size,
           f32(p0), f32(p1))


def _shape2(shape):
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2:
        raise KernelArgumentError("random matrices are 2-D, got shape %s" % (shape,))
    return shape


def uniform_mask(shape, keep):
    """1 where a uniform draw in [0, 1) is below `keep`, else 0 (HiddenSexLayer: a uniform
    matrix, then smallerThanScalar(keep))."""
    out = empty(*_shape2(shape))
    randomize_unary("UniformUnaryRandomizer", out, out)
    apply_unary("NVMatrixOps_SmallerThanScalar", out, out, keep)
    return out


def randn(shape):
    out = empty(*_shape2(shape))
    randomize_unary("GaussianUnaryRandomizer", out, out, 0.0, 1.0)
    return out


def randint(high):
    return int(_host_rng.integers(high))


def rand():
    return float(_host_rng.random())


# ==========================================================================================
# neurons: the element-wise functors of neuron.cuh
# ==========================================================================================
# kind -> (activation functor, its scalars from (a, b))
_ACTIVATIONS = {
    "relu": ("ReluOperator", lambda a, b: ()),
    "nrelu": ("ReluOperator", lambda a, b: ()),
    "brelu": ("BoundedReluOperator", lambda a, b: (a,)),
    "abs": ("NVMatrixOps_Abs", lambda a, b: ()),
    "logistic": ("NVMatrixOps_Logistic", lambda a, b: ()),
    "tanh": ("TanhOperator", lambda a, b: (a, b)),
    "softrelu": ("SoftReluOperator", lambda a, b: ()),
    "square": ("NVMatrixOps_Square", lambda a, b: ()),
    "sqrt": ("NVMatrixOps_Sqrt", lambda a, b: ()),
    "linear": ("LinearOperator", lambda a, b: (a, b)),
    "drelu": ("DoubleReluOperator", lambda a, b: (a,)),
}
# kind -> (gradient functor, which operand it reads: 'x' inputs or 'y' outputs, scalars)
_GRADIENTS = {
    "relu": ("ReluGradientOperator", "y", lambda a, b: ()),
    "nrelu": ("ReluGradientOperator", "y", lambda a, b: ()),
    "brelu": ("BoundedReluGradientOperator", "y", lambda a, b: (a,)),
    "abs": ("AbsGradientOperator", "x", lambda a, b: ()),
    "logistic": ("LogisticGradientOperator", "y", lambda a, b: ()),
    "tanh": ("TanhGradientOperator", "y", lambda a, b: (a, b)),
    "softrelu": ("SoftReluGradientOperator", "x", lambda a, b: ()),
    "square": ("SquareGradientOperator", "x", lambda a, b: ()),
    "sqrt": ("SqrtGradientOperator", "y", lambda a, b: ()),
    "drelu": ("DoubleReluGradientOperator", "x", lambda a, b: (a,)),
}


def neuronActivate(kind, x, y, a=0.0, b=0.0):
    """y = f(x) for neuron `kind` (the Neuron classes' _activate)."""
    fn = "neuronActivate"
    check_gpu_matrix(fn, "x", x, contiguous=False)
    check_gpu_matrix(fn, "y", y, x.shape[0], x.shape[1], contiguous=False)
    if kind == "ident":
        if not (ptr(x) == ptr(y) and x.strides == y.strides):
            _copy2d(x, y)
        return
    if kind not in _ACTIVATIONS:
        raise KernelArgumentError("unknown neuron type '%s'" % kind)
    op, scalars = _ACTIVATIONS[kind]
    apply_unary(op, x, y, *scalars(a, b))
    if kind == "nrelu":  # CHM: plus noise with stdev = the output, rectified again
        if not is_contiguous(y):
            raise KernelArgumentError("%s: nrelu needs contiguous outputs" % fn)
        randomize_binary("AddGaussianBinaryRandomizer", y, y, y)
        apply_unary("ReluOperator", y, y)


def neuronInputGrad(kind, actsGrad, x, y, target, add, a=0.0, b=0.0, grad_from_outputs=False):
    """target (+)= df/dx * actsGrad (the Neuron classes' _computeInputGrad / _addInputGrad).
    `x` are the neuron's inputs, `y` its outputs; `grad_from_outputs` reproduces cuda-convnet
    r561's softrelu, which took the derivative at the outputs."""
    fn = "neuronInputGrad"
    check_gpu_matrix(fn, "actsGrad", actsGrad, contiguous=False)
    check_gpu_matrix(fn, "target", target, actsGrad.shape[0], actsGrad.shape[1], contiguous=False)
    if kind == "ident":
        if add:
            apply_binary("NVMatrixBinaryOps_Add", target, actsGrad, target)
        else:
            _copy2d(actsGrad, target)
        return
    if kind == "linear":
        if add:
            apply_binary("AddGradientOperator_NVMatrixOps_MultByScalar", actsGrad, target, target, a)
        else:
            apply_unary("NVMatrixOps_MultByScalar", actsGrad, target, a)
        return
    if kind not in _GRADIENTS:
        raise KernelArgumentError("unknown neuron type '%s'" % kind)
    op, which, scalars = _GRADIENTS[kind]
    if kind == "softrelu" and grad_from_outputs:
        which = "y"
    operand = y if which == "y" else x
    check_gpu_matrix(fn, "outputs" if which == "y" else "inputs", operand, actsGrad.shape[0], actsGrad.shape[1],
          contiguous=False)
    if add:
        apply_ternary("AddGradientBinaryOperator_" + op, actsGrad, operand, target, target, *scalars(a, b))
    else:
        apply_binary(op, actsGrad, operand, target, *scalars(a, b))
