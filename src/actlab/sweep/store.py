"""The results store: one SQLite file (WAL mode) with one row per cell of every study.

Schema (shared with ``actlab.report``)::

    CREATE TABLE runs (
      cell_key TEXT PRIMARY KEY,   -- sha1 of the canonical JSON of the cell's full config
      study TEXT NOT NULL, dataset TEXT NOT NULL, model TEXT NOT NULL, act TEXT NOT NULL,
      norm TEXT NOT NULL, seed INTEGER NOT NULL,
      config TEXT NOT NULL,        -- JSON: the full cell config
      status TEXT NOT NULL,        -- 'running' | 'done' | 'failed'
      history TEXT,                -- JSON list of per-epoch records
      metrics TEXT,                -- JSON dict of final metrics
      wall_time REAL, peak_mem_mb REAL, versions TEXT, error TEXT,
      created_at TEXT NOT NULL, updated_at TEXT NOT NULL);

Every write is one ``BEGIN IMMEDIATE`` transaction, so a process killed at any moment leaves
each row either before or after the write, never half-written, and the primary key makes
duplicate rows impossible. Several processes may write at once: WAL lets readers run alongside
the writer and ``busy_timeout`` makes writers wait for each other instead of failing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["ResultStore", "RunRow", "STATUSES", "SCHEMA", "StoreError"]

STATUSES = ("running", "done", "failed")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    cell_key TEXT PRIMARY KEY,
    study TEXT NOT NULL, dataset TEXT NOT NULL, model TEXT NOT NULL, act TEXT NOT NULL,
    norm TEXT NOT NULL, seed INTEGER NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    history TEXT,
    metrics TEXT,
    wall_time REAL, peak_mem_mb REAL, versions TEXT, error TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_study_status ON runs (study, status);
"""

_COLUMNS = (
    "cell_key", "study", "dataset", "model", "act", "norm", "seed", "config", "status",
    "history", "metrics", "wall_time", "peak_mem_mb", "versions", "error", "created_at",
    "updated_at",
)
_JSON_COLUMNS = ("config", "history", "metrics", "versions")
_IDENTITY = ("study", "dataset", "model", "act", "norm", "seed", "config")


class StoreError(RuntimeError):
    """The store file cannot be used (not SQLite, wrong schema, unknown cell)."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _stored_history(con: sqlite3.Connection, cell_key: str) -> list[dict[str, Any]]:
    """The history stored for ``cell_key``; StoreError when the cell was never started."""
    row = con.execute("SELECT history FROM runs WHERE cell_key = ?", (cell_key,)).fetchone()
    if row is None:
        raise StoreError(f"no row for cell {cell_key!r}; call start() first")
    return json.loads(row[0] or "[]")


def _dumps(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, allow_nan=True, default=_json_default)


def _json_default(obj: Any) -> Any:
    # numpy / torch scalars and other number-likes in metrics or history records
    for conv in (float, str):
        try:
            return conv(obj)
        except (TypeError, ValueError):
            continue
    raise TypeError(f"cannot store {type(obj).__name__} as JSON")  # pragma: no cover


@dataclass(frozen=True)
class RunRow:
    """One row of ``runs`` with the JSON columns decoded."""

    cell_key: str
    study: str
    dataset: str
    model: str
    act: str
    norm: str
    seed: int
    config: dict[str, Any]
    status: str
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    wall_time: float | None = None
    peak_mem_mb: float | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    created_at: str = ""
    updated_at: str = ""

    @classmethod
    def from_sql(cls, row: Sequence[Any]) -> RunRow:
        values = dict(zip(_COLUMNS, row, strict=True))
        for col, empty in (("config", {}), ("history", []), ("metrics", {}), ("versions", {})):
            text = values[col]
            values[col] = json.loads(text) if text else empty
        return cls(**values)

    def epochs_done(self) -> int:
        return max((int(r.get("epoch", 0)) for r in self.history), default=0)


class ResultStore:
    """Read and write the ``runs`` table of the SQLite file at ``path``.

    The file (and its folder) is created on first use and switched to WAL mode. One instance
    holds one connection; use one instance per process (or thread). Usable as a context manager.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 120.0) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise StoreError(f"results store path {str(self.path)!r} is a directory; "
                             "expected a .sqlite file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout = float(timeout)
        try:
            self._con = sqlite3.connect(
                str(self.path), timeout=self.timeout, isolation_level=None,
                check_same_thread=False,
            )
            self._con.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            mode = self._retry(lambda: self._con.execute("PRAGMA journal_mode = WAL").fetchone())
            self.journal_mode = str(mode[0]).lower()
            self._con.execute("PRAGMA synchronous = NORMAL")
            with self._write() as con:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        con.execute(statement)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot use {str(self.path)!r} as a results store: {exc}") from None
        cols = [r[1] for r in self._con.execute("PRAGMA table_info(runs)")]
        missing = [c for c in _COLUMNS if c not in cols]
        if missing:
            raise StoreError(f"{str(self.path)!r}: table 'runs' lacks columns {missing}")

    # ------------------------------------------------------------------------------------------
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

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE takes the write lock up front."""
        con = self._con
        self._retry(lambda: con.execute("BEGIN IMMEDIATE"))
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        else:
            con.execute("COMMIT")

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultStore({str(self.path)!r})"

    # ------------------------------------------------------------------------------------------
    # generic access
    # ------------------------------------------------------------------------------------------
    def upsert(self, row: Mapping[str, Any]) -> None:
        """Insert or replace the row ``row['cell_key']`` (columns as in the schema; JSON columns
        may be given as Python objects). ``created_at`` is kept for an existing row."""
        unknown = set(row) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown column(s) {sorted(unknown)}; columns are {_COLUMNS}")
        status = row.get("status")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        values = {c: row.get(c) for c in _COLUMNS}
        for col in _JSON_COLUMNS:
            if values[col] is not None and not isinstance(values[col], str):
                values[col] = _dumps(values[col])
        now = _now()
        values["updated_at"] = row.get("updated_at") or now
        values["created_at"] = row.get("created_at") or now
        for col in ("cell_key", *_IDENTITY):
            if values[col] is None:
                raise ValueError(f"column {col!r} is required")
        names = ", ".join(_COLUMNS)
        marks = ", ".join("?" * len(_COLUMNS))
        updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS
                            if c not in ("cell_key", "created_at"))
        with self._write() as con:
            con.execute(
                f"INSERT INTO runs ({names}) VALUES ({marks}) "
                f"ON CONFLICT(cell_key) DO UPDATE SET {updates}",
                [values[c] for c in _COLUMNS],
            )

    def get(self, cell_key: str) -> RunRow | None:
        """The row of ``cell_key``, or None."""
        cur = self._con.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM runs WHERE cell_key = ?", (cell_key,)
        )
        row = cur.fetchone()
        return None if row is None else RunRow.from_sql(row)

    def list(
        self,
        *,
        study: str | None = None,
        status: str | None = None,
        keys: Iterable[str] | None = None,
    ) -> list[RunRow]:
        """Rows, optionally filtered, ordered by (study, dataset, model, act, norm, seed, key)."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        where, params = self._where(study, status, keys)
        cur = self._con.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM runs{where} "
            "ORDER BY study, dataset, model, act, norm, seed, cell_key",
            params,
        )
        return [RunRow.from_sql(r) for r in cur.fetchall()]

    def statuses(self, keys: Iterable[str] | None = None) -> dict[str, str]:
        """``{cell_key: status}`` for the given keys that have a row (all rows by default)."""
        where, params = self._where(None, None, keys)
        cur = self._con.execute(f"SELECT cell_key, status FROM runs{where}", params)
        return dict(cur.fetchall())

    def count(self, *, study: str | None = None, status: str | None = None) -> int:
        where, params = self._where(study, status, None)
        return int(self._con.execute(f"SELECT COUNT(*) FROM runs{where}", params).fetchone()[0])

    def delete(self, cell_key: str) -> bool:
        with self._write() as con:
            return con.execute("DELETE FROM runs WHERE cell_key = ?", (cell_key,)).rowcount > 0

    @staticmethod
    def _where(
        study: str | None, status: str | None, keys: Iterable[str] | None
    ) -> tuple[str, list[Any]]:
        clauses, params = [], []
        if study is not None:
            clauses.append("study = ?")
            params.append(study)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if keys is not None:
            keys = list(keys)
            if not keys:
                clauses.append("0")
            else:
                clauses.append("cell_key IN (SELECT value FROM json_each(?))")
                params.append(json.dumps(keys))
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

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
                    f"INSERT INTO runs ({', '.join(_COLUMNS)}) VALUES "
                    f"({', '.join('?' * len(_COLUMNS))})",
                    (cell_key, study, dataset, model, act, norm, int(seed), _dumps(config),
                     "running", "[]", None, None, None, _dumps(dict(versions or {})), None,
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
                (_dumps(dict(versions or {})), now, cell_key),
            )
            return previous

    def record_epoch(self, cell_key: str, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Add one epoch record to the history (replacing a record of the same epoch, so that an
        epoch repeated after a resume is never stored twice). Returns the new history."""
        if "epoch" not in record:
            raise ValueError(f"an epoch record needs an 'epoch' key, got keys {sorted(record)}")
        with self._write() as con:
            history = merge_history(_stored_history(con, cell_key), [dict(record)])
            con.execute(
                "UPDATE runs SET history = ?, updated_at = ? WHERE cell_key = ?",
                (_dumps(history), _now(), cell_key),
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
    ) -> None:
        """Set a cell 'done' with its final metrics; ``history`` is merged into the stored one."""
        with self._write() as con:
            merged = merge_history(_stored_history(con, cell_key),
                                   [dict(r) for r in history or []])
            con.execute(
                "UPDATE runs SET status = 'done', metrics = ?, history = ?, wall_time = ?, "
                "peak_mem_mb = ?, error = NULL, updated_at = ? WHERE cell_key = ?",
                (_dumps(dict(metrics)), _dumps(merged), wall_time, peak_mem_mb, _now(),
                 cell_key),
            )

    def fail(self, cell_key: str, error: str) -> None:
        """Set a cell 'failed' with an error message (its history so far is kept)."""
        with self._write() as con:
            n = con.execute(
                "UPDATE runs SET status = 'failed', error = ?, updated_at = ? WHERE cell_key = ?",
                (str(error), _now(), cell_key),
            ).rowcount
            if n == 0:
                raise StoreError(f"no row for cell {cell_key!r}; call start() first")


def merge_history(
    old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Union of two lists of epoch records by ``epoch`` (``new`` wins), sorted by epoch."""
    by_epoch: dict[int, dict[str, Any]] = {}
    for rec in (*old, *new):
        by_epoch[int(rec["epoch"])] = dict(rec)
    return [by_epoch[e] for e in sorted(by_epoch)]
