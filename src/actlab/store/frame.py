"""Tables of the results store for analysis: one row per run, or per-epoch history in long form.

    >>> import actlab
    >>> df = actlab.load_runs("actlab-results/results.sqlite")      # pandas DataFrame
    >>> df.groupby(["act", "norm"])["test_acc"].agg(["mean", "std", "count"])

:func:`history_records` / :func:`write_history` give the per-epoch history in *long* format: one
record per run x epoch x metric, with the run's keys (``study`` (the spec's name), ``dataset``,
``model``, ``act``, ``norm``, ``seed``, ``cell_key``, ``status``) — what plotting libraries and
spreadsheets expect. Nested values such as ``layer_stats`` become dotted metric names
(``layer_stats.features.1.z``). ``actlab export`` writes it as CSV or Parquet.

pandas is needed by :func:`load_runs` only, pyarrow by Parquet output only (both in the
``tables`` extra: ``pip install 'actlab[tables]'``).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from actlab.store.db import ResultStore
from actlab.store.rows import RunRow, flatten_config

__all__ = ["load_runs", "history_records", "write_history", "RUN_KEYS", "LONG_COLUMNS"]

#: identity columns of a run, first in every table
RUN_KEYS = ("study", "dataset", "model", "act", "norm", "seed", "cell_key", "status")
LONG_COLUMNS = (*RUN_KEYS, "epoch", "metric", "value")


def _rows(db: str | os.PathLike[str], study: str | Iterable[str] | None,
          status: str | None) -> list[RunRow]:
    with ResultStore(db, readonly=True) as store:
        return store.list(study=study, status=status)


def _numbers(record: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _numbers(value, prefix=f"{name}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield name, float(value)


def load_runs(
    db: str | os.PathLike[str],
    study: str | Iterable[str] | None = None,
    *,
    status: str | None = "done",
) -> Any:
    """The runs in the store at ``db`` as a pandas DataFrame, one row per run.

    Columns: the run's keys (``study, dataset, model, act, norm, seed, cell_key, status``), then
    ``epochs`` (epochs recorded), ``wall_time``, ``peak_mem_mb``, ``created_at``,
    ``updated_at``, ``error``, every final metric under its own name (``test_acc``, ...), and
    the cell's config flattened with a ``config.`` prefix (``config.train.lr``, ...).

    ``study``: one name or several; ``status``: 'done' (default), 'running', 'failed' or None
    for all. The store is opened read-only. Needs pandas.
    """
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("actlab.load_runs needs pandas (pip install 'actlab[tables]')") from None
    records = []
    for row in _rows(db, study, status):
        rec: dict[str, Any] = {k: getattr(row, k) for k in RUN_KEYS}
        rec.update(epochs=row.epochs_done(), wall_time=row.wall_time,
                   peak_mem_mb=row.peak_mem_mb, created_at=row.created_at,
                   updated_at=row.updated_at, error=row.error)
        rec.update(dict(_numbers(row.metrics)))
        rec.update({f"config.{k}": v if not isinstance(v, list) else str(v)
                    for k, v in flatten_config(row.config).items()})
        records.append(rec)
    columns = [*RUN_KEYS, "epochs", "wall_time", "peak_mem_mb", "created_at", "updated_at",
               "error"]
    return pd.DataFrame.from_records(records, columns=columns if not records else None)


def history_records(
    db: str | os.PathLike[str],
    study: str | Iterable[str] | None = None,
    *,
    status: str | None = "done",
) -> Iterator[dict[str, Any]]:
    """Per-epoch history in long format: one dict per run x epoch x numeric metric, with the
    keys :data:`LONG_COLUMNS`, ordered by run, epoch, metric. NaN values are kept."""
    for row in _rows(db, study, status):
        keys = {k: getattr(row, k) for k in RUN_KEYS}
        for record in row.history:
            epoch = int(record.get("epoch", 0))
            values = {k: v for k, v in _numbers(record) if k != "epoch"}
            for metric in sorted(values):
                yield {**keys, "epoch": epoch, "metric": metric, "value": values[metric]}


def write_history(
    db: str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    study: str | Iterable[str] | None = None,
    status: str | None = "done",
) -> int:
    """Write :func:`history_records` to ``path`` as CSV or Parquet (``fmt``, or from the file
    suffix); returns the number of records. The file is written to ``<path>.tmp`` and moved
    into place, so an interrupted export leaves no half-written file."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"export format must be csv or parquet, got {fmt or path.name!r}")
    records = list(history_records(db, study, status=status))
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=LONG_COLUMNS)
            writer.writeheader()
            for rec in records:
                value = rec["value"]
                writer.writerow({**rec, "value": "nan" if math.isnan(value) else repr(value)})
    else:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ImportError("parquet export needs pyarrow (pip install 'actlab[tables]')"
                              ) from None
        schema = pa.schema([*((k, pa.string()) for k in RUN_KEYS if k != "seed"),
                            ("seed", pa.int64()), ("epoch", pa.int64()),
                            ("metric", pa.string()), ("value", pa.float64())])
        table = pa.Table.from_pylist(records, schema=schema)
        pq.write_table(table.select(list(LONG_COLUMNS)), tmp)
    os.replace(tmp, path)
    return len(records)
