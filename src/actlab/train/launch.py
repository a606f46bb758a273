"""``actlab run --nproc N``: each cell trained data-parallel by N processes under torch's own
elastic launcher (``python -m torch.distributed.run --standalone --nproc-per-node N``).

The sweep runner is unchanged: it calls :func:`execute_cell_ddp` as the cell's executor, in
whichever process (or worker, or Ray task) runs the cell. That function writes the cell's job
to a temporary folder, starts the launcher, which starts N ranks running this module's
:func:`main`; every rank calls :func:`actlab.sweep.execute.execute_cell` with
``distributed=True`` (gloo on CPU, nccl on CUDA with one GPU per rank, see
:mod:`actlab.train.distributed`). Rank 0 alone writes the checkpoint, appends each epoch's
record to ``epochs.jsonl`` (the executor relays them to the store as they arrive, so progress
and resume work as for a single process) and writes ``result.json`` at the end.

Numbers: every rank forms the same global batch of ``batch_size`` samples and trains on its
contiguous share, the loss is normalised by the global batch and DDP averages gradients, so
N processes follow the single-process run up to floating-point summation order (models with
BatchNorm differ legitimately: each rank normalises with its own shard's statistics).
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["prepare_run", "execute_cell_ddp", "launcher_command", "main"]

_POLL_S = 0.2


def prepare_run(
    cells: Sequence[Any],
    executor: Any,
    *,
    log: Sequence[str] = (),
    nproc: int = 1,
    out: str | os.PathLike[str] = ".",
) -> tuple[list[Any], Any]:
    """``actlab run``'s ``--log`` and ``--nproc``: cells carrying the logger settings and the
    executor to use. Exits with status 2 and one line for an unusable combination."""
    from actlab.train.loggers import attach_loggers

    try:
        cells = attach_loggers(cells, log, out)
    except (ImportError, ValueError) as err:
        raise SystemExit(f"actlab run: error: {err}") from None
    if nproc > 1:
        if executor is not None:
            raise SystemExit("actlab run: error: --nproc trains real cells; it does not "
                             "combine with --dry-run")
        executor = functools.partial(execute_cell_ddp, nproc=nproc)
    return list(cells), executor


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the launcher gets SIGTERM when the process that started it dies (even by
    kill -9), and torch's launcher then stops its ranks: no orphans keep training."""
    import contextlib
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def launcher_command(nproc: int, job: str | os.PathLike[str]) -> list[str]:
    """The command that starts ``nproc`` ranks of :func:`main` on ``job``."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
            f"--nproc-per-node={nproc}", "-m", "actlab.train.launch", str(job)]


def _relay(path: Path, done: int, on_epoch: Callable[[int, dict[str, Any]], None] | None) -> int:
    """Pass the complete lines of ``path`` after the first ``done`` to ``on_epoch``."""
    if not path.exists():
        return done
    lines = path.read_text(encoding="utf-8").split("\n")[:-1]  # the last may be half-written
    for line in lines[done:]:
        record = json.loads(line)
        if on_epoch is not None:
            on_epoch(int(record["epoch"]), record)
    return len(lines)


_EXC_LINE = re.compile(r"^(?:\[rank(\d+)\]:\s*)?([A-Za-z_][\w.]*(?:Error|Exception)): (.+)$")


def _last_error(log: Path) -> str:
    """The exception a rank died with (rank 0's when several), else the log's last line."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no output"
    found: list[tuple[int, str]] = []
    for ln in lines:
        m = _EXC_LINE.match(ln)
        if m and m.group(1) is not None:
            found.append((int(m.group(1)), f"rank {m.group(1)}: {m.group(2)}: {m.group(3)}"))
    if found:
        return min(found)[1][:300]
    return lines[-1][:300] if lines else "no output"


def execute_cell_ddp(
    config: dict[str, Any],
    *,
    runtime: dict[str, Any],
    checkpoint_path: str | None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None,
    nproc: int = 2,
) -> Any:
    """An executor (see ``actlab.sweep.execute``) training the cell with ``nproc`` processes."""
    from actlab.train.loop import TrainResult

    # beside the checkpoint (the run's out folder), kept with its log when the cell fails
    where = None if checkpoint_path is None else Path(checkpoint_path).parent
    work = Path(tempfile.mkdtemp(prefix="ddp-", dir=where))
    job = work / "job.json"
    job.write_text(json.dumps({"config": config, "runtime": runtime,
                               "checkpoint_path": checkpoint_path}), encoding="utf-8")
    log = work / "launcher.log"
    ok = False
    with log.open("wb") as out:
        proc = subprocess.Popen(
            launcher_command(nproc, job), stdout=out, stderr=subprocess.STDOUT, cwd=os.getcwd(),
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        try:
            relayed = 0
            while proc.poll() is None:
                relayed = _relay(work / "epochs.jsonl", relayed, on_epoch)
                time.sleep(_POLL_S)
            relayed = _relay(work / "epochs.jsonl", relayed, on_epoch)
            if proc.returncode != 0 or not (work / "result.json").exists():
                raise RuntimeError(
                    f"DDP training with {nproc} processes failed (exit {proc.returncode}): "
                    f"{_last_error(log)} (full log: {log})"
                )
            result = json.loads((work / "result.json").read_text(encoding="utf-8"))
            ok = True
        finally:
            if proc.poll() is None:  # interrupted or on_epoch raised: stop the ranks
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    if ok:
        shutil.rmtree(work, ignore_errors=True)
    return TrainResult(**result)


def _nan_safe(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def main(argv: Sequence[str] | None = None) -> int:
    """One rank: run the job file's cell with ``distributed=True``."""
    from actlab.sweep.execute import execute_cell
    from actlab.train.distributed import cleanup_distributed

    args = list(sys.argv[1:] if argv is None else argv)
    job_path = Path(args[0])
    job = json.loads(job_path.read_text(encoding="utf-8"))
    work = job_path.parent
    rank = int(os.environ.get("RANK", "0"))

    def on_epoch(epoch: int, record: dict[str, Any]) -> None:
        with (work / "epochs.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps({**record, "epoch": int(epoch)}) + "\n")

    try:
        res = execute_cell(job["config"], runtime=job["runtime"],
                           checkpoint_path=job["checkpoint_path"], on_epoch=on_epoch,
                           distributed=True)
        if rank == 0:
            fields = ("history", "metrics", "wall_time", "peak_mem_mb", "epochs_done",
                      "diverged", "config")
            payload = {k: getattr(res, k) for k in fields}
            payload["peak_mem_mb"] = _nan_safe(payload["peak_mem_mb"])
            tmp = work / "result.json.tmp"
            tmp.write_text(json.dumps(payload), encoding="utf-8")
            os.replace(tmp, work / "result.json")
    finally:
        cleanup_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
