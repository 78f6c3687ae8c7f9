"""The layer graph: fprop, bprop and the weight update over a minibatch, the gradient check
and the multi-view test.

Stands for convnet.cu, worker.cu and pyconvnet.cu: what the 2012 Python code reached
through its C++ module (initModel, startBatch, finishBatch, checkGradients,
startMultiviewTest, startFeatureWriter, syncWithHost). Layers marked gpu=N run on the one
device of this engine.
"""
import contextlib
import math
import random

import numpy as np

from ..backends import KernelArgumentError
from ..layer import CUDA_CONVNET
from .cost import Cost
from .layers import PASS_GC, PASS_TEST, PASS_TRAIN, CostLayer, DataLayer, EngineError, make_layer

GC_REL_ERR_THRESH = 0.02  # a gradient check fails above this relative error


@contextlib.contextmanager
def refusals_named(layer):
    """An operation refusing a layer's sizes (where 2012 stopped at an assert) becomes one
    error naming the layer: the parser lets through some sizes the kernels cannot run."""
    try:
        yield
    except KernelArgumentError as e:
        raise EngineError("Layer '%s': %s" % (layer.name, e)) from None


def topological_order(dicts, names_of_inputs):
    """Layer dicts ordered so that every layer follows its inputs; otherwise in the given
    order (layers.cfg order)."""
    placed, order = set(), []
    pending = list(dicts)
    while pending:
        progressed = False
        for d in list(pending):
            if all(n in placed for n in names_of_inputs(d)):
                order.append(d)
                placed.add(d["name"])
                pending.remove(d)
                progressed = True
        if not progressed:
            raise EngineError("the layers' inputs form a cycle: %s" % ", ".join(d["name"] for d in pending))
    return order


class ConvNet:
    def __init__(self, layers, minibatch_size, backend, dialect=CUDA_CONVNET, seed=None, out=print):
        """layers: what the parser returned (a list, or the AlexNet dict by name)."""
        self.be = backend
        self.dialect = dialect
        self.minibatch_size = minibatch_size
        self.out = out
        self.lr_rng = random.Random(seed)
        if seed is not None:
            backend.seed(seed)
        dicts = list(layers.values()) if isinstance(layers, dict) else list(layers)
        self.dict_names = [d["name"] for d in dicts]

        def input_names(d):
            inputs = d.get("inputs", [])
            return [self.dict_names[i] if isinstance(i, int) else i for i in inputs]

        self.layers = []
        self.layer_by_name = {}
        for d in topological_order(dicts, input_names):
            layer = make_layer(self, d)
            layer.prev = [self.layer_by_name[n] for n in input_names(d)]
            for p in layer.prev:
                p.addNext(layer)
            self.layers.append(layer)
            self.layer_by_name[layer.name] = layer
        for layer in self.layers:
            layer.postInit()
        self.data_layers = [l for l in self.layers if isinstance(l, DataLayer)]
        self.costs = [l for l in self.layers if isinstance(l, CostLayer)]
        self.num_cases = 0
        self.minis_since_update = 0
        self.wupdate_freq = 1

    # -- one minibatch ----------------------------------------------------------------------
    def reset(self):
        for layer in self.layers:
            layer.reset()

    def fprop(self, data, passType):
        """data: the minibatch's matrices, as the data provider's batch lists them."""
        self.reset()
        self.num_cases = data[0].shape[1]
        for layer in self.layers:
            with refusals_named(layer):
                layer.fprop(data if isinstance(layer, DataLayer) else [p.acts for p in layer.prev], passType)

    def bprop(self, passType):
        """From the costs down; a layer runs once every grad-producing layer above it has."""
        for layer in reversed(self.layers):
            if isinstance(layer, CostLayer) or 0 < layer.rcvdBInputs == layer.numGradProducersNext:
                with refusals_named(layer):
                    layer.bprop(passType)
        self.reset()

    def updateWeights(self, progress=0.0):
        for layer in self.layers:
            layer.updateWeights(progress)

    def getCost(self):
        return Cost(self.num_cases, {c.name: c.getCost() for c in self.costs}, {c.name: c.coeff for c in self.costs})

    # -- whole batches (the workers of worker.cu) -----------------------------------------------
    def minibatches(self, data):
        n = data[0].shape[1]
        for start in range(0, n, self.minibatch_size):
            end = min(n, start + self.minibatch_size)
            yield [self._slice(d, start, end) for d in data]

    def _slice(self, d, start, end):
        """Columns [start, end) of a host or device matrix, on the device."""
        if isinstance(d, np.ndarray):
            return self.be.array(d[:, start:end])
        return self.be.slice_cols(d, start, end)

    def train_batch(self, data, progress=0.0, wupdate_freq=1):
        """fprop, bprop and update for each minibatch of a batch; returns its Cost.
        With wupdate_freq=k the weights are updated after every k-th minibatch, the
        gradients of the others adding up (the AlexNet code's --wupdate-freq)."""
        cost = Cost(0)
        self.wupdate_freq = wupdate_freq  # the layers scale their gradients by it
        for mini in self.minibatches(data):
            self.fprop(mini, PASS_TRAIN)
            cost += self.getCost()
            self.bprop(PASS_TRAIN)
            self.minis_since_update += 1
            if self.minis_since_update >= wupdate_freq:
                self.updateWeights(progress)
                self.minis_since_update = 0
        return cost

    def test_batch(self, data):
        cost = Cost(0)
        for mini in self.minibatches(data):
            self.fprop(mini, PASS_TEST)
            cost += self.getCost()
        return cost

    def multiview_test(self, data, num_views, logreg_name=None, return_probs=False):
        """The data hold num_views copies of each case (view v of case k in column v*N + k):
        average the softmax over views, then apply logistic regression (worker.cu).
        cuda-convnet averaged only the logreg layer named by logreg_name; the AlexNet code
        every logreg layer (the name only picked the --test-out probabilities); other costs
        report the last view. Returns the Cost, and with return_probs the averaged
        probabilities of the named (or first) logreg layer as a host (cases, classes) matrix."""
        logregs = [c for c in self.costs if c.type == "cost.logreg"]
        if logreg_name:
            if logreg_name not in self.layer_by_name or self.layer_by_name[logreg_name].type != "cost.logreg":
                raise EngineError("Layer with name '%s' not defined or not of type cost.logreg." % logreg_name)
            named = self.layer_by_name[logreg_name]
            logregs = [named] + ([c for c in logregs if c is not named] if self.dialect != CUDA_CONVNET else [])
        elif not logregs:
            raise EngineError("a multi-view test needs a cost.logreg layer")
        total = data[0].shape[1]
        if total % num_views:
            raise EngineError("the test batch has %d cases, not a multiple of %d views" % (total, num_views))
        n = total // num_views
        be = self.be
        cost = Cost(0)
        probs_out = []
        for start in range(0, n, self.minibatch_size):
            end = min(n, start + self.minibatch_size)
            sums = {}
            for v in range(num_views):
                self.fprop([self._slice(d, v * n + start, v * n + end) for d in data], PASS_TEST)
                for lr in logregs:
                    probs = lr.prev[1].acts
                    if v == 0:
                        sums[lr.name] = self._copy(probs)
                    else:
                        be.add(sums[lr.name], probs)
            for lr in logregs:
                be.scale(sums[lr.name], 1.0 / num_views, sums[lr.name])
                lr.computeCost(lr.prev[0].acts, sums[lr.name])
            if return_probs:
                probs_out.append(be.to_host(sums[logregs[0].name]).T)
            cost += self.getCost()
        if return_probs:
            return cost, np.ascontiguousarray(np.concatenate(probs_out, axis=0))
        return cost, None

    def _copy(self, m):
        c = self.be.empty(*m.shape)
        self.be.copy(m, c)
        return c

    def features(self, data, layer_name):
        """The named layer's outputs over a batch, as a host (cases, features) matrix."""
        layer = self.layer_by_name[layer_name]
        parts = []
        cost = Cost(0)
        for mini in self.minibatches(data):
            self.fprop(mini, PASS_TEST)
            cost += self.getCost()
            parts.append(self.be.to_host(layer.acts).T)
        return np.ascontiguousarray(np.concatenate(parts, axis=0)), cost

    # -- the gradient check (convnet.cu) -------------------------------------------------------
    def checkGradients(self, data):
        """Checks every weight matrix and bias vector by one-sided finite differences on the
        first minibatch, printing the 2012 report; returns (failures, tests)."""
        self.numFailures = self.numTests = 0
        self.gc_data = next(iter(self.minibatches(data)))
        self.fprop(self.gc_data, PASS_GC)
        self.baseErr = self.getCost().getValue()
        self.bprop(PASS_GC)
        # cuda-convnet checked the layers in their order; the AlexNet code walked its
        # std::map<string, Layer*>, in name order (chm:src/convnet.cu:346)
        order = self.layers if self.dialect == CUDA_CONVNET else sorted(self.layers, key=lambda l: l.name)
        for layer in order:
            if hasattr(layer, "checkGradients"):
                layer.checkGradients()
        self.out("------------------------")
        if self.numFailures > 0:
            self.out("%d/%d TESTS FAILED" % (self.numFailures, self.numTests))
        else:
            self.out("ALL %d TESTS PASSED" % self.numTests)
        return self.numFailures, self.numTests

    def checkGradient(self, name, eps, weights):
        be = self.be
        W = be.to_host(weights.W).astype(np.float32)
        numGrad = np.zeros(W.shape, dtype=np.float32)
        numCases = self.gc_data[0].shape[1]
        for i in range(W.shape[0]):
            for j in range(W.shape[1]):
                v = W[i, j]
                W[i, j] = v + np.float32(eps)
                be.copy(be.array(W), weights.W)
                W[i, j] = v
                self.fprop(self.gc_data, PASS_GC)
                err = self.getCost().getValue()
                numGrad[i, j] = (err - self.baseErr) / (numCases * eps)
                if not np.isfinite(numGrad[i, j]):
                    be.copy(be.array(W), weights.W)
                    raise EngineError("Numerical computation produced nan or inf when checking '%s': %s. Consider "
                                      "reducing the sizes of the weights or finite difference steps." % (name, numGrad[i, j]))
        be.copy(be.array(W), weights.W)
        grad = be.to_host(weights.Grad).reshape(W.shape).astype(np.float32) * np.float32(-1.0 / numCases)
        analNorm = float(np.linalg.norm(grad))
        numNorm = float(np.linalg.norm(numGrad))
        diffNorm = float(np.linalg.norm(numGrad - grad))
        with np.errstate(divide="ignore", invalid="ignore"):
            relErr = float(np.float32(diffNorm) / np.float32(analNorm))  # 2012's float relErr
        # as 2012: 0/0 (no gradient at all, both ways) is NaN, which its >= test passed
        fail = relErr >= GC_REL_ERR_THRESH
        out = self.out
        out("========================")
        out("(%s) %s GRADIENT CHECK" % ("****FAIL****" if fail else "PASS", name))
        out("========================")
        out("Analytic:")
        _print_matrix(out, grad)
        out("Numeric:")
        _print_matrix(out, numGrad)
        out("Analytic norm: %e" % analNorm)
        out("Numeric norm:  %e" % numNorm)
        # x86's 0/0 is the NaN with the sign bit set, which printf wrote "-nan"
        out("Relative error: %s" % ("-nan" if math.isnan(relErr) else "%e" % relErr))
        self.numTests += 1
        self.numFailures += fail
        return fail

    # -- host copies ------------------------------------------------------------------------------
    def copyToCPU(self):
        """Writes the weights and increments back into the layer dicts (before a save)."""
        for layer in self.layers:
            layer.copyToCPU()

    def copyToGPU(self):
        for layer in self.layers:
            layer.copyToGPU()


def _print_matrix(out, m, rows=6, cols=4):
    """The top-left corner, as 2012's Matrix::print(6, 4) showed it."""
    for i in range(min(rows, m.shape[0])):
        out("".join("%.15f " % m[i, j] for j in range(min(cols, m.shape[1]))))
