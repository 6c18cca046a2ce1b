"""KIterationsWidget (Ch. 4): what unrolling costs. K steps of gradient descent on a 2-feature inner
problem, the unrolled and the IFT hypergradient after K steps against the closed form, and the
memory of each. The numbers are computed in :mod:`ift_lib.widgets._k_iterations_table`."""
from __future__ import annotations

import math

import jax
import numpy as np
import traitlets
from matplotlib.figure import Figure

from ift_lib.plotting import PALETTE, book_style
from ift_lib.unrolled import BilevelData
from ift_lib.widgets._base import IFTWidget, bundle, check_int, check_real
from ift_lib.widgets._k_iterations_table import (
    _K_MAX_LIMIT, _MEMORY_N, _lambda_max, k_grid, k_iterations_table, memory_table, problem)

__all__ = ["KIterationsWidget", "problem", "k_grid", "memory_table", "k_iterations_table"]



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


class KIterationsWidget(IFTWidget):
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

    _esm = bundle("k_iterations.js")
    _css = bundle("k_iterations.css")

    k_index = traitlets.Int(0).tag(sync=True)
    _compact_svg = True   # the fallback SVG: text as text, path coordinates rounded

    def __init__(self, k: int = 10, *, k_max: int = 2000, step_size: float | None = None,
                 memory_n: int = 300, **kwargs):
        k_max = check_int("k_max", k_max, 2, _K_MAX_LIMIT)
        k = check_int("k", k, 1, k_max)
        memory_n = check_int("memory_n", memory_n, *_MEMORY_N)
        with jax.enable_x64(True):   # float64 whatever the global JAX setting
            if step_size is not None:
                step_size = check_real("step_size", step_size, "a real number or None")
                bound = 2.0 / _lambda_max(*problem())
                if not 0 < step_size < bound:
                    raise ValueError(f"step_size must be positive and below 2/lambda_max(H) = "
                                     f"{bound:.4g} (gradient descent diverges beyond), got {step_size!r}")
            table = k_iterations_table(k_max, step_size, memory_n)
        k_index = int(np.argmin(np.abs(np.log(table["k"]) - math.log(k))))
        super().__init__(table=table, k_index=k_index, **kwargs)

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

    def _repr_fields(self):
        return [("K", self.k), ("k_max", self.table["k_max"]), ("num_k", len(self.ks)),
                ("memory_n", self.table["memory"]["n"])]

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

    def alt_text(self) -> str:
        return ("Gradient descent on a 2-feature inner problem, the level sets of its objective and "
                "the iterates up to x_K; " + "; ".join(self.readout()) + ".")
