"""Implicit differentiation of a root-finding solver: the IFT as a JAX transformation.

Invariant: a solver ``solver(init, *params) -> x_star`` with

    optimality_fn(x_star, *params) == 0          (m equations, m unknowns)

Differentiating that identity in the parameters gives the IFT,

    dx*/dparams = -[dF/dx]^{-1} dF/dparams,     F = optimality_fn at (x_star, params),

which needs only the solution, never the solver's iterations. ``custom_root``
wraps a solver so that JAX uses that formula (forward and reverse mode); the
IFT's conditions are checked where the derivative is taken, and
``check_ift`` reports them on demand.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ift_lib.bounds import ceil_pow10, fmt_bounded
from ift_lib.linear_solve import LinearSolver, make_solver

PyTree = Any

__all__ = ["custom_root", "check_ift", "jacobian_in_x", "IFTReport", "IFTConditionError"]

#: Above this many unknowns the singular-value test of dF/dx is skipped (it forms
#: the dense Jacobian); the linear-solve residual test still runs.
DENSE_CHECK_MAX = 256


class IFTConditionError(ValueError):
    """Raised when the implicit function theorem does not apply where a derivative is asked for."""


def _eps(x: PyTree) -> float:
    leaves = [l for l in jax.tree.leaves(x) if jnp.issubdtype(jnp.result_type(l), jnp.inexact)]
    dtype = jnp.result_type(*leaves) if leaves else jnp.float32
    return float(jnp.finfo(dtype).eps)


def _default_residual_tol(x: PyTree) -> float:
    return float(np.sqrt(_eps(x)))


def _default_rank_rtol(x: PyTree, m: int) -> float:
    return 100.0 * max(m, 1) * _eps(x)


def _default_solve_rtol(x: PyTree) -> float:
    return float(_eps(x) ** 0.375)   # 1.4e-6 in float64, 2.5e-3 in float32


def _check_shapes(fx: PyTree, x: PyTree) -> None:
    sx = jax.tree.structure(x)
    sf = jax.tree.structure(fx)
    shapes_x = [jnp.shape(l) for l in jax.tree.leaves(x)]
    shapes_f = [jnp.shape(l) for l in jax.tree.leaves(fx)]
    if sx != sf or shapes_x != shapes_f:
        raise ValueError(
            "optimality_fn(x, *params) must return a pytree with the same structure and shapes "
            f"as x (one equation per unknown): x has {sx} with shapes {shapes_x}, "
            f"optimality_fn returned {sf} with shapes {shapes_f}")


def _diagnostics(optimality_fn: Callable, x: PyTree, params: tuple):
    """Traceable IFT diagnostics: (max|F|, sigma_min(dF/dx), scale) where scale = the largest
    singular value of the full Jacobian [dF/dx, dF/dparams]."""
    flat_x, unravel_x = ravel_pytree(x)
    flat_p, unravel_p = ravel_pytree(params)
    F_flat = lambda fx, fp: ravel_pytree(optimality_fn(unravel_x(fx), *unravel_p(fp)))[0]
    fval = F_flat(flat_x, flat_p)
    Jx = jax.jacfwd(F_flat, 0)(flat_x, flat_p)
    sx = jnp.linalg.svd(Jx, compute_uv=False)
    if flat_p.size:
        Jp = jax.jacfwd(F_flat, 1)(flat_x, flat_p)
        scale = jnp.linalg.norm(jnp.concatenate([Jx, Jp], axis=1), ord=2)
    else:
        scale = sx[0]
    residual = jnp.max(jnp.abs(fval)) if fval.size else jnp.zeros((), flat_x.dtype)
    return residual, sx[-1], scale


@dataclasses.dataclass(frozen=True)
class IFTReport:
    """What ``check_ift`` found at a point (x, params) of F(x, params) = 0.

    residual:   max |F(x, params)|                     (condition 1: x solves F = 0)
    sigma_min:  smallest singular value of dF/dx      (condition 3: dF/dx nonsingular)
    scale:      largest singular value of [dF/dx, dF/dparams]
    cond:       sigma_max(dF/dx) / sigma_min(dF/dx)
    Condition 2 (F continuously differentiable) is assumed, not tested.
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
        return bool(not np.isnan(self.sigma_min) and self.scale > 0
                    and self.sigma_min > self.rank_rtol * self.scale)

    @property
    def applies(self) -> bool:
        """True when the IFT's conditions 1 and 3 hold, so dx*/dparams exists and is unique."""
        return self.is_solution and self.jacobian_nonsingular

    @property
    def _residual_floor(self) -> float:
        # below this, max|F| is rounding noise whose digits differ from one CPU to the next
        return 1e3 * np.finfo(float).eps * max(1.0, self.scale) if self.residual_tol >= 1e-12 \
            else 0.0

    @property
    def _rank_threshold(self) -> float:
        return self.rank_rtol * self.scale

    def _fmt_residual(self) -> str:
        return fmt_bounded(self.residual, min(self._residual_floor, self.residual_tol))

    def _fmt_sigma_min(self) -> str:
        if self.jacobian_nonsingular or np.isnan(self.sigma_min):
            return f"= {self.sigma_min:.2e}"
        return f"< {ceil_pow10(self._rank_threshold):.0e}" if self._rank_threshold > 0 \
            else f"= {self.sigma_min:.2e}"

    def _fmt_cond(self) -> str:
        if np.isnan(self.sigma_max):
            return "not computed"
        if self.jacobian_nonsingular:
            return f"= {self.cond:.2e}"
        if self._rank_threshold > 0 and self.sigma_max > 0:
            lower = self.sigma_max / ceil_pow10(self._rank_threshold)
            return f"> {10.0 ** np.floor(np.log10(lower)):.0e}"
        return "= inf"

    @property
    def failure(self) -> str | None:
        """A sentence naming the first failed IFT condition, or None.

        Values at rounding level are printed as the bound they fall below (e.g.
        ``sigma_min < 1e-13``), so the sentence reads the same on every CPU."""
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
        res = self._fmt_residual()
        res = res if res.startswith("<") else f"= {res}"
        return (f"IFT {verdict}: max|F| {res} (tol {self.residual_tol:.1e}), "
                f"sigma_min(dF/dx) {self._fmt_sigma_min()}, cond(dF/dx) {self._fmt_cond()}, "
                f"m = {self.m}")


def jacobian_in_x(optimality_fn: Callable, x: PyTree, *params) -> jax.Array:
    """dF/dx as a dense (m, m) matrix, m = size of x: rows are the equations of
    ``optimality_fn(x, *params)`` and columns the unknowns, both flattened leaf by leaf in
    pytree order (``ravel_pytree``). For inspection and small problems (forms the matrix)."""
    flat_x, unravel_x = ravel_pytree(x)
    return jax.jacfwd(lambda v: ravel_pytree(optimality_fn(unravel_x(v), *params))[0])(flat_x)


def check_ift(optimality_fn: Callable, x: PyTree, *params, residual_tol: float | None = None,
              rank_rtol: float | None = None) -> IFTReport:
    """Check the IFT's conditions for ``optimality_fn(x, *params) = 0`` at one point.

    Forms dF/dx (m x m, m = size of x) densely: meant for inspection and tests, not hot loops.
    Returns an :class:`IFTReport`; call ``.raise_if_failed()`` to turn a failure into an
    :class:`IFTConditionError`.
    """
    params = tuple(params)
    _check_shapes(optimality_fn(x, *params), x)
    m = int(ravel_pytree(x)[0].size)
    residual, smin, scale = _diagnostics(optimality_fn, x, params)
    smax = float(jnp.linalg.norm(jacobian_in_x(optimality_fn, x, *params), ord=2))
    return IFTReport(
        residual=float(residual),
        residual_tol=_default_residual_tol(x) if residual_tol is None else float(residual_tol),
        sigma_min=float(smin), sigma_max=smax, scale=float(scale),
        rank_rtol=_default_rank_rtol(x, m) if rank_rtol is None else float(rank_rtol), m=m)


def _is_concrete(tree: PyTree) -> bool:
    return not any(isinstance(l, jax.core.Tracer) for l in jax.tree.leaves(tree))


class _QuietCheckFailures(logging.Filter):
    """JAX logs a full traceback ("jax.pure_callback failed") for every exception raised in a
    host callback, then raises it again wrapped in a JaxRuntimeError. For ift_lib's own check
    failures the raised error already says everything: drop the log record, keep the error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not getattr(exc, "_ift_lib_check", False)


logging.getLogger("jax._src.callback").addFilter(_QuietCheckFailures())


def _host_check(message_fn, *arrays, error: type[Exception] = IFTConditionError):
    """Run ``message_fn(*arrays)`` on the host when the computation executes (jit, vmap, eager)
    and raise ``error`` if it returns a message. Returns a zero scalar token that the
    caller must add into its output, so the check cannot be removed as dead code. Vectorised
    under vmap: one host call per batch, not one per element."""
    def callback(*host_arrays):
        host_arrays = [np.asarray(a) for a in host_arrays]
        msg = message_fn(*host_arrays)
        if msg:
            err = error(msg)
            err._ift_lib_check = True   # JAX re-raises it wrapped; _QuietCheckFailures mutes its log
            raise err
        return np.zeros(np.broadcast_shapes(*[a.shape for a in host_arrays]), token_dtype)

    # The diagnostics are not differentiated (a check has no derivative); stop_gradient keeps
    # higher-order derivatives (grad of grad) from asking the callback for a JVP rule.
    arrays = [jax.lax.stop_gradient(a) for a in arrays]
    token_dtype = jnp.result_type(*arrays)
    shape = jax.ShapeDtypeStruct(jnp.broadcast_shapes(*[jnp.shape(a) for a in arrays]), token_dtype)
    return jax.pure_callback(callback, shape, *arrays, vmap_method="broadcast_all")


def _tie(tree: PyTree, token) -> PyTree:
    """tree + 0 * token, leaf by leaf (keeps a check's token alive without changing values)."""
    return jax.tree.map(lambda l: l + jnp.zeros((), l.dtype) * token.astype(l.dtype)
                        if jnp.issubdtype(l.dtype, jnp.inexact) else l, tree)


def _tie_linear(tree: PyTree, token) -> PyTree:
    """tree * (1 + 0 * token), leaf by leaf: like ``_tie`` but linear in ``tree``, so it can be
    applied to tangents (the check then stays alive whenever the derivative is used)."""
    if token is None:
        return tree
    return jax.tree.map(lambda l: l * (1 + jnp.zeros((), l.dtype) * token.astype(l.dtype))
                        if jnp.issubdtype(l.dtype, jnp.inexact) else l, tree)


def custom_root(optimality_fn: Callable, solve: str | LinearSolver = "dense", *,
                residual_tol: float | None = None, rank_rtol: float | None = None,
                solve_rtol: float | None | str = "default", check: bool = True):
    """Decorator: differentiate ``solver(init, *params) -> x_star`` by the IFT.

    Requires the invariant ``optimality_fn(x_star, *params) == 0`` (a pytree shaped like
    x_star). Derivatives with respect to ``params`` are

        forward  (jvp):  dx = -[dF/dx]^{-1} (dF/dparams . dparams)
        reverse  (vjp):  dparams = -(dF/dparams)^T [dF/dx]^{-T} g

    one linear solve each, done by ``solve`` (a name in ``ift_lib.linear_solve.SOLVERS`` or a
    ``solve(matvec, b)`` callable, e.g. ``make_solver("cg", tol=1e-12)``). The solver's own
    iterations are never differentiated; ``init`` gets a zero derivative. Works under ``grad``,
    ``jacfwd``, ``jacrev``, ``jit`` and ``vmap``, with pytrees for x and params.

    Checks, when ``check`` is True, each time a derivative is taken (raising
    :class:`IFTConditionError`; under ``jit``/``vmap``, and for the linear-solve check always,
    it arrives wrapped in ``jax.errors.JaxRuntimeError`` with the same message; the check is one
    vectorised host call per evaluation, and it also guards second derivatives):

    * condition 1: max |F(x_star, params)| <= ``residual_tol`` (default sqrt(eps));
    * condition 3: sigma_min(dF/dx) > ``rank_rtol`` * scale (default 100 m eps; for m <= 256);
    * the linear solve: relative residual <= ``solve_rtol`` (default eps**0.375, about 1e-6 in
      float64). Pass ``solve_rtol=None`` when an approximate solve (few CG or Neumann steps)
      is intended; non-finite results are still refused.
    """
    linear_solve = make_solver(solve)

    def decorator(solver: Callable) -> Callable:
        @jax.custom_jvp
        def _root(init, params):
            return solver(init, *params)

        @_root.defjvp
        def _root_jvp(primals, tangents):
            init, params = primals
            _, dparams = tangents
            # _root, not solver: a derivative of this rule (second order) then uses the IFT
            # again instead of differentiating the solver's iterations
            x = _root(init, params)
            F_of_params = lambda p: optimality_fn(x, *p)
            fx, rhs = jax.jvp(F_of_params, (params,), (dparams,))
            _check_shapes(fx, x)
            token = None
            if check:
                x, token = _check_conditions(fx, x, params)
            # The token is tied into the matvec as well as into x: when F is affine in x the
            # derivative does not use x's value, and a check tied only to x would be removed as
            # dead code under jit (e.g. jit(grad(lambda p: solver(init, p).sum()))).
            matvec = lambda t: _tie_linear(
                jax.jvp(lambda x_: optimality_fn(x_, *params), (x,), (t,))[1], token)
            # An equation that does not involve params gets a constant zero from jvp, and
            # custom_linear_solve cannot transpose a constant right-hand side (reverse mode).
            # Adding an exactly-zero term that is linear in dparams (a sum over an empty slice)
            # makes every leaf linear in dparams.
            anchor = sum((jnp.sum(jnp.ravel(l)[:0]) for l in jax.tree.leaves(dparams)
                          if jnp.issubdtype(jnp.result_type(l), jnp.inexact)), 0.0)
            neg_rhs = jax.tree.map(lambda r: -r + jnp.asarray(anchor, r.dtype), rhs)
            checked_solve = _checked(linear_solve, x) if check else linear_solve
            dx = jax.lax.custom_linear_solve(
                matvec, neg_rhs,
                solve=lambda mv, b: checked_solve(mv, b),
                transpose_solve=lambda vm, b: checked_solve(vm, b))
            return x, dx

        def _check_conditions(fx, x, params):
            m = int(ravel_pytree(x)[0].size)
            rtol = _default_residual_tol(x) if residual_tol is None else residual_tol
            kt = _default_rank_rtol(x, m) if rank_rtol is None else rank_rtol

            def message(res, smin, scale):
                # Element by element (under vmap the arrays are batched): condition 3 compares
                # each point's sigma_min with its own scale, never across the batch.
                res, smin, scale = (np.ravel(a) for a in np.broadcast_arrays(res, smin, scale))
                report = lambda i: IFTReport(float(res[i]), float(rtol), float(smin[i]),
                                             float("nan"), float(scale[i]), float(kt), m)
                worst = report(int(np.argmax(res)))   # condition 1 first; NaN counts as worst
                if not worst.is_solution:
                    return worst.failure
                ok3 = ~np.isnan(smin) & (scale > 0) & (smin > kt * scale)
                return None if ok3.all() else report(int(np.argmin(ok3))).failure

            if m <= DENSE_CHECK_MAX:
                args = _diagnostics(optimality_fn, x, params)
            else:   # only condition 1 here; condition 3 is left to the linear-solve test
                res = jnp.max(jnp.stack([jnp.max(jnp.abs(l)) for l in jax.tree.leaves(fx)]))
                # numpy constants: jnp.full/jnp.ones would be tracers inside grad's trace even
                # when x and params are concrete
                args = (res, np.full((), np.inf, res.dtype), np.ones((), res.dtype))
            if _is_concrete((x, params, args)):
                msg = message(*[np.asarray(a) for a in args])
                if msg:
                    raise IFTConditionError(msg)
                return x, None
            token = _host_check(message, *args)
            return _tie(x, token), token

        def _checked(inner_solve, x):
            tol = _default_solve_rtol(x) if solve_rtol == "default" else solve_rtol

            def message(rel):
                rel = np.asarray(rel)
                if not np.all(np.isfinite(rel)):
                    return ("IFT linear solve failed: the solution of the linear system in dF/dx "
                            "is not finite; dF/dx is singular at this point")
                if tol is not None and np.max(rel) > tol:
                    return (f"IFT linear solve failed: relative residual {np.max(rel):.2e} > "
                            f"solve_rtol = {tol:.1e}. dF/dx may be singular or ill-conditioned, "
                            "or the chosen solver does not fit it (CG needs a symmetric positive "
                            "definite dF/dx, a Neumann series a contraction) or needs more "
                            "iterations; pass solve_rtol=None to accept an approximate solve")
                return None

            def solve_and_check(mv, b):
                y = inner_solve(mv, b)
                r = jax.tree.map(jnp.subtract, mv(y), b)
                rn = ravel_pytree(r)[0]
                bn = ravel_pytree(b)[0]
                yn = ravel_pytree(y)[0]
                bnorm = jnp.linalg.norm(bn)
                rel = jnp.where(bnorm > 0, jnp.linalg.norm(rn) / jnp.where(bnorm > 0, bnorm, 1), 0.0)
                rel = jnp.where(jnp.all(jnp.isfinite(yn)), rel, jnp.inf)
                return _tie(y, _host_check(message, rel))

            return solve_and_check

        @functools.wraps(solver)
        def wrapped(init, *params):
            return _root(init, tuple(params))

        return wrapped

    return decorator
