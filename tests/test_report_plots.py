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


# -- fake SAU / ASH modules so that plotting code paths run before the real layers land -------
class _ClosedFormSAU(nn.Module):
    """Leaky ReLU[alpha] * N(0, 1/n^2): alpha x + (1-alpha)(x Phi(nx) + phi(nx)/n)."""

    def __init__(self, alpha: float = 0.01, n: float = 1.0) -> None:
        super().__init__()
        self.alpha, self.n = alpha, n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nx = self.n * x
        pdf = torch.exp(-0.5 * nx * nx) / math.sqrt(2 * math.pi)
        return self.alpha * x + (1 - self.alpha) * (x * torch.special.ndtr(nx) + pdf / self.n)


class _LastDimASH(nn.Module):
    """x * sigmoid(2 alpha (x - mean - z std)), statistics over the last dimension."""

    def __init__(self, z: float = 0.0, alpha: float = 1.0) -> None:
        super().__init__()
        self.z, self.alpha = z, alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(-1, keepdim=True)
        sd = x.std(-1, keepdim=True, unbiased=False)
        return x * torch.sigmoid(2 * self.alpha * (x - mu - self.z * sd))


@pytest.fixture
def fake_layers(monkeypatch):
    """Register stand-in 'sau'/'ash' for the duration of one test (unless the real ones are)."""
    for name, cls in (("sau", _ClosedFormSAU), ("ash", _LastDimASH)):
        if name not in ACTIVATIONS:
            monkeypatch.setitem(ACTIVATIONS._factories, name, lambda cls=cls, **kw: cls(
                **{k: v for k, v in kw.items() if k != "inplace"}))


def _png_ok(path) -> bool:
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


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


@pytest.mark.skipif("sau" not in ACTIVATIONS, reason="SAU is not registered yet")
def test_sau_curve_matches_quadrature():
    alpha, n = 0.1, 2.0
    xs = np.linspace(-2.0, 2.0, 9)
    (c,) = plots.activation_curves([("sau", {"alpha": alpha, "n": n})], xs).values()

    def conv(x: float) -> float:
        def integrand(t):
            return max(x - t, alpha * (x - t)) * n * st.norm.pdf(n * t)

        return integrate.quad(integrand, -np.inf, np.inf, epsabs=1e-12)[0]

    np.testing.assert_allclose(c.y, [conv(x) for x in xs], rtol=1e-5, atol=1e-6)


def test_ash_gate_recovers_the_standardised_gate(fake_layers):
    params = [{"z": 0.0, "alpha": 1.0}, {"z": 1.0, "alpha": 2.0}]
    curves = plots.ash_gate_curves(params, np.linspace(-3, 3, 301))
    assert len(curves) == 2
    for kw, (u, gate) in zip(params, curves.values(), strict=True):
        np.testing.assert_allclose(u, np.linspace(-3, 3, 301), atol=1e-12)
        ok = np.isfinite(gate)
        assert ok.sum() == 300  # only u = 0 is undefined
        ref = special.expit(2 * kw["alpha"] * (u[ok] - kw["z"]))
        if isinstance(get_act("ash", **kw), _LastDimASH):
            np.testing.assert_allclose(gate[ok], ref, rtol=1e-10, atol=1e-12)
        else:  # the real ASH may use other statistics (e.g. unbiased std): looser
            np.testing.assert_allclose(gate[ok], ref, atol=2e-2)


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


# -- PNG output --------------------------------------------------------------------------------
def test_activation_figures_write_png(tmp_path, fake_layers):
    p1 = plots.save_figure(plots.plot_activations(), tmp_path / "baselines.png")
    p2 = plots.save_figure(plots.plot_sau_family(ns=(1, 3)), tmp_path / "sau.png")
    p3 = plots.save_figure(plots.plot_ash_gate([{"z": 0.0}, {"z": 1.5}]), tmp_path / "g.png")
    assert all(_png_ok(p) for p in (p1, p2, p3))


def test_run_figures_write_png(tmp_path, layer_runs, norm_runs):
    figs = {
        "curves": plots.plot_training_curves(layer_runs),
        "val": plots.plot_val_loss(layer_runs),
        "grid": plots.plot_norm_grid(norm_runs),
        "lambda": plots.plot_agc_lambda(norm_runs),
        "ash": plots.plot_ash_stats(layer_runs),
    }
    for name, fig in figs.items():
        assert _png_ok(plots.save_figure(fig, tmp_path / f"{name}.png")), name
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
