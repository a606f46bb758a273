"""Grid expansion: a spec becomes a list of cells, each with a full config and a stable key.

The cells are the product ``seeds x folds x [grid] axes x acts x norms`` (seeds outermost, so
that a partial sweep already holds complete seed-0 comparisons; ``folds`` only when the spec
sets ``folds = k``). A cell's config is a JSON-able dict::

    {"study", "dataset", "dataset_kwargs", "val_fraction", "split_seed", "model", "model_kwargs",
     "act", "act_kwargs", "norm", "norm_kwargs", "seed", "threads",
     "train": {...the spec's keyed TrainConfig fields, "seed"}}

(plus ``"folds": k, "fold": i`` for a k-fold spec; absent otherwise, so that the keys of
other specs do not change) and its key is ``sha1(canonical_json(config))``: the same settings
always give the same key, whatever the order of keys in the spec file, so re-running a spec
finds its earlier cells.
``threads`` (torch intra-op threads of the cell) is part of it because results depend on it, and
so is ``"layer_backend"`` (the math of the actlab layers, :mod:`actlab.functional.backends`:
compiled kernels differ from eager math in the last bits), but only when it is not ``"eager"``,
the backend every cell stored before the setting existed ran with. It is the spec's
``layer_backend`` (or a ``[grid]`` axis value), else the backend of the process that expands the
spec (``ACTLAB_BACKEND``; library default ``"auto"``).
Settings that do not change results (``device``, ``data_dir``, plug-in ``imports``) are kept out
of the key, in ``Cell.runtime``.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from actlab.sweep.spec import MAX_CELLS, StudySpec, axis_applies, layer_axis, train_keys

__all__ = ["Cell", "canonical_json", "cell_key", "expand", "iter_grid"]


def canonical_json(obj: Any) -> str:
    """Deterministic compact JSON: sorted keys, no whitespace, ASCII, no NaN/inf."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def cell_key(config: Mapping[str, Any]) -> str:
    """sha1 hex digest of the canonical JSON of ``config``."""
    return hashlib.sha1(canonical_json(config).encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Cell:
    """One run of a study: one layer pair, one seed, one point of the grid."""

    key: str
    study: str
    dataset: str
    model: str
    act: str
    norm: str
    seed: int
    config: dict[str, Any]
    #: settings that do not affect results (device, data_dir, imports); not part of the key
    runtime: dict[str, Any] = field(default_factory=dict)
    #: the [grid] axes of this cell (axis -> value), for labels
    axes: dict[str, Any] = field(default_factory=dict)
    #: ray/local resources from the spec
    resources: dict[str, float] = field(default_factory=dict)
    #: the held-out fold of a k-fold spec (``None`` otherwise); like the seed, not an axis
    fold: int | None = None

    @property
    def epochs(self) -> int | None:
        return self.config.get("train", {}).get("epochs")

    @property
    def threads(self) -> int:
        """Torch intra-op threads the cell runs with (1 for cells stored before it was keyed)."""
        return int(self.config.get("threads", 1))

    @property
    def layer_backend(self) -> str:
        """The backend of the actlab layers (``"eager"`` when the config does not name one)."""
        return str(self.config.get("layer_backend", "eager"))

    @property
    def imports(self) -> tuple[str, ...]:
        """Plug-ins to load before the cell runs (``imports`` of the spec)."""
        return tuple(self.runtime.get("imports", ()))

    @property
    def label(self) -> str:
        """Short human label: ``sau+bn s0 batch_size=8``."""
        extra = " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in self.axes.items())
        fold = "" if self.fold is None else f" fold{self.fold}"
        return f"{self.act}+{self.norm} s{self.seed}{fold}" + (f" {extra}" if extra else "")


def iter_grid(grid: Mapping[str, tuple[Any, ...]]) -> Iterator[dict[str, Any]]:
    """Every combination of the grid axes (axis order as given, last axis fastest)."""
    axes = list(grid)
    for values in itertools.product(*(grid[a] for a in axes)):
        yield dict(zip(axes, values, strict=True))


def _base_config(spec: StudySpec) -> dict[str, Any]:
    # task_kwargs enter a cell's config (and key) only when a spec sets them, so that the keys of
    # cells stored before the option existed stay the same
    extra = {"task_kwargs": copy.deepcopy(spec.task_kwargs)} if spec.task_kwargs else {}
    return {
        **extra,
        "study": spec.name,
        "dataset": spec.dataset,
        "dataset_kwargs": copy.deepcopy(spec.dataset_kwargs),
        "val_fraction": spec.val_fraction,
        "split_seed": spec.split_seed,
        "model": spec.model,
        "model_kwargs": copy.deepcopy(spec.model_kwargs),
        "threads": spec.threads,
        "train": spec.train_settings(),
    }


def _apply_axis(config: dict[str, Any], axis: str, value: Any, tkeys: Mapping[str, Any]) -> None:
    prefix, _, sub = axis.partition(".")
    target = layer_axis(axis)
    if target is not None:
        config[prefix][target[2]] = value
    elif prefix in ("model_kwargs", "dataset_kwargs") and sub:
        config[prefix][sub] = value
    elif axis in tkeys:
        config["train"][axis] = value
    else:
        config[axis] = value


def _key_layer_backend(config: dict[str, Any], default: str) -> None:
    """Put the cell's layer backend at the top level of ``config``, only when not eager."""
    name = config["train"].pop("layer_backend", None) or default
    if name != "eager":
        config["layer_backend"] = name


def expand(spec: StudySpec) -> list[Cell]:
    """All cells of ``spec`` in run order (see the module docstring)."""
    from actlab.functional.backends import get_backend

    backend_default = spec.train.layer_backend or get_backend()
    count = spec.cell_count()
    if count > MAX_CELLS:  # parse_spec refuses these; a spec changed with replace() may not
        raise ValueError(f"{spec.source}: {count} cells; at most {MAX_CELLS} per spec")
    tkeys = train_keys()
    runtime: dict[str, Any] = {"device": spec.device}
    if spec.train.loader != "memory" or spec.train.num_workers:
        runtime.update(loader=spec.train.loader, num_workers=spec.train.num_workers)
    if spec.data_dir is not None:
        runtime["data_dir"] = spec.data_dir
    if spec.imports:
        runtime["imports"] = list(spec.imports)
    cells: list[Cell] = []
    seen: set[str] = set()
    folds: list[int | None] = list(range(spec.folds)) if spec.folds else [None]
    for seed, fold, point in itertools.product(spec.seeds, folds, iter_grid(spec.grid)):
        for act in spec.acts:
            for norm in spec.norms:
                # a layer-option axis (norm_kwargs.agc.lam_init) only varies its own layer's
                # cells: the other cells repeat across its values and are built once
                applied = {a: v for a, v in point.items() if axis_applies(a, act, norm)}
                config = _base_config(spec)
                config.update(
                    act=act,
                    act_kwargs=dict(spec.act_kwargs.get(act, {})),
                    norm=norm,
                    norm_kwargs=dict(spec.norm_kwargs.get(norm, {})),
                    seed=seed,
                )
                for axis, value in applied.items():
                    _apply_axis(config, axis, value, tkeys)
                _key_layer_backend(config, backend_default)
                if fold is not None:
                    config.update(folds=spec.folds, fold=fold)
                config["train"]["seed"] = seed
                key = cell_key(config)
                if key in seen:  # a layer-option axis of another layer
                    continue
                seen.add(key)
                cells.append(Cell(
                    key=key, study=spec.name, dataset=config["dataset"],
                    model=config["model"], act=act, norm=norm, seed=seed, config=config,
                    runtime=dict(runtime), axes=applied, resources=dict(spec.resources),
                    fold=fold,
                ))
    return cells
