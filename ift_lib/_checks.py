"""Runtime checks shared by ift_lib's modules (a private module with public names).

One place for: the default tolerances, the predicate "dF/dx is nonsingular", host-side checks
that raise a clear error wherever the computation runs (eager, jit, vmap), and the helpers that
keep such a check alive inside a compiled computation.

How a check reaches the user:
* eager (concrete values): the error is raised directly, as itself;
* under jit / vmap / inside a linear solve: a host callback raises it when the computation
  executes; JAX re-raises it wrapped in ``jax.errors.JaxRuntimeError`` with the same message.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any

__all__ = ["IFTConditionError", "eps_of", "default_residual_tol", "default_rank_rtol",
           "default_solve_rtol", "nonsingular", "is_concrete", "host_check", "tie",
           "probe_like"]


class IFTConditionError(ValueError):
    """Raised when the implicit function theorem does not apply where a derivative is asked for."""


# ------------------------------------------------------------------------------- tolerances

def eps_of(tree: PyTree) -> float:
    """Machine epsilon of the floating dtype of ``tree``'s leaves (float32 if it has none)."""
    leaves = [l for l in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(l), jnp.inexact)]
    dtype = jnp.result_type(*leaves) if leaves else jnp.float32
    return float(jnp.finfo(dtype).eps)


def default_residual_tol(x: PyTree) -> float:
    """Condition 1 (x solves F = 0): max |F| <= sqrt(eps), 1.5e-8 in float64."""
    return math.sqrt(eps_of(x))


def default_rank_rtol(x: PyTree, m: int) -> float:
    """Condition 3 (dF/dx nonsingular): sigma_min > 100 m eps x scale."""
    return 100.0 * max(m, 1) * eps_of(x)


def default_solve_rtol(x: PyTree) -> float:
    """The IFT's linear solve: relative residual <= eps**0.375 (1.4e-6 in float64)."""
    return eps_of(x) ** 0.375


def nonsingular(sigma_min, scale, rank_rtol):
    """THE predicate "dF/dx is nonsingular" (elementwise, on numpy or jax arrays): sigma_min >
    rank_rtol * scale, where ``sigma_min`` is (an upper bound on) the smallest singular value of
    dF/dx and ``scale`` the size of the problem's Jacobian [dF/dx, dF/dparams]. NaN is singular."""
    return (sigma_min == sigma_min) & (scale > 0) & (sigma_min > rank_rtol * scale)


# ----------------------------------------------------------------------------- host checks

def is_concrete(tree: PyTree) -> bool:
    """True when no leaf is a tracer: the values are known now (eager mode)."""
    return not any(isinstance(l, jax.core.Tracer) for l in jax.tree.leaves(tree))


class _QuietCheckFailures(logging.Filter):
    """JAX logs a full traceback ("jax.pure_callback failed") for every exception raised in a
    host callback, then raises it again wrapped in a JaxRuntimeError. For ift_lib's own check
    failures the raised error already says everything: drop the log record, keep the error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not getattr(exc, "_ift_lib_check", False)


logging.getLogger("jax._src.callback").addFilter(_QuietCheckFailures())


def host_check(message_fn: Callable[..., str | None], *arrays,
               error: type[Exception] = IFTConditionError, ok=None):
    """Run ``message_fn(*numpy_arrays)`` on the host when the computation executes (jit, vmap,
    eager) and raise ``error(message)`` if it returns a message. Returns a zero token shaped like
    the broadcast arrays that the caller must tie into its output (:func:`tie`), so the check
    cannot be removed as dead code. Under vmap: one host call per batch.

    ``ok``: an optional traced boolean, True when the check is known to pass; the host is then
    not called at all (a host call costs far more than the arithmetic of a check). Under vmap a
    batched ``ok`` cannot skip the call, which then happens once per batch.
    """
    def callback(*host_arrays):
        host_arrays = [np.asarray(a) for a in host_arrays]
        msg = message_fn(*host_arrays)
        if msg:
            err = error(msg)
            err._ift_lib_check = True   # JAX re-raises it wrapped; _QuietCheckFailures mutes its log
            raise err
        return np.zeros(np.broadcast_shapes(*[a.shape for a in host_arrays]), token_dtype)

    # A check has no derivative; stop_gradient keeps grad-of-grad from asking for a JVP rule.
    arrays = [jax.lax.stop_gradient(a) for a in arrays]
    token_dtype = jnp.result_type(*arrays)
    shape = jax.ShapeDtypeStruct(jnp.broadcast_shapes(*[jnp.shape(a) for a in arrays]), token_dtype)
    call = lambda *a: jax.pure_callback(callback, shape, *a, vmap_method="broadcast_all")
    if ok is None:
        return call(*arrays)
    return jax.lax.cond(jnp.all(ok), lambda *a: jnp.zeros(shape.shape, shape.dtype), call, *arrays)


def _zero_times(token, dtype):
    return jnp.zeros((), dtype) * jnp.sum(token).astype(dtype)


def tie(tree: PyTree, token) -> PyTree:
    """tree + 0 * token, leaf by leaf (keeps a check's token alive without changing values)."""
    if token is None:
        return tree
    return jax.tree.map(lambda l: l + _zero_times(token, l.dtype)
                        if jnp.issubdtype(l.dtype, jnp.inexact) else l, tree)


def probe_like(tree: PyTree) -> PyTree:
    """A fixed, deterministic unit-norm probe shaped like ``tree``: cos(1 + 2.4 i) over the flat
    index i, a direction no realistic matrix is built to annihilate (used to bound norms from
    below with one matrix-vector product)."""
    leaves, treedef = jax.tree.flatten(tree)
    sizes = [int(np.prod(jnp.shape(l))) for l in leaves]
    total = max(sum(sizes), 1)
    out, start = [], 0
    for l, n in zip(leaves, sizes):
        dtype = jnp.result_type(l) if jnp.issubdtype(jnp.result_type(l), jnp.inexact) else jnp.float32
        i = jnp.arange(start, start + n, dtype=dtype)
        out.append((jnp.cos(1.0 + 2.4 * i) * jnp.sqrt(jnp.asarray(2.0 / total, dtype)))
                   .reshape(jnp.shape(l)))
        start += n
    return jax.tree.unflatten(treedef, out)
