r"""Keras-style random geometric augmentation (the affine part of Keras's ``ImageDataGenerator``),
batched on tensors, seeded.

Per sample, with a ``torch.Generator`` (draw order: rotation, x shift, y shift, shear, x zoom,
y zoom, flip; one uniform number each, float64):

* rotation ``θ ~ U[−rotation_range, rotation_range]`` degrees;
* shift ``t_x ~ U[−width_shift_range, width_shift_range] · W``,
  ``t_y ~ U[−height_shift_range, height_shift_range] · H`` pixels;
* shear ``s ~ U[−shear_range, shear_range]`` degrees;
* zoom ``z_x, z_y ~ U[lo, hi]`` independently (``zoom_range = z`` means ``[1 − z, 1 + z]``;
  as in Keras, ``z > 1`` shrinks the content);
* horizontal flip with probability 1/2 when ``horizontal_flip``.

Geometry: every output pixel ``p = (x, y)`` (x to the right, y down, both measured from the image
centre ``((W − 1)/2, (H − 1)/2)``) samples the input at

.. math:: p_{in} = R(θ)\,\bigl(Sh(s)\,Z\,F\,p + t\bigr), \quad
          R(θ) = \begin{pmatrix}\cos θ & -\sin θ\\ \sin θ & \cos θ\end{pmatrix},\;
          Sh(s) = \begin{pmatrix}1 & -\sin s\\ 0 & \cos s\end{pmatrix},\;
          Z = \mathrm{diag}(z_x, z_y),

``F = diag(−1, 1)`` for a flipped sample (else the identity). This is the product
``R·T·Sh·Z`` of Keras's ``apply_affine_transform`` with its factors as written there, acting on
(column, row) coordinates as Keras does since keras-preprocessing PR #318; flipping the output
afterwards (Keras's order) is the factor ``F``. A positive shift therefore moves the content
left / up, and a positive angle turns it counter-clockwise on screen. Differences from Keras,
all stated so that results can be compared:

* the centre is the true image centre; Keras turns about ``(size/2 + 0.5)``, 1 pixel off;
* ``width_shift_range`` shifts along the width and ``height_shift_range`` along the height, as
  documented; in Keras versions with PR #318 they act the other way round (tf-keras issue 310).
  With equal ranges the two agree in distribution;
* ``fill_mode="wrap"`` is periodic (scipy's ``grid-wrap``); Keras passes ``"wrap"`` to scipy,
  whose old ``wrap`` mode repeats one edge pixel.

Resampling (one inverse map for the whole batch, no ``grid_sample``): bilinear (spline order 1,
Keras's default) for images, nearest (order 0) for label maps. Positions outside the image are
filled like ``scipy.ndimage.affine_transform`` with ``mode``: ``"nearest"`` (repeat the edge
pixel), ``"reflect"`` (half-sample symmetric: ``d c b a | a b c d | d c b a``), ``"wrap"`` (see
above) or ``"constant"`` (``cval`` wherever the position lies outside ``[0, W − 1] × [0, H − 1]``,
no blending across the edge, like scipy's ``"constant"`` that Keras uses).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "FILL_MODES",
    "KerasAffine",
    "keras_affine_matrices",
    "affine_resample",
    "parse_keras_token",
    "KERAS_GRAMMAR",
]

FillMode = Literal["nearest", "constant", "reflect", "wrap"]
FILL_MODES = ("nearest", "constant", "reflect", "wrap")

#: positions this close outside the image still count as inside for ``fill_mode="constant"``
_EDGE_TOL = 1e-6


def keras_affine_matrices(
    theta: Tensor,
    tx: Tensor,
    ty: Tensor,
    shear: Tensor,
    zx: Tensor,
    zy: Tensor,
    flip: Tensor | None = None,
) -> Tensor:
    """``(N, 2, 3)`` maps ``[A | b]`` with ``p_in = A p + b`` in centred pixel coordinates.

    ``theta`` and ``shear`` in degrees, ``tx`` / ``ty`` in pixels, ``zx`` / ``zy`` zoom
    factors, ``flip`` booleans; all ``(N,)``. ``A = R(θ)·Sh(s)·Z·F`` and ``b = R(θ)·t`` (module
    docstring).
    """
    th, sh = torch.deg2rad(theta.double()), torch.deg2rad(shear.double())
    c, s = torch.cos(th), torch.sin(th)
    # R · Sh = [[c, -c sin(sh) - s cos(sh)], [s, -s sin(sh) + c cos(sh)]]
    rs = torch.stack([
        torch.stack([c, -c * torch.sin(sh) - s * torch.cos(sh)], -1),
        torch.stack([s, -s * torch.sin(sh) + c * torch.cos(sh)], -1),
    ], -2)
    fx = zx.double()
    if flip is not None:
        fx = torch.where(flip.bool(), -fx, fx)
    a = rs * torch.stack([fx, zy.double()], -1)[:, None, :]  # scale the columns: (R Sh) Z F
    b = torch.stack([c * tx.double() - s * ty.double(), s * tx.double() + c * ty.double()], -1)
    return torch.cat([a, b[:, :, None]], dim=2)


def _fold(i: Tensor, n: int, mode: str) -> Tensor:
    """Map integer positions ``i`` into ``[0, n)`` by the boundary ``mode``."""
    if mode == "reflect":
        m = torch.remainder(i, 2 * n)
        return torch.where(m >= n, 2 * n - 1 - m, m)
    if mode == "wrap":
        return torch.remainder(i, n)
    return i.clamp(0, n - 1)  # nearest; constant positions outside are masked by the caller


def affine_resample(
    x: Tensor,
    mats: Tensor,
    *,
    fill_mode: FillMode = "nearest",
    cval: float = 0.0,
    order: int = 1,
) -> Tensor:
    """Resample ``x`` ``(N, C, H, W)`` (or a label map ``(N, H, W)``) through the maps ``mats``.

    ``mats`` ``(N, 2, 3)`` from :func:`keras_affine_matrices`. ``order`` 1 is bilinear, 0 is
    nearest (ties round up, ``floor(q + 0.5)``). Boundary handling: module docstring.
    """
    if fill_mode not in FILL_MODES:
        raise ValueError(f"fill_mode must be one of {', '.join(FILL_MODES)}, got {fill_mode!r}")
    if order not in (0, 1):
        raise ValueError(f"order must be 0 (nearest) or 1 (bilinear), got {order!r}")
    squeeze = x.dim() == 3
    img = x[:, None] if squeeze else x
    if img.dim() != 4:
        raise ValueError(f"expected (N, C, H, W) or (N, H, W), got shape {tuple(x.shape)}")
    n, ch, h, w = img.shape
    if mats.shape != (n, 2, 3):
        raise ValueError(f"mats must have shape {(n, 2, 3)}, got {tuple(mats.shape)}")
    dev = img.device
    m = mats.to(device=dev, dtype=torch.float64)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    py, px = torch.meshgrid(torch.arange(h, device=dev, dtype=torch.float64) - cy,
                            torch.arange(w, device=dev, dtype=torch.float64) - cx,
                            indexing="ij")
    qx = m[:, 0, 0, None, None] * px + m[:, 0, 1, None, None] * py + m[:, 0, 2, None, None] + cx
    qy = m[:, 1, 0, None, None] * px + m[:, 1, 1, None, None] * py + m[:, 1, 2, None, None] + cy
    flat = img.reshape(n, ch, h * w)

    def gather(ix: Tensor, iy: Tensor) -> Tensor:
        idx = (_fold(iy, h, fill_mode) * w + _fold(ix, w, fill_mode)).reshape(n, 1, h * w)
        return torch.gather(flat, 2, idx.expand(n, ch, h * w)).reshape(n, ch, h, w)

    if order == 0:
        out = gather(torch.floor(qx + 0.5).long(), torch.floor(qy + 0.5).long())
    else:
        x0, y0 = torch.floor(qx), torch.floor(qy)
        fx = (qx - x0).to(img.dtype)[:, None]
        fy = (qy - y0).to(img.dtype)[:, None]
        x0, y0 = x0.long(), y0.long()
        top = gather(x0, y0) * (1 - fx) + gather(x0 + 1, y0) * fx
        bottom = gather(x0, y0 + 1) * (1 - fx) + gather(x0 + 1, y0 + 1) * fx
        out = top * (1 - fy) + bottom * fy
    if fill_mode == "constant":
        inside = ((qx >= -_EDGE_TOL) & (qx <= w - 1 + _EDGE_TOL)
                  & (qy >= -_EDGE_TOL) & (qy <= h - 1 + _EDGE_TOL))[:, None]
        out = torch.where(inside, out, torch.full((), cval, dtype=out.dtype, device=dev))
    return out[:, 0] if squeeze else out


@dataclass(frozen=True)
class KerasAffine:
    """Random Keras-style rotation / shift / shear / zoom / horizontal flip of image batches.

    Arguments use Keras's names and units: ``rotation_range`` and ``shear_range`` in degrees,
    ``width_shift_range`` / ``height_shift_range`` as fractions of the width / height (in
    ``[0, 1)``), ``zoom_range`` a float ``z`` (``[1 − z, 1 + z]``) or a pair ``(lo, hi)``,
    ``fill_mode`` one of :data:`FILL_MODES` with ``cval`` for ``"constant"``. Label maps
    ``(N, H, W)`` get the same maps with nearest resampling; with ``"constant"`` they are filled
    with ``label_fill``.

    ``aug(x, y, generator=g)`` returns the transformed ``(x, y)``; :meth:`draw` gives the
    per-sample parameters and :meth:`matrices` their maps.
    """

    rotation_range: float = 0.0
    width_shift_range: float = 0.0
    height_shift_range: float = 0.0
    shear_range: float = 0.0
    zoom_range: float | tuple[float, float] = 0.0
    horizontal_flip: bool = False
    fill_mode: FillMode = "nearest"
    cval: float = 0.0
    label_fill: int = 0

    def __post_init__(self) -> None:
        for name in ("rotation_range", "shear_range"):
            v = getattr(self, name)
            if not _finite(v) or v < 0:
                raise ValueError(f"{name} must be a number of degrees >= 0, got {v!r}")
        for name in ("width_shift_range", "height_shift_range"):
            v = getattr(self, name)
            if not _finite(v) or not 0 <= v < 1:
                raise ValueError(f"{name} must be a fraction of the image in [0, 1), got {v!r}")
        lo, hi = self.zoom_bounds
        if not (_finite(lo) and _finite(hi) and 0 < lo <= hi):
            raise ValueError(
                f"zoom_range must be z in [0, 1) or (lo, hi) with 0 < lo <= hi, "
                f"got {self.zoom_range!r}"
            )
        if self.fill_mode not in FILL_MODES:
            raise ValueError(
                f"fill_mode must be one of {', '.join(FILL_MODES)}, got {self.fill_mode!r}"
            )
        if not _finite(self.cval):
            raise ValueError(f"cval must be a finite number, got {self.cval!r}")
        if not isinstance(self.horizontal_flip, bool):
            raise ValueError(f"horizontal_flip must be true or false, got {self.horizontal_flip!r}")

    @property
    def zoom_bounds(self) -> tuple[float, float]:
        z = self.zoom_range
        if isinstance(z, (tuple, list)):
            if len(z) != 2:
                raise ValueError(f"zoom_range pair must have 2 numbers, got {z!r}")
            return (float(z[0]), float(z[1]))
        if not _finite(z) or not 0 <= z < 1:
            raise ValueError(f"zoom_range must be z in [0, 1) or a pair (lo, hi), got {z!r}")
        return (1.0 - float(z), 1.0 + float(z))

    def draw(
        self, n: int, size: tuple[int, int], generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Per-sample parameters for ``n`` images of ``size = (H, W)`` (float64, CPU or the
        generator's device): theta, tx, ty, shear, zx, zy (and flip, bool)."""
        h, w = size
        dev = generator.device if generator is not None else torch.device("cpu")
        u = torch.rand(7 * n, generator=generator, device=dev, dtype=torch.float64).view(7, n)
        lo, hi = self.zoom_bounds
        return {
            "theta": (2 * u[0] - 1) * self.rotation_range,
            "tx": (2 * u[1] - 1) * self.width_shift_range * w,
            "ty": (2 * u[2] - 1) * self.height_shift_range * h,
            "shear": (2 * u[3] - 1) * self.shear_range,
            "zx": lo + (hi - lo) * u[4],
            "zy": lo + (hi - lo) * u[5],
            "flip": (u[6] < 0.5) if self.horizontal_flip else torch.zeros(n, dtype=torch.bool,
                                                                           device=dev),
        }

    @staticmethod
    def matrices(params: dict[str, Tensor]) -> Tensor:
        """The ``(N, 2, 3)`` maps of :meth:`draw`'s parameters."""
        return keras_affine_matrices(params["theta"], params["tx"], params["ty"],
                                     params["shear"], params["zx"], params["zy"], params["flip"])

    def __call__(
        self, x: Tensor, y: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor | None]:
        if not isinstance(x, Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"Keras-style augmentation needs images (N, C, H, W), got {shape}")
        mats = self.matrices(self.draw(x.shape[0], (x.shape[2], x.shape[3]), generator))
        out = affine_resample(x, mats, fill_mode=self.fill_mode, cval=self.cval, order=1)
        if y is not None and y.dim() == 3 and y.shape[0] == x.shape[0] \
                and y.shape[1:] == x.shape[2:]:
            y = affine_resample(y, mats, fill_mode=self.fill_mode, cval=self.label_fill,
                                order=0)
        return out, y


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


KERAS_GRAMMAR = (
    "keras(rotation_range=D, width_shift_range=F, height_shift_range=F, shear_range=D, "
    "zoom_range=Z or LO:HI, horizontal_flip=true|false, fill_mode=nearest|constant|reflect|wrap, "
    "cval=V), any subset, Keras's names and units (degrees, fractions of the image)"
)

_FLOAT_KEYS = ("rotation_range", "width_shift_range", "height_shift_range", "shear_range",
               "cval")


def parse_keras_token(token: str) -> KerasAffine | None:
    """A :class:`KerasAffine` for ``keras(...)`` (see :data:`KERAS_GRAMMAR`), None for any other
    token; ``ValueError`` naming the bad key or value."""
    m = re.fullmatch(r"\s*keras\s*\((.*)\)\s*", token, flags=re.S | re.I)
    if m is None:
        return None
    kwargs: dict[str, object] = {}
    for part in (p.strip() for p in m.group(1).split(",")):
        if not part:
            continue
        key, sep, value = (s.strip() for s in part.partition("="))
        key = key.lower()
        if not sep or not value:
            raise ValueError(f"keras augmentation: expected key=value, got {part!r}")
        if key in kwargs:
            raise ValueError(f"keras augmentation: {key!r} given twice")
        try:
            if key in _FLOAT_KEYS:
                kwargs[key] = float(value)
            elif key == "zoom_range":
                lo, colon, hi = value.partition(":")
                kwargs[key] = (float(lo), float(hi)) if colon else float(value)
            elif key == "horizontal_flip":
                flags = {"true": True, "1": True, "false": False, "0": False}
                if value.lower() not in flags:
                    raise ValueError
                kwargs[key] = flags[value.lower()]
            elif key == "fill_mode":
                kwargs[key] = value.lower()
            else:
                raise KeyError(key)
        except KeyError:
            raise ValueError(f"keras augmentation: unknown key {key!r}; expected "
                             f"{KERAS_GRAMMAR}") from None
        except ValueError:
            raise ValueError(f"keras augmentation: bad value {value!r} for {key}") from None
    return KerasAffine(**kwargs)  # type: ignore[arg-type]
