"""SAU's formulas (actlab.functional.sau: one forward formula, one partial-derivative formula)
evaluated eagerly against independent references (scipy, float64 autograd of the naive
composition, gradcheck), and the compiled backend against the eager one (forward, every gradient,
saved-tensor bytes). Moved here from test_fused.py when the formulas left fused.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import special

from actlab.bench.measure import saved_tensor_bytes
from actlab.functional import backends
from actlab.functional.sau import (
    _sau_bwd_math,
    _sau_fwd_math,
    erf_and_gauss,
    gauss_cutoff,
    sau,
    sau_reference,
)

D64 = torch.float64


# ---------------------------------------------------------------------------------------------
# the Gaussian cut-off and the shared-exp erf
# ---------------------------------------------------------------------------------------------
def test_erf_and_gauss_against_scipy() -> None:
    u = torch.cat([torch.linspace(-8, 8, 4001), torch.tensor([0.0, 1e-8, -1e-8, 50.0, -1e4])])
    u64 = u.double().numpy()
    erf, erfc, e = erf_and_gauss(u, approx=True)
    assert erf.dtype == torch.float32
    # the Abramowitz-Stegun bound 1.5e-7 plus float32 rounding of the polynomial
    assert np.abs(erf.double().numpy() - special.erf(u64)).max() < 6e-7
    assert np.abs(erfc.double().numpy() - special.erfc(u64)).max() < 6e-7
    want = torch.exp(-(u.double() ** 2))
    want[u.double() ** 2 >= 50] = 0.0
    torch.testing.assert_close(e.double(), want, rtol=1e-5, atol=0)  # u² rounded in float32
    exact = erf_and_gauss(u.double(), approx=False)
    torch.testing.assert_close(exact[0], torch.special.erf(u.double()))
    assert gauss_cutoff(torch.tensor([7.0, 7.1, 1e30])).tolist()[1:] == [0.0, 0.0]


# ---------------------------------------------------------------------------------------------
# the formulas, evaluated eagerly, against the naive composition (float64) and gradcheck
# ---------------------------------------------------------------------------------------------
def _via_kernels_sau(paper: bool, zc: bool, approx: bool = False):
    class Via(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, a, n):  # type: ignore[override]
            ctx.save_for_backward(x, a, n)
            return _sau_fwd_math(x, a, n, paper, zc, approx)

        @staticmethod
        def backward(ctx, g):  # type: ignore[override]
            x, a, n = ctx.saved_tensors
            return _sau_bwd_math(g, x, a, n, paper, zc, *ctx.needs_input_grad, approx)

    return Via.apply


def _sau_inputs(n: float, per_channel: bool, dtype=D64):
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(2, 3, 5, generator=g, dtype=D64) * 2 / n).to(dtype).requires_grad_()
    shape = (3, 1) if per_channel else ()
    a = (torch.rand(shape, generator=g, dtype=D64) * 0.8 + 0.1).to(dtype).requires_grad_()
    nt = (torch.full(shape, n, dtype=D64) * (1 + 0.2 * torch.rand(shape, generator=g, dtype=D64)))
    return x, a, nt.to(dtype).requires_grad_()


@pytest.mark.parametrize("zc", [False, True])
@pytest.mark.parametrize("paper", [False, True])
@pytest.mark.parametrize("n", [0.3, 4.0, 2e4])
def test_sau_kernel_math_matches_reference_and_gradcheck(n: float, paper: bool, zc: bool) -> None:
    x, a, nt = _sau_inputs(n, per_channel=n != 4.0)
    fn = _via_kernels_sau(paper, zc)
    formula = "paper" if paper else "exact"
    out, ref = fn(x, a, nt), sau_reference(x, a, nt, formula, zc)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-15)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (x, a, nt), grad)
    want = torch.autograd.grad(ref, (x, a, nt), grad)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-12)
    assert torch.autograd.gradcheck(fn, (x, a, nt))


@pytest.mark.parametrize("zc", [False, True])
@pytest.mark.parametrize("paper", [False, True])
@pytest.mark.parametrize("n", [0.5, 20.0, 2e4])
def test_sau_float32_approx_kernel_close_to_float64(n: float, paper: bool, zc: bool) -> None:
    x64, a64, n64 = _sau_inputs(n, per_channel=True)
    x, a, nt = (t.detach().float().requires_grad_() for t in (x64, a64, n64))
    formula = "paper" if paper else "exact"
    out = _via_kernels_sau(paper, zc, approx=True)(x, a, nt)
    ref = sau_reference(x64, a64, n64, formula, zc)
    scale = x64.abs().max().item()
    torch.testing.assert_close(out.double(), ref, rtol=2e-6, atol=2e-7 * scale)
    grad = torch.randn_like(ref)
    got = torch.autograd.grad(out, (x, a, nt), grad.float())
    want = torch.autograd.grad(ref, (x64, a64, n64), grad)
    torch.testing.assert_close(got[0].double(), want[0], rtol=2e-6, atol=1e-6)
    for g, w in zip(got[1:], want[1:], strict=True):  # sums over 30 elements
        torch.testing.assert_close(g.double(), w, rtol=1e-5, atol=1e-5 * w.abs().max().item())


# ---------------------------------------------------------------------------------------------
# the compiled path (slow: the first torch.compile in a process takes tens of seconds)
# ---------------------------------------------------------------------------------------------
def _compiled_or_skip(fn):
    failures = len(backends.compile_failures())
    with backends.backend("compiled"):
        result = fn()
    if len(backends.compile_failures()) > failures:
        pytest.skip(f"torch.compile unavailable here: {backends.compile_failures()[-1]}")
    return result


def _both(layer, args: tuple[torch.Tensor, ...], dtype: torch.dtype):
    """(out, grads) of ``layer(*args)`` under the eager and the compiled backend."""

    def run():
        out = layer(*args)
        grad = torch.linspace(-1, 1, out.numel(), dtype=D64).reshape(out.shape).to(dtype)
        return out, torch.autograd.grad(out, args, grad)

    with backends.backend("eager"):
        eager = run()
    return eager, _compiled_or_skip(run)


def _assert_close(a, b, dtype: torch.dtype) -> None:
    (oa, ga), (ob, gb) = a, b
    tol = {torch.float32: (2e-5, 2e-6), torch.bfloat16: (1.6e-2, 1e-3), D64: (1e-12, 1e-14)}
    rtol, atol = tol[dtype]
    torch.testing.assert_close(ob, oa, rtol=rtol, atol=atol)
    for x, y in zip(ga, gb, strict=True):
        scale = x.abs().max().item() + 1e-30
        torch.testing.assert_close(y.float(), x.float(), rtol=rtol, atol=max(atol, rtol * scale))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_sau_equals_eager(dtype: torch.dtype, kernels: str) -> None:
    torch.manual_seed(0)
    x = (torch.randn(4, 6, 8, 8) * 0.5).to(dtype).requires_grad_()
    a = torch.full((6, 1, 1), 0.2, requires_grad=True)
    n = torch.linspace(0.5, 8.0, 6).view(6, 1, 1).requires_grad_()
    eager, compiled = _both(lambda x, a, n: sau(x, a, n), (x, a, n), dtype)
    _assert_close(eager, compiled, dtype)
    with backends.backend("compiled"):
        saved = saved_tensor_bytes(lambda: sau(x, a, n), exclude=(a, n))
    assert saved == x.numel() * x.element_size()  # only x, in its own dtype


@pytest.mark.slow
def test_compiled_sau_gradcheck_float64() -> None:
    x, a, nt = _sau_inputs(3.0, per_channel=True)

    def fn(x, a, n):
        return sau(x, a, n, "paper", True)

    _compiled_or_skip(lambda: torch.autograd.gradcheck(fn, (x, a, nt)))
    with backends.backend("compiled"):
        assert torch.autograd.gradcheck(fn, (x, a, nt))
        assert torch.autograd.gradgradcheck(fn, (x, a, nt))  # double backward: eager math


@pytest.mark.slow
def test_compiled_backend_leaves_torch_func_transforms_to_eager_math() -> None:
    from torch.func import hessian, jacfwd, vmap

    x, a, nt = (t.detach() for t in _sau_inputs(2.0, per_channel=False))
    failures = len(backends.compile_failures())
    with backends.backend("compiled"):
        v = vmap(lambda t: sau(t, a, nt))(x)
        j = jacfwd(lambda t: sau(t, a, nt, "paper"))(x[0])
        h = hessian(lambda t: sau(t, a, nt, "paper", True).sum())(x[0, 0])
    assert len(backends.compile_failures()) == failures  # nothing was handed to the compiler
    torch.testing.assert_close(v, sau_reference(x, a, nt), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(j, jacfwd(lambda t: sau_reference(t, a, nt, "paper"))(x[0]))
    want = hessian(lambda t: sau_reference(t, a, nt, "paper", True).sum())(x[0, 0])
    torch.testing.assert_close(h, want, rtol=1e-10, atol=1e-12)
