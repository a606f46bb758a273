"""Bundled and generated datasets (digits, MNIST-1D, synthetic shapes) and the load_dataset API."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from actlab.data import (
    SHAPE_CLASSES,
    DatasetError,
    dataset_options,
    list_datasets,
    load_dataset,
    make_shapes,
)
from actlab.data.cache import load_arrays, save_arrays
from actlab.data.mnist1d_data import mnist1d_arrays, mnist1d_cache_path
from actlab.data.synthetic import circle_mask, rectangle_mask, triangle_mask
from actlab.registry import DATASETS

NAMES = ["digits", "mnist1d", "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn",
         "tiny_imagenet", "synthetic_shapes"]


def test_every_dataset_is_registered() -> None:
    assert set(NAMES) <= set(list_datasets())
    for n in NAMES:
        assert n in DATASETS
    assert DATASETS.resolve("Fashion-MNIST") == "fashion_mnist"
    assert DATASETS.resolve("shapes") == "synthetic_shapes"


def test_unknown_dataset_and_option() -> None:
    with pytest.raises(KeyError, match="unknown dataset 'cifar11'"):
        load_dataset("cifar11")
    with pytest.raises(TypeError, match=r"does not accept option\(s\) \['num_sample'\]"):
        load_dataset("mnist1d", num_sample=200)
    assert "num_samples" in dataset_options("mnist1d") and "max_train" in dataset_options("svhn")


# ----------------------------------------------------------------------------------------------
# digits
# ----------------------------------------------------------------------------------------------
def test_digits_splits_and_scaling() -> None:
    from sklearn.datasets import load_digits

    a = load_dataset("digits", seed=0)
    b = load_dataset("digits", seed=1)
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10 and a.task == "classification"
    assert sum(a.sizes.values()) == 1797 and a.sizes["test"] == 359
    raw_a = load_dataset("digits", seed=0, normalize=False)
    raw_b = load_dataset("digits", seed=1, normalize=False)
    # the same test samples for every seed (their standardised values move with train stats)
    assert torch.equal(raw_a.test.tensors[0], raw_b.test.tensors[0])
    assert torch.equal(a.test.tensors[1], b.test.tensors[1])
    assert not torch.equal(a.val.tensors[1], b.val.tensors[1])
    # standardised with training statistics of pixel/16
    raw = load_digits()
    ref = torch.as_tensor(raw.images / 16.0)
    assert float(raw_a.train.tensors[0].max()) <= 1.0 and float(raw_a.train.tensors[0].min()) >= 0
    tr = raw_a.train.tensors[0].double()
    assert a.mean[0] == pytest.approx(tr.mean().item(), rel=1e-6)
    assert a.std[0] == pytest.approx(tr.std(unbiased=False).item(), rel=1e-6)
    # every returned image is one of the sklearn images with its own label
    lookup = {bytes(img.astype(np.float32).tobytes()): int(t)
              for img, t in zip(ref.numpy(), raw.target, strict=True)}
    for split in (raw_a.train, raw_a.val, raw_a.test):
        for x, y in zip(split.tensors[0][:50], split.tensors[1][:50], strict=True):
            assert lookup[bytes(x[0].numpy().tobytes())] == int(y)


def test_digits_max_train_and_float64() -> None:
    s = load_dataset("digits", max_train=100, dtype=torch.float64)
    assert s.sizes["train"] == 100 and s.train.tensors[0].dtype == torch.float64
    assert torch.bincount(s.train.tensors[1]).tolist() == [10] * 10


# ----------------------------------------------------------------------------------------------
# MNIST-1D
# ----------------------------------------------------------------------------------------------
def test_mnist1d_generated_cached_and_side_effect_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACTLAB_CACHE", str(tmp_path))
    random.seed(7)
    np.random.seed(7)  # noqa: NPY002 - checks that the legacy global state is left alone
    before_py, before_np = random.random(), np.random.random()  # noqa: NPY002
    random.seed(7)
    np.random.seed(7)  # noqa: NPY002

    s = load_dataset("mnist1d", num_samples=200)
    assert (random.random(), np.random.random()) == (before_py, before_np)  # noqa: NPY002
    assert s.input_shape == (1, 40) and s.num_classes == 10
    assert s.sizes == {"train": 144, "val": 16, "test": 40}  # official 80/20, then 10 % val

    path = mnist1d_cache_path(200, 42)
    assert path.parent == tmp_path and path.is_file()
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temporary file

    import mnist1d.data

    def boom(*a, **k):
        raise AssertionError("regenerated instead of reading the cache")

    monkeypatch.setattr(mnist1d.data, "make_dataset", boom)
    again = load_dataset("mnist1d", num_samples=200)
    assert torch.equal(again.test.tensors[0], s.test.tensors[0])
    assert torch.equal(again.train.tensors[1], s.train.tensors[1])


def test_mnist1d_matches_the_generator(tmp_path: Path) -> None:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = 200
    state = np.random.get_state()  # noqa: NPY002 - make_dataset reseeds the global RNG
    ref = make_dataset(args)
    np.random.set_state(state)  # noqa: NPY002
    got = mnist1d_arrays(200, cache_dir=tmp_path)
    np.testing.assert_allclose(got["x_test"], ref["x_test"], rtol=1e-6, atol=1e-6)
    assert np.array_equal(got["y"], ref["y"])
    s = load_dataset("mnist1d", num_samples=200, cache_dir=tmp_path, normalize=False)
    np.testing.assert_allclose(s.test.tensors[0][:, 0].numpy(), ref["x_test"], atol=1e-6)


def test_mnist1d_corrupt_cache_is_rebuilt(tmp_path: Path) -> None:
    path = mnist1d_cache_path(100, 42, tmp_path)
    path.write_bytes(b"PK\x03\x04 broken zip")
    out = mnist1d_arrays(100, cache_dir=tmp_path)
    assert out["x"].shape == (80, 40)
    assert load_arrays(path, ("x", "y", "x_test", "y_test")) is not None


def test_mnist1d_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="num_samples must be >= 100"):
        mnist1d_arrays(20, cache=False)
    with pytest.raises(TypeError, match="num_samples must be an int"):
        mnist1d_arrays(200.0, cache=False)  # type: ignore[arg-type]


def test_save_arrays_is_atomic_replace(tmp_path: Path) -> None:
    p = tmp_path / "sub" / "a.npz"
    save_arrays(p, a=np.arange(3))
    save_arrays(p, a=np.arange(5))
    assert load_arrays(p, ("a",))["a"].tolist() == [0, 1, 2, 3, 4]
    assert load_arrays(p, ("b",)) is None and load_arrays(tmp_path / "none.npz", ("a",)) is None
    assert sorted(x.name for x in p.parent.iterdir()) == ["a.npz"]


# ----------------------------------------------------------------------------------------------
# synthetic shapes
# ----------------------------------------------------------------------------------------------
def test_shape_masks_match_analytic_areas() -> None:
    n = 400
    assert circle_mask(n, 200.3, 190.7, 80.0).sum() == pytest.approx(math.pi * 80**2, rel=5e-3)
    rect = rectangle_mask(n, 200.0, 200.0, 60.0, 150.0, 0.6)
    assert rect.sum() == pytest.approx(60 * 150, rel=1e-2)
    v = np.array([[50.0, 60.0], [300.0, 120.0], [180.0, 350.0]])  # (y, x)
    ys, xs = v[:, 0], v[:, 1]
    shoelace = 0.5 * abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1)))
    tri = triangle_mask(n, v)
    assert tri.sum() == pytest.approx(shoelace, rel=1e-2)
    assert tri[180, 170] and not tri[10, 390]  # centroid inside, corner outside
    # an unrotated rectangle covers exactly the expected pixel block
    r = rectangle_mask(16, 8.0, 6.0, 4.0, 6.0, 0.0)
    assert np.array_equal(np.argwhere(r.any(1)).ravel(), np.arange(6, 10))
    assert np.array_equal(np.argwhere(r.any(0)).ravel(), np.arange(3, 9))


def test_make_shapes_is_seeded_and_prefix_stable() -> None:
    x, y = make_shapes(12, 32, seed=3)
    x2, y2 = make_shapes(6, 32, seed=3)
    assert x.shape == (12, 3, 32, 32) and y.shape == (12, 32, 32) and y.dtype == np.int64
    assert np.array_equal(x[:6], x2) and np.array_equal(y[:6], y2)
    assert not np.array_equal(make_shapes(6, 32, seed=4)[1], y2)
    assert set(np.unique(y)) <= set(range(len(SHAPE_CLASSES)))
    # every image has background and at least one shape
    assert all((m == 0).any() and (m > 0).any() for m in y)


def test_shapes_are_visible_in_the_image() -> None:
    x, y = make_shapes(40, 32, channels=1, noise=0.0, seed=0)
    for img, lab in zip(x[:, 0], y, strict=True):
        # without noise each painted region is flat and differs from the background ramp
        fg, bg = img[lab > 0], img[lab == 0]
        assert abs(np.median(fg) - np.median(bg)) > 0.05


def test_synthetic_shapes_dataset() -> None:
    a = load_dataset("synthetic_shapes", num_samples=60, size=32, seed=0)
    b = load_dataset("synthetic_shapes", num_samples=60, size=32, seed=1)
    assert a.task == "segmentation" and a.num_classes == 4 and a.input_shape == (3, 32, 32)
    assert a.class_names == list(SHAPE_CLASSES)
    assert a.sizes == {"train": 43, "val": 5, "test": 12}
    assert a.train.tensors[1].shape == (43, 32, 32)
    assert torch.equal(a.test.tensors[1], b.test.tensors[1])
    assert not torch.equal(a.val.tensors[1], b.val.tensors[1])
    with pytest.raises(ValueError, match="size must be an int >= 16"):
        load_dataset("synthetic_shapes", size=8)


def test_file_datasets_default_dir_from_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACTLAB_DATA", str(tmp_path))
    with pytest.raises(DatasetError) as err:
        load_dataset("cifar10")
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_1") in str(err.value)
