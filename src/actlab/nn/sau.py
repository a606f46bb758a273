r"""``SAU`` module: the smooth activation unit with learnable slope α (and optionally sharpness n).

Reference: K. Biswas, S. Kumar, S. Banerjee, A. K. Pandey, "SAU: Smooth activation function using
convolution with approximate identities", arXiv preprint, 2021 (arXiv:2109.13210).
``SAU(x) = (LeakyReLU_α * φ_n)(x)``; see :mod:`actlab.functional.sau` for the formulas
(``"exact"`` convolution or the paper's Eq. 3, optionally zero-centred).
"""


import math

import torch
from torch import Tensor, nn

from actlab.functional.sau import FORMULAS, sau, sau_composed
from actlab.nn._precision import apply_keeping_precision

__all__ = ["SAU"]


class SAU(nn.Module):
    r"""Smooth activation unit ``G(x) = (LeakyReLU_α * φ_n)(x)``, ``φ_n(y) = n·φ(ny)``.

    Exact formula (``formula="exact"``)::

        G(x) = (1-α)/(2n)·√(2/π)·exp(-(nx)²/2) + (1+α)/2·x + (1-α)/2·x·erf(nx/√2)

    ``formula="paper"`` uses the paper's Eq. 3 literally (``1/(2n)`` instead of ``(1-α)/(2n)``
    on the Gaussian term; the two differ by at most ``α·√(2/π)/(2n)``). ``zero_centred=True``
    multiplies the Gaussian term by ``x`` so that ``G(0) = 0``.

    Args:
        alpha: initial negative slope α.
        n: initial sharpness of the Gaussian approximate identity (> 0); large n is close to
            LeakyReLU (the paper's default 20000 differs from it by at most ``(1-α)/(n√(2π))``).
        learn_alpha: α is an ``nn.Parameter`` (else a buffer).
        learn_n: n is an ``nn.Parameter`` (else a buffer).
        num_parameters: 1 (shared α and n) or the number of channels C of an ``(N, C, ...)``
            input (one α and one n per channel, like ``nn.PReLU``).
        formula: ``"exact"`` or ``"paper"``.
        zero_centred: use the zero-centred variant.
        min_n: lower bound for n. The forward pass uses ``max(n, min_n)`` for a learnable n, so one
            an optimiser pushes to or below zero still gives a valid activation (its gradient is
            then zero until something moves it back above ``min_n``).
        inplace: accepted for drop-in compatibility with ``nn.LeakyReLU(inplace=...)`` and
            ignored: the backward needs the input, so SAU never overwrites it.

    Shape: input ``(N, C, *)`` (or any shape when ``num_parameters == 1``), output the same.
    The state_dict keys are ``alpha`` and ``n`` whether or not they are learnable, each of
    shape ``(num_parameters,)``.

    Precision: ``n`` is kept in float32 (float64 after ``.double()``) whatever the module's
    dtype: ``.half()`` / ``.bfloat16()`` / ``.to(dtype)`` leave it in float32, since float16
    cannot hold ``n >= 65520`` (it would become inf and give NaN). Half-precision inputs are
    computed in float32 and returned in their own dtype.

    Tracing and export: the forward has no Python control flow on tensors, so
    ``torch.fx.symbolic_trace`` records one ``call_function`` node to
    :func:`~actlab.functional.sau.sau`; ``torch.jit.script`` runs
    :func:`~actlab.functional.sau.sau_composed` (same formula, differentiated by autograd).
    """

    def __init__(
        self,
        alpha: float = 0.15,
        n: float = 20000.0,
        learn_alpha: bool = True,
        learn_n: bool = False,
        num_parameters: int = 1,
        formula: str = "exact",
        zero_centred: bool = False,
        inplace: bool = False,
        min_n: float = 1e-2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if formula not in FORMULAS:
            raise ValueError(f"formula must be one of {FORMULAS}, got {formula!r}")
        if isinstance(num_parameters, bool) or not isinstance(num_parameters, int):
            raise TypeError(f"num_parameters must be an int, got {num_parameters!r}")
        if num_parameters < 1:
            raise ValueError(f"num_parameters must be >= 1, got {num_parameters}")
        for name, value in (("alpha", alpha), ("n", n), ("min_n", min_n)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a float, got {type(value).__name__}")
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value!r}")
        if min_n <= 0:
            raise ValueError(f"min_n must be > 0, got {min_n!r}")
        if n < min_n:
            raise ValueError(f"n must be >= min_n = {min_n!r} (and > 0), got {n!r}")
        self.init_alpha = float(alpha)
        self.init_n = float(n)
        self.learn_alpha = bool(learn_alpha)
        self.learn_n = bool(learn_n)
        self.num_parameters = num_parameters
        self.formula = formula
        self.zero_centred = bool(zero_centred)
        self.inplace = bool(inplace)
        self.min_n = float(min_n)
        n_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        for name, learn in (("alpha", self.learn_alpha), ("n", self.learn_n)):
            t_dtype = dtype if name == "alpha" else n_dtype
            t = torch.empty(num_parameters, device=device, dtype=t_dtype)
            if learn:
                self.register_parameter(name, nn.Parameter(t))
            else:
                self.register_buffer(name, t)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Set every α to ``init_alpha`` and every n to ``init_n``."""
        with torch.no_grad():
            self.alpha.fill_(self.init_alpha)
            self.n.fill_(self.init_n)

    def effective_n(self) -> Tensor:
        """The n the forward pass uses: ``max(n, min_n)`` when n is learnable, else n as stored
        (checked ``>= min_n`` at construction; passing the buffer itself lets ``torch.fx``
        record a reference to it rather than a constant)."""
        return self.n.clamp_min(self.min_n) if self.learn_n else self.n

    def forward(self, x: Tensor) -> Tensor:
        n = self.effective_n()
        if torch.jit.is_scripting():
            return sau_composed(
                x, self.alpha, n, self.formula == "paper", self.zero_centred,
                self.num_parameters > 1,
            )
        channel_dim = 1 if self.num_parameters > 1 else None
        return sau(x, self.alpha, n, self.formula, self.zero_centred, channel_dim)

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        # keep n in float32 when the module is cast to half precision (see the class docstring)
        return apply_keeping_precision(self, ("n",), lambda: super(SAU, self)._apply(fn, recurse))

    def extra_repr(self) -> str:
        parts = [
            f"alpha={self.init_alpha}",
            f"n={self.init_n}",
            f"learn_alpha={self.learn_alpha}",
            f"learn_n={self.learn_n}",
            f"num_parameters={self.num_parameters}",
            f"formula={self.formula!r}",
            f"zero_centred={self.zero_centred}",
            f"min_n={self.min_n}",
        ]
        if self.inplace:
            parts.append("inplace=True")
        return ", ".join(parts)
