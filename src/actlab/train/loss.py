"""Cross-entropy as a (sum, normaliser) pair, for exact batch splitting across processes.

For logits ``z`` of shape ``(N, C, *spatial)`` or ``(N, C)``, integer targets ``t`` and class
weights ``w`` (all ones when not given), element ``i`` contributes

    ``l_i = (1-s) w_{t_i} (-log q_{i,t_i}) + s Σ_c w_c (-log q_{ic}) / C``, ``q_i = softmax(z_i)``

(``s`` the label smoothing), and the batch loss is ``Σ_i l_i / Σ_i w_{t_i}``: exactly
``torch.nn.functional.cross_entropy(..., weight=w, label_smoothing=s, reduction="mean")``.
Returning the numerator and the denominator separately lets a data-parallel step divide every
shard's sum by the denominator of the GLOBAL batch, so that the averaged gradient equals the
gradient of the single-process loss. Targets < 0 (e.g. -100) are ignored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cross_entropy_parts", "loss_normaliser"]


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
