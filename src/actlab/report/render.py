"""Render a table of strings as terminal text, Markdown, LaTeX (booktabs) or CSV.

A :class:`TextTable` holds already-formatted cell strings plus the set of cells to emphasise
(bold in Markdown/LaTeX, a trailing ``*`` in text, a ``best`` column is the caller's job in CSV).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["FORMATS", "TextTable", "check_format", "latex_escape"]

FORMATS = ("text", "md", "latex", "csv")

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "α": r"$\alpha$",
    "λ": r"$\lambda$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "–": "--",
}


def check_format(fmt: str) -> str:
    """Return ``fmt`` if it is one of :data:`FORMATS`, else raise ``ValueError``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown table format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return fmt


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters (and map ±, α, λ, ≤, ≥ to math)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def _md_escape(text: str) -> str:
    return str(text).replace("|", r"\|")


@dataclass
class TextTable:
    """Header + rows of strings, emphasised cells, a title above and notes below."""

    header: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)
    title: str = ""
    notes: list[str] = field(default_factory=list)
    align: Sequence[str] | None = None  # per column "l" or "r"

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.header):
                raise ValueError(
                    f"row {i} has {len(row)} cells but the header has {len(self.header)}"
                )

    def _align(self) -> list[str]:
        if self.align is not None:
            return list(self.align)
        return ["l"] * len(self.header)

    def render(self, fmt: str) -> str:
        """The table in ``fmt`` (one of :data:`FORMATS`), ending with a newline."""
        check_format(fmt)
        return getattr(self, f"_render_{fmt}")()

    # -- formats ---------------------------------------------------------------------------
    def _render_text(self) -> str:
        marked = {j for _, j in self.bold}
        cells = [
            [c + (" *" if (r, j) in self.bold else "  " if j in marked else "")
             for j, c in enumerate(row)]
            for r, row in enumerate(self.rows)
        ]
        widths = [
            max([len(h)] + [len(row[j]) for row in cells]) for j, h in enumerate(self.header)
        ]
        align = self._align()

        def line(values: list[str]) -> str:
            parts = [
                v.rjust(w) if a == "r" else v.ljust(w)
                for v, w, a in zip(values, widths, align, strict=True)
            ]
            return "  ".join(parts).rstrip()

        out = []
        if self.title:
            out.append(self.title)
        out.append(line(self.header))
        out.append("  ".join("-" * w for w in widths))
        out.extend(line(row) for row in cells)
        out.extend(self.notes)
        return "\n".join(out) + "\n"

    def _render_md(self) -> str:
        align = self._align()
        out = []
        if self.title:
            out += [f"**{_md_escape(self.title)}**", ""]
        out.append("| " + " | ".join(_md_escape(h) for h in self.header) + " |")
        out.append("|" + "|".join("---:" if a == "r" else ":---" for a in align) + "|")
        for r, row in enumerate(self.rows):
            cells = [
                f"**{_md_escape(c)}**" if (r, j) in self.bold and c else _md_escape(c)
                for j, c in enumerate(row)
            ]
            out.append("| " + " | ".join(cells) + " |")
        if self.notes:
            out.append("")
            out.extend(_md_escape(n) for n in self.notes)
        return "\n".join(out) + "\n"

    def _render_latex(self) -> str:
        align = "".join(self._align())
        out = [r"\begin{table}[ht]", r"\centering"]
        if self.title:
            out.append(r"\caption{" + latex_escape(self.title) + "}")
        out += [r"\begin{tabular}{" + align + "}", r"\toprule"]
        out.append(" & ".join(latex_escape(h) for h in self.header) + r" \\")
        out.append(r"\midrule")
        for r, row in enumerate(self.rows):
            cells = [
                r"\textbf{" + latex_escape(c) + "}" if (r, j) in self.bold and c
                else latex_escape(c)
                for j, c in enumerate(row)
            ]
            out.append(" & ".join(cells) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}"]
        if self.notes:
            out.append(r"\par\smallskip{\footnotesize " + latex_escape(" ".join(self.notes)) + "}")
        out.append(r"\end{table}")
        return "\n".join(out) + "\n"

    def _render_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.header)
        writer.writerows(self.rows)
        return buf.getvalue()
