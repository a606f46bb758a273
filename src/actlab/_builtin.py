"""Register actlab's own layers (SAU, smoothed activations, ASH family) in the registry.

Imported once by :mod:`actlab`; kept apart from :mod:`actlab.registry` because the layer modules
themselves import the registry (``register_activation_type``).

Names:

- ``sau`` (exact convolution), ``sau_paper`` (the paper's Eq. 3), ``sau_zero_centred``;
  keyword arguments go to :class:`actlab.nn.SAU` (``alpha=``, ``n=``, ``num_parameters=``, ...).
- ``smooth_<name>`` for ``relu``, ``leaky_relu``, ``prelu``, ``relu6``, ``hardtanh`` (Gaussian
  closed form) and ``gelu``, ``silu``, ``elu``, ``softplus``, ``mish``, ``tanh`` (quadrature):
  :class:`actlab.nn.Smoothed` with ``n=`` (default 20000), ``kernel="gaussian"|"bump"``.
- ``ash`` (learnable z, α), ``fash`` (fixed), ``lash`` (leaky), ``ash_topk`` (exact top-k rule).
- norms ``agc`` (Deep Control's gain control, :class:`actlab.nn.AGC`), ``agc_act`` (AGC fused
  with a (leaky) ReLU, :class:`actlab.nn.AGCAct`) and ``agc_noise`` (AGC plus training-mode
  Gaussian noise, :class:`actlab.nn.AGCNoise`, ``sigma=``, ``per=``), built as
  ``f(num_channels, dim=2, **kw)``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from torch import nn

from actlab.nn.agc import AGC, AGCAct
from actlab.nn.ash import ASH, FASH, LASH, ASHTopK
from actlab.nn.noise import AGCNoise
from actlab.nn.sau import SAU
from actlab.nn.smoothing import Smoothed
from actlab.registry import (
    ACTIVATIONS,
    NORMS,
    register_act,
    register_activation_type,
    register_norm,
    register_norm_type,
)

__all__ = ["SMOOTHED_NAMES"]

#: activations offered pre-smoothed as ``smooth_<name>``
SMOOTHED_NAMES = (
    "relu", "leaky_relu", "prelu", "relu6", "hardtanh",
    "gelu", "silu", "elu", "softplus", "mish", "tanh",
)


def _sau_variant(**defaults: Any):
    def make(**kwargs: Any) -> nn.Module:
        return SAU(**{**defaults, **kwargs})

    make.__doc__ = SAU.__doc__
    make.__wrapped__ = SAU  # type: ignore[attr-defined]
    return make


def _smoothed(name: str, **kwargs: Any) -> nn.Module:
    return Smoothed(name, **kwargs)


def _agc(num_channels: int, dim: int = 2, **kwargs: Any) -> nn.Module:
    """AGC over ``dim`` spatial dims; ``dim=0`` (an ``(N, C)`` input) is rejected by AGC itself."""
    return AGC(num_channels, dim=dim, **kwargs)


def _agc_noise(num_channels: int, dim: int = 2, **kwargs: Any) -> nn.Module:
    return AGCNoise(num_channels, dim=dim, **kwargs)


def _agc_act(num_channels: int, dim: int = 2, **kwargs: Any) -> nn.Module:
    return AGCAct(num_channels, dim=dim, **kwargs)


for _cls in (SAU, Smoothed, ASH, ASHTopK):
    register_activation_type(_cls)

if "sau" not in ACTIVATIONS:  # idempotent under importlib.reload
    register_act("sau", _sau_variant())
    register_act("sau_paper", _sau_variant(formula="paper"))
    register_act("sau_zero_centred", _sau_variant(zero_centred=True), aliases=("sau_zc",))
    for _name in SMOOTHED_NAMES:
        register_act(f"smooth_{_name}", partial(_smoothed, _name))
    register_act("ash", ASH)
    register_act("fash", FASH, aliases=("f_ash",))
    register_act("lash", LASH, aliases=("l_ash",))
    register_act("ash_topk", ASHTopK, aliases=("topk",))
if "agc" not in NORMS:
    for _cls in (AGC, AGCAct):
        register_norm_type(_cls)
    register_norm("agc", _agc, aliases=("gain_control",))
    register_norm("agc_act", _agc_act)
if "agc_noise" not in NORMS:
    register_norm("agc_noise", _agc_noise)
