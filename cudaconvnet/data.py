"""Data providers: batch files on disk -> (epoch, batchnum, data) for the training loop.

Stands for the 2012 data.py (cuda-convnet r561): the provider registry, batch ranges and
epochs, sub-batches, memory and dummy providers; plus the background loading the 2012
ImageNet providers did in threads, here for every provider, behind the same get_next_batch.
"""

import os
import re
import threading

import numpy as np

from .util import UnpickleError, alphanum_key, unpickle

__all__ = [
    "BATCH_META_FILE", "DataProviderException", "DataProvider", "MemoryDataProvider",
    "LabeledDataProvider", "LabeledMemoryDataProvider", "DummyDataProvider",
    "LabeledDummyDataProvider", "register_data_provider", "require_batch", "dp_types", "dp_classes",
]

BATCH_META_FILE = "batches.meta"


class DataProviderException(Exception):
    """Bad data directory, batch file or provider name; the message is one line."""


# what a value of the wrong kind in batches.meta or a batch raises deep inside a provider
_BAD_VALUE_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError)


def _bad_value(where, e):
    """The one-line error for a value no check foresaw: where it was, and what failed."""
    reason = str(e).splitlines()[0] if str(e) else ""
    return DataProviderException("%s holds a value this provider cannot use (%s%s)"
                                 % (where, type(e).__name__, ": " + reason if reason else ""))


def _str_keys(obj):
    # A dict re-pickled after loading a Python 2 file with encoding='bytes' has b'data' keys;
    # providers look up 'data', so give top-level keys back as str.
    if isinstance(obj, dict) and any(isinstance(k, bytes) for k in obj):
        return type(obj)((k.decode("latin1") if isinstance(k, bytes) else k, v)
                         for k, v in obj.items())
    return obj


def require_batch(dic, path):
    """A labelled batch is a dict with 'data' and 'labels'."""
    if not isinstance(dic, dict) or "data" not in dic or "labels" not in dic:
        raise DataProviderException("'%s' is not a batch: expected a dict with 'data' and 'labels'" % path)


def _num_cases(dic):
    """How many cases a batch dict holds: from its labels, else from its data list."""
    labels = dic.get("labels")
    if labels is not None:
        return int(np.size(labels)) if isinstance(labels, np.ndarray) else len(labels)
    data = dic.get("data")
    if isinstance(data, (list, tuple)):
        return len(data)
    return None


_MISS = object()


class _Prefetcher:
    """Runs one producer call at a time in a daemon thread, keyed by (epoch, batchnum).

    One call at a time keeps the provider's random draws in batch order, so a seeded run
    produces the same crops whether or not batches were prepared in the background.
    """

    def __init__(self):
        self._thread = None
        self._key = None
        self._box = None

    def start(self, key, fn, *args):
        self.discard()
        box = {}

        def run():
            try:
                box["result"] = fn(*args)
            except BaseException as e:  # handed to the consumer in take()
                box["error"] = e

        self._key, self._box = key, box
        self._thread = threading.Thread(target=run, name="cudaconvnet-prefetch", daemon=True)
        self._thread.start()

    def take(self, key):
        """The result for key if that is what is in flight (re-raising its error), else _MISS."""
        if self._thread is None:
            return _MISS
        self._thread.join()
        k, box = self._key, self._box
        self._thread = self._key = self._box = None
        if k != key:
            return _MISS
        if "error" in box:
            raise box["error"]
        return box["result"]

    def discard(self):
        if self._thread is not None:
            self._thread.join()
        self._thread = self._key = self._box = None


dp_types = {}
dp_classes = {}


class DataProvider:
    """Cycles through batch_range, one batch file per call, counting epochs as 2012 did.

    Subclasses override prepare_batch(dic, epoch, batchnum) to turn a loaded batch into
    what get_next_batch returns, and load_batch(batchnum) to change how one is loaded.
    Both run in a background thread one batch ahead of the caller (dp_params['prefetch'],
    default on), one call at a time.
    """

    BATCH_REGEX = re.compile(r"^data_batch_(\d+)(\.\d+)?$")
    prefetch = True

    def __init__(self, data_dir, batch_range=None, init_epoch=1, init_batchnum=None,
                 dp_params=None, test=False):
        dp_params = {} if dp_params is None else dp_params
        if not data_dir or not os.path.isdir(data_dir):
            raise DataProviderException("data directory '%s' does not exist" % (data_dir,))
        if batch_range is None:
            batch_range = DataProvider.get_batch_nums(data_dir)
        batch_range = [int(b) for b in batch_range]
        if not batch_range:
            raise DataProviderException("no data_batch_<n> files in '%s'" % data_dir)
        if init_batchnum is None or init_batchnum not in batch_range:
            init_batchnum = batch_range[0]

        self.data_dir = data_dir
        self.batch_range = batch_range
        self.curr_epoch = init_epoch
        self.curr_batchnum = init_batchnum
        self.dp_params = dp_params
        self.batch_meta = self.get_batch_meta(data_dir)
        self.data_dic = None
        self.test = test
        self.batch_idx = batch_range.index(init_batchnum)
        self.prefetch = bool(dp_params.get("prefetch", type(self).prefetch))
        self._prefetcher = _Prefetcher()
        self._rng_states, self._rng_lock = {}, threading.Lock()

    # ---- the 2012 cycle ----------------------------------------------------------------

    def get_next_batch(self):
        """Return (epoch, batchnum, data) for the current batch, then advance to the next.

        epoch and batchnum are those of the batch returned (the 2012 contract); after the
        call curr_epoch/curr_batchnum name the batch the next call returns.
        """
        epoch, batchnum = self.curr_epoch, self.curr_batchnum
        self.advance_batch()
        data = self._prefetcher.take((epoch, batchnum))
        if data is _MISS:
            data = self._produce(epoch, batchnum)
        if self.prefetch:
            self._prefetcher.start((self.curr_epoch, self.curr_batchnum), self._produce,
                                   self.curr_epoch, self.curr_batchnum)
        return epoch, batchnum, data

    def _produce(self, epoch, batchnum):
        rng = getattr(self, "rng", None)
        if rng is not None:
            # Note the generator's state before this batch's draws: a checkpoint needs the
            # state before the batch a resumed run prepares first, and by the time the
            # checkpoint is written the background thread has drawn ahead.
            with self._rng_lock:
                self._rng_states[(epoch, batchnum)] = rng.get_state()
                while len(self._rng_states) > 4:
                    del self._rng_states[next(iter(self._rng_states))]
        try:
            return self.prepare_batch(self.load_batch(batchnum), epoch, batchnum)
        except _BAD_VALUE_ERRORS as e:
            raise _bad_value("'%s'" % self.get_data_file_name(batchnum), e) from None

    def rng_state_before(self, epoch, batchnum):
        """The random generator's state before batch (epoch, batchnum) was prepared, or
        None (a provider that draws nothing, or a batch not prepared recently)."""
        with self._rng_lock:
            return self._rng_states.get((epoch, batchnum))

    def set_rng_state(self, state):
        """Restores a state from rng_state_before (on resume, before the first batch)."""
        self._prefetcher.discard()
        self.rng.set_state(state)

    def load_batch(self, batchnum):
        """The batch as stored.  Like 2012, a range of one batch is read from disk only once."""
        if len(self.batch_range) > 1:
            return self.get_batch(batchnum)
        if self.data_dic is None:
            self.data_dic = self.get_batch(batchnum)
        return self.data_dic

    def prepare_batch(self, dic, epoch, batchnum):
        """Turn a loaded batch into what get_next_batch returns (the generic providers: as is)."""
        return dic

    def advance_batch(self):
        self.batch_idx = self.get_next_batch_idx()
        self.curr_batchnum = self.batch_range[self.batch_idx]
        if self.batch_idx == 0:  # wrapped around: a new epoch
            self.curr_epoch += 1

    def get_next_batch_idx(self):
        return (self.batch_idx + 1) % len(self.batch_range)

    def get_next_batch_num(self):
        return self.batch_range[self.get_next_batch_idx()]

    # ---- files -------------------------------------------------------------------------

    def get_data_file_name(self, batchnum=None):
        """Path of a batch file (2012 name); the current batch when batchnum is None."""
        if batchnum is None:
            batchnum = self.curr_batchnum
        return os.path.join(self.data_dir, "data_batch_%d" % batchnum)

    get_batch_filename = get_data_file_name

    def _sub_batches(self, path):
        """Sub-batch files of a batch in order, or [] if it has none.

        2012 (cc) wrote data_batch_<n>.1, .2, ... beside the others; cuda-convnet2 a folder
        data_batch_<n>/ holding data_batch_<n>.0, .1, ...  Both are read; a gap in the
        numbering means a sub-batch is missing and is an error, not a shorter batch.
        """
        if os.path.isdir(path):
            folder = path
        else:
            folder = os.path.dirname(path)
        base = os.path.basename(path)
        pat = re.compile(r"^%s\.(\d+)$" % re.escape(base))
        found = sorted((int(m.group(1)), name) for name in os.listdir(folder)
                       for m in [pat.match(name)] if m)
        if not found:
            if os.path.isdir(path):
                raise DataProviderException("batch folder '%s' holds no %s.<k> files" % (path, base))
            return []
        nums = [k for k, _ in found]
        for a, b in zip(nums, nums[1:]):
            if b != a + 1:
                raise DataProviderException("sub-batch '%s.%d' is missing (found .%d)"
                                            % (os.path.join(folder, base), a + 1, b))
        if not os.path.isdir(path) and nums[0] not in (0, 1):
            raise DataProviderException("sub-batch '%s.1' is missing (found .%d)" % (path, nums[0]))
        return [os.path.join(folder, name) for _, name in found]

    def _load_file(self, path):
        try:
            obj = unpickle(path)
        except UnpickleError as e:
            raise DataProviderException(str(e)) from None
        return _str_keys(obj)

    def get_batch(self, batch_num):
        """Load one batch, joining its sub-batches if it was written in parts."""
        path = self.get_data_file_name(batch_num)
        parts = self._sub_batches(path) if (os.path.isdir(path) or not os.path.isfile(path)
                                            or os.path.exists(path + ".1")) else []
        if not parts:
            if not os.path.exists(path):
                raise DataProviderException("batch file '%s' does not exist" % path)
            return self._load_file(path)
        dic = self._load_file(parts[0])
        if not isinstance(dic, dict):
            raise DataProviderException("sub-batch '%s' is not a dict of arrays" % parts[0])
        for p in parts[1:]:
            sub = self._load_file(p)
            if not isinstance(sub, dict):
                raise DataProviderException("sub-batch '%s' is not a dict of arrays" % p)
            self._join_batches(dic, sub, p)
        return dic

    def _join_batches(self, main_batch, sub_batch, path="sub-batch"):
        """Append sub_batch's cases to main_batch, key by key.

        2012 joined only 'data', with n.r_ (rows), which suits cases-in-rows data alone; here
        every per-case entry is joined along its case axis: the last axis of an array when it
        has that many cases (the (dims, cases) layout), else the first; lists are extended.
        Entries that are not per-case (a batch label, say) keep the first sub-batch's value.
        """
        n_sub = _num_cases(sub_batch)
        for key, val in sub_batch.items():
            if key not in main_batch:
                continue
            cur = main_batch[key]
            if isinstance(cur, list) and isinstance(val, (list, tuple)):
                main_batch[key] = cur + list(val)
            elif isinstance(cur, np.ndarray) and isinstance(val, np.ndarray) and val.ndim >= 1:
                if n_sub is None:
                    n_sub = val.shape[-1]
                if val.shape[-1] == n_sub:
                    axis = val.ndim - 1
                elif val.shape[0] == n_sub:
                    axis = 0
                else:
                    raise DataProviderException("cannot join '%s': its '%s' has shape %s but it "
                                                "holds %d cases" % (path, key, val.shape, n_sub))
                try:
                    main_batch[key] = np.concatenate([cur, val], axis=axis)
                except ValueError:
                    raise DataProviderException("cannot join '%s': its '%s' has shape %s, the "
                                                "batch so far %s" % (path, key, val.shape,
                                                                     cur.shape)) from None

    # ---- meta --------------------------------------------------------------------------

    def get_data_dims(self, idx=0):
        return self.batch_meta["num_vis"]

    def get_plottable_data(self, data):
        raise DataProviderException("data provider %s has no plottable data" % type(self).__name__)

    @staticmethod
    def get_batch_meta(data_dir):
        path = os.path.join(data_dir, BATCH_META_FILE)
        if not os.path.exists(path):
            raise DataProviderException("'%s' does not exist (every data directory needs a %s)"
                                        % (path, BATCH_META_FILE))
        try:
            meta = _str_keys(unpickle(path))
        except UnpickleError as e:
            raise DataProviderException(str(e)) from None
        if not isinstance(meta, dict):
            raise DataProviderException("'%s' holds a %s, not a dict" % (path, type(meta).__name__))
        return meta

    @staticmethod
    def get_batch_filenames(srcdir):
        return sorted([f for f in os.listdir(srcdir) if DataProvider.BATCH_REGEX.match(f)],
                      key=alphanum_key)

    @staticmethod
    def get_batch_nums(srcdir):
        names = DataProvider.get_batch_filenames(srcdir)
        return sorted(set(int(DataProvider.BATCH_REGEX.match(n).group(1)) for n in names))

    @staticmethod
    def get_num_batches(srcdir):
        return len(DataProvider.get_batch_nums(srcdir))

    # ---- registry ----------------------------------------------------------------------

    @classmethod
    def get_instance(cls, data_dir, batch_range=None, init_epoch=1, init_batchnum=None,
                     type="default", dp_params=None, test=False):
        """Make the provider registered under type; None asks batches.meta['dp_type'].

        'dummy-...-<n>' names a dummy provider registered as 'dummy-...-n' with n dims.
        """
        dp_params = {} if dp_params is None else dp_params
        # The image providers register themselves when their modules are imported (2012 did
        # it in convnet.py); import them here so a name such as 'cifar' works from anywhere.
        # (convdata_jpeg and convdata_flickr build on convdata, which must not import them.)
        from . import convdata, convdata_flickr, convdata_jpeg  # noqa: F401
        if not type:
            meta = DataProvider.get_batch_meta(data_dir)
            if "dp_type" not in meta:
                raise DataProviderException("no --data-provider given and '%s' names none "
                                            "(no 'dp_type' key)" % os.path.join(data_dir, BATCH_META_FILE))
            type = meta["dp_type"]
        if type.startswith("dummy-"):
            parts = type.split("-")
            name = "-".join(parts[:-1]) + "-n"
            if name not in dp_types or not parts[-1].isdigit():
                raise DataProviderException("No such data provider: %s" % type)
            dp = dp_classes[name](int(parts[-1]))
            dp.dp_params = dp_params
            return dp
        if type in dp_types:
            try:
                return dp_classes[type](data_dir, batch_range, init_epoch, init_batchnum, dp_params, test)
            except _BAD_VALUE_ERRORS as e:
                raise _bad_value("'%s' (batches.meta or a batch)" % data_dir, e) from None
        raise DataProviderException("No such data provider: %s (known: %s)"
                                    % (type, ", ".join(sorted(dp_types))))

    @classmethod
    def register_data_provider(cls, name, desc, _class):
        # Registering the same class twice is harmless (modules may be imported twice, e.g.
        # by a test); another class under a taken name is the 2012 error.
        if name in dp_types and dp_classes[name] is not _class:
            raise DataProviderException("Data provider %s already registered" % name)
        dp_types[name] = desc
        dp_classes[name] = _class


register_data_provider = DataProvider.register_data_provider


class MemoryDataProvider(DataProvider):
    """Loads every batch of the range once, at construction ('memory')."""

    def __init__(self, data_dir, batch_range=None, init_epoch=1, init_batchnum=None,
                 dp_params=None, test=False):
        DataProvider.__init__(self, data_dir, batch_range, init_epoch, init_batchnum, dp_params, test)
        # 2012 kept a list indexed by batchnum - batch_range[0], which breaks for ranges such
        # as [1, 3]; a dict keyed by batch number does not.
        self.data_dic = {}
        for b in self.batch_range:
            self.data_dic[b] = self.convert_batch(self.get_batch(b), b)

    def convert_batch(self, dic, batchnum):
        """One-time conversion of a freshly loaded batch (subclasses)."""
        return dic

    def load_batch(self, batchnum):
        return self.data_dic[batchnum]


class LabeledDataProvider(DataProvider):
    """A provider whose batches carry labels ('labeled')."""

    def get_num_classes(self):
        if "label_names" not in self.batch_meta:
            raise DataProviderException("'%s' has no 'label_names'"
                                        % os.path.join(self.data_dir, BATCH_META_FILE))
        names = self.batch_meta["label_names"]
        if not isinstance(names, (list, tuple, np.ndarray)) or np.ndim(names) != 1:
            raise DataProviderException("'%s': label_names is a %s, not a list of names"
                                        % (os.path.join(self.data_dir, BATCH_META_FILE), type(names).__name__))
        return len(names)


class LabeledMemoryDataProvider(LabeledDataProvider, MemoryDataProvider):
    """Labeled and held in memory ('labeled-memory'); labels become an (N, 1) float32 column."""

    def __init__(self, data_dir, batch_range=None, init_epoch=1, init_batchnum=None,
                 dp_params=None, test=False):
        MemoryDataProvider.__init__(self, data_dir, batch_range, init_epoch, init_batchnum,
                                    dp_params, test)

    def convert_batch(self, dic, batchnum):
        path = self.get_data_file_name(batchnum)
        require_batch(dic, path)
        dic["labels"] = np.require(np.asarray(dic["labels"], dtype=np.single).reshape(-1, 1),
                                   requirements="C")
        return dic


class DummyDataProvider(DataProvider):
    """512 random cases of data_dim uniform [0,1) values, cases in rows ('dummy-n')."""

    num_cases = 512

    def __init__(self, data_dim):
        self.data_dir = None
        self.batch_range = [1]
        self.batch_meta = {"num_vis": data_dim, "data_in_rows": True}
        self.curr_epoch = 1
        self.curr_batchnum = 1
        self.batch_idx = 0
        self.dp_params = {}
        self.test = False
        self.data_dic = None
        self.prefetch = False
        self._prefetcher = _Prefetcher()
        self._rng_states, self._rng_lock = {}, threading.Lock()  # none kept: numpy's global generator

    def get_next_batch(self):
        # 2012 returned the epoch/batchnum *after* advancing here (unlike every other
        # provider); this returns those of the batch itself, as the contract says.
        epoch, batchnum = self.curr_epoch, self.curr_batchnum
        self.advance_batch()
        data = np.random.rand(self.num_cases, self.get_data_dims()).astype(np.single)
        return epoch, batchnum, {"data": data}


class LabeledDummyDataProvider(DummyDataProvider):
    """Random data with random integer labels in 0..num_classes-1 ('dummy-labeled-n')."""

    def __init__(self, data_dim, num_classes=10, num_cases=512):
        DummyDataProvider.__init__(self, data_dim)
        self.batch_meta["label_names"] = [str(x) for x in range(num_classes)]
        self.num_cases = num_cases
        self.num_classes = num_classes

    def get_num_classes(self):
        return self.num_classes

    def get_next_batch(self):
        epoch, batchnum = self.curr_epoch, self.curr_batchnum
        self.advance_batch()
        data = np.random.rand(self.num_cases, self.get_data_dims()).astype(np.single)
        # randint(0, C) draws what 2012's random_integers(0, C-1) drew.
        labels = np.require(np.random.randint(0, self.num_classes, self.num_cases).reshape(-1, 1),
                            dtype=np.single, requirements="C")
        return epoch, batchnum, {"data": data, "labels": labels}


register_data_provider("default", "The default data provider; loads one batch into memory at a time",
                       DataProvider)
register_data_provider("memory", "Loads the entire dataset into memory", MemoryDataProvider)
register_data_provider("labeled", "Returns data and labels (used by classifiers)", LabeledDataProvider)
register_data_provider("labeled-memory", "Combination labeled + memory", LabeledMemoryDataProvider)
register_data_provider("dummy-n", "Dummy data provider for n-dimensional data", DummyDataProvider)
register_data_provider("dummy-labeled-n", "Labeled dummy data provider for n-dimensional data",
                       LabeledDummyDataProvider)
