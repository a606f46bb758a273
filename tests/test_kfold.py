"""k-fold cross-validation: the fold partition, the spec key, the cells and a tiny run end to end.

A spec's ``folds = k`` partitions the training data into k stratified folds (by ``split_seed``);
cell ``fold = i`` trains on the other k-1 folds, validates on fold i and reports the test split.
"""

from __future__ import annotations

import numpy as np
import pytest

from actlab.data import load_dataset
from actlab.data.split import fold_split, kfold_indices
from actlab.report.load import load_runs
from actlab.report.tables import summarize_runs
from actlab.sweep.grid import expand
from actlab.sweep.runner import run_cells
from actlab.sweep.spec import SpecError, parse_spec

LABELS = np.repeat(np.arange(4), [13, 7, 10, 3])  # unbalanced, one class smaller than k


def test_folds_partition_the_indices_and_are_near_equal():
    folds = kfold_indices(LABELS, 5, seed=3)
    joined = np.concatenate(folds)
    assert sorted(joined.tolist()) == list(range(len(LABELS)))  # disjoint and covering
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    for c in np.unique(LABELS):  # stratified: each class spread as evenly as integers allow
        per_fold = [int((LABELS[f] == c).sum()) for f in folds]
        assert max(per_fold) - min(per_fold) <= 1, (c, per_fold)


def test_folds_are_deterministic_and_depend_on_the_seed():
    a = kfold_indices(LABELS, 4, seed=0)
    b = kfold_indices(LABELS, 4, seed=0)
    c = kfold_indices(LABELS, 4, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_unstratified_folds_partition_too():
    folds = kfold_indices(None, 3, seed=0, n=10)
    assert sorted(np.concatenate(folds).tolist()) == list(range(10))
    assert sorted(len(f) for f in folds) == [3, 3, 4]


def test_fold_split_is_the_rest_and_the_fold():
    folds = kfold_indices(LABELS, 3, seed=2)
    rest, held = fold_split(LABELS, 3, 1, seed=2)
    assert np.array_equal(held, folds[1])
    assert np.array_equal(rest, np.sort(np.concatenate([folds[0], folds[2]])))
    with pytest.raises(ValueError, match="fold must be"):
        fold_split(LABELS, 3, 3, seed=2)
    with pytest.raises(ValueError, match="k >= 2"):
        kfold_indices(LABELS, 1, seed=0)


def test_load_dataset_holds_out_the_fold_as_validation():
    whole = load_dataset("digits", val_fraction=0.0, normalize=False)
    n_pool = len(whole.train)  # the training data left after the fixed test carve
    seen = []
    for i in range(3):
        s = load_dataset("digits", val_fraction=0.0, folds=3, fold=i, normalize=False)
        assert len(s.train) + len(s.val) == n_pool
        assert len(s.test) == len(whole.test)
        assert s.meta["folds"] == 3 and s.meta["fold"] == i
        seen.append(s.val.tensors[0].reshape(len(s.val), -1))
    # the three validation folds are disjoint and together the whole training pool
    rows = {tuple(r.tolist()) for v in seen for r in v}
    pool = {tuple(r.tolist()) for r in whole.train.tensors[0].reshape(n_pool, -1)}
    assert sum(len(v) for v in seen) == n_pool and rows <= pool
    with pytest.raises(ValueError, match="val_fraction must be 0"):
        load_dataset("digits", val_fraction=0.1, folds=3, fold=0)


SPEC = {"name": "kfold", "dataset": "digits", "model": "tiny_cnn", "acts": ["relu", "elu"],
        "seeds": [0], "folds": 3, "epochs": 1, "batch_size": 64, "lr": 0.05, "device": "cpu"}


def test_spec_folds_become_cells_with_distinct_keys():
    spec = parse_spec(SPEC, source="k.toml")
    assert spec.folds == 3 and spec.val_fraction == 0.0
    cells = expand(spec)
    assert len(cells) == spec.cell_count() == 6
    assert len({c.key for c in cells}) == 6
    assert sorted((c.act, c.fold) for c in cells) == sorted(
        (a, i) for a in ("relu", "elu") for i in range(3))
    assert all(c.config["folds"] == 3 and c.config["fold"] == c.fold for c in cells)
    assert all(c.axes == {} for c in cells)  # a fold is a replicate, not a sweep axis
    assert "fold2" in cells[-1].label


def test_a_spec_without_folds_keeps_its_cell_keys():
    plain = {k: v for k, v in SPEC.items() if k != "folds"}
    cells = expand(parse_spec(plain, source="p.toml"))
    assert all("fold" not in c.config and "folds" not in c.config for c in cells)
    assert all(c.fold is None for c in cells)


@pytest.mark.parametrize("change, key", [
    ({"val_fraction": 0.2}, "val_fraction"),
    ({"folds": 1}, "folds"),
    ({"folds": True}, "folds"),
    ({"grid": {"fold": [0, 1]}}, "grid.fold"),
    ({"grid": {"val_fraction": [0.1, 0.2]}}, "grid.val_fraction"),
])
def test_bad_fold_settings_are_refused(change, key):
    with pytest.raises(SpecError) as err:
        parse_spec({**SPEC, **change}, source="k.toml")
    assert err.value.key == key


def test_tiny_three_fold_digits_run_reports_over_folds(tmp_path):
    cells = expand(parse_spec(SPEC, source="k.toml"))
    db = tmp_path / "k.sqlite"
    res = run_cells(cells, db_path=db, out_dir=tmp_path / "out", progress=False)
    assert res.ok and res.done == 6
    runs = load_runs(db)
    assert len(runs) == 6
    table = summarize_runs(runs, "test_acc")
    assert table.axes == []  # folds are grouped like seeds, not a column
    by_layer = {g.layer: g for g in table.groups}
    assert set(by_layer) == {"relu", "elu"}
    for layer, g in by_layer.items():
        vals = [r.value("test_acc") for r in runs if r.act == layer]
        assert sorted(g.values) == [(0, 0), (0, 1), (0, 2)]  # (seed, fold) replicates
        assert g.summary.n == 3
        assert g.summary.mean == pytest.approx(sum(vals) / 3)
