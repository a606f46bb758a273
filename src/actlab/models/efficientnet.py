"""EfficientNet-B0 (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional
Neural Networks", Table 1), with a CIFAR-adapted stem.

MBConv units: ``conv1×1(expand) -> dw k×k -> squeeze-excitation -> conv1×1(project)`` with a
residual connection (and stochastic depth) when the unit keeps resolution and channels. Every
swish of the paper is an ``act`` site (including the one inside squeeze-excitation); the SE gate
stays a sigmoid, because it is a multiplicative gate, not a hidden activation. The SE bottleneck
has ``max(1, in_channels // 4)`` channels (se ratio 0.25 of the unit's input). With the ImageNet
stem (stride 2) and 1000 classes the network has ~5.3M parameters (paper, Table 2). The CIFAR
stem uses stride 1, so a 32×32 input ends at 2×2.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from actlab.models._common import (
    ActFactory,
    ClassifierHead,
    DropPath,
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

__all__ = ["EFFICIENTNET_B0", "SqueezeExcitation", "MBConv", "EfficientNet", "efficientnet_b0"]

#: (expansion, kernel, stride, output channels, repeats) of the seven B0 stages (Table 1).
EFFICIENTNET_B0: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4), (6, 3, 1, 320, 1),
)


class SqueezeExcitation(nn.Module):
    """``x * sigmoid(W2 act(W1 avgpool(x)))`` (Hu et al. 2018) with 1×1 convolutions."""

    def __init__(self, channels: int, squeeze: int, act: ActFactory) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.act = act()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class MBConv(nn.Module):
    """Mobile inverted bottleneck with squeeze-excitation (EfficientNet's MBConv)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        expansion: int,
        act: ActFactory,
        norm: NormFactory,
        se_ratio: float = 0.25,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(conv_norm_act(in_channels, hidden, 1, norm, act))
        layers.append(conv_norm_act(hidden, hidden, kernel_size, norm, act, stride, groups=hidden))
        if se_ratio > 0:
            layers.append(SqueezeExcitation(hidden, max(1, int(in_channels * se_ratio)), act))
        layers.append(conv_norm_act(hidden, out_channels, 1, norm, None))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.drop_path = DropPath(drop_path) if self.use_residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + self.drop_path(out) if self.use_residual else out


class EfficientNet(nn.Module):
    """EfficientNet (Tan & Le 2019) from a stage table and width/depth multipliers; B0 by
    default. ``drop_path`` is the stochastic-depth rate of the last unit (linearly increasing
    from 0), ``dropout`` the rate before the classifier (both 0.2 in the paper)."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        act: ActSpec = "swish",
        norm: NormSpec = "bn",
        width: float = 1.0,
        depth: float = 1.0,
        dropout: float = 0.2,
        drop_path: float = 0.2,
        stem_stride: int = 1,
        config: tuple[tuple[int, int, int, int, int], ...] = EFFICIENTNET_B0,
        init: str | None = None,
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes)
        check_int("in_channels", in_channels)
        check_prob("drop_path", drop_path)
        if not width > 0 or not depth > 0:
            raise ValueError(f"width and depth multipliers must be positive, got {width}, {depth}")
        act_f, norm_f = make_act(act), make_norm(norm)
        c = make_divisible(32 * width)
        self.stem = conv_norm_act(in_channels, c, 3, norm_f, act_f, stem_stride)
        repeats = [int(math.ceil(n * depth)) for *_, n in config]
        total, k = sum(repeats), 0
        stages = []
        for (t, ksize, s, ch, _), n in zip(config, repeats, strict=True):
            out = make_divisible(ch * width)
            units = []
            for i in range(n):
                units.append(
                    MBConv(c, out, ksize, s if i == 0 else 1, t, act_f, norm_f,
                           drop_path=drop_path * k / total)
                )
                c, k = out, k + 1
            stages.append(nn.Sequential(*units))
        self.stages = nn.Sequential(*stages)
        last = make_divisible(1280 * max(1.0, width))
        self.last = conv_norm_act(c, last, 1, norm_f, act_f)
        self.head = ClassifierHead(last, num_classes, dropout)
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.last(self.stages(self.stem(x))))


def efficientnet_b0(
    num_classes: int = 10,
    in_channels: int = 3,
    act: ActSpec = "swish",
    norm: NormSpec = "bn",
    width: float = 1.0,
    dropout: float = 0.2,
    drop_path: float = 0.2,
    imagenet: bool = False,
    init: str | None = None,
) -> EfficientNet:
    """EfficientNet-B0; CIFAR stem (stride 1) by default, ImageNet stem with ``imagenet=True``.
    ``width`` < 1 gives a thinner network for quick tests."""
    return EfficientNet(
        num_classes, in_channels, act, norm, width, 1.0, dropout, drop_path,
        2 if imagenet else 1, init=init,
    )
