"""End-to-end checks of ``train_model``: learning, determinism, resume, checkpoints, config,
schedules, class weights, layer statistics, progress and segmentation metrics."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from actlab.data import DatasetSplits, load_dataset
from actlab.models import create_model
from actlab.train import (
    TrainConfig,
    enet_class_weights,
    load_checkpoint,
    segmentation_scores,
    train_model,
)
from actlab.train.metrics import confusion_matrix


@pytest.fixture(autouse=True)
def _one_thread():
    """The test machine's cores are shared: one intra-op thread is faster and steadier."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def digits() -> DatasetSplits:
    return load_dataset("digits", seed=0)


def _subset(ds: DatasetSplits, n_train: int, n_eval: int) -> DatasetSplits:
    def cut(t: TensorDataset, n: int) -> TensorDataset:
        return TensorDataset(*(x[:n] for x in t.tensors))

    return DatasetSplits(
        name=ds.name, task=ds.task, train=cut(ds.train, n_train), val=cut(ds.val, n_eval),
        test=cut(ds.test, n_eval), num_classes=ds.num_classes, in_channels=ds.in_channels,
        input_shape=ds.input_shape,
    )


@pytest.fixture(scope="module")
def small(digits) -> DatasetSplits:
    return _subset(digits, 192, 64)


def _tiny(seed: int = 0, norm: str = "bn") -> nn.Module:
    torch.manual_seed(seed)
    return create_model("tiny_cnn", num_classes=10, in_channels=1, act="relu", norm=norm,
                        width=8)


def _cfg(**kw) -> TrainConfig:
    base = {"epochs": 3, "batch_size": 32, "lr": 0.05, "schedule": "cosine", "device": "cpu",
            "eval_batch_size": 64}
    return TrainConfig(**{**base, **kw})


def _strip_time(history):
    return [{k: v for k, v in r.items() if k != "epoch_time"} for r in history]


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------------------------------------
# learning
# ---------------------------------------------------------------------------------------------
def test_tiny_cnn_learns_digits(digits):
    torch.manual_seed(0)
    model = create_model("tiny_cnn", num_classes=10, in_channels=1, act="relu", norm="bn")
    cfg = TrainConfig(epochs=3, batch_size=64, lr=0.05, schedule="cosine", device="cpu")
    res = train_model(model, digits, cfg, progress=False)
    # measured: test_acc = 0.9248 (359 test images; ~2 s of training on one CPU thread, plus
    # a one-off torch._dynamo import on the first optimizer built in the process)
    assert res.metrics["test_acc"] >= 0.90
    assert res.epochs_done == 3 and len(res.history) == 3
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    # final metrics are the LAST epoch's, never a best-epoch pick
    last = res.history[-1]
    for k in ("test_acc", "test_loss", "val_acc", "val_loss", "train_loss", "train_acc"):
        assert res.metrics[k] == last[k]
    assert res.metrics["num_params"] == sum(p.numel() for p in model.parameters())
    assert res.wall_time > 0 and res.peak_mem_mb > 0
    rec = res.history[0]
    assert rec["epoch"] == 1 and rec["lr"] == pytest.approx(0.05)
    expected = {"epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss",
                "test_acc", "epoch_time", "layer_stats"}
    assert expected <= rec.keys()
    json.dumps(res.history)  # JSON-serialisable


def test_test_loss_and_acc_match_a_direct_evaluation(small):
    model = _tiny()
    res = train_model(model, small, _cfg(epochs=1), progress=False)
    x, y = small.test.tensors
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert res.metrics["test_loss"] == pytest.approx(F.cross_entropy(out, y).item(), rel=1e-5)
    assert res.metrics["test_acc"] == pytest.approx((out.argmax(1) == y).double().mean().item())


# ---------------------------------------------------------------------------------------------
# determinism and resume
# ---------------------------------------------------------------------------------------------
def test_same_seed_twice_is_bit_identical(small):
    cfg = _cfg(epochs=2, augment="crop1+flip", seed=3)
    a, b = _tiny(), _tiny()
    ra = train_model(a, small, cfg, progress=False)
    rb = train_model(b, small, cfg, progress=False)
    assert _strip_time(ra.history) == _strip_time(rb.history)
    assert _same_weights(a, b)
    # a different seed (shuffling + augmentation) gives a different run
    c = _tiny()
    rc = train_model(c, small, cfg.replace(seed=4), progress=False)
    assert rc.history[-1]["train_loss"] != ra.history[-1]["train_loss"]


class _Stop(Exception):
    pass


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_resume_equals_uninterrupted_run(small, tmp_path, optimizer):
    # dropout-free model but with BN buffers, augmentation, warm-up + cosine, weight decay
    cfg = _cfg(epochs=3, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 3e-3,
               weight_decay=1e-4, warmup_epochs=1, augment="crop1+flip")
    full = _tiny()
    ref = train_model(full, small, cfg, checkpoint_path=tmp_path / "full.pt", progress=False)

    path = tmp_path / "run.pt"

    def stop_after_first(epoch, record):
        if epoch == 1:
            raise _Stop

    part = _tiny()
    with pytest.raises(_Stop):
        train_model(part, small, cfg, checkpoint_path=path, on_epoch=stop_after_first,
                    progress=False)
    assert load_checkpoint(path)["epoch"] == 1
    # scramble the global RNGs and use a fresh model: everything must come from the checkpoint
    torch.manual_seed(1234)
    resumed = _tiny(seed=99)
    seen = []
    res = train_model(resumed, small, cfg, checkpoint_path=path, progress=False,
                      on_epoch=lambda e, r: seen.append(e))
    assert seen == [2, 3]
    assert res.epochs_done == 3
    assert _strip_time(res.history) == _strip_time(ref.history)
    assert _same_weights(resumed, full)
    assert res.metrics == ref.metrics

    # a finished checkpoint resumes to a no-op
    again = train_model(_tiny(), small, cfg, checkpoint_path=path, progress=False)
    assert _strip_time(again.history) == _strip_time(ref.history)


def test_resume_rejects_changed_settings(small, tmp_path):
    path = tmp_path / "ck.pt"
    train_model(_tiny(), small, _cfg(epochs=1), checkpoint_path=path, progress=False)
    with pytest.raises(ValueError, match="lr: 0.05 -> 0.1"):
        train_model(_tiny(), small, _cfg(epochs=2, lr=0.1), checkpoint_path=path,
                    progress=False)


def test_checkpoint_is_atomic_and_loads_weights_only(small, tmp_path):
    path = tmp_path / "sub" / "ck.pt"
    model = _tiny()
    cfg = _cfg(epochs=2, optimizer="adam", lr=1e-3)
    res = train_model(model, small, cfg, checkpoint_path=path, progress=False)
    assert sorted(os.listdir(path.parent)) == ["ck.pt"]  # no .tmp left behind
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 2
    assert state["history"] == res.history
    # the checkpoint records the layer backend the run used (None resolves to the process's:
    # eager in the tests)
    assert state["config"] == cfg.replace(layer_backend="eager").to_dict()
    assert {"model", "optimizer", "scheduler", "rng", "auto_progress"} <= state.keys()
    assert {"torch", "numpy", "python", "generator"} <= state["rng"].keys()
    fresh = _tiny(seed=5)
    fresh.load_state_dict(state["model"])
    assert _same_weights(fresh, model)
    torch.save({"a": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an actlab training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------
def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"'epoch' \(did you mean 'epochs'\?\)"):
        TrainConfig.from_dict({"epoch": 3})
    cfg = TrainConfig.from_dict({"epochs": 3, "optimizer": "AdamW", "step_size": (2, 5)})
    assert cfg.optimizer == "adamw" and cfg.step_size == [2, 5]
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    json.dumps(cfg.to_dict())
    with pytest.raises(TypeError, match="mapping"):
        TrainConfig.from_dict([("epochs", 3)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kw,exc,match",
    [
        ({"epochs": 0}, ValueError, "epochs"),
        ({"batch_size": 2.0}, TypeError, "batch_size"),
        ({"optimizer": "rmsprop"}, ValueError, "optimizer must be one of 'sgd', 'adam'"),
        ({"schedule": "linear"}, ValueError, "schedule"),
        ({"lr_scaling": "sqrt"}, ValueError, "lr_scaling"),
        ({"lr": -1.0}, ValueError, "lr must be a number > 0"),
        ({"lr": float("nan")}, ValueError, "lr"),
        ({"momentum": 1.0}, ValueError, "momentum"),
        ({"weight_decay": -0.1}, ValueError, "weight_decay"),
        ({"class_weights": "inverse"}, ValueError, "class_weights"),
        ({"label_smoothing": 1.0}, ValueError, "label_smoothing"),
        ({"grad_clip": 0}, ValueError, "grad_clip"),
        ({"step_size": [5, 2]}, ValueError, "step_size"),
        ({"step_size": "10"}, TypeError, "step_size"),
        ({"device": "tpu"}, ValueError, "device"),
        ({"amp": "yes"}, TypeError, "amp"),
        ({"seed": None}, TypeError, "seed"),
        ({"augment": 3}, TypeError, "augment"),
        ({"nesterov": True, "optimizer": "adam"}, ValueError, "nesterov"),
    ],
)
def test_config_rejects_bad_values(kw, exc, match):
    with pytest.raises(exc, match=match):
        TrainConfig(**kw)


def test_train_model_input_errors(small):
    with pytest.raises(TypeError, match="nn.Module"):
        train_model(lambda x: x, small, _cfg(), progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown TrainConfig key"):
        train_model(_tiny(), small, {"epochs": 1, "bs": 4}, progress=False)
    with pytest.raises(ValueError, match="batch_size=512"):
        train_model(_tiny(), small, _cfg(batch_size=512), progress=False)
    with pytest.raises(TypeError, match="progress"):
        train_model(_tiny(), small, _cfg(epochs=1), progress="yes")  # type: ignore[arg-type]
    bad = _subset(small, 192, 64)
    bad.train = TensorDataset(small.train.tensors[0], small.train.tensors[1] + 10)
    with pytest.raises(ValueError, match="num_classes=10"):
        train_model(_tiny(), bad, _cfg(), progress=False)


# ---------------------------------------------------------------------------------------------
# schedule, linear scaling, progress
# ---------------------------------------------------------------------------------------------
def test_linear_lr_scaling_step_schedule_and_progress_callable(small):
    calls = []
    cfg = _cfg(epochs=3, lr=0.001, lr_scaling="linear", schedule="step", step_size=1,
               step_gamma=0.5, momentum=0.0)
    res = train_model(_tiny(), small, cfg, progress=lambda e, n, r: calls.append((e, n, r)))
    # lr = 0.001 x 32, halved each epoch
    assert [r["lr"] for r in res.history] == pytest.approx([0.032, 0.016, 0.008])
    assert [(e, n) for e, n, _ in calls] == [(1, 3), (2, 3), (3, 3)]
    assert calls[-1][2] is res.history[-1]


def test_progress_bar_runs(small, capsys):
    res = train_model(_tiny(), small, _cfg(epochs=1), progress=True)
    assert res.epochs_done == 1


def test_grad_clip_label_smoothing_and_bf16_autocast_run(small):
    cfg = _cfg(epochs=1, grad_clip=0.5, label_smoothing=0.1, amp=True, amp_dtype="bfloat16",
               nesterov=True, drop_last=False)
    res = train_model(_tiny(), small, cfg, progress=False)
    assert math.isfinite(res.metrics["train_loss"]) and math.isfinite(res.metrics["test_loss"])


def test_divergence_stops_training(small):
    res = train_model(_tiny(norm="none"), small, _cfg(epochs=4, lr=1e6, momentum=0.0,
                                                    schedule="none"), progress=False)
    assert res.diverged and res.epochs_done < 4


# ---------------------------------------------------------------------------------------------
# layer statistics and activity tracking
# ---------------------------------------------------------------------------------------------
class _Probe(nn.Module):
    """Identity that records whether it ran with ``track_activity`` set."""

    def __init__(self) -> None:
        super().__init__()
        self.track_activity = False
        self.tracked_calls = 0
        self.untracked_calls = 0
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        if self.track_activity:
            self.tracked_calls += 1
        else:
            self.untracked_calls += 1
        return x * self.scale

    def layer_stats(self) -> dict[str, float]:
        return {"scale": self.scale.item(), "tracked": float(self.track_activity)}


def test_layer_stats_are_collected_during_tracked_val_pass(small):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), _Probe())
    res = train_model(model, small, _cfg(epochs=2, eval_batch_size=32), progress=False)
    stats = res.history[-1]["layer_stats"]
    assert list(stats) == ["2"]
    assert stats["2"]["tracked"] == 1.0  # read while tracking was on
    assert stats["2"]["scale"] == pytest.approx(model[2].scale.item())
    probe = model[2]
    assert probe.track_activity is False  # restored
    assert probe.tracked_calls == 2 * 2  # val split: 64 samples / 32 per batch, 2 epochs
    # training (6 steps/epoch) and test passes (2 batches/epoch) ran untracked
    assert probe.untracked_calls == 2 * (6 + 2)
    off = train_model(nn.Sequential(nn.Flatten(), nn.Linear(64, 10), _Probe()), small,
                      _cfg(epochs=1, log_layer_stats=False), progress=False)
    assert off.history[0]["layer_stats"] == {}


# ---------------------------------------------------------------------------------------------
# class weights and segmentation
# ---------------------------------------------------------------------------------------------
class _PixelNet(nn.Module):
    def __init__(self, in_ch: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_ch, 8, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(8, num_classes, 1))

    def forward(self, x):
        return self.body(x)


def _seg_splits(num_classes: int = 3) -> DatasetSplits:
    """Random images whose label is the argmax channel of a blurred input (learnable)."""
    g = torch.Generator().manual_seed(0)

    def make(n):
        x = torch.randn(n, num_classes, 6, 6, generator=g)
        y = F.avg_pool2d(x, 3, 1, 1).argmax(1)
        y[y == 2] = torch.where(torch.rand(int((y == 2).sum()), generator=g) < 0.5, 2, 0)
        return TensorDataset(x, y)

    return DatasetSplits(name="toy_seg", task="segmentation", train=make(64), val=make(16),
                         test=make(16), num_classes=num_classes, in_channels=num_classes,
                         input_shape=(num_classes, 6, 6))


def test_segmentation_metrics_match_hand_computation():
    ds = _seg_splits()
    torch.manual_seed(0)
    model = _PixelNet(3, 3)
    res = train_model(model, ds, _cfg(epochs=2, batch_size=16, lr=0.1, eval_batch_size=5),
                      progress=False)
    rec = res.history[-1]
    for k in ("train_pixel_acc", "val_loss", "val_pixel_acc", "val_pixel_error", "val_miou",
              "test_loss", "test_pixel_acc", "test_pixel_error", "test_miou"):
        assert k in rec and res.metrics[k] == rec[k], k
    assert "test_acc" not in res.metrics
    x, y = ds.test.tensors
    model.eval()
    with torch.no_grad():
        pred = model(x).argmax(1)
    # hand computation: per-class intersection / union over classes present in pred or target
    ious = []
    for c in range(3):
        union = ((pred == c) | (y == c)).sum().item()
        if union:
            ious.append(((pred == c) & (y == c)).sum().item() / union)
    acc = (pred == y).double().mean().item()
    assert rec["test_pixel_acc"] == pytest.approx(acc)
    assert rec["test_pixel_error"] == pytest.approx(1 - acc)
    assert rec["test_miou"] == pytest.approx(sum(ious) / len(ious))
    assert segmentation_scores(confusion_matrix(pred, y, 3))["miou"] == pytest.approx(
        rec["test_miou"])


def test_enet_class_weights_are_used_in_the_loss():
    ds = _seg_splits()
    torch.manual_seed(0)
    model = _PixelNet(3, 3)
    res = train_model(model, ds, _cfg(epochs=1, batch_size=16, class_weights="enet"),
                      progress=False)
    w = enet_class_weights(ds.train.tensors[1], 3)
    assert not torch.allclose(w, torch.ones(3))  # the toy task is imbalanced
    x, y = ds.val.tensors
    model.eval()
    with torch.no_grad():
        ref = F.cross_entropy(model(x), y, weight=w).item()
    assert res.metrics["val_loss"] == pytest.approx(ref, rel=1e-5)


def test_ash_layer_stats_include_active_fraction(small):
    from actlab.nn.ash import ASH

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), ASH(k=0.3), nn.Flatten(),
                          nn.Linear(256, 10))
    res = train_model(model, small, _cfg(epochs=1), progress=False)
    stats = res.history[0]["layer_stats"]
    assert set(stats) == {"1"}
    assert set(stats["1"]) == {"z", "alpha", "active_fraction"}
    assert 0.0 < stats["1"]["active_fraction"] < 1.0
    assert stats["1"]["z"] == pytest.approx(model[1].z.item())
    assert model[1].track_activity is False


def test_augmentation_changes_training(small):
    cfg = _cfg(epochs=1, seed=1)
    plain = train_model(_tiny(), small, cfg, progress=False)
    aug = train_model(_tiny(), small, cfg.replace(augment="crop1+flip"), progress=False)
    assert plain.history[0]["train_loss"] != aug.history[0]["train_loss"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_amp_learns_and_resumes(digits, tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=64, lr=0.05, schedule="cosine", device="cuda",
                      amp=True, deterministic=True)

    def model():
        torch.manual_seed(0)
        return create_model("tiny_cnn", num_classes=10, in_channels=1, act="relu", norm="bn")

    full = model()
    ref = train_model(full, digits, cfg, progress=False)
    assert ref.metrics["test_acc"] >= 0.90
    assert ref.peak_mem_mb > 0

    path = tmp_path / "ck.pt"

    def stop(epoch, record):
        if epoch == 1:
            raise _Stop

    with pytest.raises(_Stop):
        train_model(model(), digits, cfg, checkpoint_path=path, on_epoch=stop, progress=False)
    state = torch.load(path, weights_only=True)
    assert state["scaler"] is not None and "scale" in state["scaler"]
    resumed = model()
    res = train_model(resumed, digits, cfg, checkpoint_path=path, progress=False)
    assert _strip_time(res.history) == _strip_time(ref.history)
    assert _same_weights(resumed, full)
