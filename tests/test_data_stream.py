"""Streaming splits and the DataLoader path give exactly the in-memory numbers for one seed."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from actlab.cli import main
from actlab.data import DatasetSplits, load_dataset
from actlab.data.prepare import Source, prepare_splits
from actlab.data.stream import SourceDataset
from actlab.models import create_model
from actlab.sweep.store import ResultStore
from actlab.train import TrainConfig, train_model

CFG = {"epochs": 2, "batch_size": 40, "lr": 0.05, "momentum": 0.9, "device": "cpu",
       "eval_batch_size": 64, "seed": 5, "drop_last": False}


def _all_inputs(ds) -> torch.Tensor:
    if isinstance(ds, TensorDataset):
        return ds.tensors[0]
    return torch.stack([ds[i][0] for i in range(len(ds))])


def _assert_same_splits(mem: DatasetSplits, st: DatasetSplits) -> None:
    assert mem.mean == st.mean and mem.std == st.std
    for name in ("train", "val", "test"):
        a, b = getattr(mem, name), getattr(st, name)
        assert isinstance(b, SourceDataset) and len(a) == len(b)
        assert torch.equal(a.tensors[1], b.targets), name
        x = _all_inputs(b)
        assert x.dtype == a.tensors[0].dtype
        assert torch.equal(a.tensors[0], x), name  # bit-identical, not merely close


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_streamed_digits_equal_the_in_memory_splits(dtype) -> None:
    kw = {"seed": 3, "dtype": dtype, "max_train": 900}
    _assert_same_splits(load_dataset("digits", **kw), load_dataset("digits", stream=True, **kw))


def test_statistics_over_several_chunks_equal_the_in_memory_ones(monkeypatch) -> None:
    import actlab.data.prepare as prep

    monkeypatch.setattr(prep, "_CHUNK", 100)  # 1,294 training images -> 13 chunks
    x = np.random.default_rng(0).integers(0, 256, (1500, 3, 4, 4)).astype(np.uint8)
    y = np.arange(1500) % 10
    args = ("toy", "classification", Source.from_arrays(x, y), None)
    kw = {"num_classes": 10, "seed": 1, "scale": 1 / 255}
    mem = prepare_splits(*args, **kw)
    st = prepare_splits(*args, stream=True, **kw)
    _assert_same_splits(mem, st)


def test_memory_mapped_npy_source(tmp_path: Path) -> None:
    x = np.random.default_rng(1).integers(0, 256, (300, 1, 5, 5)).astype(np.uint8)
    y = np.arange(300) % 3
    np.save(tmp_path / "x.npy", x)
    src = Source.from_npy(tmp_path / "x.npy", y)
    assert np.array_equal(src.fetch(np.array([5, 2, 299, 2])), x[[5, 2, 299, 2]])
    clone = pickle.loads(pickle.dumps(src.fetch))  # loader workers get the path, not the data
    assert clone._array is None and np.array_equal(clone(np.array([7])), x[[7]])
    kw = {"num_classes": 3, "seed": 0, "scale": 1 / 255}
    mem = prepare_splits("npy", "classification", Source.from_arrays(x, y), None, **kw)
    st = prepare_splits("npy", "classification", src, None, stream=True, **kw)
    _assert_same_splits(mem, st)
    with pytest.raises(ValueError, match="300 inputs but 2 targets"):
        Source.from_npy(tmp_path / "x.npy", y[:2])


def test_streamed_tiny_imagenet_reads_jpegs_per_item(tmp_path: Path, monkeypatch) -> None:
    from PIL import Image

    import actlab.data.tiny_imagenet as tiny

    base = tmp_path / "tiny-imagenet-200"
    wnids = {"n01": (200, 30, 0), "n02": (0, 180, 60)}
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    lines = []
    for w, c in wnids.items():
        (base / "train" / w / "images").mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (64, 64), tuple(v + 5 * i for v in c)).save(
                base / "train" / w / "images" / f"{w}_{i}.JPEG", quality=90)
        Image.new("RGB", (64, 64), c).save(base / "val" / "images" / f"v_{w}.JPEG")
        lines.append(f"v_{w}.JPEG\t{w}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    mem = load_dataset("tiny_imagenet", data_dir=tmp_path, val_fraction=0.2)
    decoded: list[int] = []
    real = tiny.decode_images
    monkeypatch.setattr(tiny, "decode_images",
                        lambda paths, **kw: decoded.append(len(paths)) or real(paths, **kw))
    st = load_dataset("tiny_imagenet", data_dir=tmp_path, val_fraction=0.2, stream=True)
    decoded.clear()
    x, label = st.train[3]
    assert decoded == [1] and x.shape == (3, 64, 64) and int(label) == int(st.train.targets[3])
    _assert_same_splits(mem, st)


# ----------------------------------------------------------------------------------------------
# training: memory path vs DataLoader path
# ----------------------------------------------------------------------------------------------
def _train(splits, **overrides):
    torch.manual_seed(0)
    model = create_model("tiny_cnn", num_classes=10, in_channels=1, act="relu", norm="bn",
                         width=4)
    res = train_model(model, splits, TrainConfig(**{**CFG, **overrides}), progress=False)
    return res, model, torch.random.get_rng_state()


@pytest.fixture
def one_thread():
    """Bit-identity of the two paths holds at a fixed thread count of 1: with more intra-op
    threads, the evaluation's float32 reductions of differently laid-out batches may round
    differently (~1e-7 relative), as any two runs at different thread counts do."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(("augment", "workers"), [(None, 0), (None, 2), ("crop1+flip", 2)])
def test_dataloader_path_trains_exactly_like_the_memory_path(augment, workers, one_thread) -> None:
    kw = {"seed": 0, "max_train": 400, "max_val": 60, "max_test": 60}
    mem = load_dataset("digits", **kw)
    st = load_dataset("digits", stream=True, **kw)
    ref, ref_model, ref_rng = _train(mem, augment=augment)
    got, got_model, got_rng = _train(st, augment=augment, loader="stream", num_workers=workers)
    keys = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "lr")
    for a, b in zip(ref.history, got.history, strict=True):
        assert {k: a[k] for k in keys} == {k: b[k] for k in keys}  # exact
    for name, w in ref_model.state_dict().items():
        assert torch.equal(w, got_model.state_dict()[name]), name
    assert torch.equal(ref_rng, got_rng)  # the loader leaves the global RNG stream alone
    assert ref.history[-1]["train_loss"] < ref.history[0]["train_loss"]


def test_loader_stream_on_in_memory_splits_is_the_same_too() -> None:
    mem = load_dataset("digits", seed=0, max_train=200, max_val=40, max_test=40)
    ref, _, _ = _train(mem)
    got, _, _ = _train(mem, loader="stream", num_workers=1)
    assert [h["train_loss"] for h in ref.history] == [h["train_loss"] for h in got.history]


def test_config_fields_are_validated() -> None:
    with pytest.raises(ValueError,
                       match="TrainConfig.loader must be one of 'memory', 'stream', got 'disk'"):
        TrainConfig(loader="disk")
    with pytest.raises(ValueError, match="TrainConfig.num_workers must be an integer >= 0"):
        TrainConfig(num_workers=-1)


def test_spec_loader_stream_through_actlab_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = ('name = "s"\ndataset = "digits"\ndataset_kwargs = {max_train = 200, max_val = 40, '
            'max_test = 40}\nmodel = "tiny_cnn"\nmodel_kwargs = {width = 4}\nacts = ["relu"]\n'
            'seeds = [0]\nepochs = 2\nbatch_size = 50\ndevice = "cpu"\n')
    rows = {}
    reads: dict[str, int] = {"mem": 0, "stream": 0}  # streamed splits built
    original = SourceDataset.__init__
    current = ["mem"]

    def counting_init(self: SourceDataset, *args: object, **kwargs: object) -> None:
        reads[current[0]] += 1
        original(self, *args, **kwargs)

    monkeypatch.setattr(SourceDataset, "__init__", counting_init)
    for name, extra in (("mem", ""), ("stream", 'loader = "stream"\nnum_workers = 1\n')):
        current[0] = name
        spec = tmp_path / f"{name}.toml"
        spec.write_text(body + extra)
        db = tmp_path / f"{name}.sqlite"
        assert main(["run", str(spec), "--db", str(db), "--out", str(tmp_path / name),
                     "--no-progress"]) == 0
        with ResultStore(db) as store:
            [rows[name]] = store.list()
    # loader/num_workers are bookkeeping settings: same cell key, but the data was streamed
    assert rows["stream"].cell_key == rows["mem"].cell_key
    assert "loader" not in rows["stream"].config["train"]
    assert reads["mem"] == 0 and reads["stream"] > 0
    assert rows["stream"].metrics["test_acc"] == rows["mem"].metrics["test_acc"]
    assert [h["train_loss"] for h in rows["stream"].history] == [
        h["train_loss"] for h in rows["mem"].history]
