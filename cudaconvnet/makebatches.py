"""Make 2012-format batch files from a folder of images, one sub-folder per class.

No 2012 file: the AlexNet batches were made by scripts not released; cuda-convnet2's
make-data/make-data.py is the model (shorter side to 256, centre 256x256 crop, JPEG).

    python -m cudaconvnet.makebatches SRC DST [--jpeg|--raw] [--batch-size=N]
        [--quality=Q] [--jobs=N] [--seed=S] [--start=N] [--size=256]

Writes DST/data_batch_<n> = {'data': [JPEG bytes] or uint8 (3*S*S, N), 'labels': [int],
'filenames': [str], 'batch_label': str} and DST/batches.meta; progress and the plan live
in DST/.makebatches so an interrupted run picks up where it stopped.
"""

import argparse
import hashlib
import io
import math
import os
import sys
import time

import numpy as np

from .util import UnpickleError, pickle, unpickle

__all__ = ["make_batches", "make_batches_from_folder", "scan_folder", "resize_and_crop",
           "MakeBatchesError", "DEFAULT_BATCH_SIZE", "DEFAULT_QUALITY"]

DEFAULT_BATCH_SIZE = 1024  # cc2 used 3072; 1024 keeps a 10-view test batch near 6 GB
DEFAULT_QUALITY = 95       # cc2's make-data JPEG quality (pyext.h JPEG_QUALITY)
DEFAULT_SIZE = 256
STATE_DIR = ".makebatches"
CHUNK = 16                 # images per task handed to a worker process


class MakeBatchesError(Exception):
    """Bad source, destination or options; the message is one line."""


# ---------------------------------------------------------------------------------------
# One image
# ---------------------------------------------------------------------------------------

def _round_half_up(x):
    return int(math.floor(x + 0.5))  # C's round(), which cc2 used; Python's rounds to even


def resize_and_crop(img, size=DEFAULT_SIZE):
    """Resize a PIL image so its shorter side is size, then take the centre size x size.

    As cuda-convnet2's make-data: the longer side is rounded half up; enlarging uses bicubic
    and shrinking area averaging (Pillow's BOX), like its OpenCV INTER_CUBIC / INTER_AREA;
    the crop starts at ((w - size) // 2, (h - size) // 2).
    """
    from PIL import Image
    w, h = img.size
    scale = size / float(min(w, h))
    if w <= h:
        nw, nh = size, max(size, _round_half_up(h * scale))
    else:
        nw, nh = max(size, _round_half_up(w * scale)), size
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.BICUBIC if scale > 1 else Image.BOX)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def _to_pil(ref):
    """A PIL RGB image from a path or an (H, W[, 1|3|4]) uint8 array, or raise ValueError."""
    from PIL import Image
    if isinstance(ref, np.ndarray):
        a = ref
        if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
            raise ValueError("unsupported array (dtype %s, shape %s); expected uint8 (H, W[, 3])"
                             % (a.dtype, a.shape))
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[:, :, 0]
        img = Image.fromarray(np.ascontiguousarray(a))
    else:
        with Image.open(ref) as im:
            im.load()
            img = im
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def _process_chunk(args):
    """Worker: make the 256x256 images of one chunk, and their statistics.

    Returns (payloads, failures, stats): payloads[k] is JPEG bytes or a (S, S, 3) uint8
    array, or None if image k could not be read (failures holds (k, reason));
    stats are exact sums over the images that worked, taken from the pixels the data
    provider will see (for JPEG, the decoded JPEG, not the image before encoding).
    """
    refs, fmt, size, quality = args
    from PIL import Image
    payloads, failures = [], []
    pix_sum = np.zeros((size, size, 3), dtype=np.int64)
    rgb_sum = np.zeros(3, dtype=np.float64)
    rgb_outer = np.zeros((3, 3), dtype=np.float64)
    n_ok = 0
    for k, ref in enumerate(refs):
        try:
            img = resize_and_crop(_to_pil(ref), size)
            if fmt == "jpeg":
                bio = io.BytesIO()
                img.save(bio, format="JPEG", quality=quality)
                payload = bio.getvalue()
                with Image.open(io.BytesIO(payload)) as back:
                    arr = np.asarray(back.convert("RGB"))
            else:
                arr = np.asarray(img)
                payload = np.ascontiguousarray(arr)
        except (OSError, SyntaxError, ValueError, TypeError, Image.DecompressionBombError) as e:
            payloads.append(None)
            failures.append((k, (str(e).splitlines() or [type(e).__name__])[0]))
            continue
        payloads.append(payload)
        pix_sum += arr
        x = arr.reshape(-1, 3).astype(np.float64)
        rgb_sum += x.sum(axis=0)
        rgb_outer += x.T @ x  # exact: every partial sum is an integer below 2**53
        n_ok += 1
    return payloads, failures, {"n": n_ok, "pix_sum": pix_sum, "rgb_sum": rgb_sum,
                                "rgb_outer": rgb_outer}


# ---------------------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------------------

class _Progress:
    """tqdm when it is installed, else one counter line rewritten in place on stderr."""

    def __init__(self, total, initial, enabled):
        self.total, self.n, self.enabled = total, initial, enabled
        self._bar, self._last = None, 0.0
        if not enabled:
            return
        try:
            from tqdm import tqdm
            self._bar = tqdm(total=total, initial=initial, unit="img", desc="makebatches")
        except ImportError:
            self._print(force=True)

    def _print(self, force=False):
        now = time.time()
        if force or now - self._last >= 0.5:
            self._last = now
            pct = 100.0 * self.n / self.total if self.total else 100.0
            sys.stderr.write("\rmakebatches: %d/%d images (%.0f%%)" % (self.n, self.total, pct))
            sys.stderr.flush()

    def update(self, k):
        self.n += k
        if self._bar is not None:
            self._bar.update(k)
        elif self.enabled:
            self._print()

    def close(self):
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            self._print(force=True)
            sys.stderr.write("\n")


# ---------------------------------------------------------------------------------------
# Many images
# ---------------------------------------------------------------------------------------

def scan_folder(src, label_names=None):
    """(items, label_names) for a folder holding one sub-folder per class.

    Classes are the sub-folders' names, sorted (for ImageNet, the wnids), unless
    label_names is given (e.g. the training set's, for validation batches).  Every
    non-hidden file below a class folder is an item; unreadable ones are dealt with later.
    """
    if not os.path.isdir(src):
        raise MakeBatchesError("source folder '%s' does not exist" % src)
    classes = sorted(d for d in os.listdir(src)
                     if not d.startswith(".") and os.path.isdir(os.path.join(src, d)))
    if not classes:
        raise MakeBatchesError("'%s' has no class sub-folders (expected SRC/<class>/<image>)" % src)
    if label_names is None:
        label_names = classes
    index = {name: i for i, name in enumerate(label_names)}
    items = []
    for c in classes:
        if c not in index:
            raise MakeBatchesError("class folder '%s' is not among the %d label_names of the "
                                   "existing batches.meta" % (c, len(label_names)))
        root = os.path.join(src, c)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in sorted(filenames):
                if not f.startswith("."):
                    items.append((os.path.join(dirpath, f), index[c]))
    return items, list(label_names)


def _item_name(ref, i, root=None):
    if isinstance(ref, np.ndarray):
        return "item %d" % i
    ref = os.fspath(ref)
    return os.path.relpath(ref, root) if root else ref


def _fingerprint(items, options):
    h = hashlib.sha256(repr(sorted(options.items())).encode())
    for ref, label in items:
        if isinstance(ref, np.ndarray):
            h.update(b"A%r%r" % (ref.shape, str(ref.dtype).encode()))
            h.update(hashlib.sha1(np.ascontiguousarray(ref)).digest())
        else:
            h.update(b"P" + os.fspath(ref).encode("utf-8", "surrogateescape"))
        h.update(b"L%d" % label)
    return h.hexdigest()


def _empty_stats(size):
    return {"done_through": -1, "n": 0, "pix_sum": np.zeros((size, size, 3), np.int64),
            "rgb_sum": np.zeros(3), "rgb_outer": np.zeros((3, 3)), "failed": []}


def _meta_from_stats(stats, label_names, size, batch_size, fmt):
    n = stats["n"]
    mean_hwc = stats["pix_sum"] / float(n)
    # channel-major (R plane, G plane, B plane), as the providers reshape it: (3, S, S)
    data_mean = mean_hwc.transpose(2, 0, 1).reshape(-1, 1).astype(np.float32)
    pixels = float(n) * size * size
    m = stats["rgb_sum"] / pixels
    cov = stats["rgb_outer"] / pixels - np.outer(m, m)
    vals, vecs = np.linalg.eigh(cov)  # ascending; one eigenvector per column
    stdevs = np.sqrt(np.clip(vals, 0, None))
    return {"data_mean": data_mean,
            "color_pca": (stdevs, vecs),
            "label_names": list(label_names),
            "num_vis": 3 * size * size,
            "batch_size": batch_size,
            "label_offset": 0,
            "img_size": size,
            "num_colors": 3,
            "num_images": n,
            "dp_type": "inet-lr-cropped-jpeg" if fmt == "jpeg" else "inet-lr-cropped"}


def make_batches(items, dst, label_names=None, fmt="jpeg", batch_size=DEFAULT_BATCH_SIZE,
                 quality=DEFAULT_QUALITY, jobs=None, seed=0, start=1, size=DEFAULT_SIZE,
                 progress=True, names_root=None, overwrite_meta=False):
    """Write batches data_batch_<start>, <start+1>, ... of items into dst, and batches.meta.

    items: (image, label) pairs; an image is a path or an (H, W[, 3]) uint8 array, a label
    an int in 0..len(label_names)-1.  Images are shuffled across batches with seed (None
    keeps their order).  fmt 'jpeg' stores JPEG byte strings ('inet-lr-cropped-jpeg'),
    'raw' uint8 (3*S*S, N) pixels ('inet-lr-cropped').  jobs worker processes (default:
    every core; 1 works in this process).  A run that was interrupted resumes: batches
    already written are kept.  batches.meta (mean image and colour PCA of these images) is
    written unless dst already has one (validation batches made after the training ones
    keep the training statistics) or overwrite_meta is set.

    Returns {'batches': [numbers], 'images': int, 'failed': [(name, reason)],
    'skipped': [batch numbers already done], 'meta_written': bool}.
    """
    if fmt not in ("jpeg", "raw"):
        raise MakeBatchesError("format must be 'jpeg' or 'raw', not %r" % (fmt,))
    if batch_size < 1 or size < 1 or start < 0:
        raise MakeBatchesError("batch size, image size must be positive and start >= 0")
    if not 1 <= quality <= 100:
        raise MakeBatchesError("JPEG quality must be 1..100, not %d" % quality)
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise MakeBatchesError("makebatches needs Pillow: pip install pillow") from None
    items = [(ref if isinstance(ref, np.ndarray) else os.fspath(ref), int(label))
             for ref, label in items]
    if not items:
        raise MakeBatchesError("no images to write")
    max_label = max(label for _, label in items)
    if label_names is None:
        label_names = [str(i) for i in range(max_label + 1)]
    if min(label for _, label in items) < 0 or max_label >= len(label_names):
        raise MakeBatchesError("labels must be in 0..%d" % (len(label_names) - 1))
    jobs = max(1, int(jobs or os.cpu_count() or 1))

    os.makedirs(dst, exist_ok=True)
    state = os.path.join(dst, STATE_DIR)
    os.makedirs(state, exist_ok=True)

    order = (np.arange(len(items)) if seed is None
             else np.random.RandomState(seed).permutation(len(items)))
    batches = [order[i:i + batch_size] for i in range(0, len(items), batch_size)]
    options = {"fmt": fmt, "batch_size": batch_size, "quality": quality, "seed": seed,
               "start": start, "size": size}
    fp = _fingerprint(items, options)
    plan_path = os.path.join(state, "plan_%d" % start)
    stats_path = os.path.join(state, "stats_%d" % start)
    try:
        if os.path.exists(plan_path):
            if unpickle(plan_path).get("fingerprint") != fp:
                raise MakeBatchesError(
                    "'%s' holds batches from %d on made from other images or options; use the "
                    "same ones to resume, or another destination" % (dst, start))
            stats = unpickle(stats_path) if os.path.exists(stats_path) else _empty_stats(size)
        else:
            pickle(plan_path, {"fingerprint": fp, "options": options, "num_batches": len(batches)})
            stats = _empty_stats(size)
    except UnpickleError as e:
        raise MakeBatchesError("%s (delete '%s' to start over)" % (e, state)) from None

    def batch_path(j):
        return os.path.join(dst, "data_batch_%d" % (start + j))

    todo = [j for j in range(len(batches))
            if j > stats["done_through"] or not os.path.exists(batch_path(j))]
    done = sorted(set(range(len(batches))) - set(todo))
    skipped = [start + j for j in done]
    bar = _Progress(len(items), sum(len(batches[j]) for j in done), progress)

    def tasks(j):
        idx = batches[j]
        return [([items[i][0] for i in idx[c:c + CHUNK]], fmt, size, quality)
                for c in range(0, len(idx), CHUNK)]

    pool = None
    try:
        if jobs > 1 and todo:
            import multiprocessing
            import threading
            # fork is quick but unsafe once other threads exist (a lock held by one of them
            # stays locked in the child); spawn is always safe.
            method = "fork" if (threading.active_count() == 1 and
                                "fork" in multiprocessing.get_all_start_methods()) else "spawn"
            pool = multiprocessing.get_context(method).Pool(jobs)
        pending = pool.map_async(_process_chunk, tasks(todo[0])) if pool and todo else None
        for t, j in enumerate(todo):
            if pool:
                results = pending.get()
                # Start the next batch's images before writing this one, so the workers
                # keep busy while the main process pickles and fsyncs.
                pending = pool.map_async(_process_chunk, tasks(todo[t + 1])) \
                    if t + 1 < len(todo) else None
            else:
                results = [_process_chunk(task) for task in tasks(j)]
            _write_batch(j, batches[j], results, items, stats, batch_path(j), label_names,
                         len(batches), start, fmt, size, names_root)
            if j > stats["done_through"]:
                stats["done_through"] = j
                pickle(stats_path, stats)  # after the batch: a batch is done once counted
            bar.update(len(batches[j]))
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        bar.close()

    meta_path = os.path.join(dst, "batches.meta")
    meta_written = False
    if overwrite_meta or not os.path.exists(meta_path):
        if stats["n"] == 0:
            raise MakeBatchesError("none of the %d images could be read" % len(items))
        pickle(meta_path, _meta_from_stats(stats, label_names, size, batch_size, fmt))
        meta_written = True
    return {"batches": [start + j for j in range(len(batches))], "images": stats["n"],
            "failed": list(stats["failed"]), "skipped": skipped, "meta_written": meta_written}


def _write_batch(j, idx, results, items, stats, path, label_names, num_batches, start, fmt,
                 size, names_root):
    payloads, labels, names = [], [], []
    counted = j > stats["done_through"]  # a redone batch (file lost) was counted already
    pos = 0
    for chunk_payloads, failures, chunk_stats in results:
        failed = dict(failures)
        for k, p in enumerate(chunk_payloads):
            i = int(idx[pos + k])
            name = _item_name(items[i][0], i, names_root)
            if p is None:
                if counted:
                    stats["failed"].append((name, failed.get(k, "unreadable")))
                continue
            payloads.append(p)
            labels.append(items[i][1])
            names.append(name)
        pos += len(chunk_payloads)
        if counted:
            stats["n"] += chunk_stats["n"]
            stats["pix_sum"] += chunk_stats["pix_sum"]
            stats["rgb_sum"] += chunk_stats["rgb_sum"]
            stats["rgb_outer"] += chunk_stats["rgb_outer"]
    if fmt == "jpeg":
        data = payloads
    elif payloads:
        # (N, S, S, 3) -> (3, S, S, N) -> (3*S*S, N): cases in columns, channel-major rows
        data = np.ascontiguousarray(np.stack(payloads).transpose(3, 1, 2, 0).reshape(-1, len(payloads)))
    else:
        data = np.zeros((3 * size * size, 0), dtype=np.uint8)
    pickle(path, {"data": data, "labels": labels, "filenames": names,
                  "batch_label": "batch %d of %d (data_batch_%d)" % (j + 1, num_batches, start + j)})


def make_batches_from_folder(src, dst, **kwargs):
    """scan_folder(src) then make_batches; an existing dst/batches.meta fixes the labels."""
    meta_path = os.path.join(dst, "batches.meta")
    label_names = None
    if os.path.exists(meta_path) and not kwargs.get("overwrite_meta"):
        try:
            label_names = unpickle(meta_path).get("label_names")
        except (UnpickleError, AttributeError) as e:
            raise MakeBatchesError("cannot read '%s': %s" % (meta_path, e)) from None
    items, label_names = scan_folder(src, label_names)
    return make_batches(items, dst, label_names=label_names, names_root=src, **kwargs)


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m cudaconvnet.makebatches",
        description="Turn SRC/<class>/<image> into cuda-convnet batches in DST "
                    "(shorter side to SIZE, centre SIZExSIZE crop).")
    ap.add_argument("src", metavar="SRC")
    ap.add_argument("dst", metavar="DST")
    fmt = ap.add_mutually_exclusive_group()
    fmt.add_argument("--jpeg", dest="fmt", action="store_const", const="jpeg",
                     help="store JPEG byte strings (default; provider inet-lr-cropped-jpeg)")
    fmt.add_argument("--raw", dest="fmt", action="store_const", const="raw",
                     help="store raw uint8 pixels (provider inet-lr-cropped)")
    ap.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    ap.add_argument("--quality", type=int, default=DEFAULT_QUALITY, help="JPEG quality")
    ap.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    ap.add_argument("--seed", type=int, default=0, help="shuffle seed")
    ap.add_argument("--start", type=int, default=1, help="number of the first batch")
    ap.add_argument("--size", type=int, default=DEFAULT_SIZE, help="image side")
    ap.add_argument("--overwrite-meta", action="store_true",
                    help="rewrite DST/batches.meta even if it exists")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    t0 = time.time()
    try:
        r = make_batches_from_folder(a.src, a.dst, fmt=a.fmt or "jpeg", batch_size=a.batch_size,
                                     quality=a.quality, jobs=a.jobs, seed=a.seed, start=a.start,
                                     size=a.size, progress=not a.quiet,
                                     overwrite_meta=a.overwrite_meta)
    except (MakeBatchesError, UnpickleError, OSError) as e:
        sys.stderr.write("makebatches: error: %s\n" % e)
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("\nmakebatches: interrupted; run the same command again to resume\n")
        return 130
    b = r["batches"]
    print("Wrote %d images in %d batches (data_batch_%d..%d) to %s in %.1f s%s"
          % (r["images"], len(b), b[0], b[-1], a.dst, time.time() - t0,
             " (%d were already done)" % len(r["skipped"]) if r["skipped"] else ""))
    print("batches.meta: %s" % ("written" if r["meta_written"] else "kept the existing one"))
    if r["failed"]:
        print("Skipped %d unreadable file(s):" % len(r["failed"]))
        for name, why in r["failed"][:20]:
            print("  %s: %s" % (name, why))
        if len(r["failed"]) > 20:
            print("  ... and %d more" % (len(r["failed"]) - 20))
    return 0


if __name__ == "__main__":
    sys.exit(main())
