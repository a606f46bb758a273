"""ASH (Lee et al., NeurIPS 2022): functional op, hand-written backward and modules."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import norm as scipy_norm
from torch.autograd import gradcheck

from actlab.bench.measure import saved_tensor_bytes
from actlab.functional.ash import ash, ash_logits, ash_reference, ash_topk, z_from_k
from actlab.nn.ash import ASH, FASH, LASH, ASHTopK
from actlab.registry import is_activation

D64 = torch.float64


def _params(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = (0.5 * torch.randn(shape, generator=g, dtype=D64)).requires_grad_()
    a = (0.5 + torch.rand(shape, generator=g, dtype=D64)).requires_grad_()
    return z, a


# ---------------------------------------------------------------------------------------------
# forward
# ---------------------------------------------------------------------------------------------
def test_forward_matches_formula_written_out() -> None:
    x = torch.tensor([[-1.0, 0.0, 1.0, 2.0]], dtype=D64)
    mu, sigma = 0.5, (1.25 + 1e-5) ** 0.5  # population var of (-1, 0, 1, 2) is 1.25
    z, a = 0.3, 1.7
    expected = x / (1 + torch.exp(-2 * a * (x - mu - z * sigma)))
    torch.testing.assert_close(ash(x, z, a), expected)


def test_z_from_k_is_the_normal_quantile() -> None:
    for k in (0.05, 0.1, 0.2, 0.5, 0.9):
        assert z_from_k(k) == pytest.approx(scipy_norm.ppf(1 - k), abs=1e-10)
    with pytest.raises(ValueError, match=r"k .* \(0, 1\)"):
        z_from_k(1.0)
    with pytest.raises(TypeError):
        z_from_k("0.1")  # type: ignore[arg-type]


def test_top_of_the_distribution_passes() -> None:
    x = torch.linspace(-3, 3, 101).unsqueeze(0)
    y = ash(x, z_from_k(0.2), 20.0)
    assert torch.all(y[0, -10:] > 0.99 * x[0, -10:])  # largest values pass
    assert torch.all(y[0, :40].abs() < 1e-3)  # bottom is shut off


@pytest.mark.parametrize("k", [0.05, 0.1, 0.2, 0.5])
def test_fraction_kept_matches_k_and_topk(k: float) -> None:
    x = torch.randn(64, 4096, generator=torch.Generator().manual_seed(1))
    t = ash_logits(x, z_from_k(k), 50.0)
    kept = t > 0
    assert abs(kept.float().mean().item() - k) < 0.01
    topk_kept = ash_topk(x, k) != 0
    assert abs(topk_kept.float().mean().item() - k) < 1e-3
    assert (kept == topk_kept).float().mean().item() > 0.98
    # gate > 0.5 <=> ash(x) > x/2 on the positive elements that pass
    y = ash(x, z_from_k(k), 50.0)
    pos = x > 0
    assert torch.equal((y > x / 2)[pos], kept[pos])


def test_per_channel_dims_use_per_channel_statistics() -> None:
    x = torch.randn(2, 3, 4, 5, dtype=D64)
    x[:, 1] += 10.0  # channel 1 shifted: per-channel stats remove the shift
    y = ash(x, 0.0, 1.0, dims=(2, 3))
    y_shift = ash(x - 10.0 * (torch.arange(3) == 1).view(1, 3, 1, 1), 0.0, 1.0, dims=(2, 3))
    gate = y / x
    gate_shift = y_shift / (x - 10.0 * (torch.arange(3) == 1).view(1, 3, 1, 1))
    torch.testing.assert_close(gate, gate_shift)
    torch.testing.assert_close(y, ash_reference(x, 0.0, 1.0, dims=(2, 3)))


def test_sample_outputs_are_independent_of_the_batch() -> None:
    x = torch.randn(4, 3, 8)
    y = ash(x, 0.5, 2.0)
    other = x.clone()
    other[1:] = torch.randn(3, 3, 8) * 5
    torch.testing.assert_close(ash(other, 0.5, 2.0)[0], y[0])


def test_constant_input_is_finite() -> None:
    x = torch.full((3, 2, 4, 4), 2.5, requires_grad=True)
    z = torch.tensor(1.0, requires_grad=True)
    a = torch.tensor(2.0, requires_grad=True)
    y = ash(x, z, a)
    y.sum().backward()
    for t in (y, x.grad, z.grad, a.grad):
        assert torch.isfinite(t).all()
    # x − μ = 0 and σ = sqrt(eps): the gate is sigmoid(−2α z sqrt(eps)), close to 1/2
    torch.testing.assert_close(y, x * torch.sigmoid(torch.tensor(-4.0 * 1e-5**0.5)))
    zero = torch.zeros(2, 5, requires_grad=True)
    ash(zero, 1.0, 1.0).sum().backward()
    assert torch.isfinite(zero.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_finite_and_close(dtype: torch.dtype) -> None:
    x32 = torch.randn(4, 8, 16, 16, generator=torch.Generator().manual_seed(2)) * 3
    x = x32.to(dtype).requires_grad_()
    y = ash(x, 0.4, 2.0)
    assert y.dtype == dtype
    y.float().square().sum().backward()
    assert x.grad is not None and x.grad.dtype == dtype
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    ref = ash_reference(x.detach().double(), 0.4, 2.0)
    torch.testing.assert_close(y.double(), ref, atol=0.05, rtol=0.02)


# ---------------------------------------------------------------------------------------------
# backward
# ---------------------------------------------------------------------------------------------
GRAD_CASES = [
    ("scalar", (), None, 0.0),
    ("channel", (1, 3, 1, 1), None, 0.0),
    ("scalar", (), (2, 3), 0.0),
    ("channel", (1, 3, 1, 1), (2, 3), 0.0),
    ("channel", (1, 3, 1, 1), (2, 3), 0.2),
    ("channel", (3, 1, 1), (1,), 0.0),  # fewer dims than x, stats over channels only
]


@pytest.mark.parametrize(("kind", "pshape", "dims", "leak"), GRAD_CASES)
def test_gradcheck(kind: str, pshape: tuple[int, ...], dims, leak: float) -> None:
    x = torch.randn(2, 3, 4, 3, dtype=D64, generator=torch.Generator().manual_seed(3))
    x.requires_grad_()
    z, a = _params(pshape)
    assert gradcheck(lambda x, z, a: ash(x, z, a, dims=dims, leak=leak), (x, z, a))


@pytest.mark.parametrize(("kind", "pshape", "dims", "leak"), GRAD_CASES)
def test_gradients_equal_autograd_of_reference(kind, pshape, dims, leak: float) -> None:
    x = torch.randn(3, 3, 5, 4, dtype=D64, generator=torch.Generator().manual_seed(4))
    x.requires_grad_()
    z, a = _params(pshape, seed=5)
    g = torch.randn(3, 3, 5, 4, dtype=D64, generator=torch.Generator().manual_seed(6))
    y = ash(x, z, a, dims=dims, leak=leak)
    y_ref = ash_reference(x, z, a, dims=dims, leak=leak)
    torch.testing.assert_close(y, y_ref)
    got = torch.autograd.grad(y, (x, z, a), g)
    want = torch.autograd.grad(y_ref, (x, z, a), g)
    for gg, ww in zip(got, want, strict=True):
        assert gg.shape == ww.shape
        torch.testing.assert_close(gg, ww)


@pytest.mark.parametrize(("kind", "pshape", "dims", "leak"), GRAD_CASES)
def test_float32_forward_and_gradients_match_float64_reference(kind, pshape, dims, leak) -> None:
    """The float32 eager path (exp-based sigmoid, two-pass statistics, in-place temporaries)
    against autograd of the naive formula in float64; inputs and gradients stay untouched."""
    gen = torch.Generator().manual_seed(7)
    x = (3 * torch.randn(4, 3, 6, 5, generator=gen)).requires_grad_()
    x.data[0, 0, 0, :2] = torch.tensor([60.0, -60.0])  # gate arguments far beyond ±80
    z64, a64 = _params(pshape, seed=8)
    a64 = (a64.detach() * 4).requires_grad_()
    z32, a32 = (z64.detach().float().requires_grad_(), a64.detach().float().requires_grad_())
    g = torch.randn(4, 3, 6, 5, generator=gen)
    x_before, g_before = x.detach().clone(), g.clone()
    y = ash(x, z32, a32, dims=dims, leak=leak)
    got = torch.autograd.grad(y, (x, z32, a32), g)
    x64 = x.detach().double().requires_grad_()
    y_ref = ash_reference(x64, z64, a64, dims=dims, leak=leak)
    want = torch.autograd.grad(y_ref, (x64, z64, a64), g.double())
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=1e-5)
    for gg, ww in zip(got, want, strict=True):
        assert gg.dtype == torch.float32 and gg.shape == ww.shape
        torch.testing.assert_close(gg.double(), ww, rtol=1e-4, atol=1e-4)
    assert torch.equal(x.detach(), x_before) and torch.equal(g, g_before)


def test_gradient_flows_through_the_statistics() -> None:
    # Dropping the statistics' gradient would give a different dx: make sure it is there.
    x = torch.randn(2, 50, dtype=D64, requires_grad=True)
    y = ash(x, 0.7, 3.0)
    (gx,) = torch.autograd.grad(y.sum(), x)
    mu = x.mean(1, keepdim=True).detach()
    sigma = torch.sqrt(x.var(1, unbiased=False, keepdim=True) + 1e-5).detach()
    y_detached = x * torch.sigmoid(6.0 * (x - mu - 0.7 * sigma))
    (gx_detached,) = torch.autograd.grad(y_detached.sum(), x)
    assert (gx - gx_detached).abs().max() > 1e-3


def test_saves_one_input_sized_tensor() -> None:
    x = torch.randn(8, 16, 16, 16, requires_grad=True)
    z = torch.zeros(1, 16, 1, 1, requires_grad=True)
    a = torch.ones(1, 16, 1, 1, requires_grad=True)
    nbytes = x.numel() * x.element_size()
    saved = saved_tensor_bytes(lambda: ash(x, z, a), exclude=(z, a))
    assert nbytes <= saved <= nbytes + 2 * 8 * 4  # x plus (N,1,1,1) mean and std
    saved_ref = saved_tensor_bytes(lambda: ash_reference(x, z, a), exclude=(z, a))
    assert saved_ref >= 3 * nbytes  # the naive composition keeps several


def test_input_errors() -> None:
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="batch dim 0"):
        ash(x, dims=(0, 1))
    with pytest.raises(ValueError, match="out of range"):
        ash(x, dims=(2,))
    with pytest.raises(ValueError, match="at least 2 dims"):
        ash(torch.randn(5))
    with pytest.raises(ValueError, match="does not broadcast"):
        ash(x, torch.zeros(4))
    with pytest.raises(ValueError, match="leak"):
        ash(x, leak=1.0)
    with pytest.raises(TypeError, match="floating-point"):
        ash(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"k .* \(0, 1\]"):
        ash_topk(x, 0.0)


# ---------------------------------------------------------------------------------------------
# top-k rule
# ---------------------------------------------------------------------------------------------
def test_topk_keeps_exactly_the_largest_per_sample_and_per_channel() -> None:
    x = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(7))
    y = ash_topk(x, 0.25, dims=(2, 3))  # 5 of 20 per (sample, channel)
    for n in range(2):
        for c in range(3):
            flat = x[n, c].flatten()
            keep = torch.zeros(20, dtype=torch.bool)
            keep[flat.argsort(descending=True)[:5]] = True
            torch.testing.assert_close(y[n, c].flatten(), torch.where(keep, flat, 0.0))


def test_topk_gradient_passes_through_kept_elements() -> None:
    x = torch.randn(3, 40, dtype=D64, requires_grad=True)
    y = ash_topk(x, 0.3)
    (gx,) = torch.autograd.grad((y * 2).sum(), x)
    torch.testing.assert_close(gx, 2.0 * (y != 0).to(D64))
    assert gradcheck(lambda x: ash_topk(x, 0.3), (x,))  # distinct values: mask is locally fixed


# ---------------------------------------------------------------------------------------------
# modules
# ---------------------------------------------------------------------------------------------
def test_module_init_from_k_and_defaults() -> None:
    m = ASH(k=0.1)
    assert m.z.item() == pytest.approx(scipy_norm.ppf(0.9), abs=1e-6)
    assert ASH().z.item() == 0.0 and ASH().alpha.item() == 1.0
    assert ASH(z_init=-0.4, alpha=3.0).z.item() == pytest.approx(-0.4)
    with pytest.raises(ValueError, match="either k or z_init"):
        ASH(k=0.1, z_init=1.0)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        ASH(k=1.5)
    with pytest.raises(ValueError, match="num_parameters"):
        ASH(num_parameters=0)
    assert is_activation(m) and is_activation(ASHTopK(0.1)) and is_activation(LASH())


def test_module_matches_functional_per_channel() -> None:
    m = ASH(k=0.2, alpha=2.0, num_parameters=3)
    with torch.no_grad():
        m.z.copy_(torch.tensor([0.1, 0.5, -0.3]))
        m.alpha.copy_(torch.tensor([1.0, 2.0, 3.0]))
    x = torch.randn(2, 3, 6, 6)
    want = ash_reference(x, m.z.view(1, 3, 1, 1), m.alpha.view(1, 3, 1, 1))
    torch.testing.assert_close(m(x), want)
    with pytest.raises(ValueError, match="num_parameters=3"):
        m(torch.randn(2, 4, 6, 6))


def test_state_dict_round_trip_and_keys() -> None:
    m = ASH(k=0.3, num_parameters=4)
    with torch.no_grad():
        m.z.add_(torch.arange(4.0))
    sd = m.state_dict()
    assert set(sd) == {"z", "alpha"}
    m2 = ASH(num_parameters=4)
    m2.load_state_dict(sd)
    x = torch.randn(2, 4, 5)
    torch.testing.assert_close(m2(x), m(x))
    f = FASH(0.1)
    assert set(f.state_dict()) == {"z", "alpha"} and not list(f.parameters())
    m2.reset_parameters()
    assert m2.z.eq(0).all()


def test_repr() -> None:
    assert repr(ASH(k=0.1)) == "ASH(k=0.1, alpha=1)"
    r = repr(ASH(z_init=0.5, alpha=2.0, num_parameters=8, dims=(2, 3), learn_alpha=False))
    assert r == "ASH(z_init=0.5, alpha=2, num_parameters=8, learn_alpha=False, dims=(2, 3))"
    assert "learn_z=False" in repr(FASH(0.2)) and "leak=0.01" in repr(LASH(0.2))
    assert repr(ASHTopK(0.1)) == "ASHTopK(k=0.1)"


def test_training_steps_change_z_and_alpha() -> None:
    torch.manual_seed(0)
    m = ASH(k=0.5, num_parameters=4)
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    x = torch.randn(16, 4, 8)
    target = torch.relu(x - 1.0)  # wants a higher threshold
    z0 = m.z.detach().clone()
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = (m(x) - target).square().mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert (m.z.detach() > z0).all()


def test_fash_has_no_parameters_and_lash_slope() -> None:
    f = FASH(k=0.1)
    assert not list(f.parameters())
    assert f.z.item() == pytest.approx(scipy_norm.ppf(0.9), abs=1e-6)
    lash = LASH(k=0.5, leak=0.1, alpha=50.0)
    x = torch.cat([torch.linspace(-5, -4, 50), torch.linspace(4, 5, 50)]).unsqueeze(0)
    x.requires_grad_()
    y = lash(x)
    torch.testing.assert_close(y[0, :50], 0.1 * x[0, :50], atol=1e-6, rtol=1e-5)
    (gx,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(gx[0, :50], torch.full((50,), 0.1), atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(gx[0, 50:], torch.ones(50), atol=1e-4, rtol=1e-3)
    assert len(list(lash.parameters())) == 2


def test_activity_tracking_and_layer_stats() -> None:
    m = ASH(k=0.1, alpha=5.0)
    x = torch.randn(32, 2048, generator=torch.Generator().manual_seed(8))
    m(x)
    assert m.last_active_fraction is None
    assert m.layer_stats() == pytest.approx({"z": scipy_norm.ppf(0.9), "alpha": 5.0}, abs=1e-6)
    m.track_activity = True
    y = m(x)
    assert y.requires_grad
    assert m.last_active_fraction == pytest.approx(0.1, abs=0.01)
    assert set(m.layer_stats()) == {"z", "alpha", "active_fraction"}


def test_inplace_only_without_grad() -> None:
    m = ASH(k=0.3, inplace=True)
    x = torch.randn(4, 10)
    expected = ash_reference(x, m.z.item(), 1.0)
    with torch.no_grad():
        out = m(x)
    assert out.data_ptr() == x.data_ptr()
    torch.testing.assert_close(x, expected)
    xg = torch.randn(4, 10, requires_grad=True)
    yg = m(xg)
    assert yg.data_ptr() != xg.data_ptr()
    yg.sum().backward()
    assert xg.grad is not None


def test_ash_topk_module() -> None:
    m = ASHTopK(0.25)
    x = torch.randn(4, 3, 8, generator=torch.Generator().manual_seed(9))
    y = m(x)
    assert ((y != 0).flatten(1).sum(1) == 6).all()
    assert not list(m.parameters())
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        ASHTopK(0.0)
