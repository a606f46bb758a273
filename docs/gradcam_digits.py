"""Make docs/fig/gradcam_digits.png: Grad-CAM of tiny_cnn with ReLU, SAU and ASH on digits.

Run from the repository root (about a minute on one CPU core)::

    PYTHONPATH=src python docs/gradcam_digits.py [--out docs/fig/gradcam_digits.png]

Each network (tiny_cnn, width 16, batch norm) is trained for 3 epochs (SGD 0.05, momentum 0.9,
batch 32, seed 0) on the digits training split; the figure shows 6 test digits (the first of
classes 0-5) and, per network, the Grad-CAM map of the TRUE class at the last conv layer's
output block (``features.conv3``: conv, norm and activation) upsampled from 4x4 to 8x8.
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

import actlab  # noqa: E402,F401  (registers the layers)
from actlab.data import load_dataset  # noqa: E402
from actlab.registry import MODELS  # noqa: E402
from actlab.report.gradcam import gradcam_figure  # noqa: E402
from actlab.train import TrainConfig, train_model  # noqa: E402

ACTS = ("relu", "sau", "ash")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/fig/gradcam_digits.png")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    splits = load_dataset("digits", seed=0)
    cfg = TrainConfig(epochs=args.epochs, batch_size=32, lr=0.05, momentum=0.9, seed=0,
                      device="cpu", log_layer_stats=False)
    models = {}
    for act in ACTS:
        torch.manual_seed(0)
        model = MODELS.build("tiny_cnn", num_classes=10, act=act)
        res = train_model(model, splits, cfg, progress=False)
        print(f"{act}: test accuracy {res.metrics['test_acc']:.4f}")
        models[act] = model
    x_test, y_test = splits.test.tensors
    picks = [int((y_test == c).nonzero()[0]) for c in range(6)]
    fig = gradcam_figure(models, x_test[picks], y_test[picks], layer="features.conv3")
    fig.suptitle("Grad-CAM of the true class (last conv block), tiny_cnn on digits\n"
                 "panel title: activation: predicted class (✗ = wrong); white: digit outline",
                 fontsize=8)
    fig.savefig(args.out, dpi=200)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
