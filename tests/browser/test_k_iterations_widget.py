"""The Chapter 4 K-iterations widget in the built book, in Chromium: it renders, the K slider moves
(keyboard and fill), the hypergradients it shows are ift_lib's at that K, the unrolled memory grows
with K while the IFT's stays flat, the drawing follows K, and its two columns fit the card. What
every widget does (renders once, static fallback without its CDNs, screenshot) is in
test_widgets_common.py."""
from __future__ import annotations

import functools
import re

import jax
import numpy as np
import pytest

from ift_lib.unrolled import (closed_form_hypergradient, default_step_size, implicit_hypergradient,
                              unrolled_hypergradient)
from ift_lib.widgets.k_iterations import k_grid, problem
from tests.browser import helpers

WIDGET = helpers.WIDGETS["k_iterations"]
KS = k_grid(2000)   # the book's widget: KIterationsWidget() with its defaults


def open_widget(page, base_url):
    return helpers.open_widget(page, base_url, WIDGET)


def state(widget) -> dict:
    """The widget's data-* attributes, parsed."""
    d = helpers.dataset(widget)
    vec = lambda s: [float(v) for v in s.split(",")]   # noqa: E731
    return {"k": int(d["k"]), "k_index": int(d["kIndex"]), "unrolled": vec(d["unrolledGrad"]),
            "ift": vec(d["iftGrad"]), "closed": vec(d["closedGrad"]),
            "unrolled_bytes": int(d["unrolledBytes"]), "ift_bytes": int(d["iftBytes"]),
            "measured": d["bytesMeasured"] == "true"}


@functools.lru_cache(maxsize=None)
def expected(K: int) -> dict:
    """ift_lib's hypergradients after K steps of the widget's problem (float64, step 1/L)."""
    with jax.enable_x64(True):
        theta, data = problem()
        eta = float(default_step_size(theta, data.A))
        return {"unrolled": np.asarray(unrolled_hypergradient(theta, data, num_steps=K, step_size=eta)),
                "ift": np.asarray(implicit_hypergradient(theta, data, num_steps=K, step_size=eta,
                                                         residual_tol=np.inf)),
                "closed": np.asarray(closed_form_hypergradient(theta, data))}


def assert_matches_ift_lib(s: dict):
    e = expected(s["k"])
    np.testing.assert_allclose(s["unrolled"], e["unrolled"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(s["ift"], e["ift"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(s["closed"], e["closed"], rtol=0, atol=1e-12)


def assert_drawn(widget, s: dict):
    """The drawing follows the data attributes: label, path x_0..x_K, dots, bar labels."""
    K = s["k"]
    assert widget.locator(".ift-k-value").inner_text() == f"K = {K}"
    assert widget.locator("input.ift-slider").get_attribute("aria-valuetext") == f"K = {K}"
    points = widget.locator(".ift-path").get_attribute("points").split()
    assert len(points) == K + 1                                           # x_0 .. x_K
    assert widget.locator(".ift-dots").get_attribute("d").count("M") == K  # x_1 .. x_K
    cx, cy = (float(widget.locator(".ift-current").get_attribute(a)) for a in ("cx", "cy"))
    last = [float(v) for v in points[-1].split(",")]
    assert abs(cx - last[0]) < 0.2 and abs(cy - last[1]) < 0.2            # the dot ends the path
    values = widget.locator(".ift-mem-value").all_text_contents()
    approx = "" if s["measured"] else "\u2248 "
    assert len(values) == 2 and all(v.startswith(approx) for v in values)
    assert re.fullmatch(r"(\u2248 )?[\d.]+ (B|kB|MB)", values[0])


def test_widget_renders_with_initial_state(page, base_url):
    widget = open_widget(page, base_url)
    s = state(widget)
    assert s["k"] == 10 and s["k_index"] == KS.index(10)
    assert_matches_ift_lib(s)
    assert_drawn(widget, s)
    slider = widget.locator("input.ift-slider")
    assert slider.get_attribute("type") == "range" and slider.get_attribute("max") == str(len(KS) - 1)
    text = widget.inner_text()
    for words in ("Gradient-descent steps", "level sets of f(x, \u03b8)", "Relative error",
                  "unrolled through K steps", "IFT at x", "closed form at x*", "companion problem",
                  "n = 300", "the IFT assumes 0", "1 \u2026 2000"):
        assert words in text, words
    assert widget.locator(".ift-contours polyline").count() >= 8


def test_slider_keyboard_and_fill(page, base_url, artifacts_dir):
    widget = open_widget(page, base_url)
    slider = widget.locator("input.ift-slider")
    slider.focus()
    slider.press("ArrowRight")
    s = state(widget)
    assert s["k"] == 11
    assert_matches_ift_lib(s)
    assert_drawn(widget, s)
    slider.press("ArrowLeft")
    slider.press("ArrowLeft")
    s = state(widget)
    assert s["k"] == 9
    assert_matches_ift_lib(s)

    seen = []
    for move in ("Home", "30", "70", "95", "End"):   # keys, or as if dragged there (fill)
        if move.isdigit():
            slider.fill(move)
        else:
            slider.press(move)
        s = state(widget)
        assert s["k"] == KS[int(move)] if move.isdigit() else s["k"] == {"Home": 1, "End": 2000}[move]
        assert s["k_index"] == KS.index(s["k"])
        assert_matches_ift_lib(s)
        assert_drawn(widget, s)
        seen.append(s)
        if move == "70":
            helpers.screenshot(widget, artifacts_dir / "k_iterations_widget_mid.png")
    helpers.screenshot(widget, artifacts_dir / "k_iterations_widget_converged.png")

    unrolled = [s["unrolled_bytes"] for s in seen]
    ift = [s["ift_bytes"] for s in seen]
    assert unrolled == sorted(unrolled) and len(set(unrolled)) == len(unrolled)   # grows with K
    assert unrolled[-1] > 100 * unrolled[0] and unrolled[-1] >= 2000 * 300 * 8
    assert len(set(ift[1:])) == 1 and max(ift) - min(ift) <= 0.01 * max(ift)      # flat
    # Converged: both gradients agree with the closed form; at K = 1 the unrolled one is 0.
    assert seen[0]["unrolled"] == [0.0, 0.0]
    np.testing.assert_allclose(seen[-1]["unrolled"], seen[-1]["closed"], rtol=1e-10)
    np.testing.assert_allclose(seen[-1]["ift"], seen[-1]["closed"], rtol=1e-10)


def test_walk_the_whole_grid(page, base_url):
    """ArrowRight through every K: data-k follows the grid, the unrolled bytes never shrink, the
    IFT bytes stay flat, and (at every 10th K) the gradients are ift_lib's."""
    widget = open_widget(page, base_url)
    slider = widget.locator("input.ift-slider")
    slider.press("Home")
    ks, unrolled, ift = [], [], []
    while True:
        s = state(widget)
        ks.append(s["k"])
        unrolled.append(s["unrolled_bytes"])
        ift.append(s["ift_bytes"])
        if len(ks) % 10 == 1:
            assert_matches_ift_lib(s)
        slider.press("ArrowRight")
        if state(widget)["k_index"] == s["k_index"]:
            break
    assert ks == KS
    assert all(b > a for a, b in zip(unrolled, unrolled[1:]))
    assert max(ift) - min(ift) <= 0.01 * max(ift)


def test_two_columns_fit_the_card(page, base_url):
    """At the book's width the plane and the side column sit side by side, inside the card."""
    widget = open_widget(page, base_url)
    box = widget.bounding_box()
    plane, side = widget.locator(".ift-plane").bounding_box(), widget.locator(".ift-side").bounding_box()
    assert abs(plane["y"] - side["y"]) < 2 and plane["x"] + plane["width"] <= side["x"]
    assert side["x"] + side["width"] <= box["x"] + box["width"]
