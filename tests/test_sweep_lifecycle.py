"""Process life cycle with real processes: workers die with a kill -9'd parent, SIGINT/SIGTERM
stop scheduling at once and let running cells checkpoint, an unanswering Ray address fails fast.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from actlab.store import ResultStore
from actlab.sweep.lifecycle import GracefulStop, SweepInterrupted
from sweep_procs import alive, children, env, read_log, start, trained, wait_for, write_spec

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs Linux /proc")

EPOCHS = 4


@pytest.mark.slow
def test_workers_die_with_a_killed_parent(tmp_path):
    spec, db, out, log = (write_spec(tmp_path, epochs=EPOCHS), tmp_path / "r.sqlite",
                          tmp_path / "out", tmp_path / "epochs.log")
    main = start(spec, db, out, env(log, 1.0), "--workers", "2")
    wait_for(lambda: len({pid for pid, _, _ in read_log(log)}) == 2, timeout=90,
             what="both workers training")
    workers = {pid for pid, _, _ in read_log(log)}
    assert workers <= set(children(main.pid))
    os.kill(main.pid, signal.SIGKILL)
    main.wait(timeout=30)
    t0 = time.monotonic()
    try:
        wait_for(lambda: not any(alive(p) for p in workers), timeout=10,
                 what="workers to exit")
        assert time.monotonic() - t0 < 5
        # nothing ran after the kill: no cell beyond the two that were running got an epoch
        time.sleep(1.5)
        assert len({key for _, key, _ in read_log(log)}) == 2
    finally:  # never leak processes from a failing run
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        main.stdout.close()
        main.stderr.close()


def _interrupt(tmp_path, sig, workers):
    spec, db, out, log = (write_spec(tmp_path, epochs=EPOCHS), tmp_path / "r.sqlite",
                          tmp_path / "out", tmp_path / "epochs.log")
    environ = env(log, 0.8)
    proc = start(spec, db, out, environ, "--workers", str(workers), new_session=True)
    wait_for(lambda: len({k for _, k, _ in read_log(log)}) == workers, timeout=90,
             what="the first cells training")
    # like Ctrl-C in a terminal: the signal reaches the whole process group
    os.killpg(proc.pid, sig)
    _, stderr = proc.communicate(timeout=60)
    started = {k for _, k, _ in read_log(log)}
    return proc, stderr, started, (spec, db, out, log, environ)


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "workers", "code"),
                         [(signal.SIGINT, 2, 130), (signal.SIGTERM, 1, 143)])
def test_signal_stops_scheduling_and_running_cells_checkpoint(tmp_path, sig, workers, code):
    proc, stderr, started, (spec, db, out, log, environ) = _interrupt(tmp_path, sig, workers)
    assert proc.returncode == code, stderr
    assert "re-run the same command to resume" in stderr
    assert "Traceback" not in stderr
    assert len(started) == workers  # queued cells never started
    with ResultStore(db, readonly=True) as store:
        rows = {r.cell_key: r for r in store.list()}
        assert store.leases() == {}  # released, so a re-run resumes at once
    assert set(rows) == started
    for key, row in rows.items():
        assert row.status == "running"
        epochs = [h["epoch"] for h in row.history]
        assert epochs == list(range(1, len(epochs) + 1)) and 1 <= len(epochs) < EPOCHS
        assert (out / "checkpoints" / f"{key}.pt").is_file()
    again = start(spec, db, out, {**environ, "ACTLAB_SIMULATE_EPOCH_SECONDS": "0.05"})
    _, err = again.communicate(timeout=180)
    assert again.returncode == 0, err
    assert all(n == 1 for n in trained(log).values())  # resumed, nothing trained twice
    assert len(trained(log)) == 6 * EPOCHS


def test_graceful_stop_in_process():
    """The first signal sets the stop flag, the second stops at once; handlers are restored."""
    before = signal.getsignal(signal.SIGINT)
    with GracefulStop(message=False) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert stop.is_set() and stop.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
    assert signal.getsignal(signal.SIGINT) is before
    with pytest.raises(SweepInterrupted) as info:
        stop.raise_if_stopped()
    assert info.value.exit_code == 130


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray not installed")
def test_ray_address_that_does_not_answer_fails_fast_with_one_line(tmp_path):
    spec = write_spec(tmp_path, acts=("relu",), seeds=(0,), epochs=1)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)  # accepts TCP, never speaks Ray
    try:
        for address, limit in (("127.0.0.1:1", "15"), (f"127.0.0.1:{srv.getsockname()[1]}", "3")):
            t0 = time.monotonic()
            proc = subprocess.run(
                [sys.executable, "-m", "actlab.cli", "run", str(spec), "--engine", "ray",
                 "--address", address, "--dry-run", "--no-progress", "--out",
                 str(tmp_path / "o")],
                env=env(tmp_path / "log", 0, ACTLAB_RAY_TIMEOUT=limit), capture_output=True,
                text=True, timeout=120)
            elapsed = time.monotonic() - t0
            assert proc.returncode == 2, proc.stderr
            errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("actlab run: error")]
            assert len(errors) == 1 and address in errors[0], proc.stderr
            assert "Traceback" not in proc.stderr
            assert elapsed < 60  # imports of torch and ray included; the probe itself is fast
    finally:
        srv.close()
