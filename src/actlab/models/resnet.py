"""Residual networks: pre-activation ResNets (basic and bottleneck), Wide ResNets and the small
post-activation CIFAR ResNets (ResNet-8/20) used for quick benchmarks.

* He, Zhang, Ren & Sun 2016, "Identity Mappings in Deep Residual Networks" (pre-activation units
  ``x + F(x)`` with ``F = conv(act(norm(conv(act(norm(x))))))``; ResNet-164 = bottleneck units,
  depth ``9n + 2``; PreActResNet-18 = basic units [2, 2, 2, 2]).
* Zagoruyko & Komodakis 2016, "Wide Residual Networks" (WRN-d-k: basic pre-activation units,
  depth ``6n + 4``, widths 16k/32k/64k, dropout between the two convolutions).
* He, Zhang, Ren & Sun 2016, "Deep Residual Learning for Image Recognition" §4.2 (CIFAR ResNets,
  depth ``6n + 2``, widths 16/32/64, post-activation).

When a unit changes the channel count or resolution its shortcut is a 1×1 convolution applied to
the pre-activated input (as in the authors' code); otherwise the shortcut is the identity.
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
    conv_nd,
    conv_norm_act,
    has_no_norm,
    make_act,
    make_norm,
)
from actlab.models.init import init_weights
from actlab.registry import ActSpec, NormSpec

__all__ = [
    "PreActBasicBlock",
    "PreActBottleneck",
    "PreActResNet",
    "BasicBlock",
    "CifarResNet",
    "preact_resnet",
    "preact_resnet18",
    "preact_resnet_bottleneck",
    "resnet164",
    "wrn",
    "wrn28_10",
    "small_resnet",
    "resnet8",
    "resnet20",
]


class PreActBasicBlock(nn.Module):
    """Pre-activation basic unit: ``x + conv(drop(act(norm(conv(act(norm(x)))))))``
    (He et al. 2016, Fig. 4e; the WRN unit "B(3,3)" with dropout, Zagoruyko & Komodakis 2016)."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int,
        act: ActFactory,
        norm: NormFactory,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        out = channels * self.expansion
        self.norm1 = norm(in_channels, dim=2)
        bias = isinstance(self.norm1, nn.Identity)
        self.act1 = act()
        self.conv1 = conv_nd(in_channels, channels, 3, stride, bias=bias)
        self.norm2 = norm(channels, dim=2)
        self.act2 = act()
        self.dropout = nn.Dropout(check_prob("dropout", dropout)) if dropout else nn.Identity()
        self.conv2 = conv_nd(channels, out, 3, bias=bias)
        self.shortcut = (
            conv_nd(in_channels, out, 1, stride, bias=bias)
            if stride != 1 or in_channels != out
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act1(self.norm1(x))
        skip = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(self.dropout(self.act2(self.norm2(out))))
        return out + skip


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck unit 1×1 → 3×3 → 1×1 (×4 expansion), He et al. 2016."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int,
        act: ActFactory,
        norm: NormFactory,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        out = channels * self.expansion
        self.norm1 = norm(in_channels, dim=2)
        bias = isinstance(self.norm1, nn.Identity)
        self.act1 = act()
        self.conv1 = conv_nd(in_channels, channels, 1, bias=bias)
        self.norm2 = norm(channels, dim=2)
        self.act2 = act()
        self.conv2 = conv_nd(channels, channels, 3, stride, bias=bias)
        self.norm3 = norm(channels, dim=2)
        self.act3 = act()
        self.dropout = nn.Dropout(check_prob("dropout", dropout)) if dropout else nn.Identity()
        self.conv3 = conv_nd(channels, out, 1, bias=bias)
        self.shortcut = (
            conv_nd(in_channels, out, 1, stride, bias=bias)
            if stride != 1 or in_channels != out
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act1(self.norm1(x))
        skip = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(self.act2(self.norm2(out)))
        out = self.conv3(self.dropout(self.act3(self.norm3(out))))
        return out + skip


class PreActResNet(nn.Module):
    """Pre-activation ResNet for 32×32 inputs (3×3 stem, no stem pooling), ending in
    ``act(norm(.))``, global average pooling and a linear classifier.

    PreActResNet-18 (He et al. 2016, identity mappings; SAU/ASH CIFAR tables), ResNet-164
    (He et al. 2016, Table 2) and Wide ResNets (Zagoruyko & Komodakis 2016; SAU Table 4) are
    instances of this class.
    """

    def __init__(
        self,
        block: type[PreActBasicBlock] | type[PreActBottleneck],
        num_blocks: Sequence[int],
        widths: Sequence[int],
        stem_channels: int,
        num_classes: int = 10,
        in_channels: int = 3,
        act: ActSpec = "relu",
        norm: NormSpec = "bn",
        dropout: float = 0.0,
        strides: Sequence[int] | None = None,
        init: str | None = None,
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes)
        check_int("in_channels", in_channels)
        if len(num_blocks) != len(widths) or not num_blocks:
            raise ValueError(
                f"num_blocks {tuple(num_blocks)} and widths {tuple(widths)} must be non-empty "
                "and of equal length"
            )
        for n in num_blocks:
            check_int("blocks per stage", n)
        if strides is None:
            strides = (1,) + (2,) * (len(widths) - 1)
        act_f, norm_f = make_act(act), make_norm(norm)
        self.stem = conv_nd(in_channels, stem_channels, 3, bias=has_no_norm(norm_f, stem_channels))
        stages = []
        c = stem_channels
        for n, w, s in zip(num_blocks, widths, strides, strict=True):
            blocks = []
            for i in range(n):
                blocks.append(block(c, w, s if i == 0 else 1, act_f, norm_f, dropout))
                c = w * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.norm = norm_f(c, dim=2)
        self.act = act_f()
        self.head = ClassifierHead(c, num_classes)
        self.out_channels = c
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.norm(self.stages(self.stem(x)))))


def preact_resnet(
    num_blocks: Sequence[int] = (2, 2, 2, 2),
    num_classes: int = 10,
    in_channels: int = 3,
    act: ActSpec = "relu",
    norm: NormSpec = "bn",
    width: int = 64,
    init: str | None = None,
) -> PreActResNet:
    """Pre-activation ResNet with basic units; stage widths ``width * (1, 2, 4, 8, ...)``."""
    check_int("width", width)
    widths = [width * 2**i for i in range(len(num_blocks))]
    return PreActResNet(
        PreActBasicBlock, num_blocks, widths, width, num_classes, in_channels, act, norm,
        init=init,
    )


def preact_resnet18(
    num_classes: int = 10,
    in_channels: int = 3,
    act: ActSpec = "relu",
    norm: NormSpec = "bn",
    width: int = 64,
    init: str | None = None,
) -> PreActResNet:
    """PreActResNet-18: basic units [2, 2, 2, 2], widths 64-512. ~11.2M parameters (CIFAR-10)."""
    return preact_resnet((2, 2, 2, 2), num_classes, in_channels, act, norm, width, init)


def preact_resnet_bottleneck(
    depth: int = 164,
    num_classes: int = 10,
    in_channels: int = 3,
    act: ActSpec = "relu",
    norm: NormSpec = "bn",
    width: int = 16,
    init: str | None = None,
) -> PreActResNet:
    """CIFAR pre-activation bottleneck ResNet of depth ``9n + 2`` (He et al. 2016): three
    stages of n units with bottleneck widths ``width * (1, 2, 4)`` and outputs 4× that."""
    check_int("depth", depth, 11)
    if (depth - 2) % 9:
        raise ValueError(f"bottleneck ResNet depth must be 9n + 2 (e.g. 56, 110, 164), got {depth}")
    check_int("width", width)
    n = (depth - 2) // 9
    return PreActResNet(
        PreActBottleneck, (n, n, n), (width, 2 * width, 4 * width), width, num_classes,
        in_channels, act, norm, init=init,
    )


def resnet164(
    num_classes: int = 10,
    in_channels: int = 3,
    act: ActSpec = "relu",
    norm: NormSpec = "bn",
    width: int = 16,
    init: str | None = None,
) -> PreActResNet:
    """ResNet-164, pre-activation bottleneck (He et al. 2016, Table 2). ~1.7M parameters."""
    return preact_resnet_bottleneck(164, num_classes, in_channels, act, norm, width, init)


def wrn(
    depth: int = 28,
    widen: int = 10,
    dropout: float = 0.0,
    num_classes: int = 10,
    in_channels: int = 3,
    act: ActSpec = "relu",
    norm: NormSpec = "bn",
    init: str | None = None,
) -> PreActResNet:
    """Wide ResNet WRN-depth-widen (Zagoruyko & Komodakis 2016): depth ``6n + 4``, stages of
    n basic pre-activation units with widths ``16k, 32k, 64k`` and dropout between the convs."""
    check_int("depth", depth, 10)
    if (depth - 4) % 6:
        raise ValueError(f"WRN depth must be 6n + 4 (e.g. 10, 16, 28, 40), got {depth}")
    check_int("widen", widen)
    n = (depth - 4) // 6
    return PreActResNet(
        PreActBasicBlock, (n, n, n), (16 * widen, 32 * widen, 64 * widen), 16, num_classes,
        in_channels, act, norm, dropout=dropout, init=init,
    )


def wrn28_10(
    num_classes: int = 10,
    in_channels: int = 3,
    act: ActSpec = "relu",
    norm: NormSpec = "bn",
    dropout: float = 0.0,
    init: str | None = None,
) -> PreActResNet:
    """WRN-28-10 (~36.5M parameters); the SAU paper's Table 4 trains it with ``dropout=0.2``."""
    return wrn(28, 10, dropout, num_classes, in_channels, act, norm, init)


class BasicBlock(nn.Module):
    """Post-activation basic unit ``act(norm(conv(act(norm(conv(x))))) + shortcut(x))``
    (He et al. 2016, "Deep Residual Learning", Fig. 2; projection shortcut = option B)."""

    def __init__(
        self, in_channels: int, channels: int, stride: int, act: ActFactory, norm: NormFactory
    ) -> None:
        super().__init__()
        self.conv1 = conv_norm_act(in_channels, channels, 3, norm, act, stride)
        self.conv2 = conv_norm_act(channels, channels, 3, norm, None)
        self.shortcut = (
            conv_norm_act(in_channels, channels, 1, norm, None, stride)
            if stride != 1 or in_channels != channels
            else nn.Identity()
        )
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """The CIFAR ResNets of He et al. 2016 ("Deep Residual Learning" §4.2): a 3×3 stem, three
    stages of n basic units (widths w, 2w, 4w), global pooling and a linear layer; depth 6n + 2
    (ResNet-8: n = 1, ResNet-20: n = 3). Used for quick benchmarks of the three layers."""

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        in_channels: int = 3,
        act: ActSpec = "relu",
        norm: NormSpec = "bn",
        width: int = 16,
        init: str | None = None,
    ) -> None:
        super().__init__()
        check_int("depth", depth, 8)
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2 (e.g. 8, 20, 56), got {depth}")
        check_int("num_classes", num_classes)
        check_int("in_channels", in_channels)
        check_int("width", width)
        n = (depth - 2) // 6
        act_f, norm_f = make_act(act), make_norm(norm)
        self.stem = conv_norm_act(in_channels, width, 3, norm_f, act_f)
        stages, c = [], width
        for i, w in enumerate((width, 2 * width, 4 * width)):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(c, w, 2 if (i > 0 and j == 0) else 1, act_f, norm_f))
                c = w
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(c, num_classes)
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def small_resnet(
    depth: int = 8,
    num_classes: int = 10,
    in_channels: int = 3,
    act: ActSpec = "relu",
    norm: NormSpec = "bn",
    width: int = 16,
    init: str | None = None,
) -> CifarResNet:
    """A small CIFAR ResNet (default ResNet-8, ~78k parameters) for quick benchmarks."""
    return CifarResNet(depth, num_classes, in_channels, act, norm, width, init)


def resnet8(
    num_classes: int = 10,
    in_channels: int = 3,
    act: ActSpec = "relu",
    norm: NormSpec = "bn",
    width: int = 16,
    init: str | None = None,
) -> CifarResNet:
    """ResNet-8 (He et al. 2016 CIFAR family, n = 1)."""
    return CifarResNet(8, num_classes, in_channels, act, norm, width, init)


def resnet20(
    num_classes: int = 10,
    in_channels: int = 3,
    act: ActSpec = "relu",
    norm: NormSpec = "bn",
    width: int = 16,
    init: str | None = None,
) -> CifarResNet:
    """ResNet-20 (He et al. 2016 CIFAR family, n = 3; ~0.27M parameters)."""
    return CifarResNet(20, num_classes, in_channels, act, norm, width, init)

