"""KIterationsWidget (Ch. 4): what unrolling costs. K steps of gradient descent on a 2-feature inner
problem, the unrolled and the IFT hypergradient after K steps against the closed form, and the
memory of each."""
from __future__ import annotations

import base64
import copy
import functools
import html
import io
import math
import numbers
import pathlib
import re

import anywidget
import matplotlib as mpl
import contourpy
import jax
import jax.numpy as jnp
import numpy as np
import traitlets
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ift_lib.plotting import PALETTE, book_style
from ift_lib.unrolled import (
    BilevelData, closed_form_hypergradient, closed_form_solution, compiled_temp_bytes,
    default_step_size, gd_step, implicit_hypergradient, inner_gradient, inner_objective,
    outer_loss, random_problem, unrolled_hypergradient)

__all__ = ["KIterationsWidget", "problem", "k_grid", "memory_table", "k_iterations_table"]

_HERE = pathlib.Path(__file__).parent

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
_K_MAX_LIMIT = 3000        # the whole path x_0 .. x_{k_max} is stored (for drawing): keep it small
_ROUND_K = (100, 200, 500, 1000)   # put in the grid in place of the nearest log-spaced K
_MEMORY_K = (1, 2, 10, 100, 1000)   # memory is measured at these K (snapped to the grid) and k_max
_MEMORY_N = (257, 4000)    # companion problem size: above custom_root's dense-check limit (256)
_ERR_FLOOR = 1e-16         # relative errors below this are drawn at this floor
_DRAW_DIGITS = 4           # path and contours: rounded to 1e-4 of the view's side
_SIG_DIGITS = 4            # relative errors and residuals: only drawn / printed to 2-3 digits
_NUM_LEVELS = 9            # level sets drawn
_LEVEL_RATIO = 0.3         # f - f* shrinks by this factor from one level set to the next
_CONTOUR_GRID = 71         # f is sampled on a 71 x 71 grid of the view for the contours


# ----------------------------------------------------------------------------- formatting

def _sup(n: int) -> str:
    return str(n).translate(str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079"))


def _fmt_sig(v: float, digits: int = 4) -> str:
    """``digits`` significant digits like JavaScript's toPrecision (exponent when v < 1e-6),
    "a × 10ⁿ" for an exponent, typographic minus; same rule as fmtSig in k_iterations.js."""
    if v == 0:
        return "0"
    e = math.floor(math.log10(abs(float(f"{v:.{digits - 1}e}"))))
    if e < -6 or e >= digits:
        m, ex = f"{v:.{digits - 1}e}".split("e")
        s = f"{m} \u00d7 10{_sup(int(ex))}"
    else:
        s = f"{v:.{max(digits - 1 - e, 0)}f}"
    return s.replace("-", "\u2212")


def _fmt_err(v: float) -> str:
    """A relative error, 2 significant digits, "< 10⁻¹⁵" at rounding level (same as fmtErr)."""
    if v < 1e-15:
        return "< 10\u207b\u00b9\u2075"
    if v >= 100:
        return str(round(v))
    if v >= 0.01:
        return f"{v:#.2g}".rstrip(".")
    m, ex = f"{v:.1e}".split("e")
    return f"{m} \u00d7 10{_sup(int(ex))}"


def _fmt_bytes(n: float) -> str:
    """Bytes for reading, 3 significant digits, decimal units (same as fmtBytes in the JS)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{float(f'{n / size:.3g}'):g} {unit}"
    return f"{int(n)} B"


def _round_sig(a, digits: int) -> list:
    """Floats rounded to ``digits`` significant digits (and no -0.0), as nested lists."""
    return np.vectorize(lambda v: float(f"{v:.{digits - 1}e}") + 0.0, otypes=[float])(a).tolist()


# ----------------------------------------------------------------------------- validation

def _check_int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, got {value}")
    return int(value)


# ----------------------------------------------------------------------------- the problem

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
        "rel_unrolled": _round_sig(rel_unrolled, _SIG_DIGITS), "rel_ift": _round_sig(rel_ift, _SIG_DIGITS),
        "residual": _round_sig(residual, _SIG_DIGITS), "err_floor": _ERR_FLOOR,
        "unrolled_bytes": unrolled_bytes.tolist(), "ift_bytes": ift_bytes.tolist(),
        "memory_measured": [k in mem_k for k in ks], "memory": mem,
        "view": view, "ticks": ticks, "path_x": draw[:, 0].tolist(), "path_y": draw[:, 1].tolist(),
        "contours": _contours(theta, data, view, levels),
    }


class KIterationsWidget(anywidget.AnyWidget):
    """What unrolling costs: K steps of gradient descent on a 2-feature inner problem (per-feature
    log weight decays theta, :mod:`ift_lib.unrolled`), and the hypergradient dL/dtheta after K
    steps by two methods, as the slider moves K from 1 to ``k_max``:

    * the level sets of the inner objective f(x, theta) in the (x1, x2) plane, the iterates
      x_0 = 0, x_1, ..., x_K (step size 1/L by default) and the solution x*;
    * the relative error, against the closed form (:func:`~ift_lib.unrolled.closed_form_hypergradient`),
      of the unrolled hypergradient (exact for the K-step map, :func:`~ift_lib.unrolled.unrolled_hypergradient`)
      and of the IFT hypergradient at x_K (:func:`~ift_lib.unrolled.implicit_hypergradient`, dense
      solve, residual_tol = inf so it is evaluated, wrongly, where x_K has not converged);
    * the memory of each: :func:`~ift_lib.unrolled.compiled_temp_bytes` of the compiled gradient,
      measured on a companion problem with ``memory_n`` features (a 2-feature problem's bytes are
      tiny) at a dozen K values, linear in K in between; the IFT there uses CG.

    Every number is computed here (float64) on a grid of K values (every K up to 60, then
    log-spaced; at most 120) and stored in the widget state (``table``), so the JavaScript
    (``k_iterations.js``) only draws and looks up, and the widget stays live in static HTML.
    ``k_index`` (the current grid entry) syncs both ways. Displaying the widget first emits a
    static matplotlib figure of the starting state, which the widget's CSS hides once it renders.
    Construction takes ~10 s (mostly compiling the memory measurements).

    Args:
        k: starting K, snapped to the nearest grid value (in log scale); 1 <= k <= k_max.
        k_max: the largest K, an int from 2 to 3000.
        step_size: gradient descent's step; default 1/L (:func:`~ift_lib.unrolled.default_step_size`).
            A positive number below 2/lambda_max(H) (else gradient descent diverges).
        memory_n: number of features of the companion problem the memory is measured on, an
            int from 257 to 4000 (for n <= 256 custom_root's dense checks would add O(n^2)).
    """

    _esm = _HERE / "k_iterations.js"
    _css = _HERE / "k_iterations.css"

    table = traitlets.Dict().tag(sync=True)
    k_index = traitlets.Int(0).tag(sync=True)
    palette = traitlets.Dict().tag(sync=True)

    def __init__(self, k: int = 10, *, k_max: int = 2000, step_size: float | None = None,
                 memory_n: int = 300, **kwargs):
        k_max = _check_int("k_max", k_max, 2, _K_MAX_LIMIT)
        k = _check_int("k", k, 1, k_max)
        memory_n = _check_int("memory_n", memory_n, *_MEMORY_N)
        with jax.enable_x64(True):   # float64 whatever the global JAX setting
            if step_size is not None:
                if isinstance(step_size, bool) or not isinstance(step_size, numbers.Real):
                    raise TypeError(f"step_size must be a real number or None, got {step_size!r}")
                bound = 2.0 / _lambda_max(*problem())
                if not (math.isfinite(step_size) and 0 < step_size < bound):
                    raise ValueError(f"step_size must be positive and below 2/lambda_max(H) = "
                                     f"{bound:.4g} (gradient descent diverges beyond), got {step_size!r}")
            table = k_iterations_table(k_max, step_size, memory_n)
        k_index = int(np.argmin(np.abs(np.log(table["k"]) - math.log(k))))
        super().__init__(table=table, k_index=k_index, palette=dict(PALETTE), **kwargs)

    @traitlets.validate("k_index")
    def _check_k_index(self, proposal):
        i, count = proposal["value"], len(self.table["k"])
        if not 0 <= i < count:
            raise traitlets.TraitError(f"k_index must be from 0 to {count - 1}, got {i}")
        return i

    # --- the current state (read-only views of the table at `k_index`) ---
    def _row(self, key):
        return self.table[key][self.k_index]

    ks = property(lambda self: self.table["k"], doc="The grid of K values.")
    k = property(lambda self: self._row("k"), doc="Current K.")
    theta = property(lambda self: self.table["theta"], doc="theta, the log weight decays.")
    step_size = property(lambda self: self.table["step_size"], doc="Gradient descent's step.")
    x = property(lambda self: self._row("x"), doc="x_K, float64.")
    x_star = property(lambda self: self.table["x_star"], doc="x*, the inner solution.")
    unrolled_grad = property(lambda self: self._row("unrolled"), doc="Unrolled dL(x_K)/dtheta.")
    ift_grad = property(lambda self: self._row("ift"), doc="IFT hypergradient at x_K.")
    closed_form_grad = property(lambda self: self.table["closed_form"], doc="dL(x*)/dtheta.")
    rel_unrolled = property(lambda self: self._row("rel_unrolled"), doc="Unrolled's relative error.")
    rel_ift = property(lambda self: self._row("rel_ift"), doc="IFT-at-x_K's relative error.")
    residual = property(lambda self: self._row("residual"), doc="max |F(x_K, theta)|.")
    unrolled_bytes = property(lambda self: self._row("unrolled_bytes"),
                              doc="Scratch bytes of the unrolled gradient (companion problem).")
    ift_bytes = property(lambda self: self._row("ift_bytes"),
                         doc="Scratch bytes of the IFT gradient, CG (companion problem).")
    memory_measured = property(lambda self: self._row("memory_measured"),
                               doc="Were the bytes measured at this K (else interpolated)?")

    @staticmethod
    def problem() -> tuple[jax.Array, BilevelData]:
        """The widget's (theta, data); see :func:`problem`."""
        return problem()

    def __repr__(self) -> str:   # deterministic (anywidget's default shows a memory address)
        return (f"KIterationsWidget(K={self.k}, k_max={self.table['k_max']}, "
                f"num_k={len(self.ks)}, memory_n={self.table['memory']['n']})")

    def _ipython_display_(self, **kwargs):
        """Display the static fallback (HTML output), then the live widget view."""
        from IPython.display import HTML, display
        display(HTML(self.fallback_html()))
        data, metadata = self._repr_mimebundle_(**kwargs)
        display(data, metadata=metadata, raw=True)

    # --- static fallback ---
    def readout(self) -> list[str]:
        """One-line summaries of the current state (the figure's text and the image's alt text)."""
        g = lambda v: f"({_fmt_sig(v[0])}, {_fmt_sig(v[1])})"   # noqa: E731
        approx = "" if self.memory_measured else "\u2248 "
        n = self.table["memory"]["n"]
        return [
            f"K = {self.k} gradient-descent steps",
            f"unrolled \u2202L/\u2202\u03b8 = {g(self.unrolled_grad)}, rel. error {_fmt_err(self.rel_unrolled)}",
            f"IFT at x_K: \u2202L/\u2202\u03b8 = {g(self.ift_grad)}, rel. error {_fmt_err(self.rel_ift)}",
            f"closed form (K \u2192 \u221e): \u2202L/\u2202\u03b8 = {g(self.closed_form_grad)}",
            f"memory at n = {n}: unrolled {approx}{_fmt_bytes(self.unrolled_bytes)}, "
            f"IFT {approx}{_fmt_bytes(self.ift_bytes)}",
        ]

    def fallback_figure(self) -> Figure:
        """A matplotlib figure of what the widget shows in its current state."""
        p, t = PALETTE, self.table
        K = self.k
        with book_style():
            fig = Figure(figsize=(7.0, 4.4))
            ax = fig.add_axes((0.07, 0.25, 0.42, 0.66))
            (x_lo, x_hi), (y_lo, y_hi) = t["view"]
            ax.set(xlim=(x_lo, x_hi), ylim=(y_lo, y_hi), aspect="equal", xticks=t["ticks"][0],
                   yticks=t["ticks"][1])
            ax.set_xlabel("x\u2081", labelpad=1)
            ax.set_ylabel("x\u2082", rotation=0, labelpad=8)
            ax.grid(False)
            ax.tick_params(labelsize=8)
            for xs, ys in t["contours"]:
                ax.plot(xs, ys, color=p["grid"], lw=0.9)
            ax.plot(t["path_x"][:K + 1], t["path_y"][:K + 1], "o-", color=p["curve"], lw=1.4, ms=2.5)
            ax.plot(*t["x_star"], "*", ms=13, color=p["arc"], mec="white", mew=0.8, zorder=5)
            ax.plot(*self.x, "o", ms=8, color=p["point"], mec="white", mew=1.4, zorder=6)
            ax.set_title(f"level sets of f(x, \u03b8); x\u2080 \u2026 x_K, K = {K}", fontsize=10)

            ex = fig.add_axes((0.62, 0.52, 0.35, 0.36))
            floor = t["err_floor"]
            for key, colour, label in (("rel_unrolled", p["curve"], "unrolled"),
                                       ("rel_ift", p["tangent"], "IFT at x_K")):
                ex.plot(t["k"], np.maximum(t[key], floor), color=colour, lw=1.6, label=label)
                ex.plot([K], [max(self._row(key), floor)], "o", color=colour, ms=5)
            ex.axvline(K, color=p["muted"], lw=0.8)
            ex.set(xscale="log", yscale="log", ylim=(floor / 3, 30), xlim=(1, t["k_max"]))
            ex.set_yticks([1, 1e-4, 1e-8, 1e-12, 1e-16])
            ex.tick_params(labelsize=8)
            ex.set_xlabel("K", fontsize=9, labelpad=1)
            ex.set_title("relative error vs closed form", fontsize=10)
            ex.legend(fontsize=8, loc="lower left")

            mx = fig.add_axes((0.62, 0.25, 0.35, 0.12))
            top = max(t["unrolled_bytes"][-1], max(t["ift_bytes"]))
            mx.barh([1, 0], [self.unrolled_bytes, self.ift_bytes], color=[p["curve"], p["tangent"]],
                    height=0.6)
            mx.set(xlim=(0, top * 1.35), yticks=[1, 0], yticklabels=["unrolled", "IFT (CG)"], xticks=[])
            mx.tick_params(labelsize=8, length=0)
            mx.grid(False)
            mx.spines["bottom"].set_visible(False)
            mx.spines["left"].set_visible(False)
            for y, v in ((1, self.unrolled_bytes), (0, self.ift_bytes)):
                mx.text(v + top * 0.02, y, _fmt_bytes(v), va="center", fontsize=8, color=p["text"])
            mx.set_title(f"memory of one hypergradient, n = {t['memory']['n']}", fontsize=10)
            for k, line in enumerate(self.readout()[1:4]):
                fig.text(0.03, 0.145 - 0.042 * k, line, fontsize=8.5, color=p["text"])
            fig.text(0.03, 0.01, "static view: the interactive widget did not load",
                     fontsize=8, color=p["muted"])
        return fig

    def fallback_html(self) -> str:
        """``<div class="ift-widget-fallback">`` with the figure as an inline SVG image."""
        buf = io.BytesIO()
        with book_style():
            fig = self.fallback_figure()
            with mpl.rc_context({"svg.fonttype": "none"}):   # text as text: a much smaller file
                fig.savefig(buf, format="svg", metadata={"Date": None})
        svg = re.sub(r"<!--.*?-->", "", buf.getvalue().decode("utf-8"), flags=re.S)
        svg = re.sub(r"\s*\n\s*", " ", svg).replace("> <", "><")
        # Path coordinates to 0.01 pt (a quarter of the file); the text (fonttype none) is kept as is.
        svg = re.sub(r' d="[^"]*"', lambda m: re.sub(r"(\d\.\d\d)\d+", r"\1", m.group(0)), svg)
        src = "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")
        alt = ("Gradient descent on a 2-feature inner problem, the level sets of its objective and "
               "the iterates up to x_K; " + "; ".join(self.readout()) + ".")
        return (f'<div class="ift-widget-fallback"><img src="{src}" alt="{html.escape(alt)}" '
                f'style="max-width:100%;height:auto"></div>')
