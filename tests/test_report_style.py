"""Figure style: a colour-blind-safe palette with distinct series, legends outside the data,
print sizes (every plot kind is drawn on fabricated stores)."""

from __future__ import annotations

import numpy as np
import pytest

from actlab.report import plots
from actlab.report.load import load_runs
from actlab.report.style import (
    COLUMN_WIDTH,
    OKABE_ITO,
    PAGE_WIDTH,
    depth_colors,
    paper_style,
    series_styles,
)
from test_report_fixtures import make_layer_store, make_norm_store

pytest.importorskip("matplotlib")


def _luminance(color) -> float:
    """WCAG relative luminance of an sRGB colour (0 black, 1 white)."""
    from matplotlib.colors import to_rgb

    c = np.array(to_rgb(color))
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return float(lin @ [0.2126, 0.7152, 0.0722])


def test_series_styles_are_distinct_and_never_pale():
    labels = [f"layer{i}" for i in range(28)]
    styles = series_styles(labels)
    keys = {(s["color"], s["marker"], s["linestyle"]) for s in styles.values()}
    assert len(keys) == len(labels)
    assert {s["color"] for s in styles.values()} <= set(OKABE_ITO)
    assert "#F0E442" not in OKABE_ITO  # Okabe-Ito yellow is left out
    # without line styles (train/test use them) colour + marker still differ
    no_ls = series_styles(labels[:20], linestyles=False)
    assert len({(s["color"], s["marker"]) for s in no_ls.values()}) == 20
    # Okabe-Ito yellow has luminance 0.74 (white: 1); everything drawn here stays well below
    assert max(_luminance(c) for c in OKABE_ITO) < 0.45
    assert max(_luminance(c) for c in depth_colors(25)) < 0.6
    assert _luminance("#F0E442") > 0.7


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    d = tmp_path_factory.mktemp("style")
    layer = load_runs(make_layer_store(d / "l.sqlite"), "acts")
    norm = load_runs(make_norm_store(d / "n.sqlite"))
    return {
        "activations": plots.plot_activations(["relu", "gelu", "elu", "swish", "tanh", "mish",
                                               "softplus", "leaky_relu", "relu6"]),
        "curves": plots.plot_training_curves(layer),
        "val-loss": plots.plot_val_loss(layer),
        "bn-vs-agc": plots.plot_norm_grid(norm),
        "agc-lambda": plots.plot_agc_lambda(norm),
        "ash": plots.plot_ash_stats(layer),
    }


@pytest.mark.parametrize("kind", ["activations", "curves", "val-loss", "bn-vs-agc",
                                  "agc-lambda", "ash"])
def test_legends_sit_outside_every_panel(figures, kind):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = figures[kind]
    canvas = FigureCanvasAgg(fig)
    with paper_style():
        canvas.draw()
    renderer = canvas.get_renderer()
    assert all(ax.get_legend() is None for ax in fig.axes)
    assert len(fig.legends) == 1
    box = fig.legends[0].get_window_extent(renderer)
    for ax in fig.axes:
        if ax.get_visible():
            assert not box.overlaps(ax.get_window_extent(renderer)), kind


@pytest.mark.parametrize("kind", ["activations", "curves", "val-loss", "bn-vs-agc",
                                  "agc-lambda", "ash"])
def test_print_size_and_fonts(figures, kind):
    fig = figures[kind]
    ncols = max(ax.get_subplotspec().get_geometry()[1] for ax in fig.axes
                if ax.get_subplotspec() is not None)
    assert fig.get_figwidth() == (COLUMN_WIDTH if ncols <= 2 else PAGE_WIDTH)
    texts = [t for ax in fig.axes for t in (ax.title, ax.xaxis.label, ax.yaxis.label,
                                            *ax.get_xticklabels(), *ax.get_yticklabels())]
    texts += list(fig.legends[0].get_texts())
    sizes = {t.get_fontsize() for t in texts if t.get_text()}
    assert sizes and min(sizes) >= 6 and max(sizes) <= 9  # points at the printed width
    lines = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label()[:1] != "_"]
    assert all(_luminance(ln.get_color()) < 0.6 for ln in lines)
