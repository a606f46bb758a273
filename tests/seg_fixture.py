"""Fabricate tiny Pascal VOC segmentation and ADE20K trees in their official layouts (PIL-written
JPEG images, palette / one-channel PNG label maps) for the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def voc_palette() -> list[int]:
    """The VOC colour map (bit-interleaved class index -> RGB), 256 entries flattened."""
    palette = []
    for k in range(256):
        r = g = b = 0
        c = k
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def make_voc_seg(root: Path, n_train: int = 3, n_val: int = 2, hw: tuple[int, int] = (16, 24),
                 seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Write ``VOCdevkit/VOC2012`` with JPEGs, palette PNG class maps (indices 0..20 and 255
    boundaries) and ``ImageSets/Segmentation/{train,val}.txt``; return the index maps written
    per split, in list order. A few extra JPEGs not in any list are written too (as in the
    official tar, where most images have no segmentation)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    palette = voc_palette()
    written: dict[str, list[np.ndarray]] = {}
    for split, n in (("train", n_train), ("val", n_val)):
        ids = [f"2007_{split}{k:04d}" for k in range(n)]
        written[split] = []
        for image_id in ids:
            rgb = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
            Image.fromarray(rgb, "RGB").save(base / "JPEGImages" / f"{image_id}.jpg")
            idx = rng.integers(0, 21, hw, dtype=np.uint8)
            idx[0, :] = 255  # an object boundary row
            label = Image.fromarray(idx, "P")
            label.putpalette(palette)
            label.save(base / "SegmentationClass" / f"{image_id}.png")
            written[split].append(idx)
        (base / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8), "RGB").save(
        base / "JPEGImages" / "2008_unlisted.jpg")
    return written


def make_ade20k(root: Path, n_train: int = 3, n_val: int = 2, hw: tuple[int, int] = (16, 24),
                seed: int = 0, object_info: bool = True) -> dict[str, list[np.ndarray]]:
    """Write ``ADEChallengeData2016`` with JPEGs and one-channel PNG annotations (values
    0..150, 0 = unlabelled); return the annotation values written per split, sorted by name."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = root / "ADEChallengeData2016"
    written: dict[str, list[np.ndarray]] = {}
    for split, tag, n in (("training", "train", n_train), ("validation", "val", n_val)):
        (base / "images" / split).mkdir(parents=True, exist_ok=True)
        (base / "annotations" / split).mkdir(parents=True, exist_ok=True)
        written[split] = []
        for k in range(n):
            stem = f"ADE_{tag}_{k + 1:08d}"
            rgb = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
            Image.fromarray(rgb, "RGB").save(base / "images" / split / f"{stem}.jpg")
            values = rng.integers(0, 151, hw, dtype=np.uint8)
            values[0, 0], values[0, 1] = 0, 150
            Image.fromarray(values, "L").save(base / "annotations" / split / f"{stem}.png")
            written[split].append(values)
    if object_info:
        rows = ["Idx\tRatio\tTrain\tVal\tName"]
        rows += [f"{k}\t0.01\t10\t1\tthing{k};alias{k}" for k in range(1, 151)]
        (base / "objectInfo150.txt").write_text("\n".join(rows) + "\n")
    return written
