r"""Which math the actlab layers run: eager PyTorch ops or ``torch.compile``-fused kernels.

Backends (:func:`set_backend`, the :func:`backend` context manager, or the environment variable
``ACTLAB_BACKEND`` read at import):

``"auto"`` (default)
    on CPU, SAU and ASH run the native kernels of :mod:`actlab.functional.native` (hand-written
    C, built once per machine in about a second and cached) for every input with at least
    :data:`AUTO_MIN_NUMEL` elements, from the first call: their build cost is paid back within a
    few training steps. Calls those kernels do not cover (AGC, float64, CUDA, a trainable SAU
    ``n``, ...) run eager math until compiling pays back, then the compiled kernels: a static
    configuration (one layer formula and direction, its flags, dtype and device) runs eagerly
    until it has processed :data:`AUTO_COMPILE_AFTER` elements, and only then compiles. That
    much eager math takes about as long as compiling it on a CPU (rent-or-buy rule: the time lost
    against the better choice stays around the compile cost), so short runs, tests and one-off
    calls never compile and long training gets the fused kernels. Inputs with fewer than
    :data:`AUTO_MIN_NUMEL` elements always run eagerly (and do not count). A training run
    starts the counts afresh (:func:`restart_auto`).
``"eager"``
    plain PyTorch ops; using a layer never triggers a compilation. Use it for bit-exact reference
    math and when comparing against runs made before ``"auto"`` became the default.
``"compiled"``
    the native CPU kernels where they cover the call, otherwise each layer's forward/backward
    formula (one function per layer and direction, in that layer's file under
    :mod:`actlab.functional`) compiled lazily with ``torch.compile(fullgraph=True)`` on first
    use; the compiled functions are cached here, one per static configuration.

Whatever the backend, eager math is used while tracing, scripting or exporting, inside an outer
``torch.compile`` (which fuses the eager ops itself), under ``torch.func`` transforms (the
compiler would see functorch's wrapped tensors), and after a compilation failed (one warning,
then eager for the rest of the process: :func:`compile_failures` lists the messages; the native
kernels, which need no compilation by torch, keep running).

Native, compiled and eager results agree to about 1e-6 relative in float32, not bitwise (the
CPU float32 kernels' cheaper ``erf`` and the native ones' polynomial ``exp``, a different
summation order), so a training trajectory
depends on the backend: the experiment system records it per run (``TrainConfig.layer_backend``).
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
    "DEFAULT_BACKEND",
    "AUTO_MIN_NUMEL",
    "AUTO_COMPILE_AFTER",
    "set_backend",
    "get_backend",
    "backend",
    "exporting",
    "transforming",
    "use_compiled",
    "restart_auto",
    "auto_progress",
    "restore_auto_progress",
    "compile_failures",
    "reset_compiled",
    "run_compiled",
    "composition_only",
    "first_order_only",
]

BACKENDS = ("eager", "compiled", "auto")
#: the backend when neither ``ACTLAB_BACKEND`` nor :func:`set_backend` chose one
DEFAULT_BACKEND = "auto"
#: smallest input (elements) for which the ``"auto"`` backend uses a compiled kernel
AUTO_MIN_NUMEL = 1 << 16
#: elements a static configuration processes eagerly under ``"auto"`` before it compiles
#: (2**30: 4-13 s of eager forward or backward math on one CPU thread, between what compiling
#: that direction costs with a warm and with a cold inductor cache; see docs/PERFORMANCE.md)
AUTO_COMPILE_AFTER = 1 << 30


def _initial_backend() -> str:
    raw = os.environ.get("ACTLAB_BACKEND", "")
    name = raw.strip().lower() or DEFAULT_BACKEND
    if name not in BACKENDS:
        warnings.warn(
            f"ACTLAB_BACKEND={raw!r} is not one of {BACKENDS}; using {DEFAULT_BACKEND!r}",
            stacklevel=2,
        )
        return DEFAULT_BACKEND
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


def transforming() -> bool:
    """Whether a ``torch.func`` transform (vmap, grad, jvp, ...) is active.

    Inside an ``autograd.Function``'s forward under ``grad`` / ``jvp`` (and ``jacrev``,
    ``jacfwd``, ``hessian``) functorch has lowered its level, so the interpreter stack looks
    empty; the single-level-function flag it sets meanwhile still tells.
    """
    if torch.compiler.is_compiling():
        # dynamo cannot trace functorch's flag; it traces the eager composition anyway
        return False
    functorch = torch._C._functorch
    return bool(torch._C._are_functorch_transforms_active()
                or functorch.get_single_level_autograd_function_allowed())


def use_compiled(x: Tensor) -> bool:
    """Whether the compiled kernels may run for input ``x`` right now (under ``"auto"``,
    :func:`run_compiled` still runs eager math until the configuration's budget is spent)."""
    if _backend == "eager":
        return False
    if _backend == "auto" and x.numel() < AUTO_MIN_NUMEL:
        return False
    if x.device.type not in ("cpu", "cuda"):
        return False
    return not exporting() and not transforming()


# ---------------------------------------------------------------------------------------------
# lazy compilation with one cache per static configuration
# ---------------------------------------------------------------------------------------------
_failures: list[str] = []
_compiled: dict[tuple[Any, ...], Callable[..., Any]] = {}
#: elements each static configuration has run eagerly under ``"auto"`` (until it compiles)
_eager_work: dict[tuple[Any, ...], int] = {}
_restored: dict[str, int] = {}  # budgets read from a checkpoint, by repr(key)


def compile_failures() -> list[str]:
    """Messages of the compilations that failed (after which eager math is used)."""
    return list(_failures)


def reset_compiled() -> None:
    """Forget compiled kernels, failures and the ``"auto"`` budgets spent (e.g. after changing
    inductor settings)."""
    _compiled.clear()
    _failures.clear()
    _eager_work.clear()
    _restored.clear()


def auto_progress() -> dict[str, int]:
    """The eager work each configuration has done towards its ``"auto"`` budget (elements), keyed
    by the configuration's text form: a training checkpoint stores it so that a resumed run
    switches to the compiled kernels at the same step as an uninterrupted one."""
    progress = {repr(key): done for key, done in _eager_work.items()}
    progress.update(_restored)  # restored budgets not reached again yet
    return progress


def restore_auto_progress(progress: dict[str, int]) -> None:
    """Set every ``"auto"`` budget to the work of :func:`auto_progress` (replacing what this
    process has spent so far); configurations not in ``progress`` start afresh."""
    _eager_work.clear()
    _restored.clear()
    _restored.update({str(k): int(v) for k, v in progress.items()})


def restart_auto() -> None:
    """Start every ``"auto"`` budget afresh (compiled kernels are kept, but not used until a
    configuration has spent its budget again).

    A training run calls this first, so that which steps run compiled depends only on the run
    itself, not on what the process ran before (a sweep cell gives the same numbers in any
    worker).
    """
    _eager_work.clear()
    _restored.clear()


def _fresh_copy(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A copy of ``fn`` with its own code object.

    Dynamo keeps its cache of compiled graphs (and its recompilation limit) per code object; a
    copy per static configuration keeps, e.g., the float16 kernels from evicting the float32
    ones.
    """
    code = fn.__code__.replace()
    return types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


def run_compiled(
    fn: Callable[..., Any], key: tuple[Any, ...], *args: Any,
    kernel: Callable[[], Any] | None = None,
) -> Any:
    """Run the compiled version of ``fn`` for this static ``key``; ``None`` when the caller
    should run eager math instead: the compilation failed (now or before), or under ``"auto"``
    the configuration has not yet processed :data:`AUTO_COMPILE_AFTER` elements (the first
    argument's ``numel()`` is added to its count on each such call).

    ``kernel``: a call of a hand-written kernel (:mod:`actlab.functional.native`) tried first;
    its result is returned unless it is ``None`` (a call it does not cover). It has no budget and
    keeps running after a compilation failed: it needs no compiler of torch's."""
    if kernel is not None:
        out = kernel()
        if out is not None:
            return out
    if _failures:
        return None
    full_key = (fn.__name__, *key)
    if _backend == "auto":
        done = _eager_work.get(full_key)
        if done is None:
            done = _restored.pop(repr(full_key), 0)
        if done < AUTO_COMPILE_AFTER:
            first = args[0] if args and isinstance(args[0], Tensor) else None
            _eager_work[full_key] = done + (first.numel() if first is not None else 1)
            return None
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
