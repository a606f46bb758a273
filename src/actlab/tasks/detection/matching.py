"""Assigning ground-truth objects to default boxes (SSD's matching strategy, Liu et al. 2016 §2.2).

For one image with objects ``g_j`` and default boxes ``d_p`` (IoU ``J[j, p]``):

1. every object gets the default box with the highest IoU (``argmax_p J[j, p]``), whatever
   that IoU is ("bipartite" step); when two objects want the same box, the later one keeps it;
2. every other default box takes the object it overlaps most, if that IoU is at least
   ``threshold`` (0.5); otherwise it is background (label 0).

Matched boxes are regressed to their object's :func:`~actlab.tasks.detection.boxes.encode`\\ d
offsets. Works on a padded batch (padding rows are never matched).
"""

from __future__ import annotations

import torch
from torch import Tensor

from actlab.tasks.detection.boxes import VARIANCES, box_iou, centres_to_corners, encode
from actlab.tasks.detection.targets import valid_mask

__all__ = ["match"]


def match(
    targets: Tensor,
    priors: Tensor,
    threshold: float = 0.5,
    variances: tuple[float, float] = VARIANCES,
    use_difficult: bool = True,
) -> tuple[Tensor, Tensor]:
    """Per-prior class labels and regression targets for a padded batch.

    Args:
        targets: ``(B, M, 6)`` packed targets (:mod:`~actlab.tasks.detection.targets`).
        priors: ``(P, 4)`` centre-form default boxes.
        threshold: IoU from which a default box is matched in step 2.
        use_difficult: when False, difficult objects are treated as absent.

    Returns:
        ``labels (B, P)`` int64 (0 = background) and ``loc (B, P, 4)`` encoded offsets (rows of
        background boxes hold finite but meaningless values).
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"matching threshold must be in (0, 1], got {threshold!r}")
    b, m, _ = targets.shape
    p = priors.shape[0]
    priors = priors.to(targets.device, targets.dtype)
    if m == 0:  # no object rows at all: everything is background
        labels = torch.zeros(b, p, dtype=torch.long, device=targets.device)
        return labels, torch.zeros(b, p, 4, dtype=targets.dtype, device=targets.device)
    valid = valid_mask(targets)
    if not use_difficult:
        valid = valid & (targets[..., 5] <= 0)
    boxes = targets[..., :4]
    iou = box_iou(boxes, centres_to_corners(priors)[None])  # (B, M, P)
    iou = torch.where(valid[..., None], iou, torch.full_like(iou, -1.0))
    best_overlap, best_obj = iou.max(dim=1)  # (B, P)
    best_prior = iou.argmax(dim=2)  # (B, M)
    rows = torch.arange(b, device=targets.device)
    for j in range(m):  # in order, so a later object wins a shared prior
        cols = best_prior[:, j]
        v = valid[:, j]
        best_overlap[rows, cols] = torch.where(v, 2.0, best_overlap[rows, cols])
        best_obj[rows, cols] = torch.where(v, j, best_obj[rows, cols])
    obj = best_obj.clamp(0, max(m - 1, 0))
    gathered = torch.gather(targets, 1, obj[..., None].expand(b, p, targets.shape[-1]))
    labels = torch.where(best_overlap >= threshold, gathered[..., 4].round().long(),
                         torch.zeros_like(obj))
    # padding rows carry PAD boxes; give background rows a harmless box before the log
    safe = torch.where((labels > 0)[..., None], gathered[..., :4], centres_to_corners(priors)[None])
    loc = encode(safe, priors, variances)
    return labels, loc
