"""execute_cell: what it asks of the data, model and training parts (faked here), and one real
end-to-end cell when those parts are installed."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import actlab.data
import actlab.models
import actlab.train
from actlab.sweep.execute import execute_cell, resolve_executor
from actlab.sweep.grid import expand
from actlab.sweep.spec import parse_spec


@dataclass
class FakeConfig:
    values: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d):
        return cls(dict(d))


def test_execute_cell_wires_data_model_and_training(monkeypatch):
    calls = {}

    def load_dataset(name, data_dir=None, val_fraction=0.1, seed=0, **kw):
        calls["data"] = dict(name=name, data_dir=data_dir, val_fraction=val_fraction, seed=seed,
                             **kw)
        return SimpleNamespace(num_classes=7, in_channels=3)

    def create_model(name, act, norm, num_classes, in_channels, **kw):
        calls["model"] = dict(name=name, num_classes=num_classes, in_channels=in_channels, **kw)
        calls["act"] = act() if callable(act) else act
        calls["norm"] = norm
        calls["init"] = torch.rand(3)  # depends on the seed set before building the model
        return nn.Linear(2, 2)

    def train_model(model, splits, cfg, *, checkpoint_path=None, on_epoch=None, progress=True):
        calls["train"] = dict(cfg=cfg.values, checkpoint_path=checkpoint_path, progress=progress)
        on_epoch(1, {"epoch": 1})
        return SimpleNamespace(history=[{"epoch": 1}], metrics={"test_acc": 1.0})

    monkeypatch.setattr(actlab.data, "load_dataset", load_dataset, raising=False)
    monkeypatch.setattr(actlab.models, "create_model", create_model, raising=False)
    monkeypatch.setattr(actlab.train, "TrainConfig", FakeConfig, raising=False)
    monkeypatch.setattr(actlab.train, "train_model", train_model, raising=False)

    spec = parse_spec({
        "name": "x", "dataset": "digits", "model": "tiny_cnn", "acts": ["leaky_relu"],
        "seeds": [3], "epochs": 2, "val_fraction": 0.2, "split_seed": 5,
        "dataset_kwargs": {"size": 100}, "model_kwargs": {"width": 8},
        "act_kwargs": {"leaky_relu": {"negative_slope": 0.3}}, "device": "cpu",
        "data_dir": "/data",
    }, source="x.toml", check_names=False)
    (cell,) = expand(spec)
    seen = []
    result = execute_cell(cell.config, runtime=cell.runtime, checkpoint_path="/tmp/c.pt",
                          on_epoch=lambda e, r: seen.append(e))
    assert result.metrics == {"test_acc": 1.0} and seen == [1]
    assert calls["data"] == dict(name="digits", data_dir="/data", val_fraction=0.2, seed=5,
                                 size=100)
    assert calls["model"] == dict(name="tiny_cnn", num_classes=7, in_channels=3, width=8)
    assert isinstance(calls["act"], nn.LeakyReLU) and calls["act"].negative_slope == 0.3
    assert calls["norm"] == "bn"
    assert calls["train"] == dict(
        cfg={"epochs": 2, "batch_size": 32, "optimizer": "sgd", "lr": 0.05, "seed": 3,
             "device": "cpu", "layer_backend": "eager"},
        checkpoint_path="/tmp/c.pt", progress=False)
    torch.manual_seed(3)
    assert torch.equal(calls["init"], torch.rand(3))


def test_resolve_executor():
    from actlab.sweep.simulate import simulate_cell

    assert resolve_executor(None) is execute_cell
    assert resolve_executor("actlab.sweep.simulate:simulate_cell") is simulate_cell
    assert resolve_executor(simulate_cell) is simulate_cell
    with pytest.raises(ValueError, match="'module:function'"):
        resolve_executor("actlab.sweep.simulate.simulate_cell")
    with pytest.raises(ValueError, match="has no callable 'nope'"):
        resolve_executor("actlab.sweep.simulate:nope")


def _real_parts_available() -> bool:
    data = importlib.import_module("actlab.data")
    models = importlib.import_module("actlab.models")
    train = importlib.import_module("actlab.train")
    return all(hasattr(m, a) for m, a in ((data, "load_dataset"), (models, "create_model"),
                                          (train, "train_model"), (train, "TrainConfig")))


@pytest.mark.slow
@pytest.mark.skipif(not _real_parts_available(), reason="data/models/train not merged yet")
def test_one_real_cell_end_to_end(tmp_path):
    from actlab.sweep.runner import run_cells
    from actlab.sweep.store import ResultStore

    spec = parse_spec({"name": "e2e", "dataset": "digits", "model": "tiny_cnn",
                       "acts": ["relu"], "seeds": [0], "epochs": 2, "device": "cpu"},
                      source="e2e.toml")
    cells = expand(spec)
    outcome = run_cells(cells, db_path=tmp_path / "r.sqlite", out_dir=tmp_path / "o",
                        progress=False)
    assert outcome.ok, outcome.failed
    with ResultStore(tmp_path / "r.sqlite") as store:
        (row,) = store.list()
    assert row.status == "done" and [h["epoch"] for h in row.history] == [1, 2]
    for key in ("test_acc", "test_loss", "val_acc", "val_loss", "train_loss", "num_params"):
        assert key in row.metrics
    assert row.metrics["test_acc"] == pytest.approx(row.history[-1]["test_acc"])
    assert 0.0 <= row.metrics["test_acc"] <= 1.0
