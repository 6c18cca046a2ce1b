"""CircleWidget (Ch. 1): a point dragged on the unit circle theta^2 + x^2 = 1, with the IFT there."""
from __future__ import annotations

import math

import jax
import traitlets
from matplotlib.figure import Figure

from ift_lib.circle import circle_table
from ift_lib.plotting import PALETTE, book_style
from ift_lib.widgets._base import IFTWidget, bundle, check_int, check_real, fmt_fixed

__all__ = ["CircleWidget"]

_MAX_POINTS = 3600   # the table is stored in the notebook and in the page: keep it small
_ARC_DECIMALS = 4    # the arc is only drawn; every displayed number keeps full float64 precision


def _fmt(v: float) -> str:
    """4 decimals with a typographic minus and no '-0.0000' (same rule as circle.js)."""
    return fmt_fixed(v, 4)


class CircleWidget(IFTWidget):
    """Drag a point (theta, x) = (cos phi, sin phi) around the unit circle F = theta^2 + x^2 - 1 = 0.

    Shows the tangent of slope dx/dtheta given by the IFT, the local parameterization x(theta)
    near the point, and a readout of theta, x, dF/dtheta, dF/dx, dx/dtheta; where dF/dx = 0 it
    says the IFT does not apply. Every number comes from :func:`ift_lib.circle.circle_table`,
    computed here at ``num_points`` angles and stored in the widget state (``table``), so the
    JavaScript (``circle.js``) only draws and looks up, and the widget stays live in static HTML.
    ``index`` (the current sample) syncs both ways. Displaying the widget first emits a static
    matplotlib figure of the starting point, which the widget's CSS hides once it renders.

    Args:
        theta_deg: starting angle phi in degrees (snapped to the nearest sample).
        num_points: number of equally spaced samples, a multiple of 4 (so the axis points,
            where the IFT fails, are samples), between 4 and 3600.
    """

    _esm = bundle("circle.js")
    _css = bundle("circle.css")

    index = traitlets.Int(0).tag(sync=True)

    def __init__(self, theta_deg: float = 60.0, num_points: int = 360, **kwargs):
        num_points = check_int("num_points", num_points, 4, _MAX_POINTS)
        if num_points % 4:
            raise ValueError(f"num_points must be a multiple of 4, got {num_points}")
        theta_deg = check_real("theta_deg", theta_deg)
        with jax.enable_x64(True):   # float64 IFT numbers whatever the global JAX setting
            table = circle_table(num_points)
        table["arc_theta"] = [[round(v, _ARC_DECIMALS) for v in a] for a in table["arc_theta"]]
        table["arc_x"] = [[round(v, _ARC_DECIMALS) for v in a] for a in table["arc_x"]]
        index = round(theta_deg / 360.0 * num_points) % num_points
        super().__init__(table=table, index=index, **kwargs)

    @traitlets.validate("index")
    def _wrap_index(self, proposal):
        return proposal["value"] % len(self.table["theta"])   # index is an angle step: wrap around

    # --- the current point (read-only views of the table at `index`) ---
    num_points = property(lambda self: len(self.table["theta"]), doc="Number of samples.")
    theta = property(lambda self: self.table["theta"][self.index], doc="theta = cos(phi).")
    x = property(lambda self: self.table["x"][self.index], doc="x = sin(phi).")
    dF_dtheta = property(lambda self: self.table["dF_dtheta"][self.index], doc="dF/dtheta.")
    dF_dx = property(lambda self: self.table["dF_dx"][self.index], doc="dF/dx.")
    applies = property(lambda self: self.table["applies"][self.index], doc="Does the IFT apply?")
    dx_dtheta = property(lambda self: self.table["dx_dtheta"][self.index],
                         doc="IFT slope dx/dtheta; None where the IFT does not apply.")

    def _repr_fields(self):
        ascii_fmt = lambda v: _fmt(v).replace("\u2212", "-")   # noqa: E731
        return [("index", self.index), ("theta", ascii_fmt(self.theta)), ("x", ascii_fmt(self.x)),
                ("num_points", self.num_points)]

    # --- static fallback ---
    def readout(self) -> list[str]:
        """The panel's lines at the current point (as the JavaScript shows them)."""
        lines = [f"\u03b8 = {_fmt(self.theta)}", f"x = {_fmt(self.x)}",
                 f"\u2202F/\u2202\u03b8 = {_fmt(self.dF_dtheta)}", f"\u2202F/\u2202x = {_fmt(self.dF_dx)}"]
        if self.applies:
            return lines + [f"dx/d\u03b8 = {_fmt(self.dx_dtheta)}"]
        return lines + ["\u2202F/\u2202x = 0: the IFT does not apply here", "(dx/d\u03b8 is not defined)"]

    def fallback_figure(self) -> Figure:
        """A matplotlib figure of what the widget shows at the current point."""
        p, i = PALETTE, self.index
        t0, x0 = self.theta, self.x
        with book_style():
            fig = Figure(figsize=(7.0, 3.6))
            ax = fig.add_axes((0.03, 0.06, 0.5, 0.86))
            ax.set(xlim=(-1.45, 1.45), ylim=(-1.45, 1.45), aspect="equal",
                   xlabel="\u03b8", ylabel="x", xticks=[-1, 0, 1], yticks=[-1, 0, 1])
            ax.yaxis.label.set_rotation(0)
            ax.axhline(0, color=p["muted"], lw=0.8)
            ax.axvline(0, color=p["muted"], lw=0.8)
            ax.plot(self.table["theta"] + [self.table["theta"][0]],
                    self.table["x"] + [self.table["x"][0]], color=p["curve"], lw=1.8)
            if self.applies:
                s = self.dx_dtheta
                d = 0.9 / math.hypot(1.0, s)
                ax.plot([t0 - d, t0 + d], [x0 - s * d, x0 + s * d], color=p["tangent"], lw=1.8)
                ax.plot(self.table["arc_theta"][i], self.table["arc_x"][i], color=p["arc"],
                        lw=5, alpha=0.6, solid_capstyle="round")
            else:
                ax.plot([t0, t0], [x0 - 0.9, x0 + 0.9], color=p["warn"], lw=1.8, ls="--")
            ax.plot([t0], [x0], "o", ms=9, color=p["point"], mec="white", mew=1.5, zorder=5)
            fig.text(0.58, 0.86, "F(\u03b8, x) = \u03b8\u00b2 + x\u00b2 \u2212 1 = 0",
                     color=p["text"], fontsize=12)
            for k, line in enumerate(self.readout()):
                warn = k >= 3 and not self.applies
                fig.text(0.58, 0.72 - 0.09 * k, line, fontsize=11,
                         color=p["warn"] if warn else p["text"])
            fig.text(0.58, 0.04, "static view: the interactive widget did not load",
                     fontsize=9, color=p["muted"])
        return fig

    def alt_text(self) -> str:
        return ("Unit circle with the point " + ", ".join(self.readout()) +
                (", its tangent and the local parameterization x(\u03b8) near it." if self.applies
                 else ", where the tangent is vertical."))
