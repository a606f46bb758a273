"""convert(): one fresh activation / norm per use, modules and functional calls, any registry
target, round trips, and the path for models torch.fx cannot trace."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from actlab.convert import ConversionError, convert, convertible_act_types, convertible_norm_types
from actlab.models import create_model
from actlab.nn import AGC, ASH, SAU, AGCAct
from actlab.registry import ACTIVATIONS, get_act, register_act, register_activation_type


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


class HandBlock(nn.Module):
    """SharedReLUBlock written by hand with two activation modules of its own."""

    def __init__(self, block: SharedReLUBlock, act1: nn.Module, act2: nn.Module) -> None:
        super().__init__()
        self.block, self.act1, self.act2 = block, act1, act2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        out = self.act1(b.bn1(b.conv1(x)))
        return self.act2(b.bn2(b.conv2(out)) + x)


class FunctionalNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 8)
        self.fc3 = nn.Linear(8, 8)
        self.fc4 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        y = F.gelu(self.fc3(x)) + F.silu(x)
        return self.fc4(y).relu() + torch.sigmoid(x).sum(-1, keepdim=True)


class InplaceReader(nn.Module):
    """Reads the input of an in-place ReLU after the ReLU ran (it sees the ReLU's output)."""

    def __init__(self, how: str = "relu_") -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.how = how

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        if self.how == "relu_":
            y = h.relu_()
        elif self.how == "positional":
            y = F.leaky_relu(h, 0.1, True)
        else:
            y = F.relu(h, inplace=True)
        return h * 2 + y


class Untraceable(nn.Module):
    def __init__(self, shared: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)
        self.act = nn.ReLU()
        self.act2 = self.act if shared else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow: fx cannot trace this
            x = self.fc(x)
        return self.act2(self.bn(self.act(x)))


class UntraceableFunctional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            x = self.fc(x)
        return F.gelu(x)


def modules_of(model: nn.Module, cls: type | tuple[type, ...]) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, cls)]


def call_counts(model: nn.Module, cls: type | tuple[type, ...], *x) -> Counter[int]:
    counts: Counter[int] = Counter()
    handles = [
        m.register_forward_hook(lambda m, a, o: counts.update([id(m)]))
        for m in modules_of(model, cls)
    ]
    try:
        model(*x)
    finally:
        for h in handles:
            h.remove()
    return counts


# ------------------------------------------------------------------------------------------------
# one fresh module per call site
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("source", "target"), [
    ("relu", "prelu"), ("relu", "sau"), ("relu", "ash"), ("sau", "ash"), ("ash", "sau"),
])
def test_shared_module_gets_one_module_per_call_site(source: str, target: str) -> None:
    torch.manual_seed(0)
    model = SharedReLUBlock()
    model.relu = get_act(source)  # one module object, called at two sites
    x = torch.randn(2, 4, 5, 5)
    out = convert(model, act=target)
    cls = type(get_act(target))
    acts = modules_of(out, cls)
    assert len(acts) == 2 and acts[0] is not acts[1]
    assert not modules_of(out, type(get_act(source)))
    assert sorted(call_counts(out, cls, x).values()) == [1, 1]
    # each site owns its parameters: their gradients differ, so they would train apart
    out(x).square().sum().backward()
    grads = [next(a.parameters()).grad for a in acts]
    assert not torch.equal(grads[0], grads[1])


def test_converted_model_equals_a_hand_built_model_with_the_same_layers() -> None:
    torch.manual_seed(0)
    model = SharedReLUBlock().eval()
    out = convert(model, act="sau", copy_model=True).eval()
    sau = modules_of(out, SAU)
    assert len(sau) == 2
    with torch.no_grad():  # give the two sites different slopes and sharpness
        sau[0].alpha.fill_(0.3)
        sau[1].alpha.fill_(0.05)
        sau[0].n.fill_(2.0)
        sau[1].n.fill_(7.0)
    # the reference: the original block's weights and two SAU modules wired by hand
    act1, act2 = SAU(alpha=0.3, n=2.0), SAU(alpha=0.05, n=7.0)
    ref = HandBlock(model, act1, act2).eval()
    x = torch.randn(3, 4, 6, 6, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    torch.testing.assert_close(out(x), ref(x_ref), rtol=0, atol=0)
    out(x).sum().backward()
    ref(x_ref).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=0, atol=0)
    torch.testing.assert_close(sau[0].alpha.grad, act1.alpha.grad)
    torch.testing.assert_close(sau[1].alpha.grad, act2.alpha.grad)
    assert out.training is False


def test_functional_calls_are_replaced_but_gates_are_kept() -> None:
    torch.manual_seed(0)
    model = FunctionalNet()
    x = torch.randn(5, 6)
    out = convert(model, act="elu", copy_model=True)
    assert isinstance(out, fx.GraphModule)
    elus = modules_of(out, nn.ELU)
    assert len({id(m) for m in elus}) == 5  # F.relu, torch.relu, F.gelu, F.silu, .relu()
    code = out.code
    for name in ("relu", "gelu", "silu"):
        assert name not in code
    assert "sigmoid" in code
    h1 = F.elu(model.fc1(x))
    h2 = F.elu(model.fc2(h1))
    y = F.elu(model.fc3(h2)) + F.elu(h2)
    expected = F.elu(model.fc4(y)) + torch.sigmoid(h2).sum(-1, keepdim=True)
    torch.testing.assert_close(out(x), expected)


@pytest.mark.parametrize("how", ["relu_", "positional", "keyword"])
def test_inplace_functional_call_keeps_its_meaning(how: str) -> None:
    torch.manual_seed(0)
    model = InplaceReader(how)
    x = torch.randn(3, 4)
    out = convert(model, act="sau", copy_model=True)
    (sau,) = modules_of(out, SAU)
    s = sau(model.fc(x))
    torch.testing.assert_close(out(x), s * 2 + s)  # h was overwritten by relu_ in the original


def test_functional_false_leaves_functions() -> None:
    out = convert(FunctionalNet(), act="elu", functional=False)
    assert isinstance(out, FunctionalNet) and not modules_of(out, nn.ELU)


# ------------------------------------------------------------------------------------------------
# targets and sources: the registry's one list
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_every_registered_activation_is_a_target(name: str) -> None:
    torch.manual_seed(0)
    model = SharedReLUBlock()
    x = torch.randn(2, 4, 5, 5)
    out = convert(model, act=name)
    cls = type(get_act(name))
    counts = call_counts(out, cls, x)
    assert sorted(counts.values()) == [1, 1], name
    assert out(x).shape == x.shape


@pytest.mark.parametrize("source", ["sau", "sau_paper", "smooth_relu", "ash", "fash", "lash",
                                    "ash_topk", "prelu", "gelu", "swish"])
def test_round_trip_back_to_relu(source: str) -> None:
    torch.manual_seed(0)
    base = create_model("small_resnet", width=4, num_classes=3).eval()
    x = torch.randn(2, 3, 8, 8)
    expected = base(x)
    n_relu = len(modules_of(base, nn.ReLU))
    there = convert(base, act=source, copy_model=True)
    assert not modules_of(there, nn.ReLU)
    back = convert(there, act="relu")
    assert len(modules_of(back, nn.ReLU)) == n_relu
    assert not modules_of(back, (SAU, ASH)) and not modules_of(back, type(get_act(source)))
    torch.testing.assert_close(back(x), expected, rtol=0, atol=0)


def test_convertible_types_come_from_the_registry() -> None:
    types = convertible_act_types()
    for cls in (nn.ReLU, nn.GELU, nn.PReLU, SAU, ASH):
        assert issubclass(cls, types)
    for gate in (nn.Sigmoid, nn.Tanh, nn.Identity):
        assert gate not in types
    assert AGC in convertible_norm_types() and nn.LayerNorm not in convertible_norm_types()

    class Cube(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x**3

    class Square(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x**2

    register_activation_type(Cube)
    register_act("test_convert_square", Square)
    try:
        assert Cube in convertible_act_types() and Square in convertible_act_types()
        model = nn.Sequential(nn.Linear(2, 2), Cube(), nn.Linear(2, 2), Square())
        out = convert(model, act="relu")
        assert [type(m) for m in out] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU]
    finally:
        from actlab import registry

        registry._ACTIVATION_TYPES.remove(Cube)
        ACTIVATIONS._factories.pop("test_convert_square")


def test_gates_are_converted_only_when_asked() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Sigmoid())
    assert [type(m) for m in convert(model, act="relu", copy_model=True)][1:] == [
        nn.Tanh, nn.Sigmoid
    ]
    out = convert(model, act="relu", act_types=(nn.Tanh,))
    assert [type(m) for m in out][1:] == [nn.ReLU, nn.Sigmoid]


# ------------------------------------------------------------------------------------------------
# per-channel activations
# ------------------------------------------------------------------------------------------------
def test_per_channel_source_passes_its_channel_count_on() -> None:
    model = nn.Sequential(nn.Conv2d(1, 5, 3), nn.PReLU(5), nn.Conv2d(5, 2, 3), nn.PReLU())
    out = convert(model, act="sau")
    assert [m.num_parameters for m in modules_of(out, SAU)] == [5, 1]
    assert out(torch.randn(2, 1, 7, 7)).shape == (2, 2, 3, 3)


def test_per_channel_inference_only_where_unambiguous() -> None:
    block = SharedReLUBlock(c=6)
    out = convert(block, act="sau", per_channel=True, copy_model=True)
    assert [m.num_parameters for m in modules_of(out, SAU)] == [6, 6]  # bn1; bn2 + x
    assert out(torch.randn(2, 6, 4, 4)).shape == (2, 6, 4, 4)
    # a linear layer's output has its features in dim 1 only when it is 2-d
    seq = nn.Sequential(nn.Linear(3, 7), nn.ReLU())
    unknown = convert(seq, act="prelu", per_channel=True, copy_model=True)
    assert unknown[1].num_parameters == 1  # no shapes known: ambiguous
    flat = convert(seq, act="prelu", per_channel=True, example_inputs=(torch.randn(2, 3),),
                   copy_model=True)
    assert flat[1].num_parameters == 7
    tokens = convert(seq, act="prelu", per_channel=True, example_inputs=(torch.randn(2, 5, 3),))
    assert tokens[1].num_parameters == 1 and tokens(torch.randn(2, 5, 3)).shape == (2, 5, 7)
    # without per_channel, scalar parameters
    assert convert(SharedReLUBlock(), act="sau").relu.num_parameters == 1


# ------------------------------------------------------------------------------------------------
# norms
# ------------------------------------------------------------------------------------------------
def test_norm_conversion_keeps_conv_weights_and_affine() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten())
    conv_weight = model[0].weight.detach().clone()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([2.0, 3.0, 4.0]))
        model[1].bias.fill_(0.5)
    out = convert(model, act="gelu", norm="agc")
    assert out is model and isinstance(out, nn.Sequential)
    assert isinstance(out[2], nn.GELU) and isinstance(out[1], AGC) and out[1].dim == 2
    torch.testing.assert_close(out[0].weight, conv_weight, rtol=0, atol=0)
    assert out[1].weight.tolist() == [2.0, 3.0, 4.0] and torch.all(out[1].bias == 0.5)
    x = torch.randn(2, 1, 5, 5)
    h = model[0](x)
    ref = F.gelu((h - h.mean((2, 3), keepdim=True)) * out[1].weight[:, None, None] + 0.5)
    torch.testing.assert_close(out(x), ref.flatten(1))


def test_shared_norm_gets_one_norm_per_call_site() -> None:
    class TwiceBN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)
            self.bn = nn.BatchNorm2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(self.conv(self.bn(x)))

    out = convert(TwiceBN(), norm="agc")
    agcs = modules_of(out, AGC)
    assert len(agcs) == 2 and agcs[0] is not agcs[1]
    assert sorted(call_counts(out, AGC, torch.randn(2, 2, 3, 3)).values()) == [1, 1]


def test_norm_dimensionality_and_round_trip() -> None:
    model = nn.Sequential(nn.Conv1d(2, 6, 3), nn.BatchNorm1d(6), nn.ReLU())
    out = convert(model, norm="bn")  # BN1d -> registry "bn" built with dim=1
    assert isinstance(out[1], nn.BatchNorm1d) and out[1].num_features == 6
    assert isinstance(out[2], nn.ReLU)  # act=None leaves activations alone
    agc = convert(out, norm="agc")
    assert isinstance(agc[1], AGC) and agc[1].dim == 1
    back = convert(agc, norm="bn")
    assert isinstance(back[1], nn.BatchNorm1d)
    assert back(torch.randn(2, 2, 9)).shape == (2, 6, 7)


def test_agc_act_becomes_norm_then_activation() -> None:
    torch.manual_seed(0)
    fused = AGCAct(3, act="leaky_relu", negative_slope=0.1)
    with torch.no_grad():
        fused.weight.copy_(torch.tensor([1.0, 2.0, -1.0]))
    model = nn.Sequential(nn.Conv2d(1, 3, 3), fused)
    x = torch.randn(2, 1, 6, 6)
    expected = model(x)
    out = convert(model, norm="agc")
    assert isinstance(out[1], nn.Sequential)
    assert [type(m) for m in out[1]] == [AGC, nn.LeakyReLU]
    torch.testing.assert_close(out(x), expected)
    assert [type(m) for m in convert(model, act="sau", norm="bn")[1]] == [nn.BatchNorm2d, SAU]
    with pytest.warns(UserWarning, match="AGCAct layers fuse a ReLU"):
        convert(nn.Sequential(nn.Conv2d(1, 3, 3), AGCAct(3)), act="sau")


def test_dtype_device_and_mode_follow_the_model() -> None:
    model = SharedReLUBlock().double().eval()
    out = convert(model, act="sau", norm="agc")
    for m in modules_of(out, (SAU, AGC)):
        assert next(m.parameters()).dtype == torch.float64
        assert not m.training
    assert out(torch.randn(1, 4, 3, 3, dtype=torch.float64)).dtype == torch.float64
    # mixed modes survive (a frozen norm stays in eval mode, the rest trains)
    model = SharedReLUBlock().train()
    model.bn1.eval()
    out = convert(model, act="sau", norm="agc", example_inputs=(torch.randn(1, 4, 3, 3),))
    assert [m.training for m in (out.bn1, out.bn2, out.conv1, out)] == [False, True, True, True]
    assert all(m.training for m in modules_of(out, SAU))


# ------------------------------------------------------------------------------------------------
# models torch.fx cannot trace
# ------------------------------------------------------------------------------------------------
def test_untraceable_without_sample_input_is_refused() -> None:
    with pytest.raises(ConversionError, match="cannot be traced by torch.fx.*example_inputs"):
        convert(Untraceable(shared=False), act="sau")


def test_untraceable_model_is_converted_module_by_module() -> None:
    torch.manual_seed(0)
    model = Untraceable(shared=False)
    x = torch.ones(3, 4)
    out = convert(model, act="sau", norm="gn", example_inputs=(x,))
    assert out is model
    sau = modules_of(out, SAU)
    assert len(sau) == 2 and sau[0] is not sau[1]
    assert isinstance(out.bn, nn.GroupNorm)
    assert sorted(call_counts(out, SAU, x).values()) == [1, 1]


def test_untraceable_model_with_a_shared_module_is_refused() -> None:
    model = Untraceable(shared=True)
    with pytest.raises(ConversionError, match=r"uses act, act2 more than once"):
        convert(model, act="prelu", example_inputs=(torch.ones(1, 4),))
    assert isinstance(model.act, nn.ReLU)  # nothing was changed
    # a parameter-free target may be shared harmlessly
    out = convert(model, act="gelu", example_inputs=(torch.ones(1, 4),))
    assert isinstance(out.act, nn.GELU)


def test_untraceable_model_with_functional_activations_is_refused() -> None:
    with pytest.raises(ConversionError, match="gelu"):
        convert(UntraceableFunctional(), act="sau", example_inputs=(torch.ones(1, 4),))
    out = convert(UntraceableFunctional(), act="sau", functional=False,
                  example_inputs=(torch.ones(1, 4),))
    assert not modules_of(out, SAU)


def test_optional_forward_arguments_are_traced_at_their_default() -> None:
    class WithFlag(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.act = nn.ReLU()

        def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
            if scale is not None:
                x = x * scale
            return self.act(self.fc(self.act(x)))

    model = WithFlag()
    out = convert(model, act="sau", copy_model=True)
    x = torch.randn(2, 3)
    s1, s2 = modules_of(out, SAU)
    torch.testing.assert_close(out(x), s2(model.fc(s1(x))))
    with pytest.raises(AssertionError, match="specialized"):
        out(x, torch.ones(3))
    # an argument the sample input gives stays an input of the graph
    scale = torch.full((3,), 2.0)
    given = convert(model, act="sau", copy_model=True, example_inputs=(x, scale))
    t1, t2 = modules_of(given, SAU)
    torch.testing.assert_close(given(x, scale), t2(model.fc(t1(x * scale))))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="nothing to convert"):
        convert(nn.Linear(2, 2))
    with pytest.raises(KeyError, match="unknown activation"):
        convert(nn.Sequential(nn.ReLU()), act="relux")
    with pytest.raises(TypeError, match="module instance"):
        convert(nn.Sequential(nn.ReLU()), act=nn.GELU())


def test_zoo_resnet_every_site_its_own_module() -> None:
    model = create_model("resnet8", width=4)
    n_relu = len(modules_of(model, nn.ReLU))
    out = convert(model, act="ash", norm="agc")
    x = torch.randn(2, 3, 16, 16)
    counts = call_counts(out, (ASH, AGC), x)
    assert len(counts) == len(modules_of(out, (ASH, AGC))) and set(counts.values()) == {1}
    assert len(modules_of(out, ASH)) == n_relu


def test_graph_module_result_round_trips_its_state_dict_and_converts_again(tmp_path) -> None:
    torch.manual_seed(0)
    model = SharedReLUBlock()
    x = torch.randn(2, 4, 5, 5)
    out = convert(model, act="sau", copy_model=True)
    assert isinstance(out, fx.GraphModule)
    with torch.no_grad():
        for i, m in enumerate(modules_of(out, SAU)):
            m.alpha.fill_(0.1 * (i + 1))
    twin = convert(model, act="sau", copy_model=True)
    torch.save(out.state_dict(), tmp_path / "m.pt")
    twin.load_state_dict(torch.load(tmp_path / "m.pt"))  # same keys, strict
    torch.testing.assert_close(twin(x), out(x), rtol=0, atol=0)
    back = convert(out, act="relu")
    assert not modules_of(back, SAU) and len(modules_of(back, nn.ReLU)) == 2
    torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("activation", ["relu", "gelu", "module"])
def test_torch_transformer_layers_get_a_fresh_activation(activation: str) -> None:
    torch.manual_seed(0)
    kind = nn.GELU() if activation == "module" else activation
    enc = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(8, 2, 16, activation=kind, batch_first=True, dropout=0.0),
        num_layers=2, enable_nested_tensor=False,
    )
    model = nn.Sequential(nn.Linear(4, 8), enc)
    out = convert(model, act="sau").eval()
    layers = list(out[1].layers)
    assert all(isinstance(layer.activation, SAU) for layer in layers)
    assert layers[0].activation is not layers[1].activation
    with torch.no_grad():
        for i, layer in enumerate(layers):
            layer.activation.alpha.fill_(0.5 + i)
    x = torch.randn(2, 5, 4)
    with torch.no_grad():  # eval + no_grad: torch's native fast path must not run ReLU/GELU
        fast = out(x)
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            slow = out(x)
        finally:
            torch.backends.mha.set_fastpath_enabled(True)
    torch.testing.assert_close(fast, slow)
