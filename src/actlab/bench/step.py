"""Training-step benchmark: time and memory of one SGD step of a small ResNet per layer choice.

Each configuration is a ``small_resnet`` (ResNet-8 of :mod:`actlab.models`, width 16 by default)
with one activation (``relu``, ``sau``, ``ash``) and one normalisation (``bn``, ``agc``,
``agc_act``) everywhere, run eager or with the ``"compiled"`` backend of
:mod:`actlab.functional.backends`. ``agc_act`` is the ReLU/AGC network with every ``norm → act``
pair (stem and first convolution of each block) replaced by the fused :class:`AGCAct`; the
norms not followed by an activation stay plain AGC, so the function is the same as ``agc``.

A step is ``zero_grad``, forward, cross-entropy, backward and an SGD (momentum) update; steps of
all configurations are interleaved and the median is reported with its ratio to the reference
configuration (ReLU + BN, eager).

Memory: on CUDA, ``torch.cuda.max_memory_allocated`` over a step. On CPU there is no allocator
peak counter for torch tensors, so the table gives what dominates a training step's peak and can
be measured exactly: the bytes autograd saves during the forward pass (saved-tensor hooks,
parameters excluded) and the bytes of parameters + gradients + momentum buffers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from actlab.bench.measure import Timing, saved_tensor_bytes, synchronize, time_interleaved
from actlab.functional import backends as layer_backend
from actlab.models import small_resnet
from actlab.nn.agc import AGC, AGCAct
from actlab.nn.ash import ASH
from actlab.nn.sau import SAU

__all__ = ["StepConfig", "STEP_CONFIGS", "StepResult", "build_model", "fuse_agc_act",
           "run_step", "format_step"]

_ACTS: dict[str, Callable[..., nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "sau": lambda: SAU(),
    "ash": lambda: ASH(),
    "gelu": lambda: nn.GELU(),  # native-op context for SAU
    "silu": lambda: nn.SiLU(inplace=True),  # native-op context for ASH
}
_NORMS: dict[str, Callable[..., nn.Module]] = {
    "bn": lambda c, dim=2: nn.BatchNorm2d(c),
    "agc": lambda c, dim=2: AGC(c),
    "agc_act": lambda c, dim=2: AGC(c),  # fused afterwards by fuse_agc_act
}


@dataclass(frozen=True)
class StepConfig:
    act: str
    norm: str
    backend: str = "eager"

    @property
    def name(self) -> str:
        suffix = "" if self.backend == "eager" else f"[{self.backend}]"
        return f"{self.act}/{self.norm}{suffix}"


STEP_CONFIGS: list[StepConfig] = [
    StepConfig("relu", "bn"),
    StepConfig("sau", "bn"),
    StepConfig("sau", "bn", "compiled"),
    StepConfig("ash", "bn"),
    StepConfig("ash", "bn", "compiled"),
    StepConfig("relu", "agc"),
    StepConfig("relu", "agc", "compiled"),
    StepConfig("relu", "agc_act"),
    StepConfig("relu", "agc_act", "compiled"),
    StepConfig("sau", "agc", "compiled"),
    StepConfig("gelu", "bn"),
    StepConfig("silu", "bn"),
]


def fuse_agc_act(model: nn.Module) -> nn.Module:
    """Replace every ``Sequential(..., norm=AGC, act=ReLU)`` pair by ``AGCAct`` + identity.

    Parameters (λ, γ, β) are copied, so the network computes the same function (up to AGCAct's
    clamp of ``|γ|`` at ``eps``). Works on the ``conv → norm → act`` blocks of actlab.models.
    """
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = dict(module.named_children())
        norm, act = names.get("norm"), names.get("act")
        if isinstance(norm, AGC) and norm.mode == "mean" and isinstance(act, nn.ReLU):
            fused_layer = AGCAct(norm.num_features, act="relu", lam_init=norm.lam_init,
                                 affine=norm.affine, learn_lam=isinstance(norm.lam, nn.Parameter))
            fused_layer.load_state_dict(norm.state_dict())
            module.norm = fused_layer.to(norm.lam.device)
            module.act = nn.Identity()
    return model


def build_model(config: StepConfig, width: int = 16, depth: int = 8) -> nn.Module:
    """The ResNet of one configuration (see the module docstring)."""
    if config.act not in _ACTS or config.norm not in _NORMS:
        raise ValueError(f"unknown configuration {config}; acts {sorted(_ACTS)}, "
                         f"norms {sorted(_NORMS)}")
    if config.norm == "agc_act" and config.act != "relu":
        raise ValueError("agc_act fuses AGC with ReLU; use act='relu'")
    model = small_resnet(depth=depth, act=_ACTS[config.act], norm=_NORMS[config.norm], width=width)
    if config.norm == "agc_act":
        fuse_agc_act(model)
    return model


@dataclass
class StepResult:
    config: StepConfig
    time: Timing
    saved_bytes: int
    state_bytes: int
    peak_bytes: int | None
    ratio: float = float("nan")
    saved_ratio: float = float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.name,
            "act": self.config.act,
            "norm": self.config.norm,
            "backend": self.config.backend,
            "step": self.time.as_dict(),
            "ratio_to_reference": self.ratio,
            "saved_bytes": self.saved_bytes,
            "saved_ratio_to_reference": self.saved_ratio,
            "param_grad_momentum_bytes": self.state_bytes,
            "cuda_peak_bytes": self.peak_bytes,
        }


def _state_bytes(model: nn.Module) -> int:
    return 3 * sum(p.numel() * p.element_size() for p in model.parameters())


def run_step(
    configs: list[StepConfig] | None = None,
    batch: int = 64,
    image: int = 32,
    width: int = 16,
    device: str = "cpu",
    repeats: int = 20,
    progress: bool = True,
) -> list[StepResult]:
    """Interleaved training-step timing of every configuration; ratios to the first one."""
    configs = configs or STEP_CONFIGS
    torch.manual_seed(0)
    x = torch.randn(batch, 3, image, image, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    calls: dict[str, tuple[None, Callable[[], object]]] = {}
    models: dict[str, nn.Module] = {}
    for config in configs:
        torch.manual_seed(0)
        model = build_model(config, width=width).to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step(model: nn.Module = model, opt: torch.optim.Optimizer = opt,
                 backend: str = config.backend) -> None:
            with layer_backend.backend(backend):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
                opt.step()

        if progress:
            print(f"warming up {config.name} ...", flush=True)
        for _ in range(2):
            step()  # compiles the fused kernels where the backend asks for them
        calls[config.name] = (None, step)
        models[config.name] = model
    if progress:
        print(f"timing {len(calls)} configurations ...", flush=True)
    timings = time_interleaved(calls, repeats=repeats, device=device)
    results = []
    for config in configs:
        model = models[config.name]
        params = tuple(model.parameters())
        with layer_backend.backend(config.backend):
            saved = saved_tensor_bytes(lambda m=model: F.cross_entropy(m(x), y), exclude=params)
            peak = None
            if device.startswith("cuda"):
                synchronize(device)
                torch.cuda.reset_peak_memory_stats()
                calls[config.name][1]()
                synchronize(device)
                peak = torch.cuda.max_memory_allocated()
        results.append(StepResult(config, timings[config.name], saved, _state_bytes(model), peak))
    ref = results[0]
    for r in results:
        r.ratio = r.time.median / ref.time.median
        r.saved_ratio = r.saved_bytes / ref.saved_bytes
    return results


def format_step(results: list[StepResult], markdown: bool = False) -> str:
    ref = results[0].config.name
    mib = 1 << 20
    if markdown:
        lines = [f"| act/norm[backend] | step ms: median [min–max] | × {ref} | saved MiB | "
                 f"saved × {ref} | params+grads+momentum MiB | CUDA peak MiB |",
                 "|---|---|---|---|---|---|---|"]
    else:
        lines = [f"{'act/norm[backend]':<24} {'step ms':>26} {'× ref':>7} {'saved MiB':>10} "
                 f"{'× ref':>7} {'state MiB':>10} {'peak MiB':>9}"]
    for r in results:
        peak = "n/a" if r.peak_bytes is None else f"{r.peak_bytes / mib:.1f}"
        cells = (r.config.name, str(r.time), f"{r.ratio:.2f}", f"{r.saved_bytes / mib:.2f}",
                 f"{r.saved_ratio:.2f}", f"{r.state_bytes / mib:.2f}", peak)
        if markdown:
            lines.append("| " + " | ".join(cells) + " |")
        else:
            lines.append(f"{cells[0]:<24} {cells[1]:>26} {cells[2]:>7} {cells[3]:>10} "
                         f"{cells[4]:>7} {cells[5]:>10} {cells[6]:>9}")
    return "\n".join(lines)
