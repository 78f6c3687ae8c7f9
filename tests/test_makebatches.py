"""makebatches: folder of class sub-folders -> 2012 batch files and batches.meta."""

import io
import os

import numpy as np
import pytest

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from cudaconvnet import makebatches as mb  # noqa: E402
from cudaconvnet.data import DataProvider  # noqa: E402
from cudaconvnet.util import unpickle  # noqa: E402

SIZE = 32  # small images keep the tests fast; the rule is the same as for 256


def _img(rs, h, w, mode="RGB"):
    a = rs.randint(0, 256, (h, w, 3)).astype(np.uint8)
    im = Image.fromarray(a)
    return im.convert(mode) if mode != "RGB" else im


@pytest.fixture
def src(tmp_path):
    """Three classes, PNGs of varied shapes and modes, one corrupt JPEG, one text file."""
    rs = np.random.RandomState(0)
    root = tmp_path / "src"
    shapes = {"ant": [(32, 40), (40, 32), (64, 80), (20, 24)],       # (h, w)
              "bee": [(32, 32), (48, 36), (70, 70)],
              "cat": [(33, 35), (100, 41), (32, 32)]}
    for cls, shs in shapes.items():
        os.makedirs(root / cls)
        for k, (h, w) in enumerate(shs):
            mode = "L" if (cls, k) == ("bee", 1) else ("RGBA" if (cls, k) == ("cat", 2) else "RGB")
            _img(rs, h, w, mode).save(root / cls / ("%d.png" % k))
    (root / "ant" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\x00" * 20)
    (root / "bee" / "notes.txt").write_text("not an image")
    (root / "cat" / ".hidden").write_text("ignored")
    os.makedirs(root / ".git")  # hidden folders are not classes
    return str(root)


def expected_pixels(path):
    """Shorter side to SIZE (long side rounded half up), centre crop; computed here with
    Pillow directly, following cuda-convnet2's rule, independently of the module."""
    im = Image.open(path).convert("RGB")
    w, h = im.size
    if min(w, h) != SIZE:
        s = SIZE / min(w, h)
        nw = SIZE if w <= h else int(np.floor(w * s + 0.5))
        nh = SIZE if h < w else int(np.floor(h * s + 0.5))
        im = im.resize((nw, nh), Image.BICUBIC if s > 1 else Image.BOX)
    w, h = im.size
    l, t = (w - SIZE) // 2, (h - SIZE) // 2
    return np.asarray(im.crop((l, t, l + SIZE, t + SIZE)))


def load_all(dst, nums):
    return [unpickle(os.path.join(dst, "data_batch_%d" % n)) for n in nums]


def test_raw_batches_meta_and_failures(src, tmp_path):
    dst = str(tmp_path / "dst")
    r = mb.make_batches_from_folder(src, dst, fmt="raw", batch_size=4, size=SIZE, jobs=1,
                                    seed=1, progress=False)
    assert r["images"] == 10 and r["batches"] == [1, 2, 3] and r["meta_written"]
    assert sorted(name for name, _ in r["failed"]) == ["ant/broken.jpg", "bee/notes.txt"]
    batches = load_all(dst, r["batches"])
    # the plan put 4 items per batch; the 2 unreadable files left holes
    assert sum(len(b["labels"]) for b in batches) == 10
    names = [n for b in batches for n in b["filenames"]]
    assert len(set(names)) == 10 and ".hidden" not in " ".join(names)
    classes = ["ant", "bee", "cat"]
    all_px = []
    for b in batches:
        n = len(b["labels"])
        assert b["data"].dtype == np.uint8 and b["data"].shape == (3 * SIZE * SIZE, n)
        for k, (name, label) in enumerate(zip(b["filenames"], b["labels"])):
            assert classes[label] == name.split("/")[0]
            px = b["data"][:, k].reshape(3, SIZE, SIZE).transpose(1, 2, 0)
            np.testing.assert_array_equal(px, expected_pixels(os.path.join(src, name)))
            all_px.append(px)
    meta = unpickle(os.path.join(dst, "batches.meta"))
    assert meta["label_names"] == classes and meta["num_vis"] == 3 * SIZE * SIZE
    assert meta["batch_size"] == 4 and meta["dp_type"] == "inet-lr-cropped"
    px = np.stack(all_px).astype(np.float64)                       # (n, S, S, 3)
    want_mean = px.mean(axis=0).transpose(2, 0, 1).reshape(-1, 1)  # channel-major
    assert meta["data_mean"].shape == (3 * SIZE * SIZE, 1) and meta["data_mean"].dtype == np.float32
    np.testing.assert_allclose(meta["data_mean"], want_mean, rtol=1e-6)
    stdevs, vecs = meta["color_pca"]
    cov = np.cov(px.reshape(-1, 3).T, bias=True)
    np.testing.assert_allclose(np.sort(stdevs ** 2), np.linalg.eigvalsh(cov), rtol=1e-8)
    np.testing.assert_allclose(vecs @ np.diag(stdevs ** 2) @ vecs.T, cov, rtol=1e-8, atol=1e-6)


def test_exact_resize_and_crop_cases():
    rs = np.random.RandomState(3)
    for h, w in [(32, 40), (40, 32), (64, 81), (20, 26), (33, 35)]:
        im = _img(rs, h, w)
        out = mb.resize_and_crop(im, SIZE)
        assert out.size == (SIZE, SIZE)
    # no resize needed: the crop is exactly the centre rows/columns of the original
    a = rs.randint(0, 256, (SIZE, 40, 3)).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(mb.resize_and_crop(Image.fromarray(a), SIZE)), a[:, 4:36])
    a = rs.randint(0, 256, (45, SIZE, 3)).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(mb.resize_and_crop(Image.fromarray(a), SIZE)), a[6:38])
    # 64x81 halves to 32x40.5 -> 32x41 (rounded half up, as C's round), crop from column 4
    im = Image.fromarray(rs.randint(0, 256, (64, 81, 3)).astype(np.uint8))
    want = np.asarray(im.resize((41, 32), Image.BOX))[:, 4:36]
    np.testing.assert_array_equal(np.asarray(mb.resize_and_crop(im, SIZE)), want)


def test_jpeg_batches_feed_the_provider(src, tmp_path):
    dst = str(tmp_path / "jpg")
    r = mb.make_batches_from_folder(src, dst, fmt="jpeg", batch_size=5, size=SIZE, quality=90,
                                    jobs=1, progress=False)
    assert r["images"] == 10 and len(r["failed"]) == 2
    batches = load_all(dst, r["batches"])
    decoded = []
    for b in batches:
        assert isinstance(b["data"], list) and all(isinstance(s, bytes) for s in b["data"])
        for s in b["data"]:
            im = Image.open(io.BytesIO(s))
            assert im.format == "JPEG" and im.size == (SIZE, SIZE)
            decoded.append(np.asarray(im.convert("RGB")).astype(np.float64))
    meta = unpickle(os.path.join(dst, "batches.meta"))
    assert meta["dp_type"] == "inet-lr-cropped-jpeg"
    # the mean is that of the decoded JPEGs: exactly what the provider will see
    want = np.mean(decoded, axis=0).transpose(2, 0, 1).reshape(-1, 1)
    np.testing.assert_allclose(meta["data_mean"], want, rtol=1e-6)
    dp = DataProvider.get_instance(dst, None, type=None, dp_params={"crop_border": 4, "color_noise": 0.1,
                                                                    "seed": 0})
    x, y = dp.get_next_batch()[2]
    assert x.shape == (3 * 24 * 24, len(batches[0]["labels"])) and np.isfinite(x).all()
    assert y.ravel().tolist() == batches[0]["labels"]


def test_shuffle_is_seeded(src, tmp_path):
    def order(seed, name):
        dst = str(tmp_path / name)
        r = mb.make_batches_from_folder(src, dst, fmt="jpeg", batch_size=20, size=SIZE, jobs=1,
                                        seed=seed, progress=False)
        return load_all(dst, r["batches"])[0]["filenames"]
    a, b, c = order(5, "a"), order(5, "b"), order(6, "c")
    assert a == b and a != c and sorted(a) == sorted(c)
    assert order(None, "d") == sorted(a, key=lambda n: (n.split("/")[0], n))  # None: folder order


def test_resume_after_interruption(src, tmp_path, monkeypatch):
    kw = dict(fmt="raw", batch_size=3, size=SIZE, jobs=1, seed=2, progress=False)
    ref = str(tmp_path / "ref")
    mb.make_batches_from_folder(src, ref, **kw)

    dst = str(tmp_path / "dst")
    real = mb._write_batch
    calls = []

    def dying(j, *a, **k):
        calls.append(j)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the third batch never gets written
        return real(j, *a, **k)

    monkeypatch.setattr(mb, "_write_batch", dying)
    with pytest.raises(KeyboardInterrupt):
        mb.make_batches_from_folder(src, dst, **kw)
    assert sorted(f for f in os.listdir(dst) if f.startswith("data_batch")) == ["data_batch_1",
                                                                                  "data_batch_2"]
    assert not os.path.exists(os.path.join(dst, "batches.meta"))
    mtimes = {f: os.stat(os.path.join(dst, f)).st_mtime_ns for f in ("data_batch_1", "data_batch_2")}

    monkeypatch.setattr(mb, "_write_batch", real)
    r = mb.make_batches_from_folder(src, dst, **kw)
    assert r["skipped"] == [1, 2] and r["images"] == 10 and len(r["failed"]) == 2
    for f, t in mtimes.items():
        assert os.stat(os.path.join(dst, f)).st_mtime_ns == t  # done batches were not redone
    # the result is what an uninterrupted run makes
    for name in sorted(f for f in os.listdir(ref) if f.startswith("data_batch")):
        a, b = unpickle(os.path.join(ref, name)), unpickle(os.path.join(dst, name))
        np.testing.assert_array_equal(a["data"], b["data"])
        assert a["labels"] == b["labels"] and a["filenames"] == b["filenames"]
    ma, mb_ = unpickle(os.path.join(ref, "batches.meta")), unpickle(os.path.join(dst, "batches.meta"))
    np.testing.assert_array_equal(ma["data_mean"], mb_["data_mean"])
    np.testing.assert_array_equal(ma["color_pca"][0], mb_["color_pca"][0])

    # a finished batch lost (and the meta) is made again, its images not counted twice
    os.remove(os.path.join(dst, "data_batch_1"))
    os.remove(os.path.join(dst, "batches.meta"))
    r = mb.make_batches_from_folder(src, dst, **kw)
    assert r["skipped"] == [2, 3, 4] and r["images"] == 10 and r["meta_written"]
    np.testing.assert_array_equal(unpickle(os.path.join(ref, "data_batch_1"))["data"],
                                  unpickle(os.path.join(dst, "data_batch_1"))["data"])
    again = unpickle(os.path.join(dst, "batches.meta"))
    np.testing.assert_array_equal(ma["data_mean"], again["data_mean"])
    np.testing.assert_array_equal(ma["color_pca"][1], again["color_pca"][1])

    # resuming with other options is refused rather than mixing two plans
    with pytest.raises(mb.MakeBatchesError, match="other images or options"):
        mb.make_batches_from_folder(src, dst, **dict(kw, batch_size=4))


def test_validation_batches_keep_training_meta(src, tmp_path):
    dst = str(tmp_path / "dst")
    mb.make_batches_from_folder(src, dst, fmt="jpeg", batch_size=8, size=SIZE, jobs=1, progress=False)
    before = unpickle(os.path.join(dst, "batches.meta"))
    r = mb.make_batches_from_folder(src, dst, fmt="jpeg", batch_size=8, size=SIZE, jobs=1,
                                    start=1001, progress=False)
    assert r["batches"] == [1001, 1002] and not r["meta_written"]
    after = unpickle(os.path.join(dst, "batches.meta"))
    np.testing.assert_array_equal(before["data_mean"], after["data_mean"])
    assert DataProvider.get_batch_nums(dst) == [1, 2, 1001, 1002]


def test_array_items_and_worker_processes(tmp_path):
    rs = np.random.RandomState(4)
    items = [(rs.randint(0, 256, (SIZE, SIZE + 6, 3)).astype(np.uint8), k % 2) for k in range(9)]
    items.append((np.zeros((SIZE, SIZE), np.float64), 0))          # unsupported: counted, not fatal
    items.append((rs.randint(0, 256, (SIZE, SIZE)).astype(np.uint8), 1))  # greyscale is fine
    r1 = mb.make_batches(items, str(tmp_path / "p1"), label_names=["even", "odd"], fmt="raw",
                         batch_size=4, size=SIZE, jobs=1, progress=False)
    r2 = mb.make_batches(items, str(tmp_path / "p2"), label_names=["even", "odd"], fmt="raw",
                         batch_size=4, size=SIZE, jobs=2, progress=False)
    assert r1["images"] == r2["images"] == 10
    with pytest.raises(mb.MakeBatchesError, match=r"labels must be in 0\.\.0"):  # label 1 has no name
        mb.make_batches(items, str(tmp_path / "p3"), label_names=["even"], fmt="raw", batch_size=4, size=SIZE,
                        jobs=1, progress=False)
    assert r1["failed"] == r2["failed"] and r1["failed"][0][0].startswith("item ")
    for n in r1["batches"]:
        a = unpickle(str(tmp_path / "p1" / ("data_batch_%d" % n)))
        b = unpickle(str(tmp_path / "p2" / ("data_batch_%d" % n)))
        np.testing.assert_array_equal(a["data"], b["data"])
        assert a["labels"] == b["labels"]
    for n in r1["batches"]:
        b = unpickle(str(tmp_path / "p1" / ("data_batch_%d" % n)))
        if "item 0" in b["filenames"]:
            k = b["filenames"].index("item 0")
            np.testing.assert_array_equal(b["data"][:, k].reshape(3, SIZE, SIZE).transpose(1, 2, 0),
                                          items[0][0][:, 3:3 + SIZE])
            break
    else:
        pytest.fail("item 0 is in no batch")


def test_cli(src, tmp_path, capsys):
    dst = str(tmp_path / "cli")
    assert mb.main([src, dst, "--raw", "--batch-size=6", "--size=%d" % SIZE, "--jobs=1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Wrote 10 images in 2 batches" in out and "Skipped 2 unreadable" in out
    assert "ant/broken.jpg" in out
    assert mb.main([str(tmp_path / "missing"), dst, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
    # the plain progress counter (used when tqdm is absent) ends with a newline
    p = mb._Progress(5, 0, True)
    p.update(5)
    p.close()
    assert capsys.readouterr().err.endswith("\n")
