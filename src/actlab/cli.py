"""actlab command line.

    actlab run [SPEC] [--db PATH] [--out DIR] [--workers N] [--epochs N] [--seeds S ...] [--quick]
    actlab list [models|layers|acts|norms|datasets|specs]
    actlab report ... | actlab plot ... | actlab bench ... | actlab status | actlab export

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
    run.add_argument("--quick", action="store_true",
                     help="smoke test: first seed only, at most 2 epochs (study '<name>-quick')")
    run.add_argument("--device", help="auto, cpu, cuda or cuda:N (override the spec)")
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
                     help="validate the spec and print its cells; run nothing")

    lst = sub.add_parser("list", help="list registered models, layers, datasets or specs")
    lst.add_argument("what", nargs="?", default="all",
                     choices=("all", "models", "layers", "acts", "norms", "datasets", "specs"))

    for name, (module, _) in _DELEGATED.items():
        sub.add_parser(name, help=f"(see actlab {name} --help; provided by {module})",
                       add_help=False)
    return parser


# ----------------------------------------------------------------------------------------------
# actlab run
# ----------------------------------------------------------------------------------------------
def _apply_overrides(spec: Any, args: argparse.Namespace) -> Any:
    from actlab.sweep.spec import SpecError

    changes: dict[str, Any] = {}
    train = dict(spec.train)
    if args.epochs is not None:
        train["epochs"] = args.epochs
    if args.seeds:
        changes["seeds"] = tuple(dict.fromkeys(args.seeds))
    if args.acts:
        wanted = [a.strip().lower().replace("-", "_") for a in args.acts]
        unknown = [a for a in wanted if a not in spec.acts]
        if unknown:
            raise SpecError(spec.source, "--acts",
                            f"{unknown} not in the spec's acts {list(spec.acts)}")
        changes["acts"] = tuple(dict.fromkeys(wanted))
    if args.quick:
        changes["seeds"] = (changes.get("seeds") or spec.seeds)[:1]
        train["epochs"] = min(2, int(train.get("epochs", 2)))
        changes["name"] = f"{spec.name}-quick"
    if args.dry_run:
        changes["name"] = f"{changes.get('name', spec.name)}-dry-run"
    if args.device:
        changes["device"] = args.device
    if getattr(args, "data_dir", None):
        changes["data_dir"] = str(Path(args.data_dir).expanduser())
    changes["train"] = train
    return spec.replace(**changes)


def _cmd_run(args: argparse.Namespace) -> int:
    from actlab.sweep.grid import expand
    from actlab.sweep.runner import run_cells
    from actlab.sweep.spec import load_spec
    from actlab.sweep.store import ResultStore
    from actlab.sweep.summary import format_summary

    if args.address and args.engine != "ray":
        raise _Fail("--address is only used with --engine ray")
    spec = _apply_overrides(load_spec(args.spec), args)
    cells = expand(spec)
    out = Path(args.out)
    db = Path(args.db) if args.db else (out / "dry-run.sqlite" if args.dry_run
                                        else Path(DEFAULT_DB))
    executor = "actlab.sweep.simulate:simulate_cell" if args.dry_run else None
    models = "|".join(spec.grid.get("model", (spec.model,)))
    datasets = "|".join(spec.grid.get("dataset", (spec.dataset,)))
    header = (f"study {spec.name!r}: {models} on {datasets}, {len(cells)} cells "
              f"({len(spec.acts)} acts x {len(spec.norms)} norms x {len(spec.seeds)} seeds"
              + "".join(f" x {len(v)} {k}" for k, v in spec.grid.items()) + ")")
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
    from actlab.sweep.spec import default_spec_path

    for mod in ("actlab.nn", "actlab.models", "actlab.data"):
        importlib.import_module(mod)
    sections: list[tuple[str, list[str]]] = []
    what = args.what
    if what in ("all", "layers", "acts"):
        sections.append(("activations", registry.ACTIVATIONS.names()))
    if what in ("all", "layers", "norms"):
        sections.append(("norms", registry.NORMS.names()))
    if what in ("all", "models"):
        sections.append(("models", registry.MODELS.names()))
    if what in ("all", "datasets"):
        names = registry.DATASETS.names()
        lister = getattr(sys.modules["actlab.data"], "list_datasets", None)
        if not names and callable(lister):
            names = sorted(lister())
        sections.append(("datasets", names))
    if what in ("all", "specs"):
        sections.append(("specs", sorted(p.stem for p in
                                         default_spec_path().parent.glob("*.toml"))))
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
    from actlab.sweep.ray_engine import EngineError
    from actlab.sweep.spec import SpecError
    from actlab.sweep.store import StoreError

    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "list":
            return _cmd_list(args)
    except (SpecError, StoreError, EngineError, _Fail) as exc:
        print(f"actlab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # SweepInterrupted carries 128 + the signal number
        print("\ninterrupted; re-run the same command to resume", file=sys.stderr)
        return int(getattr(exc, "exit_code", 130))
    raise AssertionError(args.command)  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
