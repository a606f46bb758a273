"""SAU and Smoothed as first-class PyTorch ops: torch.fx tracing, setup_context autograd with
double backward, torch.func transforms (against the float64 reference composition) and
half-precision robustness of the modules (n kept in float32)."""

from __future__ import annotations

import inspect
import io
import pickle
from collections.abc import Callable

import pytest
import torch
from torch import fx, nn
from torch.func import grad, hessian, jacfwd, jacrev, jvp, vmap

from actlab.functional import sau as sau_fn
from actlab.functional.sau import _SAUFunction, sau, sau_reference
from actlab.functional.smoothing import (
    PiecewiseLinear,
    piecewise_linear,
    smooth_activation,
    smooth_piecewise_linear,
    smooth_prelu,
)
from actlab.models import create_model
from actlab.nn.sau import SAU
from actlab.nn.smoothing import Smoothed, smooth

D = torch.float64
FORMULAS = ("exact", "paper")

# (id, factory): every SAU variant and the Smoothed paths (closed form via SAU, closed form,
# bump closed form, PReLU both kernels, quadrature with a name / a module / a lambda).
MODULES: list[tuple[str, Callable[[], nn.Module]]] = [
    ("sau_exact", lambda: SAU(n=3.0)),
    ("sau_paper", lambda: SAU(n=3.0, formula="paper")),
    ("sau_zero_centred", lambda: SAU(n=3.0, zero_centred=True)),
    ("sau_paper_zc_learn_n", lambda: SAU(n=3.0, formula="paper", zero_centred=True, learn_n=True)),
    ("sau_per_channel", lambda: SAU(n=3.0, num_parameters=3, learn_n=True)),
    ("smooth_relu6", lambda: smooth("relu6", n=2.0)),
    ("smooth_leaky", lambda: smooth("leaky_relu", n=2.0, negative_slope=0.2, learn_n=True)),
    ("smooth_hardtanh_bump", lambda: smooth("hardtanh", n=2.0, kernel="bump", order=16)),
    ("smooth_prelu", lambda: smooth(nn.PReLU(3, 0.2), n=2.0)),
    ("smooth_prelu_bump", lambda: smooth(nn.PReLU(3, 0.2), n=2.0, kernel="bump", order=16)),
    ("smooth_gelu_quadrature", lambda: smooth("gelu", n=2.0, order=8, learn_n=True)),
    ("smooth_elu_bump_quadrature", lambda: smooth(nn.ELU(), n=2.0, kernel="bump", order=12)),
    ("smooth_lambda_quadrature", lambda: smooth(lambda t: t * torch.tanh(t), n=2.0, order=8)),
]
IDS = [name for name, _ in MODULES]


def _grads(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    out = module(x)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    params = [p for _, p in sorted(module.named_parameters()) if p.requires_grad]
    return out, list(torch.autograd.grad((out * weights).sum(), [x, *params]))


# ----------------------------------------------------------------------------------------------
# 1. torch.fx
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "factory"), MODULES, ids=IDS)
def test_fx_symbolic_trace_gives_same_output_and_grads(name: str, factory) -> None:
    torch.manual_seed(0)
    module = factory().double()
    gm = fx.symbolic_trace(module)
    x = torch.randn(2, 3, 5, dtype=D, requires_grad=True)
    out, grads = _grads(module, x)
    out_fx, grads_fx = _grads(gm, x)
    torch.testing.assert_close(out_fx, out, rtol=0, atol=0)
    for a, b in zip(grads_fx, grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the GraphModule pickles (its code imports actlab.functional.sau.sau etc. by name)
    torch.testing.assert_close(pickle.loads(pickle.dumps(gm))(x), out, rtol=0, atol=0)


def test_fx_records_one_call_to_the_functional_sau_and_the_buffers() -> None:
    gm = fx.symbolic_trace(SAU(n=3.0))
    calls = [node.target for node in gm.graph.nodes if node.op == "call_function"]
    assert calls == [sau]
    assert f"{sau.__module__}.{sau.__name__}" == "actlab.functional.sau.sau"
    attrs = {node.target for node in gm.graph.nodes if node.op == "get_attr"}
    assert attrs == {"alpha", "n"}  # references to the module's state, not baked constants
    # a state change after tracing reaches the traced graph
    x = torch.linspace(-1, 1, 7)
    with torch.no_grad():
        gm.n.fill_(1.0)
    torch.testing.assert_close(gm(x), sau(x, 0.15, 1.0))


def test_fx_traces_functional_calls_and_zoo_models() -> None:
    class UsesFunctional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.alpha = nn.Parameter(torch.full((4,), 0.3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = sau_fn(self.conv(x), self.alpha, 2.0, "paper", channel_dim=1)
            return smooth_piecewise_linear(h, PiecewiseLinear(0.0, 0.0, (0.0, 6.0), (1.0, -1.0)),
                                           2.0)

    torch.manual_seed(1)
    x = torch.randn(2, 3, 6, 6)
    for model in (
        UsesFunctional(),
        nn.Sequential(nn.Conv2d(3, 4, 3), SAU(num_parameters=4, n=4.0), nn.Conv2d(4, 2, 1),
                      smooth("gelu", n=3.0, order=6)),
        create_model("tiny_cnn", act="sau", in_channels=3),
        create_model("resnet8", act="smooth_relu6", width=4),
        create_model("small_resnet", act="sau_zero_centred", width=4),
    ):
        gm = fx.symbolic_trace(model.eval())
        targets = {node.target for node in gm.graph.nodes if node.op == "call_function"}
        assert targets & {sau, smooth_piecewise_linear}
        torch.testing.assert_close(gm(x), model(x), rtol=0, atol=0)


# ----------------------------------------------------------------------------------------------
# 2. autograd: setup_context, double backward, torch.func
# ----------------------------------------------------------------------------------------------
def test_function_uses_setup_context_jvp_and_a_vmap_rule() -> None:
    assert list(inspect.signature(_SAUFunction.forward).parameters)[0] == "x"  # no ctx
    assert _SAUFunction.setup_context is not torch.autograd.Function.setup_context
    assert _SAUFunction.jvp is not torch.autograd.Function.jvp
    assert _SAUFunction.generate_vmap_rule


def _sau_inputs(n: float, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    x = (torch.randn(2, 3, 4, generator=g, dtype=D) * 2 / n).requires_grad_()
    shape = (3, 1) if per_channel else ()
    a = (0.1 + 0.8 * torch.rand(shape, generator=g, dtype=D)).requires_grad_()
    nt = (n * (1 + 0.2 * torch.rand(shape, generator=g, dtype=D))).requires_grad_()
    return x, a, nt


@pytest.mark.parametrize("zero_centred", [False, True])
@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize(("n", "per_channel"), [(0.7, False), (3.0, True)])
def test_sau_gradgradcheck_learnable_alpha_and_n(
    n: float, per_channel: bool, formula: str, zero_centred: bool
) -> None:
    x, a, nt = _sau_inputs(n, per_channel)

    def fn(x, a, m):
        return sau(x, a, m, formula, zero_centred)

    assert torch.autograd.gradgradcheck(fn, (x, a, nt))
    # second derivatives equal those of the reference composition
    out, ref = fn(x, a, nt), sau_reference(x, a, nt, formula, zero_centred)
    g1 = torch.autograd.grad(out.sum(), (x, a, nt), create_graph=True)
    g2 = torch.autograd.grad(ref.sum(), (x, a, nt), create_graph=True)
    for u, v in zip(g1, g2, strict=True):
        kw = {"retain_graph": True, "allow_unused": True, "materialize_grads": True}
        h1 = torch.autograd.grad(u.square().sum(), (x, a, nt), **kw)
        h2 = torch.autograd.grad(v.square().sum(), (x, a, nt), **kw)
        for p, q in zip(h1, h2, strict=True):
            torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("activation", "kernel", "order"),
    [("relu6", "gaussian", None), ("relu6", "bump", 12), ("leaky_relu", "gaussian", None),
     ("gelu", "gaussian", 8), ("elu", "bump", 10)],
)
def test_smoothed_gradgradcheck(activation: str, kernel: str, order: int | None) -> None:
    torch.manual_seed(0)
    x = (torch.randn(10, dtype=D) * 1.5).requires_grad_()
    n = torch.tensor(1.3, dtype=D, requires_grad=True)

    def fn(x, n):
        return smooth_activation(x, activation, n, kernel, order)

    assert torch.autograd.gradgradcheck(fn, (x, n))


def test_smoothed_prelu_gradgradcheck_both_kernels() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, dtype=D, requires_grad=True)
    w = torch.tensor([0.1, 0.3, -0.2], dtype=D, requires_grad=True)
    n = torch.tensor(1.5, dtype=D, requires_grad=True)
    for kernel, order in (("gaussian", None), ("bump", 12)):
        assert torch.autograd.gradgradcheck(
            lambda x, w, n, k=kernel, o=order: smooth_prelu(x, w, n, k, o), (x, w, n)
        )


@pytest.mark.parametrize("zero_centred", [False, True])
@pytest.mark.parametrize("formula", FORMULAS)
def test_sau_torch_func_transforms_match_reference(formula: str, zero_centred: bool) -> None:
    x, a, nt = (t.detach() for t in _sau_inputs(2.0, per_channel=True))

    def f(x, a, n):
        return sau(x, a, n, formula, zero_centred)

    def r(x, a, n):
        return sau_reference(x, a, n, formula, zero_centred)

    def close(p, q):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)

    args = (x, a, nt)
    for argnum in range(3):
        close(jacrev(f, argnum)(*args), jacrev(r, argnum)(*args))
        close(jacfwd(f, argnum)(*args), jacrev(r, argnum)(*args))
    tangents = tuple(torch.randn_like(t) for t in args)
    out, tan = jvp(f, args, tangents)
    out_r, tan_r = jvp(r, args, tangents)
    close(out, out_r)
    close(tan, tan_r)
    close(vmap(f, in_dims=(0, None, None))(*args), r(*args))
    close(vmap(f, in_dims=(1, 0, 0), out_dims=1)(x, a.view(3), nt.view(3)), r(*args))
    close(grad(lambda *t: f(*t).sum(), argnums=(0, 1, 2))(*args),
          grad(lambda *t: r(*t).sum(), argnums=(0, 1, 2))(*args))
    hs = hessian(lambda a, n: f(x, a, n).square().sum(), argnums=(0, 1))(a, nt)
    hr = hessian(lambda a, n: r(x, a, n).square().sum(), argnums=(0, 1))(a, nt)
    for p, q in zip(torch.utils._pytree.tree_leaves(hs), torch.utils._pytree.tree_leaves(hr),
                    strict=True):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)
    close(hessian(lambda x: f(x, a, nt).sum())(x[0]), hessian(lambda x: r(x, a, nt).sum())(x[0]))


@pytest.mark.parametrize(("name", "factory"), MODULES[5:], ids=IDS[5:])
def test_smoothed_torch_func_transforms(name: str, factory) -> None:
    torch.manual_seed(2)
    module = factory().double()
    params = {k: v.detach() for k, v in module.named_parameters()}
    x = torch.randn(2, 3, 4, dtype=D)

    def f(x):
        return torch.func.functional_call(module, params, (x,))

    want = torch.autograd.functional.jacobian(module, x)
    torch.testing.assert_close(jacrev(f)(x), want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(jacfwd(f)(x), want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(vmap(f)(x.unsqueeze(1)).squeeze(1), f(x))
    h = hessian(lambda x: f(x).sum())(x[:1])
    want_h = torch.autograd.functional.hessian(lambda x: module(x).sum(), x[:1])
    torch.testing.assert_close(h, want_h, rtol=1e-9, atol=1e-12)
    if name == "smooth_leaky":  # the SAU path against the reference composition
        n = module.effective_n().detach()
        torch.testing.assert_close(jacfwd(f)(x), jacrev(lambda x: sau_reference(x, 0.2, n))(x),
                                   rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# 4. precision: half / bfloat16 / double modules and autocast
# ----------------------------------------------------------------------------------------------
def _extreme_inputs(dtype: torch.dtype) -> torch.Tensor:
    info = torch.finfo(dtype)
    vals = [0.0, info.tiny, -info.tiny, info.tiny / 4, info.max, -info.max, 1.0, -1.0, 1e-3]
    return torch.tensor(vals, dtype=torch.float64).to(dtype)


SAU_VARIANTS = [
    {},
    {"formula": "paper"},
    {"zero_centred": True},
    {"formula": "paper", "zero_centred": True, "learn_n": True},
]


@pytest.mark.parametrize("n", [1.0, 2e4, 65520.0, 1e8])
@pytest.mark.parametrize("cast", ["half", "bfloat16", "double"])
def test_cast_sau_module_is_finite_for_extreme_inputs(cast: str, n: float) -> None:
    for kwargs in SAU_VARIANTS:
        module = getattr(SAU(n=n, **kwargs), cast)()
        dtype = module.alpha.dtype
        assert module.n.dtype == (D if cast == "double" else torch.float32)
        assert module.n.item() == pytest.approx(n, rel=1e-7)  # not rounded to half precision
        x = _extreme_inputs(dtype).requires_grad_()
        out = module(x)
        assert out.dtype == dtype
        grads = torch.autograd.grad(out.sum(), [x, *module.parameters()])
        assert torch.isfinite(out).all(), (kwargs, out)
        assert all(torch.isfinite(g).all() for g in grads), (kwargs, grads)
        # the moderate entries agree with the float64 reference rounded to the dtype
        formula, zc = kwargs.get("formula", "exact"), kwargs.get("zero_centred", False)
        alpha = module.alpha.detach().double().reshape(())
        ref = sau_reference(x.detach()[6:].double(), alpha, n, formula, zc).to(dtype)
        rtol = 1e-14 if dtype == D else torch.finfo(dtype).eps  # half: rounded once from float32
        torch.testing.assert_close(out[6:], ref, rtol=rtol, atol=0)
        # at x = 0 the output is the Gaussian term alone (the value that was NaN with n = inf)
        zero = sau_reference(torch.zeros((), dtype=D), alpha, n, formula, zc).to(dtype)
        torch.testing.assert_close(out[0], zero, rtol=rtol, atol=0)


@pytest.mark.parametrize("cast", ["half", "bfloat16", "double"])
def test_cast_smoothed_module_is_finite_for_extreme_inputs(cast: str) -> None:
    for n in (2.0, 1e5, 1e8):
        for name, factory in MODULES[5:]:
            module = factory()
            module.n.data.fill_(n)
            module = getattr(module, cast)()
            assert module.n.dtype == (D if cast == "double" else torch.float32)
            if module.nodes is not None:
                assert module.nodes.dtype == D and module.weights.dtype == D
            dtype = torch.float16 if cast == "half" else torch.bfloat16 if cast == "bfloat16" else D
            # one of each extreme value (channel 0), so that parameter gradients are finite sums
            x = torch.linspace(-2, 2, 27, dtype=D).to(dtype).reshape(1, 3, 9)
            x[0, 0] = _extreme_inputs(dtype)
            x.requires_grad_()
            out = module(x)
            assert out.dtype == dtype
            grads = torch.autograd.grad(out.sum(), [x, *module.parameters()])
            assert torch.isfinite(out).all(), (name, n, out)
            assert all(torch.isfinite(g).all() for g in grads), (name, n, grads)


def test_sau_n_keeps_float32_through_casts_state_dict_and_optimiser() -> None:
    assert SAU(dtype=torch.float16).n.dtype == torch.float32  # also when built in half
    module = SAU(n=1e8, num_parameters=2, learn_n=True)
    n_param = module.n
    module.half()
    assert module.n is n_param and module.n.dtype == torch.float32 and module.n[0].item() == 1e8
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    x = torch.randn(4, 2, 3, dtype=torch.float16)
    module(x).float().sum().backward()
    assert module.n.grad.dtype == torch.float32 and module.alpha.grad.dtype == torch.float16
    opt.step()
    module.float().half()  # round trip: n never passes through float16
    assert module.n[0].item() == pytest.approx(1e8, rel=1e-6)
    # state_dict: the key stays "n"; a float16 checkpoint of the old layout still loads
    state = module.state_dict()
    assert state["n"].dtype == torch.float32
    fresh = SAU(num_parameters=2, learn_n=True).half()
    fresh.load_state_dict(state)
    old = {"alpha": torch.full((2,), 0.2, dtype=torch.float16),
           "n": torch.full((2,), 3.0, dtype=torch.float16)}
    fresh.load_state_dict(old)
    assert fresh.n.dtype == torch.float32 and torch.all(fresh.n == 3.0)
    buf = io.BytesIO()
    torch.save(fresh.state_dict(), buf)
    buf.seek(0)
    assert torch.load(buf)["n"].dtype == torch.float32


def test_autocast_bfloat16_finite_and_close_to_float32() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), SAU(num_parameters=4, n=1e8), nn.Conv2d(4, 4, 1),
        SAU(n=2e4, formula="paper", zero_centred=True), nn.Conv2d(4, 4, 1),
        smooth("relu6", n=1e5), nn.Conv2d(4, 4, 1), smooth("gelu", n=2.0, order=8),
    )
    x = torch.randn(2, 3, 8, 8)
    x[0, 0, 0, 0] = 3e38  # near float32 / bfloat16 max
    want = model(x[1:])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    torch.testing.assert_close(out[1:].float(), want, rtol=0.05, atol=0.05)


def test_smoothed_state_dict_key_and_float32_n() -> None:
    module = smooth("relu6", n=1e5).half()
    assert set(module.state_dict()) == {"n"} and module.state_dict()["n"].dtype == torch.float32
    assert piecewise_linear("relu6") == module.pwl
    assert isinstance(module, Smoothed)
