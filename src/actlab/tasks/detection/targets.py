"""The packed target format of detection datasets: one float tensor per split.

A detection split is a ``TensorDataset(images, targets)`` like every other split, so the training
loop can index, shard and move it as it does labels. ``targets`` has shape ``(N, M, 6)``: up to
``M`` objects per image, one row each, with the columns of :data:`COLUMNS`:

``x1, y1, x2, y2`` the corner-form box normalised by the image width/height (``[0, 1]``),
``label`` the class index in ``[1, num_classes)`` (0 is the background class of the model,
never an object), ``difficult`` 1.0 for objects that VOC marks difficult, else 0.0.

Rows with ``label < 0`` (:data:`PAD`) are padding. Class indices are small integers and are
exact in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["COLUMNS", "PAD", "ImageTargets", "pack_targets", "unpack_targets", "check_targets",
           "valid_mask"]

COLUMNS = ("x1", "y1", "x2", "y2", "label", "difficult")
PAD = -1.0


@dataclass
class ImageTargets:
    """The objects of one image: ``boxes (K, 4)`` corner form, ``labels (K,)`` int64,
    ``difficult (K,)`` bool (numpy arrays)."""

    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def pack_targets(objects: Sequence[ImageTargets], max_objects: int | None = None) -> Tensor:
    """``(N, M, 6)`` float32 tensor of :data:`COLUMNS`; ``M = max_objects`` or the largest count
    (at least 1). Raises if an image has more than ``max_objects`` objects."""
    most = max((len(o) for o in objects), default=0)
    m = max(1, most) if max_objects is None else int(max_objects)
    if most > m:
        raise ValueError(f"an image has {most} objects but max_objects={m}")
    out = torch.full((len(objects), m, len(COLUMNS)), PAD, dtype=torch.float32)
    for i, o in enumerate(objects):
        k = len(o)
        if k:
            out[i, :k, :4] = torch.as_tensor(np.asarray(o.boxes, np.float64).reshape(k, 4))
            out[i, :k, 4] = torch.as_tensor(np.asarray(o.labels, np.float64))
            out[i, :k, 5] = torch.as_tensor(np.asarray(o.difficult, np.float64))
    return out


def valid_mask(targets: Tensor) -> Tensor:
    """``(..., M)`` bool: rows that hold an object (``label >= 0``)."""
    return targets[..., 4] >= 0


def unpack_targets(targets: Tensor) -> list[ImageTargets]:
    """Inverse of :func:`pack_targets` (padding dropped), as float64/int64/bool numpy arrays."""
    t = targets.detach().to("cpu", torch.float64).numpy()
    out = []
    for rows in t:
        rows = rows[rows[:, 4] >= 0]
        out.append(ImageTargets(rows[:, :4].copy(), rows[:, 4].astype(np.int64),
                                rows[:, 5] > 0))
    return out


def check_targets(name: str, targets: Tensor, num_classes: int) -> None:
    """One-line errors for targets that are not in the packed format of ``num_classes``."""
    if not targets.dtype.is_floating_point:
        raise TypeError(f"{name} detection targets must be a float tensor, got {targets.dtype}")
    if targets.dim() != 3 or targets.shape[-1] != len(COLUMNS):
        raise ValueError(
            f"{name} detection targets must be (N, M, {len(COLUMNS)}) rows of {COLUMNS}, "
            f"got shape {tuple(targets.shape)}"
        )
    rows = targets[valid_mask(targets)]
    if not len(rows):
        return
    labels = rows[:, 4]
    if bool((labels != labels.round()).any()) or int(labels.min()) < 1 \
            or int(labels.max()) >= num_classes:
        raise ValueError(
            f"{name} detection labels must be integers in [1, {num_classes}) (0 is background), "
            f"got values in [{float(labels.min())}, {float(labels.max())}]"
        )
    if bool(((rows[:, 2:4] - rows[:, 0:2]) <= 0).any()):
        raise ValueError(f"{name} detection targets hold a box with x2 <= x1 or y2 <= y1")
