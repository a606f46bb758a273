"""The results store: one SQLite file (WAL mode) with one row per cell of every study.

Tables (see :mod:`actlab.store.schema`)::

    runs(cell_key PRIMARY KEY,  -- sha1 of the canonical JSON of the cell's full config
         study, dataset, model, act, norm, seed, config (JSON),
         status ('running' | 'done' | 'failed'), history (JSON list of epoch records),
         metrics (JSON), wall_time, peak_mem_mb, versions (JSON), error, created_at, updated_at)
    leases(cell_key PRIMARY KEY, owner, claimed_at, heartbeat, expires)

Every write is one ``BEGIN IMMEDIATE`` transaction, so a process killed at any moment leaves
each row either before or after the write, never half-written, and the primary key makes
duplicate rows impossible. Several processes may write at once: WAL lets readers run alongside
the writer and ``busy_timeout`` makes writers wait for each other instead of failing.

``ResultStore(path, readonly=True)`` opens an existing store without ever writing to it (the
report does this): it works on a read-only file or folder, and does not migrate.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from actlab.store import leases as lease_sql
from actlab.store.errors import LeaseLost, StoreError
from actlab.store.leases import Lease
from actlab.store.rows import RunRow, dumps, merge_history
from actlab.store.schema import (
    IDENTITY,
    JSON_COLUMNS,
    RUN_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    STATUSES,
)

__all__ = ["ResultStore"]

_SELECT = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"
_ORDER = " ORDER BY study, dataset, model, act, norm, seed, cell_key"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class ResultStore:
    """Read and write (or, with ``readonly=True``, only read) the SQLite store at ``path``.

    For writing, the file (and its folder) is created on first use, switched to WAL mode and
    migrated to the current schema. One instance holds one connection; use one instance per
    process or thread. Usable as a context manager. Any SQLite failure (a damaged file, a full
    disk) is raised as a one-line :class:`StoreError` naming the file.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, readonly: bool = False, timeout: float = 120.0
    ) -> None:
        self.path = Path(path)
        self.readonly = bool(readonly)
        self.timeout = float(timeout)
        if self.path.is_dir():
            raise StoreError(f"results store path {str(self.path)!r} is a directory; "
                             "expected a .sqlite file")
        if self.readonly and not self.path.is_file():
            raise StoreError(f"results store {str(self.path)!r} does not exist")
        try:
            if self.readonly:
                self._con = self._connect_readonly()
                self.journal_mode = str(self._con.execute("PRAGMA journal_mode").fetchone()[0])
            else:
                self._con = self._connect_writable()
            tables = {r[0] for r in self._con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            cols = [r[1] for r in self._con.execute("PRAGMA table_info(runs)")]
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            raise StoreError(f"cannot use {str(self.path)!r} as a results store: {exc}") from None
        if "runs" not in tables:
            self._close_quietly()
            raise StoreError(f"{str(self.path)!r} is not a results store (no 'runs' table)")
        missing = [c for c in RUN_COLUMNS if c not in cols]
        if missing:
            self._close_quietly()
            raise StoreError(f"{str(self.path)!r}: table 'runs' lacks columns {missing}")
        self.has_leases = "leases" in tables

    # ------------------------------------------------------------------------------------------
    def _connect_writable(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None,
                              check_same_thread=False)
        self._con = con
        con.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        mode = self._retry(lambda: con.execute("PRAGMA journal_mode = WAL").fetchone())
        self.journal_mode = str(mode[0]).lower()
        con.execute("PRAGMA synchronous = NORMAL")
        version = int(con.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(f"{str(self.path)!r} has store schema version {version}, newer than "
                             f"this actlab's {SCHEMA_VERSION}; upgrade actlab")
        with self._write() as w:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    w.execute(statement)
            if version < SCHEMA_VERSION:
                w.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return con

    def _connect_readonly(self) -> sqlite3.Connection:
        """``mode=ro``; when that cannot open a WAL store (a read-only folder without the
        ``-shm`` file), ``immutable=1``, which is safe because nobody can write there."""
        uri = self.path.resolve().as_uri()
        last: sqlite3.Error | None = None
        for query in ("mode=ro", "mode=ro&immutable=1"):
            try:
                con = sqlite3.connect(f"{uri}?{query}", uri=True, timeout=self.timeout,
                                      isolation_level=None, check_same_thread=False)
                con.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
                con.execute("SELECT count(*) FROM sqlite_master").fetchone()
                return con
            except sqlite3.OperationalError as exc:
                last = exc
                if "unable to open" not in str(exc) and "readonly" not in str(exc):
                    raise
        assert last is not None
        raise last

    def _close_quietly(self) -> None:
        con = getattr(self, "_con", None)
        if con is not None:
            with contextlib.suppress(sqlite3.Error):
                con.close()

    def _retry(self, fn: Any, attempts: int = 50) -> Any:
        """Run ``fn`` again while SQLite reports the database as locked (beyond busy_timeout,
        e.g. while another connection switches the journal mode)."""
        for i in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or i == attempts - 1:
                    raise
                time.sleep(0.05 * (i + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, exc: sqlite3.Error) -> StoreError:
        if "locked" in str(exc) or "busy" in str(exc):
            return StoreError(f"results store {str(self.path)!r} stayed locked by another "
                              f"process for over {self.timeout:g} s ({exc})")
        return StoreError(f"results store {str(self.path)!r} is damaged or unusable: {exc}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE takes the write lock up front."""
        if self.readonly:
            raise StoreError(f"results store {str(self.path)!r} was opened read-only")
        con = self._con
        try:
            self._retry(lambda: con.execute("BEGIN IMMEDIATE"))
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None
        try:
            yield con
        except sqlite3.DatabaseError as exc:
            con.execute("ROLLBACK")
            raise self._error(exc) from None
        except BaseException:
            con.execute("ROLLBACK")
            raise
        else:
            try:
                con.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                raise self._error(exc) from None

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._con.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultStore({str(self.path)!r}{', readonly=True' if self.readonly else ''})"

    # ------------------------------------------------------------------------------------------
    # generic access
    # ------------------------------------------------------------------------------------------
    def upsert(self, row: Mapping[str, Any]) -> None:
        """Insert or replace the row ``row['cell_key']`` (columns as in the schema; JSON columns
        may be given as Python objects). ``created_at`` is kept for an existing row."""
        unknown = set(row) - set(RUN_COLUMNS)
        if unknown:
            raise ValueError(f"unknown column(s) {sorted(unknown)}; columns are {RUN_COLUMNS}")
        status = row.get("status")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        values = {c: row.get(c) for c in RUN_COLUMNS}
        for col in JSON_COLUMNS:
            if values[col] is not None and not isinstance(values[col], str):
                values[col] = dumps(values[col])
        now = _now()
        values["updated_at"] = row.get("updated_at") or now
        values["created_at"] = row.get("created_at") or now
        for col in ("cell_key", *IDENTITY):
            if values[col] is None:
                raise ValueError(f"column {col!r} is required")
        names = ", ".join(RUN_COLUMNS)
        marks = ", ".join("?" * len(RUN_COLUMNS))
        updates = ", ".join(f"{c} = excluded.{c}" for c in RUN_COLUMNS
                            if c not in ("cell_key", "created_at"))
        with self._write() as con:
            con.execute(
                f"INSERT INTO runs ({names}) VALUES ({marks}) "
                f"ON CONFLICT(cell_key) DO UPDATE SET {updates}",
                [values[c] for c in RUN_COLUMNS],
            )

    def get(self, cell_key: str) -> RunRow | None:
        """The row of ``cell_key``, or None."""
        rows = self._query(f"{_SELECT} WHERE cell_key = ?", (cell_key,))
        return RunRow.from_sql(rows[0]) if rows else None

    def list(
        self,
        *,
        study: str | Iterable[str] | None = None,
        status: str | None = None,
        keys: Iterable[str] | None = None,
    ) -> list[RunRow]:
        """Rows, optionally filtered (``study``: one name or several), ordered by (study,
        dataset, model, act, norm, seed, cell_key) so that reports are deterministic."""
        where, params = self._where(study, status, keys)
        return [RunRow.from_sql(r) for r in self._query(f"{_SELECT}{where}{_ORDER}", params)]

    def statuses(self, keys: Iterable[str] | None = None) -> dict[str, str]:
        """``{cell_key: status}`` for the given keys that have a row (all rows by default)."""
        where, params = self._where(None, None, keys)
        return dict(self._query(f"SELECT cell_key, status FROM runs{where}", params))

    def count(self, *, study: str | None = None, status: str | None = None) -> int:
        where, params = self._where(study, status, None)
        return int(self._query(f"SELECT COUNT(*) FROM runs{where}", params)[0][0])

    def delete(self, cell_key: str) -> bool:
        with self._write() as con:
            return con.execute("DELETE FROM runs WHERE cell_key = ?", (cell_key,)).rowcount > 0

    @staticmethod
    def _where(
        study: str | Iterable[str] | None, status: str | None, keys: Iterable[str] | None
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        if study is not None:
            studies = [study] if isinstance(study, str) else list(study)
            if not all(isinstance(s, str) for s in studies):
                raise TypeError(f"study must be a name or names (str), got {study!r}")
            clauses.append("study IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(studies))
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if keys is not None:
            keys = list(keys)
            clauses.append("cell_key IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(keys))
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    # ------------------------------------------------------------------------------------------
    # leases: which process trains which cell (see actlab.store.leases)
    # ------------------------------------------------------------------------------------------
    def claim(self, cell_key: str, owner: str, *, lease_s: float) -> str:
        """Claim ``cell_key`` for ``owner`` for ``lease_s`` seconds, atomically.

        Returns 'claimed' (the lease is now ``owner``'s, possibly taken over from an owner whose
        lease expired), 'done' (the cell is finished: nothing to do) or 'busy' (another owner
        holds a live lease).
        """
        with self._write() as con:
            return lease_sql.claim(con, cell_key, owner, lease_s=lease_s)

    def renew(self, cell_key: str, owner: str, *, lease_s: float) -> bool:
        """Extend ``owner``'s lease by ``lease_s`` from now; False when it is no longer held."""
        with self._write() as con:
            return lease_sql.renew(con, cell_key, owner, lease_s=lease_s)

    def release(self, cell_key: str, owner: str) -> bool:
        """Drop ``owner``'s lease of ``cell_key`` (False when it did not hold it)."""
        with self._write() as con:
            return lease_sql.release(con, cell_key, owner)

    def leases(self, keys: Iterable[str] | None = None) -> dict[str, Lease]:
        """``{cell_key: Lease}`` of every lease row (live or expired); empty for a store
        written before leases existed."""
        if not self.has_leases:
            return {}
        where, params = self._where(None, None, keys)
        return {r[0]: Lease(*r) for r in self._query(
            f"SELECT {', '.join(lease_sql.LEASE_COLUMNS)} FROM leases{where}", params)}

    # ------------------------------------------------------------------------------------------
    # the life cycle of a cell
    # ------------------------------------------------------------------------------------------
    def start(
        self,
        cell_key: str,
        *,
        study: str,
        dataset: str,
        model: str,
        act: str,
        norm: str,
        seed: int,
        config: Mapping[str, Any],
        versions: Mapping[str, Any] | None = None,
        keep_history: bool = True,
    ) -> str | None:
        """Mark a cell 'running' (inserting its row if new) unless it is already 'done'.

        Returns the previous status (None for a new row). ``keep_history=False`` clears the
        history of an existing row (a restart from epoch 1); ``error`` is always cleared.
        """
        now = _now()
        with self._write() as con:
            row = con.execute(
                "SELECT status FROM runs WHERE cell_key = ?", (cell_key,)
            ).fetchone()
            if row is None:
                con.execute(
                    f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES "
                    f"({', '.join('?' * len(RUN_COLUMNS))})",
                    (cell_key, study, dataset, model, act, norm, int(seed), dumps(config),
                     "running", "[]", None, None, None, dumps(dict(versions or {})), None,
                     now, now),
                )
                return None
            previous = str(row[0])
            if previous == "done":
                return previous
            history_sql = "history" if keep_history else "'[]'"
            con.execute(
                f"UPDATE runs SET status = 'running', error = NULL, history = {history_sql}, "
                "metrics = NULL, versions = ?, updated_at = ? WHERE cell_key = ?",
                (dumps(dict(versions or {})), now, cell_key),
            )
            return previous

    def record_epoch(
        self, cell_key: str, record: Mapping[str, Any], *, owner: str | None = None
    ) -> list[dict[str, Any]]:
        """Add one epoch record to the history (replacing a record of the same epoch, so that an
        epoch repeated after a resume is never stored twice). Returns the new history.

        With ``owner``, the write happens only while ``owner`` holds the cell's lease; otherwise
        :class:`LeaseLost` is raised and nothing is written.
        """
        if "epoch" not in record:
            raise ValueError(f"an epoch record needs an 'epoch' key, got keys {sorted(record)}")
        with self._write() as con:
            self._check_owner(con, cell_key, owner)
            history = merge_history(self._stored_history(con, cell_key), [dict(record)])
            con.execute(
                "UPDATE runs SET history = ?, updated_at = ? WHERE cell_key = ?",
                (dumps(history), _now(), cell_key),
            )
        return history

    def finish(
        self,
        cell_key: str,
        *,
        metrics: Mapping[str, Any],
        history: Sequence[Mapping[str, Any]] | None = None,
        wall_time: float | None = None,
        peak_mem_mb: float | None = None,
        owner: str | None = None,
    ) -> None:
        """Set a cell 'done' with its final metrics; ``history`` is merged into the stored one.
        With ``owner``: only while ``owner`` holds the lease (else :class:`LeaseLost`), and the
        lease is released in the same transaction."""
        with self._write() as con:
            self._check_owner(con, cell_key, owner)
            merged = merge_history(self._stored_history(con, cell_key),
                                   [dict(r) for r in history or []])
            con.execute(
                "UPDATE runs SET status = 'done', metrics = ?, history = ?, wall_time = ?, "
                "peak_mem_mb = ?, error = NULL, updated_at = ? WHERE cell_key = ?",
                (dumps(dict(metrics)), dumps(merged), wall_time, peak_mem_mb, _now(),
                 cell_key),
            )
            if owner is not None:
                lease_sql.release(con, cell_key, owner)

    def fail(self, cell_key: str, error: str, *, owner: str | None = None) -> None:
        """Set a cell 'failed' with an error message (its history so far is kept). With
        ``owner``: only while ``owner`` holds the lease, which is released."""
        with self._write() as con:
            self._check_owner(con, cell_key, owner)
            n = con.execute(
                "UPDATE runs SET status = 'failed', error = ?, updated_at = ? WHERE cell_key = ?",
                (str(error), _now(), cell_key),
            ).rowcount
            if n == 0:
                raise StoreError(f"no row for cell {cell_key!r}; call start() first")
            if owner is not None:
                lease_sql.release(con, cell_key, owner)

    @staticmethod
    def _check_owner(con: sqlite3.Connection, cell_key: str, owner: str | None) -> None:
        if owner is None:
            return
        holder = lease_sql.holder(con, cell_key)
        if holder != owner:
            raise LeaseLost(f"cell {cell_key[:12]}: lease held by {holder or 'nobody'}, "
                            f"not by {owner}")

    @staticmethod
    def _stored_history(con: sqlite3.Connection, cell_key: str) -> list[dict[str, Any]]:
        """The history stored for ``cell_key``; StoreError when the cell was never started."""
        row = con.execute("SELECT history FROM runs WHERE cell_key = ?", (cell_key,)).fetchone()
        if row is None:
            raise StoreError(f"no row for cell {cell_key!r}; call start() first")
        return json.loads(row[0] or "[]")
