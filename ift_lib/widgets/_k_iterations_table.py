"""The KIterationsWidget's table (Ch. 4): the inner problem, the K grid, gradient descent's path,
the unrolled and IFT hypergradients at every K, the memory of each, and the drawing's level sets."""
from __future__ import annotations

import copy
import functools
import math

import contourpy
import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.ticker import MaxNLocator

from ift_lib.unrolled import (
    BilevelData, closed_form_hypergradient, closed_form_solution, compiled_temp_bytes,
    default_step_size, gd_step, implicit_hypergradient, inner_gradient, inner_objective,
    outer_loss, random_problem, unrolled_hypergradient)
from ift_lib.widgets._base import round_sig

__all__ = ["problem", "k_grid", "memory_table", "k_iterations_table"]

# The inner problem: random_problem's 2-feature regression data with the two features mixed,
# A -> A M, M = R diag(1, _MIX_SCALE) R^T (R: rotation by _MIX_ANGLE), so that the columns of A are
# strongly correlated and H = A^T A/m + diag(exp theta) is ill-conditioned (condition number ~60):
# gradient descent's first step lands on the floor of a long narrow valley, tilted against the
# axes, and then crawls along it (most of the K steps). b and b_val are random_problem's own.
_SEED = 18
_MIX_ANGLE = math.pi / 3
_MIX_SCALE = 0.1
_THETA = (math.log(0.01), math.log(0.01))   # log weight decays (lambda_1, lambda_2) = (0.01, 0.01)

_DENSE_K = 60              # every K from 1 to 60, then log-spaced
_MAX_GRID = 120            # at most this many K values (the table is stored in the page)
_K_MAX_LIMIT = 3000        # the whole path x_0 .. x_{k_max} is stored (for drawing): keep k_max small
_ROUND_K = (100, 200, 500, 1000)   # put in the grid in place of the nearest log-spaced K
_MEMORY_K = (1, 2, 10, 100, 1000)   # memory is measured at these K (snapped to the grid) and k_max
_MEMORY_N = (257, 4000)    # companion problem size: above custom_root's dense-check limit (256)
_ERR_FLOOR = 1e-16         # relative errors below this are drawn at this floor
_DRAW_DIGITS = 4           # path and contours: rounded to 1e-4 of the view's side
_SIG_DIGITS = 4            # relative errors and residuals: only drawn / printed to 2-3 digits
_NUM_LEVELS = 9            # level sets drawn
_LEVEL_RATIO = 0.3         # f - f* shrinks by this factor from one level set to the next
_CONTOUR_GRID = 71         # f is sampled on a 71 x 71 grid of the view for the contours




def problem() -> tuple[jax.Array, BilevelData]:
    """The widget's bilevel problem (float64): theta (2,), the log weight decays, and the data,
    ``random_problem(18, n=2)`` with its two features mixed (A -> A M, A_val -> A_val M) so that
    gradient descent on the inner problem is slow along one direction. Call under
    ``jax.enable_x64(True)`` (the widget does) to get float64."""
    d = random_problem(_SEED, m=40, n=2, m_val=30, noise=0.5)
    c, s = math.cos(_MIX_ANGLE), math.sin(_MIX_ANGLE)
    R = np.array([[c, -s], [s, c]])
    M = jnp.asarray(R @ np.diag([1.0, _MIX_SCALE]) @ R.T, d.A.dtype)
    theta = jnp.asarray(_THETA, d.A.dtype)
    return theta, BilevelData(d.A @ M, d.b, d.A_val @ M, d.b_val)


def k_grid(k_max: int) -> list[int]:
    """Every K from 1 to min(60, k_max), then log-spaced integers up to k_max (at most 120 in all;
    100, 200, 500 and 1000 replace their nearest neighbours)."""
    dense = list(range(1, min(_DENSE_K, k_max) + 1))
    if k_max <= _DENSE_K:
        return dense
    tail = [int(k) for k in np.unique(np.round(np.geomspace(_DENSE_K, k_max, _MAX_GRID - _DENSE_K + 1)))
            if k > _DENSE_K]
    for r in _ROUND_K:   # round numbers for the reader (and for the memory measurements)
        j = int(np.argmin([abs(math.log(k / r)) for k in tail]))
        if abs(math.log(tail[j] / r)) < 0.03:
            tail[j] = r
    return dense + sorted(set(tail))


def _trajectory(theta, data: BilevelData, x0, step_size, k_max: int):
    """x_1 .. x_{k_max} (shape (k_max, n)) by ift_lib's gd_step, the steps unrolled_solve takes."""
    def step(x, _):
        x = gd_step(x, theta, data.A, data.b, step_size)
        return x, x
    return jax.lax.scan(step, x0, None, length=k_max)[1]


@jax.jit
def _unrolled_all(theta, data, x0, step_size, k_max_marker):
    """x_1..x_K and the unrolled hypergradient dL(x_K)/dtheta for every K <= k_max at once: the
    forward-mode derivative (jacfwd) of theta -> (L(x_1), ..., L(x_kmax)) through the same gd_step
    iterations, i.e. ift_lib's unrolled hypergradient for each K (its forward_hypergradient mode;
    unrolled_hypergradient takes reverse mode and one compilation per K)."""
    k_max = k_max_marker.shape[0]
    losses = lambda t: jax.vmap(lambda x: outer_loss(x, data.A_val, data.b_val))(   # noqa: E731
        _trajectory(t, data, x0, step_size, k_max))
    return _trajectory(theta, data, x0, step_size, k_max), jax.jacfwd(losses)(theta)


@jax.jit
def _ift_at(theta, data, x_prev, step_size):
    """The IFT hypergradient at x_K = gd_step(x_{K-1}) for a batch of x_{K-1}: ift_lib's
    implicit_hypergradient with one step from x_{K-1} (the IFT uses only the point x_K, not the
    path to it), dense solve, residual_tol = inf: evaluated even where x_K has not converged."""
    return jax.vmap(lambda x: implicit_hypergradient(
        theta, data, num_steps=1, step_size=step_size, x0=x, solve="dense",
        residual_tol=np.inf))(x_prev)


def _lambda_max(theta, data) -> float:
    """Largest eigenvalue of the inner Hessian H (jax.hessian of ift_lib's inner_objective)."""
    H = jax.hessian(inner_objective)(jnp.zeros_like(theta), theta, data.A, data.b)
    return float(np.linalg.eigvalsh(np.asarray(H))[-1])


def memory_table(ks, memory_n: int = 300) -> dict:
    """compiled_temp_bytes (XLA's scratch bytes of the compiled gradient, float64) of the unrolled
    and of the IFT hypergradient (CG solve, residual_tol = inf) at each K in ``ks``, on a companion
    problem ``random_problem(0, m=n, n=n, m_val=n)`` with n = ``memory_n`` features:
    ``{"n", "k", "unrolled", "ift"}``, in the default float dtype (float64 under
    ``jax.enable_x64(True)``, as the widget calls it). Compiles 2 len(ks) functions (~0.2-0.5 s
    each); the result depends only on the shapes and the dtype, so it is cached for the process."""
    return copy.deepcopy(_memory_table(tuple(int(k) for k in ks), int(memory_n),
                                       str(jnp.result_type(float))))


@functools.lru_cache(maxsize=8)
def _memory_table(ks: tuple, memory_n: int, dtype: str) -> dict:   # dtype: part of the cache key
    theta, data = jnp.zeros(memory_n), random_problem(0, m=memory_n, n=memory_n, m_val=memory_n)
    eta = float(default_step_size(theta, data.A))   # a constant: no SVD inside the measured code

    def unrolled(K):
        return compiled_temp_bytes(lambda t, d: unrolled_hypergradient(
            t, d, num_steps=K, step_size=eta), theta, data)

    def ift(K):
        return compiled_temp_bytes(lambda t, d: implicit_hypergradient(
            t, d, num_steps=K, step_size=eta, solve="cg", residual_tol=np.inf), theta, data)

    return {"n": memory_n, "k": list(ks), "unrolled": [unrolled(k) for k in ks],
            "ift": [ift(k) for k in ks]}


def _contours(theta, data, view, levels) -> list:
    """Level sets of ift_lib's inner_objective over the (square) view, as [xs, ys] polylines,
    rounded and thinned to drawing precision."""
    (x_lo, x_hi), (y_lo, y_hi) = view
    gx, gy = np.linspace(x_lo, x_hi, _CONTOUR_GRID), np.linspace(y_lo, y_hi, _CONTOUR_GRID)
    X, Y = np.meshgrid(gx, gy)
    pts = jnp.asarray(np.stack([X.ravel(), Y.ravel()], axis=1))
    F = np.asarray(jax.vmap(lambda x: inner_objective(x, theta, data.A, data.b))(pts)).reshape(X.shape)
    side = x_hi - x_lo
    decimals = _DRAW_DIGITS - math.floor(math.log10(side))
    gen = contourpy.contour_generator(gx, gy, F)
    out = []
    for level in levels:
        for line in gen.lines(level):
            keep = [line[0]]
            for p in line[1:-1]:   # drop points closer than ~1 px (side/300) to the last kept one
                if np.hypot(*(p - keep[-1])) >= side / 300:
                    keep.append(p)
            keep.append(line[-1])
            pts = np.round(np.array(keep), decimals) + 0.0
            out.append([pts[:, 0].tolist(), pts[:, 1].tolist()])
    return out


def k_iterations_table(k_max: int = 2000, step_size: float | None = None, memory_n: int = 300) -> dict:
    """Everything the widget shows, JSON-ready (float64, call under ``jax.enable_x64(True)``).

    ``k``: the K grid (:func:`k_grid`); per K: ``x`` (x_K), ``unrolled`` (unrolled hypergradient),
    ``ift`` (IFT hypergradient at x_K), full precision; ``rel_unrolled``, ``rel_ift`` (relative
    2-norm errors against ``closed_form``, 4 significant digits), ``residual`` (max |F(x_K)|, the
    IFT's condition 1), ``unrolled_bytes``, ``ift_bytes`` (measured where ``memory_measured``,
    else linear interpolation in K between measured values). Constants: theta, step_size, x0,
    x_star, closed_form, and for drawing the view, ticks, path (x_0..x_kmax) and contours."""
    theta, data = problem()
    n = theta.shape[0]
    x0 = jnp.zeros(n, theta.dtype)
    eta = float(default_step_size(theta, data.A)) if step_size is None else float(step_size)
    ks = k_grid(k_max)
    idx = np.asarray(ks) - 1
    path, unrolled = (np.asarray(a) for a in _unrolled_all(theta, data, x0, eta, jnp.zeros(k_max)))
    x_prev = np.concatenate([np.asarray(x0)[None], path[:-1]])[idx]
    ift = np.asarray(_ift_at(theta, data, jnp.asarray(x_prev), eta))
    x_star = np.asarray(closed_form_solution(theta, data.A, data.b))
    g_star = np.asarray(closed_form_hypergradient(theta, data))
    xs = path[idx]
    residual = np.asarray(jax.vmap(lambda x: jnp.max(jnp.abs(
        inner_gradient(x, theta, data.A, data.b))))(jnp.asarray(xs)))
    rel = lambda g: np.linalg.norm(g - g_star, axis=1) / np.linalg.norm(g_star)   # noqa: E731
    rel_unrolled, rel_ift = rel(unrolled[idx]), rel(ift)
    values = (path, unrolled, ift, x_star, g_star, residual)
    if not all(np.all(np.isfinite(v)) for v in values):   # the state must be valid JSON
        raise ValueError("k_iterations_table: non-finite values (gradient descent diverged?)")

    # Memory: measured at a few K of the grid, linear in K in between.
    mem_k = sorted({min(ks, key=lambda k: abs(math.log(k) - math.log(m))) for m in _MEMORY_K
                    if m <= k_max} | {ks[-1]})
    mem = memory_table(mem_k, memory_n)
    unrolled_bytes = np.rint(np.interp(ks, mem_k, mem["unrolled"])).astype(int)
    ift_bytes = np.rint(np.interp(ks, mem_k, mem["ift"])).astype(int)

    # The drawing: a square view around the path and x*, level sets through x_0 and inside it.
    full = np.concatenate([np.asarray(x0)[None], path, x_star[None]])
    lo, hi = full.min(axis=0), full.max(axis=0)
    center, half = (lo + hi) / 2, 0.56 * float(np.max(hi - lo))
    locator = MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10])
    view, ticks = [], []
    for c in center:
        a, b = float(c - half), float(c + half)
        view.append([a, b])
        ticks.append([float(t) for t in np.round(locator.tick_values(a, b), 10) if a <= t <= b])
    f = lambda x: float(inner_objective(jnp.asarray(x), theta, data.A, data.b))   # noqa: E731
    f_star, f_0 = f(x_star), f(x0)
    levels = [f_star + (f_0 - f_star) * _LEVEL_RATIO ** j for j in range(-1, _NUM_LEVELS - 1)]
    decimals = _DRAW_DIGITS - math.floor(math.log10(2 * half))
    draw = np.round(np.concatenate([np.asarray(x0)[None], path]), decimals) + 0.0
    return {
        "n": int(n), "k_max": int(k_max), "theta": np.asarray(theta).tolist(), "step_size": eta,
        "step_is_default": step_size is None,
        "x0": np.asarray(x0).tolist(), "x_star": x_star.tolist(), "closed_form": g_star.tolist(),
        "k": ks, "x": xs.tolist(), "unrolled": unrolled[idx].tolist(), "ift": ift.tolist(),
        "rel_unrolled": round_sig(rel_unrolled, _SIG_DIGITS), "rel_ift": round_sig(rel_ift, _SIG_DIGITS),
        "residual": round_sig(residual, _SIG_DIGITS), "err_floor": _ERR_FLOOR,
        "unrolled_bytes": unrolled_bytes.tolist(), "ift_bytes": ift_bytes.tolist(),
        "memory_measured": [k in mem_k for k in ks], "memory": mem,
        "view": view, "ticks": ticks, "path_x": draw[:, 0].tolist(), "path_y": draw[:, 1].tolist(),
        "contours": _contours(theta, data, view, levels),
    }
