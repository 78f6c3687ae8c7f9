"""Neurons: an element-wise activation and its input gradient.

Stands for neuron.cu / neuron.cuh. The parser turns 'neuron=tanh[1.7,0.66]' into
{'type': 'tanh', 'params': {'a': 1.7, 'b': 0.66}, ...}; this makes that into the backend
calls. The formulas themselves live in the backends (neuronActivate / neuronInputGrad).
"""
from ..layer import ALEXNET

KINDS = ("ident", "relu", "nrelu", "brelu", "abs", "logistic", "tanh", "softrelu", "square",
         "sqrt", "linear", "drelu")


class Neuron:
    def __init__(self, be, neuron_dict, dialect):
        kind = neuron_dict["type"]
        if kind not in KINDS:
            raise ValueError("Unknown neuron type: %s" % kind)
        self.be = be
        self.kind = kind
        p = neuron_dict.get("params", {})
        self.a, self.b = float(p.get("a", 0.0)), float(p.get("b", 0.0))
        # cuda-convnet r561's softrelu took its derivative at the outputs (a bug the
        # AlexNet code fixed): reproduced in that dialect, see docs/fidelity.md.
        self.grad_from_outputs = kind == "softrelu" and dialect != ALEXNET
        self.inputs = self.outputs = None

    def activate(self, inputs, outputs):
        self.inputs, self.outputs = inputs, outputs
        self.be.neuronActivate(self.kind, inputs, outputs, self.a, self.b)

    def computeInputGrad(self, actsGrad, target, add):
        self.be.neuronInputGrad(self.kind, actsGrad, self.inputs, self.outputs, target, add,
                                self.a, self.b, grad_from_outputs=self.grad_from_outputs)
