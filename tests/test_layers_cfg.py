"""The project's own 2012-format configs in layers_cfg/.

Every (layers*.cfg, layer-params*.cfg) pair parses in the dialect its header declares, and
detect_dialect agrees; the CIFAR-10 nets are cuda-convnet's examples layer for layer; the
AlexNet net is CHM experiment #145 at the rates it started from, with the sizes and parameter
count its header states; the gradient-check net passes its own check. The comparisons with
the 2012 files need ../shared (beside the checkout) and skip cleanly without it.
"""
import contextlib
import functools
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from cudaconvnet import layer
from cudaconvnet.backends import get_backend
from cudaconvnet.engine.net import ConvNet

REPO = Path(__file__).resolve().parents[1]
CFG = REPO / "layers_cfg"
SHARED = REPO.parent / "shared"
CC_EXAMPLES = SHARED / "reference" / "cuda-convnet-2012-07" / "example-layers"
CHM_LAYERS = SHARED / "reference" / "alexnet-2012" / "layers"

SEED = 0  # numpy.random.seed before every parse: the initial weights are then reproducible

# What the data provider hands each net: (get_data_dims(0), get_data_dims(1)), classes, GPUs.
INPUTS = {
    "digits": ((64, 1), 10, 1),              # the demo: 8x8x1 digits
    "18pct": ((3072, 1), 10, 1),             # cifar: 32x32x3
    "80sec": ((3072, 1), 10, 1),
    "conv-local-11pct": ((1728, 1), 10, 1),  # cifar-cropped --crop-border=4: 24x24x3
    "conv-local-13pct": ((1728, 1), 10, 1),
    ".gc": ((192, 1), 10, 1),                # dummy-cn-192: 3x8x8
    "alexnet": ((150528, 1), 1000, 2),       # inet-lr-cropped-jpeg --crop-border=16: 224x224x3
}
CIFAR = ["18pct", "80sec", "conv-local-11pct", "conv-local-13pct"]


def pairs():
    """{suffix: (layer def, layer params)} for every layers*.cfg in layers_cfg."""
    out = {}
    for d in sorted(CFG.glob("layers*.cfg")):
        suffix = d.name[len("layers"):-len(".cfg")]
        out[suffix.lstrip("-")] = (d, CFG / ("layer-params" + suffix + ".cfg"))
    return out


def header(path):
    """The comment lines before the first section, without their '#'."""
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("["):
            break
        if line.startswith("#"):
            lines.append(line[1:])
    return "\n".join(lines)


def declared_dialect(path):
    """The 'Dialect: ...' line of a header; the demo's files, older than that line, are
    cuda-convnet's."""
    m = re.search(r"^\s*Dialect:\s*(\S+)", header(path), re.M)
    return m.group(1) if m else layer.CUDA_CONVNET


def number(s):
    return int(s.replace(",", ""))


def parse(layer_def, layer_params, name, dialect):
    dims, classes, gpus = INPUTS[name]
    np.random.seed(SEED)
    with contextlib.redirect_stdout(io.StringIO()):
        return layer.LayerParser.parse_layers(str(layer_def), str(layer_params),
                                              layer.StaticModel(dims, classes, gpus), dialect=dialect)


def layer_list(layers):
    return list(layers.values()) if isinstance(layers, dict) else list(layers)


def counts(layers):
    """{name: (outputs, weights, biases)} of every layer."""
    return {l["name"]: (l["outputs"], sum(w.size for w in l.get("weights", [])),
                        l["biases"].size if "biases" in l else 0) for l in layer_list(layers)}


@functools.lru_cache(maxsize=None)
def summary(layer_def, layer_params, name, dialect):
    """(the layers as JSON-able dicts, arrays as shape/dtype/mean/std; counts). Cached and
    array-free, so the AlexNet net's 61M weights are made once and not kept."""
    layers = parse(layer_def, layer_params, name, dialect)
    return layer.to_jsonable(layers), counts(layers)


def ours(name):
    d, p = pairs()[name]
    return summary(d, p, name, declared_dialect(d))


def differences(a, b, skip=()):
    """Layer by layer, key by key: where two to_jsonable() outputs differ."""
    errs = []
    if [l["name"] for l in a] != [l["name"] for l in b]:
        return ["layer names/order: %s != %s" % ([l["name"] for l in a], [l["name"] for l in b])]
    for la, lb in zip(a, b):
        keys = (set(la) | set(lb)) - set(skip)
        for k in sorted(keys):
            if la.get(k, "<missing>") != lb.get(k, "<missing>"):
                errs.append("%s.%s: %r != %r" % (la["name"], k, la.get(k, "<missing>"), lb.get(k, "<missing>")))
    return errs


# -- every pair --------------------------------------------------------------------------------
def test_every_pair_is_known():
    assert set(pairs()) == set(INPUTS), "add the new net's input to INPUTS"
    for name, (d, p) in pairs().items():
        assert p.exists(), "%s has no %s" % (d.name, p.name)


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_parses_in_declared_dialect(name):
    d, p = pairs()[name]
    dialect = declared_dialect(d)
    assert dialect in layer.DIALECTS
    if name != "digits":
        assert re.search(r"^\s*Dialect:", header(d), re.M), "%s: no 'Dialect:' line in its header" % d.name
        assert declared_dialect(p) == dialect, "%s and %s declare different dialects" % (d.name, p.name)
    assert layer.detect_dialect(str(d), str(p))[0] == dialect
    jsonable, cnt = ours(name)
    assert jsonable and all(l["outputs"] >= 0 for l in jsonable)


@pytest.mark.parametrize("name", CIFAR)
def test_header_parameter_count(name):
    """The header's 'N parameters (W weights, B biases)' is what the parser makes (the AlexNet
    and gradient-check headers' numbers are checked below)."""
    d, _ = pairs()[name]
    m = re.search(r"([\d,]+) parameters \(([\d,]+) weights, ([\d,]+) biases\)", header(d))
    assert m, "%s: header states no parameter count" % d.name
    cnt = ours(name)[1]
    weights, biases = sum(c[1] for c in cnt.values()), sum(c[2] for c in cnt.values())
    assert (number(m.group(1)), number(m.group(2)), number(m.group(3))) == (weights + biases, weights, biases)


# -- the CIFAR-10 nets: cuda-convnet's examples, layer for layer --------------------------------
@pytest.mark.parametrize("name", CIFAR)
def test_cifar_net_is_the_original(name):
    orig_def, orig_params = CC_EXAMPLES / ("layers-%s.cfg" % name), CC_EXAMPLES / ("layer-params-%s.cfg" % name)
    if not orig_def.exists():
        pytest.skip("../shared is not beside this checkout (%s)" % orig_def)
    mine = ours(name)[0]
    theirs = summary(orig_def, orig_params, name, layer.CUDA_CONVNET)[0]
    # Same keys, values and types; same weight shapes and, drawn in the same order from the
    # same seed, the same weight statistics.
    assert differences(mine, theirs) == []


# -- the AlexNet net: CHM #145 ------------------------------------------------------------------
def alexnet_layers():
    return {l["name"]: l for l in ours("alexnet")[0]}


def test_alexnet_is_chm_145():
    orig_def, orig_params = CHM_LAYERS / "layers-145.cfg", CHM_LAYERS / "layer-params-145.cfg"
    if not orig_def.exists():
        pytest.skip("../shared is not beside this checkout (%s)" % orig_def)
    theirs = summary(orig_def, orig_params, "alexnet", layer.ALEXNET)[0]
    # Everything but the learning rates: #145's file holds the rates it ended with, conv1
    # frozen (epsW=epsB=0), which also makes conv1 no gradient consumer there.
    assert differences(ours("alexnet")[0], theirs, skip=("epsW", "epsB")) == [
        "conv1a.gradConsumer: True != False", "conv1b.gradConsumer: True != False"]


def test_alexnet_starting_rates():
    weight_layers = [l for l in alexnet_layers().values() if "weights" in l]
    assert len(weight_layers) == 15  # conv1-5 and fc6-7 in two towers, fc8
    for l in weight_layers:
        n = len(l["inputs"])
        assert (l["epsW"], l["epsB"]) == ([0.01] * n, 0.02), l["name"]
        assert (l["momW"], l["momB"], l["wc"]) == ([0.9] * n, 0.9, [0.0005] * n), l["name"]
    lay = alexnet_layers()
    assert {l["name"]: l["initB"] for l in weight_layers if l["initB"] != 0} == {
        n: 1.0 for n in ("conv2a", "conv2b", "conv4a", "conv4b", "conv5a", "conv5b",
                         "fc2048a", "fc2048b", "fc2048ba", "fc2048bb")}
    assert [lay[n]["keep"] for n in ("hs1a", "hs1b", "hs2a", "hs2b")] == [0.5] * 4
    assert all(lay[n]["enable"] for n in ("hs1a", "hs1b", "hs2a", "hs2b"))
    for n in ("rnorm1a", "rnorm1b", "rnorm2a", "rnorm2b"):
        assert (lay[n]["type"], lay[n]["size"], lay[n]["minDiv"], lay[n]["pow"]) == ("cmrnorm", 5, 2.0, 0.75)
        assert lay[n]["scale"] == pytest.approx(0.0001 / 5)
    assert (lay["cnorm2a"]["type"], lay["cnorm2b"]["type"]) == ("rnorm", "rnorm")
    assert (lay["logprob"]["type"], lay["logprob"]["topk"]) == ("cost.logreg", 5)
    assert lay["fc1000"]["outputs"] == 1000 and lay["probs"]["type"] == "softmax"
    assert {n: lay[n]["gpu"] for n in ("conv1a", "conv1b", "conv4b", "fc2048bb", "fc1000")} == \
        {"conv1a": 0, "conv1b": 1, "conv4b": 1, "fc2048bb": 1, "fc1000": 0}


# The paper's eight layers, as the two towers' layers that make each.
PAPER_LAYERS = {"conv1": ("conv1a", "conv1b"), "conv2": ("conv2a", "conv2b"), "conv3": ("conv3a", "conv3b"),
                "conv4": ("conv4a", "conv4b"), "conv5": ("conv5a", "conv5b"), "fc6": ("fc2048a", "fc2048b"),
                "fc7": ("fc2048ba", "fc2048bb"), "fc8": ("fc1000",)}
PAPER_UNITS = {"conv1": 253440, "conv2": 186624, "conv3": 64896, "conv4": 64896, "conv5": 43264,
               "fc6": 4096, "fc7": 4096, "fc8": 1000}


def test_alexnet_sizes_against_the_paper():
    cnt = ours("alexnet")[1]
    units = {k: sum(cnt[n][0] for n in v) for k, v in PAPER_LAYERS.items()}
    total = sum(w + b for _, w, b in cnt.values())
    assert total == 60965224
    assert abs(total - 60e6) / 60e6 < 0.02  # the paper: "60 million parameters"
    # The paper's neuron counts hold for every layer but conv1: the 2012 code's geometry gives
    # 1 + ceil((224 - 11)/4) = 55 positions per side, 55*55*96 = 290,400 (paper: 253,440).
    assert units == dict(PAPER_UNITS, conv1=290400)
    assert sum(units.values()) == 659272  # the paper: "650,000 neurons"


def test_alexnet_header_table_is_measured():
    """The header's per-layer table (output shape, units, weights, biases, the paper's units)
    and its parameter total are what the parser makes."""
    d, _ = pairs()["alexnet"]
    cnt = ours("alexnet")[1]
    lines = header(d).splitlines()
    first = next(i for i, l in enumerate(lines) if l.split()[:3] == ["layer", "output", "units"])
    seen = set()
    for line in lines[first + 1:]:
        name, shape, *rest = line.split()
        if name == "total":
            break
        members = PAPER_LAYERS.get(name) or (name + "a", name + "b")
        units, weights, biases = (sum(cnt[n][i] for n in members) for i in range(3))
        nums = [number(t) for t in rest if re.fullmatch(r"[\d,]+", t)]
        assert nums[0] == units, name
        if re.fullmatch(r"\d+x\d+x\d+", shape):
            assert np.prod([int(x) for x in shape.split("x")]) == units, name
        if name in PAPER_LAYERS:
            assert nums[1:] == [weights, biases, PAPER_UNITS[name]], name
        else:
            assert nums[1:] == [] and weights == biases == 0, name
        seen.add(name)
    assert seen == set(PAPER_LAYERS) | {"pool1", "pool2", "pool3"}
    m = re.search(r"= ([\d,]+) parameters", header(d))
    assert m and number(m.group(1)) == sum(w + b for _, w, b in cnt.values())


def test_alexnet_schedule_ends_where_145_ended(tmp_path):
    """The header's sed edits, applied in turn to the starting file, give #145's final rates."""
    final = CHM_LAYERS / "layer-params-145.cfg"
    if not final.exists():
        pytest.skip("../shared is not beside this checkout (%s)" % final)
    if shutil.which("sed") is None:
        pytest.skip("no sed on this machine")
    _, start = pairs()["alexnet"]
    exprs = re.findall(r"sed -e '([^']*)'", header(start))
    assert len(exprs) == 5
    text = start.read_text()
    for e in exprs:
        text = subprocess.run(["sed", "-e", e], input=text, capture_output=True, text=True, check=True).stdout
    (tmp_path / "lp.cfg").write_text(text)
    got, want = layer._read_config(str(tmp_path / "lp.cfg")), layer._read_config(str(final))
    assert got.sections() == want.sections()
    for s in want.sections():
        g_items, w_items = dict(got.items(s)), dict(want.items(s))
        assert set(g_items) == set(w_items), s
        for k, w in w_items.items():
            g = g_items[k]
            try:
                same = [float(x) for x in g.split(",")] == [float(x) for x in w.split(",")]
            except ValueError:
                same = g == w
            assert same, "[%s] %s: %s != %s" % (s, k, g, w)


# -- the gradient-check net ---------------------------------------------------------------------
def test_gc_net_passes():
    d, p = pairs()[".gc"]
    dialect = declared_dialect(d)
    layers = parse(d, p, ".gc", dialect)
    checked = sum(w.size for l in layer_list(layers) for w in l.get("weights", []) + [l.get("biases", np.zeros(0))])
    m = re.search(r"([\d,]+) values to check", header(d))
    assert m and number(m.group(1)) == checked
    # One fprop per checked value: the size is what keeps the check quick (about 3 s of CPU
    # with the NumPy engine; the 2012 gc net has 60,234 values and takes about 30 s).
    assert checked < 10000
    rng = np.random.RandomState(1)
    data = rng.rand(192, 512).astype(np.float32)
    labels = rng.randint(0, 10, size=(1, 512)).astype(np.float32)
    lines = []
    try:  # BLAS threads only slow these small products down
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(1)
    except ImportError:
        limit = contextlib.nullcontext()
    with limit:
        net = ConvNet(layers, 128, get_backend("numpy"), dialect=dialect, seed=0, out=lines.append)
        failures, tests = net.checkGradients([data, labels])
    report = "\n".join(lines)
    assert (failures, tests) == (0, 7), report
    assert lines[-1] == "ALL 7 TESTS PASSED"
    errors = [float(l.split(":")[1]) for l in lines if l.startswith("Relative error")]
    assert len(errors) == 7 and max(errors) < 0.01, report  # a margin under the 0.02 threshold
