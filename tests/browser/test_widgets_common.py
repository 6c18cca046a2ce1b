"""What every widget of the built book does, in Chromium, one parametrized test per property: it
renders once (its static fallback then hidden) from the book's own copy of the widget JavaScript,
a screenshot of it is saved, it renders from the files on disk too (file://, the zipped book), and
when its JavaScript cannot run (missing, or turned off) the static figure of its starting state
shows instead. The page fixtures fail a test on any page or console error and on any request that
leaves the machine (conftest.py), so each of these also checks there are none."""
from __future__ import annotations

import pytest

from tests.browser.helpers import FALLBACK, WIDGETS, open_static_fallback, open_widget, screenshot

PARAMS = pytest.mark.parametrize("widget", list(WIDGETS.values()), ids=list(WIDGETS))


def _loaded_scripts(page) -> list[str]:
    return page.evaluate("() => performance.getEntriesByType('resource')"
                         ".filter(e => e.initiatorType === 'script').map(e => e.name)")


@PARAMS
def test_renders_once_and_hides_fallback(page, base_url, widget):
    root = open_widget(page, base_url, widget)
    assert root.is_visible()
    box = root.bounding_box()
    assert box["width"] > 0 and box["height"] > 0
    fallback = page.locator(FALLBACK)
    assert fallback.count() == 1 and fallback.is_hidden()
    scripts = _loaded_scripts(page)
    for served in ("_static/vendor/require.js", "_static/vendor/html-manager/embed-amd.js",
                   "_static/vendor/anywidget/index.js"):
        assert any(url == base_url + served for url in scripts), f"{served} not loaded: {scripts}"


@PARAMS
def test_screenshot_initial(page, base_url, artifacts_dir, widget):
    root = open_widget(page, base_url, widget)
    screenshot(root, artifacts_dir / f"{widget.name}_widget.png")
    box = root.bounding_box()
    assert widget.width[0] < box["width"] <= widget.width[1]
    assert widget.height[0] < box["height"] < widget.height[1]


@PARAMS
def test_renders_from_files_on_disk(file_page, book_dir, widget):
    """The book read from disk (file://, e.g. unzipped on a plane): widget and math still render."""
    file_page.goto((book_dir / widget.chapter).as_uri())
    root = file_page.locator(widget.selector)
    root.wait_for(state="visible", timeout=30_000)
    assert root.count() == 1 and file_page.locator(FALLBACK).is_hidden()
    file_page.locator("mjx-container").first.wait_for(state="attached", timeout=30_000)


@PARAMS
def test_static_fallback_without_widget_js(page_without_widget_js, base_url, artifacts_dir, widget):
    alt = open_static_fallback(page_without_widget_js, base_url, widget,
                               artifacts_dir / f"{widget.name}_widget_fallback.png")
    assert page_without_widget_js.monitor.withheld, "no widget JavaScript was requested"
    for words in widget.alt_words:
        assert words in alt


@PARAMS
def test_static_fallback_without_javascript(page_without_js, base_url, artifacts_dir, widget):
    alt = open_static_fallback(page_without_js, base_url, widget,
                               artifacts_dir / f"{widget.name}_widget_nojs.png")
    for words in widget.alt_words:
        assert words in alt


def test_math_is_typeset_by_the_books_own_mathjax(page, base_url):
    response = page.goto(base_url + "chapters/01_unit_circle.html")
    assert response is not None and response.ok
    page.locator("mjx-container").first.wait_for(state="attached", timeout=30_000)
    assert page.evaluate("() => MathJax.version") == "3.2.2"
    assert page.locator("mjx-merror").count() == 0, "a formula failed to typeset"
    assert base_url + "_static/vendor/mathjax/tex-mml-chtml.js" in _loaded_scripts(page)
