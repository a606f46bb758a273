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
   Steps 1-3 are the carve every split builder shares, :func:`actlab.data.carve.carve_indices`.
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
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from actlab.data.base import DatasetSplits, Task
from actlab.data.carve import TEST_SEED, SplitOptions, carve_indices

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Source", "prepare_splits", "channel_stats", "chunked_channel_stats", "TEST_SEED",
           "resolve_dtype"]

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


def prepare_splits(
    name: str,
    task: Task,
    train: Source,
    test: Source | None,
    *,
    num_classes: int,
    val: Source | None = None,
    scale: float = 1.0,
    normalize: bool = True,
    dtype: torch.dtype | str = torch.float32,
    class_names: Sequence[str] | None = None,
    meta: dict[str, Any] | None = None,
    stream: bool = False,
    folds: int | None = None,
    fold: int | None = None,
    **split: Unpack[SplitOptions],
) -> DatasetSplits:
    """Run the split / subset / standardise pipeline described in the module docstring.

    ``split``: the :class:`~actlab.data.carve.SplitOptions` ``val_fraction`` (0.1), ``seed``
    (0), ``test_fraction`` (0.2), ``max_train``, ``max_val``, ``max_test`` (None). ``seed``
    controls the validation carve and the ``max_*`` subsets; the test split never depends on
    it. Integer ``seed`` values are accepted (the seed of a numpy ``default_rng``).
    ``stream=True`` gives :class:`~actlab.data.stream.SourceDataset` splits that read each
    sample from ``train`` / ``test`` when asked, with the same values (the statistics are
    gathered chunk by chunk; nothing is held but labels). ``val``: a separate validation
    source used whole (``val_fraction`` must be 0 and ``folds`` unset); ``max_val`` still
    applies to it.
    """
    if not isinstance(stream, bool):
        raise TypeError(f"stream must be a bool, got {stream!r}")
    dtype = resolve_dtype(dtype)
    stratify = task == "classification"
    cut = carve_indices(
        name, len(train), split, n_val=None if val is None else len(val),
        n_test=None if test is None else len(test),
        labels=np.asarray(train.targets) if stratify else None,
        val_labels=np.asarray(val.targets) if stratify and val is not None else None,
        test_labels=np.asarray(test.targets) if stratify and test is not None else None,
        folds=folds, fold=fold,
    )
    if val is not None and cut.options["val_fraction"]:
        raise ValueError(f"{name}: a separate validation split replaces the carve; "
                         f"val_fraction must be 0, got {cut.options['val_fraction']}")
    train_idx, val_idx, test_idx = cut.train, cut.val, cut.test
    val_src = train if val is None else val
    test_src = train if test is None else test

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
        seed=int(cut.options["seed"]),
        val_fraction=cut.options["val_fraction"],
        test_source="official" if test is not None
        else f"carved {cut.options['test_fraction']} (fixed seed)",
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
