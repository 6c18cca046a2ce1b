"""Linear solvers for the IFT's linear system  A y = b.

Every solver has the signature ``solve(matvec, b) -> y`` where ``matvec`` is a
linear map on pytrees shaped like ``b`` (so ``A`` never has to be formed), and
the keyword options are bound with :func:`make_solver`::

    solve = make_solver("cg", tol=1e-12, maxiter=500)
    y = solve(matvec, b)

``custom_root`` calls the chosen solver twice: with ``A = dF/dx`` for forward
mode and with ``A^T`` for reverse mode. CG and the Neumann series assume that
the operator they receive is symmetric positive definite / a contraction; the
residual check in :mod:`ift_lib.implicit` catches a solve that did not converge.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
import jax.scipy.sparse.linalg as jsp_linalg

PyTree = Any
MatVec = Callable[[PyTree], PyTree]
LinearSolver = Callable[[MatVec, PyTree], PyTree]

__all__ = [
    "solve_dense", "solve_cg", "solve_gmres", "solve_bicgstab", "solve_neumann",
    "make_solver", "SOLVERS", "materialize",
]


def materialize(matvec: MatVec, b: PyTree) -> jax.Array:
    """The (m, m) matrix of ``matvec`` in the flat coordinates of ``b`` (m = b's size)."""
    flat_b, unravel = ravel_pytree(b)
    flat_mv = lambda v: ravel_pytree(matvec(unravel(v)))[0]
    return jax.jacfwd(flat_mv)(jnp.zeros_like(flat_b))


def solve_dense(matvec: MatVec, b: PyTree) -> PyTree:
    """Form A column by column (m matvecs) and solve with LU: exact, O(m^2) memory, O(m^3) time."""
    flat_b, unravel = ravel_pytree(b)
    A = materialize(matvec, b)
    return unravel(jnp.linalg.solve(A, flat_b))


def solve_cg(matvec: MatVec, b: PyTree, *, tol: float = 1e-10, atol: float = 0.0,
             maxiter: int | None = None, init: PyTree | None = None) -> PyTree:
    """Conjugate gradients (A symmetric positive definite). Stops at |r| <= max(tol*|b|, atol)."""
    return jsp_linalg.cg(matvec, b, x0=init, tol=tol, atol=atol, maxiter=maxiter)[0]


def solve_gmres(matvec: MatVec, b: PyTree, *, tol: float = 1e-10, atol: float = 0.0,
                restart: int = 20, maxiter: int | None = None,
                init: PyTree | None = None) -> PyTree:
    """Restarted GMRES (any nonsingular A). Solves for b / |b| and scales back: JAX's gmres
    returns 0 for any b with |b| below machine epsilon, which would be a wrong answer for a
    legitimately tiny right-hand side (e.g. a cotangent of 1e-20); ``atol`` is in b's units."""
    flat_b, _ = ravel_pytree(b)
    norm = jnp.linalg.norm(flat_b)
    scale = jnp.where(norm > 0, norm, jnp.ones_like(norm))
    unit = lambda tree: jax.tree.map(lambda l: l / scale.astype(l.dtype), tree)
    y = jsp_linalg.gmres(matvec, unit(b), x0=None if init is None else unit(init), tol=tol,
                         atol=atol / scale, restart=restart, maxiter=maxiter,
                         solve_method="batched")[0]
    return jax.tree.map(lambda l: l * scale.astype(l.dtype), y)


def solve_bicgstab(matvec: MatVec, b: PyTree, *, tol: float = 1e-10, atol: float = 0.0,
                   maxiter: int | None = None, init: PyTree | None = None) -> PyTree:
    """BiCGStab (any nonsingular A; short recurrences, less memory than GMRES)."""
    return jsp_linalg.bicgstab(matvec, b, x0=init, tol=tol, atol=atol, maxiter=maxiter)[0]


def solve_neumann(matvec: MatVec, b: PyTree, *, num_terms: int = 50,
                  step: float = 1.0) -> PyTree:
    """Truncated Neumann series (Lorraine et al., 2019):

        A^{-1} b  ~=  step * sum_{k=0}^{num_terms-1} (I - step*A)^k b,

    which converges iff the spectral radius of (I - step*A) is below 1 (for A
    symmetric positive definite: 0 < step < 2 / lambda_max(A)). The error after
    K terms is (I - step*A)^K A^{-1} b.
    """
    def body(_, carry):
        acc, term = carry
        acc = jax.tree.map(jnp.add, acc, term)
        Aterm = matvec(term)
        term = jax.tree.map(lambda t, a: t - step * a, term, Aterm)
        return acc, term

    zeros = jax.tree.map(jnp.zeros_like, b)
    acc, _ = jax.lax.fori_loop(0, num_terms, body, (zeros, b))
    return jax.tree.map(lambda a: step * a, acc)


SOLVERS: dict[str, Callable[..., PyTree]] = {
    "dense": solve_dense,
    "cg": solve_cg,
    "gmres": solve_gmres,
    "bicgstab": solve_bicgstab,
    "neumann": solve_neumann,
}


def make_solver(solve: str | LinearSolver = "dense", **options) -> LinearSolver:
    """A ``solve(matvec, b)`` from a name in :data:`SOLVERS` (or a callable) and its options.

    >>> make_solver("cg", tol=1e-12)          # CG to a relative residual of 1e-12
    >>> make_solver("neumann", num_terms=20, step=0.1)
    """
    if callable(solve):
        return functools.partial(solve, **options) if options else solve
    if solve not in SOLVERS:
        raise ValueError(f"unknown linear solver {solve!r}; choose one of {sorted(SOLVERS)} "
                         "or pass a callable solve(matvec, b) -> y")
    fn = SOLVERS[solve]
    if options:
        try:
            import inspect
            inspect.signature(fn).bind(None, None, **options)
        except TypeError as e:
            raise TypeError(f"invalid option for the {solve!r} solver: {e}") from None
        return functools.partial(fn, **options)
    return fn
