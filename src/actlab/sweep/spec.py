"""Experiment specs: TOML files that describe a study, and their validation.

A spec names one dataset and one model, the layers to compare and the seeds, plus the training
settings shared by every cell; ``[grid]`` adds further axes to sweep::

    name = "bs_study"
    dataset = "digits"
    model = "tiny_cnn"
    acts = ["relu", "sau"]
    norms = ["bn", "agc"]
    seeds = [0, 1, 2]            # or a count: seeds = 3
    folds = 10                   # optional k-fold cross-validation: every seed runs k folds
    threads = 1                  # torch threads per cell (part of each cell's key)
    imports = ["./my_layers.py"] # plug-ins: modules or files that register layers/models/data
    epochs = 10                  # any TrainConfig field (actlab.train.config)
    batch_size = 32
    optimizer = "sgd"
    lr = 0.05
    act_kwargs = { sau = { alpha = 0.1 } }

    [grid]
    batch_size = [1, 4, 8]

    [resources]
    cpus = 1
    gpus = 0

The training settings are not defined here: every field of :class:`actlab.train.TrainConfig`
(its default and its checker) is a top-level key of a spec and a ``[grid]`` axis, and the spec
holds a validated ``TrainConfig`` (:attr:`StudySpec.train`). The keys of the spec itself
(:data:`SPEC_KEYS`) use the same checkers (:mod:`actlab.schema`).

Every problem raises :class:`SpecError`, whose message is one line naming the file, the key, the
bad value and what is allowed (with a "did you mean" for misspelt keys and layer names).
:func:`preflight` adds the checks that depend on this machine (device present, dataset files
present and readable), run by ``actlab run --check`` and before a local sweep.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import itertools
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actlab.schema import (
    Checker,
    Choice,
    Device,
    Float,
    Int,
    Invalid,
    Name,
    OptionalName,
    Text,
    did_you_mean,
)
from actlab.train.config import TrainConfig, device_problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "SpecError",
    "StudySpec",
    "load_spec",
    "parse_spec",
    "apply_override",
    "preflight",
    "default_spec_path",
    "packaged_specs",
    "train_keys",
    "SPEC_KEYS",
    "TOP_KEYS",
    "MAX_SEEDS",
    "MAX_CELLS",
]

#: Upper bound of the number of seeds of a spec (``seeds = 1000000`` is a typo, not a study).
MAX_SEEDS = 1000
#: Upper bound of the number of cells of a spec, checked before any cell is built.
MAX_CELLS = 20_000
#: Upper bound of ``folds`` (k of k-fold cross-validation).
MAX_FOLDS = 100


class SpecError(ValueError):
    """An invalid experiment spec. ``str(err)`` is a single line: ``file: key: problem``."""

    def __init__(self, source: str, key: str | None, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = " ".join(problem.split())  # always one line
        where = f"{source}: {key}: " if key else f"{source}: "
        super().__init__(where + self.problem)


# ----------------------------------------------------------------------------------------------
# the schema of a spec
# ----------------------------------------------------------------------------------------------
#: Scalar keys of the spec itself (name -> checker); the training settings are TrainConfig's.
SPEC_KEYS: dict[str, Checker] = {
    "name": Text(nonempty=True),
    "description": Text(),
    "dataset": Name(),
    "model": Name(),
    "task": Name(),
    "val_fraction": Float(0.0, 1.0, hi_open=True),
    "split_seed": Int(0),
    "data_dir": Text(nonempty=True),
    "threads": Int(1, 1024),
    "folds": Int(2, MAX_FOLDS),
}
#: Defaults of the spec's own keys (``name`` defaults to the file name).
SPEC_DEFAULTS: dict[str, Any] = {
    "norms": ("bn",), "seeds": (0, 1, 2), "val_fraction": 0.1, "split_seed": 0, "threads": 1,
}
#: TrainConfig fields that are part of every cell's config (and key) even when a spec leaves them
#: out; the other fields enter a cell's config only when the spec sets them, so that a field
#: added to TrainConfig later does not change the keys of stored cells.
KEYED_TRAIN_FIELDS = ("epochs", "batch_size", "optimizer", "lr")
#: Settings that do not change results: kept out of the cell key (see ``actlab.sweep.grid``).
BOOKKEEPING_KEYS = ("device", "data_dir", "imports", "loader", "num_workers")
#: TrainConfig fields that enter a cell's config at its top level (not under ``train``), and only
#: when they differ from the value the stored cells were run with (see ``actlab.sweep.grid``).
TOP_LEVEL_TRAIN_FIELDS = ("layer_backend",)
#: Train settings never listed under a cell config's ``train`` key.
_NOT_IN_TRAIN_KEY = (*BOOKKEEPING_KEYS, *TOP_LEVEL_TRAIN_FIELDS)


def layer_axis(axis: str) -> tuple[str, str, str] | None:
    """``("act"|"norm", layer, option)`` for a ``[grid]`` axis ``act_kwargs.<act>.<option>`` or
    ``norm_kwargs.<norm>.<option>``; ``None`` for any other axis."""
    prefix, _, rest = axis.partition(".")
    layer, _, option = rest.partition(".")
    if prefix in ("act_kwargs", "norm_kwargs") and layer and option:
        return prefix[:-7], layer, option
    return None


def axis_applies(axis: str, act: str, norm: str) -> bool:
    """Whether a ``[grid]`` axis changes the cells of this (act, norm) pair: a layer-option axis
    only changes the cells of its own layer."""
    target = layer_axis(axis)
    if target is None:
        return True
    kind, layer, _ = target
    return layer == (act if kind == "act" else norm)


def count_cells(acts: Sequence[str], norms: Sequence[str], seeds: int, folds: int | None,
                grid: Mapping[str, Sequence[Any]]) -> int:
    """Number of distinct cells: seeds x folds x, per (act, norm) pair, the product of the axes
    that apply to it (a ``norm_kwargs.agc.lam_init`` axis multiplies only the AGC cells)."""
    per_pair = sum(math.prod(len(v) for a, v in grid.items() if axis_applies(a, act, norm))
                   for act in acts for norm in norms)
    return seeds * (folds or 1) * per_pair


_TABLE_KEYS = ("dataset_kwargs", "model_kwargs", "act_kwargs", "norm_kwargs", "task_kwargs", "grid",
               "resources")
_LIST_KEYS = ("acts", "norms", "seeds", "imports")
_RESOURCE_KEYS: dict[str, Checker] = {
    "cpus": Float(0.0, lo_open=True),
    "gpus": Float(0.0),
    "memory_gb": Float(0.0, lo_open=True),
}
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def train_keys() -> dict[str, Checker]:
    """The training settings a spec accepts (TrainConfig's fields and checkers). ``seed`` comes
    from ``seeds``; ``device`` is a TrainConfig field too but a bookkeeping one (not swept)."""
    keys = TrainConfig.checkers()
    keys.pop("seed", None)
    return keys


#: Every key allowed at the top level of a spec.
TOP_KEYS: tuple[str, ...] = tuple(sorted({*train_keys(), *SPEC_KEYS, *_TABLE_KEYS, *_LIST_KEYS}))


@dataclass(frozen=True)
class StudySpec:
    """A validated experiment spec (see the module docstring for the file format).

    ``train`` is the validated :class:`~actlab.train.TrainConfig` shared by every cell (its
    ``seed`` is replaced by each cell's seed); ``keyed`` names its fields that go into each
    cell's config (the ones the file sets, plus :data:`KEYED_TRAIN_FIELDS`). ``grid`` maps each
    extra axis (a training key, ``val_fraction``, ``split_seed``, ``threads``, ``dataset``,
    ``model`` or ``model_kwargs.<k>`` / ``dataset_kwargs.<k>``) to its values, in file order.
    ``imports`` are plug-ins: module names, or absolute paths of ``.py`` files.

    ``folds = k`` turns on k-fold cross-validation: the training data (what remains of the
    training split after any test carve) is partitioned into ``k`` stratified folds with
    ``split_seed`` (:func:`actlab.data.split.kfold_indices`); every seed then runs ``k`` cells,
    cell ``fold = i`` training on the other ``k - 1`` folds and validating on fold ``i``
    (``val_fraction`` is 0: the held-out fold replaces the validation carve). Each cell still
    reports the official test split, so a k-fold table is the mean over the k models of their
    test metric, and ``val_*`` is the held-out-fold metric. Reports group folds like seeds.
    """

    name: str
    dataset: str
    model: str
    acts: tuple[str, ...]
    norms: tuple[str, ...] = ("bn",)
    seeds: tuple[int, ...] = (0, 1, 2)
    train: TrainConfig = field(default_factory=TrainConfig)
    keyed: tuple[str, ...] = KEYED_TRAIN_FIELDS
    val_fraction: float = 0.1
    split_seed: int = 0
    threads: int = 1
    folds: int | None = None
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    act_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    norm_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    task_kwargs: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    resources: dict[str, float] = field(default_factory=lambda: {"cpus": 1.0, "gpus": 0.0})
    imports: tuple[str, ...] = ()
    data_dir: str | None = None
    description: str = ""
    source: str = "<spec>"

    @property
    def device(self) -> str:
        return self.train.device

    def train_settings(self) -> dict[str, Any]:
        """The training settings that go into each cell's config: the ``keyed`` fields."""
        full = self.train.to_dict()
        return {k: full[k] for k in self.keyed}

    def replace(self, **changes: Any) -> StudySpec:
        return dataclasses.replace(self, **changes)

    def with_train(self, **changes: Any) -> StudySpec:
        """A copy with training settings changed (validated; the changed ones become keyed)."""
        try:
            train = self.train.replace(**changes)
        except (TypeError, ValueError) as exc:
            raise SpecError(self.source, ", ".join(changes), str(exc)) from None
        keyed = (*self.keyed, *(k for k in changes if k not in self.keyed
                                and k not in _NOT_IN_TRAIN_KEY))
        return dataclasses.replace(self, train=train, keyed=keyed)

    def cell_count(self) -> int:
        """Number of cells (acts x norms x seeds x folds x grid points), without building them."""
        return count_cells(self.acts, self.norms, len(self.seeds), self.folds, self.grid)


# ----------------------------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------------------------
def default_spec_path() -> Path:
    """The default study shipped with the package (``actlab/specs/default.toml``)."""
    return Path(__file__).resolve().parent.parent / "specs" / "default.toml"


def packaged_specs() -> dict[str, Path]:
    """Specs shipped with the package by name: ``default``, ``paper/sau_table1``, ..."""
    root = default_spec_path().parent
    return {p.relative_to(root).with_suffix("").as_posix(): p
            for p in sorted(root.rglob("*.toml"))}


def _resolve_path(path: str | Path | None) -> Path:
    if path is None:
        return default_spec_path()
    path = Path(path)
    if path.is_file():
        return path
    shipped = packaged_specs()
    name = path.as_posix()
    name = name[:-5] if name.endswith(".toml") else name
    if name in shipped:
        return shipped[name]
    raise SpecError(str(path), None, f"no such spec file{did_you_mean(name, list(shipped))} "
                                     f"(packaged specs: {', '.join(shipped) or 'none'})")


def load_spec(path: str | Path | None = None, *, check_names: bool = True,
              overrides: Sequence[tuple[str, Any]] = ()) -> StudySpec:
    """Read and validate a spec file. ``None`` gives the default study; a name that is not a
    file (``"default"``, ``"paper/sau_table1"``) is looked up among the specs shipped with the
    package. ``overrides`` are ``(dotted key, value)`` pairs applied to the file's settings
    before validation (``actlab run --set``), see :func:`apply_override`."""
    path = _resolve_path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(str(path), None, f"cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(str(path), None, f"not a text file (TOML expected; byte {exc.start} is "
                                         "not UTF-8)") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(str(path), None, f"not valid TOML: {exc}") from None
    for key, value in overrides:
        apply_override(data, key, value, source=str(path))
    return parse_spec(data, source=str(path), default_name=path.stem, check_names=check_names,
                      base_dir=path.resolve().parent)


def apply_override(data: dict[str, Any], key: str, value: Any, *, source: str = "--set") -> None:
    """Set ``key`` (dotted for nested tables: ``model_kwargs.width``, ``grid.lr``) in the raw
    spec mapping ``data``. Setting a top-level key that is a ``[grid]`` axis replaces the axis
    (and ``grid.<key>`` replaces a top-level ``key``), so an override never conflicts."""
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise SpecError(source, f"--set {key}", "expected KEY=VALUE with a (dotted) key name")
    table = data
    for i, part in enumerate(parts[:-1]):
        inner = table.setdefault(part, {})
        if not isinstance(inner, dict):
            raise SpecError(source, ".".join(parts[: i + 1]),
                            f"is {inner!r}, not a table: cannot set {key!r}")
        table = inner
    grid = data.get("grid")
    if isinstance(grid, dict):
        if len(parts) == 1:
            grid.pop(key, None)
        elif parts[0] == "grid" and len(parts) == 2:
            data.pop(parts[1], None)
    table[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"key=value"`` -> ``(key, value)``; the value is read as a TOML value (``3``, ``0.1``,
    ``true``, ``[1, 2]``, ``{a = 1}``), a bare word as a string, and a bracketed list of bare
    words (``[relu,elu]``) as a list of strings. String-typed keys keep the text as is, except as
    a ``grid.`` axis, whose value is always a list (``grid.gems=[none,channel]``)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpecError("--set", text, "expected KEY=VALUE (e.g. --set lr=0.1)")
    if key.rsplit(".", 1)[-1] in _string_keys() and not key.startswith("grid."):
        return key, value.strip()  # a grid axis always takes a list of values
    return key, _toml_value(value.strip())


def _toml_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    if text.startswith("[") and text.endswith("]"):
        items = [t.strip() for t in text[1:-1].split(",") if t.strip()]
        return [_toml_value(t) for t in items]
    return text


def _string_keys() -> set[str]:
    string_checkers = (Text, Choice, OptionalName, type(Device))
    keys = {**train_keys(), **SPEC_KEYS}
    return {k for k, c in keys.items() if isinstance(c, string_checkers)}


# ----------------------------------------------------------------------------------------------
# parsing
# ----------------------------------------------------------------------------------------------
def _norm_name(name: str) -> str:
    """Registry spelling of a layer/model/dataset name: lower case, ``-`` -> ``_``."""
    return name.strip().lower().replace("-", "_")


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str | None, problem: str) -> SpecError:
        return SpecError(self.source, key, problem)

    def check(self, key: str, value: Any, checker: Checker | None) -> Any:
        if checker is None:
            if isinstance(value, (dict, list)):
                raise self.error(key, f"got {_short(value)}; expected a single value")
            return value
        try:
            return checker(value)
        except Invalid as bad:
            raise self.error(key, f"got {_short(value)}; expected {bad.expected}") from None

    def name_list(self, key: str, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise self.error(key, f"got {_short(value)}; expected a non-empty list of names")
        out: list[str] = []
        for i, v in enumerate(value):
            if not isinstance(v, str) or not v.strip():
                raise self.error(f"{key}[{i}]", f"got {v!r}; expected a name (string)")
            v = _norm_name(v)
            if v in out:
                raise self.error(key, f"{v!r} is listed twice")
            out.append(v)
        return tuple(out)

    def seeds(self, value: Any) -> tuple[int, ...]:
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise self.error("seeds", f"got {value!r}; expected a count >= 1 or a list")
            if value > MAX_SEEDS:
                raise self.error("seeds", f"got {value}; at most {MAX_SEEDS} seeds per spec "
                                          "(split a larger study into several specs)")
            return tuple(range(value))
        if not isinstance(value, (list, tuple)) or not value:
            raise self.error("seeds", f"got {_short(value)}; expected a count or a list of "
                                      "integers")
        if len(value) > MAX_SEEDS:
            raise self.error("seeds", f"got a list of {len(value)} seeds; at most {MAX_SEEDS} "
                                      "per spec (split a larger study into several specs)")
        out = tuple(self.check(f"seeds[{i}]", v, Int(0)) for i, v in enumerate(value))
        if len(set(out)) != len(out):
            raise self.error("seeds", f"got {_short(value)}; seeds must be distinct")
        return out

    def table(self, key: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(key, f"got {_short(value)}; expected a table {{key = value, ...}}")
        return dict(value)

    def imports(self, value: Any, base_dir: Path) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise self.error("imports", f"got {_short(value)}; expected a list of module names "
                                        "or .py paths")
        out: list[str] = []
        for i, item in enumerate(value):
            key = f"imports[{i}]"
            if not isinstance(item, str) or not item.strip():
                raise self.error(key, f"got {item!r}; expected a module name or a .py path")
            item = item.strip()
            if item.endswith(".py") or "/" in item or "\\" in item:
                path = Path(item).expanduser()
                path = (base_dir / path if not path.is_absolute() else path).resolve()
                if not path.is_file():
                    raise self.error(key, f"plug-in file {item!r} not found (looked for {path}; "
                                          "paths are relative to the spec file)")
                item = str(path)
            elif not _MODULE_NAME.match(item):
                raise self.error(key, f"got {item!r}; expected a module name (a.b.c) or a "
                                      ".py path")
            if item not in out:
                out.append(item)
        return tuple(out)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + " ..."


def _known_names(kind: str) -> list[str]:
    """Registered names of ``kind`` (with aliases), after importing the packages that register
    the built-in ones."""
    from actlab import registry

    for mod in ("actlab.nn", "actlab.models", "actlab.data"):
        importlib.import_module(mod)
    return registry.REGISTRIES[kind].names(include_aliases=True)


def _check_name(p: _Parser, key: str, kind: str, name: str) -> None:
    known = _known_names(kind)
    norm_name = _norm_name(name)
    if norm_name not in known:
        raise p.error(key, f"unknown {kind} {name!r}{did_you_mean(norm_name, known)} "
                           f"(known: {', '.join(sorted(known))})")


def _check_aliases(p: _Parser, key: str, kind: str, names: Sequence[str]) -> None:
    """Refuse two names of one layer (``acts = ["swish", "silu"]`` would run it twice)."""
    from actlab import registry

    reg = registry.REGISTRIES[kind]
    seen: dict[str, str] = {}
    for name in names:
        if name not in reg:
            continue
        canonical = reg.resolve(name)
        if canonical in seen:
            raise p.error(key, f"{seen[canonical]!r} and {name!r} are the same {kind} "
                               f"({canonical!r}); list it once")
        seen[canonical] = name


def _check_layer_kwargs(p: _Parser, key: str, kind: str, name: str, kw: dict[str, Any]) -> None:
    """Build the layer once so that bad keyword arguments are reported now, not mid-sweep."""
    from actlab.registry import get_act, get_norm

    try:
        if kind == "activation":
            get_act(name, **kw)
        else:
            get_norm(name, 8, dim=2, **kw)
    except (TypeError, ValueError) as exc:
        raise p.error(key, f"{kind} {name!r} rejects {kw!r}: {exc}") from None


def _check_model_kwargs(p: _Parser, key: str, model: str, kw: Mapping[str, Any]) -> None:
    from actlab.registry import MODELS

    if model not in MODELS:
        return
    try:
        sig = inspect.signature(MODELS.factory(model))
    except (TypeError, ValueError):  # pragma: no cover
        return
    try:
        sig.bind_partial(**kw)
    except TypeError as exc:
        allowed = [n for n in sig.parameters if n not in ("act", "norm", "num_classes",
                                                         "in_channels")]
        raise p.error(key, f"model {model!r} does not take {dict(kw)!r}: {exc} "
                           f"(its options: {', '.join(allowed)})") from None


def _check_dataset_kwargs(p: _Parser, key: str, dataset: str, names: Sequence[str]) -> None:
    from actlab.data import dataset_options

    if not names:
        return
    try:
        known = list(dataset_options(dataset))
    except KeyError:  # unknown dataset: reported by the name check
        return
    bad = [n for n in names if n not in known]
    if bad:
        raise p.error(key, f"dataset {dataset!r} does not take {bad[0]!r}"
                           f"{did_you_mean(bad[0], known)} (its options: {', '.join(known)})")


def parse_spec(
    data: Mapping[str, Any],
    *,
    source: str = "<spec>",
    default_name: str | None = None,
    check_names: bool = True,
    base_dir: str | Path | None = None,
) -> StudySpec:
    """Validate a spec given as a mapping (as read from TOML) and return a :class:`StudySpec`.

    With ``check_names`` the spec's plug-ins are loaded (``imports`` and the ``actlab.plugins``
    entry points), then the activation, norm, model and dataset names are checked against the
    registries (and layer keyword arguments by building each layer once). ``base_dir`` is the
    folder that relative plug-in paths start from (the spec file's; default: the current one).
    """
    p = _Parser(source)
    if not isinstance(data, Mapping):
        raise p.error(None, f"expected a table of settings, got {type(data).__name__}")
    tkeys = train_keys()
    for key in data:
        if key not in TOP_KEYS:
            hint = "; did you mean 'seeds'?" if key == "seed" else did_you_mean(key, TOP_KEYS)
            raise p.error(key, f"unknown key{hint} (allowed: {', '.join(TOP_KEYS)})")

    merged = {**SPEC_DEFAULTS, **data}
    raw_grid = data.get("grid")
    for req in ("dataset", "model", "acts"):
        swept = raw_grid.get(req) if isinstance(raw_grid, Mapping) else None
        if req not in merged and req != "acts" and isinstance(swept, list) and swept:
            merged[req] = swept[0]  # swept: the first value names the study in labels
        if req not in merged:
            raise p.error(req, "missing (required; or list its values under [grid])"
                          if req != "acts" else "missing (required)")

    merged.setdefault("name", default_name or "study")
    scalars = {k: p.check(k, merged[k], c) for k, c in SPEC_KEYS.items() if k in merged}
    folds = scalars.get("folds")
    if folds is not None:
        if data.get("val_fraction"):
            raise p.error("val_fraction", f"got {data['val_fraction']!r} with folds = {folds}; "
                                          "the held-out fold is the validation split: remove "
                                          "val_fraction or set it to 0")
        scalars["val_fraction"] = 0.0
    acts = p.name_list("acts", merged["acts"])
    norms = p.name_list("norms", list(merged["norms"]))
    seeds = p.seeds(merged["seeds"])
    imports = p.imports(merged.get("imports", []), Path(base_dir or "."))

    given = {k: p.check(k, data[k], tkeys[k]) for k in tkeys if k in data}
    train = _train_config(p, given)
    keyed = (*KEYED_TRAIN_FIELDS,
             *(k for k in given if k not in KEYED_TRAIN_FIELDS and k not in _NOT_IN_TRAIN_KEY))

    tables = {k: p.table(k, merged[k]) for k in _TABLE_KEYS if k in merged}
    act_kwargs = _layer_kwargs(p, "act_kwargs", "acts", tables.get("act_kwargs", {}), acts)
    norm_kwargs = _layer_kwargs(p, "norm_kwargs", "norms", tables.get("norm_kwargs", {}), norms)
    resources = {"cpus": 1.0, "gpus": 0.0}
    for key, value in tables.get("resources", {}).items():
        if key not in _RESOURCE_KEYS:
            hint = did_you_mean(key, list(_RESOURCE_KEYS))
            raise p.error(f"resources.{key}",
                          f"unknown key{hint} (allowed: {', '.join(_RESOURCE_KEYS)})")
        resources[key] = p.check(f"resources.{key}", value, _RESOURCE_KEYS[key])

    dataset_kwargs = tables.get("dataset_kwargs", {})
    model_kwargs = tables.get("model_kwargs", {})
    grid = _parse_grid(p, tables.get("grid", {}), data, dataset_kwargs, model_kwargs,
                       {"act": acts, "norm": norms}, {"act": act_kwargs, "norm": norm_kwargs})
    for axis, values in grid.items():
        if axis in tkeys:
            for i, v in enumerate(values):
                _train_config(p, {**given, axis: v}, where=f"grid.{axis}[{i}]")

    if folds is not None and "val_fraction" in grid:
        raise p.error("grid.val_fraction", f"cannot sweep val_fraction with folds = {folds} (the "
                                           "held-out fold is the validation split)")
    count = count_cells(acts, norms, len(seeds), folds, grid)
    if count > MAX_CELLS:
        raise p.error(None, f"{count} cells ({len(acts)} acts x {len(norms)} norms x "
                            f"{len(seeds)} seeds" + (f" x {folds} folds" if folds else "")
                      + "".join(f" x {len(v)} {k}" for k, v in grid.items())
                      + f"); at most {MAX_CELLS} per spec")

    if check_names:
        _check_names(p, scalars, acts, norms, grid, dataset_kwargs, model_kwargs, act_kwargs,
                     norm_kwargs, imports, tables.get("task_kwargs", {}))

    return StudySpec(
        name=scalars["name"], dataset=scalars["dataset"], model=scalars["model"], acts=acts,
        norms=norms, seeds=seeds, train=train, keyed=keyed,
        val_fraction=scalars["val_fraction"], split_seed=scalars["split_seed"],
        threads=scalars["threads"], folds=folds, dataset_kwargs=dataset_kwargs,
        model_kwargs=model_kwargs,
        act_kwargs=act_kwargs, norm_kwargs=norm_kwargs, task_kwargs=tables.get("task_kwargs", {}),
        grid=grid, resources=resources, imports=imports, data_dir=scalars.get("data_dir"),
        description=scalars.get("description", ""), source=source,
    )


def _train_config(p: _Parser, settings: Mapping[str, Any], where: str = "") -> TrainConfig:
    """Build the TrainConfig now, so that a combination it refuses (a cross-field rule) is
    reported when the spec is read, not mid-sweep."""
    try:
        return TrainConfig.from_dict(settings)
    except (TypeError, ValueError) as exc:
        named = re.search(r"TrainConfig\.(\w+)", str(exc))
        key = where or (named.group(1) if named else "training settings")
        raise p.error(key, f"rejected by TrainConfig: {exc}") from None


def _layer_kwargs(p: _Parser, key: str, list_key: str, table: Mapping[str, Any],
                  names: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, kw in table.items():
        name = _norm_name(name)
        if name not in names:
            raise p.error(f"{key}.{name}", f"{name!r} is not in {list_key} {list(names)}")
        out[name] = p.table(f"{key}.{name}", kw)
    return out


def _check_names(p: _Parser, scalars: Mapping[str, Any], acts: Sequence[str],
                 norms: Sequence[str], grid: Mapping[str, tuple[Any, ...]],
                 dataset_kwargs: Mapping[str, Any], model_kwargs: Mapping[str, Any],
                 act_kwargs: Mapping[str, dict[str, Any]],
                 norm_kwargs: Mapping[str, dict[str, Any]], imports: Sequence[str],
                 task_kwargs: Mapping[str, Any] | None = None) -> None:
    from actlab.registry import PluginError, load_plugins

    try:
        load_plugins(imports)
    except PluginError as exc:
        raise p.error("imports", str(exc)) from None
    swept = [a.partition(".")[2] for a in grid if a.startswith("dataset_kwargs.")]
    for d in grid.get("dataset", (scalars["dataset"],)):
        _check_name(p, "grid.dataset" if "dataset" in grid else "dataset", "dataset", d)
        _check_dataset_kwargs(p, "dataset_kwargs", d, list(dataset_kwargs))
        _check_dataset_kwargs(p, "grid", d, swept)
    swept_model = {a.partition(".")[2]: None for a in grid if a.startswith("model_kwargs.")}
    for m in grid.get("model", (scalars["model"],)):
        _check_name(p, "grid.model" if "model" in grid else "model", "model", m)
        _check_model_kwargs(p, "model_kwargs", m, model_kwargs)
        _check_model_kwargs(p, "grid", m, swept_model)
    for i, a in enumerate(acts):
        _check_name(p, f"acts[{i}]", "activation", a)
        _check_layer_kwargs(p, f"act_kwargs.{a}", "activation", a, act_kwargs.get(a, {}))
    for i, n in enumerate(norms):
        _check_name(p, f"norms[{i}]", "norm", n)
        _check_layer_kwargs(p, f"norm_kwargs.{n}", "norm", n, norm_kwargs.get(n, {}))
    for axis, values in grid.items():
        target = layer_axis(axis)
        if target is None:
            continue
        kind, layer, option = target
        fixed = (act_kwargs if kind == "act" else norm_kwargs).get(layer, {})
        for i, v in enumerate(values):
            _check_layer_kwargs(p, f"grid.{axis}[{i}]", "activation" if kind == "act" else "norm",
                                layer, {**fixed, option: v})
    _check_aliases(p, "acts", "activation", acts)
    _check_aliases(p, "norms", "norm", norms)
    _check_tasks(p, scalars, grid, task_kwargs or {})


def _check_tasks(p: _Parser, scalars: Mapping[str, Any], grid: Mapping[str, tuple[Any, ...]],
                 task_kwargs: Mapping[str, Any]) -> None:
    """Every dataset x model pair of the spec can be trained as one task (``task`` if the spec
    names it, else the dataset's): a detection model on a classification set is refused here."""
    from actlab.data.catalog import dataset_task
    from actlab.models import model_task
    from actlab.tasks import check_combination, list_tasks, task_type

    task = scalars.get("task")
    if task is not None and task not in list_tasks():
        raise p.error("task", f"unknown task {task!r}{did_you_mean(task, list_tasks())} "
                              f"(known: {', '.join(list_tasks())})")
    for d in grid.get("dataset", (scalars["dataset"],)):
        for m in grid.get("model", (scalars["model"],)):
            d_task = dataset_task(d)
            try:
                check_combination(task or d_task, model_task(m), d_task)
            except ValueError as exc:
                raise p.error("task" if task else "model",
                              f"{exc} (model {m!r}, dataset {d!r})") from None
            if task_kwargs:  # options of the task's constructor (e.g. seq2seq beam_size)
                init = inspect.signature(task_type(task or d_task).__init__)
                unknown = [k for k in task_kwargs if k not in init.parameters
                           or k in ("self", "num_classes")]
                if unknown:
                    allowed = [n for n in init.parameters if n not in ("self", "num_classes")]
                    raise p.error("task_kwargs", f"task {task or d_task!r} takes no option "
                                  f"{unknown[0]!r}{did_you_mean(unknown[0], allowed)} "
                                  f"(its options: {', '.join(allowed)})")
                try:
                    task_type(task or d_task).check_options(task_kwargs)
                except (TypeError, ValueError) as exc:
                    raise p.error("task_kwargs", str(exc)) from None


def _parse_grid(
    p: _Parser,
    grid: Mapping[str, Any],
    data: Mapping[str, Any],
    dataset_kwargs: Mapping[str, Any],
    model_kwargs: Mapping[str, Any],
    layers: Mapping[str, Sequence[str]] | None = None,
    layer_kwargs: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
) -> dict[str, tuple[Any, ...]]:
    axes: dict[str, Checker | None] = {
        **{k: c for k, c in train_keys().items() if k not in BOOKKEEPING_KEYS},
        "val_fraction": SPEC_KEYS["val_fraction"], "split_seed": SPEC_KEYS["split_seed"],
        "threads": SPEC_KEYS["threads"], "dataset": Name(), "model": Name(),
    }
    out: dict[str, tuple[Any, ...]] = {}
    for axis, values in grid.items():
        key = f"grid.{axis}"
        prefix, _, sub = axis.partition(".")
        target = layer_axis(axis)
        if target is not None:
            checker = None
            kind, layer, option = target
            names = (layers or {}).get(kind, ())
            if layer not in names:
                raise p.error(key, f"{layer!r} is not in {kind}s = {list(names)} (a layer-option "
                                   f"axis is {prefix}.<{kind} in {kind}s>.<option>)")
            if option in (layer_kwargs or {}).get(kind, {}).get(layer, {}):
                raise p.error(key, f"{option!r} is also set in {prefix}.{layer}; set it in one "
                                   "place only")
        elif prefix in ("act_kwargs", "norm_kwargs"):
            raise p.error(key, f"a layer-option axis needs the layer and the option: "
                               f"{prefix}.<name>.<option> (e.g. norm_kwargs.agc.lam_init)")
        elif prefix in ("model_kwargs", "dataset_kwargs") and sub:
            checker: Checker | None = None
            fixed = model_kwargs if prefix == "model_kwargs" else dataset_kwargs
            if sub in fixed:
                raise p.error(key, f"{sub!r} is also set in {prefix}; set it in one place only")
        elif axis in axes:
            checker = axes[axis]
            if axis in data:
                raise p.error(key, f"{axis!r} is also set at the top level; set it in one place "
                                   "only")
        elif axis in ("fold", "folds"):
            raise p.error(key, "folds are not a [grid] axis: set folds = k at the top level "
                               "(every seed then runs the k folds)")
        elif axis in ("acts", "norms", "seeds", "act", "norm", "seed"):
            raise p.error(key, f"{axis!r} is already an axis: list the values in "
                               f"{axis.rstrip('s')}s = [...] at the top level")
        else:
            options = [*sorted(axes), "model_kwargs.<name>", "dataset_kwargs.<name>",
                       "act_kwargs.<act>.<option>", "norm_kwargs.<norm>.<option>"]
            raise p.error(key, f"cannot sweep {axis!r}{did_you_mean(axis, sorted(axes))} "
                               f"(sweepable: {', '.join(options)})")
        if not isinstance(values, list) or not values:
            raise p.error(key, f"got {_short(values)}; expected a non-empty list of values")
        if len(values) > MAX_CELLS:
            raise p.error(key, f"{len(values)} values; at most {MAX_CELLS} cells per spec")
        checked = tuple(p.check(f"{key}[{i}]", v, checker) for i, v in enumerate(values))
        if len({repr(v) for v in checked}) != len(checked):
            raise p.error(key, f"got {_short(values)}; values must be distinct")
        out[axis] = checked
    return out


# ----------------------------------------------------------------------------------------------
# checks that depend on this machine
# ----------------------------------------------------------------------------------------------
_PROBE_SIZE = 8  # samples kept per split when a dataset is probed


def preflight(spec: StudySpec, *, device: bool = True, data: bool = True) -> None:
    """Check what a spec needs from this machine, raising :class:`SpecError` (one line):

    * ``device``: the device exists here (``cuda:1`` on a one-GPU machine, ``mps`` without
      Apple silicon fail now, not in every cell);
    * ``data``: every dataset of the spec (each value of the ``dataset`` and ``dataset_kwargs.*``
      axes) loads: file-based ones (MNIST, CIFAR, SVHN, ...) need their files present and
      readable. Datasets that accept ``max_train``/``max_val``/``max_test`` are loaded with a
      few samples per split only (the files are still read and checked in full).
    """
    if device:
        problem = device_problem(spec.device)
        if problem:
            raise SpecError(spec.source, "device", f"{spec.device!r}: {problem}")
    if data:
        for dataset, kwargs in _dataset_points(spec):
            _probe_dataset(spec, dataset, kwargs)


def _dataset_points(spec: StudySpec) -> list[tuple[str, dict[str, Any]]]:
    axes = {a: v for a, v in spec.grid.items() if a == "dataset" or a.startswith("dataset_kw")}
    points = []
    for values in itertools.product(*axes.values()):
        point = dict(zip(axes, values, strict=True))
        kwargs = {**spec.dataset_kwargs, **{a.partition(".")[2]: v for a, v in point.items()
                                            if a != "dataset"}}
        points.append((point.get("dataset", spec.dataset), kwargs))
    return points


def _probe_dataset(spec: StudySpec, dataset: str, kwargs: dict[str, Any]) -> None:
    from actlab.data import dataset_options, load_dataset
    from actlab.data.base import DatasetError
    from actlab.registry import load_plugins

    load_plugins(spec.imports)
    options = set(dataset_options(dataset))
    small = {k: _PROBE_SIZE for k in ("max_train", "max_val", "max_test")
             if k in options and k not in kwargs}
    try:
        folds = {"folds": spec.folds, "fold": 0} if spec.folds else {}
        load_dataset(dataset, data_dir=spec.data_dir, val_fraction=spec.val_fraction,
                     seed=spec.split_seed, **kwargs, **small, **folds)
    except Exception as exc:  # a user's dataset may raise anything: report it in one line
        text = str(exc).split("; pass data_dir=")[0]
        if isinstance(exc, (DatasetError, OSError)):
            hint = ("; put the files there, or point to them with --data-dir DIR, "
                    "ACTLAB_DATA=DIR or data_dir in the spec")
            raise SpecError(spec.source, "dataset", f"{text}{hint}") from None
        raise SpecError(spec.source, "dataset", f"{dataset!r} cannot be loaded: "
                                                f"{type(exc).__name__}: {text}") from None


# ----------------------------------------------------------------------------------------------
# reference
# ----------------------------------------------------------------------------------------------
_SPEC_KEY_DOCS = {
    "name": ("file name", "study name (part of each cell's key)"),
    "description": ('""', "free text"),
    "dataset": ("required", "registered dataset (`actlab list datasets`); or a `[grid]` axis"),
    "model": ("required", "registered model (`actlab list models`); or a `[grid]` axis"),
    "acts": ("required", "activations to compare, e.g. `[\"relu\", \"sau\"]`"),
    "norms": ('["bn"]', "normalisations to compare"),
    "seeds": ("[0, 1, 2]", f"a count or a list of distinct integers >= 0 (at most {MAX_SEEDS})"),
    "val_fraction": ("0.1", None),
    "task": ("the dataset's", "`classification`, `segmentation`, `detection` or `seq2seq`; a model "
                              "of another task on the dataset is refused at `--check`"),
    "split_seed": ("0", None),
    "threads": ("1", None),
    "folds": ("none", f"k-fold cross-validation, an integer in [2, {MAX_FOLDS}]: each seed runs "
                      "k cells, cell `fold = i` trains on the other k-1 folds of the training "
                      "data (split by `split_seed`), validates on fold i and reports the test "
                      "split; `val_fraction` must be 0"),
    "imports": ("[]", "plug-ins: module names or `.py` paths (relative to the spec file)"),
    "data_dir": ("$ACTLAB_DATA", "folder of file-based datasets (`--data-dir` overrides it)"),
    "dataset_kwargs": ("{}", "options of the dataset (`max_train`, `label_type`, ...)"),
    "model_kwargs": ("{}", "options of the model (`width`, `depth`, ...)"),
    "act_kwargs": ("{}", "per-activation options: `{ sau = { alpha = 0.1 } }`"),
    "norm_kwargs": ("{}", "per-norm options"),
    "task_kwargs": ("{}", "options of the task (seq2seq: `beam_size`, `length_penalty`; "
                          "detection: `nms_threshold`, ...)"),
    "grid": ("{}", "extra axes: `lr = [0.1, 0.05]`, `model_kwargs.width = [1, 2]`, ..."),
    "resources": ("cpus = 1, gpus = 0", "what each Ray task asks for (`cpus`, `gpus`, "
                                         "`memory_gb`)"),
}


def spec_reference() -> str:
    """The spec keys as a Markdown table (key, default, allowed values), from the schema itself:
    the spec's own keys, then every ``TrainConfig`` field. The README's reference is this text."""
    rows = ["| key | default | allowed |", "|---|---|---|"]
    for key, (default, doc) in _SPEC_KEY_DOCS.items():
        check = SPEC_KEYS.get(key)
        rows.append(f"| `{key}` | {default} | {doc or check.expected} |")  # type: ignore[union-attr]
    for key, check in train_keys().items():
        default = TrainConfig.defaults()[key]
        shown = "none" if default is None else f"`{json.dumps(default)}`"
        rows.append(f"| `{key}` | {shown} | {check.expected} |")  # type: ignore[attr-defined]
    return "\n".join(rows)
