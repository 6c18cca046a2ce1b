"""Convex quadratic programs, solved by an interior-point method and differentiated by the IFT.

    minimize_z  1/2 z'Qz + q'z      s.t.  Gz <= h  (m rows),  Az = b  (p rows),   z in R^n

Sign convention (as in ``ift_lib.softmax``): the Lagrangian is

    L(z, lam, nu) = 1/2 z'Qz + q'z + nu'(Az - b) + lam'(Gz - h),      lam >= 0,

so the KKT conditions at the solution, with slack s = h - Gz, are

    Qz + q + G'lam + A'nu = 0,   Az = b,   s >= 0,   lam >= 0,   lam * s = 0.

Value: a primal-dual interior-point method with Mehrotra's predictor-corrector (the LP-cone case
of CVXOPT's ``coneqp``, as in OptNet), jit-compiled, one ``lax.while_loop`` of at most
``max_iter`` steps over a named state; it lives in ``ift_lib._qp_ipm`` (the iteration) and
``ift_lib._qp_linalg`` (batched Cholesky factorizations, chained so that jaxlib's batched LAPACK
kernels cannot deadlock each other; see there).
Convergence: primal and dual residuals below tol times the size of the terms they are made of
(max|h|, |b|, |Gz|, |Az| and max|q|, |Qz|, |G'lam|, |A'nu|), and gap s'lam <= tol (1 + |obj|).

Derivatives (forward mode by ``jax.custom_jvp``, reverse mode by JAX's transposition of it):
differentiating the KKT conditions (stationarity, Gz + s = h, Az = b, lam * s = 0) gives the
same linear system as the Newton step,

    Q dz + G'dlam + A'dnu = -(dQ z + dq + dG'lam + dA'nu)
    G dz + ds             = dh - dG z
    A dz                  = db - dA z
    lam * ds + s * dlam   = 0,

now at the solution. It is differentiated at the *exact* solution, where s_i = 0 at an active
and lam_i = 0 at an inactive constraint, rather than at the interior point (where lam_i s_i ~ tol):
each constraint counts as active when s_i < lam_i / 10 (``ACTIVE_RATIO``). Each
complementarity row is divided by its nonzero factor, which leaves the well-scaled (n + m + p) matrix

    [[Q,       G',         A'],      M = diag(active)
     [M G,     -(I - M),   0 ],
     [A,       0,          0 ]],

solved once per derivative: its inactive rows fix dlam_i, the rest is reduced to two positive
definite matrices, Q + c N'N (n, n; N the unit active rows of G with A, c = max(1, max|Q|)) and
its Schur complement N (Q + c N'N)^-1 N' (m + p, m + p), each factorized by Cholesky, and the
solve is refined once against the matrix above (``_solve_active_set_kkt``). On well-posed
problems this matches the exact KKT derivative to ~1e-9 relative in float64, at any tol
(tests/test_qp.py checks 1e-7 at n = 50). (OptNet reuses the solver's last factorization, whose
entries grow like 1/tol at active constraints; ift_lib pays for two small well-scaled
factorizations instead.)
dQ enters only through its symmetric part (dQ + dQ')/2 -- the QP depends on sym(Q) only -- so
reverse mode returns a symmetric dQ.

The active-set KKT matrix is invertible exactly when (i) the active rows of G with A are linearly
independent (LICQ) and (ii) Q is positive definite on the directions they leave free (the solution
is unique); with strict complementarity the IFT then gives the derivative. Both are checked on the
solution (LDL' pivots of small Gram matrices against ``RANK_TOL``, see ``ift_lib._qp_ipm``):
(ii) failing means a whole optimal face (an LP with its cost parallel to a face, a singular Q):
status 5, a failure. (i) failing (a repeated constraint) leaves z right and unique, and dz/dQ,
dz/dq exist mathematically, but the matrix factorized here is singular -- a limitation of this
method: status 6, z returned, every derivative NaN. An LP at a vertex is fine (derivative 0).
Convergence at tol bounds s'lam relative to the objective, not each s_i lam_i relative to the
constraint's own margin, so a nearly degenerate constraint (a multiplier or slack of 1e-5, say)
can still have s_i ~ lam_i at the first converged iterate; the solver then iterates on (at most
``SEPARATION_STEPS`` = 8 more steps) until every constraint is clearly active or inactive.
At a weakly active constraint (lam_i = s_i = 0) they never separate (lam_i ~ s_i ~ sqrt(mu));
it counts as inactive, and the derivative is the one-sided one of the side where the constraint
is released (like ReLU'(0) = 0). Second derivatives work (the rule calls the solver again).

Statuses (``QPSolution.status``, a :class:`Status`): 0 SOLVED, 1 MAX_ITER, 2 PRIMAL_INFEASIBLE,
3 DUAL_INFEASIBLE (unbounded below), 4 BAD_INPUT (NaN/inf entries, Q not symmetric PSD),
5 NOT_UNIQUE (a whole optimal face), 6 DEPENDENT_CONSTRAINTS (z is right; its derivative is not
computed). Each failure has its exception (``QPError.for_status``). With ``throw=True`` (the
default) a concrete status raises -- plain calls, and an eager jax.grad or jax.jvp, whose solution
values are concrete -- for statuses 1-5, and for 6 when differentiated. Under jit or vmap nothing
can raise: the status is returned, z, lam, nu and s are NaN for statuses 1-5, and every
derivative is NaN for every status but 0 -- never a silent wrong answer, not even a merely
unconverged one. ``throw=False`` returns the status in every case. Shape errors are always raised
(shapes are static).

Batching: each argument may carry the same leading batch dims, or none (then it is shared by the
batch: vmap with in_axes None, so its gradient is the sum over the batch).
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ift_lib._checks import is_concrete
from ift_lib._qp_linalg import after, cho_solve, inverse_cholesky, recording_factorizations
from ift_lib._qp_ipm import (ACTIVE_RATIO, DUAL_MAX_RATIO, DUAL_PIVOT, NEWTON_FORMS, RANK_TOL,
                             REG, STEP_FRACTION, QPSolution, Status, active_set, dual_form_ok,
                             interior_point)

__all__ = ["solve_qp", "QPSolution", "Status", "STATUS", "QPError", "QPInputError",
           "QPInfeasibleError", "QPUnboundedError", "QPNotConvergedError", "QPNotUniqueError",
           "QPDependentConstraintsError", "recording_factorizations", "REG", "STEP_FRACTION",
           "ACTIVE_RATIO", "RANK_TOL", "DUAL_PIVOT", "DUAL_MAX_RATIO",
           "NEWTON_FORMS"]

#: status code -> message (the same as ``Status(code).message``)
STATUS = {int(code): code.message for code in Status}


class QPError(ValueError):
    """Base class of solve_qp's errors; ``status`` is the :class:`Status` it reports."""
    status: Status | None = None

    @staticmethod
    def for_status(status: int) -> type["QPError"]:
        """The exception class of a failure status."""
        return {cls.status: cls for cls in QPError.__subclasses__()}[Status(status)]


class QPInputError(QPError):
    """Bad input: shapes, NaN/inf entries, Q not symmetric positive semidefinite (status 4)."""
    status = Status.BAD_INPUT


class QPInfeasibleError(QPError):
    """The constraints Gz <= h, Az = b have no solution (status 2)."""
    status = Status.PRIMAL_INFEASIBLE


class QPUnboundedError(QPError):
    """The objective is unbounded below on the feasible set (status 3)."""
    status = Status.DUAL_INFEASIBLE


class QPNotConvergedError(QPError):
    """The interior-point method reached max_iter before the tolerance (status 1)."""
    status = Status.MAX_ITER


class QPNotUniqueError(QPError):
    """The optimal solution is not unique: a whole face is optimal, z* has no derivative (status 5)."""
    status = Status.NOT_UNIQUE


class QPDependentConstraintsError(QPError):
    """Differentiating a solution whose active constraints are linearly dependent (status 6)."""
    status = Status.DEPENDENT_CONSTRAINTS


# ----------------------------------------------------------------------------- the derivative

@functools.partial(jax.custom_jvp, nondiff_argnums=(7, 8, 9))
def _qp(Q, q, G, h, A, b, use_dual, tol, max_iter, newton):
    return interior_point(Q, q, G, h, A, b, use_dual, tol, max_iter, newton)


def _active_set_kkt_times(Q, G, A, act, dz, dlam, dnu):
    """K [dz; dlam; dnu] for the active-set KKT matrix K at the exact solution (act (m,) the 0/1
    active mask), each complementarity row divided by its nonzero factor: G_i dz for an active
    constraint (s_i = 0, row divided by lam_i), -dlam_i for an inactive one (lam_i = 0, divided
    by -s_i). As products with Q, G, A: K itself ((n + m + p)^2 per problem) is never formed."""
    return jnp.concatenate([Q @ dz + G.T @ dlam + A.T @ dnu,
                            act * (G @ dz) + (act - 1.0) * dlam,
                            A @ dz])


class ActiveSetFactors(NamedTuple):
    """The active-set KKT matrix, reduced to two positive definite blocks (see
    ``_factor_active_set_kkt``): U (m + p, n) the unit active rows of G with A (inactive rows 0),
    scale (m + p,) = 1 / |row| (1 for an inactive row), c = max(1, max|Q|), M = L^-1 (n, n) with
    L L' = Q + c U'U, W = M U' (n, m + p), Ms = Ls^-1 (m + p, m + p) with
    Ls Ls' = W'W + diag(inactive)."""
    U: jax.Array
    scale: jax.Array
    c: jax.Array
    M: jax.Array
    W: jax.Array
    Ms: jax.Array


def _factor_active_set_kkt(Q, G, A, active) -> ActiveSetFactors:
    """Factorize the active-set KKT matrix K (``_active_set_kkt_times`` applies it) in reduced form.

    Its inactive rows fix dlam_i; what is left is the equality-constrained KKT system with the
    active rows N of G and A. Written with unit rows U = diag(scale) N, it is solved by the
    augmented Lagrangian H = Q + c U'U (positive definite exactly when Q is positive definite on
    {d: Nd = 0}, the unique-solution condition) and the Schur complement U H^-1 U' (positive
    definite exactly when the active rows are independent, LICQ): two Cholesky factorizations,
    of sizes n and m + p, instead of an LU of size n + m + p."""
    N = jnp.concatenate([active[:, None] * G, A])
    norm = jnp.sqrt(jnp.sum(N * N, axis=-1))
    scale = 1.0 / jnp.where(norm > 0, norm, 1.0)
    U = scale[:, None] * N
    c = jnp.maximum(1.0, jnp.max(jnp.abs(Q), initial=0.0))
    M = inverse_cholesky(0.5 * (Q + Q.T) + c * (U.T @ U), "active-set kkt")
    W = M @ U.T
    inactive = jnp.concatenate([~active, jnp.zeros(A.shape[0], bool)]).astype(Q.dtype)
    Ms = inverse_cholesky(W.T @ W + jnp.diag(inactive), "active-set kkt schur")
    return ActiveSetFactors(U, scale, c, M, W, Ms)


def _solve_active_set_kkt_once(f: ActiveSetFactors, G, act, r1, r2, r3):
    """(dz, dlam, dnu) with K [dz; dlam; dnu] = [r1; r2; r3], K the active-set KKT matrix, act
    (m,) its 0/1 active mask. Linear in (r1, r2, r3) (products with the mask, no branches), so
    JAX transposes it for reverse mode. The equations:

        inactive i:  -dlam_i = r2_i
        Q dz + N'y = r1 - G'dlam_inactive,   N dz = (act r2, r3),   y = (dlam_active, dnu)

    and with unit rows U = diag(scale) N, y = diag(scale) y~, H = Q + c U'U:
        (U H^-1 U') y~ = U H^-1 (r1' + c U't) - t,  t = diag(scale) (act r2, r3),
        dz = H^-1 (r1' + c U't - U'y~)."""
    m = G.shape[0]
    dlam_inactive = -(1.0 - act) * r2
    t = f.scale * jnp.concatenate([act * r2, r3])
    v = f.M @ (r1 - G.T @ dlam_inactive + f.c * (f.U.T @ t))
    y = cho_solve(f.Ms, f.W.T @ v - t)
    dz = f.M.T @ (v - f.W @ y)
    y = f.scale * y
    return dz, act * y[:m] + dlam_inactive, y[m:]


def _solve_active_set_kkt(f: ActiveSetFactors, Q, G, A, act, r):
    """K x = r (r = (r1, r2, r3) of sizes n, m, p) by the reduced factorization, refined once
    against K itself (``_active_set_kkt_times``; the reduction squares no condition number, but
    H and U H^-1 U' can be worse conditioned than K: the refinement step restores K's accuracy)."""
    n, m = f.M.shape[0], G.shape[0]
    x = _solve_active_set_kkt_once(f, G, act, *r)
    e = jnp.concatenate(r) - _active_set_kkt_times(Q, G, A, act, *x)
    dx = _solve_active_set_kkt_once(f, G, act, e[:n], e[n:n + m], e[n + m:])
    return jnp.concatenate([a + d for a, d in zip(x, dx)])


@_qp.defjvp
def _qp_jvp(tol, max_iter, newton, primals, tangents):
    Q, q, G, h, A, b, use_dual = primals
    dQ, dq, dG, dh, dA, db, _ = tangents
    sol = _qp(Q, q, G, h, A, b, use_dual, tol, max_iter, newton)
    z, lam, nu = sol.z, sol.lam, sol.nu
    n, m = Q.shape[0], G.shape[0]
    # The exact solution has s_i = 0 (active) or lam_i = 0 (inactive); the interior point has
    # lam_i s_i ~ tol. Differentiate the exact KKT system, with the smaller of the two taken as 0.
    active = active_set(sol.s, lam)
    dQs = 0.5 * (dQ + dQ.T)          # the QP depends on sym(Q) only
    lam = jnp.where(active, lam, 0.0)   # the exact solution's multipliers: 0 when inactive
    act = active.astype(Q.dtype)
    rhs = (-(dQs @ z + dq + dG.T @ lam + dA.T @ nu),
           -act * (dG @ z - dh),                          # a product: NaN stays NaN
           -(dA @ z - db))
    x = _solve_active_set_kkt(_factor_active_set_kkt(Q, G, A, active), Q, G, A, act, rhs)
    dz, dlam, dnu = x[:n], x[n:n + m], x[n + m:]
    ds = dh - dG @ z - G @ dz
    # every status but 0 (not converged, infeasible, unbounded, bad input, not unique, dependent
    # active constraints): NaN tangents. A product, not a jnp.where, so the tangent stays linear
    # (transposable)
    bad = sol.status != 0
    poison = jnp.where(bad, jnp.nan, 1.0).astype(Q.dtype)
    # ... and a term that is 0 when all is well, NaN otherwise, and touches every input tangent,
    # so that in reverse mode every input's gradient is NaN too (not a 0 from a path that a
    # NaN happened not to reach)
    leak = (poison - 1.0) * sum(jnp.sum(t) for t in (dQ, dq, dG, dh, dA, db))
    dz, dlam, dnu, ds = (poison * x + leak for x in (dz, dlam, dnu, ds))
    zero = lambda a: jnp.zeros_like(a)
    int0 = lambda a: np.zeros(a.shape, jax.dtypes.float0)
    return sol, QPSolution(dz, dlam, dnu, ds, int0(sol.iterations), zero(sol.primal_residual),
                           zero(sol.dual_residual), zero(sol.gap), int0(sol.status))


def _dual_form_ok_all(Q, A, in_axes):
    """True when every QP of the (flattened) batch may use the dual Newton form."""
    if in_axes[0] is None and in_axes[4] is None:
        return dual_form_ok(Q, A)
    return jnp.all(jax.vmap(dual_form_ok, in_axes=(in_axes[0], in_axes[4]))(Q, A))


_dual_form_ok_all_jit = jax.jit(_dual_form_ok_all, static_argnums=2)


@functools.partial(jax.jit, static_argnums=(6, 7, 8, 9))
def _solve_flat(Q, q, G, h, A, b, tol, max_iter, in_axes, newton):
    m, p = G.shape[-2], A.shape[-2]
    # "auto": one test for the whole batch, so that the lax.cond between the two forms stays
    # a branch under vmap (a per-QP test would run both forms); the solve is ordered after it
    if newton == "auto":
        use_dual = _dual_form_ok_all(Q, A, in_axes)
        Q = after(Q, use_dual)
    else:
        use_dual = jnp.zeros((), bool)
    # Empty outputs (lam, s without inequalities, nu without equalities) are left out of the
    # vmapped function and added back afterwards: JAX (0.10) fails to differentiate a jitted
    # vmap of a custom_jvp function with a zero-size batched output.
    empty = {"lam": not m, "s": not m, "nu": not p}

    def fn(*args):
        sol = _qp(*args, use_dual, tol, max_iter, newton)
        return sol._replace(**{k: None for k, e in empty.items() if e})

    batched = any(ax is not None for ax in in_axes)
    if batched:
        fn = jax.vmap(fn, in_axes=in_axes)
    sol = fn(Q, q, G, h, A, b)
    lead = sol.z.shape[:1] if batched else ()
    return sol._replace(**{k: jnp.zeros(lead + (0,), sol.z.dtype)
                           for k, e in empty.items() if e})


# ----------------------------------------------------------------------------- the public function

_BASE_NDIM = {"Q": 2, "q": 1, "G": 2, "h": 1, "A": 2, "b": 1}


def _as_float(name, x):
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise QPInputError(f"solve_qp: {name} must be real, got dtype {x.dtype}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if x.ndim < _BASE_NDIM[name]:
        raise QPInputError(f"solve_qp: {name} must have at least {_BASE_NDIM[name]} dims, "
                           f"got shape {x.shape}")
    return x


def _check_shapes(args, n, m, p):
    expected = {"Q": (n, n), "q": (n,), "G": (m, n), "h": (m,), "A": (p, n), "b": (p,)}
    how = {"Q": "n x n", "q": "n", "G": "m x n", "h": "m", "A": "p x n", "b": "p"}
    for name, x in args.items():
        if x is not None and x.shape[x.ndim - _BASE_NDIM[name]:] != expected[name]:
            raise QPInputError(
                f"solve_qp: {name} must have shape (..., {', '.join(map(str, expected[name]))}) "
                f"({how[name]}, with n = {n} from q, m = {m} rows of G, p = {p} rows of A); "
                f"got {x.shape}")
    batch = {name: x.shape[:x.ndim - _BASE_NDIM[name]] for name, x in args.items()
             if x is not None and x.ndim > _BASE_NDIM[name]}
    shapes = set(batch.values())
    if len(shapes) > 1:
        ref = next(iter(batch))
        other = next(k for k, v in batch.items() if v != batch[ref])
        raise QPInputError(
            f"solve_qp: {other} has batch dims {batch[other]} but {ref} has {batch[ref]}; every "
            "batched argument must have the same leading dims (an argument without them is shared)")
    return shapes.pop() if shapes else ()


def _concrete_checks(args):
    """Input checks that need values (concrete inputs only): finite entries, Q symmetric PSD."""
    for name, x in args.items():
        if x is not None:
            bad = int(np.sum(~np.isfinite(np.asarray(x))))
            if bad:
                raise QPInputError(f"solve_qp: {name} contains {bad} NaN or infinite "
                                   f"entr{'y' if bad == 1 else 'ies'}")
    Q = np.asarray(args["Q"])
    n = Q.shape[-1]
    eps = np.finfo(Q.dtype).eps
    scale = max(float(np.max(np.abs(Q), initial=0.0)), np.finfo(Q.dtype).tiny)
    asym = float(np.max(np.abs(Q - np.swapaxes(Q, -1, -2)), initial=0.0))
    if asym > 100 * eps * scale:
        raise QPInputError(f"solve_qp: Q must be symmetric; max |Q - Q'| = {asym:.3e}")
    min_eig = float(np.min(np.linalg.eigvalsh(0.5 * (Q + np.swapaxes(Q, -1, -2)))))
    if min_eig < -100 * n * eps * scale:
        raise QPInputError(f"solve_qp: Q must be positive semidefinite (a convex QP); its smallest "
                           f"eigenvalue is {min_eig:.3e}")


_EXPLAIN = {
    Status.BAD_INPUT: "bad input (NaN/inf, or Q not symmetric PSD)",
    Status.PRIMAL_INFEASIBLE: "primal infeasible: no z satisfies Gz <= h and Az = b (a Farkas "
                              "certificate lam >= 0, nu with G'lam + A'nu = 0 and h'lam + b'nu < 0 "
                              "was found)",
    Status.DUAL_INFEASIBLE: "dual infeasible: the objective is unbounded below (a direction d with "
                            "Qd = 0, Ad = 0, Gd <= 0, q'd < 0 was found)",
    Status.MAX_ITER: "not converged within max_iter iterations",
    Status.NOT_UNIQUE: "solved, but its solution is not unique: Q is singular on the directions "
                       "the active constraints leave free, so a whole face of the feasible set is "
                       "optimal (an LP or a singular Q); z is one optimal point and has no "
                       "derivative (the KKT matrix is singular)",
    Status.DEPENDENT_CONSTRAINTS: "solved, but its active constraints (active rows of G with A) "
                                  "are linearly dependent: the multipliers are not unique and the "
                                  "KKT matrix is singular, so solve_qp cannot differentiate it "
                                  "(z itself is right)"}


def _raise_for_status(sol, batch, differentiating):
    """Raise the error of the first bad status found (concrete results only), in the order of
    ``_EXPLAIN``. DEPENDENT_CONSTRAINTS only when differentiating."""
    status = np.asarray(sol.status).reshape(-1)
    if not differentiating:
        status = np.where(status == Status.DEPENDENT_CONSTRAINTS, Status.SOLVED, status)
    for code, what in _EXPLAIN.items():
        where = np.flatnonzero(status == code)
        if where.size:
            at = ""
            if batch:
                index = [tuple(int(i) for i in np.unravel_index(k, batch)) for k in where[:5]]
                at = f" at batch index {index}" + (" ..." if where.size > 5 else "")
            raise QPError.for_status(code)(
                f"solve_qp: the QP is {what}{at} (status {int(code)}, {code.name})")


def solve_qp(Q, q, G=None, h=None, A=None, b=None, *, tol: float | None = None,
             max_iter: int = 100, newton: str = "auto", throw: bool = True) -> QPSolution:
    """Solve min 1/2 z'Qz + q'z s.t. Gz <= h, Az = b; differentiable in all of Q, q, G, h, A, b.

    Shapes: Q (..., n, n) symmetric PSD, q (..., n), G (..., m, n) and h (..., m) (both or
    neither), A (..., p, n) and b (..., p) (both or neither); each with the same batch dims
    (...) or none (shared). ``tol`` (default 1e-10 in float64, 1e-5 in float32) bounds the
    relative primal and dual residuals and the duality gap; ``max_iter`` bounds the
    interior-point iterations. Returns a :class:`QPSolution`.

    ``newton`` chooses how each interior-point iteration solves its Newton system:
    "primal" factorizes Q + G'DG + rho A'A + delta I (n x n) every iteration, for any PSD Q;
    "dual" factorizes Q0 = Q + rho A'A + delta I once and then an m x m matrix per iteration
    (faster when m < n; needs Q0 well conditioned, see ``DUAL_PIVOT``, else QPInputError, or
    status BAD_INPUT with throw=False or under jit); "auto" (default) takes the dual form when
    0 < m <= DUAL_MAX_RATIO * n and every QP of the batch passes the test, else the primal form
    (under jit both forms are compiled, behind one lax.cond; under a user's jax.vmap over
    solve_qp the cond becomes a select and both forms run: pass a batch instead, or choose the
    form). The solution is the same to the tolerance.

    ``throw=True``: a concrete failure status raises (below); ``throw=False``: it never does, the
    caller reads ``status`` (a :class:`Status`; failures come with NaN values).

    Raises QPInputError for bad shapes (always) and, with concrete inputs, for NaN/inf entries
    or a Q that is not symmetric PSD; QPInfeasibleError, QPUnboundedError, QPNotConvergedError,
    QPNotUniqueError for statuses 2, 3, 1, 5 (also under an eager jax.grad), and
    QPDependentConstraintsError for status 6 when differentiated eagerly. Under jit/vmap it
    returns the status instead (see the module docstring; z etc. are NaN for statuses 1-5, and
    every derivative is NaN for every status but 0).
    """
    if newton not in NEWTON_FORMS:
        raise QPInputError(f"solve_qp: newton must be one of {NEWTON_FORMS}, got {newton!r}")
    if (G is None) != (h is None):
        raise QPInputError("solve_qp: G and h must be given together (Gz <= h)")
    if (A is None) != (b is None):
        raise QPInputError("solve_qp: A and b must be given together (Az = b)")
    args = {"Q": Q, "q": q, "G": G, "h": h, "A": A, "b": b}
    args = {k: None if v is None else _as_float(k, v) for k, v in args.items()}
    n = args["q"].shape[-1]
    m = args["G"].shape[-2] if G is not None else 0
    p = args["A"].shape[-2] if A is not None else 0
    batch = _check_shapes(args, n, m, p)
    dtype = jnp.result_type(*[v for v in args.values() if v is not None])
    concrete = is_concrete(list(args.values()))
    if concrete and throw:
        _concrete_checks(args)
    if tol is None:
        tol = 1e-10 if dtype == jnp.float64 else 1e-5
    empty = {"G": (0, n), "h": (0,), "A": (0, n), "b": (0,)}
    size = math.prod(batch)
    flat, in_axes = [], []
    for k, v in args.items():
        if v is None:
            v = jnp.zeros(empty[k], dtype)
        v = v.astype(dtype)
        if v.ndim > _BASE_NDIM[k]:
            flat.append(v.reshape((size,) + v.shape[len(batch):]))
            in_axes.append(0)
        else:
            flat.append(v)
            in_axes.append(None)
    in_axes = tuple(in_axes)
    if newton == "auto" and not 0 < m <= DUAL_MAX_RATIO * n:
        # the dual form's m x m system is no smaller; without inequalities one step solves the
        # QP, and the primal form saves compiling both forms under jit
        newton = "primal"
    if newton != "primal" and concrete:
        # the test once, eagerly: only the chosen form is compiled ("auto" under jit compiles both)
        ok = bool(_dual_form_ok_all_jit(flat[0], flat[4], in_axes))
        if newton == "dual" and not ok and throw:
            raise QPInputError(
                "solve_qp: newton='dual' needs Q + rho A'A positive definite and well conditioned "
                f"(smallest Cholesky pivot >= DUAL_PIVOT = {DUAL_PIVOT:g} times max(1, largest "
                "diagonal entry)); some QP fails this: use newton='primal' or 'auto'")
        if newton == "auto":
            newton = "dual" if ok else "primal"
    sol = _solve_flat(*flat, float(tol), int(max_iter), in_axes, newton)
    if batch:
        sol = QPSolution(*[x.reshape(batch + x.shape[1:]) for x in sol])
    # Raise when the status is a concrete value: plain calls, and eager jax.grad / jvp (the
    # inputs are then tracers but the solution's values are concrete); not under jit or vmap.
    if throw and not isinstance(sol.status, jax.core.Tracer):
        _raise_for_status(sol, batch, differentiating=not concrete)
    return sol
