"""Export a checkpoint's weights to HDF5, for use in other tools.

New in this port (2012 had no such tool). `python -m cudaconvnet.export CHECKPOINT OUT.h5`
reads a checkpoint (a file <epoch>.<batch>, or a folder: its newest) and writes one group
per layer that has weights:

    /<layer>/weights_0, weights_1, ...     one matrix per input, as the engine holds them
                                           (fc: (inputs, outputs); conv: (colors*filterPixels,
                                           filters); local: (modules*colors*filterPixels,
                                           filters))
    /<layer>/weightsInc_0, ...             the momentum increments
    /<layer>/biases, biasesInc
    /<layer>.attrs                         type, the layer's scalar parameters (outputs,
                                           filters, filterSize, stride, padding, epsW, ...),
                                           inputs (layer names) and neuron
    /.attrs                                epoch, batchnum, source_checkpoint, dialect,
                                           layers (the groups in the checkpoint's order)

The file is written beside OUT.h5 and renamed over it when complete.
"""
import argparse
import os

import numpy as np

from .convnet import checkpoint_layers_problem
from .gpumodel import IGPUModel, StopTraining, run_main
from .util import UnpickleError, atomic_output

# layer-dict entries that are not parameters: the arrays themselves, and the parser's links
_SKIP = {"weights", "weightsInc", "biases", "biasesInc", "inputLayers", "inputs", "neuron", "name", "type"}


def _attr_value(v):
    """v as an HDF5 attribute value, or None when it is not a plain scalar or flat list."""
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (int, float, str, np.integer, np.floating)):
        return v
    if isinstance(v, (list, tuple)) and v:
        if all(isinstance(x, (bool, int, float, np.integer, np.floating)) for x in v):
            return np.asarray(v, dtype=np.float64 if any(isinstance(x, (float, np.floating)) for x in v)
                              else np.int64)
        if all(isinstance(x, str) for x in v):
            return [str(x) for x in v]
    return None


def _layer_list(layers):
    """(name, dict) in the checkpoint's order (cuda-convnet: a list; AlexNet code: a dict)."""
    if isinstance(layers, dict):
        return list(layers.items())
    return [(l["name"], l) for l in layers]


def _neuron_str(neuron):
    if isinstance(neuron, dict):
        params = neuron.get("params") or {}
        if params:
            return "%s[%s]" % (neuron.get("type"), ",".join("%g" % params[k] for k in sorted(params)))
        return str(neuron.get("type"))
    return str(neuron)


def export_checkpoint(checkpoint, out_path):
    """Writes out_path from checkpoint (a file or folder); returns the names of the layers
    written. Raises UnpickleError for an unreadable checkpoint."""
    import h5py

    source = IGPUModel.checkpoint_file(checkpoint)
    dic = IGPUModel.load_checkpoint(source)
    ms = dic["model_state"]
    if "layers" not in ms:
        raise UnpickleError("'%s' holds no layers" % source)
    problem = checkpoint_layers_problem(ms["layers"])
    if problem:
        raise UnpickleError("'%s': %s" % (source, problem))
    layers = _layer_list(ms["layers"])
    names = [n for n, _ in layers]
    written = []
    with atomic_output(out_path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["epoch"] = int(ms.get("epoch", 0))
            f.attrs["batchnum"] = int(ms.get("batchnum", 0))
            f.attrs["source_checkpoint"] = os.path.abspath(source)
            f.attrs["dialect"] = "alexnet" if isinstance(ms["layers"], dict) else "cuda-convnet"
            for name, l in layers:
                if "weights" not in l:
                    continue
                g = f.create_group(name)
                ws = l["weights"] if isinstance(l["weights"], list) else [l["weights"]]
                incs = l.get("weightsInc", [])
                incs = incs if isinstance(incs, list) else [incs]
                for i, w in enumerate(ws):
                    g.create_dataset("weights_%d" % i, data=np.asarray(w))
                for i, w in enumerate(incs):
                    g.create_dataset("weightsInc_%d" % i, data=np.asarray(w))
                for key in ("biases", "biasesInc"):
                    if key in l:
                        g.create_dataset(key, data=np.asarray(l[key]))
                g.attrs["type"] = l["type"]
                inputs = l.get("inputs", [])
                g.attrs["inputs"] = [names[i] if isinstance(i, (int, np.integer)) and 0 <= i < len(names) else str(i)
                                     for i in inputs]
                if l.get("neuron"):
                    g.attrs["neuron"] = _neuron_str(l["neuron"])
                for k in sorted(l):
                    if k in _SKIP:
                        continue
                    v = _attr_value(l[k])
                    if v is not None:
                        g.attrs[k] = v
                written.append(name)
            f.attrs["layers"] = written if written else np.zeros(0, dtype="S1")
    return written


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m cudaconvnet.export",
                                 description="Write a checkpoint's weights to HDF5, one group per layer.")
    ap.add_argument("checkpoint", help="a checkpoint file <epoch>.<batch>, or its folder (the newest is used)")
    ap.add_argument("out", help="the HDF5 file to write")
    args = ap.parse_args(argv)
    try:
        import h5py  # noqa: F401
    except ImportError:
        raise StopTraining("the HDF5 export needs h5py (pip install h5py)")
    try:
        written = export_checkpoint(args.checkpoint, args.out)
    except UnpickleError as e:
        raise StopTraining("Error loading checkpoint: %s" % e)
    except OSError as e:
        raise StopTraining("cannot write '%s': %s" % (args.out, e.strerror or e))
    print("Wrote %d layers (%s) to %s" % (len(written), ", ".join(written), args.out))
    return 0


if __name__ == "__main__":
    run_main(main)
