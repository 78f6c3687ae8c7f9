"""The parser against the ORIGINAL 2012 parser's own output (../shared/golden/config).

Each golden file is what the unmodified 2012 layer.py returned under Python 2.7 for one
(layers.cfg, layer-params.cfg) pair; arrays are compared by shape, dtype, order, mean and
std, everything else exactly and with exact Python types (an int is not a float).
"""
import json
import math
import sys

import pytest

from conftest import SHARED
from cudaconvnet import layer

GOLDEN = sorted((SHARED / "golden" / "config").glob("*/*.json")) if SHARED.exists() else []

# The mean/std of the weights are float64 sums: allow last-bit differences only.
STAT_REL_TOL = 1e-9


def compare(ours, gold, path="layers"):
    """A list of differences between our JSON-able value and the golden one."""
    if isinstance(gold, dict) and {"shape", "dtype", "mean", "std", "order"} <= set(gold):
        if not isinstance(ours, dict):
            return ["%s: expected an array, got %r" % (path, ours)]
        errs = ["%s.%s: %r != %r" % (path, k, ours.get(k), gold[k])
                for k in ("shape", "dtype", "order") if ours.get(k) != gold[k]]
        errs += ["%s.%s: %r != %r" % (path, k, ours[k], gold[k]) for k in ("mean", "std")
                 if not math.isclose(ours[k], gold[k], rel_tol=STAT_REL_TOL, abs_tol=1e-15)]
        if "values" in gold:
            flat = lambda v: [x for row in v for x in row]
            mine, theirs = flat(ours.get("values", [])), flat(gold["values"])
            if len(mine) != len(theirs) or not all(math.isclose(a, b, rel_tol=1e-7) for a, b in zip(mine, theirs)):
                errs.append("%s.values differ" % path)
        return errs
    if type(ours) is not type(gold):
        return ["%s: %s %r != %s %r" % (path, type(ours).__name__, ours, type(gold).__name__, gold)]
    if isinstance(gold, dict):
        errs = [] if set(ours) == set(gold) else ["%s: keys differ: extra %s, missing %s"
                                                  % (path, sorted(set(ours) - set(gold)), sorted(set(gold) - set(ours)))]
        return errs + [e for k in gold if k in ours for e in compare(ours[k], gold[k], "%s.%s" % (path, k))]
    if isinstance(gold, list):
        if len(ours) != len(gold):
            return ["%s: length %d != %d" % (path, len(ours), len(gold))]
        return [e for i, (a, b) in enumerate(zip(ours, gold)) for e in compare(a, b, "%s[%d]" % (path, i))]
    return [] if ours == gold else ["%s: %r != %r" % (path, ours, gold)]


@pytest.fixture
def initw_stub(tmp_path, monkeypatch):
    """The golden files stubbed Alex's initw module (it loads an unavailable checkpoint):
    zeros for weights and biases, identity channel permutations."""
    (tmp_path / "initw.py").write_text(
        "import numpy as n\n"
        "def makew(name, idx, shapes, params): return n.zeros(shapes, dtype=n.float32)\n"
        "def makeb(name, shapes, params): return n.zeros(shapes, dtype=n.float32)\n"
        "def makec(name, idx, shapes, params):\n"
        "    groups, channels, filter_channels = shapes\n"
        "    return list(range(channels)) * (groups * filter_channels // channels)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "initw", raising=False)


def run_dump(golden, capsys):
    g = json.loads(golden.read_text())
    folder = golden.parent.name
    ref = SHARED / "reference" / folder
    m = g["model"]
    dims = [m["get_data_dims"][k] for k in sorted(m["get_data_dims"], key=int)]
    argv = ["--layer-def", str(ref / g["layer_def"]), "--layer-params", str(ref / g["layer_params"]),
            "--dialect", "alexnet" if folder == "alexnet-2012" else "cuda-convnet",
            "--data-dims", ",".join(map(str, dims)), "--num-classes", str(m["num_classes"]),
            "--num-gpus", str(m["op"]["num_gpus"]), "--conserve-mem", str(m["op"]["conserve_mem"]), "--seed", "0"]
    rc = layer.main(argv)
    out, err = capsys.readouterr()
    return g, rc, out, err


@pytest.mark.skipif(not GOLDEN, reason="../shared/golden/config is not beside this checkout")
@pytest.mark.parametrize("golden", GOLDEN, ids=lambda p: "%s/%s" % (p.parent.name, p.stem))
def test_matches_original_parser(golden, capsys, initw_stub):
    g, rc, out, err = run_dump(golden, capsys)
    if "error" in g:
        assert rc == 1, "expected a config error like the original's: %s" % g["error"]
        assert "Traceback" not in err
        last = err.strip().splitlines()[-1]
        if g["error_kind"] == "config":
            # The original printed the message as the last line of its log.
            assert last.startswith(g["log"][-1]), last
        return
    assert rc == 0, err
    ours = json.loads(out)
    diffs = compare(ours["layers"], g["layers"])
    assert not diffs, "\n".join(diffs[:20])
    assert ours["log"] == g["log"]
