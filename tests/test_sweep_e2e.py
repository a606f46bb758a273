"""End to end with real data, models and training: a tiny digits sweep, interrupted and resumed.

The resumed cell must end with the same history and metrics as a run that was never
interrupted (train_model restores model, optimiser, scheduler and RNG state from the
checkpoint), and the store must hold exactly one 'done' row per cell.
"""

from __future__ import annotations

import pytest

from actlab.cli import main
from actlab.sweep.grid import expand
from actlab.sweep.runner import FAULT_ENV, checkpoint_path, run_cells
from actlab.sweep.spec import parse_spec
from actlab.sweep.store import ResultStore

EPOCHS = 3
SPEC = {"name": "e2e", "dataset": "digits", "model": "tiny_cnn", "acts": ["relu", "elu"],
        "seeds": [0], "epochs": EPOCHS, "batch_size": 64, "lr": 0.05, "device": "cpu",
        "schedule": "cosine"}


def _rows(db):
    with ResultStore(db) as store:
        return {r.cell_key: r for r in store.list()}


def _curve(row):
    return [(h["epoch"], round(h["train_loss"], 6), round(h["test_acc"], 6))
            for h in row.history]


@pytest.mark.slow
def test_real_sweep_interrupted_mid_cell_resumes_to_the_uninterrupted_result(
        tmp_path, monkeypatch):
    cells = expand(parse_spec(SPEC, source="e2e.toml"))
    assert len(cells) == 2
    victim = cells[1]

    # reference: no interruption
    ref = run_cells(cells, db_path=tmp_path / "ref.sqlite", out_dir=tmp_path / "ref",
                    progress=False)
    assert ref.ok and ref.done == 2

    # the second cell fails after its epoch 2 (the checkpoint of epoch 2 is on disk)
    db, out = tmp_path / "r.sqlite", tmp_path / "out"
    monkeypatch.setenv(FAULT_ENV, f"{victim.key[:12]}@2")
    first = run_cells(cells, db_path=db, out_dir=out, progress=False)
    assert first.done == 1 and list(first.failed) == [victim.key]
    assert checkpoint_path(out, victim.key).exists()
    rows = _rows(db)
    assert rows[victim.key].status == "failed"
    assert [h["epoch"] for h in rows[victim.key].history] == [1, 2]

    monkeypatch.delenv(FAULT_ENV)
    second = run_cells(cells, db_path=db, out_dir=out, progress=False)
    assert (second.done, second.skipped, second.ok) == (1, 1, True)
    assert not checkpoint_path(out, victim.key).exists()

    rows, ref_rows = _rows(db), _rows(tmp_path / "ref.sqlite")
    assert set(rows) == {c.key for c in cells} == set(ref_rows)
    for key, row in rows.items():
        assert row.status == "done" and row.error is None
        assert [h["epoch"] for h in row.history] == list(range(1, EPOCHS + 1))
        assert _curve(row) == _curve(ref_rows[key])
        assert row.metrics["test_acc"] == pytest.approx(ref_rows[key].metrics["test_acc"],
                                                        abs=1e-6)
        assert row.metrics["test_acc"] == pytest.approx(row.history[-1]["test_acc"])
        assert row.versions["torch"] and row.versions["actlab"]


@pytest.mark.slow
def test_cli_runs_a_real_study_and_prints_the_table(tmp_path, capsys):
    spec = tmp_path / "tiny.toml"
    spec.write_text('name = "tiny"\ndataset = "digits"\nmodel = "tiny_cnn"\n'
                    'acts = ["relu", "softplus"]\nseeds = [0, 1]\nepochs = 1\n'
                    'batch_size = 64\ndevice = "cpu"\n')
    db = tmp_path / "res.sqlite"
    argv = ["run", str(spec), "--db", str(db), "--out", str(tmp_path / "o"), "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "relu" in out and "softplus" in out and "±" in out
    assert "4 cells run now, 0 already done" in out
    assert main(argv) == 0
    assert "0 cells run now, 4 already done" in capsys.readouterr().out
    rows = _rows(db)
    assert len(rows) == 4 and all(r.status == "done" for r in rows.values())


@pytest.mark.slow
def test_default_study_quick_runs_from_any_folder(tmp_path, monkeypatch, capsys):
    """`actlab run --quick` with no SPEC: the packaged default study, here cut to two of its
    layers (including SAU), written to ./actlab-results/results.sqlite of the working folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ACTLAB_DB", raising=False)
    monkeypatch.delenv("ACTLAB_OUT", raising=False)
    assert main(["run", "--quick", "--epochs", "1", "--acts", "relu", "sau", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "study 'default-quick': tiny_cnn on digits, 2 cells" in out
    rows = _rows(tmp_path / "actlab-results" / "results.sqlite")
    assert sorted(r.act for r in rows.values()) == ["relu", "sau"]
    assert all(r.status == "done" and len(r.history) == 1 for r in rows.values())
    assert all(r.study == "default-quick" for r in rows.values())
