"""CircleWidget (Python side): its state holds ift_lib's numbers, `index` moves the point, bad input fails.

The JavaScript side is tested in a real browser in tests/browser/test_circle_widget.py.
"""
from __future__ import annotations

import json
import math

import jax
import pytest

from ift_lib import IFTConditionError
from ift_lib.circle import ift_slope
from ift_lib.plotting import PALETTE
from ift_lib.widgets import CircleWidget


@pytest.fixture(scope="module")
def widget():
    return CircleWidget()   # the book's default: phi = 60 degrees, 360 samples


def test_default_point(widget):
    assert widget.num_points == 360 and widget.index == 60
    assert widget.theta == pytest.approx(0.5, abs=1e-15)
    assert widget.x == pytest.approx(math.sqrt(3) / 2, abs=1e-15)
    assert widget.palette == PALETTE


@pytest.mark.parametrize("index", [7, 45, 60, 89, 91, 135, 200, 270, 300, 359])
def test_state_matches_ift_slope(widget, index):
    widget.index = index
    theta, x = widget.theta, widget.x
    assert widget.applies
    assert theta**2 + x**2 == pytest.approx(1.0, abs=1e-14)
    assert widget.dF_dtheta == pytest.approx(2 * theta, rel=1e-15, abs=1e-15)
    assert widget.dF_dx == pytest.approx(2 * x, rel=1e-15, abs=1e-15)
    assert widget.dx_dtheta == pytest.approx(float(ift_slope(theta, x)), rel=1e-12, abs=1e-15)
    assert widget.dx_dtheta == pytest.approx(-theta / x, rel=1e-9, abs=1e-15)


def test_every_sample_slope_is_minus_theta_over_x(widget):
    t = widget.table
    for theta, x, ok, slope in zip(t["theta"], t["x"], t["applies"], t["dx_dtheta"]):
        if ok:
            assert slope == pytest.approx(-theta / x, rel=1e-9, abs=1e-15)
        else:
            assert x == 0.0 and slope is None
    assert [k for k, ok in enumerate(t["applies"]) if not ok] == [0, 180]


@pytest.mark.parametrize("index, theta", [(0, 1.0), (180, -1.0)])
def test_ift_does_not_apply_where_x_is_zero(widget, index, theta):
    widget.index = index
    assert (widget.theta, widget.x) == (theta, 0.0)
    assert widget.dF_dx == 0.0
    assert not widget.applies and widget.dx_dtheta is None
    assert widget.table["arc_theta"][index] == [] and widget.table["arc_x"][index] == []
    with pytest.raises(IFTConditionError):
        ift_slope(theta, 0.0)
    assert any("does not apply" in line for line in widget.readout())


def test_index_moves_the_point(widget):
    widget.index = 90
    assert (widget.theta, widget.x, widget.dx_dtheta) == (0.0, 1.0, pytest.approx(0.0, abs=1e-15))
    widget.index = 225
    assert widget.theta == pytest.approx(-math.sqrt(0.5)) and widget.x == pytest.approx(-math.sqrt(0.5))
    assert widget.dx_dtheta == pytest.approx(-1.0)
    widget.index = 360 + 45          # an angle step: wraps around
    assert widget.index == 45
    widget.index = -1
    assert widget.index == 359


@pytest.mark.parametrize("theta_deg, index", [(0.0, 0), (90.0, 90), (30.4, 30), (-90.0, 270), (720.0, 0)])
def test_start_angle(theta_deg, index):
    assert CircleWidget(theta_deg=theta_deg).index == index


def test_other_num_points():
    w = CircleWidget(theta_deg=45.0, num_points=8)
    assert w.num_points == 8 and w.index == 1
    assert w.dx_dtheta == pytest.approx(-1.0)


@pytest.mark.parametrize("num_points", [0, -4, 6, 10, 3604])
def test_invalid_num_points_value(num_points):
    with pytest.raises(ValueError, match="num_points"):
        CircleWidget(num_points=num_points)


@pytest.mark.parametrize("num_points", [8.0, "360", True, None])
def test_invalid_num_points_type(num_points):
    with pytest.raises(TypeError, match="num_points"):
        CircleWidget(num_points=num_points)


def test_invalid_angle():
    with pytest.raises(ValueError, match="theta_deg"):
        CircleWidget(theta_deg=float("nan"))


def test_float64_whatever_the_global_setting():
    with jax.enable_x64(False):
        w = CircleWidget(num_points=360)
    assert w.applies and w.dx_dtheta == pytest.approx(-w.theta / w.x, rel=1e-12)


def test_state_is_small_json_with_full_precision(widget):
    state = json.dumps(widget.get_state(), allow_nan=False)   # what the page embeds
    assert len(state) < 200_000
    t = widget.table
    assert all(v == round(v, 4) for arc in t["arc_x"] for v in arc)
    assert json.loads(json.dumps(t["theta"])) == t["theta"]          # float64 round-trips


def test_display_emits_fallback_then_widget(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append((obj, kw)))
    w = CircleWidget()
    w._ipython_display_()
    (fallback, _), (bundle, kw) = shown
    html = fallback.data
    assert html.startswith('<div class="ift-widget-fallback">') and "data:image/svg+xml;base64," in html
    assert "dx/d\u03b8 = \u22120.5774" in html              # the readout, in the image's alt text
    assert kw.get("raw") and bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == w.model_id
    assert bundle["text/plain"] == "CircleWidget(index=60, theta=0.5000, x=0.8660, num_points=360)"


def test_outputs_are_deterministic():
    a, b = CircleWidget(), CircleWidget()
    assert a.fallback_html() == b.fallback_html()
    assert repr(a) == repr(b) and "0x" not in repr(a)
