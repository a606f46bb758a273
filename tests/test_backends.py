"""actlab.functional.backends: the backend switch, its environment variable and when the
compiled kernels run (the layers' compiled paths are tested in each layer's test files)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from actlab.functional import backends

D64 = torch.float64


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
