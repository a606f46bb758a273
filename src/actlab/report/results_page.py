"""A Markdown results page: per study, the summary table, win/tie/loss tables of the paper layers
against the baselines, and links to the figures (which are written alongside).

Each study section carries an HTML comment ``<!-- claims: STUDY -->`` where the per-claim
sentences go; the page itself states only numbers computed from the store.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from actlab.report.curves import epochs_to_reach
from actlab.report.figures import (
    STUDY_KINDS,
    applicable,
    runs_by_study,
    write_activation_figures,
    write_study_figure,
)
from actlab.report.grouping import layer_label, uses_several_norms
from actlab.report.load import RunRecord, load_runs
from actlab.report.stats import TestName
from actlab.report.tables import summarize_runs, win_tie_loss

__all__ = ["PAPER_LAYERS", "write_results_page", "split_layers"]

#: layers whose papers this project reproduces; every other layer is a baseline by default
PAPER_LAYERS = ("sau", "ash", "agc")

_CAPTIONS = {
    "curves": "Training curves: train (dashed) and test (solid) accuracy and loss, mean ± std "
              "over seeds",
    "val-loss": "Validation loss per epoch, all layers, mean ± std over seeds",
    "bn-vs-agc": "Validation error per epoch across batch sizes (rows) and learning rates "
                 "(columns)",
    "agc-lambda": "AGC λ per layer over training",
    "ash": "ASH active fraction and learned z per layer over training",
}


def split_layers(
    runs: Sequence[RunRecord], paper_layers: Iterable[str] = PAPER_LAYERS
) -> tuple[list[str], list[str]]:
    """(candidates, baselines): layers whose act or norm is a paper layer, and the rest."""
    paper = set(paper_layers)
    with_norm = uses_several_norms(runs)
    cands, bases = [], []
    for r in runs:
        lab = layer_label(r, with_norm)
        target = cands if (r.act in paper or (with_norm and r.norm in paper)) else bases
        if lab not in cands and lab not in bases:
            target.append(lab)
    return sorted(cands), sorted(bases)


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def write_results_page(
    db_path: str | os.PathLike[str],
    out_md: str | os.PathLike[str],
    fig_dir: str | os.PathLike[str],
    studies: str | Sequence[str] | None = None,
    *,
    metric: str | None = None,
    alpha: float = 0.05,
    test: TestName = "auto",
    paper_layers: Iterable[str] = PAPER_LAYERS,
    activations: bool = True,
    image_format: str = "png",
    dpi: int = 120,
    title: str = "Results",
) -> Path:
    """Write the results page to ``out_md`` and its figures to ``fig_dir``; returns ``out_md``.

    ``studies`` selects studies (default: all in the store). Figure links are relative to the
    page. Win/tie/loss tables compare each paper layer (SAU, ASH, AGC) with every other layer
    of its study, by the test of :func:`actlab.report.stats.compare` at level ``alpha``.
    """
    out = Path(out_md)
    figs = Path(fig_dir)
    runs = load_runs(db_path, studies)
    if not runs:
        raise ValueError(f"no finished runs in {os.fspath(db_path)!r}"
                         + (f" for studies {studies!r}" if studies else ""))
    base = out.parent
    lines = [f"# {title}", ""]
    n_st = len({r.study for r in runs})
    lines += [f"Finished runs read from `{Path(db_path).name}`: {len(runs)} runs in {n_st} "
              f"stud{'y' if n_st == 1 else 'ies'}. Final metrics are last-epoch values; "
              "± is the sample standard deviation over seeds, brackets the 95% Student-t "
              "confidence interval.", ""]
    if activations:
        lines += ["## Activation shapes", ""]
        for p in write_activation_figures(figs, image_format, dpi=dpi):
            lines += [f"![{p.stem}]({_rel(p, base)})", ""]

    for study, rs in runs_by_study(runs).items():
        lines += [f"## Study `{study}`", "", f"<!-- claims: {study} -->", ""]
        table = summarize_runs(rs, metric)
        lines += [table.format("md").rstrip(), ""]
        cands, bases = split_layers(rs, paper_layers)
        for cand in cands if bases else []:
            wtl = win_tie_loss(rs, cand, bases, table.metric, alpha=alpha, test=test)
            if wtl.cells:
                lines += [wtl.format("md").rstrip(), ""]
        for kind in STUDY_KINDS:
            if not applicable(kind, rs):
                continue
            for p in write_study_figure(kind, rs, figs, image_format, study=study,
                                        dpi=dpi):
                if p.suffix == ".md":
                    continue
                lines += [f"![{_CAPTIONS[kind]}]({_rel(p, base)})", "", f"*{_CAPTIONS[kind]}.*",
                          ""]
            if kind == "val-loss":
                lines += [epochs_to_reach(rs, "val_loss").format("md").rstrip(), ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines).rstrip() + "\n"
    out.write_text(text, encoding="utf-8")
    return out
