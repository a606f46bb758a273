"""Reader of the Tiny ImageNet folder layout (``tiny-imagenet-200/``, Stanford CS231n, 2015).

Layout::

    tiny-imagenet-200/
        wnids.txt                          200 WordNet ids, one per line (class order)
        words.txt                          optional: "<wnid>\\t<names>" lines
        train/<wnid>/images/*.JPEG         500 64x64 images per class
        val/images/*.JPEG                  10,000 images
        val/val_annotations.txt            "<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>" lines

The labelled ``val`` set serves as the test split (the official ``test`` folder is unlabelled).
Images are decoded with Pillow (greyscale images are converted to RGB) only for the indices
that are actually used, in threads.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from actlab.data.base import DatasetError
from actlab.data.files import find_file, find_root
from actlab.data.prepare import Source

__all__ = ["load_tiny_imagenet", "decode_images", "TINY_IMAGENET_SIZE"]

TINY_IMAGENET_SIZE = 64
_DS = "tiny_imagenet"
_EXPECTED = (
    "the Tiny ImageNet layout tiny-imagenet-200/{wnids.txt, train/<wnid>/images/*.JPEG, "
    "val/images/*.JPEG, val/val_annotations.txt}"
)
_IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


def _pil():
    try:
        from PIL import Image
    except ImportError as err:  # pragma: no cover - pillow comes with matplotlib
        raise DatasetError(
            f"{_DS}: reading JPEG files needs Pillow (pip install pillow): {err}"
        ) from err
    return Image


def _decode(path: Path, size: int) -> np.ndarray:
    image_mod = _pil()
    try:
        with image_mod.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError as err:
        raise DatasetError(f"{_DS}: missing file {path}") from err
    except Exception as err:  # PIL.UnidentifiedImageError, OSError on truncated data, ...
        raise DatasetError(
            f"{_DS}: cannot decode image {path} ({type(err).__name__}: {err}); expected a JPEG"
        ) from err
    if arr.shape != (size, size, 3):
        raise DatasetError(
            f"{_DS}: image {path} is {arr.shape[1]}x{arr.shape[0]}, expected {size}x{size}"
        )
    return arr.transpose(2, 0, 1)


def decode_images(
    paths: list[Path], size: int = TINY_IMAGENET_SIZE, num_workers: int | None = None
) -> np.ndarray:
    """Decode ``paths`` into an ``(N, 3, size, size)`` uint8 array (threaded)."""
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    workers = num_workers or min(8, os.cpu_count() or 1)
    if workers <= 1 or len(paths) < 64:
        for i, p in enumerate(paths):
            out[i] = _decode(p, size)
        return out
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, arr in enumerate(pool.map(lambda p: _decode(p, size), paths)):
            out[i] = arr
    return out


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{_DS}: cannot read {path}: {err}") from err
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def _class_names(root: Path, wnids: list[str]) -> list[str]:
    words = root / "words.txt"
    if not words.is_file():
        return list(wnids)
    lookup = {}
    for line in _read_lines(words):
        wnid, _, names = line.partition("\t")
        lookup[wnid] = names.split(",")[0].strip() or wnid
    return [lookup.get(w, w) for w in wnids]


class _ImageFetch:
    """``fetch(idx)``: decode the JPEGs at ``idx`` (a picklable callable for loader workers)."""

    def __init__(self, paths: list[Path], num_workers: int | None) -> None:
        self.paths = np.asarray(paths, dtype=object)
        self.num_workers = num_workers

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        return decode_images(list(self.paths[idx]), num_workers=self.num_workers)


def _source(paths: list[Path], labels: list[int], num_workers: int | None) -> Source:
    return Source(np.asarray(labels, dtype=np.int64), _ImageFetch(paths, num_workers))


def load_tiny_imagenet(
    data_dir: str | os.PathLike[str] | None, num_workers: int | None = None
) -> tuple[Source, Source, list[str]]:
    """Lazy ``(train, test, class_names)`` sources for Tiny ImageNet (200 classes, 64x64 RGB)."""
    root = find_root(_DS, data_dir, ("tiny-imagenet-200", ""), ("wnids.txt",), _EXPECTED)
    wnids = _read_lines(root / "wnids.txt")
    if len(set(wnids)) != len(wnids) or not wnids:
        raise DatasetError(f"{_DS}: {root / 'wnids.txt'} must list distinct WordNet ids")
    index = {w: i for i, w in enumerate(wnids)}

    train_paths: list[Path] = []
    train_labels: list[int] = []
    for wnid in wnids:
        folder = root / "train" / wnid / "images"
        if not folder.is_dir():
            raise DatasetError(f"{_DS}: missing folder {folder} (expected {_EXPECTED})")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if not files:
            raise DatasetError(f"{_DS}: no images in {folder} (expected *.JPEG files)")
        train_paths += files
        train_labels += [index[wnid]] * len(files)

    ann = find_file(_DS, root / "val", ("val_annotations.txt",), _EXPECTED)
    test_paths: list[Path] = []
    test_labels: list[int] = []
    for n, line in enumerate(_read_lines(ann), start=1):
        fields = line.split("\t") if "\t" in line else line.split()
        if len(fields) < 2 or fields[1] not in index:
            raise DatasetError(
                f"{_DS}: {ann} line {n} is {line[:60]!r}, expected '<file>\\t<wnid>\\t...' "
                "with a wnid from wnids.txt"
            )
        test_paths.append(root / "val" / "images" / fields[0])
        test_labels.append(index[fields[1]])

    return (
        _source(train_paths, train_labels, num_workers),
        _source(test_paths, test_labels, num_workers),
        _class_names(root, wnids),
    )
