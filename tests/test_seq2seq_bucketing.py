"""Length-bucketed seq2seq batches: every pair once per epoch, seeded and independent of the
DataLoader's workers, token budgets respected (a pair over the budget is refused), less padding
than random batches, the task options checked in one line, and one epoch of SCAN through
``actlab run`` with bucketing."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from actlab.cli import main
from actlab.data.bucketing import BucketBatches, padding_fraction
from actlab.data.ragged import RaggedPairs, RaggedTokens
from actlab.sweep.spec import SpecError, parse_spec
from actlab.sweep.store import ResultStore
from actlab.tasks import build_task
from actlab.train.batches import EpochBatches, make_loader


def _lengths(n: int = 5000, seed: int = 0) -> torch.Tensor:
    """WMT-like lengths: log-normal around 27 tokens, targets correlated with sources."""
    rng = np.random.default_rng(seed)
    src = np.clip(rng.lognormal(math.log(27), 0.55, n), 2, 200).astype(np.int64)
    tgt = np.clip(src * rng.normal(1.1, 0.15, n), 2, 220).astype(np.int64)
    return torch.from_numpy(np.stack([src, tgt], 1))


def _perm(n: int, seed: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("kw", "drop_last"), [
    ({"batch_size": 64}, False), ({"batch_size": 64}, True), ({"batch_size": 7, "pool": 1}, True),
    ({"batch_size": 1, "batch_tokens": 3000}, True), ({"batch_size": 1, "batch_tokens": 450,
                                                       "pool": 3}, False),
])
def test_every_pair_once_per_epoch(kw, drop_last):
    lengths = _lengths(5003)
    plan = BucketBatches(lengths, drop_last=drop_last, **kw)
    batches = plan.plan(_perm(len(lengths), 0), torch.Generator().manual_seed(5))
    seen = Counter(i for b in batches for i in b)
    assert max(seen.values()) == 1 and all(0 <= i < len(lengths) for i in seen)
    bs = kw["batch_size"]
    if "batch_tokens" in kw or not drop_last:
        assert len(seen) == len(lengths)  # nothing dropped
    else:  # as the loop without bucketing: floor(N / B) full batches
        assert len(batches) == len(lengths) // bs and {len(b) for b in batches} == {bs}
        assert len(seen) == len(lengths) - len(lengths) % bs
    if "batch_tokens" not in kw:
        assert len(batches) == plan.steps_per_epoch(0)


def test_plans_are_seeded():
    plan = BucketBatches(_lengths(), batch_size=1, batch_tokens=2000)
    a = plan.plan(_perm(5000, 3), torch.Generator().manual_seed(3))
    assert a == plan.plan(_perm(5000, 3), torch.Generator().manual_seed(3))
    assert a != plan.plan(_perm(5000, 4), torch.Generator().manual_seed(4))
    # the batch order is shuffled: not sorted by pool any more
    assert a != plan.plan(_perm(5000, 3))
    assert sorted(map(sorted, a)) == sorted(map(sorted, plan.plan(_perm(5000, 3))))


@pytest.mark.parametrize("budget", [250, 1000, 4096])
def test_token_budget_is_respected_per_side(budget):
    lengths = _lengths(3000, seed=2)
    keep = lengths.max(1).values <= budget
    lengths = lengths[keep]
    batches = BucketBatches(lengths, batch_size=1, batch_tokens=budget, pool=10).plan(
        _perm(len(lengths), 1), torch.Generator().manual_seed(1))
    for b in batches:
        rows = lengths[torch.tensor(b)]
        assert len(b) * int(rows[:, 0].max()) <= budget
        assert len(b) * int(rows[:, 1].max()) <= budget
    # and the budget is used: the average batch fills most of it
    fill = [len(b) * int(lengths[torch.tensor(b)].max()) / budget for b in batches]
    assert sum(fill) / len(fill) > 0.8


def _naive_greedy(order: list[int], lengths: torch.Tensor, pool_pairs: int,
                  budget: int) -> list[list[int]]:
    """Pair by pair: close the batch when one more pair would pad a side over the budget, and
    at every pool boundary."""
    out: list[list[int]] = []
    for lo in range(0, len(order), pool_pairs):
        cur: list[int] = []
        for i in order[lo:lo + pool_pairs]:
            rows = lengths[torch.tensor(cur + [i])]
            if cur and (len(cur) + 1) * int(rows.max()) > budget:
                out.append(cur)
                cur = []
            cur.append(i)
        out.append(cur)
    return out


@pytest.mark.parametrize(("budget", "pool"), [(300, 2), (1000, 5), (5000, 100)])
def test_token_batches_are_the_greedy_cut_of_each_sorted_pool(budget, pool):
    lengths = _lengths(1500, seed=3)
    lengths = lengths[lengths.max(1).values <= budget]
    plan = BucketBatches(lengths, batch_size=1, batch_tokens=budget, pool=pool)
    batches = plan.plan(_perm(len(lengths), 2))  # no generator: in pool order
    order = [i for b in batches for i in b]
    assert sorted(order) == list(range(len(lengths)))
    for lo in range(0, len(order), plan.pool_pairs):  # each pool sorted by the longer side
        pool_longest = lengths[torch.tensor(order[lo:lo + plan.pool_pairs])].max(1).values
        assert bool((pool_longest[1:] >= pool_longest[:-1]).all())
    assert batches == _naive_greedy(order, lengths, plan.pool_pairs, budget)


def test_a_pair_over_the_budget_is_refused_in_one_line():
    lengths = torch.tensor([[5, 6], [40, 8], [3, 3]])
    with pytest.raises(ValueError) as err:
        BucketBatches(lengths, batch_size=2, batch_tokens=30)
    msg = str(err.value)
    assert "\n" not in msg and "batch_tokens=30" in msg and "pair 1" in msg and "40 tokens" in msg
    assert "max_tokens" in msg  # says how to fix it
    for bad, match in (({"pool": 0}, "bucket_pool"), ({"batch_tokens": 0}, "batch_tokens"),
                       ({"batch_size": True}, "batch_size")):
        with pytest.raises(ValueError, match=match):
            BucketBatches(lengths, **{"batch_size": 2, **bad})


def test_padding_drops_against_random_batches():
    lengths = _lengths(20_000, seed=1)
    perm = _perm(len(lengths), 0)
    random = [perm[i:i + 128].tolist() for i in range(0, len(perm), 128)]
    fixed = BucketBatches(lengths, batch_size=128).plan(perm, torch.Generator().manual_seed(0))
    tokens = BucketBatches(lengths, batch_size=1, batch_tokens=4096).plan(perm)
    p_random = padding_fraction(lengths, random)
    p_fixed, p_tokens = padding_fraction(lengths, fixed), padding_fraction(lengths, tokens)
    assert p_random > 0.35  # most of a random batch's spread is padding
    assert p_fixed < 0.25 * p_random and p_tokens < 0.25 * p_random, (p_random, p_fixed,
                                                                      p_tokens)
    # the naive formula on one hand-made plan
    small = torch.tensor([[2, 3], [4, 3], [4, 5]])
    assert padding_fraction(small, [[0, 1], [2]]) == pytest.approx(((2 + 0) + 0) / (8 + 6 + 9))


def _ragged(lengths: torch.Tensor) -> RaggedPairs:
    g = torch.Generator().manual_seed(0)
    sides = [[torch.randint(3, 500, (int(n),), generator=g).tolist() for n in lengths[:, k]]
             for k in range(2)]
    return RaggedPairs(RaggedTokens.from_rows(sides[0], 500),
                       RaggedTokens.from_rows(sides[1], 500, min_width=2))


def test_batches_do_not_depend_on_the_number_of_workers():
    lengths = _lengths(600, seed=4)
    ds = _ragged(lengths)
    plan = BucketBatches(ds.lengths(), batch_size=1, batch_tokens=900, pool=4)
    out = []
    for workers in (0, 2):
        sampler = EpochBatches()
        sampler.set_batches(plan.plan(_perm(len(ds), 9), torch.Generator().manual_seed(9)))
        out.append(list(make_loader(ds, sampler, workers, torch.device("cpu"))))
        del sampler
    assert len(out[0]) == len(out[1]) > 1
    for (x0, y0), (x1, y1) in zip(*out, strict=True):
        assert torch.equal(x0, x1) and torch.equal(y0, y1)
        assert x0.shape[0] * x0.shape[1] <= 900 and y0.shape[0] * y0.shape[1] <= 900


def test_the_task_plans_only_when_asked():
    model = torch.nn.Linear(1, 1)
    ds = _ragged(_lengths(300))
    assert build_task("seq2seq", model, 500).batch_plan(ds, 32, True) is None
    task = build_task("seq2seq", model, 500, bucket=True, bucket_pool=2)
    plan = task.batch_plan(ds, 32, True)
    assert isinstance(plan, BucketBatches) and plan.pool_pairs == 64
    assert task.run_info()["bucket"] is True and "bucket" not in build_task(
        "seq2seq", model, 500).run_info()
    assert build_task("seq2seq", model, 500, batch_tokens=800).batch_plan(ds, 32, True) \
        .batch_tokens == 800  # a token budget implies bucketing
    padded = torch.utils.data.TensorDataset(*ds.padded())  # the padded layout works too
    assert torch.equal(task.batch_plan(padded, 32, True).lengths, ds.lengths())
    for bad, match in (({"bucket": "yes"}, "bucket must be true or false"),
                       ({"batch_tokens": -5}, "batch_tokens must be an int >= 1"),
                       ({"bucket_pool": 0.5}, "bucket_pool must be an int >= 1")):
        with pytest.raises(ValueError, match=match):
            build_task("seq2seq", model, 500, **bad)


BASE = {"name": "t", "acts": ["relu"], "norms": ["ln"], "seeds": [0], "epochs": 1,
        "model": "transformer_seq2seq", "dataset": "scan"}


def test_spec_check_refuses_bad_bucketing_options_in_one_line():
    for bad, match in (({"batch_tokens": 0}, "batch_tokens must be an int >= 1"),
                       ({"bucket": 1}, "bucket must be true or false"),
                       ({"beam_size": 0}, "beam_size must be an int >= 1")):
        with pytest.raises(SpecError, match=match) as err:
            parse_spec({**BASE, "task_kwargs": bad})
        assert "\n" not in str(err.value) and "task_kwargs" in str(err.value)
    parse_spec({**BASE, "task_kwargs": {"bucket": True, "batch_tokens": 500, "bucket_pool": 8}})


def test_one_epoch_of_scan_with_bucketing_through_actlab_run(tmp_path: Path):
    spec = tmp_path / "s.toml"
    spec.write_text("""
name = "s2s-bucket"
dataset = "scan"
dataset_kwargs = { num_samples = 400, max_val = 16, max_test = 16 }
model = "transformer_seq2seq"
acts = ["sau"]
norms = ["ln"]
seeds = [0]
epochs = 2
batch_size = 32
optimizer = "adam"
lr = 0.003
schedule = "inverse_sqrt"
warmup_steps = 5
label_smoothing = 0.1
task_kwargs = { beam_size = 1, batch_tokens = 400, bucket_pool = 4 }

[model_kwargs]
d_model = 16
nhead = 2
num_encoder_layers = 1
num_decoder_layers = 1
dim_feedforward = 32
""")
    db = tmp_path / "r.sqlite"
    assert main(["run", str(spec), "--db", str(db), "--out", str(tmp_path / "out"),
                 "--no-progress"]) == 0
    with ResultStore(db) as store:
        [row] = store.list()
    assert row.status == "done" and len(row.history) == 2
    assert 0.0 <= row.metrics["test_bleu"] <= 100.0 and math.isfinite(row.metrics["train_loss"])
    info = row.history[-1]["task_info"]
    assert info["bucket"] is True and info["batch_tokens"] == 400 and info["bucket_pool"] == 4
    assert row.history[1]["train_loss"] < row.history[0]["train_loss"]
