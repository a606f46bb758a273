"""From images + object lists to detection :class:`DatasetSplits` (``task="detection"``).

The same steps as :func:`actlab.data.prepare.prepare_splits`, for targets that are object lists
rather than labels: a test split carved with the fixed ``TEST_SEED`` when the dataset has none,
a uniform validation carve with ``seed``, optional ``max_*`` subsets, a fixed rescale and
per-channel standardisation with the statistics of the final training split. Targets are packed
into the ``(N, M, 6)`` rows of :mod:`actlab.tasks.detection.targets` (``M`` = the most objects
of any image in the dataset, or ``max_objects``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from actlab.data.base import DatasetSplits
from actlab.data.prepare import TEST_SEED, channel_stats, resolve_dtype
from actlab.data.split import fraction_to_size, split_indices
from actlab.tasks.detection.targets import ImageTargets, pack_targets

__all__ = ["DetectionSource", "prepare_detection_splits"]


@dataclass
class DetectionSource:
    """Objects of every image of one official split, and ``fetch(indices) -> (k, C, H, W)``
    raw images (decoded only when asked for)."""

    objects: list[ImageTargets]
    fetch: Callable[[np.ndarray], np.ndarray]

    def __len__(self) -> int:
        return len(self.objects)


def _subset(idx: np.ndarray, limit: int | None, seed: int, what: str) -> np.ndarray:
    if limit is None:
        return idx
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ValueError(f"{what} must be a positive int or None, got {limit!r}")
    if limit >= len(idx):
        return idx
    _, keep = split_indices(None, int(limit), seed, n=len(idx))
    return idx[keep]


def _materialise(source: DetectionSource, idx: np.ndarray, scale: float, dtype: torch.dtype,
                 max_objects: int) -> TensorDataset:
    parts = [torch.from_numpy(np.ascontiguousarray(source.fetch(idx[s:s + 512])))
             for s in range(0, len(idx), 512)]
    if not parts:
        raise ValueError("cannot build an empty detection split")
    x = torch.cat(parts).to(dtype)
    if scale != 1.0:
        x.mul_(scale)
    y = pack_targets([source.objects[i] for i in idx], max_objects)
    return TensorDataset(x, y)


def prepare_detection_splits(
    name: str,
    train: DetectionSource,
    test: DetectionSource | None,
    *,
    class_names: Sequence[str],
    val_fraction: float = 0.1,
    seed: int = 0,
    test_fraction: float = 0.2,
    max_train: int | None = None,
    max_val: int | None = None,
    max_test: int | None = None,
    scale: float = 1.0,
    normalize: bool = True,
    dtype: torch.dtype | str = torch.float32,
    max_objects: int | None = None,
    meta: dict[str, Any] | None = None,
) -> DatasetSplits:
    """Detection splits (module doc); ``class_names[0]`` is the background class."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    dtype = resolve_dtype(dtype)
    if test is None:
        n_test = fraction_to_size(test_fraction, len(train), what="test_fraction")
        if n_test == 0:
            raise ValueError(f"{name} has no official test split: test_fraction must be > 0")
        rest, test_idx = split_indices(None, n_test, TEST_SEED, n=len(train))
        test_src = train
    else:
        rest, test_idx, test_src = np.arange(len(train)), np.arange(len(test)), test
    n_val = fraction_to_size(val_fraction, len(rest), what="val_fraction")
    keep, held = split_indices(None, n_val, seed, n=len(rest))
    train_idx, val_idx = rest[keep], rest[held]
    if len(train_idx) == 0:
        raise ValueError(f"{name}: no training samples left after carving val/test splits")
    train_idx = _subset(train_idx, max_train, seed + 1, "max_train")
    val_idx = _subset(val_idx, max_val, seed + 2, "max_val")
    test_idx = _subset(test_idx, max_test, TEST_SEED + 1, "max_test")
    if max_objects is None:
        max_objects = max(1, max(len(o) for o in (*train.objects, *test_src.objects)))
    splits = {"train": _materialise(train, train_idx, scale, dtype, max_objects)}
    for key, src, idx in (("val", train, val_idx), ("test", test_src, test_idx)):
        if len(idx):
            splits[key] = _materialise(src, idx, scale, dtype, max_objects)
        else:
            shape = splits["train"].tensors[0].shape[1:]
            splits[key] = TensorDataset(torch.empty((0, *shape), dtype=dtype),
                                        torch.empty((0, max_objects, 6)))
    mean = std = None
    if normalize:
        mean, std = channel_stats(splits["train"].tensors[0])
        std = np.where(std > 0, std, 1.0)
        for ds in splits.values():
            x = ds.tensors[0]
            view = (1, -1, 1, 1)
            x.sub_(torch.as_tensor(mean, dtype=x.dtype).view(view))
            x.mul_(torch.as_tensor(1.0 / std, dtype=x.dtype).view(view))
    shape = tuple(int(s) for s in splits["train"].tensors[0].shape[1:])
    info = dict(meta or {})
    info.update(seed=int(seed), val_fraction=val_fraction, scale=scale,
                test_source="official" if test is not None else f"carved {test_fraction}")
    return DatasetSplits(
        name=name, task="detection", num_classes=len(class_names), in_channels=shape[0],
        input_shape=shape, class_names=list(class_names),
        mean=None if mean is None else tuple(float(v) for v in mean),
        std=None if std is None else tuple(float(v) for v in std), meta=info, **splits,
    )
