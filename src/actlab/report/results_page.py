"""A Markdown results page: per study, the summary table, win/tie/loss tables of the paper layers
against the baselines, and links to the figures (which are written alongside).

Per-claim verdicts (does a paper's claim hold on our runs?) are not computed here: they are given
as :class:`Claim` objects, or written by hand into the page. The page has a marked block for them
at the top (``<!-- claims -->`` … ``<!-- /claims -->``) and in every study section
(``<!-- claims: STUDY -->`` … ``<!-- /claims: STUDY -->``). Regenerating the page keeps whatever
was written inside those blocks unless new claims are passed for them; empty blocks show a visible
placeholder. Everything else on the page is numbers computed from the store.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from actlab.report.curves import epochs_to_reach
from actlab.report.figures import (
    STUDY_KINDS,
    applicable,
    runs_by_study,
    write_activation_figures,
    write_study_figure,
)
from actlab.report.grouping import PAPER_LAYERS, layer_label, uses_several_norms
from actlab.report.load import RunRecord, load_runs
from actlab.report.stats import Correction, TestName
from actlab.report.tables import (
    DEFAULT_CORRECTION,
    correction_method,
    interval_method,
    summarize_runs,
    win_tie_loss,
)

__all__ = ["PAPER_LAYERS", "VERDICTS", "Claim", "write_results_page", "split_layers",
           "read_claim_blocks"]

#: the allowed verdicts of a :class:`Claim`
VERDICTS = ("holds", "does not hold", "not testable")

_PLACEHOLDER = ("_Claims not yet assessed: one line per paper claim, verdict **holds** / "
                "**does not hold** / **not testable**, with the numbers that decide it._")


@dataclass(frozen=True)
class Claim:
    """One paper claim and what the runs say about it.

    Args:
        claim: the claim in a few words, with its source (e.g. "SAU beats Leaky ReLU on
            CIFAR-10 (SAU paper, Table 3)").
        verdict: one of :data:`VERDICTS`.
        evidence: the numbers that decide it (e.g. "91.2 ± 0.3 vs 90.1 ± 0.4 %, paired t-test
            p = 0.004, 5 seeds"); for "not testable", the reason.
    """

    claim: str
    verdict: str
    evidence: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(
                f"claim verdict must be one of {', '.join(map(repr, VERDICTS))}, "
                f"got {self.verdict!r}"
            )
        if not self.claim.strip():
            raise ValueError("claim text must not be empty")

    def format(self) -> str:
        line = f"- **{self.verdict}** — {self.claim.strip()}"
        return line + (f": {self.evidence.strip()}" if self.evidence.strip() else "")


_BLOCK = re.compile(
    r"<!-- claims(?:: (?P<key>[^\n]*?))? -->\n(?P<body>.*?)<!-- /claims(?:: (?P<end>[^\n]*?))? -->",
    re.S,
)


def _open_tag(key: str | None) -> str:
    return "<!-- claims -->" if key is None else f"<!-- claims: {key} -->"


def _close_tag(key: str | None) -> str:
    return "<!-- /claims -->" if key is None else f"<!-- /claims: {key} -->"


def read_claim_blocks(md: str | os.PathLike[str]) -> dict[str | None, str]:
    """The text inside each claims block of an existing page (``None`` = the top block);
    placeholders count as empty. A missing file gives ``{}``."""
    path = Path(md)
    if not path.is_file():
        return {}
    out: dict[str | None, str] = {}
    for m in _BLOCK.finditer(path.read_text(encoding="utf-8")):
        if m.group("key") != m.group("end"):
            continue
        body = m.group("body").strip()
        if body and body != _PLACEHOLDER:
            out[m.group("key")] = body
    return out


def _claims_block(key: str | None, claims: Sequence[Claim | str] | None,
                  kept: Mapping[str | None, str]) -> list[str]:
    if claims:
        body = "\n".join(c.format() if isinstance(c, Claim) else str(c) for c in claims)
    else:
        body = kept.get(key) or _PLACEHOLDER
    return [_open_tag(key), body, _close_tag(key), ""]


_CAPTIONS = {
    "curves": "Training curves: train (dashed) and test (solid) accuracy and loss, mean ± std "
              "over seeds (with more than 7 layers, the paper layers and ReLU in colour and the "
              "others in grey)",
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


def _correction_sentence(correction: str) -> str:
    if correction == "none":
        return correction_method(correction)
    return (f"{correction_method(correction)}, over all comparisons of one table "
            f"(`--correction {correction}`, the default; `holm`, `bh` or `none`)"
            if correction == DEFAULT_CORRECTION else
            f"{correction_method(correction)}, over all comparisons of one table")


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
    correction: Correction = DEFAULT_CORRECTION,
    paper_layers: Iterable[str] = PAPER_LAYERS,
    activations: bool = True,
    figures: bool = True,
    image_format: str = "png",
    dpi: int = 200,
    title: str = "Results",
    claims: Mapping[str | None, Sequence[Claim | str]] | None = None,
    keep_claims: bool = True,
) -> Path:
    """Write the results page to ``out_md`` and its figures to ``fig_dir``; returns ``out_md``.

    ``studies`` selects studies (default: all in the store). ``activations=False`` leaves out
    the activation-shape figures, ``figures=False`` every figure (tables only). Figure links are
    relative to the page. Win/tie/loss tables compare each paper layer (SAU, ASH, AGC) with
    every other layer of its study, by the test of :func:`actlab.report.stats.compare` at
    level ``alpha`` after the multiple-comparison ``correction`` of each table's p-values
    (Holm by default; stated at the top of the page and under each table).

    ``claims`` maps a study name (or ``None``, the summary block at the top) to its
    :class:`Claim` list (plain strings are written as they are). Blocks without new claims keep
    the text an existing ``out_md`` has in them when ``keep_claims`` (the default), else show a
    placeholder.
    """
    out = Path(out_md)
    figs = Path(fig_dir)
    runs = load_runs(db_path, studies)
    if not runs:
        raise ValueError(f"no finished runs in {os.fspath(db_path)!r}"
                         + (f" for studies {studies!r}" if studies else ""))
    claims = dict(claims or {})
    unknown = sorted(str(k) for k in claims if k is not None and k not in {r.study for r in runs})
    if unknown:
        raise ValueError(f"claims given for studies not on the page: {', '.join(unknown)}")
    kept = read_claim_blocks(out) if keep_claims else {}
    base = out.parent
    lines = [f"# {title}", ""]
    n_st = len({r.study for r in runs})
    lines += [f"Finished runs read from `{Path(db_path).name}`: {len(runs)} runs in {n_st} "
              f"stud{'y' if n_st == 1 else 'ies'}. Final metrics are last-epoch values; "
              "± is the sample standard deviation over seeds, brackets the 95% confidence "
              f"interval ({interval_method((0.0, 100.0))} % for accuracy and mIoU: the "
              "t-interval intersected with the metric's range). Win/tie/loss: two-sided tests "
              f"at alpha = {alpha:g}, {_correction_sentence(correction)}.", ""]
    lines += ["## Paper claims", ""] + _claims_block(None, claims.get(None), kept)
    if activations:
        lines += ["## Activation shapes", ""]
        for p in write_activation_figures(figs, image_format, dpi=dpi):
            lines += [f"![{p.stem}]({_rel(p, base)})", ""]

    for study, rs in runs_by_study(runs).items():
        lines += [f"## Study `{study}`", "", "### Claims", ""]
        lines += _claims_block(study, claims.get(study), kept)
        lines += ["### Numbers", ""]
        table = summarize_runs(rs, metric)
        lines += [table.format("md").rstrip(), ""]
        cands, bases = split_layers(rs, paper_layers)
        for cand in cands if bases else []:
            wtl = win_tie_loss(rs, cand, bases, table.metric, alpha=alpha, test=test,
                               correction=correction)
            if wtl.cells:
                lines += [wtl.format("md").rstrip(), ""]
        for kind in STUDY_KINDS if figures else ():
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
