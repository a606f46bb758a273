"""Operator benchmark: each layer next to its reference, measured side by side in one run.

For every (shape, dtype) the cases are timed *interleaved* (each round runs every case once, see
:func:`actlab.bench.measure.time_interleaved`): forward (under ``no_grad``), backward (of a fresh
untimed forward) and forward+backward, each as the median with min–max over the rounds. The ratio
is forward+backward time over the reference case's, and "saved" is the bytes autograd keeps for
backward (measured with saved-tensor hooks, parameters excluded) in units of the input's size.

Cases whose name ends in ``_compiled`` run with the ``"compiled"`` backend of
:mod:`actlab.functional.backends` (for SAU and ASH on CPU the native kernels of
:mod:`actlab.functional.native`, otherwise the ``torch.compile`` kernels, compiled before timing);
``_inductor`` cases run the ``torch.compile`` kernels with the native ones turned off; the others
run eager.
``_naive`` cases are the layers written as plain compositions of torch ops (the unfused baseline).
``python -m actlab.bench ops``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from actlab.bench.measure import Timing, saved_tensor_bytes, time_interleaved
from actlab.functional import backends as layer_backend
from actlab.functional import native as native_kernels
from actlab.functional.agc import agc_reference
from actlab.functional.ash import ash_reference
from actlab.functional.sau import sau_reference
from actlab.nn.agc import AGC, AGCAct
from actlab.nn.ash import ASH
from actlab.nn.sau import SAU
from actlab.registry import default_groups

__all__ = [
    "OpCase",
    "OpResult",
    "OP_CASES",
    "run_ops",
    "format_ops",
    "naive_sau",
    "naive_ash",
    "naive_agc",
]


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


class _NaiveSAU(nn.Module):
    """``sau_reference`` with a learnable α (the layer's default configuration)."""

    def __init__(self) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(0.15))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sau_reference(x, self.alpha, 20000.0)


class _NaiveASH(nn.Module):
    """``ash_reference`` with learnable z and α (the layer's default configuration)."""

    def __init__(self) -> None:
        super().__init__()
        self.z = nn.Parameter(torch.tensor(0.0))
        self.alpha = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ash_reference(x, self.z, self.alpha)


class _NaiveAGC(nn.Module):
    def __init__(self, channels: int, act: bool = False) -> None:
        super().__init__()
        self.lam = nn.Parameter(torch.ones(channels))
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.act = act

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y = agc_reference(h, self.lam, self.weight, self.bias)
        return F.relu(y) if self.act else y


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
    backend: str = "eager"
    #: with ``backend="compiled"``: False times the torch.compile kernels with the native CPU
    #: kernels of :mod:`actlab.functional.native` turned off
    native: bool = True

    @contextlib.contextmanager
    def selected(self) -> Iterator[None]:
        """The backend (and kernel choice) this case runs under."""
        with layer_backend.backend(self.backend):
            if self.native:
                yield
            else:
                with native_kernels.disabled():
                    yield


def _bn_relu(c: int) -> nn.Module:
    return nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())


def _gn(c: int) -> nn.Module:
    return nn.GroupNorm(default_groups(c), c)


OP_CASES: list[OpCase] = [
    OpCase("gelu", "gelu", lambda c: nn.GELU()),
    OpCase("relu", "gelu", lambda c: nn.ReLU()),
    OpCase("silu", "silu", lambda c: nn.SiLU()),
    OpCase("sau", "gelu", lambda c: SAU(), note="autograd.Function, eager math"),
    OpCase("sau_compiled", "gelu", lambda c: SAU(), backend="compiled",
           note="native CPU kernel (else torch.compile)"),
    OpCase("sau_inductor", "gelu", lambda c: SAU(), note="torch.compile kernels",
           backend="compiled", native=False),
    OpCase("sau_naive", "gelu", lambda c: _NaiveSAU(), note="composition of torch ops"),
    OpCase("ash", "silu", lambda c: ASH(), note="autograd.Function, eager math"),
    OpCase("ash_compiled", "silu", lambda c: ASH(), backend="compiled",
           note="native CPU kernel (else torch.compile)"),
    OpCase("ash_inductor", "silu", lambda c: ASH(), note="torch.compile kernels",
           backend="compiled", native=False),
    OpCase("ash_naive", "silu", lambda c: _NaiveASH(), note="composition of torch ops"),
    OpCase("bn", "bn", nn.BatchNorm2d, group="norm", note="training mode"),
    OpCase("gn", "bn", _gn, group="norm"),
    OpCase("agc", "bn", AGC, group="norm", note="mean mode, eager math"),
    OpCase("agc_compiled", "bn", AGC, group="norm", note="fused kernels", backend="compiled"),
    OpCase("agc_naive", "bn", _NaiveAGC, group="norm", note="composition of torch ops"),
    OpCase("bn_relu", "bn_relu", _bn_relu, group="norm+act", note="BatchNorm2d then ReLU"),
    OpCase("agc_relu", "bn_relu", lambda c: nn.Sequential(AGC(c), nn.ReLU()), group="norm+act",
           note="AGC then ReLU, unfused"),
    OpCase("agc_act", "bn_relu", AGCAct, group="norm+act", note="fused AGC+ReLU, eager math"),
    OpCase("agc_act_compiled", "bn_relu", AGCAct, group="norm+act", note="fused kernels",
           backend="compiled"),
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
    backend: str = "eager"
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "reference": self.reference,
            "backend": self.backend,
            "note": self.note,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "forward": self.forward.as_dict(),
            "backward": self.backward.as_dict(),
            "forward_backward": self.total.as_dict(),
            "ratio_to_reference": self.ratio,
            "saved_bytes": self.saved_bytes,
            "saved_inputs": self.saved_bytes / self.input_bytes,
            **self.extra,
        }


@dataclass
class _Prepared:
    case: OpCase
    module: nn.Module
    x: torch.Tensor
    grad: torch.Tensor


def _prepare(case: OpCase, shape: tuple[int, ...], dtype: torch.dtype, device: str) -> _Prepared:
    torch.manual_seed(0)
    module = case.build(shape[1]).to(device)
    if dtype != torch.float32 and case.group != "activation":
        module = module.to(dtype)  # norms run in the input dtype, as under autocast-free training
    module.train()
    x = torch.randn(shape, device=device, dtype=dtype).requires_grad_(True)
    grad = torch.randn(shape, device=device, dtype=dtype)
    return _Prepared(case, module, x, grad)


def _calls(p: _Prepared) -> dict[str, tuple[Callable[[], object] | None, Callable[..., object]]]:
    module, x, grad, case = p.module, p.x, p.grad, p.case

    def fwd() -> None:
        with case.selected(), torch.no_grad():
            module(x)

    def setup() -> torch.Tensor:
        with case.selected():
            return module(x)

    def bwd(out: torch.Tensor) -> None:
        with case.selected():
            out.backward(grad)

    def fwd_bwd() -> None:
        with case.selected():
            module(x).backward(grad)

    return {"fwd": (None, fwd), "bwd": (setup, bwd), "total": (None, fwd_bwd)}


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
    results: list[OpResult] = []
    for shape in shapes:
        for dtype in dtypes:
            block = [_prepare(c, shape, dtype, device) for c in cases]
            calls: dict[str, tuple[Callable[[], object] | None, Callable[..., object]]] = {}
            for p in block:
                failures = len(layer_backend.compile_failures())
                for kind, call in _calls(p).items():
                    call[1]() if call[0] is None else call[1](call[0]())  # warm-up / compile
                    calls[f"{p.case.name}/{kind}"] = call
                if len(layer_backend.compile_failures()) > failures:
                    p.case = replace(p.case, note="COMPILE FAILED: eager")
            if progress:
                print(f"timing {len(block)} cases at {shape} {dtype} ...", flush=True)
            timings = time_interleaved(calls, repeats=repeats, device=device)
            for p in block:
                params = tuple(p.module.parameters())
                with p.case.selected():
                    saved = saved_tensor_bytes(lambda p=p: p.module(p.x), exclude=params)
                results.append(OpResult(
                    p.case.name, p.case.reference, shape, str(dtype).replace("torch.", ""),
                    timings[f"{p.case.name}/fwd"], timings[f"{p.case.name}/bwd"],
                    timings[f"{p.case.name}/total"], saved, p.x.numel() * p.x.element_size(),
                    backend=p.case.backend, note=p.case.note,
                ))
    index = {(r.case, r.shape, r.dtype): r for r in results}
    for r in results:
        ref = index[(r.reference, r.shape, r.dtype)]
        r.ratio = r.total.median / ref.total.median
    return results


def format_ops(results: list[OpResult], markdown: bool = False) -> str:
    """A table, one block per (shape, dtype); ``markdown=True`` for docs."""
    lines: list[str] = []
    blocks: dict[tuple[tuple[int, ...], str], list[OpResult]] = {}
    for r in results:
        blocks.setdefault((r.shape, r.dtype), []).append(r)
    for (shape, dtype), rows in blocks.items():
        title = f"shape {'×'.join(map(str, shape))}, {dtype}"
        if markdown:
            lines += [f"\n**{title}** (ms: median [min–max])\n",
                      "| layer | forward | backward | fwd+bwd | × ref | saved (× input) | note |",
                      "|---|---|---|---|---|---|---|"]
        else:
            header = (f"{'layer':<17} {'forward ms':>24} {'backward ms':>24} "
                      f"{'fwd+bwd ms':>24} {'× ref':>14} {'saved':>6}")
            lines += [f"\n{title}", header, "-" * len(header)]
        for r in rows:
            ratio = f"{r.ratio:.2f}× {r.reference}"
            saved = f"{r.saved_bytes / r.input_bytes:.2f}"
            if markdown:
                lines.append(f"| {r.case} | {r.forward} | {r.backward} | {r.total} | {ratio} | "
                             f"{saved} | {r.note} |")
            else:
                lines.append(f"{r.case:<17} {str(r.forward):>24} {str(r.backward):>24} "
                             f"{str(r.total):>24} {ratio:>14} {saved:>6}")
    return "\n".join(lines)
