"""Optimizers and per-step learning-rate schedules.

The rate at optimizer step ``k`` (0-based) is ``lr_eff × f(k)`` where, with ``S`` steps per
epoch, ``T = epochs × S`` steps in all and ``W = warmup_steps`` or ``round(warmup_epochs × S)``
warm-up steps (at most ``T``):

* warm-up (``k < W``): ``f = (k + 1) / W``;
* ``"none"``: ``f = 1``;
* ``"cosine"``: ``f = (1 + cos(π (k - W) / (T - W))) / 2`` (from 1 down towards 0);
* ``"poly"``: ``f = (1 - (k - W) / (T - W))^0.9`` (the "poly" policy of DeepLab, Chen et al.
  2017, power 0.9; from 1 down towards 0);
* ``"step"``: ``f = γ^m`` with ``m`` the number of decays so far: ``⌊e / step_size⌋`` for an int
  step size, or the number of milestones ``≤ e`` for a list, ``e = ⌊k / S⌋`` the epoch index;
* ``"inverse_sqrt"``: ``f = sqrt(W / (k + 1))`` (``W`` taken as 1 if 0). With the warm-up this is
  Vaswani et al. 2017 (Eq. 3), ``rate(s) = d^-0.5 · min(s^-0.5, s · W^-1.5)`` at step
  ``s = k + 1``, scaled to peak 1 at ``s = W``: set ``lr = (d · W)^-0.5`` for their rate.

Under ``lr_scaling="linear"`` ``lr_eff = lr × batch_size`` (Deep Control's rule), else ``lr``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable

import torch
from torch import nn

from actlab.train.config import TrainConfig

__all__ = ["build_optimizer", "build_scheduler", "lr_factor", "param_groups", "POLY_POWER"]

#: Exponent of the ``"poly"`` schedule (DeepLab's value).
POLY_POWER = 0.9


def param_groups(model: nn.Module, weight_decay: float, exclude_1d: bool) -> list[dict]:
    """Parameter groups: one group, or decayed (ndim > 1) / not decayed (ndim <= 1) groups."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    if not exclude_1d or weight_decay == 0:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.dim() > 1]
    no_decay = [p for p in params if p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov), Adam or AdamW at rate ``cfg.effective_lr``."""
    groups = param_groups(model, cfg.weight_decay, cfg.wd_exclude_1d)
    lr = cfg.effective_lr
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    betas = (cfg.momentum, cfg.adam_beta2)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas, eps=cfg.adam_eps)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=cfg.adam_eps)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; expected 'sgd', 'adam' or 'adamw'")


def lr_factor(
    step: int,
    *,
    steps_per_epoch: int,
    epochs: int,
    schedule: str = "none",
    warmup_epochs: float = 0,
    step_size: int | Iterable[int] = 30,
    step_gamma: float = 0.1,
    warmup_steps: int | None = None,
) -> float:
    """Multiplier ``f(step)`` of the base rate (see module doc)."""
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    total = epochs * steps_per_epoch
    warm = warmup_steps if warmup_steps is not None else int(round(warmup_epochs
                                                                   * steps_per_epoch))
    warm = min(warm, total)
    if step < warm:
        return (step + 1) / warm
    if schedule == "none":
        return 1.0
    if schedule == "inverse_sqrt":
        return math.sqrt(max(warm, 1) / (step + 1))
    if schedule == "cosine":
        span = max(total - warm, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(step - warm, span) / span))
    if schedule == "poly":
        span = max(total - warm, 1)
        return (1.0 - min(step - warm, span) / span) ** POLY_POWER
    if schedule == "step":
        epoch = step // steps_per_epoch
        if isinstance(step_size, int):
            decays = epoch // step_size
        else:
            decays = bisect.bisect_right(sorted(step_size), epoch)
        return step_gamma**decays
    raise ValueError(f"unknown schedule {schedule!r}; expected 'none', 'cosine', 'step', "
                     "'inverse_sqrt' or 'poly'")


class _Factor:
    """Picklable ``step -> factor`` closure over the schedule settings."""

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int) -> None:
        self.kw = {
            "steps_per_epoch": steps_per_epoch,
            "epochs": cfg.epochs,
            "schedule": cfg.schedule,
            "warmup_epochs": cfg.warmup_epochs,
            "step_size": cfg.step_size,
            "step_gamma": cfg.step_gamma,
            "warmup_steps": cfg.warmup_steps,
        }

    def __call__(self, step: int) -> float:
        return lr_factor(step, **self.kw)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepped once per optimizer step with multiplier :func:`lr_factor`."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _Factor(cfg, steps_per_epoch))
