"""actlab command line.

    actlab run [SPEC] [--db PATH] [--out DIR] [--workers N] [--threads N] [--set KEY=VALUE ...]
               [--epochs N] [--seeds S ...] [--acts A ...] [--norms N ...] [--quick] [--check]
    actlab list [models|layers|acts|norms|datasets|tasks|specs]
    actlab --version
    actlab report ... | actlab plot ... | actlab bench ... | actlab status | actlab export
    actlab data download NAME | actlab data sources

SPEC is a TOML file or the name of a spec shipped with the package (``actlab list specs``:
``default``, ``paper/sau_table1``, ``offline/digits``, ...). ``--set KEY=VALUE`` changes any
spec key (dotted for tables: ``--set model_kwargs.width=16``, ``--set grid.lr=[0.1,0.2]``),
typed and checked by the spec schema; it may be repeated.

``actlab run`` without SPEC runs the default study (a small CNN on the digits data comparing ten
activations over three seeds) and prints a mean ± std table of test accuracy. Re-running the same
command skips finished cells and resumes interrupted ones. Exit status: 0 when every cell is
done, 1 when some failed (re-run to retry them), 2 for a bad spec or bad arguments, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser", "DEFAULT_DB", "DEFAULT_OUT"]

DEFAULT_OUT = "actlab-results"
DEFAULT_DB = os.path.join(DEFAULT_OUT, "results.sqlite")

#: commands implemented elsewhere: name -> (module, [(add_arguments, run), ...] tried in order)
_DELEGATED: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "report": ("actlab.report.cli", [("add_report_arguments", "run_report"),
                                     ("add_arguments", "run")]),
    "plot": ("actlab.report.cli", [("add_plot_arguments", "run_plot")]),
    "bench": ("actlab.bench.cli", [("add_arguments", "run")]),
    "data": ("actlab.data.cli", [("add_arguments", "run")]),
    "status": ("actlab.sweep.status", [("add_status_arguments", "run_status")]),
    "export": ("actlab.store.cli", [("add_export_arguments", "run_export")]),
}


class _Fail(Exception):
    """A user error: printed as one line, exit status 2."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a seed (integer >= 0), got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a seed (integer >= 0), got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="actlab", description="Compare activations and normalisations: run studies, list "
        "layers and models, report results.",
    )
    parser.add_argument("--version", action="version", version=f"actlab {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a study (default: the packaged default study)",
                         description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("spec", nargs="?", default=None,
                     help="TOML spec file, or the name of a packaged spec (default: default)")
    run.add_argument("--db", default=os.environ.get("ACTLAB_DB"),
                     help=f"results store (default: $ACTLAB_DB or ./{DEFAULT_DB})")
    run.add_argument("--out", default=os.environ.get("ACTLAB_OUT", DEFAULT_OUT),
                     help=f"folder for checkpoints (default: $ACTLAB_OUT or ./{DEFAULT_OUT})")
    run.add_argument("--workers", type=_positive_int, default=1,
                     help="cells run in parallel processes (default 1)")
    run.add_argument("--epochs", type=_positive_int, help="override the spec's epochs")
    run.add_argument("--seeds", type=_seed, nargs="+", metavar="SEED",
                     help="run only these seeds (override the spec's seeds)")
    run.add_argument("--acts", nargs="+", metavar="ACT", help="run only these activations")
    run.add_argument("--norms", nargs="+", metavar="NORM", help="run only these norms")
    run.add_argument("--threads", type=_positive_int,
                     help="torch threads per cell (override the spec's threads, default 1); "
                          "part of each cell's key")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="set",
                     help="override any spec key, e.g. --set lr=0.1 --set model_kwargs.width=16 "
                          "(repeatable)")
    run.add_argument("--quick", action="store_true",
                     help="smoke test: first seed only, at most 2 epochs (study '<name>-quick')")
    run.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (override the spec)")
    run.add_argument("--data-dir", metavar="DIR",
                     help="folder with the data sets' official files (override the spec's "
                          "data_dir; default $ACTLAB_DATA or ~/.cache/actlab/data)")
    run.add_argument("--engine", choices=("local", "ray"), default="local")
    run.add_argument("--address", help="ray cluster address (with --engine ray)")
    run.add_argument("--dry-run", action="store_true",
                     help="simulate training (checks spec, grid, store, resume in seconds); "
                          "writes to <out>/dry-run.sqlite unless --db is given")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument("--keep-checkpoints", action="store_true",
                     help="keep each cell's checkpoint after it is done")
    run.add_argument("--check", action="store_true",
                     help="validate the spec, check the device and the data files, print the "
                          "cells; run nothing")
    # ---- data at scale / tracking (actlab.train.launch, actlab.train.loggers) ----------------
    run.add_argument("--log", action="append", choices=("tensorboard", "mlflow"), default=[],
                     help="also send per-epoch metrics to TensorBoard (<out>/tensorboard) or "
                          "MLflow (<out>/mlflow.db or $MLFLOW_TRACKING_URI); repeatable")
    run.add_argument("--nproc", type=_positive_int, default=1,
                     help="train each cell data-parallel over N processes (torch's elastic "
                          "launcher; gloo on CPU, nccl on CUDA)")

    lst = sub.add_parser("list", help="list registered models, layers, datasets or specs")
    lst.add_argument("what", nargs="?", default="all",
                     choices=("all", "models", "layers", "acts", "norms", "datasets", "tasks",
                              "specs"))

    for name, (module, _) in _DELEGATED.items():
        sub.add_parser(name, help=f"(see actlab {name} --help; provided by {module})",
                       add_help=False)
    return parser


# ----------------------------------------------------------------------------------------------
# actlab run
# ----------------------------------------------------------------------------------------------
def _version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("actlab")
    except PackageNotFoundError:  # a source checkout that is not installed
        from actlab import __version__

        return __version__


def _raw_overrides(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """The options that set spec keys, as ``(key, value)`` pairs applied before validation."""
    from actlab.sweep.spec import parse_override

    pairs = [parse_override(text) for text in args.set]
    if args.epochs is not None:
        pairs.append(("epochs", args.epochs))
    if args.seeds:
        pairs.append(("seeds", list(dict.fromkeys(args.seeds))))
    if args.threads is not None:
        pairs.append(("threads", args.threads))
    if args.device:
        pairs.append(("device", args.device))
    if getattr(args, "data_dir", None):
        pairs.append(("data_dir", str(Path(args.data_dir).expanduser())))
    return pairs


def _subset(spec: Any, option: str, field: str, wanted: Sequence[str]) -> tuple[str, ...]:
    from actlab.sweep.spec import SpecError

    have = getattr(spec, field)
    names = [a.strip().lower().replace("-", "_") for a in wanted]
    unknown = [a for a in names if a not in have]
    if unknown:
        raise SpecError(spec.source, option, f"{unknown} not in the spec's {field} {list(have)}")
    return tuple(dict.fromkeys(names))


def _load(args: argparse.Namespace) -> Any:
    """The spec of ``actlab run`` with every command-line override applied and validated."""
    from actlab.sweep.spec import load_spec

    spec = load_spec(args.spec, overrides=_raw_overrides(args))
    if args.acts:
        spec = spec.replace(acts=_subset(spec, "--acts", "acts", args.acts))
    if args.norms:
        spec = spec.replace(norms=_subset(spec, "--norms", "norms", args.norms))
    if args.quick:
        spec = spec.replace(seeds=spec.seeds[:1], name=f"{spec.name}-quick")
        spec = spec.with_train(epochs=min(2, spec.train.epochs))
    if args.dry_run:
        spec = spec.replace(name=f"{spec.name}-dry-run")
    return spec


def _cmd_run(args: argparse.Namespace) -> int:
    from actlab.sweep.grid import expand
    from actlab.sweep.runner import run_cells
    from actlab.sweep.spec import preflight
    from actlab.sweep.store import ResultStore
    from actlab.sweep.summary import format_summary

    if args.address and args.engine != "ray":
        raise _Fail("--address is only used with --engine ray")
    spec = _load(args)
    # what this machine must provide: checked here unless the cells run elsewhere (ray) or
    # train nothing (dry run); --check always checks
    if args.check or (args.engine == "local" and not args.dry_run):
        preflight(spec)
    cells = expand(spec)
    out = Path(args.out)
    db = Path(args.db) if args.db else (out / "dry-run.sqlite" if args.dry_run
                                        else Path(DEFAULT_DB))
    executor = "actlab.sweep.simulate:simulate_cell" if args.dry_run else None
    if args.log or args.nproc > 1:  # data at scale / tracking
        from actlab.train.launch import prepare_run

        cells, executor = prepare_run(cells, executor, log=args.log, nproc=args.nproc, out=out)
    models = "|".join(spec.grid.get("model", (spec.model,)))
    datasets = "|".join(spec.grid.get("dataset", (spec.dataset,)))
    header = (f"study {spec.name!r}: {models} on {datasets}, {len(cells)} cells "
              f"({len(spec.acts)} acts x {len(spec.norms)} norms x {len(spec.seeds)} seeds"
              + "".join(f" x {len(v)} {k}" for k, v in spec.grid.items())
              + f"), {spec.threads} thread{'s' if spec.threads > 1 else ''} per cell, layer "
              + "backend " + "|".join(sorted({c.layer_backend for c in cells})))
    print(header, flush=True)
    if args.check:
        for cell in cells:
            print(f"  {cell.key[:12]}  {cell.label}")
        return 0
    print(f"results: {db}   checkpoints: {out / 'checkpoints'}", flush=True)
    common = dict(db_path=db, out_dir=out, executor=executor, progress=not args.no_progress,
                  keep_checkpoints=args.keep_checkpoints, desc=spec.name)
    if args.engine == "ray":
        from actlab.sweep.ray_engine import run_cells_ray

        outcome = run_cells_ray(cells, address=args.address, **common)
    else:
        outcome = run_cells(cells, workers=args.workers, **common)

    with ResultStore(db) as store:
        rows = store.list(keys=[c.key for c in cells])
    print()
    print(format_summary(cells, rows))
    print(f"\n{outcome.done} cells run now, {outcome.skipped} already done, "
          f"{len(outcome.failed)} failed, {len(outcome.lost)} lost")
    for key, error in outcome.failed.items():
        print(f"  failed {key[:12]}: {error.splitlines()[0] if error else ''}", file=sys.stderr)
    if outcome.lost:
        print("  a worker process died; re-run the same command to resume", file=sys.stderr)
    if not outcome.ok:
        print("re-run the same command to retry failed or interrupted cells", file=sys.stderr)
        return 1
    return 0


# ----------------------------------------------------------------------------------------------
# actlab list
# ----------------------------------------------------------------------------------------------
def _cmd_list(args: argparse.Namespace) -> int:
    from actlab import registry
    from actlab.sweep.spec import packaged_specs

    registry.load_plugins()  # built-ins and installed plug-ins (entry points)
    sections: list[tuple[str, list[str]]] = []
    what = args.what
    if what in ("all", "layers", "acts"):
        sections.append(("activations", registry.ACTIVATIONS.names()))
    if what in ("all", "layers", "norms"):
        sections.append(("norms", registry.NORMS.names()))
    if what in ("all", "models"):
        sections.append(("models", registry.MODELS.names()))
    if what in ("all", "datasets"):
        sections.append(("datasets", registry.DATASETS.names()))
    if what in ("all", "tasks"):
        from actlab.tasks import list_tasks

        sections.append(("tasks", list_tasks()))
    if what in ("all", "specs"):
        sections.append(("specs", list(packaged_specs())))
    for title, names in sections:
        if what == "all" or len(sections) > 1:
            print(f"{title}:")
            print(textwrap.fill(", ".join(names) if names else "(none registered)", width=100,
                                initial_indent="  ", subsequent_indent="  "))
        else:
            print("\n".join(names))
    return 0


# ----------------------------------------------------------------------------------------------
def _delegate(name: str, argv: Sequence[str]) -> int:
    module_name, entry_points = _DELEGATED[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            print(f"actlab {name}: not available in this installation ({module_name} is "
                  "missing)", file=sys.stderr)
            return 2
        raise
    for add_name, run_name in entry_points:
        add, run = getattr(module, add_name, None), getattr(module, run_name, None)
        if callable(add) and callable(run):
            break
    else:
        wanted = " or ".join(f"{a}/{r}" for a, r in entry_points)
        print(f"actlab {name}: not available ({module_name} has no {wanted})", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"actlab {name}")
    add(parser)
    return int(run(parser.parse_args(list(argv))) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _DELEGATED:
        return _delegate(argv[0], argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from actlab.registry import PluginError
    from actlab.sweep.ray_engine import EngineError
    from actlab.sweep.spec import SpecError
    from actlab.sweep.store import StoreError

    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "list":
            return _cmd_list(args)
    except (SpecError, StoreError, EngineError, PluginError, _Fail) as exc:
        print(f"actlab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # SweepInterrupted carries 128 + the signal number
        print("\ninterrupted; re-run the same command to resume", file=sys.stderr)
        return int(getattr(exc, "exit_code", 130))
    raise AssertionError(args.command)  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
