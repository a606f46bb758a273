"""report.curves and report.plots: curve values against independent references, PNG output."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special
from scipy import stats as st
from torch import nn

from actlab.registry import ACTIVATIONS, get_act
from actlab.report import plots
from actlab.report.curves import (
    epochs_to_reach,
    history_curve,
    history_value,
    layer_stat_curves,
)
from actlab.report.load import RunRecord, load_runs
from test_report_fixtures import make_layer_store, make_norm_store

XS = np.linspace(-3.0, 3.0, 241)


@pytest.fixture(scope="module")
def layer_runs(tmp_path_factory):
    return load_runs(make_layer_store(tmp_path_factory.mktemp("s") / "l.sqlite"), "acts")


@pytest.fixture(scope="module")
def norm_runs(tmp_path_factory):
    return load_runs(make_norm_store(tmp_path_factory.mktemp("s") / "n.sqlite"))


# -- the real SAU / ASH layers, registered for a test when main has not registered them yet ----
@pytest.fixture
def paper_layers(monkeypatch):
    """'sau' -> actlab.nn.sau.SAU and 'ash' -> actlab.nn.ash.ASH (unless already registered)."""
    from actlab.nn.ash import ASH
    from actlab.nn.sau import SAU
    from actlab.registry import _act_entry

    for name, cls in (("sau", SAU), ("ash", ASH)):
        if name not in ACTIVATIONS:
            monkeypatch.setitem(ACTIVATIONS._factories, name, _act_entry(cls))


# -- activation curves -------------------------------------------------------------------------
def _sigmoid(x):
    return special.expit(x)


REFERENCES = {
    # name, kwargs: (f, f')
    ("relu", ()): (lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(float)),
    ("leaky_relu", (("negative_slope", 0.2),)): (
        lambda x: np.where(x > 0, x, 0.2 * x), lambda x: np.where(x > 0, 1.0, 0.2)),
    ("gelu", ()): (lambda x: x * st.norm.cdf(x), lambda x: st.norm.cdf(x) + x * st.norm.pdf(x)),
    ("swish", ()): (lambda x: x * _sigmoid(x),
                    lambda x: _sigmoid(x) + x * _sigmoid(x) * (1 - _sigmoid(x))),
    ("softplus", ()): (lambda x: np.log1p(np.exp(x)), _sigmoid),
    ("tanh", ()): (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    ("elu", ()): (lambda x: np.where(x > 0, x, np.expm1(x)),
                  lambda x: np.where(x > 0, 1.0, np.exp(x))),
    ("mish", ()): (lambda x: x * np.tanh(np.log1p(np.exp(x))), None),
}


@pytest.mark.parametrize("key", list(REFERENCES), ids=lambda k: k[0])
def test_activation_curves_match_closed_forms(key):
    name, kw = key
    f, df = REFERENCES[key]
    xs = XS[np.abs(XS) > 1e-9]  # avoid the kink of relu-like functions at 0
    (curve,) = plots.activation_curves([(name, dict(kw))], xs).values()
    np.testing.assert_allclose(curve.x, xs)
    np.testing.assert_allclose(curve.y, f(xs), rtol=1e-10, atol=1e-12)
    if df is not None:
        np.testing.assert_allclose(curve.dy, df(xs), rtol=1e-9, atol=1e-12)


def test_every_baseline_equals_its_module_and_finite_differences():
    names = plots.baseline_activation_names()
    assert {"relu", "gelu", "leaky_relu"} <= set(names) and "sau" not in names
    xs = np.linspace(-3.0, 3.0, 61) + 0.013  # no grid point on a kink
    curves = plots.activation_curves(names, xs)
    assert list(curves) == names
    h = 1e-6
    for name, c in curves.items():
        module = get_act(name).double().eval()
        with torch.no_grad():
            x = torch.tensor(xs).reshape(1, 1, -1)
            y = module(x).reshape(-1).numpy()
            fd = ((module(x + h) - module(x - h)) / (2 * h)).reshape(-1).numpy()
        np.testing.assert_allclose(c.y, y, rtol=1e-12, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(c.dy, fd, rtol=1e-5, atol=1e-6, err_msg=name)


def test_baselines_leave_out_batch_dependent_layers(paper_layers, monkeypatch):
    from actlab.nn.ash import ASH, ASHTopK
    from actlab.registry import _act_entry

    monkeypatch.setitem(ACTIVATIONS._factories, "ash_topk", _act_entry(ASHTopK))
    monkeypatch.setitem(ACTIVATIONS._factories, "ash_copy", _act_entry(ASH))
    monkeypatch.setitem(ACTIVATIONS._factories, "needs_arg", lambda width, **kw: nn.Identity())
    names = plots.baseline_activation_names()
    assert not {"ash_topk", "ash_copy", "needs_arg", "sau", "ash"} & set(names)
    assert not plots.is_pointwise(ASHTopK(0.5).double())
    assert plots.is_pointwise(get_act("gelu").double())


def test_activation_spec_labels_and_errors():
    curves = plots.activation_curves(["relu", ("leaky_relu", {"negative_slope": 0.1})],
                                     derivatives=False)
    assert list(curves) == ["relu", "leaky_relu(negative_slope=0.1)"]
    assert all(c.dy is None for c in curves.values())
    with pytest.raises(TypeError, match="activation spec"):
        plots.activation_curves([3])
    with pytest.raises(ValueError, match="1-D grid"):
        plots.activation_curves(["relu"], [[0.0, 1.0]])
    with pytest.raises(KeyError, match="unknown activation"):
        plots.activation_curves(["no_such_act"])


def test_sau_curve_matches_quadrature(paper_layers):
    alpha, n = 0.1, 2.0
    xs = np.linspace(-2.0, 2.0, 9)
    (c,) = plots.activation_curves([("sau", {"alpha": alpha, "n": n})], xs).values()

    def conv(x: float) -> float:
        def integrand(t):
            return max(x - t, alpha * (x - t)) * n * st.norm.pdf(n * t)

        # split at the kink t = x of the integrand
        return sum(integrate.quad(integrand, a, b, epsabs=1e-13)[0]
                   for a, b in ((-np.inf, x), (x, np.inf)))

    np.testing.assert_allclose(c.y, [conv(x) for x in xs], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("alpha", "n"), [(0.01, 1.0), (0.15, 5.0), (0.3, 20000.0)])
def test_sau_curve_matches_functional_and_autograd(paper_layers, alpha, n):
    from actlab.functional.sau import sau, sau_reference

    xs = np.linspace(-2.0, 2.0, 201) + 1e-3
    (c,) = plots.activation_curves([("sau", {"alpha": alpha, "n": n})], xs).values()
    x = torch.tensor(xs, dtype=torch.float64, requires_grad=True)
    alpha = float(np.float32(alpha))  # the module keeps alpha as a float32 parameter
    np.testing.assert_allclose(c.y, sau(x.detach(), alpha, n).numpy(), rtol=1e-12, atol=1e-14)
    # the derivative against float64 autograd of the naive formula (not SAU's own backward)
    y = sau_reference(x, alpha, n)
    (dy,) = torch.autograd.grad(y.sum(), x)
    np.testing.assert_allclose(c.y, y.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(c.dy, dy.numpy(), rtol=1e-10, atol=1e-12)
    # and against the closed form (1+a)/2 + (1-a)/2 erf(nx/sqrt 2)
    np.testing.assert_allclose(c.dy, (1 + alpha) / 2 + (1 - alpha) / 2 * special.erf(
        n * xs / math.sqrt(2)), rtol=1e-10, atol=1e-12)


def test_sau_family_lines_are_leaky_relu_and_sau(paper_layers):
    from actlab.functional.sau import sau

    xs = np.linspace(-2.0, 2.0, 81)
    fig = plots.plot_sau_family(ns=(1, 4), alpha=0.05, xs=xs)
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines() if ln.get_label()[0] != "_"}
    assert list(lines) == ["Leaky ReLU (α=0.05)", "SAU (n=1)", "SAU (n=4)"]
    np.testing.assert_allclose(lines["Leaky ReLU (α=0.05)"].get_ydata(),
                               np.where(xs > 0, xs, 0.05 * xs))
    for n in (1, 4):
        ref = sau(torch.tensor(xs), float(np.float32(0.05)), float(n)).numpy()
        np.testing.assert_allclose(lines[f"SAU (n={n})"].get_ydata(), ref, rtol=1e-12)


@pytest.mark.parametrize(("z", "alpha"), [(0.0, 1.0), (1.0, 2.0), (-0.5, 4.0)])
def test_ash_gate_matches_functional(paper_layers, z, alpha):
    from actlab.functional.ash import ash

    us = np.linspace(-3, 3, 301)
    (params,) = plots.ash_gate_params((z,), (alpha,))
    assert params == {"z_init": z, "alpha": alpha}  # actlab.nn.ash.ASH's keyword
    ((u, gate),) = plots.ash_gate_curves([params], us).values()
    np.testing.assert_allclose(u, us, atol=1e-12)
    ok = np.isfinite(gate)
    assert ok.sum() == 300  # only u = 0 is undefined
    batch = plots.standardised_batch(torch.tensor(us))
    ref = ash(batch.reshape(1, -1), z, alpha)[0, : len(us)].numpy()
    np.testing.assert_allclose(gate[ok] * u[ok], ref[ok], rtol=1e-12, atol=1e-14)
    # ASH's sigma is sqrt(var + eps), eps = 1e-5, and the batch has var = 1 exactly
    sigma = math.sqrt(1 + 1e-5)
    np.testing.assert_allclose(gate[ok], special.expit(2 * alpha * (u[ok] - z * sigma)),
                               rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("lo", [0.5, 3.0, 6.0])
def test_standardised_batch(lo):
    grid = torch.linspace(-lo, lo, 101, dtype=torch.float64)
    batch = plots.standardised_batch(grid)
    assert batch.mean().item() == pytest.approx(0.0, abs=1e-12)
    assert batch.std(unbiased=False).item() == pytest.approx(1.0, rel=1e-12)
    torch.testing.assert_close(batch[:101], grid - grid.mean())


# -- curve data --------------------------------------------------------------------------------
def _run(seed, hist):
    return RunRecord(f"k{seed}", "s", "d", "m", "relu", "bn", seed, {}, hist, {})


def test_history_curve_mean_std_and_derived_error():
    a = [{"epoch": 1, "val_acc": 0.5}, {"epoch": 2, "val_acc": 0.7}, {"epoch": 3, "val_acc": 0.8}]
    b = [{"epoch": 1, "val_acc": 0.6}, {"epoch": 2, "val_acc": 0.9}]
    c = history_curve([_run(0, a), _run(1, b)], "val_error")
    np.testing.assert_array_equal(c.epochs, [1, 2, 3])
    np.testing.assert_allclose(c.mean, [0.45, 0.2, 0.2])
    np.testing.assert_allclose(c.std, [np.std([0.5, 0.4], ddof=1), np.std([0.3, 0.1], ddof=1), 0])
    np.testing.assert_array_equal(c.n, [2, 2, 1])
    assert history_value({"val_pixel_error": 0.25}, "val_pixel_error") == 0.25
    assert history_value({}, "val_loss") is None


def test_epochs_to_reach():
    fast = [{"epoch": e, "val_loss": v} for e, v in enumerate([1.0, 0.5, 0.3, 0.2], 1)]
    slow = [{"epoch": e, "val_loss": v} for e, v in enumerate([1.0, 0.8, 0.6, 0.4], 1)]
    runs = [_run(0, fast), _run(1, fast),
            RunRecord("x", "s", "d", "m", "sau", "bn", 0, {}, slow, {})]
    res = epochs_to_reach(runs, "val_loss")
    rows = {r.layer: r for r in res.rows}
    assert rows["relu"].threshold == pytest.approx(0.4)  # slow layer's best mean value
    assert rows["relu"].first_epochs == (3, 3) and rows["sau"].first_epochs == (4,)
    res = epochs_to_reach(runs, "val_loss", 0.35)
    rows = {r.layer: r for r in res.rows}
    assert rows["relu"].first_epochs == (3, 3) and rows["relu"].mean_curve_epoch == 3
    assert rows["sau"].first_epochs == (None,) and rows["sau"].mean_curve_epoch is None
    text = res.format("md")
    assert "| sau |" in text.replace("| d | m ", "") and "0/1" in text and "2/2" in text


def test_layer_stat_curves_per_module(norm_runs):
    agc = [r for r in norm_runs if r.norm == "agc"]
    curves = layer_stat_curves(agc, "lambda")
    assert list(curves) == ["features.1/lambda", "features.4/lambda"]
    c = curves["features.1/lambda"]
    assert len(c) == 6 and c.n[0] == len(agc)
    assert c.mean[-1] == pytest.approx(0.9) and c.mean[0] == pytest.approx(0.9 * (0.5 + 0.5 / 6))
    assert layer_stat_curves([r for r in norm_runs if r.norm == "bn"], "lambda") == {}


# -- figure content (every kind's PNG file is written in test_report_cli) ----------------------
def test_run_figures_content(layer_runs, norm_runs):
    """What the run figures draw (their PNG files are written in test_report_cli)."""
    figs = {
        "curves": plots.plot_training_curves(layer_runs),
        "val": plots.plot_val_loss(layer_runs),
        "grid": plots.plot_norm_grid(norm_runs),
        "lambda": plots.plot_agc_lambda(norm_runs),
        "ash": plots.plot_ash_stats(layer_runs),
    }
    assert all(fig.axes and fig.axes[0].get_lines() for fig in figs.values())
    grid = figs["grid"]
    assert len(grid.axes) == 4  # 2 batch sizes x 2 learning rates
    titles = sorted(ax.get_title() for ax in grid.axes)
    assert titles[0] == "batch_size=2, lr=0.01"
    # two layers x (line) per panel
    assert all(len(ax.get_lines()) == 2 for ax in grid.axes)
    # curves figure: a row per (dataset, model) cell, 2 panels each; 3 layers x (train, test)
    assert len(figs["curves"].axes) == 6
    assert len(figs["curves"].axes[0].get_lines()) == 6
    # the plotted test-accuracy line is the seed mean (in %)
    line = figs["curves"].axes[0].get_lines()[0]
    cell_runs = [r for r in layer_runs if (r.dataset, r.model, r.act) == ("digits", "mlp", "ash")]
    expect = history_curve(cell_runs, "test_acc").mean * 100
    np.testing.assert_allclose(line.get_ydata(), expect)


def test_segmentation_runs(tmp_path):
    from test_report_fixtures import add_run, connect, fake_history

    tmp_path.mkdir(parents=True, exist_ok=True)
    con = connect(tmp_path / "seg.sqlite")
    for norm, acc in (("bn", 0.7), ("agc", 0.8)):
        for seed in range(2):
            add_run(con, study="seg", dataset="camvid", model="segnet", act="relu", norm=norm,
                    seed=seed, history=fake_history(acc + 0.01 * seed, segmentation=True))
    con.commit()
    con.close()
    runs = load_runs(tmp_path / "seg.sqlite")
    fig = plots.plot_norm_grid(runs)
    assert fig.axes[0].get_ylabel() == "val_pixel_error"
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "relu+agc"]
    np.testing.assert_allclose(line.get_ydata()[-1], 1 - 0.805)
    fig = plots.plot_training_curves(runs)
    assert fig.axes[0].get_ylabel() == "pixel_acc (%)"
    from actlab.report.tables import summarize_runs

    table = summarize_runs(runs)
    assert table.metric == "test_miou" and table.percent
    assert {table.groups[i].layer for i in table.best()} == {"relu+agc"}


def test_plot_errors(layer_runs):
    with pytest.raises(ValueError, match="no finished runs"):
        plots.plot_val_loss([])
    with pytest.raises(ValueError, match="layer stats ending in 'lambda'"):
        plots.plot_agc_lambda(layer_runs)
    with pytest.raises(ValueError, match="no config key named 'momentum'"):
        plots.plot_norm_grid(layer_runs, row_axis="momentum")


def _segnet_agc_runs(tmp_path, model="segnet", n_layers=3):
    from test_report_fixtures import add_run, connect, fake_history

    # the store sorts JSON keys, so decoder.* comes before encoder.* in the history
    names = sorted([f"encoder.{i}.convs.0.norm" for i in range(n_layers)]
                   + [f"decoder.{i}.convs.0.norm" for i in range(n_layers)])
    stats = {name: {"lambda": 1.0 + 0.01 * i} for i, name in enumerate(names)}
    tmp_path.mkdir(parents=True, exist_ok=True)
    con = connect(tmp_path / "seg.sqlite")
    for seed in range(2):
        add_run(con, study="seg", dataset="synthetic_shapes", model=model, act="relu",
                norm="agc", seed=seed, config={"model_kwargs": {"width": 0.125}},
                history=fake_history(0.8, layer_stats=stats, segmentation=True))
    con.commit()
    con.close()
    return load_runs(tmp_path / "seg.sqlite")


def test_layer_stats_are_ordered_by_depth_in_the_rebuilt_model(tmp_path):
    runs = _segnet_agc_runs(tmp_path)
    assert list(runs[0].history[0]["layer_stats"])[0].startswith("decoder")
    order = [k.split("/")[0] for k in layer_stat_curves(runs, "lambda")]
    assert order == ["encoder.0.convs.0.norm", "encoder.1.convs.0.norm",
                     "encoder.2.convs.0.norm", "decoder.0.convs.0.norm",
                     "decoder.1.convs.0.norm", "decoder.2.convs.0.norm"]


def test_layer_stats_keep_the_logged_order_for_an_unknown_model(tmp_path):
    runs = _segnet_agc_runs(tmp_path, model="not_a_model")
    order = [k.split("/")[0] for k in layer_stat_curves(runs, "lambda")]
    assert order == sorted(order) and order[0].startswith("decoder")


def test_many_modules_get_a_colour_bar_instead_of_a_legend(tmp_path):
    few = plots.plot_agc_lambda(_segnet_agc_runs(tmp_path / "a", n_layers=3))
    assert len(few.axes) == 1 and few.axes[0].get_legend() is None and len(few.legends) == 1
    many = plots.plot_agc_lambda(_segnet_agc_runs(tmp_path / "b", n_layers=6))
    data_axes = [ax for ax in many.axes if ax.get_lines()]
    assert len(data_axes) == 1 and len(data_axes[0].get_lines()) == 12
    assert data_axes[0].get_legend() is None
    bar = [ax for ax in many.axes if ax not in data_axes]
    assert len(bar) == 1 and "by depth" in bar[0].get_ylabel()


def test_training_curves_plot_the_task_metric() -> None:
    """Translation and detection histories have no accuracy: the quality panel shows test BLEU
    (in points, not scaled) and test mAP@0.5 (a fraction, shown in %)."""
    from actlab.report.curves import accuracy_keys
    from actlab.report.plots import plot_training_curves

    bleu = [{"epoch": e, "train_loss": 2.0 / e, "test_loss": 1.0 / e, "test_bleu": 20.0 * e,
             "train_token_acc": 0.5, "test_token_acc": 0.5} for e in (1, 2, 3)]
    runs = [RunRecord(f"k{s}", "s", "scan", "t", a, "ln", s, {}, bleu, {})
            for s in (0, 1) for a in ("relu", "sau")]
    assert accuracy_keys(runs) == ("train_bleu", "test_bleu")
    fig = plot_training_curves(runs)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "bleu"
    ys = [y for line in ax.get_lines() for y in line.get_ydata()]
    assert max(ys) == 60.0  # BLEU points, not ×100
    fig.clf()
    det = [{"epoch": 1, "train_loss": 1.0, "test_loss": 1.0, "test_map50": 0.4}]
    runs = [RunRecord("k", "s", "synthetic_detection", "ssd", "relu", "bn", 0, {}, det, {})]
    assert accuracy_keys(runs) == ("train_map50", "test_map50")
