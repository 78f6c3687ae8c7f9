"""The whole CUDA engine on the CPU: training steps of the digits net (layers_cfg/
layers-digits.cfg: conv with partial sums, max pooling, fc, softmax, logreg) with the CUDA
backend, its kernels run by the emulation of tests/cuda_emulation.py, against the NumPy
engine from the same weights and data.

The kernels are checked one operation at a time elsewhere (test_cuda_conv.py,
test_cuda_conv_gemm.py, test_cuda_util_emulated.py); this checks what those cannot: that
the layers call the CUDA backend's operations with the arguments, shapes and scales the
NumPy engine gets, in the same order, through a forward pass, a backward pass and a weight
update, for the 2012 conv kernels and the implicit ones, with registers and with the
asynchronous copies' pipeline (gemm and winograd reach the same layer code through the same
dispatch, and emulate the products slowly). The GPU runs the same check on the 18pct net
for every choice (test_cuda_ops.py).

Digits: the first 32 scans of scikit-learn's set, minus their mean, as the demo feeds them.
"""
import copy
from types import SimpleNamespace

import numpy as np
import pytest
from cuda_emulation import emulate_backend, make_emulator
from test_cuda_conv_gemm import KERNELS_2012
from cuda_op_checks import assert_close
from test_cuda_ops import ENGINE, _cfg, _parse, _weights, check_18pct_steps, reference_18pct

from cudaconvnet.backends import get_backend
from cudaconvnet.engine.layers import ConvLayer

STEPS = 3
MINIBATCH = 32


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    return make_emulator(tmp_path_factory.mktemp("engine_emulation"))


def _digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    x = d.data[:MINIBATCH].T.astype(np.float32)
    return [x - x.mean(axis=1, keepdims=True), d.target[:MINIBATCH].reshape(1, -1).astype(np.float32)]


@pytest.mark.slow
@pytest.mark.parametrize("conv_kernels", ["2012", "implicit", "implicit-async"])
def test_digits_steps_match_numpy(emulator, monkeypatch, conv_kernels):
    from cudaconvnet.backends.cuda import conv_implicit
    from cudaconvnet.engine.net import ConvNet
    be = emulate_backend(monkeypatch, emulator)
    conv_kernels, _, copies = conv_kernels.partition("-")
    monkeypatch.setattr(conv_implicit, "_async", copies == "async")
    be.set_conv_kernels(conv_kernels)
    start = len(emulator.launches)
    try:
        layers = _parse(_cfg("layers-digits.cfg"), _cfg("layer-params-digits.cfg"), (64, 1), 10)
        data = _digits()
        nets = {name: ConvNet(copy.deepcopy(layers), MINIBATCH, b, seed=1, out=lambda s: None)
                for name, b in (("numpy", get_backend("numpy")), ("cuda", be))}
        before = _weights(nets["numpy"])
        # the digits net's convs have partialSum 4: two steps only with the 2012 kernels
        convs = [lay for lay in nets["cuda"].layers if lay.dic["type"] == "conv"]
        assert len(convs) == 2 and all(lay.twoStepWeightGrad(0) == (conv_kernels == "2012") for lay in convs)
        for step in range(STEPS):
            costs = {name: net.train_batch(data).as_2012()[0] for name, net in nets.items()}
            (logprob, errors), = costs["numpy"].values()
            assert costs["cuda"].keys() == costs["numpy"].keys()
            np.testing.assert_allclose(costs["cuda"]["logprob"][0], logprob, rtol=ENGINE, err_msg="step %d" % step)
            assert costs["cuda"]["logprob"][1] == errors, step
        wn, wc = _weights(nets["numpy"]), _weights(nets["cuda"])
        assert wn.keys() == wc.keys() and len(wn) == 8
        for k in wn:
            assert not np.array_equal(wn[k], before[k]), "%s did not learn" % k
            assert_close(wc[k], wn[k], ENGINE, k)
        launched = {k for _, k, _ in emulator.launches[start:]}
        implicit = {"kImplicitFilterActs", "kImplicitImgActs", "kImplicitWeightActs"}
        if conv_kernels == "implicit":
            assert implicit <= launched and not launched & set(KERNELS_2012)
        else:
            assert {"filterActs_YxX_color", "conv_weight_acts_c"} <= launched and not launched & implicit
    finally:
        be.set_conv_kernels("2012")


def test_two_step_weight_gradient_only_where_the_2012_kernels_run():
    """partialSum > 0 splits the filter gradient in two steps with the 2012 kernels (the
    NumPy backend has only those; sparse inputs always run them), not with the others."""
    def two_step(be, partialSum, sparse):
        return ConvLayer.twoStepWeightGrad(SimpleNamespace(be=be, partialSum=partialSum, randSparse=[sparse]), 0)
    cuda = {k: SimpleNamespace(conv_kernels=lambda k=k: k) for k in ("2012", "gemm", "implicit")}
    assert two_step(get_backend("numpy"), 4, False) and two_step(cuda["2012"], 4, False)
    assert not two_step(cuda["gemm"], 4, False) and not two_step(cuda["implicit"], 4, False)
    assert two_step(cuda["implicit"], 4, True)
    assert not any(two_step(b, 0, s) for b in list(cuda.values()) + [get_backend("numpy")] for s in (False, True))


@pytest.mark.slow
def test_18pct_bound_takes_float32_noise_and_catches_a_wrong_update():
    """The bound of test_cuda_ops.py's ten-step test on the GPU (check_18pct_steps), tried
    with the NumPy engine in the GPU's place: an engine whose rounding moves the input ten
    times more than an ulp passes; one whose conv2 learning rate is 2% off (a wrong update
    2e-4 of conv2's weights) fails."""
    layers, data, costs, updates, floor = reference_18pct()
    rng = np.random.default_rng(5)
    noisy = (data[0] * (1 + 1e-6 * rng.standard_normal(data[0].shape))).astype(np.float32)
    check_18pct_steps(get_backend("numpy"), (layers, [noisy, data[1]], costs, updates, floor))
    wrong = copy.deepcopy(layers)
    conv2, = [lay for lay in wrong if lay["name"] == "conv2"]
    conv2["epsW"] = [e * 1.02 for e in conv2["epsW"]]
    with pytest.raises(AssertionError, match="conv2.w0 update"):
        check_18pct_steps(get_backend("numpy"), (wrong, data, costs, updates, floor))
