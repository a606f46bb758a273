"""``actlab report`` (tables) and ``actlab plot`` (figures) command lines.

The top-level ``actlab`` CLI wires these in::

    p = sub.add_parser("report"); add_report_arguments(p); p.set_defaults(func=run_report)
    p = sub.add_parser("plot");   add_plot_arguments(p);   p.set_defaults(func=run_plot)

Both read finished runs (``status = 'done'``) from the results store and return a process exit
status: 0 on success, 1 when there is nothing to report, 2 for bad input.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from actlab.report.figures import (
    PLOT_KINDS,
    runs_by_study,
    write_activation_figures,
    write_study_figure,
)
from actlab.report.grouping import layer_label, layer_matches, resolve_layer, uses_several_norms
from actlab.report.load import RunRecord, StoreError, load_runs
from actlab.report.render import FORMATS
from actlab.report.stats import CORRECTIONS
from actlab.report.tables import DEFAULT_CORRECTION, summarize_runs, win_tie_loss

__all__ = [
    "DEFAULT_DB",
    "add_report_arguments",
    "run_report",
    "add_plot_arguments",
    "run_plot",
    "build_report",
]

#: the results store ``actlab run`` writes by default (``$ACTLAB_DB`` overrides it)
DEFAULT_DB = os.environ.get("ACTLAB_DB", "actlab-results/results.sqlite")


def _level(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def _names(values: Sequence[str] | None) -> list[str] | None:
    """Flatten ``--x a,b --x c`` into ``[a, b, c]``."""
    if not values:
        return None
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_DB,
                        help=f"results store (SQLite) to read (default: {DEFAULT_DB})")
    parser.add_argument("--study", action="append",
                        help="only this study (repeat for several; default: all)")


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``actlab report``."""
    _add_common(parser)
    parser.add_argument("--format", choices=FORMATS, default="text", help="output format")
    parser.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    parser.add_argument("--metric", help="final metric (default: test_acc, or test_miou, ...)")
    parser.add_argument("--baseline", action="append", metavar="NAMES",
                        help="baseline layers for the win/tie/loss table (comma-separated or "
                             "repeated); default with --candidate: every other layer")
    parser.add_argument("--candidate", action="append", metavar="NAMES",
                        help="candidate layers for win/tie/loss (default with --baseline: every "
                             "layer that is not a baseline)")
    parser.add_argument("--alpha", type=_level, default=0.05,
                        help="significance level of the win/tie/loss tests (default 0.05)")
    parser.add_argument("--test", choices=("auto", "welch", "paired"), default="auto",
                        help="auto: paired t-test when seeds are shared, Welch otherwise")
    parser.add_argument("--correction", choices=CORRECTIONS, default=DEFAULT_CORRECTION,
                        help="multiple-comparison correction over each win/tie/loss table: "
                             "holm (family-wise error rate), bh (Benjamini-Hochberg, false "
                             f"discovery rate) or none (default {DEFAULT_CORRECTION})")
    parser.add_argument("--confidence", type=_level, default=0.95,
                        help="confidence level of the intervals (default 0.95)")
    parser.add_argument("--layout", choices=("wide", "long"), default="wide",
                        help="wide: a column per dataset/model; long: a row per entry")
    parser.add_argument("--details", action="store_true",
                        help="also list every win/tie/loss comparison with its p-value")
    parser.add_argument("--page", metavar="FILE.md",
                        help="write the Markdown results page (tables, win/tie/loss of SAU/ASH/"
                             "AGC against the other layers, figures) to FILE.md instead; the "
                             "claim blocks already in FILE.md are kept")
    parser.add_argument("--figures", metavar="DIR",
                        help="with --page: folder for the page's figures (default: FILE.md's "
                             "folder/fig)")
    parser.add_argument("--no-figures", action="store_true",
                        help="with --page: tables only (no matplotlib needed)")


def _layers(runs: Sequence[RunRecord]) -> list[str]:
    with_norm = uses_several_norms(runs)
    return sorted({layer_label(r, with_norm) for r in runs})


def _known(name: str, layers: Sequence[str]) -> bool:
    """True when ``name`` means at least one layer (ambiguity is reported when it is used)."""
    return bool(layer_matches(name, layers))


def _study_report(runs: list[RunRecord], args: argparse.Namespace, fmt: str) -> list[str]:
    """Rendered pieces (summary table, then win/tie/loss tables) for one study."""
    table = summarize_runs(runs, args.metric, confidence=args.confidence)
    pieces = [table.format(fmt, layout=args.layout)]
    baselines, candidates = _names(args.baseline), _names(args.candidate)
    if baselines is None and candidates is None:
        return pieces
    layers = _layers(runs)
    cands = None
    if candidates is not None:
        cands = [resolve_layer(c, layers, "candidate") for c in candidates if _known(c, layers)]
    bases = None
    if baselines is not None:
        bases = [resolve_layer(b, layers, "baseline", exclude=cands or (), baseline=True)
                 for b in baselines if _known(b, layers)]
    if cands is None:
        cands = [lab for lab in layers if lab not in (bases or [])]
    for cand in cands:
        others = [b for b in (bases if bases is not None else layers) if b != cand]
        if not others:
            continue
        wtl = win_tie_loss(runs, cand, others, args.metric, alpha=args.alpha, test=args.test,
                           correction=args.correction)
        if wtl.cells:
            pieces.append(wtl.format(fmt, details=args.details))
    return pieces


def _merge_csv(blocks: list[tuple[str, str]]) -> str:
    """Concatenate CSV texts as one table with a leading ``study`` column (union of columns)."""
    rows: list[dict[str, str]] = []
    fields: list[str] = ["study"]
    for study, text in blocks:
        reader = csv.DictReader(io.StringIO(text))
        for f in reader.fieldnames or []:
            if f not in fields:
                fields.append(f)
        rows.extend({"study": study, **row} for row in reader)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def build_report(runs: Sequence[RunRecord], args: argparse.Namespace) -> dict[str, str]:
    """The report as ``{"": text}``, plus ``{"wtl": csv}`` for CSV output with comparisons.

    Text, Markdown and LaTeX give one section per study; CSV gives one long table with a
    ``study`` column (and the win/tie/loss comparisons as a second table).
    """
    fmt = args.format
    by_study = runs_by_study(runs)
    for name in (_names(args.baseline) or []) + (_names(args.candidate) or []):
        if not any(_known(name, _layers(rs)) for rs in by_study.values()):
            known = sorted({lab for rs in by_study.values() for lab in _layers(rs)})
            raise ValueError(f"no layer {name!r} in these runs; layers: {', '.join(known)}")
    if fmt == "csv":
        summaries, comparisons = [], []
        for study, rs in by_study.items():
            pieces = _study_report(rs, args, "csv")
            summaries.append((study, pieces[0]))
            comparisons.extend((study, p) for p in pieces[1:])
        out = {"": _merge_csv(summaries)}
        if comparisons:
            out["wtl"] = _merge_csv(comparisons)
        return out
    sections = []
    for study, rs in by_study.items():
        pieces = _study_report(rs, args, fmt)
        if len(by_study) > 1 or fmt != "text":
            heading = {"text": f"== study {study} ==", "md": f"## Study `{study}`",
                       "latex": f"% study {study}"}[fmt]
            pieces.insert(0, heading + "\n")
        sections.append("\n".join(pieces))
    return {"": "\n".join(sections)}


def _error(prog: str, exc: BaseException) -> int:
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    print(f"{prog}: error: {msg}", file=sys.stderr)
    return 2


def _run_page(args: argparse.Namespace) -> int:
    from actlab.report.results_page import write_results_page

    page = Path(args.page)
    figs = Path(args.figures) if args.figures else page.parent / "fig"
    try:
        out = write_results_page(args.db, page, figs, args.study, metric=args.metric,
                                 alpha=args.alpha, test=args.test, correction=args.correction,
                                 figures=not args.no_figures, activations=not args.no_figures)
    except (StoreError, ValueError, KeyError, TypeError) as exc:
        return _error("actlab report", exc)
    except ImportError as exc:
        print(f"actlab report: error: figures need matplotlib ({exc}); install the 'plot' "
              "extra or pass --no-figures", file=sys.stderr)
        return 2
    print(f"wrote {out}" + ("" if args.no_figures else f" and its figures in {figs}"),
          file=sys.stderr)
    return 0


def run_report(args: argparse.Namespace) -> int:
    """Print (or write to ``--out``) the summary tables and optional win/tie/loss tables, or
    with ``--page`` write the Markdown results page."""
    if getattr(args, "page", None):
        return _run_page(args)
    if getattr(args, "figures", None) or getattr(args, "no_figures", False):
        return _error("actlab report", ValueError("--figures/--no-figures need --page"))
    try:
        runs = load_runs(args.db, args.study)
        if not runs:
            where = f" for study {', '.join(args.study)}" if args.study else ""
            print(f"actlab report: no finished runs in {args.db}{where}", file=sys.stderr)
            return 1
        out = build_report(runs, args)
    except (StoreError, ValueError, KeyError, TypeError) as exc:
        return _error("actlab report", exc)
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(out[""], encoding="utf-8")
        written = [path]
        if "wtl" in out:
            extra = path.with_name(f"{path.stem}_wtl{path.suffix or '.csv'}")
            extra.write_text(out["wtl"], encoding="utf-8")
            written.append(extra)
        for p in written:
            print(f"wrote {p}", file=sys.stderr)
    else:
        sys.stdout.write(out[""])
        if "wtl" in out:
            sys.stdout.write("\n" + out["wtl"])
    return 0


# ----------------------------------------------------------------------------------------------
# plot
# ----------------------------------------------------------------------------------------------
def add_plot_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``actlab plot KIND``."""
    parser.add_argument("kind", choices=PLOT_KINDS, help="which figure(s) to draw")
    _add_common(parser)
    parser.add_argument("--out", metavar="DIR", default="figures",
                        help="directory for the figure files (default: figures)")
    parser.add_argument("--format", dest="image_format", choices=("png", "pdf", "svg"),
                        default="png", help="image format (default png)")
    parser.add_argument("--dpi", type=int, default=200,
                        help="resolution of PNG files (default 200)")
    parser.add_argument("--act", action="append", metavar="NAMES",
                        help="activations: only these registered names (default: every "
                             "baseline, plus SAU vs Leaky ReLU and the ASH gate if registered)")
    parser.add_argument("--sau-n", type=float, action="append", metavar="N",
                        help="activations: SAU n values (repeat; default 1 2 5 10)")
    parser.add_argument("--sau-alpha", type=float, default=0.01,
                        help="activations: SAU and Leaky ReLU slope α (default 0.01)")
    parser.add_argument("--ash-z", type=float, action="append", metavar="Z",
                        help="activations: ASH thresholds z for the gate figure (repeat; "
                             "default -1 0 1 2)")
    parser.add_argument("--ash-alpha", type=float, action="append", metavar="A",
                        help="activations: ASH gate sharpness α (repeat; default 1)")
    parser.add_argument("--key", default="val_loss",
                        help="val-loss: history key to plot (default val_loss)")
    parser.add_argument("--threshold", type=float,
                        help="val-loss: level for 'epochs to reach' (default: per cell, the "
                             "level every layer's mean curve reaches)")
    parser.add_argument("--row-axis", default="batch_size", help="bn-vs-agc: grid rows")
    parser.add_argument("--col-axis", default="lr", help="bn-vs-agc: grid columns")


def run_plot(args: argparse.Namespace) -> int:
    """Draw figure ``args.kind`` for every selected study; prints the files written."""
    try:
        if args.kind == "activations":
            paths = write_activation_figures(
                args.out, args.image_format, names=_names(args.act),
                sau_ns=tuple(args.sau_n or (1, 2, 5, 10)), sau_alpha=args.sau_alpha,
                ash_zs=tuple(args.ash_z or (-1.0, 0.0, 1.0, 2.0)),
                ash_alphas=tuple(args.ash_alpha or (1.0,)), dpi=args.dpi,
            )
        else:
            runs = load_runs(args.db, args.study)
            paths = []
            for study, rs in runs_by_study(runs).items():
                paths += write_study_figure(
                    args.kind, rs, args.out, args.image_format, study=study, key=args.key,
                    threshold=args.threshold, row_axis=args.row_axis, col_axis=args.col_axis,
                    dpi=args.dpi,
                )
    except ImportError as exc:
        return _error("actlab plot", exc)
    except (StoreError, ValueError, KeyError, TypeError) as exc:
        return _error("actlab plot", exc)
    if not paths:
        print(f"actlab plot: nothing to draw for {args.kind!r} in {args.db} "
              "(no finished runs with the needed history)", file=sys.stderr)
        return 1
    for p in paths:
        print(p)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry: ``python -m actlab.report.cli {report,plot} ...``."""
    parser = argparse.ArgumentParser(prog="actlab-report")
    sub = parser.add_subparsers(dest="command", required=True)
    add_report_arguments(sub.add_parser("report", help="result tables"))
    add_plot_arguments(sub.add_parser("plot", help="figures"))
    args = parser.parse_args(argv)
    return run_report(args) if args.command == "report" else run_plot(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
