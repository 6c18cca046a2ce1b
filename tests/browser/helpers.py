"""What the browser tests of the widgets share: the table of the book's widgets (chapter page,
root selector, expected sizes, the static fallback's alt text), opening a chapter's widget,
reading its data-* attributes, the static-fallback check and screenshots. The fixtures (server,
Chromium, pages that fail on console errors) are in conftest.py."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FALLBACK = ".ift-widget-fallback"


@dataclass(frozen=True)
class WidgetPage:
    """One widget of the built book, as the browser tests see it."""
    name: str
    chapter: str                      # page under the book's root
    root: str                         # CSS class of the widget's root element (set by its JS)
    width: tuple[float, float]        # the rendered widget's width range (CSS px, exclusive, inclusive)
    height: tuple[float, float]       # the rendered widget's height range (CSS px, exclusive)
    fallback_min: tuple[float, float]  # the static image's minimum size (CSS px)
    alt_words: tuple[str, ...]        # in the static image's alt text (the starting state)

    @property
    def selector(self) -> str:
        return "." + self.root


WIDGETS = {w.name: w for w in (
    WidgetPage("circle", "chapters/01_unit_circle.html", "ift-circle-widget", (300, 10_000),
               (250, 10_000), (300, 150), ("dx/d\u03b8",)),
    WidgetPage("softmax", "chapters/02_softmax.html", "ift-softmax-widget", (500, 641),
               (300, 10_000), (300, 250), ("sparsemax", "|S| = 2")),
    WidgetPage("k_iterations", "chapters/04_unrolling.html", "ift-k-widget", (500, 641),
               (450, 900), (300, 200), ("K = 10", "rel. error", "memory at n = 300")),
)}


def open_widget(page, base_url: str, widget: WidgetPage):
    """Open the widget's chapter, wait until the widget has rendered (once), scroll to it."""
    response = page.goto(base_url + widget.chapter)
    assert response is not None and response.ok, f"{widget.chapter} not found in the built book"
    root = page.locator(widget.selector)
    root.wait_for(state="visible", timeout=30_000)
    assert root.count() == 1
    root.scroll_into_view_if_needed()
    return root


def dataset(root) -> dict:
    """The widget root's data-* attributes (as strings, camelCase keys)."""
    return root.evaluate("el => ({...el.dataset})")


def screenshot(element, path: Path, min_bytes: int = 5_000) -> Path:
    """Save a PNG screenshot of ``element`` to ``path`` and check it is not empty."""
    element.screenshot(path=str(path))
    assert path.stat().st_size > min_bytes, f"{path.name}: {path.stat().st_size} bytes"
    return path


def open_static_fallback(page, base_url: str, widget: WidgetPage, artifact: Path) -> str:
    """For a page whose widget JavaScript does not run: check that the chapter shows its widget's static
    fallback image (loaded, at least ``widget.fallback_min`` CSS px) and no widget root, save a
    screenshot to ``artifact``, and return the image's alt text for content checks."""
    response = page.goto(base_url + widget.chapter)
    assert response is not None and response.ok
    page.wait_for_load_state("load")
    fallback = page.locator(FALLBACK)
    assert fallback.count() == 1
    image = fallback.locator("img")
    image.scroll_into_view_if_needed()
    assert image.is_visible()
    box = image.bounding_box()
    assert box["width"] > widget.fallback_min[0] and box["height"] > widget.fallback_min[1]
    assert image.evaluate("img => img.complete && img.naturalWidth > 0")
    assert page.locator(widget.selector).count() == 0
    screenshot(fallback, artifact, min_bytes=1_000)
    return image.get_attribute("alt")


# ------------------------------------------------- the circle widget (book and JupyterLab)

def circle_point_on_screen(widget, phi_deg: float) -> tuple[float, float]:
    """Viewport coordinates of the point at angle phi on the drawn circle."""
    return tuple(widget.evaluate("""(root, phi) => {
        const c = root.querySelector('.ift-curve');
        const a = phi * Math.PI / 180, r = c.r.baseVal.value;
        const p = new DOMPoint(c.cx.baseVal.value + r * Math.cos(a), c.cy.baseVal.value - r * Math.sin(a));
        const q = p.matrixTransform(c.getScreenCTM());
        return [q.x, q.y];
    }""", phi_deg))


def circle_handle_center(page) -> tuple[float, float]:
    box = page.locator(".ift-circle-widget .ift-handle").bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def drag_circle_handle_to(page, widget, phi_deg: float, steps: int = 15):
    """Press on the handle, move in steps to the circle point at angle phi, release."""
    x0, y0 = circle_handle_center(page)
    x1, y1 = circle_point_on_screen(widget, phi_deg)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=steps)
    page.mouse.up()
