"""Sweeps: experiment specs (TOML), grid expansion, the SQLite results store and the runners.

    >>> from actlab.sweep import load_spec, expand, run_cells
    >>> spec = load_spec("specs/default.toml")
    >>> cells = expand(spec)                      # one Cell per act x norm x seed x grid point
    >>> outcome = run_cells(cells, db_path="actlab-results/results.sqlite",
    ...                     out_dir="actlab-results", workers=2)

The command line (``actlab run``) wraps exactly these calls.
"""

from actlab.sweep.execute import execute_cell, resolve_executor
from actlab.sweep.grid import Cell, canonical_json, cell_key, expand
from actlab.sweep.runner import SweepOutcome, run_cell, run_cells
from actlab.sweep.spec import SpecError, StudySpec, default_spec_path, load_spec, parse_spec
from actlab.sweep.store import ResultStore, RunRow, StoreError
from actlab.sweep.summary import format_summary

__all__ = [
    "Cell",
    "ResultStore",
    "RunRow",
    "SpecError",
    "StoreError",
    "StudySpec",
    "SweepOutcome",
    "canonical_json",
    "cell_key",
    "default_spec_path",
    "execute_cell",
    "expand",
    "format_summary",
    "load_spec",
    "parse_spec",
    "resolve_executor",
    "run_cell",
    "run_cells",
]
