"""Data-parallel training with 2 gloo processes equals 1 process on the same global batch.

The model has no BatchNorm: under DDP each replica normalises with its own shard's batch
statistics, so a BN model legitimately differs from the single-process run.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import TensorDataset

from actlab.data import DatasetSplits, load_dataset
from actlab.models import create_model
from actlab.train import TrainConfig, cleanup_distributed, train_model

pytestmark = pytest.mark.slow  # two forked gloo processes: ~7 s on a loaded 2-core machine

# global batch 31 -> uneven shards of 16 and 15 samples; 6 steps per epoch
CFG = {"epochs": 2, "batch_size": 31, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
       "weight_decay": 1e-4, "schedule": "cosine", "augment": "crop1+flip", "device": "cpu",
       "eval_batch_size": 40, "seed": 7}


def _model() -> nn.Module:
    torch.manual_seed(0)
    return create_model("tiny_cnn", num_classes=10, in_channels=1, act="relu", norm="none",
                        width=8)


def _splits(tensors) -> DatasetSplits:
    train, val, test = (TensorDataset(*t) for t in tensors)
    return DatasetSplits(name="digits_small", task="classification", train=train, val=val,
                         test=test, num_classes=10, in_channels=1, input_shape=(1, 8, 8))


def _worker(rank: int, world: int, port: int, tensors, out_dir: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    calls = []
    try:
        model = _model()
        res = train_model(model, _splits(tensors), TrainConfig(**CFG), distributed=True,
                          checkpoint_path=os.path.join(out_dir, f"ck{rank}.pt"),
                          on_epoch=lambda e, r: calls.append(e), progress=False)
        torch.save({"model": model.state_dict(), "history": res.history, "calls": calls},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        cleanup_distributed()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_equal_one_process(tmp_path):
    ds = load_dataset("digits", seed=0)
    tensors = [tuple(t[:n] for t in split.tensors)
               for split, n in ((ds.train, 186), (ds.val, 40), (ds.test, 40))]
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref_model = _model()
        ref = train_model(ref_model, _splits(tensors), TrainConfig(**CFG), progress=False)
    finally:
        torch.set_num_threads(old)
    # fork (as DataLoader workers do, one thread each): the children skip re-importing torch
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(_worker, args=(2, _free_port(), tensors, str(tmp_path)), nprocs=2,
                       join=True, start_method=method)

    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    # only rank 0 writes checkpoints and calls on_epoch
    assert (tmp_path / "ck0.pt").exists() and not (tmp_path / "ck1.pt").exists()
    assert r0["calls"] == [1, 2] and r1["calls"] == []
    ref_state = ref_model.state_dict()
    for name, want in ref_state.items():
        torch.testing.assert_close(r0["model"][name], want, atol=1e-5, rtol=1e-5, msg=name)
        torch.testing.assert_close(r1["model"][name], r0["model"][name], atol=0, rtol=0)
    # the weights moved (the comparison is not trivially about the initial model)
    init = _model().state_dict()
    assert any(not torch.allclose(init[k], ref_state[k]) for k in init)
    # metrics are reduced over both processes: the same numbers as the single process
    for got, want in zip(r0["history"], ref.history, strict=True):
        for k in ("lr", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss",
                  "test_acc"):
            assert got[k] == pytest.approx(want[k], rel=1e-5, abs=1e-6), k
    assert r1["history"][-1]["test_acc"] == r0["history"][-1]["test_acc"]
