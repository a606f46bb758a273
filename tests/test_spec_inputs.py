"""One schema for the training settings, and bad inputs refused in one line naming the file or
key: binary spec files, huge seed counts and grids, aliases of one layer, a device this machine
lacks, dataset files missing or malformed; the command-line overrides (--set, --norms)."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from actlab.cli import main
from actlab.data import DatasetError, load_dataset
from actlab.schema import Invalid
from actlab.sweep.grid import expand
from actlab.sweep.spec import (
    MAX_CELLS,
    MAX_SEEDS,
    SpecError,
    load_spec,
    packaged_specs,
    parse_override,
    parse_spec,
    preflight,
    train_keys,
)
from actlab.train import TrainConfig

BASE = {"dataset": "digits", "model": "tiny_cnn", "acts": ["relu", "elu"]}


def one_line_error(**changes) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec({**BASE, **changes}, source="s.toml")
    assert "\n" not in str(info.value) and str(info.value).startswith("s.toml: ")
    return info.value


def spec_file(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------------------------
# one schema
# ----------------------------------------------------------------------------------------------
def test_every_train_config_field_is_a_spec_key_with_the_same_checker():
    keys = train_keys()
    fields = TrainConfig.checkers()
    assert set(keys) == set(fields) - {"seed"}
    for name, check in keys.items():
        assert check is fields[name]  # the very same object: defined once


@pytest.mark.parametrize("device", ["cuda:1", "mps", "cuda", "cpu", "auto"])
def test_spec_and_train_config_accept_the_same_devices(device):
    assert parse_spec({**BASE, "device": device}, source="s.toml").device == device
    assert TrainConfig(device=device).device == device


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "cuda:", 3])
def test_spec_and_train_config_refuse_the_same_devices(device):
    err = one_line_error(device=device)
    assert err.key == "device" and "expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'" in str(err)
    with pytest.raises((TypeError, ValueError), match="TrainConfig.device must be 'auto'"):
        TrainConfig(device=device)


def test_a_grid_value_goes_through_train_config_rules():
    err = one_line_error(nesterov=True, grid={"optimizer": ["sgd", "adam"]})
    assert err.key == "grid.optimizer[1]" and "needs optimizer='sgd'" in str(err)


def test_device_must_exist_on_this_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    preflight(parse_spec({**BASE, "device": "cuda:0"}, source="s.toml"), data=False)
    with pytest.raises(SpecError, match=r"s.toml: device: 'cuda:1': this machine has 1 CUDA "
                                        r"device \(cuda:0\)"):
        preflight(parse_spec({**BASE, "device": "cuda:1"}, source="s.toml"), data=False)
    with pytest.raises(SpecError, match="device: 'mps': the MPS backend is not available"):
        preflight(parse_spec({**BASE, "device": "mps"}, source="s.toml"), data=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(SpecError, match="device: 'cuda': CUDA is not available"):
        preflight(parse_spec({**BASE, "device": "cuda"}, source="s.toml"), data=False)


def test_check_refuses_a_missing_device_in_one_line(tmp_path, capsys):
    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has cuda:7")
    path = spec_file(tmp_path, 'dataset = "digits"\nmodel = "tiny_cnn"\nacts = ["relu"]\n')
    assert main(["run", str(path), "--device", "cuda:7", "--check"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{path}: device: 'cuda:7': " in err


# ----------------------------------------------------------------------------------------------
# bad spec files and values
# ----------------------------------------------------------------------------------------------
def test_binary_spec_file_is_one_line(tmp_path):
    path = tmp_path / "junk.toml"
    path.write_bytes(b"name = \"x\"\n\xff\xfe\x00\x81 binary")
    with pytest.raises(SpecError, match=r"junk.toml: not a text file \(TOML expected; byte 11"):
        load_spec(path)


def test_seed_counts_are_bounded_quickly():
    start = time.perf_counter()
    err = one_line_error(seeds=1_000_000)
    assert err.key == "seeds" and f"at most {MAX_SEEDS} seeds" in str(err)
    err = one_line_error(seeds=list(range(MAX_SEEDS + 1)))
    assert err.key == "seeds" and f"a list of {MAX_SEEDS + 1} seeds" in str(err)
    assert time.perf_counter() - start < 2.0
    assert len(parse_spec({**BASE, "seeds": MAX_SEEDS}, source="s.toml").seeds) == MAX_SEEDS


def test_cell_counts_are_bounded_before_any_cell_is_built():
    lrs = [0.001 * (i + 1) for i in range(MAX_CELLS // 6 + 1)]
    start = time.perf_counter()
    err = one_line_error(seeds=3, grid={"lr": lrs})
    assert err.key is None and f"at most {MAX_CELLS} per spec" in str(err)
    assert f"({2} acts x 1 norms x 3 seeds x {len(lrs)} lr)" in str(err)
    assert time.perf_counter() - start < 5.0
    spec = parse_spec({**BASE, "seeds": 3}, source="s.toml").replace(seeds=tuple(range(MAX_CELLS)))
    with pytest.raises(ValueError, match="cells; at most"):
        expand(spec)  # a spec changed by hand is refused before building its cells


@pytest.mark.parametrize(("key", "names", "both"), [
    ("acts", ["swish", "silu"], "'swish' and 'silu' are the same activation ('swish')"),
    ("acts", ["relu", "LRelu", "leaky_relu"], "'lrelu' and 'leaky_relu' are the same activation"),
    ("norms", ["batchnorm", "bn"], "'batchnorm' and 'bn' are the same norm ('bn')"),
])
def test_aliases_of_one_layer_are_refused(key, names, both):
    err = one_line_error(**{key: names})
    assert err.key == key and both in str(err) and "list it once" in str(err)


def test_unknown_keys_still_say_did_you_mean():
    err = one_line_error(threds=2)
    assert err.key == "threds" and "did you mean 'threads'?" in str(err)
    err = one_line_error(imports="no spaces allowed")
    assert err.key == "imports[0]" and "expected a module name" in str(err)
    err = one_line_error(threads=0)
    assert err.key == "threads" and "got 0; expected an integer in [1, 1024]" in str(err)


# ----------------------------------------------------------------------------------------------
# datasets at --check, and CIFAR labels
# ----------------------------------------------------------------------------------------------
def _cifar10(root: Path, labels_of_batch_1=None) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [int(v) for v in rng.integers(0, 10, 40)]
        if name == "data_batch_1" and labels_of_batch_1 is not None:
            labels = labels_of_batch_1
        batch = {b"data": rng.integers(0, 256, (40, 3072), dtype=np.uint8), b"labels": labels}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return folder


CIFAR_SPEC = 'dataset = "cifar10"\nmodel = "mlp"\nacts = ["relu"]\nseeds = [0]\n'


def test_check_verifies_that_dataset_files_are_present_and_readable(tmp_path, capsys):
    path = spec_file(tmp_path, CIFAR_SPEC)
    data = tmp_path / "data"
    data.mkdir()
    assert main(["run", str(path), "--check", "--data-dir", str(data)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{path}: dataset: cifar10: missing file " in err
    assert str(data / "cifar-10-batches-py" / "data_batch_1") in err
    assert "--data-dir DIR, ACTLAB_DATA=DIR or data_dir in the spec" in err

    folder = _cifar10(data)
    assert main(["run", str(path), "--check", "--data-dir", str(data)]) == 0
    assert "1 cells" in capsys.readouterr().out

    (folder / "test_batch").write_bytes(b"\x80\x02garbage")  # present but not readable
    assert main(["run", str(path), "--check", "--data-dir", str(data)]) == 2
    err = capsys.readouterr().err
    assert f"cannot unpickle {folder / 'test_batch'}" in err


def test_cifar_labels_of_the_wrong_shape_are_refused(tmp_path):
    folder = _cifar10(tmp_path, labels_of_batch_1=[[1, 2]] * 20)  # 40 numbers for 40 images
    with pytest.raises(DatasetError) as info:
        load_dataset("cifar10", data_dir=tmp_path)
    msg = str(info.value)
    assert str(folder / "data_batch_1") in msg and "shape (20, 2)" in msg
    assert "expected a flat list of integer class labels" in msg
    (folder / "data_batch_1").unlink()
    _cifar10(tmp_path / "b", labels_of_batch_1=[0.5] * 40)
    with pytest.raises(DatasetError, match="float64; expected a flat list of integer"):
        load_dataset("cifar10", data_dir=tmp_path / "b")


# ----------------------------------------------------------------------------------------------
# command-line overrides and shipped specs
# ----------------------------------------------------------------------------------------------
def test_set_values_are_typed_by_the_schema():
    assert parse_override("lr=0.2") == ("lr", 0.2)
    assert parse_override("epochs=3") == ("epochs", 3)
    assert parse_override("nesterov=true") == ("nesterov", True)
    assert parse_override("optimizer=adam") == ("optimizer", "adam")
    assert parse_override("name=123") == ("name", "123")  # a string key keeps the text
    assert parse_override("acts=[relu, elu]") == ("acts", ["relu", "elu"])
    assert parse_override("grid.batch_size=[8,16]") == ("grid.batch_size", [8, 16])
    # a string-typed setting as a grid axis is a list of strings, quoted or bare
    assert parse_override('grid.gems=["channel"]') == ("grid.gems", ["channel"])
    assert parse_override("grid.optimizer=[sgd, adam]") == ("grid.optimizer", ["sgd", "adam"])
    assert parse_override("model_kwargs.width = 4") == ("model_kwargs.width", 4)
    with pytest.raises(SpecError, match="expected KEY=VALUE"):
        parse_override("lr")


def test_set_reaches_every_key_and_is_validated(tmp_path, capsys):
    path = spec_file(tmp_path, 'dataset = "digits"\nmodel = "tiny_cnn"\nacts = ["relu", "elu"]\n'
                               'seeds = [0]\nnorms = ["bn", "gn"]\n[grid]\nlr = [0.1, 0.2]\n')
    spec = load_spec(path, overrides=[parse_override(t) for t in (
        "lr=0.3", "optimizer=adam", "model_kwargs.width=4", "grid.batch_size=[8,16]",
        "resources.cpus=2")])
    assert spec.train.lr == 0.3 and "lr" not in spec.grid  # a top-level value replaces the axis
    assert spec.train.optimizer == "adam" and spec.model_kwargs == {"width": 4}
    assert spec.grid == {"batch_size": (8, 16)} and spec.resources["cpus"] == 2.0
    assert {c.config["train"]["lr"] for c in expand(spec)} == {0.3}

    code = main(["run", str(path), "--check", "--set", "epohcs=3"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "epohcs: unknown key; did you mean 'epochs'?" in err
    assert main(["run", str(path), "--check", "--set", "lr=fast"]) == 2
    assert "lr: got 'fast'; expected a number > 0" in capsys.readouterr().err
    assert main(["run", str(path), "--check", "--set", "seeds=2", "--norms", "gn",
                 "--set", "model_kwargs.width=4"]) == 0
    out = capsys.readouterr().out
    assert "8 cells (2 acts x 1 norms x 2 seeds x 2 lr)" in out and "+bn" not in out
    assert main(["run", str(path), "--check", "--norms", "ln"]) == 2
    assert "--norms: ['ln'] not in the spec's norms ['bn', 'gn']" in capsys.readouterr().err


def test_version_and_list_and_run_of_every_shipped_spec(capsys):
    from actlab import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip().startswith("actlab 0.")
    assert __version__
    assert main(["list", "specs"]) == 0
    listed = capsys.readouterr().out.split()
    assert {"default", "offline/digits", "offline/mnist1d", "paper/sau_table1",
            "paper/ash_table2_cifar10_resnet164", "paper/deep_control"} <= set(listed)
    assert listed == list(packaged_specs())
    for name in listed:  # each one loads by name (no data needed to validate)
        assert load_spec(name, check_names=False).source.endswith(f"{name}.toml")
    assert main(["run", "offline/digits", "--check", "--seeds", "0"]) == 0
    assert "study 'offline-digits'" in capsys.readouterr().out
    assert main(["run", "paper/sau_tabel1", "--check"]) == 2
    assert "did you mean 'paper/sau_table1'?" in capsys.readouterr().err


def test_invalid_carries_what_is_allowed():
    from actlab.schema import Float, Int

    with pytest.raises(Invalid) as info:
        Int(1)(0)
    assert info.value.expected == "an integer >= 1" and not info.value.type_error
    with pytest.raises(Invalid) as info:
        Float(0.0, 1.0, hi_open=True)("x")
    assert info.value.expected == "a number in [0, 1)" and info.value.type_error


def test_readme_spec_reference_is_the_schema():
    from actlab.sweep.spec import spec_reference

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    missing = [row for row in spec_reference().splitlines() if row not in readme]
    assert not missing, f"README spec reference is stale; first missing row: {missing[0]}"
