"""``synthetic_shapes``: a procedurally drawn semantic-segmentation set that needs no download.

Every image shows 1..``max_shapes`` filled shapes (class 1 circle, 2 rotated rectangle,
3 triangle) painted in random colours, in random order (later shapes occlude earlier ones), over
a background (class 0) made of a random base colour plus a linear gradient; i.i.d. Gaussian
pixel noise is added at the end. Colours carry no class information — only geometry does — and
every shape differs from the background colour by at least ``min_contrast`` in mean intensity.
The label map holds, per pixel, the class of the top-most shape covering the pixel centre.

Sample ``i`` is drawn from ``numpy.random.default_rng([seed, i])``, so the first ``n`` samples
do not depend on ``num_samples``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SHAPE_CLASSES",
    "circle_mask",
    "rectangle_mask",
    "triangle_mask",
    "make_shapes",
]

SHAPE_CLASSES = ("background", "circle", "rectangle", "triangle")


def _grid(size: int | tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    h, w = (size, size) if isinstance(size, int) else size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    return yy + 0.5, xx + 0.5  # pixel centres


def circle_mask(size: int | tuple[int, int], cy: float, cx: float, r: float) -> np.ndarray:
    """Pixels whose centre satisfies ``(x - cx)^2 + (y - cy)^2 <= r^2``."""
    yy, xx = _grid(size)
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def rectangle_mask(
    size: int | tuple[int, int], cy: float, cx: float, h: float, w: float, angle: float
) -> np.ndarray:
    """Rectangle of height ``h`` and width ``w`` centred at (cy, cx), rotated by ``angle`` rad.

    A pixel centre p is inside when ``|u| <= w/2`` and ``|v| <= h/2`` for
    ``(u, v) = R(-angle) (p - c)``.
    """
    yy, xx = _grid(size)
    dx, dy = xx - cx, yy - cy
    c, s = np.cos(angle), np.sin(angle)
    u = c * dx + s * dy
    v = -s * dx + c * dy
    return (np.abs(u) <= w / 2) & (np.abs(v) <= h / 2)


def triangle_mask(size: int | tuple[int, int], vertices: np.ndarray) -> np.ndarray:
    """Pixels whose centre lies in the triangle ``vertices`` ``(3, 2)`` of (y, x) points.

    Inside means the three edge functions ``cross(b - a, p - a)`` share one sign (or are 0).
    """
    yy, xx = _grid(size)
    v = np.asarray(vertices, dtype=np.float64)
    edges = []
    for i in range(3):
        (ay, ax), (by, bx) = v[i], v[(i + 1) % 3]
        edges.append((bx - ax) * (yy - ay) - (by - ay) * (xx - ax))
    e = np.stack(edges)
    return np.all(e >= 0, axis=0) | np.all(e <= 0, axis=0)


def _triangle_vertices(rng: np.random.Generator, cy: float, cx: float, r: float) -> np.ndarray:
    # Three vertices on a jittered circle, angles roughly 120 degrees apart: never degenerate.
    phi = rng.uniform(0, 2 * np.pi) + np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3])
    phi += rng.uniform(-0.35, 0.35, size=3)
    rad = r * rng.uniform(0.8, 1.2, size=3)
    return np.stack([cy + rad * np.sin(phi), cx + rad * np.cos(phi)], axis=1)


def _one_sample(
    rng: np.random.Generator,
    size: int,
    channels: int,
    max_shapes: int,
    noise: float,
    min_contrast: float,
) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = _grid(size)
    base = rng.uniform(0.25, 0.75, size=channels)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(theta) * (xx / size - 0.5) + np.sin(theta) * (yy / size - 0.5)) * 0.3
    image = base[:, None, None] + ramp[None]
    label = np.zeros((size, size), dtype=np.int64)
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        cls = int(rng.integers(1, len(SHAPE_CLASSES)))
        r = rng.uniform(0.1, 0.25) * size
        cy, cx = rng.uniform(r * 0.6, size - r * 0.6, size=2)
        if cls == 1:
            mask = circle_mask(size, cy, cx, r)
        elif cls == 2:
            hw = r * rng.uniform(0.6, 1.6, size=2)
            mask = rectangle_mask(size, cy, cx, hw[0], hw[1], rng.uniform(0, np.pi))
        else:
            mask = triangle_mask(size, _triangle_vertices(rng, cy, cx, r * 1.2))
        colour = rng.uniform(0.0, 1.0, size=channels)
        for _ in range(16):  # keep every shape visible against the background
            if abs(colour.mean() - base.mean()) >= min_contrast:
                break
            colour = rng.uniform(0.0, 1.0, size=channels)
        image[:, mask] = colour[:, None]
        label[mask] = cls
    image += rng.normal(0.0, noise, size=image.shape)
    return image.astype(np.float32), label


def make_shapes(
    num_samples: int = 2000,
    size: int = 64,
    *,
    channels: int = 3,
    max_shapes: int = 4,
    noise: float = 0.05,
    min_contrast: float = 0.2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, C, size, size) float32, labels (N, size, size) int64)``; see module doc.

    Classes: 0 background, 1 circle, 2 rectangle, 3 triangle (:data:`SHAPE_CLASSES`).
    """
    for name, value, low in (
        ("num_samples", num_samples, 1),
        ("size", size, 16),
        ("channels", channels, 1),
        ("max_shapes", max_shapes, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    images = np.empty((num_samples, channels, size, size), dtype=np.float32)
    labels = np.empty((num_samples, size, size), dtype=np.int64)
    for i in range(num_samples):
        rng = np.random.default_rng([int(seed), i])
        images[i], labels[i] = _one_sample(rng, size, channels, max_shapes, noise, min_contrast)
    return images, labels
