"""AGC (automatic gain control, "Deep Control") modules: :class:`AGC` and the fused
:class:`AGCAct`.

Reference: B. Ruff, "Deep Control - a simple automatic gain control for memory efficient and high
performance training of deep convolutional neural networks", arXiv:1706.03907, 2017; not adaptive
gradient clipping. The math lives in :mod:`actlab.functional.agc`::

    AGC(h)[n, c, ...] = (h[n, c, ...] − λ_c · m(h)[n, c, ...]) · γ_c + β_c

with ``m`` the per-sample spatial mean (or local window mean / median) of each channel. There are
no batch statistics and no running buffers: a drop-in replacement for ``nn.BatchNorm1d/2d/3d`` on
inputs with spatial dims that behaves identically in train and eval mode and at batch size 1.
With AGC, the paper scales the learning rate with the batch size: see
:func:`actlab.functional.agc.scaled_lr`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from actlab.functional.agc import (
    ACTS,
    MODES,
    _agc_act_fwd_math,
    _agc_fwd_math,
    _agc_local_math,
    agc,
    agc_act,
)
from actlab.registry import register_norm_type

__all__ = ["AGC", "AGCAct"]


def _check_features(num_features: int) -> int:
    if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
        raise ValueError(f"num_features must be a positive int, got {num_features!r}")
    return num_features


def _check_dim(dim: int | None) -> int | None:
    if dim is None:
        return None
    if isinstance(dim, bool) or not isinstance(dim, int) or dim not in (1, 2, 3):
        raise ValueError(
            f"dim must be None or the number of spatial dims 1, 2 or 3 (inputs (N, C, L), "
            f"(N, C, H, W), (N, C, D, H, W)), got {dim!r}; AGC needs spatial dims: for (N, C) "
            "features (dim=0) the spatial mean is the input itself and AGC degenerates"
        )
    return dim


def _check_float(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite float, got {value!r}")
    return float(value)


class _AGCBase(nn.Module):
    """Parameters ``lam`` (λ), ``weight`` (γ), ``bias`` (β), stats and repr (the input is
    checked by the functional op, after ``__torch_function__`` dispatch, so fx can trace)."""

    def __init__(
        self,
        num_features: int,
        lam_init: float,
        affine: bool,
        learn_lam: bool,
        dim: int | None,
    ) -> None:
        super().__init__()
        self.num_features = _check_features(num_features)
        self.lam_init = _check_float(lam_init, "lam_init")
        self.affine = bool(affine)
        self.dim = _check_dim(dim)
        lam = torch.empty(num_features)
        if learn_lam:
            self.lam = nn.Parameter(lam)
        else:
            self.register_buffer("lam", lam)
        if self.affine:
            self.weight = nn.Parameter(torch.empty(num_features))
            self.bias = nn.Parameter(torch.empty(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """λ = ``lam_init``, γ = 1, β = 0."""
        with torch.no_grad():
            self.lam.fill_(self.lam_init)
            if self.affine:
                self.weight.fill_(1.0)
                self.bias.zero_()

    def _script_params(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.dtype]:
        """TorchScript: (γ, β) with the defaults 1 and 0 when not affine, and the compute dtype."""
        weight, bias = self.weight, self.bias
        gamma = weight if weight is not None else torch.ones_like(self.lam)
        beta = bias if bias is not None else torch.zeros_like(self.lam)
        cdt = torch.promote_types(torch.promote_types(h.dtype, self.lam.dtype), gamma.dtype)
        return gamma, beta, torch.promote_types(cdt, torch.float32)

    @torch.no_grad()
    def layer_stats(self) -> dict[str, float]:
        """Mean λ and mean γ (1.0 when not affine)."""
        gamma = float(self.weight.mean()) if self.weight is not None else 1.0
        return {"lambda": float(self.lam.mean()), "gamma": gamma}

    def _repr_parts(self) -> list[str]:
        parts = [str(self.num_features)]
        if self.lam_init != 1.0:
            parts.append(f"lam_init={self.lam_init:g}")
        if not self.affine:
            parts.append("affine=False")
        if not isinstance(self.lam, nn.Parameter):
            parts.append("learn_lam=False")
        if self.dim is not None:
            parts.append(f"dim={self.dim}")
        return parts


@register_norm_type
class AGC(_AGCBase):
    r"""Automatic gain control ``(h − λ·m(h))·γ + β`` per channel (B. Ruff 2017).

    A batch-independent replacement for ``nn.BatchNorm1d/2d/3d``: every sample is processed on
    its own, there are no running statistics, and train and eval modes compute the same function.

    Args:
        num_features: channel count C (dim 1 of the input).
        mode: ``"mean"`` (per-sample spatial mean; hand-written backward that saves only the input
            and the (N, C) means), ``"window"`` (local mean over an odd ``window`` neighbourhood,
            1-3 spatial dims) or ``"median"`` (per-sample spatial median).
        window: odd window size for ``mode="window"``.
        lam_init: initial λ (1 = subtract the whole mean).
        affine: learn the per-channel scale ``weight`` (γ) and shift ``bias`` (β); the names match
            batch norm so a BN→AGC conversion copies them.
        learn_lam: λ is a parameter (else a buffer; the state_dict key ``lam`` is the same).
        dim: optional number of spatial dims (1, 2, 3); when given, the input rank is checked.

    Shape: (N, C, *spatial) with at least one spatial dim. (N, C) inputs are rejected: there the
    spatial mean is ``h`` itself, so AGC would reduce to the affine map ``(1 − λ)γh + β``.
    """

    def __init__(
        self,
        num_features: int,
        mode: str = "mean",
        window: int = 3,
        lam_init: float = 1.0,
        affine: bool = True,
        learn_lam: bool = True,
        dim: int | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown AGC mode {mode!r}; expected one of {MODES}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window % 2 == 0:
            raise ValueError(f"window must be an odd positive int, got {window!r}")
        self.mode = mode
        self.window = window
        super().__init__(num_features, lam_init, affine, learn_lam, dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self._scripted(h)
        return agc(
            h, self.lam, self.weight, self.bias, mode=self.mode, window=self.window,
            spatial_dims=self.dim,
        )

    def _scripted(self, h: torch.Tensor) -> torch.Tensor:
        """TorchScript forward: the same formulas as plain ops that autograd differentiates
        (no input checks)."""
        gamma, beta, cdt = self._script_params(h)
        if self.mode == "mean":
            return _agc_fwd_math(h, self.lam, gamma, beta, cdt)[0]
        return _agc_local_math(h, self.lam, gamma, beta, self.mode, self.window, cdt)

    def extra_repr(self) -> str:
        parts = self._repr_parts()
        if self.mode != "mean":
            parts.insert(1, f"mode={self.mode!r}")
            if self.mode == "window":
                parts.insert(2, f"window={self.window}")
        return ", ".join(parts)


@register_norm_type
class AGCAct(_AGCBase):
    r"""Fused ``act(AGC(h))`` (mean mode) that saves only its output for backward.

    Like in-place activated batch norm: backward recovers what it needs from the output, the
    (N, C) means and the parameters (see :func:`actlab.functional.agc.agc_act`), so it keeps one
    input-sized tensor where ``AGC`` followed by an activation keeps two or three.

    Args:
        num_features, lam_init, affine, learn_lam, dim: as :class:`AGC`.
        act: ``"relu"`` or ``"leaky_relu"``.
        negative_slope: leaky-ReLU slope (> 0; unused for ReLU).
        eps: the scale used is ``sign(γ)·max(|γ|, eps)`` so that ``h − λm`` can be recovered
            from the output; identical to ``act(AGC(h))`` whenever ``|γ| ≥ eps``.
    """

    def __init__(
        self,
        num_features: int,
        act: str = "relu",
        negative_slope: float = 0.01,
        lam_init: float = 1.0,
        affine: bool = True,
        learn_lam: bool = True,
        dim: int | None = None,
        eps: float = 1e-5,
    ) -> None:
        if act not in ACTS:
            raise ValueError(f"unknown act {act!r}; expected one of {ACTS}")
        slope = _check_float(negative_slope, "negative_slope")
        if act == "leaky_relu" and not slope > 0:
            raise ValueError(
                f"negative_slope must be > 0 for act='leaky_relu', got {negative_slope!r}"
            )
        if not _check_float(eps, "eps") > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.act = act
        self.negative_slope = slope
        self.eps = float(eps)
        super().__init__(num_features, lam_init, affine, learn_lam, dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            gamma, beta, cdt = self._script_params(h)
            slope = 0.0 if self.act == "relu" else self.negative_slope
            return _agc_act_fwd_math(h, self.lam, gamma, beta, slope, self.eps, cdt)[0]
        return agc_act(
            h, self.lam, self.weight, self.bias, act=self.act,
            negative_slope=self.negative_slope, eps=self.eps, spatial_dims=self.dim,
        )

    def extra_repr(self) -> str:
        parts = self._repr_parts()
        parts.insert(1, f"act={self.act!r}")
        if self.act == "leaky_relu":
            parts.insert(2, f"negative_slope={self.negative_slope:g}")
        if self.eps != 1e-5:
            parts.append(f"eps={self.eps:g}")
        return ", ".join(parts)
