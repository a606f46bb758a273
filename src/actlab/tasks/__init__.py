"""Task types: what a run trains for (``task = "..."`` in a spec).

Each task type is a :class:`Task` subclass that brings its target checks, loss, training
statistics, evaluation metrics and primary metric (see :mod:`actlab.tasks.base`)::

    >>> from actlab.tasks import build_task, list_tasks
    >>> list_tasks()
    ['classification', 'detection', 'segmentation', 'seq2seq']
    >>> task = build_task("detection", model, num_classes=4)   # model = create_model("ssd_lite")
    >>> parts = task.loss_parts(model(x), y)                   # numerator, normaliser, stats
    >>> task.evaluate(model, x_val, y_val)["map50"]
"""

from actlab.tasks.base import (
    TASK_TYPES,
    LossParts,
    Task,
    build_task,
    check_combination,
    list_tasks,
    register_task,
    task_type,
)
from actlab.tasks.classification import ClassificationTask, SegmentationTask
from actlab.tasks.detection.task import DetectionTask
from actlab.tasks.seq2seq.task import Seq2SeqTask

__all__ = [
    "TASK_TYPES", "ClassificationTask", "DetectionTask", "LossParts", "SegmentationTask",
    "Seq2SeqTask", "Task",
    "build_task", "check_combination", "list_tasks", "register_task", "task_type",
]
