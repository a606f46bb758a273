"""Segmentation metrics, loss and class weights with the ignore label 255, against
torchmetrics and torch's own cross-entropy; the contour-IoU loss against a naive loop."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from actlab.train.contour import contour_iou_loss, contour_iou_parts, contour_map
from actlab.train.loss import IGNORE_INDEX, criterion_normaliser, criterion_parts
from actlab.train.metrics import (
    class_frequencies,
    confusion_matrix,
    enet_class_weights,
    iou_per_class,
    segmentation_scores,
)

tm = pytest.importorskip("torchmetrics.classification")

C = 5


def _batch(seed: int, absent: tuple[int, ...] = ()):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, C, (3, 9, 11), generator=g)
    pred = torch.randint(0, C, (3, 9, 11), generator=g)
    other = min(set(range(C)) - set(absent))
    for c in absent:  # class c absent from target and from the prediction at counted pixels
        target[target == c] = other
        pred[pred == c] = other
    ignore = torch.rand(target.shape, generator=g) < 0.2
    target[ignore] = IGNORE_INDEX
    if absent:  # predicted ONLY at ignored pixels: must not make the class "present"
        pred[ignore & (torch.rand(target.shape, generator=g) < 0.5)] = absent[0]
    return pred, target


@pytest.mark.parametrize("seed, absent", [(0, ()), (1, (2,)), (2, (0, 4)), (3, (1, 3))])
def test_miou_and_pixel_acc_match_torchmetrics(seed, absent):
    pred, target = _batch(seed, absent)
    ours = segmentation_scores(confusion_matrix(pred, target, C))
    jac = tm.MulticlassJaccardIndex(num_classes=C, average="macro", ignore_index=IGNORE_INDEX)
    acc = tm.MulticlassAccuracy(num_classes=C, average="micro", ignore_index=IGNORE_INDEX)
    assert ours["miou"] == pytest.approx(float(jac(pred, target)), abs=1e-6)
    assert ours["pixel_acc"] == pytest.approx(float(acc(pred, target)), abs=1e-6)
    # naive pixel accuracy over the counted pixels only
    keep = target != IGNORE_INDEX
    assert ours["pixel_acc"] == pytest.approx(float((pred[keep] == target[keep]).double().mean()))


@pytest.mark.parametrize("seed, absent", [(1, (2,)), (2, (0, 4))])
def test_absent_class_conventions(seed, absent):
    """Ours and torchmetrics' macro skip classes absent from prediction and target; the
    'absent scores 0' convention is the mean of torchmetrics' per-class output."""
    pred, target = _batch(seed, absent)
    per = iou_per_class(confusion_matrix(pred, target, C))
    tm_none = tm.MulticlassJaccardIndex(num_classes=C, average="none",
                                        ignore_index=IGNORE_INDEX)(pred, target).double()
    assert torch.isnan(per[list(absent)]).all()
    present = ~torch.isnan(per)
    torch.testing.assert_close(per[present], tm_none[present], rtol=0, atol=1e-6)
    skip = segmentation_scores(confusion_matrix(pred, target, C))["miou"]
    assert skip == pytest.approx(float(per[present].mean()))
    zero = float(torch.nan_to_num(per).mean())
    assert zero == pytest.approx(float(tm_none.mean()), abs=1e-6)
    assert zero < skip  # the two conventions differ whenever a class is absent


def test_cross_entropy_ignores_255_like_torch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, C, 6, 7, generator=g)
    target = torch.randint(0, C, (2, 6, 7), generator=g)
    target[0, :2] = IGNORE_INDEX
    w = torch.rand(C, generator=g) + 0.5
    for weight in (None, w):
        total, norm = criterion_parts("ce", logits, target, weight)
        ref = F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE_INDEX)
        torch.testing.assert_close(total / norm, ref, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(criterion_normaliser("ce", target, C, weight).double(),
                                   norm.double())


def test_enet_weights_skip_ignored_label():
    labels = torch.tensor([[0, 0, 0, 1], [255, 255, 255, 2]])
    p = class_frequencies(labels, 3)
    torch.testing.assert_close(p, torch.tensor([0.6, 0.2, 0.2], dtype=torch.float64))
    w = 1 / torch.log(1.02 + p)
    torch.testing.assert_close(enet_class_weights(labels, 3).double(), w / w.mean(),
                               rtol=1e-6, atol=0)


# ---- contour IoU ------------------------------------------------------------------------------
def _naive_contour_iou(logits: torch.Tensor, target: torch.Tensor, k: int = 3, s: float = 1.0):
    """Loop over images, classes and pixels (float64): module-doc formula, written directly."""
    n, c, h, w = logits.shape
    p = torch.softmax(logits, 1)
    r = k // 2
    losses = []
    for i in range(n):
        def win(y, x):
            return [(yy, xx) for yy in range(max(0, y - r), min(h, y + r + 1))
                    for xx in range(max(0, x - r), min(w, x + r + 1))]

        def valid(y, x, i=i):
            return 0 <= int(target[i, y, x]) < c

        ious = []
        for cls in range(c):
            inter = union = 0.0
            for y in range(h):
                for x in range(w):
                    cells = win(y, x)
                    if not all(valid(*q) for q in cells):
                        continue
                    pv = [p[i, cls, yy, xx] for yy, xx in cells]
                    tv = [1.0 if int(target[i, yy, xx]) == cls else 0.0 for yy, xx in cells]
                    bp = max(pv) - min(pv)
                    bt = max(tv) - min(tv)
                    inter = inter + bp * bt
                    union = union + bp + bt - bp * bt
            ious.append((inter + s) / (union + s))
        losses.append(1 - sum(ious) / c)
    return torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in losses]).mean()


def _seg_case(seed: int):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 5, 6), generator=g)
    target[1, 0, :3] = IGNORE_INDEX
    target[0, 4, 5] = -100
    return logits, target


@pytest.mark.parametrize("seed", [0, 1])
def test_contour_iou_matches_naive_loop(seed):
    logits, target = _seg_case(seed)
    ours = contour_iou_loss(logits, target)
    torch.testing.assert_close(ours, _naive_contour_iou(logits, target), rtol=1e-12, atol=1e-12)
    total, norm = contour_iou_parts(logits, target)
    torch.testing.assert_close(total / norm, ours)
    assert float(criterion_normaliser("contour_iou", target, 3)) == 2.0


def test_contour_iou_gradcheck_float64():
    logits, target = _seg_case(2)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: contour_iou_loss(z, target), (logits,))
    assert torch.autograd.gradcheck(lambda z: criterion_parts("contour_iou", z, target)[0],
                                    (logits,))


def test_contour_iou_perfect_and_crisp():
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, 2:6, 3:7] = 1
    good = F.one_hot(target, 2).permute(0, 3, 1, 2).double() * 40.0
    assert float(contour_iou_loss(good, target)) == pytest.approx(0.0, abs=1e-12)
    shifted = torch.roll(good, 2, dims=3)
    assert float(contour_iou_loss(shifted, target)) > 0.3
    # contour map of a one-hot map: 1 within one pixel of the edge, 0 elsewhere
    band = contour_map(good[:, 1:] / 40.0)[0, 0]
    assert band[0, 0] == 0 and band[4, 4] == 0 and band[2, 3] == 1 and band[1, 2] == 1
    assert not math.isnan(float(contour_iou_loss(good, torch.full_like(target, 255))))
