"""The spec files shipped in specs/ (and the packaged default): every one validates, and every
paper study starts and trains one step on tiny fabricated data in its dataset's official format
(generated datasets are generated small), through the real data -> model -> train -> store path.
"""

from __future__ import annotations

import gzip
import math
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from actlab.registry import ACTIVATIONS, NORMS
from actlab.sweep.grid import expand
from actlab.sweep.runner import run_cells
from actlab.sweep.spec import SpecError, default_spec_path, load_spec, train_keys
from actlab.sweep.store import ResultStore
from cityscapes_fixture import make_cityscapes
from seg_fixture import make_ade20k, make_voc_seg
from test_detection_data import fabricate as make_voc_detection

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").rglob("*.toml"))
PAPER = [p for p in SPECS if p.parent.name in ("paper", "offline")]
RNG = np.random.default_rng(7)


def _ids(paths):
    return [str(p.relative_to(ROOT / "specs")) for p in paths]


def _unregistered_layers(path: Path) -> list[str]:
    """Layer names the spec uses that the registry does not have yet (merged later)."""
    spec = load_spec(path, check_names=False)
    return [a for a in spec.acts if a not in ACTIVATIONS] + [
        n for n in spec.norms if n not in NORMS]


def test_the_specs_folder_holds_the_studies():
    names = set(_ids(SPECS))
    assert {"default.toml", "offline/digits.toml", "offline/mnist1d.toml",
            "paper/sau_table1.toml", "paper/sau_table1_svhn.toml",
            "paper/sau_table2_cifar10.toml", "paper/sau_table3_cifar100.toml",
            "paper/sau_table4.toml", "paper/deep_control.toml",
            "paper/deep_control_grid.toml"} <= names
    # ASH: the paper's Table 2 is CIFAR-10 and Table 3 CIFAR-100 (Table 1, ImageNet, has none)
    assert {f"paper/ash_table{t}_{d}_{m}.toml" for t, d in ((2, "cifar10"), (3, "cifar100"))
            for m in ("resnet164", "wrn28_10", "densenet_100_12")} <= names
    assert not [n for n in names if n.startswith("paper/ash_table1")]
    # detection and segmentation tables (SAU Table 5; ASH Tables 4-7)
    assert {"paper/sau_table5_ssd300_voc.toml", "paper/ash_tables4_5_ssd300_voc.toml",
            "paper/ash_table6_deeplabv3plus_ade20k.toml",
            "paper/ash_table7_deeplabv3plus_voc.toml"} <= names


def test_packaged_default_is_the_repository_default():
    assert default_spec_path().read_bytes() == (ROOT / "specs" / "default.toml").read_bytes()
    spec = load_spec(None)
    assert {"relu", "leaky_relu", "prelu", "elu", "softplus", "gelu", "swish", "relu6", "sau",
            "ash"} <= set(spec.acts)
    assert len(spec.seeds) >= 3 and spec.dataset == "digits"


@pytest.mark.parametrize("path", SPECS, ids=_ids(SPECS))
def test_every_shipped_spec_validates(path):
    missing = _unregistered_layers(path)
    if missing:
        with pytest.raises(SpecError, match=f"unknown (activation|norm) {missing[0]!r}"):
            load_spec(path)
        pytest.skip(f"{missing} not registered on this branch yet")
    spec = load_spec(path)
    cells = expand(spec)
    assert len(cells) == len({c.key for c in cells}) > 0
    assert spec.name and spec.description
    assert len({load_spec(p, check_names=False).name for p in SPECS}) == len(SPECS)


def test_deep_control_specs_follow_the_linear_lr_rule():
    rule = load_spec(ROOT / "specs/paper/deep_control.toml", check_names=False)
    assert rule.train.lr_scaling == "linear" and rule.train.lr == 0.02
    assert rule.grid["batch_size"] == (1, 4, 8) and set(rule.norms) == {"bn", "agc"}
    full = load_spec(ROOT / "specs/paper/deep_control_grid.toml", check_names=False)
    # Fig. 1h's rates 0.32 and 0.64 are in the full grid
    assert full.grid == {"batch_size": (1, 4, 8), "lr": (0.02, 0.08, 0.16, 0.32, 0.64)}
    assert full.train.lr_scaling == "none"
    # the rule's (batch, lr) pairs are the diagonal of the full grid
    assert [0.02 * b for b in rule.grid["batch_size"]] == pytest.approx(list(full.grid["lr"][:3]))


# ----------------------------------------------------------------------------------------------
# the papers' recipes (see each spec's comments for where each value comes from)
# ----------------------------------------------------------------------------------------------
def _paper(name: str):
    return load_spec(ROOT / "specs" / "paper" / f"{name}.toml", check_names=False)


def _keras(spec) -> dict:
    from actlab.data.keras_augment import parse_keras_token

    aug = parse_keras_token(spec.train.augment)
    assert aug is not None, spec.train.augment
    return aug


def test_every_paper_spec_cites_its_paper_and_runs_at_least_five_times():
    for path in sorted((ROOT / "specs" / "paper").glob("*.toml")):
        first = path.read_text().splitlines()[0]
        assert first.startswith(("# SAU paper (K. Biswas", "# ASH paper (K. Lee",
                                 "# Deep Control (B. Ruff")), (path.name, first)
        spec = load_spec(path, check_names=False)
        assert len(spec.seeds) * (spec.folds or 1) >= 5, path.name


def test_sau_table1_is_a_ten_fold_study_augmenting_svhn_only():
    plain, svhn = _paper("sau_table1"), _paper("sau_table1_svhn")
    assert plain.grid["dataset"] == ("mnist", "fashion_mnist") and svhn.dataset == "svhn"
    for spec in (plain, svhn):
        assert spec.model == "vgg16_bn" and spec.folds == 10 and spec.seeds == (0,)
        assert spec.val_fraction == 0.0 and "sau" in spec.acts
        assert len(expand(spec)) == 10 * len(spec.acts) * len(spec.grid.get("dataset", (1,)))
    assert plain.train.augment is None
    aug = _keras(svhn)
    assert aug.rotation_range > 0 and aug.zoom_range not in (0.0, (1.0, 1.0))
    assert aug.height_shift_range > 0 and aug.shear_range > 0
    assert aug.width_shift_range == 0 and not aug.horizontal_flip


def test_sau_tables_2_and_3_use_the_papers_models_and_shift_flip_rotation():
    t2, t3 = _paper("sau_table2_cifar10"), _paper("sau_table3_cifar100")
    assert t2.dataset == "cifar10" and t2.grid["model"] == ("efficientnet_b0", "mobilenetv2")
    assert t3.dataset == "cifar100"
    assert t3.grid["model"] == ("shufflenetv2_0_5", "shufflenetv2_1_0", "shufflenetv2_2_0")
    for spec in (t2, t3):
        aug = _keras(spec)
        assert aug.rotation_range > 0 and aug.horizontal_flip
        assert aug.width_shift_range > 0 and aug.height_shift_range > 0
        assert aug.shear_range == 0 and aug.zoom_range in (0.0, (1.0, 1.0))


def test_sau_table4_follows_the_papers_tiny_imagenet_recipe():
    spec = _paper("sau_table4")
    t = spec.train
    assert (spec.dataset, spec.model) == ("tiny_imagenet", "wrn28_10")
    assert spec.model_kwargs == {"dropout": 0.2, "init": "he"}
    assert (t.batch_size, t.optimizer, t.epochs) == (32, "adam", 300)
    assert (t.schedule, t.step_size, t.step_gamma) == ("step", 60, 0.1)
    aug = _keras(spec)
    assert aug.rotation_range > 0 and aug.width_shift_range > 0 and aug.height_shift_range > 0
    assert aug.shear_range > 0 and aug.zoom_range not in (0.0, (1.0, 1.0)) and aug.horizontal_flip
    assert aug.fill_mode == "nearest"


def test_sau_table7_is_the_transformer_base_recipe_on_wmt14():
    spec = _paper("sau_table7_transformer_wmt14")
    t = spec.train
    assert (spec.dataset, spec.model, spec.norms) == ("wmt", "transformer_base", ("ln",))
    assert spec.model_kwargs["nhead"] == 8 and spec.model_kwargs["d_model"] == 512
    assert spec.dataset_kwargs["valid"] == "newstest2013"
    assert spec.dataset_kwargs["test"] == "newstest2014"
    assert (t.optimizer, t.momentum, t.adam_beta2, t.adam_eps) == ("adam", 0.9, 0.98, 1e-9)
    assert (t.schedule, t.warmup_steps, t.label_smoothing) == ("inverse_sqrt", 4000, 0.1)
    assert t.lr == pytest.approx((512 * 4000) ** -0.5)
    kw = spec.task_kwargs
    assert (kw["batch_tokens"], kw["beam_size"], kw["length_penalty"]) == (25000, 4, 0.6)
    assert spec.acts[-1] == "sau" and "relu" in spec.acts


def test_ash_specs_run_the_papers_networks_per_table():
    for t, d in ((2, "cifar10"), (3, "cifar100")):
        models = {_paper(f"ash_table{t}_{d}_{m}").model
                  for m in ("resnet164", "wrn28_10", "densenet_100_12")}
        assert models == {"resnet164", "wrn28_10", "densenet_100_12"}
        for m in models:
            spec = _paper(f"ash_table{t}_{d}_{m}")
            assert spec.dataset == d and spec.acts[-1] == "ash" and "relu" in spec.acts


SSD_SPECS = ("sau_table5_ssd300_voc", "ash_tables4_5_ssd300_voc")
DEEPLAB_SPECS = ("ash_table6_deeplabv3plus_ade20k", "ash_table7_deeplabv3plus_voc")


def test_detection_specs_follow_the_ssd_recipe_in_epochs():
    for name in SSD_SPECS:
        spec, t = _paper(name), _paper(name).train
        assert (spec.dataset, spec.model) == ("voc", "ssd300")
        assert 'task = "detection"' in (ROOT / "specs" / "paper" / f"{name}.toml").read_text()
        assert spec.dataset_kwargs == {"year": "2007+2012", "image_size": 300}
        assert (t.optimizer, t.lr, t.momentum, t.weight_decay, t.batch_size) == (
            "sgd", 1e-3, 0.9, 5e-4, 32)
        # 120k iterations, x0.1 at 80k / 100k, at floor(16,551 / 32) steps per epoch
        steps = 16_551 // 32
        assert t.epochs == round(120_000 / steps) and t.schedule == "step"
        assert list(t.step_size) == [round(80_000 / steps), round(100_000 / steps)]
        assert spec.val_fraction == 0.0 and len(spec.seeds) >= 5
    assert _paper(SSD_SPECS[0]).acts[-1] == "sau" and _paper(SSD_SPECS[1]).acts[-1] == "ash"
    # the other SAU / ASH specs' activation sets
    assert _paper(SSD_SPECS[0]).acts == _paper("sau_table4").acts
    assert _paper(SSD_SPECS[1]).acts == _paper("ash_table2_cifar10_resnet164").acts


def test_segmentation_specs_follow_the_deeplabv3plus_recipe():
    ade, voc = (_paper(n) for n in DEEPLAB_SPECS)
    for spec in (ade, voc):
        t = spec.train
        assert spec.model == "deeplabv3plus" and spec.acts == _paper(
            "ash_table2_cifar10_resnet164").acts
        assert spec.model_kwargs == {"depth": 101, "output_stride": 16, "init": "he"}
        assert (t.optimizer, t.schedule, t.batch_size, t.momentum) == ("sgd", "poly", 16, 0.9)
        assert spec.val_fraction == 0.0 and len(spec.seeds) >= 5
    assert ade.dataset == "ade20k" and ade.dataset_kwargs == {"size": [512, 512]}
    assert ade.train.lr == 0.01 and ade.train.epochs == round(160_000 / (20_210 // 16))
    assert voc.dataset == "voc_seg" and voc.dataset_kwargs["size"] == [513, 513]
    assert voc.train.lr == 0.007 and voc.train.epochs == round(30_000 / (1_464 // 16))


@pytest.mark.parametrize("name", SSD_SPECS + DEEPLAB_SPECS)
def test_new_paper_specs_pass_check_on_fabricated_data(name, data_dir, capsys):
    from actlab.cli import main

    path = ROOT / "specs" / "paper" / f"{name}.toml"
    if _unregistered_layers(path):
        pytest.skip(f"{_unregistered_layers(path)} not registered on this branch yet")
    assert main(["run", str(path), "--check", "--data-dir", str(data_dir)]) == 0
    assert f"{len(_paper(name).acts) * 5} cells" in capsys.readouterr().out
    # and without the files: one line naming the missing folder
    empty = data_dir.parent / f"empty-{name}"
    empty.mkdir(exist_ok=True)
    assert main(["run", str(path), "--check", "--data-dir", str(empty)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(empty) in err[0] and "missing" in err[0]


# ----------------------------------------------------------------------------------------------
# tiny files in each official format
# ----------------------------------------------------------------------------------------------
def _idx(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.with_name(path.name + ".gz").write_bytes(gzip.compress(header + arr.tobytes()))


def _mnist_like(folder: Path, n_train: int = 20, n_test: int = 10) -> None:
    _idx(folder / "train-images-idx3-ubyte", RNG.integers(0, 256, (n_train, 28, 28), np.uint8))
    _idx(folder / "train-labels-idx1-ubyte", (np.arange(n_train) % 10).astype(np.uint8))
    _idx(folder / "t10k-images-idx3-ubyte", RNG.integers(0, 256, (n_test, 28, 28), np.uint8))
    _idx(folder / "t10k-labels-idx1-ubyte", (np.arange(n_test) % 10).astype(np.uint8))


def _pickle(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def _cifar10(root: Path) -> None:
    folder = root / "cifar-10-batches-py"
    for i in range(1, 6):
        _pickle(folder / f"data_batch_{i}", {
            b"data": RNG.integers(0, 256, (10, 3072), np.uint8), b"labels": list(range(10))})
    _pickle(folder / "test_batch", {b"data": RNG.integers(0, 256, (10, 3072), np.uint8),
                                    b"labels": list(range(10))})
    _pickle(folder / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})


def _cifar100(root: Path) -> None:
    folder = root / "cifar-100-python"
    for split, n in (("train", 200), ("test", 20)):
        fine = [i % 100 for i in range(n)]
        _pickle(folder / split, {b"data": RNG.integers(0, 256, (n, 3072), np.uint8),
                                 b"fine_labels": fine, b"coarse_labels": [f % 20 for f in fine]})
    _pickle(folder / "meta", {
        b"fine_label_names": [f"f{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"k{i}".encode() for i in range(20)]})


def _svhn(root: Path) -> None:
    import scipy.io

    folder = root / "svhn"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 20), ("test", 10)):
        x = RNG.integers(0, 256, (32, 32, 3, n), np.uint8)
        y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # label 10 is digit 0
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})


def _tiny_imagenet(root: Path) -> None:
    from PIL import Image

    base = root / "tiny-imagenet-200"
    wnids = ["n01", "n02"]
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (base / "words.txt").write_text("n01\tone thing\nn02\tanother thing\n")
    lines = []
    for k, wnid in enumerate(wnids):
        images = base / "train" / wnid / "images"
        images.mkdir(parents=True)
        for i in range(5):
            pixels = RNG.integers(0, 256, (64, 64, 3), np.uint8)
            Image.fromarray(pixels).save(images / f"{wnid}_{i}.JPEG", format="JPEG")
        name = f"val_{k}.JPEG"
        Image.fromarray(RNG.integers(0, 256, (64, 64, 3), np.uint8)).save(
            base / "val" / "images" / name, format="JPEG")
        lines.append(f"{name}\t{wnid}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


def _wmt(root: Path) -> None:
    """WMT-style plain text: train, newstest2013 (validation) and newstest2014 (test)."""
    folder = root / "wmt14_en_de"
    folder.mkdir(parents=True, exist_ok=True)
    en = ["the house is small .", "the tree is green .", "a small house .", "the green tree ."]
    de = ["das Haus ist klein .", "der Baum ist grün .", "ein kleines Haus .", "der grüne Baum ."]
    for prefix, keep in (("train", slice(None)), ("newstest2013", slice(0, 2)),
                         ("newstest2014", slice(2, 4))):
        for lang, lines in (("en", en), ("de", de)):
            (folder / f"{prefix}.{lang}").write_text("\n".join(lines[keep] * 2) + "\n",
                                                     encoding="utf-8")


FABRICATE = {
    "mnist": lambda root: _mnist_like(root / "MNIST" / "raw"),
    "fashion_mnist": lambda root: _mnist_like(root / "FashionMNIST" / "raw"),
    "svhn": _svhn, "cifar10": _cifar10, "cifar100": _cifar100,
    "tiny_imagenet": _tiny_imagenet,
    "cityscapes": lambda root: make_cityscapes(root, per_city=2, hw=(32, 64)),
    "wmt": _wmt,
    "voc": make_voc_detection,
    "voc_seg": lambda root: make_voc_seg(root, n_train=6, n_val=2, hw=(40, 56)),
    "ade20k": lambda root: make_ade20k(root, n_train=6, n_val=2, hw=(40, 56)),
}
#: generated datasets: generate them small (and read Cityscapes at a small size)
SMALL = {"synthetic_shapes": {"num_samples": 20, "size": 64}, "mnist1d": {"num_samples": 200},
         "cityscapes": {"size": [32, 64]}, "synthetic_detection": {"num_samples": 40},
         "scan": {"num_samples": 200}, "voc_seg": {"size": [64, 64]},
         "ade20k": {"size": [64, 64]}}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for make in FABRICATE.values():
        make(root)
    return root


def _one_step_spec(path: Path, data_dir: Path):
    """The spec, cut to one step: its own proposed layer (the last act), every norm, one seed,
    every dataset/model of the grid, the first value of other axes, batch 2, one epoch."""
    spec = load_spec(path)
    tk = train_keys()
    grid = {k: (v if k in ("dataset", "model") else v[:1]) for k, v in spec.grid.items()}
    train = {"epochs": 1, "eval_batch_size": 8, "warmup_epochs": 0, "device": "cpu"}
    for key, value in (("batch_size", 2),):
        if key in grid and key in tk:
            grid[key] = (value,)
        else:
            train[key] = value
    datasets = grid.get("dataset", (spec.dataset,))
    assert len(datasets) == 1 or not spec.dataset_kwargs
    ds_kwargs = {**spec.dataset_kwargs, **SMALL.get(datasets[0], {}),
                 "max_train": 2, "max_val": 2, "max_test": 2}
    return spec.replace(acts=spec.acts[-1:], seeds=spec.seeds[:1], grid=grid,
                        dataset_kwargs=ds_kwargs, data_dir=str(data_dir)).with_train(**train)


def _forward_check(cell, data_dir: Path) -> None:
    """Load the cell's data and build its network; one forward pass gives one logit per class
    (per pixel for segmentation)."""
    import torch

    from actlab.data import load_dataset
    from actlab.models import create_model

    c = cell.config
    splits = load_dataset(c["dataset"], data_dir=data_dir, val_fraction=c["val_fraction"],
                          seed=c["split_seed"], **c["dataset_kwargs"])
    model = create_model(c["model"], act=c["act"], norm=c["norm"], num_classes=splits.num_classes,
                         in_channels=splits.in_channels, **c["model_kwargs"]).eval()
    x = splits.test.tensors[0][:2]
    with torch.no_grad():
        out = model(x)
    assert out.shape[:2] == (2, splits.num_classes), (c["model"], c["dataset"], out.shape)


@pytest.mark.slow
@pytest.mark.parametrize("path", PAPER, ids=_ids(PAPER))
def test_paper_spec_trains_one_step_on_fabricated_data(path, data_dir, tmp_path):
    missing = _unregistered_layers(path)
    if missing:
        pytest.skip(f"{missing} not registered on this branch yet")
    spec = _one_step_spec(path, data_dir)
    for d in spec.grid.get("dataset", (spec.dataset,)):
        assert d in FABRICATE or d in SMALL or d == "digits", d
    cells = expand(spec)
    # one cell per norm trains one step through the real runner; the other datasets/models of
    # the grid are loaded, built and run forward once (training them all would be slow)
    first = {c.norm: c for c in reversed(cells)}
    trained = [c for c in cells if first[c.norm] is c]
    outcome = run_cells(trained, db_path=tmp_path / "r.sqlite", out_dir=tmp_path / "o",
                        progress=False)
    assert outcome.ok, outcome.failed
    with ResultStore(tmp_path / "r.sqlite") as store:
        rows = store.list()
    assert len(rows) == len(trained)
    for row in rows:
        assert row.status == "done" and len(row.history) == 1
        final = next((row.metrics[k] for k in ("test_acc", "test_pixel_acc", "test_map50")
                      if k in row.metrics), None)  # the task's accuracy-like final metric
        if final is None and "test_bleu" in row.metrics:  # seq2seq: BLEU in [0, 100]
            final = row.metrics["test_bleu"] / 100.0
        assert final is not None and 0.0 <= final <= 1.0
        assert math.isfinite(row.history[0]["train_loss"])
        assert row.config["train"]["epochs"] == 1
    for cell in cells:
        if cell not in trained:
            _forward_check(cell, data_dir)
