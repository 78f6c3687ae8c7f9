"""The CUDA backend's selectors against the 2012 host code's branches, without a GPU.

The 2012 host functions (cc:src/cudaconv2/conv_util.cu, include/cudaconv2/conv_util.cuh,
src/layer_kernels.cu, src/nvmatrix/nvmatrix.cu, include/nvmatrix/nvmatrix.cuh) pick a
kernel, template arguments, grid and block from the sizes; here each kernel family has one
pure-Python selector doing that. Every row of the tables below was worked out by hand from
those 2012 branches (file:function named per table) for the inputs given; the selectors
must return exactly that. Where this port departs from 2012 on purpose the row says so.

Also checked, still without a GPU: INSTANTIATIONS lists exactly what the selectors can
return; every kernel's argument format matches its __global__ signature in cuda_src; the
#defines the selectors mirror; the cuBLAS row-major mapping (against a NumPy emulation of
column-major sgemm); the Philox generator against its published known answers; and that
importing the backend's modules does not import pycuda.
"""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cudaconvnet.backends.cuda import conv_util as cu
from cudaconvnet.backends.cuda import cublas
from cudaconvnet.backends.cuda import layer_kernels as lk
from cudaconvnet.backends.cuda import nvmatrix as nvm

CUDA_SRC = Path(__file__).resolve().parents[1] / "cuda_src"
F, T = False, True
B128 = (128, 1, 1)
B32x4 = (32, 4, 1)


def lc(sel):
    """(kernel, template args, grid, block) of a Launch."""
    return (sel.kernel, sel.targs, tuple(sel.grid), tuple(sel.block))


# ==========================================================================================
# conv_util.cuh: convLocalPool
# ==========================================================================================
POOL = [
    # (pooler, numFilters, numImages, subsX, strideX, outputsX) -> expected
    # strideX == 1 && subsX >= 6: kLocalPool2<Pooler, 8, imgs, fpt, ccb>, threads (8, 16),
    # imgs = n % 128 ? 4 : 8, fpt = nf%4?nf%3?nf%2?1:2:3:4, grid (D(ox,4)*D(n,8*imgs), D(ox,4)*nf/fpt)
    (("max", 16, 128, 7, 1, 10), ("kLocalPool2", ("MaxPooler", 8, 8, 4, F), (6, 12), (8, 16, 1))),
    (("avg", 3, 100, 6, 1, 5), ("kLocalPool2", ("AvgPooler", 8, 4, 3, T), (8, 2), (8, 16, 1))),
    (("maxabs", 2, 64, 8, 1, 4), ("kLocalPool2", ("MaxAbsPooler", 8, 4, 2, F), (2, 1), (8, 16, 1))),
    (("max", 7, 256, 6, 1, 9), ("kLocalPool2", ("MaxPooler", 8, 8, 1, F), (12, 21), (8, 16, 1))),
    # otherwise kLocalPool<Pooler, 4, 32, imgs, fpt, ccb>: fpt = nf % 8 ? 1 : 2,
    # imgs 4/2/1 by n % 128/64, grid (D(n,32*imgs)*ox, D(nf,4*fpt)*ox)
    (("max", 32, 128, 3, 2, 16), ("kLocalPool", ("MaxPooler", 4, 32, 4, 2, F), (16, 64), B32x4)),
    (("avg", 20, 64, 3, 2, 7), ("kLocalPool", ("AvgPooler", 4, 32, 2, 1, F), (7, 35), B32x4)),
    (("max", 16, 100, 5, 1, 12), ("kLocalPool", ("MaxPooler", 4, 32, 1, 2, T), (48, 24), B32x4)),
    (("avg", 64, 128, 6, 2, 5), ("kLocalPool", ("AvgPooler", 4, 32, 4, 2, F), (5, 40), B32x4)),
    (("maxabs", 96, 96, 3, 2, 27), ("kLocalPool", ("MaxAbsPooler", 4, 32, 1, 2, F), (81, 324), B32x4)),
]


@pytest.mark.parametrize("args,expected", POOL)
def test_pool(args, expected):
    assert lc(cu.select_pool(*args)) == expected


# ==========================================================================================
# conv_util.cu: convLocalMaxUndo, convLocalAvgUndo
# ==========================================================================================
UNDO = [
    # (kind, numFilters, numImages, imgSize, scaleTargets, scaleOutput) -> expected
    # max: kLocalMaxUndo<4, 32, imgs, 2, add, ccb>, grid (D(n,32*imgs)*imgSize, nf/8*imgSize)
    # add is false only for scaleTargets == 0 && scaleOutput == 1
    (("max", 32, 128, 12, 0, 1), ("kLocalMaxUndo", (4, 32, 4, 2, F, F), (12, 48), B32x4)),
    (("max", 16, 64, 5, 1, 1), ("kLocalMaxUndo", (4, 32, 2, 2, T, F), (5, 10), B32x4)),
    (("max", 48, 50, 3, 0, 2), ("kLocalMaxUndo", (4, 32, 1, 2, T, T), (6, 18), B32x4)),
    # avg: kLocalAvgUndo<4, 32, imgs, 4, add, ccb>, grid (D(n,32*imgs)*imgSize, nf/16*imgSize)
    (("avg", 32, 128, 12, 0, 1), ("kLocalAvgUndo", (4, 32, 4, 4, F, F), (12, 24), B32x4)),
    (("avg", 16, 96, 4, 0.5, 1), ("kLocalAvgUndo", (4, 32, 1, 4, T, F), (12, 4), B32x4)),
    (("avg", 64, 200, 7, 1, 1), ("kLocalAvgUndo", (4, 32, 1, 4, T, T), (49, 28), B32x4)),
]


@pytest.mark.parametrize("args,expected", UNDO)
def test_pool_undo(args, expected):
    kind, rest = args[0], args[1:]
    sel = cu.select_max_undo if kind == "max" else cu.select_avg_undo
    assert lc(sel(*rest)) == expected


@pytest.mark.parametrize("sel", [cu.select_max_undo, cu.select_avg_undo])
def test_pool_undo_needs_16_filters(sel):
    with pytest.raises(ValueError, match="divisible by 16"):
        sel(20, 128, 8, 0, 1)


# ==========================================================================================
# conv_util.cu: convContrastNorm (convResponseNorm)
# ==========================================================================================
CNORM = [
    # (numFilters, numImages, imgSize, sizeX) -> expected
    # sizeX >= 6 && nf % 4 == 0: kCNorm2<8, 8, 4, n % 64 != 0>, threads (8, 16),
    # grid (D(imgSize,4)*D(n,64), D(imgSize,4)*nf/4)
    ((16, 128, 8, 6), ("kCNorm2", (8, 8, 4, F), (4, 8), (8, 16, 1))),
    ((8, 100, 8, 7), ("kCNorm2", (8, 8, 4, T), (4, 4), (8, 16, 1))),
    # nf <= 8: kCNorm_fewfilter<1, nf, n % 128 != 0>, 128 threads, grid (D(n,128)*imgSize, imgSize)
    ((3, 128, 10, 9), ("kCNorm_fewfilter", (1, 3, F), (10, 10), B128)),
    ((5, 200, 6, 3), ("kCNorm_fewfilter", (1, 5, T), (12, 6), B128)),
    ((8, 128, 6, 5), ("kCNorm_fewfilter", (1, 8, F), (6, 6), B128)),
    # else kCNorm_manyfilter<4, 32, 4, 2, n % 128 != 0>, grid (D(n,128)*imgSize, nf/8*imgSize)
    ((32, 128, 6, 5), ("kCNorm_manyfilter", (4, 32, 4, 2, F), (6, 24), B32x4)),
    ((16, 64, 6, 3), ("kCNorm_manyfilter", (4, 32, 4, 2, T), (6, 12), B32x4)),
]


@pytest.mark.parametrize("args,expected", CNORM)
def test_cnorm(args, expected):
    assert lc(cu.select_cnorm(*args)) == expected


@pytest.mark.parametrize("nf,size", [(12, 3), (12, 6), (24, 7)])
def test_cnorm_filter_count_assert(nf, size):
    # 2012 asserts numFilters % 16 == 0 || numFilters <= 8 before choosing
    with pytest.raises(ValueError, match="<= 8 or divisible by 16"):
        cu.select_cnorm(nf, 128, 8, size)


# ==========================================================================================
# conv_util.cu: convResponseNormUndo (convContrastNormUndo)
# ==========================================================================================
RNORM_UNDO = [
    # (numFilters, numImages, imgSize, sizeX, scaleTargets, scaleOutput) -> (prelims grid,
    # main). Prelims: kRNormUndoPrelims<128, 4>, grid min(512, D(elements, 512)).
    # sizeX >= 6 && nf % 4 == 0: kRNormUndo2<16, imgs, 4, add, ccb>, threads (16, 16),
    # imgs = n%128 ? n%64 ? 2 : 4 : 8, ccb = n % (16*imgs) != 0,
    # grid (D(imgSize,4)*D(n,16*imgs), D(imgSize,4)*nf/4).
    # DEPARTURE: 2012 passed add=true exactly when scaleTargets == 0 && scaleOutput == 1
    # (inverted); here add is true when the target is accumulated into, as for every other
    # kernel. (2012 would have dropped the old gradient when accumulating.)
    ((32, 128, 8, 6, 0, 1), ((512, 1), ("kRNormUndo2", (16, 8, 4, F, F), (2, 16), (16, 16, 1)))),
    ((16, 64, 5, 7, 1, 1), ((50, 1), ("kRNormUndo2", (16, 4, 4, T, F), (2, 8), (16, 16, 1)))),
    ((16, 32, 4, 6, 0, 1), ((16, 1), ("kRNormUndo2", (16, 2, 4, F, F), (1, 4), (16, 16, 1)))),
    ((16, 100, 4, 6, 0, 1), ((50, 1), ("kRNormUndo2", (16, 2, 4, F, T), (4, 4), (16, 16, 1)))),
    # else kRNormUndo<4, 32, imgs, 2, add, ccb>, imgs = n % 64 ? 1 : 2,
    # grid (D(n,32*imgs)*imgSize, nf/8*imgSize)
    ((32, 128, 8, 5, 0, 1), ((512, 1), ("kRNormUndo", (4, 32, 2, 2, F, F), (16, 32), B32x4))),
    ((16, 50, 3, 3, 2, 1), ((15, 1), ("kRNormUndo", (4, 32, 1, 2, T, T), (6, 6), B32x4))),
    ((16, 96, 4, 3, 0, 1), ((48, 1), ("kRNormUndo", (4, 32, 1, 2, F, F), (12, 8), B32x4))),  # 96 % 64: imgs 1
]


@pytest.mark.parametrize("args,expected", RNORM_UNDO)
def test_rnorm_undo(args, expected):
    prelims, main = cu.select_rnorm_undo(*args)
    assert lc(prelims) == ("kRNormUndoPrelims", (128, 4), expected[0], B128)
    assert lc(main) == expected[1]


def test_rnorm_undo_needs_16_filters():
    with pytest.raises(ValueError, match="divisible by 16"):
        cu.select_rnorm_undo(8, 128, 8, 3, 0, 1)


# ==========================================================================================
# conv_util.cu: convContrastNormCrossMap, convResponseNormCrossMapUndo
# ==========================================================================================
def test_cross_map_norm():
    # kFCNorm<4, 32, 4, n % 128 != 0, blocked>, grid (D(n,128)*imgSize, nf/4*imgSize)
    assert lc(cu.select_cross_map_norm(32, 128, 6, 5, False)) == ("kFCNorm", (4, 32, 4, F, F), (6, 48), B32x4)
    assert lc(cu.select_cross_map_norm(16, 100, 4, 3, True)) == ("kFCNorm", (4, 32, 4, T, T), (4, 16), B32x4)
    with pytest.raises(ValueError, match="sizeF"):
        cu.select_cross_map_norm(32, 128, 6, 40, False)
    with pytest.raises(ValueError, match="divisible by 16"):
        cu.select_cross_map_norm(24, 128, 6, 5, False)


def test_cross_map_undo():
    # kRNormUndoPrelims then kFRNormUndo<4, 32, 4, add, n % 128 != 0, blocked>
    p, m = cu.select_cross_map_undo(32, 128, 6, 5, False, 0, 1)
    assert lc(p) == ("kRNormUndoPrelims", (128, 4), (288, 1), B128)
    assert lc(m) == ("kFRNormUndo", (4, 32, 4, F, F, F), (6, 48), B32x4)
    p, m = cu.select_cross_map_undo(16, 130, 2, 3, True, 1, 1)
    assert lc(p) == ("kRNormUndoPrelims", (128, 4), (17, 1), B128)
    assert lc(m) == ("kFRNormUndo", (4, 32, 4, T, T, T), (4, 8), B32x4)


# ==========================================================================================
# conv_util.cu: convTICA, convTICAGrad
# ==========================================================================================
def test_tica():
    # <4, 32, 4, 2, n % 128 != 0>, grid (D(n,128)*imgSize, nf/8*imgSize); the 2012 host
    # asserted numFilters > 8 (and % 16 == 0) and sizeX < 6
    assert lc(cu.select_tica(False, 16, 128, 4, 3)) == ("kTICA_manyfilter", (4, 32, 4, 2, F), (4, 8), B32x4)
    assert lc(cu.select_tica(True, 32, 10, 5, 5)) == ("kTICAGrad_manyfilter", (4, 32, 4, 2, T), (5, 20), B32x4)
    with pytest.raises(ValueError, match="numFilters > 8"):
        cu.select_tica(False, 8, 128, 4, 3)
    with pytest.raises(ValueError, match="sizeX < 6"):
        cu.select_tica(True, 16, 128, 4, 6)


# ==========================================================================================
# conv_util.cu: blur, bed of nails, resize, colour, crop; reflect (not 2012)
# ==========================================================================================
def test_blur():
    # kGaussianBlur<4, 32, radius>, grid (D(n,32), D(nc*imgSize,4))
    assert lc(cu.select_blur(2, 3, 128, 32)) == ("kGaussianBlur", (4, 32, 2), (4, 24), B32x4)
    assert lc(cu.select_blur(4, 1, 10, 9)) == ("kGaussianBlur", (4, 32, 4), (1, 3), B32x4)
    with pytest.raises(ValueError, match="radius"):
        cu.select_blur(5, 1, 10, 20)


def test_bed_of_nails():
    # kBedOfNails<4, 32, imgs, nc % 8 ? 1 : 2, ccb>, grid (D(n,32*imgs)*ox, D(nc,4*chans)*ox)
    assert lc(cu.select_bed_of_nails(3, 128, 8)) == ("kBedOfNails", (4, 32, 4, 1, F), (8, 8), B32x4)
    assert lc(cu.select_bed_of_nails(16, 64, 5)) == ("kBedOfNails", (4, 32, 2, 2, F), (5, 10), B32x4)
    assert lc(cu.select_bed_of_nails(8, 33, 3)) == ("kBedOfNails", (4, 32, 1, 2, T), (6, 3), B32x4)


def test_resize_color_crop_reflect():
    # kResizeBilinear<imgs, ccb>, threads (32, 16), grid (D(n,32*imgs), nc*D(tgt,4)^2)
    assert lc(cu.select_resize(3, 128, 24)) == ("kResizeBilinear", (4, F), (1, 108), (32, 16, 1))
    assert lc(cu.select_resize(1, 70, 5)) == ("kResizeBilinear", (1, T), (3, 4), (32, 16, 1))
    # kRGBToYUV<imgs, ccb> / kRGBToLAB<imgs, ccb, center>, grid (D(n,32*imgs), D(pixels,4))
    assert lc(cu.select_color("yuv", 128, 1024)) == ("kRGBToYUV", (4, F), (1, 256), B32x4)
    assert lc(cu.select_color("lab", 64, 1024, True)) == ("kRGBToLAB", (2, F, T), (1, 256), B32x4)
    assert lc(cu.select_color("lab", 10, 30, False)) == ("kRGBToLAB", (1, T, F), (1, 8), B32x4)
    # kCrop<imgs, ccb>, grid (D(n,32*imgs), nc*D(tgt^2,4))
    assert lc(cu.select_crop(3, 128, 24)) == ("kCrop", (4, F), (1, 432), B32x4)
    # kReflectH<imgs, ccb> (written in the manner of kCrop): pairs = imgSize * D(imgSize, 2)
    assert lc(cu.select_reflect(3, 96, 5)) == ("kReflectH", (1, F), (3, 12), B32x4)


def test_grid_limit_is_a_clean_error():
    with pytest.raises(ValueError, match="65535"):
        cu.select_crop(3, 128, 400)  # 3 * 40000 blocks in y


# ==========================================================================================
# layer_kernels.cu
# ==========================================================================================
def test_layer_kernels():
    # costs: DIVUP(numCases, LOGREG_ERR_THREADS_X = 128) blocks of 128
    assert lc(lk.select_cost("kLogregCost", 128)) == ("kLogregCost", (), (1, 1), B128)
    assert lc(lk.select_cost("kCrossEntCost", 300)) == ("kCrossEntCost", (), (3, 1), B128)
    assert lc(lk.select_multisoftmax(False, 128))[0] == "kMultiSoftmaxCost"
    assert lc(lk.select_multisoftmax(True, 128))[0] == "kMultiSoftmaxCost_engs"
    # gradients: <add>, threads (32, 4), grid (D(numCases,32), D(numOut,4))
    for k in lk.GRAD_KERNELS:
        assert lc(lk.select_grad(k, False, 10, 128)) == (k, (F,), (4, 3), B32x4)
        assert lc(lk.select_grad(k, True, 1000, 100)) == (k, (T,), (4, 250), B32x4)
    # kEltwiseMaxGrad<128, add>, DIVUP(n, 128) blocks
    assert lc(lk.select_eltwise_max_grad(True, 1000)) == ("kEltwiseMaxGrad", (128, T), (8, 1), B128)


# ==========================================================================================
# nvmatrix.cu / nvmatrix.cuh
# ==========================================================================================
S, WA, SS, SEC = "NVMatrixAggs_Sum", "NVMatrixBinaryOps_WeightedAdd", "NVMatrixBinaryOps_SecondScaled", \
    "NVMatrixBinaryOps_Second"

AGGREGATE = [
    # (axis, height, width) -> expected, NVMatrix::_aggregate on a row-major matrix
    # axis 0: kDumbAggCols, D(width, 256) blocks of 256
    ((0, 10, 1000), ("kDumbAggCols", (S, WA), (4, 1), (256, 1, 1))),
    ((0, 1, 7), ("kDumbAggCols", (S, WA), (1, 1), (256, 1, 1))),
    # axis 1, width 1: DEPARTURE (2012 copied the matrix, dropping the scales)
    ((1, 7, 1), ("kEltwiseBinaryOp", (WA,), (1, 1), (32, 8, 1))),
    # height >= 16384: kAggShortRows<agg, op, LOOPS_X, THREADS_X>, threads (THREADS_X, 8),
    # grid (1, D(height, 256)) halved in y / doubled in x until y <= 65535
    ((1, 20000, 3), ("kAggShortRows", (S, WA, 1, 4), (1, 79), (4, 8, 1))),
    ((1, 20000, 8), ("kAggShortRows", (S, WA, 1, 8), (1, 79), (8, 8, 1))),
    ((1, 20000, 10), ("kAggShortRows", (S, WA, 1, 12), (1, 79), (12, 8, 1))),
    ((1, 20000, 16), ("kAggShortRows", (S, WA, 1, 16), (1, 79), (16, 8, 1))),
    ((1, 20000, 17), ("kAggShortRows", (S, WA, 2, 32), (1, 79), (32, 8, 1))),
    ((1, 16384, 48), ("kAggShortRows", (S, WA, 3, 32), (1, 64), (32, 8, 1))),
    ((1, 20000, 64), ("kAggShortRows", (S, WA, 4, 32), (1, 79), (32, 8, 1))),
    ((1, 20000, 65), ("kAggShortRows2", (S, WA), (1, 79), (32, 8, 1))),
    ((1, 20000000, 2), ("kAggShortRows", (S, WA, 1, 4), (2, 39063), (4, 8, 1))),
    # width >= 512: kAggRows_wholerow_nosync, 256 threads, grid (1, min(1024, height))
    ((1, 10, 512), ("kAggRows_wholerow_nosync", (S, WA), (1, 10), (256, 1, 1))),
    ((1, 5000, 600), ("kAggRows_wholerow_nosync", (S, WA), (1, 1024), (256, 1, 1))),
    # else kAggRows<agg, op, blockSize>: blockSize 32/64/128/256 for width <= 64/128/256/512,
    # grid (D(width, 2 blockSize) = 1, min(height, 65535))
    ((1, 10, 64), ("kAggRows", (S, WA, 32), (1, 10), (32, 1, 1))),
    ((1, 10, 65), ("kAggRows", (S, WA, 64), (1, 10), (64, 1, 1))),
    ((1, 3, 129), ("kAggRows", (S, WA, 128), (1, 3), (128, 1, 1))),
    ((1, 16383, 511), ("kAggRows", (S, WA, 256), (1, 16383), (256, 1, 1))),
]


@pytest.mark.parametrize("args,expected", AGGREGATE)
def test_aggregate(args, expected):
    assert lc(nvm.select_aggregate(*args, S, WA)) == expected


def test_eltwise_and_vector():
    # apply/applyBinary/applyTernary: threads (32, 8), grid (min(65535, D(w,32)), min(65535, D(h,8)))
    assert lc(nvm.select_eltwise(1, "NVMatrixOps_Exp", 10, 128)) == \
        ("kEltwiseUnaryOp", ("NVMatrixOps_Exp",), (4, 2), (32, 8, 1))
    assert lc(nvm.select_eltwise(2, "NVMatrixBinaryOps_Add", 1000000, 128)) == \
        ("kEltwiseBinaryOp", ("NVMatrixBinaryOps_Add",), (4, 65535), (32, 8, 1))
    assert lc(nvm.select_eltwise(3, "NVMatrixTernaryOps_Add", 3, 3000000)) == \
        ("kEltwiseTernaryOp", ("NVMatrixTernaryOps_Add",), (65535, 1), (32, 8, 1))
    # applyBinaryV: threads (64, 4), grid (min(65535, D(w,64)), min(65535, D(h,4)))
    assert lc(nvm.select_vector_op(WA, True, 10, 128)) == ("kRowVectorOp", (WA,), (2, 3), (64, 4, 1))
    assert lc(nvm.select_vector_op(WA, False, 10, 128)) == ("kColVectorOp", (WA,), (2, 3), (64, 4, 1))


def test_total_agg():
    # _totalAgg: passes of kTotalAgg with numCols = D(n, ceil(log2 n)), D(numCols, 512)
    # blocks of 512, until n <= CPUSUM_MAX = 4096
    assert nvm.select_total_agg(4096, S) == []
    (p,) = nvm.select_total_agg(4097, S)
    assert (lc(p[0]), p[1], p[2]) == (("kTotalAgg", (S,), (1, 1), (512, 1, 1)), 316, 4097)
    (p,) = nvm.select_total_agg(100000, S)
    assert (p[0].grid, p[1]) == ((12, 1), 5883)
    p1, p2 = nvm.select_total_agg(10 ** 8, S)
    assert (p1[0].grid, p1[1], p2[0].grid, p2[1], p2[2]) == ((7234, 1), 3703704, (2, 1), 557, 7234)


def test_randomize_and_sgemm():
    # _unaryRandomize / _binaryRandomize: NUM_RND_BLOCKS x NUM_RND_THREADS_PER_BLOCK
    assert lc(nvm.select_randomize(False, "UniformUnaryRandomizer")) == \
        ("kUnaryRandomize", ("UniformUnaryRandomizer",), (96, 1), (128, 1, 1))
    assert lc(nvm.select_randomize(True, "AddGaussianBinaryRandomizer"))[0] == "kBinaryRandomize"
    # kSgemm (not 2012): 16x16 tiles of C
    assert lc(nvm.select_sgemm(True, False, 10, 128)) == ("kSgemm", (T, F), (8, 1), (16, 16, 1))


# ==========================================================================================
# consistency of INSTANTIATIONS, formats and constants with cuda_src
# ==========================================================================================
MODULES = (cu, lk, nvm)


@pytest.mark.parametrize("mod", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_instantiations_cover_the_selectors(mod):
    inst = set(mod.INSTANTIATIONS)
    assert len(inst) == len(mod.INSTANTIATIONS) > 0
    assert all(f == mod.FILE for f, _, _ in inst)
    seen = set()
    if mod is cu:
        seen = {x[:3] for x in cu._cover()}
        for args, _ in POOL:
            seen.add(cu.select_pool(*args)[:3])
    elif mod is lk:
        seen = {x[:3] for x in lk._cover()}
    else:
        seen = set(nvm._instantiations())
        for args, _ in AGGREGATE:
            for agg, op in nvm.AGGREGATIONS:
                seen.add(nvm.select_aggregate(*args, agg, op)[:3])
    assert seen == inst


@pytest.mark.parametrize("table", ["POOL", "UNDO", "CNORM", "RNORM_UNDO"])
def test_table_rows_are_instantiated(table):
    inst = {(k, a) for _, k, a in cu.INSTANTIATIONS}
    for _, expected in globals()[table]:
        main = expected[1] if table == "RNORM_UNDO" else expected
        assert (main[0], main[1]) in inst


PARAM_CODES = (("*", "P"), ("bool", "?"), ("unsigned", "I"), ("uint", "I"), ("int", "i"), ("float", "f"))


def kernel_signatures(path):
    """{kernel name: struct codes of its parameters} from the __global__ functions of a file."""
    text = re.sub(r"/\*.*?\*/", "", path.read_text(), flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    out = {}
    for m in re.finditer(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)\s*\(([^)]*)\)", text):
        codes = ""
        for p in m.group(2).split(","):
            for key, code in PARAM_CODES:
                if re.search(r"\*" if key == "*" else r"\b%s\b" % key, p):
                    codes += code
                    break
            else:
                raise AssertionError("unknown parameter type %r of %s" % (p, m.group(1)))
        out[m.group(1)] = codes
    return out


@pytest.mark.parametrize("mod", MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_argument_formats_match_the_kernels(mod):
    """The struct codes the host packs arguments with must be the kernels' parameter types,
    or a launch reads garbage; a GPU is not needed to check that."""
    sigs = kernel_signatures(CUDA_SRC / mod.FILE)
    for _, kernel, _ in mod.INSTANTIATIONS:
        assert kernel in sigs, kernel
        assert mod.FORMATS[kernel] == sigs[kernel], kernel


def test_nvmatrix_constants_match_the_file():
    text = (CUDA_SRC / nvm.FILE).read_text()
    defines = dict(re.findall(r"#define\s+(\w+)\s+(\d+)\s*$", text, flags=re.M))
    for name in ("NUM_BLOCKS_MAX", "NUM_RND_BLOCKS", "NUM_RND_THREADS_PER_BLOCK", "ELTWISE_THREADS_X",
                 "ELTWISE_THREADS_Y", "NUM_SUM_COLS_THREADS_PER_BLOCK", "AGG_SHORT_ROWS_THREADS_X",
                 "AGG_SHORT_ROWS_THREADS_Y", "AGG_SHORT_ROWS_LOOPS_Y", "DP_BLOCKSIZE", "CPUSUM_MAX",
                 "ADD_VEC_THREADS_X", "ADD_VEC_THREADS_Y", "AWR_NUM_THREADS", "SGEMM_TILE"):
        assert int(defines[name]) == getattr(nvm, name), name
    lkd = dict(re.findall(r"#define\s+(\w+)\s+(\d+)", (CUDA_SRC / lk.FILE).read_text()))
    for name in ("LOGREG_GRAD_THREADS_X", "LOGREG_GRAD_THREADS_Y", "LOGREG_ERR_THREADS_X"):
        assert int(lkd[name]) == getattr(lk, name), name


def test_functor_names_exist():
    """Every functor, pooler and randomizer the selectors name is a class in cuda_src."""
    text = "".join(p.read_text() for p in CUDA_SRC.rglob("*.cu*"))
    classes = set(re.findall(r"\bclass\s+(\w+)", text))
    classes |= {"AddGradientBinaryOperator_" + g for g in re.findall(r"ADD_GRADIENT_BINARY_OPERATOR\((\w+)\)", text)}
    classes |= {"AddGradientOperator_" + g for g in re.findall(r"ADD_GRADIENT_OPERATOR\((\w+)\)", text)}
    for mod in MODULES:
        for _, _, args in mod.INSTANTIATIONS:
            for a in args:
                if isinstance(a, str):
                    assert a in classes, a


# ==========================================================================================
# cuBLAS mapping, Philox, import hygiene
# ==========================================================================================
def colmajor_sgemm(transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc):
    """What cublasSgemm does, on flat NumPy buffers (column-major, leading dimensions)."""
    def view(buf, rows, cols, ld):
        return np.lib.stride_tricks.as_strided(buf, (rows, cols), (4, 4 * ld))
    a = view(A, K, M, lda).T if transa == cublas.OP_T else view(A, M, K, lda)
    b = view(B, N, K, ldb).T if transb == cublas.OP_T else view(B, K, N, ldb)
    c = view(C, M, N, ldc)
    c[...] = alpha * (a.astype(np.float64) @ b) + (beta * c if beta != 0 else 0)


@pytest.mark.parametrize("transA", [False, True])
@pytest.mark.parametrize("transB", [False, True])
def test_cublas_rowmajor_mapping(transA, transB):
    rng = np.random.default_rng(1)
    m, n, k, pad = 5, 7, 3, 2
    # row-major operands with rows `pad` floats longer than needed (strided row slices)
    A = rng.standard_normal((k, m + pad) if transA else (m, k + pad)).astype(np.float32)
    B = rng.standard_normal((n, k + pad) if transB else (k, n + pad)).astype(np.float32)
    C = rng.standard_normal((m, n + pad)).astype(np.float32)
    a = A[:, :m] if transA else A[:, :k]
    b = B[:, :k] if transB else B[:, :n]
    want = 0.5 * C[:, :n] + 2.0 * ((a.T if transA else a) @ (b.T if transB else b))
    ta, tb, M, N, K, first, ld1, second, ld2, ldc = cublas.rowmajor_sgemm_args(
        transA, transB, m, n, k, A.shape[1], B.shape[1], C.shape[1])
    assert (first, second) == ("B", "A")
    colmajor_sgemm(ta, tb, M, N, K, 2.0, B.ravel(), ld1, A.ravel(), ld2, 0.5, C.ravel(), ldc)
    np.testing.assert_allclose(C[:, :n], want, rtol=1e-5, atol=1e-5)


PHILOX_KAT = [  # Random123's kat_vectors for philox4x32_10: counter, key -> output
    ((0, 0, 0, 0), (0, 0), (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    ((0xffffffff,) * 4, (0xffffffff,) * 2, (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
]


def philox4x32_10(ctr, key):
    """Philox4x32-10 in Python, written from the kernel's description (for the GPU tests)."""
    M0, M1, W0, W1, mask = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85, 0xFFFFFFFF
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for r in range(10):
        if r:
            k0, k1 = (k0 + W0) & mask, (k1 + W1) & mask
        p0, p1 = M0 * c0, M1 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & mask, p1 & mask, ((p0 >> 32) ^ c3 ^ k1) & mask, p0 & mask
    return c0, c1, c2, c3


@pytest.mark.parametrize("ctr,key,out", PHILOX_KAT)
def test_philox_reference(ctr, key, out):
    assert philox4x32_10(ctr, key) == out


def test_rng_state_is_plain_and_restores():
    nvm.seed(7)
    nvm._next_call()
    s = nvm.get_rng_state()
    assert s["generator"] == "philox4x32-10" and s["seed"] == 7 and s["calls"] == 1
    a = [nvm.randint(1000) for _ in range(3)] + [nvm.rand()]
    nvm.set_rng_state(s)
    assert [nvm.randint(1000) for _ in range(3)] + [nvm.rand()] == a
    assert nvm._rng["calls"] == 1
    # a NumPy-backend state (a checkpoint of the NumPy engine) is accepted too
    from cudaconvnet.backends.numpy import nvmatrix as npn
    npn.seed(3)
    nvm.set_rng_state(npn.get_rng_state())
    assert nvm._rng["calls"] == 0


def test_import_does_not_need_pycuda():
    code = ("import sys; import cudaconvnet.backends.cuda as c; "
            "from cudaconvnet.backends.cuda import conv_util, layer_kernels, nvmatrix, cublas; "
            "assert 'pycuda' not in sys.modules, sorted(m for m in sys.modules if 'pycuda' in m); print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=str(Path(__file__).resolve().parents[1]))
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_backend_lists_every_numpy_operation():
    import cudaconvnet.backends.cuda as cuda
    if cuda._IMPORT_ERROR is not None:
        pytest.skip("the CUDA backend's modules do not import here: %s" % cuda._IMPORT_ERROR)
    for name in cuda.numpy_operations():
        assert callable(getattr(cuda, name, None)), name
    # the kernels of this file family are not host fallbacks
    for name in cu.__all__ + lk.__all__ + nvm.__all__:
        assert name not in cuda.HOST_FALLBACKS, name


def test_cublas_loader_does_not_crash():
    assert isinstance(cublas.available(), bool)
    assert cublas.available() or cublas.why_not()
    assert all(isinstance(c, str) for c in cublas.candidates())


def test_gpu_out_of_memory_is_memory_error(monkeypatch):
    """PyCUDA's out-of-memory error (after its pool has given back what it held) becomes
    Python's MemoryError, which the command-line programs print as one line."""
    class DriverMemoryError(Exception):
        pass

    class FullPool:
        def allocate(self, nbytes):
            raise DriverMemoryError("cuMemAlloc failed: out of memory")
    monkeypatch.setattr(nvm, "_drv", type("drv", (), {"MemoryError": DriverMemoryError}))
    monkeypatch.setattr(nvm, "_pool", FullPool())
    with pytest.raises(MemoryError, match=r"^the GPU has no room for 4096 more bytes \(cuMemAlloc failed: out of "):
        nvm.allocator()(4096)
