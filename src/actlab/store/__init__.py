"""The results store: one SQLite file that the sweep writes and the report reads.

    >>> from actlab.store import ResultStore
    >>> with ResultStore("actlab-results/results.sqlite", readonly=True) as store:
    ...     rows = store.list(status="done")          # list[RunRow]

:class:`ResultStore` (:mod:`actlab.store.db`) is the only code that touches the file; the sweep
writes through it, ``actlab report`` / ``status`` / ``export`` read through it with
``readonly=True``. :mod:`actlab.store.leases` has the cell leases that let several processes
share one store; :mod:`actlab.store.frame` the pandas views (``load_runs``, ``history_long``).
"""

from actlab.store.db import ResultStore
from actlab.store.errors import LeaseLost, StoreError
from actlab.store.leases import Heartbeat, Lease, default_lease_seconds, make_owner
from actlab.store.rows import RunRow, flatten_config, merge_history
from actlab.store.schema import SCHEMA, SCHEMA_VERSION, STATUSES

__all__ = [
    "Heartbeat",
    "Lease",
    "LeaseLost",
    "ResultStore",
    "RunRow",
    "SCHEMA",
    "SCHEMA_VERSION",
    "STATUSES",
    "StoreError",
    "default_lease_seconds",
    "flatten_config",
    "make_owner",
    "merge_history",
]
