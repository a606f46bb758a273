"""Helpers for tests that run real ``actlab run`` processes on a simulated study (not a test
module: no ``test_`` prefix)."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def write_spec(tmp_path: Path, *, acts=("relu", "elu", "gelu"), seeds=(0, 1), epochs=4) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(textwrap.dedent(f"""
        name = "p"
        dataset = "digits"
        model = "tiny_cnn"
        acts = {list(acts)!r}
        seeds = {list(seeds)!r}
        epochs = {epochs}
    """).replace("'", '"'))
    return path


def env(log: Path, epoch_s: float, **extra: str) -> dict[str, str]:
    out = {**os.environ, "PYTHONPATH": str(SRC), "ACTLAB_SIMULATE_LOG": str(log),
           "ACTLAB_SIMULATE_EPOCH_SECONDS": str(epoch_s), "OMP_NUM_THREADS": "1"}
    out.pop("ACTLAB_SWEEP_FAULT", None)
    out.update(extra)
    return out


def start(spec: Path, db: Path, out: Path, environ: dict[str, str], *extra: str,
          new_session: bool = False) -> subprocess.Popen:
    args = [sys.executable, "-m", "actlab.cli", "run", str(spec), "--db", str(db), "--out",
            str(out), "--dry-run", "--no-progress", *extra]
    return subprocess.Popen(args, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=new_session)


def read_log(log: Path) -> list[tuple[int, str, int]]:
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        pid, key, epoch = line.split()
        out.append((int(pid), key, int(epoch)))
    return out


def wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def trained(log: Path) -> collections.Counter:
    """How many times each (cell key, epoch) was trained, over every process."""
    return collections.Counter((key, epoch) for _, key, epoch in read_log(log))


def children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (Linux /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    """Running, i.e. existing and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")
