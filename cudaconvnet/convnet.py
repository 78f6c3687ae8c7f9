"""The ConvNet model: its options, the 2012 printout, test aggregation, gradient checks.

Stands for convnet.py (cuda-convnet r561 and the AlexNet 2012 code). `python -m
cudaconvnet.convnet` trains like 2012's `python convnet.py`; `--demo` trains the digits net
of layers_cfg/ on scikit-learn's handwritten digits, on the CPU.
"""
import copy
import math
import os
import sys

import numpy as np

from . import layer as lay
from .backends import CONV_KERNELS, BackendUnavailable, get_backend
from .data import DataProvider, DataProviderException
from .engine.layers import EngineError
from .engine.net import ConvNet as Engine
from .gpumodel import IGPUModel, StopTraining, run_main
from .options import (BooleanOptionParser, FloatOptionParser, IntegerOptionParser, ListOptionParser,
                      StringOptionParser)
from .py2dict import Py2Dict
from .util import pickle

NL = os.linesep


class ConvNet(IGPUModel):
    def __init__(self, op, load_dic, dp_params=None, out=None):
        check_option_values(op)
        try:  # resolved once, here: the option checks and the providers need it before the model
            self.found_dialect = dialect_of(op, load_dic)
        except lay.LayerParsingError as e:
            self.found_dialect = e  # reported by dialect(), with the layer definition
        dialect = self.found_dialect[0] if isinstance(self.found_dialect, tuple) else None
        check_dialect_requires(op, dialect)
        dp_params = {} if dp_params is None else dp_params
        for v in ("multiview_test", "crop_border", "color_noise", "pca_noise", "scalar_mean", "minibatch_size"):
            dp_params[v] = op.get_value(v)
        dp_params["dialect"] = dialect  # the AlexNet code's cifar-cropped tested on other views
        if op.get_value("seed") >= 0:
            dp_params["seed"] = op.get_value("seed")
        IGPUModel.__init__(self, "ConvNet", op, load_dic, [], dp_params=dp_params, out=out)

    # -- the model --------------------------------------------------------------------------
    def dialect(self):
        if self.opt("dialect") in lay.DIALECTS:
            return self.opt("dialect")
        if isinstance(self.found_dialect, lay.LayerParsingError):
            raise StopTraining(str(self.found_dialect))
        d, why = self.found_dialect
        if why:
            self.p("Dialect: %s (%s)" % (d, why))
            self.op.set_value("dialect", d, parse=False)
        return d

    def init_model_state(self):
        ms = self.model_state
        dialect = self.dialect()
        if dialect == lay.ALEXNET and not self.options["num_gpus"].value_given and not self.load_dic:
            self._num_gpus_from_config()
        if self.opt("seed") >= 0 and not self.load_dic:
            np.random.seed(self.opt("seed"))  # the initial weights: 2012's very draws for a given seed
        if self.load_dic:
            self.check_checkpoint_layers(ms.get("layers"))
        try:
            if self.load_dic:
                ms["layers"] = lay.LayerParser.parse_layers(self.opt("layer_def"), self.opt("layer_params"), self,
                                                            ms["layers"], dialect=dialect)
            else:
                ms["layers"] = lay.LayerParser.parse_layers(self.opt("layer_def"), self.opt("layer_params"), self,
                                                            dialect=dialect)
        except (lay.LayerParsingError, DataProviderException) as e:  # a logreg layer asks the data's classes
            raise StopTraining(str(e))
        layers = ms["layers"]
        self.layers_dic = layers if isinstance(layers, dict) else {l["name"]: l for l in layers}
        if self.opt("logreg_name"):
            self.get_layer_idx(self.opt("logreg_name"), check_type="cost.logreg")
        for name in self.opt("conv_to_local"):
            if name in self.layers_dic and self.layers_dic[name]["type"] == "conv":
                key = name if isinstance(layers, dict) else [l["name"] for l in layers].index(name)
                lay.LocalLayerParser.conv_to_local(layers, key)
        for name_str in self.opt("unshare_weights"):
            if name_str:
                parsed = lay.WeightLayerParser.get_layer_name(name_str)
                if parsed is None:
                    raise StopTraining("Invalid layer name '%s'; unable to unshare." % name_str)
                name, idx = parsed
                if name not in self.layers_dic:
                    raise StopTraining("Layer '%s' does not exist; unable to unshare" % name)
                inputs = len(self.layers_dic[name].get("inputs", ()))
                if idx is not None and not 0 <= int(idx) < inputs:
                    raise StopTraining("Layer '%s' has %d weight matrices; unable to unshare %s"
                                       % (name, inputs, name_str))
                lay.WeightLayerParser.unshare_weights(self.layers_dic[name], layers, matrix_idx=idx)
        self.op.set_value("conv_to_local", [], parse=False)
        self.op.set_value("unshare_weights", [], parse=False)

    def check_checkpoint_layers(self, layers):
        problem = checkpoint_layers_problem(layers)
        if problem:
            raise StopTraining("Error loading checkpoint '%s': %s" % (self.load_path, problem))

    def _num_gpus_from_config(self):
        """The AlexNet code checks gpu=N against the number of GPUs; this engine runs every
        layer on one device, so without --num-gpus the config's own count is taken."""
        mcp = lay._read_config(self.opt("layer_def"))
        gpus = [lay.py2_int(mcp._sections[s]["gpu"]) for s in mcp.sections() if "gpu" in mcp._sections[s]
                and mcp._sections[s]["gpu"].strip().lstrip("-").isdigit()]
        if gpus:
            self.op.set_value("num_gpus", max(gpus) + 1, parse=False)
            self.op.set_value("gpu", [-1] * (max(gpus) + 1), parse=False)

    def get_layer_idx(self, layer_name, check_type=None):
        if layer_name not in self.layers_dic:
            raise StopTraining("Layer with name '%s' not defined." % layer_name)
        layer_type = self.layers_dic[layer_name]["type"]
        if check_type and layer_type != check_type:
            raise StopTraining("Layer with name '%s' has type '%s'; should be '%s'." % (layer_name, layer_type, check_type))
        return layer_name

    def import_model(self):
        self.p("=========================")
        try:
            self.backend = get_backend(self.opt("backend"))
        except BackendUnavailable as e:
            raise StopTraining(str(e))
        self.p("Importing the %s engine" % self.backend.NAME)

    def init_model_lib(self):
        try:
            if self.opt("conv_kernels") not in CONV_KERNELS:
                raise EngineError("--conv-kernels must be one of %s, got '%s'" % (", ".join(CONV_KERNELS),
                                                                                  self.opt("conv_kernels")))
            if self.backend.NAME == "cuda":
                self.backend.use_device(self.opt("gpu")[0])
                self.backend.set_conv_kernels(self.opt("conv_kernels"))
                try:
                    self.backend.prepare_kernels(out=self.p)
                except RuntimeError as e:   # nvcc's or ptxas's first lines: the file and the error
                    raise StopTraining("compiling the CUDA kernels failed: %s"
                                       % "; ".join([s for s in str(e).splitlines() if s.strip()][:2]))
            self.libmodel = Engine(self.model_state["layers"], self.opt("minibatch_size"), self.backend,
                                   dialect=self.dialect(), seed=self.opt("seed") if self.opt("seed") >= 0 else None,
                                   out=self.p.raw)  # the engine prints as the C++ module did
        except EngineError as e:
            raise StopTraining(str(e))
        if self.load_dic and "engine_rng" in self.model_state:
            self.backend.set_rng_state(self.model_state["engine_rng"])
        if self.load_dic and "engine_lr_rng" in self.model_state:  # learning-rate noise
            try:
                self.libmodel.lr_rng.setstate(_as_random_state(self.model_state["engine_lr_rng"]))
            except (TypeError, ValueError) as e:
                raise StopTraining("the checkpoint's learning-rate random state is damaged: %s" % e)

    def device_description(self):
        if self.backend.NAME == "numpy":
            return "the CPU (NumPy engine)"
        return IGPUModel.device_description(self)

    def fill_excused_options(self):
        if self.opt("check_grads"):
            self.op.set_value("save_path", "")
            self.op.set_value("train_batch_range", "0")
            self.op.set_value("test_batch_range", "0")
            self.op.set_value("data_path", "")

    def init_data_providers(self):
        if self.opt("check_grads"):  # a dummy provider needs no files
            try:
                self.dp_params["convnet"] = self
                dp = DataProvider.get_instance(None, [0], type=self.opt("dp_type"), dp_params=self.dp_params)
            except DataProviderException as e:
                raise StopTraining("Unable to create data provider: %s" % e)
            self.train_data_provider = self.test_data_provider = dp
            return
        IGPUModel.init_data_providers(self)
        if self.opt("multiview_test") and not getattr(self.test_data_provider, "num_views", 0):
            raise StopTraining("--multiview-test=1 needs a data provider that makes views (such as cifar-cropped "
                               "or inet-lr-cropped); '%s' does not" % self.opt("dp_type"))

    # -- batches ------------------------------------------------------------------------------
    def parse_batch_data(self, batch_data, train=True):
        data = batch_data[2]
        if not isinstance(data, (list, tuple)) or not all(isinstance(d, np.ndarray) for d in data):
            raise StopTraining("Data provider '%s' returned a %s; the ConvNet needs a list of matrices (data, "
                               "labels, ...), as 'cifar' and the other image providers give"
                               % (self.opt("dp_type"), type(data).__name__))
        if any(d.dtype != np.single for d in batch_data[2]):
            raise StopTraining("All matrices returned by data provider must consist of single-precision floats.")
        return batch_data

    def progress(self):
        total = self.opt("num_epochs") * len(self.opt("train_batch_range"))
        return min(1.0, max(0.0, float(self.get_num_batches_done() - 1) / total))

    def start_batch(self, batch_data, train=True):
        data = batch_data[2]
        net = self.libmodel
        try:
            if self.opt("check_grads"):
                failures, tests = net.checkGradients(data)
                raise StopTraining("", 1 if failures else 0)
            if not train and self.opt("multiview_test"):
                num_views = self.test_data_provider.num_views
                cost, probs = net.multiview_test(data, num_views, self.opt("logreg_name") or None,
                                                 return_probs=bool(self.opt("test_out")))
                if self.opt("test_out"):
                    self.write_test_out(batch_data[1], probs)
            elif train:
                cost = net.train_batch(data, self.progress(), self.opt("wupdate_freq"))
            else:
                cost = net.test_batch(data)
        except EngineError as e:
            raise StopTraining(str(e))
        self.batch_result = cost.as_2012()

    def finish_batch(self):
        return self.batch_result

    def write_test_out(self, batchnum, probs):
        os.makedirs(self.opt("test_out"), exist_ok=True)
        pickle(os.path.join(self.opt("test_out"), "test_preds_%d" % batchnum),
               {"data": probs, "note": "generated from %s" % os.path.join(self.save_path, self.save_file)})

    def sync_with_host(self):
        self.libmodel.copyToCPU()

    # -- printing (the 2012 lines) ------------------------------------------------------------
    def print_iteration(self):
        self.p("%d.%d..." % (self.epoch, self.batchnum), comma=True)

    def print_train_time(self, compute_time_py):
        self.p("(%.3f sec)" % compute_time_py)

    def print_costs(self, cost_outputs, copies=0):
        """Each cost averaged over the cases, in the order a Python 2 dict gave them (copies:
        how many times 2012 had deep-copied the dict; see _py2_order); divides the stored
        sums in place, as 2012 did (the checkpoint keeps the averages)."""
        costs, num_cases = cost_outputs[0], cost_outputs[1]
        p = self.p
        # "%6f" in cuda-convnet, "%.6f" in the AlexNet code: the same but for nan and inf
        fmt = "%.6f" if self.dialect() == lay.ALEXNET else "%6f"
        for errname in _py2_order(costs, copies):
            costs[errname] = [(v / num_cases) for v in costs[errname]]
            p("%s: " % errname, comma=True)
            p(", ".join(fmt % v for v in costs[errname]), comma=True)
            if any(math.isnan(v) or math.isinf(v) for v in costs[errname]):
                p("^ got nan or inf!")
                raise StopTraining("", 1)

    def print_train_results(self):
        self.print_costs(self.train_outputs[-1])

    def print_test_results(self):
        p = self.p
        p("")
        p("======================Test output======================")
        chm = self.dialect() == lay.ALEXNET
        # the AlexNet code's aggregate_test_outputs deep-copied the batches' cost dicts: once
        # for the test output, once more for the averages (cuda-convnet's summed in place)
        self.print_costs(self.test_outputs[-1], copies=1 if chm else 0)
        if chm:
            p(NL + "----------------------Averages-------------------------")
            n = len(self.opt("test_batch_range"))
            self.print_costs((self.aggregate_test_outputs(self.test_outputs[-n:])[0], min(len(self.test_outputs), n)),
                             copies=2)
        p("")
        p("-------------------------------------------------------", comma=True)
        layers = self.model_state["layers"]
        ordered = [layers[k] for k in sorted(layers)] if isinstance(layers, dict) else layers
        for l in ordered:
            if "weights" in l:
                p("")
                p(NL.join("Layer '%s' weights[%d]: %e [%e]" % (l["name"], i, np.mean(np.abs(w)), np.mean(np.abs(wi)))
                          for i, (w, wi) in enumerate(zip(l["weights"], l["weightsInc"]))), comma=True)
                p("%sLayer '%s' biases: %e [%e]" % (NL, l["name"], np.mean(np.abs(l["biases"])),
                                                     np.mean(np.abs(l["biasesInc"]))), comma=True)
        p("")

    def format_batch_output(self, output):
        costs, n = output
        return "(%s, %d)" % (_py2_repr(costs), n)

    def conditional_save(self):
        self.save_state()
        p = self.p
        p("-------------------------------------------------------")
        p("Saved checkpoint to %s" % os.path.join(self.save_path, self.save_file))
        p("=======================================================", comma=True)

    def save_state(self):
        self.model_state["engine_rng"] = self.backend.get_rng_state()
        self.model_state["engine_lr_rng"] = self.libmodel.lr_rng.getstate()
        IGPUModel.save_state(self)

    def aggregate_test_outputs(self, test_outputs):
        test_outputs = copy.deepcopy(test_outputs)
        num_cases = sum(t[1] for t in test_outputs)
        for i in range(1, len(test_outputs)):
            for k, v in test_outputs[i][0].items():
                for j in range(len(v)):
                    test_outputs[0][0][k][j] += test_outputs[i][0][k][j]
        return (test_outputs[0][0], num_cases)

    # -- options ---------------------------------------------------------------------------------
    @classmethod
    def get_options_parser(cls):
        op = IGPUModel.get_options_parser()
        op.add_option("mini", "minibatch_size", IntegerOptionParser, "Minibatch size", default=128)
        op.add_option("layer-def", "layer_def", StringOptionParser, "Layer definition file", set_once=True)
        op.add_option("layer-params", "layer_params", StringOptionParser, "Layer parameter file")
        op.add_option("check-grads", "check_grads", BooleanOptionParser, "Check gradients and quit?", default=0,
                      excuses=["data_path", "save_path", "train_batch_range", "test_batch_range"])
        op.add_option("multiview-test", "multiview_test", BooleanOptionParser, "Cropped DP: test on multiple patches?",
                      default=0)
        op.add_option("crop-border", "crop_border", IntegerOptionParser, "Cropped DP: crop border size", default=4,
                      set_once=True)
        op.add_option("logreg-name", "logreg_name", StringOptionParser,
                      "Cropped DP: logreg layer name (for --multiview-test)", default="")
        op.add_option("conv-to-local", "conv_to_local", ListOptionParser(StringOptionParser),
                      "Convert given conv layers to unshared local", default=[])
        op.add_option("unshare-weights", "unshare_weights", ListOptionParser(StringOptionParser),
                      "Unshare weight matrices in given layers", default=[])
        op.add_option("conserve-mem", "conserve_mem", BooleanOptionParser, "Conserve GPU memory (slower)?", default=0)
        # the AlexNet code's additions
        op.add_option("color-noise", "color_noise", FloatOptionParser, "Add PCA noise to color channels with given scale",
                      default=0.0)
        op.add_option("test-out", "test_out", StringOptionParser, "Output test case predictions to given path",
                      default="", requires=["logreg_name", "multiview_test"])
        op.add_option("pca-noise", "pca_noise", FloatOptionParser, "Add PCA noise to pixels with given scale", default=0.0)
        op.add_option("scalar-mean", "scalar_mean", FloatOptionParser,
                      "Subtract scalar pixel mean (as opposed to vector)?", default=False)
        op.add_option("wupdate-freq", "wupdate_freq", IntegerOptionParser,
                      "Weight update (inverse) frequency, in minibatches (1 = every minibatch)", default=1)
        # this port's
        op.add_option("backend", "backend", StringOptionParser, "Engine: numpy, cuda or auto (the GPU if there is one)",
                      default="auto")
        op.add_option("conv-kernels", "conv_kernels", StringOptionParser,
                      # one short line: the options printout pads every line to the longest description;
                      # docs/fidelity.md section 4 says what each choice is
                      "CUDA engine's conv kernels: 2012, gemm, winograd, implicit or fastest",
                      default="2012")
        op.add_option("dialect", "dialect", StringOptionParser,
                      "Config dialect: cuda-convnet, alexnet or auto", default="auto", set_once=True)
        op.add_option("seed", "seed", IntegerOptionParser,
                      "Random seed (initial weights, data, dropout; -1: unseeded, as 2012)", default=-1)

        op.delete_option("max_test_err")
        op.options["max_filesize_mb"].default = 0
        op.options["testing_freq"].default = 50
        op.options["num_epochs"].default = 50000
        op.options["dp_type"].default = None
        op.parse_order = PARSE_ORDER_2012
        return op


def checkpoint_layers_problem(layers):
    """What is wrong with a checkpoint's layers before they are used (dicts with the
    geometry and weight matrices their type asks for), or None: a damaged or hand-edited
    file gets one line, not a traceback (convnet, shownet and export all ask)."""
    return next(_layer_problems(layers), None)


def _layer_problems(layers):
    """Yields what is wrong, first things first (checkpoint_layers_problem takes the first)."""
    if isinstance(layers, dict):
        dicts = list(layers.values())
    elif isinstance(layers, list):
        dicts = layers
    else:
        yield "model_state['layers'] is %s" % ("missing" if layers is None else "a %s" % type(layers).__name__)
        return
    for l in dicts:
        if not isinstance(l, dict) or not isinstance(l.get("name"), str) or not isinstance(l.get("type"), str):
            yield "a layer is not a dict with a name and a type"
            return
        if "weights" not in l:
            continue
        name = l["name"]
        ws, incs = l.get("weights"), l.get("weightsInc")
        if not isinstance(ws, list) or not isinstance(incs, list) or len(ws) != len(incs):
            yield "layer '%s': weights and weightsInc are not lists of matrices of one length" % name
            return
        for i, (w, inc) in enumerate(zip(ws, incs)):
            for key, m in (("weights", w), ("weightsInc", inc)):
                if not isinstance(m, np.ndarray) or m.ndim != 2 or m.dtype.kind != "f":
                    yield "layer '%s': %s[%d] is not a 2-D float matrix" % (name, key, i)
                    return
            expect = _weights_shape(l, i)
            if expect is None and l["type"] in ("fc", "conv", "local"):
                yield ("layer '%s' lacks the sizes of its weights (numInputs, outputs, filters, filterChannels, "
                       "filterPixels or modules)" % name)
            elif expect is not None and w.shape != expect:
                yield "layer '%s': weights[%d] has shape %s; its config gives %s" % (name, i, w.shape, expect)
            if inc.shape != w.shape:
                yield "layer '%s': weightsInc[%d] has shape %s, weights[%d] %s" % (name, i, inc.shape, i, w.shape)
        for key in ("biases", "biasesInc"):
            b = l.get(key)
            if not isinstance(b, np.ndarray) or b.dtype.kind != "f":
                yield "layer '%s': %s is not a float matrix" % (name, key)
                return
        nb = _biases_size(l)
        if nb is not None and l["biases"].size != nb:
            yield "layer '%s': biases has %d values; its config gives %d" % (name, l["biases"].size, nb)
        if l["biasesInc"].shape != l["biases"].shape:
            yield "layer '%s': biasesInc has shape %s, biases %s" % (name, l["biasesInc"].shape, l["biases"].shape)


def _weights_shape(l, i):
    """The shape the layer dict's geometry gives its weights[i] (fc, conv, local), else None."""
    try:
        if l["type"] == "fc":
            return (int(l["numInputs"][i]), int(l["outputs"]))
        if l["type"] in ("conv", "local"):
            rows = int(l["filterChannels"][i]) * int(l["filterPixels"][i])
            return ((int(l["modules"]) if l["type"] == "local" else 1) * rows, int(l["filters"]))
    except (KeyError, IndexError, TypeError, ValueError):
        pass
    return None


def _biases_size(l):
    try:
        if l["type"] == "fc":
            return int(l["outputs"])
        if l["type"] in ("conv", "local"):
            return int(l["filters"]) * (1 if l["type"] == "conv" and l.get("sharedBiases", True) else int(l["modules"]))
    except (KeyError, TypeError, ValueError):
        pass
    return None


def _as_random_state(state):
    """random.Random.getstate()'s tuple, as a pickle gives it back (lists become tuples)."""
    version, internal, gauss = state
    return version, tuple(internal), gauss


def _py2_order(costs, copies=0):
    """The cost names in the order 2012 printed them: a Python 2 dict filled in name order
    (the engine's std::map), then deep-copied `copies` times (a copy is filled in the order
    its original iterates, which can differ where names collide in the hash table)."""
    names = sorted(costs)
    for _ in range(copies + 1):
        d = Py2Dict()
        for k in names:
            d[k] = None
        names = list(d)
    return names


def _py2_repr(costs):
    return "{" + ", ".join("%r: %r" % (k, costs[k]) for k in _py2_order(costs)) + "}"


# The order the AlexNet code's parse() met these options in (its Python 2.7 dict, then its
# sort), found by running its options under Python 2.7: with several left out, the first of
# them here is the one named "not supplied". cuda-convnet's order differs only in where
# --conv-to-local and -f fall (the mandatory options come in the same order in both).
PARSE_ORDER_2012 = [
    "testing_freq", "logreg_name", "test_only", "conserve_mem", "multiview_test", "zip_save", "num_gpus",
    "color_noise", "train_batch_range", "test_batch_range", "wupdate_freq", "max_filesize_mb", "check_grads",
    "conv_to_local", "pca_noise", "crop_border", "gpu", "save_path", "unshare_weights", "layer_params",
    "minibatch_size", "num_epochs", "layer_def", "load_file", "data_path", "test_out", "dp_type", "scalar_mean",
    "test_one",
]


def check_option_values(op):
    """Values the 2012 parser took and its loop could not use (a zero --test-freq divided by
    zero; a negative --wupdate-freq trained uphill), and seeds numpy refuses: one line naming
    the option."""
    for name in ("minibatch_size", "testing_freq", "wupdate_freq"):
        o = op.options.get(name)
        if o is not None and o.value < 1:
            raise StopTraining("Option %s (%s) must be at least 1, not %d" % (o.prefixed_letter, o.desc, o.value))
    o = op.options.get("seed")
    if o is not None and not -1 <= o.value < 2 ** 32:  # numpy's seeds, and -1
        raise StopTraining("Option %s (%s) must be -1 or 0..%d, not %d" % (o.prefixed_letter, o.desc, 2 ** 32 - 1,
                                                                            o.value))
    o = op.options.get("dialect")
    if o is not None and o.value not in lay.DIALECTS + ("auto",):
        raise StopTraining("Option %s (%s) must be %s or auto, not '%s'"
                           % (o.prefixed_letter, o.desc, ", ".join(lay.DIALECTS), o.value))


def dialect_of(op, load_dic):
    """(dialect, why): --dialect; else a checkpoint's (the AlexNet code kept its layers in a
    dict, cuda-convnet in a list); else what the config files need (why says what). Raises
    LayerParsingError for config files that cannot be read."""
    if op.get_value("dialect") in lay.DIALECTS:
        return op.get_value("dialect"), None
    if load_dic:
        return (lay.ALEXNET if isinstance(load_dic["model_state"].get("layers"), dict) else lay.CUDA_CONVNET), None
    return lay.detect_dialect(op.get_value("layer_def"), op.get_value("layer_params"))


def check_dialect_requires(op, dialect):
    """cuda-convnet's --multiview-test required --logreg-name (the AlexNet code's did not). The
    one parser of both dialects checks it before anything else, as 2012's parser did, once the
    dialect is known, in 2012's words."""
    o, needed = op.options["multiview_test"], op.options["logreg_name"]
    if dialect == lay.CUDA_CONVNET and o.value_given and not needed.value_given:
        raise StopTraining("Option %s (%s) requires option %s (%s)"
                           % (o.prefixed_letter, o.desc, needed.prefixed_letter, needed.desc))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--demo":
        from .demo import run_demo
        return run_demo(argv[1:])
    op = ConvNet.get_options_parser()
    op, load_dic = IGPUModel.parse_options(op, argv)
    model = ConvNet(op, load_dic)
    model.start()
    return 0


if __name__ == "__main__":
    run_main(main)
