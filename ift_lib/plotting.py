"""One figure style for the whole book (matplotlib figures, static fallbacks, widget colours)."""
from __future__ import annotations

import contextlib

import matplotlib as mpl

#: Named colours shared by matplotlib figures and the widgets' JavaScript.
PALETTE = {
    "curve": "#1f3b57",      # the relation / main curve
    "point": "#d1495b",      # the current solution point
    "tangent": "#2e86ab",    # IFT derivative / tangent line
    "arc": "#3a9d5d",        # a local parameterization
    "warn": "#b45309",       # where the IFT does not apply (4.8:1 on white)
    "grid": "#d9dde3",
    "text": "#222222",
    "muted": "#6b7280",
}

STYLE = {
    "figure.figsize": (6.0, 4.0),
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": PALETTE["grid"],
    "grid.linewidth": 0.6,
    "axes.prop_cycle": mpl.cycler(color=[PALETTE[k] for k in ("curve", "point", "tangent", "arc", "warn")]),
    "legend.frameon": False,
    "lines.linewidth": 2.0,
    "svg.hashsalt": "ift-book",   # deterministic SVG ids
}


def use_book_style() -> None:
    """Apply the book's matplotlib style globally (chapters call this once)."""
    mpl.rcParams.update(STYLE)


@contextlib.contextmanager
def book_style():
    """Context manager form of :func:`use_book_style`."""
    with mpl.rc_context(STYLE):
        yield
