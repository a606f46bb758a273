"""Detection under data parallelism: the multibox loss splits exactly over shards of a batch
(per-image matching and mining), and DetectionTask.evaluate with 2 gloo processes (uneven
shards, detections gathered) gives the single-process metrics."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from actlab.data import load_dataset
from actlab.models import create_model
from actlab.tasks import build_task
from actlab.train import cleanup_distributed, init_distributed


def _setup(n: int = 21):
    ds = load_dataset("synthetic_detection", num_samples=40, size=64, seed=0, normalize=False)
    torch.manual_seed(0)
    model = create_model("ssd_lite", num_classes=4, width=4, norm="none").eval()
    x, y = ds.train.tensors
    return model, x[:n], y[:n]


def test_loss_sums_split_exactly_over_shards():
    model, x, y = _setup()
    task = build_task("detection", model, 4)
    with torch.no_grad():
        out = model(x)
    whole = task.loss_parts(out, y)
    parts = [task.loss_parts(out[a:b], y[a:b]) for a, b in ((0, 8), (8, 9), (9, 21))]
    torch.testing.assert_close(sum(p.total for p in parts), whole.total)
    torch.testing.assert_close(sum(p.normaliser for p in parts), whole.normaliser)
    torch.testing.assert_close(sum(p.stats for p in parts), whole.stats, rtol=1e-6, atol=1e-6)
    assert task.loss_normaliser(y).item() == max(whole.normaliser.item(), 1.0)


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    try:
        init_distributed("cpu")
        model, x, y = _setup()
        task = build_task("detection", model, 4)
        got = task.evaluate(model, x, y, batch_size=4, rank=rank, world_size=world)
        torch.save(got, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        cleanup_distributed()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_evaluate_in_two_processes_equals_one(tmp_path):
    model, x, y = _setup()
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = build_task("detection", model, 4).evaluate(model, x, y, batch_size=4)
    finally:
        torch.set_num_threads(old)
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method=method)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert set(got) == set(ref)
        for k, v in ref.items():
            assert got[k] == pytest.approx(v, rel=1e-6, abs=1e-9), (rank, k)
    assert ref["map50"] > 0 or ref["loss"] > 0
