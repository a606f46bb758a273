"""Cell leases: which process trains which cell, so that concurrent runs never train one twice.

A lease is a row of ``leases(cell_key, owner, claimed_at, heartbeat, expires)``; the owner is
``host:pid:random``. A process *claims* a cell inside a ``BEGIN IMMEDIATE`` transaction (so two
processes can never both win), *renews* it while training (a :class:`Heartbeat` thread every
``lease_s / 3`` seconds) and *releases* it when the cell ends. A process that dies without
releasing (kill -9, power loss) stops renewing; once ``expires`` has passed any other process may
claim the cell and resumes it from its checkpoint. A dead owner on the same host (its pid no
longer runs) is noticed at once, without waiting for the expiry. Times are ``time.time()``
seconds, so hosts sharing one store need roughly synchronised clocks (well under ``lease_s``).

The SQL functions here take a connection that is already inside a write transaction; use them
through :class:`actlab.store.ResultStore` (``claim``, ``renew``, ``release``, ``leases``).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from actlab.store.schema import LEASE_COLUMNS

__all__ = ["Lease", "Heartbeat", "make_owner", "default_lease_seconds", "LEASE_ENV",
           "LEASE_COLUMNS"]

#: environment variable with the lease duration in seconds
LEASE_ENV = "ACTLAB_LEASE_SECONDS"
DEFAULT_LEASE_SECONDS = 60.0


def default_lease_seconds() -> float:
    """``$ACTLAB_LEASE_SECONDS`` or 60: how long a silent owner keeps a cell."""
    text = os.environ.get(LEASE_ENV, "").strip()
    if not text:
        return DEFAULT_LEASE_SECONDS
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{LEASE_ENV}={text!r} is not a number of seconds") from None
    if not value > 0:
        raise ValueError(f"{LEASE_ENV}={text!r} must be > 0")
    return value


def make_owner() -> str:
    """A lease owner id unique to this process: ``host:pid:8 hex digits``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Lease:
    """One row of ``leases``."""

    cell_key: str
    owner: str
    claimed_at: float
    heartbeat: float
    expires: float

    def alive(self, now: float | None = None) -> bool:
        return self.expires > (time.time() if now is None else now)


def owner_is_dead(owner: str) -> bool:
    """True when ``owner`` (``host:pid:...``) names a process on this host that no longer runs
    (or is a zombie); False when it runs, or is on another host (only its lease can tell)."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # Linux: a dead child not yet reaped by its parent is a zombie
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


def holder(con: sqlite3.Connection, cell_key: str) -> str | None:
    row = con.execute("SELECT owner FROM leases WHERE cell_key = ?", (cell_key,)).fetchone()
    return None if row is None else str(row[0])


def claim(con: sqlite3.Connection, cell_key: str, owner: str, *, lease_s: float) -> str:
    """'done' | 'busy' | 'claimed' (see ``ResultStore.claim``)."""
    row = con.execute("SELECT status FROM runs WHERE cell_key = ?", (cell_key,)).fetchone()
    if row is not None and row[0] == "done":
        return "done"
    now = time.time()
    lease = con.execute("SELECT owner, expires FROM leases WHERE cell_key = ?",
                        (cell_key,)).fetchone()
    if (lease is not None and lease[0] != owner and float(lease[1]) > now
            and not owner_is_dead(str(lease[0]))):
        return "busy"
    con.execute(
        "INSERT INTO leases (cell_key, owner, claimed_at, heartbeat, expires) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT(cell_key) DO UPDATE SET owner = excluded.owner, "
        "claimed_at = excluded.claimed_at, heartbeat = excluded.heartbeat, "
        "expires = excluded.expires",
        (cell_key, owner, now, now, now + float(lease_s)),
    )
    return "claimed"


def renew(con: sqlite3.Connection, cell_key: str, owner: str, *, lease_s: float) -> bool:
    now = time.time()
    return con.execute(
        "UPDATE leases SET heartbeat = ?, expires = ? WHERE cell_key = ? AND owner = ?",
        (now, now + float(lease_s), cell_key, owner),
    ).rowcount > 0


def release(con: sqlite3.Connection, cell_key: str, owner: str) -> bool:
    return con.execute("DELETE FROM leases WHERE cell_key = ? AND owner = ?",
                       (cell_key, owner)).rowcount > 0


class Heartbeat:
    """A daemon thread that renews one lease every ``lease_s / 3`` seconds on its own
    connection. ``lost`` is set when a renewal finds the lease gone (taken over)."""

    def __init__(self, db_path: Any, cell_key: str, owner: str, lease_s: float) -> None:
        self.db_path, self.cell_key, self.owner = db_path, cell_key, owner
        self.lease_s = float(lease_s)
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{cell_key[:8]}",
                                        daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def _run(self) -> None:
        from actlab.store.db import ResultStore
        from actlab.store.errors import StoreError

        try:
            store = ResultStore(self.db_path, timeout=max(1.0, self.lease_s / 3))
        except StoreError:  # pragma: no cover - the store vanished under us
            self.lost.set()
            return
        try:
            while not self._stop.wait(self.lease_s / 3):
                try:
                    if not store.renew(self.cell_key, self.owner, lease_s=self.lease_s):
                        self.lost.set()
                        return
                except StoreError:  # a busy store: try again at the next beat
                    continue
        finally:
            store.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
