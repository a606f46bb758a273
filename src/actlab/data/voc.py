"""Reader of the Pascal VOC detection layout (Everingham et al., "The PASCAL Visual Object Classes
(VOC) Challenge", IJCV 2010), as unpacked from the official tar files::

    VOCdevkit/VOC2007/
        Annotations/<id>.xml              one <annotation> per image (objects, boxes, flags)
        ImageSets/Main/{train,val,trainval,test}.txt   image ids, one per line
        JPEGImages/<id>.jpg

``data_dir`` may hold ``VOCdevkit/`` or the ``VOC2007`` / ``VOC2012`` folders directly. Every
``<object>`` gives ``<name>`` (one of the 20 :data:`VOC_CLASSES`), ``<difficult>`` (0/1, default
0) and ``<bndbox>`` with 1-based inclusive pixel indices ``xmin..xmax``, ``ymin..ymax``; the
box is read as the continuous pixel span ``[xmin - 1, xmax] × [ymin - 1, ymax]`` and normalised
by the JPEG's width and height. Class indices are 1..20 (0 is the detector's background), and
difficult objects are kept with their flag (the metrics ignore them as VOC does).

Images are decoded with Pillow only for the samples that are used, converted to RGB and resized
to ``image_size × image_size`` (bilinear, aspect ratio not kept, as SSD trains), which leaves the
normalised boxes unchanged.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from actlab.data.base import DatasetError, DatasetSplits
from actlab.data.detection_splits import DetectionSource
from actlab.data.files import default_data_dir
from actlab.tasks.detection.targets import ImageTargets

__all__ = ["VOC_CLASSES", "find_voc_year", "read_voc_annotation", "read_image_set",
           "load_voc_split"]

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
_INDEX = {name: i + 1 for i, name in enumerate(VOC_CLASSES)}
_DS = "voc"
_EXPECTED = "VOCdevkit/VOC<year>/{Annotations/*.xml, ImageSets/Main/*.txt, JPEGImages/*.jpg}"


def find_voc_year(data_dir: str | os.PathLike[str] | None, year: str) -> Path:
    """The ``VOC<year>`` folder under ``data_dir`` (or ``data_dir/VOCdevkit``)."""
    root = default_data_dir(data_dir)
    for cand in (root / "VOCdevkit" / f"VOC{year}", root / f"VOC{year}", root):
        if (cand / "Annotations").is_dir() and (cand / "ImageSets" / "Main").is_dir() \
                and cand.name == f"VOC{year}":
            return cand
    raise DatasetError(
        f"{_DS}: missing folder {root / 'VOCdevkit' / f'VOC{year}'} (expected {_EXPECTED})"
    )


def read_image_set(folder: Path, name: str) -> list[str]:
    """Image ids listed in ``ImageSets/Main/<name>.txt``."""
    path = folder / "ImageSets" / "Main" / f"{name}.txt"
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise DatasetError(f"{_DS}: missing file {path} (expected {_EXPECTED})") from None
    return [line.split()[0] for line in lines if line.strip()]


def _int(node: ET.Element | None, tag: str, path: Path) -> float:
    child = None if node is None else node.find(tag)
    if child is None or child.text is None:
        raise DatasetError(f"{_DS}: {path} has an object without <{tag}>")
    try:
        return float(child.text)
    except ValueError:
        raise DatasetError(f"{_DS}: {path}: <{tag}> is {child.text!r}, not a number") from None


def read_voc_annotation(path: Path, width: int, height: int) -> ImageTargets:
    """Objects of one annotation file, boxes normalised by ``width`` × ``height``."""
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise DatasetError(f"{_DS}: missing file {path} (expected {_EXPECTED})") from None
    except ET.ParseError as err:
        raise DatasetError(f"{_DS}: cannot parse {path}: {err}") from None
    boxes, labels, difficult = [], [], []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in _INDEX:
            raise DatasetError(f"{_DS}: {path}: unknown class {name!r} (expected a VOC class)")
        bb = obj.find("bndbox")
        x1, y1 = _int(bb, "xmin", path) - 1, _int(bb, "ymin", path) - 1
        x2, y2 = _int(bb, "xmax", path), _int(bb, "ymax", path)
        if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
            raise DatasetError(
                f"{_DS}: {path}: box ({x1 + 1}, {y1 + 1}, {x2}, {y2}) is empty or outside the "
                f"{width}x{height} image"
            )
        boxes.append([x1 / width, y1 / height, x2 / width, y2 / height])
        labels.append(_INDEX[name])
        difficult.append((obj.findtext("difficult") or "0").strip() == "1")
    return ImageTargets(np.asarray(boxes, np.float64).reshape(-1, 4),
                        np.asarray(labels, np.int64), np.asarray(difficult, bool))


def _pil():
    try:
        from PIL import Image
    except ImportError as err:  # pragma: no cover - pillow is a dev dependency
        raise ImportError("the VOC reader needs Pillow: pip install 'actlab[detection]'") from err
    return Image


def _image_path(folder: Path, image_id: str) -> Path:
    return folder / "JPEGImages" / f"{image_id}.jpg"


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with _pil().open(path) as im:
            return im.size
    except FileNotFoundError:
        raise DatasetError(f"{_DS}: missing file {path} (expected {_EXPECTED})") from None
    except OSError as err:
        raise DatasetError(f"{_DS}: cannot read image {path}: {err}") from None


def _decode(path: Path, image_size: int) -> np.ndarray:
    image = _pil()
    try:
        with image.open(path) as im:
            im = im.convert("RGB").resize((image_size, image_size), image.BILINEAR)
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
    except OSError as err:
        raise DatasetError(f"{_DS}: cannot read image {path}: {err}") from None


def load_voc_split(
    data_dir: str | os.PathLike[str] | None,
    years: Sequence[str],
    image_set: str,
    image_size: int,
    num_workers: int | None = None,
) -> DetectionSource:
    """Objects of the images listed in ``image_set`` of every year (concatenated, year order)
    and a fetcher decoding them to ``(k, 3, image_size, image_size)`` uint8 arrays."""
    paths: list[Path] = []
    objects: list[ImageTargets] = []
    for year in years:
        folder = find_voc_year(data_dir, year)
        for image_id in read_image_set(folder, image_set):
            path = _image_path(folder, image_id)
            width, height = _image_size(path)
            objects.append(read_voc_annotation(folder / "Annotations" / f"{image_id}.xml",
                                               width, height))
            paths.append(path)
    if not paths:
        raise DatasetError(f"{_DS}: image set {image_set!r} of VOC{'+'.join(years)} is empty")
    workers = num_workers or min(8, os.cpu_count() or 1)

    def fetch(idx: np.ndarray) -> np.ndarray:
        with ThreadPoolExecutor(workers) as pool:
            arrays = list(pool.map(lambda i: _decode(paths[int(i)], image_size), idx))
        return np.stack(arrays) if arrays else np.zeros((0, 3, image_size, image_size), np.uint8)

    return DetectionSource(objects, fetch)


def voc(
    data_dir: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    *,
    year: str = "2007",
    train_set: str = "trainval",
    test_set: str | None = "test",
    image_size: int = 300,
    max_objects: int | None = None,
    num_workers: int | None = None,
    max_train: int | None = None,
    max_val: int | None = None,
    max_test: int | None = None,
    normalize: bool = True,
    dtype: torch.dtype | str = "float32",
) -> DatasetSplits:
    """Pascal VOC detection: (3, image_size, image_size) images, 21 classes (background + 20).

    ``year`` is ``"2007"``, ``"2012"`` or ``"2007+2012"`` (training images of both, the usual
    "07+12"); the test split is ``test_set`` of VOC2007 when that year is used, else of the
    given year (``test_set=None`` carves 20 % of the training images instead, with a fixed seed).
    """
    from actlab.data.detection_splits import prepare_detection_splits

    years = [y.strip() for y in str(year).split("+")]
    if not years or any(y not in ("2007", "2012") for y in years):
        raise ValueError(f"year must be '2007', '2012' or '2007+2012', got {year!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
    train = load_voc_split(data_dir, years, train_set, image_size, num_workers)
    test = None
    if test_set is not None:
        test_year = "2007" if "2007" in years else years[-1]
        test = load_voc_split(data_dir, [test_year], test_set, image_size, num_workers)
    return prepare_detection_splits(
        "voc", train, test, class_names=("background", *VOC_CLASSES),
        val_fraction=val_fraction, seed=seed, max_train=max_train, max_val=max_val,
        max_test=max_test, scale=1 / 255, normalize=normalize, dtype=dtype,
        max_objects=max_objects,
        meta={"data_dir": str(default_data_dir(data_dir)), "year": year,
              "train_set": train_set, "test_set": test_set, "image_size": image_size},
    )
