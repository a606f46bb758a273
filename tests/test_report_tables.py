"""report.load and report.tables on fabricated stores."""

from __future__ import annotations

import csv
import io
import sqlite3

import numpy as np
import pytest
from scipy import stats as st

from actlab.report.grouping import higher_is_better, metric_bounds, varying_axes
from actlab.report.load import StoreError, load_runs
from actlab.report.tables import summarize_runs, win_tie_loss
from test_report_fixtures import BASE, NOISE, make_layer_store, make_norm_store


@pytest.fixture(scope="module")
def layer_db(tmp_path_factory):
    return make_layer_store(tmp_path_factory.mktemp("store") / "runs.sqlite")


@pytest.fixture(scope="module")
def norm_db(tmp_path_factory):
    return make_norm_store(tmp_path_factory.mktemp("store") / "norm.sqlite")


# -- loading -----------------------------------------------------------------------------------
def test_load_only_done_and_study_filter(layer_db):
    runs = load_runs(layer_db)
    assert len(runs) == 3 * 3 * 5 + 1  # the failed and running rows are skipped
    acts = load_runs(layer_db, study="acts")
    assert len(acts) == 45 and {r.study for r in acts} == {"acts"}
    assert len(load_runs(layer_db, study=["acts", "other"])) == 46
    assert load_runs(layer_db, study="nope") == []
    r = acts[0]
    assert isinstance(r.config, dict) and isinstance(r.history, list) and r.history
    assert r.value("test_acc") == r.history[-1]["test_acc"]
    assert r.value("wall_time") == pytest.approx(12.5 + r.seed)
    with pytest.raises(KeyError, match="no metric 'test_miou'"):
        r.value("test_miou")


def test_load_path_with_odd_characters(tmp_path):
    odd = tmp_path / "my results #1?" / "a b%20.sqlite"
    odd.parent.mkdir()
    make_layer_store(odd, cells=1)
    assert len(load_runs(odd, "acts")) == 15


def test_load_errors(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        load_runs(tmp_path / "missing.sqlite")
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="'runs' table"):
        load_runs(other)
    with pytest.raises(TypeError, match="study"):
        load_runs(other, study=[1])


# -- grouping ----------------------------------------------------------------------------------
def test_direction_of_metrics():
    assert higher_is_better("test_acc") and higher_is_better("test_miou")
    assert not higher_is_better("test_pixel_error") and not higher_is_better("val_loss")
    with pytest.raises(ValueError, match="higher_is_better"):
        higher_is_better("weird")


def test_varying_axes(layer_db, norm_db):
    assert varying_axes(load_runs(layer_db, "acts")) == []  # seeds are not an axis
    assert varying_axes(load_runs(layer_db)) == ["study"]
    assert varying_axes(load_runs(norm_db)) == ["train.batch_size", "train.lr"]


# -- summary table -----------------------------------------------------------------------------
def test_summary_values_and_best(layer_db):
    table = summarize_runs(load_runs(layer_db, "acts"))
    assert table.metric == "test_acc" and table.higher_is_better and table.percent
    assert table.axes == [] and set(table.layers) == {"relu", "sau", "ash"}
    assert len(table.groups) == 9
    for (dataset, model), base in BASE.items():
        for act, noise in NOISE.items():
            grp = table.get(dataset, model, act)
            vals = np.array(noise) + base
            assert grp.summary.n == 5
            assert grp.summary.mean == pytest.approx(vals.mean(), rel=1e-12)
            assert grp.summary.std == pytest.approx(vals.std(ddof=1), rel=1e-9)
            ref = st.t.interval(0.95, 4, loc=vals.mean(), scale=st.sem(vals))
            assert (grp.summary.ci_low, grp.summary.ci_high) == pytest.approx(ref, rel=1e-9)
    best = {table.groups[i].layer for i in table.best()}
    assert best == {"sau"}


def test_summary_formats(layer_db):
    table = summarize_runs(load_runs(layer_db, "acts"))
    text = table.format("text")
    assert "digits / tiny_cnn" in text and "95% CI" in text and "higher is better" in text
    sau_line = next(line for line in text.splitlines() if line.startswith("sau"))
    assert sau_line.count(" *") == 3  # best in all three columns
    relu_line = next(line for line in text.splitlines() if line.startswith("relu"))
    assert "*" not in relu_line
    # 90 + 5.02 (mean of sau noise) = 95.02 % on digits/tiny_cnn
    assert "95.02 ± " in sau_line

    md = table.format("md")
    assert md.count("**95.02 ± ") == 1 and "| layer |" in md and "|:---|" in md

    tex = table.format("latex")
    assert r"\textbf{95.02 $\pm$" in tex and r"\toprule" in tex and "tiny\\_cnn" in tex
    assert tex.count(r"\\") >= 4

    rows = list(csv.DictReader(io.StringIO(table.format("csv"))))
    assert len(rows) == 9
    sau = [r for r in rows if r["layer"] == "sau"]
    assert all(r["best"] == "True" for r in sau)
    assert float(sau[0]["mean"]) == pytest.approx(table.get(sau[0]["dataset"],
                                                            sau[0]["model"], "sau").summary.mean)
    long = table.format("text", layout="long")
    assert long.count("\n") > 9 and "mean ± std" in long
    with pytest.raises(ValueError, match="unknown table format"):
        table.format("html")


def test_lower_is_better_metric_bolds_smallest(layer_db):
    table = summarize_runs(load_runs(layer_db, "acts"), metric="test_loss")
    assert not table.higher_is_better and not table.percent
    assert {table.groups[i].layer for i in table.best()} == {"sau"}
    assert "lower is better" in table.format("text")


def test_axes_and_norm_layers(norm_db):
    table = summarize_runs(load_runs(norm_db))
    assert set(table.layers) == {"relu+bn", "relu+agc"}
    assert table.axis_labels == ["batch_size", "lr"]
    assert len(table.groups) == 8
    text = table.format("text")
    header = text.splitlines()[1].split()
    assert header[:3] == ["batch_size", "lr", "layer"]
    best = {(table.groups[i].axes, table.groups[i].layer) for i in table.best()}
    # best per column at equal (batch size, lr): AGC at bs 2; at bs 32 the two tie (both bold)
    assert ((2, 0.01), "relu+agc") in best and ((2, 0.1), "relu+agc") in best
    assert len(best) == 6
    rows = list(csv.DictReader(io.StringIO(table.format("csv"))))
    assert {r["train.batch_size"] for r in rows} == {"2", "32"}


def test_missing_metric_message(layer_db):
    with pytest.raises(ValueError, match="lack metric 'test_miou'"):
        summarize_runs(load_runs(layer_db, "acts"), metric="test_miou")
    with pytest.raises(ValueError, match="no finished runs"):
        summarize_runs([])


# -- win / tie / loss --------------------------------------------------------------------------
def test_win_tie_loss_clear_and_indistinguishable(layer_db):
    runs = load_runs(layer_db, "acts")
    wtl = win_tie_loss(runs, "sau", ["relu", "ash"])
    assert wtl.counts("relu") == {"win": 3, "tie": 0, "loss": 0, "n/a": 0}
    assert wtl.counts("ash") == {"win": 3, "tie": 0, "loss": 0, "n/a": 0}
    assert wtl.tests_used() == {"paired": 6}  # every cell shares seeds 0..4
    ash = win_tie_loss(runs, "ash", ["relu"])
    assert ash.counts("relu") == {"win": 0, "tie": 3, "loss": 0, "n/a": 0}
    relu = win_tie_loss(runs, "relu", ["sau"])
    assert relu.counts("sau")["loss"] == 3
    # the p-values are scipy's paired test
    cell = next(c for c in ash.cells if (c.dataset, c.model) == ("digits", "tiny_cnn"))
    ref = st.ttest_rel(np.array(NOISE["ash"]) + 0.9, np.array(NOISE["relu"]) + 0.9)
    assert cell.comparison.result.pvalue == pytest.approx(ref.pvalue, rel=1e-9)

    text = wtl.format("text")
    assert "alpha = 0.05" in text and "paired t-test" in text and "Welch" in text
    assert "sau better" in text
    md = win_tie_loss(runs, "sau", alpha=0.01, test="welch").format("md", details=True)
    assert "alpha = 0.01" in md and "Welch's t-test" in md and "| digits |" in md
    rows = list(csv.DictReader(io.StringIO(wtl.format("csv"))))
    assert len(rows) == 6 and {r["outcome"] for r in rows} == {"win"}
    assert "alpha = 0.05" in wtl.format("latex")


def test_win_tie_loss_welch_when_seeds_differ(tmp_path):
    from test_report_fixtures import add_run, connect, fake_history

    con = connect(tmp_path / "w.sqlite")
    for seed, acc in enumerate([0.80, 0.82, 0.81]):
        add_run(con, study="s", dataset="d", model="m", act="relu", norm="bn", seed=seed,
                history=fake_history(acc))
    for seed, acc in zip([5, 6, 7], [0.90, 0.91, 0.92], strict=True):
        add_run(con, study="s", dataset="d", model="m", act="sau", norm="bn", seed=seed,
                history=fake_history(acc))
    add_run(con, study="s", dataset="d", model="m", act="ash", norm="bn", seed=0,
            history=fake_history(0.9))
    con.commit()
    con.close()
    runs = load_runs(tmp_path / "w.sqlite")
    wtl = win_tie_loss(runs, "sau")
    assert wtl.baselines == ["ash", "relu"]
    assert wtl.counts("relu")["win"] == 1 and wtl.tests_used() == {"welch": 1}
    assert wtl.counts("ash")["n/a"] == 1  # one seed only: not testable
    paired = win_tie_loss(runs, "sau", ["relu"], test="paired")
    assert paired.counts("relu")["n/a"] == 1
    with pytest.raises(ValueError, match="unknown candidate layer 'gelu'"):
        win_tie_loss(runs, "gelu")
    with pytest.raises(ValueError, match="also listed"):
        win_tie_loss(runs, "sau", ["sau"])


def test_bare_act_name_resolves_when_norms_vary(norm_db):
    runs = load_runs(norm_db)
    with pytest.raises(ValueError, match="ambiguous"):
        win_tie_loss(runs, "relu")
    wtl = win_tie_loss(runs, "relu+agc", ["relu+bn"])
    # 4 (batch size, lr) cells: AGC significantly better at batch size 2, tie at 32
    assert wtl.counts("relu+bn") == {"win": 2, "tie": 2, "loss": 0, "n/a": 0}
    assert "batch_size, lr" in wtl.format("text")


def test_repeated_seed_is_kept_and_unpaired(layer_db):
    runs = load_runs(layer_db)  # study "other" repeats seed 0 of relu on digits/mlp
    table = summarize_runs(runs, axes=[])
    assert table.get("digits", "mlp", "relu").summary.n == 6
    wtl = win_tie_loss(runs, "sau", ["relu"], axes=[])
    cell = next(c for c in wtl.cells if (c.dataset, c.model) == ("digits", "mlp"))
    assert cell.comparison.result.test == "welch" and cell.n_baseline == 6


# -- intervals within the metric's range, corrections, baseline names ------------------------
def test_summary_intervals_stay_in_range(tmp_path):
    from test_report_fixtures import add_run, connect, fake_history

    path = tmp_path / "edge.sqlite"
    con = connect(path)
    for seed, acc in enumerate([0.90806, 0.93314]):  # t gives [76.13, 107.99]
        add_run(con, study="s", dataset="d", model="m", act="relu", norm="bn", seed=seed,
                history=fake_history(acc))
    con.commit()
    con.close()
    table = summarize_runs(load_runs(path))
    s = table.get("d", "m", "relu").summary
    ref = st.t.interval(0.95, 1, loc=0.9206, scale=st.sem([0.90806, 0.93314]))
    assert ref[1] > 1.0 and s.ci_high == 1.0 and s.ci_low == pytest.approx(ref[0], rel=1e-9)
    text = table.format("text")
    assert "92.06 ± 1.77 [76.13, 100.00]" in text and "Student t, clipped to [0, 100]" in text
    loss = summarize_runs(load_runs(path), "test_loss")
    assert loss.bounds == (0.0, np.inf) and loss.get("d", "m", "relu").summary.ci_low >= 0.0
    assert metric_bounds("test_acc", [0.5, 97.0]) == (0.0, 100.0)
    assert metric_bounds("test_acc", [0.5, 101.0]) is None
    assert metric_bounds("val_loss", [-0.1]) is None and metric_bounds("weird", [0.5]) is None


def _holm(p):
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out, running = [0.0] * m, 0.0
    for k, i in enumerate(order, start=1):
        running = max(running, min(1.0, (m - k + 1) * p[i]))
        out[i] = running
    return out


def test_win_tie_loss_correction_decides_on_adjusted_p(norm_db):
    runs = load_runs(norm_db)
    raw = win_tie_loss(runs, "relu+agc", ["relu+bn"], correction="none")
    holm = win_tie_loss(runs, "relu+agc", ["relu+bn"])  # Holm is the default
    assert holm.correction == "holm" and raw.correction == "none"
    ps = [c.comparison.result.pvalue for c in raw.cells]
    ref = _holm(ps)
    for c, p_adj in zip(holm.cells, ref, strict=True):
        assert c.comparison.pvalue == pytest.approx(p_adj, rel=1e-12)
        diff = c.comparison.result.mean_difference
        assert c.outcome == ("win" if p_adj < 0.05 and diff > 0 else
                             "loss" if p_adj < 0.05 else "tie")
    assert "Holm-corrected over the 4 comparisons" in holm.format("text")
    assert "no correction for multiple comparisons" in raw.format("text")
    details = holm.format("md", details=True)
    assert "p (holm)" in details
    rows = list(csv.DictReader(io.StringIO(win_tie_loss(runs, "relu+agc", ["relu+bn"],
                                                        correction="bh").format("csv"))))
    assert {r["correction"] for r in rows} == {"bh"}
    assert [float(r["pvalue_adjusted"]) for r in rows] == pytest.approx(
        st.false_discovery_control(ps).tolist(), rel=1e-12)
    with pytest.raises(ValueError, match="correction must be one of"):
        win_tie_loss(runs, "relu+agc", correction="bonferroni")


def test_baseline_without_norm_suffix(tmp_path, norm_db):
    runs = load_runs(norm_db)
    wtl = win_tie_loss(runs, "relu+agc", ["relu"])
    assert wtl.baselines == ["relu+bn"]
    # three norms: 'relu' still means relu+bn when the candidate is relu+agc, but not otherwise
    from test_report_fixtures import add_run, connect, fake_history

    path = make_norm_store(tmp_path / "three.sqlite")
    con = connect(path)
    for seed in range(3):
        add_run(con, study="bn_vs_agc", dataset="digits", model="tiny_cnn", act="relu",
                norm="gn", seed=seed, config={"train": {"batch_size": 2, "lr": 0.01}},
                history=fake_history(0.8 + 0.01 * seed))
    con.commit()
    con.close()
    runs3 = load_runs(path)
    with pytest.raises(ValueError, match=r"baseline layer 'relu' is ambiguous: it matches "
                                         r"relu\+bn, relu\+gn; write one of these"):
        win_tie_loss(runs3, "relu+agc", ["relu"])
    assert win_tie_loss(runs3, "relu+agc", ["relu+gn"]).baselines == ["relu+gn"]
