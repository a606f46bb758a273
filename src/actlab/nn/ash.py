"""ASH (Adaptive SwisH) activation modules: :class:`ASH`, :class:`FASH`, :class:`LASH` and the
exact top-k rule :class:`ASHTopK`.

Reference: K. Lee, H. Lee, J. Yang, J. Y. Hwang, "Stochastic Adaptive Activation Function",
NeurIPS 2022. The math lives in
:mod:`actlab.functional.ash`::

    ASH(x) = x · sigmoid(2α (x − μ_X − z σ_X)),   μ_X, σ_X per-sample mean / std

``z`` (threshold in standard deviations) and ``α`` (gate sharpness) are trainable by default.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from actlab.functional.ash import (
    _ash_fwd_math,
    _topk_mask,
    ash,
    ash_logits,
    ash_topk,
    z_from_k,
)
from actlab.registry import register_activation_type

__all__ = ["ASH", "FASH", "LASH", "ASHTopK"]


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


#: torch >= 2.6 names the symbolic-trace check apart (its ``is_fx_tracing`` warns that it is also
#: true under torch.export); older versions have only ``is_fx_tracing``
_is_fx_symbolic_tracing = getattr(
    torch.fx._symbolic_trace, "is_fx_symbolic_tracing", torch.fx._symbolic_trace.is_fx_tracing
)


@torch.jit.unused  # not reached in the scripted forward (and not scriptable)
def _recording() -> bool:
    """True while fx, TorchScript, jit.trace, dynamo or export record the forward (activity
    tracking, a Python float, is skipped then)."""
    return (
        _is_fx_symbolic_tracing()
        or torch.jit.is_tracing()
        or torch.compiler.is_compiling()
    )


def _script_dims(dims: list[int], nd: int) -> list[int]:
    """TorchScript: sorted non-negative statistics dims; ``[0]`` means every non-batch dim."""
    if dims == [0]:
        return list(range(1, nd))
    out: list[int] = []
    for d in dims:
        out.append(d % nd)
    return sorted(out)


def _dims_tuple(dims: Sequence[int] | int | None) -> tuple[int, ...] | None:
    if dims is None:
        return None
    if isinstance(dims, int):
        return (dims,)
    return tuple(dims)


@register_activation_type
class ASH(nn.Module):
    r"""Adaptive swish: ``x · sigmoid(2α(x − μ_X − z σ_X))`` (Lee et al., NeurIPS 2022).

    Args:
        k: initial fraction of each sample to keep, in (0, 1): ``z`` starts at the standard
            normal quantile ``Φ⁻¹(1 − k)``. Mutually exclusive with ``z_init``.
        z_init: initial threshold ``z`` directly. When neither ``k`` nor ``z_init`` is given,
            ``z`` starts at 0 (the per-sample mean: ``k = 0.5`` for symmetric inputs).
        alpha: initial gate sharpness α (1 = swish-like shape around the threshold).
        learn_z / learn_alpha: make ``z`` / ``α`` trainable parameters (else buffers; the
            state_dict keys ``z`` and ``alpha`` are the same either way).
        num_parameters: 1 (shared) or the channel count C (one ``z`` and ``α`` per channel of an
            (N, C, ...) input).
        dims: statistics dims (``None`` = all non-batch dims; ``(2, 3)`` = per channel).
        eps: added to the variance inside the square root.
        inplace: copy the result into the input tensor when no gradient is needed (inference),
            like ``nn.ReLU(inplace=True)``; ignored when a gradient is needed, because backward
            needs the unmodified input. (It saves no peak memory: the result is computed first.)
        leak: slope kept below the threshold (0 for ASH; see :class:`LASH`).

    Attributes:
        track_activity: when True, every forward stores ``last_active_fraction``, the fraction of
            elements whose sigmoid gate is > 0.5 (i.e. above the threshold), under no_grad
            (not while fx, jit or torch.compile/export record the forward).

    Shape: any (N, ...) input; output of the same shape and dtype.
    """

    track_activity: bool = False
    last_active_fraction: float | None = None

    def __init__(
        self,
        k: float | None = None,
        z_init: float | None = None,
        alpha: float = 1.0,
        learn_z: bool = True,
        learn_alpha: bool = True,
        num_parameters: int = 1,
        dims: Sequence[int] | int | None = None,
        eps: float = 1e-5,
        inplace: bool = False,
        leak: float = 0.0,
    ) -> None:
        super().__init__()
        if k is not None and z_init is not None:
            raise ValueError(f"give either k or z_init, not both (got k={k!r}, z_init={z_init!r})")
        z0 = z_from_k(k) if k is not None else 0.0 if z_init is None else z_init
        if isinstance(z0, bool) or not isinstance(z0, (int, float)) or not math.isfinite(z0):
            raise ValueError(f"z_init must be a finite float, got {z_init!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            raise TypeError(f"alpha must be a float, got {type(alpha).__name__}")
        if not math.isfinite(alpha):
            raise ValueError(f"alpha must be finite, got {alpha!r}")
        if not eps >= 0.0:
            raise ValueError(f"eps must be >= 0, got {eps!r}")
        if not 0.0 <= leak < 1.0:
            raise ValueError(f"leak must lie in [0, 1), got {leak!r}")
        self.k = k
        self.z_init = float(z0)
        self.alpha_init = float(alpha)
        self.num_parameters = _positive_int(num_parameters, "num_parameters")
        self.dims = _dims_tuple(dims)
        # statistics dims for TorchScript, whose attributes need a typed non-empty list: [0]
        # (the batch dim, never a statistics dim) stands for every non-batch dim
        self._dims_list = list(self.dims) if self.dims is not None else [0]
        self.eps = float(eps)
        self.inplace = bool(inplace)
        self.leak = float(leak)
        for name, learn in (("z", learn_z), ("alpha", learn_alpha)):
            value = torch.empty(self.num_parameters)
            if learn:
                self.register_parameter(name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.z.fill_(self.z_init)
            self.alpha.fill_(self.alpha_init)

    def _param(self, p: torch.Tensor) -> torch.Tensor:
        """Shared: a 0-d view; per channel: the (C,) tensor (``ash`` reshapes it)."""
        return p.reshape(()) if self.num_parameters == 1 else p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self._scripted(x)
        per_channel = self.num_parameters != 1
        z, alpha = self._param(self.z), self._param(self.alpha)
        if self.track_activity and not _recording():
            with torch.no_grad():
                t = ash_logits(x, z, alpha, self.dims, self.eps, per_channel=per_channel)
                self.last_active_fraction = float((t > 0).float().mean())
        return ash(
            x, z, alpha, self.dims, self.eps, self.leak, per_channel=per_channel,
            inplace=self.inplace,
        )

    def _scripted(self, x: torch.Tensor) -> torch.Tensor:
        """TorchScript forward: the same formula (:func:`_ash_fwd_math`) as plain ops that
        autograd differentiates; no argument checks, no activity tracking, no in-place result."""
        nd = x.dim()
        dims = _script_dims(self._dims_list, nd)
        shape = [1, -1] + [1] * (nd - 2)
        z = self.z.reshape([]) if self.num_parameters == 1 else self.z.view(shape)
        alpha = self.alpha.reshape([]) if self.num_parameters == 1 else self.alpha.view(shape)
        cdt = torch.promote_types(torch.promote_types(x.dtype, z.dtype), alpha.dtype)
        cdt = torch.promote_types(cdt, torch.float32)
        return _ash_fwd_math(x, z, alpha, dims, self.eps, self.leak, cdt)[0]

    @torch.no_grad()
    def layer_stats(self) -> dict[str, float]:
        """Mean ``z`` and ``α``, plus ``active_fraction`` when activity is tracked."""
        stats = {"z": float(self.z.mean()), "alpha": float(self.alpha.mean())}
        if self.track_activity and self.last_active_fraction is not None:
            stats["active_fraction"] = self.last_active_fraction
        return stats

    def extra_repr(self) -> str:
        parts = [f"k={self.k}" if self.k is not None else f"z_init={self.z_init:g}"]
        parts.append(f"alpha={self.alpha_init:g}")
        if self.num_parameters != 1:
            parts.append(f"num_parameters={self.num_parameters}")
        if not isinstance(self.z, nn.Parameter):
            parts.append("learn_z=False")
        if not isinstance(self.alpha, nn.Parameter):
            parts.append("learn_alpha=False")
        if self.dims is not None:
            parts.append(f"dims={self.dims}")
        if self.leak:
            parts.append(f"leak={self.leak:g}")
        if self.eps != 1e-5:
            parts.append(f"eps={self.eps:g}")
        if self.inplace:
            parts.append("inplace=True")
        return ", ".join(parts)


class FASH(ASH):
    """ASH with a fixed threshold ``z = Φ⁻¹(1 − k)`` and fixed α: nothing is trainable.

    ``k`` defaults to 0.5 (threshold at the per-sample mean). ``z`` and ``alpha`` are buffers and
    stay in the state_dict.
    """

    def __init__(
        self,
        k: float = 0.5,
        alpha: float = 1.0,
        num_parameters: int = 1,
        dims: Sequence[int] | int | None = None,
        eps: float = 1e-5,
        inplace: bool = False,
    ) -> None:
        super().__init__(
            k=k, alpha=alpha, learn_z=False, learn_alpha=False, num_parameters=num_parameters,
            dims=dims, eps=eps, inplace=inplace,
        )


class LASH(ASH):
    """Leaky ASH: ``x · (leak + (1 − leak)·sigmoid(2α(x − μ_X − z σ_X)))``.

    Below the threshold the slope tends to ``leak`` instead of 0, so no unit is ever fully shut
    off. ``z`` (from ``k``, default 0.5) and ``α`` are trainable unless told otherwise.
    """

    def __init__(
        self,
        k: float = 0.5,
        leak: float = 0.01,
        alpha: float = 1.0,
        learn_z: bool = True,
        learn_alpha: bool = True,
        num_parameters: int = 1,
        dims: Sequence[int] | int | None = None,
        eps: float = 1e-5,
        inplace: bool = False,
    ) -> None:
        super().__init__(
            k=k, alpha=alpha, learn_z=learn_z, learn_alpha=learn_alpha,
            num_parameters=num_parameters, dims=dims, eps=eps, inplace=inplace, leak=leak,
        )


@register_activation_type
class ASHTopK(nn.Module):
    """The exact top-k rule of ASH (paper, Eq. 2/7): keep the top ``k`` fraction of each sample
    (over ``dims``; default all non-batch dims), zero the rest. Nothing is trainable; the
    gradient passes through the kept elements. See :func:`actlab.functional.ash.ash_topk`.
    """


    def __init__(
        self, k: float = 0.5, dims: Sequence[int] | int | None = None, inplace: bool = False
    ) -> None:
        super().__init__()
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0.0 < k <= 1.0:
            raise ValueError(f"k (fraction of each sample kept) must lie in (0, 1], got {k!r}")
        self.k = float(k)
        self.dims = _dims_tuple(dims)
        # statistics dims for TorchScript, whose attributes need a typed non-empty list: [0]
        # (the batch dim, never a statistics dim) stands for every non-batch dim
        self._dims_list = list(self.dims) if self.dims is not None else [0]
        self.inplace = bool(inplace)  # accepted for drop-in use; the result is never in place

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return x * _topk_mask(x, self.k, _script_dims(self._dims_list, x.dim()))
        return ash_topk(x, self.k, self.dims)

    def extra_repr(self) -> str:
        return f"k={self.k:g}" + (f", dims={self.dims}" if self.dims is not None else "")

