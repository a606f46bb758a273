"""Index splits, train-statistics standardisation and the split pipeline (actlab.data.prepare)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from actlab.data import DatasetSplits, Source, channel_stats, prepare_splits, split_indices
from actlab.data.split import fraction_to_size, stratified_split


def _labels(counts: list[int]) -> np.ndarray:
    y = np.concatenate([np.full(c, k) for k, c in enumerate(counts)])
    return np.random.default_rng(0).permutation(y)


def test_split_is_a_disjoint_cover_of_the_requested_size() -> None:
    y = _labels([50, 30, 20])
    rest, picked = split_indices(y, 17, seed=3)
    assert len(picked) == 17 and len(rest) == 83
    assert np.intersect1d(rest, picked).size == 0
    assert np.array_equal(np.sort(np.concatenate([rest, picked])), np.arange(100))
    assert np.all(np.diff(picked) > 0) and np.all(np.diff(rest) > 0)


def test_stratified_split_keeps_class_proportions() -> None:
    y = _labels([500, 300, 200])
    _, held = stratified_split(y, 0.1, seed=0)
    assert np.bincount(y[held]).tolist() == [50, 30, 20]
    # largest remainders: 7 picks of (5, 3, 2)/10 -> quotas 3.5, 2.1, 1.4 -> 3+1, 2, 1
    _, held = split_indices(_labels([5, 3, 2]), 7, seed=0)
    assert np.bincount(_labels([5, 3, 2])[held], minlength=3).tolist() == [4, 2, 1]


def test_split_depends_on_seed_and_only_on_seed() -> None:
    y = _labels([40, 40, 40])
    a = split_indices(y, 12, seed=1)[1]
    assert np.array_equal(a, split_indices(y, 12, seed=1)[1])
    assert not np.array_equal(a, split_indices(y, 12, seed=2)[1])


def test_unstratified_split_needs_n() -> None:
    rest, picked = split_indices(None, 4, seed=0, n=10)
    assert len(picked) == 4 and len(rest) == 6
    with pytest.raises(ValueError, match="labels or n"):
        split_indices(None, 4, seed=0)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_fraction_out_of_range_is_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match="val_fraction must be in"):
        fraction_to_size(bad, 10, what="val_fraction")


def test_fraction_type_checked() -> None:
    with pytest.raises(TypeError, match="number"):
        fraction_to_size("0.1", 10)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_channel_stats_match_float64_reference(dtype: torch.dtype, rtol: float) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 3, 5, 4, generator=g, dtype=torch.float64)
    x = x * torch.tensor([1.0, 5.0, 0.1], dtype=torch.float64).view(1, 3, 1, 1)
    x = (x + torch.tensor([100.0, -3.0, 0.5], dtype=torch.float64).view(1, 3, 1, 1)).to(dtype)
    mean, std = channel_stats(x, chunk=64)
    ref = x.double().transpose(0, 1).reshape(3, -1)  # naive float64 formula on the same values
    np.testing.assert_allclose(mean, ref.mean(1).numpy(), rtol=rtol)
    np.testing.assert_allclose(std, ref.std(1, unbiased=False).numpy(), rtol=rtol)


def _toy(n: int = 200, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    x = rng.integers(0, 256, size=(n, 2, 3, 3)).astype(np.uint8)
    return x, y


def test_pipeline_carves_fixed_test_and_seeded_val_from_train() -> None:
    x, y = _toy()
    a = prepare_splits("toy", "classification", Source.from_arrays(x, y), None,
                       num_classes=4, seed=0, normalize=False)
    b = prepare_splits("toy", "classification", Source.from_arrays(x, y), None,
                       num_classes=4, seed=1, normalize=False)
    assert isinstance(a, DatasetSplits)
    assert a.sizes == {"train": 144, "val": 16, "test": 40}
    assert torch.equal(a.test.tensors[0], b.test.tensors[0])  # test split independent of seed
    assert not torch.equal(a.val.tensors[0], b.val.tensors[0])  # val split depends on seed
    # splits are disjoint and together are the whole data set (rows are unique here)
    rows = [tuple(r) for s in (a.train, a.val, a.test) for r in s.tensors[0].flatten(1).tolist()]
    assert len(set(rows)) == 200
    # stratified: every class keeps its 25 % share in val and test
    assert torch.bincount(a.val.tensors[1]).tolist() == [4, 4, 4, 4]
    assert torch.bincount(a.test.tensors[1]).tolist() == [10, 10, 10, 10]


def test_pipeline_uses_official_test_and_never_carves_val_from_it() -> None:
    x, y = _toy(100)
    tx, ty = _toy(40, seed=1)
    s = prepare_splits("toy", "classification", Source.from_arrays(x, y),
                       Source.from_arrays(tx, ty), num_classes=4, val_fraction=0.2, seed=5,
                       scale=1 / 255, normalize=False)
    assert s.sizes == {"train": 80, "val": 20, "test": 40}
    np.testing.assert_allclose(s.test.tensors[0].numpy() * 255, tx, atol=1e-4)
    train_rows = {tuple(r) for r in (x.reshape(100, -1)).tolist()}
    val_rows = np.rint(s.val.tensors[0].flatten(1).numpy() * 255).astype(int).tolist()
    assert all(tuple(r) in train_rows for r in val_rows)


def test_standardisation_uses_training_statistics_only() -> None:
    x, y = _toy(400)
    s = prepare_splits("toy", "classification", Source.from_arrays(x, y), None,
                       num_classes=4, seed=0, scale=0.5)
    raw = prepare_splits("toy", "classification", Source.from_arrays(x, y), None,
                         num_classes=4, seed=0, scale=0.5, normalize=False)
    xt = raw.train.tensors[0].double()
    mean = xt.mean(dim=(0, 2, 3))
    std = xt.std(dim=(0, 2, 3), unbiased=False)
    np.testing.assert_allclose(s.mean, mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(s.std, std.numpy(), rtol=1e-6)
    for split in ("train", "val", "test"):
        expect = (getattr(raw, split).tensors[0].double() - mean.view(1, -1, 1, 1)) / std.view(
            1, -1, 1, 1
        )
        torch.testing.assert_close(getattr(s, split).tensors[0].double(), expect,
                                   rtol=1e-5, atol=1e-5)
    tr = s.train.tensors[0].double()
    torch.testing.assert_close(tr.mean(dim=(0, 2, 3)), torch.zeros(2, dtype=torch.float64),
                               atol=1e-6, rtol=0)


def test_max_subsets_are_stratified_and_test_stays_fixed() -> None:
    x, y = _toy(400)
    a = prepare_splits("toy", "classification", Source.from_arrays(x, y), None, num_classes=4,
                       seed=0, max_train=40, max_val=8, max_test=12)
    b = prepare_splits("toy", "classification", Source.from_arrays(x, y), None, num_classes=4,
                       seed=9, max_train=40, max_val=8, max_test=12)
    assert a.sizes == {"train": 40, "val": 8, "test": 12}
    assert torch.bincount(a.train.tensors[1]).tolist() == [10, 10, 10, 10]
    assert torch.equal(a.test.tensors[1], b.test.tensors[1])
    with pytest.raises(ValueError, match="max_train must be a positive int"):
        prepare_splits("toy", "classification", Source.from_arrays(x, y), None,
                       num_classes=4, max_train=0)


def test_segmentation_split_is_plain_random_and_keeps_maps() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 1, 4, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=(50, 4, 4))
    s = prepare_splits("seg", "segmentation", Source.from_arrays(x, y), None, num_classes=3,
                       seed=0, dtype="float64")
    assert s.train.tensors[0].dtype == torch.float64
    assert s.train.tensors[1].shape[1:] == (4, 4) and s.train.tensors[1].dtype == torch.int64
    assert s.sizes == {"train": 36, "val": 4, "test": 10}


def test_bad_dtype_and_seed_are_rejected() -> None:
    x, y = _toy(40)
    src = Source.from_arrays(x, y)
    with pytest.raises(TypeError, match="floating torch.dtype"):
        prepare_splits("toy", "classification", src, None, num_classes=4, dtype=torch.int32)
    with pytest.raises(TypeError, match="seed must be an int"):
        prepare_splits("toy", "classification", src, None, num_classes=4, seed=0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed must be >= 0"):
        prepare_splits("toy", "classification", src, None, num_classes=4, seed=-1)


def test_datasetsplits_validates_metadata() -> None:
    x, y = _toy(40)
    s = prepare_splits("toy", "classification", Source.from_arrays(x, y), None, num_classes=4)
    assert s.input_shape == (2, 3, 3) and s.in_channels == 2
    assert "toy: classification" in s.summary()
    with pytest.raises(ValueError, match="task must be"):
        DatasetSplits("t", "regression", s.train, s.val, s.test, 4, 2, (2, 3, 3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="class names"):
        DatasetSplits("t", "classification", s.train, s.val, s.test, 4, 2, (2, 3, 3), ["a"])
