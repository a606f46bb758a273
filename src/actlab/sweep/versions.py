"""Versions recorded with every run (``versions`` column of the results store)."""

from __future__ import annotations

import platform
from typing import Any

import numpy
import torch

__all__ = ["collect_versions"]


def collect_versions() -> dict[str, Any]:
    """``{"actlab", "torch", "numpy", "python", "platform", "cuda"}`` of this process."""
    import actlab

    return {
        "actlab": getattr(actlab, "__version__", "unknown"),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cuda": torch.version.cuda,
    }
