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
    assert abs(out - expected).max() <= 1e-5 * max(1.0, abs(expected).max())


# ----------------------------------------------------------------------------------------------
# SAU and Smoothed: torch.export (strict and non-strict), both ONNX exporters, torch.jit.script
# ----------------------------------------------------------------------------------------------
def _sau_smoothed_layers() -> list[tuple[str, Callable[[], nn.Module], tuple[int, ...]]]:
    from actlab.nn.sau import SAU
    from actlab.nn.smoothing import smooth

    return [
        ("sau_exact", lambda: SAU(n=3.0), (2, 3, 5, 5)),
        ("sau_paper", lambda: SAU(n=3.0, formula="paper"), (2, 3, 5, 5)),
        ("sau_zero_centred", lambda: SAU(n=3.0, zero_centred=True), (2, 3, 5, 5)),
        ("sau_per_channel_learn_n",
         lambda: SAU(n=3.0, num_parameters=3, learn_n=True, formula="paper", zero_centred=True),
         (2, 3, 5, 5)),
        ("smoothed_relu6", lambda: smooth("relu6", n=2.0), (2, 3, 5, 5)),
        ("smoothed_leaky", lambda: smooth("leaky_relu", n=2.0, negative_slope=0.2), (2, 3, 5)),
        ("smoothed_hardtanh_bump", lambda: smooth("hardtanh", n=2.0, kernel="bump", order=16),
         (2, 3, 5)),
        ("smoothed_prelu", lambda: smooth(nn.PReLU(3, 0.2), n=2.0), (2, 3, 5)),
        ("smoothed_prelu_bump", lambda: smooth(nn.PReLU(3, 0.2), n=2.0, kernel="bump", order=16),
         (2, 3, 5)),
        ("smoothed_gelu_quadrature", lambda: smooth("gelu", n=2.0, order=8, learn_n=True),
         (2, 3, 5)),
        ("smoothed_elu_bump_quadrature", lambda: smooth(nn.ELU(), n=2.0, kernel="bump", order=8),
         (2, 3, 5)),
    ]


SAU_SMOOTHED = _sau_smoothed_layers()
SAU_SMOOTHED_IDS = [name for name, _, _ in SAU_SMOOTHED]


def _zoo(name: str) -> nn.Module:
    from actlab.models import create_model

    if name == "tiny_cnn_sau":
        return create_model("tiny_cnn", act="sau", in_channels=3)
    return create_model("resnet8", act="smooth_relu6", width=4)


ZOO = [("tiny_cnn_sau", (2, 3, 8, 8)), ("resnet8_smooth_relu6", (2, 3, 8, 8))]


def _module(name: str, factory: Callable[[], nn.Module] | None) -> nn.Module:
    if factory is None:  # a zoo model at its initialisation
        torch.manual_seed(0)
        return _zoo(name).eval()
    return _perturbed(factory)


# zoo models export in 10-20 s each (dynamo): slow
CASES = [pytest.param(n, f, s, id=n) for n, f, s in SAU_SMOOTHED] + [
    pytest.param(n, None, s, id=n, marks=pytest.mark.slow) for n, s in ZOO
]
# The dynamo exporter takes 5-15 s per model here: it runs above (LAYERS) for SAU exact / paper /
# zero-centred / per-channel and smoothed ReLU6 / GELU, and here for the remaining code paths
# (learnable per-channel n, PReLU with the bump, bump quadrature) and the zoo models.
_DYNAMO_HERE = {"sau_per_channel_learn_n", "smoothed_prelu_bump", "smoothed_elu_bump_quadrature",
                "smoothed_leaky", "tiny_cnn_sau", "resnet8_smooth_relu6"}
ONNX_CASES = [
    pytest.param(*c.values, dynamo, id=f"{c.id}-{'dynamo' if dynamo else 'torchscript'}",
                 marks=c.marks)
    for c in CASES
    for dynamo in (True, False)
    if not dynamo or c.id in _DYNAMO_HERE
]


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "non_strict"])
@pytest.mark.parametrize(("name", "factory", "shape"), CASES)
def test_torch_export_sau_smoothed(name: str, factory, shape: tuple[int, ...], strict: bool):
    module = _module(name, factory)
    x = torch.randn(shape)
    program = torch.export.export(module, (x,), strict=strict)
    x2 = torch.randn(shape)
    torch.testing.assert_close(program.module()(x2), module(x2), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("name", "factory", "shape", "dynamo"), ONNX_CASES)
def test_onnx_both_exporters_sau_smoothed(
    name: str, factory, shape: tuple[int, ...], dynamo: bool, tmp_path
) -> None:
    module = _module(name, factory)
    x = torch.randn(shape)
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(module, (x,), str(path), dynamo=dynamo, verbose=False)
    onnx.checker.check_model(onnx.load(str(path)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    expected = module(x).detach().numpy()
    assert out.shape == expected.shape
    assert abs(out - expected).max() <= 1e-5 * max(1.0, abs(expected).max())


@pytest.mark.parametrize(("name", "factory", "shape"), SAU_SMOOTHED[:4], ids=SAU_SMOOTHED_IDS[:4])
def test_jit_script_sau(name: str, factory, shape: tuple[int, ...], tmp_path) -> None:
    module = _perturbed(factory).train()
    scripted = torch.jit.script(module)
    path = tmp_path / f"{name}.pt"
    torch.jit.save(scripted, str(path))
    loaded = torch.jit.load(str(path))
    x = torch.randn(shape, dtype=torch.float64) * 0.5
    module.double()
    loaded.double()
    for m in (module, loaded):
        x.grad = None
        m.zero_grad()
        out = m(x.requires_grad_())
        out.square().sum().backward()
    # same output and gradients (scripted: the same forward formula, differentiated by autograd)
    got = loaded(x)
    torch.testing.assert_close(got, module(x), rtol=1e-12, atol=1e-14)
    gx = torch.autograd.grad(got.square().sum(), x)[0]
    want = torch.autograd.grad(module(x).square().sum(), x)[0]
    torch.testing.assert_close(gx, want, rtol=1e-12, atol=1e-14)
    pairs = zip(sorted(module.named_parameters()), sorted(loaded.named_parameters()), strict=True)
    for (ka, a), (kb, b) in pairs:
        assert ka == kb
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-14)
    # half precision in the scripted module: computed in float32, finite at n = 1e8
    module = factory()
    with torch.no_grad():
        module.n.fill_(1e8)
    scripted = torch.jit.script(module.half())
    xh = torch.tensor([0.0, 1e-4, -1.0, 65504.0, -65504.0], dtype=torch.float16)
    if name == "sau_per_channel_learn_n":
        xh = xh.view(1, 1, 5).expand(1, 3, 5)
    out = scripted(xh)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    torch.testing.assert_close(out, module(xh))
    if name != "sau_per_channel_learn_n":  # a 0-d input stays 0-d, as in eager mode
        assert scripted(torch.tensor(0.5, dtype=torch.float16)).shape == ()


def test_jit_script_smoothed_refuses_with_a_clear_error() -> None:
    from actlab.nn.smoothing import smooth

    with pytest.raises(TypeError, match=r"Smoothed cannot be compiled by torch.jit.script.*trace"):
        torch.jit.script(smooth("relu6", n=2.0))
    # the documented alternative works
    m = smooth("relu6", n=2.0)
    x = torch.randn(2, 3)
    torch.testing.assert_close(torch.jit.trace(m, (x,))(x), m(x))
