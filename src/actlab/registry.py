"""Name -> factory registries for activations, normalisations, models and datasets.

Every layer the experiment system can swap is reachable by a lowercase name::

    >>> from actlab.registry import get_act, get_norm
    >>> get_act("sau", alpha=0.1)          # a fresh SAU module
    >>> get_norm("agc", 64)                # AGC over 64 channels
    >>> act = act_factory("leaky_relu", negative_slope=0.2)
    >>> act(), act()                       # two independent instances

Users register their own with the decorators::

    @register_act("my_act")
    class MyAct(nn.Module): ...

An activation factory is called with keyword arguments only and always accepts ``inplace=``
(ignored by layers that cannot work in place). A norm factory is called as
``factory(num_channels, dim=2, **kwargs)`` where ``dim`` is the number of spatial dimensions of
the feature map it will see (1 for sequences, 2 for images, 3 for volumes, 0 for plain features).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

from torch import nn

T = TypeVar("T")

__all__ = [
    "Registry",
    "ACTIVATIONS",
    "NORMS",
    "MODELS",
    "DATASETS",
    "register_act",
    "register_norm",
    "get_act",
    "get_norm",
    "act_factory",
    "norm_factory",
    "is_activation",
    "is_norm",
    "activation_types",
    "norm_types",
    "register_activation_type",
    "register_norm_type",
    "default_groups",
    "REGISTRIES",
    "PLUGIN_GROUP",
    "PluginError",
    "load_plugins",
]


class Registry(Generic[T]):
    """A case-insensitive mapping from names to factories with helpful errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._aliases: dict[str, str] = {}

    @staticmethod
    def _key(name: str) -> str:
        if not isinstance(name, str):
            raise TypeError(f"{name!r} is not a name (expected str)")
        return name.strip().lower().replace("-", "_")

    def register(
        self,
        name: str,
        factory: Callable[..., T] | None = None,
        *,
        aliases: tuple[str, ...] = (),
        overwrite: bool = False,
    ) -> Any:
        """Register ``factory`` under ``name`` (usable as a decorator when factory is None)."""

        def add(f: Callable[..., T]) -> Callable[..., T]:
            key = self._key(name)
            for k in (key, *map(self._key, aliases)):
                if not overwrite and (k in self._factories or k in self._aliases):
                    raise KeyError(f"{self.kind} {k!r} is already registered (pass overwrite=True)")
            self._factories[key] = f
            self._aliases.pop(key, None)
            for a in aliases:
                self._aliases[self._key(a)] = key
            return f

        return add if factory is None else add(factory)

    def resolve(self, name: str) -> str:
        key = self._key(name)
        key = self._aliases.get(key, key)
        if key not in self._factories:
            import difflib

            close = difflib.get_close_matches(key, self.names(include_aliases=True), n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise KeyError(
                f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(self.names())}"
            )
        return key

    def factory(self, name: str) -> Callable[..., T]:
        return self._factories[self.resolve(name)]

    def build(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.factory(name)(*args, **kwargs)

    def names(self, include_aliases: bool = False) -> list[str]:
        out = list(self._factories)
        if include_aliases:
            out += list(self._aliases)
        return sorted(out)

    def aliases(self) -> dict[str, str]:
        return dict(self._aliases)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = self._key(name)
        return key in self._factories or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._factories)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


ACTIVATIONS: Registry[nn.Module] = Registry("activation")
NORMS: Registry[nn.Module] = Registry("norm")
MODELS: Registry[nn.Module] = Registry("model")
DATASETS: Registry[Any] = Registry("dataset")
#: The registries by kind (the word used in error messages).
REGISTRIES: dict[str, Registry[Any]] = {
    "activation": ACTIVATIONS, "norm": NORMS, "model": MODELS, "dataset": DATASETS,
}


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without signature
        return False
    if name in params:
        return True
    # A class forwarding ``**kwargs`` (e.g. nn.Tanh, whose __init__ is nn.Module's) does not
    # really take the argument; a factory function forwarding ``**kwargs`` is trusted to.
    return not isinstance(fn, type) and any(p.kind is p.VAR_KEYWORD for p in params.values())


def _act_entry(cls: Callable[..., nn.Module], **defaults: Any) -> Callable[..., nn.Module]:
    """Wrap an activation class so that it takes keyword arguments and tolerates ``inplace=``."""
    takes_inplace = _accepts(cls, "inplace")

    def make(**kwargs: Any) -> nn.Module:
        kw = {**defaults, **kwargs}
        if not takes_inplace:
            kw.pop("inplace", None)
        return cls(**kw)

    make.__name__ = getattr(cls, "__name__", "activation")
    make.__doc__ = getattr(cls, "__doc__", None)
    make.__wrapped__ = cls  # type: ignore[attr-defined]
    return make


def register_act(
    name: str, factory: Callable[..., nn.Module] | None = None, **kwargs: Any
) -> Any:
    """Register an activation factory or class (decorator or direct call)."""

    def add(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        ACTIVATIONS.register(name, _act_entry(f), **kwargs)
        return f

    return add if factory is None else add(factory)


def register_norm(
    name: str, factory: Callable[..., nn.Module] | None = None, **kwargs: Any
) -> Any:
    """Register a norm factory ``f(num_channels, dim=2, **kw) -> nn.Module``."""
    return NORMS.register(name, factory, **kwargs)


# ----------------------------------------------------------------------------------------------
# activations
# ----------------------------------------------------------------------------------------------
ACTIVATIONS.register("identity", _act_entry(nn.Identity), aliases=("linear", "none"))
ACTIVATIONS.register("relu", _act_entry(nn.ReLU))
ACTIVATIONS.register(
    "leaky_relu", _act_entry(nn.LeakyReLU, negative_slope=0.01), aliases=("lrelu",)
)
ACTIVATIONS.register("prelu", _act_entry(nn.PReLU))
ACTIVATIONS.register("elu", _act_entry(nn.ELU))
ACTIVATIONS.register("selu", _act_entry(nn.SELU))
ACTIVATIONS.register("softplus", _act_entry(nn.Softplus))
ACTIVATIONS.register("gelu", _act_entry(nn.GELU))
ACTIVATIONS.register("swish", _act_entry(nn.SiLU), aliases=("silu",))
ACTIVATIONS.register("relu6", _act_entry(nn.ReLU6))
ACTIVATIONS.register("mish", _act_entry(nn.Mish))
ACTIVATIONS.register("tanh", _act_entry(nn.Tanh))
ACTIVATIONS.register("sigmoid", _act_entry(nn.Sigmoid))
ACTIVATIONS.register("hardswish", _act_entry(nn.Hardswish))


# ----------------------------------------------------------------------------------------------
# norms
# ----------------------------------------------------------------------------------------------
_BN = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def _check_dim(dim: int) -> int:
    if dim not in (0, 1, 2, 3):
        raise ValueError(f"dim must be the number of spatial dimensions 0..3, got {dim!r}")
    return dim


def _batch_norm(num_channels: int, dim: int = 2, **kw: Any) -> nn.Module:
    return _BN[_check_dim(dim)](num_channels, **kw)


def default_groups(num_channels: int, max_groups: int = 32) -> int:
    """Largest group count <= max_groups that divides num_channels (GroupNorm's usual 32)."""
    for g in range(min(max_groups, num_channels), 0, -1):
        if num_channels % g == 0:
            return g
    return 1


def _group_norm(num_channels: int, dim: int = 2, num_groups: int | None = None, **kw: Any):
    _check_dim(dim)
    return nn.GroupNorm(num_groups or default_groups(num_channels), num_channels, **kw)


def _layer_norm(num_channels: int, dim: int = 2, **kw: Any) -> nn.Module:
    """Layer norm over (C, *spatial) for feature maps (GroupNorm with one group); over the last
    (feature) dimension for plain vectors and token sequences (dim=0)."""
    if _check_dim(dim) == 0:
        return nn.LayerNorm(num_channels, **kw)
    return nn.GroupNorm(1, num_channels, **kw)


def _no_norm(num_channels: int, dim: int = 2, **kw: Any) -> nn.Module:
    return nn.Identity()


NORMS.register("bn", _batch_norm, aliases=("batchnorm", "batch_norm"))
NORMS.register("gn", _group_norm, aliases=("groupnorm", "group_norm"))
NORMS.register("ln", _layer_norm, aliases=("layernorm", "layer_norm"))
NORMS.register("none", _no_norm, aliases=("identity",))


# ----------------------------------------------------------------------------------------------
# resolution helpers used by the model zoo and the converter
# ----------------------------------------------------------------------------------------------
ActSpec = str | Callable[..., nn.Module] | type
NormSpec = str | Callable[..., nn.Module] | type | None


def act_factory(spec: ActSpec, **kwargs: Any) -> Callable[..., nn.Module]:
    """A zero-argument-callable factory from a name, a class or a factory function.

    Each call of the returned factory builds a fresh module, so every call site of a network
    owns its own parameters. Extra keyword arguments given at call time override ``kwargs``.
    """
    if isinstance(spec, nn.Module):
        raise TypeError(
            "pass an activation name, class or factory, not a module instance: an instance would "
            "be shared by every call site (use e.g. act=lambda: MyAct(...))"
        )
    if isinstance(spec, str):
        base = ACTIVATIONS.factory(spec)
    elif callable(spec):
        base = _act_entry(spec)
    else:
        raise TypeError(f"activation spec must be a name, class or callable, got {type(spec)}")

    def make(**more: Any) -> nn.Module:
        module = base(**{**kwargs, **more})
        if not isinstance(module, nn.Module):
            raise TypeError(f"activation factory {spec!r} returned {type(module)}, not nn.Module")
        return module

    return make


def norm_factory(spec: NormSpec, **kwargs: Any) -> Callable[..., nn.Module]:
    """A factory ``f(num_channels, dim=2) -> nn.Module`` from a name, class or function.

    ``None`` and ``"none"`` give identity. A class such as ``nn.BatchNorm2d`` is called as
    ``cls(num_channels, **kwargs)`` (its own dimensionality is kept).
    """
    if spec is None:
        spec = "none"
    if isinstance(spec, nn.Module):
        raise TypeError("pass a norm name, class or factory, not a module instance")
    if isinstance(spec, str):
        base = NORMS.factory(spec)
    elif isinstance(spec, type):
        cls = spec

        def base(num_channels: int, dim: int = 2, **kw: Any) -> nn.Module:
            return cls(num_channels, **kw)

    elif callable(spec):
        fn = spec
        takes_dim = _accepts(fn, "dim")

        def base(num_channels: int, dim: int = 2, **kw: Any) -> nn.Module:
            return fn(num_channels, dim=dim, **kw) if takes_dim else fn(num_channels, **kw)

    else:
        raise TypeError(f"norm spec must be a name, class or callable, got {type(spec)}")

    def make(num_channels: int, dim: int = 2, **more: Any) -> nn.Module:
        if not isinstance(num_channels, int) or num_channels <= 0:
            raise ValueError(f"num_channels must be a positive int, got {num_channels!r}")
        return base(num_channels, dim=dim, **{**kwargs, **more})

    return make


def get_act(spec: ActSpec, **kwargs: Any) -> nn.Module:
    """Build one activation module: ``get_act("sau", alpha=0.1)``."""
    return act_factory(spec)(**kwargs)


def get_norm(spec: NormSpec, num_channels: int, dim: int = 2, **kwargs: Any) -> nn.Module:
    """Build one normalisation module: ``get_norm("agc", 64)``, ``get_norm("bn", 64, dim=1)``."""
    return norm_factory(spec)(num_channels, dim=dim, **kwargs)


# Module classes that the converter and the model-zoo checks treat as activations / norms.
_ACTIVATION_TYPES: list[type[nn.Module]] = [
    nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.Softplus, nn.GELU, nn.SiLU,
    nn.ReLU6, nn.Mish, nn.Hardswish, nn.Hardtanh, nn.RReLU, nn.Tanh, nn.Sigmoid,
]
_NORM_TYPES: list[type[nn.Module]] = [
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm,
]


def register_activation_type(cls: type[nn.Module]) -> type[nn.Module]:
    """Mark a module class as an activation for ``convert`` (usable as a class decorator)."""
    if cls not in _ACTIVATION_TYPES:
        _ACTIVATION_TYPES.append(cls)
    return cls


def register_norm_type(cls: type[nn.Module]) -> type[nn.Module]:
    """Mark a module class as a normalisation layer for ``convert``."""
    if cls not in _NORM_TYPES:
        _NORM_TYPES.append(cls)
    return cls


def activation_types() -> tuple[type[nn.Module], ...]:
    return tuple(_ACTIVATION_TYPES)


def norm_types() -> tuple[type[nn.Module], ...]:
    return tuple(_NORM_TYPES)


def is_activation(module: nn.Module) -> bool:
    return isinstance(module, tuple(_ACTIVATION_TYPES))


def is_norm(module: nn.Module) -> bool:
    return isinstance(module, tuple(_NORM_TYPES))


# ----------------------------------------------------------------------------------------------
# plug-ins
# ----------------------------------------------------------------------------------------------
#: Entry-point group of installed plug-ins: each entry names a module (imported) or a
#: zero-argument function (called), e.g. in a plug-in's pyproject.toml::
#:
#:     [project.entry-points."actlab.plugins"]
#:     my_layers = "mypkg.layers"
PLUGIN_GROUP = "actlab.plugins"

_LOADED: set[str] = set()
_ENTRY_POINTS_DONE = False


class PluginError(ImportError):
    """A plug-in cannot be found or fails while it loads. The message is one line naming it."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def _builtins() -> None:
    for mod in ("actlab.nn", "actlab.models", "actlab.data"):
        importlib.import_module(mod)


def _load_file(path: Path) -> None:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"actlab_plugin_{path.stem.replace('-', '_')}_{digest}"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"plug-in {str(path)!r}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


def _load_one(ref: str) -> None:
    if ref.endswith(".py") or "/" in ref or "\\" in ref:
        path = Path(ref).expanduser().resolve()
        if not path.is_file():
            raise PluginError(f"plug-in {ref!r}: no such file {path}")
        _load_file(path)
    else:
        importlib.import_module(ref)


def load_plugins(imports: Iterable[str] = (), *, entry_points: bool = True) -> None:
    """Import plug-ins that register activations, norms, models or datasets (with
    :func:`register_act`, :func:`register_norm`, ``MODELS.register``, ``DATASETS.register``).

    ``imports`` are module names (``"mypkg.layers"``) or paths of ``.py`` files; with
    ``entry_points`` the installed :data:`PLUGIN_GROUP` entry points are loaded too. Each plug-in
    is loaded once per process, after the built-in layers, models and datasets (so a plug-in
    that reuses a built-in name fails, rather than silently replacing it). The sweep calls this
    in the driver and again in every worker process and Ray task before a cell runs.

    Raises :class:`PluginError` naming the plug-in when it is missing or raises while loading.
    """
    global _ENTRY_POINTS_DONE
    _builtins()
    todo: list[tuple[str, Any]] = [(ref, ref) for ref in imports]
    if entry_points and not _ENTRY_POINTS_DONE:
        from importlib.metadata import entry_points as _eps

        todo += [(f"entry point {ep.name} = {ep.value} ({PLUGIN_GROUP})", ep)
                 for ep in _eps(group=PLUGIN_GROUP)]
        _ENTRY_POINTS_DONE = True
    for label, ref in todo:
        if label in _LOADED:
            continue
        try:
            if isinstance(ref, str):
                _load_one(ref)
            else:
                obj = ref.load()
                if callable(obj) and not isinstance(obj, type):
                    obj()
        except PluginError:
            raise
        except Exception as exc:
            target = ref if isinstance(ref, str) else ref.value.partition(":")[0]
            missing = isinstance(exc, ModuleNotFoundError) and exc.name is not None and (
                target == exc.name or target.startswith(exc.name + "."))
            why = "not found (installed? on PYTHONPATH?)" if missing else (
                f"failed while loading: {type(exc).__name__}: {exc}")
            raise PluginError(f"plug-in {label!r}: {why}") from exc
        _LOADED.add(label)
