"""GEMS (Deep Control's gradients normalised by the non-saturated points) against naive sums."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from actlab.nn import AGC
from actlab.train import TrainConfig
from actlab.train.gems import GEMS


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(),
                         nn.Linear(6, 3)).double()


def test_mlp_matches_per_sample_sum_over_active_points():
    """GEMS grad of a ReLU-gated row = Σ of per-sample gradients / number of active samples."""
    model = _mlp()
    x = torch.randn(16, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (16,))
    params = list(model.parameters())
    # naive: per-sample gradients, summed, divided by the count of samples where the unit fires
    per_sample = [torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), params)
                  for i in range(len(x))]
    sums = [sum(g[k] for g in per_sample) for k in range(len(params))]
    with torch.no_grad():
        h1 = model[0](x)
        h2 = model[2](torch.relu(h1))
    a1 = (h1 > 0).sum(0).double().clamp(min=1)
    a2 = (h2 > 0).sum(0).double().clamp(min=1)
    expected = [sums[0] / a1[:, None], sums[1] / a1, sums[2] / a2[:, None], sums[3] / a2,
                sums[4] / len(x), sums[5] / len(x)]  # the head has no ReLU: plain mean

    gems = GEMS(model, per="channel", floor=1e-6)
    F.cross_entropy(model(x), y).backward()
    gems.rescale_()
    for p, e in zip(params, expected, strict=True):
        assert torch.allclose(p.grad, e, atol=1e-12, rtol=1e-10)


def _conv_net(norm: bool) -> nn.Sequential:
    torch.manual_seed(1)
    layers = [nn.Conv2d(2, 4, 3, padding=1)]
    if norm:
        layers.append(AGC(4))
    layers += [nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1, bias=False), nn.ReLU6(),
               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3)]
    return nn.Sequential(*layers).double()


@pytest.mark.parametrize("per", ["channel", "layer"])
def test_conv_scales_match_masks_of_a_hand_written_forward(per):
    model = _conv_net(norm=True)
    conv1, agc, conv2 = model[0], model[1], model[3]
    x = torch.randn(3, 2, 6, 6, dtype=torch.float64)
    y = torch.tensor([0, 2, 1])
    # plain gradients and the non-saturated masks from a functional forward
    F.cross_entropy(model(x), y).backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    with torch.no_grad():
        h1 = F.conv2d(x, conv1.weight, conv1.bias, padding=1)
        m = h1.mean(dim=(2, 3), keepdim=True)
        a1 = (h1 - agc.lam.view(1, -1, 1, 1) * m) * agc.weight.view(1, -1, 1, 1)
        a1 = a1 + agc.bias.view(1, -1, 1, 1)
        h2 = F.conv2d(torch.relu(a1), conv2.weight, None, padding=1)
        live1, live2 = a1 > 0, (h2 > 0) & (h2 < 6)
    floor = 0.05
    if per == "channel":
        f1 = live1.double().mean(dim=(0, 2, 3))
        f2 = live2.double().mean(dim=(0, 2, 3))
    else:
        f1 = live1.double().mean().expand(4)
        f2 = live2.double().mean().expand(5)
    s1, s2 = 1 / f1.clamp(min=floor), 1 / f2.clamp(min=floor)
    expected = {
        "0.weight": plain["0.weight"] * s1.view(-1, 1, 1, 1), "0.bias": plain["0.bias"] * s1,
        "1.lam": plain["1.lam"] * s1, "1.weight": plain["1.weight"] * s1,
        "1.bias": plain["1.bias"] * s1, "3.weight": plain["3.weight"] * s2.view(-1, 1, 1, 1),
        "7.weight": plain["7.weight"], "7.bias": plain["7.bias"],
    }
    gems = GEMS(model, per=per, floor=floor)
    F.cross_entropy(model(x), y).backward()
    gems.rescale_()
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, expected[name], atol=1e-12, rtol=1e-10), name
    assert s1.max() > 1 and s2.max() > 1  # the test exercises an actual rescale


def test_transposed_conv_scales_output_channels():
    torch.manual_seed(2)
    model = nn.Sequential(nn.ConvTranspose2d(4, 6, 3, groups=2), nn.ReLU()).double()
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    model(x).square().sum().backward()
    plain = model[0].weight.grad.clone()
    model.zero_grad()
    with torch.no_grad():
        frac = (model(x) > 0).double().mean(dim=(0, 2, 3)).clamp(min=0.01)
    gems = GEMS(model)
    model(x).square().sum().backward()
    gems.rescale_()
    # weight (C_in=4, C_out/groups=3, k, k); output channel of [i, j] is (i // 2) * 3 + j
    expected = plain.clone()
    for i in range(4):
        for j in range(3):
            expected[i, j] /= frac[(i // 2) * 3 + j]
    assert torch.allclose(model[0].weight.grad, expected, atol=1e-12)


def test_floor_eval_mode_reset_and_remove():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU()).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
        model[0].bias.zero_()
    x = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0]], dtype=torch.float64)
    gems = GEMS(model, floor=0.5)
    model.eval()
    model(x)
    assert gems.fractions() == {}  # eval-mode passes are not counted
    model.train()
    model(x).sum().backward()
    assert torch.equal(gems.fractions()[model[0]], torch.tensor([1.0, 0.0], dtype=torch.float64))
    g = model[0].weight.grad.clone()
    gems.rescale_()
    assert torch.equal(model[0].weight.grad, g)  # row 0: f = 1; row 1: grad 0 anyway
    assert gems.fractions() == {}
    gems.remove()
    model(x)
    assert gems.fractions() == {} and not model[0]._forward_hooks and not model[1]._forward_hooks


@pytest.mark.parametrize("kwargs, msg", [
    ({"per": "filter"}, "per must be one of"), ({"floor": 0.0}, "floor must be a float in"),
    ({"floor": 2.0}, "floor must be a float in"),
])
def test_bad_arguments(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        GEMS(nn.Linear(1, 1), **kwargs)


def test_train_config_setting():
    assert TrainConfig().gems == "none"
    assert TrainConfig(gems="layer", gems_floor=0.1).gems_floor == 0.1
    with pytest.raises(ValueError, match="TrainConfig.gems must be"):
        TrainConfig(gems="yes")
    with pytest.raises(ValueError, match="TrainConfig.gems_floor must be"):
        TrainConfig(gems_floor=0)


def test_train_model_with_gems_changes_the_run_and_leaves_no_hooks():
    from actlab.train import train_model

    torch.manual_seed(0)
    x = torch.randn(64, 1, 6, 6)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()
    splits = _splits(x, y)
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.05, device="cpu", log_layer_stats=False)
    runs = {}
    for gems in ("none", "channel"):
        torch.manual_seed(3)
        model = nn.Sequential(nn.Conv2d(1, 4, 3), AGC(4), nn.ReLU(), nn.Flatten(),
                              nn.Linear(64, 2))
        res = train_model(model, splits, cfg.replace(gems=gems), progress=False)
        runs[gems] = res.history[-1]["train_loss"]
        assert all(not m._forward_hooks for m in model.modules())
    assert runs["none"] != runs["channel"]


def _splits(x: torch.Tensor, y: torch.Tensor):
    from types import SimpleNamespace

    from torch.utils.data import TensorDataset

    return SimpleNamespace(
        train=TensorDataset(x[:48], y[:48]), val=TensorDataset(x[48:56], y[48:56]),
        test=TensorDataset(x[56:], y[56:]), num_classes=2, task="classification",
    )


@pytest.mark.parametrize("norm", ["bn", "agc", "agc_act", "agc_noise"])
def test_zoo_model_pairs_every_relu_gated_conv_with_its_norm(norm):
    from actlab.registry import MODELS

    torch.manual_seed(0)
    model = MODELS.build("tiny_cnn", num_classes=10, norm=norm)
    gems = GEMS(model)
    model(torch.randn(4, 1, 8, 8)).sum().backward()
    fractions = gems.fractions()
    blocks = [model.features.conv1, model.features.conv2, model.features.conv3]
    assert set(fractions) == {b.conv for b in blocks}  # the linear head is not gated
    for b in blocks:
        assert gems._entries[id(b.conv)].norms == [b.norm]
        assert float(fractions[b.conv].min()) > 0 and float(fractions[b.conv].max()) < 1
    gems.remove()
