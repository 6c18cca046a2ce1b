"""The IFT's conditions at one point, measured: ``check_ift``, ``IFTReport``, ``ift_diagnostics``.

For F(x, params) = 0 with m equations in m unknowns, the IFT gives a unique, differentiable
x*(params) near a point when

  1. x solves F(x, params) = 0                      (checked: max |F| <= residual_tol),
  2. F is continuously differentiable there          (assumed, not tested),
  3. dF/dx is nonsingular                           (checked: sigma_min > rank_rtol * scale).

These functions form dF/dx densely and take its singular values: they are for inspection,
tests and explaining a failure. ``custom_root`` checks the same conditions far more cheaply
while it differentiates (see :mod:`ift_lib.implicit`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ift_lib._checks import (IFTConditionError, default_rank_rtol, default_residual_tol,
                             nonsingular)
from ift_lib.bounds import ceil_pow10, fmt_bounded

PyTree = Any

__all__ = ["check_ift", "IFTReport", "IFTConditionError", "ift_diagnostics", "jacobian_in_x",
           "check_shapes"]


def check_shapes(fx: PyTree, x: PyTree) -> None:
    """Raise ValueError unless F(x, ...) has the structure and shapes of x (m equations for m
    unknowns)."""
    shapes_x = [jnp.shape(l) for l in jax.tree.leaves(x)]
    shapes_f = [jnp.shape(l) for l in jax.tree.leaves(fx)]
    sx, sf = jax.tree.structure(x), jax.tree.structure(fx)
    if sx != sf or shapes_x != shapes_f:
        raise ValueError(
            "optimality_fn(x, *params) must return a pytree with the same structure and shapes "
            f"as x (one equation per unknown): x has {sx} with shapes {shapes_x}, "
            f"optimality_fn returned {sf} with shapes {shapes_f}")


def jacobian_in_x(optimality_fn: Callable, x: PyTree, *params) -> jax.Array:
    """dF/dx as a dense (m, m) matrix, m = size of x: rows are the equations of
    ``optimality_fn(x, *params)`` and columns the unknowns, both flattened leaf by leaf in
    pytree order (``ravel_pytree``). For inspection and small problems (forms the matrix)."""
    flat_x, unravel_x = ravel_pytree(x)
    return jax.jacfwd(lambda v: ravel_pytree(optimality_fn(unravel_x(v), *params))[0])(flat_x)


def ift_diagnostics(optimality_fn: Callable, x: PyTree, *params):
    """Traceable (jit, vmap) measurements of the IFT's conditions at (x, params).

    Returns (residual, sigma_min, sigma_max, scale): max |F|, the extreme singular values of
    dF/dx (m x m), and scale = the largest singular value of the whole Jacobian
    [dF/dx, dF/dparams], computed as sqrt(lambda_max(Jx Jx^T + Jp Jp^T)) with Jp Jp^T formed by
    m products (never the m x size(params) matrix Jp itself).
    """
    flat_x, unravel_x = ravel_pytree(x)
    F_x = lambda v: ravel_pytree(optimality_fn(unravel_x(v), *params))[0]
    fval = F_x(flat_x)
    Jx = jax.jacfwd(F_x)(flat_x)
    s = jnp.linalg.svd(Jx, compute_uv=False)
    gram = Jx @ Jx.T
    inexact = [i for i, p in enumerate(params)
               if all(jnp.issubdtype(jnp.result_type(l), jnp.inexact) for l in jax.tree.leaves(p))
               and jax.tree.leaves(p)]
    if inexact:
        def F_p(*ps):
            full = list(params)
            for i, p in zip(inexact, ps):
                full[i] = p
            return ravel_pytree(optimality_fn(x, *full))[0]
        primals = tuple(params[i] for i in inexact)
        _, vjp = jax.vjp(F_p, *primals)
        JpJpT_col = lambda u: jax.jvp(F_p, primals, vjp(u))[1]
        gram = gram + jax.vmap(JpJpT_col)(jnp.eye(fval.size, dtype=fval.dtype)).T
    scale = jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(0.5 * (gram + gram.T))[-1], 0.0))
    residual = jnp.max(jnp.abs(fval)) if fval.size else jnp.zeros((), flat_x.dtype)
    return residual, s[-1], s[0], scale


@dataclasses.dataclass(frozen=True)
class IFTReport:
    """What ``check_ift`` found at a point (x, params) of F(x, params) = 0.

    residual:   max |F(x, params)|                     (condition 1: x solves F = 0)
    sigma_min:  smallest singular value of dF/dx      (condition 3: dF/dx nonsingular)
    scale:      largest singular value of [dF/dx, dF/dparams]
    cond:       sigma_max(dF/dx) / sigma_min(dF/dx)
    Condition 2 (F continuously differentiable) is assumed, not tested. Its text prints values
    at rounding level as the bound they fall below, so it reads the same on every CPU.
    """
    residual: float
    residual_tol: float
    sigma_min: float
    sigma_max: float
    scale: float
    rank_rtol: float
    m: int

    @property
    def cond(self) -> float:
        return float("inf") if self.sigma_min == 0 else self.sigma_max / self.sigma_min

    @property
    def is_solution(self) -> bool:
        return bool(np.isfinite(self.residual) and self.residual <= self.residual_tol)

    @property
    def jacobian_nonsingular(self) -> bool:
        return bool(nonsingular(np.float64(self.sigma_min), np.float64(self.scale), self.rank_rtol))

    @property
    def applies(self) -> bool:
        """True when the IFT's conditions 1 and 3 hold, so dx*/dparams exists and is unique."""
        return self.is_solution and self.jacobian_nonsingular

    def _fmt_sigma_min(self) -> str:
        threshold = self.rank_rtol * self.scale
        if self.jacobian_nonsingular or np.isnan(self.sigma_min) or not threshold > 0:
            return f"= {self.sigma_min:.2e}"
        return f"< {ceil_pow10(threshold):.0e}"

    def _fmt_cond(self) -> str:
        threshold = self.rank_rtol * self.scale
        if self.jacobian_nonsingular:
            return f"= {self.cond:.2e}"
        if threshold > 0 and self.sigma_max > 0:
            return f"> {10.0 ** np.floor(np.log10(self.sigma_max / ceil_pow10(threshold))):.0e}"
        return "= inf"

    @property
    def failure(self) -> str | None:
        """A sentence naming the first failed IFT condition, or None."""
        if not self.is_solution:
            return (f"IFT condition 1 failed: x does not solve optimality_fn(x, *params) = 0 "
                    f"(max |F| = {self.residual:.2e} > residual_tol = {self.residual_tol:.1e}); "
                    "the solver has not converged or the point is not a solution")
        if not self.jacobian_nonsingular:
            return (f"IFT condition 3 failed: dF/dx is singular at the solution "
                    f"(smallest singular value {self._fmt_sigma_min()}, at most rank_rtol "
                    f"{self.rank_rtol:.1e} x scale {self.scale:.2e}); "
                    "the IFT gives no derivative here")
        return None

    def raise_if_failed(self) -> "IFTReport":
        if self.failure is not None:
            raise IFTConditionError(self.failure)
        return self

    def __str__(self) -> str:
        verdict = "applies" if self.applies else "does NOT apply"
        floor = min(1e3 * np.finfo(float).eps * max(1.0, self.scale), self.residual_tol)
        res = fmt_bounded(self.residual, floor)
        res = res if res.startswith("<") else f"= {res}"
        return (f"IFT {verdict}: max|F| {res} (tol {self.residual_tol:.1e}), "
                f"sigma_min(dF/dx) {self._fmt_sigma_min()}, cond(dF/dx) {self._fmt_cond()}, "
                f"m = {self.m}")


def check_ift(optimality_fn: Callable, x: PyTree, *params, residual_tol: float | None = None,
              rank_rtol: float | None = None) -> IFTReport:
    """Measure the IFT's conditions for ``optimality_fn(x, *params) = 0`` at one point.

    Args:
      optimality_fn: F(x, *params) -> a pytree shaped like x.
      x: the candidate solution (a pytree of m numbers in all).
      *params: the parameters.
      residual_tol: condition 1's bound on max |F| (None: sqrt(eps)).
      rank_rtol: condition 3's bound sigma_min > rank_rtol * scale (None: 100 m eps).
    Returns:
      An :class:`IFTReport`; ``.raise_if_failed()`` turns a failure into an
      :class:`IFTConditionError`. Forms dF/dx (m x m): for inspection, not hot loops.
    """
    check_shapes(optimality_fn(x, *params), x)
    m = int(ravel_pytree(x)[0].size)
    residual, smin, smax, scale = ift_diagnostics(optimality_fn, x, *params)
    return IFTReport(
        residual=float(residual),
        residual_tol=default_residual_tol(x) if residual_tol is None else float(residual_tol),
        sigma_min=float(smin), sigma_max=float(smax), scale=float(scale),
        rank_rtol=default_rank_rtol(x, m) if rank_rtol is None else float(rank_rtol), m=m)
