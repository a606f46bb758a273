"""Result tables: final metric per (dataset, model, layer[, axes]) over seeds, and the
win/tie/loss table of a candidate layer against baselines.

Summary table
    mean ± sample std and the Student-t 95 % confidence interval of the final (last-epoch)
    metric over seeds, clipped to the metric's range (``[0, 100] %`` for accuracy and mIoU,
    ``≥ 0`` for a loss; :func:`actlab.report.grouping.metric_bounds`). The best layer of each
    column (at equal values of the other axes) is in bold — the largest mean for accuracy/mIoU,
    the smallest for error/loss.

Win/tie/loss table (the style of Table 8 of Biswas et al., *SAU*, arXiv 2021)
    for each baseline, the number of (dataset, model[, axes]) cells in which the candidate is
    significantly better, not significantly different, or significantly worse, decided by a
    two-sided t-test at level ``alpha`` — the paired t-test when both layers ran the same seeds,
    Welch's t-test otherwise (see :func:`actlab.report.stats.compare`). By default the p-values
    of one table (every cell against every baseline) are Holm-corrected before the decision, so
    that the chance of any false "better"/"worse" in the table stays below ``alpha``;
    ``correction="bh"`` (Benjamini–Hochberg, false discovery rate) and ``"none"`` are the other
    options (:func:`actlab.report.stats.adjust_pvalues`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from actlab.report import grouping as g
from actlab.report.load import RunRecord
from actlab.report.render import TextTable, check_format
from actlab.report.stats import (
    CORRECTIONS,
    Comparison,
    Correction,
    Summary,
    TestName,
    adjust_pvalues,
    compare,
    summarize,
)

__all__ = [
    "GroupResult",
    "ResultTable",
    "CellComparison",
    "WinTieLoss",
    "summarize_runs",
    "win_tie_loss",
    "format_number",
    "DEFAULT_CORRECTION",
    "interval_method",
    "correction_method",
]

#: multiple-comparison correction of win/tie/loss tables unless another is asked for
DEFAULT_CORRECTION: Correction = "holm"

_CORRECTION_TEXT = {
    "holm": "Holm-corrected",
    "bh": "Benjamini–Hochberg-corrected",
}


def _bound_text(value: float, scale: float) -> str:
    return "∞" if math.isinf(value) else f"{value * scale:g}"


def interval_method(bounds: tuple[float, float] | None, scale: float = 1.0) -> str:
    """How the confidence intervals are made, e.g. ``"Student t, clipped to [0, 100]"``."""
    if bounds is None:
        return "Student t"
    lo, hi = _bound_text(bounds[0], scale), _bound_text(bounds[1], scale)
    return f"Student t, clipped to [{lo}, {hi}]"


def correction_method(correction: str, family: int | None = None) -> str:
    """One clause saying which multiple-comparison correction decides the outcomes."""
    if correction == "none":
        return "no correction for multiple comparisons"
    size = f" over the {family} comparisons of this table" if family is not None else ""
    goal = ("family-wise error rate" if correction == "holm" else "false discovery rate")
    return f"p-values {_CORRECTION_TEXT[correction]}{size} ({goal} ≤ alpha)"

Cell = tuple[str, str, tuple[Any, ...]]  # (dataset, model, axis values)


@dataclass(frozen=True)
class GroupResult:
    """All seeds of one layer in one cell."""

    dataset: str
    model: str
    layer: str
    axes: tuple[Any, ...]
    values: dict[Hashable, float]  # seed -> final metric
    summary: Summary

    @property
    def cell(self) -> Cell:
        return (self.dataset, self.model, self.axes)


def _decimals(values: Sequence[float]) -> int:
    finite = [abs(v) for v in values if math.isfinite(v) and v != 0.0]
    if not finite:
        return 2
    return int(min(6, max(0, 3 - math.floor(math.log10(max(finite))))))


def format_number(value: float, decimals: int) -> str:
    return "–" if not math.isfinite(value) else f"{value:.{decimals}f}"


def _percent_default(metric: str, values: Sequence[float]) -> bool:
    name = metric.lower()
    fraction_like = any(k in name for k in ("acc", "miou", "iou", "map", "error"))
    return fraction_like and "loss" not in name and all(0.0 <= v <= 1.0 for v in values)


def _group(
    runs: Sequence[RunRecord],
    metric: str,
    axes: Sequence[str],
    with_norm: bool,
) -> dict[tuple[str, str, tuple[Any, ...], str], dict[Hashable, float]]:
    out: dict[tuple[str, str, tuple[Any, ...], str], dict[Hashable, float]] = {}
    for r in runs:
        flat = r.flat_config()
        key = (r.dataset, r.model, tuple(g.axis_value(r, a, flat) for a in axes),
               g.layer_label(r, with_norm))
        vals = out.setdefault(key, {})
        # the replicate: the seed, or (seed, fold) in a k-fold study, so folds pair like seeds
        fold = r.config.get("fold")
        seed: Hashable = r.seed if fold is None else (r.seed, fold)
        copy = 1
        while seed in vals:  # a repeated seed: keep every run (such groups are not paired)
            seed, copy = (r.seed, copy), copy + 1
        vals[seed] = r.value(metric)
    return out


@dataclass
class ResultTable:
    """Per-cell summaries of one metric; ``format()`` renders it."""

    metric: str
    higher_is_better: bool
    axes: list[str]
    layers: list[str]
    groups: list[GroupResult]
    confidence: float = 0.95
    percent: bool = False
    title: str = ""
    bounds: tuple[float, float] | None = None

    @property
    def axis_labels(self) -> list[str]:
        return g.axis_labels(self.axes)

    def cells(self) -> list[Cell]:
        seen: list[Cell] = []
        for grp in self.groups:
            if grp.cell not in seen:
                seen.append(grp.cell)
        return seen

    def get(
        self, dataset: str, model: str, layer: str, axes: tuple[Any, ...] = ()
    ) -> GroupResult | None:
        """The group of ``layer`` in cell (dataset, model, axes), or None."""
        for grp in self.groups:
            if grp.cell == (dataset, model, tuple(axes)) and grp.layer == layer:
                return grp
        return None

    def best(self) -> set[int]:
        """Indices into ``groups`` of the best layer(s) per cell (ties all count)."""
        by_cell: dict[Cell, list[int]] = {}
        for i, grp in enumerate(self.groups):
            by_cell.setdefault(grp.cell, []).append(i)
        out: set[int] = set()
        sign = 1.0 if self.higher_is_better else -1.0
        for members in by_cell.values():
            top = max(sign * self.groups[i].summary.mean for i in members)
            out |= {i for i in members if sign * self.groups[i].summary.mean == top}
        return out

    # -- rendering -------------------------------------------------------------------------
    def _scale(self) -> float:
        return 100.0 if self.percent else 1.0

    def _decimals(self) -> int:
        if self.percent:
            return 2
        return _decimals([grp.summary.mean for grp in self.groups])

    def _entry(self, grp: GroupResult, with_ci: bool = True) -> str:
        s, k, d = grp.summary, self._scale(), self._decimals()
        text = format_number(s.mean * k, d)
        if s.n > 1:
            text += f" ± {format_number(s.std * k, d)}"
            if with_ci:
                text += f" [{format_number(s.ci_low * k, d)}, {format_number(s.ci_high * k, d)}]"
        return text

    def _title(self) -> str:
        if self.title:
            return self.title
        unit = " (%)" if self.percent else ""
        better = "higher" if self.higher_is_better else "lower"
        conf = f"{self.confidence * 100:g}%"
        how = interval_method(self.bounds, self._scale())
        return (
            f"Final {self.metric}{unit}: mean ± std over seeds [{conf} CI, {how}]; "
            f"{better} is better"
        )

    def _notes(self, bold_word: str) -> list[str]:
        ns = sorted({grp.summary.n for grp in self.groups})
        if len(ns) == 1:
            seeds = f"n = {ns[0]} seed{'s' if ns[0] != 1 else ''} per entry"
        else:
            seeds = f"n = {ns[0]}–{ns[-1]} seeds per entry"
        scope = "column" if not self.axes else f"column at equal {', '.join(self.axis_labels)}"
        return [f"{seeds}. {bold_word}: best layer per {scope}."]

    def to_text_table(self, layout: str = "wide", bold_word: str = "Bold") -> TextTable:
        """Wide: a row per (axes, layer), a column per (dataset, model). Long: a row per group."""
        best = self.best()
        labels = self.axis_labels
        if layout == "long":
            header = ["dataset", "model", *labels, "layer", "n", "mean ± std", "CI"]
            rows, bold = [], set()
            for i, grp in enumerate(self.groups):
                s = grp.summary
                k, d = self._scale(), self._decimals()
                ms = format_number(s.mean * k, d) + (
                    f" ± {format_number(s.std * k, d)}" if s.n > 1 else ""
                )
                ci = (f"[{format_number(s.ci_low * k, d)}, {format_number(s.ci_high * k, d)}]"
                      if s.n > 1 else "–")
                rows.append([grp.dataset, grp.model, *map(g.format_axis_value, grp.axes),
                             grp.layer, str(s.n), ms, ci])
                if i in best:
                    bold.add((len(rows) - 1, len(header) - 2))
            align = ["l"] * (len(header) - 3) + ["r", "r", "r"]
            return TextTable(header, rows, bold, self._title(), self._notes(bold_word), align)
        if layout != "wide":
            raise ValueError(f"layout must be 'wide' or 'long', got {layout!r}")
        columns: list[tuple[str, str]] = []
        for grp in self.groups:
            if (grp.dataset, grp.model) not in columns:
                columns.append((grp.dataset, grp.model))
        axis_values = sorted({grp.axes for grp in self.groups},
                             key=lambda t: tuple(g.sort_key(v) for v in t))
        header = [*labels, "layer", *(f"{d} / {m}" for d, m in columns)]
        index = {(grp.dataset, grp.model, grp.axes, grp.layer): i
                 for i, grp in enumerate(self.groups)}
        rows, bold = [], set()
        for av in axis_values:
            for layer in self.layers:
                ids = [index.get((d, m, av, layer)) for d, m in columns]
                if all(i is None for i in ids):
                    continue
                row = [*map(g.format_axis_value, av), layer]
                for j, i in enumerate(ids):
                    row.append("–" if i is None else self._entry(self.groups[i]))
                    if i is not None and i in best:
                        bold.add((len(rows), len(labels) + 1 + j))
                rows.append(row)
        align = ["l"] * (len(labels) + 1) + ["r"] * len(columns)
        return TextTable(header, rows, bold, self._title(), self._notes(bold_word), align)

    def to_csv_table(self) -> TextTable:
        """Long format with raw (unscaled) numbers and a ``best`` column."""
        best = self.best()
        header = ["dataset", "model", *self.axes, "layer", "metric", "n", "mean", "std",
                  "ci_low", "ci_high", "best"]
        rows = []
        for i, grp in enumerate(self.groups):
            s = grp.summary
            rows.append([grp.dataset, grp.model, *map(g.format_axis_value, grp.axes), grp.layer,
                         self.metric, str(s.n), repr(s.mean), repr(s.std), repr(s.ci_low),
                         repr(s.ci_high), str(i in best)])
        return TextTable(header, rows)

    def format(self, fmt: str = "text", layout: str = "wide") -> str:
        """Render as ``text``, ``md``, ``latex`` or ``csv`` (CSV is always the long format)."""
        check_format(fmt)
        if fmt == "csv":
            return self.to_csv_table().render("csv")
        word = "*" if fmt == "text" else "Bold"
        return self.to_text_table(layout, bold_word=word).render(fmt)

    def __str__(self) -> str:
        return self.format("text")


def _prepare(
    runs: Sequence[RunRecord],
    metric: str | None,
    axes: Sequence[str] | None,
    with_norm: bool | None,
    higher_is_better: bool | None,
) -> tuple[str, list[str], bool, bool]:
    if not runs:
        raise ValueError("no finished runs to report on")
    metric = metric or g.default_metric(runs)
    missing = [r for r in runs if metric not in r.metrics and metric not in ("wall_time",
                                                                             "peak_mem_mb")]
    if missing:
        r = missing[0]
        raise ValueError(
            f"{len(missing)} run(s) lack metric {metric!r}, e.g. {r.dataset}/{r.model}/{r.act} "
            f"seed {r.seed} (has: {', '.join(sorted(r.metrics))})"
        )
    axes = g.varying_axes(runs) if axes is None else list(axes)
    with_norm = g.uses_several_norms(runs) if with_norm is None else with_norm
    hib = g.higher_is_better(metric) if higher_is_better is None else higher_is_better
    return metric, axes, with_norm, hib


def summarize_runs(
    runs: Sequence[RunRecord],
    metric: str | None = None,
    *,
    axes: Sequence[str] | None = None,
    with_norm: bool | None = None,
    higher_is_better: bool | None = None,
    confidence: float = 0.95,
    percent: bool | None = None,
) -> ResultTable:
    """Summarise the final ``metric`` over seeds per (dataset, model, layer, axes).

    ``metric`` defaults to the first of test_acc, test_miou, test_pixel_acc, test_pixel_error,
    test_loss present in every run. ``axes`` defaults to the config keys that vary besides the
    layer (:func:`actlab.report.grouping.varying_axes`); ``with_norm`` (layer = ``act+norm``)
    defaults to whether the runs use several norms. ``percent`` (show fractions as %) defaults to
    True for accuracy/mIoU/error metrics whose values all lie in [0, 1]. Confidence intervals
    are clipped to the metric's range (:func:`actlab.report.grouping.metric_bounds`).
    """
    metric, axes, with_norm, hib = _prepare(runs, metric, axes, with_norm, higher_is_better)
    grouped = _group(runs, metric, axes, with_norm)
    layers = _layer_labels(runs, with_norm)
    bounds = g.metric_bounds(metric, [v for vals in grouped.values() for v in vals.values()])
    groups = [
        GroupResult(d, m, layer, av, vals, summarize(vals.values(), confidence, bounds))
        for (d, m, av, layer), vals in grouped.items()
    ]
    groups.sort(key=lambda x: (x.dataset, x.model, tuple(g.sort_key(v) for v in x.axes),
                               layers.index(x.layer)))
    if percent is None:
        percent = _percent_default(metric, [v for grp in groups for v in grp.values.values()])
    return ResultTable(metric, hib, axes, layers, groups, confidence, percent, bounds=bounds)


# ----------------------------------------------------------------------------------------------
# win / tie / loss
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CellComparison:
    """Candidate vs one baseline in one cell; ``comparison`` is None when a side has < 2 seeds."""

    dataset: str
    model: str
    axes: tuple[Any, ...]
    baseline: str
    comparison: Comparison | None
    n_candidate: int
    n_baseline: int

    @property
    def outcome(self) -> str:
        return "n/a" if self.comparison is None else self.comparison.outcome


@dataclass
class WinTieLoss:
    """Counts of significant wins, ties and losses of ``candidate`` against each baseline."""

    candidate: str
    baselines: list[str]
    metric: str
    higher_is_better: bool
    alpha: float
    test: str
    axes: list[str]
    cells: list[CellComparison] = field(default_factory=list)
    correction: str = "none"

    def counts(self, baseline: str) -> dict[str, int]:
        out = {"win": 0, "tie": 0, "loss": 0, "n/a": 0}
        for c in self.cells:
            if c.baseline == baseline:
                out[c.outcome] += 1
        return out

    def tests_used(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.cells:
            if c.comparison is not None:
                out[c.comparison.result.test] = out.get(c.comparison.result.test, 0) + 1
        return out

    def method(self) -> str:
        """One sentence stating the test and alpha."""
        names = {"welch": "Welch's t-test", "paired": "paired t-test over shared seeds",
                 "sign": "exact sign test (paired differences all equal)"}
        if self.test == "auto":
            how = ("two-sided paired t-test where both layers ran the same seeds, "
                   "Welch's t-test otherwise")
        else:
            how = f"two-sided {names[self.test]}"
        used = ", ".join(f"{names[k]}: {v}" for k, v in sorted(self.tests_used().items()))
        used = f" (comparisons by {used})" if used else ""
        better = "higher" if self.higher_is_better else "lower"
        family = sum(c.comparison is not None for c in self.cells)
        corr = correction_method(self.correction, family)
        return (
            f"Significance: {how}, alpha = {self.alpha:g}{used}; {corr}. Metric: final "
            f"{self.metric} ({better} is better); cells with fewer than 2 seeds on a side are n/a."
        )

    def to_text_table(self) -> TextTable:
        c = self.candidate
        header = ["baseline", f"{c} better", "no difference", f"{c} worse", "n/a", "cells"]
        rows = []
        for b in self.baselines:
            k = self.counts(b)
            rows.append([b, str(k["win"]), str(k["tie"]), str(k["loss"]), str(k["n/a"]),
                         str(sum(k.values()))])
        scope = "(dataset, model" + "".join(f", {a}" for a in g.axis_labels(self.axes)) + ")"
        title = f"{c} vs baselines: number of {scope} cells won / tied / lost"
        return TextTable(header, rows, title=title, notes=[self.method()],
                         align=["l", "r", "r", "r", "r", "r"])

    def details_table(self) -> TextTable:
        """One row per (cell, baseline) with difference, effect size, test and p-value."""
        labels = g.axis_labels(self.axes)
        adj = self.correction != "none"
        header = ["dataset", "model", *labels, "baseline", "n", "diff", "d", "test", "p",
                  *([f"p ({self.correction})"] if adj else []), "outcome"]
        rows = []
        for c in self.cells:
            cmp_ = c.comparison
            if cmp_ is None:
                tail = ["–"] * (5 if adj else 4) + ["n/a"]
            else:
                r = cmp_.result
                tail = [f"{r.mean_difference:+.4g}", f"{cmp_.effect_size:+.2f}", r.test,
                        f"{r.pvalue:.3g}", *([f"{cmp_.pvalue:.3g}"] if adj else []),
                        cmp_.outcome]
            rows.append([c.dataset, c.model, *map(g.format_axis_value, c.axes), c.baseline,
                         f"{c.n_candidate}/{c.n_baseline}", *tail])
        return TextTable(header, rows, title=f"{self.candidate} vs baselines per cell",
                         notes=[self.method()])

    def format(self, fmt: str = "text", details: bool = False) -> str:
        """Render the summary (and with ``details`` the per-cell table) in ``fmt``."""
        check_format(fmt)
        if fmt == "csv":
            header = ["candidate", "baseline", "dataset", "model", *self.axes, "metric",
                      "n_candidate", "n_baseline", "test", "alpha", "mean_difference",
                      "effect_size", "pvalue", "correction", "pvalue_adjusted", "outcome"]
            rows = []
            for c in self.cells:
                cmp_ = c.comparison
                rows.append([
                    self.candidate, c.baseline, c.dataset, c.model,
                    *map(g.format_axis_value, c.axes), self.metric, str(c.n_candidate),
                    str(c.n_baseline), "" if cmp_ is None else cmp_.result.test, f"{self.alpha}",
                    "" if cmp_ is None else repr(cmp_.result.mean_difference),
                    "" if cmp_ is None else repr(cmp_.effect_size),
                    "" if cmp_ is None else repr(cmp_.result.pvalue), self.correction,
                    "" if cmp_ is None else repr(cmp_.pvalue), c.outcome,
                ])
            return TextTable(header, rows).render("csv")
        out = self.to_text_table().render(fmt)
        if details:
            out += "\n" + self.details_table().render(fmt)
        return out

    def __str__(self) -> str:
        return self.format("text")


def _layer_labels(runs: Sequence[RunRecord], with_norm: bool) -> list[str]:
    """Layer labels in order of first appearance."""
    return list(dict.fromkeys(g.layer_label(r, with_norm) for r in runs))


def win_tie_loss(
    runs: Sequence[RunRecord],
    candidate: str,
    baselines: Sequence[str] | None = None,
    metric: str | None = None,
    *,
    alpha: float = 0.05,
    test: TestName = "auto",
    axes: Sequence[str] | None = None,
    with_norm: bool | None = None,
    higher_is_better: bool | None = None,
    correction: Correction = DEFAULT_CORRECTION,
) -> WinTieLoss:
    """Compare ``candidate`` with each baseline in every cell where both ran.

    ``baselines`` defaults to every other layer in ``runs``. Layer names are labels as in the
    summary table (``act`` or ``act+norm``); a bare act name is accepted when it names one
    layer, or one layer besides the candidate (``relu`` for ``relu+bn`` when the candidate is
    ``relu+agc``). ``correction`` (``"holm"``, ``"bh"`` or ``"none"``) adjusts the p-values of
    all comparisons in the table together before each outcome is decided at ``alpha``.
    """
    if correction not in CORRECTIONS:
        raise ValueError(
            f"correction must be one of {', '.join(CORRECTIONS)}, got {correction!r}"
        )
    metric, axes, with_norm, hib = _prepare(runs, metric, axes, with_norm, higher_is_better)
    grouped = _group(runs, metric, axes, with_norm)
    layers = _layer_labels(runs, with_norm)
    cand = g.resolve_layer(candidate, layers, "candidate")
    if baselines is None:
        bases = [lab for lab in layers if lab != cand]
    else:
        bases = [g.resolve_layer(b, layers, "baseline", exclude=[cand], baseline=True)
                 for b in baselines]
        if cand in bases:
            raise ValueError(f"candidate {cand!r} is also listed as a baseline")
    cells = sorted({(d, m, av) for (d, m, av, _) in grouped},
                   key=lambda c: (c[0], c[1], tuple(g.sort_key(v) for v in c[2])))
    result = WinTieLoss(cand, bases, metric, hib, float(alpha), test, list(axes),
                        correction=correction)
    for d, m, av in cells:
        a = grouped.get((d, m, av, cand))
        if a is None:
            continue
        for b in bases:
            bv = grouped.get((d, m, av, b))
            if bv is None:
                continue
            cmp_ = None
            shared = len(set(a) & set(bv))
            if len(a) >= 2 and len(bv) >= 2 and (test != "paired" or shared >= 2):
                cmp_ = compare(a, bv, higher_is_better=hib, alpha=alpha, test=test)
            result.cells.append(CellComparison(d, m, av, b, cmp_, len(a), len(bv)))
    return _corrected(result)


def _corrected(wtl: WinTieLoss) -> WinTieLoss:
    """Decide every comparison of ``wtl`` again on its multiple-comparison adjusted p-value."""
    if wtl.correction == "none":
        return wtl
    tested = [i for i, c in enumerate(wtl.cells) if c.comparison is not None]
    adjusted = adjust_pvalues([wtl.cells[i].comparison.result.pvalue for i in tested],
                              wtl.correction)  # type: ignore[union-attr]
    for i, p in zip(tested, adjusted, strict=True):
        c = wtl.cells[i]
        wtl.cells[i] = dataclasses.replace(
            c, comparison=c.comparison.corrected(p, wtl.correction)  # type: ignore[union-attr]
        )
    return wtl
