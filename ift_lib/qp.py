"""Convex quadratic programs, solved by an interior-point method and differentiated by the IFT.

    minimize_z  1/2 z'Qz + q'z      s.t.  Gz <= h  (m rows),  Az = b  (p rows),   z in R^n

Sign convention (as in ``ift_lib.softmax``): the Lagrangian is

    L(z, lam, nu) = 1/2 z'Qz + q'z + nu'(Az - b) + lam'(Gz - h),      lam >= 0,

so the KKT conditions at the solution, with slack s = h - Gz, are

    Qz + q + G'lam + A'nu = 0,   Az = b,   s >= 0,   lam >= 0,   lam * s = 0.

Value: a primal-dual interior-point method with Mehrotra's predictor-corrector (the LP-cone case
of CVXOPT's ``coneqp``, as in OptNet), jit-compiled, one ``lax.while_loop`` of at most
``max_iter`` steps. Each step eliminates ds and dlam from the Newton system (symmetric block
elimination) and solves the remaining symmetric (n + p) system

    [[Q + G' D G + delta I,  A'      ],   [dz ]
     [A,                     -delta I]] . [dnu]  = rhs,        D = diag(lam / s),

by one factorization shared by predictor and corrector: Cholesky of the (1, 1) block when there
are no equalities (p = 0; it is positive definite), else LU of the whole saddle-point matrix
(indefinite, so no Cholesky; a Schur complement A H^-1 A' would be Cholesky-able too, but is
fragile when H is nearly singular, as in LPs). The regularization delta (``REG`` times
max(1, max|Q|)) keeps the system solvable when Q + G'DG is singular or A is rank deficient; it
only perturbs the Newton direction (the residuals are always evaluated exactly), and it is what
makes an unbounded problem show up as a diverging iterate (status 3) instead of a singular
factorization. Near the solution D has entries ~1e10 at active constraints and the eliminated
system loses digits; one step of iterative refinement against the unreduced Newton system
(two more triangular solves) restores them -- without it the dual residual stalls above tol.
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
each constraint counts as active when s_i < lam_i / 10 (``ACTIVE_RATIO``). Each complementarity row is divided by its
nonzero factor, which leaves the well-scaled (n + m + p) matrix

    [[Q,       G',         A'],      M = diag(active)
     [M G,     -(I - M),   0 ],
     [A,       0,          0 ]],

factorized once (LU) per derivative; on well-posed problems this matches the exact KKT
derivative to ~1e-9 relative in float64, at any tol (tests/test_qp.py checks 1e-7 at n = 50).
(OptNet instead reuses the solver's last factorization of the eliminated system
[[Q + G'DG, A'], [A, 0]], D = lam / s, whose entries grow like 1/tol at active constraints;
ift_lib pays for one well-scaled factorization instead.)
dQ enters only through its symmetric part (dQ + dQ')/2 -- the QP depends on sym(Q) only -- so
reverse mode returns a symmetric dQ.

The active-set KKT matrix is invertible exactly when (i) the active rows of G together with A
are linearly independent (LICQ) and (ii) Q is positive definite on the directions they leave
free (then the solution is unique); with strict complementarity (no lam_i = s_i = 0) the IFT then
gives the derivative. Both (i) and (ii) are checked on the solution, by Cholesky factorizations
of small Gram matrices with a relative pivot tolerance ``RANK_TOL`` (not by waiting for the LU
to divide by zero):
  - (ii) fails: a whole face is optimal (an LP whose cost is parallel to a face, a singular Q with
    a flat direction inside the feasible set); z is one optimal point and has no derivative:
    status 5, a failure (NaN under jit, QPNotUniqueError eagerly). An LP at a vertex is fine:
    there the KKT matrix is invertible and its derivative is 0.
  - (i) fails (e.g. a constraint repeated): z is right and unique, only the multipliers are not.
    Then dz/dQ and dz/dq exist mathematically (dz w.r.t. h, G, A, b of the dependent rows in
    general does not: perturbing one copy alone gives a kink or an infeasible problem), but the
    KKT matrix factorized here is singular. A limitation of this method, not of the math:
    status 6, z returned, every derivative NaN (QPDependentConstraintsError when differentiated
    eagerly).
At a weakly active constraint (lam_i = s_i = 0) the interior point has lam_i ~ s_i ~ sqrt(tol)
(so z is only sqrt(tol)-accurate there); since s_i < lam_i / 10 fails, it counts as inactive and
the returned derivative is the one-sided derivative of the side where the constraint is
released -- finite and deterministic, like ReLU'(0) = 0, but not continuous there. Second
derivatives work (the rule calls the solver through ``custom_jvp`` again).

Status codes (``QPSolution.status``):
    0 solved, 1 ``max_iter`` reached, 2 primal infeasible, 3 dual infeasible (unbounded below),
    4 bad input (NaN/inf entries, Q not symmetric or not positive semidefinite), 5 solution not
    unique (a whole optimal face), 6 solved but the active constraints are dependent (z is
    right; its derivative is not computed).
Eagerly (concrete inputs, and also an eager jax.grad or jax.jvp, whose solution values are
concrete), ``solve_qp`` raises a ``QPError`` (a ValueError) for statuses 1-5, and for status 6 when
it is being differentiated. Under jit or vmap it cannot raise: it returns the status, and for
statuses 1-5 z, lam, nu and s are NaN; every derivative is NaN for every status but 0 -- never a
silent wrong answer, not even a merely unconverged one. Shape errors are raised in every case
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
from jax.scipy.linalg import cho_solve

from ift_lib._checks import is_concrete

__all__ = ["solve_qp", "QPSolution", "QPError", "QPInputError", "QPInfeasibleError",
           "QPUnboundedError", "QPNotConvergedError", "QPNotUniqueError",
           "QPDependentConstraintsError", "STATUS"]

STATUS = {0: "solved", 1: "max_iter reached", 2: "primal infeasible",
          3: "dual infeasible (unbounded)", 4: "bad input",
          5: "solution not unique (a whole optimal face)",
          6: "solved, active constraints dependent (no derivative computed)"}

#: Relative regularization delta of the Newton system (see the module docstring).
REG = 1e-13
#: Fraction of the step to the boundary of s, lam >= 0.
STEP_FRACTION = 0.99
#: A constraint counts as active when s_i < ACTIVE_RATIO * lam_i (see ``_active_set``).
ACTIVE_RATIO = 0.1
#: Relative size below which a pivot of the rank tests (LICQ, unique solution) counts as zero.
RANK_TOL = 1e-10


class QPError(ValueError):
    """Base class of solve_qp's errors."""


class QPInputError(QPError):
    """Bad input: shapes, NaN/inf entries, Q not symmetric positive semidefinite (status 4)."""


class QPInfeasibleError(QPError):
    """The constraints Gz <= h, Az = b have no solution (status 2)."""


class QPUnboundedError(QPError):
    """The objective is unbounded below on the feasible set (status 3)."""


class QPNotConvergedError(QPError):
    """The interior-point method reached max_iter before the tolerance (status 1)."""


class QPNotUniqueError(QPError):
    """The optimal solution is not unique: a whole face is optimal, z* has no derivative (status 5)."""


class QPDependentConstraintsError(QPError):
    """Differentiating a solution whose active constraints are linearly dependent (status 6)."""


class QPSolution(NamedTuple):
    """Solution of a QP; shapes for batch dims (...), n variables, m inequalities, p equalities
    (an absent block gives m = 0 or p = 0, i.e. empty arrays).

    z (..., n); lam (..., m) >= 0 (multipliers of Gz <= h); nu (..., p) (of Az = b);
    s (..., m) = h - Gz; iterations (...) int; primal_residual (...) = max(|Gz + s_ipm - h|,
    |Az - b|) (s_ipm >= 0 the method's own slack); dual_residual (...) = |Qz + q + G'lam + A'nu|
    (max norms); gap (...) = s_ipm.lam; status (...) int (see ``STATUS``).
    """
    z: jax.Array
    lam: jax.Array
    nu: jax.Array
    s: jax.Array
    iterations: jax.Array
    primal_residual: jax.Array
    dual_residual: jax.Array
    gap: jax.Array
    status: jax.Array


# ----------------------------------------------------------------------------- the solver

def _maxabs(x):
    return jnp.max(jnp.abs(x)) if x.size else jnp.zeros((), x.dtype)


def _input_status(Q, q, G, h, A, b):
    """True when the inputs are bad (non-finite entries, Q not symmetric PSD)."""
    finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in (Q, q, G, h, A, b)]))
    Qf = jnp.where(jnp.isfinite(Q), Q, 0.0)
    scale = jnp.maximum(_maxabs(Qf), jnp.finfo(Q.dtype).tiny)
    n = Q.shape[-1]
    eps = jnp.finfo(Q.dtype).eps
    asym = _maxabs(Qf - Qf.T) > 100 * eps * scale
    # Q + shift I is positive definite iff min eig(Q) > -shift: a Cholesky factorization (about
    # 10x cheaper than the eigenvalues) fails, with NaN, exactly when Q is not PSD up to the shift
    shift = 100 * n * eps * jnp.maximum(scale, 1.0)
    chol = jnp.linalg.cholesky(0.5 * (Qf + Qf.T) + shift * jnp.eye(n, dtype=Q.dtype))
    not_psd = ~jnp.all(jnp.isfinite(chol))
    return ~finite | asym | not_psd


def _residuals(Q, q, G, h, A, b, z, s, lam, nu):
    rd = Q @ z + q + G.T @ lam + A.T @ nu
    rin = G @ z + s - h
    req = A @ z - b
    return rd, rin, req


def _status(Q, q, G, h, A, b, z, s, lam, nu, tol):
    """(status, primal residual, dual residual, gap): status -1 = keep going, 0 solved, 2, 3.

    The residuals are compared with tol times the size of the terms they are made of (a residual
    of 1e-9 is converged when Qz and G'lam have entries of 10, not when they are 1e-3)."""
    rd, rin, req = _residuals(Q, q, G, h, A, b, z, s, lam, nu)
    pres = jnp.maximum(_maxabs(rin), _maxabs(req))
    dres = _maxabs(rd)
    gap = jnp.dot(s, lam)
    obj = 0.5 * z @ (Q @ z) + q @ z
    p_scale = 1 + jnp.max(jnp.array([_maxabs(h), _maxabs(b), _maxabs(G @ z), _maxabs(A @ z)]))
    d_scale = 1 + jnp.max(jnp.array([_maxabs(q), _maxabs(Q @ z), _maxabs(G.T @ lam),
                                     _maxabs(A.T @ nu)]))
    p_ok = pres <= tol * p_scale
    d_ok = dres <= tol * d_scale
    solved = p_ok & d_ok & (gap <= tol * (1 + jnp.abs(obj)))
    eps_inf = jnp.sqrt(tol) * 1e-3                      # 1e-8 for tol = 1e-10
    # primal infeasibility (Farkas): lam >= 0, nu with G'lam + A'nu = 0 and h'lam + b'nu < 0
    hy = h @ lam + b @ nu
    infeasible = ~p_ok & (hy < 0) & (_maxabs(G.T @ lam + A.T @ nu) <= eps_inf * -hy)
    # dual infeasibility: a direction z with Qz = 0, Az = 0, Gz <= 0 and q'z < 0
    qz = q @ z
    gz = jnp.max(G @ z) if G.shape[0] else jnp.zeros((), z.dtype)
    unbounded = ~d_ok & (qz < 0) & (jnp.maximum(jnp.maximum(_maxabs(Q @ z), _maxabs(A @ z)),
                                                gz) <= eps_inf * -qz)
    status = jnp.where(solved, 0, jnp.where(infeasible, 2, jnp.where(unbounded, 3, -1)))
    return status, pres, dres, gap


def _lu_factor(K):
    """LU factorization with partial pivoting, P K = L U, in plain JAX (a loop of rank-1 updates):
    returns (LU, perm) with L (unit lower) and U packed in LU and perm the row order.

    Written out instead of calling jax.scipy.linalg.lu_factor because jaxlib's batched LAPACK LU
    (jax 0.10.2) splits a large batch over XLA's thread pool and can deadlock inside a jitted,
    vmapped while_loop on 2 cores (seen every time at 64 QPs of n = 30 or 50, never below ~20).
    """
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


def _lu_solve(factors, b):
    """Solve K x = b with ``_lu_factor``'s (LU, perm)."""
    LU, perm = factors
    y = jax.lax.linalg.triangular_solve(LU, b[perm][:, None], left_side=True, lower=True,
                                        unit_diagonal=True)
    return jax.lax.linalg.triangular_solve(LU, y, left_side=True, lower=False)[:, 0]


# The Newton system of the interior-point method:
#
#     Q dz + G'dlam + A'dnu = r1,   G dz + ds = r2,   A dz = r3,   lam*ds + s*dlam = r4.      (N)
#
# It is solved by eliminating ds = r2 - G dz and dlam = (r4 - lam*r2 + lam*G dz)/s, which leaves
# the symmetric (n + p) system [[Q + G'DG, A'], [A, 0]] with D = diag(lam/s), factorized once per
# iterate (plus delta I on the diagonal, see the module docstring). Near the solution D has
# entries ~1e10 at active constraints, so the elimination loses digits; one step of iterative
# refinement against the unreduced system (N) restores them.

def _factor(Q, G, A, d, delta):
    """Factorize the eliminated Newton system: Cholesky of H = Q + G'DG + delta I when there are
    no equalities (H is then positive definite), else LU of the saddle-point matrix.
    Returns a tuple of arrays (so it can be carried by a loop and vmapped)."""
    n, p = Q.shape[0], A.shape[0]
    H = Q + G.T @ (d[:, None] * G) + delta * jnp.eye(n, dtype=Q.dtype)
    if not p:
        return (jnp.linalg.cholesky(H),)
    K = jnp.concatenate([jnp.concatenate([H, A.T], axis=1),
                         jnp.concatenate([A, -delta * jnp.eye(p, dtype=Q.dtype)], axis=1)], axis=0)
    return _lu_factor(K)


def _eliminated_solve(factors, n, rz, rnu):
    if len(factors) == 1:
        return cho_solve((factors[0], True), rz), rnu
    x = _lu_solve(factors, jnp.concatenate([rz, rnu]))
    return x[:n], x[n:]


def _newton_once(factors, Q, G, A, s, lam, r1, r2, r3, r4):
    n = Q.shape[0]
    w = (r4 - lam * r2) / s
    dz, dnu = _eliminated_solve(factors, n, r1 - G.T @ w, r3)
    ds = r2 - G @ dz
    dl = (r4 - lam * ds) / s
    return dz, ds, dl, dnu


def _solve_newton(factors, Q, G, A, s, lam, r1, r2, r3, r4):
    """Solve (N) with the factorization of its eliminated form, refined once against (N)."""
    x = _newton_once(factors, Q, G, A, s, lam, r1, r2, r3, r4)
    dz, ds, dl, dnu = x
    e = (r1 - (Q @ dz + G.T @ dl + A.T @ dnu), r2 - (G @ dz + ds), r3 - A @ dz,
         r4 - (lam * ds + s * dl))
    return tuple(xi + ci for xi, ci in zip(x, _newton_once(factors, Q, G, A, s, lam, *e)))


def _max_step(x, dx):
    """The largest a in [0, 1] with x + a dx >= 0 (x > 0)."""
    ratio = jnp.where(dx < 0, -x / jnp.where(dx < 0, dx, -1.0), jnp.inf)
    return jnp.minimum(1.0, jnp.min(ratio)) if x.size else jnp.ones((), x.dtype)


def _ipm(Q, q, G, h, A, b, tol, max_iter):
    """The interior-point method for one QP: returns a QPSolution (unbatched)."""
    n, m = Q.shape[0], G.shape[0]
    dtype = Q.dtype
    bad = _input_status(Q, q, G, h, A, b)
    delta = REG * jnp.maximum(1.0, _maxabs(jnp.where(jnp.isfinite(Q), Q, 0.0)))

    # Start (CVXOPT): solve the KKT system with D = I, then shift s and lam into the interior.
    fac = _factor(Q, G, A, jnp.ones(m, dtype), delta)
    z, nu = _eliminated_solve(fac, n, -q + G.T @ h, b)
    s = h - G @ z
    lam = -s
    if m:
        s = jnp.where(jnp.min(s) > 0, s, s + 1.0 - jnp.min(s))
        lam = jnp.where(jnp.min(lam) > 0, lam, lam + 1.0 - jnp.min(lam))

    def body(carry):
        it, z, s, lam, nu = carry[:5]
        fac = _factor(Q, G, A, lam / s, delta)
        rd, rin, req = _residuals(Q, q, G, h, A, b, z, s, lam, nu)
        newton = lambda r4: _solve_newton(fac, Q, G, A, s, lam, -rd, -rin, -req, r4)
        if m:
            mu = jnp.dot(s, lam) / m
            dz, ds, dl, dnu = newton(-s * lam)                                     # predictor
            a = jnp.minimum(_max_step(s, ds), _max_step(lam, dl))
            mu_aff = jnp.dot(s + a * ds, lam + a * dl) / m
            sigma = jnp.clip(mu_aff / mu, 0.0, 1.0) ** 3
            dz, ds, dl, dnu = newton(-s * lam - ds * dl + sigma * mu)              # corrector
            a = jnp.minimum(1.0, STEP_FRACTION * jnp.minimum(_max_step(s, ds), _max_step(lam, dl)))
        else:
            dz, ds, dl, dnu = newton(jnp.zeros(0, dtype))
            a = jnp.ones((), dtype)
        z, s, lam, nu = z + a * dz, s + a * ds, lam + a * dl, nu + a * dnu
        return (it + 1, z, s, lam, nu) + _status(Q, q, G, h, A, b, z, s, lam, nu, tol)

    def cond(carry):
        return (carry[5] == -1) & (carry[0] < max_iter)

    init = (jnp.zeros((), jnp.int32), z, s, lam, nu) + _status(Q, q, G, h, A, b, z, s, lam, nu, tol)
    init = init[:5] + (jnp.where(bad, 4, init[5]),) + init[6:]
    it, z, s, lam, nu, status, pres, dres, gap = jax.lax.while_loop(cond, body, init)
    status = jnp.where(status == -1, 1, status)
    # Solved: is the solution unique (status 5 if not), and are the active constraints
    # independent (status 6 if not)? Judged on the active set the derivative uses.
    active = _active_set(s, lam)
    status = jnp.where((status == 0) & _flat_direction(Q, G, A, active), 5, status)
    status = jnp.where((status == 0) & _dependent_active_rows(G, A, active), 6, status)
    status = status.astype(jnp.int32)
    failed = (status >= 1) & (status <= 5)
    nan = lambda x: jnp.where(failed, jnp.nan, x)
    return QPSolution(nan(z), nan(lam), nan(nu), nan(h - G @ z), it, pres, dres, gap, status)


@functools.partial(jax.custom_jvp, nondiff_argnums=(6, 7))
def _qp(Q, q, G, h, A, b, tol, max_iter):
    return _ipm(Q, q, G, h, A, b, tol, max_iter)


def _active_set(s, lam):
    """Which constraints the derivative treats as active (s_i = 0 at the exact solution).

    At the interior point an active constraint has s_i ~ tol / lam_i << lam_i and an inactive
    one lam_i << s_i. A weakly active one (lam_i = s_i = 0 exactly) has lam_i ~ s_i ~ sqrt(tol),
    and which of the two is smaller is decided by rounding; so a constraint counts as active only
    when s_i < lam_i / 10, and a weakly active one deterministically as inactive (the one-sided
    derivative of the side where the constraint is released, like ReLU'(0) = 0 in JAX)."""
    return s < ACTIVE_RATIO * lam


def _unit_rows(M):
    norms = jnp.sqrt(jnp.sum(M * M, axis=-1, keepdims=True))
    return M / jnp.maximum(norms, jnp.finfo(M.dtype).tiny)


def _min_pivot_ratio(H, scale):
    """The smallest pivot of an LDL' (Cholesky without square roots) factorization of H (PSD),
    over scale: ~0 when H is singular. In plain JAX (a loop of rank-1 updates), like _lu_factor:
    jaxlib's batched LAPACK factorizations can deadlock in XLA's thread pool at batch 64."""
    k = H.shape[-1]
    idx = jnp.arange(k)
    tiny = jnp.finfo(H.dtype).tiny

    def step(j, carry):
        H, dmin = carry
        d = H[j, j]
        l = jnp.where(idx > j, H[:, j] / jnp.where(d > tiny, d, 1.0), 0.0)
        H = H - jnp.where(d > tiny, d, 0.0) * jnp.outer(l, l)
        return H, jnp.minimum(dmin, d)

    _, dmin = jax.lax.fori_loop(0, k, step, (H, jnp.asarray(jnp.inf, H.dtype)))
    return dmin / scale


def _dependent_active_rows(G, A, active):
    """True when the active rows of G together with A are linearly dependent (LICQ fails): the
    multipliers are then not unique and the active-set KKT matrix is singular. Tested by a
    Cholesky factorization of the Gram matrix N N' of the unit rows N = [active rows of G; A]
    (the inactive rows are replaced by unit rows of the Gram matrix): a pivot below RANK_TOL
    (relative) counts as zero."""
    m, p = G.shape[0], A.shape[0]
    if not m + p:
        return jnp.zeros((), bool)
    N = _unit_rows(jnp.concatenate([jnp.where(active[:, None], G, 0.0), A]))
    keep = jnp.concatenate([~active, jnp.zeros(p, bool)])
    gram = N @ N.T + jnp.diag(keep.astype(N.dtype))
    return ~(_min_pivot_ratio(gram, 1.0) > RANK_TOL)       # also True when Cholesky failed (NaN)


def _flat_direction(Q, G, A, active):
    """True when the solution is not unique: some direction d with Ad = 0 and G_i d = 0 for every
    active i has d'Qd = 0 (Q is singular on the directions the active constraints leave free), so
    z can move along d, at the same cost, without leaving the feasible set -- a whole optimal
    face, as for an LP whose cost is parallel to a face. Then the active-set KKT matrix is
    singular whatever the multipliers.
    Tested by a Cholesky factorization of H = Q + c N'N, N = the unit active rows of G and A,
    c = max(1, max|Q|) (the scale of the solver's regularization): H is positive definite iff no
    such d exists; a pivot below RANK_TOL * c counts as zero (so a 'regularizer' 1e-12 |z|^2 does
    not make a flat face unique)."""
    n = Q.shape[0]
    N = _unit_rows(jnp.concatenate([jnp.where(active[:, None], G, 0.0), A]))
    c = jnp.maximum(1.0, _maxabs(Q))
    H = 0.5 * (Q + Q.T) + c * (N.T @ N) if N.shape[0] else 0.5 * (Q + Q.T)
    return ~(_min_pivot_ratio(H, c) > RANK_TOL) if n else jnp.zeros((), bool)


def _active_set_kkt_matrix(Q, G, A, active):
    """The KKT matrix at the exact solution, each complementarity row divided by its nonzero
    factor: G_i dz + ... for an active constraint (s_i = 0, row divided by lam_i), dlam_i = 0 for
    an inactive one (lam_i = 0, divided by -s_i). Size n + m + p, well scaled."""
    n, m, p = Q.shape[0], G.shape[0], A.shape[0]
    act = active.astype(Q.dtype)
    return jnp.concatenate([
        jnp.concatenate([Q, G.T, A.T], axis=1),
        jnp.concatenate([act[:, None] * G, jnp.diag(act - 1.0), jnp.zeros((m, p), Q.dtype)], axis=1),
        jnp.concatenate([A, jnp.zeros((p, m + p), Q.dtype)], axis=1)], axis=0)


@_qp.defjvp
def _qp_jvp(tol, max_iter, primals, tangents):
    Q, q, G, h, A, b = primals
    dQ, dq, dG, dh, dA, db = tangents
    sol = _qp(Q, q, G, h, A, b, tol, max_iter)
    z, lam, nu = sol.z, sol.lam, sol.nu
    n, m = Q.shape[0], G.shape[0]
    # The exact solution has s_i = 0 (active) or lam_i = 0 (inactive); the interior point has
    # lam_i s_i ~ tol. Differentiate the exact KKT system, with the smaller of the two taken as 0.
    active = _active_set(sol.s, lam)
    dQs = 0.5 * (dQ + dQ.T)          # the QP depends on sym(Q) only
    lam = jnp.where(active, lam, 0.0)   # the exact solution's multipliers: 0 when inactive
    rhs = -jnp.concatenate([dQs @ z + dq + dG.T @ lam + dA.T @ nu,
                            active.astype(Q.dtype) * (dG @ z - dh),    # a product: NaN stays NaN
                            dA @ z - db])
    x = _lu_solve(_lu_factor(_active_set_kkt_matrix(Q, G, A, active)), rhs)
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


@functools.partial(jax.jit, static_argnums=(6, 7, 8))
def _solve_flat(Q, q, G, h, A, b, tol, max_iter, in_axes):
    m, p = G.shape[-2], A.shape[-2]
    # Empty outputs (lam, s without inequalities, nu without equalities) are left out of the
    # vmapped function and added back afterwards: JAX (0.10) fails to differentiate a jitted
    # vmap of a custom_jvp function with a zero-size batched output.
    empty = {"lam": not m, "s": not m, "nu": not p}

    def fn(*args):
        sol = _qp(*args, tol, max_iter)
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


def _raise_for_status(sol, batch, differentiating):
    """Raise the error of the first bad status found (concrete results only). Status 6 (dependent
    active constraints: z is right, its derivative is not computed) only when differentiating."""
    status = np.asarray(sol.status).reshape(-1)
    if not differentiating:
        status = np.where(status == 6, 0, status)
    for code, error, what in [
            (4, QPInputError, "bad input (NaN/inf, or Q not symmetric PSD)"),
            (2, QPInfeasibleError, "primal infeasible: no z satisfies Gz <= h and Az = b (a "
                                   "Farkas certificate lam >= 0, nu with G'lam + A'nu = 0 and "
                                   "h'lam + b'nu < 0 was found)"),
            (3, QPUnboundedError, "dual infeasible: the objective is unbounded below (a "
                                  "direction d with Qd = 0, Ad = 0, Gd <= 0, q'd < 0 was found)"),
            (1, QPNotConvergedError, "not converged within max_iter iterations"),
            (5, QPNotUniqueError, "solved, but its solution is not unique: Q is singular on the "
                                  "directions the active constraints leave free, so a whole face "
                                  "of the feasible set is optimal (an LP or a singular Q); z is "
                                  "one optimal point and has no derivative (the KKT matrix is "
                                  "singular)"),
            (6, QPDependentConstraintsError,
             "solved, but its active constraints (active rows of G with A) are linearly "
             "dependent: the multipliers are not unique and the KKT matrix is singular, so "
             "solve_qp cannot differentiate it (z itself is right)")]:
        where = np.flatnonzero(status == code)
        if where.size:
            at = ""
            if batch:
                index = [tuple(int(i) for i in np.unravel_index(k, batch)) for k in where[:5]]
                at = f" at batch index {index}" + (" ..." if where.size > 5 else "")
            raise error(f"solve_qp: the QP is {what}{at} (status {code})")


def solve_qp(Q, q, G=None, h=None, A=None, b=None, *, tol: float | None = None,
             max_iter: int = 100) -> QPSolution:
    """Solve min 1/2 z'Qz + q'z s.t. Gz <= h, Az = b; differentiable in all of Q, q, G, h, A, b.

    Shapes: Q (..., n, n) symmetric PSD, q (..., n), G (..., m, n) and h (..., m) (both or
    neither), A (..., p, n) and b (..., p) (both or neither); each with the same batch dims
    (...) or none (shared). ``tol`` (default 1e-10 in float64, 1e-5 in float32) bounds the
    relative primal and dual residuals and the duality gap; ``max_iter`` bounds the
    interior-point iterations. Returns a :class:`QPSolution`.

    Raises QPInputError for bad shapes (always) and, with concrete inputs, for NaN/inf entries
    or a Q that is not symmetric PSD; QPInfeasibleError, QPUnboundedError, QPNotConvergedError,
    QPNotUniqueError for statuses 2, 3, 1, 5 (also under an eager jax.grad), and
    QPDependentConstraintsError for status 6 when differentiated eagerly. Under jit/vmap it
    returns the status instead (see the module docstring; z etc. are NaN for statuses 1-5, and
    every derivative is NaN for every status but 0).
    """
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
    if concrete:
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
    sol = _solve_flat(*flat, float(tol), int(max_iter), tuple(in_axes))
    if batch:
        sol = QPSolution(*[x.reshape(batch + x.shape[1:]) for x in sol])
    # Raise when the status is a concrete value: plain calls, and eager jax.grad / jvp (the
    # inputs are then tracers but the solution's values are concrete); not under jit or vmap.
    if not isinstance(sol.status, jax.core.Tracer):
        _raise_for_status(sol, batch, differentiating=not concrete)
    return sol
