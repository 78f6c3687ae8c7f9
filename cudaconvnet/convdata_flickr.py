"""Flickr tag data for a cross-entropy cost: JPEG batches whose images carry lists of tags.

Stands for the CHM AlexNet 2012 convdata_flickr.py (JPEGCroppedFlickrCEDP,
'flickr-ce-cropped', and DummyConvNetCEDP, 'dummy-ce-n'): labels are a (classes, N) float32
matrix of 0s and 1s, one column per image; crops, flips and colour noise as the ImageNet
JPEG provider (convdata_jpeg.py).
"""

import os

import numpy as np

from .convdata import _CroppedImageNetBase
from .convdata_jpeg import JPEGCroppedImageNetLogRegDP, crop_jpeg_batch
from .data import DataProviderException, LabeledDummyDataProvider, register_data_provider

__all__ = ["JPEGCroppedFlickrCEDP", "DummyConvNetCEDP", "tag_key", "unpack_flickr_batch"]


def tag_key(tag):
    """A raw tag as it is looked up in freq_to_id: lower case, every whitespace removed.

    2012 did this on Python 2 byte strings, where lower() and split() know only ASCII;
    a tag loaded as latin1 text is treated as those bytes, so 'CAF\\xc9' keeps its '\\xc9'.
    """
    if isinstance(tag, str):
        try:
            raw = tag.encode("latin1")
        except UnicodeEncodeError:  # a Python 2 unicode tag: its own rules
            return "".join(tag.lower().split())
    elif isinstance(tag, bytes):
        raw = tag
    else:
        raise TypeError(type(tag).__name__)
    return b"".join(raw.lower().split()).decode("latin1")


def unpack_flickr_batch(obj, path):
    """(list of JPEG byte strings, list of tag lists) from a Flickr batch.

    2012's batches are tuples (strings, orig_sizes, tags) with tags[k] the list of image
    k's raw tags; a dict {'data': strings, 'labels': tag lists} is read too.
    """
    if isinstance(obj, dict):
        if "data" not in obj or "labels" not in obj:
            raise DataProviderException("'%s' is not a Flickr batch: no 'data'/'labels'" % path)
        strings, tags = obj["data"], obj["labels"]
    elif isinstance(obj, (tuple, list)) and len(obj) == 3:
        strings, _sizes, tags = obj
    else:
        raise DataProviderException("'%s' is not a Flickr batch: expected (strings, sizes, tags) or "
                                    "{'data', 'labels'}" % path)
    if not isinstance(strings, (list, tuple)) or (strings and not isinstance(strings[0], (bytes, str))):
        raise DataProviderException("'%s': 'data' is not a list of JPEG byte strings" % path)
    if not isinstance(tags, (list, tuple)) or len(strings) != len(tags):
        raise DataProviderException("'%s' has %d images and %s tag lists" % (
            path, len(strings), len(tags) if isinstance(tags, (list, tuple)) else "no"))
    for k, t in enumerate(tags):
        # (a bare string would be read as one tag per character, as 2012 would have)
        if not isinstance(t, (list, tuple)) or not all(isinstance(x, (str, bytes)) for x in t):
            raise DataProviderException("'%s': the tags of image %d are not a list of strings" % (path, k))
    strings = [s.encode("latin1") if isinstance(s, str) else s for s in strings]
    return strings, tags


class JPEGCroppedFlickrCEDP(_CroppedImageNetBase):
    """'flickr-ce-cropped': JPEG batches of tagged images, for cost.crossent2 and the like.

    batches.meta: as for inet-lr-cropped-jpeg ('data_mean', 'num_vis', 'label_names',
    'color_pca', 'batch_size'), plus 'freq_to_id', which maps a tag (tag_key form) to its
    class number; tags it does not know are ignored.  Returns [data, labels]: the crops as
    inet-lr-cropped-jpeg makes them ((3*I*I, N) float32; train: a crop corner and a flip
    per chunk of 32, colour noise drawn randn(batch_size, 3); test: centre or 10 views),
    and labels (num_classes, N) with labels[c, k] = 1 where image k has a tag of class c
    (columns tiled like the views).  scalar_mean does not apply, as in 2012.
    """

    draw_color_noise = JPEGCroppedImageNetLogRegDP.draw_color_noise

    def __init__(self, data_dir, batch_range=None, init_epoch=1, init_batchnum=None,
                 dp_params=None, test=False):
        dp_params = {} if dp_params is None else dp_params
        _CroppedImageNetBase.__init__(self, data_dir, batch_range, init_epoch, init_batchnum,
                                      dp_params, test)
        meta_path = os.path.join(self.data_dir, "batches.meta")
        if "freq_to_id" not in self.batch_meta:
            raise DataProviderException("'%s' has no 'freq_to_id' (a dict from tag to class number)"
                                        % meta_path)
        ids = self.batch_meta["freq_to_id"]
        if not isinstance(ids, dict):
            raise DataProviderException("'%s': 'freq_to_id' is a %s, not a dict" % (meta_path, type(ids).__name__))
        num_classes = self.get_num_classes()
        self.freq_to_id = {}
        for tag, c in ids.items():
            if not isinstance(c, (int, np.integer)) or isinstance(c, bool) or not 0 <= c < num_classes:
                raise DataProviderException("'%s': freq_to_id[%r] = %r is not a class number 0..%d (%d "
                                            "label_names)" % (meta_path, tag, c, num_classes - 1, num_classes))
            self.freq_to_id[tag.decode("latin1") if isinstance(tag, bytes) else tag] = int(c)
        self.batch_size = int(self.batch_meta.get("batch_size", 0))
        self.num_noise = self.batch_size
        self.decode_failures = {}  # batch number -> images dropped because they would not decode

    def get_data_dims(self, idx=0):
        return self.inner_size ** 2 * 3 if idx == 0 else self.get_num_classes()

    def tag_matrix(self, tags):
        """(num_classes, len(tags)) float32: 1 where an image has a tag of that class."""
        labels = np.zeros((self.get_num_classes(), len(tags)), dtype=np.single)
        for k, image_tags in enumerate(tags):
            found = [self.freq_to_id.get(tag_key(t)) for t in image_tags]
            labels[[c for c in found if c is not None], k] = 1.0
        return labels

    def prepare_batch(self, obj, epoch, batchnum):
        path = self.get_data_file_name(batchnum)
        strings, tags = unpack_flickr_batch(obj, path)
        i = self.inner_size
        # 2012 stopped on an unreadable image (fix-flickr.py had removed them from its
        # batches); like inet-lr-cropped-jpeg, drop every view of it and its labels
        return crop_jpeg_batch(self, strings, self.tag_matrix(tags), path, batchnum,
                               self.data_mean_crop.reshape(3, i, i, 1))


class DummyConvNetCEDP(LabeledDummyDataProvider):
    """'dummy-ce-<n>': 16 random cases of n dims, (n, 16), and a (16, 16) label matrix with
    one 1 per column, in a uniformly drawn row, for checking a cross-entropy net.

    Draws come from numpy's global generator: the cases, the dummy's own labels (unused),
    then one class per case, as 2012 drew them.
    """

    def __init__(self, data_dim):
        LabeledDummyDataProvider.__init__(self, data_dim, num_classes=16, num_cases=16)

    def get_next_batch(self):
        epoch, batchnum, dic = LabeledDummyDataProvider.get_next_batch(self)
        data = np.require(dic["data"].T, requirements="C")
        n, rows = data.shape[1], self.get_data_dims(1)
        labels = np.zeros((rows, n), dtype=np.single)
        labels[np.random.randint(0, rows, size=n), np.arange(n)] = 1.0  # same stream as n scalar draws
        return epoch, batchnum, [data, labels]

    def get_data_dims(self, idx=0):
        return self.batch_meta["num_vis"] if idx == 0 else 16


register_data_provider("flickr-ce-cropped", "Flickr cross-entropy cropped", JPEGCroppedFlickrCEDP)
register_data_provider("dummy-ce-n", "Dummy cross-entropy", DummyConvNetCEDP)
