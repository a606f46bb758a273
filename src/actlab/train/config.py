"""Training settings: one validated, JSON-friendly dataclass.

``TrainConfig`` holds every knob of :func:`actlab.train.train_model`. It is built either directly
(``TrainConfig(epochs=30, lr=0.05)``) or from a plain mapping with :meth:`TrainConfig.from_dict`,
which rejects unknown keys and bad values with a message naming the key and what was expected.
``to_dict()`` gives back a plain dict (stored in checkpoints and results).

Learning-rate scaling follows Deep Control (B. Ruff, 2017): with ``lr_scaling="linear"`` the
``lr`` field is a per-sample rate and the optimizer's rate is ``lr × batch_size``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["TrainConfig"]

_CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("sgd", "adam", "adamw"),
    "lr_scaling": ("none", "linear"),
    "schedule": ("none", "cosine", "step"),
    "class_weights": ("none", "enet"),
    "amp_dtype": ("float16", "bfloat16"),
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class TrainConfig:
    """Settings of one training run.

    Attributes:
        epochs: number of passes over the training split (>= 1).
        batch_size: GLOBAL mini-batch size (split over processes when distributed).
        optimizer: ``"sgd"`` (heavy-ball momentum), ``"adam"`` (L2 weight decay added to the
            gradient) or ``"adamw"`` (decoupled weight decay).
        lr: learning rate; per-sample when ``lr_scaling="linear"``.
        lr_scaling: ``"none"`` or ``"linear"`` (``lr_eff = lr × batch_size``, Deep Control).
        momentum, nesterov: SGD momentum settings (``momentum`` is Adam's beta1 for adam/adamw).
        weight_decay: weight-decay coefficient.
        wd_exclude_1d: do not decay parameters with ``ndim <= 1`` (biases, norm affines and
            scalar activation parameters). Off by default: every parameter is decayed.
        schedule: ``"none"``, ``"cosine"`` (to 0 at the last step) or ``"step"`` (multiply by
            ``step_gamma`` every ``step_size`` epochs, or at each epoch of a list of milestones).
        warmup_epochs: linear warm-up length in epochs (the rate climbs from ``1/W`` to 1 over
            the first ``W`` steps, then the schedule proper takes over).
        augment: augmentation spec for ``actlab.data.build_augment`` (None: no augmentation).
        amp: mixed precision where supported: fp16 autocast + GradScaler on CUDA; on CPU only
            when ``amp_dtype="bfloat16"`` is asked for.
        amp_dtype: ``"float16"`` or ``"bfloat16"``.
        class_weights: ``"none"`` or ``"enet"`` (Paszke et al. 2016: ``w_c = 1/ln(1.02 + p_c)``
            with ``p_c`` the class frequency in the training labels, normalised to mean 1).
        label_smoothing: cross-entropy label smoothing in ``[0, 1)``.
        grad_clip: clip the global gradient 2-norm to this value (None: no clipping).
        seed: seed of every random number generator the loop uses.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        deterministic: ask torch for deterministic kernels (``use_deterministic_algorithms``).
        eval_batch_size: batch size of the evaluation passes.
        drop_last: drop the last incomplete training batch of each epoch.
        log_layer_stats: record ``layer_stats()`` of modules that have it after each val pass
            (with ``track_activity=True`` set on modules that have that attribute).
    """

    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 0.05
    lr_scaling: str = "none"
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False
    wd_exclude_1d: bool = False
    schedule: str = "none"
    step_size: int | list[int] = 30
    step_gamma: float = 0.1
    warmup_epochs: int | float = 0
    augment: str | None = None
    amp: bool = False
    amp_dtype: str = "float16"
    class_weights: str = "none"
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    seed: int = 0
    device: str = "auto"
    deterministic: bool = False
    eval_batch_size: int = 512
    drop_last: bool = True
    log_layer_stats: bool = True

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ValueError / TypeError naming the first bad field."""

        def bad(name: str, expected: str, exc: type[Exception] = ValueError) -> None:
            raise exc(f"TrainConfig.{name} must be {expected}, got {getattr(self, name)!r}")

        for name in ("epochs", "batch_size", "eval_batch_size"):
            v = getattr(self, name)
            if not _is_int(v):
                bad(name, "an int >= 1", TypeError)
            if v < 1:
                bad(name, "an int >= 1")
        if not _is_int(self.seed):
            bad("seed", "an int", TypeError)
        for name, choices in _CHOICES.items():
            v = getattr(self, name)
            if not isinstance(v, str) or v.lower() not in choices:
                bad(name, "one of " + ", ".join(map(repr, choices)))
            setattr(self, name, v.lower())
        if not _is_num(self.lr) or self.lr <= 0:
            bad("lr", "a finite number > 0")
        if not _is_num(self.momentum) or not 0 <= self.momentum < 1:
            bad("momentum", "a number in [0, 1)")
        if not _is_num(self.weight_decay) or self.weight_decay < 0:
            bad("weight_decay", "a number >= 0")
        if not _is_num(self.step_gamma) or not 0 < self.step_gamma <= 1:
            bad("step_gamma", "a number in (0, 1]")
        if not _is_num(self.label_smoothing) or not 0 <= self.label_smoothing < 1:
            bad("label_smoothing", "a number in [0, 1)")
        if not _is_num(self.warmup_epochs) or self.warmup_epochs < 0:
            bad("warmup_epochs", "a number >= 0")
        if self.grad_clip is not None and (not _is_num(self.grad_clip) or self.grad_clip <= 0):
            bad("grad_clip", "None or a number > 0")
        ss = self.step_size
        if _is_int(ss):
            if ss < 1:
                bad("step_size", "an int >= 1 or a list of increasing milestone epochs")
        elif isinstance(ss, (list, tuple)) and all(_is_int(m) and m >= 1 for m in ss):
            if list(ss) != sorted(set(ss)):
                bad("step_size", "a strictly increasing list of milestone epochs")
            self.step_size = list(ss)
        else:
            bad("step_size", "an int >= 1 or a list of increasing milestone epochs", TypeError)
        if self.augment is not None:
            if not isinstance(self.augment, str):
                bad("augment", "None or an augmentation spec string", TypeError)
            if self.augment.strip().lower() in ("", "none"):
                self.augment = None
        dev = self.device
        if not isinstance(dev, str) or not (
            dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())
        ):
            bad("device", "'auto', 'cpu', 'cuda' or 'cuda:N'")
        for name in ("nesterov", "amp", "deterministic", "log_layer_stats", "drop_last",
                     "wd_exclude_1d"):
            if not isinstance(getattr(self, name), bool):
                bad(name, "a bool", TypeError)
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("TrainConfig.nesterov=True needs optimizer='sgd' and momentum > 0")

    # ------------------------------------------------------------------------------------------
    @property
    def effective_lr(self) -> float:
        """The optimizer's base rate: ``lr × batch_size`` under linear scaling, else ``lr``."""
        return self.lr * self.batch_size if self.lr_scaling == "linear" else self.lr

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.init)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys raise ValueError (with close matches)."""
        if not isinstance(d, Mapping):
            raise TypeError(f"TrainConfig.from_dict expects a mapping, got {type(d).__name__}")
        known = cls.field_names()
        unknown = [k for k in d if k not in known]
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(str(k), known, n=1)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(
                f"unknown TrainConfig key(s): {', '.join(hints)}. Known keys: {', '.join(known)}"
            )
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        """A plain dict of the settings (lists, not tuples; JSON-serialisable)."""
        out = {name: getattr(self, name) for name in self.field_names()}
        if isinstance(out["step_size"], (list, tuple)):
            out["step_size"] = list(out["step_size"])
        return out

    def replace(self, **changes: Any) -> TrainConfig:
        return self.from_dict({**self.to_dict(), **changes})
