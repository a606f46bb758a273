"""Building blocks, argument checking and the registry functions of the model zoo."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from actlab.models import TASKS, create_model, list_models, model_task
from actlab.models._common import DropPath, make_act, make_divisible, make_norm
from actlab.models.densenet import DenseLayer
from actlab.models.mobilenet import InvertedResidual
from actlab.models.resnet import PreActBasicBlock, PreActBottleneck
from actlab.models.shufflenet import ShuffleUnit, channel_shuffle
from actlab.models.transformer import sinusoidal_positions
from actlab.registry import MODELS

RELU, BN = make_act("relu"), make_norm("bn")


# ------------------------------------------------------------------------------------ registry
def test_every_model_is_registered_with_a_task():
    names = list_models()
    assert {"vgg16_bn", "preact_resnet18", "resnet164", "preact_resnet_bottleneck", "wrn",
            "wrn28_10", "densenet121", "densenet_bc", "densenet_bc_100_12", "mobilenetv2",
            "shufflenetv2_0_5", "shufflenetv2_1_0", "shufflenetv2_2_0", "efficientnet_b0",
            "unet", "segnet", "transformer_seq2seq", "transformer_lm", "tiny_cnn", "mlp",
            "cnn1d", "small_resnet"} <= set(names)
    assert all(n in MODELS for n in names)
    assert all(model_task(n) in TASKS for n in names)
    assert list_models(task="segmentation") == ["classnet", "deeplabv3plus", "segnet", "unet"]
    assert sorted(list_models(task="lm") + list_models(task="seq2seq")) == [
        "transformer_base", "transformer_lm", "transformer_seq2seq"]


def test_every_model_has_a_docstring_and_accepts_the_common_arguments():
    for name in list_models():
        kwargs = {"num_classes": 7, "in_channels": 1, "act": "relu", "init": "dirac"}
        if model_task(name) not in ("seq2seq", "lm"):
            kwargs["norm"] = "bn"
        with torch.device("meta"):
            model = create_model(name, **kwargs)
        assert type(model).__doc__ and len(type(model).__doc__) > 40, name


def test_register_model_with_task():
    from actlab.models import register_model

    @register_model("zoo_test_seg_net", task="segmentation")
    def seg(num_classes: int = 2, in_channels: int = 3) -> nn.Module:
        return nn.Conv2d(in_channels, num_classes, 1)

    try:
        assert "zoo_test_seg_net" in list_models(task="segmentation")
        assert create_model("zoo_test_seg_net", num_classes=4).out_channels == 4
        with pytest.raises(KeyError, match="already registered"):
            register_model("zoo_test_seg_net", seg)
        with pytest.raises(ValueError, match="task"):
            register_model("zoo_test_other", seg, task="pose")
    finally:  # keep the global registry as other tests expect it
        MODELS._factories.pop("zoo_test_seg_net", None)


def test_create_model_errors_name_the_problem():
    with pytest.raises(KeyError, match="wrn"):
        create_model("wrn_28_10x")
    with pytest.raises(TypeError, match="'wrn'.*depht"):
        create_model("wrn", depht=10)
    with pytest.raises(ValueError, match="task"):
        list_models(task="pose")


@pytest.mark.parametrize(
    ("name", "kwargs", "error", "match"),
    [
        ("wrn", {"depth": 27}, ValueError, "6n \\+ 4"),
        ("preact_resnet_bottleneck", {"depth": 21}, ValueError, "9n \\+ 2"),
        ("densenet_bc", {"depth": 50}, ValueError, "6n \\+ 4"),
        ("small_resnet", {"depth": 9}, ValueError, "6n \\+ 2"),
        ("shufflenetv2", {"width": 0.75}, ValueError, "0.5, 1.0, 1.5, 2.0"),
        ("tiny_cnn", {"num_classes": 0}, ValueError, "num_classes"),
        ("tiny_cnn", {"num_classes": 2.5}, TypeError, "num_classes"),
        ("vgg16_bn", {"in_channels": True}, TypeError, "in_channels"),
        ("tiny_cnn", {"act": nn.ReLU()}, TypeError, "instance"),
        ("tiny_cnn", {"act": "relux"}, KeyError, "relu"),
        ("tiny_cnn", {"norm": "bnn"}, KeyError, "bn"),
        ("wrn", {"depth": 10, "widen": 1, "dropout": 1.5}, ValueError, "dropout"),
        ("transformer_lm", {"norm": "bn"}, ValueError, "'ln' or 'none'"),
        ("transformer_lm", {"d_model": 30, "nhead": 4}, ValueError, "divisible"),
        ("transformer_lm", {"vocab_size": 10, "num_classes": 11}, ValueError, "disagree"),
        ("cnn1d", {"length": 2}, ValueError, "too short"),
    ],
)
def test_bad_arguments(name, kwargs, error, match):
    with pytest.raises(error, match=match):
        create_model(name, **kwargs)


def test_state_dict_keys_are_stable_and_loadable():
    a, b = create_model("vgg16_bn", width=0.0625), create_model("vgg16_bn", width=0.0625)
    keys = list(a.state_dict())
    assert keys == list(b.state_dict())
    for k in ("features.conv1_1.conv.weight", "features.conv1_1.norm.running_mean",
              "features.conv5_3.norm.weight", "classifier.fc.weight"):
        assert k in keys
    b.load_state_dict(a.state_dict())
    lm = create_model("transformer_lm", vocab_size=9, d_model=8, nhead=2)
    assert not any("pe" in k.split(".") for k in lm.state_dict())  # constant buffer not saved


# ------------------------------------------------------------------------------------ blocks
def test_preact_basic_block_residual_semantics():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    block = PreActBasicBlock(8, 8, 1, RELU, BN).eval()
    assert block.shortcut is None
    nn.init.zeros_(block.conv2.weight)
    torch.testing.assert_close(block(x), x)  # identity shortcut, zero residual branch
    block = PreActBasicBlock(8, 16, 2, RELU, BN).eval()
    nn.init.zeros_(block.conv2.weight)
    # projection shortcut applied to the pre-activated input act(norm(x))
    torch.testing.assert_close(block(x), block.shortcut(torch.relu(block.norm1(x))))
    assert block(x).shape == (2, 16, 3, 3)


def test_preact_bottleneck_expands_four_times():
    block = PreActBottleneck(16, 8, 2, RELU, BN)
    assert block(torch.randn(2, 16, 8, 8)).shape == (2, 32, 4, 4)


def test_dense_layer_concatenates_growth_channels():
    layer = DenseLayer(6, 4, RELU, BN)
    x = torch.randn(2, 6, 5, 5)
    out = layer(x)
    assert out.shape == (2, 10, 5, 5)
    torch.testing.assert_close(out[:, :6], x)


def test_inverted_residual_uses_residual_only_when_shape_is_kept():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    unit = InvertedResidual(8, 8, 1, 6, RELU, BN).eval()
    last = unit.block[-1].norm
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    torch.testing.assert_close(unit(x), x)
    unit = InvertedResidual(8, 12, 1, 6, RELU, BN)
    assert not unit.use_residual and unit(x).shape == (2, 12, 6, 6)
    assert len(InvertedResidual(8, 8, 1, 1, RELU, BN).block) == 2  # t = 1: no expansion conv


def test_channel_shuffle_matches_explicit_permutation():
    x = torch.arange(12.0).view(1, 12, 1, 1)
    groups, per = 3, 4
    perm = [g * per + j for j in range(per) for g in range(groups)]
    assert channel_shuffle(x, groups).flatten().tolist() == [float(p) for p in perm]


def test_shuffle_unit_passes_half_the_channels_through():
    x = torch.randn(2, 8, 4, 4)
    unit = ShuffleUnit(8, 8, 1, RELU, BN)
    out = unit(x)
    torch.testing.assert_close(out[:, 0::2], x[:, :4])
    assert ShuffleUnit(8, 16, 2, RELU, BN)(x).shape == (2, 16, 2, 2)


def test_make_divisible():
    assert make_divisible(32 * 0.25) == 8
    assert make_divisible(6) == 8
    assert make_divisible(90) == 88
    assert make_divisible(1280) == 1280
    assert make_divisible(100, 8) == 104


def test_drop_path_drops_whole_samples_and_keeps_expectation():
    torch.manual_seed(0)
    dp = DropPath(0.25)
    x = torch.ones(4000, 3, 2, 2)
    y = dp(x)
    per_sample = y.view(4000, -1)
    assert set(per_sample.unique().tolist()) <= {0.0, torch.tensor(1 / 0.75).item()}
    assert (per_sample.min(1).values == per_sample.max(1).values).all()
    assert y.mean().item() == pytest.approx(1.0, abs=0.05)
    assert torch.equal(dp.eval()(x), x)


# ------------------------------------------------------------------------------- input sizes
def test_unet_output_size_equals_input_size():
    model = create_model("unet", width=0.0625, depth=3, num_classes=2).eval()
    for h, w in [(16, 16), (17, 23), (9, 40)]:
        assert model(torch.randn(1, 3, h, w)).shape == (1, 2, h, w)
    strict = create_model("unet", width=0.0625, depth=3, pad_input=False)
    assert strict(torch.randn(1, 3, 16, 24)).shape == (1, 2, 16, 24)
    with pytest.raises(ValueError, match="divisible by 8"):
        strict(torch.randn(1, 3, 17, 24))


def test_segnet_structure_and_sizes():
    model = create_model("segnet", width=0.0625, num_classes=5).eval()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 26  # 13 encoder + 13 decoder (the last is the classifier)
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 5 and all(p.return_indices for p in pools)
    assert sum(isinstance(m, nn.MaxUnpool2d) for m in model.modules()) == 5
    assert model(torch.randn(1, 3, 33, 47)).shape == (1, 5, 33, 47)
    with pytest.raises(ValueError, match="at least 32"):
        model(torch.randn(1, 3, 16, 64))


def test_segnet_decoder_upsamples_at_the_encoder_argmax():
    """The unpooled map is non-zero only where the encoder's max-pool took its maxima."""
    model = create_model("segnet", width=0.0625, num_classes=2).eval()
    x = torch.randn(1, 3, 32, 32)
    stage, dec = model.encoder[0], model.decoder[-1]
    y, idx, size = stage(x)
    up = dec.unpool(y, idx, output_size=size[-2:])
    full = stage.convs(x)
    mask = up != 0
    torch.testing.assert_close(up[mask], full[mask])
    assert mask.sum() <= y.numel()


def test_small_nets_accept_flat_and_channel_inputs():
    torch.manual_seed(0)
    m = create_model("cnn1d").eval()
    x = torch.randn(3, 40)
    torch.testing.assert_close(m(x), m(x.unsqueeze(1)))
    m = create_model("mlp").eval()
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(m(x), m(x.flatten(1)))
    assert create_model("mlp", input_size=40, in_channels=1).layers.fc1.in_features == 40
    assert create_model("tiny_cnn")(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    n = sum(p.numel() for p in create_model("tiny_cnn").parameters())
    assert 2_000 <= n <= 50_000


def test_wrn_dropout_option():
    with torch.device("meta"):
        model = create_model("wrn28_10", dropout=0.2)
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 12 and all(d.p == 0.2 for d in drops)  # one per unit, 3 x 4 units


# ------------------------------------------------------------------------------- transformers
def test_sinusoidal_positions_match_the_formula():
    pe = sinusoidal_positions(7, 6).double()
    for p in range(7):
        for i in range(3):
            angle = p / 10000 ** (2 * i / 6)
            assert pe[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_lm_is_causal():
    torch.manual_seed(0)
    lm = create_model("transformer_lm", vocab_size=20, d_model=16, nhead=2).eval()
    a = torch.randint(0, 20, (2, 10))
    b = a.clone()
    b[:, 6:] = torch.randint(0, 20, (2, 4))
    torch.testing.assert_close(lm(a)[:, :6], lm(b)[:, :6])
    assert not torch.allclose(lm(a)[:, 6:], lm(b)[:, 6:])
    with pytest.raises(ValueError, match="max_len"):
        create_model("transformer_lm", max_len=8)(torch.zeros(1, 9, dtype=torch.long))


def test_seq2seq_decoder_is_causal_and_padding_is_ignored():
    torch.manual_seed(0)
    model = create_model("transformer_seq2seq", src_vocab=15, tgt_vocab=12, d_model=16,
                         nhead=2, pad_idx=0).eval()
    src = torch.randint(1, 15, (2, 6))
    tgt = torch.randint(1, 12, (2, 5))
    out = model(src, tgt)
    # extra padding at the end of the source changes nothing
    padded = torch.cat([src, torch.zeros(2, 3, dtype=torch.long)], 1)
    torch.testing.assert_close(model(padded, tgt), out)
    # future target tokens do not influence earlier positions
    tgt2 = tgt.clone()
    tgt2[:, 3:] = torch.randint(1, 12, (2, 2))
    torch.testing.assert_close(model(src, tgt2)[:, :3], out[:, :3])
    # but the source does influence every position
    assert not torch.allclose(model(src.flip(1), tgt), out)


def test_transformer_vocab_aliases_and_tied_weights():
    lm = create_model("transformer_lm", num_classes=33, d_model=8, nhead=2, tie_weights=True)
    assert lm(torch.zeros(1, 4, dtype=torch.long)).shape == (1, 4, 33)
    assert lm.head.weight is lm.embed.tok.weight
    s2s = create_model("transformer_seq2seq", num_classes=21, d_model=8, nhead=2, in_channels=1)
    assert s2s.head.out_features == 21 and s2s.src_embed.tok.num_embeddings == 21
    acts = [m for m in create_model("transformer_lm", num_layers=3, act="mish").modules()
            if isinstance(m, nn.Mish)]
    assert len(acts) == 3  # one feed-forward activation per layer


def test_norm_factories_with_channel_constraints_are_only_called_with_real_widths():
    def gn16(c: int, dim: int = 2) -> nn.Module:
        return nn.GroupNorm(16, c)  # raises unless c is a multiple of 16

    for name, kw in [("wrn", {"depth": 10, "widen": 1}), ("vgg16_bn", {"width": 0.25}),
                     ("preact_resnet18", {"width": 16})]:
        model = create_model(name, norm=gn16, **kw)
        assert all(m.num_groups == 16 for m in model.modules() if isinstance(m, nn.GroupNorm))
