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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from actlab.schema import (
    Bool,
    Checker,
    Choice,
    Device,
    Float,
    Int,
    Invalid,
    Milestones,
    Optional,
    OptionalName,
    did_you_mean,
)

__all__ = ["TrainConfig", "setting", "device_problem", "LAYER_BACKENDS"]

#: ``actlab.functional.backends.BACKENDS``, spelled out so that this module does not import torch
LAYER_BACKENDS = ("eager", "compiled", "auto")


def setting(default: Any, check: Checker) -> Any:
    """A ``TrainConfig`` field: its default and the checker that validates and normalises it.

    This is the one definition of a training setting: ``TrainConfig`` validates with it, and the
    experiment spec (``actlab.sweep.spec``), ``actlab run --set`` and the README reference read
    it from the field's metadata (``dataclasses.fields(TrainConfig)``). A new recipe option is
    one new ``setting`` line here (plus its use in the loop).
    """
    return field(default=default, metadata={"check": check})


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
        adam_beta2, adam_eps: Adam/AdamW's second-moment decay and epsilon (torch's defaults
            0.999 and 1e-8; Vaswani et al. 2017 used 0.98 and 1e-9).
        weight_decay: weight-decay coefficient.
        wd_exclude_1d: do not decay parameters with ``ndim <= 1`` (biases, norm affines and
            scalar activation parameters). Off by default: every parameter is decayed.
        schedule: ``"none"``, ``"cosine"`` (to 0 at the last step), ``"step"`` (multiply by
            ``step_gamma`` every ``step_size`` epochs, or at each epoch of a list of milestones),
            ``"inverse_sqrt"`` (``sqrt(W / step)`` after a warm-up of ``W`` steps: Vaswani
            et al. 2017's ``d^-0.5·min(step^-0.5, step·W^-1.5)`` with ``lr = (d·W)^-0.5``, the
            peak rate; needs a warm-up)
            or ``"poly"`` (DeepLab's ``(1 - t)^0.9`` decay over the steps after warm-up).
        warmup_epochs: linear warm-up length in epochs (the rate climbs from ``1/W`` to 1 over
            the first ``W`` steps, then the schedule proper takes over).
        warmup_steps: the warm-up length in optimizer steps instead (None: use
            ``warmup_epochs``; setting both is refused).
        augment: augmentation spec for ``actlab.data.build_augment`` (None: no augmentation).
        amp: mixed precision where supported: fp16 autocast + GradScaler on CUDA; on CPU only
            when ``amp_dtype="bfloat16"`` is asked for.
        amp_dtype: ``"float16"`` or ``"bfloat16"``.
        class_weights: ``"none"`` or ``"enet"`` (Paszke et al. 2016: ``w_c = 1/ln(1.02 + p_c)``
            with ``p_c`` the class frequency in the training labels, normalised to mean 1).
        label_smoothing: cross-entropy label smoothing in ``[0, 1)``.
        loss: training criterion: ``"ce"`` (cross-entropy) or ``"contour_iou"`` (segmentation
            only: soft IoU of the class contours, Deep Control; see ``actlab.train.contour``).
            ``class_weights`` and ``label_smoothing`` apply to ``"ce"`` only.
        grad_clip: clip the global gradient 2-norm to this value (None: no clipping).
        gems: Deep Control's GEMS (B. Ruff 2017): ``"none"``, ``"channel"`` or ``"layer"``
            — divide each ReLU-gated layer's gradient by its fraction of non-saturated points,
            per output channel or per layer (:class:`actlab.train.gems.GEMS`; before clipping).
        gems_floor: lower bound of that fraction (largest gradient scale ``1/gems_floor``).
        seed: seed of every random number generator the loop uses.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        deterministic: ask torch for deterministic kernels (``use_deterministic_algorithms``).
        eval_batch_size: batch size of the evaluation passes.
        drop_last: drop the last incomplete training batch of each epoch.
        log_layer_stats: record ``layer_stats()`` of modules that have it after each val pass
            (with ``track_activity=True`` set on modules that have that attribute).
        loader: ``"memory"`` (index the in-memory training tensors) or ``"stream"`` (a
            ``DataLoader`` over splits read per sample from disk; same numbers for the same
            seed). Streamed splits always go through the ``DataLoader``.
        num_workers: ``DataLoader`` worker processes for streamed data (0: the training
            process reads; > 0: persistent workers; memory is pinned on CUDA).
        layer_backend: the math of the actlab layers during the run
            (:mod:`actlab.functional.backends`): ``"eager"``, ``"compiled"`` or ``"auto"``;
            None (default): the process's backend (``ACTLAB_BACKEND``, ``set_backend``; the
            library default is ``"auto"``). The run records the backend it used in
            ``TrainResult.config``. Compiled kernels agree with eager math to a few ulps, not
            bitwise, so trajectories differ between backends.
    """

    epochs: int = setting(10, Int(1))
    batch_size: int = setting(32, Int(1))
    optimizer: str = setting("sgd", Choice("sgd", "adam", "adamw"))
    lr: float = setting(0.05, Float(0.0, lo_open=True))
    lr_scaling: str = setting("none", Choice("none", "linear"))
    momentum: float = setting(0.9, Float(0.0, 1.0, hi_open=True))
    adam_beta2: float = setting(0.999, Float(0.0, 1.0, hi_open=True))
    adam_eps: float = setting(1e-8, Float(0.0, lo_open=True))
    weight_decay: float = setting(0.0, Float(0.0))
    nesterov: bool = setting(False, Bool)
    wd_exclude_1d: bool = setting(False, Bool)
    schedule: str = setting("none", Choice("none", "cosine", "step", "inverse_sqrt", "poly"))
    step_size: int | list[int] = setting(30, Milestones)
    step_gamma: float = setting(0.1, Float(0.0, 1.0, lo_open=True))
    warmup_epochs: int | float = setting(0, Float(0.0))
    warmup_steps: int | None = setting(None, Optional(Int(1)))
    augment: str | None = setting(None, OptionalName())
    amp: bool = setting(False, Bool)
    amp_dtype: str = setting("float16", Choice("float16", "bfloat16"))
    class_weights: str = setting("none", Choice("none", "enet"))
    label_smoothing: float = setting(0.0, Float(0.0, 1.0, hi_open=True))
    # ---- criterion (segmentation: Deep Control's contour-IoU loss) ---------------------------
    loss: str = setting("ce", Choice("ce", "contour_iou"))
    grad_clip: float | None = setting(None, Optional(Float(0.0, lo_open=True)))
    gems: str = setting("none", Choice("none", "channel", "layer"))
    gems_floor: float = setting(0.01, Float(0.0, 1.0, lo_open=True))
    seed: int = setting(0, Int())
    device: str = setting("auto", Device)
    deterministic: bool = setting(False, Bool)
    eval_batch_size: int = setting(512, Int(1))
    drop_last: bool = setting(True, Bool)
    log_layer_stats: bool = setting(True, Bool)
    # ---- data loading (data at scale; bookkeeping: they do not change results) ---------------
    loader: str = setting("memory", Choice("memory", "stream"))
    num_workers: int = setting(0, Int(0))
    # ---- layer math (results differ in the last bits between backends) -----------------------
    layer_backend: str | None = setting(None, Optional(Choice(*LAYER_BACKENDS)))

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Check and normalise every field with its checker; raise ValueError (TypeError for a
        value of the wrong type) naming the first bad field, then the cross-field rules."""
        for name, check in self.checkers().items():
            value = getattr(self, name)
            try:
                setattr(self, name, check(value))
            except Invalid as bad:
                exc = TypeError if bad.type_error else ValueError
                raise exc(f"TrainConfig.{name} must be {bad.expected}, got {value!r}") from None
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("TrainConfig.nesterov=True needs optimizer='sgd' and momentum > 0")
        if self.warmup_steps is not None and self.warmup_epochs > 0:
            raise ValueError("TrainConfig: set warmup_steps or warmup_epochs, not both")
        if self.schedule == "inverse_sqrt" and self.warmup_steps is None \
                and self.warmup_epochs == 0:
            raise ValueError("TrainConfig.schedule='inverse_sqrt' needs a warm-up "
                             "(warmup_steps or warmup_epochs > 0)")

    @classmethod
    def checkers(cls) -> dict[str, Checker]:
        """``{field name: checker}`` in field order (the schema of the training settings)."""
        return {f.name: f.metadata["check"] for f in dataclasses.fields(cls) if f.init}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """``{field name: default}`` in field order."""
        return {f.name: f.default for f in dataclasses.fields(cls) if f.init}

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
                close = did_you_mean(str(k), known)  # "; did you mean 'x'?" or ""
                hints.append(f"{k!r}" + (f" ({close[2:]})" if close else ""))
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


def device_problem(device: str) -> str | None:
    """Why ``device`` cannot be used on this machine, or None when it can.

    ``TrainConfig`` checks the spelling only (a config may be written on one machine and run on
    another); this asks torch whether the device exists here: ``cuda``/``cuda:N`` need CUDA with
    more than N devices, ``mps`` needs the Apple-silicon backend. ``auto`` and ``cpu`` always work.
    """
    import torch

    if device in ("auto", "cpu"):
        return None
    if device == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            return "the MPS backend is not available on this machine (use 'cpu' or 'auto')"
        return None
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device[5:]) if device.startswith("cuda:") else 0
    if count == 0:
        return "CUDA is not available on this machine (use 'cpu' or 'auto')"
    if index >= count:
        have = ", ".join(f"cuda:{i}" for i in range(count))
        return f"this machine has {count} CUDA device{'s' if count > 1 else ''} ({have})"
    return None
