"""Non-maximum suppression and SSD's post-processing (decoding to per-image detections).

Greedy NMS: visit boxes by decreasing score (ties in input order); keep a box unless it overlaps a
kept box of the same group with IoU > ``threshold``. The result is the unique ``keep`` with
``keep[j] = not any(keep[i] and IoU(i, j) > t for i before j)``; it is computed here by iterating
that equation from ``keep = all`` until it stops changing, which takes at most one round per link
of the longest suppression chain (entry ``j`` is final once every earlier entry is), each round a
matrix-vector product instead of a Python loop over boxes. No torchvision operator is needed.

Post-processing follows the SSD reference: softmax scores, per class the ``pre_nms_top_k``
best boxes scoring above ``score_threshold``, per-class NMS at 0.45, then the ``max_detections``
best of the image. All classes of all images of a batch go through one batched NMS.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from actlab.tasks.detection.boxes import VARIANCES, box_iou, decode

__all__ = ["nms", "batched_nms", "sorted_blocks_nms", "Detections", "postprocess"]


def _greedy(over: Tensor) -> Tensor:
    """Fixed point of the greedy recursion for ``(..., K, K)`` bool matrices ``over[i, j]``
    ("i suppresses j"), already in score order and restricted to ``i < j`` (module doc)."""
    keep = torch.ones(over.shape[:-1], dtype=torch.bool, device=over.device)
    weights = over.to(torch.float32)
    for _ in range(over.shape[-1] + 1):
        hits = torch.matmul(keep.to(torch.float32).unsqueeze(-2), weights).squeeze(-2)
        new = hits == 0  # nobody kept before j suppresses j
        if torch.equal(new, keep):
            break
        keep = new
    return keep


def sorted_blocks_nms(boxes: Tensor, threshold: float) -> Tensor:
    """Greedy NMS of many independent groups at once: ``boxes (G, K, 4)``, each group already
    sorted by decreasing score; returns the ``(G, K)`` keep mask."""
    over = torch.triu(box_iou(boxes, boxes) > threshold, diagonal=1)
    return _greedy(over)


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
    if out.dim() != 3 or out.shape[1] != priors.shape[0] or out.shape[2] < 6:
        raise ValueError(
            f"detection output must be (B, {priors.shape[0]}, 4 + num_classes) for these "
            f"default boxes, got {tuple(out.shape)} (is the input the model's image size?)"
        )
    priors = priors.to(out.device, torch.float32)
    boxes_all = decode(out[..., :4].float(), priors, variances).clamp(0.0, 1.0)  # (B, P, 4)
    probs = torch.softmax(out[..., 4:].float(), dim=-1)[..., 1:]  # drop background
    b, p, num_cls = probs.shape
    k = min(pre_nms_top_k, p)
    # per image and class the k best boxes, sorted by decreasing score; entries under the
    # threshold come last in each group, so dropping them after NMS changes nothing above them
    top, idx = probs.transpose(1, 2).sort(dim=2, descending=True, stable=True)
    k = min(k, int((top[..., :k] > score_threshold).sum(-1).max())) if b else 0
    top, idx = top[..., :k], idx[..., :k]  # (B, C-1, k): nothing cut scores above threshold
    cand = torch.gather(boxes_all[:, None].expand(b, num_cls, p, 4), 2,
                        idx[..., None].expand(b, num_cls, k, 4))
    keep = sorted_blocks_nms(cand.reshape(b * num_cls, k, 4), nms_threshold)
    keep = keep.view(b, num_cls, k) & (top > score_threshold)
    labels = torch.arange(1, num_cls + 1, device=out.device).view(1, -1, 1).expand(b, -1, k)
    result = []
    for i in range(b):
        m = keep[i]
        s, bx, lb = top[i][m], cand[i][m], labels[i][m]
        order = torch.sort(s, descending=True, stable=True).indices[:max_detections]
        result.append(Detections(bx[order], s[order], lb[order]))
    return result
