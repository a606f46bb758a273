"""Joint source/target BPE tokenizer (Hugging Face ``tokenizers``), trained offline and cached.

Sennrich et al. 2016 (byte-pair encoding for subword units); Vaswani et al. 2017 use one shared
source–target BPE vocabulary for WMT'14 English–German. The tokenizer here is a ``tokenizers``
BPE model with a ``Metaspace`` pre-tokenizer and decoder (a space becomes ``▁``, so decoding
restores the spacing) and four special tokens with fixed ids:

``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2, ``<unk>`` = 3 (:data:`SPECIALS`).

Training is deterministic (the same lines give the same JSON). Trained tokenizers are cached as
``<cache>/tokenizers/<name>_<digest>.json``, the digest hashing the training lines and the
settings, so a dataset built twice reuses the file and a changed training split retrains.
Characters never seen in training encode to ``<unk>`` and vanish when decoded.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from actlab.data.base import DatasetError
from actlab.data.cache import cache_dir as _cache_dir

__all__ = ["SPECIALS", "PAD_ID", "BOS_ID", "EOS_ID", "UNK_ID", "train_bpe", "load_tokenizer",
           "cached_bpe", "encode_lines", "encode_ragged", "decode_ids"]

#: Special tokens in id order.
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3


def _require_tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the seq2seq datasets need Hugging Face 'tokenizers' "
            "(pip install 'actlab[seq2seq]')"
        ) from None
    return tokenizers


def train_bpe(lines: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Any:
    """A BPE ``tokenizers.Tokenizer`` of at most ``vocab_size`` tokens trained on ``lines``
    (specials first, ids as in :data:`SPECIALS`)."""
    tk = _require_tokenizers()
    if (isinstance(vocab_size, bool) or not isinstance(vocab_size, int)
            or vocab_size <= len(SPECIALS)):
        raise ValueError(f"vocab_size must be an int > {len(SPECIALS)}, got {vocab_size!r}")
    tok = tk.Tokenizer(tk.models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = tk.pre_tokenizers.Metaspace()
    tok.decoder = tk.decoders.Metaspace()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIALS),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer)
    for i, s in enumerate(SPECIALS):
        if tok.token_to_id(s) != i:  # pragma: no cover - guards a library change
            raise RuntimeError(f"special token {s} got id {tok.token_to_id(s)}, expected {i}")
    return tok


def load_tokenizer(path: str | os.PathLike[str]) -> Any:
    """A tokenizer saved by :func:`cached_bpe` (one-line ``DatasetError`` when unreadable)."""
    tk = _require_tokenizers()
    try:
        return tk.Tokenizer.from_file(os.fspath(path))
    except Exception as err:  # tokenizers raises its own Exception subclass
        raise DatasetError(f"cannot read tokenizer file {path}: {err}") from None


def cached_bpe(
    name: str,
    lines: Sequence[str],
    vocab_size: int,
    *,
    min_frequency: int = 2,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[Any, Path]:
    """``(tokenizer, path)``: the BPE of ``lines`` from the cache, trained and saved if absent
    (written atomically: a temporary file, then ``os.replace``)."""
    h = hashlib.sha256(f"bpe1|{vocab_size}|{min_frequency}|{len(lines)}\n".encode())
    for line in lines:
        h.update(line.encode("utf-8"))
        h.update(b"\n")
    path = _cache_dir(cache_dir) / "tokenizers" / f"{name}_{h.hexdigest()[:16]}.json"
    if path.is_file():
        try:
            return load_tokenizer(path), path
        except DatasetError:
            pass  # a damaged cache entry is rebuilt below
    tok = train_bpe(lines, vocab_size, min_frequency)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        tok.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tok, path


def encode_lines(
    tok: Any, lines: Sequence[str], *, bos: bool, eos: bool = True, max_tokens: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, lengths)``: ``lines`` encoded as ``[<bos>] pieces [<eos>]`` and right-padded with
    ``<pad>`` into an int64 ``(N, L)`` array (``L`` the longest row, or ``max_tokens``)."""
    rows = [e.ids for e in tok.encode_batch(list(lines))] if len(lines) else []
    pre, post = [BOS_ID] if bos else [], [EOS_ID] if eos else []
    rows = [pre + r + post for r in rows]
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    width = int(lengths.max(initial=1)) if max_tokens is None else int(max_tokens)
    out = np.full((len(rows), width), PAD_ID, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : min(len(r), width)] = r[:width]
    return out, lengths


def encode_ragged(
    tok: Any, lines: Sequence[str], *, bos: bool, eos: bool = True, chunk: int = 20_000
) -> tuple[np.ndarray, np.ndarray]:
    """``(values, offsets)``: ``lines`` encoded as ``[<bos>] pieces [<eos>]`` and stored flat
    (int64 ``values``; row ``i`` is ``values[offsets[i]:offsets[i+1]]``), encoding ``chunk``
    lines at a time so that memory stays near the size of the result (no padded matrix, no
    million ``Encoding`` objects at once)."""
    pre, post = [BOS_ID] if bos else [], [EOS_ID] if eos else []
    parts: list[np.ndarray] = []
    lengths = np.zeros(len(lines), dtype=np.int64)
    for start in range(0, len(lines), chunk):
        rows = [pre + e.ids + post for e in tok.encode_batch(list(lines[start:start + chunk]))]
        lengths[start:start + len(rows)] = [len(r) for r in rows]
        parts.append(np.fromiter((t for r in rows for t in r), dtype=np.int64,
                                 count=int(lengths[start:start + len(rows)].sum())))
    offsets = np.zeros(len(lines) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return values, offsets


def decode_ids(tok: Any | None, rows: Sequence[Sequence[int]]) -> list[str]:
    """Strings of id rows; special tokens are dropped. Without a tokenizer, the non-special
    ids joined by spaces (``"7 12 5"``), which lets BLEU score id sequences."""
    special = set(range(len(SPECIALS)))
    if tok is None:
        return [" ".join(str(i) for i in r if i not in special) for r in rows]
    return tok.decode_batch([list(r) for r in rows], skip_special_tokens=True)
