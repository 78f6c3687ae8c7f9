"""Python 2.7's dict iteration order for string keys, reproduced.

The AlexNet 2012 parser keeps its layers in a plain dict and walks it to detach neuron
layers, to check for unused layers and to read layer-params.cfg. So which layer is reported
first, and the order of the printed "Initialized neuron layer" lines, follow CPython 2.7's
hash table (64-bit, no hash randomisation). This module replays that table.
"""

_MASK64 = (1 << 64) - 1
_MINSIZE = 8
_PERTURB_SHIFT = 5


def py2_str_hash(key):
    """CPython 2.7 string hash of `key` (str, taken as latin-1 bytes) on a 64-bit build."""
    data = key.encode("latin-1")
    if not data:
        return 0
    x = (data[0] << 7) & _MASK64
    for byte in data:
        x = ((1000003 * x) & _MASK64) ^ byte
    x ^= len(data)
    if x == _MASK64:  # a C long hash of -1 is reserved for errors
        x = _MASK64 - 1
    return x


class Py2Dict(dict):
    """A dict whose iteration order is CPython 2.7's for the same insertions.

    Only insertion is supported (the 2012 parser never deletes a layer).
    """

    def __init__(self):
        super().__init__()
        self._table = [None] * _MINSIZE
        self._fill = 0

    def __setitem__(self, key, value):
        if key not in self:
            self._insert(key)
        super().__setitem__(key, value)

    def _insert(self, key):
        self._place(self._table, key)
        self._fill += 1
        used = len(self) + 1  # counting the key about to be stored
        if self._fill * 3 >= len(self._table) * 2:
            self._resize((2 if used > 50000 else 4) * used)

    @staticmethod
    def _place(table, key):
        mask = len(table) - 1
        h = py2_str_hash(key)
        i = h & mask
        perturb = h
        while table[i & mask] is not None:
            i = ((i << 2) + i + perturb + 1) & _MASK64
            perturb >>= _PERTURB_SHIFT
        table[i & mask] = key

    def _resize(self, minused):
        newsize = _MINSIZE
        while newsize <= minused:
            newsize <<= 1
        old = [k for k in self._table if k is not None]
        self._table = [None] * newsize
        for key in old:
            self._place(self._table, key)
        self._fill = len(old)

    def insertion_order(self):
        """The keys in the order they were first stored (Python 3's order)."""
        return list(dict.__iter__(self))

    def __iter__(self):
        return iter([k for k in self._table if k is not None])

    def keys(self):
        return list(iter(self))

    def values(self):
        return [self[k] for k in self]

    def items(self):
        return [(k, self[k]) for k in self]
