"""Sparse random connectivity (randSparse): each filter group sees its own `numFilterColors`
of the image's colours, listed in dColorIndices (the parser's filterConns).

Stands for the *Sparse functions of cudaconv2/filter_acts.cu, img_acts.cu and
weight_acts.cu. Here they gather the listed colours into a dense image of
numGroups * numFilterColors colours and run the dense grouped kernels on it.
dColorIndices has numGroups * numFilterColors entries; each run of numImgColors of them is
a permutation of the colours, one per "sample" (overSample = numGroups * numFilterColors /
numImgColors runs).
"""
import numpy as np

from .. import KernelArgumentError
from .filter_acts import convFilterActs, localFilterActs
from .img_acts import convImgActs, localImgActs
from .weight_acts import convWeightActs, localWeightActs


def _indices(fn, dColorIndices, numImgColors, numFilterColors, numGroups):
    idx = np.asarray(dColorIndices, dtype=np.int64).ravel()
    if idx.size != numGroups * numFilterColors:
        raise KernelArgumentError("%s: dColorIndices has %d entries, expected numGroups * numFilterColors = %d"
                         % (fn, idx.size, numGroups * numFilterColors))
    if (numGroups * numFilterColors) % numImgColors or idx.min() < 0 or idx.max() >= numImgColors:
        raise KernelArgumentError("%s: dColorIndices must be runs of permutations of the %d colours" % (fn, numImgColors))
    return idx


def _gather(images, idx, numImgColors):
    """The dense image whose colour e is colour idx[e] of `images`."""
    pixels_cases = images.size // numImgColors
    return np.ascontiguousarray(images.reshape(numImgColors, pixels_cases)[idx]).reshape(idx.size * images.shape[0]
                                                                                        // numImgColors, images.shape[1])


def convFilterActsSparse(images, filters, targets, dColorIndices, imgSizeY, numModulesY, numModulesX, paddingStart,
                         moduleStride, numImgColors, numFilterColors, numGroups, scaleTargets=0.0, scaleOutput=1.0):
    idx = _indices("convFilterActsSparse", dColorIndices, numImgColors, numFilterColors, numGroups)
    convFilterActs(_gather(images, idx, numImgColors), filters, targets, imgSizeY, numModulesY, numModulesX,
                   paddingStart, moduleStride, idx.size, numGroups, scaleTargets, scaleOutput)


def localFilterActsSparse(images, filters, targets, dColorIndices, imgSizeY, numModulesY, numModulesX, paddingStart,
                          moduleStride, numImgColors, numFilterColors, numGroups, scaleTargets=0.0, scaleOutput=1.0):
    idx = _indices("localFilterActsSparse", dColorIndices, numImgColors, numFilterColors, numGroups)
    localFilterActs(_gather(images, idx, numImgColors), filters, targets, imgSizeY, numModulesY, numModulesX,
                    paddingStart, moduleStride, idx.size, numGroups, scaleTargets, scaleOutput)


def _img_acts_sparse(dense_fn, fn, hidActs, filters, targets, dColorIndices, imgSizeY, imgSizeX, numModulesY,
                     paddingStart, moduleStride, numImgColors, numFilterColors, numGroups, scaleTargets, scaleOutput):
    """targets: (overSample * numImgColors * imgPixels, numCases); block o holds the
    gradient through the o-th run of dColorIndices, in image colour order (the layer sums
    the blocks)."""
    idx = _indices(fn, dColorIndices, numImgColors, numFilterColors, numGroups)
    overSample = idx.size // numImgColors
    n = hidActs.shape[1]
    rows = numImgColors * imgSizeY * imgSizeX
    if targets.shape != (overSample * rows, n):
        raise KernelArgumentError("%s: targets must be %dx%d" % (fn, overSample * rows, n))
    dense = np.empty((overSample * rows, n), dtype=np.float32)
    dense_fn(hidActs, filters, dense, imgSizeY, imgSizeX, numModulesY, paddingStart, moduleStride, idx.size, numGroups)
    dense = dense.reshape(overSample, numImgColors, -1)
    result = np.empty_like(dense)
    for o in range(overSample):
        result[o, idx[o * numImgColors:(o + 1) * numImgColors]] = dense[o]
    result = result.reshape(targets.shape)
    if scaleTargets == 0:
        np.multiply(result, np.float32(scaleOutput), out=targets)
    else:
        targets *= np.float32(scaleTargets)
        targets += np.float32(scaleOutput) * result


def convImgActsSparse(hidActs, filters, targets, dColorIndices, imgSizeY, imgSizeX, numModulesY, paddingStart,
                      moduleStride, numImgColors, numFilterColors, numGroups, scaleTargets=0.0, scaleOutput=1.0):
    _img_acts_sparse(convImgActs, "convImgActsSparse", hidActs, filters, targets, dColorIndices, imgSizeY, imgSizeX,
                     numModulesY, paddingStart, moduleStride, numImgColors, numFilterColors, numGroups,
                     scaleTargets, scaleOutput)


def localImgActsSparse(hidActs, filters, targets, dColorIndices, imgSizeY, imgSizeX, numModulesY, paddingStart,
                       moduleStride, numImgColors, numFilterColors, numGroups, scaleTargets=0.0, scaleOutput=1.0):
    _img_acts_sparse(localImgActs, "localImgActsSparse", hidActs, filters, targets, dColorIndices, imgSizeY, imgSizeX,
                     numModulesY, paddingStart, moduleStride, numImgColors, numFilterColors, numGroups,
                     scaleTargets, scaleOutput)


def convWeightActsSparse(images, hidActs, targets, dColorIndices, imgSizeY, numModulesY, numModulesX, filterSize,
                         paddingStart, moduleStride, numImgColors, numFilterColors, numGroups, partialSum,
                         scaleTargets=0.0, scaleOutput=1.0):
    idx = _indices("convWeightActsSparse", dColorIndices, numImgColors, numFilterColors, numGroups)
    convWeightActs(_gather(images, idx, numImgColors), hidActs, targets, imgSizeY, numModulesY, numModulesX,
                   filterSize, paddingStart, moduleStride, idx.size, numGroups, partialSum, scaleTargets, scaleOutput)


def localWeightActsSparse(images, hidActs, targets, dColorIndices, imgSizeY, numModulesY, numModulesX, filterSize,
                          paddingStart, moduleStride, numImgColors, numFilterColors, numGroups,
                          scaleTargets=0.0, scaleOutput=1.0):
    idx = _indices("localWeightActsSparse", dColorIndices, numImgColors, numFilterColors, numGroups)
    localWeightActs(_gather(images, idx, numImgColors), hidActs, targets, imgSizeY, numModulesY, numModulesX,
                    filterSize, paddingStart, moduleStride, idx.size, numGroups, scaleTargets, scaleOutput)
