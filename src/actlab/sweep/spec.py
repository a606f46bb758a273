"""Experiment specs: TOML files that describe a study, and their validation.

A spec names one dataset and one model, the layers to compare and the seeds, plus the training
settings shared by every cell; ``[grid]`` adds further axes to sweep::

    name = "bs_study"
    dataset = "digits"
    model = "tiny_cnn"
    acts = ["relu", "sau"]
    norms = ["bn", "agc"]
    seeds = [0, 1, 2]            # or a count: seeds = 3
    epochs = 10
    batch_size = 32
    optimizer = "sgd"
    lr = 0.05
    act_kwargs = { sau = { alpha = 0.1 } }

    [grid]
    batch_size = [1, 4, 8]

    [resources]
    cpus = 1
    gpus = 0

Every problem raises :class:`SpecError`, whose message is one line naming the file, the key, the
bad value and what is allowed (with a "did you mean" for misspelt keys and layer names).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "SpecError",
    "StudySpec",
    "load_spec",
    "parse_spec",
    "default_spec_path",
    "TRAIN_KEYS",
    "TOP_KEYS",
]


class SpecError(ValueError):
    """An invalid experiment spec. ``str(err)`` is a single line: ``file: key: problem``."""

    def __init__(self, source: str, key: str | None, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = " ".join(problem.split())  # always one line
        where = f"{source}: {key}: " if key else f"{source}: "
        super().__init__(where + self.problem)


# ----------------------------------------------------------------------------------------------
# value checkers: each returns the (normalised) value or raises _Bad(expected)
# ----------------------------------------------------------------------------------------------
class _Bad(Exception):
    def __init__(self, expected: str) -> None:
        self.expected = expected


Checker = Callable[[Any], Any]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(lo: int | None = None) -> Checker:
    what = "an integer" if lo is None else f"an integer >= {lo}"

    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or (lo is not None and v < lo):
            raise _Bad(what)
        return v

    return check


def _float(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           hi_open: bool = False) -> Checker:
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi:g}")
    what = "a number" + (" " + " and ".join(parts) if parts else "")

    def check(v: Any) -> float:
        if not _is_number(v):
            raise _Bad(what)
        v = float(v)
        if lo is not None and (v < lo or (lo_open and v == lo)):
            raise _Bad(what)
        if hi is not None and (v > hi or (hi_open and v == hi)):
            raise _Bad(what)
        return v

    return check


def _choice(*options: str) -> Checker:
    what = "one of " + ", ".join(repr(o) for o in options)

    def check(v: Any) -> str:
        if not isinstance(v, str) or v.lower() not in options:
            raise _Bad(what)
        return v.lower()

    return check


def _milestones(v: Any) -> int | list[int]:
    """``step_size``: a period in epochs, or a strictly increasing list of milestone epochs."""
    what = "an integer >= 1 or a strictly increasing list of milestone epochs"
    if isinstance(v, int) and not isinstance(v, bool):
        if v < 1:
            raise _Bad(what)
        return v
    if (not isinstance(v, list) or not v
            or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in v)
            or any(b <= a for a, b in zip(v, v[1:], strict=False))):
        raise _Bad(what)
    return list(v)


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise _Bad("true or false")
    return v


def _str(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise _Bad("a non-empty string")
    return v


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise _Bad("a string")
    return v


def _optional_str(v: Any) -> str | None:
    """A name, where "none" (any case) or "" means None."""
    if not isinstance(v, str):
        raise _Bad('a string ("none" for no augmentation)')
    return None if v.strip().lower() in ("", "none") else v


def _device(v: Any) -> str:
    if isinstance(v, str) and (v in ("auto", "cpu", "cuda", "mps") or v.startswith("cuda:")):
        return v
    raise _Bad("'auto', 'cpu', 'cuda' or 'cuda:N'")


#: Training settings accepted at the top level of a spec (and as [grid] axes); they are passed to
#: ``actlab.train.TrainConfig.from_dict``. Fields that ``TrainConfig`` adds later are accepted
#: too (validated by ``from_dict``).
TRAIN_KEYS: dict[str, Checker] = {
    "epochs": _int(1),
    "batch_size": _int(1),
    "optimizer": _choice("sgd", "adam", "adamw"),
    "lr": _float(0.0, lo_open=True),
    "lr_scaling": _choice("none", "linear"),
    "momentum": _float(0.0, 1.0, hi_open=True),
    "weight_decay": _float(0.0),
    "nesterov": _bool,
    "schedule": _choice("none", "cosine", "step"),
    "step_size": _milestones,
    "step_gamma": _float(0.0, 1.0, lo_open=True),
    "warmup_epochs": _float(0.0),
    "augment": _optional_str,
    "amp": _bool,
    "class_weights": _choice("none", "enet"),
    "label_smoothing": _float(0.0, 1.0, hi_open=True),
    "grad_clip": _float(0.0, lo_open=True),
    "deterministic": _bool,
    "eval_batch_size": _int(1),
    "log_layer_stats": _bool,
}

#: Keys that do not change results: kept out of the cell key (see ``actlab.sweep.grid``).
BOOKKEEPING_KEYS = ("device", "data_dir")

#: Scalar top-level keys besides the training settings (name -> checker).
_SCALAR_KEYS: dict[str, Checker] = {
    "name": _str,
    "description": _text,
    "dataset": _str,
    "model": _str,
    "val_fraction": _float(0.0, 1.0, hi_open=True),
    "split_seed": _int(0),
    "data_dir": _str,
    "device": _device,
}
_TABLE_KEYS = ("dataset_kwargs", "model_kwargs", "act_kwargs", "norm_kwargs", "grid", "resources")
_LIST_KEYS = ("acts", "norms", "seeds")

#: Every key allowed at the top level of a spec.
TOP_KEYS: tuple[str, ...] = tuple(
    sorted({*TRAIN_KEYS, *_SCALAR_KEYS, *_TABLE_KEYS, *_LIST_KEYS})
)

_RESOURCE_KEYS: dict[str, Checker] = {
    "cpus": _float(0.0, lo_open=True),
    "gpus": _float(0.0),
    "memory_gb": _float(0.0, lo_open=True),
}

#: Defaults of a spec (training defaults not listed here are TrainConfig's own).
DEFAULTS: dict[str, Any] = {
    "norms": ["bn"],
    "seeds": [0, 1, 2],
    "val_fraction": 0.1,
    "split_seed": 0,
    "epochs": 10,
    "batch_size": 32,
    "optimizer": "sgd",
    "lr": 0.05,
}


@dataclass(frozen=True)
class StudySpec:
    """A validated experiment spec (see the module docstring for the file format).

    ``train`` holds the training settings given in the file (defaults for epochs, batch_size,
    optimizer and lr), ``grid`` maps each extra axis (a training key, ``val_fraction``,
    ``split_seed``, ``dataset``, ``model`` or ``model_kwargs.<k>`` / ``dataset_kwargs.<k>``) to its
    values, in file order.
    """

    name: str
    dataset: str
    model: str
    acts: tuple[str, ...]
    norms: tuple[str, ...] = ("bn",)
    seeds: tuple[int, ...] = (0, 1, 2)
    train: dict[str, Any] = field(default_factory=dict)
    val_fraction: float = 0.1
    split_seed: int = 0
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    act_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    norm_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    resources: dict[str, float] = field(default_factory=lambda: {"cpus": 1.0, "gpus": 0.0})
    data_dir: str | None = None
    device: str = "auto"
    description: str = ""
    source: str = "<spec>"

    def replace(self, **changes: Any) -> StudySpec:
        return dataclasses.replace(self, **changes)


def default_spec_path() -> Path:
    """The default study shipped with the package (``actlab/specs/default.toml``)."""
    return Path(__file__).resolve().parent.parent / "specs" / "default.toml"


def _packaged_spec(name: str) -> Path | None:
    path = default_spec_path().parent / f"{name}.toml"
    return path if path.is_file() else None


def load_spec(path: str | Path | None = None, *, check_names: bool = True) -> StudySpec:
    """Read and validate a spec file. ``None`` gives the default study; a bare name such as
    ``"default"`` that is not a file is looked up among the specs shipped with the package."""
    if path is None:
        path = default_spec_path()
    path = Path(path)
    if not path.is_file():
        packaged = _packaged_spec(str(path)) if path.suffix == "" and len(path.parts) == 1 else None
        if packaged is None:
            shipped = sorted(p.stem for p in default_spec_path().parent.glob("*.toml"))
            raise SpecError(
                str(path), None,
                f"no such spec file (packaged specs: {', '.join(shipped) or 'none'})",
            )
        path = packaged
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(str(path), None, f"not valid TOML: {exc}") from None
    except OSError as exc:
        raise SpecError(str(path), None, f"cannot read: {exc.strerror or exc}") from None
    default_name = path.stem
    return parse_spec(data, source=str(path), default_name=default_name, check_names=check_names)


# ----------------------------------------------------------------------------------------------
# parsing
# ----------------------------------------------------------------------------------------------
def _norm_name(name: str) -> str:
    """Registry spelling of a layer/model/dataset name: lower case, ``-`` -> ``_``."""
    return name.strip().lower().replace("-", "_")


def _did_you_mean(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _train_config_cls() -> Any:
    try:
        module = importlib.import_module("actlab.train")
    except ModuleNotFoundError:  # pragma: no cover - package always present in the repo
        return None
    return getattr(module, "TrainConfig", None)


def train_keys() -> dict[str, Checker | None]:
    """The training keys a spec accepts: :data:`TRAIN_KEYS` plus any further ``TrainConfig``
    fields (checked by ``TrainConfig.from_dict`` only). ``seed`` comes from ``seeds``."""
    keys: dict[str, Checker | None] = dict(TRAIN_KEYS)
    cls = _train_config_cls()
    if cls is not None and dataclasses.is_dataclass(cls):
        for f in dataclasses.fields(cls):
            keys.setdefault(f.name, None)
    keys.pop("seed", None)
    keys.pop("device", None)  # a top-level bookkeeping key
    return keys


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str | None, problem: str) -> SpecError:
        return SpecError(self.source, key, problem)

    def check(self, key: str, value: Any, checker: Checker | None) -> Any:
        if checker is None:
            if isinstance(value, (dict, list)):
                raise self.error(key, f"got {value!r}; expected a single value")
            return value
        try:
            return checker(value)
        except _Bad as bad:
            raise self.error(key, f"got {value!r}; expected {bad.expected}") from None

    def name_list(self, key: str, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise self.error(key, f"got {value!r}; expected a non-empty list of names")
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
            return tuple(range(value))
        if not isinstance(value, list) or not value:
            raise self.error("seeds", f"got {value!r}; expected a count or a list of integers")
        out = []
        for i, v in enumerate(value):
            out.append(self.check(f"seeds[{i}]", v, _int(0)))
        if len(set(out)) != len(out):
            raise self.error("seeds", f"got {value!r}; seeds must be distinct")
        return tuple(out)

    def table(self, key: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(key, f"got {value!r}; expected a table {{key = value, ...}}")
        return dict(value)


def _known_names(kind: str) -> list[str] | None:
    """Registered names of ``kind`` (after importing the packages that register them), or None
    when that part of the library registers nothing (then names are not checked)."""
    from actlab import registry

    for mod in ("actlab.nn", "actlab.models", "actlab.data"):
        importlib.import_module(mod)
    reg = {
        "activation": registry.ACTIVATIONS, "norm": registry.NORMS,
        "model": registry.MODELS, "dataset": registry.DATASETS,
    }[kind]
    names = reg.names(include_aliases=True)
    if kind == "dataset" and not names:
        data = importlib.import_module("actlab.data")
        lister = getattr(data, "list_datasets", None)
        if callable(lister):
            names = list(lister())
    return names or None


def _check_name(p: _Parser, key: str, kind: str, name: str) -> None:
    known = _known_names(kind)
    if known is None:
        return
    norm_name = _norm_name(name)
    if norm_name not in known:
        shown = sorted(n for n in known)
        raise p.error(
            key,
            f"unknown {kind} {name!r}{_did_you_mean(norm_name, known)} "
            f"(known: {', '.join(shown)})",
        )


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
    data = importlib.import_module("actlab.data")
    options = getattr(data, "dataset_options", None)
    if not callable(options) or not names:
        return
    try:
        known = list(options(dataset))
    except KeyError:  # unknown dataset: reported by the name check
        return
    bad = [n for n in names if n not in known]
    if bad:
        raise p.error(key, f"dataset {dataset!r} does not take {bad[0]!r}"
                           f"{_did_you_mean(bad[0], known)} (its options: {', '.join(known)})")


def parse_spec(
    data: Mapping[str, Any],
    *,
    source: str = "<spec>",
    default_name: str | None = None,
    check_names: bool = True,
) -> StudySpec:
    """Validate a spec given as a mapping (as read from TOML) and return a :class:`StudySpec`.

    With ``check_names`` the activation, norm, model and dataset names are checked against the
    registries (and layer keyword arguments by building each layer once).
    """
    p = _Parser(source)
    if not isinstance(data, Mapping):
        raise p.error(None, f"expected a table of settings, got {type(data).__name__}")
    tkeys = train_keys()
    allowed = sorted({*TOP_KEYS, *tkeys})
    for key in data:
        if key not in allowed:
            hint = _did_you_mean(key, allowed)
            if key == "seed":
                hint = "; did you mean 'seeds'?"
            raise p.error(key, f"unknown key{hint} (allowed: {', '.join(allowed)})")

    merged = {**DEFAULTS, **data}
    raw_grid = data.get("grid")
    for req in ("dataset", "model", "acts"):
        swept = raw_grid.get(req) if isinstance(raw_grid, Mapping) else None
        if req not in merged and req != "acts" and isinstance(swept, list) and swept:
            merged[req] = swept[0]  # swept: the first value names the study in labels
        if req not in merged:
            raise p.error(req, "missing (required; or list its values under [grid])"
                          if req != "acts" else "missing (required)")

    name = merged.get("name", default_name or "study")
    name = p.check("name", name, _str)
    dataset = _norm_name(p.check("dataset", merged["dataset"], _str))
    model = _norm_name(p.check("model", merged["model"], _str))
    acts = p.name_list("acts", merged["acts"])
    norms = p.name_list("norms", merged["norms"])
    seeds = p.seeds(merged["seeds"])

    train: dict[str, Any] = {}
    for key, checker in tkeys.items():
        if key in merged:
            train[key] = p.check(key, merged[key], checker)

    scalars = {k: p.check(k, merged[k], c) for k, c in _SCALAR_KEYS.items() if k in merged}

    tables = {k: p.table(k, merged[k]) for k in _TABLE_KEYS if k in merged}
    act_kwargs: dict[str, dict[str, Any]] = {}
    for act, kw in tables.get("act_kwargs", {}).items():
        act = _norm_name(act)
        if act not in acts:
            raise p.error(f"act_kwargs.{act}", f"{act!r} is not in acts {list(acts)}")
        act_kwargs[act] = p.table(f"act_kwargs.{act}", kw)
    norm_kwargs: dict[str, dict[str, Any]] = {}
    for norm, kw in tables.get("norm_kwargs", {}).items():
        norm = _norm_name(norm)
        if norm not in norms:
            raise p.error(f"norm_kwargs.{norm}", f"{norm!r} is not in norms {list(norms)}")
        norm_kwargs[norm] = p.table(f"norm_kwargs.{norm}", kw)

    resources = {"cpus": 1.0, "gpus": 0.0}
    for key, value in tables.get("resources", {}).items():
        if key not in _RESOURCE_KEYS:
            hint = _did_you_mean(key, list(_RESOURCE_KEYS))
            raise p.error(f"resources.{key}",
                          f"unknown key{hint} (allowed: {', '.join(_RESOURCE_KEYS)})")
        resources[key] = p.check(f"resources.{key}", value, _RESOURCE_KEYS[key])

    dataset_kwargs = tables.get("dataset_kwargs", {})
    model_kwargs = tables.get("model_kwargs", {})
    grid = _parse_grid(p, tables.get("grid", {}), data, tkeys, dataset_kwargs, model_kwargs)

    _check_train_config(p, train, grid)

    if check_names:
        swept = [a.partition(".")[2] for a in grid if a.startswith("dataset_kwargs.")]
        for d in grid.get("dataset", (dataset,)):
            _check_name(p, "grid.dataset" if "dataset" in grid else "dataset", "dataset", d)
            _check_dataset_kwargs(p, "dataset_kwargs", d, list(dataset_kwargs))
            _check_dataset_kwargs(p, "grid", d, swept)
        swept_model = {a.partition(".")[2]: None for a in grid if a.startswith("model_kwargs.")}
        for m in grid.get("model", (model,)):
            _check_name(p, "grid.model" if "model" in grid else "model", "model", m)
            _check_model_kwargs(p, "model_kwargs", m, model_kwargs)
            _check_model_kwargs(p, "grid", m, swept_model)
        for i, a in enumerate(acts):
            _check_name(p, f"acts[{i}]", "activation", a)
            _check_layer_kwargs(p, f"act_kwargs.{a}", "activation", a, act_kwargs.get(a, {}))
        for i, n in enumerate(norms):
            _check_name(p, f"norms[{i}]", "norm", n)
            _check_layer_kwargs(p, f"norm_kwargs.{n}", "norm", n, norm_kwargs.get(n, {}))

    return StudySpec(
        name=name,
        dataset=dataset,
        model=model,
        acts=acts,
        norms=norms,
        seeds=seeds,
        train=train,
        val_fraction=scalars.get("val_fraction", 0.1),
        split_seed=scalars.get("split_seed", 0),
        dataset_kwargs=dataset_kwargs,
        model_kwargs=model_kwargs,
        act_kwargs=act_kwargs,
        norm_kwargs=norm_kwargs,
        grid=grid,
        resources=resources,
        data_dir=scalars.get("data_dir"),
        device=scalars.get("device", "auto"),
        description=scalars.get("description", ""),
        source=source,
    )


def _check_train_config(p: _Parser, train: Mapping[str, Any],
                        grid: Mapping[str, tuple[Any, ...]]) -> None:
    """Let ``TrainConfig.from_dict`` see the settings now (each grid value over the base), so
    that a combination it refuses is reported when the spec is read, not mid-sweep."""
    cls = _train_config_cls()
    from_dict = getattr(cls, "from_dict", None)
    if not callable(from_dict):
        return
    tkeys = train_keys()
    trials: list[tuple[str, dict[str, Any]]] = [("", dict(train))]
    for axis, values in grid.items():
        if axis in tkeys:
            trials += [(f"grid.{axis}[{i}]", {**train, axis: v}) for i, v in enumerate(values)]
    for where, settings in trials:
        try:
            from_dict(settings)
        except (TypeError, ValueError) as exc:
            key = where or ", ".join(sorted(settings)) or "training settings"
            if not where:
                named = [k for k in settings if k in str(exc)]
                key = named[0] if named else "training settings"
            raise p.error(key, f"rejected by TrainConfig: {exc}") from None


def _parse_grid(
    p: _Parser,
    grid: Mapping[str, Any],
    data: Mapping[str, Any],
    tkeys: Mapping[str, Checker | None],
    dataset_kwargs: Mapping[str, Any],
    model_kwargs: Mapping[str, Any],
) -> dict[str, tuple[Any, ...]]:
    axes: dict[str, Checker | None] = {
        **tkeys, "val_fraction": _SCALAR_KEYS["val_fraction"],
        "split_seed": _SCALAR_KEYS["split_seed"], "dataset": _str, "model": _str,
    }
    out: dict[str, tuple[Any, ...]] = {}
    for axis, values in grid.items():
        key = f"grid.{axis}"
        prefix, _, sub = axis.partition(".")
        if prefix in ("model_kwargs", "dataset_kwargs") and sub:
            checker: Checker | None = None
            fixed = model_kwargs if prefix == "model_kwargs" else dataset_kwargs
            if sub in fixed:
                raise p.error(key, f"{sub!r} is also set in {prefix}; set it in one place only")
        elif axis in axes:
            checker = axes[axis]
            if axis in data:
                raise p.error(key, f"{axis!r} is also set at the top level; set it in one place "
                                   "only")
        elif axis in ("acts", "norms", "seeds", "act", "norm", "seed"):
            raise p.error(key, f"{axis!r} is already an axis: list the values in "
                               f"{axis.rstrip('s')}s = [...] at the top level")
        else:
            options = [*sorted(axes), "model_kwargs.<name>", "dataset_kwargs.<name>"]
            raise p.error(key, f"cannot sweep {axis!r}{_did_you_mean(axis, sorted(axes))} "
                               f"(sweepable: {', '.join(options)})")
        if not isinstance(values, list) or not values:
            raise p.error(key, f"got {values!r}; expected a non-empty list of values")
        checked = tuple(p.check(f"{key}[{i}]", v, checker) for i, v in enumerate(values))
        if axis in ("dataset", "model"):
            checked = tuple(_norm_name(v) for v in checked)
        if len({repr(v) for v in checked}) != len(checked):
            raise p.error(key, f"got {values!r}; values must be distinct")
        out[axis] = checked
    return out
