"""The fused kernels of actlab.functional.fused: backend switch, kernel math against independent
references (float64 autograd of the naive formulas, gradcheck), and the compiled path against the
eager one (forward, every gradient, saved-tensor bytes)."""

from __future__ import annotations

import pytest
import torch

from actlab.bench.measure import saved_tensor_bytes
from actlab.functional import fused
from actlab.functional.agc import agc, agc_act, agc_act_reference, agc_reference
from actlab.functional.ash import ash, ash_reference

D64 = torch.float64


# ---------------------------------------------------------------------------------------------
# backend switch
# ---------------------------------------------------------------------------------------------
def test_backend_switch_and_context_manager() -> None:
    start = fused.get_backend()
    with fused.backend("compiled"):
        assert fused.get_backend() == "compiled"
        with fused.backend("auto"):
            assert fused.get_backend() == "auto"
        assert fused.get_backend() == "compiled"
    assert fused.get_backend() == start
    with pytest.raises(ValueError, match="backend must be one of"):
        fused.set_backend("fast")
    with pytest.raises(ValueError), fused.backend("nope"):
        pass
    assert fused.get_backend() == start


def test_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTLAB_BACKEND", "Compiled ")
    assert fused._initial_backend() == "compiled"
    monkeypatch.setenv("ACTLAB_BACKEND", "turbo")
    with pytest.warns(UserWarning, match="ACTLAB_BACKEND"):
        assert fused._initial_backend() == "eager"
    monkeypatch.delenv("ACTLAB_BACKEND")
    assert fused._initial_backend() == "eager"


def test_use_compiled_rules() -> None:
    small, big = torch.zeros(10), torch.zeros(fused.AUTO_MIN_NUMEL)
    with fused.backend("eager"):
        assert not fused.use_compiled(big)
    with fused.backend("auto"):
        assert not fused.use_compiled(small) and fused.use_compiled(big)
    with fused.backend("compiled"):
        assert fused.use_compiled(small)
        seen = []

        def probe(x: torch.Tensor) -> torch.Tensor:
            seen.append(fused.use_compiled(x))
            return x * 2

        torch.jit.trace(probe, (small,), check_trace=False)
        assert seen == [False]  # never compile while tracing


# ---------------------------------------------------------------------------------------------
# kernel math, evaluated eagerly, against the naive formulas (float64) and gradcheck
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pshape, dims, leak", [((), None, 0.0), ((1, 3, 1, 1), (2, 3), 0.0), ((), (1,), 0.1)]
)
def test_ash_kernel_math_matches_reference_and_gradcheck(pshape, dims, leak: float) -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 4, 5, generator=g, dtype=D64, requires_grad=True)
    z = (0.5 * torch.randn(pshape, generator=g, dtype=D64)).requires_grad_()
    a = (0.5 + torch.rand(pshape, generator=g, dtype=D64)).requires_grad_()
    d = tuple(range(1, 4)) if dims is None else dims

    class Via(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, z, a):  # type: ignore[override]
            out, mu, sigma = fused._ash_fwd_math(x, z, a, d, 1e-5, leak)
            ctx.save_for_backward(x, mu, sigma, z, a)
            return out

        @staticmethod
        def backward(ctx, grad):  # type: ignore[override]
            x, mu, sigma, z, a = ctx.saved_tensors
            return fused._ash_bwd_math(grad, x, mu, sigma, z, a, d, leak,
                                       *ctx.needs_input_grad)

    out, ref = Via.apply(x, z, a), ash_reference(x, z, a, dims, 1e-5, leak)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-14)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (x, z, a), grad)
    want = torch.autograd.grad(ref, (x, z, a), grad)
    for gg, w in zip(got, want, strict=True):
        torch.testing.assert_close(gg, w, rtol=1e-9, atol=1e-12)
    assert torch.autograd.gradcheck(Via.apply, (x, z, a))


@pytest.mark.parametrize("slope", [None, 0.0, 0.1])  # None: plain AGC
def test_agc_kernel_math_matches_reference_and_gradcheck(slope: float | None) -> None:
    g = torch.Generator().manual_seed(5)
    h = torch.randn(3, 4, 5, 3, generator=g, dtype=D64, requires_grad=True)
    lam = (0.5 + torch.rand(4, generator=g, dtype=D64)).requires_grad_()
    gamma = (torch.randn(4, generator=g, dtype=D64) + 2.0).requires_grad_()
    beta = torch.randn(4, generator=g, dtype=D64).requires_grad_()

    class Via(torch.autograd.Function):
        @staticmethod
        def forward(ctx, h, lam, gamma, beta):  # type: ignore[override]
            if slope is None:
                y, m = fused._agc_fwd_math(h, lam, gamma, beta)
                ctx.save_for_backward(h, m, lam, gamma)
            else:
                y, m, gs = fused._agc_act_fwd_math(h, lam, gamma, beta, slope, 1e-5)
                ctx.save_for_backward(y, m, lam, gs, beta)
            return y

        @staticmethod
        def backward(ctx, grad):  # type: ignore[override]
            needs = ctx.needs_input_grad
            if slope is None:
                h, m, lam, gamma = ctx.saved_tensors
                return fused._agc_bwd_math(grad, h, m, lam, gamma, D64, *needs)
            y, m, lam, gs, beta = ctx.saved_tensors
            return fused._agc_act_bwd_math(grad, y, m, lam, gs, beta, slope, D64, D64, *needs)

    args = (h, lam, gamma, beta)
    out = Via.apply(*args)
    if slope is None:
        ref = agc_reference(*args)
    else:
        ref = agc_act_reference(*args, "relu" if slope == 0 else "leaky_relu", slope)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-14)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, args, grad)
    want = torch.autograd.grad(ref, args, grad)
    for gg, w in zip(got, want, strict=True):
        torch.testing.assert_close(gg, w, rtol=1e-9, atol=1e-12)
    if slope != 0.0:  # ReLU's kink makes finite differences unreliable near u = 0
        assert torch.autograd.gradcheck(Via.apply, args)


# ---------------------------------------------------------------------------------------------
# the compiled path (slow: the first torch.compile in a process takes tens of seconds)
# ---------------------------------------------------------------------------------------------
def _compiled_or_skip(fn):
    failures = len(fused.compile_failures())
    with fused.backend("compiled"):
        result = fn()
    if len(fused.compile_failures()) > failures:
        pytest.skip(f"torch.compile unavailable here: {fused.compile_failures()[-1]}")
    return result


def _both(layer, args: tuple[torch.Tensor, ...], dtype: torch.dtype):
    """(out, grads) of ``layer(*args)`` under the eager and the compiled backend."""

    def run():
        out = layer(*args)
        grad = torch.linspace(-1, 1, out.numel(), dtype=D64).reshape(out.shape).to(dtype)
        return out, torch.autograd.grad(out, args, grad)

    with fused.backend("eager"):
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
def test_compiled_ash_equals_eager() -> None:
    torch.manual_seed(1)
    x = torch.randn(4, 6, 8, 8, requires_grad=True)
    z = torch.full((1, 6, 1, 1), 0.3, requires_grad=True)
    a = torch.full((1, 6, 1, 1), 1.5, requires_grad=True)
    eager, compiled = _both(lambda x, z, a: ash(x, z, a), (x, z, a), torch.float32)
    _assert_close(eager, compiled, torch.float32)
    with fused.backend("compiled"):
        saved = saved_tensor_bytes(lambda: ash(x, z, a), exclude=(z, a))
    assert x.numel() * 4 <= saved <= x.numel() * 4 + 2 * 4 * 4  # x plus (N,1,1,1) μ and σ


@pytest.mark.slow
@pytest.mark.parametrize("fused_act", [False, True])
def test_compiled_agc_equals_eager(fused_act: bool) -> None:
    torch.manual_seed(2)
    h = torch.randn(4, 6, 8, 8, requires_grad=True)
    lam = torch.full((6,), 0.9, requires_grad=True)
    gamma = torch.linspace(0.5, 2.0, 6).requires_grad_()
    beta = torch.linspace(-0.5, 0.5, 6).requires_grad_()
    layer = agc_act if fused_act else agc
    eager, compiled = _both(layer, (h, lam, gamma, beta), torch.float32)
    _assert_close(eager, compiled, torch.float32)
    with fused.backend("compiled"):
        saved = saved_tensor_bytes(lambda: layer(h, lam, gamma, beta), exclude=(lam, gamma, beta))
    assert h.numel() * 4 <= saved <= h.numel() * 4 + 4 * 6 * 4 + 2 * 6 * 4  # + (N, C) means
