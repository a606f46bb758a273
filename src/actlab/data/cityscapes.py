"""Reader of the Cityscapes fine-annotation layout (Cordts et al., CVPR 2016).

Layout under ``data_dir`` (or ``data_dir/cityscapes``), as the official ``leftImg8bit_trainvaltest``
and ``gtFine_trainvaltest`` archives unpack::

    leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png     RGB images
    gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png      label IDs 0..33

Every image must have its ``*_gtFine_labelIds.png`` and every label map its image (otherwise a
one-line :class:`DatasetError` names the unpaired file). The 34 label IDs are mapped to the 19
evaluation classes ("train IDs") of the official table (cityscapesScripts ``helpers/labels.py``);
every other ID (unlabeled, ego vehicle, rectification border, out of roi, static, dynamic,
ground, parking, rail track, guard rail, bridge, tunnel, polegroup, caravan, trailer) becomes
:data:`IGNORE_INDEX` = 255, which the loss and the metrics skip.

Splits: the official ``train`` split is the training data (the validation split is carved from
it by :func:`actlab.data.prepare.prepare_splits`); the official ``val`` split is the test split,
because the labels of the official ``test`` split are not public. Images are resized with
bilinear filtering and label maps with nearest-neighbour (so no label is ever interpolated) to
``size = (height, width)``; only the samples that survive ``max_*`` subsetting are decoded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from actlab.data.base import DatasetError
from actlab.data.files import default_data_dir
from actlab.data.prepare import Source

__all__ = [
    "CITYSCAPES_CLASSES",
    "LABEL_TO_TRAIN_ID",
    "IGNORE_INDEX",
    "label_ids_to_train_ids",
    "find_pairs",
    "load_cityscapes",
]

_DS = "cityscapes"
_EXPECTED = (
    "the Cityscapes layout leftImg8bit/<split>/<city>/*_leftImg8bit.png and "
    "gtFine/<split>/<city>/*_gtFine_labelIds.png"
)
_IMG_SUFFIX = "_leftImg8bit.png"
_LABEL_SUFFIX = "_gtFine_labelIds.png"

#: Label of pixels that no loss or metric counts.
IGNORE_INDEX = 255

#: The 19 evaluation classes, in train-ID order.
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
# label ID of each train ID 0..18 (official table; all other IDs are ignored)
_EVAL_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)

#: Lookup table ``train_id = LABEL_TO_TRAIN_ID[label_id]`` for any uint8 label ID.
LABEL_TO_TRAIN_ID = np.full(256, IGNORE_INDEX, dtype=np.uint8)
LABEL_TO_TRAIN_ID[list(_EVAL_LABEL_IDS)] = np.arange(len(_EVAL_LABEL_IDS), dtype=np.uint8)


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map an integer array of Cityscapes label IDs to train IDs (uint8, 255 = ignored)."""
    arr = np.asarray(label_ids)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"label IDs must be integers, got dtype {arr.dtype}")
    out = np.full(arr.shape, IGNORE_INDEX, dtype=np.uint8)
    inside = (arr >= 0) & (arr < 256)
    out[inside] = LABEL_TO_TRAIN_ID[arr[inside]]
    return out


def _pil():
    try:
        from PIL import Image
    except ImportError as err:  # pragma: no cover - pillow comes with matplotlib
        raise DatasetError(
            f"{_DS}: reading PNG files needs Pillow (pip install pillow): {err}"
        ) from err
    return Image


def _root(data_dir: str | os.PathLike[str] | None) -> Path:
    base = default_data_dir(data_dir)
    hint = "" if data_dir is not None else "; pass data_dir=... or set $ACTLAB_DATA"
    if not base.is_dir():
        raise DatasetError(
            f"{_DS}: data_dir {base} is not a directory (expected {_EXPECTED}){hint}"
        )
    for cand in (base, base / "cityscapes"):
        if (cand / "leftImg8bit").is_dir():
            return cand
    raise DatasetError(f"{_DS}: missing folder {base / 'leftImg8bit'} (expected {_EXPECTED}){hint}")


def find_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """``(image, label map)`` paths of one official split, sorted by city then file name.

    Raises :class:`DatasetError` for a missing folder, an empty split, an image without its
    ``*_gtFine_labelIds.png`` or a label map without its image.
    """
    img_dir, gt_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    for d in (img_dir, gt_dir):
        if not d.is_dir():
            raise DatasetError(f"{_DS}: missing folder {d} (expected {_EXPECTED})")
    images = sorted(img_dir.glob(f"*/*{_IMG_SUFFIX}"))
    if not images:
        raise DatasetError(
            f"{_DS}: no images {img_dir}/<city>/*{_IMG_SUFFIX} (expected {_EXPECTED})"
        )
    pairs = []
    for img in images:
        stem = img.name[: -len(_IMG_SUFFIX)]
        label = gt_dir / img.parent.name / f"{stem}{_LABEL_SUFFIX}"
        if not label.is_file():
            raise DatasetError(f"{_DS}: unpaired image {img}: missing label file {label}")
        pairs.append((img, label))
    paired = {lab for _, lab in pairs}
    for label in sorted(gt_dir.glob(f"*/*{_LABEL_SUFFIX}")):
        if label not in paired:
            stem = label.name[: -len(_LABEL_SUFFIX)]
            img = img_dir / label.parent.name / f"{stem}{_IMG_SUFFIX}"
            raise DatasetError(f"{_DS}: unpaired label file {label}: missing image {img}")
    return pairs


def _read(path: Path, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    image_mod = _pil()
    try:
        with image_mod.open(path) as im:
            if mode == "RGB":
                im = im.convert("RGB")
            elif im.mode not in ("L", "P", "I", "I;16"):
                raise ValueError(f"label map has PIL mode {im.mode!r}, expected one channel (L)")
            if size is not None and im.size != (size[1], size[0]):
                resample = (image_mod.Resampling.BILINEAR if mode == "RGB"
                            else image_mod.Resampling.NEAREST)
                im = im.resize((size[1], size[0]), resample)
            arr = np.asarray(im)
    except FileNotFoundError as err:
        raise DatasetError(f"{_DS}: missing file {path}") from err
    except Exception as err:  # PIL.UnidentifiedImageError, OSError on truncated data, ...
        raise DatasetError(
            f"{_DS}: cannot decode {path} ({type(err).__name__}: {err}); expected a PNG"
        ) from err
    return arr


class _Decoder:
    """Decode many files of one kind (``"RGB"`` images or ``"L"`` label maps) at one size."""

    def __init__(self, paths: Sequence[Path], mode: str, size: tuple[int, int] | None,
                 num_workers: int | None) -> None:
        self.paths = list(paths)
        self.mode, self.size, self.num_workers = mode, size, num_workers

    def _one(self, path: Path) -> np.ndarray:
        arr = _read(path, self.mode, self.size)
        if self.mode == "RGB":
            return arr.transpose(2, 0, 1)
        return label_ids_to_train_ids(arr)

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
                f"{_DS}: images of different sizes {sorted(shapes)[:2]} in one split; "
                "pass size=[height, width] to resize them"
            )
        if not arrays:
            return np.empty((0,), dtype=np.uint8)
        return np.stack(arrays).astype(np.uint8, copy=False)


class _ImageFetch(_Decoder):
    """``fetch(idx)``: ``(len(idx), 3, H, W)`` uint8 images (picklable for loader workers)."""

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        return self.decode(idx)


class _LabelMaps(_Decoder):
    """Array-like ``(N, H, W)`` train-ID maps decoded on indexing (``maps[idx]``)."""

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


def _check_size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1
                   for s in size)):
        raise ValueError(
            f"{_DS}: size must be a positive int or [height, width] of positive ints, got {size!r}"
        )
    return int(size[0]), int(size[1])


def _source(pairs: list[tuple[Path, Path]], size: tuple[int, int] | None,
            num_workers: int | None) -> Source:
    images = _ImageFetch([p for p, _ in pairs], "RGB", size, num_workers)
    labels = _LabelMaps([q for _, q in pairs], "L", size, num_workers)
    return Source(labels, images)  # type: ignore[arg-type]  # array-like label maps


def load_cityscapes(
    data_dir: str | os.PathLike[str] | None,
    size: int | Sequence[int] | None = (256, 512),
    test_split: str = "val",
    num_workers: int | None = None,
) -> tuple[Source, Source]:
    """Lazy ``(train, test)`` sources: official ``train`` and ``test_split`` (default ``val``).

    ``size`` is ``(height, width)`` after resizing (None keeps the files' 1024x2048).
    """
    if test_split not in ("val", "test"):
        raise ValueError(f"{_DS}: test_split must be 'val' or 'test', got {test_split!r}")
    hw = _check_size(size)
    root = _root(data_dir)
    return (_source(find_pairs(root, "train"), hw, num_workers),
            _source(find_pairs(root, test_split), hw, num_workers))
