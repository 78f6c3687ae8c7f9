"""Image data providers: CIFAR-10 (whole or cropped), dummy conv data, raw-pixel ImageNet.

Stands for the 2012 convdata.py: cc r561's (cifar, cifar-cropped, dummy-cn-n) and the CHM
AlexNet release's (inet-lr, inet-lr-cropped, inet-rs-lr-cropped, flatmem, dummy-lr-n; its
JPEG provider is in convdata_jpeg.py, its Flickr ones in convdata_flickr.py).
Every matrix handed to the engine is float32, C-ordered, (features, cases), features
ordered channel, row, column.
"""

import os
from math import sqrt

import numpy as np

from .data import (DataProvider, DataProviderException, LabeledDataProvider,
                   LabeledDummyDataProvider, LabeledMemoryDataProvider, register_data_provider,
                   require_batch)

__all__ = [
    "CIFARDataProvider", "CroppedCIFARDataProvider", "DummyConvNetDataProvider",
    "ImageNetDP", "ImageNetLogRegDP", "CroppedImageNetLogRegDP",
    "FlatMemoryDataProvider", "RandomScaleImageNetLogRegDP", "DummyConvNetLogRegDP",
    "multiview_positions", "ten_views", "nine_views", "crop_cases", "make_rng",
]


def multiview_positions(border):
    """(y, x) corners of the five test views, in the 2012 order: top-left, top-right,
    centre, bottom-left, bottom-right (y is the row)."""
    b = border
    return [(0, 0), (0, 2 * b), (b, b), (2 * b, 0), (2 * b, 2 * b)]


def make_rng(dp_params):
    """The provider's own RandomState.

    2012 drew crops from numpy's global generator; here batches are prepared in a
    background thread, so a private generator keeps the draws in batch order and out of
    the engine's way.  dp_params['seed'] seeds it; without one it is seeded from the global
    generator, so np.random.seed(...) before building providers still fixes every crop.
    """
    seed = dp_params.get("seed") if dp_params else None
    if seed is None:
        seed = np.random.randint(0, 2 ** 31 - 1)
    return np.random.RandomState(seed)


def crop_cases(y, out, sy, sx, flip, inner):
    """Copy one inner x inner crop per case from y into out.

    y: (C, S, S, n) images, cases last (any strides, any dtype);
    out: (C, inner, inner, n) float32 view;  sy, sx, flip: length-n per-case crop corner
    and horizontal-flip flag.  A chunk of cases sharing one crop (the ImageNet providers)
    is one slice copy; otherwise it goes case by case, as 2012 did (measured: faster than
    grouping equal crops with fancy indexing: 0.05 s against 0.27 s for 10000 CIFAR cases).
    """
    n = y.shape[3]
    if n == 0:
        return
    sy, sx, flip = np.asarray(sy), np.asarray(sx), np.asarray(flip, dtype=bool)
    if (sy == sy[0]).all() and (sx == sx[0]).all() and (flip == flip[0]).all():
        a, b = int(sy[0]), int(sx[0])
        src = y[:, a:a + inner, b:b + inner]
        out[...] = src[:, :, ::-1] if flip[0] else src  # [:, :, ::-1]: a horizontal flip
        return
    for c in range(n):
        a, b = sy[c], sx[c]
        src = y[:, a:a + inner, b:b + inner, c]
        out[..., c] = src[:, :, ::-1] if flip[c] else src


def ten_views(border):
    """cuda-convnet's (and the AlexNet code's ImageNet) multiview test: (y, x, flip) of the five
    positions of multiview_positions, then the same five flipped."""
    return ([(a, b, False) for a, b in multiview_positions(border)]
            + [(a, b, True) for a, b in multiview_positions(border)])


def nine_views(border):
    """The AlexNet code's CIFAR multiview test (its convdata_cifar.py): the 3 x 3 grid of
    corners (0, b, 2b) x (0, b, 2b), row by row, none flipped."""
    return [(a, b, False) for a in (0, border, 2 * border) for b in (0, border, 2 * border)]


def crop_views(y, out, views, inner, n_total=None, c0=0, mean=None):
    """The test views of cases c0..c0+n (n = y.shape[3]) of a batch of n_total cases.

    views: (y, x, flip) per view (ten_views or nine_views). out is (C, inner, inner,
    len(views) * n_total); view v of case k lands in column v*n_total + k (all cases' view 0,
    then all cases' view 1, ...). mean, if given, is subtracted from each view on its way
    (in a contiguous buffer: the arithmetic on out's narrow column slice was 2.3x slower).
    """
    n = y.shape[3]
    n_total = n if n_total is None else n_total
    tmp = None if mean is None else np.empty(y.shape[:1] + (inner, inner, n), dtype=out.dtype)
    for v, (a, b, flip) in enumerate(views):
        pic = y[:, a:a + inner, b:b + inner]
        pic = pic[:, :, ::-1] if flip else pic
        dst = out[..., v * n_total + c0:v * n_total + c0 + n]
        if tmp is None:
            dst[...] = pic
        else:
            tmp[...] = pic
            tmp -= mean
            dst[...] = tmp


def crop_centre(y, out, border, inner):
    out[...] = y[:, border:border + inner, border:border + inner]


def _img_size(num_vis, num_colors=3, where="batches.meta"):
    size = int(round(sqrt(num_vis / num_colors)))
    if size * size * num_colors != num_vis:
        raise DataProviderException("%s: num_vis=%d is not %d square colour planes"
                                    % (where, num_vis, num_colors))
    return size


def _to_cases_last(data, dims, path):
    """cuda-convnet batches store (dims, N); the official CIFAR-10 python ones (N, dims)."""
    data = np.asarray(data)
    if data.ndim == 2 and data.shape[0] == dims:
        return data
    if data.ndim == 2 and data.shape[1] == dims:
        return np.ascontiguousarray(data.T)
    raise DataProviderException("'%s': 'data' has shape %s; expected (%d, N) or (N, %d)"
                                % (path, data.shape, dims, dims))


class _CIFARBase(LabeledMemoryDataProvider):
    """Shared loading for the CIFAR providers: either batch layout, labels as (1, N)."""

    def __init__(self, data_dir, batch_range=None, init_epoch=1, init_batchnum=None,
                 dp_params=None, test=False):
        dp_params = {} if dp_params is None else dp_params
        LabeledMemoryDataProvider.__init__(self, data_dir, batch_range, init_epoch,
                                           init_batchnum, dp_params, test)
        # CIFAR is 3 colours; batches.meta may say otherwise (e.g. the 1-colour digits demo)
        self.num_colors = int(self.batch_meta.get("num_colors", 3))
        self.img_size = _img_size(self.get_raw_dims(), self.num_colors)
        self.raw_data_mean = self._load_mean(dp_params.get("train_batch_range"))

    def get_raw_dims(self):
        return int(self.batch_meta.get("num_vis", 3072))

    def convert_batch(self, dic, batchnum):
        path = self.get_data_file_name(batchnum)
        require_batch(dic, path)
        data = _to_cases_last(dic["data"], self.get_raw_dims(), path)
        if data.shape[1] == 0:
            raise DataProviderException("'%s' holds no cases" % path)
        # 2012 needed label_names only for a logreg layer; without them the range goes unchecked
        num_classes = self.get_num_classes() if "label_names" in self.batch_meta else None
        labels = _labels_row(dic["labels"], data.shape[1], "'%s'" % path, num_classes)
        return {"data": data, "labels": np.require(labels, requirements="C")}

    def _load_mean(self, train_batches=None):
        dims = self.get_raw_dims()
        if "data_mean" in self.batch_meta:
            mean = np.asarray(self.batch_meta["data_mean"])
            if mean.size != dims:
                raise DataProviderException("'%s': data_mean has %d values, not %d"
                                            % (os.path.join(self.data_dir, "batches.meta"),
                                               mean.size, dims))
            return mean.reshape(dims, 1)
        # The official CIFAR-10 python archive has no mean: use that of the training batches
        # (--train-range; without one, every data_batch_<n>), the same for train and test.
        total, count = np.zeros((dims, 1)), 0
        for b in DataProvider.get_batch_nums(self.data_dir):
            if train_batches is not None and b not in train_batches:
                continue
            d = self.data_dic[b]["data"] if b in self.data_dic else \
                self.convert_batch(self.get_batch(b), b)["data"]
            total += d.sum(axis=1, keepdims=True, dtype=np.float64)
            count += d.shape[1]
        return total / max(count, 1)

    def get_batch(self, batch_num):
        path = self.get_data_file_name(batch_num)
        if not os.path.exists(path) and not os.path.exists(path + ".1") and \
                os.path.exists(os.path.join(self.data_dir, "test_batch")):
            raise DataProviderException("batch file '%s' does not exist (the official CIFAR-10 "
                                        "archive calls its test batch 'test_batch': rename or "
                                        "link it to data_batch_%d)" % (path, batch_num))
        return LabeledMemoryDataProvider.get_batch(self, batch_num)


class CIFARDataProvider(_CIFARBase):
    """'cifar': whole 32x32 images with batches.meta['data_mean'] subtracted."""

    def __init__(self, data_dir, batch_range=None, init_epoch=1, init_batchnum=None,
                 dp_params=None, test=False):
        _CIFARBase.__init__(self, data_dir, batch_range, init_epoch, init_batchnum, dp_params, test)
        self.data_mean = self.raw_data_mean
        # Subtract once, in float64 as 2012 did (uint8 - float64 mean), then store float32.
        # Every epoch hands out these same arrays, so they are read-only: a consumer that
        # wrote into one would silently change the data set.
        for d in self.data_dic.values():
            d["data"] = np.require(d["data"] - self.data_mean, dtype=np.single, requirements="C")
            d["data"].flags.writeable = False
            d["labels"].flags.writeable = False

    def prepare_batch(self, dic, epoch, batchnum):
        return [dic["data"], dic["labels"]]

    def get_data_dims(self, idx=0):
        return self.img_size ** 2 * self.num_colors if idx == 0 else 1

    def get_plottable_data(self, data):
        """(N, size, size, colours) float32 in [0, 1] for plotting."""
        return np.require((data + self.data_mean).T.reshape(data.shape[1], self.num_colors, self.img_size,
                                                            self.img_size)
                          .transpose(0, 2, 3, 1) / 255.0, dtype=np.single)


def init_crops(dp, dp_params, test, make_views=ten_views):
    """What both cropping providers (cifar-cropped, inet-lr-cropped) set up: the border
    (crop_border, default 4), the crop size, and the views of a multiview test (make_views;
    centre_view is the one shownet draws)."""
    dp.border_size = int(dp_params.get("crop_border", 4))
    dp.inner_size = dp.img_size - 2 * dp.border_size
    if dp.inner_size <= 0 or dp.border_size < 0:
        raise DataProviderException("crop_border=%d does not fit %dx%d images"
                                    % (dp.border_size, dp.img_size, dp.img_size))
    dp.multiview = bool(dp_params.get("multiview_test", False)) and test
    dp.views = make_views(dp.border_size)
    dp.centre_view = dp.views.index((dp.border_size, dp.border_size, False))
    dp.num_views = len(dp.views)
    dp.data_mult = dp.num_views if dp.multiview else 1


class CroppedCIFARDataProvider(_CIFARBase):
    """'cifar-cropped': (32-2b)^2 crops.  Training: a random crop and a 50% horizontal flip
    per image.  Test: the centre crop, or with multiview_test the 10 views of cuda-convnet
    (ten_views), or in the AlexNet dialect (dp_params['dialect']) that code's 9 (nine_views).
    The mean subtracted from every crop is the centre crop of data_mean, as in 2012."""

    def __init__(self, data_dir, batch_range=None, init_epoch=1, init_batchnum=None,
                 dp_params=None, test=False):
        dp_params = {} if dp_params is None else dp_params
        _CIFARBase.__init__(self, data_dir, batch_range, init_epoch, init_batchnum, dp_params, test)
        init_crops(self, dp_params, test, nine_views if dp_params.get("dialect") == "alexnet" else ten_views)
        self.rng = make_rng(dp_params)
        b, i = self.border_size, self.inner_size
        self.data_mean = self.raw_data_mean.reshape(self.num_colors, self.img_size, self.img_size)[
            :, b:b + i, b:b + i].reshape(self.get_data_dims(), 1)
        for d in self.data_dic.values():
            d["labels"] = np.require(np.tile(d["labels"], (1, self.data_mult)), requirements="C")
            d["labels"].flags.writeable = False  # handed out every epoch (see CIFARDataProvider)

    def draw_crops(self, n):
        """Per-case crop corners and flips.  2012 drew (y, x, flip) case by case from the
        global generator; here each is one vectorised draw (same distribution)."""
        span = 2 * self.border_size + 1
        sy = self.rng.randint(0, span, size=n)
        sx = self.rng.randint(0, span, size=n)
        flip = self.rng.randint(0, 2, size=n) == 0
        return sy, sx, flip

    def prepare_batch(self, dic, epoch, batchnum):
        x = dic["data"]
        n = x.shape[1]
        y = x.reshape(self.num_colors, self.img_size, self.img_size, n)
        i = self.inner_size
        cropped = np.empty((self.get_data_dims(), n * self.data_mult), dtype=np.single)
        out = cropped.reshape(self.num_colors, i, i, n * self.data_mult)
        if self.test:
            if self.multiview:
                crop_views(y, out, self.views, i, n)
            else:
                crop_centre(y, out, self.border_size, i)
        else:
            sy, sx, flip = self.draw_crops(n)
            crop_cases(y, out, sy, sx, flip, i)
        cropped -= self.data_mean
        return [cropped, dic["labels"]]

    def get_data_dims(self, idx=0):
        return self.inner_size ** 2 * self.num_colors if idx == 0 else 1

    def get_plottable_data(self, data):
        return np.require((data + self.data_mean).T.reshape(data.shape[1], self.num_colors, self.inner_size,
                                                            self.inner_size)
                          .transpose(0, 2, 3, 1) / 255.0, dtype=np.single)


class DummyConvNetDataProvider(LabeledDummyDataProvider):
    """'dummy-cn-<n>': 512 random cases of n dims as (n, 512) with (1, 512) labels in 0..9,
    for --check-grads.  n should be 3*size^2 for a conv net (192 = 3x8x8)."""

    def __init__(self, data_dim):
        LabeledDummyDataProvider.__init__(self, data_dim)
        self.num_colors = 3
        size = int(round(sqrt(data_dim / 3)))
        self.img_size = size if 3 * size * size == data_dim else None

    def get_next_batch(self):
        epoch, batchnum, dic = LabeledDummyDataProvider.get_next_batch(self)
        data = np.require(dic["data"].T, requirements="C")
        labels = np.require(dic["labels"].T, requirements="C")
        return epoch, batchnum, [data, labels]

    def get_data_dims(self, idx=0):
        return self.batch_meta["num_vis"] if idx == 0 else 1


# ---------------------------------------------------------------------------------------
# ImageNet (CHM AlexNet 2012 convdata.py)
# ---------------------------------------------------------------------------------------

def _labels_row(labels, n, where, num_classes=None):
    """Labels as a (1, n) float32 row of class numbers, checked against the number of
    classes when there is one."""
    try:
        lab = np.asarray(labels, dtype=np.single).reshape(1, -1)
    except (TypeError, ValueError):
        raise DataProviderException("%s: 'labels' are not numbers" % where) from None
    if lab.shape[1] != n:
        raise DataProviderException("%s has %d labels for %d cases" % (where, lab.shape[1], n))
    if num_classes is None:
        bad = np.flatnonzero(~np.isfinite(lab))
        what = "is not a finite number"
    else:
        bad = np.flatnonzero(~((lab >= 0) & (lab < num_classes) & (lab == np.floor(lab))))
        what = "is not a class number 0..%d (batches.meta has %d label_names)" % (num_classes - 1, num_classes)
    if bad.size:
        raise DataProviderException("%s: label %g of case %d %s" % (where, lab[0, bad[0]], bad[0], what))
    return lab


class ImageNetDP(LabeledDataProvider):
    """Shared set-up of the ImageNet providers: mean image, colour PCA, noise coefficient.

    batches.meta: 'data_mean' (3*S*S values, channel-major), 'color_pca' = (stdevs (3,),
    eigvecs (3, 3) with one eigenvector per column), 'num_vis' = 3*S*S, 'label_names'.
    dp_params: color_noise (the coefficient; 0 = off), pca_noise (parsed in 2012, unused).
    """

    def __init__(self, data_dir, batch_range=None, init_epoch=1, init_batchnum=None,
                 dp_params=None, test=False):
        dp_params = {} if dp_params is None else dp_params
        LabeledDataProvider.__init__(self, data_dir, batch_range, init_epoch, init_batchnum,
                                     dp_params, test)
        self.init_commons(dp_params)

    def init_commons(self, dp_params):
        meta_path = os.path.join(self.data_dir, "batches.meta")
        for key in ("data_mean", "num_vis", "label_names"):
            if key not in self.batch_meta:
                raise DataProviderException("'%s' has no '%s'" % (meta_path, key))
        self.num_colors = 3
        self.img_size = _img_size(int(self.batch_meta["num_vis"]), 3, meta_path)
        self.data_mean = np.asarray(self.batch_meta["data_mean"]).astype(np.single)
        if self.data_mean.size != self.batch_meta["num_vis"]:
            raise DataProviderException("'%s': data_mean has %d values, num_vis is %d"
                                        % (meta_path, self.data_mean.size, self.batch_meta["num_vis"]))
        self.data_mean = self.data_mean.reshape(-1, 1)
        self.color_noise_coeff = float(dp_params.get("color_noise", 0.0) or 0.0)
        self.pca_noise_coeff = float(dp_params.get("pca_noise", 0.0) or 0.0)  # unused, as in 2012
        if "color_pca" in self.batch_meta:
            stdevs, vecs = self.batch_meta["color_pca"][0], self.batch_meta["color_pca"][1]
            self.color_stdevs = np.asarray(stdevs, dtype=np.single).reshape(3, 1)
            self.color_eig = np.asarray(vecs, dtype=np.single).reshape(3, 3)
        elif self.color_noise_coeff > 0:
            raise DataProviderException("--color-noise needs 'color_pca' in '%s'" % meta_path)
        else:
            self.color_stdevs = self.color_eig = None
        self.convnet = dp_params.get("convnet")

    def get_labels(self, dic, n, path):
        return _labels_row(dic["labels"], n, "'%s'" % path, self.get_num_classes())

    def images_and_labels(self, dic, path):
        """A raw-pixel batch's (3*S*S, N) images, as stored, and its (1, N) labels."""
        require_batch(dic, path)
        x = _to_cases_last(dic["data"], self.img_size ** 2 * 3, path)
        return x, self.get_labels(dic, x.shape[1], path)


class ImageNetLogRegDP(ImageNetDP):
    """'inet-lr': whole S x S images (raw uint8 batches, (3*S*S, N)) minus the mean image.

    The AlexNet code also returned its batches' 'wordpres' matrix (word presence, one column
    per image; get_data_dims(2) said 100) as a third matrix, and stopped on a batch without
    one. Here a batch's 'wordpres' comes third as float32 when it is there, and a batch
    without it gives [data, labels].
    """
    WORDPRES_DIMS = 100

    def prepare_batch(self, dic, epoch, batchnum):
        path = self.get_data_file_name(batchnum)
        x, labels = self.images_and_labels(dic, path)
        out = [np.require(x - self.data_mean, dtype=np.single, requirements="C"), labels]
        if "wordpres" in dic:
            try:
                words = np.require(dic["wordpres"], dtype=np.single, requirements="C")
            except (TypeError, ValueError):
                words = None
            if words is None or words.ndim != 2 or words.shape[1] != x.shape[1]:
                raise DataProviderException("'%s': 'wordpres' is not a matrix with a column per image (%d)"
                                            % (path, x.shape[1]))
            out.append(words)
        return out

    def get_data_dims(self, idx=0):
        if idx == 0:
            return self.img_size ** 2 * self.num_colors
        return self.WORDPRES_DIMS if idx == 2 else 1

    def get_plottable_data(self, data, add_mean=True):
        return np.require((data + (self.data_mean if add_mean else 0)).T.reshape(
            data.shape[1], 3, self.img_size, self.img_size).transpose(0, 2, 3, 1) / 255.0,
            dtype=np.single)


class _CroppedImageNetBase(ImageNetDP):
    """The crop, flip, colour-noise and multiview logic shared by the raw and JPEG providers.

    Training (CHM, chm:convdata_jpeg.py): cases go in chunks of crop_chunk=32 that share one
    random crop corner and one 50% flip (drawn y, x, flip per chunk); the centre crop of the
    mean image is subtracted; with color_noise=c each image gets
        noise = eigvecs . (randn(3) * stdevs)          (one 3-vector per image)
        pixel = (pixel - mean + c * noise[channel]) / (1 + c)
    Test: the centre crop, or with multiview_test 10 views (crop_views) and labels tiled.
    """

    crop_chunk = 32

    def __init__(self, data_dir, batch_range=None, init_epoch=1, init_batchnum=None,
                 dp_params=None, test=False):
        dp_params = {} if dp_params is None else dp_params
        ImageNetDP.__init__(self, data_dir, batch_range, init_epoch, init_batchnum, dp_params, test)
        init_crops(self, dp_params, test)
        self.mini = dp_params.get("minibatch_size")
        self.rng = make_rng(dp_params)
        self.num_threads = int(dp_params.get("threads") or os.cpu_count() or 1)
        self._pool = None
        b, i = self.border_size, self.inner_size
        self.data_mean_crop = self.data_mean.reshape(3, self.img_size, self.img_size)[
            :, b:b + i, b:b + i].reshape(3 * i * i, 1)

    def get_data_dims(self, idx=0):
        return self.inner_size ** 2 * 3 if idx == 0 else 1

    def draw_chunk_crops(self, n):
        """Per-case (sy, sx, flip) where each chunk of crop_chunk cases shares one draw,
        drawn in the 2012 order: y, x, flip for chunk 0, then chunk 1, ..."""
        span = 2 * self.border_size + 1
        sy, sx, flip = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, bool)
        for c in range(0, n, self.crop_chunk):
            e = min(c + self.crop_chunk, n)
            sy[c:e] = self.rng.randint(0, span)
            sx[c:e] = self.rng.randint(0, span)
            flip[c:e] = self.rng.randint(2) == 0
        return sy, sx, flip

    def draw_color_noise(self, n):
        """(n, 3) float32: per image eigvecs . (randn(3) * stdevs) (not yet times the coeff)."""
        r = self.rng.randn(n, 3).astype(np.single)
        return np.dot(r * self.color_stdevs.T, self.color_eig.T)

    def draw(self, n):
        """All random draws for a batch of n cases, in order: chunk crops, then noise."""
        if self.test:
            return None, None
        crops = self.draw_chunk_crops(n)
        noise = self.draw_color_noise(n) if self.color_noise_coeff > 0 else None
        return crops, noise

    def fill_cases(self, y, out, c0, n_total, crops, noise, mean_crop):
        """Crop cases c0..c0+n of y (C, S, S, n) into the batch out (C, I, I, n_total*mult),
        subtract the mean and add colour noise.  Works on a column range, so chunks can be
        filled by several threads at once.

        The arithmetic runs on a contiguous chunk buffer, copied into out's columns once at
        the end: doing it in place on out's narrow column slice was 2.3x slower.
        """
        n = y.shape[3]
        i = self.inner_size
        if self.test:
            views = self.views if self.multiview else [self.views[self.centre_view]]
            crop_views(y, out, views, i, n_total, c0, mean_crop)
            return
        tmp = np.empty((3, i, i, n), dtype=np.single)
        sy, sx, flip = crops
        crop_cases(y, tmp, sy[c0:c0 + n], sx[c0:c0 + n], flip[c0:c0 + n], i)
        tmp -= mean_crop
        if noise is not None:
            coeff = self.color_noise_coeff
            tmp += (noise[c0:c0 + n].T * coeff).reshape(3, 1, 1, n)
            tmp /= (1.0 + coeff)
        out[..., c0:c0 + n] = tmp

    def run_chunks(self, n, fn):
        """Call fn(c0, c1) for every chunk of crop_chunk cases, on a pool of threads.

        The chunks write disjoint columns of the batch, and numpy (like Pillow's decoder)
        lets go of the GIL while it copies, so the threads really run side by side.
        dp_params['threads'] sets their number (default: every core).
        """
        ranges = [(c, min(c + self.crop_chunk, n)) for c in range(0, n, self.crop_chunk)]
        if self.num_threads <= 1 or len(ranges) <= 1:
            for c0, c1 in ranges:
                fn(c0, c1)
            return
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(self.num_threads, thread_name_prefix="cudaconvnet-dp")
        for f in [self._pool.submit(fn, c0, c1) for c0, c1 in ranges]:
            f.result()  # re-raises a worker's error here

    def get_plottable_data(self, data, add_mean=True):
        mean = self.data_mean_crop if add_mean else 0
        return np.require((data + mean).T.reshape(data.shape[1], 3, self.inner_size,
                                                  self.inner_size).transpose(0, 2, 3, 1) / 255.0,
                          dtype=np.single)


class CroppedImageNetLogRegDP(_CroppedImageNetBase):
    """'inet-lr-cropped': raw uint8 batches {'data': (3*S*S, N), 'labels': N ints}.

    CHM's raw-pixel provider drew its noise as randn(3, 1024) (columns = images) rather than
    randn(N, 3); the same formula, a different draw order, kept here.
    """

    def draw_color_noise(self, n):
        r = self.rng.randn(3, max(1024, n)).astype(np.single)
        noise = np.dot(self.color_eig, r * self.color_stdevs)  # (3, cols): one column per image
        return np.ascontiguousarray(noise[:, :n].T)

    def prepare_batch(self, dic, epoch, batchnum):
        path = self.get_data_file_name(batchnum)
        x, labels = self.images_and_labels(dic, path)
        n = x.shape[1]
        y = x.reshape(3, self.img_size, self.img_size, n)
        i = self.inner_size
        crops, noise = self.draw(n)
        cropped = np.empty((3 * i * i, n * self.data_mult), dtype=np.single)
        out = cropped.reshape(3, i, i, n * self.data_mult)
        mean = self.data_mean_crop.reshape(3, i, i, 1)
        self.run_chunks(n, lambda c0, c1: self.fill_cases(y[..., c0:c1], out, c0, n, crops,
                                                          noise, mean))
        return [cropped, np.require(np.tile(labels, (1, self.data_mult)), requirements="C")]


register_data_provider("cifar", "CIFAR", CIFARDataProvider)
register_data_provider("cifar-cropped", "Cropped CIFAR", CroppedCIFARDataProvider)
register_data_provider("dummy-cn-n", "Dummy ConvNet", DummyConvNetDataProvider)
register_data_provider("inet-lr", "ImageNet logistic regression", ImageNetLogRegDP)
register_data_provider("inet-lr-cropped", "ImageNet logistic regression cropped",
                       CroppedImageNetLogRegDP)

# ---------------------------------------------------------------------------------------
# The CHM AlexNet release's other convdata.py providers: flat vectors with one-hot labels,
# whole images flipped per chunk, and a dummy over a small class tree
# ---------------------------------------------------------------------------------------

class FlatMemoryDataProvider(LabeledMemoryDataProvider):
    """'flatmem': every batch held in memory, returned as [data - data_mean, labelprobs].

    Batches {'data': (num_vis, N), 'labels': N class numbers}; batches.meta 'num_vis',
    'data_mean' (num_vis values), 'label_names'.  labelprobs is a (num_classes, N) float32
    matrix with a 1 in row labels[k] of column k and 0 elsewhere (for cost.crossent).
    """

    def __init__(self, data_dir, batch_range=None, init_epoch=1, init_batchnum=None,
                 dp_params=None, test=False):
        LabeledMemoryDataProvider.__init__(self, data_dir, batch_range, init_epoch, init_batchnum,
                                           dp_params, test)
        meta_path = os.path.join(self.data_dir, "batches.meta")
        for key in ("num_vis", "data_mean", "label_names"):
            if key not in self.batch_meta:
                raise DataProviderException("'%s' has no '%s'" % (meta_path, key))
        dims = int(self.batch_meta["num_vis"])
        mean = np.asarray(self.batch_meta["data_mean"])
        if mean.size != dims:
            raise DataProviderException("'%s': data_mean has %d values, num_vis is %d"
                                        % (meta_path, mean.size, dims))
        self.data_mean = mean.reshape(dims, 1)
        num_classes = self.get_num_classes()
        for b, d in self.data_dic.items():
            path = self.get_data_file_name(b)
            x = _to_cases_last(d["data"], dims, path)
            n = x.shape[1]
            classes = _labels_row(d["labels"], n, "'%s'" % path, num_classes).astype(np.int64)
            probs = np.zeros((num_classes, n), dtype=np.single)
            probs[classes[0], np.arange(n)] = 1.0
            # the mean is subtracted in the dtype numpy gives (uint8 - float64: float64), then
            # stored as float32; every epoch hands out these arrays, so they are read-only
            d["data"] = np.require(x - self.data_mean, dtype=np.single, requirements="C")
            d["labelprobs"] = probs
            d["data"].flags.writeable = False
            probs.flags.writeable = False

    def prepare_batch(self, dic, epoch, batchnum):
        return [dic["data"], dic["labelprobs"]]

    def get_data_dims(self, idx=0):
        return self.batch_meta["num_vis"] if idx == 0 else self.get_num_classes()


class RandomScaleImageNetLogRegDP(CroppedImageNetLogRegDP):
    """'inet-rs-lr-cropped': whole S x S images (for a net that rescales and crops them
    itself, with an rscale layer) minus one number, the mean of the mean image.

    Training: each chunk of 32 cases is flipped left-right with probability 1/2 (one draw
    per chunk, rng.randint(2) == 0 flips), then, with color_noise, the colour noise of
    inet-lr-cropped.  Test: the images as they are.  Labels as inet-lr-cropped.
    """

    def __init__(self, data_dir, batch_range=None, init_epoch=1, init_batchnum=None,
                 dp_params=None, test=False):
        dp_params = {} if dp_params is None else dp_params
        # whole images: no border is cut (crop_border served only 2012's multiview test)
        CroppedImageNetLogRegDP.__init__(self, data_dir, batch_range, init_epoch, init_batchnum,
                                         dict(dp_params, crop_border=0), test)
        if self.multiview:
            raise DataProviderException("data provider inet-rs-lr-cropped has no multiview test (2012's "
                                        "crashed: 9 crop positions for 10 views, crops smaller than "
                                        "its whole-image data)")
        self.data_mean_mean = np.single(self.data_mean.mean())

    def get_data_dims(self, idx=0):
        return self.img_size ** 2 * 3 if idx == 0 else 1

    def draw_chunk_flips(self, n):
        """Per-case flip flags, one draw per chunk of crop_chunk cases, in chunk order."""
        flip = np.empty(n, dtype=bool)
        for c in range(0, n, self.crop_chunk):
            flip[c:c + self.crop_chunk] = self.rng.randint(2) == 0
        return flip

    def prepare_batch(self, dic, epoch, batchnum):
        path = self.get_data_file_name(batchnum)
        x, labels = self.images_and_labels(dic, path)
        n = x.shape[1]
        data = np.empty((3, self.img_size, self.img_size, n), dtype=np.single)
        y = x.reshape(data.shape)
        noise = None
        if self.test:
            data[...] = y
        else:
            flip = self.draw_chunk_flips(n)  # the flips first, then the noise
            if self.color_noise_coeff > 0:
                noise = self.draw_color_noise(n)
            for c in range(0, n, self.crop_chunk):
                src = y[..., c:c + self.crop_chunk]
                data[..., c:c + self.crop_chunk] = src[:, :, ::-1] if flip[c] else src
        data -= self.data_mean_mean
        if noise is not None:
            coeff = self.color_noise_coeff
            data += (coeff * noise.T).reshape(3, 1, 1, n)
            data /= 1.0 + coeff
        return [data.reshape(-1, n), labels]

    def get_plottable_data(self, data, add_mean=True):
        return np.require((data + (self.data_mean_mean if add_mean else 0)).T.reshape(
            data.shape[1], 3, self.img_size, self.img_size).transpose(0, 2, 3, 1) / 255.0,
            dtype=np.single)


class DummyConvNetLogRegDP(LabeledDummyDataProvider):
    """'dummy-lr-<n>': as dummy-cn-<n> (512 random cases, labels 0..9), plus a third matrix
    of gates, (1, 512) uniform [0, 1), and a class tree in batch_meta for treefc layers:
    nodes 0-9 are the classes (leaves), 10 = {0,1,2}, 11 = {3,4,5}, 12 = {6,7}, 13 = {8,9},
    14 = {10,11}, 15 = {12,13} and the root 16 = {14,15} (all_wnids['gproot']).
    Draws come from numpy's global generator (data, labels, then gates), as the dummies'.
    """

    TREE_INNER = {10: [0, 1, 2], 11: [3, 4, 5], 12: [6, 7], 13: [8, 9], 14: [10, 11],
                  15: [12, 13], 16: [14, 15]}

    def __init__(self, data_dim):
        LabeledDummyDataProvider.__init__(self, data_dim)
        tree = {i: [] for i in range(self.num_classes)}
        tree.update((k, list(v)) for k, v in self.TREE_INNER.items())
        self.batch_meta["tree"] = tree
        self.batch_meta["all_wnids"] = {"gproot": 16}
        self.num_colors = 3
        self.img_size = int(sqrt(data_dim // 3))  # 2012's value, whether or not it is square

    def get_next_batch(self):
        epoch, batchnum, dic = LabeledDummyDataProvider.get_next_batch(self)
        data = np.require(dic["data"].T, requirements="C")
        labels = np.require(dic["labels"].T, requirements="C")
        gates = np.random.rand(1, data.shape[1]).astype(np.single)
        return epoch, batchnum, [data, labels, gates]

    def get_data_dims(self, idx=0):
        return self.batch_meta["num_vis"] if idx == 0 else 1


register_data_provider("flatmem", "Flat memory", FlatMemoryDataProvider)
register_data_provider("inet-rs-lr-cropped", "Random scale cropped ImageNet logistic regression",
                       RandomScaleImageNetLogRegDP)
register_data_provider("dummy-lr-n", "Dummy ConvNet logistic regression", DummyConvNetLogRegDP)
