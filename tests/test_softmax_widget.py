"""SoftmaxWidget (Python side): its state holds ift_lib's numbers, `preset`/`t_index` move it, bad
input fails, the static fallback is there and the state stays small.

The JavaScript side is tested in a real browser in tests/browser/test_softmax_widget.py.
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import traitlets

from ift_lib.plotting import PALETTE
from ift_lib.softmax import softmax, sparsemax, sparsemax_threshold
from ift_lib.widgets import SoftmaxWidget
from ift_lib.widgets.softmax import _MAX_TEMPERATURES, PRESETS

N = 5


@pytest.fixture(scope="module")
def widget():
    return SoftmaxWidget()   # the book's default: preset "spread", T = 1, 41 temperatures


def ift_lib_values(theta, T):
    """softmax, sparsemax, tau and both Jacobians d/dtheta of f(theta / T), float64, one at a time."""
    with jax.enable_x64(True):
        theta = jnp.asarray(theta, dtype=jnp.float64)
        f = lambda t: softmax(t / T)      # noqa: E731
        g = lambda t: sparsemax(t / T)    # noqa: E731
        return tuple(np.asarray(v, dtype=np.float64) for v in
                     (f(theta), g(theta), sparsemax_threshold(theta / T),
                      jax.jacobian(f)(theta), jax.jacobian(g)(theta)))


def test_default_state(widget):
    assert widget.preset_names == ["spread", "tie", "dominant"]
    assert widget.preset_name == "spread" and widget.temperature == 1.0
    assert widget.theta == list(PRESETS["spread"][1])
    t = widget.temperatures
    assert len(t) == 41 and t[0] == 0.05 and t[-1] == 20.0 and t == sorted(t)
    assert np.allclose(np.diff(np.log(t)), np.log(400) / 40, rtol=0, atol=1e-3)   # log-spaced, 4 digits
    assert widget.palette == PALETTE
    assert repr(widget) == "SoftmaxWidget(preset='spread', T=1, support_size=2, num_temperatures=41)"


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("t_index", [0, 7, 20, 29, 33, 40])
def test_state_matches_ift_lib(widget, preset, t_index):
    widget.preset = widget.preset_names.index(preset)
    widget.t_index = t_index
    T = widget.temperature
    z, s, tau, jz, js = ift_lib_values(PRESETS[preset][1], T)
    np.testing.assert_allclose(widget.softmax, z, rtol=0, atol=1e-13)
    np.testing.assert_allclose(widget.sparsemax, s, rtol=0, atol=1e-13)
    assert widget.tau == pytest.approx(float(tau), abs=1e-12)
    assert widget.support_size == int(np.sum(s > 0)) >= 1
    # Jacobians are stored to 4 significant digits (they are only drawn).
    np.testing.assert_allclose(widget.jac_softmax, jz, rtol=5e-4, atol=1e-300)
    np.testing.assert_allclose(widget.jac_sparsemax, js, rtol=5e-4, atol=0)
    # ... and they are the closed forms of the docstring, 1/T included.
    support = (s > 0).astype(float)
    np.testing.assert_allclose(jz, (np.diag(z) - np.outer(z, z)) / T, rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(js, (np.diag(support) - np.outer(support, support) / support.sum()) / T,
                               rtol=1e-9, atol=1e-12)
    off = support == 0
    assert np.all(np.asarray(widget.jac_sparsemax)[off, :] == 0)
    assert np.all(np.asarray(widget.jac_sparsemax)[:, off] == 0)


def test_support_grows_with_temperature(widget):
    for p, row in enumerate(widget.table["presets"]):
        sizes = row["support_size"]
        assert sizes == sorted(sizes) and sizes[-1] == N and len(set(sizes)) > 1, row["name"]
    tie = widget.table["presets"][widget.preset_names.index("tie")]
    assert tie["support_size"][0] == 2
    np.testing.assert_allclose(tie["sparsemax"][0], [0.5, 0.5, 0, 0, 0], atol=1e-12)


def test_traits_move_the_state():
    w = SoftmaxWidget()
    w.t_index = 0
    assert w.temperature == 0.05 and w.support_size == 1
    w.preset = 1
    assert w.preset_name == "tie" and w.support_size == 2
    for name, bad in (("t_index", 41), ("t_index", -1), ("preset", 3), ("preset", -1)):
        with pytest.raises(traitlets.TraitError, match=name):
            setattr(w, name, bad)


def test_custom_theta_is_an_extra_preset():
    theta = [0.1, 2.0, -1.0, 1.9, 0.0]
    w = SoftmaxWidget(theta=np.array(theta), temperature=0.5)
    assert w.preset_names == ["spread", "tie", "dominant", "yours"]
    assert w.preset_name == "yours" and w.theta == theta and w.temperature == pytest.approx(0.5, rel=0.08)
    z, s, *_ = ift_lib_values(theta, w.temperature)
    np.testing.assert_allclose(w.softmax, z, atol=1e-13)
    np.testing.assert_allclose(w.sparsemax, s, atol=1e-13)
    assert SoftmaxWidget(theta=theta, preset="tie").preset_name == "tie"


@pytest.mark.parametrize("kwargs, start", [
    (dict(temperature=0.05), 0.05), (dict(temperature=1e-9), 0.05), (dict(temperature=50.0), 20.0),
    (dict(t_min=0.1, t_max=10.0, num_temperatures=3, temperature=2.0), 1.0),
    (dict(t_min=0.1, t_max=10.0, num_temperatures=2, temperature=0.5), 0.1),
])
def test_temperature_grid_and_start(kwargs, start):
    w = SoftmaxWidget(**kwargs)
    assert w.temperature == start


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(num_temperatures=1), ValueError, "num_temperatures"),
    (dict(num_temperatures=_MAX_TEMPERATURES + 1), ValueError, "num_temperatures"),
    (dict(num_temperatures=41.0), TypeError, "num_temperatures"),
    (dict(num_temperatures=True), TypeError, "num_temperatures"),
    (dict(num_temperatures="41"), TypeError, "num_temperatures"),
    (dict(t_min=0.0), ValueError, "t_min"),
    (dict(t_min=2.0, t_max=1.0), ValueError, "t_min < t_max"),
    (dict(t_max=1e4), ValueError, "t_max"),
    (dict(t_max=float("inf")), ValueError, "t_max"),
    (dict(t_min="0.1"), TypeError, "t_min"),
    (dict(t_min=1.0, t_max=1.001, num_temperatures=100), ValueError, "would repeat"),
    (dict(temperature=0.0), ValueError, "temperature"),
    (dict(temperature=float("nan")), ValueError, "temperature"),
    (dict(temperature=None), TypeError, "temperature"),
    (dict(preset="nope"), ValueError, "unknown preset"),
    (dict(preset="yours"), ValueError, "theta="),
    (dict(preset=0), TypeError, "preset"),
    (dict(theta=[1.0, 2.0, 3.0]), ValueError, "exactly 5"),
    (dict(theta=np.zeros((5, 1))), ValueError, "exactly 5"),
    (dict(theta=[1.0, 2.0, float("nan"), 0.0, 0.0]), ValueError, "finite"),
    (dict(theta=[1e308, 0.0, 0.0, 0.0, 0.0]), ValueError, "at most"),
    (dict(theta="12345"), TypeError, "theta"),
    (dict(theta=3.0), TypeError, "theta"),
    (dict(theta=[1, 2, "a", 4, 5]), TypeError, "theta"),
    (dict(theta=[1j, 0, 0, 0, 0]), TypeError, "theta"),
    (dict(theta=[True, False, False, False, False]), TypeError, "theta"),
])
def test_invalid_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        SoftmaxWidget(**kwargs)


def test_float64_whatever_the_global_setting():
    with jax.enable_x64(False):
        w = SoftmaxWidget(temperature=0.05, preset="dominant")
    z, *_ = ift_lib_values(PRESETS["dominant"][1], 0.05)
    assert w.softmax[1] == pytest.approx(float(z[1]), rel=1e-12) and 0 < w.softmax[1] < 1e-20


def test_state_is_small_json_with_full_precision(widget):
    state = json.dumps(widget.get_state(), allow_nan=False)    # what the notebook and page embed
    assert len(state) < 120_000                                 # ~101 KB
    row = widget.table["presets"][0]
    assert json.loads(json.dumps(row["softmax"])) == row["softmax"]           # float64 round-trips
    assert all(v == float(f"{v:.3e}") for m in row["jac_softmax"] for r in m for v in r)
    biggest = SoftmaxWidget(theta=[0.0, 1.0, 2.0, 3.0, 4.0], num_temperatures=_MAX_TEMPERATURES)
    assert len(json.dumps(biggest.get_state(), allow_nan=False)) < 400_000


def test_display_emits_fallback_then_widget(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append((obj, kw)))
    w = SoftmaxWidget()
    w._ipython_display_()
    (fallback, _), (bundle, kw) = shown
    html = fallback.data
    assert html.startswith('<div class="ift-widget-fallback">') and "data:image/svg+xml;base64," in html
    assert "sparsemax(\u03b8/T) = (0.65, 0.00, 0.00, 0.35, 0.00)" in html   # readout in the alt text
    assert "|S| = 2" in html and "T = 1" in html
    assert kw.get("raw") and bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == w.model_id
    assert bundle["text/plain"] == repr(w)


def test_outputs_are_deterministic():
    a, b = SoftmaxWidget(temperature=3.0), SoftmaxWidget(temperature=3.0)
    assert a.fallback_html() == b.fallback_html()
    assert repr(a) == repr(b) and "0x" not in repr(a)
