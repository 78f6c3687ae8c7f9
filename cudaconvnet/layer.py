"""The 2012 layer configuration parser: layers.cfg + layer-params.cfg -> layer dicts.

Stands for layer.py in two dialects: 'cuda-convnet' (r561, 2012-07-25), which returns a
list of layer dicts, and 'alexnet' (the CHM AlexNet 2012 code: hs, concat, href, treefc,
more costs, gpu=, minDiv, LR schedules), which returns a dict keyed by layer name. Each
dict holds the keys, values and Python types the original produced, and the initial weights
come from numpy's legacy global RandomState in the original's order.
"""
import os
import re
import sys
from math import ceil, exp, floor

import numpy as n
import numpy.random as nr

from .cfgparser import ConfigError, InterpolationError, NoOptionError, NoSectionError
from .cfgparser import SafeConfigParser, py2_float, py2_int, py2_lower
from .py2dict import Py2Dict

CUDA_CONVNET, ALEXNET = "cuda-convnet", "alexnet"
DIALECTS = (CUDA_CONVNET, ALEXNET)


class LayerParsingError(Exception):
    """A config error, in the 2012 parser's words. `path` names the file when known."""

    def __init__(self, msg, path=None):
        super().__init__(msg)
        self.msg, self.path = msg, path

    def __str__(self):
        if self.path and self.path not in self.msg:
            return "%s  [%s]" % (self.msg, self.path)
        return self.msg


# -- neurons ------------------------------------------------------------------------------
class NeuronParser:
    """A neuron without parameters, e.g. 'relu'."""

    def __init__(self, type, func_str, uses_acts=True, uses_inputs=True):
        self.type = type
        self.func_str = func_str
        self.uses_acts = uses_acts
        self.uses_inputs = uses_inputs

    def parse(self, type):
        if type == self.type:
            return {"type": self.type, "params": {},
                    "usesActs": self.uses_acts, "usesInputs": self.uses_inputs}
        return None


class ParamNeuronParser(NeuronParser):
    """A neuron with float parameters, e.g. 'tanh[a,b]' written as tanh[1.7159,0.6666]."""

    neuron_regex = re.compile(r"^\s*(\w+)\s*\[\s*(\w+(\s*,\w+)*)\s*\]\s*$", re.ASCII)

    def __init__(self, type, func_str, uses_acts=True, uses_inputs=True, value_chars=r"\d,\.\s\-e"):
        super().__init__(type, func_str, uses_acts, uses_inputs)
        m = self.neuron_regex.match(type)
        self.base_type = m.group(1)
        self.param_names = m.group(2).split(",")
        # cuda-convnet allowed exponents ('e') in the values; the AlexNet code did not.
        self.value_regex = re.compile(r"^%s\s*\[([%s]*)\]\s*$" % (self.base_type, value_chars), re.ASCII)

    def parse(self, type):
        m = self.value_regex.match(type)
        if m:
            try:
                vals = [py2_float(v.strip(" \t\n\r\x0b\x0c")) for v in m.group(1).split(",")]
            except ValueError:  # 2012 crashed here with a traceback; we report "unable to parse"
                return None
            if len(vals) == len(self.param_names):
                return {"type": self.base_type, "params": dict(zip(self.param_names, vals)),
                        "usesActs": self.uses_acts, "usesInputs": self.uses_inputs}
        return None


def _neuron_parsers(dialect):
    chm = dialect == ALEXNET
    chars = r"\d,\.\s\-" if chm else r"\d,\.\s\-e"
    parsers = [NeuronParser("ident", "f(x) = x", uses_acts=False, uses_inputs=False),
               NeuronParser("logistic", "f(x) = 1 / (1 + e^-x)", uses_acts=True, uses_inputs=False),
               NeuronParser("abs", "f(x) = |x|", uses_acts=False, uses_inputs=True),
               NeuronParser("relu", "f(x) = max(0, x)", uses_acts=True, uses_inputs=False),
               NeuronParser("softrelu", "f(x) = log(1 + e^x)", uses_acts=True, uses_inputs=False),
               NeuronParser("square", "f(x) = x^2", uses_acts=False, uses_inputs=True),
               NeuronParser("sqrt", "f(x) = sqrt(x)", uses_acts=True, uses_inputs=False),
               ParamNeuronParser("tanh[a,b]", "f(x) = a * tanh(b * x)", True, False, chars),
               ParamNeuronParser("brelu[a]", "f(x) = min(a, max(0, x))", True, False, chars),
               ParamNeuronParser("linear[a,b]", "f(x) = a * x + b", True, False, chars)]
    if chm:
        parsers += [NeuronParser("nrelu", "f(x) = max(0, x) + noise", uses_acts=True, uses_inputs=False),
                    ParamNeuronParser("drelu[a]", "f(x) = x - a * tanh(x / a)", False, True, chars)]
    return sorted(parsers, key=lambda p: p.type)


# -- learning-rate schedules and quantisers (AlexNet dialect) --------------------------------
class ParamParser:
    """A named scheme with typed, named parameters: 'dexp[ftgtFactor,fnoiseStdev,inumSteps]'
    accepts dexp[tgtFactor=250,noiseStdev=0,numSteps=4] (i = int, f = float)."""

    lrs_regex = re.compile(r"^\s*(\w+)\s*(?:\[\s*(\w+(\s*,\w+)*)\s*\])?\s*$", re.ASCII)
    param_converters = {"i": py2_int, "f": py2_float}

    def __init__(self, type):
        m = self.lrs_regex.match(type)
        self.base_type = m.group(1)
        typed = m.group(2).split(",") if m.group(2) is not None else []
        self.param_names = [p[1:] for p in typed]
        self.param_types = [self.param_converters[p[0]] for p in typed]

    def parse(self, type):
        inner = ",".join(r"\s*%s\s*=\s*[^,\s=]+\s*" % p for p in self.param_names)
        m = re.match(r"^%s\s*(?:\[(%s)\])?\s*$" % (self.base_type, inner), type, flags=re.IGNORECASE | re.ASCII)
        if m:
            try:
                vals = ([conv(v.split("=")[1].strip()) for conv, v in zip(self.param_types, m.group(1).split(","))]
                        if m.group(1) is not None else [])
            except ValueError:  # 2012 crashed with a traceback; we report "unable to parse"
                return None
            if len(vals) == len(self.param_names):
                return {"type": self.base_type, "params": dict(zip(self.param_names, vals))}
        return None


LRS_PARSERS = [ParamParser("default"),
               ParamParser("linear[ftgtFactor,fnoiseStdev]"),
               ParamParser("exp[ftgtFactor,fnoiseStdev]"),
               ParamParser("dexp[ftgtFactor,fnoiseStdev,inumSteps]"),
               ParamParser("jdexp[ftgtFactor,fnoiseStdev,inumSteps]")]
QUANT_PARSERS = [ParamParser("default"), ParamParser("half")]


# -- config access ----------------------------------------------------------------------------
class MyConfigParser(SafeConfigParser):
    """SafeConfigParser with the 2012 parser's typed getters and error messages."""

    def safe_get(self, section, option, f=None, typestr=None, default=None):
        try:
            return (f or SafeConfigParser.get)(self, section, option)
        except NoOptionError:
            if default is not None:
                return default
            raise LayerParsingError("Layer '%s': required parameter '%s' missing" % (section, option))
        except ValueError:
            if typestr is None:
                raise
            raise LayerParsingError("Layer '%s': parameter '%s' must be %s" % (section, option, typestr))
        except (InterpolationError, NoSectionError) as e:  # a traceback in 2012
            detail = " ".join(part.strip() for part in str(e).splitlines() if part.strip())
            raise LayerParsingError("Layer '%s': parameter '%s': %s" % (section, option, detail))

    def safe_get_list(self, section, option, f=str, typestr="strings", default=None):
        v = self.safe_get(section, option, default=default)
        if type(v) == list:
            return v
        try:
            return [f(x.strip(" \t\n\r\x0b\x0c")) for x in v.split(",")]
        except Exception:  # 2012 used a bare except here: any failure is this message
            raise LayerParsingError("Layer '%s': parameter '%s' must be ','-delimited list of %s"
                                    % (section, option, typestr))

    def safe_get_int(self, section, option, default=None):
        return self.safe_get(section, option, f=SafeConfigParser.getint, typestr="int", default=default)

    def safe_get_float(self, section, option, default=None):
        return self.safe_get(section, option, f=SafeConfigParser.getfloat, typestr="float", default=default)

    def safe_get_bool(self, section, option, default=None):
        return self.safe_get(section, option, f=SafeConfigParser.getboolean, typestr="bool", default=default)

    def safe_get_float_list(self, section, option, default=None):
        return self.safe_get_list(section, option, py2_float, typestr="floats", default=default)

    def safe_get_int_list(self, section, option, default=None):
        return self.safe_get_list(section, option, py2_int, typestr="ints", default=default)

    def safe_get_bool_list(self, section, option, default=None):
        return self.safe_get_list(section, option, lambda x: py2_lower(x) in ("true", "1"),
                                  typestr="bools", default=default)


class FakeConfigParser:
    """Answers the few lookups a detached neuron layer makes, from its own dict."""

    def __init__(self, dic, chm):
        self.dic, self.chm = dic, chm

    def safe_get(self, section, option, default=None):
        if self.chm and option not in self.dic:
            return default
        return self.dic[option]

    def safe_get_int(self, section, option, default=None):
        return int(self.safe_get(section, option, default))


def _read_config(path):
    mcp = MyConfigParser()
    try:
        mcp.read([path])
    except ConfigError as e:
        first = str(e).splitlines()
        detail = " ".join(s.strip() for s in first[1:])
        raise LayerParsingError("%s%s" % (first[0], (": " + detail) if detail else ""), path)
    return mcp


# -- layer parsers -----------------------------------------------------------------------------
class LayerParser:
    def __init__(self, dialect):
        self.dialect = dialect
        self.chm = dialect == ALEXNET
        self.dic = {}
        self.set_defaults()

    # Called after all layers are parsed: which input's matrices this layer may reuse.
    def optimize(self, layers):
        self.dic["actsTarget"] = -1
        self.dic["actsGradTarget"] = -1

    def parse_params(self, mcp, parsers, param_name, default, human_name):
        dic, name = self.dic, self.dic["name"]
        vals = default
        if mcp.has_section(name):
            vals = mcp.safe_get(name, param_name, default="default")
        elif "src_layer" in dic and mcp.has_section(dic["src_layer"]):  # a detached neuron layer
            vals = mcp.safe_get(dic["src_layer"], param_name, default="default")
        for p in parsers:
            parsed = p.parse(vals)
            if parsed:
                return parsed
        raise LayerParsingError("Layer '%s': unable to parse %s %s=%s." % (name, human_name, param_name, vals))

    # Parameters from layer-params.cfg: re-read on every run, so they may change on resume.
    def add_params(self, mcp):
        if self.chm:
            self.dic["quantF"] = self.parse_params(mcp, QUANT_PARSERS, "quantF", "default",
                                                   "forward quantization scheme")
            self.dic["quantB"] = self.parse_params(mcp, QUANT_PARSERS, "quantB", "default",
                                                   "backward quantization scheme")

    def init(self, dic):
        self.dic = dic
        return self

    def set_defaults(self):
        self.dic["outputs"] = 0
        self.dic["parser"] = self
        self.dic["requiresParams"] = False
        # Uses its own output for something other than producing it (e.g. its gradient)?
        self.dic["usesActs"] = True
        # Uses its inputs' outputs for something other than computing its own?
        self.dic["usesInputs"] = True
        # Keeps its own gradient matrix instead of borrowing one from an input.
        self.dic["forceOwnActs"] = True
        # Needs the gradient at all (true for layers with weights, and what lies below them).
        self.dic["gradConsumer"] = False
        if self.chm:
            self.dic["gpu"] = -1

    def parse(self, name, mcp, prev_layers, model=None):
        self.prev_layers = prev_layers
        self.dic["name"] = name
        self.dic["type"] = mcp.safe_get(name, "type")
        return self.dic

    def on_gpu(self):
        """' on GPU n' in the AlexNet dialect's messages, nothing in cuda-convnet's."""
        return " on GPU %d" % self.dic["gpu"] if self.chm else ""

    def verify_float_range(self, v, param_name, _min, _max):
        self.verify_num_range(v, param_name, _min, _max, strconv=lambda x: "%.3f" % x)

    def verify_num_range(self, v, param_name, _min, _max, strconv=lambda x: "%d" % x):
        if type(v) == list:
            for i, vv in enumerate(v):
                self._verify_num_range(vv, param_name, _min, _max, i, strconv=strconv)
        else:
            self._verify_num_range(v, param_name, _min, _max, strconv=strconv)

    def _verify_num_range(self, v, param_name, _min, _max, input=-1, strconv=lambda x: "%d" % x):
        layer_name = self.dic["name"] if input < 0 else "%s[%d]" % (self.dic["name"], input)
        if _min is not None and _max is not None and (v < _min or v > _max):
            raise LayerParsingError("Layer '%s': parameter '%s' must be in the range %s-%s"
                                    % (layer_name, param_name, strconv(_min), strconv(_max)))
        elif _min is not None and v < _min:
            raise LayerParsingError("Layer '%s': parameter '%s' must be greater than or equal to %s"
                                    % (layer_name, param_name, strconv(_min)))
        elif _max is not None and v > _max:
            raise LayerParsingError("Layer '%s': parameter '%s' must be smaller than or equal to %s"
                                    % (layer_name, param_name, strconv(_max)))

    def verify_divisible(self, value, div, value_name, div_name=None, input_idx=0):
        layer_name = self.dic["name"] if len(self.dic["inputs"]) == 0 else "%s[%d]" % (self.dic["name"], input_idx)
        if value % div != 0:
            raise LayerParsingError("Layer '%s': parameter '%s' must be divisible by %s"
                                    % (layer_name, value_name, str(div) if div_name is None else "'%s'" % div_name))

    def verify_str_in(self, value, param_name, lst):
        # cuda-convnet named the offending value where the AlexNet code names the parameter.
        if value not in lst:
            raise LayerParsingError("Layer '%s': parameter '%s' must be one of %s"
                                    % (self.dic["name"], param_name if self.chm else value,
                                       ", ".join("'%s'" % s for s in lst)))

    def verify_int_in(self, value, param_name, lst):
        if value not in lst:
            raise LayerParsingError("Layer '%s': parameter '%s' must be one of %s"
                                    % (self.dic["name"], param_name if self.chm else value,
                                       ", ".join("'%d'" % s for s in lst)))

    def verify_input_dims(self, dims):
        for i, d in enumerate(dims):
            if d is not None and self.dic["numInputs"][i] != d:
                raise LayerParsingError("Layer '%s': dimensionality of input %d must be %d" % (self.dic["name"], i, d))

    # A 'neuron=relu' line in a layer becomes a separate neuron layer above it.
    @staticmethod
    def detach_neuron_layers(layers, dialect):
        if dialect == ALEXNET:
            for name, l in layers.items():  # a snapshot: layers added here are not visited
                if l["type"] != "neuron" and "neuron" in l and l["neuron"]:
                    NeuronLayerParser(dialect).detach_neuron_layer_chm(name, layers)
            return layers
        layers_new = []
        for i, l in enumerate(layers):
            layers_new += [l]
            if l["type"] != "neuron" and "neuron" in l and l["neuron"]:
                NeuronLayerParser(dialect).detach_neuron_layer(i, layers, layers_new)
        return layers_new

    @staticmethod
    def parse_layers(layer_cfg_path, param_cfg_path, model, layers=None, dialect=CUDA_CONVNET):
        """Parses both files; with `layers` (from a checkpoint) only layer-params.cfg is read.

        Returns a list (cuda-convnet) or a dict keyed by name (alexnet). Raises
        LayerParsingError; prints the 2012 "Initialized ..." lines to stdout.
        """
        if dialect not in DIALECTS:
            raise LayerParsingError("Unknown dialect '%s' (choose from %s)" % (dialect, ", ".join(DIALECTS)))
        chm = dialect == ALEXNET
        parsers = layer_parsers(dialect)
        path = layer_cfg_path
        try:
            if not os.path.exists(layer_cfg_path):
                raise LayerParsingError("Layer definition file '%s' does not exist" % layer_cfg_path)
            if not os.path.exists(param_cfg_path):
                raise LayerParsingError("Layer parameter file '%s' does not exist" % param_cfg_path, param_cfg_path)
            if not layers:
                layers = Py2Dict() if chm else []
                mcp = _read_config(layer_cfg_path)
                for name in mcp.sections():
                    if not mcp.has_option(name, "type"):
                        raise LayerParsingError("Layer '%s': no type given" % name)
                    ltype = mcp.safe_get(name, "type")
                    if ltype not in parsers:
                        raise LayerParsingError("Layer '%s': Unknown layer type: '%s'" % (name, ltype))
                    parsed = _parse_guarded(name, lambda: parsers[ltype]().parse(name, mcp, layers, model))
                    if chm:
                        layers[name] = parsed
                    else:
                        layers += [parsed]

                layers = _parse_guarded("", lambda: LayerParser.detach_neuron_layers(layers, dialect))
                for l in (layers.values() if chm else layers):
                    l["parser"].optimize(layers)
                    del l["parser"]
                _check_unused(layers, chm)
            elif chm and not isinstance(layers, Py2Dict):
                layers = _as_py2dict(layers)

            path = param_cfg_path
            mcp = _read_config(param_cfg_path)
            for l in (layers.values() if chm else layers):
                if not mcp.has_section(l["name"]) and l["requiresParams"]:
                    raise LayerParsingError("Layer '%s' of type '%s' requires extra parameters, but none given in file '%s'."
                                            % (l["name"], l["type"], param_cfg_path))
                lp = parsers[l["type"]]().init(l)
                _parse_guarded(l["name"], lambda: lp.add_params(mcp))
                lp.dic["conserveMem"] = model.op.get_value("conserve_mem")
        except LayerParsingError as e:
            if e.path is None:
                e.path = path
            raise
        return _in_definition_order(layers) if chm else layers

    @staticmethod
    def register_layer_parser(ltype, cls):
        if ltype in _LAYER_PARSERS:
            raise LayerParsingError("Layer type '%s' already registered" % ltype)
        _LAYER_PARSERS[ltype] = cls


def _parse_guarded(name, fn):
    """Runs one layer's parsing step. Where the 2012 parser crashed on a value it could not
    compute with (channels=0, stride=0, a negative size...), report it as a config error."""
    try:
        return fn()
    except (ArithmeticError, ValueError, MemoryError) as e:
        where = "Layer '%s': " % name if name else ""
        # MemoryError: sizes that parse (outputs=99999999) but whose weights do not fit
        what = ("not enough memory for the layer's weights" if isinstance(e, MemoryError)
                else "cannot compute the layer's geometry from its parameters")
        raise LayerParsingError("%s%s (%s)" % (where, what, e)) from None


def _check_unused(layers, chm):
    """Every layer but a cost must feed some other layer."""
    items = layers.items() if chm else [(l["name"], l) for l in layers]
    for name, l in items:
        if l["type"].startswith("cost."):
            continue
        consumers = [l2 for _, l2 in items if "inputs" in l2]
        if chm:
            found = any(name in l2["inputs"] for l2 in consumers)
        else:
            found = any(name in [layers[i]["name"] for i in l2["inputs"]] for l2 in consumers)
        if not found:
            raise LayerParsingError("Layer '%s' of type '%s' is unused" % (name, l["type"]))


def _as_py2dict(layers):
    """The AlexNet layers dict as the 2012 code had it after loading a checkpoint: the dict
    built by parsing (layers.cfg order, then the neuron layers in detach order) was pickled
    in its Python 2 order and rebuilt in that order by unpickling."""
    plain = [k for k, l in layers.items() if "src_layer" not in l]
    detached = {l["src_layer"]: k for k, l in layers.items() if "src_layer" in l}
    built = Py2Dict()
    for k in plain:
        built[k] = None
    for k in list(built):  # detach_neuron_layers walked a snapshot in Python 2 order
        if k in detached:
            built[detached[k]] = None
    extra = [k for k in layers if k not in built]
    rebuilt = Py2Dict()
    for k in list(built) + extra:
        rebuilt[k] = layers[k]
    return rebuilt


def _in_definition_order(layers):
    """The AlexNet parser's dict, re-ordered: layers.cfg order, then the detached neuron
    layers in their source layers' order (Python 2's hash order carried no meaning)."""
    names = layers.insertion_order() if isinstance(layers, Py2Dict) else list(layers)
    plain = [k for k in names if "src_layer" not in layers[k]]
    detached = sorted((k for k in names if "src_layer" in layers[k]),
                      key=lambda k: plain.index(layers[k]["src_layer"]) if layers[k]["src_layer"] in plain else len(plain))
    return {k: layers[k] for k in plain + detached}


class LayerWithInputParser(LayerParser):
    """Any layer that takes input (everything but data layers)."""

    def __init__(self, dialect, num_inputs=-1):
        super().__init__(dialect)
        self.num_inputs = num_inputs

    def verify_num_params(self, params):
        for param in params:
            if len(self.dic[param]) != len(self.dic["inputs"]):
                raise LayerParsingError("Layer '%s': %s list length does not match number of inputs"
                                        % (self.dic["name"], param))

    def optimize(self, layers):
        LayerParser.optimize(self, layers)
        dic = self.dic
        if dic["forceOwnActs"]:
            return
        if self.chm:
            # The AlexNet code walks the dict's keys (names) here, so the count below is
            # always 0 and nothing is shared, unless a name contains 'inputs' - then it
            # crashed. Reproduce the outcome, and make the crash an error message.
            for inp in dic["inputLayers"]:
                if inp["outputs"] == dic["outputs"]:
                    bad = [k for k in layers if "inputs" in k]
                    if bad:
                        raise LayerParsingError("Layer '%s': the AlexNet 2012 parser cannot handle a layer named '%s' "
                                                "(a name containing 'inputs')" % (dic["name"], bad[0]))
            return
        for i, inp in enumerate(dic["inputs"]):
            l = layers[inp]
            if l["outputs"] == dic["outputs"] and sum("inputs" in ll and inp in ll["inputs"] for ll in layers) == 1:
                # Share the input's output matrix if neither of us needs it afterwards.
                if not l["usesActs"] and not dic["usesInputs"]:
                    dic["actsTarget"] = i
                dic["actsGradTarget"] = i

    def parse(self, name, mcp, prev_layers, model=None):
        dic = LayerParser.parse(self, name, mcp, prev_layers, model)
        dic["inputs"] = [inp.strip(" \t\n\r\x0b\x0c") for inp in mcp.safe_get(name, "inputs").split(",")]
        if self.chm:
            for inp in dic["inputs"]:
                if inp not in prev_layers:
                    raise LayerParsingError("Layer '%s': input layer '%s' not defined" % (name, inp))
            dic["inputLayers"] = [prev_layers[inp] for inp in dic["inputs"]]
        else:
            prev_names = [p["name"] for p in prev_layers]
            for inp in dic["inputs"]:
                if inp not in prev_names:
                    raise LayerParsingError("Layer '%s': input layer '%s' not defined" % (name, inp))
            dic["inputs"] = [prev_names.index(inp) for inp in dic["inputs"]]
            dic["inputLayers"] = [prev_layers[inp] for inp in dic["inputs"]]
        for inp in dic["inputLayers"]:
            if inp["outputs"] == 0:
                raise LayerParsingError("Layer '%s': input layer '%s' does not produce any output" % (name, inp["name"]))
        dic["numInputs"] = [inp["outputs"] for inp in dic["inputLayers"]]

        dic["neuron"] = mcp.safe_get(name, "neuron", default="")
        if self.num_inputs > 0 and len(dic["numInputs"]) != self.num_inputs:
            # (2012 passed these as separate exception arguments, printing a tuple)
            raise LayerParsingError("Layer '%s': number of inputs must be %d" % (name, self.num_inputs))

        if self.chm:
            dic["gpu"] = mcp.safe_get_int(name, "gpu", default=dic["inputLayers"][0]["gpu"])
            if model:
                self.verify_int_in(dic["gpu"], "gpu", range(0, model.op.get_value("num_gpus")))
        return dic

    def verify_img_size(self):
        dic = self.dic
        if dic["numInputs"][0] % dic["imgPixels"] != 0 or dic["imgSize"] * dic["imgSize"] != dic["imgPixels"]:
            raise LayerParsingError("Layer '%s': has %-d dimensional input, not interpretable as %d-channel images"
                                    % (dic["name"], dic["numInputs"][0], dic["channels"]))

    @staticmethod
    def grad_consumers_below(dic):
        if dic["gradConsumer"]:
            return True
        if "inputLayers" in dic:
            return any(LayerWithInputParser.grad_consumers_below(l) for l in dic["inputLayers"])
        return False

    def verify_no_grads(self):
        if LayerWithInputParser.grad_consumers_below(self.dic):
            raise LayerParsingError("Layer '%s': layers of type '%s' cannot propagate gradient and must not be placed "
                                    "over layers with parameters." % (self.dic["name"], self.dic["type"]))

    def shares_matrices(self):
        """A layer that needs neither its own output nor its inputs to back-propagate, and
        may borrow its gradient matrix: the parts of the 2012 memory-sharing scheme."""
        self.dic["forceOwnActs"] = False
        self.dic["usesActs"] = False
        self.dic["usesInputs"] = False

    def img_from_channels(self, channels):
        """imgPixels and imgSize of the first input read as `channels`-channel square images."""
        dic = self.dic
        dic["imgPixels"] = dic["numInputs"][0] // channels
        dic["imgSize"] = int(n.sqrt(dic["imgPixels"]))


class NailbedLayerParser(LayerWithInputParser):
    def __init__(self, dialect):
        super().__init__(dialect, num_inputs=1)

    def parse(self, name, mcp, prev_layers, model=None):
        dic = LayerWithInputParser.parse(self, name, mcp, prev_layers, model)
        self.shares_matrices()
        dic["channels"] = mcp.safe_get_int(name, "channels")
        dic["stride"] = mcp.safe_get_int(name, "stride")
        self.verify_num_range(dic["channels"], "channels", 1, None)

        self.img_from_channels(dic["channels"])
        dic["outputsX"] = (dic["imgSize"] + dic["stride"] - 1) // dic["stride"]
        dic["start"] = (dic["imgSize"] - dic["stride"] * (dic["outputsX"] - 1)) // 2
        dic["outputs"] = dic["channels"] * dic["outputsX"] ** 2
        self.verify_num_range(dic["outputsX"], "outputsX", 0, None)
        self.verify_img_size()
        print("Initialized bed-of-nails layer '%s'%s, producing %dx%d %d-channel output"
              % (name, self.on_gpu(), dic["outputsX"], dic["outputsX"], dic["channels"]))
        return dic


class GaussianBlurLayerParser(LayerWithInputParser):
    def __init__(self, dialect):
        super().__init__(dialect, num_inputs=1)

    def parse(self, name, mcp, prev_layers, model=None):
        dic = LayerWithInputParser.parse(self, name, mcp, prev_layers, model)
        self.shares_matrices()
        dic["outputs"] = dic["numInputs"][0]
        dic["channels"] = mcp.safe_get_int(name, "channels")
        dic["filterSize"] = mcp.safe_get_int(name, "filterSize")
        dic["stdev"] = mcp.safe_get_float(name, "stdev")
        self.verify_num_range(dic["channels"], "channels", 1, None)
        self.verify_int_in(dic["filterSize"], "filterSize", [3, 5, 7, 9])

        self.img_from_channels(dic["channels"])
        centre = dic["filterSize"] // 2
        dic["filter"] = n.array([exp(-(centre - i) ** 2 / float(2 * dic["stdev"] ** 2))
                                 for i in range(dic["filterSize"])], dtype=n.float32).reshape(1, dic["filterSize"])
        dic["filter"] /= dic["filter"].sum()
        self.verify_img_size()
        if dic["filterSize"] > dic["imgSize"]:
            raise LayerParsingError("Later '%s': filter size (%d) must be smaller than image size (%d)."
                                    % (dic["name"], dic["filterSize"], dic["imgSize"]))
        print("Initialized Gaussian blur layer '%s', producing %dx%d %d-channel output"
              % (name, dic["imgSize"], dic["imgSize"], dic["channels"]))
        return dic


class HorizontalReflectionLayerParser(LayerWithInputParser):
    def __init__(self, dialect):
        super().__init__(dialect, num_inputs=1)

    def parse(self, name, mcp, prev_layers, model=None):
        dic = LayerWithInputParser.parse(self, name, mcp, prev_layers, model)
        dic["outputs"] = dic["numInputs"][0]
        dic["channels"] = mcp.safe_get_int(name, "channels")
        self.verify_num_range(dic["channels"], "channels", 1, 3)
        self.img_from_channels(dic["channels"])
        self.verify_img_size()
        print("Initialized horizontal reflection layer '%s', producing %dx%d %d-channel output"
              % (name, dic["imgSize"], dic["imgSize"], dic["channels"]))
        return dic


class ResizeLayerParser(LayerWithInputParser):
    def __init__(self, dialect):
        super().__init__(dialect, num_inputs=1)

    def parse(self, name, mcp, prev_layers, model=None):
        dic = LayerWithInputParser.parse(self, name, mcp, prev_layers, model)
        self.shares_matrices()
        dic["channels"] = mcp.safe_get_int(name, "channels")
        self.img_from_channels(dic["channels"])
        dic["scale"] = mcp.safe_get_float(name, "scale")
        dic["tgtSize"] = int(floor(dic["imgSize"] / dic["scale"]))
        dic["tgtPixels"] = dic["tgtSize"] ** 2
        self.verify_num_range(dic["channels"], "channels", 1, None)
        self.verify_float_range(dic["scale"], "scale", 0.5, 2)  # larger scalings are not recommended
        dic["outputs"] = dic["channels"] * dic["tgtPixels"]
        self.verify_img_size()
        self.verify_no_grads()
        print("Initialized resize layer '%s', producing %dx%d %d-channel output"
              % (name, dic["tgtSize"], dic["tgtSize"], dic["channels"]))
        return dic


class RandomScaleLayerParser(LayerWithInputParser):
    def __init__(self, dialect):
        super().__init__(dialect, num_inputs=1)

    def parse(self, name, mcp, prev_layers, model=None):
        dic = LayerWithInputParser.parse(self, name, mcp, prev_layers, model)
        self.shares_matrices()
        dic["channels"] = mcp.safe_get_int(name, "channels")
        self.verify_num_range(dic["channels"], "channels", 1, None)
        self.img_from_channels(dic["channels"])
        dic["maxScale"] = mcp.safe_get_float(name, "maxScale")
        if self.chm:  # the AlexNet code crops to a given size after a random rescale
            dic["tgtSize"] = mcp.safe_get_int(name, "tgtSize")
            min_size = int(floor(dic["imgSize"] / dic["maxScale"]))
            max_size = dic["imgSize"]
            if dic["tgtSize"] < min_size:
                raise LayerParsingError("Layer '%s': target size must be greater than minimum image size after "
                                        "rescaling (%d)" % (name, min_size))
            if dic["tgtSize"] > max_size:
                raise LayerParsingError("Layer '%s': target size must be smaller than maximum image size after "
                                        "rescaling (%d)" % (name, max_size))
        else:
            dic["tgtSize"] = int(floor(dic["imgSize"] / dic["maxScale"]))
        dic["tgtPixels"] = dic["tgtSize"] ** 2
        self.verify_float_range(dic["maxScale"], "maxScale", 1, 2)
        dic["outputs"] = dic["channels"] * dic["tgtPixels"]
        self.verify_img_size()
        self.verify_no_grads()
        print("Initialized random scale layer '%s', producing %dx%d %d-channel output"
              % (name, dic["tgtSize"], dic["tgtSize"], dic["channels"]))
        return dic


class ColorTransformLayerParser(LayerWithInputParser):
    def __init__(self, dialect):
        super().__init__(dialect, num_inputs=1)

    def parse(self, name, mcp, prev_layers, model=None):
        dic = LayerWithInputParser.parse(self, name, mcp, prev_layers, model)
        self.shares_matrices()
        self.img_from_channels(3)
        dic["channels"] = 3
        dic["outputs"] = dic["numInputs"][0]
        self.verify_img_size()
        self.verify_no_grads()
        return dic


class RGBToYUVLayerParser(ColorTransformLayerParser):
    def parse(self, name, mcp, prev_layers, model=None):
        dic = ColorTransformLayerParser.parse(self, name, mcp, prev_layers, model)
        print("Initialized RGB --> YUV layer '%s', producing %dx%d %d-channel output"
              % (name, dic["imgSize"], dic["imgSize"], dic["channels"]))
        return dic


class RGBToLABLayerParser(ColorTransformLayerParser):
    def parse(self, name, mcp, prev_layers, model=None):
        dic = ColorTransformLayerParser.parse(self, name, mcp, prev_layers, model)
        dic["center"] = mcp.safe_get_bool(name, "center", default=False)
        print("Initialized RGB --> LAB layer '%s', producing %dx%d %d-channel output"
              % (name, dic["imgSize"], dic["imgSize"], dic["channels"]))
        return dic


class NeuronLayerParser(LayerWithInputParser):
    def __init__(self, dialect):
        super().__init__(dialect, num_inputs=1)

    @staticmethod
    def get_unused_layer_name(layer_names, wish):
        if wish not in layer_names:
            return wish
        for i in range(1, 100):
            name = "%s.%d" % (wish, i)
            if name not in layer_names:
                return name
        raise LayerParsingError("Unable to find an unused name for layer '%s'." % wish)

    def parse_neuron(self, neuron_str):
        parsers = _neuron_parsers(self.dialect)
        for p in parsers:
            parsed = p.parse(neuron_str)
            if parsed:
                self.dic["neuron"] = parsed
                self.dic["usesActs"] = parsed["usesActs"]
                self.dic["usesInputs"] = parsed["usesInputs"]
                return
        # 2012 printed a table here; one line with the same content reads better in a log.
        raise LayerParsingError("Layer '%s': unable to parse neuron type '%s'. Valid neuron types: %s. "
                                "Where neurons have parameters, they must be floats."
                                % (self.dic["name"], neuron_str,
                                   ", ".join("%s (%s)" % (p.type, p.func_str) for p in parsers)))

    def detach_neuron_layer(self, idx, layers, layers_new):
        """cuda-convnet: insert a neuron layer right after layers[idx]; re-index the inputs
        of the layers above (but not their inputLayers, as 2012 did not)."""
        dic = self.dic
        self.set_defaults()
        dic["name"] = NeuronLayerParser.get_unused_layer_name({l["name"] for l in layers},
                                                              "%s_neuron" % layers[idx]["name"])
        dic["type"] = "neuron"
        dic["inputs"] = layers[idx]["name"]
        dic["neuron"] = layers[idx]["neuron"]
        dic = self.parse(dic["name"], FakeConfigParser(dic, False), layers_new)
        for l in layers[idx + 1:]:
            if "inputs" in l:
                l["inputs"] = [i + (i >= len(layers_new) - 1) for i in l["inputs"]]
            if "weightSourceLayerIndices" in l:
                l["weightSourceLayerIndices"] = [i + (i >= len(layers_new)) for i in l["weightSourceLayerIndices"]]
        layers_new += [dic]

    def detach_neuron_layer_chm(self, src_name, layers):
        """AlexNet code: add a neuron layer on top of `src_name` and point its consumers
        (inputs and inputLayers) at it."""
        dic = self.dic
        dic["name"] = NeuronLayerParser.get_unused_layer_name(layers, "%s_neuron" % src_name)
        dic["type"] = "neuron"
        dic["inputs"] = src_name
        dic["neuron"] = layers[src_name]["neuron"]
        dic["gpu"] = layers[src_name]["gpu"]
        dic = self.parse(dic["name"], FakeConfigParser(dic, True), layers)
        dic["src_layer"] = src_name
        for l in layers.values():
            if "inputs" in l:
                l["inputs"] = [inp if inp != src_name else dic["name"] for inp in l["inputs"]]
                l["inputLayers"] = [inp if inp["name"] != src_name else dic for inp in l["inputLayers"]]
        layers[dic["name"]] = dic

    def parse(self, name, mcp, prev_layers, model=None):
        dic = LayerWithInputParser.parse(self, name, mcp, prev_layers, model)
        dic["outputs"] = dic["numInputs"][0]
        self.parse_neuron(dic["neuron"])
        dic["forceOwnActs"] = False
        print("Initialized neuron layer '%s'%s, producing %d outputs" % (name, self.on_gpu(), dic["outputs"]))
        return dic


class EltwiseSumLayerParser(LayerWithInputParser):
    def parse(self, name, mcp, prev_layers, model):
        dic = LayerWithInputParser.parse(self, name, mcp, prev_layers, model)
        if len(set(dic["numInputs"])) != 1:
            raise LayerParsingError("Layer '%s': all inputs must have the same dimensionality. Got dimensionalities: %s"
                                    % (name, ", ".join(str(s) for s in dic["numInputs"])))
        dic["outputs"] = dic["numInputs"][0]
        dic["usesInputs"] = False
        dic["usesActs"] = False
        dic["forceOwnActs"] = False
        dic["coeffs"] = mcp.safe_get_float_list(name, "coeffs", default=[1.0] * len(dic["inputs"]))
        print("Initialized elementwise sum layer '%s'%s, producing %d outputs" % (name, self.on_gpu(), dic["outputs"]))
        return dic


class EltwiseMaxLayerParser(LayerWithInputParser):
    def parse(self, name, mcp, prev_layers, model):
        dic = LayerWithInputParser.parse(self, name, mcp, prev_layers, model)
        if len(dic["inputs"]) < 2:
            raise LayerParsingError("Layer '%s': elementwise max layer must have at least 2 inputs, got %d."
                                    % (name, len(dic["inputs"])))
        if len(set(dic["numInputs"])) != 1:
            raise LayerParsingError("Layer '%s': all inputs must have the same dimensionality. Got dimensionalities: %s"
                                    % (name, ", ".join(str(s) for s in dic["numInputs"])))
        dic["outputs"] = dic["numInputs"][0]
        print("Initialized elementwise max layer '%s'%s, producing %d outputs" % (name, self.on_gpu(), dic["outputs"]))
        return dic


class HiddenSexLayerParser(LayerWithInputParser):
    """'hs', the 2012 name for dropout: keep a unit with probability `keep` in training,
    multiply by `keep` at test time."""

    def __init__(self, dialect):
        super().__init__(dialect, num_inputs=1)

    def add_params(self, mcp):
        LayerWithInputParser.add_params(self, mcp)
        self.dic["enable"] = mcp.safe_get_bool(self.dic["name"], "enable")

    def parse(self, name, mcp, prev_layers, model):
        dic = LayerWithInputParser.parse(self, name, mcp, prev_layers, model)
        dic["requiresParams"] = True
        dic["usesInputs"] = False
        dic["usesActs"] = False
        dic["forceOwnActs"] = False
        dic["outputs"] = dic["numInputs"][0]
        dic["keep"] = mcp.safe_get_float(name, "keep")
        print("Initialized hidden sex layer '%s'%s, producing %d outputs" % (name, self.on_gpu(), dic["outputs"]))
        return dic


class ConcatenationLayerParser(LayerWithInputParser):
    def parse(self, name, mcp, prev_layers, model):
        dic = LayerWithInputParser.parse(self, name, mcp, prev_layers, model)
        dic["outputs"] = sum(l["outputs"] for l in dic["inputLayers"])
        dic["copyOffsets"] = [sum(dic["inputLayers"][j]["outputs"] for j in range(i))
                              for i in range(len(dic["inputLayers"]))]
        print("Initialized concatenation layer '%s'%s, producing %d outputs" % (name, self.on_gpu(), dic["outputs"]))
        return dic


class WeightLayerParser(LayerWithInputParser):
    LAYER_PAT = re.compile(r"^\s*([^\s\[]+)(?:\[(\d+)\])?\s*$", re.ASCII)  # 'layer' or 'layer[5]'

    @staticmethod
    def get_layer_name(name_str):
        m = WeightLayerParser.LAYER_PAT.match(name_str)
        if not m:
            return None
        return m.group(1), m.group(2)

    def src_key(self):
        """Where a weight layer records the layers it shares matrices with."""
        return "weightSourceLayers" if self.chm else "weightSourceLayerIndices"

    def add_params(self, mcp):
        LayerWithInputParser.add_params(self, mcp)
        dic, name = self.dic, self.dic["name"]
        dic["epsW"] = mcp.safe_get_float_list(name, "epsW")
        dic["epsB"] = mcp.safe_get_float(name, "epsB")
        dic["momW"] = mcp.safe_get_float_list(name, "momW")
        dic["momB"] = mcp.safe_get_float(name, "momB")
        if self.chm:
            dic["superEps"] = mcp.safe_get_float(name, "superEps", default=0.0)
            dic["superMom"] = mcp.safe_get_float(name, "superMom", default=0.0)
            dic["wc"] = mcp.safe_get_float_list(name, "wc", default=[0.0] * len(dic["inputs"]))
            dic["wball"] = mcp.safe_get_float_list(name, "wball", default=[0.0] * len(dic["inputs"]))
            dic["wballNormed"] = [wball * nweights for wball, nweights in zip(dic["wball"], dic["weightsPerFilter"])]
            self.verify_num_params(["epsW", "momW", "wc", "wball"])
            dic["schedW"] = self.parse_params(mcp, LRS_PARSERS, "schedW", "default", "learning rate schedule")
            dic["schedB"] = self.parse_params(mcp, LRS_PARSERS, "schedB", "default", "learning rate schedule")
        else:
            dic["wc"] = mcp.safe_get_float_list(name, "wc")
            self.verify_num_params(["epsW", "momW", "wc"])
        dic["gradConsumer"] = dic["epsB"] > 0 or any(w > 0 for w in dic["epsW"])

    @staticmethod
    def unshare_weights(layer, layers, matrix_idx=None):
        """--unshare-weights: give layer[idx] its own copy of a shared weight matrix."""
        key = "weightSourceLayers" if "weightSourceLayers" in layer else "weightSourceLayerIndices"
        if key not in layer:
            return
        chm = key == "weightSourceLayers"
        indices = range(len(layer["inputs"])) if matrix_idx is None else [int(matrix_idx)]
        for i in indices:
            src = layer[key][i]
            if (src != "") if chm else (src >= 0):
                src_name = src if chm else _layer_list(layers)[src]["name"]
                src_matrix_idx = layer["weightSourceMatrixIndices"][i]
                layer[key][i] = "" if chm else -1
                layer["weightSourceMatrixIndices"][i] = -1
                layer["weights"][i] = layer["weights"][i].copy()
                layer["weightsInc"][i] = n.zeros_like(layer["weights"][i])
                print("Unshared weight matrix %s[%d] from %s[%d]." % (layer["name"], i, src_name, src_matrix_idx))
            else:
                print("Weight matrix %s[%d] already unshared." % (layer["name"], i))

    def call_init_func(self, param_name, shapes, input_idx=-1):
        """Weights from a user function `module.func(params)`, called as 2012 did:
        func(name, idx, shape, params=[...]) for weights, func(name, shape, params=[...])
        for biases. The module is imported from the working directory or the config's."""
        dic = self.dic
        m = re.match(r"^([^\.]+)\.([^\(\)]+)\s*(?:\(([^,]+(?:,[^,]+)*)\))?$", dic[param_name])
        if not m:
            raise LayerParsingError("Layer '%s': '%s' parameter must have format 'moduleName.functionName(param1,"
                                    "param2,...)'; got: %s." % (dic["name"], param_name, dic["initWFunc"]))
        module, func = m.group(1), m.group(2)
        params = m.group(3).split(",") if m.group(3) is not None else []
        try:
            import importlib
            mod = importlib.import_module(module)
            f = getattr(mod, func)
            return f(dic["name"], input_idx, shapes, params=params) if input_idx >= 0 else f(dic["name"], shapes, params=params)
        except (ImportError, AttributeError, TypeError) as e:
            raise LayerParsingError("Layer '%s': %s." % (dic["name"], e))
        except Exception as e:  # 2012 showed a traceback; this names the function and its error
            raise LayerParsingError("Layer '%s': %s %s failed: %s: %s"
                                    % (dic["name"], param_name, dic[param_name], type(e).__name__, e)) from None

    def make_weights(self, initW, rows, cols, order="C"):
        dic = self.dic
        dic["weights"], dic["weightsInc"] = [], []
        if dic["initWFunc"]:
            for i in range(len(dic["inputs"])):
                w = self.call_init_func("initWFunc", (rows[i], cols[i]), input_idx=i)
                if type(w) != n.ndarray:
                    raise LayerParsingError("Layer '%s[%d]': weight initialization function %s must return numpy.ndarray "
                                            "object. Got: %s." % (dic["name"], i, dic["initWFunc"], type(w)))
                if w.dtype != n.float32:
                    raise LayerParsingError("Layer '%s[%d]': weight initialization function %s must weight matrices "
                                            "consisting of single-precision floats. Got: %s."
                                            % (dic["name"], i, dic["initWFunc"], w.dtype))
                if w.shape != (rows[i], cols[i]):
                    raise LayerParsingError("Layer '%s[%d]': weight matrix returned by weight initialization function %s "
                                            "has wrong shape. Should be: %s; got: %s."
                                            % (dic["name"], i, dic["initWFunc"], (rows[i], cols[i]), w.shape))
                dic["weights"] += [n.require(w, requirements=order)]
                dic["weightsInc"] += [n.zeros_like(dic["weights"][i])]
                print("Layer '%s[%d]' initialized weight matrices from function %s" % (dic["name"], i, dic["initWFunc"]))
            return
        for i in range(len(dic["inputs"])):
            src = dic[self.src_key()][i]
            if (src != "") if self.chm else (src >= 0):  # a shared weight matrix
                if self.chm:
                    src_layer = self.prev_layers[src] if src != dic["name"] else dic
                else:
                    src_layer = self.prev_layers[src] if src < len(self.prev_layers) else dic
                dic["weights"] += [src_layer["weights"][dic["weightSourceMatrixIndices"][i]]]
                dic["weightsInc"] += [src_layer["weightsInc"][dic["weightSourceMatrixIndices"][i]]]
                if dic["weights"][i].shape != (rows[i], cols[i]):
                    raise LayerParsingError("Layer '%s': weight sharing source matrix '%s' has shape %dx%d; should be %dx%d."
                                            % (dic["name"], dic["weightSource"][i], dic["weights"][i].shape[0],
                                               dic["weights"][i].shape[1], rows[i], cols[i]))
                print("Layer '%s' initialized weight matrix %d from %s" % (dic["name"], i, dic["weightSource"][i]))
            else:
                # float64 draws scaled in float64, then rounded to float32: the 2012 values.
                dic["weights"] += [n.array(initW[i] * nr.randn(rows[i], cols[i]), dtype=n.single, order=order)]
                dic["weightsInc"] += [n.zeros_like(dic["weights"][i])]

    def make_biases(self, rows, cols, order="C"):
        dic = self.dic
        if dic["initBFunc"]:
            b = self.call_init_func("initBFunc", (rows, cols))
            if type(b) != n.ndarray:
                raise LayerParsingError("Layer '%s': bias initialization function %s must return numpy.ndarray object. "
                                        "Got: %s." % (dic["name"], dic["initBFunc"], type(b)))
            if b.dtype != n.float32:
                raise LayerParsingError("Layer '%s': bias initialization function %s must return numpy.ndarray object "
                                        "consisting of single-precision floats. Got: %s."
                                        % (dic["name"], dic["initBFunc"], b.dtype))
            if b.shape != (rows, cols):
                raise LayerParsingError("Layer '%s': bias vector returned by bias initialization function %s has wrong "
                                        "shape. Should be: %s; got: %s." % (dic["name"], dic["initBFunc"], (rows, cols), b.shape))
            dic["biases"] = n.require(b, requirements=order)
            print("Layer '%s' initialized bias vector from function %s" % (dic["name"], dic["initBFunc"]))
        else:
            # cuda-convnet always made C-ordered biases; the AlexNet code used `order`.
            dic["biases"] = dic["initB"] * n.ones((rows, cols), order=order if self.chm else "C", dtype=n.single)
        dic["biasesInc"] = n.zeros_like(dic["biases"])

    def parse(self, name, mcp, prev_layers, model):
        dic = LayerWithInputParser.parse(self, name, mcp, prev_layers, model)
        dic["requiresParams"] = True
        dic["gradConsumer"] = True
        if self.chm:
            dic["usesActs"] = False
        # (the float default makes a missing initW an error, as in 2012)
        dic["initW"] = mcp.safe_get_float_list(name, "initW", default=0.01)
        dic["initB"] = mcp.safe_get_float(name, "initB", default=0)
        dic["initWFunc"] = mcp.safe_get(name, "initWFunc", default="")
        dic["initBFunc"] = mcp.safe_get(name, "initBFunc", default="")
        dic["weightSource"] = mcp.safe_get_list(name, "weightSource", default=[""] * len(dic["inputs"]))
        self.verify_num_params(["initW", "weightSource"])

        prev_names = list(prev_layers) if self.chm else [l["name"] for l in prev_layers]
        dic[self.src_key()] = []
        dic["weightSourceMatrixIndices"] = []
        for i, src_name in enumerate(dic["weightSource"]):
            src_layer_idx = src_layer_matrix_idx = -1
            src_layer_name = ""
            if src_name != "":
                src_layer_match = WeightLayerParser.get_layer_name(src_name)
                if src_layer_match is None:
                    raise LayerParsingError("Layer '%s': unable to parse weight sharing source '%s'. Format is "
                                            "layer[idx] or just layer, in which case idx=0 is used." % (name, src_name))
                src_layer_name = src_layer_match[0]
                src_layer_matrix_idx = int(src_layer_match[1]) if src_layer_match[1] is not None else 0
                if src_layer_name not in prev_names and src_layer_name != name:
                    raise LayerParsingError("Layer '%s': weight sharing source layer '%s' does not exist."
                                            % (name, src_layer_name))
                src_layer_idx = prev_names.index(src_layer_name) if src_layer_name != name else len(prev_names)
                if src_layer_name == name:
                    src_layer = dic
                else:
                    src_layer = prev_layers[src_layer_name] if self.chm else prev_layers[src_layer_idx]
                if self.chm and src_layer["gpu"] != dic["gpu"]:
                    raise LayerParsingError("Layer '%s': weight sharing source layer '%s' runs on GPU %d, while '%s' runs "
                                            "on GPU %d." % (name, src_layer_name, src_layer["gpu"], name, dic["gpu"]))
                if src_layer["type"] != dic["type"]:
                    raise LayerParsingError("Layer '%s': weight sharing source layer '%s' is of type '%s'; should be '%s'."
                                            % (name, src_layer_name, src_layer["type"], dic["type"]))
                if src_layer_name != name and len(src_layer["weights"]) <= src_layer_matrix_idx:
                    raise LayerParsingError("Layer '%s': weight sharing source layer '%s' has %d weight matrices, but "
                                            "'%s[%d]' requested." % (name, src_layer_name, len(src_layer["weights"]),
                                                                     src_name, src_layer_matrix_idx))
                if src_layer_name == name and src_layer_matrix_idx >= i:
                    raise LayerParsingError("Layer '%s': weight sharing source '%s[%d]' not defined yet."
                                            % (name, name, src_layer_matrix_idx))
            dic[self.src_key()] += [src_layer_name if self.chm else src_layer_idx]
            dic["weightSourceMatrixIndices"] += [src_layer_matrix_idx]
        return dic


class FCLayerParser(WeightLayerParser):
    def parse(self, name, mcp, prev_layers, model):
        dic = WeightLayerParser.parse(self, name, mcp, prev_layers, model)
        dic["usesActs"] = False
        dic["outputs"] = mcp.safe_get_int(name, "outputs")
        if self.chm:
            dic["weightsPerFilter"] = dic["numInputs"]
        self.verify_num_range(dic["outputs"], "outputs", 1, None)
        self.make_weights(dic["initW"], dic["numInputs"], [dic["outputs"]] * len(dic["numInputs"]), order="F")
        self.make_biases(1, dic["outputs"], order="F")
        print("Initialized fully-connected layer '%s'%s, producing %d outputs" % (name, self.on_gpu(), dic["outputs"]))
        return dic


class TreeFCLayerParser(WeightLayerParser):
    """An fc layer over a class hierarchy (batches.meta 'tree' and 'all_wnids')."""

    def __init__(self, dialect):
        super().__init__(dialect, num_inputs=1)

    def parse(self, name, mcp, prev_layers, model):
        dic = WeightLayerParser.parse(self, name, mcp, prev_layers, model)
        dp = model.train_data_provider
        meta = getattr(dp, "batch_meta", None) or {}
        for key in ("tree", "all_wnids"):
            if key not in meta:
                raise LayerParsingError("Layer '%s': a treefc layer needs the class hierarchy, but the data's "
                                        "batches.meta has no '%s'" % (name, key))
        num_classes = dp.get_num_classes()
        dic["tree"] = [meta["tree"][i] for i in range(len(meta["tree"]))]
        dic["rootLabel"] = meta["all_wnids"]["gproot"]
        if len(set(dic["weightSourceLayers"])) > 1 or dic["weightSourceLayers"][0] != "":
            raise LayerParsingError("Layer '%s': weight sharing not allowed in tree-fc layers." % name)
        dic["outputs"] = num_classes
        dic["weightsPerFilter"] = dic["numInputs"]
        self.make_weights(dic["initW"], dic["numInputs"], [len(dic["tree"])], order="F")
        dic["weights"][0][:, num_classes:] = 0  # only the leaves (the classes) start non-zero
        self.make_biases(1, dic["outputs"], order="F")
        print("Initialized tree-fc layer '%s'%s, producing %d outputs" % (name, self.on_gpu(), dic["outputs"]))
        return dic


def _layer_list(layers):
    return list(layers.values()) if isinstance(layers, dict) else layers


class LocalLayerParser(WeightLayerParser):
    @staticmethod
    def conv_to_local(layers, idx):
        """--conv-to-local: turn conv layer layers[idx] (an index into the list, or a name
        into the AlexNet dict) into an unshared local layer, its filters copied to every
        module; layers sharing its weights follow."""
        layer = layers[idx]
        if layer["type"] != "conv":
            return layer
        chm = "weightSourceLayers" in layer
        key = "weightSourceLayers" if chm else "weightSourceLayerIndices"
        layer["type"] = "local"
        for inp in range(len(layer["inputs"])):
            src = layer[key][inp]
            if (src != "") if chm else (src >= 0):
                src_matrix_idx = layer["weightSourceMatrixIndices"][inp]
                LocalLayerParser.conv_to_local(layers, src)
                for w in ("weights", "weightsInc"):
                    layer[w][inp] = layers[src][w][src_matrix_idx]
            else:
                w = layer["weights"][inp]
                layer["weights"][inp] = n.require(
                    n.reshape(n.tile(n.reshape(w, (1, w.size)), (layer["modules"], 1)),
                              (layer["modules"] * layer["filterChannels"][inp] * layer["filterPixels"][inp],
                               layer["filters"])), requirements="C")
                layer["weightsInc"][inp] = n.zeros_like(layer["weights"][inp])
        if layer["sharedBiases"]:
            layer["biases"] = n.require(n.repeat(layer["biases"], layer["modules"], axis=0), requirements="C")
            layer["biasesInc"] = n.zeros_like(layer["biases"])
        print("Converted layer '%s' from convolutional to unshared, locally-connected" % layer["name"])
        for other, l in (list(layers.items()) if chm else list(enumerate(layers))):
            if key in l and (layer["name"] if chm else idx) in l[key]:
                LocalLayerParser.conv_to_local(layers, other)
        return layer

    def gen_rand_conns(self, groups, channels, filterChannels, inputIdx):
        """randSparse: which `filterChannels` of the `channels` each group sees."""
        dic = self.dic
        overSample = groups * filterChannels // channels
        # Drawn even when overridden below, which keeps the random stream as in 2012.
        filterConns = [x for i in range(overSample) for x in nr.permutation(list(range(channels)))]
        src = dic[self.src_key()][inputIdx]
        if dic["initCFunc"]:
            filterConns = self.call_init_func("initCFunc", (groups, channels, filterChannels), input_idx=inputIdx)
            if len(filterConns) != overSample * channels:
                raise LayerParsingError("Layer '%s[%d]': random connectivity initialization function %s must return list "
                                        "of length <groups> * <filterChannels> = %d; got: %d"
                                        % (dic["name"], inputIdx, dic["initCFunc"], overSample * channels, len(filterConns)))
            if any(c not in range(channels) for c in filterConns):
                raise LayerParsingError("Layer '%s[%d]': random connectivity initialization function %s must return list "
                                        "of channel indices in the range 0-<channels-1> = 0-%d."
                                        % (dic["name"], inputIdx, dic["initCFunc"], channels - 1))
            if any(len(set(c)) != len(c) for c in [filterConns[o * channels:(o + 1) * channels] for o in range(overSample)]):
                raise LayerParsingError("Layer '%s[%d]': random connectivity initialization function %s must return list "
                                        "of channel indices such that every non-overlapping sub-list of <channels> = %d "
                                        "elements is a permutation of the integers 0-<channels-1> = 0-%d."
                                        % (dic["name"], inputIdx, dic["initCFunc"], channels, channels - 1))
        elif (src != "") if self.chm else (src >= 0):
            if self.chm:
                src_layer = self.prev_layers[src] if src != dic["name"] else dic
            else:
                src_layer = self.prev_layers[src] if src < len(self.prev_layers) else dic
            src_inp = dic["weightSourceMatrixIndices"][inputIdx]
            if "randSparse" not in src_layer or not src_layer["randSparse"]:
                raise LayerParsingError("Layer '%s[%d]': randSparse is true in this layer but false in weight sharing "
                                        "source layer '%s[%d]'." % (dic["name"], inputIdx, src_layer["name"], src_inp))
            if (groups, channels, filterChannels) != (src_layer["groups"][src_inp], src_layer["channels"][src_inp],
                                                      src_layer["filterChannels"][src_inp]):
                raise LayerParsingError("Layer '%s[%d]': groups, channels, filterChannels set to %d, %d, %d, respectively. "
                                        "Does not match setting in weight sharing source layer '%s[%d]': %d, %d, %d."
                                        % (dic["name"], inputIdx, groups, channels, filterChannels, src_layer["name"],
                                           src_inp, src_layer["groups"][src_inp], src_layer["channels"][src_inp],
                                           src_layer["filterChannels"][src_inp]))
            filterConns = src_layer["filterConns"][src_inp]
        return filterConns

    def parse(self, name, mcp, prev_layers, model):
        dic = WeightLayerParser.parse(self, name, mcp, prev_layers, model)
        dic["requiresParams"] = True
        dic["usesActs"] = False
        ninp = len(dic["inputs"])
        dic["channels"] = mcp.safe_get_int_list(name, "channels")
        dic["padding"] = mcp.safe_get_int_list(name, "padding", default=[0] * ninp)
        dic["stride"] = mcp.safe_get_int_list(name, "stride", default=[1] * ninp)
        dic["filterSize"] = mcp.safe_get_int_list(name, "filterSize")
        dic["filters"] = mcp.safe_get_int_list(name, "filters")
        dic["groups"] = mcp.safe_get_int_list(name, "groups", default=[1] * ninp)
        dic["randSparse"] = mcp.safe_get_bool_list(name, "randSparse", default=[False] * ninp)
        dic["initW"] = mcp.safe_get_float_list(name, "initW")
        dic["initCFunc"] = mcp.safe_get(name, "initCFunc", default="")
        self.verify_num_params(["channels", "padding", "stride", "filterSize", "filters", "groups", "randSparse", "initW"])
        self.verify_num_range(dic["stride"], "stride", 1, None)
        self.verify_num_range(dic["filterSize"], "filterSize", 1, None)
        self.verify_num_range(dic["padding"], "padding", 0, None)
        self.verify_num_range(dic["channels"], "channels", 1, None)
        self.verify_num_range(dic["groups"], "groups", 1, None)

        dic["imgPixels"] = [numInputs // channels for numInputs, channels in zip(dic["numInputs"], dic["channels"])]
        dic["imgSize"] = [int(n.sqrt(imgPixels)) for imgPixels in dic["imgPixels"]]
        self.verify_num_range(dic["imgSize"], "imgSize", 1, None)
        dic["filters"] = [filters * groups for filters, groups in zip(dic["filters"], dic["groups"])]
        dic["filterPixels"] = [filterSize ** 2 for filterSize in dic["filterSize"]]
        # The last module may hang past the image edge (ceil): the 2012 geometry.
        dic["modulesX"] = [1 + int(ceil((2 * padding + imgSize - filterSize) / float(stride)))
                           for padding, imgSize, filterSize, stride
                           in zip(dic["padding"], dic["imgSize"], dic["filterSize"], dic["stride"])]
        dic["filterChannels"] = [channels // groups for channels, groups in zip(dic["channels"], dic["groups"])]
        if max(dic["randSparse"]):  # then filterChannels may be given, for every input
            dic["filterChannels"] = mcp.safe_get_int_list(name, "filterChannels", default=dic["filterChannels"])
            self.verify_num_params(["filterChannels"])

        if len(set(dic["modulesX"])) != 1 or len(set(dic["filters"])) != 1:
            raise LayerParsingError("Layer '%s': all inputs must produce equally-dimensioned output. Dimensions are: %s."
                                    % (name, ", ".join("%dx%dx%d" % (filters, modulesX, modulesX)
                                                       for filters, modulesX in zip(dic["filters"], dic["modulesX"]))))
        dic["modulesX"] = dic["modulesX"][0]
        dic["modules"] = dic["modulesX"] ** 2
        dic["filters"] = dic["filters"][0]
        dic["outputs"] = dic["modules"] * dic["filters"]
        dic["filterConns"] = [[]] * ninp
        for i in range(ninp):
            if dic["numInputs"][i] % dic["imgPixels"][i] != 0 or dic["imgSize"][i] * dic["imgSize"][i] != dic["imgPixels"][i]:
                raise LayerParsingError("Layer '%s[%d]': has %-d dimensional input, not interpretable as square %d-channel "
                                        "images" % (name, i, dic["numInputs"][i], dic["channels"][i]))
            if dic["channels"][i] > 3 and dic["channels"][i] % 4 != 0:
                raise LayerParsingError("Layer '%s[%d]': number of channels must be smaller than 4 or divisible by 4"
                                        % (name, i))
            if dic["filterSize"][i] > 2 * dic["padding"][i] + dic["imgSize"][i]:
                raise LayerParsingError("Layer '%s[%d]': filter size (%d) greater than image size + 2 * padding (%d)"
                                        % (name, i, dic["filterSize"][i], 2 * dic["padding"][i] + dic["imgSize"][i]))
            if dic["randSparse"][i]:
                if dic["groups"][i] == 1:
                    raise LayerParsingError("Layer '%s[%d]': number of groups must be greater than 1 when using random "
                                            "sparse connectivity" % (name, i))
                self.verify_divisible(dic["channels"][i], dic["filterChannels"][i], "channels", "filterChannels", input_idx=i)
                self.verify_divisible(dic["filterChannels"][i], 4, "filterChannels", input_idx=i)
                self.verify_divisible(dic["groups"][i] * dic["filterChannels"][i], dic["channels"][i],
                                      "groups * filterChannels", "channels", input_idx=i)
                dic["filterConns"][i] = self.gen_rand_conns(dic["groups"][i], dic["channels"][i], dic["filterChannels"][i], i)
            else:
                if dic["groups"][i] > 1:
                    self.verify_divisible(dic["channels"][i], 4 * dic["groups"][i], "channels", "4 * groups", input_idx=i)
                self.verify_divisible(dic["channels"][i], dic["groups"][i], "channels", "groups", input_idx=i)
            self.verify_divisible(dic["filters"], 16 * dic["groups"][i], "filters * groups", input_idx=i)
            dic["padding"][i] = -dic["padding"][i]  # the kernels take the start offset, -padding
        dic["overSample"] = [groups * filterChannels // channels for groups, filterChannels, channels
                             in zip(dic["groups"], dic["filterChannels"], dic["channels"])]
        if self.chm:
            dic["weightsPerFilter"] = [fc * (fz ** 2) for fc, fz in zip(dic["filterChannels"], dic["filterSize"])]
        return dic


class ConvLayerParser(LocalLayerParser):
    def add_params(self, mcp):
        LocalLayerParser.add_params(self, mcp)
        if not self.chm:
            return
        dic, name = self.dic, self.dic["name"]
        dic["wcNormMax"] = mcp.safe_get_float_list(name, "wcNormMax", default=[0.0] * len(dic["inputs"]))
        dic["wcNormMin"] = mcp.safe_get_float_list(name, "wcNormMin", default=[0.0] * len(dic["inputs"]))
        self.verify_num_params(["wcNormMax", "wcNormMin"])
        for lo, hi in zip(dic["wcNormMin"], dic["wcNormMax"]):
            if lo > hi:
                raise LayerParsingError("Layer '%s': wcNormMin must be <= wcNormMax." % name)

    def parse(self, name, mcp, prev_layers, model):
        dic = LocalLayerParser.parse(self, name, mcp, prev_layers, model)
        dic["partialSum"] = mcp.safe_get_int(name, "partialSum")
        dic["sharedBiases"] = mcp.safe_get_bool(name, "sharedBiases", default=True)
        if dic["partialSum"] != 0 and dic["modules"] % dic["partialSum"] != 0:
            raise LayerParsingError("Layer '%s': convolutional layer produces %dx%d=%d outputs per filter, but given "
                                    "partialSum parameter (%d) does not divide this number"
                                    % (name, dic["modulesX"], dic["modulesX"], dic["modules"], dic["partialSum"]))
        num_biases = dic["filters"] if dic["sharedBiases"] else dic["modules"] * dic["filters"]
        self.make_weights(dic["initW"], [p * c for p, c in zip(dic["filterPixels"], dic["filterChannels"])],
                          [dic["filters"]] * len(dic["inputs"]), order="C")
        self.make_biases(num_biases, 1, order="C")
        print("Initialized convolutional layer '%s'%s, producing %dx%d %d-channel output"
              % (name, self.on_gpu(), dic["modulesX"], dic["modulesX"], dic["filters"]))
        return dic


class LocalUnsharedLayerParser(LocalLayerParser):
    def parse(self, name, mcp, prev_layers, model):
        dic = LocalLayerParser.parse(self, name, mcp, prev_layers, model)
        self.make_weights(dic["initW"], [dic["modules"] * p * c for p, c in zip(dic["filterPixels"], dic["filterChannels"])],
                          [dic["filters"]] * len(dic["inputs"]), order="C")
        self.make_biases(dic["modules"] * dic["filters"], 1, order="C")
        print("Initialized locally-connected layer '%s'%s, producing %dx%d %d-channel output"
              % (name, self.on_gpu(), dic["modulesX"], dic["modulesX"], dic["filters"]))
        return dic


class DataLayerParser(LayerParser):
    def parse(self, name, mcp, prev_layers, model):
        dic = LayerParser.parse(self, name, mcp, prev_layers, model)
        dic["dataIdx"] = mcp.safe_get_int(name, "dataIdx")
        dic["outputs"] = model.train_data_provider.get_data_dims(idx=dic["dataIdx"])
        print("Initialized data layer '%s', producing %d outputs" % (name, dic["outputs"]))
        return dic


class SoftmaxLayerParser(LayerWithInputParser):
    def __init__(self, dialect):
        super().__init__(dialect, num_inputs=1)

    def parse(self, name, mcp, prev_layers, model):
        dic = LayerWithInputParser.parse(self, name, mcp, prev_layers, model)
        dic["outputs"] = dic["inputLayers"][0]["outputs"]
        print("Initialized softmax layer '%s'%s, producing %d outputs" % (name, self.on_gpu(), dic["outputs"]))
        return dic


class PoolLayerParser(LayerWithInputParser):
    def __init__(self, dialect):
        super().__init__(dialect, num_inputs=1)

    def add_params(self, mcp):
        LayerWithInputParser.add_params(self, mcp)
        if self.chm and self.dic["pool"] == "rand":
            self.dic["doMax"] = mcp.safe_get_bool(self.dic["name"], "doMax", default=False)

    def parse(self, name, mcp, prev_layers, model):
        dic = LayerWithInputParser.parse(self, name, mcp, prev_layers, model)
        dic["channels"] = mcp.safe_get_int(name, "channels")
        dic["sizeX"] = mcp.safe_get_int(name, "sizeX")
        dic["start"] = mcp.safe_get_int(name, "start", default=0)
        dic["stride"] = mcp.safe_get_int(name, "stride")
        dic["outputsX"] = mcp.safe_get_int(name, "outputsX", default=0)
        dic["pool"] = mcp.safe_get(name, "pool")
        if self.chm:
            dic["requiresParams"] = dic["pool"] == "rand"
        # 2012 compared the literal 'pool' with 'avg' here, so these are always True.
        dic["usesActs"] = True
        dic["usesInputs"] = True
        self.img_from_channels(dic["channels"])
        self.verify_num_range(dic["sizeX"], "sizeX", 1, dic["imgSize"])
        self.verify_num_range(dic["stride"], "stride", 1, dic["sizeX"])
        self.verify_num_range(dic["outputsX"], "outputsX", 0, None)
        self.verify_num_range(dic["channels"], "channels", 1, None)
        if LayerWithInputParser.grad_consumers_below(dic):
            self.verify_divisible(dic["channels"], 16, "channels")
        self.verify_str_in(dic["pool"], "pool", ["max", "maxabs", "avg", "rand"] if self.chm else ["max", "avg"])
        self.verify_img_size()
        if dic["outputsX"] <= 0:
            dic["outputsX"] = int(ceil((dic["imgSize"] - dic["start"] - dic["sizeX"]) / float(dic["stride"]))) + 1
        dic["outputs"] = dic["outputsX"] ** 2 * dic["channels"]
        print("Initialized %s-pooling layer '%s'%s, producing %dx%d %d-channel output"
              % (dic["pool"], name, self.on_gpu(), dic["outputsX"], dic["outputsX"], dic["channels"]))
        return dic


class NormLayerParser(LayerWithInputParser):
    RESPONSE_NORM = "response"
    CONTRAST_NORM = "contrast"
    CROSSMAP_RESPONSE_NORM = "cross-map response"

    def __init__(self, dialect, norm_type):
        super().__init__(dialect, num_inputs=1)
        self.norm_type = norm_type

    def add_params(self, mcp):
        LayerWithInputParser.add_params(self, mcp)
        dic, name = self.dic, self.dic["name"]
        dic["scale"] = mcp.safe_get_float(name, "scale")
        # The config's scale is per window: per size (cross-map) or size^2 (within a map).
        dic["scale"] /= dic["size"] if self.norm_type == self.CROSSMAP_RESPONSE_NORM else dic["size"] ** 2
        dic["pow"] = mcp.safe_get_float(name, "pow")
        if self.chm and self.norm_type == self.CROSSMAP_RESPONSE_NORM:
            dic["minDiv"] = mcp.safe_get_float(name, "minDiv", default=1.0)

    def parse(self, name, mcp, prev_layers, model):
        dic = LayerWithInputParser.parse(self, name, mcp, prev_layers, model)
        dic["requiresParams"] = True
        dic["channels"] = mcp.safe_get_int(name, "channels")
        dic["size"] = mcp.safe_get_int(name, "size")
        dic["blocked"] = mcp.safe_get_bool(name, "blocked", default=False)
        self.img_from_channels(dic["channels"])
        dic["usesInputs"] = self.norm_type != self.CONTRAST_NORM
        self.verify_num_range(dic["channels"], "channels", 1, None)
        if self.norm_type == self.CROSSMAP_RESPONSE_NORM:
            self.verify_num_range(dic["size"], "size", 2, dic["channels"])
            if dic["channels"] % 16 != 0:
                raise LayerParsingError("Layer '%s': number of channels must be divisible by 16 when using crossMap" % name)
        else:
            self.verify_num_range(dic["size"], "size", 1, dic["imgSize"])
        if self.norm_type != self.CROSSMAP_RESPONSE_NORM and dic["channels"] > 3 and dic["channels"] % 4 != 0:
            raise LayerParsingError("Layer '%s': number of channels must be smaller than 4 or divisible by 4" % name)
        self.verify_img_size()
        dic["outputs"] = dic["imgPixels"] * dic["channels"]
        print("Initialized %s-normalization layer '%s'%s, producing %dx%d %d-channel output"
              % (self.norm_type, name, self.on_gpu(), dic["imgSize"], dic["imgSize"], dic["channels"]))
        return dic


class CostParser(LayerWithInputParser):
    def parse(self, name, mcp, prev_layers, model):
        dic = LayerWithInputParser.parse(self, name, mcp, prev_layers, model)
        dic["requiresParams"] = True
        del dic["neuron"]
        return dic

    def add_params(self, mcp):
        LayerWithInputParser.add_params(self, mcp)
        self.dic["coeff"] = mcp.safe_get_float(self.dic["name"], "coeff")

    def input_name(self, i):
        return self.dic["inputLayers"][i]["name"]


class LogregCostParser(CostParser):
    def __init__(self, dialect):
        super().__init__(dialect, num_inputs=2)

    def add_params(self, mcp):
        CostParser.add_params(self, mcp)
        if self.chm:  # the AlexNet code also reports the top-k error
            self.dic["topk"] = mcp.safe_get_int(self.dic["name"], "topk", default=1)

    def parse(self, name, mcp, prev_layers, model):
        dic = CostParser.parse(self, name, mcp, prev_layers, model)
        if dic["numInputs"][0] != 1:
            raise LayerParsingError("Layer '%s': dimensionality of first input must be 1" % name)
        if dic["inputLayers"][1]["type"] != "softmax":
            raise LayerParsingError("Layer '%s': second input must be softmax layer" % name)
        num_classes = model.train_data_provider.get_num_classes()
        if dic["numInputs"][1] != num_classes:
            raise LayerParsingError("Layer '%s': softmax input '%s' must produce %d outputs, because that is the number "
                                    "of classes in the dataset" % (name, self.input_name(1), num_classes))
        print("Initialized logistic regression cost '%s'%s" % (name, self.on_gpu()))
        return dic


class CrossEntCostParser(CostParser):
    def __init__(self, dialect):
        super().__init__(dialect, num_inputs=2)

    def parse(self, name, mcp, prev_layers, model):
        dic = CostParser.parse(self, name, mcp, prev_layers, model)
        num_classes = model.train_data_provider.get_num_classes()
        if dic["numInputs"][0] != num_classes:
            raise LayerParsingError("Layer '%s': Dimensionality of first input must be equal to number of labels" % name)
        if dic["inputLayers"][1]["type"] != "softmax":
            raise LayerParsingError("Layer '%s': Second input must be softmax layer" % name)
        if dic["numInputs"][1] != num_classes:
            raise LayerParsingError("Layer '%s': Softmax input '%s' must produce %d outputs, because that is the number "
                                    "of classes in the dataset" % (name, self.input_name(1), num_classes))
        print("Initialized cross-entropy cost '%s'%s" % (name, self.on_gpu()))
        return dic


class FlickrBaseCost(CostParser):
    def __init__(self, dialect, cost_name):
        super().__init__(dialect, num_inputs=2)
        self.cost_name = cost_name

    def parse(self, name, mcp, prev_layers, model):
        dic = CostParser.parse(self, name, mcp, prev_layers, model)
        num_classes = model.train_data_provider.get_num_classes()
        for i in range(2):
            if dic["numInputs"][i] != num_classes:
                raise LayerParsingError("Layer '%s': input '%s' must produce %d outputs, because that is the number of "
                                        "classes in the dataset" % (name, self.input_name(i), num_classes))
        if "neuron" not in dic["inputLayers"][1] or dic["inputLayers"][1]["neuron"] != "logistic":
            print("WARNING: Layer '%s': input '%s' is not logistic, results may not be what you intend."
                  % (dic["name"], self.input_name(1)))
        print("Initialized %s cost '%s'%s" % (self.cost_name, name, self.on_gpu()))
        return dic


class MultiSoftmaxCostParser(CostParser):
    def __init__(self, dialect):
        super().__init__(dialect, num_inputs=2)

    def add_params(self, mcp):
        CostParser.add_params(self, mcp)
        dic, name = self.dic, self.dic["name"]
        dic["setSize"] = mcp.safe_get_int(name, "setSize")
        dic["threads"] = mcp.safe_get_int(name, "threads")
        self.verify_num_range(dic["setSize"], "setSize", 1, dic["numOut"] - 1)
        self.verify_num_range(dic["threads"], "threads", 1, 32)

    def parse(self, name, mcp, prev_layers, model):
        dic = CostParser.parse(self, name, mcp, prev_layers, model)
        num_classes = model.train_data_provider.get_num_classes()
        if dic["numInputs"][0] != 1:
            raise LayerParsingError("Layer '%s': dimensionality of first input must be 1" % name)
        if dic["numInputs"][1] != num_classes:
            raise LayerParsingError("Layer '%s': input '%s' must produce %d outputs, because that is the number of "
                                    "classes in the dataset" % (name, self.input_name(1), num_classes))
        dic["numOut"] = dic["numInputs"][1]
        print("Initialized multi-softmax cost '%s'%s" % (name, self.on_gpu()))
        return dic


class SumOfSquaresCostParser(CostParser):
    def __init__(self, dialect):
        super().__init__(dialect, num_inputs=1)

    def parse(self, name, mcp, prev_layers, model):
        dic = CostParser.parse(self, name, mcp, prev_layers, model)
        print("Initialized sum-of-squares cost '%s'%s" % (name, self.on_gpu()))
        return dic


class GatedSumOfSquaresCostParser(CostParser):
    def __init__(self, dialect):
        super().__init__(dialect, num_inputs=2)

    def parse(self, name, mcp, prev_layers, model):
        dic = CostParser.parse(self, name, mcp, prev_layers, model)
        self.verify_input_dims([1, None])  # the first input is the gate
        print("Initialized gated sum-of-squares cost '%s'%s" % (name, self.on_gpu()))
        return dic


class TICACostParser(CostParser):
    def __init__(self, dialect):
        super().__init__(dialect, num_inputs=1)

    def parse(self, name, mcp, prev_layers, model):
        dic = CostParser.parse(self, name, mcp, prev_layers, model)
        dic["channels"] = mcp.safe_get_int(name, "channels")
        dic["sizeX"] = mcp.safe_get_int(name, "sizeX")
        self.img_from_channels(dic["channels"])
        self.verify_img_size()
        print("Initialized TICA cost '%s'%s" % (name, self.on_gpu()))
        return dic


# type -> factory(dialect); the second element says which dialects know the type.
_BOTH, _CHM_ONLY = (CUDA_CONVNET, ALEXNET), (ALEXNET,)
_LAYER_PARSERS = {
    "data": (DataLayerParser, _BOTH),
    "fc": (FCLayerParser, _BOTH),
    "treefc": (TreeFCLayerParser, _CHM_ONLY),
    "conv": (ConvLayerParser, _BOTH),
    "local": (LocalUnsharedLayerParser, _BOTH),
    "softmax": (SoftmaxLayerParser, _BOTH),
    "eltsum": (EltwiseSumLayerParser, _BOTH),
    "eltmax": (EltwiseMaxLayerParser, _BOTH),
    "neuron": (NeuronLayerParser, _BOTH),
    "pool": (PoolLayerParser, _BOTH),
    "rnorm": (lambda d: NormLayerParser(d, NormLayerParser.RESPONSE_NORM), _BOTH),
    "cnorm": (lambda d: NormLayerParser(d, NormLayerParser.CONTRAST_NORM), _BOTH),
    "cmrnorm": (lambda d: NormLayerParser(d, NormLayerParser.CROSSMAP_RESPONSE_NORM), _BOTH),
    "nailbed": (NailbedLayerParser, _BOTH),
    "blur": (GaussianBlurLayerParser, _BOTH),
    "href": (HorizontalReflectionLayerParser, _CHM_ONLY),
    "resize": (ResizeLayerParser, _BOTH),
    "rgb2yuv": (RGBToYUVLayerParser, _BOTH),
    "rgb2lab": (RGBToLABLayerParser, _BOTH),
    "rscale": (RandomScaleLayerParser, _BOTH),
    "concat": (ConcatenationLayerParser, _CHM_ONLY),
    "hs": (HiddenSexLayerParser, _CHM_ONLY),
    "cost.logreg": (LogregCostParser, _BOTH),
    "cost.msm": (MultiSoftmaxCostParser, _CHM_ONLY),
    "cost.crossent": (CrossEntCostParser, _CHM_ONLY),
    "cost.crossent2": (lambda d: FlickrBaseCost(d, "elementwise cross-entropy"), _CHM_ONLY),
    "cost.sum2": (SumOfSquaresCostParser, _BOTH),
    "cost.gsum2": (GatedSumOfSquaresCostParser, _CHM_ONLY),
    "cost.tica": (TICACostParser, _CHM_ONLY),
    "cost.rflickr": (lambda d: FlickrBaseCost(d, "robust Flickr"), _CHM_ONLY),
}


def layer_parsers(dialect):
    """{layer type: a function making its parser} for one dialect."""
    return {t: (lambda f=f: f(dialect)) for t, (f, ds) in _LAYER_PARSERS.items() if dialect in ds}


# -- which dialect a config is written in ------------------------------------------------------
ALEXNET_ONLY_TYPES = {t for t, (_, ds) in _LAYER_PARSERS.items() if ds == _CHM_ONLY}
ALEXNET_ONLY_DEF_KEYS = {"gpu"}
ALEXNET_ONLY_PARAM_KEYS = {"mindiv", "schedw", "schedb", "supereps", "supermom", "wball", "quantf", "quantb",
                           "wcnormmax", "wcnormmin", "topk", "enable", "domax"}


def detect_dialect(layer_cfg_path, param_cfg_path):
    """('alexnet', reason) when the files use anything only the AlexNet code knows,
    else ('cuda-convnet', reason)."""
    if not os.path.exists(layer_cfg_path):
        raise LayerParsingError("Layer definition file '%s' does not exist" % layer_cfg_path)
    defs = _read_config(layer_cfg_path)
    for name in defs.sections():
        sec = dict(defs._defaults, **defs._sections[name])
        ltype = sec.get("type", "")
        if ltype in ALEXNET_ONLY_TYPES:
            return ALEXNET, "layer '%s' has type '%s'" % (name, ltype)
        for key in ALEXNET_ONLY_DEF_KEYS & set(sec):
            return ALEXNET, "layer '%s' sets '%s='" % (name, key)
        if ltype == "pool" and sec.get("pool") in ("maxabs", "rand"):
            return ALEXNET, "layer '%s' uses pool=%s" % (name, sec.get("pool"))
        neuron = sec.get("neuron", "")
        if ltype == "neuron" or neuron:
            base = re.split(r"[\s\[]", neuron.strip(), 1)[0]
            if base in ("nrelu", "drelu"):
                return ALEXNET, "layer '%s' uses neuron=%s" % (name, neuron)
        if ltype == "rscale" and "tgtsize" in sec:
            return ALEXNET, "layer '%s' sets 'tgtSize='" % name
    if os.path.exists(param_cfg_path):
        params = _read_config(param_cfg_path)
        for name in params.sections():
            for key in ALEXNET_ONLY_PARAM_KEYS & (set(params._sections[name]) | set(params._defaults)):
                return ALEXNET, "layer '%s' sets '%s=' in the params file" % (name, key)
    return CUDA_CONVNET, "nothing in the config needs the AlexNet code"


# -- the dump command --------------------------------------------------------------------------
class _FixedDataProvider:
    """Stands in for a data provider: only what the parser asks for."""

    def __init__(self, data_dims, num_classes):
        self.data_dims, self.num_classes, self.batch_meta = data_dims, num_classes, {}

    def get_data_dims(self, idx=0):
        if not 0 <= idx < len(self.data_dims):
            raise LayerParsingError("dataIdx %d: --data-dims gives only %d dimensions" % (idx, len(self.data_dims)))
        return self.data_dims[idx]

    def get_num_classes(self):
        return self.num_classes


class _FixedOptions:
    def __init__(self, **values):
        self.values = values

    def get_value(self, name):
        return self.values[name]


class StaticModel:
    """The `model` argument of parse_layers, built from fixed numbers instead of a run."""

    def __init__(self, data_dims, num_classes, num_gpus=1, conserve_mem=0):
        self.train_data_provider = _FixedDataProvider(list(data_dims), num_classes)
        self.op = _FixedOptions(num_gpus=num_gpus, conserve_mem=conserve_mem)


def to_jsonable(layers):
    """Layers in the conventions of the golden files: arrays as {shape, dtype, mean, std,
    order}, a nested layer as {"$layer": name}, tuples as lists, numpy scalars as numbers."""
    layer_list = _layer_list(layers)
    ids = {id(l): l["name"] for l in layer_list}

    def conv(v, key=None):
        if isinstance(v, dict):
            if id(v) in ids:
                return {"$layer": ids[id(v)]}
            return {k: conv(x, k) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, n.ndarray):
            out = {"shape": list(v.shape), "dtype": str(v.dtype),
                   "mean": float(v.mean(dtype=n.float64)) if v.size else 0.0,
                   "std": float(v.std(dtype=n.float64)) if v.size else 0.0,
                   "order": ("C" if v.flags.c_contiguous else "") + ("F" if v.flags.f_contiguous else "")}
            if key == "filter":  # the blur kernel is fixed, not random: keep its values
                out["values"] = v.tolist()
            return out
        if isinstance(v, n.bool_):
            return bool(v)
        if isinstance(v, n.integer):
            return int(v)
        if isinstance(v, n.floating):
            return float(v)
        if isinstance(v, range):
            return list(v)
        return v

    return [{k: conv(v, k) for k, v in l.items()} for l in layer_list]


def main(argv=None):
    import argparse
    import contextlib
    import io
    import json

    ap = argparse.ArgumentParser(prog="python -m cudaconvnet.layer",
                                 description="Parse a 2012 layers.cfg + layer-params.cfg pair and print the layer "
                                             "dicts as JSON (arrays summarised by shape, dtype, mean and std).")
    ap.add_argument("--layer-def", required=True)
    ap.add_argument("--layer-params", required=True)
    ap.add_argument("--dialect", default="auto", choices=("auto",) + DIALECTS)
    ap.add_argument("--data-dims", required=True, help="what get_data_dims(i) returns, e.g. 3072,1")
    ap.add_argument("--num-classes", type=int, required=True)
    ap.add_argument("--num-gpus", type=int, default=1)
    ap.add_argument("--conserve-mem", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0, help="numpy.random.seed before parsing (default 0)")
    args = ap.parse_args(argv)
    try:
        dims = [int(d) for d in args.data_dims.split(",")]
    except ValueError:
        ap.error("--data-dims must be integers separated by commas, e.g. 3072,1")

    log = io.StringIO()
    try:
        dialect = args.dialect
        if dialect == "auto":
            dialect, why = detect_dialect(args.layer_def, args.layer_params) if os.path.exists(args.layer_def) \
                else (CUDA_CONVNET, "no layer definition file to look at")
            print("Dialect: %s (%s)" % (dialect, why), file=sys.stderr)
        nr.seed(args.seed)
        model = StaticModel(dims, args.num_classes, args.num_gpus, args.conserve_mem)
        with contextlib.redirect_stdout(log):
            layers = LayerParser.parse_layers(args.layer_def, args.layer_params, model, dialect=dialect)
    except LayerParsingError as e:
        sys.stderr.write(log.getvalue())
        print(str(e), file=sys.stderr)
        return 1
    sys.stderr.write(log.getvalue())
    json.dump({"dialect": dialect, "layers": to_jsonable(layers), "log": log.getvalue().splitlines()},
              sys.stdout, sort_keys=True, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
