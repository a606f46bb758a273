"""Pure parts of the training engine, checked against independent hand / float64 references:
segmentation metrics, ENet class weights, the split cross-entropy, the lr schedule, batch
sharding and RNG capture."""

from __future__ import annotations

import io
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from actlab.train import (
    class_frequencies,
    confusion_matrix,
    cross_entropy_parts,
    enet_class_weights,
    get_rng_state,
    lr_factor,
    seed_everything,
    segmentation_scores,
    set_rng_state,
    shard_bounds,
)
from actlab.train.loss import loss_normaliser


# ---------------------------------------------------------------------------------------------
# segmentation metrics
# ---------------------------------------------------------------------------------------------
def _hand_scores(pred: np.ndarray, target: np.ndarray, num_classes: int) -> dict[str, float]:
    """Pixel accuracy / mIoU by explicit per-class set counting (ignore targets outside [0,C))."""
    keep = (target >= 0) & (target < num_classes)
    p, t = pred[keep], target[keep]
    acc = float(np.mean(p == t))
    ious = []
    for c in range(num_classes):
        inter = np.sum((p == c) & (t == c))
        union = np.sum((p == c) | (t == c))
        if union > 0:  # class present in the prediction or the target
            ious.append(inter / union)
    return {"pixel_acc": acc, "pixel_error": 1 - acc, "miou": float(np.mean(ious))}


def test_segmentation_scores_small_hand_example():
    # 2x3 map, 4 classes; class 3 appears nowhere -> skipped by mIoU
    target = torch.tensor([[0, 0, 1], [1, 2, 2]])
    pred = torch.tensor([[0, 1, 1], [1, 2, 0]])
    cm = confusion_matrix(pred, target, 4)
    assert cm.tolist() == [
        [1, 1, 0, 0],
        [0, 2, 0, 0],
        [1, 0, 1, 0],
        [0, 0, 0, 0],
    ]
    s = segmentation_scores(cm)
    # IoU_0 = 1/3 (inter {0,0}, union {(0,0),(0,1),(1,2)}), IoU_1 = 2/3, IoU_2 = 1/2
    assert s["pixel_acc"] == pytest.approx(4 / 6)
    assert s["pixel_error"] == pytest.approx(2 / 6)
    assert s["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)


def test_segmentation_scores_random_vs_hand_with_ignore_label():
    g = torch.Generator().manual_seed(3)
    num_classes = 5
    target = torch.randint(0, num_classes - 1, (4, 7, 9), generator=g)  # class 4 never a target
    pred = torch.randint(0, num_classes, (4, 7, 9), generator=g)
    target[0, :2] = 255  # ignored pixels
    target[1, 3] = -100
    s = segmentation_scores(confusion_matrix(pred, target, num_classes))
    ref = _hand_scores(pred.numpy(), target.numpy(), num_classes)
    for k in ref:
        assert s[k] == pytest.approx(ref[k], abs=1e-12), k


def test_segmentation_scores_empty_and_bad_shapes():
    s = segmentation_scores(torch.zeros(3, 3, dtype=torch.int64))
    assert all(math.isnan(v) for v in s.values())
    with pytest.raises(ValueError, match="square"):
        segmentation_scores(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.zeros(2, 2), torch.zeros(2, 3), 2)
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix(torch.zeros(2), torch.zeros(2), 0)


# ---------------------------------------------------------------------------------------------
# ENet class weights
# ---------------------------------------------------------------------------------------------
def test_enet_class_weights_vs_hand():
    labels = torch.tensor([0] * 70 + [1] * 20 + [2] * 10 + [-100] * 5)
    p = np.array([0.7, 0.2, 0.1, 0.0])
    w = 1.0 / np.log(1.02 + p)
    w = w / w.mean()
    got = enet_class_weights(labels, 4)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), w, rtol=1e-6)
    assert got.mean().item() == pytest.approx(1.0, abs=1e-6)
    # rarer classes weigh more
    assert got[0] < got[1] < got[2] < got[3]
    np.testing.assert_allclose(class_frequencies(labels, 4).numpy(), p)


def test_enet_class_weights_errors():
    with pytest.raises(ValueError, match="no valid labels"):
        enet_class_weights(torch.tensor([-1, 7]), 3)
    with pytest.raises(ValueError, match="k must be > 1"):
        enet_class_weights(torch.tensor([0, 1]), 2, k=1.0)


# ---------------------------------------------------------------------------------------------
# cross-entropy split into (sum, normaliser)
# ---------------------------------------------------------------------------------------------
def _naive_ce(logits, target, weight, s):
    """float64 per-element weighted, label-smoothed CE mean over valid targets (loops)."""
    z = logits.double()
    c = z.shape[1]
    z = z.movedim(1, -1).reshape(-1, c)
    t = target.reshape(-1)
    w = torch.ones(c, dtype=torch.float64) if weight is None else weight.double()
    num = den = 0.0
    for i in range(len(t)):
        ti = int(t[i])
        if not 0 <= ti < c:
            continue
        logq = z[i] - torch.logsumexp(z[i], 0)
        li = (1 - s) * w[ti] * -logq[ti] + s * sum(w[k] * -logq[k] for k in range(c)) / c
        num += float(li)
        den += float(w[ti])
    return num / den, den


@pytest.mark.parametrize("spatial", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_parts_vs_naive(spatial, weighted, smoothing):
    g = torch.Generator().manual_seed(1)
    shape = (3, 4, 2, 3) if spatial else (6, 4)
    logits = torch.randn(shape, generator=g)
    target = torch.randint(0, 4, (shape[0],) + shape[2:], generator=g)
    target.view(-1)[1] = -100  # ignored
    weight = torch.tensor([0.5, 1.0, 2.0, 1.5]) if weighted else None
    total, norm = cross_entropy_parts(logits, target, weight, smoothing)
    ref, ref_den = _naive_ce(logits, target, weight, smoothing)
    assert (total / norm).item() == pytest.approx(ref, rel=1e-5)
    assert norm.item() == pytest.approx(ref_den, rel=1e-6)
    # and it agrees with torch's own mean reduction
    torch_mean = F.cross_entropy(logits, target, weight=weight, label_smoothing=smoothing,
                                 ignore_index=-100)
    assert (total / norm).item() == pytest.approx(torch_mean.item(), rel=1e-5)


def test_cross_entropy_parts_shards_add_up():
    """Sum over shards / global normaliser == the loss of the whole batch."""
    g = torch.Generator().manual_seed(2)
    logits, target = torch.randn(10, 3, generator=g), torch.randint(0, 3, (10,), generator=g)
    w = torch.tensor([1.0, 3.0, 0.5])
    whole, norm = cross_entropy_parts(logits, target, w)
    parts = [cross_entropy_parts(logits[a:b], target[a:b], w)[0] for a, b in ((0, 4), (4, 10))]
    assert torch.allclose(sum(parts), whole)
    assert torch.allclose(loss_normaliser(target, 3, w), norm)


def test_cross_entropy_parts_shape_errors():
    with pytest.raises(ValueError, match="target shape"):
        cross_entropy_parts(torch.zeros(4, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="logits"):
        cross_entropy_parts(torch.zeros(4), torch.zeros(4, dtype=torch.long))


# ---------------------------------------------------------------------------------------------
# learning-rate schedule
# ---------------------------------------------------------------------------------------------
def test_lr_factor_cosine_with_warmup_by_hand():
    kw = {"steps_per_epoch": 4, "epochs": 3, "schedule": "cosine", "warmup_epochs": 1}
    # warm-up: (k+1)/W with W = 4
    assert [lr_factor(k, **kw) for k in range(4)] == [0.25, 0.5, 0.75, 1.0]
    # cosine over the remaining 8 steps, starting at 1 and reaching 0 at k = 12
    for k in range(4, 13):
        assert lr_factor(k, **kw) == pytest.approx(0.5 * (1 + math.cos(math.pi * (k - 4) / 8)))
    assert lr_factor(12, **kw) == pytest.approx(0.0, abs=1e-12)


def test_lr_factor_poly_matches_torch_polynomial_lr():
    # DeepLab's poly policy: torch's PolynomialLR(total_iters=T, power=0.9) is the reference
    kw = {"steps_per_epoch": 5, "epochs": 4, "schedule": "poly"}
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    ref = torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=20, power=0.9)
    for k in range(21):
        assert lr_factor(k, **kw) == pytest.approx(opt.param_groups[0]["lr"], abs=1e-12), k
        opt.step()
        ref.step()
    assert lr_factor(10, **kw) == pytest.approx(0.5**0.9)
    # after a one-epoch warm-up the decay runs over the remaining 15 steps
    warm = [lr_factor(k, warmup_epochs=1, **kw) for k in range(5, 21)]
    assert warm == pytest.approx([(1 - j / 15) ** 0.9 for j in range(16)])


def test_lr_factor_step_and_none():
    kw = {"steps_per_epoch": 2, "epochs": 10}
    assert lr_factor(7, **kw) == 1.0
    f = [lr_factor(k, schedule="step", step_size=2, step_gamma=0.5, **kw) for k in range(10)]
    # epoch index e = k // 2, decays = e // 2
    assert f == [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25]
    f = [lr_factor(k, schedule="step", step_size=[1, 3], step_gamma=0.1, **kw) for k in range(8)]
    assert f == pytest.approx([1, 1, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01])
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(0, schedule="linear", **kw)


# ---------------------------------------------------------------------------------------------
# sharding and RNG capture
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,k", [(10, 3), (7, 7), (64, 2), (5, 4)])
def test_shard_bounds_tile_the_batch(n, k):
    bounds = [shard_bounds(n, r, k) for r in range(k)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(bounds[i][1] == bounds[i + 1][0] for i in range(k - 1))
    sizes = [b - a for a, b in bounds]
    assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="rank"):
        shard_bounds(n, k, k)


def test_rng_state_round_trip_through_weights_only_file():
    gen = torch.Generator().manual_seed(5)
    seed_everything(11)
    random.random()
    np.random.normal()  # noqa: NPY002 - sets numpy's cached gaussian
    state = get_rng_state(gen)
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)

    def draw():
        return (torch.rand(3).tolist(), np.random.rand(3).tolist(),  # noqa: NPY002
                [random.random() for _ in range(3)], torch.rand(3, generator=gen).tolist())

    first = draw()
    seed_everything(99)
    gen.manual_seed(0)
    set_rng_state(loaded, gen)
    assert draw() == first


def test_seed_everything_rejects_non_int():
    with pytest.raises(TypeError, match="seed"):
        seed_everything(1.5)  # type: ignore[arg-type]
