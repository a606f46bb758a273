"""Default (prior) boxes of SSD (Liu et al. 2016, §2.2 "Choosing scales and aspect ratios").

On a feature map of size ``f_k`` with step ``s_k`` pixels (for an input of ``S`` pixels), every
cell ``(i, j)`` gets boxes centred at ``((j + 0.5) s_k / S, (i + 0.5) s_k / S)``:

* a square of side ``min_k / S``;
* a square of side ``sqrt(min_k max_k) / S`` (the paper's extra box of scale ``s'_k``);
* for every aspect ratio ``a`` listed: ``w = min_k sqrt(a) / S``, ``h = min_k / sqrt(a) / S``
  and the transposed box (``1/a``).

So a location has ``2 + 2 len(ratios_k)`` boxes: 4 for ``[2]``, 6 for ``[2, 3]``. Boxes are in
centre form ``(cx, cy, w, h)``, normalised by ``S``, and clipped to ``[0, 1]`` when ``clip``.
The order is feature map, row, column, then the box list above — the order in which the SSD heads
flatten their outputs (``permute(0, 2, 3, 1)``).

:data:`SSD300_PRIORS` is the VOC configuration of the authors' reference model: maps 38, 19, 10,
5, 3, 1, steps 8, 16, 32, 64, 100, 300, sizes 30, 60, 111, 162, 213, 264, 315 pixels (scales 0.1
then 0.2 … 0.9 + 1.05 as in the paper), ratios [2], [2, 3] ×3, [2], [2]: 8732 boxes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["PriorSpec", "make_priors", "SSD300_PRIORS"]


@dataclass(frozen=True)
class PriorSpec:
    """Where the default boxes go (see module doc); lengths of the sequences must agree."""

    image_size: int
    feature_maps: tuple[int, ...]
    steps: tuple[float, ...]
    min_sizes: tuple[float, ...]
    max_sizes: tuple[float, ...]
    aspect_ratios: tuple[tuple[float, ...], ...]
    clip: bool = True

    def __post_init__(self) -> None:
        n = len(self.feature_maps)
        for name in ("steps", "min_sizes", "max_sizes", "aspect_ratios"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"PriorSpec.{name} has {len(getattr(self, name))} entries for {n} feature maps"
                )
        if self.image_size < 1 or any(f < 1 for f in self.feature_maps):
            raise ValueError("PriorSpec: image_size and feature_maps must be >= 1")
        sizes = zip(self.min_sizes, self.max_sizes, strict=True)
        if any(not lo > 0 or hi < lo for lo, hi in sizes):
            raise ValueError("PriorSpec: need 0 < min_size <= max_size on every map")
        if any(a <= 0 for ratios in self.aspect_ratios for a in ratios):
            raise ValueError("PriorSpec: aspect ratios must be positive")

    def boxes_per_location(self) -> tuple[int, ...]:
        """Default boxes per feature-map cell: ``2 + 2 len(ratios)`` per map."""
        return tuple(2 + 2 * len(r) for r in self.aspect_ratios)

    def num_priors(self) -> int:
        per_cell = self.boxes_per_location()
        return sum(f * f * b for f, b in zip(self.feature_maps, per_cell, strict=True))


SSD300_PRIORS = PriorSpec(
    image_size=300,
    feature_maps=(38, 19, 10, 5, 3, 1),
    steps=(8, 16, 32, 64, 100, 300),
    min_sizes=(30, 60, 111, 162, 213, 264),
    max_sizes=(60, 111, 162, 213, 264, 315),
    aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)),
)


def _cell_boxes(min_size: float, max_size: float, ratios: Sequence[float]) -> list[tuple]:
    out = [(min_size, min_size), (math.sqrt(min_size * max_size),) * 2]
    for a in ratios:
        r = math.sqrt(a)
        out += [(min_size * r, min_size / r), (min_size / r, min_size * r)]
    return out


def make_priors(spec: PriorSpec) -> torch.Tensor:
    """``(P, 4)`` float32 centre-form default boxes in the order of the module doc."""
    s = float(spec.image_size)
    rows: list[torch.Tensor] = []
    for f, step, lo, hi, ratios in zip(spec.feature_maps, spec.steps, spec.min_sizes,
                                       spec.max_sizes, spec.aspect_ratios, strict=True):
        centres = (torch.arange(f, dtype=torch.float64) + 0.5) * step / s
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")
        sizes = torch.tensor(_cell_boxes(lo, hi, ratios), dtype=torch.float64) / s  # (B, 2)
        nb = len(sizes)
        cxcy = torch.stack([cx, cy], -1).reshape(f * f, 1, 2).expand(f * f, nb, 2)
        wh = sizes.reshape(1, nb, 2).expand(f * f, nb, 2)
        rows.append(torch.cat([cxcy, wh], -1).reshape(-1, 4))
    priors = torch.cat(rows)
    if spec.clip:
        priors = priors.clamp(0.0, 1.0)
    return priors.to(torch.float32)
