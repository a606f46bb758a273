"""Evaluation metrics and class weights (pure functions on tensors).

Classification: top-1 accuracy. Segmentation, from the confusion matrix ``M`` (rows: true
class, columns: predicted class, pixels whose target is outside ``[0, C)`` ignored):

* pixel accuracy ``= trace(M) / sum(M)``, pixel error ``= 1 - pixel accuracy``;
* ``IoU_c = M_cc / (sum_j M_cj + sum_i M_ic - M_cc)`` and mIoU is the mean of ``IoU_c`` over the
  classes present in the prediction or the target (non-empty union); absent classes are skipped.
  Ignored pixels (target 255) count for neither, whatever their prediction. This is the
  convention of ``torchmetrics`` (1.9, checked in the tests)
  ``MulticlassJaccardIndex(average="macro", ignore_index=255)``; the other one, an absent class
  scoring 0 (the mean of its ``average="none"`` output), is
  ``nan_to_num(iou_per_class(cm)).mean()`` (see :func:`iou_per_class`). Pixel accuracy equals
  ``MulticlassAccuracy(average="micro", ignore_index=255)``.

Class weights of ENet (Paszke et al., "ENet: A Deep Neural Network Architecture for Real-Time
Semantic Segmentation", 2016): ``w_c = 1 / ln(k + p_c)`` with ``k = 1.02`` and ``p_c`` the
frequency of class ``c`` among the (valid) training labels; here normalised to mean 1.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "confusion_matrix",
    "segmentation_scores",
    "iou_per_class",
    "enet_class_weights",
    "class_frequencies",
]


def _check_classes(num_classes: int) -> None:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """``(C, C)`` int64 counts ``M[t, p]`` of (target ``t``, prediction ``p``) pairs.

    ``pred`` and ``target`` are integer tensors of the same shape; entries whose target lies
    outside ``[0, num_classes)`` (e.g. an ignore label of -100 or 255) are not counted.
    Computed with one ``bincount`` on the tensors' device (no host sync).
    """
    _check_classes(num_classes)
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    t = target.reshape(-1).long()
    p = pred.reshape(-1).long()
    keep = (t >= 0) & (t < num_classes)
    idx = t[keep] * num_classes + p[keep].clamp(0, num_classes - 1)
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def segmentation_scores(cm: Tensor) -> dict[str, float]:
    """``pixel_acc``, ``pixel_error`` and ``miou`` of a confusion matrix (see module doc).

    All three are NaN for an empty matrix (no valid pixels).
    """
    if cm.dim() != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square (C, C), got {tuple(cm.shape)}")
    m = cm.detach().to("cpu", torch.float64)
    total = m.sum().item()
    if total == 0:
        nan = math.nan
        return {"pixel_acc": nan, "pixel_error": nan, "miou": nan}
    tp = m.diagonal()
    union = m.sum(0) + m.sum(1) - tp
    present = union > 0
    acc = (tp.sum() / total).item()
    miou = (tp[present] / union[present]).mean().item()
    return {"pixel_acc": acc, "pixel_error": 1.0 - acc, "miou": miou}


def iou_per_class(cm: Tensor) -> Tensor:
    """``(C,)`` float64 ``IoU_c`` of a confusion matrix; NaN for a class absent from both the
    prediction and the target (empty union)."""
    if cm.dim() != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square (C, C), got {tuple(cm.shape)}")
    m = cm.detach().to("cpu", torch.float64)
    tp = m.diagonal()
    union = m.sum(0) + m.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, math.nan))


def class_frequencies(labels: Tensor, num_classes: int) -> Tensor:
    """Frequency ``p_c`` of each class among the labels in ``[0, C)`` (float64, sums to 1)."""
    _check_classes(num_classes)
    t = labels.reshape(-1).long()
    t = t[(t >= 0) & (t < num_classes)]
    if t.numel() == 0:
        raise ValueError("no valid labels to compute class frequencies from")
    counts = torch.bincount(t, minlength=num_classes).to(torch.float64)
    return counts / counts.sum()


def enet_class_weights(labels: Tensor, num_classes: int, k: float = 1.02) -> Tensor:
    """ENet class weights ``1 / ln(k + p_c)``, normalised to mean 1 (float32, on CPU).

    ``k > 1`` bounds the weights: a class absent from ``labels`` gets ``1 / ln(k)``
    (≈ 50.5 before normalisation for ``k = 1.02``).
    """
    if not k > 1:
        raise ValueError(f"k must be > 1 so that ln(k + p) > 0, got {k!r}")
    p = class_frequencies(labels.cpu(), num_classes)
    w = 1.0 / torch.log(k + p)
    return (w / w.mean()).to(torch.float32)
