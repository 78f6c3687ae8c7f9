"""Gradient of the conv / local layers with respect to their filters, NumPy reference.

Stands for cudaconv2/weight_acts.cu. convWeightActs returns one partial sum per group of
partialSum consecutive modules, exactly as the original does; ConvLayer::bpropWeights then
adds the partial sums up (the original's addSum over the leading axis).

How (conv): im2col + GEMM, skipping the filter taps that fall on the padding (their
products are zero) as filter_acts.conv_in_image_taps does: along both axes for a single sum
(partialSum = numModules), along y for partial sums that lie within module rows (every
2012 net's), not at all for partial sums that straddle rows.
"""

import math

import numpy as np

from .. import KernelArgumentError
from . import filter_acts
from .filter_acts import (ConvGeometry, check_colors_groups, check_geometry, check_matrix,
                          chunk_rows, exact_div, local_cols, patch_view, scale_store, sl,
                          tap_bands, tap_view, writes_directly)

__all__ = ["convWeightActs", "localWeightActs"]


def weight_acts_geometry(fn, imagesShape, hidActsShape, imgSizeY, numModulesY, numModulesX,
                         filterSize, paddingStart, moduleStride, numImgColors, numGroups):
    """The 2012 wrappers' checks of (conv|local)WeightActs on the shapes of images and
    hidActs, which both backends make; returns the sizes as a ConvGeometry."""
    numImages = imagesShape[1]
    numModules = numModulesY * numModulesX
    if numModules < 1:
        raise KernelArgumentError("%s: numModulesY and numModulesX must be positive" % fn)
    numFilters = exact_div(fn, "hidActs rows by numModules", hidActsShape[0], numModules)
    check_colors_groups(fn, numImgColors, numGroups, numFilters)
    imgPixels = exact_div(fn, "images rows by numImgColors", imagesShape[0], numImgColors)
    imgSizeX = exact_div(fn, "imgPixels by imgSizeY", imgPixels, imgSizeY)
    check_geometry(fn, imgSizeY, imgSizeX, numModulesY, numModulesX, filterSize,
                   paddingStart, moduleStride)
    if hidActsShape[1] != numImages:
        raise KernelArgumentError("%s: hidActs has %d columns, expected %d" % (fn, hidActsShape[1], numImages))
    return ConvGeometry(numImages=numImages, numImgColors=numImgColors, numGroups=numGroups,
                        numFilters=numFilters, imgSizeY=imgSizeY, imgSizeX=imgSizeX,
                        numModulesY=numModulesY, numModulesX=numModulesX, filterSize=filterSize,
                        paddingStart=paddingStart, moduleStride=moduleStride)


def partial_sums(fn, numModules, partialSum):
    """(partialSum, number of partial sums), partialSum 0 meaning numModules (one sum)."""
    if partialSum < 0:
        raise KernelArgumentError("%s: partialSum must be >= 0, got %d" % (fn, partialSum))
    partialSum = numModules if partialSum == 0 else partialSum
    return partialSum, exact_div(fn, "numModules by partialSum", numModules, partialSum)


def _check(fn, images, hidActs, imgSizeY, numModulesY, numModulesX, filterSize, paddingStart,
           moduleStride, numImgColors, numGroups):
    check_matrix(fn, "images", images)
    check_matrix(fn, "hidActs", hidActs)
    return weight_acts_geometry(fn, images.shape, hidActs.shape, imgSizeY, numModulesY,
                                numModulesX, filterSize, paddingStart, moduleStride, numImgColors,
                                numGroups)


def _chunk_plan(numModulesY, numModulesX, partialSum, max_rows):
    """Module-row chunk size R whose boundaries fall on partial-sum boundaries, or that
    tiles one partial sum exactly (so a chunk never straddles two partial sums)."""
    mX, ps = numModulesX, partialSum
    if ps % mX == 0:
        k = ps // mX                      # module rows per partial sum
        if k <= max_rows:
            return k * (max_rows // k)    # whole partial sums per chunk
        return max(d for d in range(1, max_rows + 1) if k % d == 0)
    unit = ps // math.gcd(ps, mX)         # smallest row count holding whole partial sums
    return unit * max(1, max_rows // unit)


def _conv_grad(geo, img4, hid3, partialSum, res, scaleOutput):
    """res[p, k, f] = scaleOutput * (sum over modules m of partial sum p, images n of
    cols[k, m, n] * hidActs[f, m, n]), cols the im2col of the zero-padded images; res is
    overwritten (the scaling rides on the last copy, or is a pass over the small result)."""
    if partialSum == geo.numModules:
        _single_sum(geo, img4, hid3, res[0])
    elif geo.numModulesX % partialSum == 0:
        _row_sums(geo, img4, hid3, partialSum, res, scaleOutput)
        return
    else:
        _any_sums(geo, geo.canvas(img4), hid3, partialSum, res)
    if scaleOutput != 1:
        res *= np.float32(scaleOutput)


def _single_sum(geo, img4, hid3, res):
    """One sum over every module: each block of modules that sees the same in-image taps
    (filter_acts.tap_blocks) adds its im2col @ hidActs^T into the rows of those taps; the
    taps on the padding would add nothing, and are skipped."""
    fc, fs, F, Fg = geo.numFilterColors, geo.filterSize, geo.numFilters, geo.numFiltersPerGroup
    C, N, mX = geo.numImgColors, hid3.shape[2], geo.numModulesX
    hid4 = hid3.reshape(F, geo.numModulesY, mX, N)
    res4 = res.reshape(fc, fs, fs, F)
    res4[...] = 0
    blocks, cols = filter_acts.tap_blocks(img4.shape, geo.numModulesY, mX, fs,
                                          geo.paddingStart, geo.moduleStride)
    for my, mx, fy, fx, R in blocks:
        kg = fc * len(fy) * len(fx)
        if kg == 0:
            continue
        for r0 in range(my.start, my.stop, R):
            rows = range(r0, min(my.stop, r0 + R))
            shape = (C, len(fy), len(fx), len(rows), len(mx), N)
            c = cols[:math.prod(shape)]
            np.copyto(c.reshape(shape), tap_view(img4, geo.paddingStart, geo.paddingStart,
                                                 geo.moduleStride, rows, fy, mx, fx))
            c = c.reshape(C * len(fy) * len(fx), -1)
            h = hid4[:, sl(rows), sl(mx)].reshape(F, -1)  # a copy unless whole rows
            for g, (_, fsl, _) in enumerate(geo.groups()):
                res4[:, sl(fy), sl(fx), fsl] += (c[g * kg:(g + 1) * kg] @ h[fsl].T).reshape(
                    fc, len(fy), len(fx), Fg)


def _row_sums(geo, img4, hid3, partialSum, res, scaleOutput):
    """Partial sums that each lie within one module row: a run of module rows that sees
    the same in-image filter rows fy (tap_bands along y) is im2col'ed for those rows only
    (the images padded along x alone), one batched GEMM over its partial sums,
    (fc*len(fy)*fs, partialSum*N) @ (partialSum*N, Fg), scaled by scaleOutput on its way
    into res; the other filter rows are 0."""
    fc, fs, F, Fg = geo.numFilterColors, geo.filterSize, geo.numFilters, geo.numFiltersPerGroup
    C, N, mX, s = geo.numImgColors, hid3.shape[2], geo.numModulesX, geo.moduleStride
    _, left, _, Wp = filter_acts.padded_extent(geo.imgSizeY, geo.imgSizeX, geo.numModulesY,
                                               mX, fs, geo.paddingStart, s)
    xcanvas = filter_acts.pad_images(img4, 0, left, geo.imgSizeY, Wp)
    res5 = res.reshape(res.shape[0], fc, fs, fs, F)
    span = partialSum * N
    plan = []  # (module rows, filter rows fy, module rows per chunk)
    for my0, my1, fy0, fy1 in tap_bands(geo.numModulesY, geo.imgSizeY, fs, geo.paddingStart, s):
        plan.append((range(my0, my1), range(fy0, fy1),
                     chunk_rows(C * (fy1 - fy0) * fs * mX * N * 4, my1 - my0)))
    cols = np.empty(max(C * len(fy) * fs * R * mX * N for _, fy, R in plan) or 1,
                    dtype=np.float32)
    for my, fy, R in plan:
        p0, p1 = my.start * mX // partialSum, my.stop * mX // partialSum
        res5[p0:p1, :, :fy.start] = 0
        res5[p0:p1, :, fy.stop:] = 0
        if not fy:  # module rows wholly in the padding
            continue
        K, kg = C * len(fy) * fs, fc * len(fy) * fs
        for r0 in range(my.start, my.stop, R):
            rows = range(r0, min(my.stop, r0 + R))
            q0, q1 = rows.start * mX // partialSum, rows.stop * mX // partialSum
            shape = (C, len(fy), fs, len(rows), mX, N)
            c = cols[:math.prod(shape)]
            np.copyto(c.reshape(shape), tap_view(xcanvas, geo.paddingStart, 0, s, rows, fy,
                                                 range(mX), range(fs)))
            c = c.reshape(K, -1)
            for g, (_, fsl, _) in enumerate(geo.groups()):
                a = c[g * kg:(g + 1) * kg].reshape(kg, q1 - q0, span).transpose(1, 0, 2)
                b = hid3[fsl, rows.start * mX:rows.stop * mX].reshape(Fg, q1 - q0, span)
                grad = np.matmul(a, b.transpose(1, 2, 0))  # (partial sums, kg, Fg)
                np.multiply(grad.reshape(q1 - q0, fc, len(fy), fs, Fg), np.float32(scaleOutput),
                            out=res5[q0:q1, :, sl(fy), :, fsl])


def _any_sums(geo, canvas, hid3, partialSum, res):
    """Any partial sums (they may span or straddle module rows), on the padded images."""
    C, N, mX, fs = geo.numImgColors, hid3.shape[2], geo.numModulesX, geo.filterSize
    K = C * geo.filterPixels
    max_rows = max(1, filter_acts.COLS_CHUNK_BYTES // (K * mX * N * 4))
    R = min(geo.numModulesY, _chunk_plan(geo.numModulesY, mX, partialSum, max_rows))
    cols = np.empty((K, R * mX * N), dtype=np.float32)
    for row0 in range(0, geo.numModulesY, R):
        rows = min(R, geo.numModulesY - row0)
        m0, m1 = row0 * mX, (row0 + rows) * mX
        c = cols[:, :rows * mX * N]
        np.copyto(c.reshape(C, fs, fs, rows, mX, N),
                  patch_view(canvas, fs, geo.moduleStride, row0, rows, mX))
        if m1 - m0 >= partialSum:
            # whole partial sums [p0, p1): one GEMM each, (Kg, ps*N) @ (ps*N, Fg)
            p0, p1 = m0 // partialSum, m1 // partialSum
            span = partialSum * N
            for _, fs_, ks in geo.groups():
                a = c[ks].reshape(geo.Kg, p1 - p0, span).transpose(1, 0, 2)
                b = hid3[fs_, m0:m1].reshape(geo.numFiltersPerGroup, p1 - p0, span)
                np.matmul(a, b.transpose(1, 2, 0), out=res[p0:p1, :, fs_])
        else:
            # a piece of one partial sum: accumulate
            p = m0 // partialSum
            first = m0 % partialSum == 0
            for _, fs_, ks in geo.groups():
                b = hid3[fs_, m0:m1].reshape(geo.numFiltersPerGroup, -1)
                if first:
                    np.matmul(c[ks], b.T, out=res[p, :, fs_])
                else:
                    res[p, :, fs_] += c[ks] @ b.T


def convWeightActs(images, hidActs, targets, imgSizeY, numModulesY, numModulesX, filterSize,
                   paddingStart, moduleStride, numImgColors, numGroups, partialSum,
                   scaleTargets=0.0, scaleOutput=1.0):
    """Filter gradient of convFilterActs, as partial sums over groups of modules.

    images:   (numImgColors * imgSizeY * imgSizeX, numImages)
    hidActs:  (numFilters * numModulesY * numModulesX, numImages)
    targets:  (numModules/partialSum * numFilterColors * filterSize^2, numFilters), written
              in place; partialSum 0 means numModules (a single sum)

    targets[p, c, fy, fx, f] = scaleTargets*targets + scaleOutput * sum over modules m in
    [p*partialSum, (p+1)*partialSum) (m = my*numModulesX + mx) and images n of
        images[g*fc + c, top(my) + fy, left(mx) + fx, n] * hidActs[f, m, n]
    for f in group g. Summed over p this is the adjoint of convFilterActs in the filters.
    """
    fn = "convWeightActs"
    geo = _check(fn, images, hidActs, imgSizeY, numModulesY, numModulesX, filterSize,
                 paddingStart, moduleStride, numImgColors, numGroups)
    partialSum, numPartials = partial_sums(fn, geo.numModules, partialSum)
    check_matrix(fn, "targets", targets, numPartials * geo.Kg, geo.numFilters, writeable=True)

    numImages = images.shape[1]
    img4 = images.reshape(numImgColors, imgSizeY, geo.imgSizeX, numImages)
    hid3 = hidActs.reshape(geo.numFilters, geo.numModules, numImages)
    tgt3 = targets.reshape(numPartials, geo.Kg, geo.numFilters)
    if scaleTargets == 0:  # the targets' old content is not read: straight in
        _conv_grad(geo, img4, hid3, partialSum, tgt3, scaleOutput)
    else:
        res = np.empty_like(tgt3)
        _conv_grad(geo, img4, hid3, partialSum, res, 1.0)
        scale_store(tgt3, res, scaleTargets, scaleOutput)


def localWeightActs(images, hidActs, targets, imgSizeY, numModulesY, numModulesX, filterSize,
                    paddingStart, moduleStride, numImgColors, numGroups, scaleTargets=0.0,
                    scaleOutput=1.0):
    """Filter gradient of localFilterActs (the original runs weightActs with partialSum 1).

    images:   (numImgColors * imgSizeY * imgSizeX, numImages)
    hidActs:  (numFilters * numModulesY * numModulesX, numImages)
    targets:  (numModules * numFilterColors * filterSize^2, numFilters), written in place

    targets[m, c, fy, fx, f] = scaleTargets*targets + scaleOutput * sum over n of
        images[g*fc + c, top(my) + fy, left(mx) + fx, n] * hidActs[f, m, n].
    """
    fn = "localWeightActs"
    geo = _check(fn, images, hidActs, imgSizeY, numModulesY, numModulesX, filterSize,
                 paddingStart, moduleStride, numImgColors, numGroups)
    check_matrix(fn, "targets", targets, geo.numModules * geo.Kg, geo.numFilters,
                 writeable=True)
    numImages = images.shape[1]
    canvas = geo.canvas(images.reshape(numImgColors, imgSizeY, geo.imgSizeX, numImages))
    cols = local_cols(geo, canvas)
    hid3 = hidActs.reshape(geo.numFilters, geo.numModules, numImages)
    tgt3 = targets.reshape(geo.numModules, geo.Kg, geo.numFilters)
    direct = writes_directly(scaleTargets, scaleOutput)
    res = tgt3 if direct else np.empty_like(tgt3)
    for _, fs_, ks in geo.groups():
        # per module: (Kg, N) @ (N, Fg)
        np.matmul(cols[:, ks], hid3[fs_].transpose(1, 2, 0), out=res[:, :, fs_])
    if not direct:
        scale_store(tgt3, res, scaleTargets, scaleOutput)
