"""Atomic checkpoint files that load with ``torch.load(..., weights_only=True)``.

A checkpoint is a dict of tensors and plain containers only::

    {"format": 1, "epoch": int, "config": dict, "history": list[dict],
     "model": state_dict, "optimizer": state_dict, "scheduler": state_dict,
     "scaler": state_dict | None, "rng": {"torch", "cuda", "numpy", "python", "generator"}}

It is written to ``<path>.tmp`` in the same directory and moved over ``path`` with
``os.replace``, so an interrupted write never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint"]

CHECKPOINT_FORMAT = 1
_REQUIRED = ("format", "epoch", "config", "history", "model", "optimizer", "scheduler", "rng")


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
    """Load a checkpoint written by :func:`save_checkpoint` (with ``weights_only=True``)."""
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{os.fspath(path)} is not an actlab training checkpoint of format "
            f"{CHECKPOINT_FORMAT} (got {type(state).__name__} "
            f"with format {state.get('format') if isinstance(state, dict) else None!r})"
        )
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise ValueError(f"checkpoint {os.fspath(path)} lacks key(s) {missing}")
    return state
