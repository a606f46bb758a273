"""Keep a module's numerically sensitive tensors in at least float32 when it is cast.

``module.half()`` / ``.bfloat16()`` convert every floating parameter and buffer. For constants
such as SAU's sharpness ``n`` (20000 by default, up to 1e8) that is harmful: float16 tops out at
65504 (``n`` becomes inf, and ``inf·0`` NaN), and both half formats keep only 8–11 significant
bits. The layers compute in float32 anyway, so these tensors can stay float32 for free.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

__all__ = ["apply_keeping_precision"]


def _less_precise(dtype: torch.dtype, than: torch.dtype) -> bool:
    return dtype.is_floating_point and torch.finfo(dtype).eps > torch.finfo(than).eps


def apply_keeping_precision(
    module: nn.Module,
    names: Iterable[str],
    apply: Callable[[], nn.Module],
    floor: torch.dtype = torch.float32,
) -> nn.Module:
    """Run ``apply()`` (the module's ``nn.Module._apply``), then restore the tensors
    ``names`` (direct parameters or buffers of ``module``) to ``floor`` from their values
    before the cast wherever it made them less precise than ``floor`` (float16 / bfloat16 for
    the default float32). Devices follow the cast; casts to at least ``floor`` are kept; a
    parameter stays the same ``nn.Parameter`` object (optimisers keep it).
    """
    before = {name: getattr(module, name) for name in names}
    before = {k: v.detach() for k, v in before.items() if v is not None}
    result = apply()
    for name, old in before.items():
        new = getattr(module, name)
        if not _less_precise(new.dtype, floor) or _less_precise(old.dtype, floor):
            continue
        fixed = old.to(device=new.device, dtype=floor)
        if isinstance(new, nn.Parameter):
            new.data = fixed
            if new.grad is not None:
                new.grad = new.grad.to(floor)
        else:
            module._buffers[name] = fixed
    return result
