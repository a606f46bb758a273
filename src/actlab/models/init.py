"""Weight initialisation schemes used by the three papers.

* ``"he"``: He et al. 2015 (Delving deep into rectifiers) fan-in normal,
  ``W ~ N(0, 2 / fan_in)``, for every convolution, transposed convolution and linear layer.
* ``"xavier"``: Glorot & Bengio 2010 uniform, ``W ~ U(-a, a)`` with
  ``a = sqrt(6 / (fan_in + fan_out))``.
* ``"dirac"``: identity initialisation (Deep Control, §3): every 3×3 convolution whose input and
  output channel counts match, with stride 1, no grouping and size-preserving padding, starts as
  the identity map ``W[o, i, :, :] = δ_{oi} δ(centre)`` — *except the first convolution after a
  pooling layer*, which, like every other layer, gets He initialisation. ("Setting identity in all
  layers except the first after a pooling works as accurately and trains faster.")

Biases are set to zero by all schemes; normalisation layers are reset to their defaults
(``reset_parameters``). ``None`` / ``"default"`` leaves PyTorch's initialisation untouched.

"After a pooling layer" is decided on the order in which the network runs its layers. By
default that is the module registration order, which matches the forward order for the sequential
conv stacks of the zoo (VGG, SegNet, U-Net); pass ``example_input`` to record the true execution
order with forward hooks instead. Pooling layers are max/average/LP pooling (adaptive included)
and max-unpooling (the decoder's resolution change in SegNet).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from actlab.registry import is_norm

__all__ = ["INIT_SCHEMES", "init_weights", "is_identity_candidate", "dirac_layers"]

INIT_SCHEMES = ("he", "xavier", "dirac")

_POOL_TYPES: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.LPPool1d, nn.LPPool2d, nn.MaxUnpool1d,
    nn.MaxUnpool2d, nn.MaxUnpool3d,
)
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
             nn.ConvTranspose3d, nn.Linear)


def is_identity_candidate(conv: nn.Module) -> bool:
    """A plain 3×3 (or 3, 3×3×3) convolution mapping C channels to C at the same resolution."""
    if not isinstance(conv, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return False
    k = conv.kernel_size
    return (
        all(s == 3 for s in k)
        and conv.in_channels == conv.out_channels
        and conv.groups == 1
        and all(s == 1 for s in conv.stride)
        and all(d == 1 for d in conv.dilation)
        and conv.padding == tuple(1 for _ in k)
        and conv.padding_mode == "zeros"
    )


def _execution_order(model: nn.Module, example_input: object) -> list[nn.Module]:
    order: list[nn.Module] = []
    seen: set[int] = set()

    def hook(module: nn.Module, _args: object) -> None:
        if id(module) not in seen:
            seen.add(id(module))
            order.append(module)

    handles = [
        m.register_forward_pre_hook(hook)
        for m in model.modules()
        if isinstance(m, _WEIGHTED + _POOL_TYPES)
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            if isinstance(example_input, tuple):
                model(*example_input)
            else:
                model(example_input)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    # layers that did not run keep their registration position at the end
    order += [m for m in model.modules() if isinstance(m, _WEIGHTED) and id(m) not in seen]
    return order


def dirac_layers(model: nn.Module, example_input: object | None = None) -> list[nn.Module]:
    """The convolutions that the ``"dirac"`` scheme initialises to the identity."""
    layers: Iterable[nn.Module] = (
        model.modules() if example_input is None else _execution_order(model, example_input)
    )
    chosen: list[nn.Module] = []
    after_pool = False
    for m in layers:
        if isinstance(m, _POOL_TYPES):
            after_pool = True
        elif isinstance(m, _WEIGHTED):
            if not after_pool and is_identity_candidate(m):
                chosen.append(m)
            after_pool = False
    return chosen


def _he(w: torch.Tensor) -> None:
    nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu")


def init_weights(
    model: nn.Module, scheme: str | None = "he", example_input: object | None = None
) -> nn.Module:
    """Initialise ``model`` in place with ``scheme`` (see module docstring); returns ``model``."""
    if scheme is None or scheme == "default":
        return model
    if not isinstance(scheme, str) or scheme.lower() not in INIT_SCHEMES:
        raise ValueError(
            f"unknown init scheme {scheme!r}; expected one of {INIT_SCHEMES}, 'default' or None"
        )
    scheme = scheme.lower()
    identity = (
        {id(m) for m in dirac_layers(model, example_input)} if scheme == "dirac" else set()
    )
    for m in model.modules():
        if isinstance(m, _WEIGHTED):
            if id(m) in identity:
                nn.init.dirac_(m.weight)
            elif scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            else:
                _he(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif is_norm(m) and hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return model
