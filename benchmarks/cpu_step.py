"""One training step on the CPU: the NumPy engine against PyTorch running the same net.

No 2012 counterpart (cuda-convnet ran on the GPU only). The peer is PyTorch's CPU build,
an optional dependency of this benchmark alone (not of the project):
    pip install torch     # a CPU build (measured with 2.13.0+cpu); without it, ours alone

    python benchmarks/cpu_step.py [--net 18pct,alexnet] [--steps 9] [--warmup 2]
                                  [--threads 2] [--alexnet-batch 8] [--no-torch]
                                  [--no-memory] [--check] [--openblas-coretype NAME]

Prints per net and engine: median wall time per step, the fastest step, the process's CPU
time per step (all its threads), images/s, peak memory; then the ratios ours/torch (lower
is better). See benchmarks/README.md for how to read them on a shared machine.

What is timed: one minibatch's fprop + bprop + weight update (ConvNet.train_batch on a
batch of exactly one minibatch; for PyTorch zero_grad, forward, backward, SGD step):
  18pct    cuda-convnet's 18%-on-CIFAR-10 net (layers_cfg/layers-18pct.cfg), minibatch 128;
  alexnet  the AlexNet paper's two-tower net (layers_cfg/layers-alexnet.cfg, alexnet
           dialect, both towers on this one CPU), minibatch 8 (--alexnet-batch).
Both engines see the same random data and labels and start from the same weights.

The PyTorch net is benchmarks/torch_peer.py's, built from the same parsed layer dicts
(its header says how each 2012 layer maps to PyTorch). --check runs one step on both from
the same state (dropout masks shared) and prints the relative differences of the cost and
of every weight increment.

Timing: both engines in this one process, steps interleaved (ours, torch, torch, ours,
...) so that a burst of load from other processes hits both; each reported time is the
median of --steps steps after --warmup steps, with the fastest step beside it. Before each
timed step the process rests --pause seconds: idle OpenBLAS threads spin for up to ~0.1 s
after a call (2^28 cycles, OpenBLAS's default) and would otherwise take a core from the
PyTorch step that follows (PyTorch's OpenMP threads spin far shorter). Thread counts are set
equally before numpy and torch load: OMP/OPENBLAS/MKL_NUM_THREADS, threadpoolctl's limit
on numpy's BLAS, torch.set_num_threads. The machine's load average is printed before and
after: on a shared machine read the ratio, not the absolute times.

Memory: each engine runs alone in a fresh child process (so that neither sees the
other's pages or allocator caches). The child imports what it needs, measures its RSS
(baseline), parses the net, builds the engine from it (PyTorch copies the weights and drops
the parsed dicts; ours keeps them, as the engine does), calls malloc_trim, resets the
kernel's peak-RSS mark (/proc/self/clear_refs, so transient parse-time peaks do not count),
runs warm-up + 3 steps and reads the peak (VmHWM). Reported: peak - baseline, i.e. weights,
momenta, gradients, activations and work buffers at their highest. For ours the child also
reports tracemalloc's peak of traced (numpy) allocations in a separate run.
"""

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time

from torch_peer import Unsupported, build_torch, torch_inputs, torch_step  # (beside this script)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

NETS = {
    "18pct": dict(layers="layers_cfg/layers-18pct.cfg", params="layers_cfg/layer-params-18pct.cfg",
                  channels=3, size=32, classes=10, gpus=1, dialect="cuda-convnet", batch=128),
    "alexnet": dict(layers="layers_cfg/layers-alexnet.cfg", params="layers_cfg/layer-params-alexnet.cfg",
                    channels=3, size=224, classes=1000, gpus=2, dialect="alexnet", batch=8),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--net", default="18pct,alexnet", help="comma-separated: 18pct, alexnet")
    p.add_argument("--steps", type=int, default=9, help="timed steps per engine (median)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="threads for both engines")
    p.add_argument("--pause", type=float, default=0.3,
                   help="seconds of rest before each timed step (OpenBLAS's idle threads spin for "
                        "up to ~0.1 s after a call, and would steal a core from the next step)")
    p.add_argument("--alexnet-batch", type=int, default=8)
    p.add_argument("--batch-18pct", type=int, default=128)
    p.add_argument("--no-torch", action="store_true", help="time the NumPy engine alone")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory children")
    p.add_argument("--check", action="store_true",
                   help="one step on both from the same state: print how far they differ")
    p.add_argument("--openblas-coretype", metavar="NAME",
                   help="set OPENBLAS_CORETYPE for numpy's OpenBLAS (e.g. SkylakeX: its AVX-512 kernels "
                        "on a CPU it does not recognise); default: its own detection")
    p.add_argument("--layers", help="override the net's layers.cfg (path)")
    p.add_argument("--params", help="override the net's layer-params.cfg (path)")
    p.add_argument("--child", help=argparse.SUPPRESS)  # 'ours', 'ours-trace' or 'torch'
    return p.parse_args(argv)


def set_threads_env(n):
    """Before numpy / torch load: every thread pool the same size."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


# ----------------------------------------------------------------------------------------
# the net, the data, our engine

def net_spec(args, name):
    spec = dict(NETS[name])
    if name == "18pct":
        spec["batch"] = args.batch_18pct
    else:
        spec["batch"] = args.alexnet_batch
    if args.layers:
        spec["layers"] = args.layers
    if args.params:
        spec["params"] = args.params
    for k in ("layers", "params"):
        if not os.path.isabs(spec[k]):
            spec[k] = os.path.join(ROOT, spec[k])
    return spec


def parse_net(spec):
    import contextlib
    import io
    from cudaconvnet.layer import LayerParser, StaticModel
    model = StaticModel([spec["channels"] * spec["size"] ** 2, 1], spec["classes"], spec["gpus"])
    with contextlib.redirect_stdout(io.StringIO()):
        return LayerParser.parse_layers(spec["layers"], spec["params"], model, dialect=spec["dialect"])


def make_data(spec, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    n = spec["batch"]
    x = rng.standard_normal((spec["channels"] * spec["size"] ** 2, n), dtype=np.float32)
    y = rng.integers(0, spec["classes"], (1, n)).astype(np.float32)
    return x, y


def build_ours(layers, spec, seed=1):
    import contextlib
    import io
    from cudaconvnet.backends import get_backend
    from cudaconvnet.engine.net import ConvNet
    with contextlib.redirect_stdout(io.StringIO()):
        return ConvNet(layers, spec["batch"], get_backend("numpy"), dialect=spec["dialect"], seed=seed,
                       out=lambda *a: None)


def ours_step(net, x, y):
    return net.train_batch([x, y])


# ----------------------------------------------------------------------------------------
# measurements

def load_avg():
    try:
        return "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "n/a"


def machine_info(threads):
    import numpy as np
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    blas = "unknown"
    try:
        from threadpoolctl import threadpool_info
        infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        if infos:
            i = infos[0]
            blas = "%s %s (%s kernels, %d threads)" % (i.get("internal_api"), i.get("version"),
                                                       i.get("architecture"), i.get("num_threads"))
    except ImportError:
        pass
    return ("CPU: %s, %d logical cores; numpy %s, BLAS %s; threads per engine: %d"
            % (cpu, os.cpu_count() or 0, np.__version__, blas, threads))


def limit_threads(threads):
    try:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(limits=threads)
    except ImportError:
        return None


def time_both(args, spec, layers, with_torch):
    """{engine: (wall seconds per step, CPU seconds per step)} over args.steps steps, the
    engines taking turns (which one goes first alternates)."""
    x, y = make_data(spec)
    net = build_ours(layers, spec)
    runs = {"ours": lambda: ours_step(net, x, y)}
    if with_torch:
        model, opt = build_torch(layers)
        data = torch_inputs(model, x, y)
        runs["torch"] = lambda: torch_step(model, opt, data)
    for _ in range(args.warmup):
        for f in runs.values():
            f()
    times = {k: ([], []) for k in runs}
    order = list(runs)
    for step in range(args.steps):
        for k in (order if step % 2 == 0 else order[::-1]):
            gc.collect()
            time.sleep(args.pause)  # the other engine's idle threads stop spinning
            w0, c0 = time.perf_counter(), time.process_time()
            runs[k]()
            times[k][0].append(time.perf_counter() - w0)
            times[k][1].append(time.process_time() - c0)
    return times


def read_status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def child_memory(args):
    """Runs in a fresh process: one engine's peak RSS growth over its baseline."""
    import ctypes
    import numpy  # noqa: F401  (imported here, after main() set the threads and the core type)
    which = args.child
    if which == "torch":
        import torch
        torch.set_num_threads(args.threads)
    import cudaconvnet.engine.net  # noqa: F401  (imports count in the baseline)
    _limits = limit_threads(args.threads)  # noqa: F841  (kept for the process's life)
    spec = net_spec(args, args.net)
    gc.collect()
    baseline = read_status("VmRSS")
    layers = parse_net(spec)
    x, y = make_data(spec)
    if which == "torch":
        model, opt = build_torch(layers)
        data = torch_inputs(model, x, y)
        del layers
        step = lambda: torch_step(model, opt, data)  # noqa: E731
    else:
        net = build_ours(layers, spec)
        step = lambda: ours_step(net, x, y)  # noqa: E731
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    if which == "ours-trace":
        import tracemalloc
        tracemalloc.start()
        base_traced = tracemalloc.get_traced_memory()[0]
        for _ in range(args.warmup + 3):
            step()
        peak_traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(json.dumps({"traced_peak": peak_traced - base_traced}))
        return
    reset = False
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        pass
    for _ in range(args.warmup + 3):
        step()
    peak = read_status("VmHWM")
    print(json.dumps({"baseline": baseline, "peak": peak, "growth": peak - baseline, "hwm_reset": reset}))


def measure_memory(args, name, which):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", which, "--net", name,
           "--threads", str(args.threads), "--warmup", "1", "--alexnet-batch", str(args.alexnet_batch),
           "--batch-18pct", str(args.batch_18pct)]
    if args.openblas_coretype:
        cmd += ["--openblas-coretype", args.openblas_coretype]
    if args.layers:
        cmd += ["--layers", args.layers]
    if args.params:
        cmd += ["--params", args.params]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("memory child (%s, %s) failed:\n%s" % (name, which, r.stderr[-2000:]))
    return json.loads(r.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------
# --check: the same step on both

def check(args, spec, layers):
    import numpy as np
    from cudaconvnet.backends import get_backend
    be = get_backend("numpy")
    x, y = make_data(spec)
    masks = {}
    rng = np.random.default_rng(5)
    orig_mask = be.uniform_mask
    shape_names = {}

    def mask_source(name, shape):
        # torch asks with (N, features); the engine with (features, N)
        key = (name, shape)
        if key not in masks:
            masks[key] = (rng.random(shape, dtype=np.float32) < 0.5).astype(np.float32)
            shape_names.setdefault((shape[1], shape[0]), []).append(key)
        return masks[key]

    model, opt = build_torch(layers, mask_source)
    before = {k: p.detach().clone() for k, p in model.wparams.items()}
    loss = torch_step(model, opt, torch_inputs(model, x, y))

    queue = {k: list(v) for k, v in shape_names.items()}

    def shared_mask(shape, keep):
        key = queue[tuple(shape)].pop(0)
        return np.ascontiguousarray(masks[key].T)

    be.uniform_mask = shared_mask
    try:
        net = build_ours(layers, spec)
        cost = ours_step(net, x, y)
    finally:
        be.uniform_mask = orig_mask
    print("  cost (-log p, mean over the minibatch): ours %.6f  torch %.6f"
          % (cost.getValue() / spec["batch"], float(loss.detach())))
    worst = 0.0
    for layer in net.layers:
        for key, w in ([(str(i), w) for i, w in enumerate(getattr(layer, "weights", []))]
                       + ([("b", layer.biases)] if hasattr(layer, "biases") else [])):
            p = model.wparams.get((layer.name, key))
            if p is None:
                continue
            ours_inc = np.asarray(w.Inc).reshape(-1)
            tp = (p.detach() - before[(layer.name, key)]).numpy()
            if key != "b" and layer.type == "conv":
                tp = tp.reshape(tp.shape[0], -1).T
            elif key != "b" and layer.type == "fc":
                tp = tp.T
            tp = tp.reshape(-1)
            err = float(np.linalg.norm(ours_inc - tp) / max(np.linalg.norm(ours_inc), 1e-30))
            worst = max(worst, err)
            print("  %-14s %-2s weight increment: |ours - torch| / |ours| = %.1e" % (layer.name, key, err))
    print("  worst: %.1e (float32 rounding: ~1e-6; a relu or a max-pool tie decided the other way"
          " by rounding moves a few gradients, more when the activations are tiny)" % worst)


# ----------------------------------------------------------------------------------------

def fmt_mb(b):
    return "%.0f MB" % (b / 2 ** 20)


def main():
    args = parse_args()
    set_threads_env(args.threads)
    if args.openblas_coretype:
        os.environ["OPENBLAS_CORETYPE"] = args.openblas_coretype
    if args.child:
        return child_memory(args)
    import numpy  # noqa: F401  (imported here, after the thread settings)
    have_torch = False
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(args.threads)
            have_torch = True
        except ImportError:
            print("PyTorch is not installed: timing the NumPy engine alone (pip install torch for the peer)")
    _limits = limit_threads(args.threads)  # noqa: F841  (kept for the process's life)
    print(machine_info(args.threads))
    if have_torch:
        print("PyTorch %s (%s), %d intra-op threads" % (torch.__version__, torch.backends.cpu.get_cpu_capability(),
                                                        torch.get_num_threads()))
    rows = []
    for name in [n.strip() for n in args.net.split(",") if n.strip()]:
        spec = net_spec(args, name)
        if not os.path.exists(spec["layers"]):
            print("%s: %s is missing, skipped" % (name, spec["layers"]))
            continue
        layers = parse_net(spec)
        with_torch = have_torch
        if with_torch:
            try:
                build_torch(layers)
            except Unsupported as e:
                print("%s: the PyTorch peer cannot build this net (%s); timing ours alone" % (name, e))
                with_torch = False
        if args.check and with_torch:
            print("%s: one step on both from the same state" % name)
            check(args, spec, parse_net(spec))
        print("%s: minibatch %d, %d warm-up + %d timed steps each, load average %s"
              % (name, spec["batch"], args.warmup, args.steps, load_avg()))
        times = time_both(args, spec, layers, with_torch)
        print("  load average after: %s" % load_avg())
        del layers
        gc.collect()
        mem = {}
        if not args.no_memory:
            mem["ours"] = measure_memory(args, name, "ours")
            mem["ours-trace"] = measure_memory(args, name, "ours-trace")
            if with_torch:
                mem["torch"] = measure_memory(args, name, "torch")
        rows.append((name, spec["batch"], times, mem))

    print()
    print("%-8s %5s %-6s %9s %9s %9s %9s %12s" % ("net", "batch", "engine", "ms/step", "best ms", "CPU ms",
                                                 "images/s", "peak memory"))
    for name, batch, times, mem in rows:
        for k in ("ours", "torch"):
            if k not in times:
                continue
            wall, cpu = times[k]
            med = statistics.median(wall)
            m = fmt_mb(mem[k]["growth"]) if k in mem else "-"
            print("%-8s %5d %-6s %9.1f %9.1f %9.1f %9.1f %12s" % (name, batch, k, 1000 * med, 1000 * min(wall),
                                                              1000 * statistics.median(cpu), batch / med, m))
        if "torch" in times:
            (ow, oc), (tw, tc) = times["ours"], times["torch"]
            line = "%-8s ours/torch: time %.2f (best steps %.2f, CPU %.2f)" % (
                name, statistics.median(ow) / statistics.median(tw), min(ow) / min(tw),
                statistics.median(oc) / statistics.median(tc))
            if "torch" in mem:
                line += ", peak memory %.2f" % (mem["ours"]["growth"] / max(1, mem["torch"]["growth"]))
            print(line)
        if "ours-trace" in mem:
            print("%-8s ours: tracemalloc peak of the step's numpy allocations %s"
                  % (name, fmt_mb(mem["ours-trace"]["traced_peak"])))


if __name__ == "__main__":
    main()
