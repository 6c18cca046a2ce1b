"""ift_lib as a drop-in for JAXopt's implicit differentiation (jaxopt.implicit_diff, 0.8.5,
no longer maintained): the calls of JAXopt's own tests (tests/implicit_diff_test.py) give the
same results with either library. Float64; JAXopt uses normal-equation CG by default, ift_lib a
dense LU, so both are compared with the closed form as well as with each other."""
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ift_lib

with warnings.catch_warnings():
    warnings.simplefilter("ignore")          # "JAXopt is no longer maintained"
    from jaxopt import implicit_diff as jaxopt_idf

LIBS = {"jaxopt": jaxopt_idf, "ift_lib": ift_lib}

_rng = np.random.default_rng(0)
X = jnp.asarray(_rng.normal(size=(10, 3)))
y = jnp.asarray(X @ np.array([1.0, -2.0, 0.5]) + 0.1 * _rng.normal(size=10))
LAM = 5.0


def ridge_objective(params, lam, X, y):
    residuals = jnp.dot(X, params) - y
    return 0.5 * jnp.mean(residuals ** 2) + 0.5 * lam * jnp.sum(params ** 2)


def ridge_solver(init_params, lam, X, y):
    del init_params
    return jnp.linalg.solve(X.T @ X + lam * len(y) * jnp.eye(X.shape[1]), X.T @ y)


def ridge_solver_with_kwargs(init_params, **kw):
    return ridge_solver(init_params, kw["lam"], kw["X"], kw["y"])


def dsol_dlam(lam=LAM):
    """Closed form: d/dlam (X'X + lam n I)^{-1} X'y = -n (X'X + lam n I)^{-1} sol."""
    H = np.asarray(X.T @ X) + lam * len(y) * np.eye(3)
    return -len(y) * np.linalg.solve(H, np.asarray(ridge_solver(None, lam, X, y)))


def _close(a, b, rtol=1e-9):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("lib", LIBS)
def test_root_vjp(lib):
    sol = ridge_solver(None, LAM, X, y)
    vjp = lambda g: LIBS[lib].root_vjp(optimality_fun=jax.grad(ridge_objective), sol=sol,
                                       args=(LAM, X, y), cotangent=g)[0]
    _close(jax.vmap(vjp)(jnp.eye(3)), dsol_dlam())


@pytest.mark.parametrize("lib", LIBS)
def test_root_jvp(lib):
    sol = ridge_solver(None, LAM, X, y)
    J = LIBS[lib].root_jvp(optimality_fun=jax.grad(ridge_objective), sol=sol, args=(LAM, X, y),
                           tangents=(1.0, jnp.zeros_like(X), jnp.zeros_like(y)))
    _close(J, dsol_dlam())


@pytest.mark.parametrize("lib", LIBS)
def test_custom_root_keywords(lib):
    decorated = LIBS[lib].custom_root(jax.grad(ridge_objective))(ridge_solver)
    _close(decorated(None, lam=LAM, X=X, y=y), ridge_solver(None, LAM, X, y))
    _close(jax.jacrev(decorated, argnums=1)(None, LAM, X=X, y=y), dsol_dlam())


@pytest.mark.parametrize("lib", LIBS)
def test_custom_root_has_aux(lib):
    def solver_with_aux(init_params, lam, X, y):
        sol = ridge_solver(init_params, lam, X, y)
        return sol, {"objective": ridge_objective(sol, lam, X, y)}

    decorated = LIBS[lib].custom_root(jax.grad(ridge_objective), has_aux=True)(solver_with_aux)
    sol, aux = decorated(None, lam=LAM, X=X, y=y)
    _close(sol, ridge_solver(None, LAM, X, y))
    _close(aux["objective"], ridge_objective(sol, LAM, X, y))
    # the derivative flows through the solution only (aux gets none)
    J = jax.jacrev(lambda lam: decorated(None, lam, X=X, y=y)[0])(LAM)
    _close(J, dsol_dlam())


@pytest.mark.parametrize("lib", LIBS)
def test_custom_fixed_point(lib):
    grad_fun = jax.grad(ridge_objective)
    fp_fun = functools.wraps(grad_fun)(lambda x, *args: x - grad_fun(x, *args))
    decorated = LIBS[lib].custom_fixed_point(fp_fun)(ridge_solver)
    _close(decorated(None, lam=LAM, X=X, y=y), ridge_solver(None, LAM, X, y))
    _close(jax.jacrev(decorated, argnums=1)(None, LAM, X=X, y=y), dsol_dlam())


@pytest.mark.parametrize("lib", LIBS)
@pytest.mark.parametrize("order", [("lam", "X", "y"), ("X", "lam", "y"), ("y", "X", "lam")])
def test_custom_root_catch_all_kwargs_in_any_order(lib, order):
    decorated = LIBS[lib].custom_root(jax.grad(ridge_objective))(ridge_solver_with_kwargs)
    kw = {"lam": LAM, "X": X, "y": y}
    kw = {k: kw[k] for k in order}
    _close(decorated(None, **kw), ridge_solver(None, LAM, X, y))
    _close(jax.jit(decorated)(None, **kw), ridge_solver(None, LAM, X, y))
    grad_fun = jax.grad(lambda lam: decorated(None, **{**kw, "lam": lam})[0])
    _close(grad_fun(LAM), dsol_dlam()[0])
    _close(jax.jit(grad_fun)(LAM), dsol_dlam()[0])


def test_the_two_libraries_agree_on_every_argument():
    """Gradients w.r.t. lam, X and y at once, keyword call, jit: the same numbers."""
    loss = lambda lib: jax.jit(jax.grad(
        lambda lam, X_, y_: jnp.sum(LIBS[lib].custom_root(jax.grad(ridge_objective))(
            ridge_solver_with_kwargs)(None, y=y_, lam=lam, X=X_) ** 2), argnums=(0, 1, 2)))
    for a, b in zip(loss("jaxopt")(LAM, X, y), loss("ift_lib")(LAM, X, y)):
        _close(a, b)


def test_what_ift_lib_adds_forward_mode_and_checks():
    decorated = ift_lib.custom_root(jax.grad(ridge_objective))(ridge_solver_with_kwargs)
    # forward mode through the solver (JAXopt's custom_root is reverse-mode only)
    _close(jax.jacfwd(lambda lam: decorated(None, lam=lam, X=X, y=y))(LAM), dsol_dlam())
    with pytest.raises(TypeError):
        jax.jacfwd(lambda lam: jaxopt_idf.custom_root(jax.grad(ridge_objective))(
            ridge_solver_with_kwargs)(None, lam=lam, X=X, y=y))(LAM)
    # a solver that does not solve: JAXopt returns a number, ift_lib says what is wrong
    wrong = lambda init_params, **kw: 1.1 * ridge_solver_with_kwargs(init_params, **kw)
    g = jax.grad(lambda lam: jaxopt_idf.custom_root(jax.grad(ridge_objective))(wrong)(
        None, lam=lam, X=X, y=y)[0])(LAM)
    assert np.isfinite(float(g))
    with pytest.raises(ift_lib.IFTConditionError, match="condition 1"):
        jax.grad(lambda lam: ift_lib.custom_root(jax.grad(ridge_objective))(wrong)(
            None, lam=lam, X=X, y=y)[0])(LAM)
