"""Batched, seeded data augmentation on tensors (any device), for images and sequences.

Every transform maps a batch ``x`` of shape ``(N, C, H, W)`` (or ``(N, C, L)`` for crop and
flip) and optional targets ``y`` to a new ``(x, y)``. Random parameters are drawn per sample
from the given ``torch.Generator`` (or torch's global generator), in a fixed order, so a seeded
generator reproduces the batch exactly. When ``y`` is a label map — shape ``(N, *spatial)`` equal
to ``x``'s spatial shape — it receives the *same* geometric transform, resampled with nearest
neighbour so labels stay integers; class-label vectors ``(N,)`` pass through untouched.

Transforms:

* **crop** (``crop_at`` / ``random_crop`` / :class:`RandomCrop`): pad every spatial side by
  ``p`` (zero, reflect or replicate) and cut a window of the original size at a random offset in
  ``[0, 2p]`` per axis: ``out[i] = pad(x)[o + i]``, i.e. a copy of ``x`` shifted by ``p - o``.
* **flip** (``random_hflip`` / :class:`RandomHFlip`): reverse the last axis (width) with
  probability ``p``.
* **affine** (``warp`` / ``random_affine`` / :class:`RandomAffine`): rotation by an angle in
  ``[-degrees, degrees]`` about the image centre and a shift in ``[-shift, shift]`` pixels,
  via ``affine_grid`` + ``grid_sample`` (``align_corners=False``). In centred pixel
  coordinates ``q`` (y axis pointing down) the output samples the input at
  ``R(-angle) (q - t)``: positive angles turn the content clockwise on screen, positive
  ``t = (dx, dy)`` moves it right / down.

* **Keras-style affine** (``keras(...)`` / :class:`actlab.data.keras_augment.KerasAffine`):
  random rotation, width/height shift, shear, zoom and horizontal flip with Keras's
  ``ImageDataGenerator`` parameters and fill modes (nearest / constant / reflect / wrap), as one
  inverse map per sample; see :mod:`actlab.data.keras_augment`.

:func:`build_augment` parses a compact spec such as ``"crop4+flip"`` or
``"keras(rotation_range=15,zoom_range=0.1,horizontal_flip=true,fill_mode=reflect)"`` into a
:class:`Compose`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "crop_at",
    "random_crop",
    "random_hflip",
    "affine_theta",
    "warp",
    "warp_labels",
    "random_affine",
    "is_label_map",
    "RandomCrop",
    "RandomHFlip",
    "RandomAffine",
    "Compose",
    "build_augment",
    "AUGMENT_GRAMMAR",
]

PadMode = Literal["zero", "reflect", "replicate"]
Pair = tuple[Tensor, Tensor | None]
_PAD_MODES = ("zero", "reflect", "replicate")


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _check_x(x: Tensor, ndims: tuple[int, ...] = (3, 4)) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a tensor batch, got {type(x).__name__}")
    if x.dim() not in ndims:
        shapes = " or ".join({3: "(N, C, L)", 4: "(N, C, H, W)"}[d] for d in ndims)
        raise ValueError(f"expected a batch of shape {shapes}, got {tuple(x.shape)}")


def is_label_map(x: Tensor, y: Tensor | None) -> bool:
    """True when ``y`` is a per-position label map for ``x`` (same batch and spatial shape)."""
    return (
        y is not None
        and y.dim() == x.dim() - 1
        and y.shape[0] == x.shape[0]
        and y.shape[1:] == x.shape[2:]
    )


def _rand(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    dev = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(n, generator=generator, device=dev, dtype=torch.float64).to(device)


def _randint(
    high: int, n: int, generator: torch.Generator | None, device: torch.device
) -> Tensor:
    dev = generator.device if generator is not None else torch.device("cpu")
    return torch.randint(0, high, (n,), generator=generator, device=dev).to(device)


# ----------------------------------------------------------------------------------------------
# crop
# ----------------------------------------------------------------------------------------------
def _source_positions(
    offsets: Tensor, size: int, padding: int, mode: str
) -> tuple[Tensor, Tensor | None]:
    """Input index of every output position ``(N, size)`` and, for zero padding, validity."""
    pos = offsets[:, None] + torch.arange(size, device=offsets.device) - padding
    if mode == "reflect":
        pos = pos.abs()
        pos = torch.where(pos >= size, 2 * (size - 1) - pos, pos)
        return pos, None
    if mode == "replicate":
        return pos.clamp(0, size - 1), None
    valid = (pos >= 0) & (pos < size)
    return pos.clamp(0, size - 1), valid


def _gather_axis(t: Tensor, axis: int, pos: Tensor) -> Tensor:
    """``out[n, ..., i, ...] = t[n, ..., pos[n, i], ...]`` along ``axis``."""
    shape = [t.shape[0]] + [1] * (t.dim() - 1)
    shape[axis] = pos.shape[1]
    return torch.gather(t, axis, pos.view(shape).expand(t.shape))


def crop_at(
    x: Tensor,
    offsets: Tensor,
    padding: int,
    mode: PadMode = "zero",
    *,
    fill: float = 0.0,
    spatial_start: int = 2,
) -> Tensor:
    """Pad the spatial axes by ``padding`` and cut windows of the input size at ``offsets``.

    Args:
        x: ``(N, C, *spatial)`` (or, with ``spatial_start=1``, a label map ``(N, *spatial)``).
        offsets: ``(N, len(spatial))`` integer window starts in ``[0, 2 * padding]``.
        padding: pixels added on every side of every spatial axis.
        mode: ``"zero"`` (constant ``fill``), ``"reflect"`` (mirror without repeating the edge,
            needs ``padding < size``) or ``"replicate"`` (repeat the edge).
        fill: value of padded positions in ``"zero"`` mode.
    """
    if mode not in _PAD_MODES:
        raise ValueError(f"mode must be one of {_PAD_MODES}, got {mode!r}")
    if not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be a non-negative int, got {padding!r}")
    spatial = x.shape[spatial_start:]
    if offsets.shape != (x.shape[0], len(spatial)):
        raise ValueError(
            f"offsets must have shape {(x.shape[0], len(spatial))}, got {tuple(offsets.shape)}"
        )
    if mode == "reflect" and any(padding >= s for s in spatial):
        raise ValueError(
            f"reflect padding {padding} must be smaller than the size {tuple(spatial)}"
        )
    out = x
    valid_all: Tensor | None = None
    for k, size in enumerate(spatial):
        axis = spatial_start + k
        pos, valid = _source_positions(offsets[:, k].long(), size, padding, mode)
        out = _gather_axis(out, axis, pos)
        if valid is not None:
            shape = [x.shape[0]] + [1] * (x.dim() - 1)
            shape[axis] = size
            v = valid.view(shape)
            valid_all = v if valid_all is None else valid_all & v
    if valid_all is not None:
        out = torch.where(valid_all, out, torch.full((), fill, dtype=out.dtype, device=out.device))
    return out


def random_crop(
    x: Tensor,
    y: Tensor | None = None,
    *,
    padding: int = 4,
    mode: PadMode = "zero",
    generator: torch.Generator | None = None,
    label_fill: int = 0,
) -> Pair:
    """Random padded crop of the original size (see :func:`crop_at`); label maps follow."""
    _check_x(x)
    n, d = x.shape[0], x.dim() - 2
    offsets = _randint(2 * padding + 1, n * d, generator, x.device).view(d, n).t()
    out = crop_at(x, offsets, padding, mode)
    if is_label_map(x, y):
        y = crop_at(y, offsets, padding, mode, fill=label_fill, spatial_start=1)
    return out, y


# ----------------------------------------------------------------------------------------------
# flip
# ----------------------------------------------------------------------------------------------
def random_hflip(
    x: Tensor,
    y: Tensor | None = None,
    *,
    p: float = 0.5,
    generator: torch.Generator | None = None,
) -> Pair:
    """Reverse the last axis of each sample with probability ``p``; label maps follow."""
    _check_x(x)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"flip probability must be in [0, 1], got {p!r}")
    flip = _rand(x.shape[0], generator, x.device) < p
    out = torch.where(flip.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)
    if is_label_map(x, y):
        y = torch.where(flip.view(-1, *([1] * (y.dim() - 1))), y.flip(-1), y)
    return out, y


# ----------------------------------------------------------------------------------------------
# affine
# ----------------------------------------------------------------------------------------------
def affine_theta(angles: Tensor, shifts: Tensor, size: tuple[int, int]) -> Tensor:
    """``(N, 2, 3)`` matrices for ``affine_grid`` (normalised coords, ``align_corners=False``).

    With ``S = diag(W/2, H/2)`` (normalised -> centred pixel coordinates) and
    ``R(a) = [[cos a, -sin a], [sin a, cos a]]``, the output at normalised ``u`` samples the
    input at ``S^-1 R(-a) (S u - t)``: rotation by ``angles`` (radians) about the centre, then a
    shift by ``shifts`` ``(N, 2)`` = ``(dx, dy)`` pixels.
    """
    h, w = size
    c, s = torch.cos(angles), torch.sin(angles)
    # R(-a) = [[c, s], [-s, c]];  A = S^-1 R(-a) S
    sx, sy = w / 2.0, h / 2.0
    a11, a12 = c, s * sy / sx
    a21, a22 = -s * sx / sy, c
    tx, ty = shifts[:, 0], shifts[:, 1]
    b1 = -(c * tx + s * ty) / sx
    b2 = -(-s * tx + c * ty) / sy
    row1 = torch.stack([a11, a12, b1], dim=-1)
    row2 = torch.stack([a21, a22, b2], dim=-1)
    return torch.stack([row1, row2], dim=1)


def warp(
    x: Tensor,
    theta: Tensor,
    *,
    mode: Literal["bilinear", "nearest"] = "bilinear",
    padding_mode: Literal["zeros", "border", "reflection"] = "zeros",
) -> Tensor:
    """Resample ``x`` ``(N, C, H, W)`` through ``affine_grid(theta)`` (``align_corners=False``)."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode, align_corners=False)


def warp_labels(y: Tensor, theta: Tensor, *, fill: int = 0) -> Tensor:
    """Nearest-neighbour warp of a label map ``(N, H, W)``; positions outside get ``fill``."""
    yf = (y.to(torch.float64) - fill)[:, None]
    out = warp(yf, theta.to(torch.float64), mode="nearest", padding_mode="zeros")[:, 0]
    return (out + fill).round().to(y.dtype)


def random_affine(
    x: Tensor,
    y: Tensor | None = None,
    *,
    degrees: float = 0.0,
    shift: float = 0.0,
    generator: torch.Generator | None = None,
    mode: Literal["bilinear", "nearest"] = "bilinear",
    padding_mode: Literal["zeros", "border", "reflection"] = "zeros",
    label_fill: int = 0,
) -> Pair:
    """Random rotation in ``[-degrees, degrees]`` and shift in ``[-shift, shift]`` pixels."""
    _check_x(x, (4,))
    if degrees < 0 or shift < 0:
        raise ValueError(f"degrees and shift must be >= 0, got {degrees!r}, {shift!r}")
    n = x.shape[0]
    u = _rand(3 * n, generator, x.device).view(3, n)
    angles = (2 * u[0] - 1) * math.radians(degrees)
    shifts = torch.stack([(2 * u[1] - 1) * shift, (2 * u[2] - 1) * shift], dim=1)
    theta = affine_theta(angles, shifts, (x.shape[2], x.shape[3]))
    out = warp(x, theta, mode=mode, padding_mode=padding_mode)
    if is_label_map(x, y):
        y = warp_labels(y, theta, fill=label_fill)
    return out, y


# ----------------------------------------------------------------------------------------------
# transform objects
# ----------------------------------------------------------------------------------------------
class RandomCrop:
    """Random crop with ``padding`` pixels of ``mode`` padding (:func:`random_crop`)."""

    def __init__(self, padding: int = 4, mode: PadMode = "zero", label_fill: int = 0) -> None:
        if not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be a non-negative int, got {padding!r}")
        if mode not in _PAD_MODES:
            raise ValueError(f"mode must be one of {_PAD_MODES}, got {mode!r}")
        self.padding, self.mode, self.label_fill = padding, mode, label_fill

    def __call__(
        self, x: Tensor, y: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Pair:
        return random_crop(
            x, y, padding=self.padding, mode=self.mode, generator=generator,
            label_fill=self.label_fill,
        )

    def __repr__(self) -> str:
        return f"RandomCrop(padding={self.padding}, mode={self.mode!r})"


class RandomHFlip:
    """Horizontal (last-axis) flip with probability ``p`` (:func:`random_hflip`)."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {p!r}")
        self.p = p

    def __call__(
        self, x: Tensor, y: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Pair:
        return random_hflip(x, y, p=self.p, generator=generator)

    def __repr__(self) -> str:
        return f"RandomHFlip(p={self.p})"


class RandomAffine:
    """Small random rotation (degrees) and shift (pixels) (:func:`random_affine`)."""

    def __init__(
        self,
        degrees: float = 0.0,
        shift: float = 0.0,
        mode: Literal["bilinear", "nearest"] = "bilinear",
        padding_mode: Literal["zeros", "border", "reflection"] = "zeros",
        label_fill: int = 0,
    ) -> None:
        if degrees < 0 or shift < 0:
            raise ValueError(f"degrees and shift must be >= 0, got {degrees!r}, {shift!r}")
        self.degrees, self.shift = float(degrees), float(shift)
        self.mode, self.padding_mode, self.label_fill = mode, padding_mode, label_fill

    def __call__(
        self, x: Tensor, y: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Pair:
        return random_affine(
            x, y, degrees=self.degrees, shift=self.shift, generator=generator, mode=self.mode,
            padding_mode=self.padding_mode, label_fill=self.label_fill,
        )

    def __repr__(self) -> str:
        return f"RandomAffine(degrees={self.degrees}, shift={self.shift}, mode={self.mode!r})"


Transform = Callable[..., Pair]


class Compose:
    """Apply transforms in order: ``x, y = aug(x, y, generator=g)``.

    ``task="segmentation"`` requires ``y`` to be a label map (so it is always transformed with
    the image); ``task="classification"`` requires ``y`` to be ``None`` or ``(N,)`` labels.
    """

    def __init__(self, transforms: Sequence[Transform] = (), task: str | None = None) -> None:
        if task not in (None, "classification", "segmentation"):
            raise ValueError(f"task must be 'classification' or 'segmentation', got {task!r}")
        self.transforms = list(transforms)
        self.task = task

    def __call__(
        self, x: Tensor, y: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> Pair:
        if self.task == "segmentation" and not is_label_map(x, y):
            shape = None if y is None else tuple(y.shape)
            raise ValueError(
                f"segmentation augment needs a label map of shape {(x.shape[0], *x.shape[2:])}, "
                f"got {shape}"
            )
        if self.task == "classification" and y is not None and y.shape != x.shape[:1]:
            raise ValueError(
                f"classification augment expects labels of shape {tuple(x.shape[:1])}, "
                f"got {tuple(y.shape)}"
            )
        for t in self.transforms:
            x, y = t(x, y, generator=generator)
        return x, y

    def __len__(self) -> int:
        return len(self.transforms)

    def __bool__(self) -> bool:  # an empty Compose is still a valid (identity) augment
        return True

    def __repr__(self) -> str:
        inner = ", ".join(map(repr, self.transforms))
        return f"Compose([{inner}], task={self.task!r})"


AUGMENT_GRAMMAR = (
    "tokens joined by '+': crop<P>[_zero|_reflect|_replicate] (pad P px, random crop), "
    "flip[<p>] (horizontal flip, p=0.5), rot<D> (rotate within +-D degrees), "
    "shift<S> (shift within +-S px), keras(rotation_range=D, width_shift_range=F, "
    "height_shift_range=F, shear_range=D, zoom_range=Z|LO:HI, horizontal_flip=true, "
    "fill_mode=nearest|constant|reflect|wrap, cval=V) (Keras ImageDataGenerator-style); "
    "'none' or '' for no augmentation"
)

_NUM = r"(\d+(?:\.\d*)?|\.\d+)"


def _parse_token(token: str) -> Transform:
    from actlab.data.keras_augment import parse_keras_token

    keras = parse_keras_token(token)
    if keras is not None:
        return keras
    t = token.strip().lower()
    if m := re.fullmatch(r"crop(\d+)(?:_?(zero|reflect|replicate))?", t):
        return RandomCrop(int(m.group(1)), m.group(2) or "zero")  # type: ignore[arg-type]
    if m := re.fullmatch(rf"h?flip{_NUM}?", t):
        return RandomHFlip(float(m.group(1)) if m.group(1) else 0.5)
    if m := re.fullmatch(rf"rot(?:ate)?{_NUM}", t):
        return RandomAffine(degrees=float(m.group(1)))
    if m := re.fullmatch(rf"shift{_NUM}", t):
        return RandomAffine(shift=float(m.group(1)))
    raise ValueError(f"unknown augmentation {token!r}; expected {AUGMENT_GRAMMAR}")


def build_augment(
    names: Sequence[str] | str | None, task: str = "classification"
) -> Compose:
    """Parse ``"crop4+flip"`` / ``["crop4", "flip"]`` / ``None`` into a :class:`Compose`.

    Grammar: see :data:`AUGMENT_GRAMMAR`. ``None``, ``""`` and ``"none"`` give an identity.
    """
    if task not in ("classification", "segmentation"):
        raise ValueError(f"task must be 'classification' or 'segmentation', got {task!r}")
    if names is None:
        tokens: list[str] = []
    elif isinstance(names, str):
        tokens = [s for s in names.split("+") if s.strip()]
    elif isinstance(names, Sequence) and all(isinstance(s, str) for s in names):
        tokens = [s for s in names if s.strip()]
    else:
        raise TypeError(f"augment spec must be a str, a list of str or None, got {names!r}")
    tokens = [s for s in tokens if s.strip().lower() != "none"]
    return Compose([_parse_token(s) for s in tokens], task=task)
