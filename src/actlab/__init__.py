"""actlab: reference PyTorch implementations of SAU, ASH and Deep-Control AGC, plus the experiment
system (model zoo, datasets, sweeps, statistics) that compares them against standard baselines."""

# Built-in layers, models and datasets register themselves on import.
from actlab import (  # noqa: F401  (zoo and dataset readers)
    _builtin,  # noqa: F401  (SAU, smoothed activations, ASH family)
    data,
    models,
)
from actlab.registry import (
    ACTIVATIONS,
    DATASETS,
    MODELS,
    NORMS,
    act_factory,
    get_act,
    get_norm,
    norm_factory,
    register_act,
    register_norm,
)
from actlab.store.frame import load_runs  # pandas DataFrame of a results store

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "DATASETS",
    "MODELS",
    "NORMS",
    "act_factory",
    "get_act",
    "get_norm",
    "load_runs",
    "norm_factory",
    "register_act",
    "register_norm",
    "__version__",
]
