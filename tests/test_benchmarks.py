"""The benchmarks' own code paths that need no GPU (benchmarks/ measures speed; nothing here
times anything): gpu_step.py's parse of the AlexNet net into the conv passes it times, and
torch_peer.py's PyTorch net built and stepped on a device other than the CPU (PyTorch's
"meta" device: shapes without data), as cpu_step.py builds it and as gpu_step.py runs it on
the GPU. The second needs PyTorch, a dependency of the benchmarks alone, and skips without
it."""
import subprocess
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))


def test_gpu_step_dry_run_lists_the_alexnet_conv_passes():
    r = subprocess.run([sys.executable, "benchmarks/gpu_step.py", "--dry-run"], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines()[2:]}
    # conv1 as the paper has it (both towers): 224x224x3 -> 55x55, 11x11 filters, stride 4;
    # conv3 takes both towers' conv2 outputs: two inputs per tower
    assert sorted(rows) == ["conv1a", "conv1b", "conv2a", "conv2b", "conv3a[0]", "conv3a[1]", "conv3b[0]", "conv3b[1]",
                            "conv4a", "conv4b", "conv5a", "conv5b"]
    assert rows["conv1a"][2:9] == ["3", "48", "11", "0", "4", "224", "55"]
    assert rows["conv3a[1]"][2:4] == ["128", "192"] and rows["conv5b"][7] == "13"


@pytest.mark.parametrize("net", ["18pct", "alexnet"])
def test_torch_peer_keeps_every_tensor_on_its_device(net):
    torch = pytest.importorskip("torch")
    import cpu_step
    from torch_peer import build_torch, torch_inputs, torch_step
    spec = cpu_step.net_spec(cpu_step.parse_args([]), net)
    model, opt = build_torch(cpu_step.parse_net(spec), device="meta")
    x, y = cpu_step.make_data(dict(spec, batch=4))
    loss = torch_step(model, opt, torch_inputs(model, x, y, device="meta"))   # a CPU tensor in the way fails here
    assert loss.device.type == "meta" and loss.shape == torch.Size([])
    assert {p.device.type for p in model.parameters()} == {"meta"} and len(opt.param_groups) > 0


def test_gpu_step_peer_step_keeps_every_tensor_on_its_device():
    """gpu_step.py's PyTorch training step, as it times it on the GPU, on the meta device."""
    torch = pytest.importorskip("torch")
    import gpu_step
    layers, _ = gpu_step.parse(gpu_step.DEFAULT_LAYERS, gpu_step.DEFAULT_PARAMS)
    loss = gpu_step.torch_training_step(layers, 4, "meta")()
    assert loss.device.type == "meta" and loss.shape == torch.Size([])
