"""SoftmaxWidget (Ch. 2): softmax vs sparsemax of theta / T, their outputs and their Jacobians."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import traitlets
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure

from ift_lib.plotting import PALETTE, book_style
from ift_lib.softmax import softmax, sparsemax, sparsemax_threshold
from ift_lib.widgets._base import IFTWidget, bundle, check_int, check_real, fmt_fixed, round_sig

__all__ = ["SoftmaxWidget", "PRESETS"]

N = 5                      # length of every score vector theta
_MAX_TEMPERATURES = 121    # the table is stored in the notebook and in the page: keep it small
_T_BOUNDS = (1e-3, 1e3)    # allowed temperature range
_THETA_MAX = 1e6           # largest |theta_i| accepted (theta / T stays far from overflow)
_T_DIGITS = 4              # temperatures are rounded to 4 significant digits: the grid IS those values
_JAC_DIGITS = 4            # Jacobians are only drawn (colour, 2-decimal label, 4-digit tooltip)
_JAC_SCALE_MIN = 0.05      # the heatmaps' colour scale is +-max(largest |entry|, this): near one-hot
                           # states (all entries ~0) then stay white instead of saturating

#: Built-in score vectors (name -> (button label, theta)); a ``theta=`` argument adds "yours".
PRESETS = {
    "spread": ("spread", (1.2, 0.3, -0.5, 0.9, -1.4)),
    "tie": ("a tie", (0.8, 0.8, 0.3, -0.4, -1.0)),
    "dominant": ("one dominant", (3.0, 0.2, 0.0, -0.5, -1.0)),
}
CUSTOM = ("yours", "your \u03b8")


def _fmt_t(t: float) -> str:
    """A temperature for reading: 3 significant digits, no exponent (same rule as softmax.js)."""
    return f"{float(f'{t:.3g}'):g}"


_fmt = fmt_fixed          # fixed decimals, typographic minus (as fmt in softmax.js)


def _check_theta(theta) -> tuple[float, ...]:
    """theta as 5 finite floats; TypeError for what is not a sequence of real numbers."""
    bad_type = TypeError(f"theta must be a sequence of {N} real numbers, got {theta!r}")
    if isinstance(theta, (str, bytes, dict)):
        raise bad_type
    try:
        arr = np.asarray(theta)
    except (TypeError, ValueError):
        raise bad_type from None
    if arr.ndim == 0 or arr.dtype.kind not in "iuf":
        raise bad_type
    if arr.shape != (N,):
        raise ValueError(f"theta must have exactly {N} entries (one score per bar), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"theta must be finite, got {arr.tolist()}")
    if np.max(np.abs(arr)) > _THETA_MAX:
        raise ValueError(f"theta's entries must be at most {_THETA_MAX:g} in absolute value "
                         f"(theta / T must stay far from overflow), got {arr.tolist()}")
    return tuple(float(v) for v in arr)


def _temperature_grid(t_min: float, t_max: float, num_temperatures: int) -> np.ndarray:
    """``num_temperatures`` log-spaced values from t_min to t_max, rounded to 4 significant digits."""
    raw = np.geomspace(t_min, t_max, num_temperatures)
    grid = np.array([float(f"{t:.{_T_DIGITS - 1}e}") for t in raw])
    if np.any(np.diff(grid) <= 0):
        raise ValueError(f"num_temperatures={num_temperatures} is too many for [{t_min}, {t_max}]: "
                         f"temperatures rounded to {_T_DIGITS} significant digits would repeat")
    return grid


def _at(theta, t):
    """softmax(theta/t), sparsemax(theta/t), tau(theta/t) and d/dtheta of the first two (1/t included)."""
    soft = lambda th: softmax(th / t)      # noqa: E731
    sparse = lambda th: sparsemax(th / t)  # noqa: E731
    return (soft(theta), sparse(theta), sparsemax_threshold(theta / t),
            jax.jacobian(soft)(theta), jax.jacobian(sparse)(theta))


# Over presets (rows of theta) and temperatures; compiled once per table shape.
_grid = jax.jit(jax.vmap(jax.vmap(_at, in_axes=(None, 0)), in_axes=(0, None)))


def _grid_values(thetas: np.ndarray, temperatures: np.ndarray) -> tuple[np.ndarray, ...]:
    """:func:`_at` for every theta (rows of ``thetas``) and every T: arrays of shape (P, K, ...)."""
    with jax.enable_x64(True):   # float64 whatever the global JAX setting
        out = _grid(jnp.asarray(thetas, dtype=jnp.float64), jnp.asarray(temperatures, dtype=jnp.float64))
        return tuple(np.asarray(o, dtype=np.float64) for o in out)


def softmax_table(presets: dict, temperatures) -> dict:
    """Everything the widget shows, JSON-ready: ``temperatures`` and one entry per preset with
    name, label, theta and, per temperature, softmax / sparsemax (full float64), tau, support_size,
    jac_softmax / jac_sparsemax (5x5, rounded to 4 significant digits: they are only drawn)."""
    names = list(presets)
    thetas = np.array([presets[k][1] for k in names], dtype=np.float64)
    temperatures = np.asarray(temperatures, dtype=np.float64)
    soft, sparse, tau, jac_soft, jac_sparse = values = _grid_values(thetas, temperatures)
    if not all(np.all(np.isfinite(v)) for v in values):   # the state must be valid JSON
        raise ValueError("softmax_table: non-finite values; check theta and the temperatures")
    rows = []
    for p, name in enumerate(names):
        rows.append({
            "name": name, "label": presets[name][0], "theta": thetas[p].tolist(),
            "softmax": soft[p].tolist(), "sparsemax": sparse[p].tolist(), "tau": tau[p].tolist(),
            "support_size": (sparse[p] > 0).sum(axis=-1).tolist(),
            "jac_softmax": round_sig(jac_soft[p], _JAC_DIGITS),
            "jac_sparsemax": round_sig(jac_sparse[p], _JAC_DIGITS),
        })
    return {"n": N, "temperatures": temperatures.tolist(), "jac_scale_min": _JAC_SCALE_MIN,
            "presets": rows}


class SoftmaxWidget(IFTWidget):
    """softmax(theta / T) next to sparsemax(theta / T) for a 5-score vector theta, as the temperature
    T moves: bar charts of both outputs (sparsemax's zeros greyed, its support S and threshold tau
    shown) and heatmaps of both Jacobians with respect to theta,

        d softmax(theta/T) / d theta   = (diag(z) - z z^T) / T               (dense),
        d sparsemax(theta/T) / d theta = (diag(s) - s s^T / |S|) / T         (zero outside S),

    where z = softmax(theta/T) and s is the indicator of S. Both Jacobians are taken with respect to
    theta, so they include the factor 1/T. Every number is computed here by
    :func:`ift_lib.softmax.softmax`, :func:`~ift_lib.softmax.sparsemax`,
    :func:`~ift_lib.softmax.sparsemax_threshold` and ``jax.jacobian`` of them (float64) on a
    log-spaced grid of temperatures for each preset theta, and stored in the widget state
    (``table``), so the JavaScript (``softmax.js``) only draws and looks up and the widget stays
    live in static HTML. ``preset`` and ``t_index`` (the current preset and temperature) sync both
    ways. Displaying the widget first emits a static matplotlib figure of the starting state, which
    the widget's CSS hides once it renders.

    Args:
        theta: optional 5 finite scores (|theta_i| <= 1e6), added as the last preset, "yours".
        preset: the starting preset's name ("spread", "tie", "dominant", or "yours");
            default "yours" if ``theta`` is given, else "spread".
        temperature: starting T, snapped to the nearest grid value (in log scale).
        t_min, t_max: ends of the grid, 0.001 <= t_min < t_max <= 1000.
        num_temperatures: grid size, an int from 2 to 121. Temperatures are rounded to 4
            significant digits (those rounded values are the ones used).
    """

    _esm = bundle("softmax.js")
    _css = bundle("softmax.css")

    preset = traitlets.Int(0).tag(sync=True)
    t_index = traitlets.Int(0).tag(sync=True)

    def __init__(self, theta=None, *, preset: str | None = None, temperature: float = 1.0,
                 t_min: float = 0.05, t_max: float = 20.0, num_temperatures: int = 41, **kwargs):
        num_temperatures = check_int("num_temperatures", num_temperatures, 2, _MAX_TEMPERATURES)
        t_min, t_max = check_real("t_min", t_min), check_real("t_max", t_max)
        temperature = check_real("temperature", temperature)
        lo, hi = _T_BOUNDS
        if not lo <= t_min < t_max <= hi:
            raise ValueError(f"need {lo:g} <= t_min < t_max <= {hi:g}, got t_min={t_min!r}, "
                             f"t_max={t_max!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        presets = dict(PRESETS)
        if theta is not None:
            presets[CUSTOM[0]] = (CUSTOM[1], _check_theta(theta))
        if preset is None:
            preset = CUSTOM[0] if theta is not None else "spread"
        if not isinstance(preset, str):
            raise TypeError(f"preset must be a str, got {preset!r}")
        if preset not in presets:
            raise ValueError(f"unknown preset {preset!r}; choose one of {list(presets)}"
                             + ("" if theta is not None else " (or pass theta=...)"))
        temperatures = _temperature_grid(t_min, t_max, int(num_temperatures))
        table = softmax_table(presets, temperatures)
        t_index = int(np.argmin(np.abs(np.log(temperatures) - math.log(temperature))))
        super().__init__(table=table, preset=list(presets).index(preset), t_index=t_index, **kwargs)

    @traitlets.validate("preset")
    def _check_preset(self, proposal):
        k, count = proposal["value"], len(self.table["presets"])
        if not 0 <= k < count:
            raise traitlets.TraitError(f"preset must be an index from 0 to {count - 1}, got {k}")
        return k

    @traitlets.validate("t_index")
    def _check_t_index(self, proposal):
        k, count = proposal["value"], len(self.table["temperatures"])
        if not 0 <= k < count:
            raise traitlets.TraitError(f"t_index must be from 0 to {count - 1}, got {k}")
        return k

    # --- the current state (read-only views of the table at `preset`, `t_index`) ---
    def _row(self, key):
        return self.table["presets"][self.preset][key][self.t_index]

    preset_names = property(lambda self: [p["name"] for p in self.table["presets"]],
                            doc="Names of the presets, in button order.")
    preset_name = property(lambda self: self.table["presets"][self.preset]["name"],
                           doc="Name of the current preset.")
    theta = property(lambda self: self.table["presets"][self.preset]["theta"], doc="Current theta.")
    temperatures = property(lambda self: self.table["temperatures"], doc="The temperature grid.")
    temperature = property(lambda self: self.table["temperatures"][self.t_index], doc="Current T.")
    softmax = property(lambda self: self._row("softmax"), doc="softmax(theta / T), float64.")
    sparsemax = property(lambda self: self._row("sparsemax"), doc="sparsemax(theta / T), float64.")
    tau = property(lambda self: self._row("tau"), doc="Threshold tau of sparsemax(theta / T).")
    support_size = property(lambda self: self._row("support_size"), doc="|S|, sparsemax's support.")
    jac_softmax = property(lambda self: self._row("jac_softmax"),
                           doc="d softmax(theta/T) / d theta (5x5, 4 significant digits).")
    jac_sparsemax = property(lambda self: self._row("jac_sparsemax"),
                             doc="d sparsemax(theta/T) / d theta (5x5, 4 significant digits).")

    def _repr_fields(self):
        return [("preset", repr(self.preset_name)), ("T", _fmt_t(self.temperature)),
                ("support_size", self.support_size), ("num_temperatures", len(self.temperatures))]

    # --- static fallback ---
    def readout(self) -> list[str]:
        """One-line summaries of the current state (the figure's title and the image's alt text)."""
        support = [k + 1 for k, v in enumerate(self.sparsemax) if v > 0]
        return [
            f"\u03b8 = ({', '.join(_fmt(v, 2) for v in self.theta)}), T = {_fmt_t(self.temperature)}",
            f"softmax(\u03b8/T) = ({', '.join(_fmt(v) for v in self.softmax)})",
            f"sparsemax(\u03b8/T) = ({', '.join(_fmt(v) for v in self.sparsemax)})",
            f"support S = {{{', '.join(map(str, support))}}}, |S| = {self.support_size}, "
            f"\u03c4 = {_fmt(self.tau, 3)}",
        ]

    def fallback_figure(self) -> Figure:
        """A matplotlib figure of what the widget shows in its current state."""
        p = PALETTE
        idx = np.arange(1, N + 1)
        on = np.asarray(self.sparsemax) > 0
        jac = [np.asarray(self.jac_softmax), np.asarray(self.jac_sparsemax)]
        vmax = max(max(float(np.abs(j).max()) for j in jac), _JAC_SCALE_MIN)
        cmap = LinearSegmentedColormap.from_list("ift_div", [p["point"], "#ffffff", p["tangent"]])
        with book_style():
            fig = Figure(figsize=(7.0, 6.6))
            fig.text(0.02, 0.98, f"preset \u201c{self.table['presets'][self.preset]['label']}\u201d:  "
                     + self.readout()[0], color=p["text"], fontsize=11, va="top")
            bars = [fig.add_axes((0.08, 0.6, 0.38, 0.29)), fig.add_axes((0.58, 0.6, 0.38, 0.29))]
            notes = ["every z\u1d62 > 0",
                     f"|S| = {self.support_size} of {N},  \u03c4 = {_fmt(self.tau, 3)}"]
            for ax, values, title, colour, note in (
                    (bars[0], self.softmax, "softmax(\u03b8/T)", p["curve"], notes[0]),
                    (bars[1], self.sparsemax, "sparsemax(\u03b8/T)", p["arc"], notes[1])):
                colours = [colour] * N if ax is bars[0] else [colour if o else p["grid"] for o in on]
                ax.set_axisbelow(True)
                ax.bar(idx, values, color=colours, width=0.64)
                ax.set(ylim=(0, 1.12), xticks=idx, yticks=[0, 0.5, 1])
                ax.set_title(title, fontsize=11, pad=16)
                ax.text(0.5, 1.02, note, transform=ax.transAxes, ha="center", fontsize=9,
                        color=p["muted"])
                ax.grid(axis="x", visible=False)
                for i, v in zip(idx, values):
                    zero = ax is bars[1] and v == 0
                    label = "0" if zero else ("<0.01" if v < 0.005 else _fmt(v))
                    ax.text(i, v + 0.03, label, ha="center", fontsize=8.5,
                            color=p["muted"] if zero else p["text"])
            heat = [fig.add_axes((0.07, 0.15, 0.34, 0.34)), fig.add_axes((0.47, 0.15, 0.34, 0.34))]
            for ax, j, title in zip(heat, jac, ("\u2202 softmax(\u03b8/T) / \u2202\u03b8",
                                                "\u2202 sparsemax(\u03b8/T) / \u2202\u03b8")):
                image = ax.imshow(j, cmap=cmap, vmin=-vmax, vmax=vmax)
                ax.set(xticks=range(N), yticks=range(N), xticklabels=[f"\u03b8{chr(0x2080 + k)}" for k in idx],
                       yticklabels=idx)
                ax.set_title(title, fontsize=11)
                ax.tick_params(length=0, labelsize=9)
                ax.grid(False)
                for (r, c), v in np.ndenumerate(j):
                    strong = abs(v) / vmax > 0.55
                    label = "0" if v == 0 else ("\u22480" if abs(v) < 0.005 else
                                                _fmt(v, 1 if abs(v) >= 9.995 else 2))
                    ax.text(c, r, label, ha="center", va="center", fontsize=7.5,
                            color="#ffffff" if strong else (p["muted"] if v == 0 else p["text"]))
            bar = fig.colorbar(image, cax=fig.add_axes((0.85, 0.15, 0.018, 0.34)))
            bar.set_ticks([-vmax, 0, vmax])
            bar.set_ticklabels([_fmt(-vmax), "0", "+" + _fmt(vmax)])
            bar.ax.tick_params(labelsize=9)
            fig.text(0.02, 0.05, "Jacobians with respect to \u03b8 (they include the factor 1/T), one "
                     "colour scale.\nsoftmax: (diag(z) \u2212 zz\u1d40)/T is dense;  sparsemax: "
                     "(diag(s) \u2212 ss\u1d40/|S|)/T is zero outside the support S.",
                     fontsize=9, color=p["text"], linespacing=1.4)
            fig.text(0.02, 0.01, "static view: the interactive widget did not load",
                     fontsize=9, color=p["muted"])
        return fig

    def alt_text(self) -> str:
        return ("Bar charts of softmax and sparsemax at " + "; ".join(self.readout()) +
                "; and heatmaps of their Jacobians with respect to \u03b8 (softmax's is dense, "
                "sparsemax's is zero outside the support).")
