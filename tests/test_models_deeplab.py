"""DeepLabV3+ (actlab.models.deeplab): parameter counts against published and hand-counted
figures, output stride and dilation, output size, fx tracing and one training step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from actlab.models import create_model, list_models, model_task


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def meta(**kwargs) -> nn.Module:
    with torch.device("meta"):
        return create_model("deeplabv3plus", **kwargs)


def conv_bn(cin: int, cout: int, k: int) -> int:
    """Parameters of a bias-free k×k convolution followed by BatchNorm (weight + bias)."""
    return cin * cout * k * k + 2 * cout


def test_registered_as_a_segmentation_model():
    assert "deeplabv3plus" in list_models(task="segmentation")
    assert model_task("deeplabv3plus") == "segmentation"


def test_backbone_has_the_parameters_of_the_imagenet_resnet_without_its_classifier():
    # torchvision resnet50 model card: num_params 25,557,032, of which the 2048 -> 1000 linear
    # classifier holds 2048 * 1000 + 1000; dilation changes no parameter shape.
    model = meta(depth=50)
    assert n_params(model.backbone) == 25_557_032 - (2048 * 1000 + 1000)
    # per-unit counts of torchvision's ResNet-50 bottlenecks (torchinfo summary of layer1-3):
    # first / other units of stages 1, 2, 3
    stages = model.backbone.stages
    published = [(75_008, 70_400), (379_392, 280_064), (1_512_448, 1_117_184)]
    for stage, (first, other) in zip(stages[:3], published, strict=True):
        assert n_params(stage[0]) == first
        assert {n_params(u) for u in stage[1:]} == {other}
    # ResNet-101 differs from ResNet-50 only by 17 more units of stage 3 (He et al. Table 1)
    deep = meta(depth=101)
    assert len(deep.backbone.stages[2]) == 23
    assert n_params(deep.backbone) == n_params(model.backbone) + 17 * 1_117_184


def test_head_parameters_match_a_hand_count_of_the_papers_layers():
    k = 21
    model = meta(depth=101, num_classes=k)
    # ASPP: 1x1 + three 3x3 atrous branches + image pooling 1x1 (each 2048 -> 256, BN), and the
    # 5 * 256 -> 256 1x1 projection with BN
    aspp = conv_bn(2048, 256, 1) * 2 + conv_bn(2048, 256, 3) * 3 + conv_bn(5 * 256, 256, 1)
    assert n_params(model.aspp) == aspp == 15_535_104
    # decoder: 256 -> 48 1x1 reduction of the stride-4 features, two 3x3 convs (304 -> 256,
    # 256 -> 256) with BN, and the 256 -> K classifier with bias
    decoder = conv_bn(256, 48, 1) + conv_bn(304, 256, 3) + conv_bn(256, 256, 3) + 256 * k + k
    assert n_params(model.decoder) == decoder
    assert n_params(model) == 44_549_160 - (2048 * 1000 + 1000) + aspp + decoder == 59_344_309


@pytest.mark.parametrize(("output_stride", "rates"), [(16, (6, 12, 18)), (8, (12, 24, 36))])
def test_output_stride_dilation_and_rates(output_stride, rates):
    torch.manual_seed(0)
    model = create_model("deeplabv3plus", depth=50, width=0.0625, num_classes=3,
                         output_stride=output_stride).eval()
    assert model.aspp.rates == rates
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        low, high = model.backbone(x)
        out = model(x)
    assert low.shape[-2:] == (16, 24)  # stride 4
    assert high.shape[-2:] == (64 // output_stride, 96 // output_stride)
    assert out.shape == (1, 3, 64, 96)
    last = [m for m in model.backbone.stages[3].modules()
            if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    want = 2 if output_stride == 16 else 4
    prev = 1 if output_stride == 16 else 2
    # the first unit of a dilated stage keeps the previous rate (torchvision's rule)
    assert [m.dilation[0] for m in last] == [prev] + [want] * (len(last) - 1)
    assert all(m.stride == (1, 1) and m.padding == m.dilation for m in last)
    atrous = [b.conv for b in model.aspp.branches[1:]]
    assert [c.dilation[0] for c in atrous] == list(rates)


def test_output_has_the_input_size_for_odd_sizes():
    model = create_model("deeplabv3plus", depth=50, width=0.0625, num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 37, 53)).shape == (2, 5, 37, 53)


def test_image_pooling_branch_is_the_global_mean_broadcast():
    torch.manual_seed(0)
    model = create_model("deeplabv3plus", depth=50, width=0.0625, num_classes=3).eval()
    aspp = model.aspp
    x = torch.randn(2, aspp.pool_conv.conv.in_channels, 5, 7)
    captured = {}
    aspp.project.register_forward_hook(lambda m, i, o: captured.update(x=i[0]))
    with torch.no_grad():
        aspp(x)
        c = aspp.pool_conv.conv.out_channels
        pooled = captured["x"][:, -c:]
        want = aspp.pool_conv(x.mean(dim=(2, 3), keepdim=True)).expand_as(pooled)
    torch.testing.assert_close(pooled, want)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="output_stride"):
        create_model("deeplabv3plus", output_stride=4, width=0.0625)
    with pytest.raises(ValueError, match="depth"):
        create_model("deeplabv3plus", depth=34, width=0.0625)


def test_fx_trace_gives_the_same_function_with_sau():
    torch.manual_seed(0)
    model = create_model("deeplabv3plus", depth=50, width=0.0625, num_classes=4,
                         act="sau").eval()
    traced = fx.symbolic_trace(model)
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x), rtol=0, atol=0)


def test_training_steps_lower_the_loss_with_ignored_pixels():
    torch.manual_seed(0)
    model = create_model("deeplabv3plus", depth=50, width=0.0625, num_classes=3, dropout=0.0)
    x = torch.randn(4, 3, 32, 32)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 1).long()  # a per-pixel function of the input
    y[:, :4] = 255
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(model(x), y, ignore_index=255)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all()
                   for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_convert_replaces_every_activation_like_building_with_sau():
    from actlab.convert import convert
    from actlab.nn import SAU

    torch.manual_seed(0)
    kwargs = {"depth": 50, "width": 0.0625, "num_classes": 3}
    relu = create_model("deeplabv3plus", **kwargs).eval()
    n_relu = sum(isinstance(m, nn.ReLU) for m in relu.modules())
    converted = convert(relu, act="sau", copy_model=True).eval()
    assert sum(isinstance(m, SAU) for m in converted.modules()) == n_relu
    assert not any(isinstance(m, nn.ReLU) for m in converted.modules())
    # the same network built with act="sau" has the same sites: the state loads strictly and
    # both compute the same function
    built = create_model("deeplabv3plus", **kwargs, act="sau").eval()
    built.load_state_dict(converted.state_dict())
    x = torch.randn(2, 3, 32, 40)
    with torch.no_grad():
        torch.testing.assert_close(built(x), converted(x), rtol=0, atol=0)
