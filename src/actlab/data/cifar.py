"""Readers of the CIFAR-10 / CIFAR-100 "python version" archives (Krizhevsky, 2009).

CIFAR-10 (``cifar-10-batches-py/``): ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``,
pickled dicts with ``b'data'`` (N x 3072 uint8: the red, green and blue 32x32 planes, row major)
and ``b'labels'``; ``batches.meta`` holds ``b'label_names'``. CIFAR-100 (``cifar-100-python/``):
``train`` and ``test`` with ``b'fine_labels'`` (100 classes) and ``b'coarse_labels'`` (20
superclasses); ``meta`` holds ``b'fine_label_names'`` / ``b'coarse_label_names'``.

The pickles are loaded with an unpickler that only resolves the handful of numpy globals an
array needs, so a tampered file cannot run code.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from actlab.data.base import DatasetError
from actlab.data.files import find_file, find_root

__all__ = ["load_cifar10", "load_cifar100", "read_cifar_pickle", "CIFAR10_CLASSES"]

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]

_ALLOWED = {
    ("_codecs", "encode"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module[len("numpy.core.") :]  # numpy 2 spelling
        return super().find_class(module, name)


def read_cifar_pickle(path: str | os.PathLike[str], dataset: str = "cifar") -> dict[bytes, Any]:
    """Load one CIFAR pickle (a dict with bytes keys) safely; :class:`DatasetError` if corrupt."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    except FileNotFoundError as err:
        raise DatasetError(f"{dataset}: missing file {path}") from err
    except Exception as err:  # pickle raises many types on garbage input
        raise DatasetError(
            f"{dataset}: cannot unpickle {path} ({type(err).__name__}: {err}); expected a CIFAR "
            "python-version batch file"
        ) from err
    if not isinstance(obj, dict):
        raise DatasetError(f"{dataset}: {path} holds a {type(obj).__name__}, expected a dict")
    return obj


def _images_labels(
    dataset: str, path: Path, label_key: bytes
) -> tuple[np.ndarray, np.ndarray]:
    batch = read_cifar_pickle(path, dataset)
    if b"data" not in batch or label_key not in batch:
        raise DatasetError(
            f"{dataset}: {path} lacks key {b'data' if b'data' not in batch else label_key!r} "
            f"(has {sorted(batch)!r})"
        )
    data = np.asarray(batch[b"data"])
    labels = _label_vector(dataset, path, label_key, batch[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetError(
            f"{dataset}: {path} b'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072)"
        )
    if len(labels) != len(data):
        raise DatasetError(f"{dataset}: {path} has {len(data)} images but {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


def _label_vector(dataset: str, path: Path, key: bytes, raw: Any) -> np.ndarray:
    """The labels as an int64 vector: a flat list/array of integers, nothing else (a nested
    list such as ``[[1, 2]] * 20`` is refused, not flattened into twice as many labels)."""
    try:
        labels = np.asarray(raw)
    except ValueError as err:  # ragged nesting
        raise DatasetError(f"{dataset}: {path} {key!r} is not a flat list of labels") from err
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DatasetError(
            f"{dataset}: {path} {key!r} has shape {labels.shape} and dtype {labels.dtype}; "
            "expected a flat list of integer class labels"
        )
    return labels.astype(np.int64)


def _names(dataset: str, path: Path, key: bytes) -> list[str] | None:
    if not path.is_file():
        return None
    meta = read_cifar_pickle(path, dataset)
    names = meta.get(key)
    if names is None:
        return None
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _check_labels(dataset: str, root: Path, labels: np.ndarray, k: int) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= k):
        raise DatasetError(
            f"{dataset}: labels in {root} outside 0..{k - 1} (min {labels.min()}, "
            f"max {labels.max()})"
        )


def load_cifar10(
    data_dir: str | os.PathLike[str] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``(train_x (50000,3,32,32) uint8, train_y, test_x, test_y, class_names)``."""
    ds = "cifar10"
    expected = "the CIFAR-10 python version: cifar-10-batches-py/data_batch_1..5 and test_batch"
    root = find_root(ds, data_dir, ("cifar-10-batches-py", ""), ("data_batch_1",), expected)
    parts = [
        _images_labels(ds, find_file(ds, root, (f"data_batch_{i}",), expected), b"labels")
        for i in range(1, 6)
    ]
    test_x, test_y = _images_labels(ds, find_file(ds, root, ("test_batch",), expected), b"labels")
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    for y in (train_y, test_y):
        _check_labels(ds, root, y, 10)
    names = _names(ds, root / "batches.meta", b"label_names")
    if names is None or len(names) != 10:
        names = list(CIFAR10_CLASSES)
    return train_x, train_y, test_x, test_y, names


def load_cifar100(
    data_dir: str | os.PathLike[str] | None, label_type: str = "fine"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str] | None]:
    """Like :func:`load_cifar10` for CIFAR-100; ``label_type``: ``"fine"`` (100) or ``"coarse"``."""
    if label_type not in ("fine", "coarse"):
        raise ValueError(f"label_type must be 'fine' or 'coarse', got {label_type!r}")
    ds = "cifar100"
    expected = "the CIFAR-100 python version: cifar-100-python/train and test"
    root = find_root(ds, data_dir, ("cifar-100-python", ""), ("train",), expected)
    key = f"{label_type}_labels".encode()
    train_x, train_y = _images_labels(ds, find_file(ds, root, ("train",), expected), key)
    test_x, test_y = _images_labels(ds, find_file(ds, root, ("test",), expected), key)
    k = 100 if label_type == "fine" else 20
    for y in (train_y, test_y):
        _check_labels(ds, root, y, k)
    names = _names(ds, root / "meta", f"{label_type}_label_names".encode())
    if names is not None and len(names) != k:
        names = None
    return train_x, train_y, test_x, test_y, names
