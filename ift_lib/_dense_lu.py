"""Dense factorizations in plain JAX, for ``ift_lib.qp`` (public names of a private module).

    lu_factor(K) -> (LU, perm)     P K = L U, partial pivoting
    lu_solve((LU, perm), b)        K x = b
    min_ldl_pivot(H)               the smallest pivot of H = L D L' (H positive semidefinite)

Why not ``jax.scipy.linalg.lu_factor``: jaxlib's batched LAPACK LU (jax 0.10.2) splits a large
batch over XLA's thread pool and can deadlock inside a jitted, vmapped ``while_loop`` on 2 cores
(seen every time at 64 QPs of n = 30 or 50, never below ~20). These loops of rank-1 updates are
slower but never hang.

``recording_factorizations()`` lists the matrices factorized while a function is traced: how
Chapter 3 and the tests show that a gradient adds one factorization and nothing per iteration.
"""
from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp

__all__ = ["lu_factor", "lu_solve", "min_ldl_pivot", "cholesky", "recording_factorizations"]

_RECORDERS: list[list] = []


def _record(kind: str, shape) -> None:
    for shapes in _RECORDERS:
        shapes.append((kind, tuple(shape)))


@contextlib.contextmanager
def recording_factorizations():
    """Record ``(kind, shape)`` of every matrix ``ift_lib.qp`` factorizes while tracing inside the
    block (kind "lu", "cholesky" or "ldl"). JAX's compilation caches are cleared on entry, so a function
    traced before is traced again::

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


def cholesky(H):
    """Lower Cholesky factor of H (k, k), recorded as a factorization (LAPACK; did not hang)."""
    _record("cholesky", H.shape)
    return jnp.linalg.cholesky(H)


def lu_factor(K):
    """P K = L U with partial pivoting for K (k, k): returns (LU, perm), L (unit lower) and U
    packed in LU (k, k), perm (k,) the row order."""
    _record("lu", K.shape)
    k = K.shape[-1]
    idx = jnp.arange(k)

    def step(j, carry):
        LU, perm = carry
        piv = jnp.argmax(jnp.where(idx >= j, jnp.abs(LU[:, j]), -1.0))
        row_j, row_p = LU[j], LU[piv]
        LU = LU.at[j].set(row_p).at[piv].set(row_j)
        perm_j, perm_p = perm[j], perm[piv]
        perm = perm.at[j].set(perm_p).at[piv].set(perm_j)
        below = idx > j
        l = jnp.where(below, LU[:, j] / LU[j, j], 0.0)
        LU = LU - jnp.outer(l, jnp.where(below, LU[j], 0.0))
        LU = LU.at[:, j].set(jnp.where(below, l, LU[:, j]))
        return LU, perm

    return jax.lax.fori_loop(0, k, step, (K, idx))


def lu_solve(factors, b):
    """Solve K x = b, b (k,), with ``lu_factor``'s (LU, perm)."""
    LU, perm = factors
    y = jax.lax.linalg.triangular_solve(LU, b[perm][:, None], left_side=True, lower=True,
                                        unit_diagonal=True)
    return jax.lax.linalg.triangular_solve(LU, y, left_side=True, lower=False)[:, 0]


def min_ldl_pivot(H):
    """The smallest pivot d_j of H = L D L' for H (k, k) symmetric PSD (a Cholesky factorization
    without square roots); ~0 when H is singular, +inf for k = 0."""
    _record("ldl", H.shape)
    k = H.shape[-1]
    idx = jnp.arange(k)
    tiny = jnp.finfo(H.dtype).tiny

    def step(j, carry):
        H, dmin = carry
        d = H[j, j]
        l = jnp.where(idx > j, H[:, j] / jnp.where(d > tiny, d, 1.0), 0.0)
        H = H - jnp.where(d > tiny, d, 0.0) * jnp.outer(l, l)
        return H, jnp.minimum(dmin, d)

    return jax.lax.fori_loop(0, k, step, (H, jnp.asarray(jnp.inf, H.dtype)))[1]
