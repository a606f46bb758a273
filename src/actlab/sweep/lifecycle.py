"""Process life cycle of a sweep: graceful stop on SIGINT/SIGTERM, workers that die with their
parent.

* :class:`GracefulStop` turns the first SIGINT / SIGTERM into a *stop request*: no new cell
  starts, running cells stop right after their current epoch (whose checkpoint is written), and
  the sweep then raises :class:`SweepInterrupted` (exit status 128 + signal: 130 for Ctrl-C,
  143 for SIGTERM). A second signal stops at once (the cells' last checkpoints remain).
* :func:`die_with_parent` makes a worker process end when its parent ends, even after kill -9
  of the parent: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` on Linux plus a watchdog thread that polls
  ``os.getppid()`` (every other platform, and the moment between fork and prctl).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from typing import Any

__all__ = ["GracefulStop", "StopRequested", "SweepInterrupted", "die_with_parent"]

_PR_SET_PDEATHSIG = 1


class StopRequested(Exception):
    """Raised inside a cell after an epoch when a stop was requested; the cell stays 'running'
    with its checkpoint, to be resumed by the next run."""


class SweepInterrupted(KeyboardInterrupt):
    """The sweep stopped on a signal; ``exit_code`` is 128 + the signal number."""

    def __init__(self, signum: int, outcome: Any = None) -> None:
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name}; re-run the same command to resume")
        self.signum = signum
        self.exit_code = 128 + signum
        self.outcome = outcome


class GracefulStop:
    """Context manager: install SIGINT/SIGTERM handlers that set ``event`` (first signal) or
    stop at once (second signal). Outside the main thread it installs nothing.

    ``event`` is any object with ``set()``/``is_set()``/``wait()`` (a ``threading.Event``, or a
    ``multiprocessing`` Event shared with worker processes).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, event: Any = None, *, message: bool = True) -> None:
        self.event = event if event is not None else threading.Event()
        self.signum: int | None = None
        self.message = message
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.event.is_set():
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        self.signum = signum
        self.event.set()
        if self.message:
            print(f"\nactlab: {signal.Signals(signum).name}: no new cells start; running cells "
                  "stop after their current epoch (send it again to stop at once)",
                  file=sys.stderr, flush=True)

    def is_set(self) -> bool:
        return bool(self.event.is_set())

    def wait(self, seconds: float) -> bool:
        return bool(self.event.wait(seconds))

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def raise_if_stopped(self, outcome: Any = None) -> None:
        """Raise :class:`SweepInterrupted` when a signal asked the sweep to stop."""
        if self.signum is not None:
            raise SweepInterrupted(self.signum, outcome)


def _set_pdeathsig(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):  # pragma: no cover - no prctl
        return False


def die_with_parent(parent_pid: int, *, poll_s: float = 0.5) -> None:
    """End this process (``os._exit(1)``) as soon as ``parent_pid`` is no longer its parent."""
    _set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent_pid:
                with contextlib.suppress(Exception):
                    sys.stderr.flush()
                os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
