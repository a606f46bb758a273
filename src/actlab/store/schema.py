"""The on-disk layout of the results store and its migrations.

Version 0 (the first stores, e.g. ``docs/results.sqlite``) has only ``runs``; version 1 adds
``leases``. ``PRAGMA user_version`` holds the version; opening a store for writing migrates it
in place (only ``CREATE ... IF NOT EXISTS``, so an older actlab still reads a migrated store).
"""

from __future__ import annotations

__all__ = ["SCHEMA", "SCHEMA_VERSION", "RUN_COLUMNS", "JSON_COLUMNS", "IDENTITY", "STATUSES",
           "LEASE_COLUMNS"]

SCHEMA_VERSION = 1

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
CREATE TABLE IF NOT EXISTS leases (
    cell_key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    claimed_at REAL NOT NULL,
    heartbeat REAL NOT NULL,
    expires REAL NOT NULL
);
"""

#: columns of ``runs`` in table order
RUN_COLUMNS = (
    "cell_key", "study", "dataset", "model", "act", "norm", "seed", "config", "status",
    "history", "metrics", "wall_time", "peak_mem_mb", "versions", "error", "created_at",
    "updated_at",
)
JSON_COLUMNS = ("config", "history", "metrics", "versions")
#: columns a row must have to be inserted
IDENTITY = ("study", "dataset", "model", "act", "norm", "seed", "config")
#: columns of ``leases``; times are seconds since the epoch (``time.time()``)
LEASE_COLUMNS = ("cell_key", "owner", "claimed_at", "heartbeat", "expires")
