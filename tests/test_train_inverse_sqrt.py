"""The Transformer recipe's optimizer settings: the inverse-square-root schedule against
Vaswani et al. 2017's formula, warm-up in steps, and Adam's beta2 / epsilon reaching the
optimizer (defaults unchanged)."""

from __future__ import annotations

import pytest
import torch

from actlab.train import TrainConfig
from actlab.train.optim import build_optimizer, build_scheduler, lr_factor


def _vaswani(step: int, d_model: int, warmup: int) -> float:
    """Eq. 3 of "Attention Is All You Need", step counted from 1."""
    return d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


@pytest.mark.parametrize(("d_model", "warmup", "steps_per_epoch"), [(512, 4000, 1000),
                                                                   (64, 7, 3)])
def test_inverse_sqrt_is_the_transformer_rate(d_model, warmup, steps_per_epoch):
    cfg = TrainConfig(optimizer="adam", lr=(d_model * warmup) ** -0.5, schedule="inverse_sqrt",
                      warmup_steps=warmup, epochs=20, momentum=0.9, adam_beta2=0.98,
                      adam_eps=1e-9)
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch)
    checked = 0
    for k in range(min(3 * warmup + 50, 20 * steps_per_epoch)):
        want = _vaswani(k + 1, d_model, warmup)
        assert opt.param_groups[0]["lr"] == pytest.approx(want, rel=1e-12), k
        opt.step()
        sched.step()
        checked += 1
    assert checked > warmup  # warm-up and decay both covered
    f = [lr_factor(k, steps_per_epoch=steps_per_epoch, epochs=20, schedule="inverse_sqrt",
                   warmup_steps=warmup) for k in range(2 * warmup)]
    assert max(f) == f[warmup - 1] == 1.0  # the peak is lr, at step W


def test_warmup_in_epochs_and_without_warmup():
    # warm-up given in epochs: W = round(0.5 x 10) = 5 steps
    assert lr_factor(4, steps_per_epoch=10, epochs=3, schedule="inverse_sqrt",
                     warmup_epochs=0.5) == 1.0
    assert lr_factor(19, steps_per_epoch=10, epochs=3, schedule="inverse_sqrt",
                     warmup_epochs=0.5) == pytest.approx((5 / 20) ** 0.5)
    # warmup_steps overrides the epochs rule for every schedule
    assert lr_factor(1, steps_per_epoch=10, epochs=3, schedule="cosine", warmup_steps=4) == 0.5


def test_config_errors_are_one_line():
    with pytest.raises(ValueError, match="inverse_sqrt' needs a warm-up"):
        TrainConfig(schedule="inverse_sqrt")
    with pytest.raises(ValueError, match="warmup_steps or warmup_epochs, not both"):
        TrainConfig(warmup_steps=10, warmup_epochs=1)
    with pytest.raises(ValueError, match=r"TrainConfig.warmup_steps must be none or an integer"):
        TrainConfig(warmup_steps=0)
    with pytest.raises(ValueError, match=r"TrainConfig.adam_beta2 must be a number in \[0, 1\)"):
        TrainConfig(adam_beta2=1.0)
    with pytest.raises(ValueError, match="TrainConfig.adam_eps must be a number > 0"):
        TrainConfig(adam_eps=0.0)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_settings_reach_the_optimizer(name):
    model = torch.nn.Linear(2, 2)
    default = build_optimizer(model, TrainConfig(optimizer=name, momentum=0.9))
    assert default.defaults["betas"] == (0.9, 0.999) and default.defaults["eps"] == 1e-8
    paper = build_optimizer(model, TrainConfig(optimizer=name, adam_beta2=0.98, adam_eps=1e-9))
    assert paper.defaults["betas"] == (0.9, 0.98) and paper.defaults["eps"] == 1e-9


def test_checkpoints_written_before_the_new_settings_still_resume():
    from actlab.train.loop import _check_resume

    old = {k: v for k, v in TrainConfig().to_dict().items()
           if k not in ("adam_beta2", "adam_eps", "warmup_steps")}
    _check_resume(old, TrainConfig(), "ckpt.pt")  # the new settings at their defaults: fine
    with pytest.raises(ValueError, match=r"adam_beta2: None -> 0\.98|adam_beta2: 0\.999 -> 0\.98"):
        _check_resume(old, TrainConfig(adam_beta2=0.98), "ckpt.pt")
