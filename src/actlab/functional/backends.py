r"""Which math the actlab layers run: eager PyTorch ops or ``torch.compile``-fused kernels.

Backends (:func:`set_backend`, the :func:`backend` context manager, or the environment variable
``ACTLAB_BACKEND`` read at import):

``"eager"`` (default)
    plain PyTorch ops; using a layer never triggers a compilation.
``"compiled"``
    each layer's forward/backward formula (one function per layer and direction, in that layer's
    file under :mod:`actlab.functional`) compiled lazily with ``torch.compile(fullgraph=True)``
    on first use; the compiled functions are cached here, one per static configuration.
``"auto"``
    compiled kernels for tensors with at least :data:`AUTO_MIN_NUMEL` elements, eager otherwise.

Whatever the backend, eager math is used while tracing, scripting or exporting, inside an outer
``torch.compile`` (which fuses the eager ops itself), and after a compilation failed (one
warning, then eager for the rest of the process: :func:`compile_failures` lists the messages).
"""

from __future__ import annotations

import contextlib
import os
import types
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "BACKENDS",
    "AUTO_MIN_NUMEL",
    "set_backend",
    "get_backend",
    "backend",
    "exporting",
    "use_compiled",
    "compile_failures",
    "reset_compiled",
    "run_compiled",
    "composition_only",
    "first_order_only",
]

BACKENDS = ("eager", "compiled", "auto")
#: smallest input (elements) for which the ``"auto"`` backend uses a compiled kernel
AUTO_MIN_NUMEL = 1 << 16


def _initial_backend() -> str:
    name = os.environ.get("ACTLAB_BACKEND", "eager").strip().lower() or "eager"
    if name not in BACKENDS:
        warnings.warn(
            f"ACTLAB_BACKEND={name!r} is not one of {BACKENDS}; using 'eager'", stacklevel=2
        )
        return "eager"
    return name


_backend = _initial_backend()


def set_backend(name: str) -> None:
    """Select ``"eager"``, ``"compiled"`` or ``"auto"`` for SAU, ASH and AGC (process-wide)."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    _backend = name


def get_backend() -> str:
    """The current backend name."""
    return _backend


@contextlib.contextmanager
def backend(name: str) -> Iterator[None]:
    """Context manager that selects a backend and restores the previous one on exit."""
    previous = _backend
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def exporting() -> bool:
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return True
    if torch.compiler.is_compiling():
        return True
    onnx = getattr(torch, "onnx", None)
    return bool(onnx is not None and onnx.is_in_onnx_export())


def composition_only() -> bool:
    """Whether a layer should record its formula's plain ops instead of its autograd.Function:
    while ``torch.jit.trace``, ONNX export, ``torch.export`` or an outer ``torch.compile`` build
    a graph of ATen ops (dynamo cannot inline a Function with a custom ``jvp``; AOTAutograd
    differentiates the formula and inductor fuses it)."""
    return (
        torch.jit.is_tracing()
        or torch.compiler.is_compiling()
        or torch.onnx.is_in_onnx_export()
    )


def first_order_only() -> bool:
    """Whether a backward may skip recording a graph: no ``create_graph`` and no ``torch.func``
    transform active (those need a differentiable backward)."""
    return not torch.is_grad_enabled() and not torch._C._are_functorch_transforms_active()


def use_compiled(x: Tensor) -> bool:
    """Whether the fused compiled kernels should run for input ``x`` right now."""
    if _backend == "eager":
        return False
    if _backend == "auto" and x.numel() < AUTO_MIN_NUMEL:
        return False
    if x.device.type not in ("cpu", "cuda"):
        return False
    return not exporting()


# ---------------------------------------------------------------------------------------------
# lazy compilation with one cache per static configuration
# ---------------------------------------------------------------------------------------------
_failures: list[str] = []
_compiled: dict[tuple[Any, ...], Callable[..., Any]] = {}


def compile_failures() -> list[str]:
    """Messages of the compilations that failed (after which eager math is used)."""
    return list(_failures)


def reset_compiled() -> None:
    """Forget compiled kernels and failures (e.g. after changing inductor settings)."""
    _compiled.clear()
    _failures.clear()


def _fresh_copy(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A copy of ``fn`` with its own code object.

    Dynamo keeps its cache of compiled graphs (and its recompilation limit) per code object; a
    copy per static configuration keeps, e.g., the float16 kernels from evicting the float32
    ones.
    """
    code = fn.__code__.replace()
    return types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


def run_compiled(fn: Callable[..., Any], key: tuple[Any, ...], *args: Any) -> Any:
    """Run the compiled version of ``fn`` for this static ``key``; ``None`` if it failed."""
    if _failures:
        return None
    full_key = (fn.__name__, *key)
    compiled = _compiled.get(full_key)
    if compiled is None:
        compiled = torch.compile(_fresh_copy(fn), fullgraph=True)
        _compiled[full_key] = compiled
    try:
        return compiled(*args)
    except Exception as err:  # noqa: BLE001 - any compiler error means: use eager math
        message = f"{fn.__name__}: {type(err).__name__}: {err}"
        _failures.append(message)
        warnings.warn(
            f"actlab: compiling the fused kernel failed, using eager math from now on ({message})",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
