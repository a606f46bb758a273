"""Group runs into cells: (dataset, model, layer, other varying config axes) over seeds.

* The *layer* of a run is its activation name, or ``act+norm`` when the runs use more than one
  norm.
* *Axes* are the flattened config keys (``train.batch_size``, ``lr``, ...) that take more than one
  value inside some (study, dataset, model, act, norm) group, i.e. the settings a study sweeps
  besides the layer. Seeds and bookkeeping keys (device, paths, progress) are never axes. When the
  runs come from several studies, ``study`` is the first axis.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

from actlab.report.load import RunRecord
from actlab.sweep.summary import METRIC_ORDER

__all__ = [
    "IGNORED_AXIS_NAMES",
    "layer_label",
    "uses_several_norms",
    "varying_axes",
    "axis_value",
    "axis_labels",
    "format_axis_value",
    "sort_key",
    "higher_is_better",
    "default_metric",
    "metric_bounds",
    "DEFAULT_METRICS",
    "PAPER_LAYERS",
    "is_paper_layer",
    "layer_matches",
    "resolve_layer",
]

#: layers whose papers this project reproduces; every other layer is a baseline by default
PAPER_LAYERS = ("sau", "ash", "agc")

#: leaf names of config keys that are never treated as sweep axes
IGNORED_AXIS_NAMES = frozenset(
    {
        "device", "progress", "out_dir", "data_dir", "checkpoint", "checkpoint_path", "run_dir",
        "log_dir", "cache_dir", "num_workers", "eval_batch_size", "log_layer_stats",
        "run_name", "run_id", "cell_key", "tag",
    }
)

#: final metrics tried, in order, when no metric is given
DEFAULT_METRICS = METRIC_ORDER

_HIGHER = ("acc", "miou", "iou", "map", "bleu", "f1", "auc", "precision", "recall")
_LOWER = ("error", "loss", "time", "mem", "nll", "perplexity", "num_params")

_MISSING = "<missing>"

#: metrics that are fractions (or percentages) of something: their values lie in [0, 1]
_FRACTIONS = ("acc", "miou", "iou", "map", "bleu", "error", "f1", "auc", "precision", "recall")
#: metrics that cannot be negative
_NON_NEGATIVE = ("loss", "time", "mem", "nll", "perplexity", "num_params")


def metric_bounds(metric: str, values: Iterable[float] = ()) -> tuple[float, float] | None:
    """The range a metric's values can take: ``(0, 1)`` for accuracy-, IoU- and error-like
    fractions (``(0, 100)`` when ``values`` show they are stored in percent), ``(0, inf)`` for
    losses, times and memory; ``None`` when the name says nothing about it or ``values`` leave
    the range it implies."""
    name = metric.lower()
    vals = [float(v) for v in values]
    if any(k in name for k in _NON_NEGATIVE):
        return (0.0, math.inf) if all(v >= 0.0 for v in vals) else None
    if any(k in name for k in _FRACTIONS):
        if all(0.0 <= v <= 1.0 for v in vals):
            return (0.0, 1.0)
        if all(0.0 <= v <= 100.0 for v in vals):
            return (0.0, 100.0)
    return None


def higher_is_better(metric: str) -> bool:
    """True for accuracy-like metrics (acc, miou, ...), False for error/loss/time/memory.

    Raises ``ValueError`` for a name that matches neither, so that the caller states it.
    """
    name = metric.lower()
    if any(k in name for k in _LOWER):
        return False
    if any(k in name for k in _HIGHER):
        return True
    raise ValueError(
        f"cannot tell whether higher {metric!r} is better; pass higher_is_better explicitly"
    )


def default_metric(runs: Sequence[RunRecord]) -> str:
    """The first of :data:`DEFAULT_METRICS` that every run has."""
    if not runs:
        raise ValueError("no finished runs to report on")
    for m in DEFAULT_METRICS:
        if all(m in r.metrics for r in runs):
            return m
    common = set.intersection(*(set(r.metrics) for r in runs))
    raise ValueError(
        f"none of {', '.join(DEFAULT_METRICS)} is in every run; pass a metric "
        f"(common metrics: {', '.join(sorted(common)) or 'none'})"
    )


def uses_several_norms(runs: Iterable[RunRecord]) -> bool:
    return len({r.norm for r in runs}) > 1


def layer_label(run: RunRecord, with_norm: bool) -> str:
    return f"{run.act}+{run.norm}" if with_norm else run.act


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _ignored(key: str) -> bool:
    leaf = key.rsplit(".", 1)[-1].lower()
    # seeds and the folds of a k-fold study are the replicates a cell is summarised over
    return "seed" in leaf or leaf in ("fold", "folds") or leaf in IGNORED_AXIS_NAMES


def varying_axes(runs: Sequence[RunRecord]) -> list[str]:
    """Config keys (dotted) that vary within some (study, dataset, model, act, norm) group."""
    flats = [r.flat_config() for r in runs]
    keys: list[str] = []
    for flat in flats:
        keys.extend(k for k in flat if k not in keys)
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, r in enumerate(runs):
        groups.setdefault((r.study, r.dataset, r.model, r.act, r.norm), []).append(i)
    axes = []
    for key in keys:
        if _ignored(key):
            continue
        for members in groups.values():
            if len({_canon(flats[i].get(key, _MISSING)) for i in members}) > 1:
                axes.append(key)
                break
    if len({r.study for r in runs}) > 1:
        axes.insert(0, "study")
    return axes


def axis_value(run: RunRecord, key: str, flat: dict[str, Any] | None = None) -> Any:
    """The value of axis ``key`` for ``run`` (hashable: lists/dicts become JSON strings)."""
    if key == "study":
        return run.study
    flat = run.flat_config() if flat is None else flat
    value = flat.get(key, _MISSING)
    return value if isinstance(value, Hashable) else _canon(value)


def axis_labels(axes: Sequence[str]) -> list[str]:
    """Short column names: the last dotted component unless that is ambiguous."""
    leaves = [a.rsplit(".", 1)[-1] for a in axes]
    return [leaf if leaves.count(leaf) == 1 else a for a, leaf in zip(axes, leaves, strict=True)]


def format_axis_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def sort_key(value: Any) -> tuple[int, float, str]:
    """Numbers first in numeric order, then everything else as text."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return (1, 0.0, str(value))
    return (0, float(value) if not math.isnan(value) else math.inf, "")


def is_paper_layer(label: str, paper_layers: Iterable[str] = PAPER_LAYERS) -> bool:
    """True when the act or the norm of layer label ``act[+norm]`` is one of ``paper_layers``."""
    return any(part in set(paper_layers) for part in label.split("+"))


def layer_matches(
    name: str, layers: Sequence[str], *, exclude: Iterable[str] = (), baseline: bool = False
) -> list[str]:
    """The layer labels ``name`` may mean: itself when it is a label, else every ``act+norm``
    label whose act is ``name``. Several matches are narrowed, while more than one is left, by
    dropping those in ``exclude`` (e.g. the candidate), then — for a ``baseline`` name — the
    paper layers (``relu`` means ``relu+bn``, not ``relu+agc``)."""
    if name in layers:
        return [name]
    matches = [lab for lab in layers if lab.split("+", 1)[0] == name]
    dropped = set(exclude)
    steps: list[Callable[[str], bool]] = [lambda lab: lab in dropped]
    if baseline:
        steps.append(is_paper_layer)
    for drop in steps:
        kept = [lab for lab in matches if not drop(lab)]
        if len(matches) > 1 and kept:
            matches = kept
    return matches


def resolve_layer(
    name: str,
    layers: Sequence[str],
    what: str = "layer",
    *,
    exclude: Iterable[str] = (),
    baseline: bool = False,
) -> str:
    """The one layer label ``name`` means (:func:`layer_matches`); ``ValueError`` (one line,
    listing the labels) when it means none or several."""
    matches = layer_matches(name, layers, exclude=exclude, baseline=baseline)
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValueError(f"{what} layer {name!r} is ambiguous: it matches {', '.join(matches)}; "
                         "write one of these")
    raise ValueError(f"unknown {what} layer {name!r}; layers in these runs: {', '.join(layers)}")
