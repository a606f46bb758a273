"""Corpus BLEU (Papineni et al. 2002) delegated to ``sacrebleu`` (Post 2018), with its signature.

Scores are sacreBLEU's defaults: one reference, mixed case, ``13a`` tokenisation, exponential
smoothing, on detokenised text. The signature string (e.g.
``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0``) identifies the exact metric and
is meant to be stored next to the score.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["corpus_bleu", "bleu_signature"]


def _bleu():
    try:
        from sacrebleu.metrics import BLEU
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("BLEU needs 'sacrebleu' (pip install 'actlab[seq2seq]')") from None
    return BLEU()


def bleu_signature() -> str:
    """sacreBLEU's signature of the BLEU configuration used here (sacreBLEU only gives one
    after scoring, so a one-sentence corpus is scored first)."""
    bleu = _bleu()
    bleu.corpus_score(["a"], [["a"]])
    return str(bleu.get_signature())


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[float, str]:
    """``(BLEU in [0, 100], signature)`` of detokenised hypotheses against one reference each."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    bleu = _bleu()
    score = bleu.corpus_score(list(hypotheses), [list(references)]).score
    return float(score), str(bleu.get_signature())
