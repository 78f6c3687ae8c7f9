"""shownet.py: every picture rendered from a small trained checkpoint and read back as pixels;
features in both formats; every bad input a one-line error."""
import os
import pickle as std_pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402

from cudaconvnet import shownet  # noqa: E402
from cudaconvnet.gpumodel import IGPUModel, StopTraining, run_main  # noqa: E402
from cudaconvnet.shownet import ShowConvNet  # noqa: E402
from cudaconvnet.util import pickle, unpickle  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# A net for the cropped provider (6x6 crops of the 8x8 digits): an unshared local layer, so
# the local filter views have something to show, tested with 10 views as 2012 tested.
CROPPED_LAYERS = """
[data]
type=data
dataIdx=0

[labels]
type=data
dataIdx=1

[local1]
type=local
inputs=data
channels=1
filters=16
padding=1
stride=1
filterSize=3
initW=0.01
neuron=relu

[fc10]
type=fc
inputs=local1
outputs=10
initW=0.01

[probs]
type=softmax
inputs=fc10

[logprob]
type=cost.logreg
inputs=labels,probs
"""
CROPPED_PARAMS = "".join("[%s]\nepsW=0.001\nepsB=0.002\nmomW=0.9\nmomB=0.9\nwc=0.0005\n\n" % l
                         for l in ("local1", "fc10")) + "[logprob]\ncoeff=1\n"


def _newest_checkpoint_dir(root):
    dirs = sorted(p for p in Path(root).iterdir() if p.name.startswith("ConvNet_"))
    assert dirs, "no checkpoint folder in %s" % root
    return dirs[-1]


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    """The demo's digits net after 3 epochs: (checkpoint folder, batches folder)."""
    pytest.importorskip("sklearn")
    from cudaconvnet.demo import run_demo
    out = tmp_path_factory.mktemp("demo")
    assert run_demo(["--out", str(out), "--epochs", "3"]) == 0
    return _newest_checkpoint_dir(out), out / "digits-batches"


@pytest.fixture(scope="session")
def cropped(tmp_path_factory, digits):
    """One epoch of a local-layer net on 6x6 crops, tested on 10 views."""
    from cudaconvnet.convnet import ConvNet
    d = tmp_path_factory.mktemp("cropped")
    (d / "layers.cfg").write_text(CROPPED_LAYERS)
    (d / "params.cfg").write_text(CROPPED_PARAMS)
    argv = ["--data-path=%s" % digits[1], "--save-path=%s" % d, "--data-provider=cifar-cropped",
            "--crop-border=1", "--train-range=1-4", "--test-range=5", "--test-freq=4",
            "--layer-def=%s" % (d / "layers.cfg"), "--layer-params=%s" % (d / "params.cfg"), "--epochs=1",
            "--mini=128", "--backend=numpy", "--seed=0", "--multiview-test=1", "--logreg-name=logprob"]
    op, load_dic = IGPUModel.parse_options(ConvNet.get_options_parser(), argv)
    ConvNet(op, load_dic).start()
    return _newest_checkpoint_dir(d)


@pytest.fixture(scope="session")
def rgb_checkpoint(tmp_path_factory, digits):
    """The digits checkpoint with conv1 made a 3-colour layer (random weights, the red
    channel strongest), for the RGB filter views."""
    dic = IGPUModel.load_checkpoint(str(digits[0]))
    conv1 = next(l for l in dic["model_state"]["layers"] if l["name"] == "conv1")
    rng = np.random.RandomState(1)
    w = rng.randn(3, 25, 32).astype(np.float32)
    w[0] += 2.0
    conv1["weights"] = [w.reshape(75, 32)]
    conv1["weightsInc"] = [np.zeros((75, 32), np.float32)]
    conv1["filterChannels"] = [3]
    conv1["channels"] = [3]
    path = tmp_path_factory.mktemp("rgb") / "1.4"
    pickle(str(path), dic)
    return path


def model_for(argv):
    op, load_dic = ShowConvNet.parse_options(argv)
    return ShowConvNet(op, load_dic)


def run(argv, capsys):
    """shownet's main as the command line runs it: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as e:
        run_main(lambda: shownet.main(argv))
    out, err = capsys.readouterr()
    return e.value.code, out, err


def read_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    img = mpimg.imread(str(path))
    assert img.dtype == np.float32 and img.ndim == 3
    assert img[:, :, :3].var() > 0
    return img[:, :, :3]


def colour_masks(rgb):
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    dark = rgb.max(axis=2) < 0.35
    red = (r > 0.7) & (g < 0.35) & (b < 0.35)
    blue = (b > 0.7) & (r < 0.35) & (g < 0.35)
    return dark, red, blue


def runs(mask):
    """[start, end) of each run of True."""
    m = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(m)
    return list(zip(np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]))


def mosaic_of(model):
    """The filter grid plot_filters draws (before scaling to pixels)."""
    return model.plot_filters()[1].axes[0].images[0].get_array()


def grid_cells(path):
    """The filter grid under the title band: (picture, tile rows, tile columns, tiles drawn),
    tiles being the blocks between all-black grid lines."""
    rgb = read_png(path)[shownet.FILTER_TITLE_PX:]
    cols = np.nonzero(~(rgb > 0.999).all(axis=(0, 2)))[0]  # the grid, without white margins
    grid = rgb[:, cols[0]:cols[-1] + 1]
    black = grid.max(axis=2) == 0
    rows_, cols_ = runs(~black.all(axis=1)), runs(~black.all(axis=0))
    drawn = sum(1 for r0, r1 in rows_ for c0, c1 in cols_ if not black[r0:r1, c0:c1].all())
    return grid, len(rows_), len(cols_), drawn


# -- the cost curve ----------------------------------------------------------------------------------------
def test_cost_series_as_2012():
    outs = [({"logprob": [2.0 - 0.01 * i, 0.5]}, 100) for i in range(160)]  # 40 epochs of 4 batches
    tests = [({"logprob": [1.0 + i, 0.4]}, 50) for i in range(39)]
    train, test, locs, labels = shownet.cost_series(outs, tests, "logprob", 0, 4, 4)
    assert train == [o[0]["logprob"][0] for o in outs]
    assert test[:8] == [1.0] * 4 + [2.0] * 4          # each test value testing_freq times
    assert test[-4:] == [39.0] * 4 and len(test) == 160  # the last one until the end
    assert locs == list(range(4, 161, 4))
    assert [(l, t) for l, t in zip(locs, labels) if t] == [(40, "10"), (80, "20"), (120, "30"), (160, "40")]
    # 250 epochs: one label every 20
    outs = [({"c": [1.0]}, 1)] * 250
    _, test, locs, labels = shownet.cost_series(outs, [], "c", 0, 1, 1)
    assert test is None and [t for t in labels if t] == [str(e) for e in range(20, 251, 20)]


def test_cost_title_by_dialect(digits, tmp_path):
    """cuda-convnet titles the plot with the cost's name; the AlexNet code (whose checkpoints
    keep the layers in a dict by name) adds the value's index, and draws 24 rows of filters."""
    m = model_for(["-f", str(digits[0]), "--show-cost=logprob", "--cost-idx=1", "--save-dir=%s" % tmp_path])
    assert m.plot_cost()[1].axes[0].get_title() == "logprob"
    dic = IGPUModel.load_checkpoint(str(digits[0]))
    dic["model_state"]["layers"] = {l["name"]: l for l in dic["model_state"]["layers"]}
    dic["op"].set_value("dialect", "auto", parse=False)
    pickle(str(tmp_path / "1.4"), dic)
    m = model_for(["-f", str(tmp_path / "1.4"), "--show-cost=logprob", "--cost-idx=1", "--save-dir=%s" % tmp_path])
    assert m.plot_cost()[1].axes[0].get_title() == "logprob[1]"
    assert m.style["max_rows"] == 24 and m.style["top_classes"] == 5


def test_cost_png(digits, tmp_path, capsys):
    status, out, err = run(["-f", str(digits[0]), "--show-cost=logprob", "--cost-idx=1",
                            "--save-dir=%s" % tmp_path], capsys)
    assert status == 0 and err == ""
    path = tmp_path / "cost-logprob-1.png"
    assert "Saved %s" % path in out
    rgb = read_png(path)
    assert rgb.shape[:2] == (shownet.COST_SIZE[1], shownet.COST_SIZE[0])
    dark, red, blue = colour_masks(rgb)
    # the axes frame: the longest black rows and columns; inside it, the two curves
    frame_rows = np.nonzero(dark.sum(axis=1) > 0.5 * rgb.shape[1])[0]
    frame_cols = np.nonzero(dark.sum(axis=0) > 0.5 * rgb.shape[0])[0]
    inside = (slice(frame_rows[0] + 3, frame_rows[-1] - 2), slice(frame_cols[0] + 3, frame_cols[-1] - 2))
    assert dark[inside].any(axis=0).mean() > 0.6   # train curve, black, across the plot
    assert red[inside].any(axis=0).mean() > 0.6    # test curve, red
    assert not blue.any()
    # the curves are value 1 (the error rate) of each batch's costs, the test's repeated
    ms = IGPUModel.load_checkpoint(str(digits[0]))["model_state"]
    m = model_for(["-f", str(digits[0]), "--show-cost=logprob", "--cost-idx=1", "--save-dir=%s" % tmp_path])
    train, test = m.plot_cost()[1].axes[0].lines
    assert list(train.get_ydata()) == [o[0]["logprob"][1] for o in ms["train_outputs"]]
    freq = m.opt("testing_freq")
    assert list(test.get_ydata()[::freq]) == [o[0]["logprob"][1] for o in ms["test_outputs"]]


# -- filters -------------------------------------------------------------------------------------------------
def test_conv1_filters_grid(digits, tmp_path, capsys):
    status, out, err = run(["-f", str(digits[0]), "--show-filters=conv1", "--save-dir=%s" % tmp_path], capsys)
    assert status == 0, err
    path = tmp_path / "filters-conv1.png"
    grid, rows, cols, drawn = grid_cells(path)
    assert (rows, cols, drawn) == (2, 16, 32)  # 32 5x5 filters, 16 a row
    h, w = 2 * 6 + 1, 16 * 6 + 1               # the 2012 grid: 1-pixel black lines around tiles
    scale = grid.shape[1] // w
    assert grid.shape[:2] == (h * scale, w * scale) and scale >= 1
    assert read_png(path).shape[0] == h * scale + shownet.FILTER_TITLE_PX
    assert np.allclose(grid[..., 0], grid[..., 1]) and np.allclose(grid[..., 1], grid[..., 2])  # gray
    fig = model_for(["-f", str(digits[0]), "--show-filters=conv1", "--save-dir=%s" % tmp_path]).plot_filters()[1]
    assert fig.texts[0].get_text() == "Layer conv1 5x5 filters 0-31"


def test_filter_grid_scale():
    """A grid is drawn at the whole factor that brings it nearest 640 pixels wide, at most
    12, and lower while it would pass 2560 pixels high."""
    assert shownet.filter_scale((13, 97)) == 6 and shownet.filter_scale((13, 41)) == 12
    assert shownet.filter_scale((700, 41)) == 3 and shownet.filter_scale((5000, 41)) == 1


def test_filter_pixels_are_the_weights(digits):
    """The grid holds the weights, normalised once for all filters as 2012 did."""
    m = model_for(["-f", str(digits[0]), "--show-filters=conv1"])
    w = m.layers_dic["conv1"]["weights"][0]  # (25, 32)
    filters, first, n, per_row, _ = m.check_filters()
    norm = shownet.normalize_filters(filters)
    pic, end = shownet.filter_mosaic(norm, first, n, False)
    assert (first, end) == (0, 32)
    k = 17  # filter 17: row 1, column 1
    tile = pic[1 + 6:1 + 6 + 5, 1 + 6:1 + 6 + 5]
    expect = (w[:, k] - w.min()) / (w.max() - w.min())
    assert np.allclose(tile.ravel(), expect, atol=1e-6)


def test_norm_filters_each_filter():
    rng = np.random.RandomState(0)
    f = rng.randn(3, 25, 8) * np.arange(1, 9) + np.arange(8)
    plain = shownet.normalize_filters(f)
    assert plain.min() == 0 and plain.max() == pytest.approx(1)
    each = shownet.normalize_filters(f, per_filter=True)
    means = each.mean(axis=(0, 1))
    assert np.allclose(means, means[0], atol=1e-5)  # zero mean each, then one shift for all
    sds = each.std(axis=(0, 1))
    assert np.allclose(sds, sds[0], atol=1e-5)


def test_multichannel_and_fc_filters(digits, tmp_path, capsys):
    ck = str(digits[0])
    status, _, err = run(["-f", ck, "--show-filters=conv2", "--save-dir=%s" % tmp_path], capsys)
    assert status == 0, err
    assert grid_cells(tmp_path / "filters-conv2.png")[1:] == (32, 1, 32)  # 32 channels side by side
    status, _, err = run(["-f", ck, "--show-filters=fc10", "--channels=1", "--norm-filters=1",
                          "--save-dir=%s" % tmp_path], capsys)
    assert status == 0, err
    assert grid_cells(tmp_path / "filters-fc10.png")[1:] == (1, 10, 10)  # 10 8x8 weight images
    # --norm-filters: each filter to zero mean and unit variance, then one shift and scale
    m = model_for(["-f", ck, "--show-filters=fc10", "--channels=1", "--norm-filters=1", "--save-dir=%s" % tmp_path])
    pic = np.asarray(mosaic_of(m))
    w = m.layers_dic["fc10"]["weights"][0].astype(np.float64)  # (64, 10)
    z = (w - w.mean(axis=0)) / w.std(axis=0)
    z = (z - z.min()) / (z.max() - z.min())
    for k in (0, 7):
        assert np.allclose(pic[1:9, 1 + 9 * k:9 + 9 * k].ravel(), z[:, k], atol=1e-6)


def test_rgb_filters(rgb_checkpoint, tmp_path, capsys):
    status, _, err = run(["-f", str(rgb_checkpoint), "--show-filters=conv1", "--save-dir=%s" % tmp_path], capsys)
    assert status == 0, err
    grid, rows, cols, drawn = grid_cells(tmp_path / "filters-conv1.png")
    assert (rows, cols, drawn) == (2, 16, 32)
    tiles = grid[grid.max(axis=2) > 0]
    r, g, b = tiles.mean(axis=0)
    assert r > g + 0.1 and r > b + 0.1  # in colour: the red channel, strongest, is red
    # --no-rgb: the three channels side by side, ceil(16/3) = 6 filters a row
    status, _, err = run(["-f", str(rgb_checkpoint), "--show-filters=conv1", "--no-rgb=1",
                          "--save-dir=%s" % (tmp_path / "split")], capsys)
    assert status == 0, err
    grid, rows, cols, drawn = grid_cells(tmp_path / "split" / "filters-conv1.png")
    assert (rows, cols, drawn) == (6, 6, 32)
    assert np.allclose(grid[..., 0], grid[..., 2])
    status, _, err = run(["-f", str(rgb_checkpoint), "--show-filters=conv1", "--yuv-to-rgb=1",
                          "--save-dir=%s" % (tmp_path / "yuv")], capsys)
    assert status == 0, err
    assert grid_cells(tmp_path / "yuv" / "filters-conv1.png")[3] == 32
    # --yuv-to-rgb: each pixel's (Y, U, V) weights through the 2012 matrix, then one shift
    # and scale for all; filter 17 is in row 1, column 1
    m = model_for(["-f", str(rgb_checkpoint), "--show-filters=conv1", "--yuv-to-rgb=1", "--save-dir=%s" % tmp_path])
    pic = np.asarray(mosaic_of(m))
    w = m.layers_dic["conv1"]["weights"][0].astype(np.float64).reshape(3, 25, 32)
    rgb = np.einsum("rc,cpn->rpn", [[1.0, 0.0, 1.28033], [1.0, -0.21482, -0.38059], [1.0, 2.12798, 0.0]], w)
    rgb = (rgb - rgb.min()) / (rgb.max() - rgb.min())
    assert np.allclose(pic[7:12, 7:12].reshape(25, 3).T, rgb[:, :, 17], atol=1e-6)


def test_local_filters(cropped, tmp_path, capsys, monkeypatch):
    # cuda-convnet: 16 x 16 filters from those of a random module on (36 modules x 16 filters)
    capsys.readouterr()
    monkeypatch.setattr(shownet.random, "randint", lambda a, b: 2)
    status, out, err = run(["-f", str(cropped), "--show-filters=local1", "--save-dir=%s" % tmp_path], capsys)
    assert status == 0, err
    assert "Showing 256 of the 576 filters of layer 'local1' (32-287)" in out
    assert grid_cells(tmp_path / "filters-local1.png")[1:] == (16, 16, 256)
    monkeypatch.setattr(shownet.random, "randint", lambda a, b: 30)  # near the end: fewer
    status, out, err = run(["-f", str(cropped), "--show-filters=local1", "--save-dir=%s" % tmp_path], capsys)
    assert status == 0, err
    assert grid_cells(tmp_path / "filters-local1.png")[1:] == (6, 16, 96)
    # 2012's imshow stretched grey from the darkest to the brightest shown (here the filters
    # are normalised over all modules' and only some modules' are shown): white is there
    assert grid_cells(tmp_path / "filters-local1.png")[0].max() == 1.0
    # AlexNet code: one filter at every module, laid out as the modules are (6 x 6)
    status, out, err = run(["-f", str(cropped), "--show-filters=local1", "--local-plane=3",
                            "--save-dir=%s" % (tmp_path / "plane")], capsys)
    assert status == 0, err
    assert grid_cells(tmp_path / "plane" / "filters-local1.png")[1:] == (6, 6, 36)
    m = model_for(["-f", str(cropped), "--show-filters=local1", "--local-plane=3"])
    filters = m.check_filters()[0]
    w = m.layers_dic["local1"]["weights"][0].reshape(36, 1, 9, 16)
    assert np.array_equal(filters[0, :, 7], w[7, 0, :, 3])  # module 7's filter 3


def test_local_plane_of_a_multichannel_layer():
    """--local-plane on a 2-colour local layer: the 2012 code took weights[:, :, :, plane] of
    (modules, channels, pixels, filters) and swapped it to (channels, pixels, modules)."""
    modules, channels, pixels, filters = 4, 2, 9, 3
    w = np.arange(modules * channels * pixels * filters, dtype=np.float32).reshape(modules * channels * pixels, filters)
    layer = {"name": "loc", "type": "local", "weights": [w], "filters": filters, "filterChannels": [channels],
             "filterPixels": [pixels], "modules": modules, "modulesX": 2}
    got, first, num, per_row, note = shownet.layer_filters(layer, 0, local_plane=1)
    planes = w.reshape(modules, channels, pixels, filters)[:, :, :, 1]
    assert np.array_equal(got, planes.swapaxes(0, 2).swapaxes(0, 1))
    assert got[1, 4, 3] == w[(3 * channels + 1) * pixels + 4, 1]   # module 3, channel 1, pixel 4
    assert (first, num, per_row) == (0, modules, 2)


# -- predictions -----------------------------------------------------------------------------------------------
def test_predictions_png(digits, tmp_path):
    m = model_for(["-f", str(digits[0]), "--show-preds=probs", "--save-dir=%s" % tmp_path])
    path, fig = m.plot_predictions()
    rgb = read_png(path)
    assert rgb.shape[:2] == (shownet.PREDS_SIZE[1], shownet.PREDS_SIZE[0])
    _, red, blue = colour_masks(rgb)
    assert red.sum() > 50 and blue.sum() > 50
    cases, probs, truth = m.shown_preds
    assert len(cases) == 8 and len(set(cases)) == 8
    assert truth.shape == (8, 10) and (truth.sum(axis=1) == 1).all()   # one label per digit
    labels = truth.argmax(axis=1)
    assert len(fig.axes) == 16                                  # 2 x 4 images, each with its chart
    images, charts = fig.axes[0::2], fig.axes[1::2]
    assert [a.get_title() for a in images] == [str(int(l)) for l in labels]
    for chart, p, label in zip(charts, probs, labels):
        bars = chart.patches
        assert len(bars) == 4                                   # cuda-convnet: top 4
        top = np.argsort(p)[::-1][:4][::-1]
        assert [t.get_text() for t in chart.get_yticklabels()] == [str(c) for c in top]
        assert np.allclose([b.get_width() for b in bars], p[top])
        reds = [c for b, c in zip(bars, top) if b.get_facecolor()[:3] == (1.0, 0.0, 0.0)]
        assert reds == ([int(label)] if int(label) in top else [])
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_only_errors(digits, tmp_path):
    m = model_for(["-f", str(digits[0]), "--show-preds=probs", "--only-errors=1", "--save-dir=%s" % tmp_path])
    path, fig = m.plot_predictions()
    assert path.endswith("preds-probs-errors.png")
    read_png(path)
    cases, probs, truth = m.shown_preds
    assert len(cases) == 8 and (probs.argmax(axis=1) != truth.argmax(axis=1)).all()


def test_predictions_with_several_labels_a_case(digits, tmp_path, monkeypatch):
    """The AlexNet code's label matrices, (classes, N) 0/1 (Flickr's tags): a case's title
    names all its classes, each of them is a red bar, and a mistake is a top guess outside
    them. Here every digit is also labelled '0'."""
    m = model_for(["-f", str(digits[0]), "--show-preds=probs", "--only-errors=1", "--save-dir=%s" % tmp_path])
    m.style = dict(m.style, first_synonym=True)   # ImageNet's 'tabby, tabby cat' is shown as 'tabby'
    dp = m.test_data_provider
    dp.batch_meta = dict(dp.batch_meta, label_names=["%d, digit %d" % (c, c) for c in range(10)])
    epoch, batchnum, (x, y) = m.test_data_provider.get_next_batch()
    multi = np.zeros((10, y.shape[1]), np.float32)
    multi[y[0].astype(int), np.arange(y.shape[1])] = 1
    multi[0] = 1
    monkeypatch.setattr(m, "get_next_batch", lambda train=False: (epoch, batchnum, [x, multi]))
    probs_of = m.batch_probs  # the digits net itself takes one label a case
    monkeypatch.setattr(m, "batch_probs", lambda data, *a, **k: probs_of([data[0], y], *a, **k))
    path, fig = m.plot_predictions()
    cases, probs, truth = m.shown_preds
    assert truth[:, 0].all() and (truth.sum(axis=1) <= 2).all()
    top = probs.argmax(axis=1)
    assert not truth[np.arange(len(cases)), top].any() and (top != 0).all()
    for ax, t in zip(fig.axes[0::2], truth):
        assert ax.get_title() == ", ".join(str(c) for c in np.flatnonzero(t))
    assert shownet.true_classes(y, 3, 10).tolist() == [[c == int(v) for c in range(10)] for v in y[0, :3]]
    monkeypatch.setattr(m, "get_next_batch", lambda train=False: (epoch, batchnum, [x, multi[:7]]))
    with pytest.raises(StopTraining, match=r"labels are a \(7, N\) matrix, for 10 classes"):
        m.plot_predictions()


def test_multiview_predictions(cropped, tmp_path):
    m = model_for(["-f", str(cropped), "--show-preds=probs", "--save-dir=%s" % tmp_path])
    assert m.num_views() == 10  # tested on 10 views when trained; shown the same way
    path, fig = m.plot_predictions()
    read_png(path)
    cases, probs, labels = m.shown_preds
    # the average over the 10 views of each case, computed here view by view
    data = m.test_data_provider.get_next_batch()[2]
    n = data[0].shape[1] // 10
    views = [m.libmodel.features([np.ascontiguousarray(d[:, v * n + cases]) for d in data], "probs")[0]
             for v in range(10)]
    assert np.allclose(probs, np.mean(views, axis=0), atol=1e-5)
    assert "average of 10 views" in fig.texts[0].get_text()
    # each case is drawn as its centre crop, view 2 of the 10 (cases n*2 .. n*3-1)
    dp = m.test_data_provider
    drawn = np.array([ax.images[0].get_array() for ax in fig.axes[0::2]])
    centre, corner = (dp.get_plottable_data(np.ascontiguousarray(data[0][:, v * n + cases])) for v in (2, 0))
    assert np.allclose(drawn, np.clip(centre, 0, 1).reshape(drawn.shape))
    assert not np.allclose(drawn, np.clip(corner, 0, 1).reshape(drawn.shape))


# -- features, top-5 -------------------------------------------------------------------------------------------
def test_write_features(digits, tmp_path, capsys):
    h5py = pytest.importorskip("h5py")
    ck, batches = digits
    fp = tmp_path / "ftrs"
    status, out, err = run(["-f", str(ck), "--write-features=fc64", "--feature-path=%s" % fp], capsys)
    assert status == 0, err
    assert "Writing fc64 features" in err or "batch 1 of 1" in err  # progress
    assert "Wrote feature file %s" % (fp / "data_batch_5") in out + err
    labels = np.asarray(unpickle(str(batches / "data_batch_5"))["labels"], dtype=np.float32).reshape(1, -1)
    b = unpickle(str(fp / "data_batch_5"))
    assert b["data"].shape == (360, 64) and b["data"].dtype == np.float32
    assert np.array_equal(b["labels"], labels)
    meta = unpickle(str(fp / "batches.meta"))
    assert meta == {"source_model": str(ck), "num_vis": 64}
    with h5py.File(fp / "features.h5", "r") as h5:
        assert list(h5) == ["data_batch_5"]
        assert np.array_equal(h5["data_batch_5/data"][()], b["data"])
        assert np.array_equal(h5["data_batch_5/labels"][()], labels)
        assert h5.attrs["layer"] == "fc64" and h5.attrs["source_model"] == str(ck) and h5.attrs["num_vis"] == 64
    assert not [f for f in os.listdir(fp) if f.startswith(".")]  # no temporary files left


def test_write_features_unwritable_meta_is_one_line(digits, tmp_path, capsys):
    (tmp_path / "f" / "batches.meta").mkdir(parents=True)
    status, out, err = run(["-f", str(digits[0]), "--write-features=fc64", "--feature-path=%s" % (tmp_path / "f")],
                           capsys)
    assert status == 1 and "Traceback" not in out + err
    assert err.strip().splitlines()[-1].startswith("Cannot write features to '%s'" % (tmp_path / "f"))


def test_features_are_the_nets_outputs(digits, tmp_path, capsys, monkeypatch):
    """The softmax's features give the test error the checkpoint recorded; conv1's are
    N x (32 x 8 x 8). Without tqdm, a counter line shows progress."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    ck = str(digits[0])
    status, out, err = run(["-f", ck, "--write-features=probs", "--feature-path=%s" % tmp_path], capsys)
    assert status == 0, err
    assert "Writing probs features: batch 1 of 1" in err
    b = unpickle(str(tmp_path / "data_batch_5"))
    err_rate = (b["data"].argmax(axis=1) != b["labels"][0]).mean()
    recorded = IGPUModel.load_checkpoint(ck)["model_state"]["test_outputs"][-1][0]["logprob"][1]
    assert err_rate == pytest.approx(recorded, abs=1e-6)
    status, _, err = run(["-f", ck, "--write-features=conv1", "--feature-path=%s" % (tmp_path / "c")], capsys)
    assert status == 0, err
    assert unpickle(str(tmp_path / "c" / "data_batch_5"))["data"].shape == (360, 2048)


def test_top5(digits, tmp_path, capsys):
    ck = str(digits[0])
    m = model_for(["-f", ck, "--top5=probs"])
    n, right1, right5 = m.do_top5()
    recorded = IGPUModel.load_checkpoint(ck)["model_state"]["test_outputs"][-1][0]["logprob"][1]
    assert n == 360 and 1 - right1 / n == pytest.approx(recorded, abs=1e-6)
    assert "top-5 error" in capsys.readouterr().out
    # against the softmax's outputs written as features: the label among the 5 largest
    status, _, err = run(["-f", ck, "--write-features=probs", "--feature-path=%s" % tmp_path], capsys)
    assert status == 0, err
    b = unpickle(str(tmp_path / "data_batch_5"))
    top5 = np.argsort(-b["data"], axis=1, kind="stable")[:, :5]
    want5 = int((top5 == b["labels"][0][:, None]).any(axis=1).sum())
    assert right5 == want5 > right1  # (this checkpoint is not perfect at top-1: the check can fail)


# -- options and bad input --------------------------------------------------------------------------------------
def test_options_of_both_dialects():
    op = ShowConvNet.get_options_parser()
    for name in ("show_cost", "cost_idx", "show_filters", "input_idx", "no_rgb", "channels", "yuv_to_rgb",
                 "norm_filters", "show_preds", "only_errors", "write_features", "feature_path", "top5",
                 "test_batch_range", "train_batch_range", "multiview_test", "data_path", "logreg_name",
                 "pca_noise", "scalar_mean", "gpu", "load_file", "local_plane", "show_data_grad", "webcam",
                 "show_maps", "save_dir", "show"):
        assert name in op.options, name
    assert "layer_def" not in op.options and "mini" not in [o.letter for o in op.options.values()]
    # 2012's defaults, with their types (the flags and --top5 were False, not 0 or "")
    defaults = {name: op.options[name].default for name in op.options}
    for name in ("no_rgb", "yuv_to_rgb", "only_errors", "show_data_grad", "top5"):
        assert defaults[name] is False, name
    assert [defaults[k] for k in ("cost_idx", "input_idx", "channels", "local_plane", "norm_filters")] == [0] * 5
    assert all(type(defaults[k]) is int for k in ("cost_idx", "input_idx", "channels", "local_plane", "norm_filters"))
    assert [defaults[k] for k in ("show_cost", "show_filters", "show_preds", "write_features", "feature_path",
                                  "webcam", "show_maps")] == [""] * 7


def test_show_without_display(digits, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shownet, "have_display", lambda: False)
    status, _, err = run(["-f", str(digits[0]), "--show-cost=logprob", "--show=1", "--save-dir=%s" % tmp_path],
                         capsys)
    assert status == 0 and "no display" in err
    read_png(tmp_path / "cost-logprob-0.png")


def test_unsupported_option_is_said(digits, tmp_path, capsys):
    status, _, err = run(["-f", str(digits[0]), "--show-maps=conv1", "--show-cost=logprob",
                          "--save-dir=%s" % tmp_path], capsys)
    assert status == 0 and "--show-maps is not supported" in err
    status, _, err = run(["-f", str(digits[0]), "--webcam=probs"], capsys)
    assert status == 1 and err.strip().splitlines() == [err.strip()] and "--webcam is not supported" in err
    status, _, err = run(["-f", str(digits[0]), "--show-data-grad=1"], capsys)
    assert status == 1 and "startDataGrad, was commented out" in err


BAD = [
    ([None, "--show-cost=logprob"], "Option --train-range"),  # None: no -f; what 2012 named first
    ([], "Nothing to do"),
    (["--show-filters=nosuch"], "'nosuch' not defined"),
    (["--show-filters=pool1"], "has no weights"),
    (["--show-filters=fc64"], "give --channels"),
    (["--show-filters=fc64", "--channels=3"], "not a multiple of 3"),
    (["--show-filters=conv1", "--input-idx=2"], "--input-idx=2"),
    (["--show-cost=nosuch"], "'nosuch' not defined"),
    (["--show-cost=logprob", "--cost-idx=7"], "--cost-idx=7"),
    (["--show-preds=fc10"], "should be 'softmax'"),
    (["--only-errors=1"], "requires option --show-preds"),
    (["--write-features=fc64"], "requires option --feature-path"),
    (["--write-features=logprob", "--feature-path=x"], "cost layer"),
    (["--show-preds=probs", "--data-path=/no/such/dir"], "does not exist"),
    (["--no-such-option=1"], "not recognized"),
    (["--cost-idx=one", "--show-cost=logprob"], "not an integer"),
]


@pytest.mark.parametrize("args,words", BAD, ids=[" ".join(x or "no-f" for x in a) or "nothing" for a, _ in BAD])
def test_bad_input_one_line(digits, capsys, args, words):
    argv = args[1:] if args[:1] == [None] else ["-f", str(digits[0])] + args
    status, out, err = run(argv, capsys)
    assert status == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], err
    assert "Traceback" not in out + err


@pytest.fixture
def bad_files(tmp_path):
    class Hostile:
        def __reduce__(self):
            return (os.system, ("echo pwned > %s" % (tmp_path / "pwned"),))
    with open(tmp_path / "hostile", "wb") as f:
        std_pickle.dump({"model_state": Hostile(), "op": None}, f)
    pickle(str(tmp_path / "plain"), {"weights": [1, 2, 3]})
    (tmp_path / "junk").write_bytes(b"not a pickle at all")
    return tmp_path


@pytest.mark.parametrize("name,words", [("hostile", "refusing to load"), ("plain", "not a checkpoint"),
                                        ("junk", "not a pickle"), ("missing", "does not exist")])
def test_bad_checkpoint_subprocess(bad_files, name, words):
    """The command line itself: one line on stderr, status 1, nothing run from the file."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-m", "cudaconvnet.shownet", "-f", str(bad_files / name),
                        "--show-cost=logprob"], capture_output=True, text=True, env=env, cwd=str(bad_files),
                       timeout=60)
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error loading checkpoint: ")
    assert words in p.stderr and "Traceback" not in p.stdout + p.stderr
    assert not (bad_files / "pwned").exists()
