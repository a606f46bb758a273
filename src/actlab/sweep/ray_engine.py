"""Ray engine: one cell per Ray task, same store and resume semantics as the local runner.

``actlab run SPEC --engine ray [--address ADDR]``. Each task asks for the spec's ``[resources]``
(``cpus``, ``gpus``) and runs :func:`actlab.sweep.runner.run_cell` with the cell's torch thread
count set to its CPUs. Only the driver process writes the SQLite store: tasks send their life
cycle calls (start, each epoch, finish/fail) through a ``ray.util.queue.Queue`` to the driver,
which applies them in order, so the store file never needs to be shared between machines. The
checkpoint folder (``--out``) must be reachable from every node (a shared file system) for a
cell to resume on another node; otherwise an interrupted cell restarts from epoch 1.

Ray is an optional dependency (``pip install 'actlab[ray]'``), imported only here.
"""

from __future__ import annotations

import os
import queue as queue_mod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from actlab.sweep.execute import Executor
from actlab.sweep.grid import Cell
from actlab.sweep.progress import ProgressBoard
from actlab.sweep.runner import StoreSink, SweepOutcome, run_cell
from actlab.sweep.store import ResultStore
from actlab.sweep.versions import collect_versions

__all__ = ["EngineError", "run_cells_ray", "import_ray", "worker_runtime_env"]


class EngineError(RuntimeError):
    """The Ray engine cannot run (ray missing, cluster unreachable)."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise EngineError(
            "--engine ray needs the 'ray' package, which is not installed "
            "(pip install 'actlab[ray]'), or use the local engine with --workers N"
        ) from None
    return ray


def worker_runtime_env() -> dict[str, Any]:
    """A Ray ``runtime_env`` under which workers import the same ``actlab`` as this process.

    Ray workers start fresh interpreters; a source checkout that is not the installed copy (a
    worktree, ``PYTHONPATH=src``) is found only if its folder is on the workers' PYTHONPATH.
    :func:`run_cells_ray` passes this to ``ray.init`` when it starts Ray; pass it yourself
    (``ray.init(runtime_env=worker_runtime_env())``) when you start Ray before the sweep.
    """
    import actlab

    src = str(Path(actlab.__file__).resolve().parent.parent)
    paths = [src, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}


class _QueueSink:
    """In a task: forward the life-cycle calls of a cell to the driver."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def _send(self, *event: Any) -> None:
        self.queue.put(event)  # blocking: the driver sees events in order, before the result

    def start(self, cell: Cell, *, keep_history: bool) -> None:
        self._send("sink", "start", cell.key, {"keep_history": keep_history,
                                               "versions": collect_versions()})
        return None  # the driver only submits cells that are not done

    def epochs_done(self, key: str) -> int:
        return 0

    def epoch(self, key: str, record: dict[str, Any]) -> None:
        self._send("sink", "epoch", key, {"record": record})

    def finish(self, key: str, **result: Any) -> None:
        self._send("sink", "finish", key, result)

    def fail(self, key: str, error: str) -> None:
        self._send("sink", "fail", key, {"error": error})


def _task(cell: Cell, out_dir: str, executor: str | Executor | None, keep: bool, queue: Any,
          threads: int) -> tuple[str, str | None]:
    import torch

    torch.set_num_threads(max(1, threads))

    def report(kind: str, key: str, info: dict[str, Any]) -> None:
        queue.put(("progress", kind, key, info))

    return run_cell(cell, _QueueSink(queue), out_dir, executor=executor, report=report,
                    keep_checkpoints=keep)


def _apply(store: ResultStore, cells: dict[str, Cell], event: tuple[Any, ...],
           board: ProgressBoard) -> None:
    if event[0] == "progress":
        _, kind, key, info = event
        board(kind, key, info)
        return
    _, method, key, kw = event
    sink = StoreSink(store)
    if method == "start":
        cell = cells[key]
        store.start(cell.key, study=cell.study, dataset=cell.dataset, model=cell.model,
                    act=cell.act, norm=cell.norm, seed=cell.seed, config=cell.config,
                    versions=kw["versions"], keep_history=kw["keep_history"])
    elif method == "epoch":
        sink.epoch(key, kw["record"])
    elif method == "finish":
        sink.finish(key, **kw)
    elif method == "fail":
        sink.fail(key, kw["error"])


def _drain(q: Any, store: ResultStore, cells: dict[str, Cell], board: ProgressBoard) -> None:
    while True:
        try:
            event = q.get_nowait()
        except queue_mod.Empty:  # ray.util.queue.Empty subclasses queue.Empty
            return
        _apply(store, cells, event, board)


def run_cells_ray(
    cells: Sequence[Cell],
    *,
    db_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    address: str | None = None,
    executor: str | Executor | None = None,
    progress: bool = True,
    keep_checkpoints: bool = False,
    desc: str | None = None,
) -> SweepOutcome:
    """Run every cell that is not 'done' as one Ray task each (see the module docstring)."""
    ray = import_ray()
    from ray.util.queue import Queue

    if not ray.is_initialized():
        try:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False,
                     runtime_env=worker_runtime_env())
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise EngineError(f"cannot start or reach ray (address={address!r}): {exc}") from None
    out = str(Path(out_dir).resolve())
    Path(out).mkdir(parents=True, exist_ok=True)
    remote = ray.remote(_task)
    outcome = SweepOutcome(total=len(cells))
    by_key = {c.key: c for c in cells}
    with ResultStore(db_path) as store:
        statuses = store.statuses(by_key)
        todo = [c for c in cells if statuses.get(c.key) != "done"]
        outcome.skipped = len(cells) - len(todo)
        board = ProgressBoard(len(cells), skipped=outcome.skipped, enabled=progress,
                              desc=desc or "cells")
        q = Queue()
        try:
            refs = {}
            for cell in todo:
                cpus = float(cell.resources.get("cpus", 1.0))
                gpus = float(cell.resources.get("gpus", 0.0))
                ref = remote.options(num_cpus=cpus, num_gpus=gpus).remote(
                    cell, out, executor, keep_checkpoints, q, int(cpus))
                refs[ref] = cell
            pending = list(refs)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=0.2)
                _drain(q, store, by_key, board)
                for ref in ready:
                    cell = refs[ref]
                    try:
                        status, error = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        outcome.lost.append(cell.key)
                        board.end_bar(cell.key)
                        board.write(f"lost {cell.label}: {type(exc).__name__}")
                        continue
                    if status == "done":
                        outcome.done += 1
                    elif status == "failed":
                        outcome.failed[cell.key] = error or "failed"
            _drain(q, store, by_key, board)
        except BaseException:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise
        finally:
            board.close()
            q.shutdown()
    return outcome
