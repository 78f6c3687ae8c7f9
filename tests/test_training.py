"""The 2012 training loop end to end: gpumodel.py, convnet.py, demo.py, export.py.

Resuming is bit for bit, checkpoints survive SIGKILL, hostile pickles run nothing, the
printout is the 2012 one line for line, the options behave as in 2012, --check-grads,
the multiview test, the demo learns, and the HDF5 export. All on the NumPy engine with
tiny nets on tiny synthetic batches (the 'cifar' layout) written into tmp_path.

The 2012 loop trains the first batch of epoch num_epochs + 1 before it stops (it tests the
epoch of the batch it has just trained); that batch is trained, and saved only when
--test-freq falls on it. The tests count on it: a run with --epochs=1 over two training batches trains
1.1, 1.2, 2.1 and leaves checkpoint 1.2; resumed with --epochs=2 it trains 2.1 again, 2.2
(checkpoint) and 3.1.
"""
import contextlib
import io
import os
import pickle as std_pickle
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

from cudaconvnet import convnet
from cudaconvnet.gpumodel import CHECKPOINT_RE, IGPUModel, StopTraining, run_main
from cudaconvnet.util import UnpickleError, pickle, unpickle

load = IGPUModel.load_checkpoint  # a checkpoint file or folder (unpickle: other files)

REPO = Path(__file__).resolve().parents[1]
NUMPY = "--backend=numpy"
TMP_RE = re.compile(r"^\.\d+\.\d+\.tmp-")  # util.pickle's temporary file for <epoch>.<batch>


# ---------------------------------------------------------------------------------------
# Batches, nets, running
# ---------------------------------------------------------------------------------------

def write_batches(dst, num_batches=4, cases=40, size=8, colors=3, classes=4, seed=0, noise=90.0):
    """data_batch_1..num_batches in the cuda-convnet layout ((colors*size*size, cases)
    float32 pixels 0-255, labels a list) and batches.meta; each class is a random
    prototype image plus noise, so that a tiny net learns something in a few batches."""
    rs = np.random.RandomState(seed)
    dims = colors * size * size
    protos = rs.uniform(0, 255, (classes, dims))
    os.makedirs(dst, exist_ok=True)
    datas = []
    for b in range(1, num_batches + 1):
        labels = rs.randint(0, classes, cases)
        x = np.clip(protos[labels] + rs.normal(0, noise, (cases, dims)), 0, 255).astype(np.float32)
        datas.append(np.ascontiguousarray(x.T))
        pickle(os.path.join(dst, "data_batch_%d" % b), {"data": datas[-1], "labels": [int(l) for l in labels]})
    pickle(os.path.join(dst, "batches.meta"),
           {"data_mean": np.concatenate(datas, axis=1).mean(axis=1, keepdims=True).astype(np.float32),
            "num_vis": dims, "num_colors": colors, "label_names": [str(c) for c in range(classes)]})
    return str(dst)


def section(name, **kv):
    return "[%s]\n" % name + "".join("%s=%s\n" % (k, v) for k, v in kv.items())


LEARN = dict(epsW=0.001, epsB=0.002, momW=0.9, momB=0.9, wc=0.0005)
DATA = section("data", type="data", dataIdx=0) + section("labels", type="data", dataIdx=1)

# cuda-convnet dialect: conv, max-pool, fc, softmax, logreg
CONV_NET = (DATA
            + section("conv1", type="conv", inputs="data", channels=3, filters=16, padding=1, stride=1,
                      filterSize=3, initW=0.001, partialSum=1, sharedBiases=1, neuron="relu")
            + section("pool1", type="pool", pool="max", inputs="conv1", start=0, sizeX=2, stride=2, outputsX=0,
                      channels=16)
            + section("fc4", type="fc", inputs="pool1", outputs=4, initW=0.01)
            + section("probs", type="softmax", inputs="fc4")
            + section("logprob", type="cost.logreg", inputs="labels,probs"))
CONV_PARAMS = section("conv1", **LEARN) + section("fc4", **LEARN) + section("logprob", coeff=1)

# the AlexNet code's dialect: fc, hs (dropout), fc, softmax, logreg with top-2 error; the
# layers after the data layers say which GPU they run on, as the 2012 configs did
HS_NET = (DATA
          + section("fc32", type="fc", inputs="data", outputs=32, initW=0.001, neuron="relu", gpu=0)
          + section("drop", type="hs", inputs="fc32", keep=0.5)
          + section("fc4", type="fc", inputs="drop", outputs=4, initW=0.01)
          + section("probs", type="softmax", inputs="fc4")
          + section("logprob", type="cost.logreg", inputs="labels,probs", gpu=0))
# fc32's learning rate carries the AlexNet code's noise: epsW * (1 + |N(0,1)| * 0.5) at
# each update (tgtFactor=1: no decay, so the rate does not depend on --epochs)
HS_PARAMS = (section("fc32", schedW="linear[tgtFactor=1,noiseStdev=0.5]", **LEARN) + section("drop", enable=1)
             + section("fc4", **LEARN) + section("logprob", coeff=1, topk=2))
NETS = {"conv": (CONV_NET, CONV_PARAMS), "hs": (HS_NET, HS_PARAMS)}  # one of each dialect


def write_net(tmp_path, name, defs, params):
    d, p = tmp_path / ("layers-%s.cfg" % name), tmp_path / ("layer-params-%s.cfg" % name)
    d.write_text(defs)
    p.write_text(params)
    return str(d), str(p)


def train(*argv):
    """Runs `python -m cudaconvnet.convnet ARGV` in this process: (exit status, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            status = convnet.main([a for a in argv if a is not None])
        except StopTraining as e:
            status = e.status
            if e.message:
                print(e.message)
    return status, out.getvalue()


def child_env():
    # one BLAS thread: these matrices are tiny, and threads only wait for each other
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def cli(*args, module="cudaconvnet.convnet", cwd=None, timeout=120):
    """The same in a child process, for exit statuses, stderr and signals."""
    return subprocess.run([sys.executable, "-m", module] + list(args), cwd=cwd, env=child_env(),
                          capture_output=True, text=True, timeout=timeout)


def base_args(data, save, layer_def, layer_params, epochs, test_freq=2, train_range="1-2", test_range="3",
              provider="cifar", seed=3):
    return ["--data-path=%s" % data, "--save-path=%s" % save, "--data-provider=%s" % provider,
            "--train-range=%s" % train_range, "--test-range=%s" % test_range, "--test-freq=%d" % test_freq,
            "--layer-def=%s" % layer_def, "--layer-params=%s" % layer_params, "--epochs=%d" % epochs,
            "--mini=16", NUMPY, "--seed=%d" % seed]


def ckpt_dir(save):
    dirs = [d for d in os.listdir(save) if d.startswith("ConvNet__")]
    assert len(dirs) == 1, dirs
    return os.path.join(save, dirs[0])


def checkpoints(folder):
    return sorted((f for f in os.listdir(folder) if CHECKPOINT_RE.match(f)),
                  key=lambda f: tuple(int(x) for x in f.split(".")))


def layer_dicts(ms):
    layers = ms["layers"]
    return [layers[k] for k in sorted(layers)] if isinstance(layers, dict) else list(layers)


def assert_same_model(a, b):
    """Two checkpoints' model states agree bit for bit."""
    ma, mb = a["model_state"], b["model_state"]
    assert (ma["epoch"], ma["batchnum"]) == (mb["epoch"], mb["batchnum"])
    assert ma["train_outputs"] == mb["train_outputs"]
    assert ma["test_outputs"] == mb["test_outputs"]
    la, lb = layer_dicts(ma), layer_dicts(mb)
    assert [l["name"] for l in la] == [l["name"] for l in lb]
    compared = 0
    for x, y in zip(la, lb):
        for key in ("weights", "weightsInc"):
            for i, (p, q) in enumerate(zip(x.get(key, []), y.get(key, []))):
                assert p.dtype == q.dtype == np.float32
                assert np.array_equal(p, q), "layer '%s' %s[%d] differs by up to %g" % (
                    x["name"], key, i, np.abs(p - q).max())
                compared += 1
        for key in ("biases", "biasesInc"):
            if key in x:
                assert np.array_equal(x[key], y[key]), "layer '%s' %s differ" % (x["name"], key)
                compared += 1
    assert compared >= 8


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """The in-process runs with one BLAS thread, as the child processes (child_env)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def data8(tmp_path_factory):
    return write_batches(tmp_path_factory.mktemp("data8"), size=8)


@pytest.fixture(scope="module")
def data12(tmp_path_factory):
    """12x12 images for the cropped provider (--crop-border=2: 8x8 crops)."""
    return write_batches(tmp_path_factory.mktemp("data12"), size=12, seed=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data8):
    """One short run of the conv net: its folder, output and files, shared by several tests
    that only read them (each copies what it changes)."""
    tmp = tmp_path_factory.mktemp("trained")
    ldef, lpar = write_net(tmp, "conv", CONV_NET, CONV_PARAMS)
    status, out = train(*base_args(data8, str(tmp / "save"), ldef, lpar, epochs=2))
    assert status == 0, out[-2000:]
    return {"dir": ckpt_dir(str(tmp / "save")), "out": out, "def": ldef, "params": lpar, "data": data8,
            "tmp": tmp}


# ---------------------------------------------------------------------------------------
# 1. Resume: 2 batches + resume + 2 batches == 4 batches, bit for bit
# ---------------------------------------------------------------------------------------

RESUME_CASES = {
    # name: (net, params, provider, extra options, the random states that matter)
    "conv-cifar": (CONV_NET, CONV_PARAMS, "cifar", [], []),
    # dropout masks (the engine's generator) and learning-rate noise (the schedules' one)
    "hs-dropout-alexnet": (HS_NET, HS_PARAMS, "cifar", [], ["engine_rng", "engine_lr_rng"]),
    # random crops and flips, drawn by the provider in a background thread one batch ahead
    "conv-cifar-cropped": (CONV_NET, CONV_PARAMS, "cifar-cropped", ["--crop-border=2"], ["dp_rng"]),
}


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_resume_is_bit_for_bit(tmp_path, data8, data12, case):
    net, params, provider, extra, rng_keys = RESUME_CASES[case]
    data = data12 if provider == "cifar-cropped" else data8
    ldef, lpar = write_net(tmp_path, "net", net, params)

    def args(save, epochs):
        return base_args(data, str(tmp_path / save), ldef, lpar, epochs, provider=provider) + extra

    # A: straight through epochs 1-2 (trains 1.1 1.2 2.1 2.2, then 3.1 unsaved)
    status, out = train(*args("A", 2))
    assert status == 0, out[-2000:]
    # B: epoch 1 (trains 1.1 1.2 [saved] and 2.1 [not saved]), then resume for epoch 2
    status, out = train(*args("B", 1))
    assert status == 0, out[-2000:]
    b_dir = ckpt_dir(str(tmp_path / "B"))
    assert checkpoints(b_dir) == ["1.2"]
    first = load(os.path.join(b_dir, "1.2"))
    for key in rng_keys:
        assert key in first["model_state"]
    status, out = train("-f", b_dir, "--epochs=2")
    assert status == 0, out[-2000:]
    assert "\n2.1... " in out and "\n2.2... " in out and "\n3.1... " in out and "\n1." not in out

    a = load(os.path.join(ckpt_dir(str(tmp_path / "A")), "2.2"))
    b = load(os.path.join(b_dir, "2.2"))
    assert len(a["model_state"]["train_outputs"]) == 4
    assert_same_model(a, b)

    for key in rng_keys:
        # The same resume without that random state is not identical: the test above would
        # catch a checkpoint that forgot it.
        c_dir = str(tmp_path / ("C-" + key) / "ConvNet__copy")
        os.makedirs(c_dir)
        pickle(os.path.join(c_dir, "1.2"), without_key(first, key))
        status, out = train("-f", c_dir, "--epochs=2")
        assert status == 0, out[-2000:]
        with pytest.raises(AssertionError):
            assert_same_model(a, load(os.path.join(c_dir, "2.2")))


def without_key(checkpoint, key):
    """A copy of a checkpoint dict whose model_state lacks key."""
    import copy
    checkpoint = copy.deepcopy(checkpoint)
    del checkpoint["model_state"][key]
    return checkpoint


def test_resume_with_test_freq_1_and_the_quirk_batch_saved(tmp_path, data8):
    """With --test-freq=1 the extra batch of the 2012 loop (2.1 after --epochs=1) is saved
    too; resuming from it still gives what an uninterrupted run gives."""
    ldef, lpar = write_net(tmp_path, "hs", HS_NET, HS_PARAMS)
    status, out = train(*base_args(data8, str(tmp_path / "A"), ldef, lpar, epochs=2, test_freq=1))
    assert status == 0, out[-2000:]
    status, out = train(*base_args(data8, str(tmp_path / "B"), ldef, lpar, epochs=1, test_freq=1))
    assert status == 0, out[-2000:]
    b_dir = ckpt_dir(str(tmp_path / "B"))
    assert checkpoints(b_dir) == ["2.1"]
    status, out = train("-f", b_dir, "--epochs=2")
    assert status == 0, out[-2000:]
    assert checkpoints(b_dir) == ["3.1"]  # 2.2, then the extra batch 3.1, each saved
    assert_same_model(load(os.path.join(ckpt_dir(str(tmp_path / "A")), "3.1")),
                      load(os.path.join(b_dir, "3.1")))


def test_resume_from_a_file_inside_the_folder_saves_there(tmp_path, trained):
    """`-f 2.2` run inside the checkpoint folder keeps saving into that folder."""
    folder = str(tmp_path / "ConvNet__x")
    os.makedirs(folder)
    pickle(os.path.join(folder, "2.2"), load(os.path.join(trained["dir"], "2.2")))
    proc = cli("-f", "2.2", "--epochs=3", cwd=folder)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert checkpoints(folder) == ["3.2"]  # --max-filesize=0: only the newest
    assert "Saved checkpoint to %s\n" % folder in proc.stdout
    assert sorted(os.listdir(tmp_path)) == ["ConvNet__x"]


# ---------------------------------------------------------------------------------------
# 2. SIGKILL at random moments loses nothing
# ---------------------------------------------------------------------------------------

# Big weights and small batches: most of the time goes into writing checkpoints (~6 MB).
BIG_NET = (DATA
           + section("fc2k", type="fc", inputs="data", outputs=4096, initW=0.001, neuron="relu")
           + section("fc4", type="fc", inputs="fc2k", outputs=4, initW=0.01)
           + section("probs", type="softmax", inputs="fc4")
           + section("logprob", type="cost.logreg", inputs="labels,probs"))
BIG_PARAMS = section("fc2k", **LEARN) + section("fc4", **LEARN) + section("logprob", coeff=1)


def test_sigkill_while_training_and_saving_loses_nothing(tmp_path):
    """A child trains with a checkpoint after every batch and is SIGKILLed 8 times: every
    other time as soon as a save's temporary file appears (mid-save), else at a random
    moment; it is resumed from its folder each time. After each kill the newest checkpoint
    loads, no checkpoint that was there before is lost, and no partial file is taken for a
    checkpoint."""
    data = write_batches(tmp_path / "data", num_batches=4, cases=8, seed=2)
    ldef, lpar = write_net(tmp_path, "big", BIG_NET, BIG_PARAMS)
    save = str(tmp_path / "save")
    first = base_args(data, save, ldef, lpar, epochs=1000, test_freq=1, train_range="1-3", test_range="4")
    rnd = random.Random(12345)
    newest, folder, partial_seen = None, None, 0
    for kill in range(8):
        child = subprocess.Popen([sys.executable, "-m", "cudaconvnet.convnet"] + (["-f", folder] if folder else first),
                                 env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        saved = threading.Event()

        def watch(stream=child.stdout, saved=saved):
            for line in stream:
                if line.startswith("Saved checkpoint to"):
                    saved.set()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            assert saved.wait(60), "the child never saved a checkpoint"
            folder = folder or ckpt_dir(save)
            if kill % 2 == 0:  # mid-save: as soon as the next temporary file is there
                deadline = time.time() + 30
                while not any(TMP_RE.match(n) for n in os.listdir(folder)) and time.time() < deadline:
                    pass
            else:
                time.sleep(rnd.uniform(0.0, 0.3))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(30)
            watcher.join(10)
        assert child.returncode == -signal.SIGKILL

        names = os.listdir(folder)
        partial_seen += any(TMP_RE.match(n) for n in names)
        # what a killed save leaves is never named like a checkpoint
        assert all(CHECKPOINT_RE.match(n) or TMP_RE.match(n) for n in names), names
        ckpts = checkpoints(folder)
        assert ckpts, names
        dic = IGPUModel.load_checkpoint(folder)
        ms = dic["model_state"]
        assert "%d.%d" % (ms["epoch"], ms["batchnum"]) == ckpts[-1]
        for name in ckpts:  # every file named like a checkpoint is a whole one
            load(os.path.join(folder, name))
        key = (ms["epoch"], ms["batchnum"])
        assert newest is None or key >= newest, "a checkpoint went missing: %s after %s" % (key, newest)
        newest = key
    assert partial_seen >= 1, "no kill landed in the middle of a save"

    # resuming from the last survivor runs to the end (the first batch of the next epoch,
    # tested and saved with --test-freq=1), and leaves no partial files behind
    epoch = newest[0] + 1
    proc = cli("-f", folder, "--epochs=%d" % epoch)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert checkpoints(folder) == ["%d.1" % (epoch + 1)]
    assert not [n for n in os.listdir(folder) if n.startswith(".")]


def test_partial_file_of_a_killed_save_is_ignored_and_cleaned(tmp_path, trained):
    """The temporary file util.pickle writes before renaming (what SIGKILL in mid-save
    leaves) is never taken for a checkpoint, and the next save removes it."""
    folder = str(tmp_path / "ConvNet__x")
    os.makedirs(folder)
    pickle(os.path.join(folder, "2.2"), load(os.path.join(trained["dir"], "2.2")))
    with open(os.path.join(trained["dir"], "2.2"), "rb") as f:
        whole = f.read()
    partial = os.path.join(folder, ".9.1.tmp-abc123")
    with open(partial, "wb") as f:
        f.write(whole[:len(whole) // 3])
    assert IGPUModel.checkpoint_file(folder) == os.path.join(folder, "2.2")
    status, out = train("-f", folder, "--epochs=3")
    assert status == 0, out[-2000:]
    assert sorted(os.listdir(folder)) == ["3.2"]


# ---------------------------------------------------------------------------------------
# 3. Hostile and damaged files
# ---------------------------------------------------------------------------------------

class _Call:
    """Pickles as a call of fn(*args) at load time: what an attacker's file would do."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def hostile_payloads(marker):
    import builtins
    return {
        "os.system": _Call(os.system, "touch %s" % marker),
        "builtins.exec": _Call(builtins.exec, "open(%r, 'w').close()" % str(marker)),
        "subprocess.call": _Call(subprocess.call, ["touch", str(marker)]),
    }


def assert_one_line_error(proc, *must_contain):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for s in must_contain:
        assert s in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("net, value", [("conv", "1"), ("conv", "0"), ("hs", "1")])
def test_multiview_test_requires_logreg_name_in_cuda_convnet(tmp_path, data8, net, value):
    """cuda-convnet's --multiview-test required --logreg-name, even given as 0 (its parser
    checked presence); the AlexNet code's did not."""
    ldef, lpar = write_net(tmp_path, net, *NETS[net])
    args = base_args(data8, str(tmp_path / "save"), ldef, lpar, epochs=1) + ["--multiview-test=%s" % value]
    proc = cli(*args)
    needs = ("Option --multiview-test (Cropped DP: test on multiple patches?) requires option --logreg-name "
             "(Cropped DP: logreg layer name (for --multiview-test))")
    if net == "conv":
        assert assert_one_line_error(proc) == needs
        assert cli(*args, "--logreg-name=logprob").stderr.strip() != needs
    else:
        assert needs not in proc.stderr + proc.stdout


@pytest.mark.parametrize("idx, words", [(-1, "wants data matrix -1"), (2, "wants data matrix 2")])
def test_data_layer_beyond_the_data_is_one_line(tmp_path, data8, idx, words):
    """2012's providers gave 1 as the size of any data matrix but the first, so a data layer
    with dataIdx=-1 or 2 parsed; 2012 then read outside its list of matrices. Here the first
    batch stops with one line (dataIdx=-1 must not take the labels, Python's last matrix)."""
    defs = (DATA + section("extra", type="data", dataIdx=idx)
            + section("fcx", type="fc", inputs="extra", outputs=4, initW=0.01)
            + section("fc4", type="fc", inputs="data,fcx", outputs=4, initW="0.01,0.01")
            + section("probs", type="softmax", inputs="fc4") + section("logprob", type="cost.logreg",
                                                                       inputs="labels,probs"))
    params = section("fcx", **LEARN) + section("fc4", epsW="0.001,0.001", epsB=0.002, momW="0.9,0.9", momB=0.9,
                                               wc="0,0") + section("logprob", coeff=1)
    ldef, lpar = write_net(tmp_path, "idx", defs, params)
    proc = cli(*base_args(data8, str(tmp_path / "save"), ldef, lpar, epochs=1))
    assert_one_line_error(proc, "extra", words)


@pytest.mark.parametrize("how", ["os.system", "builtins.exec", "subprocess.call"])
def test_hostile_checkpoint_runs_nothing(tmp_path, how):
    marker = tmp_path / "pwned"
    folder = tmp_path / "ConvNet__evil"
    folder.mkdir()
    payload = hostile_payloads(marker)[how]
    for proto in (2, std_pickle.HIGHEST_PROTOCOL):
        with open(folder / "1.1", "wb") as f:
            std_pickle.dump({"model_state": payload, "op": payload}, f, protocol=proto)
        proc = cli("-f", str(folder))
        line = assert_one_line_error(proc, "Error loading checkpoint", str(folder / "1.1"))
        assert "refusing" in line
        assert not marker.exists()
    # and the payload is live: the standard unpickler would have run it
    std_pickle.loads(std_pickle.dumps(payload))
    assert marker.exists()


@pytest.mark.parametrize("which", ["data_batch_1", "batches.meta"])
def test_hostile_batch_files_run_nothing(tmp_path, trained, which):
    marker = tmp_path / "pwned"
    data = write_batches(tmp_path / "data", num_batches=3)
    for how, payload in hostile_payloads(marker).items():
        with open(os.path.join(data, which), "wb") as f:
            std_pickle.dump({"data": payload, "labels": payload, "num_vis": payload}, f, protocol=2)
        proc = cli(*base_args(data, str(tmp_path / "save"), trained["def"], trained["params"], epochs=1))
        assert_one_line_error(proc, os.path.join(data, which), "refusing")
        assert not marker.exists(), how


def test_option_objects_load_only_from_checkpoints(tmp_path, trained):
    """The option classes a checkpoint holds are allowed in checkpoints only: a batch file
    that asks for one is refused like any other class."""
    data = write_batches(tmp_path / "data", num_batches=3)
    op = load(trained["dir"])["op"]
    pickle(os.path.join(data, "data_batch_2"), {"data": op, "labels": [0]})
    proc = cli(*base_args(data, str(tmp_path / "save"), trained["def"], trained["params"], epochs=1))
    assert_one_line_error(proc, os.path.join(data, "data_batch_2"), "OptionsParser")
    with pytest.raises(UnpickleError, match="OptionsParser"):
        unpickle(os.path.join(trained["dir"], "2.2"))


def test_truncated_checkpoint_is_a_one_line_error(tmp_path, trained):
    folder = tmp_path / "ConvNet__cut"
    folder.mkdir()
    whole = (Path(trained["dir"]) / "2.2").read_bytes()
    (folder / "2.2").write_bytes(whole[:len(whole) // 2])
    proc = cli("-f", str(folder))
    assert_one_line_error(proc, "Error loading checkpoint", str(folder / "2.2"), "truncated")
    proc = cli("-f", str(folder / "2.2"))
    assert_one_line_error(proc, str(folder / "2.2"), "truncated")
    (folder / "2.2").write_bytes(b"")
    assert_one_line_error(cli("-f", str(folder)), str(folder / "2.2"))


def _damage(name):
    """Ways a file can unpickle fine and still not be a usable checkpoint."""
    def layer(ms, n):
        return [l for l in layer_dicts(ms) if l["name"] == n][0]
    return {
        "op-not-options": lambda d: d.__setitem__("op", "nope"),
        "model-state-a-list": lambda d: d.__setitem__("model_state", [1, 2]),
        "no-epoch": lambda d: d["model_state"].pop("epoch"),
        "no-layers": lambda d: d["model_state"].pop("layers"),
        "weights-not-a-matrix": lambda d: layer(d["model_state"], "fc4").__setitem__("weights", "x"),
        "weights-wrong-shape": lambda d: layer(d["model_state"], "conv1")["weights"].__setitem__(
            0, np.zeros((3, 16), np.float32)),
        "biases-wrong-size": lambda d: layer(d["model_state"], "fc4").__setitem__(
            "biases", np.zeros((1, 3), np.float32)),
        "no-filter-sizes": lambda d: layer(d["model_state"], "conv1").pop("filterChannels"),
        "layer-without-type": lambda d: layer(d["model_state"], "pool1").pop("type"),
        "output-not-a-pair": lambda d: d["model_state"]["train_outputs"].__setitem__(1, "junk"),
        "output-lacks-a-cost": lambda d: d["model_state"]["test_outputs"].__setitem__(0, ({}, 40)),
        "option-missing": lambda d: d["op"].options.pop("train_batch_range"),
    }[name]


DAMAGES = ["op-not-options", "model-state-a-list", "no-epoch", "no-layers", "weights-not-a-matrix",
           "weights-wrong-shape", "biases-wrong-size", "no-filter-sizes", "layer-without-type",
           "output-not-a-pair", "output-lacks-a-cost", "option-missing"]


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_checkpoint_is_a_one_line_error(tmp_path, trained, damage):
    """... for training, for shownet and for the HDF5 export, which all read checkpoints."""
    folder = tmp_path / "ConvNet__damaged"
    folder.mkdir()
    dic = load(os.path.join(trained["dir"], "2.2"))
    _damage(damage)(dic)
    pickle(str(folder / "2.2"), dic)
    assert_one_line_error(cli("-f", str(folder)), "Error loading checkpoint", str(folder))
    if damage in ("op-not-options", "model-state-a-list", "no-epoch"):
        return  # the first steps of every reader, checked once
    assert_one_line_error(cli("-f", str(folder), "--show-cost=logprob", "--show-filters=conv1",
                              module="cudaconvnet.shownet", cwd=str(tmp_path)), "Error loading checkpoint")
    if damage != "option-missing" and not damage.startswith("output"):  # export reads layers only
        assert_one_line_error(cli(str(folder), str(tmp_path / "out.h5"), module="cudaconvnet.export"),
                              "Error loading checkpoint", str(folder))


def test_file_that_is_not_a_checkpoint(tmp_path):
    folder = tmp_path / "ConvNet__odd"
    folder.mkdir()
    pickle(str(folder / "1.1"), {"weights": np.zeros(3, np.float32)})
    assert_one_line_error(cli("-f", str(folder)), str(folder / "1.1"), "not a checkpoint")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(cli("-f", str(empty)), str(empty))
    assert_one_line_error(cli("-f", str(tmp_path / "nowhere")), str(tmp_path / "nowhere"))


# ---------------------------------------------------------------------------------------
# 4. The 2012 printout, line for line
# ---------------------------------------------------------------------------------------
# Python 2's `print x,` leaves a pending space ("softspace") that the next print writes
# before its first item, and a bare `print ""` then ends the line: so the 2012 lines that
# end a comma print end in a space. Checked with Python 2.7.18 on the 2012 statements:
#   print "1.1...",; print "%s: " % "logprob",; print "2.300000, 0.800000",; print ""
#     -> "1.1... logprob:  2.300000, 0.800000 \n"
#   print "x",; print NL + "---",; print ""     -> "x \n--- \n"
#   print "a\t",; print "b"                     -> "a\tb\n" (no space after a tab)
#   print "d",; sys.stdout.write("e\n")          -> "de\n"
#   "%6f" % nan, "%6f" % inf                    -> "   nan", "   inf"

F = r"-?\d+\.\d{6}"            # "%6f" of a cost
E = r"\d\.\d{6}e[+-]\d\d"      # "%e" of a weight statistic
SEC = r"\(\d+\.\d{3} sec\)"    # "(%.3f sec)"
TIME = r"Current time: \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}"


def header_lines(out):
    """The lines from 'Training ConvNet' to the '=====' after 'Saving checkpoints to'."""
    lines = out.split("\n")
    i = lines.index("Training ConvNet")
    j = next(k for k in range(i, len(lines)) if lines[k].startswith("Saving checkpoints to "))
    return lines[i - 1:j + 2]


def check_option_lines(lines, given):
    """The option table: '%s: %s %s' % (desc padded, value padded, '[DEFAULT]' or ''),
    sorted by description; padded to the longest description and to the longest value of
    the options left at their defaults (the 2012 widths)."""
    op = convnet.ConvNet.get_options_parser()
    descs = sorted(o.desc for o in op.options.values())
    assert len(lines) == len(descs)
    width = max(len(d) for d in descs)
    # as wide as the AlexNet code's table: its longest description is --wupdate-freq's (71)
    assert width == len(op.options["wupdate_freq"].desc) == 71
    rows = []
    for line, desc in zip(lines, descs):
        assert line.startswith(desc.ljust(width) + ": "), (line, desc)
        rest = line[width + 2:]
        default = rest.endswith(" [DEFAULT]")
        rows.append((desc, rest[:-len(" [DEFAULT]")] if default else rest[:-1], default))
        assert rest.endswith(" [DEFAULT]") or rest.endswith(" "), line
    vwidth = max(len(v.rstrip()) for _, v, d in rows if d)
    for desc, v, default in rows:
        if default or len(v.rstrip()) <= vwidth:
            assert len(v) == vwidth, (desc, v)
    by_desc = {desc: (v.rstrip(), d) for desc, v, d in rows}
    for o in op.options.values():
        if o.name in given:
            assert by_desc[o.desc] == (given[o.name], False), o.desc
    return by_desc


def test_printout_cuda_convnet_dialect(trained):
    out = trained["out"]
    folder = trained["dir"]
    ck = load(os.path.join(folder, "2.2"))
    ms = ck["model_state"]
    lines = out.split("\n")

    # before the header: the dialect line, the parser's layer lines, the engine import
    assert lines[0] == "Dialect: cuda-convnet (nothing in the config needs the AlexNet code)"
    assert lines[1] == "Initialized data layer 'data', producing 192 outputs"
    assert "Initialized convolutional layer 'conv1', producing 8x8 16-channel output" in lines
    assert "Initialized max-pooling layer 'pool1', producing 4x4 16-channel output" in lines
    k = lines.index("Importing the numpy engine")
    assert lines[k - 1] == "========================="

    head = header_lines(out)
    assert head[0] == head[-1] == "=========================" and head[1] == "Training ConvNet"
    opts = head[2:-5]
    assert head[-5] == "========================="
    check_option_lines(opts, {"minibatch_size": "16", "num_epochs": "2", "testing_freq": "2",
                              "dp_type": "cifar", "seed": "3", "train_batch_range": "1-2",
                              "test_batch_range": "3-3", "backend": "numpy"})
    assert head[-4] == "Running on the CPU (NumPy engine)"
    assert re.fullmatch(TIME, head[-3]), head[-3]
    assert head[-2] == "Saving checkpoints to %s" % folder

    body = lines[lines.index(head[-2]) + 2:]
    train_out = ms["train_outputs"]  # per case, as printed

    def costs(t):
        return "logprob:  " + ", ".join("%6f" % v for v in t[0]["logprob"])

    def test_block(test_output):
        # `print ""` ends the batch's line; the costs, then `print "---",` and per layer
        # `print ""` + `print "Layer ... weights[0]: ...",` + `print NL + "Layer ... biases...",`
        block = [re.escape("======================Test output======================"),
                 re.escape(costs(test_output) + " "), re.escape("-" * 55 + " ")]
        for l in layer_dicts(ms):
            if "weights" in l:
                block.append(re.escape("Layer '%s' weights[0]: " % l["name"]) + E + r" \[" + E + r"\] ")
                block.append(re.escape("Layer '%s' biases: " % l["name"]) + E + r" \[" + E + r"\] ")
        return block + [re.escape("-" * 55), re.escape("Saved checkpoint to %s" % folder)]

    expect = [re.escape("1.1... " + costs(train_out[0]) + " ") + SEC,
              re.escape("1.2... " + costs(train_out[1]) + " ")]
    expect += test_block(ms["test_outputs"][0])
    expect += [re.escape("=" * 55 + " ") + SEC,
               re.escape("2.1... " + costs(train_out[2]) + " ") + SEC,
               re.escape("2.2... " + costs(train_out[3]) + " ")]
    expect += test_block(ms["test_outputs"][1])
    expect += [re.escape("=" * 55 + " ") + SEC,
               re.escape("3.1... ") + "logprob:  " + F + ", " + F + " " + SEC, ""]
    assert len(body) == len(expect), "\n".join(body)
    for line, pat in zip(body, expect):
        assert re.fullmatch(pat, line), (line, pat)

    # the weight statistics of the last test block are those of the checkpoint
    last = body[body.index("Saved checkpoint to %s" % folder, len(body) - 6) - 5:]
    stats = []
    for l in layer_dicts(ms):
        if "weights" in l:
            stats.append("Layer '%s' weights[0]: %e [%e] " % (l["name"], np.mean(np.abs(l["weights"][0])),
                                                              np.mean(np.abs(l["weightsInc"][0]))))
            stats.append("Layer '%s' biases: %e [%e] " % (l["name"], np.mean(np.abs(l["biases"])),
                                                          np.mean(np.abs(l["biasesInc"]))))
    assert last[:4] == stats


def test_printout_alexnet_dialect_has_the_averages_block(tmp_path, data8):
    ldef, lpar = write_net(tmp_path, "hs", HS_NET, HS_PARAMS)
    status, out = train(*base_args(data8, str(tmp_path / "save"), ldef, lpar, epochs=2, test_range="3-4"))
    assert status == 0, out[-2000:]
    folder = ckpt_dir(str(tmp_path / "save"))
    ms = load(os.path.join(folder, "2.2"))["model_state"]
    tests = ms["test_outputs"]
    assert [t[1] for t in tests] == [40, 40]

    def costs(values):
        return "logprob:  " + ", ".join("%6f" % v for v in values) + " "

    lines = out.split("\n")
    assert lines[0] == "Dialect: alexnet (layer 'fc32' sets 'gpu=')"
    assert "Initialized hidden sex layer 'drop' on GPU 0, producing 32 outputs" in lines
    blocks = [i for i, l in enumerate(lines) if l == "======================Test output======================"]
    assert len(blocks) == 2
    for n, i in enumerate(blocks):
        # test one batch at a time (3, then 4); the averages run over the last two tests
        assert re.fullmatch(r"\d\.2\.\.\. logprob:  %s, %s, %s " % (F, F, F), lines[i - 1])
        avg = np.mean([t[0]["logprob"] for t in tests[:n + 1]], axis=0)
        assert lines[i + 1:i + 4] == [costs(tests[n][0]["logprob"]),
                                      "----------------------Averages-------------------------",
                                      costs(avg)]
        assert lines[i + 4] == "------------------------------------------------------- "
        # the layers in name order (the AlexNet code kept a dict and sorted it)
        names = [re.match(r"Layer '(\w+)' (weights\[0\]|biases): %s \[%s\] $" % (E, E), l).group(1)
                 for l in lines[i + 5:i + 9]]
        assert names == ["fc32", "fc32", "fc4", "fc4"]
        assert lines[i + 9:i + 11] == ["-------------------------------------------------------",
                                       "Saved checkpoint to %s" % folder]
    # the top-2 error is no larger than the top-1 error
    assert all(t[0]["logprob"][2] <= t[0]["logprob"][1] for t in tests)


def test_nan_or_inf_stops_with_status_1(tmp_path, data8):
    ldef, _ = write_net(tmp_path, "conv", CONV_NET, CONV_PARAMS)
    huge = dict(LEARN, epsW=1e6, epsB=1e6)
    lpar = tmp_path / "huge.cfg"
    lpar.write_text(section("conv1", **huge) + section("fc4", **huge) + section("logprob", coeff=1))
    proc = cli(*base_args(data8, str(tmp_path / "save"), ldef, str(lpar), epochs=20))
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    last = proc.stdout.rstrip("\n").split("\n")[-1]
    assert re.fullmatch(r"\d+\.\d+\.\.\. logprob:  (\s*(-?\d+\.\d{6}|-?nan|-?inf)(, |(?= ))){2} \^ got nan or inf!",
                        last), last
    assert re.search(r"nan|inf", last.split("logprob:")[1].split("^")[0])


@pytest.mark.parametrize("dialect,line", [("cuda-convnet", "logprob:     nan, 0.500000 ^ got nan or inf!\n"),
                                          ("alexnet", "logprob:  nan, 0.500000 ^ got nan or inf!\n")])
def test_nan_cost_line_per_dialect(dialect, line):
    """cuda-convnet printed costs with "%6f", the AlexNet code with "%.6f" (chm:convnet.py:130):
    the same but for nan and inf, which the line that stops a diverging run shows."""
    from types import SimpleNamespace
    from cudaconvnet.printer import Py2Print
    out = io.StringIO()
    model = SimpleNamespace(p=Py2Print(out), dialect=lambda: dialect)
    with pytest.raises(StopTraining):
        convnet.ConvNet.print_costs(model, ({"logprob": [float("nan"), 2.0]}, 4))
    assert out.getvalue() == line


def test_alexnet_test_block_orders_and_averages():
    """The AlexNet code's test block, from a model stand-in: the test output's costs in the
    order of one deep copy, the averages' in that of two, over the last len(--test-range)
    tests only; the layers' lines in name order (fc10 before fc9); batch outputs in the
    order of the dict itself."""
    from types import SimpleNamespace
    from cudaconvnet.printer import Py2Print
    out = io.StringIO()
    w = [np.full((2, 2), 0.5, np.float32)]
    layers = {"fc9": dict(name="fc9", weights=w, weightsInc=w, biases=w[0], biasesInc=w[0]),
              "fc10": dict(name="fc10", weights=w, weightsInc=w, biases=w[0], biasesInc=w[0])}
    # earlier tests hold per-case averages (printing divided them), the newest its sums
    tests = [({"logreg": [1.0, 0.1], "logreg1": [2.0, 0.2]}, 10), ({"logreg": [2.0, 0.1], "logreg1": [4.0, 0.2]}, 10),
             ({"logreg": [30.0, 1.0], "logreg1": [60.0, 2.0]}, 10)]
    model = SimpleNamespace(p=Py2Print(out), dialect=lambda: "alexnet", test_outputs=tests,
                            opt=lambda k: {"test_batch_range": [5, 6]}[k], model_state={"layers": layers})
    model.print_costs = lambda *a, **k: convnet.ConvNet.print_costs(model, *a, **k)
    model.aggregate_test_outputs = lambda t: convnet.ConvNet.aggregate_test_outputs(model, t)
    convnet.ConvNet.print_test_results(model)
    lines = out.getvalue().split("\n")
    i = lines.index("======================Test output======================")
    assert lines[i + 1] == "logreg:  3.000000, 0.100000 logreg1:  6.000000, 0.200000 "
    assert lines[i + 2] == "----------------------Averages-------------------------"
    assert lines[i + 3] == "logreg1:  5.000000, 0.200000 logreg:  2.500000, 0.100000 "  # tests 2 and 3
    assert [l.split("'")[1] for l in lines if l.startswith("Layer '")] == ["fc10", "fc10", "fc9", "fc9"]
    assert convnet.ConvNet.format_batch_output(model, ({"logreg": [1], "logreg1": [2]}, 5)) == \
        "({'logreg1': [2], 'logreg': [1]}, 5)"


def test_py2_cost_order_after_deep_copies():
    """The order 2012 printed costs in: a Python 2 dict filled in name order (training
    lines), then deep-copied once (the AlexNet code's test output) or twice (its averages).
    The expected lists are Python 2.7's own, for copy.deepcopy of such dicts."""
    assert [convnet._py2_order(dict.fromkeys(["logreg", "logreg1"]), c) for c in range(3)] == \
        [["logreg1", "logreg"], ["logreg", "logreg1"], ["logreg1", "logreg"]]
    assert [convnet._py2_order(dict.fromkeys(["sqdiff", "xent"]), c) for c in range(3)] == \
        [["xent", "sqdiff"], ["sqdiff", "xent"], ["xent", "sqdiff"]]


def test_test_only_prints_each_batch_then_the_test_block(tmp_path, trained):
    proc = cli("-f", trained["dir"], "--test-only=1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    i = next(k for k, l in enumerate(lines) if l.startswith("batch "))
    m = re.fullmatch(r"batch 3: \(\{'logprob': \[([^,\]]+), ([^,\]]+)\]\}, 40\)", lines[i])
    assert m, lines[i]
    logprob, errors = float(m.group(1)), float(m.group(2))
    assert errors == int(errors)  # the sums over the cases, as the engine returned them
    assert lines[i + 1:i + 5] == ["", "======================Test output======================",
                                  "logprob:  %6f, %6f " % (logprob / 40, errors / 40),
                                  "------------------------------------------------------- "]
    assert re.fullmatch(r"Layer 'fc4' biases: %s \[%s\] " % (E, E), lines[-2]) and lines[-1] == ""
    assert "Training ConvNet" not in proc.stdout and "Saved checkpoint" not in proc.stdout
    # the test-only run's numbers are those of the checkpoint's own last test
    ms = load(os.path.join(trained["dir"], "2.2"))["model_state"]
    assert np.allclose([logprob / 40, errors / 40], ms["test_outputs"][-1][0]["logprob"], rtol=1e-12, atol=0)
    assert checkpoints(trained["dir"]) == ["2.2"]


# ---------------------------------------------------------------------------------------
# 5. Options
# ---------------------------------------------------------------------------------------

def test_layer_def_cannot_change_on_resume(tmp_path, trained):
    other = tmp_path / "other.cfg"
    other.write_text(CONV_NET)
    proc = cli("-f", trained["dir"], "--layer-def=%s" % other)
    assert_one_line_error(proc, "--layer-def", "cannot be changed")


def test_new_layer_params_on_resume_are_read(tmp_path, trained):
    """epsW=0 epsB=0 for conv1 in a new params file freezes it (#145's frozen conv1)."""
    folder = str(tmp_path / "ConvNet__r")
    os.makedirs(folder)
    before = load(os.path.join(trained["dir"], "2.2"))
    pickle(os.path.join(folder, "2.2"), before)
    frozen = tmp_path / "frozen.cfg"
    frozen.write_text(section("conv1", **dict(LEARN, epsW=0, epsB=0)) + section("fc4", **LEARN)
                      + section("logprob", coeff=1))
    status, out = train("-f", folder, "--layer-params=%s" % frozen, "--epochs=3")
    assert status == 0, out[-2000:]
    after = load(os.path.join(folder, "3.2"))
    lb = {l["name"]: l for l in layer_dicts(before["model_state"])}
    la = {l["name"]: l for l in layer_dicts(after["model_state"])}
    assert la["conv1"]["epsW"] == [0.0] and la["conv1"]["epsB"] == 0.0
    assert np.array_equal(la["conv1"]["weights"][0], lb["conv1"]["weights"][0])
    assert np.array_equal(la["conv1"]["biases"], lb["conv1"]["biases"])
    assert not np.array_equal(la["fc4"]["weights"][0], lb["fc4"]["weights"][0])
    assert after["op"].get_value("layer_params") == str(frozen)


@pytest.mark.parametrize("limit_mb,expect_more", [(0, False), (1, True)])
def test_max_filesize_retention(tmp_path, data8, limit_mb, expect_more):
    ldef, lpar = write_net(tmp_path, "conv", CONV_NET, CONV_PARAMS)
    status, out = train(*base_args(data8, str(tmp_path / "save"), ldef, lpar, epochs=3, test_freq=1),
                        "--max-filesize=%d" % limit_mb)
    assert status == 0, out[-2000:]
    folder = ckpt_dir(str(tmp_path / "save"))
    kept = checkpoints(folder)
    if not expect_more:
        assert kept == ["4.1"]
    else:
        # 7 checkpoints of a few kB each fit in 1 MB
        assert kept == ["1.1", "1.2", "2.1", "2.2", "3.1", "3.2", "4.1"]


def test_max_filesize_keeps_the_newest_that_fit(tmp_path):
    data = write_batches(tmp_path / "data", num_batches=3, cases=8)
    ldef, lpar = write_net(tmp_path, "big", BIG_NET, BIG_PARAMS)
    status, out = train(*base_args(data, str(tmp_path / "save"), ldef, lpar, epochs=2, test_freq=1),
                        "--max-filesize=20")
    assert status == 0, out[-2000:]
    folder = ckpt_dir(str(tmp_path / "save"))
    kept = checkpoints(folder)
    size = os.path.getsize(os.path.join(folder, kept[-1]))
    assert 6e6 < size < 7e6
    assert kept == ["2.1", "2.2", "3.1"]  # 3 x ~6.3 MB fit in 20 MB, 4 do not


@pytest.mark.parametrize("size,kept", [(340000, ["9.2", "10.1", "10.2"]),   # 1,020,000 bytes: under 1 MiB
                                        (360000, ["10.1", "10.2"])])         # 1,080,000: the oldest goes
def test_prune_counts_mebibytes_oldest_by_epoch(tmp_path, size, kept):
    """--max-filesize counts MB of 2^20 bytes and deletes the oldest checkpoint by epoch and
    batch (9.2 before 10.1, which a plain string sort gets wrong); -f takes the newest."""
    for name in ("9.2", "10.1", "10.2"):
        (tmp_path / name).write_bytes(b"x" * size)
    model = types.SimpleNamespace(opt=lambda name: {"max_filesize_mb": 1}[name])
    IGPUModel.prune_checkpoints(model, str(tmp_path), "10.2")
    assert checkpoints(str(tmp_path)) == kept
    assert IGPUModel.checkpoint_file(str(tmp_path)) == str(tmp_path / "10.2")


def test_options_reach_the_data_provider(tmp_path, data8, trained):
    """What convnet.py passed to the providers in dp_params, --seed=0 included (0 seeds)."""
    argv = base_args(data8, str(tmp_path / "s"), trained["def"], trained["params"], epochs=2, seed=0)
    argv += ["--color-noise=0.1", "--pca-noise=0.2", "--scalar-mean=1", "--crop-border=2"]
    with contextlib.redirect_stdout(io.StringIO()):
        model = convnet.ConvNet(*IGPUModel.parse_options(convnet.ConvNet.get_options_parser(), argv))
    want = {"multiview_test": 0, "crop_border": 2, "color_noise": 0.1, "pca_noise": 0.2, "scalar_mean": 1.0,
            "minibatch_size": 16, "seed": 0, "dialect": "cuda-convnet"}
    assert {k: model.dp_params.get(k) for k in want} == want
    # the learning-rate schedules' progress: (batches done before this one) / (epochs * batches)
    for epoch, batchnum, progress in [(1, 1, 0.0), (1, 2, 0.25), (2, 1, 0.5), (2, 2, 0.75), (3, 1, 1.0)]:
        model.epoch, model.batchnum = epoch, batchnum
        assert model.progress() == progress


@pytest.mark.parametrize("net, views", [("conv", 10), ("hs", 9)])
def test_multiview_views_by_dialect(tmp_path, data8, net, views):
    """A cifar-cropped multiview test runs on cuda-convnet's 10 views, or in the AlexNet
    dialect on that code's 9 (its convdata_cifar.py), through the training loop."""
    ldef, lpar = write_net(tmp_path, net, *NETS[net])
    argv = base_args(data8, str(tmp_path / "s"), ldef, lpar, epochs=1, provider="cifar-cropped")
    argv += ["--crop-border=2", "--multiview-test=1", "--logreg-name=logprob"]
    with contextlib.redirect_stdout(io.StringIO()):
        model = convnet.ConvNet(*IGPUModel.parse_options(convnet.ConvNet.get_options_parser(), argv))
    assert model.test_data_provider.num_views == views
    status, out = train(*argv)
    assert status == 0, out[-2000:]


def test_test_one_0_tests_the_whole_range(tmp_path, trained):
    """--test-one=0: every test at the whole --test-range, its costs averaged over all cases."""
    data = write_batches(tmp_path / "data", num_batches=4, cases=40)
    status, out = train(*base_args(data, str(tmp_path / "s"), trained["def"], trained["params"], epochs=1,
                                   test_range="3-4"), "--test-one=0")
    assert status == 0, out[-2000:]
    ms = IGPUModel.load_checkpoint(ckpt_dir(str(tmp_path / "s")))["model_state"]
    assert [t[1] for t in ms["test_outputs"]] == [80]   # both batches of 40 cases
    assert 0 <= ms["test_outputs"][0][0]["logprob"][1] <= 1   # an error rate: the sum over 80, / 80


def test_zip_save_checkpoints_load_and_resume(tmp_path, data8):
    ldef, lpar = write_net(tmp_path, "conv", CONV_NET, CONV_PARAMS)
    status, out = train(*base_args(data8, str(tmp_path / "save"), ldef, lpar, epochs=1), "--zip-save=1")
    assert status == 0, out[-2000:]
    folder = ckpt_dir(str(tmp_path / "save"))
    with open(os.path.join(folder, "1.2"), "rb") as f:
        assert f.read(2) == b"PK"
    dic = IGPUModel.load_checkpoint(folder)
    assert (dic["model_state"]["epoch"], dic["model_state"]["batchnum"]) == (1, 2)
    status, out = train("-f", folder, "--epochs=2")
    assert status == 0, out[-2000:]
    with open(os.path.join(folder, "2.2"), "rb") as f:
        assert f.read(2) == b"PK"


def test_missing_options_usage_and_help(tmp_path):
    proc = cli("--data-path=x")
    assert proc.returncode != 0
    assert "not supplied" in proc.stdout and "usage:" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    proc = cli("--help")
    assert proc.returncode == 0, proc.stderr
    for opt in ("--layer-def", "--layer-params", "--check-grads", "--multiview-test", "--test-out", "--seed",
                "--backend", "--conv-kernels", "--max-filesize", "--zip-save", "-f"):
        assert re.search(r"^\s*\[?%s <" % re.escape(opt), proc.stdout, re.M), opt


def test_dummy_provider_trains_and_saves(tmp_path):
    """'dummy-cn-<n>' (random cases, no batch files) through the loop to a checkpoint."""
    ldef, lpar = write_net(tmp_path, "fc", DATA + section("fc10", type="fc", inputs="data", outputs=10, initW=0.01)
                           + section("probs", type="softmax", inputs="fc10")
                           + section("logprob", type="cost.logreg", inputs="labels,probs"),
                           section("fc10", **LEARN) + section("logprob", coeff=1))
    args = base_args(str(tmp_path / "unused"), str(tmp_path / "s"), ldef, lpar, epochs=1, test_freq=1,
                     train_range="1", test_range="1", provider="dummy-cn-12")
    status, out = train(*args)
    assert status == 0, out[-2000:]
    assert sorted(os.listdir(ckpt_dir(str(tmp_path / "s")))) == ["2.1"]


def test_unknown_data_provider_lists_the_known_ones(tmp_path, trained):
    args = base_args(trained["data"], str(tmp_path / "s"), trained["def"], trained["params"], epochs=1,
                     provider="no-such")
    line = assert_one_line_error(cli(*args), "no-such")
    for name in ("cifar", "cifar-cropped", "dummy-cn-n", "inet-lr-cropped"):
        assert re.search(r"\b%s\b" % re.escape(name), line), name


def test_provider_that_gives_a_dict_is_one_line(tmp_path, trained):
    """The generic providers ('default', ...) hand out the batch dict, which a ConvNet
    cannot train on (2012 crashed in parse_batch_data)."""
    ldef, lpar = write_net(tmp_path, "sum2", DATA.split("[labels]")[0]
                           + section("fc4", type="fc", inputs="data", outputs=4, initW=0.01)
                           + section("sq", type="cost.sum2", inputs="fc4"),
                           section("fc4", **LEARN) + section("sq", coeff=1))
    args = base_args(trained["data"], str(tmp_path / "s"), ldef, lpar, epochs=1, provider="default")
    assert_one_line_error(cli(*args), "'default'", "dict")


def test_unknown_conv_kernels_is_one_line(tmp_path, trained):
    args = base_args(trained["data"], str(tmp_path / "s"), trained["def"], trained["params"], epochs=1)
    line = assert_one_line_error(cli(*args, "--conv-kernels=cudnn"), "--conv-kernels", "'cudnn'")
    assert "2012, gemm, winograd, implicit, fastest" in line


def test_missing_data_path_is_one_line(tmp_path, trained):
    missing = str(tmp_path / "no-data-here")
    args = base_args(missing, str(tmp_path / "s"), trained["def"], trained["params"], epochs=1)
    assert_one_line_error(cli(*args), missing)


@pytest.mark.parametrize("meta_change,words", [
    ({"label_names": None}, ["batches.meta' has no 'label_names'"]),   # asked for by the logreg layer
    ({"label_names": 4}, ["label_names is a int"]),
    ({"num_colors": 0}, ["batches.meta or a batch", "ZeroDivisionError"]),
    ({"num_colors": "three"}, ["batches.meta or a batch", "ValueError"]),
])
def test_bad_meta_values_are_one_line(tmp_path, trained, meta_change, words):
    """Values of the wrong kind in batches.meta: one line naming the file, no traceback."""
    data = str(tmp_path / "data")
    shutil.copytree(trained["data"], data)
    meta = unpickle(os.path.join(data, "batches.meta"))
    for k, v in meta_change.items():
        if v is None:
            del meta[k]
        else:
            meta[k] = v
    pickle(os.path.join(data, "batches.meta"), meta)
    args = base_args(data, str(tmp_path / "s"), trained["def"], trained["params"], epochs=1)
    assert_one_line_error(cli(*args), data, *words)


def test_overflow_is_the_loops_to_report(tmp_path, trained):
    """Data that overflows the net (a mean of 1e38): 2012's "^ got nan or inf!" and status 1,
    without numpy's RuntimeWarnings on stderr."""
    data = str(tmp_path / "data")
    shutil.copytree(trained["data"], data)
    meta = unpickle(os.path.join(data, "batches.meta"))
    meta["data_mean"] = np.full_like(meta["data_mean"], 1e38)
    pickle(os.path.join(data, "batches.meta"), meta)
    proc = cli(*base_args(data, str(tmp_path / "s"), trained["def"], trained["params"], epochs=1))
    assert proc.returncode == 1 and proc.stdout.rstrip().endswith("^ got nan or inf!")
    assert proc.stderr == ""


@pytest.mark.parametrize("arg,words", [("--mini=0", "--mini (Minibatch size) must be at least 1, not 0"),
                                       ("--test-freq=0", "--test-freq (Testing frequency) must be at least 1"),
                                       ("--wupdate-freq=-1", "must be at least 1, not -1"),
                                       ("--dialect=alexnett", "must be cuda-convnet, alexnet or auto, not 'alexnett'"),
                                       ("--seed=4294967296", "must be -1 or 0..4294967295, not 4294967296"),
                                       ("--seed=-2", "must be -1 or 0..4294967295, not -2")])
def test_unusable_option_values_are_one_line(tmp_path, trained, arg, words):
    """2012 took these and then divided by zero, looped over nothing or (a negative
    --wupdate-freq) trained uphill; a misspelt --dialect fell back to detection."""
    args = base_args(trained["data"], str(tmp_path / "s"), trained["def"], trained["params"], epochs=1)
    proc = cli(*args, arg)
    assert_one_line_error(proc, words)
    assert "1.1..." not in proc.stdout


@pytest.mark.parametrize("which", ["def", "params"])
def test_missing_config_file_is_one_line(tmp_path, trained, which):
    missing = str(tmp_path / "nope.cfg")
    ldef, lpar = (missing, trained["params"]) if which == "def" else (trained["def"], missing)
    proc = cli(*base_args(trained["data"], str(tmp_path / "s"), ldef, lpar, epochs=1))
    line = assert_one_line_error(proc, "file '%s' does not exist" % missing)
    assert line.endswith("does not exist")      # no second file named in brackets
    assert ("Dialect:" in proc.stdout) == (which == "params")


def test_unshare_index_out_of_range_is_one_line(tmp_path, trained):
    folder = str(tmp_path / "ck")
    shutil.copytree(trained["dir"], folder)
    assert_one_line_error(cli("-f", folder, "--unshare-weights=fc4[3]"),
                          "Layer 'fc4' has 1 weight matrices; unable to unshare fc4[3]")


def test_data_for_another_net_is_one_line(tmp_path, trained, data12):
    """12x12 images fed to the 8x8 net: 2012 ran its kernels on the wrong sizes."""
    folder = str(tmp_path / "ck")
    shutil.copytree(trained["dir"], folder)
    assert_one_line_error(cli("-f", folder, "--test-only=1", "--data-path=%s" % data12),
                          "Data layer 'data' produces 192 outputs, but matrix 0 of the data has 432 rows")


@pytest.mark.parametrize("change,words", [
    # the local parser allows a stride past the filter; the 2012 kernel wrappers asserted
    (("type=conv", "type=local", "stride=1", "stride=4"),
     "Layer 'conv1': localFilterActs: moduleStride (4) must not exceed filterSize (3)"),
    # a pool start past the image gives outputsX = -46 (and 16 * 46^2 outputs) in 2012 too
    (("start=0", "start=100"), "Layer 'pool1': convLocalPool: subsX (2), strideX (2) and outputsX (-46)"),
])
def test_sizes_the_kernels_refuse_are_one_line(tmp_path, data8, change, words):
    """Sizes the 2012 parser let through and its kernels refused in the first batch (an
    assert that stopped the process): one line naming the layer and the operation."""
    net = CONV_NET
    for old, new in zip(change[::2], change[1::2]):
        assert old in net
        net = net.replace(old, new, 1)
    ldef, lpar = write_net(tmp_path, "bad", net, CONV_PARAMS)
    assert_one_line_error(cli(*base_args(data8, str(tmp_path / "s"), ldef, lpar, epochs=1)), words)


def test_unwritable_save_path_stops_before_training(tmp_path, trained):
    (tmp_path / "a-file").write_text("")
    args = base_args(trained["data"], str(tmp_path / "a-file" / "s"), trained["def"], trained["params"], epochs=1)
    proc = cli(*args)
    assert_one_line_error(proc, "cannot save checkpoints in", "a-file' is not a folder")
    assert "1.1..." not in proc.stdout and not os.path.exists(tmp_path / "a-file" / "s")


def test_failed_save_is_one_line(tmp_path, trained, monkeypatch):
    """A save that fails (a full disk) stops the run with one line, the previous checkpoint
    whole: the loop saves through atomic writes."""
    from cudaconvnet import gpumodel

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(gpumodel, "pickle", full_disk)
    status, out = train(*base_args(trained["data"], str(tmp_path / "s"), trained["def"], trained["params"],
                                   epochs=1))
    assert status == 1
    assert out.splitlines()[-1].startswith("cannot save checkpoint 1.2 in ")
    assert out.splitlines()[-1].endswith(": No space left on device")


def test_error_after_a_progress_line_starts_its_own_line(capsys):
    """'1.2...' waits on stdout for the batch's costs; an error then starts a new line."""
    from cudaconvnet.printer import Py2Print

    def main():
        Py2Print()("1.2...", comma=True)
        raise StopTraining("'data_batch_2' holds no images")
    with pytest.raises(SystemExit) as ei:
        run_main(main)
    out, err = capsys.readouterr()
    assert ei.value.code == 1 and out == "1.2...\n" and err == "'data_batch_2' holds no images\n"

    def after_a_whole_line():
        Py2Print()("1.2... logprob: 0.5")
        raise StopTraining("stopped")
    with pytest.raises(SystemExit):
        run_main(after_a_whole_line)
    assert capsys.readouterr() == ("1.2... logprob: 0.5\n", "stopped\n")


def test_py2_print_softspace():
    """Python 2's print: a space before an item after 'print x,'; none after a string ending in
    a newline or tab; a plain write cancels the pending space; a line from the 2012 C++ module
    (printf) leaves it pending, so the next 'print' item starts with a space."""
    from cudaconvnet.printer import Py2Print
    out = io.StringIO()
    p = Py2Print(out)
    p("logprob: ", comma=True)
    p("2.3", comma=True)
    p("x\t", comma=True)
    p("y")
    p("a", comma=True)
    p.raw("from C++")
    p("b")
    p("c", comma=True)
    p.write("|")
    p("d")
    assert out.getvalue() == "logprob:  2.3 x\ty\nafrom C++\n b\nc|d\n"


def test_out_of_memory_is_one_line(capsys):
    """A net or minibatch too big for the machine: one line and status 1, not a traceback."""
    from cudaconvnet.printer import Py2Print

    def main():
        Py2Print()("1.1...", comma=True)
        np.empty((1 << 40, 1 << 20), dtype=np.float32)   # 4 EiB: refused on any machine
    with pytest.raises(SystemExit) as ei:
        run_main(main)
    out, err = capsys.readouterr()
    assert ei.value.code == 1 and out == "1.1...\n"
    assert err.startswith("Out of memory: Unable to allocate") and err.count("\n") == 1


# ---------------------------------------------------------------------------------------
# 6. --check-grads from the command line
# ---------------------------------------------------------------------------------------

GC_NET = (DATA
          + section("conv1", type="conv", inputs="data", channels=3, filters=16, padding=0, stride=2,
                    filterSize=3, initW=0.1, partialSum=1, sharedBiases=1, neuron="tanh[1,1]")
          + section("fc10", type="fc", inputs="conv1", outputs=10, initW=0.1)
          + section("probs", type="softmax", inputs="fc10")
          + section("logprob", type="cost.logreg", inputs="labels,probs"))
GC_PARAMS = section("conv1", **LEARN) + section("fc10", **LEARN) + section("logprob", coeff=1)


def run_check_grads(tmp_path, net):
    ldef, lpar = write_net(tmp_path, "gc", net, GC_PARAMS)
    # dummy-cn-48: 4x4 RGB random images, random labels 0-9; the check uses one minibatch
    return cli("--check-grads=1", "--data-provider=dummy-cn-48", "--layer-def=%s" % ldef,
               "--layer-params=%s" % lpar, "--mini=8", NUMPY, "--seed=1")


def gc_reports(stdout):
    return re.findall(r"^\((PASS|\*\*\*\*FAIL\*\*\*\*)\) (\S+ (?:weights\[\d+\]|biases)) GRADIENT CHECK$",
                      stdout, re.M)


def test_check_grads_passes(tmp_path):
    proc = run_check_grads(tmp_path, GC_NET)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    reports = gc_reports(proc.stdout)
    # (cuda-convnet r561 printed only the failures: GC_SUPPRESS_PASSES; the AlexNet code all)
    assert reports in ([], [("PASS", "conv1 weights[0]"), ("PASS", "conv1 biases"), ("PASS", "fc10 weights[0]"),
                            ("PASS", "fc10 biases")])
    lines = proc.stdout.rstrip("\n").split("\n")
    assert lines[-2:] == ["------------------------", "ALL 4 TESTS PASSED"]
    assert "Traceback" not in proc.stdout + proc.stderr and not proc.stderr


def test_check_grads_fails_for_cuda_convnets_softrelu(tmp_path):
    """cuda-convnet r561 took softrelu's derivative at the outputs: the check catches it."""
    proc = run_check_grads(tmp_path, GC_NET.replace("neuron=tanh[1,1]", "neuron=softrelu"))
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr
    reports = gc_reports(proc.stdout)
    assert len(reports) == 4
    assert ("****FAIL****", "conv1 weights[0]") in reports and ("****FAIL****", "conv1 biases") in reports
    failed = sum(r[0] != "PASS" for r in reports)
    lines = proc.stdout.rstrip("\n").split("\n")
    assert lines[-2:] == ["------------------------", "%d/4 TESTS FAILED" % failed]
    assert "Traceback" not in proc.stdout + proc.stderr
    # the report as 2012 printed it: the C++ module's lines follow Python's "1.1..." with
    # no space (printf knows nothing of Python's softspace)
    assert "\n1.1...========================\n(****FAIL****) conv1 weights[0] GRADIENT CHECK\n" \
           "========================\nAnalytic:\n" in proc.stdout
    for name in ("Analytic norm: ", "Numeric norm:  ", "Relative error: "):
        assert len(re.findall(r"^%s%s$" % (re.escape(name), E), proc.stdout, re.M)) == len(reports)
    assert re.search(r"^Numeric:\n(-?\d\.\d{15} ){4}\n", proc.stdout, re.M)


# ---------------------------------------------------------------------------------------
# 7. The multiview test, end to end
# ---------------------------------------------------------------------------------------

def test_multiview_test_matches_a_hand_computation(tmp_path, data12):
    from cudaconvnet.backends import get_backend
    from cudaconvnet.engine.net import ConvNet as Engine

    ldef, lpar = write_net(tmp_path, "conv", CONV_NET, CONV_PARAMS)
    status, out = train(*base_args(data12, str(tmp_path / "save"), ldef, lpar, epochs=1, provider="cifar-cropped"),
                        "--crop-border=2")
    assert status == 0, out[-2000:]
    folder = ckpt_dir(str(tmp_path / "save"))
    preds = tmp_path / "preds"
    status, out = train("-f", folder, "--multiview-test=1", "--logreg-name=logprob", "--test-only=1",
                        "--test-out=%s" % preds)
    assert status == 0, out[-2000:]
    m = re.search(r"^batch 3: \(\{'logprob': \[([^,\]]+), ([^,\]]+)\]\}, 40\)$", out, re.M)
    assert m, out[-2000:]
    got = np.array([float(m.group(1)), float(m.group(2))]) / 40
    assert "\nlogprob:  %6f, %6f \n" % tuple(got) in out

    # by hand: the 10 views of 2012 (corners and centre, each also mirrored), each through
    # the trained net; the softmax averaged over the views, then -log p(label) and errors
    ck = load(os.path.join(folder, "1.2"))
    batch, meta = unpickle(os.path.join(data12, "data_batch_3")), unpickle(os.path.join(data12, "batches.meta"))
    x = batch["data"].reshape(3, 12, 12, -1)
    labels = np.array(batch["labels"])
    mean = meta["data_mean"].reshape(3, 12, 12)[:, 2:10, 2:10].reshape(-1, 1)
    net = Engine(ck["model_state"]["layers"], 16, get_backend("numpy"))
    probs = []
    for flip in (False, True):
        for (r, c) in [(0, 0), (0, 4), (2, 2), (4, 0), (4, 4)]:
            view = x[:, r:r + 8, c:c + 8, :]
            if flip:
                view = view[:, :, ::-1, :]
            view = np.ascontiguousarray(view.reshape(192, -1) - mean, dtype=np.float32)
            p, _ = net.features([view, np.asarray(labels, np.float32).reshape(1, -1)], "probs")
            probs.append(p.astype(np.float64))
    avg = np.mean(probs, axis=0)
    expect_logprob = -np.mean(np.log(avg[np.arange(40), labels]))
    expect_err = np.mean(np.argmax(avg, axis=1) != labels)
    assert abs(got[0] - expect_logprob) < 1e-5, (got, expect_logprob)
    assert got[1] == expect_err
    # a single (centre) view does not give the same number
    centre = -np.mean(np.log(probs[2][np.arange(40), labels]))
    assert abs(centre - expect_logprob) > 1e-4

    # --test-out: the averaged probabilities of each test batch
    saved = unpickle(str(preds / "test_preds_3"))
    assert saved["data"].shape == (40, 4) and saved["data"].dtype == np.float32
    assert np.allclose(saved["data"], avg, atol=1e-6)
    assert "generated from" in saved["note"]


def test_multiview_test_needs_a_provider_with_views(trained):
    proc = cli("-f", trained["dir"], "--multiview-test=1", "--logreg-name=logprob", "--test-only=1")
    assert_one_line_error(proc, "--multiview-test", "'cifar'")


def test_logreg_name_must_name_a_logreg_layer(trained):
    assert_one_line_error(cli("-f", trained["dir"], "--test-only=1", "--logreg-name=probs"),
                          "'probs'", "cost.logreg")
    assert_one_line_error(cli("-f", trained["dir"], "--test-only=1", "--logreg-name=nope"), "'nope'")


def test_test_out_requires_multiview_and_logreg_name(tmp_path, trained):
    proc = cli("-f", trained["dir"], "--test-only=1", "--test-out=%s" % (tmp_path / "p"))
    assert proc.returncode != 0 and "requires" in proc.stdout


# ---------------------------------------------------------------------------------------
# 8. The demo learns
# ---------------------------------------------------------------------------------------

def test_demo_learns(tmp_path, capsys):
    """The demo as a user runs it (python -m cudaconvnet.convnet --demo: 40 epochs; about
    3.5 s with one BLAS thread, 10 s with several on a busy two-core machine).

    Measured (seed 0, NumPy engine, layers_cfg/*-digits.cfg at epsW=0.001): the test error
    sits on the ln(10) plateau for about 12 epochs (0.88 after epoch 1, 0.61 after 12), then
    falls: 0.28 (15), 0.16 (16), 0.089 (20), 0.053 (24), 0.017 (40: 6 of 360 digits). The
    bounds leave room for another machine's BLAS rounding to move the fall by a few epochs:
    below 20% after 20 epochs, at most 3% at the end."""
    pytest.importorskip("sklearn")
    from cudaconvnet.demo import run_demo

    assert run_demo(["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    m = re.search(r"Demo finished: test error (\d+\.\d+)% \((\d+) of 360 held-out digits\)", out)
    assert m, out[-2000:]
    errors = [float(v) for v in re.findall(r"={22}Test output={22}\nlogprob:  [\d.]+, ([\d.]+) ", out)]
    assert len(errors) == 40  # one test per epoch (--test-freq=4, four training batches)
    assert errors[0] > 0.5  # chance is 0.9: it starts knowing nothing
    assert errors[19] < 0.20
    assert float(m.group(1)) <= 3.0 and int(m.group(2)) <= 10
    assert abs(float(m.group(1)) / 100 - errors[-1]) < 1e-4
    folder = ckpt_dir(str(tmp_path))
    assert checkpoints(folder) == ["40.4"]
    assert "Resume for 10 more epochs:  python -m cudaconvnet.convnet -f %s --epochs=50" % folder in out
    # the mean subtracted is the training digits' (batches 1-4), the test digits kept out
    batches = tmp_path / "digits-batches"
    train = np.hstack([unpickle(str(batches / ("data_batch_%d" % b)))["data"] for b in range(1, 5)])
    assert train.shape[1] == 1437
    np.testing.assert_allclose(unpickle(str(batches / "batches.meta"))["data_mean"],
                               train.mean(axis=1, keepdims=True, dtype=np.float64), rtol=1e-6)


def test_demo_without_scikit_learn_is_one_line(tmp_path, monkeypatch):
    from cudaconvnet.demo import run_demo

    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(StopTraining) as e:
        run_demo(["--out", str(tmp_path)])
    assert e.value.status == 1 and "scikit-learn" in e.value.message and "\n" not in e.value.message


def test_demo_bad_arguments_are_one_line(tmp_path):
    from cudaconvnet.demo import run_demo

    with pytest.raises(StopTraining, match="--epochs must be at least 1"):
        run_demo(["--out", str(tmp_path), "--epochs", "0"])
    (tmp_path / "a-file").write_text("")
    with pytest.raises(StopTraining) as e:
        run_demo(["--out", str(tmp_path / "a-file")])
    assert e.value.message.startswith("cannot write the demo's batches to ") and "\n" not in e.value.message


# ---------------------------------------------------------------------------------------
# 9. HDF5 export
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("net", ["conv", "hs"])
def test_hdf5_export(tmp_path, trained, data8, net):
    h5py = pytest.importorskip("h5py")
    if net == "conv":
        folder = trained["dir"]
    else:
        ldef, lpar = write_net(tmp_path, "hs", HS_NET, HS_PARAMS)
        status, out = train(*base_args(data8, str(tmp_path / "save"), ldef, lpar, epochs=1))
        assert status == 0, out[-2000:]
        folder = ckpt_dir(str(tmp_path / "save"))
    out_h5 = tmp_path / "w.h5"
    proc = cli(folder, str(out_h5), module="cudaconvnet.export")
    assert proc.returncode == 0, proc.stderr
    source = IGPUModel.checkpoint_file(folder)
    ms = load(source)["model_state"]
    with h5py.File(out_h5, "r") as f:
        assert f.attrs["epoch"] == ms["epoch"] and f.attrs["batchnum"] == ms["batchnum"]
        assert f.attrs["source_checkpoint"] == os.path.abspath(source)
        weight_layers = [l for l in (layer_dicts(ms) if net == "hs" else ms["layers"]) if "weights" in l]
        assert sorted(f.keys()) == sorted(l["name"] for l in weight_layers)
        assert list(f.attrs["layers"]) == [l["name"] for l in (ms["layers"] if net == "conv" else
                                                              [ms["layers"][k] for k in ms["layers"]])
                                           if "weights" in l]
        for l in weight_layers:
            g = f[l["name"]]
            for i, w in enumerate(l["weights"]):
                assert g["weights_%d" % i].dtype == np.float32
                assert np.array_equal(g["weights_%d" % i][()], w)
                assert np.array_equal(g["weightsInc_%d" % i][()], l["weightsInc"][i])
            assert np.array_equal(g["biases"][()], l["biases"])
            assert np.array_equal(g["biasesInc"][()], l["biasesInc"])
            assert g.attrs["type"] == l["type"]
            assert g.attrs["outputs"] == l["outputs"]
            assert list(g.attrs["epsW"]) == list(l["epsW"])
            if l["type"] == "conv":
                for k in ("filters", "filterSize", "padding", "stride", "channels"):
                    assert g.attrs[k] == l[k], k
        if net == "conv":
            assert f.attrs["dialect"] == "cuda-convnet"
            assert list(f["conv1"].attrs["inputs"]) == ["data"]
            assert f["conv1"].attrs["neuron"] == "relu"
            assert list(f["fc4"].attrs["inputs"]) == ["pool1"]
            # flags as integers, lists of ints as int64, of floats as float64
            shared = f["conv1"].attrs["sharedBiases"]
            assert isinstance(shared, np.integer) and shared == 1
            assert f["conv1"].attrs["filterSize"].dtype == np.int64
            assert f["conv1"].attrs["epsW"].dtype == np.float64
        else:
            assert f.attrs["dialect"] == "alexnet"
            assert list(f["fc4"].attrs["inputs"]) == ["drop"]


def test_hdf5_export_keeps_the_checkpoints_layer_order(tmp_path, trained):
    """f.attrs['layers'] lists the layers as the checkpoint holds them, not by name: here the
    conv layer renamed 'zconv1' still comes before fc4 (cuda-convnet inputs are indices)."""
    h5py = pytest.importorskip("h5py")
    dic = load(os.path.join(trained["dir"], "2.2"))
    first = next(l for l in dic["model_state"]["layers"] if l["name"] == "conv1")
    first["name"] = "zconv1"
    pickle(str(tmp_path / "2.2"), dic)
    proc = cli(str(tmp_path / "2.2"), str(tmp_path / "w.h5"), module="cudaconvnet.export")
    assert proc.returncode == 0, proc.stderr
    with h5py.File(tmp_path / "w.h5", "r") as f:
        assert list(f.attrs["layers"]) == [l["name"] for l in dic["model_state"]["layers"] if "weights" in l]
        assert list(f.attrs["layers"])[0] == "zconv1"
        assert list(f["fc4"].attrs["inputs"]) == ["pool1"]


def test_hdf5_neuron_names():
    from cudaconvnet.export import _neuron_str
    assert _neuron_str({"type": "tanh", "params": {"a": 1.7159, "b": 0.6666}}) == "tanh[1.7159,0.6666]"
    assert _neuron_str({"type": "relu", "params": {}}) == "relu"


def test_hdf5_export_errors(tmp_path):
    proc = cli(str(tmp_path / "nowhere"), str(tmp_path / "w.h5"), module="cudaconvnet.export")
    assert_one_line_error(proc, str(tmp_path / "nowhere"))
    assert not (tmp_path / "w.h5").exists()
