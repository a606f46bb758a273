"""Figures: activation shapes, training curves, BN vs AGC grids and layer statistics.

Drawing uses :class:`matplotlib.figure.Figure` objects directly (no pyplot, no global backend
switch; PNGs are rendered by Agg), so it is safe in scripts, servers and tests. matplotlib is an
optional dependency (``pip install "actlab[plot]"``); everything that only computes numbers —
:func:`activation_curves`, :func:`ash_gate_curves` and :mod:`actlab.report.curves` — works without
it.

Style (:mod:`actlab.report.style`): Okabe–Ito colours with a marker (and, past seven series, a
line style) per series, 7–8 pt text at 3.3 in (one column) or 6.9 in (three-column grids) wide,
and every legend outside the panels, below the figure.

Figures follow the papers:

* SAU vs Leaky ReLU for several n, with derivatives (Biswas et al., SAU, arXiv 2021, Fig. 1);
* ASH's gate ``sigmoid(2α(u − z))`` against the standardised input ``u = (x − μ_X)/σ_X``
  (K. Lee et al., Stochastic Adaptive Activation Function, NeurIPS 2022);
* BN vs AGC validation error per epoch across batch sizes and learning rates
  (B. Ruff, Deep Control, arXiv 2017, Fig. 1).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from actlab.report import grouping as g
from actlab.report.curves import (
    Curve,
    accuracy_keys,
    curves_by_cell,
    group_runs,
    layer_stat_curves,
)
from actlab.report.load import RunRecord
from actlab.report.style import (
    COLUMN_WIDTH,
    PAGE_WIDTH,
    SeriesStyle,
    depth_colors,
    paper_style,
    series_styles,
    with_paper_style,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "ActivationSpec",
    "ActivationCurve",
    "activation_curves",
    "ash_gate_curves",
    "ash_gate_params",
    "ash_threshold_kw",
    "standardised_batch",
    "baseline_activation_names",
    "is_pointwise",
    "sau_specs",
    "plot_activations",
    "plot_sau_family",
    "plot_ash_gate",
    "plot_training_curves",
    "plot_val_loss",
    "plot_norm_grid",
    "plot_layer_stats",
    "plot_agc_lambda",
    "plot_ash_stats",
    "save_figure",
    "require_matplotlib",
]

#: activations that are not baselines (excluded from the baseline figure): the paper layers,
#: their variants and identity; names starting with :data:`NOT_BASELINE_PREFIXES` too
NOT_BASELINES = frozenset({"sau", "ash", "fash", "lash", "ash_topk", "identity"})
NOT_BASELINE_PREFIXES = ("sau_", "smooth_", "ash_")


def require_matplotlib() -> type[Figure]:
    """The matplotlib ``Figure`` class, or an ImportError that says how to install it."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - matplotlib is installed in dev
        raise ImportError(
            "actlab plotting needs matplotlib: pip install 'actlab[plot]' "
            "(or pip install matplotlib)"
        ) from exc
    return Figure


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 200) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix, parents created); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with paper_style():
        fig.savefig(out, dpi=dpi, bbox_inches="tight")
    return out


# ----------------------------------------------------------------------------------------------
# activation shapes (data)
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActivationSpec:
    """A registered activation name with constructor keyword arguments and a legend label."""

    name: str
    kwargs: Mapping[str, Any] | None = None
    label: str | None = None

    @classmethod
    def of(cls, spec: str | tuple[str, Mapping[str, Any]] | ActivationSpec) -> ActivationSpec:
        if isinstance(spec, ActivationSpec):
            return spec
        if isinstance(spec, str):
            return cls(spec)
        if (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str)
                and isinstance(spec[1], Mapping)):
            return cls(spec[0], dict(spec[1]))
        raise TypeError(
            f"activation spec must be a name, (name, kwargs) or ActivationSpec, got {spec!r}"
        )

    @property
    def title(self) -> str:
        if self.label:
            return self.label
        if not self.kwargs:
            return self.name
        args = ", ".join(f"{k}={g.format_axis_value(v)}" for k, v in self.kwargs.items())
        return f"{self.name}({args})"


@dataclass(frozen=True)
class ActivationCurve:
    """``y = f(x)`` and ``dy = f'(x)`` on a grid (float64)."""

    x: np.ndarray
    y: np.ndarray
    dy: np.ndarray | None


def _grid(xs: Sequence[float] | np.ndarray | torch.Tensor | None, lo: float, hi: float,
          n: int = 801) -> torch.Tensor:
    if xs is None:
        return torch.linspace(lo, hi, n, dtype=torch.float64)
    t = torch.as_tensor(np.asarray(xs, dtype=np.float64))
    if t.ndim != 1 or t.numel() < 2:
        raise ValueError(f"xs must be a 1-D grid of at least 2 points, got shape {tuple(t.shape)}")
    return t


def activation_curves(
    specs: Sequence[str | tuple[str, Mapping[str, Any]] | ActivationSpec],
    xs: Sequence[float] | np.ndarray | torch.Tensor | None = None,
    *,
    derivatives: bool = True,
    shape: tuple[int, ...] = (1, 1, -1),
) -> dict[str, ActivationCurve]:
    """Values and autograd derivatives of registered activations on the grid ``xs``.

    Each activation is built by :func:`actlab.registry.get_act` (``name, **kwargs``), cast to
    float64 and put in eval mode; the grid is fed as one tensor of ``shape`` (``-1`` is the grid
    axis). The derivative is ``d sum(f(x)) / dx``, i.e. ``f'(x)`` for a pointwise activation.
    Returns ``{label: ActivationCurve}`` in the order of ``specs``.
    """
    from actlab.registry import get_act

    x0 = _grid(xs, -4.0, 4.0)
    out: dict[str, ActivationCurve] = {}
    for raw in specs:
        spec = ActivationSpec.of(raw)
        module = get_act(spec.name, **dict(spec.kwargs or {})).to(torch.float64).eval()
        x = x0.clone().reshape(shape).requires_grad_(derivatives)
        with torch.enable_grad():
            y = module(x)
            if y.shape != x.shape:
                raise ValueError(
                    f"activation {spec.title!r} changed the shape {tuple(x.shape)} -> "
                    f"{tuple(y.shape)}; it is not pointwise"
                )
            dy = None
            if derivatives:
                (dy,) = torch.autograd.grad(y.sum(), x)
        out[spec.title] = ActivationCurve(
            x0.numpy().copy(),
            y.detach().reshape(-1).numpy().copy(),
            None if dy is None else dy.reshape(-1).numpy().copy(),
        )
    return out


def is_pointwise(module: torch.nn.Module, n: int = 64) -> bool:
    """Whether ``module`` (eval mode, float64) acts elementwise: the same values on a grid fed
    alone as inside a larger batch with other values (ASH-like layers that use batch or sample
    statistics fail this)."""
    x = torch.linspace(-3.0, 3.0, n, dtype=torch.float64).reshape(1, 1, n)
    other = torch.cat([x, 5 * x + 2.0], dim=-1)
    both = torch.cat([other, 0.3 * other - 1.0], dim=0)
    with torch.no_grad():
        alone = module(x)
        mixed = module(both)[:1, :, :n]
    return bool(torch.allclose(alone, mixed, rtol=1e-10, atol=1e-12))


def baseline_activation_names() -> list[str]:
    """Every registered activation except the paper layers and their variants (SAU, smoothed
    activations, the ASH family; see :data:`NOT_BASELINES`), identity, and any that is not
    pointwise or cannot be built without arguments."""
    from actlab.registry import ACTIVATIONS, get_act

    names = []
    for name in ACTIVATIONS.names():
        if name in NOT_BASELINES or name.startswith(NOT_BASELINE_PREFIXES):
            continue
        try:
            module = get_act(name).to(torch.float64).eval()
            ok = is_pointwise(module)
        except Exception:  # noqa: BLE001 - any failure means "not a plain baseline"
            ok = False
        if ok:
            names.append(name)
    return names


def sau_specs(
    ns: Sequence[float] = (1, 2, 5, 10),
    alpha: float = 0.01,
    *,
    n_kw: str = "n",
    alpha_kw: str = "alpha",
) -> list[ActivationSpec]:
    """Leaky ReLU[α] plus SAU with the same α for each n (the curves of SAU Fig. 1)."""
    specs = [ActivationSpec("leaky_relu", {"negative_slope": alpha}, f"Leaky ReLU (α={alpha:g})")]
    specs += [ActivationSpec("sau", {alpha_kw: alpha, n_kw: n}, f"SAU (n={n:g})") for n in ns]
    return specs


def standardised_batch(us: torch.Tensor) -> torch.Tensor:
    """``us`` (centred to mean 0) followed by ``K`` pairs ``±b`` chosen so that the whole tensor
    has mean 0 and population std 1 exactly; the first ``len(us)`` entries are the grid."""
    u = us - us.mean()
    n, s = u.numel(), float((u * u).sum())
    k = max(n, math.ceil(s))
    b = math.sqrt((n + 2 * k - s) / (2 * k))
    pad = torch.full((k,), b, dtype=u.dtype)
    return torch.cat([u, pad, -pad])


def ash_threshold_kw(name: str = "ash") -> str:
    """The constructor keyword of the registered ASH-like activation ``name`` that sets the
    initial threshold ``z``: ``"z_init"`` (``actlab.nn.ash.ASH``) or ``"z"``."""
    import inspect

    from actlab.registry import ACTIVATIONS

    factory = ACTIVATIONS.factory(name)
    target = getattr(factory, "__wrapped__", factory)
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without signature
        return "z_init"
    for kw in ("z_init", "z"):
        if kw in params:
            return kw
    return "z_init"


def ash_gate_params(
    zs: Sequence[float] = (-1.0, 0.0, 1.0, 2.0),
    alphas: Sequence[float] = (1.0,),
    *,
    name: str = "ash",
) -> list[dict[str, float]]:
    """Constructor kwargs for every (z, α) pair, using the threshold keyword the registered
    activation ``name`` takes (see :func:`ash_threshold_kw`)."""
    zkw = ash_threshold_kw(name)
    return [{zkw: float(z), "alpha": float(a)} for a in alphas for z in zs]


def ash_gate_curves(
    params: Sequence[Mapping[str, Any]],
    us: Sequence[float] | np.ndarray | None = None,
    *,
    name: str = "ash",
    shape: tuple[int, ...] = (1, 1, -1),
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """ASH's gate ``f(x) / x`` against the standardised input, measured on the module itself.

    ASH normalises by statistics of its input, so the grid ``u`` (default −3…3) is fed inside a
    tensor whose mean is 0 and population std is 1 exactly (see :func:`standardised_batch`):
    the module's own statistics then leave ``u`` unchanged and ``gate(u) = f(u) / u``. For each
    ``params`` dict (constructor kwargs, e.g. ``{"z_init": 1.0, "alpha": 2.0}``; see
    :func:`ash_gate_params`) returns
    ``{label: (u, gate)}``; points with ``|u| < 1e-6`` are NaN.
    """
    from actlab.registry import get_act

    grid = _grid(us, -3.0, 3.0, 601)
    batch = standardised_batch(grid)
    u = batch[: grid.numel()]
    out = {}
    for kw in params:
        spec = ActivationSpec(name, dict(kw))
        module = get_act(name, **dict(kw)).to(torch.float64).eval()
        with torch.no_grad():
            y = module(batch.reshape(shape)).reshape(-1)[: grid.numel()]
        small = u.abs() < 1e-6
        gate = torch.where(small, torch.full_like(u, math.nan), y / torch.where(small, 1.0, u))
        out[spec.title] = (u.numpy().copy(), gate.numpy().copy())
    return out


# ----------------------------------------------------------------------------------------------
# drawing helpers
# ----------------------------------------------------------------------------------------------
def _markevery(n: int, i: int, per_line: int = 6) -> tuple[int, int] | None:
    """About ``per_line`` markers per line, staggered by series index ``i`` so that the
    markers of different series do not pile up at the same x."""
    if n <= per_line:
        return None
    step = math.ceil(n / per_line)
    return ((i * max(1, step // 7)) % step, step)


def _band(ax: Axes, curve: Curve, style: SeriesStyle, label: str | None,
          linestyle: str | None = None, scale: float = 1.0, index: int = 0) -> None:
    if not len(curve):
        return
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))  # epochs
    m, s = curve.mean * scale, curve.std * scale
    kw = dict(style)
    if linestyle is not None:
        kw["linestyle"] = linestyle
    ax.plot(curve.epochs, m, label=label, markevery=_markevery(len(m), index), **kw)
    if np.any(s > 0):
        ax.fill_between(curve.epochs, m - s, m + s, color=style.color, alpha=0.15, linewidth=0)


def _common(cells: Sequence[tuple[str, str, tuple[Any, ...]]]) -> tuple[bool, list[bool]]:
    """Whether (dataset, model) and each axis value is the same in every cell."""
    same_dm = len({(d, m) for d, m, _ in cells}) <= 1
    n = len(cells[0][2]) if cells else 0
    same = [len({c[2][k] for c in cells}) <= 1 for k in range(n)]
    return same_dm, same


def _cell_title(cell: tuple[str, str, tuple[Any, ...]], axes: Sequence[str],
                common: tuple[bool, list[bool]] | None = None) -> str:
    """``dataset / model (axis=value, ...)``, leaving out parts that ``common`` marks as the
    same in every panel (they go into the figure title instead)."""
    d, m, av = cell
    same_dm, same = common if common is not None else (False, [False] * len(av))
    extra = ", ".join(f"{lab}={g.format_axis_value(v)}"
                      for lab, v, s in zip(g.axis_labels(axes), av, same, strict=True) if not s)
    if same_dm:
        return extra
    return f"{d} / {m}" + (f"\n{extra}" if extra else "")


def _common_title(cells: Sequence[tuple[str, str, tuple[Any, ...]]], axes: Sequence[str],
                  common: tuple[bool, list[bool]]) -> str:
    same_dm, same = common
    parts = [f"{cells[0][0]} / {cells[0][1]}"] if same_dm and cells else []
    if cells:
        parts += [f"{lab}={g.format_axis_value(v)}" for lab, v, s
                  in zip(g.axis_labels(axes), cells[0][2], same, strict=True) if s]
    return ", ".join(parts)


def _subplots(nrows: int, ncols: int, h: float = 1.9, sharex: bool = False,
              sharey: bool = False, width: float | None = None) -> tuple[Figure, np.ndarray]:
    """A constrained-layout grid: one column wide for up to two columns, a page wide above."""
    Figure = require_matplotlib()
    if width is None:
        width = COLUMN_WIDTH if ncols <= 2 else PAGE_WIDTH
    fig = Figure(figsize=(width, h * nrows), layout="constrained")
    axs = fig.subplots(nrows, ncols, squeeze=False, sharex=sharex, sharey=sharey)
    return fig, axs


def _legend_below(fig: Figure, handles: Sequence[Any], labels: Sequence[str],
                  ncol: int | None = None, title: str | None = None) -> None:
    """One legend for the whole figure, under the panels (never on top of data)."""
    if not handles:
        return
    width = fig.get_figwidth()
    longest = max(len(lab) for lab in labels)
    fit = max(1, int(width * 72 / (7 * 0.6 * longest + 36)))  # 7 pt text + the line sample
    ncol = ncol or min(fit, len(labels))
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, title=title,
               handlelength=2.4, columnspacing=1.2)
    # grow the figure by the legend's height so the panels keep theirs
    rows = math.ceil(len(labels) / ncol) + (1 if title else 0)
    fig.set_figheight(fig.get_figheight() + 0.05 + rows * 7 * 1.45 / 72)


def _handles(styles: dict[str, SeriesStyle], linestyle: str | None = None) -> list[Any]:
    from matplotlib.lines import Line2D

    out = []
    for style in styles.values():
        kw = dict(style)
        if linestyle is not None:
            kw["linestyle"] = linestyle
        out.append(Line2D([], [], **kw))
    return out


def _need(runs: Sequence[RunRecord]) -> None:
    if not runs:
        raise ValueError("no finished runs to plot")


# ----------------------------------------------------------------------------------------------
# activation figures
# ----------------------------------------------------------------------------------------------
@with_paper_style
def plot_activations(
    specs: Sequence[str | tuple[str, Mapping[str, Any]] | ActivationSpec] | None = None,
    xs: Sequence[float] | np.ndarray | None = None,
    *,
    derivatives: bool = True,
    title: str | None = None,
) -> Figure:
    """Activation shapes (left) and derivatives (right); default: every registered baseline.
    One legend below both panels."""
    specs = list(specs) if specs is not None else baseline_activation_names()
    curves = activation_curves(specs, xs, derivatives=derivatives)
    fig, axs = _subplots(1, 2 if derivatives else 1, h=1.9)
    styles = series_styles(list(curves))
    for i, (lab, c) in enumerate(curves.items()):
        every = _markevery(len(c.x), i, 4)
        axs[0, 0].plot(c.x, c.y, label=lab, markevery=every, **styles[lab])
        if derivatives and c.dy is not None:
            axs[0, 1].plot(c.x, c.dy, label=lab, markevery=every, **styles[lab])
    axs[0, 0].set(xlabel="x", ylabel="f(x)", title="activation")
    if derivatives:
        axs[0, 1].set(xlabel="x", ylabel="f'(x)", title="derivative")
    for ax in axs.flat:
        ax.grid(alpha=0.3)
        ax.axhline(0, color="0.5", linewidth=0.5, zorder=0)
        ax.axvline(0, color="0.5", linewidth=0.5, zorder=0)
    handles, labels = axs[0, 0].get_legend_handles_labels()
    _legend_below(fig, handles, labels)
    if title:
        fig.suptitle(title)
    return fig


def plot_sau_family(
    ns: Sequence[float] = (1, 2, 5, 10),
    alpha: float = 0.01,
    xs: Sequence[float] | np.ndarray | None = None,
    *,
    n_kw: str = "n",
    alpha_kw: str = "alpha",
) -> Figure:
    """SAU vs Leaky ReLU for several n with derivatives (SAU paper, Fig. 1)."""
    from actlab.registry import ACTIVATIONS

    if "sau" not in ACTIVATIONS:
        raise KeyError("activation 'sau' is not registered (is actlab's SAU layer installed?)")
    xs = np.linspace(-2.0, 2.0, 801) if xs is None else xs
    return plot_activations(sau_specs(ns, alpha, n_kw=n_kw, alpha_kw=alpha_kw), xs,
                            title=f"SAU vs Leaky ReLU (α = {alpha:g})")


@with_paper_style
def plot_ash_gate(
    params: Sequence[Mapping[str, Any]] | None = None,
    us: Sequence[float] | np.ndarray | None = None,
    *,
    name: str = "ash",
) -> Figure:
    """ASH's gate against the standardised input for several z / α (measured on the module)."""
    if params is None:
        params = ash_gate_params(name=name)
    curves = ash_gate_curves(params, us, name=name)
    fig, axs = _subplots(1, 1, h=2.2)
    ax = axs[0, 0]
    styles = series_styles(list(curves))
    for i, (lab, (u, gate)) in enumerate(curves.items()):
        ax.plot(u, gate, label=lab, markevery=_markevery(len(u), i), **styles[lab])
    ax.set(xlabel="standardised input u = (x − μ_X) / σ_X", ylabel="gate f(x) / x",
           title="ASH gate")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    _legend_below(fig, handles, labels, ncol=2)
    return fig


# ----------------------------------------------------------------------------------------------
# training curves
# ----------------------------------------------------------------------------------------------
#: at most this many layers get their own colour in the training-curve figure
_MAX_COLOURED = 7


def _highlighted(layers: Sequence[str], highlight: Sequence[str] | None) -> list[str]:
    """Layers drawn in colour: ``highlight``, or all when there are at most
    :data:`_MAX_COLOURED`, else the paper layers and the ReLU baselines."""
    if highlight is not None:
        unknown = [h for h in highlight if h not in layers]
        if unknown:
            raise ValueError(f"highlight names unknown layers {unknown}; layers: {list(layers)}")
        return [lab for lab in layers if lab in highlight]
    if len(layers) <= _MAX_COLOURED:
        return list(layers)
    keep = [lab for lab in layers if g.is_paper_layer(lab) or lab.split("+")[0] == "relu"]
    return keep[:_MAX_COLOURED]


@with_paper_style
def plot_training_curves(
    runs: Sequence[RunRecord],
    *,
    axes: Sequence[str] | None = None,
    percent: bool = True,
    highlight: Sequence[str] | None = None,
) -> Figure:
    """Per cell (row): train (dashed) and test (solid) accuracy and loss per layer, mean line and
    ±std band over seeds. Layers differ by colour and marker; one legend below.

    With more than seven layers only the ``highlight`` ones (default: the paper layers and
    ReLU) get a colour; the others are thin grey lines without bands, one legend entry
    together (the validation-loss figure tells them apart)."""
    _need(runs)
    axes = g.varying_axes(runs) if axes is None else list(axes)
    acc_tr, acc_te = accuracy_keys(runs)
    data = curves_by_cell(runs, [acc_tr, acc_te, "train_loss", "test_loss"], axes)
    layers = sorted({lab for cell in data.values() for lab in cell})
    coloured = _highlighted(layers, highlight)
    styles = series_styles(coloured, linestyles=False)
    grey = SeriesStyle(color="0.65", marker=None, linestyle="-", linewidth=0.7)
    fig, axs = _subplots(len(data), 2, h=1.6, sharex=True)
    common = _common(list(data))
    scaled = percent and not acc_te.endswith("bleu")  # BLEU is stored in points already
    k = 100.0 if scaled else 1.0
    for row, (cell, by_layer) in enumerate(data.items()):
        ax_acc, ax_loss = axs[row]
        order = [lab for lab in by_layer if lab not in coloured]
        order += [lab for lab in by_layer if lab in coloured]  # coloured lines on top
        for lab in order:
            cs = by_layer[lab]
            if lab in coloured:
                st, i = styles[lab], coloured.index(lab)
            else:
                st, i = grey, 0
                cs = {key: dataclasses.replace(c, std=np.zeros_like(c.std))
                      for key, c in cs.items()}
            _band(ax_acc, cs[acc_te], st, f"{lab} test", "-", k, i)
            _band(ax_acc, cs[acc_tr], st, f"{lab} train", "--", k, i)
            _band(ax_loss, cs["test_loss"], st, f"{lab} test", "-", index=i)
            _band(ax_loss, cs["train_loss"], st, f"{lab} train", "--", index=i)
        # one title per row, over both panels (two copies of a long title would overlap)
        ax_acc.set_title(_cell_title(cell, axes, common), loc="left")
        ax_acc.set(ylabel=acc_te.replace("test_", "") + (" (%)" if scaled else ""))
        ax_loss.set(ylabel="loss")
        for ax in (ax_acc, ax_loss):
            ax.grid(alpha=0.3)
    for ax in axs[-1]:
        ax.set_xlabel("epoch")
    from matplotlib.lines import Line2D

    handles = _handles(styles, "-")
    labels = list(coloured)
    others = [lab for lab in layers if lab not in coloured]
    if others:
        handles.append(Line2D([], [], **grey))
        labels.append(f"{len(others)} other layers")
    handles += [Line2D([], [], color="0.3", linestyle="-"),
                Line2D([], [], color="0.3", linestyle="--")]
    labels += ["test", "train"]
    _legend_below(fig, handles, labels)
    head = _common_title(list(data), axes, common)
    if head:
        fig.suptitle(head)
    return fig


@with_paper_style
def plot_val_loss(
    runs: Sequence[RunRecord],
    key: str = "val_loss",
    *,
    axes: Sequence[str] | None = None,
    log_y: bool = False,
) -> Figure:
    """Validation ``key`` vs epoch for all layers on one axis per cell (mean ± std band)."""
    _need(runs)
    axes = g.varying_axes(runs) if axes is None else list(axes)
    data = curves_by_cell(runs, [key], axes)
    layers = sorted({lab for cell in data.values() for lab in cell})
    styles = series_styles(layers)
    ncols = min(3, len(data))
    nrows = math.ceil(len(data) / ncols)
    fig, axs = _subplots(nrows, ncols, h=2.2 if ncols == 1 else 1.8)
    common = _common(list(data))
    for ax, (cell, by_layer) in zip(axs.flat, data.items(), strict=False):
        for lab, cs in by_layer.items():
            _band(ax, cs[key], styles[lab], lab, index=layers.index(lab))
        ax.set(title=_cell_title(cell, axes, common), xlabel="epoch", ylabel=key)
        if log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in list(axs.flat)[len(data):]:
        ax.set_visible(False)
    _legend_below(fig, _handles(styles), layers)
    head = _common_title(list(data), axes, common)
    if head:
        fig.suptitle(head)
    return fig


def _find_axis(runs: Sequence[RunRecord], leaf: str) -> str:
    keys: list[str] = []
    for r in runs:
        keys.extend(k for k in r.flat_config() if k not in keys)
    if leaf in keys:
        return leaf
    matches = [k for k in keys if k.rsplit(".", 1)[-1] == leaf]
    if not matches:
        raise ValueError(f"no config key named {leaf!r} in these runs (keys: {', '.join(keys)})")
    return matches[0]


@with_paper_style
def plot_norm_grid(
    runs: Sequence[RunRecord],
    key: str | None = None,
    *,
    row_axis: str = "batch_size",
    col_axis: str = "lr",
    log_y: bool = False,
) -> Figure:
    """Validation error vs epoch per layer (norm) on a grid: rows = ``row_axis`` values (batch
    size), columns = ``col_axis`` values (learning rate) — Deep Control, Fig. 1. Runs of several
    datasets/models are drawn as separate line groups; pass one study's runs. ``key`` defaults
    to ``val_error`` (``1 - val_acc``), or ``val_pixel_error`` for segmentation histories."""
    _need(runs)
    if key is None:
        key = "val_pixel_error" if accuracy_keys(runs)[1] == "test_pixel_acc" else "val_error"
    rkey, ckey = _find_axis(runs, row_axis), _find_axis(runs, col_axis)
    other = [a for a in g.varying_axes(runs) if a not in (rkey, ckey)]
    data = curves_by_cell(runs, [key], [rkey, ckey, *other])
    rows = sorted({c[2][0] for c in data}, key=g.sort_key)
    cols = sorted({c[2][1] for c in data}, key=g.sort_key)
    layers = sorted({lab for cell in data.values() for lab in cell})
    variants = list(dict.fromkeys((d, m, *av[2:]) for d, m, av in data))
    several = len(variants) > 1
    names = [lab if not several else f"{lab} " + "/".join(map(str, v))
             for v in variants for lab in layers]
    styles = series_styles(names)
    fig, axs = _subplots(len(rows), len(cols), h=1.5, sharex=True, sharey=True)
    for (d, m, av), by_layer in data.items():
        ax = axs[rows.index(av[0]), cols.index(av[1])]
        variant = (d, m, *av[2:])
        for lab, cs in by_layer.items():
            name = lab if not several else f"{lab} " + "/".join(map(str, variant))
            _band(ax, cs[key], styles[name], name, index=names.index(name))
    rlab, clab = row_axis, col_axis
    for i, rv in enumerate(rows):
        for j, cv in enumerate(cols):
            ax = axs[i, j]
            ax.set_title(f"{rlab}={g.format_axis_value(rv)}, {clab}={g.format_axis_value(cv)}")
            ax.grid(alpha=0.3)
            if log_y:
                ax.set_yscale("log")
            if i == len(rows) - 1:
                ax.set_xlabel("epoch")
            if j == 0:
                ax.set_ylabel(key)
    _legend_below(fig, _handles(styles), names)
    fig.suptitle(f"{key} per epoch across {row_axis} and {col_axis}")
    return fig


@with_paper_style
def plot_layer_stats(
    runs: Sequence[RunRecord],
    suffixes: Sequence[str],
    *,
    axes: Sequence[str] | None = None,
) -> Figure:
    """Per-module layer statistics over training: a row per (cell, layer) that logged any of the
    stats, a column per stat suffix, a line (mean ± std over seeds) per module, coloured by
    depth (viridis up to green) with a line style and marker each; a legend below, or a
    colour bar when there are more than :data:`_MAX_LEGEND_MODULES` modules."""
    from matplotlib.lines import Line2D

    from actlab.report.style import LINESTYLES, MARKERS

    _need(runs)
    axes = g.varying_axes(runs) if axes is None else list(axes)
    panels = []
    for cell, by_layer in group_runs(runs, axes).items():
        for lab, rs in by_layer.items():
            stats = {s: layer_stat_curves(rs, s) for s in suffixes}
            if any(stats.values()):
                panels.append((cell, lab, stats))
    if not panels:
        raise ValueError(
            f"no run logged layer stats ending in {', '.join(map(repr, suffixes))} "
            "(train with log_layer_stats=True)"
        )
    modules = list(dict.fromkeys(name.rsplit("/", 1)[0] for _, _, stats in panels
                                 for c in stats.values() for name in c))
    n_modules = len(modules)
    many = n_modules > _MAX_LEGEND_MODULES
    colors = depth_colors(n_modules)
    styles = {
        mod: SeriesStyle(color=colors[i],
                         linestyle="-" if many else LINESTYLES[i % len(LINESTYLES)],
                         marker=None if many else MARKERS[i % len(MARKERS)])
        for i, mod in enumerate(modules)
    }
    # one stat: panels wrap into a grid of up to 3 columns; several: a row per panel
    if len(suffixes) == 1 and len(panels) > 1:
        ncols = min(3, len(panels))
        # (row, column, panel, stat)
        slots = [(i // ncols, i % ncols, i, 0) for i in range(len(panels))]
        fig, axs = _subplots(math.ceil(len(panels) / ncols), ncols, h=1.8)
    else:
        slots = [(i, k, i, k) for i in range(len(panels)) for k in range(len(suffixes))]
        fig, axs = _subplots(len(panels), len(suffixes), h=1.9)
    cells = [cell for cell, _, _ in panels]
    common = _common(cells)
    one_layer = len({lab for _, lab, _ in panels}) == 1
    used = set()
    for row, col, i_panel, k in slots:
        cell, lab, stats = panels[i_panel]
        suffix = suffixes[k]
        ax = axs[row, col]
        used.add((row, col))
        curves = stats[suffix]
        for name, curve in curves.items():
            mod = name.rsplit("/", 1)[0]
            _band(ax, curve, styles[mod], mod, index=modules.index(mod))
        title = _cell_title(cell, axes, common)
        if not one_layer:
            title = f"{title} — {lab}" if title else lab
        ax.set_title(title)
        ax.set(xlabel="epoch", ylabel=suffix)
        ax.grid(alpha=0.3)
        if not curves:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    for row in range(axs.shape[0]):
        for col in range(axs.shape[1]):
            if (row, col) not in used:
                axs[row, col].set_visible(False)
    if many:  # a colour bar by depth instead of a legend of dozens of modules
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import ListedColormap, Normalize

        bar = fig.colorbar(ScalarMappable(Normalize(0, n_modules - 1), ListedColormap(colors)),
                           ax=axs, shrink=0.6, ticks=[0, n_modules - 1])
        bar.ax.set_yticklabels([modules[0], modules[-1]], fontsize=6)
        bar.set_label(f"module ({n_modules}, by depth)")
    else:
        handles = [Line2D([], [], **styles[m]) for m in modules]
        _legend_below(fig, handles, modules, title="module (by depth)")
    head = _common_title(cells, axes, common)
    if one_layer:
        head = ", ".join(x for x in (head, panels[0][1]) if x)
    if head:
        fig.suptitle(head)
    return fig


#: above this many modules per panel, a colour bar replaces the legend
_MAX_LEGEND_MODULES = 10


def plot_agc_lambda(runs: Sequence[RunRecord], **kw: Any) -> Figure:
    """AGC's λ per layer over training (history ``layer_stats`` keys ending in ``lambda``)."""
    return plot_layer_stats(runs, ("lambda",), **kw)


def plot_ash_stats(runs: Sequence[RunRecord], **kw: Any) -> Figure:
    """ASH's active fraction and learned z per layer over training."""
    return plot_layer_stats(runs, ("active_fraction", "z"), **kw)
