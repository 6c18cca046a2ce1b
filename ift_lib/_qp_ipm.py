"""The interior-point iteration behind ``ift_lib.qp.solve_qp`` (public names of a private module).

One QP, unbatched (``solve_qp`` vmaps it):

    minimize_z  1/2 z'Qz + q'z   s.t.  Gz + s = h, s >= 0 (m rows),  Az = b (p rows).

Mehrotra's predictor-corrector (the LP-cone case of CVXOPT's ``coneqp``, as in OptNet), one
``lax.while_loop`` over a named :class:`IPMState`. The Newton system of an iterate,

    Q dz + G'dlam + A'dnu = r1,   G dz + ds = r2,   A dz = r3,   lam*ds + s*dlam = r4,      (N)

is solved by eliminating ds = r2 - G dz and dlam = (r4 - lam*r2 + lam*G dz)/s, which leaves the
symmetric (n + p) system [[Q + G'DG, A'], [A, 0]] [dz; dnu] = [rz; r3], D = diag(lam/s). Adding
rho A' times its second block row to the first, and regularizing, it is solved as

    [[H, A'], [A, -delta I]] [dz; dnu] = [rz + rho A'r3; r3],   H = Q + G'DG + rho A'A + delta I,

by block elimination with two Cholesky factorizations (``ift_lib._qp_linalg``), once per iterate
and shared by predictor and corrector:

    H = L L' (n, n),   S = A H^-1 A' + delta I = Y'Y + delta I (p, p) with Y = L^-1 A',
    dnu = S^-1 (A H^-1 rz' - r3),   dz = H^-1 (rz' - A'dnu).

delta = REG * max(1, max|Q|) keeps H and S positive definite when Q + G'DG is singular or A rank
deficient; it only perturbs the direction (residuals are always exact), and it makes an unbounded
problem show up as a diverging iterate rather than a singular factorization. rho A'A (rho =
max(1, max|Q|) / max_i |A_i|^2, exact for delta = 0) makes H positive definite in the directions
that only the equalities fix (an LP whose inequalities leave a direction free). Near the solution
D has entries ~1e10 at active constraints and the elimination loses digits; one step of
iterative refinement against (N) restores them (for the corrector; the predictor only sets the
centering and is not refined). After convergence, the loop goes on for at most SEPARATION_STEPS
steps while some constraint's s_i and lam_i are within a factor 1/SEPARATION of each other
(``_separate``), so that the derivative's active set is read off a clearly separated iterate.
"""
from __future__ import annotations

import enum
from typing import NamedTuple

import jax
import jax.numpy as jnp
from ift_lib._qp_linalg import after, cho_solve, cholesky, inverse_cholesky, min_pivot

__all__ = ["Status", "QPSolution", "IPMState", "interior_point", "active_set", "REG",
           "STEP_FRACTION", "ACTIVE_RATIO", "RANK_TOL", "SEPARATION", "SEPARATION_STEPS"]

#: Relative regularization delta of the Newton system.
REG = 1e-13
#: Fraction of the step to the boundary of s, lam >= 0.
STEP_FRACTION = 0.99
#: A constraint counts as active when s_i < ACTIVE_RATIO * lam_i (see ``active_set``).
ACTIVE_RATIO = 0.1
#: Relative size below which a pivot of the rank tests (LICQ, unique solution) counts as zero.
RANK_TOL = 1e-10
#: A constraint is clearly classified when min(s_i, lam_i) <= SEPARATION * max(s_i, lam_i).
SEPARATION = 1e-2
#: At most this many iterations after convergence while some constraint is not clearly
#: classified (see ``interior_point``).
SEPARATION_STEPS = 8


class Status(enum.IntEnum):
    """Outcome of a solve (``QPSolution.status``); ``message`` says it in words. Under jit a
    failure (1-5) comes with NaN values, and every status but SOLVED with NaN derivatives."""
    SOLVED = 0
    MAX_ITER = 1
    PRIMAL_INFEASIBLE = 2
    DUAL_INFEASIBLE = 3
    BAD_INPUT = 4
    NOT_UNIQUE = 5
    DEPENDENT_CONSTRAINTS = 6

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {
    Status.SOLVED: "solved",
    Status.MAX_ITER: "max_iter reached",
    Status.PRIMAL_INFEASIBLE: "primal infeasible",
    Status.DUAL_INFEASIBLE: "dual infeasible (unbounded)",
    Status.BAD_INPUT: "bad input",
    Status.NOT_UNIQUE: "solution not unique (a whole optimal face)",
    Status.DEPENDENT_CONSTRAINTS: "solved, active constraints dependent (no derivative computed)"}
_KEEP_GOING = -1
_SEPARATING = -2        # converged, iterating on to separate s from lam (see interior_point)


class QPSolution(NamedTuple):
    """Solution of a QP; shapes for batch dims (...), n variables, m inequalities, p equalities
    (an absent block gives m = 0 or p = 0, i.e. empty arrays).

    z (..., n); lam (..., m) >= 0 (multipliers of Gz <= h); nu (..., p) (of Az = b);
    s (..., m) = h - Gz; iterations (...) int; primal_residual (...) = max(|Gz + s_ipm - h|,
    |Az - b|) (s_ipm >= 0 the method's own slack); dual_residual (...) = |Qz + q + G'lam + A'nu|
    (max norms); gap (...) = s_ipm.lam; status (...) int (a :class:`Status`).
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


class Data(NamedTuple):
    """One QP's data: Q (n, n), q (n,), G (m, n), h (m,), A (p, n), b (p,)."""
    Q: jax.Array
    q: jax.Array
    G: jax.Array
    h: jax.Array
    A: jax.Array
    b: jax.Array


class IPMState(NamedTuple):
    """The loop's carry: iterate (z, s, lam, nu), and its status and measures of convergence."""
    iteration: jax.Array
    z: jax.Array
    s: jax.Array
    lam: jax.Array
    nu: jax.Array
    status: jax.Array
    primal_residual: jax.Array
    dual_residual: jax.Array
    gap: jax.Array


def maxabs(x):
    return jnp.max(jnp.abs(x)) if x.size else jnp.zeros((), x.dtype)


def _bad_input(d: Data):
    """True when the inputs are bad (non-finite entries, Q not symmetric PSD)."""
    finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in d]))
    Qf = jnp.where(jnp.isfinite(d.Q), d.Q, 0.0)
    scale = jnp.maximum(maxabs(Qf), jnp.finfo(Qf.dtype).tiny)
    n = Qf.shape[-1]
    eps = jnp.finfo(Qf.dtype).eps
    asym = maxabs(Qf - Qf.T) > 100 * eps * scale
    # Q + shift I is positive definite iff min eig(Q) > -shift: a Cholesky factorization (about
    # 10x cheaper than the eigenvalues) fails, with NaN, exactly when Q is not PSD up to the shift
    shift = 100 * n * eps * jnp.maximum(scale, 1.0)
    chol = cholesky(0.5 * (Qf + Qf.T) + shift * jnp.eye(n, dtype=Qf.dtype), "input check")
    return ~finite | asym | ~jnp.all(jnp.isfinite(chol))


def _residuals(d: Data, z, s, lam, nu):
    return d.Q @ z + d.q + d.G.T @ lam + d.A.T @ nu, d.G @ z + s - d.h, d.A @ z - d.b


def _judge(d: Data, it, z, s, lam, nu, tol) -> IPMState:
    """The state with its status: keep going, SOLVED, PRIMAL_ or DUAL_INFEASIBLE. Residuals are
    compared with tol times the size of the terms they are made of. (Each max is taken over one
    concatenated vector: one reduction each, which keeps the compiled program small.)"""
    rd, rin, req = _residuals(d, z, s, lam, nu)
    # the products again (XLA computes each once)
    Qz, Gz, Az, Gl, An = d.Q @ z, d.G @ z, d.A @ z, d.G.T @ lam, d.A.T @ nu
    pres = maxabs(jnp.concatenate([rin, req]))
    dres = maxabs(rd)
    gap = jnp.dot(s, lam)
    obj = 0.5 * z @ Qz + d.q @ z
    p_scale = 1 + maxabs(jnp.concatenate([d.h, d.b, Gz, Az]))
    d_scale = 1 + maxabs(jnp.concatenate([d.q, Qz, Gl, An]))
    p_ok = pres <= tol * p_scale
    d_ok = dres <= tol * d_scale
    solved = p_ok & d_ok & (gap <= tol * (1 + jnp.abs(obj)))
    eps_inf = jnp.sqrt(tol) * 1e-3                      # 1e-8 for tol = 1e-10
    # primal infeasibility (Farkas): lam >= 0, nu with G'lam + A'nu = 0 and h'lam + b'nu < 0
    hy = d.h @ lam + d.b @ nu
    infeasible = ~p_ok & (hy < 0) & (maxabs(Gl + An) <= eps_inf * -hy)
    # dual infeasibility: a direction z with Qz = 0, Az = 0, Gz <= 0 and q'z < 0
    qz = d.q @ z
    unbounded = ~d_ok & (qz < 0) & (
        jnp.max(jnp.concatenate([jnp.abs(Qz), jnp.abs(Az), Gz]), initial=0.0) <= eps_inf * -qz)
    status = jnp.where(solved, Status.SOLVED, jnp.where(
        infeasible, Status.PRIMAL_INFEASIBLE, jnp.where(unbounded, Status.DUAL_INFEASIBLE,
                                                        _KEEP_GOING)))
    return IPMState(it, z, s, lam, nu, status, pres, dres, gap)


class NewtonFactors(NamedTuple):
    """The eliminated Newton system's factors (see the module docstring): M = L^-1 (n, n) with
    L L' = H; Y = M A' (n, p); Ms = Ls^-1 (p, p) with Ls Ls' = Y'Y + delta I; rho (the weight of A'A)."""
    M: jax.Array
    Y: jax.Array
    Ms: jax.Array
    rho: jax.Array


def _equality_weight(d: Data):
    """rho = max(1, max|Q|) / max_i |A_i|^2: A'A on the scale of Q (0 without equalities)."""
    if not d.A.shape[0]:
        return jnp.zeros((), d.Q.dtype)
    row2 = jnp.max(jnp.sum(d.A * d.A, axis=-1))
    return jnp.maximum(1.0, maxabs(d.Q)) / jnp.maximum(row2, jnp.finfo(d.Q.dtype).tiny)


def _factor(d: Data, D, delta, rho, AtA) -> NewtonFactors:
    """Factorize H = Q + G'DG + rho A'A + delta I and S = A H^-1 A' + delta I; D (m,) >= 0, AtA =
    A'A (n, n)."""
    n, p = d.Q.shape[0], d.A.shape[0]
    H = d.Q + d.G.T @ (D[:, None] * d.G) + rho * AtA + delta * jnp.eye(n, dtype=d.Q.dtype)
    M = inverse_cholesky(H, "newton")
    if not p:
        return NewtonFactors(M, jnp.zeros((n, 0), M.dtype), jnp.zeros((0, 0), M.dtype), rho)
    Y = M @ d.A.T
    Ms = inverse_cholesky(Y.T @ Y + delta * jnp.eye(p, dtype=d.Q.dtype), "newton schur")
    return NewtonFactors(M, Y, Ms, rho)


def _eliminated_solve(f: NewtonFactors, d: Data, rz, rnu):
    """(dz, dnu) solving [[Q + G'DG, A'], [A, 0]] [dz; dnu] = [rz; rnu] up to delta: rz (n,),
    rnu (p,)."""
    if not d.A.shape[0]:
        return cho_solve(f.M, rz), rnu
    u = f.M @ (rz + f.rho * (d.A.T @ rnu))                     # L^-1 rz'
    dnu = cho_solve(f.Ms, f.Y.T @ u - rnu)                       # S^-1 (A H^-1 rz' - rnu)
    return f.M.T @ (u - f.Y @ dnu), dnu


def _newton_once(factors, d: Data, s, lam, r):
    r1, r2, r3, r4 = r
    w = (r4 - lam * r2) / s
    dz, dnu = _eliminated_solve(factors, d, r1 - d.G.T @ w, r3)
    ds = r2 - d.G @ dz
    return dz, ds, (r4 - lam * ds) / s, dnu


def _solve_newton(factors, d: Data, s, lam, r, refinements):
    """Solve (N) with the factorization of its eliminated form: x = 0, then ``1 + refinements``
    (traced int) times x += solve(r - (N) x). One copy of the solve in the compiled program,
    whatever the number of steps (a loop, not inlined copies: XLA's compile time grows with the
    program's size)."""
    def correct(_, x):
        dz, ds, dl, dnu = x
        e = (r[0] - (d.Q @ dz + d.G.T @ dl + d.A.T @ dnu), r[1] - (d.G @ dz + ds), r[2] - d.A @ dz,
             r[3] - (lam * ds + s * dl))
        return tuple(xi + ci for xi, ci in zip(x, _newton_once(factors, d, s, lam, e)))
    zero = tuple(jnp.zeros_like(v) for v in (r[0], r[1], lam, r[2]))
    return jax.lax.fori_loop(0, 1 + refinements, correct, zero)


def _max_step(x, dx):
    """The largest a in [0, 1] with x + a dx >= 0 (x > 0)."""
    ratio = jnp.where(dx < 0, -x / jnp.where(dx < 0, dx, -1.0), jnp.inf)
    return jnp.minimum(1.0, jnp.min(ratio)) if x.size else jnp.ones((), x.dtype)


def _step(d: Data, delta, rho, AtA, tol, state: IPMState) -> IPMState:
    """One predictor-corrector step from ``state``.

    Both directions solve (N) with r4 = -s*lam - ds*dlam + sigma*mu: the predictor with ds = dlam
    = 0 and sigma = 0 (no refinement: it only sets sigma), the corrector with the predictor's ds,
    dlam and sigma = (mu_aff / mu)^3, refined once. They are the two trips of one loop."""
    m = d.G.shape[0]
    z, s, lam, nu = state.z, state.s, state.lam, state.nu
    fac = _factor(d, lam / s, delta, rho, AtA)
    rd, rin, req = _residuals(d, z, s, lam, nu)
    if not m:
        dz, ds, dl, dnu = _solve_newton(fac, d, s, lam, (-rd, -rin, -req, jnp.zeros(0, z.dtype)), 1)
        return _judge(d, state.iteration + 1, z + dz, s + ds, lam + dl, nu + dnu, tol)
    mu = jnp.dot(s, lam) / m

    def direction(trip, carry):
        ds, dl, sigma_mu, _ = carry
        x = _solve_newton(fac, d, s, lam, (-rd, -rin, -req, -s * lam - ds * dl + sigma_mu), trip)
        a = jnp.minimum(_max_step(s, x[1]), _max_step(lam, x[2]))
        sigma = jnp.clip(jnp.dot(s + a * x[1], lam + a * x[2]) / m / mu, 0.0, 1.0) ** 3
        return x[1], x[2], sigma * mu, (x, a)

    zero = (jnp.zeros_like(z), jnp.zeros_like(s), jnp.zeros_like(lam), jnp.zeros_like(nu))
    *_, ((dz, ds, dl, dnu), a) = jax.lax.fori_loop(
        0, 2, direction, (zero[1], zero[2], jnp.zeros((), z.dtype), (zero, jnp.zeros((), z.dtype))))
    a = jnp.minimum(1.0, STEP_FRACTION * a)
    return _judge(d, state.iteration + 1, z + a * dz, s + a * ds, lam + a * dl, nu + a * dnu, tol)


def active_set(s, lam):
    """Which constraints the derivative treats as active (s_i = 0 at the exact solution).

    At the interior point an active constraint has s_i ~ tol / lam_i << lam_i and an inactive
    one lam_i << s_i (the solver iterates past convergence until each constraint is separated
    by a factor 1/SEPARATION, see ``_separate``); a weakly active one (lam_i = s_i = 0) has
    lam_i ~ s_i ~ sqrt(mu). So a constraint counts as active only when s_i < ACTIVE_RATIO lam_i,
    and a weakly active one deterministically as inactive (the one-sided derivative of the released side, like
    ReLU'(0) = 0 in JAX)."""
    return s < ACTIVE_RATIO * lam


def _unit_active_rows(d: Data, active):
    N = jnp.concatenate([jnp.where(active[:, None], d.G, 0.0), d.A])
    return N / jnp.maximum(jnp.sqrt(jnp.sum(N * N, axis=-1, keepdims=True)),
                           jnp.finfo(N.dtype).tiny)


def _dependent_active_rows(d: Data, active):
    """True when the active rows of G with A are linearly dependent (LICQ fails): the smallest
    LDL' pivot of the Gram matrix of their unit rows (inactive rows replaced by unit rows of the
    Gram matrix) is below RANK_TOL."""
    m, p = d.G.shape[0], d.A.shape[0]
    if not m + p:
        return jnp.zeros((), bool)
    N = _unit_active_rows(d, active)
    keep = jnp.concatenate([~active, jnp.zeros(p, bool)])
    gram = cholesky(N @ N.T + jnp.diag(keep.astype(N.dtype)), "solution check")
    return ~(min_pivot(gram) > RANK_TOL)                                       # NaN: True


def _flat_direction(d: Data, active):
    """True when some d with Ad = 0, G_i d = 0 (i active) has d'Qd = 0: a whole optimal face.
    Tested by the LDL' pivots of Q + c N'N (N the unit active rows, c = max(1, max|Q|)): a pivot
    below RANK_TOL c counts as zero (so a 'regularizer' 1e-12 |z|^2 does not make a face unique)."""
    n = d.Q.shape[0]
    if not n:
        return jnp.zeros((), bool)
    N = _unit_active_rows(d, active)
    c = jnp.maximum(1.0, maxabs(d.Q))
    H = 0.5 * (d.Q + d.Q.T) + (c * (N.T @ N) if N.shape[0] else 0.0)
    return ~(min_pivot(cholesky(H, "solution check")) / c > RANK_TOL)          # NaN: True


def _unresolved(s, lam):
    """True when some constraint is neither clearly active nor clearly inactive: s_i and lam_i
    within a factor 1/SEPARATION of each other (``active_set`` could classify it either way)."""
    return jnp.any((s > SEPARATION * lam) & (lam > SEPARATION * s))


def _separate(old: IPMState, new: IPMState, extra):
    """The loop's bookkeeping after a step from ``old`` to ``new``: (state, extra steps taken).

    Convergence (residuals and gap below tol) bounds s'lam relative to the objective, not each
    product s_i lam_i relative to the constraint's margin: a constraint whose multiplier or slack
    at the exact solution is small (1e-4, say, with |objective| ~ 1e5) can still have s_i ~ lam_i
    at a converged iterate, and the derivative would take the wrong side of it. So a converged
    state with such a constraint keeps iterating (status _SEPARATING), at most SEPARATION_STEPS
    more times; a constraint that stays unresolved is weakly active (lam_i = s_i = 0 exactly),
    where either side gives a one-sided derivative. A step that loses convergence in this phase
    is undone."""
    separating = old.status == _SEPARATING
    ok = (new.status == Status.SOLVED) & jnp.all(jnp.array(
        [jnp.all(jnp.isfinite(x)) for x in (new.z, new.s, new.lam, new.nu)]))
    extra = jnp.where(separating, extra + 1, 0).astype(jnp.int32)
    go_on = ok & _unresolved(new.s, new.lam) & (extra < SEPARATION_STEPS)
    new = new._replace(status=jnp.where(go_on, _SEPARATING, new.status).astype(new.status.dtype))
    undo = separating & ~ok
    kept = old._replace(status=jnp.full_like(old.status, Status.SOLVED))
    return jax.tree.map(lambda a, b: jnp.where(undo, a, b), kept, new), extra


def interior_point(Q, q, G, h, A, b, tol: float, max_iter: int) -> QPSolution:
    """Solve one QP (shapes as in :class:`Data`); failures (statuses 1-5) give NaN values."""
    d = Data(Q, q, G, h, A, b)
    m = G.shape[0]
    delta = REG * jnp.maximum(1.0, maxabs(jnp.where(jnp.isfinite(Q), Q, 0.0)))
    rho, AtA = _equality_weight(d), A.T @ A
    bad_input = _bad_input(d)
    # Start (CVXOPT): solve the KKT system with D = I, then shift s and lam into the interior.
    # (Each factorization is ordered after the previous one: see ift_lib._qp_linalg.)
    start = _factor(d, after(jnp.ones(m, Q.dtype), bad_input), delta, rho, AtA)
    z, nu = _eliminated_solve(start, d, -q + G.T @ h, b)
    s = h - G @ z
    lam = -s
    if m:
        s = jnp.where(jnp.min(s) > 0, s, s + 1.0 - jnp.min(s))
        lam = jnp.where(jnp.min(lam) > 0, lam, lam + 1.0 - jnp.min(lam))
    init = _judge(d, jnp.zeros((), jnp.int32), z, s, lam, nu, tol)
    init = init._replace(status=jnp.where(bad_input, Status.BAD_INPUT, init.status))
    init, extra = _separate(init, init, jnp.zeros((), jnp.int32))
    final, _ = jax.lax.while_loop(
        lambda c: ((c[0].status == _KEEP_GOING) | (c[0].status == _SEPARATING))
        & (c[0].iteration < max_iter),
        lambda c: _separate(c[0], _step(d, delta, rho, AtA, tol, c[0]), c[1]), (init, extra))
    status = jnp.where(final.status == _KEEP_GOING, Status.MAX_ITER, final.status)
    status = jnp.where(status == _SEPARATING, Status.SOLVED, status)
    # solved: is the solution unique, are the active constraints independent? Judged on the
    # active set the derivative uses.
    active = active_set(final.s, final.lam)
    flat = _flat_direction(d, active)
    status = jnp.where((status == Status.SOLVED) & flat, Status.NOT_UNIQUE, status)
    status = jnp.where((status == Status.SOLVED) & _dependent_active_rows(
        d._replace(G=after(G, flat.astype(G.dtype))), active),
                       Status.DEPENDENT_CONSTRAINTS, status).astype(jnp.int32)
    failed = (status >= Status.MAX_ITER) & (status <= Status.NOT_UNIQUE)
    nan = lambda x: jnp.where(failed, jnp.nan, x)
    return QPSolution(nan(final.z), nan(final.lam), nan(final.nu), nan(h - G @ final.z),
                      final.iteration, final.primal_residual, final.dual_residual, final.gap,
                      status)
