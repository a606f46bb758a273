"""SSD300 / SSD-lite and the task interface: SSD300's default boxes and parameter count against
published figures, act/norm plug-in, SSD-lite training steps on the synthetic set with ReLU, SAU
and ASH, and DetectionTask / classification adapters as the loop will call them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from actlab.data import load_dataset
from actlab.models import create_model, list_models, model_task
from actlab.registry import ACTIVATIONS, get_act
from actlab.tasks import (
    ClassificationTask,
    DetectionTask,
    SegmentationTask,
    build_task,
    check_combination,
    list_tasks,
)
from actlab.tasks.detection import match, random_hflip_boxes, unpack_targets
from actlab.train.evaluate import evaluate as train_evaluate
from actlab.train.loop import final_metrics
from actlab.train.loss import cross_entropy_parts, loss_normaliser


def n_params(name, **kw):
    with torch.device("meta"):
        model = create_model(name, **kw)
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- SSD300
def test_ssd300_parameter_counts_match_published_figures():
    # OpenVINO model zoo "ssd300" (the authors' Caffe VOC model): 26.285 MParams
    assert n_params("ssd300", num_classes=21) == 26_285_486
    # torchvision ssd300_vgg16 (COCO, 91 classes) model card: num_params 35,641,826
    assert n_params("ssd300", num_classes=91) == 35_641_826


def test_ssd300_forward_at_batch_1():
    torch.manual_seed(0)
    model = create_model("ssd300").eval()
    assert model.priors.shape == (8732, 4)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 300, 300))
    assert out.shape == (1, 8732, 4 + 21) and torch.isfinite(out).all()
    assert "priors" not in model.state_dict()  # rebuilt, never saved


def test_ssd300_takes_any_act_and_norm():
    act = "sau" if "sau" in ACTIVATIONS else "gelu"
    model = create_model("ssd300", act=act, norm="bn", width=0.0625, num_classes=5)
    acts = [m for m in model.modules() if isinstance(m, type(get_act(act)))]
    assert len(acts) == 15 + 8  # 13 VGG convs + fc6 + fc7, and 8 extra convs
    assert len({id(m) for m in acts}) == len(acts)
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 23
    assert model(torch.randn(2, 3, 300, 300)).shape == (2, 8732, 9)


def test_detection_models_are_registered():
    assert set(list_models(task="detection")) == {"ssd300", "ssd_lite"}
    assert model_task("ssd_lite") == "detection"
    lite = create_model("ssd_lite", num_classes=4, image_size=96)
    assert lite.priors.shape[0] == (12 * 12 + 6 * 6 + 3 * 3) * 4
    with pytest.raises(ValueError, match="divisible by 32"):
        create_model("ssd_lite", image_size=80)


# ----------------------------------------------------------------------------- training smoke
TRAIN_ACTS = ["relu", "sau" if "sau" in ACTIVATIONS else "gelu",
              "ash" if "ash" in ACTIVATIONS else "mish"]


@pytest.fixture(scope="module")
def shapes():
    return load_dataset("synthetic_detection", num_samples=96, size=64, seed=0)


@pytest.mark.parametrize("act", TRAIN_ACTS)
def test_ssd_lite_loss_decreases_on_the_synthetic_set(shapes, act):
    torch.manual_seed(0)
    model = create_model("ssd_lite", num_classes=shapes.num_classes, act=act, width=8)
    task = build_task("detection", model, shapes.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    x, y = shapes.train.tensors
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(25):
        idx = torch.randperm(len(x), generator=gen)[:24]
        parts = task.loss_parts(model(x[idx]), y[idx])
        loss = parts.total / task.loss_normaliser(y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:3]), losses
    metrics = task.evaluate(model, *shapes.val.tensors, batch_size=16)
    assert set(metrics) == set(DetectionTask.eval_metrics)
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("map50", "map50_11pt", "map"))


# ----------------------------------------------------------------------------- DetectionTask
class Oracle(nn.Module):
    """Returns, for the sample whose index is the input's value, logits and offsets that
    encode its ground truth exactly (through the task's own matching)."""

    def __init__(self, priors, targets, num_classes):
        super().__init__()
        self.register_buffer("priors", priors)
        labels, loc = match(targets, priors)
        logits = torch.nn.functional.one_hot(labels, num_classes).float() * 12.0
        self.table = torch.cat([loc, logits], -1)

    def forward(self, x):
        return self.table[x.flatten().long()]


def test_a_perfect_detector_scores_map_1(shapes):
    model = create_model("ssd_lite", num_classes=4)
    _, y = shapes.test.tensors
    oracle = Oracle(model.priors, y, 4)
    task = build_task("detection", oracle, 4)
    idx = torch.arange(len(y), dtype=torch.float32).view(-1, 1, 1, 1)
    m = task.evaluate(oracle, idx, y, batch_size=7)
    assert m["map50"] == pytest.approx(1.0) and m["map50_11pt"] == pytest.approx(1.0)
    assert m["map"] == pytest.approx(1.0, abs=1e-6)
    assert m["loc_loss"] == pytest.approx(0.0, abs=1e-6)
    # the detections are the objects themselves
    dets = task.predict(oracle, idx[:3])
    for (boxes, _, labels), gt in zip(dets, unpack_targets(y[:3]), strict=True):
        order = np.lexsort(boxes.T[::-1])
        gorder = np.lexsort(gt.boxes.T[::-1])
        np.testing.assert_allclose(boxes[order], gt.boxes[gorder], atol=1e-5)
        assert labels[order].tolist() == gt.labels[gorder].tolist()


def test_detection_task_options_and_errors(shapes):
    model = create_model("ssd_lite", num_classes=4)
    with pytest.raises(ValueError, match="'priors' buffer"):
        build_task("detection", nn.Conv2d(3, 3, 1), 4)
    with pytest.raises(TypeError, match="task 'detection'.*nms_treshold"):
        build_task("detection", model, 4, nms_treshold=0.5)
    with pytest.raises(ValueError, match="not supported for detection"):
        build_task("detection", model, 4, label_smoothing=0.1)
    task = build_task("detection", model, 4, nms_threshold=0.5, neg_pos_ratio=2)
    with pytest.raises(ValueError, match="train detection labels"):
        task.check_targets("train", shapes.train.tensors[1].clone().fill_(7.0))
    with pytest.raises(ValueError, match=r"\(B, 336, 4 \+ num_classes\)"):
        task.loss_parts(torch.zeros(2, 100, 8), shapes.train.tensors[1][:2])
    with pytest.raises(ValueError, match="'flip' or none"):
        task.build_augment("crop4")
    keys = DetectionTask.metric_keys()
    assert "test_map50" in keys and "val_loss" in keys and "train_conf_loss" in keys
    assert DetectionTask.primary_metric == "map50" and DetectionTask.higher_is_better


def test_hflip_moves_boxes_with_the_pixels():
    from actlab.data.shapes_detection import make_detection_shapes
    from actlab.tasks.detection import pack_targets

    imgs, objs = make_detection_shapes(6, 32, seed=2)
    x, y = torch.from_numpy(imgs), pack_targets(objs)
    fx, fy = random_hflip_boxes(x, y, p=1.0)
    torch.testing.assert_close(fx, x.flip(-1))
    valid = y[..., 4] >= 0
    torch.testing.assert_close(fy[..., 0][valid], 1 - y[..., 2][valid])
    torch.testing.assert_close(fy[..., 2][valid], 1 - y[..., 0][valid])
    assert torch.equal(fy[~valid], y[~valid])
    bx, by = random_hflip_boxes(*random_hflip_boxes(x, y, p=1.0), p=1.0)
    torch.testing.assert_close(by, y)
    gen = torch.Generator().manual_seed(0)
    hx, _ = random_hflip_boxes(x, y, p=0.5, generator=gen)
    flipped = [torch.equal(hx[i], x[i].flip(-1)) for i in range(6)]
    assert 0 < sum(flipped) < 6


# ----------------------------------------------------------------------------- interface
def test_task_registry_and_combinations():
    assert list_tasks() == ["classification", "detection", "segmentation", "seq2seq"]
    check_combination("detection", "detection", "detection")
    check_combination("classification", "classification_1d", "classification")
    with pytest.raises(ValueError, match="task 'detection' cannot train on a classification"):
        check_combination("detection", "detection", "classification")
    with pytest.raises(ValueError, match="needs a detection model, got a classification model"):
        check_combination("detection", "classification", "detection")
    with pytest.raises(KeyError, match="unknown task"):
        check_combination("translation", "seq2seq", "seq2seq")


@pytest.mark.parametrize("cls", [ClassificationTask, SegmentationTask])
def test_cross_entropy_adapters_equal_the_existing_code(cls):
    gen = torch.Generator().manual_seed(0)
    c = 5
    shape = (16,) if cls is ClassificationTask else (4, 6, 6)
    y = torch.randint(-1, c, shape, generator=gen)
    out = torch.randn(shape[0], c, *shape[1:], generator=gen)
    w = torch.rand(c, generator=gen) + 0.5
    task = cls(c, class_weight=w, label_smoothing=0.1)
    parts = task.loss_parts(out, y)
    ref_sum, ref_norm = cross_entropy_parts(out, y, w, 0.1)
    torch.testing.assert_close(parts.total, ref_sum)
    torch.testing.assert_close(parts.normaliser, ref_norm)
    torch.testing.assert_close(task.loss_normaliser(y), loss_normaliser(y, c, w))
    valid = (y >= 0) & (y < c)
    acc = ((out.argmax(1) == y) & valid).sum() / valid.sum()
    name = "acc" if cls is ClassificationTask else "pixel_acc"
    assert task.train_metrics(parts.stats.tolist())[name] == pytest.approx(acc.item())
    model = nn.Conv2d(c, c, 1) if cls is SegmentationTask else nn.Linear(c, c)
    x = torch.randn(shape[0], c, *shape[1:], generator=gen)
    if cls is ClassificationTask:
        x = x.reshape(shape[0], c)
    assert task.evaluate(model, x, y, batch_size=3) == train_evaluate(
        model, x, y, task=cls.name, num_classes=c, batch_size=3, class_weight=w)
    # the final-metric keys are those the loop reports today
    assert set(cls.metric_keys()) == set(final_metrics([], cls.name, 0)) - {"num_params"}
    with pytest.raises(TypeError, match="integer"):
        task.check_targets("train", y.float())
