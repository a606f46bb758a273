"""Reader of the Pascal VOC semantic-segmentation layout (Everingham et al., IJCV 2010), as the
official VOC2012 trainval tar unpacks::

    VOCdevkit/VOC2012/
        JPEGImages/<id>.jpg
        SegmentationClass/<id>.png            palette PNGs: 0 background, 1..20 the classes,
                                              255 object boundaries and "difficult" regions
        ImageSets/Segmentation/{train,val,trainval}.txt   image ids, one per line

``data_dir`` may hold ``VOCdevkit/`` or the ``VOC2012`` folder itself. A label PNG is read as its
palette *indices* (never its colours), so index k is class k of :data:`VOC_SEG_CLASSES`
(background + the 20 :data:`actlab.data.voc.VOC_CLASSES`) and 255 stays the ignore label that
the loss and the metrics skip; any other index is refused with the file named. One-channel
(mode ``L``) PNGs with the same indices are read too, so ``label_dir="SegmentationClassAug"``
with ``train_set="train_aug"`` reads the usual 10,582-image SBD-augmented training set when the
user has put it there (it is not part of the official tar).

Splits: ``train_set`` (default the official ``train``, 1,464 images) is the training data (the
validation split is carved from it); ``test_set`` (default the official ``val``, 1,449 images)
is the test split, because the VOC2012 test labels are not public.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from actlab.data.base import DatasetError
from actlab.data.files import default_data_dir
from actlab.data.prepare import Source
from actlab.data.seg_pairs import check_size, paired_source
from actlab.data.voc import VOC_CLASSES

__all__ = ["VOC_SEG_CLASSES", "IGNORE_INDEX", "find_voc_seg_root", "read_segmentation_set",
           "voc_label_map", "load_voc_segmentation"]

_DS = "voc_seg"
_EXPECTED = ("VOCdevkit/VOC2012/{JPEGImages/*.jpg, SegmentationClass/*.png, "
             "ImageSets/Segmentation/*.txt}")

#: Label of pixels that no loss or metric counts (VOC's object boundaries).
IGNORE_INDEX = 255
#: The 21 classes in index order: background, then the 20 VOC object classes.
VOC_SEG_CLASSES = ("background", *VOC_CLASSES)


def find_voc_seg_root(data_dir: str | os.PathLike[str] | None, year: str = "2012") -> Path:
    """The ``VOC<year>`` folder under ``data_dir`` (or ``data_dir/VOCdevkit``)."""
    base = default_data_dir(data_dir)
    hint = "" if data_dir is not None else "; pass data_dir=... or set $ACTLAB_DATA"
    for cand in (base / "VOCdevkit" / f"VOC{year}", base / f"VOC{year}", base):
        if cand.name == f"VOC{year}" and (cand / "ImageSets" / "Segmentation").is_dir():
            return cand
    folder = base / "VOCdevkit" / f"VOC{year}" / "ImageSets" / "Segmentation"
    raise DatasetError(f"{_DS}: missing folder {folder} (expected {_EXPECTED}){hint}")


def read_segmentation_set(root: Path, name: str) -> list[str]:
    """Image ids listed in ``ImageSets/Segmentation/<name>.txt`` (a missing or empty list
    raises, naming the file)."""
    path = root / "ImageSets" / "Segmentation" / f"{name}.txt"
    try:
        ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise DatasetError(f"{_DS}: missing file {path} (expected {_EXPECTED})") from None
    if not ids:
        raise DatasetError(f"{_DS}: image set {path} is empty")
    return ids


def voc_label_map(indices: np.ndarray, path: Path) -> np.ndarray:
    """Check a label map's indices (0..20 or 255) and return them as uint8 class indices."""
    arr = np.asarray(indices)
    bad = ((arr > len(VOC_SEG_CLASSES) - 1) & (arr != IGNORE_INDEX)) | (arr < 0)
    if bad.any():
        raise DatasetError(
            f"{_DS}: {path} has label index {int(arr[bad].flat[0])}; expected 0..20 or 255 "
            "(palette indices of SegmentationClass, not colours or instance ids)"
        )
    return arr.astype(np.uint8, copy=False)


def _pairs(root: Path, ids: list[str], label_dir: str) -> list[tuple[Path, Path]]:
    pairs = []
    for image_id in ids:
        image = root / "JPEGImages" / f"{image_id}.jpg"
        label = root / label_dir / f"{image_id}.png"
        for path in (image, label):
            if not path.is_file():
                raise DatasetError(f"{_DS}: missing file {path} (listed as {image_id!r}; "
                                   f"expected {_EXPECTED})")
        pairs.append((image, label))
    return pairs


def load_voc_segmentation(
    data_dir: str | os.PathLike[str] | None,
    size: int | list[int] | tuple[int, int] | None = (512, 512),
    train_set: str = "train",
    test_set: str = "val",
    label_dir: str = "SegmentationClass",
    num_workers: int | None = None,
) -> tuple[Source, Source]:
    """Lazy ``(train, test)`` sources of VOC2012 segmentation (see the module docstring).

    ``size`` is ``(height, width)`` after resizing (None keeps the files' sizes, which differ
    between images, so batching them fails with a one-line error).
    """
    hw = check_size(_DS, size)
    root = find_voc_seg_root(data_dir)
    if not (root / label_dir).is_dir():
        raise DatasetError(f"{_DS}: missing folder {root / label_dir} (expected {_EXPECTED})")
    train = _pairs(root, read_segmentation_set(root, train_set), label_dir)
    test = _pairs(root, read_segmentation_set(root, test_set), label_dir)
    return (paired_source(_DS, train, voc_label_map, hw, num_workers),
            paired_source(_DS, test, voc_label_map, hw, num_workers))
