"""Progress display of a sweep: one overall bar (cells) and one bar per running cell (epochs).

Cells report *events* ``(kind, cell_key, info)``: ``("start", key, {"label", "epochs",
"initial"})``, ``("epoch", key, {"epoch", "metric"})`` and ``("end", key, {"status"})``
(status 'done' or 'failed' counts the cell as finished; 'interrupted' or 'busy' only closes
its bar). In the main process they go straight to :class:`ProgressBoard`; worker processes put
them on a ``multiprocessing`` queue that the parent drains into the board
(:class:`QueueReporter`).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping
from typing import Any, Protocol

from tqdm import tqdm

__all__ = ["Reporter", "ProgressBoard", "QueueReporter", "format_metric"]

#: record keys shown next to a running cell's bar, the first present ones win
_SHOWN = ("val_acc", "val_miou", "val_pixel_acc", "val_loss", "train_loss")


def format_metric(record: Mapping[str, Any]) -> str:
    """``"val_acc=0.9312 train_loss=0.213"`` from an epoch record."""
    parts = []
    for key in _SHOWN:
        value = record.get(key)
        if isinstance(value, (int, float)):
            parts.append(f"{key}={value:.4g}")
        if len(parts) == 2:
            break
    return " ".join(parts)


class Reporter(Protocol):
    def __call__(self, kind: str, key: str, info: dict[str, Any]) -> None: ...


class QueueReporter:
    """A picklable reporter that forwards events to a queue (for worker processes)."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def __call__(self, kind: str, key: str, info: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):  # progress must never break a run
            self.queue.put_nowait((kind, key, info))


class ProgressBoard:
    """tqdm bars for a sweep; a no-op when ``enabled`` is False."""

    def __init__(self, total: int, *, skipped: int = 0, desc: str = "cells", enabled: bool = True,
                 file: Any = None) -> None:
        self.enabled = enabled
        self.file = file if file is not None else sys.stderr
        isatty = getattr(self.file, "isatty", lambda: False)()
        #: per-cell bars only on a terminal; logs get the overall bar, at most every 10 s
        self.cell_bars = enabled and isatty
        self.failed = 0
        self._bars: dict[str, Any] = {}
        self._slots: dict[str, int] = {}
        self.overall = tqdm(total=total, initial=skipped, desc=desc, unit="cell",
                            position=0, leave=True, disable=not enabled, file=self.file,
                            dynamic_ncols=True, mininterval=0.1 if isatty else 10.0)

    def _slot(self) -> int:
        used = set(self._slots.values())
        slot = 1
        while slot in used:
            slot += 1
        return slot

    def __call__(self, kind: str, key: str, info: dict[str, Any]) -> None:
        if kind == "start":
            self.end_bar(key)
            slot = self._slot()
            self._slots[key] = slot
            self._bars[key] = tqdm(
                total=info.get("epochs"), initial=int(info.get("initial", 0)),
                desc=str(info.get("label", key[:10])), unit="ep", position=slot, leave=False,
                disable=not self.cell_bars, file=self.file, dynamic_ncols=True,
            )
        elif kind == "epoch":
            bar = self._bars.get(key)
            if bar is not None:
                bar.n = int(info.get("epoch", bar.n + 1))
                if info.get("metric"):
                    bar.set_postfix_str(str(info["metric"]), refresh=False)
                bar.refresh()
        elif kind == "end":
            self.end_bar(key)
            if info.get("status") in ("interrupted", "busy"):  # not finished: no count
                return
            if info.get("status") == "failed":
                self.failed += 1
                self.overall.set_postfix_str(f"failed={self.failed}", refresh=False)
            self.overall.update(1)

    def end_bar(self, key: str) -> None:
        bar = self._bars.pop(key, None)
        self._slots.pop(key, None)
        if bar is not None:
            bar.close()

    def write(self, message: str) -> None:
        """Print a line above the bars."""
        if self.enabled:
            tqdm.write(message, file=self.file)

    def close(self) -> None:
        for key in list(self._bars):
            self.end_bar(key)
        self.overall.close()
