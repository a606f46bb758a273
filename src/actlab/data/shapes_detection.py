"""``synthetic_detection``: a procedurally drawn object-detection set that needs no download.

Every image (``size × size``, RGB by default) shows 1..``max_objects`` filled shapes of three
classes — 1 rectangle (axis-aligned), 2 ellipse (axis-aligned), 3 triangle — in random colours on
a noisy background (a random base colour, a linear gradient and smoothed blotches), with i.i.d.
Gaussian pixel noise on top. Each object is inscribed in a random box whose sides are
``min_side``..``max_side`` of the image; a new box may overlap earlier ones by at most
``max_overlap`` IoU (placements are redrawn up to 20 times, then the object is skipped), so no
object is hidden. Colours carry no class information,
and each object differs from the background by at least ``min_contrast`` in mean intensity.

Boxes are the tight boxes of the painted pixels: ``(x1, y1, x2, y2) = (min col, min row,
max col + 1, max row + 1) / size``, computed after the later objects are painted (an object
partly covered by a later one keeps the box of its visible pixels). Classes are 1..3 with 0 the
background of the detector (:data:`DETECTION_SHAPE_CLASSES`).

Sample ``i`` is drawn from ``numpy.random.default_rng([seed, i])``, so the first ``n`` samples do
not depend on ``num_samples``.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from actlab.data.base import DatasetSplits
from actlab.data.synthetic import rectangle_mask, triangle_mask
from actlab.tasks.detection.targets import ImageTargets

__all__ = ["DETECTION_SHAPE_CLASSES", "ellipse_mask", "make_detection_shapes"]

DETECTION_SHAPE_CLASSES = ("background", "rectangle", "ellipse", "triangle")


def ellipse_mask(size: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    """Pixels whose centre satisfies ``((x - cx) / rx)^2 + ((y - cy) / ry)^2 <= 1``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0


def _box_of(mask: np.ndarray) -> np.ndarray | None:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return None
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float64)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _place(rng: np.random.Generator, size: int, lo: float, hi: float) -> np.ndarray:
    """A random box ``(x1, y1, x2, y2)`` in pixels with sides ``lo..hi`` of the image."""
    h, w = rng.uniform(lo, hi, size=2) * size
    cy = rng.uniform(h / 2, size - h / 2)
    cx = rng.uniform(w / 2, size - w / 2)
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def _shape(rng: np.random.Generator, cls: int, size: int, box: np.ndarray) -> np.ndarray:
    """Mask of a class-``cls`` shape inscribed in ``box``."""
    left, top, right, bottom = box
    cy, cx, h, w = (top + bottom) / 2, (left + right) / 2, bottom - top, right - left
    if cls == 1:
        return rectangle_mask(size, cy, cx, h, w, 0.0)
    if cls == 2:
        return ellipse_mask(size, cy, cx, h / 2, w / 2)
    # triangle: one vertex on the top or bottom edge of its box, two on the opposite edge
    apex = rng.uniform(left, right)
    if rng.random() < 0.5:
        v = [(top, apex), (bottom, left), (bottom, right)]
    else:
        v = [(bottom, apex), (top, left), (top, right)]
    return triangle_mask(size, np.array(v))


def _background(rng: np.random.Generator, size: int, channels: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size - 0.5
    base = rng.uniform(0.25, 0.75, size=channels)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(theta) * xx + np.sin(theta) * yy) * 0.3
    blot = rng.normal(0.0, 1.0, size=(channels, size // 8 + 1, size // 8 + 1))
    blot = np.kron(blot, np.ones((8, 8)))[:, :size, :size] * 0.05  # coarse texture
    return base[:, None, None] + ramp[None] + blot


def _one(rng, size, channels, max_objects, lo, hi, max_overlap, noise, min_contrast):
    image = _background(rng, size, channels)
    painted = np.zeros((size, size), np.int64)  # object index + 1 on top at each pixel
    classes: list[int] = []
    boxes: list[np.ndarray] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        cls = int(rng.integers(1, len(DETECTION_SHAPE_CLASSES)))
        for _attempt in range(20):
            box = _place(rng, size, lo, hi)
            if all(_iou(box, b) <= max_overlap for b in boxes):
                break
        else:
            continue
        mask = _shape(rng, cls, size, box)
        if not mask.any():
            continue
        colour = rng.uniform(0.0, 1.0, size=channels)
        base = image[:, mask].mean()
        for _ in range(16):
            if abs(colour.mean() - base) >= min_contrast:
                break
            colour = rng.uniform(0.0, 1.0, size=channels)
        image[:, mask] = colour[:, None]
        classes.append(cls)
        boxes.append(box)
        painted[mask] = len(classes)
    image += rng.normal(0.0, noise, size=image.shape)
    kept_boxes, kept_cls = [], []
    for k, cls in enumerate(classes, start=1):
        box = _box_of(painted == k)  # visible pixels only
        if box is not None:
            kept_boxes.append(box / size)
            kept_cls.append(cls)
    objects = ImageTargets(np.asarray(kept_boxes, np.float64).reshape(-1, 4),
                           np.asarray(kept_cls, np.int64), np.zeros(len(kept_cls), bool))
    return image.astype(np.float32), objects


def make_detection_shapes(
    num_samples: int = 2000,
    size: int = 64,
    *,
    channels: int = 3,
    max_objects: int = 4,
    min_side: float = 0.15,
    max_side: float = 0.5,
    max_overlap: float = 0.3,
    noise: float = 0.05,
    min_contrast: float = 0.2,
    seed: int = 0,
) -> tuple[np.ndarray, list[ImageTargets]]:
    """``(images (N, C, size, size) float32, objects)`` with one :class:`ImageTargets` per
    image (module doc)."""
    for name, value, low in (("num_samples", num_samples, 1), ("size", size, 16),
                             ("channels", channels, 1), ("max_objects", max_objects, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if not 0.0 < min_side <= max_side <= 1.0:
        raise ValueError(f"need 0 < min_side <= max_side <= 1, got {min_side!r}, {max_side!r}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    images = np.empty((num_samples, channels, size, size), np.float32)
    objects = []
    for i in range(num_samples):
        rng = np.random.default_rng([int(seed), i])
        images[i], obj = _one(rng, size, channels, max_objects, min_side, max_side,
                              max_overlap, noise, min_contrast)
        objects.append(obj)
    return images, objects


def synthetic_detection(
    data_dir: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    *,
    num_samples: int = 2000,
    size: int = 64,
    channels: int = 3,
    max_objects: int = 4,
    noise: float = 0.05,
    data_seed: int = 0,
    test_fraction: float = 0.2,
    max_train: int | None = None,
    max_val: int | None = None,
    max_test: int | None = None,
    normalize: bool = True,
    dtype: torch.dtype | str = "float32",
) -> DatasetSplits:
    """Synthetic detection: (C, size, size) images with 1..``max_objects`` boxed shapes,
    4 classes (background, rectangle, ellipse, triangle); test split carved 20 % (fixed seed)."""
    from actlab.data.detection_splits import DetectionSource, prepare_detection_splits

    x, objects = make_detection_shapes(num_samples, size, channels=channels,
                                       max_objects=max_objects, noise=noise, seed=data_seed)
    return prepare_detection_splits(
        "synthetic_detection", DetectionSource(objects, lambda idx: x[idx]), None,
        class_names=DETECTION_SHAPE_CLASSES, val_fraction=val_fraction, seed=seed,
        test_fraction=test_fraction, max_train=max_train, max_val=max_val, max_test=max_test,
        normalize=normalize, dtype=dtype, max_objects=max_objects,
        meta={"source": "actlab.data.shapes_detection.make_detection_shapes",
              "num_samples": num_samples, "data_seed": data_seed},
    )
