"""GEMS: gradients normalised by the non-saturated points (B. Ruff, "Deep Control", 2017).

Reference: B. Ruff, "Deep Control - a simple automatic gain control for memory efficient and high
performance training of deep convolutional neural networks", arXiv:1706.03907, 2017. Its abstract
motivates the method: activation sparsity grows with depth, so the *effective* mini-batch of a
filter (the points where it is not saturated, i.e. where its gradient can be non-zero) is smaller
than the batch, and the effective learning rate of deep, sparse filters drops. The paper's full
text was not reachable from this machine; the formula below is our reading of "gradients
normalised by the non-saturated points" and is stated here so that it can be checked.

What is computed. For a filter ``c`` of a conv / linear layer followed (possibly through a norm
layer) by a hard-saturating activation ``a``, every point ``p`` (sample × spatial position) of its
output contributes ``g_p`` to the parameter gradient, and ``g_p = 0`` where ``a`` is saturated
(ReLU output 0). The training loss is a mean over the ``P_c`` points, so autograd gives
``∇ = (1/P_c)·Σ_p g_p``. GEMS divides the same sum by the number of non-saturated points
``A_c = #{p : a'(p) ≠ 0}`` instead::

    ∇_GEMS[c] = Σ_p g_p / A_c = ∇[c] / f_c,    f_c = A_c / P_c

with ``f_c`` clamped below at ``floor`` (a filter that fires at no or very few points would get
an unbounded step). ``per="layer"`` uses one fraction per layer, ``f = Σ_c A_c / Σ_c P_c``.
The scale applies to the layer's weight (rows of its output channel), bias, and to per-channel
parameters of norm layers executed between it and the activation (BN / AGC γ, β, λ).

Choices where the paper (as far as we could read it) is vague:

- *Which points are non-saturated*: those where the activation's derivative is non-zero —
  ``y > 0`` for ``nn.ReLU`` and ReLU-fused AGC (:class:`actlab.nn.AGCAct`), strictly inside the
  clip range for ``nn.ReLU6`` / ``nn.Hardtanh``. Activations without a flat region (leaky ReLU,
  SAU, ASH, GELU, ...) are never saturated, so GEMS leaves their layers unchanged (f = 1).
- *Which layer an activation gates*: the conv / linear layer executed most recently before the
  activation in the forward pass (recorded by forward hooks), when its output channel count
  matches. Layers with no such activation (e.g. a classifier head) are left unchanged.
- Counts accumulate over all training-mode forward passes since the last :meth:`GEMS.rescale_`
  (a module called twice counts twice); in distributed training they are the local shard's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from actlab.registry import norm_types

__all__ = ["GEMS", "PER", "saturation_mask"]

PER = ("channel", "layer")
_PARAM_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                 nn.ConvTranspose3d, nn.Linear)


def saturation_mask(module: nn.Module, out: torch.Tensor) -> torch.Tensor | None:
    """Boolean mask of the NON-saturated outputs of ``module`` (derivative ≠ 0), or None when
    ``module`` is not a hard-saturating activation GEMS knows."""
    from actlab.nn.agc import AGCAct

    if isinstance(module, nn.ReLU):
        return out > 0
    if isinstance(module, nn.Hardtanh):  # includes nn.ReLU6
        return (out > module.min_val) & (out < module.max_val)
    if isinstance(module, AGCAct) and module.act == "relu":
        return out > 0
    return None


@dataclass
class _Entry:
    """Counts of one gated layer since the last rescale."""

    layer: nn.Module
    channel_dim: int  # where the channels sit in the activation's output
    active: torch.Tensor  # (C,) float64 count of non-saturated points
    total: int = 0  # points per channel
    norms: list[nn.Module] = field(default_factory=list)


class GEMS:
    """Rescale each gated layer's gradient by ``1 / max(f, floor)`` (see the module docstring).

    Usage::

        gems = GEMS(model, per="channel", floor=0.01)
        loss = criterion(model(x), y); loss.backward()
        gems.rescale_()          # before clipping / optimizer.step(); resets the counts
        optimizer.step()
        gems.remove()            # detach the hooks when done

    Args:
        model: the network; forward hooks are put on every leaf module.
        per: ``"channel"`` (one fraction per output channel) or ``"layer"`` (one per layer).
        floor: lower bound of the fraction in ``(0, 1]``; the largest scale is ``1/floor``.
    """

    def __init__(self, model: nn.Module, per: str = "channel", floor: float = 0.01) -> None:
        if per not in PER:
            raise ValueError(f"GEMS per must be one of {PER}, got {per!r}")
        if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not (
            math.isfinite(floor) and 0 < floor <= 1
        ):
            raise ValueError(f"GEMS floor must be a float in (0, 1], got {floor!r}")
        self.per = per
        self.floor = float(floor)
        self._entries: dict[int, _Entry] = {}
        self._last: tuple[nn.Module, int] | None = None
        self._between: list[nn.Module] = []
        norms = norm_types()
        self._handles = []
        for module in model.modules():
            if isinstance(module, _PARAM_LAYERS):
                self._handles.append(module.register_forward_hook(self._on_layer))
            elif isinstance(module, norms) and not _is_gate(module):
                self._handles.append(module.register_forward_hook(self._on_norm))
            elif _is_gate(module):
                self._handles.append(module.register_forward_hook(self._on_act))

    # ---- hooks ---------------------------------------------------------------------------------
    def _on_layer(self, module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        if not module.training:
            return
        self._last = (module, -1 if isinstance(module, nn.Linear) else 1)
        self._between = []

    def _on_norm(self, module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        if module.training and self._last is not None:
            self._between.append(module)

    def _on_act(self, module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        from actlab.nn.agc import AGCAct

        if not module.training or self._last is None or not isinstance(out, torch.Tensor):
            return
        layer, cdim = self._last
        between = self._between + ([module] if isinstance(module, AGCAct) else [])
        self._last, self._between = None, []
        channels = _out_channels(layer)
        if out.dim() < 2 or out.shape[cdim] != channels:
            return
        mask = saturation_mask(module, out.detach())
        if mask is None:
            return
        dims = [d for d in range(out.dim()) if d != cdim % out.dim()]
        active = mask.sum(dim=dims, dtype=torch.float64)
        entry = self._entries.get(id(layer))
        if entry is None:
            entry = _Entry(layer, cdim, torch.zeros_like(active))
            self._entries[id(layer)] = entry
        entry.active += active
        entry.total += out.numel() // channels
        for norm in between:
            if all(norm is not n for n in entry.norms):
                entry.norms.append(norm)

    # ---- public --------------------------------------------------------------------------------
    def fractions(self) -> dict[nn.Module, torch.Tensor]:
        """``{layer: f}`` of the counts so far: (C,) per channel, or a 0-d tensor per layer."""
        out = {}
        for e in self._entries.values():
            if e.total == 0:
                continue
            if self.per == "channel":
                out[e.layer] = e.active / e.total
            else:
                out[e.layer] = e.active.sum() / (e.total * e.active.numel())
        return out

    @torch.no_grad()
    def rescale_(self) -> None:
        """Multiply the gradients of every gated layer (and its norms) by ``1/max(f, floor)``,
        then reset the counts."""
        for layer, frac in self.fractions().items():
            entry = self._entries[id(layer)]
            scale = 1.0 / frac.clamp(min=self.floor)
            channels = entry.active.numel()
            if scale.dim() == 0:
                scale = scale.expand(channels)
            _scale_layer(layer, scale)
            for norm in entry.norms:
                for p in norm.parameters(recurse=False):
                    if p.grad is not None and p.shape == (channels,):
                        p.grad.mul_(scale.to(p.grad.dtype))
        self.reset()

    def reset(self) -> None:
        """Forget the counts (call after a forward pass whose gradients are not used)."""
        self._entries.clear()
        self._last, self._between = None, []

    def remove(self) -> None:
        """Remove the forward hooks from the model."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.reset()


def _is_gate(module: nn.Module) -> bool:
    from actlab.nn.agc import AGCAct

    return isinstance(module, (nn.ReLU, nn.Hardtanh, AGCAct))


def _out_channels(layer: nn.Module) -> int:
    if isinstance(layer, nn.Linear):
        return layer.out_features
    return layer.out_channels


def _scale_layer(layer: nn.Module, scale: torch.Tensor) -> None:
    w = layer.weight
    if w.grad is not None:
        g = w.grad
        s = scale.to(g.dtype)
        if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            g.mul_(s.view(-1, *([1] * (g.dim() - 1))))
        else:  # transposed conv: weight (C_in, C_out / groups, *k)
            groups = layer.groups
            view = g.view(groups, g.shape[0] // groups, g.shape[1], -1)
            view.mul_(s.view(groups, 1, g.shape[1], 1))
    b = getattr(layer, "bias", None)
    if b is not None and b.grad is not None:
        b.grad.mul_(scale.to(b.grad.dtype))
