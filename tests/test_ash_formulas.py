"""ASH's one formula per direction (functional/ash.py): the formulas evaluated eagerly against
the float64 naive composition and gradcheck, the in-place eager variant against them, and the
compiled backend against the eager one (forward, every gradient, saved-tensor bytes)."""

from __future__ import annotations

import importlib

import pytest
import torch

from actlab.bench.measure import saved_tensor_bytes
from actlab.functional import backends
from actlab.functional.ash import ash, ash_reference

A = importlib.import_module("actlab.functional.ash")  # the module, not the function
D64 = torch.float64
CASES = [((), None, 0.0), ((1, 3, 1, 1), (2, 3), 0.0), ((), (1,), 0.1), ((3, 1, 1), (1,), 0.2)]


def _inputs(pshape: tuple[int, ...], seed: int = 4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 4, 5, generator=g, dtype=D64, requires_grad=True)
    z = (0.5 * torch.randn(pshape, generator=g, dtype=D64)).requires_grad_()
    a = (0.5 + torch.rand(pshape, generator=g, dtype=D64)).requires_grad_()
    return x, z, a


def _via_formulas(dims: list[int], leak: float):
    """An autograd.Function that runs _ash_fwd_math / _ash_bwd_math (what the compiled backend
    compiles) eagerly."""

    class Via(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, z, a):  # type: ignore[override]
            out, mu, sigma = A._ash_fwd_math(x, z, a, dims, 1e-5, leak, D64)
            ctx.save_for_backward(x, mu, sigma, z, a)
            return out

        @staticmethod
        def backward(ctx, grad):  # type: ignore[override]
            x, mu, sigma, z, a = ctx.saved_tensors
            return A._ash_bwd_math(grad, x, mu, sigma, z, a, dims, leak,
                                   *ctx.needs_input_grad, None, None)

    return Via.apply


@pytest.mark.parametrize(("pshape", "dims", "leak"), CASES)
def test_formulas_match_reference_and_gradcheck(pshape, dims, leak: float) -> None:
    x, z, a = _inputs(pshape)
    d = [1, 2, 3] if dims is None else list(dims)
    fn = _via_formulas(d, leak)
    out, ref = fn(x, z, a), ash_reference(x, z, a, dims, 1e-5, leak)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-14)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (x, z, a), grad)
    want = torch.autograd.grad(ref, (x, z, a), grad)
    for gg, w in zip(got, want, strict=True):
        torch.testing.assert_close(gg, w, rtol=1e-9, atol=1e-12)
    assert torch.autograd.gradcheck(fn, (x, z, a))


@pytest.mark.parametrize(("pshape", "dims", "leak"), CASES)
def test_inplace_variant_equals_formulas(pshape, dims, leak: float) -> None:
    """The in-place eager kernels (kept for speed, see docs/PERFORMANCE.md) compute the same
    numbers as the formulas, and leave their inputs untouched."""
    x, z, a = (t.detach() for t in _inputs(pshape, seed=9))
    d = [1, 2, 3] if dims is None else list(dims)
    want = A._ash_fwd_math(x, z, a, d, 1e-5, leak, D64)
    x_before = x.clone()
    got = A._ash_fwd_inplace(x, z, a, d, 1e-5, leak, D64)
    for gg, w in zip(got, want, strict=True):
        torch.testing.assert_close(gg, w, rtol=1e-13, atol=1e-15)
    g = torch.randn_like(x)
    g_before = g.clone()
    _, mu, sigma = want
    got_b = A._ash_bwd_inplace(g, x, mu, sigma, z, a, d, leak, True, True, True)
    want_b = A._ash_bwd_math(g, x, mu, sigma, z, a, d, leak, True, True, True, None, None)
    for gg, w in zip(got_b, want_b, strict=True):
        torch.testing.assert_close(gg, w, rtol=1e-12, atol=1e-14)
    assert torch.equal(x, x_before) and torch.equal(g, g_before)


def test_jvp_formula_matches_finite_differences() -> None:
    x, z, a = (t.detach() for t in _inputs((1, 3, 1, 1), seed=11))
    xt, zt, at = torch.randn_like(x), torch.randn_like(z), torch.randn_like(a)
    d, leak, h = [2, 3], 0.1, 1e-6
    _, mu, sigma = A._ash_fwd_math(x, z, a, d, 1e-5, leak, D64)
    tangents = A._ash_jvp_math(x, mu, sigma, z, a, d, leak, xt, zt, at)
    plus = A._ash_fwd_math(x + h * xt, z + h * zt, a + h * at, d, 1e-5, leak, D64)
    minus = A._ash_fwd_math(x - h * xt, z - h * zt, a - h * at, d, 1e-5, leak, D64)
    for t, p, m in zip(tangents, plus, minus, strict=True):
        torch.testing.assert_close(t, (p - m) / (2 * h), rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# the compiled path (slow: the first torch.compile in a process takes tens of seconds)
# ---------------------------------------------------------------------------------------------
def _compiled(fn):
    """Run ``fn`` under the compiled backend; fail (not skip) if compiling failed."""
    failures = len(backends.compile_failures())
    with backends.backend("compiled"):
        result = fn()
    assert len(backends.compile_failures()) == failures, backends.compile_failures()[-1:]
    return result


@pytest.mark.slow
@pytest.mark.parametrize("leak", [0.0, 0.1])
def test_compiled_ash_equals_eager(leak: float, kernels: str) -> None:
    torch.manual_seed(1)
    x = torch.randn(4, 6, 8, 8, requires_grad=True)
    z = torch.full((1, 6, 1, 1), 0.3, requires_grad=True)
    a = torch.full((1, 6, 1, 1), 1.5, requires_grad=True)

    def run():
        out = ash(x, z, a, leak=leak)
        grad = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
        return out, torch.autograd.grad(out, (x, z, a), grad)

    with backends.backend("eager"):
        out_e, grads_e = run()
    out_c, grads_c = _compiled(run)
    torch.testing.assert_close(out_c, out_e, rtol=2e-5, atol=2e-6)
    for gc, ge in zip(grads_c, grads_e, strict=True):
        scale = ge.abs().max().item()
        torch.testing.assert_close(gc, ge, rtol=2e-5, atol=2e-5 * scale)
    saved = _compiled(lambda: saved_tensor_bytes(lambda: ash(x, z, a), exclude=(z, a)))
    assert x.numel() * 4 <= saved <= x.numel() * 4 + 2 * 4 * 4  # x plus (N,1,1,1) μ and σ


# ---------------------------------------------------------------------------------------------
# the one-pass statistics the compiled backend uses for float32 / half inputs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("pshape", "dims", "leak"), CASES)
def test_one_pass_formula_matches_float64_reference(pshape, dims, leak, dtype) -> None:
    """``one_pass=True`` (float64 shifted sums, clamped threshold) against the float64 naive
    composition, on inputs whose mean is far from 0 (cancellation) and whose first element, the
    shift, is an outlier."""
    x, z, a = (t.detach() for t in _inputs(pshape, seed=12))
    x = 300.0 + 2.0 * x
    x[:, 0, 0, 0] = -900.0  # the shift of dims=None / (1,) slices lies far from their mean
    xd = x.to(dtype)
    d = [1, 2, 3] if dims is None else list(dims)
    out, mu, sigma = A._ash_fwd_math(xd, z.float(), a.float(), d, 1e-5, leak, torch.float32, True)
    xr = xd.double()
    mu_ref = xr.mean(d, keepdim=True)
    sigma_ref = torch.sqrt(((xr - mu_ref) ** 2).mean(d, keepdim=True) + 1e-5)
    torch.testing.assert_close(mu.double(), mu_ref, rtol=1e-6, atol=0)
    torch.testing.assert_close(sigma.double(), sigma_ref, rtol=1e-6, atol=0)
    ref = ash_reference(xr, z, a, dims, 1e-5, leak)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(out.double(), ref, rtol=tol, atol=tol * ref.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_one_pass_formula_is_finite_up_to_the_dtype_max(dtype) -> None:
    big = torch.finfo(dtype).max
    g = torch.Generator().manual_seed(13)
    x = torch.rand(2, 3, 4, 4, generator=g, dtype=D64) * 2 - 1
    x[0, 0, 0, :2] = torch.tensor([1.0, -1.0])
    huge = (x * big).to(dtype)
    for z in (0.0, 1.5, -1.5):
        out, mu, sigma = A._ash_fwd_math(
            huge, torch.tensor(z), torch.tensor(1.0), [1, 2, 3], 1e-5, 0.0, torch.float32, True
        )
        assert all(torch.isfinite(t).all() for t in (out, mu, sigma))
        ref = ash_reference(huge.double(), z, 1.0)
        torch.testing.assert_close(out.double(), ref, rtol=1e-2, atol=1e-6 * big)
    # a constant sample: σ = √eps, every element sits at the threshold (gate ½ for z = 0)
    const = torch.full((2, 3, 4, 4), 7.0, dtype=dtype)
    out, _, sigma = A._ash_fwd_math(const, torch.tensor(0.0), torch.tensor(1.0), [1, 2, 3],
                                    1e-5, 0.0, torch.float32, True)
    torch.testing.assert_close(sigma, torch.full_like(sigma, 1e-5 ** 0.5))
    torch.testing.assert_close(out.float(), torch.full((2, 3, 4, 4), 3.5))


@pytest.mark.slow
def test_compiled_ash_is_finite_up_to_the_float32_max(kernels: str) -> None:
    """The compiled one-pass kernel (not only its formula run eagerly) on inputs up to the
    float32 maximum, against the float64 reference."""
    big = torch.finfo(torch.float32).max
    g = torch.Generator().manual_seed(14)
    x = (torch.rand(2, 3, 4, 4, generator=g, dtype=D64) * 2 - 1) * big
    x[0, 0, 0, :2] = torch.tensor([big, -big], dtype=D64)
    huge = x.float()
    out = _compiled(lambda: ash(huge, 0.5, 1.0))
    assert torch.isfinite(out).all() and out[0, 0, 0, 0] == huge[0, 0, 0, 0]
    ref = ash_reference(huge.double(), 0.5, 1.0)
    torch.testing.assert_close(out.double(), ref, rtol=1e-2, atol=1e-6 * big)
