"""From images + object lists to detection :class:`DatasetSplits` (``task="detection"``).

The same steps as :func:`actlab.data.prepare.prepare_splits`, for targets that are object lists
rather than labels: the uniform carve of :func:`actlab.data.carve.carve_indices` (a test split
carved with the fixed ``TEST_SEED`` when the dataset has none, a validation carve with ``seed``,
optional ``max_*`` subsets), a fixed rescale and per-channel standardisation with the
statistics of the final training split. Targets are packed into the ``(N, M, 6)`` rows of
:mod:`actlab.tasks.detection.targets` (``M`` = the most objects of any image in the dataset, or
``max_objects``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from actlab.data.base import DatasetSplits
from actlab.data.carve import SplitOptions, carve_indices
from actlab.data.prepare import channel_stats, resolve_dtype
from actlab.tasks.detection.targets import ImageTargets, pack_targets

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["DetectionSource", "prepare_detection_splits"]


@dataclass
class DetectionSource:
    """Objects of every image of one official split, and ``fetch(indices) -> (k, C, H, W)``
    raw images (decoded only when asked for)."""

    objects: list[ImageTargets]
    fetch: Callable[[np.ndarray], np.ndarray]

    def __len__(self) -> int:
        return len(self.objects)


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
    scale: float = 1.0,
    normalize: bool = True,
    dtype: torch.dtype | str = torch.float32,
    max_objects: int | None = None,
    meta: dict[str, Any] | None = None,
    **split: Unpack[SplitOptions],
) -> DatasetSplits:
    """Detection splits (module doc); ``class_names[0]`` is the background class. ``split``:
    the :class:`~actlab.data.carve.SplitOptions` (``val_fraction``, ``seed``, ...)."""
    dtype = resolve_dtype(dtype)
    cut = carve_indices(name, len(train), split, n_test=None if test is None else len(test))
    train_idx, val_idx, test_idx = cut.train, cut.val, cut.test
    test_src = train if test is None else test
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
    info.update(seed=int(cut.options["seed"]), val_fraction=cut.options["val_fraction"],
                scale=scale, test_source="official" if test is not None
                else f"carved {cut.options['test_fraction']}")
    return DatasetSplits(
        name=name, task="detection", num_classes=len(class_names), in_channels=shape[0],
        input_shape=shape, class_names=list(class_names),
        mean=None if mean is None else tuple(float(v) for v in mean),
        std=None if std is None else tuple(float(v) for v in std), meta=info, **splits,
    )
