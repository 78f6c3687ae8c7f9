"""JPEG decoding speed of the inet-lr-cropped-jpeg provider: images/s, per thread and per core.

No 2012 counterpart as such: CHM's convdata_jpeg.py decoded a whole batch with PIL in one
Python thread; that (threads=1) is the peer every other row is a ratio against.

    python benchmarks/jpeg_decode.py [--images 512] [--size 256] [--quality 95]
                                     [--threads 1,2,4] [--repeat 3]

Two measurements on synthetic photographs-like JPEGs made here (smooth colour fields plus
texture and noise, so the entropy decoder has work comparable to ImageNet's):
  decode  Pillow decode into a uint8 buffer, chunks of 32 images on a thread pool;
  batch   the provider's whole prepare_batch for training (decode, 224x224 chunk crops,
          flips, mean subtraction, PCA colour noise, (features, cases) float32 layout).
"""

import argparse
import io
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def synthetic_jpegs(n, size, quality, seed=0):
    from PIL import Image
    rs = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:size, 0:size] / float(size)
    out = []
    for _ in range(n):
        img = np.empty((size, size, 3))
        for c in range(3):
            a, b, f1, f2, p = rs.uniform(-1, 1, 5)
            img[..., c] = (128 + 60 * a * yy + 60 * b * xx
                           + 30 * np.sin(2 * np.pi * (f1 * 8 * xx + f2 * 8 * yy) + p * 3))
        img += rs.normal(0, 12, img.shape)  # sensor-like noise: keeps the entropy up
        bio = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(bio, "JPEG", quality=quality)
        out.append(bio.getvalue())
    return out


def time_decode(strings, size, threads, repeat):
    from cudaconvnet.convdata_jpeg import decode_jpeg
    chunks = [(c, min(c + 32, len(strings))) for c in range(0, len(strings), 32)]

    def work(r):
        buf = np.empty((r[1] - r[0], size, size, 3), np.uint8)
        for k in range(r[0], r[1]):
            decode_jpeg(strings[k], size, buf[k - r[0]])

    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeat):
            t = time.perf_counter()
            list(pool.map(work, chunks))
            best = min(best, time.perf_counter() - t)
    return len(strings) / best


def time_batch(strings, size, threads, repeat, border):
    from cudaconvnet.data import DataProvider
    from cudaconvnet.util import pickle
    n = len(strings)
    with tempfile.TemporaryDirectory() as d:
        pickle(os.path.join(d, "data_batch_1"), {"data": strings, "labels": [0] * n})
        q, _ = np.linalg.qr(np.random.RandomState(1).randn(3, 3))
        pickle(os.path.join(d, "batches.meta"),
               {"data_mean": np.full((3 * size * size, 1), 120, np.float32),
                "color_pca": (np.array([20.0, 37.0, 122.0]), q), "label_names": ["a"],
                "num_vis": 3 * size * size, "batch_size": n})
        dp = DataProvider.get_instance(d, [1], type="inet-lr-cropped-jpeg",
                                       dp_params={"crop_border": border, "color_noise": 0.1,
                                                  "threads": threads, "prefetch": False, "seed": 0})
        dp.get_next_batch()  # warm up: pool start, page faults
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            dp.get_next_batch()
            best = min(best, time.perf_counter() - t)
    return n / best


def _burn(_):
    import hashlib
    x = b"x" * 1000000
    for _ in range(150):
        hashlib.sha256(x).digest()


def cpu_parallelism(threads):
    """How many cores this machine really gives us now: the speed-up of `threads` threads of
    GIL-free C work (sha256) over one.  Shared or oversubscribed machines give less than
    the core count, and every ratio below is bounded by this one."""
    def rate(t):
        with ThreadPoolExecutor(t) as pool:
            list(pool.map(_burn, range(t)))
            start = time.perf_counter()
            list(pool.map(_burn, range(2 * t)))
            return 2 * t / (time.perf_counter() - start)
    return rate(threads) / rate(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cores = os.cpu_count() or 1
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--quality", type=int, default=95)
    ap.add_argument("--border", type=int, default=16)
    ap.add_argument("--threads", default=",".join(str(t) for t in sorted({1, 2, 4, cores}) if t <= cores))
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    import PIL
    print("JPEG decode benchmark: %d synthetic %dx%d JPEGs (quality %d), %d cores, Pillow %s"
          % (a.images, a.size, a.size, a.quality, cores, PIL.__version__))
    strings = synthetic_jpegs(a.images, a.size, a.quality)
    print("mean JPEG size %.1f KB" % (np.mean([len(s) for s in strings]) / 1024.0))
    print("control: %d threads of GIL-free C work run %.2fx as fast as one"
          % (max(threads), cpu_parallelism(max(threads))))
    print("%-7s %7s %12s %10s %14s" % ("what", "threads", "images/s", "vs 1 thr", "images/s/core"))
    for what, fn in (("decode", lambda t: time_decode(strings, a.size, t, a.repeat)),
                     ("batch", lambda t: time_batch(strings, a.size, t, a.repeat, a.border))):
        base = None
        for t in threads:
            rate = fn(t)
            base = base or rate
            print("%-7s %7d %12.0f %9.2fx %14.0f" % (what, t, rate, rate / base, rate / min(t, cores)))


if __name__ == "__main__":
    main()
