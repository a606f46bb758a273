"""Small networks for the bundled data sets (8×8 digits, MNIST-1D, tabular features).

* ``tiny_cnn``: three ``conv3×3-norm-act`` layers with one 2×2 max-pool, global average pooling
  and a linear layer; ~14k parameters at ``width=16`` for 8×8 grey digits (scikit-learn digits).
* ``mlp``: flatten, then ``Linear -> norm(dim=0) -> act`` per hidden layer, linear output.
* ``cnn1d``: the MNIST-1D reference CNN (Greydanus 2020, "Scaling down deep learning",
  ``ConvBase``): conv(1→25, k5, s2, p1), conv(25→25, k3, s2, p1) ×2 and a linear layer on the
  flattened 25×5 features; 5,210 parameters for 40-sample signals without norm layers.
"""

from __future__ import annotations

import math
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
)
from actlab.models.init import init_weights
from actlab.registry import ActSpec, NormSpec

__all__ = ["TinyCNN", "tiny_cnn", "MLP", "mlp", "CNN1d", "cnn1d"]


class TinyCNN(nn.Module):
    """A three-layer CNN for 8×8 single-channel digits (scikit-learn's ``load_digits``)."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        act: ActSpec = "relu",
        norm: NormSpec = "bn",
        width: int = 16,
        init: str | None = None,
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes)
        check_int("in_channels", in_channels)
        check_int("width", width)
        act_f, norm_f = make_act(act), make_norm(norm)
        self.features = nn.Sequential(OrderedDict(
            conv1=conv_norm_act(in_channels, width, 3, norm_f, act_f),
            conv2=conv_norm_act(width, 2 * width, 3, norm_f, act_f),
            pool=nn.MaxPool2d(2, ceil_mode=True),
            conv3=conv_norm_act(2 * width, 2 * width, 3, norm_f, act_f),
        ))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def tiny_cnn(
    num_classes: int = 10,
    in_channels: int = 1,
    act: ActSpec = "relu",
    norm: NormSpec = "bn",
    width: int = 16,
    init: str | None = None,
) -> TinyCNN:
    """Tiny CNN for 8×8 digits (any input size ≥ 1×1 works)."""
    return TinyCNN(num_classes, in_channels, act, norm, width, init)


class MLP(nn.Module):
    """Multi-layer perceptron on flattened inputs; every hidden layer is
    ``act(norm(W x + b))`` with the norm built as ``norm(features, dim=0)``."""

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (128, 128),
        num_classes: int = 10,
        act: ActSpec = "relu",
        norm: NormSpec = "none",
        dropout: float = 0.0,
        init: str | None = None,
    ) -> None:
        super().__init__()
        check_int("in_features", in_features)
        check_int("num_classes", num_classes)
        check_prob("dropout", dropout)
        if isinstance(hidden, int):
            hidden = (hidden,)
        act_f, norm_f = make_act(act), make_norm(norm)
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        c = in_features
        for i, h in enumerate(hidden, start=1):
            check_int("hidden size", h)
            n = norm_f(h, dim=0)
            layers[f"fc{i}"] = nn.Linear(c, h, bias=isinstance(n, nn.Identity))
            layers[f"norm{i}"] = n
            layers[f"act{i}"] = act_f()
            if dropout:
                layers[f"drop{i}"] = nn.Dropout(dropout)
            c = h
        layers["out"] = nn.Linear(c, num_classes)
        self.layers = nn.Sequential(layers)
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def mlp(
    hidden: Sequence[int] = (128, 128),
    num_classes: int = 10,
    in_channels: int = 1,
    input_size: int | Sequence[int] = (8, 8),
    in_features: int | None = None,
    act: ActSpec = "relu",
    norm: NormSpec = "none",
    dropout: float = 0.0,
    init: str | None = None,
) -> MLP:
    """MLP; the input width is ``in_features`` or ``in_channels * prod(input_size)``
    (default 64 for 8×8 digits; ``input_size=40`` for MNIST-1D)."""
    if in_features is None:
        size = (input_size,) if isinstance(input_size, int) else tuple(input_size)
        in_features = check_int("in_channels", in_channels) * math.prod(size)
    return MLP(in_features, hidden, num_classes, act, norm, dropout, init)


def _conv_out(length: int, kernel: int, stride: int, padding: int) -> int:
    return (length + 2 * padding - kernel) // stride + 1


class CNN1d(nn.Module):
    """1-d CNN after the MNIST-1D reference ``ConvBase`` (Greydanus 2020), with a norm (dim=1)
    and ``act`` after each convolution. Input (B, 1, L) or (B, L)."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        act: ActSpec = "relu",
        norm: NormSpec = "none",
        channels: int = 25,
        length: int = 40,
        kernels: Sequence[int] = (5, 3, 3),
        init: str | None = None,
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes)
        self.in_channels = check_int("in_channels", in_channels)
        check_int("channels", channels)
        check_int("length", length)
        act_f, norm_f = make_act(act), make_norm(norm)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        c, n = in_channels, length
        for i, k in enumerate(kernels, start=1):
            layers[f"conv{i}"] = conv_norm_act(c, channels, k, norm_f, act_f, 2, 1, dim=1)
            c, n = channels, _conv_out(n, k, 2, 1)
            if n < 1:
                raise ValueError(f"length {length} is too short for {len(kernels)} stride-2 convs")
        self.features = nn.Sequential(layers)
        self.fc = nn.Linear(c * n, num_classes)
        self.length = length
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], self.in_channels, -1)
        return self.fc(torch.flatten(self.features(x), 1))

    def extra_repr(self) -> str:
        return f"length={self.length}"


def cnn1d(
    num_classes: int = 10,
    in_channels: int = 1,
    act: ActSpec = "relu",
    norm: NormSpec = "none",
    channels: int = 25,
    length: int = 40,
    init: str | None = None,
) -> CNN1d:
    """MNIST-1D CNN (~5.2k parameters at the defaults without norm)."""
    return CNN1d(num_classes, in_channels, act, norm, channels, length, init=init)
