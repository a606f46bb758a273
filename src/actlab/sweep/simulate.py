"""A stand-in executor that pretends to train: for dry runs (``actlab run --dry-run``) and tests.

:func:`simulate_cell` follows the contract of ``actlab.train.train_model`` as the sweep sees it:
one ``on_epoch(epoch, record)`` call per epoch *after* the epoch's checkpoint is written, resume
from an existing checkpoint, and a result with ``history``, ``metrics``, ``wall_time``,
``peak_mem_mb`` and ``epochs_done``. The numbers are deterministic functions of the cell config
(no training happens), so a dry run checks a spec, the grid, the store and resuming in seconds.

``ACTLAB_SIMULATE_EPOCH_SECONDS`` (default 0) makes each simulated epoch sleep that long.
``ACTLAB_SIMULATE_LOG=<file>`` appends one line ``<pid> <cell key> <epoch>`` per simulated epoch
(tests use it to check that concurrent runs never train an epoch twice).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actlab.train.checkpoint import CorruptCheckpoint

__all__ = ["SimulatedResult", "simulate_cell"]


@dataclass
class SimulatedResult:
    """Same fields as ``actlab.train.TrainResult``."""

    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    wall_time: float = 0.0
    peak_mem_mb: float = 0.0
    epochs_done: int = 0


def _unit(text: str) -> float:
    """A deterministic number in [0, 1) from a string."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16) / 16**12


def _record(config: dict[str, Any], epoch: int, epochs: int) -> dict[str, Any]:
    layer = _unit(f"{config['act']}/{config['norm']}")  # the "quality" of the layer pair
    noise = _unit(json.dumps(config, sort_keys=True) + f"/{epoch}")
    progress = 1.0 - math.exp(-3.0 * epoch / max(epochs, 1))
    acc = min(0.999, (0.1 + 0.8 * progress) * (0.93 + 0.06 * layer) + 0.01 * noise)
    loss = -math.log(max(acc, 1e-3)) + 0.05 * noise
    return {
        "epoch": epoch, "lr": float(config["train"].get("lr", 0.05)),
        "train_loss": loss * 0.9, "train_acc": min(0.999, acc + 0.02),
        "val_loss": loss, "val_acc": acc, "test_loss": loss * 1.01, "test_acc": acc - 0.005,
        "epoch_time": 0.0, "layer_stats": {},
    }


def _write_atomic(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)


def _log_epoch(ckpt: Path | None, epoch: int) -> None:
    log = os.environ.get("ACTLAB_SIMULATE_LOG")
    if log:
        key = ckpt.stem if ckpt is not None else "-"
        with open(log, "a", encoding="ascii") as f:  # one short append: atomic on POSIX
            f.write(f"{os.getpid()} {key} {epoch}\n")


def simulate_cell(
    config: dict[str, Any],
    *,
    runtime: dict[str, Any],
    checkpoint_path: str | None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None,
) -> SimulatedResult:
    """Pretend to train the cell ``config`` (see the module docstring)."""
    start = time.perf_counter()
    epochs = int(config["train"].get("epochs", 1))
    delay = float(os.environ.get("ACTLAB_SIMULATE_EPOCH_SECONDS", "0") or 0)
    history: list[dict[str, Any]] = []
    ckpt = Path(checkpoint_path) if checkpoint_path else None
    if ckpt is not None and ckpt.exists():
        try:
            history = list(json.loads(ckpt.read_text())["history"])
        except (ValueError, KeyError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
            raise CorruptCheckpoint(ckpt, f"{type(exc).__name__}: {exc}") from None
    for epoch in range(len(history) + 1, epochs + 1):
        if delay:
            time.sleep(delay)
        record = _record(config, epoch, epochs)
        _log_epoch(ckpt, epoch)
        history.append(record)
        if ckpt is not None:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(ckpt, {"epoch": epoch, "history": history})
        if on_epoch is not None:
            on_epoch(epoch, dict(record))
    last = history[-1] if history else _record(config, 0, epochs)
    metrics = {k: float(last[k]) for k in ("test_acc", "test_loss", "val_acc", "val_loss",
                                           "train_acc", "train_loss")}
    metrics["num_params"] = 1000.0
    return SimulatedResult(history=history, metrics=metrics,
                           wall_time=time.perf_counter() - start, peak_mem_mb=0.0,
                           epochs_done=len(history))
