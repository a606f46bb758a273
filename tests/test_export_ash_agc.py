"""ASH, FASH, LASH, ASHTopK, AGC (every mode) and AGCAct through every export path:
torch.export (strict and non-strict), ONNX through both exporters (dynamo and TorchScript-based)
run in onnxruntime within 1e-5, and torch.jit.script (forward and gradients, save/load); also
zoo models with act="ash" and norm="agc" / "agc_act"."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn

from actlab.models import create_model
from actlab.nn.agc import AGC, AGCAct
from actlab.nn.ash import ASH, FASH, LASH, ASHTopK

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

pytestmark = pytest.mark.export

LAYERS: list[tuple[str, Callable[[], nn.Module], tuple[int, ...]]] = [
    ("ash", lambda: ASH(k=0.2), (2, 3, 5, 5)),
    ("ash_per_channel", lambda: ASH(k=0.2, num_parameters=3, dims=(2, 3)), (2, 3, 5, 5)),
    ("fash", lambda: FASH(k=0.2), (2, 3, 5, 5)),
    ("lash", lambda: LASH(k=0.3, leak=0.05), (2, 3, 5, 5)),
    ("ash_topk", lambda: ASHTopK(0.2), (2, 3, 5, 5)),
    ("agc_mean", lambda: AGC(3), (2, 3, 5, 5)),
    ("agc_mean_1d", lambda: AGC(3, dim=1), (2, 3, 7)),
    ("agc_window", lambda: AGC(3, mode="window", window=3), (2, 3, 6, 6)),
    ("agc_window_3d", lambda: AGC(3, mode="window", window=3), (2, 3, 2, 4, 4)),
    ("agc_median", lambda: AGC(3, mode="median"), (2, 3, 5, 5)),
    ("agc_no_affine", lambda: AGC(3, affine=False), (2, 3, 5, 5)),
    ("agc_act_relu", lambda: AGCAct(3), (2, 3, 5, 5)),
    ("agc_act_leaky", lambda: AGCAct(3, act="leaky_relu", negative_slope=0.1), (2, 3, 5, 5)),
]
IDS = [name for name, _, _ in LAYERS]


def _perturbed(factory: Callable[[], nn.Module]) -> nn.Module:
    """A module whose parameters are moved off their init so that every term matters."""
    torch.manual_seed(0)
    module = factory()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.rand_like(p))
    return module.eval()


def _onnx_run(module: nn.Module, x: torch.Tensor, dynamo: bool, x_run: torch.Tensor):
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            program = torch.onnx.export(module, (x,), dynamo=True, verbose=False)
            data = program.model_proto.SerializeToString()
        else:
            torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=17)
            data = buffer.getvalue()
    onnx.checker.check_model(onnx.load_from_string(data))
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x_run.numpy()})[0]


# ---------------------------------------------------------------------------------------------
# torch.export
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strict", [True, False], ids=["strict", "non_strict"])
@pytest.mark.parametrize(("name", "factory", "shape"), LAYERS, ids=IDS)
def test_torch_export(name: str, factory, shape, strict: bool) -> None:
    module = _perturbed(factory)
    x = torch.randn(shape)
    program = torch.export.export(module, (x,), strict=strict)
    x2 = torch.randn(shape)  # a different input than the one exported with
    torch.testing.assert_close(program.module()(x2), module(x2), rtol=1e-6, atol=1e-6)
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert all("actlab" not in t for t in targets)  # plain ATen ops only


ZOO = [
    ("small_resnet_ash", dict(act="ash")),
    ("small_resnet_agc", dict(norm="agc")),
    ("small_resnet_ash_agc_act", dict(act="ash", norm="agc_act")),
]


@pytest.mark.slow
@pytest.mark.parametrize("strict", [True, False], ids=["strict", "non_strict"])
@pytest.mark.parametrize(("name", "kwargs"), ZOO, ids=[z[0] for z in ZOO])
def test_torch_export_zoo_model(name: str, kwargs: dict, strict: bool) -> None:
    torch.manual_seed(1)
    model = create_model("small_resnet", num_classes=10, **kwargs).eval()
    x = torch.randn(2, 3, 16, 16)
    program = torch.export.export(model, (x,), strict=strict)
    x2 = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(program.module()(x2), model(x2), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# ONNX, both exporters
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize(("name", "factory", "shape"), LAYERS, ids=IDS)
def test_onnx_runs_in_onnxruntime(name: str, factory, shape, dynamo: bool) -> None:
    module = _perturbed(factory)
    x, x_run = torch.randn(shape), torch.randn(shape)
    got = _onnx_run(module, x, dynamo, x_run)
    with torch.no_grad():
        want = module(x_run).numpy()
    assert abs(got - want).max() <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_onnx_zoo_model(dynamo: bool) -> None:
    torch.manual_seed(2)
    model = create_model("small_resnet", num_classes=10, act="ash", norm="agc").eval()
    x, x_run = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    got = _onnx_run(model, x, dynamo, x_run)
    with torch.no_grad():
        want = model(x_run).numpy()
    assert abs(got - want).max() <= 1e-5


# ---------------------------------------------------------------------------------------------
# TorchScript
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "factory", "shape"), LAYERS, ids=IDS)
def test_jit_script_forward_gradients_and_save(name: str, factory, shape) -> None:
    module = _perturbed(factory).train()
    scripted = torch.jit.script(module)
    x = torch.randn(shape, requires_grad=True)
    out, want = scripted(x), module(x)
    torch.testing.assert_close(out, want, rtol=1e-6, atol=1e-6)
    params = list(module.parameters())
    got_g = torch.autograd.grad(out.square().sum(), [x, *scripted.parameters()])
    want_g = torch.autograd.grad(want.square().sum(), [x, *params])
    for g, w in zip(got_g, want_g, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    torch.testing.assert_close(loaded(x), want, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# an outer torch.compile
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(("name", "factory", "shape"),
                         [c for c in LAYERS if c[0] in ("ash_per_channel", "agc_mean",
                                                        "agc_act_leaky")],
                         ids=["ash_per_channel", "agc_mean", "agc_act_leaky"])
def test_outer_torch_compile_fullgraph(name: str, factory, shape) -> None:
    """Inside torch.compile the layers record their formulas (dynamo cannot inline an
    autograd.Function with a custom jvp): one graph, same output and gradients."""
    module = _perturbed(factory).train()
    compiled = torch.compile(module, fullgraph=True)
    x = torch.randn(shape, requires_grad=True)
    out, want = compiled(x), module(x)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)
    got_g = torch.autograd.grad(out.square().sum(), [x, *module.parameters()])
    want_g = torch.autograd.grad(want.square().sum(), [x, *module.parameters()])
    for g, w in zip(got_g, want_g, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
