"""The NumPy reference kernels against the ORIGINAL 2012 cuda-convnet kernels.

Each case of ../shared/golden/kernels/manifest.json (outputs of the 2012 kernels run on an
H100, called through their public wrappers) is one test: every output, including the
activations the norm undos overwrite (acts_after), must match to float32 rounding.
Skips cleanly when ../shared is absent (a fresh clone has none).
"""

import json
from pathlib import Path

import numpy as np
import pytest

from cudaconvnet.backends.numpy import conv_util, filter_acts, img_acts, layer_kernels
from cudaconvnet.backends.numpy import weight_acts

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden" / "kernels"
MANIFEST = GOLDEN / "manifest.json"

# max|ours - golden| <= REL_TOL * max|golden|, per output. The golden side uses __powf,
# __logf, __fdividef and its own summation order, so bit equality is not expected.
REL_TOL = 1e-5


def _cases():
    if not MANIFEST.exists():
        return []
    return json.loads(MANIFEST.read_text())["cases"]


CASES = _cases()


def _load(spec):
    return np.fromfile(GOLDEN / spec["file"], dtype="<f4").reshape(spec["shape"]).copy()


def _garbage(shape):
    """A target the kernel must not read (scaleTargets == 0)."""
    return np.full(shape, np.nan, dtype=np.float32)


def _target(case, inputs, name="targets"):
    if "targets_init" in inputs:
        return inputs["targets_init"].copy()
    return _garbage(case["outputs"][name]["shape"])


def _run(case):
    """Call our kernel the way the manifest's `call` says; return {output name: array}."""
    k, a = case["kernel"], case["args"]
    i = {name: _load(spec) for name, spec in case["inputs"].items()}
    if k in ("convFilterActs", "localFilterActs"):
        t = _target(case, i)
        getattr(filter_acts, k)(i["images"], i["filters"], t, a["imgSizeY"], a["numModulesY"],
                                a["numModulesX"], a["paddingStart"], a["moduleStride"],
                                a["numImgColors"], a["numGroups"], a["scaleTargets"],
                                a["scaleOutput"])
        return {"targets": t}
    if k in ("convImgActs", "localImgActs"):
        t = _target(case, i)
        getattr(img_acts, k)(i["hidActs"], i["filters"], t, a["imgSizeY"], a["imgSizeX"],
                             a["numModulesY"], a["paddingStart"], a["moduleStride"],
                             a["numImgColors"], a["numGroups"], a["scaleTargets"],
                             a["scaleOutput"])
        return {"targets": t}
    if k == "convWeightActs":
        t = _target(case, i)
        weight_acts.convWeightActs(i["images"], i["hidActs"], t, a["imgSizeY"], a["numModulesY"],
                                   a["numModulesX"], a["filterSize"], a["paddingStart"],
                                   a["moduleStride"], a["numImgColors"], a["numGroups"],
                                   a["partialSum"], a["scaleTargets"], a["scaleOutput"])
        return {"targets": t}
    if k == "localWeightActs":
        t = _target(case, i)
        weight_acts.localWeightActs(i["images"], i["hidActs"], t, a["imgSizeY"],
                                    a["numModulesY"], a["numModulesX"], a["filterSize"],
                                    a["paddingStart"], a["moduleStride"], a["numImgColors"],
                                    a["numGroups"], a["scaleTargets"], a["scaleOutput"])
        return {"targets": t}
    if k == "convLocalPool":
        t = _garbage(case["outputs"]["target"]["shape"])
        conv_util.convLocalPool(i["images"], t, a["numFilters"], a["subsX"], a["startX"],
                                a["strideX"], a["outputsX"], a["pooler"])
        return {"target": t}
    if k == "convLocalMaxUndo":
        t = _garbage(case["outputs"]["target"]["shape"])
        conv_util.convLocalMaxUndo(i["images"], i["maxGrads"], i["maxActs"], t, a["subsX"],
                                   a["startX"], a["strideX"], a["outputsX"], a["scaleTargets"],
                                   a["scaleOutput"])
        return {"target": t}
    if k == "convLocalAvgUndo":
        t = _garbage(case["outputs"]["target"]["shape"])
        conv_util.convLocalAvgUndo(i["avgGrads"], t, a["subsX"], a["startX"], a["strideX"],
                                   a["outputsX"], a["imgSize"], a["scaleTargets"],
                                   a["scaleOutput"])
        return {"target": t}
    if k == "contrastNormMeanDiffs":
        # ContrastNormLayer::fpropActs: local mean by an avg pool of stride 1, then
        # meanDiffs = images - mean
        md = _garbage(case["outputs"]["meanDiffs"]["shape"])
        conv_util.convLocalPool(i["images"], md, a["numFilters"], a["size"], -(a["size"] // 2),
                                1, a["imgSize"], "avg")
        np.subtract(i["images"], md, out=md)
        return {"meanDiffs": md}
    if k in ("convResponseNorm", "convContrastNorm", "convResponseNormCrossMap"):
        shape = case["outputs"]["target"]["shape"]
        d, t = _garbage(shape), _garbage(shape)
        if k == "convResponseNorm":
            conv_util.convResponseNorm(i["images"], d, t, a["numFilters"], a["sizeX"],
                                       a["addScale"], a["powScale"])
        elif k == "convContrastNorm":
            conv_util.convContrastNorm(i["images"], i["meanDiffs"], d, t, a["numFilters"],
                                       a["sizeX"], a["addScale"], a["powScale"])
        else:
            conv_util.convResponseNormCrossMap(i["images"], d, t, a["numFilters"], a["sizeF"],
                                               a["addScale"], a["powScale"], bool(a["blocked"]))
        return {"denoms": d, "target": t}
    if k in ("convResponseNormUndo", "convContrastNormUndo", "convResponseNormCrossMapUndo"):
        t = _garbage(case["outputs"]["target"]["shape"])
        acts = i["acts"]
        if k == "convResponseNormUndo":
            conv_util.convResponseNormUndo(i["outGrads"], i["denoms"], i["inputs"], acts, t,
                                           a["numFilters"], a["sizeX"], a["addScale"],
                                           a["powScale"], a["scaleTargets"], a["scaleOutput"])
        elif k == "convContrastNormUndo":
            conv_util.convContrastNormUndo(i["outGrads"], i["denoms"], i["meanDiffs"], acts, t,
                                           a["numFilters"], a["sizeX"], a["addScale"],
                                           a["powScale"], a["scaleTargets"], a["scaleOutput"])
        else:
            conv_util.convResponseNormCrossMapUndo(i["outGrads"], i["denoms"], i["inputs"],
                                                   acts, t, a["numFilters"], a["sizeF"],
                                                   a["addScale"], a["powScale"],
                                                   bool(a["blocked"]), a["scaleTargets"],
                                                   a["scaleOutput"])
        return {"target": t, "acts_after": acts}
    if k == "computeLogregCost":
        n = i["probs"].shape[1]
        llp, cp = _garbage((1, n)), _garbage((1, n))
        layer_kernels.computeLogregCost(i["labels"], i["probs"], llp, cp)
        return {"labelLogProbs_out": llp, "correctProbs_out": cp}
    if k == "computeLogregSoftmaxGrad":
        t = _garbage(case["outputs"]["target"]["shape"])
        layer_kernels.computeLogregSoftmaxGrad(i["labels"], i["probs"], t, bool(a["add"]),
                                               a["coeff"])
        return {"target": t}
    if k == "computeSoftmaxGrad":
        t = _garbage(case["outputs"]["target"]["shape"])
        layer_kernels.computeSoftmaxGrad(i["acts"], i["actsGrad"], t, bool(a["add"]))
        return {"target": t}
    raise AssertionError("no runner for kernel %r (case %s)" % (k, case["name"]))


def test_manifest_present():
    if not MANIFEST.exists():
        pytest.skip("no ../shared/golden/kernels (a fresh clone has none)")
    assert len(CASES) >= 36


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden(case):
    ours = _run(case)
    assert set(ours) == set(case["outputs"]), "outputs differ from the manifest's"
    for name, spec in case["outputs"].items():
        gold = _load(spec)
        got = ours[name]
        assert got.shape == gold.shape, name
        assert np.all(np.isfinite(got)), "%s: non-finite values" % name
        scale = float(np.abs(gold).max())
        err = float(np.abs(got.astype(np.float64) - gold).max())
        assert err <= REL_TOL * scale, "%s.%s: max|err| %.3g > %g * max|golden| %.3g" % (
            case["name"], name, err, REL_TOL, scale)
