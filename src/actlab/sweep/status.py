"""``actlab status``: where a sweep stands, read from the store (read-only) and its leases.

Each cell is *pending* (no row yet), *running* (a live lease: owner ``host:pid:id``, epochs
done, an ETA from the mean recorded ``epoch_time`` times the epochs left), *interrupted* (left
'running' by a process that stopped or died: the next ``actlab run`` resumes it), *done* or
*failed* (first line of its error). Given a spec, its cells are listed in grid order and cells
without a row count as pending; without one, every row of the store (or of ``--study``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from actlab.store import Lease, ResultStore, RunRow, StoreError

__all__ = ["CellStatus", "cell_statuses", "format_status", "add_status_arguments", "run_status"]

STATES = ("done", "running", "interrupted", "failed", "pending")


@dataclass(frozen=True)
class CellStatus:
    """The state of one cell."""

    key: str
    study: str
    label: str
    state: str
    epochs_done: int
    epochs_total: int | None
    owner: str | None = None
    heartbeat_age_s: float | None = None
    eta_s: float | None = None
    error: str | None = None


def _row_label(row: RunRow) -> str:
    return f"{row.act}+{row.norm} s{row.seed} {row.model}/{row.dataset}"


def _epoch_seconds(row: RunRow | None) -> float | None:
    times = [float(r["epoch_time"]) for r in (row.history if row else [])
             if isinstance(r.get("epoch_time"), (int, float)) and r["epoch_time"] > 0]
    return sum(times) / len(times) if times else None


def _status(key: str, study: str, label: str, total: int | None, row: RunRow | None,
            lease: Lease | None, now: float) -> CellStatus:
    done = row.epochs_done() if row is not None else 0
    live = lease is not None and lease.alive(now)
    if row is not None and row.status == "done":
        state = "done"
    elif live:
        state = "running"
    elif row is None:
        state = "pending"
    elif row.status == "failed":
        state = "failed"
    else:
        state = "interrupted"
    eta = None
    per_epoch = _epoch_seconds(row)
    if state == "running" and per_epoch is not None and total is not None:
        eta = max(0, total - done) * per_epoch
    error = row.error.strip().splitlines()[0] if state == "failed" and row and row.error else None
    return CellStatus(key=key, study=study, label=label, state=state, epochs_done=done,
                      epochs_total=total, owner=lease.owner if live else None,
                      heartbeat_age_s=now - lease.heartbeat if live else None, eta_s=eta,
                      error=error)


def cell_statuses(store: ResultStore, cells: Sequence[Any] | None = None,
                  study: str | None = None, now: float | None = None) -> list[CellStatus]:
    """The state of each of ``cells`` (``actlab.sweep.grid.Cell``), or of every row of the
    store (of ``study``) when ``cells`` is None."""
    now = time.time() if now is None else now
    leases = store.leases()
    if cells is not None:
        rows = {r.cell_key: r for r in store.list(keys=[c.key for c in cells])}
        return [_status(c.key, c.study, c.label, c.epochs, rows.get(c.key), leases.get(c.key),
                        now) for c in cells]
    out = []
    for row in store.list(study=study):
        total = row.config.get("train", {}).get("epochs") if isinstance(row.config, dict) else None
        out.append(_status(row.cell_key, row.study, _row_label(row),
                           int(total) if isinstance(total, int) else None, row,
                           leases.get(row.cell_key), now))
    return out


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_status(statuses: Sequence[CellStatus], *, cells: bool = True) -> str:
    """A per-study totals line, then (``cells``) one line per cell."""
    lines = []
    studies = list(dict.fromkeys(s.study for s in statuses))
    if not statuses:
        return "no cells"
    for study in studies:
        group = [s for s in statuses if s.study == study]
        counts = Counter(s.state for s in group)
        running_eta = [s.eta_s for s in group if s.state == "running"]
        eta = (f"; running cells end in {_duration(max(running_eta))}"
               if running_eta and all(e is not None for e in running_eta) else "")
        lines.append(f"study {study!r}: {len(group)} cells: "
                     + ", ".join(f"{counts.get(k, 0)} {k}" for k in STATES) + eta)
        if not cells:
            continue
        width = max(len(s.label) for s in group)
        for s in group:
            total = "?" if s.epochs_total is None else str(s.epochs_total)
            line = f"  {s.state:<11} {s.key[:12]}  {s.label:<{width}}  {s.epochs_done}/{total} ep"
            if s.state == "running":
                line += (f"  owner {s.owner} (beat {_duration(s.heartbeat_age_s)} ago)"
                         f"  ETA {_duration(s.eta_s)}")
            elif s.error:
                line += f"  {s.error[:100]}"
            lines.append(line)
    return "\n".join(lines)


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0] if __doc__ else None
    parser.add_argument("spec", nargs="?", default=None,
                        help="spec file or packaged spec name: list its cells in grid order "
                             "(default: every row of the store)")
    parser.add_argument("--db", default=os.environ.get("ACTLAB_DB"),
                        help="results store (default: $ACTLAB_DB or "
                             "./actlab-results/results.sqlite)")
    parser.add_argument("--study", help="only this study (without SPEC)")
    parser.add_argument("--totals", action="store_true", help="only the totals line(s)")


def run_status(args: argparse.Namespace) -> int:
    from actlab.cli import DEFAULT_DB
    from actlab.sweep.spec import SpecError

    db = args.db or DEFAULT_DB
    try:
        cells = None
        if args.spec is not None:
            from actlab.sweep.grid import expand
            from actlab.sweep.spec import load_spec

            cells = expand(load_spec(args.spec))
        with ResultStore(db, readonly=True) as store:
            statuses = cell_statuses(store, cells, study=args.study)
    except (StoreError, SpecError) as exc:
        print(f"actlab status: error: {exc}", file=sys.stderr)
        return 2
    print(format_status(statuses, cells=not args.totals))
    return 0
