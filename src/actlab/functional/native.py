r"""Hand-written CPU kernels for SAU and ASH, built on first use with the system C compiler.

The kernels (``csrc/actlab_cpu.c``, which includes ``csrc/kernels.inc`` once per storage type)
are plain C loops that the compiler vectorises, with OpenMP threads over pieces whose boundaries
do not depend on the thread count (results are bitwise the same for any
``torch.get_num_threads()``). Each direction of each layer is one pass over memory per sample or
row instead of the several passes of eager PyTorch ops; ASH's per-sample statistics and gate are
computed while a sample is still in cache (what ``torch.compile``'s kernels do not manage), and
SAU takes a leaky-ReLU short path for every block of 64 elements whose ``|n·x|/√2`` is at least
√50, where its exponential is 0 and its erf ±1 in the full formula too (bitwise the same values;
with the paper's n = 20000 that is every block without an ``|x| < 3.6e-4``).

They cover the common cases:

- SAU, exact or paper formula, not zero-centred, float32 or bfloat16 input (float32 math),
  α and n scalars or one value per channel, gradients for x and α (not n);
- ASH (and its leaky variants), statistics over every non-batch dim, float32 or bfloat16
  input, z and α scalars or one value per channel of dim 1.

(Parameters may be float32 or half precision; they are read as float32.)

Inputs must be contiguous, or channels-last (4-D / 5-D) with scalar parameters. Everything else
(float64, CUDA, a trainable ``n``, zero-centred SAU, other statistics dims, other strides)
returns ``None`` here and runs the ``torch.compile`` kernels or eager math.

The math is the same as the layers' formulas (:mod:`actlab.functional.sau`,
:mod:`actlab.functional.ash`) except for two documented approximations, both also used by the
compiled float32 kernels: ``exp`` is Cephes' polynomial (≈1 ulp; exactly 0 below −87, so no
subnormal results) and ``erf`` is Abramowitz & Stegun 7.1.26 (absolute error ≤ 6e-7). ASH's
statistics are summed in float32 blocks of 4096 elements accumulated in float64.

Build: ``cc -O3 -march=native -fopenmp`` (plus ``-mprefer-vector-width=512`` on AVX-512
CPUs), about 1 s, cached in ``$ACTLAB_KERNEL_CACHE`` (default
``$XDG_CACHE_HOME/actlab/kernels`` or ``~/.cache/actlab/kernels``) under a hash of the source,
the flags, the compiler and the CPU's feature flags; concurrent builds (sweep workers) write to
temporary names and rename atomically. ``ACTLAB_NATIVE=0`` turns the kernels off; when no
compiler works, one warning is given and the other paths are used (:func:`build_error`).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "available",
    "build_error",
    "describe",
    "disabled",
    "library_path",
    "sau_forward",
    "sau_backward",
    "ash_forward",
    "ash_backward",
]

_SOURCE = Path(__file__).with_name("csrc") / "actlab_cpu.c"
_INCLUDES = (_SOURCE.with_name("kernels.inc"),)
_BASE_FLAGS = [
    "-O3", "-fPIC", "-shared", "-fopenmp",
    # no -ffast-math / -fassociative-math: IEEE inf/NaN semantics and the source's grouping
    # (overflow-safe halves) are kept; sums are vectorised by `omp simd reduction` pragmas
    "-fno-math-errno", "-fno-trapping-math",
]
#: rows of a scalar-parameter SAU pass (fixed, so that sums do not depend on the thread count)
SAU_ROW = 16384

_lib: ctypes.CDLL | None = None
_tried = False
_error: str | None = None
_enabled = os.environ.get("ACTLAB_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _cache_dir() -> Path:
    """``$ACTLAB_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/actlab/kernels`` (``~/.cache/...``);
    when that cannot be created or written (a read-only home), a per-user folder in the
    system's temporary directory."""
    explicit = os.environ.get("ACTLAB_KERNEL_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    preferred = Path(base) / "actlab" / "kernels"
    try:
        preferred.mkdir(parents=True, exist_ok=True)
        if os.access(preferred, os.W_OK):
            return preferred
    except OSError:
        pass
    user = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"actlab-kernels-{user}"


def _compiler() -> str | None:
    for name in (os.environ.get("CC", ""), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def _flag_sets(cpu_flags: str) -> list[list[str]]:
    native = ["-march=native"]
    if "avx512f" in cpu_flags.split():
        native.append("-mprefer-vector-width=512")
    serial = [flag for flag in _BASE_FLAGS if flag != "-fopenmp"]
    # fallbacks: a compiler that rejects -march=native, then one without OpenMP (one thread)
    return [_BASE_FLAGS + native, _BASE_FLAGS, serial]


def library_path() -> Path | None:
    """Where the built library is (``None`` before a successful build)."""
    return None if _lib is None else Path(_lib._name)


def build_error() -> str | None:
    """Why the kernels are unavailable (``None`` if they built, or were not tried yet)."""
    return _error


def _build() -> ctypes.CDLL:
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set CC, or install gcc or clang)")
    source = b"\0".join(path.read_bytes() for path in (_SOURCE, *_INCLUDES))
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    cpu = _cpu_flags()
    cache = _cache_dir()
    last_error = ""
    for flags in _flag_sets(cpu):
        digest = hashlib.sha256(
            b"\0".join([source, " ".join(flags).encode(), version.stdout.encode(), cpu.encode()])
        ).hexdigest()[:20]
        target = cache / f"actlab_cpu_{digest}.so"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
            os.close(fd)
            done = subprocess.run(
                [cc, *flags, str(_SOURCE), "-o", tmp, "-lm"],
                capture_output=True, text=True, timeout=300,
            )
            if done.returncode != 0:
                os.unlink(tmp)
                last_error = done.stderr.strip().splitlines()[-1:] or [f"rc {done.returncode}"]
                last_error = f"{cc} failed: {last_error[0]}"
                continue
            os.replace(tmp, target)  # atomic: concurrent builders never see a partial file
        lib = ctypes.CDLL(str(target))
        _declare(lib)
        return lib
    raise RuntimeError(last_error or "build failed")


def _declare(lib: ctypes.CDLL) -> None:
    p, i64, f32, i32 = ctypes.c_void_p, ctypes.c_long, ctypes.c_float, ctypes.c_int
    for sfx in ("f32", "bf16"):
        getattr(lib, f"sau_fwd_{sfx}").argtypes = [p, p, i64, i64, i64, p, p, i32, i32]
        getattr(lib, f"sau_bwd_{sfx}").argtypes = [p, p, p, p, i64, i64, i64, p, p, i32, i32]
        getattr(lib, f"ash_fwd_{sfx}").argtypes = [
            p, p, p, p, i64, i64, i64, p, p, f32, f32, i32]
        bwd = getattr(lib, f"ash_bwd_{sfx}")
        bwd.argtypes = [p, p, p, p, p, p, p, i64, i64, i64, p, p, f32, i32]
        bwd.restype = i32
        for name in ("sau_fwd", "sau_bwd", "ash_fwd"):
            getattr(lib, f"{name}_{sfx}").restype = None


def _library() -> ctypes.CDLL | None:
    global _lib, _tried, _error
    if not _enabled:
        return None
    if not _tried:
        _tried = True
        try:
            _lib = _build()
        except Exception as err:  # noqa: BLE001 - any build problem means: use the other paths
            _error = f"{type(err).__name__}: {err}"
            warnings.warn(
                f"actlab: the native CPU kernels could not be built ({_error}); SAU and ASH use "
                "the torch.compile kernels or eager math instead",
                RuntimeWarning,
                stacklevel=4,
            )
    return _lib


def available() -> bool:
    """Whether the kernels are enabled and built (builds them on the first call)."""
    return _library() is not None


def describe() -> str:
    """One line for run records: the library file in use, or why the kernels are not used
    (builds them on the first call)."""
    if not _enabled:
        return "off (ACTLAB_NATIVE=0 or native.disabled())"
    if _library() is None:
        return f"unavailable: {_error}"
    return Path(_lib._name).name  # type: ignore[union-attr]


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Turn the native kernels off inside the block (e.g. to benchmark the inductor kernels)."""
    global _enabled
    previous = _enabled
    _enabled = False
    try:
        yield
    finally:
        _enabled = previous


# ---------------------------------------------------------------------------------------------
# argument layout
# ---------------------------------------------------------------------------------------------
_SUFFIX = {torch.float32: "f32", torch.bfloat16: "bf16"}


def _ptr(t: Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def _memory_format(x: Tensor) -> torch.memory_format | None:
    """How ``x``'s elements lie in memory when the kernels can read it as one dense block:
    contiguous, or channels-last (4-D) / channels-last-3d (5-D); ``None`` otherwise."""
    if x.device.type != "cpu" or x.dtype not in _SUFFIX or x.numel() == 0:
        return None
    if x.is_contiguous():
        return torch.contiguous_format
    for fmt, nd in ((torch.channels_last, 4), (torch.channels_last_3d, 5)):
        if x.dim() == nd and x.is_contiguous(memory_format=fmt):
            return fmt
    return None


def _layout_ok(x: Tensor, channel_dim: int | None) -> bool:
    """Whether ``x`` can be read as one dense block: channels-last storage only with scalar
    parameters (``channel_dim == -1``), where the order of elements inside a sample does not
    matter; per-channel parameters need the contiguous (N, C, ...) order."""
    fmt = _memory_format(x)
    return fmt is torch.contiguous_format or (fmt is not None and channel_dim == -1)


def _like_x(grad: Tensor, x: Tensor) -> Tensor:
    """``grad`` laid out like ``x`` (e.g. the expanded gradient of a sum, or another format)."""
    fmt = _memory_format(x)
    return grad.contiguous(memory_format=fmt or torch.contiguous_format)


def _channel_dim(p: Tensor, x: Tensor) -> int | None:
    """``-1`` for a one-element parameter (any dtype but float64), ``d`` for one value per
    channel of dim ``d`` of ``x`` (any broadcastable layout), else ``None``."""
    if p.dtype == torch.float64 or p.device.type != "cpu" or p.dim() > x.dim():
        return None
    if p.numel() == 1:
        return -1
    shape = (1,) * (x.dim() - p.dim()) + tuple(p.shape)
    wide = [d for d, size in enumerate(shape) if size != 1]
    if len(wide) != 1 or shape[wide[0]] != x.shape[wide[0]]:
        return None
    return wide[0]


def _groups(x: Tensor, *params: Tensor) -> tuple[int, list[Tensor]] | None:
    """The channel dim shared by the per-channel ``params`` (``-1``: all scalars) and the
    params as contiguous float32 vectors of one value per group."""
    dims = [_channel_dim(p, x) for p in params]
    if any(d is None for d in dims):
        return None
    wide = {d for d in dims if d != -1}
    if len(wide) > 1:
        return None
    d = wide.pop() if wide else -1
    groups = 1 if d == -1 else x.shape[d]
    flat = [
        p.detach().reshape(-1)  # a view
        if p.dtype == torch.float32 and p.numel() == groups and p.is_contiguous()
        else p.detach().reshape(-1).to(torch.float32).expand(groups).contiguous()
        for p in params
    ]  # only read through their data pointers
    return d, flat


def _kernel(name: str, x: Tensor, layout: object) -> Any:
    """The C function ``name`` for ``x``'s storage type when the call has a layout the kernels
    take (``layout`` not ``None``; the library is built on first use), else ``None``."""
    lib = None if layout is None else _library()
    return None if lib is None else getattr(lib, f"{name}_{_SUFFIX[x.dtype]}")


def _threads() -> ctypes.c_int:
    return ctypes.c_int(max(1, torch.get_num_threads()))


# ---------------------------------------------------------------------------------------------
# SAU
# ---------------------------------------------------------------------------------------------
def _sau_layout(x: Tensor, alpha: Tensor, n: Tensor) -> tuple[int, int, list[Tensor]] | None:
    """``(row length, groups, [α, n])`` or ``None``."""
    if _memory_format(x) is None:
        return None
    grouped = _groups(x, alpha, n)
    if grouped is None or not _layout_ok(x, grouped[0]):
        return None
    d, (a, nn) = grouped
    if d == -1:
        return SAU_ROW, 1, [a, nn]
    inner = 1
    for size in x.shape[d + 1:]:
        inner *= size
    return inner, x.shape[d], [a, nn]


def sau_forward(
    x: Tensor, alpha: Tensor, n: Tensor, paper: bool, zero_centred: bool
) -> Tensor | None:
    """SAU's forward by the native kernel, or ``None`` when it does not cover the call."""
    layout = None if zero_centred else _sau_layout(x, alpha, n)
    kernel = _kernel("sau_fwd", x, layout)
    if kernel is None or layout is None:
        return None
    row, groups, (a, nn) = layout
    y = torch.empty_like(x)
    kernel(_ptr(x), _ptr(y), x.numel(), row, groups, _ptr(a), _ptr(nn), int(paper), _threads())
    return y


def sau_backward(
    grad: Tensor, x: Tensor, alpha: Tensor, n: Tensor, paper: bool, zero_centred: bool,
    need_x: bool, need_alpha: bool, need_n: bool,
) -> tuple[Tensor | None, Tensor | None, Tensor | None] | None:
    """``(∂L/∂x, ∂L/∂α, None)`` by the native kernel, or ``None`` when it does not cover the
    call (zero-centred, a gradient for ``n``, another layout)."""
    covered = not (zero_centred or need_n) and (need_x or need_alpha)
    if not covered or grad.dtype != x.dtype or grad.shape != x.shape:
        return None
    layout = _sau_layout(x, alpha, n)
    kernel = _kernel("sau_bwd", x, layout)
    if kernel is None or layout is None:
        return None
    row, groups, (a, nn) = layout
    grad = _like_x(grad, x)
    rows = -(-x.numel() // row)
    gx = torch.empty_like(x) if need_x else None
    rows_sum = torch.empty(rows, dtype=torch.float64) if need_alpha else None
    kernel(
        _ptr(grad), _ptr(x), None if gx is None else _ptr(gx),
        None if rows_sum is None else _ptr(rows_sum), x.numel(), row, groups, _ptr(a), _ptr(nn),
        int(paper), _threads(),
    )
    galpha = None
    if rows_sum is not None:  # rows cycle through the groups
        galpha = _to_param(rows_sum.view(-1, groups).sum(0), alpha)
    return gx, galpha, None


# ---------------------------------------------------------------------------------------------
# ASH
# ---------------------------------------------------------------------------------------------
def _ash_layout(
    x: Tensor, z: Tensor, alpha: Tensor, dims: tuple[int, ...]
) -> tuple[int, int, list[Tensor]] | None:
    """``(groups, elements per group, [z, α])`` for statistics over every non-batch dim."""
    if _memory_format(x) is None or x.dim() < 2 or tuple(dims) != tuple(range(1, x.dim())):
        return None
    grouped = _groups(x, z, alpha)
    if grouped is None or not _layout_ok(x, grouped[0]):
        return None
    d, params = grouped
    if d not in (-1, 1):
        return None
    count = x[0].numel()
    groups = 1 if d == -1 else x.shape[1]
    return groups, count // groups, params


def ash_forward(
    x: Tensor, z: Tensor, alpha: Tensor, dims: tuple[int, ...], eps: float, leak: float
) -> tuple[Tensor, Tensor, Tensor] | None:
    """``(out, μ, σ)`` of ASH (μ, σ float32 of shape (N, 1, …)) by the native kernel, or
    ``None`` when it does not cover the call."""
    layout = _ash_layout(x, z, alpha, dims)
    kernel = _kernel("ash_fwd", x, layout)
    if kernel is None or layout is None:
        return None
    groups, per_group, (zc, ac) = layout
    samples = x.shape[0]
    stat_shape = (samples,) + (1,) * (x.dim() - 1)
    y = torch.empty_like(x)
    mu = torch.empty(stat_shape, dtype=torch.float32)
    sigma = torch.empty(stat_shape, dtype=torch.float32)
    kernel(
        _ptr(x), _ptr(y), _ptr(mu), _ptr(sigma), samples, groups, per_group, _ptr(zc), _ptr(ac),
        float(eps), float(leak), _threads(),
    )
    return y, mu, sigma


def ash_backward(
    grad: Tensor, x: Tensor, mu: Tensor, sigma: Tensor, z: Tensor, alpha: Tensor,
    dims: tuple[int, ...], leak: float, need_x: bool, need_z: bool, need_alpha: bool,
) -> tuple[Tensor | None, Tensor | None, Tensor | None] | None:
    """``(∂L/∂x, ∂L/∂z, ∂L/∂α)`` of ASH by the native kernel, or ``None``."""
    if grad.dtype != x.dtype or grad.shape != x.shape:
        return None
    if mu.dtype != torch.float32 or sigma.dtype != torch.float32:
        return None
    layout = _ash_layout(x, z, alpha, dims)
    kernel = _kernel("ash_bwd", x, layout)
    if kernel is None or layout is None:
        return None
    groups, per_group, (zc, ac) = layout
    samples = x.shape[0]
    grad = _like_x(grad, x)
    gx = torch.empty_like(x) if need_x else None
    sum_q = torch.empty(samples, groups, dtype=torch.float64)
    sum_qu = torch.empty(samples, groups, dtype=torch.float64)
    mu_c, sigma_c = mu.contiguous(), sigma.contiguous()
    failed = kernel(
        _ptr(grad), _ptr(x), _ptr(mu_c), _ptr(sigma_c), None if gx is None else _ptr(gx),
        _ptr(sum_q), _ptr(sum_qu), samples, groups, per_group, _ptr(zc), _ptr(ac), float(leak),
        _threads(),
    )
    if failed:
        return None
    gz = ga = None
    if need_alpha:
        ga = _to_param(2.0 * sum_qu.sum(0), alpha)
    if need_z:
        sig = sigma_c.reshape(samples, 1).to(torch.float64)
        gz = _to_param(-2.0 * ac.to(torch.float64) * (sig * sum_q).sum(0), z)
    return gx, gz, ga


def _to_param(per_group: Tensor, like: Tensor) -> Tensor:
    """A parameter's gradient from its per-group sums (summed over groups for a scalar)."""
    total = per_group.sum() if like.numel() == 1 else per_group
    return total.to(like.dtype).reshape(like.shape)
