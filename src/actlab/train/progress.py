"""Per-training progress: a tqdm bar over epochs, nothing, or a user callable.

``progress=True`` shows a bar (``epochs`` total) with the current headline metric,
``progress=False`` shows nothing, and a callable is called as ``progress(epoch, epochs, record)``
after every epoch (the sweep runner uses this to drive its own display).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["EpochProgress", "ProgressArg", "headline"]

ProgressArg = bool | Callable[[int, int, dict[str, Any]], None]

#: record keys shown on the bar, the first two present win
_SHOWN = ("val_acc", "val_miou", "train_loss", "val_loss")


def headline(record: Mapping[str, Any]) -> str:
    """``"val_acc=0.9312 train_loss=0.2130"`` from an epoch record."""
    parts = [f"{k}={record[k]:.4f}" for k in _SHOWN if isinstance(record.get(k), (int, float))]
    return " ".join(parts[:2])


class EpochProgress:
    """Dispatches epoch updates to a tqdm bar, a callable, or nowhere."""

    def __init__(self, progress: ProgressArg, epochs: int, initial: int = 0) -> None:
        if not (isinstance(progress, bool) or callable(progress)):
            raise TypeError(
                f"progress must be True, False or a callable(epoch, epochs, record), "
                f"got {progress!r}"
            )
        self.epochs = epochs
        self.callback = progress if callable(progress) else None
        self.bar = None
        if progress is True:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=epochs, initial=initial, desc="train", unit="epoch",
                            dynamic_ncols=True, leave=False)

    def update(self, epoch: int, record: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(headline(record), refresh=False)
            self.bar.update(1)
        if self.callback is not None:
            self.callback(epoch, self.epochs, record)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
