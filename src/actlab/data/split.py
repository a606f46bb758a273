"""Seeded, optionally stratified index splits.

``split_indices(labels, size, seed)`` picks ``size`` indices out of ``len(labels)`` so that every
class keeps (as nearly as integers allow) its share of the whole: class ``c`` with ``n_c`` of
``n`` samples contributes ``floor(size * n_c / n)`` picks, and the remaining picks go to the
classes with the largest fractional remainders (Hamilton / largest-remainder apportionment).
Inside a class the picks are a uniform random subset drawn from ``numpy.random.default_rng``.

``kfold_indices(labels, k, seed)`` partitions ``range(n)`` into ``k`` folds for k-fold
cross-validation: the indices of each class are shuffled (one ``default_rng(seed)``, classes in
ascending order), the classes are concatenated, and the j-th index of that sequence goes to fold
``j mod k``. Every fold thus holds ``floor(n/k)`` or ``ceil(n/k)`` samples and each class's count
differs by at most one between folds. ``fold_split(labels, k, fold, seed)`` is ``(the other k-1
folds, fold)``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["split_indices", "fraction_to_size", "stratified_split", "kfold_indices",
           "fold_split"]


def fraction_to_size(fraction: float, n: int, *, what: str = "fraction") -> int:
    """``round(fraction * n)``, at least 1 if ``fraction > 0``; checks ``0 <= fraction < 1``."""
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool):
        raise TypeError(f"{what} must be a number in [0, 1), got {fraction!r}")
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"{what} must be in [0, 1), got {fraction!r}")
    if fraction == 0.0:
        return 0
    return max(1, int(round(fraction * n)))


def _labels_and_n(
    labels: np.ndarray | None, n: int | None, what: str
) -> tuple[np.ndarray | None, int]:
    """``(labels as a 1-D array or None, number of samples)``; ``n`` is ``len(labels)`` when
    labels are given."""
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim != 1:
            raise ValueError(f"labels must be 1-D for {what}, got {labels.shape}")
        return labels, len(labels)
    if n is None:
        raise ValueError("give labels or n")
    return None, n


def _apportion(counts: np.ndarray, size: int) -> np.ndarray:
    """Largest-remainder allocation of ``size`` picks over classes with ``counts`` members."""
    n = int(counts.sum())
    quota = counts.astype(np.float64) * size / n
    take = np.floor(quota).astype(np.int64)
    left = size - int(take.sum())
    if left > 0:
        order = np.argsort(-(quota - take), kind="stable")
        take[order[:left]] += 1
    return np.minimum(take, counts)


def split_indices(
    labels: np.ndarray | None,
    size: int,
    seed: int,
    *,
    n: int | None = None,
    stratify: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` into ``(rest, picked)`` with ``len(picked) == size``.

    Args:
        labels: ``(n,)`` integer class labels used for stratification, or ``None`` for a plain
            random split (then ``n`` must be given).
        size: number of indices to pick, ``0 <= size <= n``.
        seed: seed of the ``numpy.random.default_rng`` that draws the picks.
        n: number of samples when ``labels`` is ``None``.
        stratify: keep class proportions (needs ``labels``).

    Returns:
        ``(rest, picked)``: two sorted, disjoint ``int64`` index arrays covering ``range(n)``.
    """
    labels, n = _labels_and_n(labels, n, "a stratified split")
    if not 0 <= size <= n:
        raise ValueError(f"cannot pick {size} of {n} samples")
    rng = np.random.default_rng(seed)
    if labels is None or not stratify:
        picked = rng.permutation(n)[:size]
    else:
        classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        take = _apportion(counts, size)
        order = np.argsort(inverse, kind="stable")  # indices grouped by class, ascending
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        parts = [
            rng.permutation(order[s : s + c])[:k]
            for s, c, k in zip(starts, counts, take, strict=True)
        ]
        picked = np.concatenate(parts) if parts else np.empty(0, np.int64)
    mask = np.zeros(n, dtype=bool)
    mask[picked] = True
    return np.flatnonzero(~mask).astype(np.int64), np.flatnonzero(mask).astype(np.int64)


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(rest, held_out)`` with ``round(fraction * n)`` held-out indices, stratified by label."""
    labels = np.asarray(labels)
    return split_indices(labels, fraction_to_size(fraction, len(labels)), seed)


def kfold_indices(
    labels: np.ndarray | None,
    k: int,
    seed: int,
    *,
    n: int | None = None,
    stratify: bool = True,
) -> list[np.ndarray]:
    """Partition ``range(n)`` into ``k`` disjoint folds (sorted ``int64`` arrays), see the module
    docstring. ``labels`` (``(n,)`` class labels) stratifies the folds; ``None`` or
    ``stratify=False`` deals out one random permutation of ``range(n)`` instead."""
    labels, n = _labels_and_n(labels, n, "stratified folds")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k-fold needs an integer k >= 2, got {k!r}")
    if k > n:
        raise ValueError(f"cannot split {n} samples into {k} folds")
    rng = np.random.default_rng(seed)
    if labels is None or not stratify:
        order = rng.permutation(n)
    else:
        _, inverse = np.unique(labels, return_inverse=True)
        grouped = np.argsort(inverse, kind="stable")  # indices grouped by class, ascending
        bounds = np.flatnonzero(np.diff(inverse[grouped])) + 1
        order = np.concatenate([rng.permutation(part) for part in np.split(grouped, bounds)])
    fold_of = np.empty(n, dtype=np.int64)
    fold_of[order] = np.arange(n) % k
    return [np.flatnonzero(fold_of == i).astype(np.int64) for i in range(int(k))]


def fold_split(
    labels: np.ndarray | None,
    k: int,
    fold: int,
    seed: int,
    *,
    n: int | None = None,
    stratify: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """``(rest, held)``: fold ``fold`` of :func:`kfold_indices` and the union of the others."""
    if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= fold < k:
        raise ValueError(f"fold must be an integer in [0, {k}), got {fold!r}")
    folds = kfold_indices(labels, k, seed, n=n, stratify=stratify)
    held = folds[int(fold)]
    rest = np.sort(np.concatenate([f for i, f in enumerate(folds) if i != fold]))
    return rest.astype(np.int64), held
