"""util.py: atomic pickling, the restricted unpickler (old and new pickles), alphanum sort."""

import collections
import gzip
import os
import pickle as std_pickle
import signal
import struct
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from cudaconvnet import util
from cudaconvnet.util import UnpickleError, UnsafePickleError, alphanum_key, pickle, unpickle

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------------------
# A tiny assembler for Python 2 style protocol-2 pickles (what cPickle and numpy 1.x wrote)
# ---------------------------------------------------------------------------------------

def _s(b):  # SHORT_BINSTRING: a Python 2 str (bytes), which latin1 decoding turns into str
    if isinstance(b, str):
        b = b.encode("latin1")
    return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b


def _int(i):
    return b"J" + struct.pack("<i", i)


def _global(mod, name):
    return b"c" + mod.encode() + b"\n" + name.encode() + b"\n"


def _py2_ndarray(a):
    """The byte stream numpy 1.x under Python 2 wrote for an ndarray (protocol 2)."""
    a = np.ascontiguousarray(a)
    shape = b"(" + b"".join(_int(d) for d in a.shape) + b"t"
    order = "|" if a.dtype.itemsize == 1 else "<"
    dtype = (_global("numpy", "dtype") + _s(a.dtype.str[1:]) + _int(0) + _int(1) + b"\x87R"
             + b"(" + _int(3) + _s(order) + b"NNN" + _int(-1) + _int(-1) + _int(0) + b"tb")
    return (_global("numpy.core.multiarray", "_reconstruct") + _global("numpy", "ndarray")
            + _int(0) + b"\x85" + _s(b"b") + b"\x87R"
            + b"(" + _int(1) + shape + dtype + b"\x89" + _s(a.tobytes()) + b"tb")


def _py2_scalar(x):
    x = np.float64(x)
    dtype = (_global("numpy", "dtype") + _s("f8") + _int(0) + _int(1) + b"\x87R"
             + b"(" + _int(3) + _s("<") + b"NNN" + _int(-1) + _int(-1) + _int(0) + b"tb")
    return _global("numpy.core.multiarray", "scalar") + dtype + _s(x.tobytes()) + b"\x86R"


def _py2_dict(pairs):
    out = b"}("
    for k, v in pairs:
        out += _s(k) + v
    return out + b"u"


def _py2_list(ints):
    return b"](" + b"".join(_int(i) for i in ints) + b"e"


def _py2_pickle(body):
    return b"\x80\x02" + body + b"."


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------

def test_round_trip_plain_and_zip(tmp_path):
    obj = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "name": "conv1", "n": 3,
           "od": collections.OrderedDict([("a", 1), ("b", [1.5, None])]), "s": {1, 2}}
    for compress in (False, True):
        path = tmp_path / ("ck_%d" % compress)
        pickle(path, obj, compress=compress)
        back = unpickle(path)
        assert back["name"] == "conv1" and back["od"] == obj["od"] and back["s"] == {1, 2}
        np.testing.assert_array_equal(back["w"], obj["w"])
        assert back["w"].dtype == np.float32
    assert zipfile.is_zipfile(tmp_path / "ck_1")
    with zipfile.ZipFile(tmp_path / "ck_1") as zf:
        assert zf.namelist() == ["data"]  # the 2012 --zip-save layout


def test_pickle_replaces_whole_and_leaves_no_temp(tmp_path):
    path = tmp_path / "f"
    pickle(path, {"v": 1})
    os.chmod(path, 0o640)
    pickle(path, {"v": 2})
    assert unpickle(path) == {"v": 2}
    assert os.stat(path).st_mode & 0o777 == 0o640  # the mode of the file it replaces
    with pytest.raises(Exception):
        pickle(path, {"v": lambda: 0})  # cannot be pickled: the old file must survive
    assert unpickle(path) == {"v": 2}
    assert sorted(os.listdir(tmp_path)) == ["f"]


_WRITER = r"""
import sys, numpy as np
sys.path.insert(0, %(repo)r)
from cudaconvnet.util import pickle
print("ready", flush=True)
i = 0
while True:
    i += 1
    pickle(%(path)r, {"i": i, "payload": np.full(1 << 21, i, dtype=np.int32)})
"""


def test_sigkill_while_saving_leaves_a_complete_file(tmp_path):
    path = str(tmp_path / "checkpoint")
    pickle(path, {"i": 0, "payload": np.full(1 << 21, 0, dtype=np.int32)})
    rs = np.random.RandomState(0)
    seen, torn = set(), 0
    for trial in range(8):
        child = subprocess.Popen([sys.executable, "-c", _WRITER % {"repo": REPO, "path": path}],
                                 stdout=subprocess.PIPE)
        assert child.stdout.readline().strip() == b"ready"
        time.sleep(0.02 + 0.15 * rs.rand())
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        d = unpickle(path)  # must load: the old file or the new one, never a torn one
        assert d["payload"].shape == (1 << 21,)
        assert (d["payload"] == d["i"]).all()
        seen.add(d["i"])
        # A kill mid-save leaves a torn temporary: hidden (a dot-name), never the target.
        others = [n for n in os.listdir(tmp_path) if n != "checkpoint"]
        assert all(n.startswith(".checkpoint.tmp-") for n in others)
        torn += bool(others)
        for n in others:
            os.unlink(tmp_path / n)
    # Kills landed after several different saves and (most of them) in the middle of one.
    assert len(seen) > 1 and torn > 0


# ---------------------------------------------------------------------------------------
# Reading: formats
# ---------------------------------------------------------------------------------------

def test_reads_gzip_and_foreign_zip(tmp_path):
    obj = {"data": np.arange(6, dtype=np.uint8), "labels": [1, 2]}
    with gzip.open(tmp_path / "g", "wb") as f:
        std_pickle.dump(obj, f, protocol=2)
    with zipfile.ZipFile(tmp_path / "z", "w") as zf:
        zf.writestr("data", std_pickle.dumps(obj))
    for name in ("g", "z"):
        back = unpickle(tmp_path / name)
        np.testing.assert_array_equal(back["data"], obj["data"])
        assert back["labels"] == [1, 2]


@pytest.mark.parametrize("protocol", range(0, std_pickle.HIGHEST_PROTOCOL + 1))
def test_numpy_pickles_of_every_protocol(tmp_path, protocol):
    obj = {"f": np.arange(6, dtype=np.float32).reshape(2, 3), "fo": np.ones((2, 3), order="F"),
           "s": np.float64(2.5), "i": np.int64(7), "dt": np.dtype("f4"), "b": b"", "c": 1 + 2j,
           "fs": frozenset([1]), "ba": bytearray(b"xy"),
           "kinds": [np.zeros(2, t) for t in ("?", "i1", "u2", "c8", "S3", "U2")],
           "o": np.array([{"a": 1}, None, "x"], dtype=object)}
    (tmp_path / "p").write_bytes(std_pickle.dumps(obj, protocol=protocol))
    back = unpickle(tmp_path / "p")
    np.testing.assert_array_equal(back["f"], obj["f"])
    np.testing.assert_array_equal(back["fo"], obj["fo"])
    assert back["s"] == 2.5 and back["i"] == 7 and back["dt"] == np.dtype("f4")
    assert back["b"] == b"" and back["c"] == 1 + 2j and back["fs"] == {1} and back["ba"] == b"xy"
    assert [a.dtype for a in back["kinds"]] == [a.dtype for a in obj["kinds"]]
    assert list(back["o"]) == [{"a": 1}, None, "x"]


def test_python2_pickle_with_numpy_and_latin1_strings(tmp_path):
    data = np.arange(24, dtype=np.uint8).reshape(6, 4)
    mean = np.linspace(0, 1, 6).reshape(6, 1)
    raw = _py2_pickle(_py2_dict([
        ("data", _py2_ndarray(data)),
        ("data_mean", _py2_ndarray(mean)),
        ("labels", _py2_list([3, 1, 4, 1])),
        ("batch_label", _s(b"caf\xe9 batch")),
        ("scale", _py2_scalar(0.25)),
    ]))
    (tmp_path / "data_batch_1").write_bytes(raw)
    d = unpickle(tmp_path / "data_batch_1")
    # str keys (not b'data'), so batch['data'] works for 2012 and official CIFAR pickles.
    assert set(d) == {"data", "data_mean", "labels", "batch_label", "scale"}
    np.testing.assert_array_equal(d["data"], data)
    np.testing.assert_array_equal(d["data_mean"], mean)
    assert d["labels"] == [3, 1, 4, 1]
    assert d["batch_label"] == "caf\xe9 batch"
    assert d["scale"] == 0.25


class _Opts:
    """Stands in for the port's options.OptionsParser."""


def test_python2_instances_need_an_explicit_mapping(tmp_path):
    # Old-style instance: MARK, GLOBAL options.OptionsParser, OBJ, then BUILD with its dict.
    inst = b"(" + _global("options", "OptionsParser") + b"o" + _py2_dict([("value", _int(5))]) + b"b"
    # New-style instance through copy_reg._reconstructor (protocols 0/1).
    recon = (_global("copy_reg", "_reconstructor") + b"(" + _global("options", "OptionsParser")
             + _global("__builtin__", "object") + b"Nt" + b"R" + _py2_dict([("value", _int(6))]) + b"b")
    od = (_global("ordereddict", "OrderedDict") + b"(]("
          + b"](" + _s("b") + _int(2) + b"e" + b"](" + _s("a") + _int(1) + b"e" + b"e" + b"tR")
    raw = _py2_pickle(_py2_dict([("op", inst), ("op2", recon), ("od", od)]))
    (tmp_path / "ck").write_bytes(raw)
    with pytest.raises(UnsafePickleError, match=r"options\.OptionsParser"):
        unpickle(tmp_path / "ck")
    d = unpickle(tmp_path / "ck", extra_classes={("options", "OptionsParser"): _Opts})
    assert isinstance(d["op"], _Opts) and d["op"].value == 5
    assert isinstance(d["op2"], _Opts) and d["op2"].value == 6
    assert isinstance(d["od"], collections.OrderedDict) and list(d["od"].items()) == [("b", 2), ("a", 1)]


def test_register_pickle_class(tmp_path):
    raw = _py2_pickle(b"(" + _global("layer", "Thing") + b"o" + _py2_dict([("x", _int(1))]) + b"b")
    (tmp_path / "p").write_bytes(raw)
    with pytest.raises(UnsafePickleError):
        unpickle(tmp_path / "p")
    util.register_pickle_class("layer", "Thing", _Opts)
    try:
        assert unpickle(tmp_path / "p").x == 1
    finally:
        util._REGISTERED.pop(("layer", "Thing"))


# ---------------------------------------------------------------------------------------
# Reading: hostile and broken files
# ---------------------------------------------------------------------------------------

class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, ("touch %s" % self.target,))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("1+1",))


def test_hostile_pickle_is_refused_and_runs_nothing(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(std_pickle.dumps({"data": _Evil(target)}, protocol=2))
    with pytest.raises(UnsafePickleError) as ei:
        unpickle(path)
    msg = str(ei.value)
    assert "\n" not in msg and str(path) in msg and "system" in msg and "could run code" in msg
    assert not target.exists()
    # The same refusal inside gzip and zip wrappers, and for other callables.
    with gzip.open(tmp_path / "evil.gz", "wb") as f:
        f.write(std_pickle.dumps(_Evil(target)))
    with pytest.raises(UnsafePickleError):
        unpickle(tmp_path / "evil.gz")
    (tmp_path / "eval.pkl").write_bytes(std_pickle.dumps(_EvalEvil()))
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        unpickle(tmp_path / "eval.pkl")
    assert not target.exists()


def _py2_dtype(code, flags, elsize=-1, order="|"):
    """numpy.dtype(code) whose pickled state gives it these flags and size (numpy wrote
    flags 0 and, for text, its size)."""
    return (_global("numpy", "dtype") + _s(code) + _int(0) + _int(1) + b"\x87R"
            + b"(" + _int(3) + _s(order) + b"NNN" + _int(elsize) + _int(1) + _int(flags) + b"tb")


def _py2_array_of(dtype, raw, shape=(0,)):
    return (_global("numpy.core.multiarray", "_reconstruct") + _global("numpy", "ndarray")
            + b"(" + b"".join(_int(d) for d in shape) + b"t" + _s(b"b") + b"\x87R"
            + b"(" + _int(1) + b"(" + _int(1) + b"t" + dtype + b"\x89" + _s(raw) + b"tb")


FORGED = {
    # an object dtype whose flags say it holds none: numpy would take 8 file bytes for a pointer
    "object scalar": _global("numpy.core.multiarray", "scalar") + _py2_dtype("O8", 0) + _s(b"A" * 8) + b"\x86R",
    "object array": _py2_array_of(_py2_dtype("O8", 0), b"A" * 8),
    # the reverse: bytes whose flags say they are objects
    "text claiming objects": _py2_array_of(_py2_dtype("S8", 63, elsize=8), b"A" * 8),
    "text of size -1": _py2_array_of(_py2_dtype("S8", 0), b"A" * 8),
    # numpy.ndarray is only a class for _reconstruct: called, it would wrap a buffer as objects
    "ndarray on a buffer": _global("numpy", "ndarray") + _int(1) + b"\x85" + _py2_dtype("O8", 63)
                           + _s(b"A" * 8) + b"\x87R",
    "array of 8 GB": _py2_array_of(_py2_dtype("f8", 0), b"", shape=(2 ** 30,)),
    "bytearray of 3 GB": _global("__builtin__", "bytearray") + b"\x8a\x05" + (3 * 10 ** 9).to_bytes(5, "little") + b"\x85R",
    # a dtype made honestly, used by an array, then given a forged state (memo 0: BINPUT/BINGET)
    "dtype forged after use": (_py2_dtype("S8", 0, elsize=8) + b"q\x00"
                               + _py2_array_of(b"h\x00", b"A" * 8)
                               + b"h\x00(" + _int(3) + _s("|") + b"NNN" + _int(8) + _int(1) + _int(63) + b"tb"
                               + b"\x86"),
    "numpy scalar with a state": (_global("numpy.core.multiarray", "scalar") + _py2_dtype("f8", 0, order="<")
                                  + _s(b"\x00" * 8) + b"\x86R" + b"(" + _int(1) + b"tb"),
}


def test_forged_numpy_state_is_refused(tmp_path):
    """Pickles that use only allowed globals but forge numpy's state or ask for memory the
    file never held: each is refused in one line; loaded in a child, so that a regression
    shows as a failed test instead of a crashed test run."""
    for name, body in FORGED.items():
        (tmp_path / name.replace(" ", "_")).write_bytes(_py2_pickle(body))
    script = ("import os, sys\nfrom cudaconvnet.util import unpickle, UnpickleError\n"
              "for f in sorted(os.listdir(sys.argv[1])):\n"
              "    try:\n        unpickle(os.path.join(sys.argv[1], f)); print(f, 'LOADED')\n"
              "    except UnpickleError as e:\n        print(f, type(e).__name__, e)\n")
    env = dict(os.environ, PYTHONPATH=REPO)
    res = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    assert len(lines) == len(FORGED), res.stdout
    for line in lines:
        assert "LOADED" not in line and str(tmp_path) in line, line
    refused = {l.split()[0]: l for l in lines}
    for name in ("object_scalar", "object_array", "text_claiming_objects", "text_of_size_-1",
                 "dtype_forged_after_use"):
        assert "UnsafePickleError" in refused[name] and "dtype" in refused[name]
    for name in ("ndarray_on_a_buffer", "array_of_8_GB", "bytearray_of_3_GB", "numpy_scalar_with_a_state"):
        assert "UnsafePickleError" in refused[name]


def test_dtype_state_never_reaches_numpys_own_dtypes(tmp_path):
    """numpy.dtype('f8', 0, 0) is numpy's shared float64; a BUILD on it would make every
    float64 array in the process big-endian. The reader only ever hands out copies."""
    raw = _py2_pickle(_global("numpy", "dtype") + _s("f8") + _int(0) + _int(0) + b"\x87R"
                      + b"(" + _int(3) + _s(">") + b"NNN" + _int(-1) + _int(-1) + _int(0) + b"tb")
    (tmp_path / "p").write_bytes(raw)
    assert unpickle(tmp_path / "p").str == ">f8"
    assert np.dtype("f8").str == "<f8" and np.zeros(1).dtype.str == "<f8"


def test_reconstructor_with_foreign_base_is_refused(tmp_path):
    # (set, set, ()) would build set(()) without the check: only the base check refuses it
    raw = _py2_pickle(_global("copy_reg", "_reconstructor") + b"(" + _global("__builtin__", "set")
                      + _global("__builtin__", "set") + b")t" + b"R")
    (tmp_path / "p").write_bytes(raw)
    with pytest.raises(UnpickleError, match="_reconstructor with base"):
        unpickle(tmp_path / "p")


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage", "gzip-truncated", "zip-bad"])
def test_broken_files_give_one_line_errors(tmp_path, damage):
    good = std_pickle.dumps({"data": np.arange(1000, dtype=np.float32)}, protocol=4)
    path = tmp_path / "data_batch_7"
    if damage == "truncate":
        path.write_bytes(good[:len(good) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(b"this is not a pickle at all\x00\x01")
    elif damage == "gzip-truncated":
        path.write_bytes(gzip.compress(good)[:40])
    else:
        path.write_bytes(b"PK\x03\x04" + b"\x00" * 30)
    with pytest.raises(UnpickleError) as ei:
        unpickle(path)
    msg = str(ei.value)
    assert str(path) in msg and "\n" not in msg
    if damage in ("truncate", "empty"):
        assert "truncated" in msg


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(UnpickleError) as ei:
        unpickle(tmp_path / "nope")
    assert str(ei.value) == "Path '%s' does not exist." % (tmp_path / "nope")  # 2012's message
    with pytest.raises(UnpickleError, match="directory"):
        unpickle(tmp_path)


def test_alphanum_key_sorts_checkpoint_names():
    names = ["1.10", "10.1", "1.9", "2.1", "1.1", "1.100"]
    assert sorted(names, key=alphanum_key) == ["1.1", "1.9", "1.10", "1.100", "2.1", "10.1"]
    assert util.alphanum_sorted(["data_batch_10", "data_batch_9"]) == ["data_batch_9", "data_batch_10"]
    # Keys of unlike names still compare (digits always sit at odd positions).
    sorted(["a1", "1a", "", "b", "10"], key=alphanum_key)
