"""Small tensor helpers shared by the layers' functional code (one definition each)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch._functorch.utils import unwrap_dead_wrappers

__all__ = ["compute_dtype", "sum_to", "apply_function", "broadcasts_to"]


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 if any tensor is float64, else float32: half precision is computed in float32."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def sum_to(g: Tensor, like: Tensor) -> Tensor:
    """Sum a broadcast gradient back to ``like``'s shape and cast it to ``like``'s dtype."""
    if g.shape != like.shape:
        g = g.sum_to_size(like.shape)
    return g.to(like.dtype)


def apply_function(cls: type[torch.autograd.Function], *args: Any) -> Any:
    """``cls.apply(*args)`` without the ``inspect.signature`` binding that ``Function.apply``
    repeats on every call for Functions with ``setup_context`` (~50 µs on CPU, as long as a
    whole 64K-element SAU forward). Only for Functions whose ``forward`` takes positional
    arguments without defaults, where that binding changes nothing; under ``torch.func``
    transforms and while dynamo traces, ``cls.apply`` itself runs."""
    if torch._C._are_functorch_transforms_active() or torch.compiler.is_compiling():
        return cls.apply(*args)
    return super(torch.autograd.Function, cls).apply(*unwrap_dead_wrappers(args))


def broadcasts_to(target: torch.Size, *shapes: torch.Size) -> bool:
    """Whether every shape broadcasts to ``target`` without enlarging it (a plain loop: about
    30× cheaper than ``torch.broadcast_shapes`` for the few small shapes of a layer call)."""
    for shape in shapes:
        if len(shape) > len(target):
            return False
        for size, want in zip(reversed(shape), reversed(target), strict=False):
            if size != 1 and size != want:
                return False
    return True
