"""Ray engine: one cell per Ray task, same store and resume semantics as the local runner.

``actlab run SPEC --engine ray [--address ADDR]``. Each task asks for the spec's ``[resources]``
(``cpus``, ``gpus``) and runs :func:`actlab.sweep.runner.run_cell` with the cell's torch thread
count set to its CPUs. Only the driver process writes the SQLite store: tasks send their life
cycle calls (start, each epoch, finish/fail) through a ``ray.util.queue.Queue`` to the driver,
which applies them in order, so the store file never needs to be shared between machines. The
checkpoint folder (``--out``) must be reachable from every node (a shared file system) for a
cell to resume on another node; otherwise an interrupted cell restarts from epoch 1.

The driver claims each cell's lease (:mod:`actlab.store.leases`) just before submitting it and
renews the leases of its cells while they run, so a Ray sweep and local ``actlab run``s can share
one store without training a cell twice; at most as many tasks as the cluster has CPUs are in
flight. A cluster address that does not answer fails within ``$ACTLAB_RAY_TIMEOUT`` seconds
(default 15) with one line. SIGINT/SIGTERM cancel the running tasks (their cells keep their last
checkpoint and resume on the next run).

Ray is an optional dependency (``pip install 'actlab[ray]'``), imported only here.
"""

from __future__ import annotations

import contextlib
import os
import queue as queue_mod
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from actlab.store import LeaseLost, ResultStore, StoreError, make_owner
from actlab.store.leases import default_lease_seconds
from actlab.sweep.execute import Executor
from actlab.sweep.grid import Cell
from actlab.sweep.lifecycle import GracefulStop
from actlab.sweep.progress import ProgressBoard
from actlab.sweep.runner import StoreSink, SweepOutcome, run_cell
from actlab.sweep.versions import collect_versions

__all__ = ["EngineError", "run_cells_ray", "import_ray", "worker_runtime_env", "connect_ray",
           "RAY_TIMEOUT_ENV"]

#: seconds to reach a Ray cluster given by ``--address`` before giving up
RAY_TIMEOUT_ENV = "ACTLAB_RAY_TIMEOUT"
DEFAULT_RAY_TIMEOUT = 15.0


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


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``"host:port"`` or ``"ray://host:port"``; None for "auto" etc."""
    text = address.split("://", 1)[-1].strip().rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def connect_ray(ray: Any, address: str | None, timeout: float | None = None) -> None:
    """``ray.init`` for the sweep. With an ``address``, fail within ``timeout`` seconds
    (``$ACTLAB_RAY_TIMEOUT`` or 15) with one :class:`EngineError` line when it does not answer:
    a TCP probe catches a closed port at once, and ``ray.init`` itself runs under the same
    deadline."""
    if timeout is None:
        text = os.environ.get(RAY_TIMEOUT_ENV, "").strip()
        timeout = float(text) if text else DEFAULT_RAY_TIMEOUT
    kwargs = dict(address=address, ignore_reinit_error=True, log_to_driver=False,
                  runtime_env=worker_runtime_env())
    if not address:
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise EngineError(f"cannot start ray: {exc}") from None
        return
    kwargs["logging_level"] = "ERROR"
    deadline = time.monotonic() + timeout
    target = _host_port(address)
    if target is not None:
        try:
            socket.create_connection(target, timeout=timeout).close()
        except OSError as exc:
            raise EngineError(f"ray cluster at {address!r} does not answer ({exc}); start one "
                              "with 'ray start --head' or drop --address") from None
    result: dict[str, BaseException | None] = {}

    def init() -> None:
        try:
            ray.init(**kwargs)
            result["error"] = None
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            result["error"] = exc

    thread = threading.Thread(target=init, name="ray-init", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    if thread.is_alive():
        raise EngineError(f"ray cluster at {address!r} did not answer within {timeout:g} s "
                          f"(${RAY_TIMEOUT_ENV} sets the limit)")
    error = result.get("error")
    if error is not None:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise EngineError(f"cannot reach ray at {address!r}: {type(error).__name__}: {first}")


class _QueueSink:
    """In a task: forward the life-cycle calls of a cell to the driver."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def _send(self, *event: Any) -> None:
        self.queue.put(event)  # blocking: the driver sees events in order, before the result

    def claim(self, cell: Cell) -> str:
        return "claimed"  # the driver claimed the cell before submitting it

    def release(self, key: str) -> None:
        return None  # the driver releases when it applies finish/fail

    def start(self, cell: Cell, *, keep_history: bool) -> None:
        self._send("sink", "start", cell.key, {"keep_history": keep_history,
                                               "versions": collect_versions(cell.layer_backend)})
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


def _apply(sink: StoreSink, cells: dict[str, Cell], event: tuple[Any, ...],
           board: ProgressBoard) -> None:
    if event[0] == "progress":
        _, kind, key, info = event
        board(kind, key, info)
        return
    _, method, key, kw = event
    store = sink.store
    try:
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
    except LeaseLost as exc:
        board.write(f"actlab: warning: {exc}; its results are left to the new owner")


def _drain(q: Any, sink: StoreSink, cells: dict[str, Cell], board: ProgressBoard) -> None:
    while True:
        try:
            event = q.get_nowait()
        except queue_mod.Empty:  # ray.util.queue.Empty subclasses queue.Empty
            return
        _apply(sink, cells, event, board)


def _capacity(ray: Any) -> int:
    """Tasks kept in flight: the cluster's CPUs (at least 1)."""
    resources = getattr(ray, "cluster_resources", None)
    try:
        return max(1, int(resources().get("CPU", 1))) if callable(resources) else 1 << 30
    except Exception:  # pragma: no cover - a cluster that cannot say
        return 1


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
    lease_s: float | None = None,
) -> SweepOutcome:
    """Run every cell that is not 'done' as one Ray task each (see the module docstring)."""
    ray = import_ray()
    from ray.util.queue import Queue

    if not ray.is_initialized():
        connect_ray(ray, address)
    out = str(Path(out_dir).resolve())
    Path(out).mkdir(parents=True, exist_ok=True)
    remote = ray.remote(_task)
    outcome = SweepOutcome(total=len(cells))
    by_key = {c.key: c for c in cells}
    lease = float(lease_s) if lease_s else default_lease_seconds()
    with ResultStore(db_path) as store, GracefulStop() as stop:
        sink = StoreSink(store, owner=make_owner(), lease_s=lease)
        statuses = store.statuses(by_key)
        todo = [c for c in cells if statuses.get(c.key) != "done"]
        outcome.skipped = len(cells) - len(todo)
        board = ProgressBoard(len(cells), skipped=outcome.skipped, enabled=progress,
                              desc=desc or "cells")
        q = Queue()
        refs: dict[Any, Cell] = {}
        waiting = list(todo)  # not yet submitted (some leased by other processes)
        capacity = _capacity(ray)
        next_renew = time.monotonic() + lease / 3
        cancelled = False
        try:
            while (waiting and not stop.is_set()) or refs:
                if stop.is_set() and not cancelled:  # interrupt the tasks (KeyboardInterrupt)
                    for ref in refs:
                        ray.cancel(ref, force=False)
                    cancelled = True
                busy = []
                while waiting and len(refs) < capacity and not stop.is_set():
                    cell = waiting.pop(0)
                    claim = store.claim(cell.key, sink.owner, lease_s=lease)
                    if claim == "done":
                        outcome.skipped += 1
                        board("end", cell.key, {"status": "done"})
                        continue
                    if claim == "busy":
                        busy.append(cell)
                        continue
                    cpus = float(cell.resources.get("cpus", 1.0))
                    gpus = float(cell.resources.get("gpus", 0.0))
                    ref = remote.options(num_cpus=cpus, num_gpus=gpus).remote(
                        cell, out, executor, keep_checkpoints, q, int(cpus))
                    refs[ref] = cell
                waiting.extend(busy)
                if not refs:
                    stop.wait(min(5.0, lease / 4))
                    continue
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.2)
                _drain(q, sink, by_key, board)
                if time.monotonic() >= next_renew:
                    for held in refs.values():
                        with contextlib.suppress(StoreError):
                            store.renew(held.key, sink.owner, lease_s=lease)
                    next_renew = time.monotonic() + lease / 3
                for ref in ready:
                    cell = refs.pop(ref)
                    try:
                        status, error = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        sink.release(cell.key)
                        if cancelled:
                            outcome.interrupted.append(cell.key)
                            board.end_bar(cell.key)
                            continue
                        outcome.lost.append(cell.key)
                        board.end_bar(cell.key)
                        board.write(f"lost {cell.label}: {type(exc).__name__}")
                        continue
                    if status == "done":
                        outcome.done += 1
                    elif status == "failed":
                        outcome.failed[cell.key] = error or "failed"
            _drain(q, sink, by_key, board)
        except BaseException:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise
        finally:
            for cell in refs.values():
                sink.release(cell.key)
            board.close()
            q.shutdown()
    stop.raise_if_stopped(outcome)
    return outcome
