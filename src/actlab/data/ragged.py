"""Token rows of different lengths stored flat, padded only per batch (seq2seq splits).

A padded ``(N, L)`` int64 matrix costs ``8·N·L`` bytes with ``L`` the longest row; at WMT'14
English–German size (4.5M pairs, a few sentences of 250 tokens) that is tens of gigabytes, most
of it padding. :class:`RaggedTokens` keeps the rows back to back in one flat tensor ``values``
plus ``offsets`` (row ``i`` is ``values[offsets[i]:offsets[i+1]]``), so a side of ``N`` rows
with ``T`` tokens in all costs

    ``b·T + 8·(N + 1)`` bytes, ``b`` = 2 (``uint16``, vocabulary ≤ 65,536) or 4 (``int32``),

e.g. 4.5M pairs × 30 tokens a side × 2 sides × 2 B + 2 × 8 B × 4.5M ≈ 0.61 GB (1.15 GB with a
vocabulary over 65,536). Rows come out as int64 ids right-padded with ``pad_id`` to the longest
row *of the batch*: exactly the columns of the old split-wide padding that hold a token, which
is all the seq2seq task ever reads (it trims every batch to its longest row).

:class:`RaggedPairs` is the training/evaluation split of a seq2seq dataset: a map-style
``Dataset`` whose ``__getitems__`` returns a batch padded per side (the ``DataLoader``'s default
collate then stacks it), with ``sources`` / ``targets`` views that slice to padded tensors for
the evaluation pass and :meth:`RaggedPairs.padded` for the whole split as the old
``(inputs, targets)`` tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["RaggedTokens", "RaggedPairs", "token_dtype"]


def token_dtype(vocab_size: int) -> torch.dtype:
    """The smallest dtype holding ids ``0 .. vocab_size - 1``: ``uint16`` up to 65,536 tokens,
    else ``int32``."""
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
    return torch.uint16 if vocab_size <= 2**16 else torch.int32


class RaggedTokens:
    """``N`` token rows stored flat (module doc).

    Args:
        values: 1-d ids of all rows back to back (``uint16`` or ``int32``).
        offsets: ``(N + 1,)`` int64, non-decreasing, ``offsets[0] == 0`` and
            ``offsets[-1] == len(values)``.
        pad_id: id written into padding columns.
        min_width: the narrowest padded batch (2 for targets ``<bos> … <eos>``, so an empty
            batch still has the shape the task expects).

    ``view[i]`` is row ``i`` (int64, unpadded); ``view[i:j]`` and ``view[index_tensor]`` are
    padded ``(n, W)`` int64 batches; ``len(view)`` is ``N``.
    """

    def __init__(self, values: Tensor, offsets: Tensor, *, pad_id: int = 0,
                 min_width: int = 1) -> None:
        if values.dim() != 1 or offsets.dim() != 1 or len(offsets) < 1:
            raise ValueError("ragged tokens need 1-d values and 1-d offsets of length N + 1")
        if offsets.dtype != torch.int64:
            raise TypeError(f"offsets must be int64, got {offsets.dtype}")
        if int(offsets[0]) != 0 or int(offsets[-1]) != len(values) or bool(
                (offsets[1:] < offsets[:-1]).any()):
            raise ValueError("offsets must start at 0, never decrease and end at len(values)")
        self.values, self.offsets = values, offsets
        self.pad_id, self.min_width = int(pad_id), int(min_width)

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[int]], vocab_size: int, *, pad_id: int = 0,
                  min_width: int = 1) -> RaggedTokens:
        """Rows of ids (lists) packed flat in :func:`token_dtype` of ``vocab_size``."""
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.fromiter((t for r in rows for t in r), dtype=np.int64, count=int(offsets[-1]))
        if flat.size and (flat.min() < 0 or flat.max() >= vocab_size):
            raise ValueError(f"token ids outside [0, {vocab_size})")
        values = torch.from_numpy(flat).to(token_dtype(vocab_size))
        return cls(values, torch.from_numpy(offsets), pad_id=pad_id, min_width=min_width)

    # ---- sizes ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> Tensor:
        """``(N,)`` int64 row lengths."""
        return self.offsets[1:] - self.offsets[:-1]

    @property
    def nbytes(self) -> int:
        """Bytes held by ``values`` and ``offsets``."""
        return self.values.nbytes + self.offsets.nbytes

    def select(self, keep: Tensor | np.ndarray) -> RaggedTokens:
        """The rows at positions ``keep`` (ascending or not), packed anew."""
        keep = torch.as_tensor(np.asarray(keep), dtype=torch.int64)
        starts, lengths = self.offsets[keep], self.lengths[keep]
        offsets = torch.zeros(len(keep) + 1, dtype=torch.int64)
        torch.cumsum(lengths, 0, out=offsets[1:])
        pos = torch.repeat_interleave(starts - offsets[:-1], lengths) + torch.arange(
            int(offsets[-1]))
        return RaggedTokens(self.values[pos], offsets, pad_id=self.pad_id,
                            min_width=self.min_width)

    # ---- reading --------------------------------------------------------------------------
    def rows(self, positions: Tensor) -> Tensor:
        """Rows at ``positions`` (1-d int64) as one ``(n, W)`` int64 batch right-padded with
        ``pad_id``, ``W`` the longest of them (at least ``min_width``)."""
        starts, lengths = self.offsets[positions], self.lengths[positions]
        width = max(self.min_width, int(lengths.max()) if len(lengths) else 0)
        cols = torch.arange(width)
        mask = cols[None, :] < lengths[:, None]
        if len(self.values) == 0:
            return torch.full(mask.shape, self.pad_id, dtype=torch.int64)
        index = torch.where(mask, starts[:, None] + cols[None, :], 0)
        return self.values[index].to(torch.int64).masked_fill_(~mask, self.pad_id)

    def __getitem__(self, key: int | slice | Sequence[int] | Tensor) -> Tensor:
        if isinstance(key, slice):
            return self.rows(torch.arange(len(self))[key])
        if isinstance(key, (int, np.integer)):
            i = range(len(self))[key]
            return self.values[int(self.offsets[i]):int(self.offsets[i + 1])].to(torch.int64)
        return self.rows(torch.as_tensor(key, dtype=torch.int64).reshape(-1))

    def padded(self) -> Tensor:
        """Every row in one ``(N, W)`` int64 tensor (``W`` the longest row)."""
        return self.rows(torch.arange(len(self)))

    def __repr__(self) -> str:
        return (f"RaggedTokens(rows={len(self)}, tokens={len(self.values)}, "
                f"dtype={self.values.dtype}, bytes={self.nbytes})")


class RaggedPairs(Dataset):
    """Source/target token rows of one split (module doc).

    ``ds[i]`` is ``(source_row, target_row)`` unpadded; the ``DataLoader`` reads batches
    through ``__getitems__``, which pads each side to the batch's longest row.
    """

    def __init__(self, sources: RaggedTokens, targets: RaggedTokens) -> None:
        if len(sources) != len(targets):
            raise ValueError(f"{len(sources)} source rows but {len(targets)} target rows")
        self.sources, self.targets = sources, targets

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.sources[int(i)], self.targets[int(i)]

    def __getitems__(self, positions: list[int]) -> list[tuple[Tensor, Tensor]]:
        """Batched read for the ``DataLoader``: rows padded per side to the batch's longest
        (so the default collate can stack them)."""
        idx = torch.as_tensor(positions, dtype=torch.int64)
        return list(zip(self.sources.rows(idx), self.targets.rows(idx), strict=True))

    def batch(self, positions: Sequence[int] | Tensor) -> tuple[Tensor, Tensor]:
        """``(inputs, targets)`` of ``positions``, each ``(n, W)`` int64, padded per side."""
        idx = torch.as_tensor(positions, dtype=torch.int64).reshape(-1)
        return self.sources.rows(idx), self.targets.rows(idx)

    def lengths(self) -> Tensor:
        """``(N, 2)`` int64: source and target length of every pair (with specials)."""
        return torch.stack([self.sources.lengths, self.targets.lengths], 1)

    def padded(self) -> tuple[Tensor, Tensor]:
        """The whole split as ``(inputs (N, S), targets (N, T))`` int64, each padded to its
        longest row (the layout before ragged storage; small splits and tests only)."""
        return self.sources.padded(), self.targets.padded()

    @property
    def nbytes(self) -> int:
        return self.sources.nbytes + self.targets.nbytes

    def __repr__(self) -> str:
        return f"RaggedPairs(pairs={len(self)}, bytes={self.nbytes})"
