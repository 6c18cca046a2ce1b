"""KIterationsWidget (Python side): its table holds ift_lib.unrolled's numbers at every K of its grid,
the unrolled gradient's error falls with K, the unrolled memory grows while the IFT's stays flat, bad
input fails, the static fallback is there and the state stays small.

The JavaScript side is tested in a real browser in tests/browser/test_k_iterations_widget.py.
"""
from __future__ import annotations

import base64
import json
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import traitlets

from ift_lib.plotting import PALETTE
from ift_lib.unrolled import (
    closed_form_hypergradient, closed_form_solution, compiled_temp_bytes, default_step_size,
    implicit_hypergradient, inner_gradient, random_problem, unrolled_hypergradient, unrolled_solve)
from ift_lib.widgets import KIterationsWidget
from ift_lib.widgets.k_iterations import k_grid, problem


@pytest.fixture(scope="module")
def widget():
    return KIterationsWidget()   # the book's default: K = 10, k_max = 2000, step 1/L, n = 300 for memory


def expected(K: int, step_size: float) -> dict:
    """ift_lib's numbers at K, one call each (float64)."""
    with jax.enable_x64(True):
        theta, data = problem()
        return {
            "x": np.asarray(unrolled_solve(theta, data.A, data.b, num_steps=K, step_size=step_size)),
            "unrolled": np.asarray(unrolled_hypergradient(theta, data, num_steps=K, step_size=step_size)),
            "ift": np.asarray(implicit_hypergradient(theta, data, num_steps=K, step_size=step_size,
                                                     solve="dense", residual_tol=np.inf)),
            "closed_form": np.asarray(closed_form_hypergradient(theta, data)),
            "x_star": np.asarray(closed_form_solution(theta, data.A, data.b)),
        }


def rel(g, g_star):
    return float(np.linalg.norm(np.asarray(g) - g_star) / np.linalg.norm(g_star))


def test_default_state(widget):
    ks = widget.ks
    assert len(ks) == 120 and ks[:60] == list(range(1, 61)) and ks[-1] == 2000
    assert ks == sorted(set(ks)) == k_grid(2000)
    ratios = np.diff(np.log(ks[59:]))
    assert np.all((0.03 < ratios) & (ratios < 0.09))                # log-spaced (rounded) after K = 60
    assert {100, 200, 500, 1000} <= set(ks)
    assert widget.k == 10 and widget.palette == PALETTE
    theta, data = problem()
    assert widget.theta == pytest.approx([math.log(0.01)] * 2, abs=1e-15)
    assert widget.step_size == float(default_step_size(theta, data.A))   # 1/L
    assert widget.table["step_is_default"] and widget.table["x0"] == [0.0, 0.0]
    assert repr(widget) == "KIterationsWidget(K=10, k_max=2000, num_k=120, memory_n=300)"


@pytest.mark.parametrize("K", [1, 2, 10, 37, 60, 2000])
def test_table_equals_ift_lib(widget, K):
    i = widget.ks.index(K)
    widget.k_index = i
    e = expected(K, widget.step_size)
    tol = dict(rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(widget.x, e["x"], **tol)
    np.testing.assert_allclose(widget.unrolled_grad, e["unrolled"], **tol)
    np.testing.assert_allclose(widget.ift_grad, e["ift"], **tol)
    np.testing.assert_allclose(widget.closed_form_grad, e["closed_form"], **tol)
    np.testing.assert_allclose(widget.x_star, e["x_star"], **tol)
    # Relative errors and the residual are stored to 4 significant digits.
    assert widget.rel_unrolled == pytest.approx(rel(e["unrolled"], e["closed_form"]), rel=1e-3)
    # at large K the IFT's error is rounding (~3e-14), and which rounding depends on the compiled
    # program (the widget's batched one or this per-K one, the compiler flags, the CPU): to 1e-13
    assert widget.rel_ift == pytest.approx(rel(e["ift"], e["closed_form"]), rel=1e-3, abs=1e-13)
    theta, data = problem()
    residual = float(jnp.max(jnp.abs(inner_gradient(jnp.asarray(e["x"]), theta, data.A, data.b))))
    assert widget.residual == pytest.approx(residual, rel=1e-3)


def test_every_grid_entry_is_a_gradient_descent_iterate(widget):
    """x_K in the table and the drawn path are the same iterates; the path is x_0 .. x_kmax."""
    t = widget.table
    assert len(t["path_x"]) == len(t["path_y"]) == 2001
    assert (t["path_x"][0], t["path_y"][0]) == (0.0, 0.0)
    side = t["view"][0][1] - t["view"][0][0]
    for k, x in zip(t["k"], t["x"]):
        assert abs(t["path_x"][k] - x[0]) <= 1e-4 * side and abs(t["path_y"][k] - x[1]) <= 1e-4 * side
    assert t["view"][0][1] - t["view"][0][0] == pytest.approx(t["view"][1][1] - t["view"][1][0])  # square
    for (lo, hi), xs in zip(t["view"], (t["path_x"], t["path_y"])):
        assert lo < min(xs) and max(xs) < hi
    assert len(t["contours"]) >= 8 and all(len(xs) == len(ys) >= 2 for xs, ys in t["contours"])


def test_errors_fall_with_K_and_the_unrolled_gradient_lags(widget):
    ks = np.array(widget.ks)
    ru, ri = np.array(widget.table["rel_unrolled"]), np.array(widget.table["rel_ift"])
    assert ru[0] == 1.0                      # x_1 does not depend on theta (x_0 = 0): gradient 0
    assert ru[ks.tolist().index(60)] > 0.5   # far from converged at K = 60 ...
    assert ru[-1] < 1e-10 and ri[-1] < 1e-10   # ... converged at K = 2000
    late = ks >= 60
    assert np.all(np.diff(ru[late]) <= 0) and np.all(np.diff(ri[late]) <= 0)
    # The IFT at x_K is closer than the unrolled gradient once K >= 30 (the unrolled error carries
    # an extra factor ~K), but before convergence it is not the gradient of anything computed: wrong.
    assert np.all(ri[ks >= 30] < ru[ks >= 30])
    assert np.all(ri[ks <= 20] > 0.9)
    assert np.all(np.array(widget.table["residual"])[ks <= 100] > 1e-4)   # x_K not a root: F != 0


def test_memory_unrolled_grows_ift_flat(widget):
    t = widget.table
    mem, n = t["memory"], t["memory"]["n"]
    assert n == 300 and mem["k"] == [k for k, m in zip(t["k"], t["memory_measured"]) if m]
    assert mem["k"] == [1, 2, 10, 100, 1000, 2000]
    for k, u, i in zip(mem["k"], mem["unrolled"], mem["ift"]):   # the measured values are stored as is
        j = t["k"].index(k)
        assert (t["unrolled_bytes"][j], t["ift_bytes"][j]) == (u, i)
    ub, ib = np.array(t["unrolled_bytes"]), np.array(t["ift_bytes"])
    assert np.all(np.diff(ub) > 0)                                # grows with K ...
    assert ub[-1] >= 2000 * n * 8 and ub[-1] > 100 * ub[0]       # ... storing every iterate
    # IFT: never grows with K (K = 1 may need a little more: XLA compiles a one-step loop
    # differently), and within 15% of flat overall
    assert np.all(np.diff(ib) <= 0.01 * ib.max()) and ib.max() <= 1.15 * ib.min()
    assert ub[-1] > 100 * ib[-1]


def test_interpolated_memory_matches_a_measurement(widget):
    """Between the measured K the bytes are linear in K: check one K against compiled_temp_bytes."""
    K = 41
    i = widget.ks.index(K)
    assert not widget.table["memory_measured"][i]
    n = widget.table["memory"]["n"]
    theta, data = jnp.zeros(n), random_problem(0, m=n, n=n, m_val=n)
    eta = float(default_step_size(theta, data.A))
    measured = compiled_temp_bytes(lambda t, d: unrolled_hypergradient(
        t, d, num_steps=K, step_size=eta), theta, data)
    assert widget.table["unrolled_bytes"][i] == pytest.approx(measured, rel=0.01)


def test_k_index_moves_the_state(widget):
    widget.k_index = len(widget.ks) - 1
    assert widget.k == 2000 and widget.unrolled_bytes > widget.table["unrolled_bytes"][0]
    for bad in (len(widget.ks), -1):
        with pytest.raises(traitlets.TraitError, match="k_index"):
            widget.k_index = bad
    widget.k_index = 9
    assert widget.k == 10


def test_options_and_float64_whatever_the_global_setting(widget):
    with jax.enable_x64(False):
        w = KIterationsWidget(k=50, k_max=80, step_size=0.5 * widget.step_size)
    assert w.ks == list(range(1, 81)) and w.k == 50 and not w.table["step_is_default"]
    e = expected(50, 0.5 * widget.step_size)
    np.testing.assert_allclose(w.unrolled_grad, e["unrolled"], rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(w.ift_grad, e["ift"], rtol=1e-10, atol=1e-15)
    assert w.table["memory"]["k"] == [1, 2, 10, 80]
    assert 'K = 50' in w.fallback_html()


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(k=0), ValueError, "k must be between 1 and 2000"),
    (dict(k=2001), ValueError, "k must be between"),
    (dict(k=10.0), TypeError, "k must be an int"),
    (dict(k=True), TypeError, "k must be an int"),
    (dict(k_max=1), ValueError, "k_max"),
    (dict(k_max=3001), ValueError, "k_max"),
    (dict(k_max="100"), TypeError, "k_max"),
    (dict(k=50, k_max=20), ValueError, "k must be between 1 and 20"),
    (dict(memory_n=256), ValueError, "memory_n"),
    (dict(memory_n=300.0), TypeError, "memory_n"),
    (dict(step_size=0.0), ValueError, "step_size"),
    (dict(step_size=-0.1), ValueError, "step_size"),
    (dict(step_size=float("nan")), ValueError, "step_size"),
    (dict(step_size=float("inf")), ValueError, "step_size"),
    (dict(step_size=10.0), ValueError, "2/lambda_max"),
    (dict(step_size="0.1"), TypeError, "step_size"),
    (dict(step_size=True), TypeError, "step_size"),
])
def test_invalid_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        KIterationsWidget(**kwargs)


def test_state_is_small_json_with_full_precision(widget):
    state = json.dumps(widget.get_state(), allow_nan=False)    # what the notebook and page embed
    assert len(state) < 150_000                                 # ~100 KB with the JS and CSS
    assert len(json.dumps(widget.table)) < 100_000              # ~70 KB
    row = widget.table["unrolled"]
    assert json.loads(json.dumps(row)) == row                   # float64 round-trips


def test_display_emits_fallback_then_widget(widget, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append((obj, kw)))
    widget.k_index = 9
    widget._ipython_display_()
    (fallback, _), (bundle, kw) = shown
    html = fallback.data
    assert html.startswith('<div class="ift-widget-fallback">') and "data:image/svg+xml;base64," in html
    assert len(html) < 70_000
    assert "K = 10 gradient-descent steps" in html and "rel. error 1.1" in html   # the alt text
    # the memory line quotes the table's compiled sizes (exact bytes depend on the XLA version)
    mem = re.search(r"memory at n = 300: unrolled ([\d.]+) kB, IFT ([\d.]+) kB", html)
    j = widget.table["k"].index(10)
    assert mem and float(mem.group(1)) == pytest.approx(widget.table["unrolled_bytes"][j] / 1e3, rel=5e-3)
    assert float(mem.group(2)) == pytest.approx(widget.table["ift_bytes"][j] / 1e3, rel=5e-3)
    assert kw.get("raw") and bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == widget.model_id
    assert bundle["text/plain"] == repr(widget)
    assert widget.fallback_html() == html                      # deterministic
    svg = base64.b64decode(re.search(r"base64,([^\"]+)", html).group(1)).decode("utf-8")
    for line in widget.readout()[1:4]:                         # the figure's text, digits intact
        assert line in svg, line
