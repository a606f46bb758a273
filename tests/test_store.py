"""actlab.store: read-only opening (read-only file and folder), damaged files, schema migration,
lease semantics."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actlab.report.load import load_runs
from actlab.store import LeaseLost, ResultStore, StoreError, make_owner
from actlab.store.schema import SCHEMA_VERSION
from test_report_fixtures import make_layer_store

SRC = str(Path(__file__).resolve().parents[1] / "src")
IDENT = dict(study="s", dataset="digits", model="tiny_cnn", act="relu", norm="bn", seed=0,
             config={"train": {"lr": 0.1}})


@contextlib.contextmanager
def read_only(*paths: Path):
    """Make files/folders unwritable, for root too (``chattr +i``); else chmod."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: cannot make a file read-only")
        for p in paths:
            if subprocess.run(["chattr", "+i", str(p)], capture_output=True).returncode:
                pytest.skip("chattr +i not supported here")
        try:
            yield
        finally:
            for p in paths:
                subprocess.run(["chattr", "-i", str(p)], capture_output=True)
    else:
        modes = {p: p.stat().st_mode for p in paths}
        for p in paths:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run([sys.executable, "-m", "actlab.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_report_reads_a_store_in_a_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    db = make_layer_store(folder / "r.sqlite")
    assert sorted(p.name for p in folder.iterdir()) == ["r.sqlite"]  # no -wal / -shm left
    with read_only(db, folder):
        with pytest.raises(OSError):
            (folder / "probe").write_text("x")
        runs = load_runs(db, "acts")
        assert len(runs) == 45 and all(r.status == "done" for r in runs)
        with ResultStore(db, readonly=True) as store:
            assert store.count() == 48 and store.leases() == {}
            with pytest.raises(StoreError, match="read-only"):
                store.delete(runs[0].cell_key)
        with pytest.raises(StoreError, match=str(db)):
            ResultStore(db)  # writing is impossible: one clear line
        proc = _cli("report", "--db", str(db), "--study", "acts")
        assert proc.returncode == 0, proc.stderr
        assert "sau" in proc.stdout and "not a results store" not in proc.stderr
        assert sorted(p.name for p in folder.iterdir()) == ["r.sqlite"]


def _damage(path: Path) -> None:
    """Overwrite the middle pages of a SQLite file with garbage (the header stays valid)."""
    size = path.stat().st_size
    page = 4096
    assert size > 6 * page
    with open(path, "r+b") as f:
        f.seek(2 * page)
        f.write(b"\xde\xad\xbe\xef" * (page // 2))


def test_damaged_store_gives_one_line_errors_naming_the_file(tmp_path):
    db = make_layer_store(tmp_path / "r.sqlite")
    _damage(db)
    with pytest.raises(StoreError, match="damaged or unusable") as info:
        load_runs(db)
    assert str(db) in str(info.value) and "\n" not in str(info.value)
    spec = tmp_path / "s.toml"
    spec.write_text('dataset = "digits"\nmodel = "tiny_cnn"\nacts = ["relu"]\n')
    for args in (["run", str(spec), "--db", str(db), "--dry-run", "--no-progress", "--out",
                  str(tmp_path / "o")], ["report", "--db", str(db)]):
        proc = _cli(*args)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and str(db) in lines[0], proc.stderr


def test_not_a_store_and_missing(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        ResultStore(tmp_path / "missing.sqlite", readonly=True)
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="no 'runs' table"):
        ResultStore(other, readonly=True)


V0 = """CREATE TABLE runs (cell_key TEXT PRIMARY KEY, study TEXT NOT NULL, dataset TEXT NOT NULL,
model TEXT NOT NULL, act TEXT NOT NULL, norm TEXT NOT NULL, seed INTEGER NOT NULL,
config TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
history TEXT, metrics TEXT, wall_time REAL, peak_mem_mb REAL, versions TEXT, error TEXT,
created_at TEXT NOT NULL, updated_at TEXT NOT NULL)"""


def test_a_version_0_store_is_read_as_is_and_migrated_on_write(tmp_path):
    db = tmp_path / "v0.sqlite"
    con = sqlite3.connect(db)
    con.execute(V0)
    con.execute("INSERT INTO runs VALUES ('k', 's', 'd', 'm', 'relu', 'bn', 0, '{}', 'done', "
                "'[{\"epoch\": 1}]', '{\"test_acc\": 0.5}', 1.0, 2.0, '{}', NULL, 't', 't')")
    con.commit()
    con.close()
    with ResultStore(db, readonly=True) as store:
        assert store.leases() == {} and store.get("k").metrics == {"test_acc": 0.5}
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone() == (0,)  # reading changed nothing
    con.close()
    with ResultStore(db) as store:
        assert store.claim("k2", "o", lease_s=5) == "claimed"
        assert store.get("k").history == [{"epoch": 1}]
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(StoreError, match="newer than"):
        ResultStore(db)


def test_committed_results_store_opens_read_only_unchanged():
    db = Path(__file__).resolve().parents[1] / "docs" / "results.sqlite"
    if not db.is_file():
        pytest.skip("no committed store")
    before = db.read_bytes()
    with ResultStore(db, readonly=True) as store:
        assert store.count(status="done") > 0
    assert db.read_bytes() == before


def test_lease_claim_renew_release_and_takeover(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as store:
        me, other = make_owner(), "otherhost:123:abcd"
        assert store.claim("a", me, lease_s=30) == "claimed"
        assert store.claim("a", me, lease_s=30) == "claimed"  # re-claiming one's own lease
        assert store.claim("a", other, lease_s=30) == "busy"
        lease = store.leases()["a"]
        assert lease.owner == me and lease.alive() and lease.expires - lease.heartbeat == 30
        assert store.renew("a", me, lease_s=60)
        assert not store.renew("a", other, lease_s=60)
        assert store.leases()["a"].expires - time.time() > 50
        # writes are checked against the lease
        store.start("a", **IDENT)
        store.record_epoch("a", {"epoch": 1}, owner=me)
        with pytest.raises(LeaseLost, match="not by otherhost"):
            store.record_epoch("a", {"epoch": 2}, owner=other)
        assert [h["epoch"] for h in store.get("a").history] == [1]
        store.finish("a", metrics={"x": 1.0}, owner=me)  # finishing releases the lease
        assert store.leases() == {}
        assert store.claim("a", other, lease_s=30) == "done"
        # an expired lease of another host is taken over
        assert store.claim("b", other, lease_s=0.2) == "claimed"
        assert store.claim("b", me, lease_s=30) == "busy"
        time.sleep(0.3)
        assert store.claim("b", me, lease_s=30) == "claimed"
        assert not store.release("b", other) and store.release("b", me)
        # a live lease of a dead process on this host is taken over at once
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        host = make_owner().split(":")[0]
        assert store.claim("c", f"{host}:{dead.pid}:ffff", lease_s=300) == "claimed"
        assert store.claim("c", me, lease_s=30) == "claimed"
        assert store.leases()["c"].owner == me
