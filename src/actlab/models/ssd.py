"""SSD single-shot detectors: SSD300 with the VGG-16 backbone, and a small SSD-lite for CPUs.

* SSD300 (Liu et al. 2016, "SSD: Single Shot MultiBox Detector", Fig. 2 and §3): VGG-16's 13
  convolutions (pool3 with ``ceil_mode`` so 75 -> 38, pool5 3×3/stride 1), fc6 as a 3×3
  convolution with dilation 6 (1024 channels) and fc7 as a 1×1 convolution (1024), then four extra
  stages ``1×1 -> 3×3`` (256→512 stride 2, 128→256 stride 2, 128→256 no padding, 128→256 no
  padding). Predictions come from conv4_3 (after a learnable per-channel L2 normalisation with
  initial scale 20, ParseNet), fc7 and the four extra stages: maps 38, 19, 10, 5, 3, 1 with 4, 6,
  6, 6, 4, 4 default boxes per cell = 8732 (:data:`~actlab.tasks.detection.SSD300_PRIORS`). For
  VOC (21 classes, no norm layers) it has 26,285,486 parameters, the 26.285M of the authors'
  Caffe model as listed by the OpenVINO model zoo.
* SSD-lite (this package's CPU model): five ``conv3×3-norm-act`` units with three 2×2 pools
  (``image_size / 8``), then two extra stages ``1×1 -> 3×3/stride 2``; predictions from the three
  maps (8, 4, 2 cells at 64×64) with 4 default boxes each (336 at 64×64).

Every convolution is a ``conv -> norm -> act`` unit with its own activation and norm module;
the 3×3 prediction heads are plain convolutions. The model returns one tensor
``(B, P, 4 + num_classes)`` (box offsets, then class logits with class 0 = background) and keeps
its default boxes as the non-persistent buffer ``priors`` ``(P, 4)`` (centre form), which is what
:class:`actlab.tasks.DetectionTask` decodes and matches against.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
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
from actlab.tasks.detection.priors import SSD300_PRIORS, PriorSpec, make_priors

__all__ = ["L2Norm", "SSD", "ssd300", "ssd_lite", "ssd_lite_priors"]


class L2Norm(nn.Module):
    """Per-position L2 normalisation over channels with a learnable per-channel scale
    (ParseNet, Liu et al. 2015): ``y = γ_c x_c / (‖x‖₂ + ε)``, ``γ`` initialised to ``scale``."""

    def __init__(self, channels: int, scale: float = 20.0, eps: float = 1e-10) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps
        return x / norm * self.weight.view(1, -1, 1, 1)


class SSD(nn.Module):
    """A single-shot detector: ``stages`` run in sequence and every stage's output is a source
    feature map; one 3×3 box head and one 3×3 class head per source (module doc).

    ``source_norms`` optionally maps a stage index to a module applied to that source only
    (SSD300's conv4_3 L2Norm)."""

    def __init__(
        self,
        stages: Sequence[nn.Module],
        source_channels: Sequence[int],
        prior_spec: PriorSpec,
        num_classes: int,
        source_norms: dict[int, nn.Module] | None = None,
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes, 2)
        per_cell = prior_spec.boxes_per_location()
        if not len(stages) == len(source_channels) == len(per_cell):
            raise ValueError(
                f"{len(stages)} stages, {len(source_channels)} source widths and "
                f"{len(per_cell)} prior maps must agree"
            )
        self.num_classes = num_classes
        self.prior_spec = prior_spec
        self.stages = nn.ModuleList(stages)
        self.source_norms = nn.ModuleDict({str(k): v for k, v in (source_norms or {}).items()})
        pairs = list(zip(source_channels, per_cell, strict=True))
        self.loc = nn.ModuleList(nn.Conv2d(c, k * 4, 3, padding=1) for c, k in pairs)
        self.conf = nn.ModuleList(nn.Conv2d(c, k * num_classes, 3, padding=1) for c, k in pairs)
        self.register_buffer("priors", make_priors(prior_spec), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        locs, confs = [], []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            src = self.source_norms[str(i)](x) if str(i) in self.source_norms else x
            locs.append(self.loc[i](src).permute(0, 2, 3, 1).reshape(n, -1, 4))
            confs.append(self.conf[i](src).permute(0, 2, 3, 1).reshape(n, -1, self.num_classes))
        return torch.cat([torch.cat(locs, 1), torch.cat(confs, 1)], dim=2)


def _vgg_convs(
    layers: OrderedDict, stages: Sequence[Sequence[int]], c: int, act: ActFactory,
    norm: NormFactory, width: float, first_stage: int = 1,
) -> int:
    for i, stage in enumerate(stages, start=first_stage):
        for j, out in enumerate(stage, start=1):
            out = scale_channels(out, width)
            layers[f"conv{i}_{j}"] = conv_norm_act(c, out, 3, norm, act)
            c = out
    return c


def _extra(c_in: int, mid: int, out: int, stride: int, padding: int, act: ActFactory,
           norm: NormFactory) -> tuple[nn.Sequential, int]:
    return nn.Sequential(OrderedDict(
        conv1=conv_norm_act(c_in, mid, 1, norm, act),
        conv2=conv_norm_act(mid, out, 3, norm, act, stride=stride, padding=padding),
    )), out


def ssd300(
    num_classes: int = 21,
    in_channels: int = 3,
    act: ActSpec = "relu",
    norm: NormSpec = "none",
    width: float = 1.0,
    init: str | None = "xavier",
) -> SSD:
    """SSD300 with the VGG-16 backbone (module doc); ``norm="none"`` as in the paper (then every
    convolution has a bias). ``width`` scales every backbone/extra width (for tests); inputs
    must be 300×300. ``num_classes`` counts the background class (21 for VOC)."""
    check_int("in_channels", in_channels)
    act_f, norm_f = make_act(act), make_norm(norm)
    w = width
    s1: OrderedDict[str, nn.Module] = OrderedDict()
    c = in_channels
    for i, stage in enumerate(VGG16_STAGES[:4], start=1):
        c = _vgg_convs(s1, [stage], c, act_f, norm_f, w, first_stage=i)
        if i < 4:
            s1[f"pool{i}"] = nn.MaxPool2d(2, 2, ceil_mode=(i == 3))
    c4 = c
    s2: OrderedDict[str, nn.Module] = OrderedDict(pool4=nn.MaxPool2d(2, 2))
    c = _vgg_convs(s2, [VGG16_STAGES[4]], c, act_f, norm_f, w, first_stage=5)
    s2["pool5"] = nn.MaxPool2d(3, 1, padding=1)
    fc = scale_channels(1024, w)
    fc6_norm = norm_f(fc)  # fc6: 3x3 with dilation 6 (the subsampled fully connected layer)
    s2["conv6"] = nn.Sequential(OrderedDict(
        conv=nn.Conv2d(c, fc, 3, padding=6, dilation=6,
                       bias=isinstance(fc6_norm, nn.Identity)),
        norm=fc6_norm, act=act_f(),
    ))
    s2["conv7"] = conv_norm_act(fc, fc, 1, norm_f, act_f)
    stages: list[nn.Module] = [nn.Sequential(s1), nn.Sequential(s2)]
    widths = [c4, fc]
    c = fc
    for mid, out, stride, pad in ((256, 512, 2, 1), (128, 256, 2, 1), (128, 256, 1, 0),
                                  (128, 256, 1, 0)):
        stage, c = _extra(c, scale_channels(mid, w), scale_channels(out, w), stride, pad,
                          act_f, norm_f)
        stages.append(stage)
        widths.append(c)
    model = SSD(stages, widths, SSD300_PRIORS, num_classes, source_norms={0: L2Norm(c4)})
    init_weights(model, init)
    return model


def ssd_lite_priors(image_size: int = 64) -> PriorSpec:
    """Default boxes of :func:`ssd_lite`: maps ``S/8, S/16, S/32``, 4 boxes per cell, sides
    12–25 %, 25–45 % and 45–70 % of the image."""
    s = float(image_size)
    return PriorSpec(
        image_size=image_size,
        feature_maps=(image_size // 8, image_size // 16, image_size // 32),
        steps=(8, 16, 32),
        min_sizes=(0.12 * s, 0.25 * s, 0.45 * s),
        max_sizes=(0.25 * s, 0.45 * s, 0.70 * s),
        aspect_ratios=((2,), (2,), (2,)),
    )


def ssd_lite(
    num_classes: int = 4,
    in_channels: int = 3,
    act: ActSpec = "relu",
    norm: NormSpec = "bn",
    width: int = 16,
    image_size: int = 64,
    init: str | None = None,
) -> SSD:
    """A small SSD for CPU studies (module doc): ``image_size`` a multiple of 32 (64 gives
    336 default boxes); ``width`` the first stage's channels (16 -> about 0.1M parameters for 4
    classes)."""
    check_int("in_channels", in_channels)
    check_int("width", width)
    check_int("image_size", image_size, 32)
    if image_size % 32:
        raise ValueError(f"ssd_lite needs image_size divisible by 32, got {image_size}")
    act_f, norm_f = make_act(act), make_norm(norm)
    w = width
    base = nn.Sequential(OrderedDict(
        conv1=conv_norm_act(in_channels, w, 3, norm_f, act_f),
        pool1=nn.MaxPool2d(2),
        conv2=conv_norm_act(w, 2 * w, 3, norm_f, act_f),
        pool2=nn.MaxPool2d(2),
        conv3=conv_norm_act(2 * w, 4 * w, 3, norm_f, act_f),
        conv4=conv_norm_act(4 * w, 4 * w, 3, norm_f, act_f),
        pool3=nn.MaxPool2d(2),
        conv5=conv_norm_act(4 * w, 4 * w, 3, norm_f, act_f),
    ))
    extra1, c1 = _extra(4 * w, 2 * w, 4 * w, 2, 1, act_f, norm_f)
    extra2, c2 = _extra(c1, 2 * w, 4 * w, 2, 1, act_f, norm_f)
    model = SSD([base, extra1, extra2], [4 * w, c1, c2], ssd_lite_priors(image_size), num_classes)
    init_weights(model, init)
    return model
