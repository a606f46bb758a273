"""Initialisation schemes: He / Xavier statistics against their formulas, and the Deep Control
identity (Dirac) initialisation with its "except the first conv after a pooling" rule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from actlab.models import create_model, dirac_layers, init_weights
from actlab.models.init import is_identity_candidate


def names_of(model: nn.Module, modules: list[nn.Module]) -> set[str]:
    ids = {id(m) for m in modules}
    return {n for n, m in model.named_modules() if id(m) in ids}


def is_dirac(conv: nn.Conv2d) -> bool:
    ref = torch.zeros_like(conv.weight)
    nn.init.dirac_(ref)
    return torch.equal(conv.weight, ref)


def test_vgg_dirac_skips_first_conv_after_each_pool():
    model = create_model("vgg16_bn", width=0.0625, init="dirac")
    expected = {f"features.conv{s}.conv" for s in
                ("1_2", "2_2", "3_2", "3_3", "4_2", "4_3", "5_2", "5_3")}
    assert names_of(model, dirac_layers(model)) == expected
    convs = dict(model.named_modules())
    for name in expected:
        assert is_dirac(convs[name])
    # conv5_1 maps 32 -> 32 channels (a candidate) but follows pool4: He, not identity
    first_after_pool = convs["features.conv5_1.conv"]
    assert is_identity_candidate(first_after_pool) and not is_dirac(first_after_pool)
    # channel-changing convs are never identities
    assert not is_dirac(convs["features.conv2_1.conv"])


def test_identity_conv_block_passes_input_unchanged_before_nonlinearity():
    torch.manual_seed(0)
    model = create_model("vgg16_bn", width=0.0625, norm="none", init="dirac")
    block = model.features.conv3_2  # conv -> norm (identity) -> act
    x = torch.randn(3, block.conv.in_channels, 5, 7)
    torch.testing.assert_close(block.norm(block.conv(x)), x, rtol=0, atol=1e-6)
    torch.testing.assert_close(block(x), torch.relu(x), rtol=0, atol=1e-6)
    # with batch norm (eval, fresh statistics) the block is x / sqrt(1 + eps) before the act
    model = create_model("vgg16_bn", width=0.0625, norm="bn", init="dirac").eval()
    block = model.features.conv3_2
    eps = block.norm.eps
    torch.testing.assert_close(block.norm(block.conv(x)), x / math.sqrt(1 + eps),
                               rtol=1e-6, atol=1e-6)
    # the first conv after a pooling does not pass its input through
    block = model.features.conv5_1
    x = torch.randn(3, block.conv.in_channels, 4, 4)
    assert not torch.allclose(block.conv(x), x, atol=1e-3)


def test_segnet_dirac_treats_unpooling_as_pooling():
    model = create_model("segnet", width=0.0625, num_classes=3, init="dirac")
    chosen = names_of(model, dirac_layers(model))
    encoder = {"encoder.0.convs.1.conv", "encoder.1.convs.1.conv", "encoder.2.convs.1.conv",
               "encoder.2.convs.2.conv", "encoder.3.convs.1.conv", "encoder.3.convs.2.conv",
               "encoder.4.convs.1.conv", "encoder.4.convs.2.conv"}
    decoder = {"decoder.0.convs.1.conv", "decoder.0.convs.2.conv", "decoder.1.convs.1.conv",
               "decoder.2.convs.1.conv"}
    assert chosen == encoder | decoder
    modules = dict(model.named_modules())
    for i in range(5):  # the first conv of every decoder stage follows an unpooling
        conv = modules[f"decoder.{i}.convs.0.conv"]
        assert is_identity_candidate(conv) and not is_dirac(conv)
    first = modules["encoder.4.convs.0.conv"]  # 32 -> 32 right after pool 4
    assert is_identity_candidate(first) and not is_dirac(first)


class OutOfOrder(nn.Module):
    """Registration order conv_a, conv_b, pool; execution order conv_a, pool, conv_b."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(3, 4, 3, padding=1)
        self.conv_b = nn.Conv2d(4, 4, 3, padding=1)
        self.conv_c = nn.Conv2d(4, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return self.conv_c(self.conv_b(self.pool(self.conv_a(x))))


def test_dirac_uses_execution_order_with_example_input():
    model = OutOfOrder()
    assert names_of(model, dirac_layers(model)) == {"conv_b", "conv_c"}
    example = torch.randn(1, 3, 8, 8)
    assert names_of(model, dirac_layers(model, example)) == {"conv_c"}
    init_weights(model, "dirac", example_input=example)
    assert is_dirac(model.conv_c) and not is_dirac(model.conv_b)
    assert model.training  # restored after the recording pass


def test_identity_candidate_rules():
    assert is_identity_candidate(nn.Conv2d(4, 4, 3, padding=1))
    assert not is_identity_candidate(nn.Conv2d(4, 4, 3, padding=0))
    assert not is_identity_candidate(nn.Conv2d(4, 4, 3, padding=1, stride=2))
    assert not is_identity_candidate(nn.Conv2d(4, 4, 3, padding=1, groups=4))
    assert not is_identity_candidate(nn.Conv2d(4, 8, 3, padding=1))
    assert not is_identity_candidate(nn.Conv2d(4, 4, 1))
    assert is_identity_candidate(nn.Conv1d(4, 4, 3, padding=1))


def test_he_normal_matches_fan_in_formula():
    torch.manual_seed(0)
    model = create_model("vgg16_bn", width=0.25, init="he")
    conv = model.features.conv5_2.conv  # 128 -> 128, 3x3
    fan_in = conv.in_channels * 9
    w = conv.weight.detach().double()
    assert abs(w.mean().item()) < 0.05 * math.sqrt(2 / fan_in)
    assert w.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.03)
    fc = model.classifier.fc
    assert fc.weight.std().item() == pytest.approx(math.sqrt(2 / fc.in_features), rel=0.15)
    assert torch.count_nonzero(fc.bias) == 0


def test_xavier_uniform_matches_bound():
    torch.manual_seed(0)
    model = create_model("vgg16_bn", width=0.25, init="xavier", norm="none")
    conv = model.features.conv5_2.conv
    fan_in = fan_out = conv.in_channels * 9
    bound = math.sqrt(6 / (fan_in + fan_out))
    w = conv.weight.detach()
    assert w.abs().max().item() <= bound
    assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.03)
    assert torch.count_nonzero(conv.bias) == 0  # no norm -> conv has a bias, zeroed


def test_init_is_reproducible_and_default_leaves_torch_init():
    torch.manual_seed(1)
    a = create_model("tiny_cnn", init="he").state_dict()
    torch.manual_seed(1)
    b = create_model("tiny_cnn", init="he").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(1)
    default = create_model("tiny_cnn").state_dict()
    torch.manual_seed(1)
    ref = nn.Conv2d(1, 16, 3, padding=1, bias=False)  # PyTorch's own init, same RNG draw
    torch.testing.assert_close(default["features.conv1.conv.weight"], ref.weight.detach())


@pytest.mark.parametrize("bad", ["kaiming", "", 3])
def test_unknown_scheme_is_rejected(bad):
    with pytest.raises(ValueError, match="init scheme"):
        init_weights(nn.Linear(2, 2), bad)
    with pytest.raises(ValueError, match="init scheme"):
        create_model("tiny_cnn", init=bad)


def test_dirac_network_trains_a_step():
    torch.manual_seed(0)
    model = create_model("vgg16_bn", width=0.0625, in_channels=1, init="dirac")
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    losses = []
    for _ in range(3):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
