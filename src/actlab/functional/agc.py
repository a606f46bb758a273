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
leaky ReLU and saves only its output (see there). :func:`agc_reference` is a plain composition
of torch ops used as the test oracle.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from actlab.functional import fused

__all__ = ["agc", "agc_reference", "agc_act", "agc_act_reference", "scaled_lr", "MODES", "ACTS"]

MODES = ("mean", "window", "median")
ACTS = ("relu", "leaky_relu")
_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


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
def _check_input(h: torch.Tensor) -> None:
    if not isinstance(h, torch.Tensor) or not h.is_floating_point():
        raise TypeError(f"h must be a floating-point tensor, got {type(h).__name__}")
    if h.dim() < 3:
        raise ValueError(
            f"AGC needs inputs of shape (N, C, *spatial) with at least one spatial dim, got shape "
            f"{tuple(h.shape)}; for (N, C) features the spatial mean is h itself and AGC would "
            "degenerate to an affine map (use a norm for plain features, e.g. 'ln', or 'none')"
        )


def _channel_param(
    p: torch.Tensor | float | None, h: torch.Tensor, name: str, default: float
) -> torch.Tensor:
    """A (C,) tensor: ``None`` gives a constant ``default``, a float is broadcast to (C,)."""
    c = h.shape[1]
    dtype = torch.float64 if h.dtype == torch.float64 else torch.float32
    if p is None:
        return torch.full((c,), default, dtype=dtype, device=h.device)
    if not isinstance(p, torch.Tensor):
        if isinstance(p, bool) or not isinstance(p, (int, float)):
            raise TypeError(f"{name} must be a (C,) tensor, a float or None, got {type(p)}")
        return torch.full((c,), float(p), dtype=dtype, device=h.device)
    if not p.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {p.dtype}")
    if p.shape != (c,):
        raise ValueError(
            f"{name} must have shape (C,) = ({c},) for an input with {c} channels, got "
            f"{tuple(p.shape)}"
        )
    return p


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _view(p: torch.Tensor, ndim: int) -> torch.Tensor:
    """(C,) -> (1, C, 1, ..., 1) for an ``ndim``-dim input."""
    return p.view(1, -1, *([1] * (ndim - 2)))


def _view_nc(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """(N, C) -> (N, C, 1, ..., 1) for an ``ndim``-dim input."""
    return t.view(*t.shape, *([1] * (ndim - 2)))


def _spatial(h: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(2, h.dim()))


def _check_window(window: int, h: torch.Tensor) -> None:
    if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise ValueError(f"window must be an odd positive int, got {window!r}")
    if h.dim() - 2 not in _POOL:
        raise ValueError(
            f"mode='window' supports 1-, 2- or 3-d spatial inputs, got shape {tuple(h.shape)}"
        )


def local_mean(h: torch.Tensor, window: int) -> torch.Tensor:
    """Sliding-window mean over the spatial dims (odd ``window``; padding not counted)."""
    _check_window(window, h)
    d = h.dim() - 2
    pool = _POOL[d]
    pad = window // 2
    if d < 3 or min(h.shape[2:]) >= window:
        return pool(h, window, stride=1, padding=pad, count_include_pad=False)
    # avg_pool3d rejects inputs smaller than the kernel even with padding: pad explicitly and
    # divide the window sums by the number of valid (unpadded) positions.
    sums = pool(F.pad(h, (pad,) * (2 * d)), window, stride=1) * window**d
    ones = torch.ones(1, 1, *h.shape[2:], dtype=h.dtype, device=h.device)
    count = pool(F.pad(ones, (pad,) * (2 * d)), window, stride=1) * window**d
    return sums / count


def spatial_median(h: torch.Tensor) -> torch.Tensor:
    """Per-sample per-channel (lower) median over the spatial dims, shape (N, C, 1, ...).

    Computed as the ``ceil(L/2)``-th smallest value with ``topk`` (same value and gradient as
    ``torch.median``) because ONNX has a TopK operator and no median.
    """
    flat = h.flatten(2)
    rank = (flat.shape[-1] + 1) // 2
    med = flat.topk(rank, dim=-1, largest=False, sorted=True).values[..., -1]
    return med.view(*h.shape[:2], *([1] * (h.dim() - 2)))


# ---------------------------------------------------------------------------------------------
# mean mode with a hand-written backward
# ---------------------------------------------------------------------------------------------
class _AGCMean(torch.autograd.Function):
    """(h − λ m) γ + β with m the spatial mean; saves h, the (N, C) means, λ and γ."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        h: torch.Tensor,
        lam: torch.Tensor,
        gamma: torch.Tensor,
        beta: torch.Tensor,
    ) -> torch.Tensor:
        fused_out = fused.agc_fwd(h, lam, gamma, beta) if fused.use_compiled(h) else None
        if fused_out is not None:
            y, m = fused_out
        else:
            cdt = _compute_dtype(h, lam, gamma, beta)
            hc = h.to(cdt)
            lc, gc, bc = lam.to(cdt), gamma.to(cdt), beta.to(cdt)
            m = hc.mean(_spatial(h))  # (N, C)
            shift = bc - lc * gc * m  # β − λγm, (N, C)
            y = torch.addcmul(_view_nc(shift, h.dim()), hc, _view(gc, h.dim())).to(h.dtype)
        ctx.save_for_backward(h, m, lam, gamma)
        ctx.beta_meta = (beta.dtype,)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        h, m, lam, gamma = ctx.saved_tensors
        (beta_dtype,) = ctx.beta_meta
        if fused.use_compiled(h):
            needs = tuple(ctx.needs_input_grad[:4])
            grads = fused.agc_bwd(grad, h, m, lam, gamma, beta_dtype, needs)  # type: ignore[arg-type]
            if grads is not None:
                return grads
        cdt = m.dtype
        g = grad.to(cdt)
        lc, gc = lam.to(cdt), gamma.to(cdt)
        nd = h.dim()
        sp = _spatial(h)
        size = h[0, 0].numel()
        g_sum = g.sum(sp)  # (N, C): Σ_sp g
        gh = gl = gg = gb = None
        if ctx.needs_input_grad[0]:
            # γ g − γ λ mean_sp(g): one broadcast multiply-add over the input-sized tensor
            shift = (-(gc * lc) / size) * g_sum  # (N, C)
            gh = torch.addcmul(_view_nc(shift, nd), g, _view(gc, nd)).to(h.dtype)
        mg = (m * g_sum).sum(0)  # Σ_n m Σ_sp g, (C,)
        if ctx.needs_input_grad[1]:
            gl = (-gc * mg).to(lam.dtype)
        if ctx.needs_input_grad[2]:
            ghx = (g * h.to(cdt)).sum((0, *sp))
            gg = (ghx - lc * mg).to(gamma.dtype)
        if ctx.needs_input_grad[3]:
            gb = g_sum.sum(0).to(beta_dtype)
        return gh, gl, gg, gb


def agc(
    h: torch.Tensor,
    lam: torch.Tensor | float | None = 1.0,
    gamma: torch.Tensor | float | None = None,
    beta: torch.Tensor | float | None = None,
    mode: str = "mean",
    window: int = 3,
) -> torch.Tensor:
    """Automatic gain control ``(h − λ·m(h))·γ + β`` per channel (B. Ruff 2017).

    Args:
        h: input of shape (N, C, *spatial) with 1 to 3 (``window``) or any number (``mean``,
            ``median``) of spatial dims.
        lam: subtracted fraction λ of the mean, shape (C,) or a float.
        gamma, beta: affine scale γ and shift β, shape (C,), a float, or ``None`` (γ = 1, β = 0).
        mode: ``"mean"`` (spatial mean, hand-written backward), ``"window"`` (sliding local
            mean of odd size ``window``) or ``"median"`` (spatial median).
        window: window size for ``mode="window"``.

    Float16/bfloat16 inputs are computed in float32 and returned in the input dtype.
    """
    _check_input(h)
    lam_t = _channel_param(lam, h, "lam", 1.0)
    gamma_t = _channel_param(gamma, h, "gamma", 1.0)
    beta_t = _channel_param(beta, h, "beta", 0.0)
    if mode == "mean":
        return _AGCMean.apply(h, lam_t, gamma_t, beta_t)
    if mode not in MODES:
        raise ValueError(f"unknown AGC mode {mode!r}; expected one of {MODES}")
    cdt = _compute_dtype(h, lam_t, gamma_t, beta_t)
    hc = h.to(cdt)
    m = local_mean(hc, window) if mode == "window" else spatial_median(hc)
    nd = h.dim()
    out = (hc - _view(lam_t.to(cdt), nd) * m) * _view(gamma_t.to(cdt), nd)
    return (out + _view(beta_t.to(cdt), nd)).to(h.dtype)


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
def _safe_gamma(gamma: torch.Tensor, eps: float) -> torch.Tensor:
    """sign(γ)·max(|γ|, eps) with sign(0) = +1: a scale bounded away from 0."""
    return torch.where(gamma >= 0, gamma.clamp(min=eps), gamma.clamp(max=-eps))


class _AGCActMean(torch.autograd.Function):
    """act((h − λ m) γ̃ + β), γ̃ = sign(γ)·max(|γ|, eps); saves the output, (N, C) means, λ, γ̃, β.

    Backward recovers everything from the output ``y``: with slope ``s`` (0 for ReLU),
    ``gu = g`` where ``y > 0`` and ``s·g`` elsewhere is the gradient at the pre-activation ``u``.
    ``∂L/∂h = γ̃ (gu − λ mean_sp(gu))``, ``∂L/∂λ = −γ̃ Σ gu m`` and ``∂L/∂β = Σ gu`` need only
    ``gu`` and ``m``. ``∂L/∂γ = Σ gu (h − λ m) = Σ gu (u − β) / γ̃`` needs ``u``: for ``s > 0``,
    ``u = y`` where ``y > 0`` and ``y / s`` elsewhere; for ReLU, ``u`` is lost where ``y = 0`` but
    there ``gu = 0``, so ``u = y`` is used everywhere. ``∂L/∂γ`` is passed to γ unchanged
    (straight through the clamp), so a γ that crosses 0 keeps receiving gradient.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        h: torch.Tensor,
        lam: torch.Tensor,
        gamma: torch.Tensor,
        beta: torch.Tensor,
        slope: float,
        eps: float,
    ) -> torch.Tensor:
        fused_out = (
            fused.agc_act_fwd(h, lam, gamma, beta, slope, eps) if fused.use_compiled(h) else None
        )
        if fused_out is not None:
            y, m, gs = fused_out
        else:
            cdt = _compute_dtype(h, lam, gamma, beta)
            hc = h.to(cdt)
            lc, bc = lam.to(cdt), beta.to(cdt)
            gs = _safe_gamma(gamma.to(cdt), eps)
            m = hc.mean(_spatial(h))
            u = torch.addcmul(_view_nc(bc - lc * gs * m, h.dim()), hc, _view(gs, h.dim()))
            y = F.relu(u) if slope == 0.0 else F.leaky_relu(u, slope)
            y = y.to(h.dtype)
        ctx.save_for_backward(y, m, lam, gs, beta)
        ctx.slope = slope
        ctx.dtypes = (h.dtype, gamma.dtype)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        y, m, lam, gs, beta = ctx.saved_tensors
        slope = ctx.slope
        h_dtype, gamma_dtype = ctx.dtypes
        if fused.use_compiled(y):
            needs = tuple(ctx.needs_input_grad[:4])
            grads = fused.agc_act_bwd(
                grad, y, m, lam, gs, beta, slope, ctx.dtypes, needs  # type: ignore[arg-type]
            )
            if grads is not None:
                return (*grads, None, None)
        cdt = m.dtype
        nd = y.dim()
        sp = _spatial(y)
        size = y[0, 0].numel()
        yc, g = y.to(cdt), grad.to(cdt)
        lc, bc = lam.to(cdt), beta.to(cdt)
        # gu = g where y > 0, slope·g elsewhere: the activation's own backward kernels (one
        # pass; torch.where with a scaled copy is ~6x slower on CPU)
        if slope == 0.0:
            gu = torch.ops.aten.threshold_backward(g, yc, 0.0)
        else:
            gu = torch.ops.aten.leaky_relu_backward(g, yc, slope, True)
        gu_sum = gu.sum(sp)  # (N, C)
        gh = gl = gg = gb = None
        if ctx.needs_input_grad[0]:
            # γ̃ gu − γ̃ λ mean_sp(gu): one broadcast multiply-add
            shift = _view_nc(-(gs * lc) * (gu_sum / size), nd)
            gh = torch.addcmul(shift, gu, _view(gs, nd)).to(h_dtype)
        mg = (m * gu_sum).sum(0)
        gu_total = gu_sum.sum(0)  # (C,): Σ gu
        if ctx.needs_input_grad[1]:
            gl = (-gs * mg).to(lam.dtype)
        if ctx.needs_input_grad[2]:
            # u = y where y > 0, y / slope elsewhere (ReLU: u = y, since gu = 0 where y = 0),
            # written as leaky_relu_backward(y, y, 1/slope); Σ gu (u − β) = Σ gu u − β Σ gu
            u = yc if slope == 0.0 else torch.ops.aten.leaky_relu_backward(yc, yc, 1.0 / slope,
                                                                            True)
            gu_u = (gu * u).sum(sp).sum(0)  # (C,)
            gg = ((gu_u - bc * gu_total) / gs).to(gamma_dtype)
        if ctx.needs_input_grad[3]:
            gb = gu_total.to(beta.dtype)
        return gh, gl, gg, gb, None, None


def agc_act(
    h: torch.Tensor,
    lam: torch.Tensor | float | None = 1.0,
    gamma: torch.Tensor | float | None = None,
    beta: torch.Tensor | float | None = None,
    act: str = "relu",
    negative_slope: float = 0.01,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Fused ``act(agc(h))`` (mean mode) that saves only its output for backward.

    Like in-place activated batch norm, backward reconstructs what it needs from the output
    ``y``, the tiny (N, C) means and the parameters; no input-sized tensor other than ``y`` is
    kept. ``act`` is ``"relu"`` or ``"leaky_relu"`` (``negative_slope > 0``).

    Reconstructing ``h − λ m = (u − β)/γ`` (for ``∂L/∂γ``) needs ``γ ≠ 0``, so the scale used is
    ``γ̃ = sign(γ)·max(|γ|, eps)`` (sign(0) = +1): identical to :func:`agc` whenever
    ``|γ| ≥ eps``; the gradient for γ is passed straight through the clamp. For ``|β/γ|`` large
    the reconstruction loses relative precision (``u − β`` cancels), as in in-place ABN. For ReLU,
    pre-activations of zeroed elements are not recoverable, but their gradient is zero, so
    nothing that backward needs is lost.
    """
    _check_input(h)
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
    return _AGCActMean.apply(h, lam_t, gamma_t, beta_t, slope, float(eps))


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
