"""``nn.Module`` wrappers of the actlab layers (parameters, ``reset_parameters``, ``extra_repr``).

The math lives in :mod:`actlab.functional`; these classes only hold parameters and shape them.
"""

from actlab.nn.agc import AGC, AGCAct
from actlab.nn.ash import ASH, FASH, LASH, ASHTopK
from actlab.nn.noise import AGCNoise, NoiseInjection
from actlab.nn.sau import SAU
from actlab.nn.smoothing import Smoothed, smooth

__all__ = [
    "AGC", "AGCAct", "AGCNoise", "ASH", "ASHTopK", "FASH", "LASH", "NoiseInjection", "SAU",
    "Smoothed", "smooth",
]
