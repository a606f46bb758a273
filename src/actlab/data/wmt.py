"""WMT-style parallel text from ``data_dir`` (never downloaded).

Layout: one sentence per line, UTF-8, one file per split and language, aligned by line::

    <data_dir>/<folder>/train.en          <data_dir>/<folder>/train.de
    <data_dir>/<folder>/newstest2014.en   <data_dir>/<folder>/newstest2014.de
    <data_dir>/<folder>/newstest2013.en   ...   (optional official validation set)

(``folder`` defaults to ``wmt14_en_de``; ``folder=""`` reads ``data_dir`` itself.) Plain text
only: SGML test sets must be converted first (e.g. ``sacrebleu -t wmt14 -l en-de --echo src``
writes the plain source side). Training pairs with an empty side are dropped; test pairs are
kept as they are, so BLEU covers the whole test set.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from actlab.data.base import DatasetError, DatasetSplits
from actlab.data.files import default_data_dir
from actlab.data.parallel import prepare_parallel_splits

__all__ = ["read_lines", "read_parallel", "wmt"]


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file without their line breaks (one-line errors)."""
    if not path.is_file():
        raise DatasetError(f"wmt: missing file {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DatasetError(f"wmt: {path} is not UTF-8 text ({err.reason} at byte "
                           f"{err.start})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final line break
    return [line.rstrip("\r") for line in lines]


def read_parallel(folder: Path, prefix: str, src_lang: str, tgt_lang: str,
                  drop_empty: bool = False) -> tuple[list[str], list[str]]:
    """``(sources, targets)`` of ``folder/prefix.src_lang`` and ``folder/prefix.tgt_lang``;
    ``DatasetError`` when a file is missing or the line counts differ."""
    sp, tp = folder / f"{prefix}.{src_lang}", folder / f"{prefix}.{tgt_lang}"
    src, tgt = read_lines(sp), read_lines(tp)
    if len(src) != len(tgt):
        raise DatasetError(f"wmt: {sp} has {len(src)} lines but {tp} has {len(tgt)} "
                           "(parallel files must align line by line)")
    if not src:
        raise DatasetError(f"wmt: {sp} is empty")
    if drop_empty:
        keep = [i for i, (a, b) in enumerate(zip(src, tgt, strict=True)) if a.strip() and b.strip()]
        src, tgt = [src[i] for i in keep], [tgt[i] for i in keep]
    return src, tgt


def wmt(
    data_dir: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    *,
    folder: str = "wmt14_en_de",
    src_lang: str = "en",
    tgt_lang: str = "de",
    train: str = "train",
    valid: str | None = None,
    test: str = "newstest2014",
    vocab_size: int = 37000,
    min_frequency: int = 2,
    max_tokens: int | None = 256,
    cache_dir: str | os.PathLike[str] | None = None,
    **common: Any,
) -> DatasetSplits:
    """WMT-style translation ``src_lang`` -> ``tgt_lang`` (module doc for the files).

    ``valid``: prefix of an official validation set (e.g. ``"newstest2013"``); ``None`` carves
    ``val_fraction`` of the training pairs with ``seed``. ``vocab_size``: the joint BPE
    vocabulary (Vaswani et al. 2017 used about 37,000 for English–German). ``max_tokens``: the
    longest training sentence kept, in BPE tokens with ``<bos>``/``<eos>``.
    """
    from actlab.data.catalog import _check_common

    _check_common(common)
    root = default_data_dir(data_dir) / folder if folder else default_data_dir(data_dir)
    train_pairs = read_parallel(root, train, src_lang, tgt_lang, drop_empty=True)
    val_pairs = None if valid is None else read_parallel(root, valid, src_lang, tgt_lang)
    test_pairs = read_parallel(root, test, src_lang, tgt_lang)
    return prepare_parallel_splits(
        "wmt", train_pairs, val_pairs, test_pairs, vocab_size=vocab_size,
        min_frequency=min_frequency, max_tokens=max_tokens, val_fraction=val_fraction,
        seed=seed, cache_dir=cache_dir,
        meta={"data_dir": str(root), "pair": f"{src_lang}-{tgt_lang}", "train": train,
              "valid": valid, "test": test},
        **common,
    )
