"""What every widget of the built book does, in Chromium, one parametrized test per property: it
renders once (its static fallback then hidden), a screenshot of it is saved, and with its CDNs
blocked the static figure of its starting state shows instead. The ``page`` fixtures fail a test
on any page or console error (conftest.py), so each of these also checks there are none."""
from __future__ import annotations

import pytest

from tests.browser.helpers import FALLBACK, WIDGETS, open_static_fallback, open_widget, screenshot

PARAMS = pytest.mark.parametrize("widget", list(WIDGETS.values()), ids=list(WIDGETS))


@PARAMS
def test_renders_once_and_hides_fallback(page, base_url, widget):
    root = open_widget(page, base_url, widget)
    assert root.is_visible()
    box = root.bounding_box()
    assert box["width"] > 0 and box["height"] > 0
    fallback = page.locator(FALLBACK)
    assert fallback.count() == 1 and fallback.is_hidden()
    assert page.monitor.served, "the CDN files were not served from node_modules"


@PARAMS
def test_screenshot_initial(page, base_url, artifacts_dir, widget):
    root = open_widget(page, base_url, widget)
    screenshot(root, artifacts_dir / f"{widget.name}_widget.png")
    box = root.bounding_box()
    assert widget.width[0] < box["width"] <= widget.width[1]
    assert widget.height[0] < box["height"] < widget.height[1]


@PARAMS
def test_static_fallback_without_cdn(page_without_cdn, base_url, artifacts_dir, widget):
    alt = open_static_fallback(page_without_cdn, base_url, widget,
                               artifacts_dir / f"{widget.name}_widget_fallback.png")
    for words in widget.alt_words:
        assert words in alt
