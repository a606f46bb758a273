"""Every zoo model traces with plain ``torch.fx.symbolic_trace`` to the same function, with every
activation and norm of the registry: torch's own (leaf modules of the trace) and actlab's (SAU,
Smoothed, ASH family, AGC, AGCAct), which fx traces through their functional entry points.

Reduced sizes and inputs come from test_models_build.CASES; the full-size registered models are
traced too (without a forward pass, to stay fast).
"""

from __future__ import annotations

import pytest
import torch
from torch import fx, nn

from actlab.models import create_model, list_models
from actlab.registry import ACTIVATIONS, MODELS, NORMS
from test_models_build import AGC_INPUTS, CASES, FEATURE_NORM_MODELS, TOKEN_MODELS, run

# the registry's activations that torch itself provides (actlab's own layers excluded)
BASELINE_ACTS = [
    n for n in ACTIVATIONS.names()
    if getattr(ACTIVATIONS.factory(n), "__wrapped__", None).__module__.startswith("torch.nn")
]
ACTLAB_ACTS = [n for n in ACTIVATIONS.names() if n not in BASELINE_ACTS]
IMAGE_NORMS = ["bn", "gn", "ln", "none"]
ACTLAB_NORMS = [n for n in NORMS.names() if n not in IMAGE_NORMS]
TOKEN_NORMS = ["ln", "none"]
ZOO = sorted(n for n in list_models() if MODELS.factory(n).__module__.startswith("actlab.models"))
REDUCED = sorted(n for n in ZOO if CASES.get(n) is not None)


def concrete_args(name: str) -> dict | None:
    # optional padding masks: traced at their default (None), as fx needs for `is None` tests
    if name in ("transformer_seq2seq", "transformer_base"):
        return {"src_padding_mask": None, "tgt_padding_mask": None}
    return None


def check(name: str, act: str, norm: str) -> None:
    kwargs, make_input, _ = CASES[name]
    torch.manual_seed(0)
    model = create_model(name, **kwargs, act=act, norm=norm).eval()
    traced = fx.symbolic_trace(model, concrete_args=concrete_args(name))
    if act in BASELINE_ACTS:  # a torch.nn leaf: one call_module node per use
        sites = [n for n in traced.graph.nodes if n.op == "call_module"
                 and isinstance(traced.get_submodule(n.target), type(ACTIVATIONS.build(act)))]
        assert sites or act == "identity", f"{name}: no {act} call site in the graph"
    if act not in BASELINE_ACTS or norm in ACTLAB_NORMS:  # traced through its functional entry
        calls = [n for n in traced.graph.nodes if n.op == "call_function"
                 and getattr(n.target, "__module__", "").startswith("actlab.functional")]
        assert calls, f"{name}: no actlab.functional call for {act}/{norm} in the graph"
    if norm in ACTLAB_NORMS and name in AGC_INPUTS:  # CASES inputs reach 1x1 maps there
        make_input = AGC_INPUTS[name]
    x = make_input()
    with torch.no_grad():
        torch.testing.assert_close(run(traced, x), run(model, x), rtol=0, atol=0)


def test_baseline_acts_are_the_torch_ones() -> None:
    assert {"relu", "gelu", "prelu", "leaky_relu", "swish"} <= set(BASELINE_ACTS)
    assert "sau" not in BASELINE_ACTS and "ash" not in BASELINE_ACTS


@pytest.mark.slow  # about 350 builds, traces and forwards
@pytest.mark.parametrize("act", BASELINE_ACTS)
@pytest.mark.parametrize("name", REDUCED)
def test_zoo_model_traces_with_every_baseline_activation(name: str, act: str) -> None:
    check(name, act, "ln" if name in TOKEN_MODELS else "bn")


@pytest.mark.parametrize("name", REDUCED)
def test_zoo_model_traces_with_every_baseline_norm(name: str) -> None:
    for norm in TOKEN_NORMS if name in TOKEN_MODELS else IMAGE_NORMS:
        if name == "mlp" and norm == "gn":  # GroupNorm needs (N, C, *) input; mlp has (N, C)
            continue
        check(name, "relu", norm)


@pytest.mark.parametrize("act", ACTLAB_ACTS)
def test_resnet_traces_with_every_actlab_activation(act: str) -> None:
    check("resnet8", act, "bn")


@pytest.mark.slow  # about 400 builds, traces and forwards
@pytest.mark.parametrize("act", ACTLAB_ACTS)
@pytest.mark.parametrize("name", REDUCED)
def test_zoo_model_traces_with_every_actlab_activation(name: str, act: str) -> None:
    check(name, act, "ln" if name in TOKEN_MODELS else "bn")


@pytest.mark.parametrize("name", sorted(set(REDUCED) - TOKEN_MODELS - FEATURE_NORM_MODELS))
def test_zoo_model_traces_with_every_actlab_norm(name: str) -> None:
    # token models take only 'ln'/'none'; mlp's, ssd300's and deeplabv3plus's norms see
    # (N, C) / 1x1 maps
    for norm in ACTLAB_NORMS:
        check(name, "relu", norm)


@pytest.mark.parametrize("name", ZOO)
def test_full_size_zoo_model_traces(name: str) -> None:
    model = create_model(name)
    traced = fx.symbolic_trace(model, concrete_args=concrete_args(name))
    acts = [n for n in traced.graph.nodes if n.op == "call_module"
            and isinstance(traced.get_submodule(n.target), nn.ReLU)]
    assert len(acts) == sum(isinstance(m, nn.ReLU) for m in model.modules())
