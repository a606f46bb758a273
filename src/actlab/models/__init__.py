"""The actlab model zoo: clean definitions of every architecture used by the SAU, ASH and
Deep Control (AGC) papers, each built with swappable activations and normalisations.

Every constructor takes ``act=`` (activation name, class or factory), ``norm=`` (norm name, class,
factory, ``None``/``"none"``), ``num_classes=``, ``in_channels=`` and ``init=`` (``None``,
``"he"``, ``"xavier"`` or ``"dirac"``); every activation and norm site is a fresh module::

    >>> from actlab.models import create_model, list_models
    >>> net = create_model("wrn28_10", act="sau", norm="agc", dropout=0.2)
    >>> list_models(task="segmentation")
    ['classnet', 'deeplabv3plus', 'segnet', 'unet']
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from actlab.models.deeplab import DeepLabV3Plus, deeplabv3plus
from actlab.models.densenet import (
    DenseNet,
    densenet,
    densenet121,
    densenet_100_12,
    densenet_bc,
    densenet_bc_100_12,
)
from actlab.models.efficientnet import EfficientNet, efficientnet_b0
from actlab.models.init import INIT_SCHEMES, dirac_layers, init_weights
from actlab.models.mobilenet import MobileNetV2, mobilenetv2
from actlab.models.resnet import (
    CifarResNet,
    PreActResNet,
    preact_resnet,
    preact_resnet18,
    preact_resnet_bottleneck,
    resnet8,
    resnet20,
    resnet164,
    small_resnet,
    wrn,
    wrn28_10,
)
from actlab.models.segmentation import ClassNet, SegNet, UNet, classnet, segnet, unet
from actlab.models.shufflenet import (
    ShuffleNetV2,
    shufflenetv2,
    shufflenetv2_0_5,
    shufflenetv2_1_0,
    shufflenetv2_1_5,
    shufflenetv2_2_0,
)
from actlab.models.small import MLP, CNN1d, TinyCNN, cnn1d, mlp, tiny_cnn
from actlab.models.ssd import SSD, ssd300, ssd_lite
from actlab.models.transformer import (
    TransformerLM,
    TransformerSeq2Seq,
    transformer_base,
    transformer_lm,
    transformer_seq2seq,
)
from actlab.models.vgg import VGG, vgg, vgg16_bn
from actlab.registry import MODELS

__all__ = [
    "create_model", "list_models", "model_task", "register_model", "TASKS",
    "init_weights", "dirac_layers", "INIT_SCHEMES",
    "VGG", "vgg", "vgg16_bn",
    "PreActResNet", "preact_resnet", "preact_resnet18", "preact_resnet_bottleneck", "resnet164",
    "wrn", "wrn28_10", "CifarResNet", "small_resnet", "resnet8", "resnet20",
    "DenseNet", "densenet", "densenet_100_12", "densenet_bc", "densenet_bc_100_12", "densenet121",
    "MobileNetV2", "mobilenetv2",
    "ShuffleNetV2", "shufflenetv2", "shufflenetv2_0_5", "shufflenetv2_1_0", "shufflenetv2_1_5",
    "shufflenetv2_2_0",
    "EfficientNet", "efficientnet_b0",
    "UNet", "unet", "SegNet", "segnet", "ClassNet", "classnet", "DeepLabV3Plus", "deeplabv3plus",
    "TransformerSeq2Seq", "TransformerLM", "transformer_seq2seq", "transformer_base",
    "transformer_lm",
    "TinyCNN", "tiny_cnn", "MLP", "mlp", "CNN1d", "cnn1d",
    "SSD", "ssd300", "ssd_lite",
]

#: What each registered model maps its input to.
#: classification: images (B, C, H, W) -> (B, num_classes); classification_1d: (B, C, L) or
#: (B, L) -> (B, num_classes); segmentation: (B, C, H, W) -> (B, num_classes, H, W);
#: detection: (B, C, H, W) -> (B, num_priors, 4 + num_classes) (see actlab.models.ssd);
#: seq2seq: (src (B, S), tgt (B, T)) -> (B, T, vocab); lm: (B, T) -> (B, T, vocab).
TASKS = ("classification", "classification_1d", "segmentation", "detection", "seq2seq", "lm")

_ZOO: dict[str, tuple[Callable[..., nn.Module], str]] = {
    "vgg": (vgg, "classification"),
    "vgg16_bn": (vgg16_bn, "classification"),
    "preact_resnet18": (preact_resnet18, "classification"),
    "preact_resnet": (preact_resnet, "classification"),
    "preact_resnet_bottleneck": (preact_resnet_bottleneck, "classification"),
    "resnet164": (resnet164, "classification"),
    "wrn": (wrn, "classification"),
    "wrn28_10": (wrn28_10, "classification"),
    "small_resnet": (small_resnet, "classification"),
    "resnet8": (resnet8, "classification"),
    "resnet20": (resnet20, "classification"),
    "densenet121": (densenet121, "classification"),
    "densenet": (densenet, "classification"),
    "densenet_100_12": (densenet_100_12, "classification"),
    "densenet_bc": (densenet_bc, "classification"),
    "densenet_bc_100_12": (densenet_bc_100_12, "classification"),
    "mobilenetv2": (mobilenetv2, "classification"),
    "shufflenetv2": (shufflenetv2, "classification"),
    "shufflenetv2_0_5": (shufflenetv2_0_5, "classification"),
    "shufflenetv2_1_0": (shufflenetv2_1_0, "classification"),
    "shufflenetv2_1_5": (shufflenetv2_1_5, "classification"),
    "shufflenetv2_2_0": (shufflenetv2_2_0, "classification"),
    "efficientnet_b0": (efficientnet_b0, "classification"),
    "tiny_cnn": (tiny_cnn, "classification"),
    "mlp": (mlp, "classification"),
    "cnn1d": (cnn1d, "classification_1d"),
    "unet": (unet, "segmentation"),
    "segnet": (segnet, "segmentation"),
    "classnet": (classnet, "segmentation"),
    "deeplabv3plus": (deeplabv3plus, "segmentation"),
    "transformer_seq2seq": (transformer_seq2seq, "seq2seq"),
    "transformer_base": (transformer_base, "seq2seq"),
    "transformer_lm": (transformer_lm, "lm"),
    "ssd300": (ssd300, "detection"),
    "ssd_lite": (ssd_lite, "detection"),
}
_TASK: dict[str, str] = {}

for _name, (_fn, _task) in _ZOO.items():
    if _name not in MODELS:
        MODELS.register(_name, _fn)
    _TASK[_name] = _task


def register_model(
    name: str,
    factory: Callable[..., nn.Module] | None = None,
    *,
    task: str = "classification",
    overwrite: bool = False,
) -> Any:
    """Register a model factory under ``name`` with its task (usable as a decorator)::

        @register_model("my_net", task="segmentation")
        def my_net(num_classes=2, in_channels=3, act="relu", norm="bn"): ...
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")

    def add(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS.register(name, f, overwrite=overwrite)
        _TASK[MODELS.resolve(name)] = task
        return f

    return add if factory is None else add(factory)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model by name: ``create_model("wrn", depth=16, widen=4, act="ash")``.

    Unknown names raise ``KeyError`` with close matches; unknown keyword arguments raise
    ``TypeError`` naming the model.
    """
    factory = MODELS.factory(name)
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as err:
        raise TypeError(f"bad arguments for model {name!r}: {err}") from None
    return factory(**kwargs)


def model_task(name: str) -> str:
    """The task of a registered model (one of :data:`TASKS`; ``"classification"`` for models
    registered by users without a task)."""
    return _TASK.get(MODELS.resolve(name), "classification")


def list_models(task: str | None = None) -> list[str]:
    """Sorted names of the registered models, optionally only those of one ``task``."""
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    return [n for n in MODELS.names() if task is None or model_task(n) == task]
