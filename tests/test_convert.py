"""convert(): activations (modules and functional calls) and norms, one module per call site."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from actlab.convert import ConversionError, convert


class SharedReLUBlock(nn.Module):
    """A ResNet-style block that calls one ReLU module at two places."""

    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + x)


class FunctionalNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 8)
        self.fc3 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x).relu() + torch.sigmoid(x).sum(-1, keepdim=True)


class Untraceable(nn.Module):
    def __init__(self, shared: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.ReLU()
        self.act2 = self.act if shared else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow: fx cannot trace this
            x = self.fc(x)
        return self.act2(self.act(x))


def _act_modules(model: nn.Module, cls: type[nn.Module]) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, cls)]


def _calls_per_module(model: nn.Module, cls: type[nn.Module], x: torch.Tensor) -> dict[int, int]:
    counts: dict[int, int] = {}
    handles = [
        m.register_forward_hook(lambda m, a, o: counts.__setitem__(id(m), counts.get(id(m), 0) + 1))
        for m in model.modules()
        if isinstance(m, cls)
    ]
    model(x)
    for h in handles:
        h.remove()
    return counts


def test_shared_relu_gets_one_module_per_call_site() -> None:
    torch.manual_seed(0)
    model = SharedReLUBlock()
    x = torch.randn(2, 4, 5, 5)
    out = convert(model, act="prelu")
    prelus = _act_modules(out, nn.PReLU)
    assert len(prelus) == 2
    assert prelus[0] is not prelus[1]
    assert prelus[0].weight.data_ptr() != prelus[1].weight.data_ptr()
    assert not _act_modules(out, nn.ReLU)
    counts = _calls_per_module(out, nn.PReLU, x)
    assert sorted(counts.values()) == [1, 1]
    # Each site owns its parameter: the gradients differ, so the two slopes would diverge.
    out(x).square().sum().backward()
    assert not torch.equal(prelus[0].weight.grad, prelus[1].weight.grad)


def test_functional_relu_calls_are_replaced_but_gates_are_kept() -> None:
    torch.manual_seed(0)
    model = FunctionalNet()
    x = torch.randn(5, 6)
    out = convert(model, act="elu", copy_model=True)
    assert isinstance(out, fx.GraphModule)
    assert len(_act_modules(out, nn.ELU)) == 3
    code = out.code
    assert "relu" not in code and "sigmoid" in code
    # Numerically: the converted model equals the same network written with ELU.
    expected = (
        F.elu(model.fc3(F.elu(model.fc2(F.elu(model.fc1(x))))))
        + torch.sigmoid(F.elu(model.fc2(F.elu(model.fc1(x))))).sum(-1, keepdim=True)
    )
    torch.testing.assert_close(out(x), expected)


def test_plain_model_is_converted_in_place_and_keeps_its_class() -> None:
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten())
    conv_weight = model[0].weight.detach().clone()
    with torch.no_grad():
        model[1].weight.fill_(2.0)
        model[1].bias.fill_(0.5)
    out = convert(model, act="gelu", norm="gn")
    assert out is model and isinstance(out, nn.Sequential)
    assert isinstance(out[2], nn.GELU) and isinstance(out[1], nn.GroupNorm)
    torch.testing.assert_close(out[0].weight, conv_weight)  # conv weights kept
    assert torch.all(out[1].weight == 2.0) and torch.all(out[1].bias == 0.5)  # affine kept
    assert out(torch.randn(2, 1, 5, 5)).shape == (2, 27)


def test_norm_conversion_uses_channel_count_and_dimensionality() -> None:
    model = nn.Sequential(nn.Conv1d(2, 6, 3), nn.BatchNorm1d(6), nn.ReLU())
    out = convert(model, norm="bn")  # BN1d -> registry "bn" built with dim=1
    assert isinstance(out[1], nn.BatchNorm1d) and out[1].num_features == 6
    assert isinstance(out[2], nn.ReLU)  # act=None leaves activations alone


def test_untraceable_model_falls_back_to_module_swap() -> None:
    model = Untraceable(shared=False)
    with pytest.warns(UserWarning, match="cannot be traced"):
        out = convert(model, act="elu")
    assert out is model and len(_act_modules(out, nn.ELU)) == 2


def test_untraceable_model_with_shared_call_sites_is_refused() -> None:
    model = Untraceable(shared=True)
    with pytest.raises(ConversionError, match="more than once"):
        convert(model, act="prelu", example_inputs=(torch.ones(1, 4),))


def test_inplace_flag_is_forwarded() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(inplace=True))
    out = convert(model, act="leaky_relu")
    assert out[1].inplace is True


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="nothing to convert"):
        convert(nn.Linear(2, 2))
    with pytest.raises(KeyError, match="unknown activation"):
        convert(nn.Sequential(nn.ReLU()), act="relux")
    with pytest.raises(TypeError, match="module instance"):
        convert(nn.Sequential(nn.ReLU()), act=nn.GELU())
