"""The ImageNet providers (CHM 2012): raw and JPEG batches, chunk crops, PCA colour noise,
10-view test, on 16x16 synthetic images (num_vis = 768, crop_border 2 -> 12x12)."""

import io
import os

import numpy as np
import pytest

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from cudaconvnet.convdata import CroppedImageNetLogRegDP, ImageNetLogRegDP  # noqa: E402
from cudaconvnet.convdata_jpeg import JPEGCroppedImageNetLogRegDP, decode_jpeg  # noqa: E402
from cudaconvnet.data import DataProvider, DataProviderException  # noqa: E402
from cudaconvnet.util import pickle, unpickle  # noqa: E402

S, B = 16, 2
I = S - 2 * B
N = 40               # two crop chunks: 32 + 8
NUM_CLASSES = 5


def make_images(n=N, seed=0):
    """Smooth random images (JPEG keeps them close), (n, S, S, 3) uint8."""
    rs = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:S, 0:S]
    imgs = np.empty((n, S, S, 3), np.uint8)
    for k in range(n):
        for c in range(3):
            a, b, off = rs.uniform(-6, 6, 3)
            imgs[k, :, :, c] = np.clip(120 + a * yy + b * xx + off * 5, 0, 255)
    return imgs


def make_meta(imgs, batch_size=N):
    rs = np.random.RandomState(42)
    q, _ = np.linalg.qr(rs.randn(3, 3))
    mean = imgs.transpose(3, 1, 2, 0).reshape(3 * S * S, -1).mean(axis=1) + rs.uniform(-3, 3, 3 * S * S)
    return {"data_mean": mean.reshape(-1, 1).astype(np.float32),
            "color_pca": (np.array([3.0, 7.0, 20.0]), q),
            "label_names": ["class%d" % i for i in range(NUM_CLASSES)],
            "num_vis": 3 * S * S, "batch_size": batch_size}


def labels_for(n):
    return [k % NUM_CLASSES for k in range(n)]


def jpeg_bytes(img, quality=95):
    bio = io.BytesIO()
    Image.fromarray(img).save(bio, format="JPEG", quality=quality)
    return bio.getvalue()


def decoded(strings):
    """What a decoder sees: (n, 3, S, S) float64, decoded here independently of the provider."""
    return np.stack([np.asarray(Image.open(io.BytesIO(s)).convert("RGB")) for s in strings]
                    ).transpose(0, 3, 1, 2).astype(np.float64)


@pytest.fixture
def raw_dir(tmp_path):
    imgs = make_images()
    d = tmp_path / "raw"
    os.makedirs(d)
    data = np.ascontiguousarray(imgs.transpose(3, 1, 2, 0).reshape(3 * S * S, N))
    pickle(d / "data_batch_1", {"data": data, "labels": labels_for(N)})
    pickle(d / "batches.meta", make_meta(imgs))
    return str(d), imgs.transpose(0, 3, 1, 2).astype(np.float64)


@pytest.fixture
def jpeg_dir(tmp_path):
    imgs = make_images()
    d = tmp_path / "jpeg"
    os.makedirs(d)
    strings = [jpeg_bytes(im) for im in imgs]
    pickle(d / "data_batch_1", {"data": strings, "labels": labels_for(N)})
    pickle(d / "data_batch_2", {"data": strings[:8], "labels": [[l] for l in labels_for(8)]})
    pickle(d / "batches.meta", dict(make_meta(imgs), dp_type="inet-lr-cropped-jpeg"))
    return str(d), decoded(strings)


def chunk_draws(rng, n, chunk=32):
    """The 2012 order: for each chunk of 32 cases, y then x then flip."""
    out = []
    for c in range(0, n, chunk):
        sy, sx = rng.randint(0, 2 * B + 1), rng.randint(0, 2 * B + 1)
        out.append((c, min(c + chunk, n), sy, sx, rng.randint(2) == 0))
    return out


def hand_crops(pix, mean, draws):
    """(n, 3, I, I): per chunk one crop corner and flip, minus the centre crop of the mean."""
    mean_crop = mean.reshape(3, S, S)[:, B:B + I, B:B + I]
    out = np.empty((pix.shape[0], 3, I, I))
    for c0, c1, sy, sx, f in draws:
        p = pix[c0:c1, :, sy:sy + I, sx:sx + I]
        out[c0:c1] = (p[..., ::-1] if f else p) - mean_crop
    return out


def as_batch(cases):
    """(n, 3, I, I) -> the (features, cases) matrix layout."""
    return cases.reshape(cases.shape[0], -1).T


# ---------------------------------------------------------------------------------------
# Raw batches: inet-lr and inet-lr-cropped
# ---------------------------------------------------------------------------------------

def test_inet_lr_whole_images(raw_dir):
    d, pix = raw_dir
    dp = DataProvider.get_instance(d, [1], type="inet-lr")
    assert isinstance(dp, ImageNetLogRegDP)
    x, y = dp.get_next_batch()[2]
    mean = make_meta(make_images())["data_mean"]
    np.testing.assert_allclose(x, as_batch(pix) - mean, atol=1e-4)
    assert y.ravel().tolist() == labels_for(N) and dp.get_num_classes() == NUM_CLASSES
    assert [dp.get_data_dims(i) for i in range(3)] == [3 * S * S, 1, 100]   # 2012's, wordpres third


def test_inet_lr_wordpres_comes_third(raw_dir, tmp_path):
    """The AlexNet code's ImageNet batches carried 'wordpres', which inet-lr returned as the
    third matrix, as stored (here as float32: the engine's matrices are)."""
    d, pix = raw_dir
    dic = unpickle(os.path.join(d, "data_batch_1"))
    words = (np.arange(100 * N) % 3 == 0).reshape(100, N).astype(np.uint8)
    pickle(os.path.join(d, "data_batch_1"), dict(dic, wordpres=words))
    x, y, w = DataProvider.get_instance(d, [1], type="inet-lr").get_next_batch()[2]
    assert w.dtype == np.float32 and w.flags.c_contiguous and np.array_equal(w, words)
    pickle(os.path.join(d, "data_batch_1"), dict(dic, wordpres=words[:, :-1]))
    with pytest.raises(DataProviderException, match="'wordpres' is not a matrix with a column per image"):
        DataProvider.get_instance(d, [1], type="inet-lr").get_next_batch()


def test_raw_chunk_crops_and_flips(raw_dir):
    d, pix = raw_dir
    dp = DataProvider.get_instance(d, [1], type="inet-lr-cropped", dp_params={"crop_border": B, "seed": 3})
    assert isinstance(dp, CroppedImageNetLogRegDP) and dp.get_data_dims() == 3 * I * I
    x, y = dp.get_next_batch()[2]
    draws = chunk_draws(np.random.RandomState(3), N)
    mean = make_meta(make_images())["data_mean"]
    np.testing.assert_allclose(x, as_batch(hand_crops(pix, mean, draws)), atol=1e-4)
    assert x.shape == (3 * I * I, N) and x.flags.c_contiguous and x.dtype == np.float32
    assert y.ravel().tolist() == labels_for(N)


def test_raw_pca_colour_noise_by_hand(raw_dir):
    d, pix = raw_dir
    coeff = 0.3
    dp = DataProvider.get_instance(d, [1], type="inet-lr-cropped",
                                   dp_params={"crop_border": B, "seed": 11, "color_noise": coeff})
    x = dp.get_next_batch()[2][0]
    meta = make_meta(make_images())
    stdevs, vecs = meta["color_pca"]
    rng = np.random.RandomState(11)
    draws = chunk_draws(rng, N)
    # inet-lr-cropped (CHM convdata.py) draws randn(3, 1024): one column per image
    r = rng.randn(3, 1024).astype(np.float32)
    noise = vecs @ (r * stdevs[:, None])               # eigvec . (randn x stdev)
    want = hand_crops(pix, meta["data_mean"], draws)
    want = (want + coeff * noise[:, :N].T[:, :, None, None]) / (1 + coeff)
    np.testing.assert_allclose(x, as_batch(want), atol=2e-4)


# ---------------------------------------------------------------------------------------
# JPEG batches: inet-lr-cropped-jpeg
# ---------------------------------------------------------------------------------------

def test_jpeg_pca_colour_noise_by_hand(jpeg_dir):
    d, pix = jpeg_dir
    coeff = 0.1
    dp = DataProvider.get_instance(d, [1, 2], type=None,  # dp_type from batches.meta
                                   dp_params={"crop_border": B, "seed": 5, "color_noise": coeff,
                                              "minibatch_size": 128, "pca_noise": 0.0, "scalar_mean": False,
                                              "multiview_test": 0, "convnet": None})
    assert isinstance(dp, JPEGCroppedImageNetLogRegDP)
    e, b, (x, y) = dp.get_next_batch()
    meta = make_meta(make_images())
    stdevs, vecs = meta["color_pca"]
    rng = np.random.RandomState(5)
    draws = chunk_draws(rng, N)
    # CHM convdata_jpeg.py: randn(batch_size, 3), rows = images: noise = (r * stdevs) . eigvecs^T
    r = rng.randn(meta["batch_size"], 3).astype(np.float32)
    noise = (r[:N] * stdevs) @ vecs.T
    want = hand_crops(pix, meta["data_mean"], draws)
    want = (want + coeff * noise[:, :, None, None]) / (1 + coeff)  # whole image / (1 + coeff)
    np.testing.assert_allclose(x, as_batch(want), atol=2e-4)
    assert y.ravel().tolist() == labels_for(N)
    # The next batch (8 images, labels as one-item lists) follows in the same stream.
    draws2 = chunk_draws(rng, 8)
    r2 = rng.randn(meta["batch_size"], 3).astype(np.float32)
    want2 = hand_crops(pix[:8], meta["data_mean"], draws2)
    want2 = (want2 + coeff * ((r2[:8] * stdevs) @ vecs.T)[:, :, None, None]) / (1 + coeff)
    e, b, (x2, y2) = dp.get_next_batch()
    assert b == 2 and x2.shape == (3 * I * I, 8)
    np.testing.assert_allclose(x2, as_batch(want2), atol=2e-4)
    # batch_size rows were drawn for those 8 images: the next epoch's batch 1 starts after them
    draws3 = chunk_draws(rng, N)
    r3 = rng.randn(meta["batch_size"], 3).astype(np.float32)
    want3 = hand_crops(pix, meta["data_mean"], draws3)
    want3 = (want3 + coeff * ((r3[:N] * stdevs) @ vecs.T)[:, :, None, None]) / (1 + coeff)
    e, b, (x3, y3) = dp.get_next_batch()
    assert (e, b) == (2, 1) and meta["batch_size"] > 8
    np.testing.assert_allclose(x3, as_batch(want3), atol=2e-4)


def test_colour_noise_has_the_pca_covariance(jpeg_dir):
    d, _ = jpeg_dir
    dp = DataProvider.get_instance(d, [1], type="inet-lr-cropped-jpeg",
                                   dp_params={"crop_border": B, "seed": 0, "color_noise": 0.1})
    noise = dp.draw_color_noise(40000).astype(np.float64)
    stdevs, vecs = make_meta(make_images())["color_pca"]
    # color_pca[0] are standard deviations along the eigenvectors (columns of color_pca[1])
    np.testing.assert_allclose(np.cov(noise.T), vecs @ np.diag(stdevs ** 2) @ vecs.T, atol=8.0)
    np.testing.assert_allclose(np.std(noise @ vecs, axis=0), stdevs, rtol=0.03)


def test_jpeg_threads_do_not_change_the_result(jpeg_dir):
    d, _ = jpeg_dir
    outs = []
    for threads in (1, 3):
        dp = DataProvider.get_instance(d, [1, 2], type="inet-lr-cropped-jpeg",
                                       dp_params={"crop_border": B, "seed": 9, "color_noise": 0.1,
                                                  "threads": threads})
        outs.append([dp.get_next_batch()[2][0] for _ in range(3)])
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


def test_jpeg_centre_and_ten_views(jpeg_dir):
    d, pix = jpeg_dir
    mean = make_meta(make_images())["data_mean"]
    dp = DataProvider.get_instance(d, [1], type="inet-lr-cropped-jpeg",
                                   dp_params={"crop_border": B, "color_noise": 0.1}, test=True)
    x, y = dp.get_next_batch()[2]  # test: centre crop, never noise
    np.testing.assert_allclose(x, as_batch(hand_crops(pix, mean, [(0, N, B, B, False)])), atol=1e-4)

    dp = DataProvider.get_instance(d, [1], type="inet-lr-cropped-jpeg",
                                   dp_params={"crop_border": B, "multiview_test": 1}, test=True)
    assert dp.num_views == 10
    x, y = dp.get_next_batch()[2]
    assert x.shape == (3 * I * I, 10 * N) and y.shape == (1, 10 * N)
    corners = [(0, 0), (0, 2 * B), (B, B), (2 * B, 0), (2 * B, 2 * B)]
    for v in range(10):
        sy, sx = corners[v % 5]
        want = hand_crops(pix, mean, [(0, N, sy, sx, v >= 5)])
        np.testing.assert_allclose(x[:, v * N:(v + 1) * N], as_batch(want), atol=1e-4)
    assert y.ravel().tolist() == labels_for(N) * 10


def test_chm_tuple_batches_label_offset_and_bad_images(tmp_path):
    imgs = make_images(6)
    strings = [jpeg_bytes(im) for im in imgs]
    strings[2] = strings[2][:60]      # a truncated JPEG
    strings[4] = b"not an image"
    # CHM's format: (strings, orig_sizes, labels), each label a pair (name, class) or None
    labels = [("n01", 0), ("n02", 1), ("n03", 2), ("n04", None), ("n05", 1), ("n06", 0)]
    d = tmp_path / "chm"
    os.makedirs(d)
    pickle(d / "data_batch_1", (strings, [(S, S)] * 6, labels))
    meta = make_meta(imgs, batch_size=6)
    meta["label_offset"] = 1
    pickle(d / "batches.meta", meta)
    dp = DataProvider.get_instance(str(d), [1], type="inet-lr-cropped-jpeg",
                                   dp_params={"crop_border": B}, test=True)
    x, y = dp.get_next_batch()[2]
    # unreadable images are dropped with their labels (as 2012 did); None is class 0, to
    # which CHM did not add label_offset
    assert x.shape == (3 * I * I, 4) and y.ravel().tolist() == [1, 2, 0, 1]
    assert dp.decode_failures == {1: 2}
    pix = decoded([strings[k] for k in (0, 1, 3, 5)])
    np.testing.assert_allclose(x, as_batch(hand_crops(pix, meta["data_mean"], [(0, 4, B, B, False)])),
                               atol=1e-4)
    # the 10-view test drops each unreadable image from every view
    dp = DataProvider.get_instance(str(d), [1], type="inet-lr-cropped-jpeg",
                                   dp_params={"crop_border": B, "multiview_test": 1}, test=True)
    x, y = dp.get_next_batch()[2]
    assert x.shape == (3 * I * I, 40) and y.ravel().tolist() == [1, 2, 0, 1] * 10
    corners = [(0, 0), (0, 2 * B), (B, B), (2 * B, 0), (2 * B, 2 * B)]
    for v in range(10):
        want = hand_crops(pix, meta["data_mean"], [(0, 4, corners[v % 5][0], corners[v % 5][1], v >= 5)])
        np.testing.assert_allclose(x[:, 4 * v:4 * v + 4], as_batch(want), atol=1e-4)


def test_training_chunks_are_chunks_of_the_readable_images(tmp_path):
    """CHM dropped unreadable images before it cropped: its chunks of 32 cases sharing a crop
    and flip are chunks of the readable ones. With images 5, 33 and 34 of 40 unreadable, the
    first 32 readable (originally 0-35) share one draw and the last 5 the next."""
    imgs = make_images()
    strings = [jpeg_bytes(im) for im in imgs]
    for k in (5, 33, 34):
        strings[k] = b"not an image"
    d = tmp_path / "bad"
    os.makedirs(d)
    pickle(d / "data_batch_1", {"data": strings, "labels": labels_for(N)})
    pickle(d / "batches.meta", make_meta(imgs))
    dp = DataProvider.get_instance(str(d), [1], type="inet-lr-cropped-jpeg", dp_params={"crop_border": B, "seed": 4})
    x, y = dp.get_next_batch()[2]
    readable = [k for k in range(N) if k not in (5, 33, 34)]
    pix = decoded([strings[k] for k in readable])
    want = hand_crops(pix, make_meta(imgs)["data_mean"], chunk_draws(np.random.RandomState(4), len(readable)))
    np.testing.assert_allclose(x, as_batch(want), atol=1e-4)
    assert y.ravel().tolist() == [labels_for(N)[k] for k in readable] and dp.decode_failures == {1: 3}


def test_no_crop_canvas():
    """With no_crop, a smaller image is centred on a canvas of the scalar mean, which CHM
    assigned to a uint8 array: 127.7 fills as 127, not 128."""
    small = jpeg_bytes(np.random.default_rng(2).integers(0, 256, (4, 6, 3), dtype=np.uint8))
    out = np.zeros((8, 8, 3), np.uint8)
    assert decode_jpeg(small, 8, out, no_crop=True, fill=127.7)
    inner = np.asarray(Image.open(io.BytesIO(small)).convert("RGB"))
    np.testing.assert_array_equal(out[2:6, 1:7], inner)
    out[2:6, 1:7] = 127
    assert (out == 127).all()
    with pytest.raises(DataProviderException, match="expected 8x8"):
        decode_jpeg(small, 8, out)


def test_scalar_mean(jpeg_dir):
    d, pix = jpeg_dir
    dp = DataProvider.get_instance(d, [1], type="inet-lr-cropped-jpeg",
                                   dp_params={"crop_border": B, "scalar_mean": 1}, test=True)
    x = dp.get_next_batch()[2][0]
    m = make_meta(make_images())["data_mean"].mean()
    np.testing.assert_allclose(x, as_batch(pix[:, :, B:B + I, B:B + I] - m), atol=1e-3)


def test_errors(tmp_path, jpeg_dir):
    d, _ = jpeg_dir
    # wrong image size: one line naming the file and the image
    big = np.zeros((S + 2, S, 3), np.uint8)
    pickle(os.path.join(d, "data_batch_3"), {"data": [jpeg_bytes(big)], "labels": [0]})
    dp = DataProvider.get_instance(d, [3], type="inet-lr-cropped-jpeg", dp_params={"crop_border": B})
    with pytest.raises(DataProviderException) as ei:
        dp.get_next_batch()
    assert "data_batch_3" in str(ei.value) and "16x18" in str(ei.value) and "\n" not in str(ei.value)
    # labels beyond label_names
    pickle(os.path.join(d, "data_batch_4"), {"data": [jpeg_bytes(np.zeros((S, S, 3), np.uint8))],
                                             "labels": [NUM_CLASSES]})
    dp = DataProvider.get_instance(d, [4], type="inet-lr-cropped-jpeg", dp_params={"crop_border": B})
    with pytest.raises(DataProviderException, match="label_names"):
        dp.get_next_batch()
    # not a JPEG batch
    pickle(os.path.join(d, "data_batch_5"), {"data": np.zeros((3, 3))})
    dp = DataProvider.get_instance(d, [5], type="inet-lr-cropped-jpeg", dp_params={"crop_border": B})
    with pytest.raises(DataProviderException, match="not a JPEG batch"):
        dp.get_next_batch()
    # colour noise without color_pca
    meta = make_meta(make_images())
    del meta["color_pca"]
    pickle(os.path.join(d, "batches.meta"), meta)
    with pytest.raises(DataProviderException, match="color_pca"):
        DataProvider.get_instance(d, [1], type="inet-lr-cropped-jpeg",
                                  dp_params={"crop_border": B, "color_noise": 0.1})
    # a batch of no images, or of none readable
    for k, strings in ((6, []), (7, [b"not a jpeg", b"\xff\xd8 truncated"])):
        pickle(os.path.join(d, "data_batch_%d" % k), {"data": strings, "labels": [0] * len(strings)})
        dp = DataProvider.get_instance(d, [k], type="inet-lr-cropped-jpeg", dp_params={"crop_border": B})
        with pytest.raises(DataProviderException, match="data_batch_%d.* (no images|none of its 2)" % k):
            dp.get_next_batch()
    # a border too big for the images
    with pytest.raises(DataProviderException, match="crop_border"):
        DataProvider.get_instance(d, [1], type="inet-lr-cropped-jpeg", dp_params={"crop_border": 8})
