"""Grid expansion: cell count, config layout, stable sha1 keys."""

from __future__ import annotations

import hashlib
import json

from actlab.sweep.grid import canonical_json, cell_key, expand
from actlab.sweep.spec import parse_spec

SPEC = {
    "name": "g",
    "dataset": "digits",
    "model": "tiny_cnn",
    "acts": ["relu", "elu", "gelu"],
    "norms": ["bn", "gn"],
    "seeds": [0, 1],
    "epochs": 2,
    "grid": {"batch_size": [1, 4, 8], "model_kwargs.width": [8, 16]},
    "act_kwargs": {"elu": {"alpha": 0.5}},
}


def cells_of(data=SPEC, **kw):
    return expand(parse_spec(data, source="g.toml", **kw))


def test_count_is_the_product_of_all_axes_and_keys_are_unique():
    cells = cells_of()
    assert len(cells) == 3 * 2 * 2 * 3 * 2
    assert len({c.key for c in cells}) == len(cells)
    combos = {(c.act, c.norm, c.seed, c.config["train"]["batch_size"],
               c.config["model_kwargs"]["width"]) for c in cells}
    assert len(combos) == len(cells)


def test_run_order_has_seeds_outermost():
    seeds = [c.seed for c in cells_of()]
    assert seeds == sorted(seeds)


def test_cell_config_layout():
    cell = next(c for c in cells_of() if c.act == "elu" and c.norm == "gn" and c.seed == 1)
    cfg = cell.config
    assert cfg["study"] == "g" and cfg["dataset"] == "digits" and cfg["model"] == "tiny_cnn"
    assert cfg["act"] == "elu" and cfg["act_kwargs"] == {"alpha": 0.5}
    assert cfg["norm"] == "gn" and cfg["norm_kwargs"] == {}
    assert cfg["seed"] == 1 and cfg["train"]["seed"] == 1
    assert cfg["train"]["epochs"] == 2 and cfg["train"]["batch_size"] in (1, 4, 8)
    assert cfg["model_kwargs"]["width"] in (8, 16)
    assert cfg["val_fraction"] == 0.1 and cfg["split_seed"] == 0
    assert "device" not in json.dumps(cfg)
    assert cell.runtime == {"device": "auto"}
    assert set(cell.axes) == {"batch_size", "model_kwargs.width"}
    assert cell.epochs == 2
    assert cell.label.startswith("elu+gn s1 batch_size=")
    # other activations do not get elu's kwargs
    relu = next(c for c in cells_of() if c.act == "relu")
    assert relu.config["act_kwargs"] == {}


def test_key_is_sha1_of_canonical_json():
    cell = cells_of()[0]
    text = json.dumps(cell.config, sort_keys=True, separators=(",", ":"))
    assert cell.key == hashlib.sha1(text.encode()).hexdigest()
    assert canonical_json({"b": 1, "a": [1.5, "x"]}) == '{"a":[1.5,"x"],"b":1}'
    assert cell_key({"b": 1, "a": 2}) == cell_key({"a": 2, "b": 1})


def test_keys_are_stable_across_key_order_and_bookkeeping_settings():
    reordered = dict(reversed(list(SPEC.items())))
    reordered["grid"] = dict(reversed(list(SPEC["grid"].items())))
    a = {c.key for c in cells_of()}
    b = {c.key for c in cells_of(reordered)}
    assert a == b
    c = {c.key for c in cells_of({**SPEC, "device": "cpu", "data_dir": "/tmp/x"})}
    assert a == c
    # a setting that changes results changes every key
    d = {c.key for c in cells_of({**SPEC, "epochs": 3})}
    assert not (a & d)
    # a subset of seeds gives a subset of the same keys
    e = {c.key for c in cells_of({**SPEC, "seeds": [1]})}
    assert e < a and len(e) == len(a) // 2


def test_known_key_value():
    """Pin one key so that an accidental change of the config layout is noticed (it would orphan
    every stored result)."""
    data = {"name": "pin", "dataset": "digits", "model": "tiny_cnn", "acts": ["relu"],
            "seeds": [0]}
    (cell,) = cells_of(data, check_names=False)
    expected_config = {
        "act": "relu", "act_kwargs": {}, "dataset": "digits", "dataset_kwargs": {},
        "model": "tiny_cnn", "model_kwargs": {}, "norm": "bn", "norm_kwargs": {}, "seed": 0,
        "split_seed": 0, "study": "pin", "threads": 1,
        "train": {"batch_size": 32, "epochs": 10, "lr": 0.05, "optimizer": "sgd", "seed": 0},
        "val_fraction": 0.1,
    }
    assert cell.config == expected_config
    text = ('{"act":"relu","act_kwargs":{},"dataset":"digits","dataset_kwargs":{},'
            '"model":"tiny_cnn","model_kwargs":{},"norm":"bn","norm_kwargs":{},"seed":0,'
            '"split_seed":0,"study":"pin","threads":1,"train":{"batch_size":32,"epochs":10,'
            '"lr":0.05,"optimizer":"sgd","seed":0},"val_fraction":0.1}')
    assert cell.key == hashlib.sha1(text.encode()).hexdigest()


LAYER_AXIS = {
    "name": "lam",
    "dataset": "digits",
    "model": "tiny_cnn",
    "acts": ["relu"],
    "norms": ["bn", "agc"],
    "seeds": [0, 1],
    "epochs": 1,
    "norm_kwargs": {"agc": {"affine": True}},
    "grid": {"norm_kwargs.agc.lam_init": [0.0, 0.5, 1.0], "lr": [0.1, 0.2]},
}


def test_layer_option_axis_varies_only_its_own_layer():
    spec = parse_spec(LAYER_AXIS, source="lam.toml")
    cells = expand(spec)
    agc = [c for c in cells if c.norm == "agc"]
    bn = [c for c in cells if c.norm == "bn"]
    # AGC: 2 seeds x 3 lam_init x 2 lr; BN: 2 seeds x 2 lr (not repeated per lam_init)
    assert len(agc) == 12 and len(bn) == 4
    assert spec.cell_count() == len(cells) == len({c.key for c in cells})
    assert {c.config["norm_kwargs"]["lam_init"] for c in agc} == {0.0, 0.5, 1.0}
    assert all(c.config["norm_kwargs"]["affine"] is True for c in agc)
    assert all(c.config["norm_kwargs"] == {} for c in bn)
    assert all(set(c.axes) == {"lr"} for c in bn)
    assert all(set(c.axes) == {"norm_kwargs.agc.lam_init", "lr"} for c in agc)


def test_layer_option_axis_errors_name_the_key():
    import pytest

    from actlab.sweep.spec import SpecError

    cases = [
        ({"norm_kwargs.gn.lam_init": [0.0, 1.0]}, "not in norms"),
        ({"norm_kwargs.agc": [0.0, 1.0]}, "needs the layer and the option"),
        ({"norm_kwargs.agc.affine": [True, False]}, "set it in one place only"),
        ({"norm_kwargs.agc.lam_nit": [0.0, 1.0]}, "rejects"),
    ]
    for grid, message in cases:
        with pytest.raises(SpecError, match=message) as info:
            parse_spec({**LAYER_AXIS, "grid": grid}, source="lam.toml")
        assert "grid.norm_kwargs.agc" in str(info.value) or "grid.norm_kwargs.gn" in str(info.value)
