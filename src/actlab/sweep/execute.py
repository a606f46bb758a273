"""Run one cell for real: load its data, build its model, train it.

An *executor* is any callable ``executor(config, *, runtime, checkpoint_path, on_epoch)`` that
returns an object with the fields of ``actlab.train.TrainResult`` (history, metrics, wall_time,
peak_mem_mb, epochs_done). :func:`execute_cell` is the real one; ``actlab.sweep.simulate`` has a
fast stand-in for dry runs and tests. Executors are named by ``"module:function"`` so that worker
processes can import them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch

from actlab.registry import act_factory, norm_factory

__all__ = ["Executor", "execute_cell", "resolve_executor", "DEFAULT_EXECUTOR"]

Executor = Callable[..., Any]

DEFAULT_EXECUTOR = "actlab.sweep.execute:execute_cell"


def resolve_executor(ref: str | Executor | None) -> Executor:
    """A callable from ``"package.module:function"`` (None gives :func:`execute_cell`)."""
    if ref is None:
        ref = DEFAULT_EXECUTOR
    if callable(ref):
        return ref
    if not isinstance(ref, str) or ":" not in ref:
        raise ValueError(f"executor must be a callable or 'module:function', got {ref!r}")
    module_name, _, attr = ref.partition(":")
    fn = getattr(importlib.import_module(module_name), attr, None)
    if not callable(fn):
        raise ValueError(f"executor {ref!r}: {module_name} has no callable {attr!r}")
    return fn


def execute_cell(
    config: dict[str, Any],
    *,
    runtime: dict[str, Any],
    checkpoint_path: str | None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None,
    distributed: bool = False,
) -> Any:
    """Train the cell described by ``config`` (see ``actlab.sweep.grid``); returns a TrainResult.

    The model is initialised from ``torch.manual_seed(config["seed"])``, so a cell gives the
    same network whatever process runs it and whatever ran there before. The data split uses
    ``config["split_seed"]``, the same for every seed of a study.

    ``runtime`` may ask for experiment trackers (``actlab.train.loggers``); ``distributed``
    trains data-parallel under torchrun (``actlab.train.launch``).
    """
    from actlab.data import load_dataset
    from actlab.models import create_model
    from actlab.train import TrainConfig, train_model
    from actlab.train.loggers import loggers_for_cell

    # ---- data-at-scale / tracking hooks (actlab.train.loggers, streaming) ---------------------
    loading = {k: runtime[k] for k in ("loader", "num_workers") if k in runtime}
    stream = {"stream": True} if loading.get("loader") == "stream" else {}
    kfold = {k: config[k] for k in ("folds", "fold") if k in config}
    # ------------------------------------------------------------------------------------------
    splits = load_dataset(
        config["dataset"],
        data_dir=runtime.get("data_dir"),
        val_fraction=config["val_fraction"],
        seed=config["split_seed"],
        **config.get("dataset_kwargs", {}),
        **stream,
        **kfold,
    )
    act: Any = config["act"]
    if config.get("act_kwargs"):
        act = act_factory(act, **config["act_kwargs"])
    norm: Any = config["norm"]
    if config.get("norm_kwargs"):
        norm = norm_factory(norm, **config["norm_kwargs"])
    torch.manual_seed(int(config["seed"]))
    model = create_model(
        config["model"],
        act=act,
        norm=norm,
        num_classes=splits.num_classes,
        in_channels=splits.in_channels,
        **config.get("model_kwargs", {}),
    )
    cfg = TrainConfig.from_dict(
        {**config["train"], "device": runtime.get("device", "auto"), **loading,
         "layer_backend": config.get("layer_backend", "eager")}  # see actlab.sweep.grid
    )
    extra: dict[str, Any] = {"distributed": True} if distributed else {}
    loggers = loggers_for_cell(config, runtime) if not distributed or _rank() == 0 else []
    if loggers:
        extra["loggers"] = loggers
    if config.get("task_kwargs"):
        extra["task_options"] = dict(config["task_kwargs"])
    return train_model(
        model, splits, cfg, checkpoint_path=checkpoint_path, on_epoch=on_epoch, progress=False,
        **extra,
    )


def _rank() -> int:
    import os

    return int(os.environ.get("RANK", "0") or 0)
