"""Write the standard figure files of a results store (used by ``actlab plot`` and the results
page). One file per (study, kind); kinds that do not apply to a study are skipped."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from actlab.report import plots
from actlab.report.curves import epochs_to_reach
from actlab.report.load import RunRecord

__all__ = [
    "PLOT_KINDS",
    "STUDY_KINDS",
    "safe_name",
    "applicable",
    "write_activation_figures",
    "write_study_figure",
    "runs_by_study",
]

STUDY_KINDS = ("curves", "val-loss", "bn-vs-agc", "agc-lambda", "ash")
PLOT_KINDS = ("activations", *STUDY_KINDS)


def safe_name(text: str) -> str:
    """``text`` reduced to characters that are safe in file names."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "study"


def runs_by_study(runs: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    out: dict[str, list[RunRecord]] = {}
    for r in runs:
        out.setdefault(r.study, []).append(r)
    return dict(sorted(out.items()))


def _has_stat(runs: Sequence[RunRecord], suffixes: Sequence[str]) -> bool:
    for r in runs:
        for rec in r.history:
            for stats in (rec.get("layer_stats") or {}).values():
                if any(s.endswith(suf) for s in stats for suf in suffixes):
                    return True
    return False


def _has_key(runs: Sequence[RunRecord], key: str) -> bool:
    return any(key in rec for r in runs for rec in r.history)


def applicable(kind: str, runs: Sequence[RunRecord]) -> bool:
    """Whether figure ``kind`` can be drawn from ``runs`` (one study)."""
    if kind not in STUDY_KINDS:
        raise ValueError(f"unknown figure kind {kind!r}; expected one of {', '.join(PLOT_KINDS)}")
    if not runs or not any(r.history for r in runs):
        return False
    if kind == "curves":
        return _has_key(runs, "train_loss") or _has_key(runs, "test_loss")
    if kind == "val-loss":
        return _has_key(runs, "val_loss")
    if kind == "bn-vs-agc":
        keys = {k.rsplit(".", 1)[-1] for r in runs for k in r.flat_config()}
        return len({r.norm for r in runs}) > 1 and {"batch_size", "lr"} <= keys
    if kind == "agc-lambda":
        return _has_stat(runs, ("lambda",))
    return _has_stat(runs, ("active_fraction", "z"))


def write_activation_figures(
    out_dir: str | Path,
    fmt: str = "png",
    *,
    names: Sequence[str] | None = None,
    sau_ns: Sequence[float] = (1, 2, 5, 10),
    sau_alpha: float = 0.01,
    ash_params: Sequence[dict[str, Any]] | None = None,
    ash_zs: Sequence[float] = (-1.0, 0.0, 1.0, 2.0),
    ash_alphas: Sequence[float] = (1.0,),
    dpi: int = 200,
) -> list[Path]:
    """Baseline shapes (or ``names``), and SAU vs Leaky ReLU / the ASH gate when registered.

    The ASH gate is drawn for ``ash_params`` (constructor kwargs) or else for every pair of
    ``ash_zs`` × ``ash_alphas``."""
    from actlab.registry import ACTIVATIONS

    out = Path(out_dir)
    paths = []
    fig = plots.plot_activations(names, title="activations and derivatives")
    paths.append(plots.save_figure(fig, out / f"activations.{fmt}", dpi))
    if names is None and "sau" in ACTIVATIONS:
        fig = plots.plot_sau_family(sau_ns, sau_alpha)
        paths.append(plots.save_figure(fig, out / f"activations_sau.{fmt}", dpi))
    if names is None and "ash" in ACTIVATIONS:
        params = ash_params or plots.ash_gate_params(ash_zs, ash_alphas)
        fig = plots.plot_ash_gate(params)
        paths.append(plots.save_figure(fig, out / f"activations_ash_gate.{fmt}", dpi))
    return paths


def write_study_figure(
    kind: str,
    runs: Sequence[RunRecord],
    out_dir: str | Path,
    fmt: str = "png",
    *,
    study: str | None = None,
    key: str = "val_loss",
    threshold: float | None = None,
    row_axis: str = "batch_size",
    col_axis: str = "lr",
    dpi: int = 200,
) -> list[Path]:
    """Draw figure ``kind`` for one study's runs; returns the files written (a ``val-loss``
    figure comes with its epochs-to-reach table as Markdown). Nothing if not applicable."""
    if not applicable(kind, runs):
        return []
    study = study or runs[0].study
    base = Path(out_dir) / f"{kind.replace('-', '_')}_{safe_name(study)}"
    image = base.with_name(f"{base.name}.{fmt}")
    if kind == "curves":
        fig = plots.plot_training_curves(runs)
    elif kind == "val-loss":
        fig = plots.plot_val_loss(runs, key)
        table = epochs_to_reach(runs, key, threshold)
        md = base.with_name(f"{base.name}_epochs.md")
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(table.format("md"), encoding="utf-8")
        _study_title(fig, study)
        return [plots.save_figure(fig, image, dpi), md]
    elif kind == "bn-vs-agc":
        fig = plots.plot_norm_grid(runs, row_axis=row_axis, col_axis=col_axis)
    elif kind == "agc-lambda":
        fig = plots.plot_agc_lambda(runs)
    else:
        fig = plots.plot_ash_stats(runs)
    if kind != "bn-vs-agc":  # the grid has its own title
        _study_title(fig, study)
    return [plots.save_figure(fig, image, dpi)]


def _study_title(fig: Any, study: str) -> None:
    """Put ``study NAME`` in front of the figure's title (what all its panels share)."""
    from actlab.report.style import paper_style

    old = fig.get_suptitle()
    with paper_style():
        fig.suptitle(f"study {study}" + (f": {old}" if old else ""))
