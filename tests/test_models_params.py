"""Parameter counts of the zoo's reference configurations against published figures.

Models are built on the ``meta`` device (no memory, no initialisation cost); only shapes count.
Each entry names its source. Figures quoted as "x.xM" in papers are rounded to 0.1M, hence the
tolerances; where an exact count is published (torchvision model cards) we match it exactly.
"""

from __future__ import annotations

import pytest
import torch

from actlab.models import create_model


def n_params(name: str, **kwargs) -> int:
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    return sum(p.numel() for p in model.parameters())


# (model, kwargs, published count, relative tolerance, source)
PUBLISHED = [
    ("wrn28_10", {}, 36.5e6, 0.01,
     "Zagoruyko & Komodakis 2016, Wide Residual Networks: WRN-28-10 has 36.5M (CIFAR-10)"),
    ("resnet164", {}, 1.7e6, 0.02,
     "He et al. 2016, Identity Mappings in Deep Residual Networks: ResNet-164 has 1.7M"),
    ("densenet_100_12", {}, 7.0e6, 0.01,
     "Huang et al. 2017, DenseNet Table 2: DenseNet (L=100, k=12) has 7.0M"),
    ("densenet_bc_100_12", {}, 0.8e6, 0.05,
     "Huang et al. 2017, DenseNet Table 2: DenseNet-BC (L=100, k=12) has 0.8M"),
    ("preact_resnet18", {}, 11.2e6, 0.01,
     "PreActResNet-18 on CIFAR-10: 11.2M (e.g. kuangliu/pytorch-cifar, 11.17M + final norm)"),
    ("mobilenetv2", {"num_classes": 1000, "imagenet": True}, 3_504_872, 0.0,
     "torchvision mobilenet_v2 model card num_params (paper Table 4 rounds it to 3.4M)"),
    ("shufflenetv2_1_0", {}, 1.26e6, 0.01,
     "ShuffleNetV2 1.0x, CIFAR-10 head: 1.26M (torchvision's 2,278,604 minus 990 classes)"),
    ("shufflenetv2_1_0", {"num_classes": 1000}, 2_278_604, 0.0,
     "torchvision shufflenet_v2_x1_0 model card num_params (ImageNet, 1000 classes)"),
    ("shufflenetv2_0_5", {"num_classes": 1000}, 1_366_792, 0.0,
     "torchvision shufflenet_v2_x0_5 model card num_params (ImageNet, 1000 classes)"),
    ("efficientnet_b0", {"num_classes": 1000, "imagenet": True}, 5.3e6, 0.01,
     "Tan & Le 2019, EfficientNet Table 2: B0 has 5.3M (torchvision card: 5,288,548)"),
    ("efficientnet_b0", {"num_classes": 1000, "imagenet": True}, 5_288_548, 0.0,
     "torchvision efficientnet_b0 model card num_params"),
    ("resnet20", {}, 0.27e6, 0.02,
     "He et al. 2016, Deep Residual Learning Table 6: ResNet-20 has 0.27M"),
    ("segnet", {"num_classes": 12}, 29.5e6, 0.01,
     "Badrinarayanan et al. 2017, SegNet: 29.5M trainable parameters"),
    ("cnn1d", {}, 5210, 0.0,
     "Greydanus 2020, MNIST-1D reference ConvBase (channels 25, linear_in 125): 5,210"),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "published", "rtol", "source"), PUBLISHED,
    ids=[f"{p[0]}-{i}" for i, p in enumerate(PUBLISHED)],
)
def test_parameter_count_matches_published(name, kwargs, published, rtol, source):
    count = n_params(name, **kwargs)
    assert abs(count - published) <= rtol * published, (
        f"{name}{kwargs}: {count:,} parameters, published {published:,.0f} ± {rtol:.0%} "
        f"({source})"
    )


def test_vgg16_bn_cifar_in_published_range():
    # VGG-16 (config D, Simonyan & Zisserman 2015) with BN and a single linear classifier on
    # CIFAR-10: 14.7M-15.0M in common CIFAR code bases (kuangliu/pytorch-cifar: 14.73M).
    count = n_params("vgg16_bn")
    assert 14.7e6 <= count <= 15.0e6, count


def test_mobilenetv2_cifar_in_published_range():
    # MobileNetV2 CIFAR-10 variant: 2.2M-2.3M (e.g. kuangliu/pytorch-cifar 2.30M with extra
    # projection shortcuts; the paper's units without them give 2.24M).
    count = n_params("mobilenetv2")
    assert 2.2e6 <= count <= 2.3e6, count


def test_widths_and_depths_scale_parameter_counts():
    assert n_params("shufflenetv2_0_5") < n_params("shufflenetv2_1_0") < n_params(
        "shufflenetv2_2_0"
    )
    assert n_params("wrn", depth=16, widen=4) < n_params("wrn", depth=28, widen=10)
    # conv weights scale with width**2: a half-width VGG has about a quarter of the parameters
    ratio = n_params("vgg16_bn", width=0.5) / n_params("vgg16_bn")
    assert 0.24 < ratio < 0.27
