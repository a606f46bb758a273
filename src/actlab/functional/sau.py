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

Where the code lives (one formula per direction): :func:`_sau_fwd_formula` is the forward and
:func:`_sau_partials` the three partial derivatives. The eager backend runs them directly
(backward: ``grad · ∂G/∂·`` summed to each parameter's shape, forward-mode AD: ``Σ tangent ·
∂G/∂·``); the ``"compiled"`` / ``"auto"`` backend (:mod:`actlab.functional.backends`) compiles the
same functions into fused kernels. The one extra eager variant is the in-place path used outside
graph recording (:func:`_forward_lean`, :func:`_backward_lean`): docs/PERFORMANCE.md measured it
at about half the time of the out-of-place composition. The CPU float32 compiled kernels evaluate
erf by Abramowitz & Stegun 7.1.26, ``erf(u) = 1 − t·P(t)·exp(−u²)``, which shares ``exp(−u²)``
with the Gaussian term (absolute error ≤ 6e-7 in float32; float64, CUDA and eager use
``torch.erf``). ``torch.erf`` compiled by inductor is no more exact on CPU (ATen's vectorised
float32 erf is the same 7.1.26 formula) and was measured 1.5× slower for the forward: it
evaluates a second ``exp`` without the cut-off, on arguments ``−(nx)²/2`` far below −50.

PyTorch integration: :func:`sau` dispatches ``__torch_function__`` (``torch.fx`` Proxies record one
``call_function`` node), the autograd.Function uses ``setup_context`` with a ``jvp`` (forward-mode
AD) and ``generate_vmap_rule`` (``torch.func.vmap``), and its backward is itself differentiable
(double backward, ``torch.func.hessian``) when a graph is recorded. ``torch.jit.script`` runs
:func:`sau_composed`, the same forward formula differentiated by autograd.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.overrides import handle_torch_function, has_torch_function_variadic

from actlab.functional import backends, native
from actlab.functional._common import apply_function, broadcasts_to, compute_dtype, sum_to

__all__ = ["sau", "sau_reference", "sau_composed", "FORMULAS", "erf_and_gauss", "gauss_cutoff"]

FORMULAS = ("exact", "paper")

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_SQRT2 = math.sqrt(2.0)
_Z_CLAMP = 10.0  # φ(z) is set to 0 for |z| >= 10 (φ(10) ≈ 7.7e-23)
_U2_CUTOFF = 50.0  # the same cut-off for exp(−u²), u = z/√2
_ERF_CLAMP = 6.0  # erf(6) = 1 - 2e-17, erfc(6) = 2e-17: arguments beyond add nothing
# The formulas below are also compiled by TorchScript (``sau_composed``), which cannot read
# module-level floats: they write these constants as literals.


def _check_formula(formula: str) -> bool:
    """Validate ``formula``; return True for the paper's Eq. 3."""
    if formula not in FORMULAS:
        raise ValueError(f"formula must be one of {FORMULAS}, got {formula!r}")
    return formula == "paper"


# ---------------------------------------------------------------------------------------------
# the formulas (one per direction), in the dtype of their arguments
# ---------------------------------------------------------------------------------------------
def gauss_cutoff(u: Tensor) -> Tensor:
    """``exp(−u²)`` where ``u² < 50``, exactly 0 beyond (never evaluates ``exp`` below −50)."""
    q = u * u
    return torch.where(q < 50.0, torch.exp(-q.clamp(max=50.0)), 0.0)


def gauss_cutoff_(u: Tensor) -> Tensor:
    """:func:`gauss_cutoff` as a new tensor built with in-place steps after the first product
    (one allocation); only where no autograd graph is recorded."""
    q = u * u
    far = q >= _U2_CUTOFF
    q.clamp_(max=_U2_CUTOFF).neg_().exp_()
    return q.masked_fill_(far, 0.0)


def erf_and_gauss(u: Tensor, approx: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``(erf(u), erfc(u), exp(−u²))``, the last cut off as in :func:`gauss_cutoff`.

    With ``approx`` the Abramowitz–Stegun form 7.1.26 shares ``exp(−u²)`` with erf (``|error|
    ≤ 1.5e-7`` in exact arithmetic, ≤ 6e-7 measured in float32); erfc is ``t·P(t)·exp(−u²)``
    for ``u ≥ 0`` (same absolute error). Without ``approx``, ``torch.erf`` at ``clamp(u, ±6)``
    (erf is ±1 there to float64 precision; huge arguments take slow paths on CPUs) and
    ``1 − erf`` (inductor has no vectorised erfc).
    """
    e = gauss_cutoff(u)
    if not approx:
        erf = torch.erf(u.clamp(-6.0, 6.0))
        return erf, 1.0 - erf, e
    t = torch.reciprocal(1.0 + 0.3275911 * u.abs())
    poly = (((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t
    tail = (poly + 0.254829592) * t * e  # erfc(|u|)
    erfc = torch.where(u >= 0, tail, 2.0 - tail)
    return torch.copysign(1.0 - tail, u), erfc, e


def _sau_terms(x: Tensor, n: Tensor, approx: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(erf(z/√2), erfc(z/√2), √(2π)·φ(z), clamp(z, ±10))`` for ``z = n·x``; the clamp keeps
    ``z·φ(z)`` finite (0) where ``z`` overflows. The Gaussian comes without its ``1/√(2π)`` so
    that callers fold that constant into one per-parameter coefficient (one elementwise
    product instead of two, and no elementwise division by ``n``)."""
    u = x * (n * 0.7071067811865476)  # z/√2 with one elementwise product
    erf, erfc, e = erf_and_gauss(u, approx)
    return erf, erfc, e, (u * 1.4142135623730951).clamp(-10.0, 10.0)


def _sau_fwd_formula(
    x: Tensor, alpha: Tensor, n: Tensor, paper: bool, zero_centred: bool, approx: bool
) -> Tensor:
    """``G = (1+α)/2·x + (1−α)/2·x·erf(z/√2) + c·m(x)·φ(z)/n`` (module docstring)."""
    erf, _erfc, e, _z = _sau_terms(x, n, approx)
    coef = 0.3989422804014327 / n  # φ(z)/n = coef·e, coef per parameter (not per element)
    if not paper:
        coef = (1.0 - alpha) * coef
    gauss = coef * e
    if zero_centred:
        gauss = x * gauss
    return x * (0.5 * (1.0 + alpha) + 0.5 * (1.0 - alpha) * erf) + gauss


def _sau_partials(
    x: Tensor,
    alpha: Tensor,
    n: Tensor,
    paper: bool,
    zero_centred: bool,
    need_x: bool,
    need_alpha: bool,
    need_n: bool,
    approx: bool,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """``(∂G/∂x, ∂G/∂α, ∂G/∂n)`` elementwise (``None`` where not needed), formulas in the module
    docstring. Written with differentiable ops only, so that a backward built on it can itself
    be differentiated (double backward)."""
    erf, erfc, e, z = _sau_terms(x, n, approx)
    phi = 0.3989422804014327 * e  # φ(z)
    inv_n = 0.3989422804014327 / n  # φ(z)/n = inv_n·e: no elementwise division by n
    c = 1.0 if paper else 1.0 - alpha  # coefficient of the Gaussian term
    dx = da = dn = None
    if need_x:
        d = 0.5 * (1.0 + alpha) + 0.5 * (1.0 - alpha) * erf
        if zero_centred:
            zphi = z * phi
            d = d + (1.0 - alpha) * zphi + c * (inv_n * e - x * zphi)
        elif paper:
            d = d - alpha * (z * phi)  # (1-α)·zφ - 1·zφ
        # exact, not zero-centred: the z·φ(z) terms cancel exactly
        dx = d
    if need_alpha:
        d = 0.5 * x * erfc
        if not paper:
            gauss = inv_n * e
            d = d - (x * gauss if zero_centred else gauss)
        da = d
    if need_n:
        x2e = x * (x * phi)  # x²·φ(z), multiplied in this order to stay finite
        e_n2 = (inv_n / n) * e  # φ(z)/n² without forming n²
        if zero_centred:
            dn = (1.0 - alpha) * x2e - c * (x * x2e + x * e_n2)
        elif paper:
            dn = -alpha * x2e - e_n2
        else:
            dn = -(1.0 - alpha) * e_n2
    return dx, da, dn


# ---------------------------------------------------------------------------------------------
# what the eager backend and the compiler run: dtype handling around the formulas
# ---------------------------------------------------------------------------------------------
def _sau_fwd_math(
    x: Tensor, alpha: Tensor, n: Tensor, paper: bool, zero_centred: bool, approx: bool
) -> Tensor:
    """The forward in the compute dtype (float32 for half precision), returned in x's dtype."""
    cdt = compute_dtype(x, alpha, n)
    out = _sau_fwd_formula(x.to(cdt), alpha.to(cdt), n.to(cdt), paper, zero_centred, approx)
    return out.to(x.dtype)


def _sau_bwd_math(
    grad: Tensor,
    x: Tensor,
    alpha: Tensor,
    n: Tensor,
    paper: bool,
    zero_centred: bool,
    need_x: bool,
    need_alpha: bool,
    need_n: bool,
    approx: bool,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Gradients ``grad·∂G/∂·`` for x, α and n, each summed to its input's shape and dtype."""
    cdt = compute_dtype(x, alpha, n, grad)
    g = grad.to(cdt)
    dx, da, dn = _sau_partials(
        x.to(cdt), alpha.to(cdt), n.to(cdt), paper, zero_centred, need_x, need_alpha, need_n,
        approx,
    )
    return (
        None if dx is None else sum_to(g * dx, x),
        None if da is None else sum_to(g * da, alpha),
        None if dn is None else sum_to(g * dn, n),
    )


def _sau_jvp_math(
    tx: Tensor | None,
    talpha: Tensor | None,
    tn: Tensor | None,
    x: Tensor,
    alpha: Tensor,
    n: Tensor,
    paper: bool,
    zero_centred: bool,
) -> Tensor:
    """Forward-mode derivative ``ẋ·∂G/∂x + α̇·∂G/∂α + ṅ·∂G/∂n`` in x's dtype."""
    cdt = compute_dtype(x, alpha, n)
    partials = _sau_partials(
        x.to(cdt), alpha.to(cdt), n.to(cdt), paper, zero_centred,
        tx is not None, talpha is not None, tn is not None, False,
    )
    out = torch.zeros((), dtype=cdt, device=x.device)
    for t, d in zip((tx, talpha, tn), partials, strict=True):
        if t is not None and d is not None:
            out = out + t.to(cdt) * d
    return out.expand(x.shape).to(x.dtype)


def _approx_erf(x: Tensor, *params: Tensor) -> bool:
    """The compiled CPU float32 kernels use the shared-exp erf (module docstring)."""
    return x.device.type == "cpu" and compute_dtype(x, *params) == torch.float32


# ---------------------------------------------------------------------------------------------
# the in-place eager variant (ordinary forward / backward without graph recording)
# ---------------------------------------------------------------------------------------------
def _lean(*tensors: Tensor) -> bool:
    """Whether the in-place eager path may run: no graph is being recorded (not a double
    backward), not tracing or transforming, and no operand broadcasts beyond the first one's
    shape."""
    if torch.is_grad_enabled() or torch.jit.is_tracing() or backends.transforming():
        return False
    return broadcasts_to(tensors[0].shape, *(t.shape for t in tensors[1:]))


def _forward_lean(x: Tensor, alpha: Tensor, n: Tensor, paper: bool, zero_centred: bool) -> Tensor:
    """:func:`_sau_fwd_formula` with in-place temporaries: ~12 passes over memory instead of ~25."""
    u = x * (n * _INV_SQRT2)  # z/√2
    gauss = gauss_cutoff_(u)  # √(2π)·φ(z)
    coef = _INV_SQRT_2PI / n if paper else (1 - alpha) * (_INV_SQRT_2PI / n)
    gauss.mul_(coef)  # c·φ(z)/n
    if zero_centred:
        gauss.mul_(x)
    w = u.clamp_(-_ERF_CLAMP, _ERF_CLAMP).erf_()  # erf(z/√2)
    w.mul_(0.5 * (1 - alpha)).add_(0.5 * (1 + alpha)).mul_(x)
    return w.add_(gauss)


def _backward_lean(
    grad: Tensor, x: Tensor, alpha: Tensor, n: Tensor, paper: bool, need_x: bool,
    need_alpha: bool,
) -> tuple[Tensor | None, Tensor | None]:
    """:func:`_sau_partials` times ``grad`` for ``x`` and ``α`` (not zero-centred, ``n``
    fixed) with in-place temporaries, unreduced:
    ``∂G/∂x = (1+α)/2 + (1-α)/2·erf(z/√2)`` (exact; paper: ``− α·z·φ(z)`` more) and
    ``∂G/∂α = x/2·erfc(z/√2) − φ(z)/n`` (exact; paper: without the last term).
    """
    u = x * (n * _INV_SQRT2)  # z/√2
    phi = ze = None
    if (need_alpha and not paper) or (need_x and paper):
        phi = gauss_cutoff_(u).mul_(_INV_SQRT_2PI)  # φ(z)
    if need_x and paper:
        ze = (u * _SQRT2).clamp_(-_Z_CLAMP, _Z_CLAMP).mul_(phi)  # z·φ(z)
    w = u.clamp_(-_ERF_CLAMP, _ERF_CLAMP).erf_()  # erf(z/√2)
    gx = galpha = None
    if need_alpha:
        d = torch.rsub(w, 1.0).mul_(0.5).mul_(x)  # erfc(z/√2)/2·x: finite for |x| = max
        if not paper:
            d.sub_(phi.mul_(1.0 / n))  # type: ignore[union-attr]
        galpha = d.mul_(grad)
    if need_x:
        d = w.mul_(0.5 * (1 - alpha)).add_(0.5 * (1 + alpha))
        if paper:
            d.sub_(ze.mul_(alpha))  # type: ignore[union-attr]
        gx = d.mul_(grad)
    return gx, galpha


# ---------------------------------------------------------------------------------------------
# the autograd.Function
# ---------------------------------------------------------------------------------------------
class _SAUFunction(torch.autograd.Function):
    """SAU with a hand-written backward that saves only ``x``, ``alpha`` and ``n``, a ``jvp``
    for forward-mode AD and an automatically generated vmap rule."""

    generate_vmap_rule = True

    @staticmethod
    def forward(  # type: ignore[override]
        x: Tensor, alpha: Tensor, n: Tensor, paper: bool, zero_centred: bool
    ) -> Tensor:
        if backends.use_compiled(x):
            key = (paper, zero_centred, _approx_erf(x, alpha, n), x.dtype, x.device.type)
            out = backends.run_compiled(
                _sau_fwd_math, key, x, alpha, n, paper, zero_centred, key[2],
                kernel=lambda: native.sau_forward(x, alpha, n, paper, zero_centred),
            )
            if out is not None:
                return out
        cdt = compute_dtype(x, alpha, n)
        xc, a, nc = x.to(cdt), alpha.to(cdt), n.to(cdt)
        if _lean(xc, a, nc):
            return _forward_lean(xc, a, nc, paper, zero_centred).to(x.dtype)
        return _sau_fwd_formula(xc, a, nc, paper, zero_centred, False).to(x.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        x, alpha, n, paper, zero_centred = inputs
        ctx.save_for_backward(x, alpha, n)
        ctx.save_for_forward(x, alpha, n)
        ctx.paper = paper
        ctx.zero_centred = zero_centred

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, alpha, n = ctx.saved_tensors
        need_x, need_alpha, need_n = ctx.needs_input_grad[:3]
        paper, zero_centred = ctx.paper, ctx.zero_centred
        needs = (need_x, need_alpha, need_n)
        if not torch.is_grad_enabled() and backends.use_compiled(x):
            approx = _approx_erf(x, alpha, n)
            key = (paper, zero_centred, *needs, approx, x.dtype, grad.dtype, x.device.type)
            grads = backends.run_compiled(
                _sau_bwd_math, key, grad, x, alpha, n, paper, zero_centred, *needs, approx,
                kernel=lambda: native.sau_backward(grad, x, alpha, n, paper, zero_centred, *needs),
            )
            if grads is not None:
                return (*grads, None, None)
        if not zero_centred and not need_n:
            cdt = compute_dtype(x, alpha, n, grad)
            xc, a, nc, g = x.to(cdt), alpha.to(cdt), n.to(cdt), grad.to(cdt)
            if _lean(xc, a, nc, g):
                gx, ga = _backward_lean(g, xc, a, nc, paper, need_x, need_alpha)
                return (None if gx is None else sum_to(gx, x),
                        None if ga is None else sum_to(ga, alpha), None, None, None)
        # out-of-place: differentiable again when create_graph=True (double backward)
        grads = _sau_bwd_math(grad, x, alpha, n, paper, zero_centred, *needs, False)
        return (*grads, None, None)

    @staticmethod
    def jvp(ctx, tx, talpha, tn, _paper, _zero_centred):  # type: ignore[override]
        x, alpha, n = ctx.saved_tensors
        return _sau_jvp_math(tx, talpha, tn, x, alpha, n, ctx.paper, ctx.zero_centred)


class _SAUFunctionCompiling(_SAUFunction):
    """:class:`_SAUFunction` without the custom ``jvp``, used while dynamo traces
    (``torch.compile``, ``torch.export``): dynamo refuses autograd.Functions that define one."""

    jvp = staticmethod(torch.autograd.Function.jvp)


# ---------------------------------------------------------------------------------------------
# argument checks and the public functions
# ---------------------------------------------------------------------------------------------
def _as_param(value: Tensor | float, name: str, x: Tensor) -> Tensor:
    if isinstance(value, Tensor):
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        return torch.tensor(float(value), dtype=dtype, device=x.device)
    raise TypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")


def _per_channel(p: Tensor, name: str, x: Tensor, dim: int) -> Tensor:
    """A 1-D per-channel tensor viewed so that it broadcasts along ``x``'s dimension ``dim``."""
    if not -x.dim() <= dim < x.dim():
        raise ValueError(
            f"channel_dim={dim} is out of range for an input of shape {tuple(x.shape)}"
        )
    dim %= x.dim()
    channels = x.shape[dim]
    if not torch.jit.is_tracing() and (p.dim() > 1 or p.numel() not in (1, channels)):
        raise ValueError(
            f"{name} has shape {tuple(p.shape)} (one value per channel) but the input has "
            f"shape {tuple(x.shape)}: expected {channels} values for dimension {dim}"
        )
    return p.reshape((-1,) + (1,) * (x.dim() - 1 - dim))


def _check_args(
    x: Tensor, alpha: Tensor | float, n: Tensor | float, formula: str, channel_dim: int | None
) -> tuple[Tensor, Tensor, bool]:
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    paper = _check_formula(formula)
    a, nn_ = _as_param(alpha, "alpha", x), _as_param(n, "n", x)
    if channel_dim is not None:
        a, nn_ = _per_channel(a, "alpha", x, channel_dim), _per_channel(nn_, "n", x, channel_dim)
    else:  # a one-element tensor acts as a scalar (as F.prelu's single weight does)
        a = a.reshape(()) if a.dim() > x.dim() and a.numel() == 1 else a
        nn_ = nn_.reshape(()) if nn_.dim() > x.dim() and nn_.numel() == 1 else nn_
    if torch.jit.is_tracing():  # shapes are fixed by the example input; skip the Python check
        return a, nn_, paper
    if not broadcasts_to(x.shape, a.shape, nn_.shape):
        raise ValueError(
            f"alpha (shape {tuple(a.shape)}) and n (shape {tuple(nn_.shape)}) must broadcast to "
            f"the input's shape {tuple(x.shape)}; pass channel_dim=1 for per-channel parameters "
            f"of an (N, C, ...) input, or reshape them to (C, 1, ..., 1)"
        )
    return a, nn_, paper


def sau(
    x: Tensor,
    alpha: Tensor | float = 0.15,
    n: Tensor | float = 20000.0,
    formula: str = "exact",
    zero_centred: bool = False,
    channel_dim: int | None = None,
) -> Tensor:
    """Smooth activation unit ``G = LeakyReLU_α * φ_n`` (see the module docstring for formulas).

    Args:
        x: input, any floating dtype (half precision is computed in float32 internally).
        alpha: negative slope α, a float or a tensor broadcastable to ``x`` (a one-element
            tensor also acts as a scalar for a lower-dimensional ``x``).
        n: sharpness of the approximate identity (``n > 0``; not checked here, to stay
            traceable), a float or a tensor like ``alpha``. ``n → ∞`` gives LeakyReLU.
        formula: ``"exact"`` (the convolution) or ``"paper"`` (the paper's Eq. 3 literally).
        zero_centred: multiply the Gaussian term by ``x`` so that ``G(0) = 0``.
        channel_dim: if given, ``alpha`` and ``n`` are 1-D with one value per entry of that
            dimension of ``x`` (or a single value), like ``F.prelu``'s weight for
            ``channel_dim=1``.

    Returns:
        a tensor with the shape and dtype of ``x``. Gradients for ``x``, ``alpha`` and ``n`` come
        from a hand-written backward that saves only the inputs; parameter gradients are summed to
        the parameter's shape. Objects with ``__torch_function__`` (e.g. ``torch.fx`` Proxies)
        are dispatched to their handler.
    """
    if has_torch_function_variadic(x, alpha, n):
        return handle_torch_function(
            sau, (x, alpha, n), x, alpha, n, formula=formula, zero_centred=zero_centred,
            channel_dim=channel_dim,
        )
    a, n_, paper = _check_args(x, alpha, n, formula, channel_dim)
    if torch.compiler.is_compiling():
        return _SAUFunctionCompiling.apply(x, a, n_, paper, bool(zero_centred))
    return apply_function(_SAUFunction, x, a, n_, paper, bool(zero_centred))


def sau_composed(
    x: Tensor,
    alpha: Tensor,
    n: Tensor,
    paper: bool = False,
    zero_centred: bool = False,
    per_channel: bool = False,
) -> Tensor:
    """SAU's forward formula as a TorchScript-compatible composition, differentiated by autograd.

    What a scripted :class:`~actlab.nn.SAU` runs (``torch.jit.script`` cannot compile the
    autograd.Function): the same formula and dtype rules as :func:`sau`, but autograd saves
    several intermediates instead of only ``x``. ``per_channel``: ``alpha`` and ``n`` are 1-D
    per-channel tensors for dimension 1 of ``x``.
    """
    cdt = torch.float32
    if x.dtype == torch.float64 or alpha.dtype == torch.float64 or n.dtype == torch.float64:
        cdt = torch.float64
    if per_channel:
        shape = [-1] + [1] * (x.dim() - 2)
        alpha, n = alpha.reshape(shape), n.reshape(shape)
    else:  # one-element tensors act as scalars, as in sau()
        if alpha.dim() > x.dim() and alpha.numel() == 1:
            alpha = alpha.reshape(())
        if n.dim() > x.dim() and n.numel() == 1:
            n = n.reshape(())
    out = _sau_fwd_formula(x.to(cdt), alpha.to(cdt), n.to(cdt), paper, zero_centred, False)
    return out.to(x.dtype)


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
