"""One class per 2012 layer type: fpropActs, bpropActs and, for weight layers,
bpropWeights / bpropBiases, written once for any backend.

Stands for layer.cu (cuda-convnet r561 and the AlexNet 2012 code). Every layer holds its
output `acts` (features, cases) and, while back-propagating, `actsGrad`: the negative
gradient of the cost with respect to its output, as 2012 propagated it.
"""
import numpy as np

from ..layer import ALEXNET
from .lr import LearningRateSchedule
from .neurons import Neuron
from .weights import Weights

PASS_TRAIN, PASS_TEST, PASS_GC = "train", "test", "gc"


class EngineError(Exception):
    """A net the engine cannot run (e.g. back-propagation through a resize layer)."""


class Layer:
    """Base: collects inputs, allocates outputs, passes gradients to the layers below."""

    def __init__(self, net, dic):
        self.net, self.be, self.dic = net, net.be, dic
        self.name, self.type = dic["name"], dic["type"]
        self.chm = net.dialect == ALEXNET
        self.outputs = dic["outputs"]
        self._gradConsumer = bool(dic.get("gradConsumer", False))
        self._foundGradConsumers = False
        self.prev, self.next = [], []
        self.inputs = []
        self.acts = None
        self.actsGrad = None
        self.rcvdBInputs = 0
        self.numGradProducersNext = 0

    # -- graph ----------------------------------------------------------------------------
    def addNext(self, layer):
        self.next.append(layer)

    def postInit(self):
        """How many layers above must send a gradient before this one back-propagates.
        cuda-convnet counted every grad-producing layer above (so a layer under a branch
        that ends in a cost with coeff=0 waited for a gradient that never came, and never
        back-propagated); the AlexNet code counts only those that lead to a cost that
        produces gradient."""
        if self.chm:
            self.numGradProducersNext = sum(l.hasGradProducerNext(self.name) for l in self.next)
        else:
            self.numGradProducersNext = sum(l.isGradProducer() for l in self.next)

    def hasGradProducerNext(self, name):
        """Does a gradient reach this layer from above (AlexNet code)? (Remembered: the
        2012 recursion walked every path above, once per layer below.)"""
        if getattr(self, "_hasGradProducerNext", None) is None:
            above = len(self.next) == 0
            for l in self.next:
                above = l.hasGradProducerNext(self.name) or above
            self._hasGradProducerNext = above and self.isGradProducer()
        return self._hasGradProducerNext

    def isGradConsumer(self):
        """Does this layer, or one below it, need the gradient (for a weight update)?"""
        if not self._foundGradConsumers:
            self._gradConsumer = self._gradConsumer or any(p.isGradConsumer() for p in self.prev)
            self._foundGradConsumers = True
        return self._gradConsumer

    def isGradProducer(self):
        return True

    def reset(self):
        self.rcvdBInputs = 0

    # -- passes ---------------------------------------------------------------------------
    def numCases(self):
        return self.inputs[0].shape[1]

    def alloc(self, attr, rows, cols):
        """A persistent (rows, cols) work matrix, re-allocated only when its shape changes."""
        m = getattr(self, attr, None)
        if m is None or m.shape != (rows, cols):
            m = self.be.empty(rows, cols)
            setattr(self, attr, m)
        return m

    def fprop(self, inputs, passType):
        self.inputs = inputs
        self.acts = self.alloc("_acts", self.outputs, self.numCases())
        for i in range(len(inputs)):
            self.fpropActs(i, 0.0 if i == 0 else 1.0, passType)

    def prevGrad(self, i, scaleTargets):
        """The gradient matrix of input i, to be written with scaleTargets."""
        p = self.prev[i]
        if p.actsGrad is None or p.actsGrad.shape != p.acts.shape:
            p.actsGrad = self.be.empty(*p.acts.shape)
            if scaleTargets != 0:
                raise EngineError("layer '%s': accumulating into an unset gradient" % p.name)
        return p.actsGrad

    def bprop(self, passType):
        v = self.actsGrad
        self.bpropCommon(v, passType)
        if self.isGradProducer():
            for i, p in enumerate(self.prev):
                if p.isGradConsumer():
                    self.bpropActs(v, i, 1.0 if p.rcvdBInputs > 0 else 0.0, passType)
                    p.rcvdBInputs += 1

    def bpropCommon(self, v, passType):
        pass

    def fpropActs(self, inpIdx, scaleTargets, passType):
        raise NotImplementedError

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        raise EngineError("Layer '%s' of type '%s' cannot propagate a gradient" % (self.name, self.type))

    # weight layers override these
    def updateWeights(self, progress):
        pass

    def copyToCPU(self):
        pass

    def copyToGPU(self):
        pass


class DataLayer(Layer):
    def __init__(self, net, dic):
        super().__init__(net, dic)
        self.dataIdx = dic["dataIdx"]

    def fprop(self, inputs, passType):  # inputs: the minibatch's data matrices
        # 2012 read past the matrix (or crashed in a kernel) when the data did not fit the net;
        # a negative dataIdx would count from the end here (the labels fed in as data)
        if not 0 <= self.dataIdx < len(inputs):
            raise EngineError("data layer '%s' wants data matrix %d, but the data provider gives %d"
                              % (self.name, self.dataIdx, len(inputs)))
        rows = inputs[self.dataIdx].shape[0]
        if rows != self.dic["outputs"]:
            raise EngineError("Data layer '%s' produces %d outputs, but matrix %d of the data has %d rows "
                              "(data made for another net?)" % (self.name, self.dic["outputs"], self.dataIdx, rows))
        self.acts = inputs[self.dataIdx]

    def isGradProducer(self):
        return False


class NeuronLayer(Layer):
    def __init__(self, net, dic):
        super().__init__(net, dic)
        self.neuron = Neuron(self.be, dic["neuron"], net.dialect)

    def fpropActs(self, inpIdx, scaleTargets, passType):
        self.neuron.activate(self.inputs[0], self.acts)

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        nxt = self.next
        if (self.chm and self.neuron.kind == "logistic" and len(nxt) == 1 and nxt[0].type == "cost.crossent2"):
            # logistic units under cross-entropy: the whole gradient at once, coeff*(t - y)
            labels, coeff = nxt[0].prev[0].acts, nxt[0].coeff
            target = self.prevGrad(0, scaleTargets)
            if scaleTargets == 0:
                self.be.scale(labels, coeff, target)
                self.be.add(target, self.acts, 1.0, -coeff)
            else:
                self.be.add(target, labels, 1.0, coeff)
                self.be.add(target, self.acts, 1.0, -coeff)
            return
        self.neuron.computeInputGrad(v, self.prevGrad(0, scaleTargets), scaleTargets > 0)


# -- layers with weights -------------------------------------------------------------------
class WeightLayer(Layer):
    wStep, bStep = 0.001, 0.002  # finite-difference steps of the gradient check (cc)
    chm_steps = (0.02, 0.05)

    def __init__(self, net, dic):
        super().__init__(net, dic)
        if self.chm:
            self.wStep, self.bStep = self.chm_steps
        be = self.be
        accumulate = self.chm or self.accumulates_in_cc
        self.weights = []
        for i in range(len(dic["weights"])):
            src_layer, src_idx = self.weight_source(i)
            common = dict(sched=dic.get("schedW"), lr_rng=net.lr_rng)
            if src_layer is not None:
                src = (self if src_layer is self else src_layer).weights[src_idx]
                self.weights.append(Weights(be, None, None, dic["epsW"][i], src=src, accumulate=accumulate, **common))
            else:
                wball = dic["wballNormed"][i] if "wballNormed" in dic else 0.0
                self.weights.append(Weights(be, dic["weights"][i], dic["weightsInc"][i], dic["epsW"][i], dic["momW"][i],
                                            dic["wc"][i], wball, superEps=dic.get("superEps", 0.0),
                                            accumulate=accumulate, **common))
        self.biases = Weights(be, dic["biases"], dic["biasesInc"], dic["epsB"], dic["momB"], 0.0,
                              sched=dic.get("schedB"), superEps=dic.get("superEps", 0.0), lr_rng=net.lr_rng)

    accumulates_in_cc = True

    def weight_source(self, i):
        """(layer, matrix index) this layer's matrix i is shared from, or (None, -1)."""
        dic = self.dic
        if "weightSourceLayers" in dic:
            name = dic["weightSourceLayers"][i]
            if name == "":
                return None, -1
            return (self if name == self.name else self.net.layer_by_name[name]), dic["weightSourceMatrixIndices"][i]
        idx = dic["weightSourceLayerIndices"][i]
        if idx < 0:
            return None, -1
        name = self.net.dict_names[idx] if idx < len(self.net.dict_names) else self.name
        return (self if name == self.name else self.net.layer_by_name[name]), dic["weightSourceMatrixIndices"][i]

    def gradScale(self, passType):
        """1 in a gradient check, 1/numCases in training (eps is applied at the update).
        With the AlexNet code's --wupdate-freq=k > 1, 1/(k * minibatch size): the k
        minibatches' gradients add up to one average (net.wupdate_freq, when set)."""
        if passType == PASS_GC:
            return 1.0
        freq = self.net.wupdate_freq if self.chm else 1
        return 1.0 / (self.numCases() if freq == 1 else freq * self.net.minibatch_size)

    def bpropCommon(self, v, passType):
        if self.biases.getBaseRate() > 0:
            self.bpropBiases(v, passType)
            self.biases.incNumUpdates()
        for i, w in enumerate(self.weights):
            if w.getBaseRate() > 0:
                self.bpropWeights(v, i, passType)
                w.incNumUpdates()
        self._gradComputed = True

    _gradComputed = False

    def updateWeights(self, progress):
        # The AlexNet code updates only a layer whose gradient was computed since its last
        # update; cuda-convnet updated every layer.
        if self.chm and not self._gradComputed:
            return
        for w in self.weights:
            w.update(progress)
        self.biases.update(progress)
        if self.chm:
            self.constrainWeights()
        self._gradComputed = False

    def constrainWeights(self):
        pass

    def copyToCPU(self):
        for w in self.weights:
            w.copyToCPU()
        self.biases.copyToCPU()

    def copyToGPU(self):
        for w in self.weights:
            w.copyToGPU()
        self.biases.copyToGPU()

    def checkGradients(self):
        for i, w in enumerate(self.weights):
            self.net.checkGradient("%s weights[%d]" % (self.name, i), self.wStep, w)
        self.net.checkGradient("%s biases" % self.name, self.bStep, self.biases)

    def _constrain_ball(self, i, per_module=None):
        """wball: scale each filter (column) whose norm exceeds wball back onto the ball."""
        w = self.weights[i]
        if not (w.wball > 0 and w.isOwner() and w.getBaseRate() > 0):
            return
        W = self.be.to_host(w.W)
        view = W if per_module is None else W.reshape(per_module, -1, W.shape[1])
        norm2 = (view.astype(np.float64) ** 2).sum(axis=-2, keepdims=True)
        scale = np.where(norm2 > w.wball ** 2, w.wball / np.sqrt(norm2), 1.0).astype(np.float32)
        self.be.copy(self.be.array((view * scale).reshape(W.shape)), w.W)


class FCLayer(WeightLayer):
    wStep, bStep = 0.1, 0.01
    chm_steps = (0.01, 0.01)
    accumulates_in_cc = False  # cc's fc wrote weightsInc directly: see Weights

    def fpropActs(self, inpIdx, scaleTargets, passType):
        be = self.be
        be.addProduct(self.acts, self.weights[inpIdx].W, self.inputs[inpIdx], scaleTargets, 1.0, transA=True)
        if scaleTargets == 0:
            be.addVector(self.acts, be.reshape(self.biases.W, self.outputs, 1))

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        self.be.addProduct(self.prevGrad(inpIdx, scaleTargets), self.weights[inpIdx].W, v, scaleTargets, 1.0)

    def bpropBiases(self, v, passType):
        b = self.biases
        self.be.addSum(self.be.reshape(b.Grad, self.outputs, 1), v, 1, b.gradScaleTarget(), self.gradScale(passType))

    def bpropWeights(self, v, inpIdx, passType):
        w = self.weights[inpIdx]
        self.be.addProduct(w.Grad, self.inputs[inpIdx], v, w.gradScaleTarget(), self.gradScale(passType), transB=True)

    def constrainWeights(self):
        for i in range(len(self.weights)):
            self._constrain_ball(i)


class SoftmaxTree:
    """The class hierarchy of a treefc layer (softmaxtree.cu): node labels 0..numNodes-1,
    the leaves (the classes) first; `tree[label]` lists a node's children. Built from
    `rootLabel` down, as TreeFCLayer::makeTree did; then the per-depth and per-height node
    lists the kernels walk (SoftmaxTree::finalize)."""

    def __init__(self, tree, rootLabel):
        self.root = rootLabel
        depth, height, size = {rootLabel: 0}, {}, {}
        parent = {rootLabel: rootLabel}
        order, stack = [], [(rootLabel, False)]
        while stack:  # post-order: children before their parent
            node, done = stack.pop()
            if done:
                kids = list(tree[node])
                height[node] = 1 + max(height[c] for c in kids) if kids else 0
                size[node] = sum(size[c] for c in kids) if kids else 1
                order.append(node)
                continue
            stack.append((node, True))
            for c in reversed(list(tree[node])):
                depth[c], parent[c] = depth[node] + 1, node
                stack.append((c, False))
        self.numNodes = len(order)
        leaves = sorted(n for n in order if not list(tree[n]))
        self.numLeaves = len(leaves)
        if sorted(order) != list(range(self.numNodes)) or leaves != list(range(self.numLeaves)):
            raise EngineError("a treefc tree must label its %d leaves 0..%d and its other nodes %d..%d"
                              % (self.numLeaves, self.numLeaves - 1, self.numLeaves, self.numNodes - 1))
        self.nodeSizes = np.array([size[n] for n in range(self.numNodes)], dtype=np.float32)
        self.nodeFwdMeta = []
        for d in range(max(depth.values()) + 1):
            nodes = [n for n in order if depth[n] == d]
            self.nodeFwdMeta.append((np.array(nodes, dtype=np.int64),
                                     np.array([parent[n] for n in nodes], dtype=np.int64)))
        self.nodeBwdMeta = []
        for h in range(1, height[rootLabel] + 1):
            nodes = [n for n in order if height[n] == h]
            width = max(len(list(tree[n])) for n in nodes)
            kids = np.full((len(nodes), width), -1, dtype=np.int64)
            for r, n in enumerate(nodes):
                kids[r, :len(list(tree[n]))] = list(tree[n])
            self.nodeBwdMeta.append((np.array(nodes, dtype=np.int64), kids))


class TreeWeights:
    """A treefc layer's weights (weights.cu's TreeWeights): one offset vector per tree node
    (`allW`, node-major: (numNodes, numInputs)); the fc weights are the leaves' effective
    weights, the sums of the offsets from the root down (`W`, the first numLeaves rows of
    `effW`). Gradients come in for the leaves (`Grad`, rows of `allGrad`) and are summed
    up the tree before the update, which gives node n the learning rate eps/size(n)."""

    wball = 0.0

    def __init__(self, be, tree, host_w, host_inc, eps, mom, wc):
        self.be, self.tree = be, tree
        self.host_w, self.host_inc = host_w, host_inc
        self.lrs = LearningRateSchedule(eps)  # no schedules for treefc in 2012
        self.mom, self.wc = float(mom), float(wc)
        if host_w.shape[1] != tree.numNodes:
            raise EngineError("treefc: %d weight columns for a tree of %d nodes" % (host_w.shape[1], tree.numNodes))
        self.allW = be.array(host_w.T)
        self.allInc = be.array(host_inc.T)
        self.allGrad = be.zeros(*self.allW.shape)
        self.effW = be.empty(*self.allW.shape)
        self._numUpdates = 0
        self.makeWeights()

    @property
    def W(self):
        return self.effW[:self.tree.numLeaves]

    @property
    def Grad(self):
        return self.allGrad[:self.tree.numLeaves]

    def makeWeights(self):
        self.be.softmaxTreeMakeWeights(self.allW, self.effW, self.tree.nodeFwdMeta)

    def distributeGradients(self):
        self.be.softmaxTreeDistributeGradients(self.allGrad, self.tree.nodeBwdMeta)

    def isOwner(self):
        return True

    def getBaseRate(self):
        return self.lrs.getBaseRate()

    def getEps(self, progress=0.0):
        return self.lrs.getRate(progress)

    def getNumUpdates(self):
        return self._numUpdates

    def incNumUpdates(self):
        self._numUpdates += 1
        return self._numUpdates - 1

    def gradScaleTarget(self):
        return 1.0 if self._numUpdates > 0 else 0.0

    def update(self, progress=0.0):
        if self.getBaseRate() <= 0:
            return
        self.distributeGradients()
        self.be.softmaxTreeUpdateWeights(self.allW, self.allInc, self.allGrad, self.tree.nodeSizes,
                                         self.getEps(progress), self.mom, self.wc)
        self.makeWeights()
        self._numUpdates = 0

    def copyToCPU(self):
        self.host_w[...] = self.be.to_host(self.allW).T
        self.host_inc[...] = self.be.to_host(self.allInc).T

    def copyToGPU(self):
        self.be.copy(self.be.array(self.host_w.T), self.allW)
        self.be.copy(self.be.array(self.host_inc.T), self.allInc)
        self.makeWeights()


class _CheckedMatrix:
    """What the gradient check perturbs and compares (2012's DummyWeights): W and Grad."""

    def __init__(self, W, Grad):
        self.W, self.Grad = W, Grad


class TreeFCLayer(FCLayer):
    """treefc (AlexNet code): an fc layer whose weight vector for class c is the sum of
    offset vectors along the path from the root of a class hierarchy to c. One input; no
    weight sharing, schedules or wball; the gradient check perturbs every node's offsets."""

    def __init__(self, net, dic):
        Layer.__init__(self, net, dic)  # not WeightLayer's: the weights here are a tree
        if not self.chm:
            raise EngineError("Layer '%s': treefc layers exist only in the AlexNet code (use the alexnet dialect)"
                              % self.name)
        self.wStep, self.bStep = 0.001, 0.01
        self.tree = SoftmaxTree(dic["tree"], dic["rootLabel"])
        if self.tree.numLeaves != self.outputs:
            raise EngineError("Layer '%s': the tree has %d leaves, the layer %d outputs"
                              % (self.name, self.tree.numLeaves, self.outputs))
        self.tw = TreeWeights(self.be, self.tree, dic["weights"][0], dic["weightsInc"][0], dic["epsW"][0],
                              dic["momW"][0], dic["wc"][0])
        self.weights = [self.tw]
        self.biases = Weights(self.be, dic["biases"], dic["biasesInc"], dic["epsB"], dic["momB"], 0.0,
                              lr_rng=net.lr_rng)

    def fpropActs(self, inpIdx, scaleTargets, passType):
        be = self.be
        if passType == PASS_GC:  # the check perturbs the offsets
            self.tw.makeWeights()
        be.addProduct(self.acts, self.tw.W, self.inputs[inpIdx], scaleTargets, 1.0)
        if scaleTargets == 0:
            be.addVector(self.acts, be.reshape(self.biases.W, self.outputs, 1))

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        self.be.addProduct(self.prevGrad(inpIdx, scaleTargets), self.tw.W, v, scaleTargets, 1.0, transA=True)
        # 2012 summed the leaves' gradients up the tree here only, so a check of a treefc
        # layer whose input needs no gradient compares stale inner-node gradients.
        if passType == PASS_GC:
            self.tw.distributeGradients()

    def bpropWeights(self, v, inpIdx, passType):
        w = self.tw
        self.be.addProduct(w.Grad, v, self.inputs[inpIdx], w.gradScaleTarget(), self.gradScale(passType), transB=True)

    def constrainWeights(self):
        pass

    def checkGradients(self):
        self.net.checkGradient("%s weights" % self.name, self.wStep, _CheckedMatrix(self.tw.allW, self.tw.allGrad))
        self.net.checkGradient("%s biases" % self.name, self.bStep, self.biases)


class LocalLayer(WeightLayer):
    """conv and local: the geometry both share, and sparse random connectivity (randSparse:
    filter group g sees the colours filterConns[g*filterChannels:(g+1)*filterChannels])."""

    def __init__(self, net, dic):
        super().__init__(net, dic)
        self.padding, self.stride = dic["padding"], dic["stride"]
        self.filterSize, self.channels = dic["filterSize"], dic["channels"]
        self.imgSize, self.groups = dic["imgSize"], dic["groups"]
        self.filterChannels, self.filterPixels = dic["filterChannels"], dic["filterPixels"]
        self.numFilters, self.modulesX, self.modules = dic["filters"], dic["modulesX"], dic["modules"]
        self.randSparse, self.overSample = dic["randSparse"], dic["overSample"]
        self.filterConns = [self.be.int_array(c) if rs else None for c, rs in zip(dic["filterConns"], self.randSparse)]

    def geometry(self, i):
        """The kernels' arguments after the module count: padding start, stride, colours,
        (filter colours and the colour list for sparse inputs,) groups."""
        if self.randSparse[i]:
            return (self.padding[i], self.stride[i], self.channels[i], self.filterChannels[i], self.groups[i])
        return (self.padding[i], self.stride[i], self.channels[i], self.groups[i])

    def sparse(self, i, name):
        """The dense or the sparse variant of a kernel, with the colour list bound."""
        if not self.randSparse[i]:
            return getattr(self.be, name)
        kernel, conns = getattr(self.be, name + "Sparse"), self.filterConns[i]
        return lambda a, b, c, *rest: kernel(a, b, c, conns, *rest)

    def imgActs(self, name, v, inpIdx, scaleTargets):
        """bpropActs through a (sparse) imgActs kernel. A sparse input seen overSample times
        gets overSample gradient blocks, summed here."""
        img = self.imgSize[inpIdx]
        args = (img, img, self.modulesX) + self.geometry(inpIdx)
        target = self.prevGrad(inpIdx, scaleTargets)
        k = self.overSample[inpIdx]
        if self.randSparse[inpIdx] and k > 1:
            tmp = self.alloc("_actGradTmp", k * target.shape[0], target.shape[1])
            self.sparse(inpIdx, name)(v, self.weights[inpIdx].W, tmp, *args, 0.0, 1.0)
            self.be.addSum(self.be.reshape(target, 1, target.size),
                           self.be.reshape(tmp, k, target.size), 0, scaleTargets, 1.0)
        else:
            self.sparse(inpIdx, name)(v, self.weights[inpIdx].W, target, *args, scaleTargets, 1.0)


class ConvLayer(LocalLayer):
    def __init__(self, net, dic):
        super().__init__(net, dic)
        self.partialSum, self.sharedBiases = dic["partialSum"], dic["sharedBiases"]

    def fpropActs(self, inpIdx, scaleTargets, passType):
        be = self.be
        self.sparse(inpIdx, "convFilterActs")(self.inputs[inpIdx], self.weights[inpIdx].W, self.acts,
                                              self.imgSize[inpIdx], self.modulesX, self.modulesX,
                                              *self.geometry(inpIdx), scaleTargets, 1.0)
        if scaleTargets == 0:
            n = self.numCases()
            if self.sharedBiases:
                be.addVector(be.reshape(self.acts, self.numFilters, self.modules * n), self.biases.W)
            else:
                be.addVector(self.acts, self.biases.W)

    def bpropBiases(self, v, passType):
        be, b = self.be, self.biases
        n = v.shape[1]
        src = be.reshape(v, self.numFilters, self.modules * n) if self.sharedBiases else v
        be.addSum(b.Grad, src, 1, b.gradScaleTarget(), self.gradScale(passType))

    def twoStepWeightGrad(self, inpIdx):
        """Whether partialSum splits this input's filter gradient, as in 2012. partialSum
        only spreads the 2012 kernel's work over more blocks; the CUDA engine's newer conv
        kernels (--conv-kernels other than 2012) spread it themselves, so they take the
        whole sum at once and skip the partial sums' buffer and their addition. (Sparse
        inputs always run the 2012 kernels.)"""
        newer = getattr(self.be, "conv_kernels", lambda: "2012")() != "2012"
        return self.partialSum > 0 and (self.randSparse[inpIdx] or not newer)

    def bpropWeights(self, v, inpIdx, passType):
        be, w = self.be, self.weights[inpIdx]
        kernel = self.sparse(inpIdx, "convWeightActs")
        args = (self.imgSize[inpIdx], self.modulesX, self.modulesX, self.filterSize[inpIdx]) + self.geometry(inpIdx)
        rows = self.filterChannels[inpIdx] * self.filterPixels[inpIdx]
        if self.twoStepWeightGrad(inpIdx):
            # per-group partial sums first, then their sum: 2012's two steps
            sums = self.modules // self.partialSum
            tmp = self.alloc("_weightGradTmp", sums * rows, self.numFilters)
            kernel(self.inputs[inpIdx], v, tmp, *args, self.partialSum, 0.0, self.gradScale(passType))
            be.addSum(be.reshape(w.Grad, 1, rows * self.numFilters), be.reshape(tmp, sums, rows * self.numFilters),
                      0, w.gradScaleTarget(), 1.0)
        else:
            kernel(self.inputs[inpIdx], v, w.Grad, *args, 0, w.gradScaleTarget(), self.gradScale(passType))

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        self.imgActs("convImgActs", v, inpIdx, scaleTargets)

    def constrainWeights(self):
        zeros = [0.0] * len(self.weights)
        for i, w in enumerate(self.weights):
            lo, hi = self.dic.get("wcNormMin", zeros)[i], self.dic.get("wcNormMax", zeros)[i]
            if hi > 0 and w.isOwner() and w.getBaseRate() > 0:
                # keep each zero-mean filter's RMS within [wcNormMin, wcNormMax]
                W = self.be.to_host(w.W)
                fz = W.shape[0]
                rms = np.sqrt(((W - W.sum(0, keepdims=True) / fz) ** 2).sum(0, keepdims=True)) / fz
                with np.errstate(divide="ignore"):
                    scale = np.where(rms < lo, lo / rms, np.where(rms > hi, hi / rms, 1.0)).astype(np.float32)
                self.be.copy(self.be.array(W * scale), w.W)
            self._constrain_ball(i)


class LocalUnsharedLayer(LocalLayer):
    accumulates_in_cc = False  # like fc, cc's local layer wrote weightsInc directly

    def fpropActs(self, inpIdx, scaleTargets, passType):
        self.sparse(inpIdx, "localFilterActs")(self.inputs[inpIdx], self.weights[inpIdx].W, self.acts,
                                               self.imgSize[inpIdx], self.modulesX, self.modulesX,
                                               *self.geometry(inpIdx), scaleTargets, 1.0)
        if scaleTargets == 0:
            self.be.addVector(self.acts, self.biases.W)

    def bpropBiases(self, v, passType):
        b = self.biases
        self.be.addSum(b.Grad, v, 1, b.gradScaleTarget(), self.gradScale(passType))

    def bpropWeights(self, v, inpIdx, passType):
        w = self.weights[inpIdx]
        args = (self.imgSize[inpIdx], self.modulesX, self.modulesX, self.filterSize[inpIdx]) + self.geometry(inpIdx)
        self.sparse(inpIdx, "localWeightActs")(self.inputs[inpIdx], v, w.Grad, *args,
                                               w.gradScaleTarget(), self.gradScale(passType))

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        self.imgActs("localImgActs", v, inpIdx, scaleTargets)

    def constrainWeights(self):
        for i in range(len(self.weights)):
            self._constrain_ball(i, per_module=self.modules)


# -- layers without weights ------------------------------------------------------------------
class SoftmaxLayer(Layer):
    def __init__(self, net, dic):
        super().__init__(net, dic)
        self.doLogregGrad = True

    def fpropActs(self, inpIdx, scaleTargets, passType):
        self.be.softmax(self.inputs[0], self.acts)

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        target = self.prevGrad(0, scaleTargets)
        nxt = self.next
        if self.doLogregGrad and len(nxt) == 1 and nxt[0].type == "cost.logreg":
            # softmax + logistic regression in one step, for numerical stability
            self.be.computeLogregSoftmaxGrad(nxt[0].prev[0].acts, self.acts, target, scaleTargets == 1, nxt[0].coeff)
        else:
            self.be.computeSoftmaxGrad(self.acts, v, target, scaleTargets == 1)


class ConcatenationLayer(Layer):
    def __init__(self, net, dic):
        super().__init__(net, dic)
        self.copyOffsets = list(dic["copyOffsets"]) + [self.outputs]

    def fpropActs(self, inpIdx, scaleTargets, passType):
        lo, hi = self.copyOffsets[inpIdx], self.copyOffsets[inpIdx + 1]
        self.be.copy(self.inputs[inpIdx], self.acts[lo:hi])

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        lo, hi = self.copyOffsets[inpIdx], self.copyOffsets[inpIdx + 1]
        self.be.add(self.prevGrad(inpIdx, scaleTargets), v[lo:hi], scaleTargets, 1.0)


class EltwiseSumLayer(Layer):
    def __init__(self, net, dic):
        super().__init__(net, dic)
        self.coeffs = dic["coeffs"]

    def fpropActs(self, inpIdx, scaleTargets, passType):
        if scaleTargets == 0:
            self.be.scale(self.inputs[inpIdx], self.coeffs[inpIdx], self.acts)
        else:
            self.be.add(self.acts, self.inputs[inpIdx], 1.0, self.coeffs[inpIdx])

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        target = self.prevGrad(inpIdx, scaleTargets)
        if scaleTargets == 0:
            self.be.scale(v, self.coeffs[inpIdx], target)
        else:
            self.be.add(target, v, scaleTargets, self.coeffs[inpIdx])


class EltwiseMaxLayer(Layer):
    def fpropActs(self, inpIdx, scaleTargets, passType):
        if inpIdx == 1:
            self.be.maximum(self.inputs[1], self.inputs[0], self.acts)
        elif inpIdx > 1:
            self.be.maximum(self.acts, self.inputs[inpIdx], self.acts)

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        self.be.computeEltwiseMaxGrad(v, self.inputs[inpIdx], self.acts, self.prevGrad(inpIdx, scaleTargets),
                                      scaleTargets != 0)


class HiddenSexLayer(Layer):
    """'hs' (dropout, 2012): in training keep each unit with probability `keep`; at test
    time (and in gradient checks) multiply by `keep`."""

    def __init__(self, net, dic):
        super().__init__(net, dic)
        self.enable, self.keep = dic["enable"], dic["keep"]
        self.mask = None

    def fpropActs(self, inpIdx, scaleTargets, passType):
        if self.enable and passType == PASS_TRAIN:
            self.mask = self.be.uniform_mask(self.inputs[0].shape, self.keep)
            self.be.eltwiseMult(self.inputs[0], self.mask, self.acts)
        else:
            self.be.scale(self.inputs[0], self.keep, self.acts)

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        be, target = self.be, self.prevGrad(inpIdx, scaleTargets)
        if self.enable and passType == PASS_TRAIN:
            if scaleTargets != 0:
                tmp = self.alloc("_tmp", *v.shape)
                be.eltwiseMult(v, self.mask, tmp)
                be.add(target, tmp)
            else:
                be.eltwiseMult(v, self.mask, target)
        elif scaleTargets != 0:
            be.add(target, v, 1.0, self.keep)
        else:
            be.scale(v, self.keep, target)


class PoolLayer(Layer):
    def __init__(self, net, dic):
        super().__init__(net, dic)
        for k in ("channels", "sizeX", "start", "stride", "outputsX", "imgSize", "pool"):
            setattr(self, k, dic[k])


class AvgPoolLayer(PoolLayer):
    def fpropActs(self, inpIdx, scaleTargets, passType):
        self.be.convLocalPool(self.inputs[0], self.acts, self.channels, self.sizeX, self.start, self.stride,
                              self.outputsX, "avg")

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        self.be.convLocalAvgUndo(v, self.prevGrad(0, scaleTargets), self.sizeX, self.start, self.stride,
                                 self.outputsX, self.imgSize, scaleTargets, 1.0)


class MaxPoolLayer(PoolLayer):
    """'max', and the AlexNet code's 'maxabs' (the value of largest magnitude)."""

    def fpropActs(self, inpIdx, scaleTargets, passType):
        self.be.convLocalPool(self.inputs[0], self.acts, self.channels, self.sizeX, self.start, self.stride,
                              self.outputsX, "maxabs" if self.pool == "maxabs" else "max")

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        self.be.convLocalMaxUndo(self.inputs[0], v, self.acts, self.prevGrad(0, scaleTargets), self.sizeX,
                                 self.start, self.stride, self.outputsX, scaleTargets, 1.0)


class RandomPoolLayer(PoolLayer):
    """pool=rand (AlexNet code): each output a randomly drawn pixel of its window, in every
    pass (gradient checks included), or the maximum with doMax; back-propagated as max
    pooling is."""

    def __init__(self, net, dic):
        super().__init__(net, dic)
        self.doMax = bool(dic.get("doMax", False))
        net.out("domax: %d" % self.doMax)

    def fpropActs(self, inpIdx, scaleTargets, passType):
        if self.doMax:
            self.be.convLocalPool(self.inputs[0], self.acts, self.channels, self.sizeX, self.start, self.stride,
                                  self.outputsX, "max")
        else:
            self.be.convLocalRandomPool(self.inputs[0], self.acts, self.channels, self.sizeX, self.start,
                                        self.stride, self.outputsX)

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        self.be.convLocalMaxUndo(self.inputs[0], v, self.acts, self.prevGrad(0, scaleTargets), self.sizeX,
                                 self.start, self.stride, self.outputsX, scaleTargets, 1.0)


class NailbedLayer(Layer):
    def fpropActs(self, inpIdx, scaleTargets, passType):
        d = self.dic
        self.be.convBedOfNails(self.inputs[0], self.acts, d["channels"], d["imgSize"], d["start"], d["stride"], 0.0, 1.0)

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        d = self.dic
        self.be.convBedOfNailsUndo(v, self.prevGrad(0, scaleTargets), d["channels"], d["imgSize"], d["start"],
                                   d["stride"], scaleTargets, 1.0)


class GaussianBlurLayer(Layer):
    def __init__(self, net, dic):
        super().__init__(net, dic)
        self.channels = dic["channels"]
        self.filter = self.be.array(dic["filter"])

    def fpropActs(self, inpIdx, scaleTargets, passType):
        tmp = self.alloc("_tmp", *self.acts.shape)
        self.be.convGaussianBlur(self.inputs[0], self.filter, tmp, True, self.channels, 0.0, 1.0)
        self.be.convGaussianBlur(tmp, self.filter, self.acts, False, self.channels, 0.0, 1.0)

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        tmp = self.alloc("_tmp", *v.shape)
        self.be.convGaussianBlur(v, self.filter, tmp, True, self.channels, 0.0, 1.0)
        self.be.convGaussianBlur(tmp, self.filter, self.prevGrad(0, scaleTargets), False, self.channels,
                                 scaleTargets, 1.0)


class HorizontalReflectionLayer(Layer):
    def fpropActs(self, inpIdx, scaleTargets, passType):
        self.be.convReflectHorizontal(self.inputs[0], self.acts, self.dic["imgSize"])

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        # 2012 mistake: the AlexNet code ignored scaleTargets here, overwriting an earlier gradient.
        self.be.convReflectHorizontal(v, self.prevGrad(0, 0.0), self.dic["imgSize"])


class ResizeLayer(Layer):
    def fpropActs(self, inpIdx, scaleTargets, passType):
        d = self.dic
        self.be.convResizeBilinear(self.inputs[0], self.acts, d["imgSize"], d["tgtSize"], d["scale"])


class RGBToYUVLayer(Layer):
    def fpropActs(self, inpIdx, scaleTargets, passType):
        self.be.convRGBToYUV(self.inputs[0], self.acts)


class RGBToLABLayer(Layer):
    def fpropActs(self, inpIdx, scaleTargets, passType):
        self.be.convRGBToLAB(self.inputs[0], self.acts, self.dic["center"])


class RandomScaleLayer(Layer):
    """rscale. cuda-convnet r561 parsed it but had no such layer in its C++ (it stopped
    with 'Unknown layer type'); the AlexNet code's: in training, rescale by a random factor
    and take a random tgtSize crop; in testing, the centre crop."""

    def __init__(self, net, dic):
        super().__init__(net, dic)
        if not self.chm:
            raise EngineError("Layer '%s': cuda-convnet r561 has no rscale layer in its engine "
                              "(use the alexnet dialect)" % self.name)
        self.channels, self.maxScale = dic["channels"], dic["maxScale"]
        self.imgSize, self.tgtSize = dic["imgSize"], dic["tgtSize"]
        # float division (2012's _maxScale was a float): 18 / 1.2 gives 14 here, 15 in double
        minScaled = int(np.float32(self.imgSize) / np.float32(self.maxScale))
        numScales = self.imgSize - minScaled + 1
        numCrops = numScales * (numScales + 1) * (2 * numScales + 1) // 6
        # each scale is drawn in proportion to the number of crops it holds
        self.scaleProbs = [1.0 / numCrops]
        for s in range(1, numScales):
            self.scaleProbs.append(self.scaleProbs[s - 1] + (s + 1) * (s + 1) / numCrops)

    def fpropActs(self, inpIdx, scaleTargets, passType):
        be = self.be
        if passType == PASS_TRAIN:
            r = be.rand()
            rescaled, factor = self.tgtSize, self.maxScale
            for s, p in enumerate(self.scaleProbs):
                if r <= p:
                    rescaled += s
                    end = np.float32(self.imgSize) / np.float32(rescaled)
                    start = np.float32(max(1.0, self.imgSize / (1.0 + rescaled)))
                    factor = float(start + np.float32(be.rand()) * (end - start))
                    break
            maxStart = rescaled - self.tgtSize
            y0, x0 = be.randint(1 + maxStart), be.randint(1 + maxStart)
            if rescaled == self.imgSize:
                be.convCrop(self.inputs[0], self.acts, rescaled, self.tgtSize, y0, x0)
            else:
                big = be.empty(self.channels * rescaled * rescaled, self.numCases())
                be.convResizeBilinear(self.inputs[0], big, self.imgSize, rescaled, factor)
                be.convCrop(big, self.acts, rescaled, self.tgtSize, y0, x0)
        else:
            c = (self.imgSize - self.tgtSize) // 2
            be.convCrop(self.inputs[0], self.acts, self.imgSize, self.tgtSize, c, c)


class ResponseNormLayer(Layer):
    def __init__(self, net, dic):
        super().__init__(net, dic)
        self.channels, self.size, self.scale, self.pow = dic["channels"], dic["size"], dic["scale"], dic["pow"]

    def fpropActs(self, inpIdx, scaleTargets, passType):
        self.denoms = self.alloc("_denoms", *self.acts.shape)
        self.be.convResponseNorm(self.inputs[0], self.denoms, self.acts, self.channels, self.size, self.scale, self.pow)

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        self.be.convResponseNormUndo(v, self.denoms, self.inputs[0], self.acts, self.prevGrad(0, scaleTargets),
                                     self.channels, self.size, self.scale, self.pow, scaleTargets, 1.0)


class CrossMapResponseNormLayer(ResponseNormLayer):
    def __init__(self, net, dic):
        super().__init__(net, dic)
        self.blocked = dic["blocked"]
        self.minDiv = dic.get("minDiv", 1.0)  # the 'k' of the paper: 1 in cuda-convnet r561

    def fpropActs(self, inpIdx, scaleTargets, passType):
        self.denoms = self.alloc("_denoms", *self.acts.shape)
        self.be.convResponseNormCrossMap(self.inputs[0], self.denoms, self.acts, self.channels, self.size, self.scale,
                                         self.pow, self.blocked, minDiv=self.minDiv)

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        self.be.convResponseNormCrossMapUndo(v, self.denoms, self.inputs[0], self.acts, self.prevGrad(0, scaleTargets),
                                             self.channels, self.size, self.scale, self.pow, self.blocked,
                                             scaleTargets, 1.0)


class ContrastNormLayer(ResponseNormLayer):
    def fpropActs(self, inpIdx, scaleTargets, passType):
        be, images = self.be, self.inputs[0]
        self.meanDiffs = self.alloc("_meanDiffs", *images.shape)
        self.denoms = self.alloc("_denoms", *images.shape)
        # the local mean over a size x size window centred on each pixel, subtracted
        be.convLocalPool(images, self.meanDiffs, self.channels, self.size, -(self.size // 2), 1, self.dic["imgSize"], "avg")
        be.add(self.meanDiffs, images, -1.0, 1.0)
        be.convContrastNorm(images, self.meanDiffs, self.denoms, self.acts, self.channels, self.size, self.scale, self.pow)

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        self.be.convContrastNormUndo(v, self.denoms, self.meanDiffs, self.acts, self.prevGrad(inpIdx, scaleTargets),
                                     self.channels, self.size, self.scale, self.pow, scaleTargets, 1.0)


# -- costs ----------------------------------------------------------------------------------
class CostLayer(Layer):
    def __init__(self, net, dic):
        super().__init__(net, dic)
        self.coeff = dic["coeff"]
        self.costv = []

    def fprop(self, inputs, passType):
        self.inputs = inputs
        for i in range(len(inputs)):
            self.fpropActs(i, 0.0 if i == 0 else 1.0, passType)

    def bprop(self, passType):
        if self.coeff != 0:
            Layer.bprop(self, passType)

    def isGradProducer(self):
        return self.coeff != 0

    def getCost(self):
        return list(self.costv)


class LogregCostLayer(CostLayer):
    """-log p(label) and the error rate (AlexNet code: also the top-k error)."""

    def __init__(self, net, dic):
        super().__init__(net, dic)
        self.topk = dic.get("topk", 1)

    def fpropActs(self, inpIdx, scaleTargets, passType):
        if inpIdx != 0:
            return
        self.computeCost(self.inputs[0], self.inputs[1])

    def computeCost(self, labels, probs):
        be = self.be
        n = labels.shape[1]
        self.acts = self.alloc("_acts", 1, n)
        correct = self.alloc("_correct", 1, n)
        if self.topk == 1:
            be.computeLogregCost(labels, probs, self.acts, correct)
            top1 = be.sum(correct)
            topk = top1
        else:
            inTopK = self.alloc("_topk", 1, n)
            be.computeMultiSoftmaxCost(labels, probs, probs, self.acts, correct, inTopK, self.topk, False)
            top1, topk = be.sum(correct), be.sum(inTopK)
        self.costv = [-be.sum(self.acts), n - top1]
        if self.chm:
            self.costv.append(n - topk)

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        if inpIdx != 1:
            return
        p = self.prev[1]
        # under a softmax, the softmax layer computes the whole gradient itself
        if len(p.next) > 1 or p.type != "softmax":
            self.be.computeLogregGrad(self.inputs[0], self.inputs[1], self.prevGrad(1, scaleTargets),
                                      scaleTargets == 1, self.coeff)


class SumOfSquaresCostLayer(CostLayer):
    def fpropActs(self, inpIdx, scaleTargets, passType):
        x = self.inputs[0]
        self.acts = self.alloc("_acts", *x.shape)
        self.be.square(x, self.acts)
        self.costv = [self.be.sum(self.acts)]

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        self.be.add(self.prevGrad(inpIdx, scaleTargets), self.inputs[0], scaleTargets, -2.0 * self.coeff)


class CrossEntCostLayer(CostLayer):
    """cost.crossent (AlexNet code): -sum_i labels[i] log(probs[i]) against a label
    distribution (input 0) over a softmax (input 1), and the top-1 error."""

    def fpropActs(self, inpIdx, scaleTargets, passType):
        if inpIdx != 0:
            return
        be, (labels, probs) = self.be, self.inputs
        n = labels.shape[1]
        self.acts = self.alloc("_acts", 1, n)
        correct = self.alloc("_correct", 1, n)
        be.computeCrossEntCost(labels, probs, self.acts, correct)
        self.costv = [-be.sum(self.acts), n - be.sum(correct)]

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        if inpIdx != 1:
            raise EngineError("Layer '%s': cost.crossent cannot propagate a gradient to its labels" % self.name)
        p = self.prev[1]
        if len(p.next) > 1 or p.type != "softmax":
            self.be.computeCrossEntGrad(self.inputs[0], self.inputs[1], self.prevGrad(1, scaleTargets),
                                        scaleTargets == 1, self.coeff)
            return
        # 2012 left this case to the softmax layer, which fuses only cost.logreg: no gradient was ever computed.
        raise EngineError("Layer '%s': the AlexNet 2012 code computes no gradient for cost.crossent over a softmax "
                          "layer ('%s') that feeds nothing else (its softmax layer fuses only cost.logreg, and the "
                          "2012 program stopped on an assertion here). Give '%s' another consumer, or use "
                          "cost.logreg." % (self.name, p.name, p.name))


class CrossEnt2CostLayer(CostLayer):
    """cost.crossent2 (AlexNet code): -sum t log y + (1-t) log(1-y) over independent
    outputs y (input 1) with targets t (input 0). Over a logistic neuron layer that feeds
    nothing else, that layer computes the whole gradient, coeff*(t - y)."""

    def fpropActs(self, inpIdx, scaleTargets, passType):
        if inpIdx != 0:
            return
        labels, probs = self.inputs
        self.acts = self.alloc("_acts", *probs.shape)
        self.be.computeCrossEnt2Cost(labels, probs, self.acts)
        self.costv = [-self.be.sum(self.acts)]

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        if inpIdx != 1:
            raise EngineError("Layer '%s': cost.crossent2 cannot propagate a gradient to its labels" % self.name)
        p = self.prev[1]
        fused = len(p.next) == 1 and p.type == "neuron" and p.neuron.kind == "logistic"
        if not fused:
            self.net.out("Computing cross-ent gradient the stupid way")
            # 2012 mistake: CrossEntGradientOperator adds (1-t)/(1-y) where it should subtract it.
            self.be.computeCrossEnt2Grad(self.inputs[0], self.inputs[1], self.prevGrad(1, scaleTargets),
                                         scaleTargets != 0, self.coeff)


class RobustFlickrCostLayer(CostLayer):
    """cost.rflickr (AlexNet code): sum log(1 + (y - t)^2) over outputs y (input 1) and
    targets t (input 0)."""

    def fpropActs(self, inpIdx, scaleTargets, passType):
        if inpIdx != 0:
            return
        labels, probs = self.inputs
        self.acts = self.alloc("_acts", *probs.shape)
        self.be.computeRobustFlickrCost(labels, probs, self.acts)
        self.costv = [self.be.sum(self.acts)]

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        if inpIdx != 1:
            raise EngineError("Layer '%s': cost.rflickr cannot propagate a gradient to its labels" % self.name)
        self.be.computeRobustFlickrGrad(self.inputs[0], self.inputs[1], self.prevGrad(1, scaleTargets),
                                        scaleTargets != 0, self.coeff)


class GatedSumOfSquaresCostLayer(CostLayer):
    """cost.gsum2 (AlexNet code): sum over cases of gate * |x|^2, gates (1, cases) from
    input 0, x from input 1; both inputs get a gradient."""

    def fpropActs(self, inpIdx, scaleTargets, passType):
        if inpIdx != 0:
            return
        be, (gates, x) = self.be, self.inputs
        self.ungated = self.alloc("_ungated", *x.shape)
        be.square(x, self.ungated)
        self.acts = self.alloc("_acts", *x.shape)
        be.eltwiseMultByVector(self.ungated, gates, self.acts)
        self.costv = [be.sum(self.acts)]

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        be = self.be
        if inpIdx == 0:  # the gates: -coeff * |x|^2 per case
            be.addSum(self.prevGrad(0, scaleTargets), self.ungated, 0, scaleTargets, -self.coeff)
        else:  # (overwrites the squares, as 2012 did: input 0 comes first)
            be.eltwiseMultByVector(self.inputs[1], self.inputs[0], self.ungated)
            be.add(self.prevGrad(inpIdx, scaleTargets), self.ungated, scaleTargets, -2.0 * self.coeff)


class TICACostLayer(CostLayer):
    """cost.tica (AlexNet code). It reports the sum of 1/(0.001 + local L2 norm) (convTICA)
    but back-propagates minus the gradient of the sum of the local norms (convTICAGrad):
    its own gradient check fails, as its 2012 comments say."""

    def __init__(self, net, dic):
        super().__init__(net, dic)
        self.channels, self.sizeX = dic["channels"], dic["sizeX"]

    def fpropActs(self, inpIdx, scaleTargets, passType):
        x = self.inputs[0]
        self.acts = self.alloc("_acts", *x.shape)
        self.be.convTICA(x, self.acts, self.channels, self.sizeX, scaleTargets, 1.0)
        # 2012 mistake (its own TODO): this sums reciprocals, not the cost whose gradient bprop returns.
        self.costv = [self.be.sum(self.acts)]

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        self.be.convTICAGrad(self.inputs[0], self.acts, self.prevGrad(inpIdx, scaleTargets), self.channels, self.sizeX,
                             scaleTargets, self.coeff)


class MultiSoftmaxCostLayer(CostLayer):
    """cost.msm (AlexNet code): labels (input 0) and energies (input 1). The outputs are
    the marginals P(j in S) of a random set S of setSize outputs with P(S) proportional to
    exp(sum of S's energies); the cost is -log P(label in S), with top-1 and top-setSize
    errors ranked by energy. Computed on the host (multisoftmax.cpp), as in 2012."""

    def __init__(self, net, dic):
        super().__init__(net, dic)
        self.setSize, self.numOut = dic["setSize"], dic["numOut"]

    def fpropActs(self, inpIdx, scaleTargets, passType):
        if inpIdx != 0:
            return
        be, (labels, energies) = self.be, self.inputs
        eT = be.to_host(energies).T
        self._energiesT = np.ascontiguousarray(eT - eT.max(axis=1, keepdims=True))
        self._labels = be.to_host(labels).reshape(-1)
        self._cpuProbs = np.empty_like(self._energiesT)
        be.multiSoftmaxCPU(self._energiesT, self._cpuProbs, self._labels, self.setSize, True)
        self.acts = self.alloc("_acts", *energies.shape)
        be.copy(be.array(self._cpuProbs.T), self.acts)
        n = labels.shape[1]
        logp, correct, top = (self.alloc(a, 1, n) for a in ("_logp", "_correct", "_top"))
        be.computeMultiSoftmaxCost(labels, self.acts, energies, logp, correct, top, self.setSize, True)
        self.costv = [-be.sum(logp), n - be.sum(correct), n - be.sum(top)]

    def bpropActs(self, v, inpIdx, scaleTargets, passType):
        if inpIdx != 1:
            return
        be = self.be
        # the marginals given that the label is in the set, minus the marginals (in place)
        be.multiSoftmaxCPU(self._energiesT, self._cpuProbs, self._labels, self.setSize, False)
        grad = be.array(self._cpuProbs.T * self.coeff)
        target = self.prevGrad(1, scaleTargets)
        if scaleTargets == 1:
            be.add(target, grad)
        else:
            be.copy(grad, target)


def make_layer(net, dic):
    """The engine layer for a parsed layer dict."""
    t = dic["type"]
    if t == "pool":
        pools = {"avg": AvgPoolLayer, "max": MaxPoolLayer, "maxabs": MaxPoolLayer, "rand": RandomPoolLayer}
        cls = pools.get(dic["pool"])
        if cls is None:
            raise EngineError("Layer '%s': pool=%s is not supported by this engine yet" % (dic["name"], dic["pool"]))
        return cls(net, dic)
    cls = LAYER_CLASSES.get(t)
    if cls is None:
        raise EngineError("Layer '%s': layer type '%s' is not supported by this engine yet" % (dic["name"], t))
    return cls(net, dic)


LAYER_CLASSES = {
    "data": DataLayer,
    "fc": FCLayer,
    "conv": ConvLayer,
    "local": LocalUnsharedLayer,
    "softmax": SoftmaxLayer,
    "eltsum": EltwiseSumLayer,
    "eltmax": EltwiseMaxLayer,
    "neuron": NeuronLayer,
    "rnorm": ResponseNormLayer,
    "cnorm": ContrastNormLayer,
    "cmrnorm": CrossMapResponseNormLayer,
    "nailbed": NailbedLayer,
    "blur": GaussianBlurLayer,
    "href": HorizontalReflectionLayer,
    "resize": ResizeLayer,
    "rgb2yuv": RGBToYUVLayer,
    "rgb2lab": RGBToLABLayer,
    "rscale": RandomScaleLayer,
    "concat": ConcatenationLayer,
    "hs": HiddenSexLayer,
    "cost.logreg": LogregCostLayer,
    "cost.sum2": SumOfSquaresCostLayer,
    "treefc": TreeFCLayer,
    "cost.crossent": CrossEntCostLayer,
    "cost.crossent2": CrossEnt2CostLayer,
    "cost.rflickr": RobustFlickrCostLayer,
    "cost.gsum2": GatedSumOfSquaresCostLayer,
    "cost.tica": TICACostLayer,
    "cost.msm": MultiSoftmaxCostLayer,
}
