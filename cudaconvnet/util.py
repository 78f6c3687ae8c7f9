"""Pickling helpers: atomic writes, a restricted reader for old and new pickles, alphanum sort.

Stands for the 2012 util.py (cuda-convnet r561), minus its GPU-lock and CPU-vendor helpers.
"""

import collections
import contextlib
import copyreg
import gzip
import io
import os
import pickle as _pickle
import re
import tempfile
import zipfile

import numpy as np

__all__ = [
    "UnpickleError", "UnsafePickleError", "atomic_output", "pickle", "unpickle", "register_pickle_class",
    "alphanum_key", "alphanum_sorted",
]


class UnpickleError(Exception):
    """A file could not be read back; the message is one line and names the file."""


class UnsafePickleError(UnpickleError):
    """The file asks for a Python global that is not plain data, so it is not loaded."""


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------

_umask = None


def _default_mode():
    # mkstemp makes 0600 files; a checkpoint or batch should get the mode open() would give.
    global _umask
    if _umask is None:
        _umask = os.umask(0)
        os.umask(_umask)
    return 0o666 & ~_umask


def _fsync_dir(dirname):
    # The rename is only durable once the directory entry is on disk (POSIX; no-op elsewhere).
    try:
        fd = os.open(dirname, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(filename):
    """Yields a temporary path beside filename to write to; when the block ends without an
    error the file is fsynced and renamed over filename (then the directory is fsynced),
    otherwise it is deleted. A crash at any moment leaves the old file or the new one.

    The temporary file is hidden: ".<name>.tmp-XXXX". It gets the mode open() would give
    (or the mode of the file it replaces).
    """
    filename = os.fspath(filename)
    dirname = os.path.dirname(os.path.abspath(filename))
    mode = (os.stat(filename).st_mode & 0o7777) if os.path.exists(filename) else _default_mode()
    fd, tmp = tempfile.mkstemp(dir=dirname, prefix="." + os.path.basename(filename) + ".tmp-")
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, filename)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(dirname)


def pickle(filename, obj, compress=False):
    """Write obj to filename atomically (see atomic_output).

    compress=True writes a zip archive with one entry 'data', as 2012's --zip-save did.
    Protocol: the highest this Python has (>= 5), so large numpy arrays are not copied.
    """
    with atomic_output(filename) as tmp:
        with open(tmp, "wb") as fo:
            if compress:
                with zipfile.ZipFile(fo, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
                    with zf.open("data", "w", force_zip64=True) as entry:
                        _pickle.dump(obj, entry, protocol=_pickle.HIGHEST_PROTOCOL)
            else:
                _pickle.dump(obj, fo, protocol=_pickle.HIGHEST_PROTOCOL)


# ---------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------

def _numpy_attr(*paths):
    # numpy 2 moved numpy.core to numpy._core; old pickles name the old place, new ones the
    # new one.  Resolve to whichever exists without touching the deprecated numpy.core shim.
    import importlib
    for modname, attr in paths:
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            continue
        if hasattr(mod, attr):
            return getattr(mod, attr)
    raise ImportError("numpy has none of %s" % ", ".join("%s.%s" % p for p in paths))


def _safe_reconstructor(cls, base, state):
    # Python 2's copy_reg._reconstructor (protocol 0/1 pickles of new-style class instances).
    # cls came through find_class, so it is allowed; base must be a plain builtin.
    if base not in (object, dict, list):
        raise _pickle.UnpicklingError("copy_reg._reconstructor with base %r" % (base,))
    return copyreg._reconstructor(cls, base, state)


def _latin1_encode(obj, encoding="latin1"):
    # Python 3 writes bytes in protocol 2 as _codecs.encode(str, 'latin1'); allow only that.
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise _pickle.UnpicklingError("_codecs.encode with encoding %r" % (encoding,))
    return obj.encode("latin1")


class _Refused(Exception):
    """Raised while unpickling by the numpy wrappers below; unpickle() names the file."""


class _NdarrayName:
    """Stands for numpy.ndarray, which numpy's pickles name only as _reconstruct's class;
    called, it would wrap file bytes as any dtype, objects included."""

    def __call__(self, *args):
        raise _Refused("it calls numpy.ndarray")


_NDARRAY = _NdarrayName()


def _plain_dtype(dt):
    """dt as a numpy dtype, if numpy itself would build it so from its name: numbers, text
    or Python objects, no fields.  A pickle sets a dtype's state (flags, sizes) by hand, and
    a forged one (an object dtype whose flags hide its objects, or the reverse) makes numpy
    take bytes from the file for pointers."""
    if not isinstance(dt, np.dtype):
        dt = np.dtype(dt)
    try:
        fresh = np.dtype(dt.str)
    except TypeError:  # a forged size: '|S-1'
        fresh = None
    if (fresh is not None and dt.kind in "biufcSUO" and dt.fields is None and dt.subdtype is None
            and dt.type is fresh.type and dt.itemsize == fresh.itemsize
            and dt.alignment == fresh.alignment and dt.flags == fresh.flags):
        return dt
    raise _Refused("it builds a numpy dtype (%s, flags %d) other than numpy's own for numbers, "
                   "text or objects" % (dt.str, dt.flags))


def _build_allowed():
    reconstruct = _numpy_attr(("numpy._core.multiarray", "_reconstruct"),
                              ("numpy.core.multiarray", "_reconstruct"))
    scalar = _numpy_attr(("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"))
    frombuffer = _numpy_attr(("numpy._core.numeric", "_frombuffer"),
                             ("numpy.core.numeric", "_frombuffer"))

    # numpy's own pickles call these with what they need; anything else is refused
    def checked_reconstruct(cls, shape, typecode):
        if cls is not _NDARRAY or any(int(n) != 0 for n in shape[:1]):
            raise _Refused("it rebuilds an array other than numpy's way")
        return reconstruct(np.ndarray, shape, _plain_dtype(typecode))

    def checked_scalar(dtype, *data):
        return scalar(_plain_dtype(dtype), *data)

    def checked_frombuffer(buf, dtype, shape, order):
        return frombuffer(buf, _plain_dtype(dtype), shape, order)

    def checked_dtype(obj, align=False, copy=False):
        # always numpy's copy: a BUILD on the shared float64 dtype would change every array's
        return _plain_dtype(np.dtype(obj, bool(align), True))

    def no_size(ctor):
        def build(*args):
            if args and isinstance(args[0], int):  # bytes(n): n zero bytes the file never held
                raise _Refused("it asks for %s(%d)" % (ctor.__name__, args[0]))
            return ctor(*args)
        return build

    allowed = {
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): checked_dtype,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("ordereddict", "OrderedDict"): collections.OrderedDict,  # cc's own backport module
        ("copy_reg", "_reconstructor"): _safe_reconstructor,
        ("copyreg", "_reconstructor"): _safe_reconstructor,
        ("_codecs", "encode"): _latin1_encode,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray",
                "numpy.core._multiarray_umath", "numpy._core._multiarray_umath"):
        allowed[(mod, "_reconstruct")] = checked_reconstruct
        allowed[(mod, "scalar")] = checked_scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(mod, "_frombuffer")] = checked_frombuffer
    for mod in ("builtins", "__builtin__"):
        for name, obj in (("set", set), ("frozenset", frozenset), ("complex", complex),
                          ("bytearray", no_size(bytearray)), ("slice", slice), ("object", object),
                          ("bytes", no_size(bytes))):  # protocol 2 from Python 3 spells b'' as bytes()
            allowed[(mod, name)] = obj
    return allowed


_ALLOWED = None
_REGISTERED = {}


def register_pickle_class(module, name, obj):
    """Let unpickle() map the global module.name (as the file spells it) to obj.

    For 2012 classes stored in checkpoints, e.g. ('options', 'OptionsParser').  Only
    register classes whose construction and __setstate__ run no code taken from the file.
    """
    _REGISTERED[(module, name)] = obj


class _RestrictedUnpickler(_pickle._Unpickler):
    """The Python unpickler (not the C one), so that BUILD, which sets a dtype's or an
    array's state from the file, can be checked before numpy uses the result."""

    def __init__(self, fileobj, filename, extra):
        super().__init__(fileobj, encoding="latin1")
        self._filename = filename
        self._extra = extra

    def find_class(self, module, name):
        key = (module, name)
        for table in (self._extra, _REGISTERED, _ALLOWED):
            if table and key in table:
                return table[key]
        raise UnsafePickleError("refusing to load '%s': it asks for %s.%s, which is not plain "
                                "data and could run code" % (self._filename, module, name))

    def persistent_load(self, pid):
        raise UnsafePickleError("refusing to load '%s': it uses a persistent id, which only "
                                "its writer could resolve" % self._filename)

    def load_build(self):
        inst, state = self.stack[-2], self.stack[-1]
        if isinstance(inst, np.dtype):
            # tried on a copy first: arrays made with inst already would take a forged state
            probe = np.dtype(inst.str, False, True)
            probe.__setstate__(state)
            _plain_dtype(probe)
        elif isinstance(inst, np.ndarray) and isinstance(state, tuple):
            for part in state:
                if isinstance(part, np.dtype):
                    _plain_dtype(part)
        elif isinstance(inst, np.generic):  # numpy pickles its scalars whole, never so
            raise _Refused("it sets the state of a numpy scalar")
        super().load_build()

    dispatch = dict(_pickle._Unpickler.dispatch)
    dispatch[_pickle.BUILD[0]] = load_build


_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


def _open_payload(filename):
    """Return a binary stream of the pickle inside filename: plain, gzip or zip."""
    with open(filename, "rb") as f:
        head = f.read(4)
    if head[:2] == _GZIP_MAGIC:
        return gzip.open(filename, "rb")
    if head in _ZIP_MAGICS:
        with zipfile.ZipFile(filename, "r") as zf:
            names = zf.namelist()
            # 2012 stored the pickle in an entry named 'data'; accept a lone entry too.
            entry = "data" if "data" in names else (names[0] if len(names) == 1 else None)
            if entry is None:
                raise UnpickleError("cannot load '%s': zip archive has no 'data' entry" % filename)
            return io.BytesIO(zf.read(entry))
    return open(filename, "rb")


def unpickle(filename, extra_classes=None):
    """Load a pickle (plain, gzip or zip) that may hold only data.

    Allowed: builtin containers and scalars, numpy arrays/dtypes/scalars (old and new numpy
    module names), collections.OrderedDict (also 2012's ordereddict.OrderedDict), Python 2
    instances rebuilt with copy_reg._reconstructor, plus extra_classes
    {(module, name): object} and anything given to register_pickle_class.
    Python 2 pickles load with encoding='latin1', so their str keys and numpy buffers come
    back as str and arrays (b'data' never appears).  Every failure raises UnpickleError
    with one line naming the file; nothing from the file is ever executed.
    """
    global _ALLOWED
    if _ALLOWED is None:
        _ALLOWED = _build_allowed()
    filename = os.fspath(filename)
    if not os.path.exists(filename):
        raise UnpickleError("Path '%s' does not exist." % filename)  # 2012's words
    if os.path.isdir(filename):
        raise UnpickleError("cannot load '%s': it is a directory, not a file" % filename)
    try:
        with _open_payload(filename) as stream:
            return _RestrictedUnpickler(stream, filename, extra_classes).load()
    except UnpickleError:
        raise
    except _Refused as e:
        raise UnsafePickleError("refusing to load '%s': %s" % (filename, e)) from None
    except EOFError:
        raise UnpickleError("cannot load '%s': the file is truncated" % filename) from None
    except MemoryError:
        raise UnpickleError("cannot load '%s': not enough memory" % filename) from None
    except Exception as e:  # any other failure means the bytes are not a valid pickle
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if any(w in reason.lower() for w in ("truncated", "ran out of input", "exhausted")):
            raise UnpickleError("cannot load '%s': the file is truncated" % filename) from None
        raise UnpickleError("cannot load '%s': the file is corrupt or not a pickle (%s: %s)"
                            % (filename, type(e).__name__, reason)) from None


# ---------------------------------------------------------------------------------------
# Sorting checkpoint names: "1.10" after "1.9"
# ---------------------------------------------------------------------------------------

_DIGITS = re.compile(r"([0-9]+)")


def alphanum_key(s):
    """Sort key that compares runs of digits as numbers ("1.10" > "1.9"), as 2012's did.

    re.split with a capturing group alternates text, digits, text, ...; so digit runs
    always sit at odd positions and two keys never compare an int with a str.
    """
    return [int(part) if i % 2 else part for i, part in enumerate(_DIGITS.split(s))]


def alphanum_sorted(names):
    return sorted(names, key=alphanum_key)
