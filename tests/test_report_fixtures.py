"""Helpers that fabricate a results store for report tests, written through actlab.store (the
one store module the sweep writes with), so the fixtures always have the real schema."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from actlab.store import ResultStore

# A clearly better layer (sau), one indistinguishable from the baseline (ash), over 5 seeds.
BASE = {("digits", "tiny_cnn"): 0.90, ("digits", "mlp"): 0.85, ("mnist1d", "cnn1d"): 0.70}
NOISE = {
    "relu": [0.000, 0.004, -0.003, 0.002, -0.001],
    "sau": [0.051, 0.048, 0.053, 0.050, 0.049],
    "ash": [0.003, -0.002, 0.000, -0.004, 0.002],
}


def fake_history(
    final_acc: float,
    epochs: int = 6,
    layer_stats: dict[str, dict[str, float]] | None = None,
    segmentation: bool = False,
    speed: float = 2.0,
) -> list[dict[str, Any]]:
    """Per-epoch records shaped like actlab.train's history, ending exactly at ``final_acc``.

    Layer stats given as {module: {stat: final value}} grow linearly from 0.5x to their final
    value over the epochs.
    """
    hist = []
    for e in range(1, epochs + 1):
        frac = (1 - math.exp(-speed * e / epochs)) / (1 - math.exp(-speed))
        acc = final_acc * (0.3 + 0.7 * frac)
        loss = 2.0 * (1.0 - acc)
        rec: dict[str, Any] = {
            "epoch": e,
            "lr": 0.1 * (1 - (e - 1) / epochs),
            "train_loss": loss * 0.9,
            "val_loss": loss,
            "test_loss": loss * 1.01,
            "epoch_time": 0.5,
        }
        if segmentation:
            rec.update(train_pixel_acc=acc, val_pixel_acc=acc, val_pixel_error=1 - acc,
                       val_miou=acc * 0.8, test_pixel_acc=acc, test_pixel_error=1 - acc,
                       test_miou=acc * 0.8)
        else:
            rec.update(train_acc=min(1.0, acc * 1.02), val_acc=acc, test_acc=acc)
        stats = {}
        for module, values in (layer_stats or {}).items():
            stats[module] = {k: v * (0.5 + 0.5 * e / epochs) for k, v in values.items()}
        rec["layer_stats"] = stats
        hist.append(rec)
    return hist


def final_metrics(history: list[dict[str, Any]]) -> dict[str, float]:
    last = history[-1]
    keys = [k for k in last if k.startswith(("test_", "val_", "train_")) and k != "train_time"]
    out = {k: float(last[k]) for k in keys}
    out["num_params"] = 1234.0
    return out


def add_run(
    con: FixtureStore,
    *,
    study: str,
    dataset: str,
    model: str,
    act: str,
    norm: str,
    seed: int,
    config: dict[str, Any] | None = None,
    history: list[dict[str, Any]] | None = None,
    metrics: dict[str, float] | None = None,
    status: str = "done",
) -> str:
    cfg = {"study": study, "dataset": dataset, "model": model, "act": act, "norm": norm,
           "train": {"seed": seed, "epochs": 6, "batch_size": 32, "lr": 0.1, "device": "cpu"}}
    for k, v in (config or {}).items():
        if isinstance(v, dict):
            cfg.setdefault(k, {}).update(v)
        else:
            cfg[k] = v
    canon = json.dumps(cfg, sort_keys=True)
    key = hashlib.sha1(canon.encode()).hexdigest()
    if metrics is None and history is not None:
        metrics = final_metrics(history)
    con.upsert({
        "cell_key": key, "study": study, "dataset": dataset, "model": model, "act": act,
        "norm": norm, "seed": seed, "config": cfg, "status": status, "history": history,
        "metrics": metrics, "wall_time": 12.5 + seed, "peak_mem_mb": 100.0,
        "versions": {"torch": "2.13"}, "created_at": "2025-01-01T00:00:00",
        "updated_at": "2025-01-01T00:00:00",
    })
    return key


class FixtureStore(ResultStore):
    """A :class:`ResultStore` with ``commit()`` (a no-op: every write is its own transaction)
    and ``execute()`` for raw checks, so fixtures read like plain sqlite3 code."""

    def commit(self) -> None:
        return None

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self._con.execute(sql, params)


def connect(path: Path) -> FixtureStore:
    return FixtureStore(path)


def make_layer_store(path: Path, study: str = "acts", cells: int | None = None) -> Path:
    """Three layers (relu baseline, sau clearly better, ash the same) x 3 cells (or the first
    ``cells``) x 5 seeds, plus one failed and one running row and one row of another study."""
    con = connect(path)
    for (dataset, model), base in list(BASE.items())[:cells]:
        for act, noise in NOISE.items():
            for seed, eps in enumerate(noise):
                stats = {}
                if act == "ash":
                    stats = {"features.1": {"z": 1.2, "alpha": 1.0, "active_fraction": 0.2},
                             "features.4": {"z": 0.8, "alpha": 1.1, "active_fraction": 0.25}}
                hist = fake_history(base + eps, layer_stats=stats)
                add_run(con, study=study, dataset=dataset, model=model, act=act, norm="bn",
                        seed=seed, history=hist)
    add_run(con, study=study, dataset="digits", model="mlp", act="relu", norm="bn", seed=99,
            status="failed", config={"x": 1})
    add_run(con, study=study, dataset="digits", model="mlp", act="relu", norm="bn", seed=98,
            status="running", config={"x": 2})
    add_run(con, study="other", dataset="digits", model="mlp", act="relu", norm="bn", seed=0,
            history=fake_history(0.5))
    con.commit()
    con.close()
    return path


def make_norm_store(
    path: Path, study: str = "bn_vs_agc", lrs: tuple[float, ...] = (0.01, 0.1)
) -> Path:
    """relu+bn vs relu+agc on digits/tiny_cnn over batch sizes {2, 32} x ``lrs``, 3 seeds.
    BN degrades at batch size 2; AGC does not."""
    con = connect(path)
    for bs in (2, 32):
        for lr in lrs:
            for norm in ("bn", "agc"):
                for seed in range(3):
                    # BN's loss at batch size 2 varies with the seed (a constant gap would
                    # be decided by the sign test, not the paired t-test)
                    acc = 0.9 + 0.002 * seed - (0.2 + 0.003 * seed**2
                                                if (norm == "bn" and bs == 2) else 0.0)
                    stats = {}
                    if norm == "agc":
                        stats = {"features.1": {"lambda": 0.9, "gamma": 1.0},
                                 "features.4": {"lambda": 0.6, "gamma": 1.1}}
                    add_run(con, study=study, dataset="digits", model="tiny_cnn", act="relu",
                            norm=norm, seed=seed,
                            config={"train": {"batch_size": bs, "lr": lr}},
                            history=fake_history(acc, layer_stats=stats))
    con.commit()
    con.close()
    return path
