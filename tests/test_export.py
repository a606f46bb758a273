"""Every actlab layer survives torch.jit.trace, torch.compile (CPU) and ONNX export.

The exported ONNX graph is run in onnxruntime and must reproduce the eager output within 1e-5.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from actlab.registry import get_act, get_norm

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.export

# (id, factory, input shape). Small n so that SAU's smoothing is visible in the outputs.
LAYERS: list[tuple[str, Callable[[], nn.Module], tuple[int, ...]]] = [
    ("sau_exact", lambda: get_act("sau", n=3.0), (2, 3, 5, 5)),
    ("sau_paper", lambda: get_act("sau_paper", n=3.0), (2, 3, 5, 5)),
    ("sau_zero_centred", lambda: get_act("sau", n=3.0, zero_centred=True), (2, 3, 5, 5)),
    ("sau_per_channel", lambda: get_act("sau", n=3.0, num_parameters=3), (2, 3, 5, 5)),
    ("smoothed_relu6", lambda: get_act("smooth_relu6", n=2.0), (2, 3, 5, 5)),
    ("smoothed_gelu_quadrature", lambda: get_act("smooth_gelu", n=2.0), (2, 3, 5, 5)),
    ("ash", lambda: get_act("ash", k=0.2), (2, 3, 5, 5)),
    ("ash_per_channel", lambda: get_act("ash", k=0.2, num_parameters=3, dims=(2, 3)), (2, 3, 5, 5)),
    ("fash", lambda: get_act("fash", k=0.2), (2, 3, 5, 5)),
    ("lash", lambda: get_act("lash", k=0.2), (2, 3, 5, 5)),
    ("ash_topk", lambda: get_act("ash_topk", k=0.2), (2, 3, 5, 5)),
    ("agc_mean_2d", lambda: get_norm("agc", 3), (2, 3, 5, 5)),
    ("agc_mean_1d", lambda: get_norm("agc", 3, dim=1), (2, 3, 7)),
    ("agc_window", lambda: get_norm("agc", 3, mode="window", window=3), (2, 3, 6, 6)),
    ("agc_median", lambda: get_norm("agc", 3, mode="median"), (2, 3, 5, 5)),
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


@pytest.mark.parametrize(("name", "factory", "shape"), LAYERS, ids=IDS)
def test_jit_trace(name: str, factory: Callable[[], nn.Module], shape: tuple[int, ...]) -> None:
    module = _perturbed(factory)
    x = torch.randn(shape)
    traced = torch.jit.trace(module, (x,), check_trace=False)
    x2 = torch.randn(shape)  # a different input than the one traced with
    torch.testing.assert_close(traced(x2), module(x2), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("name", "factory", "shape"), LAYERS, ids=IDS)
def test_torch_compile(name: str, factory: Callable[[], nn.Module], shape: tuple[int, ...]):
    module = _perturbed(factory).train()
    compiled = torch.compile(module)
    x = torch.randn(shape, requires_grad=True)
    out_eager = module(x)
    (g_eager,) = torch.autograd.grad(out_eager.square().sum(), x)
    out_comp = compiled(x)
    (g_comp,) = torch.autograd.grad(out_comp.square().sum(), x)
    torch.testing.assert_close(out_comp, out_eager, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_comp, g_eager, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("name", "factory", "shape"), LAYERS, ids=IDS)
def test_onnx_export_matches_onnxruntime(
    name: str, factory: Callable[[], nn.Module], shape: tuple[int, ...], tmp_path
) -> None:
    module = _perturbed(factory)
    x = torch.randn(shape)
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(module, (x,), str(path), dynamo=True, verbose=False)
    onnx.checker.check_model(onnx.load(str(path)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    expected = module(x).detach().numpy()
    assert out.shape == expected.shape
    assert abs(out - expected).max() <= 1e-5
