"""The Chapter 1 circle widget in the built book, in Chromium: it renders, drags, says where the IFT
fails and works from the keyboard. What every widget does (renders once, static fallback without
its CDNs, screenshot) is in test_widgets_common.py."""
from __future__ import annotations

import math

import pytest
from tests.browser import helpers

WIDGET = helpers.WIDGETS["circle"]
WARN_RGB = "rgb(180, 83, 9)"   # ift_lib.plotting.PALETTE["warn"] = #b45309


def open_widget(page, base_url):
    return helpers.open_widget(page, base_url, WIDGET)


def state(widget) -> dict:
    """The widget's data-* attributes (index, theta, x, dxdtheta)."""
    return helpers.dataset(widget)


circle_point_on_screen = helpers.circle_point_on_screen
handle_center = helpers.circle_handle_center
drag_handle_to = helpers.drag_circle_handle_to


def panel_text(widget) -> str:
    return widget.locator(".ift-panel").inner_text()


def fmt4(v: float) -> str:
    s = f"{v:.4f}"
    return (s.lstrip("-") if float(s) == 0 else s).replace("-", "\u2212")


def assert_consistent(s: dict):
    """The point is on the circle and the IFT slope is -theta/x there."""
    theta, x = float(s["theta"]), float(s["x"])
    assert theta**2 + x**2 == pytest.approx(1.0, abs=1e-12)
    assert float(s["dxdtheta"]) == pytest.approx(-theta / x, rel=1e-9)


def test_widget_renders_with_initial_point(page, base_url):
    widget = open_widget(page, base_url)
    s = state(widget)
    assert s["index"] == "60"
    assert float(s["theta"]) == pytest.approx(0.5, abs=1e-12)
    assert float(s["x"]) == pytest.approx(math.sqrt(3) / 2, abs=1e-12)
    assert_consistent(s)
    text = panel_text(widget)
    for expected in ("\u03b8", "\u2202F/\u2202\u03b8", "\u2202F/\u2202x", "dx/d\u03b8",
                     fmt4(float(s["theta"])), fmt4(float(s["x"])), fmt4(float(s["dxdtheta"]))):
        assert expected in text
    assert "does not apply" not in text


def test_drag_moves_point_and_slope(page, base_url, artifacts_dir):
    widget = open_widget(page, base_url)
    before = state(widget)

    drag_handle_to(page, widget, 135.0)
    after = state(widget)
    assert after["theta"] != before["theta"] and after["x"] != before["x"]
    assert after["dxdtheta"] not in ("", before["dxdtheta"])
    assert_consistent(after)
    theta, x = float(after["theta"]), float(after["x"])
    assert math.degrees(math.atan2(x, theta)) == pytest.approx(135.0, abs=1.0)   # snapped near target
    hx, hy = handle_center(page)                                                  # drawn there too
    tx, ty = circle_point_on_screen(widget, 135.0)
    assert math.hypot(hx - tx, hy - ty) < 6
    text = panel_text(widget)
    assert fmt4(theta) in text and fmt4(float(after["dxdtheta"])) in text
    helpers.screenshot(widget, artifacts_dir / "circle_widget_drag.png")


def test_rightmost_point_ift_does_not_apply(page, base_url, artifacts_dir):
    widget = open_widget(page, base_url)
    drag_handle_to(page, widget, 0.0)
    s = state(widget)
    assert float(s["theta"]) == 1.0 and float(s["x"]) == 0.0
    assert s["dxdtheta"] == ""
    text = panel_text(widget)
    assert "\u2202F/\u2202x = 0" in text
    assert "does not apply" in text
    assert "not defined" in text
    note = widget.locator(".ift-note")
    assert note.evaluate("el => getComputedStyle(el).color") == WARN_RGB
    # No number for dx/dtheta and no division: the slope row holds words only.
    slope_cell = widget.locator(".ift-readout tr").nth(4).locator("td")
    assert not any(ch.isdigit() for ch in slope_cell.inner_text())
    assert "/ (" not in note.inner_text()
    helpers.screenshot(widget, artifacts_dir / "circle_widget_no_ift.png")

    # Moving away again restores the slope.
    drag_handle_to(page, widget, 30.0)
    s = state(widget)
    assert s["dxdtheta"] != ""
    assert_consistent(s)
    assert "does not apply" not in panel_text(widget)


def test_keyboard_steps(page, base_url):
    widget = open_widget(page, base_url)
    handle = widget.locator(".ift-handle")
    handle.focus()
    start = int(state(widget)["index"])
    handle.press("ArrowUp")
    assert int(state(widget)["index"]) == start + 1
    handle.press("ArrowRight")
    assert int(state(widget)["index"]) == start + 2
    handle.press("ArrowDown")
    handle.press("ArrowLeft")
    assert int(state(widget)["index"]) == start
    handle.press("Shift+ArrowDown")
    s = state(widget)
    assert int(s["index"]) == start - 10
    assert_consistent(s)
    assert handle.get_attribute("aria-valuenow") == s["index"]
    # Step around to the leftmost point (theta = -1, x = 0): the IFT fails there too.
    for _ in range(12):
        handle.press("Shift+ArrowUp")
    s = state(widget)
    assert int(s["index"]) == start + 110
    for _ in range(10):
        handle.press("ArrowUp")
    s = state(widget)
    assert float(s["theta"]) == -1.0 and s["dxdtheta"] == ""
    assert "does not apply" in panel_text(widget)
