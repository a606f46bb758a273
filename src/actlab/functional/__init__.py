"""Pure functions of the actlab layers (no ``nn.Module`` state).

- :func:`sau` — smooth activation unit, LeakyReLU_α * φ_n (Biswas et al., arXiv 2021).
- :func:`ash` / :func:`ash_topk` — adaptive swish and the exact top-k rule it approximates
  (Lee et al., NeurIPS 2022).
- :func:`agc` / :func:`agc_act` — Deep Control's automatic gain control (B. Ruff, 2017), alone and
  fused with a (leaky) ReLU; :func:`scaled_lr` is its learning-rate rule lr = base_lr × batch.
- :func:`smooth_piecewise_linear` and friends — σ * κ_n for any activation σ (SAU paper §2.3).
- :func:`set_backend` / :func:`get_backend` / :func:`backend` — eager PyTorch ops,
  ``torch.compile``-fused forward/backward kernels for SAU, ASH and AGC, or ``"auto"`` (the
  default: eager until compiling pays back; ``ACTLAB_BACKEND``, :mod:`.backends`).
"""

from actlab.functional.agc import agc, agc_act, agc_act_reference, agc_reference, scaled_lr
from actlab.functional.ash import ash, ash_reference, ash_topk, z_from_k
from actlab.functional.backends import backend, get_backend, set_backend
from actlab.functional.sau import FORMULAS, sau, sau_reference
from actlab.functional.smoothing import (
    KERNELS,
    PiecewiseLinear,
    piecewise_linear,
    smooth_piecewise_linear,
)

__all__ = [
    "FORMULAS",
    "KERNELS",
    "PiecewiseLinear",
    "agc",
    "agc_act",
    "agc_act_reference",
    "agc_reference",
    "ash",
    "ash_reference",
    "ash_topk",
    "backend",
    "get_backend",
    "piecewise_linear",
    "sau",
    "sau_reference",
    "scaled_lr",
    "set_backend",
    "smooth_piecewise_linear",
    "z_from_k",
]
