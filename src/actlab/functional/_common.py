"""Small tensor helpers shared by the layers' functional code (one definition each)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["compute_dtype", "sum_to"]


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 if any tensor is float64, else float32: half precision is computed in float32."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def sum_to(g: Tensor, like: Tensor) -> Tensor:
    """Sum a broadcast gradient back to ``like``'s shape and cast it to ``like``'s dtype."""
    if g.shape != like.shape:
        g = g.sum_to_size(like.shape)
    return g.to(like.dtype)
