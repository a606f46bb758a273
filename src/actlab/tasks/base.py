"""The interface every task type implements, and the registry of task types.

A *task* bundles what differs between classification, segmentation, detection, ...: the target
format, the loss, the training statistics, the evaluation metrics and which of them decides.
The training loop only ever calls these methods:

=================================  ===============================================================
``task.check_targets(split, y)``   one-line error when a split's targets do not fit the task
``task.loss_normaliser(y)``        denominator of the loss for a (global) batch ``y``
``task.loss_parts(out, y)``        :class:`LossParts`: numerator, this shard's denominator and
                                   detached sums for the epoch's training metrics
``task.train_metrics(stats)``      epoch-summed ``stats`` -> ``{"acc": ...}`` (loop adds
                                   ``train_``)
``task.evaluate(model, x, y, …)``  ``{"loss": ..., <metric>: ...}`` of a split (loop adds
                                   ``val_`` / ``test_``)
``task.build_augment(spec)``       the batch augmentation for ``augment=spec`` (or an error)
``task.batch_plan(train, B, drop)`` a planner of each epoch's training batches, or None (the
                                   default: consecutive slices of the epoch's permutation)
=================================  ===============================================================

The batch loss is ``Σ numerators / loss_normaliser(global batch)``, which makes a data-parallel
gradient equal to the single-process one (see :mod:`actlab.train.loss`). Class attributes
describe the task to the sweep, store and report: ``name`` (the spec's ``task = "..."`` and the
``DatasetSplits.task`` it trains on), ``model_tasks`` (the :func:`actlab.models.model_task`
labels of models it can train), ``eval_metrics`` (keys :meth:`Task.evaluate` returns, loss first),
``train_metric_names`` and ``primary_metric`` with ``higher_is_better``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from actlab.registry import Registry

__all__ = ["Task", "LossParts", "TASK_TYPES", "register_task", "build_task", "task_type",
           "check_combination", "list_tasks"]


@dataclass
class LossParts:
    """One shard's loss terms: ``total`` (graph attached) and ``normaliser`` as in
    :mod:`actlab.train.loss`; ``stats`` a detached 1-d float64 tensor of sums, added over steps
    and processes and given to :meth:`Task.train_metrics` at the end of the epoch."""

    total: Tensor
    normaliser: Tensor
    stats: Tensor


class Task(ABC):
    """Base class of the task types (module doc lists what the loop calls)."""

    name: ClassVar[str]
    model_tasks: ClassVar[tuple[str, ...]]
    eval_metrics: ClassVar[tuple[str, ...]]
    train_metric_names: ClassVar[tuple[str, ...]] = ()
    primary_metric: ClassVar[str]
    higher_is_better: ClassVar[bool] = True

    def __init__(self, num_classes: int) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
        self.num_classes = num_classes

    @classmethod
    def for_model(cls, model: nn.Module, num_classes: int, **options: Any) -> Task:
        """The task instance of one run (subclasses read what they need from ``model``)."""
        return cls(num_classes, **options)

    def forward(self, model: nn.Module, inputs: Tensor, targets: Tensor) -> Tensor:
        """The output that :meth:`loss_parts` scores: ``model(inputs)`` (seq2seq also feeds the
        shifted targets: teacher forcing)."""
        return model(inputs)

    def run_info(self) -> dict[str, Any]:
        """Facts stored with each epoch of a run (seq2seq: the sacreBLEU signature and the
        decoding settings); empty by default."""
        return {}

    @abstractmethod
    def check_targets(self, split: str, targets: Tensor) -> None: ...

    @abstractmethod
    def loss_normaliser(self, targets: Tensor) -> Tensor: ...

    @abstractmethod
    def loss_parts(self, out: Tensor, targets: Tensor) -> LossParts: ...

    @abstractmethod
    def train_metrics(self, stats: list[float]) -> dict[str, float]: ...

    @abstractmethod
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
    ) -> dict[str, float]: ...

    def build_augment(self, spec: str | None) -> Callable[..., Any] | None:
        """Batch augmentation ``f(x, y, generator=) -> (x, y)`` for ``spec`` (None: none)."""
        if spec in (None, "", "none"):
            return None
        raise ValueError(f"augment={spec!r} is not supported for {self.name} tasks")

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """One-line ``ValueError`` for option values that are wrong whatever the data (called
        by ``actlab run --check`` on a spec's ``task_kwargs``); nothing to check by default."""
        del options

    def batch_plan(self, train: Any, batch_size: int, drop_last: bool) -> Any | None:
        """How the loop forms training batches: ``None`` (the default) for consecutive slices
        of each epoch's random permutation, or an object with ``plan(perm, generator) ->
        list[list[int]]`` and ``steps_per_epoch(seed) -> int`` (seq2seq's length bucketing,
        :class:`actlab.data.bucketing.BucketBatches`)."""
        return None

    @classmethod
    def metric_keys(cls) -> tuple[str, ...]:
        """Keys of a run's final metrics: every split's evaluation plus the training ones."""
        keys = [f"{s}_{m}" for s in ("test", "val") for m in cls.eval_metrics]
        return (*keys, "train_loss", *(f"train_{m}" for m in cls.train_metric_names))


TASK_TYPES: Registry[type[Task]] = Registry("task")


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make a :class:`Task` subclass available under ``cls.name``."""
    if cls.name not in TASK_TYPES:
        TASK_TYPES.register(cls.name, cls)
    return cls


def task_type(name: str) -> type[Task]:
    """The registered task class ``name`` (``KeyError`` with close matches otherwise)."""
    return TASK_TYPES.factory(name)


def list_tasks() -> list[str]:
    return TASK_TYPES.names()


def build_task(name: str, model: nn.Module, num_classes: int, **options: Any) -> Task:
    """The task instance of a run: ``build_task("detection", model, 4, nms_threshold=0.5)``.

    Unknown options raise a ``TypeError`` naming the task.
    """
    cls = task_type(name)
    try:
        return cls.for_model(model, num_classes, **options)
    except TypeError as err:
        raise TypeError(f"bad options for task {name!r}: {err}") from None


def check_combination(task: str, model_task: str, dataset_task: str) -> None:
    """One-line ``ValueError`` unless a model of ``model_task`` and a dataset of
    ``dataset_task`` can be trained as ``task``."""
    cls = task_type(task)
    if dataset_task != cls.name:
        raise ValueError(f"task {cls.name!r} cannot train on a {dataset_task} dataset")
    if model_task not in cls.model_tasks:
        raise ValueError(
            f"task {cls.name!r} needs a {' or '.join(cls.model_tasks)} model, got a "
            f"{model_task} model"
        )
