"""``train_model``: one training loop for classification and segmentation.

Each epoch: shuffle the training split with a seeded ``torch.Generator``, take global batches of
``cfg.batch_size`` samples (or the batches the task plans from that permutation, e.g. seq2seq's
length bucketing: ``Task.batch_plan``; augmented with the same generator), step the optimizer
and the per-step schedule, then evaluate the val and test splits, record one history entry,
write the checkpoint (atomically) and call ``on_epoch``. The test split is evaluated every
epoch for the curves but never used to select anything: the final metrics are those of the last
epoch.

Reproducibility: with the same seed on the CPU two runs give bit-identical histories and
weights, and a run resumed from its checkpoint ends exactly where an uninterrupted run ends
(the checkpoint holds the model, optimizer, schedule, grad scaler and every RNG state).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from actlab.functional import backends
from actlab.train.batches import EpochBatches, eval_tensors, make_loader, targets_of
from actlab.train.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from actlab.train.config import TrainConfig
from actlab.train.distributed import DistInfo, init_distributed, shard_bounds
from actlab.train.distributed import all_reduce_sum as _all_reduce_sum
from actlab.train.evaluate import collect_layer_stats, tracking_activity
from actlab.train.gems import GEMS
from actlab.train.loggers import EpochLogger
from actlab.train.metrics import enet_class_weights
from actlab.train.optim import build_optimizer, build_scheduler
from actlab.train.progress import EpochProgress, ProgressArg
from actlab.train.rng import get_rng_state, seed_everything, set_rng_state

__all__ = ["TrainResult", "train_model", "resolve_device", "final_metrics", "RESUME_FREE_KEYS"]

#: settings that may differ between a checkpoint and the run resuming from it
RESUME_FREE_KEYS = frozenset({"epochs", "device", "eval_batch_size", "log_layer_stats",
                              "loader", "num_workers"})

#: on CUDA, training tensors up to this share of the device memory are moved there once
_DEVICE_DATA_SHARE = 0.25


@dataclass
class TrainResult:
    """What :func:`train_model` returns.

    ``wall_time`` is the sum of the epochs' ``epoch_time`` (so a resumed run reports the time of
    all its epochs); ``peak_mem_mb`` is the peak CUDA memory allocated during this call, or the
    process's peak resident set size on the CPU. ``diverged`` is True when training stopped
    early because the training loss became non-finite.
    """

    history: list[dict[str, Any]]
    metrics: dict[str, float]
    wall_time: float
    peak_mem_mb: float
    epochs_done: int
    diverged: bool = False
    config: dict[str, Any] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA if available else CPU; CUDA names are checked for availability."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available")
    return device


def _metric_keys(task: str) -> tuple[str, ...]:
    from actlab.tasks import task_type
    return task_type(task).metric_keys()


def final_metrics(history: list[dict[str, Any]], task: str, num_params: int) -> dict[str, float]:
    """The last epoch's metrics (no best-epoch picking) plus ``num_params``."""
    last = history[-1] if history else {}
    out = {k: float(last.get(k, math.nan)) for k in _metric_keys(task)}
    out["num_params"] = float(num_params)
    return out


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    except (ImportError, OSError):  # pragma: no cover - non-POSIX
        return math.nan


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _check_batch_sizes(batches: EpochBatches, world_size: int) -> None:
    """Every planned batch must give each process at least one pair."""
    smallest = min((len(b) for b in batches), default=0)
    if smallest < world_size:
        raise ValueError(f"a planned training batch has {smallest} samples, fewer than the "
                         f"{world_size} processes (raise batch_tokens or batch_size)")


def _check_resume(saved: Mapping[str, Any], cfg: TrainConfig, path: str) -> None:
    saved = {"layer_backend": "eager", **saved}  # written before the setting existed: eager
    now = cfg.to_dict()
    default = TrainConfig.defaults()  # settings added after the checkpoint was written
    diff = sorted(k for k in now if k not in RESUME_FREE_KEYS
                  and saved.get(k, default.get(k)) != now[k])
    if diff:
        pairs = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in diff)
        raise ValueError(
            f"checkpoint {path} was written with different training settings ({pairs}); "
            "delete it or use the original settings to resume"
        )


@contextlib.contextmanager
def _determinism(enabled: bool, device: torch.device):
    """Deterministic kernels when asked; cuDNN autotuning otherwise (CUDA). Restored on exit."""
    old = (torch.are_deterministic_algorithms_enabled(),
           torch.is_deterministic_algorithms_warn_only_enabled(),
           torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old[0], warn_only=old[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = old[2], old[3]


def train_model(
    model: nn.Module,
    splits: Any,
    cfg: TrainConfig | Mapping[str, Any],
    *,
    checkpoint_path: str | os.PathLike[str] | None = None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
    progress: ProgressArg = True,
    distributed: bool = False,
    loggers: Sequence[EpochLogger] = (),
    task_options: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` on ``splits`` (an ``actlab.data.DatasetSplits``) as ``cfg`` says.

    Args:
        model: the network; called as ``model(x)`` -> logits ``(N, C)`` or ``(N, C, *spatial)``.
        splits: object with ``train`` / ``val`` / ``test`` ``TensorDataset``s of
            ``(inputs, targets)``, ``num_classes`` and ``task``.
        cfg: a :class:`TrainConfig` or a mapping for :meth:`TrainConfig.from_dict`.
        checkpoint_path: written after every epoch; if it exists, training resumes from it.
        on_epoch: ``on_epoch(epoch, record)`` after each epoch's checkpoint is written.
        progress: True for a tqdm bar over epochs, False for none, or a callable
            ``progress(epoch, epochs, record)`` called after each epoch.
        distributed: data-parallel over the processes started by torchrun (see
            :mod:`actlab.train.distributed`); only rank 0 checkpoints, reports and logs.
        loggers: experiment trackers (:mod:`actlab.train.loggers`): ``log_epoch(epoch,
            record)`` after ``on_epoch``, ``close(status)`` at the end (rank 0 only).
        task_options: keyword options of the task (:func:`actlab.tasks.build_task`), e.g.
            ``{"beam_size": 1}`` for seq2seq; they add to the dataset's ``task_options``.

    Returns:
        a :class:`TrainResult`; history records are described in the package docstring.
    """
    if not isinstance(cfg, TrainConfig):
        cfg = TrainConfig.from_dict(cfg)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    task, num_classes = splits.task, int(splits.num_classes)
    from actlab.tasks import task_type
    task_type(task)
    if cfg.loss != "ce" and task != "segmentation":
        raise ValueError(f"loss={cfg.loss!r} needs a segmentation task, got {task!r}")

    device = resolve_device(cfg.device)
    world = init_distributed(device.type) if distributed else DistInfo()
    if world.active and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    if cfg.batch_size < world.world_size:
        raise ValueError(
            f"batch_size={cfg.batch_size} is smaller than the number of processes "
            f"({world.world_size}); every process needs at least one sample per step"
        )

    # the layers' math for this run, recorded in the result; "auto" budgets start afresh so that
    # which steps run compiled depends on this run only (not on what the process ran before)
    cfg = cfg.replace(layer_backend=cfg.layer_backend or backends.get_backend())
    with _determinism(cfg.deterministic, device), backends.backend(cfg.layer_backend):
        backends.restart_auto()
        return _train(model, splits, cfg, task, num_classes, device, world,
                      None if checkpoint_path is None else os.fspath(checkpoint_path),
                      on_epoch, progress, loggers if world.is_main else (),
                      dict(task_options or {}))


def _train(
    model: nn.Module,
    splits: Any,
    cfg: TrainConfig,
    task: str,
    num_classes: int,
    device: torch.device,
    world: DistInfo,
    checkpoint_path: str | None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None,
    progress: ProgressArg,
    loggers: Sequence[EpochLogger] = (),
    task_options: dict[str, Any] | None = None,
) -> TrainResult:
    seed_everything(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    # ---- the task (loss, metrics, and how training batches are formed) ----------------------
    weight = None
    if cfg.class_weights == "enet":
        weight = enet_class_weights(targets_of(splits.train), num_classes).to(device)
    from actlab.tasks import build_task
    criterion = {"loss": cfg.loss} if cfg.loss != "ce" else {}  # segmentation only (checked)
    options = {**getattr(splits, "meta", {}).get("task_options", {}),  # seq2seq: tokenizer
               **(task_options or {})}
    tk = build_task(task, model, num_classes, class_weight=weight,
                    label_smoothing=cfg.label_smoothing, **criterion, **options)
    for name in ("train", "val", "test"):
        tk.check_targets(name, targets_of(getattr(splits, name)))
    augment = tk.build_augment(cfg.augment)
    task_info = tk.run_info()
    n_train, bs = len(splits.train), cfg.batch_size
    plan = tk.batch_plan(splits.train, bs, cfg.drop_last)  # None: slices of the permutation

    # ---- data: the training split lives on the device when it fits comfortably -------------
    # (streamed, ragged or planned splits and loader="stream" go through a DataLoader instead:
    # actlab.train.batches)
    streamed = (plan is not None or cfg.loader == "stream"
                or not hasattr(splits.train, "tensors"))
    batches: EpochBatches | None = None
    if streamed:
        batches = EpochBatches()
        loader = make_loader(splits.train, batches, cfg.num_workers, device)
    else:
        x_train, y_train = splits.train.tensors
        if device.type == "cuda":
            budget = _DEVICE_DATA_SHARE * torch.cuda.get_device_properties(device).total_memory
            if x_train.nbytes + y_train.nbytes <= budget:
                x_train, y_train = x_train.to(device), y_train.to(device)
    if plan is not None:
        steps = plan.steps_per_epoch(cfg.seed)  # a token budget: the first epoch's count
    else:
        steps = n_train // bs if cfg.drop_last else math.ceil(n_train / bs)
    if steps < 1:
        raise ValueError(
            f"the training split has {n_train} samples, fewer than batch_size={bs} with "
            "drop_last=True: no complete batch (lower batch_size or set drop_last=False)"
        )

    # ---- model, optimizer, schedule, AMP ---------------------------------------------------
    model.to(device)
    num_params = sum(p.numel() for p in model.parameters())
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps)
    amp_dtype = torch.float16 if cfg.amp_dtype == "float16" else torch.bfloat16
    use_amp = cfg.amp and (device.type == "cuda" or amp_dtype == torch.bfloat16)
    autocast = functools.partial(torch.autocast, device.type, dtype=amp_dtype, enabled=use_amp)
    scaler = torch.amp.GradScaler(
        "cuda", enabled=use_amp and device.type == "cuda" and amp_dtype == torch.float16
    )

    # ---- resume ------------------------------------------------------------------------------
    history: list[dict[str, Any]] = []
    if checkpoint_path is not None and os.path.exists(checkpoint_path):
        state = load_checkpoint(checkpoint_path)
        _check_resume(state["config"], cfg, checkpoint_path)
        model.load_state_dict(state["model"])
        # the "auto" backend's budgets as they were: compiled kernels take over at the same step
        backends.restore_auto_progress(state.get("auto_progress") or {})
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"], generator)
        history = list(state["history"])
    diverged = bool(history) and not math.isfinite(history[-1]["train_loss"])

    net: nn.Module = model
    if world.active:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    bar = EpochProgress(progress if world.is_main else False, cfg.epochs, len(history))
    gems = GEMS(model, cfg.gems, cfg.gems_floor) if cfg.gems != "none" else None
    status = "interrupted"
    try:
        for epoch in range(len(history) + 1, cfg.epochs + 1):
            if diverged:
                break
            _sync(device)
            t0 = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]

            # ---- one pass over the training split --------------------------------------
            net.train()
            perm = torch.randperm(n_train, generator=generator)
            epoch_steps = steps
            if plan is not None:
                batches.set_batches(plan.plan(perm, generator))
                epoch_steps = len(batches)
                _check_batch_sizes(batches, world.world_size)
                stream = iter(loader)
            elif batches is not None:
                batches.set_order(perm, steps, bs)
                stream = iter(loader)
            else:
                perm = perm.to(x_train.device)
            sums = None
            for step in range(epoch_steps):
                if batches is not None:
                    x, y = next(stream)
                else:
                    idx = perm[step * bs:(step + 1) * bs]
                    x, y = x_train[idx], y_train[idx]
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                if augment is not None:
                    x, y = augment(x, y, generator=generator)
                # normalise by the GLOBAL batch so that DDP's gradient mean is exact
                norm = tk.loss_normaliser(y)
                lo, hi = shard_bounds(len(y), world.rank, world.world_size)
                x, y = x[lo:hi], y[lo:hi]
                with autocast():
                    out = tk.forward(net, x, y)
                parts = tk.loss_parts(out, y)
                loss_sum, local_norm = parts.total, parts.normaliser
                loss = loss_sum * world.world_size / norm
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if gems is not None:
                    gems.rescale_()
                if cfg.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                with torch.no_grad():
                    step_sums = torch.cat([torch.stack([loss_sum.detach().double(),
                                                        local_norm.double()]),
                                           parts.stats.to(device)])
                    sums = step_sums if sums is None else sums + step_sums
            _all_reduce_sum(sums)
            loss_total, norm_total, *stat_total = sums.tolist()
            train_loss = loss_total / norm_total if norm_total > 0 else math.nan

            # ---- evaluation --------------------------------------------------------------
            ev = functools.partial(
                tk.evaluate, model,
                batch_size=cfg.eval_batch_size, device=device,
                autocast=autocast, rank=world.rank, world_size=world.world_size,
            )
            with tracking_activity(model, cfg.log_layer_stats):
                val = ev(*eval_tensors(splits.val))
                layer_stats = collect_layer_stats(model) if cfg.log_layer_stats else {}
            test = ev(*eval_tensors(splits.test))
            _sync(device)

            record: dict[str, Any] = {"epoch": epoch, "lr": lr, "train_loss": train_loss}
            record.update({f"train_{k}": v for k, v in tk.train_metrics(stat_total).items()})
            record.update({f"val_{k}": v for k, v in val.items()})
            record.update({f"test_{k}": v for k, v in test.items()})
            record["epoch_time"] = time.perf_counter() - t0
            if task_info:
                record["task_info"] = task_info
            record["layer_stats"] = layer_stats
            history.append(record)
            diverged = not math.isfinite(train_loss)

            if world.is_main:
                if checkpoint_path is not None:
                    save_checkpoint(checkpoint_path, {
                        "format": CHECKPOINT_FORMAT,
                        "epoch": epoch,
                        "config": cfg.to_dict(),
                        "history": history,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": _scheduler_state(scheduler),
                        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                        "rng": get_rng_state(generator),
                        "auto_progress": backends.auto_progress(),
                    })
                if on_epoch is not None:
                    on_epoch(epoch, record)
                for logger in loggers:
                    logger.log_epoch(epoch, record)
                bar.update(epoch, record)
        status = "done"
    except Exception:
        status = "failed"
        raise
    finally:
        bar.close()
        if gems is not None:
            gems.remove()
        loader = None  # stops persistent DataLoader workers
        for logger in loggers:
            logger.close(status)

    return TrainResult(
        history=history,
        metrics=final_metrics(history, task, num_params),
        wall_time=float(sum(r["epoch_time"] for r in history)),
        peak_mem_mb=_peak_mem_mb(device),
        epochs_done=len(history),
        diverged=diverged,
        config=cfg.to_dict(),
    )


def _scheduler_state(scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    """The schedule's state without its lambdas (they are rebuilt from the config)."""
    state = scheduler.state_dict()
    if "lr_lambdas" in state:
        state["lr_lambdas"] = [None] * len(state["lr_lambdas"])
    return state
