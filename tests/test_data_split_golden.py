"""Frozen split indices: every split builder must keep carving exactly the splits it carved when
``docs/results.sqlite`` was filled (commit bf095fa), for every seed, fraction and size.

Each case builds a tiny dataset whose raw inputs encode their own position (training source
sample ``i`` is ``i``, the official validation source adds 10,000, the official test source
20,000), runs the real builder (:func:`actlab.data.prepare.prepare_splits`,
:func:`actlab.data.detection_splits.prepare_detection_splits`,
:func:`actlab.data.parallel.prepare_parallel_splits`) and reads the positions back from the
finished splits, in order. ``tests/data/split_golden.json`` holds a hash of those positions (or
the exception type) per case, written from the builders of bf095fa by running this file:
``PYTHONPATH=src python tests/test_data_split_golden.py --write``. A case whose hash changes means
that runs made before the change can no longer be reproduced.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from actlab.data.bpe import decode_ids, load_tokenizer
from actlab.data.detection_splits import DetectionSource, prepare_detection_splits
from actlab.data.parallel import prepare_parallel_splits
from actlab.data.prepare import Source, prepare_splits
from actlab.tasks.detection.targets import ImageTargets

GOLDEN = Path(__file__).parent / "data" / "split_golden.json"
VAL_OFFSET, TEST_OFFSET = 10_000, 20_000
DIGITS = "abcdefghij"


def _cases() -> dict[str, dict[str, Any]]:
    """Case id -> ``{"caller", "n", "n_val", "n_test", "task", "kw"}`` (deterministic)."""
    cases: dict[str, dict[str, Any]] = {}

    def add(caller: str, n: int, n_test: int | None = None, n_val: int | None = None,
            task: str = "classification", **kw: Any) -> None:
        key = f"{caller}|{task}|n={n}|val_src={n_val}|test_src={n_test}|" + ",".join(
            f"{k}={v}" for k, v in sorted(kw.items()))
        cases[key] = {"caller": caller, "n": n, "n_val": n_val, "n_test": n_test,
                      "task": task, "kw": kw}

    callers = (("prepare", "classification"), ("prepare", "segmentation"),
               ("detection", "detection"), ("parallel", "seq2seq"))
    for caller, task in callers:
        for n in (1, 2, 3, 5, 8, 37, 150):
            for n_test in (None, 13):
                for vf in (0.0, 0.1, 0.3, 0.5):
                    for seed in (0, 1, 5):
                        add(caller, n, n_test, task=task, val_fraction=vf, seed=seed)
        for tf in (0.05, 0.5, 0.9):
            for seed in (0, 3):
                add(caller, 60, task=task, test_fraction=tf, val_fraction=0.2, seed=seed)
        for n_test in (None, 17):
            for mt, mv, mte in ((10, None, None), (None, 3, None), (None, None, 4),
                                (7, 2, 5), (500, 500, 500), (1, 1, 1)):
                for seed in (0, 2):
                    add(caller, 90, n_test, task=task, val_fraction=0.25, seed=seed,
                        max_train=mt, max_val=mv, max_test=mte)
        add(caller, 40, task=task)  # the builder's defaults
        add(caller, 40, 9, task=task, val_fraction=0.99, seed=4)
    for task in ("classification", "segmentation"):  # prepare_splits' own options
        for n_test in (None, 11):
            for k in (2, 3, 5):
                for fold in range(k):
                    add("prepare", 29, n_test, task=task, val_fraction=0.0, seed=fold + 1,
                        folds=k, fold=fold)
            add("prepare", 29, n_test, task=task, val_fraction=0.0, seed=3, folds=3, fold=1,
                max_train=6, max_val=4, max_test=2)
            for seed in (0, 6):
                add("prepare", 50, n_test, n_val=12, task=task, val_fraction=0.0, seed=seed)
                add("prepare", 50, n_test, n_val=12, task=task, val_fraction=0.0, seed=seed,
                    max_train=9, max_val=5, max_test=3)
                add("prepare", 50, n_test, task=task, val_fraction=0.2, seed=seed,
                    max_train=9, stream=True)
    for n_test in (None, 11):  # parallel pairs with an official validation set
        for seed in (0, 6):
            for vf in (0.0, 0.1):
                add("parallel", 50, n_test, n_val=12, task="seq2seq", val_fraction=vf,
                    seed=seed)
            add("parallel", 50, n_test, n_val=12, task="seq2seq", val_fraction=0.1, seed=seed,
                max_train=9, max_val=5, max_test=3)
    return cases


def _labels(n: int) -> np.ndarray:
    """Three classes in proportions 3 : 1 : 1, interleaved."""
    return np.array([0, 0, 0, 1, 2])[np.arange(n) % 5]


def _prepare(case: dict[str, Any]) -> dict[str, list[int]]:
    task = case["task"]

    def source(n: int, offset: int) -> Source:
        x = (offset + np.arange(n, dtype=np.float64)).reshape(n, 1, 1)
        y = _labels(n) if task == "classification" else np.zeros((n, 1, 1), np.int64)
        return Source.from_arrays(x, y)

    test = None if case["n_test"] is None else source(case["n_test"], TEST_OFFSET)
    val = None if case["n_val"] is None else source(case["n_val"], VAL_OFFSET)
    ds = prepare_splits("golden", task, source(case["n"], 0), test, val=val, num_classes=3,
                        normalize=False, dtype="float64", **case["kw"])
    out = {}
    for key in ("train", "val", "test"):
        split = getattr(ds, key)
        x = split.inputs(np.arange(len(split))) if case["kw"].get("stream") else split.tensors[0]
        out[key] = [int(v) for v in x.reshape(len(split), 1)[:, 0]]
    return out


def _detection(case: dict[str, Any]) -> dict[str, list[int]]:
    def source(n: int, offset: int) -> DetectionSource:
        empty = ImageTargets(np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, bool))
        return DetectionSource([empty] * n, lambda idx: (offset + np.asarray(idx, np.float64))
                               .reshape(-1, 1, 1, 1))

    test = None if case["n_test"] is None else source(case["n_test"], TEST_OFFSET)
    ds = prepare_detection_splits("golden", source(case["n"], 0), test,
                                  class_names=("bg", "a"), normalize=False, dtype="float64",
                                  **case["kw"])
    return {key: [int(v) for v in getattr(ds, key).tensors[0][:, 0, 0, 0]]
            for key in ("train", "val", "test")}


def _sentence(v: int) -> str:
    """``v``'s digits as one-letter words after all ten letters (so every letter is in the
    training vocabulary and each word is one token)."""
    return " ".join([*DIGITS, *(DIGITS[int(c)] for c in str(v))])


def _parallel(case: dict[str, Any], cache_dir: str) -> dict[str, list[int]]:
    def pairs(n: int, offset: int) -> tuple[list[str], list[str]]:
        src = [_sentence(offset + i) for i in range(n)]
        return src, [s.upper() for s in src]

    val = None if case["n_val"] is None else pairs(case["n_val"], VAL_OFFSET)
    test = None if case["n_test"] is None else pairs(case["n_test"], TEST_OFFSET)
    ds = prepare_parallel_splits("golden", pairs(case["n"], 0), val, test, vocab_size=60,
                                 min_frequency=1, cache_dir=cache_dir, **case["kw"])
    tok = load_tokenizer(ds.meta["tokenizer"])
    out = {}
    for key in ("train", "val", "test"):
        text = decode_ids(tok, getattr(ds, key).padded()[0].tolist())
        out[key] = [int("".join(str(DIGITS.index(w)) for w in t.split()[len(DIGITS):]))
                    for t in text]
    return out


def observe(case: dict[str, Any], cache_dir: str) -> dict[str, Any]:
    """The positions each split of ``case`` holds, or the type of the exception it raises."""
    try:
        if case["caller"] == "prepare":
            return _prepare(case)
        if case["caller"] == "detection":
            return _detection(case)
        return _parallel(case, cache_dir)
    except (ValueError, TypeError) as err:
        return {"error": type(err).__name__}


def digest(result: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(result, sort_keys=True).encode()).hexdigest()[:20]


def _golden() -> dict[str, str]:
    return json.loads(GOLDEN.read_text())


def test_golden_covers_every_case():
    assert set(_golden()) == set(_cases())


@pytest.mark.parametrize("caller", ["prepare", "detection", "parallel"])
def test_splits_match_the_frozen_indices(caller, tmp_path):
    golden = _golden()
    cases = {k: c for k, c in _cases().items() if c["caller"] == caller}
    changed = [k for k, c in cases.items() if digest(observe(c, str(tmp_path))) != golden[k]]
    assert not changed, f"{len(changed)} of {len(cases)} splits changed, e.g. {changed[:3]}"


def test_observe_reads_positions_back(tmp_path):
    """The harness itself: positions are read back whole, disjoint and from the right source."""
    for caller, task in (("prepare", "classification"), ("detection", "detection"),
                         ("parallel", "seq2seq")):
        case = {"caller": caller, "n": 40, "n_val": None, "n_test": None, "task": task,
                "kw": {"val_fraction": 0.25, "seed": 1}}
        got = observe(case, str(tmp_path))
        assert sorted(got["train"] + got["val"] + got["test"]) == list(range(40))
        assert (len(got["test"]), len(got["val"])) == (8, 8)
        case["n_test"] = 6
        got = observe(case, str(tmp_path))
        assert got["test"] == [TEST_OFFSET + i for i in range(6)]
        assert sorted(got["train"] + got["val"]) == list(range(40))


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    with tempfile.TemporaryDirectory() as tmp:
        frozen = {k: digest(observe(c, tmp)) for k, c in _cases().items()}
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(frozen, indent=0, sort_keys=True) + "\n")
    print(f"wrote {len(frozen)} cases to {GOLDEN}")
