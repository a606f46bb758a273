"""Figure style for print: a colour-blind-safe palette with line styles and markers, fonts sized
for a single journal column, legends outside the data.

* Colours: the Okabe–Ito palette (Okabe & Ito 2008, "Color Universal Design"), without its
  yellow (#F0E442), which is too pale on white: black, orange, sky blue, bluish green, blue,
  vermillion, reddish purple. These stay distinct for the common colour-vision deficiencies.
* Every series also gets its own marker, and after the seven colours its own line style, so
  that no two series look alike in colour, in greyscale or to a colour-blind reader.
* Sequential data (modules by depth) use viridis cut at 0.8, which ends in green rather than in
  pale yellow.
* Sizes: :data:`COLUMN_WIDTH` (3.3 in) for one- and two-panel figures, :data:`PAGE_WIDTH`
  (6.9 in, a two-column page) for grids of three columns; text is 7–8 pt at that physical
  size, so it stays readable when the figure is printed at its width.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = [
    "OKABE_ITO",
    "MARKERS",
    "LINESTYLES",
    "COLUMN_WIDTH",
    "PAGE_WIDTH",
    "RC",
    "SeriesStyle",
    "series_styles",
    "depth_colors",
    "paper_style",
    "with_paper_style",
]

#: Okabe–Ito colours without yellow, in the order series receive them
OKABE_ITO = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7")
#: one marker per series (cycled with a period coprime to the seven colours)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")
#: line styles, changed each time the colours run out
LINESTYLES = ("-", "--", ":", "-.")

#: width of one column of a two-column paper, inches
COLUMN_WIDTH = 3.3
#: width of a full two-column page, inches
PAGE_WIDTH = 6.9

#: matplotlib settings used while a figure is built and saved
RC: dict[str, Any] = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "figure.titlesize": 8,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "axes.linewidth": 0.6,
    "grid.linewidth": 0.4,
    "axes.formatter.useoffset": False,
    "legend.frameon": False,
    "savefig.dpi": 200,
}

F = TypeVar("F", bound=Callable[..., Any])


class SeriesStyle(dict):
    """``color``, ``linestyle`` and ``marker`` of one series (pass as ``**style`` to ``plot``)."""

    @property
    def color(self) -> str:
        return self["color"]


def series_styles(labels: Sequence[str], *, linestyles: bool = True) -> dict[str, SeriesStyle]:
    """A distinct (colour, marker[, line style]) per label, in the order given.

    Series ``i`` gets colour ``OKABE_ITO[i % 7]``, marker ``MARKERS[i % 9]`` and, with
    ``linestyles``, line style ``LINESTYLES[i // 7]`` (solid for the first seven). Figures that
    use the line style for something else (train vs test) pass ``linestyles=False``: colour and
    marker together still differ for up to 63 series.
    """
    out = {}
    for i, lab in enumerate(labels):
        style = SeriesStyle(color=OKABE_ITO[i % len(OKABE_ITO)],
                            marker=MARKERS[i % len(MARKERS)])
        style["linestyle"] = LINESTYLES[(i // len(OKABE_ITO)) % len(LINESTYLES)] if linestyles \
            else "-"
        out[lab] = style
    return out


def depth_colors(n: int) -> list[Any]:
    """``n`` colours from viridis[0, 0.8] (dark blue to green; no pale yellow), shallow first."""
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(0.8 * i / max(1, n - 1)) for i in range(n)]


@contextmanager
def paper_style() -> Iterator[None]:
    """Apply :data:`RC` while building or saving a figure."""
    import matplotlib

    with matplotlib.rc_context(RC):
        yield


def with_paper_style(fn: F) -> F:
    """Decorator: build the figure under :func:`paper_style`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with paper_style():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
