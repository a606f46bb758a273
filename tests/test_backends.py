"""actlab.functional.backends: the backend switch, its environment variable and when the
compiled kernels run (the layers' compiled paths are tested in each layer's test files)."""

from __future__ import annotations

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
        assert backends._initial_backend() == "eager"
    monkeypatch.delenv("ACTLAB_BACKEND")
    assert backends._initial_backend() == "eager"


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
