"""Readers of the official on-disk formats, on tiny files written here in each exact format."""

from __future__ import annotations

import gzip
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from actlab.data import DatasetError, load_dataset
from actlab.data.cifar import read_cifar_pickle
from actlab.data.idx import read_idx

RNG = np.random.default_rng(1234)


def _one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# ----------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST (IDX)
# ----------------------------------------------------------------------------------------------
def _write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload = header + arr.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def _mnist_dir(root: Path, gz: bool, n_train: int = 30, n_test: int = 10) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    d = {
        "train_x": RNG.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train_y": np.arange(n_train) % 10,
        "test_x": RNG.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "test_y": (np.arange(n_test) * 3) % 10,
    }
    _write_idx(root / "train-images-idx3-ubyte", d["train_x"], gz)
    _write_idx(root / "train-labels-idx1-ubyte", d["train_y"], gz)
    _write_idx(root / "t10k-images-idx3-ubyte", d["test_x"], gz)
    _write_idx(root / "t10k-labels-idx1-ubyte", d["test_y"], gz)
    return d


def _rows(x: torch.Tensor) -> set[bytes]:
    return {bytes(r) for r in np.rint(x.flatten(1).numpy() * 255).astype(np.uint8)}


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_datasets_round_trip(tmp_path: Path, gz: bool, name: str) -> None:
    d = _mnist_dir(tmp_path, gz)
    s = load_dataset(name, data_dir=tmp_path, normalize=False)
    assert s.input_shape == (1, 28, 28) and s.num_classes == 10 and len(s.class_names) == 10
    assert s.sizes == {"train": 27, "val": 3, "test": 10}
    np.testing.assert_allclose(s.test.tensors[0][:, 0].numpy() * 255, d["test_x"], atol=1e-3)
    assert s.test.tensors[1].tolist() == d["test_y"].tolist()
    # train + val are exactly the training images, each with its own label
    label_of = {bytes(x.ravel()): int(y) for x, y in zip(d["train_x"], d["train_y"], strict=True)}
    for split in (s.train, s.val):
        rows = np.rint(split.tensors[0].flatten(1).numpy() * 255).astype(np.uint8)
        assert [label_of[bytes(r)] for r in rows] == split.tensors[1].tolist()
    assert _rows(s.train.tensors[0]) | _rows(s.val.tensors[0]) == set(label_of)


def test_idx_torchvision_layout_and_standardisation(tmp_path: Path) -> None:
    _mnist_dir(tmp_path / "MNIST" / "raw", gz=True)
    s = load_dataset("mnist", data_dir=tmp_path)
    x = s.train.tensors[0].double()
    assert abs(x.mean().item()) < 1e-6 and abs(x.std(unbiased=False).item() - 1) < 1e-5


def test_read_idx_big_endian_int32(tmp_path: Path) -> None:
    arr = np.array([[1, -2, 70000], [3, 4, -5]], dtype=">i4")
    p = tmp_path / "ints.idx"
    p.write_bytes(bytes([0, 0, 0x0C, 2]) + struct.pack(">2I", 2, 3) + arr.tobytes())
    out = read_idx(p)
    assert out.tolist() == [[1, -2, 70000], [3, 4, -5]] and out.dtype.isnative


def test_idx_missing_file(tmp_path: Path) -> None:
    _mnist_dir(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist", data_dir=tmp_path)
    assert "t10k-labels-idx1-ubyte" in _one_line(err) and "missing file" in str(err.value)


def test_idx_empty_dir_names_expected_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte") as err:
        load_dataset("fashion_mnist", data_dir=tmp_path)
    _one_line(err)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda b: b[:-7],  # truncated data
        lambda b: b"\x12\x34" + b[2:],  # bad magic
        lambda b: b[:6],  # truncated header
    ],
)
def test_idx_corrupt_file(tmp_path: Path, corrupt) -> None:
    _mnist_dir(tmp_path, gz=False)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(corrupt(p.read_bytes()))
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist", data_dir=tmp_path)
    assert str(p) in _one_line(err)


def test_idx_corrupt_gzip(tmp_path: Path) -> None:
    _mnist_dir(tmp_path, gz=True)
    p = tmp_path / "train-labels-idx1-ubyte.gz"
    raw = p.read_bytes()
    p.write_bytes(raw[:12] + b"\x00" * 20 + raw[32:])
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist", data_dir=tmp_path)
    assert str(p) in _one_line(err)


def test_idx_label_count_mismatch(tmp_path: Path) -> None:
    _mnist_dir(tmp_path, gz=False)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(29, np.uint8), gz=False)
    with pytest.raises(DatasetError, match="30 images but 29 labels"):
        load_dataset("mnist", data_dir=tmp_path)


def test_missing_data_dir(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a directory") as err:
        load_dataset("mnist", data_dir=tmp_path / "nope")
    assert str(tmp_path / "nope") in _one_line(err)


# ----------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100
# ----------------------------------------------------------------------------------------------
def _pickle(path: Path, obj: object) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the official files are protocol-2 pickles


def _cifar10_dir(root: Path, per_batch: int = 4) -> dict:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    out = {"train": [], "train_y": []}
    for i in range(1, 6):
        data = RNG.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in RNG.integers(0, 10, size=per_batch)]
        _pickle(folder / f"data_batch_{i}", {b"batch_label": b"b", b"data": data,
                                             b"labels": labels})
        out["train"].append(data)
        out["train_y"] += labels
    test = RNG.integers(0, 256, size=(5, 3072), dtype=np.uint8)
    _pickle(folder / "test_batch", {b"data": test, b"labels": [0, 1, 2, 3, 9]})
    names = [f"c{i}".encode() for i in range(10)]
    _pickle(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    out["train"] = np.concatenate(out["train"])
    out["test"] = test
    return out


def test_cifar10_layout_and_labels(tmp_path: Path) -> None:
    d = _cifar10_dir(tmp_path)
    s = load_dataset("cifar10", data_dir=tmp_path, val_fraction=0.0, normalize=False)
    assert s.input_shape == (3, 32, 32) and s.class_names == [f"c{i}" for i in range(10)]
    x = np.rint(s.test.tensors[0].numpy() * 255).astype(np.uint8)
    # row layout of the official files: data[i, c*1024 + r*32 + col] is channel c, pixel (r, col)
    for c, r, col in [(0, 0, 0), (1, 5, 7), (2, 31, 30), (0, 17, 3)]:
        assert np.array_equal(x[:, c, r, col], d["test"][:, c * 1024 + r * 32 + col])
    assert s.test.tensors[1].tolist() == [0, 1, 2, 3, 9]
    assert s.sizes["train"] == 20
    got = {bytes(r) for r in np.rint(s.train.tensors[0].flatten(1).numpy() * 255).astype(np.uint8)}
    assert got == {bytes(r) for r in d["train"]}


def test_cifar10_data_dir_may_be_the_batches_folder(tmp_path: Path) -> None:
    _cifar10_dir(tmp_path)
    s = load_dataset("cifar10", data_dir=tmp_path / "cifar-10-batches-py", val_fraction=0.0)
    assert s.sizes == {"train": 20, "val": 0, "test": 5}


def test_cifar10_missing_batch(tmp_path: Path) -> None:
    _cifar10_dir(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetError) as err:
        load_dataset("cifar10", data_dir=tmp_path)
    assert "data_batch_3" in _one_line(err)


def test_cifar_corrupt_and_malicious_pickles(tmp_path: Path) -> None:
    _cifar10_dir(tmp_path)
    p = tmp_path / "cifar-10-batches-py" / "test_batch"
    p.write_bytes(b"not a pickle at all")
    with pytest.raises(DatasetError) as err:
        load_dataset("cifar10", data_dir=tmp_path)
    assert str(p) in _one_line(err)
    # a pickle that would call os.system must be refused, not executed
    evil = b"cos\nsystem\n(S'echo pwned'\ntR."
    p.write_bytes(evil)
    with pytest.raises(DatasetError, match="refusing to load global os.system"):
        read_cifar_pickle(p)


def test_cifar_wrong_content(tmp_path: Path) -> None:
    _cifar10_dir(tmp_path)
    p = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    _pickle(p, {b"data": np.zeros((4, 100), np.uint8), b"labels": [0, 1, 2, 3]})
    with pytest.raises(DatasetError, match=r"expected uint8 \(N, 3072\)"):
        load_dataset("cifar10", data_dir=tmp_path)
    _pickle(p, {b"data": np.zeros((4, 3072), np.uint8)})
    with pytest.raises(DatasetError, match="lacks key b'labels'"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_cifar100_fine_and_coarse(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data = RNG.integers(0, 256, size=(30, 3072), dtype=np.uint8)
    fine = [int(v) for v in np.arange(30) * 3 % 100]
    coarse = [v % 20 for v in fine]
    _pickle(folder / "train", {b"data": data, b"fine_labels": fine, b"coarse_labels": coarse})
    _pickle(folder / "test", {b"data": data[:6], b"fine_labels": fine[:6],
                              b"coarse_labels": coarse[:6]})
    _pickle(folder / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                              b"coarse_label_names": [f"k{i}".encode() for i in range(20)]})
    s = load_dataset("cifar100", data_dir=tmp_path, val_fraction=0.0)
    assert s.num_classes == 100 and s.class_names[99] == "f99"
    assert s.test.tensors[1].tolist() == fine[:6]
    c = load_dataset("cifar100", data_dir=tmp_path, val_fraction=0.0, label_type="coarse")
    assert c.num_classes == 20 and c.test.tensors[1].tolist() == coarse[:6]
    assert c.class_names[0] == "k0"
    with pytest.raises(ValueError, match="label_type"):
        load_dataset("cifar100", data_dir=tmp_path, label_type="medium")


# ----------------------------------------------------------------------------------------------
# SVHN
# ----------------------------------------------------------------------------------------------
def _svhn_dir(root: Path, n: int = 12) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split in ("train", "test"):
        x = RNG.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # 1..10, 10 = digit 0
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})
        out[split] = (x, y)
    return out


def test_svhn_layout_and_label_ten_is_zero(tmp_path: Path) -> None:
    d = _svhn_dir(tmp_path)
    s = load_dataset("svhn", data_dir=tmp_path, normalize=False)
    x_raw, y_raw = d["test"]
    x = np.rint(s.test.tensors[0].numpy() * 255).astype(np.uint8)
    for n, c, r, col in [(0, 0, 0, 0), (3, 2, 10, 20), (11, 1, 31, 5)]:
        assert x[n, c, r, col] == x_raw[r, col, c, n]
    labels = s.test.tensors[1].tolist()
    assert labels == [v % 10 for v in y_raw.ravel().tolist()]
    assert 0 in labels and max(labels) == 9
    assert s.sizes["train"] + s.sizes["val"] == 12


def test_svhn_corrupt_and_missing(tmp_path: Path) -> None:
    _svhn_dir(tmp_path)
    p = tmp_path / "test_32x32.mat"
    p.write_bytes(b"MATLAB 5.0 garbage" * 3)
    with pytest.raises(DatasetError) as err:
        load_dataset("svhn", data_dir=tmp_path)
    assert str(p) in _one_line(err)
    p.unlink()
    with pytest.raises(DatasetError, match="test_32x32.mat"):
        load_dataset("svhn", data_dir=tmp_path)
    scipy.io.savemat(p, {"X": np.zeros((32, 32, 3, 2), np.uint8)})
    with pytest.raises(DatasetError, match="lacks variable"):
        load_dataset("svhn", data_dir=tmp_path)


# ----------------------------------------------------------------------------------------------
# Tiny ImageNet
# ----------------------------------------------------------------------------------------------
COLOURS = {"n01": (200, 30, 30), "n02": (30, 200, 30), "n03": (30, 30, 200)}


def _jpeg(path: Path, colour: tuple[int, int, int], mode: str = "RGB") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", (64, 64), colour)
    if mode != "RGB":
        im = im.convert(mode)
    im.save(path, format="JPEG", quality=95)


def _tiny_dir(root: Path) -> Path:
    base = root / "tiny-imagenet-200"
    base.mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(COLOURS) + "\n")
    (base / "words.txt").write_text("n01\tred thing, crimson\nn02\tgreen thing\nn03\tblue\n")
    for wnid, colour in COLOURS.items():
        for i in range(4):
            _jpeg(base / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", colour)
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    lines = []
    for i, wnid in enumerate(["n02", "n03", "n01", "n02"]):
        _jpeg(base / "val" / "images" / f"val_{i}.JPEG", COLOURS[wnid])
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return base


def _mean_colour(x: torch.Tensor) -> np.ndarray:
    return (x.mean(dim=(2, 3)) * 255).numpy()


def test_tiny_imagenet_reads_layout(tmp_path: Path) -> None:
    _tiny_dir(tmp_path)
    s = load_dataset("tiny_imagenet", data_dir=tmp_path, val_fraction=0.25, normalize=False)
    assert s.num_classes == 3 and s.input_shape == (3, 64, 64)
    assert s.class_names == ["red thing", "green thing", "blue"]
    assert s.sizes == {"train": 9, "val": 3, "test": 4}
    assert s.test.tensors[1].tolist() == [1, 2, 0, 1]
    wnids = list(COLOURS)
    for split in (s.train, s.val, s.test):
        got = _mean_colour(split.tensors[0])
        want = np.array([COLOURS[wnids[k]] for k in split.tensors[1].tolist()], dtype=float)
        np.testing.assert_allclose(got, want, atol=4)  # JPEG of a flat colour is near-lossless


def test_tiny_imagenet_greyscale_is_rgb(tmp_path: Path) -> None:
    base = _tiny_dir(tmp_path)
    _jpeg(base / "train" / "n01" / "images" / "n01_0.JPEG", (128, 128, 128), mode="L")
    s = load_dataset("tiny_imagenet", data_dir=base, val_fraction=0.0, normalize=False)
    grey = [i for i, y in enumerate(s.train.tensors[1].tolist()) if y == 0]
    means = _mean_colour(s.train.tensors[0][grey])
    assert s.train.tensors[0].shape[1] == 3
    assert any(np.allclose(m, 128, atol=3) for m in means)


def test_tiny_imagenet_decodes_only_the_kept_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import actlab.data.tiny_imagenet as tiny

    _tiny_dir(tmp_path)
    decoded: list[Path] = []
    real = tiny._decode

    def counting(path: Path, size: int) -> np.ndarray:
        decoded.append(path)
        return real(path, size)

    monkeypatch.setattr(tiny, "_decode", counting)
    s = load_dataset("tiny_imagenet", data_dir=tmp_path, max_train=3, val_fraction=0.25)
    assert s.sizes == {"train": 3, "val": 3, "test": 4}
    assert sorted(s.train.tensors[1].tolist()) == [0, 1, 2]  # stratified subset
    assert len(decoded) == 10 and len(set(decoded)) == 10


def test_tiny_imagenet_corrupt_image_and_bad_annotations(tmp_path: Path) -> None:
    base = _tiny_dir(tmp_path)
    bad = base / "val" / "images" / "val_2.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(DatasetError) as err:
        load_dataset("tiny_imagenet", data_dir=tmp_path)
    assert str(bad) in _one_line(err)
    (base / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99\t0\t0\t1\t1\n")
    with pytest.raises(DatasetError, match="line 1"):
        load_dataset("tiny_imagenet", data_dir=tmp_path)


def test_tiny_imagenet_missing_pieces(tmp_path: Path) -> None:
    base = _tiny_dir(tmp_path)
    shutil.rmtree(base / "train" / "n02")
    with pytest.raises(DatasetError, match="n02") as err:
        load_dataset("tiny_imagenet", data_dir=tmp_path)
    _one_line(err)
    with pytest.raises(DatasetError, match="wnids.txt"):
        load_dataset("tiny_imagenet", data_dir=base / "train")


def test_tiny_imagenet_wrong_image_size(tmp_path: Path) -> None:
    from PIL import Image

    base = _tiny_dir(tmp_path)
    p = base / "val" / "images" / "val_1.JPEG"
    Image.new("RGB", (32, 32), (1, 2, 3)).save(p, format="JPEG")
    with pytest.raises(DatasetError, match="32x32, expected 64x64"):
        load_dataset("tiny_imagenet", data_dir=tmp_path)
