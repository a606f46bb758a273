"""The results store as the sweep sees it: :mod:`actlab.store` (one module for sweep and report).

Kept so that ``from actlab.sweep.store import ResultStore`` keeps working.
"""

from actlab.store import SCHEMA, STATUSES, ResultStore, RunRow, StoreError, merge_history

__all__ = ["ResultStore", "RunRow", "STATUSES", "SCHEMA", "StoreError", "merge_history"]
