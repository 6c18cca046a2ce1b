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

That is the primal form. The dual form (``_dual_setup``; used when m is smaller than n and
Q0 = Q + rho A'A + delta I is well conditioned) factorizes Q0 and the equality block once and
then, per iterate, only the m x m matrix Wred + D^-1 (Wred = G P G' with P = Q0^-1 -
Q0^-1 A'(A Q0^-1 A' + delta I)^-1 A Q0^-1), as OptNet's qpth does; it returns G dz as D^-1 y,
not from dz, so that the multipliers of active constraints (D ~ 1e10) keep their accuracy.

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
           "STEP_FRACTION", "ACTIVE_RATIO", "RANK_TOL", "SEPARATION", "SEPARATION_STEPS",
           "DUAL_PIVOT", "DUAL_MAX_RATIO", "dual_form_ok", "NEWTON_FORMS"]

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
#: The dual Newton form needs Q0 = sym(Q) + rho A'A + delta I with its smallest Cholesky pivot
#: at least this fraction of max(1, its largest diagonal entry) (see ``dual_form_ok``).
DUAL_PIVOT = 1e-8
#: newton="auto" considers the dual form only for m <= DUAL_MAX_RATIO * n inequalities (measured
#: on 64 QPs, n = 100, float64, one core: the dual form 2.9x faster at m = 20, 1.3x at m = 80,
#: 0.87x at m = n = 50).
DUAL_MAX_RATIO = 0.75
#: The ``newton`` choices of ``interior_point`` (and ``solve_qp``).
NEWTON_FORMS = ("auto", "primal", "dual")


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
    """The primal form's factors (see the module docstring): M = L^-1 (n, n) with L L' = H;
    Y = M A' (n, p); Ms = Ls^-1 (p, p) with Ls Ls' = Y'Y + delta I; rho (the weight of A'A)."""
    M: jax.Array
    Y: jax.Array
    Ms: jax.Array
    rho: jax.Array


class DualFactors(NamedTuple):
    """The dual form's factors (see ``_dual_setup``): M0 = L0^-1 (n, n) with L0 L0' = Q0;
    B = M0 G' (n, m); C = M0 A' (n, p); Ma = La^-1 (p, p) with La La' = C'C + delta I;
    E = Ma C'B (p, m); Wred = B'B - E'E (m, m); Mk = Lk^-1 (m, m) with Lk Lk' = Wred + D^-1
    and Dinv = D^-1 (m,) (these two change every iteration); rho (the weight of A'A)."""
    M0: jax.Array
    B: jax.Array
    C: jax.Array
    Ma: jax.Array
    E: jax.Array
    Wred: jax.Array
    Mk: jax.Array
    Dinv: jax.Array
    rho: jax.Array


def _equality_weight(d: Data):
    """rho = max(1, max|Q|) / max_i |A_i|^2: A'A on the scale of Q (0 without equalities)."""
    if not d.A.shape[0]:
        return jnp.zeros((), d.Q.dtype)
    row2 = jnp.max(jnp.sum(d.A * d.A, axis=-1))
    return jnp.maximum(1.0, maxabs(d.Q)) / jnp.maximum(row2, jnp.finfo(d.Q.dtype).tiny)


def _q0(d: Data, delta, rho):
    """Q0 = sym(Q) + rho A'A + delta I (n, n): the part of H that does not change."""
    n = d.Q.shape[0]
    return 0.5 * (d.Q + d.Q.T) + rho * (d.A.T @ d.A) + delta * jnp.eye(n, dtype=d.Q.dtype)


def _primal_factor(d: Data, D, delta, rho, AtA) -> NewtonFactors:
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


def _primal_solve(f: NewtonFactors, d: Data, rz, rnu):
    """(dz, dnu, G dz) solving [[Q + G'DG, A'], [A, 0]] [dz; dnu] = [rz; rnu] up to delta: rz
    (n,), rnu (p,)."""
    if not d.A.shape[0]:
        dz = cho_solve(f.M, rz)
        return dz, rnu, d.G @ dz
    u = f.M @ (rz + f.rho * (d.A.T @ rnu))                     # L^-1 rz'
    dnu = cho_solve(f.Ms, f.Y.T @ u - rnu)                       # S^-1 (A H^-1 rz' - rnu)
    dz = f.M.T @ (u - f.Y @ dnu)
    return dz, dnu, d.G @ dz


def _dual_setup(d: Data, delta, rho) -> DualFactors:
    """The dual form's factors that do not change between iterations (Mk left empty).

    With y = D G dz, the eliminated system [[Q0 + G'DG, A'], [A, -delta I]] [dz; dnu] = [r; rnu]
    (r = rz + rho A'rnu) is [[Q0, G', A'], [G, -D^-1, 0], [A, 0, -delta I]] [dz; y; dnu] =
    [r; 0; rnu]. Eliminating dz = Q0^-1 (r - G'y - A'dnu), then dnu with the constant
    Sa = A Q0^-1 A' + delta I, leaves for y the m x m system

        (Wred + D^-1) y = B'u - E'v,   u = M0 r, v = Ma (C'u - rnu),

    Wred = G Q0^-1 G' - G Q0^-1 A' Sa^-1 A Q0^-1 G' (positive semidefinite, constant): each
    iteration factorizes only Wred + D^-1 (OptNet's qpth does the same with an LU)."""
    m, p = d.G.shape[0], d.A.shape[0]
    M0 = inverse_cholesky(_q0(d, delta, rho), "dual q0")
    B, C = M0 @ d.G.T, M0 @ d.A.T
    if p:
        Ma = inverse_cholesky(C.T @ C + delta * jnp.eye(p, dtype=d.Q.dtype), "dual equalities")
        E = Ma @ (C.T @ B)
    else:
        Ma, E = jnp.zeros((0, 0), M0.dtype), jnp.zeros((0, m), M0.dtype)
    return DualFactors(M0, B, C, Ma, E, B.T @ B - E.T @ E, jnp.zeros((m, m), M0.dtype),
                       jnp.zeros(m, M0.dtype), rho)


def _dual_factor(setup: DualFactors, D) -> DualFactors:
    """Factorize Wred + D^-1 (m, m), D (m,) > 0."""
    Dinv = 1.0 / D
    return setup._replace(Mk=inverse_cholesky(setup.Wred + jnp.diag(Dinv), "dual newton"),
                          Dinv=Dinv)


def _dual_solve(f: DualFactors, d: Data, rz, rnu):
    """(dz, dnu, G dz) as ``_primal_solve``, by the dual form (``_dual_setup``). G dz is
    returned as D^-1 y: where D is large (active constraints) G dz computed from dz would carry
    dz's rounding error times |y|, and the caller multiplies it by D."""
    u = f.M0 @ (rz + f.rho * (d.A.T @ rnu))
    v = f.Ma @ (f.C.T @ u - rnu)
    y = cho_solve(f.Mk, f.B.T @ u - f.E.T @ v)
    dnu = f.Ma.T @ (v - f.E @ y)
    return f.M0.T @ (u - f.B @ y - f.C @ dnu), dnu, f.Dinv * y


class NewtonForm(NamedTuple):
    """How an iterate's Newton system is solved: factor(D) -> factors, solve(factors, rz, rnu)."""
    factor: object
    solve: object


def _newton_form(d: Data, delta, rho, AtA, form: str, earlier) -> NewtonForm:
    """The primal form (an n x n factorization per iteration, any PSD Q) or the dual form (Q0
    factorized once, then m x m per iteration; needs ``dual_form_ok``). ``earlier``: an array
    the first factorization is ordered after (see ift_lib._qp_linalg)."""
    if form == "primal":
        return NewtonForm(lambda D: _primal_factor(d, after(D, earlier), delta, rho, AtA),
                          lambda f, rz, rnu: _primal_solve(f, d, rz, rnu))
    setup = _dual_setup(d._replace(Q=after(d.Q, earlier)), delta, rho)
    return NewtonForm(lambda D: _dual_factor(setup, D),
                      lambda f, rz, rnu: _dual_solve(f, d, rz, rnu))


def _newton_once(form: NewtonForm, factors, d: Data, s, lam, r):
    r1, r2, r3, r4 = r
    w = (r4 - lam * r2) / s
    dz, dnu, Gdz = form.solve(factors, r1 - d.G.T @ w, r3)
    ds = r2 - Gdz
    return dz, ds, (r4 - lam * ds) / s, dnu


def _solve_newton(form: NewtonForm, factors, d: Data, s, lam, r, refinements):
    """Solve (N) with the factorization of its eliminated form: x = 0, then ``1 + refinements``
    (traced int) times x += solve(r - (N) x). One copy of the solve in the compiled program,
    whatever the number of steps (a loop, not inlined copies: XLA's compile time grows with the
    program's size)."""
    def correct(_, x):
        dz, ds, dl, dnu = x
        e = (r[0] - (d.Q @ dz + d.G.T @ dl + d.A.T @ dnu), r[1] - (d.G @ dz + ds), r[2] - d.A @ dz,
             r[3] - (lam * ds + s * dl))
        return tuple(xi + ci for xi, ci in zip(x, _newton_once(form, factors, d, s, lam, e)))
    zero = tuple(jnp.zeros_like(v) for v in (r[0], r[1], lam, r[2]))
    return jax.lax.fori_loop(0, 1 + refinements, correct, zero)


def _max_step(x, dx):
    """The largest a in [0, 1] with x + a dx >= 0 (x > 0)."""
    ratio = jnp.where(dx < 0, -x / jnp.where(dx < 0, dx, -1.0), jnp.inf)
    return jnp.minimum(1.0, jnp.min(ratio)) if x.size else jnp.ones((), x.dtype)


def _step(d: Data, form: NewtonForm, tol, state: IPMState) -> IPMState:
    """One predictor-corrector step from ``state``.

    Both directions solve (N) with r4 = -s*lam - ds*dlam + sigma*mu: the predictor with ds = dlam
    = 0 and sigma = 0 (no refinement: it only sets sigma), the corrector with the predictor's ds,
    dlam and sigma = (mu_aff / mu)^3, refined once. They are the two trips of one loop."""
    m = d.G.shape[0]
    z, s, lam, nu = state.z, state.s, state.lam, state.nu
    fac = form.factor(lam / s)
    rd, rin, req = _residuals(d, z, s, lam, nu)
    if not m:
        dz, ds, dl, dnu = _solve_newton(form, fac, d, s, lam,
                                        (-rd, -rin, -req, jnp.zeros(0, z.dtype)), 1)
        return _judge(d, state.iteration + 1, z + dz, s + ds, lam + dl, nu + dnu, tol)
    mu = jnp.dot(s, lam) / m

    def direction(trip, carry):
        ds, dl, sigma_mu, _ = carry
        x = _solve_newton(form, fac, d, s, lam,
                          (-rd, -rin, -req, -s * lam - ds * dl + sigma_mu), trip)
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


def _delta(Q):
    """delta = REG * max(1, max|Q|) (non-finite entries left out)."""
    return REG * jnp.maximum(1.0, maxabs(jnp.where(jnp.isfinite(Q), Q, 0.0)))


def dual_form_ok(Q, A):
    """True when the dual Newton form may be used for this QP (Q (n, n), A (p, n)): Q0 =
    sym(Q) + rho A'A + delta I is well conditioned, its smallest Cholesky pivot at least
    DUAL_PIVOT times max(1, max|Q0_ii|) (the dual form multiplies by Q0^-1; so an LP, Q = 0,
    takes the primal form). False for non-finite Q."""
    d = Data(Q, Q[0], Q[:0], Q[0, :0], A, A[:, 0])
    Q0 = _q0(d, _delta(Q), _equality_weight(d))
    pivot = min_pivot(cholesky(Q0, "dual form check"))
    return pivot > DUAL_PIVOT * jnp.max(jnp.diagonal(Q0), initial=1.0)    # NaN: False


def _iterate(d: Data, form: NewtonForm, bad_input, tol, max_iter) -> IPMState:
    """Start, then predictor-corrector steps until converged, failed or max_iter."""
    q, G, h, b = d.q, d.G, d.h, d.b
    m = G.shape[0]
    # Start (CVXOPT): solve the KKT system with D = I, then shift s and lam into the interior.
    start = form.factor(jnp.ones(m, q.dtype))
    z, nu, _ = form.solve(start, -q + G.T @ h, b)
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
        lambda c: _separate(c[0], _step(d, form, tol, c[0]), c[1]), (init, extra))
    return final


def interior_point(Q, q, G, h, A, b, use_dual, tol: float, max_iter: int,
                   newton: str) -> QPSolution:
    """Solve one QP (shapes as in :class:`Data`); failures (statuses 1-5) give NaN values.

    ``newton`` (static): "primal", "dual" (a QP failing ``dual_form_ok`` is BAD_INPUT) or
    "auto": the dual form where the bool array ``use_dual`` is True (one lax.cond: under vmap
    ``use_dual`` should be the same for the whole batch, else both forms run)."""
    d = Data(Q, q, G, h, A, b)
    delta = _delta(Q)
    rho, AtA = _equality_weight(d), A.T @ A
    bad_input = _bad_input(d)
    if newton == "dual":
        bad_input = bad_input | ~dual_form_ok(after(Q, bad_input), A)
    # (Each factorization is ordered after the previous one: see ift_lib._qp_linalg.)
    run = lambda form: _iterate(d, _newton_form(d, delta, rho, AtA, form, bad_input), bad_input,
                                tol, max_iter)
    if newton == "auto":
        final = jax.lax.cond(use_dual, lambda: run("dual"), lambda: run("primal"))
    else:
        final = run(newton)
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
