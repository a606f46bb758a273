"""MobileNetV2, CIFAR variant (Sandler, Howard, Zhu, Zhmoginov & Chen 2018).

Inverted residual units ``conv1×1(expand, act) -> dw3×3(act) -> conv1×1(linear)`` with a
residual connection when stride is 1 and channels are unchanged; the expansion conv is omitted
for expansion factor 1 (paper, Table 1). The CIFAR variant uses a stride-1 stem and stride 1 in
the second stage (instead of 2), so a 32×32 input ends at 4×4; with 10 classes it has ~2.24M
parameters. ``act`` replaces every ReLU6 of the paper.
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
    check_prob,
    conv_norm_act,
    make_act,
    make_divisible,
    make_norm,
)
from actlab.models.init import init_weights
from actlab.registry import ActSpec, NormSpec

__all__ = [
    "InvertedResidual", "MobileNetV2", "mobilenetv2", "MOBILENETV2_CIFAR", "MOBILENETV2_IMAGENET",
]

#: (expansion t, output channels c, repeats n, first stride s) for the CIFAR variant.
MOBILENETV2_CIFAR: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
    (6, 320, 1, 1),
)
#: The ImageNet configuration of the paper (Table 2), stem stride 2.
MOBILENETV2_IMAGENET: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    """MobileNetV2 inverted residual unit (paper, Fig. 3b / Table 1)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        expansion: int,
        act: ActFactory,
        norm: NormFactory,
    ) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_norm_act(in_channels, hidden, 1, norm, act))
        layers.append(conv_norm_act(hidden, hidden, 3, norm, act, stride, groups=hidden))
        layers.append(conv_norm_act(hidden, out_channels, 1, norm, None))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    """MobileNetV2 (Sandler et al. 2018) with a CIFAR stem; used in the ASH/SAU CIFAR tables."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        act: ActSpec = "relu",
        norm: NormSpec = "bn",
        width: float = 1.0,
        dropout: float = 0.0,
        config: Sequence[tuple[int, int, int, int]] = MOBILENETV2_CIFAR,
        stem_stride: int = 1,
        last_channels: int = 1280,
        init: str | None = None,
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes)
        check_int("in_channels", in_channels)
        check_prob("dropout", dropout)
        if not width > 0:
            raise ValueError(f"width multiplier must be positive, got {width!r}")
        act_f, norm_f = make_act(act), make_norm(norm)
        c = make_divisible(32 * width)
        self.stem = conv_norm_act(in_channels, c, 3, norm_f, act_f, stem_stride)
        blocks = []
        for t, ch, n, s in config:
            out = make_divisible(ch * width)
            for i in range(n):
                blocks.append(InvertedResidual(c, out, s if i == 0 else 1, t, act_f, norm_f))
                c = out
        self.blocks = nn.Sequential(*blocks)
        last = make_divisible(last_channels * max(1.0, width))
        self.last = conv_norm_act(c, last, 1, norm_f, act_f)
        self.head = ClassifierHead(last, num_classes, dropout)
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.last(self.blocks(self.stem(x))))


def mobilenetv2(
    num_classes: int = 10,
    in_channels: int = 3,
    act: ActSpec = "relu",
    norm: NormSpec = "bn",
    width: float = 1.0,
    dropout: float = 0.0,
    imagenet: bool = False,
    init: str | None = None,
) -> MobileNetV2:
    """MobileNetV2; CIFAR variant by default, the paper's ImageNet strides with
    ``imagenet=True`` (3.5M parameters for 1000 classes)."""
    config = MOBILENETV2_IMAGENET if imagenet else MOBILENETV2_CIFAR
    return MobileNetV2(
        num_classes, in_channels, act, norm, width, dropout, config, 2 if imagenet else 1,
        init=init,
    )
