"""Length-bucketed training batches: pairs of similar length share a batch, so little padding.

Random batches of sentence pairs pad every row to the longest of the batch; with WMT-like
length spreads most of the tensor is then padding. :class:`BucketBatches` plans each epoch's
batches from the epoch's random permutation (drawn by the training loop with its seeded
generator):

1. cut the permutation into *pools* of ``pool`` batches' worth of pairs (``pool × batch_size``
   pairs, or ``pool × ⌊batch_tokens / mean length⌋`` with a token budget);
2. inside each pool, sort the pairs by (length of the longer side, total length) — a stable
   sort, so ties keep the random order;
3. cut each sorted pool into batches: ``batch_size`` pairs each, or, with ``batch_tokens``,
   as many as fit greedily while ``n × max source length ≤ batch_tokens`` and
   ``n × max target length ≤ batch_tokens`` (padded tokens per side, the budget of Vaswani et
   al. 2017: batches of about 25,000 source and 25,000 target tokens);
4. shuffle the order of all batches with the loop's generator.

Every pair is in exactly one batch per epoch (with ``drop_last`` and a fixed batch size, the
final incomplete batch is dropped, as the loop does without bucketing: ``⌊N / B⌋`` batches).
The plan is a function of the permutation and the generator only, made in the training process,
so it does not depend on the number of ``DataLoader`` workers, and resuming from a checkpoint
(which holds the generator) replays it. A pair longer than ``batch_tokens`` on either side can
never fit: that is refused when the plan is built (``ValueError`` naming the longest pair),
never sent as an over-budget batch.

With a token budget the number of batches varies a little from epoch to epoch (pools differ);
the loop builds its per-step schedule with the first epoch's count (see
:meth:`BucketBatches.steps_per_epoch`).
"""

from __future__ import annotations

import bisect
import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["BucketBatches", "padding_fraction", "check_bucket_options"]


def _positive_int(name: str, value: object, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        extra = " or None" if allow_none else ""
        raise ValueError(f"{name} must be an int >= 1{extra}, got {value!r}")


def check_bucket_options(bucket: object, batch_tokens: object, bucket_pool: object) -> None:
    """One-line ``ValueError`` for a bad ``bucket`` / ``batch_tokens`` / ``bucket_pool``."""
    if not isinstance(bucket, bool):
        raise ValueError(f"bucket must be true or false, got {bucket!r}")
    _positive_int("batch_tokens", batch_tokens, allow_none=True)
    _positive_int("bucket_pool", bucket_pool)


def padding_fraction(lengths: Tensor, batches: list[list[int]]) -> float:
    """Share of padding in the padded batches: ``Σ_b Σ_side (n_b·max_b − Σ len) / Σ_b Σ_side
    n_b·max_b`` for ``lengths`` ``(N, sides)`` (0 = no padding at all)."""
    pad = total = 0
    for b in batches:
        rows = lengths[torch.as_tensor(b, dtype=torch.int64)]
        size = len(b) * rows.max(0).values
        total += int(size.sum())
        pad += int((size - rows.sum(0)).sum())
    return pad / total if total else 0.0


class BucketBatches:
    """Plans length-bucketed batches (module doc).

    Args:
        lengths: ``(N, sides)`` int lengths of every pair (source, target).
        batch_size: pairs per batch without ``batch_tokens``.
        batch_tokens: padded tokens per side and batch (``None``: fixed ``batch_size``).
        pool: batches' worth of pairs sorted together (larger: less padding, less randomness).
        drop_last: drop the final incomplete batch of a fixed batch size.
    """

    def __init__(self, lengths: Tensor, *, batch_size: int, batch_tokens: int | None = None,
                 pool: int = 100, drop_last: bool = True) -> None:
        _positive_int("batch_size", batch_size)
        _positive_int("batch_tokens", batch_tokens, allow_none=True)
        _positive_int("bucket_pool", pool)
        lengths = torch.as_tensor(lengths, dtype=torch.int64)
        if lengths.dim() == 1:
            lengths = lengths[:, None]
        if lengths.dim() != 2 or len(lengths) == 0:
            raise ValueError(f"lengths must be (N, sides) with N >= 1, got {tuple(lengths.shape)}")
        self.lengths = lengths
        self.batch_size, self.batch_tokens = int(batch_size), batch_tokens
        self.pool, self.drop_last = int(pool), bool(drop_last)
        longest = lengths.max(1).values
        if batch_tokens is not None:
            over = longest > batch_tokens
            if bool(over.any()):
                i = int(torch.argmax(longest))
                raise ValueError(
                    f"batch_tokens={batch_tokens} is smaller than {int(over.sum())} training "
                    f"pair(s) (the longest, pair {i}, has {int(longest[i])} tokens on one side): "
                    "raise batch_tokens or drop long pairs with the dataset's max_tokens")
            per_batch = max(1, batch_tokens // max(1, math.ceil(float(longest.float().mean()))))
            self.pool_pairs = self.pool * per_batch
        else:
            self.pool_pairs = self.pool * self.batch_size
        # sort key (longer side, then both sides' total), one int per pair: on WMT-like
        # lengths it pads about 40 % less than sorting by (source, target)
        total = lengths.sum(1)
        self._key = longest * (int(total.max()) + 1) + total

    def __len__(self) -> int:
        return len(self.lengths)

    def _sorted_pools(self, perm: Tensor) -> Tensor:
        """``perm`` with each pool of ``pool_pairs`` consecutive entries sorted by length."""
        pool_id = torch.arange(len(perm)) // self.pool_pairs
        keys = pool_id * (int(self._key.max()) + 1) + self._key[perm]
        return perm[torch.sort(keys, stable=True).indices]

    def _cut_fixed(self, order: Tensor) -> list[list[int]]:
        batches = [b.tolist() for b in torch.split(order, self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()  # only the last pool can end with an incomplete batch
        return batches

    def _cut_tokens(self, order: Tensor) -> list[list[int]]:
        """Greedy cut of each sorted pool: a batch grows while ``n × longest ≤ budget``.

        Inside a pool the pairs are sorted by their longer side, so the widest row of a batch
        is its last pair's longer side and ``n × longest`` grows with every pair added: each
        batch end is found by bisection (``O(batches × log pool)``, not a Python loop over
        pairs)."""
        budget = int(self.batch_tokens)
        longest = self.lengths[order].max(1).values.tolist()
        idx = order.tolist()
        batches: list[list[int]] = []
        for lo in range(0, len(idx), self.pool_pairs):
            hi = min(lo + self.pool_pairs, len(idx))
            j = lo
            while j < hi:
                start = j
                # pairs j..k fit while (k - j + 1) * longest[k] <= budget (increasing in k)
                end = bisect.bisect_right(range(start, hi), budget,
                                          key=lambda k, s=start: (k - s + 1) * longest[k])
                j = start + max(end, 1)
                batches.append(idx[start:j])
        return batches

    def plan(self, perm: Tensor, generator: torch.Generator | None = None) -> list[list[int]]:
        """This epoch's batches (lists of pair indices) from its permutation ``perm`` of
        ``range(N)``; their order is shuffled with ``generator`` (kept sorted by pool when
        ``None``, e.g. to count them)."""
        perm = torch.as_tensor(perm, dtype=torch.int64)
        if perm.shape != (len(self),):
            raise ValueError(f"perm must be a permutation of {len(self)} pairs, got shape "
                             f"{tuple(perm.shape)}")
        order = self._sorted_pools(perm)
        batches = self._cut_tokens(order) if self.batch_tokens else self._cut_fixed(order)
        if generator is not None:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
        return batches

    def steps_per_epoch(self, seed: int) -> int:
        """The number of batches of the first epoch of a loop seeded with ``seed`` (whose first
        draw is ``torch.randperm(N)`` from ``torch.Generator().manual_seed(seed)``): exact for
        a fixed batch size, the first epoch's count with a token budget."""
        if not self.batch_tokens:
            n = len(self)
            return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        return len(self.plan(perm))
