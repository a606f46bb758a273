"""ASH, FASH, LASH and ASHTopK as first-class PyTorch ops: torch.fx tracing, double backward
(gradgradcheck), torch.func transforms against the float64 reference composition, and low
precision (half, bfloat16, double, autocast) without NaN/inf."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.autograd import gradgradcheck
from torch.func import grad, hessian, jacfwd, jacrev, jvp, vmap

from actlab.functional.ash import ash, ash_reference, ash_topk
from actlab.nn.ash import ASH, FASH, LASH, ASHTopK

D64 = torch.float64

# (id, parameter shape, dims, leak): scalar, per-channel with per-channel statistics, leaky
CASES = [
    ("scalar", (), None, 0.0),
    ("channel_stats", (1, 3, 1, 1), (2, 3), 0.0),
    ("leaky_channel", (1, 3, 1, 1), None, 0.2),
    ("stats_over_channels", (3, 1, 1), (1,), 0.1),
]
IDS = [c[0] for c in CASES]


def _inputs(pshape: tuple[int, ...], seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 3, 4, generator=g, dtype=D64)
    z = 0.5 * torch.randn(pshape, generator=g, dtype=D64)
    a = 0.5 + torch.rand(pshape, generator=g, dtype=D64)
    return x, z, a


# ---------------------------------------------------------------------------------------------
# torch.fx
# ---------------------------------------------------------------------------------------------
MODULES = {
    "ash": lambda: ASH(k=0.2, alpha=2.0),
    "ash_per_channel": lambda: ASH(k=0.3, num_parameters=4, dims=(2, 3)),
    "ash_inplace": lambda: ASH(k=0.3, inplace=True),
    "fash": lambda: FASH(k=0.2),
    "lash": lambda: LASH(k=0.4, leak=0.05, num_parameters=4),
    "ash_topk": lambda: ASHTopK(0.25),
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
    assert (ash_topk if name == "ash_topk" else ash) in targets  # one node, not traced into
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    out, out_gm = module(x), gm(x)
    torch.testing.assert_close(out_gm, out, rtol=0, atol=0)
    params = list(module.parameters())
    got = torch.autograd.grad(out_gm.square().sum(), [x, *params])
    want = torch.autograd.grad(module(x).square().sum(), [x, *params])
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


def test_symbolic_trace_small_model_and_train_step() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), ASH(k=0.3, num_parameters=4), nn.Conv2d(4, 4, 3),
        LASH(k=0.5), ASHTopK(0.5), nn.Flatten(), nn.Linear(4 * 6 * 6, 2),
    )
    gm = torch.fx.symbolic_trace(model)
    x = torch.randn(3, 3, 8, 8)
    torch.testing.assert_close(gm(x), model(x), rtol=0, atol=0)
    gm(x).sum().backward()
    model(x).sum().backward()
    for (name, p), q in zip(model.named_parameters(), gm.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-6, atol=1e-7, msg=name)


def test_fx_proxy_errors_surface_at_run_time_not_trace_time() -> None:
    gm = torch.fx.symbolic_trace(ASH(num_parameters=4))
    with pytest.raises(ValueError, match="num_parameters=4"):
        gm(torch.randn(2, 3, 5, 5))


# ---------------------------------------------------------------------------------------------
# double backward
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "pshape", "dims", "leak"), CASES, ids=IDS)
def test_gradgradcheck_learnable_z_alpha(name: str, pshape, dims, leak: float) -> None:
    x, z, a = (t.requires_grad_() for t in _inputs(pshape))
    assert gradgradcheck(lambda x, z, a: ash(x, z, a, dims, 1e-5, leak), (x, z, a))


@pytest.mark.parametrize("factory", [FASH, LASH, lambda: ASH(num_parameters=3, dims=(2, 3))])
def test_gradgradcheck_modules(factory) -> None:
    module = factory().double()
    x = _inputs(())[0].requires_grad_()
    params = tuple(module.parameters())

    def fn(x, *ps):
        return torch.func.functional_call(module, dict(zip(
            [n for n, _ in module.named_parameters()], ps, strict=True)), (x,))

    assert gradgradcheck(fn, (x, *params))


def test_double_backward_is_the_reference_hessian_vector_product() -> None:
    """A gradient penalty (WGAN-GP style) through ASH equals the one through the reference."""
    x, z, a = (t.requires_grad_() for t in _inputs((1, 3, 1, 1), seed=3))

    def penalty(fn):
        (gx,) = torch.autograd.grad(fn(x, z, a, (2, 3)).sin().sum(), x, create_graph=True)
        return torch.autograd.grad(gx.square().sum(), (x, z, a))

    for g, w in zip(penalty(ash), penalty(ash_reference), strict=True):
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


@pytest.mark.parametrize(("name", "pshape", "dims", "leak"), CASES, ids=IDS)
def test_func_transforms_agree_with_reference(name: str, pshape, dims, leak: float) -> None:
    x, z, a = _inputs(pshape, seed=4)
    w = torch.randn_like(x)

    def make(op):
        return lambda x, z, a: op(x, z, a, dims, 1e-5, leak)

    f, ref = make(ash), make(ash_reference)

    def loss(op):
        return lambda x, z, a: (op(x, z, a) * w).sum()

    argnums = (0, 1, 2)
    _close(grad(loss(f), argnums)(x, z, a), grad(loss(ref), argnums)(x, z, a))
    _close(jacrev(f, argnums)(x, z, a), jacrev(ref, argnums)(x, z, a))
    _close(jacfwd(f, argnums)(x, z, a), jacrev(ref, argnums)(x, z, a))
    tangents = (torch.randn_like(x), torch.randn_like(z), torch.randn_like(a))
    _close(jvp(f, (x, z, a), tangents), jvp(ref, (x, z, a), tangents))
    _close(hessian(loss(f), argnums)(x, z, a), hessian(loss(ref), argnums)(x, z, a))


def test_vmap_applies_ash_to_each_vmapped_slice() -> None:
    """vmap(ash) over a leading dim B of a (B, N, C, H, W) tensor is ash of each (N, C, H, W)
    slice: statistics per sample of that slice, exactly as a Python loop."""
    g = torch.Generator().manual_seed(5)
    xs = torch.randn(4, 2, 3, 3, 4, generator=g, dtype=D64)
    zs = torch.randn(4, 1, 3, 1, 1, generator=g, dtype=D64)
    a = torch.tensor(1.5, dtype=D64)

    def f(x, z):
        return ash(x, z, a, (2, 3), 1e-5, 0.1)

    loop = torch.stack([f(xs[i], zs[i]) for i in range(4)])
    torch.testing.assert_close(vmap(f)(xs, zs), loop, rtol=0, atol=1e-15)
    torch.testing.assert_close(vmap(f, in_dims=(0, None))(xs, zs[0]),
                               torch.stack([f(xs[i], zs[0]) for i in range(4)]))
    # per-slice gradients (vmap of grad) equal a loop of autograd calls
    per_slice = vmap(grad(lambda x, z: f(x, z).square().sum(), (0, 1)))(xs, zs)
    for i in range(4):
        xi, zi = xs[i].clone().requires_grad_(), zs[i].clone().requires_grad_()
        want = torch.autograd.grad(f(xi, zi).square().sum(), (xi, zi))
        torch.testing.assert_close(per_slice[0][i], want[0])
        torch.testing.assert_close(per_slice[1][i], want[1])


def test_topk_under_func_transforms() -> None:
    x = _inputs(())[0]
    mask = (ash_topk(x, 0.3) != 0).to(D64)
    torch.testing.assert_close(grad(lambda x: ash_topk(x, 0.3).sum())(x), mask)
    torch.testing.assert_close(vmap(lambda x: ash_topk(x, 0.3))(x.unsqueeze(0))[0],
                               ash_topk(x, 0.3))


# ---------------------------------------------------------------------------------------------
# precision
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("factory", [ASH, FASH, LASH, lambda: ASH(num_parameters=3, dims=(2, 3))])
def test_module_in_dtype_is_finite_up_to_the_dtype_max(factory, dtype: torch.dtype) -> None:
    module = factory().to(dtype)
    big = torch.finfo(dtype).max
    g = torch.Generator().manual_seed(6)
    x = (torch.rand(2, 3, 4, 4, generator=g, dtype=D64) * 2 - 1)
    x[0, 0, 0, :2] = torch.tensor([1.0, -1.0])  # the extremes themselves
    huge = (x * big).to(dtype)
    out = module(huge)
    assert out.dtype == dtype and torch.isfinite(out).all()
    # where the gate is clearly open / shut the output is x / leak·x (top and bottom element)
    assert out[0, 0, 0, 0] == huge[0, 0, 0, 0]
    bottom = module.leak * huge[0, 0, 0, 1].double()
    torch.testing.assert_close(out[0, 0, 0, 1].double(), bottom, rtol=1e-2, atol=0)
    # moderate inputs: output and every gradient finite and close to the float64 reference
    xm = (x * 3).to(dtype).requires_grad_()
    y = module(xm)
    y.float().square().sum().backward()
    for t in (y, xm.grad, *(p.grad for p in module.parameters())):
        assert torch.isfinite(t).all()
    ref = factory().double()
    tol = {torch.float16: 2e-2, torch.bfloat16: 5e-2}.get(dtype, 1e-5)
    torch.testing.assert_close(y.double(), ref(xm.detach().double()), rtol=tol, atol=tol)


def test_autocast_model_is_finite_and_close() -> None:
    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), ASH(k=0.3, num_parameters=4), nn.Conv2d(4, 4, 3),
                          LASH())
    x = torch.randn(2, 3, 9, 9)
    want = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        out.float().sum().backward()
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    torch.testing.assert_close(out.float(), want, rtol=5e-2, atol=5e-2)
