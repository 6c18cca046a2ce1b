"""Numbers for the prose: a measured value glued into the text by the cell that asserted it.

The book never types a measurement into its Markdown. The cell that measures a value asserts a
bound on it and glues it (myst-nb's ``glue``); the text shows it with the ``{glue:text}`` role,
so a re-execution can never leave the words behind the numbers:

    >>> gap = 2.4983
    >>> assert 1.0 < gap < 4.0
    >>> text = glue("test_gap", gap, "{:.2f}")        # in the Markdown: {glue:text}`test_gap`
    >>> text
    2.50

``glue`` stores the formatted *text* as a string (myst-nb strips its quotes), so the page shows
exactly what the format made, trailing zeros included ("2.50", not "2.5"). ``sci`` writes a small or large number the way the prose does, ``1.3 × 10⁻⁸``.
Outside a myst-nb build (a plain kernel, JupyterLab) the value is recorded as an ordinary
hidden display and nothing is shown.
"""
from __future__ import annotations

import math
from typing import Callable

__all__ = ["glue", "sci", "Text"]

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


class Text(str):
    """The glued text, as returned to the cell: its repr is the text itself, and as a cell's
    last expression it displays nothing (the value is in the prose; a displayed copy would be
    an output for nbval to compare, and measurements differ from run to run)."""

    def __repr__(self) -> str:
        return str(self)

    def _ipython_display_(self) -> None:
        return None


def sci(value: float, digits: int = 2) -> str:
    """``value`` in the prose's scientific notation with ``digits`` significant digits:
    ``sci(1.27e-8) == '1.3 × 10⁻⁸'``, ``sci(0.5) == '5.0 × 10⁻¹'``; NaN and inf as such."""
    v = float(value)
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    mantissa, exponent = f"{v:.{digits - 1}e}".split("e")
    exponent = str(int(exponent)).translate(_SUPERSCRIPT)
    return f"{mantissa} × 10{exponent}" if mantissa not in ("1", "-1") else \
        f"{'-' if mantissa == '-1' else ''}10{exponent}"


def glue(name: str, value, fmt: str | Callable[[object], str] = "{}") -> Text:
    """Format ``value`` and glue the text under ``name`` (myst-nb), without displaying it.

    Args:
      name: the key the Markdown names, ``{glue:text}`name```.
      value: the measured value (asserted in the same cell, before this call).
      fmt: a ``str.format`` pattern (``"{:.2f}"``, ``"{:.0%}"``) or a callable such as ``sci``.
    Returns:
      The text glued, so the cell can also print it.
    """
    text = Text(fmt(value) if callable(fmt) else fmt.format(value))
    try:
        from myst_nb import glue as _myst_glue
    except ImportError:          # no myst-nb: nothing to glue into, the value is still returned
        return text
    _myst_glue(name, str(text), display=False)
    return text
