"""Training engine: ``train_model(model, splits, TrainConfig(...)) -> TrainResult``.

    >>> from actlab.train import TrainConfig, train_model
    >>> cfg = TrainConfig(epochs=20, batch_size=64, optimizer="sgd", lr=0.05, schedule="cosine")
    >>> result = train_model(model, splits, cfg, checkpoint_path="run.pt", progress=False)
    >>> result.metrics["test_acc"], result.history[-1]["val_loss"]

One loop serves classification and segmentation. Every epoch appends a JSON-serialisable record
to the history: ``epoch`` (1-based), ``lr`` (at the epoch's first step), ``train_loss``,
``epoch_time``, ``layer_stats`` (``{module_name: {stat: value}}`` for modules with a
``layer_stats()`` method, read after the val pass) and, per split, the loss and the accuracy
metrics: ``train_acc``, ``val_loss``, ``val_acc``, ``test_loss``, ``test_acc`` for
classification; ``train_pixel_acc``, ``{val,test}_{loss,pixel_acc,pixel_error,miou}`` for
segmentation. The final metrics are the last epoch's (never the best test epoch) plus
``num_params``.

Multi-process data parallel: run a script under ``torchrun`` and pass ``distributed=True``
(:mod:`actlab.train.distributed`).
"""

from actlab.train.checkpoint import load_checkpoint, save_checkpoint
from actlab.train.config import TrainConfig
from actlab.train.distributed import (
    DistInfo,
    cleanup_distributed,
    init_distributed,
    is_main_process,
    shard_bounds,
)
from actlab.train.evaluate import collect_layer_stats, evaluate, tracking_activity
from actlab.train.loop import TrainResult, final_metrics, resolve_device, train_model
from actlab.train.loss import cross_entropy_parts
from actlab.train.metrics import (
    class_frequencies,
    confusion_matrix,
    enet_class_weights,
    segmentation_scores,
)
from actlab.train.optim import build_optimizer, build_scheduler, lr_factor
from actlab.train.rng import get_rng_state, seed_everything, set_rng_state

__all__ = [
    "DistInfo",
    "TrainConfig",
    "TrainResult",
    "build_optimizer",
    "build_scheduler",
    "class_frequencies",
    "cleanup_distributed",
    "collect_layer_stats",
    "confusion_matrix",
    "cross_entropy_parts",
    "enet_class_weights",
    "evaluate",
    "final_metrics",
    "get_rng_state",
    "init_distributed",
    "is_main_process",
    "load_checkpoint",
    "lr_factor",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
    "segmentation_scores",
    "set_rng_state",
    "shard_bounds",
    "tracking_activity",
    "train_model",
]
