"""Spec files: validation errors are one line naming file, key, value and what is allowed."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from actlab.registry import ACTIVATIONS
from actlab.sweep.spec import SpecError, default_spec_path, load_spec, parse_spec
from actlab.train import TrainConfig

BASE = {"dataset": "digits", "model": "tiny_cnn", "acts": ["relu", "elu"]}


def write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def parse(**changes):
    return parse_spec({**BASE, **changes}, source="s.toml")


def error_of(**changes) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse(**changes)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert msg.startswith("s.toml: "), msg
    return info.value


def test_minimal_spec_gets_defaults(tmp_path):
    path = write(tmp_path, """
        dataset = "digits"
        model = "tiny_cnn"
        acts = ["relu", "ELU"]
    """)
    spec = load_spec(path)
    assert spec.name == "study"  # from the file name
    assert spec.acts == ("relu", "elu")  # registry spelling
    assert spec.norms == ("bn",)
    assert spec.seeds == (0, 1, 2)
    assert spec.train_settings() == {"epochs": 10, "batch_size": 32, "optimizer": "sgd", "lr": 0.05}
    assert spec.train == TrainConfig()  # the spec holds a full, validated TrainConfig
    assert spec.threads == 1 and spec.imports == ()
    assert spec.grid == {}
    assert spec.resources == {"cpus": 1.0, "gpus": 0.0}
    assert spec.source == str(path)


def test_full_spec_round_trip(tmp_path):
    path = write(tmp_path, """
        name = "bs"
        dataset = "digits"
        model = "tiny_cnn"
        acts = ["relu", "leaky_relu"]
        norms = ["bn", "gn"]
        seeds = 2
        epochs = 3
        optimizer = "adam"
        lr = 1
        momentum = 0.5
        augment = "none"
        dataset_kwargs = { normalize = false }
        act_kwargs = { leaky_relu = { negative_slope = 0.2 } }
        norm_kwargs = { gn = { num_groups = 2 } }

        [grid]
        batch_size = [1, 4, 8]
        "model_kwargs.width" = [8, 16]

        [resources]
        cpus = 2
        gpus = 0.5
    """)
    spec = load_spec(path)
    assert spec.name == "bs" and spec.seeds == (0, 1)
    assert spec.train.lr == 1.0 and isinstance(spec.train.lr, float)
    assert spec.train.optimizer == "adam" and spec.train.augment is None
    assert spec.grid == {"batch_size": (1, 4, 8), "model_kwargs.width": (8, 16)}
    assert spec.act_kwargs == {"leaky_relu": {"negative_slope": 0.2}}
    assert spec.norm_kwargs == {"gn": {"num_groups": 2}}
    assert spec.dataset_kwargs == {"normalize": False}
    assert spec.resources == {"cpus": 2.0, "gpus": 0.5}


def test_unknown_key_suggests_the_close_one():
    err = error_of(optimiser="sgd")
    assert err.key == "optimiser"
    assert "unknown key; did you mean 'optimizer'?" in str(err)
    assert "allowed:" in str(err) and "batch_size" in str(err)
    assert "did you mean 'seeds'" in str(error_of(seed=3))


@pytest.mark.parametrize(
    ("changes", "key", "fragment"),
    [
        ({"epochs": 0}, "epochs", "got 0; expected an integer >= 1"),
        ({"epochs": 2.5}, "epochs", "got 2.5; expected an integer >= 1"),
        ({"batch_size": True}, "batch_size", "got True; expected an integer >= 1"),
        ({"lr": -0.1}, "lr", "got -0.1; expected a number > 0"),
        ({"lr": "fast"}, "lr", "got 'fast'; expected a number > 0"),
        ({"optimizer": "rmsprop"}, "optimizer", "expected one of 'sgd', 'adam', 'adamw'"),
        ({"schedule": "linear"}, "schedule",
         "expected one of 'none', 'cosine', 'step', 'inverse_sqrt', 'poly'"),
        ({"momentum": 1.0}, "momentum", "got 1.0; expected a number in [0, 1)"),
        ({"val_fraction": 1.5}, "val_fraction", "got 1.5"),
        ({"nesterov": "yes"}, "nesterov", "expected true or false"),
        ({"seeds": []}, "seeds", "expected a count or a list of integers"),
        ({"seeds": [0, -1]}, "seeds[1]", "got -1; expected an integer >= 0"),
        ({"seeds": [1, 1]}, "seeds", "must be distinct"),
        ({"acts": []}, "acts", "expected a non-empty list of names"),
        ({"acts": ["relu", "relu"]}, "acts", "'relu' is listed twice"),
        ({"acts": ["relu", 3]}, "acts[1]", "got 3; expected a name"),
        ({"model_kwargs": 3}, "model_kwargs", "expected a table"),
        ({"device": "tpu"}, "device", "got 'tpu'"),
    ],
)
def test_bad_values_name_key_value_and_allowed(changes, key, fragment):
    err = error_of(**changes)
    assert err.key == key
    assert fragment in str(err)


def test_missing_required_key():
    with pytest.raises(SpecError, match=r"s\.toml: model: missing \(required; or list"):
        parse_spec({"dataset": "digits", "acts": ["relu"]}, source="s.toml")


def test_unknown_activation_and_norm_names():
    err = error_of(acts=["relu", "sawsh"])
    assert err.key == "acts[1]"
    assert "unknown activation 'sawsh'; did you mean 'swish'?" in str(err)
    assert "known:" in str(err) and "gelu" in str(err)
    err = error_of(norms=["bn", "batchnrm"])
    assert err.key == "norms[1]" and "unknown norm 'batchnrm'" in str(err)


def test_unknown_names_are_not_checked_when_asked_not_to():
    spec = parse_spec({**BASE, "acts": ["not_a_layer"]}, source="s.toml", check_names=False)
    assert spec.acts == ("not_a_layer",)


def test_layer_kwargs_are_checked_by_building_the_layer():
    err = error_of(act_kwargs={"elu": {"slope": 2}})
    assert err.key == "act_kwargs.elu" and "rejects {'slope': 2}" in str(err)
    err = error_of(act_kwargs={"gelu": {"approximate": "tanh"}})
    assert "'gelu' is not in acts" in str(err)


def test_grid_errors():
    err = error_of(grid={"bacth_size": [1, 2]})
    assert err.key == "grid.bacth_size" and "did you mean 'batch_size'" in str(err)
    assert "sweepable:" in str(err)
    err = error_of(grid={"batch_size": [1, 0]})
    assert err.key == "grid.batch_size[1]" and "got 0" in str(err)
    err = error_of(grid={"lr": []})
    assert "expected a non-empty list" in str(err)
    err = error_of(grid={"lr": [0.1, 0.1]})
    assert "must be distinct" in str(err)
    err = error_of(lr=0.1, grid={"lr": [0.1, 0.2]})
    assert "also set at the top level" in str(err)
    err = error_of(grid={"acts": [["relu"]]})
    assert "already an axis" in str(err)
    err = error_of(resources={"cpu": 1})
    assert err.key == "resources.cpu" and "did you mean 'cpus'" in str(err)


def test_file_errors_are_one_line(tmp_path):
    bad = write(tmp_path, 'dataset = "digits\nmodel = 3\n')
    with pytest.raises(SpecError, match="not valid TOML") as info:
        load_spec(bad)
    assert "\n" not in str(info.value)
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "missing.toml")


def test_packaged_default_spec_matches_repo_copy_and_validates():
    packaged = default_spec_path()
    repo_copy = Path(__file__).resolve().parents[1] / "specs" / "default.toml"
    assert packaged.read_text() == repo_copy.read_text()
    spec = load_spec(packaged, check_names=False)
    assert spec.name == "default" and spec.dataset == "digits" and spec.model == "tiny_cnn"
    assert {"relu", "leaky_relu", "prelu", "elu", "softplus", "gelu", "swish", "relu6", "sau",
            "ash"} <= set(spec.acts)
    assert len(spec.seeds) >= 3
    if "sau" in ACTIVATIONS and "ash" in ACTIVATIONS:
        load_spec(None)  # full name checks once the layers are registered
    assert load_spec("default", check_names=False).source == str(packaged)


def test_model_and_dataset_options_are_checked():
    err = error_of(model_kwargs={"widht": 8})
    assert err.key == "model_kwargs" and "model 'tiny_cnn' does not take" in str(err)
    assert "width" in str(err)  # its options are listed
    err = error_of(grid={"model_kwargs.depth": [1, 2]})
    assert err.key == "grid" and "does not take" in str(err)
    err = error_of(dataset_kwargs={"max_trian": 100})
    assert err.key == "dataset_kwargs"
    assert "dataset 'digits' does not take 'max_trian'; did you mean 'max_train'?" in str(err)
    err = error_of(model="tiny_cnnn")
    assert err.key == "model" and "unknown model 'tiny_cnnn'; did you mean 'tiny_cnn'?" in str(err)
    err = error_of(dataset="digit")
    assert err.key == "dataset" and "unknown dataset 'digit'; did you mean 'digits'?" in str(err)
    spec = parse(model_kwargs={"width": 8}, dataset_kwargs={"max_train": 100},
                 grid={"dataset_kwargs.max_val": [10, 20]})
    assert spec.model_kwargs == {"width": 8}


def test_dataset_or_model_may_be_given_only_as_a_grid_axis():
    spec = parse_spec({"model": "tiny_cnn", "acts": ["relu"], "seeds": [0],
                       "grid": {"dataset": ["Digits", "digits-x"]}}, source="g.toml",
                      check_names=False)
    assert spec.dataset == "digits" and spec.grid["dataset"] == ("digits", "digits_x")
    with pytest.raises(SpecError, match="grid.dataset: 'dataset' is also set at the top level"):
        parse_spec({"dataset": "digits", "model": "tiny_cnn", "acts": ["relu"],
                    "grid": {"dataset": ["digits"]}}, source="g.toml")


def test_step_milestones_and_train_config_cross_checks():
    base = {"dataset": "digits", "model": "tiny_cnn", "acts": ["relu"]}
    spec = parse_spec({**base, "schedule": "step", "step_size": [3, 6], "warmup_epochs": 0.5})
    assert spec.train.step_size == [3, 6] and spec.train.warmup_epochs == 0.5
    with pytest.raises(SpecError, match=r"step_size: got \[6, 3\]; expected .*increasing"):
        parse_spec({**base, "step_size": [6, 3]})
    # every TrainConfig field is checked by its own checker when the spec is read
    with pytest.raises(SpecError, match="amp_dtype: got 'fp8'; expected one of 'float16'"):
        parse_spec({**base, "amp_dtype": "fp8"})
    # and cross-field rules of TrainConfig too, in one line
    with pytest.raises(SpecError, match="nesterov: rejected by TrainConfig: .*optimizer='sgd'") \
            as err:
        parse_spec({**base, "nesterov": True, "optimizer": "adam"})
    assert "\n" not in str(err.value)
