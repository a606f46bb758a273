"""ShuffleNetV2, CIFAR variant (Ma, Zhang, Zheng & Sun 2018, "ShuffleNet V2: Practical
Guidelines for Efficient CNN Architecture Design").

Units (paper, Fig. 3c/d): the stride-1 unit splits the channels in half, passes one half through
``conv1×1-norm-act -> dw3×3-norm -> conv1×1-norm-act`` and concatenates it with the untouched
half; the stride-2 unit runs a ``dw3×3(s2)-norm -> conv1×1-norm-act`` branch and the main branch
on the full input. Both end in a channel shuffle with two groups. Stage widths follow the paper's
Table 5 for 0.5×/1.0×/1.5×/2.0×. The CIFAR variant uses a stride-1 3×3 stem without max pooling;
ShuffleNetV2 1.0× has ~1.26M parameters with 10 classes.
"""

from __future__ import annotations

import torch
from torch import nn

from actlab.models._common import (
    ActFactory,
    ClassifierHead,
    NormFactory,
    check_int,
    conv_norm_act,
    make_act,
    make_norm,
)
from actlab.models.init import init_weights
from actlab.registry import ActSpec, NormSpec

__all__ = [
    "SHUFFLENETV2_WIDTHS",
    "channel_shuffle",
    "ShuffleUnit",
    "ShuffleNetV2",
    "shufflenetv2",
    "shufflenetv2_0_5",
    "shufflenetv2_1_0",
    "shufflenetv2_1_5",
    "shufflenetv2_2_0",
]

#: Output channels of (stage 2, stage 3, stage 4, conv5) for each width (paper, Table 5).
SHUFFLENETV2_WIDTHS: dict[float, tuple[int, int, int, int]] = {
    0.5: (48, 96, 192, 1024),
    1.0: (116, 232, 464, 1024),
    1.5: (176, 352, 704, 1024),
    2.0: (244, 488, 976, 2048),
}


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` groups: (B, g*c, ...) -> (B, c*g, ...) transposed."""
    return x.unflatten(1, (groups, -1)).transpose(1, 2).flatten(1, 2)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit; ``stride=1`` needs ``in_channels == out_channels``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        act: ActFactory,
        norm: NormFactory,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ShuffleUnit stride must be 1 or 2, got {stride}")
        if out_channels % 2:
            raise ValueError(f"ShuffleUnit out_channels must be even, got {out_channels}")
        if stride == 1 and in_channels != out_channels:
            raise ValueError("a stride-1 ShuffleUnit keeps the channel count")
        self.stride = stride
        half = out_channels // 2
        branch_in = in_channels // 2 if stride == 1 else in_channels
        if stride == 2:
            self.branch1 = nn.Sequential(
                conv_norm_act(in_channels, in_channels, 3, norm, None, 2, groups=in_channels),
                conv_norm_act(in_channels, half, 1, norm, act),
            )
        else:
            self.branch1 = None
        self.branch2 = nn.Sequential(
            conv_norm_act(branch_in, half, 1, norm, act),
            conv_norm_act(half, half, 3, norm, None, stride, groups=half),
            conv_norm_act(half, half, 1, norm, act),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch1 is None:
            keep, x2 = x.chunk(2, dim=1)
            out = torch.cat([keep, self.branch2(x2)], 1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], 1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """ShuffleNetV2 with a CIFAR stem (stride-1 3×3 conv, no max pool); stages of 4, 8, 4
    units; ``conv5`` 1×1, global pooling, linear classifier. Used in the ASH/SAU CIFAR tables."""

    def __init__(
        self,
        width: float = 1.0,
        num_classes: int = 10,
        in_channels: int = 3,
        act: ActSpec = "relu",
        norm: NormSpec = "bn",
        stage_repeats: tuple[int, int, int] = (4, 8, 4),
        stem_channels: int = 24,
        init: str | None = None,
    ) -> None:
        super().__init__()
        if width not in SHUFFLENETV2_WIDTHS:
            raise ValueError(
                f"ShuffleNetV2 width must be one of {sorted(SHUFFLENETV2_WIDTHS)}, got {width!r}"
            )
        check_int("num_classes", num_classes)
        check_int("in_channels", in_channels)
        act_f, norm_f = make_act(act), make_norm(norm)
        *stage_out, last = SHUFFLENETV2_WIDTHS[width]
        self.stem = conv_norm_act(in_channels, stem_channels, 3, norm_f, act_f)
        stages, c = [], stem_channels
        for n, out in zip(stage_repeats, stage_out, strict=True):
            check_int("units per stage", n)
            units = [ShuffleUnit(c, out, 2, act_f, norm_f)]
            units += [ShuffleUnit(out, out, 1, act_f, norm_f) for _ in range(n - 1)]
            stages.append(nn.Sequential(*units))
            c = out
        self.stages = nn.Sequential(*stages)
        self.conv5 = conv_norm_act(c, last, 1, norm_f, act_f)
        self.head = ClassifierHead(last, num_classes)
        self.width = width
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv5(self.stages(self.stem(x))))

    def extra_repr(self) -> str:
        return f"width={self.width}"


def shufflenetv2(
    width: float = 1.0,
    num_classes: int = 10,
    in_channels: int = 3,
    act: ActSpec = "relu",
    norm: NormSpec = "bn",
    init: str | None = None,
) -> ShuffleNetV2:
    """ShuffleNetV2 at ``width`` in {0.5, 1.0, 1.5, 2.0} (CIFAR stem)."""
    return ShuffleNetV2(width, num_classes, in_channels, act, norm, init=init)


def shufflenetv2_0_5(
    num_classes: int = 10, in_channels: int = 3, act: ActSpec = "relu", norm: NormSpec = "bn",
    init: str | None = None,
) -> ShuffleNetV2:
    """ShuffleNetV2 0.5× (CIFAR stem)."""
    return ShuffleNetV2(0.5, num_classes, in_channels, act, norm, init=init)


def shufflenetv2_1_0(
    num_classes: int = 10, in_channels: int = 3, act: ActSpec = "relu", norm: NormSpec = "bn",
    init: str | None = None,
) -> ShuffleNetV2:
    """ShuffleNetV2 1.0× (CIFAR stem), ~1.26M parameters for 10 classes."""
    return ShuffleNetV2(1.0, num_classes, in_channels, act, norm, init=init)


def shufflenetv2_1_5(
    num_classes: int = 10, in_channels: int = 3, act: ActSpec = "relu", norm: NormSpec = "bn",
    init: str | None = None,
) -> ShuffleNetV2:
    """ShuffleNetV2 1.5× (CIFAR stem)."""
    return ShuffleNetV2(1.5, num_classes, in_channels, act, norm, init=init)


def shufflenetv2_2_0(
    num_classes: int = 10, in_channels: int = 3, act: ActSpec = "relu", norm: NormSpec = "bn",
    init: str | None = None,
) -> ShuffleNetV2:
    """ShuffleNetV2 2.0× (CIFAR stem)."""
    return ShuffleNetV2(2.0, num_classes, in_channels, act, norm, init=init)
