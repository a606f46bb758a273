"""The shared split carve (:mod:`actlab.data.carve`): index sets, their invariants and the
one-line errors of every builder that uses it. That the builders' splits did not change is
``test_data_split_golden.py``."""

from __future__ import annotations

import numpy as np
import pytest

from actlab.data.carve import SPLIT_DEFAULTS, TEST_SEED, carve_indices
from actlab.data.detection_splits import DetectionSource, prepare_detection_splits
from actlab.data.parallel import prepare_parallel_splits
from actlab.data.prepare import Source, prepare_splits
from actlab.tasks.detection.targets import ImageTargets


def _check_sorted_int64(*arrays: np.ndarray) -> None:
    for a in arrays:
        assert a.dtype == np.int64 and np.all(np.diff(a) > 0)


def test_carved_splits_partition_the_training_source():
    cut = carve_indices("t", 100, {"val_fraction": 0.25, "seed": 3})
    _check_sorted_int64(cut.train, cut.val, cut.test)
    assert (len(cut.test), len(cut.val), len(cut.train)) == (20, 20, 60)  # 0.2*100, 0.25*80
    assert np.array_equal(np.sort(np.concatenate([cut.train, cut.val, cut.test])),
                          np.arange(100))
    assert cut.options == {**SPLIT_DEFAULTS, "val_fraction": 0.25, "seed": 3}


def test_test_split_ignores_the_seed_and_val_split_follows_it():
    a = carve_indices("t", 50, {"seed": 0})
    b = carve_indices("t", 50, {"seed": 1})
    assert np.array_equal(a.test, b.test) and not np.array_equal(a.val, b.val)
    assert np.array_equal(a.val, carve_indices("t", 50, {"seed": 0}).val)
    assert TEST_SEED == 1_234_567  # the test split of every stored run depends on it


def test_official_sources_are_used_whole_and_subset():
    cut = carve_indices("t", 30, {"val_fraction": 0.5}, n_val=7, n_test=9)
    assert np.array_equal(cut.train, np.arange(30))  # nothing carved, val_fraction unused
    assert np.array_equal(cut.val, np.arange(7)) and np.array_equal(cut.test, np.arange(9))
    small = carve_indices("t", 30, {"max_train": 4, "max_val": 2, "max_test": 3},
                          n_val=7, n_test=9)
    _check_sorted_int64(small.train, small.val, small.test)
    assert (len(small.train), len(small.val), len(small.test)) == (4, 2, 3)
    assert set(small.val) <= set(range(7)) and set(small.test) <= set(range(9))


def test_labels_stratify_every_carve_and_subset():
    labels = np.repeat([0, 1, 2, 3], [40, 20, 20, 20])
    val_labels = np.repeat([0, 1], [30, 10])
    test_labels = np.repeat([0, 1], [10, 30])
    cut = carve_indices("t", 100, {"val_fraction": 0.25, "max_train": 30},
                        labels=labels)
    assert np.bincount(labels[cut.test]).tolist() == [8, 4, 4, 4]
    assert np.bincount(labels[cut.val]).tolist() == [8, 4, 4, 4]
    assert np.bincount(labels[cut.train]).tolist() == [12, 6, 6, 6]
    off = carve_indices("t", 100, {"max_val": 8, "max_test": 8}, n_val=40, n_test=40,
                        labels=labels, val_labels=val_labels, test_labels=test_labels)
    assert np.bincount(val_labels[off.val]).tolist() == [6, 2]
    assert np.bincount(test_labels[off.test]).tolist() == [2, 6]


def test_folds_hold_out_one_fold():
    cuts = [carve_indices("t", 40, {"val_fraction": 0.0}, n_test=5, folds=4, fold=f)
            for f in range(4)]
    assert sorted(np.concatenate([c.val for c in cuts]).tolist()) == list(range(40))
    for c in cuts:
        assert len(c.val) == 10 and np.array_equal(np.union1d(c.train, c.val), np.arange(40))


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"split": {"val_fractoin": 0.1}}, TypeError,
     r"ds: unexpected keyword argument\(s\) \['val_fractoin'\]; the split options are"),
    ({"split": {"seed": 1.0}}, TypeError, "seed must be an int, got 1.0"),
    ({"split": {"seed": -1}}, ValueError, "seed must be >= 0, got -1"),
    ({"split": {"max_val": 0}}, ValueError, "max_val must be a positive int or None, got 0"),
    ({"split": {"val_fraction": 1.0}}, ValueError, r"val_fraction must be in \[0, 1\)"),
    ({"split": {"test_fraction": 0.0}}, ValueError,
     "ds has no official test split: test_fraction must be > 0"),
    ({"split": {"val_fraction": 0.5}, "n_test": 1, "n_train": 1}, ValueError,
     "ds: no training samples left"),
    ({"split": {}, "n_val": 3, "folds": 2, "fold": 0}, ValueError, "leave folds unset"),
    ({"split": {"val_fraction": 0.0}, "fold": 1}, ValueError, "ds: fold=1 given without folds"),
    ({"split": {}, "folds": 3, "fold": 0}, ValueError, "val_fraction must be 0, got 0.1"),
    ({"split": {"val_fraction": 0.0}, "folds": 3}, ValueError, r"needs fold .*0\.\.2\)"),
])
def test_bad_options_give_one_line_errors(kwargs, error, match):
    kwargs = {"n_train": 20, **kwargs}
    with pytest.raises(error, match=match):
        carve_indices("ds", kwargs.pop("n_train"), kwargs.pop("split"), **kwargs)


def test_every_builder_names_the_dataset_for_an_unknown_split_option(tmp_path):
    empty = ImageTargets(np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, bool))
    builders = [
        lambda **kw: prepare_splits("cls", "classification",
                                    Source.from_arrays(np.zeros((9, 1, 2)), np.arange(9) % 3),
                                    None, num_classes=3, **kw),
        lambda **kw: prepare_detection_splits(
            "det", DetectionSource([empty] * 9, lambda i: np.zeros((len(i), 3, 4, 4))), None,
            class_names=("bg", "a"), **kw),
        lambda **kw: prepare_parallel_splits("par", (["a b"] * 9, ["A B"] * 9), None, None,
                                             vocab_size=20, cache_dir=tmp_path, **kw),
    ]
    for build, name in zip(builders, ("cls", "det", "par"), strict=True):
        with pytest.raises(TypeError, match=rf"{name}: unexpected keyword argument\(s\) "
                                            r"\['max_trian'\]"):
            build(max_trian=3)
        with pytest.raises(TypeError, match="seed must be an int"):
            build(seed="0")
        with pytest.raises(ValueError, match="seed must be >= 0"):
            build(seed=-2)
