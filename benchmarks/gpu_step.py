"""The AlexNet paper net on one GPU: a training step of this port's CUDA backend, and each
convolution's three passes, against PyTorch + cuDNN on the same net and the same shapes.

No 2012 counterpart as such: 2012 trained the two towers on two GTX 580s. Here both towers
run on one GPU, minibatch 128, fp32; the peer is PyTorch with cuDNN (cudnn.benchmark on),
measured in the same process on the same GPU, once with TF32 off (true fp32) and once on.

    python benchmarks/gpu_step.py [--mini 128] [--warmup 3] [--iters 20] [--conv-kernels 2012,gemm,winograd,implicit,...]
                                  [--layers layers_cfg/layers-alexnet.cfg]
                                  [--params layers_cfg/layer-params-alexnet.cfg]
                                  [--no-torch] [--json out.json] [--markdown table.md] [--dry-run]

Ours runs once per choice of conv kernels (--conv-kernels: the ported 2012 kernels; "gemm",
im2col + cuBLAS; "winograd", gemm with Winograd's F(2x2, 3x3) for the 3x3 layers' fprop and
input gradient; "implicit", register-tiled products read straight from the images, with
sm_80's asynchronous copies for fprop and bprop-img on GPUs that have them;
"implicit-registers", the same without them; "fastest", each pass by whichever of those
measured fastest for it), each with its own column. The peer runs first; a choice of ours
that fails is reported in one line and left out of the table.

What is timed, after --warmup untimed calls: the step, CUDA events around each of --iters
calls, their median; each conv pass, two CUDA events around --iters calls issued back to
back, their mean (the GPU's time per call: the host issues the next call while the GPU
runs this one, as in a step, and as the C++ harness of SPEED.md timed the originals):
  step     ours: ConvNet.train_batch on one minibatch already on the GPU (fprop, bprop,
           weight update, the cost read back to the host, as the training loop runs it);
           PyTorch: forward, loss, backward and an SGD step with the config's learning
           rates, momenta and weight decays, of benchmarks/torch_peer.py's net: built from
           the same parsed config, layer for layer, with the same weights (the net that
           cpu_step.py --check finds computing the NumPy engine's step);
  per conv layer and input (both towers listed, conv3's two inputs apart):
    fprop          ours: convFilterActs        peer: F.conv2d
    bprop-img      ours: convImgActs           peer: aten.convolution_backward (input grad)
    bprop-weights  ours: convWeightActs as the layer calls it: with the 2012 kernels, with
                   the layer's partialSum (without the addSum over partial sums that
                   follows it); with the others, partialSum 0 (one sum)
                                               peer: aten.convolution_backward (weight grad)
  ours 2012, also on the shapes ../shared/golden/kernels/SPEED.md timed the original 2012
  kernels on (conv1 whole, conv3 whole and per tower: shapes no input of the paper net
  has), beside the originals' times: the issue's bound is 1.1x.
  The 2012 geometry lets the last module overhang the image (conv1: 1 + ceil((224-11)/4) =
  55); for cuDNN the input is zero-padded right/bottom to give the same output size (the
  padding copy is not timed).
The per-layer shapes all come from the parsed config; --dry-run prints them and exits (needs
neither a GPU nor PyTorch).
"""
import argparse
import contextlib
import copy
import io
import json
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from torch_peer import Unsupported, build_torch, torch_inputs, torch_step  # noqa: E402  (beside this script)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_LAYERS = os.path.join(ROOT, "layers_cfg", "layers-alexnet.cfg")
DEFAULT_PARAMS = os.path.join(ROOT, "layers_cfg", "layer-params-alexnet.cfg")


# ==========================================================================================
# the net, from the config
# ==========================================================================================
def parse(layers_cfg, params_cfg, img_size=224, channels=3, classes=1000, seed=0):
    """The parsed layer dicts (AlexNet dialect: a dict keyed by name), and the dialect."""
    import numpy.random as nr

    from cudaconvnet import layer
    dialect = layer.ALEXNET if "gpu=" in open(layers_cfg).read() else layer.CUDA_CONVNET
    nr.seed(seed)
    model = layer.StaticModel([channels * img_size * img_size, 1], classes, num_gpus=2)
    with contextlib.redirect_stdout(io.StringIO()):
        layers = layer.LayerParser.parse_layers(layers_cfg, params_cfg, model, dialect=dialect)
    return layers, dialect


def layer_dicts(layers):
    return list(layers.values()) if isinstance(layers, dict) else list(layers)


def conv_specs(layers):
    """One spec per (conv layer, input): the shapes of its three passes."""
    out = []
    for d in layer_dicts(layers):
        if d["type"] != "conv":
            continue
        for i, inp in enumerate(d["inputs"]):
            img, m, k = d["imgSize"][i], d["modulesX"], d["filterSize"][i]
            out.append(dict(name="%s[%d]" % (d["name"], i) if len(d["inputs"]) > 1 else d["name"], layer=d["name"],
                            idx=i, input=inp if isinstance(inp, str) else str(inp), channels=d["channels"][i],
                            filters=d["filters"], filterSize=k, padding=-d["padding"][i], stride=d["stride"][i],
                            imgSize=img, modulesX=m, groups=d["groups"][i], filterChannels=d["filterChannels"][i],
                            partialSum=d["partialSum"]))
    return out


def minibatch(layers, n):
    """The minibatch both engines train on: images (pixels, n), random at the scale of
    mean-subtracted pixels, and labels (1, n) of the 1000 classes."""
    rng = np.random.default_rng(0)
    pixels = next(d["outputs"] for d in layer_dicts(layers) if d["type"] == "data" and d["dataIdx"] == 0)
    return (rng.standard_normal((pixels, n)) * 50).astype(np.float32), rng.integers(0, 1000, (1, n)).astype(np.float32)


def flops(spec, n):
    """Direct-convolution multiply-adds x 2 (the same count for all three passes)."""
    return 2.0 * n * spec["modulesX"] ** 2 * spec["filters"] * spec["filterChannels"] * spec["filterSize"] ** 2


def print_specs(specs, n):
    print("%-10s %-14s %5s %5s %4s %4s %4s %5s %6s %4s %9s" % ("conv", "input", "C", "F", "k", "pad", "str", "img",
                                                              "out", "pS", "GFLOP"))
    for s in specs:
        print("%-10s %-14s %5d %5d %4d %4d %4d %5d %6d %4d %9.2f" % (
            s["name"], s["input"], s["channels"], s["filters"], s["filterSize"], s["padding"], s["stride"],
            s["imgSize"], s["modulesX"], s["partialSum"], flops(s, n) / 1e9))


def event_times(fn, warmup, iters, new_event, elapsed_ms):
    """Milliseconds of each of `iters` calls of fn() between two CUDA events (pycuda's or
    torch's: new_event() makes one, elapsed_ms(a, b) reads them), after `warmup` untimed
    calls (the first ones compile kernels and pick algorithms)."""
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(iters):
        a, b = new_event(), new_event()
        a.record()
        fn()
        b.record()
        b.synchronize()
        t.append(elapsed_ms(a, b))
    return t


def median_ms(times):
    return statistics.median(times)


def stream_ms(fn, warmup, iters, new_event, elapsed_ms):
    """Milliseconds per call of fn() over `iters` calls issued back to back between two
    CUDA events, after `warmup` untimed calls: the GPU's time per call, with the host's
    time to issue each call hidden behind the calls before it, as in a training step
    (and as a C++ harness of the original kernels measures them)."""
    for _ in range(warmup):
        fn()
    a, b = new_event(), new_event()
    a.record()
    for _ in range(iters):
        fn()
    b.record()
    b.synchronize()
    return elapsed_ms(a, b) / iters


# ==========================================================================================
# ours
# ==========================================================================================
def time_ours(layers, dialect, specs, n, warmup, iters, conv_kernels):
    import pycuda.driver as drv

    from cudaconvnet.backends import get_backend
    from cudaconvnet.engine.layers import ConvLayer
    from cudaconvnet.engine.net import ConvNet
    be = get_backend("cuda")
    be.use_device()
    be.prepare_kernels()        # (nothing to do where the bundles are built)
    from cudaconvnet.backends.cuda import conv_implicit
    name, _, copies = conv_kernels.partition("-")     # implicit-registers: without cp.async
    conv_implicit.set_async_copies(None if not copies else copies != "registers")
    be.set_conv_kernels(name)
    net = ConvNet(copy.deepcopy(layers), n, be, dialect=dialect, seed=0, out=lambda s: None)
    data = [be.array(a) for a in minibatch(layers, n)]
    rng = np.random.default_rng(1)     # the gradients the bprop passes are timed on

    def timed(fn, warmup, iters):
        return event_times(fn, warmup, iters, drv.Event, lambda a, b: a.time_till(b))

    def streamed(fn):
        return stream_ms(fn, warmup, iters, drv.Event, lambda a, b: a.time_till(b))

    results = {"device": be.device_name()}
    results["step_ms"] = median_ms(timed(lambda: net.train_batch(data), warmup, iters))
    results["where"] = profile_step(net, data, drv.Event)

    by_name = {l.name: l for l in net.layers}
    per = {}
    for s in specs:
        L = by_name[s["layer"]]
        assert isinstance(L, ConvLayer)
        i = s["idx"]
        W = L.weights[i].W
        x = L.inputs[i]
        v = be.array(rng.standard_normal(L.acts.shape).astype(np.float32))
        img_grad = be.empty(*x.shape)
        geo = L.geometry(i)
        img, m = L.imgSize[i], L.modulesX
        rows = L.filterChannels[i] * L.filterPixels[i]
        ps = L.partialSum if L.twoStepWeightGrad(i) else 0      # as the layer runs it
        wtmp = be.empty((L.modules // ps if ps else 1) * rows, L.numFilters)
        fprop = L.sparse(i, "convFilterActs")
        bimg = L.sparse(i, "convImgActs")
        bw = L.sparse(i, "convWeightActs")
        passes = {
            "fprop": lambda: fprop(x, W, L.acts, img, m, m, *geo, 0.0, 1.0),
            "bprop-img": lambda: bimg(v, W, img_grad, img, img, m, *geo, 0.0, 1.0),
            "bprop-weights": lambda: bw(x, v, wtmp, img, m, m, L.filterSize[i], *geo, ps, 0.0, 1.0),
        }
        for p, fn in passes.items():
            per[(s["name"], p)] = streamed(fn)
    results["conv"] = per
    if conv_kernels == "2012":
        results["original_shapes"] = time_original_shapes(be, n, streamed)
    return results


def time_original_shapes(be, n, streamed):
    """Our ported 2012 kernels on the shapes SPEED.md timed the original ones on (one
    launch each, groups 1, scaleTargets 0, its partialSums): {(label, pass): ms}."""
    rng = np.random.default_rng(2)

    def rand(*shape):
        return be.array(rng.standard_normal(shape).astype(np.float32))
    out = {}
    for label, C, F, k, stride, pad, img, ps, _, _ in ORIGINAL_2012:
        m = 1 + -(-(img + 2 * pad - k) // stride)
        images, filters, hid = rand(C * img * img, n), rand(C * k * k, F), rand(F * m * m, n)
        acts, img_grad = be.empty(F * m * m, n), be.empty(C * img * img, n)
        w_grad = be.empty(m * m // ps * C * k * k, F)
        geo = (-pad, stride, C, 1)
        passes = {"fprop": lambda: be.convFilterActs(images, filters, acts, img, m, m, *geo, 0.0, 1.0),
                  "bprop-img": lambda: be.convImgActs(hid, filters, img_grad, img, img, m, *geo, 0.0, 1.0),
                  "bprop-weights": lambda: be.convWeightActs(images, hid, w_grad, img, m, m, k, *geo, ps, 0.0, 1.0)}
        for p, fn in passes.items():
            out[(label, p)] = streamed(fn)
    return out


def profile_step(net, data, Event):
    """Where one training step's time goes: {(layer type, phase): ms}, phase fprop, bprop
    or update, from CUDA events around each layer's calls (GPU time, plus any time the GPU
    waited for Python between them). One step, after the timed ones."""
    marks = []

    def wrap(layer, method, phase):
        inner = getattr(layer, method)

        def timed(*args, **kwargs):
            a, b = Event(), Event()
            a.record()
            out = inner(*args, **kwargs)
            b.record()
            marks.append(((layer.dic["type"], phase), a, b))
            return out
        setattr(layer, method, timed)
    for layer in net.layers:
        for method, phase in (("fprop", "fprop"), ("bprop", "bprop"), ("updateWeights", "update")):
            wrap(layer, method, phase)
    try:
        net.train_batch(data)
        marks[-1][2].synchronize()
    finally:
        for layer in net.layers:
            for method in ("fprop", "bprop", "updateWeights"):
                del layer.__dict__[method]
    where = {}
    for key, a, b in marks:
        where[key] = where.get(key, 0.0) + a.time_till(b)
    return where


# ==========================================================================================
# the peer: PyTorch + cuDNN
# ==========================================================================================
def torch_available():
    try:
        import torch
    except ImportError as e:
        return False, "PyTorch is not installed (%s)" % e
    if not torch.cuda.is_available():
        return False, "PyTorch sees no CUDA device"
    return True, ""


def _torch_pad(spec):
    """Extra right/bottom zero padding that gives cuDNN the 2012 module count."""
    img, k, s, p, m = spec["imgSize"], spec["filterSize"], spec["stride"], spec["padding"], spec["modulesX"]
    return max(0, (m - 1) * s + k - (img + 2 * p))


def time_torch_convs(specs, n, warmup, iters, tf32):
    import torch
    import torch.nn.functional as F
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    dev = torch.device("cuda")
    per = {}
    for s in specs:
        g = torch.Generator(device="cpu").manual_seed(0)
        x = torch.randn(n, s["channels"], s["imgSize"], s["imgSize"], generator=g).to(dev)
        extra = _torch_pad(s)
        if extra:
            x = F.pad(x, (0, extra, 0, extra))
        w = (0.01 * torch.randn(s["filters"], s["channels"] // s["groups"], s["filterSize"], s["filterSize"],
                                generator=g)).to(dev)
        stride, pad = [s["stride"]] * 2, [s["padding"]] * 2
        y = F.conv2d(x, w, None, stride, pad, 1, s["groups"])
        assert y.shape[-1] == s["modulesX"], (s["name"], y.shape, s["modulesX"])
        gy = torch.randn_like(y)

        def bwd(mask):
            return torch.ops.aten.convolution_backward(gy, x, w, None, stride, pad, [1, 1], False, [0, 0],
                                                       s["groups"], mask)
        passes = {"fprop": lambda: F.conv2d(x, w, None, stride, pad, 1, s["groups"]),
                  "bprop-img": lambda: bwd([True, False, False]),
                  "bprop-weights": lambda: bwd([False, True, False])}
        for p, fn in passes.items():
            with torch.no_grad():
                per[(s["name"], p)] = stream_ms(fn, warmup, iters, _torch_event, _torch_elapsed)
    return per


def _torch_event():
    import torch
    return torch.cuda.Event(enable_timing=True)


def _torch_elapsed(a, b):
    return a.elapsed_time(b)


def _torch_timed(fn, warmup, iters):
    """CUDA-event milliseconds of each call of fn() (with autograd), after `warmup` untimed calls."""
    return event_times(fn, warmup, iters, _torch_event, _torch_elapsed)


def torch_training_step(layers, n, device):
    """A function taking one training step of torch_peer.py's net (the one cpu_step.py
    --check compares with the NumPy engine) on `device`, on our minibatch."""
    net, opt = build_torch(layers, device=device)
    data = torch_inputs(net, *minibatch(layers, n), device=device)
    return lambda: torch_step(net, opt, data)


def time_torch_step(layers, n, warmup, iters, tf32):
    import torch
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    return median_ms(_torch_timed(torch_training_step(layers, n, "cuda"), warmup, iters))


# ==========================================================================================
# report
# ==========================================================================================
# The original 2012 kernels on one H100 (../shared/golden/kernels/SPEED.md: commit 6627f67's
# convFilterActs / convImgActs / convWeightActs, minibatch 128, groups 1, scaleTargets 0,
# the 2012 ImageNet partialSums; medians, ms), each shape with how often a training step of
# the paper net runs each pass on it (conv1's input needs no gradient; conv3 is timed
# whole, and also per tower, which no step runs): SPEED.md's sum, 22.56 ms.
#   (label, colours, filters, filterSize, stride, padding, imgSize, partialSum,
#    (fprop, bprop-img, bprop-weights) ms, (the same passes) per step)
ORIGINAL_2012 = [
    ("conv1 (3->96)", 3, 96, 11, 4, 0, 224, 5, (0.973, 1.183, 1.480), (1, 0, 1)),
    ("conv2 tower (48->128)", 48, 128, 5, 1, 2, 27, 3, (1.258, 1.278, 1.200), (2, 2, 2)),
    ("conv3 full (256->384)", 256, 384, 3, 1, 1, 13, 13, (1.979, 1.639, 1.758), (1, 1, 1)),
    ("conv3 tower (256->192)", 256, 192, 3, 1, 1, 13, 13, (1.044, 0.828, 0.899), (0, 0, 0)),
    ("conv4 tower (192->192)", 192, 192, 3, 1, 1, 13, 13, (0.783, 0.642, 0.694), (2, 2, 2)),
    ("conv5 tower (192->128)", 192, 128, 3, 1, 1, 13, 13, (0.600, 0.432, 0.477), (2, 2, 2)),
]
PASSES = ("fprop", "bprop-img", "bprop-weights")


def against_2012(timed):
    """Rows (label, pass, ours ms, original ms) of our 2012 kernels on SPEED.md's shapes
    (`timed`: time_original_shapes' result), then the paper net's step, SPEED.md's sum."""
    rows, ours_sum, orig_sum = [], 0.0, 0.0
    for label, *_, orig, per_step in ORIGINAL_2012:
        for p, o, times in zip(PASSES, orig, per_step):
            t = timed[(label, p)]
            rows.append((label, p, t, o))
            ours_sum, orig_sum = ours_sum + times * t, orig_sum + times * o
    rows.append(("the five conv layers in a step", "", ours_sum, orig_sum))
    return rows


def report_against_2012(timed):
    """Our ported 2012 kernels against the originals' times, shape for shape: the issue's
    bound is 1.1x."""
    print("\nours 2012 against the original 2012 kernels, on the shapes of SPEED.md (H100; ms):")
    print("%-31s %-14s %9s %9s %8s" % ("layer", "pass", "ours", "original", "ratio"))
    for label, p, t, o in against_2012(timed):
        print("%-31s %-14s %9.3f %9.3f %7.2fx" % (label, p, t, o, t / o))


def table(specs, ours, peers):
    """(column names, rows): one column of milliseconds per result (ours per choice of
    conv kernels, then cuDNN fp32 / tf32), each row (label, pass, values, in a step); then
    the conv layers' total in a step and the training step."""
    results = list(ours.values()) + list(peers.values())
    names = ["ours " + v for v in ours] + ["cuDNN " + c for c in peers]
    rows, totals = [], [0.0] * len(results)
    for s in specs:
        for p in PASSES:
            values = [r["conv"][(s["name"], p)] for r in results]
            in_step = not (p == "bprop-img" and s["input"] in ("data", "0"))
            if in_step:
                totals = [a + b for a, b in zip(totals, values)]
            rows.append((s["name"], p, values, in_step))
    rows.append(("conv layers in a step", "", totals, True))
    rows.append(("training step", "", [r["step_ms"] for r in results], True))
    return names, rows


def report(specs, n, ours, peers):
    """ours: {conv kernels: results}; peers: {"fp32" / "tf32": results}. One column of
    milliseconds each, then each of ours against cuDNN fp32."""
    device = next(iter(ours.values())).get("device", "?")
    print("\nGPU: %s; minibatch %d; medians of CUDA-event times (ms)" % (device, n))
    names, rows = table(specs, ours, peers)
    ratios = list(ours) if "fp32" in peers else []
    print("%-10s %-14s " % ("conv", "pass") + " ".join("%11s" % h for h in names) +
          "".join(" %12s" % (v + "/fp32") for v in ratios))
    for name, p, values, in_step in rows:
        line = "%-10s %-14s " % (name, p + ("" if in_step else "*")) + " ".join("%11.3f" % t for t in values)
        if ratios:
            line += "".join(" %11.2fx" % (t / values[len(ours)]) for t in values[:len(ratios)])
        print(line)
    print("(* not part of a training step: the data layer needs no gradient)")
    if "original_shapes" in ours.get("2012", {}) and n == 128:
        report_against_2012(ours["2012"]["original_shapes"])
    for name, r in ours.items():
        where = r.get("where", {})
        total = sum(where.values()) or 1.0
        print("\nours %s, where a step's %.2f ms go (by layer type and phase, CUDA events):" % (name, total))
        for (kind, phase), ms in sorted(where.items(), key=lambda kv: -kv[1])[:12]:
            print("  %-14s %-7s %8.3f ms %5.1f%%" % (kind, phase, ms, 100.0 * ms / total))


def markdown(specs, n, ours, peers, iters):
    """The table of `report` in Markdown, for docs/performance.md."""
    device = next(iter(ours.values())).get("device", "?")
    names, rows = table(specs, ours, peers)
    out = ["Measured by `benchmarks/gpu_step.py` on %s, minibatch %d, fp32, in milliseconds: each conv pass "
           "the mean of %d calls issued back to back, the training step the median of as many (cuDNN: "
           "PyTorch %s)." % (device, n, iters, peers.get("fp32", {}).get("torch", "?")), "",
           "| layer | pass | " + " | ".join(names) + " |", "|" + "---|" * (2 + len(names))]
    for name, p, values, in_step in rows:
        cells = ["%.3f" % t for t in values]
        if not p:
            name, cells = "**%s**" % name, ["**%s**" % c for c in cells]
        out.append("| %s | %s | %s |" % (name, p + ("" if in_step else " (not in a step)"), " | ".join(cells)))
    if "original_shapes" in ours.get("2012", {}) and n == 128:
        out += ["", "Ours 2012 against the original 2012 kernels (../shared/golden/kernels/SPEED.md, H100), on "
                "the same shapes:", "", "| layer | pass | ours 2012 | original | ratio |", "|---|---|---|---|---|"]
        for label, p, t, o in against_2012(ours["2012"]["original_shapes"]):
            bold = (lambda c: c) if p else (lambda c: "**%s**" % c)
            out.append("| %s | %s | %s | %s | %s |" % (bold(label), p, bold("%.3f" % t), bold("%.3f" % o),
                                                       bold("%.2fx" % (t / o))))
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", default=DEFAULT_LAYERS)
    ap.add_argument("--params", default=DEFAULT_PARAMS)
    ap.add_argument("--mini", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--conv-kernels", default="2012,gemm,winograd,implicit,implicit-registers,fastest",
                    help="ours, once per choice (comma-separated)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer")
    ap.add_argument("--json", default="", help="also write the numbers here")
    ap.add_argument("--markdown", default="", help="also write the table here, in Markdown")
    ap.add_argument("--dry-run", action="store_true", help="print the parsed conv shapes and exit")
    args = ap.parse_args(argv)

    layers, dialect = parse(args.layers, args.params)
    specs = conv_specs(layers)
    print("%s (%s dialect): %d conv passes per input" % (os.path.basename(args.layers), dialect, len(specs)))
    print_specs(specs, args.mini)
    if args.dry_run:
        return 0

    # the peer first: a choice of ours that fails on the GPU may leave the device unusable
    peers = {}
    ok, why = (False, "--no-torch") if args.no_torch else torch_available()
    if ok:
        import torch
        for name, tf32 in (("fp32", False), ("tf32", True)):
            peers[name] = {"conv": time_torch_convs(specs, args.mini, args.warmup, args.iters, tf32),
                           "torch": "%s, cuDNN %s" % (torch.__version__, torch.backends.cudnn.version())}
            try:
                peers[name]["step_ms"] = time_torch_step(layers, args.mini, args.warmup, args.iters, tf32)
            except Unsupported as e:
                print("PyTorch step skipped: %s" % e)
                peers[name]["step_ms"] = float("nan")
    else:
        print("\nno PyTorch peer: %s" % why)
    ours = {}
    for v in args.conv_kernels.split(","):
        try:
            ours[v] = time_ours(layers, dialect, specs, args.mini, args.warmup, args.iters, v)
        except Exception as e:  # report the others; the failure itself is for the GPU tests to pin down
            print("\nours %s failed: %s: %s" % (v, type(e).__name__, str(e).splitlines()[0] if str(e) else ""))
        sys.stdout.flush()
    if not ours:
        return 1
    report(specs, args.mini, ours, peers)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(specs, args.mini, ours, peers, args.iters))
    if args.json:
        def keyed(d):
            return {"%s %s" % k: v for k, v in d.items()}
        out = {"device": next(iter(ours.values()))["device"], "minibatch": args.mini}
        for k, v in ours.items():
            out["ours_" + k] = {"step_ms": v["step_ms"], "conv": keyed(v["conv"]), "where": keyed(v["where"])}
            if "original_shapes" in v:
                out["ours_" + k]["original_shapes"] = keyed(v["original_shapes"])
        for k, v in peers.items():
            out["cudnn_" + k] = {"step_ms": v["step_ms"], "conv": keyed(v["conv"])}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
