"""The engine's gradients to 1e-6, not to the 2012 check's 2%.

The 2012 gradient check (test_gradcheck.py) takes one-sided float32 differences with steps
as large as 0.1 and passes below 2% relative error: it catches a wrong formula, not a
gradient that is 1% off. Here the NumPy engine runs in float64 (a child process aliases
numpy.float32 to float64 before it imports cudaconvnet, so every matrix the engine makes
is float64) and central differences with a step of 1e-6 must agree with backprop's
gradients to 1e-6 relative error: for test_gradcheck's nets of every layer type, its mixed
nets of both dialects, nets where layers add their gradients to one another's, and two
gradient-check configs. A 0.3% error in one neuron's gradient fails here and passes the
2012 check.

It also settles a question about the AlexNet code's own example-layers/layers.gc.cfg. Under
the 2012 check (bias step 0.05, one-sided, float32) its three conv bias checks fail, at 0.025
to 0.030 on 16 cases. Here the same gradients agree with float64 central differences to
about 1e-9: the check's step and rounding fail there, not the gradient.
"""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CHM_GC = os.path.join(REPO, "..", "shared", "reference", "alexnet-2012", "example-layers")
STEP = 1e-6
TOL = 1e-6
MAX_ENTRIES = 48  # entries checked per matrix (all of a smaller one), drawn with a fixed seed


def nets():
    """name -> (dialect, layers.cfg and layer-params.cfg or test_gradcheck's defs and params,
    dims, classes[, {"kinds": make_data's kinds, "train": check a training pass}]):
    test_gradcheck's nets of every layer type whose gradient is exact in 2012 (not cnorm's,
    which holds the local mean constant, nor the ones it asserts fail), and nets where a
    layer adds its gradient to another's."""
    import test_gradcheck as gc
    D, conv_below, sum2, SQ, IMG = gc.D, gc.conv_below, gc.sum2, gc.SQ, gc.IMG
    out = {}
    for dialect in (gc.CC, gc.CHM):
        out["mini-cifar-" + dialect] = (dialect,) + gc.mini_cifar_net() + (4,)
    out["mini-alexnet"] = (gc.CHM,) + gc.mini_alexnet() + (4,)
    for kind in gc.CHM_NEURONS:
        out["neuron-" + kind] = (gc.CHM, gc.neuron_net(kind), None, (8, 1), 4)
    for norm in ("rnorm", "cmrnorm", "cmrnorm-blocked"):
        d, p = gc.NORMS[norm]
        defs = [D("data", 0), conv_below("data", initB=2), ("norm1", dict(d, inputs="conv1", channels=16))]
        out[norm] = (gc.CHM, defs + sum2("norm1"), dict(SQ, norm1=dict(p, minDiv=2)), IMG, 4)
    for kind, (d, dims, initB) in gc.INPUT_LAYERS.items():
        defs = [D("data", 0), ("pre", dict(d, inputs="data")),
                conv_below("pre", padding=0, filterSize=2, initW=0.3, initB=initB)]
        out[kind] = (gc.CHM, defs + sum2("conv1"), SQ, dims, 4)
    for variant, v in gc.CONV_VARIANTS.items():
        defs = [D("data", 0), ("conv1", dict(type="conv", inputs="data", channels=3, filters=16, initW=0.5, initB=4,
                                              **v))]
        out["conv-" + variant] = (gc.CC, defs + sum2("conv1"), SQ, IMG, 4)
    for pool in ("max", "avg", "maxabs"):
        defs = [D("data", 0), conv_below("data"),
                ("pool1", dict(type="pool", pool=pool, inputs="conv1", channels=16, sizeX=3, start=-1, stride=2))]
        out["pool-" + pool] = (gc.CHM, defs + sum2("pool1"), SQ, IMG, 4)
    for kind in ("conv", "local"):
        layer = dict(type=kind, inputs="data", channels=8, groups=4, filterChannels=4, randSparse=1, filters=16,
                     padding=0, filterSize=1, initW=0.5, initB=2, **({"partialSum": 2} if kind == "conv" else {}))
        out["sparse-" + kind] = (gc.CHM, [D("data", 0), ("sparse", layer)] + sum2("sparse"), SQ,
                                 (8 * (4 if kind == "conv" else 1),), 4)
    out["shared-conv"] = (gc.CHM, gc.shared_conv_net(False), SQ, IMG, 4)
    msm = [D("data", 0), D("labels", 1), gc.shrink("d_s", "data"),
           ("fc1", dict(type="fc", inputs="d_s", outputs=5, initW=1.0)), ("msm", dict(type="cost.msm", inputs="labels,fc1"))]
    out["msm-coeff"] = (gc.CHM, msm, {"msm": dict(coeff=0.3, setSize=2, threads=2)}, (8, 1), 5)
    # a layer whose input feeds another layer too adds its gradient to the one already there
    # (scaleTargets 1): the later consumer in the config runs its bprop first
    for dialect in (gc.CC, gc.CHM):
        out["adding-" + dialect] = (dialect,) + adding_net(gc, dialect) + (4,)
    out["adding-train"] = (gc.CHM,) + adding_net(gc, gc.CHM) + (4, {"train": True})
    out["crossent2-fused-adding"] = (gc.CHM, gc.crossent2_net(True) + sum2("fc1", "sq2"), {"sq2": dict(coeff=0.1)},
                                     (8, 4), 4, {"kinds": {1: "uniform"}})
    out["layers_cfg/layers.gc.cfg"] = (gc.CC, os.path.join(REPO, "layers_cfg", "layers.gc.cfg"),
                                       os.path.join(REPO, "layers_cfg", "layer-params.gc.cfg"), (192, 1), 10)
    if os.path.isdir(CHM_GC):
        out["chm example-layers/layers.gc.cfg"] = (gc.CHM, os.path.join(CHM_GC, "layers.gc.cfg"),
                                                   os.path.join(CHM_GC, "layer-params.gc.cfg"), (3072, 1), 10)
    return out


def adding_net(gc, dialect):
    """conv1 feeds an average pool, a randSparse conv (each map seen twice) and a linear
    layer; f feeds dropout (the AlexNet code's hs), an eltsum of f with itself and a concat
    of f with itself. cuda-convnet has no hs and no concat: there the eltsum goes to the
    logreg. Returns (defs, params, dims)."""
    D, sum2 = gc.D, gc.sum2
    defs = [D("data", 0), D("labels", 1),
            ("conv1", dict(type="conv", inputs="data", channels=3, filters=16, padding=1, filterSize=3, partialSum=0,
                           initW=0.5, initB=0.5, neuron="tanh[1,1]")),
            ("avgp", dict(type="pool", pool="avg", inputs="conv1", channels=16, sizeX=2, stride=2)),
            ("sparse", dict(type="conv", inputs="conv1", channels=16, groups=4, filterChannels=8, randSparse=1,
                            filters=16, padding=0, filterSize=1, partialSum=0, initW=0.3)),
            gc.shrink("c1s", "conv1"),
            ("f", dict(type="fc", inputs="c1s", outputs=6, initW=1.0, neuron="tanh[1,1]"))]
    costs = sum2("avgp", "sq1") + sum2("sparse", "sq2")
    params = {"sq1": dict(coeff=0.05), "sq2": dict(coeff=0.05)}
    if dialect == gc.CC:
        defs += [("es", dict(type="eltsum", inputs="f,f", coeffs="0.7,-1.3"))]
        return defs + costs + gc.logreg_top("es"), params, gc.IMG + (1,)
    defs += [("drop", dict(type="hs", inputs="f", keep=0.5)),
             ("es", dict(type="eltsum", inputs="f,f", coeffs="0.7,-1.3")),
             ("cat", dict(type="concat", inputs="f,f"))]
    costs += sum2("drop", "sq3") + sum2("es", "sq4")
    params.update(drop=dict(enable=1), sq3=dict(coeff=0.05), sq4=dict(coeff=0.05))
    return defs + costs + gc.logreg_top("cat"), params, gc.IMG + (1,)


def build(dialect, a, b, dims, ncls, tmp):
    """The ConvNet of one entry of nets()."""
    import contextlib
    import io

    import numpy.random as nr

    import test_gradcheck as gc
    from cudaconvnet import layer
    from cudaconvnet.engine.net import ConvNet
    if isinstance(a, list):  # defs and params, as test_gradcheck writes them
        return gc.build(tmp, dialect, a, b, dims, ncls)[0]
    nr.seed(gc.SEED)
    model = layer.StaticModel(list(dims), ncls, num_gpus=3)
    with contextlib.redirect_stdout(io.StringIO()):
        layers = layer.LayerParser.parse_layers(a, b, model, dialect=dialect)
    return ConvNet(layers, gc.N_CASES, gc.BE, dialect=dialect, seed=gc.SEED, out=lambda s: None)


def check(net, data, train=False):
    """{matrix name: relative error of central differences against backprop}. With train,
    in a training pass, the backend reseeded before each so that every pass draws the same
    dropout masks."""
    import numpy as np

    from cudaconvnet.engine.layers import PASS_GC, PASS_TRAIN
    be = net.be
    mini = next(iter(net.minibatches(data)))
    n = mini[0].shape[1]
    pass_type = PASS_TRAIN if train else PASS_GC

    def cost():
        if train:
            be.seed(1)
        net.fprop(mini, pass_type)
        return net.getCost().getValue()
    cost()
    net.bprop(pass_type)
    matrices = []
    for layer in net.layers:
        for i, w in enumerate(getattr(layer, "weights", [])):
            matrices.append(("%s weights[%d]" % (layer.name, i), w))
        if getattr(layer, "biases", None) is not None:
            matrices.append(("%s biases" % layer.name, layer.biases))
    rng = np.random.default_rng(0)
    errors = {}
    for name, w in matrices:
        W = be.to_host(w.W).copy()
        # Grad is minus the gradient, summed over the cases (divided by them in training)
        anal = be.to_host(w.Grad).reshape(W.shape) * (-1.0 if train else -1.0 / n)
        flat = rng.permutation(W.size)[:MAX_ENTRIES]
        num = np.empty(len(flat))
        for k, f in enumerate(flat):
            i, j = divmod(int(f), W.shape[1])
            v = W[i, j]
            W[i, j] = v + STEP
            be.copy(be.array(W), w.W)
            up = cost()
            W[i, j] = v - STEP
            be.copy(be.array(W), w.W)
            down = cost()
            W[i, j] = v
            num[k] = (up - down) / (2 * STEP * n)
        be.copy(be.array(W), w.W)
        a = anal.ravel()[flat]
        errors[name] = float(np.linalg.norm(num - a) / np.linalg.norm(a))
    return errors


def child():
    import numpy as np
    np.float32 = np.float64  # before cudaconvnet: every matrix the engine makes is float64
    import pathlib
    import tempfile
    sys.path.insert(0, HERE)
    sys.path.insert(0, REPO)
    import test_gradcheck as gc
    from cudaconvnet.backends.numpy import nvmatrix
    assert nvmatrix.f32 is np.float64
    out = {}
    for name, (dialect, a, b, dims, ncls, *extra) in nets().items():
        extra = extra[0] if extra else {}
        with tempfile.TemporaryDirectory() as tmp:
            net = build(dialect, a, b, dims, ncls, pathlib.Path(tmp))
        data = gc.make_data(dims, gc.N_CASES, ncls, kinds=extra.get("kinds"))
        assert data[0].dtype == np.float64
        out[name] = check(net, data, train=extra.get("train", False))
    print(json.dumps(out))


@pytest.fixture(scope="module")
def errors():
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, os.path.abspath(__file__)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


NETS = (["mini-cifar-cuda-convnet", "mini-cifar-alexnet", "mini-alexnet", "layers_cfg/layers.gc.cfg",
         "chm example-layers/layers.gc.cfg"]
        + ["neuron-" + k for k in ("ident", "logistic", "abs", "relu", "square", "sqrt", "tanh", "brelu", "linear",
                                   "softrelu", "drelu")]
        + ["rnorm", "cmrnorm", "cmrnorm-blocked", "nailbed", "blur", "resize", "rgb2yuv", "rgb2lab"]
        + ["conv-ps0", "conv-ps4", "conv-ps3-unshared-biases", "conv-stride2-ps1", "pool-max", "pool-avg",
           "pool-maxabs", "sparse-conv", "sparse-local", "shared-conv", "msm-coeff", "adding-cuda-convnet",
           "adding-alexnet", "adding-train", "crossent2-fused-adding"])


def test_every_net_is_asserted(errors):
    assert set(errors) <= set(NETS)


@pytest.mark.parametrize("net", NETS)
def test_gradients_agree_in_float64(errors, net):
    if net not in errors:
        pytest.skip("../shared/reference is not beside this checkout")
    worst = max(errors[net].items(), key=lambda kv: kv[1])
    assert len(errors[net]) >= 2
    assert worst[1] < TOL, "%s: %s, relative error %.3g" % (net, worst[0], worst[1])


if __name__ == "__main__":
    child()
