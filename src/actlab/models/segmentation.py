"""Segmentation networks: U-Net, SegNet and ClassNet.

* U-Net (Ronneberger, Fischer & Brox 2015): ``depth`` resolution levels, each a double
  ``conv3×3-norm-act`` unit; max-pool down, 2×2 transposed-conv up, skip concatenation, and a 1×1
  output convolution with ``num_classes`` channels. Convolutions are size-preserving (padding 1),
  so the output has the input's size; inputs whose sides are not divisible by ``2**depth`` are
  zero-padded on the bottom/right and the output is cropped back (``pad_input=False`` raises).
* SegNet (Badrinarayanan, Kendall & Cipolla 2017): encoder = the 13 convolutions of VGG-16 in
  5 stages, each followed by a 2×2 max-pool that records its argmax indices; the mirrored decoder
  upsamples with ``MaxUnpool2d`` at those indices, then convolves. The last decoder convolution
  is the classifier (``num_classes`` channels, no norm/activation).

* ClassNet (Deep Control, B. Ruff 2017, arXiv:1706.03907, the second network of its Cityscapes
  experiments). The paper's text was not available to us, so this is OUR definition of a plain
  pixel classifier without a decoder: ``depth`` VGG-style stages of two
  ``conv3×3-norm-act`` units (64, 128, 256, 512 channels × ``width``), a 2×2 max-pool between
  stages, a 1×1 classifier convolution and bilinear upsampling of the logits to the input size
  (an FCN-style head, Long et al. 2015).

All take a ``width`` multiplier (``width=0.125`` gives 8…64 channels and trains on a CPU) and
output logits of shape ``(B, num_classes, H, W)``. Used for the Deep Control segmentation
experiments (AGC vs BN).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from actlab.models._common import (
    ActFactory,
    NormFactory,
    check_int,
    conv_norm_act,
    make_act,
    make_norm,
    scale_channels,
)
from actlab.models.init import init_weights
from actlab.models.vgg import VGG16_STAGES
from actlab.registry import ActSpec, NormSpec

__all__ = ["DoubleConv", "UNet", "unet", "SegNetEncoderStage", "SegNetDecoderStage", "SegNet",
           "segnet", "ClassNet", "classnet"]


def _pad_to_multiple(x: torch.Tensor, multiple: int, pad: bool) -> torch.Tensor:
    """Zero-pad the bottom/right of ``x`` to sides divisible by ``multiple`` (or raise)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not (ph or pw):
        return x
    if not pad:
        raise ValueError(
            f"UNet needs height and width divisible by {multiple}, got {h}×{w} "
            "(or build it with pad_input=True)"
        )
    return F.pad(x, (0, pw, 0, ph))


def _check_min_size(x: torch.Tensor, size: int) -> torch.Tensor:
    if min(x.shape[-2:]) < size:
        raise ValueError(
            f"SegNet pools 5 times and needs inputs of at least {size}×{size}, "
            f"got {tuple(x.shape[-2:])}"
        )
    return x


def _resize_like(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``y`` to the spatial size of ``x``."""
    return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


# shape-dependent helpers stay opaque calls under torch.fx tracing (used by actlab.convert)
torch.fx.wrap("_pad_to_multiple")
torch.fx.wrap("_check_min_size")
torch.fx.wrap("_resize_like")


class DoubleConv(nn.Sequential):
    """``(conv3×3 -> norm -> act) × 2`` with stable child names ``conv1``, ``conv2``."""

    def __init__(
        self, in_channels: int, out_channels: int, act: ActFactory, norm: NormFactory
    ) -> None:
        super().__init__(OrderedDict(
            conv1=conv_norm_act(in_channels, out_channels, 3, norm, act),
            conv2=conv_norm_act(out_channels, out_channels, 3, norm, act),
        ))


class _Down(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, act: ActFactory, norm: NormFactory):
        super().__init__(OrderedDict(
            pool=nn.MaxPool2d(2), conv=DoubleConv(in_channels, out_channels, act, norm)
        ))


class _Up(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, act: ActFactory, norm: NormFactory):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.conv = DoubleConv(2 * out_channels, out_channels, act, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], 1))


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015) with same-padded convolutions; base width
    ``64 * width`` doubling at each of ``depth`` levels (1024 at the bottom for the paper's
    ``depth=4, width=1``)."""

    def __init__(
        self,
        num_classes: int = 2,
        in_channels: int = 3,
        act: ActSpec = "relu",
        norm: NormSpec = "bn",
        width: float = 1.0,
        depth: int = 4,
        pad_input: bool = True,
        init: str | None = None,
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes)
        check_int("in_channels", in_channels)
        check_int("depth", depth)
        act_f, norm_f = make_act(act), make_norm(norm)
        chans = [scale_channels(64 * 2**i, width) for i in range(depth + 1)]
        self.inc = DoubleConv(in_channels, chans[0], act_f, norm_f)
        self.down = nn.ModuleList(
            _Down(chans[i], chans[i + 1], act_f, norm_f) for i in range(depth)
        )
        self.up = nn.ModuleList(
            _Up(chans[i + 1], chans[i], act_f, norm_f) for i in reversed(range(depth))
        )
        self.out = nn.Conv2d(chans[0], num_classes, 1)
        self.depth = depth
        self.pad_input = pad_input
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        x = _pad_to_multiple(x, 2**self.depth, self.pad_input)
        skips = [self.inc(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in self.up:
            y = up(y, skips.pop())
        return self.out(y)[:, :, :h, :w]

    def extra_repr(self) -> str:
        return f"depth={self.depth}, pad_input={self.pad_input}"


def unet(
    num_classes: int = 2,
    in_channels: int = 3,
    act: ActSpec = "relu",
    norm: NormSpec = "bn",
    width: float = 1.0,
    depth: int = 4,
    pad_input: bool = True,
    init: str | None = None,
) -> UNet:
    """U-Net; output ``(B, num_classes, H, W)`` for any input size (padding when needed)."""
    return UNet(num_classes, in_channels, act, norm, width, depth, pad_input, init)


class SegNetEncoderStage(nn.Module):
    """Convolutions of one VGG stage, then a 2×2 max-pool returning its argmax indices."""

    def __init__(
        self, channels: Sequence[int], in_channels: int, act: ActFactory, norm: NormFactory
    ) -> None:
        super().__init__()
        convs: list[nn.Module] = []
        c = in_channels
        for out in channels:
            convs.append(conv_norm_act(c, out, 3, norm, act))
            c = out
        self.convs = nn.Sequential(*convs)
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Size]:
        x = self.convs(x)
        size = x.shape
        y, idx = self.pool(x)
        return y, idx, size


class SegNetDecoderStage(nn.Module):
    """Max-unpooling at the encoder's indices followed by convolutions; ``final=True`` makes the
    last convolution a plain classifier convolution (bias, no norm, no activation)."""

    def __init__(
        self,
        channels: Sequence[int],
        in_channels: int,
        act: ActFactory,
        norm: NormFactory,
        final: bool = False,
    ) -> None:
        super().__init__()
        self.unpool = nn.MaxUnpool2d(2, 2)
        convs: list[nn.Module] = []
        c = in_channels
        for i, out in enumerate(channels):
            if final and i == len(channels) - 1:
                convs.append(nn.Conv2d(c, out, 3, padding=1))
            else:
                convs.append(conv_norm_act(c, out, 3, norm, act))
            c = out
        self.convs = nn.Sequential(*convs)

    def forward(self, x: torch.Tensor, indices: torch.Tensor, size: torch.Size) -> torch.Tensor:
        return self.convs(self.unpool(x, indices, output_size=size[-2:]))


class SegNet(nn.Module):
    """SegNet (Badrinarayanan et al. 2017): VGG-16 encoder (13 convs in 5 stages, pooling
    indices kept) and a mirrored decoder (13 convs, the last one the classifier)."""

    def __init__(
        self,
        num_classes: int = 2,
        in_channels: int = 3,
        act: ActSpec = "relu",
        norm: NormSpec = "bn",
        width: float = 1.0,
        init: str | None = None,
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes)
        check_int("in_channels", in_channels)
        act_f, norm_f = make_act(act), make_norm(norm)
        stages = [[scale_channels(c, width) for c in s] for s in VGG16_STAGES]
        enc, c = [], in_channels
        for s in stages:
            enc.append(SegNetEncoderStage(s, c, act_f, norm_f))
            c = s[-1]
        self.encoder = nn.ModuleList(enc)
        dec = []
        for i in reversed(range(len(stages))):
            n = len(stages[i])
            out = stages[i - 1][-1] if i > 0 else num_classes
            chans = [stages[i][-1]] * (n - 1) + [out]
            dec.append(SegNetDecoderStage(chans, c, act_f, norm_f, final=i == 0))
            c = out
        self.decoder = nn.ModuleList(dec)
        self.min_size = 2 ** len(stages)
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_min_size(x, self.min_size)
        saved = []
        for stage in self.encoder:
            x, idx, size = stage(x)
            saved.append((idx, size))
        for stage in self.decoder:
            idx, size = saved.pop()
            x = stage(x, idx, size)
        return x


def segnet(
    num_classes: int = 2,
    in_channels: int = 3,
    act: ActSpec = "relu",
    norm: NormSpec = "bn",
    width: float = 1.0,
    init: str | None = None,
) -> SegNet:
    """SegNet with a VGG-16 encoder; ``width=0.125`` for CPU-sized experiments."""
    return SegNet(num_classes, in_channels, act, norm, width, init)


#: ClassNet's stage widths before the ``width`` multiplier
CLASSNET_CHANNELS = (64, 128, 256, 512)


class ClassNet(nn.Module):
    """ClassNet, our reading of Deep Control's pixel classifier (see the module docstring):
    ``depth`` stages of ``DoubleConv`` with max-pooling between them, a 1×1 classifier and
    bilinear upsampling to the input size."""

    def __init__(
        self,
        num_classes: int = 2,
        in_channels: int = 3,
        act: ActSpec = "relu",
        norm: NormSpec = "bn",
        width: float = 1.0,
        depth: int = 4,
        init: str | None = None,
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes)
        check_int("in_channels", in_channels)
        check_int("depth", depth)
        if depth > len(CLASSNET_CHANNELS):
            raise ValueError(f"ClassNet depth must be in 1..{len(CLASSNET_CHANNELS)}, got {depth}")
        act_f, norm_f = make_act(act), make_norm(norm)
        chans = [scale_channels(c, width) for c in CLASSNET_CHANNELS[:depth]]
        stages: list[nn.Module] = [DoubleConv(in_channels, chans[0], act_f, norm_f)]
        for i in range(1, depth):
            stages.append(_Down(chans[i - 1], chans[i], act_f, norm_f))
        self.features = nn.Sequential(*stages)
        self.classifier = nn.Conv2d(chans[-1], num_classes, 1)
        self.depth = depth
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _resize_like(self.classifier(self.features(x)), x)

    def extra_repr(self) -> str:
        return f"depth={self.depth}"


def classnet(
    num_classes: int = 2,
    in_channels: int = 3,
    act: ActSpec = "relu",
    norm: NormSpec = "bn",
    width: float = 1.0,
    depth: int = 4,
    init: str | None = None,
) -> ClassNet:
    """ClassNet (Deep Control; our definition, see :class:`ClassNet`); output
    ``(B, num_classes, H, W)`` for any input of at least ``2**(depth-1)`` pixels a side."""
    return ClassNet(num_classes, in_channels, act, norm, width, depth, init)
