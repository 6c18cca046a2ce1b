"""Tests for ift_lib.circle (Chapter 1): the IFT slope of the unit circle and the widget table."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ift_lib import IFTConditionError
from ift_lib.circle import (circle_partials, circle_residual, circle_table, ift_slope,
                            local_parameterization, lower_arc, newton_circle, solve_circle,
                            upper_arc)

THETAS = np.linspace(-0.95, 0.95, 39)      # includes theta = 0


def test_residual_and_partials():
    assert float(circle_residual(0.8, 0.6)) == pytest.approx(0.0, abs=1e-15)
    assert float(circle_residual(0.0, 0.0)) == -1.0
    dF_dtheta, dF_dx = circle_partials(0.3, -0.7)
    assert float(dF_dtheta) == pytest.approx(0.6) and float(dF_dx) == pytest.approx(-1.4)


def test_ift_slope_on_both_arcs():
    theta = jnp.asarray(THETAS)
    expected_upper = -THETAS / np.sqrt(1 - THETAS**2)
    slopes = jax.jit(jax.vmap(ift_slope))(jnp.concatenate([theta, theta]),
                                          jnp.concatenate([upper_arc(theta), lower_arc(theta)]))
    slopes = np.asarray(slopes)
    np.testing.assert_allclose(slopes[:39], expected_upper, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(slopes[39:], -expected_upper, rtol=1e-12, atol=1e-15)
    # == the derivative of the explicit local parameterizations
    np.testing.assert_allclose(slopes[:39], np.asarray(jax.vmap(jax.grad(upper_arc))(theta)),
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(slopes[39:], np.asarray(jax.vmap(jax.grad(lower_arc))(theta)),
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("theta, x", [(0.6, 0.8), (0.6, -0.8), (-0.28, 0.96), (0.0, -1.0)])
def test_ift_slope_eager_points(theta, x):
    assert float(ift_slope(theta, x)) == pytest.approx(-theta / x, rel=1e-12, abs=1e-15)
    arc = local_parameterization(x)
    assert float(jax.grad(arc)(theta)) == pytest.approx(-theta / x, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("init, expected", [(0.5, 0.8), (3.0, 0.8), (1e-3, 0.8),
                                            (-0.5, -0.8), (-3.0, -0.8), (-1e-3, -0.8)])
def test_solve_circle_lands_on_the_arc_of_init(init, expected):
    x = float(solve_circle(init, 0.6))
    assert x == pytest.approx(expected, rel=1e-15)
    assert float(newton_circle(init, 0.6)) == x


def test_solve_circle_gradient_follows_the_chosen_arc():
    g = jax.jit(jax.vmap(jax.grad(solve_circle, argnums=1)))(jnp.array([1.0, -1.0]), jnp.array([0.6, 0.6]))
    np.testing.assert_allclose(np.asarray(g), [-0.75, 0.75], rtol=1e-12)


@pytest.mark.parametrize("theta", [1.0, -1.0])
def test_ift_slope_raises_at_vertical_tangents(theta):
    with pytest.raises(IFTConditionError, match="condition 3"):
        ift_slope(theta, 0.0)


@pytest.mark.parametrize("theta, x", [(0.5, 0.0), (1.0, 1.0), (0.6, 0.8 + 1e-6)])
def test_ift_slope_raises_off_the_circle(theta, x):
    # the point is used as given: a point off the circle is refused (condition 1), never moved
    # by a solver towards some nearby point (from (1, 1) Newton would crawl to x ~ 1e-8 and
    # report a slope of -1e8 at the fold)
    with pytest.raises(IFTConditionError, match="condition 1"):
        ift_slope(theta, x)


def test_local_parameterization():
    assert local_parameterization(0.3) is upper_arc
    assert local_parameterization(-1e-300) is lower_arc
    assert local_parameterization(jnp.asarray(-0.5)) is lower_arc
    with pytest.raises(ValueError, match="x = 0"):
        local_parameterization(0.0)
    with pytest.raises(ValueError):
        local_parameterization(-0.0)


def test_arcs():
    theta = jnp.asarray(THETAS)
    np.testing.assert_allclose(np.asarray(upper_arc(theta)) ** 2 + THETAS**2, 1.0, rtol=1e-15)
    assert np.all(np.asarray(upper_arc(theta)) > 0) and np.all(np.asarray(lower_arc(theta)) < 0)
    assert float(upper_arc(1.0)) == 0.0 and float(lower_arc(0.0)) == -1.0


# ---------------------------------------------------------------------------------- circle_table

@pytest.fixture(scope="module")
def table():
    return circle_table()


def test_table_shapes_and_json_types(table):
    keys = {"theta", "x", "dF_dtheta", "dF_dx", "applies", "dx_dtheta", "arc_theta", "arc_x"}
    assert set(table) == keys
    assert all(len(table[k]) == 360 for k in keys)
    assert all(type(v) is float for v in table["theta"] + table["x"])
    assert all(type(v) is bool for v in table["applies"])


def test_table_points_on_the_circle_with_exact_axis_points(table):
    theta, x = np.array(table["theta"]), np.array(table["x"])
    np.testing.assert_allclose(theta**2 + x**2, 1.0, rtol=0, atol=4e-16)
    assert (theta[0], x[0]) == (1.0, 0.0)
    assert (theta[90], x[90]) == (0.0, 1.0)
    assert (theta[180], x[180]) == (-1.0, 0.0)
    assert (theta[270], x[270]) == (0.0, -1.0)
    phi = 2 * np.pi * np.arange(360) / 360
    np.testing.assert_allclose(theta, np.cos(phi), atol=1e-15)
    np.testing.assert_allclose(x, np.sin(phi), atol=1e-15)
    np.testing.assert_allclose(table["dF_dtheta"], 2 * theta, rtol=1e-15)
    np.testing.assert_allclose(table["dF_dx"], 2 * x, rtol=1e-15)


def test_table_applies_everywhere_except_the_vertical_tangents(table):
    x = np.array(table["x"])
    applies = np.array(table["applies"])
    assert np.flatnonzero(~applies).tolist() == [0, 180]
    assert np.flatnonzero(x == 0).tolist() == [0, 180]


def test_table_slopes(table):
    theta, x = np.array(table["theta"]), np.array(table["x"])
    slopes = table["dx_dtheta"]
    assert slopes[0] is None and slopes[180] is None
    ok = [k for k in range(360) if k not in (0, 180)]
    assert all(type(slopes[k]) is float for k in ok)
    np.testing.assert_allclose([slopes[k] for k in ok], -theta[ok] / x[ok], rtol=1e-12, atol=1e-15)


def test_table_arcs(table):
    for k, (t, xx, a) in enumerate(zip(table["theta"], table["x"], table["applies"])):
        ts, xs = np.array(table["arc_theta"][k]), np.array(table["arc_x"][k])
        if not a:
            assert ts.size == 0 and xs.size == 0
            continue
        assert ts.size == xs.size == 13
        assert ts.min() >= -1.0 and ts.max() <= 1.0
        assert ts[0] == pytest.approx(max(t - 0.3, -1.0)) and ts[-1] == pytest.approx(min(t + 0.3, 1.0))
        np.testing.assert_allclose(ts**2 + xs**2, 1.0, rtol=0, atol=1e-15)   # on the circle ...
        assert np.all(np.sign(xs[np.abs(ts) < 1]) == np.sign(xx))          # ... on the point's arc
        # the arc passes through the point itself
        np.testing.assert_allclose(np.interp(t, ts, xs), xx, atol=0.3**2)


def test_table_needs_the_axis_points():
    with pytest.raises(ValueError, match="multiple of 4"):
        circle_table(num_points=10)
