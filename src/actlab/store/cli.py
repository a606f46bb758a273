"""``actlab export``: the per-epoch history of a store as a long CSV or Parquet table (one row
per run x epoch x metric with the run's keys; see :mod:`actlab.store.frame`)."""

from __future__ import annotations

import argparse
import os
import sys

from actlab.store.errors import StoreError
from actlab.store.frame import write_history

__all__ = ["add_export_arguments", "run_export"]


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0] if __doc__ else None
    parser.add_argument("--db", default=os.environ.get("ACTLAB_DB"),
                        help="results store (default: $ACTLAB_DB or "
                             "./actlab-results/results.sqlite)")
    parser.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="file to write (.csv or .parquet)")
    parser.add_argument("--format", choices=("csv", "parquet"),
                        help="default: from the suffix of FILE")
    parser.add_argument("--study", nargs="+", metavar="NAME", help="only these studies")
    parser.add_argument("--status", choices=("done", "running", "failed", "all"),
                        default="done", help="runs to export (default: done)")


def run_export(args: argparse.Namespace) -> int:
    from actlab.cli import DEFAULT_DB

    db = args.db or DEFAULT_DB
    status = None if args.status == "all" else args.status
    try:
        n = write_history(db, args.output, fmt=args.format, study=args.study, status=status)
    except (StoreError, ValueError, ImportError, OSError) as exc:
        print(f"actlab export: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {n} rows (run x epoch x metric) to {args.output}")
    return 0
