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

from .. import KernelArgumentError
from .filter_acts import check_matrix

__all__ = ["computeLogregCost", "computeMultiSoftmaxCost", "computeLogregGrad",
           "computeLogregSoftmaxGrad", "computeSoftmaxGrad", "computeEltwiseMaxGrad",
           "computeCrossEntCost", "computeCrossEntGrad", "computeCrossEntSoftmaxGrad"]


def _labels_int(fn, labels, numCases, numOut):
    check_matrix(fn, "labels", labels)
    if labels.size != numCases:
        raise KernelArgumentError("%s: labels has %d elements, expected numCases = %d"
                         % (fn, labels.size, numCases))
    lab = labels.reshape(-1).astype(np.int64)     # int(label) truncates, as in C
    if lab.size and (lab.min() < 0 or lab.max() >= numOut):
        raise KernelArgumentError("%s: labels must lie in [0, %d), got range [%d, %d]"
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


# ----------------------------------------------------------------------------------------
# CHM 2012: the softmax tree of treefc layers (softmaxtree.cu)
#
# A class hierarchy whose nodes are labelled 0..numNodes-1, the leaves (the classes) first.
# Each node owns an offset vector; a node's effective weight vector is the sum of the
# offsets on its path from the root. Matrices here are node-major, (numNodes, numFeatures),
# as the 2012 kernels saw them.
#
# nodeFwdMeta: per depth 0, 1, ...: (labels, parents), two int arrays (the root's parent is
#              ignored), the nodes of that depth.
# nodeBwdMeta: per height 1, 2, ...: (labels, children), an int array and an int matrix
#              (nodes, maxChildren) of child labels padded with -1, in the tree's order.

__all__ += ["softmaxTreeMakeWeights", "softmaxTreeDistributeGradients",
            "softmaxTreeUpdateWeights", "multiSoftmaxCPU"]


def softmaxTreeMakeWeights(offsets, targets, nodeFwdMeta):
    """Effective weights from offsets, one depth at a time (kSoftmaxTreeFwd).

    offsets, targets: (numNodes, numFeatures); targets written in place:
    targets[root] = offsets[root]; targets[n] = targets[parent(n)] + offsets[n].
    """
    fn = "softmaxTreeMakeWeights"
    check_matrix(fn, "offsets", offsets)
    check_matrix(fn, "targets", targets, offsets.shape[0], offsets.shape[1], writeable=True)
    for depth, (labels, parents) in enumerate(nodeFwdMeta):
        if depth == 0:
            targets[labels] = offsets[labels]
        else:
            targets[labels] = targets[parents] + offsets[labels]


def softmaxTreeDistributeGradients(grads, nodeBwdMeta):
    """Each inner node's gradient := the sum of its children's, one height at a time from
    the leaves up (kSoftmaxTreeBwd). The leaves' rows must hold their gradients already.

    grads: (numNodes, numFeatures), written in place. Children are added in the tree's
    order, starting from 0, as the kernel added them.
    """
    fn = "softmaxTreeDistributeGradients"
    check_matrix(fn, "grads", grads, writeable=True)
    for labels, children in nodeBwdMeta:
        acc = np.zeros((len(labels), grads.shape[1]), dtype=np.float32)
        for k in range(children.shape[1]):
            c = children[:, k]
            has = c >= 0
            acc[has] += grads[c[has]]
        grads[labels] = acc


def softmaxTreeUpdateWeights(weights, incs, grads, nodeSizes, epsWBase, mom, wcBase):
    """The tree's weight update (kSoftmaxTreeUpdateWeights), per node n with s = number of
    leaves under n:  inc = mom*inc + (eps/s) * (grad - (wc/s) * w);  w += inc.
    (The 2012 kernel divides wc by s as well as eps, so decay falls as 1/s^2.)

    weights, incs, grads: (numNodes, numFeatures); weights and incs written in place.
    nodeSizes: (numNodes,) leaf counts.
    """
    fn = "softmaxTreeUpdateWeights"
    check_matrix(fn, "weights", weights, writeable=True)
    check_matrix(fn, "incs", incs, weights.shape[0], weights.shape[1], writeable=True)
    check_matrix(fn, "grads", grads, weights.shape[0], weights.shape[1])
    size = np.asarray(nodeSizes, dtype=np.float32).reshape(-1, 1)
    eps = np.float32(epsWBase) / size
    wc = np.float32(wcBase) / size
    inc = np.float32(mom) * incs + eps * (grads - wc * weights)
    incs[...] = inc
    weights += inc


# ----------------------------------------------------------------------------------------
# CHM 2012: the multi-softmax of cost.msm (multisoftmax.cpp, a host routine in 2012 too)
#
# Over the numOut outputs of a case, a set S of setSize distinct outputs has probability
# prod_{j in S} exp(e_j) / Z. The routine gives each output's marginal P(j in S), by a
# backward lattice B(i, s) = log of the sum over size-s subsets of outputs i..N-1, and a
# forward sweep. With the label "fixed" it gives the marginals given that the label is in S.

MSM_INF = float(np.float32(1e35))   # the routine's INF (a float literal, 1e35f)


def _msm_logadd(x, y):
    """log(exp(x) + exp(y)) as 2012 approximated it, in double precision."""
    M, m = np.maximum(x, y), np.minimum(x, y)
    diff = M - m
    with np.errstate(over="ignore"):
        e = np.exp(-diff)
        r = np.where(diff > 15, M, np.where(diff > 5, M + e, M + np.log(1.0 + e)))
    return np.where((x <= -MSM_INF) & (y <= -MSM_INF), -MSM_INF, r)


def multiSoftmaxCPU(elts, probs, fixed, setSize, nofix):
    """Marginals of the size-setSize multi-softmax, for every case at once.

    elts:    (numCases, numOut) energies (2012 passed them with each case's maximum
             subtracted)
    probs:   (numCases, numOut), written in place. nofix: P(j in S). Otherwise, with
             fixed[c] = the label of case c: P(j in S | label in S) - probs (the old
             content, the unconditional marginals), i.e. the gradient of
             log P(label in S) w.r.t. the energies.
    fixed:   (numCases,) labels (truncated to int); ignored when nofix
    The lattices are kept in float32 and combined in float64, as the 2012 Matrix (float)
    and its double temporaries did.
    """
    fn = "multiSoftmaxCPU"
    check_matrix(fn, "elts", elts)
    check_matrix(fn, "probs", probs, elts.shape[0], elts.shape[1], writeable=True)
    numCases, N = elts.shape
    K = int(setSize)
    if not 1 <= K <= N:
        raise KernelArgumentError("%s: setSize must be in [1, %d], got %d" % (fn, N, K))
    fx = (np.full(numCases, -1, dtype=np.int64) if nofix
          else np.asarray(fixed, dtype=np.float32).reshape(-1).astype(np.int64))
    E = elts.astype(np.float64).T                                     # (N, cases)
    NEG = np.float32(-MSM_INF)
    # backward lattice, logB[i, s, case]; entries never written stay at -INF
    logB = np.full((N + 1, K + 1, numCases), NEG, dtype=np.float32)
    logB[N, 0] = 0
    for i in range(N - 1, -1, -1):
        elt = E[i]
        logB[i, 0] = np.where(i <= fx, NEG, np.float32(0))
        s0 = max(1, K - i)
        take = logB[i + 1, s0 - 1:K].astype(np.float64) + elt         # s-1 from below, plus i
        skip = logB[i + 1, s0:K + 1].astype(np.float64)
        logB[i, s0:] = np.where(fx == i, take, _msm_logadd(take, skip)).astype(np.float32)
    logZ = logB[0, K].astype(np.float64)
    # forward sweep over outputs, logF[s, case] = log sum over size-s subsets of 0..i-1
    logF = np.full((K + 1, numCases), NEG, dtype=np.float32)
    logF[0] = 0
    out = np.empty((N, numCases), dtype=np.float64)
    for i in range(1, N + 1):
        elt = E[i - 1]
        here = fx == i - 1
        logy = np.full(numCases, -MSM_INF)
        for s in range(K - 1, -1, -1):
            # (a float + float sum in 2012, widened to double for logadd)
            logy = _msm_logadd(logy, (logF[s] + logB[i, K - 1 - s]).astype(np.float64))
        grow = logF[:K].astype(np.float64) + elt
        keep = logF[1:].astype(np.float64)
        newF = np.where(here, grow, _msm_logadd(grow, keep)).astype(np.float32)
        logF[1:] = newF
        logF[0] = np.where(here, NEG, logF[0])
        out[i - 1] = logy + elt - logZ
    res = np.exp(out).T
    if nofix:
        probs[...] = res
    else:
        probs[...] = res - probs


# ----------------------------------------------------------------------------------------
# CHM 2012: the element-wise operators of cost.crossent2 and cost.rflickr (layer.cuh)

__all__ += ["computeCrossEnt2Cost", "computeCrossEnt2Grad", "computeRobustFlickrCost",
            "computeRobustFlickrGrad"]


def computeCrossEnt2Cost(labels, probs, target):
    """Element-wise (independent outputs) cross-entropy, CrossEntOperator.

    labels, probs, target: (numOut, numCases); target written:
    t * safelog(y) + (1 - t) * safelog(1 - y)  (the layer reports minus its sum)
    """
    fn = "computeCrossEnt2Cost"
    check_matrix(fn, "probs", probs)
    check_matrix(fn, "labels", labels, probs.shape[0], probs.shape[1])
    check_matrix(fn, "target", target, probs.shape[0], probs.shape[1], writeable=True)
    one = np.float32(1)
    target[...] = labels * _safelog(probs) + (one - labels) * _safelog(one - probs)


def computeCrossEnt2Grad(labels, probs, target, add, coeff):
    """CrossEntGradientOperator, the gradient cost.crossent2 sent to a non-logistic input:
    v = coeff * (t / y + (1 - t) / (1 - y)); target = v, or target += v when add.
    (The log-likelihood's gradient is t/y - (1-t)/(1-y): the 2012 operator has the wrong
    sign on its second term, kept here.)
    """
    fn = "computeCrossEnt2Grad"
    check_matrix(fn, "probs", probs)
    check_matrix(fn, "labels", labels, probs.shape[0], probs.shape[1])
    one = np.float32(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.float32(coeff) * (labels / probs + (one - labels) / (one - probs))
    _add_or_store(fn, target, v.astype(np.float32, copy=False), add)


def computeRobustFlickrCost(labels, probs, target):
    """RobustFlickrCostOperator: target = log(1 + (y - t)^2), element-wise.

    labels, probs, target: (numOut, numCases); the layer reports the sum (no minus).
    """
    fn = "computeRobustFlickrCost"
    check_matrix(fn, "probs", probs)
    check_matrix(fn, "labels", labels, probs.shape[0], probs.shape[1])
    check_matrix(fn, "target", target, probs.shape[0], probs.shape[1], writeable=True)
    d = probs - labels
    target[...] = np.log(np.float32(1) + d * d)


def computeRobustFlickrGrad(labels, probs, target, add, coeff):
    """RobustFlickrCostGradientOperator: v = -coeff * 2d / (1 + d^2), d = y - t (minus the
    derivative of the cost); target = v, or target += v when add.
    """
    fn = "computeRobustFlickrGrad"
    check_matrix(fn, "probs", probs)
    check_matrix(fn, "labels", labels, probs.shape[0], probs.shape[1])
    d = probs - labels
    v = np.float32(-coeff) * ((np.float32(2) * d) / (np.float32(1) + d * d))
    _add_or_store(fn, target, v.astype(np.float32, copy=False), add)
