"""Task types through the engine: the spec's task check, task options, and one tiny run of each
non-classification task from ``actlab run`` into the store (primary metric, task facts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from actlab.cli import main
from actlab.sweep.spec import SpecError, parse_spec
from actlab.sweep.store import ResultStore

BASE = {"name": "t", "acts": ["relu"], "norms": ["bn"], "seeds": [0], "epochs": 1}


@pytest.mark.parametrize(("model", "dataset", "problem"), [
    ("ssd_lite", "digits", "task 'classification' needs a classification"),
    ("tiny_cnn", "synthetic_detection", "task 'detection' needs a detection model"),
    ("transformer_seq2seq", "synthetic_shapes", "needs a segmentation model, got a seq2seq"),
])
def test_model_of_another_task_is_refused_in_one_line(model: str, dataset: str,
                                                      problem: str) -> None:
    with pytest.raises(SpecError, match=problem) as err:
        parse_spec({**BASE, "model": model, "dataset": dataset})
    assert "\n" not in str(err.value) and repr(model) in str(err.value)


def test_task_key_must_match_the_dataset() -> None:
    with pytest.raises(SpecError, match="cannot train on a classification dataset"):
        parse_spec({**BASE, "model": "ssd_lite", "dataset": "digits", "task": "detection"})
    with pytest.raises(SpecError, match="unknown task 'detectoin'; did you mean 'detection'"):
        parse_spec({**BASE, "model": "ssd_lite", "dataset": "synthetic_detection",
                    "task": "detectoin"})
    spec = parse_spec({**BASE, "model": "ssd_lite", "dataset": "synthetic_detection",
                       "task": "detection"})
    assert spec.model == "ssd_lite"


def test_task_kwargs_are_checked_against_the_task() -> None:
    with pytest.raises(SpecError, match="takes no option 'beam'; did you mean 'beam_size'"):
        parse_spec({**BASE, "model": "transformer_seq2seq", "dataset": "scan", "norms": ["ln"],
                    "task_kwargs": {"beam": 2}})
    with pytest.raises(SpecError, match="takes no option 'beam_size'"):  # not a detection option
        parse_spec({**BASE, "model": "ssd_lite", "dataset": "synthetic_detection",
                    "task_kwargs": {"beam_size": 2}})


def _run(tmp_path: Path, body: str) -> list:
    spec = tmp_path / "s.toml"
    spec.write_text(body)
    db = tmp_path / "r.sqlite"
    assert main(["run", str(spec), "--db", str(db), "--out", str(tmp_path / "out"),
                 "--no-progress"]) == 0
    with ResultStore(db) as store:
        return store.list()


def test_seq2seq_runs_from_actlab_run_with_task_options_and_bleu_signature(
    tmp_path: Path,
) -> None:
    rows = _run(tmp_path, """
name = "s2s"
dataset = "scan"
dataset_kwargs = { num_samples = 300, max_val = 16, max_test = 16 }
model = "transformer_seq2seq"
model_kwargs = { d_model = 16, nhead = 2, dim_feedforward = 32 }
acts = ["sau"]
norms = ["ln"]
seeds = [0]
epochs = 1
batch_size = 32
optimizer = "adam"
lr = 0.003
label_smoothing = 0.1
task_kwargs = { beam_size = 1 }
""")
    [row] = rows
    assert row.status == "done" and 0.0 <= row.metrics["test_bleu"] <= 100.0
    info = row.history[-1]["task_info"]
    assert info["beam_size"] == 1 and info["label_smoothing"] == 0.1
    assert info["bleu_signature"].startswith("nrefs:1|") and "version:" in info["bleu_signature"]
    assert row.config["task_kwargs"] == {"beam_size": 1}


def test_detection_runs_from_actlab_run_and_stores_map(tmp_path: Path) -> None:
    rows = _run(tmp_path, """
name = "det"
dataset = "synthetic_detection"
dataset_kwargs = { num_samples = 120 }
model = "ssd_lite"
acts = ["relu"]
norms = ["bn"]
seeds = [0]
epochs = 1
batch_size = 16
optimizer = "adam"
lr = 0.003
augment = "flip"
""")
    [row] = rows
    assert row.status == "done"
    for key in ("test_map50", "test_map50_11pt", "test_map", "val_map50", "train_loc_loss"):
        assert key in row.metrics, key
    assert 0.0 <= row.metrics["test_map50"] <= 1.0
    assert "task_kwargs" not in row.config  # absent unless a spec sets it: stored keys unchanged
