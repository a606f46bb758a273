"""Concurrent ``actlab run`` processes on one store: leases split the cells, no epoch is trained
twice, a killed lease holder's cell is taken over and resumed from its checkpoint, and a lease
held elsewhere is waited for until it expires. Real processes, simulated training."""

from __future__ import annotations

import os
import signal
import time

import pytest

from actlab.store import ResultStore
from actlab.sweep.grid import expand
from actlab.sweep.runner import checkpoint_path, run_cells
from actlab.sweep.spec import parse_spec
from sweep_procs import env, read_log, start, trained, wait_for, write_spec

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs Linux /proc")

EPOCHS = 4


def dry_cells():
    spec = {"name": "p-dry-run", "dataset": "digits", "model": "tiny_cnn",
            "acts": ["relu", "elu", "gelu"], "seeds": [0, 1], "epochs": EPOCHS}
    return expand(parse_spec(spec, source="p.toml"))


def assert_complete(db, cells):
    with ResultStore(db, readonly=True) as store:
        rows = {r.cell_key: r for r in store.list()}
        assert store.leases() == {}  # every lease released
    assert set(rows) == {c.key for c in cells}
    for row in rows.values():
        assert row.status == "done", (row.cell_key, row.status, row.error)
        assert [h["epoch"] for h in row.history] == list(range(1, EPOCHS + 1))


@pytest.mark.slow
def test_two_concurrent_runs_split_the_cells_and_train_each_epoch_once(tmp_path):
    spec, db, out, log = (write_spec(tmp_path, epochs=EPOCHS), tmp_path / "r.sqlite",
                          tmp_path / "out", tmp_path / "epochs.log")
    environ = env(log, 1.0)
    first = start(spec, db, out, environ, "--workers", "2")
    # the second run starts once the first is training, so that they overlap for sure
    wait_for(lambda: len(read_log(log)) >= 1, what="the first run's first epoch")
    second = start(spec, db, out, environ)
    outs = [p.communicate(timeout=180) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outs
    cells = dry_cells()
    counts = trained(log)
    assert set(counts) == {(c.key, e) for c in cells for e in range(1, EPOCHS + 1)}
    twice = {k: n for k, n in counts.items() if n != 1}
    assert not twice, f"epochs trained more than once: {twice}"
    # both runs trained cells, and no cell was trained by two processes
    owners = {}
    for pid, key, _ in read_log(log):
        owners.setdefault(key, set()).add(pid)
    assert all(len(p) == 1 for p in owners.values()), owners
    by_run = {first.pid: 0, second.pid: 0}
    for pids in owners.values():
        (pid,) = pids
        by_run[second.pid if pid == second.pid else first.pid] += 1  # workers: 1st run
    assert by_run[first.pid] >= 1 and by_run[second.pid] >= 1, by_run
    assert_complete(db, cells)
    for stdout, _ in outs:  # each run waits for the other's cells and prints the full table
        assert "0 failed, 0 lost" in stdout


@pytest.mark.slow
def test_killed_lease_holder_is_taken_over_and_resumed_from_its_checkpoint(tmp_path):
    spec, db, out, log = (write_spec(tmp_path, epochs=EPOCHS), tmp_path / "r.sqlite",
                          tmp_path / "out", tmp_path / "epochs.log")
    environ = env(log, 0.3)
    victim = start(spec, db, out, environ)
    wait_for(lambda: len(read_log(log)) >= 2, what="two epochs of the first cell")
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=30)
    (key,) = {k for _, k, _ in read_log(log)}
    done_before = max(e for _, k, e in read_log(log) if k == key)
    with ResultStore(db, readonly=True) as store:
        lease = store.leases()[key]
        assert lease.owner.split(":")[1] == str(victim.pid) and lease.alive()
        assert store.get(key).status == "running"
    assert checkpoint_path(out, key).is_file()
    t0 = time.monotonic()
    rescue = start(spec, db, out, environ)
    stdout, stderr = rescue.communicate(timeout=180)
    assert rescue.returncode == 0, stderr
    # the dead owner ran on this host: taken over at once, not after the 60 s lease
    assert time.monotonic() - t0 < 50
    resumed = [e for pid, k, e in read_log(log) if k == key and pid == rescue.pid]
    assert resumed == list(range(done_before + 1, EPOCHS + 1))  # from the checkpoint
    assert all(n == 1 for n in trained(log).values())
    assert_complete(db, dry_cells())


def test_a_lease_held_elsewhere_is_waited_for_until_it_expires(tmp_path):
    """A live lease of another host blocks the cell until it expires; then this run takes the
    cell over. Until then the other cells run."""
    cells = expand(parse_spec({"name": "w", "dataset": "digits", "model": "tiny_cnn",
                               "acts": ["relu", "elu"], "seeds": [0], "epochs": 2},
                              source="w.toml"))
    db, out = tmp_path / "r.sqlite", tmp_path / "o"
    with ResultStore(db) as store:
        assert store.claim(cells[0].key, "elsewhere:1:abcd", lease_s=2.0) == "claimed"
    t0 = time.monotonic()
    outcome = run_cells(cells, db_path=db, out_dir=out, executor="actlab.sweep.simulate:"
                        "simulate_cell", progress=False, lease_s=30, poll_s=0.2)
    waited = time.monotonic() - t0
    assert outcome.ok and outcome.done == 2
    assert 1.5 < waited < 15
    with ResultStore(db) as store:
        assert all(r.status == "done" for r in store.list()) and store.leases() == {}
    # without waiting, the cell is left to its owner
    db2 = tmp_path / "r2.sqlite"
    with ResultStore(db2) as store:
        store.claim(cells[0].key, "elsewhere:1:abcd", lease_s=60.0)
    outcome = run_cells(cells, db_path=db2, out_dir=out, executor="actlab.sweep.simulate:"
                        "simulate_cell", progress=False, wait_for_others=False)
    assert outcome.busy == [cells[0].key] and outcome.done == 1 and not outcome.ok
