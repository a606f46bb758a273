"""actlab.functional.backends: the backend switch, its environment variable and when the
compiled kernels run (the layers' compiled paths are tested in each layer's test files)."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch

from actlab.functional import backends, native

D64 = torch.float64


@pytest.fixture(autouse=True)
def _torch_compile_only():
    """These tests are about the torch.compile machinery (budgets, cache, failures): the native
    SAU/ASH kernels, which the compiled backends try first, are off (tests/test_native.py)."""
    with native.disabled():
        yield


# ---------------------------------------------------------------------------------------------
# backend switch
# ---------------------------------------------------------------------------------------------
def test_backend_switch_and_context_manager() -> None:
    start = backends.get_backend()
    with backends.backend("compiled"):
        assert backends.get_backend() == "compiled"
        with backends.backend("auto"):
            assert backends.get_backend() == "auto"
        assert backends.get_backend() == "compiled"
    assert backends.get_backend() == start
    with pytest.raises(ValueError, match="backend must be one of"):
        backends.set_backend("fast")
    with pytest.raises(ValueError), backends.backend("nope"):
        pass
    assert backends.get_backend() == start


def test_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTLAB_BACKEND", "Compiled ")
    assert backends._initial_backend() == "compiled"
    monkeypatch.setenv("ACTLAB_BACKEND", "turbo")
    with pytest.warns(UserWarning, match="ACTLAB_BACKEND"):
        assert backends._initial_backend() == "auto"
    monkeypatch.setenv("ACTLAB_BACKEND", "eager")
    assert backends._initial_backend() == "eager"
    monkeypatch.delenv("ACTLAB_BACKEND")
    assert backends._initial_backend() == "auto"  # the library default


def test_use_compiled_rules() -> None:
    small, big = torch.zeros(10), torch.zeros(backends.AUTO_MIN_NUMEL)
    with backends.backend("eager"):
        assert not backends.use_compiled(big)
    with backends.backend("auto"):
        assert not backends.use_compiled(small) and backends.use_compiled(big)
    with backends.backend("compiled"):
        assert backends.use_compiled(small)
        seen = []

        def probe(x: torch.Tensor) -> torch.Tensor:
            seen.append(backends.use_compiled(x))
            return x * 2

        torch.jit.trace(probe, (small,), check_trace=False)
        assert seen == [False]  # never compile while tracing


# ---------------------------------------------------------------------------------------------
# torch.func transforms: eager math, no compilation, whatever the backend
# ---------------------------------------------------------------------------------------------
def _layers() -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    from actlab.functional import agc, agc_act, ash, sau
    from actlab.functional.smoothing import smooth_activation

    lam, gamma, beta = torch.full((3,), 0.9), torch.full((3,), 1.1), torch.full((3,), 0.1)
    return {
        "sau": lambda x: sau(x, 0.15, 3.0),
        "sau_paper": lambda x: sau(x, torch.tensor(0.2), 3.0, "paper", zero_centred=True),
        "ash": lambda x: ash(x, 0.5, 2.0),
        "agc": lambda x: agc(x, lam, gamma, beta),
        "agc_act": lambda x: agc_act(x, lam, gamma, beta),
        "smooth_leaky": lambda x: smooth_activation(x, "leaky_relu", 4.0),
    }


_TRANSFORMS: dict[str, Callable[..., torch.Tensor]] = {
    "vmap": lambda f, x: torch.func.vmap(f)(x),
    "jacrev": lambda f, x: torch.func.jacrev(f)(x),
    "jvp": lambda f, x: torch.func.jvp(f, (x,), (torch.ones_like(x),))[1],
    "grad": lambda f, x: torch.func.grad(lambda t: f(t).square().sum())(x),
}


@pytest.mark.parametrize("transform", list(_TRANSFORMS))
@pytest.mark.parametrize("name", list(_layers()))
def test_transforms_run_eager_math_without_compiling(name: str, transform: str) -> None:
    f, apply = _layers()[name], _TRANSFORMS[transform]
    shape = (2, 2, 3, 4, 5) if transform == "vmap" else (2, 3, 4, 5)  # vmap maps dim 0 away
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with backends.backend("eager"):
        expected = apply(f, x)
    backends.reset_compiled()
    try:
        with backends.backend("compiled"):
            got = apply(f, x)
        assert backends._compiled == {} and backends.compile_failures() == []
    finally:
        backends.reset_compiled()
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_transforming_flag() -> None:
    seen: list[bool] = []

    def probe(x: torch.Tensor) -> torch.Tensor:
        seen.append(backends.transforming())
        return x * 2

    probe(torch.ones(2))
    torch.func.vmap(probe)(torch.ones(2, 2))
    assert seen == [False, True]


# ---------------------------------------------------------------------------------------------
# the default backend and the "auto" budget
# ---------------------------------------------------------------------------------------------
def test_library_default_is_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ACTLAB_BACKEND the import-time backend is "auto" (the suite pins "eager",
    tests/conftest.py)."""
    monkeypatch.delenv("ACTLAB_BACKEND", raising=False)
    assert backends._initial_backend() == backends.DEFAULT_BACKEND == "auto"
    assert backends.get_backend() == "eager"  # conftest


def _sau_step(x: torch.Tensor, alpha: torch.Tensor) -> tuple[torch.Tensor, ...]:
    from actlab.functional import sau

    out = sau(x, alpha, 3.0)
    grad = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
    return (out.detach(), *torch.autograd.grad(out, (x, alpha), grad))


def _compiled_keys() -> set[str]:
    return {key[0] for key in backends._compiled}


def test_auto_compiles_once_the_budget_is_spent(monkeypatch: pytest.MonkeyPatch) -> None:
    """Budget logic with a stand-in compiler (the formula runs uncompiled): no compile before
    the configuration has run AUTO_COMPILE_AFTER elements eagerly, then one per direction;
    small inputs never count; restart_auto() starts the budgets afresh."""
    compiled: list[str] = []

    def fake_compile(fn: Callable[..., object], fullgraph: bool) -> Callable[..., object]:
        compiled.append(fn.__name__)
        return fn

    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    alpha = torch.tensor(0.2, requires_grad=True)
    monkeypatch.setattr(backends.torch, "compile", fake_compile)
    monkeypatch.setattr(backends, "AUTO_MIN_NUMEL", x.numel())
    monkeypatch.setattr(backends, "AUTO_COMPILE_AFTER", 3 * x.numel())
    backends.reset_compiled()
    try:
        with backends.backend("auto"):
            for _ in range(4):  # below AUTO_MIN_NUMEL: eager, not counted (else: compiled 1 early)
                _sau_step(x[:1].detach().requires_grad_(), alpha)
            for _ in range(3):
                _sau_step(x, alpha)
            assert compiled == [] and backends._compiled == {}
            _sau_step(x, alpha)
            assert compiled == ["_sau_fwd_math", "_sau_bwd_math"]
            backends.restart_auto()  # budgets afresh, kernels kept
            _sau_step(x, alpha)
            assert _compiled_keys() == {"_sau_fwd_math", "_sau_bwd_math"}
            assert len(compiled) == 2
        with backends.backend("compiled"):  # "compiled" has no budget
            backends.reset_compiled()
            _sau_step(x, alpha)
            assert _compiled_keys() == {"_sau_fwd_math", "_sau_bwd_math"}
    finally:
        backends.reset_compiled()


@pytest.mark.slow
def test_auto_compiled_result_matches_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real compile after the budget: compiled and eager results agree with the float64
    reference (forward 2e-6 relative, gradients 2e-5 relative to their scale)."""
    from actlab.functional import sau_reference

    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)).requires_grad_()
    alpha = torch.tensor(0.2, requires_grad=True)
    monkeypatch.setattr(backends, "AUTO_MIN_NUMEL", x.numel())
    monkeypatch.setattr(backends, "AUTO_COMPILE_AFTER", x.numel())
    x64, a64 = x.detach().double().requires_grad_(), alpha.detach().double().requires_grad_()
    ref = sau_reference(x64, a64, 3.0)
    grad = torch.linspace(-1, 1, ref.numel(), dtype=D64).reshape(ref.shape)
    want = (ref.detach(), *torch.autograd.grad(ref, (x64, a64), grad))
    backends.reset_compiled()
    try:
        with backends.backend("auto"):
            eager = _sau_step(x, alpha)
            assert backends._compiled == {}
            compiled = _sau_step(x, alpha)
            if backends.compile_failures():
                pytest.skip(f"torch.compile unavailable here: {backends.compile_failures()[0]}")
            assert _compiled_keys() == {"_sau_fwd_math", "_sau_bwd_math"}
    finally:
        backends.reset_compiled()
    for got in (eager, compiled):
        for g, w in zip(got, want, strict=True):
            scale = w.abs().max().item()
            torch.testing.assert_close(g.double(), w, rtol=2e-5, atol=2e-6 * scale)


def test_failed_compile_warns_once_and_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_compile(fn: Callable[..., object], fullgraph: bool) -> Callable[..., object]:
        def run(*args: object) -> object:
            raise RuntimeError("no C++ compiler")
        return run

    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    alpha = torch.tensor(0.2, requires_grad=True)
    with backends.backend("eager"):
        expected = _sau_step(x, alpha)
    monkeypatch.setattr(backends.torch, "compile", broken_compile)
    backends.reset_compiled()
    try:
        with backends.backend("compiled"):
            with pytest.warns(RuntimeWarning, match="no C.. compiler") as caught:
                first = _sau_step(x, alpha)
            assert len(caught) == 1
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # no second warning
                second = _sau_step(x, alpha)
        assert len(backends.compile_failures()) == 1
    finally:
        backends.reset_compiled()
    for got in (first, second):
        for g, w in zip(got, expected, strict=True):
            torch.testing.assert_close(g, w, rtol=0, atol=0)
