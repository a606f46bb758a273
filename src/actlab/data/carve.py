"""The train / validation / test carve that every split builder shares, as index sets.

The carve sees positions in the sources only, never the targets, so one carve serves labels and
label maps (:func:`actlab.data.prepare.prepare_splits`), lists of objects
(:func:`actlab.data.detection_splits.prepare_detection_splits`) and sentence pairs
(:func:`actlab.data.parallel.prepare_parallel_splits`); class labels are passed only to
stratify. The steps:

1. Test: an official test source is used whole. Otherwise ``round(test_fraction * n)`` (at least
   1) samples of the training source are carved with the *fixed* seed :data:`TEST_SEED`, so the
   test split is the same for every ``seed``.
2. Validation: an official validation source is used whole (nothing is carved, ``val_fraction``
   is unused). With ``folds = k`` the rest of the training source is partitioned into ``k`` folds
   with ``seed`` (:func:`actlab.data.split.kfold_indices`) and fold ``fold`` is held out.
   Otherwise ``round(val_fraction * len(rest))`` samples of the rest are carved with ``seed``.
3. ``max_train`` / ``max_val`` / ``max_test`` shrink a split to a random subset drawn with
   ``seed + 1``, ``seed + 2`` and ``TEST_SEED + 1``.

Carves and subsets are :func:`actlab.data.split.split_indices` draws: stratified by class when
labels are given, uniform otherwise. Every index array is sorted ``int64``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

from actlab.data.split import fold_split, fraction_to_size, split_indices

__all__ = ["TEST_SEED", "SplitOptions", "SPLIT_DEFAULTS", "SplitIndices", "carve_indices",
           "check_seed"]

#: Seed of the test carve for datasets without an official test split (never varies).
TEST_SEED = 1_234_567


class SplitOptions(TypedDict, total=False):
    """The split keywords every builder accepts (module docstring; defaults in
    :data:`SPLIT_DEFAULTS`). ``seed`` seeds the validation carve, the folds and the ``max_*``
    subsets; the test split never depends on it."""

    val_fraction: float
    seed: int
    test_fraction: float
    max_train: int | None
    max_val: int | None
    max_test: int | None


SPLIT_DEFAULTS: SplitOptions = {"val_fraction": 0.1, "seed": 0, "test_fraction": 0.2,
                                "max_train": None, "max_val": None, "max_test": None}


@dataclass(frozen=True)
class SplitIndices:
    """Sorted ``int64`` positions of each split in its source, and the options that made them.

    ``train`` indexes the training source; ``val`` the official validation source if there is
    one, else the training source; ``test`` likewise the official test source or the training
    source. ``options`` holds every :class:`SplitOptions` key (defaults filled in).
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    options: SplitOptions


def check_seed(seed: Any) -> int:
    """``seed`` as an ``int``; ``TypeError`` unless an integer, ``ValueError`` if negative."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return int(seed)


def _check_max(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive int or None, got {value!r}")
    return int(value)


def _options(name: str, given: Mapping[str, Any]) -> SplitOptions:
    bad = sorted(set(given) - set(SPLIT_DEFAULTS))
    if bad:
        raise TypeError(f"{name}: unexpected keyword argument(s) {bad}; the split options are "
                        f"{list(SPLIT_DEFAULTS)}")
    opts: SplitOptions = {**SPLIT_DEFAULTS, **given}  # type: ignore[typeddict-item]
    check_seed(opts["seed"])
    for key in ("max_train", "max_val", "max_test"):
        _check_max(opts[key], key)  # type: ignore[literal-required]
    return opts


def _shrink(labels: np.ndarray | None, idx: np.ndarray, limit: int | None,
            seed: int) -> np.ndarray:
    """A random subset of ``limit`` of ``idx`` (stratified by ``labels[idx]``), or ``idx``."""
    if limit is None or limit >= len(idx):
        return idx
    _, keep = split_indices(None if labels is None else labels[idx], limit, seed, n=len(idx))
    return idx[keep]


def _held_out(
    name: str, labels: np.ndarray | None, n: int, val_fraction: float, seed: int,
    folds: int | None, fold: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(keep, held)`` positions in ``range(n)``: the validation carve or the k-fold split."""
    if folds is None:
        if fold is not None:
            raise ValueError(f"{name}: fold={fold!r} given without folds")
        return split_indices(labels, fraction_to_size(val_fraction, n, what="val_fraction"),
                             seed, n=n)
    if val_fraction:
        raise ValueError(f"{name}: with folds={folds} the held-out fold is the validation "
                         f"split; val_fraction must be 0, got {val_fraction}")
    if fold is None:
        raise ValueError(f"{name}: folds={folds} needs fold (the held-out fold, "
                         f"0..{folds - 1})")
    return fold_split(labels, folds, fold, seed, n=n)


def carve_indices(
    name: str,
    n_train: int,
    split: Mapping[str, Any],
    *,
    n_val: int | None = None,
    n_test: int | None = None,
    labels: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    folds: int | None = None,
    fold: int | None = None,
) -> SplitIndices:
    """Carve the splits of dataset ``name`` (module docstring) as positions in the sources.

    Args:
        name: dataset name, the prefix of error messages.
        n_train: number of samples in the training source.
        split: :class:`SplitOptions` as given by the user (missing keys take
            :data:`SPLIT_DEFAULTS`; an unknown key is a ``TypeError``).
        n_val / n_test: sizes of the official validation / test sources, ``None`` for none.
        labels: ``(n_train,)`` class labels of the training source to stratify by, or ``None``.
        val_labels / test_labels: labels of the official sources, to stratify their
            ``max_val`` / ``max_test`` subsets (``None``: uniform).
        folds / fold: k-fold cross-validation, fold ``fold`` of ``folds`` held out
            (``val_fraction`` must be 0 and there must be no official validation source).
    """
    opts = _options(name, split)
    seed = int(opts["seed"])
    labels = None if labels is None else np.asarray(labels)
    if n_test is None:
        size = fraction_to_size(opts["test_fraction"], n_train, what="test_fraction")
        if size == 0:
            raise ValueError(f"{name} has no official test split: test_fraction must be > 0")
        rest, test = split_indices(labels, size, TEST_SEED, n=n_train)
        test_labels = labels
    else:
        rest, test = np.arange(n_train, dtype=np.int64), np.arange(n_test, dtype=np.int64)
    if n_val is None:
        keep, held = _held_out(name, None if labels is None else labels[rest], len(rest),
                               opts["val_fraction"], seed, folds, fold)
        train, val, val_labels = rest[keep], rest[held], labels
    else:
        if folds is not None:
            raise ValueError(f"{name}: a separate validation split replaces the k-fold split; "
                             f"leave folds unset, got folds={folds}")
        train, val = rest, np.arange(n_val, dtype=np.int64)
    if len(train) == 0:
        raise ValueError(f"{name}: no training samples left after carving val/test splits")
    return SplitIndices(
        train=_shrink(labels, train, opts["max_train"], seed + 1),
        val=_shrink(val_labels, val, opts["max_val"], seed + 2),
        test=_shrink(test_labels, test, opts["max_test"], TEST_SEED + 1),
        options=opts,
    )
