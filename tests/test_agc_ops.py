"""AGC (every mode) and AGCAct as first-class PyTorch ops: torch.fx tracing, double backward
(gradgradcheck), torch.func transforms against the float64 reference composition, low precision
without NaN/inf, and the refusal of inputs whose per-sample spatial extent is 1."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.autograd import gradgradcheck
from torch.func import grad, hessian, jacfwd, jacrev, jvp, vmap

from actlab.functional.agc import agc, agc_act, agc_act_reference, agc_reference
from actlab.nn.agc import AGC, AGCAct

D64 = torch.float64

# (id, op, reference): every mode of AGC and both activations of AGCAct
OPS = [
    ("mean", lambda *p: agc(*p), lambda *p: agc_reference(*p)),
    ("window", lambda *p: agc(*p, mode="window", window=3),
     lambda *p: agc_reference(*p, mode="window", window=3)),
    ("median", lambda *p: agc(*p, mode="median"), lambda *p: agc_reference(*p, mode="median")),
    ("act_relu", lambda *p: agc_act(*p), lambda *p: agc_act_reference(*p)),
    ("act_leaky", lambda *p: agc_act(*p, act="leaky_relu", negative_slope=0.1),
     lambda *p: agc_act_reference(*p, "leaky_relu", 0.1)),
]
IDS = [o[0] for o in OPS]


def _inputs(seed: int = 0, shape: tuple[int, ...] = (2, 3, 4, 3)):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(shape, generator=g, dtype=D64)
    lam = 0.5 + torch.rand(shape[1], generator=g, dtype=D64)
    gamma = torch.randn(shape[1], generator=g, dtype=D64) + 2.0
    beta = 0.3 * torch.randn(shape[1], generator=g, dtype=D64)
    return h, lam, gamma, beta


# ---------------------------------------------------------------------------------------------
# torch.fx
# ---------------------------------------------------------------------------------------------
MODULES = {
    "mean": lambda: AGC(4),
    "mean_dim2": lambda: AGC(4, dim=2),
    "window": lambda: AGC(4, mode="window", window=3),
    "median": lambda: AGC(4, mode="median"),
    "no_affine": lambda: AGC(4, affine=False, learn_lam=False),
    "act_relu": lambda: AGCAct(4),
    "act_leaky": lambda: AGCAct(4, act="leaky_relu", negative_slope=0.2),
}


@pytest.mark.parametrize("name", list(MODULES))
def test_symbolic_trace_module(name: str) -> None:
    torch.manual_seed(0)
    module = MODULES[name]()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.rand_like(p))
    gm = torch.fx.symbolic_trace(module)
    targets = {n.target for n in gm.graph.nodes if n.op == "call_function"}
    assert (agc_act if name.startswith("act") else agc) in targets  # one node, not traced into
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    out_gm = gm(x)
    torch.testing.assert_close(out_gm, module(x), rtol=0, atol=0)
    params = list(module.parameters())
    got = torch.autograd.grad(out_gm.square().sum(), [x, *params])
    want = torch.autograd.grad(module(x).square().sum(), [x, *params])
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_symbolic_trace_small_model_and_train_step() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), AGCAct(4), nn.Conv2d(4, 4, 3), AGC(4, mode="window"),
        nn.ReLU(), nn.Conv2d(4, 4, 3), AGC(4, mode="median"), nn.Flatten(), nn.Linear(64, 2),
    )
    gm = torch.fx.symbolic_trace(model)
    x = torch.randn(3, 3, 8, 8)
    torch.testing.assert_close(gm(x), model(x), rtol=0, atol=0)
    gm(x).sum().backward()
    model(x).sum().backward()
    for (name, p), q in zip(model.named_parameters(), gm.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-6, atol=1e-7, msg=name)


def test_fx_traced_module_still_checks_its_input() -> None:
    gm = torch.fx.symbolic_trace(AGC(4, dim=2))
    with pytest.raises(ValueError, match="expects a 4-d input"):
        gm(torch.randn(2, 4, 5))
    with pytest.raises(ValueError, match="num_features=3"):
        torch.fx.symbolic_trace(AGC(3))(torch.randn(2, 4, 5, 5))


# ---------------------------------------------------------------------------------------------
# double backward
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "op", "ref"), OPS, ids=IDS)
def test_gradgradcheck(name: str, op, ref) -> None:
    args = tuple(t.requires_grad_() for t in _inputs(seed=1))
    assert gradgradcheck(op, args)


@pytest.mark.parametrize(("name", "op", "ref"), OPS, ids=IDS)
def test_gradient_penalty_equals_reference(name: str, op, ref) -> None:
    args = tuple(t.requires_grad_() for t in _inputs(seed=2))

    def penalty(fn):
        (gh,) = torch.autograd.grad(fn(*args).sin().sum(), args[0], create_graph=True)
        return torch.autograd.grad(gh.square().sum(), args)

    for g, w in zip(penalty(op), penalty(ref), strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# torch.func
# ---------------------------------------------------------------------------------------------
def _close(got, want) -> None:
    if isinstance(want, tuple):
        for g, w in zip(got, want, strict=True):
            _close(g, w)
    else:
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("name", "op", "ref"), OPS, ids=IDS)
def test_func_transforms_agree_with_reference(name: str, op, ref) -> None:
    args = _inputs(seed=3)
    w = torch.randn_like(args[0])
    argnums = (0, 1, 2, 3)

    def loss(fn):
        return lambda *p: (fn(*p) * w).sum()

    _close(grad(loss(op), argnums)(*args), grad(loss(ref), argnums)(*args))
    _close(jacrev(op, argnums)(*args), jacrev(ref, argnums)(*args))
    _close(jacfwd(op, argnums)(*args), jacrev(ref, argnums)(*args))
    tangents = tuple(torch.randn_like(t) for t in args)
    _close(jvp(op, args, tangents), jvp(ref, args, tangents))
    _close(hessian(loss(op), argnums)(*args), hessian(loss(ref), argnums)(*args))


@pytest.mark.parametrize(("name", "op", "ref"), OPS, ids=IDS)
def test_vmap_applies_agc_to_each_vmapped_slice(name: str, op, ref) -> None:
    """vmap over a leading dim B of (B, N, C, H, W) inputs (and of per-slice parameters) is the
    op on each (N, C, H, W) slice, as a Python loop."""
    hs = torch.randn(3, 2, 3, 4, 3, generator=torch.Generator().manual_seed(4), dtype=D64)
    _, lam, gamma, beta = _inputs(seed=4)
    gammas = gamma + torch.arange(3, dtype=D64).unsqueeze(1)
    loop = torch.stack([op(hs[i], lam, gammas[i], beta) for i in range(3)])
    got = vmap(op, in_dims=(0, None, 0, None))(hs, lam, gammas, beta)
    torch.testing.assert_close(got, loop, rtol=0, atol=1e-14)
    per_slice = vmap(grad(lambda h, g: op(h, lam, g, beta).square().sum(), (0, 1)))(hs, gammas)
    for i in range(3):
        hi, gi = hs[i].clone().requires_grad_(), gammas[i].clone().requires_grad_()
        want = torch.autograd.grad(op(hi, lam, gi, beta).square().sum(), (hi, gi))
        torch.testing.assert_close(per_slice[0][i], want[0])
        torch.testing.assert_close(per_slice[1][i], want[1])


# ---------------------------------------------------------------------------------------------
# precision and degenerate shapes
# ---------------------------------------------------------------------------------------------
FACTORIES = [
    lambda: AGC(3), lambda: AGC(3, mode="window"), lambda: AGC(3, mode="median"),
    lambda: AGCAct(3), lambda: AGCAct(3, act="leaky_relu"),
]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("factory", FACTORIES)
def test_module_in_dtype_is_finite_up_to_the_dtype_max(factory, dtype: torch.dtype) -> None:
    torch.manual_seed(5)
    module = factory()
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(0.9).add_(0.05)  # |γ| < 1, λ < 1: (h − λm)γ + β stays below the max
    ref = factory().double()
    ref.load_state_dict(module.state_dict())
    module = module.to(dtype)
    big = torch.finfo(dtype).max
    x = torch.rand(2, 3, 4, 4, dtype=D64) - 0.5  # |h − λm| < max
    x[0, 0, 0, 0] = 0.5
    out = module((x * big).to(dtype))
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert out.abs().max() > big / 100  # the huge values are really there
    xm = (x * 5).to(dtype).requires_grad_()
    y = module(xm)
    y.float().square().sum().backward()
    for t in (y, xm.grad, *(p.grad for p in module.parameters())):
        assert torch.isfinite(t).all()
    tol = {torch.float16: 2e-2, torch.bfloat16: 6e-2}.get(dtype, 1e-5)
    torch.testing.assert_close(y.double(), ref(xm.detach().double()), rtol=tol, atol=tol)


def test_autocast_model_is_finite_and_close() -> None:
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), AGCAct(4), nn.Conv2d(4, 4, 3), AGC(4))
    x = torch.randn(2, 3, 9, 9)
    want = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        out.float().sum().backward()
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    torch.testing.assert_close(out.float(), want, rtol=5e-2, atol=5e-2)


@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 1), (2, 3, 1, 1), (2, 3, 1, 1, 1)])
@pytest.mark.parametrize("call", [
    lambda h: agc(h), lambda h: agc(h, mode="median"), lambda h: agc(h, mode="window"),
    lambda h: agc_act(h), lambda h: AGC(3)(h), lambda h: AGCAct(3)(h),
    lambda h: torch.fx.symbolic_trace(AGC(3))(h),
])
def test_spatial_extent_one_is_refused_with_a_one_line_error(shape, call) -> None:
    with pytest.raises(ValueError) as info:
        call(torch.randn(shape))
    message = str(info.value)
    assert "\n" not in message and "spatial" in message and str(shape) in message
