"""The PyTorch peer of the benchmarks: a PyTorch module and optimizer doing what the engine
does with a net's parsed layer dicts, on the CPU (cpu_step.py) or on a GPU (gpu_step.py).
No 2012 counterpart. PyTorch is a dependency of the benchmarks alone.

The PyTorch net is built from the parsed layer dicts, layer for layer, so that both do the
same arithmetic: conv2d with the 2012 geometry (its padding, stride, groups; extra zero
padding on the right where the 2012 module count needs it), one conv2d per input summed
for multi-input layers, max/avg pooling with the 2012 output count (ceil mode, clipped
windows, the average over in-image pixels), cross-map LRN as F.local_response_norm
(alpha = scale given, beta = pow, k = minDiv or 1), within-map rnorm as
x * (1 + scale * boxsum(x^2))^-pow with the box sum an avg_pool2d of the squares, relu as a
separate layer, fc as F.linear per input, dropout ('hs') as a 0/1 keep-mask product (no
1/keep rescaling, as 2012), softmax + logistic regression as F.cross_entropy (mean over
the minibatch, times coeff). The 2012 update
    inc = mom*inc + eps*grad - wc*eps*w;  w += inc   (grad = -dCost/dw / numCases)
is exactly torch.optim.SGD(lr=eps, momentum=mom, weight_decay=wc, dampening 0), per
matrix; matrices with eps = 0 are frozen in both. The 2012 weight layouts are transposed
into PyTorch's: conv (channels*fs*fs, filters) -> (filters, channels, fs, fs), fc
(in, out) -> (out, in).

cpu_step.py --check runs one step of it and of the NumPy engine from the same state and
prints how far they differ.

numpy and torch are imported inside the functions: cpu_step.py sets their thread counts
before either loads.
"""


class Unsupported(Exception):
    """A layer (or option of one) the peer has no PyTorch counterpart for."""


def layer_graph(layers):
    """(dict, input names) in the engine's order (a layer after its inputs)."""
    from cudaconvnet.engine.net import topological_order
    dicts = list(layers.values()) if isinstance(layers, dict) else list(layers)
    names = [d["name"] for d in dicts]

    def inputs(d):
        return [names[i] if isinstance(i, int) else i for i in d.get("inputs", [])]

    return [(d, inputs(d)) for d in topological_order(dicts, inputs)]


def build_torch(layers, mask_source=None, device="cpu"):
    """(module, optimizer) doing what the engine does with these layer dicts, on `device`.
    mask_source(name, shape) -> 0/1 numpy mask replaces the dropout draws (for --check)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    graph = layer_graph(layers)

    def t(a):
        return torch.from_numpy(np.array(a, dtype=np.float32, copy=True)).to(device)

    def square(name, a):
        s = int(round(a ** 0.5))
        if s * s != a:
            raise Unsupported("%s: non-square image" % name)
        return s

    class Net(torch.nn.Module):
        def __init__(self, graph):
            super().__init__()
            self.ops = []
            self.groups = []          # optimizer parameter groups, 2012's per-matrix rates
            self.wparams = {}         # (layer, index or 'b') -> parameter, for --check
            for d, ins in graph:
                self.ops.append((d["name"], ins, self._make(d)))

        def _param(self, d, key, value, eps, mom, wc):
            p = torch.nn.Parameter(value, requires_grad=eps > 0)
            self.register_parameter("%s_%s" % (d["name"], key), p)
            self.wparams[(d["name"], key)] = p
            if eps > 0:
                self.groups.append(dict(params=[p], lr=eps, momentum=mom, weight_decay=wc))
            return p

        def _weights(self, d, shape_fn):
            ws = []
            for i, w in enumerate(d["weights"]):
                src = d.get("weightSourceLayers", d.get("weightSourceLayerIndices", [""] * 9))[i]
                if src not in ("", -1):
                    raise Unsupported("%s: shared weights" % d["name"])
                ws.append(self._param(d, str(i), shape_fn(i, t(w)), d["epsW"][i], d["momW"][i], d["wc"][i]))
            return ws

        def _make(self, d):
            kind = d["type"]
            name = d["name"]
            if kind == "data":
                return None
            if kind == "conv":
                return self._conv(d)
            if kind == "fc":
                ws = self._weights(d, lambda i, w: w.t().contiguous())
                b = self._param(d, "b", t(d["biases"]).reshape(-1), d["epsB"], d["momB"], 0.0)

                def fc(xs):
                    out = None
                    for x, w in zip(xs, ws):
                        y = F.linear(x.reshape(x.shape[0], -1), w)
                        out = y if out is None else out + y
                    return out + b
                return fc
            if kind == "neuron":
                n = d["neuron"]
                a, bb = n["params"].get("a", 0.0), n["params"].get("b", 0.0)
                fns = {"relu": F.relu, "ident": lambda x: x, "abs": torch.abs, "logistic": torch.sigmoid,
                       "tanh": lambda x: a * torch.tanh(bb * x), "square": torch.square,
                       "linear": lambda x: a * x + bb}
                if n["type"] not in fns:
                    raise Unsupported("%s: neuron %s" % (name, n["type"]))
                f = fns[n["type"]]
                return lambda xs: f(xs[0])
            if kind == "pool":
                return self._pool(d)
            if kind in ("rnorm", "cnorm"):
                return self._rnorm(d, contrast=kind == "cnorm")
            if kind == "cmrnorm":
                return self._cmrnorm(d)
            if kind == "hs":
                keep = d["keep"]
                enable = d.get("enable", True)

                def dropout(xs):
                    x = xs[0]
                    if not enable:
                        return x * keep
                    if mask_source is not None:
                        m = torch.from_numpy(mask_source(name, tuple(x.shape))).to(x.device)
                    else:
                        m = (torch.rand_like(x) < keep).to(x.dtype)
                    return x * m
                return dropout
            if kind == "concat":
                return lambda xs: torch.cat([x.reshape(x.shape[0], -1) for x in xs], 1)
            if kind == "softmax":
                return lambda xs: xs[0]       # the logits: the cost takes the softmax
            if kind == "cost.logreg":
                coeff = d["coeff"]
                return lambda xs: coeff * F.cross_entropy(xs[1], xs[0])
            raise Unsupported("%s: layer type %s" % (name, kind))

        def _conv(self, d):
            if any(d["randSparse"]):
                raise Unsupported("%s: sparse conv" % d["name"])
            F_ = d["filters"]
            geo = []
            for i in range(len(d["weights"])):
                fs, C = d["filterSize"][i], d["channels"][i]
                img, stride, pad = d["imgSize"][i], d["stride"][i], -d["padding"][i]
                mX = d["modulesX"]
                right = (mX - 1) * stride + fs - img - pad   # zero columns the modules need
                geo.append((C, img, stride, pad, right, d["groups"][i]))
            ws = self._weights(d, lambda i, w: w.t().reshape(F_, d["filterChannels"][i], d["filterSize"][i],
                                                             d["filterSize"][i]).contiguous())
            mX = d["modulesX"]
            if d["sharedBiases"]:
                b = self._param(d, "b", t(d["biases"]).reshape(1, F_, 1, 1), d["epsB"], d["momB"], 0.0)
            else:
                b = self._param(d, "b", t(d["biases"]).reshape(1, F_, mX, mX), d["epsB"], d["momB"], 0.0)

            def conv(xs):
                out = None
                for x, w, (C, img, stride, pad, right, groups) in zip(xs, ws, geo):
                    x = x.reshape(x.shape[0], C, img, img)
                    if right == pad:
                        y = F.conv2d(x, w, stride=stride, padding=pad, groups=groups)
                    else:
                        y = F.conv2d(F.pad(x, (pad, right, pad, right)), w, stride=stride, groups=groups)
                    out = y if out is None else out + y
                return out + b
            return conv

        def _pool(self, d):
            C, k, start, stride = d["channels"], d["sizeX"], d["start"], d["stride"]
            out, img, how = d["outputsX"], d["imgSize"], d["pool"]
            if how not in ("max", "avg"):
                raise Unsupported("%s: pool=%s" % (d["name"], how))
            pad = -start
            # PyTorch's own padding + ceil mode clip the windows exactly as 2012 does, when
            # its output count agrees; otherwise pad explicitly and rescale the average
            tout = -(-(img + 2 * pad - k) // stride) + 1
            if (tout - 1) * stride >= img + pad:
                tout -= 1
            native = 0 <= pad <= k // 2 and tout == out
            if how == "max":
                if native:
                    return lambda xs: F.max_pool2d(xs[0].reshape(xs[0].shape[0], C, img, img), k, stride, pad,
                                                   ceil_mode=True)
                right = (out - 1) * stride + k - img - pad
                return lambda xs: F.max_pool2d(F.pad(xs[0].reshape(xs[0].shape[0], C, img, img),
                                                     (pad, right, pad, right), value=float("-inf")),
                                               k, stride)[:, :, :out, :out]
            if native:
                return lambda xs: F.avg_pool2d(xs[0].reshape(xs[0].shape[0], C, img, img), k, stride, pad,
                                               ceil_mode=True, count_include_pad=False)
            s = start + np.arange(out) * stride
            cnt = (np.minimum(img, s + k) - np.maximum(0, s)).astype(np.float32)
            scale = t((k * k) / (cnt[:, None] * cnt[None, :]))
            right = (out - 1) * stride + k - img - pad
            return lambda xs: F.avg_pool2d(F.pad(xs[0].reshape(xs[0].shape[0], C, img, img),
                                                 (pad, right, pad, right)), k, stride)[:, :, :out, :out] * scale

        def _rnorm(self, d, contrast):
            C, size, img, name = d["channels"], d["size"], d["imgSize"], d["name"]
            addScale, powScale = d["scale"], d["pow"]
            lo = size // 2
            hi = size - 1 - lo

            def boxsum(z):  # sum over the size x size window starting at -(size//2)
                if lo == hi:
                    return F.avg_pool2d(z, size, 1, lo, count_include_pad=True) * (size * size)
                return F.avg_pool2d(F.pad(z, (lo, hi, lo, hi)), size, 1) * (size * size)

            if contrast and lo != hi:
                raise Unsupported("%s: cnorm with an even size" % name)

            def rnorm(xs):
                x = xs[0].reshape(xs[0].shape[0], C, img, img)
                if contrast:
                    # the local mean (over in-image pixels) is held constant in 2012's gradient
                    with torch.no_grad():
                        mean = F.avg_pool2d(x, size, 1, lo, count_include_pad=False)
                    m = x - mean
                else:
                    m = x
                return x * (1.0 + addScale * boxsum(m * m)) ** (-powScale)
            return rnorm

        def _cmrnorm(self, d):
            C, size, img = d["channels"], d["size"], d["imgSize"]
            if d.get("blocked"):
                raise Unsupported("%s: blocked cmrnorm" % d["name"])
            alpha, beta, k = d["scale"] * size, d["pow"], d.get("minDiv", 1.0)
            return lambda xs: F.local_response_norm(xs[0].reshape(xs[0].shape[0], C, img, img), size, alpha, beta, k)

        def forward(self, data):
            acts = {}
            for name, ins, op in self.ops:
                if op is None:
                    continue
                acts[name] = op([acts[n] if n in acts else data[n] for n in ins])
            self.acts = acts
            return sum(acts[name] for name, _, _ in self.ops if name in acts and name in self.costs)

    net = Net(graph)  # (no closure keeps a layer dict, or its numpy weights, alive)
    net.costs = {d["name"] for d, _ in graph if d["type"].startswith("cost.")}
    net.data_names = {d["name"]: d["dataIdx"] for d, _ in graph if d["type"] == "data"}
    opt = torch.optim.SGD(net.groups, lr=1.0)
    return net, opt


def torch_inputs(net, x, y, device="cpu"):
    """The data layers' inputs from the engine's x (features, N) and labels y (1, N)."""
    import torch
    xt = torch.from_numpy(x.T.copy()).to(device)
    yt = torch.from_numpy(y[0].astype("int64")).to(device)
    return {name: (xt if idx == 0 else yt) for name, idx in net.data_names.items()}


def torch_step(model, opt, data):
    opt.zero_grad(set_to_none=True)
    loss = model(data)
    loss.backward()
    opt.step()
    return loss
