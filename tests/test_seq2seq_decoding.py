"""Greedy and beam-search decoding: beam 1 = greedy, exhaustive beam = brute-force enumeration,
batched beam = a plain per-sentence beam search written from the description, length rules."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from actlab.models import TransformerSeq2Seq
from actlab.tasks.seq2seq import (
    DecodeConfig,
    beam_search,
    greedy_decode,
    length_limits,
    length_penalty,
)

PAD, BOS, EOS = 0, 1, 2


def _model(vocab: int, seed: int = 0, scale: float = 4.0) -> TransformerSeq2Seq:
    torch.manual_seed(seed)
    m = TransformerSeq2Seq(vocab, vocab, d_model=16, nhead=2, num_encoder_layers=1,
                           num_decoder_layers=2, dim_feedforward=32, dropout=0.0, max_len=64)
    with torch.no_grad():  # peakier, more varied next-token distributions
        m.head.weight.mul_(scale)
    return m.eval()


def _sources(vocab: int, lengths: list[int], seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    src = torch.full((len(lengths), max(lengths)), PAD)
    for i, n in enumerate(lengths):
        src[i, : n - 1] = torch.randint(3, vocab, (n - 1,), generator=g)
        src[i, n - 1] = EOS
    return src


@torch.no_grad()
def _logprobs(model, src_row: torch.Tensor, prefix: list[int]) -> torch.Tensor:
    """Next-token log-probabilities after ``[BOS] + prefix`` for one unpadded source row."""
    src = src_row[src_row != PAD][None]
    mem = model.encode(src)
    lp = torch.log_softmax(model.decode(torch.tensor([[BOS, *prefix]]), mem)[0, -1].float(), -1)
    lp[PAD] = lp[BOS] = -math.inf
    return lp


def _brute_force(model, src_row, limit: int, alpha: float, tokens: list[int]):
    memo: dict[tuple[int, ...], torch.Tensor] = {}

    def lp(prefix: tuple[int, ...]) -> torch.Tensor:
        if prefix not in memo:
            memo[prefix] = _logprobs(model, src_row, list(prefix))
        return memo[prefix]

    best = (-math.inf, None)
    for n in range(limit):
        for w in itertools.product(tokens, repeat=n):
            s = sum(float(lp(w[:j])[w[j]]) for j in range(n)) + float(lp(w)[EOS])
            s /= length_penalty(n + 1, alpha)
            if s > best[0]:
                best = (s, list(w))
    return best


def _reference_beam(model, src_row, k: int, limit: int, alpha: float):
    """Plain per-sentence beam search following the module doc, one hypothesis at a time."""
    live = [(0.0, [])]
    finished = []
    for t in range(1, limit + 1):
        cands = []
        for score, seq in live:
            lp = _logprobs(model, src_row, seq)
            if t == limit:
                keep = lp[EOS].clone()
                lp[:] = -math.inf
                lp[EOS] = keep
            cands += [(score + float(lp[v]), seq, v) for v in range(len(lp))]
        cands.sort(key=lambda c: -c[0])
        cands = cands[: 2 * k]
        for r, (s, seq, v) in enumerate(cands):
            if v == EOS and r < k and math.isfinite(s):
                finished.append((s / length_penalty(t, alpha), seq))
        if len(finished) >= k or t == limit:
            break
        live = [(s, seq + [v]) for s, seq, v in cands if v != EOS][:k]
    return max(finished, key=lambda f: f[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_one_equals_greedy(seed):
    model = _model(20, seed, scale=1.0)
    src = _sources(20, [5, 3, 8, 2, 6, 7], seed)
    cfg = DecodeConfig(max_len_a=1.0, max_len_b=3, length_penalty=0.6)
    greedy = greedy_decode(model, src, cfg)
    assert greedy == beam_search(model, src, 1, cfg)
    assert any(len(g) > 1 for g in greedy)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_exhaustive_beam_equals_brute_force(alpha):
    """With a beam wider than the number of complete hypotheses nothing is pruned, so beam
    search returns the best of all sequences of at most L tokens ending in <eos>."""
    vocab, limit = 6, 4  # free tokens 3, 4, 5; 1 + 3 + 9 + 27 = 40 complete hypotheses
    model = _model(vocab, seed=3, scale=2.0)
    src = _sources(vocab, [4, 2, 3], seed=4)
    cfg = DecodeConfig(max_len_a=0.0, max_len_b=limit, length_penalty=alpha)
    seqs, scores = beam_search(model, src, 40, cfg, return_scores=True)
    for i in range(len(src)):
        ref_score, ref_seq = _brute_force(model, src[i], limit, alpha, [3, 4, 5])
        assert seqs[i] == ref_seq
        assert scores[i] == pytest.approx(ref_score, abs=1e-5)


@pytest.mark.parametrize(("k", "alpha"), [(2, 0.6), (3, 1.0), (5, 0.0)])
def test_batched_beam_matches_per_sentence_reference(k, alpha):
    vocab = 9
    model = _model(vocab, seed=5, scale=1.5)
    src = _sources(vocab, [3, 6, 2, 5], seed=6)
    cfg = DecodeConfig(max_len_a=1.0, max_len_b=1, length_penalty=alpha)
    seqs, scores = beam_search(model, src, k, cfg, return_scores=True)
    limits = length_limits(src, cfg)
    for i in range(len(src)):
        ref_score, ref_seq = _reference_beam(model, src[i], k, int(limits[i]), alpha)
        assert seqs[i] == ref_seq
        assert scores[i] == pytest.approx(ref_score, abs=1e-5)


def test_padded_batch_decodes_like_single_sentences():
    model = _model(20, seed=7, scale=1.5)
    src = _sources(20, [6, 2, 4], seed=8)
    cfg = DecodeConfig(max_len_b=4)
    for k in (1, 3):
        batch = beam_search(model, src, k, cfg)
        for i in range(len(src)):
            row = src[i : i + 1, : int((src[i] != PAD).sum())]
            assert beam_search(model, row, k, cfg) == [batch[i]]


def test_length_limits_and_forced_eos():
    src = _sources(10, [1, 4, 7])
    cfg = DecodeConfig(max_len_a=1.5, max_len_b=2)
    assert length_limits(src, cfg).tolist() == [3, 8, 12]
    assert length_limits(src, cfg, cap=5).tolist() == [3, 5, 5]
    # a model that never wants <eos>: every output stops at the limit, L - 1 tokens + <eos>
    model = _model(10, seed=9)
    with torch.no_grad():
        model.head.bias[EOS] = -1e4
    for k in (1, 2):
        out = beam_search(model, src, k, cfg)
        assert [len(o) for o in out] == [2, 7, 11]
        assert all(t not in (PAD, BOS, EOS) for o in out for t in o)
    # a model that always wants <eos> first returns empty translations
    with torch.no_grad():
        model.head.bias[EOS] = 1e4
    assert greedy_decode(model, src, cfg) == [[], [], []]
    assert beam_search(model, src, 3, cfg) == [[], [], []]


def test_bad_arguments():
    model = _model(10)
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model, _sources(10, [3]), 0)
    with pytest.raises(ValueError, match="different"):
        DecodeConfig(pad_id=0, bos_id=0, eos_id=2)
    with pytest.raises(ValueError, match="length_penalty"):
        DecodeConfig(length_penalty=-1.0)
