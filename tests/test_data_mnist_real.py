"""The IDX reader on the real MNIST files (the project's copy at ``../shared/data/mnist``, or
``$ACTLAB_MNIST_DIR``): counts, label histograms and the SHA-256 of the uncompressed files as
documented in shared/data/README.md. Skipped where the files are absent (a user's checkout)."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from actlab.data import load_dataset
from actlab.data.idx import load_idx_dataset, read_idx

_ROOT = Path(__file__).resolve().parents[1]


def real_mnist_dir() -> Path | None:
    """``$ACTLAB_MNIST_DIR``, else ``shared/data/mnist`` beside the checkout (or beside the
    folder of worktrees); ``None`` when none of them is a folder."""
    env = os.environ.get("ACTLAB_MNIST_DIR")
    candidates = ([Path(env)] if env else []) + [
        _ROOT.parent / "shared" / "data" / "mnist",
        _ROOT.parent.parent / "shared" / "data" / "mnist"]
    return next((p for p in candidates if p.is_dir()), None)


MNIST_DIR = real_mnist_dir()
needs_mnist = pytest.mark.skipif(
    MNIST_DIR is None, reason="needs the official MNIST IDX files at ../shared/data/mnist or "
    "$ACTLAB_MNIST_DIR (the project's copy; a user checkout has none)")

#: SHA-256 of the uncompressed files (shared/data/README.md)
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@needs_mnist
@pytest.mark.parametrize("name", sorted(SHA256))
def test_uncompressed_files_have_the_documented_sha256(name):
    raw = gzip.decompress((MNIST_DIR / f"{name}.gz").read_bytes())
    assert hashlib.sha256(raw).hexdigest() == SHA256[name]


@needs_mnist
def test_idx_reader_gives_the_documented_counts_and_histograms():
    tx, ty, sx, sy = load_idx_dataset("mnist", MNIST_DIR)
    assert tx.shape == (60000, 1, 28, 28) and sx.shape == (10000, 1, 28, 28)
    assert tx.dtype == sx.dtype == np.uint8
    assert np.bincount(ty, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(sy, minlength=10).tolist() == TEST_COUNTS
    # an independent parse of the header and payload of one file (big-endian IDX)
    raw = gzip.decompress((MNIST_DIR / "t10k-images-idx3-ubyte.gz").read_bytes())
    assert raw[:4] == bytes([0, 0, 0x08, 3])
    assert [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(3)] == [10000, 28, 28]
    np.testing.assert_array_equal(sx[:, 0].reshape(-1), np.frombuffer(raw[16:], np.uint8))
    np.testing.assert_array_equal(read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz", "mnist"), sy)


@needs_mnist
def test_loaded_splits_carve_validation_from_train_only():
    splits = load_dataset("mnist", data_dir=MNIST_DIR, val_fraction=0.1, normalize=False)
    assert splits.sizes == {"train": 54000, "val": 6000, "test": 10000}
    x = splits.train.tensors[0]
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0  # scaled by 1/255
    val_counts = np.bincount(splits.val.tensors[1].numpy(), minlength=10)
    np.testing.assert_allclose(val_counts, np.array(TRAIN_COUNTS) * 0.1, atol=1)
