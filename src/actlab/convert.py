"""Swap the activations and normalisation layers inside an existing model.

``convert(model, act="sau", norm="agc")`` returns a model in which

* every hidden-layer activation *module* (``nn.ReLU``, ``nn.GELU``, ... see
  :data:`DEFAULT_ACT_TYPES`) is replaced by a fresh ``act`` module, one per **call site**;
* every hidden-layer activation *function call* (``F.relu(x)``, ``torch.relu(x)``, ``x.relu()``,
  ``F.gelu(x)``, ...) is replaced by a call of a fresh ``act`` module (needs ``torch.fx``);
* every normalisation module of a type in :data:`DEFAULT_NORM_TYPES` (batch, group and instance
  norm) is replaced by ``norm`` built for the same number of channels; affine parameters are
  copied when the new layer has ``weight``/``bias`` of the same shape (``keep_affine=True``).
  Convolution and linear weights are never touched.

Why call sites matter: many models hold a single ``self.relu`` and call it two or three times
(typical ResNet blocks). A plain module swap would then give all those places *one* shared
trainable activation, silently, and a per-channel one would see different channel counts.
``convert`` traces the model with ``torch.fx`` to find the call sites; when a module is called
from several places, or activations are applied through functions, the result is a
``torch.fx.GraphModule`` in which each place owns its own module. When neither happens the model
is modified in place and keeps its class. If the model cannot be traced (data-dependent control
flow), ``convert`` falls back to a module swap and, given ``example_inputs``, runs the model once
to detect shared call sites and functional activations and refuses to silently share parameters.
"""

from __future__ import annotations

import copy
import operator
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from actlab.registry import ActSpec, NormSpec, act_factory, norm_factory

__all__ = [
    "convert",
    "ConversionError",
    "DEFAULT_ACT_TYPES",
    "DEFAULT_NORM_TYPES",
    "ACT_FUNCTIONS",
    "ACT_METHODS",
]


class ConversionError(RuntimeError):
    """Raised when a model cannot be converted without silently sharing parameters."""


# Hidden-layer activations that are replaced by default. Gates (sigmoid, tanh) are left alone:
# they are part of attention / squeeze-excitation mechanisms, not the activation under study.
DEFAULT_ACT_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.Softplus, nn.GELU, nn.SiLU,
    nn.ReLU6, nn.Mish, nn.Hardswish, nn.RReLU,
)
DEFAULT_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
)
# Functions and tensor methods recognised as activation call sites in a traced graph.
ACT_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset({
    F.relu, F.relu_, torch.relu, torch.relu_, F.relu6, F.leaky_relu, F.leaky_relu_, F.elu,
    F.elu_, F.selu, F.celu, F.gelu, F.silu, F.mish, F.softplus, F.hardswish, F.rrelu, F.prelu,
})
ACT_METHODS: frozenset[str] = frozenset({"relu", "relu_"})
_INPLACE_FUNCTIONS = {F.relu_, torch.relu_, F.leaky_relu_, F.elu_}

_NORM_DIM = {
    nn.BatchNorm1d: 1, nn.BatchNorm2d: 2, nn.BatchNorm3d: 3, nn.InstanceNorm1d: 1,
    nn.InstanceNorm2d: 2, nn.InstanceNorm3d: 3,
}


def _norm_channels(module: nn.Module) -> int:
    if isinstance(module, nn.GroupNorm):
        return module.num_channels
    if isinstance(module, nn.LayerNorm):
        return int(module.normalized_shape[-1])
    if hasattr(module, "num_features"):
        return int(module.num_features)
    raise ConversionError(f"cannot tell the channel count of {module!r}")


def _new_norm(make: Callable[..., nn.Module], old: nn.Module, keep_affine: bool) -> nn.Module:
    channels = _norm_channels(old)
    new = make(channels, dim=_NORM_DIM.get(type(old), 2))
    if keep_affine:
        with torch.no_grad():
            for name in ("weight", "bias"):
                src, dst = getattr(old, name, None), getattr(new, name, None)
                if (
                    isinstance(src, torch.Tensor)
                    and isinstance(dst, torch.Tensor)
                    and src.shape == dst.shape
                ):
                    dst.copy_(src)
    ref = next(iter(old.parameters()), None)
    if ref is None:
        ref = next(iter(old.buffers()), None)
    return new.to(ref.device) if ref is not None else new


def _new_act(make: Callable[..., nn.Module], old: nn.Module | None, inplace: bool) -> nn.Module:
    new = make(inplace=inplace) if inplace else make()
    ref = None if old is None else next(iter(old.parameters()), None)
    return new.to(ref.device) if ref is not None else new


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, module)


def _unique_name(root: nn.Module, base: str) -> str:
    taken = {n for n, _ in root.named_modules()}
    i = 1
    while f"{base}_{i}" in taken:
        i += 1
    return f"{base}_{i}"


def convert(
    model: nn.Module,
    act: ActSpec | None = None,
    norm: NormSpec | None = None,
    *,
    act_kwargs: dict[str, Any] | None = None,
    norm_kwargs: dict[str, Any] | None = None,
    act_types: Sequence[type[nn.Module]] = DEFAULT_ACT_TYPES,
    norm_types: Sequence[type[nn.Module]] = DEFAULT_NORM_TYPES,
    functional: bool = True,
    keep_affine: bool = True,
    example_inputs: tuple[Any, ...] | None = None,
    copy_model: bool = False,
) -> nn.Module:
    """Replace activations (modules and functional calls) and norms in ``model``.

    Args:
        model: the network to convert.
        act: activation name, class or factory (``None`` leaves activations alone).
        norm: norm name, class or factory ``f(num_channels, dim=2)`` (``None`` leaves norms).
        act_kwargs / norm_kwargs: passed to every new activation / norm.
        act_types / norm_types: module classes to replace.
        functional: also replace functional activation calls (``F.relu`` etc.; needs fx).
        keep_affine: copy the old norm's ``weight``/``bias`` when shapes agree.
        example_inputs: used only when the model cannot be traced: the model is run once on
            them to find modules called from several places and functional activations.
        copy_model: convert a deep copy and leave ``model`` untouched.

    Returns:
        The converted model: ``model`` itself (modified in place) when every activation module
        is called from exactly one place and no functional activation is replaced, otherwise a
        ``torch.fx.GraphModule`` in which each call site owns its own activation module.
    """
    if act is None and norm is None:
        raise ValueError("nothing to convert: give act= and/or norm=")
    if copy_model:
        model = copy.deepcopy(model)
    make_act = act_factory(act, **(act_kwargs or {})) if act is not None else None
    make_norm = norm_factory(norm, **(norm_kwargs or {})) if norm is not None else None
    act_types = tuple(act_types)
    norm_types = tuple(norm_types)

    if make_norm is not None:
        _swap_norms(model, make_norm, norm_types, keep_affine)
    if make_act is None:
        return model

    try:
        graph_module = _Tracer(act_types).trace_module(model)
    except Exception as err:  # any tracing failure means "fall back to a module swap"
        return _swap_acts_untraced(model, make_act, act_types, functional, example_inputs, err)
    return _swap_acts_traced(model, graph_module, make_act, act_types, functional)


def _swap_norms(
    model: nn.Module,
    make_norm: Callable[..., nn.Module],
    norm_types: tuple[type[nn.Module], ...],
    keep_affine: bool,
) -> None:
    # named_modules(remove_duplicate=False) also yields a norm object shared by several paths
    # once per path, so each path gets its own new layer (norm parameters are never shared).
    for path, module in list(model.named_modules(remove_duplicate=False)):
        if path and isinstance(module, norm_types):
            _set_submodule(model, path, _new_norm(make_norm, module, keep_affine))


class _Tracer(fx.Tracer):
    """Keeps activation modules as leaves (so their call sites appear in the graph)."""

    def __init__(self, act_types: tuple[type[nn.Module], ...]) -> None:
        super().__init__()
        self.act_types = act_types

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, self.act_types) or super().is_leaf_module(m, module_qualified_name)

    def trace_module(self, model: nn.Module) -> fx.GraphModule:
        graph = self.trace(model)
        return fx.GraphModule(model, graph, model.__class__.__name__)


def _is_act_call(node: fx.Node, functional: bool) -> bool:
    if not functional:
        return False
    if node.op == "call_function":
        return node.target in ACT_FUNCTIONS
    return node.op == "call_method" and node.target in ACT_METHODS


def _act_sites(
    gm: fx.GraphModule, act_types: tuple[type[nn.Module], ...], functional: bool
) -> tuple[list[fx.Node], list[fx.Node]]:
    module_sites, function_sites = [], []
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), act_types):
            module_sites.append(node)
        elif _is_act_call(node, functional):
            function_sites.append(node)
    return module_sites, function_sites


def _swap_acts_traced(
    model: nn.Module,
    gm: fx.GraphModule,
    make_act: Callable[..., nn.Module],
    act_types: tuple[type[nn.Module], ...],
    functional: bool,
) -> nn.Module:
    module_sites, function_sites = _act_sites(gm, act_types, functional)
    # A module object reachable under several names is still one object: count call sites per
    # object, not per name.
    calls_per_object = Counter(id(gm.get_submodule(node.target)) for node in module_sites)
    needs_graph = bool(function_sites) or any(n > 1 for n in calls_per_object.values())

    if not needs_graph:
        # Plain in-place swap; also replace activation modules that forward() never calls so
        # that the model is left with no module of a replaced type.
        for path, module in list(model.named_modules(remove_duplicate=False)):
            if path and isinstance(module, act_types):
                _set_submodule(model, path, _new_act(make_act, module, _inplace(module)))
        return model

    seen: set[str] = set()
    for node in module_sites:
        old = gm.get_submodule(node.target)
        new = _new_act(make_act, old, _inplace(old))
        if node.target not in seen:
            seen.add(node.target)
            _set_submodule(gm, node.target, new)
        else:
            name = _unique_name(gm, node.target.replace(".", "_"))
            gm.add_submodule(name, new)
            node.target = name
    for node in function_sites:
        name = _unique_name(gm, "act")
        gm.add_submodule(name, _new_act(make_act, None, node.target in _INPLACE_FUNCTIONS))
        with gm.graph.inserting_after(node):
            new_node = gm.graph.call_module(name, args=(node.args[0],))
        node.replace_all_uses_with(new_node)
        gm.graph.erase_node(node)
    # Leftover activation modules no forward path calls (dead code) are also replaced.
    for path, module in list(gm.named_modules(remove_duplicate=False)):
        if path and isinstance(module, act_types):
            _set_submodule(gm, path, _new_act(make_act, module, _inplace(module)))
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    gm.train(model.training)
    return gm


def _inplace(module: nn.Module) -> bool:
    return bool(getattr(module, "inplace", False))


def _swap_acts_untraced(
    model: nn.Module,
    make_act: Callable[..., nn.Module],
    act_types: tuple[type[nn.Module], ...],
    functional: bool,
    example_inputs: tuple[Any, ...] | None,
    err: Exception,
) -> nn.Module:
    calls: Counter[int] = Counter()
    functional_calls: Counter[str] = Counter()
    if example_inputs is None:
        warnings.warn(
            f"convert: {type(model).__name__} cannot be traced by torch.fx ({type(err).__name__}: "
            f"{err}); swapping activation modules only. Pass example_inputs= so that shared call "
            "sites and functional activations can be detected.",
            stacklevel=3,
        )
    else:
        calls, functional_calls = _probe(model, act_types, example_inputs)
    shared = [
        path for path, m in model.named_modules() if path and calls.get(id(m), 0) > 1
    ]
    if shared:
        raise ConversionError(
            f"{type(model).__name__} cannot be traced by torch.fx ({err}) and calls the "
            f"activation module(s) {', '.join(shared)} more than once per forward: swapping them "
            "would make those call sites share parameters. Give each call site its own module."
        )
    if functional and functional_calls:
        found = ", ".join(f"{k}×{v}" for k, v in sorted(functional_calls.items()))
        raise ConversionError(
            f"{type(model).__name__} cannot be traced by torch.fx ({err}) and applies "
            f"activations through functions ({found}), which only a traced graph can replace. "
            "Use modules, or pass functional=False to leave them as they are."
        )
    for path, module in list(model.named_modules(remove_duplicate=False)):
        if path and isinstance(module, act_types):
            _set_submodule(model, path, _new_act(make_act, module, _inplace(module)))
    return model


def _probe(
    model: nn.Module, act_types: tuple[type[nn.Module], ...], example_inputs: tuple[Any, ...]
) -> tuple[Counter[int], Counter[str]]:
    """Run the model once, counting activation-module calls and functional activation calls."""
    calls: Counter[int] = Counter()
    functional_calls: Counter[str] = Counter()
    depth = [0]

    def pre(module: nn.Module, args: Any) -> None:
        calls[id(module)] += 1
        depth[0] += 1

    def post(module: nn.Module, args: Any, out: Any) -> None:
        depth[0] -= 1

    names = {f: getattr(f, "__name__", str(f)) for f in ACT_FUNCTIONS}

    class _Mode(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
            if depth[0] == 0:
                if func in names:
                    functional_calls[names[func]] += 1
                elif getattr(func, "__name__", None) in ACT_METHODS and func not in (
                    operator.getitem,
                ):
                    functional_calls[func.__name__] += 1
            return func(*args, **(kwargs or {}))

    handles = []
    for m in model.modules():
        if isinstance(m, act_types):
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.register_forward_hook(post))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), _Mode():
            model(*example_inputs)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return calls, functional_calls
