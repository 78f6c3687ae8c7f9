"""Pooling, normalisation and image-transform kernels, NumPy reference.

Stands for cudaconv2/conv_util.cu (and the convLocalPool template with its Avg/Max/MaxAbs
poolers in cudaconv2/conv_util.cuh), plus CHM's convReflectHorizontal and the minDiv of its
cross-map normalisation.

Every tensor is (numChannels * imgSize * imgSize, numImages) float32, cases fastest; images
are square here, as in the original. Targets are preallocated and written in place.
"""

import numpy as np

from .. import KernelArgumentError
from .filter_acts import check_matrix, exact_div, scale_store, square_side

# MaxPooler's starting value: a window with no pixel inside the image yields this.
MAX_POOLER_BASE = np.float32(-2e38)

__all__ = ["convLocalPool", "convLocalMaxUndo", "convLocalAvgUndo", "convContrastNorm",
           "convResponseNorm", "convResponseNormUndo", "convContrastNormUndo",
           "convContrastNormCrossMap", "convResponseNormCrossMap",
           "convResponseNormCrossMapUndo", "convTICA", "convTICAGrad", "convGaussianBlur",
           "convBedOfNails", "convBedOfNailsUndo", "convResizeBilinear", "convRGBToYUV",
           "convRGBToLAB", "convCrop", "convReflectHorizontal", "convLocalRandomPool"]


# ----------------------------------------------------------------------------------------
# helpers

def channels_img_size(fn, name, a, numChannels):
    if numChannels < 1:
        raise KernelArgumentError("%s: numFilters/numChannels must be positive, got %d"
                         % (fn, numChannels))
    imgPixels = exact_div(fn, "%s rows by number of channels" % name, a.shape[0], numChannels)
    return square_side(fn, "imgPixels of %s" % name, imgPixels)


def writeable_target(fn, name, a, rows=None, cols=None):
    """check_matrix for an output this backend writes in place."""
    return check_matrix(fn, name, a, rows, cols, writeable=True)


# The argument checks of pooling, blur, resize, crop and reflection, shared with the CUDA
# backend, which passes its own `check` of a GPU matrix for inputs and outputs alike. Each
# returns the sizes its operation goes on with.

def pool_check(fn, images, target, numFilters, subsX, strideX, outputsX, pooler, check=check_matrix,
               check_target=writeable_target):
    """convLocalPool's: imgSize."""
    check(fn, "images", images)
    imgSize = channels_img_size(fn, "images", images, numFilters)
    if subsX < 1 or strideX < 1 or outputsX < 1:
        raise KernelArgumentError("%s: subsX (%d), strideX (%d) and outputsX (%d) must be positive"
                         % (fn, subsX, strideX, outputsX))
    if pooler not in ("max", "avg", "maxabs"):
        raise KernelArgumentError("%s: pooler must be 'max', 'avg' or 'maxabs', got %r" % (fn, pooler))
    check_target(fn, "target", target, numFilters * outputsX * outputsX, images.shape[1])
    return imgSize


def max_undo_check(fn, images, maxGrads, maxActs, target, subsX, strideX, outputsX, check=check_matrix,
                   check_target=writeable_target):
    """convLocalMaxUndo's: (numFilters, imgSize)."""
    for name, a in (("images", images), ("maxGrads", maxGrads), ("maxActs", maxActs)):
        check(fn, name, a)
    undo_check(fn, outputsX, subsX, strideX)
    N = images.shape[1]
    numFilters = exact_div(fn, "maxGrads rows by outputsX^2", maxGrads.shape[0], outputsX * outputsX)
    imgSize = channels_img_size(fn, "images", images, numFilters)
    check(fn, "maxGrads", maxGrads, cols=N)
    check(fn, "maxActs", maxActs, maxGrads.shape[0], N)
    check_target(fn, "target", target, images.shape[0], N)
    return numFilters, imgSize


def avg_undo_check(fn, avgGrads, target, subsX, strideX, outputsX, imgSize, check=check_matrix,
                   check_target=writeable_target):
    """convLocalAvgUndo's: numFilters."""
    check(fn, "avgGrads", avgGrads)
    undo_check(fn, outputsX, subsX, strideX)
    if imgSize < 1:
        raise KernelArgumentError("%s: imgSize must be positive" % fn)
    numFilters = exact_div(fn, "avgGrads rows by outputsX^2", avgGrads.shape[0], outputsX * outputsX)
    check_target(fn, "target", target, numFilters * imgSize * imgSize, avgGrads.shape[1])
    return numFilters


def blur_check(fn, images, filter, target, numChannels, check=check_matrix, check_target=writeable_target):
    """convGaussianBlur's: (imgSize, radius)."""
    check(fn, "images", images)
    check(fn, "filter", filter, rows=1)
    imgSize = channels_img_size(fn, "images", images, numChannels)
    radius = filter.shape[1] // 2
    if not 1 <= radius <= 4:
        raise KernelArgumentError("%s: filter radius must be 1..4, got width %d" % (fn, filter.shape[1]))
    if imgSize < 2 * radius + 1:
        raise KernelArgumentError("%s: imgSize (%d) must be at least the filter width (%d)" % (fn, imgSize, 2 * radius + 1))
    check_target(fn, "target", target, images.shape[0], images.shape[1])
    return imgSize, radius


def resize_check(fn, images, target, imgSize, tgtSize, check=check_matrix, check_target=writeable_target):
    """convResizeBilinear's: numChannels."""
    check(fn, "images", images)
    if imgSize < 2 or tgtSize < 1:
        raise KernelArgumentError("%s: imgSize must be >= 2 and tgtSize >= 1" % fn)
    numChannels = exact_div(fn, "images rows by imgSize^2", images.shape[0], imgSize * imgSize)
    check_target(fn, "target", target, numChannels * tgtSize * tgtSize, images.shape[1])
    return numChannels


def crop_check(fn, imgs, target, imgSize, tgtSize, startY, startX, check=check_matrix, check_target=writeable_target):
    """convCrop's: numChannels."""
    check(fn, "imgs", imgs)
    if imgSize < 1 or tgtSize < 1:
        raise KernelArgumentError("%s: imgSize and tgtSize must be positive" % fn)
    numChannels = exact_div(fn, "imgs rows by imgSize^2", imgs.shape[0], imgSize * imgSize)
    if startY < 0 or startX < 0 or startY + tgtSize > imgSize or startX + tgtSize > imgSize:
        raise KernelArgumentError("%s: %dx%d crop at (%d, %d) does not fit a %dx%d image"
                         % (fn, tgtSize, tgtSize, startY, startX, imgSize, imgSize))
    check_target(fn, "target", target, numChannels * tgtSize * tgtSize, imgs.shape[1])
    return numChannels


def reflect_check(fn, images, target, imgSize, check=check_matrix, check_target=writeable_target):
    """convReflectHorizontal's: numChannels."""
    check(fn, "images", images)
    if imgSize < 1:
        raise KernelArgumentError("%s: imgSize must be positive" % fn)
    numChannels = exact_div(fn, "images rows by imgSize^2", images.shape[0], imgSize * imgSize)
    check_target(fn, "target", target, images.shape[0], images.shape[1])
    return numChannels


def _window_range(start, stride, out_count, offset, limit):
    """Outputs o in [0, out_count) whose pixel start + o*stride + offset lies in [0, limit):
    returns (o0, o1, p0) with p0 the pixel of o0, or None if there are none."""
    first = start + offset
    o0 = 0 if first >= 0 else -(first // stride)        # ceil(-first / stride)
    o1 = min(out_count, (limit - 1 - first) // stride + 1) if limit - 1 - first >= 0 else 0
    if o1 <= o0:
        return None
    return o0, o1, first + o0 * stride


def _box_sum(x, axis, lo, hi):
    """y[i] = sum of x[i + d] over d in [lo, hi] with i + d inside the axis (no wrap)."""
    n = x.shape[axis]
    y = np.zeros_like(x)
    idx = [slice(None)] * x.ndim
    src = [slice(None)] * x.ndim
    for d in range(lo, hi + 1):
        a, b = max(0, -d), min(n, n - d)
        if a >= b:
            continue
        idx[axis] = slice(a, b)
        src[axis] = slice(a + d, b + d)
        y[tuple(idx)] += x[tuple(src)]
    return y


def _block_sum(x, axis, size):
    """y[i] = sum of x over i's block [size*(i//size), min(n, size*(i//size+1)))."""
    n = x.shape[axis]
    starts = np.arange(0, n, size)
    sums = np.add.reduceat(x, starts, axis=axis)
    return np.repeat(sums, np.minimum(size, n - starts), axis=axis)


# ----------------------------------------------------------------------------------------
# pooling

def _window_offsets(subsX, startX, strideX, outputsX, imgSize):
    """For each offset (dy, dx) of the pooling window, in row-major order: the outputs whose
    window pixel at that offset lies inside the image, and those pixels, as slices:
    (out_y, out_x, img_y, img_x)."""
    ranges = [_window_range(startX, strideX, outputsX, d, imgSize)
              for d in range(subsX)]
    for ry in ranges:
        if ry is None:
            continue
        for rx in ranges:
            if rx is None:
                continue
            (oy0, oy1, py), (ox0, ox1, px) = ry, rx
            yield (slice(oy0, oy1), slice(ox0, ox1),
                   slice(py, py + (oy1 - oy0 - 1) * strideX + 1, strideX),
                   slice(px, px + (ox1 - ox0 - 1) * strideX + 1, strideX))


# Channels handled at a time by the pooling kernels, so that the passes over the window
# offsets find their data in the cache.
POOL_BLOCK_BYTES = 2 << 20


def _channel_blocks(numChannels, bytes_per_channel):
    step = max(1, POOL_BLOCK_BYTES // max(1, bytes_per_channel))
    return [slice(c, min(numChannels, c + step)) for c in range(0, numChannels, step)]


def _region_sizes(subsX, startX, strideX, outputsX, imgSize):
    """(outputsX, outputsX) float32: in-image pixels of each window, counted as the kernels
    count them (min(end) - max(start) per axis, so an empty window can give 0 or less)."""
    s = startX + np.arange(outputsX) * strideX
    count = np.minimum(imgSize, s + subsX) - np.maximum(0, s)
    return (count[:, None] * count[None, :]).astype(np.float32)


def convLocalPool(images, target, numFilters, subsX, startX, strideX, outputsX, pooler):
    """Pool each channel over subsX x subsX windows.

    images:   (numFilters * imgSize^2, numImages)
    target:   (numFilters * outputsX^2, numImages), written in place (always overwritten)
    pooler:   'max' (MaxPooler), 'avg' (AvgPooler) or 'maxabs' (CHM's MaxAbsPooler)

    Output (oy, ox) pools image rows startX + oy*strideX + [0, subsX) and the same columns,
    clipped to the image. 'avg' divides by the number of in-image pixels of the window;
    'max' starts from -2e38 and ignores NaN (fmaxf); 'maxabs' keeps the value of largest
    magnitude, the later one in row-major order on ties, starting from 0.
    """
    imgSize = pool_check("convLocalPool", images, target, numFilters, subsX, strideX, outputsX, pooler)
    N = images.shape[1]

    img4 = images.reshape(numFilters, imgSize, imgSize, N)
    out4 = target.reshape(numFilters, outputsX, outputsX, N)
    offsets = list(_window_offsets(subsX, startX, strideX, outputsX, imgSize))
    for cb in _channel_blocks(numFilters, imgSize * imgSize * N * 4):
        img, out = img4[cb], out4[cb]
        out[...] = MAX_POOLER_BASE if pooler == "max" else 0
        # one pass per window offset, in the kernel's row-major order over the window
        for oy, ox, py, px in offsets:
            o, v = out[:, oy, ox], img[:, py, px]
            if pooler == "max":
                np.fmax(o, v, out=o)
            elif pooler == "avg":
                o += v
            else:
                o[...] = np.where(np.abs(o) > np.abs(v), o, v)
    if pooler == "avg":
        with np.errstate(divide="ignore", invalid="ignore"):
            out4 /= _region_sizes(subsX, startX, strideX, outputsX, imgSize)[:, :, None]


def convLocalRandomPool(images, target, numFilters, subsX, startX, strideX, outputsX):
    """Random pooling (CHM's pool=rand without doMax): each output takes the value of one
    pixel of its window, drawn uniformly among the window's in-image pixels, independently
    for every channel, output and image, from the backend's generator.

    images:   (numFilters * imgSize^2, numImages)
    target:   (numFilters * outputsX^2, numImages), written in place

    The 2012 kernel is not in the CHM release; this is a reading of its name and of its
    layer, which back-propagates through convLocalMaxUndo (so the gradient goes to every
    pixel of the window equal to the drawn one).
    """
    from . import nvmatrix  # the generator lives there (seed, checkpointed state)
    fn = "convLocalRandomPool"
    check_matrix(fn, "images", images)
    imgSize = channels_img_size(fn, "images", images, numFilters)
    if subsX < 1 or strideX < 1 or outputsX < 1:
        raise KernelArgumentError("%s: subsX (%d), strideX (%d) and outputsX (%d) must be positive"
                         % (fn, subsX, strideX, outputsX))
    N = images.shape[1]
    check_matrix(fn, "target", target, numFilters * outputsX * outputsX, N, writeable=True)
    s = startX + np.arange(outputsX) * strideX
    lo = np.maximum(0, s)
    count = np.minimum(imgSize, s + subsX) - lo
    if (count < 1).any():
        raise KernelArgumentError("%s: a window lies wholly outside the image" % fn)
    u = nvmatrix._rng.random((numFilters, outputsX, outputsX, N))
    cy, cx = count[None, :, None, None], count[None, None, :, None]
    pick = np.minimum((u * (cy * cx)).astype(np.int64), cy * cx - 1)
    yy = lo[None, :, None, None] + pick // cx
    xx = lo[None, None, :, None] + pick % cx
    cc = np.arange(numFilters)[:, None, None, None]
    nn = np.arange(N)[None, None, None, :]
    img4 = images.reshape(numFilters, imgSize, imgSize, N)
    target.reshape(numFilters, outputsX, outputsX, N)[...] = img4[cc, yy, xx, nn]


def undo_check(fn, outputsX, subsX, strideX):
    if outputsX < 1 or subsX < 1 or strideX < 1:
        raise KernelArgumentError("%s: subsX, strideX and outputsX must be positive" % fn)
    if strideX > subsX:
        raise KernelArgumentError("%s: strideX (%d) must not exceed subsX (%d)" % (fn, strideX, subsX))


def convLocalMaxUndo(images, maxGrads, maxActs, target, subsX, startX, strideX, outputsX,
                     scaleTargets=0.0, scaleOutput=1.0):
    """Gradient of max pooling.

    images:   (numFilters * imgSize^2, numImages), the pooling layer's input
    maxGrads: (numFilters * outputsX^2, numImages), gradient w.r.t. the pooled outputs
    maxActs:  (numFilters * outputsX^2, numImages), the pooled outputs
    target:   (numFilters * imgSize^2, numImages), written in place

    grad[c, y, x] = sum over windows o containing (y, x) of (images[c,y,x] == maxActs[c,o]) *
    maxGrads[c,o]: every pixel equal to its window's maximum gets the gradient (ties are
    not broken). target = scaleTargets*target + scaleOutput*grad.
    """
    numFilters, imgSize = max_undo_check("convLocalMaxUndo", images, maxGrads, maxActs, target, subsX, strideX,
                                         outputsX)
    N = images.shape[1]

    img4 = images.reshape(numFilters, imgSize, imgSize, N)
    mg4 = maxGrads.reshape(numFilters, outputsX, outputsX, N)
    ma4 = maxActs.reshape(numFilters, outputsX, outputsX, N)
    tgt4 = target.reshape(img4.shape)
    offsets = list(_window_offsets(subsX, startX, strideX, outputsX, imgSize))
    for cb in _channel_blocks(numFilters, imgSize * imgSize * N * 4):
        img, mg, ma = img4[cb], mg4[cb], ma4[cb]
        grad = np.zeros(img.shape, dtype=np.float32)
        eq_buf = np.empty(mg.shape, dtype=bool)
        prod_buf = np.empty(mg.shape, dtype=np.float32)
        for oy, ox, py, px in offsets:
            eq = eq_buf[:, :oy.stop - oy.start, :ox.stop - ox.start]
            prod = prod_buf[:, :oy.stop - oy.start, :ox.stop - ox.start]
            np.equal(img[:, py, px], ma[:, oy, ox], out=eq)
            # (img == max) * grad, a product as in the kernel (0 * inf gives NaN there too)
            np.multiply(eq, mg[:, oy, ox], out=prod)
            g = grad[:, py, px]
            g += prod
        scale_store(tgt4[cb], grad, scaleTargets, scaleOutput)


def convLocalAvgUndo(avgGrads, target, subsX, startX, strideX, outputsX, imgSize,
                     scaleTargets=0.0, scaleOutput=1.0):
    """Gradient of average pooling (the exact adjoint of convLocalPool with 'avg').

    avgGrads: (numFilters * outputsX^2, numImages)
    target:   (numFilters * imgSize^2, numImages), written in place

    grad[c, y, x] = sum over windows o containing (y, x) of avgGrads[c, o] / regionSize(o),
    regionSize counting the window's in-image pixels as the forward pass does.
    """
    numFilters = avg_undo_check("convLocalAvgUndo", avgGrads, target, subsX, strideX, outputsX, imgSize)
    N = avgGrads.shape[1]

    # the kernel multiplies by 1/regionSize rather than dividing
    with np.errstate(divide="ignore"):
        inv = np.float32(1) / _region_sizes(subsX, startX, strideX, outputsX, imgSize)
    ag4 = avgGrads.reshape(numFilters, outputsX, outputsX, N)
    tgt4 = target.reshape(numFilters, imgSize, imgSize, N)
    offsets = list(_window_offsets(subsX, startX, strideX, outputsX, imgSize))
    for cb in _channel_blocks(numFilters, imgSize * imgSize * N * 4):
        g = ag4[cb] * inv[:, :, None]
        grad = np.zeros((g.shape[0], imgSize, imgSize, N), dtype=np.float32)
        for oy, ox, py, px in offsets:
            d = grad[:, py, px]
            d += g[:, oy, ox]
        scale_store(tgt4[cb], grad, scaleTargets, scaleOutput)


# ----------------------------------------------------------------------------------------
# normalisation within a map (rnorm, cnorm)

def norm_check(fn, numFilters, sizeX, named, check=check_matrix):
    """The checks of the normalisations within a map (both backends: `check` checks one
    matrix); returns imgSize."""
    for name, a in named:
        check(fn, name, a)
    first = named[0][1]
    imgSize = channels_img_size(fn, named[0][0], first, numFilters)
    for name, a in named[1:]:
        check(fn, name, a, first.shape[0], first.shape[1])
    if sizeX < 1:
        raise KernelArgumentError("%s: size must be positive, got %d" % (fn, sizeX))
    return imgSize


def convContrastNorm(images, meanDiffs, denoms, target, numFilters, sizeX, addScale, powScale):
    """Contrast normalisation within each map.

    images, meanDiffs:  (numFilters * imgSize^2, numImages)
    denoms, target:     (numFilters * imgSize^2, numImages), outputs written in place

    denoms[c,y,x] = 1 + addScale * sum of meanDiffs[c]^2 over the sizeX x sizeX window
                    starting at (y - sizeX//2, x - sizeX//2), clipped to the image
    target        = images * denoms^-powScale
    (the layer passes addScale = scale / size^2, and meanDiffs = images - local mean, see
    ContrastNormLayer).
    """
    fn = "convContrastNorm"
    imgSize = norm_check(fn, numFilters, sizeX, (("images", images), ("meanDiffs", meanDiffs),
                                                  ("denoms", denoms), ("target", target)))
    for name, a in (("denoms", denoms), ("target", target)):
        check_matrix(fn, name, a, writeable=True)
    N = images.shape[1]
    shape = (numFilters, imgSize, imgSize, N)
    sq = np.square(meanDiffs.reshape(shape))
    lo, hi = -(sizeX // 2), -(sizeX // 2) + sizeX - 1
    s = _box_sum(_box_sum(sq, 1, lo, hi), 2, lo, hi)
    d = denoms.reshape(shape)
    np.multiply(s, np.float32(addScale), out=d)
    d += np.float32(1)
    np.multiply(images.reshape(shape), np.power(d, np.float32(-powScale)),
                out=target.reshape(shape))


def convResponseNorm(images, denoms, target, numFilters, sizeX, addScale, powScale):
    """Response normalisation within each map: convContrastNorm with meanDiffs = images.

    images:          (numFilters * imgSize^2, numImages)
    denoms, target:  (numFilters * imgSize^2, numImages), written in place
    denoms = 1 + addScale * (sum of images^2 over the window), target = images*denoms^-pow.
    """
    convContrastNorm(images, images, denoms, target, numFilters, sizeX, addScale, powScale)


def _undo_prelims(fn, outGrads, denoms, acts, addScale, powScale):
    """acts := (-2*addScale*powScale) * outGrads * acts / denoms, in place (the original's
    kRNormUndoPrelims, which leaves this scratch in the caller's activations)."""
    check_matrix(fn, "acts", acts, writeable=True)
    scale = np.float32(-2) * np.float32(addScale) * np.float32(powScale)
    acts *= outGrads
    acts *= scale
    acts /= denoms


def convResponseNormUndo(outGrads, denoms, inputs, acts, target, numFilters, sizeX, addScale,
                         powScale, scaleTargets=0.0, scaleOutput=1.0):
    """Gradient of convResponseNorm.

    outGrads: (numFilters * imgSize^2, numImages), gradient w.r.t. the outputs
    denoms:   (numFilters * imgSize^2, numImages), from the forward pass
    inputs:   (numFilters * imgSize^2, numImages), the forward pass's images
    acts:     (numFilters * imgSize^2, numImages), the forward pass's output. OVERWRITTEN,
              as in the original: on return acts = -2*addScale*powScale * outGrads * acts /
              denoms (scratch the original kept in the activations matrix)
    target:   (numFilters * imgSize^2, numImages), written in place

    grad[c,p] = outGrads[c,p] * denoms[c,p]^-powScale
                + inputs[c,p] * sum over q whose window holds p of acts_after[c,q],
    the exact gradient of images * denoms(images)^-powScale.
    target = scaleTargets*target + scaleOutput*grad.
    """
    fn = "convResponseNormUndo"
    imgSize = norm_check(fn, numFilters, sizeX, (("outGrads", outGrads), ("denoms", denoms),
                                                  ("inputs", inputs), ("acts", acts),
                                                  ("target", target)))
    check_matrix(fn, "target", target, writeable=True)
    N = outGrads.shape[1]
    shape = (numFilters, imgSize, imgSize, N)
    _undo_prelims(fn, outGrads, denoms, acts, addScale, powScale)
    # windows of q holding p: q - p in [sizeX//2 - sizeX + 1, sizeX//2]
    lo, hi = sizeX // 2 - sizeX + 1, sizeX // 2
    s = _box_sum(_box_sum(acts.reshape(shape), 1, lo, hi), 2, lo, hi)
    s *= inputs.reshape(shape)
    s += outGrads.reshape(shape) * np.power(denoms.reshape(shape), np.float32(-powScale))
    scale_store(target.reshape(shape), s, scaleTargets, scaleOutput)


def convContrastNormUndo(outGrads, denoms, meanDiffs, acts, target, numFilters, sizeX, addScale,
                         powScale, scaleTargets=0.0, scaleOutput=1.0):
    """Gradient of convContrastNorm: convResponseNormUndo with inputs = meanDiffs.

    outGrads, denoms, meanDiffs, acts, target: (numFilters * imgSize^2, numImages); acts is
    OVERWRITTEN as in convResponseNormUndo.

    This is the gradient of x -> x * (1 + addScale * boxsum((x - mu)^2))^-powScale with the
    local mean mu held constant (meanDiffs = x - mu moves with x, mu does not): the original
    ignores the path through the mean, and so does this.
    """
    convResponseNormUndo(outGrads, denoms, meanDiffs, acts, target, numFilters, sizeX,
                         addScale, powScale, scaleTargets, scaleOutput)


# ----------------------------------------------------------------------------------------
# normalisation across maps (cmrnorm)

def _cross_map_sum(x, sizeF, blocked, lo, hi):
    """Sum over the channel axis (0): the block for blocked, else offsets [lo, hi]."""
    if blocked:
        return _block_sum(x, 0, sizeF)
    return _box_sum(x, 0, lo, hi)


def convContrastNormCrossMap(images, meanDiffs, denoms, target, numFilters, sizeF, addScale,
                             powScale, blocked, minDiv=1.0):
    """Normalisation across maps at each pixel.

    images, meanDiffs:  (numFilters * imgPixels, numImages)
    denoms, target:     (numFilters * imgPixels, numImages), outputs written in place

    denoms[f] = minDiv + addScale * sum over f' in F(f) of meanDiffs[f']^2
    target[f] = images[f] * denoms[f]^-powScale
    with F(f) = [f - sizeF//2, f - sizeF//2 + sizeF) clipped to [0, numFilters), or, when
    blocked, f's block [sizeF*(f//sizeF), sizeF*(f//sizeF+1)) clipped. cc r561 hard-codes
    minDiv = 1 (the layer passes addScale = scale/size); CHM's layer passes its minDiv.
    """
    fn = "convContrastNormCrossMap"
    imgSize = norm_check(fn, numFilters, sizeF, (("images", images), ("meanDiffs", meanDiffs),
                                                  ("denoms", denoms), ("target", target)))
    for name, a in (("denoms", denoms), ("target", target)):
        check_matrix(fn, name, a, writeable=True)
    if sizeF > numFilters:
        raise KernelArgumentError("%s: sizeF (%d) must not exceed numFilters (%d)"
                         % (fn, sizeF, numFilters))
    shape = (numFilters, imgSize * imgSize, images.shape[1])
    sq = np.square(meanDiffs.reshape(shape))
    s = _cross_map_sum(sq, sizeF, blocked, -(sizeF // 2), -(sizeF // 2) + sizeF - 1)
    d = denoms.reshape(shape)
    np.multiply(s, np.float32(addScale), out=d)
    d += np.float32(minDiv)
    np.multiply(images.reshape(shape), np.power(d, np.float32(-powScale)),
                out=target.reshape(shape))


def convResponseNormCrossMap(images, denoms, target, numFilters, sizeF, addScale, powScale,
                             blocked, minDiv=1.0):
    """Response normalisation across maps: convContrastNormCrossMap with meanDiffs = images.

    images:          (numFilters * imgPixels, numImages)
    denoms, target:  (numFilters * imgPixels, numImages), written in place
    denoms = minDiv + addScale * (sum of images^2 over the maps near f), target =
    images * denoms^-powScale. minDiv is CHM's k (cc r561 fixes it at 1; the paper's k=2 is
    CHM's minDiv=2). CHM passes minDiv before blocked; here it is a trailing keyword.
    """
    convContrastNormCrossMap(images, images, denoms, target, numFilters, sizeF, addScale,
                             powScale, blocked, minDiv)


def convResponseNormCrossMapUndo(outGrads, denoms, inputs, acts, target, numFilters, sizeF,
                                 addScale, powScale, blocked, scaleTargets=0.0,
                                 scaleOutput=1.0):
    """Gradient of convResponseNormCrossMap (for any minDiv: it only enters denoms).

    outGrads, denoms, inputs, target: (numFilters * imgPixels, numImages)
    acts:  (numFilters * imgPixels, numImages), the forward output. OVERWRITTEN, as in the
           original: on return acts = -2*addScale*powScale * outGrads * acts / denoms

    grad[f] = outGrads[f] * denoms[f]^-powScale + inputs[f] * sum over f' with f in F(f')
    of acts_after[f']. target = scaleTargets*target + scaleOutput*grad.
    """
    fn = "convResponseNormCrossMapUndo"
    imgSize = norm_check(fn, numFilters, sizeF, (("outGrads", outGrads), ("denoms", denoms),
                                                  ("inputs", inputs), ("acts", acts),
                                                  ("target", target)))
    check_matrix(fn, "target", target, writeable=True)
    if sizeF > numFilters:
        raise KernelArgumentError("%s: sizeF (%d) must not exceed numFilters (%d)"
                         % (fn, sizeF, numFilters))
    shape = (numFilters, imgSize * imgSize, outGrads.shape[1])
    _undo_prelims(fn, outGrads, denoms, acts, addScale, powScale)
    s = _cross_map_sum(acts.reshape(shape), sizeF, blocked, sizeF // 2 - sizeF + 1,
                       sizeF // 2)
    s *= inputs.reshape(shape)
    s += outGrads.reshape(shape) * np.power(denoms.reshape(shape), np.float32(-powScale))
    scale_store(target.reshape(shape), s, scaleTargets, scaleOutput)


# ----------------------------------------------------------------------------------------
# TICA (CHM's cost.tica layer)

def convTICA(images, target, numFilters, sizeX, scaleTarget, scaleOutput):
    """Reciprocal local L2 norm within each map (forward of CHM's TICA cost).

    images:  (numFilters * imgSize^2, numImages)
    target:  (numFilters * imgSize^2, numImages), written in place:
             target = scaleTarget*target + scaleOutput / (0.001 + sqrt(S)), S = sum of
             images^2 over the sizeX x sizeX window at (y - sizeX//2, x - sizeX//2), clipped
    """
    fn = "convTICA"
    imgSize = norm_check(fn, numFilters, sizeX, (("images", images), ("target", target)))
    check_matrix(fn, "target", target, writeable=True)
    shape = (numFilters, imgSize, imgSize, images.shape[1])
    lo, hi = -(sizeX // 2), -(sizeX // 2) + sizeX - 1
    s = _box_sum(_box_sum(np.square(images.reshape(shape)), 1, lo, hi), 2, lo, hi)
    r = np.float32(1) / (np.sqrt(s) + np.float32(0.001))
    scale_store(target.reshape(shape), r, scaleTarget, scaleOutput)


def convTICAGrad(images, ticas, target, numFilters, sizeX, scaleTarget, scaleOutput):
    """Gradient of CHM's TICA cost, exactly as the original kernel computes it.

    images:  (numFilters * imgSize^2, numImages)
    ticas:   (numFilters * imgSize^2, numImages), convTICA's output (1/(eps + local norm))
    target:  (numFilters * imgSize^2, numImages), written in place

    With T = sum of ticas over the same window as convTICA's (not its transpose; the two
    agree for odd sizeX):
      scaleTarget == 0:  target = scaleOutput * -images * T
      otherwise:         target = scaleTarget*target + scaleOutput * -images * sqrt(T)
    The square root in the accumulating branch only is the original's (a quirk, kept).
    """
    fn = "convTICAGrad"
    imgSize = norm_check(fn, numFilters, sizeX, (("images", images), ("ticas", ticas),
                                                  ("target", target)))
    check_matrix(fn, "target", target, writeable=True)
    shape = (numFilters, imgSize, imgSize, images.shape[1])
    lo, hi = -(sizeX // 2), -(sizeX // 2) + sizeX - 1
    t = _box_sum(_box_sum(ticas.reshape(shape), 1, lo, hi), 2, lo, hi)
    if scaleTarget != 0:
        np.sqrt(t, out=t)
    t *= images.reshape(shape)
    np.negative(t, out=t)
    scale_store(target.reshape(shape), t, scaleTarget, scaleOutput)


# ----------------------------------------------------------------------------------------
# image transforms

def convGaussianBlur(images, filter, target, horiz, numChannels, scaleTargets, scaleOutputs):
    """1-D blur along rows (horiz) or columns, zero outside the image.

    images:  (numChannels * imgSize^2, numImages)
    filter:  (1, 2*radius + 1), radius in 1..4 (a Gaussian from the layer: symmetric)
    target:  (numChannels * imgSize^2, numImages), written in place; may be images itself

    For a symmetric filter out[t] = sum over d in [-r, r] of filter[r + d] * in[t + d].
    Exactly as the kernel, for any filter: pixels before index r weigh in with filter[r + d],
    the others with filter[r - d], and filter[2r] itself is never read (filter[0] stands in
    for it).
    """
    imgSize, radius = blur_check("convGaussianBlur", images, filter, target, numChannels)
    f = filter[0].astype(np.float32)
    r = radius
    src = images.reshape(numChannels, imgSize, imgSize, images.shape[1])
    axis = 2 if horiz else 1
    out = np.zeros_like(src)
    n = imgSize
    idx = [slice(None)] * 4
    sidx = [slice(None)] * 4
    for d in range(-r, r + 1):
        # source pixels c = t + d: c < r use filter[r + d]; c >= r use filter[r - d], with
        # filter[0] in place of filter[2r]
        w_lo = f[r + d]
        w_hi = f[0] if d == -r else f[r - d]
        for c0, c1, w in ((0, r, w_lo), (r, n, w_hi)):
            t0, t1 = max(0, c0 - d), min(n, c1 - d)
            if t0 >= t1:
                continue
            idx[axis] = slice(t0, t1)
            sidx[axis] = slice(t0 + d, t1 + d)
            out[tuple(idx)] += w * src[tuple(sidx)]
    scale_store(target.reshape(src.shape), out, scaleTargets, scaleOutputs)


def nails_check(fn, src, target, numChannels, imgSize, startX, strideX, undo, check=check_matrix,
                check_target=writeable_target):
    """The bed of nails' checks, both backends: src is images (undo: actsGrad); returns
    outputsX."""
    check(fn, "actsGrad" if undo else "images", src)
    if strideX <= 1:
        raise KernelArgumentError("%s: strideX must be > 1, got %d" % (fn, strideX))
    if numChannels < 1 or imgSize < 1:
        raise KernelArgumentError("%s: numChannels and imgSize must be positive" % fn)
    outputsX = -(-imgSize // strideX)
    if startX < 0 or startX + (outputsX - 1) * strideX >= imgSize:
        raise KernelArgumentError("%s: nails startX + k*strideX (startX %d, strideX %d, %d outputs) "
                         "fall outside the %d-pixel image" % (fn, startX, strideX, outputsX,
                                                             imgSize))
    imgRows, nailRows = numChannels * imgSize * imgSize, numChannels * outputsX * outputsX
    check(fn, "actsGrad" if undo else "images", src, nailRows if undo else imgRows)
    check_target(fn, "target", target, imgRows if undo else nailRows, src.shape[1])
    return outputsX


def convBedOfNails(images, target, numChannels, imgSize, startX, strideX, scaleTargets,
                   scaleOutput):
    """Subsample: keep every strideX-th pixel from startX in both directions.

    images:  (numChannels * imgSize^2, numImages)
    target:  (numChannels * outputsX^2, numImages), outputsX = ceil(imgSize / strideX),
             written in place: target[c, oy, ox] = images[c, startX + oy*strideX,
             startX + ox*strideX] (scaled as usual)
    """
    outputsX = nails_check("convBedOfNails", images, target, numChannels, imgSize, startX, strideX, False)
    N = images.shape[1]
    src = images.reshape(numChannels, imgSize, imgSize, N)
    nails = src[:, startX::strideX, startX::strideX][:, :outputsX, :outputsX]
    scale_store(target.reshape(numChannels, outputsX, outputsX, N), nails.copy(),
                scaleTargets, scaleOutput)


def convBedOfNailsUndo(actsGrad, target, numChannels, imgSize, startX, strideX, scaleTargets,
                       scaleOutput):
    """Gradient of convBedOfNails: scatter back onto the nails, zero elsewhere.

    actsGrad: (numChannels * outputsX^2, numImages)
    target:   (numChannels * imgSize^2, numImages), written in place:
              target = scaleTargets*target + scaleOutput*scatter(actsGrad).
    (The original asserts on the wrong row count when scaleTargets != 0, so it only ever
    ran with scaleTargets == 0; the plain definition above is used for the other case.)
    """
    outputsX = nails_check("convBedOfNailsUndo", actsGrad, target, numChannels, imgSize, startX, strideX, True)
    N = actsGrad.shape[1]
    grad = np.zeros((numChannels, imgSize, imgSize, N), dtype=np.float32)
    end = startX + (outputsX - 1) * strideX + 1
    grad[:, startX:end:strideX, startX:end:strideX] = actsGrad.reshape(
        numChannels, outputsX, outputsX, N)
    scale_store(target.reshape(grad.shape), grad, scaleTargets, scaleOutput)


def convResizeBilinear(images, target, imgSize, tgtSize, scale):
    """Bilinear resize of square images, centred, as the original kernel samples.

    images:  (numChannels * imgSize^2, numImages)
    target:  (numChannels * tgtSize^2, numImages), written in place

    Target pixel p samples source coordinate clamp(p*scale + centerScale, 0, imgSize-1.01)
    with centerScale = imgSize/2 - tgtSize/2*scale (so imgSize ~ scale * tgtSize).
    """
    numChannels = resize_check("convResizeBilinear", images, target, imgSize, tgtSize)
    N = images.shape[1]
    f32 = np.float32
    # the host computes this in double and hands the kernel a float
    centerScale = f32(imgSize * 0.5 - tgtSize * 0.5 * float(f32(scale)))
    p = np.arange(tgtSize, dtype=np.float32) * f32(scale) + centerScale
    src = np.maximum(f32(0), np.minimum(f32(imgSize) - f32(1.01), p))
    fl = np.floor(src)
    i0 = fl.astype(np.int64)
    u = (np.floor(src + f32(1)) - src)[None, :]        # weight of the left column
    w = (src - fl)[:, None]                            # weight of the lower row
    img = images.reshape(numChannels, imgSize, imgSize, N)
    top = img[:, i0]                                   # (C, tgt, imgSize, N)
    bot = img[:, i0 + 1]
    v0, v1 = top[:, :, i0], top[:, :, i0 + 1]
    v2, v3 = bot[:, :, i0], bot[:, :, i0 + 1]
    uu = u[None, :, :, None]
    c0 = uu * (v0 - v1) + v1
    c1 = uu * (v2 - v3) + v3
    out = target.reshape(numChannels, tgtSize, tgtSize, N)
    np.multiply(w[None, :, :, None], c1 - c0, out=out)
    out += c0


def _rgb(fn, images, target):
    check_matrix(fn, "images", images)
    imgPixels = exact_div(fn, "images rows by 3", images.shape[0], 3)
    check_matrix(fn, "target", target, images.shape[0], images.shape[1], writeable=True)
    src = images.reshape(3, imgPixels, images.shape[1])
    return src[0], src[1], src[2], target.reshape(3, imgPixels, images.shape[1])


def convRGBToYUV(images, target):
    """RGB -> YUV per pixel.

    images, target: (3 * imgPixels, numImages); target written in place.
    Y = .2126R + .7152G + .0722B, U = -.09991R - .33609G + .436B,
    V = .615R - .55861G - .05639B.
    """
    R, G, B, out = _rgb("convRGBToYUV", images, target)
    f = np.float32
    Y = f(0.2126) * R + f(0.7152) * G + f(0.0722) * B
    U = f(-0.09991) * R + f(-0.33609) * G + f(0.436) * B
    V = f(0.615) * R + f(-0.55861) * G + f(-0.05639) * B
    out[0], out[1], out[2] = Y, U, V


def _labf(x):
    f = np.float32
    with np.errstate(invalid="ignore"):
        return np.where(x > f(0.0088564517), np.power(np.maximum(x, f(0)), f(0.3333)),
                        f(7.787037) * x + f(0.13793103)).astype(np.float32)


def convRGBToLAB(images, target, center):
    """RGB (in [0, 1], not mean-subtracted) -> L*a*b* per pixel.

    images, target: (3 * imgPixels, numImages); target written in place.
    X = .49R + .31G + .2B, Y = .17697R + .8124G + .01063B, Z = .01G + .99B (no further
    scaling, whatever the original's comment says), f(t) = t^0.3333 above 0.0088564517 else
    7.787037t + 0.13793103; L = 116 f(Y) - 16 (- 50 if center), a = 500 (f(X) - f(Y)),
    b = 200 (f(Y) - f(Z)).
    """
    R, G, B, out = _rgb("convRGBToLAB", images, target)
    f = np.float32
    X = f(0.49) * R + f(0.31) * G + f(0.2) * B
    Y = f(0.17697) * R + f(0.8124) * G + f(0.01063) * B
    Z = f(0.01) * G + f(0.99) * B
    lx, ly, lz = _labf(X), _labf(Y), _labf(Z)
    L = f(116) * ly - f(16)
    if center:
        L -= f(50)
    out[0], out[1], out[2] = L, f(500) * (lx - ly), f(200) * (ly - lz)


def convCrop(imgs, target, imgSize, tgtSize, startY, startX):
    """Crop a tgtSize x tgtSize window at (startY, startX) from every channel.

    imgs:    (numChannels * imgSize^2, numImages)
    target:  (numChannels * tgtSize^2, numImages), written in place
    """
    numChannels = crop_check("convCrop", imgs, target, imgSize, tgtSize, startY, startX)
    N = imgs.shape[1]
    src = imgs.reshape(numChannels, imgSize, imgSize, N)
    target.reshape(numChannels, tgtSize, tgtSize, N)[...] = \
        src[:, startY:startY + tgtSize, startX:startX + tgtSize]


def convReflectHorizontal(images, target, imgSize, scaleTargets=0.0, scaleOutput=1.0):
    """Mirror every image left-right (CHM's href layer; its kernel is not in the release,
    so this is defined from the layer's use). The flip is its own adjoint, so the layer's
    bprop calls it on the gradient too.

    images:  (numChannels * imgSize^2, numImages)
    target:  (numChannels * imgSize^2, numImages), written in place (may be images)
    CHM calls it with three arguments (overwrite); scaleTargets/scaleOutput are extras.
    """
    numChannels = reflect_check("convReflectHorizontal", images, target, imgSize)
    shape = (numChannels, imgSize, imgSize, images.shape[1])
    flipped = images.reshape(shape)[:, :, ::-1].copy()
    scale_store(target.reshape(shape), flipped, scaleTargets, scaleOutput)
