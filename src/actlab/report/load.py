"""Read finished runs from the results store for reports (read-only, through actlab.store).

``RunRecord`` is :class:`actlab.store.RunRow` and ``StoreError`` is
:class:`actlab.store.StoreError`: the report and the sweep share one row type and one error.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from actlab.store import ResultStore, RunRow, StoreError, flatten_config

__all__ = ["RunRecord", "StoreError", "load_runs", "flatten_config"]

RunRecord = RunRow


def load_runs(
    db_path: str | os.PathLike[str], study: str | Iterable[str] | None = None
) -> list[RunRow]:
    """All finished ('done') runs in the store at ``db_path``, optionally only those of
    ``study`` (one name or several), ordered by (study, dataset, model, act, norm, seed,
    cell_key). The store is opened read-only, so a read-only file or folder is fine. Raises
    :class:`StoreError` (one line naming the file) when it is missing, damaged or not a store.
    """
    if study is not None and not isinstance(study, str):
        study = list(study)
        if not all(isinstance(s, str) for s in study):
            raise TypeError(f"study must be a name or names (str), got {study!r}")
    with ResultStore(db_path, readonly=True) as store:
        return store.list(study=study, status="done")
