"""The layer parser against the 2012 originals, case by case, on small configs.

cudaconvnet/layer.py stands for two 2012 files: cuda-convnet r561's layer.py (dialect
'cuda-convnet', cited cc:layer.py:LINE) and the AlexNet (CHM) release's layer.py (dialect
'alexnet', cited chm:layer.py:LINE). Every expected value below is worked out by hand from
those lines, for 3x8x8 images (192 inputs) and 10 classes unless a test says otherwise;
where a value needed Python 2 (dict order, which layer an error names) it was produced
by running the unmodified 2012 layer.py under CPython 2.7.18 + numpy 1.16.6 and pasted
here (CI has no Python 2).

Values are compared with their exact Python types: 1 is not 1.0, 0 is not False.
"""
import json
import math
import sys

import numpy as n
import numpy.random as nr
import pytest

from cudaconvnet import layer
from cudaconvnet.layer import ALEXNET as AN
from cudaconvnet.layer import CUDA_CONVNET as CC
from cudaconvnet.layer import LayerParser, LayerParsingError, NeuronLayerParser, StaticModel

DIMS = (192, 1)  # 3x8x8 images, then the labels
DEFAULT = {"type": "default", "params": {}}

HEAD = """
[data]
type=data
dataIdx=0

[labels]
type=data
dataIdx=1
"""

FC_PARAMS = "epsW=0.001\nepsB=0.002\nmomW=0.9\nmomB=0.9\nwc=0.01\n"
ZERO_PARAMS = "epsW=0\nepsB=0\nmomW=0\nmomB=0\nwc=0\n"
PARAMS = "[fc10]\n" + FC_PARAMS + "\n[logprob]\ncoeff=1\n"


def G(dialect):
    """The gpu= line every AlexNet-dialect layer above a data layer needs (chm:layer.py:378-382)."""
    return "gpu=0\n" if dialect == AN else ""


def net(dialect, body="", top="data", fc_extra=""):
    """data, labels, `body`, then fc10 (over `top`) -> softmax -> logistic regression."""
    g = G(dialect)
    return HEAD + "\n" + body + """
[fc10]
type=fc
outputs=10
inputs=%s
initW=0.01
%s%s
[probs]
type=softmax
inputs=fc10
%s
[logprob]
type=cost.logreg
inputs=labels,probs
%s""" % (top, g, fc_extra, g, g)


def conv(dialect, name="cv", extra="", inputs="data"):
    return ("[%s]\ntype=conv\ninputs=%s\nchannels=3\nfilters=16\nfilterSize=3\npadding=1\nstride=1\n"
            "initW=0.01\npartialSum=4\n%s%s\n" % (name, inputs, G(dialect), extra))


def write(tmp_path, ldef, lpar):
    lf, pf = tmp_path / "layers.cfg", tmp_path / "layer-params.cfg"
    lf.write_text(ldef)
    pf.write_text(lpar)
    return str(lf), str(pf)


def parse(tmp_path, ldef, lpar=PARAMS, dialect=CC, dims=DIMS, ncls=10, ngpus=1, seed=0, layers=None, model=None):
    lf, pf = write(tmp_path, ldef, lpar)
    nr.seed(seed)
    model = model or StaticModel(dims, ncls, ngpus)
    return LayerParser.parse_layers(lf, pf, model, layers=layers, dialect=dialect)


def parse_error(tmp_path, ldef, lpar=PARAMS, dialect=CC, **kw):
    with pytest.raises(LayerParsingError) as ei:
        parse(tmp_path, ldef, lpar, dialect, **kw)
    return ei.value


def named(layers):
    return dict(layers) if isinstance(layers, dict) else {l["name"]: l for l in layers}


def index(layers, name):
    return [l["name"] for l in layers].index(name)


def init_lines(capsys):
    return capsys.readouterr().out.splitlines()


def randn_weights(*shapes, scale=0.01, seed=0, perms=()):
    """What 2012 drew: numpy's legacy global stream, permutations first (cc:layer.py:833),
    then initW * randn(rows, cols) in float64, rounded to float32 (cc:layer.py:715)."""
    nr.seed(seed)
    for p in perms:
        nr.permutation(list(range(p)))
    return [n.array(scale * nr.randn(r, c), dtype=n.single) for r, c in shapes]


@pytest.fixture(params=[CC, AN])
def dialect(request):
    return request.param


def on_gpu(dialect):
    return " on GPU 0" if dialect == AN else ""


# =============================================================================================
# data, fc, softmax, cost.logreg
# =============================================================================================
def test_data_layer(tmp_path, dialect):
    data = named(parse(tmp_path, net(dialect), dialect=dialect))["data"]
    expected = {"name": "data", "type": "data", "dataIdx": 0, "outputs": 192, "requiresParams": False,
                "usesActs": True, "usesInputs": True, "forceOwnActs": True, "gradConsumer": False,
                "actsTarget": -1, "actsGradTarget": -1, "conserveMem": 0}
    if dialect == AN:  # every layer has a gpu (-1 for data) and quantisers (chm:layer.py:177,223)
        expected.update(gpu=-1, quantF=DEFAULT, quantB=DEFAULT)
    assert data == expected
    assert type(data["dataIdx"]) is int and type(data["outputs"]) is int
    assert type(data["requiresParams"]) is bool and type(data["conserveMem"]) is int


def test_fc_layer(tmp_path, dialect, capsys):
    layers = named(parse(tmp_path, net(dialect), dialect=dialect))
    fc, data = layers["fc10"], layers["data"]
    [w_expected] = randn_weights((192, 10))
    assert fc["outputs"] == 10 and type(fc["outputs"]) is int
    assert fc["numInputs"] == [192]
    assert fc["inputs"] == ([0] if dialect == CC else ["data"])
    assert fc["inputLayers"][0] is data
    assert fc["neuron"] == ""
    assert fc["initW"] == [0.01] and type(fc["initW"][0]) is float
    assert fc["initB"] == 0 and type(fc["initB"]) is int  # the int default survives (cc:layer.py:740)
    assert fc["initWFunc"] == "" and fc["initBFunc"] == ""
    assert fc["weightSource"] == [""]
    assert fc["weightSourceMatrixIndices"] == [-1]
    # fc weights are Fortran-ordered for the C++ side, biases a (1, outputs) row (cc:layer.py:788-789)
    [w] = fc["weights"]
    assert w.shape == (192, 10) and w.dtype == n.float32
    assert w.flags.f_contiguous and not w.flags.c_contiguous
    assert n.array_equal(w, w_expected)
    [winc] = fc["weightsInc"]
    assert winc.shape == (192, 10) and winc.dtype == n.float32 and winc.flags.f_contiguous and not winc.any()
    assert fc["biases"].shape == (1, 10) and fc["biases"].dtype == n.float32 and not fc["biases"].any()
    assert fc["biasesInc"].shape == (1, 10) and not fc["biasesInc"].any()
    assert (fc["requiresParams"], fc["usesActs"], fc["usesInputs"], fc["forceOwnActs"]) == (True, False, True, True)
    assert fc["gradConsumer"] is True  # epsB > 0 (cc:layer.py:651)
    assert fc["epsW"] == [0.001] and fc["epsB"] == 0.002 and fc["momW"] == [0.9] and fc["momB"] == 0.9
    assert fc["wc"] == [0.01]
    assert (fc["actsTarget"], fc["actsGradTarget"], fc["conserveMem"]) == (-1, -1, 0)
    assert "parser" not in fc
    base = {"name", "type", "inputs", "inputLayers", "numInputs", "neuron", "outputs", "requiresParams", "usesActs",
            "usesInputs", "forceOwnActs", "gradConsumer", "initW", "initB", "initWFunc", "initBFunc", "weightSource",
            "weightSourceMatrixIndices", "weights", "weightsInc", "biases", "biasesInc", "epsW", "epsB", "momW",
            "momB", "wc", "actsTarget", "actsGradTarget", "conserveMem"}
    if dialect == CC:
        assert set(fc) == base | {"weightSourceLayerIndices"}
        assert fc["weightSourceLayerIndices"] == [-1]
    else:
        assert set(fc) == base | {"weightSourceLayers", "gpu", "weightsPerFilter", "superEps", "superMom", "wball",
                                  "wballNormed", "schedW", "schedB", "quantF", "quantB"}
        assert fc["weightSourceLayers"] == [""]
        assert fc["gpu"] == 0 and fc["weightsPerFilter"] == [192]
        assert fc["superEps"] == 0.0 and fc["superMom"] == 0.0 and type(fc["superEps"]) is float
        assert fc["wball"] == [0.0] and fc["wballNormed"] == [0.0] and type(fc["wballNormed"][0]) is float
        assert fc["schedW"] == DEFAULT and fc["schedB"] == DEFAULT
        assert fc["quantF"] == DEFAULT and fc["quantB"] == DEFAULT
    g = on_gpu(dialect)
    assert init_lines(capsys) == [
        "Initialized data layer 'data', producing 192 outputs",
        "Initialized data layer 'labels', producing 1 outputs",
        "Initialized fully-connected layer 'fc10'%s, producing 10 outputs" % g,
        "Initialized softmax layer 'probs'%s, producing 10 outputs" % g,
        "Initialized logistic regression cost 'logprob'%s" % g,
    ]


def test_fc_initB_and_gradConsumer(tmp_path, dialect):
    ldef = net(dialect).replace("initW=0.01\n", "initW=0.05\ninitB=1\n")
    fc = named(parse(tmp_path, ldef, PARAMS.replace("epsW=0.001", "epsW=0").replace("epsB=0.002", "epsB=0"),
                     dialect))["fc10"]
    assert fc["initB"] == 1.0 and type(fc["initB"]) is float
    assert (fc["biases"] == 1).all() and fc["biases"].dtype == n.float32
    assert fc["initW"] == [0.05]
    assert n.array_equal(fc["weights"][0], randn_weights((192, 10), scale=0.05)[0])
    assert fc["gradConsumer"] is False  # no positive epsW or epsB


def test_softmax_and_logreg(tmp_path, dialect):
    layers = named(parse(tmp_path, net(dialect), PARAMS.replace("coeff=1", "coeff=2"), dialect))
    sm, lr = layers["probs"], layers["logprob"]
    assert sm["outputs"] == 10 and sm["numInputs"] == [10] and sm["inputLayers"][0] is layers["fc10"]
    assert (sm["usesActs"], sm["usesInputs"], sm["forceOwnActs"], sm["requiresParams"]) == (True, True, True, False)
    assert sm["neuron"] == ""
    assert "neuron" not in lr  # cost layers delete it (cc:layer.py:1076)
    assert lr["outputs"] == 0 and lr["numInputs"] == [1, 10] and lr["requiresParams"] is True
    assert lr["inputLayers"][0] is layers["labels"] and lr["inputLayers"][1] is sm
    assert lr["coeff"] == 2.0 and type(lr["coeff"]) is float
    if dialect == AN:
        assert lr["topk"] == 1 and type(lr["topk"]) is int  # chm:layer.py:1257
        assert lr["gpu"] == 0
    else:
        assert "topk" not in lr


def test_logreg_topk(tmp_path):
    lr = named(parse(tmp_path, net(AN), PARAMS + "topk=5\n", AN))["logprob"]
    assert lr["topk"] == 5
    cc_lr = named(parse(tmp_path, net(CC), PARAMS + "topk=5\n", CC))["logprob"]
    assert "topk" not in cc_lr


def test_cost_sum2(tmp_path, dialect, capsys):
    g = G(dialect)
    ldef = ("\n[data]\ntype=data\ndataIdx=0\n\n[fc10]\ntype=fc\noutputs=10\ninputs=data\ninitW=0.01\n%s\n"
            "[sq]\ntype=cost.sum2\ninputs=fc10\n%s" % (g, g))
    sq = named(parse(tmp_path, ldef, "[fc10]\n" + FC_PARAMS + "[sq]\ncoeff=0.5\n", dialect))["sq"]
    assert sq["coeff"] == 0.5 and sq["outputs"] == 0 and sq["requiresParams"] is True and "neuron" not in sq
    assert init_lines(capsys)[-1] == "Initialized sum-of-squares cost 'sq'%s" % on_gpu(dialect)


# =============================================================================================
# conv and local
# =============================================================================================
CONV_PARAMS = PARAMS + "\n[cv]\n" + FC_PARAMS


def test_conv_layer(tmp_path, dialect, capsys):
    layers = named(parse(tmp_path, net(dialect, conv(dialect), "cv"), CONV_PARAMS, dialect))
    cv = layers["cv"]
    # imgPixels = 192/3, imgSize = sqrt; modulesX = 1 + ceil((2*1 + 8 - 3)/1) (cc:layer.py:880-885)
    assert cv["imgPixels"] == [64] and cv["imgSize"] == [8] and type(cv["imgPixels"][0]) is int
    assert cv["filterPixels"] == [9] and cv["filterChannels"] == [3] and type(cv["filterChannels"][0]) is int
    assert cv["modulesX"] == 8 and cv["modules"] == 64 and cv["outputs"] == 1024 and type(cv["modulesX"]) is int
    assert cv["filters"] == 16 and cv["channels"] == [3] and cv["filterSize"] == [3] and cv["stride"] == [1]
    assert cv["padding"] == [-1]  # stored negated: the kernels take the start offset (cc:layer.py:922)
    assert cv["overSample"] == [1] and cv["filterConns"] == [[]]
    assert cv["groups"] == [1] and cv["randSparse"] == [False] and type(cv["randSparse"][0]) is bool
    assert cv["partialSum"] == 4 and type(cv["partialSum"]) is int
    assert cv["sharedBiases"] is True
    assert cv["initW"] == [0.01] and cv["initCFunc"] == ""
    assert (cv["usesActs"], cv["usesInputs"], cv["requiresParams"]) == (False, True, True)
    w_cv, w_fc = randn_weights((27, 16), (1024, 10))
    [w] = cv["weights"]
    assert w.shape == (27, 16) and w.flags.c_contiguous and w.dtype == n.float32  # conv weights are C-ordered
    assert n.array_equal(w, w_cv)
    assert n.array_equal(layers["fc10"]["weights"][0], w_fc)  # drawn next, in layer order
    assert cv["biases"].shape == (16, 1) and cv["biasesInc"].shape == (16, 1)
    assert layers["fc10"]["numInputs"] == [1024]
    if dialect == AN:
        assert cv["weightsPerFilter"] == [27]  # chm:layer.py:1043
        assert cv["wcNormMax"] == [0.0] and cv["wcNormMin"] == [0.0]
    else:
        assert "weightsPerFilter" not in cv and "wcNormMax" not in cv
    assert "Initialized convolutional layer 'cv'%s, producing 8x8 16-channel output" % on_gpu(dialect) \
        in init_lines(capsys)


def test_conv_geometry_rounds_up(tmp_path, dialect):
    # 8x8, 3x3 filters, stride 3, no padding: 1 + ceil(5/3) = 3 modules a side, the last
    # one hanging over the edge (cc:layer.py:885)
    body = conv(dialect).replace("padding=1", "padding=0").replace("stride=1", "stride=3") \
        .replace("partialSum=4", "partialSum=3")
    cv = named(parse(tmp_path, net(dialect, body, "cv"), CONV_PARAMS, dialect))["cv"]
    assert (cv["modulesX"], cv["modules"], cv["outputs"], cv["padding"]) == (3, 9, 144, [0])


def test_conv_unshared_biases(tmp_path, dialect):
    body = conv(dialect, extra="sharedBiases=0\ninitB=0.5\n")
    cv = named(parse(tmp_path, net(dialect, body, "cv"), CONV_PARAMS, dialect))["cv"]
    assert cv["sharedBiases"] is False
    assert cv["biases"].shape == (1024, 1) and (cv["biases"] == 0.5).all()


def test_conv_partialSum_zero_is_allowed(tmp_path, dialect):
    body = conv(dialect).replace("partialSum=4", "partialSum=0")
    assert named(parse(tmp_path, net(dialect, body, "cv"), CONV_PARAMS, dialect))["cv"]["partialSum"] == 0


def test_local_layer(tmp_path, dialect, capsys):
    body = conv(dialect).replace("type=conv", "type=local").replace("partialSum=4\n", "")
    cv = named(parse(tmp_path, net(dialect, body, "cv"), CONV_PARAMS, dialect))["cv"]
    [w] = cv["weights"]
    # unshared: one filter bank per module (cc:layer.py:958-959)
    assert w.shape == (64 * 27, 16) and w.flags.c_contiguous
    assert n.array_equal(w, randn_weights((64 * 27, 16))[0])
    assert cv["biases"].shape == (1024, 1)
    assert "partialSum" not in cv and "sharedBiases" not in cv
    assert "Initialized locally-connected layer 'cv'%s, producing 8x8 16-channel output" % on_gpu(dialect) \
        in init_lines(capsys)


def test_conv_groups(tmp_path, dialect):
    body = conv(dialect).replace("channels=3", "channels=8").replace("filters=16", "filters=16\ngroups=2")
    cv = named(parse(tmp_path, net(dialect, body, "cv"), CONV_PARAMS, dialect, dims=(512, 1)))["cv"]
    # filters per group * groups; each group sees channels/groups (cc:layer.py:883,887)
    assert (cv["filters"], cv["filterChannels"], cv["overSample"], cv["outputs"]) == (32, [4], [1], 2048)
    assert cv["weights"][0].shape == (36, 32) and cv["biases"].shape == (32, 1)


RAND_SPARSE = "filters=16\ngroups=4\nrandSparse=1\nfilterChannels=4"


def test_conv_rand_sparse(tmp_path, dialect):
    body = conv(dialect).replace("channels=3", "channels=8").replace("filters=16", RAND_SPARSE)
    cv = named(parse(tmp_path, net(dialect, body, "cv"), CONV_PARAMS, dialect, dims=(512, 1)))["cv"]
    # overSample = groups * filterChannels / channels = 4*4/8; one permutation of the 8
    # channels per oversampling, drawn before the weights (cc:layer.py:832-833)
    nr.seed(0)
    perms = [list(nr.permutation(list(range(8)))) for _ in range(2)]
    assert cv["overSample"] == [2] and cv["filters"] == 64 and cv["filterChannels"] == [4]
    assert cv["randSparse"] == [True]
    assert [int(c) for c in cv["filterConns"][0]] == perms[0] + perms[1]
    assert n.array_equal(cv["weights"][0], randn_weights((36, 64), perms=(8, 8))[0])


def test_conv_rand_sparse_is_true_only_for_true_or_1(tmp_path):
    # safe_get_bool_list: x.lower() in ('true', '1') (cc:layer.py:131), so 'yes' is False,
    # and 8 channels in 4 groups without randSparse need channels % (4*groups) == 0
    yes = RAND_SPARSE.replace("randSparse=1", "randSparse=yes")
    body = conv(CC).replace("channels=3", "channels=8").replace("filters=16", yes)
    e = parse_error(tmp_path, net(CC, body, "cv"), CONV_PARAMS, dims=(512, 1))
    assert e.msg == "Layer 'cv[0]': parameter 'channels' must be divisible by '4 * groups'"
    true = RAND_SPARSE.replace("randSparse=1", "randSparse=TRUE")
    body = conv(CC).replace("channels=3", "channels=8").replace("filters=16", true)
    assert named(parse(tmp_path, net(CC, body, "cv"), CONV_PARAMS, dims=(512, 1)))["cv"]["randSparse"] == [True]


def test_conv_rand_sparse_filterChannels_default(tmp_path, dialect):
    body = conv(dialect).replace("channels=3", "channels=16") \
        .replace("filters=16", "filters=16\ngroups=2\nrandSparse=1")
    cv = named(parse(tmp_path, net(dialect, body, "cv"), CONV_PARAMS, dialect, dims=(1024, 1)))["cv"]
    assert cv["filterChannels"] == [8] and cv["overSample"] == [1] and len(cv["filterConns"][0]) == 16


def test_weight_sharing_between_layers(tmp_path, dialect, capsys):
    g = G(dialect)
    body = (conv(dialect, "cv3", "neuron=relu\n") + conv(dialect, "cv2", "weightSource=cv3\n") +
            "[es]\ntype=eltsum\ninputs=cv2,cv3\n%s\n" % g)
    params = CONV_PARAMS.replace("[cv]", "[cv2]") + "\n[cv3]\n" + ZERO_PARAMS
    layers = parse(tmp_path, net(dialect, body, "es"), params, dialect)
    L = named(layers)
    assert L["cv2"]["weights"][0] is L["cv3"]["weights"][0]
    assert L["cv2"]["weightsInc"][0] is L["cv3"]["weightsInc"][0]
    assert L["cv2"]["weightSourceMatrixIndices"] == [0]
    assert "Layer 'cv2' initialized weight matrix 0 from cv3" in init_lines(capsys)
    # cv2 drew nothing: fc10 took the second draw
    w_cv3, w_fc = randn_weights((27, 16), (1024, 10))
    assert n.array_equal(L["cv3"]["weights"][0], w_cv3) and n.array_equal(L["fc10"]["weights"][0], w_fc)
    es = L["es"]
    if dialect == CC:
        # indices: data 0, labels 1, cv3 2, cv3_neuron 3 (detached), cv2 4, es 5 ...
        assert [l["name"] for l in layers][:6] == ["data", "labels", "cv3", "cv3_neuron", "cv2", "es"]
        assert L["cv2"]["weightSourceLayerIndices"] == [2]
        assert es["inputs"] == [4, 3]
        # 2012 re-indexed `inputs` but left `inputLayers` on cv3 (cc:layer.py:577-579)
        assert es["inputLayers"][1] is L["cv3"]
    else:
        assert L["cv2"]["weightSourceLayers"] == ["cv3"]
        assert es["inputs"] == ["cv2", "cv3_neuron"]
        assert es["inputLayers"][1] is L["cv3_neuron"]  # chm:layer.py:641-644


def two_input_conv(dialect, weight_source="weightSource=,cv[0]\n", extra=""):
    return ("[cv]\ntype=conv\ninputs=data,data\nchannels=3,3\nfilters=16,16\nfilterSize=3,3\npadding=1,1\n"
            "stride=1,1\ninitW=0.01,0.02\npartialSum=4\n%s%s%s\n" % (weight_source, G(dialect), extra))


TWO_PARAMS = PARAMS + "\n[cv]\nepsW=0.001,0.002\nepsB=0.002\nmomW=0.9,0.8\nmomB=0.9\nwc=0.004,0.003\n"


def test_weight_sharing_within_a_layer(tmp_path, dialect, capsys):
    layers = parse(tmp_path, net(dialect, two_input_conv(dialect), "cv"), TWO_PARAMS, dialect)
    cv = named(layers)["cv"]
    assert cv["weights"][1] is cv["weights"][0] and cv["weightsInc"][1] is cv["weightsInc"][0]
    assert cv["weightSourceMatrixIndices"] == [-1, 0]
    if dialect == CC:
        assert cv["weightSourceLayerIndices"] == [-1, index(layers, "cv")]  # its own index (cc:layer.py:763)
    else:
        assert cv["weightSourceLayers"] == ["", "cv"]
    assert cv["initW"] == [0.01, 0.02] and cv["epsW"] == [0.001, 0.002] and cv["wc"] == [0.004, 0.003]
    assert cv["numInputs"] == [192, 192] and cv["padding"] == [-1, -1]
    assert n.array_equal(cv["weights"][0], randn_weights((27, 16))[0])
    lines = init_lines(capsys)
    assert lines.index("Layer 'cv' initialized weight matrix 1 from cv[0]") \
        < lines.index("Initialized convolutional layer 'cv'%s, producing 8x8 16-channel output" % on_gpu(dialect))


# =============================================================================================
# pool, norms, and the image layers
# =============================================================================================
def pool(dialect, kind="max", inputs="cv", channels=16, extra=""):
    return ("[pl]\ntype=pool\npool=%s\ninputs=%s\nchannels=%d\nsizeX=3\nstride=2\n%s%s\n"
            % (kind, inputs, channels, G(dialect), extra))


def test_max_pool(tmp_path, dialect, capsys):
    pl = named(parse(tmp_path, net(dialect, conv(dialect) + pool(dialect), "pl"), CONV_PARAMS, dialect))["pl"]
    # outputsX = ceil((8 - 0 - 3) / 2) + 1 = 4 (cc:layer.py:1018)
    assert (pl["outputsX"], pl["outputs"], pl["imgSize"], pl["imgPixels"]) == (4, 256, 8, 64)
    assert (pl["channels"], pl["sizeX"], pl["stride"], pl["start"], pl["pool"]) == (16, 3, 2, 0, "max")
    assert type(pl["outputsX"]) is int and type(pl["start"]) is int
    assert pl["requiresParams"] is False
    assert "Initialized max-pooling layer 'pl'%s, producing 4x4 16-channel output" % on_gpu(dialect) \
        in init_lines(capsys)


def test_avg_pool_still_uses_acts(tmp_path, dialect):
    # 2012 compared the literal 'pool' with 'avg' (cc:layer.py:1000-1001): always True
    pl = named(parse(tmp_path, net(dialect, pool(dialect, "avg", "data", 3), "pl"), PARAMS, dialect))["pl"]
    assert pl["usesActs"] is True and pl["usesInputs"] is True
    assert pl["outputs"] == 4 * 4 * 3


def test_pool_given_outputsX_and_start(tmp_path, dialect):
    body = pool(dialect, "max", "data", 3, "outputsX=2\nstart=1\n")
    pl = named(parse(tmp_path, net(dialect, body, "pl"), PARAMS, dialect))["pl"]
    assert (pl["outputsX"], pl["start"], pl["outputs"]) == (2, 1, 12)


def test_pool_alexnet_kinds(tmp_path):
    pl = named(parse(tmp_path, net(AN, pool(AN, "maxabs", "data", 3), "pl"), PARAMS, AN))["pl"]
    assert pl["pool"] == "maxabs" and pl["requiresParams"] is False and "doMax" not in pl
    # rand pooling reads doMax from the params file and so requires a section (chm:layer.py:1132,1143;
    # without one: see test_errors)
    pl = named(parse(tmp_path, net(AN, pool(AN, "rand", "data", 3), "pl"), PARAMS + "\n[pl]\ndoMax=1\n", AN))["pl"]
    assert pl["requiresParams"] is True and pl["doMax"] is True
    pl = named(parse(tmp_path, net(AN, pool(AN, "rand", "data", 3), "pl"), PARAMS + "\n[pl]\nx=1\n", AN))["pl"]
    assert pl["doMax"] is False


NORM_PARAMS = CONV_PARAMS + "\n[rn]\nscale=0.001\npow=0.75\n"


@pytest.mark.parametrize("ntype,size,divisor,uses_inputs,words", [
    ("rnorm", 3, 9, True, "response"),
    ("cnorm", 3, 9, False, "contrast"),
    ("cmrnorm", 5, 5, True, "cross-map response"),
])
def test_norm_layers(tmp_path, dialect, capsys, ntype, size, divisor, uses_inputs, words):
    body = conv(dialect) + "[rn]\ntype=%s\ninputs=cv\nchannels=16\nsize=%d\n%s" % (ntype, size, G(dialect))
    rn = named(parse(tmp_path, net(dialect, body, "rn"), NORM_PARAMS, dialect))["rn"]
    # scale is divided by size (cross-map) or size^2 (within a map) (cc:layer.py:1036)
    assert rn["scale"] == 0.001 / divisor and rn["pow"] == 0.75
    assert (rn["size"], rn["channels"], rn["imgSize"], rn["imgPixels"], rn["outputs"]) == (size, 16, 8, 64, 1024)
    assert rn["blocked"] is False and rn["requiresParams"] is True and rn["usesInputs"] is uses_inputs
    if dialect == AN and ntype == "cmrnorm":
        assert rn["minDiv"] == 1.0  # chm:layer.py:1186
    else:
        assert "minDiv" not in rn
    assert "Initialized %s-normalization layer 'rn'%s, producing 8x8 16-channel output" % (words, on_gpu(dialect)) \
        in init_lines(capsys)


def test_cmrnorm_blocked_and_minDiv(tmp_path, dialect):
    body = conv(dialect) + "[rn]\ntype=cmrnorm\ninputs=cv\nchannels=16\nsize=5\nblocked=1\n%s" % G(dialect)
    rn = named(parse(tmp_path, net(dialect, body, "rn"), NORM_PARAMS + "minDiv=2\n", dialect))["rn"]
    assert rn["blocked"] is True
    if dialect == AN:
        assert rn["minDiv"] == 2.0 and type(rn["minDiv"]) is float
    else:
        assert "minDiv" not in rn  # cuda-convnet hard-codes k=1 and never reads it


def test_nailbed(tmp_path, dialect, capsys):
    body = "[nb]\ntype=nailbed\ninputs=data\nchannels=3\nstride=3\n" + G(dialect)
    nb = named(parse(tmp_path, net(dialect, body, "nb"), PARAMS, dialect))["nb"]
    # outputsX = (8 + 3 - 1) / 3 = 3, start = (8 - 3*2) / 2 = 1 (cc:layer.py:385-386)
    assert (nb["outputsX"], nb["start"], nb["outputs"], nb["imgSize"], nb["imgPixels"]) == (3, 1, 27, 8, 64)
    assert type(nb["start"]) is int and type(nb["outputsX"]) is int
    assert (nb["forceOwnActs"], nb["usesActs"], nb["usesInputs"]) == (False, False, False)
    assert "Initialized bed-of-nails layer 'nb'%s, producing 3x3 3-channel output" % on_gpu(dialect) \
        in init_lines(capsys)


def test_blur(tmp_path, dialect, capsys):
    body = "[bl]\ntype=blur\ninputs=data\nchannels=3\nfilterSize=5\nstdev=1.5\n" + G(dialect)
    bl = named(parse(tmp_path, net(dialect, body, "bl"), PARAMS, dialect, dims=(243, 1)))["bl"]
    # exp(-(filterSize/2 - i)^2 / (2 stdev^2)) in float32, normalised (cc:layer.py:417-419)
    f = n.array([math.exp(-(2 - i) ** 2 / (2 * 1.5 ** 2)) for i in range(5)], dtype=n.float32).reshape(1, 5)
    f /= f.sum()
    assert bl["filter"].shape == (1, 5) and bl["filter"].dtype == n.float32
    assert n.array_equal(bl["filter"], f)
    assert bl["filter"][0, 0] == bl["filter"][0, 4] and bl["filter"].argmax() == 2
    assert (bl["outputs"], bl["imgSize"], bl["stdev"], bl["filterSize"]) == (243, 9, 1.5, 5)
    # the blur line has no ' on GPU n', even in the AlexNet code (chm:layer.py:462)
    assert "Initialized Gaussian blur layer 'bl', producing 9x9 3-channel output" in init_lines(capsys)


def test_resize(tmp_path, dialect, capsys):
    body = "[rs]\ntype=resize\ninputs=data\nchannels=3\nscale=1.5\n" + G(dialect)
    rs = named(parse(tmp_path, net(dialect, body, "rs"), PARAMS, dialect))["rs"]
    # tgtSize = floor(8 / 1.5) = 5 (cc:layer.py:445)
    assert (rs["tgtSize"], rs["tgtPixels"], rs["outputs"], rs["scale"]) == (5, 25, 75, 1.5)
    assert type(rs["tgtSize"]) is int
    assert "Initialized resize layer 'rs', producing 5x5 3-channel output" in init_lines(capsys)


def test_color_transforms(tmp_path, dialect, capsys):
    g = G(dialect)
    body = ("[yuv]\ntype=rgb2yuv\ninputs=data\n%s\n[lab]\ntype=rgb2lab\ninputs=yuv\n%s\n"
            "[lab2]\ntype=rgb2lab\ninputs=lab\ncenter=True\n%s" % (g, g, g))
    L = named(parse(tmp_path, net(dialect, body, "lab2"), PARAMS, dialect))
    for nm in ("yuv", "lab", "lab2"):
        assert (L[nm]["channels"], L[nm]["imgSize"], L[nm]["imgPixels"], L[nm]["outputs"]) == (3, 8, 64, 192)
        assert (L[nm]["forceOwnActs"], L[nm]["usesActs"], L[nm]["usesInputs"]) == (False, False, False)
    assert "center" not in L["yuv"] and L["lab"]["center"] is False and L["lab2"]["center"] is True
    lines = init_lines(capsys)
    assert "Initialized RGB --> YUV layer 'yuv', producing 8x8 3-channel output" in lines
    assert "Initialized RGB --> LAB layer 'lab2', producing 8x8 3-channel output" in lines


def test_rscale_cuda_convnet(tmp_path, capsys):
    body = "[rs]\ntype=rscale\ninputs=data\nchannels=3\nmaxScale=1.5\ntgtSize=7\n"
    rs = named(parse(tmp_path, net(CC, body, "rs"), PARAMS))["rs"]
    # cuda-convnet computes the size: floor(8 / 1.5) = 5, and ignores tgtSize (cc:layer.py:478)
    assert (rs["tgtSize"], rs["tgtPixels"], rs["outputs"], rs["maxScale"]) == (5, 25, 75, 1.5)
    assert "Initialized random scale layer 'rs', producing 5x5 3-channel output" in init_lines(capsys)
    rs = named(parse(tmp_path, net(CC, body.replace("1.5", "1.45"), "rs"), PARAMS))["rs"]
    assert rs["tgtSize"] == 5  # floor(5.52), not round


def test_elementwise_sum_coeffs_default_to_floats_of_one(tmp_path):
    for d in (CC, AN):
        es = named(parse(tmp_path, net(d, "[es]\ntype=eltsum\ninputs=data,data\n" + G(d), "es"), PARAMS, d))["es"]
        assert es["coeffs"] == [1.0, 1.0] and all(type(c) is float for c in es["coeffs"])


def test_unused_layer_name_counts_from_1():
    """A neuron layer split off a layer gets '<layer>_neuron', or .1, .2 ... when taken."""
    assert NeuronLayerParser.get_unused_layer_name(["fc_neuron"], "fc_neuron") == "fc_neuron.1"
    assert NeuronLayerParser.get_unused_layer_name(["a", "a.1"], "a") == "a.2"
    assert NeuronLayerParser.get_unused_layer_name(["b"], "a") == "a"


def test_rscale_alexnet(tmp_path, capsys):
    body = "[rs]\ntype=rscale\ninputs=data\nchannels=3\nmaxScale=1.5\ntgtSize=6\ngpu=0\n"
    rs = named(parse(tmp_path, net(AN, body, "rs"), PARAMS, AN))["rs"]
    # the AlexNet code crops to tgtSize, which must lie in [floor(8/1.5), 8] (chm:layer.py:534-545)
    assert (rs["tgtSize"], rs["tgtPixels"], rs["outputs"]) == (6, 36, 108)
    assert "Initialized random scale layer 'rs', producing 6x6 3-channel output" in init_lines(capsys)
    assert parse_error(tmp_path, net(AN, body.replace("tgtSize=6", "tgtSize=4"), "rs"), dialect=AN).msg == \
        "Layer 'rs': target size must be greater than minimum image size after rescaling (5)"
    assert parse_error(tmp_path, net(AN, body.replace("tgtSize=6", "tgtSize=9"), "rs"), dialect=AN).msg == \
        "Layer 'rs': target size must be smaller than maximum image size after rescaling (8)"
    assert parse_error(tmp_path, net(AN, body.replace("tgtSize=6\n", ""), "rs"), dialect=AN).msg == \
        "Layer 'rs': required parameter 'tgtSize' missing"


def test_eltsum_and_eltmax(tmp_path, dialect, capsys):
    g = G(dialect)
    body = ("[n1]\ntype=neuron\ninputs=data\nneuron=relu\n%s\n[es]\ntype=eltsum\ninputs=data,n1\ncoeffs=1,-0.5\n%s\n"
            "[es2]\ntype=eltsum\ninputs=es,es\n%s\n[em]\ntype=eltmax\ninputs=es2,n1\n%s" % (g, g, g, g))
    L = named(parse(tmp_path, net(dialect, body, "em"), PARAMS, dialect))
    assert L["es"]["coeffs"] == [1.0, -0.5] and L["es2"]["coeffs"] == [1.0, 1.0]
    assert (L["es"]["outputs"], L["es"]["usesInputs"], L["es"]["usesActs"], L["es"]["forceOwnActs"]) == \
        (192, False, False, False)
    assert (L["em"]["outputs"], L["em"]["usesActs"], L["em"]["forceOwnActs"]) == (192, True, True)
    lines = init_lines(capsys)
    assert "Initialized elementwise sum layer 'es'%s, producing 192 outputs" % on_gpu(dialect) in lines
    assert "Initialized elementwise max layer 'em'%s, producing 192 outputs" % on_gpu(dialect) in lines


# =============================================================================================
# neurons
# =============================================================================================
# (neuron string, type, params, usesActs, usesInputs) from cc:layer.py:1134-1144, chm:layer.py:1397-1408
NEURONS = [
    ("ident", "ident", {}, False, False),
    ("logistic", "logistic", {}, True, False),
    ("abs", "abs", {}, False, True),
    ("relu", "relu", {}, True, False),
    ("softrelu", "softrelu", {}, True, False),
    ("square", "square", {}, False, True),
    ("sqrt", "sqrt", {}, True, False),
    ("tanh[1.7159, 0.6666]", "tanh", {"a": 1.7159, "b": 0.6666}, True, False),
    ("brelu[5]", "brelu", {"a": 5.0}, True, False),
    ("linear[2,-1]", "linear", {"a": 2.0, "b": -1.0}, True, False),
]
ALEXNET_NEURONS = [
    ("nrelu", "nrelu", {}, True, False),
    ("drelu[2.5]", "drelu", {"a": 2.5}, False, True),
]


@pytest.mark.parametrize("text,ntype,params,uses_acts,uses_inputs", NEURONS + ALEXNET_NEURONS)
def test_neuron_types(tmp_path, dialect, capsys, text, ntype, params, uses_acts, uses_inputs):
    body = "[n1]\ntype=neuron\ninputs=data\nneuron=%s\n%s" % (text, G(dialect))
    if (text, ntype, params, uses_acts, uses_inputs) in ALEXNET_NEURONS and dialect == CC:
        e = parse_error(tmp_path, net(dialect, body, "n1"), PARAMS, dialect)
        assert e.msg.startswith("Layer 'n1': unable to parse neuron type '%s'. Valid neuron types:" % text)
        return
    n1 = named(parse(tmp_path, net(dialect, body, "n1"), PARAMS, dialect))["n1"]
    assert n1["neuron"] == {"type": ntype, "params": params, "usesActs": uses_acts, "usesInputs": uses_inputs}
    assert all(type(v) is float for v in n1["neuron"]["params"].values())
    assert (n1["usesActs"], n1["usesInputs"], n1["forceOwnActs"], n1["outputs"]) == \
        (uses_acts, uses_inputs, False, 192)
    assert "Initialized neuron layer 'n1'%s, producing 192 outputs" % on_gpu(dialect) in init_lines(capsys)


def test_neuron_exponents(tmp_path, dialect):
    # cuda-convnet's value pattern allows 'e' ([\d,\.\s\-e], cc:layer.py:67); the AlexNet code's does not
    body = "[n1]\ntype=neuron\ninputs=data\nneuron=tanh[1e-1,2]\n" + G(dialect)
    if dialect == CC:
        n1 = named(parse(tmp_path, net(dialect, body, "n1"), PARAMS, dialect))["n1"]
        assert n1["neuron"]["params"] == {"a": 0.1, "b": 2.0}
    else:
        e = parse_error(tmp_path, net(dialect, body, "n1"), PARAMS, dialect)
        assert e.msg.startswith("Layer 'n1': unable to parse neuron type 'tanh[1e-1,2]'.")


@pytest.mark.parametrize("text", ["foo", "brelu[1,2]", "tanh[1]", "", "Relu", "abstanh[1,2]"])
def test_neuron_errors(tmp_path, dialect, text):
    body = "[n1]\ntype=neuron\ninputs=data\nneuron=%s\n%s" % (text, G(dialect))
    e = parse_error(tmp_path, net(dialect, body, "n1"), PARAMS, dialect)
    assert e.msg.startswith("Layer 'n1': unable to parse neuron type '%s'. Valid neuron types:" % text)
    assert e.msg.endswith("Where neurons have parameters, they must be floats.")
    for t in ["abs", "brelu[a]", "ident", "linear[a,b]", "logistic", "relu", "softrelu", "sqrt", "square", "tanh[a,b]"]:
        assert t in e.msg
    assert ("drelu[a]" in e.msg) == (dialect == AN) and ("nrelu" in e.msg) == (dialect == AN)
    assert "\n" not in str(e)


@pytest.mark.parametrize("text", ["tanh[1,]", "tanh[.,1]", "brelu[]", "linear[1-,2]"])
def test_neuron_value_float_cannot_parse_is_a_clean_error(tmp_path, dialect, text):
    # 2012: float('') etc. raised ValueError out of ParamNeuronParser.parse, which only caught
    # TypeError (cc:layer.py:70-77): a traceback. The port must report the neuron instead.
    body = "[n1]\ntype=neuron\ninputs=data\nneuron=%s\n%s" % (text, G(dialect))
    e = parse_error(tmp_path, net(dialect, body, "n1"), PARAMS, dialect)
    assert e.msg.startswith("Layer 'n1': unable to parse neuron type '%s'." % text)


def test_detached_neuron_cuda_convnet(tmp_path, capsys):
    layers = parse(tmp_path, net(CC, fc_extra="neuron=relu\n"), PARAMS)
    assert [l["name"] for l in layers] == ["data", "labels", "fc10", "fc10_neuron", "probs", "logprob"]
    L = named(layers)
    nl = L["fc10_neuron"]
    assert nl["type"] == "neuron" and nl["inputs"] == [2] and nl["inputLayers"][0] is L["fc10"]
    assert nl["neuron"] == {"type": "relu", "params": {}, "usesActs": True, "usesInputs": False}
    assert (nl["outputs"], nl["numInputs"], nl["forceOwnActs"], nl["requiresParams"]) == (10, [10], False, False)
    # fc10 does not use its acts, relu does not use its inputs, fc10 feeds only the neuron
    # layer: both matrices are shared (cc:layer.py:311-322)
    assert (nl["actsTarget"], nl["actsGradTarget"]) == (0, 0)
    assert L["fc10"]["neuron"] == "relu"  # the source layer keeps its string
    assert L["probs"]["inputs"] == [3]
    assert L["probs"]["inputLayers"][0] is L["fc10"]  # the 2012 quirk: inputLayers not re-pointed
    assert L["logprob"]["inputs"] == [1, 4]
    lines = init_lines(capsys)
    assert lines[-1] == "Initialized neuron layer 'fc10_neuron', producing 10 outputs"  # after all the others
    assert "src_layer" not in nl and "gpu" not in nl


def test_detached_neuron_alexnet(tmp_path, capsys):
    layers = parse(tmp_path, net(AN, fc_extra="neuron=relu\n"), PARAMS.replace("wc=0.01", "wc=0.01\nquantF=half"), AN)
    assert list(layers) == ["data", "labels", "fc10", "probs", "logprob", "fc10_neuron"]
    nl = layers["fc10_neuron"]
    assert nl["src_layer"] == "fc10" and nl["gpu"] == 0 and nl["inputs"] == ["fc10"]
    assert nl["inputLayers"][0] is layers["fc10"]
    assert layers["probs"]["inputs"] == ["fc10_neuron"] and layers["probs"]["inputLayers"][0] is nl
    # optimize() walks the dict's names in the AlexNet code: nothing is ever shared
    assert (nl["actsTarget"], nl["actsGradTarget"]) == (-1, -1)
    # a detached layer takes its quantisers from its source layer's section (chm:layer.py:163-164)
    assert nl["quantF"] == {"type": "half", "params": {}} and nl["quantB"] == DEFAULT
    assert init_lines(capsys)[-1] == "Initialized neuron layer 'fc10_neuron' on GPU 0, producing 10 outputs"


def test_detached_neuron_name_clash(tmp_path, dialect):
    g = G(dialect)
    body = ("[fc10_neuron]\ntype=neuron\ninputs=data\nneuron=abs\n%s\n[fc10_neuron.1]\ntype=neuron\n"
            "inputs=fc10_neuron\nneuron=abs\n%s" % (g, g))
    L = named(parse(tmp_path, net(dialect, body, "fc10_neuron.1", "neuron=relu\n"), PARAMS, dialect))
    assert "fc10_neuron.2" in L and L["fc10_neuron.2"]["neuron"]["type"] == "relu"


def test_alexnet_detach_order_is_python2_dict_order(tmp_path, capsys):
    names = ["conv1", "conv2", "fc6", "fc7", "fc8"]
    ldef, prev = HEAD, "data"
    for nm in names:
        ldef += "\n[%s]\ntype=fc\noutputs=10\ninputs=%s\ninitW=0.01\ngpu=0\n%s" % (
            nm, prev, "neuron=relu\n" if nm != "fc8" else "")
        prev = nm
    ldef += "\n[probs]\ntype=softmax\ninputs=fc8\n\n[logprob]\ntype=cost.logreg\ninputs=labels,probs\ngpu=0\n"
    params = "[logprob]\ncoeff=1\n" + "".join("\n[%s]\n%s" % (nm, FC_PARAMS) for nm in names)
    layers = parse(tmp_path, ldef, params, AN)
    # CPython 2.7 walked its dict in this order when detaching (2012 output, pasted)
    assert [l for l in init_lines(capsys) if "neuron" in l] == [
        "Initialized neuron layer 'fc6_neuron' on GPU 0, producing 10 outputs",
        "Initialized neuron layer 'fc7_neuron' on GPU 0, producing 10 outputs",
        "Initialized neuron layer 'conv2_neuron' on GPU 0, producing 10 outputs",
        "Initialized neuron layer 'conv1_neuron' on GPU 0, producing 10 outputs",
    ]
    # returned in layers.cfg order, then the detached layers in their sources' order
    assert list(layers)[-4:] == ["conv1_neuron", "conv2_neuron", "fc6_neuron", "fc7_neuron"]
    # and with no params at all, 2012 named fc6 (not conv1) first
    e = parse_error(tmp_path, ldef, "[logprob]\ncoeff=1\n", AN)
    assert e.msg.startswith("Layer 'fc6' of type 'fc' requires extra parameters")


def test_acts_targets_cuda_convnet(tmp_path):
    body = (conv(CC, "cv") + "[n1]\ntype=neuron\ninputs=cv\nneuron=ident\n\n"
            "[n2]\ntype=neuron\ninputs=cv\nneuron=abs\n\n"
            "[es]\ntype=eltsum\ninputs=n1,n2\n\n" + conv(CC, "cv2") + "[m1]\ntype=neuron\ninputs=cv2\nneuron=ident\n\n"
            "[m2]\ntype=neuron\ninputs=m1\nneuron=abs\n\n[em]\ntype=eltmax\ninputs=m2,es\n\n")
    params = CONV_PARAMS + "\n[cv2]\n" + ZERO_PARAMS
    L = named(parse(tmp_path, net(CC, body, "em"), params))
    # cv feeds two layers: nothing shared with it
    assert (L["n1"]["actsTarget"], L["n1"]["actsGradTarget"]) == (-1, -1)
    assert (L["n2"]["actsTarget"], L["n2"]["actsGradTarget"]) == (-1, -1)
    # es: n1 then n2 each feed only es, neither uses its acts: the last one wins
    assert (L["es"]["actsTarget"], L["es"]["actsGradTarget"]) == (1, 1)
    # m1 (ident: no inputs used) over cv2 (acts unused), fed once: both shared
    assert (L["m1"]["actsTarget"], L["m1"]["actsGradTarget"]) == (0, 0)
    # m2 (abs) uses its inputs: only the gradient is shared
    assert (L["m2"]["actsTarget"], L["m2"]["actsGradTarget"]) == (-1, 0)
    # eltmax keeps forceOwnActs: never shares
    assert (L["em"]["actsTarget"], L["em"]["actsGradTarget"]) == (-1, -1)


def test_acts_targets_alexnet_are_always_minus_one(tmp_path):
    body = conv(AN, "cv2") + "[m1]\ntype=neuron\ninputs=cv2\nneuron=ident\ngpu=0\n"
    L = parse(tmp_path, net(AN, body, "m1"), CONV_PARAMS.replace("[cv]", "[cv2]"), AN)
    assert all((l["actsTarget"], l["actsGradTarget"]) == (-1, -1) for l in L.values())


def test_alexnet_layer_name_containing_inputs_is_a_clean_error(tmp_path):
    # chm:layer.py:345 runs `'inputs' in ll and ... ll['inputs']` over the dict's *names*: a
    # layer named '...inputs...' made it index a string (TypeError traceback in 2012)
    body = "[myinputs]\ntype=neuron\ninputs=data\nneuron=relu\ngpu=0\n"
    e = parse_error(tmp_path, net(AN, body, "myinputs"), PARAMS, AN)
    assert "myinputs" in e.msg and "\n" not in str(e)
    # cuda-convnet has no such problem
    assert "myinputs" in named(parse(tmp_path, net(CC, body.replace("gpu=0\n", ""), "myinputs"), PARAMS))


# =============================================================================================
# AlexNet-only layer types
# =============================================================================================
def test_hs_dropout(tmp_path, capsys):
    body = "[hs]\ntype=hs\ninputs=data\nkeep=0.5\ngpu=0\n"
    hs = named(parse(tmp_path, net(AN, body, "hs"), PARAMS + "\n[hs]\nenable=1\n", AN))["hs"]
    assert hs["keep"] == 0.5 and hs["enable"] is True and hs["outputs"] == 192
    assert (hs["requiresParams"], hs["usesInputs"], hs["usesActs"], hs["forceOwnActs"]) == (True, False, False, False)
    assert hs["quantF"] == DEFAULT
    assert "Initialized hidden sex layer 'hs' on GPU 0, producing 192 outputs" in init_lines(capsys)
    hs = named(parse(tmp_path, net(AN, body, "hs"), PARAMS + "\n[hs]\nenable=no\n", AN))["hs"]
    assert hs["enable"] is False
    assert parse_error(tmp_path, net(AN, body, "hs"), PARAMS + "\n[hs]\nx=1\n", AN).msg == \
        "Layer 'hs': required parameter 'enable' missing"
    assert parse_error(tmp_path, net(AN, body.replace("keep=0.5\n", ""), "hs"), PARAMS, AN).msg == \
        "Layer 'hs': required parameter 'keep' missing"


def test_concat(tmp_path, capsys):
    body = "[n1]\ntype=neuron\ninputs=data\nneuron=relu\ngpu=0\n\n[cat]\ntype=concat\ninputs=data,labels,n1\ngpu=0\n"
    cat = named(parse(tmp_path, net(AN, body, "cat"), PARAMS, AN))["cat"]
    assert cat["outputs"] == 192 + 1 + 192 and cat["copyOffsets"] == [0, 192, 193]
    assert cat["forceOwnActs"] is True
    assert "Initialized concatenation layer 'cat' on GPU 0, producing 385 outputs" in init_lines(capsys)


def test_href(tmp_path, capsys):
    body = "[hr]\ntype=href\ninputs=data\nchannels=3\ngpu=0\n"
    hr = named(parse(tmp_path, net(AN, body, "hr"), PARAMS, AN))["hr"]
    assert (hr["outputs"], hr["channels"], hr["imgSize"], hr["imgPixels"]) == (192, 3, 8, 64)
    assert "Initialized horizontal reflection layer 'hr', producing 8x8 3-channel output" in init_lines(capsys)
    assert parse_error(tmp_path, net(AN, body.replace("channels=3", "channels=4"), "hr"), PARAMS, AN,
                       dims=(256, 1)).msg == "Layer 'hr': parameter 'channels' must be in the range 1-3"


TREE_META = {"tree": {0: [], 1: [], 2: [], 3: [], 4: [0, 1], 5: [2, 3, 4]}, "all_wnids": {"gproot": 5}}


def test_treefc(tmp_path, capsys):
    ldef = (HEAD + "\n[tf]\ntype=treefc\ninputs=data\ninitW=0.01\ninitB=0.5\ngpu=0\n\n[probs]\ntype=softmax\n"
            "inputs=tf\n\n[logprob]\ntype=cost.logreg\ninputs=labels,probs\ngpu=0\n")
    model = StaticModel(DIMS, 4)
    model.train_data_provider.batch_meta = TREE_META
    tf = named(parse(tmp_path, ldef, PARAMS.replace("[fc10]", "[tf]"), AN, model=model))["tf"]
    # one weight column per tree node, the non-leaf ones zeroed (chm:layer.py:896-905)
    assert tf["tree"] == [[], [], [], [], [0, 1], [2, 3, 4]] and tf["rootLabel"] == 5
    assert tf["outputs"] == 4 and tf["weightsPerFilter"] == [192]
    w = tf["weights"][0]
    assert w.shape == (192, 6) and w.flags.f_contiguous
    assert n.array_equal(w[:, :4], randn_weights((192, 6))[0][:, :4]) and not w[:, 4:].any()
    assert tf["biases"].shape == (1, 4) and (tf["biases"] == 0.5).all()
    assert "Initialized tree-fc layer 'tf' on GPU 0, producing 4 outputs" in init_lines(capsys)
    e = parse_error(tmp_path, ldef.replace("initB=0.5", "weightSource=tf"), PARAMS.replace("[fc10]", "[tf]"), AN,
                    model=model)
    assert e.msg == "Layer 'tf': weight sharing source 'tf[0]' not defined yet."


def test_treefc_without_hierarchy_is_a_clean_error(tmp_path):
    # 2012: KeyError: 'tree' (chm:layer.py:896)
    ldef = (HEAD + "\n[tf]\ntype=treefc\ninputs=data\ninitW=0.01\ngpu=0\n\n[probs]\ntype=softmax\n"
            "inputs=tf\n\n[logprob]\ntype=cost.logreg\ninputs=labels,probs\ngpu=0\n")
    e = parse_error(tmp_path, ldef, PARAMS.replace("[fc10]", "[tf]"), AN, ncls=4)
    assert e.msg.startswith("Layer 'tf': ") and "tree" in e.msg


L10 = HEAD + "\n[fc10]\ntype=fc\noutputs=10\ninputs=data\ninitW=0.01\ngpu=0\n%s\n[probs]\ntype=softmax\ninputs=fc10\n\n"


def test_cost_msm(tmp_path, capsys):
    ldef = L10 % "" + "[ms]\ntype=cost.msm\ninputs=labels,probs\ngpu=0\n"
    ms = named(parse(tmp_path, ldef, PARAMS + "\n[ms]\ncoeff=1\nsetSize=3\nthreads=8\n", AN))["ms"]
    assert (ms["numOut"], ms["setSize"], ms["threads"], ms["coeff"]) == (10, 3, 8, 1.0)
    assert "Initialized multi-softmax cost 'ms' on GPU 0" in init_lines(capsys)


@pytest.mark.parametrize("params,message", [
    ("setSize=10\nthreads=8", "Layer 'ms': parameter 'setSize' must be in the range 1-9"),
    ("setSize=3\nthreads=33", "Layer 'ms': parameter 'threads' must be in the range 1-32"),
])
def test_cost_msm_range_is_a_clean_error(tmp_path, params, message):
    # 2012 passed '%d' as the strconv function (chm:layer.py:1307-1308): TypeError 'str'
    # object is not callable, a traceback, whenever the value was out of range
    ldef = L10 % "" + "[ms]\ntype=cost.msm\ninputs=labels,probs\ngpu=0\n"
    assert parse_error(tmp_path, ldef, PARAMS + "\n[ms]\ncoeff=1\n" + params + "\n", AN).msg == message


def test_cost_crossent(tmp_path, capsys):
    ldef = L10 % "" + "[ce]\ntype=cost.crossent\ninputs=labels,probs\ngpu=0\n"
    ce = named(parse(tmp_path, ldef, PARAMS + "\n[ce]\ncoeff=1\n", AN, dims=(192, 10)))["ce"]
    assert ce["numInputs"] == [10, 10] and ce["coeff"] == 1.0
    assert "Initialized cross-entropy cost 'ce' on GPU 0" in init_lines(capsys)
    assert parse_error(tmp_path, ldef, PARAMS + "\n[ce]\ncoeff=1\n", AN).msg == \
        "Layer 'ce': Dimensionality of first input must be equal to number of labels"


@pytest.mark.parametrize("ctype,words", [("cost.crossent2", "elementwise cross-entropy"),
                                         ("cost.rflickr", "robust Flickr")])
def test_flickr_costs(tmp_path, capsys, ctype, words):
    ldef = L10 % "neuron=logistic\n" + "[ce]\ntype=%s\ninputs=labels,fc10\ngpu=0\n" % ctype
    ldef = ldef.replace("[probs]\ntype=softmax\ninputs=fc10\n", "")
    parse(tmp_path, ldef, PARAMS.replace("[logprob]", "[ce]"), AN, dims=(192, 10))
    lines = init_lines(capsys)
    assert "Initialized %s cost 'ce' on GPU 0" % words in lines
    assert not any(l.startswith("WARNING") for l in lines)
    # a non-logistic second input only warns (chm:layer.py:1284-1285)
    parse(tmp_path, ldef.replace("neuron=logistic", "neuron=relu"), PARAMS.replace("[logprob]", "[ce]"), AN,
          dims=(192, 10))
    assert "WARNING: Layer 'ce': input 'fc10' is not logistic, results may not be what you intend." \
        in init_lines(capsys)
    assert parse_error(tmp_path, ldef, PARAMS.replace("[logprob]", "[ce]"), AN).msg == \
        "Layer 'ce': input 'labels' must produce 10 outputs, because that is the number of classes in the dataset"


def test_cost_gsum2(tmp_path, capsys):
    ldef = L10 % "" + "[gs]\ntype=cost.gsum2\ninputs=labels,probs\ngpu=0\n"
    gs = named(parse(tmp_path, ldef, PARAMS.replace("[logprob]", "[gs]"), AN))["gs"]
    assert gs["coeff"] == 1.0
    assert "Initialized gated sum-of-squares cost 'gs' on GPU 0" in init_lines(capsys)
    e = parse_error(tmp_path, ldef.replace("labels,probs", "probs,labels"), PARAMS.replace("[logprob]", "[gs]"), AN)
    assert e.msg == "Layer 'gs': dimensionality of input 0 must be 1"


def test_cost_tica(tmp_path, capsys):
    ldef = ("[data]\ntype=data\ndataIdx=0\n\n" + conv(AN) +
            "[tc]\ntype=cost.tica\ninputs=cv\nchannels=16\nsizeX=3\ngpu=0\n")
    params = "[cv]\n" + FC_PARAMS + "\n[tc]\ncoeff=1\n"
    tc = named(parse(tmp_path, ldef, params, AN, dims=(192,)))["tc"]
    assert (tc["channels"], tc["sizeX"], tc["imgPixels"], tc["imgSize"], tc["outputs"]) == (16, 3, 64, 8, 0)
    assert "Initialized TICA cost 'tc' on GPU 0" in init_lines(capsys)
    e = parse_error(tmp_path, ldef.replace("channels=16\nsizeX", "channels=5\nsizeX"), params, AN, dims=(192,))
    assert e.msg == "Layer 'tc': has 1024 dimensional input, not interpretable as 5-channel images"


def test_gpu_placement(tmp_path):
    body = "[n1]\ntype=neuron\ninputs=data\nneuron=relu\ngpu=1\n\n[n2]\ntype=neuron\ninputs=n1\nneuron=relu\n"
    ldef = net(AN, body, "n2").replace("inputs=n2\ninitW=0.01\ngpu=0\n", "inputs=n2\ninitW=0.01\n")
    L = named(parse(tmp_path, ldef, PARAMS, AN, ngpus=2))
    assert (L["n1"]["gpu"], L["n2"]["gpu"], L["fc10"]["gpu"], L["data"]["gpu"]) == (1, 1, 1, -1)  # inherited
    assert parse_error(tmp_path, ldef, PARAMS, AN).msg == "Layer 'n1': parameter 'gpu' must be one of '0'"
    # no gpu= at all: the first layer inherits the data layer's -1
    assert parse_error(tmp_path, net(CC), PARAMS, AN).msg == "Layer 'fc10': parameter 'gpu' must be one of '0'"
    assert parse_error(tmp_path, net(AN).replace("gpu=0", "gpu=x", 1), PARAMS, AN).msg == \
        "Layer 'fc10': parameter 'gpu' must be int"


def test_cuda_convnet_ignores_gpu(tmp_path):
    fc = named(parse(tmp_path, net(AN).replace("gpu=0", "gpu=7"), PARAMS))["fc10"]
    assert "gpu" not in fc


@pytest.mark.parametrize("text,expected", [
    ("default", DEFAULT),
    ("Default", DEFAULT),
    ("default[]", DEFAULT),
    ("linear[tgtFactor=10,noiseStdev=0]", {"type": "linear", "params": {"tgtFactor": 10.0, "noiseStdev": 0.0}}),
    ("exp[tgtFactor=10, noiseStdev=0.1]", {"type": "exp", "params": {"tgtFactor": 10.0, "noiseStdev": 0.1}}),
    ("exp [ tgtFactor=1,noiseStdev=2 ]", {"type": "exp", "params": {"tgtFactor": 1.0, "noiseStdev": 2.0}}),
    ("dexp[tgtFactor=250,noiseStdev=0,numSteps=4]",
     {"type": "dexp", "params": {"tgtFactor": 250.0, "noiseStdev": 0.0, "numSteps": 4}}),
    ("DEXP[TGTFACTOR=250,NOISESTDEV=0,NUMSTEPS= 4 ]",
     {"type": "dexp", "params": {"tgtFactor": 250.0, "noiseStdev": 0.0, "numSteps": 4}}),
    ("jdexp[tgtFactor=2,noiseStdev=1e-2,numSteps=3]",
     {"type": "jdexp", "params": {"tgtFactor": 2.0, "noiseStdev": 0.01, "numSteps": 3}}),
])
def test_learning_rate_schedules(tmp_path, text, expected):
    params = PARAMS.replace("wc=0.01", "wc=0.01\nschedW=%s\nschedB=%s" % (text, text))
    fc = named(parse(tmp_path, net(AN), params, AN))["fc10"]
    assert fc["schedW"] == expected and fc["schedB"] == expected
    for k, v in expected["params"].items():
        assert type(fc["schedW"]["params"][k]) is type(v)


@pytest.mark.parametrize("text", [
    "dexp[1000,4]", "linear[1,1]", "dexp[250,0,4]", "linear[noiseStdev=0,tgtFactor=1]", "foo",
    "linear[tgtFactor=1,noiseStdev=0]x",
    # these two raised ValueError out of ParamParser.parse in 2012 (int('4.5'), float('a')): a
    # traceback; the port reports them like any other unparsable schedule
    "dexp[tgtFactor=250,noiseStdev=0,numSteps=4.5]", "linear[tgtFactor=a,noiseStdev=0]",
])
def test_learning_rate_schedule_errors(tmp_path, text):
    params = PARAMS.replace("wc=0.01", "wc=0.01\nschedW=%s" % text)
    e = parse_error(tmp_path, net(AN), params, AN)
    assert e.msg == "Layer 'fc10': unable to parse learning rate schedule schedW=%s." % text


def test_quantisers(tmp_path):
    params = PARAMS.replace("wc=0.01", "wc=0.01\nquantF=HALF\nquantB=half[]")
    fc = named(parse(tmp_path, net(AN), params, AN))["fc10"]
    assert fc["quantF"] == {"type": "half", "params": {}} and fc["quantB"] == {"type": "half", "params": {}}
    e = parse_error(tmp_path, net(AN), PARAMS.replace("wc=0.01", "wc=0.01\nquantB=quarter"), AN)
    assert e.msg == "Layer 'fc10': unable to parse backward quantization scheme quantB=quarter."


def test_alexnet_weight_params(tmp_path):
    params = (PARAMS.replace("wc=0.01\n", "") + "\n[cv]\n" + FC_PARAMS +
              "wball=0.5\nsuperEps=0.1\nsuperMom=0.2\nwcNormMax=0.5\nwcNormMin=0.1\n")
    L = named(parse(tmp_path, net(AN, conv(AN), "cv"), params, AN))
    assert L["fc10"]["wc"] == [0.0]  # optional in the AlexNet code (chm:layer.py:734)
    cv = L["cv"]
    assert cv["wball"] == [0.5] and cv["wballNormed"] == [0.5 * 27]  # wball * weightsPerFilter
    assert (cv["superEps"], cv["superMom"], cv["wcNormMax"], cv["wcNormMin"]) == (0.1, 0.2, [0.5], [0.1])
    e = parse_error(tmp_path, net(AN, conv(AN), "cv"), params.replace("wcNormMin=0.1", "wcNormMin=0.6"), AN)
    assert e.msg == "Layer 'cv': wcNormMin must be <= wcNormMax."
    e = parse_error(tmp_path, net(AN, conv(AN), "cv"), params.replace("wcNormMin=0.1", "wcNormMin=0.1,0.2"), AN)
    assert e.msg == "Layer 'cv': wcNormMin list length does not match number of inputs"


# =============================================================================================
# errors, with the 2012 words
# =============================================================================================
def _err_cases():
    P = PARAMS
    both, cc_only, an_only = (CC, AN), (CC,), (AN,)
    return [
        # id, dialects, def (a function of the dialect), params, dims, expected message
        ("no type", both, lambda d: net(d, "[x]\ninputs=data\n"), P, DIMS, "Layer 'x': no type given"),
        ("unknown type", both, lambda d: net(d, "[x]\ntype=foo\ninputs=data\n"), P, DIMS,
         "Layer 'x': Unknown layer type: 'foo'"),
        ("alexnet type in cuda-convnet", cc_only, lambda d: net(d, "[x]\ntype=hs\ninputs=data\nkeep=0.5\n"), P, DIMS,
         "Layer 'x': Unknown layer type: 'hs'"),
        ("unknown input", both, lambda d: net(d, top="nope"), P, DIMS, "Layer 'fc10': input layer 'nope' not defined"),
        ("input defined later", both, lambda d: net(d, top="probs"), P, DIMS,
         "Layer 'fc10': input layer 'probs' not defined"),
        ("no inputs", both, lambda d: net(d).replace("inputs=data\n", ""), P, DIMS,
         "Layer 'fc10': required parameter 'inputs' missing"),
        ("input with no output", both,
         lambda d: net(d) + "\n[fc2]\ntype=fc\ninputs=logprob\noutputs=10\ninitW=0.1\n" + G(d), P, DIMS,
         "Layer 'fc2': input layer 'logprob' does not produce any output"),
        ("unused layer", both, lambda d: net(d) + "\n[dangle]\ntype=neuron\ninputs=data\nneuron=relu\n" + G(d), P, DIMS,
         "Layer 'dangle' of type 'neuron' is unused"),
        ("unused data layer", both, lambda d: net(d).replace("inputs=labels,probs", "inputs=data,probs"), P, (1, 1),
         "Layer 'labels' of type 'data' is unused"),
        ("missing params section", both, lambda d: net(d), "[logprob]\ncoeff=1\n", DIMS,
         "Layer 'fc10' of type 'fc' requires extra parameters, but none given in file '{params}'."),
        ("missing param", both, lambda d: net(d), P.replace("momB=0.9\n", ""), DIMS,
         "Layer 'fc10': required parameter 'momB' missing"),
        ("missing coeff", both, lambda d: net(d), P.replace("coeff=1", "x=1"), DIMS,
         "Layer 'logprob': required parameter 'coeff' missing"),
        ("wc required in cuda-convnet", cc_only, lambda d: net(d), P.replace("wc=0.01\n", ""), DIMS,
         "Layer 'fc10': required parameter 'wc' missing"),
        ("missing initW", both, lambda d: net(d).replace("initW=0.01\n", ""), P, DIMS,
         # the default 0.01 is a float, not a list: .split fails (cc:layer.py:739, :111-113)
         "Layer 'fc10': parameter 'initW' must be ','-delimited list of floats"),
        ("outputs not int", both, lambda d: net(d).replace("outputs=10", "outputs=10.0"), P, DIMS,
         "Layer 'fc10': parameter 'outputs' must be int"),
        ("outputs 1_0", both, lambda d: net(d).replace("outputs=10", "outputs=1_0"), P, DIMS,
         "Layer 'fc10': parameter 'outputs' must be int"),
        ("outputs 0", both, lambda d: net(d).replace("outputs=10", "outputs=0"), P, DIMS,
         "Layer 'fc10': parameter 'outputs' must be greater than or equal to 1"),
        ("epsB not float", both, lambda d: net(d), P.replace("epsB=0.002", "epsB=abc"), DIMS,
         "Layer 'fc10': parameter 'epsB' must be float"),
        ("epsB 1_0", both, lambda d: net(d), P.replace("epsB=0.002", "epsB=1_0"), DIMS,
         "Layer 'fc10': parameter 'epsB' must be float"),
        ("epsW not floats", both, lambda d: net(d), P.replace("epsW=0.001", "epsW=0.001;x"), DIMS,
         "Layer 'fc10': parameter 'epsW' must be ','-delimited list of floats"),
        ("epsW list length", both, lambda d: net(d), P.replace("epsW=0.001", "epsW=0.001,0.002"), DIMS,
         "Layer 'fc10': epsW list length does not match number of inputs"),
        ("hash is no comment", both, lambda d: net(d), P.replace("epsB=0.002", "epsB=0.002 # c"), DIMS,
         "Layer 'fc10': parameter 'epsB' must be float"),
        ("dataIdx", both, lambda d: net(d).replace("dataIdx=0", "dataIdx=x"), P, DIMS,
         "Layer 'data': parameter 'dataIdx' must be int"),
        ("bool", both, lambda d: net(d, "[lab]\ntype=rgb2lab\ninputs=data\ncenter=2\n" + G(d), "lab"), P, DIMS,
         "Layer 'lab': parameter 'center' must be bool"),
        ("initW list length", both, lambda d: net(d).replace("initW=0.01", "initW=0.01,0.02"), P, DIMS,
         "Layer 'fc10': initW list length does not match number of inputs"),
        ("logreg labels", both, lambda d: net(d).replace("inputs=labels,probs", "inputs=data,probs"), P, DIMS,
         "Layer 'logprob': dimensionality of first input must be 1"),
        ("logreg softmax", both, lambda d: net(d).replace("inputs=labels,probs", "inputs=labels,fc10"), P, DIMS,
         "Layer 'logprob': second input must be softmax layer"),
        ("logreg classes", both, lambda d: net(d).replace("outputs=10", "outputs=11"), P, DIMS,
         "Layer 'logprob': softmax input 'probs' must produce 10 outputs, because that is the number of classes "
         "in the dataset"),
        ("softmax two inputs", both, lambda d: net(d).replace("inputs=fc10", "inputs=fc10,fc10"), P, DIMS,
         # 2012 passed the format arguments separately and printed a tuple (cc:layer.py:344)
         "Layer 'probs': number of inputs must be 1"),
        ("eltsum dims", both, lambda d: net(d, "[es]\ntype=eltsum\ninputs=data,labels\n" + G(d), "es"), P, DIMS,
         "Layer 'es': all inputs must have the same dimensionality. Got dimensionalities: 192, 1"),
        ("eltmax one input", both, lambda d: net(d, "[em]\ntype=eltmax\ninputs=data\n" + G(d), "em"), P, DIMS,
         "Layer 'em': elementwise max layer must have at least 2 inputs, got 1."),
        # conv
        ("conv channels mismatch", both, lambda d: net(d, conv(d).replace("channels=3", "channels=4"), "cv"),
         CONV_PARAMS, DIMS, "Layer 'cv[0]': has 192 dimensional input, not interpretable as square 4-channel images"),
        ("conv not square", both, lambda d: net(d, conv(d), "cv"), CONV_PARAMS, (150, 1),
         "Layer 'cv[0]': has 150 dimensional input, not interpretable as square 3-channel images"),
        ("conv channels 5", both, lambda d: net(d, conv(d).replace("channels=3", "channels=5"), "cv"), CONV_PARAMS,
         (320, 1), "Layer 'cv[0]': number of channels must be smaller than 4 or divisible by 4"),
        ("conv filters 15", both, lambda d: net(d, conv(d).replace("filters=16", "filters=15"), "cv"), CONV_PARAMS,
         DIMS, "Layer 'cv[0]': parameter 'filters * groups' must be divisible by 16"),
        ("conv filters*groups", both, lambda d: net(d, conv(d).replace("channels=3", "channels=8")
                                                     .replace("filters=16", "filters=8\ngroups=2"), "cv"),
         CONV_PARAMS, (512, 1), "Layer 'cv[0]': parameter 'filters * groups' must be divisible by 32"),
        ("conv groups channels", both, lambda d: net(d, conv(d).replace("channels=3", "channels=4")
                                                      .replace("filters=16", "filters=16\ngroups=2"), "cv"),
         CONV_PARAMS, (256, 1), "Layer 'cv[0]': parameter 'channels' must be divisible by '4 * groups'"),
        ("conv partialSum", both, lambda d: net(d, conv(d).replace("partialSum=4", "partialSum=5"), "cv"),
         CONV_PARAMS, DIMS, "Layer 'cv': convolutional layer produces 8x8=64 outputs per filter, but given "
                            "partialSum parameter (5) does not divide this number"),
        ("conv no partialSum", both, lambda d: net(d, conv(d).replace("partialSum=4\n", ""), "cv"), CONV_PARAMS, DIMS,
         "Layer 'cv': required parameter 'partialSum' missing"),
        ("conv filter too big", both, lambda d: net(d, conv(d).replace("filterSize=3", "filterSize=11"), "cv"),
         CONV_PARAMS, DIMS, "Layer 'cv[0]': filter size (11) greater than image size + 2 * padding (10)"),
        ("conv padding", both, lambda d: net(d, conv(d).replace("padding=1", "padding=-1"), "cv"), CONV_PARAMS, DIMS,
         "Layer 'cv[0]': parameter 'padding' must be greater than or equal to 0"),
        ("conv list length", both, lambda d: net(d, two_input_conv(d).replace("channels=3,3", "channels=3"), "cv"),
         TWO_PARAMS, DIMS, "Layer 'cv': channels list length does not match number of inputs"),
        ("conv ints", both, lambda d: net(d, conv(d).replace("filterSize=3", "filterSize=3.0"), "cv"), CONV_PARAMS,
         DIMS, "Layer 'cv': parameter 'filterSize' must be ','-delimited list of ints"),
        ("conv output dims", both, lambda d: net(d, two_input_conv(d, "").replace("filterSize=3,3", "filterSize=3,5"),
                                                  "cv"), TWO_PARAMS, DIMS,
         "Layer 'cv': all inputs must produce equally-dimensioned output. Dimensions are: 16x8x8, 16x6x6."),
        ("randSparse groups 1", both, lambda d: net(d, conv(d).replace("channels=3", "channels=8")
                                                     .replace("filters=16", "filters=16\nrandSparse=1"), "cv"),
         CONV_PARAMS, (512, 1), "Layer 'cv[0]': number of groups must be greater than 1 when using random sparse "
                                "connectivity"),
        ("randSparse filterChannels 4", both, lambda d: net(d, conv(d).replace("channels=3", "channels=8")
                                                             .replace("filters=16", RAND_SPARSE.replace(
                                                                 "filterChannels=4", "filterChannels=2")), "cv"),
         CONV_PARAMS, (512, 1), "Layer 'cv[0]': parameter 'filterChannels' must be divisible by 4"),
        ("randSparse channels", both, lambda d: net(d, conv(d).replace("channels=3", "channels=12")
                                                     .replace("filters=16", "filters=16\ngroups=2\nrandSparse=1\n"
                                                                            "filterChannels=8"), "cv"),
         CONV_PARAMS, (768, 1), "Layer 'cv[0]': parameter 'channels' must be divisible by 'filterChannels'"),
        # weight sharing
        ("share unknown", both, lambda d: net(d, conv(d, extra="weightSource=nope\n"), "cv"), CONV_PARAMS, DIMS,
         "Layer 'cv': weight sharing source layer 'nope' does not exist."),
        ("share later", both, lambda d: net(d, conv(d, extra="weightSource=fc10\n"), "cv"), CONV_PARAMS, DIMS,
         "Layer 'cv': weight sharing source layer 'fc10' does not exist."),
        ("share unparsable", both, lambda d: net(d, conv(d, extra="weightSource=a b\n"), "cv"), CONV_PARAMS, DIMS,
         "Layer 'cv': unable to parse weight sharing source 'a b'. Format is layer[idx] or just layer, in which "
         "case idx=0 is used."),
        ("share type", cc_only, lambda d: net(d, conv(d, extra="weightSource=data\n"), "cv"), CONV_PARAMS, DIMS,
         "Layer 'cv': weight sharing source layer 'data' is of type 'data'; should be 'conv'."),
        ("share gpu", an_only, lambda d: net(d, conv(d, extra="weightSource=data\n"), "cv"), CONV_PARAMS, DIMS,
         "Layer 'cv': weight sharing source layer 'data' runs on GPU -1, while 'cv' runs on GPU 0."),
        ("share index", both, lambda d: net(d, conv(d, "cv2") + conv(d, extra="weightSource=cv2[1]\n"), "cv"),
         CONV_PARAMS + "\n[cv2]\n" + ZERO_PARAMS, DIMS,
         "Layer 'cv': weight sharing source layer 'cv2' has 1 weight matrices, but 'cv2[1][1]' requested."),
        ("share shape", both, lambda d: net(d, two_input_conv(d).replace("filterSize=3,3", "filterSize=3,5")
                                            .replace("padding=1,1", "padding=1,2"), "cv"), TWO_PARAMS, DIMS,
         "Layer 'cv': weight sharing source matrix 'cv[0]' has shape 27x16; should be 75x16."),
        ("share self forward", both, lambda d: net(d, two_input_conv(d, "weightSource=cv[1],\n"), "cv"), TWO_PARAMS,
         DIMS, "Layer 'cv': weight sharing source 'cv[1]' not defined yet."),
        ("share %(__name__)s", both, lambda d: net(d, conv(d, extra="weightSource=%(__name__)s\n"), "cv"), CONV_PARAMS,
         DIMS, "Layer 'cv': weight sharing source 'cv[0]' not defined yet."),
        # pool, norms, image layers
        ("pool kind cc", cc_only, lambda d: net(d, pool(d, "maxabs", "data", 3), "pl"), P, DIMS,
         # cuda-convnet names the value, not the parameter (cc:layer.py:229)
         "Layer 'pl': parameter 'maxabs' must be one of 'max', 'avg'"),
        ("pool kind alexnet", an_only, lambda d: net(d, pool(d, "foo", "data", 3), "pl"), P, DIMS,
         "Layer 'pl': parameter 'pool' must be one of 'max', 'maxabs', 'avg', 'rand'"),
        ("pool rand params", an_only, lambda d: net(d, pool(d, "rand", "data", 3), "pl"), P, DIMS,
         "Layer 'pl' of type 'pool' requires extra parameters, but none given in file '{params}'."),
        ("pool over weights", both, lambda d: net(d, conv(d) + pool(d, channels=4), "pl"), CONV_PARAMS, DIMS,
         "Layer 'pl[0]': parameter 'channels' must be divisible by 16"),
        ("pool sizeX", both, lambda d: net(d, pool(d, "max", "data", 3).replace("sizeX=3", "sizeX=9"), "pl"), P, DIMS,
         "Layer 'pl': parameter 'sizeX' must be in the range 1-8"),
        ("pool stride", both, lambda d: net(d, pool(d, "max", "data", 3).replace("stride=2", "stride=4"), "pl"), P,
         DIMS, "Layer 'pl': parameter 'stride' must be in the range 1-3"),
        ("pool channels", both, lambda d: net(d, pool(d, "max", "data", 5), "pl"), P, DIMS,
         "Layer 'pl': has 192 dimensional input, not interpretable as 5-channel images"),
        ("cmrnorm channels", both, lambda d: net(d, "[rn]\ntype=cmrnorm\ninputs=data\nchannels=20\nsize=3\n" + G(d),
                                                 "rn"), NORM_PARAMS, (320, 1),
         "Layer 'rn': number of channels must be divisible by 16 when using crossMap"),
        ("cmrnorm size", both,
         lambda d: net(d, conv(d) + "[rn]\ntype=cmrnorm\ninputs=cv\nchannels=16\nsize=1\n" + G(d), "rn"),
         NORM_PARAMS, DIMS, "Layer 'rn': parameter 'size' must be in the range 2-16"),
        ("rnorm size", both,
         lambda d: net(d, conv(d) + "[rn]\ntype=rnorm\ninputs=cv\nchannels=16\nsize=9\n" + G(d), "rn"),
         NORM_PARAMS, DIMS, "Layer 'rn': parameter 'size' must be in the range 1-8"),
        ("rnorm channels 5", both, lambda d: net(d, "[rn]\ntype=rnorm\ninputs=data\nchannels=5\nsize=2\n" + G(d),
                                                 "rn"), NORM_PARAMS, (80, 1),
         "Layer 'rn': number of channels must be smaller than 4 or divisible by 4"),
        ("rnorm pow", both, lambda d: net(d, conv(d) + "[rn]\ntype=rnorm\ninputs=cv\nchannels=16\nsize=3\n" + G(d),
                                          "rn"), NORM_PARAMS.replace("pow=0.75", ""), DIMS,
         "Layer 'rn': required parameter 'pow' missing"),
        ("rnorm no section", both,
         lambda d: net(d, conv(d) + "[rn]\ntype=rnorm\ninputs=cv\nchannels=16\nsize=3\n" + G(d), "rn"),
         CONV_PARAMS, DIMS,
         "Layer 'rn' of type 'rnorm' requires extra parameters, but none given in file '{params}'."),
        ("nailbed outputsX", both, lambda d: net(d, "[nb]\ntype=nailbed\ninputs=data\nchannels=3\nstride=-1\n" + G(d),
                                                 "nb"), P, DIMS,
         "Layer 'nb': parameter 'outputsX' must be greater than or equal to 0"),
        ("blur size cc", cc_only,
         lambda d: net(d, "[bl]\ntype=blur\ninputs=data\nchannels=3\nfilterSize=4\nstdev=1\n", "bl"), P, DIMS,
         "Layer 'bl': parameter '4' must be one of '3', '5', '7', '9'"),
        ("blur size alexnet", an_only, lambda d: net(d, "[bl]\ntype=blur\ninputs=data\nchannels=3\nfilterSize=4\n"
                                                        "stdev=1\ngpu=0\n", "bl"), P, DIMS,
         "Layer 'bl': parameter 'filterSize' must be one of '3', '5', '7', '9'"),
        ("blur too big", both,
         lambda d: net(d, "[bl]\ntype=blur\ninputs=data\nchannels=3\nfilterSize=9\nstdev=1\n" + G(d), "bl"), P, DIMS,
         "Later 'bl': filter size (9) must be smaller than image size (8)."),
        ("resize scale", both, lambda d: net(d, "[rs]\ntype=resize\ninputs=data\nchannels=3\nscale=3\n" + G(d), "rs"),
         P, DIMS, "Layer 'rs': parameter 'scale' must be in the range 0.500-2.000"),
        ("resize over weights", both, lambda d: net(d, conv(d) + "[rs]\ntype=resize\ninputs=cv\nchannels=16\nscale=2\n"
                                                    + G(d), "rs"), CONV_PARAMS, DIMS,
         "Layer 'rs': layers of type 'resize' cannot propagate gradient and must not be placed over layers with "
         "parameters."),
        ("rscale maxScale", both,
         lambda d: net(d, "[rs]\ntype=rscale\ninputs=data\nchannels=3\nmaxScale=2.5\ntgtSize=3\n" + G(d), "rs"), P, DIMS,
         "Layer 'rs': parameter 'maxScale' must be in the range 1.000-2.000"),
        ("yuv not square", both, lambda d: net(d, "[yuv]\ntype=rgb2yuv\ninputs=data\n" + G(d), "yuv"), P, (150, 1),
         "Layer 'yuv': has 150 dimensional input, not interpretable as 3-channel images"),
        ("hs no section", an_only, lambda d: net(d, "[hs]\ntype=hs\ninputs=data\nkeep=0.5\ngpu=0\n", "hs"), P, DIMS,
         "Layer 'hs' of type 'hs' requires extra parameters, but none given in file '{params}'."),
        ("hs enable", an_only, lambda d: net(d, "[hs]\ntype=hs\ninputs=data\nkeep=0.5\ngpu=0\n", "hs"),
         P + "\n[hs]\nenable=2\n", DIMS, "Layer 'hs': parameter 'enable' must be bool"),
        ("topk", an_only, lambda d: net(d), P + "topk=5.0\n", DIMS, "Layer 'logprob': parameter 'topk' must be int"),
    ]


ERR_CASES = [pytest.param(dl, f, p, dims, msg, id="%s-%s" % (i, dl)) for i, dls, f, p, dims, msg in _err_cases()
             for dl in dls]


@pytest.mark.parametrize("dl,make_def,params,dims,message", ERR_CASES)
def test_errors(tmp_path, dl, make_def, params, dims, message):
    e = parse_error(tmp_path, make_def(dl), params, dl, dims=dims)
    assert e.msg == message.format(params=tmp_path / "layer-params.cfg")
    assert "\n" not in str(e)


def test_error_names_the_file(tmp_path):
    e = parse_error(tmp_path, net(CC), PARAMS.replace("epsB=0.002", "epsB=abc"))
    assert e.path == str(tmp_path / "layer-params.cfg") and str(e).startswith(e.msg)
    e = parse_error(tmp_path, net(CC).replace("outputs=10", "outputs=x"))
    assert e.path == str(tmp_path / "layers.cfg")


def test_missing_files(tmp_path):
    model = StaticModel(DIMS, 10)
    with pytest.raises(LayerParsingError) as ei:
        LayerParser.parse_layers(str(tmp_path / "nope.cfg"), str(tmp_path / "p.cfg"), model)
    assert ei.value.msg == "Layer definition file '%s' does not exist" % (tmp_path / "nope.cfg")
    (tmp_path / "l.cfg").write_text(net(CC))
    with pytest.raises(LayerParsingError) as ei:
        LayerParser.parse_layers(str(tmp_path / "l.cfg"), str(tmp_path / "p.cfg"), model)
    assert ei.value.msg == "Layer parameter file '%s' does not exist" % (tmp_path / "p.cfg")
    with pytest.raises(LayerParsingError):
        LayerParser.parse_layers(str(tmp_path / "l.cfg"), str(tmp_path / "l.cfg"), model, dialect="cuda-convnet2")


def test_only_data_layers_is_a_clean_error(tmp_path, dialect):
    # 2012: max() of an empty sequence in the unused-layer check (cc:layer.py:272): a traceback
    e = parse_error(tmp_path, "[data]\ntype=data\ndataIdx=0\n", "", dialect)
    assert e.msg == "Layer 'data' of type 'data' is unused"


def test_empty_files_give_no_layers(tmp_path, dialect):
    assert len(parse(tmp_path, "", "", dialect)) == 0


# =============================================================================================
# the .cfg rules (Python 2 ConfigParser) as the layer parser sees them
# =============================================================================================
def test_interpolation_and_default_section(tmp_path, dialect):
    ldef = "[DEFAULT]\nw=0.02\n" + net(dialect).replace("initW=0.01", "initW=%(w)s")
    params = "[DEFAULT]\nepsW=0.5\nlr=0.25\n" + PARAMS.replace("epsW=0.001\n", "").replace("epsB=0.002", "epsB=%(lr)s")
    fc = named(parse(tmp_path, ldef, params, dialect))["fc10"]
    assert fc["initW"] == [0.02] and fc["epsW"] == [0.5] and fc["epsB"] == 0.25
    assert n.array_equal(fc["weights"][0], randn_weights((192, 10), scale=0.02)[0])


def test_default_section_supplies_type_and_gpu(tmp_path):
    ldef = "[DEFAULT]\ngpu=0\n" + net(CC)
    assert named(parse(tmp_path, ldef, PARAMS, AN))["fc10"]["gpu"] == 0
    ldef = net(CC).replace("[fc10]\ntype=fc\n", "[fc10]\n").replace("[data]", "[DEFAULT]\ntype=fc\n\n[data]")
    assert named(parse(tmp_path, ldef, PARAMS))["fc10"]["type"] == "fc"


def test_double_percent(tmp_path, dialect, monkeypatch):
    (tmp_path / "pctinit.py").write_text(
        "import numpy\nSEEN = []\n"
        "def w(name, idx, shape, params=[]):\n"
        "    SEEN.append(params)\n"
        "    return numpy.zeros(shape, dtype=numpy.float32)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "pctinit", raising=False)
    parse(tmp_path, net(dialect, fc_extra="initWFunc=pctinit.w(50%%,x)\n"), PARAMS, dialect)
    assert sys.modules["pctinit"].SEEN == [["50%", "x"]]


def test_bare_percent_is_a_clean_error(tmp_path, dialect):
    # 2012: InterpolationSyntaxError, a traceback (not a ValueError, so safe_get let it through)
    e = parse_error(tmp_path, net(dialect).replace("initW=0.01", "initW=1%"), PARAMS, dialect)
    assert e.msg.startswith("Layer 'fc10': ") and "initW" in e.msg and "'%' must be followed by '%' or '('" in e.msg
    e = parse_error(tmp_path, net(dialect), PARAMS.replace("epsW=0.001", "epsW=5%"), dialect)
    assert e.msg.startswith("Layer 'fc10': ") and "epsW" in e.msg


@pytest.mark.parametrize("value", ["%(nope)s", "%(initw)s"])
def test_interpolation_errors_are_one_line(tmp_path, dialect, value):
    e = parse_error(tmp_path, net(dialect).replace("initW=0.01", "initW=" + value), PARAMS, dialect)
    assert e.msg.startswith("Layer 'fc10': ") and "\n" not in str(e)


def test_duplicate_sections_merge_and_last_key_wins(tmp_path, dialect):
    params = PARAMS + "\n[fc10]\nepsW=0.3\nepsW=0.4\nEPSB=0.7\n"
    fc = named(parse(tmp_path, net(dialect), params, dialect))["fc10"]
    assert fc["epsW"] == [0.4] and fc["epsB"] == 0.7 and fc["momW"] == [0.9]


def test_inline_comments(tmp_path, dialect):
    params = PARAMS.replace("epsW=0.001", "epsW=0.001 ; a comment").replace("epsB=0.002", "epsB=0.002\t;c")
    fc = named(parse(tmp_path, net(dialect), params, dialect))["fc10"]
    assert fc["epsW"] == [0.001] and fc["epsB"] == 0.002


def test_rem_lines(tmp_path, dialect):
    params = PARAMS.replace("epsW=0.001", "rem epsW=5\nREM whatever\nRem = 7\nepsW=0.001")
    assert named(parse(tmp_path, net(dialect), params, dialect))["fc10"]["epsW"] == [0.001]


def test_continuation_lines(tmp_path, dialect):
    g = G(dialect)
    body = "[es]\ntype=eltsum\ninputs=data,\n  data\ncoeffs=1,\n\t2\n%s" % g
    es = named(parse(tmp_path, net(dialect, body, "es"), PARAMS, dialect))["es"]
    assert es["numInputs"] == [192, 192] and es["coeffs"] == [1.0, 2.0]


def test_empty_quotes_and_case_insensitive_keys(tmp_path, dialect):
    ldef = net(dialect, fc_extra='neuron=""\n').replace("type=", "TYPE=").replace("inputs=", "Inputs=")
    layers = parse(tmp_path, ldef, PARAMS.replace("epsW", "EpsW"), dialect)
    assert "fc10_neuron" not in named(layers) and named(layers)["fc10"]["neuron"] == ""


def test_crlf_files(tmp_path, dialect):
    a = parse(tmp_path, net(dialect, conv(dialect), "cv"), CONV_PARAMS, dialect)
    b = parse(tmp_path, net(dialect, conv(dialect), "cv").replace("\n", "\r\n"), CONV_PARAMS.replace("\n", "\r\n"),
              dialect)
    assert layer.to_jsonable(a) == layer.to_jsonable(b)


@pytest.mark.parametrize("text,expected", [("True", True), ("yes", True), ("on", True), ("1", True),
                                           ("false", False), ("No", False), ("off", False), ("0", False)])
def test_booleans(tmp_path, dialect, text, expected):
    body = conv(dialect, extra="sharedBiases=%s\n" % text)
    assert named(parse(tmp_path, net(dialect, body, "cv"), CONV_PARAMS, dialect))["cv"]["sharedBiases"] is expected


@pytest.mark.parametrize("text", ["type=data\n", "\n\n  # c\nx=1\n[data]\n"])
def test_no_section_header_is_a_clean_error(tmp_path, dialect, text):
    e = parse_error(tmp_path, text + net(dialect), PARAMS, dialect)
    assert e.msg.startswith("File contains no section headers.") and "\n" not in str(e)
    e = parse_error(tmp_path, net(dialect), text + PARAMS, dialect)
    assert e.msg.startswith("File contains no section headers.") and e.path == str(tmp_path / "layer-params.cfg")


def test_parse_error_is_a_clean_error(tmp_path, dialect):
    e = parse_error(tmp_path, net(dialect) + "\ngarbage line\n", PARAMS, dialect)
    assert e.msg.startswith("File contains parsing errors:") and "garbage line" in e.msg and "\n" not in str(e)


# =============================================================================================
# init functions
# =============================================================================================
INITMOD = '''
import numpy as n
CALLS = []
def w(name, idx, shape, params=[]):
    CALLS.append(("w", name, idx, shape, params))
    return n.arange(shape[0] * shape[1], dtype=n.float32).reshape(shape) * (idx + 1)
def b(name, shape, params=[]):
    CALLS.append(("b", name, shape, params))
    return n.full(shape, 0.5, dtype=n.float32)
def c(name, idx, shape, params=[]):
    CALLS.append(("c", name, idx, shape, params))
    groups, channels, filter_channels = shape
    return list(reversed(range(channels))) * (groups * filter_channels // channels)
def w64(name, idx, shape, params=[]):
    return n.ones(shape)
def wshape(name, idx, shape, params=[]):
    return n.ones((shape[0] + 1, shape[1]), dtype=n.float32)
def wlist(name, idx, shape, params=[]):
    return [[1.0]]
def b64(name, shape, params=[]):
    return n.ones(shape)
def bshape(name, shape, params=[]):
    return n.ones((1, 1), dtype=n.float32)
def clen(name, idx, shape, params=[]):
    return [0]
def crange(name, idx, shape, params=[]):
    groups, channels, fc = shape
    return [channels] * (groups * fc)
def cperm(name, idx, shape, params=[]):
    groups, channels, fc = shape
    return [0] * (groups * fc)
def wraises(name, idx, shape, params=[]):
    raise ValueError("bad seed")
'''


@pytest.fixture
def initmod(tmp_path, monkeypatch):
    (tmp_path / "initmod.py").write_text(INITMOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "initmod", raising=False)
    yield lambda: sys.modules["initmod"]


def test_init_functions(tmp_path, dialect, initmod, capsys):
    ldef = net(dialect, fc_extra="initWFunc=initmod.w(2.5,abc)\ninitBFunc=initmod.b\n")
    fc = named(parse(tmp_path, ldef, PARAMS, dialect))["fc10"]
    # called as 2012 did: f(name, idx, shape, params=[...]) and f(name, shape, params=[...])
    assert initmod().CALLS == [("w", "fc10", 0, (192, 10), ["2.5", "abc"]), ("b", "fc10", (1, 10), [])]
    w = fc["weights"][0]
    assert w.flags.f_contiguous and not w.flags.c_contiguous  # converted to the fc order (cc:layer.py:701)
    assert n.array_equal(w, n.arange(1920, dtype=n.float32).reshape(192, 10))
    assert (fc["biases"] == 0.5).all() and fc["weightsInc"][0].shape == (192, 10)
    lines = init_lines(capsys)
    assert "Layer 'fc10[0]' initialized weight matrices from function initmod.w(2.5,abc)" in lines
    assert "Layer 'fc10' initialized bias vector from function initmod.b" in lines


def test_init_functions_leave_the_random_stream_alone(tmp_path, dialect, initmod):
    ldef = net(dialect, conv(dialect, extra="initWFunc=initmod.w\n"), "cv")
    fc = named(parse(tmp_path, ldef, CONV_PARAMS, dialect))["fc10"]
    assert n.array_equal(fc["weights"][0], randn_weights((1024, 10))[0])  # fc10 got the first draw


@pytest.mark.parametrize("func,message", [
    ("initWFunc=initmod.w64", "Layer 'fc10[0]': weight initialization function initmod.w64 must weight matrices "
                              "consisting of single-precision floats. Got: float64."),
    ("initWFunc=initmod.wshape", "Layer 'fc10[0]': weight matrix returned by weight initialization function "
                                 "initmod.wshape has wrong shape. Should be: (192, 10); got: (193, 10)."),
    ("initWFunc=initmod.wlist", "Layer 'fc10[0]': weight initialization function initmod.wlist must return "
                                "numpy.ndarray object. Got: <class 'list'>."),
    ("initWFunc=bad format(", "Layer 'fc10': 'initWFunc' parameter must have format "
                              "'moduleName.functionName(param1,param2,...)'; got: bad format(."),
    # the bias message quotes initWFunc, as 2012 did (cc:layer.py:676)
    ("initBFunc=nodot", "Layer 'fc10': 'initBFunc' parameter must have format "
                        "'moduleName.functionName(param1,param2,...)'; got: ."),
    ("initBFunc=initmod.b64", "Layer 'fc10': bias initialization function initmod.b64 must return numpy.ndarray "
                              "object consisting of single-precision floats. Got: float64."),
    ("initBFunc=initmod.bshape", "Layer 'fc10': bias vector returned by bias initialization function "
                                 "initmod.bshape has wrong shape. Should be: (1, 10); got: (1, 1)."),
    # 2012 showed the function's own error as a traceback
    ("initWFunc=initmod.wraises(3)", "Layer 'fc10': initWFunc initmod.wraises(3) failed: ValueError: bad seed"),
])
def test_init_function_errors(tmp_path, dialect, initmod, func, message):
    e = parse_error(tmp_path, net(dialect, fc_extra=func + "\n"), PARAMS, dialect)
    assert e.msg == message


@pytest.mark.parametrize("func,fragment", [("initmod.nope", "nope"), ("nomodule.w", "nomodule"),
                                           ("initmod.b", "params")])
def test_init_function_not_callable_errors(tmp_path, dialect, initmod, func, fragment):
    # ImportError, AttributeError and TypeError become "Layer 'fc10': <error>." (cc:layer.py:682-683)
    e = parse_error(tmp_path, net(dialect, fc_extra="initWFunc=%s\n" % func), PARAMS, dialect)
    assert e.msg.startswith("Layer 'fc10': ") and e.msg.endswith(".") and fragment in e.msg and "\n" not in e.msg


def test_init_connectivity_function(tmp_path, dialect, initmod):
    body = conv(dialect, extra="initCFunc=initmod.c\n").replace("channels=3", "channels=8") \
        .replace("filters=16", RAND_SPARSE)
    cv = named(parse(tmp_path, net(dialect, body, "cv"), CONV_PARAMS, dialect, dims=(512, 1)))["cv"]
    assert initmod().CALLS == [("c", "cv", 0, (4, 8, 4), [])]
    assert cv["filterConns"] == [[7, 6, 5, 4, 3, 2, 1, 0] * 2]
    # the 2012 permutations are drawn all the same, before the weights (cc:layer.py:833)
    assert n.array_equal(cv["weights"][0], randn_weights((36, 64), perms=(8, 8))[0])


@pytest.mark.parametrize("func,message", [
    # 2012 had one argument too few for this message's format string: a TypeError traceback
    # (cc:layer.py:838). The port prints the expected length.
    ("clen", "Layer 'cv[0]': random connectivity initialization function initmod.clen must return list of length "
             "<groups> * <filterChannels> = 16; got: 1"),
    ("crange", "Layer 'cv[0]': random connectivity initialization function initmod.crange must return list of "
               "channel indices in the range 0-<channels-1> = 0-7."),
    ("cperm", "Layer 'cv[0]': random connectivity initialization function initmod.cperm must return list of "
              "channel indices such that every non-overlapping sub-list of <channels> = 8 elements is a permutation "
              "of the integers 0-<channels-1> = 0-7."),
])
def test_init_connectivity_errors(tmp_path, dialect, initmod, func, message):
    body = conv(dialect, extra="initCFunc=initmod.%s\n" % func).replace("channels=3", "channels=8") \
        .replace("filters=16", RAND_SPARSE)
    assert parse_error(tmp_path, net(dialect, body, "cv"), CONV_PARAMS, dialect, dims=(512, 1)).msg == message


def test_rand_sparse_shared_connectivity(tmp_path, dialect):
    body = two_input_conv(dialect, extra="groups=4,4\nrandSparse=1,1\nfilterChannels=4,4\n") \
        .replace("channels=3,3", "channels=8,8")
    cv = named(parse(tmp_path, net(dialect, body, "cv"), TWO_PARAMS, dialect, dims=(512, 1)))["cv"]
    assert cv["filterConns"][1] is cv["filterConns"][0]  # taken from the source matrix
    e = parse_error(tmp_path, net(dialect, body.replace("filterChannels=4,4", "filterChannels=4,8"), "cv"),
                    TWO_PARAMS, dialect, dims=(512, 1))
    assert e.msg == ("Layer 'cv[1]': groups, channels, filterChannels set to 4, 8, 8, respectively. Does not match "
                     "setting in weight sharing source layer 'cv[0]': 4, 8, 4.")


# =============================================================================================
# --conv-to-local, --unshare-weights, resume
# =============================================================================================
def test_conv_to_local(tmp_path, dialect, capsys):
    body = conv(dialect, "cv3", "neuron=relu\n") + conv(dialect, "cv2", "weightSource=cv3\n") + \
        "[es]\ntype=eltsum\ninputs=cv2,cv3\n%s\n" % G(dialect)
    params = CONV_PARAMS.replace("[cv]", "[cv2]") + "\n[cv3]\n" + ZERO_PARAMS
    layers = parse(tmp_path, net(dialect, body, "es"), params, dialect)
    L = named(layers)
    w_conv, b_conv = L["cv3"]["weights"][0].copy(), L["cv3"]["biases"].copy()
    init_lines(capsys)
    # convnet.py: conv_to_local(layers, i) for the named conv layers; an index into the
    # cuda-convnet list, a name into the AlexNet dict
    layer.LocalLayerParser.conv_to_local(layers, index(layers, "cv3") if dialect == CC else "cv3")
    cv3, cv2 = L["cv3"], L["cv2"]
    assert cv3["type"] == "local" and cv2["type"] == "local"  # the sharing layer follows
    w = cv3["weights"][0]
    # the filters copied to each of the 64 modules (cc:layer.py:812-814)
    assert w.shape == (64 * 27, 16) and w.flags.c_contiguous
    assert all(n.array_equal(blk, w_conv) for blk in w.reshape(64, 27, 16))
    assert cv2["weights"][0] is w and cv2["weightsInc"][0] is cv3["weightsInc"][0]
    assert cv3["weightsInc"][0].shape == w.shape and not cv3["weightsInc"][0].any()
    # shared biases repeated per module: filter f's bias at rows 64f .. 64f+63
    assert cv3["biases"].shape == (1024, 1) and n.array_equal(cv3["biases"], n.repeat(b_conv, 64, axis=0))
    assert cv3["sharedBiases"] is True
    assert init_lines(capsys) == ["Converted layer 'cv3' from convolutional to unshared, locally-connected",
                                  "Converted layer 'cv2' from convolutional to unshared, locally-connected"]


def test_conv_to_local_self_shared(tmp_path, capsys):
    layers = parse(tmp_path, net(CC, two_input_conv(CC), "cv"), TWO_PARAMS)
    cv = named(layers)["cv"]
    layer.LocalLayerParser.conv_to_local(layers, index(layers, "cv"))
    assert cv["type"] == "local" and cv["weights"][1] is cv["weights"][0] and cv["weights"][0].shape == (1728, 16)


def test_conv_to_local_unshared_biases_stay(tmp_path):
    layers = parse(tmp_path, net(CC, conv(CC, extra="sharedBiases=0\n"), "cv"), CONV_PARAMS)
    b = named(layers)["cv"]["biases"]
    layer.LocalLayerParser.conv_to_local(layers, index(layers, "cv"))
    assert named(layers)["cv"]["biases"] is b


def test_unshare_weights(tmp_path, dialect, capsys):
    layers = parse(tmp_path, net(dialect, two_input_conv(dialect), "cv"), TWO_PARAMS, dialect)
    cv = named(layers)["cv"]
    init_lines(capsys)
    # convnet.py: name, idx = get_layer_name('cv'); unshare_weights(layer, layers, matrix_idx=idx)
    name, idx = layer.WeightLayerParser.get_layer_name("cv")
    assert (name, idx) == ("cv", None)
    layer.WeightLayerParser.unshare_weights(cv, layers, matrix_idx=idx)
    assert cv["weights"][1] is not cv["weights"][0] and n.array_equal(cv["weights"][1], cv["weights"][0])
    assert cv["weightsInc"][1] is not cv["weightsInc"][0]
    assert cv["weightSourceMatrixIndices"] == [-1, -1]
    if dialect == CC:
        assert cv["weightSourceLayerIndices"] == [-1, -1]
        assert init_lines(capsys) == ["Weight matrix cv[0] already unshared.",
                                      "Unshared weight matrix cv[1] from cv[0]."]
    else:
        assert cv["weightSourceLayers"] == ["", ""]


def test_unshare_one_matrix(tmp_path, dialect):
    # get_layer_name gives the index as a string; 2012 then indexed a list with it (TypeError
    # in both convnet.py files). The port accepts it.
    layers = parse(tmp_path, net(dialect, two_input_conv(dialect), "cv"), TWO_PARAMS, dialect)
    cv = named(layers)["cv"]
    name, idx = layer.WeightLayerParser.get_layer_name("cv[1]")
    assert (name, idx) == ("cv", "1")
    w0 = cv["weights"][0]
    layer.WeightLayerParser.unshare_weights(cv, layers, matrix_idx=idx)
    assert cv["weights"][0] is w0 and cv["weights"][1] is not w0 and cv["weightSourceMatrixIndices"] == [-1, -1]


def test_unshare_weights_alexnet(tmp_path, capsys):
    """The AlexNet code tested `name >= 0` (always true for a str in Python 2) and printed
    after blanking the name (chm:layer.py:750-756), so it 'unshared' unshared matrices and
    printed "from [-1]". Deliberate deviation (docs/fidelity.md): the port unshares only
    shared matrices and names their source, as cuda-convnet did."""
    layers = parse(tmp_path, net(AN, two_input_conv(AN), "cv"), TWO_PARAMS, AN)
    init_lines(capsys)
    shared = layers["cv"]["weights"][1]
    layer.WeightLayerParser.unshare_weights(layers["cv"], layers)
    assert init_lines(capsys) == ["Weight matrix cv[0] already unshared.", "Unshared weight matrix cv[1] from cv[0]."]
    assert layers["cv"]["weightSourceLayers"] == ["", ""]
    assert layers["cv"]["weights"][1] is not shared
    assert (layers["cv"]["weights"][1] == shared).all()


def test_resume_rereads_only_the_params(tmp_path, dialect, capsys):
    ldef = net(dialect, conv(dialect, extra="neuron=relu\n") + "[rn]\ntype=cmrnorm\ninputs=cv\nchannels=16\nsize=5\n"
               + G(dialect), "rn")
    layers = parse(tmp_path, ldef, NORM_PARAMS, dialect)
    L = named(layers)
    weights = {k: l["weights"][0] for k, l in L.items() if "weights" in l}
    init_lines(capsys)
    state = nr.get_state()
    params2 = NORM_PARAMS.replace("[cv]\nepsW=0.001", "[cv]\nepsW=0.5").replace("pow=0.75", "pow=0.5")
    (tmp_path / "layer-params.cfg").write_text(params2)
    again = LayerParser.parse_layers(str(tmp_path / "layers.cfg"), str(tmp_path / "layer-params.cfg"),
                                     StaticModel(DIMS, 10, conserve_mem=1), layers=layers, dialect=dialect)
    A = named(again)
    assert set(A) == set(L) and all(A[k] is L[k] for k in L)
    if dialect == CC:
        assert again is layers
    assert A["cv"]["epsW"] == [0.5] and A["rn"]["pow"] == 0.5 and A["rn"]["scale"] == 0.001 / 5
    assert all(A[k]["weights"][0] is w for k, w in weights.items())
    assert A["cv"]["conserveMem"] == 1
    assert init_lines(capsys) == []  # nothing re-initialised
    assert n.array_equal(nr.get_state()[1], state[1])  # nothing drawn


def test_resume_with_a_changed_layer_def_keeps_the_old_layers(tmp_path):
    layers = parse(tmp_path, net(CC), PARAMS)
    (tmp_path / "layers.cfg").write_text("[only]\ntype=bogus\n")
    again = LayerParser.parse_layers(str(tmp_path / "layers.cfg"), str(tmp_path / "layer-params.cfg"),
                                     StaticModel(DIMS, 10), layers=layers)
    assert [l["name"] for l in again] == ["data", "labels", "fc10", "probs", "logprob"]


# (layers in layers.cfg order, those with neuron=relu, the two lacking params, the layer the
# 2012 AlexNet parser named on a fresh parse, and on a resume). Both outcomes were produced by
# the AlexNet code's layer.py under Python 2.7.18: parse_layers, cPickle round trip of the
# dict, parse_layers(..., layers=...). In the second net the resumed order depends on the
# order the neuron layers were detached in (a walk of the dict in its Python 2 order): in
# layers.cfg order instead, c40 would come first.
RESUME_CASES = [
    ("c22 pool1 n15 fc10 fc23 n34 fc36 conv0 conv26 c11 n10", "pool1 fc10 fc23 fc36 c11 n10", "fc10 fc36",
     "fc36", "fc10"),
    ("n33 fc24 l27 conv21 l37 fc31 c40", "c40 conv21 fc31 l27 l37 n33", "l27 c40", "c40", "l27"),
]


@pytest.mark.parametrize("names, neurons, missing, fresh, resumed", RESUME_CASES)
def test_alexnet_resume_reports_the_2012_layer(tmp_path, names, neurons, missing, fresh, resumed):
    names, neurons, missing = names.split(), neurons.split(), missing.split()
    ldef, prev = HEAD, "data"
    for nm in names:
        ldef += "\n[%s]\ntype=fc\noutputs=10\ninputs=%s\ninitW=0.01\ngpu=0\n%s" % (
            nm, prev, "neuron=relu\n" if nm in neurons else "")
        prev = nm
    ldef += "\n[probs]\ntype=softmax\ninputs=%s\n\n[logprob]\ntype=cost.logreg\ninputs=labels,probs\ngpu=0\n" % prev
    params = "[logprob]\ncoeff=1\n" + "".join("\n[%s]\n%s" % (nm, FC_PARAMS) for nm in names)
    lacking = "[logprob]\ncoeff=1\n" + "".join("\n[%s]\n%s" % (nm, FC_PARAMS) for nm in names if nm not in missing)
    assert parse_error(tmp_path, ldef, lacking, AN).msg.startswith("Layer '%s' " % fresh)
    layers = parse(tmp_path, ldef, params, AN)
    (tmp_path / "layer-params.cfg").write_text(lacking)
    with pytest.raises(LayerParsingError) as ei:
        LayerParser.parse_layers(str(tmp_path / "layers.cfg"), str(tmp_path / "layer-params.cfg"),
                                 StaticModel(DIMS, 10), layers=layers, dialect=AN)
    assert ei.value.msg.startswith("Layer '%s' of type 'fc' requires extra parameters" % resumed)


# =============================================================================================
# the dump command
# =============================================================================================
def dump(tmp_path, capsys, ldef, lpar, *extra, dims="192,1"):
    lf, pf = write(tmp_path, ldef, lpar)
    rc = layer.main(["--layer-def=%s" % lf, "--layer-params=%s" % pf, "--data-dims=%s" % dims, "--num-classes=10",
                     *extra])
    out, err = capsys.readouterr()
    return rc, out, err


def test_dump_json(tmp_path, capsys):
    rc, out, err = dump(tmp_path, capsys, net(CC, conv(CC), "cv"), CONV_PARAMS, "--dialect=cuda-convnet", "--seed=3")
    assert rc == 0
    js = json.loads(out)
    assert js["dialect"] == "cuda-convnet"
    assert [l["name"] for l in js["layers"]] == ["data", "labels", "cv", "fc10", "probs", "logprob"]
    cv = js["layers"][2]
    assert cv["inputLayers"] == [{"$layer": "data"}] and cv["padding"] == [-1] and cv["sharedBiases"] is True
    assert cv["weights"][0]["shape"] == [27, 16] and cv["weights"][0]["order"] == "C"
    assert cv["weights"][0]["dtype"] == "float32"
    w = randn_weights((27, 16), seed=3)[0]
    assert math.isclose(cv["weights"][0]["mean"], float(w.mean(dtype=n.float64)), rel_tol=1e-12)
    assert js["layers"][3]["weights"][0]["order"] == "F"
    assert js["log"][2] == "Initialized convolutional layer 'cv', producing 8x8 16-channel output"
    assert err.splitlines() == js["log"]


def test_dump_error_is_one_line(tmp_path, capsys):
    rc, out, err = dump(tmp_path, capsys, net(CC), PARAMS.replace("epsB=0.002", "epsB=x"), "--dialect=cuda-convnet")
    assert rc == 1 and out == "" and "Traceback" not in err
    assert err.splitlines()[-1].startswith("Layer 'fc10': parameter 'epsB' must be float")
    assert err.splitlines()[-2] == "Initialized logistic regression cost 'logprob'"


@pytest.mark.parametrize("ldef,lpar,why", [
    (net(AN), PARAMS, "gpu"),
    (net(CC, "[hs]\ntype=hs\ninputs=data\nkeep=0.5\n", "hs"), PARAMS + "[hs]\nenable=1\n", "hs"),
    (net(CC, "[c]\ntype=concat\ninputs=data,data\n", "c"), PARAMS, "concat"),
    (net(CC, "[c]\ntype=href\ninputs=data\nchannels=3\n", "c"), PARAMS, "href"),
    (net(CC, pool(CC, "maxabs", "data", 3), "pl"), PARAMS, "maxabs"),
    (net(CC, "[n]\ntype=neuron\ninputs=data\nneuron=drelu[2]\n", "n"), PARAMS, "drelu"),
    (net(CC, fc_extra="neuron=nrelu\n"), PARAMS, "nrelu"),
    (net(CC), PARAMS + "topk=5\n", "topk"),
    (net(CC), PARAMS.replace("wc=0.01", "wc=0.01\nschedW=default"), "schedw"),
    (net(CC, conv(CC) + "[rn]\ntype=cmrnorm\ninputs=cv\nchannels=16\nsize=5\n", "rn"),
     NORM_PARAMS + "minDiv=2\n", "mindiv"),
])
def test_dump_detects_alexnet(tmp_path, capsys, ldef, lpar, why):
    rc, out, err = dump(tmp_path, capsys, ldef, lpar)
    first = err.splitlines()[0]
    assert first.startswith("Dialect: alexnet (") and why in first.lower()


def test_dump_detects_cuda_convnet(tmp_path, capsys):
    rc, out, err = dump(tmp_path, capsys, net(CC, conv(CC), "cv"), CONV_PARAMS)
    assert rc == 0 and err.splitlines()[0].startswith("Dialect: cuda-convnet (")
    assert json.loads(out)["dialect"] == "cuda-convnet"


def test_dump_detects_gpu_in_default_section(tmp_path, capsys):
    rc, out, err = dump(tmp_path, capsys, "[DEFAULT]\ngpu=0\n" + net(CC), PARAMS)
    assert err.splitlines()[0].startswith("Dialect: alexnet")


def test_dump_missing_file(tmp_path, capsys):
    rc = layer.main(["--layer-def=%s" % (tmp_path / "nope.cfg"), "--layer-params=%s" % (tmp_path / "p.cfg"),
                     "--data-dims=192,1", "--num-classes=10"])
    err = capsys.readouterr().err
    assert rc == 1 and err.splitlines()[-1] == "Layer definition file '%s' does not exist" % (tmp_path / "nope.cfg")


# Configs on which the 2012 parser crashed with a Python traceback (ZeroDivisionError or a NaN
# size from a bad number computed *before* the range check that would have caught it, or
# weights too big to allocate). The
# port must give a one-line error instead; it still raises the same exceptions.
CRASHES = [
    # id, layer x, dims; the 2012 line that crashed
    ("pool channels=0", "[x]\ntype=pool\npool=max\ninputs=data\nchannels=0\nsizeX=2\nstride=2\n", DIMS),  # cc:1003
    ("pool channels<0", "[x]\ntype=pool\npool=max\ninputs=data\nchannels=-3\nsizeX=2\nstride=2\n", DIMS),  # cc:1004
    ("rnorm channels=0", "[x]\ntype=rnorm\ninputs=data\nchannels=0\nsize=3\n", DIMS),  # cc:1046
    ("cnorm channels<0", "[x]\ntype=cnorm\ninputs=data\nchannels=-3\nsize=3\n", DIMS),  # cc:1047
    ("cmrnorm channels>inputs", "[x]\ntype=cmrnorm\ninputs=data\nchannels=256\nsize=3\n", DIMS),  # cc:353 (% 0)
    ("nailbed stride=0", "[x]\ntype=nailbed\ninputs=data\nchannels=3\nstride=0\n", DIMS),  # cc:385
    ("nailbed channels>inputs", "[x]\ntype=nailbed\ninputs=data\nchannels=300\nstride=2\n", DIMS),  # cc:353
    ("blur stdev=0", "[x]\ntype=blur\ninputs=data\nchannels=3\nfilterSize=3\nstdev=0\n", DIMS),  # cc:417
    ("blur channels>inputs", "[x]\ntype=blur\ninputs=data\nchannels=300\nfilterSize=3\nstdev=1\n", DIMS),  # cc:353
    ("resize scale=0", "[x]\ntype=resize\ninputs=data\nchannels=3\nscale=0\n", DIMS),  # cc:445
    ("resize channels=0", "[x]\ntype=resize\ninputs=data\nchannels=0\nscale=1\n", DIMS),  # cc:441
    ("rscale maxScale=0", "[x]\ntype=rscale\ninputs=data\nchannels=3\nmaxScale=0\ntgtSize=4\n", DIMS),  # cc:478
    ("rgb2yuv over labels", "[x]\ntype=rgb2yuv\ninputs=labels\n", DIMS),  # cc:353
    ("conv filters<0", "[x]\ntype=conv\ninputs=data\nchannels=3\nfilters=-16\nfilterSize=3\ninitW=0.01\n"
                       "partialSum=0\n", DIMS),  # cc:715 (randn of a negative size)
    ("conv filterChannels=0", "[x]\ntype=conv\ninputs=data\nchannels=8\ngroups=2\nrandSparse=1\nfilterChannels=0\n"
                              "filters=16\nfilterSize=3\ninitW=0.01\npartialSum=0\n", (512, 1)),  # cc:224
    # 192 x 10^12 weights: a MemoryError (cc:715), on any machine
    ("fc outputs=10^12", "[x]\ntype=fc\ninputs=data\noutputs=1000000000000\ninitW=0.01\n", DIMS),
]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # sqrt of a negative size
@pytest.mark.parametrize("body,dims", [pytest.param(b, d, id=i) for i, b, d in CRASHES])
def test_dump_2012_crashes_become_one_line_errors(tmp_path, capsys, dialect, body, dims):
    params = CONV_PARAMS + "\n[x]\ncoeff=1\nscale=1\npow=1\n" + ZERO_PARAMS
    rc, out, err = dump(tmp_path, capsys, net(dialect, body + G(dialect), "x"), params, "--dialect=" + dialect,
                        dims="%d,%d" % dims)
    assert rc == 1 and "Traceback" not in err
    assert err.splitlines()[-1].startswith("Layer 'x")
