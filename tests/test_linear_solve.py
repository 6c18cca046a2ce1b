"""Tests for ift_lib.linear_solve: every solver against numpy, pytrees, tolerances, solvers as
values, make_solver."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ift_lib import linear_solve as ls
from ift_lib.linear_solve import (SOLVERS, make_solver, materialize, solve_bicgstab, solve_cg,
                                  solve_dense, solve_gmres, solve_neumann)

N = 8


def _spd(n, seed, lam_min=1.0, lam_max=10.0):
    """A random symmetric positive definite matrix with eigenvalues spread in [lam_min, lam_max]."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    lam = np.geomspace(lam_min, lam_max, n)
    return (q * lam) @ q.T, lam


@pytest.fixture(scope="module")
def spd_system():
    A, lam = _spd(N, seed=0)
    b = np.random.default_rng(1).standard_normal(N)
    return A, b, lam


def _matvec(A):
    A = jnp.asarray(A)
    return lambda v: A @ v


@functools.partial(jax.jit, static_argnums=0)
def _run(solve, A, b):
    """solve(v -> A v, b) under jit: one compilation instead of eager op-by-op dispatch."""
    return solve(lambda v: A @ v, b)


def _rel_err(y, ref):
    return np.linalg.norm(np.asarray(y) - ref) / np.linalg.norm(ref)


def _tight_solver(name, lam):
    """The named solver with options making it accurate to ~1e-12 on an SPD system with spectrum lam."""
    if name == "dense":
        return make_solver("dense")
    if name == "neumann":
        step = 2.0 / (lam.min() + lam.max())                     # optimal Richardson step
        rho = (lam.max() - lam.min()) / (lam.max() + lam.min())  # contraction factor
        terms = int(np.ceil(np.log(1e-14) / np.log(rho)))
        return make_solver("neumann", step=step, num_terms=terms)
    return make_solver(name, tol=1e-12)


ALL = ["dense", "cg", "gmres", "bicgstab", "neumann"]


def test_registry_lists_every_solver():
    assert set(SOLVERS) == set(ALL) | {"identity"}
    assert SOLVERS["dense"] == ls.Dense() and SOLVERS["cg"] == ls.CG()
    assert SOLVERS["gmres"] == ls.GMRES() and SOLVERS["bicgstab"] == ls.BiCGStab()
    assert SOLVERS["neumann"] == ls.Neumann() and SOLVERS["identity"] == ls.Identity()
    assert set(ls.__all__) >= {"make_solver", "SOLVERS", "materialize", *(f"solve_{n}" for n in ALL)}


def test_solvers_are_values():
    # equal and hashed by value: a cache keyed on a solver hits for an equal solver
    assert ls.CG(tol=1e-12) == make_solver("cg", tol=1e-12)
    assert hash(ls.CG(tol=1e-12)) == hash(make_solver("cg", tol=1e-12))
    assert ls.CG(tol=1e-12) != ls.CG(tol=1e-10)
    assert len({ls.Neumann(5, 0.1), ls.Neumann(num_terms=5, step=0.1)}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        ls.CG().tol = 1.0


@pytest.mark.parametrize("make, message", [
    (lambda: ls.CG(tol=-1.0), "tol must be a number >= 0"),
    (lambda: ls.CG(maxiter=0), "maxiter must be an integer >= 1"),
    (lambda: ls.GMRES(restart=2.5), "restart must be an integer >= 1"),
    (lambda: ls.BiCGStab(atol=float("nan")), "atol must be a number >= 0"),
    (lambda: ls.Neumann(num_terms=0), "num_terms must be an integer >= 1"),
    (lambda: ls.Neumann(step=-0.1), "step must be a finite number > 0"),
    (lambda: ls.Identity(scale=0.0), "scale must be a finite nonzero number"),
])
def test_solvers_validate_their_options(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_identity_solver_scales_the_right_hand_side():
    b = {"u": jnp.arange(3.0), "v": jnp.ones(2)}
    y = ls.Identity(scale=0.5)(lambda t: t, b)
    np.testing.assert_array_equal(np.asarray(y["u"]), 0.5 * np.arange(3.0))
    np.testing.assert_array_equal(np.asarray(y["v"]), 0.5 * np.ones(2))


@pytest.mark.parametrize("name", ALL)
def test_spd_system_matches_numpy(spd_system, name):
    A, b, lam = spd_system
    y = _run(_tight_solver(name, lam), A, b)
    assert np.asarray(y).dtype == np.float64
    assert _rel_err(y, np.linalg.solve(A, b)) < 1e-8


@pytest.mark.parametrize("name", ALL)
def test_pytree_right_hand_side(name):
    # A block operator on {"u": (3,), "v": (2, 2)}: a 7 x 7 SPD matrix in flat coordinates.
    A, lam = _spd(7, seed=2)
    rng = np.random.default_rng(3)
    b = {"u": jnp.asarray(rng.standard_normal(3)), "v": jnp.asarray(rng.standard_normal((2, 2)))}

    def flat(t):
        return jnp.concatenate([t["u"], t["v"].ravel()])

    def matvec(t):
        w = jnp.asarray(A) @ flat(t)
        return {"u": w[:3], "v": w[3:].reshape(2, 2)}

    y = jax.jit(lambda b: _tight_solver(name, lam)(matvec, b))(b)
    assert jax.tree.structure(y) == jax.tree.structure(b)
    assert y["u"].shape == (3,) and y["v"].shape == (2, 2)
    ref = np.linalg.solve(A, np.asarray(flat(b)))
    np.testing.assert_allclose(np.asarray(flat(y)), ref, rtol=1e-8, atol=1e-12)
    # materialize sees the same matrix in the flat coordinates of b
    np.testing.assert_allclose(np.asarray(jax.jit(materialize, static_argnums=0)(matvec, b)), A,
                               rtol=0, atol=1e-14)


@pytest.mark.parametrize("name", ["dense", "gmres", "bicgstab"])
def test_nonsymmetric_system(name):
    rng = np.random.default_rng(4)
    A = 3.0 * np.eye(N) + rng.standard_normal((N, N))
    assert not np.allclose(A, A.T)
    assert np.linalg.cond(A) < 100
    b = rng.standard_normal(N)
    solve = make_solver(name) if name == "dense" else make_solver(name, tol=1e-12)
    y = _run(solve, A, b)
    assert _rel_err(y, np.linalg.solve(A, b)) < 1e-8


def test_cg_tolerance_is_honoured():
    # Spread spectrum so that CG needs many iterations; a loose tol must stop early.
    A, _ = _spd(60, seed=5, lam_min=1.0, lam_max=1e3)
    b = np.random.default_rng(6).standard_normal(60)
    ref = np.linalg.solve(A, b)
    errs = {}
    for tol in (1e-4, 1e-12):
        y = np.asarray(_run(make_solver("cg", tol=tol), A, b))
        # the stopping rule |r| <= tol |b| holds
        assert np.linalg.norm(A @ y - b) <= 1.01 * tol * np.linalg.norm(b)
        errs[tol] = _rel_err(y, ref)
    assert errs[1e-12] < 1e-9
    assert errs[1e-4] > 1e-7                 # the loose solve really is loose ...
    assert errs[1e-4] > 1e3 * errs[1e-12]    # ... and much less accurate than the tight one


def test_cg_maxiter_limits_work():
    A, _ = _spd(60, seed=5, lam_min=1.0, lam_max=1e3)
    b = np.random.default_rng(6).standard_normal(60)
    ref = np.linalg.solve(A, b)
    y2 = _run(make_solver("cg", tol=1e-14, maxiter=2), A, b)
    assert _rel_err(y2, ref) > 1e-3


def test_cg_atol_and_init():
    A, _ = _spd(N, seed=0)
    b = np.random.default_rng(1).standard_normal(N)
    ref = np.linalg.solve(A, b)
    # starting at the solution, CG has nothing to do
    y = _run(functools.partial(solve_cg, tol=1e-12, init=jnp.asarray(ref)), A, b)
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-12)
    # a huge absolute tolerance stops CG at once: returns the initial guess (zeros)
    y0 = _run(functools.partial(solve_cg, tol=0.0, atol=1e6), A, b)
    np.testing.assert_array_equal(np.asarray(y0), np.zeros(N))


@pytest.mark.parametrize("num_terms", [1, 5, 20])
def test_neumann_error_formula(spd_system, num_terms):
    A, b, lam = spd_system
    step = 1.0 / lam.max()                       # < 2 / lambda_max: converges
    y = np.asarray(_run(make_solver("neumann", num_terms=num_terms, step=step), A, b))
    x = np.linalg.solve(A, b)
    predicted_err = np.linalg.matrix_power(np.eye(N) - step * A, num_terms) @ x
    np.testing.assert_allclose(x - y, predicted_err, rtol=1e-9, atol=1e-12)


def test_neumann_converges_below_two_over_lambda_max(spd_system):
    A, b, lam = spd_system
    x = np.linalg.solve(A, b)
    step = 1.9 / lam.max()
    errs = [_rel_err(_run(make_solver("neumann", num_terms=k, step=step), A, b), x)
            for k in (10, 40, 160)]
    assert errs[0] > errs[1] > errs[2]
    rho = max(abs(1 - step * lam.min()), abs(1 - step * lam.max()))
    assert errs[2] <= 2 * rho ** 160 * np.linalg.cond(A) + 1e-13


def test_neumann_diverges_when_step_too_large(spd_system):
    A, b, lam = spd_system
    x = np.linalg.solve(A, b)
    step = 2.5 / lam.max()                       # |1 - step * lambda_max| = 1.5 > 1
    errs = [_rel_err(_run(make_solver("neumann", num_terms=k, step=step), A, b), x)
            for k in (5, 10, 20, 40)]
    assert all(e1 < e2 for e1, e2 in zip(errs, errs[1:]))
    assert errs[-1] > 1e5


def test_neumann_default_options():
    # defaults: 50 terms of step 1.0, which is a contraction only if lambda_max < 2
    A = np.diag(np.linspace(0.5, 1.5, 4))
    b = np.arange(1.0, 5.0)
    y = np.asarray(_run(solve_neumann, A, b))
    np.testing.assert_allclose(A @ y, b, rtol=1e-12)
    np.testing.assert_allclose(y - np.linalg.solve(A, b),
                               -np.linalg.matrix_power(np.eye(4) - A, 50) @ np.linalg.solve(A, b),
                               atol=1e-14)


def test_solvers_work_eagerly(spd_system):
    A, b, lam = spd_system
    y = _tight_solver("cg", lam)(_matvec(A), jnp.asarray(b))
    assert _rel_err(y, np.linalg.solve(A, b)) < 1e-8


# ---------------------------------------------------------------------------------------- make_solver

def test_make_solver_names_without_options():
    for name, solver in SOLVERS.items():
        assert make_solver(name) is solver
    assert make_solver() == ls.Dense()


def test_make_solver_binds_options(spd_system):
    A, b, _ = spd_system
    solve = make_solver("neumann", num_terms=3, step=0.1)
    assert solve == ls.Neumann(num_terms=3, step=0.1)
    np.testing.assert_array_equal(
        np.asarray(solve(_matvec(A), jnp.asarray(b))),
        np.asarray(solve_neumann(_matvec(A), jnp.asarray(b), num_terms=3, step=0.1)))
    assert make_solver("gmres", tol=1e-8, restart=5) == ls.GMRES(tol=1e-8, restart=5)
    assert make_solver(ls.CG(), tol=1e-8) == ls.CG(tol=1e-8)   # options on a value: a new value


def test_make_solver_unknown_name():
    with pytest.raises(ValueError, match="unknown linear solver 'lu'"):
        make_solver("lu")


@pytest.mark.parametrize("name, options", [
    ("cg", {"num_terms": 3}),
    ("neumann", {"tol": 1e-6}),
    ("dense", {"tol": 1e-6}),
    ("gmres", {"restrat": 5}),
])
def test_make_solver_bad_option(name, options):
    with pytest.raises(TypeError, match=f"invalid option for the '{name}' solver"):
        make_solver(name, **options)


def test_make_solver_callable_passthrough(spd_system):
    A, b, _ = spd_system

    def my_solve(matvec, rhs, scale=1.0):
        return jax.tree.map(lambda v: scale * v, solve_dense(matvec, rhs))

    assert make_solver(my_solve) is my_solve
    halved = make_solver(my_solve, scale=0.5)
    y = np.asarray(halved(_matvec(A), jnp.asarray(b)))
    np.testing.assert_allclose(y, 0.5 * np.linalg.solve(A, b), rtol=1e-12)
    # a solver value passes through too
    tight = make_solver("cg", tol=1e-12)
    assert make_solver(tight) is tight
    with pytest.raises(TypeError, match="a linear solver is a name"):
        make_solver(3)
