"""Local sweep runner: run the cells of a study, in this process or in worker processes.

Life cycle of a cell (all writes go through :class:`~actlab.sweep.store.ResultStore`)::

    'done' already?  -> skipped
    start()          -> row 'running' (new, or resumed: history kept when a checkpoint exists)
    each epoch       -> record_epoch(): history += record   (after the epoch's checkpoint)
    end              -> finish(): 'done' + metrics          | fail(): 'failed' + error message

A killed process leaves its cell 'running' with a checkpoint in
``<out_dir>/checkpoints/<cell_key>.pt``; the next run of the same command resumes it from that
checkpoint, so at most the current epoch is lost. 'failed' cells are retried (from their
checkpoint when they have one).

Fault injection for tests of resuming: ``ACTLAB_SWEEP_FAULT="<key prefix>@<epoch>[:exit]"``
(comma-separated for several) makes the cell whose key starts with the prefix raise an error
(``:exit``: end the whole process at once, like a kill) right after that epoch is recorded.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actlab.sweep.cellenv import cell_environment
from actlab.sweep.execute import Executor, resolve_executor
from actlab.sweep.grid import Cell
from actlab.sweep.progress import ProgressBoard, QueueReporter, Reporter, format_metric
from actlab.sweep.store import ResultStore
from actlab.sweep.versions import collect_versions

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

    @property
    def ok(self) -> bool:
        return not self.failed and not self.lost


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
    """Where :func:`run_cell` writes a cell's life cycle: straight into a :class:`ResultStore`.
    (The Ray engine uses a sink that forwards the same calls to the driver process.)"""

    def __init__(self, store: ResultStore) -> None:
        self.store = store

    def start(self, cell: Cell, *, keep_history: bool) -> str | None:
        return self.store.start(
            cell.key, study=cell.study, dataset=cell.dataset, model=cell.model, act=cell.act,
            norm=cell.norm, seed=cell.seed, config=cell.config, versions=collect_versions(),
            keep_history=keep_history,
        )

    def epochs_done(self, key: str) -> int:
        row = self.store.get(key)
        return row.epochs_done() if row is not None else 0

    def epoch(self, key: str, record: dict[str, Any]) -> None:
        self.store.record_epoch(key, record)

    def finish(self, key: str, **result: Any) -> None:
        self.store.finish(key, **result)

    def fail(self, key: str, error: str) -> None:
        self.store.fail(key, error)


def run_cell(
    cell: Cell,
    store: ResultStore | Any,
    out_dir: str | os.PathLike[str],
    *,
    executor: str | Executor | None = None,
    report: Reporter | None = None,
    keep_checkpoints: bool = False,
) -> tuple[str, str | None]:
    """Run one cell through its life cycle (module docstring). Returns ``(status, error)`` where
    status is 'skipped' (already done), 'done' or 'failed'. Only ``Exception`` marks a cell
    failed; ``KeyboardInterrupt``/``SystemExit`` leave it 'running' for a later resume.

    ``store`` is a :class:`ResultStore` or a sink with the methods of :class:`StoreSink`.
    """
    sink = StoreSink(store) if isinstance(store, ResultStore) else store
    report = report or _no_report
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

    try:
        with cell_environment(cell):  # pinned threads and plug-ins, in any process
            result = run(cell.config, runtime=dict(cell.runtime), checkpoint_path=str(ckpt),
                         on_epoch=on_epoch)
        metrics = dict(result.metrics)
        history = list(getattr(result, "history", None) or [])
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}".strip()
        tb = traceback.format_exc(limit=-3)
        sink.fail(cell.key, f"{message}\n{tb}")
        report("end", cell.key, {"status": "failed", "error": message})
        return "failed", message
    sink.finish(
        cell.key, metrics=metrics, history=history,
        wall_time=_float_or_none(getattr(result, "wall_time", None)),
        peak_mem_mb=_float_or_none(getattr(result, "peak_mem_mb", None)),
    )
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


def _init_worker(queue: Any, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _WORKER["report"] = QueueReporter(queue)
    _WORKER["stores"] = {}


def _worker_run(
    cell: Cell, db_path: str, out_dir: str, executor: str | Executor | None, keep: bool
) -> tuple[str, str | None]:
    stores: dict[str, ResultStore] = _WORKER.setdefault("stores", {})
    if db_path not in stores:
        stores[db_path] = ResultStore(db_path)
    return run_cell(cell, stores[db_path], out_dir, executor=executor,
                    report=_WORKER.get("report"), keep_checkpoints=keep)


def _drain(queue: Any, board: Callable[[str, str, dict[str, Any]], None]) -> None:
    while True:
        try:
            kind, key, info = queue.get_nowait()
        except Exception:  # queue.Empty, or a queue closed under us
            return
        board(kind, key, info)


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
) -> SweepOutcome:
    """Run every cell that is not 'done' in the store at ``db_path``.

    ``workers=1`` runs the cells one after the other in this process. ``workers>1`` runs them in
    that many spawned processes, each with ``threads_per_worker(workers)`` torch threads and its
    own store connection; ``executor`` must then be importable there (a ``"module:function"``
    string or a module-level function).
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    db_path = str(db_path)
    out_dir = str(out_dir)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    outcome = SweepOutcome(total=len(cells))
    with ResultStore(db_path) as store:
        statuses = store.statuses(c.key for c in cells)
        todo = [c for c in cells if statuses.get(c.key) != "done"]
        outcome.skipped = len(cells) - len(todo)
        board = ProgressBoard(len(cells), skipped=outcome.skipped, enabled=progress,
                              desc=desc or "cells")
        try:
            if workers == 1 or len(todo) <= 1:
                for cell in todo:
                    status, error = run_cell(cell, store, out_dir, executor=executor,
                                             report=board, keep_checkpoints=keep_checkpoints)
                    _count(outcome, cell, status, error)
            else:
                _run_pool(todo, outcome, board, db_path, out_dir, workers, executor,
                          keep_checkpoints)
        finally:
            board.close()
    return outcome


def _count(outcome: SweepOutcome, cell: Cell, status: str, error: str | None) -> None:
    if status == "done":
        outcome.done += 1
    elif status == "skipped":
        outcome.skipped += 1
    else:
        outcome.failed[cell.key] = error or "failed"


def _run_pool(
    todo: Sequence[Cell], outcome: SweepOutcome, board: ProgressBoard, db_path: str,
    out_dir: str, workers: int, executor: str | Executor | None, keep: bool,
) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    threads = threads_per_worker(workers)
    pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx,
                               initializer=_init_worker, initargs=(queue, threads))
    try:
        futures = {pool.submit(_worker_run, c, db_path, out_dir, executor, keep): c
                   for c in todo}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            _drain(queue, board)
            for fut in finished:
                cell = futures[fut]
                try:
                    status, error = fut.result()
                except BrokenProcessPool:
                    outcome.lost.append(cell.key)
                    board.end_bar(cell.key)
                    continue
                _count(outcome, cell, status, error)
        time.sleep(0.05)
        _drain(queue, board)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    else:
        pool.shutdown(wait=True)
    finally:
        queue.close()
