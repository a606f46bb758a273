"""AGC, the automatic gain control layer of "Deep Control", as pure functions.

Reference: B. Ruff, "Deep Control - a simple automatic gain control for memory efficient and high
performance training of deep convolutional neural networks", arXiv:1706.03907, 2017. (Not to be
confused with adaptive gradient *clipping*, also abbreviated AGC.) Per channel ``c`` and per
sample, AGC subtracts a fraction ``λ_c`` of the channel's own spatial mean and applies an affine
map::

    agc(h)[n, c, ...] = (h[n, c, ...] − λ_c · m(h)[n, c, ...]) · γ_c + β_c

where ``m`` is, by ``mode``:

* ``"mean"``: the spatial mean of ``h[n, c]`` over all dims ≥ 2 (one number per sample and
  channel);
* ``"window"``: a sliding-window local mean with odd kernel size ``window`` (zero padding that is
  *not* counted, i.e. ``avg_pool`` with ``count_include_pad=False``), for 1-, 2- or 3-d maps;
* ``"median"``: the spatial median of ``h[n, c]`` (for an even count, the lower of the two middle
  values, as :func:`torch.median`).

Unlike batch norm, nothing depends on the other samples of the batch and there are no running
statistics, so training and evaluation compute the same function, and batch size 1 works.
Inputs need at least one spatial dim: for (N, C) features the "spatial mean" would be ``h`` itself
and AGC would degenerate to ``(1 − λ)·γ·h + β``, so such inputs are rejected.

The ``"mean"`` mode is a :class:`torch.autograd.Function` with a hand-written backward; the op
is linear in ``h``, so with ``g`` the incoming gradient and ``S`` the spatial size::

    ∂L/∂h = γ (g − λ · mean_sp(g))        ∂L/∂γ = Σ g (h − λ m)
    ∂L/∂λ = −Σ g γ m                       ∂L/∂β = Σ g

It saves only the input ``h`` and the (N, C) means. :func:`agc_act` fuses AGC with a ReLU /
leaky ReLU and saves only its output (see there). Each has one formula per direction
(``_agc*_fwd_math``, ``_bwd_math``, ``_jvp_math``), run eagerly and compiled by the
``"compiled"`` backend, differentiable for double backward and ``torch.func``; traced, scripted,
exported or inside ``torch.compile`` the formulas' plain ops are recorded. Inputs with a single
spatial position per sample, like (N, C), are refused. :func:`agc_reference` is a plain composition
of torch ops used as the test oracle.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import handle_torch_function, has_torch_function_variadic

from actlab.functional import backends
from actlab.functional._common import compute_dtype
from actlab.functional.backends import composition_only, first_order_only

__all__ = ["agc", "agc_reference", "agc_act", "agc_act_reference", "scaled_lr", "MODES", "ACTS"]

MODES = ("mean", "window", "median")
ACTS = ("relu", "leaky_relu")


def scaled_lr(base_lr: float, batch_size: int) -> float:
    """The Deep Control learning-rate rule: ``lr = base_lr × batch_size``.

    ``base_lr`` is the learning rate per sample; with AGC (no batch statistics) the summed
    gradient grows with the batch, and the paper scales the step with it.
    """
    if isinstance(base_lr, bool) or not isinstance(base_lr, (int, float)) or not base_lr > 0:
        raise ValueError(f"base_lr must be a positive number, got {base_lr!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return float(base_lr) * batch_size


# ---------------------------------------------------------------------------------------------
# argument checks and small helpers
# ---------------------------------------------------------------------------------------------
def _check_input(h: Tensor, spatial_dims: int | None) -> None:
    if not isinstance(h, Tensor) or not h.is_floating_point():
        raise TypeError(f"h must be a floating-point tensor, got {type(h).__name__}")
    if spatial_dims is not None and h.dim() != spatial_dims + 2:
        raise ValueError(
            f"AGC with spatial_dims={spatial_dims} (the module's dim={spatial_dims}) expects a "
            f"{spatial_dims + 2}-d input (N, C and {spatial_dims} spatial dims), got shape "
            f"{tuple(h.shape)}"
        )
    if h.dim() < 3:
        raise ValueError(
            f"AGC needs inputs of shape (N, C, *spatial) with at least one spatial dim, got shape "
            f"{tuple(h.shape)}; for (N, C) features the spatial mean is h itself and AGC would "
            "degenerate to an affine map (use a norm for plain features, e.g. 'ln', or 'none')"
        )
    if math.prod(h.shape[2:]) == 1:
        raise ValueError(
            f"AGC needs more than one spatial position per sample and channel, got shape "
            f"{tuple(h.shape)}: with spatial extent 1 the spatial mean is h itself and AGC "
            "would degenerate to an affine map (e.g. after global pooling use 'ln' or 'none')"
        )


def _channel_param(p: Tensor | float | None, h: Tensor, name: str, default: float) -> Tensor:
    """A (C,) tensor: ``None`` gives a constant ``default``, a float is broadcast to (C,)."""
    c = h.shape[1]
    dtype = torch.float64 if h.dtype == torch.float64 else torch.float32
    if p is None:
        return torch.full((c,), default, dtype=dtype, device=h.device)
    if not isinstance(p, Tensor):
        if isinstance(p, bool) or not isinstance(p, (int, float)):
            raise TypeError(f"{name} must be a (C,) tensor, a float or None, got {type(p)}")
        return torch.full((c,), float(p), dtype=dtype, device=h.device)
    if not p.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {p.dtype}")
    if p.shape != (c,):
        raise ValueError(
            f"{name} must have shape (C,) = ({c},) for an input with {c} channels in dim 1 "
            f"(shape {tuple(h.shape)}), got {tuple(p.shape)} (num_features={p.numel()}?)"
        )
    return p


# The helpers and formulas below are also compiled by TorchScript (the modules' scripted
# forward): list shapes, no star-unpacking, no math.prod.
def _channel_view(p: Tensor, ndim: int) -> Tensor:
    """(C,) -> (1, C, 1, ..., 1) for an ``ndim``-dim input."""
    return p.view([1, -1] + [1] * (ndim - 2))


def _nc_view(t: Tensor, ndim: int) -> Tensor:
    """(N, C) -> (N, C, 1, ..., 1) for an ``ndim``-dim input."""
    return t.view([t.shape[0], t.shape[1]] + [1] * (ndim - 2))


def _spatial(h: Tensor) -> list[int]:
    return list(range(2, h.dim()))


def _spatial_size(h: Tensor) -> int:
    size = 1
    for n in h.shape[2:]:
        size *= n
    return size


def _spatial_mean(hc: Tensor) -> Tensor:
    """(N, C) spatial means as ``Σ h/S``: finite for inputs up to the dtype's maximum."""
    return (hc * (1.0 / _spatial_size(hc))).sum(_spatial(hc))


def _safe_gamma(gamma: Tensor, eps: float) -> Tensor:
    """sign(γ)·max(|γ|, eps) with sign(0) = +1: a scale bounded away from 0."""
    return torch.where(gamma >= 0, gamma.clamp(min=eps), gamma.clamp(max=-eps))


def _check_window(window: int, h: Tensor) -> None:
    if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd positive int, got {window!r}")
    if h.dim() - 2 not in (1, 2, 3):
        raise ValueError(
            f"mode='window' supports 1-, 2- or 3-d spatial inputs, got shape {tuple(h.shape)}"
        )


def local_mean(h: Tensor, window: int) -> Tensor:
    """Sliding-window mean over the spatial dims (odd ``window``; padding not counted)."""
    _check_window(window, h)
    return _window_mean(h, window)


def _window_mean(h: Tensor, window: int) -> Tensor:
    """:func:`local_mean` without the checks. ``h`` is pre-scaled by ``1 / window**d`` so that
    window sums stay finite for inputs up to the dtype's maximum."""
    d = h.dim() - 2
    pad = window // 2
    size = 1
    for _ in range(d):
        size *= window
    hs = h * (1.0 / size)
    if d == 1:
        return F.avg_pool1d(hs, window, 1, pad, count_include_pad=False) * size
    if d == 2:
        return F.avg_pool2d(hs, window, 1, pad, count_include_pad=False) * size
    if min(h.shape[2:]) >= window:
        return F.avg_pool3d(hs, window, 1, pad, count_include_pad=False) * size
    # avg_pool3d rejects inputs smaller than the kernel even with padding: pad explicitly and
    # divide the window sums by the number of valid (unpadded) positions.
    sums = F.avg_pool3d(F.pad(hs, [pad] * 6), window, 1) * size  # Σ h / size
    ones = torch.ones([1, 1] + list(h.shape[2:]), dtype=h.dtype, device=h.device)
    count = F.avg_pool3d(F.pad(ones, [pad] * 6), window, 1) * size
    return sums / count * size


def spatial_median(h: Tensor) -> Tensor:
    """Per-sample per-channel (lower) median over the spatial dims, shape (N, C, 1, ...).

    Computed as the ``ceil(L/2)``-th smallest value with ``topk`` (same value and gradient as
    ``torch.median``) because ONNX has a TopK operator and no median.
    """
    flat = h.flatten(2)
    rank = (flat.shape[-1] + 1) // 2
    med = flat.topk(rank, dim=-1, largest=False, sorted=True).values[..., -1]
    return _nc_view(med, h.dim())


# ---------------------------------------------------------------------------------------------
# mean mode: one formula per direction, eager (run directly) and compiled (run_compiled)
# ---------------------------------------------------------------------------------------------
def _agc_fwd_math(
    h: Tensor, lam: Tensor, gamma: Tensor, beta: Tensor, cdt: torch.dtype
) -> tuple[Tensor, Tensor]:
    """``(h − λ m)·γ + β`` as ``h·γ + (β − λγm)`` and the (N, C) spatial means ``m``."""
    nd = h.dim()
    hc = h.to(cdt)
    lc, gc, bc = lam.to(cdt), gamma.to(cdt), beta.to(cdt)
    m = _spatial_mean(hc)
    y = torch.addcmul(_nc_view(bc - lc * gc * m, nd), hc, _channel_view(gc, nd))
    return y.to(h.dtype), m


def _agc_bwd_math(
    grad: Tensor,
    h: Tensor,
    m: Tensor,
    lam: Tensor,
    gamma: Tensor,
    beta_dtype: torch.dtype,
    need_h: bool,
    need_lam: bool,
    need_gamma: bool,
    need_beta: bool,
    grad_m: Tensor | None,
) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
    """Gradients for h, λ, γ, β (formulas in the module docstring); differentiable.

    ``grad_m``: gradient reaching the means output (double backward), ``∂m/∂h = 1/S``.
    """
    cdt = m.dtype
    nd = h.dim()
    sp = _spatial(h)
    size = _spatial_size(h)
    g = grad.to(cdt)
    lc, gc = lam.to(cdt), gamma.to(cdt)
    g_sum = g.sum(sp)  # (N, C): Σ_sp g
    gh = gl = gg = gb = None
    if need_h:
        # γ g − γ λ mean_sp(g): one broadcast multiply-add over the input-sized tensor
        shift = (-(gc * lc) / size) * g_sum
        if grad_m is not None:
            shift = shift + grad_m.to(cdt) / size
        gh = torch.addcmul(_nc_view(shift, nd), g, _channel_view(gc, nd)).to(h.dtype)
    mg = (m * g_sum).sum(0)  # Σ_n m Σ_sp g, (C,)
    if need_lam:
        gl = (-gc * mg).to(lam.dtype)
    if need_gamma:
        gg = ((g * h.to(cdt)).sum(sp).sum(0) - lc * mg).to(gamma.dtype)
    if need_beta:
        gb = g_sum.sum(0).to(beta_dtype)
    return gh, gl, gg, gb


def _agc_jvp_math(
    h: Tensor, m: Tensor, lam: Tensor, gamma: Tensor,
    h_t: Tensor | None, lam_t: Tensor | None, gamma_t: Tensor | None, beta_t: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """Tangents of ``(y, m)``: ``dm = mean_sp(dh)``,
    ``dy = dh·γ + h·dγ + dβ − dλ·γ·m − λ·dγ·m − λ·γ·dm``."""
    cdt = m.dtype
    nd = h.dim()
    hc = h.to(cdt)
    lc, gc = lam.to(cdt), gamma.to(cdt)
    m_t = torch.zeros_like(m)
    y_t = torch.zeros_like(hc)
    shift_t = torch.zeros_like(m)  # (N, C)
    if h_t is not None:
        ht = h_t.to(cdt)
        m_t = _spatial_mean(ht)
        y_t = ht * _channel_view(gc, nd)
        shift_t = shift_t - lc * gc * m_t
    if lam_t is not None:
        shift_t = shift_t - lam_t.to(cdt) * gc * m
    if gamma_t is not None:
        gt = gamma_t.to(cdt)
        y_t = y_t + hc * _channel_view(gt, nd)
        shift_t = shift_t - lc * gt * m
    if beta_t is not None:
        shift_t = shift_t + beta_t.to(cdt)
    return (y_t + _nc_view(shift_t, nd)).to(h.dtype), m_t


class _AGCMean(torch.autograd.Function):
    """(h − λ m) γ + β with m the spatial mean; outputs ``(y, m)``, saves h, m, λ and γ.

    First-order backward: the compiled kernel or :func:`_agc_bwd_math` run eagerly; with
    ``create_graph=True`` / under ``torch.func`` autograd records :func:`_agc_bwd_math` (m is an
    output, so double backward reaches h through it). ``jvp``: forward-mode AD; vmap applies the
    function per vmapped slice.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(  # type: ignore[override]
        h: Tensor, lam: Tensor, gamma: Tensor, beta: Tensor
    ) -> tuple[Tensor, Tensor]:
        cdt = compute_dtype(h, lam, gamma, beta)
        if backends.use_compiled(h) and not torch._C._are_functorch_transforms_active():
            key = (cdt, h.dtype, h.device.type)
            out = backends.run_compiled(_agc_fwd_math, key, h, lam, gamma, beta, cdt)
            if out is not None:
                return out
        return _agc_fwd_math(h, lam, gamma, beta, cdt)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
        h, lam, gamma, beta = inputs
        _, m = output
        ctx.save_for_backward(h, m, lam, gamma)
        ctx.save_for_forward(h, m, lam, gamma)
        ctx.beta_dtype = beta.dtype
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad: Tensor | None, grad_m: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        h, m, lam, gamma = ctx.saved_tensors
        needs = tuple(ctx.needs_input_grad[:4])
        if grad is None:
            grad = torch.zeros_like(h)
        if backends.use_compiled(h) and first_order_only() and grad_m is None:
            key = (*needs, ctx.beta_dtype, h.dtype, grad.dtype, h.device.type)
            grads = backends.run_compiled(
                _agc_bwd_math, key, grad, h, m, lam, gamma, ctx.beta_dtype, *needs, None
            )
            if grads is not None:
                return grads
        return _agc_bwd_math(grad, h, m, lam, gamma, ctx.beta_dtype, *needs, grad_m)

    @staticmethod
    def jvp(  # type: ignore[override]
        ctx: Any, h_t: Tensor | None, lam_t: Tensor | None, gamma_t: Tensor | None,
        beta_t: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        h, m, lam, gamma = ctx.saved_tensors
        return _agc_jvp_math(h, m, lam, gamma, h_t, lam_t, gamma_t, beta_t)


def agc(
    h: Tensor,
    lam: Tensor | float | None = 1.0,
    gamma: Tensor | float | None = None,
    beta: Tensor | float | None = None,
    mode: str = "mean",
    window: int = 3,
    *,
    spatial_dims: int | None = None,
) -> Tensor:
    """Automatic gain control ``(h − λ·m(h))·γ + β`` per channel (B. Ruff 2017).

    Args:
        h: input of shape (N, C, *spatial) with 1 to 3 (``window``) or any number (``mean``,
            ``median``) of spatial dims and more than one spatial position.
        lam: subtracted fraction λ of the mean, shape (C,) or a float.
        gamma, beta: affine scale γ and shift β, shape (C,), a float, or ``None`` (γ = 1, β = 0).
        mode: ``"mean"`` (spatial mean, hand-written backward), ``"window"`` (sliding local
            mean of odd size ``window``) or ``"median"`` (spatial median).
        window: window size for ``mode="window"``.
        spatial_dims: when given, ``h`` must have exactly this many spatial dims.

    Float16/bfloat16 inputs are computed in float32 and returned in the input dtype; means are
    taken as sums of ``h/S`` so that inputs up to the dtype's maximum give finite results.
    Works with ``__torch_function__`` objects (``torch.fx`` proxies), ``torch.func`` transforms
    and double backward; traced or exported, the formula's plain ops are recorded.
    """
    if has_torch_function_variadic(h, lam, gamma, beta):
        return handle_torch_function(
            agc, (h, lam, gamma, beta), h, lam, gamma, beta, mode, window,
            spatial_dims=spatial_dims,
        )
    _check_input(h, spatial_dims)
    if mode not in MODES:
        raise ValueError(f"unknown AGC mode {mode!r}; expected one of {MODES}")
    lam_t = _channel_param(lam, h, "lam", 1.0)
    gamma_t = _channel_param(gamma, h, "gamma", 1.0)
    beta_t = _channel_param(beta, h, "beta", 0.0)
    cdt = compute_dtype(h, lam_t, gamma_t, beta_t)
    if mode == "mean":
        if composition_only():
            return _agc_fwd_math(h, lam_t, gamma_t, beta_t, cdt)[0]
        return _AGCMean.apply(h, lam_t, gamma_t, beta_t)[0]
    if mode == "window":
        _check_window(window, h)
    return _agc_local_math(h, lam_t, gamma_t, beta_t, mode, window, cdt)


def _agc_local_math(
    h: Tensor, lam: Tensor, gamma: Tensor, beta: Tensor, mode: str, window: int,
    cdt: torch.dtype,
) -> Tensor:
    """``(h − λ m)·γ + β`` for the ``"window"`` and ``"median"`` modes, as plain ops that
    autograd (and torch.func) differentiates."""
    hc = h.to(cdt)
    m = _window_mean(hc, window) if mode == "window" else spatial_median(hc)
    nd = h.dim()
    out = (hc - _channel_view(lam.to(cdt), nd) * m) * _channel_view(gamma.to(cdt), nd)
    return (out + _channel_view(beta.to(cdt), nd)).to(h.dtype)


def agc_reference(
    h: torch.Tensor,
    lam: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    mode: str = "mean",
    window: int = 3,
) -> torch.Tensor:
    """Naive composition of torch ops, same function as :func:`agc` (test oracle).

    The median uses :func:`torch.quantile` with ``interpolation="lower"`` (an implementation
    independent of :func:`agc`'s ``torch.median``); the window mean uses a box convolution
    divided by a convolved count of valid positions.
    """
    nd = h.dim()
    shape = (1, -1) + (1,) * (nd - 2)
    if mode == "mean":
        m = h.mean(dim=tuple(range(2, nd)), keepdim=True)
    elif mode == "median":
        m = torch.quantile(h.flatten(2), 0.5, dim=-1, interpolation="lower")
        m = m.reshape(*h.shape[:2], *([1] * (nd - 2)))
    elif mode == "window":
        conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd - 2]
        c = h.shape[1]
        box = torch.ones(c, 1, *([window] * (nd - 2)), dtype=h.dtype, device=h.device)
        total = conv(h, box, padding=window // 2, groups=c)
        count = conv(torch.ones_like(h), box, padding=window // 2, groups=c)
        m = total / count
    else:
        raise ValueError(f"unknown AGC mode {mode!r}; expected one of {MODES}")
    return (h - lam.view(shape) * m) * gamma.view(shape) + beta.view(shape)


# ---------------------------------------------------------------------------------------------
# fused AGC + activation that saves only its output
# ---------------------------------------------------------------------------------------------
def _agc_act_fwd_math(
    h: Tensor, lam: Tensor, gamma: Tensor, beta: Tensor, slope: float, eps: float,
    cdt: torch.dtype,
) -> tuple[Tensor, Tensor]:
    """``act((h − λ m)·γ̃ + β)`` and the (N, C) means, γ̃ = :func:`_safe_gamma` (γ, eps)."""
    nd = h.dim()
    hc = h.to(cdt)
    lc, bc = lam.to(cdt), beta.to(cdt)
    gs = _safe_gamma(gamma.to(cdt), eps)
    m = _spatial_mean(hc)
    u = torch.addcmul(_nc_view(bc - lc * gs * m, nd), hc, _channel_view(gs, nd))
    y = F.relu(u) if slope == 0.0 else F.leaky_relu(u, slope)
    return y.to(h.dtype), m


def _pre_activation(y: Tensor, slope: float) -> Tensor:
    """``u`` from ``y = act(u)``: ``y`` where ``y > 0``, ``y / slope`` elsewhere (ReLU: ``y``;
    the lost values have zero gradient). ``leaky_relu_backward(y, y, 1/slope)`` is that map."""
    if slope == 0.0:
        return y
    return torch.ops.aten.leaky_relu_backward(y, y, 1.0 / slope, True)


def _act_grad(grad: Tensor, y: Tensor, slope: float) -> Tensor:
    """``g`` where ``y > 0``, ``slope·g`` elsewhere: the activation's own backward kernels (one
    pass; ``torch.where`` with a scaled copy is ~6x slower eagerly on CPU)."""
    if slope == 0.0:
        return torch.ops.aten.threshold_backward(grad, y, 0.0)
    return torch.ops.aten.leaky_relu_backward(grad, y, slope, True)


def _agc_act_bwd_math(
    grad: Tensor,
    y: Tensor,
    m: Tensor,
    lam: Tensor,
    gamma: Tensor,
    beta: Tensor,
    slope: float,
    eps: float,
    h_dtype: torch.dtype,
    need_h: bool,
    need_lam: bool,
    need_gamma: bool,
    need_beta: bool,
    grad_m: Tensor | None,
) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
    """Gradients of the fused AGC + activation from its output (see :class:`_AGCActMean`)."""
    cdt = m.dtype
    nd = y.dim()
    sp = _spatial(y)
    size = _spatial_size(y)
    yc, g = y.to(cdt), grad.to(cdt)
    lc, bc = lam.to(cdt), beta.to(cdt)
    gs = _safe_gamma(gamma.to(cdt), eps)
    gu = _act_grad(g, yc, slope)
    gu_sum = gu.sum(sp)  # (N, C)
    gh = gl = gg = gb = None
    if need_h:
        # γ̃ gu − γ̃ λ mean_sp(gu): one broadcast multiply-add
        shift = -(gs * lc) * (gu_sum / size)
        if grad_m is not None:
            shift = shift + grad_m.to(cdt) / size
        gh = torch.addcmul(_nc_view(shift, nd), gu, _channel_view(gs, nd)).to(h_dtype)
    mg = (m * gu_sum).sum(0)
    gu_total = gu_sum.sum(0)  # (C,): Σ gu
    if need_lam:
        gl = (-gs * mg).to(lam.dtype)
    if need_gamma:
        # Σ gu (u − β) = Σ gu u − β Σ gu, passed straight through the clamp of γ
        gu_u = (gu * _pre_activation(yc, slope)).sum(sp).sum(0)  # (C,)
        gg = ((gu_u - bc * gu_total) / gs).to(gamma.dtype)
    if need_beta:
        gb = gu_total.to(beta.dtype)
    return gh, gl, gg, gb


def _agc_act_jvp_math(
    y: Tensor, m: Tensor, lam: Tensor, gamma: Tensor, beta: Tensor, slope: float, eps: float,
    h_t: Tensor | None, lam_t: Tensor | None, gamma_t: Tensor | None, beta_t: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """Tangents of ``(y, m)`` from the output: ``du = dh·γ̃ + (h − λm)·dγ + dβ − dλ·γ̃·m −
    λ·γ̃·dm`` with ``h − λm = (u − β)/γ̃`` (dγ straight through the clamp, as in backward),
    ``dy = du`` where ``y > 0``, ``slope·du`` elsewhere."""
    cdt = m.dtype
    nd = y.dim()
    yc = y.to(cdt)
    lc, bc = lam.to(cdt), beta.to(cdt)
    gs = _safe_gamma(gamma.to(cdt), eps)
    m_t = torch.zeros_like(m)
    u_t = torch.zeros_like(yc)
    shift_t = torch.zeros_like(m)
    if h_t is not None:
        ht = h_t.to(cdt)
        m_t = _spatial_mean(ht)
        u_t = ht * _channel_view(gs, nd)
        shift_t = shift_t - lc * gs * m_t
    if lam_t is not None:
        shift_t = shift_t - lam_t.to(cdt) * gs * m
    if gamma_t is not None:
        centred = (_pre_activation(yc, slope) - _channel_view(bc, nd)) / _channel_view(gs, nd)
        u_t = u_t + centred * _channel_view(gamma_t.to(cdt), nd)
    if beta_t is not None:
        shift_t = shift_t + beta_t.to(cdt)
    u_t = u_t + _nc_view(shift_t, nd)
    return _act_grad(u_t, yc, slope).to(y.dtype), m_t


class _AGCActMean(torch.autograd.Function):
    """act((h − λ m) γ̃ + β), γ̃ = sign(γ)·max(|γ|, eps); outputs ``(y, m)``, saves y, the
    (N, C) means, λ, γ and β.

    Backward recovers everything from the output ``y``: with slope ``s`` (0 for ReLU),
    ``gu = g`` where ``y > 0`` and ``s·g`` elsewhere is the gradient at the pre-activation ``u``.
    ``∂L/∂h = γ̃ (gu − λ mean_sp(gu))``, ``∂L/∂λ = −γ̃ Σ gu m`` and ``∂L/∂β = Σ gu`` need only
    ``gu`` and ``m``. ``∂L/∂γ = Σ gu (h − λ m) = Σ gu (u − β) / γ̃`` needs ``u``: for ``s > 0``,
    ``u = y`` where ``y > 0`` and ``y / s`` elsewhere; for ReLU, ``u`` is lost where ``y = 0`` but
    there ``gu = 0``, so ``u = y`` is used everywhere. ``∂L/∂γ`` is passed to γ unchanged
    (straight through the clamp), so a γ that crosses 0 keeps receiving gradient.

    The first-order backward runs the compiled kernel or :func:`_agc_act_bwd_math` eagerly;
    with ``create_graph=True`` / under ``torch.func`` autograd records it (y and m are outputs
    of this Function, so double backward reaches h through them).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(  # type: ignore[override]
        h: Tensor, lam: Tensor, gamma: Tensor, beta: Tensor, slope: float, eps: float
    ) -> tuple[Tensor, Tensor]:
        cdt = compute_dtype(h, lam, gamma, beta)
        if backends.use_compiled(h) and not torch._C._are_functorch_transforms_active():
            key = (slope, eps, cdt, h.dtype, h.device.type)
            out = backends.run_compiled(
                _agc_act_fwd_math, key, h, lam, gamma, beta, slope, eps, cdt
            )
            if out is not None:
                return out
        return _agc_act_fwd_math(h, lam, gamma, beta, slope, eps, cdt)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
        h, lam, gamma, beta, slope, eps = inputs
        y, m = output
        ctx.save_for_backward(y, m, lam, gamma, beta)
        ctx.save_for_forward(y, m, lam, gamma, beta)  # jvp needs no h either
        ctx.slope, ctx.eps, ctx.h_dtype = slope, eps, h.dtype
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad: Tensor | None, grad_m: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        y, m, lam, gamma, beta = ctx.saved_tensors
        needs = tuple(ctx.needs_input_grad[:4])
        args = (ctx.slope, ctx.eps, ctx.h_dtype, *needs)
        if grad is None:
            grad = torch.zeros_like(y)
        if backends.use_compiled(y) and first_order_only() and grad_m is None:
            key = (*args, y.dtype, grad.dtype, y.device.type)
            grads = backends.run_compiled(
                _agc_act_bwd_math, key, grad, y, m, lam, gamma, beta, *args, None
            )
            if grads is not None:
                return (*grads, None, None)
        return (*_agc_act_bwd_math(grad, y, m, lam, gamma, beta, *args, grad_m), None, None)

    @staticmethod
    def jvp(  # type: ignore[override]
        ctx: Any, h_t: Tensor | None, lam_t: Tensor | None, gamma_t: Tensor | None,
        beta_t: Tensor | None, *_: Any,
    ) -> tuple[Tensor, Tensor]:
        y, m, lam, gamma, beta = ctx.saved_tensors
        return _agc_act_jvp_math(
            y, m, lam, gamma, beta, ctx.slope, ctx.eps, h_t, lam_t, gamma_t, beta_t
        )


def agc_act(
    h: Tensor,
    lam: Tensor | float | None = 1.0,
    gamma: Tensor | float | None = None,
    beta: Tensor | float | None = None,
    act: str = "relu",
    negative_slope: float = 0.01,
    eps: float = 1e-5,
    *,
    spatial_dims: int | None = None,
) -> Tensor:
    """Fused ``act(agc(h))`` (mean mode) that saves only its output for backward.

    Like in-place activated batch norm, backward reconstructs what it needs from the output
    ``y``, the tiny (N, C) means and the parameters; no input-sized tensor other than ``y`` is
    kept. ``act`` is ``"relu"`` or ``"leaky_relu"`` (``negative_slope > 0``).

    Reconstructing ``h − λ m = (u − β)/γ`` (for ``∂L/∂γ``) needs ``γ ≠ 0``, so the scale used is
    ``γ̃ = sign(γ)·max(|γ|, eps)`` (sign(0) = +1): identical to :func:`agc` whenever
    ``|γ| ≥ eps``; the gradient for γ is passed straight through the clamp (except in a traced
    or exported graph, which differentiates the clamp). For ``|β/γ|`` large the reconstruction
    loses relative precision (``u − β`` cancels), as in in-place ABN. For ReLU, pre-activations
    of zeroed elements are not recoverable, but their gradient is zero, so nothing that backward
    needs is lost. ``spatial_dims``: as in :func:`agc`.
    """
    if has_torch_function_variadic(h, lam, gamma, beta):
        return handle_torch_function(
            agc_act, (h, lam, gamma, beta), h, lam, gamma, beta, act, negative_slope, eps,
            spatial_dims=spatial_dims,
        )
    _check_input(h, spatial_dims)
    if act not in ACTS:
        raise ValueError(f"unknown act {act!r}; expected one of {ACTS}")
    if act == "relu":
        slope = 0.0
    else:
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)):
            raise TypeError(f"negative_slope must be a float, got {type(negative_slope)}")
        if not negative_slope > 0:
            raise ValueError(
                f"negative_slope must be > 0 to recover the pre-activation from the output, got "
                f"{negative_slope!r} (use act='relu' for 0)"
            )
        slope = float(negative_slope)
    if not eps > 0:
        raise ValueError(f"eps must be > 0 (it bounds |gamma| away from 0), got {eps!r}")
    lam_t = _channel_param(lam, h, "lam", 1.0)
    gamma_t = _channel_param(gamma, h, "gamma", 1.0)
    beta_t = _channel_param(beta, h, "beta", 0.0)
    if composition_only():
        cdt = compute_dtype(h, lam_t, gamma_t, beta_t)
        return _agc_act_fwd_math(h, lam_t, gamma_t, beta_t, slope, float(eps), cdt)[0]
    return _AGCActMean.apply(h, lam_t, gamma_t, beta_t, slope, float(eps))[0]


def agc_act_reference(
    h: torch.Tensor,
    lam: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    act: str = "relu",
    negative_slope: float = 0.01,
) -> torch.Tensor:
    """``act(agc_reference(h, ...))`` as a plain composition (test oracle; γ not clamped)."""
    u = agc_reference(h, lam, gamma, beta)
    return torch.relu(u) if act == "relu" else F.leaky_relu(u, negative_slope)
