"""Box geometry: corner/centre conversion, pairwise IoU, and SSD's offset encoding.

Boxes are ``(..., 4)`` tensors, either in *corner* form ``(x1, y1, x2, y2)`` or in *centre* form
``(cx, cy, w, h)``; coordinates are continuous (no +1 pixel convention), normally normalised to
``[0, 1]`` by the image size.

SSD encoding (Liu et al. 2016, "SSD: Single Shot MultiBox Detector", Eq. 2, with the variances of
its reference implementation): for a ground-truth box ``g`` and a default box ``d``, both in
centre form, and variances ``(v_c, v_s)``::

    l_cx = (g_cx - d_cx) / (v_c d_w)      l_w = log(g_w / d_w) / v_s
    l_cy = (g_cy - d_cy) / (v_c d_h)      l_h = log(g_h / d_h) / v_s

:func:`decode` is the exact inverse.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["corners_to_centres", "centres_to_corners", "box_area", "box_iou", "encode", "decode",
           "VARIANCES"]

#: the (centre, size) variances of the SSD reference implementation
VARIANCES = (0.1, 0.2)


def corners_to_centres(boxes: Tensor) -> Tensor:
    """``(x1, y1, x2, y2) -> (cx, cy, w, h)``."""
    lo, hi = boxes[..., :2], boxes[..., 2:]
    return torch.cat([(lo + hi) / 2, hi - lo], dim=-1)


def centres_to_corners(boxes: Tensor) -> Tensor:
    """``(cx, cy, w, h) -> (x1, y1, x2, y2)``."""
    c, s = boxes[..., :2], boxes[..., 2:]
    return torch.cat([c - s / 2, c + s / 2], dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """Area of corner-form boxes (0 for degenerate ones)."""
    wh = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU ``|a ∩ b| / |a ∪ b|`` of corner-form boxes: ``(..., N, 4) x (..., M, 4) ->
    (..., N, M)``; 0 where the union is empty."""
    lo = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    hi = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    wh = (hi - lo).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[..., :, None] + box_area(b)[..., None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny),
                       torch.zeros_like(inter))


def _check_variances(variances: tuple[float, float]) -> tuple[float, float]:
    if len(variances) != 2 or not all(v > 0 for v in variances):
        raise ValueError(f"variances must be two positive numbers, got {variances!r}")
    return float(variances[0]), float(variances[1])


def encode(boxes: Tensor, priors: Tensor, variances: tuple[float, float] = VARIANCES) -> Tensor:
    """Offsets of corner-form ``boxes`` relative to centre-form ``priors`` (module doc).

    ``boxes`` broadcasts against ``priors`` ``(P, 4)``; boxes must have positive sizes.
    """
    vc, vs = _check_variances(variances)
    g = corners_to_centres(boxes)
    centre = (g[..., :2] - priors[..., :2]) / (vc * priors[..., 2:])
    size = torch.log(g[..., 2:] / priors[..., 2:]) / vs
    return torch.cat([centre, size], dim=-1)


def decode(offsets: Tensor, priors: Tensor, variances: tuple[float, float] = VARIANCES) -> Tensor:
    """Corner-form boxes from predicted ``offsets`` and centre-form ``priors`` (inverse of
    :func:`encode`)."""
    vc, vs = _check_variances(variances)
    centre = priors[..., :2] + offsets[..., :2] * vc * priors[..., 2:]
    size = priors[..., 2:] * torch.exp(offsets[..., 2:] * vs)
    return centres_to_corners(torch.cat([centre, size], dim=-1))
