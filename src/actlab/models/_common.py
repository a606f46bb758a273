"""Shared building blocks of the model zoo: act/norm resolution, conv-norm-act units, checks.

Every architecture builds *each* activation and normalisation site through the factories made
here, calling the factory once per site, so that a trainable activation (SAU, ASH) or a
normalisation with state (BN, AGC) is never shared between two places of a network.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from actlab.registry import ActSpec, NormSpec, act_factory, norm_factory

__all__ = [
    "ActFactory",
    "NormFactory",
    "make_act",
    "make_norm",
    "has_no_norm",
    "conv_nd",
    "conv_norm_act",
    "check_int",
    "check_prob",
    "check_width",
    "scale_channels",
    "make_divisible",
    "ClassifierHead",
    "DropPath",
]

ActFactory = Callable[..., nn.Module]
NormFactory = Callable[..., nn.Module]


def make_act(act: ActSpec, act_kwargs: dict[str, Any] | None = None) -> ActFactory:
    """Resolve an activation spec (registry name, class or factory) to a per-site factory."""
    return act_factory(act, **(act_kwargs or {}))


def make_norm(norm: NormSpec, norm_kwargs: dict[str, Any] | None = None) -> NormFactory:
    """Resolve a norm spec (name, class, factory, ``None``/``"none"``) to ``f(C, dim=2)``."""
    return norm_factory(norm, **(norm_kwargs or {}))


def has_no_norm(norm: NormFactory, num_channels: int, dim: int = 2) -> bool:
    """True when the norm factory builds identities (then convolutions get a bias). Probed with
    a channel count the network really normalises, so factories with constraints (group
    counts) accept it."""
    return isinstance(norm(num_channels, dim=dim), nn.Identity)


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """Validate an integer hyper-parameter (bools are rejected)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_prob(name: str, value: Any) -> float:
    """Validate a probability in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float in [0, 1), got {value!r}")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return float(value)


def check_width(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"width multiplier must be a positive number, got {value!r}")
    return float(value)


def scale_channels(channels: int, width: float, minimum: int = 1) -> int:
    """``round(channels * width)``, at least ``minimum``."""
    return max(minimum, int(round(channels * check_width(width))))


def make_divisible(value: float, divisor: int = 8, minimum: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` without going below 90 % of it
    (the channel rounding rule of MobileNetV2 / EfficientNet)."""
    minimum = divisor if minimum is None else minimum
    out = max(minimum, int(value + divisor / 2) // divisor * divisor)
    if out < 0.9 * value:
        out += divisor
    return out


_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def conv_nd(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    padding: int | None = None,
    groups: int = 1,
    bias: bool = False,
    dim: int = 2,
    dilation: int = 1,
) -> nn.Module:
    """A ``dim``-d convolution with 'same' padding for odd kernels (``dilation * (k - 1) / 2``)
    unless ``padding`` is given."""
    if padding is None:
        padding = dilation * (kernel_size - 1) // 2
    return _CONV[dim](
        in_channels, out_channels, kernel_size, stride=stride, padding=padding, groups=groups,
        bias=bias, dilation=dilation,
    )


def conv_norm_act(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    norm: NormFactory,
    act: ActFactory | None,
    stride: int = 1,
    padding: int | None = None,
    groups: int = 1,
    dim: int = 2,
    dilation: int = 1,
) -> nn.Sequential:
    """``conv -> norm -> act`` with stable child names ``conv``, ``norm``, ``act``.

    The convolution has a bias only when the norm is an identity. ``act=None`` omits the
    activation (linear bottlenecks, projections).
    """
    norm_layer = norm(out_channels, dim=dim)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["conv"] = conv_nd(
        in_channels, out_channels, kernel_size, stride, padding, groups,
        bias=isinstance(norm_layer, nn.Identity), dim=dim, dilation=dilation,
    )
    layers["norm"] = norm_layer
    if act is not None:
        layers["act"] = act()
    return nn.Sequential(layers)


class ClassifierHead(nn.Module):
    """Global average pooling, optional dropout and a linear classifier."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(check_prob("dropout", dropout)) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_features, check_int("num_classes", num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): zero a whole residual branch per sample with
    probability ``p`` during training and rescale the survivors by ``1 / (1 - p)``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = check_prob("drop path probability", p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"
