"""The layers the three papers need are reachable by name, accept ``inplace=`` and are what
their names say (checked against the underlying formulas, not against the registry itself)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import actlab
from actlab.registry import ACTIVATIONS, get_act, is_activation

REQUIRED = [
    "relu", "leaky_relu", "prelu", "elu", "selu", "softplus", "gelu", "swish", "silu", "relu6",
    "mish", "sau", "sau_paper", "sau_zero_centred", "ash", "fash", "lash", "ash_topk",
]


@pytest.mark.parametrize("name", REQUIRED)
def test_required_activation_names_build_and_accept_inplace(name: str) -> None:
    module = get_act(name, inplace=False)
    assert is_activation(module), f"{name}: {type(module).__name__} not known to convert()"
    x = torch.randn(2, 3, 4, 4)
    y = module(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_registered_activation_accepts_inplace(name: str) -> None:
    get_act(name, inplace=True)


def _sau_exact(x: torch.Tensor, a: float, n: float) -> torch.Tensor:
    x = x.double()
    u = n * x
    return ((1 - a) / (2 * n) * math.sqrt(2 / math.pi) * torch.exp(-u * u / 2)
            + (1 + a) / 2 * x + (1 - a) / 2 * x * torch.erf(u / math.sqrt(2)))


def test_sau_names_select_formula_and_variant() -> None:
    x = torch.linspace(-2, 2, 41, dtype=torch.float64)
    a, n = 0.2, 1.5
    exact = get_act("sau", alpha=a, n=n).double()
    paper = get_act("sau_paper", alpha=a, n=n).double()
    zc = get_act("sau_zero_centred", alpha=a, n=n).double()
    gauss = 1 / (2 * n) * math.sqrt(2 / math.pi) * torch.exp(-(n * x) ** 2 / 2)
    torch.testing.assert_close(exact(x), _sau_exact(x, a, n))
    # the paper's Eq. 3 has 1/(2n) instead of (1-a)/(2n) on the Gaussian term
    torch.testing.assert_close(paper(x), _sau_exact(x, a, n) + a * gauss)
    # zero-centred: the Gaussian term is multiplied by x, so G(0) = 0
    torch.testing.assert_close(zc(x), _sau_exact(x, a, n) + (x - 1) * (1 - a) * gauss)
    assert zc(torch.zeros(1, dtype=torch.float64)).item() == 0.0


@pytest.mark.parametrize(
    ("name", "reference"),
    [("smooth_relu", F.relu), ("smooth_relu6", F.relu6), ("smooth_gelu", F.gelu),
     ("smooth_silu", F.silu), ("smooth_softplus", F.softplus)],
)
def test_smoothed_names_converge_to_the_activation(name: str, reference) -> None:
    x = torch.linspace(-3, 3, 61, dtype=torch.float64)
    sharp = get_act(name, n=1e4).double()
    torch.testing.assert_close(sharp(x), reference(x), atol=1e-4, rtol=0)
    blurred = get_act(name, n=1.0).double()
    assert (blurred(x) - reference(x)).abs().max() > 1e-3  # the smoothing is really applied


def test_ash_names_map_to_their_variants() -> None:
    ash = get_act("ash", k=0.1)
    assert ash.z.item() == pytest.approx(1.2815515655446004)
    assert set(dict(ash.named_parameters())) == {"z", "alpha"}
    assert list(get_act("fash", k=0.1).parameters()) == []
    x = torch.randn(4, 1000, dtype=torch.float64)
    kept = (get_act("ash_topk", k=0.1)(x) != 0).double().mean(dim=1)
    torch.testing.assert_close(kept, torch.full((4,), 0.1, dtype=torch.float64))
    lash = get_act("lash", k=0.5, leak=0.1, alpha=50.0).double()
    low = torch.full((1, 4), -5.0, dtype=torch.float64)
    low = torch.cat([low, torch.full((1, 4), 5.0, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(lash(low)[0, :4], 0.1 * low[0, :4], atol=1e-9, rtol=0)


def test_package_imports_register_models_and_datasets() -> None:
    assert "tiny_cnn" in actlab.MODELS and "digits" in actlab.DATASETS
