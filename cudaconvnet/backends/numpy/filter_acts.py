"""Forward convolution (shared filters) and local (unshared filters) layers, NumPy reference.

Stands for cudaconv2/filter_acts.cu. Also holds the geometry checks and im2col helpers that
img_acts.py and weight_acts.py share.

Layouts (the 2012 ones, every matrix 2-D float32, row-major, cases fastest):
  images   (numImgColors * imgSizeY * imgSizeX, numImages)
  filters  (numFilterColors * filterSize^2, numFilters)                  conv
           (numModules * numFilterColors * filterSize^2, numFilters)     local
  targets  (numFilters * numModulesY * numModulesX, numImages)
with numFilterColors = numImgColors / numGroups; filters [g*F/G, (g+1)*F/G) see colours
[g*fc, (g+1)*fc). Module (my, mx) looks at image rows paddingStart + my*moduleStride + [0,
filterSize) and the same for columns; pixels outside the image count as zeros.

How (conv): im2col + GEMM over the filter taps that fall inside the image only
(conv_in_image_taps): the modules are cut into blocks that see the same taps (the interior,
the edge strips, the corners), so nothing is multiplied by the padding's zeros (18pct's
8x8 conv3 with 5x5 filters: 28% of the multiply-adds) and no padded copy is made.

The reference accepts any numbers of filters, colours and images (the CUDA kernels need
multiples of 16 filters, even colour counts, ...) but keeps the wrappers' geometric
preconditions: paddingStart <= 0, moduleStride <= filterSize, and the modules must reach the
far edge of the image.
"""

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import KernelArgumentError

# Bytes of im2col buffer built at a time: big enough for efficient BLAS calls, small enough
# to stay in the last-level cache while the GEMM reads it back.
COLS_CHUNK_BYTES = 8 << 20

__all__ = ["convFilterActs", "localFilterActs"]


# ----------------------------------------------------------------------------------------
# checks shared by the conv-family modules

def check_matrix(fn, name, a, rows=None, cols=None, writeable=False):
    """Raise KernelArgumentError unless `a` is a 2-D float32 array of the given shape."""
    if not isinstance(a, np.ndarray) or a.ndim != 2:
        raise KernelArgumentError("%s: %s must be a 2-D numpy array, got %r"
                         % (fn, name, type(a).__name__ if not isinstance(a, np.ndarray)
                            else "%d-D array" % a.ndim))
    if a.dtype != np.float32:
        raise KernelArgumentError("%s: %s must be float32, got %s" % (fn, name, a.dtype))
    if rows is not None and a.shape[0] != rows:
        raise KernelArgumentError("%s: %s has %d rows, expected %d" % (fn, name, a.shape[0], rows))
    if cols is not None and a.shape[1] != cols:
        raise KernelArgumentError("%s: %s has %d columns, expected %d" % (fn, name, a.shape[1], cols))
    if writeable and not (a.flags.writeable and a.flags.c_contiguous):
        raise KernelArgumentError("%s: %s must be a writeable C-contiguous array (it is written in "
                         "place)" % (fn, name))


def exact_div(fn, what, a, b):
    """a / b, raising KernelArgumentError unless b divides a."""
    if b <= 0 or a % b != 0:
        raise KernelArgumentError("%s: %s: %d is not divisible by %d" % (fn, what, a, b))
    return a // b


def square_side(fn, what, n):
    s = math.isqrt(n) if n >= 0 else -1
    if s < 1 or s * s != n:
        raise KernelArgumentError("%s: %s (%d) is not a positive perfect square" % (fn, what, n))
    return s


def check_geometry(fn, imgSizeY, imgSizeX, numModulesY, numModulesX, filterSize,
                   paddingStart, moduleStride):
    """The geometric preconditions the 2012 wrappers assert."""
    if min(imgSizeY, imgSizeX, numModulesY, numModulesX, filterSize, moduleStride) < 1:
        raise KernelArgumentError("%s: sizes must be positive (imgSize %dx%d, modules %dx%d, "
                         "filterSize %d, moduleStride %d)" % (fn, imgSizeY, imgSizeX,
                         numModulesY, numModulesX, filterSize, moduleStride))
    if paddingStart > 0:
        raise KernelArgumentError("%s: paddingStart must be <= 0 (it is minus the padding), got %d"
                         % (fn, paddingStart))
    if moduleStride > filterSize:
        raise KernelArgumentError("%s: moduleStride (%d) must not exceed filterSize (%d)"
                         % (fn, moduleStride, filterSize))
    for axis, n, m in (("X", imgSizeX, numModulesX), ("Y", imgSizeY, numModulesY)):
        if paddingStart + (m - 1) * moduleStride + filterSize < n:
            raise KernelArgumentError("%s: %d modules of stride %d (filterSize %d, paddingStart %d) "
                             "do not reach the end of the image (imgSize%s %d)"
                             % (fn, m, moduleStride, filterSize, paddingStart, axis, n))


def scale_store(target, result, scaleTargets, scaleOutput):
    """target = scaleTargets * target + scaleOutput * result, in place.

    With scaleTargets == 0 the old content of target is never read (NaN there is harmless).
    `result` may be overwritten (it is scratch).
    """
    if scaleTargets == 0:
        if scaleOutput == 1:
            np.copyto(target, result)
        else:
            np.multiply(result, np.float32(scaleOutput), out=target)
        return
    if scaleTargets != 1:
        target *= np.float32(scaleTargets)
    if scaleOutput != 1:
        result *= np.float32(scaleOutput)
    target += result


def writes_directly(scaleTargets, scaleOutput):
    """Whether a kernel may write its raw result straight into the target."""
    return scaleTargets == 0 and scaleOutput == 1


# ----------------------------------------------------------------------------------------
# im2col / col2im helpers

def padded_extent(imgSizeY, imgSizeX, numModulesY, numModulesX, filterSize, paddingStart,
                  moduleStride):
    """(top, left, Hp, Wp): the image sits at [top, top+H) x [left, left+W) of an Hp x Wp
    zero-padded canvas that every module fits into."""
    top = left = -paddingStart
    Hp = (numModulesY - 1) * moduleStride + filterSize
    Wp = (numModulesX - 1) * moduleStride + filterSize
    # check_geometry guarantees Hp >= top + H and Wp >= left + W
    return top, left, Hp, Wp


def pad_images(img4, top, left, Hp, Wp):
    """(C, H, W, N) images on a zero (C, Hp, Wp, N) canvas; no copy when none is needed."""
    C, H, W, N = img4.shape
    if top == 0 and left == 0 and Hp == H and Wp == W:
        return img4
    canvas = np.empty((C, Hp, Wp, N), dtype=np.float32)
    # zero only the border strips, then copy the image in
    canvas[:, :top] = 0
    canvas[:, top + H:] = 0
    canvas[:, top:top + H, :left] = 0
    canvas[:, top:top + H, left + W:] = 0
    canvas[:, top:top + H, left:left + W] = img4
    return canvas


def patch_view(canvas, filterSize, moduleStride, row0, rows, numModulesX):
    """Read-only view (C, fs, fs, rows, numModulesX, N) of the patches of module rows
    [row0, row0 + rows): element [c, fy, fx, my, mx, n] is canvas[c, (row0+my)*stride + fy,
    mx*stride + fx, n]."""
    C, _, _, N = canvas.shape
    sC, sH, sW, sN = canvas.strides
    base = canvas[:, row0 * moduleStride:]
    return as_strided(base, shape=(C, filterSize, filterSize, rows, numModulesX, N),
                      strides=(sC, sH, sW, sH * moduleStride, sW * moduleStride, sN),
                      writeable=False)


def view2d(a):
    """(d0, d1, ...) -> (d0, d1*...) as a view; raises if that would need a copy (a copy
    would silently swallow results written through out=)."""
    r = a.reshape(a.shape[0], -1)
    if r.size and not np.may_share_memory(r, a):
        raise RuntimeError("internal error: reshape of a %s array with strides %s copied"
                           % (a.shape, a.strides))
    return r


def chunk_rows(bytes_per_row, numModulesY, budget=None):
    """How many module rows to im2col at a time."""
    budget = COLS_CHUNK_BYTES if budget is None else budget
    return max(1, min(numModulesY, budget // max(1, bytes_per_row)))


# ----------------------------------------------------------------------------------------
# convolution over the in-image filter taps only

def tap_bands(numModules, imgSize, filterSize, paddingStart, moduleStride):
    """The modules along one axis, in runs that see the same in-image filter taps.

    Module m looks at pixels paddingStart + m*moduleStride + [0, filterSize); taps [f0, f1)
    of those lie inside [0, imgSize). Returns [(m0, m1, f0, f1)]: modules [m0, m1) all see
    taps [f0, f1) ((0, 0) for modules wholly in the padding). With stride 1 and padding p
    there are p one-module runs at either edge and one run in the middle that sees every tap.
    """
    bands = []
    for m in range(numModules):
        start = paddingStart + m * moduleStride
        f0, f1 = max(0, -start), min(filterSize, imgSize - start)
        taps = (f0, f1) if f1 > f0 else (0, 0)
        if bands and tuple(bands[-1][2:]) == taps:
            bands[-1][1] = m + 1
        else:
            bands.append([m, m + 1, *taps])
    return [tuple(b) for b in bands]


def tap_view(img4, startY, startX, moduleStride, my, fy, mx, fx):
    """Read-only view (C, len(fy), len(fx), len(my), len(mx), N) of the taps fy x fx of the
    modules my x mx (ranges): element [c, i, j, k, l, n] is img4[c, startY + my[k]*s + fy[i],
    startX + mx[l]*s + fx[j], n], s = moduleStride. The taps must lie inside img4
    (tap_bands' do, with start = paddingStart)."""
    C, _, _, N = img4.shape
    sC, sH, sW, sN = img4.strides
    y0 = startY + my.start * moduleStride + fy.start
    x0 = startX + mx.start * moduleStride + fx.start
    return as_strided(img4[:, y0:, x0:],
                      shape=(C, len(fy), len(fx), len(my), len(mx), N),
                      strides=(sC, sH, sW, sH * moduleStride, sW * moduleStride, sN),
                      writeable=False)


def sl(r):
    """The slice of a range (numpy takes a range as a list of indices, and copies)."""
    return slice(r.start, r.stop)


def tap_blocks(img_shape, numModulesY, numModulesX, filterSize, paddingStart, moduleStride):
    """The blocks of modules that see the same in-image taps, and an im2col buffer for them.

    Returns ([(my, mx, fy, fx, R)], buffer): module rows my x columns mx (ranges) see taps
    fy x fx (empty for modules wholly in the padding); R module rows at a time keep the
    block's im2col, (C * len(fy) * len(fx), R * len(mx) * N), within COLS_CHUNK_BYTES; the
    buffer is big enough for any of them.
    """
    C, H, W, N = img_shape
    blocks = []
    for my0, my1, fy0, fy1 in tap_bands(numModulesY, H, filterSize, paddingStart, moduleStride):
        for mx0, mx1, fx0, fx1 in tap_bands(numModulesX, W, filterSize, paddingStart,
                                            moduleStride):
            K = C * (fy1 - fy0) * (fx1 - fx0)
            R = chunk_rows(K * (mx1 - mx0) * N * 4, my1 - my0)
            blocks.append((range(my0, my1), range(mx0, mx1), range(fy0, fy1), range(fx0, fx1),
                           R))
    size = max(C * len(fy) * len(fx) * R * len(mx) * N for _, mx, fy, fx, R in blocks)
    return blocks, np.empty(size, dtype=np.float32)


def conv_in_image_taps(img4, w4, out4, paddingStart, moduleStride, numGroups, scaleTargets,
                       scaleOutput):
    """out4 = scaleTargets*out4 + scaleOutput * (img4 convolved with w4), where a module sums
    over its filter taps that fall inside the image only: the others would multiply the zero
    padding, so no padded copy of the images is made and no multiply-add is spent on it.

    img4:  (numImgColors, imgSizeY, imgSizeX, N)
    w4:    (numFilterColors, filterSize, filterSize, numFilters), numFilterColors =
           numImgColors / numGroups (filters [g*F/G, (g+1)*F/G) see colours [g*fc, (g+1)*fc))
    out4:  (numFilters, numModulesY, numModulesX, N), written in place (a view is fine)

    Every block of modules that sees the same taps (tap_bands along y times tap_bands along
    x: the interior, the edge strips and the corners) is one im2col of those taps and one
    GEMM per group, (Fg, fc*taps) @ (fc*taps, modules*N); the interior goes a few module
    rows at a time so that its im2col buffer stays in the cache.
    """
    C, H, W, N = img4.shape
    fc, fs, _, F = w4.shape
    _, mY, mX, _ = out4.shape
    Fg = F // numGroups
    direct = writes_directly(scaleTargets, scaleOutput) and out4.flags.c_contiguous
    blocks, cols = tap_blocks(img4.shape, mY, mX, fs, paddingStart, moduleStride)
    for my, mx, fy, fx, R in blocks:
        if len(fy) == 0 or len(fx) == 0:  # modules wholly in the padding: a sum of nothing
            target = out4[:, sl(my), sl(mx)]
            scale_store(target, np.zeros(target.shape, dtype=np.float32), scaleTargets,
                        scaleOutput)
            continue
        kg = fc * len(fy) * len(fx)
        w = np.ascontiguousarray(w4[:, sl(fy), sl(fx)]).reshape(kg, F)
        for r0 in range(my.start, my.stop, R):
            rows = range(r0, min(my.stop, r0 + R))
            shape = (C, len(fy), len(fx), len(rows), len(mx), N)
            c = cols[:math.prod(shape)]
            # im2col: rows of c are (colour, fy, fx), as the rows of w
            np.copyto(c.reshape(shape),
                      tap_view(img4, paddingStart, paddingStart, moduleStride, rows, fy, mx,
                               fx))
            c = c.reshape(C * len(fy) * len(fx), -1)
            for g in range(numGroups):
                fsl, ks = slice(g * Fg, (g + 1) * Fg), slice(g * kg, (g + 1) * kg)
                target = out4[fsl, sl(rows), sl(mx)]
                if direct and len(mx) == mX:
                    np.matmul(w[:, fsl].T, c[ks], out=view2d(target))
                else:
                    scale_store(target, (w[:, fsl].T @ c[ks]).reshape(target.shape),
                                scaleTargets, scaleOutput)


class ConvGeometry:
    """Sizes shared by filterActs, imgActs and weightActs (names as in the 2012 wrappers),
    in both backends."""

    def __init__(self, **kw):
        self.__dict__.update(kw)
        self.numModules = self.numModulesY * self.numModulesX
        self.filterPixels = self.filterSize * self.filterSize
        self.imgPixels = self.imgSizeY * self.imgSizeX
        self.numFilterColors = self.numImgColors // self.numGroups
        self.numFiltersPerGroup = self.numFilters // self.numGroups
        self.Kg = self.numFilterColors * self.filterPixels   # filter rows per module

    def canvas(self, img4):
        top, left, Hp, Wp = padded_extent(self.imgSizeY, self.imgSizeX, self.numModulesY,
                                          self.numModulesX, self.filterSize,
                                          self.paddingStart, self.moduleStride)
        return pad_images(img4, top, left, Hp, Wp)

    def groups(self):
        """(colour slice, filter slice, row slice of a (numImgColors*fp, ...) cols buffer)."""
        fc, Fg, Kg = self.numFilterColors, self.numFiltersPerGroup, self.Kg
        return [(slice(g * fc, (g + 1) * fc), slice(g * Fg, (g + 1) * Fg),
                 slice(g * Kg, (g + 1) * Kg)) for g in range(self.numGroups)]


def check_colors_groups(fn, numImgColors, numGroups, numFilters):
    if numImgColors < 1 or numGroups < 1:
        raise KernelArgumentError("%s: numImgColors (%d) and numGroups (%d) must be positive"
                         % (fn, numImgColors, numGroups))
    exact_div(fn, "numImgColors by numGroups", numImgColors, numGroups)
    exact_div(fn, "numFilters by numGroups", numFilters, numGroups)


# ----------------------------------------------------------------------------------------

def filter_acts_geometry(fn, imagesShape, filtersShape, imgSizeY, numModulesY, numModulesX,
                         paddingStart, moduleStride, numImgColors, numGroups, conv):
    """The 2012 wrappers' checks of (conv|local)FilterActs on the shapes of images and
    filters, which both backends make; returns the sizes as a ConvGeometry."""
    check_colors_groups(fn, numImgColors, numGroups, filtersShape[1])
    imgPixels = exact_div(fn, "images rows by numImgColors", imagesShape[0], numImgColors)
    imgSizeX = exact_div(fn, "imgPixels by imgSizeY", imgPixels, imgSizeY)
    return filters_geometry(fn, filtersShape, imagesShape[1], numImgColors, numGroups, imgSizeY,
                            imgSizeX, numModulesY, numModulesX, paddingStart, moduleStride, conv)


def filter_size(fn, filterRows, numFilterColors, imgSizeY, imgSizeX, numModulesY, numModulesX, paddingStart,
                moduleStride, conv):
    """filterSize from the filters' rows (a bank per module when not conv), after the
    geometry checks (the dense and the sparse conv functions, both backends)."""
    numModules = numModulesY * numModulesX
    filterPixels = exact_div(fn, "filters rows by %snumFilterColors" % ("" if conv else "numModules * "),
                             filterRows, (1 if conv else numModules) * numFilterColors)
    filterSize = square_side(fn, "filterPixels", filterPixels)
    check_geometry(fn, imgSizeY, imgSizeX, numModulesY, numModulesX, filterSize, paddingStart, moduleStride)
    return filterSize


def filters_geometry(fn, filtersShape, numImages, numImgColors, numGroups, imgSizeY, imgSizeX,
                     numModulesY, numModulesX, paddingStart, moduleStride, conv):
    """The rest of filter_acts_geometry and img_acts_geometry: filter_size, the ConvGeometry."""
    filterSize = filter_size(fn, filtersShape[0], numImgColors // numGroups, imgSizeY, imgSizeX, numModulesY,
                             numModulesX, paddingStart, moduleStride, conv)
    return ConvGeometry(numImages=numImages, numImgColors=numImgColors, numGroups=numGroups,
                        numFilters=filtersShape[1], imgSizeY=imgSizeY, imgSizeX=imgSizeX,
                        numModulesY=numModulesY, numModulesX=numModulesX, filterSize=filterSize,
                        paddingStart=paddingStart, moduleStride=moduleStride)


def _filter_acts(fn, images, filters, targets, imgSizeY, numModulesY, numModulesX,
                 paddingStart, moduleStride, numImgColors, numGroups, scaleTargets,
                 scaleOutput, conv):
    check_matrix(fn, "images", images)
    check_matrix(fn, "filters", filters)
    geo = filter_acts_geometry(fn, images.shape, filters.shape, imgSizeY, numModulesY,
                               numModulesX, paddingStart, moduleStride, numImgColors, numGroups,
                               conv)
    numFilters, numImages, numModules = geo.numFilters, geo.numImages, geo.numModules
    numFilterColors, imgSizeX, filterSize = geo.numFilterColors, geo.imgSizeX, geo.filterSize
    check_matrix(fn, "targets", targets, numFilters * numModules, numImages, writeable=True)

    img4 = images.reshape(numImgColors, imgSizeY, imgSizeX, numImages)
    if conv:
        conv_in_image_taps(img4, filters.reshape(numFilterColors, filterSize, filterSize,
                                                 numFilters),
                           targets.reshape(numFilters, numModulesY, numModulesX, numImages),
                           paddingStart, moduleStride, numGroups, scaleTargets, scaleOutput)
        return
    tgt3 = targets.reshape(numFilters, numModules, numImages)
    direct = writes_directly(scaleTargets, scaleOutput)
    _local_fprop(geo, geo.canvas(img4), filters, tgt3, direct, scaleTargets, scaleOutput)


def local_cols(geo, canvas):
    """im2col for unshared filters: (numModules, numImgColors*fp, N), module-major so that
    each module's patch matrix is contiguous for a batched matmul."""
    C, N = geo.numImgColors, canvas.shape[3]
    v = patch_view(canvas, geo.filterSize, geo.moduleStride, 0, geo.numModulesY,
                   geo.numModulesX)
    cols = np.empty((geo.numModulesY, geo.numModulesX, C, geo.filterSize, geo.filterSize, N),
                    dtype=np.float32)
    np.copyto(cols, v.transpose(3, 4, 0, 1, 2, 5))
    return cols.reshape(geo.numModules, C * geo.filterPixels, N)


def _local_fprop(geo, canvas, filters, tgt3, direct, scaleTargets, scaleOutput):
    cols = local_cols(geo, canvas)
    w3 = filters.reshape(geo.numModules, geo.Kg, geo.numFilters)
    for _, fs_, ks in geo.groups():
        # per module: (Fg, Kg) @ (Kg, N); the target is (F, M, N), hence the transposes
        out = tgt3[fs_].transpose(1, 0, 2)
        if direct:
            np.matmul(w3[:, :, fs_].transpose(0, 2, 1), cols[:, ks], out=out)
        else:
            scale_store(out, np.matmul(w3[:, :, fs_].transpose(0, 2, 1), cols[:, ks]),
                        scaleTargets, scaleOutput)


def convFilterActs(images, filters, targets, imgSizeY, numModulesY, numModulesX, paddingStart,
                   moduleStride, numImgColors, numGroups, scaleTargets=0.0, scaleOutput=1.0):
    """Convolution with shared filters: targets = scaleTargets*targets + scaleOutput*conv.

    images:   (numImgColors * imgSizeY * imgSizeX, numImages); imgSizeX = imgPixels/imgSizeY
    filters:  (numFilterColors * filterSize^2, numFilters), numFilterColors =
              numImgColors / numGroups
    targets:  (numFilters * numModulesY * numModulesX, numImages), written in place

    targets[f, my, mx, n] = sum over c in f's group, fy, fx of
        filters[c - g*fc, fy, fx, f] * images[c, paddingStart + my*moduleStride + fy,
                                              paddingStart + mx*moduleStride + fx, n]
    (out-of-image pixels are zero). With scaleTargets == 0 the old targets are ignored.
    """
    _filter_acts("convFilterActs", images, filters, targets, imgSizeY, numModulesY,
                 numModulesX, paddingStart, moduleStride, numImgColors, numGroups,
                 scaleTargets, scaleOutput, True)


def localFilterActs(images, filters, targets, imgSizeY, numModulesY, numModulesX, paddingStart,
                    moduleStride, numImgColors, numGroups, scaleTargets=0.0, scaleOutput=1.0):
    """Locally connected layer (a separate filter bank per module); as convFilterActs but

    filters:  (numModules * numFilterColors * filterSize^2, numFilters), module-major
              (module m uses rows [m*fc*fp, (m+1)*fc*fp))
    images:   (numImgColors * imgSizeY * imgSizeX, numImages)
    targets:  (numFilters * numModulesY * numModulesX, numImages), written in place
    """
    _filter_acts("localFilterActs", images, filters, targets, imgSizeY, numModulesY,
                 numModulesX, paddingStart, moduleStride, numImgColors, numGroups,
                 scaleTargets, scaleOutput, False)
