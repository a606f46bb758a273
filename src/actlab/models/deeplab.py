"""DeepLabV3+ (Chen, Zhu, Papandreou, Schroff & Adam, "Encoder-Decoder with Atrous Separable
Convolution for Semantic Image Segmentation", ECCV 2018) with a dilated ResNet backbone.

* Backbone: the ImageNet ResNet-50/101 (He et al. 2016, "Deep Residual Learning", Table 1) with
  post-activation bottleneck units ``act(x' + conv1×1(act(conv3×3(act(conv1×1(x))))))``, the
  stride on the 3×3 convolution (as torchvision's "ResNet v1.5"), a 7×7/2 stem and a 3×3/2
  max-pool. For output stride 16 the last stage keeps stride 1 and dilates its 3×3 convolutions
  by 2; for output stride 8 the third stage is dilated by 2 and the fourth by 4. As in
  torchvision (``replace_stride_with_dilation``), the first unit of a dilated stage keeps the
  previous stage's rate. Dilation changes no parameter shape: the backbone has exactly the
  parameters of the classifier ResNet without its final linear layer.
* ASPP (DeepLabV3, Chen et al. 2017, §3.3): a 1×1 branch, three 3×3 atrous branches at rates
  ``(6, 12, 18)`` for output stride 16 (doubled for 8) and an image-pooling branch (global
  average pool → 1×1 conv-norm-act → bilinear upsampling), each with 256 channels; their
  concatenation is projected by a 1×1 conv-norm-act to 256 channels, then dropout (0.1, the
  rate of the authors' TensorFlow code). Regular (not depthwise-separable) convolutions, as in
  the paper's ResNet-101 experiments.
* Decoder (DeepLabV3+ §3.2): the stride-4 features (output of the first stage, 256 channels)
  are reduced to 48 channels by a 1×1 conv-norm-act, concatenated with the ×4 bilinearly
  upsampled ASPP output, refined by two 3×3 conv-norm-act units of 256 channels, classified by
  a 1×1 convolution (with bias) and upsampled bilinearly to the input size.

Every activation and normalisation site is built through the zoo's factories (``act=``,
``norm=``), so SAU / ASH / AGC replace each of them; ``width`` scales every channel count
(backbone, ASPP, decoder) for CPU-sized runs. The image-pooling branch normalises a 1×1 map by
design, so AGC (which needs spatial extent) cannot replace that norm. No pretrained weights are
loaded: the papers' DeepLabV3+ starts from an ImageNet-trained backbone, which actlab does not
ship.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from actlab.models._common import (
    ActFactory,
    NormFactory,
    check_int,
    check_prob,
    conv_norm_act,
    make_act,
    make_norm,
    scale_channels,
)
from actlab.models.init import init_weights
from actlab.registry import ActSpec, NormSpec

__all__ = ["RESNET_UNITS", "ResNetBottleneck", "DilatedResNet", "ASPP", "DeepLabV3PlusDecoder",
           "DeepLabV3Plus", "deeplabv3plus"]

#: units per stage of the ImageNet bottleneck ResNets (He et al. 2016, Table 1)
RESNET_UNITS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
#: (stride, dilation) of stages 2..4 for each output stride (stage 1 is always (1, 1))
_STAGE_GEOMETRY = {16: ((2, 1), (2, 1), (1, 2)), 8: ((2, 1), (1, 2), (1, 4)), 32: ((2, 1),) * 3}


def _upsample_to(y: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``y`` to the spatial size of ``ref`` (``align_corners=False``)."""
    return F.interpolate(y, size=ref.shape[-2:], mode="bilinear", align_corners=False)


# shape-dependent helper: an opaque call under torch.fx tracing (used by actlab.convert)
torch.fx.wrap("_upsample_to")


class ResNetBottleneck(nn.Module):
    """Post-activation bottleneck unit 1×1 → 3×3 (stride, dilation) → 1×1 (×4 channels) with a
    projection shortcut (1×1 conv + norm) when the shape changes; the activation follows the
    sum."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int, dilation: int,
                 act: ActFactory, norm: NormFactory) -> None:
        super().__init__()
        out = channels * self.expansion
        self.conv1 = conv_norm_act(in_channels, channels, 1, norm, act)
        self.conv2 = conv_norm_act(channels, channels, 3, norm, act, stride, dilation=dilation)
        self.conv3 = conv_norm_act(channels, out, 1, norm, None)
        self.shortcut = (conv_norm_act(in_channels, out, 1, norm, None, stride)
                         if stride != 1 or in_channels != out else nn.Identity())
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


class DilatedResNet(nn.Module):
    """Bottleneck ResNet feature extractor returning ``(low, high)``: the stride-4 output of the
    first stage and the last stage's output at stride ``output_stride``."""

    def __init__(self, units: Sequence[int], in_channels: int, act: ActFactory,
                 norm: NormFactory, width: float = 1.0, output_stride: int = 16) -> None:
        super().__init__()
        if output_stride not in _STAGE_GEOMETRY:
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
        if len(units) != 4:
            raise ValueError(f"a ResNet backbone has 4 stages, got units {tuple(units)}")
        stem = scale_channels(64, width)
        self.stem = conv_norm_act(in_channels, stem, 7, norm, act, stride=2)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        geometry = ((1, 1), *_STAGE_GEOMETRY[output_stride])
        stages, c, prev_dilation = [], stem, 1
        for i, (n, (stride, dilation)) in enumerate(zip(units, geometry, strict=True)):
            check_int("units per stage", n)
            w = scale_channels(64 * 2**i, width)
            blocks = []
            for j in range(n):
                # torchvision's rule: the first unit of a stage keeps the previous rate
                rate = prev_dilation if j == 0 else dilation
                blocks.append(ResNetBottleneck(c, w, stride if j == 0 else 1, rate, act, norm))
                c = w * ResNetBottleneck.expansion
            prev_dilation = dilation
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.low_channels = scale_channels(64, width) * ResNetBottleneck.expansion
        self.out_channels = c
        self.output_stride = output_stride

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool(self.stem(x))
        low = self.stages[0](x)
        high = low
        for stage in self.stages[1:]:
            high = stage(high)
        return low, high


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1×1, 3×3 at each rate, image pooling; concatenated,
    projected by a 1×1 conv-norm-act, then dropout."""

    def __init__(self, in_channels: int, channels: int, rates: Sequence[int], act: ActFactory,
                 norm: NormFactory, dropout: float = 0.1) -> None:
        super().__init__()
        for r in rates:
            check_int("ASPP rate", r)
        branches = [conv_norm_act(in_channels, channels, 1, norm, act)]
        branches += [conv_norm_act(in_channels, channels, 3, norm, act, dilation=r)
                     for r in rates]
        self.branches = nn.ModuleList(branches)
        self.image_pool = nn.AdaptiveAvgPool2d(1)
        self.pool_conv = conv_norm_act(in_channels, channels, 1, norm, act)
        self.project = conv_norm_act((len(rates) + 2) * channels, channels, 1, norm, act)
        p = check_prob("dropout", dropout)
        self.dropout = nn.Dropout(p) if p > 0 else nn.Identity()
        self.rates = tuple(rates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [branch(x) for branch in self.branches]
        feats.append(_upsample_to(self.pool_conv(self.image_pool(x)), x))
        return self.dropout(self.project(torch.cat(feats, 1)))

    def extra_repr(self) -> str:
        return f"rates={self.rates}"


class DeepLabV3PlusDecoder(nn.Module):
    """Fuse the upsampled ASPP output with reduced stride-4 features; classify per pixel."""

    def __init__(self, aspp_channels: int, low_in: int, low_channels: int, channels: int,
                 num_classes: int, act: ActFactory, norm: NormFactory) -> None:
        super().__init__()
        self.reduce = conv_norm_act(low_in, low_channels, 1, norm, act)
        self.fuse = nn.Sequential(
            conv_norm_act(aspp_channels + low_channels, channels, 3, norm, act),
            conv_norm_act(channels, channels, 3, norm, act),
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        y = torch.cat([_upsample_to(high, low), self.reduce(low)], 1)
        return self.classifier(self.fuse(y))


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ (see the module docstring): ``(B, C, H, W) -> (B, num_classes, H, W)``."""

    def __init__(
        self,
        num_classes: int = 21,
        in_channels: int = 3,
        act: ActSpec = "relu",
        norm: NormSpec = "bn",
        depth: int = 101,
        output_stride: int = 16,
        width: float = 1.0,
        rates: Sequence[int] | None = None,
        dropout: float = 0.1,
        init: str | None = None,
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes)
        check_int("in_channels", in_channels)
        if depth not in RESNET_UNITS:
            raise ValueError(f"DeepLabV3+ backbone depth must be one of {sorted(RESNET_UNITS)}, "
                             f"got {depth!r}")
        act_f, norm_f = make_act(act), make_norm(norm)
        self.backbone = DilatedResNet(RESNET_UNITS[depth], in_channels, act_f, norm_f, width,
                                      output_stride)
        if rates is None:  # the paper's rates at output stride 16, scaled with the stride
            rates = tuple(r * 16 // output_stride for r in (6, 12, 18))
        aspp_c = scale_channels(256, width)
        self.aspp = ASPP(self.backbone.out_channels, aspp_c, rates, act_f, norm_f, dropout)
        self.decoder = DeepLabV3PlusDecoder(
            aspp_c, self.backbone.low_channels, scale_channels(48, width), aspp_c, num_classes,
            act_f, norm_f)
        self.depth, self.output_stride = depth, output_stride
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.backbone(x)
        return _upsample_to(self.decoder(self.aspp(high), low), x)

    def extra_repr(self) -> str:
        return f"depth={self.depth}, output_stride={self.output_stride}"


def deeplabv3plus(
    num_classes: int = 21,
    in_channels: int = 3,
    act: ActSpec = "relu",
    norm: NormSpec = "bn",
    depth: int = 101,
    output_stride: int = 16,
    width: float = 1.0,
    rates: Sequence[int] | None = None,
    dropout: float = 0.1,
    init: str | None = None,
) -> DeepLabV3Plus:
    """DeepLabV3+ with a dilated ResNet-``depth`` backbone (50 or 101; the ASH paper's
    segmentation tables use it); output ``(B, num_classes, H, W)``. ~59.3M parameters at
    ``depth=101`` and 21 classes."""
    return DeepLabV3Plus(num_classes, in_channels, act, norm, depth, output_stride, width, rates,
                         dropout, init)
