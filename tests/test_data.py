"""data.py and the CIFAR/dummy providers of convdata.py, on tiny synthetic batches."""

import os
import pickle as std_pickle
import subprocess
import sys

import numpy as np
import pytest

from cudaconvnet import convdata  # noqa: F401  (registers the image providers)
from cudaconvnet.convdata import (CIFARDataProvider, CroppedCIFARDataProvider,
                                  DummyConvNetDataProvider, multiview_positions)
from cudaconvnet.data import (DataProvider, DataProviderException, DummyDataProvider,
                              LabeledDummyDataProvider, LabeledMemoryDataProvider,
                              register_data_provider)
from cudaconvnet.util import pickle


def write_batches(d, batches, meta):
    os.makedirs(d, exist_ok=True)
    for num, dic in batches.items():
        pickle(os.path.join(d, "data_batch_%d" % num), dic)
    pickle(os.path.join(d, "batches.meta"), meta)
    return str(d)


@pytest.fixture
def plain_dir(tmp_path):
    """Three batches whose 'data' says which batch they are."""
    batches = {b: {"data": np.full((4, 3), b, dtype=np.float32), "labels": [b, b, b]}
               for b in (1, 2, 3)}
    return write_batches(tmp_path / "plain", batches, {"num_vis": 4, "label_names": list("abcd")})


def twelve_2012(batch_range, init_epoch, init_batchnum, calls):
    """What 2012's get_next_batch returned, written out by hand: (epoch, batchnum) pairs."""
    idx = batch_range.index(init_batchnum) if init_batchnum in batch_range else 0
    epoch, out = init_epoch, []
    for _ in range(calls):
        out.append((epoch, batch_range[idx]))
        idx = (idx + 1) % len(batch_range)
        if idx == 0:
            epoch += 1
    return out


# ---------------------------------------------------------------------------------------
# Cycling, epochs, prefetch
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("prefetch", [True, False])
@pytest.mark.parametrize("rng,e0,b0", [([1, 2, 3], 1, None), ([1, 2, 3], 4, 2), ([2, 3], 1, 7),
                                        ([3], 2, 3)])
def test_batch_cycling_and_epochs_like_2012(plain_dir, prefetch, rng, e0, b0):
    dp = DataProvider.get_instance(plain_dir, rng, e0, b0, type="default",
                                   dp_params={"prefetch": prefetch})
    got = []
    for _ in range(7):
        expect_next = dp.get_next_batch_num()
        epoch, batchnum, dic = dp.get_next_batch()
        assert (dic["data"] == batchnum).all()  # the data is that batch's
        assert dp.curr_batchnum == expect_next
        got.append((epoch, batchnum))
    assert got == twelve_2012(rng, e0, b0, 7)


def test_resume_advance_between_calls(plain_dir):
    # gpumodel calls advance_batch() after making the provider when it resumes; any batch
    # loaded ahead for the old position must be dropped, not returned.
    dp = DataProvider.get_instance(plain_dir, [1, 2, 3], type="default")
    assert dp.get_next_batch()[:2] == (1, 1)  # batch 2 is now loading in the background
    dp.advance_batch()
    e, b, dic = dp.get_next_batch()
    assert (e, b) == (1, 3) and (dic["data"] == 3).all()
    assert dp.get_next_batch()[:2] == (2, 1)


def test_one_batch_range_is_read_once(plain_dir, monkeypatch):
    calls = []
    orig = DataProvider.get_batch
    monkeypatch.setattr(DataProvider, "get_batch", lambda self, n: calls.append(n) or orig(self, n))
    dp = DataProvider.get_instance(plain_dir, [2], type="default")
    for _ in range(4):
        dp.get_next_batch()
    assert calls == [2]


def test_no_range_means_every_batch(plain_dir):
    dp = DataProvider.get_instance(plain_dir, None, type="labeled")
    assert dp.batch_range == [1, 2, 3] and dp.get_num_classes() == 4


def test_memory_provider_non_contiguous_range(plain_dir):
    dp = DataProvider.get_instance(plain_dir, [1, 3], type="labeled-memory")
    seq = [dp.get_next_batch() for _ in range(3)]
    assert [(e, b) for e, b, _ in seq] == [(1, 1), (1, 3), (2, 1)]
    assert (seq[1][2]["data"] == 3).all()
    assert seq[1][2]["labels"].shape == (3, 1) and seq[1][2]["labels"].dtype == np.float32


# ---------------------------------------------------------------------------------------
# Sub-batches
# ---------------------------------------------------------------------------------------

def test_sub_batches_2012_layout(tmp_path):
    d = tmp_path / "sub"
    parts = [np.arange(k * 12, (k + 1) * 12, dtype=np.float32).reshape(4, 3) for k in range(3)]
    write_batches(d, {}, {"num_vis": 4, "label_names": ["x"] * 9})
    for k, p in enumerate(parts, start=1):
        pickle(d / ("data_batch_5.%d" % k), {"data": p, "labels": [k] * 3, "batch_label": "part %d" % k,
                                               "jpegs": [b"j%d" % k] * 3})
    dp = DataProvider.get_instance(str(d), None, type="default")
    assert dp.batch_range == [5]
    dic = dp.get_batch(5)
    # (dims, cases) data joined along cases; lists extended; per-batch values kept.
    np.testing.assert_array_equal(dic["data"], np.concatenate(parts, axis=1))
    assert dic["labels"] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert dic["jpegs"] == [b"j1"] * 3 + [b"j2"] * 3 + [b"j3"] * 3
    assert dic["batch_label"] == "part 1"


def test_sub_batches_cc2_folder_layout_and_rows(tmp_path):
    d = tmp_path / "cc2"
    write_batches(d, {}, {"num_vis": 2, "label_names": ["x"] * 9})
    os.makedirs(d / "data_batch_0")
    for k in range(2):  # cases in rows, labels as arrays
        pickle(d / "data_batch_0" / ("data_batch_0.%d" % k),
               {"data": np.full((3, 2), k, np.float32), "labels": np.array([k, k, k])})
    dic = DataProvider.get_instance(str(d), [0], type="default").get_batch(0)
    assert dic["data"].shape == (6, 2) and dic["labels"].tolist() == [0, 0, 0, 1, 1, 1]


def test_missing_sub_batch_is_an_error(tmp_path):
    d = tmp_path / "gap"
    write_batches(d, {}, {"num_vis": 4})
    for k in (1, 2, 4):
        pickle(d / ("data_batch_1.%d" % k), {"data": np.zeros((4, 1)), "labels": [0]})
    dp = DataProvider.get_instance(str(d), [1], type="default")
    with pytest.raises(DataProviderException, match=r"data_batch_1\.3' is missing"):
        dp.get_batch(1)
    # the parts start at .0 or .1: a batch whose first part is .2 lost one
    for k in (1, 4):
        os.remove(d / ("data_batch_1.%d" % k))
    with pytest.raises(DataProviderException, match=r"data_batch_1\.1' is missing \(found \.2\)"):
        dp.get_batch(1)


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------

def test_missing_things_give_one_line_errors(tmp_path, plain_dir):
    with pytest.raises(DataProviderException, match="does not exist"):
        DataProvider.get_instance(str(tmp_path / "nope"), [1], type="default")
    os.makedirs(tmp_path / "nometa")
    with pytest.raises(DataProviderException, match="batches.meta"):
        DataProvider.get_instance(str(tmp_path / "nometa"), [1], type="default")
    dp = DataProvider.get_instance(plain_dir, [1, 9], type="default")
    dp.get_next_batch()
    with pytest.raises(DataProviderException) as ei:
        dp.get_next_batch()
    assert "data_batch_9" in str(ei.value) and "\n" not in str(ei.value)


def test_corrupt_batch_error_names_the_file(plain_dir):
    path = os.path.join(plain_dir, "data_batch_2")
    with open(path, "r+b") as f:
        f.truncate(20)
    dp = DataProvider.get_instance(plain_dir, [1, 2], type="default")
    assert dp.get_next_batch()[1] == 1  # batch 1 is fine; batch 2 fails in the background...
    with pytest.raises(DataProviderException) as ei:
        dp.get_next_batch()  # ...and the error surfaces when batch 2 is asked for
    assert path in str(ei.value) and "truncated" in str(ei.value) and "\n" not in str(ei.value)


def test_hostile_batch_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))
    d = write_batches(tmp_path / "evil", {}, {"num_vis": 1})
    with open(os.path.join(d, "data_batch_1"), "wb") as f:
        std_pickle.dump({"data": Evil()}, f)
    dp = DataProvider.get_instance(d, [1], type="default", dp_params={"prefetch": False})
    with pytest.raises(DataProviderException, match="could run code"):
        dp.get_next_batch()


def test_wrong_layout(tmp_path):
    d = write_batches(tmp_path / "bad", {1: {"data": np.zeros((5, 7), np.uint8), "labels": [0] * 7}},
                      {"num_vis": 3072, "label_names": list("ab"), "data_mean": np.zeros(3072)})
    with pytest.raises(DataProviderException, match=r"shape \(5, 7\); expected \(3072, N\)"):
        DataProvider.get_instance(d, [1], type="cifar")
    d = write_batches(tmp_path / "notdict", {1: [1, 2, 3]}, {"num_vis": 3072, "label_names": ["a"]})
    with pytest.raises(DataProviderException, match="not a batch"):
        DataProvider.get_instance(d, [1], type="cifar")


# ---------------------------------------------------------------------------------------
# Registry and dummy providers
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("module", ["convdata_jpeg", "convdata_flickr", "convdata", "data", "convnet", "shownet"])
def test_each_provider_module_imports_first(module):
    """In a fresh interpreter, any module may be the first imported (convdata_jpeg first
    used to fail: convdata imported it back, and convdata_flickr, half made)."""
    proc = subprocess.run([sys.executable, "-c", "import cudaconvnet.%s" % module], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_registry_names_and_dp_type_fallback(tmp_path, plain_dir):
    from cudaconvnet.data import dp_classes, dp_types
    DataProvider.get_instance(plain_dir, [1], type="labeled-memory")  # imports every provider module
    assert set(dp_types) >= {"default", "memory", "labeled", "labeled-memory", "dummy-n",
                             "dummy-labeled-n", "cifar", "cifar-cropped", "dummy-cn-n", "inet-lr",
                             "inet-lr-cropped", "inet-lr-cropped-jpeg", "flickr-ce-cropped", "dummy-ce-n"}
    assert dp_classes["cifar-cropped"] is CroppedCIFARDataProvider
    assert dp_classes["dummy-cn-n"] is DummyConvNetDataProvider
    pickle(os.path.join(plain_dir, "batches.meta"), {"num_vis": 4, "label_names": ["a"],
                                                     "dp_type": "labeled-memory"})
    assert isinstance(DataProvider.get_instance(plain_dir, [1], type=None), LabeledMemoryDataProvider)
    with pytest.raises(DataProviderException, match="No such data provider: nope"):
        DataProvider.get_instance(plain_dir, [1], type="nope")
    for bad in ("dummy-xyz-5", "dummy-cn-abc"):
        with pytest.raises(DataProviderException, match="No such data provider"):
            DataProvider.get_instance(plain_dir, [1], type=bad)
    register_data_provider("cifar", "again", CIFARDataProvider)  # same class: fine
    with pytest.raises(DataProviderException, match="already registered"):
        register_data_provider("cifar", "other", DataProvider)


def test_dummy_providers():
    np.random.seed(3)
    dp = DataProvider.get_instance(None, type="dummy-20")
    assert isinstance(dp, DummyDataProvider)
    e, b, dic = dp.get_next_batch()
    assert (e, b) == (1, 1) and dic["data"].shape == (512, 20) and dic["data"].dtype == np.float32
    assert dp.get_next_batch()[:2] == (2, 1)  # one batch per epoch

    dp = DataProvider.get_instance(None, type="dummy-labeled-7")
    assert isinstance(dp, LabeledDummyDataProvider) and dp.get_num_classes() == 10
    dic = dp.get_next_batch()[2]
    assert dic["labels"].shape == (512, 1) and set(np.unique(dic["labels"])) <= set(range(10))

    np.random.seed(5)
    dp = DataProvider.get_instance(None, type="dummy-cn-192")
    assert isinstance(dp, DummyConvNetDataProvider) and dp.img_size == 8
    e, b, (x, y) = dp.get_next_batch()
    assert x.shape == (192, 512) and y.shape == (1, 512)
    assert x.dtype == y.dtype == np.float32 and x.flags.c_contiguous and y.flags.c_contiguous
    assert dp.get_data_dims(0) == 192 and dp.get_data_dims(1) == 1
    assert (y == np.round(y)).all() and 0 <= y.min() and y.max() <= 9
    np.random.seed(5)  # numpy's global generator drives the dummies, as in 2012
    x2 = DataProvider.get_instance(None, type="dummy-cn-192").get_next_batch()[2][0]
    np.testing.assert_array_equal(x, x2)


# ---------------------------------------------------------------------------------------
# CIFAR
# ---------------------------------------------------------------------------------------

def cifar_dirs(tmp_path, n=10, seed=0):
    rs = np.random.RandomState(seed)
    imgs = {b: rs.randint(0, 256, (3072, n)).astype(np.uint8) for b in (1, 2)}
    labels = {b: list(rs.randint(0, 10, n)) for b in (1, 2)}
    mean = imgs[1].mean(axis=1) * 0.5 + 3.25
    names = ["c%d" % i for i in range(10)]
    cc = write_batches(tmp_path / "cc", {b: {"data": imgs[b], "labels": labels[b]} for b in imgs},
                       {"data_mean": mean.reshape(3072, 1), "label_names": names, "num_vis": 3072})
    # The official CIFAR-10 python layout: rows are images, mean of shape (3072,).
    official = write_batches(tmp_path / "official",
                             {b: {"data": np.ascontiguousarray(imgs[b].T), "labels": labels[b],
                                  "batch_label": "training batch %d of 5" % b,
                                  "filenames": ["f%d.png" % i for i in range(n)]} for b in imgs},
                             {"data_mean": mean, "label_names": names, "num_vis": 3072})
    return cc, official, imgs, labels, mean


def test_cifar_both_layouts_subtract_mean(tmp_path):
    cc, official, imgs, labels, mean = cifar_dirs(tmp_path)
    for d in (cc, official):
        dp = DataProvider.get_instance(d, [1, 2], type="cifar")
        assert isinstance(dp, CIFARDataProvider)
        for b in (1, 2):
            e, bn, (x, y) = dp.get_next_batch()
            assert bn == b and x.shape == (3072, 10) and y.shape == (1, 10)
            assert x.dtype == y.dtype == np.float32 and x.flags.c_contiguous
            np.testing.assert_array_equal(x, (imgs[b] - mean.reshape(3072, 1)).astype(np.float32))
            assert y.ravel().tolist() == labels[b]
        assert dp.get_data_dims(0) == 3072 and dp.get_data_dims(1) == 1 and dp.get_num_classes() == 10
        with pytest.raises(ValueError):  # shared by every epoch: read-only
            x[0, 0] = 1
        plot = dp.get_plottable_data(x)
        assert plot.shape == (10, 32, 32, 3)
        np.testing.assert_allclose(plot[3, 5, 7, 2], imgs[2][2 * 1024 + 5 * 32 + 7, 3] / 255.0, rtol=1e-6)


def test_cifar_bytes_keys_and_missing_mean(tmp_path):
    # A batch re-pickled after loading with encoding='bytes' has b'data' keys; the official
    # archive's batches.meta has no data_mean (then the mean of all data_batch files is used).
    rs = np.random.RandomState(1)
    imgs = [rs.randint(0, 256, (4, 3072)).astype(np.uint8) for _ in range(2)]
    d = write_batches(tmp_path / "bk", {b + 1: {b"data": imgs[b], b"labels": [b, b, b, b]}
                                        for b in range(2)},
                      {b"label_names": ["a", "b"], b"num_vis": 3072})
    dp = DataProvider.get_instance(d, [2], type="cifar")
    x = dp.get_next_batch()[2][0]
    mean = np.concatenate(imgs).astype(np.float64).mean(axis=0).reshape(3072, 1)
    np.testing.assert_allclose(x, imgs[1].T - mean, rtol=0, atol=1e-4)


def test_cifar_missing_mean_is_the_training_batches(tmp_path):
    """Without a data_mean, the mean is that of --train-range's batches, for the test
    provider too: a test batch linked as data_batch_3 stays out of it."""
    imgs = {1: np.full((3072, 2), 10, np.uint8), 2: np.full((3072, 2), 20, np.uint8),
            3: np.full((3072, 2), 255, np.uint8)}
    d = write_batches(tmp_path / "m", {b: {"data": x, "labels": [0, 1]} for b, x in imgs.items()},
                      {"label_names": ["a", "b"], "num_vis": 3072})
    dp = DataProvider.get_instance(d, [3], type="cifar", test=True, dp_params={"train_batch_range": [1, 2]})
    np.testing.assert_array_equal(dp.get_next_batch()[2][0], np.full((3072, 2), 240, np.float32))


@pytest.mark.parametrize("labels,why", [([1, 10], "label 10 of case 1 is not a class number 0..9"),
                                         ([-1, 0], "label -1 of case 0"), ([0.5, 1], "label 0.5 of case 0"),
                                         ([0, float("nan")], "label nan of case 1"), ([], "holds no cases")])
def test_cifar_labels_must_be_class_numbers(tmp_path, labels, why):
    """Labels 1..10 (a common slip) and the like are refused naming the file, as the
    ImageNet providers did; 2012 let the logreg kernel read past its probabilities."""
    d = write_batches(tmp_path / "l", {1: {"data": np.zeros((3072, len(labels)), np.uint8), "labels": labels}},
                      {"label_names": ["c%d" % i for i in range(10)], "num_vis": 3072, "data_mean": np.zeros(3072)})
    with pytest.raises(DataProviderException) as ei:
        DataProvider.get_instance(d, [1], type="cifar")
    assert why in str(ei.value) and os.path.join(d, "data_batch_1") in str(ei.value)


def test_official_cifar_test_batch_hint(tmp_path):
    cc, official, *_ = cifar_dirs(tmp_path)
    pickle(os.path.join(official, "test_batch"), {"data": np.zeros((1, 3072), np.uint8), "labels": [0]})
    with pytest.raises(DataProviderException, match="test_batch"):
        DataProvider.get_instance(official, [6], type="cifar", test=True)


# ---------------------------------------------------------------------------------------
# Cropped CIFAR on 8x8 images with known pixels (num_vis = 3*8*8 = 192)
# ---------------------------------------------------------------------------------------

S, B = 8, 2         # image side, crop border
I = S - 2 * B       # inner size: 4


def pixel(n, c, r, col):
    """The known value of case n, channel c, row r, column col."""
    return (n * 7 + c * 64 + r * 8 + col) % 256


def tiny_dir(tmp_path, n=6, layout="cc"):
    img = np.zeros((3, S, S, n), dtype=np.uint8)
    for k in range(n):
        for c in range(3):
            for r in range(S):
                for col in range(S):
                    img[c, r, col, k] = pixel(k, c, r, col)
    mean = np.arange(3 * S * S, dtype=np.float64) * 0.25
    data = img.reshape(3 * S * S, n)
    if layout == "official":
        data = np.ascontiguousarray(data.T)
    d = write_batches(tmp_path / ("tiny_" + layout), {1: {"data": data, "labels": list(range(n))}},
                      {"data_mean": mean.reshape(-1, 1), "label_names": [str(i) for i in range(n)],
                       "num_vis": 3 * S * S})
    return d, mean.reshape(3, S, S)


def expected_crop(k, sy, sx, flip, mean):
    out = np.zeros((3, I, I))
    for c in range(3):
        for i in range(I):
            for j in range(I):
                jj = I - 1 - j if flip else j
                # the mean subtracted is the centre crop of data_mean, whatever the crop
                out[c, i, j] = pixel(k, c, sy + i, sx + jj) - mean[c, B + i, B + j]
    return out.ravel()


@pytest.mark.parametrize("layout", ["cc", "official"])
def test_cropped_train_crops_and_flips(tmp_path, layout):
    d, mean = tiny_dir(tmp_path, layout=layout)
    dp = DataProvider.get_instance(d, [1], type="cifar-cropped", dp_params={"crop_border": B, "seed": 0})
    assert dp.get_data_dims() == 3 * I * I and dp.inner_size == I
    sy = np.array([0, 4, 2, 1, 3, 0])
    sx = np.array([4, 0, 2, 3, 1, 0])
    flip = np.array([False, True, False, True, True, False])
    dp.draw_crops = lambda n: (sy, sx, flip)
    x, y = dp.get_next_batch()[2]
    assert x.shape == (3 * I * I, 6) and x.flags.c_contiguous and x.dtype == np.float32
    for k in range(6):
        np.testing.assert_allclose(x[:, k], expected_crop(k, sy[k], sx[k], flip[k], mean), rtol=0, atol=1e-5)
    assert y.ravel().tolist() == list(range(6))


def test_cropped_border_defaults_to_4(tmp_path):
    """cuda-convnet's default crop border, 4: which leaves nothing of an 8x8 image."""
    d, _ = tiny_dir(tmp_path)
    with pytest.raises(DataProviderException, match="crop_border=4 does not fit 8x8 images"):
        DataProvider.get_instance(d, [1], type="cifar-cropped", dp_params={})


def test_cropped_random_draws_cover_all_positions(tmp_path):
    d, mean = tiny_dir(tmp_path)
    dp = DataProvider.get_instance(d, [1], type="cifar-cropped", dp_params={"crop_border": B, "seed": 1})
    sy, sx, flip = dp.draw_crops(4000)
    assert set(sy) == set(sx) == set(range(2 * B + 1))
    assert 0.45 < flip.mean() < 0.55
    # Same seed, same crops: the background thread keeps the draws in batch order.
    a = DataProvider.get_instance(d, [1], type="cifar-cropped", dp_params={"crop_border": B, "seed": 7})
    b = DataProvider.get_instance(d, [1], type="cifar-cropped",
                                  dp_params={"crop_border": B, "seed": 7, "prefetch": False})
    for _ in range(3):
        np.testing.assert_array_equal(a.get_next_batch()[2][0], b.get_next_batch()[2][0])


def test_cropped_test_centre(tmp_path):
    d, mean = tiny_dir(tmp_path)
    dp = DataProvider.get_instance(d, [1], type="cifar-cropped", dp_params={"crop_border": B},
                                   test=True)
    x, y = dp.get_next_batch()[2]
    for k in range(6):
        np.testing.assert_allclose(x[:, k], expected_crop(k, B, B, False, mean), atol=1e-5)


def test_cropped_multiview_ten_views(tmp_path):
    n = 6
    d, mean = tiny_dir(tmp_path, n=n)
    dp = DataProvider.get_instance(d, [1], type="cifar-cropped",
                                   dp_params={"crop_border": B, "multiview_test": True}, test=True)
    assert dp.num_views == 10 and dp.data_mult == 10
    x, y = dp.get_next_batch()[2]
    assert x.shape == (3 * I * I, 10 * n) and y.shape == (1, 10 * n)
    assert multiview_positions(B) == [(0, 0), (0, 4), (2, 2), (4, 0), (4, 4)]
    views = [(0, 0, False), (0, 4, False), (2, 2, False), (4, 0, False), (4, 4, False),
             (0, 0, True), (0, 4, True), (2, 2, True), (4, 0, True), (4, 4, True)]
    for v, (sy, sx, f) in enumerate(views):
        for k in range(n):
            # all cases' view v sit together: column v*n + k
            np.testing.assert_allclose(x[:, v * n + k], expected_crop(k, sy, sx, f, mean), atol=1e-5)
    assert y.ravel().tolist() == list(range(n)) * 10
    # multiview_test only applies to the test provider
    tr = DataProvider.get_instance(d, [1], type="cifar-cropped",
                                   dp_params={"crop_border": B, "multiview_test": True})
    assert tr.data_mult == 1 and tr.get_next_batch()[2][0].shape == (3 * I * I, n)


def test_cropped_multiview_nine_views_in_the_alexnet_dialect(tmp_path):
    """The AlexNet code's cifar-cropped (its convdata_cifar.py) tested on 9 views: the 3 x 3
    grid of corners (0, b, 2b) x (0, b, 2b), row by row, none flipped; its centre is view 4."""
    n = 6
    d, mean = tiny_dir(tmp_path, n=n)
    dp = DataProvider.get_instance(d, [1], type="cifar-cropped",
                                   dp_params={"crop_border": B, "multiview_test": True, "dialect": "alexnet"},
                                   test=True)
    assert dp.num_views == 9 and dp.data_mult == 9 and dp.centre_view == 4
    x, y = dp.get_next_batch()[2]
    assert x.shape == (3 * I * I, 9 * n) and y.shape == (1, 9 * n)
    for v, (sy, sx) in enumerate([(0, 0), (0, 2), (0, 4), (2, 0), (2, 2), (2, 4), (4, 0), (4, 2), (4, 4)]):
        for k in range(n):
            np.testing.assert_allclose(x[:, v * n + k], expected_crop(k, sy, sx, False, mean), atol=1e-5)
    assert y.ravel().tolist() == list(range(n)) * 9
    cc = DataProvider.get_instance(d, [1], type="cifar-cropped",
                                   dp_params={"crop_border": B, "multiview_test": True, "dialect": "cuda-convnet"},
                                   test=True)
    assert cc.num_views == 10 and cc.centre_view == 2


def test_cropped_plottable(tmp_path):
    d, mean = tiny_dir(tmp_path)
    dp = DataProvider.get_instance(d, [1], type="cifar-cropped", dp_params={"crop_border": B},
                                   test=True)
    x = dp.get_next_batch()[2][0]
    p = dp.get_plottable_data(x)
    assert p.shape == (6, I, I, 3)
    np.testing.assert_allclose(p[2, 1, 3, 0], pixel(2, 0, B + 1, B + 3) / 255.0, rtol=1e-5)
