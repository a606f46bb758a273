"""Sequence-to-sequence translation: teacher-forced label-smoothed loss (:mod:`.loss`), greedy
and beam-search decoding (:mod:`.decoding`), corpus BLEU via sacreBLEU (:mod:`.bleu`) and the
:class:`Seq2SeqTask` (:mod:`.task`)."""

from actlab.tasks.seq2seq.bleu import bleu_signature, corpus_bleu
from actlab.tasks.seq2seq.decoding import (
    DecodeConfig,
    beam_search,
    greedy_decode,
    length_limits,
    length_penalty,
)
from actlab.tasks.seq2seq.loss import gold_tokens, token_hits, token_loss_parts
from actlab.tasks.seq2seq.task import Seq2SeqTask

__all__ = [
    "DecodeConfig", "Seq2SeqTask", "beam_search", "bleu_signature", "corpus_bleu",
    "gold_tokens", "greedy_decode", "length_limits", "length_penalty", "token_hits",
    "token_loss_parts",
]
