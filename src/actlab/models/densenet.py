"""Densely connected networks, CIFAR variants (Huang, Liu, van der Maaten & Weinberger 2017,
"Densely Connected Convolutional Networks").

* DenseNet-L-k (no bottleneck, no compression): three dense blocks of ``(L - 4) / 3`` layers
  ``norm-act-conv3×3(k)``, transitions ``norm-act-conv1×1-avgpool2`` keeping the channel count,
  a 3×3 stem with 16 channels. DenseNet-100-12 has 7.0M parameters (paper, Table 2).
* DenseNet-BC-L-k: three dense blocks of ``(L - 4) / 6`` bottleneck layers
  (``norm-act-conv1×1(4k)-norm-act-conv3×3(k)``), transitions with compression 0.5
  (``norm-act-conv1×1-avgpool2``), a 3×3 stem with ``2k`` channels. DenseNet-BC-100-12 has
  ~0.8M parameters (paper, Table 2).
* DenseNet-121 (CIFAR variant): blocks [6, 12, 24, 16], growth 32, 3×3 stem without pooling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from actlab.models._common import (
    ActFactory,
    ClassifierHead,
    NormFactory,
    check_int,
    conv_nd,
    has_no_norm,
    make_act,
    make_norm,
)
from actlab.models.init import init_weights
from actlab.registry import ActSpec, NormSpec

__all__ = ["DenseLayer", "Transition", "DenseNet", "densenet", "densenet_100_12", "densenet_bc",
           "densenet_bc_100_12", "densenet121"]


class DenseLayer(nn.Module):
    """One dense layer producing ``growth`` new feature maps from all previous ones.

    With ``bottleneck`` (the "B" of DenseNet-BC): ``conv3×3(act(norm(conv1×1(act(norm(x))))))``
    with ``bn_size * growth`` intermediate channels; otherwise ``conv3×3(act(norm(x)))``.
    """

    def __init__(
        self,
        in_channels: int,
        growth: int,
        act: ActFactory,
        norm: NormFactory,
        bottleneck: bool = True,
        bn_size: int = 4,
    ) -> None:
        super().__init__()
        self.norm1 = norm(in_channels, dim=2)
        bias = isinstance(self.norm1, nn.Identity)
        self.act1 = act()
        self.bottleneck = bottleneck
        if bottleneck:
            mid = bn_size * growth
            self.conv1 = conv_nd(in_channels, mid, 1, bias=bias)
            self.norm2 = norm(mid, dim=2)
            self.act2 = act()
            self.conv2 = conv_nd(mid, growth, 3, bias=bias)
        else:
            self.conv1 = conv_nd(in_channels, growth, 3, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.act1(self.norm1(x)))
        if self.bottleneck:
            out = self.conv2(self.act2(self.norm2(out)))
        return torch.cat([x, out], 1)


class Transition(nn.Module):
    """``avgpool2(conv1×1(act(norm(x))))`` between dense blocks."""

    def __init__(
        self, in_channels: int, out_channels: int, act: ActFactory, norm: NormFactory
    ) -> None:
        super().__init__()
        self.norm = norm(in_channels, dim=2)
        self.act = act()
        self.conv = conv_nd(in_channels, out_channels, 1, bias=isinstance(self.norm, nn.Identity))
        self.pool = nn.AvgPool2d(2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(self.act(self.norm(x))))


class DenseNet(nn.Module):
    """CIFAR DenseNet (Huang et al. 2017): 3×3 stem, dense blocks separated by transitions,
    final ``act(norm(.))``, global average pooling, linear classifier."""

    def __init__(
        self,
        block_config: Sequence[int],
        growth: int = 12,
        num_classes: int = 10,
        in_channels: int = 3,
        act: ActSpec = "relu",
        norm: NormSpec = "bn",
        bottleneck: bool = True,
        compression: float = 0.5,
        stem_channels: int | None = None,
        init: str | None = None,
    ) -> None:
        super().__init__()
        check_int("growth", growth)
        check_int("num_classes", num_classes)
        check_int("in_channels", in_channels)
        if not block_config:
            raise ValueError("block_config must list the number of layers of each dense block")
        for n in block_config:
            check_int("layers per dense block", n)
        if not 0.0 < compression <= 1.0:
            raise ValueError(f"compression must be in (0, 1], got {compression}")
        act_f, norm_f = make_act(act), make_norm(norm)
        c = stem_channels or 2 * growth
        self.stem = conv_nd(in_channels, c, 3, bias=has_no_norm(norm_f, c))
        stages: list[nn.Module] = []
        for i, n in enumerate(block_config):
            layers = []
            for _ in range(n):
                layers.append(DenseLayer(c, growth, act_f, norm_f, bottleneck))
                c += growth
            stages.append(nn.Sequential(*layers))
            if i < len(block_config) - 1:
                out = int(c * compression)
                stages.append(Transition(c, out, act_f, norm_f))
                c = out
        self.features = nn.Sequential(*stages)
        self.norm = norm_f(c, dim=2)
        self.act = act_f()
        self.head = ClassifierHead(c, num_classes)
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.norm(self.features(self.stem(x)))))


def densenet(
    depth: int = 100,
    growth: int = 12,
    num_classes: int = 10,
    in_channels: int = 3,
    act: ActSpec = "relu",
    norm: NormSpec = "bn",
    init: str | None = None,
) -> DenseNet:
    """DenseNet-depth-growth (Huang et al. 2017, the plain variant): three blocks of
    ``(depth - 4) / 3`` layers ``conv3×3(act(norm(x)))``, no bottleneck, transitions without
    compression, a 16-channel stem."""
    check_int("depth", depth, 7)
    if (depth - 4) % 3:
        raise ValueError(f"DenseNet depth must be 3n + 4 (e.g. 40, 100), got {depth}")
    n = (depth - 4) // 3
    return DenseNet((n, n, n), growth, num_classes, in_channels, act, norm, bottleneck=False,
                    compression=1.0, stem_channels=16, init=init)


def densenet_100_12(
    num_classes: int = 10,
    in_channels: int = 3,
    act: ActSpec = "relu",
    norm: NormSpec = "bn",
    init: str | None = None,
) -> DenseNet:
    """DenseNet (L=100, k=12), no bottleneck or compression, 7.0M parameters (Huang et al. 2017,
    Table 2)."""
    return densenet(100, 12, num_classes, in_channels, act, norm, init)


def densenet_bc(
    depth: int = 100,
    growth: int = 12,
    num_classes: int = 10,
    in_channels: int = 3,
    act: ActSpec = "relu",
    norm: NormSpec = "bn",
    init: str | None = None,
) -> DenseNet:
    """DenseNet-BC-depth-growth: three blocks of ``(depth - 4) / 6`` bottleneck layers."""
    check_int("depth", depth, 10)
    if (depth - 4) % 6:
        raise ValueError(f"DenseNet-BC depth must be 6n + 4 (e.g. 40, 100, 190), got {depth}")
    n = (depth - 4) // 6
    return DenseNet((n, n, n), growth, num_classes, in_channels, act, norm, init=init)


def densenet_bc_100_12(
    num_classes: int = 10,
    in_channels: int = 3,
    act: ActSpec = "relu",
    norm: NormSpec = "bn",
    init: str | None = None,
) -> DenseNet:
    """DenseNet-BC (L=100, k=12), ~0.8M parameters (Huang et al. 2017, Table 2)."""
    return densenet_bc(100, 12, num_classes, in_channels, act, norm, init)


def densenet121(
    num_classes: int = 10,
    in_channels: int = 3,
    act: ActSpec = "relu",
    norm: NormSpec = "bn",
    growth: int = 32,
    init: str | None = None,
) -> DenseNet:
    """DenseNet-121, CIFAR variant (blocks [6, 12, 24, 16], growth 32, 3×3 stem)."""
    return DenseNet((6, 12, 24, 16), growth, num_classes, in_channels, act, norm, init=init)
