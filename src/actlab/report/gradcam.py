"""Grad-CAM class-activation maps for any zoo classifier, and a side-by-side figure.

Grad-CAM (R. R. Selvaraju et al., "Grad-CAM: Visual explanations from deep networks via
gradient-based localization", ICCV 2017). For a target layer with activations ``A`` of shape
(N, K, *spatial) and the class score ``y_c`` (the logit of class ``c``, before softmax)::

    w_k   = mean over positions of ∂y_c / ∂A_k                       (one weight per channel)
    L     = ReLU(Σ_k w_k · A_k)                                      (at the layer's resolution)
    map   = upsample(L) to the input size (bilinear for 2-d, linear / trilinear for 1-d / 3-d)
    map   = (map − min) / (max − min) per sample  (all zeros where the map is constant)

The target layer defaults to the last ``nn.Conv1d/2d/3d`` met when walking ``model.modules()``
(registration order) and can be named (``"features.conv3"``, a dotted ``named_modules`` name).
Its output is captured by a forward hook (the hook hands a copy downstream, so an in-place
activation after the layer does not overwrite the captured tensor) and ``∂y_c/∂A`` is taken with
``torch.autograd.grad``, so parameter ``.grad`` fields are untouched; the hook is removed when
the call returns, also on error.

The ASH paper (K. Lee, H. Lee, J. Yang, J. Y. Hwang) compares activations with Grad-CAM maps;
we could not read its text from this machine to say whether it scores localisation against
object boxes. This module gives the maps and :func:`gradcam_figure` a qualitative side-by-side
comparison; no localisation score is computed (the bundled data have no boxes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["find_last_conv", "gradcam", "gradcam_figure", "resolve_layer"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def find_last_conv(model: nn.Module) -> str:
    """Dotted name of the last ``nn.Conv1d/2d/3d`` in ``model.named_modules()`` order."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, _CONVS):
            last = name
    if last is None:
        raise ValueError(
            f"{type(model).__name__} has no Conv1d/2d/3d layer: pass the Grad-CAM target layer "
            "by name (layer='...')"
        )
    return last


def resolve_layer(model: nn.Module, layer: str | nn.Module | None) -> nn.Module:
    """The target module: ``None`` → the last conv, a name → that submodule, a module → itself."""
    if layer is None:
        layer = find_last_conv(model)
    if isinstance(layer, nn.Module):
        if all(m is not layer for m in model.modules()):
            raise ValueError("the Grad-CAM target layer is not a submodule of the model")
        return layer
    modules = dict(model.named_modules())
    if layer not in modules:
        convs = [n for n, m in modules.items() if isinstance(m, _CONVS)]
        raise ValueError(
            f"no submodule named {layer!r} in {type(model).__name__}; conv layers: "
            f"{', '.join(convs) or 'none'}"
        )
    return modules[layer]


def gradcam(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor | Sequence[int] | int | None = None,
    layer: str | nn.Module | None = None,
) -> torch.Tensor:
    """Grad-CAM maps of ``model`` for the inputs ``x`` (N, C_in, *spatial).

    Args:
        model: a classifier returning logits (N, num_classes); used as it is (call ``.eval()``
            first for batch-norm models, as for any inference).
        x: input batch.
        target: class per sample (a tensor / sequence of N ints or one int for all), or None
            for each sample's predicted class.
        layer: target layer (see :func:`resolve_layer`).

    Returns:
        (N, *spatial of x) maps in [0, 1], detached.
    """
    module = resolve_layer(model, layer)
    captured: list[torch.Tensor] = []

    def hook(mod: nn.Module, args: Any, out: Any) -> torch.Tensor:
        if not isinstance(out, torch.Tensor):
            raise TypeError(
                f"the Grad-CAM target layer returned {type(out).__name__}, not a tensor"
            )
        captured.append(out)
        return out.clone()  # downstream in-place ops change the copy, not the captured tensor

    handle = module.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = model(x)
    finally:
        handle.remove()
    if not captured:
        raise ValueError("the Grad-CAM target layer was not called in the forward pass")
    if logits.dim() != 2:
        raise ValueError(f"Grad-CAM needs logits (N, classes), got shape {tuple(logits.shape)}")
    acts = captured[-1]
    if acts.dim() < 3:
        raise ValueError(
            f"the Grad-CAM target layer must output (N, K, *spatial), got {tuple(acts.shape)}"
        )
    n = logits.shape[0]
    if target is None:
        cls = logits.argmax(dim=1)
    elif isinstance(target, int):
        cls = torch.full((n,), target, dtype=torch.long, device=logits.device)
    else:
        cls = torch.as_tensor(target, dtype=torch.long, device=logits.device).reshape(-1)
        if cls.numel() != n:
            raise ValueError(f"target has {cls.numel()} classes for a batch of {n} inputs")
    if ((cls < 0) | (cls >= logits.shape[1])).any():
        raise ValueError(f"target classes must be in [0, {logits.shape[1]}), got {cls.tolist()}")
    score = logits.gather(1, cls[:, None]).sum()  # samples are independent in eval mode
    (grads,) = torch.autograd.grad(score, acts)
    spatial = tuple(range(2, acts.dim()))
    weights = grads.mean(dim=spatial, keepdim=True)
    cam = torch.relu((weights * acts).sum(dim=1, keepdim=True)).detach()
    size = tuple(x.shape[2:])
    if cam.shape[2:] != size:
        cam = F.interpolate(cam, size=size, mode=_MODES[len(size)], align_corners=False)
    cam = cam[:, 0]
    flat = cam.reshape(n, -1)
    lo = flat.min(dim=1).values.view(n, *([1] * len(size)))
    span = (flat.max(dim=1).values.view(n, *([1] * len(size))) - lo)
    return torch.where(span > 0, (cam - lo) / span.clamp(min=torch.finfo(cam.dtype).tiny),
                       torch.zeros_like(cam))


def gradcam_figure(
    models: Mapping[str, nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    *,
    layer: str | None = None,
    cmap: str = "viridis",
    class_names: Sequence[str] | None = None,
    outline: bool = True,
) -> Any:
    """A matplotlib Figure: one row per image, the input then each model's Grad-CAM map.

    Maps are for the true label (``labels``); each panel title gives the model name and its
    predicted class (marked ✗ when wrong). ``images`` are (N, C, H, W); the first channel (or
    the channel mean) is drawn in grey. ``cmap`` should be perceptually uniform and colour-blind
    safe (``viridis``, ``cividis``). ``outline`` draws the input's half-intensity contour in white
    over each map, so that the map can be read against the object.
    """
    import matplotlib.pyplot as plt

    from actlab.report.style import paper_style

    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    n = images.shape[0]
    if labels.numel() != n:
        raise ValueError(f"{labels.numel()} labels for {n} images")
    maps, preds = {}, {}
    for name, model in models.items():
        was_training = model.training
        model.eval()
        try:
            maps[name] = gradcam(model, images, labels, layer=layer)
            with torch.no_grad():
                preds[name] = model(images).argmax(dim=1)
        finally:
            model.train(was_training)
    names = (lambda c: class_names[c]) if class_names is not None else str
    cols = 1 + len(models)
    with paper_style():
        fig, axes = plt.subplots(n, cols, figsize=(1.25 * cols + 0.6, 1.3 * n + 0.5),
                                 squeeze=False, layout="constrained")
        grey = images.float().mean(dim=1) if images.shape[1] > 1 else images[:, 0].float()
        image = None
        for i in range(n):
            axes[i, 0].imshow(grey[i].cpu().numpy(), cmap="gray")
            axes[i, 0].set_title(f"label {names(int(labels[i]))}", fontsize=8)
            for j, name in enumerate(models, start=1):
                image = axes[i, j].imshow(maps[name][i].cpu().numpy(), cmap=cmap, vmin=0, vmax=1)
                if outline and grey.dim() == 3:
                    g = grey[i].cpu().numpy()
                    level = float(g.min() + 0.5 * (g.max() - g.min()))
                    if g.max() > g.min():
                        axes[i, j].contour(g, levels=[level], colors="white", linewidths=0.7)
                p = int(preds[name][i])
                mark = "" if p == int(labels[i]) else " ✗"
                axes[i, j].set_title(f"{name}: {names(p)}{mark}", fontsize=8)
            for ax in axes[i]:
                ax.set_xticks([])
                ax.set_yticks([])
        if image is not None:
            bar = fig.colorbar(image, ax=axes[:, 1:], shrink=0.6, location="right")
            bar.set_label("Grad-CAM (true class)", fontsize=8)
    return fig
