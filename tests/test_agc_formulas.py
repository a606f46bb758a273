"""AGC's one formula per direction (functional/agc.py), mean mode and fused AGC + activation:
the formulas evaluated eagerly against the float64 naive composition and gradcheck, the forward
tangents against finite differences, and the compiled backend against the eager one."""

from __future__ import annotations

import importlib

import pytest
import torch

from actlab.bench.measure import saved_tensor_bytes
from actlab.functional import backends
from actlab.functional.agc import agc, agc_act, agc_act_reference, agc_reference

A = importlib.import_module("actlab.functional.agc")
D64 = torch.float64


def _inputs(seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(3, 4, 5, 3, generator=g, dtype=D64, requires_grad=True)
    lam = (0.5 + torch.rand(4, generator=g, dtype=D64)).requires_grad_()
    gamma = (torch.randn(4, generator=g, dtype=D64) + 2.0).requires_grad_()
    beta = torch.randn(4, generator=g, dtype=D64).requires_grad_()
    return h, lam, gamma, beta


def _via_formulas(slope: float | None):
    class Via(torch.autograd.Function):
        @staticmethod
        def forward(ctx, h, lam, gamma, beta):  # type: ignore[override]
            if slope is None:
                y, m = A._agc_fwd_math(h, lam, gamma, beta, D64)
                ctx.save_for_backward(h, m, lam, gamma)
            else:
                y, m = A._agc_act_fwd_math(h, lam, gamma, beta, slope, 1e-5, D64)
                ctx.save_for_backward(y, m, lam, gamma, beta)
            return y

        @staticmethod
        def backward(ctx, grad):  # type: ignore[override]
            needs = ctx.needs_input_grad
            if slope is None:
                h, m, lam, gamma = ctx.saved_tensors
                return A._agc_bwd_math(grad, h, m, lam, gamma, D64, *needs, None)
            y, m, lam, gamma, beta = ctx.saved_tensors
            return A._agc_act_bwd_math(grad, y, m, lam, gamma, beta, slope, 1e-5, D64, *needs,
                                       None)

    return Via.apply


@pytest.mark.parametrize("slope", [None, 0.0, 0.1])  # None: plain AGC
def test_formulas_match_reference_and_gradcheck(slope: float | None) -> None:
    args = _inputs()
    fn = _via_formulas(slope)
    out = fn(*args)
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
        assert torch.autograd.gradcheck(fn, args)


@pytest.mark.parametrize("slope", [None, 0.0, 0.1])
def test_jvp_formulas_match_finite_differences(slope: float | None) -> None:
    h, lam, gamma, beta = (t.detach() for t in _inputs(seed=6))
    tangents = [torch.randn_like(t) for t in (h, lam, gamma, beta)]
    step = 1e-6

    def fwd(*p):
        if slope is None:
            return A._agc_fwd_math(*p, D64)
        return A._agc_act_fwd_math(*p, slope, 1e-5, D64)

    y, m = fwd(h, lam, gamma, beta)
    if slope is None:
        got = A._agc_jvp_math(h, m, lam, gamma, *tangents)
    else:
        got = A._agc_act_jvp_math(y, m, lam, gamma, beta, slope, 1e-5, *tangents)
    plus = fwd(*(p + step * t for p, t in zip((h, lam, gamma, beta), tangents, strict=True)))
    minus = fwd(*(p - step * t for p, t in zip((h, lam, gamma, beta), tangents, strict=True)))
    for g, p, q in zip(got, plus, minus, strict=True):
        torch.testing.assert_close(g, (p - q) / (2 * step), rtol=1e-6, atol=1e-6)


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
@pytest.mark.parametrize("fused_act", [False, True])
def test_compiled_agc_equals_eager(fused_act: bool) -> None:
    torch.manual_seed(2)
    h = torch.randn(4, 6, 8, 8, requires_grad=True)
    lam = torch.full((6,), 0.9, requires_grad=True)
    gamma = torch.linspace(0.5, 2.0, 6).requires_grad_()
    beta = torch.linspace(-0.5, 0.5, 6).requires_grad_()
    layer = agc_act if fused_act else agc
    args = (h, lam, gamma, beta)

    def run():
        out = layer(*args)
        grad = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
        return out, torch.autograd.grad(out, args, grad)

    with backends.backend("eager"):
        out_e, grads_e = run()
    out_c, grads_c = _compiled(run)
    torch.testing.assert_close(out_c, out_e, rtol=2e-5, atol=2e-6)
    for gc, ge in zip(grads_c, grads_e, strict=True):
        scale = ge.abs().max().item()
        torch.testing.assert_close(gc, ge, rtol=2e-5, atol=2e-5 * scale)
    saved = _compiled(lambda: saved_tensor_bytes(lambda: layer(*args), exclude=args[1:]))
    assert h.numel() * 4 <= saved <= h.numel() * 4 + 4 * 6 * 4 + 2 * 6 * 4  # + (N, C) means
