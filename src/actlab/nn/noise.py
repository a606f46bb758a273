"""Layer-wise Gaussian noise injection (Deep Control's batch-norm-like regulariser).

Reference: B. Ruff, "Deep Control - a simple automatic gain control for memory efficient and high
performance training of deep convolutional neural networks", arXiv:1706.03907, 2017. AGC uses no
batch statistics, so it loses the regularising noise that batch norm gets from estimating its
mean and variance on a random mini-batch; the paper injects noise in each layer instead. Its full
text was not reachable from this machine, so the exact form below is our reading:

    y = x + σ·ε,   ε ~ N(0, 1)   (training mode only; eval: y = x)

with ``ε`` drawn per element (``per="element"``) or once per sample and channel and broadcast
over the spatial dims (``per="channel"``, the shape of batch norm's per-channel shift noise).
The noise is additive, so the gradient passes through unchanged (dy/dx = 1), and it is drawn
from torch's global RNG (``torch.manual_seed`` makes it repeatable).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from actlab.nn.agc import AGC
from actlab.registry import register_norm_type

__all__ = ["AGCNoise", "NOISE_PER", "NoiseInjection", "add_noise"]

NOISE_PER = ("element", "channel")


def _check_sigma(sigma: float) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not (
        math.isfinite(sigma) and sigma >= 0
    ):
        raise ValueError(f"sigma must be a finite float >= 0, got {sigma!r}")
    return float(sigma)


def _check_per(per: str) -> str:
    if per not in NOISE_PER:
        raise ValueError(f"noise per must be one of {NOISE_PER}, got {per!r}")
    return per


def add_noise(x: torch.Tensor, sigma: float, per: str = "element") -> torch.Tensor:
    """``x + σ·ε`` with ``ε ~ N(0, 1)`` per element or per (sample, channel) (dim 1)."""
    if sigma == 0:
        return x
    if per == "channel":
        if x.dim() < 2:
            raise ValueError(
                f"per='channel' needs an input (N, C, ...), got shape {tuple(x.shape)}"
            )
        shape = (x.shape[0], x.shape[1]) + (1,) * (x.dim() - 2)
    else:
        shape = x.shape
    return x + sigma * torch.randn(shape, dtype=x.dtype, device=x.device)


class NoiseInjection(nn.Module):
    """Add ``N(0, σ²)`` noise in training mode; identity in eval mode.

    Args:
        sigma: noise standard deviation (>= 0; 0 is the identity).
        per: ``"element"`` (independent noise everywhere) or ``"channel"`` (one draw per sample
            and channel, shared over the spatial positions).
    """

    def __init__(self, sigma: float = 0.1, per: str = "element") -> None:
        super().__init__()
        self.sigma = _check_sigma(sigma)
        self.per = _check_per(per)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        return add_noise(x, self.sigma, self.per)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:g}, per={self.per!r}"


@register_norm_type
class AGCNoise(AGC):
    """:class:`actlab.nn.AGC` followed by :class:`NoiseInjection` (registry norm ``agc_noise``).

    Same parameters and state_dict keys as ``AGC``; in training mode the output gets
    ``σ·ε`` added (see :func:`add_noise`), in eval mode it is exactly ``AGC``.

    Args:
        num_features, mode, window, lam_init, affine, learn_lam, dim: as :class:`AGC`.
        sigma: noise standard deviation (default 0.1).
        per: ``"element"`` or ``"channel"``.
    """

    def __init__(
        self, num_features: int, *args, sigma: float = 0.1, per: str = "element", **kwargs
    ) -> None:
        super().__init__(num_features, *args, **kwargs)
        self.sigma = _check_sigma(sigma)
        self.per = _check_per(per)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = super().forward(h)
        if not self.training:
            return out
        return add_noise(out, self.sigma, self.per)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, sigma={self.sigma:g}, per={self.per!r}"
