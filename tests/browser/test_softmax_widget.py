"""The Chapter 2 softmax/sparsemax widget in the built book, in Chromium: it renders, the temperature
slider moves (keyboard and fill), the preset buttons switch theta, the numbers it shows are
ift_lib's and sparsemax's support changes with T. What every widget does (renders once, static
fallback without its CDNs, screenshot) is in test_widgets_common.py."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ift_lib.softmax import softmax, sparsemax
from ift_lib.widgets.softmax import PRESETS, _fmt_t
from tests.browser import helpers

WIDGET = helpers.WIDGETS["softmax"]
N = 5


def open_widget(page, base_url):
    return helpers.open_widget(page, base_url, WIDGET)


def state(widget) -> dict:
    """The widget's data-* attributes, parsed."""
    d = helpers.dataset(widget)
    return {"preset": d["preset"], "t_index": int(d["tIndex"]), "T": float(d["temperature"]),
            "support_size": int(d["supportSize"]), "tau": float(d["tau"]),
            "softmax": [float(v) for v in d["softmax"].split(",")],
            "sparsemax": [float(v) for v in d["sparsemax"].split(",")]}


def expected(preset: str, T: float):
    """ift_lib's softmax(theta/T) and sparsemax(theta/T) in float64."""
    with jax.enable_x64(True):
        theta = jnp.asarray(PRESETS[preset][1], dtype=jnp.float64)
        return (np.asarray(softmax(theta / T), dtype=np.float64),
                np.asarray(sparsemax(theta / T), dtype=np.float64))


def assert_matches_ift_lib(s: dict):
    z, p = expected(s["preset"], s["T"])
    np.testing.assert_allclose(s["softmax"], z, rtol=0, atol=1e-12)
    np.testing.assert_allclose(s["sparsemax"], p, rtol=0, atol=1e-12)
    assert s["support_size"] == int(np.sum(p > 0))
    assert sum(s["softmax"]) == pytest.approx(1.0, abs=1e-12)
    assert sum(s["sparsemax"]) == pytest.approx(1.0, abs=1e-12)


def assert_drawn(widget, s: dict):
    """What is drawn agrees with the data attributes: greyed bars, zero rows/columns, labels."""
    size = s["support_size"]
    assert widget.locator(".ift-bar-row .ift-chart").nth(1).locator(".ift-bar.ift-off").count() == N - size
    heat = widget.locator(".ift-heat").nth(1)
    assert heat.locator(".ift-cell.ift-zero").count() >= N * N - size * size
    assert f"|S| = {size} of {N}" in widget.locator(".ift-chart-note").nth(1).inner_text()
    label = widget.locator(".ift-t-value").inner_text()
    assert label == f"T = {_fmt_t(s['T'])}"


def test_widget_renders_with_initial_state(page, base_url):
    widget = open_widget(page, base_url)
    s = state(widget)
    assert s["preset"] == "spread" and s["T"] == 1.0
    assert_matches_ift_lib(s)
    assert_drawn(widget, s)
    buttons = widget.locator(".ift-preset")
    assert buttons.count() == len(PRESETS)
    assert [buttons.nth(k).get_attribute("aria-pressed") for k in range(buttons.count())] == \
        ["true", "false", "false"]
    slider = widget.locator("input.ift-slider")
    assert slider.get_attribute("type") == "range" and slider.get_attribute("aria-valuetext") == "T = 1"
    text = widget.inner_text()
    for words in ("softmax(\u03b8/T)", "sparsemax(\u03b8/T)", "diag(z)", "zero outside S", "1/T"):
        assert words in text


def test_slider_keyboard_and_fill(page, base_url, artifacts_dir):
    widget = open_widget(page, base_url)
    slider = widget.locator("input.ift-slider")
    start = state(widget)
    slider.focus()
    slider.press("ArrowRight")
    s = state(widget)
    assert s["t_index"] == start["t_index"] + 1 and s["T"] > start["T"]
    assert_matches_ift_lib(s)
    slider.press("ArrowLeft")
    slider.press("ArrowLeft")
    s = state(widget)
    assert s["t_index"] == start["t_index"] - 1 and s["T"] < start["T"]
    assert_matches_ift_lib(s)
    slider.press("End")
    s = state(widget)
    assert s["T"] == 20.0 and s["support_size"] == N          # hot: sparsemax keeps every score
    assert_matches_ift_lib(s)
    assert_drawn(widget, s)
    slider.press("Home")
    s = state(widget)
    assert s["T"] == 0.05 and s["support_size"] == 1          # cold: one-hot
    assert_matches_ift_lib(s)
    assert_drawn(widget, s)
    slider.fill("30")                                        # as if dragged there
    s = state(widget)
    assert s["t_index"] == 30 and 0.05 < s["T"] < 20
    assert_matches_ift_lib(s)
    assert_drawn(widget, s)
    assert slider.get_attribute("aria-valuetext") == widget.locator(".ift-t-value").inner_text()
    helpers.screenshot(widget, artifacts_dir / "softmax_widget_hot.png")


def test_preset_buttons(page, base_url, artifacts_dir):
    widget = open_widget(page, base_url)
    widget.get_by_role("button", name="a tie").click()
    s = state(widget)
    assert s["preset"] == "tie" and s["T"] == 1.0
    assert_matches_ift_lib(s)
    assert widget.get_by_role("button", name="a tie").get_attribute("aria-pressed") == "true"
    assert "0.80, 0.80" in widget.locator(".ift-theta").inner_text()
    widget.locator("input.ift-slider").press("Home")           # cold: the tie splits evenly
    s = state(widget)
    assert s["sparsemax"] == pytest.approx([0.5, 0.5, 0.0, 0.0, 0.0], abs=1e-12) and s["support_size"] == 2
    assert s["softmax"][0] == s["softmax"][1] == pytest.approx(0.5, abs=1e-4)   # e^-10 left over
    assert_matches_ift_lib(s)
    assert_drawn(widget, s)
    helpers.screenshot(widget, artifacts_dir / "softmax_widget_tie_cold.png")

    widget.get_by_role("button", name="one dominant").press("Enter")   # keyboard works too
    s = state(widget)
    assert s["preset"] == "dominant" and s["T"] == 0.05 and s["support_size"] == 1
    assert_matches_ift_lib(s)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_temperature_matches_ift_lib(page, base_url, preset):
    """Walk the whole grid with the arrow key: every state is ift_lib's; the support grows with T."""
    widget = open_widget(page, base_url)
    widget.locator(f".ift-preset[data-preset='{preset}']").click()
    slider = widget.locator("input.ift-slider")
    slider.press("Home")
    seen = []
    while True:
        s = state(widget)
        assert s["preset"] == preset
        assert_matches_ift_lib(s)
        seen.append((s["T"], s["support_size"]))
        slider.press("ArrowRight")
        if state(widget)["t_index"] == s["t_index"]:
            break
    temperatures = [t for t, _ in seen]
    sizes = [k for _, k in seen]
    assert len(seen) == 41 and temperatures == sorted(temperatures)
    assert temperatures[0] == 0.05 and temperatures[-1] == 20.0
    assert len(set(sizes)) > 1 and sizes == sorted(sizes)      # sparsemax's support grows with T
    assert sizes[-1] == N


def test_jacobian_tooltips(page, base_url):
    widget = open_widget(page, base_url)
    s = state(widget)
    with jax.enable_x64(True):
        theta = jnp.asarray(PRESETS["spread"][1], dtype=jnp.float64)
        js = np.asarray(jax.jacobian(lambda t: softmax(t / s["T"]))(theta))
        jp = np.asarray(jax.jacobian(lambda t: sparsemax(t / s["T"]))(theta))
    for h, (name, jac) in enumerate((("softmax", js), ("sparsemax", jp))):
        cells = widget.locator(".ift-heat").nth(h).locator(".ift-cell title")
        assert cells.count() == N * N
        for i, j in [(0, 0), (0, 3), (1, 2), (4, 4)]:
            tip = cells.nth(N * i + j).text_content()
            assert tip.startswith(f"\u2202 {name}(\u03b8/T)")
            value = float(tip.split("= ")[1].split(" ")[0].replace("\u2212", "-"))
            assert value == pytest.approx(jac[i, j], rel=1e-3, abs=1e-15)
            if jac[i, j] == 0:
                assert "exactly" in tip
    # Sparsemax's J is zero outside the support; softmax's is dense.
    off = [k for k, v in enumerate(s["sparsemax"]) if v == 0]
    assert off and np.all(jp[off, :] == 0) and np.all(jp[:, off] == 0)
    assert np.all(js != 0)
