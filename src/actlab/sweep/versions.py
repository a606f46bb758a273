"""Versions recorded with every run (``versions`` column of the results store)."""

from __future__ import annotations

import platform
from typing import Any

import numpy
import torch

__all__ = ["collect_versions"]


def collect_versions(layer_backend: str = "eager") -> dict[str, Any]:
    """``{"actlab", "torch", "numpy", "python", "platform", "cuda"}`` of this process, plus
    ``"native_kernels"`` for a cell whose layers do not run eager: which build of SAU's and
    ASH's CPU kernels it uses (:func:`actlab.functional.native.describe`; building them here if
    needed), since their last bits depend on the CPU they were built for."""
    import actlab

    versions = {
        "actlab": getattr(actlab, "__version__", "unknown"),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cuda": torch.version.cuda,
    }
    if layer_backend != "eager":
        from actlab.functional import native

        versions["native_kernels"] = native.describe()
    return versions
