"""ImageNet from batches of JPEG byte strings, decoded with Pillow on a pool of threads.

Stands for the CHM AlexNet 2012 convdata_jpeg.py (JPEGCroppedImageNetLogRegDP,
'inet-lr-cropped-jpeg'): 256x256 JPEGs -> 224x224 crops (crop_border=16), flips, PCA
colour noise, 10-view test; the crop/noise logic is shared with convdata.py.
"""

import io

import numpy as np

from .convdata import _CroppedImageNetBase
from .data import DataProviderException, register_data_provider

__all__ = ["JPEGCroppedImageNetLogRegDP", "crop_jpeg_batch", "decode_jpeg", "unpack_jpeg_batch"]


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise DataProviderException("the JPEG data provider needs Pillow: pip install pillow") \
            from None
    return Image


def decode_jpeg(s, size, out, no_crop=False, fill=0.0):
    """Decode one image's bytes into out, an (size, size, 3) uint8 array (rows, cols, RGB).

    Returns False if the bytes are not a readable image (2012 skipped those; so do we).
    Images must be size x size, except with no_crop (batches.meta), where a smaller one is
    centred on a canvas of the scalar mean, as CHM did.
    """
    Image = _pil()
    try:
        with Image.open(io.BytesIO(s)) as im:
            if im.mode != "RGB":
                im = im.convert("RGB")  # greyscale and CMYK JPEGs exist in ImageNet
            arr = np.asarray(im)
    except (OSError, SyntaxError, ValueError, TypeError, Image.DecompressionBombError):
        return False
    h, w = arr.shape[:2]
    if (h, w) == (size, size):
        out[...] = arr
    elif no_crop and h <= size and w <= size:
        oy, ox = (size - h) // 2, (size - w) // 2
        out[...] = np.uint8(np.clip(float(fill), 0, 255))  # truncated, as CHM's uint8 assignment
        out[oy:oy + h, ox:ox + w] = arr
    else:
        raise DataProviderException("image is %dx%d, expected %dx%d (make batches with "
                                    "python -m cudaconvnet.makebatches)" % (w, h, size, size))
    return True


def unpack_jpeg_batch(obj, path):
    """(list of JPEG byte strings, list of int labels) from either batch format.

    CHM's batches were tuples (strings, orig_sizes, labels) with each label a pair whose
    second item is the class (None in the unlabelled 2012 test set: kept as None).
    cuda-convnet2's make-data and ours write {'data': [bytes, ...], 'labels': [...]}, a
    label being an int or a one-item list.
    """
    if isinstance(obj, dict):
        if "data" not in obj or "labels" not in obj:
            raise DataProviderException("'%s' is not a JPEG batch: no 'data'/'labels'" % path)
        strings, raw = obj["data"], obj["labels"]
        labels = []
        for l in (raw.ravel().tolist() if isinstance(raw, np.ndarray) else raw):
            if isinstance(l, (list, tuple, np.ndarray)):
                if len(l) == 0:
                    raise DataProviderException("'%s': an image has an empty label list" % path)
                l = l[0]
            labels.append(int(l))
    elif isinstance(obj, (tuple, list)) and len(obj) == 3:
        strings, _sizes, raw = obj
        labels = [None if l[1] is None else int(l[1]) for l in raw]
    else:
        raise DataProviderException("'%s' is not a JPEG batch: expected {'data', 'labels'} or "
                                    "(strings, sizes, labels)" % path)
    if not isinstance(strings, (list, tuple)) or (strings and not isinstance(strings[0], (bytes, str))):
        raise DataProviderException("'%s': 'data' is not a list of JPEG byte strings" % path)
    if len(strings) != len(labels):
        raise DataProviderException("'%s' has %d images and %d labels"
                                    % (path, len(strings), len(labels)))
    # Python 2 wrote JPEGs as str; loaded as latin1 text, encoding back gives the bytes.
    strings = [s.encode("latin1") if isinstance(s, str) else s for s in strings]
    return strings, labels


class JPEGCroppedImageNetLogRegDP(_CroppedImageNetBase):
    """'inet-lr-cropped-jpeg': JPEG batches, cropped, flipped and colour-noised as CHM did.

    batches.meta: as for inet-lr-cropped, plus 'batch_size' (images per batch; the noise
    draw is that long), optional 'label_offset' (added to every label) and 'no_crop'.
    dp_params: crop_border (16 for 256 -> 224), multiview_test, color_noise, scalar_mean
    (subtract the mean image's mean, one number, instead of the mean image), seed, threads.
    """

    def __init__(self, data_dir, batch_range=None, init_epoch=1, init_batchnum=None,
                 dp_params=None, test=False):
        dp_params = {} if dp_params is None else dp_params
        _CroppedImageNetBase.__init__(self, data_dir, batch_range, init_epoch, init_batchnum,
                                      dp_params, test)
        self.batch_size = int(self.batch_meta.get("batch_size", 0))
        self.label_offset = int(self.batch_meta.get("label_offset", 0) or 0)
        self.no_crop = bool(self.batch_meta.get("no_crop", False))
        self.scalar_mean = bool(dp_params.get("scalar_mean", False))
        if self.no_crop or self.scalar_mean:
            self.data_mean_crop = np.single(self.data_mean.mean())
        self.num_noise = self.batch_size
        self.decode_failures = {}  # batch number -> images dropped because they would not decode

    def draw_color_noise(self, n):
        # CHM drew randn(batch_size, 3) for every batch and used the first n rows.
        r = self.rng.randn(max(self.num_noise, n), 3).astype(np.single)
        return np.dot(r[:n] * self.color_stdevs.T, self.color_eig.T)

    def prepare_batch(self, obj, epoch, batchnum):
        path = self.get_data_file_name(batchnum)
        strings, labels = unpack_jpeg_batch(obj, path)
        # an unlabelled image is class 0, without the offset (CHM)
        labels = self.get_labels({"labels": [0 if l is None else l + self.label_offset for l in labels]},
                                 len(strings), path)
        i = self.inner_size
        mean = self.data_mean_crop
        if isinstance(mean, np.ndarray):
            mean = mean.reshape(3, i, i, 1)
        fill = float(self.data_mean_crop) if np.ndim(self.data_mean_crop) == 0 else 0.0
        return crop_jpeg_batch(self, strings, labels, path, batchnum, mean, self.no_crop, fill)


def crop_jpeg_batch(dp, strings, labels, path, batchnum, mean, no_crop=False, fill=0.0):
    """[views, labels] of a batch of JPEGs for a cropping provider dp: decoded on its pool of
    threads, cropped, flipped and noised by its draws, mean subtracted; labels (rows, n)
    tiled over the views. Unreadable images are dropped, with their label columns, before
    anything is drawn (CHM dropped them so: its chunks of 32 sharing a crop are chunks of the
    readable images), and counted in dp.decode_failures; a batch of no images, or of none
    readable, is an error."""
    n, s, i = len(strings), dp.img_size, dp.inner_size
    if n == 0:
        raise DataProviderException("'%s' holds no images" % path)
    buf = np.zeros((n, s, s, 3), dtype=np.uint8)
    ok = np.ones(n, dtype=bool)

    def decode(c0, c1):
        for k in range(c0, c1):
            try:
                ok[k] = decode_jpeg(strings[k], s, buf[k], no_crop, fill)
            except DataProviderException as e:
                raise DataProviderException("'%s', image %d: %s" % (path, k, e)) from None

    dp.run_chunks(n, decode)
    if not ok.any():
        raise DataProviderException("'%s': none of its %d images is a readable JPEG" % (path, n))
    if not ok.all():
        dp.decode_failures[batchnum] = int((~ok).sum())
        buf, labels = buf[ok], labels[:, ok]
    n = len(buf)
    crops, noise = dp.draw(n)
    cropped = np.empty((3 * i * i, n * dp.data_mult), dtype=np.single)
    out = cropped.reshape(3, i, i, n * dp.data_mult)
    images = buf.transpose(3, 1, 2, 0)  # (cases, rows, cols, RGB) -> the (RGB, rows, cols, cases) of fill_cases
    dp.run_chunks(n, lambda c0, c1: dp.fill_cases(images[..., c0:c1], out, c0, n, crops, noise, mean))
    labels = np.tile(labels, (1, dp.data_mult))
    return [cropped, np.require(labels, dtype=np.single, requirements="C")]


register_data_provider("inet-lr-cropped-jpeg", "ImageNet logistic regression cropped JPEG",
                       JPEGCroppedImageNetLogRegDP)
