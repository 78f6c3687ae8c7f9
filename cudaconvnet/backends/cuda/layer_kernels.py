"""Cost, softmax and element-wise-max kernels on the GPU: the host side of
cuda_src/layer_kernels.cu.

Stands for the host functions of src/layer_kernels.cu (cuda-convnet r561, and the CHM 2012
release's cross-entropy and top-k costs), with the NumPy backend's signatures and semantics
(cudaconvnet/backends/numpy/layer_kernels.py is the reference).

Layouts: probs / acts / grads are (numOut, numCases); integer labels (1, numCases) float32,
label distributions (numOut, numCases). The selectors (select_*) are pure Python.
"""
import numpy as np

from .. import KernelArgumentError
from .nvmatrix import DIVUP, Launch, apply_binary, apply_ternary, check_gpu_matrix, launch, max_cols, ptr, to_host

f32 = np.float32
FILE = "layer_kernels.cu"

LOGREG_GRAD_THREADS_X = 32
LOGREG_GRAD_THREADS_Y = 4
LOGREG_ERR_THREADS_X = 128

# The labels are copied to the host and checked (a label out of range would make the
# kernels read outside probs); set False to skip the copy.
CHECK_LABELS = True

__all__ = ["computeLogregCost", "computeMultiSoftmaxCost", "computeLogregGrad",
           "computeLogregSoftmaxGrad", "computeSoftmaxGrad", "computeEltwiseMaxGrad",
           "computeCrossEntCost", "computeCrossEntGrad", "computeCrossEntSoftmaxGrad",
           "computeCrossEnt2Cost", "computeCrossEnt2Grad", "computeRobustFlickrCost", "computeRobustFlickrGrad"]


# ==========================================================================================
# selectors (one per kernel family; the 2012 host code's choices)
# ==========================================================================================
def select_cost(kernel, numCases):
    """kLogregCost, kMultiSoftmaxCost(_engs), kCrossEntCost: one thread per case, blocks of
    LOGREG_ERR_THREADS_X."""
    return Launch(FILE, kernel, (), (DIVUP(numCases, LOGREG_ERR_THREADS_X), 1), (LOGREG_ERR_THREADS_X, 1, 1))


def select_multisoftmax(useEnergies, numCases):
    """computeMultiSoftmaxCost: kMultiSoftmaxCost_engs when ranking by energies."""
    return select_cost("kMultiSoftmaxCost_engs" if useEnergies else "kMultiSoftmaxCost", numCases)


def select_grad(kernel, add, numOut, numCases):
    """kLogregCostGrad, kLogregSoftmaxGrad, kSoftmaxGrad, kCrossEntGrad, kCrossEntSoftmaxGrad:
    <add>, one thread per element, 4x32 blocks."""
    grid = (DIVUP(numCases, LOGREG_GRAD_THREADS_X), DIVUP(numOut, LOGREG_GRAD_THREADS_Y))
    return Launch(FILE, kernel, (bool(add),), grid, (LOGREG_GRAD_THREADS_X, LOGREG_GRAD_THREADS_Y, 1))


def select_eltwise_max_grad(add, numElements):
    """computeEltwiseMaxGrad: kEltwiseMaxGrad<128, add>, one thread per element."""
    return Launch(FILE, "kEltwiseMaxGrad", (128, bool(add)), (DIVUP(numElements, 128), 1), (128, 1, 1))


GRAD_KERNELS = ("kLogregCostGrad", "kLogregSoftmaxGrad", "kSoftmaxGrad", "kCrossEntGrad", "kCrossEntSoftmaxGrad")


def _cover():
    out = [select_cost("kLogregCost", 100), select_cost("kCrossEntCost", 100)]
    out += [select_multisoftmax(e, 100) for e in (False, True)]
    out += [select_grad(k, add, 10, 100) for k in GRAD_KERNELS for add in (False, True)]
    out += [select_eltwise_max_grad(add, 1000) for add in (False, True)]
    return out


# Every (file, kernel, template args) the selectors of this module can return.
INSTANTIATIONS = sorted({lc[:3] for lc in _cover()}, key=repr)

FORMATS = {
    "kLogregCost": "PPPPPii", "kMultiSoftmaxCost": "PPPPPPiii", "kMultiSoftmaxCost_engs": "PPPPPPPiii",
    "kCrossEntCost": "PPPPPii", "kLogregCostGrad": "PPPiif", "kLogregSoftmaxGrad": "PPPiif",
    "kSoftmaxGrad": "PPPii", "kCrossEntGrad": "PPPiif", "kCrossEntSoftmaxGrad": "PPPiif",
    "kEltwiseMaxGrad": "PPPPi",
}


def _run(lc, *args):
    if lc.grid[0] < 1 or lc.grid[1] < 1:
        return
    launch(lc, FORMATS[lc.kernel], *args)


# ==========================================================================================
# helpers
# ==========================================================================================
def _labels_int(fn, labels, numCases, numOut):
    check_gpu_matrix(fn, "labels", labels)
    if labels.size != numCases:
        raise KernelArgumentError("%s: labels has %d elements, expected numCases = %d" % (fn, labels.size, numCases))
    if CHECK_LABELS and numCases:
        lab = to_host(labels).reshape(-1).astype(np.int64)  # int(label) truncates, as in C
        if lab.min() < 0 or lab.max() >= numOut:
            raise KernelArgumentError("%s: labels must lie in [0, %d), got range [%d, %d]"
                             % (fn, numOut, lab.min(), lab.max()))


def _outs(fn, numCases, named):
    for name, a in named:
        check_gpu_matrix(fn, name, a, 1, numCases)


def _target(fn, target, like):
    check_gpu_matrix(fn, "target", target, like.shape[0], like.shape[1])


# ==========================================================================================
# costs
# ==========================================================================================
def computeLogregCost(labels, probs, labelLogProbs_out, correctProbs_out):
    """labelLogProbs_out = log probs[label]; correctProbs_out = 1 / (number of outputs at
    the column maximum) where the label's probability is the maximum, else 0."""
    fn = "computeLogregCost"
    check_gpu_matrix(fn, "probs", probs)
    numOut, numCases = probs.shape
    _labels_int(fn, labels, numCases, numOut)
    _outs(fn, numCases, (("labelLogProbs_out", labelLogProbs_out), ("correctProbs_out", correctProbs_out)))
    if numCases == 0:
        return
    maxProbs = max_cols(probs)
    _run(select_cost("kLogregCost", numCases), ptr(probs), ptr(labels), ptr(maxProbs), ptr(labelLogProbs_out),
         ptr(correctProbs_out), numCases, numOut)


def computeMultiSoftmaxCost(labels, probs, energies, labelLogProbs_out, correctProbs_out,
                            top5Probs_out, setSize, useEnergies):
    """CHM's logreg cost with a top-setSize score; outputs ranked by energies if
    useEnergies, else by probs (see the NumPy reference)."""
    fn = "computeMultiSoftmaxCost"
    check_gpu_matrix(fn, "probs", probs)
    check_gpu_matrix(fn, "energies", energies, probs.shape[0], probs.shape[1])
    numOut, numCases = probs.shape
    _labels_int(fn, labels, numCases, numOut)
    _outs(fn, numCases, (("labelLogProbs_out", labelLogProbs_out), ("correctProbs_out", correctProbs_out),
                         ("top5Probs_out", top5Probs_out)))
    if numCases == 0:
        return
    lc = select_multisoftmax(useEnergies, numCases)
    if useEnergies:
        maxE = max_cols(energies)
        _run(lc, ptr(probs), ptr(energies), ptr(labels), ptr(maxE), ptr(labelLogProbs_out), ptr(correctProbs_out),
             ptr(top5Probs_out), numCases, numOut, int(setSize))
    else:
        maxP = max_cols(probs)
        _run(lc, ptr(probs), ptr(labels), ptr(maxP), ptr(labelLogProbs_out), ptr(correctProbs_out),
             ptr(top5Probs_out), numCases, numOut, int(setSize))


def computeCrossEntCost(labels, probs, labelLogProbs_out, correctProbs_out):
    """CHM: labelLogProbs_out = sum_i labels[i] * safelog(probs[i]); correctProbs_out as
    the NumPy reference says."""
    fn = "computeCrossEntCost"
    check_gpu_matrix(fn, "probs", probs)
    check_gpu_matrix(fn, "labels", labels, probs.shape[0], probs.shape[1])
    numOut, numCases = probs.shape
    _outs(fn, numCases, (("labelLogProbs_out", labelLogProbs_out), ("correctProbs_out", correctProbs_out)))
    if numCases == 0:
        return
    maxProbs = max_cols(probs)
    _run(select_cost("kCrossEntCost", numCases), ptr(probs), ptr(labels), ptr(maxProbs), ptr(labelLogProbs_out),
         ptr(correctProbs_out), numCases, numOut)


# ==========================================================================================
# gradients
# ==========================================================================================
def computeLogregGrad(labels, probs, target, add, coeff):
    """target (+)= coeff * (label == row) / probs."""
    fn = "computeLogregGrad"
    check_gpu_matrix(fn, "probs", probs)
    numOut, numCases = probs.shape
    _labels_int(fn, labels, numCases, numOut)
    _target(fn, target, probs)
    _run(select_grad("kLogregCostGrad", add, numOut, numCases), ptr(probs), ptr(labels), ptr(target), numCases,
         numOut, f32(coeff))


def computeLogregSoftmaxGrad(labels, probs, target, add, coeff):
    """target (+)= coeff * ((label == row) - probs)."""
    fn = "computeLogregSoftmaxGrad"
    check_gpu_matrix(fn, "probs", probs)
    numOut, numCases = probs.shape
    _labels_int(fn, labels, numCases, numOut)
    _target(fn, target, probs)
    _run(select_grad("kLogregSoftmaxGrad", add, numOut, numCases), ptr(probs), ptr(labels), ptr(target), numCases,
         numOut, f32(coeff))


def computeSoftmaxGrad(acts, actsGrad, target, add):
    """target (+)= acts * (actsGrad - sum_j actsGrad[j] acts[j])."""
    fn = "computeSoftmaxGrad"
    check_gpu_matrix(fn, "acts", acts)
    check_gpu_matrix(fn, "actsGrad", actsGrad, acts.shape[0], acts.shape[1])
    _target(fn, target, acts)
    numOut, numCases = acts.shape
    _run(select_grad("kSoftmaxGrad", add, numOut, numCases), ptr(actsGrad), ptr(acts), ptr(target), numCases,
         numOut)


def computeEltwiseMaxGrad(actGrad, input, output, target, add):
    """target (+)= actGrad * (output == input)."""
    fn = "computeEltwiseMaxGrad"
    check_gpu_matrix(fn, "actGrad", actGrad)
    check_gpu_matrix(fn, "input", input, actGrad.shape[0], actGrad.shape[1])
    check_gpu_matrix(fn, "output", output, actGrad.shape[0], actGrad.shape[1])
    _target(fn, target, actGrad)
    _run(select_eltwise_max_grad(add, actGrad.size), ptr(actGrad), ptr(input), ptr(output), ptr(target),
         actGrad.size)


def computeCrossEntGrad(labels, probs, target, add, coeff):
    """CHM: target (+)= coeff * labels / probs."""
    fn = "computeCrossEntGrad"
    check_gpu_matrix(fn, "probs", probs)
    check_gpu_matrix(fn, "labels", labels, probs.shape[0], probs.shape[1])
    _target(fn, target, probs)
    numOut, numCases = probs.shape
    _run(select_grad("kCrossEntGrad", add, numOut, numCases), ptr(probs), ptr(labels), ptr(target), numCases,
         numOut, f32(coeff))


def computeCrossEntSoftmaxGrad(labels, probs, target, add, coeff):
    """CHM: target (+)= coeff * (labels - probs * sum_j labels[j])."""
    fn = "computeCrossEntSoftmaxGrad"
    check_gpu_matrix(fn, "probs", probs)
    check_gpu_matrix(fn, "labels", labels, probs.shape[0], probs.shape[1])
    _target(fn, target, probs)
    numOut, numCases = probs.shape
    _run(select_grad("kCrossEntSoftmaxGrad", add, numOut, numCases), ptr(probs), ptr(labels), ptr(target),
         numCases, numOut, f32(coeff))


# ==========================================================================================
# CHM's element-wise costs: layer.cuh functors applied by NVMatrix (kernels of
# nvmatrix_kernels.cu: kEltwiseBinaryOp, and kEltwiseTernaryOp to accumulate)
# ==========================================================================================
def _elementwise_cost(fn, labels, probs, target):
    check_gpu_matrix(fn, "probs", probs)
    check_gpu_matrix(fn, "labels", labels, probs.shape[0], probs.shape[1])
    check_gpu_matrix(fn, "target", target, probs.shape[0], probs.shape[1])


def computeCrossEnt2Cost(labels, probs, target):
    """CrossEnt2CostLayer: target = t * safelog(y) + (1 - t) * safelog(1 - y)."""
    _elementwise_cost("computeCrossEnt2Cost", labels, probs, target)
    apply_binary("CrossEntOperator", labels, probs, target)


def computeCrossEnt2Grad(labels, probs, target, add, coeff):
    """target (+)= coeff * (t / y + (1 - t) / (1 - y)) (CHM's operator, its sign kept)."""
    _elementwise_cost("computeCrossEnt2Grad", labels, probs, target)
    if add:
        apply_ternary("AddGradientBinaryOperator_CrossEntGradientOperator", labels, probs, target, target, coeff)
    else:
        apply_binary("CrossEntGradientOperator", labels, probs, target, coeff)


def computeRobustFlickrCost(labels, probs, target):
    """RobustFlickrCost: target = log(1 + (y - t)^2)."""
    _elementwise_cost("computeRobustFlickrCost", labels, probs, target)
    apply_binary("RobustFlickrCostOperator", labels, probs, target)


def computeRobustFlickrGrad(labels, probs, target, add, coeff):
    """target (+)= -coeff * 2d / (1 + d^2), d = y - t."""
    _elementwise_cost("computeRobustFlickrGrad", labels, probs, target)
    if add:
        apply_ternary("AddGradientBinaryOperator_RobustFlickrCostGradientOperator", labels, probs, target, target,
                      coeff)
    else:
        apply_binary("RobustFlickrCostGradientOperator", labels, probs, target, coeff)
