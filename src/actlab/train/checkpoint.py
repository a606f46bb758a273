"""Atomic checkpoint files that load with ``torch.load(..., weights_only=True)``.

A checkpoint is a dict of tensors and plain containers only::

    {"format": 1, "epoch": int, "config": dict, "history": list[dict],
     "model": state_dict, "optimizer": state_dict, "scheduler": state_dict,
     "scaler": state_dict | None, "rng": {"torch", "cuda", "numpy", "python", "generator"}}

It is written to ``<path>.tmp`` in the same directory and moved over ``path`` with
``os.replace``, so an interrupted write never leaves a truncated checkpoint behind. A file that
is damaged anyway (a full disk, a copy cut short) raises :class:`CorruptCheckpoint` naming it;
:func:`quarantine` moves such a file aside (kept for inspection) so that training can restart.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

__all__ = ["CHECKPOINT_FORMAT", "CorruptCheckpoint", "save_checkpoint", "load_checkpoint",
           "quarantine"]

CHECKPOINT_FORMAT = 1
_REQUIRED = ("format", "epoch", "config", "history", "model", "optimizer", "scheduler", "rng")


class CorruptCheckpoint(ValueError):
    """A checkpoint file exists but cannot be read (truncated, garbage, empty, wrong format).

    ``path`` is the file; the message names it in one line.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        super().__init__(f"checkpoint {os.fspath(path)} is unreadable: {reason}")


def quarantine(path: str | os.PathLike[str]) -> Path:
    """Rename ``path`` to ``<path>.corrupt-<UTC time>`` (never overwriting) and return the new
    path, so that a damaged checkpoint is kept for inspection but no longer resumed from."""
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.replace(path, target)
    return target


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write ``state`` atomically to ``path`` (parent directories are created)."""
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks required key(s) {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (with ``weights_only=True``).

    Raises ``FileNotFoundError`` when there is no file and :class:`CorruptCheckpoint` (naming
    the file) when it cannot be read or is not an actlab checkpoint.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint {os.fspath(path)}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CorruptCheckpoint(path, f"{type(exc).__name__}: {first}"[:300]) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CorruptCheckpoint(
            path, f"not an actlab training checkpoint of format {CHECKPOINT_FORMAT} (got "
            f"{type(state).__name__} with format "
            f"{state.get('format') if isinstance(state, dict) else None!r})"
        )
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise CorruptCheckpoint(path, f"lacks key(s) {missing}")
    return state
