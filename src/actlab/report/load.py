"""Read finished runs from the results store (SQLite, table ``runs``) without the sweep code.

Only rows with ``status = 'done'`` are returned; ``config``, ``history`` and ``metrics`` are decoded
from JSON. The store schema is the one written by ``actlab.sweep.store.ResultStore``::

    runs(cell_key, study, dataset, model, act, norm, seed, config, status, history, metrics,
         wall_time, peak_mem_mb, versions, error, created_at, updated_at)
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunRecord", "StoreError", "load_runs", "flatten_config"]

_COLUMNS = (
    "cell_key", "study", "dataset", "model", "act", "norm", "seed", "config", "history",
    "metrics", "wall_time", "peak_mem_mb",
)


class StoreError(ValueError):
    """The results store is missing, unreadable or does not have the expected schema."""


@dataclass(frozen=True)
class RunRecord:
    """One finished run (one seed of one cell of a study)."""

    cell_key: str
    study: str
    dataset: str
    model: str
    act: str
    norm: str
    seed: int
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    wall_time: float | None = None
    peak_mem_mb: float | None = None

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


def _decode(text: str | None, what: str, key: str, default: Any) -> Any:
    if text is None or text == "":
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise StoreError(f"run {key!r}: column {what!r} is not valid JSON ({exc})") from None


def load_runs(
    db_path: str | os.PathLike[str], study: str | Iterable[str] | None = None
) -> list[RunRecord]:
    """All finished runs in the store at ``db_path``, optionally only those of ``study``.

    ``study`` may be one name or several. Rows are ordered by (study, dataset, model, act, norm,
    seed, cell_key) so that reports are deterministic. Raises :class:`StoreError` if the file does
    not exist or has no ``runs`` table.
    """
    path = Path(db_path)
    if not path.is_file():
        raise StoreError(f"results store {str(path)!r} does not exist")
    studies: list[str] | None
    if study is None:
        studies = None
    elif isinstance(study, str):
        studies = [study]
    else:
        studies = list(study)
        if not all(isinstance(s, str) for s in studies):
            raise TypeError(f"study must be a name or names (str), got {study!r}")

    query = f"SELECT {', '.join(_COLUMNS)} FROM runs WHERE status = 'done'"
    params: list[Any] = []
    if studies is not None:
        query += f" AND study IN ({', '.join('?' * len(studies))})"
        params.extend(studies)
    query += " ORDER BY study, dataset, model, act, norm, seed, cell_key"

    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:  # pragma: no cover - depends on the file system
        raise StoreError(f"cannot open results store {str(path)!r}: {exc}") from None
    try:
        rows = con.execute(query, params).fetchall()
    except sqlite3.DatabaseError as exc:
        raise StoreError(
            f"{str(path)!r} is not a results store with a 'runs' table ({exc})"
        ) from None
    finally:
        con.close()

    runs = []
    for row in rows:
        rec = dict(zip(_COLUMNS, row, strict=True))
        key = rec["cell_key"]
        runs.append(
            RunRecord(
                cell_key=key,
                study=rec["study"],
                dataset=rec["dataset"],
                model=rec["model"],
                act=rec["act"],
                norm=rec["norm"],
                seed=int(rec["seed"]),
                config=_decode(rec["config"], "config", key, {}),
                history=_decode(rec["history"], "history", key, []),
                metrics=_decode(rec["metrics"], "metrics", key, {}),
                wall_time=rec["wall_time"],
                peak_mem_mb=rec["peak_mem_mb"],
            )
        )
    return runs
