"""Contour-IoU loss: a soft intersection-over-union of the class boundaries of a segmentation.

Deep Control (B. Ruff, 2017, arXiv:1706.03907) trains its Cityscapes networks with a loss on the
IoU of contours. Its exact formula was not available to us; this module implements the
following reading, which is differentiable and reduces to the IoU of crisp boundary bands when
the prediction is one-hot.

For class probabilities ``p = softmax(z)`` ``(N, C, H, W)`` and the one-hot target ``t``, the
*contour map* of a map ``m`` is its morphological gradient over a ``k×k`` window (``k = 3``)

    ``B(m)[x] = max_{y ∈ W(x)} m[y] − min_{y ∈ W(x)} m[y]``,

(the window is clipped at the image border), in ``[0, 1]``: 1 on the pixels within ``k // 2``
of a change of the class, 0 inside a uniform region. With ``P_c = B(p_c)``, ``T_c = B(t_c)``
and ``v`` the pixels whose whole window holds valid labels (no :data:`IGNORE_INDEX`, no label
outside ``[0, C)``), per image and class

    ``I_c = Σ_x v·P_c·T_c``,  ``U_c = Σ_x v·(P_c + T_c − P_c·T_c)``,
    ``IoU_c = (I_c + s) / (U_c + s)``  (``s = 1``: a class with no contour in either map scores 1),

and the image's loss is ``1 − mean_c IoU_c`` (the product / probabilistic-sum soft IoU of
Rahman & Wang 2016 applied to contour maps). The batch loss is the mean over images.

``max`` and ``min`` are differentiable almost everywhere (a sub-gradient at ties, as in max
pooling); the gradient reaches only the pixels that decide a window's extremes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["contour_map", "contour_iou_parts", "contour_iou_loss"]


def contour_map(m: Tensor, kernel: int = 3) -> Tensor:
    """Morphological gradient ``max_W m − min_W m`` over ``kernel×kernel`` windows of
    ``m`` ``(N, C, H, W)``; the window is clipped at the border (max-pool pads with −inf)."""
    if kernel < 2 or kernel % 2 == 0:
        raise ValueError(f"kernel must be an odd int >= 3, got {kernel!r}")
    pad = kernel // 2
    return F.max_pool2d(m, kernel, 1, pad) + F.max_pool2d(-m, kernel, 1, pad)


def _per_image(
    logits: Tensor, target: Tensor, kernel: int, smooth: float
) -> Tensor:
    if logits.dim() != 4:
        raise ValueError(f"contour IoU needs (N, C, H, W) logits, got {tuple(logits.shape)}")
    if target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}"
        )
    num_classes = logits.shape[1]
    p = torch.softmax(logits.float() if logits.dtype != torch.float64 else logits, dim=1)
    valid = (target >= 0) & (target < num_classes)
    safe = torch.where(valid, target, torch.zeros_like(target)).long()
    onehot = F.one_hot(safe, num_classes).permute(0, 3, 1, 2).to(p.dtype)
    onehot = onehot * valid.unsqueeze(1)
    vf = valid.unsqueeze(1).to(p.dtype)
    inner = -F.max_pool2d(-vf, kernel, 1, kernel // 2)  # 1 where the whole window is valid
    pc, tc = contour_map(p, kernel), contour_map(onehot, kernel)
    inter = (inner * pc * tc).sum((2, 3))
    union = (inner * (pc + tc - pc * tc)).sum((2, 3))
    iou = (inter + smooth) / (union + smooth)
    return 1.0 - iou.mean(1)


def contour_iou_parts(
    logits: Tensor, target: Tensor, kernel: int = 3, smooth: float = 1.0
) -> tuple[Tensor, Tensor]:
    """``(Σ_images loss_i, number of images)`` (see the module doc), for the loop's
    sum / global-normaliser convention."""
    per = _per_image(logits, target, kernel, smooth)
    return per.sum(), torch.tensor(float(per.numel()), device=per.device)


def contour_iou_loss(
    logits: Tensor, target: Tensor, kernel: int = 3, smooth: float = 1.0
) -> Tensor:
    """Mean over the batch of ``1 − mean_c IoU_c`` of the contour maps (module doc)."""
    return _per_image(logits, target, kernel, smooth).mean()
