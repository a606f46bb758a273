"""Lazy (image, label map) pairs of a segmentation dataset stored as image files.

Shared by the Cityscapes, Pascal VOC segmentation and ADE20K readers: images (JPEG or PNG) are
decoded to ``(3, H, W)`` uint8 RGB arrays and label maps (one-channel PNGs: mode ``L``, palette
``P`` or 16/32-bit ``I``, read as their integer values / palette indices) are passed through
the dataset's ``label_map`` to class indices with 255 = ignored. With ``size = (height,
width)`` images are resized bilinearly and label maps by nearest neighbour (no label is ever
interpolated); only the samples that are used are decoded, with a thread pool.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from actlab.data.base import DatasetError
from actlab.data.prepare import Source

__all__ = ["check_size", "read_pixels", "paired_source"]

LabelMap = Callable[[np.ndarray, Path], np.ndarray]
#: PIL modes accepted for label maps (read as their integer values / palette indices).
LABEL_MODES = ("L", "P", "I", "I;16")


def check_size(dataset: str, size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``size`` as ``(height, width)`` (an int means a square), or None; bad values raise."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1
                   for s in size)):
        raise ValueError(
            f"{dataset}: size must be a positive int or [height, width] of positive ints, "
            f"got {size!r}"
        )
    return int(size[0]), int(size[1])


def read_pixels(dataset: str, path: Path, rgb: bool, size: tuple[int, int] | None) -> np.ndarray:
    """``(H, W, 3)`` RGB pixels (``rgb=True``) or ``(H, W)`` label indices of one file."""
    try:
        from PIL import Image
    except ImportError as err:  # pragma: no cover - pillow is a dev dependency
        raise DatasetError(f"{dataset}: reading image files needs Pillow: {err}") from err
    try:
        with Image.open(path) as im:
            if rgb:
                im = im.convert("RGB")
            elif im.mode not in LABEL_MODES:
                raise ValueError(f"label map has PIL mode {im.mode!r}, expected one channel "
                                 "(L, palette P, or 16/32-bit I)")
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR if rgb
                               else Image.Resampling.NEAREST)
            return np.asarray(im)
    except FileNotFoundError:
        raise DatasetError(f"{dataset}: missing file {path}") from None
    except Exception as err:  # PIL.UnidentifiedImageError, OSError on truncated data, ...
        raise DatasetError(f"{dataset}: cannot decode {path} ({type(err).__name__}: {err})") \
            from err


class _Decoder:
    """Decode files of one kind (images or label maps) of one split at one size."""

    def __init__(self, dataset: str, paths: Sequence[Path], label_map: LabelMap | None,
                 size: tuple[int, int] | None, num_workers: int | None) -> None:
        self.dataset, self.paths, self.label_map = dataset, list(paths), label_map
        self.size, self.num_workers = size, num_workers

    def _one(self, path: Path) -> np.ndarray:
        if self.label_map is None:
            return read_pixels(self.dataset, path, True, self.size).transpose(2, 0, 1)
        return self.label_map(read_pixels(self.dataset, path, False, self.size), path)

    def decode(self, idx: np.ndarray) -> np.ndarray:
        paths = [self.paths[int(i)] for i in np.asarray(idx).reshape(-1)]
        workers = self.num_workers or min(8, os.cpu_count() or 1)
        if workers <= 1 or len(paths) < 8:
            arrays = [self._one(p) for p in paths]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                arrays = list(pool.map(self._one, paths))
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise DatasetError(
                f"{self.dataset}: images of different sizes {sorted(shapes)[:2]} in one split; "
                "pass size=[height, width] to resize them"
            )
        if not arrays:  # an empty split keeps the sample shape: (0, 3, H, W) or (0, H, W)
            return np.empty((0, *self._sample_shape()), dtype=np.uint8)
        return np.stack(arrays).astype(np.uint8, copy=False)

    def _sample_shape(self) -> tuple[int, ...]:
        if self.size is not None:
            return (3, *self.size) if self.label_map is None else self.size
        return self._one(self.paths[0]).shape if self.paths else (0, 0)


class _ImageFetch(_Decoder):
    """``fetch(idx)``: ``(len(idx), 3, H, W)`` uint8 images (picklable for loader workers)."""

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        return self.decode(idx)


class _LabelMaps(_Decoder):
    """Array-like ``(N, H, W)`` class-index maps decoded on indexing (``maps[idx]``)."""

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx) -> np.ndarray:
        if isinstance(idx, slice):
            idx = np.arange(len(self))[idx]
        if np.ndim(idx) == 0:
            return self.decode(np.asarray([idx]))[0]
        return self.decode(np.asarray(idx))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:  # decodes every map
        out = self.decode(np.arange(len(self)))
        return out if dtype is None else out.astype(dtype)


def paired_source(dataset: str, pairs: Sequence[tuple[Path, Path]], label_map: LabelMap,
                  size: tuple[int, int] | None, num_workers: int | None = None) -> Source:
    """A lazy :class:`Source` of ``(image, label file)`` pairs; ``label_map(indices, path)``
    turns a label file's integer indices into class indices (255 = ignored) or raises."""
    images = _ImageFetch(dataset, [p for p, _ in pairs], None, size, num_workers)
    labels = _LabelMaps(dataset, [q for _, q in pairs], label_map, size, num_workers)
    return Source(labels, images)  # type: ignore[arg-type]  # array-like label maps
