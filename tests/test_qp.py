"""Tests for ift_lib.qp: solutions against the KKT conditions and closed forms (equality-only QP,
box-constrained diagonal QP = clipping), every combination of constraint blocks, batching with
shared arguments, derivatives in all of Q, q, G, h, A, b against finite differences (forward and
reverse mode), a weakly active constraint, and the error and status cases."""
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from ift_lib.qp import (STATUS, QPDependentConstraintsError, QPError, QPInfeasibleError,
                        QPInputError, QPNotConvergedError, QPNotUniqueError, QPUnboundedError,
                        Status, recording_factorizations, solve_qp)

# As in test_softmax.py: few shapes, so that the jitted solver compiles few times.
N, M, P = 4, 6, 2
NAMES = ("Q", "q", "G", "h", "A", "b")
BLOCKS = {"both": ("G", "A"), "ineq": ("G",), "eq": ("A",), "none": ()}


def make_qp(seed=0, blocks=("G", "A"), n=N, m=M, p=P):
    """A random strictly convex QP (numpy float64) as a dict of solve_qp's arguments. The
    inequalities are h = G z0 + margin at a point z0, so the QP is feasible; some are active."""
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((n, n))
    args = {"Q": B @ B.T + 0.5 * np.eye(n), "q": 2.0 * rng.standard_normal(n)}
    z0 = rng.standard_normal(n)
    if "G" in blocks:
        args["G"] = rng.standard_normal((m, n))
        args["h"] = args["G"] @ z0 + rng.uniform(0.0, 1.0, m)
    if "A" in blocks:
        args["A"] = rng.standard_normal((p, n))
        args["b"] = args["A"] @ z0
    return args


def kkt_residuals(args, sol):
    """(stationarity, primal infeasibility, dual infeasibility, complementarity), max norms."""
    Q, q = args["Q"], args["q"]
    z, lam, nu = (np.asarray(x) for x in (sol.z, sol.lam, sol.nu))
    G = args.get("G", np.zeros((0, Q.shape[0])))
    h = args.get("h", np.zeros(0))
    A = args.get("A", np.zeros((0, Q.shape[0])))
    b = args.get("b", np.zeros(0))
    mx = lambda x: float(np.max(np.abs(x), initial=0.0))
    stat = mx(Q @ z + q + G.T @ lam + A.T @ nu)
    primal = max(float(np.max(G @ z - h, initial=0.0)), mx(A @ z - b))
    dual = float(np.max(-lam, initial=0.0))
    comp = mx(lam * (h - G @ z))
    return stat, primal, dual, comp


def _raises(fn, error, *needles):
    with pytest.raises(error) as info:
        jax.block_until_ready(fn())
    for needle in needles:
        assert needle in str(info.value), str(info.value)
    return info.value


# ----------------------------------------------------------------------------- solutions

@pytest.mark.parametrize("blocks", list(BLOCKS))
def test_solution_satisfies_kkt(blocks):
    for seed in range(3):
        args = make_qp(seed, BLOCKS[blocks])
        sol = solve_qp(**args)
        assert int(sol.status) == 0 and 0 <= int(sol.iterations) < 40   # 0: the start solves it
        assert max(kkt_residuals(args, sol)) <= 1e-8, (seed, kkt_residuals(args, sol))
        m = args["G"].shape[0] if "G" in args else 0
        p = args["A"].shape[0] if "A" in args else 0
        assert sol.z.shape == (N,) and sol.lam.shape == sol.s.shape == (m,) and sol.nu.shape == (p,)
        assert np.all(np.asarray(sol.lam) > 0)                   # interior-point multipliers
        if m:
            np.testing.assert_allclose(np.asarray(sol.s), args["h"] - args["G"] @ np.asarray(sol.z))
            if blocks == "both":
                assert np.sum(np.asarray(sol.s) < 1e-8) >= 1      # some constraint is active


def test_random_convex_qps_and_lps():
    # positive definite Q, rank-2 Q and Q = 0 (an LP, kept bounded by a box), one compilation
    rng = np.random.default_rng(11)
    solve = jax.jit(lambda a: solve_qp(**a))
    n, iterations = 5, []
    for trial in range(30):
        B = rng.standard_normal((n, n if trial % 3 == 0 else 2))
        z0 = rng.standard_normal(n)
        G = np.concatenate([rng.standard_normal((8, n)), np.eye(n), -np.eye(n)])
        A = rng.standard_normal((2, n))
        args = dict(Q=B @ B.T if trial % 3 < 2 else np.zeros((n, n)), q=rng.standard_normal(n),
                    G=G, h=G @ z0 + rng.uniform(0.0, 1.0, G.shape[0]), A=A, b=A @ z0)
        sol = solve(args)
        assert int(sol.status) == 0, trial
        assert max(kkt_residuals(args, sol)) <= 1e-8, (trial, kkt_residuals(args, sol))
        iterations.append(int(sol.iterations))
    assert max(iterations) <= 20


def test_redundant_equalities_value_ok_derivative_nan():
    # A with a repeated row: z is unique, nu is not, and the KKT matrix of the derivative is
    # singular. The value is right (the regularized Newton system copes), with status 6; the
    # derivative is an error eagerly and NaN under jit, rather than a wrong number.
    args = make_qp(0)
    ref = solve_qp(**args)
    red = dict(args, A=np.concatenate([args["A"], args["A"][:1]]),
               b=np.concatenate([args["b"], args["b"][:1]]))
    sol = solve_qp(**red)                           # the value alone: no error
    assert int(sol.status) == 6 and max(kkt_residuals(red, sol)) <= 1e-8
    np.testing.assert_allclose(np.asarray(sol.z), np.asarray(ref.z), atol=1e-12)
    loss = lambda q: jnp.sum(solve_qp(**dict(red, q=q)).z)
    _raises(lambda: jax.grad(loss)(jnp.asarray(args["q"])), QPDependentConstraintsError,
            "linearly dependent", "status 6")
    g = jax.jit(jax.grad(loss))(jnp.asarray(args["q"]))
    assert np.all(np.isnan(np.asarray(g)))


def test_equality_only_is_one_linear_system():
    args = make_qp(1, ("A",))
    K = np.block([[args["Q"], args["A"].T], [args["A"], np.zeros((P, P))]])
    x = np.linalg.solve(K, np.concatenate([-args["q"], args["b"]]))
    sol = solve_qp(**args)
    np.testing.assert_allclose(np.asarray(sol.z), x[:N], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(sol.nu), x[N:], rtol=1e-10, atol=1e-12)
    # no constraints at all: z = -Q^{-1} q
    sol = solve_qp(args["Q"], args["q"])
    np.testing.assert_allclose(np.asarray(sol.z), -np.linalg.solve(args["Q"], args["q"]), rtol=1e-10)


def _box(d, q, lo, hi):
    return dict(Q=np.diag(d), q=q, G=np.concatenate([np.eye(d.size), -np.eye(d.size)]),
                h=np.concatenate([hi, -lo]))


def test_box_constrained_diagonal_qp_is_clipping():
    rng = np.random.default_rng(8)
    d, q = rng.uniform(0.5, 2.0, 6), 3.0 * rng.standard_normal(6)
    lo, hi = -np.ones(6), np.ones(6)
    free = -q / d
    assert np.all(np.abs(np.abs(free) - 1) > 0.2) and np.any(np.abs(free) < 1) and np.any(free > 1)
    sol = solve_qp(**_box(d, q, lo, hi))
    np.testing.assert_allclose(np.asarray(sol.z), np.clip(free, lo, hi), atol=1e-9)
    # dz/dq = -diag(1/d) on the free coordinates, 0 on the clipped ones (forward and reverse).
    # The derivative is the interior point's, where lam_i s_i ~ 1e-10: at a clipped coordinate
    # it is off by about s_i / lam_i (here < 1e-7).
    J_ref = np.diag(np.where(np.abs(free) < 1, -1 / d, 0.0))
    f = lambda q_: solve_qp(**dict(_box(d, q, lo, hi), q=q_)).z
    J_fwd, J_rev = jax.jit(lambda q_: (jax.jacfwd(f)(q_), jax.jacrev(f)(q_)))(jnp.asarray(q))
    np.testing.assert_allclose(np.asarray(J_fwd), J_ref, atol=1e-7)
    np.testing.assert_allclose(np.asarray(J_rev), J_ref, atol=1e-7)


def test_jit_matches_eager_and_float32_runs():
    args = make_qp(0)
    eager = solve_qp(**args)
    jitted = jax.jit(lambda a: solve_qp(**a))({k: jnp.asarray(v) for k, v in args.items()})
    for x, y in zip(eager, jitted):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    sol32 = solve_qp(**{k: v.astype(np.float32) for k, v in args.items()})
    assert sol32.z.dtype == jnp.float32 and int(sol32.status) == 0
    np.testing.assert_allclose(np.asarray(sol32.z), np.asarray(eager.z), atol=1e-3)


# ----------------------------------------------------------------------------- batching

BATCHED = ("q", "G", "b")        # the others (Q, h, A) are shared by the batch


def _batched_args(batch=(2, 3)):
    size = int(np.prod(batch))
    per = [make_qp(seed) for seed in range(size)]
    base = make_qp(0)
    # shared h must keep every QP feasible: take a generous margin
    base["h"] = base["h"] + 3.0
    args = {k: (np.stack([a[k] for a in per]).reshape(batch + per[0][k].shape) if k in BATCHED
                else base[k]) for k in NAMES}
    return args, batch


def _element(args, idx):
    return {k: (v[idx] if k in BATCHED else v) for k, v in args.items()}


def test_batched_matches_loop_and_shared_gradients_sum():
    args, batch = _batched_args()
    loss = lambda a: jnp.sum(solve_qp(**a).z * jnp.arange(1.0, N + 1))
    value_and_grad = jax.jit(lambda a: (solve_qp(**a), jax.grad(loss)(a)))
    sol, grads = value_and_grad({k: jnp.asarray(v) for k, v in args.items()})
    assert sol.z.shape == batch + (N,) and sol.status.shape == batch
    assert np.all(np.asarray(sol.status) == 0)
    eager = solve_qp(**args)                                   # no error: all solved
    np.testing.assert_array_equal(np.asarray(eager.z), np.asarray(sol.z))
    summed = {k: 0.0 for k in NAMES if k not in BATCHED}
    for idx in np.ndindex(*batch):
        element = _element(args, idx)
        single, g = value_and_grad({k: jnp.asarray(v) for k, v in element.items()})
        for x, y in zip(sol, single):
            np.testing.assert_allclose(np.asarray(x)[idx], np.asarray(y), rtol=1e-12, atol=1e-14)
        for k in NAMES:
            if k in BATCHED:
                np.testing.assert_allclose(np.asarray(grads[k])[idx], np.asarray(g[k]), atol=1e-10)
            else:
                summed[k] = summed[k] + np.asarray(g[k])
    for k, v in summed.items():          # a shared argument's gradient is the sum over the batch
        assert grads[k].shape == np.shape(args[k])
        np.testing.assert_allclose(np.asarray(grads[k]), v, rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------- derivatives

W = np.array([1.0, -2.0, 0.5, 3.0])


def _loss(args):
    """A scalar of the whole solution (z, lam, nu and s)."""
    sol = solve_qp(**args)
    out = jnp.dot(W[:sol.z.shape[-1]], sol.z) + 0.5 * jnp.sum(sol.z ** 2)
    for k, x in (("G", sol.lam), ("G", sol.s), ("A", sol.nu)):
        if k in args:
            out = out + jnp.dot(jnp.sin(jnp.arange(x.shape[-1]) + 1.0), x)
    return out


def _directions(args, seed):
    rng = np.random.default_rng(seed)
    dirs = {k: rng.standard_normal(np.shape(v)) for k, v in args.items()}
    if "Q" in dirs:
        dirs["Q"] = dirs["Q"] + dirs["Q"].T          # Q must stay symmetric
    return dirs


def _fd(args, name, direction, h=1e-3):
    """Fourth-order central difference of _loss along ``direction`` in argument ``name``: error
    O(h^4) ~ 1e-12, plus the solver's error (~1e-11) / h."""
    f = lambda t: float(_loss(dict(args, **{name: args[name] + t * direction})))
    return (-f(2 * h) + 8 * f(h) - 8 * f(-h) + f(-2 * h)) / (12 * h)


@jax.jit
def _grad_and_jvps(a, d):
    """jax.grad of _loss, and its jvp along d[k] in each argument k alone (one linearization)."""
    _, lin = jax.linearize(_loss, a)
    zeros = {k: jnp.zeros_like(v) for k, v in a.items()}
    return jax.grad(_loss)(a), {k: lin(dict(zeros, **{k: d[k]})) for k in a}


@pytest.mark.parametrize("blocks", ["both", "ineq", "eq"])
def test_derivatives_match_finite_differences_fwd_and_rev(blocks):
    args = make_qp(0, BLOCKS[blocks])
    sol = solve_qp(**args)
    if "G" in args:       # strict complementarity with a margin: the active set is stable for FD
        assert np.min(np.asarray(sol.s) + np.asarray(sol.lam)) > 0.05
    jargs = {k: jnp.asarray(v) for k, v in args.items()}
    dirs = _directions(args, 1)
    grads, jvps = _grad_and_jvps(jargs, {k: jnp.asarray(v) for k, v in dirs.items()})
    for k in args:
        fd = _fd(args, k, dirs[k])
        rev = float(np.sum(np.asarray(grads[k]) * dirs[k]))
        fwd = float(jvps[k])
        assert abs(fwd - fd) <= 1e-6 * max(1.0, abs(fd)), (k, fwd, fd)
        assert abs(rev - fd) <= 1e-6 * max(1.0, abs(fd)), (k, rev, fd)
        assert abs(rev - fwd) <= 1e-12 * max(1.0, abs(fd)), (k, rev, fwd)
    # dQ is symmetric (the QP depends on sym(Q) only), and a non-symmetric direction acts
    # through its symmetric part
    gQ = np.asarray(grads["Q"])
    np.testing.assert_allclose(gQ, gQ.T, atol=1e-14)
    E = np.zeros((N, N))
    E[0, 1] = 1.0
    _, j01 = _grad_and_jvps(jargs, dict({k: jnp.zeros_like(v) for k, v in jargs.items()},
                                        Q=jnp.asarray(E)))
    np.testing.assert_allclose(float(j01["Q"]), gQ[0, 1], rtol=1e-10)
    if blocks == "both":
        # every entry of every gradient, not only directions
        for k, v in args.items():
            for idx in np.ndindex(*v.shape):
                E = np.zeros_like(v)
                E[idx] = 1.0
                if k == "Q":
                    E = 0.5 * (E + E.T)        # symmetric perturbation; <grad, E> = grad[idx]
                fd = _fd(args, k, E)
                assert abs(float(np.asarray(grads[k])[idx]) - fd) <= 1e-6 * max(1.0, abs(fd)), (k, idx)


def test_second_derivatives():
    # the jvp rule calls the custom_jvp solver again, so a second derivative is the IFT's too
    args = make_qp(0)
    ja = {k: jnp.asarray(v) for k, v in args.items()}
    f = lambda q: _loss(dict(ja, q=q))
    H = np.asarray(jax.jit(jax.hessian(f))(ja["q"]))
    g = jax.jit(jax.grad(f))
    fd = np.stack([(np.asarray(g(ja["q"] + 1e-4 * e)) - np.asarray(g(ja["q"] - 1e-4 * e))) / 2e-4
                   for e in np.eye(N)])
    np.testing.assert_allclose(H, H.T, atol=1e-12)
    np.testing.assert_allclose(H, fd, atol=1e-8)


def test_weakly_active_constraint():
    # min 1/2 z^2 s.t. z <= h at h = 0: z*(h) = min(h, 0) has one-sided derivatives 1 and 0.
    # The interior-point solution has lam ~ s ~ sqrt(mu) (small, but not 0 to 1e-10: the solver
    # iterates SEPARATION_STEPS past convergence trying to separate them, and cannot), and the
    # derivative is the one-sided derivative of the side it is on (finite, no NaN).
    f = lambda h: solve_qp(jnp.eye(1), jnp.zeros(1), jnp.ones((1, 1)), h)
    sol = f(jnp.zeros(1))
    assert int(sol.status) == 0
    assert 0 < float(sol.lam[0]) < 1e-4 and 0 < float(sol.s[0]) < 1e-4
    # one compilation for the derivative at h = -0.5, 0, 0.5
    dz = np.asarray(jax.jit(jax.vmap(jax.grad(lambda h: f(h).z[0])))(jnp.array([[-0.5], [0.0], [0.5]])))
    # lam and s are within a factor of 10 of each other: the constraint counts as inactive,
    # whatever the rounding (the right derivative, 0, like ReLU'(0) = 0)
    assert 0.1 < float(sol.s[0]) / float(sol.lam[0]) < 10
    assert dz[1, 0] == 0.0
    # away from the kink the derivative is the exact one
    assert abs(dz[0, 0] - 1.0) < 1e-8 and abs(dz[2, 0]) < 1e-8


# ----------------------------------------------------------------------------- errors and status

INFEASIBLE = dict(Q=np.eye(1), q=np.zeros(1), G=np.array([[1.0], [-1.0]]), h=np.array([-1.0, -1.0]))
INFEASIBLE_2 = dict(Q=np.array([[2.0, 0.5], [0.5, 1.0]]), q=np.array([0.3, -0.2]),
                    G=np.array([[1.0, 0.0], [-1.0, -1.0], [0.0, 1.0]]), h=np.array([-1.0, -1.0, -0.5]),
                    A=np.array([[1.0, 2.0]]), b=np.array([0.3]))
INCONSISTENT_EQ = dict(Q=np.eye(2), q=np.ones(2), A=np.ones((2, 2)), b=np.array([1.0, 2.0]))
UNBOUNDED = dict(Q=np.zeros((2, 2)), q=np.array([1.0, -2.0]))
UNBOUNDED_2 = dict(Q=np.diag([1.0, 0.0]), q=np.array([0.0, -1.0]), G=-np.eye(2), h=np.zeros(2))
NOT_PSD = dict(Q=np.diag([1.0, -0.1]), q=np.ones(2))
NOT_SYMMETRIC = dict(Q=np.array([[1.0, 0.5], [0.0, 1.0]]), q=np.ones(2))
WITH_NAN = dict(Q=np.eye(2), q=np.array([1.0, np.nan]))

STATUS_CASES = {
    "infeasible": (INFEASIBLE, QPInfeasibleError, 2, "primal infeasible"),
    "infeasible_2": (INFEASIBLE_2, QPInfeasibleError, 2, "primal infeasible"),
    "inconsistent_eq": (INCONSISTENT_EQ, QPInfeasibleError, 2, "primal infeasible"),
    "unbounded": (UNBOUNDED, QPUnboundedError, 3, "unbounded"),
    "unbounded_2": (UNBOUNDED_2, QPUnboundedError, 3, "unbounded"),
    "not_psd": (NOT_PSD, QPInputError, 4, "positive semidefinite"),
    "not_symmetric": (NOT_SYMMETRIC, QPInputError, 4, "symmetric"),
    "nan": (WITH_NAN, QPInputError, 4, "q contains 1 NaN"),
}


@pytest.mark.parametrize("name", list(STATUS_CASES))
def test_errors_eager_and_status_under_jit(name):
    args, error, status, needle = STATUS_CASES[name]
    err = _raises(lambda: solve_qp(**args), error, needle)
    assert isinstance(err, QPError) and isinstance(err, ValueError)
    # under jit: no exception, the status flag, and NaN values and derivatives (the derivatives
    # for one case of each status only: each costs a compilation)
    jargs = {k: jnp.asarray(v) for k, v in args.items()}
    if name in ("infeasible", "unbounded", "not_psd"):
        loss = lambda a: jnp.sum(solve_qp(**a).z)
        sol, g = jax.jit(lambda a: (solve_qp(**a), jax.grad(loss)(a)))(jargs)
        for k in args:
            assert np.all(np.isnan(np.asarray(g[k]))), k
    else:
        sol = jax.jit(lambda a: solve_qp(**a))(jargs)
    assert int(sol.status) == status
    assert np.all(np.isnan(np.asarray(sol.z))) and np.all(np.isnan(np.asarray(sol.lam)))


def test_max_iter_status():
    # not converged is as loud as infeasible: an error eagerly (also under an eager grad), and
    # under jit the status with NaN values and NaN gradients for every input
    args = make_qp(0)
    _raises(lambda: solve_qp(**args, max_iter=2), QPNotConvergedError, "max_iter", "status 1")
    jargs = {k: jnp.asarray(v) for k, v in args.items()}
    loss = lambda a: jnp.sum(solve_qp(**a, max_iter=2).z)
    _raises(lambda: jax.grad(loss)(jargs), QPNotConvergedError, "status 1")
    sol, g = jax.jit(lambda a: (solve_qp(**a, max_iter=2), jax.grad(loss)(a)))(jargs)
    assert int(sol.status) == 1 and int(sol.iterations) == 2
    for x in (sol.z, sol.lam, sol.nu, sol.s):
        assert np.all(np.isnan(np.asarray(x)))
    for k in args:
        assert np.all(np.isnan(np.asarray(g[k]))), k


def test_eager_grad_raises_for_failed_statuses():
    jargs = {k: jnp.asarray(v) for k, v in INFEASIBLE.items()}
    _raises(lambda: jax.grad(lambda h: jnp.sum(solve_qp(**dict(jargs, h=h)).z))(jargs["h"]),
            QPInfeasibleError, "status 2")


BOX_G = np.concatenate([np.eye(2), -np.eye(2)])
BOX_H = np.ones(4)


@pytest.mark.parametrize("Q", [np.zeros((2, 2)), 1e-12 * np.eye(2), np.diag([0.0, 1.0])],
                         ids=["lp", "tiny_regularizer", "singular_q"])
def test_not_unique_solution_is_an_error_and_nan_under_jit(Q):
    # min z1 (+ a flat or nearly flat term) over a box: the face z1 = -1 is optimal in the LP and
    # the tiny-regularizer case (z2 free), and for Q = diag(0, 1) with q = (0, 1) the face z2 = -1
    # (z1 free). The active-set KKT matrix is singular although LICQ holds.
    q = np.array([0.0, 1.0]) if Q[1, 1] == 1.0 else np.array([1.0, 0.0])
    _raises(lambda: solve_qp(Q, q, BOX_G, BOX_H), QPNotUniqueError, "not unique", "status 5")
    loss = lambda q: jnp.sum(solve_qp(jnp.asarray(Q), q, BOX_G, BOX_H).z)
    _raises(lambda: jax.grad(loss)(jnp.asarray(q)), QPNotUniqueError, "status 5")
    sol, g = jax.jit(lambda q: (solve_qp(jnp.asarray(Q), q, BOX_G, BOX_H), jax.grad(loss)(q)))(
        jnp.asarray(q))
    assert int(sol.status) == 5
    assert np.all(np.isnan(np.asarray(sol.z))) and np.all(np.isnan(np.asarray(g)))


def test_lp_at_a_vertex_has_derivative_zero():
    # the KKT matrix is invertible at a vertex (two active constraints with positive multipliers
    # span R^2): the derivative exists and is 0; a small |z|^2 is no flat face either
    c = jnp.array([1.0, -2.0])
    sol = solve_qp(np.zeros((2, 2)), c, BOX_G, BOX_H)
    assert int(sol.status) == 0
    np.testing.assert_allclose(np.asarray(sol.z), [-1.0, 1.0], atol=1e-8)
    J = jax.jacobian(lambda c: solve_qp(jnp.zeros((2, 2)), c, BOX_G, BOX_H).z)(c)
    np.testing.assert_allclose(np.asarray(J), 0.0, atol=1e-8)
    J = jax.jacobian(lambda c: solve_qp(1e-6 * jnp.eye(2), c, BOX_G, BOX_H).z)(
        jnp.array([1e-7, 0.0]))
    np.testing.assert_allclose(np.asarray(J), -1e6 * np.eye(2), rtol=1e-6)


def test_batched_error_names_the_element():
    args = {"Q": np.eye(1), "q": np.zeros((2, 1)), "G": np.array([[1.0], [-1.0]]),
            "h": np.array([[1.0, 1.0], [-1.0, -1.0]])}
    _raises(lambda: solve_qp(**args), QPInfeasibleError, "batch index [(1,)]")
    sol = jax.jit(lambda a: solve_qp(**a))(args)
    np.testing.assert_array_equal(np.asarray(sol.status), [0, 2])
    np.testing.assert_allclose(np.asarray(sol.z[0]), [0.0], atol=1e-9)


def test_shape_errors_name_the_argument():
    a = make_qp(0)
    cases = [
        (dict(a, Q=np.eye(3)), "Q must have shape (..., 4, 4)"),
        (dict(a, G=a["G"][:, :3]), "G must have shape (..., 6, 4)"),
        (dict(a, h=a["h"][:5]), "h must have shape (..., 6)"),
        (dict(a, A=a["A"][:, :2]), "A must have shape (..., 2, 4)"),
        (dict(a, b=np.ones(3)), "b must have shape (..., 2)"),
        (dict(a, q=np.ones((3, N)), h=np.ones((2, M))), "batch dims"),
        (dict(a, Q=np.ones(N)), "Q must have at least 2 dims"),
    ]
    for args, needle in cases:
        _raises(lambda: solve_qp(**args), QPInputError, needle)
        # shapes are static: also raised under jit
        _raises(lambda: jax.jit(lambda x: solve_qp(**x))(args), QPInputError, needle)
    _raises(lambda: solve_qp(a["Q"], a["q"], G=a["G"]), QPInputError, "G and h must be given together")
    _raises(lambda: solve_qp(a["Q"], a["q"], b=a["b"]), QPInputError, "A and b must be given together")
    _raises(lambda: solve_qp(a["Q"].astype(complex), a["q"]), QPInputError, "real")


# ----------------------------------------------------------------------------- exact KKT gradients

def _medium_qp(seed, n=50, m=50, p=10):
    """The benchmark's problem family: strictly feasible, strictly convex, ~half the
    constraints active."""
    r = np.random.default_rng(seed)
    L = r.normal(size=(n, n)) / np.sqrt(n)
    G, A, z0 = r.normal(size=(m, n)), r.normal(size=(p, n)), r.normal(size=n)
    return dict(Q=L @ L.T + 0.1 * np.eye(n), q=3 * r.normal(size=n), G=G,
                h=G @ z0 + r.uniform(0, 1, m), A=A, b=A @ z0)


def _exact_kkt_vjp(args, sol, w):
    """Gradients of w'z by the equality-constrained KKT system on the active set, in numpy:
    K = [[Q, Ga', A'], [Ga, 0, 0], [A, 0, 0]], (dz, dla, dnu) = -K^-1 (w, 0, 0) (K symmetric);
    dQ = sym(dz z'), dq = dz, dG = dlam z' + lam dz', dh = -dlam, dA = dnu z' + nu dz', db = -dnu."""
    Q, G, A = args["Q"], args["G"], args["A"]
    z, lam, nu, s = (np.asarray(x) for x in (sol.z, sol.lam, sol.nu, sol.s))
    act = s < 0.1 * lam
    Ga, n, k, p = G[act], len(z), int(act.sum()), A.shape[0]
    K = np.block([[Q, Ga.T, A.T], [Ga, np.zeros((k, k + p))], [A, np.zeros((p, k + p))]])
    x = -np.linalg.solve(K, np.concatenate([w, np.zeros(k + p)]))
    dz, dnu = x[:n], x[n + k:]
    dlam = np.zeros(len(lam))
    dlam[act] = x[n:n + k]
    lam = np.where(act, lam, 0.0)
    return dict(Q=0.5 * (np.outer(dz, z) + np.outer(z, dz)), q=dz,
                G=np.outer(dlam, z) + np.outer(lam, dz), h=-dlam,
                A=np.outer(nu, dz) + np.outer(dnu, z), b=-dnu)


def test_exact_kkt_formula_matches_finite_differences():
    # the reference itself, on a small problem: every entry against central differences
    args = make_qp(1)
    sol = solve_qp(**args)
    ref = _exact_kkt_vjp(args, sol, W)
    for k, v in args.items():
        for idx in np.ndindex(*v.shape):
            E = np.zeros_like(v)
            E[idx] = 1e-6
            if k == "Q":
                E = 0.5 * (E + E.T)
            f = lambda sign: float(W @ solve_qp(**dict(args, **{k: v + sign * E})).z)
            fd = (f(1) - f(-1)) / 2e-6
            assert abs(ref[k][idx] - fd) <= 1e-6 * max(1.0, abs(fd)), (k, idx)


@pytest.mark.parametrize("seed", range(6))
def test_gradients_match_exact_kkt_gradients_to_1e7(seed):
    args = _medium_qp(seed)
    sol = solve_qp(**args)
    active = np.asarray(sol.s) < 0.1 * np.asarray(sol.lam)
    assert 0.1 < active.mean() < 0.9
    w = np.random.default_rng(100 + seed).normal(size=50)
    grads = jax.grad(lambda a: jnp.dot(w, solve_qp(**a).z))(
        {k: jnp.asarray(v) for k, v in args.items()})
    ref = _exact_kkt_vjp(args, sol, w)
    for k in args:
        err = np.linalg.norm(np.asarray(grads[k]) - ref[k]) / np.linalg.norm(ref[k])
        assert err < 1e-7, (k, err)
    np.testing.assert_allclose(np.asarray(grads["Q"]), np.asarray(grads["Q"]).T, atol=1e-14)


def _count_factorizations(fn, *args):
    """Number of lu/cholesky equations in fn's program, sub-programs (jit, while, custom_jvp
    bodies) included, each counted once where it is written (a loop body once)."""
    def walk(jaxpr):
        count = 0
        for eqn in jaxpr.eqns:
            count += eqn.primitive.name in ("lu", "cholesky")
            for value in eqn.params.values():
                for sub in value if isinstance(value, (tuple, list)) else [value]:
                    if isinstance(sub, jax.extend.core.ClosedJaxpr):
                        count += walk(sub.jaxpr)
                    elif isinstance(sub, jax.extend.core.Jaxpr):
                        count += walk(sub)
        return count
    return walk(jax.make_jaxpr(fn)(*args).jaxpr)


def _traced_factorizations(fn, *args):
    """The set of (role, shape) of the matrices ift_lib.qp factorizes while fn is traced."""
    with recording_factorizations() as factorized:
        jax.make_jaxpr(fn)(*args)
    return set(factorized)


@pytest.mark.parametrize("blocks", ["both", "ineq"])
def test_backward_pass_costs_two_small_factorizations(blocks):
    # the forward solve factorizes the Newton matrix (n, n) and its Schur complement on A (p, p)
    # once per iteration (a loop body: traced once), plus the input and solution checks; the
    # gradient adds exactly the reduced active-set KKT matrix's two Cholesky factorizations,
    # (n, n) and (m + p, m + p): nothing per iteration
    args = {k: jnp.asarray(v) for k, v in make_qp(0, BLOCKS[blocks]).items()}
    n, m, p = N, M, P if blocks == "both" else 0
    forward = _traced_factorizations(lambda q: solve_qp(**dict(args, q=q)).z, args["q"])
    backward = _traced_factorizations(
        jax.grad(lambda q: jnp.sum(solve_qp(**dict(args, q=q)).z)), args["q"])
    assert forward == {("input check", (n, n)), ("newton", (n, n)),
                       ("solution check", (n, n)), ("solution check", (m + p, m + p))} | (
        {("newton schur", (p, p))} if p else set())
    # (a trace runs the solver's Python code more than once under grad, so compare sets)
    assert backward - forward == {("active-set kkt", (n, n)), ("active-set kkt schur", (m + p, m + p))}
    chol = lambda f: _count_factorizations(f, args["q"])
    assert chol(jax.grad(lambda q: jnp.sum(solve_qp(**dict(args, q=q)).z))) == \
        chol(lambda q: solve_qp(**dict(args, q=q)).z) + 2


def test_dependent_active_inequalities_give_nan_derivative():
    # two copies of the same active constraint z1 + z2 <= 0: z is right, the multipliers split
    # arbitrarily between the copies (LICQ fails). dz/dq exists, but the KKT matrix that
    # solve_qp factorizes is singular: an error eagerly, NaN under jit, not a guess
    G = np.array([[1.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    h = np.array([0.0, 0.0, 5.0])
    sol = solve_qp(np.eye(2), np.array([-1.0, -1.0]), G, h)
    assert int(sol.status) == 6
    np.testing.assert_allclose(np.asarray(sol.z), [0.0, 0.0], atol=1e-6)
    loss = lambda q: jnp.sum(solve_qp(jnp.eye(2), q, G, h).z)
    _raises(lambda: jax.grad(loss)(jnp.array([-1.0, -1.0])), QPDependentConstraintsError,
            "linearly dependent")
    g = jax.jit(jax.grad(loss))(jnp.array([-1.0, -1.0]))
    assert np.all(np.isnan(np.asarray(g)))


@pytest.mark.parametrize("blocks", list(BLOCKS))
def test_gradient_of_shared_arguments_with_a_block_absent(blocks):
    # batched q, everything else shared, a constraint block absent (empty lam/s or nu): the
    # gradient of a shared argument is the sum of the per-element gradients, in forward and
    # reverse mode (a regression test: JAX fails on zero-size batched outputs of custom_jvp)
    args = {k: jnp.asarray(v) for k, v in make_qp(3, BLOCKS[blocks]).items()}
    qs = args["q"] + jnp.asarray(np.random.default_rng(0).normal(size=(3, N)))
    loss = lambda Q, q: jnp.sum(W * solve_qp(**dict(args, Q=Q, q=q)).z)
    g = jax.grad(loss)(args["Q"], qs)
    g_each = sum(jax.grad(loss)(args["Q"], q) for q in qs)
    np.testing.assert_allclose(np.asarray(g), np.asarray(g_each), rtol=1e-9, atol=1e-12)
    E = jnp.asarray(np.random.default_rng(1).normal(size=(N, N)))
    _, jv = jax.jvp(loss, (args["Q"], qs), (E + E.T, jnp.zeros_like(qs)))
    np.testing.assert_allclose(float(jv), float(jnp.sum(g * (E + E.T))), rtol=1e-9)


def test_status_enumeration_maps_to_messages_and_errors():
    assert [int(code) for code in Status] == list(range(7))
    assert STATUS == {int(code): code.message for code in Status}
    errors = {Status.MAX_ITER: QPNotConvergedError, Status.PRIMAL_INFEASIBLE: QPInfeasibleError,
              Status.DUAL_INFEASIBLE: QPUnboundedError, Status.BAD_INPUT: QPInputError,
              Status.NOT_UNIQUE: QPNotUniqueError,
              Status.DEPENDENT_CONSTRAINTS: QPDependentConstraintsError}
    for code, error in errors.items():
        assert QPError.for_status(code) is error and error.status == code
    with pytest.raises(KeyError):
        QPError.for_status(Status.SOLVED)


def test_throw_false_returns_the_status_instead_of_raising():
    G_inf, h_inf = jnp.array([[1.0, 0.0], [-1.0, 0.0]]), jnp.array([-1.0, -1.0])
    with pytest.raises(QPInfeasibleError, match="PRIMAL_INFEASIBLE"):
        solve_qp(jnp.eye(2), jnp.zeros(2), G_inf, h_inf)
    sol = solve_qp(jnp.eye(2), jnp.zeros(2), G_inf, h_inf, throw=False)
    assert Status(int(sol.status)) is Status.PRIMAL_INFEASIBLE and bool(jnp.all(jnp.isnan(sol.z)))
    bad = solve_qp(jnp.eye(2), jnp.array([jnp.nan, 0.0]), throw=False)   # no eager input check
    assert Status(int(bad.status)) is Status.BAD_INPUT and bool(jnp.all(jnp.isnan(bad.z)))
    with pytest.raises(QPInputError, match="Q must have shape"):          # shapes: always
        solve_qp(jnp.eye(2), jnp.zeros(3), throw=False)


# ----------------------------------------------------------------------------- the factorizations

def test_lp_with_a_direction_only_the_equalities_fix():
    # min z2 s.t. 0 <= z2 <= 1, z1 = b (Q = 0): G'DG is 0 along z1, which only A fixes (the
    # rho A'A term of the Newton matrix keeps its Cholesky factorization positive definite)
    G, h = np.array([[0.0, 1.0], [0.0, -1.0]]), np.array([1.0, 0.0])
    A = np.array([[1.0, 0.0]])
    f = lambda b: solve_qp(jnp.zeros((2, 2)), jnp.array([0.0, 1.0]), G, h, A, b)
    sol = f(jnp.array([0.3]))
    assert int(sol.status) == 0
    np.testing.assert_allclose(np.asarray(sol.z), [0.3, 0.0], atol=1e-8)
    J = jax.jacobian(lambda b: f(b).z)(jnp.array([0.3]))
    np.testing.assert_allclose(np.asarray(J), [[1.0], [0.0]], atol=1e-8)


def _relative_errors(args, sol, grads, w):
    """||g - g_ref|| / ||g_ref|| per block (a block whose exact gradient is 0, as dz/dq at a vertex,
    relative to 1e-8)."""
    ref = _exact_kkt_vjp(args, sol, w)
    return {k: np.linalg.norm(np.asarray(grads[k]) - ref[k]) / max(np.linalg.norm(ref[k]), 1e-8)
            for k in args}


def test_ill_conditioned_q_gradients_match_exact_kkt_gradients():
    # eigenvalues of Q from 1 to 1e-6: the reduced factorizations (Q + c N'N and its Schur
    # complement) plus one refinement step keep the gradient at the exact KKT gradient's accuracy
    r = np.random.default_rng(5)
    n, m, p = 20, 20, 4
    U, _ = np.linalg.qr(r.normal(size=(n, n)))
    G, A, z0 = r.normal(size=(m, n)), r.normal(size=(p, n)), r.normal(size=n)
    args = dict(Q=U @ np.diag(np.logspace(0, -6, n)) @ U.T, q=r.normal(size=n), G=G,
                h=G @ z0 + r.uniform(0, 1, m), A=A, b=A @ z0)
    args["Q"] = 0.5 * (args["Q"] + args["Q"].T)
    sol = solve_qp(**args)
    assert int(sol.status) == 0
    w = r.normal(size=n)
    grads = jax.grad(lambda a: jnp.dot(w, solve_qp(**a).z))({k: jnp.asarray(v) for k, v in args.items()})
    errors = _relative_errors(args, sol, grads, w)
    assert max(errors.values()) < 1e-7, errors


def test_many_active_constraints_gradients_match_exact_kkt_gradients():
    # q pushes z far outside a polytope of 60 constraints in R^20: at least 12 of the 20 - 4
    # free directions are fixed by active constraints (all 16 here: a vertex, where dz/dq = 0
    # exactly and the multipliers carry the gradient)
    r = np.random.default_rng(7)
    n, m, p = 20, 60, 4
    G, A, z0 = r.normal(size=(m, n)), r.normal(size=(p, n)), r.normal(size=n)
    args = dict(Q=np.eye(n) + 0.1 * np.ones((n, n)), q=-30.0 * r.normal(size=n), G=G,
                h=G @ z0 + r.uniform(0, 1, m), A=A, b=A @ z0)
    sol = solve_qp(**args)
    active = np.asarray(sol.s) < 0.1 * np.asarray(sol.lam)
    assert int(sol.status) == 0 and active.sum() >= n - p - 4, active.sum()
    w = r.normal(size=n)
    grads = jax.grad(lambda a: jnp.dot(w, solve_qp(**a).z))({k: jnp.asarray(v) for k, v in args.items()})
    errors = _relative_errors(args, sol, grads, w)
    assert max(errors.values()) < 1e-7, errors


def _lapack_calls_in_a_chain(hlo_text):
    """For each computation of an HLO module's text: are its LAPACK custom calls totally ordered
    by data dependencies (no two of them can run at the same time)?"""
    import re
    chained = {}
    for block in re.split(r"\n(?=\S)", hlo_text):
        operands, calls = {}, []
        for line in block.splitlines()[1:]:
            m = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = (.*)", line)
            if m:
                operands[m.group(1)] = set(re.findall(r"%([\w.\-]+)", m.group(2)))
                if 'custom_call_target="lapack_' in line:
                    calls.append(m.group(1))
        if len(calls) < 2:
            continue
        ancestors = {}

        def up(name):
            if name not in ancestors:
                ancestors[name] = set()
                for o in operands.get(name, ()):
                    ancestors[name] |= {o} | up(o)
            return ancestors[name]
        chained[block.splitlines()[0][:60]] = all(
            a in up(b) or b in up(a) for i, a in enumerate(calls) for b in calls[i + 1:])
    return chained


def test_lapack_calls_are_chained_so_batched_lapack_cannot_deadlock():
    # jaxlib 0.10.2's batched LAPACK kernels block XLA's thread pool; two of them at once hang on
    # 2 cores (ift_lib._qp_linalg). Every LAPACK call of a batched gradient depends on the last.
    import sys
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))
    args, _ = _batched_args()
    jargs = {k: jnp.asarray(v) for k, v in args.items()}
    loss = lambda a: jnp.sum(solve_qp(**a).z)
    text = jax.jit(jax.value_and_grad(loss)).lower(jargs).compile().as_text()
    chained = _lapack_calls_in_a_chain(text)
    assert chained and all(chained.values()), chained


@pytest.mark.parametrize("margin", [1e-4, 1e-5])
def test_near_degenerate_constraints_take_the_right_side(margin):
    # min 1/2 |z - c|^2 s.t. z_0 <= 1, z_1 <= 1 with c_0 = 1 + margin (active, lam_0 = margin) and
    # c_1 = 1 - margin (inactive, slack margin), and |objective| ~ 1e5 from the free coordinates:
    # at tol the gap bounds s'lam by ~1e-5, so s_i ~ lam_i ~ 1e-3 at the first converged iterate,
    # and the derivative would take either side. The solver iterates on until each constraint
    # is clearly active or inactive (at most SEPARATION_STEPS more steps).
    n = 6
    c = jnp.array([1.0 + margin, 1.0 - margin, 300.0, -300.0, 200.0, 0.0])
    G, h = jnp.eye(n)[:2], jnp.ones(2)
    f = lambda h: solve_qp(jnp.eye(n), -c, G, h)
    sol = f(h)
    assert int(sol.status) == 0
    J = np.asarray(jax.jacobian(lambda h: f(h).z)(h))
    exact = np.zeros((n, 2))
    exact[0, 0] = 1.0                     # z_0 = h_0 (active); z_1 = c_1 (inactive)
    np.testing.assert_allclose(J, exact, atol=1e-8)
    # the same under jit and vmap (a batch with a well-separated problem)
    c2 = jnp.stack([c, c.at[0].set(2.0).at[1].set(0.0)])
    Jb = jax.jit(jax.vmap(jax.jacobian(lambda h, c: solve_qp(jnp.eye(n), -c, G, h).z),
                          in_axes=(None, 0)))(h, c2)
    np.testing.assert_allclose(np.asarray(Jb[0]), exact, atol=1e-8)
    np.testing.assert_allclose(np.asarray(Jb[1]), exact, atol=1e-8)


def test_weakly_active_constraint_costs_at_most_separation_steps(monkeypatch):
    # an exactly weakly active constraint (lam = s = 0) never separates: the solver stops after
    # SEPARATION_STEPS more iterations than it needs to converge, and reports SOLVED
    import ift_lib._qp_ipm as ipm
    f = lambda: solve_qp(jnp.eye(1), jnp.zeros(1), jnp.ones((1, 1)), jnp.zeros(1))
    weak, steps = f(), ipm.SEPARATION_STEPS
    jax.clear_caches()
    monkeypatch.setattr(ipm, "SEPARATION_STEPS", 0)
    try:
        converged = f()
    finally:
        jax.clear_caches()
    assert int(weak.status) == 0 and int(converged.status) == 0
    assert int(weak.iterations) == int(converged.iterations) + steps


# ----------------------------------------------------------------------------- the dual Newton form

def _few_constraints_qp(seed, blocks=("G", "A"), n=8, m=3, p=2):
    """m < DUAL_MAX_RATIO * n: newton="auto" takes the dual form for these."""
    return make_qp(seed, blocks, n=n, m=m, p=p)


def _roles(fn, *args):
    return {role for role, _ in _traced_factorizations(fn, *args)}


@pytest.mark.parametrize("blocks", list(BLOCKS))
def test_dual_form_agrees_with_primal_form(blocks):
    # the same solution and the same derivatives in all six blocks, eagerly and under jit
    args = {k: jnp.asarray(v) for k, v in _few_constraints_qp(0, BLOCKS[blocks]).items()}
    w = jnp.asarray(np.random.default_rng(1).normal(size=8))
    out = {}
    for newton in ("primal", "dual", "auto"):
        loss = lambda a: jnp.dot(w, solve_qp(**a, newton=newton).z)
        sol = solve_qp(**args, newton=newton)
        assert int(sol.status) == 0
        stat, primal, dual, comp = kkt_residuals({k: np.asarray(v) for k, v in args.items()}, sol)
        assert max(stat, primal, dual, comp) < 1e-8
        out[newton] = (sol, jax.grad(loss)(args), jax.jit(jax.grad(loss))(args))
    ref_sol, ref_grad, _ = out["primal"]
    for newton, (sol, grad, grad_jit) in out.items():
        np.testing.assert_allclose(np.asarray(sol.z), np.asarray(ref_sol.z), rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(np.asarray(sol.lam), np.asarray(ref_sol.lam), rtol=1e-7,
                                   atol=1e-9)
        for k in args:
            for g in (grad, grad_jit):
                np.testing.assert_allclose(np.asarray(g[k]), np.asarray(ref_grad[k]),
                                           rtol=1e-8, atol=1e-10, err_msg=(newton, k))


@pytest.mark.parametrize("seed", range(3))
def test_dual_form_gradients_match_exact_kkt_gradients_to_1e7(seed):
    # the benchmark's family with fewer constraints than variables (the dual form's regime)
    args = _medium_qp(seed, n=50, m=20, p=5)
    sol = solve_qp(**args, newton="dual")
    w = np.random.default_rng(200 + seed).normal(size=50)
    grads = jax.grad(lambda a: jnp.dot(w, solve_qp(**a, newton="dual").z))(
        {k: jnp.asarray(v) for k, v in args.items()})
    ref = _exact_kkt_vjp(args, sol, w)
    for k in args:
        err = np.linalg.norm(np.asarray(grads[k]) - ref[k]) / np.linalg.norm(ref[k])
        assert err < 1e-7, (k, err)


def test_auto_chooses_the_form_by_shape_and_conditioning():
    args = {k: jnp.asarray(v) for k, v in _few_constraints_qp(0).items()}
    fwd = lambda a: (lambda q: solve_qp(**dict(a, q=q)).z)
    # m < n, Q positive definite, concrete: the dual form only (the test decided eagerly)
    with recording_factorizations() as factorized:
        solve_qp(**args)
    roles = {role for role, _ in factorized}
    assert {"dual form check", "dual q0", "dual equalities", "dual newton"} <= roles
    assert "newton" not in roles
    # under a trace (jit, grad) the test is a value: both forms are compiled, behind a lax.cond
    assert {"newton", "dual newton"} <= _roles(fwd(args), args["q"])
    # more constraints than DUAL_MAX_RATIO * n: the primal form only, no test
    many = {k: jnp.asarray(v) for k, v in make_qp(0).items()}                    # n = 4, m = 6
    assert "dual newton" not in _roles(fwd(many), many["q"])
    assert "dual form check" not in _roles(fwd(many), many["q"])
    # no inequalities: one step solves it, the primal form (nothing to gain, nothing compiled twice)
    eq_only = {k: jnp.asarray(v) for k, v in _few_constraints_qp(0, ("A",)).items()}
    assert "dual form check" not in _roles(fwd(eq_only), eq_only["q"])
    # an LP (Q = 0) with few constraints: the test fails, the primal form solves it
    lp = dict(args, Q=jnp.zeros((8, 8)), G=jnp.concatenate([jnp.eye(8), -jnp.eye(8)])[:5],
              h=jnp.ones(5))
    with recording_factorizations() as factorized:
        solve_qp(**lp, throw=False)
    roles = {role for role, _ in factorized}
    assert "newton" in roles and "dual newton" not in roles


def test_dual_form_needs_a_well_conditioned_q():
    # Q singular along e8; the constraint z8 <= -1 (active: q pushes z8 up) makes the QP's
    # solution unique, so the primal form solves it
    args = _few_constraints_qp(0, ("G",))
    G, e8 = args["G"].copy(), np.eye(8)[7]
    G[0] = e8
    singular = dict(args, Q=np.diag([1.0] * 7 + [0.0]), q=np.where(e8 > 0, -1.0, args["q"]), G=G,
                    h=np.concatenate([[-1.0], G[1:] @ -e8 + 1.0]))
    _raises(lambda: solve_qp(**singular, newton="dual"), QPInputError, "newton='dual'",
            "DUAL_PIVOT")
    for fn in (jax.jit(lambda a: solve_qp(**a, newton="dual")),
               lambda a: solve_qp(**a, newton="dual", throw=False)):
        sol = fn(singular)
        assert int(sol.status) == Status.BAD_INPUT and np.all(np.isnan(np.asarray(sol.z)))
    # "auto" solves it (by the primal form), eagerly and under jit
    for fn in (lambda a: solve_qp(**a), jax.jit(lambda a: solve_qp(**a))):
        sol = fn(singular)
        assert int(sol.status) == 0
        np.testing.assert_allclose(np.asarray(sol.z),
                                   np.asarray(solve_qp(**singular, newton="primal").z), atol=1e-9)
    _raises(lambda: solve_qp(**args, newton="cholesky"), QPInputError, "newton must be one of")


def test_dual_form_statuses():
    # infeasible, not converged; batched with one bad element: the element is named
    args = _few_constraints_qp(0, ("G",))
    G = np.concatenate([args["G"][:1], -args["G"][:1], args["G"][1:2]])
    infeasible = dict(args, G=G, h=np.array([-1.0, -1.0, 5.0]))
    _raises(lambda: solve_qp(**infeasible, newton="dual"), QPInfeasibleError, "infeasible")
    assert int(jax.jit(lambda a: solve_qp(**a, newton="dual"))(infeasible).status) == \
        Status.PRIMAL_INFEASIBLE
    _raises(lambda: solve_qp(**args, newton="dual", max_iter=2), QPNotConvergedError)
    feasible = dict(args, G=G, h=np.ones(3))
    batch = {k: np.stack([v, infeasible[k]]) for k, v in feasible.items()}
    _raises(lambda: solve_qp(**batch), QPInfeasibleError, "batch index [(1,)]")


def test_dual_form_lapack_calls_are_chained():
    # the dual form's factorizations (the test, Q0, the equality block, Wred + D^-1 per
    # iteration) and the cond between the forms keep every LAPACK call in a chain
    import sys
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20000))
    per = [_few_constraints_qp(seed) for seed in range(6)]
    jargs = {k: jnp.asarray(np.stack([a[k] for a in per])) for k in NAMES}
    loss = lambda a: jnp.sum(solve_qp(**a).z)
    text = jax.jit(jax.value_and_grad(loss)).lower(jargs).compile().as_text()
    chained = _lapack_calls_in_a_chain(text)
    assert chained and all(chained.values()), chained


def test_dual_form_with_q_near_its_conditioning_limit():
    # eigenvalues of Q from 1 to 10^-7.9 (its smallest Cholesky pivot just above DUAL_PIVOT):
    # the dual form's Q0^-1 is then large, and its gradients still match the exact KKT ones
    r = np.random.default_rng(5)
    n, m, p = 20, 10, 4
    U, _ = np.linalg.qr(r.normal(size=(n, n)))
    G, A, z0 = r.normal(size=(m, n)), r.normal(size=(p, n)), r.normal(size=n)
    Q = U @ np.diag(np.logspace(0, -7.9, n)) @ U.T
    args = dict(Q=0.5 * (Q + Q.T), q=r.normal(size=n), G=G, h=G @ z0 + r.uniform(0, 1, m), A=A,
                b=A @ z0)
    w = r.normal(size=n)
    sol = solve_qp(**args, newton="dual")
    assert int(sol.status) == 0
    grads = jax.grad(lambda a: jnp.dot(w, solve_qp(**a, newton="dual").z))(
        {k: jnp.asarray(v) for k, v in args.items()})
    errors = _relative_errors(args, sol, grads, w)
    assert max(errors.values()) < 1e-7, errors
