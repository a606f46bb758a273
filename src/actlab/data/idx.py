"""Readers of the IDX format of MNIST and Fashion-MNIST (plain or gzipped).

IDX layout (LeCun et al., http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code
(0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of
dimensions ``d``, then ``d`` big-endian uint32 sizes, then the data in C order, big-endian.
Fashion-MNIST (Xiao et al., 2017) uses the same file names and format.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from actlab.data.base import DatasetError
from actlab.data.files import find_file, find_root, read_bytes

__all__ = ["read_idx", "parse_idx", "load_idx_dataset", "MNIST_FILES", "IDX_DTYPES"]

IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

#: Official file stems (each may also end in ``.gz``, or use ``.`` for the last ``-``).
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_SUBDIRS = {
    "mnist": ("", "MNIST/raw", "MNIST", "mnist"),
    "fashion_mnist": ("", "FashionMNIST/raw", "FashionMNIST", "fashion_mnist", "fashion-mnist"),
}


def parse_idx(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode one IDX payload into a native-endian array; :class:`DatasetError` if malformed."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise DatasetError(
            f"{source}: not an IDX file (expected magic 00 00 <type 08..0E> <ndim>, "
            f"got {raw[:4].hex(' ') or 'empty file'})"
        )
    dtype, ndim = IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{source}: truncated IDX header ({len(raw)} bytes, {ndim} dims)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DatasetError(
            f"{source}: IDX data size {len(raw) - header} bytes does not match shape {shape} "
            f"({expected} bytes expected; truncated or corrupt file)"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike[str], dataset: str = "idx") -> np.ndarray:
    """Read an IDX file (gzipped or not) into a numpy array."""
    path = Path(path)
    return parse_idx(read_bytes(dataset, path), f"{dataset}: {path}")


def _names(stem: str) -> list[str]:
    """Accepted spellings: official, gzipped, and the Kaggle-style ``train-images.idx3-ubyte``."""
    dotted = stem.replace("-idx", ".idx")
    return [stem, stem + ".gz", dotted, dotted + ".gz"]


def load_idx_dataset(
    dataset: str, data_dir: str | os.PathLike[str] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(train_x (N,1,28,28) uint8, train_y, test_x, test_y)`` for ``mnist``/``fashion_mnist``."""
    expected = (
        "the four IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (optionally .gz) in data_dir"
    )
    root = find_root(
        dataset, data_dir, _SUBDIRS[dataset], _names(MNIST_FILES["train_images"]), expected
    )
    arrays = {}
    for key, stem in MNIST_FILES.items():
        path = find_file(dataset, root, _names(stem), expected)
        arrays[key] = read_idx(path, dataset)
        want_ndim = 3 if key.endswith("images") else 1
        if arrays[key].ndim != want_ndim or arrays[key].dtype != np.uint8:
            raise DatasetError(
                f"{dataset}: {path} holds {arrays[key].ndim}-d {arrays[key].dtype} data, "
                f"expected {want_ndim}-d uint8"
            )
    for split in ("train", "test"):
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(x) != len(y):
            raise DatasetError(
                f"{dataset}: {split} has {len(x)} images but {len(y)} labels in {root}"
            )
        if len(y) and (y.min() < 0 or y.max() > 9):
            raise DatasetError(
                f"{dataset}: {split} labels in {root} outside 0..9 (min {y.min()}, max {y.max()})"
            )
    return (
        arrays["train_images"][:, None],
        arrays["train_labels"].astype(np.int64),
        arrays["test_images"][:, None],
        arrays["test_labels"].astype(np.int64),
    )
