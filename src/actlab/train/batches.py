"""The ``DataLoader`` path of the training loop (streamed splits, ``loader = "stream"``).

The loop draws each epoch's permutation from its own seeded generator exactly as the in-memory
path does and hands the epoch's global batches to :class:`EpochBatches`; the ``DataLoader``
then reads those batches (in that order) in ``num_workers`` processes. So for the same seed
both paths see the same samples in the same batches, and augmentation, applied afterwards in
the training process with the loop's generator, draws the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["EpochBatches", "make_loader", "targets_of", "eval_tensors"]


class EpochBatches(Sampler[list[int]]):
    """A batch sampler replaying the batches the loop chose for the current epoch."""

    def __init__(self) -> None:
        self._batches: list[list[int]] = []

    def set_order(self, perm: Tensor, steps: int, batch_size: int) -> None:
        """This epoch's batches: ``perm[s*B:(s+1)*B]`` for ``s < steps``."""
        self._batches = [perm[s * batch_size:(s + 1) * batch_size].tolist()
                         for s in range(steps)]

    def set_batches(self, batches: list[list[int]]) -> None:
        """This epoch's batches as planned elsewhere (e.g. length-bucketed)."""
        self._batches = [list(b) for b in batches]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(list(self._batches))

    def __len__(self) -> int:
        return len(self._batches)


def make_loader(
    dataset: Dataset, batches: EpochBatches, num_workers: int, device: torch.device
) -> DataLoader:
    """A ``DataLoader`` over ``dataset`` in ``batches`` order: ``num_workers`` persistent
    worker processes (none: read in this process), pinned memory on CUDA. Its own generator
    seeds the workers, so the global RNG stream (dropout, ...) is left as the in-memory path
    leaves it."""
    return DataLoader(
        dataset, batch_sampler=batches, num_workers=num_workers,
        pin_memory=device.type == "cuda", persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(0),
    )


def targets_of(ds: Any) -> Any:
    """The labels of a split: a ``TensorDataset``'s second tensor, a streamed split's
    ``targets`` or the target-side :class:`~actlab.data.ragged.RaggedTokens` of a seq2seq
    split."""
    from actlab.data.ragged import RaggedPairs

    if hasattr(ds, "tensors"):
        return ds.tensors[1]
    if isinstance(ds, RaggedPairs):
        return ds.targets
    targets = getattr(ds, "targets", None)
    if not isinstance(targets, Tensor):
        raise TypeError(f"a split must be a TensorDataset or have a targets tensor, got "
                        f"{type(ds).__name__}")
    return targets


def eval_tensors(ds: Any) -> tuple[Any, Any]:
    """``(inputs, targets)`` the evaluation pass can slice: the tensors of an in-memory split,
    the ragged views of a seq2seq split (a slice is a batch padded to its longest row),
    batch-reading views of a streamed one."""
    from actlab.data.ragged import RaggedPairs

    if hasattr(ds, "tensors"):
        return ds.tensors[0], ds.tensors[1]
    if isinstance(ds, RaggedPairs):
        return ds.sources, ds.targets
    from actlab.data.stream import SliceView

    return SliceView(ds), SliceView(ds, "targets")
