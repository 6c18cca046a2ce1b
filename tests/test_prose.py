"""ift_lib.prose: the text a chapter glues is exactly what its format made."""
import math

import pytest

from ift_lib import prose


def test_sci_writes_the_prose_notation():
    assert prose.sci(1.27e-8) == "1.3 × 10⁻⁸"
    assert prose.sci(-3.4e5, 3) == "-3.40 × 10⁵"
    assert prose.sci(0.5) == "5.0 × 10⁻¹"
    assert prose.sci(1e-3, 1) == "10⁻³"
    assert prose.sci(0.0) == "0"
    assert prose.sci(math.nan) == "nan" and prose.sci(math.inf) == "inf"


def test_text_has_no_quotes_in_its_repr():
    assert repr(prose.Text("2.50")) == "2.50"


def test_glue_formats_and_records_the_text(monkeypatch):
    recorded = {}
    import myst_nb
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True:
                        recorded.update({name: (value, display)}))
    assert prose.glue("x_gap", 2.4983, "{:.2f}") == "2.50"
    assert prose.glue("x_err", 1.27e-8, prose.sci) == "1.3 × 10⁻⁸"
    value, display = recorded["x_gap"]
    assert type(value) is str and value == "2.50" and display is False
    assert recorded["x_err"][0] == "1.3 × 10⁻⁸"


def test_the_page_shows_the_text_exactly():
    """myst-nb's {glue:text} literal_evals the stored text/plain: a plain str keeps "2.50"."""
    from IPython.core.interactiveshell import InteractiveShell
    from myst_nb.core.variables import format_plain_text
    data, _ = InteractiveShell.instance().display_formatter.format("2.50")
    assert format_plain_text(data["text/plain"], "") == "2.50"
    assert format_plain_text(InteractiveShell.instance().display_formatter.format(
        "1.3 × 10⁻⁸")[0]["text/plain"], "") == "1.3 × 10⁻⁸"


def test_a_glue_on_a_cells_last_line_displays_nothing():
    from IPython.core.interactiveshell import InteractiveShell
    data, _ = InteractiveShell.instance().display_formatter.format(prose.Text("2.50"))
    assert not data


def test_glue_refuses_a_bad_format():
    with pytest.raises((ValueError, IndexError, KeyError)):
        prose.glue("x_bad", 1.0, "{:.2q}")
