r"""SAU, the smooth activation unit: LeakyReLU convolved with a Gaussian approximate identity.

Reference: K. Biswas, S. Kumar, S. Banerjee, A. K. Pandey, "SAU: Smooth activation function using
convolution with approximate identities", arXiv preprint, 2021 (arXiv:2109.13210).

With the Gaussian approximate identity :math:`\phi_n(y) = n\,\phi(ny)`, where
:math:`\phi(z) = e^{-z^2/2}/\sqrt{2\pi}` is the standard normal density, SAU is
:math:`G = \mathrm{LeakyReLU}_\alpha * \phi_n`. Writing :math:`z = nx`:

**exact** (the convolution evaluated in closed form)::

    G(x) = (1-α)/(2n)·√(2/π)·exp(-z²/2) + (1+α)/2·x + (1-α)/2·x·erf(z/√2)
         = (1-α)·φ(z)/n + (1+α)/2·x + (1-α)/2·x·erf(z/√2)

**paper** (Eq. 3 of the paper, typed literally)::

    G(x) = 1/(2n)·√(2/π)·exp(-z²/2) + (1+α)/2·x + (1-α)/2·x·erf(z/√2)

The paper's Eq. 3 writes ``1/(2n)`` where the convolution gives ``(1-α)/(2n)`` in front of the
Gaussian term. The two differ by ``α·√(2/π)/(2n)·exp(-z²/2)``, at most ``α·√(2/π)/(2n)`` (at
x = 0), i.e. ``< 3e-6·α`` at the paper's default ``n = 20000``. ``"paper"`` is therefore not the
exact convolution for α ≠ 0, but it is still smooth; both are provided.

**zero-centred** (``zero_centred=True``, either formula): the Gaussian term is multiplied by
``x`` so that ``G(0) = 0``; e.g. exact: ``G(x) = (1-α)·x·φ(z)/n + (1+α)/2·x + (1-α)/2·x·erf(z/√2)``.

Derivatives used by the hand-written backward (``c`` is the coefficient of the Gaussian term,
``c = 1-α`` for exact and ``1`` for paper; ``m(x) = x`` if zero-centred else ``1``;
``g = φ(z)/n``)::

    ∂g/∂x = -z·φ(z)                      ∂g/∂n = -x²·φ(z) - φ(z)/n²
    ∂G/∂x = (1+α)/2 + (1-α)/2·erf(z/√2) + (1-α)·z·φ(z) + c·∂(m·g)/∂x
    ∂G/∂α = x/2·erfc(z/√2) + (∂c/∂α)·m·g                  (∂c/∂α = -1 exact, 0 paper)
    ∂G/∂n = (1-α)·x²·φ(z) + c·m·∂g/∂n

with ``∂(m·g)/∂x = -z·φ(z)`` (not zero-centred) or ``φ(z)/n - x·z·φ(z)`` (zero-centred). For the
exact, non-zero-centred formula these reduce to the familiar
``∂G/∂x = (1+α)/2 + (1-α)/2·erf(z/√2)`` and ``∂G/∂n = -(1-α)·φ(z)/n²``.

Numerics: ``n²`` is never formed on its own (``n = 2e4`` gives ``4e8``, beyond float16) and the
Gaussian factor ``φ(z)`` is set to exactly 0 for ``|z| ≥ 10`` (``φ(10) ≈ 7.7e-23``, below the
resolution of float64 relative to the linear term): this keeps products such as ``z·φ(z)`` and
``x²·φ(z)`` finite when ``z`` overflows, and never evaluates ``exp`` where its result would be
subnormal or underflow (10–50× slower on x86 CPUs; with ``n = 20000`` that is almost every element).
float16 / bfloat16 inputs are computed in float32 (forward and backward) and returned in the
input dtype. Only the input ``x`` (plus the small ``alpha`` / ``n`` tensors) is saved for
backward; ``erf`` and ``exp`` are recomputed there. Outside graph recording (ordinary forward
and backward; not double backward or tracing) the eager path works on in-place temporaries,
about 12 passes over memory for the forward and 12–19 for the backward of the usual case (``n``
fixed), about half of the out-of-place composition's.

Forward and backward run either as eager PyTorch ops or, with the ``"compiled"`` / ``"auto"``
backend of :mod:`actlab.functional.fused`, as fused compiled kernels computing the same formulas.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from actlab.functional import fused

__all__ = ["sau", "sau_reference", "FORMULAS"]

FORMULAS = ("exact", "paper")

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_Z_CLAMP = 10.0  # φ(z) is set to 0 for |z| >= 10 (φ(10) ≈ 7.7e-23)
_ERF_CLAMP = 6.0  # erf(6) = 1 - 2e-17, erfc(6) = 2e-17: arguments beyond add nothing


def _check_formula(formula: str) -> bool:
    """Validate ``formula``; return True for the paper's Eq. 3."""
    if formula not in FORMULAS:
        raise ValueError(f"formula must be one of {FORMULAS}, got {formula!r}")
    return formula == "paper"


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 if any operand is float64, else float32 (half precision is computed in float32)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _erf(z: Tensor) -> Tensor:
    """erf(z/√2), evaluated at clamp(z/√2, ±6) (erf = ±1 there to float64 precision): erf of
    huge arguments takes a slow path on CPUs, and with n = 20000 most arguments are huge."""
    return torch.erf((z * _INV_SQRT2).clamp(-_ERF_CLAMP, _ERF_CLAMP))


def _gauss(z: Tensor) -> tuple[Tensor, Tensor]:
    """Return (φ(z), z·φ(z)); both are exactly 0 where |z| >= 10."""
    e = fused.gauss_cutoff(z * _INV_SQRT2) * _INV_SQRT_2PI
    return e, z.clamp(-_Z_CLAMP, _Z_CLAMP) * e


def _lean(*tensors: Tensor) -> bool:
    """Whether the in-place eager path may run: no graph is being recorded (not a double
    backward), not tracing, and no operand broadcasts beyond the first one's shape."""
    if torch.is_grad_enabled() or torch.jit.is_tracing() or torch.jit.is_scripting():
        return False
    try:
        return torch.broadcast_shapes(*(t.shape for t in tensors)) == tensors[0].shape
    except RuntimeError:
        return False


def _forward_lean(x: Tensor, alpha: Tensor, n: Tensor, paper: bool, zero_centred: bool) -> Tensor:
    """:func:`_forward` with in-place temporaries: ~12 passes over memory instead of ~25."""
    u = x * (n * _INV_SQRT2)  # z/√2
    gauss = fused.gauss_cutoff_(u)  # √(2π)·φ(z)
    coef = _INV_SQRT_2PI / n if paper else (1 - alpha) * (_INV_SQRT_2PI / n)
    gauss.mul_(coef)  # c·φ(z)/n
    if zero_centred:
        gauss.mul_(x)
    w = u.clamp_(-_ERF_CLAMP, _ERF_CLAMP).erf_()  # erf(z/√2)
    w.mul_(0.5 * (1 - alpha)).add_(0.5 * (1 + alpha)).mul_(x)
    return w.add_(gauss)


def _forward(x: Tensor, alpha: Tensor, n: Tensor, paper: bool, zero_centred: bool) -> Tensor:
    """SAU in the dtype of its (already upcast) arguments."""
    if _lean(x, alpha, n):
        return _forward_lean(x, alpha, n, paper, zero_centred)
    z = n * x
    e, _ = _gauss(z)
    out = 0.5 * (1 + alpha) * x + 0.5 * (1 - alpha) * (x * _erf(z))
    gauss = e / n
    if zero_centred:
        gauss = x * gauss
    return out + (gauss if paper else (1 - alpha) * gauss)


def _reduce(grad: Tensor, like: Tensor) -> Tensor:
    """Sum a broadcast gradient back to ``like``'s shape and cast it to ``like``'s dtype."""
    if grad.shape != like.shape:
        grad = grad.sum_to_size(like.shape)
    return grad.to(like.dtype)


def _backward_lean(
    grad: Tensor, x: Tensor, alpha: Tensor, n: Tensor, paper: bool, need_x: bool,
    need_alpha: bool,
) -> tuple[Tensor | None, Tensor | None]:
    """Gradients for ``x`` and ``α`` (not zero-centred, ``n`` fixed) with in-place temporaries:

    ``∂G/∂x = (1+α)/2 + (1-α)/2·erf(z/√2)`` (exact; paper: ``− α·z·φ(z)`` more) and
    ``∂G/∂α = x/2·erfc(z/√2) − φ(z)/n`` (exact; paper: without the last term), unreduced.
    """
    u = x * (n * _INV_SQRT2)  # z/√2
    phi = ze = None
    if (need_alpha and not paper) or (need_x and paper):
        phi = fused.gauss_cutoff_(u).mul_(_INV_SQRT_2PI)  # φ(z)
    if need_x and paper:
        ze = (u * math.sqrt(2.0)).clamp_(-_Z_CLAMP, _Z_CLAMP).mul_(phi)  # z·φ(z)
    w = u.clamp_(-_ERF_CLAMP, _ERF_CLAMP).erf_()  # erf(z/√2)
    gx = galpha = None
    if need_alpha:
        d = torch.rsub(w, 1.0).mul_(x).mul_(0.5)  # x/2·erfc(z/√2)
        if not paper:
            d.sub_(phi.mul_(1.0 / n))  # type: ignore[union-attr]
        galpha = d.mul_(grad)
    if need_x:
        d = w.mul_(0.5 * (1 - alpha)).add_(0.5 * (1 + alpha))
        if paper:
            d.sub_(ze.mul_(alpha))  # type: ignore[union-attr]
        gx = d.mul_(grad)
    return gx, galpha


class _SAUFunction(torch.autograd.Function):
    """SAU with a hand-written backward that saves only ``x``, ``alpha`` and ``n``."""

    @staticmethod
    def forward(  # type: ignore[override]
        x: Tensor, alpha: Tensor, n: Tensor, paper: bool, zero_centred: bool
    ) -> Tensor:
        if fused.use_compiled(x):
            out = fused.sau_fwd(x, alpha, n, paper, zero_centred)
            if out is not None:
                return out
        dtype = _compute_dtype(x, alpha, n)
        out = _forward(x.to(dtype), alpha.to(dtype), n.to(dtype), paper, zero_centred)
        return out.to(x.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        x, alpha, n, paper, zero_centred = inputs
        ctx.save_for_backward(x, alpha, n)
        ctx.paper = paper
        ctx.zero_centred = zero_centred

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x0, alpha0, n0 = ctx.saved_tensors
        need_x, need_alpha, need_n = ctx.needs_input_grad[:3]
        paper, zero_centred = ctx.paper, ctx.zero_centred
        if not torch.is_grad_enabled() and fused.use_compiled(x0):  # not for double backward
            grads = fused.sau_bwd(
                grad, x0, alpha0, n0, paper, zero_centred, (need_x, need_alpha, need_n)
            )
            if grads is not None:
                return (*grads, None, None)
        dtype = _compute_dtype(x0, alpha0, n0, grad)
        x, alpha, n, grad = x0.to(dtype), alpha0.to(dtype), n0.to(dtype), grad.to(dtype)
        if not zero_centred and not need_n and _lean(x, alpha, n, grad):
            gx, galpha = _backward_lean(grad, x, alpha, n, paper, need_x, need_alpha)
            return (None if gx is None else _reduce(gx, x0),
                    None if galpha is None else _reduce(galpha, alpha0), None, None, None)

        z = n * x
        e, ze = _gauss(z)  # φ(z), z·φ(z)
        c = 1.0 if paper else 1 - alpha  # coefficient of the Gaussian term
        gx = galpha = gn = None

        if need_x:
            d = 0.5 * (1 + alpha) + 0.5 * (1 - alpha) * _erf(z)
            if zero_centred:
                d = d + (1 - alpha) * ze + c * (e / n - x * ze)
            elif paper:
                d = d - alpha * ze  # (1-α)·zφ - 1·zφ
            # exact, not zero-centred: the z·φ(z) terms cancel exactly
            gx = _reduce(grad * d, x0)
        if need_alpha:
            d = 0.5 * x * torch.erfc((z * _INV_SQRT2).clamp(-_ERF_CLAMP, _ERF_CLAMP))
            if not paper:
                gauss = e / n
                d = d - (x * gauss if zero_centred else gauss)
            galpha = _reduce(grad * d, alpha0)
        if need_n:
            x2e = x * (x * e)  # x²·φ(z), multiplied in this order to stay finite
            e_n2 = (e / n) / n  # φ(z)/n² without forming n²
            if zero_centred:
                d = (1 - alpha) * x2e - c * (x * x2e + x * e_n2)
            elif paper:
                d = -alpha * x2e - e_n2
            else:
                d = -(1 - alpha) * e_n2
            gn = _reduce(grad * d, n0)
        return gx, galpha, gn, None, None


def _as_param(value: Tensor | float, name: str, x: Tensor) -> Tensor:
    if isinstance(value, Tensor):
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        return torch.tensor(float(value), dtype=dtype, device=x.device)
    raise TypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")


def _check_args(
    x: Tensor, alpha: Tensor | float, n: Tensor | float, formula: str
) -> tuple[Tensor, Tensor, bool]:
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    paper = _check_formula(formula)
    a, nn_ = _as_param(alpha, "alpha", x), _as_param(n, "n", x)
    if torch.jit.is_tracing():  # shapes are fixed by the example input; skip the Python check
        return a, nn_, paper
    try:
        shape = torch.broadcast_shapes(x.shape, a.shape, nn_.shape)
    except RuntimeError:
        shape = None
    if shape != x.shape:
        raise ValueError(
            f"alpha (shape {tuple(a.shape)}) and n (shape {tuple(nn_.shape)}) must broadcast to "
            f"the input's shape {tuple(x.shape)}; reshape per-channel parameters of an "
            f"(N, C, ...) input to (C, 1, ..., 1)"
        )
    return a, nn_, paper


def sau(
    x: Tensor,
    alpha: Tensor | float = 0.15,
    n: Tensor | float = 20000.0,
    formula: str = "exact",
    zero_centred: bool = False,
) -> Tensor:
    """Smooth activation unit ``G = LeakyReLU_α * φ_n`` (see the module docstring for formulas).

    Args:
        x: input, any floating dtype (half precision is computed in float32 internally).
        alpha: negative slope α, a float or a tensor broadcastable to ``x``.
        n: sharpness of the approximate identity (``n > 0``; not checked here, to stay
            traceable), a float or a tensor broadcastable to ``x``. ``n → ∞`` gives LeakyReLU.
        formula: ``"exact"`` (the convolution) or ``"paper"`` (the paper's Eq. 3 literally).
        zero_centred: multiply the Gaussian term by ``x`` so that ``G(0) = 0``.

    Returns:
        a tensor with the shape and dtype of ``x``. Gradients for ``x``, ``alpha`` and ``n`` come
        from a hand-written backward that saves only the inputs; parameter gradients are summed to
        the parameter's shape.
    """
    a, n_, paper = _check_args(x, alpha, n, formula)
    return _SAUFunction.apply(x, a, n_, paper, bool(zero_centred))


def sau_reference(
    x: Tensor,
    alpha: Tensor | float = 0.15,
    n: Tensor | float = 20000.0,
    formula: str = "exact",
    zero_centred: bool = False,
) -> Tensor:
    """SAU as a plain composition of torch ops, differentiated by autograd.

    The unfused baseline (and the tests' reference): no upcasting, no clamping; it saves several
    input-sized intermediates for backward. Computes in the usual type-promotion dtype.
    """
    paper = _check_formula(formula)
    z = n * x
    gauss = 1.0 / (2 * n) * math.sqrt(2 / math.pi) * torch.exp(-(z**2) / 2)
    if not paper:
        gauss = (1 - alpha) * gauss
    if zero_centred:
        gauss = x * gauss
    return gauss + (1 + alpha) / 2 * x + (1 - alpha) / 2 * x * torch.erf(z / math.sqrt(2))
