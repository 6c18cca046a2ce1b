"""Chapter 1: the unit circle F(theta, x) = theta^2 + x^2 - 1 = 0, x as an implicit function of theta.

theta is the parameter (the horizontal axis of the chapter's figures), x the unknown (vertical).
Argument order: :func:`circle_residual` is the optimality function handed to ``custom_root``, so,
as everywhere in ift_lib, it takes the unknown first, ``circle_residual(x, theta)``; so do the
solvers (``newton_circle(init, theta)``, ``solve_circle(init, theta)``). The functions that take a
*point of the plane*, ``circle_partials(theta, x)`` and ``ift_slope(theta, x)``, take its
coordinates in the order of the mathematics and of the figures' axes: theta first, then x.
The IFT gives dx/dtheta = -(dF/dx)^{-1} dF/dtheta = -(2 theta)/(2 x) = -theta/x on either
arc, and says nothing at x = 0 (theta = +-1), where dF/dx = 0.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ift_lib._checks import default_rank_rtol, nonsingular
from ift_lib.diagnose import ift_diagnostics
from ift_lib.implicit import custom_root
from ift_lib.root_finding import newton

__all__ = ["circle_residual", "circle_partials", "upper_arc", "lower_arc",
           "local_parameterization", "newton_circle", "solve_circle", "ift_slope", "circle_table"]


def circle_residual(x, theta):
    """F = theta^2 + x^2 - 1 at the unknown ``x`` and the parameter ``theta`` (unknown first, the
    order ``custom_root`` expects; scalars or same-shape arrays)."""
    return theta**2 + x**2 - 1.0


def circle_partials(theta, x):
    """(dF/dtheta, dF/dx) at the point (theta, x) of the plane (theta first, like the returned
    pair), by autodiff of :func:`circle_residual`."""
    return jax.grad(circle_residual, argnums=1)(x, theta), jax.grad(circle_residual, argnums=0)(x, theta)


def upper_arc(theta):
    """The local parameterization x = f1(theta) = sqrt(1 - theta^2) of the arc x > 0, |theta| < 1."""
    return jnp.sqrt(1.0 - theta**2)


def lower_arc(theta):
    """The local parameterization x = f2(theta) = -sqrt(1 - theta^2) of the arc x < 0, |theta| < 1."""
    return -jnp.sqrt(1.0 - theta**2)


def local_parameterization(x):
    """The arc through a point with ordinate x: :func:`upper_arc` if x > 0, :func:`lower_arc` if
    x < 0. At x = 0 no function x(theta) describes the circle nearby: ValueError."""
    x = float(x)
    if x > 0:
        return upper_arc
    if x < 0:
        return lower_arc
    raise ValueError("no local parameterization x(theta) at x = 0: the circle is vertical there")


def newton_circle(init, theta, num_steps: int = 60):
    """Newton's method (:func:`ift_lib.root_finding.newton`) on x -> F(x, theta) from ``init``
    (its sign picks the arc). An exact root stays put, so at x = 0, theta = +-1 the singular
    point is reported as IFT condition 3, not as "not a solution" (0/0)."""
    init = jnp.asarray(init, jnp.result_type(init, theta, float))
    return newton(circle_residual, init, theta, num_steps=num_steps)


#: x*(init, theta) on the arc chosen by sign(init); derivatives in theta come from the IFT.
solve_circle = custom_root(circle_residual)(newton_circle)


#: The point itself as the "solution": custom_root's checks then test that (theta, x) is on the
#: circle (condition 1) and that dF/dx = 2x is not zero (condition 3) before taking a derivative.
_point_on_circle = custom_root(circle_residual)(lambda x, theta: x)


def ift_slope(theta, x):
    """dx/dtheta = -(dF/dtheta)/(dF/dx) = -theta/x at the point (theta, x) of the circle (theta
    first), from
    ift_lib's IFT. Raises IFTConditionError when (theta, x) is not on the circle (|F| > sqrt(eps))
    or x = 0; the point is used as given, never moved by a solver."""
    return jax.grad(_point_on_circle, argnums=1)(jnp.asarray(x, float), jnp.asarray(theta, float))


# circle_table's computations, each compiled once per number of points (run eagerly, their
# vmaps compiled every operation separately: ~150 compilations for one table)

@jax.jit
def _table_columns(theta, x):
    """dF/dtheta, dF/dx and ift_diagnostics' (residual, sigma_min, scale) at each point."""
    dF_dtheta, dF_dx = jax.vmap(circle_partials)(theta, x)
    residual, smin, _, scale = jax.vmap(lambda t, xx: ift_diagnostics(circle_residual, xx, t))(theta, x)
    return dF_dtheta, dF_dx, residual, smin, scale


_slopes = jax.jit(jax.vmap(ift_slope))


@jax.jit
def _arcs(ts, upper):
    """Rows of ts mapped by upper_arc where ``upper``, else by lower_arc."""
    return jnp.where(upper[:, None], upper_arc(ts), lower_arc(ts))


def circle_table(num_points: int = 360, arc_halfwidth: float = 0.3, arc_points: int = 13) -> dict:
    """Everything the circle widget shows, at ``num_points`` equally spaced angles phi_k.

    Points are (theta, x) = (cos phi_k, sin phi_k), with the four axis points exact. Returns
    plain lists (JSON-ready): theta, x, dF_dtheta, dF_dx, applies (the IFT's verdict from the
    same diagnostics as ``check_ift``), dx_dtheta (IFT slope by ``jax.grad`` of
    :data:`solve_circle`; None where the IFT does not apply), and arc_theta / arc_x: the local
    parameterization sampled on theta +- arc_halfwidth (empty where there is none).
    """
    if num_points % 4:
        raise ValueError("num_points must be a multiple of 4 so the axis points are samples")
    k = np.arange(num_points)
    phi = 2 * np.pi * k / num_points
    theta = np.cos(phi)
    x = np.sin(phi)
    q = num_points // 4
    theta[[q, 3 * q]] = 0.0
    x[[0, 2 * q]] = 0.0
    theta[0], theta[2 * q], x[q], x[3 * q] = 1.0, -1.0, 1.0, -1.0

    dF_dtheta, dF_dx, residual, smin, scale = (np.asarray(a) for a in _table_columns(
        jnp.asarray(theta), jnp.asarray(x)))
    applies = (residual <= 1e-12) & nonsingular(smin, scale, default_rank_rtol(jnp.asarray(x), 1))

    slope = np.full(num_points, np.nan)
    ok = np.flatnonzero(applies)
    slope[ok] = np.asarray(_slopes(jnp.asarray(theta[ok]), jnp.asarray(x[ok])))

    # the local parameterization of each point where the IFT applies, sampled around it
    ts = np.array([np.linspace(max(t - arc_halfwidth, -1.0), min(t + arc_halfwidth, 1.0), arc_points)
                   for t in theta[ok]]).reshape(len(ok), arc_points)
    upper = np.array([local_parameterization(xx) is upper_arc for xx in x[ok]], bool)
    xs = np.asarray(_arcs(jnp.asarray(ts), jnp.asarray(upper)))
    arc_theta, arc_x = [[] for _ in range(num_points)], [[] for _ in range(num_points)]
    for row, i in enumerate(ok):
        arc_theta[i], arc_x[i] = ts[row].tolist(), xs[row].tolist()

    return {
        "theta": theta.tolist(), "x": x.tolist(),
        "dF_dtheta": np.asarray(dF_dtheta).tolist(), "dF_dx": np.asarray(dF_dx).tolist(),
        "applies": applies.tolist(),
        "dx_dtheta": [None if not a else float(s) for s, a in zip(slope, applies)],
        "arc_theta": arc_theta, "arc_x": arc_x,
    }
