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
``size = (height, width)``; only the samples that survive ``max_*`` subsetting are decoded
(:mod:`actlab.data.seg_pairs`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from actlab.data.base import DatasetError
from actlab.data.files import default_data_dir
from actlab.data.prepare import Source
from actlab.data.seg_pairs import check_size, paired_source

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


def _label_map(label_ids: np.ndarray, path: Path) -> np.ndarray:
    return label_ids_to_train_ids(label_ids)


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
    hw = check_size(_DS, size)
    root = _root(data_dir)
    return (paired_source(_DS, find_pairs(root, "train"), _label_map, hw, num_workers),
            paired_source(_DS, find_pairs(root, test_split), _label_map, hw, num_workers))
