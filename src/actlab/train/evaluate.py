"""Evaluation pass and layer-statistics collection.

``evaluate`` runs a model over a split in eval mode and returns the loss (the training criterion
without label smoothing) and the accuracy metrics of the task: ``acc`` for classification,
``pixel_acc`` / ``pixel_error`` / ``miou`` for segmentation (see :mod:`actlab.train.metrics`).
Sums are accumulated on the device and read back once; in a multi-process run every process
evaluates its contiguous share of the split and the sums are added over processes.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from actlab.train.distributed import all_reduce_sum, shard_bounds
from actlab.train.loss import criterion_parts
from actlab.train.metrics import confusion_matrix, segmentation_scores

__all__ = ["evaluate", "collect_layer_stats", "tracking_activity"]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    task: str,
    num_classes: int,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    class_weight: Tensor | None = None,
    autocast: Any = None,
    rank: int = 0,
    world_size: int = 1,
    loss: str = "ce",
) -> dict[str, float]:
    """Loss and accuracy metrics of ``model`` on ``(inputs, targets)`` (all NaN when empty).

    ``autocast`` is an optional zero-argument callable returning a context manager (e.g. a
    ``functools.partial(torch.autocast, "cuda", dtype=torch.float16)``). ``loss`` names the
    criterion (``TrainConfig.loss``); targets outside ``[0, num_classes)`` (255) are skipped.
    """
    if task not in ("classification", "segmentation"):
        raise ValueError(f"task must be 'classification' or 'segmentation', got {task!r}")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    start, stop = shard_bounds(len(inputs), rank, world_size)
    # [loss sum, loss normaliser, correct, counted]
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    ctx = autocast if autocast is not None else contextlib.nullcontext
    try:
        for i in range(start, stop, batch_size):
            j = min(i + batch_size, stop)
            x = inputs[i:j].to(device, non_blocking=True)
            y = targets[i:j].to(device, non_blocking=True)
            with ctx():
                out = model(x)
            loss_sum, norm = criterion_parts(loss, out, y, class_weight)
            pred = out.argmax(1)
            valid = (y >= 0) & (y < num_classes)
            sums += torch.stack([
                loss_sum.double(), norm.double(),
                ((pred == y) & valid).sum().double(), valid.sum().double(),
            ])
            if task == "segmentation":
                cm += confusion_matrix(pred, y, num_classes)
    finally:
        model.train(was_training)
    all_reduce_sum(sums)
    loss_sum, norm, correct, counted = sums.tolist()
    loss = loss_sum / norm if norm > 0 else math.nan
    if task == "classification":
        return {"loss": loss, "acc": correct / counted if counted > 0 else math.nan}
    all_reduce_sum(cm)
    return {"loss": loss, **segmentation_scores(cm)}


def collect_layer_stats(model: nn.Module) -> dict[str, dict[str, float]]:
    """``{qualified_name: {stat: value}}`` for every submodule with a ``layer_stats()`` method.

    The root module is listed under ``""`` when it has the method itself.
    """
    out: dict[str, dict[str, float]] = {}
    for name, module in model.named_modules():
        fn = getattr(module, "layer_stats", None)
        if callable(fn):
            stats = fn()
            if not isinstance(stats, dict):
                raise TypeError(
                    f"{name or type(module).__name__}.layer_stats() returned "
                    f"{type(stats).__name__}, expected dict[str, float]"
                )
            out[name] = {str(k): float(v) for k, v in stats.items()}
    return out


@contextlib.contextmanager
def tracking_activity(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Set ``track_activity=True`` on the modules that have the attribute, restore on exit.

    Modules that also have ``reset_layer_stats()`` have it called on entry, so the statistics
    gathered describe only the pass run inside the block.
    """
    if not enabled:
        yield
        return
    saved = [(m, m.track_activity) for m in model.modules() if hasattr(m, "track_activity")]
    for m, _ in saved:
        m.track_activity = True
        reset = getattr(m, "reset_layer_stats", None)
        if callable(reset):
            reset()
    try:
        yield
    finally:
        for m, old in saved:
            m.track_activity = old
