"""From raw arrays to :class:`DatasetSplits`: carve splits, subset, standardise, tensorise.

The pipeline, identical for every dataset:

1. If the dataset has no official test split, a test split of ``test_fraction`` is carved from
   the training data with a *fixed* seed (``TEST_SEED``), so it is the same for every ``seed``.
2. A validation split of ``val_fraction`` is carved from the (remaining) training data with
   ``seed``: stratified by class for classification, uniform for segmentation. With ``folds = k``
   (k-fold cross-validation) the remaining training data is instead partitioned into ``k`` folds
   with ``seed`` (:func:`actlab.data.split.kfold_indices`) and fold ``fold`` is the validation
   split; the model trains on the other ``k - 1`` (``val_fraction`` must then be 0).
   A dataset may instead bring a separate validation ``Source`` (``val=``, e.g. MNIST-1D's
   extra generated split): then nothing is carved and the training split is left whole.
3. ``max_train`` / ``max_val`` / ``max_test`` optionally shrink each split (stratified, seeded).
4. Inputs are rescaled by a fixed factor (``scale``, e.g. 1/255), then standardised per channel
   with the mean and standard deviation of the final *training* split:
   ``x <- (scale * x - mean_c) / std_c``.

Raw inputs are only touched through ``Source.fetch(indices)``, once per used sample, so readers
of large datasets (Tiny ImageNet) decode only the samples that survive subsetting; tensors and
statistics are built in chunks, without a float64 copy of the whole set.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from actlab.data.base import DatasetSplits, Task
from actlab.data.split import fold_split, fraction_to_size, split_indices

__all__ = ["Source", "prepare_splits", "channel_stats", "chunked_channel_stats", "TEST_SEED",
           "resolve_dtype"]

#: Seed of the test carve for datasets without an official test split (never varies).
TEST_SEED = 1_234_567

_CHUNK = 4096


@dataclass
class Source:
    """Raw samples of one official split, read on demand.

    Attributes:
        targets: ``(N,)`` class labels or ``(N, H, W)`` label maps (any integer dtype).
        fetch: ``fetch(indices) -> array (len(indices), C, *spatial)`` of raw inputs.
    """

    targets: np.ndarray
    fetch: Callable[[np.ndarray], np.ndarray]

    @classmethod
    def from_arrays(cls, inputs: np.ndarray, targets: np.ndarray) -> Source:
        if len(inputs) != len(targets):
            raise ValueError(f"{len(inputs)} inputs but {len(targets)} targets")
        return cls(np.asarray(targets), ArrayFetch(inputs))

    @classmethod
    def from_npy(cls, path: str | os.PathLike[str], targets: np.ndarray) -> Source:
        """Inputs in a ``.npy`` file ``(N, C, *spatial)``, memory-mapped: only the rows asked
        for are read (each process maps the file itself, so it pickles as its path)."""
        fetch = NpyFetch(path)
        if fetch.shape[0] != len(targets):
            raise ValueError(f"{path}: {fetch.shape[0]} inputs but {len(targets)} targets")
        return cls(np.asarray(targets), fetch)

    def __len__(self) -> int:
        return len(self.targets)


class ArrayFetch:
    """``fetch(idx) = inputs[idx]`` for an in-memory array (a picklable callable)."""

    def __init__(self, inputs: np.ndarray) -> None:
        self.inputs = inputs

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        return self.inputs[idx]


class NpyFetch:
    """``fetch(idx)`` = rows of a memory-mapped ``.npy`` file, opened lazily per process."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._array: np.ndarray | None = None
        self.shape = self._open().shape

    def _open(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        order = np.argsort(idx, kind="stable")  # read the file front to back
        out = np.empty((len(idx), *self.shape[1:]), dtype=self._open().dtype)
        out[order] = self._open()[np.asarray(idx)[order]]
        return out

    def __getstate__(self) -> dict:
        return {"path": self.path, "shape": self.shape, "_array": None}


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """``torch.float32`` from ``torch.float32`` or ``"float32"``; floating dtypes only."""
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)  # type: ignore[assignment]
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype (e.g. torch.float32), got {dtype!r}")
    return dtype


def _chunks(idx: np.ndarray, size: int = _CHUNK):
    for s in range(0, len(idx), size):
        yield s, idx[s : s + size]


def channel_stats(x: torch.Tensor, chunk: int = _CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and population standard deviation of ``x`` ``(N, C, *spatial)``.

    Deviations from the first chunk's mean are formed in ``x``'s dtype (at least float32) and
    summed in float64, chunk by chunk, so no float64 copy of ``x`` is made.
    """
    if len(x) == 0:
        raise ValueError("cannot compute statistics of an empty training split")
    return chunked_channel_stats(x[start : start + chunk] for start in range(0, len(x), chunk))


def chunked_channel_stats(chunks: Iterable[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`channel_stats` of the concatenation of ``chunks`` without concatenating them
    (the first chunk's mean is the shift), so a streamed split gets the same numbers as the
    in-memory tensor cut into the same chunks."""
    s1 = s2 = shift = shift_w = None
    count = 0
    work = torch.float32
    for part in chunks:
        if shift_w is None:
            work = torch.float64 if part.dtype == torch.float64 else torch.float32
            dims = (0, *range(2, part.dim()))
            view = (1, -1, *([1] * (part.dim() - 2)))
            shift_w = part.to(torch.float64).mean(dim=dims).to(work).view(view)
            shift = shift_w.reshape(-1).to(torch.float64)  # the shift actually subtracted
            s1 = torch.zeros_like(shift)
            s2 = torch.zeros_like(shift)
        d = part.to(work) - shift_w
        s1 += d.sum(dim=dims, dtype=torch.float64)
        s2 += (d * d).sum(dim=dims, dtype=torch.float64)
        count += part.numel() // part.shape[1]
    if shift is None or count == 0:
        raise ValueError("cannot compute statistics of an empty training split")
    m = s1 / count
    var = (s2 / count - m * m).clamp_min(0.0)
    return (shift + m).numpy(), var.sqrt().numpy()


def _materialise(
    source: Source,
    idx: np.ndarray,
    scale: float,
    dtype: torch.dtype,
    sample_shape: tuple[int, ...] | None = None,
) -> TensorDataset:
    """``TensorDataset(scale * inputs[idx], targets[idx])``, fetched and filled chunk by chunk.

    ``sample_shape`` is taken from the first chunk when not given (needed for empty ``idx``).
    """
    x: torch.Tensor | None = None
    work = torch.float64 if dtype == torch.float64 else torch.float32
    if sample_shape is not None:
        x = torch.empty((len(idx), *sample_shape), dtype=dtype)
    for start, part in _chunks(idx):
        raw = np.asarray(source.fetch(part))
        if x is None:
            sample_shape = tuple(int(s) for s in raw.shape[1:])
            x = torch.empty((len(idx), *sample_shape), dtype=dtype)
        if raw.shape[1:] != sample_shape:
            raise ValueError(f"inconsistent sample shapes {raw.shape[1:]} and {sample_shape}")
        chunk = torch.from_numpy(np.ascontiguousarray(raw)).to(work)
        x[start : start + len(part)] = chunk * scale if scale != 1.0 else chunk
    if x is None:
        raise ValueError("cannot infer the sample shape of an empty split")
    y = torch.from_numpy(np.ascontiguousarray(source.targets[idx]).astype(np.int64))
    return TensorDataset(x, y)


def _standardise_(ds: TensorDataset, mean: np.ndarray, std: np.ndarray) -> None:
    """In place ``x <- (x - mean_c) / std_c`` in the tensor's own dtype (chunked)."""
    x = ds.tensors[0]
    view = (1, -1, *([1] * (x.dim() - 2)))
    m = torch.as_tensor(mean, dtype=x.dtype).view(view)
    inv = torch.as_tensor(1.0 / std, dtype=x.dtype).view(view)
    for start in range(0, len(x), _CHUNK):
        x[start : start + _CHUNK].sub_(m).mul_(inv)


def _check_max(value: int | None, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive int or None, got {value!r}")
    return int(value)


def _shrink(
    targets: np.ndarray | None, idx: np.ndarray, limit: int | None, seed: int
) -> np.ndarray:
    if limit is None or limit >= len(idx):
        return idx
    labels = None if targets is None else targets[idx]
    _, keep = split_indices(labels, limit, seed, n=len(idx))
    return idx[keep]


def prepare_splits(
    name: str,
    task: Task,
    train: Source,
    test: Source | None,
    *,
    num_classes: int,
    val: Source | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    test_fraction: float = 0.2,
    max_train: int | None = None,
    max_val: int | None = None,
    max_test: int | None = None,
    scale: float = 1.0,
    normalize: bool = True,
    dtype: torch.dtype | str = torch.float32,
    class_names: Sequence[str] | None = None,
    meta: dict[str, Any] | None = None,
    stream: bool = False,
    folds: int | None = None,
    fold: int | None = None,
) -> DatasetSplits:
    """Run the split / subset / standardise pipeline described in the module docstring.

    ``seed`` controls the validation carve and the ``max_*`` subsets; the test split never
    depends on it. Integer ``seed`` values are accepted (the seed of a numpy ``default_rng``).
    ``stream=True`` gives :class:`~actlab.data.stream.SourceDataset` splits that read each
    sample from ``train`` / ``test`` when asked, with the same values (the statistics are
    gathered chunk by chunk; nothing is held but labels). ``val``: a separate validation
    source used whole (``val_fraction`` must be 0 and ``folds`` unset); ``max_val`` still
    applies to it.
    """
    if not isinstance(stream, bool):
        raise TypeError(f"stream must be a bool, got {stream!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    dtype = resolve_dtype(dtype)
    max_train = _check_max(max_train, "max_train")
    max_val = _check_max(max_val, "max_val")
    max_test = _check_max(max_test, "max_test")
    stratify = task == "classification"
    labels = np.asarray(train.targets) if stratify else None

    all_train = np.arange(len(train), dtype=np.int64)
    if test is None:
        n_test = fraction_to_size(test_fraction, len(train), what="test_fraction")
        if n_test == 0:
            raise ValueError(f"{name} has no official test split: test_fraction must be > 0")
        rest, test_idx = split_indices(labels, n_test, TEST_SEED, n=len(train))
        test_src = train
    else:
        rest, test_idx = all_train, np.arange(len(test), dtype=np.int64)
        test_src = test

    sub_labels = None if labels is None else labels[rest]
    if val is not None:
        if val_fraction or folds is not None:
            raise ValueError(f"{name}: a separate validation split replaces the carve; "
                             f"val_fraction must be 0 and folds unset, got val_fraction="
                             f"{val_fraction}, folds={folds}")
        keep, held = np.arange(len(rest), dtype=np.int64), np.arange(len(val), dtype=np.int64)
    elif folds is None:
        if fold is not None:
            raise ValueError(f"{name}: fold={fold!r} given without folds")
        n_val = fraction_to_size(val_fraction, len(rest), what="val_fraction")
        keep, held = split_indices(sub_labels, n_val, seed, n=len(rest))
    else:
        if val_fraction:
            raise ValueError(f"{name}: with folds={folds} the held-out fold is the validation "
                             f"split; val_fraction must be 0, got {val_fraction}")
        if fold is None:
            raise ValueError(f"{name}: folds={folds} needs fold (the held-out fold, "
                             f"0..{folds - 1})")
        keep, held = fold_split(sub_labels, folds, fold, seed, n=len(rest))
    train_idx = rest[keep]
    val_idx = held if val is not None else rest[held]
    val_src = val if val is not None else train
    if len(train_idx) == 0:
        raise ValueError(f"{name}: no training samples left after carving val/test splits")

    tr_targets = None if labels is None else labels
    te_targets = None if not stratify else np.asarray(test_src.targets)
    train_idx = _shrink(tr_targets, train_idx, max_train, seed + 1)
    va_targets = tr_targets if val is None or not stratify else np.asarray(val.targets)
    val_idx = _shrink(va_targets, val_idx, max_val, seed + 2)
    test_idx = _shrink(te_targets, test_idx, max_test, TEST_SEED + 1)

    mean = std = None
    if stream:
        from actlab.data.stream import SourceDataset

        sample_shape = tuple(int(s) for s in np.asarray(train.fetch(train_idx[:1])).shape[1:])
        opts = {"scale": scale, "dtype": dtype, "sample_shape": sample_shape}
        splits = {"train": SourceDataset(train, train_idx, **opts),
                  "val": SourceDataset(val_src, val_idx, **opts),
                  "test": SourceDataset(test_src, test_idx, **opts)}
        if normalize:
            mean, std = chunked_channel_stats(
                _materialise(train, part, scale, dtype, sample_shape).tensors[0]
                for _, part in _chunks(train_idx))
            std = np.where(std > 0, std, 1.0)
            for ds in splits.values():
                ds.set_stats(mean, std)
    else:
        tr = _materialise(train, train_idx, scale, dtype)
        sample_shape = tuple(int(s) for s in tr.tensors[0].shape[1:])
        splits = {
            "train": tr,
            "val": _materialise(val_src, val_idx, scale, dtype, sample_shape),
            "test": _materialise(test_src, test_idx, scale, dtype, sample_shape),
        }
        if normalize:
            mean, std = channel_stats(splits["train"].tensors[0])
            std = np.where(std > 0, std, 1.0)
            for ds in splits.values():
                _standardise_(ds, mean, std)
    info = dict(meta or {})
    info.update(
        seed=int(seed),
        val_fraction=val_fraction,
        test_source="official" if test is not None else f"carved {test_fraction} (fixed seed)",
        scale=scale,
    )
    if val is not None:
        info["val_source"] = "separate"
    if folds is not None:
        info.update(folds=int(folds), fold=int(fold))  # type: ignore[arg-type]
    if stream:
        info["stream"] = True
    return DatasetSplits(
        name=name,
        task=task,
        num_classes=int(num_classes),
        in_channels=sample_shape[0],
        input_shape=sample_shape,
        class_names=list(class_names) if class_names is not None else None,
        mean=None if mean is None else tuple(float(v) for v in mean),
        std=None if std is None else tuple(float(v) for v in std),
        meta=info,
        **splits,
    )
