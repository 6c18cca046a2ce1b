"""Linear solvers for the IFT's linear system  A y = b, as small frozen values.

A solver is a value such as ``Dense()``, ``CG(tol=1e-12)``, ``GMRES(restart=10)``,
``BiCGStab()``, ``Neumann(num_terms=20, step=0.1)`` or ``Identity(scale=0.5)``: validated when
it is made, compared and hashed by value, and called as ``solver(matvec, b) -> y`` where
``matvec`` is a linear map on pytrees shaped like ``b`` (A is never formed, except by Dense).
Strings name the defaults (``"cg"`` is ``CG()``), and ``make_solver("cg", tol=1e-12)`` builds
one from a name and options. Any callable ``solve(matvec, b)`` works where a solver is expected.

``custom_root`` calls the solver with ``A = dF/dx`` (forward mode) or ``A^T`` (reverse mode).
CG and the Neumann series assume that A is symmetric positive definite / a contraction;
custom_root's residual check catches a solve that did not converge.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
import jax.scipy.sparse.linalg as jsp_linalg

PyTree = Any
MatVec = Callable[[PyTree], PyTree]
LinearSolver = Callable[[MatVec, PyTree], PyTree]

__all__ = [
    "Dense", "CG", "GMRES", "BiCGStab", "Neumann", "Identity", "SOLVERS", "make_solver",
    "solve_dense", "solve_cg", "solve_gmres", "solve_bicgstab", "solve_neumann", "materialize",
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


def _is_number(value) -> bool:
    """A Python number (validated when a solver is made); a JAX scalar (e.g. a step size computed
    inside a traced function) is accepted as it is. Anything else is an error."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return True
    if jnp.ndim(value) != 0:
        raise ValueError(f"expected a scalar, got shape {jnp.shape(value)}")
    return False


def _check_tol(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 \
            or math.isnan(value):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")


def _check_count(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or (isinstance(value, int) and value < 1):
        raise ValueError(f"{name} must be an integer >= 1{' or None' if allow_none else ''}, "
                         f"got {value!r}")
    if isinstance(value, int):
        return
    # a JAX integer scalar (e.g. an iteration count traced under jit/vmap) is accepted as it is
    if not (jnp.ndim(value) == 0 and jnp.issubdtype(jnp.result_type(value), jnp.integer)):
        raise ValueError(f"{name} must be an integer >= 1{' or None' if allow_none else ''}, "
                         f"got {value!r}")


@dataclasses.dataclass(frozen=True)
class Dense:
    """Form A (m matvecs) and solve by LU: exact up to rounding; O(m^2) memory, O(m^3) time."""

    def __call__(self, matvec: MatVec, b: PyTree) -> PyTree:
        return solve_dense(matvec, b)


@dataclasses.dataclass(frozen=True)
class _Krylov:
    """Options shared by the Krylov solvers: stop at |r| <= max(tol |b|, atol), or after
    ``maxiter`` iterations (None: JAX's default, 10 m)."""
    tol: float = 1e-10
    atol: float = 0.0
    maxiter: int | None = None

    def __post_init__(self):
        _check_tol("tol", self.tol), _check_tol("atol", self.atol)
        _check_count("maxiter", self.maxiter, allow_none=True)


@dataclasses.dataclass(frozen=True)
class CG(_Krylov):
    """Conjugate gradients (A symmetric positive definite)."""

    def __call__(self, matvec: MatVec, b: PyTree) -> PyTree:
        return solve_cg(matvec, b, tol=self.tol, atol=self.atol, maxiter=self.maxiter)


@dataclasses.dataclass(frozen=True)
class GMRES(_Krylov):
    """Restarted GMRES (any nonsingular A), Krylov spaces of dimension ``restart``."""
    restart: int = 20

    def __post_init__(self):
        super().__post_init__()
        _check_count("restart", self.restart)

    def __call__(self, matvec: MatVec, b: PyTree) -> PyTree:
        return solve_gmres(matvec, b, tol=self.tol, atol=self.atol, restart=self.restart,
                           maxiter=self.maxiter)


@dataclasses.dataclass(frozen=True)
class BiCGStab(_Krylov):
    """BiCGStab (any nonsingular A; short recurrences). It can break down (rho = 0)."""

    def __call__(self, matvec: MatVec, b: PyTree) -> PyTree:
        return solve_bicgstab(matvec, b, tol=self.tol, atol=self.atol, maxiter=self.maxiter)


@dataclasses.dataclass(frozen=True)
class Neumann:
    """Truncated Neumann series  A^{-1} b ~= step * sum_{k<num_terms} (I - step A)^k b
    (``step`` a number, or a JAX scalar computed in a traced function)."""
    num_terms: int = 50
    step: float = 1.0

    def __post_init__(self):
        _check_count("num_terms", self.num_terms)
        if _is_number(self.step) and not (self.step > 0 and math.isfinite(self.step)):
            raise ValueError(f"step must be a finite number > 0, got {self.step!r}")

    def __call__(self, matvec: MatVec, b: PyTree) -> PyTree:
        return solve_neumann(matvec, b, num_terms=self.num_terms, step=self.step)


@dataclasses.dataclass(frozen=True)
class Identity:
    """A^{-1} b ~= scale * b: the Neumann series' first term, no matvec at all (a crude
    approximation, e.g. the "one step" hypergradient; pair it with ``solve_rtol=math.inf``)."""
    scale: float = 1.0

    def __post_init__(self):
        if _is_number(self.scale) and not (math.isfinite(self.scale) and self.scale != 0):
            raise ValueError(f"scale must be a finite nonzero number, got {self.scale!r}")

    def __call__(self, matvec: MatVec, b: PyTree) -> PyTree:
        return jax.tree.map(lambda l: self.scale * l, b)


#: The string shortcuts: each name stands for its solver with default options.
SOLVERS: dict[str, LinearSolver] = {
    "dense": Dense(), "cg": CG(), "gmres": GMRES(), "bicgstab": BiCGStab(),
    "neumann": Neumann(), "identity": Identity(),
}


def make_solver(solve: str | LinearSolver = "dense", **options) -> LinearSolver:
    """A solver from a name in :data:`SOLVERS` and its options, or a solver / callable as is.

    >>> make_solver("cg", tol=1e-12)                  # CG(tol=1e-12)
    >>> make_solver("neumann", num_terms=20, step=0.1)
    """
    if not isinstance(solve, str):
        if not callable(solve):
            raise TypeError(f"a linear solver is a name in {sorted(SOLVERS)} or a callable "
                            f"solve(matvec, b) -> y, got {solve!r}")
        if not options:
            return solve
        if dataclasses.is_dataclass(solve):
            return dataclasses.replace(solve, **options)
        return functools.partial(solve, **options)
    if solve not in SOLVERS:
        raise ValueError(f"unknown linear solver {solve!r}; choose one of {sorted(SOLVERS)} "
                         "or pass a callable solve(matvec, b) -> y")
    if not options:
        return SOLVERS[solve]
    try:
        return dataclasses.replace(SOLVERS[solve], **options)
    except TypeError as e:
        raise TypeError(f"invalid option for the {solve!r} solver: {e}") from None
