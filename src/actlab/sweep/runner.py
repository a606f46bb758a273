"""Local sweep runner: run the cells of a study, in this process or in worker processes.

Life cycle of a cell (all writes go through :class:`~actlab.store.ResultStore`)::

    claim()          -> 'done' already: skipped | leased by a live process: 'busy', retried
                        later | else this process holds the cell's lease (renewed by a thread)
    start()          -> row 'running' (new, or resumed: history kept when a checkpoint exists)
    each epoch       -> record_epoch(): history += record   (after the epoch's checkpoint)
    end              -> finish(): 'done' + metrics          | fail(): 'failed' + error message
                        (both release the lease)

Several ``actlab run`` processes on one store therefore split the cells between them and never
train one twice (see :mod:`actlab.store.leases`); each waits for cells leased by the others
until they are done, or takes them over when their owner dies (at once for a dead process on
this host, after the lease expires for another host).

A killed process leaves its cell 'running' with a checkpoint in
``<out_dir>/checkpoints/<cell_key>.pt``; the next run of the same command resumes it from that
checkpoint, so at most the current epoch is lost. 'failed' cells are retried (from their
checkpoint when they have one). A checkpoint that cannot be read is renamed
``<key>.pt.corrupt-<time>`` (kept), a warning names it, and the cell restarts from epoch 1.
SIGINT / SIGTERM stop the sweep gracefully (:mod:`actlab.sweep.lifecycle`).

Fault injection for tests of resuming: ``ACTLAB_SWEEP_FAULT="<key prefix>@<epoch>[:exit]"``
(comma-separated for several) makes the cell whose key starts with the prefix raise an error
(``:exit``: end the whole process at once, like a kill) right after that epoch is recorded.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actlab.store import Heartbeat, LeaseLost, ResultStore, StoreError, make_owner
from actlab.store.leases import default_lease_seconds
from actlab.sweep.cellenv import cell_environment
from actlab.sweep.execute import Executor, resolve_executor
from actlab.sweep.grid import Cell
from actlab.sweep.lifecycle import GracefulStop, StopRequested, die_with_parent
from actlab.sweep.progress import ProgressBoard, QueueReporter, Reporter, format_metric
from actlab.sweep.versions import collect_versions
from actlab.train.checkpoint import CorruptCheckpoint, quarantine

__all__ = [
    "SweepOutcome", "run_cells", "run_cell", "checkpoint_path", "available_cores",
    "threads_per_worker", "FaultInjected", "StoreSink",
]

FAULT_ENV = "ACTLAB_SWEEP_FAULT"


class FaultInjected(RuntimeError):
    """Raised by the fault-injection hook (see the module docstring)."""


@dataclass
class SweepOutcome:
    """What a call of :func:`run_cells` did."""

    total: int
    skipped: int = 0
    done: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    #: cells left 'running' because their worker process died
    lost: list[str] = field(default_factory=list)
    #: cells stopped after an epoch by SIGINT/SIGTERM (resumable)
    interrupted: list[str] = field(default_factory=list)
    #: cells still leased by another live process when this one gave up waiting
    busy: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.lost and not self.interrupted and not self.busy


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Torch threads of each of ``workers`` processes: ``max(1, cores // workers)``."""
    return max(1, (cores or available_cores()) // max(1, workers))


def checkpoint_path(out_dir: str | os.PathLike[str], key: str) -> Path:
    return Path(out_dir) / "checkpoints" / f"{key}.pt"


def _faults() -> dict[str, tuple[int, str]]:
    spec = os.environ.get(FAULT_ENV, "").strip()
    out: dict[str, tuple[int, str]] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        prefix, _, rest = item.partition("@")
        epoch, _, mode = rest.partition(":")
        out[prefix] = (int(epoch), mode or "raise")
    return out


def _maybe_fault(key: str, epoch: int) -> None:
    for prefix, (at, mode) in _faults().items():
        if key.startswith(prefix) and epoch == at:
            if mode == "exit":
                os._exit(75)
            raise FaultInjected(f"fault injected after epoch {epoch} ({FAULT_ENV})")


def _no_report(kind: str, key: str, info: dict[str, Any]) -> None:
    return None


class StoreSink:
    """Where :func:`run_cell` writes a cell's life cycle: straight into a :class:`ResultStore`,
    under a lease held by ``owner`` (renewed by a :class:`~actlab.store.Heartbeat` thread).
    (The Ray engine uses a sink that forwards the same calls to the driver process.)"""

    def __init__(self, store: ResultStore, *, owner: str | None = None,
                 lease_s: float | None = None) -> None:
        self.store = store
        self.owner = owner or make_owner()
        self.lease_s = float(lease_s) if lease_s else default_lease_seconds()
        self._beats: dict[str, Heartbeat] = {}

    def claim(self, cell: Cell) -> str:
        """'claimed' | 'done' | 'busy' (see ``ResultStore.claim``)."""
        result = self.store.claim(cell.key, self.owner, lease_s=self.lease_s)
        if result == "claimed":
            self._beats[cell.key] = Heartbeat(self.store.path, cell.key, self.owner,
                                              self.lease_s).start()
        return result

    def release(self, key: str) -> None:
        beat = self._beats.pop(key, None)
        if beat is not None:
            beat.stop()
        with contextlib.suppress(StoreError):  # the lease then simply expires
            self.store.release(key, self.owner)

    def start(self, cell: Cell, *, keep_history: bool) -> str | None:
        return self.store.start(
            cell.key, study=cell.study, dataset=cell.dataset, model=cell.model, act=cell.act,
            norm=cell.norm, seed=cell.seed, config=cell.config,
            versions=collect_versions(cell.layer_backend),
            keep_history=keep_history,
        )

    def epochs_done(self, key: str) -> int:
        row = self.store.get(key)
        return row.epochs_done() if row is not None else 0

    def epoch(self, key: str, record: dict[str, Any]) -> None:
        beat = self._beats.get(key)
        if beat is not None and beat.lost.is_set():
            raise LeaseLost(f"cell {key[:12]}: lease taken over by another process")
        self.store.record_epoch(key, record, owner=self.owner)

    def finish(self, key: str, **result: Any) -> None:
        self.store.finish(key, owner=self.owner, **result)

    def fail(self, key: str, error: str) -> None:
        self.store.fail(key, error, owner=self.owner)


def _warn(message: str) -> None:
    print(f"actlab: warning: {message}", file=sys.stderr, flush=True)


def run_cell(
    cell: Cell,
    store: ResultStore | Any,
    out_dir: str | os.PathLike[str],
    *,
    executor: str | Executor | None = None,
    report: Reporter | None = None,
    keep_checkpoints: bool = False,
    stop: Any = None,
    lease_s: float | None = None,
) -> tuple[str, str | None]:
    """Run one cell through its life cycle (module docstring). Returns ``(status, error)``:
    status is 'skipped' (already done), 'busy' (leased by another process), 'done', 'failed'
    or 'interrupted' (``stop`` was set: stopped after an epoch, or never started).

    Only ``Exception`` marks a cell failed; ``KeyboardInterrupt``/``SystemExit`` leave it
    'running' for a later resume. ``store`` is a :class:`ResultStore` (then the cell is claimed
    under a lease of ``lease_s`` seconds) or a sink with the methods of :class:`StoreSink`.
    ``stop`` is an event-like object (``is_set()``) checked before the cell and after each epoch.
    """
    sink = StoreSink(store, lease_s=lease_s) if isinstance(store, ResultStore) else store
    if stop is not None and stop.is_set():
        return "interrupted", None
    claim = sink.claim(cell)
    if claim == "done":
        return "skipped", None
    if claim == "busy":
        return "busy", None
    try:
        return _run_claimed(cell, sink, out_dir, executor, report or _no_report,
                            keep_checkpoints, stop)
    finally:
        sink.release(cell.key)


def _run_claimed(
    cell: Cell, sink: Any, out_dir: str | os.PathLike[str], executor: str | Executor | None,
    report: Reporter, keep_checkpoints: bool, stop: Any,
) -> tuple[str, str | None]:
    run = resolve_executor(executor)
    ckpt = checkpoint_path(out_dir, cell.key)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    resume = ckpt.exists()
    previous = sink.start(cell, keep_history=resume)
    if previous == "done":
        return "skipped", None
    initial = sink.epochs_done(cell.key) if resume else 0
    report("start", cell.key, {"label": cell.label, "epochs": cell.epochs, "initial": initial})

    def on_epoch(epoch: int, record: dict[str, Any]) -> None:
        rec = dict(record)
        rec["epoch"] = int(epoch)
        sink.epoch(cell.key, rec)
        report("epoch", cell.key, {"epoch": int(epoch), "metric": format_metric(rec)})
        _maybe_fault(cell.key, int(epoch))
        if stop is not None and stop.is_set() and epoch < cell.epochs:
            raise StopRequested(f"stopped after epoch {epoch}")

    def train() -> Any:
        with cell_environment(cell):  # pinned threads and plug-ins, in any process
            return run(cell.config, runtime=dict(cell.runtime), checkpoint_path=str(ckpt),
                       on_epoch=on_epoch)

    try:
        try:
            result = train()
        except CorruptCheckpoint as exc:
            if not exc.path.exists():
                raise
            moved = quarantine(exc.path)
            _warn(f"{exc}; moved it to {moved} and restarting cell {cell.label} "
                  f"({cell.key[:12]}) from epoch 1")
            sink.start(cell, keep_history=False)
            report("start", cell.key, {"label": cell.label, "epochs": cell.epochs,
                                       "initial": 0})
            result = train()
        metrics = dict(result.metrics)
        history = list(getattr(result, "history", None) or [])
    except StopRequested:
        report("end", cell.key, {"status": "interrupted"})
        return "interrupted", None
    except LeaseLost as exc:
        _warn(f"cell {cell.label}: {exc}; leaving it to the new owner")
        report("end", cell.key, {"status": "busy"})
        return "busy", None
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}".strip()
        tb = traceback.format_exc(limit=-3)
        try:
            sink.fail(cell.key, f"{message}\n{tb}")
        except LeaseLost:
            return "busy", None
        report("end", cell.key, {"status": "failed", "error": message})
        return "failed", message
    try:
        sink.finish(
            cell.key, metrics=metrics, history=history,
            wall_time=_float_or_none(getattr(result, "wall_time", None)),
            peak_mem_mb=_float_or_none(getattr(result, "peak_mem_mb", None)),
        )
    except LeaseLost as exc:
        _warn(f"cell {cell.label}: {exc}; leaving it to the new owner")
        return "busy", None
    if not keep_checkpoints:
        ckpt.unlink(missing_ok=True)
    report("end", cell.key, {"status": "done"})
    return "done", None


def _float_or_none(v: Any) -> float | None:
    return None if v is None else float(v)


# ----------------------------------------------------------------------------------------------
# worker processes
# ----------------------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(queue: Any, threads: int, stop: Any = None, parent_pid: int | None = None,
                 lease_s: float | None = None) -> None:
    import torch

    if parent_pid is not None:
        die_with_parent(parent_pid)
    # Ctrl-C reaches the whole process group: the parent decides, workers finish their epoch.
    # SIGTERM keeps its default (the pool itself terminates workers with it).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    _WORKER["report"] = QueueReporter(queue)
    _WORKER["stores"] = {}
    _WORKER["stop"] = stop
    _WORKER["lease_s"] = lease_s
    _WORKER["owner"] = make_owner()


def _worker_run(
    cell: Cell, db_path: str, out_dir: str, executor: str | Executor | None, keep: bool
) -> tuple[str, str | None]:
    stores: dict[str, StoreSink] = _WORKER.setdefault("stores", {})
    if db_path not in stores:
        stores[db_path] = StoreSink(ResultStore(db_path), owner=_WORKER.get("owner"),
                                    lease_s=_WORKER.get("lease_s"))
    return run_cell(cell, stores[db_path], out_dir, executor=executor,
                    report=_WORKER.get("report"), keep_checkpoints=keep,
                    stop=_WORKER.get("stop"))


def _drain(queue: Any, board: Callable[[str, str, dict[str, Any]], None]) -> None:
    while True:
        try:
            kind, key, info = queue.get_nowait()
        except Exception:  # queue.Empty, or a queue closed under us
            return
        board(kind, key, info)


class _Schedule:
    """The cells still to run, and the cells leased elsewhere waiting for a retry."""

    def __init__(self, cells: Sequence[Cell], poll_s: float, wait: bool) -> None:
        self.queue: collections.deque[Cell] = collections.deque(cells)
        self.deferred: list[tuple[float, Cell]] = []
        self.poll_s, self.wait = poll_s, wait
        self.told = False  # the user was told that cells are waited for

    def defer(self, cell: Cell, outcome: SweepOutcome) -> None:
        if self.wait:
            self.deferred.append((time.monotonic() + self.poll_s, cell))
        else:
            outcome.busy.append(cell.key)

    def promote(self) -> None:
        now = time.monotonic()
        due = [c for t, c in self.deferred if t <= now]
        self.deferred = [(t, c) for t, c in self.deferred if t > now]
        self.queue.extend(due)

    def next_due(self) -> float:
        return max(0.0, min(t for t, _ in self.deferred) - time.monotonic())

    def __bool__(self) -> bool:
        return bool(self.queue or self.deferred)


def run_cells(
    cells: Sequence[Cell],
    *,
    db_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    workers: int = 1,
    executor: str | Executor | None = None,
    progress: bool = True,
    keep_checkpoints: bool = False,
    desc: str | None = None,
    lease_s: float | None = None,
    wait_for_others: bool = True,
    poll_s: float | None = None,
) -> SweepOutcome:
    """Run every cell that is not 'done' in the store at ``db_path``.

    ``workers=1`` runs the cells one after the other in this process. ``workers>1`` runs them in
    that many spawned processes, each with ``threads_per_worker(workers)`` torch threads and its
    own store connection; ``executor`` must then be importable there (a ``"module:function"``
    string or a module-level function). Workers end when this process ends (even on kill -9).

    Cells are claimed under leases of ``lease_s`` seconds (default ``$ACTLAB_LEASE_SECONDS`` or
    60). A cell leased by another live process is retried every ``poll_s`` seconds (default
    ``min(5, lease_s / 4)``) until it is done or its lease can be taken over; with
    ``wait_for_others=False`` it is left to the other process and listed in ``outcome.busy``.

    On SIGINT/SIGTERM (main thread only) no new cell starts, running cells stop after their
    current epoch, and :class:`~actlab.sweep.lifecycle.SweepInterrupted` is raised.
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    db_path = str(db_path)
    out_dir = str(out_dir)
    lease = float(lease_s) if lease_s else default_lease_seconds()
    poll = float(poll_s) if poll_s else min(5.0, lease / 4)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    outcome = SweepOutcome(total=len(cells))
    pooled = workers > 1 and len(cells) > 1
    event = multiprocessing.get_context("spawn").Event() if pooled else None
    with ResultStore(db_path) as store, GracefulStop(event) as stop:
        statuses = store.statuses(c.key for c in cells)
        todo = [c for c in cells if statuses.get(c.key) != "done"]
        outcome.skipped = len(cells) - len(todo)
        board = ProgressBoard(len(cells), skipped=outcome.skipped, enabled=progress,
                              desc=desc or "cells")
        schedule = _Schedule(todo, poll, wait_for_others)
        try:
            if not pooled or len(todo) <= 1:
                sink = StoreSink(store, lease_s=lease)
                _run_serial(schedule, outcome, board, sink, out_dir, executor,
                            keep_checkpoints, stop)
            else:
                _run_pool(schedule, outcome, board, db_path, out_dir, workers, executor,
                          keep_checkpoints, stop, lease)
        finally:
            board.close()
    stop.raise_if_stopped(outcome)
    return outcome


def _count(outcome: SweepOutcome, cell: Cell, status: str, error: str | None,
           schedule: _Schedule, board: ProgressBoard) -> None:
    if status == "done":
        outcome.done += 1
    elif status == "skipped":  # finished by another process meanwhile
        outcome.skipped += 1
        board("end", cell.key, {"status": "done"})
    elif status == "busy":
        if schedule.wait and not schedule.told:
            board.write(f"{cell.label} and maybe others are being trained by another process; "
                        "waiting for them (a dead owner's cells are taken over)")
            schedule.told = True
        schedule.defer(cell, outcome)
    elif status == "interrupted":
        outcome.interrupted.append(cell.key)
    else:
        outcome.failed[cell.key] = error or "failed"


def _run_serial(
    schedule: _Schedule, outcome: SweepOutcome, board: ProgressBoard, sink: StoreSink,
    out_dir: str, executor: str | Executor | None, keep: bool, stop: GracefulStop,
) -> None:
    while schedule and not stop.is_set():
        schedule.promote()
        if not schedule.queue:
            stop.wait(schedule.next_due())
            continue
        cell = schedule.queue.popleft()
        status, error = run_cell(cell, sink, out_dir, executor=executor, report=board,
                                 keep_checkpoints=keep, stop=stop.event)
        _count(outcome, cell, status, error, schedule, board)


def _run_pool(
    schedule: _Schedule, outcome: SweepOutcome, board: ProgressBoard, db_path: str,
    out_dir: str, workers: int, executor: str | Executor | None, keep: bool,
    stop: GracefulStop, lease_s: float,
) -> None:
    """At most ``workers`` cells are submitted at a time, so none waits in the pool's queue
    (a queued cell would still start after a stop request). When a worker dies, the cells it
    and its siblings were running are 'lost' (resumable) and a fresh pool runs the rest."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    size = min(workers, len(schedule.queue))
    initargs = (queue, threads_per_worker(workers), stop.event, os.getpid(), lease_s)

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=size, mp_context=ctx, initializer=_init_worker,
                                   initargs=initargs)

    pool = new_pool()
    broken = False
    fruitless = 0  # pools in a row that broke before any cell came back
    running: dict[Future[tuple[str, str | None]], Cell] = {}
    try:
        while running or (schedule and not stop.is_set()):
            if broken and not running:
                pool.shutdown(wait=True)
                fruitless += 1
                if fruitless >= 2:  # workers cannot even start: give up on the rest
                    outcome.lost.extend(c.key for c in schedule.queue)
                    outcome.lost.extend(c.key for _, c in schedule.deferred)
                    schedule.queue.clear()
                    schedule.deferred.clear()
                    board.write("worker processes keep dying; stopping (see the errors above)")
                    break
                pool, broken = new_pool(), False
            schedule.promote()
            while (schedule.queue and len(running) < size and not stop.is_set()
                   and not broken):
                cell = schedule.queue.popleft()
                try:
                    fut = pool.submit(_worker_run, cell, db_path, out_dir, executor, keep)
                except BrokenProcessPool:
                    schedule.queue.appendleft(cell)
                    broken = True
                    break
                running[fut] = cell
            if not running:
                stop.wait(min(schedule.next_due(), 0.5) if schedule.deferred else 0.05)
                continue
            finished, _ = wait(set(running), timeout=0.1, return_when=FIRST_COMPLETED)
            _drain(queue, board)
            for fut in finished:
                cell = running.pop(fut)
                try:
                    status, error = fut.result()
                except BrokenProcessPool:
                    broken = True
                    outcome.lost.append(cell.key)
                    board.end_bar(cell.key)
                    continue
                fruitless = 0
                _count(outcome, cell, status, error, schedule, board)
        time.sleep(0.05)
        _drain(queue, board)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    else:
        pool.shutdown(wait=True)
    finally:
        queue.close()
