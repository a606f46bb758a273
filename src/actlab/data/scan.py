"""A SCAN-style command → action translation benchmark, generated offline.

Lake & Baroni 2018 ("Generalization without systematicity", ICML) define SCAN by a phrase
grammar of navigation commands and their action sequences. This module enumerates the same
language (20,910 commands, action sequences of 1–48 tokens)::

    C -> S | S and S | S after S          S -> V | V twice | V thrice
    V -> U | D | U opposite R | turn opposite R | U around R | turn around R
    D -> U R | turn R                     R -> left | right
    U -> walk | look | run | jump

with the meaning function ``[[walk]] = WALK`` (LOOK, RUN, JUMP alike), ``[[left]] = LTURN``,
``[[right]] = RTURN``, ``[[u r]] = [[r]] [[u]]``, ``[[turn r]] = [[r]]``,
``[[u opposite r]] = [[r]] [[r]] [[u]]``, ``[[turn opposite r]] = [[r]] [[r]]``,
``[[u around r]] = ([[r]] [[u]])×4``, ``[[turn around r]] = [[r]]×4``, ``[[x twice]] = [[x]]×2``,
``[[x thrice]] = [[x]]×3``, ``[[a and b]] = [[a]] [[b]]``, ``[[a after b]] = [[b]] [[a]]``.
(The original writes actions as ``I_WALK`` / ``I_TURN_LEFT``; here they are ``WALK`` / ``LTURN``.)

:func:`scan` draws ``num_samples`` distinct commands with ``data_seed`` and builds seq2seq
splits through :func:`actlab.data.parallel.prepare_parallel_splits`. ``split="random"`` carves a
random test split (SCAN's "simple" split); ``split="length"`` is SCAN's length split: the test
split holds every sampled command whose action sequence is longer than ``length_cutoff`` (22 as
in the original, about 19 % of the commands), training and validation the rest.

Measured here (``transformer_seq2seq`` d_model 64, 4 heads, 2 + 2 layers, FFN 128, no dropout,
ReLU, Adam 3e-3, batch 64, greedy BLEU on 128 sentences, one seed): with the random split the
validation BLEU is 48 / 84 / 90 after 200 / 400 / 600 steps on 4,000 sampled pairs (51 / 91 /
95 on 1,000 pairs, 80 sentences), so random splits separate activations by speed of learning,
not by final score; with the length split on 4,000 pairs the validation BLEU is 46 / 95 / 98 and
the test BLEU 40 / 70 / 70 — a plateau far from saturation that measures generalisation to
longer outputs.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import numpy as np

from actlab.data.base import DatasetSplits
from actlab.data.parallel import prepare_parallel_splits

__all__ = ["scan_commands", "scan_meaning", "scan_pairs", "scan", "NUM_SCAN_COMMANDS"]

_PRIMITIVES = {"walk": "WALK", "look": "LOOK", "run": "RUN", "jump": "JUMP"}
_TURNS = {"left": "LTURN", "right": "RTURN"}
_REPEAT = {"twice": 2, "thrice": 3}
NUM_SCAN_COMMANDS = 20_910


def _verb_phrases() -> list[str]:
    """The 34 V phrases in a fixed order."""
    out = list(_PRIMITIVES)
    for d in _TURNS:
        out += [f"{u} {d}" for u in _PRIMITIVES] + [f"turn {d}"]
    for mod in ("opposite", "around"):
        for d in _TURNS:
            out += [f"{u} {mod} {d}" for u in _PRIMITIVES] + [f"turn {mod} {d}"]
    return out


@cache
def _all_commands() -> tuple[str, ...]:
    simple = [v for base in _verb_phrases() for v in (base, f"{base} twice", f"{base} thrice")]
    out = list(simple)
    for conj in ("and", "after"):
        out += [f"{a} {conj} {b}" for a in simple for b in simple]
    return tuple(out)


def scan_commands() -> list[str]:
    """Every command of the grammar, in a fixed order (20,910)."""
    return list(_all_commands())


def _verb(words: list[str]) -> list[str]:
    if len(words) == 1:
        if words[0] not in _PRIMITIVES:
            raise ValueError(f"not a SCAN verb phrase: {' '.join(words)!r}")
        return [_PRIMITIVES[words[0]]]
    head, turn = words[0], _TURNS.get(words[-1])
    act = [] if head == "turn" else [_PRIMITIVES.get(head, "")]
    if turn is None or "" in act or len(words) > 3:
        raise ValueError(f"not a SCAN verb phrase: {' '.join(words)!r}")
    if len(words) == 2:
        return [turn, *act]
    if words[1] == "opposite":
        return [turn, turn, *act]
    if words[1] == "around":
        return [turn, *act] * 4
    raise ValueError(f"not a SCAN verb phrase: {' '.join(words)!r}")


def _sentence(words: list[str]) -> list[str]:
    if words and words[-1] in _REPEAT:
        return _verb(words[:-1]) * _REPEAT[words[-1]]
    return _verb(words)


def scan_meaning(command: str) -> str:
    """The action sequence of a command, e.g. ``"jump twice and walk left"`` ->
    ``"JUMP JUMP LTURN WALK"`` (``ValueError`` for text outside the grammar)."""
    words = command.split()
    for conj in ("and", "after"):
        if conj in words:
            i = words.index(conj)
            a, b = _sentence(words[:i]), _sentence(words[i + 1:])
            return " ".join(a + b if conj == "and" else b + a)
    return " ".join(_sentence(words))


def scan_pairs(num_samples: int | None = None, data_seed: int = 0) -> tuple[list[str], list[str]]:
    """``(commands, actions)``: ``num_samples`` distinct commands drawn with ``data_seed`` (all
    of them, in grammar order, for ``None``)."""
    cmds = _all_commands()
    if num_samples is not None:
        if (isinstance(num_samples, bool) or not isinstance(num_samples, int)
                or not 1 <= num_samples <= len(cmds)):
            raise ValueError(f"num_samples must be an int in [1, {len(cmds)}], got {num_samples!r}")
        pick = np.random.default_rng(data_seed).choice(len(cmds), num_samples, replace=False)
        cmds = tuple(cmds[i] for i in np.sort(pick))
    return list(cmds), [scan_meaning(c) for c in cmds]


def scan(
    data_dir: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    *,
    num_samples: int = 4000,
    data_seed: int = 0,
    split: str = "random",
    length_cutoff: int = 22,
    test_fraction: float = 0.2,
    vocab_size: int = 128,
    cache_dir: str | os.PathLike[str] | None = None,
    **common: Any,
) -> DatasetSplits:
    """SCAN-style command -> action pairs (module doc): a random (``test_fraction``, fixed test
    seed) or length (``length_cutoff``) test split, validation carved with ``seed`` from the
    rest, a BPE tokenizer of the training pairs (cached in ``cache_dir``, default
    ``$ACTLAB_CACHE``). ``data_dir`` is ignored."""
    from actlab.data.catalog import _check_common

    _check_common(common)
    if split not in ("random", "length"):
        raise ValueError(f"scan split must be 'random' or 'length', got {split!r}")
    src, tgt = scan_pairs(num_samples, data_seed)
    test = None
    if split == "length":
        long = [len(t.split()) > length_cutoff for t in tgt]
        if all(long) or not any(long):
            raise ValueError(f"length_cutoff={length_cutoff} leaves an empty train or test split")
        test = ([s for s, x in zip(src, long, strict=True) if x],
                [t for t, x in zip(tgt, long, strict=True) if x])
        src = [s for s, x in zip(src, long, strict=True) if not x]
        tgt = [t for t, x in zip(tgt, long, strict=True) if not x]
    return prepare_parallel_splits(
        "scan", (src, tgt), None, test, vocab_size=vocab_size, val_fraction=val_fraction,
        seed=seed, test_fraction=test_fraction, cache_dir=cache_dir,
        meta={"source": "actlab.data.scan", "num_samples": num_samples, "data_seed": data_seed,
              "split": split, **({"length_cutoff": length_cutoff} if split == "length" else {})},
        **common,
    )
