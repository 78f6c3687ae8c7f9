"""py2dict: CPython 2.7's string hash and dict iteration order, reproduced.

The AlexNet 2012 parser keeps its layers in a plain Python 2 dict, so which layer an error
names and the order of the detached neuron layers follow CPython 2.7's hash table. Every
expected value below was produced by running real CPython 2.7.18 (64-bit,
PYTHONHASHSEED=0, i.e. no hash randomisation, the 2.7 default), e.g.

    PYTHONHASHSEED=0 python2.7 -c "d = {}; d['conv1'] = 1; d['pool1'] = 1; print d.keys()"

and pasting its output here: CI has no Python 2.
"""
import pytest

from cudaconvnet.py2dict import Py2Dict, py2_str_hash

MASK64 = (1 << 64) - 1

# hash(s) under CPython 2.7.18, 64-bit (a signed C long).
PY2_HASHES = {
    "": 0,
    "a": 12416037344,
    "conv1": 7943920258675201330,
    "fc1000": 1855399575863915904,
    "logprob": -8971937542271291076,
    "data": -8818667644350330404,
    "\xe9t\xe9": -4116773383342158585,  # a latin-1 byte string: bytes are unsigned
    "conv1_neuron": 9077347149122760691,
}


def py2_order(keys):
    d = Py2Dict()
    for k in keys:
        d[k] = 1
    return d


@pytest.mark.parametrize("s", sorted(PY2_HASHES))
def test_string_hash_matches_python27(s):
    assert py2_str_hash(s) == PY2_HASHES[s] & MASK64


# (insertion order, CPython 2.7's d.keys())
PY2_ORDERS = [
    (["conv1", "pool1"], ["conv1", "pool1"]),
    # the same two keys collide in an 8-slot table: the first one in keeps the home slot
    (["pool1", "conv1"], ["pool1", "conv1"]),
    (["conv1", "fc8"], ["fc8", "conv1"]),
    (["fc8", "conv1"], ["fc8", "conv1"]),
    (list("abcdefghij"), ["a", "c", "b", "e", "d", "g", "f", "i", "h", "j"]),
    (["k%d" % i for i in range(6)], ["k3", "k2", "k1", "k0", "k5", "k4"]),
    # 30 keys: two resizes (8 -> 32 -> 128 slots); same order whichever way they went in
    (["x%d" % i for i in range(30)],
     ["x29", "x28", "x25", "x24", "x27", "x26", "x21", "x20", "x23", "x22", "x8", "x9", "x2", "x3", "x0",
      "x1", "x6", "x7", "x4", "x5", "x18", "x19", "x10", "x11", "x12", "x13", "x14", "x15", "x16", "x17"]),
    (["x%d" % i for i in reversed(range(30))],
     ["x29", "x28", "x25", "x24", "x27", "x26", "x21", "x20", "x23", "x22", "x8", "x9", "x2", "x3", "x0",
      "x1", "x6", "x7", "x4", "x5", "x18", "x19", "x10", "x11", "x12", "x13", "x14", "x15", "x16", "x17"]),
    # an AlexNet-like layer list with its detached neuron layers, in insertion order
    (["data", "labels", "conv1", "conv1_neuron", "pool1", "rnorm1", "conv2", "conv2_neuron", "pool2", "rnorm2",
      "conv3", "conv3_neuron", "conv4", "conv4_neuron", "conv5", "conv5_neuron", "pool3", "fc6", "fc6_neuron",
      "fc7", "fc7_neuron", "fc8", "probs", "logprob"],
     ["conv3_neuron", "fc6", "fc7", "fc8", "labels", "fc6_neuron", "probs", "conv3", "conv2", "conv1", "conv5",
      "conv4", "pool3", "pool2", "pool1", "logprob", "conv5_neuron", "data", "rnorm2", "conv2_neuron",
      "conv4_neuron", "conv1_neuron", "fc7_neuron", "rnorm1"]),
]


@pytest.mark.parametrize("inserted,expected", PY2_ORDERS)
def test_iteration_order_matches_python27(inserted, expected):
    d = py2_order(inserted)
    assert list(d) == expected
    assert d.keys() == expected
    assert [k for k, _ in d.items()] == expected
    assert len(d.values()) == len(expected)


def test_insertion_order_is_python3_order():
    d = py2_order(["fc8", "conv1", "data"])
    assert d.insertion_order() == ["fc8", "conv1", "data"]


def test_setting_an_existing_key_keeps_the_order():
    # CPython 2.7: {data, labels, conv1, pool1, fc8}; then d['conv1'] = 2
    d = py2_order(["data", "labels", "conv1", "pool1", "fc8"])
    d["conv1"] = 2
    assert list(d) == ["fc8", "conv1", "labels", "data", "pool1"]
    assert d["conv1"] == 2
    assert len(d) == 5


def test_values_and_items_follow_the_py2_order():
    d = Py2Dict()
    d["pool1"] = "p"
    d["conv1"] = "c"
    d["fc8"] = "f"
    keys = list(d)
    assert d.values() == [d[k] for k in keys]
    assert d.items() == [(k, d[k]) for k in keys]
    assert isinstance(d, dict) and d == {"pool1": "p", "conv1": "c", "fc8": "f"}
