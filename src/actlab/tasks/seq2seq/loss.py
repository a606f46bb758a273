"""Teacher-forced sequence loss: label-smoothed token cross-entropy that ignores padding.

Targets are ``<bos> y_1 … y_n <eos> <pad>…`` rows ``(N, T)``. The decoder reads
``targets[:, :-1]`` and its logits ``(N, T-1, V)`` are scored against the gold tokens
``targets[:, 1:]``; every non-pad gold token ``t`` contributes (Szegedy et al. 2016, label
smoothing; ``ε = 0.1`` in Vaswani et al. 2017)

    ``l = (1 - ε)·(-log q_t) + ε·Σ_c (-log q_c) / V``,  ``q = softmax(logits)``

(PyTorch's convention: ``ε/V`` of the mass on every class, the gold one included), and the batch
loss is ``Σ l / #non-pad gold tokens`` (:func:`actlab.train.loss.cross_entropy_parts` computes
the sum and the count).
"""

from __future__ import annotations

from torch import Tensor

from actlab.train.loss import cross_entropy_parts

__all__ = ["gold_tokens", "token_loss_parts", "token_hits"]


def gold_tokens(targets: Tensor, steps: int, pad_id: int) -> Tensor:
    """``targets[:, 1:steps+1]`` with padding replaced by -100 (ignored)."""
    gold = targets[:, 1:steps + 1]
    return gold.masked_fill(gold == pad_id, -100)


def token_loss_parts(logits: Tensor, targets: Tensor, pad_id: int, label_smoothing: float = 0.0
                     ) -> tuple[Tensor, Tensor]:
    """``(Σ l, #gold tokens)`` of decoder ``logits (N, t, V)`` against ``targets (N, T)``
    (``t <= T - 1``; columns past ``t`` must be padding, as when a batch is trimmed)."""
    gold = gold_tokens(targets, logits.shape[1], pad_id)
    return cross_entropy_parts(logits.transpose(1, 2), gold, None, label_smoothing)


def token_hits(logits: Tensor, targets: Tensor, pad_id: int) -> tuple[Tensor, Tensor]:
    """``(#gold tokens predicted by arg-max, #gold tokens)``."""
    gold = gold_tokens(targets, logits.shape[1], pad_id)
    valid = gold >= 0
    return ((logits.argmax(-1) == gold) & valid).sum(), valid.sum()
