"""One row of the results store as a Python object, and the JSON helpers around it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from actlab.store.errors import StoreError
from actlab.store.schema import RUN_COLUMNS

__all__ = ["RunRow", "flatten_config", "merge_history", "dumps"]


def dumps(value: Any) -> str | None:
    """Canonical JSON of ``value`` (sorted keys; numpy / torch scalars become numbers)."""
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, allow_nan=True, default=_json_default)


def _json_default(obj: Any) -> Any:
    for conv in (float, str):
        try:
            return conv(obj)
        except (TypeError, ValueError):
            continue
    raise TypeError(f"cannot store {type(obj).__name__} as JSON")  # pragma: no cover


def _decode(text: str | None, column: str, key: str, default: Any) -> Any:
    if text is None or text == "":
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise StoreError(f"run {key!r}: column {column!r} is not valid JSON ({exc})") from None


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}``; lists are kept as values."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_config(value, prefix=f"{name}."))
        else:
            out[name] = value
    return out


def merge_history(
    old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Union of two lists of epoch records by ``epoch`` (``new`` wins), sorted by epoch."""
    by_epoch: dict[int, dict[str, Any]] = {}
    for rec in (*old, *new):
        by_epoch[int(rec["epoch"])] = dict(rec)
    return [by_epoch[e] for e in sorted(by_epoch)]


@dataclass(frozen=True)
class RunRow:
    """One row of ``runs`` (one seed of one cell of a study) with its JSON columns decoded.

    The sweep writes these rows and the report reads them; ``status`` is 'done' for every row
    the report sees.
    """

    cell_key: str
    study: str
    dataset: str
    model: str
    act: str
    norm: str
    seed: int
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    wall_time: float | None = None
    peak_mem_mb: float | None = None
    status: str = "done"
    versions: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    created_at: str = ""
    updated_at: str = ""

    @classmethod
    def from_sql(cls, row: Sequence[Any]) -> RunRow:
        """A row from ``SELECT <RUN_COLUMNS> FROM runs``; bad JSON raises StoreError."""
        values = dict(zip(RUN_COLUMNS, row, strict=True))
        key = str(values["cell_key"])
        for col, empty in (("config", {}), ("history", []), ("metrics", {}), ("versions", {})):
            values[col] = _decode(values[col], col, key, empty)
        values["seed"] = int(values["seed"])
        return cls(**values)

    def epochs_done(self) -> int:
        """The highest epoch in the stored history (0 for none)."""
        return max((int(r.get("epoch", 0)) for r in self.history), default=0)

    def value(self, metric: str) -> float:
        """The final value of ``metric``: a key of ``metrics``, or ``wall_time``/``peak_mem_mb``.

        Raises ``KeyError`` naming the available metrics when it is absent.
        """
        if metric in self.metrics:
            return float(self.metrics[metric])
        if metric in ("wall_time", "peak_mem_mb") and getattr(self, metric) is not None:
            return float(getattr(self, metric))
        known = ", ".join(sorted(self.metrics)) or "none"
        raise KeyError(f"run {self.cell_key[:10]} has no metric {metric!r} (has: {known})")

    def flat_config(self) -> dict[str, Any]:
        """The config flattened to dotted keys (see :func:`flatten_config`)."""
        return flatten_config(self.config)
