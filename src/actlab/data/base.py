"""Shared types of the data package: the error every reader raises and the split container.

A dataset is always delivered as a :class:`DatasetSplits`: three ``TensorDataset`` objects
(train / val / test) of ``(inputs, targets)``, plus the metadata a model needs to be built
for it (``in_channels``, ``num_classes``, ``input_shape``) and the per-channel statistics the
inputs were standardised with (computed on the training split only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from torch.utils.data import TensorDataset

__all__ = ["DatasetError", "DatasetSplits", "Task"]

Task = Literal["classification", "segmentation", "detection", "seq2seq"]


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or not in the expected format.

    The message is a single line that names the file and what was expected, e.g.
    ``cifar10: missing file /data/cifar-10-batches-py/data_batch_3 (expected ...)``.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


@dataclass
class DatasetSplits:
    """Train / validation / test splits of one dataset, ready for a ``DataLoader``.

    Attributes:
        name: registry name of the dataset (``"cifar10"``, ...).
        task: ``"classification"`` (targets ``(N,)`` int64), ``"segmentation"`` (targets
            ``(N, H, W)`` int64 label maps) or ``"detection"`` (targets ``(N, M, 6)`` float32
            object rows, see :mod:`actlab.tasks.detection.targets`) or ``"seq2seq"`` (source and
            target token ids, read as ``(n, S)`` / ``(n, T)`` int64 batches, see
            :mod:`actlab.data.parallel`).
        train, val, test: ``TensorDataset(inputs, targets)`` (or, loaded with ``stream=True``,
            :class:`actlab.data.stream.SourceDataset` read per sample; seq2seq:
            :class:`actlab.data.ragged.RaggedPairs`, ids stored flat and padded per batch);
            inputs are float tensors of shape ``(N, *input_shape)``. ``val`` is carved from the
            official training data, never from the test data.
        num_classes: number of classes (including background for segmentation and detection).
        in_channels: ``input_shape[0]``.
        input_shape: ``(C, H, W)`` for images, ``(C, L)`` for sequences.
        class_names: optional human-readable class names (length ``num_classes``).
        mean, std: per-channel statistics of the training inputs used for standardisation
            (``x_std = (x - mean) / std``), in the input scale after the dataset's fixed rescale
            (e.g. ``/255``); ``None`` when the data were not standardised.
        meta: free-form provenance (source directory, generator arguments, split seeds, ...).
    """

    name: str
    task: Task
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    num_classes: int
    in_channels: int
    input_shape: tuple[int, ...]
    class_names: list[str] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in ("classification", "segmentation", "detection", "seq2seq"):
            raise ValueError(
                "task must be 'classification', 'segmentation', 'detection' or 'seq2seq', got "
                f"{self.task!r}"
            )
        if self.in_channels != self.input_shape[0]:
            raise ValueError(
                f"in_channels={self.in_channels} does not match input_shape={self.input_shape}"
            )
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(
                f"{len(self.class_names)} class names given for {self.num_classes} classes"
            )

    @property
    def sizes(self) -> dict[str, int]:
        """Number of samples in each split."""
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def summary(self) -> str:
        """One line: name, task, shapes and split sizes."""
        s = self.sizes
        return (
            f"{self.name}: {self.task}, input {tuple(self.input_shape)}, "
            f"{self.num_classes} classes, train/val/test = {s['train']}/{s['val']}/{s['test']}"
        )
