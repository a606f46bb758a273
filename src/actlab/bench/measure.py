"""Timing and memory measurement primitives shared by the operator and training-step benchmarks.

Times are wall-clock medians over repeated runs after warm-up (with ``torch.cuda.synchronize``
on CUDA). Saved-tensor bytes are *measured*: every tensor autograd stores for backward passes
through :func:`torch.autograd.graph.saved_tensors_hooks`, and distinct storages are summed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["Timing", "time_call", "time_interleaved", "saved_tensor_bytes", "synchronize"]


@dataclass(frozen=True)
class Timing:
    """Median, minimum and maximum of repeated measurements, in milliseconds."""

    median: float
    min: float
    max: float
    runs: int

    def __str__(self) -> str:
        return f"{self.median:.3f} [{self.min:.3f}–{self.max:.3f}] ms"

    def as_dict(self) -> dict[str, float]:
        return {"median_ms": self.median, "min_ms": self.min, "max_ms": self.max, "runs": self.runs}


def synchronize(device: torch.device | str | None = None) -> None:
    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        torch.cuda.synchronize()


def time_call(
    fn: Callable[[], object],
    *,
    setup: Callable[[], object] | None = None,
    repeats: int = 20,
    warmup: int = 3,
    device: torch.device | str | None = None,
) -> Timing:
    """Time ``fn()`` ``repeats`` times; ``setup()`` runs untimed before each call.

    ``fn`` receives nothing: close over what it needs; when ``setup`` is given its result is
    passed instead (e.g. a freshly computed forward output whose backward is being timed).
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    samples: list[float] = []
    for i in range(warmup + repeats):
        arg = setup() if setup is not None else None
        synchronize(device)
        start = time.perf_counter()
        fn() if setup is None else fn(arg)  # type: ignore[call-arg]
        synchronize(device)
        if i >= warmup:
            samples.append((time.perf_counter() - start) * 1e3)
    return Timing(statistics.median(samples), min(samples), max(samples), len(samples))


def time_interleaved(
    calls: dict[str, tuple[Callable[[], object] | None, Callable[..., object]]],
    *,
    repeats: int = 20,
    warmup: int = 3,
    device: torch.device | str | None = None,
) -> dict[str, Timing]:
    """Time several calls side by side: round ``r`` runs every call once, in order.

    ``calls`` maps a name to ``(setup, fn)`` as in :func:`time_call` (``setup`` may be ``None``).
    On a shared or throttled machine, load changes over seconds; interleaving exposes every
    call to the same conditions, so ratios of medians are far more stable than ratios of
    separately timed blocks.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(warmup + repeats):
        for name, (setup, fn) in calls.items():
            arg = setup() if setup is not None else None
            synchronize(device)
            start = time.perf_counter()
            fn() if setup is None else fn(arg)
            synchronize(device)
            if i >= warmup:
                samples[name].append((time.perf_counter() - start) * 1e3)
            del arg
    return {
        name: Timing(statistics.median(v), min(v), max(v), len(v)) for name, v in samples.items()
    }


def saved_tensor_bytes(fn: Callable[[], object], *, exclude: tuple[torch.Tensor, ...] = ()) -> int:
    """Bytes of distinct storages autograd saves for backward while ``fn()`` runs.

    Tensors whose storage is one of ``exclude`` (e.g. module parameters) are not counted. Views of
    one storage count once, at the storage's size.
    """
    excluded = {t.untyped_storage().data_ptr() for t in exclude}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in excluded and ptr != 0:
            storages[ptr] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(storages.values())
