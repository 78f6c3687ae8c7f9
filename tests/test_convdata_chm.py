"""The AlexNet 2012 code's other data providers (CHM convnet.py:199-206): flatmem,
inet-rs-lr-cropped, dummy-lr-n (convdata.py) and flickr-ce-cropped, dummy-ce-n
(convdata_flickr.py), checked against what the 2012 code computes, written out by hand
here on tiny batches; then two of them through the training loop."""

import contextlib
import io
import os
import re

import numpy as np
import pytest

from cudaconvnet import convdata, convdata_flickr, convnet
from cudaconvnet.data import DataProvider, DataProviderException, dp_classes, dp_types
from cudaconvnet.gpumodel import StopTraining
from cudaconvnet.util import pickle
from test_data import write_batches


def one_line_error(fn, *words):
    with pytest.raises(DataProviderException) as ei:
        fn()
    msg = str(ei.value)
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


def test_the_five_are_registered_under_their_2012_names():
    want = {"dummy-lr-n": (convdata.DummyConvNetLogRegDP, "Dummy ConvNet logistic regression"),
            "flatmem": (convdata.FlatMemoryDataProvider, "Flat memory"),
            "inet-rs-lr-cropped": (convdata.RandomScaleImageNetLogRegDP,
                                   "Random scale cropped ImageNet logistic regression"),
            "flickr-ce-cropped": (convdata_flickr.JPEGCroppedFlickrCEDP, "Flickr cross-entropy cropped"),
            "dummy-ce-n": (convdata_flickr.DummyConvNetCEDP, "Dummy cross-entropy")}
    for name, (cls, desc) in want.items():
        assert dp_classes[name] is cls and dp_types[name] == desc


# ---------------------------------------------------------------------------------------
# flatmem (chm:convdata.py:11-30)
# ---------------------------------------------------------------------------------------

FLAT_MEAN = np.array([1.5, -2.0, 0.25, 10.0, 3.0, 0.0])  # float64, as a pickled mean may be


@pytest.fixture
def flat_dir(tmp_path):
    b1 = {"data": np.arange(6 * 4, dtype=np.uint8).reshape(6, 4), "labels": [2, 0, 3, 2]}
    b2 = {"data": np.full((6, 3), 7, dtype=np.uint8), "labels": np.array([1.0, 1.0, 0.0])}
    meta = {"num_vis": 6, "data_mean": FLAT_MEAN, "label_names": ["a", "b", "c", "d"]}
    return write_batches(tmp_path / "flat", {1: b1, 2: b2}, meta)


def test_flatmem_data_minus_mean_and_one_hot_labelprobs(flat_dir):
    dp = DataProvider.get_instance(flat_dir, [1, 2], type="flatmem")
    assert dp.get_data_dims(0) == 6 and dp.get_data_dims(1) == 4
    e, b, (x, p) = dp.get_next_batch()
    assert (e, b) == (1, 1)
    assert x.dtype == p.dtype == np.float32 and x.flags.c_contiguous and p.flags.c_contiguous
    want = np.arange(24, dtype=np.float64).reshape(6, 4) - FLAT_MEAN[:, None]
    np.testing.assert_array_equal(x, want.astype(np.float32))
    # labels 2, 0, 3, 2 over 4 classes: column k has its one 1 in row labels[k]
    assert p.tolist() == [[0, 1, 0, 0],
                          [0, 0, 0, 0],
                          [1, 0, 0, 1],
                          [0, 0, 1, 0]]
    e, b, (x, p) = dp.get_next_batch()
    assert (e, b) == (1, 2) and x.shape == (6, 3)
    np.testing.assert_array_equal(x, np.float32(7 - FLAT_MEAN[:, None]) * np.ones((1, 3), np.float32))
    assert p.tolist() == [[0, 0, 1], [1, 1, 0], [0, 0, 0], [0, 0, 0]]
    # the next epoch hands out the same (read-only) arrays
    e, b, (x2, p2) = dp.get_next_batch()
    assert (e, b) == (2, 1) and not x2.flags.writeable and not p2.flags.writeable


def test_flatmem_bad_input(tmp_path, flat_dir):
    pickle(os.path.join(flat_dir, "data_batch_3"), {"data": np.zeros((6, 2), np.uint8), "labels": [0, 4]})
    one_line_error(lambda: DataProvider.get_instance(flat_dir, [3], type="flatmem"),
                   "data_batch_3", "label 4 of case 1", "0..3")
    pickle(os.path.join(flat_dir, "data_batch_3"), {"data": np.zeros((6, 2), np.uint8), "labels": [0.5, 1]})
    one_line_error(lambda: DataProvider.get_instance(flat_dir, [3], type="flatmem"), "data_batch_3",
                   "label 0.5 of case 0")
    pickle(os.path.join(flat_dir, "data_batch_3"), {"data": np.zeros((5, 2), np.uint8), "labels": [0, 1]})
    one_line_error(lambda: DataProvider.get_instance(flat_dir, [3], type="flatmem"), "data_batch_3", "'data'")
    for key in ("data_mean", "label_names"):
        d = write_batches(tmp_path / key, {1: {"data": np.zeros((6, 1), np.uint8), "labels": [0]}},
                      {k: v for k, v in {"num_vis": 6, "data_mean": FLAT_MEAN, "label_names": ["a"]}.items()
                       if k != key})
        one_line_error(lambda: DataProvider.get_instance(d, [1], type="flatmem"), "batches.meta", key)
    d = write_batches(tmp_path / "short", {1: {"data": np.zeros((6, 1), np.uint8), "labels": [0]}},
                  {"num_vis": 6, "data_mean": FLAT_MEAN[:5], "label_names": ["a"]})
    one_line_error(lambda: DataProvider.get_instance(d, [1], type="flatmem"), "batches.meta", "data_mean",
                   "5 values")


# ---------------------------------------------------------------------------------------
# inet-rs-lr-cropped (chm:convdata.py:270-309)
# ---------------------------------------------------------------------------------------

S = 6
N = 40          # two chunks: 32 + 8
CLASSES = 5
PCA = (np.array([3.0, 7.0, 20.0]), np.linalg.qr(np.random.RandomState(42).randn(3, 3))[0])


def rs_images():
    """(3, S, S, N) uint8 images, cases last, every pixel different enough to see flips."""
    return np.random.RandomState(0).randint(0, 256, (3, S, S, N)).astype(np.uint8)


@pytest.fixture
def rs_dir(tmp_path):
    imgs = rs_images()
    mean = np.random.RandomState(1).uniform(90, 140, 3 * S * S).astype(np.float32)
    meta = {"num_vis": 3 * S * S, "data_mean": mean.reshape(-1, 1), "color_pca": PCA,
            "label_names": ["c%d" % i for i in range(CLASSES)]}
    batch = {"data": imgs.reshape(3 * S * S, N), "labels": [k % CLASSES for k in range(N)]}
    return write_batches(tmp_path / "rs", {1: batch}, meta), imgs, mean


def flipped_by_chunk(imgs, flips):
    """The 2012 reflect_data: chunk c (cases 32c..32c+31) reversed left-right if flips[c]."""
    out = imgs.astype(np.float64).copy()
    for c, f in enumerate(flips):
        if f:
            out[:, :, :, 32 * c:32 * c + 32] = imgs[:, :, ::-1, 32 * c:32 * c + 32]
    return out


def test_rs_flips_whole_images_per_chunk_minus_a_scalar_mean(rs_dir):
    d, imgs, mean = rs_dir
    dp = DataProvider.get_instance(d, [1], type="inet-rs-lr-cropped", dp_params={"seed": 7})
    assert dp.get_data_dims(0) == 3 * S * S and dp.get_data_dims(1) == 1
    m = np.float32(mean).mean()
    rng = np.random.RandomState(7)
    seen = []
    for _ in range(3):  # one batch, read once: each epoch flips the batch as loaded, afresh
        flips = [rng.randint(2) == 0 for _ in range(2)]     # one draw per chunk, in order
        x, y = dp.get_next_batch()[2]
        assert x.shape == (3 * S * S, N) and x.dtype == np.float32 and x.flags.c_contiguous
        np.testing.assert_allclose(x, (flipped_by_chunk(imgs, flips) - m).reshape(3 * S * S, N), atol=1e-4)
        assert y.shape == (1, N) and y.ravel().tolist() == [k % CLASSES for k in range(N)]
        seen.append((flips, x))
    # seed 7 draws (no flip, flip) first: one pixel by hand from each chunk; channel 1,
    # row 2, column 0 is the row's last pixel in a flipped image
    (flips, x), row = seen[0], (1 * S + 2) * S
    assert flips == [False, True] and [f for fl, _ in seen for f in fl] == [False, True, False, True, False, False]
    assert x[row, 5] == pytest.approx(float(imgs[1, 2, 0, 5]) - m, abs=1e-4)
    assert x[row, 35] == pytest.approx(float(imgs[1, 2, S - 1, 35]) - m, abs=1e-4)


def test_rs_colour_noise_after_the_flips(rs_dir):
    d, imgs, mean = rs_dir
    coeff = 0.25
    dp = DataProvider.get_instance(d, [1], type="inet-rs-lr-cropped", dp_params={"seed": 3, "color_noise": coeff})
    x = dp.get_next_batch()[2][0]
    rng = np.random.RandomState(3)
    flips = [rng.randint(2) == 0 for _ in range(2)]
    r = rng.randn(3, 1024).astype(np.float32)                 # inet-lr-cropped's draw: a column per image
    noise = PCA[1] @ (r * PCA[0][:, None])                      # (3, 1024)
    want = flipped_by_chunk(imgs, flips) - np.float32(mean).mean()
    want = (want + coeff * noise[:, None, None, :N]) / (1 + coeff)
    np.testing.assert_allclose(x, want.reshape(3 * S * S, N), atol=2e-4)


def test_rs_test_batches_are_the_images_and_no_multiview(rs_dir):
    d, imgs, mean = rs_dir
    dp = DataProvider.get_instance(d, [1], type="inet-rs-lr-cropped", dp_params={"color_noise": 0.5}, test=True)
    x, y = dp.get_next_batch()[2]
    np.testing.assert_allclose(x, imgs.reshape(3 * S * S, N) - np.float32(mean).mean(), atol=1e-4)
    np.testing.assert_allclose(dp.get_plottable_data(x[:, :2]),
                               imgs[..., :2].transpose(3, 1, 2, 0) / 255.0, atol=1e-6)
    one_line_error(lambda: DataProvider.get_instance(d, [1], type="inet-rs-lr-cropped",
                                                     dp_params={"multiview_test": 1}, test=True),
                   "inet-rs-lr-cropped", "multiview")


def test_rs_bad_labels(rs_dir):
    d, imgs, _ = rs_dir
    pickle(os.path.join(d, "data_batch_2"), {"data": imgs.reshape(3 * S * S, N), "labels": [CLASSES] * N})
    dp = DataProvider.get_instance(d, [2], type="inet-rs-lr-cropped")
    one_line_error(dp.get_next_batch, "data_batch_2", "label 5 of case 0")


# ---------------------------------------------------------------------------------------
# dummy-lr-n (chm:convdata.py:311-337), dummy-ce-n (chm:convdata_flickr.py:280-297)
# ---------------------------------------------------------------------------------------

def test_dummy_lr_tree_and_gates():
    np.random.seed(11)
    dp = DataProvider.get_instance(None, type="dummy-lr-48")
    assert isinstance(dp, convdata.DummyConvNetLogRegDP) and dp.img_size == 4
    # ten leaves (the classes), then 10 = {0,1,2}, 11 = {3,4,5}, 12 = {6,7}, 13 = {8,9},
    # 14 = {10,11}, 15 = {12,13}, root 16 = {14,15}
    assert dp.batch_meta["tree"] == {0: [], 1: [], 2: [], 3: [], 4: [], 5: [], 6: [], 7: [], 8: [], 9: [],
                                     10: [0, 1, 2], 11: [3, 4, 5], 12: [6, 7], 13: [8, 9],
                                     14: [10, 11], 15: [12, 13], 16: [14, 15]}
    assert dp.batch_meta["all_wnids"] == {"gproot": 16} and dp.get_num_classes() == 10
    e, b, (x, y, g) = dp.get_next_batch()
    assert (e, b) == (1, 1) and [m.shape for m in (x, y, g)] == [(48, 512), (1, 512), (1, 512)]
    assert all(m.dtype == np.float32 and m.flags.c_contiguous for m in (x, y, g))
    assert [dp.get_data_dims(i) for i in range(3)] == [48, 1, 1]
    # numpy's global stream, in 2012's order: the cases, their labels, then the gates
    np.random.seed(11)
    np.testing.assert_array_equal(x, np.random.rand(512, 48).astype(np.float32).T)
    np.testing.assert_array_equal(y, np.random.randint(0, 10, 512).reshape(1, -1))
    np.testing.assert_array_equal(g, np.random.rand(1, 512).astype(np.float32))
    assert DataProvider.get_instance(None, type="dummy-lr-50").img_size == 4  # int(sqrt(50 // 3))


def test_dummy_ce_one_hot_rows_drawn_case_by_case():
    np.random.seed(4)
    dp = DataProvider.get_instance(None, type="dummy-ce-20")
    assert dp.get_num_classes() == 16 and [dp.get_data_dims(i) for i in (0, 1)] == [20, 16]
    e, b, (x, lab) = dp.get_next_batch()
    assert x.shape == (20, 16) and lab.shape == (16, 16) and x.dtype == lab.dtype == np.float32
    assert (lab.sum(axis=0) == 1).all() and set(np.unique(lab)) == {0.0, 1.0}
    np.random.seed(4)
    np.testing.assert_array_equal(x, np.random.rand(16, 20).astype(np.float32).T)
    np.random.randint(0, 16, 16)                       # the dummy's class labels, drawn and unused
    rows = [np.random.randint(0, 16) for _ in range(16)]  # then 2012's loop: one draw per case
    assert lab.argmax(axis=0).tolist() == rows


# ---------------------------------------------------------------------------------------
# flickr-ce-cropped (chm:convdata_flickr.py)
# ---------------------------------------------------------------------------------------

FS, FB = 12, 2
FI = FS - 2 * FB
FREQ = {"sky": 0, "sea": 1, "newyork": 2, "caf\xc9": 3}
FLICKR_CLASSES = 5


def flickr_tags(n):
    pool = [["Sky", " SEA "], ["New York", "unknown"], [], ["sky", "sky", "CAF\xc9"], ["sea\t"]]
    return [pool[k % len(pool)] for k in range(n)]


def flickr_want(n):
    """The tag matrix of flickr_tags(n), by hand: (5 classes, n)."""
    cols = [[0, 1], [2], [], [0, 3], [1]]
    out = np.zeros((FLICKR_CLASSES, n))
    for k in range(n):
        out[cols[k % 5], k] = 1
    return out


@pytest.fixture
def flickr(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rs = np.random.RandomState(5)
    yy, xx = np.mgrid[0:FS, 0:FS]
    strings = []
    for k in range(N):
        img = np.empty((FS, FS, 3), np.uint8)
        for c in range(3):
            a, b, off = rs.uniform(-6, 6, 3)
            img[:, :, c] = np.clip(120 + a * yy + b * xx + 5 * off, 0, 255)
        bio = io.BytesIO()
        Image.fromarray(img).save(bio, format="JPEG", quality=95)
        strings.append(bio.getvalue())
    pix = np.stack([np.asarray(Image.open(io.BytesIO(s)).convert("RGB")) for s in strings]
                   ).transpose(3, 1, 2, 0).astype(np.float64)   # (3, FS, FS, N), decoded here
    mean = np.random.RandomState(6).uniform(100, 140, 3 * FS * FS).astype(np.float32)
    meta = {"num_vis": 3 * FS * FS, "data_mean": mean, "color_pca": PCA, "batch_size": 48,
            "label_names": ["t%d" % i for i in range(FLICKR_CLASSES)], "freq_to_id": FREQ}
    d = write_batches(tmp_path / "flickr", {1: (strings, [(FS, FS)] * N, flickr_tags(N))}, meta)
    return d, strings, pix, mean.reshape(3, FS, FS)[:, FB:FB + FI, FB:FB + FI]


def flickr_crops(pix, mean_crop, draws):
    out = np.empty((3, FI, FI, pix.shape[3]))
    for c0, c1, sy, sx, f in draws:
        p = pix[:, sy:sy + FI, sx:sx + FI, c0:c1]
        out[..., c0:c1] = (p[:, :, ::-1] if f else p) - mean_crop[..., None]
    return out


def test_flickr_tags_become_a_class_by_case_matrix_with_chunk_crops_and_noise(flickr):
    d, _, pix, mean_crop = flickr
    coeff = 0.2
    dp = DataProvider.get_instance(d, [1], type="flickr-ce-cropped",
                                   dp_params={"crop_border": FB, "seed": 8, "color_noise": coeff, "threads": 2})
    assert dp.get_data_dims(0) == 3 * FI * FI and dp.get_data_dims(1) == FLICKR_CLASSES
    x, lab = dp.get_next_batch()[2]
    assert x.shape == (3 * FI * FI, N) and lab.shape == (FLICKR_CLASSES, N)
    assert x.dtype == lab.dtype == np.float32 and x.flags.c_contiguous and lab.flags.c_contiguous
    np.testing.assert_array_equal(lab, flickr_want(N))
    rng = np.random.RandomState(8)
    draws = []
    for c in range(0, N, 32):   # per chunk of 32: y, x, flip
        sy, sx = rng.randint(0, 2 * FB + 1), rng.randint(0, 2 * FB + 1)
        draws.append((c, min(c + 32, N), sy, sx, rng.randint(2) == 0))
    r = rng.randn(48, 3).astype(np.float32)    # randn(batch_size, 3), the first N rows used
    noise = (r[:N] * PCA[0]) @ PCA[1].T           # (N, 3)
    want = (flickr_crops(pix, mean_crop, draws) + coeff * noise.T[:, None, None, :]) / (1 + coeff)
    np.testing.assert_allclose(x, want.reshape(-1, N), atol=2e-4)
    # the next epoch's draws follow all 48 rows (batch_size), not the N used
    draws = []
    for c in range(0, N, 32):
        sy, sx = rng.randint(0, 2 * FB + 1), rng.randint(0, 2 * FB + 1)
        draws.append((c, min(c + 32, N), sy, sx, rng.randint(2) == 0))
    noise = (rng.randn(48, 3).astype(np.float32)[:N] * PCA[0]) @ PCA[1].T
    want = (flickr_crops(pix, mean_crop, draws) + coeff * noise.T[:, None, None, :]) / (1 + coeff)
    assert N < 48
    np.testing.assert_allclose(dp.get_next_batch()[2][0], want.reshape(-1, N), atol=2e-4)


def test_flickr_test_views_tile_the_tag_matrix(flickr):
    d, _, pix, mean_crop = flickr
    dp = DataProvider.get_instance(d, [1], type="flickr-ce-cropped", dp_params={"crop_border": FB}, test=True)
    x, lab = dp.get_next_batch()[2]
    np.testing.assert_allclose(x, flickr_crops(pix, mean_crop, [(0, N, FB, FB, False)]).reshape(-1, N), atol=1e-4)
    dp = DataProvider.get_instance(d, [1], type="flickr-ce-cropped",
                                   dp_params={"crop_border": FB, "multiview_test": 1}, test=True)
    x, lab = dp.get_next_batch()[2]
    assert x.shape == (3 * FI * FI, 10 * N) and lab.shape == (FLICKR_CLASSES, 10 * N)
    np.testing.assert_array_equal(lab, np.tile(flickr_want(N), (1, 10)))
    corners = [(0, 0), (0, 2 * FB), (FB, FB), (2 * FB, 0), (2 * FB, 2 * FB)]
    for v in range(10):
        want = flickr_crops(pix, mean_crop, [(0, N, corners[v % 5][0], corners[v % 5][1], v >= 5)])
        np.testing.assert_allclose(x[:, v * N:(v + 1) * N], want.reshape(-1, N), atol=1e-4)


def test_flickr_tag_key_is_python_2_bytes_rules():
    key = convdata_flickr.tag_key
    assert key(" New\tYork \n") == "newyork" and key(b"New York") == "newyork"
    assert key("CAF\xc9 Au Lait") == "caf\xc9aulait"     # only ASCII is lowered
    assert key("a\xa0b") == "a\xa0b"                     # latin1 no-break space is no whitespace to str.split in Python 2
    # a tag beyond latin1 was a Python 2 unicode string: lowered and split by unicode's rules
    assert key("\xdcn\xef C\xf6d\xe9\u0100\u2003X") == "\xfcn\xefc\xf6d\xe9\u0101x"


def test_flickr_unreadable_images_dropped_with_their_columns(flickr, tmp_path):
    d, strings, pix, mean_crop = flickr
    bad = list(strings[:6])
    bad[1], bad[4] = b"not a jpeg", bad[4][:40]
    pickle(os.path.join(d, "data_batch_2"), {"data": bad, "labels": flickr_tags(6)})
    dp = DataProvider.get_instance(d, [2], type="flickr-ce-cropped", dp_params={"crop_border": FB}, test=True)
    x, lab = dp.get_next_batch()[2]
    keep = [0, 2, 3, 5]
    assert dp.decode_failures == {2: 2} and x.shape == (3 * FI * FI, 4)
    np.testing.assert_array_equal(lab, flickr_want(6)[:, keep])
    np.testing.assert_allclose(x, flickr_crops(pix[..., keep], mean_crop, [(0, 4, FB, FB, False)]).reshape(-1, 4),
                               atol=1e-4)


def test_flickr_bad_input(flickr, tmp_path):
    d, strings, _, _ = flickr
    for obj, words in [((strings[:2], None, ["sky", ["sea"]]), ["data_batch_3", "tags of image 0"]),
                       ((strings[:2], None, [["sky"]]), ["data_batch_3", "2 images and 1 tag lists"]),
                       ({"data": strings[:1]}, ["data_batch_3", "not a Flickr batch"]),
                       ((strings[:0], None, []), ["data_batch_3", "no images"])]:
        pickle(os.path.join(d, "data_batch_3"), obj)
        dp = DataProvider.get_instance(d, [3], type="flickr-ce-cropped", dp_params={"crop_border": FB})
        one_line_error(dp.get_next_batch, *words)
    Image = pytest.importorskip("PIL.Image")
    bio = io.BytesIO()
    Image.fromarray(np.zeros((FS + 2, FS, 3), np.uint8)).save(bio, format="JPEG")
    pickle(os.path.join(d, "data_batch_3"), ([bio.getvalue()], None, [["sky"]]))
    dp = DataProvider.get_instance(d, [3], type="flickr-ce-cropped", dp_params={"crop_border": FB})
    one_line_error(dp.get_next_batch, "data_batch_3", "image 0", "12x14")

    meta_path = os.path.join(d, "batches.meta")
    meta = {"num_vis": 3 * FS * FS, "data_mean": np.zeros(3 * FS * FS), "label_names": ["a", "b"]}
    pickle(meta_path, meta)
    one_line_error(lambda: DataProvider.get_instance(d, [1], type="flickr-ce-cropped",
                                                     dp_params={"crop_border": FB}), "batches.meta", "freq_to_id")
    pickle(meta_path, dict(meta, freq_to_id={"sky": 0, "sea": 2}))
    one_line_error(lambda: DataProvider.get_instance(d, [1], type="flickr-ce-cropped",
                                                     dp_params={"crop_border": FB}),
                   "batches.meta", "freq_to_id['sea'] = 2", "0..1")


# ---------------------------------------------------------------------------------------
# Through the training loop (NumPy engine, the AlexNet dialect)
# ---------------------------------------------------------------------------------------

def section(name, **kv):
    return "[%s]\n" % name + "".join("%s=%s\n" % (k, v) for k, v in kv.items())


LEARN = dict(epsW=0.01, epsB=0.02, momW=0.9, momB=0.9, wc=0.0005)
DATA = section("data", type="data", dataIdx=0) + section("labels", type="data", dataIdx=1)


def train(tmp_path, defs, params, *argv):
    (tmp_path / "layers.cfg").write_text(defs)
    (tmp_path / "params.cfg").write_text(params)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            status = convnet.main(["--layer-def=%s" % (tmp_path / "layers.cfg"),
                                   "--layer-params=%s" % (tmp_path / "params.cfg"),
                                   "--save-path=%s" % (tmp_path / "save"), "--backend=numpy", "--seed=2"]
                                  + list(argv))
        except StopTraining as e:
            status = e.status
            print(e.message)
    return status, out.getvalue()


def costs(out, name):
    """The first cost printed on each training line ('1.2... name:  2.3, ...')."""
    return [float(v) for v in re.findall(r"^\d+\.\d+\.\.\. %s:  ([^, ]+)" % re.escape(name), out, re.M)]


def test_dummy_lr_feeds_a_treefc_net(tmp_path):
    net = (DATA + section("fc8", type="fc", inputs="data", outputs=8, initW=0.1, neuron="relu", gpu=0)
           + section("tree", type="treefc", inputs="fc8", initW=0.1)
           + section("probs", type="softmax", inputs="tree")
           + section("logprob", type="cost.logreg", inputs="labels,probs", gpu=0))
    params = section("fc8", **LEARN) + section("tree", **LEARN) + section("logprob", coeff=1)
    # the dummy has one batch per epoch; --test-freq beyond the run keeps it to training
    status, out = train(tmp_path, net, params, "--data-path=%s" % tmp_path, "--data-provider=dummy-lr-48",
                        "--train-range=1", "--test-range=1", "--test-freq=100", "--epochs=3", "--mini=128")
    assert status == 0, out[-2000:]
    assert "Initialized tree-fc layer 'tree' on GPU 0, producing 10 outputs" in out
    c = costs(out, "logprob")
    assert len(c) == 4 and all(np.isfinite(c)) and abs(c[0] - np.log(10)) < 0.1


def test_flatmem_feeds_a_cross_entropy_net_and_checkpoints(tmp_path):
    rs = np.random.RandomState(0)
    protos = rs.uniform(0, 255, (4, 20))
    batches = {}
    for b in (1, 2, 3):
        labels = rs.randint(0, 4, 64)
        batches[b] = {"data": np.clip(protos[labels] + rs.normal(0, 30, (64, 20)), 0, 255).T.astype(np.uint8),
                      "labels": labels.tolist()}
    mean = np.mean([bb["data"].mean(axis=1) for bb in batches.values()], axis=0)
    d = write_batches(tmp_path / "data", batches, {"num_vis": 20, "data_mean": mean, "label_names": list("abcd")})
    net = (DATA + section("fc4", type="fc", inputs="data", outputs=4, initW=0.01, neuron="logistic", gpu=0)
           + section("ce", type="cost.crossent2", inputs="labels,fc4", gpu=0))
    params = section("fc4", **LEARN) + section("ce", coeff=1)
    status, out = train(tmp_path, net, params, "--data-path=%s" % d, "--data-provider=flatmem",
                        "--train-range=1-2", "--test-range=3", "--test-freq=2", "--epochs=2", "--mini=32")
    assert status == 0, out[-2000:]
    assert "Initialized elementwise cross-entropy cost 'ce' on GPU 0" in out
    c = costs(out, "ce")
    assert len(c) == 5 and all(np.isfinite(c)) and c[-1] < c[0]
    assert out.count("Saved checkpoint to") == 2
