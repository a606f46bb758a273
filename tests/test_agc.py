"""Tests for AGC (Deep Control automatic gain control): functional ops and modules."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import gradcheck

from actlab.bench.measure import saved_tensor_bytes
from actlab.functional.agc import (
    agc,
    agc_act,
    agc_act_reference,
    agc_reference,
    scaled_lr,
)
from actlab.nn.agc import AGC, AGCAct
from actlab.registry import is_norm

MODES = ("mean", "window", "median")


def _params(c: int, dtype=torch.float64, seed: int = 0, requires_grad: bool = True):
    g = torch.Generator().manual_seed(seed)
    lam = torch.rand(c, generator=g, dtype=dtype) + 0.25
    gamma = torch.randn(c, generator=g, dtype=dtype)
    gamma = torch.where(gamma.abs() < 0.2, gamma.sign() * 0.5 + (gamma == 0) * 0.5, gamma)
    beta = torch.randn(c, generator=g, dtype=dtype)
    return [p.requires_grad_(requires_grad) for p in (lam, gamma, beta)]


def _distinct(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """float64 input whose values are pairwise ≥ 0.1 apart (safe for median gradcheck)."""
    g = torch.Generator().manual_seed(seed)
    n = torch.Size(shape).numel()
    return (torch.randperm(n, generator=g).double() * 0.1 - 0.05 * n).view(shape)


# ------------------------------------------------------------------------------------------------
# forward values
# ------------------------------------------------------------------------------------------------
def test_mean_mode_matches_formula_written_out() -> None:
    h = torch.randn(3, 2, 4, 5, dtype=torch.float64)
    lam, gamma, beta = _params(2, requires_grad=False)
    out = agc(h, lam, gamma, beta)
    for n, c in itertools.product(range(3), range(2)):
        m = h[n, c].sum() / h[n, c].numel()
        expected = (h[n, c] - lam[c] * m) * gamma[c] + beta[c]
        torch.testing.assert_close(out[n, c], expected)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(2, 3, 7), (2, 3, 5, 6), (2, 3, 3, 4, 5)])
def test_equals_reference(mode: str, shape: tuple[int, ...]) -> None:
    h = torch.randn(*shape, dtype=torch.float64)
    params = _params(3, requires_grad=False)
    torch.testing.assert_close(agc(h, *params, mode=mode), agc_reference(h, *params, mode=mode))


def _naive_window_mean(h: torch.Tensor, window: int) -> torch.Tensor:
    """Loop over every position and average the in-bounds neighbours."""
    r = window // 2
    spatial = h.shape[2:]
    out = torch.empty_like(h)
    for pos in itertools.product(*(range(s) for s in spatial)):
        bounds = zip(pos, spatial, strict=True)
        sl = tuple(slice(max(p - r, 0), min(p + r + 1, s)) for p, s in bounds)
        block = h[(slice(None), slice(None), *sl)]
        out[(slice(None), slice(None), *pos)] = block.flatten(2).mean(-1)
    return out


@pytest.mark.parametrize(
    "shape, window",
    [
        ((2, 2, 6), 3), ((1, 2, 4, 5), 3), ((1, 2, 5, 4), 5), ((1, 2, 3, 4, 3), 3),
        ((1, 1, 2, 2, 3), 5),
    ],
)
def test_window_mode_equals_naive_loop(shape: tuple[int, ...], window: int) -> None:
    h = torch.randn(*shape, dtype=torch.float64)
    lam, gamma, beta = _params(shape[1], requires_grad=False)
    m = _naive_window_mean(h, window)
    view = (1, -1) + (1,) * (h.dim() - 2)
    expected = (h - lam.view(view) * m) * gamma.view(view) + beta.view(view)
    torch.testing.assert_close(agc(h, lam, gamma, beta, mode="window", window=window), expected)


def test_median_mode_uses_the_lower_middle_value() -> None:
    h = torch.tensor([[[4.0, 1.0, 3.0, 2.0]], [[5.0, -1.0, 0.0, 9.0]]])  # (2, 1, 4)
    out = agc(h, 1.0, None, None, mode="median")
    torch.testing.assert_close(out, h - torch.tensor([2.0, 0.0]).view(2, 1, 1))
    h_odd = torch.tensor([[[7.0, 1.0, 3.0]]])
    torch.testing.assert_close(agc(h_odd, 0.5, 2.0, 1.0, mode="median"), (h_odd - 1.5) * 2 + 1)


def test_defaults_subtract_the_whole_mean() -> None:
    h = torch.randn(4, 3, 8, 8)
    out = agc(h)
    torch.testing.assert_close(out.mean((2, 3)), torch.zeros(4, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(out, h - h.mean((2, 3), keepdim=True))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_finite_and_close(dtype: torch.dtype) -> None:
    h = torch.randn(2, 3, 8, 8) * 4 + 2
    lam, gamma, beta = (p.float() for p in _params(3, requires_grad=False))
    hl = h.to(dtype).requires_grad_()
    for fn in (agc, agc_act):
        out = fn(hl, lam, gamma, beta)
        assert out.dtype == dtype
        assert torch.isfinite(out).all()
        ref = fn(hl.detach().float(), lam, gamma, beta)
        torch.testing.assert_close(out.float(), ref, atol=0.1, rtol=0.02)
        out.float().square().sum().backward()
        assert hl.grad is not None and hl.grad.dtype == dtype and torch.isfinite(hl.grad).all()
        hl.grad = None


# ------------------------------------------------------------------------------------------------
# gradients
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(2, 3, 5), (2, 3, 3, 4), (1, 2, 2, 3, 3)])
def test_gradcheck_all_modes(mode: str, shape: tuple[int, ...]) -> None:
    h = _distinct(shape).requires_grad_()
    params = _params(shape[1])
    assert gradcheck(lambda *a: agc(*a, mode=mode), (h, *params))


def test_mean_backward_equals_autograd_of_reference() -> None:
    h = torch.randn(3, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    params = _params(4)
    grad = torch.randn(3, 4, 5, 6, dtype=torch.float64)
    got = torch.autograd.grad(agc(h, *params), (h, *params), grad)
    ref = torch.autograd.grad(agc_reference(h, *params), (h, *params), grad)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b)


def test_mean_backward_with_partial_requires_grad() -> None:
    h = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    lam, gamma, beta = _params(3, requires_grad=False)
    gamma.requires_grad_()
    grad = torch.randn_like(h)
    got = torch.autograd.grad(agc(h, lam, gamma, beta), (h, gamma), grad)
    ref = torch.autograd.grad(agc_reference(h, lam, gamma, beta), (h, gamma), grad)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b)


# ------------------------------------------------------------------------------------------------
# batch independence and train/eval
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_sample_output_and_gradient_do_not_depend_on_the_batch(mode: str) -> None:
    torch.manual_seed(0)
    layer = AGC(3, mode=mode).double()
    with torch.no_grad():
        layer.lam.uniform_(0.2, 1.0)
        layer.weight.normal_()
        layer.bias.normal_()
    x0 = torch.randn(1, 3, 6, 6, dtype=torch.float64)

    def first_sample(batch_rest: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([x0, batch_rest]).requires_grad_()
        out = layer(x)
        out.square().sum().backward()
        return out[0].detach(), x.grad[0]

    out_a, grad_a = first_sample(torch.randn(3, 3, 6, 6, dtype=torch.float64))
    out_b, grad_b = first_sample(torch.randn(5, 3, 6, 6, dtype=torch.float64) * 10 + 3)
    torch.testing.assert_close(out_a, out_b)
    torch.testing.assert_close(grad_a, grad_b)
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    train_out = layer.train()(x)
    eval_out = layer.eval()(x)
    assert torch.equal(train_out, eval_out)
    assert list(layer.buffers()) == []


def test_batch_size_one_trains_a_tiny_conv_net() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), AGC(4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1), AGCAct(4),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1),
    )
    x = torch.randn(1, 1, 8, 8)
    target = torch.tensor([[2.0]])
    opt = torch.optim.SGD(net.parameters(), lr=scaled_lr(0.05, 1))
    losses = []
    for _ in range(25):
        loss = F.mse_loss(net(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(p.grad is not None for p in net.parameters())


# ------------------------------------------------------------------------------------------------
# saved tensors
# ------------------------------------------------------------------------------------------------
def test_mean_mode_saves_one_input_sized_tensor() -> None:
    n, c = 4, 8
    h = torch.randn(n, c, 16, 16, requires_grad=True)
    params = [p.float() for p in _params(c)]
    saved = saved_tensor_bytes(lambda: agc(h, *params), exclude=tuple(params))
    small = n * c * 8  # the (N, C) means, generously
    assert h.nbytes <= saved <= h.nbytes + small
    saved_ref = saved_tensor_bytes(lambda: agc_reference(h, *params), exclude=tuple(params))
    # autograd of the naive (linear) formula also keeps one input-sized tensor, (h − λm) for γ
    assert saved_ref >= h.nbytes


@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
def test_fused_agc_act_saves_only_its_output(act: str) -> None:
    n, c = 4, 8
    h = torch.randn(n, c, 16, 16, requires_grad=True)
    params = [p.float() for p in _params(c)]
    outs: list[torch.Tensor] = []

    def run() -> torch.Tensor:
        y = agc_act(h, *params, act=act)
        outs.append(y)
        return y

    saved = saved_tensor_bytes(run, exclude=(h, *params))
    assert outs[0].nbytes <= saved <= outs[0].nbytes + n * c * 8 + 4 * c * 8
    unfused = saved_tensor_bytes(
        lambda: agc_act_reference(h, *params, act=act), exclude=(h, *params)
    )
    assert unfused >= 2 * h.nbytes


# ------------------------------------------------------------------------------------------------
# fused AGC + activation
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("act, slope", [("relu", 0.0), ("leaky_relu", 0.1), ("leaky_relu", 0.01)])
def test_agc_act_equals_act_of_agc_forward_and_backward(act: str, slope: float) -> None:
    torch.manual_seed(1)
    h = torch.randn(3, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    params = _params(4, seed=1)
    kw = {"negative_slope": slope} if act == "leaky_relu" else {}
    y = agc_act(h, *params, act=act, **kw)
    u = agc_reference(h, *params)
    y_ref = torch.relu(u) if act == "relu" else F.leaky_relu(u, slope)
    torch.testing.assert_close(y, y_ref)
    grad = torch.randn_like(y)
    got = torch.autograd.grad(y, (h, *params), grad)
    ref = torch.autograd.grad(y_ref, (h, *params), grad)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
def test_agc_act_gradcheck(act: str) -> None:
    h = _distinct((2, 3, 3, 4), seed=2).requires_grad_()
    params = _params(3, seed=2)
    assert gradcheck(lambda *a: agc_act(*a, act=act, negative_slope=0.2), (h, *params))


def test_agc_act_tiny_gamma_is_clamped_and_still_gets_gradient() -> None:
    h = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    lam = torch.ones(2, dtype=torch.float64)
    gamma = torch.tensor([0.0, -1e-9], dtype=torch.float64, requires_grad=True)
    beta = torch.zeros(2, dtype=torch.float64)
    y = agc_act(h, lam, gamma, beta, act="leaky_relu", negative_slope=0.1, eps=1e-3)
    u = h - h.mean((2, 3), keepdim=True)
    scale = torch.tensor([1e-3, -1e-3], dtype=torch.float64).view(1, 2, 1, 1)
    torch.testing.assert_close(y, F.leaky_relu(u * scale, 0.1))
    y.sum().backward()
    assert torch.isfinite(gamma.grad).all() and (gamma.grad != 0).all()


# ------------------------------------------------------------------------------------------------
# modules
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 3, 7), (2, 3, 4, 5), (2, 3, 2, 3, 4)])
def test_module_is_a_drop_in_for_batch_norm_1d_2d_3d(shape: tuple[int, ...]) -> None:
    layer = AGC(3, dim=len(shape) - 2)
    x = torch.randn(*shape)
    torch.testing.assert_close(layer(x), x - x.mean(tuple(range(2, len(shape))), keepdim=True))
    assert is_norm(layer) and is_norm(AGCAct(3))


def test_module_matches_functional_and_fused_module() -> None:
    torch.manual_seed(0)
    layer = AGC(3, mode="window", window=5, lam_init=0.5)
    with torch.no_grad():
        layer.weight.uniform_(0.5, 2.0)
        layer.bias.normal_()
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(
        layer(x), agc(x, layer.lam, layer.weight, layer.bias, mode="window", window=5)
    )
    fused = AGCAct(3, lam_init=0.5)
    fused.load_state_dict(layer.state_dict())
    plain = AGC(3, lam_init=0.5)
    plain.load_state_dict(layer.state_dict())
    torch.testing.assert_close(fused(x), torch.relu(plain(x)))


def test_state_dict_keys_and_round_trip() -> None:
    layer = AGC(4)
    assert list(layer.state_dict()) == ["lam", "weight", "bias"]
    assert {n for n, _ in layer.named_parameters()} == {"lam", "weight", "bias"}
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_()
    other = AGC(4)
    other.load_state_dict(layer.state_dict())
    x = torch.randn(2, 4, 5, 5)
    assert torch.equal(other(x), layer(x))
    fixed = AGC(4, learn_lam=False, affine=False)
    assert list(fixed.state_dict()) == ["lam"] and list(fixed.parameters()) == []
    assert list(AGCAct(4).state_dict()) == ["lam", "weight", "bias"]
    other.reset_parameters()
    assert torch.equal(other.lam, torch.ones(4)) and torch.equal(other.bias, torch.zeros(4))


def test_repr_and_layer_stats() -> None:
    assert repr(AGC(8)) == "AGC(8)"
    assert (
        repr(AGC(8, mode="window", window=5, lam_init=0.5, affine=False, learn_lam=False, dim=2))
        == "AGC(8, mode='window', window=5, lam_init=0.5, affine=False, learn_lam=False, dim=2)"
    )
    assert repr(AGCAct(8, act="leaky_relu", negative_slope=0.1)) == (
        "AGCAct(8, act='leaky_relu', negative_slope=0.1)"
    )
    layer = AGC(2, lam_init=0.25)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([1.0, 3.0]))
    assert layer.layer_stats() == {"lambda": 0.25, "gamma": 2.0}
    assert AGC(2, affine=False).layer_stats() == {"lambda": 1.0, "gamma": 1.0}


def test_bn_to_agc_conversion_copies_affine() -> None:
    from actlab.convert import convert

    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 3.0]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
    model = convert(nn.Sequential(nn.Conv2d(1, 3, 3), bn), norm=AGC)
    assert isinstance(model[1], AGC)
    assert torch.equal(model[1].weight, bn.weight.detach())
    assert torch.equal(model[1].bias, bn.bias.detach())


def test_training_steps_change_lambda() -> None:
    torch.manual_seed(0)
    layer = AGC(2, lam_init=0.5)
    x = torch.randn(4, 2, 5, 5) + 3.0
    opt = torch.optim.SGD(layer.parameters(), lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        layer(x).square().mean().backward()
        opt.step()
    assert (layer.lam > 0.5).all()  # subtracting more of the (positive) mean lowers the loss


# ------------------------------------------------------------------------------------------------
# errors and scaled_lr
# ------------------------------------------------------------------------------------------------
def test_error_messages() -> None:
    x = torch.randn(2, 4, 5, 5)
    with pytest.raises(ValueError, match="at least one spatial dim"):
        agc(torch.randn(2, 4))
    with pytest.raises(ValueError, match="at least one spatial dim"):
        AGC(4)(torch.randn(2, 4))
    with pytest.raises(ValueError, match="dim=1\\) expects a 3-d input"):
        AGC(4, dim=1)(x)
    with pytest.raises(ValueError, match=r"\(C,\) = \(4,\) .* got \(3,\) \(num_features=3"):
        AGC(3)(x)
    with pytest.raises(ValueError, match="dim must be None or"):
        AGC(4, dim=0)
    with pytest.raises(ValueError, match="unknown AGC mode 'foo'"):
        AGC(4, mode="foo")
    with pytest.raises(ValueError, match="unknown AGC mode 'foo'"):
        agc(x, mode="foo")
    with pytest.raises(ValueError, match="window must be an odd"):
        AGC(4, window=4)
    with pytest.raises(ValueError, match="window must be an odd"):
        agc(x, mode="window", window=2)
    with pytest.raises(ValueError, match="1-, 2- or 3-d"):
        agc(torch.randn(1, 1, 2, 2, 2, 2), mode="window")
    with pytest.raises(ValueError, match=r"gamma must have shape \(C,\) = \(4,\)"):
        agc(x, gamma=torch.ones(3))
    with pytest.raises(TypeError, match="floating-point"):
        agc(torch.ones(2, 4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="num_features must be a positive int"):
        AGC(0)
    with pytest.raises(ValueError, match="unknown act 'gelu'"):
        AGCAct(4, act="gelu")
    with pytest.raises(ValueError, match="negative_slope must be > 0"):
        agc_act(x, act="leaky_relu", negative_slope=0.0)
    with pytest.raises(ValueError, match="negative_slope must be > 0"):
        AGCAct(4, act="leaky_relu", negative_slope=-0.1)
    with pytest.raises(ValueError, match="eps must be > 0"):
        AGCAct(4, eps=0.0)


def test_scaled_lr() -> None:
    assert scaled_lr(0.001, 64) == pytest.approx(0.064)
    assert scaled_lr(0.1, 1) == 0.1
    for bad in [(0.0, 4), (-1.0, 4), (0.1, 0), (0.1, 2.5), (True, 3)]:
        with pytest.raises(ValueError):
            scaled_lr(*bad)


def test_bn_to_agc_by_name_keeps_conv_weights_and_makes_the_model_batch_independent() -> None:
    from actlab.convert import convert

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 2, 3),
                          nn.BatchNorm2d(2))
    conv_weights = [m.weight.detach().clone() for m in model if isinstance(m, nn.Conv2d)]
    convert(model, norm="agc")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert [type(m) for m in model if not isinstance(m, (nn.Conv2d, nn.ReLU))] == [AGC, AGC]
    for w, m in zip(conv_weights, [m for m in model if isinstance(m, nn.Conv2d)], strict=True):
        assert torch.equal(w, m.weight)
    x = torch.randn(4, 1, 9, 9)
    other = torch.cat([x[:1], torch.randn(3, 1, 9, 9)])
    torch.testing.assert_close(model(x)[:1], model(other)[:1], rtol=0, atol=1e-6)
