"""Regenerate the book's static figures (SVG) from ift_lib:  python figures/make_figures.py [OUTDIR]

solver_vs_ift.svg: an iterative solver's trajectory from x0 to x* (what reverse-mode autodiff must
store) next to the IFT, which needs only x* and the optimality condition.
"""
from __future__ import annotations

import pathlib
import sys

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ift_lib.plotting import PALETTE, book_style  # noqa: E402

jax.config.update("jax_enable_x64", True)


def heavy_ball_trajectory(A, b, x0, step=0.09, momentum=0.8, num_steps=150):
    """Iterates of heavy-ball gradient descent on 0.5 x^T A x - b^T x (a wiggly, long trace)."""
    def body(carry, _):
        x, v = carry
        v = momentum * v - step * (A @ x - b)
        return (x + v, v), x + v
    _, xs = jax.lax.scan(body, (x0, jnp.zeros_like(x0)), None, length=num_steps)
    return jnp.concatenate([x0[None], xs])


def solver_vs_ift(path: pathlib.Path) -> None:
    A = jnp.array([[3.0, 1.2], [1.2, 1.0]])
    b = jnp.array([1.0, 0.4])
    xs = heavy_ball_trajectory(A, b, jnp.array([-1.6, 1.4]))
    x_star = jnp.linalg.solve(A, b)
    assert float(jnp.linalg.norm(xs[-1] - x_star)) < 1e-3
    with book_style():
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        ax.plot(xs[:, 0], xs[:, 1], "-o", ms=2.5, lw=1.2, color=PALETTE["curve"],
                label=f"solver iterates $x_0, x_1, \\dots, x_K$ ({len(xs) - 1} steps, all stored by reverse-mode AD)")
        ax.annotate("", xy=(float(x_star[0]), float(x_star[1])), xytext=(-1.6, 1.4),
                    arrowprops=dict(arrowstyle="->", ls="--", color=PALETTE["tangent"], lw=1.8))
        ax.plot([], [], "--", color=PALETTE["tangent"],
                label=r"IFT: $dx^*/d\theta$ from $F(\theta, x^*) = 0$ alone")
        ax.scatter([-1.6], [1.4], color=PALETTE["muted"], zorder=5)
        ax.scatter([float(x_star[0])], [float(x_star[1])], color=PALETTE["point"], zorder=5, s=40)
        ax.annotate("$x_0$", (-1.6, 1.4), xytext=(6, 4), textcoords="offset points")
        ax.annotate("$x^*$", (float(x_star[0]), float(x_star[1])), xytext=(6, -12), textcoords="offset points")
        ax.set(xticks=[], yticks=[], xlabel="$x_1$", ylabel="$x_2$")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), fontsize=9)
        fig.savefig(path, format=path.suffix[1:], **({"metadata": {"Date": None}} if path.suffix == ".svg" else {}))
        plt.close(fig)


def main(outdir: str | None = None) -> list[pathlib.Path]:
    out = pathlib.Path(outdir) if outdir else pathlib.Path(__file__).parent
    out.mkdir(parents=True, exist_ok=True)
    path = out / "solver_vs_ift.svg"
    solver_vs_ift(path)
    return [path]


if __name__ == "__main__":
    for p in main(sys.argv[1] if len(sys.argv) > 1 else None):
        print("wrote", p)
