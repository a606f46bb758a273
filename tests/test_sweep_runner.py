"""Runner: skip done cells, record failures, resume interrupted cells, same rows with workers.

Training is replaced by ``actlab.sweep.simulate.simulate_cell`` (same checkpoint/on_epoch
contract as ``train_model``, deterministic numbers), so these tests check the bookkeeping only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from actlab.sweep.grid import expand
from actlab.sweep.runner import (
    FAULT_ENV,
    checkpoint_path,
    run_cells,
    threads_per_worker,
)
from actlab.sweep.simulate import simulate_cell
from actlab.sweep.spec import parse_spec
from actlab.sweep.store import ResultStore

SIM = "actlab.sweep.simulate:simulate_cell"
EPOCHS = 4
SPEC = {"name": "r", "dataset": "digits", "model": "tiny_cnn", "acts": ["relu", "elu", "gelu"],
        "seeds": [0, 1], "epochs": EPOCHS}


@pytest.fixture
def cells():
    return expand(parse_spec(SPEC, source="r.toml"))


class Recorder:
    """Wraps simulate_cell and records which epochs each cell trained in this call."""

    def __init__(self) -> None:
        self.epochs: dict[str, list[int]] = {}

    def __call__(self, config, *, runtime, checkpoint_path, on_epoch):
        key = Path(checkpoint_path).stem
        trained = self.epochs.setdefault(key, [])

        def hook(epoch, record):
            trained.append(epoch)
            on_epoch(epoch, record)

        return simulate_cell(config, runtime=runtime, checkpoint_path=checkpoint_path,
                             on_epoch=hook)


def rows_of(db) -> dict:
    with ResultStore(db) as store:
        return {r.cell_key: r for r in store.list()}


def assert_complete(rows, cells):
    assert set(rows) == {c.key for c in cells}
    for row in rows.values():
        assert row.status == "done", (row.cell_key, row.status, row.error)
        assert [h["epoch"] for h in row.history] == list(range(1, EPOCHS + 1))
        assert row.metrics["test_acc"] == row.history[-1]["test_acc"]  # last epoch, no picking
        assert row.error is None
        assert {"torch", "numpy", "python", "actlab"} <= set(row.versions)


def test_run_then_rerun_skips_done_cells(tmp_path, cells):
    db, out = tmp_path / "r.sqlite", tmp_path / "out"
    rec = Recorder()
    outcome = run_cells(cells, db_path=db, out_dir=out, executor=rec, progress=False)
    assert (outcome.total, outcome.done, outcome.skipped, outcome.ok) == (6, 6, 0, True)
    assert all(e == list(range(1, EPOCHS + 1)) for e in rec.epochs.values())
    rows = rows_of(db)
    assert_complete(rows, cells)
    cell = cells[0]
    row = rows[cell.key]
    assert (row.study, row.dataset, row.model, row.act, row.norm, row.seed) == (
        "r", "digits", "tiny_cnn", cell.act, "bn", cell.seed)
    assert row.config == cell.config
    # checkpoints of finished cells are removed unless asked to keep them
    assert not any((out / "checkpoints").iterdir())

    again = Recorder()
    outcome = run_cells(cells, db_path=db, out_dir=out, executor=again, progress=False)
    assert (outcome.done, outcome.skipped) == (0, 6)
    assert again.epochs == {}
    assert {k: r.updated_at for k, r in rows_of(db).items()} == {
        k: r.updated_at for k, r in rows.items()}


def test_keep_checkpoints(tmp_path, cells):
    out = tmp_path / "out"
    run_cells(cells[:2], db_path=tmp_path / "r.sqlite", out_dir=out, executor=SIM,
              progress=False, keep_checkpoints=True)
    assert all(checkpoint_path(out, c.key).is_file() for c in cells[:2])


def test_failure_is_recorded_and_retried_from_the_checkpoint(tmp_path, cells, monkeypatch):
    db, out = tmp_path / "r.sqlite", tmp_path / "out"
    victim = cells[2]
    monkeypatch.setenv(FAULT_ENV, f"{victim.key[:10]}@2")
    outcome = run_cells(cells, db_path=db, out_dir=out, executor=SIM, progress=False)
    assert outcome.done == 5 and list(outcome.failed) == [victim.key]
    assert "fault injected after epoch 2" in outcome.failed[victim.key]
    row = rows_of(db)[victim.key]
    assert row.status == "failed" and row.error.startswith("FaultInjected: fault injected")
    assert [h["epoch"] for h in row.history] == [1, 2]
    assert row.metrics == {}
    assert checkpoint_path(out, victim.key).is_file()

    monkeypatch.delenv(FAULT_ENV)
    rec = Recorder()
    outcome = run_cells(cells, db_path=db, out_dir=out, executor=rec, progress=False)
    assert (outcome.done, outcome.skipped, outcome.ok) == (1, 5, True)
    assert rec.epochs == {victim.key: [3, 4]}  # resumed, not restarted
    rows = rows_of(db)
    assert_complete(rows, cells)
    assert rows[victim.key].created_at == row.created_at


def test_exceptions_fail_the_cell_but_interrupts_do_not(tmp_path, cells):
    db, out = tmp_path / "r.sqlite", tmp_path / "out"

    def broken(config, *, runtime, checkpoint_path, on_epoch):
        raise ValueError(f"bad data for {config['act']}")

    outcome = run_cells(cells[:1], db_path=db, out_dir=out, executor=broken, progress=False)
    assert outcome.failed == {cells[0].key: "ValueError: bad data for relu"}
    assert rows_of(db)[cells[0].key].error.startswith("ValueError: bad data for relu\n")

    def interrupted(config, *, runtime, checkpoint_path, on_epoch):
        on_epoch(1, {"epoch": 1, "val_acc": 0.1})
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_cells(cells[1:2], db_path=db, out_dir=out, executor=interrupted, progress=False)
    row = rows_of(db)[cells[1].key]
    assert row.status == "running" and [h["epoch"] for h in row.history] == [1]


def _spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "r.toml"
    path.write_text(textwrap.dedent(f"""
        name = "r"
        dataset = "digits"
        model = "tiny_cnn"
        acts = ["relu", "elu", "gelu"]
        seeds = [0, 1]
        epochs = {EPOCHS}
    """))
    return path


def _cli(args, env_extra=None, timeout=120):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    env.pop(FAULT_ENV, None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "actlab.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_killed_process_resumes_mid_cell(tmp_path, cells):
    """The process dies (os._exit, like a kill) right after epoch 2 of the third cell; the same
    command then finishes the sweep with exactly one row per cell, histories 1..E."""
    spec, db, out = _spec_file(tmp_path), tmp_path / "r.sqlite", tmp_path / "out"
    args = ["run", str(spec), "--db", str(db), "--out", str(out), "--dry-run", "--no-progress"]
    # --dry-run renames the study, so expand the same way to know the keys
    dry_cells = expand(parse_spec({**SPEC, "name": "r-dry-run"}, source="r.toml"))
    victim = dry_cells[2]
    first = _cli(args, {FAULT_ENV: f"{victim.key[:12]}@2:exit"})
    assert first.returncode == 75, first.stderr
    rows = rows_of(db)
    assert {k: r.status for k, r in rows.items()} == {
        dry_cells[0].key: "done", dry_cells[1].key: "done", victim.key: "running"}
    assert [h["epoch"] for h in rows[victim.key].history] == [1, 2]
    assert checkpoint_path(out, victim.key).is_file()

    second = _cli(args)
    assert second.returncode == 0, second.stderr
    assert "4 cells run now, 2 already done, 0 failed" in second.stdout
    final = rows_of(db)
    assert_complete(final, dry_cells)
    assert final[victim.key].created_at == rows[victim.key].created_at
    assert "test_acc (mean ± std)" in second.stdout


@pytest.mark.slow
def test_two_workers_give_the_same_rows(tmp_path, cells):
    one, two = tmp_path / "one.sqlite", tmp_path / "two.sqlite"
    run_cells(cells, db_path=one, out_dir=tmp_path / "o1", executor=SIM, progress=False)
    outcome = run_cells(cells, db_path=two, out_dir=tmp_path / "o2", executor=SIM, workers=2,
                        progress=False)
    assert outcome.ok and outcome.done == len(cells)
    a, b = rows_of(one), rows_of(two)
    assert_complete(b, cells)

    def strip(row):
        return (row.status, row.config, row.metrics,
                [{k: v for k, v in h.items() if k != "epoch_time"} for h in row.history])

    assert {k: strip(r) for k, r in a.items()} == {k: strip(r) for k, r in b.items()}


@pytest.mark.slow
def test_dead_worker_loses_only_its_cell_and_rerun_completes(tmp_path, cells, monkeypatch):
    db, out = tmp_path / "r.sqlite", tmp_path / "out"
    victim = cells[1]
    monkeypatch.setenv(FAULT_ENV, f"{victim.key[:12]}@3:exit")
    outcome = run_cells(cells, db_path=db, out_dir=out, executor=SIM, workers=2,
                        progress=False)
    assert not outcome.ok and victim.key in outcome.lost
    # a fresh pool ran the rest: only the cells in flight when the worker died are lost
    assert outcome.done + len(outcome.lost) == len(cells) and len(outcome.lost) <= 2
    assert rows_of(db)[victim.key].status == "running"
    monkeypatch.delenv(FAULT_ENV)
    outcome = run_cells(cells, db_path=db, out_dir=out, executor=SIM, workers=2,
                        progress=False)
    assert outcome.ok
    assert_complete(rows_of(db), cells)


def test_threads_per_worker():
    assert threads_per_worker(1, cores=8) == 8
    assert threads_per_worker(3, cores=8) == 2
    assert threads_per_worker(16, cores=8) == 1
    with pytest.raises(ValueError, match="workers must be an integer >= 1, got 0"):
        run_cells([], db_path="unused.sqlite", out_dir="unused", workers=0)
