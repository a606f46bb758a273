"""General smoothing σ * κ_n: closed forms and quadratures against scipy's adaptive quadrature,
consistency with SAU, convergence in n, and the ``Smoothed`` module."""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate, special

from actlab.functional.sau import sau
from actlab.functional.smoothing import (
    PiecewiseLinear,
    bump,
    bump_mass,
    bump_smoothed_relu,
    gaussian_smoothed_relu,
    piecewise_linear,
    quadrature_rule,
    smooth_activation,
    smooth_by_quadrature,
    smooth_piecewise_linear,
)
from actlab.nn.smoothing import Smoothed, smooth

D = torch.float64


# ----------------------------------------------------------------------------------------------
# independent references (numpy / scipy)
# ----------------------------------------------------------------------------------------------
def _psi(u: float) -> float:
    return math.exp(-1.0 / (1.0 - u * u)) if abs(u) < 1 else 0.0


PSI_MASS = integrate.quad(_psi, -1, 1, epsabs=1e-14, epsrel=1e-13, limit=200)[0]

NP_ACTS: dict[str, Callable[[float], float]] = {
    "relu": lambda v: max(v, 0.0),
    "relu6": lambda v: min(max(v, 0.0), 6.0),
    "hardtanh": lambda v: min(max(v, -1.0), 1.0),
    "gelu": lambda v: v * special.ndtr(v),
    "silu": lambda v: v * special.expit(v),
    "softplus": lambda v: float(np.logaddexp(0.0, v)),
    "tanh": math.tanh,
}
KINKS = {"relu": (0.0,), "relu6": (0.0, 6.0), "hardtanh": (-1.0, 1.0)}


def quad_conv(name: str, x: float, n: float, kernel: str) -> float:
    """∫ σ(x - y)·κ_n(y) dy by adaptive quadrature, split at 0 and at every kink y = x - t."""
    f = NP_ACTS[name]
    if kernel == "gaussian":
        k = lambda y: n * math.exp(-0.5 * (n * y) ** 2) / math.sqrt(2 * math.pi)  # noqa: E731
        lo, hi = -40.0 / n, 40.0 / n
    else:
        k = lambda y: n * _psi(n * y) / PSI_MASS  # noqa: E731
        lo, hi = -1.0 / n, 1.0 / n
    cuts = sorted({lo, hi, 0.0, *(x - t for t in KINKS.get(name, ()) if lo < x - t < hi)})
    total = 0.0
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        total += integrate.quad(
            lambda y: f(x - y) * k(y), a, b, epsabs=1e-14, epsrel=1e-13, limit=200
        )[0]
    return total


def grid(n: float) -> list[float]:
    """Points where the smoothing matters (|n·x| <~ 3) and a few beyond."""
    return sorted(
        {0.0, 1e-3, -1e-3, *(v / n for v in (-3.0, -1.0, -0.4, 0.4, 1.0, 3.0)), -7.0, 5.5, 6.3, 2.0}
    )


# ----------------------------------------------------------------------------------------------
# piecewise-linear representation
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec, kwargs, torch_fn",
    [
        ("relu", {}, F.relu),
        ("leaky_relu", {"negative_slope": 0.2}, lambda x: F.leaky_relu(x, 0.2)),
        ("relu6", {}, F.relu6),
        ("hardtanh", {"min_val": -2.0, "max_val": 0.5}, lambda x: F.hardtanh(x, -2.0, 0.5)),
        ("hardsigmoid", {}, F.hardsigmoid),
        ("identity", {}, lambda x: x),
        (torch.nn.ReLU6(), {}, F.relu6),
        (torch.nn.LeakyReLU(0.3), {}, lambda x: F.leaky_relu(x, 0.3)),
        (torch.nn.Hardtanh(-0.5, 3.0), {}, lambda x: F.hardtanh(x, -0.5, 3.0)),
        (F.relu, {}, F.relu),
    ],
)
def test_piecewise_linear_forms_are_exact(spec, kwargs, torch_fn) -> None:
    pwl = piecewise_linear(spec, **kwargs)
    assert isinstance(pwl, PiecewiseLinear)
    x = torch.linspace(-8, 8, 321, dtype=D)  # includes every knot
    torch.testing.assert_close(pwl(x), torch_fn(x), rtol=0, atol=1e-15)


def test_piecewise_linear_rejects_and_returns_none() -> None:
    assert piecewise_linear("gelu") is None
    assert piecewise_linear(torch.nn.GELU()) is None
    assert piecewise_linear(lambda t: t) is None
    with pytest.raises(ValueError, match="same length"):
        PiecewiseLinear(0.0, 0.0, (0.0, 1.0), (1.0,))
    with pytest.raises(ValueError, match="finite"):
        PiecewiseLinear(0.0, float("inf"))
    with pytest.raises(ValueError, match="min_val < max_val"):
        piecewise_linear("hardtanh", min_val=1.0, max_val=0.0)


# ----------------------------------------------------------------------------------------------
# Gaussian kernel, closed form
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [0.5, 1.0, 4.0, 50.0])
def test_gaussian_relu_equals_sau_with_alpha_zero(n: float) -> None:
    x = torch.tensor(grid(n), dtype=D)
    want = sau(x, 0.0, n, "exact")
    torch.testing.assert_close(gaussian_smoothed_relu(x, n), want, rtol=1e-14, atol=1e-15)
    pwl = piecewise_linear("relu")
    torch.testing.assert_close(smooth_piecewise_linear(x, pwl, n), want, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(smooth("relu", n=n).double()(x), want, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("slope", [0.0, 0.15, 0.5, 1.0, -0.3])
def test_gaussian_leaky_relu_equals_exact_sau(slope: float) -> None:
    n = 3.0
    x = torch.tensor(grid(n), dtype=D)
    pwl = piecewise_linear("leaky_relu", negative_slope=slope)
    # the generic piecewise-linear path (not routed through sau)
    got = smooth_piecewise_linear(x, pwl, n, "gaussian")
    torch.testing.assert_close(got, sau(x, slope, n, "exact"), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("n", [0.5, 2.0, 10.0])
@pytest.mark.parametrize("name", ["relu6", "hardtanh"])
def test_gaussian_relu6_hardtanh_match_quadrature(name: str, n: float) -> None:
    xs = grid(n) + [6.0 + 0.5 / n, -1.0 - 0.3 / n, 1.0]
    got = smooth(name, n=n).double()(torch.tensor(xs, dtype=D)).numpy()
    want = np.array([quad_conv(name, v, n, "gaussian") for v in xs])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


# ----------------------------------------------------------------------------------------------
# Gaussian kernel, Gauss–Hermite quadrature
# ----------------------------------------------------------------------------------------------
def test_gauss_hermite_rule_integrates_normal_moments() -> None:
    z, p = quadrature_rule("gaussian", 32)
    assert p.sum().item() == pytest.approx(1.0, abs=1e-14)
    for k, moment in [(1, 0.0), (2, 1.0), (4, 3.0), (6, 15.0), (7, 0.0)]:
        assert (p * z**k).sum().item() == pytest.approx(moment, abs=1e-12)


def test_gauss_hermite_relu_converges_to_the_closed_form() -> None:
    """Plain Gauss–Hermite on a kinked function converges only algebraically in the order."""
    n = 2.0
    x = torch.tensor(grid(n), dtype=D)
    exact = gaussian_smoothed_relu(x, n)
    errs = {}
    for order in (16, 64, 256):
        z, p = quadrature_rule("gaussian", order)
        errs[order] = (smooth_by_quadrature(x, torch.relu, n, z, p) - exact).abs().max().item()
    assert errs[16] > errs[64] > errs[256]
    assert errs[64] < 3e-3 / n and errs[256] < 1e-3 / n
    # away from the kink (|n·x| >= 7) the quadrature is accurate to ~1e-6 and better
    far = torch.tensor([-7.0, -4.0, 3.5, 5.0], dtype=D)
    z, p = quadrature_rule("gaussian", 64)
    torch.testing.assert_close(
        smooth_by_quadrature(far, torch.relu, n, z, p),
        gaussian_smoothed_relu(far, n),
        rtol=0,
        atol=1e-6,
    )
    # the module's forced-quadrature path uses the same rule
    m = smooth("relu", n=n, method="quadrature", order=256).double()
    torch.testing.assert_close(m(x), exact, rtol=0, atol=1e-3 / n)


@pytest.mark.parametrize("n", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("name", ["gelu", "silu", "softplus", "tanh"])
def test_gauss_hermite_smooth_activations_match_quadrature(name: str, n: float) -> None:
    xs = grid(n)
    # a wide kernel (small n) needs more nodes; tanh (poles at ±iπ/2) converges slowest
    order = (64 if n >= 1 else 128) if name == "tanh" else (32 if n >= 1 else 64)
    m = smooth(name, n=n, order=order).double()
    assert m.method == "quadrature"
    got = m(torch.tensor(xs, dtype=D)).numpy()
    want = np.array([quad_conv(name, v, n, "gaussian") for v in xs])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)


# ----------------------------------------------------------------------------------------------
# bump kernel
# ----------------------------------------------------------------------------------------------
def test_bump_density_and_mass() -> None:
    assert bump_mass() == pytest.approx(PSI_MASS, rel=1e-12)
    u = torch.tensor([-1.5, -1.0, -0.999, 0.0, 0.5, 1.0, 2.0], dtype=D, requires_grad=True)
    v = bump(u)
    want = [_psi(t) for t in u.tolist()]
    np.testing.assert_allclose(v.detach().numpy(), want, rtol=1e-14, atol=1e-300)
    (g,) = torch.autograd.grad(v.sum(), u)
    assert torch.isfinite(g).all()
    z, p = quadrature_rule("bump", 48)
    assert p.sum().item() == pytest.approx(1.0, abs=1e-14)
    assert torch.all(z.abs() < 1)


@pytest.mark.parametrize("n", [0.5, 2.0, 10.0])
@pytest.mark.parametrize("name", ["relu", "relu6", "hardtanh"])
def test_bump_piecewise_linear_matches_quadrature(name: str, n: float) -> None:
    xs = grid(n) + [1.0 / n, -1.0 / n, 6.0 - 0.5 / n, 1.0 + 0.2 / n]
    m = smooth(name, n=n, kernel="bump").double()
    assert m.method == "closed_form"
    got = m(torch.tensor(xs, dtype=D)).numpy()
    want = np.array([quad_conv(name, v, n, "bump") for v in xs])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_bump_relu_is_exactly_relu_outside_the_support() -> None:
    n = 4.0
    x = torch.tensor([-3.0, -0.26, 0.26, 1.0, 100.0], dtype=D)  # |x| > 1/n
    torch.testing.assert_close(bump_smoothed_relu(x, n), F.relu(x), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("n", [0.5, 2.0])
@pytest.mark.parametrize("name", ["gelu", "tanh", "softplus"])
def test_bump_quadrature_smooth_activations_match_quadrature(name: str, n: float) -> None:
    xs = grid(n)
    got = smooth(name, n=n, kernel="bump").double()(torch.tensor(xs, dtype=D)).numpy()
    want = np.array([quad_conv(name, v, n, "bump") for v in xs])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


# ----------------------------------------------------------------------------------------------
# smoothness and convergence
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ["gaussian", "bump"])
def test_smoothed_relu_has_slope_one_half_at_the_kink(kernel: str) -> None:
    x = torch.zeros(1, dtype=D, requires_grad=True)
    (g,) = torch.autograd.grad(smooth("relu", n=3.0, kernel=kernel).double()(x).sum(), x)
    assert g.item() == pytest.approx(0.5, abs=1e-9)


@pytest.mark.parametrize("kernel", ["gaussian", "bump"])
@pytest.mark.parametrize("name", ["relu", "relu6", "gelu", "silu", "tanh"])
def test_converges_to_the_activation_as_n_grows(name: str, kernel: str) -> None:
    x = torch.linspace(-8, 8, 401, dtype=D)
    target = {"relu": F.relu, "relu6": F.relu6, "gelu": F.gelu, "silu": F.silu, "tanh": torch.tanh}[
        name
    ](x)
    errs = [
        (smooth(name, n=n, kernel=kernel).double()(x) - target).abs().max().item()
        for n in (1.0, 4.0, 16.0, 64.0, 1e4)
    ]
    assert all(a > b for a, b in zip(errs[:-1], errs[1:], strict=True)), errs
    assert errs[-1] < 1e-4
    if name == "relu" and kernel == "gaussian":  # sup error φ(0)/n, attained at the kink
        assert errs[-1] == pytest.approx(1 / (1e4 * math.sqrt(2 * math.pi)), rel=1e-9)


# ----------------------------------------------------------------------------------------------
# gradients
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "activation, kernel",
    [
        ("relu6", "gaussian"),
        ("relu6", "bump"),
        ("gelu", "gaussian"),
        ("elu", "bump"),
        ("leaky_relu", "bump"),
    ],
)
def test_gradcheck_x_and_n(activation: str, kernel: str) -> None:
    torch.manual_seed(0)
    x = (torch.randn(12, dtype=D) * 1.5).requires_grad_()
    n = torch.tensor(1.3, dtype=D, requires_grad=True)
    order = 16
    if kernel == "gaussian" and piecewise_linear(activation) is not None:
        fn = lambda x, n: smooth_activation(x, activation, n, kernel)  # noqa: E731
    else:
        fn = lambda x, n: smooth_activation(x, activation, n, kernel, order)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, n))


def test_prelu_slope_is_learned_through_sau() -> None:
    prelu = torch.nn.PReLU(num_parameters=3, init=0.1).double()
    m = smooth(prelu, n=2.0).double()
    x = torch.randn(4, 3, 5, dtype=D)
    slopes = prelu.weight.detach().view(3, 1)
    torch.testing.assert_close(m(x), sau(x, slopes, 2.0, "exact"))
    m(x).sum().backward()
    assert prelu.weight.grad is not None and prelu.weight.grad.abs().sum() > 0
    assert "activation.weight" in m.state_dict()
    mb = smooth(torch.nn.PReLU(3, init=0.1), n=2.0, kernel="bump").double()
    want = smooth("leaky_relu", n=2.0, kernel="bump", negative_slope=0.1).double()(x)
    torch.testing.assert_close(mb(x), want)
    with pytest.raises(ValueError, match="per channel"):
        m(torch.randn(4, 2, dtype=D))
    with pytest.raises(ValueError, match="per channel"):
        mb(torch.randn(4, 2, dtype=D))


# ----------------------------------------------------------------------------------------------
# the module
# ----------------------------------------------------------------------------------------------
def test_module_repr_state_dict_and_round_trip() -> None:
    m = smooth("gelu", n=3.0, kernel="bump", order=40)
    assert isinstance(m, Smoothed) and isinstance(Smoothed("relu"), torch.nn.Module)
    r = repr(m)
    for text in (
        "activation='gelu'",
        "n=3.0",
        "kernel='bump'",
        "method='quadrature'",
        "order=40",
        "learn_n=False",
    ):
        assert text in r
    assert set(m.state_dict()) == {"n"}  # nodes and weights are non-persistent buffers
    assert m.nodes.shape == (40,) and m.nodes.dtype == torch.float64
    a = smooth("relu6", n=5.0, learn_n=True)
    with torch.no_grad():
        a.n.fill_(2.5)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = smooth("relu6", n=5.0)  # n as a buffer this time
    b.load_state_dict(torch.load(buf))
    x = torch.randn(10)
    torch.testing.assert_close(b(x), a(x))
    b.reset_parameters()
    assert b.n.item() == 5.0


def test_learn_n_stays_positive_and_learns() -> None:
    torch.manual_seed(0)
    m = smooth("softplus", n=3.0, learn_n=True, order=16)
    x = torch.linspace(-4, 4, 64)
    target = smooth("softplus", n=1.0, order=16)(x).detach()
    opt = torch.optim.Adam(m.parameters(), lr=0.1)
    for _ in range(40):
        opt.zero_grad()
        ((m(x) - target) ** 2).mean().backward()
        opt.step()
    assert abs(m.n.item() - 1.0) < abs(3.0 - 1.0) / 2
    with torch.no_grad():
        m.n.fill_(-1.0)
    assert m.effective_n().item() > 0 and torch.isfinite(m(x)).all()


def test_callables_kwargs_and_registry_fallback() -> None:
    x = torch.linspace(-3, 3, 31, dtype=D)
    square = smooth(lambda t: t * t, n=2.0).double()
    # (x²) * φ_n = x² + 1/n²: Gauss–Hermite is exact for polynomials
    torch.testing.assert_close(square(x), x * x + 0.25)
    leaky = smooth("leaky_relu", n=2.0, negative_slope=0.3).double()
    torch.testing.assert_close(leaky(x), sau(x, 0.3, 2.0))
    tanh_gelu = smooth("gelu", n=2.0, approximate="tanh").double()
    exact_gelu = smooth("gelu", n=2.0).double()
    assert 0 < (tanh_gelu(x) - exact_gelu(x)).abs().max() < 1e-2
    module_gelu = smooth(torch.nn.GELU(), n=2.0).double()
    torch.testing.assert_close(module_gelu(x), exact_gelu(x))
    hs = smooth("hardswish", n=2.0)  # not in the piecewise-linear table: quadrature
    assert hs.method == "quadrature"
    x2 = torch.randn(2, 3, 4)
    assert smooth(torch.nn.PReLU(3), n=2.0, method="quadrature")(x2).shape == x2.shape


def test_module_errors() -> None:
    with pytest.raises(ValueError, match="unknown activation 'nope'"):
        smooth("nope")
    with pytest.raises(ValueError, match="kernel"):
        smooth("relu", kernel="box")
    with pytest.raises(ValueError, match="method"):
        smooth("relu", method="exact")
    with pytest.raises(ValueError, match="not piecewise linear"):
        smooth("gelu", method="closed_form")
    with pytest.raises(ValueError, match="n must be"):
        smooth("relu", n=0.0)
    with pytest.raises(ValueError, match="order"):
        smooth("gelu", order=1)
    with pytest.raises(TypeError, match="activation must be"):
        smooth(3.0)
    with pytest.raises(TypeError, match="keyword arguments"):
        smooth(torch.nn.GELU(), approximate="tanh")


def test_inplace_accepted_and_half_precision() -> None:
    x = torch.randn(3, 4)
    x0 = x.clone()
    out = smooth("relu6", n=2.0, inplace=True)(x)
    torch.testing.assert_close(x, x0)
    torch.testing.assert_close(out, smooth("relu6", n=2.0)(x0))
    for name, kernel in [("relu6", "gaussian"), ("relu", "bump"), ("gelu", "gaussian")]:
        m = smooth(name, n=2.0, kernel=kernel, order=16)
        xh = x.half().requires_grad_()
        y = m(xh)
        assert y.dtype == torch.float16
        y.float().sum().backward()
        assert torch.isfinite(xh.grad).all()
        torch.testing.assert_close(y.float(), m(xh.float()), rtol=2e-3, atol=2e-3)


@pytest.mark.export
def test_jit_trace_smoothed() -> None:
    for m in (
        smooth("relu6", n=2.0),
        smooth("gelu", n=2.0, order=8),
        smooth("relu", n=2.0, kernel="bump", order=16),
    ):
        x = torch.randn(2, 3, 4)
        traced = torch.jit.trace(m, (x,))
        x2 = torch.randn(2, 3, 4)
        torch.testing.assert_close(traced(x2), m(x2))
