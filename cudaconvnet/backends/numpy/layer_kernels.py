"""Cost, softmax and element-wise-max kernels, NumPy reference.

Stands for src/layer_kernels.cu of cuda-convnet r561, plus the cross-entropy kernels of the
CHM 2012 release (its src/layer_kernels.cu).

Layouts: probs / acts / grads are (numOut, numCases) in memory (the FC and softmax layers'
activations); integer labels are (1, numCases) float32, cross-entropy labels (numOut,
numCases). Sign convention of the whole engine: these "gradients" are of the log-likelihood,
i.e. minus the derivative of the cost (logreg gives coeff * (onehot - probs)); weights then
move along +gradient.
"""

import numpy as np

from .filter_acts import check_matrix

__all__ = ["computeLogregCost", "computeMultiSoftmaxCost", "computeLogregGrad",
           "computeLogregSoftmaxGrad", "computeSoftmaxGrad", "computeEltwiseMaxGrad",
           "computeCrossEntCost", "computeCrossEntGrad", "computeCrossEntSoftmaxGrad"]


def _labels_int(fn, labels, numCases, numOut):
    check_matrix(fn, "labels", labels)
    if labels.size != numCases:
        raise ValueError("%s: labels has %d elements, expected numCases = %d"
                         % (fn, labels.size, numCases))
    lab = labels.reshape(-1).astype(np.int64)     # int(label) truncates, as in C
    if lab.size and (lab.min() < 0 or lab.max() >= numOut):
        raise ValueError("%s: labels must lie in [0, %d), got range [%d, %d]"
                         % (fn, numOut, lab.min(), lab.max()))
    return lab


def _correct_probs(probs, maxp, hit):
    """1 / (number of outputs equal to the column maximum maxp) where `hit`, else 0."""
    numMax = (probs == maxp).sum(axis=0).astype(np.float32)
    return np.where(hit, np.float32(1) / numMax, np.float32(0)).astype(np.float32)


def computeLogregCost(labels, probs, labelLogProbs_out, correctProbs_out):
    """Per-case log-probability of the true label and chance of a correct top-1 guess.

    labels:             (1, numCases), integer class indices stored as float32
    probs:              (numOut, numCases)
    labelLogProbs_out:  (1, numCases), written: log(probs[label, i])
    correctProbs_out:   (1, numCases), written: 0 if probs[label, i] is not the column
                        maximum, else 1 / (number of outputs equal to the maximum)
    """
    fn = "computeLogregCost"
    check_matrix(fn, "probs", probs)
    numOut, numCases = probs.shape
    lab = _labels_int(fn, labels, numCases, numOut)
    check_matrix(fn, "labelLogProbs_out", labelLogProbs_out, 1, numCases, writeable=True)
    check_matrix(fn, "correctProbs_out", correctProbs_out, 1, numCases, writeable=True)
    labelp = probs[lab, np.arange(numCases)]
    maxp = probs.max(axis=0)
    correct = _correct_probs(probs, maxp, labelp == maxp)
    with np.errstate(divide="ignore", invalid="ignore"):
        labelLogProbs_out[0] = np.log(labelp)
    correctProbs_out[0] = correct


def computeMultiSoftmaxCost(labels, probs, energies, labelLogProbs_out, correctProbs_out,
                            top5Probs_out, setSize, useEnergies):
    """CHM's logreg cost with a top-k score (the layer's topk > 1, e.g. the paper's top-5).

    labels:             (1, numCases), integer class indices stored as float32
    probs, energies:    (numOut, numCases); outputs are ranked by energies if useEnergies,
                        else by probs (CHM's LogregCostLayer passes probs for both)
    labelLogProbs_out:  (1, numCases), written: log(probs[label, i])
    correctProbs_out:   (1, numCases), written: top-1 score as in computeLogregCost
    top5Probs_out:      (1, numCases), written: chance that the label is among setSize
                        guesses: with b outputs ranked strictly above the label and e equal
                        to it (itself included), slots = setSize - b: 0 if slots <= 0, 1 if
                        e <= slots, else slots / e
    """
    fn = "computeMultiSoftmaxCost"
    check_matrix(fn, "probs", probs)
    check_matrix(fn, "energies", energies, probs.shape[0], probs.shape[1])
    numOut, numCases = probs.shape
    lab = _labels_int(fn, labels, numCases, numOut)
    for name, a in (("labelLogProbs_out", labelLogProbs_out),
                    ("correctProbs_out", correctProbs_out), ("top5Probs_out", top5Probs_out)):
        check_matrix(fn, name, a, 1, numCases, writeable=True)
    cols = np.arange(numCases)
    rank = energies if useEnergies else probs
    labelv = rank[lab, cols]
    bigger = (rank > labelv).sum(axis=0)
    equal = (rank == labelv).sum(axis=0)
    slots = setSize - bigger
    with np.errstate(divide="ignore", invalid="ignore"):
        top = np.where(slots <= 0, 0.0, np.where(equal <= slots, 1.0,
                                                  slots.astype(np.float32) / equal))
        labelLogProbs_out[0] = np.log(probs[lab, cols])
        correctProbs_out[0] = np.where(labelv != rank.max(axis=0), np.float32(0),
                                       np.float32(1) / equal.astype(np.float32))
    top5Probs_out[0] = top


def _add_or_store(fn, target, v, add):
    check_matrix(fn, "target", target, v.shape[0], v.shape[1], writeable=True)
    if add:
        target += v
    else:
        target[...] = v


def computeLogregGrad(labels, probs, target, add, coeff):
    """Gradient of coeff * log(probs[label]) w.r.t. probs.

    labels: (1, numCases); probs, target: (numOut, numCases)
    v = coeff * (label == row) / probs; target = v, or target += v when add.
    """
    fn = "computeLogregGrad"
    check_matrix(fn, "probs", probs)
    numOut, numCases = probs.shape
    lab = _labels_int(fn, labels, numCases, numOut)
    onehot = (np.arange(numOut)[:, None] == lab[None, :]).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = (np.float32(coeff) * onehot) / probs
    _add_or_store(fn, target, v, add)


def computeLogregSoftmaxGrad(labels, probs, target, add, coeff):
    """Gradient of coeff * log(softmax(x)[label]) w.r.t. the softmax input x.

    labels: (1, numCases); probs (the softmax output), target: (numOut, numCases)
    v = coeff * ((label == row) - probs); target = v, or target += v when add.
    """
    fn = "computeLogregSoftmaxGrad"
    check_matrix(fn, "probs", probs)
    numOut, numCases = probs.shape
    lab = _labels_int(fn, labels, numCases, numOut)
    onehot = (np.arange(numOut)[:, None] == lab[None, :]).astype(np.float32)
    v = np.float32(coeff) * (onehot - probs)
    _add_or_store(fn, target, v, add)


def computeSoftmaxGrad(acts, actsGrad, target, add):
    """Back through a softmax: v[i] = acts[i] * (actsGrad[i] - sum_j actsGrad[j] acts[j]).

    acts (softmax output), actsGrad, target: (numOut, numCases)
    target = v, or target += v when add.
    """
    fn = "computeSoftmaxGrad"
    check_matrix(fn, "acts", acts)
    check_matrix(fn, "actsGrad", actsGrad, acts.shape[0], acts.shape[1])
    dot = np.einsum("ij,ij->j", actsGrad, acts)
    v = acts * (actsGrad - dot[None, :])
    _add_or_store(fn, target, v, add)


def computeEltwiseMaxGrad(actGrad, input, output, target, add):
    """Gradient of an element-wise max layer w.r.t. one input.

    actGrad, input, output, target: same shape (any 2-D)
    v = actGrad * (output == input); target = v, or target += v when add. Every input
    equal to the max gets the whole gradient (ties are not split).
    """
    fn = "computeEltwiseMaxGrad"
    check_matrix(fn, "actGrad", actGrad)
    check_matrix(fn, "input", input, actGrad.shape[0], actGrad.shape[1])
    check_matrix(fn, "output", output, actGrad.shape[0], actGrad.shape[1])
    v = actGrad * (output == input)
    _add_or_store(fn, target, v, add)


# ----------------------------------------------------------------------------------------
# CHM 2012: cross-entropy against a label distribution

def _safelog(x):
    """log(x) for x > 0, else -50 (CHM's safelog)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, np.log(np.where(x > 0, x, 1)), np.float32(-50)).astype(
            np.float32)


def computeCrossEntCost(labels, probs, labelLogProbs_out, correctProbs_out):
    """Cross-entropy of label distributions against probs (CHM).

    labels, probs:      (numOut, numCases)
    labelLogProbs_out:  (1, numCases), written: sum_i labels[i] * safelog(probs[i])
    correctProbs_out:   (1, numCases), written: 1 / (number of outputs equal to the column
                        maximum) if some maximal output has label > 0, else 0
    """
    fn = "computeCrossEntCost"
    check_matrix(fn, "probs", probs)
    check_matrix(fn, "labels", labels, probs.shape[0], probs.shape[1])
    numCases = probs.shape[1]
    check_matrix(fn, "labelLogProbs_out", labelLogProbs_out, 1, numCases, writeable=True)
    check_matrix(fn, "correctProbs_out", correctProbs_out, 1, numCases, writeable=True)
    maxp = probs.max(axis=0)
    hit = ((probs == maxp) & (labels > 0)).any(axis=0)
    correct = _correct_probs(probs, maxp, hit)
    labelLogProbs_out[0] = (labels * _safelog(probs)).sum(axis=0, dtype=np.float32)
    correctProbs_out[0] = correct


def computeCrossEntGrad(labels, probs, target, add, coeff):
    """Gradient of coeff * sum_i labels[i] log(probs[i]) w.r.t. probs (CHM).

    labels, probs, target: (numOut, numCases)
    v = coeff * labels / probs; target = v, or target += v when add.
    """
    fn = "computeCrossEntGrad"
    check_matrix(fn, "probs", probs)
    check_matrix(fn, "labels", labels, probs.shape[0], probs.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.float32(coeff) * (labels / probs)
    _add_or_store(fn, target, v, add)


def computeCrossEntSoftmaxGrad(labels, probs, target, add, coeff):
    """Gradient of coeff * sum_i labels[i] log(softmax(x)[i]) w.r.t. x (CHM).

    labels, probs (softmax output), target: (numOut, numCases)
    v[i] = coeff * (labels[i] - probs[i] * sum_j labels[j]); target = v, or += when add.
    """
    fn = "computeCrossEntSoftmaxGrad"
    check_matrix(fn, "probs", probs)
    check_matrix(fn, "labels", labels, probs.shape[0], probs.shape[1])
    v = np.float32(coeff) * (labels - probs * labels.sum(axis=0, dtype=np.float32)[None, :])
    _add_or_store(fn, target, v, add)
