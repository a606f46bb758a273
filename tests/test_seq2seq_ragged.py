"""Ragged seq2seq storage: flat ids + offsets read back exactly as the old split-wide padded
rows (checked against ``encode_lines``, the old encoder, and a naive per-row padding), its
memory formula on a generated corpus, and training on it gives the history of training on the
padded tensors (the layout before ragged storage)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from actlab.data import load_dataset
from actlab.data.base import DatasetSplits
from actlab.data.bpe import encode_lines, load_tokenizer
from actlab.data.ragged import RaggedPairs, RaggedTokens, token_dtype
from actlab.data.wmt import read_parallel
from actlab.models import create_model
from actlab.train import train_model
from actlab.train.batches import EpochBatches, make_loader

EN = ["the house is small .", "the tree .", "a very long sentence about the small house .",
      "I see the tree", "the house", "small small small house .", "no", "the end ."]
DE = ["das Haus ist klein .", "der Baum .", "ein sehr langer Satz über das kleine Haus .",
      "ich sehe den Baum", "das Haus", "klein klein klein Haus .", "nein", "das Ende ."]


def _naive(rows: list[list[int]], width: int | None = None) -> torch.Tensor:
    width = max(map(len, rows), default=0) if width is None else width
    out = torch.zeros(len(rows), width, dtype=torch.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r, dtype=torch.int64)
    return out


def test_ragged_tokens_read_rows_slices_and_index_batches():
    rng = np.random.default_rng(0)
    rows = [rng.integers(1, 40_000, rng.integers(1, 9)).tolist() for _ in range(50)]
    rt = RaggedTokens.from_rows(rows, 40_000)
    assert rt.values.dtype == torch.uint16 and len(rt) == 50  # ids above int16's 32767 fit
    assert torch.equal(rt.padded(), _naive(rows))
    assert torch.equal(rt[3], torch.tensor(rows[3])) and torch.equal(rt[-1], torch.tensor(rows[-1]))
    assert torch.equal(rt[10:17], _naive(rows[10:17]))  # padded to the slice's longest row
    idx = [7, 2, 2, 41]
    assert torch.equal(rt[torch.tensor(idx)], _naive([rows[i] for i in idx]))
    keep = torch.tensor([5, 1, 30])
    assert torch.equal(rt.select(keep).padded(), _naive([rows[i] for i in keep]))
    assert rt[0:0].shape == (0, 1) and RaggedTokens.from_rows([], 10, min_width=2)[0:0].shape == (
        0, 2)
    assert rt.lengths.tolist() == [len(r) for r in rows]
    assert token_dtype(65_536) == torch.uint16 and token_dtype(65_537) == torch.int32
    big = RaggedTokens.from_rows([[70_000, 1], [3]], 70_001)
    assert big.values.dtype == torch.int32 and big[0].tolist() == [70_000, 1]
    with pytest.raises(ValueError, match=r"outside \[0, 10\)"):
        RaggedTokens.from_rows([[10]], 10)
    with pytest.raises(ValueError, match="offsets must start at 0"):
        RaggedTokens(torch.zeros(3, dtype=torch.int32), torch.tensor([0, 2]))


@pytest.fixture(scope="module")
def wmt_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("wmt")
    folder = root / "wmt14_en_de"
    folder.mkdir()
    for lang, lines in (("en", EN), ("de", DE)):
        (folder / f"train.{lang}").write_text("\n".join(lines * 3) + "\n")
        (folder / f"newstest2013.{lang}").write_text("\n".join(lines[:3]) + "\n")
        (folder / f"newstest2014.{lang}").write_text("\n".join(lines[3:]) + "\n")
    return root


@pytest.mark.parametrize("max_tokens", [None, 9])
def test_wmt_splits_round_trip_to_the_old_padded_rows(wmt_dir, tmp_path, max_tokens):
    d = load_dataset("wmt", data_dir=wmt_dir, valid="newstest2013", vocab_size=120,
                     min_frequency=1, max_tokens=max_tokens, cache_dir=tmp_path)
    tok = load_tokenizer(d.meta["tokenizer"])
    folder = wmt_dir / "wmt14_en_de"
    for split, prefix in (("train", "train"), ("val", "newstest2013"), ("test", "newstest2014")):
        src, tgt = read_parallel(folder, prefix, "en", "de")
        x, xl = encode_lines(tok, src, bos=False)  # the encoder of the padded layout
        y, yl = encode_lines(tok, tgt, bos=True)
        if split == "train" and max_tokens is not None:
            keep = (xl <= max_tokens) & (yl <= max_tokens)
            assert 0 < keep.sum() < len(keep)  # the filter drops some pairs here
            x, _ = encode_lines(tok, [s for s, k in zip(src, keep, strict=True) if k], bos=False)
            y, _ = encode_lines(tok, [t for t, k in zip(tgt, keep, strict=True) if k], bos=True)
        ds = getattr(d, split)
        assert isinstance(ds, RaggedPairs)
        px, py = ds.padded()
        assert px.dtype == py.dtype == torch.int64
        assert torch.equal(px, torch.from_numpy(x)) and torch.equal(py, torch.from_numpy(y))
    assert d.input_shape == (d.train.padded()[0].shape[1],)


def test_loader_batches_are_the_padded_rows_trimmed(wmt_dir, tmp_path):
    d = load_dataset("wmt", data_dir=wmt_dir, valid="newstest2013", vocab_size=120,
                     min_frequency=1, cache_dir=tmp_path)
    px, py = d.train.padded()
    batches = EpochBatches()
    perm = torch.randperm(len(d.train), generator=torch.Generator().manual_seed(1))
    batches.set_order(perm, 4, 5)
    for k, (x, y) in enumerate(make_loader(d.train, batches, 0, torch.device("cpu"))):
        idx = perm[k * 5:(k + 1) * 5]
        wx, wy = int((px[idx] != 0).sum(1).max()), int((py[idx] != 0).sum(1).max())
        assert torch.equal(x, px[idx, :wx]) and torch.equal(y, py[idx, :wy])


def test_memory_per_pair_matches_the_formula():
    """200,000 generated pairs of about 30 tokens a side: 2 bytes per token (vocabulary 37,000
    fits uint16) plus 2 x 8 bytes of offsets per pair, against 8 bytes per padded cell before."""
    n, rng = 200_000, np.random.default_rng(0)
    sides = []
    for _ in range(2):
        lengths = np.clip(rng.lognormal(math.log(27), 0.5, n).astype(np.int64), 2, 250)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = torch.from_numpy(rng.integers(0, 37_000, int(offsets[-1]))).to(token_dtype(37_000))
        sides.append(RaggedTokens(values, torch.from_numpy(offsets)))
    pairs = RaggedPairs(*sides)
    tokens = sum(len(s.values) for s in sides)
    assert pairs.nbytes == 2 * tokens + 2 * 8 * (n + 1)
    per_pair = pairs.nbytes / n
    padded_per_pair = 8 * sum(int(s.lengths.max()) for s in sides)
    assert per_pair < 140 and padded_per_pair / per_pair > 10
    # at WMT'14 size (4.5M pairs, ~30 tokens a side): about 0.6 GB
    assert 4.5e6 * (2 * 30 * 2 + 16) / 1e9 < 0.7


def _splits(d: DatasetSplits, padded: bool) -> DatasetSplits:
    if not padded:
        return d
    parts = {k: TensorDataset(*getattr(d, k).padded()) for k in ("train", "val", "test")}
    return DatasetSplits(name=d.name, task=d.task, num_classes=d.num_classes,
                         in_channels=d.in_channels, input_shape=d.input_shape, meta=d.meta,
                         **parts)


def test_training_on_ragged_splits_equals_training_on_padded_tensors(tmp_path):
    """The ragged DataLoader path against the in-memory path on the old padded tensors: the
    same history to the last bit (bucketing off)."""
    d = load_dataset("scan", num_samples=300, max_val=16, max_test=16, cache_dir=tmp_path)
    histories = []
    for padded in (True, False):
        torch.manual_seed(0)
        model = create_model("transformer_seq2seq", num_classes=d.num_classes, d_model=16,
                             nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                             dim_feedforward=32)
        res = train_model(model, _splits(d, padded), {
            "epochs": 2, "batch_size": 32, "optimizer": "adam", "lr": 3e-3,
            "label_smoothing": 0.1, "device": "cpu", "log_layer_stats": False},
            progress=False, task_options={"beam_size": 1})
        histories.append([{k: v for k, v in r.items() if k != "epoch_time"}
                          for r in res.history])
    assert histories[0] == histories[1]
