"""Operator benchmark: each layer next to its reference, measured side by side in one run.

For every (layer, shape, dtype) the table gives forward, backward and forward+backward time
(median with min–max), the ratio of forward+backward time to the reference's, and the bytes
autograd saves for backward, in units of the input's size. ``python -m actlab.bench ops``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from actlab.bench.measure import Timing, saved_tensor_bytes, time_call
from actlab.registry import get_act, get_norm

__all__ = ["OpCase", "OP_CASES", "run_ops", "format_ops", "naive_sau", "naive_ash", "naive_agc"]


def naive_sau(x: torch.Tensor, alpha: float = 0.15, n: float = 20000.0) -> torch.Tensor:
    """SAU written as a plain composition of PyTorch ops (exact formula), the unfused baseline."""
    return (
        (1 - alpha) / (2 * n) * math.sqrt(2 / math.pi) * torch.exp(-((n * x) ** 2) / 2)
        + (1 + alpha) / 2 * x
        + (1 - alpha) / 2 * x * torch.erf(n * x / math.sqrt(2))
    )


def naive_ash(x: torch.Tensor, z: float = 0.0, alpha: float = 1.0) -> torch.Tensor:
    """ASH as a plain composition: per-sample mean/std over non-batch dims."""
    dims = tuple(range(1, x.dim()))
    mu = x.mean(dims, keepdim=True)
    sigma = torch.sqrt(x.var(dims, unbiased=False, keepdim=True) + 1e-5)
    return x * torch.sigmoid(2 * alpha * (x - mu - z * sigma))


def naive_agc(h: torch.Tensor, lam: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor):
    """AGC as a plain composition of PyTorch ops."""
    shape = (1, -1) + (1,) * (h.dim() - 2)
    m = h.mean(tuple(range(2, h.dim())), keepdim=True)
    return (h - lam.view(shape) * m) * gamma.view(shape) + beta.view(shape)


class _NaiveAGC(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.lam = nn.Parameter(torch.ones(channels))
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return naive_agc(h, self.lam, self.weight, self.bias)


class _Fn(nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


@dataclass(frozen=True)
class OpCase:
    """One benchmarked layer: ``build(channels)`` returns the module to time."""

    name: str
    reference: str
    build: Callable[[int], nn.Module]
    group: str = "activation"
    note: str = ""


def _act(name: str, **kw: Any) -> Callable[[int], nn.Module]:
    return lambda channels: get_act(name, **kw)


def _norm(name: str, **kw: Any) -> Callable[[int], nn.Module]:
    return lambda channels: get_norm(name, channels, **kw)


OP_CASES: list[OpCase] = [
    OpCase("gelu", "gelu", _act("gelu")),
    OpCase("relu", "gelu", _act("relu")),
    OpCase("silu", "gelu", _act("swish")),
    OpCase("leaky_relu", "gelu", _act("leaky_relu")),
    OpCase("sau", "gelu", _act("sau")),
    OpCase("sau_paper", "gelu", _act("sau_paper")),
    OpCase("sau_naive", "gelu", lambda c: _Fn(naive_sau), note="composition of torch ops"),
    OpCase("ash", "silu", _act("ash")),
    OpCase("ash_naive", "silu", lambda c: _Fn(naive_ash), note="composition of torch ops"),
    OpCase("bn", "bn", _norm("bn"), group="norm"),
    OpCase("gn", "bn", _norm("gn"), group="norm"),
    OpCase("agc", "bn", _norm("agc"), group="norm"),
    OpCase("agc_naive", "bn", _NaiveAGC, group="norm", note="composition of torch ops"),
]


@dataclass
class OpResult:
    case: str
    reference: str
    shape: tuple[int, ...]
    dtype: str
    forward: Timing
    backward: Timing
    total: Timing
    saved_bytes: int
    input_bytes: int
    ratio: float = float("nan")
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "reference": self.reference,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "forward": self.forward.as_dict(),
            "backward": self.backward.as_dict(),
            "forward_backward": self.total.as_dict(),
            "ratio_to_reference": self.ratio,
            "saved_bytes": self.saved_bytes,
            "saved_inputs": self.saved_bytes / self.input_bytes,
        }


def _measure(
    case: OpCase, shape: tuple[int, ...], dtype: torch.dtype, device: str, repeats: int
) -> OpResult:
    torch.manual_seed(0)
    module = case.build(shape[1]).to(device)
    if dtype != torch.float32 and case.group == "norm":
        module = module.to(dtype)
    module.train()
    x = torch.randn(shape, device=device, dtype=dtype).requires_grad_(True)
    grad = torch.randn(shape, device=device, dtype=dtype)
    params = tuple(module.parameters())

    def fwd() -> torch.Tensor:
        with torch.no_grad():
            return module(x)

    def fwd_bwd() -> None:
        module(x).backward(grad)

    def bwd(out: torch.Tensor) -> None:
        out.backward(grad)

    forward = time_call(fwd, repeats=repeats, device=device)
    backward = time_call(bwd, setup=lambda: module(x), repeats=repeats, device=device)
    total = time_call(fwd_bwd, repeats=repeats, device=device)
    saved = saved_tensor_bytes(lambda: module(x), exclude=params)
    return OpResult(
        case.name, case.reference, shape, str(dtype).replace("torch.", ""), forward, backward,
        total, saved, x.numel() * x.element_size(),
    )


def run_ops(
    cases: list[OpCase] | None = None,
    shapes: list[tuple[int, ...]] | None = None,
    dtypes: list[torch.dtype] | None = None,
    device: str = "cpu",
    repeats: int = 20,
    progress: bool = True,
) -> list[OpResult]:
    """Measure every case at every shape and dtype; ratios are to the case's reference."""
    cases = cases or OP_CASES
    shapes = shapes or [(32, 64, 32, 32)]
    dtypes = dtypes or [torch.float32]
    by_name = {c.name: c for c in cases}
    missing = {c.reference for c in cases} - set(by_name)
    if missing:
        raise ValueError(f"reference case(s) {sorted(missing)} are not in the case list")
    jobs = [(c, s, d) for s in shapes for d in dtypes for c in cases]
    try:
        from tqdm.auto import tqdm

        iterator = tqdm(jobs, desc="bench ops", disable=not progress, leave=False)
    except ImportError:  # pragma: no cover
        iterator = jobs
    results: list[OpResult] = []
    for case, shape, dtype in iterator:
        results.append(_measure(case, shape, dtype, device, repeats))
    index = {(r.case, r.shape, r.dtype): r for r in results}
    for r in results:
        ref = index[(r.reference, r.shape, r.dtype)]
        r.ratio = r.total.median / ref.total.median
    return results


def format_ops(results: list[OpResult]) -> str:
    """A plain-text table, one block per (shape, dtype)."""
    lines: list[str] = []
    blocks: dict[tuple[tuple[int, ...], str], list[OpResult]] = {}
    for r in results:
        blocks.setdefault((r.shape, r.dtype), []).append(r)
    header = (
        f"{'layer':<12} {'forward ms':>22} {'backward ms':>22} {'fwd+bwd ms':>22} "
        f"{'× ref':>12} {'saved (inputs)':>15}"
    )
    for (shape, dtype), rows in blocks.items():
        lines.append(f"\nshape {'×'.join(map(str, shape))}, {dtype}")
        lines.append(header)
        lines.append("-" * len(header))
        for r in rows:
            lines.append(
                f"{r.case:<12} {str(r.forward):>22} {str(r.backward):>22} {str(r.total):>22} "
                f"{r.ratio:>6.2f}× {r.reference:<5} {r.saved_bytes / r.input_bytes:>13.2f}"
            )
    return "\n".join(lines)
