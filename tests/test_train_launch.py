"""``actlab run --nproc 2``: two gloo processes under torch's elastic launcher give the numbers
of one process (same global batch).

Compared: every epoch's train_loss / train_acc / val_loss / val_acc / test_loss / test_acc / lr
and the final metrics, relative tolerance 1e-5 (the two runs sum gradients in a different
order, so bit-identity is not expected; the model has no BatchNorm, whose per-rank batch
statistics would legitimately differ). The global batch (31) does not divide by 2, so the
shards are uneven (16 + 15).
"""

from __future__ import annotations

import pytest

from actlab.cli import main
from actlab.sweep.store import ResultStore
from actlab.train.launch import launcher_command

SPEC = """
name = "ddp"
dataset = "digits"
dataset_kwargs = {max_train = 186, max_val = 40, max_test = 40}
model = "tiny_cnn"
model_kwargs = {width = 8}
acts = ["relu"]
norms = ["none"]
seeds = [3]
epochs = 3
batch_size = 31
lr = 0.05
momentum = 0.9
weight_decay = 1e-4
schedule = "cosine"
augment = "crop1+flip"
device = "cpu"
"""
KEYS = ("lr", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")


def _row(db):
    with ResultStore(db) as store:
        [row] = store.list()
    return row


@pytest.mark.slow  # starts the launcher and two ranks
def test_failing_rank_gives_one_line_naming_the_log(tmp_path, monkeypatch, capsys) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text(SPEC.replace("batch_size = 31", "batch_size = 1"))
    # batch_size 1 < 2 processes: every rank refuses before training
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    rc = main(["run", str(spec), "--db", str(tmp_path / "b.sqlite"), "--out",
               str(tmp_path / "b"), "--nproc", "2", "--no-progress"])
    assert rc == 1
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if "failed" in ln and "DDP" in ln)
    assert "rank 0: ValueError: batch_size=1 is smaller than the number of processes" in line
    assert "launcher.log" in line


def test_launcher_is_torch_elastic() -> None:
    cmd = launcher_command(4, "/tmp/job.json")
    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    assert "--standalone" in cmd and "--nproc-per-node=4" in cmd
    assert cmd[-3:] == ["-m", "actlab.train.launch", "/tmp/job.json"]


def test_nproc_refuses_dry_run(tmp_path) -> None:
    with pytest.raises(SystemExit, match="--dry-run"):
        main(["run", "--dry-run", "--nproc", "2", "--out", str(tmp_path), "--no-progress"])


@pytest.mark.slow  # two launches of two ranks: ~80 s on a loaded 2-core machine
def test_nproc_2_equals_one_process_also_across_an_interruption(tmp_path, monkeypatch) -> None:
    from actlab.sweep.runner import FAULT_ENV

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    spec = tmp_path / "ddp.toml"
    spec.write_text(SPEC)
    common = ["run", str(spec), "--no-progress", "--log", "tensorboard"]
    ref_db, db, out = tmp_path / "one.sqlite", tmp_path / "two.sqlite", tmp_path / "two"
    assert main([*common, "--db", str(ref_db), "--out", str(tmp_path / "one")]) == 0
    one = _row(ref_db)
    # 2 ranks; the cell fails when epoch 1 reaches the store: the ranks are stopped and
    # rank 0's checkpoint stays behind
    monkeypatch.setenv(FAULT_ENV, f"{one.cell_key[:12]}@1")
    assert main([*common, "--db", str(db), "--out", str(out), "--nproc", "2"]) == 1
    assert _row(db).status == "failed" and list((out / "checkpoints").glob("*.pt"))
    # run again: resumed from the checkpoint, again with 2 ranks
    monkeypatch.delenv(FAULT_ENV)
    assert main([*common, "--db", str(db), "--out", str(out), "--nproc", "2"]) == 0
    two = _row(db)
    assert one.cell_key == two.cell_key and two.status == "done"
    assert [h["epoch"] for h in two.history] == [1, 2, 3]
    for h1, h2 in zip(one.history, two.history, strict=True):
        for k in KEYS:
            assert h2[k] == pytest.approx(h1[k], rel=1e-5, abs=1e-7), k
    for k, v in one.metrics.items():
        assert two.metrics[k] == pytest.approx(v, rel=1e-5, abs=1e-7), k
    # the training moved (the comparison is not about an untrained model)
    assert two.history[-1]["train_loss"] < two.history[0]["train_loss"]
    # rank 0 alone logged: one TensorBoard run folder
    assert len(list((out / "tensorboard" / "ddp").iterdir())) == 1
