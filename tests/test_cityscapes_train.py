"""ClassNet / U-Net on fabricated Cityscapes files, end to end through ``actlab run``."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from actlab.cli import main
from actlab.models import create_model, list_models, model_task
from actlab.sweep.store import ResultStore
from actlab.train import TrainConfig, train_model
from cityscapes_fixture import make_cityscapes


def test_classnet_is_registered_with_pluggable_layers():
    assert "classnet" in list_models(task="segmentation") and model_task("classnet") == (
        "segmentation")
    net = create_model("classnet", num_classes=19, width=0.0625, act="sau", norm="agc").eval()
    out = net(torch.randn(2, 3, 20, 36))
    assert out.shape == (2, 19, 20, 36)  # any size: logits upsampled to the input
    names = {type(m).__name__ for m in net.modules()}
    assert "BatchNorm2d" not in names and "ReLU" not in names
    acts = [m for m in net.modules() if type(m).__name__ == "SAU"]
    assert len(acts) == 2 * 4 and len({id(m) for m in acts}) == len(acts)  # one per site
    assert isinstance(net.classifier, nn.Conv2d) and net.classifier.kernel_size == (1, 1)
    with pytest.raises(ValueError, match="depth"):
        create_model("classnet", depth=5)


def test_targets_255_are_accepted_but_other_out_of_range_labels_are_not():
    from actlab.tasks import build_task

    task = build_task("segmentation", create_model("classnet", num_classes=19, width=0.0625), 19)
    task.check_targets("train", torch.tensor([[[0, 255], [18, 255]]]))
    with pytest.raises(ValueError, match="class 19"):
        task.check_targets("train", torch.tensor([[[19, 255]]]))


def test_contour_iou_refused_for_classification():
    from actlab.data import load_dataset

    splits = load_dataset("digits", max_train=8, max_val=4, max_test=4)
    with pytest.raises(ValueError, match="needs a segmentation task"):
        train_model(create_model("mlp", input_size=64), splits,
                    TrainConfig(epochs=1, batch_size=4, loss="contour_iou", device="cpu"),
                    progress=False)


SPEC = """
name = "cs-smoke-{model}"
dataset = "cityscapes"
dataset_kwargs = {{ size = [16, 32], max_train = 4, max_val = 2, max_test = 3 }}
model = "{model}"
model_kwargs = {{ width = 0.0625 {extra} }}
acts = ["relu"]
norms = ["bn"]
seeds = [0]
epochs = 1
batch_size = 2
optimizer = "adam"
lr = 1e-3
loss = "{loss}"
class_weights = "{weights}"
val_fraction = 0.25
log_layer_stats = false
"""


@pytest.mark.parametrize("model, loss, weights, extra", [
    ("classnet", "contour_iou", "none", ", depth = 3"),
    ("unet", "ce", "enet", ", depth = 2"),
])
def test_actlab_run_trains_two_steps_and_stores_miou(tmp_path, model, loss, weights, extra):
    data = tmp_path / "data"
    make_cityscapes(data, per_city=3, hw=(24, 48))
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(model=model, loss=loss, weights=weights, extra=extra))
    db = tmp_path / "r.sqlite"
    args = ["run", str(spec), "--db", str(db), "--out", str(tmp_path / "o"),
            "--data-dir", str(data), "--device", "cpu", "--no-progress"]
    assert main([*args, "--check"]) == 0
    assert main(args) == 0
    with ResultStore(db) as store:
        rows = store.list()
    assert len(rows) == 1 and rows[0].status == "done"
    row = rows[0]
    assert row.config["train"]["loss"] == loss
    m = row.metrics
    for key in ("test_miou", "val_miou", "test_pixel_acc"):
        assert 0.0 <= m[key] <= 1.0, (key, m)
    assert math.isfinite(row.history[0]["train_loss"])
    assert m["num_params"] > 0
