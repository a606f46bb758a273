"""Per-epoch curves from run histories, aggregated over seeds (data only; drawing is in plots).

* :func:`history_curve` — mean and sample std over seeds of one history key per epoch;
  ``*_error`` keys absent from the records are derived as ``1 - *_acc``.
* :func:`curves_by_cell` — those curves per (dataset, model, axes) cell and layer.
* :func:`epochs_to_reach` — per layer, the first epoch at which each seed reaches a level
  (default: the best level that *every* layer's mean curve reaches in that cell).
* :func:`layer_stat_curves` — per-module curves of ``layer_stats`` entries (AGC λ, ASH z, ...).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from actlab.report import grouping as g
from actlab.report.load import RunRecord
from actlab.report.render import TextTable, check_format

__all__ = [
    "Curve",
    "history_value",
    "history_curve",
    "curves_by_cell",
    "group_runs",
    "EpochsToReach",
    "epochs_to_reach",
    "layer_stat_curves",
    "accuracy_keys",
]

Cell = tuple[str, str, tuple[Any, ...]]


@dataclass(frozen=True)
class Curve:
    """Mean and sample std (0 where only one seed) over seeds, per epoch."""

    epochs: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n: np.ndarray  # seeds contributing at each epoch

    def __len__(self) -> int:
        return int(self.epochs.size)


def history_value(record: dict[str, Any], key: str) -> float | None:
    """``record[key]``, or ``1 - record[*_acc]`` for an absent ``*_error`` key, else None."""
    if key in record and record[key] is not None:
        return float(record[key])
    if key.endswith("_error"):
        acc = key[: -len("_error")] + "_acc"
        if acc in record and record[acc] is not None:
            return 1.0 - float(record[acc])
    return None


def _aggregate(series: Iterable[dict[int, float]]) -> Curve:
    per_epoch: dict[int, list[float]] = {}
    for s in series:
        for e, v in s.items():
            if v is not None and math.isfinite(v):
                per_epoch.setdefault(e, []).append(v)
    epochs = np.array(sorted(per_epoch), dtype=np.int64)
    vals = [np.asarray(per_epoch[int(e)], dtype=np.float64) for e in epochs]
    mean = np.array([v.mean() for v in vals], dtype=np.float64)
    std = np.array([v.std(ddof=1) if v.size > 1 else 0.0 for v in vals], dtype=np.float64)
    n = np.array([v.size for v in vals], dtype=np.int64)
    return Curve(epochs, mean, std, n)


def _epoch(record: dict[str, Any], index: int) -> int:
    return int(record.get("epoch", index + 1))


def history_curve(runs: Iterable[RunRecord], key: str) -> Curve:
    """Mean ± std over ``runs`` (seeds) of history ``key`` per epoch (empty if never logged)."""
    series = []
    for r in runs:
        s = {}
        for i, rec in enumerate(r.history):
            v = history_value(rec, key)
            if v is not None:
                s[_epoch(rec, i)] = v
        series.append(s)
    return _aggregate(series)


#: (train, test) keys of the quality curve per task, first match wins: accuracy, pixel accuracy
#: (segmentation), mAP@0.5 (detection: test only) and BLEU (translation: test only)
_QUALITY_KEYS = (("train_acc", "test_acc"), ("train_pixel_acc", "test_pixel_acc"),
                 ("train_map50", "test_map50"), ("train_bleu", "test_bleu"))


def accuracy_keys(runs: Sequence[RunRecord]) -> tuple[str, str]:
    """(train, test) keys of the quality curve: accuracy; pixel accuracy for segmentation,
    mAP@0.5 for detection and BLEU for translation histories (those have no train value)."""
    for r in runs:
        for rec in r.history:
            for train, test in _QUALITY_KEYS:
                if test in rec or train in rec:
                    return train, test
    return "train_acc", "test_acc"


def group_runs(
    runs: Sequence[RunRecord],
    axes: Sequence[str] | None = None,
    with_norm: bool | None = None,
) -> dict[Cell, dict[str, list[RunRecord]]]:
    """Runs by cell (dataset, model, axis values) and layer label, in sorted order."""
    axes = g.varying_axes(runs) if axes is None else list(axes)
    with_norm = g.uses_several_norms(runs) if with_norm is None else with_norm
    out: dict[Cell, dict[str, list[RunRecord]]] = {}
    for r in runs:
        flat = r.flat_config()
        cell = (r.dataset, r.model, tuple(g.axis_value(r, a, flat) for a in axes))
        out.setdefault(cell, {}).setdefault(g.layer_label(r, with_norm), []).append(r)
    ordered = sorted(out, key=lambda c: (c[0], c[1], tuple(g.sort_key(v) for v in c[2])))
    return {c: dict(sorted(out[c].items())) for c in ordered}


def curves_by_cell(
    runs: Sequence[RunRecord],
    keys: Sequence[str],
    axes: Sequence[str] | None = None,
    with_norm: bool | None = None,
) -> dict[Cell, dict[str, dict[str, Curve]]]:
    """``{cell: {layer: {key: Curve}}}`` for every history key in ``keys``."""
    return {
        cell: {layer: {k: history_curve(rs, k) for k in keys} for layer, rs in layers.items()}
        for cell, layers in group_runs(runs, axes, with_norm).items()
    }


# ----------------------------------------------------------------------------------------------
# epochs to reach a level
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReachRow:
    dataset: str
    model: str
    axes: tuple[Any, ...]
    layer: str
    threshold: float
    first_epochs: tuple[int | None, ...]  # per seed; None: never reached
    mean_curve_epoch: int | None  # first epoch at which the mean curve reaches the level

    @property
    def reached(self) -> list[int]:
        return [e for e in self.first_epochs if e is not None]


@dataclass
class EpochsToReach:
    key: str
    higher_is_better: bool
    axes: list[str]
    rows: list[ReachRow] = field(default_factory=list)

    def to_text_table(self) -> TextTable:
        labels = g.axis_labels(self.axes)
        op = "≥" if self.higher_is_better else "≤"
        header = ["dataset", "model", *labels, "layer", f"{self.key} {op}", "reached",
                  "epochs (mean ± std)", "mean curve"]
        rows = []
        for r in self.rows:
            got = r.reached
            if got:
                ep = f"{np.mean(got):.1f}" + (f" ± {np.std(got, ddof=1):.1f}" if len(got) > 1
                                               else "")
            else:
                ep = "–"
            rows.append([r.dataset, r.model, *map(g.format_axis_value, r.axes), r.layer,
                         f"{r.threshold:.4g}", f"{len(got)}/{len(r.first_epochs)}", ep,
                         "–" if r.mean_curve_epoch is None else str(r.mean_curve_epoch)])
        title = f"Epochs to reach {self.key} {op} level (first epoch per seed)"
        notes = [
            "Level per cell, unless given: the best value that every layer's mean curve "
            "reaches in that cell. Epoch statistics are over the seeds that reached it."
        ]
        align = ["l"] * (len(header) - 4) + ["r"] * 4
        return TextTable(header, rows, title=title, notes=notes, align=align)

    def format(self, fmt: str = "text") -> str:
        check_format(fmt)
        return self.to_text_table().render(fmt)

    def __str__(self) -> str:
        return self.format("text")


def _first_epoch(epochs: Sequence[int], values: Sequence[float], level: float,
                 higher: bool) -> int | None:
    for e, v in zip(epochs, values, strict=True):
        if (v >= level) if higher else (v <= level):
            return int(e)
    return None


def epochs_to_reach(
    runs: Sequence[RunRecord],
    key: str = "val_loss",
    threshold: float | None = None,
    *,
    higher_is_better: bool | None = None,
    axes: Sequence[str] | None = None,
    with_norm: bool | None = None,
) -> EpochsToReach:
    """First epoch at which each seed's ``key`` reaches ``threshold`` (≤ for losses/errors,
    ≥ for accuracies), per cell and layer.

    Without ``threshold`` the level of a cell is the weakest of the layers' best mean-curve
    values, so every layer's mean curve reaches it.
    """
    hib = g.higher_is_better(key) if higher_is_better is None else higher_is_better
    axes = g.varying_axes(runs) if axes is None else list(axes)
    out = EpochsToReach(key, hib, list(axes))
    for (d, m, av), layers in group_runs(runs, axes, with_norm).items():
        curves = {layer: history_curve(rs, key) for layer, rs in layers.items()}
        curves = {k: c for k, c in curves.items() if len(c)}
        if not curves:
            continue
        if threshold is None:
            bests = [(c.mean.max() if hib else c.mean.min()) for c in curves.values()]
            level = float(min(bests) if hib else max(bests))
        else:
            level = float(threshold)
        for layer, curve in curves.items():
            firsts = []
            for r in layers[layer]:
                pts = [(_epoch(rec, i), history_value(rec, key)) for i, rec in
                       enumerate(r.history)]
                pts = [(e, v) for e, v in pts if v is not None]
                firsts.append(_first_epoch([e for e, _ in pts], [v for _, v in pts], level,
                                           hib))
            mean_first = _first_epoch(curve.epochs.tolist(), curve.mean.tolist(), level, hib)
            out.rows.append(ReachRow(d, m, av, layer, level, tuple(firsts), mean_first))
    return out


# ----------------------------------------------------------------------------------------------
# layer statistics
# ----------------------------------------------------------------------------------------------
_MODULE_ORDER: dict[str, list[str] | None] = {}


def module_order(run: RunRecord) -> list[str] | None:
    """Names of the run's model modules in definition (forward) order, or None when the model
    cannot be rebuilt here. The store keeps layer stats with sorted keys, which puts e.g. a
    SegNet's ``decoder.*`` before its ``encoder.*``; rebuilding the model (same name, act, norm
    and model options; class count and input channels do not change the module names)
    recovers the depth order. Cached per configuration."""
    cfg = run.config
    key = g._canon({k: cfg.get(k) for k in ("model", "model_kwargs", "act", "act_kwargs",
                                                    "norm", "norm_kwargs")})
    if key not in _MODULE_ORDER:
        _MODULE_ORDER[key] = None
        try:
            from actlab.models import create_model
            from actlab.registry import act_factory, norm_factory

            act = cfg.get("act", "relu")
            if cfg.get("act_kwargs"):
                act = act_factory(act, **cfg["act_kwargs"])
            norm = cfg.get("norm", "bn")
            if cfg.get("norm_kwargs"):
                norm = norm_factory(norm, **cfg["norm_kwargs"])
            for channels in (3, 1):
                try:
                    model = create_model(cfg["model"], act=act, norm=norm, num_classes=10,
                                         in_channels=channels, **(cfg.get("model_kwargs") or {}))
                except Exception:  # noqa: BLE001 - any failure: fall back to the logged order
                    continue
                _MODULE_ORDER[key] = [name for name, _ in model.named_modules()]
                break
        except Exception:  # noqa: BLE001
            pass
    return _MODULE_ORDER[key]


def layer_stat_curves(
    runs: Sequence[RunRecord],
    suffix: str,
) -> dict[str, Curve]:
    """``{"module/stat": Curve}`` over ``runs`` for every logged layer stat whose name ends in
    ``suffix`` (e.g. ``"lambda"`` for AGC, ``"z"`` or ``"active_fraction"`` for ASH), ordered
    by depth in the model (:func:`module_order`), else in the order of the history."""
    names: list[tuple[str, str]] = []
    for r in runs:
        for rec in r.history:
            for module, stats in (rec.get("layer_stats") or {}).items():
                for stat in stats:
                    if stat.endswith(suffix) and (module, stat) not in names:
                        names.append((module, stat))
    order = module_order(runs[0]) if runs and names else None
    if order:
        rank = {name: i for i, name in enumerate(order)}
        names.sort(key=lambda ms: rank.get(ms[0], len(rank)))
    out = {}
    for module, stat in names:
        series = []
        for r in runs:
            s = {}
            for i, rec in enumerate(r.history):
                v = ((rec.get("layer_stats") or {}).get(module) or {}).get(stat)
                if v is not None:
                    s[_epoch(rec, i)] = float(v)
            series.append(s)
        out[f"{module}/{stat}"] = _aggregate(series)
    return out
