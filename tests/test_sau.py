"""SAU: closed forms against quadrature, hand-written gradients against gradcheck and autograd,
half-precision robustness, memory (saved tensors), the module wrapper and export paths."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from scipy import integrate, special

from actlab.bench.measure import saved_tensor_bytes
from actlab.functional.sau import sau, sau_reference
from actlab.nn.sau import SAU

FORMULAS = ("exact", "paper")


# ----------------------------------------------------------------------------------------------
# independent references
# ----------------------------------------------------------------------------------------------
def quad_sau(x: float, alpha: float, n: float) -> float:
    """∫ LeakyReLU_α(x - y)·n·φ(n·y) dy by adaptive quadrature, split at the kink y = x."""
    phi_n = lambda y: n * math.exp(-0.5 * (n * y) ** 2) / math.sqrt(2 * math.pi)  # noqa: E731
    lo, hi = -40.0 / n, 40.0 / n  # the Gaussian is exactly 0 in float64 beyond |n·y| = 40
    kw = {"epsabs": 1e-14, "epsrel": 1e-13, "limit": 200}
    total = 0.0
    if x > lo:  # y < x: LeakyReLU(x - y) = x - y
        b = min(x, hi)
        total += integrate.quad(lambda y: (x - y) * phi_n(y), lo, b, points=[0.0], **kw)[0]
    if x < hi:  # y > x: LeakyReLU(x - y) = α·(x - y)
        a = max(x, lo)
        total += alpha * integrate.quad(lambda y: (x - y) * phi_n(y), a, hi, points=[0.0], **kw)[0]
    return total


def paper_eq3(x: np.ndarray, alpha: float, n: float) -> np.ndarray:
    """Eq. 3 of Biswas et al. (2021), typed as printed."""
    return (
        1 / (2 * n) * np.sqrt(2 / np.pi) * np.exp(-(n**2) * x**2 / 2)
        + (1 + alpha) / 2 * x
        + (1 - alpha) / 2 * x * special.erf(n * x / np.sqrt(2))
    )


X_GRID = [0.0, 1e-3, -1e-3, 0.05, -0.05, 1.0, -1.0, 5.0, -5.0]


# ----------------------------------------------------------------------------------------------
# forward values
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [0.5, 1.0, 3.0, 20.0])
@pytest.mark.parametrize("alpha", [0.0, 0.15, 0.5, 1.0])
def test_exact_formula_equals_quadrature_of_the_convolution(alpha: float, n: float) -> None:
    x = torch.tensor(X_GRID, dtype=torch.float64)
    got = sau(x, alpha, n, formula="exact").numpy()
    want = np.array([quad_sau(v, alpha, n) for v in X_GRID])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)


@pytest.mark.parametrize("n", [0.5, 3.0, 20.0, 20000.0])
@pytest.mark.parametrize("alpha", [0.0, 0.15, 1.0])
def test_paper_formula_is_eq3_and_differs_from_exact_by_the_documented_term(
    alpha: float, n: float
) -> None:
    xs = np.array(X_GRID + [1e-5, -2e-5])
    x = torch.tensor(xs, dtype=torch.float64)
    paper = sau(x, alpha, n, formula="paper").numpy()
    np.testing.assert_allclose(paper, paper_eq3(xs, alpha, n), rtol=1e-14, atol=1e-15)
    exact = sau(x, alpha, n, formula="exact").numpy()
    diff = alpha * np.sqrt(2 / np.pi) / (2 * n) * np.exp(-((n * xs) ** 2) / 2)
    np.testing.assert_allclose(paper - exact, diff, rtol=1e-9, atol=1e-15)
    assert np.all(np.abs(paper - exact) <= alpha * np.sqrt(2 / np.pi) / (2 * n) + 1e-15)


@pytest.mark.parametrize("formula", FORMULAS)
def test_zero_centred_multiplies_the_gaussian_term_by_x(formula: str) -> None:
    xs = np.array(X_GRID)
    x = torch.tensor(xs, dtype=torch.float64)
    alpha, n = 0.3, 2.0
    plain = sau(x, alpha, n, formula=formula).numpy()
    centred = sau(x, alpha, n, formula=formula, zero_centred=True).numpy()
    coef = 1.0 if formula == "paper" else 1 - alpha
    gauss = coef / (2 * n) * np.sqrt(2 / np.pi) * np.exp(-((n * xs) ** 2) / 2)
    np.testing.assert_allclose(centred, plain - gauss + xs * gauss, rtol=1e-13, atol=1e-15)
    assert centred[X_GRID.index(0.0)] == 0.0
    assert plain[X_GRID.index(0.0)] > 0.0


def test_large_n_approaches_leaky_relu() -> None:
    x = torch.linspace(-3, 3, 101, dtype=torch.float64)
    lrelu = torch.nn.functional.leaky_relu(x, 0.2)
    errs = [(sau(x, 0.2, n) - lrelu).abs().max().item() for n in (1.0, 10.0, 100.0, 1e4)]
    assert errs == sorted(errs, reverse=True)
    # the sup-distance is attained at x = 0: (1-α)·φ(0)/n
    assert errs[-1] == pytest.approx(0.8 / (1e4 * math.sqrt(2 * math.pi)), rel=1e-9)


def test_sau_reference_matches_sau() -> None:
    torch.manual_seed(0)
    x = torch.randn(5, 7, dtype=torch.float64) * 2
    for formula in FORMULAS:
        for zc in (False, True):
            torch.testing.assert_close(
                sau(x, 0.25, 1.7, formula, zc), sau_reference(x, 0.25, 1.7, formula, zc)
            )


# ----------------------------------------------------------------------------------------------
# gradients
# ----------------------------------------------------------------------------------------------
def _inputs(n: float, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    # spread x over the region where the smoothing matters (|n·x| of order 1) and beyond
    x = (torch.randn(2, 3, 4, generator=g, dtype=torch.float64) * 2 / n).requires_grad_()
    shape = (3, 1) if per_channel else ()
    alpha = (torch.rand(shape, generator=g, dtype=torch.float64) * 0.8 + 0.1).requires_grad_()
    nt = (
        torch.full(shape, n, dtype=torch.float64)
        * (1 + 0.2 * torch.rand(shape, generator=g, dtype=torch.float64))
    ).requires_grad_()
    return x, alpha, nt


@pytest.mark.parametrize("zero_centred", [False, True])
@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("n", [0.3, 1.0, 5.0, 100.0])
def test_gradcheck(n: float, per_channel: bool, formula: str, zero_centred: bool) -> None:
    x, alpha, nt = _inputs(n, per_channel)
    fn = lambda x, a, m: sau(x, a, m, formula, zero_centred)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, alpha, nt))


@pytest.mark.parametrize("zero_centred", [False, True])
@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("n", [0.3, 5.0, 100.0])
def test_gradients_match_autograd_of_reference(n: float, formula: str, zero_centred: bool) -> None:
    x, alpha, nt = _inputs(n, per_channel=True)
    out = sau(x, alpha, nt, formula, zero_centred)
    ref = sau_reference(x, alpha, nt, formula, zero_centred)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-14)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (x, alpha, nt), grad)
    want = torch.autograd.grad(ref, (x, alpha, nt), grad)
    assert got[1].shape == alpha.shape and got[2].shape == nt.shape
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("n", [0.3, 5.0, 100.0, 20000.0])
def test_gradients_with_fixed_n_match_reference(n: float, per_channel: bool, formula: str) -> None:
    """The usual training case (n a buffer, α learnable) takes the in-place backward path."""
    x, alpha, nt = _inputs(n, per_channel)
    nt = nt.detach()
    if n == 20000.0:  # put inputs inside the Gaussian's width 1/n too
        x = (x.detach() / n).requires_grad_()
    fn = lambda x, a: sau(x, a, nt, formula)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, alpha))
    out, ref = fn(x, alpha), sau_reference(x, alpha, nt, formula)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (x, alpha), grad)
    want = torch.autograd.grad(ref, (x, alpha), grad)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    # only x, or only alpha
    (gx,) = torch.autograd.grad(sau(x, alpha.detach(), nt, formula), x, grad)
    torch.testing.assert_close(gx, want[0], rtol=1e-10, atol=1e-12)
    (ga,) = torch.autograd.grad(sau(x.detach(), alpha, nt, formula), alpha, grad)
    torch.testing.assert_close(ga, want[1], rtol=1e-10, atol=1e-12)


def test_input_and_grad_are_not_modified_in_place() -> None:
    x = torch.randn(4, 5, requires_grad=True)
    alpha = torch.tensor(0.2, requires_grad=True)
    x_before = x.detach().clone()
    out = sau(x, alpha, 3.0)
    grad = torch.randn_like(out)
    grad_before = grad.clone()
    out.backward(grad)
    assert torch.equal(x.detach(), x_before) and torch.equal(grad, grad_before)


def test_gradients_only_for_what_requires_grad() -> None:
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    out = sau(x, alpha, 3.0)
    (gx, ga) = torch.autograd.grad(out.sum(), (x, alpha))
    assert gx.shape == x.shape and ga.shape == ()
    # LeakyReLU limit: ∂G/∂α → min(x, 0) for large n
    big = sau(x, alpha, 1e6)
    (ga,) = torch.autograd.grad(big.sum(), alpha)
    torch.testing.assert_close(ga, x.detach().clamp_max(0).sum(), rtol=1e-6, atol=1e-6)


def test_second_derivatives() -> None:
    x, alpha, nt = _inputs(1.0, per_channel=True)
    for formula in FORMULAS:
        fn = lambda x, a, m, f=formula: sau(x, a, m, f, True)  # noqa: E731
        assert torch.autograd.gradgradcheck(fn, (x, alpha, nt))


# ----------------------------------------------------------------------------------------------
# numerics in low precision and at extreme n
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1.0, 2e4, 1e8])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("formula", FORMULAS)
def test_half_precision_forward_backward_finite(dtype: torch.dtype, n: float, formula: str) -> None:
    vals = [0.0, 1e-8, -1e-8, 1e-3, -1e-3, 1.0, -1.0, 1e4, -1e4]
    x = torch.tensor(vals, dtype=dtype, requires_grad=True)
    alpha = torch.tensor(0.15, requires_grad=True)
    nt = torch.tensor(n, requires_grad=True)
    for zc in (False, True):
        out = sau(x, alpha, nt, formula, zc)
        assert out.dtype == dtype
        assert torch.isfinite(out).all()
        gx, ga, gn = torch.autograd.grad(out.sum(), (x, alpha, nt))
        assert gx.dtype == dtype and ga.dtype == torch.float32 and gn.dtype == torch.float32
        assert torch.isfinite(gx).all() and torch.isfinite(ga) and torch.isfinite(gn)
        # computed in float32 and rounded once: at most one unit in the last place (subnormals
        # included) from the float64 reference rounded to the same dtype
        ref = sau_reference(x.detach().double(), 0.15, n, formula, zc).to(dtype).double()
        info = torch.finfo(dtype)
        torch.testing.assert_close(out.double(), ref, rtol=info.eps, atol=info.tiny * info.eps)


@pytest.mark.parametrize("n", [1e-2, 1.0, 2e4, 1e8])
@pytest.mark.parametrize("zero_centred", [False, True])
def test_float32_finite_for_extreme_inputs(n: float, zero_centred: bool) -> None:
    x = torch.tensor([0.0, 1e-30, -1e-30, 1e-8, 1e4, -1e4, 1e30, -1e30], requires_grad=True)
    alpha = torch.tensor(0.15, requires_grad=True)
    nt = torch.tensor(n, requires_grad=True)
    for formula in FORMULAS:
        out = sau(x, alpha, nt, formula, zero_centred)
        grads = torch.autograd.grad(out.sum(), (x, alpha, nt))
        assert torch.isfinite(out).all()
        assert all(torch.isfinite(g).all() for g in grads)


# ----------------------------------------------------------------------------------------------
# memory: only the input is saved for backward
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_saves_exactly_one_input_sized_tensor(dtype: torch.dtype) -> None:
    x = torch.randn(8, 16, 10, 10, dtype=dtype, requires_grad=True)
    alpha = torch.full((16, 1, 1), 0.15, requires_grad=True)
    n = torch.full((16, 1, 1), 3.0, requires_grad=True)
    nbytes = x.numel() * x.element_size()
    for formula in FORMULAS:
        for zc in (False, True):
            saved = saved_tensor_bytes(
                lambda f=formula, z=zc: sau(x, alpha, n, f, z), exclude=(alpha, n)
            )
            assert saved == nbytes  # = x itself, not a float32 copy, no erf/exp intermediates
    # the plain composition keeps several input-sized intermediates
    assert saved_tensor_bytes(lambda: sau_reference(x.float(), alpha, n)) >= 3 * x.numel() * 4


def test_module_saves_one_input_sized_tensor() -> None:
    m = SAU(num_parameters=6, learn_n=True)
    x = torch.randn(4, 6, 8, 8, requires_grad=True)
    saved = saved_tensor_bytes(lambda: m(x), exclude=tuple(m.parameters()))
    nbytes = x.numel() * 4
    assert nbytes <= saved <= nbytes + 64  # + the clamped copy of n (6 floats)


# ----------------------------------------------------------------------------------------------
# argument checking
# ----------------------------------------------------------------------------------------------
def test_functional_errors() -> None:
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="formula"):
        sau(x, 0.1, 1.0, formula="fast")
    with pytest.raises(TypeError, match="floating"):
        sau(torch.arange(3), 0.1, 1.0)
    with pytest.raises(ValueError, match=r"broadcast .*\(2, 3\)"):
        sau(x, torch.ones(2), 1.0)
    with pytest.raises(ValueError, match="broadcast"):
        sau(x, 0.1, torch.ones(4, 2, 3))  # would enlarge the output
    with pytest.raises(TypeError, match="alpha"):
        sau(x, "0.1", 1.0)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# the module
# ----------------------------------------------------------------------------------------------
def test_module_defaults_and_repr() -> None:
    m = SAU()
    assert isinstance(m.alpha, torch.nn.Parameter) and not isinstance(m.n, torch.nn.Parameter)
    assert [k for k, _ in m.named_parameters()] == ["alpha"]
    assert set(m.state_dict()) == {"alpha", "n"}
    r = repr(m)
    for text in (
        "alpha=0.15",
        "n=20000.0",
        "learn_alpha=True",
        "learn_n=False",
        "num_parameters=1",
        "formula='exact'",
        "zero_centred=False",
        "min_n=",
    ):
        assert text in r
    assert "inplace=True" in repr(SAU(inplace=True, formula="paper"))
    assert "formula='paper'" in repr(SAU(formula="paper"))


def test_module_matches_functional_and_keeps_shape() -> None:
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    m = SAU(alpha=0.3, n=2.0, formula="paper", zero_centred=True).double()
    torch.testing.assert_close(m(x), sau(x, 0.3, 2.0, "paper", True))
    assert m(torch.tensor(0.5, dtype=torch.float64)).shape == ()  # 0-d input stays 0-d


def test_state_dict_round_trip_between_learnable_and_fixed() -> None:
    a = SAU(alpha=0.1, n=3.0, num_parameters=4, learn_n=True)
    with torch.no_grad():
        a.alpha.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
        a.n.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    b = SAU(num_parameters=4, learn_alpha=False, learn_n=False)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 4, 3)
    torch.testing.assert_close(b(x), a(x))
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    c = SAU(num_parameters=4, learn_n=True)
    c.load_state_dict(torch.load(buf))
    torch.testing.assert_close(c(x), a(x))
    c.reset_parameters()
    assert torch.all(c.alpha == 0.15) and torch.all(c.n == 20000.0)


def test_per_channel_broadcasting_over_dim_1() -> None:
    alphas = torch.tensor([0.0, 0.5, 1.0])
    m = SAU(n=2.0, num_parameters=3).double()
    with torch.no_grad():
        m.alpha.copy_(alphas)
    for shape in [(5, 3), (5, 3, 7), (2, 3, 4, 4), (2, 3, 2, 2, 2)]:
        x = torch.randn(shape, dtype=torch.float64)
        out = m(x)
        assert out.shape == x.shape
        for c in range(3):
            torch.testing.assert_close(out[:, c], sau(x[:, c], alphas[c].item(), 2.0))
    with pytest.raises(ValueError, match=r"alpha has shape \(3,\).*\(2, 4, 5\).*4 values"):
        m(torch.randn(2, 4, 5))
    with pytest.raises(ValueError, match=r"channel_dim=1 is out of range .* \(3,\)"):
        m(torch.randn(3))


def test_module_validation() -> None:
    with pytest.raises(ValueError, match="n must be"):
        SAU(n=0.0)
    with pytest.raises(ValueError, match="n must be"):
        SAU(n=-1.0)
    with pytest.raises(ValueError, match="formula"):
        SAU(formula="approx")
    with pytest.raises(ValueError, match="num_parameters"):
        SAU(num_parameters=0)
    with pytest.raises(TypeError, match="num_parameters"):
        SAU(num_parameters=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        SAU(alpha=float("nan"))


def test_training_changes_alpha() -> None:
    torch.manual_seed(0)
    m = SAU(alpha=0.15, n=5.0, num_parameters=2)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x = torch.randn(64, 2)
    target = torch.nn.functional.leaky_relu(x, 0.5)  # wants a larger slope
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = ((m(x) - target) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert torch.all(m.alpha > 0.2)
    assert torch.all(m.n == 5.0)  # a buffer: untouched


def test_learn_n_learns_and_stays_positive() -> None:
    torch.manual_seed(0)
    m = SAU(alpha=0.0, n=4.0, learn_alpha=False, learn_n=True)
    assert isinstance(m.n, torch.nn.Parameter)
    x = torch.randn(256) * 0.5
    target = sau(x, 0.0, 1.0)  # a smoother unit: n should decrease towards 1
    opt = torch.optim.Adam(m.parameters(), lr=0.1)
    for _ in range(60):
        opt.zero_grad()
        ((m(x) - target) ** 2).mean().backward()
        opt.step()
    assert 0.5 < m.n.item() < 2.0
    # an optimiser step that would make n negative: the forward pass still uses n >= min_n
    with torch.no_grad():
        m.n.fill_(-3.0)
    out = m(x)
    assert m.effective_n().item() == pytest.approx(m.min_n) and m.min_n > 0
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, sau(x, 0.0, m.effective_n()))


def test_inplace_accepted_and_input_untouched() -> None:
    m = SAU(inplace=True)
    x = torch.randn(3, 4)
    x0 = x.clone()
    out = m(x)
    torch.testing.assert_close(x, x0)
    torch.testing.assert_close(out, SAU()(x0))


def test_half_module() -> None:
    m = SAU(num_parameters=3).half()
    x = torch.randn(2, 3, 4, dtype=torch.float16, requires_grad=True)
    out = m(x)
    out.float().sum().backward()
    assert out.dtype == torch.float16 and m.alpha.grad.dtype == torch.float16
    assert torch.isfinite(m.alpha.grad).all()


# ----------------------------------------------------------------------------------------------
# export paths
# ----------------------------------------------------------------------------------------------
@pytest.mark.export
def test_jit_trace() -> None:
    m = SAU(n=3.0, num_parameters=4)
    x = torch.randn(2, 4, 5)
    traced = torch.jit.trace(m, (x,))
    x2 = torch.randn(2, 4, 5, requires_grad=True)
    torch.testing.assert_close(traced(x2), m(x2))
    traced(x2).sum().backward()
    assert x2.grad is not None and torch.isfinite(x2.grad).all()


@pytest.mark.export
def test_torch_compile_aot_eager() -> None:
    m = SAU(n=3.0, num_parameters=4, learn_n=True)
    x = torch.randn(2, 4, 5, requires_grad=True)
    compiled = torch.compile(m, backend="aot_eager", fullgraph=True)
    out = compiled(x)
    torch.testing.assert_close(out, m(x))
    out.sum().backward()
    gx, ga, gn = x.grad.clone(), m.alpha.grad.clone(), m.n.grad.clone()
    x.grad = None
    m.zero_grad()
    m(x).sum().backward()
    torch.testing.assert_close(gx, x.grad)
    torch.testing.assert_close(ga, m.alpha.grad)
    torch.testing.assert_close(gn, m.n.grad)


@pytest.mark.export
@pytest.mark.slow
def test_onnx_export_dynamo_runs_in_onnxruntime(tmp_path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), SAU(n=3.0, num_parameters=4)).eval()
    x = torch.randn(2, 3, 5, 5)
    path = tmp_path / "sau.onnx"
    torch.onnx.export(m, (x,), str(path), dynamo=True, verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = m(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
