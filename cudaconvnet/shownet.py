"""Pictures of a trained net (cost curves, filters, test predictions) and feature writing.

Stands for shownet.py, both the cuda-convnet r561 one and the AlexNet 2012 one: `python -m
cudaconvnet.shownet -f CHECKPOINT --show-cost=logprob ...`. Figures are drawn with matplotlib
into PNG files (the headless Agg backend; with --show also on screen where there is one).
"""
import os
import random
import re
import sys
from math import ceil, sqrt

import numpy as np

from . import layer as lay
from .convnet import ConvNet
from .data import DataProvider, DataProviderException
from .engine.layers import EngineError
from .gpumodel import IGPUModel, StopTraining, run_main
from .options import (BooleanOptionParser, IntegerOptionParser, OptionException, OptionHelpException,
                      OptionsParser, StringOptionParser)
from .util import UnpickleError, atomic_output, pickle

# The options of ConvNet that shownet keeps from the command line: cuda-convnet's four, the
# AlexNet code's five more, and this port's engine choice. The rest come from the checkpoint.
KEPT_OPTIONS = ("gpu", "load_file", "train_batch_range", "test_batch_range",
                "multiview_test", "data_path", "logreg_name", "pca_noise", "scalar_mean", "backend")

# What each dialect's shownet drew differently: rows of filters per figure, labels per
# prediction chart, the cost plot's title.
STYLE = {
    # the AlexNet code showed ImageNet's first synonym ("tabby, tabby cat" as "tabby") and
    # predictions of any layer (e.g. logistic units over Flickr's tags), not just a softmax's
    lay.CUDA_CONVNET: {"max_rows": 16, "top_classes": 4, "cost_title": "%(name)s", "first_synonym": False,
                       "preds_type": "softmax"},
    lay.ALEXNET: {"max_rows": 24, "top_classes": 5, "cost_title": "%(name)s[%(idx)d]", "first_synonym": True,
                  "preds_type": None},
}
FILTERS_PER_ROW = 16
PRED_ROWS, PRED_COLS = 2, 4          # the predictions grid: 2 x 4 test images

# Picture sizes, in pixels (2012 drew matplotlib's default 640x480 windows).
DPI = 100
COST_SIZE = (640, 480)
PREDS_SIZE = (1200, 900)
FILTER_TITLE_PX = 30                 # the band above a filter grid that holds its title
FILTER_TARGET_PX = 640               # a filter grid is scaled up by a whole factor towards this width
FILTER_MAX_SCALE = 12

# The order the AlexNet code's shownet parse() met its options in (as convnet.PARSE_ORDER_2012;
# cuda-convnet's, with fewer options, differs in where -f falls): without -f, both named
# --train-range "not supplied".
SHOWNET_PARSE_ORDER_2012 = [
    "show_cost", "input_idx", "feature_path", "show_data_grad", "train_batch_range", "show_filters", "norm_filters",
    "test_batch_range", "webcam", "show_preds", "gpu", "no_rgb", "show_maps", "only_errors", "yuv_to_rgb",
    "write_features", "channels", "load_file", "top5", "cost_idx", "local_plane",
]

# Options the 2012 code had that need what this port has not: a line to say so.
UNSUPPORTED = {
    "webcam": "--webcam is not supported here (the 2012 demo read a webcam through OpenCV and pygame)",
    "show_maps": "--show-maps is not supported here (the 2012 code drew maps of ReLU nets only, "
                 "with hard-coded sizes)",
    "show_data_grad": "--show-data-grad is not supported here (the AlexNet code's engine call for it, "
                      "startDataGrad, was commented out: it computed nothing)",
}

# YUV -> RGB, as 2012's --yuv-to-rgb applied it to filters (rows: R, G, B; columns: Y, U, V).
YUV_TO_RGB = np.array([[1.0, 0.0, 1.28033],
                       [1.0, -0.21482, -0.38059],
                       [1.0, 2.12798, 0.0]], dtype=np.float64)


class _NoData:
    """Stands in for the data providers when no picture needs data (cost, filters)."""

    def advance_batch(self):
        pass


def have_display():
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


# -- what the pictures show, apart from drawing them ---------------------------------------------
def cost_series(train_outputs, test_outputs, name, idx, num_batches, testing_freq):
    """The cost curve's numbers as 2012 computed them: one train value per batch; each test
    value repeated testing_freq times (the last one again until the train curve ends);
    a tick at the start of every epoch, labelled every 10th (every 10*k-th when there are
    more than 200 epochs). Returns (train, test or None, ticklocs, ticklabels)."""
    train = [float(o[0][name][idx]) for o in train_outputs]
    test = None
    if test_outputs:
        test = list(np.repeat([float(o[0][name][idx]) for o in test_outputs], testing_freq))
        test += [test[-1]] * max(0, len(train) - len(test))
        test = test[:len(train)]
    num_epochs = len(train) / float(num_batches)
    ticklocs = list(range(num_batches, len(train) - len(train) % num_batches + 1, num_batches))
    gran = int(ceil(num_epochs / 20.0))       # about 20 labels at most...
    gran = int(ceil(gran / 10.0) * 10)        # ...on a multiple of 10 epochs
    ticklabels = [str(loc // num_batches) if i % gran == gran - 1 else "" for i, loc in enumerate(ticklocs)]
    return train, test, ticklocs, ticklabels


def layer_filters(layer, input_idx, channels=0, local_plane=None, module=None):
    """A weight layer's filters as (channels, pixels, n) plus what the grid needs.

    conv: the filters. fc: each output's weights seen as a channels x size x size image
    (channels from --channels). local (unshared): cuda-convnet showed every module's
    filters, starting at one module picked at random (module=); the AlexNet code shows one
    filter (local_plane=) at every module, a row per row of modules.
    Returns (filters, first, num_filters, per_row, title_note)."""
    name = layer["name"]
    w = layer["weights"][input_idx]
    first, per_row, note = 0, FILTERS_PER_ROW, ""
    if layer["type"] == "fc":
        if channels <= 0:
            raise StopTraining("Layer '%s' is fully-connected: give --channels (its %d inputs as channels x "
                               "size x size images)" % (name, w.shape[0]))
        num_filters = layer["outputs"]
    elif layer["type"] in ("conv", "local"):
        num_filters = layer["filters"]
        channels = layer["filterChannels"][input_idx]
        if layer["type"] == "local":
            pixels, modules = layer["filterPixels"][input_idx], layer["modules"]
            w = w.reshape(modules, channels, pixels, num_filters)
            if local_plane is not None:
                if not 0 <= local_plane < num_filters:
                    raise StopTraining("--local-plane=%d: layer '%s' has filters 0-%d"
                                       % (local_plane, name, num_filters - 1))
                w = w[:, :, :, local_plane].transpose(1, 2, 0).reshape(channels * pixels, modules)
                num_filters, per_row = modules, layer["modulesX"]
                note = "filter %d at each of %d modules" % (local_plane, modules)
            else:
                module = random.randint(0, modules - 1) if module is None else module
                # column m * filters + f: filter f of module m
                w = w.transpose(1, 2, 0, 3).reshape(channels * pixels, modules * num_filters)
                first, num_filters = module * layer["filters"], modules * num_filters
                note = "from module %d of %d" % (module, modules)
    else:
        raise StopTraining("Layer '%s' has type '%s'; --show-filters draws conv, local and fc layers"
                           % (name, layer["type"]))
    rows = w.shape[0]
    if rows % channels:
        raise StopTraining("Layer '%s' has %d inputs per filter, not a multiple of %d channels"
                           % (name, rows, channels))
    pixels = rows // channels
    size = int(round(sqrt(pixels)))
    if size * size != pixels:
        raise StopTraining("Layer '%s': %d inputs per filter are not %d channel(s) of square images"
                           % (name, rows, channels))
    return w.reshape(channels, pixels, w.shape[-1]), first, num_filters, per_row, note


def normalize_filters(filters, per_filter=False):
    """Into [0, 1] for display. 2012: one shift and scale for all filters together; the AlexNet
    code's --norm-filters first gives each filter zero mean and unit variance."""
    f = np.asarray(filters, dtype=np.float64)
    if per_filter:
        f = f - f.mean(axis=(0, 1), keepdims=True)
        sd = f.std(axis=(0, 1), keepdims=True)
        f = f / np.where(sd > 0, sd, 1.0)
    f = f - f.min()
    top = f.max()
    return (f / top if top > 0 else np.full_like(f, 0.5)).astype(np.float32)


def filter_mosaic(filters, first, num_filters, combine_chans, per_row=FILTERS_PER_ROW, max_rows=16):
    """The 2012 filter grid: per_row filters a row (a filter with c uncombined channels takes
    c tiles side by side, so per_row / c filters a row), max_rows * per_row filters at most,
    one black pixel between tiles and around them. filters: (channels, pixels, n) in [0, 1].
    Returns (picture (H, W) or (H, W, 3), last filter shown + 1)."""
    channels, pixels = filters.shape[0], filters.shape[1]
    size = int(round(sqrt(pixels)))
    f_per_row = int(ceil(per_row / float(1 if combine_chans else channels)))
    end = min(first + per_row * max_rows, num_filters)
    rows = int(ceil(float(end - first) / f_per_row))
    tile_w = size if combine_chans else size * channels
    pic = np.zeros((rows * (size + 1) + 1, f_per_row * (tile_w + 1) + 1) + ((3,) if combine_chans else ()),
                   dtype=np.float32)
    for m in range(first, end):
        y, x = divmod(m - first, f_per_row)
        top, left = 1 + (size + 1) * y, 1 + (tile_w + 1) * x
        f = filters[:, :, m].reshape(channels, size, size)
        if combine_chans:
            pic[top:top + size, left:left + size] = f.transpose(1, 2, 0)
        else:
            for c in range(channels):
                pic[top:top + size, left + size * c:left + size * (c + 1)] = f[c]
    return pic, end


def filter_scale(pic_shape):
    """The whole factor a filter grid is drawn at (each grid pixel a scale x scale block)."""
    h, w = pic_shape[0], pic_shape[1]
    scale = max(1, min(FILTER_MAX_SCALE, FILTER_TARGET_PX // max(w, 1)))
    while scale > 1 and h * scale > 4 * FILTER_TARGET_PX:
        scale -= 1
    return scale


def file_part(name):
    """A layer or cost name as part of a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def title_width_px(text, points=10):
    """How wide matplotlib draws text at the given size, in pixels at DPI."""
    from matplotlib.textpath import TextPath
    return int(ceil(TextPath((0, 0), text, size=points).get_extents().width * DPI / 72.0))


def true_classes(labels, n, num_classes):
    """(n, num_classes) bool: the classes of each of the first n cases, from a (1, N) row of
    class numbers or a (num_classes, N) 0/1 matrix (several labels a case, as Flickr's)."""
    if labels.shape[0] == 1:
        truth = np.zeros((n, num_classes), dtype=bool)
        truth[np.arange(n), np.asarray(labels[0, :n], dtype=np.int64)] = True
        return truth
    return np.ascontiguousarray(labels[:, :n].T == 1)


def top_k(probs, k):
    """The k most probable classes of one case, least probable first (2012's order)."""
    return list(np.argsort(probs, kind="stable")[::-1][:k][::-1])


# -- the model ------------------------------------------------------------------------------------
class ShowConvNet(ConvNet):
    def __init__(self, op, load_dic, out=None):
        self.need_engine = bool(op.get_value("show_preds") or op.get_value("write_features") or op.get_value("top5"))
        self.interactive = False
        ConvNet.__init__(self, op, load_dic, out=out)

    # No data and no engine unless a picture needs them; the layers as the checkpoint has them.
    def init_data_providers(self):
        self.train_data_provider = _NoData()
        self.test_data_provider = _NoData()
        if not self.need_engine:
            return
        self.dp_params["convnet"] = self
        try:
            self.test_data_provider = DataProvider.get_instance(self.opt("data_path"), self.opt("test_batch_range"),
                                                                type=self.opt("dp_type"), dp_params=self.dp_params,
                                                                test=True)
        except DataProviderException as e:
            raise StopTraining("Unable to create data provider: %s" % e)

    def init_model_state(self):
        layers = self.model_state.get("layers")
        self.check_checkpoint_layers(layers)
        self.layers = [layers[k] for k in sorted(layers)] if isinstance(layers, dict) else list(layers)
        self.layers_dic = {l["name"]: l for l in self.layers}
        self.style = STYLE[self.dialect()]
        if self.opt("show_filters"):
            self.get_layer_idx(self.opt("show_filters"))
            layer = self.layers_dic[self.opt("show_filters")]
            if "weights" not in layer:
                raise StopTraining("Layer '%s' (type '%s') has no weights to show" % (layer["name"], layer["type"]))
            if not 0 <= self.opt("input_idx") < len(layer["weights"]):
                raise StopTraining("--input-idx=%d: layer '%s' has %d weight matrices"
                                   % (self.opt("input_idx"), layer["name"], len(layer["weights"])))
        if self.opt("show_preds"):
            self.softmax_name = self.get_layer_idx(self.opt("show_preds"), check_type=self.style["preds_type"])
        for opt in ("write_features", "top5"):
            if self.opt(opt):
                self.get_layer_idx(self.opt(opt))
                if self.layers_dic[self.opt(opt)]["type"].startswith("cost."):
                    raise StopTraining("Layer '%s' is a cost layer; it has no outputs to write" % self.opt(opt))

    def import_model(self):
        if self.need_engine:
            ConvNet.import_model(self)

    def init_model_lib(self):
        if self.need_engine:
            ConvNet.init_model_lib(self)

    # -- figures ------------------------------------------------------------------------------
    def new_figure(self, w_px, h_px):
        if self.interactive:
            import matplotlib.pyplot as plt
            return plt.figure(figsize=(w_px / DPI, h_px / DPI), dpi=DPI)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        fig = Figure(figsize=(w_px / DPI, h_px / DPI), dpi=DPI)
        FigureCanvasAgg(fig)
        return fig

    def save_figure(self, fig, name):
        """Writes the figure as <save-dir>/<name>, whole or not at all."""
        save_dir = self.opt("save_dir") or "."
        path = os.path.join(save_dir, name)
        try:
            os.makedirs(save_dir, exist_ok=True)
            with atomic_output(path) as tmp:
                fig.savefig(tmp, format="png", dpi=DPI)
        except OSError as e:
            raise StopTraining("Cannot write '%s': %s" % (path, e.strerror or e))
        self.p("Saved %s" % path)
        return path

    # -- --show-cost ----------------------------------------------------------------------------
    def check_cost(self):
        name, idx = self.opt("show_cost"), self.opt("cost_idx")
        if not self.train_outputs:
            raise StopTraining("The checkpoint holds no training costs to plot")
        if name not in self.train_outputs[0][0]:
            raise StopTraining("Cost function with name '%s' not defined by given convnet (it has: %s)."
                               % (name, ", ".join(sorted(self.train_outputs[0][0]))))
        nvals = len(self.train_outputs[0][0][name])
        if not 0 <= idx < nvals:
            raise StopTraining("--cost-idx=%d: cost '%s' has %d values (0-%d)" % (idx, name, nvals, nvals - 1))

    def plot_cost(self):
        self.check_cost()
        name, idx = self.opt("show_cost"), self.opt("cost_idx")
        train, test, ticklocs, ticklabels = cost_series(self.train_outputs, self.test_outputs, name, idx,
                                                        len(self.opt("train_batch_range")), self.opt("testing_freq"))
        fig = self.new_figure(*COST_SIZE)
        ax = fig.add_subplot(1, 1, 1)
        x = range(len(train))
        ax.plot(x, train, "k-", label="Training set")
        if test is not None:
            ax.plot(x, test, "r-", label="Test set")
        ax.legend()
        ax.set_xticks(ticklocs)
        ax.set_xticklabels(ticklabels)
        ax.set_xlabel("Epoch")
        ax.set_title(self.style["cost_title"] % {"name": name, "idx": idx})
        return self.save_figure(fig, "cost-%s-%d.png" % (file_part(name), idx)), fig

    # -- --show-filters ------------------------------------------------------------------------------
    def check_filters(self):
        """The layer's filters as the grid will show them (a bad layer or --channels stops here)."""
        if getattr(self, "filter_spec", None) is None:
            layer = self.layers_dic[self.opt("show_filters")]
            plane = None
            if layer["type"] == "local" and (self.dialect() == lay.ALEXNET or self.options["local_plane"].value_given):
                plane = self.opt("local_plane")
            self.filter_spec = layer_filters(layer, self.opt("input_idx"), self.opt("channels"), local_plane=plane)
        return self.filter_spec

    def plot_filters(self):
        name = self.opt("show_filters")
        filters, first, num_filters, per_row, note = self.check_filters()
        channels = filters.shape[0]
        if self.opt("yuv_to_rgb") and channels == 3:
            filters = np.einsum("rc,cpn->rpn", YUV_TO_RGB, filters)
        combine = not self.opt("no_rgb") and channels == 3
        filters = normalize_filters(filters, per_filter=bool(self.opt("norm_filters")))
        pic, end = filter_mosaic(filters, first, num_filters, combine, per_row, self.style["max_rows"])
        size = int(round(sqrt(filters.shape[1])))
        title = "Layer %s %dx%d filters %d-%d" % (name, size, size, first, end - 1)
        if note:
            title += " (%s)" % note
        shown = end - first
        if shown < num_filters:
            self.p("Showing %d of the %d filters of layer '%s' (%d-%d)" % (shown, num_filters, name, first, end - 1))
        # The grid at a whole scale, so that every grid pixel is a block of picture pixels;
        # centred under its title when the title is the wider.
        scale = filter_scale(pic.shape)
        h, w = pic.shape[0] * scale, pic.shape[1] * scale
        fig_w, fig_h = max(w, title_width_px(title) + 20), h + FILTER_TITLE_PX
        fig = self.new_figure(fig_w, fig_h)
        fig.text(0.5, 1.0 - 0.5 * FILTER_TITLE_PX / fig_h, title, ha="center", va="center")
        ax = fig.add_axes([((fig_w - w) // 2) / float(fig_w), 0.0, w / float(fig_w), h / float(fig_h)])
        ax.set_axis_off()
        if combine:
            ax.imshow(pic, interpolation="nearest", aspect="auto")
        else:
            # as 2012's imshow: grey from the darkest to the brightest of what is shown
            ax.imshow(pic, cmap="gray", interpolation="nearest", aspect="auto")
        return self.save_figure(fig, "filters-%s.png" % file_part(name)), fig

    # -- --show-preds ---------------------------------------------------------------------------------
    def num_views(self):
        dp = self.test_data_provider
        return dp.num_views if getattr(dp, "multiview", False) else 1

    def batch_probs(self, data, layer_name, views, cases=None):
        """The layer's outputs for the given cases of a batch, averaged over its views (the
        2012 multiview test averages the softmax over the 10 views)."""
        n = data[0].shape[1] // views
        cases = np.arange(n) if cases is None else np.asarray(cases)
        cols = np.concatenate([v * n + cases for v in range(views)])
        sub = [np.ascontiguousarray(d[:, cols]) for d in data]
        try:
            out, _ = self.libmodel.features(sub, layer_name)
        except EngineError as e:
            raise StopTraining(str(e))
        return out.reshape(views, len(cases), out.shape[1]).mean(axis=0)

    def plot_predictions(self):
        dp = self.test_data_provider
        batchnum, data = self.get_next_batch(train=False)[1:]
        views = self.num_views()
        n = data[0].shape[1] // views
        try:
            num_classes = dp.get_num_classes()
        except (AttributeError, DataProviderException) as e:
            raise StopTraining("--show-preds needs a labelled data provider: %s" % e)
        names = [str(s) for s in dp.batch_meta.get("label_names") or range(num_classes)]
        if self.style["first_synonym"]:
            names = [s.split(",")[0] for s in names]
        if data[1].shape[0] not in (1, num_classes):
            raise StopTraining("The data's labels are a (%d, N) matrix, for %d classes" % (data[1].shape[0], num_classes))
        truth = true_classes(data[1], n, num_classes)
        num_imgs = PRED_ROWS * PRED_COLS
        k = min(num_classes, self.style["top_classes"])
        if self.opt("only_errors"):  # the top guess is none of the case's classes
            probs = self.batch_probs(data, self.softmax_name, views)
            wrong = np.nonzero(~truth[np.arange(n), probs.argmax(axis=1)])[0]
            cases = np.random.permutation(wrong)[:num_imgs]
            probs = probs[cases]
        else:  # 2012 drew with replacement; distinct cases here
            cases = np.random.choice(n, min(n, num_imgs), replace=False)
            probs = self.batch_probs(data, self.softmax_name, views, cases)
        if probs.shape[1] != num_classes:
            raise StopTraining("Layer '%s' has %d outputs but the data have %d classes"
                               % (self.softmax_name, probs.shape[1], num_classes))
        self.shown_preds = (cases, probs, truth[cases])
        shown_view = dp.centre_view if views > 1 else 0  # the centre crop (convdata.init_crops)
        try:
            imgs = dp.get_plottable_data(np.ascontiguousarray(data[0][:, shown_view * n + cases]))
        except DataProviderException as e:
            raise StopTraining(str(e))

        from matplotlib import gridspec
        fig = self.new_figure(*PREDS_SIZE)
        what = "Mistaken" if self.opt("only_errors") else "Random"
        head = "%s test case predictions (batch %d%s)" % (what, batchnum,
                                                           ", average of %d views" % views if views > 1 else "")
        fig.text(0.5, 0.96, head, ha="center", fontsize=14)
        if len(cases) == 0:
            fig.text(0.5, 0.5, "The net gets every case of this batch right.", ha="center")
            self.p("No mistaken predictions in test batch %d." % batchnum)
        gs = gridspec.GridSpec(PRED_ROWS * 2, PRED_COLS, figure=fig, height_ratios=[2, 1] * PRED_ROWS,
                               hspace=0.45, wspace=0.6)
        for i in range(len(cases)):
            row, col = divmod(i, PRED_COLS)
            ax = fig.add_subplot(gs[row * 2, col])
            ax.set_xticks([])
            ax.set_yticks([])
            img = imgs[i]
            if img.shape[-1] == 1:
                ax.imshow(img[:, :, 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            else:
                ax.imshow(np.clip(img, 0.0, 1.0), interpolation="nearest")
            true = truth[cases[i]]
            ax.set_title(", ".join(names[c] for c in np.flatnonzero(true)))
            best = top_k(probs[i], k)
            bars = fig.add_subplot(gs[row * 2 + 1, col])
            ylocs = np.arange(k) + 0.5
            bars.barh(ylocs, [probs[i][c] for c in best], height=0.5,
                      color=["r" if true[c] else "b" for c in best])
            bars.set_yticks(ylocs)
            bars.set_yticklabels([names[c] for c in best])
            bars.set_xlim(0.0, 1.0)
            bars.set_xticks([0.5, 1.0])
            bars.set_xticklabels(["50%", ""])
            bars.set_ylim(0, k + 0.5)
        suffix = "-errors" if self.opt("only_errors") else ""
        return self.save_figure(fig, "preds-%s%s.png" % (file_part(self.softmax_name), suffix)), fig

    # -- --write-features ------------------------------------------------------------------------------
    def batches(self, what):
        """One pass over the test range with a progress bar (tqdm if installed, else a counter)."""
        total = len(self.opt("test_batch_range"))
        try:
            from tqdm import tqdm
        except ImportError:
            tqdm = None
        bar = tqdm(total=total, desc=what, unit="batch", file=sys.stderr) if tqdm else None
        say = bar.write if bar else self.p
        try:
            for i in range(total):
                epoch, batchnum, data = self.get_next_batch(train=False)
                yield batchnum, data, say
                if bar:
                    bar.update(1)
                else:
                    print("%s: batch %d of %d" % (what, i + 1, total), file=sys.stderr)
        finally:
            if bar:
                bar.close()

    def do_write_features(self):
        try:
            import h5py
        except ImportError:
            raise StopTraining("--write-features needs the h5py package (pip install h5py)") from None
        path, name = self.opt("feature_path"), self.opt("write_features")
        h5path = os.path.join(path, "features.h5")
        num_ftrs = None
        try:
            os.makedirs(path, exist_ok=True)
            with atomic_output(h5path) as h5tmp, h5py.File(h5tmp, "w") as h5:
                h5.attrs["source_model"] = str(self.opt("load_file"))
                h5.attrs["layer"] = name
                for batchnum, data, say in self.batches("Writing %s features" % name):
                    try:
                        ftrs, _ = self.libmodel.features(data, name)
                    except EngineError as e:
                        raise StopTraining(str(e))
                    ftrs = np.require(ftrs, dtype=np.single, requirements="C")
                    num_ftrs = ftrs.shape[1]
                    labels = np.array(data[1])
                    out = os.path.join(path, "data_batch_%d" % batchnum)
                    pickle(out, {"data": ftrs, "labels": labels})
                    grp = h5.create_group("data_batch_%d" % batchnum)
                    grp.create_dataset("data", data=ftrs)
                    grp.create_dataset("labels", data=labels)
                    say("Wrote feature file %s" % out)
                h5.attrs["num_vis"] = num_ftrs
            pickle(os.path.join(path, "batches.meta"), {"source_model": self.opt("load_file"), "num_vis": num_ftrs})
        except OSError as e:
            raise StopTraining("Cannot write features to '%s': %s" % (path, e.strerror or e))
        self.p("Wrote %s and %s" % (os.path.join(path, "batches.meta"), h5path))

    # -- --top5 -----------------------------------------------------------------------------------------
    def do_top5(self):
        """Top-1 and top-5 test error of a softmax over the test range (the AlexNet code's
        --top5, which printed its running counts)."""
        name = self.opt("top5")
        views = self.num_views()
        n_all = right1 = right5 = 0
        for batchnum, data, say in self.batches("Top-5 error of %s" % name):
            probs = self.batch_probs(data, name, views)
            if data[1].shape[0] != 1:
                raise StopTraining("--top5 needs one label per case; the data have a (%d, N) label matrix"
                                   % data[1].shape[0])
            labels = np.asarray(data[1][0, :probs.shape[0]], dtype=np.int64)
            order = np.argsort(-probs, axis=1, kind="stable")[:, :5]
            hit1 = int((order[:, 0] == labels).sum())
            hit5 = int((order == labels[:, None]).any(axis=1).sum())
            n_all, right1, right5 = n_all + len(labels), right1 + hit1, right5 + hit5
            say("Batch %d: %d cases, top-1 error %.6f, top-5 error %.6f"
                % (batchnum, len(labels), 1 - hit1 / len(labels), 1 - hit5 / len(labels)))
        self.p("Test range %s (%d cases): top-1 error %.6f, top-5 error %.6f"
               % (self.options["test_batch_range"].get_str_value(), n_all, 1 - right1 / max(n_all, 1),
                  1 - right5 / max(n_all, 1)))
        return n_all, right1, right5

    # -- the run -------------------------------------------------------------------------------------------
    def start(self):
        actions = [(o, f) for o, f in (("show_cost", self.plot_cost), ("show_filters", self.plot_filters),
                                       ("show_preds", self.plot_predictions),
                                       ("write_features", self.do_write_features), ("top5", self.do_top5))
                   if self.opt(o)]
        unsupported = [msg for o, msg in UNSUPPORTED.items() if self.opt(o)]
        if not actions:
            raise StopTraining(unsupported[0] if unsupported else "Nothing to do: give --show-cost, --show-filters, "
                               "--show-preds, --write-features or --top5")
        # what can be checked before any work is
        if self.opt("show_cost"):
            self.check_cost()
        if self.opt("show_filters"):
            self.check_filters()
        self.op.print_values()
        for msg in unsupported:
            print("shownet: %s; ignored." % msg, file=sys.stderr)
        for _, action in actions:
            action()
        if self.interactive:
            import matplotlib.pyplot as plt
            plt.show()
        return 0

    @classmethod
    def get_options_parser(cls):
        op = ConvNet.get_options_parser()
        for name in list(op.options):
            if name not in KEPT_OPTIONS:
                op.delete_option(name)
        # (2012's defaults, types included: False for the flags and for --top5)
        op.add_option("show-cost", "show_cost", StringOptionParser, "Show specified objective function", default="")
        op.add_option("cost-idx", "cost_idx", IntegerOptionParser, "Cost function return value index for --show-cost",
                      default=0)
        op.add_option("show-filters", "show_filters", StringOptionParser, "Show learned filters in specified layer",
                      default="")
        op.add_option("norm-filters", "norm_filters", BooleanOptionParser,
                      "Normalize each filter shown with --show-filters on its own", default=0)
        op.add_option("input-idx", "input_idx", IntegerOptionParser, "Input index for layer given to --show-filters",
                      default=0)
        op.add_option("no-rgb", "no_rgb", BooleanOptionParser,
                      "Don't combine filter channels into RGB in layer given to --show-filters", default=False)
        op.add_option("yuv-to-rgb", "yuv_to_rgb", BooleanOptionParser,
                      "Convert YUV filters to RGB in layer given to --show-filters", default=False)
        op.add_option("channels", "channels", IntegerOptionParser,
                      "Number of channels in layer given to --show-filters (fully-connected layers only)", default=0)
        op.add_option("local-plane", "local_plane", IntegerOptionParser,
                      "Filter of a local layer to show at every module (--show-filters)", default=0)
        op.add_option("show-preds", "show_preds", StringOptionParser,
                      "Show predictions made by given softmax on test set", default="")
        op.add_option("only-errors", "only_errors", BooleanOptionParser,
                      "Show only mistaken predictions (to be used with --show-preds)", default=False,
                      requires=["show_preds"])
        # 2012 wrote requires=['feature-path'], the letter, so it was never enforced
        op.add_option("write-features", "write_features", StringOptionParser,
                      "Write test data features from given layer", default="", requires=["feature_path"])
        op.add_option("feature-path", "feature_path", StringOptionParser,
                      "Write test data features to this path (to be used with --write-features)", default="")
        op.add_option("top5", "top5", StringOptionParser, "Compute top-5 test error from given layer", default=False)
        op.add_option("show-data-grad", "show_data_grad", BooleanOptionParser,
                      "Show data gradient in given data layer (not supported)", default=False)
        op.add_option("webcam", "webcam", StringOptionParser,
                      "Show webcam demo with given softmax layer's predictions (not supported)", default="")
        op.add_option("show-maps", "show_maps", StringOptionParser,
                      "Show feature maps in given layer (not supported)", default="")
        # this port's
        op.add_option("save-dir", "save_dir", StringOptionParser, "Folder for the PNG pictures", default=".")
        op.add_option("show", "show", BooleanOptionParser, "Also show the pictures in a window, if there is a display",
                      default=0)
        op.options["load_file"].default = None
        op.parse_order = SHOWNET_PARSE_ORDER_2012
        return op

    @classmethod
    def parse_options(cls, argv=None):
        """The command line, then the checkpoint's options under it (IGPUModel.parse_options
        but every complaint one line)."""
        op = cls.get_options_parser()
        try:
            op.parse(argv)
        except OptionHelpException:
            op.print_usage()
            raise StopTraining("", 0)
        except OptionException as e:
            raise StopTraining("%s (see --help)" % e)
        try:
            load_dic = IGPUModel.load_checkpoint(op.get_value("load_file"))
        except UnpickleError as e:
            raise StopTraining("Error loading checkpoint: %s" % e)
        where = op.get_value("load_file")
        ckpt_op, ms = load_dic["op"], load_dic["model_state"]
        if not isinstance(ckpt_op, OptionsParser) or not isinstance(ms, dict) or \
                not all(k in ms for k in ("layers", "train_outputs", "test_outputs", "epoch", "batchnum")):
            raise StopTraining("Error loading checkpoint: '%s' is not a ConvNet checkpoint" % where)
        try:
            ckpt_op.merge_from(op)
            # an older checkpoint may lack options this port's ConvNet reads: their defaults
            for name, o in ConvNet.get_options_parser().options.items():
                if name not in ckpt_op.options:
                    o.set_default()
                    ckpt_op.options[name] = o
            ckpt_op.eval_expr_defaults()
            IGPUModel.check_merged_options(ckpt_op, where)
        except OptionException as e:
            raise StopTraining("Error in the checkpoint's options: %s" % e)
        except UnpickleError as e:
            raise StopTraining("Error loading checkpoint: %s" % e)
        return ckpt_op, load_dic


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    op, load_dic = ShowConvNet.parse_options(argv)
    interactive = bool(op.get_value("show")) and have_display()
    if op.get_value("show") and not interactive:
        print("shownet: no display; the pictures go to files only.", file=sys.stderr)
    try:
        import matplotlib
    except ImportError:
        raise StopTraining("shownet needs the matplotlib package (pip install matplotlib)") from None
    if not interactive:
        matplotlib.use("Agg")
    model = ShowConvNet(op, load_dic)
    model.interactive = interactive
    return model.start()


if __name__ == "__main__":
    run_main(main)
