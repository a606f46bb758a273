r"""``Smoothed``: any activation convolved with an approximate identity (SAU paper, §2.3).

``smooth("relu", n=10.0)`` is ``relu * φ_n`` with ``φ_n(y) = n·φ(ny)`` (Gaussian) and
``smooth("gelu", n=5.0, kernel="bump")`` is ``gelu * ψ_n`` with the compactly supported bump
``ψ(u) ∝ exp(-1/(1-u²))``. Piecewise-linear activations (ReLU, LeakyReLU, PReLU, ReLU6,
Hardtanh, Hardsigmoid, identity) are smoothed in closed form (Gaussian) or by split
Gauss–Legendre quadrature (bump); anything else by fixed Gauss–Hermite / Gauss–Legendre
quadrature. See :mod:`actlab.functional.smoothing` for the formulas and accuracy.

Reference: K. Biswas, S. Kumar, S. Banerjee, A. K. Pandey, "SAU: Smooth activation function using
convolution with approximate identities", arXiv preprint, 2021 (arXiv:2109.13210).
"""


import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from actlab.functional.sau import sau
from actlab.functional.smoothing import (
    DEFAULT_ORDER,
    KERNELS,
    PiecewiseLinear,
    bump_relu_rule,
    quadrature_rule,
    quadrature_sum,
    resolve_activation,
    smooth_piecewise_linear,
    smooth_prelu,
)
from actlab.nn._precision import apply_keeping_precision

__all__ = ["Smoothed", "smooth"]

METHODS = ("auto", "closed_form", "quadrature")


def _describe(activation: object) -> str:
    if isinstance(activation, str):
        return activation
    if isinstance(activation, PiecewiseLinear):
        return repr(activation)
    if isinstance(activation, nn.Module):
        return type(activation).__name__
    return getattr(activation, "__name__", type(activation).__name__)


class Smoothed(nn.Module):
    r"""The activation ``σ_n = σ * κ_n``, ``κ_n(y) = n·κ(ny)``, for a Gaussian or bump ``κ``.

    Args:
        activation: a name (``"relu"``, ``"leaky_relu"``, ``"prelu"``, ``"relu6"``,
            ``"hardtanh"``, ``"hardsigmoid"``, ``"identity"``, ``"gelu"``, ``"silu"``,
            ``"mish"``, ``"elu"``, ``"softplus"``, ``"tanh"``, ... or any registered activation
            name), an ``nn.Module`` (kept as the submodule ``activation``, so its parameters,
            e.g. ``nn.PReLU``'s slope, are trained), a callable, or a
            :class:`~actlab.functional.smoothing.PiecewiseLinear`.
        n: sharpness of the approximate identity (> 0); ``n → ∞`` recovers ``σ``.
        kernel: ``"gaussian"`` or ``"bump"``.
        order: quadrature nodes (default 32 Gauss–Hermite for the Gaussian, 48 Gauss–Legendre
            for the bump). Unused by the closed-form Gaussian path.
        method: ``"auto"`` (closed form when ``σ`` is piecewise linear), ``"closed_form"``
            (error if there is none) or ``"quadrature"`` (always quadrature).
        learn_n: n is an ``nn.Parameter`` (else a buffer); the state_dict key is ``n`` either
            way. The forward pass uses ``max(n, min_n)`` so n stays positive.
        min_n: lower bound applied to n in the forward pass.
        inplace: accepted for drop-in compatibility and ignored.
        **activation_kwargs: passed to a named activation (``negative_slope=0.2``,
            ``min_val=...``, ``approximate="tanh"``, ...).

    The (leaky) ReLU and PReLU with the Gaussian kernel go through :func:`~actlab.functional.
    sau.sau` (exact formula), whose backward saves only the input. Quadrature calls ``σ``
    ``order`` times and autograd keeps ``order`` input-sized tensors for backward.

    Precision: ``n`` stays float32 and the quadrature nodes and weights (non-persistent
    buffers) stay float64 when the module is cast (``.half()``, ``.bfloat16()``, ``.float()``);
    half-precision inputs are computed in float32 and returned in their own dtype.

    Tracing and export: the forward has no Python control flow on tensors (the quadrature is a
    loop over the Python int ``order``), so ``torch.fx.symbolic_trace``, ``torch.export`` and
    ONNX export work. ``torch.jit.script`` does not (a clear ``TypeError``): the activation may
    be any Python callable; use ``torch.jit.trace``, ``torch.export`` or ``torch.compile``.
    """

    def __init__(
        self,
        activation: object,
        n: float = 20000.0,
        kernel: str = "gaussian",
        order: int | None = None,
        method: str = "auto",
        learn_n: bool = False,
        min_n: float = 1e-2,
        inplace: bool = False,
        **activation_kwargs: object,
    ) -> None:
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if order is not None and (
            isinstance(order, bool) or not isinstance(order, int) or order < 2
        ):
            raise ValueError(f"order must be an int >= 2, got {order!r}")
        for name, value in (("n", n), ("min_n", min_n)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a float, got {type(value).__name__}")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite float > 0, got {value!r}")
        if n < min_n:
            raise ValueError(f"n must be >= min_n = {min_n!r}, got {n!r}")

        self.kernel = kernel
        self.order = order if order is not None else DEFAULT_ORDER[kernel]
        self.init_n = float(n)
        self.learn_n = bool(learn_n)
        self.min_n = float(min_n)
        self.inplace = bool(inplace)
        self.activation_name = _describe(activation)

        if isinstance(activation, str) and activation.strip().lower() == "prelu":
            activation = nn.PReLU(**activation_kwargs)  # type: ignore[arg-type]
            activation_kwargs = {}
        self.activation: nn.Module | None = None
        self.pwl: PiecewiseLinear | None = None
        self._fn: Callable[[Tensor], Tensor] | None = None
        if isinstance(activation, nn.PReLU):
            self.activation = activation
            is_pwl = True
        else:
            pwl, fn = resolve_activation(activation, **activation_kwargs)
            if isinstance(fn, nn.Module):
                self.activation = fn
            else:
                self._fn = fn
            self.pwl = pwl
            is_pwl = pwl is not None
        if method == "closed_form" and not is_pwl:
            raise ValueError(
                f"activation {self.activation_name!r} is not piecewise linear: no closed form "
                f"(use method='auto' or 'quadrature')"
            )
        self.method = "closed_form" if is_pwl and method != "quadrature" else "quadrature"

        t = torch.tensor(self.init_n)
        if self.learn_n:
            self.n = nn.Parameter(t)
        else:
            self.register_buffer("n", t)
        nodes, weights = self._rule()
        self.register_buffer("nodes", nodes, persistent=False)
        self.register_buffer("weights", weights, persistent=False)

    def _rule(self) -> tuple[Tensor | None, Tensor | None]:
        if self.method == "quadrature":
            return quadrature_rule(self.kernel, self.order, torch.float64)
        if self.kernel == "bump":  # split Gauss–Legendre rule of the closed-form bump path
            return bump_relu_rule(self.order, torch.float64)
        return None, None

    def reset_parameters(self) -> None:
        """Reset n to its initial value (and a PReLU slope to its initial value)."""
        with torch.no_grad():
            self.n.fill_(self.init_n)
        if isinstance(self.activation, nn.PReLU):
            self.activation.reset_parameters()

    def effective_n(self) -> Tensor:
        """The n the forward pass uses: ``max(n, min_n)`` when n is learnable, else n as stored
        (checked ``>= min_n`` at construction; passing the buffer itself lets ``torch.fx``
        record a reference to it rather than a constant)."""
        return self.n.clamp_min(self.min_n) if self.learn_n else self.n

    def forward(self, x: Tensor) -> Tensor:
        n = self.effective_n()
        rule = None if self.nodes is None else (self.nodes, self.weights)
        if self.method == "quadrature":
            fn = self.activation if self.activation is not None else self._fn or self.pwl
            return quadrature_sum(x, fn, n, self.nodes, self.weights, self.order)  # type: ignore[arg-type]
        if isinstance(self.activation, nn.PReLU):
            return smooth_prelu(x, self.activation.weight, n, self.kernel, self.order, rule)
        assert self.pwl is not None
        if self.kernel == "gaussian" and self.pwl.is_leaky_relu:
            return sau(x, self.pwl.slope, n, "exact")
        return smooth_piecewise_linear(x, self.pwl, n, self.kernel, self.order, rule)

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        # n stays float32 and the quadrature rule float64 under .half() / .float() (class doc)
        return apply_keeping_precision(
            self, ("n",), lambda: apply_keeping_precision(
                self, ("nodes", "weights"), lambda: super(Smoothed, self)._apply(fn, recurse),
                floor=torch.float64,
            )
        )

    def __prepare_scriptable__(self) -> nn.Module:
        raise TypeError(
            "Smoothed cannot be compiled by torch.jit.script: its activation may be any Python "
            "callable and its configuration (piecewise-linear form, quadrature) is Python state; "
            "use torch.jit.trace, torch.export.export or torch.compile instead (or actlab.nn.SAU, "
            "which scripts, for a Gaussian-smoothed (leaky) ReLU)"
        )

    def extra_repr(self) -> str:
        parts = [
            f"activation={self.activation_name!r}",
            f"n={self.init_n}",
            f"kernel={self.kernel!r}",
            f"method={self.method!r}",
        ]
        if self.method == "quadrature" or self.kernel == "bump":
            parts.append(f"order={self.order}")
        parts += [f"learn_n={self.learn_n}", f"min_n={self.min_n}"]
        if self.inplace:
            parts.append("inplace=True")
        return ", ".join(parts)


def smooth(
    activation: object, n: float = 20000.0, kernel: str = "gaussian", **kwargs: object
) -> Smoothed:
    """``Smoothed(activation, n=n, kernel=kernel, **kwargs)``: ``activation * κ_n`` as a module."""
    return Smoothed(activation, n=n, kernel=kernel, **kwargs)  # type: ignore[arg-type]
