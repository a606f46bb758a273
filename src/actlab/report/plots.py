"""Figures: activation shapes, training curves, BN vs AGC grids and layer statistics.

Drawing uses :class:`matplotlib.figure.Figure` objects directly (no pyplot, no global backend
switch; PNGs are rendered by Agg), so it is safe in scripts, servers and tests. matplotlib is an
optional dependency (``pip install "actlab[plot]"``); everything that only computes numbers —
:func:`activation_curves`, :func:`ash_gate_curves` and :mod:`actlab.report.curves` — works without
it.

Figures follow the papers:

* SAU vs Leaky ReLU for several n, with derivatives (Biswas et al., SAU, arXiv 2021, Fig. 1);
* ASH's gate ``sigmoid(2α(u − z))`` against the standardised input ``u = (x − μ_X)/σ_X``
  (K. Lee et al., Stochastic Adaptive Activation Function, NeurIPS 2022);
* BN vs AGC validation error per epoch across batch sizes and learning rates
  (B. Ruff, Deep Control, arXiv 2017, Fig. 1).
"""

from __future__ import annotations

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


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix, parents created); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
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
def _colors(labels: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"] if len(labels) <= 10 else colormaps["tab20"]
    return {lab: cmap(i % cmap.N) for i, lab in enumerate(labels)}


def _band(ax: Axes, curve: Curve, color: Any, label: str | None, linestyle: str = "-",
          scale: float = 1.0) -> None:
    if not len(curve):
        return
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs
    m, s = curve.mean * scale, curve.std * scale
    ax.plot(curve.epochs, m, color=color, linestyle=linestyle, label=label, linewidth=1.5)
    if np.any(s > 0):
        ax.fill_between(curve.epochs, m - s, m + s, color=color, alpha=0.18, linewidth=0)


def _cell_title(cell: tuple[str, str, tuple[Any, ...]], axes: Sequence[str]) -> str:
    d, m, av = cell
    extra = ", ".join(f"{lab}={g.format_axis_value(v)}"
                      for lab, v in zip(g.axis_labels(axes), av, strict=True))
    return f"{d} / {m}" + (f" ({extra})" if extra else "")


def _subplots(nrows: int, ncols: int, w: float = 4.2, h: float = 3.2,
              sharex: bool = False, sharey: bool = False) -> tuple[Figure, np.ndarray]:
    Figure = require_matplotlib()
    fig = Figure(figsize=(w * ncols, h * nrows), layout="constrained")
    axs = fig.subplots(nrows, ncols, squeeze=False, sharex=sharex, sharey=sharey)
    return fig, axs


def _need(runs: Sequence[RunRecord]) -> None:
    if not runs:
        raise ValueError("no finished runs to plot")


# ----------------------------------------------------------------------------------------------
# activation figures
# ----------------------------------------------------------------------------------------------
def plot_activations(
    specs: Sequence[str | tuple[str, Mapping[str, Any]] | ActivationSpec] | None = None,
    xs: Sequence[float] | np.ndarray | None = None,
    *,
    derivatives: bool = True,
    title: str | None = None,
) -> Figure:
    """Activation shapes (left) and derivatives (right); default: every registered baseline."""
    specs = list(specs) if specs is not None else baseline_activation_names()
    curves = activation_curves(specs, xs, derivatives=derivatives)
    fig, axs = _subplots(1, 2 if derivatives else 1, w=5.0, h=3.8)
    colors = _colors(list(curves))
    for lab, c in curves.items():
        axs[0, 0].plot(c.x, c.y, color=colors[lab], label=lab, linewidth=1.4)
        if derivatives and c.dy is not None:
            axs[0, 1].plot(c.x, c.dy, color=colors[lab], label=lab, linewidth=1.4)
    axs[0, 0].set(xlabel="x", ylabel="f(x)", title="activation")
    if derivatives:
        axs[0, 1].set(xlabel="x", ylabel="f'(x)", title="derivative")
    for ax in axs.flat:
        ax.grid(alpha=0.3)
        ax.axhline(0, color="k", linewidth=0.5)
        ax.axvline(0, color="k", linewidth=0.5)
    if len(curves) > 6:  # a long legend goes below the panels
        handles, labels = axs[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=min(6, len(curves)),
                   fontsize="small", frameon=False)
    else:
        axs[0, 0].legend(fontsize="small")
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
    fig, axs = _subplots(1, 1, w=5.0, h=3.8)
    ax = axs[0, 0]
    colors = _colors(list(curves))
    for lab, (u, gate) in curves.items():
        ax.plot(u, gate, color=colors[lab], label=lab, linewidth=1.4)
    ax.set(xlabel="standardised input u = (x − μ_X) / σ_X", ylabel="gate f(x) / x",
           title="ASH gate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


# ----------------------------------------------------------------------------------------------
# training curves
# ----------------------------------------------------------------------------------------------
def plot_training_curves(
    runs: Sequence[RunRecord],
    *,
    axes: Sequence[str] | None = None,
    percent: bool = True,
) -> Figure:
    """Per cell (row): train (dashed) and test (solid) accuracy and loss per layer, mean line and
    ±std band over seeds."""
    _need(runs)
    axes = g.varying_axes(runs) if axes is None else list(axes)
    acc_tr, acc_te = accuracy_keys(runs)
    data = curves_by_cell(runs, [acc_tr, acc_te, "train_loss", "test_loss"], axes)
    layers = sorted({lab for cell in data.values() for lab in cell})
    colors = _colors(layers)
    fig, axs = _subplots(len(data), 2)
    k = 100.0 if percent else 1.0
    for row, (cell, by_layer) in enumerate(data.items()):
        ax_acc, ax_loss = axs[row]
        for lab, cs in by_layer.items():
            _band(ax_acc, cs[acc_te], colors[lab], f"{lab} test", "-", k)
            _band(ax_acc, cs[acc_tr], colors[lab], f"{lab} train", "--", k)
            _band(ax_loss, cs["test_loss"], colors[lab], f"{lab} test", "-")
            _band(ax_loss, cs["train_loss"], colors[lab], f"{lab} train", "--")
        title = _cell_title(cell, axes)
        ax_acc.set(title=title, xlabel="epoch",
                   ylabel=acc_te.replace("test_", "") + (" (%)" if percent else ""))
        ax_loss.set(title=title, xlabel="epoch", ylabel="loss")
        for ax in (ax_acc, ax_loss):
            ax.grid(alpha=0.3)
        ax_acc.legend(fontsize="x-small", ncol=2)
    return fig


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
    colors = _colors(layers)
    ncols = min(3, len(data))
    nrows = math.ceil(len(data) / ncols)
    fig, axs = _subplots(nrows, ncols)
    for ax, (cell, by_layer) in zip(axs.flat, data.items(), strict=False):
        for lab, cs in by_layer.items():
            _band(ax, cs[key], colors[lab], lab)
        ax.set(title=_cell_title(cell, axes), xlabel="epoch", ylabel=key)
        if log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in list(axs.flat)[len(data):]:
        ax.set_visible(False)
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
    several = len({(c[0], c[1], c[2][2:]) for c in data}) > 1
    colors = _colors(layers)
    fig, axs = _subplots(len(rows), len(cols), w=3.4, h=2.6, sharex=True, sharey=True)
    styles = ["-", "--", ":", "-."]
    variants: list[tuple[Any, ...]] = []
    for (d, m, av), by_layer in data.items():
        ax = axs[rows.index(av[0]), cols.index(av[1])]
        variant = (d, m, *av[2:])
        if variant not in variants:
            variants.append(variant)
        ls = styles[variants.index(variant) % len(styles)]
        for lab, cs in by_layer.items():
            name = lab if not several else f"{lab} " + "/".join(map(str, variant))
            _band(ax, cs[key], colors[lab], name, ls)
    rlab, clab = row_axis, col_axis
    for i, rv in enumerate(rows):
        for j, cv in enumerate(cols):
            ax = axs[i, j]
            ax.set_title(f"{rlab}={g.format_axis_value(rv)}, {clab}={g.format_axis_value(cv)}",
                         fontsize="small")
            ax.grid(alpha=0.3)
            if log_y:
                ax.set_yscale("log")
            if i == len(rows) - 1:
                ax.set_xlabel("epoch")
            if j == 0:
                ax.set_ylabel(key)
    axs[0, 0].legend(fontsize="x-small")
    fig.suptitle(f"{key} per epoch across {row_axis} and {col_axis}")
    return fig


def plot_layer_stats(
    runs: Sequence[RunRecord],
    suffixes: Sequence[str],
    *,
    axes: Sequence[str] | None = None,
) -> Figure:
    """Per-module layer statistics over training: a row per (cell, layer) that logged any of the
    stats, a column per stat suffix, a line (mean ± std over seeds) per module, coloured by
    depth."""
    from matplotlib import colormaps

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
    # one stat: panels wrap into a grid of up to 3 columns; several: a row per panel
    n_modules = max(len(c) for _, _, stats in panels for c in stats.values())
    many = n_modules > _MAX_LEGEND_MODULES
    if len(suffixes) == 1 and len(panels) > 1:
        ncols = min(3, len(panels))
        # (row, column, panel, stat)
        slots = [(i // ncols, i % ncols, i, 0) for i in range(len(panels))]
        fig, axs = _subplots(math.ceil(len(panels) / ncols), ncols)
    else:
        slots = [(i, k, i, k) for i in range(len(panels)) for k in range(len(suffixes))]
        fig, axs = _subplots(len(panels), len(suffixes))
    cmap = colormaps["viridis"]
    used = set()
    for row, col, i_panel, k in slots:
        cell, lab, stats = panels[i_panel]
        suffix = suffixes[k]
        ax = axs[row, col]
        used.add((row, col))
        curves = stats[suffix]
        for i, (name, curve) in enumerate(curves.items()):
            color = cmap(i / max(1, len(curves) - 1))
            _band(ax, curve, color, name.rsplit("/", 1)[0])
        ax.set_title(f"{_cell_title(cell, axes)} — {lab}".replace(" (", "\n(", 1),
                     fontsize="small")
        ax.set(xlabel="epoch", ylabel=suffix)
        ax.grid(alpha=0.3)
        if not curves:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        elif not many:
            ax.legend(fontsize="x-small", title="module", title_fontsize="x-small")
    for row in range(axs.shape[0]):
        for col in range(axs.shape[1]):
            if (row, col) not in used:
                axs[row, col].set_visible(False)
    if many:  # a colour bar by depth instead of a legend of dozens of modules
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        names = next(list(c) for _, _, stats in panels for c in stats.values()
                     if len(c) == n_modules)
        bar = fig.colorbar(ScalarMappable(Normalize(0, n_modules - 1), cmap), ax=axs,
                           shrink=0.6, ticks=[0, n_modules - 1])
        bar.ax.set_yticklabels([names[0].rsplit("/", 1)[0], names[-1].rsplit("/", 1)[0]],
                               fontsize="x-small")
        bar.set_label(f"module ({n_modules}, by depth)")
    return fig


#: above this many modules per panel, a colour bar replaces the legend
_MAX_LEGEND_MODULES = 10


def plot_agc_lambda(runs: Sequence[RunRecord], **kw: Any) -> Figure:
    """AGC's λ per layer over training (history ``layer_stats`` keys ending in ``lambda``)."""
    return plot_layer_stats(runs, ("lambda",), **kw)


def plot_ash_stats(runs: Sequence[RunRecord], **kw: Any) -> Figure:
    """ASH's active fraction and learned z per layer over training."""
    return plot_layer_stats(runs, ("active_fraction", "z"), **kw)
