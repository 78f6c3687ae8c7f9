"""Gradient of the conv / local layers with respect to their input images, NumPy reference.

Stands for cudaconv2/img_acts.cu: convImgActs and localImgActs are the exact adjoints of
convFilterActs and localFilterActs (GEMM into a column buffer, then col2im scatter-add; a
stride-1 conv is instead run as the convolution of the hidActs with flipped filters, over
its in-image taps only, see filter_acts.conv_in_image_taps).
"""

import numpy as np

from .filter_acts import (check_colors_groups, check_matrix, chunk_rows, conv_in_image_taps,
                          exact_div, filters_geometry, padded_extent, scale_store, view2d)

__all__ = ["convImgActs", "localImgActs"]


def img_acts_geometry(fn, hidActsShape, filtersShape, imgSizeY, imgSizeX, numModulesY,
                      paddingStart, moduleStride, numImgColors, numGroups, conv):
    """The 2012 wrappers' checks of (conv|local)ImgActs on the shapes of hidActs and
    filters, which both backends make; returns the sizes as a ConvGeometry."""
    numFilters = filtersShape[1]
    check_colors_groups(fn, numImgColors, numGroups, numFilters)
    numModules = exact_div(fn, "hidActs rows by numFilters", hidActsShape[0], numFilters)
    numModulesX = exact_div(fn, "numModules by numModulesY", numModules, numModulesY)
    return filters_geometry(fn, filtersShape, hidActsShape[1], numImgColors, numGroups, imgSizeY,
                            imgSizeX, numModulesY, numModulesX, paddingStart, moduleStride, conv)


def _img_acts(fn, hidActs, filters, targets, imgSizeY, imgSizeX, numModulesY, paddingStart,
              moduleStride, numImgColors, numGroups, scaleTargets, scaleOutput, conv):
    check_matrix(fn, "hidActs", hidActs)
    check_matrix(fn, "filters", filters)
    geo = img_acts_geometry(fn, hidActs.shape, filters.shape, imgSizeY, imgSizeX, numModulesY,
                            paddingStart, moduleStride, numImgColors, numGroups, conv)
    numImages, numFilters, numModules = geo.numImages, geo.numFilters, geo.numModules
    numModulesX, filterSize = geo.numModulesX, geo.filterSize
    check_matrix(fn, "targets", targets, numImgColors * imgSizeY * imgSizeX, numImages,
                 writeable=True)

    hid3 = hidActs.reshape(numFilters, numModules, numImages)
    tgt4 = targets.reshape(numImgColors, imgSizeY, imgSizeX, numImages)
    if conv and moduleStride == 1 and numFilters <= 2 * numImgColors:
        # a stride-1 convolution's input gradient is itself a convolution (of the
        # zero-padded hidActs with the flipped filters), run over its in-image taps only:
        # the multiply-adds of GEMM + scatter-add less the padding's, no scatter; faster
        # while numFilters <= 2 * numImgColors (measured: 18pct's conv3, 64 filters on 32
        # colours, 1.25x; AlexNet's conv2, 128 on 48, 0.92x)
        _conv_bprop_stride1(geo, hid3, filters, tgt4, scaleTargets, scaleOutput)
        return
    top, left, Hp, Wp = padded_extent(imgSizeY, imgSizeX, numModulesY, numModulesX,
                                      filterSize, paddingStart, moduleStride)
    # gradient on the zero-padded canvas; what lands on the padding is dropped
    canvas = np.zeros((numImgColors, Hp, Wp, numImages), dtype=np.float32)
    if conv:
        _conv_bprop(geo, hid3, filters, canvas)
    else:
        _local_bprop(geo, hid3, filters, canvas)
    scale_store(tgt4, canvas[:, top:top + imgSizeY, left:left + imgSizeX], scaleTargets,
                scaleOutput)


def _scatter(canvas, cols6, row0, rows, stride):
    """col2im: canvas[c, (row0+my)*s + fy, mx*s + fx, n] += cols6[c, fy, fx, my, mx, n]."""
    _, fs, _, _, mX, _ = cols6.shape
    y0 = row0 * stride
    for fy in range(fs):
        for fx in range(fs):
            # one (fy, fx) hits each canvas pixel at most once, so += is safe
            canvas[:, y0 + fy:y0 + fy + (rows - 1) * stride + 1:stride,
                   fx:fx + (mX - 1) * stride + 1:stride] += cols6[:, fy, fx]


def _conv_bprop(geo, hid3, filters, canvas):
    C, N, mX, fs = geo.numImgColors, hid3.shape[2], geo.numModulesX, geo.filterSize
    K = C * geo.filterPixels
    R = chunk_rows(K * mX * N * 4, geo.numModulesY)
    cols = np.empty((K, R * mX * N), dtype=np.float32)
    for row0 in range(0, geo.numModulesY, R):
        rows = min(R, geo.numModulesY - row0)
        m0, m1 = row0 * mX, (row0 + rows) * mX
        c = cols[:, :rows * mX * N]
        # rows of c are (colour, fy, fx): each group fills its own block of colours
        for _, fs_, ks in geo.groups():
            np.matmul(filters[:, fs_], view2d(hid3[fs_, m0:m1]), out=c[ks])
        _scatter(canvas, c.reshape(C, fs, fs, rows, mX, N), row0, rows, geo.moduleStride)


def _conv_bprop_stride1(geo, hid3, filters, tgt4, scaleTargets, scaleOutput):
    """tgt4 = scaleTargets*tgt4 + scaleOutput*grad, grad[c, y, x] = sum over f, fy, fx of
    filters[c, fy, fx, f] * hidActs[f, y + top - fy, x + left - fx] (zero outside the module
    grid): the convolution of the module grid, padded by fs - 1 - top, with the filters
    flipped in both directions and their colours and filters swapped."""
    F, N, fs = geo.numFilters, hid3.shape[2], geo.filterSize
    fc, Fg = geo.numFilterColors, geo.numFiltersPerGroup
    # wflip[f, fy', fx', g*fc + c] = filters[(c, fs-1-fy', fs-1-fx'), g*Fg + f]
    w = filters.reshape(fc, fs, fs, F)[:, ::-1, ::-1]
    wflip = np.empty((Fg, fs, fs, geo.numImgColors), dtype=np.float32)
    for csl, fsl, _ in geo.groups():
        wflip[..., csl] = w[..., fsl].transpose(3, 1, 2, 0)
    conv_in_image_taps(hid3.reshape(F, geo.numModulesY, geo.numModulesX, N), wflip, tgt4,
                       -(fs - 1 + geo.paddingStart), 1, geo.numGroups, scaleTargets,
                       scaleOutput)


def _local_bprop(geo, hid3, filters, canvas):
    C, N, fs = geo.numImgColors, hid3.shape[2], geo.filterSize
    w3 = filters.reshape(geo.numModules, geo.Kg, geo.numFilters)
    cols = np.empty((geo.numModules, C * geo.filterPixels, N), dtype=np.float32)
    for _, fs_, ks in geo.groups():
        # per module: (Kg, Fg) @ (Fg, N)
        np.matmul(w3[:, :, fs_], hid3[fs_].transpose(1, 0, 2), out=cols[:, ks])
    cols6 = cols.reshape(geo.numModulesY, geo.numModulesX, C, fs, fs, N).transpose(
        2, 3, 4, 0, 1, 5)
    _scatter(canvas, cols6, 0, geo.numModulesY, geo.moduleStride)


def convImgActs(hidActs, filters, targets, imgSizeY, imgSizeX, numModulesY, paddingStart,
                moduleStride, numImgColors, numGroups, scaleTargets=0.0, scaleOutput=1.0):
    """Input gradient of convFilterActs: targets = scaleTargets*targets + scaleOutput*grad.

    hidActs:  (numFilters * numModulesY * numModulesX, numImages); numModulesX =
              numModules / numModulesY
    filters:  (numFilterColors * filterSize^2, numFilters)
    targets:  (numImgColors * imgSizeY * imgSizeX, numImages), written in place

    grad[c, y, x, n] = sum over modules covering (y, x) and filters f of c's group of
        filters[c - g*fc, y - top(my), x - left(mx), f] * hidActs[f, my, mx, n],
    i.e. <convFilterActs(x, w), h> = <x, convImgActs(h, w)> for every x.
    """
    _img_acts("convImgActs", hidActs, filters, targets, imgSizeY, imgSizeX, numModulesY,
              paddingStart, moduleStride, numImgColors, numGroups, scaleTargets, scaleOutput,
              True)


def localImgActs(hidActs, filters, targets, imgSizeY, imgSizeX, numModulesY, paddingStart,
                 moduleStride, numImgColors, numGroups, scaleTargets=0.0, scaleOutput=1.0):
    """Input gradient of localFilterActs (its adjoint); as convImgActs but

    filters:  (numModules * numFilterColors * filterSize^2, numFilters)
    hidActs:  (numFilters * numModulesY * numModulesX, numImages)
    targets:  (numImgColors * imgSizeY * imgSizeX, numImages), written in place
    """
    _img_acts("localImgActs", hidActs, filters, targets, imgSizeY, imgSizeX, numModulesY,
              paddingStart, moduleStride, numImgColors, numGroups, scaleTargets, scaleOutput,
              False)
