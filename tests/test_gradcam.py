"""Grad-CAM against a hand-written computation with torch.autograd.grad."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from actlab.report.gradcam import find_last_conv, gradcam, resolve_layer


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 5, 3, stride=2, padding=1)
        self.act = nn.ReLU(inplace=True)  # in place right after the target layer
        self.fc = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(h.mean(dim=(2, 3)))


def _naive(model: _Tiny, x: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
    a = model.conv2(torch.relu(model.conv1(x)))
    logits = model.fc(torch.relu(a).mean(dim=(2, 3)))
    (g,) = torch.autograd.grad(logits[torch.arange(len(x)), cls].sum(), a)
    out = []
    for i in range(len(x)):
        w = g[i].mean(dim=(1, 2))  # (K,)
        cam = torch.relu(sum(w[k] * a[i, k] for k in range(a.shape[1])))
        up = F.interpolate(cam[None, None], size=x.shape[2:], mode="bilinear",
                           align_corners=False)[0, 0]
        lo, hi = up.min(), up.max()
        out.append((up - lo) / (hi - lo) if hi > lo else torch.zeros_like(up))
    return torch.stack(out).detach()


def _model() -> _Tiny:
    torch.manual_seed(0)
    return _Tiny().double().eval()


def test_matches_naive_computation_and_leaves_no_trace():
    model = _model()
    x = torch.randn(4, 2, 9, 9, dtype=torch.float64)
    cls = torch.tensor([0, 2, 1, 2])
    got = gradcam(model, x, cls)
    want = _naive(model, x, cls)
    assert got.shape == (4, 9, 9)
    assert torch.allclose(got, want, atol=1e-12)
    assert float(got.min()) == 0.0 and float(got.amax(dim=(1, 2)).min()) in (0.0, 1.0)
    # hooks removed, parameter gradients untouched
    assert all(not m._forward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_default_target_is_predicted_class_and_layer_is_last_conv():
    model = _model()
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    pred = model(x).argmax(dim=1)
    assert find_last_conv(model) == "conv2"
    assert torch.equal(gradcam(model, x), gradcam(model, x, pred, layer="conv2"))
    assert torch.equal(gradcam(model, x, 1), gradcam(model, x, [1, 1, 1]))


def test_named_layer_and_module_layer():
    model = _model()
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    a = model.conv1(x)
    logits = model.fc(torch.relu(model.conv2(torch.relu(a))).mean(dim=(2, 3)))
    (g,) = torch.autograd.grad(logits[:, 1].sum(), a)
    cam = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1)).detach()  # 8x8: no resize
    lo = cam.amin(dim=(1, 2), keepdim=True)
    want = (cam - lo) / (cam.amax(dim=(1, 2), keepdim=True) - lo)
    assert torch.allclose(gradcam(model, x, 1, layer="conv1"), want, atol=1e-12)
    assert torch.equal(gradcam(model, x, 1, layer=model.conv1), gradcam(model, x, 1, "conv1"))


def test_hooks_removed_on_error():
    model = _model()
    with pytest.raises(RuntimeError):
        gradcam(model, torch.randn(1, 3, 8, 8, dtype=torch.float64))  # wrong channel count
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("kwargs, msg", [
    ({"layer": "conv9"}, "no submodule named 'conv9'.*conv1, conv2"),
    ({"layer": nn.Conv2d(1, 1, 1)}, "not a submodule"),
    ({"target": [0, 1]}, "target has 2 classes for a batch of 3"),
    ({"target": 3}, r"target classes must be in \[0, 3\)"),
    ({"layer": "fc"}, "must output \\(N, K, \\*spatial\\)"),
])
def test_bad_arguments(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        gradcam(_model(), torch.randn(3, 2, 8, 8, dtype=torch.float64), **kwargs)


def test_no_conv_layer():
    with pytest.raises(ValueError, match="has no Conv1d/2d/3d layer"):
        resolve_layer(nn.Sequential(nn.Linear(2, 2)), None)


@pytest.mark.parametrize("model_name, shape", [("tiny_cnn", (2, 1, 8, 8)),
                                                ("cnn1d", (2, 1, 40))])
def test_zoo_classifiers(model_name, shape):
    from actlab.registry import MODELS

    torch.manual_seed(0)
    model = MODELS.build(model_name, num_classes=10).eval()
    cam = gradcam(model, torch.randn(*shape))
    assert cam.shape == (shape[0], *shape[2:])
    assert float(cam.min()) >= 0 and float(cam.max()) <= 1


def test_figure_layout():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from actlab.registry import MODELS
    from actlab.report.gradcam import gradcam_figure

    torch.manual_seed(0)
    models = {a: MODELS.build("tiny_cnn", num_classes=10, act=a) for a in ("relu", "sau")}
    for m in models.values():
        m.train()
    fig = gradcam_figure(models, torch.randn(3, 1, 8, 8), [1, 2, 3])
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 3 * 3
    assert image_axes[1].get_title().startswith("relu: ")
    assert all(m.training for m in models.values())  # modes restored
    import matplotlib.pyplot as plt

    plt.close(fig)
