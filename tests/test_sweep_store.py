"""Results store: schema, WAL mode, round trips, life cycle of a cell, concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3

import pytest

from actlab.sweep.store import ResultStore, StoreError, merge_history

IDENT = dict(study="s", dataset="digits", model="tiny_cnn", act="relu", norm="bn", seed=0,
             config={"train": {"lr": 0.1, "batch_size": 8}, "act": "relu"})


def raw(path, sql, *params):
    con = sqlite3.connect(path)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def test_schema_and_wal_mode(tmp_path):
    path = tmp_path / "sub" / "r.sqlite"
    with ResultStore(path) as store:
        assert store.journal_mode == "wal"
    assert path.is_file()
    # the mode is persistent: a fresh plain connection sees it
    assert raw(path, "PRAGMA journal_mode") == [("wal",)]
    cols = [(r[1], r[2], r[3], r[5]) for r in raw(path, "PRAGMA table_info(runs)")]
    assert cols == [
        ("cell_key", "TEXT", 0, 1), ("study", "TEXT", 1, 0), ("dataset", "TEXT", 1, 0),
        ("model", "TEXT", 1, 0), ("act", "TEXT", 1, 0), ("norm", "TEXT", 1, 0),
        ("seed", "INTEGER", 1, 0), ("config", "TEXT", 1, 0), ("status", "TEXT", 1, 0),
        ("history", "TEXT", 0, 0), ("metrics", "TEXT", 0, 0), ("wall_time", "REAL", 0, 0),
        ("peak_mem_mb", "REAL", 0, 0), ("versions", "TEXT", 0, 0), ("error", "TEXT", 0, 0),
        ("created_at", "TEXT", 1, 0), ("updated_at", "TEXT", 1, 0),
    ]
    ResultStore(path).close()  # reopening an existing store is fine


def test_not_a_store(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot use"):
        ResultStore(junk)
    with pytest.raises(StoreError, match="is a directory"):
        ResultStore(tmp_path)


def test_upsert_get_list_round_trip(tmp_path):
    path = tmp_path / "r.sqlite"
    history = [{"epoch": 1, "val_acc": 0.5, "layer_stats": {"act1": {"z": 0.1}}},
               {"epoch": 2, "val_acc": 0.75, "layer_stats": {}}]
    with ResultStore(path) as store:
        store.upsert({"cell_key": "k1", **IDENT, "status": "done", "history": history,
                      "metrics": {"test_acc": 0.875, "num_params": 123},
                      "wall_time": 1.5, "peak_mem_mb": 10.25, "versions": {"torch": "x"}})
        store.upsert({"cell_key": "k2", **{**IDENT, "act": "elu", "seed": 1},
                      "status": "failed", "error": "boom"})
        row = store.get("k1")
        assert row.config == IDENT["config"] and row.history == history
        assert row.metrics == {"test_acc": 0.875, "num_params": 123}
        assert (row.wall_time, row.peak_mem_mb, row.status) == (1.5, 10.25, "done")
        assert row.versions == {"torch": "x"} and row.error is None
        assert row.created_at and row.updated_at
        assert store.get("nope") is None
        assert [r.cell_key for r in store.list()] == ["k2", "k1"]  # ordered by act (elu < relu)
        assert [r.cell_key for r in store.list(status="done")] == ["k1"]
        assert [r.cell_key for r in store.list(keys=["k2", "zz"])] == ["k2"]
        assert store.list(keys=[]) == []
        assert store.statuses() == {"k1": "done", "k2": "failed"}
        assert store.count(study="s") == 2 and store.count(status="failed") == 1
        created = row.created_at
        store.upsert({"cell_key": "k1", **IDENT, "status": "done", "metrics": {"test_acc": 1}})
        again = store.get("k1")
        assert again.created_at == created and again.metrics == {"test_acc": 1}
        assert store.count() == 2  # replaced, not duplicated
        with pytest.raises(ValueError, match="status must be one of"):
            store.upsert({"cell_key": "k3", **IDENT, "status": "finished"})
        with pytest.raises(ValueError, match="unknown column"):
            store.upsert({"cell_key": "k3", **IDENT, "status": "done", "acc": 1})
        assert store.delete("k2") and not store.delete("k2")
    # JSON columns are plain JSON text for other readers
    (text,) = raw(path, "SELECT metrics FROM runs WHERE cell_key = 'k1'")[0]
    assert json.loads(text) == {"test_acc": 1}


def test_cell_life_cycle(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as store:
        assert store.start("k", **IDENT, versions={"torch": "2"}) is None
        row = store.get("k")
        assert row.status == "running" and row.history == [] and row.metrics == {}
        store.record_epoch("k", {"epoch": 1, "val_acc": 0.1})
        store.record_epoch("k", {"epoch": 2, "val_acc": 0.2})
        # an epoch repeated after a resume replaces the stored one
        hist = store.record_epoch("k", {"epoch": 2, "val_acc": 0.25})
        assert hist == [{"epoch": 1, "val_acc": 0.1}, {"epoch": 2, "val_acc": 0.25}]
        store.fail("k", "RuntimeError: nan loss")
        row = store.get("k")
        assert row.status == "failed" and row.error == "RuntimeError: nan loss"
        assert len(row.history) == 2
        # retry from a checkpoint keeps the history, clears the error
        assert store.start("k", **IDENT, keep_history=True) == "failed"
        row = store.get("k")
        assert row.status == "running" and row.error is None and len(row.history) == 2
        store.record_epoch("k", {"epoch": 3, "val_acc": 0.3})
        store.finish("k", metrics={"test_acc": 0.9}, history=[{"epoch": 3, "val_acc": 0.31}],
                     wall_time=2.0, peak_mem_mb=None)
        row = store.get("k")
        assert row.status == "done" and row.metrics == {"test_acc": 0.9}
        assert [r["epoch"] for r in row.history] == [1, 2, 3]
        assert row.history[-1]["val_acc"] == 0.31
        assert row.epochs_done() == 3
        # a done cell is never restarted
        assert store.start("k", **IDENT, keep_history=False) == "done"
        assert store.get("k").status == "done" and len(store.get("k").history) == 3
        # a restart without checkpoint clears the history
        store.start("j", **IDENT)
        store.record_epoch("j", {"epoch": 1})
        assert store.start("j", **IDENT, keep_history=False) == "running"
        assert store.get("j").history == []
        with pytest.raises(StoreError, match="call start"):
            store.record_epoch("missing", {"epoch": 1})
        with pytest.raises(StoreError, match="call start"):
            store.fail("missing", "x")
        with pytest.raises(ValueError, match="'epoch' key"):
            store.record_epoch("k", {"val_acc": 1})


def test_merge_history():
    old = [{"epoch": 2, "a": 1}, {"epoch": 1, "a": 0}]
    new = [{"epoch": 2, "a": 2}, {"epoch": 3, "a": 3}]
    assert merge_history(old, new) == [{"epoch": 1, "a": 0}, {"epoch": 2, "a": 2},
                                       {"epoch": 3, "a": 3}]


def _writer(path: str, worker: int, n: int) -> None:
    with ResultStore(path) as store:
        for i in range(n):
            key = f"w{worker}-{i}"
            store.start(key, **{**IDENT, "seed": i})
            for epoch in (1, 2):
                store.record_epoch(key, {"epoch": epoch})
            store.finish(key, metrics={"test_acc": i / n})


def test_concurrent_writers_from_processes(tmp_path):
    path = str(tmp_path / "r.sqlite")
    ResultStore(path).close()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, w, 15)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with ResultStore(path) as store:
        rows = store.list()
    assert len(rows) == 45 and all(r.status == "done" for r in rows)
    assert all([h["epoch"] for h in r.history] == [1, 2] for r in rows)
    assert raw(path, "PRAGMA integrity_check") == [("ok",)]


def test_report_loader_reads_the_store(tmp_path):
    load = pytest.importorskip("actlab.report.load")
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        store.start("a", **IDENT)
        store.finish("a", metrics={"test_acc": 0.5}, history=[{"epoch": 1, "test_acc": 0.5}])
        store.start("b", **{**IDENT, "seed": 1})  # still running: not reported
    runs = load.load_runs(path)
    assert [r.cell_key for r in runs] == ["a"]
    assert runs[0].metrics == {"test_acc": 0.5} and runs[0].config == IDENT["config"]
