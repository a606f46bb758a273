"""VGG-16 with batch normalisation for 32×32 (CIFAR) and 28×28 inputs.

Simonyan & Zisserman 2015, configuration D (13 convolutions in 5 stages), with a norm after each
convolution (Ioffe & Szegedy 2015) and the single-linear-layer classifier that is customary on
CIFAR (as in the Deep Control and SAU/ASH CIFAR experiments). Pooling uses ``ceil_mode=True`` and
the classifier sees an adaptive average pool, so 28×28 inputs (28→14→7→4→2→1) and other sizes work.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from actlab.models._common import (
    check_int,
    check_prob,
    conv_norm_act,
    make_act,
    make_norm,
    scale_channels,
)
from actlab.models.init import init_weights
from actlab.registry import ActSpec, NormSpec

__all__ = ["VGG", "VGG16_STAGES", "vgg16_bn", "vgg"]

#: Output channels of the 13 convolutions of VGG-16, grouped by pooling stage.
VGG16_STAGES: tuple[tuple[int, ...], ...] = (
    (64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)
)


class VGG(nn.Module):
    """VGG with a norm after every convolution (VGG-16-BN for the default stages).

    Used in Deep Control (AGC vs BN on CIFAR-10/100) and the SAU/ASH CIFAR tables.
    ``features`` is a flat ``nn.Sequential`` of conv-norm-act units and max-pools, so sequential
    initialisation schemes (Dirac) see the pools in order.
    """

    def __init__(
        self,
        stages: Sequence[Sequence[int]] = VGG16_STAGES,
        num_classes: int = 10,
        in_channels: int = 3,
        act: ActSpec = "relu",
        norm: NormSpec = "bn",
        width: float = 1.0,
        hidden: int | None = None,
        dropout: float = 0.0,
        init: str | None = None,
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes)
        check_int("in_channels", in_channels)
        if not stages or any(len(s) == 0 for s in stages):
            raise ValueError(f"stages must be a non-empty list of non-empty lists, got {stages!r}")
        act_f, norm_f = make_act(act), make_norm(norm)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        c = in_channels
        for i, stage in enumerate(stages, start=1):
            for j, out in enumerate(stage, start=1):
                out = scale_channels(out, width)
                layers[f"conv{i}_{j}"] = conv_norm_act(c, out, 3, norm_f, act_f)
                c = out
            layers[f"pool{i}"] = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        head: OrderedDict[str, nn.Module] = OrderedDict()
        if hidden is not None:
            check_int("hidden", hidden)
            head["fc1"] = nn.Linear(c, hidden)
            head["act1"] = act_f()
            if dropout:
                head["drop1"] = nn.Dropout(check_prob("dropout", dropout))
            c = hidden
        elif dropout:
            head["drop"] = nn.Dropout(check_prob("dropout", dropout))
        head["fc"] = nn.Linear(c, num_classes)
        self.classifier = nn.Sequential(head)
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def vgg16_bn(
    num_classes: int = 10,
    in_channels: int = 3,
    act: ActSpec = "relu",
    norm: NormSpec = "bn",
    width: float = 1.0,
    hidden: int | None = None,
    dropout: float = 0.0,
    init: str | None = None,
) -> VGG:
    """VGG-16-BN (configuration D). ~14.7M parameters for CIFAR-10 at ``width=1``."""
    return VGG(VGG16_STAGES, num_classes, in_channels, act, norm, width, hidden, dropout, init)


def vgg(
    stages: Sequence[Sequence[int]] = VGG16_STAGES,
    num_classes: int = 10,
    in_channels: int = 3,
    act: ActSpec = "relu",
    norm: NormSpec = "bn",
    width: float = 1.0,
    hidden: int | None = None,
    dropout: float = 0.0,
    init: str | None = None,
) -> VGG:
    """Generic VGG with a norm after each convolution; ``stages`` lists channels per stage."""
    return VGG(stages, num_classes, in_channels, act, norm, width, hidden, dropout, init)
