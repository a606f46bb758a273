"""MNIST-1D generated locally with the ``mnist1d`` package and cached on disk.

MNIST-1D (Greydanus & Kobak, *Scaling Down Deep Learning with MNIST-1D*, ICML 2024) turns ten
1-D digit templates into length-40 signals through random padding, scaling, translation,
correlated and i.i.d. noise and shear. ``make_dataset`` is deterministic given its seed
(default 42) and splits the samples 80 / 20 into train / test; that test split is used as the
official one. The package's ``get_dataset`` would download a pickle, so it is never called.

``make_dataset`` reseeds Python's and numpy's *global* RNGs; their states are restored
afterwards so that building the data set has no side effect on the caller's randomness.
"""

from __future__ import annotations

import hashlib
import json
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from actlab.data.cache import cache_dir as _cache_dir
from actlab.data.cache import load_arrays, save_arrays

__all__ = ["mnist1d_arrays", "mnist1d_cache_path", "MNIST1D_KEYS"]

MNIST1D_KEYS = ("x", "y", "x_test", "y_test")


def _generator_args(num_samples: int, data_seed: int) -> dict[str, Any]:
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    args.pop("url", None)
    args.update(num_samples=int(num_samples), seed=int(data_seed))
    return args


def mnist1d_cache_path(
    num_samples: int = 5000, data_seed: int = 42, cache_dir: str | Path | None = None
) -> Path:
    """Cache file of one generator configuration (the name hashes all generator arguments)."""
    args = _generator_args(num_samples, data_seed)
    digest = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:12]
    return _cache_dir(cache_dir) / f"mnist1d_n{num_samples}_s{data_seed}_{digest}.npz"


def _generate(num_samples: int, data_seed: int) -> dict[str, np.ndarray]:
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    # make_dataset seeds and draws from the legacy global RNGs; put them back afterwards.
    py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    try:
        data = make_dataset(ObjectView(_generator_args(num_samples, data_seed)))
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)  # noqa: NPY002
    return {
        "x": np.asarray(data["x"], dtype=np.float32),
        "y": np.asarray(data["y"], dtype=np.int64),
        "x_test": np.asarray(data["x_test"], dtype=np.float32),
        "y_test": np.asarray(data["y_test"], dtype=np.int64),
    }


def mnist1d_arrays(
    num_samples: int = 5000,
    data_seed: int = 42,
    *,
    cache: bool = True,
    cache_dir: str | Path | None = None,
) -> dict[str, np.ndarray]:
    """Signals ``x`` ``(N, 40)`` float32 and labels ``y``, plus the official ``x_test``/``y_test``.

    ``num_samples`` (rounded down to a multiple of 10, at least 100) is split 80/20. With
    ``cache=True`` the arrays are read from / written to the cache directory.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)):
        raise TypeError(f"num_samples must be an int, got {num_samples!r}")
    if num_samples < 100:
        raise ValueError(f"num_samples must be >= 100 (10 classes, 80/20 split), got {num_samples}")
    path = mnist1d_cache_path(num_samples, data_seed, cache_dir)
    if cache:
        hit = load_arrays(path, MNIST1D_KEYS)
        if hit is not None:
            return hit
    data = _generate(num_samples, data_seed)
    if cache:
        try:
            save_arrays(path, **data)
        except OSError as err:  # read-only home etc.: the data are still usable
            warnings.warn(f"could not cache MNIST-1D at {path}: {err}", stacklevel=2)
    return data
