"""ASH, the Adaptive SwisH activation, as pure functions.

Reference: K. Lee, H. Lee, J. Yang, J. Y. Hwang, "Stochastic Adaptive Activation Function",
NeurIPS 2022 (ASH). For each sample the activation passes the part of its distribution that lies
above a threshold of ``z`` standard deviations over the mean, with a smooth sigmoid gate::

    ash(x) = x · sigmoid(2α (x − μ_X − z σ_X))                       (paper, Eq. 9)
    μ_X = mean(x),  σ_X = sqrt(var(x) + eps)        over ``dims`` of each sample

``var`` is the population variance (divide by the element count). With ``z = Φ⁻¹(1 − k)`` and
Gaussian activations the gate keeps approximately the top ``k`` fraction of each sample; as
``α → ∞`` the gate becomes the exact top-k rule of the paper's Eq. 2/7, :func:`ash_topk`.

The sign convention is the paper's: the *top* of the distribution passes. (The authors' TF2 code
flips the sign of the threshold, which keeps the bottom part; that is not followed here.)

The leaky variant replaces the gate ``s`` by ``leak + (1 − leak)·s`` so that elements below the
threshold keep a slope of ``leak`` instead of being shut off.

:func:`ash` is a :class:`torch.autograd.Function` with a hand-written backward that differentiates
through ``μ_X`` and ``σ_X`` and saves only the input, the per-sample statistics and the (small)
parameters; the sigmoid is recomputed in backward. Its math is one formula per direction
(:func:`_ash_fwd_math`, :func:`_ash_bwd_math`, :func:`_ash_jvp_math`), run eagerly and compiled
by the ``"compiled"`` backend; first-order eager passes use in-place kernels
(:func:`_ash_fwd_inplace`, :func:`_ash_bwd_inplace`, 2–5× faster on CPU). Double backward,
``torch.func`` transforms (vmap: per vmapped slice) and forward-mode AD are supported; traced,
scripted, exported or inside ``torch.compile`` the formula's plain ops are recorded.
:func:`ash_reference` is the same formula as a plain composition of torch operations (test oracle
and benchmark baseline).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.overrides import handle_torch_function, has_torch_function_variadic

from actlab.functional import backends, native
from actlab.functional._common import apply_function, broadcasts_to, compute_dtype, sum_to
from actlab.functional.backends import composition_only, first_order_only

__all__ = [
    "ash",
    "ash_reference",
    "ash_logits",
    "ash_topk",
    "z_from_k",
    "normalize_dims",
]

Scalar = float | int | Tensor


def z_from_k(k: float) -> float:
    """The threshold ``z = Φ⁻¹(1 − k)`` (standard normal quantile) that keeps a fraction ``k``.

    >>> round(z_from_k(0.5), 6), round(z_from_k(0.1), 4)
    (0.0, 1.2816)
    """
    if isinstance(k, bool) or not isinstance(k, (int, float)):
        raise TypeError(f"k must be a float in (0, 1), got {type(k).__name__} {k!r}")
    if not 0.0 < k < 1.0:
        raise ValueError(f"k (fraction of each sample kept) must lie in (0, 1), got {k!r}")
    return float(torch.special.ndtri(torch.tensor(1.0 - k, dtype=torch.float64)))


def normalize_dims(x: Tensor, dims: Sequence[int] | int | None) -> tuple[int, ...]:
    """The sorted, non-negative statistics dims; ``None`` means every non-batch dim.

    The batch dim 0 is never allowed: ASH statistics are per sample, so a sample's output does
    not depend on the other samples of the batch.
    """
    if x.dim() < 2:
        raise ValueError(
            f"ASH expects a batched input of shape (N, ...) with at least 2 dims, got shape "
            f"{tuple(x.shape)}"
        )
    if dims is None:
        return tuple(range(1, x.dim()))
    if isinstance(dims, int):
        dims = (dims,)
    out: set[int] = set()
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, int):
            raise TypeError(f"dims must be ints, got {d!r} in {dims!r}")
        if not -x.dim() <= d < x.dim():
            raise ValueError(f"dim {d} is out of range for an input with {x.dim()} dims")
        d = d % x.dim()
        if d == 0:
            raise ValueError(
                f"dims={tuple(dims)!r} includes the batch dim 0; ASH statistics are per sample"
            )
        out.add(d)
    if not out:
        raise ValueError("dims must name at least one dim")
    return tuple(sorted(out))


def _check(eps: float, leak: float) -> None:
    if not eps >= 0.0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    if not 0.0 <= leak < 1.0:
        raise ValueError(f"leak (slope below the threshold) must lie in [0, 1), got {leak!r}")


def _as_param(p: Scalar, x: Tensor, name: str, per_channel: bool) -> Tensor:
    """``p`` as a tensor that broadcasts against ``x``; ``per_channel``: (C,) -> (1, C, 1, ...)."""
    if isinstance(p, Tensor):
        if not p.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {p.dtype}")
        if per_channel:
            if p.dim() != 1 or x.dim() < 2 or p.shape[0] != x.shape[1]:
                raise ValueError(
                    f"{name} has shape {tuple(p.shape)} (num_parameters={p.numel()}, one per "
                    f"channel) but the input of shape {tuple(x.shape)} has "
                    f"{x.shape[1] if x.dim() >= 2 else 'no'} channels in dim 1"
                )
            return p.view(1, -1, *([1] * (x.dim() - 2)))
        if p.dim() > x.dim():
            raise ValueError(f"{name} has more dims ({p.dim()}) than the input ({x.dim()})")
        if not broadcasts_to(x.shape, p.shape):
            raise ValueError(
                f"{name} of shape {tuple(p.shape)} does not broadcast to the input shape "
                f"{tuple(x.shape)} (use a scalar or a per-channel shape like (1, C, 1, 1))"
            )
        return p
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise TypeError(f"{name} must be a float or a tensor, got {type(p).__name__}")
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    return torch.tensor(float(p), dtype=dtype, device=x.device)


def _count(x: Tensor, dims: list[int]) -> int:
    """Number of elements of one sample's statistics (a plain loop: dynamo and TorchScript)."""
    count = 1
    for d in dims:
        count *= x.shape[d]
    return count


# ---------------------------------------------------------------------------------------------
# the formulas: one per direction, eager (run directly) and compiled (backends.run_compiled)
# ---------------------------------------------------------------------------------------------
def _max_abs(x: Tensor, dims: list[int]) -> Tensor:
    """``max |x|`` over ``dims`` (kept) as ``max(amax, −amin)``: two vectorised reductions that
    allocate nothing (``vector_norm(x, inf)`` is ~30× slower on CPU)."""
    return torch.maximum(x.amax(dims, keepdim=True), -x.amin(dims, keepdim=True))


def _moments(
    xc: Tensor, dims: list[int], eps: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(scale, μ/scale, σ/scale, x/scale)`` with ``σ = √(var + eps)`` over ``dims``.

    ``scale = max(max|x|, 1)`` per sample (a constant for autograd: σ and μ do not depend on
    it): for ordinary inputs it is 1 and nothing changes; for inputs near the dtype's maximum it
    keeps the sums of ``x`` and ``x²`` finite.
    """
    scale = _max_abs(xc.detach(), dims).clamp(min=1.0)
    xs = xc / scale
    mu_s = xs.mean(dims, keepdim=True)
    var_s = (xs - mu_s).square().mean(dims, keepdim=True)
    sigma_s = torch.sqrt(var_s + eps / (scale * scale))
    return scale, mu_s, sigma_s, xs


def _moments_one_pass(xc: Tensor, dims: list[int], eps: float) -> tuple[Tensor, Tensor]:
    """``(μ, σ)`` over ``dims`` in ``xc``'s dtype (float32), from ONE read of ``xc``.

    The float64 sums ``S1 = Σ(x − k)`` and ``S2 = Σ(x − k)²``, with ``k`` the slice's first
    element, give ``μ = k + S1/n`` and ``var = S2/n − (S1/n)²``. For float32 (and half) inputs
    float64 cannot overflow (``(2·3.4e38)²·2⁶³ < 1.8e308``), so no ``max |x|`` pass is needed,
    and the shift keeps the cancellation below float32 resolution unless ``k`` lies ~10⁴σ from
    the mean. σ is capped at the float32 maximum. Only for float32 ``xc`` (float64 inputs use
    :func:`_moments`).
    """
    k = xc
    for d in dims:
        k = k.narrow(d, 0, 1)
    kd = k.to(torch.float64)
    dev = xc.to(torch.float64) - kd
    count = _count(xc, dims)
    m = dev.sum(dims, keepdim=True) / count
    var = ((dev * dev).sum(dims, keepdim=True) / count - m * m).clamp(min=0.0)
    sigma = torch.sqrt(var + eps).clamp(max=3.4028234663852886e38)  # the float32 maximum
    return (kd + m).to(xc.dtype), sigma.to(xc.dtype)


def _ash_fwd_math(
    x: Tensor, z: Tensor, alpha: Tensor, dims: list[int], eps: float, leak: float,
    cdt: torch.dtype, one_pass: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(x·G(2α(x − μ − zσ)), μ, σ)`` with ``G = leak + (1 − leak)·sigmoid`` (paper, Eq. 9).

    Computed in ``cdt`` (float32 for half inputs); μ, σ are the per-sample statistics.

    ``one_pass`` (what the compiled backend runs for float32 ``cdt``): μ and σ come from
    :func:`_moments_one_pass` and the gate's argument is ``4α·(x/2 − θ/2)`` with the threshold
    ``θ = μ + zσ`` clamped to the float32 range: the halves cannot overflow, so no ``max |x|``
    pass is needed either, and inductor reads ``x`` twice (one reduction, one elementwise pass)
    instead of four times. (θ is clamped, not scaled: only an input equal to the dtype's
    maximum, below a threshold beyond it, gets gate ½ instead of ≈ 0.)
    """
    xc, zc, ac = x.to(cdt), z.to(cdt), alpha.to(cdt)
    if one_pass:
        mu, sigma = _moments_one_pass(xc, dims, eps)
        half_max = 1.7014117331926443e38  # half the float32 maximum (a literal: TorchScript)
        half_thr = (0.5 * (mu + zc * sigma)).clamp(-half_max, half_max)
        s = torch.sigmoid((4.0 * ac) * (0.5 * xc - half_thr))
    else:
        scale, mu_s, sigma_s, xs = _moments(xc, dims, eps)
        mu, sigma = mu_s * scale, sigma_s * scale
        s = torch.sigmoid((2.0 * ac * scale) * (xs - mu_s - zc * sigma_s))
    gate = s if leak == 0.0 else leak + (1.0 - leak) * s
    return (xc * gate).to(x.dtype), mu, sigma


def _ash_bwd_math(
    grad: Tensor,
    x: Tensor,
    mu: Tensor,
    sigma: Tensor,
    z: Tensor,
    alpha: Tensor,
    dims: list[int],
    leak: float,
    need_x: bool,
    need_z: bool,
    need_alpha: bool,
    grad_mu: Tensor | None,
    grad_sigma: Tensor | None,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Gradients for x, z and α (formulas in :class:`_ASHFunction`); differentiable.

    ``grad_mu`` / ``grad_sigma``: gradients reaching the μ and σ outputs (double backward).
    """
    cdt = mu.dtype
    xc, zc, ac, g = x.to(cdt), z.to(cdt), alpha.to(cdt), grad.to(cdt)
    centred = xc - mu
    u = centred - zc * sigma
    s = torch.sigmoid(2.0 * ac * u)
    ds = s * (1.0 - s)
    if leak != 0.0:
        ds = ds * (1.0 - leak)
        s = leak + (1.0 - leak) * s
    q = g * xc * ds
    aq = ac * q
    gx: Tensor | None = None
    gz: Tensor | None = None
    ga: Tensor | None = None
    if need_alpha:
        ga = sum_to(2.0 * q * u, alpha)
    if need_z:
        gz = sum_to(-2.0 * aq * sigma, z)
    if need_x:
        count = _count(x, dims)
        d_mu = -2.0 * aq.sum(dims, keepdim=True)
        d_sigma = -2.0 * (aq * zc).sum(dims, keepdim=True)
        if grad_mu is not None:
            d_mu = d_mu + grad_mu.to(cdt)
        if grad_sigma is not None:
            d_sigma = d_sigma + grad_sigma.to(cdt)
        gx = g * s + 2.0 * aq + d_mu / count + centred * (d_sigma / (count * sigma))
        gx = gx.to(x.dtype)
    return gx, gz, ga


def _ash_jvp_math(
    x: Tensor, mu: Tensor, sigma: Tensor, z: Tensor, alpha: Tensor, dims: list[int],
    leak: float, x_t: Tensor | None, z_t: Tensor | None, a_t: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Tangents of ``(out, μ, σ)`` for tangents of x, z, α (forward-mode AD).

    ``dμ = mean_D(dx)``, ``dσ = mean_D((x − μ)·dx)/σ``, ``du = dx − dμ − dz·σ − z·dσ``,
    ``dt = 2(dα·u + α·du)``, ``d out = dx·G + x·G'(t)·dt``.
    """
    cdt = mu.dtype
    xc, zc, ac = x.to(cdt), z.to(cdt), alpha.to(cdt)
    centred = xc - mu
    u = centred - zc * sigma
    s = torch.sigmoid(2.0 * ac * u)
    gate = s if leak == 0.0 else leak + (1.0 - leak) * s
    dgate = (1.0 - leak) * s * (1.0 - s)
    du = torch.zeros_like(u)
    mu_t = torch.zeros_like(mu)
    sigma_t = torch.zeros_like(sigma)
    out_t = torch.zeros_like(xc)
    if x_t is not None:
        xt = x_t.to(cdt)
        mu_t = xt.mean(dims, keepdim=True)
        sigma_t = (centred * xt).mean(dims, keepdim=True) / sigma
        du = du + xt - mu_t - zc * sigma_t
        out_t = out_t + xt * gate
    if z_t is not None:
        du = du - z_t.to(cdt) * sigma
    dt = 2.0 * ac * du
    if a_t is not None:
        dt = dt + 2.0 * a_t.to(cdt) * u
    out_t = out_t + xc * dgate * dt
    return out_t.to(x.dtype), mu_t, sigma_t


# ---------------------------------------------------------------------------------------------
# in-place eager variant (docs/PERFORMANCE.md: ~2x faster on CPU than the formulas above)
# ---------------------------------------------------------------------------------------------
#: upper bound of the eager sigmoid's argument: exp(−80) stays a normal float32 (no subnormal
#: slow path); below −88, exp(−t) overflows to inf and the sigmoid is exactly 0
_SIGMOID_CLAMP = 80.0


def _sigmoid_(t: Tensor) -> Tensor:
    """``sigmoid(t)`` computed in place in ``t`` (which must be a temporary).

    float32: ``1 / (1 + exp(−t))`` at ``min(t, 80)``, about 2.5× faster than ``torch.sigmoid``
    on CPU; the clamp changes the result by less than ``2e-35`` (where it is 1). No lower
    clamp: a shut gate must be exactly 0, since it multiplies ``x`` (up to the dtype's maximum).
    float64: ``torch.sigmoid_``.
    """
    if t.dtype != torch.float32:
        return t.sigmoid_()
    return t.clamp_(max=_SIGMOID_CLAMP).neg_().exp_().add_(1.0).reciprocal_()


def _ash_fwd_inplace(
    x: Tensor, z: Tensor, alpha: Tensor, dims: list[int], eps: float, leak: float,
    cdt: torch.dtype,
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`_ash_fwd_math` with temporaries updated in place (no graph may be recorded)."""
    xc, zc, ac = x.to(cdt), z.to(cdt), alpha.to(cdt)
    scale = _max_abs(xc, dims).clamp(min=1.0)
    xs = xc / scale
    mu_s = xs.mean(dims, keepdim=True)
    centred = xs.sub_(mu_s)
    norm = torch.linalg.vector_norm(centred, dim=dims, keepdim=True)
    sigma_s = (norm * norm).div_(_count(x, dims)).add_(eps / (scale * scale)).sqrt_()
    s = _sigmoid_(centred.sub_(zc * sigma_s).mul_(2.0 * ac * scale))  # gate argument t
    if leak != 0.0:
        s.mul_(1.0 - leak).add_(leak)
    return s.mul_(xc).to(x.dtype), mu_s.mul_(scale), sigma_s.mul_(scale)


def _ash_bwd_inplace(
    grad: Tensor, x: Tensor, mu: Tensor, sigma: Tensor, z: Tensor, alpha: Tensor,
    dims: list[int], leak: float, need_x: bool, need_z: bool, need_alpha: bool,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """First-order :func:`_ash_bwd_math` with in-place temporaries (no graph recorded)."""
    cdt = mu.dtype
    xc, zc, ac, g = x.to(cdt), z.to(cdt), alpha.to(cdt), grad.to(cdt)
    centred = xc - mu
    u = centred - zc * sigma
    s = _sigmoid_(u * (2 * ac))
    ds = torch.rsub(s, 1.0).mul_(s)
    if leak != 0.0:
        ds.mul_(1.0 - leak)
        s.mul_(1.0 - leak).add_(leak)
    q = ds.mul_(g).mul_(xc)
    gx = gz = ga = None
    if need_alpha:
        ga = sum_to(u.mul_(q), alpha).mul_(2)
    aq = q.mul_(ac)
    aq_sum = aq.sum(dims, keepdim=True)
    if need_z:
        if z.numel() == 1 and sigma.shape == aq_sum.shape:  # σ constant over dims
            gz = (aq_sum * sigma).sum().mul_(-2).reshape(z.shape).to(z.dtype)
        else:
            gz = sum_to(aq * sigma, z).mul_(-2)
    if need_x:
        n = _count(x, dims)
        d_mu = aq_sum.mul_(-2)
        d_sigma = d_mu * zc if zc.numel() == 1 else (aq * zc).sum(dims, keepdim=True).mul_(-2)
        gx = s.mul_(g).add_(aq, alpha=2.0).add_(d_mu / n)
        gx = gx.add_(centred.mul_(d_sigma / (n * sigma))).to(x.dtype)
    return gx, gz, ga


class _ASHFunction(torch.autograd.Function):
    """x·G(t), G = leak + (1 − leak)·sigmoid(t), t = 2α(x − μ − zσ), with exact backward.

    Outputs ``(out, μ, σ)``; the wrapper returns ``out``. Backward, with g the incoming gradient,
    q = g·x·G'(t), G' = (1 − leak)·s(1 − s), and sums Σ over the statistics dims D (n elements)
    of each sample::

        ∂L/∂α = Σ_bcast 2 q (x − μ − zσ)        ∂L/∂z = Σ_bcast (−2 α σ q)
        ∂L/∂μ = −2 Σ_D α q                      ∂L/∂σ = −2 Σ_D α z q
        ∂L/∂x = g·G + 2 α q + ∂L/∂μ / n + ∂L/∂σ · (x − μ) / (n σ)

    using ∂μ/∂x_i = 1/n and ∂σ/∂x_i = (x_i − μ)/(n σ). Only x, μ, σ, z and α are saved. The
    first-order backward runs the compiled or the in-place eager kernel; with
    ``create_graph=True`` or under ``torch.func`` it runs :func:`_ash_bwd_math`, whose ops
    autograd records (μ and σ are outputs of this Function, so double backward reaches x through
    them). ``jvp`` gives forward-mode AD; vmap runs the function per vmapped slice.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(  # type: ignore[override]
        x: Tensor, z: Tensor, alpha: Tensor, dims: tuple[int, ...], eps: float, leak: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        cdt = compute_dtype(x, z, alpha)
        if torch._C._are_functorch_transforms_active():  # in-place ops lack vmap rules
            return _ash_fwd_math(x, z, alpha, list(dims), eps, leak, cdt)
        if backends.use_compiled(x):
            key = (dims, eps, leak, cdt, x.dtype, x.device.type)
            one_pass = cdt == torch.float32  # float64 sums could overflow for float64 inputs
            out = backends.run_compiled(
                _ash_fwd_math, key, x, z, alpha, dims, eps, leak, cdt, one_pass,
                kernel=lambda: native.ash_forward(x, z, alpha, dims, eps, leak),
            )
            if out is not None:
                return out
        return _ash_fwd_inplace(x, z, alpha, list(dims), eps, leak, cdt)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        x, z, alpha, dims, _, leak = inputs
        _, mu, sigma = output
        ctx.save_for_backward(x, mu, sigma, z, alpha)
        ctx.save_for_forward(x, mu, sigma, z, alpha)
        ctx.dims, ctx.leak = dims, leak
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad: Tensor | None, grad_mu: Tensor | None,
        grad_sigma: Tensor | None,
    ) -> tuple[Tensor | None, ...]:
        x, mu, sigma, z, alpha = ctx.saved_tensors
        dims, leak = ctx.dims, ctx.leak
        needs = (ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2])
        if grad is None:
            grad = torch.zeros_like(x)
        if first_order_only() and grad_mu is None and grad_sigma is None:
            if backends.use_compiled(x):
                key = (dims, leak, *needs, x.dtype, grad.dtype, x.device.type)
                grads = backends.run_compiled(
                    _ash_bwd_math, key, grad, x, mu, sigma, z, alpha, dims, leak, *needs,
                    None, None,
                    kernel=lambda: native.ash_backward(
                        grad, x, mu, sigma, z, alpha, dims, leak, *needs),
                )
                if grads is not None:
                    return (*grads, None, None, None)
            grads = _ash_bwd_inplace(grad, x, mu, sigma, z, alpha, list(dims), leak, *needs)
            return (*grads, None, None, None)
        grads = _ash_bwd_math(
            grad, x, mu, sigma, z, alpha, list(dims), leak, *needs, grad_mu, grad_sigma
        )
        return (*grads, None, None, None)

    @staticmethod
    def jvp(  # type: ignore[override]
        ctx: Any, x_t: Tensor | None, z_t: Tensor | None, a_t: Tensor | None, *_: Any
    ) -> tuple[Tensor, Tensor, Tensor]:
        x, mu, sigma, z, alpha = ctx.saved_tensors
        return _ash_jvp_math(x, mu, sigma, z, alpha, list(ctx.dims), ctx.leak, x_t, z_t, a_t)


def ash(
    x: Tensor,
    z: Scalar = 0.0,
    alpha: Scalar = 1.0,
    dims: Sequence[int] | int | None = None,
    eps: float = 1e-5,
    leak: float = 0.0,
    *,
    per_channel: bool = False,
    inplace: bool = False,
) -> Tensor:
    """Adaptive swish ``x · G(2α(x − μ_X − z σ_X))`` with ``G = leak + (1 − leak)·sigmoid``.

    Args:
        x: input of shape (N, ...); statistics are taken per sample.
        z: threshold in standard deviations above the mean; a float or a tensor broadcastable to
            ``x`` (scalar, or per channel as (1, C, 1, 1)). ``z = Φ⁻¹(1 − k)`` keeps about the
            top ``k`` fraction of a Gaussian sample (see :func:`z_from_k`).
        alpha: gate sharpness α (same shapes as ``z``); α → ∞ gives a hard top-k gate.
        dims: dims over which μ_X and σ_X are computed; ``None`` = every non-batch dim (the
            paper), e.g. ``(2, 3)`` for per-sample per-channel statistics of an image batch.
        eps: added to the variance, so a constant input gives finite output and gradients.
        leak: slope kept below the threshold (0 = ASH; > 0 = the leaky variant).
        per_channel: ``z`` and ``alpha`` are (C,) tensors, one value per channel of dim 1.
        inplace: write the result into ``x`` when no gradient is needed (inference), like
            ``F.relu(inplace=True)``; ignored when autograd needs ``x``.

    Float16/bfloat16 inputs are computed in float32 and returned in the input dtype; the
    statistics are taken on ``x / max(max|x|, 1)`` so that inputs up to the dtype's maximum
    give finite results. Works with ``__torch_function__`` objects (``torch.fx`` proxies),
    ``torch.func`` transforms and double backward; traced, scripted or exported, the formula's
    plain ops are recorded.
    """
    if has_torch_function_variadic(x, z, alpha):
        return handle_torch_function(
            ash, (x, z, alpha), x, z, alpha, dims, eps, leak, per_channel=per_channel,
            inplace=inplace,
        )
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {type(x).__name__}")
    _check(eps, leak)
    d = normalize_dims(x, dims)
    zt, at = _as_param(z, x, "z", per_channel), _as_param(alpha, x, "alpha", per_channel)
    if composition_only():
        cdt = compute_dtype(x, zt, at)
        out = _ash_fwd_math(x, zt, at, list(d), float(eps), float(leak), cdt)[0]
    else:
        out = apply_function(_ASHFunction, x, zt, at, d, float(eps), float(leak))[0]
    if inplace and not (torch.is_grad_enabled() and x.requires_grad):
        with torch.no_grad():
            return x.copy_(out)
    return out


def ash_logits(
    x: Tensor,
    z: Scalar = 0.0,
    alpha: Scalar = 1.0,
    dims: Sequence[int] | int | None = None,
    eps: float = 1e-5,
    *,
    per_channel: bool = False,
) -> Tensor:
    """The gate's argument ``t = 2α(x − μ_X − z σ_X)`` (float32/float64); gate > 0.5 ⇔ t > 0."""
    if has_torch_function_variadic(x, z, alpha):
        return handle_torch_function(
            ash_logits, (x, z, alpha), x, z, alpha, dims, eps, per_channel=per_channel
        )
    d = list(normalize_dims(x, dims))
    zt, at = _as_param(z, x, "z", per_channel), _as_param(alpha, x, "alpha", per_channel)
    cdt = compute_dtype(x, zt, at)
    scale, mu_s, sigma_s, xs = _moments(x.to(cdt), d, eps)
    return (2.0 * at.to(cdt) * scale) * (xs - mu_s - zt.to(cdt) * sigma_s)


def ash_reference(
    x: Tensor,
    z: Scalar = 0.0,
    alpha: Scalar = 1.0,
    dims: Sequence[int] | int | None = None,
    eps: float = 1e-5,
    leak: float = 0.0,
) -> Tensor:
    """The same function as :func:`ash`, written as a naive composition of torch operations.

    Autograd differentiates it through the mean and standard deviation; it saves several
    input-sized tensors. Used as the test oracle and the benchmark baseline.
    """
    d = normalize_dims(x, dims)
    mu = x.mean(dim=d, keepdim=True)
    sigma = torch.sqrt(((x - mu) ** 2).mean(dim=d, keepdim=True) + eps)
    s = torch.sigmoid(2 * alpha * (x - mu - z * sigma))
    return x * (leak + (1 - leak) * s)


def ash_topk(
    x: Tensor, k: float, dims: Sequence[int] | int | None = None
) -> Tensor:
    """The exact top-k rule (paper, Eq. 2/7): keep ``x`` where it is among the top ``k`` of its
    sample (over ``dims``), else 0.

    Per sample (and per slice of the non-statistics dims) with ``n`` elements, the ``m =
    max(1, round(k·n))``-th largest value is the threshold and every element ``>=`` it is kept
    (ties at the threshold are all kept). The mask is a constant for autograd, so the gradient is
    the incoming gradient on kept elements and 0 elsewhere.
    """
    if has_torch_function_variadic(x):
        return handle_torch_function(ash_topk, (x,), x, k, dims)
    if isinstance(k, bool) or not isinstance(k, (int, float)):
        raise TypeError(f"k must be a float in (0, 1], got {type(k).__name__} {k!r}")
    if not 0.0 < k <= 1.0:
        raise ValueError(f"k (fraction of each sample kept) must lie in (0, 1], got {k!r}")
    return x * _topk_mask(x, float(k), list(normalize_dims(x, dims)))


def _topk_mask(x: Tensor, k: float, dims: list[int]) -> Tensor:
    """The keep-mask of :func:`ash_topk` (a constant for autograd; also TorchScript)."""
    nd = x.dim()
    dest = list(range(nd - len(dims), nd))
    moved = x.detach().movedim(dims, dest)
    flat = moved.reshape(list(moved.shape[: nd - len(dims)]) + [-1])
    n = int(flat.shape[-1])  # a Python int also under torch.jit.trace
    m = max(1, int(round(k * n)))
    # the m-th largest value; topk (not kthvalue) because ONNX has a TopK operator
    threshold = flat.topk(m, dim=-1, largest=True, sorted=True).values[..., -1:]
    return (flat >= threshold).reshape(moved.shape).movedim(dest, dims)
