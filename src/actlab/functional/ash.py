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
parameters; the sigmoid is recomputed in backward. :func:`ash_reference` is the same formula as a
plain composition of torch operations (test oracle and benchmark baseline).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.autograd.function import once_differentiable

from actlab.functional import fused

__all__ = [
    "ash",
    "ash_reference",
    "ash_logits",
    "ash_topk",
    "z_from_k",
    "normalize_dims",
]

Scalar = float | int | torch.Tensor


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


def normalize_dims(x: torch.Tensor, dims: Sequence[int] | int | None) -> tuple[int, ...]:
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


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 if any operand is float64, else float32 (float16/bfloat16 are upcast)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _as_param(p: Scalar, x: torch.Tensor, name: str) -> torch.Tensor:
    if isinstance(p, torch.Tensor):
        if not p.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {p.dtype}")
        try:
            torch.broadcast_shapes(p.shape, x.shape)
        except RuntimeError:
            raise ValueError(
                f"{name} of shape {tuple(p.shape)} does not broadcast to the input shape "
                f"{tuple(x.shape)} (use a scalar or a per-channel shape like (1, C, 1, 1))"
            ) from None
        if p.dim() > x.dim():
            raise ValueError(f"{name} has more dims ({p.dim()}) than the input ({x.dim()})")
        return p
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise TypeError(f"{name} must be a float or a tensor, got {type(p).__name__}")
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    return torch.tensor(float(p), dtype=dtype, device=x.device)


def _centred_stats(
    x: torch.Tensor, dims: tuple[int, ...], eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(μ, σ, x − μ)`` with ``σ = √(var + eps)``, the population variance over ``dims``.

    Two vectorised passes (the mean, then the norm of the centred values); ``torch.var_mean``'s
    Welford loop is about 15× slower on CPU for a 32×64×32×32 input.
    """
    mu = x.mean(dims, keepdim=True)
    centred = x - mu
    count = math.prod(x.shape[d] for d in dims)
    norm = torch.linalg.vector_norm(centred, dim=dims, keepdim=True)
    return mu, torch.sqrt(norm * norm / count + eps), centred


def _stats(
    x: torch.Tensor, dims: tuple[int, ...], eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    mu, sigma, _ = _centred_stats(x, dims, eps)
    return mu, sigma


#: |t| bound of the eager sigmoid: exp(±80) stays a normal float32 (no subnormal slow path)
_SIGMOID_CLAMP = 80.0


def _sigmoid_(t: torch.Tensor) -> torch.Tensor:
    """``sigmoid(t)`` computed in place in ``t`` (which must be a temporary).

    float32: ``1 / (1 + exp(−t))`` at ``clamp(t, ±80)``, about 2.5× faster than
    ``torch.sigmoid`` on CPU; the clamp changes the result only where it is below ``2e-35``
    (absolute). float64: ``torch.sigmoid_``.
    """
    if t.dtype != torch.float32:
        return t.sigmoid_()
    return t.clamp_(-_SIGMOID_CLAMP, _SIGMOID_CLAMP).neg_().exp_().add_(1.0).reciprocal_()


def _sum_to(g: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reduce a broadcast gradient back to the shape (and dtype) of ``like``."""
    lead = g.dim() - like.dim()
    if lead:
        g = g.sum(tuple(range(lead)))
    keep = tuple(i for i, n in enumerate(like.shape) if n == 1 and g.shape[i] != 1)
    if keep:
        g = g.sum(keep, keepdim=True)
    return g.to(like.dtype)


class _ASHFunction(torch.autograd.Function):
    """x·G(t), G = leak + (1 − leak)·sigmoid(t), t = 2α(x − μ − zσ), with exact backward.

    Backward, with g the incoming gradient, q = g·x·G'(t), G' = (1 − leak)·s(1 − s), and sums
    Σ over the statistics dims D (n elements) of each sample::

        ∂L/∂α = Σ_bcast 2 q (x − μ − zσ)        ∂L/∂z = Σ_bcast (−2 α σ q)
        ∂L/∂μ = −2 Σ_D α q                      ∂L/∂σ = −2 Σ_D α z q
        ∂L/∂x = g·G + 2 α q + ∂L/∂μ / n + ∂L/∂σ · (x − μ) / (n σ)

    using ∂μ/∂x_i = 1/n and ∂σ/∂x_i = (x_i − μ)/(n σ). Only x, μ, σ, z and α are saved.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        z: torch.Tensor,
        alpha: torch.Tensor,
        dims: tuple[int, ...],
        eps: float,
        leak: float,
    ) -> torch.Tensor:
        fused_out = fused.ash_fwd(x, z, alpha, dims, eps, leak) if fused.use_compiled(x) else None
        if fused_out is not None:
            out, mu, sigma = fused_out
        else:
            cdt = _compute_dtype(x, z, alpha)
            xc, zc, ac = x.to(cdt), z.to(cdt), alpha.to(cdt)
            mu, sigma, centred = _centred_stats(xc, dims, eps)
            s = _sigmoid_(centred.sub_(zc * sigma).mul_(2 * ac))  # gate argument t, in place
            if leak != 0.0:
                s.mul_(1.0 - leak).add_(leak)  # leak + (1-leak)·s
            out = s.mul_(xc).to(x.dtype)
        ctx.save_for_backward(x, mu, sigma, z, alpha)
        ctx.dims, ctx.leak = dims, leak
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x, mu, sigma, z, alpha = ctx.saved_tensors
        dims, leak = ctx.dims, ctx.leak
        if fused.use_compiled(x):
            needs = (ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2])
            grads = fused.ash_bwd(grad, x, mu, sigma, z, alpha, dims, leak, needs)
            if grads is not None:
                return (*grads, None, None, None)
        cdt = mu.dtype
        xc, zc, ac, g = x.to(cdt), z.to(cdt), alpha.to(cdt), grad.to(cdt)
        # temporaries are updated in place (once_differentiable: no graph is recorded here)
        centred = xc - mu
        u = centred - zc * sigma  # x − μ − zσ
        s = _sigmoid_(u * (2 * ac))
        ds = torch.rsub(s, 1.0).mul_(s)  # s(1 − s)
        if leak != 0.0:
            ds.mul_(1.0 - leak)
            s.mul_(1.0 - leak).add_(leak)
        q = ds.mul_(g).mul_(xc)  # ∂L/∂t
        gx = gz = ga = None
        if ctx.needs_input_grad[2]:
            ga = _sum_to(u.mul_(q), alpha).mul_(2)
        aq = q.mul_(ac)  # α·q, in q's buffer
        aq_sum = aq.sum(dims, keepdim=True)  # per sample: Σ_D α q
        if ctx.needs_input_grad[1]:
            if z.numel() == 1 and sigma.shape == aq_sum.shape:  # σ constant over dims
                gz = (aq_sum * sigma).sum().mul_(-2).reshape(z.shape).to(z.dtype)
            else:
                gz = _sum_to(aq * sigma, z).mul_(-2)
        if ctx.needs_input_grad[0]:
            n = math.prod(x.shape[d] for d in dims)
            d_mu = aq_sum.mul_(-2)
            # ∂L/∂σ = −2 Σ_D α z q; a scalar z factors out of the sum already taken for μ
            d_sigma = (d_mu * zc if zc.numel() == 1
                       else (aq * zc).sum(dims, keepdim=True).mul_(-2))
            gx = s.mul_(g).add_(aq, alpha=2.0).add_(d_mu / n)
            gx = gx.add_(centred.mul_(d_sigma / (n * sigma))).to(x.dtype)
        return gx, gz, ga, None, None, None


def ash(
    x: torch.Tensor,
    z: Scalar = 0.0,
    alpha: Scalar = 1.0,
    dims: Sequence[int] | int | None = None,
    eps: float = 1e-5,
    leak: float = 0.0,
) -> torch.Tensor:
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

    Float16/bfloat16 inputs are computed in float32 and returned in the input dtype.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {type(x).__name__}")
    _check(eps, leak)
    d = normalize_dims(x, dims)
    return _ASHFunction.apply(
        x, _as_param(z, x, "z"), _as_param(alpha, x, "alpha"), d, float(eps), float(leak)
    )


def ash_logits(
    x: torch.Tensor,
    z: Scalar = 0.0,
    alpha: Scalar = 1.0,
    dims: Sequence[int] | int | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """The gate's argument ``t = 2α(x − μ_X − z σ_X)`` (float32/float64); gate > 0.5 ⇔ t > 0."""
    d = normalize_dims(x, dims)
    zt, at = _as_param(z, x, "z"), _as_param(alpha, x, "alpha")
    cdt = _compute_dtype(x, zt, at)
    xc = x.to(cdt)
    mu, sigma = _stats(xc, d, eps)
    return 2 * at.to(cdt) * (xc - mu - zt.to(cdt) * sigma)


def ash_reference(
    x: torch.Tensor,
    z: Scalar = 0.0,
    alpha: Scalar = 1.0,
    dims: Sequence[int] | int | None = None,
    eps: float = 1e-5,
    leak: float = 0.0,
) -> torch.Tensor:
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
    x: torch.Tensor, k: float, dims: Sequence[int] | int | None = None
) -> torch.Tensor:
    """The exact top-k rule (paper, Eq. 2/7): keep ``x`` where it is among the top ``k`` of its
    sample (over ``dims``), else 0.

    Per sample (and per slice of the non-statistics dims) with ``n`` elements, the ``m =
    max(1, round(k·n))``-th largest value is the threshold and every element ``>=`` it is kept
    (ties at the threshold are all kept). The mask is a constant for autograd, so the gradient is
    the incoming gradient on kept elements and 0 elsewhere.
    """
    if isinstance(k, bool) or not isinstance(k, (int, float)):
        raise TypeError(f"k must be a float in (0, 1], got {type(k).__name__} {k!r}")
    if not 0.0 < k <= 1.0:
        raise ValueError(f"k (fraction of each sample kept) must lie in (0, 1], got {k!r}")
    d = normalize_dims(x, dims)
    dest = tuple(range(x.dim() - len(d), x.dim()))
    with torch.no_grad():
        moved = x.detach().movedim(d, dest)
        flat = moved.reshape(*moved.shape[: x.dim() - len(d)], -1)
        n = int(flat.shape[-1])  # a Python int also under torch.jit.trace
        m = max(1, round(k * n))
        # the m-th largest value; topk (not kthvalue) because ONNX has a TopK operator
        threshold = flat.topk(m, dim=-1, largest=True, sorted=True).values[..., -1:]
        mask = (flat >= threshold).reshape(moved.shape).movedim(dest, d)
    return x * mask
