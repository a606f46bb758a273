"""Experiment trackers: per-epoch metrics of a training run sent to TensorBoard or MLflow.

The training loop knows only the small :class:`EpochLogger` interface: after each epoch's
checkpoint is written (rank 0 only) it calls ``log_epoch(epoch, record)`` on every logger, and
``close(status)`` when training ends. What a run is called and which tags and hyper-parameters
it carries (:class:`RunInfo`) is fixed when the logger is built.

* :class:`TensorBoardLogger` writes real event files with ``torch.utils.tensorboard``: one
  folder per run, a scalar per metric with ``step = epoch``, and the hyper-parameters as an
  ``hparams`` summary. A resumed run reopens its folder with ``purge_step`` = its first new
  epoch, so steps of an interrupted attempt past its last checkpoint are dropped.
* :class:`MLflowLogger` writes to an MLflow tracking store (default: a local SQLite file); the
  tags are MLflow tags, the hyper-parameters MLflow params, the metrics ``log_batch`` calls with
  ``step = epoch``. A resumed cell continues its unfinished run (found by its ``actlab.cell``
  tag) instead of opening another.

Metrics are the record's finite numbers (``train_loss``, ``val_acc``, ``lr``, ...); the
``layer_stats`` mapping becomes ``layer/<module>/<stat>``.

For sweeps, :func:`attach_loggers` puts the chosen kinds into each cell's runtime settings
(they do not change results, so not into its key) and :func:`loggers_for_cell` builds the
loggers inside whichever process trains the cell.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "EpochLogger", "RunInfo", "TensorBoardLogger", "MLflowLogger", "LOGGER_KINDS",
    "scalar_metrics", "flat_params", "build_loggers", "attach_loggers", "loggers_for_cell",
    "check_available",
]

#: ``--log`` choices and the pip extra each needs
LOGGER_KINDS = {"tensorboard": "tensorboard", "mlflow": "mlflow"}
#: the cell-runtime key holding ``{"kinds": [...], "dir": <folder>}``
RUNTIME_KEY = "log"


@runtime_checkable
class EpochLogger(Protocol):
    """What the training loop calls (rank 0 only)."""

    def log_epoch(self, epoch: int, record: Mapping[str, Any]) -> None: ...

    def close(self, status: str = "done") -> None: ...


@dataclass(frozen=True)
class RunInfo:
    """A run's identity: ``name`` (human label), ``key`` (stable id), ``group`` (the study),
    ``tags`` (spec, model, act, norm, seed, ...) and ``params`` (flat hyper-parameters)."""

    name: str
    key: str
    group: str = "actlab"
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


def scalar_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of an epoch record (``epoch`` itself excluded), layer stats flattened."""
    out: dict[str, float] = {}
    for k, v in record.items():
        if k == "epoch" or isinstance(v, bool):
            continue
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[k] = float(v)
    for module, stats in (record.get("layer_stats") or {}).items():
        for stat, v in stats.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                out[f"layer/{module or 'model'}/{stat}"] = float(v)
    return out


def flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train.lr": 0.05, "model": "tiny_cnn", ...}``: nested mappings joined with ``.``;
    values other than bool / int / float / str become strings (lists, None)."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flat_params(v, name + "."))
        elif isinstance(v, (bool, int, float, str)):
            out[name] = v
        else:
            out[name] = str(v)
    return out


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("_") or "run"


# ----------------------------------------------------------------------------------------------
# TensorBoard
# ----------------------------------------------------------------------------------------------
class TensorBoardLogger:
    """Event files under ``root/<group>/<name>-<key[:10]>`` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str], run: RunInfo) -> None:
        self.run = run
        self.log_dir = Path(root) / _safe(run.group) / f"{_safe(run.name)}-{run.key[:10]}"
        self._writer: Any = None

    def _open(self, first_epoch: int) -> Any:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self._writer = SummaryWriter(str(self.log_dir), purge_step=first_epoch)
        if first_epoch <= 1:
            hp = {k: v for k, v in self.run.params.items()}
            hp.update({f"tag.{k}": v for k, v in self.run.tags.items()})
            exp, start, end = hparams(hp, {"test_acc": 0.0})
            fw = self._writer._get_file_writer()
            for summary in (exp, start, end):
                fw.add_summary(summary)
            self._writer.add_text("run", ", ".join(f"{k}={v}" for k, v in
                                                   self.run.tags.items()), 0)
        return self._writer

    def log_epoch(self, epoch: int, record: Mapping[str, Any]) -> None:
        writer = self._writer or self._open(epoch)
        for name, value in scalar_metrics(record).items():
            writer.add_scalar(name, value, global_step=epoch)
        writer.flush()

    def close(self, status: str = "done") -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# ----------------------------------------------------------------------------------------------
# MLflow
# ----------------------------------------------------------------------------------------------
_CELL_TAG = "actlab.cell"


class MLflowLogger:
    """One MLflow run per cell in experiment ``run.group`` (see the module docstring)."""

    def __init__(self, tracking_uri: str, run: RunInfo) -> None:
        from mlflow import MlflowClient

        self.run = run
        self.client = MlflowClient(tracking_uri=tracking_uri)
        exp = self.client.get_experiment_by_name(run.group)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(
            run.group)
        found = self.client.search_runs(
            [exp_id], filter_string=f"tags.`{_CELL_TAG}` = '{run.key}'",
            order_by=["attributes.start_time DESC"], max_results=1,
        )
        if found and found[0].info.status != "FINISHED":
            self.run_id = found[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            tags = {**run.tags, _CELL_TAG: run.key, "mlflow.runName": run.name}
            self.run_id = self.client.create_run(exp_id, tags=tags,
                                                 run_name=run.name).info.run_id
            self._log_params()

    def _log_params(self) -> None:
        from mlflow.entities import Param

        params = [Param(k, str(v)[:6000]) for k, v in sorted(self.run.params.items())]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def log_epoch(self, epoch: int, record: Mapping[str, Any]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, int(epoch)) for k, v in scalar_metrics(record).items()]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def close(self, status: str = "done") -> None:
        state = {"done": "FINISHED", "failed": "FAILED"}.get(status, "KILLED")
        self.client.set_terminated(self.run_id, status=state)


# ----------------------------------------------------------------------------------------------
# building them
# ----------------------------------------------------------------------------------------------
def check_available(kinds: Iterable[str]) -> list[str]:
    """The kinds, validated and de-duplicated; ImportError (one line) if a package is missing."""
    out: list[str] = []
    for kind in kinds:
        kind = kind.strip().lower()
        if kind not in LOGGER_KINDS:
            raise ValueError(f"unknown logger {kind!r}; choose from {sorted(LOGGER_KINDS)}")
        module = "torch.utils.tensorboard" if kind == "tensorboard" else "mlflow"
        try:
            __import__(module)
            if kind == "tensorboard":
                import tensorboard  # noqa: F401  (torch's writer needs the package)
        except ImportError as err:
            raise ImportError(
                f"--log {kind} needs the {LOGGER_KINDS[kind]} package: "
                f"pip install 'actlab[{LOGGER_KINDS[kind]}]' ({err})"
            ) from None
        if kind not in out:
            out.append(kind)
    return out


def mlflow_uri(log_dir: str | os.PathLike[str]) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else a SQLite store ``<log_dir>/mlflow.db``."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return "sqlite:///" + str(Path(log_dir).resolve() / "mlflow.db")


def build_loggers(
    kinds: Sequence[str], log_dir: str | os.PathLike[str], run: RunInfo
) -> list[EpochLogger]:
    """Loggers of ``kinds`` for ``run``: TensorBoard under ``log_dir/tensorboard``, MLflow in
    :func:`mlflow_uri` ``(log_dir)``."""
    out: list[EpochLogger] = []
    for kind in check_available(kinds):
        if kind == "tensorboard":
            out.append(TensorBoardLogger(Path(log_dir) / "tensorboard", run))
        else:
            out.append(MLflowLogger(mlflow_uri(log_dir), run))
    return out


def attach_loggers(cells: Sequence[Any], kinds: Sequence[str] | None,
                   log_dir: str | os.PathLike[str]) -> list[Any]:
    """Copies of sweep ``cells`` whose runtime asks for loggers ``kinds`` writing to
    ``log_dir``; the cells unchanged when ``kinds`` is empty."""
    if not kinds:
        return list(cells)
    spec = {"kinds": check_available(kinds), "dir": str(Path(log_dir).resolve())}
    return [dataclasses.replace(c, runtime={**c.runtime, RUNTIME_KEY: spec}) for c in cells]


def run_info_for_cell(config: Mapping[str, Any], key: str | None = None) -> RunInfo:
    """:class:`RunInfo` of a sweep cell from its config (``actlab.sweep.grid``)."""
    from actlab.sweep.grid import cell_key

    key = key or cell_key(config)
    tags = {"spec": str(config.get("study", "")), "dataset": str(config.get("dataset", "")),
            "model": str(config.get("model", "")), "act": str(config.get("act", "")),
            "norm": str(config.get("norm", "")), "seed": str(config.get("seed", "")),
            "cell_key": key}
    name = f"{tags['model']}-{tags['act']}-{tags['norm']}-s{tags['seed']}"
    return RunInfo(name=name, key=key, group=tags["spec"] or "actlab", tags=tags,
                   params=flat_params(config))


def loggers_for_cell(config: Mapping[str, Any], runtime: Mapping[str, Any]) -> list[EpochLogger]:
    """The loggers a cell's runtime asks for (none when it asks for none)."""
    spec = runtime.get(RUNTIME_KEY)
    if not spec or not spec.get("kinds"):
        return []
    return build_loggers(spec["kinds"], spec["dir"], run_info_for_cell(config))
