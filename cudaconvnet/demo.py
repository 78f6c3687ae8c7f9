"""The built-in demo: 2012 batch files from scikit-learn's handwritten digits, then the 2012
training loop on the CPU with layers_cfg/layers-digits.cfg.

New in this port (2012 had no demo). The digits are the 1,797 8x8 scans that scikit-learn
ships; a seeded shuffle puts 1,437 (80%) in training batches 1-4 and 360 in test batch 5.
"""
import argparse
import os
from pathlib import Path

import numpy as np

from .gpumodel import IGPUModel, StopTraining
from .util import pickle

LAYERS_CFG = Path(__file__).resolve().parent.parent / "layers_cfg"
NUM_TRAIN = 1437
TRAIN_BATCHES, TEST_BATCH = 4, 5


def make_digit_batches(dst, seed=0, num_train=NUM_TRAIN, train_batches=TRAIN_BATCHES):
    """Writes data_batch_1..train_batches (training) and data_batch_<train_batches+1> (test)
    and batches.meta into dst, in the cuda-convnet layout: data (64, N) float32 pixel values
    0-255, labels a list, data_mean (64, 1) of the training images. Returns (train, test) sizes."""
    try:
        from sklearn.datasets import load_digits  # scikit-learn ships the data set: no download
    except ImportError:
        raise StopTraining("the demo needs scikit-learn, which ships the digits (pip install scikit-learn)")

    digits = load_digits()
    images = np.asarray(digits.images, dtype=np.float32) * np.float32(255.0 / 16.0)  # 0-16 -> 0-255
    labels = np.asarray(digits.target, dtype=np.int64)
    order = np.random.RandomState(seed).permutation(len(labels))
    images, labels = images[order], labels[order]
    data = np.ascontiguousarray(images.reshape(len(labels), -1).T)  # (64, N), pixels row by row
    os.makedirs(dst, exist_ok=True)
    splits = np.array_split(np.arange(num_train), train_batches) + [np.arange(num_train, len(labels))]
    for b, idx in enumerate(splits, 1):
        pickle(os.path.join(dst, "data_batch_%d" % b),
               {"data": np.ascontiguousarray(data[:, idx]), "labels": [int(l) for l in labels[idx]],
                "batch_label": "digits batch %d of %d" % (b, len(splits))})
    pickle(os.path.join(dst, "batches.meta"),
           {"data_mean": data[:, :num_train].mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32),
            "num_vis": data.shape[0], "num_colors": 1, "img_size": 8, "label_names": [str(d) for d in range(10)],
            "num_cases_per_batch": [len(s) for s in splits], "dp_type": "cifar"})
    return num_train, len(labels) - num_train


def training_options(batches, save_path, epochs, backend, conv_kernels, seed):
    """The training loop's options for the digits net on the batches in `batches`: one test
    per epoch."""
    return ["--data-path=%s" % batches, "--save-path=%s" % save_path, "--data-provider=cifar",
            "--train-range=1-%d" % TRAIN_BATCHES, "--test-range=%d" % TEST_BATCH, "--test-freq=%d" % TRAIN_BATCHES,
            "--layer-def=%s" % (LAYERS_CFG / "layers-digits.cfg"),
            "--layer-params=%s" % (LAYERS_CFG / "layer-params-digits.cfg"), "--epochs=%d" % epochs,
            "--mini=128", "--backend=%s" % backend, "--conv-kernels=%s" % conv_kernels, "--seed=%d" % seed]


def run_demo(argv):
    ap = argparse.ArgumentParser(prog="python -m cudaconvnet.convnet --demo",
                                 description="Train layers_cfg/layers-digits.cfg on scikit-learn's handwritten digits.")
    ap.add_argument("--out", default="cudaconvnet-demo", help="folder for the batches and checkpoints")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--backend", default="numpy", help="numpy (default: the demo runs on the CPU), cuda or auto")
    ap.add_argument("--conv-kernels", default="2012",
                    help="the CUDA engine's conv kernels: 2012, gemm, winograd, implicit or fastest")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.epochs < 1:
        raise StopTraining("--epochs must be at least 1 for the demo, not %d" % args.epochs)

    layer_def = LAYERS_CFG / "layers-digits.cfg"
    if not layer_def.exists():
        raise StopTraining("the demo needs %s (run it from a checkout of the project)" % layer_def)
    batches = os.path.join(args.out, "digits-batches")
    try:
        ntrain, ntest = make_digit_batches(batches, seed=args.seed)
    except OSError as e:
        raise StopTraining("cannot write the demo's batches to '%s': %s" % (batches, e.strerror or e))
    print("Wrote handwritten-digit batches to %s: %d training digits in batches 1-%d, %d test digits in batch %d"
          % (batches, ntrain, TRAIN_BATCHES, ntest, TEST_BATCH))

    from .convnet import ConvNet
    cmd = training_options(batches, args.out, args.epochs, args.backend, args.conv_kernels, args.seed)
    op, load_dic = IGPUModel.parse_options(ConvNet.get_options_parser(), cmd)
    model = ConvNet(op, load_dic)
    model.start()

    costs = model.test_outputs[-1][0]["logprob"]  # per case, after printing
    ckpt = os.path.join(model.save_path, model.save_file)
    print()
    print("Demo finished: test error %.2f%% (%d of %d held-out digits), -log p = %.4f." %
          (100 * costs[1], round(costs[1] * ntest), ntest, costs[0]))
    print("Checkpoints: %s" % ckpt)
    print("Resume for 10 more epochs:  python -m cudaconvnet.convnet -f %s --epochs=%d" % (ckpt, args.epochs + 10))
    print("Test only:                  python -m cudaconvnet.convnet -f %s --test-only=1" % ckpt)
    print("Pictures:                   python -m cudaconvnet.shownet -f %s --show-cost=logprob --cost-idx=1 --show-filters=conv1"
          % ckpt)
    return 0
