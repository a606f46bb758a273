"""``--log tensorboard`` / ``--log mlflow``: per-epoch metrics read back with each tool's own
reader (TensorBoard's EventAccumulator, MLflow's MlflowClient) equal the store's history."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from actlab.cli import main
from actlab.sweep.store import ResultStore
from actlab.train.loggers import RunInfo, TensorBoardLogger, flat_params, scalar_metrics

tb_event = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
mlflow = pytest.importorskip("mlflow")

SPEC = """
name = "track"
dataset = "digits"
dataset_kwargs = {max_train = 200, max_val = 50, max_test = 50}
model = "tiny_cnn"
model_kwargs = {width = 4}
acts = ["relu", "elu"]
norms = ["none"]
seeds = [0]
epochs = 2
batch_size = 50
lr = 0.05
device = "cpu"
"""
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "lr")


def _tb_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = tb_event.EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("track")
    spec = tmp / "track.toml"
    spec.write_text(SPEC)
    out = tmp / "out"
    rc = main(["run", str(spec), "--out", str(out), "--db", str(tmp / "r.sqlite"),
               "--no-progress", "--log", "tensorboard", "--log", "mlflow"])
    assert rc == 0
    with ResultStore(tmp / "r.sqlite") as store:
        rows = store.list()
    return out, rows


def test_tensorboard_event_files_hold_the_store_history(tracked_run) -> None:
    out, rows = tracked_run
    assert len(rows) == 2
    runs = sorted((out / "tensorboard" / "track").iterdir())
    assert len(runs) == 2 and all(list(r.glob("events.out.tfevents.*")) for r in runs)
    for row in rows:
        [run_dir] = [r for r in runs if r.name.endswith(row.cell_key[:10])]
        assert run_dir.name.startswith(f"tiny_cnn-{row.act}-none-s0")
        scalars = _tb_scalars(run_dir)
        for k in METRICS:
            want = [(h["epoch"], h[k]) for h in row.history]
            got = scalars[k]
            assert [s for s, _ in got] == [s for s, _ in want] == [1, 2], k
            for (_, g), (_, w) in zip(got, want, strict=True):
                assert g == pytest.approx(w, rel=1e-6, abs=1e-7), k  # event files hold float32
        # the hyper-parameters and tags are recorded in the hparams plugin
        acc = tb_event.EventAccumulator(str(run_dir))
        acc.Reload()
        content = acc.PluginTagToContent("hparams")
        blob = b"".join(content.values())
        assert row.act.encode() in blob and b"train.lr" in blob


def test_mlflow_store_holds_the_store_history(tracked_run) -> None:
    out, rows = tracked_run
    client = mlflow.MlflowClient(tracking_uri="sqlite:///" + str((out / "mlflow.db").resolve()))
    exp = client.get_experiment_by_name("track")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 2
    for row in rows:
        [run] = [r for r in runs if r.data.tags.get("cell_key") == row.cell_key]
        tags = run.data.tags
        assert (tags["spec"], tags["model"], tags["act"], tags["norm"], tags["seed"]) == (
            "track", "tiny_cnn", row.act, "none", "0")
        assert run.info.status == "FINISHED"
        assert run.data.params["train.lr"] == "0.05" and run.data.params["act"] == row.act
        for k in METRICS:
            hist = sorted(client.get_metric_history(run.info.run_id, k), key=lambda m: m.step)
            assert [(m.step, m.value) for m in hist] == [(h["epoch"], h[k])
                                                          for h in row.history], k


def test_scalar_metrics_and_params_flattening() -> None:
    rec = {"epoch": 3, "lr": 0.1, "test_acc": 0.5, "val_loss": math.nan, "ok": True,
           "layer_stats": {"features.1": {"n": 20.0}, "": {"z": float("inf"), "a": 1}}}
    assert scalar_metrics(rec) == {"lr": 0.1, "test_acc": 0.5, "layer/features.1/n": 20.0,
                                   "layer/model/a": 1.0}
    assert flat_params({"train": {"lr": 0.1, "step_size": [3, 5]}, "act": "relu",
                        "g": None}) == {"train.lr": 0.1, "train.step_size": "[3, 5]",
                                        "act": "relu", "g": "None"}


def test_resumed_tensorboard_run_drops_steps_past_the_checkpoint(tmp_path) -> None:
    run = RunInfo(name="r", key="k" * 40, group="g", tags={"act": "relu"}, params={"lr": 0.1})
    first = TensorBoardLogger(tmp_path, run)
    for epoch in (1, 2, 3):  # epoch 3 was logged but the process died before its checkpoint
        first.log_epoch(epoch, {"train_loss": float(epoch)})
    first.close("interrupted")
    again = TensorBoardLogger(tmp_path, run)
    again.log_epoch(3, {"train_loss": 30.0})
    again.log_epoch(4, {"train_loss": 40.0})
    again.close()
    assert _tb_scalars(first.log_dir)["train_loss"] == [(1, 1.0), (2, 2.0), (3, 30.0),
                                                         (4, 40.0)]


def test_unknown_logger_is_refused(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as err:
        main(["run", "--log", "wandb", "--out", str(tmp_path)])
    assert err.value.code == 2
    assert "invalid choice: 'wandb'" in capsys.readouterr().err
