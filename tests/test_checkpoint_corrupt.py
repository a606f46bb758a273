"""A damaged checkpoint is named in one line, moved aside (kept) and its cell restarts from
scratch with a warning: truncated, garbage and empty files; simulated and real training."""

from __future__ import annotations

import pytest
import torch

from actlab.store import ResultStore
from actlab.sweep.grid import expand
from actlab.sweep.runner import FAULT_ENV, checkpoint_path, run_cells
from actlab.sweep.spec import parse_spec
from actlab.train.checkpoint import (
    CHECKPOINT_FORMAT,
    CorruptCheckpoint,
    load_checkpoint,
    quarantine,
    save_checkpoint,
)

SIM = "actlab.sweep.simulate:simulate_cell"


def _good_checkpoint(path):
    state = {"format": CHECKPOINT_FORMAT, "epoch": 1, "config": {}, "history": [],
             "model": {"w": torch.randn(64, 64)}, "optimizer": {}, "scheduler": {}, "rng": {}}
    save_checkpoint(path, state)
    return path


DAMAGES = {
    "truncated": lambda data: data[: len(data) // 2],
    "garbage": lambda data: bytes(range(256)) * 8,
    "empty": lambda data: b"",
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_load_checkpoint_names_a_damaged_file(tmp_path, damage):
    path = _good_checkpoint(tmp_path / "c.pt")
    assert load_checkpoint(path)["epoch"] == 1
    path.write_bytes(DAMAGES[damage](path.read_bytes()))
    with pytest.raises(CorruptCheckpoint) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"checkpoint {path} is unreadable: ") and "\n" not in message
    assert info.value.path == path
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none.pt")


def test_quarantine_keeps_every_damaged_file(tmp_path):
    path = tmp_path / "k.pt"
    moved = []
    for text in ("one", "two"):
        path.write_text(text)
        moved.append(quarantine(path))
    assert not path.exists() and len(set(moved)) == 2
    assert [m.read_text() for m in moved] == ["one", "two"]
    assert all(m.name.startswith("k.pt.corrupt-") for m in moved)


def _cells(epochs=3):
    return expand(parse_spec({"name": "c", "dataset": "digits", "model": "tiny_cnn",
                              "acts": ["relu"], "seeds": [0], "epochs": epochs,
                              "device": "cpu", "batch_size": 64}, source="c.toml"))


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_simulated_cell_restarts_from_scratch_after_a_damaged_checkpoint(
    tmp_path, damage, capsys, monkeypatch
):
    (cell,) = _cells()
    db, out = tmp_path / "r.sqlite", tmp_path / "o"
    monkeypatch.setenv(FAULT_ENV, f"{cell.key[:12]}@2")
    run_cells([cell], db_path=db, out_dir=out, executor=SIM, progress=False)
    monkeypatch.delenv(FAULT_ENV)
    ckpt = checkpoint_path(out, cell.key)
    ckpt.write_bytes(DAMAGES[damage](ckpt.read_bytes()))
    damaged = ckpt.read_bytes()
    capsys.readouterr()
    outcome = run_cells([cell], db_path=db, out_dir=out, executor=SIM, progress=False)
    assert outcome.ok and outcome.done == 1
    err = capsys.readouterr().err
    assert f"warning: checkpoint {ckpt} is unreadable" in err and "restarting" in err
    (kept,) = ckpt.parent.glob(f"{ckpt.name}.corrupt-*")
    assert kept.read_bytes() == damaged and str(kept) in err
    with ResultStore(db, readonly=True) as store:
        row = store.get(cell.key)
    assert row.status == "done" and [h["epoch"] for h in row.history] == [1, 2, 3]


@pytest.mark.slow
def test_real_cell_restarts_after_a_truncated_checkpoint(tmp_path, capsys, monkeypatch):
    (cell,) = _cells(epochs=2)
    db, out = tmp_path / "r.sqlite", tmp_path / "o"
    clean = run_cells([cell], db_path=tmp_path / "clean.sqlite", out_dir=tmp_path / "c",
                      progress=False)
    assert clean.ok
    monkeypatch.setenv(FAULT_ENV, f"{cell.key[:12]}@1")
    assert list(run_cells([cell], db_path=db, out_dir=out, progress=False).failed)
    monkeypatch.delenv(FAULT_ENV)
    ckpt = checkpoint_path(out, cell.key)
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    outcome = run_cells([cell], db_path=db, out_dir=out, progress=False)
    assert outcome.ok, outcome.failed
    assert f"checkpoint {ckpt} is unreadable" in capsys.readouterr().err
    assert len(list(ckpt.parent.glob("*.corrupt-*"))) == 1
    with ResultStore(db) as a, ResultStore(tmp_path / "clean.sqlite") as b:
        row, ref = a.get(cell.key), b.get(cell.key)
    assert [h["epoch"] for h in row.history] == [1, 2]
    # restarted from scratch: the same numbers as a clean run
    assert row.metrics["test_acc"] == ref.metrics["test_acc"]
    assert row.history[-1]["train_loss"] == ref.history[-1]["train_loss"]
