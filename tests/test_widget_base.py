"""ift_lib.widgets._base: the shared base of the widgets (fallback HTML, deterministic repr,
display order), the formatting helpers and the argument checks."""
from __future__ import annotations

import base64
import html
import math
import re

import numpy as np
import pytest
import traitlets
from matplotlib.figure import Figure

from ift_lib.plotting import PALETTE
from ift_lib.widgets import CircleWidget, KIterationsWidget, SoftmaxWidget
from ift_lib.widgets._base import IFTWidget, check_int, check_real, fmt_fixed, round_sig


class Toy(IFTWidget):
    """A minimal subclass: only a table, a figure, a readout, an alt text and repr fields."""

    _esm = "export default { render({ el }) { el.textContent = 'toy'; } }"
    value = traitlets.Float(0.0).tag(sync=True)

    def __init__(self, value=-0.00001, **kwargs):
        super().__init__(table={"values": [1.0, 2.0]}, value=check_real("value", value), **kwargs)

    def _repr_fields(self):
        return [("value", fmt_fixed(self.value, 3)), ("n", len(self.table["values"]))]

    def readout(self):
        return [f"value = {fmt_fixed(self.value, 3)}", "a < b & c"]

    def alt_text(self):
        return "Toy: " + "; ".join(self.readout())

    def fallback_figure(self):
        fig = Figure(figsize=(2, 1))
        fig.add_axes((0.1, 0.1, 0.8, 0.8)).plot(self.table["values"])
        fig.text(0.1, 0.9, self.readout()[0])
        return fig


@pytest.mark.parametrize("cls", [CircleWidget, SoftmaxWidget, KIterationsWidget])
def test_the_widgets_share_the_base(cls):
    assert issubclass(cls, IFTWidget)
    for name in ("table", "palette"):   # the shared traits, synced, declared once in the base
        assert cls.class_traits()[name].metadata.get("sync") is True
        assert name not in cls.__dict__
    for name in ("__repr__", "_ipython_display_", "fallback_html", "fallback_svg"):
        assert name not in cls.__dict__, f"{cls.__name__} redefines {name}"
    for name in ("fallback_figure", "readout", "alt_text", "_repr_fields"):
        assert name in cls.__dict__, f"{cls.__name__} lacks {name}"


def test_fallback_html_structure():
    w = Toy(0.25)
    out = w.fallback_html()
    m = re.fullmatch(r'<div class="ift-widget-fallback"><img src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)" '
                     r'alt="([^"]*)" style="max-width:100%;height:auto"></div>', out)
    assert m, out[:200]
    svg = base64.b64decode(m.group(1)).decode("utf-8")
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "<!--" not in svg and "\n" not in svg
    assert html.unescape(m.group(2)) == "Toy: value = 0.250; a < b & c"   # escaped in the attribute
    assert "&lt;" in m.group(2) and "&amp;" in m.group(2)
    assert out == Toy(0.25).fallback_html()                               # deterministic


def test_compact_svg_keeps_text_as_text():
    class CompactToy(Toy):
        _compact_svg = True

    plain, compact = Toy(0.5).fallback_svg(), CompactToy(0.5).fallback_svg()
    assert "value = 0.500" in compact and "value = 0.500" not in plain   # text, not glyph paths
    assert len(compact) < len(plain)
    assert not re.search(r' d="[^"]*\d\.\d{3}', compact)                 # path coordinates rounded


def test_repr_is_deterministic():
    a, b = Toy(-0.00001), Toy(-0.00001)
    assert repr(a) == repr(b) == "Toy(value=0.000, n=2)"                 # no '-0.000', no address
    assert "0x" not in repr(a)


def test_palette_and_display_order(monkeypatch):
    import IPython.display
    w = Toy(1.0)
    assert w.palette == dict(PALETTE)
    assert Toy(1.0, palette={"text": "#000"}).palette == {"text": "#000"}
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *a, **kw: shown.append((a, kw)))
    w._ipython_display_()
    (first, _), (second, kw) = shown
    assert first[0].data == w.fallback_html()                            # static fallback first
    assert second[0]["text/plain"] == repr(w) and kw["raw"] is True      # then the live view


def test_fmt_fixed():
    assert fmt_fixed(-1.5, 2) == "\u22121.50"
    assert fmt_fixed(-0.00001, 4) == "0.0000" and fmt_fixed(-0.0) == "0.00"
    assert fmt_fixed(0.125, 1) == "0.1" and fmt_fixed(12.0, 0) == "12"


def test_round_sig():
    assert round_sig([1.23456, -0.000123456, -0.0], 3) == [1.23, -0.000123, 0.0]
    out = round_sig(np.array([[123456.0, 1e-20]]), 2)
    assert out == [[120000.0, 1e-20]] and isinstance(out, list)
    assert math.copysign(1.0, round_sig([-1e-30 * 0.0], 2)[0]) == 1.0    # no -0.0


def test_check_int():
    assert check_int("n", 5, 1, 10) == 5 and type(check_int("n", np.int64(5), 1, 10)) is int
    for bad in (5.0, "5", True, None):
        with pytest.raises(TypeError, match="n must be an int"):
            check_int("n", bad, 1, 10)
    for bad in (0, 11):
        with pytest.raises(ValueError, match="n must be between 1 and 10"):
            check_int("n", bad, 1, 10)


def test_check_real():
    assert check_real("t", 2) == 2.0 and type(check_real("t", np.float32(0.5))) is float
    for bad in ("1", None, True, 1j):
        with pytest.raises(TypeError, match="t must be a real number"):
            check_real("t", bad)
    with pytest.raises(TypeError, match="t must be a real number or None"):
        check_real("t", "x", "a real number or None")
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="t must be finite"):
            check_real("t", bad)
