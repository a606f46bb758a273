"""Non-maximum suppression and SSD's post-processing (decoding to per-image detections).

Greedy NMS: visit boxes by decreasing score (ties in input order); keep a box unless it overlaps a
kept box of the same group with IoU > ``threshold``. The result is the unique ``keep`` with
``keep[j] = not any(keep[i] and IoU(i, j) > t for i before j)``; it is computed here by iterating
that equation from ``keep = all`` until it stops changing, which takes at most one round per link
of the longest suppression chain (entry ``j`` is final once every earlier entry is), each round a
matrix-vector product instead of a Python loop over boxes. No torchvision operator is needed.

Post-processing follows the SSD reference: softmax scores, per class the ``pre_nms_top_k``
best boxes scoring above ``score_threshold``, per-class NMS at 0.45, then the ``max_detections``
best of the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from actlab.tasks.detection.boxes import VARIANCES, box_iou, decode

__all__ = ["nms", "batched_nms", "Detections", "postprocess"]


def _greedy(iou_over: Tensor) -> Tensor:
    """Fixed point of the greedy recursion on a ``(K, K)`` bool matrix already in score order
    and restricted to ``i < j`` pairs (see module doc)."""
    keep = torch.ones(iou_over.shape[0], dtype=torch.bool, device=iou_over.device)
    over = iou_over.to(torch.float32)
    for _ in range(iou_over.shape[0] + 1):
        new = (keep.to(torch.float32) @ over) == 0  # nobody kept before j suppresses j
        if torch.equal(new, keep):
            break
        keep = new
    return keep


def batched_nms(boxes: Tensor, scores: Tensor, groups: Tensor, threshold: float) -> Tensor:
    """Indices of the boxes kept by greedy NMS run separately within each group, by decreasing
    score. ``boxes (K, 4)`` corner form, ``scores (K,)``, ``groups (K,)`` integers."""
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    b, g = boxes[order], groups[order]
    over = (box_iou(b, b) > threshold) & (g[:, None] == g[None, :])
    over = torch.triu(over, diagonal=1)
    return order[_greedy(over)]


def nms(boxes: Tensor, scores: Tensor, threshold: float) -> Tensor:
    """Greedy NMS of one group (see :func:`batched_nms`)."""
    return batched_nms(boxes, scores, torch.zeros_like(scores, dtype=torch.long), threshold)


@dataclass
class Detections:
    """One image's detections: ``boxes (K, 4)`` corner form in ``[0, 1]``, ``scores (K,)``,
    ``labels (K,)`` int64 classes in ``[1, C)``, sorted by decreasing score."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor


@torch.no_grad()
def postprocess(
    out: Tensor,
    priors: Tensor,
    *,
    score_threshold: float = 0.01,
    nms_threshold: float = 0.45,
    pre_nms_top_k: int = 200,
    max_detections: int = 200,
    variances: tuple[float, float] = VARIANCES,
) -> list[Detections]:
    """Detections of every image of a ``(B, P, 4 + C)`` output (module doc)."""
    priors = priors.to(out.device, torch.float32)
    boxes_all = decode(out[..., :4].float(), priors, variances).clamp(0.0, 1.0)
    probs = torch.softmax(out[..., 4:].float(), dim=-1)[..., 1:]  # drop background
    num_cls = probs.shape[-1]
    k = min(pre_nms_top_k, probs.shape[1])
    result = []
    for boxes, p in zip(boxes_all, probs, strict=True):
        top, idx = p.t().topk(k, dim=1)  # (C-1, k) per-class best
        labels = torch.arange(1, num_cls + 1, device=out.device)[:, None].expand_as(idx)
        keep = top > score_threshold
        top, idx, labels = top[keep], idx[keep], labels[keep]
        cand = boxes[idx]
        kept = batched_nms(cand, top, labels, nms_threshold)[:max_detections]
        result.append(Detections(cand[kept], top[kept], labels[kept]))
    return result
