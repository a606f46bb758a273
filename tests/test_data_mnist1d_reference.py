"""MNIST-1D at the reference protocol: the training set is the reference 4,000 whole, the test
set the reference 1,000, and the validation split comes from a separate generation that shares
no sample with either (``val_samples``)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from actlab.data import load_dataset
from actlab.data.prepare import Source, prepare_splits


@pytest.fixture(scope="module")
def reference():
    """The reference split, built straight from the mnist1d package (its defaults, seed 42)."""
    from mnist1d.data import get_dataset_args, make_dataset

    state = random.getstate(), np.random.get_state()  # noqa: NPY002
    try:
        return make_dataset(get_dataset_args())
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])  # noqa: NPY002


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("mnist1d")


@pytest.fixture(scope="module")
def splits(cache):
    return load_dataset("mnist1d", val_fraction=0.0, val_samples=1000, normalize=False,
                        cache_dir=cache)


def _rows(ds) -> np.ndarray:
    return ds.tensors[0][:, 0].numpy().astype(np.float64)


def test_train_and_test_are_the_reference_splits(splits, reference):
    assert splits.sizes == {"train": 4000, "val": 1000, "test": 1000}
    np.testing.assert_array_equal(_rows(splits.train), np.float32(reference["x"]))
    np.testing.assert_array_equal(splits.train.tensors[1].numpy(), reference["y"])
    np.testing.assert_array_equal(_rows(splits.test), np.float32(reference["x_test"]))
    np.testing.assert_array_equal(splits.test.tensors[1].numpy(), reference["y_test"])
    assert splits.meta["val_source"] == "separate" and splits.meta["val_data_seed"] == 43


def test_validation_is_balanced_and_disjoint_from_train_and_test(splits):
    val = _rows(splits.val)
    assert np.bincount(splits.val.tensors[1].numpy(), minlength=10).tolist() == [100] * 10
    others = np.concatenate([_rows(splits.train), _rows(splits.test)])
    # no validation signal equals any train/test signal (nor is it a near copy)
    dist = torch.cdist(torch.from_numpy(val), torch.from_numpy(others))
    assert float(dist.min()) > 1e-3
    assert len(np.unique(val, axis=0)) == len(val)


def test_train_set_does_not_depend_on_the_split_seed(splits, cache):
    again = load_dataset("mnist1d", val_fraction=0.0, val_samples=1000, normalize=False, seed=3,
                         cache_dir=cache)
    for name in ("train", "val", "test"):
        a, b = getattr(splits, name).tensors, getattr(again, name).tensors
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), name


def test_standardised_with_training_statistics_only(splits, cache):
    std = load_dataset("mnist1d", val_fraction=0.0, val_samples=1000, cache_dir=cache)
    raw = _rows(splits.train)
    mean, sd = raw.mean(), raw.std()
    np.testing.assert_allclose(std.mean, [mean], rtol=1e-5)
    np.testing.assert_allclose(_rows(std.val), (_rows(splits.val) - mean) / sd, atol=1e-4)


@pytest.mark.parametrize("kwargs, match", [
    ({"val_fraction": 0.1, "val_samples": 1000}, "val_fraction must be 0"),
    ({"val_fraction": 0.0, "val_samples": 1000, "val_data_seed": 42}, "must differ"),
    ({"val_fraction": 0.0, "val_samples": 1005}, "multiple of 10"),
    ({"val_fraction": 0.0, "val_samples": -10}, "val_samples must be an int"),
])
def test_bad_options_give_one_line_errors(kwargs, match, cache):
    with pytest.raises(ValueError, match=match):
        load_dataset("mnist1d", num_samples=200, cache_dir=cache, **kwargs)


def test_prepare_splits_separate_val_source_in_memory_and_streamed():
    rng = np.random.default_rng(0)
    tr = Source.from_arrays(rng.normal(size=(50, 1, 4)), np.arange(50) % 5)
    va = Source.from_arrays(rng.normal(size=(20, 1, 4)) + 3.0, np.arange(20) % 5)
    te = Source.from_arrays(rng.normal(size=(10, 1, 4)), np.arange(10) % 5)
    mem = prepare_splits("t", "classification", tr, te, num_classes=5, val=va, val_fraction=0.0,
                         max_val=10)
    st = prepare_splits("t", "classification", tr, te, num_classes=5, val=va, val_fraction=0.0,
                        max_val=10, stream=True)
    assert len(mem.train) == 50 and len(mem.val) == 10
    assert np.bincount(mem.val.tensors[1].numpy()).tolist() == [2] * 5
    xs = torch.stack([st.val[i][0] for i in range(len(st.val))])
    torch.testing.assert_close(xs, mem.val.tensors[0])
    # the val inputs are the separate source's (offset +3), standardised with the train stats
    assert float(mem.val.tensors[0].mean()) > 2.0
    with pytest.raises(ValueError, match="folds unset"):
        prepare_splits("t", "classification", tr, te, num_classes=5, val=va, val_fraction=0.0,
                       folds=2, fold=0)
