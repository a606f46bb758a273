"""Layer-wise noise injection (NoiseInjection, the ``agc_noise`` norm)."""

from __future__ import annotations

import pytest
import torch

from actlab.nn import AGC, AGCNoise, NoiseInjection
from actlab.registry import get_norm


def test_eval_is_identity_and_train_adds_noise():
    m = NoiseInjection(0.5)
    x = torch.randn(4, 3, 5, 5)
    m.eval()
    assert m(x) is x
    m.train()
    y = m(x)
    assert y.shape == x.shape and not torch.equal(y, x)


@pytest.mark.parametrize("sigma", [0.1, 2.0])
def test_element_noise_statistics(sigma):
    torch.manual_seed(0)
    x = torch.full((64, 16, 32, 32), 3.0)  # 1,048,576 draws: std error of the mean ~ 1e-3 σ
    noise = NoiseInjection(sigma)(x) - x
    assert abs(float(noise.mean())) < 5e-3 * sigma
    assert abs(float(noise.std()) / sigma - 1) < 5e-3
    # independent across elements: neighbouring positions uncorrelated
    a, b = noise[..., :-1].flatten(), noise[..., 1:].flatten()
    assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 5e-3


def test_channel_noise_is_shared_over_space_and_has_sigma_std():
    torch.manual_seed(1)
    x = torch.zeros(512, 64, 4, 4)
    noise = NoiseInjection(0.3, per="channel")(x)
    assert torch.equal(noise, noise[..., :1, :1].expand_as(noise))  # one draw per (n, c)
    draws = noise[..., 0, 0]
    assert abs(float(draws.mean())) < 0.3 * 5 / 181  # 5 standard errors of 32,768 draws
    assert abs(float(draws.std()) / 0.3 - 1) < 0.03


def test_seeded_by_torch_rng():
    x = torch.randn(2, 3, 4, 4)
    m = NoiseInjection(1.0)
    torch.manual_seed(7)
    a = m(x)
    torch.manual_seed(7)
    assert torch.equal(m(x), a)


def test_gradient_passes_through_unchanged():
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    for per in ("element", "channel"):
        (gx,) = torch.autograd.grad(NoiseInjection(0.7, per=per)(x), x, g)
        assert torch.equal(gx, g)


def test_agc_noise_norm_equals_agc_plus_noise():
    layer = get_norm("agc_noise", 4, sigma=0.2)
    assert isinstance(layer, AGCNoise) and layer.sigma == 0.2
    ref = AGC(4)
    ref.load_state_dict(layer.state_dict())  # same keys as AGC
    h = torch.randn(2, 4, 5, 5)
    layer.eval()
    assert torch.equal(layer(h), ref(h))
    layer.train()
    torch.manual_seed(3)
    out = layer(h)
    torch.manual_seed(3)
    expected = ref(h) + 0.2 * torch.randn(2, 4, 5, 5)
    assert torch.allclose(out, expected, atol=1e-6)
    # parameter gradients are those of AGC (the noise is additive)
    layer.zero_grad()
    ref.zero_grad()
    g = torch.randn(2, 4, 5, 5)
    (layer(h) * g).sum().backward()
    (ref(h) * g).sum().backward()
    for (name, p), q in zip(layer.named_parameters(), ref.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name


@pytest.mark.parametrize("kwargs, msg", [
    ({"sigma": -1.0}, "sigma must be a finite float >= 0"),
    ({"sigma": float("nan")}, "sigma must be a finite float >= 0"),
    ({"per": "pixel"}, "noise per must be one of"),
])
def test_bad_arguments(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        NoiseInjection(**kwargs)
    with pytest.raises(ValueError, match=msg):
        AGCNoise(4, **kwargs)


def test_zero_sigma_is_identity_in_training():
    x = torch.randn(2, 3, 4)
    assert torch.equal(NoiseInjection(0.0)(x), x)
