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
