"""A plain-text mean ± std table of a sweep's final metric, printed at the end of ``actlab run``.

(``actlab.report`` builds the full tables with confidence intervals and significance tests.)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from actlab.sweep.grid import Cell
from actlab.sweep.store import RunRow

__all__ = ["summary_rows", "format_summary", "pick_metric", "METRIC_ORDER"]

#: final metrics tried, in order, when none is named: each task's primary metric first
METRIC_ORDER = ("test_acc", "test_miou", "test_map50", "test_bleu", "test_pixel_acc",
                "test_pixel_error", "test_loss")


def pick_metric(rows: Sequence[RunRow]) -> str | None:
    """The first of :data:`METRIC_ORDER` present in every row."""
    for metric in METRIC_ORDER:
        if rows and all(metric in r.metrics for r in rows):
            return metric
    return None


def summary_rows(
    cells: Sequence[Cell], rows: Sequence[RunRow], metric: str
) -> list[dict[str, Any]]:
    """One dict per (act, norm, grid point) in spec order: label columns, n, mean, std."""
    by_key = {r.cell_key: r for r in rows if r.status == "done" and metric in r.metrics}
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for cell in cells:
        gkey = (cell.act, cell.norm, tuple((k, repr(v)) for k, v in cell.axes.items()))
        group = groups.setdefault(
            gkey, {"act": cell.act, "norm": cell.norm, **cell.axes, "values": [], "cells": 0}
        )
        group["cells"] += 1
        row = by_key.get(cell.key)
        if row is not None:
            group["values"].append(float(row.metrics[metric]))
    out = []
    for group in groups.values():
        values = [v for v in group.pop("values") if math.isfinite(v)]
        group["n"] = len(values)
        group["mean"] = statistics.fmean(values) if values else math.nan
        group["std"] = statistics.stdev(values) if len(values) > 1 else math.nan
        out.append(group)
    return out


def _fmt(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.4f} ± {std:.4f}" if not math.isnan(std) else f"{mean:.4f}"


def format_summary(cells: Sequence[Cell], rows: Sequence[RunRow], metric: str | None = None) -> str:
    """The table as text (``metric``: default the first of :data:`METRIC_ORDER` available)."""
    done = [r for r in rows if r.status == "done"]
    metric = metric or pick_metric(done)
    if metric is None:
        return "no finished cells to summarise"
    table = summary_rows(cells, done, metric)
    axes = [k for k in table[0] if k not in ("act", "norm", "cells", "n", "mean", "std")]
    show_norm = len({t["norm"] for t in table}) > 1
    header = ["layer", *(["norm"] if show_norm else []),
              *[a.rsplit(".", 1)[-1] for a in axes], "n", f"{metric} (mean ± std)"]
    lines = [header]
    for t in table:
        lines.append([
            t["act"], *([t["norm"]] if show_norm else []),
            *[f"{t[a]:g}" if isinstance(t[a], float) else str(t[a]) for a in axes],
            f"{t['n']}/{t['cells']}", _fmt(t["mean"], t["std"]),
        ])
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    rule = "  ".join("-" * w for w in widths)
    text = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in lines]
    return "\n".join([text[0], rule, *text[1:]])
