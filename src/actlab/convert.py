"""Swap the activations and normalisation layers inside an existing model.

``convert(model, act="sau", norm="agc")`` gives every *use* of a hidden-layer activation and of a
normalisation layer its own, freshly built target layer:

* activation modules (``nn.ReLU``, ``nn.GELU``, ``SAU``, ``ASH``, Hugging Face's
  ``NewGELUActivation``, ... see :func:`convertible_act_types`), one new module per call site, also
  when one module object is called at several places (``self.relu`` twice in a ResNet block);
* functional activations (``F.relu(x)``, ``torch.relu(x)``, ``x.relu()``, ``F.gelu(x)``,
  ``F.silu(x)``, ... see :data:`ACT_FUNCTIONS`), each replaced by a call of a new module;
* the ``activation`` of ``nn.TransformerEncoderLayer`` / ``nn.TransformerDecoderLayer`` (a function
  or a module), with PyTorch's native inference path for ReLU/GELU switched off;
* normalisation modules (batch, group and instance norm, AGC, ... see
  :func:`convertible_norm_types`), one new norm per call site for the same channel count, keeping
  the old layer's parameters and buffers that the new one has under the same name and shape
  (BatchNorm ``weight``/``bias`` -> AGC ``weight``/``bias``). Convolutions and linear layers are
  never touched.

How: one ``torch.fx`` pass. The model is traced with a tracer that keeps activations, norms and
actlab's own layers as leaves, so that every call site is one node of the graph. If each
activation and norm object is called at most once and no function has to be replaced, the new
layers are put in place at the old layers' paths and ``model`` keeps its class; otherwise the
result is a ``torch.fx.GraphModule`` in which each call site calls its own module (the graph
follows the default value of each optional ``forward`` argument; fx guards those values).

Models that ``torch.fx`` cannot trace (data-dependent control flow, most Hugging Face models) are
converted module by module after one sample forward pass on ``example_inputs`` (or, for Hugging
Face models, their own ``dummy_inputs``) that counts, with forward hooks, how often each
activation and norm is called and which functional activations run. Modules used once are
replaced in place. A module used more than once, or a functional activation, cannot be given a
fresh layer per use without a graph, so ``convert`` then raises :class:`ConversionError` naming
the modules / functions and the tracing error (sharing a parameter-free target such as ``relu``
is harmless and allowed). Without a sample input an untraceable model is refused the same way.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from actlab import registry
from actlab.nn.agc import AGCAct
from actlab.registry import ACTIVATIONS, ActSpec, NormSpec, act_factory, norm_factory

__all__ = [
    "convert",
    "ConversionError",
    "convertible_act_types",
    "convertible_norm_types",
    "ACT_FUNCTIONS",
    "ACT_METHODS",
]


class ConversionError(RuntimeError):
    """Raised when a model cannot be converted without silently sharing parameters."""


# Registered activations that are gates or placeholders rather than hidden-layer nonlinearities:
# sigmoid/tanh gate attention, squeeze-excitation and LSTM-style units; identity marks "none".
# They are valid *targets*; pass ``act_types=`` to convert them as sources too.
_NOT_HIDDEN: tuple[type[nn.Module], ...] = (nn.Identity, nn.Tanh, nn.Sigmoid)
# Norms over the last (feature) dim of token sequences; every target norm of the registry takes
# the channel count in dim 1, so these are left alone unless ``norm_types=`` names them.
_FEATURE_LAST_NORMS: tuple[type[nn.Module], ...] = (nn.LayerNorm,)

#: Functions recognised as activation call sites in a traced graph.
ACT_FUNCTIONS: frozenset[Callable[..., Any]] = frozenset({
    F.relu, F.relu_, torch.relu, torch.relu_, F.relu6, F.leaky_relu, F.leaky_relu_, F.elu,
    F.elu_, torch.selu, F.selu, F.celu, F.gelu, F.silu, F.mish, F.softplus, F.hardswish,
    F.rrelu,
})
#: Tensor methods recognised as activation call sites (``x.relu()``).
ACT_METHODS: frozenset[str] = frozenset({"relu", "relu_"})
_INPLACE_FUNCTIONS = frozenset({F.relu_, torch.relu_, F.leaky_relu_, F.elu_})
_INPLACE_METHODS = frozenset({"relu_"})

_NORM_DIM: dict[type[nn.Module], int] = {
    nn.BatchNorm1d: 1, nn.BatchNorm2d: 2, nn.BatchNorm3d: 3, nn.InstanceNorm1d: 1,
    nn.InstanceNorm2d: 2, nn.InstanceNorm3d: 3,
}
# Modules whose output keeps the channel count (dim 1) of their input.
_CHANNEL_PRESERVING: tuple[type[nn.Module], ...] = (
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Identity,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
          nn.ConvTranspose3d)


# ----------------------------------------------------------------------------------------------
# which modules are activations / norms: derived from the registry
# ----------------------------------------------------------------------------------------------
def _hf_activation_types() -> tuple[type[nn.Module], ...]:
    """Hugging Face's activation classes (``transformers.activations``), when it is imported."""
    mod = sys.modules.get("transformers.activations")
    if mod is None:
        return ()
    return tuple(
        c for c in vars(mod).values()
        if isinstance(c, type) and issubclass(c, nn.Module) and c.__module__ == mod.__name__
        and c.__name__ != "LinearActivation"  # the identity
    )


def _activation_classes() -> tuple[type[nn.Module], ...]:
    """Every known activation class, gates included: ``registry.activation_types()``, the classes
    behind the registered activation names, and Hugging Face's."""
    out = list(registry.activation_types())
    for name in ACTIVATIONS.names():
        cls = getattr(ACTIVATIONS.factory(name), "__wrapped__", None)
        if isinstance(cls, type) and issubclass(cls, nn.Module):
            out.append(cls)
    return tuple(dict.fromkeys([*out, *_hf_activation_types()]))


def convertible_act_types() -> tuple[type[nn.Module], ...]:
    """The module classes ``convert`` replaces by default: every activation class of
    :mod:`actlab.registry` (``registry.activation_types()`` and the classes behind the registered
    activation names), Hugging Face's activation classes when ``transformers`` is imported, minus
    the gates and placeholders ``nn.Sigmoid``, ``nn.Tanh`` and ``nn.Identity``."""
    return tuple(t for t in _activation_classes() if not issubclass(t, _NOT_HIDDEN))


def convertible_norm_types() -> tuple[type[nn.Module], ...]:
    """The module classes ``convert`` replaces by default: ``registry.norm_types()`` minus
    ``nn.LayerNorm`` (it normalises the last dim of token sequences; target norms take channels
    in dim 1)."""
    return tuple(t for t in registry.norm_types() if not issubclass(t, _FEATURE_LAST_NORMS))


def __getattr__(name: str) -> Any:
    # Old constant names, now computed from the registry at each access.
    if name == "DEFAULT_ACT_TYPES":
        return convertible_act_types()
    if name == "DEFAULT_NORM_TYPES":
        return convertible_norm_types()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------------------------
# building the new layers
# ----------------------------------------------------------------------------------------------
def _target_callable(spec: Any, reg: registry.Registry[Any]) -> Any:
    if isinstance(spec, str):
        f = reg.factory(spec)
        return getattr(f, "__wrapped__", f)
    return spec


def _takes(fn: Any, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _reference_tensor(
    module: nn.Module | None, fallback: torch.Tensor | None = None
) -> torch.Tensor | None:
    """The first floating parameter or buffer of ``module`` (else ``fallback``): new layers get
    its device and dtype."""
    if module is not None:
        for t in (*module.parameters(), *module.buffers()):
            if t.is_floating_point():
                return t
    return fallback


def _place(new: nn.Module, ref: torch.Tensor | None, training: bool) -> nn.Module:
    if ref is not None:
        new = new.to(device=ref.device, dtype=ref.dtype)
    return new.train(training)


def _per_channel_count(module: nn.Module | None) -> int | None:
    n = getattr(module, "num_parameters", None)
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else None


def _norm_channels(module: nn.Module) -> int:
    for attr in ("num_channels", "num_features"):
        n = getattr(module, attr, None)
        if isinstance(n, int):
            return n
    if isinstance(module, nn.LayerNorm):
        return int(module.normalized_shape[-1])
    raise ConversionError(f"cannot tell the channel count of {module!r}")


def _copy_matching_state(src: nn.Module, dst: nn.Module) -> None:
    """Copy ``src``'s parameters and buffers into ``dst``'s of the same name and shape."""
    theirs = dict(src.named_parameters(recurse=False)) | dict(src.named_buffers(recurse=False))
    with torch.no_grad():
        for name, t in (*dst.named_parameters(recurse=False), *dst.named_buffers(recurse=False)):
            old = theirs.get(name)
            if old is not None and t is not None and old.shape == t.shape:
                t.copy_(old)
                t.requires_grad_(old.requires_grad)


@dataclass
class _Plan:
    """What to build: the target factories and the source types."""

    make_act: Callable[..., nn.Module] | None
    make_norm: Callable[..., nn.Module] | None
    act_types: tuple[type[nn.Module], ...]
    norm_types: tuple[type[nn.Module], ...]
    act_takes_channels: bool
    user_set_channels: bool
    functional: bool
    keep_affine: bool
    per_channel: bool
    training: bool
    model_ref: torch.Tensor | None

    def is_act(self, m: nn.Module) -> bool:
        return self.make_act is not None and isinstance(m, self.act_types)

    def is_norm(self, m: nn.Module) -> bool:
        return self.make_norm is not None and isinstance(m, self.norm_types)

    def new_act(
        self, old: nn.Module | None, inplace: bool, channels: int | None = None
    ) -> nn.Module:
        assert self.make_act is not None
        kwargs: dict[str, Any] = {"inplace": True} if inplace else {}
        channels = _per_channel_count(old) or (channels if self.per_channel else None)
        if channels and self.act_takes_channels and not self.user_set_channels:
            kwargs["num_parameters"] = channels
        ref = _reference_tensor(old, self.model_ref)
        return _place(self.make_act(**kwargs), ref, self.training if old is None else old.training)

    def new_norm(self, old: nn.Module, dim: int | None) -> nn.Module:
        assert self.make_norm is not None
        if dim is None:
            dim = _NORM_DIM.get(type(old))
        if dim is None:
            old_dim = getattr(old, "dim", None)
            dim = old_dim if isinstance(old_dim, int) else 2
        new = self.make_norm(_norm_channels(old), dim=dim)
        if self.keep_affine:
            _copy_matching_state(old, new)
        fused_act = self._fused_act(old)
        if fused_act is not None:
            new = nn.Sequential(new, fused_act)
        return _place(new, _reference_tensor(old, self.model_ref), old.training)

    def _fused_act(self, old: nn.Module) -> nn.Module | None:
        """An AGCAct norm carries its (leaky) ReLU: keep it after the new norm (converted to the
        target activation when one is given)."""
        if not isinstance(old, AGCAct):
            return None
        if self.make_act is not None:
            return self.new_act(None, False)
        return nn.LeakyReLU(old.negative_slope) if old.act == "leaky_relu" else nn.ReLU()


def _make_plan(
    model: nn.Module,
    act: ActSpec | None,
    norm: NormSpec | None,
    act_kwargs: dict[str, Any] | None,
    norm_kwargs: dict[str, Any] | None,
    act_types: Sequence[type[nn.Module]] | None,
    norm_types: Sequence[type[nn.Module]] | None,
    functional: bool,
    keep_affine: bool,
    per_channel: bool,
) -> _Plan:
    act_kwargs = dict(act_kwargs or {})
    return _Plan(
        make_act=act_factory(act, **act_kwargs) if act is not None else None,
        make_norm=norm_factory(norm, **(norm_kwargs or {})) if norm is not None else None,
        act_types=tuple(act_types) if act_types is not None else convertible_act_types(),
        norm_types=tuple(norm_types) if norm_types is not None else convertible_norm_types(),
        act_takes_channels=act is not None
        and _takes(_target_callable(act, ACTIVATIONS), "num_parameters"),
        user_set_channels="num_parameters" in act_kwargs,
        functional=functional,
        keep_affine=keep_affine,
        per_channel=per_channel,
        training=model.training,
        model_ref=_reference_tensor(model),
    )


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, module)


def _inplace(module: nn.Module) -> bool:
    return bool(getattr(module, "inplace", False))


# ----------------------------------------------------------------------------------------------
# entry point
# ----------------------------------------------------------------------------------------------
def convert(
    model: nn.Module,
    act: ActSpec | None = None,
    norm: NormSpec | None = None,
    *,
    act_kwargs: dict[str, Any] | None = None,
    norm_kwargs: dict[str, Any] | None = None,
    act_types: Sequence[type[nn.Module]] | None = None,
    norm_types: Sequence[type[nn.Module]] | None = None,
    functional: bool = True,
    keep_affine: bool = True,
    per_channel: bool = False,
    example_inputs: tuple[Any, ...] | Mapping[str, Any] | None = None,
    copy_model: bool = False,
) -> nn.Module:
    """Give every use of an activation and of a norm in ``model`` a fresh ``act`` / ``norm``.

    Args:
        model: the network to convert.
        act: activation name from the registry (``"sau"``, ``"ash"``, ``"relu"``, ...), class or
            factory; ``None`` leaves activations alone.
        norm: norm name, class or factory ``f(num_channels, dim=2)``; ``None`` leaves norms alone.
        act_kwargs / norm_kwargs: passed to every new activation / norm.
        act_types / norm_types: module classes to replace (default: :func:`convertible_act_types`
            and :func:`convertible_norm_types`, both derived from the registry).
        functional: also replace functional activation calls (``F.relu`` etc.).
        keep_affine: copy the old norm's parameters and buffers that the new norm has under the
            same name and shape (BatchNorm ``weight``/``bias`` -> AGC ``weight``/``bias``).
        per_channel: build per-channel activations (``num_parameters=C``) where the channel count
            C of the input is unambiguous: the input comes (through dropout/pooling/sums) from a
            convolution or a norm, or from a linear layer whose output is 2-d in the sample
            forward; elsewhere scalar parameters. An activation that is already per-channel
            (``nn.PReLU(C)``, ``SAU(num_parameters=C)``) always passes its C on to a target
            that takes ``num_parameters``.
        example_inputs: positional (tuple) or keyword (dict) inputs for one sample forward pass:
            used for input shapes, and, when the model cannot be traced, to find the modules
            used more than once (forward hooks) and the functional activations. Hugging Face
            models use their ``dummy_inputs`` when this is not given.
        copy_model: convert a deep copy and leave ``model`` untouched.

    Returns:
        ``model`` itself, modified in place, when every activation and norm object is called at
        most once and no functional activation is replaced; otherwise a ``torch.fx.GraphModule``
        in which each call site calls its own module (it shares the untouched layers with
        ``model``; pass ``copy_model=True`` for an independent model).

    Raises:
        ConversionError: the model cannot be traced by ``torch.fx`` and no sample input is
            available, or the sample forward shows a module used more than once (with a target
            that has parameters or buffers) or a functional activation.
    """
    if act is None and norm is None:
        raise ValueError("nothing to convert: give act= and/or norm=")
    if copy_model:
        model = copy.deepcopy(model)
    plan = _make_plan(model, act, norm, act_kwargs, norm_kwargs, act_types, norm_types,
                      functional, keep_affine, per_channel)
    if example_inputs is None:
        example_inputs = _default_inputs(model)
    if norm is None and any(isinstance(m, AGCAct) for m in model.modules()):
        warnings.warn(
            "convert: AGCAct layers fuse a ReLU into the norm and are left as they are; pass "
            "norm= (e.g. norm='agc') to split each into a new norm and a new activation",
            stacklevel=2,
        )
    try:
        graph = _Tracer().trace(model, concrete_args=_concrete_defaults(model, example_inputs))
    except Exception as err:  # any tracing failure means "convert module by module"
        return _convert_untraced(model, plan, example_inputs, err)
    return _convert_traced(model, graph, plan, example_inputs)


def _default_inputs(model: nn.Module) -> tuple[Any, ...] | Mapping[str, Any] | None:
    dummy = getattr(model, "dummy_inputs", None)  # the Hugging Face convention
    return dummy if isinstance(dummy, Mapping) and dummy else None


def _concrete_defaults(
    model: nn.Module, example_inputs: tuple[Any, ...] | Mapping[str, Any] | None
) -> dict[str, Any]:
    """Optional ``forward`` arguments with a plain default are traced at that default, unless
    ``example_inputs`` gives them a value."""
    given: set[str] = set()
    params = inspect.signature(model.forward).parameters
    if isinstance(example_inputs, Mapping):
        given = set(example_inputs)
    elif example_inputs is not None:
        given = set(list(params)[: len(example_inputs)])
    out = {}
    for name, p in params.items():
        if name not in given and p.default is not p.empty and (
            p.default is None or isinstance(p.default, (bool, int, float, str))
        ):
            out[name] = p.default
    return out


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for a sample forward pass; every submodule's own mode is restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _run(model: nn.Module, inputs: tuple[Any, ...] | Mapping[str, Any]) -> Any:
    return model(**inputs) if isinstance(inputs, Mapping) else model(*inputs)


# ----------------------------------------------------------------------------------------------
# the traced path
# ----------------------------------------------------------------------------------------------
class _Tracer(fx.Tracer):
    """Keeps activations, norms and actlab's own layers as leaves, so that every use of one is a
    ``call_module`` node."""

    def __init__(self) -> None:
        super().__init__()
        self.leaf_types = (*_activation_classes(), *registry.norm_types())

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, self.leaf_types) or super().is_leaf_module(m, module_qualified_name)


def _input_shapes(
    gm: fx.GraphModule, example_inputs: tuple[Any, ...] | Mapping[str, Any] | None
) -> dict[fx.Node, torch.Size]:
    if example_inputs is None:
        return {}
    from torch.fx.passes.shape_prop import ShapeProp

    args = _positional(gm, example_inputs)
    with _eval_mode(gm), torch.no_grad():
        ShapeProp(gm).propagate(*args)
    return {
        n: n.meta["tensor_meta"].shape for n in gm.graph.nodes
        if hasattr(n.meta.get("tensor_meta"), "shape")
    }


def _positional(
    gm: fx.GraphModule, inputs: tuple[Any, ...] | Mapping[str, Any]
) -> list[Any]:
    """The example inputs as the graph's positional placeholders (defaults filled in)."""
    if not isinstance(inputs, Mapping):
        return list(inputs)
    args = []
    for node in gm.graph.nodes:
        if node.op != "placeholder":
            continue
        name = node.target.lstrip("*")
        if name in inputs:
            args.append(inputs[name])
        elif node.args:
            args.append(node.args[0])  # the placeholder's default
        else:
            raise ValueError(f"example_inputs has no value for forward argument {name!r}")
    return args


_ELEMENTWISE = frozenset({"add", "add_", "iadd", "sub", "sub_", "mul", "mul_", "imul"})


def _channels(
    node: Any, gm: fx.GraphModule, shapes: dict[fx.Node, torch.Size], depth: int = 0
) -> int | None:
    """The channel count (dim 1) of ``node``'s value where it is unambiguous, else None."""
    if not isinstance(node, fx.Node) or depth > 8:
        return None
    first = node.args[0] if node.args else None
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        if isinstance(m, _CONVS):
            return m.out_channels
        if isinstance(m, nn.Linear):
            shape = shapes.get(node)
            return m.out_features if shape is not None and len(shape) == 2 else None
        if isinstance(m, nn.LayerNorm):
            return None
        if isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, registry.norm_types())):
            return _norm_channels(m)
        if isinstance(m, (_CHANNEL_PRESERVING, _activation_classes())):
            return _channels(first, gm, shapes, depth + 1)
        return None
    if node.op == "call_function" and node.target in ACT_FUNCTIONS or (
        node.op == "call_method" and node.target in ACT_METHODS
    ):
        return _channels(first, gm, shapes, depth + 1)
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    if node.op in ("call_function", "call_method") and name in _ELEMENTWISE:
        found = {_channels(a, gm, shapes, depth + 1) for a in node.args}
        wide = {c for c in found if c is not None and c > 1}
        return wide.pop() if len(wide) == 1 else None
    return None


def _convert_traced(
    model: nn.Module,
    graph: fx.Graph,
    plan: _Plan,
    example_inputs: tuple[Any, ...] | Mapping[str, Any] | None,
) -> nn.Module:
    gm = fx.GraphModule(model, graph, model.__class__.__name__)
    shapes = _input_shapes(gm, example_inputs)

    module_sites: list[tuple[fx.Node, nn.Module]] = []
    function_sites: list[fx.Node] = []
    for node in gm.graph.nodes:
        if node.op == "call_module":
            m = gm.get_submodule(node.target)
            if plan.is_act(m) or plan.is_norm(m):
                module_sites.append((node, m))
        elif plan.make_act is not None and plan.functional and _is_act_call(node):
            function_sites.append(node)

    calls = Counter(id(m) for _, m in module_sites)
    needs_graph = bool(function_sites) or any(n > 1 for n in calls.values())
    root: nn.Module = gm if needs_graph else model
    new_ids: set[int] = set()

    def build(node: fx.Node, old: nn.Module, inplace: bool) -> nn.Module:
        arg = node.args[0] if node.args else None
        if old is not None and plan.is_norm(old):
            shape = shapes.get(arg) if isinstance(arg, fx.Node) else None
            new = plan.new_norm(old, None if shape is None else max(len(shape) - 2, 0))
        else:
            new = plan.new_act(old, inplace, _channels(arg, gm, shapes))
        new_ids.add(id(new))
        return new

    seen: set[int] = set()
    for node, old in module_sites:
        new = build(node, old, _inplace(old))
        if id(old) not in seen:
            seen.add(id(old))
            _set_submodule(root, node.target, new)
        else:  # a further call site of the same object: a sibling module of its own
            node.target = _unique_path(gm, node.target)
            gm.add_submodule(node.target, new)
        if _inplace(old) and needs_graph:
            _rewire_inplace(gm.graph, node)
    for node in function_sites:
        inplace = _inplace_call(node)
        new = build(node, None, inplace)
        path = _unique_path(gm, "act")
        gm.add_submodule(path, new)
        with gm.graph.inserting_after(node):
            new_node = gm.graph.call_module(path, args=(node.args[0],))
        node.replace_all_uses_with(new_node)
        gm.graph.erase_node(node)
        if inplace:
            _rewire_inplace(gm.graph, new_node)

    _replace_uncalled(root, plan, new_ids)
    _convert_torch_transformer_layers(root, plan, new_ids)
    if not needs_graph:
        return model
    gm.graph.lint()
    gm.recompile()
    gm.training = plan.training  # the root's flag; each submodule keeps its own
    return gm


# position of ``inplace`` among the positional arguments of the functions that take it
_INPLACE_ARG = {F.relu: 1, F.relu6: 1, F.selu: 1, F.silu: 1, F.mish: 1, F.hardswish: 1,
                F.leaky_relu: 2, F.elu: 2, F.celu: 2}


def _inplace_call(node: fx.Node) -> bool:
    """Whether a functional activation call overwrites its input."""
    if node.target in _INPLACE_FUNCTIONS or node.target in _INPLACE_METHODS:
        return True
    i = _INPLACE_ARG.get(node.target)
    flag = node.args[i] if i is not None and len(node.args) > i else node.kwargs.get("inplace")
    return flag is True


def _is_act_call(node: fx.Node) -> bool:
    if node.op == "call_function":
        return node.target in ACT_FUNCTIONS
    return node.op == "call_method" and node.target in ACT_METHODS


def _rewire_inplace(graph: fx.Graph, node: fx.Node) -> None:
    """``node`` overwrote its input in the original model: later readers of that input must read
    ``node``'s output (the new module may not work in place)."""
    src = node.args[0] if node.args else None
    if not isinstance(src, fx.Node):
        return
    order = {n: i for i, n in enumerate(graph.nodes)}
    for user in list(src.users):
        if user is not node and order[user] > order[node]:
            user.replace_input_with(src, node)


def _unique_path(root: nn.Module, path: str) -> str:
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    i = 1
    while hasattr(parent, f"{name}_{i}"):
        i += 1
    return f"{parent_path}.{name}_{i}" if parent_path else f"{name}_{i}"


def _replace_uncalled(root: nn.Module, plan: _Plan, new_ids: set[int]) -> None:
    """Activation and norm modules without a call site of their own in the graph (inside other
    leaf modules, or never called): a fresh layer at each path they are reachable from."""
    for path, _ in list(root.named_modules(remove_duplicate=False)):
        if not path or _inside(path, root, new_ids):
            continue
        m = root.get_submodule(path)
        if id(m) in new_ids:
            continue
        if plan.is_norm(m):
            new = plan.new_norm(m, None)
        elif plan.is_act(m):
            new = plan.new_act(m, _inplace(m))
        else:
            continue
        new_ids.add(id(new))
        _set_submodule(root, path, new)


_TORCH_TRANSFORMER_LAYERS = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


def _convert_torch_transformer_layers(root: nn.Module, plan: _Plan, new_ids: set[int]) -> None:
    """``nn.TransformerEncoderLayer`` / ``DecoderLayer`` keep their activation as an attribute
    (a function such as ``F.relu``, or a module) that fx does not see inside the leaf; give each
    a new module, and switch off the native inference path that would run ReLU/GELU itself."""
    if plan.make_act is None:
        return
    for m in root.modules():
        if not isinstance(m, _TORCH_TRANSFORMER_LAYERS) or id(m) in new_ids:
            continue
        act = m.activation
        is_function = plan.functional and any(act is f for f in ACT_FUNCTIONS)
        if is_function or id(act) in new_ids or plan.is_act(act):
            if id(act) not in new_ids:
                act = plan.new_act(act if isinstance(act, nn.Module) else None, False)
                new_ids.add(id(act))
            m.activation = act
            m.activation_relu_or_gelu = 0


def _inside(path: str, root: nn.Module, new_ids: set[int]) -> bool:
    """Whether ``path`` lies inside a module built by this conversion."""
    parts = path.split(".")
    m = root
    for part in parts[:-1]:
        m = getattr(m, part)
        if id(m) in new_ids:
            return True
    return False


# ----------------------------------------------------------------------------------------------
# the untraceable path: module by module, reuse detected on a sample forward pass
# ----------------------------------------------------------------------------------------------
def _convert_untraced(
    model: nn.Module,
    plan: _Plan,
    example_inputs: tuple[Any, ...] | Mapping[str, Any] | None,
    err: Exception,
) -> nn.Module:
    reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err) else ''}"
    name = type(model).__name__
    if example_inputs is None:
        raise ConversionError(
            f"{name} cannot be traced by torch.fx ({reason}); pass example_inputs= so that "
            "convert can run it once to find activations and norms used more than once"
        ) from err
    calls, functional_calls = _probe(model, plan, example_inputs)
    if plan.functional and plan.make_act is not None and functional_calls:
        found = ", ".join(f"{k}×{v}" for k, v in sorted(functional_calls.items()))
        raise ConversionError(
            f"{name} cannot be traced by torch.fx ({reason}) and applies activations through "
            f"functions ({found}), which only a traced graph can replace; use modules, or pass "
            "functional=False to leave them as they are"
        ) from err
    shared = [
        path for path, m in model.named_modules(remove_duplicate=False)
        if path and calls.get(id(m), 0) > 1 and _stateful_target(plan, m)
    ]
    if shared:
        raise ConversionError(
            f"{name} cannot be traced by torch.fx ({reason}) and uses {', '.join(shared)} more "
            "than once per forward pass: converting it module by module would make those uses "
            "share one layer's parameters; give each use its own module"
        ) from err
    new_ids: set[int] = set()
    _replace_uncalled(model, plan, new_ids)
    _convert_torch_transformer_layers(model, plan, new_ids)
    return model


def _stateful_target(plan: _Plan, m: nn.Module) -> bool:
    """Whether the layer that would replace ``m`` has parameters or buffers (sharing it between
    uses would then couple them)."""
    if plan.is_norm(m):
        return True
    if not plan.is_act(m):
        return False
    probe = plan.new_act(m, False)
    return any(True for _ in probe.parameters()) or any(True for _ in probe.buffers())


def _probe(
    model: nn.Module, plan: _Plan, example_inputs: tuple[Any, ...] | Mapping[str, Any]
) -> tuple[Counter[int], Counter[str]]:
    """Run the model once: calls per activation/norm module object, and functional activation
    calls made outside leaf modules (those the tracer would have seen)."""
    calls: Counter[int] = Counter()
    functional_calls: Counter[str] = Counter()
    depth = [0]
    tracer = _Tracer()

    def pre(module: nn.Module, args: Any) -> None:
        depth[0] += 1
        if plan.is_act(module) or plan.is_norm(module):
            calls[id(module)] += 1

    def post(module: nn.Module, args: Any, out: Any) -> None:
        depth[0] -= 1

    watched = {f: getattr(f, "__name__", str(f)) for f in ACT_FUNCTIONS}
    methods = {getattr(torch.Tensor, m) for m in ACT_METHODS}

    class _Mode(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
            if depth[0] == 0 and (func in watched or func in methods):
                functional_calls[watched.get(func, getattr(func, "__name__", str(func)))] += 1
            return func(*args, **(kwargs or {}))

    handles = []
    for path, m in model.named_modules():
        if path and tracer.is_leaf_module(m, path):
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.register_forward_hook(post, always_call=True))
    try:
        with _eval_mode(model), torch.no_grad(), _Mode():
            _run(model, example_inputs)
    finally:
        for h in handles:
            h.remove()
    return calls, functional_calls
