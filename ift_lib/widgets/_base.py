"""What the book's widgets share: the ``table`` and ``palette`` traits, display (static fallback,
then the live view), a deterministic repr, the static fallback's HTML, number formatting and
argument checks. A subclass supplies its JavaScript and CSS, its table, ``fallback_figure()``,
``readout()``, ``alt_text()`` and ``_repr_fields()``."""
from __future__ import annotations

import base64
import html
import io
import math
import numbers
import pathlib
import re

import anywidget
import matplotlib as mpl
import numpy as np
import traitlets
from matplotlib.figure import Figure

from ift_lib.plotting import PALETTE, book_style

FALLBACK_CLASS = "ift-widget-fallback"   # the widgets' CSS hides it once the live view renders


# ----------------------------------------------------------------------------- formatting

_HERE = pathlib.Path(__file__).parent


def bundle(filename: str) -> str:
    """A widget's JavaScript (``.js``) or stylesheet (``.css``) with the shared ``_common.js`` /
    ``_common.css`` in front: the helpers every widget uses are written once."""
    suffix = pathlib.Path(filename).suffix
    return (_HERE / f"_common{suffix}").read_text() + "\n" + (_HERE / filename).read_text()


def fmt_fixed(v: float, decimals: int = 2) -> str:
    """Fixed decimals, typographic minus, no '-0.00' (the rule of the widgets' JavaScript fmt)."""
    s = f"{v:.{decimals}f}"
    if float(s) == 0:
        s = s.lstrip("-")
    return s.replace("-", "\u2212")


def round_sig(a, digits: int) -> list:
    """Floats rounded to ``digits`` significant digits (and no -0.0), as (nested) lists."""
    return np.vectorize(lambda v: float(f"{v:.{digits - 1}e}") + 0.0, otypes=[float])(a).tolist()


# ----------------------------------------------------------------------------- argument checks

def check_int(name: str, value, lo: int, hi: int) -> int:
    """``value`` as an int in [lo, hi]: TypeError for a non-int (bool included), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, got {value}")
    return int(value)


def check_real(name: str, value, what: str = "a real number") -> float:
    """``value`` as a finite float: TypeError for a non-real (bool included), ValueError if not finite."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {what}, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


# ----------------------------------------------------------------------------- the base class

class IFTWidget(anywidget.AnyWidget):
    """Base of the book's widgets: every number is computed in Python and stored in ``table``; the
    JavaScript only draws and looks up, so the widget stays live in static HTML. Displaying a
    widget emits a static matplotlib figure first (``fallback_html``), then the live view."""

    table = traitlets.Dict().tag(sync=True)
    palette = traitlets.Dict().tag(sync=True)

    #: True: the fallback SVG keeps text as text and rounds path coordinates (a much smaller file).
    _compact_svg = False

    def __init__(self, **kwargs):
        kwargs.setdefault("palette", dict(PALETTE))
        super().__init__(**kwargs)

    # --- what a subclass supplies ---
    def _repr_fields(self) -> list[tuple[str, object]]:
        """(name, value) pairs of the repr; values are shown with ``str``."""
        raise NotImplementedError

    def readout(self) -> list[str]:
        """The lines of text the widget shows in its current state."""
        raise NotImplementedError

    def alt_text(self) -> str:
        """The static image's alternative text."""
        raise NotImplementedError

    def fallback_figure(self) -> Figure:
        """A matplotlib figure of what the widget shows in its current state."""
        raise NotImplementedError

    # --- shared ---
    def __repr__(self) -> str:   # deterministic (anywidget's default shows a memory address)
        fields = ", ".join(f"{k}={v}" for k, v in self._repr_fields())
        return f"{type(self).__name__}({fields})"

    def _ipython_display_(self, **kwargs):
        """Display the static fallback (HTML output), then the live widget view."""
        from IPython.display import HTML, display
        display(HTML(self.fallback_html()))
        data, metadata = self._repr_mimebundle_(**kwargs)
        display(data, metadata=metadata, raw=True)

    def fallback_svg(self) -> str:
        """``fallback_figure()`` as SVG text, deterministic, without comments or indentation."""
        buf = io.BytesIO()
        rc = {"svg.fonttype": "none"} if self._compact_svg else {}
        with book_style():
            fig = self.fallback_figure()
            with mpl.rc_context(rc):
                fig.savefig(buf, format="svg", metadata={"Date": None})
        svg = re.sub(r"<!--.*?-->", "", buf.getvalue().decode("utf-8"), flags=re.S)
        svg = re.sub(r"\s*\n\s*", " ", svg).replace("> <", "><")
        if self._compact_svg:   # path coordinates to 0.01 pt; text (fonttype none) kept as is
            svg = re.sub(r' d="[^"]*"', lambda m: re.sub(r"(\d\.\d\d)\d+", r"\1", m.group(0)), svg)
        return svg

    def fallback_html(self) -> str:
        """``<div class="ift-widget-fallback">`` with the figure as an inline SVG image."""
        src = "data:image/svg+xml;base64," + base64.b64encode(
            self.fallback_svg().encode("utf-8")).decode("ascii")
        return (f'<div class="{FALLBACK_CLASS}"><img src="{src}" alt="{html.escape(self.alt_text())}" '
                f'style="max-width:100%;height:auto"></div>')
