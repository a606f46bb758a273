"""Seq2seq under data parallelism: the token loss splits exactly over shards of a batch (each
shard trimmed of its own padding), and Seq2SeqTask.evaluate with 2 gloo processes (uneven
shards, hypotheses gathered in order) gives the single-process metrics."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from actlab.models import create_model
from actlab.tasks import build_task
from actlab.train import cleanup_distributed, init_distributed

PAD, BOS, EOS, VOCAB = 0, 1, 2, 12


def _data(n: int = 13, seed: int = 0):
    """Sources of 1-6 random tokens + <eos>; targets <bos> source <eos> (a copy task)."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.full((n, 8), PAD), torch.full((n, 9), PAD)
    for i in range(n):
        k = int(torch.randint(1, 7, (), generator=g))
        toks = torch.randint(3, VOCAB, (k,), generator=g)
        x[i, : k + 1] = torch.cat([toks, torch.tensor([EOS])])
        y[i, : k + 2] = torch.cat([torch.tensor([BOS]), toks, torch.tensor([EOS])])
    return x, y


class _CopyDropLast(nn.Module):
    """Predicts the source token at each position, except that the last source token of every
    sentence of 3+ tokens is skipped (so BLEU is strictly between 0 and 100)."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def encode(self, src, src_padding_mask=None):
        src = src.clone()
        for i, k in enumerate((src != PAD).sum(1).tolist()):
            if k >= 4:
                src[i, k - 2 : k] = torch.tensor([EOS, PAD])
        return nn.functional.one_hot(src, VOCAB).float()

    def decode(self, tgt, memory, tgt_padding_mask=None, memory_padding_mask=None):
        b, t = tgt.shape
        pad = torch.zeros(b, max(0, t - memory.shape[1]), VOCAB)
        pad[..., EOS] = 1.0
        return 30.0 * torch.cat([memory, pad], 1)[:, :t] + self.dummy

    def forward(self, src, tgt, src_padding_mask=None, tgt_padding_mask=None):
        return self.decode(tgt, self.encode(src))


def test_loss_sums_split_exactly_over_shards():
    torch.manual_seed(0)
    model = create_model("transformer_seq2seq", num_classes=VOCAB, d_model=16, nhead=2,
                         num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=32,
                         dropout=0.0).eval()
    task = build_task("seq2seq", model, VOCAB, label_smoothing=0.1)
    x, y = _data()
    with torch.no_grad():
        whole = task.loss_parts(task.forward(model, x, y), y)
        parts = [task.loss_parts(task.forward(model, x[a:b], y[a:b]), y[a:b])
                 for a, b in ((0, 5), (5, 6), (6, 13))]
    torch.testing.assert_close(sum(p.total for p in parts), whole.total, rtol=1e-5, atol=1e-5)
    assert sum(float(p.normaliser) for p in parts) == float(whole.normaliser)
    assert float(task.loss_normaliser(y)) == float(whole.normaliser) == float((y[:, 1:] > 0).sum())
    torch.testing.assert_close(sum(p.stats for p in parts), whole.stats)


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    try:
        init_distributed("cpu")
        x, y = _data()
        task = build_task("seq2seq", _CopyDropLast(), VOCAB, beam_size=2)
        got = task.evaluate(_CopyDropLast(), x, y, batch_size=3, rank=rank, world_size=world)
        torch.save(got, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        cleanup_distributed()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_evaluate_in_two_processes_equals_one(tmp_path):
    x, y = _data()
    ref = build_task("seq2seq", _CopyDropLast(), VOCAB, beam_size=2).evaluate(
        _CopyDropLast(), x, y, batch_size=3)
    assert 0 < ref["bleu"] < 100
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method=method)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert set(got) == set(ref)
        for k, v in ref.items():
            assert got[k] == pytest.approx(v, rel=1e-9), (rank, k)
