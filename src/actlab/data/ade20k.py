"""Reader of the ADE20K SceneParsing benchmark (Zhou et al., "Scene Parsing through ADE20K
Dataset", CVPR 2017), as the official ``ADEChallengeData2016.zip`` unpacks::

    ADEChallengeData2016/
        images/{training,validation}/ADE_{train,val}_<8 digits>.jpg
        annotations/{training,validation}/ADE_{train,val}_<8 digits>.png   one channel, 0..150
        objectInfo150.txt                                                   class names (optional)

``data_dir`` may hold ``ADEChallengeData2016/`` or be that folder. Annotation value 0 is "other
/ unlabelled" and becomes the ignore label 255; values 1..150 are the 150 evaluation classes and
become class indices 0..149 (the benchmark's "reduce zero label" convention); any larger value
is refused with the file named. Class names come from ``objectInfo150.txt`` when it is present
(its last column, first name of each ``;``-separated list), else ``class_1`` ... ``class_150``.

Splits: ``training`` (20,210 images) is the training data (the validation split is carved from
it); ``validation`` (2,000 images) is the test split, because the test labels are not public.
Every image must have its annotation and every annotation its image (else a one-line
:class:`DatasetError` names the unpaired file).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from actlab.data.base import DatasetError
from actlab.data.files import default_data_dir
from actlab.data.prepare import Source
from actlab.data.seg_pairs import check_size, paired_source

__all__ = ["NUM_CLASSES", "IGNORE_INDEX", "LABEL_TO_CLASS", "find_ade20k_root", "find_pairs",
           "ade20k_label_map", "read_class_names", "load_ade20k"]

_DS = "ade20k"
_FOLDER = "ADEChallengeData2016"
_EXPECTED = (f"{_FOLDER}/images/<split>/*.jpg and {_FOLDER}/annotations/<split>/*.png, "
             "split = training | validation")

#: Number of evaluation classes.
NUM_CLASSES = 150
#: Label of pixels that no loss or metric counts (annotation value 0).
IGNORE_INDEX = 255
#: ``class_index = LABEL_TO_CLASS[annotation_value]`` for values 0..150 (0 -> 255, k -> k - 1).
LABEL_TO_CLASS = np.concatenate([[IGNORE_INDEX], np.arange(NUM_CLASSES)]).astype(np.uint8)


def find_ade20k_root(data_dir: str | os.PathLike[str] | None) -> Path:
    """The ``ADEChallengeData2016`` folder: ``data_dir`` itself or its child of that name."""
    base = default_data_dir(data_dir)
    hint = "" if data_dir is not None else "; pass data_dir=... or set $ACTLAB_DATA"
    for cand in (base / _FOLDER, base):
        if (cand / "images").is_dir() and (cand / "annotations").is_dir():
            return cand
    raise DatasetError(f"{_DS}: missing folder {base / _FOLDER} (expected {_EXPECTED}){hint}")


def find_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """``(image, annotation)`` paths of one split, sorted by file name."""
    img_dir, ann_dir = root / "images" / split, root / "annotations" / split
    for d in (img_dir, ann_dir):
        if not d.is_dir():
            raise DatasetError(f"{_DS}: missing folder {d} (expected {_EXPECTED})")
    images = sorted(img_dir.glob("*.jpg"))
    if not images:
        raise DatasetError(f"{_DS}: no images {img_dir}/*.jpg (expected {_EXPECTED})")
    pairs = []
    for image in images:
        ann = ann_dir / f"{image.stem}.png"
        if not ann.is_file():
            raise DatasetError(f"{_DS}: unpaired image {image}: missing annotation {ann}")
        pairs.append((image, ann))
    stems = {image.stem for image in images}
    for ann in sorted(ann_dir.glob("*.png")):
        if ann.stem not in stems:
            raise DatasetError(f"{_DS}: unpaired annotation {ann}: missing image "
                               f"{img_dir / (ann.stem + '.jpg')}")
    return pairs


def ade20k_label_map(values: np.ndarray, path: Path) -> np.ndarray:
    """Annotation values 0..150 -> class indices (0 -> 255 ignored, k -> k - 1)."""
    arr = np.asarray(values)
    if arr.size and (int(arr.max()) > NUM_CLASSES or int(arr.min()) < 0):
        bad = int(arr.max()) if int(arr.max()) > NUM_CLASSES else int(arr.min())
        raise DatasetError(f"{_DS}: {path} has annotation value {bad}; expected "
                           f"0..{NUM_CLASSES}")
    return LABEL_TO_CLASS[arr]


def read_class_names(root: Path) -> list[str]:
    """The 150 class names of ``objectInfo150.txt`` (or ``class_<k>`` when it is absent)."""
    path = root / "objectInfo150.txt"
    if not path.is_file():
        return [f"class_{k}" for k in range(1, NUM_CLASSES + 1)]
    names: dict[int, str] = {}
    for line in path.read_text().splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) >= 2 and cols[0].strip().isdigit():
            names[int(cols[0])] = cols[-1].split(";")[0].strip()
    if sorted(names) != list(range(1, NUM_CLASSES + 1)):
        raise DatasetError(f"{_DS}: {path} does not list classes 1..{NUM_CLASSES} "
                           "(expected 'Idx<TAB>Ratio<TAB>Train<TAB>Val<TAB>Name' rows)")
    return [names[k] for k in range(1, NUM_CLASSES + 1)]


def load_ade20k(
    data_dir: str | os.PathLike[str] | None,
    size: int | list[int] | tuple[int, int] | None = (512, 512),
    num_workers: int | None = None,
) -> tuple[Source, Source, list[str]]:
    """Lazy ``(train, test, class_names)``: the official training and validation splits.

    ``size`` is ``(height, width)`` after resizing (None keeps the files' sizes, which differ
    between images, so batching them fails with a one-line error).
    """
    hw = check_size(_DS, size)
    root = find_ade20k_root(data_dir)
    train = paired_source(_DS, find_pairs(root, "training"), ade20k_label_map, hw, num_workers)
    test = paired_source(_DS, find_pairs(root, "validation"), ade20k_label_map, hw,
                         num_workers)
    return train, test, read_class_names(root)
