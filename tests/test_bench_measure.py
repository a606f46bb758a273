"""The measurement primitives the performance claims rest on."""

from __future__ import annotations

import pytest
import torch

from actlab.bench.measure import saved_tensor_bytes, time_call


def test_saved_bytes_counts_distinct_storages() -> None:
    x = torch.randn(64, 32, requires_grad=True)
    y = torch.randn(64, 32, requires_grad=True)
    nbytes = x.numel() * 4
    assert saved_tensor_bytes(lambda: x * y) == 2 * nbytes  # mul saves both operands
    assert saved_tensor_bytes(lambda: torch.relu(x)) == nbytes  # relu saves its output
    assert saved_tensor_bytes(lambda: x + y) == 0  # add saves nothing
    assert saved_tensor_bytes(lambda: (x * x)) == nbytes  # the same storage counts once
    assert saved_tensor_bytes(lambda: x * y, exclude=(y,)) == nbytes


def test_saved_bytes_of_a_composition_counts_temporaries() -> None:
    x = torch.randn(1000, requires_grad=True)
    # exp saves its output and mul saves exp(x) and x: two input-sized storages.
    assert saved_tensor_bytes(lambda: torch.exp(x) * x) == 2 * 4000


def test_time_call_runs_setup_untimed_and_counts_repeats() -> None:
    calls = {"setup": 0, "fn": 0}

    def setup() -> int:
        calls["setup"] += 1
        return 7

    def fn(arg: int) -> None:
        assert arg == 7
        calls["fn"] += 1

    t = time_call(fn, setup=setup, repeats=5, warmup=2)
    assert calls == {"setup": 7, "fn": 7} and t.runs == 5
    assert 0 <= t.min <= t.median <= t.max
    with pytest.raises(ValueError):
        time_call(lambda: None, repeats=0)
