"""Greedy and beam-search decoding of encoder–decoder models.

The model protocol is that of :class:`actlab.models.TransformerSeq2Seq`:
``memory = model.encode(src, src_padding_mask)`` and
``logits = model.decode(prefix, memory, None, src_padding_mask)`` with logits ``(B, t, V)``.
Each step re-runs the decoder on the whole prefix (no key/value cache: exact, and cheap at the
sizes trained here) and scores the next token with ``log_softmax`` of the last position.

Rules shared by both decoders:

* ``<pad>`` and ``<bos>`` are never generated (their log-probabilities are set to ``-inf``
  after the softmax; nothing is renormalised).
* A hypothesis ends with ``<eos>``. Sentence ``i`` may generate at most
  ``L_i = min(cap, floor(a·|src_i| + b))`` tokens including ``<eos>`` (``|src_i|`` its non-pad
  source tokens, ``cap`` the model's position limit; Vaswani et al. 2017 use ``a = 1``,
  ``b = 50``); at step ``L_i`` only ``<eos>`` is allowed.
* Returned sequences hold the generated tokens without ``<eos>``.

Beam search (the usual "2k candidates" form): at every step all ``k·V`` one-token extensions of
the ``k`` live hypotheses are ranked by their summed log-probability; an ``<eos>`` candidate
among the first ``k`` ranks is finished with the score
``Σ log p / lp(n)``, ``lp(n) = ((5 + n) / 6)^α`` (Wu et al. 2016, GNMT; ``n`` tokens including
``<eos>``; ``α = 0.6`` in Vaswani et al.), and the first ``k`` non-``<eos>`` candidates are the
next live hypotheses. A sentence stops when it has ``k`` finished hypotheses or reaches ``L_i``;
the best finished one is returned. With ``k = 1`` this is greedy decoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["DecodeConfig", "length_limits", "length_penalty", "greedy_decode", "beam_search"]


@dataclass(frozen=True)
class DecodeConfig:
    """Special ids and length rules of decoding (module doc)."""

    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    max_len_a: float = 1.0
    max_len_b: int = 50
    length_penalty: float = 0.6

    def __post_init__(self) -> None:
        if len({self.pad_id, self.bos_id, self.eos_id}) != 3:
            raise ValueError("pad_id, bos_id and eos_id must be three different ids")
        if self.max_len_a < 0 or self.max_len_b < 0 or self.max_len_a + self.max_len_b <= 0:
            raise ValueError(f"max_len_a={self.max_len_a}, max_len_b={self.max_len_b} must be "
                             ">= 0 and not both 0")
        if self.length_penalty < 0:
            raise ValueError(f"length_penalty must be >= 0, got {self.length_penalty}")


def length_penalty(n: int, alpha: float) -> float:
    """GNMT's ``lp(n) = ((5 + n) / 6)^α``."""
    return ((5.0 + n) / 6.0) ** alpha


def _position_cap(model: nn.Module) -> int | None:
    pe = getattr(getattr(model, "tgt_embed", None), "pe", None)
    return None if pe is None else int(pe.shape[0])


def length_limits(src: Tensor, cfg: DecodeConfig, cap: int | None = None) -> Tensor:
    """``L_i = min(cap, floor(a·|src_i| + b))``, at least 1, as an int64 CPU tensor."""
    n = (src != cfg.pad_id).sum(1).cpu().double()
    lim = torch.floor(cfg.max_len_a * n + cfg.max_len_b).long().clamp(min=1)
    return lim if cap is None else lim.clamp(max=cap)


def _step_logprobs(model: nn.Module, memory: Tensor, mem_mask: Tensor, prefix: Tensor,
                   cfg: DecodeConfig) -> Tensor:
    logits = model.decode(prefix, memory, None, mem_mask)[:, -1]
    lp = torch.log_softmax(logits.float(), dim=-1)
    lp[:, cfg.pad_id] = -math.inf
    lp[:, cfg.bos_id] = -math.inf
    return lp


def _force_eos(lp: Tensor, force: Tensor, eos: int) -> Tensor:
    """Only ``<eos>`` stays possible in the rows where ``force`` is set."""
    if force.any():
        keep = lp[:, eos].clone()
        lp = lp.masked_fill(force[:, None], -math.inf)
        lp[:, eos] = keep
    return lp


@torch.no_grad()
def greedy_decode(model: nn.Module, src: Tensor, cfg: DecodeConfig = DecodeConfig()
                  ) -> list[list[int]]:
    """Arg-max decoding of every source row (module doc); the model is used as it is (call
    ``model.eval()`` first)."""
    b, device = src.shape[0], src.device
    mask = src == cfg.pad_id
    memory = model.encode(src, mask)
    limits = length_limits(src, cfg, _position_cap(model)).to(device)
    prefix = torch.full((b, 1), cfg.bos_id, dtype=torch.long, device=device)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    out: list[list[int]] = [[] for _ in range(b)]
    for t in range(1, (int(limits.max()) if b else 0) + 1):
        lp = _force_eos(_step_logprobs(model, memory, mask, prefix, cfg), limits <= t, cfg.eos_id)
        tok = lp.argmax(-1)
        for i in torch.nonzero(~done & (tok != cfg.eos_id)).flatten().tolist():
            out[i].append(int(tok[i]))
        done |= tok == cfg.eos_id
        if bool(done.all()):
            break
        prefix = torch.cat([prefix, tok.masked_fill(done, cfg.pad_id)[:, None]], dim=1)
    return out


@torch.no_grad()
def beam_search(model: nn.Module, src: Tensor, beam_size: int,
                cfg: DecodeConfig = DecodeConfig(), *, return_scores: bool = False):
    """Beam search of every source row (module doc). Returns the token lists, and with
    ``return_scores`` also the length-normalised scores of the returned hypotheses."""
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be an int >= 1, got {beam_size!r}")
    b, k, device = src.shape[0], beam_size, src.device
    mask = src == cfg.pad_id
    memory = model.encode(src, mask).repeat_interleave(k, dim=0)
    mask_k = mask.repeat_interleave(k, dim=0)
    limits = length_limits(src, cfg, _position_cap(model))
    prefix = torch.full((b * k, 1), cfg.bos_id, dtype=torch.long, device=device)
    cum = torch.full((b, k), -math.inf, device=device)
    cum[:, 0] = 0.0  # the k start hypotheses are identical: expand only one
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    done = [False] * b
    rank = torch.arange(2 * k, device=device)
    offset = (torch.arange(b, device=device) * k)[:, None]
    for t in range(1, (int(limits.max()) if b else 0) + 1):
        force = (limits <= t).to(device).repeat_interleave(k)
        lp = _force_eos(_step_logprobs(model, memory, mask_k, prefix, cfg), force, cfg.eos_id)
        v = lp.shape[-1]
        cand = (cum[:, :, None] + lp.view(b, k, v)).view(b, k * v)
        top_s, top_i = cand.topk(min(2 * k, k * v), dim=1)
        beam, tok = top_i // v, top_i % v
        is_eos = tok == cfg.eos_id
        fin = is_eos & (rank[: top_s.shape[1]] < k) & torch.isfinite(top_s)
        pen = length_penalty(t, cfg.length_penalty)
        for i, r in torch.nonzero(fin).tolist():
            if not done[i]:
                seq = prefix[i * k + int(beam[i, r]), 1:].tolist()
                finished[i].append((float(top_s[i, r]) / pen, seq))
        for i in range(b):
            if not done[i] and (len(finished[i]) >= k or int(limits[i]) <= t):
                done[i] = True
        if all(done):
            break
        key = torch.where(is_eos, rank[: top_s.shape[1]] + 2 * k, rank[: top_s.shape[1]])
        order = key.argsort(dim=1)[:, :k]
        rows = (offset + beam.gather(1, order)).flatten()
        prefix = torch.cat([prefix[rows], tok.gather(1, order).reshape(-1, 1)], dim=1)
        cum = top_s.gather(1, order)
    best = [max(f, key=lambda s: s[0]) if f else (-math.inf, []) for f in finished]
    seqs = [s for _, s in best]
    return (seqs, [sc for sc, _ in best]) if return_scores else seqs
