"""Dense symmetric positive definite solves for ``ift_lib.qp`` (public names of a private module).

Every matrix ``ift_lib.qp`` factorizes is symmetric positive definite (the Newton system and the
active-set KKT matrix are reduced to such blocks, see ``ift_lib._qp_ipm`` and ``ift_lib.qp``), and
is factorized by jaxlib's (LAPACK) Cholesky, which batches under vmap:

    cholesky(H, role) -> L            H = L L' (k, k), lower; NaN when H is not positive definite
    inverse_cholesky(H, role) -> M    M = L^-1 (k, k), lower (one triangular solve with I)
    cho_solve(M, B)                   H^-1 B = M'M B for B (k,) or (k, r): matrix products
    min_pivot(L)                      min_j L_jj^2, the smallest pivot of H = L D L' (NaN if failed)

The solves multiply by M = L^-1 instead of calling a triangular solve per right-hand side: XLA
fuses and batches the products, and a factorization is one LAPACK call chained to the next (see
below). Where M's rounding errors matter (near an interior point's solution) the callers refine.

A deadlock, and how it is avoided: jaxlib's batched LAPACK kernels (jax 0.10.2: Cholesky, LU,
triangular solve, ...) split a large batch over XLA's intra-op thread pool
(``jax::ParallelBatchMap``) and then block the calling pool thread until the pieces are done.
When two such calls run at the same time, each on one of the pool's threads (2 threads on a
2-core machine), both wait for pieces that no free thread can run: the program hangs (seen at 64
QPs of n = 50: two independent Cholesky factorizations, or an LU next to a Cholesky; gdb shows
both pool threads in ``BlockingCounter::Wait`` under ``ParallelBatchMap``). A single call, or
calls in a chain, cannot deadlock, so here every LAPACK call depends on the previous one: within a
factorization by construction (Cholesky, then the inverse of its factor), between factorizations
by ``after`` (a data dependency). jax 0.11.2 compiles this parallel path out.
``benchmarks/jaxlib_lapack_deadlock.py`` reproduces the hang with two threads and one jitted
batched Cholesky.

``recording_factorizations()`` lists the matrices factorized while a function is traced, by role:
how Chapter 3 and the tests show that a gradient adds a fixed number of factorizations and
nothing per iteration.
"""
from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp

__all__ = ["cholesky", "inverse_cholesky", "cho_solve", "min_pivot", "after",
           "recording_factorizations", "ROLES"]

#: What each factorized matrix is (the ``role`` of ``cholesky``), as recorded.
ROLES = {
    "input check": "Q + shift I (n, n): Q positive semidefinite?",
    "newton": "Q + G'DG + rho A'A + delta I (n, n), every interior-point iteration",
    "newton schur": "A H^-1 A' + delta I (p, p), every interior-point iteration (p > 0)",
    "dual form check": "Q0 = Q + rho A'A + delta I (n, n): may the dual Newton form be used?",
    "dual q0": "Q0 (n, n), once per solve by the dual Newton form",
    "dual equalities": "A Q0^-1 A' + delta I (p, p), once per solve by the dual form (p > 0)",
    "dual newton": "Wred + diag(s/lam) (m, m), every iteration of the dual form",
    "solution check": "Q + c N'N (n, n) and N N' + diag(inactive) (m + p, m + p), once at the solution",
    "active-set kkt": "Q + c N'N (n, n), once per derivative",
    "active-set kkt schur": "N H^-1 N' + diag(inactive) (m + p, m + p), once per derivative",
}

_RECORDERS: list[list] = []


def _record(role: str, shape) -> None:
    for shapes in _RECORDERS:
        shapes.append((role, tuple(shape)))


@contextlib.contextmanager
def recording_factorizations():
    """Record ``(role, shape)`` of every matrix ``ift_lib.qp`` factorizes while tracing inside the
    block (roles: ``ROLES``). JAX's compilation caches are cleared on entry, so a function traced
    before is traced again::

        with recording_factorizations() as shapes:
            jax.make_jaxpr(fn)(*args)
    """
    shapes: list = []
    jax.clear_caches()
    _RECORDERS.append(shapes)
    try:
        yield shapes
    finally:
        _RECORDERS.remove(shapes)


def cholesky(H, role: str):
    """Lower Cholesky factor L of H (k, k), H = L L'; NaN entries when H is not (numerically)
    positive definite. ``role`` (a key of ``ROLES``) is what gets recorded."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    _record(role, H.shape)
    return jnp.linalg.cholesky(H)


def after(x, *earlier):
    """x + 0 * (one finite entry of each array in ``earlier``): the same values as x, but a data
    dependency that XLA's CPU runtime keeps (it orders work by the buffers it reads, so an
    optimization barrier would not do), ordering a factorization of x after the computations
    that gave ``earlier`` (see above). NaN or inf in ``earlier`` do not leak into x."""
    for e in earlier:
        if e.size:
            x = x + jnp.zeros((), x.dtype) * jnp.nan_to_num(jnp.ravel(e)[0].astype(x.dtype))
    return x


def inverse_cholesky(H, role: str):
    """M = L^-1 (k, k) for H = L L' (lower); NaN when H is not positive definite."""
    L = cholesky(H, role)
    return jax.lax.linalg.triangular_solve(L, jnp.eye(L.shape[-1], dtype=L.dtype), left_side=True,
                                           lower=True)


def cho_solve(M, B):
    """H^-1 B = M'(M B) for M = L^-1, H = L L', B (k,) or (k, r)."""
    return M.T @ (M @ B)


def min_pivot(L):
    """The smallest pivot d_j = L_jj^2 of H = L D L' from H's Cholesky factor L (k, k); NaN when
    the factorization failed (H not positive definite), +inf for k = 0."""
    return jnp.min(jnp.diagonal(L) ** 2, initial=jnp.inf)
