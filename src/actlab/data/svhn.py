"""Reader of the SVHN cropped-digits MATLAB files (Netzer et al., NIPS DL workshop 2011).

``train_32x32.mat`` / ``test_32x32.mat`` (and optionally ``extra_32x32.mat``) hold ``X`` of
shape ``(32, 32, 3, N)`` uint8 and ``y`` of shape ``(N, 1)`` with labels 1..10, where 10 stands
for the digit 0; labels are mapped to 0..9.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from actlab.data.base import DatasetError
from actlab.data.files import find_file, find_root

__all__ = ["read_svhn_mat", "load_svhn"]

_EXPECTED = "the SVHN format-2 files train_32x32.mat and test_32x32.mat"


def read_svhn_mat(
    path: str | os.PathLike[str], dataset: str = "svhn"
) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, 3, 32, 32) uint8, labels (N,) int64 in 0..9)`` from one SVHN ``.mat`` file."""
    import scipy.io

    path = Path(path)
    try:
        mat = scipy.io.loadmat(str(path), variable_names=("X", "y"))
    except FileNotFoundError as err:
        raise DatasetError(f"{dataset}: missing file {path} (expected {_EXPECTED})") from err
    except Exception as err:  # scipy raises ValueError/TypeError/OSError on garbage
        raise DatasetError(
            f"{dataset}: cannot read {path} as a MATLAB file ({type(err).__name__}: {err})"
        ) from err
    if "X" not in mat or "y" not in mat:
        raise DatasetError(f"{dataset}: {path} lacks variable 'X' or 'y' (expected {_EXPECTED})")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
        raise DatasetError(
            f"{dataset}: {path} X is {x.dtype} {x.shape}, expected uint8 (32, 32, 3, N)"
        )
    if x.shape[3] != len(y):
        raise DatasetError(f"{dataset}: {path} has {x.shape[3]} images but {len(y)} labels")
    y = y.astype(np.int64)
    if len(y) and (y.min() < 0 or y.max() > 10):
        raise DatasetError(
            f"{dataset}: {path} labels outside 0..10 (min {y.min()}, max {y.max()})"
        )
    y[y == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y


def load_svhn(
    data_dir: str | os.PathLike[str] | None, use_extra: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(train_x, train_y, test_x, test_y)``; ``use_extra`` adds ``extra_32x32.mat`` to train."""
    ds = "svhn"
    root = find_root(ds, data_dir, ("", "svhn", "SVHN"), ("train_32x32.mat",), _EXPECTED)
    train_x, train_y = read_svhn_mat(find_file(ds, root, ("train_32x32.mat",), _EXPECTED), ds)
    test_x, test_y = read_svhn_mat(find_file(ds, root, ("test_32x32.mat",), _EXPECTED), ds)
    if use_extra:
        ex_x, ex_y = read_svhn_mat(
            find_file(ds, root, ("extra_32x32.mat",), "extra_32x32.mat for use_extra=True"), ds
        )
        train_x, train_y = np.concatenate([train_x, ex_x]), np.concatenate([train_y, ex_y])
    return train_x, train_y, test_x, test_y
