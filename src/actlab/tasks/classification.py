"""Classification and segmentation as :class:`~actlab.tasks.base.Task`\\ s: thin adapters over the
cross-entropy pair of :mod:`actlab.train.loss` and the evaluation of :mod:`actlab.train.evaluate`.

Targets are integer class labels ``(N,)`` (classification) or label maps ``(N, *spatial)``
(segmentation); labels outside ``[0, C)`` (e.g. -100) are ignored. Training statistics are the
correct / counted sums of the top-1 (pixel) accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from actlab.tasks.base import LossParts, Task, register_task
from actlab.train.evaluate import evaluate as _evaluate
from actlab.train.loss import IGNORE_INDEX, LOSSES, criterion_normaliser, criterion_parts

__all__ = ["ClassificationTask", "SegmentationTask"]


def _top_label(y: Tensor) -> int:
    """Largest label of ``y`` other than :data:`IGNORE_INDEX` (-1 when there is none)."""
    top = -1
    for part in y.split(256):  # bounded temporaries for large label maps
        counted = part[part != IGNORE_INDEX]
        if counted.numel():
            top = max(top, int(counted.max()))
    return top


class _CrossEntropyTask(Task):
    """Shared code: weighted, optionally label-smoothed cross-entropy on integer targets (or,
    for segmentation, ``loss="contour_iou"``: :mod:`actlab.train.contour`)."""

    def __init__(
        self, num_classes: int, class_weight: Tensor | None = None, label_smoothing: float = 0.0,
        loss: str = "ce",
    ) -> None:
        super().__init__(num_classes)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.loss = loss
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        if class_weight is not None and tuple(class_weight.shape) != (num_classes,):
            raise ValueError(
                f"class_weight must have shape ({num_classes},), got {tuple(class_weight.shape)}"
            )
        self.class_weight = class_weight
        self.label_smoothing = float(label_smoothing)

    def _weight(self, device: torch.device) -> Tensor | None:
        return None if self.class_weight is None else self.class_weight.to(device)

    def check_targets(self, split: str, targets: Tensor) -> None:
        if targets.dtype.is_floating_point or targets.dtype == torch.bool:
            raise TypeError(f"{split} targets must be an integer tensor, got {targets.dtype}")
        top = _top_label(targets)
        if top >= self.num_classes:
            raise ValueError(
                f"{split} targets hold class {top} but num_classes={self.num_classes} (labels "
                f"must be in [0, num_classes); negative labels and {IGNORE_INDEX} are ignored)"
            )

    def loss_normaliser(self, targets: Tensor) -> Tensor:
        return criterion_normaliser(self.loss, targets, self.num_classes,
                                    self._weight(targets.device))

    def loss_parts(self, out: Tensor, targets: Tensor) -> LossParts:
        total, norm = criterion_parts(
            self.loss, out, targets, self._weight(out.device), self.label_smoothing
        )
        with torch.no_grad():
            valid = (targets >= 0) & (targets < self.num_classes)
            hits = ((out.argmax(1) == targets) & valid).sum()
            stats = torch.stack([hits.double(), valid.sum().double()])
        return LossParts(total, norm, stats)

    def evaluate(
        self,
        model: nn.Module,
        inputs: Tensor,
        targets: Tensor,
        *,
        batch_size: int = 512,
        device: torch.device | str = "cpu",
        autocast: Callable[[], Any] | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> dict[str, float]:
        return _evaluate(
            model, inputs, targets, task=self.name, num_classes=self.num_classes,
            batch_size=batch_size, device=device, class_weight=self.class_weight,
            autocast=autocast, rank=rank, world_size=world_size, loss=self.loss,
        )

    def build_augment(self, spec: str | None) -> Callable[..., Any] | None:
        if spec is None:
            return None
        from actlab.data.augment import build_augment

        return build_augment(spec, self.name)


@register_task
class ClassificationTask(_CrossEntropyTask):
    """One label per input; metric ``acc`` (top-1 accuracy)."""

    name = "classification"
    model_tasks = ("classification", "classification_1d")
    eval_metrics = ("loss", "acc")
    train_metric_names = ("acc",)
    primary_metric = "acc"

    def check_targets(self, split: str, targets: Tensor) -> None:
        super().check_targets(split, targets)
        if targets.dim() != 1:
            raise ValueError(
                f"{split} targets of a classification task must be (N,), got "
                f"{tuple(targets.shape)}"
            )

    def train_metrics(self, stats: list[float]) -> dict[str, float]:
        hits, n = stats
        return {"acc": hits / n if n > 0 else float("nan")}


@register_task
class SegmentationTask(_CrossEntropyTask):
    """One label per pixel; metrics ``pixel_acc``, ``pixel_error`` and ``miou``
    (:mod:`actlab.train.metrics`); ``miou`` decides."""

    name = "segmentation"
    model_tasks = ("segmentation",)
    eval_metrics = ("loss", "pixel_error", "pixel_acc", "miou")
    train_metric_names = ("pixel_acc",)
    primary_metric = "miou"

    def check_targets(self, split: str, targets: Tensor) -> None:
        super().check_targets(split, targets)
        if targets.dim() < 2:
            raise ValueError(f"{split} targets of a segmentation task must be (N, *spatial)")

    def train_metrics(self, stats: list[float]) -> dict[str, float]:
        hits, n = stats
        return {"pixel_acc": hits / n if n > 0 else float("nan")}
