"""Implicit differentiation of a root-finding solver: the IFT as a JAX transformation.

Invariant: a solver ``solver(init, *args, **kwargs) -> sol`` with

    optimality_fun(sol, *args, **kwargs) == 0         (m equations in the m unknowns of sol)

Differentiating that identity in the arguments gives the IFT,

    d sol / d args = -[dF/dx]^{-1} dF/dargs,      F = optimality_fun at (sol, args),

which needs only the solution, never the solver's iterations. ``root_jvp`` and ``root_vjp``
compute its products with one linear solve each; ``custom_root`` / ``custom_fixed_point``
make JAX use them for a decorated solver, in forward and reverse mode, and check the IFT's
conditions as they go. The names and calling conventions are JAXopt's (``jaxopt.implicit_diff``),
so code written for JAXopt runs unchanged; ``check_ift`` (in :mod:`ift_lib.diagnose`) reports the
conditions on demand.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ift_lib import _checks
from ift_lib._checks import IFTConditionError
from ift_lib.bounds import ceil_pow10
from ift_lib.diagnose import (IFTReport, check_ift, check_shapes, ift_diagnostics,
                              jacobian_in_x)
from ift_lib.linear_solve import LinearSolver, make_solver

PyTree = Any

__all__ = ["custom_root", "custom_fixed_point", "root_jvp", "root_vjp", "check_ift",
           "jacobian_in_x", "IFTReport", "IFTConditionError", "DENSE_CHECK_MAX"]

#: In eager mode, up to this many unknowns a failed condition is explained with the singular
#: values of dF/dx (an SVD); above it, and always under jit, the checks use only the linear
#: solve's own residual and size.
DENSE_CHECK_MAX = 256

_neg = functools.partial(jax.tree.map, jnp.negative)

#: Condition 3 is read off the solve's size only when its relative residual is below this.
_SIZE_BOUND_RTOL = 1e-3


def root_jvp(optimality_fun: Callable, sol: PyTree, args: tuple, tangents: tuple,
             solve: str | LinearSolver | None = None) -> PyTree:
    """Jacobian-vector product of a root: d sol = -[dF/dx]^{-1} (dF/dargs . tangents).

    Args:
      optimality_fun: F(x, *args) with F(sol, *args) = 0.
      sol: the root (pytree).
      args: the arguments to differentiate against (tuple).
      tangents: one tangent per argument, shaped like it (tuple of the same length).
      solve: a linear solver (a value of :mod:`ift_lib.linear_solve`, a name, or a callable
        ``solve(matvec, b)``); None means dense LU.
    Returns:
      The tangent of sol (shaped like sol).
    """
    if len(args) != len(tangents):
        raise ValueError("args and tangents should be tuples of the same length.")
    matvec = lambda u: jax.jvp(lambda x: optimality_fun(x, *args), (sol,), (u,))[1]
    _, dF = jax.jvp(lambda *a: optimality_fun(sol, *a), tuple(args), tuple(tangents))
    return make_solver("dense" if solve is None else solve)(matvec, _neg(dF))


def root_vjp(optimality_fun: Callable, sol: PyTree, args: tuple, cotangent: PyTree,
             solve: str | LinearSolver | None = None) -> tuple:
    """Vector-Jacobian product of a root: u = -[dF/dx]^{-T} cotangent, then (dF/dargs)^T u.

    Args: as :func:`root_jvp`, with ``cotangent`` shaped like sol.
    Returns:
      A tuple with one cotangent per argument, each shaped like it.
    """
    _, vjp_x = jax.vjp(lambda x: optimality_fun(x, *args), sol)
    u = make_solver("dense" if solve is None else solve)(lambda v: vjp_x(v)[0], _neg(cotangent))
    _, vjp_args = jax.vjp(lambda *a: optimality_fun(sol, *a), *args)
    return vjp_args(u)


# ------------------------------------------------------------------------------ the checks

class _Checks:
    """The IFT's conditions, judged where the derivative's linear solve happens, with no SVD and
    one extra (batched) product with A; the host is called (to raise the error) only when a check
    fails. With y the solve's result for right-hand side b and matrix A = dF/dx:
      condition 1   max |F(sol)| <= residual_tol;
      condition 3   y finite, and the solve's size bound sigma_min(A) <= |b| / |y| above
                    rank_rtol x scale, where scale >= |A v|, |dF/dargs_S^T u| for fixed probes v,
                    u and S the arguments no larger than x (lower bounds, so a failure reported
                    here is a genuine one); the size
                    bound is used only when the solve is accurate (relative residual <= 1e-3);
      the solve     |A y - b| <= solve_rtol |b|.
    """

    def __init__(self, residual_tol, rank_rtol, solve_rtol):
        self.residual_tol, self.rank_rtol, self.solve_rtol = residual_tol, rank_rtol, solve_rtol

    def tolerances(self, x, m):
        pick = lambda v, default: default if v is None else float(v)
        return (pick(self.residual_tol, _checks.default_residual_tol(x)),
                pick(self.rank_rtol, _checks.default_rank_rtol(x, m)),
                pick(self.solve_rtol, _checks.default_solve_rtol(x)))

    def eager(self, F, x, args, kwargs, fx):
        """Concrete values: raise IFTConditionError now, explained with the SVD for small m."""
        m = ravel_pytree(x)[0].size
        rtol, kt, _ = self.tolerances(x, m)
        if m <= DENSE_CHECK_MAX:
            r, smin, smax, scale = ift_diagnostics(lambda x_, *a: F(x_, *a, **kwargs), x, *args)
            report = IFTReport(float(r), rtol, float(smin), float(smax), float(scale), kt, m)
        else:
            r = max(float(jnp.max(jnp.abs(l))) for l in jax.tree.leaves(fx)) if m else 0.0
            report = IFTReport(r, rtol, np.inf, np.inf, 1.0, kt, m)
        report.raise_if_failed()

    def solver(self, inner, x, m, residual, scale_args):
        """``inner`` wrapped: solve, then judge the three conditions (the host is called only to
        raise the error of a failed one)."""
        rtol, kt, stol = self.tolerances(x, m)

        def message(res, sig_ub, scale, rel, finite):
            res, sig_ub, scale, rel, finite = np.broadcast_arrays(res, sig_ub, scale, rel, finite)
            if not np.all(res <= rtol):
                r = float(np.nanmax(np.where(np.isnan(res), np.inf, res)))
                return (f"IFT condition 1 failed: x does not solve optimality_fn(x, *params) = 0 "
                        f"(max |F| = {r:.2e} > residual_tol = {rtol:.1e}); "
                        "the solver has not converged or the point is not a solution")
            known = ~np.isnan(sig_ub)               # |b| = 0 tells nothing about sigma_min
            bad3 = ~finite.astype(bool) | (known & ~_checks.nonsingular(sig_ub, scale, kt))
            if np.any(bad3):
                i = np.flatnonzero(bad3.ravel())[0]
                why = ("the linear solve with dF/dx returned non-finite values" if not
                       finite.ravel()[i] else
                       f"sigma_min(dF/dx) < {ceil_pow10(max(kt * scale.ravel()[i], 1e-300)):.0e}"
                       f" <= rank_rtol x scale, from the linear solve")
                return (f"IFT condition 3 failed: dF/dx is singular at the solution ({why}); "
                        "the IFT gives no derivative here. ift_lib.check_ift(optimality_fn, x, "
                        "*params) reports its singular values")
            if np.any(rel > stol):
                return (f"IFT linear solve failed: relative residual {float(np.max(rel)):.2e} > "
                        f"solve_rtol = {stol:.1e}. dF/dx may be singular or ill-conditioned, or the "
                        "chosen solver does not fit it (CG needs a symmetric positive definite "
                        "dF/dx, a Neumann series a contraction) or needs more iterations; pass "
                        "solve_rtol=math.inf to accept an approximate solve")
            return None

        def solve_and_check(matvec, b):
            y = inner(matvec, b)
            flat_y, flat_b = ravel_pytree(y)[0], ravel_pytree(b)[0]
            # one batched product for the residual A y - b and the scale probe A v
            stacked = jax.vmap(lambda t: ravel_pytree(matvec(t))[0])(
                jax.tree.map(lambda u, v: jnp.stack([u, v]), y, _checks.probe_like(b)))
            sq = lambda t: jnp.sum(t * t, axis=-1)
            bn2, yn2, rn2, pn2 = sq(flat_b), sq(flat_y), sq(stacked[0] - flat_b), sq(stacked[1])
            rel = jnp.sqrt(jnp.where(bn2 > 0, rn2 / jnp.where(bn2 > 0, bn2, 1), 0.0))
            # |b| / |y| bounds sigma_min only when y solves A y = b (an accurate solve); after an
            # intended approximate solve (solve_rtol=inf) it says nothing about A
            sig_ub = jnp.where((bn2 > 0) & (rel <= _SIZE_BOUND_RTOL), jnp.sqrt(bn2 / yn2), jnp.nan)
            scale = jnp.maximum(jnp.sqrt(pn2), scale_args)
            finite = jnp.isfinite(yn2)
            ok = ((residual <= rtol) & finite & (rel <= stol)
                  & (jnp.isnan(sig_ub) | _checks.nonsingular(sig_ub, scale, kt)))
            token = _checks.host_check(message, residual, sig_ub, scale, rel,
                                       finite.astype(flat_b.dtype), ok=ok)
            return _checks.tie(y, token)

        return solve_and_check


def _args_scale(F_args: Callable, p: tuple, kw: dict, fx: PyTree):
    """|(dF/dargs_S)^T u| for a fixed unit probe u in equation space, over the floating arguments
    S no larger than the m equations: a lower bound on the size of dF/dargs (a subset of its
    columns), at the cost of one reverse pass through F. Larger arguments (a data matrix, say)
    are left out: their cotangents cost more than the whole derivative (an (m_A, n) outer
    product per probe), and for them the scale falls back on |dF/dx v|."""
    leaves, treedef = jax.tree.flatten((p, kw))
    m = ravel_pytree(fx)[0].size
    diff = [i for i, l in enumerate(leaves) if jnp.issubdtype(jnp.result_type(l), jnp.inexact)
            and np.size(l) <= max(m, 1)]
    if not diff:
        return jnp.zeros((), ravel_pytree(fx)[0].dtype)

    def of_inexact(*vals):
        full = list(leaves)
        for i, v in zip(diff, vals):
            full[i] = v
        return F_args(*jax.tree.unflatten(treedef, full))

    _, vjp = jax.vjp(of_inexact, *[leaves[i] for i in diff])
    return jnp.linalg.norm(ravel_pytree(vjp(_checks.probe_like(fx)))[0])


def _zero_tangent(leaf):
    dtype = jnp.result_type(leaf)
    if jnp.issubdtype(dtype, jnp.inexact):
        return jnp.zeros_like(leaf)
    return np.zeros(jnp.shape(leaf), jax.dtypes.float0)


def custom_root(optimality_fun: Callable, has_aux: bool = False,
                solve: str | LinearSolver | None = None,
                reference_signature: Callable | inspect.Signature | None = None, *,
                residual_tol: float | None = None, rank_rtol: float | None = None,
                solve_rtol: float | None = None, check: bool = True):
    """Decorator: differentiate ``solver(init, *args, **kwargs) -> sol`` by the IFT.

    Requires ``optimality_fun(sol, *args, **kwargs) == 0`` (a pytree shaped like sol). The
    decorated solver is called as the original, arguments by position or keyword (matched to
    ``optimality_fun``'s signature, or to ``reference_signature``'s); with ``has_aux`` it returns
    ``(sol, aux)`` and aux gets no derivative. Derivatives (``init`` gets none):

        forward (jvp, jacfwd):  d sol = root_jvp(...) = -[dF/dx]^{-1} (dF/dargs . d args)
        reverse (vjp, grad):    d args = root_vjp(...) = -(dF/dargs)^T [dF/dx]^{-T} g

    one linear solve each, by ``solve`` (a value of :mod:`ift_lib.linear_solve`, a name, or a
    callable ``solve(matvec, b)``; None: dense LU). Works under jit, vmap, grad, jacfwd, jacrev,
    second derivatives, with pytrees.

    Checks (``check=True``), each time a derivative is taken, raising :class:`IFTConditionError`
    (under jit/vmap, and for the solve always, wrapped in ``jax.errors.JaxRuntimeError``):
    condition 1, max |F| <= ``residual_tol`` (default sqrt(eps)); condition 3, dF/dx
    nonsingular: sigma_min > ``rank_rtol`` x scale (default 100 m eps); the linear solve's
    relative residual <= ``solve_rtol`` (default eps**0.375, 1e-6 in float64). None means the
    default in each; ``math.inf`` switches one test off (e.g. ``solve_rtol=math.inf`` for an
    intended approximate solve); ``check=False`` switches all off. Under jit the checks cost
    two extra products with dF/dx per solve and a host call only on failure; see
    benchmarks/implicit_vs_jaxopt.py.
    """
    linear_solve = make_solver("dense" if solve is None else solve)
    checks = _Checks(residual_tol, rank_rtol, solve_rtol) if check else None
    if reference_signature is None:
        reference_signature = optimality_fun
    ref_sig = (reference_signature if isinstance(reference_signature, inspect.Signature)
               else inspect.signature(reference_signature))

    def decorator(solver: Callable) -> Callable:
        @jax.custom_jvp
        def _root(args, kwargs):
            return solver(*args, **kwargs)

        @_root.defjvp
        def _root_jvp(primals, tangents):
            args, kwargs = primals
            # _root, not solver: a second derivative then uses the IFT again
            out = _root(args, kwargs)
            sol = out[0] if has_aux else out
            bound, dbound = ref_sig.bind(*args, **kwargs), ref_sig.bind(*tangents[0], **tangents[1])
            p, kw, dp, dkw = bound.args[1:], bound.kwargs, dbound.args[1:], dbound.kwargs
            F = lambda x, p, kw: optimality_fun(x, *p, **kw)
            fx, dF = jax.jvp(lambda p, kw: F(sol, p, kw), (p, kw), (dp, dkw))
            check_shapes(fx, sol)
            inner = linear_solve
            if checks is not None:
                if _checks.is_concrete((sol, p, kw)):
                    checks.eager(optimality_fun, sol, p, kw, fx)
                flat_fx = ravel_pytree(fx)[0]
                residual = jnp.max(jnp.abs(flat_fx)) if flat_fx.size else jnp.zeros((), flat_fx.dtype)
                scale_args = _args_scale(lambda p, kw: F(sol, p, kw), p, kw, fx)
                inner = checks.solver(linear_solve, sol, ravel_pytree(sol)[0].size, residual,
                                      jax.lax.stop_gradient(scale_args))
            matvec = lambda t: jax.jvp(lambda x: F(x, p, kw), (sol,), (t,))[1]
            # An equation that does not involve args gets a constant-zero tangent, which
            # custom_linear_solve cannot transpose; adding an exactly-zero term linear in the
            # tangents (a sum over an empty slice) keeps every leaf linear.
            anchor = sum((jnp.sum(jnp.ravel(l)[:0]) for l in jax.tree.leaves((dp, dkw))
                          if jnp.issubdtype(jnp.result_type(l), jnp.inexact)), 0.0)
            rhs = jax.tree.map(lambda r: -r + jnp.asarray(anchor, r.dtype), dF)
            dsol = jax.lax.custom_linear_solve(matvec, rhs, solve=lambda mv, b: inner(mv, b),
                                               transpose_solve=lambda vm, b: inner(vm, b))
            if has_aux:
                return out, (dsol, jax.tree.map(_zero_tangent, out[1]))
            return out, dsol

        try:
            solver_sig = inspect.signature(solver)
        except (TypeError, ValueError):        # e.g. some builtins: no signature to bind
            solver_sig = None

        @functools.wraps(solver)
        def wrapped(*args, **kwargs):
            if solver_sig is not None and kwargs:
                # keywords become positions of the solver's own signature (as JAXopt does);
                # what stays a keyword is matched by name to optimality_fun's signature
                bound = solver_sig.bind(*args, **kwargs)
                bound.apply_defaults()
                args, kwargs = bound.args, bound.kwargs
            return _root(tuple(args), dict(kwargs))

        return wrapped

    return decorator


def custom_fixed_point(fixed_point_fun: Callable, has_aux: bool = False,
                       solve: str | LinearSolver | None = None,
                       reference_signature: Callable | inspect.Signature | None = None,
                       **check_options):
    """Decorator: differentiate a fixed-point solver, ``T(sol, *args) == sol``, by the IFT.

    :func:`custom_root` with F(x, *args) = T(x, *args) - x (so dF/dx = dT/dx - I); the same
    options and checks.
    """
    def optimality_fun(x, *args, **kwargs):
        return jax.tree.map(jnp.subtract, fixed_point_fun(x, *args, **kwargs), x)

    return custom_root(optimality_fun, has_aux, solve,
                       reference_signature if reference_signature is not None else
                       inspect.signature(fixed_point_fun), **check_options)
