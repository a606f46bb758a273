"""SSD's multibox loss with hard-negative mining (Liu et al. 2016, §2.2 "Training objective" and
"Hard negative mining").

With ``x`` the matches of :func:`~actlab.tasks.detection.matching.match`, ``N`` the number of
matched (positive) default boxes in the batch and ``α = 1``::

    L = (L_conf + α L_loc) / N
    L_loc  = Σ_{p ∈ Pos} Σ_{k ∈ cx,cy,w,h} smoothL1(l_p^k − ĝ_p^k)          (β = 1)
    L_conf = −Σ_{p ∈ Pos} log softmax(c_p)_{label_p} − Σ_{p ∈ Neg} log softmax(c_p)_0

``Neg`` holds, per image, the ``min(ratio · n_pos, P − n_pos)`` background boxes with the largest
background cross-entropy (ratio 3, the paper's 3:1), ranked with a stable sort so ties resolve
the same way every run. ``L = 0`` when the batch has no positives.

:func:`multibox_parts` returns the numerator and ``N`` separately, for exact data-parallel
normalisation by the global batch (see :mod:`actlab.train.loss`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from actlab.tasks.detection.boxes import VARIANCES
from actlab.tasks.detection.matching import match

__all__ = ["MultiboxParts", "multibox_parts", "hard_negatives", "split_output"]


@dataclass
class MultiboxParts:
    """Sums over the batch: ``loc`` and ``conf`` losses and the number of positives."""

    loc: Tensor
    conf: Tensor
    num_pos: Tensor


def split_output(out: Tensor, num_priors: int) -> tuple[Tensor, Tensor]:
    """``(B, P, 4 + C)`` model output -> offsets ``(B, P, 4)`` and class logits ``(B, P, C)``."""
    if out.dim() != 3 or out.shape[1] != num_priors or out.shape[2] < 6:
        raise ValueError(
            f"detection output must be (B, {num_priors}, 4 + num_classes), "
            f"got shape {tuple(out.shape)}"
        )
    return out[..., :4], out[..., 4:]


def hard_negatives(bg_loss: Tensor, positive: Tensor, ratio: float) -> Tensor:
    """``(B, P)`` bool: per row the ``min(ratio · n_pos, P − n_pos)`` non-positive entries of
    ``bg_loss`` with the largest values (stable ranking)."""
    num_pos = positive.sum(dim=1, keepdim=True)
    num_neg = torch.clamp(torch.floor(ratio * num_pos), max=positive.shape[1] - num_pos)
    score = bg_loss.masked_fill(positive, -torch.inf)
    order = score.sort(dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return (rank < num_neg) & ~positive


def multibox_parts(
    out: Tensor,
    targets: Tensor,
    priors: Tensor,
    *,
    threshold: float = 0.5,
    neg_pos_ratio: float = 3.0,
    variances: tuple[float, float] = VARIANCES,
    use_difficult: bool = True,
) -> MultiboxParts:
    """Loss sums of the module doc for model output ``(B, P, 4 + C)`` and packed targets."""
    if neg_pos_ratio < 0:
        raise ValueError(f"neg_pos_ratio must be >= 0, got {neg_pos_ratio!r}")
    offsets, logits = split_output(out, priors.shape[0])
    with torch.no_grad():
        labels, loc_t = match(targets, priors, threshold, variances, use_difficult)
    positive = labels > 0
    logits = logits.float()
    ce = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")  # (B, P)
    with torch.no_grad():
        negative = hard_negatives(ce, positive, neg_pos_ratio)
    conf = (ce * (positive | negative)).sum()
    loc = F.smooth_l1_loss(offsets.float(), loc_t, reduction="none", beta=1.0).sum(-1)
    loc = (loc * positive).sum()
    return MultiboxParts(loc=loc, conf=conf, num_pos=positive.sum())
