"""Every zoo model × activation × norm builds, runs forward+backward, has the expected output
shape, contains no layer of the replaced type, and owns one activation/norm module per call site.

SAU, ASH and AGC are used when registered; until then stand-ins with the same role are used
(GELU and Mish for the two trainable activations, GroupNorm for the batch-independent norm).
Large architectures are built at reduced width/depth and fed small inputs to keep this fast.
"""

from __future__ import annotations

import contextlib
from collections import Counter

import pytest
import torch
from torch import fx, nn

from actlab.convert import DEFAULT_ACT_TYPES, DEFAULT_NORM_TYPES
from actlab.models import create_model, list_models, model_task
from actlab.registry import ACTIVATIONS, MODELS, NORMS, act_factory, get_act, get_norm

ACTS = [
    "relu",
    "sau" if "sau" in ACTIVATIONS else "gelu",
    "ash" if "ash" in ACTIVATIONS else "mish",
]
NORM_SPECS = ["bn", "agc" if "agc" in NORMS else "gn"]

B = 2


def img(c: int, h: int, w: int | None = None) -> torch.Tensor:
    return torch.randn(B, c, h, h if w is None else w)


# name -> (reduced kwargs, input builder, expected output shape)
CASES: dict[str, tuple[dict, object, tuple]] = {
    "vgg": ({"stages": [[8], [16, 16]], "in_channels": 1}, lambda: img(1, 12), (B, 10)),
    "vgg16_bn": ({"width": 0.0625, "in_channels": 1}, lambda: img(1, 28), (B, 10)),
    "preact_resnet18": ({"width": 4}, lambda: img(3, 8), (B, 10)),
    "preact_resnet": ({"num_blocks": (1, 1), "width": 4}, lambda: img(3, 8), (B, 10)),
    "preact_resnet_bottleneck": ({"depth": 11, "width": 4}, lambda: img(3, 16), (B, 10)),
    "resnet164": ({"width": 2}, lambda: img(3, 8), (B, 10)),
    "wrn": ({"depth": 10, "widen": 1, "dropout": 0.2}, lambda: img(3, 16), (B, 10)),
    "wrn28_10": None,  # checked through "wrn" (same class) and in test_models_params
    "small_resnet": ({"width": 4, "num_classes": 3}, lambda: img(3, 16), (B, 3)),
    "resnet8": ({"width": 4}, lambda: img(3, 16), (B, 10)),
    "resnet20": ({"width": 2}, lambda: img(3, 8), (B, 10)),
    "densenet121": ({"growth": 2}, lambda: img(3, 8), (B, 10)),
    "densenet_bc": ({"depth": 16, "growth": 4}, lambda: img(3, 16), (B, 10)),
    "densenet_bc_100_12": None,  # same class as densenet_bc; counted in test_models_params
    "densenet": ({"depth": 10, "growth": 4}, lambda: img(3, 16), (B, 10)),
    "densenet_100_12": None,  # same class as densenet; counted in test_models_params
    "mobilenetv2": ({"width": 0.25}, lambda: img(3, 8), (B, 10)),
    "shufflenetv2": ({"width": 0.5}, lambda: img(3, 8), (B, 10)),
    "shufflenetv2_0_5": ({}, lambda: img(3, 8), (B, 10)),
    "shufflenetv2_1_0": None,
    "shufflenetv2_1_5": None,
    "shufflenetv2_2_0": None,
    "efficientnet_b0": ({"width": 0.25, "num_classes": 5}, lambda: img(3, 8), (B, 5)),
    "tiny_cnn": ({}, lambda: img(1, 8), (B, 10)),
    "mlp": ({"hidden": (16, 16), "input_size": 40}, lambda: torch.randn(B, 40), (B, 10)),
    "cnn1d": ({}, lambda: torch.randn(B, 40), (B, 10)),
    "unet": ({"width": 0.0625, "num_classes": 3}, lambda: img(3, 16, 8), (B, 3, 16, 8)),
    "segnet": (
        {"width": 0.0625, "num_classes": 4, "in_channels": 1}, lambda: img(1, 32), (B, 4, 32, 32)
    ),
    "ssd300": ({"width": 0.0625, "num_classes": 5}, lambda: img(3, 300), (B, 8732, 9)),
    "ssd_lite": ({"width": 4, "num_classes": 3}, lambda: img(3, 64), (B, 336, 7)),
    "classnet": ({"width": 0.0625, "num_classes": 3}, lambda: img(3, 12, 10), (B, 3, 12, 10)),
    "deeplabv3plus": (
        {"width": 0.0625, "depth": 50, "num_classes": 3}, lambda: img(3, 40, 24), (B, 3, 40, 24)
    ),
    "transformer_seq2seq": (
        {"src_vocab": 11, "tgt_vocab": 13, "d_model": 16, "nhead": 2, "dim_feedforward": 32},
        lambda: (torch.randint(0, 11, (B, 7)), torch.randint(0, 13, (B, 5))),
        (B, 5, 13),
    ),
    "transformer_base": (
        {"num_classes": 13, "d_model": 16, "num_encoder_layers": 1, "num_decoder_layers": 1,
         "dim_feedforward": 32},
        lambda: (torch.randint(0, 13, (B, 7)), torch.randint(0, 13, (B, 5))),
        (B, 5, 13),
    ),
    "transformer_lm": (
        {"vocab_size": 17, "d_model": 16, "nhead": 2, "dim_feedforward": 32},
        lambda: torch.randint(0, 17, (B, 9)),
        (B, 9, 17),
    ),
}
TOKEN_MODELS = {"transformer_seq2seq", "transformer_base", "transformer_lm"}
BUILD = sorted(n for n, c in CASES.items() if c is not None)


def test_cases_cover_every_zoo_model():
    zoo = {n for n in list_models() if MODELS.factory(n).__module__.startswith("actlab.models")}
    assert set(CASES) == zoo


def run(model: nn.Module, x) -> torch.Tensor:
    return model(*x) if isinstance(x, tuple) else model(x)


def act_types(act: str) -> tuple[type, ...]:
    return (type(get_act(act)),)


def norm_types(norm: str) -> tuple[type, ...]:
    types = set()
    for d in (0, 1, 2):
        with contextlib.suppress(ValueError):  # AGC has no (N, C) form: needs spatial dims
            types.add(type(get_norm(norm, 8, dim=d)))
    return tuple(types)


# Inputs that keep every feature map larger than 1×1 where the CASES input shrinks to 1×1,
# which AGC refuses (its spatial mean would be the input itself).
AGC_INPUTS = {
    "densenet121": lambda: img(3, 16),
    "efficientnet_b0": lambda: img(3, 32),
    "mobilenetv2": lambda: img(3, 16),
    "preact_resnet18": lambda: img(3, 16),
    "shufflenetv2": lambda: img(3, 16),
    "shufflenetv2_0_5": lambda: img(3, 16),
    "unet": lambda: img(3, 32, 16),  # output (B, 3, 32, 16)
    "classnet": lambda: img(3, 24, 20),  # output (B, 3, 24, 20)
}
#: output shapes of the dense-prediction models fed an AGC_INPUTS input
AGC_SHAPES = {"unet": (B, 3, 32, 16), "classnet": (B, 3, 24, 20)}


def build(name: str, act: str, norm: str | None) -> tuple[nn.Module, object, tuple]:
    kwargs, make_input, shape = CASES[name]
    if norm == "agc" and name in AGC_INPUTS:
        make_input = AGC_INPUTS[name]
        shape = AGC_SHAPES.get(name, shape)
    torch.manual_seed(0)
    kw = dict(kwargs, act=act)
    if norm is not None:
        kw["norm"] = norm
    return create_model(name, **kw), make_input(), shape


# 164 layers deep even at width 2: the full act x norm grid runs on the same class through
# preact_resnet_bottleneck(depth=11); resnet164 itself runs the replacement combination.
SINGLE_COMBO = {"resnet164"}


def combos():
    for name in BUILD:
        norms = ["ln", "none"] if name in TOKEN_MODELS else NORM_SPECS
        for act in ACTS:
            for norm in norms:
                if name in SINGLE_COMBO and (act, norm) != (ACTS[1], NORM_SPECS[1]):
                    continue
                yield pytest.param(name, act, norm, id=f"{name}-{act}-{norm}")


# Models whose norm sits on (N, C) features, or on a 1x1 map by design (SSD300's last extra
# layer, DeepLabV3+'s ASPP image pooling); AGC has no such form (h - λ·h is degenerate) and
# refuses them.
FEATURE_NORM_MODELS = {"mlp", "ssd300", "deeplabv3plus"}


@pytest.mark.parametrize(("name", "act", "norm"), list(combos()))
def test_forward_backward_shapes_and_layer_types(name, act, norm):
    if name in FEATURE_NORM_MODELS and norm == "agc":
        with pytest.raises(ValueError, match="spatial"):
            model, x, _ = build(name, act, norm)
            run(model, x)
        return
    model, x, shape = build(name, act, norm)
    model.train()
    out = run(model, x)
    assert tuple(out.shape) == shape
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: parameter {pname} received no gradient"
        assert torch.isfinite(p.grad).all(), pname

    # every hidden activation is of the requested type: nothing of another type is left
    want_act = act_types(act)
    acts = [m for m in model.modules() if isinstance(m, want_act)]
    assert acts, f"{name} has no {want_act[0].__name__} module"
    stray = [type(m).__name__ for m in model.modules()
             if isinstance(m, DEFAULT_ACT_TYPES) and not isinstance(m, want_act)]
    assert not stray, f"{name} with act={act} still contains {Counter(stray)}"

    # every norm is of the requested type (no BatchNorm when norm is agc / the stand-in)
    if name in TOKEN_MODELS:
        want_norm: tuple[type, ...] = (nn.LayerNorm,) if norm == "ln" else ()
    else:
        want_norm = norm_types(norm)
    norms = [m for m in model.modules() if isinstance(m, DEFAULT_NORM_TYPES + (nn.LayerNorm,))]
    stray = [type(m).__name__ for m in norms if not isinstance(m, want_norm or (type(None),))]
    assert not stray, f"{name} with norm={norm} still contains {Counter(stray)}"
    if want_norm:
        assert any(isinstance(m, want_norm) for m in model.modules())


def call_counts(model: nn.Module, x, watched: list[nn.Module]) -> Counter[int]:
    calls: Counter[int] = Counter()
    handles = [m.register_forward_hook(lambda m, i, o: calls.update([id(m)])) for m in watched]
    try:
        with torch.no_grad():
            run(model, x)
    finally:
        for h in handles:
            h.remove()
    return calls


def test_call_counter_detects_a_shared_activation():
    """Negative control for the check below: one ReLU used at two sites is counted twice."""

    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2, self.act = nn.Linear(3, 3), nn.Linear(3, 3), nn.ReLU()

        def forward(self, x):
            return self.act(self.fc2(self.act(self.fc1(x))))

    model = Shared()
    assert call_counts(model, torch.randn(2, 3), [model.act])[id(model.act)] == 2


@pytest.mark.parametrize("name", BUILD)
def test_each_call_site_owns_its_activation_and_norm(name):
    """Hook every activation and norm module and count calls in one forward pass: a module
    shared by two sites would be called twice; an orphan module would not be called."""
    act = ACTS[1]
    norm = "ln" if name in TOKEN_MODELS else NORM_SPECS[0]
    model, x, _ = build(name, act, norm)
    model.eval()
    watched = [m for m in model.modules()
               if isinstance(m, act_types(act) + (nn.LayerNorm,))
               or (name not in TOKEN_MODELS and isinstance(m, norm_types(norm)))]
    calls = call_counts(model, x, watched)
    assert len({id(m) for m in watched}) == len(watched) > 0
    bad = [type(m).__name__ for m in watched if calls[id(m)] != 1]
    assert not bad, f"{name}: modules not called exactly once: {Counter(bad)}"


def test_reduced_sizes_match_the_registry_task():
    for name in BUILD:
        _, _, shape = CASES[name]
        task = model_task(name)
        expected_rank = {"classification": 2, "classification_1d": 2, "segmentation": 4,
                         "detection": 3, "seq2seq": 3, "lm": 3}[task]
        assert len(shape) == expected_rank, name


@pytest.mark.parametrize("name", ["small_resnet", "mobilenetv2", "mlp", "cnn1d"])
def test_act_and_norm_given_as_classes_and_factories(name):
    kwargs, make_input, shape = CASES[name]
    norm = (lambda c, dim=2: nn.GroupNorm(1, c)) if name not in ("mlp", "cnn1d") else (
        lambda c, dim=2: nn.LayerNorm(c) if dim == 0 else nn.GroupNorm(1, c)
    )
    model = create_model(
        name, **kwargs, act=act_factory("leaky_relu", negative_slope=0.2), norm=norm
    )
    leaky = [m for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert leaky and all(m.negative_slope == 0.2 for m in leaky)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert tuple(run(model, make_input()).shape) == shape
    model = create_model(name, **kwargs, act=nn.SiLU, norm=None)
    assert any(isinstance(m, nn.SiLU) for m in model.modules())
    assert not any(isinstance(m, DEFAULT_NORM_TYPES) for m in model.modules())


def test_sigmoid_gates_stay_sigmoid_in_efficientnet():
    model = create_model("efficientnet_b0", width=0.25, act=ACTS[2])
    se = [m for m in model.modules() if type(m).__name__ == "SqueezeExcitation"]
    assert len(se) == 16  # one per MBConv unit of B0 (1+2+2+3+3+4+1)
    assert all(isinstance(m.gate, nn.Sigmoid) for m in se)
    assert all(isinstance(m.act, act_types(ACTS[2])) for m in se)


def test_grey_and_28px_inputs():
    model = create_model("vgg16_bn", width=0.0625, in_channels=1)
    assert model(torch.randn(B, 1, 28, 28)).shape == (B, 10)
    assert model(torch.randn(B, 1, 32, 32)).shape == (B, 10)
    model = create_model("preact_resnet18", width=4, in_channels=1)
    assert model(torch.randn(B, 1, 28, 28)).shape == (B, 10)


@pytest.mark.parametrize("name", BUILD)
def test_symbolic_trace_matches_eager(name):
    """Zoo models trace with torch.fx (what actlab.convert relies on) to the same function."""
    model, x, _ = build(name, "relu", "ln" if name in TOKEN_MODELS else NORM_SPECS[0])
    model.eval()
    concrete = (
        {"src_padding_mask": None, "tgt_padding_mask": None}
        if name in ("transformer_seq2seq", "transformer_base") else None
    )
    traced = fx.symbolic_trace(model, concrete_args=concrete)
    with torch.no_grad():
        torch.testing.assert_close(run(traced, x), run(model, x))
