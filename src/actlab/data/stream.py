"""Streaming splits: map-style datasets that read each sample from its source when asked.

``load_dataset(name, stream=True)`` (or ``loader = "stream"`` in a spec) gives splits whose
``train`` / ``val`` / ``test`` are :class:`SourceDataset` objects instead of in-memory
``TensorDataset`` s: only the labels (and the split's indices) are held; a sample is fetched
from the dataset's :class:`~actlab.data.prepare.Source` (a JPEG decoded from disk for Tiny
ImageNet, a row of a memory-mapped ``.npy`` with :meth:`Source.from_npy`), rescaled and
standardised with the training split's statistics exactly as the in-memory pipeline does it
(same dtype, same order of operations), so both paths give bit-identical inputs.

The training loop feeds a streaming split to a ``torch.utils.data.DataLoader`` (``num_workers``
processes, pinned memory on CUDA, persistent workers) with the same seeded batch order as the
in-memory path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["SourceDataset", "to_input"]


def to_input(
    raw: np.ndarray, scale: float, dtype: torch.dtype,
    mean: torch.Tensor | None = None, inv_std: torch.Tensor | None = None,
) -> torch.Tensor:
    """Raw samples ``(N, C, ...)`` -> model inputs, as ``prepare_splits`` computes them:
    ``x = dtype(work(raw) * scale)``, then ``(x - mean_c) * (1 / std_c)`` in ``dtype``
    (``work`` is float64 for float64 data, else float32)."""
    work = torch.float64 if dtype == torch.float64 else torch.float32
    chunk = torch.from_numpy(np.ascontiguousarray(raw)).to(work)
    x = (chunk * scale if scale != 1.0 else chunk).to(dtype)
    if mean is not None and inv_std is not None:
        view = (1, -1, *([1] * (x.dim() - 2)))
        x.sub_(mean.view(view)).mul_(inv_std.view(view))
    return x


class SourceDataset(Dataset):
    """Samples ``source[indices[i]]`` read on demand (see the module docstring).

    Attributes:
        targets: ``(N,)`` or ``(N, H, W)`` int64 labels of the split, in memory.
        sample_shape: the shape of one input.
    """

    def __init__(
        self,
        source,
        indices: np.ndarray,
        *,
        scale: float,
        dtype: torch.dtype,
        sample_shape: Sequence[int],
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64)
        self.scale = float(scale)
        self.dtype = dtype
        self.sample_shape = tuple(int(s) for s in sample_shape)
        self.targets = torch.from_numpy(
            np.ascontiguousarray(np.asarray(source.targets)[self.indices]).astype(np.int64))
        self._mean = self._inv = None
        if mean is not None and std is not None:
            self.set_stats(np.asarray(mean), np.asarray(std))

    def set_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Standardise with these per-channel statistics from now on."""
        self._mean = torch.as_tensor(mean, dtype=self.dtype)
        self._inv = torch.as_tensor(1.0 / np.asarray(std), dtype=self.dtype)

    def __len__(self) -> int:
        return len(self.indices)

    def inputs(self, positions: Sequence[int] | np.ndarray | slice) -> torch.Tensor:
        """Inputs at ``positions`` of this split as one ``(len, *sample_shape)`` tensor."""
        idx = self.indices[positions]
        raw = np.asarray(self.source.fetch(np.atleast_1d(idx)))
        if raw.shape[1:] != self.sample_shape:
            raise ValueError(
                f"inconsistent sample shapes {raw.shape[1:]} and {self.sample_shape}")
        return to_input(raw, self.scale, self.dtype, self._mean, self._inv)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs([i])[0], self.targets[i]

    def __getitems__(self, positions: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Batched read (used by ``DataLoader``): one ``fetch`` call for the whole batch."""
        x = self.inputs(np.asarray(positions, dtype=np.int64))
        y = self.targets[positions]
        return list(zip(x, y, strict=True))


class SliceView:
    """``view[i:j]`` -> the inputs (or targets) of positions ``i..j-1`` of a
    :class:`SourceDataset`, so code written for in-memory tensors (the evaluation pass) can
    read a streaming split batch by batch."""

    def __init__(self, ds: SourceDataset, part: str = "inputs") -> None:
        self.ds, self.part = ds, part

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key: slice) -> torch.Tensor:
        if self.part == "targets":
            return self.ds.targets[key]
        return self.ds.inputs(key)
