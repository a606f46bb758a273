"""Object detection as a :class:`~actlab.tasks.base.Task` (SSD-style single-shot detectors).

The model maps images ``(B, C, H, W)`` to one tensor ``(B, P, 4 + num_classes)``: per default
box, 4 offsets (:func:`~actlab.tasks.detection.boxes.encode`) and the class logits (class 0 is
background), and holds its default boxes as a ``priors`` buffer ``(P, 4)`` in centre form
(:mod:`actlab.models.ssd`). Targets are the packed ``(N, M, 6)`` rows of
:mod:`~actlab.tasks.detection.targets`.

Loss: the multibox loss (:mod:`~actlab.tasks.detection.loss`), normalised by the number of
matched default boxes of the global batch (at least 1). Evaluation: the same loss plus
``map50`` (VOC all-point AP at IoU 0.5, the primary metric), ``map50_11pt`` (VOC2007 11-point)
and ``map`` (COCO-style AP averaged over IoU 0.5:0.95) on the post-processed detections
(:func:`~actlab.tasks.detection.nms.postprocess`); difficult objects are ignored as VOC does.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from actlab.tasks.base import LossParts, Task, register_task
from actlab.tasks.detection import targets as tg
from actlab.tasks.detection.boxes import VARIANCES
from actlab.tasks.detection.loss import multibox_parts
from actlab.tasks.detection.matching import match
from actlab.tasks.detection.metrics import coco_map, voc_map
from actlab.tasks.detection.nms import postprocess

__all__ = ["DetectionTask", "random_hflip_boxes"]


def random_hflip_boxes(
    x: Tensor, y: Tensor, p: float = 0.5, *, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Mirror each image left-right with probability ``p`` and its boxes with it
    (``x1' = 1 - x2``, ``x2' = 1 - x1``); padding rows are left alone."""
    flip = torch.rand(x.shape[0], generator=generator) < p
    flip = flip.to(x.device)
    x = torch.where(flip.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)
    y = y.clone()
    rows = flip[:, None] & tg.valid_mask(y)
    x1, x2 = y[..., 0].clone(), y[..., 2].clone()
    y[..., 0] = torch.where(rows, 1.0 - x2, x1)
    y[..., 2] = torch.where(rows, 1.0 - x1, x2)
    return x, y


@register_task
class DetectionTask(Task):
    """Single-shot detection with default boxes (module doc). Options (SSD's defaults):

    ``iou_threshold`` 0.5 (matching), ``neg_pos_ratio`` 3, ``loc_weight`` (α) 1,
    ``variances`` (0.1, 0.2), ``use_difficult`` True (train on difficult objects too, as the
    authors' Caffe model; they are ignored by the metrics either way), ``score_threshold`` 0.01,
    ``nms_threshold`` 0.45, ``pre_nms_top_k`` 200, ``max_detections`` 200.
    """

    name = "detection"
    model_tasks = ("detection",)
    eval_metrics = ("loss", "loc_loss", "conf_loss", "map50", "map50_11pt", "map")
    train_metric_names = ("loc_loss", "conf_loss")
    primary_metric = "map50"
    higher_is_better = True

    def __init__(
        self,
        num_classes: int,
        priors: Tensor,
        *,
        iou_threshold: float = 0.5,
        neg_pos_ratio: float = 3.0,
        loc_weight: float = 1.0,
        variances: tuple[float, float] = VARIANCES,
        use_difficult: bool = True,
        score_threshold: float = 0.01,
        nms_threshold: float = 0.45,
        pre_nms_top_k: int = 200,
        max_detections: int = 200,
        class_weight: Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(num_classes)
        if num_classes < 2:
            raise ValueError(f"detection needs num_classes >= 2 (background + objects), "
                             f"got {num_classes}")
        if class_weight is not None or label_smoothing:
            raise ValueError("class_weights and label_smoothing are not supported for detection")
        if priors.dim() != 2 or priors.shape[1] != 4:
            raise ValueError(f"priors must be (P, 4) centre-form boxes, got {tuple(priors.shape)}")
        self.priors = priors.detach().to("cpu", torch.float32)
        self.iou_threshold = float(iou_threshold)
        self.neg_pos_ratio = float(neg_pos_ratio)
        self.loc_weight = float(loc_weight)
        self.variances = (float(variances[0]), float(variances[1]))
        self.use_difficult = bool(use_difficult)
        self.post = dict(score_threshold=float(score_threshold),
                         nms_threshold=float(nms_threshold), pre_nms_top_k=int(pre_nms_top_k),
                         max_detections=int(max_detections), variances=self.variances)
        self._on: dict[torch.device, Tensor] = {}

    @classmethod
    def for_model(cls, model: nn.Module, num_classes: int, **options: Any) -> DetectionTask:
        priors = getattr(model, "priors", None)
        if not isinstance(priors, Tensor):
            raise ValueError(
                f"the detection task needs a model with a 'priors' buffer of default boxes "
                f"(e.g. ssd300, ssd_lite); {type(model).__name__} has none"
            )
        return cls(num_classes, priors, **options)

    def _priors(self, device: torch.device) -> Tensor:
        if device not in self._on:
            self._on[device] = self.priors.to(device)
        return self._on[device]

    # ---- training --------------------------------------------------------------------------
    def check_targets(self, split: str, targets: Tensor) -> None:
        tg.check_targets(split, targets, self.num_classes)

    def loss_normaliser(self, targets: Tensor) -> Tensor:
        labels, _ = match(targets, self._priors(targets.device), self.iou_threshold,
                          self.variances, self.use_difficult)
        return (labels > 0).sum().to(torch.float32).clamp(min=1.0)

    def _parts(self, out: Tensor, targets: Tensor):
        return multibox_parts(
            out, targets, self._priors(out.device), threshold=self.iou_threshold,
            neg_pos_ratio=self.neg_pos_ratio, variances=self.variances,
            use_difficult=self.use_difficult,
        )

    def loss_parts(self, out: Tensor, targets: Tensor) -> LossParts:
        p = self._parts(out, targets)
        total = p.conf + self.loc_weight * p.loc
        stats = torch.stack([p.loc.detach().double(), p.conf.detach().double(),
                             p.num_pos.double()])
        return LossParts(total, p.num_pos.to(torch.float32), stats)

    def train_metrics(self, stats: list[float]) -> dict[str, float]:
        loc, conf, n = stats
        n = max(n, 1.0)
        return {"loc_loss": loc / n, "conf_loss": conf / n}

    def build_augment(self, spec: str | None) -> Callable[..., Any] | None:
        """``"flip"``: random horizontal flips of images and boxes; ``None``/``"none"``: none."""
        if spec in (None, "", "none"):
            return None
        if spec == "flip":
            return random_hflip_boxes
        raise ValueError(f"augment={spec!r} is not supported for detection (use 'flip' or none)")

    # ---- evaluation ------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model: nn.Module, inputs: Tensor, *, batch_size: int = 64,
                device: torch.device | str = "cpu") -> list[tuple[np.ndarray, ...]]:
        """Post-processed detections of ``inputs`` as numpy ``(boxes, scores, labels)`` per
        image (model put in eval mode for the call)."""
        device = torch.device(device)
        was = model.training
        model.eval()
        out: list[tuple[np.ndarray, ...]] = []
        try:
            for i in range(0, len(inputs), batch_size):
                raw = model(inputs[i:i + batch_size].to(device))
                out += [_to_numpy(d) for d in postprocess(raw, self._priors(device), **self.post)]
        finally:
            model.train(was)
        return out

    @torch.no_grad()
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
        """Multibox loss terms (per matched default box) and the three mAPs of a split.

        In a multi-process run each process evaluates its contiguous share; loss sums are
        added and detections gathered over processes, so every process returns the metrics of
        the whole split."""
        from actlab.train.distributed import all_reduce_sum, shard_bounds

        device = torch.device(device)
        was = model.training
        model.eval()
        ctx = autocast if autocast is not None else contextlib.nullcontext
        start, stop = shard_bounds(len(inputs), rank, world_size)
        sums = torch.zeros(3, dtype=torch.float64, device=device)  # loc, conf, positives
        dets: list[tuple[np.ndarray, ...]] = []
        try:
            for i in range(start, stop, batch_size):
                j = min(i + batch_size, stop)
                x = inputs[i:j].to(device, non_blocking=True)
                y = targets[i:j].to(device, non_blocking=True)
                with ctx():
                    out = model(x)
                out = out.float()
                p = self._parts(out, y)
                sums += torch.stack([p.loc.double(), p.conf.double(), p.num_pos.double()])
                dets += [_to_numpy(d) for d in postprocess(out, self._priors(device),
                                                           **self.post)]
        finally:
            model.train(was)
        all_reduce_sum(sums)
        if world_size > 1 and torch.distributed.is_available() \
                and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * world_size
            torch.distributed.all_gather_object(gathered, dets)
            dets = [d for part in gathered for d in part]
        loc, conf, n = sums.tolist()
        if len(inputs) == 0:
            return {k: math.nan for k in self.eval_metrics}
        gts = tg.unpack_targets(targets)
        scale = max(n, 1.0)
        return {
            "loss": (conf + self.loc_weight * loc) / scale,
            "loc_loss": loc / scale,
            "conf_loss": conf / scale,
            "map50": voc_map(dets, gts, self.num_classes)[0],
            "map50_11pt": voc_map(dets, gts, self.num_classes, eleven_point=True)[0],
            "map": coco_map(dets, gts, self.num_classes)[0],
        }


def _to_numpy(d) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (d.boxes.detach().to("cpu", torch.float64).numpy(),
            d.scores.detach().to("cpu", torch.float64).numpy(),
            d.labels.detach().cpu().numpy())
