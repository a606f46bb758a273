"""From sentence pairs to seq2seq :class:`DatasetSplits` (``task="seq2seq"``).

Steps, as in :func:`actlab.data.prepare.prepare_splits`: the uniform carve of
:func:`actlab.data.carve.carve_indices` (a test split carved with the fixed ``TEST_SEED`` when the
dataset has none, a validation carve with ``seed`` when it has no official one, optional
``max_*`` subsets); then a joint BPE (:mod:`actlab.data.bpe`) trained on the
final training split (source and target lines), training pairs longer than ``max_tokens``
dropped, and every split encoded as a :class:`~actlab.data.ragged.RaggedPairs` (token ids stored
flat, ``uint16`` for vocabularies up to 65,536 tokens, padded per batch when read):

* inputs: ``pieces <eos>`` of the source, read as ``(n, S)`` int64 rows right-padded with
  ``<pad>`` (0);
* targets: ``<bos> pieces <eos>`` of the target, read as ``(n, T)`` int64 rows likewise.

``split.padded()`` gives a whole split as the ``(inputs, targets)`` tensors padded to its
longest rows; ``split.sources[i:j]`` / ``split.targets[i:j]`` pad a slice to its own longest row.
``num_classes`` is the vocabulary size (shared by source and target), ``input_shape`` is
``(S,)`` with ``S`` the longest training source (``in_channels`` = S; token models ignore it) and
``meta`` holds the tokenizer file
(``meta["tokenizer"]``) that the seq2seq task needs to detokenise hypotheses for BLEU, the
special ids, and ``meta["task_options"]`` = ``{"tokenizer": <path>}``, the keyword options to
build the task with (``build_task("seq2seq", model, n, **meta["task_options"])``).
``normalize`` / ``dtype`` of the common options do not apply to token ids and are ignored.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from actlab.data.base import DatasetSplits
from actlab.data.bpe import BOS_ID, EOS_ID, PAD_ID, SPECIALS, UNK_ID, cached_bpe, encode_ragged
from actlab.data.carve import SplitOptions, carve_indices
from actlab.data.ragged import RaggedPairs, RaggedTokens, token_dtype

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Pairs", "prepare_parallel_splits"]

#: Parallel sentences: ``(sources, targets)`` of equal length.
Pairs = tuple[Sequence[str], Sequence[str]]


def _take(pairs: Pairs, idx: np.ndarray) -> Pairs:
    src, tgt = pairs
    return [src[i] for i in idx], [tgt[i] for i in idx]


def _side(tok: Any, lines: Sequence[str], *, bos: bool, vocab: int) -> RaggedTokens:
    values, offsets = encode_ragged(tok, lines, bos=bos)
    return RaggedTokens(torch.from_numpy(values).to(token_dtype(vocab)),
                        torch.from_numpy(offsets), pad_id=PAD_ID, min_width=2 if bos else 1)


def _encode(tok: Any, pairs: Pairs) -> RaggedPairs:
    vocab = int(tok.get_vocab_size())
    return RaggedPairs(_side(tok, pairs[0], bos=False, vocab=vocab),
                       _side(tok, pairs[1], bos=True, vocab=vocab))


def prepare_parallel_splits(
    name: str,
    train: Pairs,
    val: Pairs | None,
    test: Pairs | None,
    *,
    vocab_size: int,
    min_frequency: int = 2,
    max_tokens: int | None = None,
    normalize: bool = True,
    dtype: Any = None,
    cache_dir: str | os.PathLike[str] | None = None,
    meta: dict[str, Any] | None = None,
    **split: Unpack[SplitOptions],
) -> DatasetSplits:
    """Seq2seq splits of parallel sentences (module doc). ``split``: the
    :class:`~actlab.data.carve.SplitOptions` (``val_fraction``, ``seed``, ...); an official
    ``val`` replaces the validation carve (``val_fraction`` is then unused)."""
    del normalize, dtype  # not meaningful for token ids
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                   or max_tokens < 2):
        raise ValueError(f"max_tokens must be an int >= 2 or None, got {max_tokens!r}")
    cut = carve_indices(name, len(train[0]), split, n_val=None if val is None else len(val[0]),
                        n_test=None if test is None else len(test[0]))
    train_idx, val_idx, test_idx = cut.train, cut.val, cut.test
    val_src = train if val is None else val
    test_src = train if test is None else test
    parts = {"train": _take(train, train_idx), "val": _take(val_src, val_idx),
             "test": _take(test_src, test_idx)}

    tok, tok_path = cached_bpe(
        name, [*parts["train"][0], *parts["train"][1]], vocab_size,
        min_frequency=min_frequency, cache_dir=cache_dir,
    )
    splits: dict[str, RaggedPairs] = {}
    dropped = 0
    for key, pairs in parts.items():
        ds = _encode(tok, pairs)
        if key == "train" and max_tokens is not None:
            lengths = ds.lengths()
            ok = (lengths <= max_tokens).all(1)
            dropped = int((~ok).sum())
            if not bool(ok.any()):
                raise ValueError(f"{name}: every training pair is longer than "
                                 f"max_tokens={max_tokens}")
            if dropped:
                keep = torch.nonzero(ok).flatten()
                ds = RaggedPairs(ds.sources.select(keep), ds.targets.select(keep))
        splits[key] = ds
    width = max(1, int(splits["train"].sources.lengths.max()))
    info = dict(meta or {})
    info.update(
        seed=int(cut.options["seed"]), val_fraction=cut.options["val_fraction"],
        test_source="official" if test is not None
        else f"carved {cut.options['test_fraction']}",
        val_source="official" if val is not None else f"carved {cut.options['val_fraction']}",
        tokenizer=str(tok_path), vocab_size=int(tok.get_vocab_size()),
        pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, unk_id=UNK_ID, specials=list(SPECIALS),
        max_tokens=max_tokens, dropped_long_train_pairs=dropped,
        task_options={"tokenizer": str(tok_path)},
    )
    return DatasetSplits(
        name=name, task="seq2seq", num_classes=int(tok.get_vocab_size()), in_channels=width,
        input_shape=(width,), meta=info, **splits,
    )
