"""Cross-entropy as a (sum, normaliser) pair, for exact batch splitting across processes.

For logits ``z`` of shape ``(N, C, *spatial)`` or ``(N, C)``, integer targets ``t`` and class
weights ``w`` (all ones when not given), element ``i`` contributes

    ``l_i = (1-s) w_{t_i} (-log q_{i,t_i}) + s Σ_c w_c (-log q_{ic}) / C``, ``q_i = softmax(z_i)``

(``s`` the label smoothing), and the batch loss is ``Σ_i l_i / Σ_i w_{t_i}``: exactly
``torch.nn.functional.cross_entropy(..., weight=w, label_smoothing=s, reduction="mean")``.
Returning the numerator and the denominator separately lets a data-parallel step divide every
shard's sum by the denominator of the GLOBAL batch, so that the averaged gradient equals the
gradient of the single-process loss. Targets outside ``[0, C)`` (e.g. -100, or
:data:`IGNORE_INDEX` = 255 of Cityscapes) are ignored.

The contour-IoU loss (``TrainConfig.loss = "contour_iou"``) is in :mod:`actlab.train.contour`;
:func:`criterion_parts` / :func:`criterion_normaliser` pick the criterion by name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cross_entropy_parts", "loss_normaliser", "criterion_parts", "criterion_normaliser",
           "IGNORE_INDEX", "LOSSES"]

#: The label of pixels that no loss or metric counts (Cityscapes' convention).
IGNORE_INDEX = 255

#: Names of the training criteria (``TrainConfig.loss``).
LOSSES = ("ce", "contour_iou")


def _valid(target: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    valid = (target >= 0) & (target < num_classes)
    return valid, torch.where(valid, target, torch.zeros_like(target))


def loss_normaliser(target: Tensor, num_classes: int, weight: Tensor | None = None) -> Tensor:
    """``Σ_i w_{t_i}`` over the valid targets (the count of valid targets without weights)."""
    valid, safe = _valid(target, num_classes)
    if weight is None:
        return valid.sum().to(torch.float32)
    return (weight[safe] * valid).sum()


def cross_entropy_parts(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """``(Σ_i l_i, Σ_i w_{t_i})`` over the valid elements of the batch (see module doc).

    The sum is computed in float32 even under autocast.
    """
    if logits.dim() < 2:
        raise ValueError(f"logits must be (N, C, ...), got shape {tuple(logits.shape)}")
    if target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)} "
            "(expected (N,) for (N, C) logits or (N, *spatial) for (N, C, *spatial))"
        )
    num_classes = logits.shape[1]
    valid, safe = _valid(target, num_classes)
    per = F.cross_entropy(
        logits.float(), safe, weight=weight, label_smoothing=label_smoothing, reduction="none"
    )
    total = (per * valid).sum()
    return total, loss_normaliser(target, num_classes, weight)


def criterion_normaliser(
    loss: str, target: Tensor, num_classes: int, weight: Tensor | None = None
) -> Tensor:
    """Denominator of criterion ``loss`` over a (global) batch: the (weighted) count of valid
    targets for ``"ce"``, the number of samples for ``"contour_iou"`` (a per-image loss)."""
    if loss == "ce":
        return loss_normaliser(target, num_classes, weight)
    if loss == "contour_iou":
        return torch.tensor(float(len(target)), device=target.device)
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def criterion_parts(
    loss: str,
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """``(sum, normaliser)`` of criterion ``loss`` (see :data:`LOSSES`) on one batch.

    ``weight`` and ``label_smoothing`` apply to cross-entropy only.
    """
    if loss == "ce":
        return cross_entropy_parts(logits, target, weight, label_smoothing)
    if loss == "contour_iou":
        from actlab.train.contour import contour_iou_parts

        return contour_iou_parts(logits, target)
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
