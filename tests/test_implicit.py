"""Tests for ift_lib.implicit: custom_root derivatives, every transformation, solve options,
pytrees, the solver not being differentiated, the IFT checks (eager, jit, vmap) and check_ift."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ift_lib import IFTConditionError, IFTReport, check_ift, custom_root
from ift_lib.circle import circle_residual, solve_circle
from ift_lib.implicit import DENSE_CHECK_MAX
from ift_lib.linear_solve import make_solver, solve_dense
from ift_lib.root_finding import newton

RTOL = 1e-10

# Most derivatives below are taken under jax.jit: one XLA compilation per test is far cheaper
# than eager op-by-op dispatch (which compiles every primitive for every new shape). The eager
# path is exercised explicitly where its behaviour differs (bare IFTConditionError).

# ------------------------------------------------------------------------------------ problems

# A fixed SPD matrix with eigenvalues 1, 2, 3 (so CG and a Neumann series apply to it).
_Q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))
A_NP = (_Q * np.array([1.0, 2.0, 3.0])) @ _Q.T
A = jnp.asarray(A_NP)
THETA = jnp.asarray(np.random.default_rng(1).standard_normal(3))
W = jnp.asarray(np.random.default_rng(2).standard_normal(3))
X0 = jnp.zeros(3)


# 1. Linear: F(x, theta) = A x - theta, x* = A^{-1} theta, dx*/dtheta = A^{-1}.
def lin_F(x, theta):
    return A @ x - theta


@custom_root(lin_F)
@jax.jit                      # solvers are jitted so that each test compiles their loops once
def lin_root(init, theta):
    """Richardson iteration in a while_loop (reverse mode cannot differentiate a while_loop)."""
    def cond(c):
        x, k = c
        return (jnp.max(jnp.abs(lin_F(x, theta))) > 1e-15) & (k < 10_000)

    def body(c):
        x, k = c
        return x - 0.5 * lin_F(x, theta), k + 1

    return jax.lax.while_loop(cond, body, (init, 0))[0]


def lin_explicit(theta):
    return jnp.linalg.solve(A, theta)


# 2. Elementwise square root: F(x, theta) = x^2 - theta, x* = sqrt(theta).
def sqrt_F(x, theta):
    return x**2 - theta


@jax.jit
def newton_sqrt(init, theta):
    def cond(x):
        return jnp.max(jnp.abs(sqrt_F(x, theta))) > 4 * jnp.finfo(x.dtype).eps * jnp.max(theta)

    def body(x):
        return x - sqrt_F(x, theta) / (2 * x)

    return jax.lax.while_loop(cond, body, init)


sqrt_root = custom_root(sqrt_F)(newton_sqrt)
sqrt_root_jnp = custom_root(sqrt_F)(lambda init, theta: jnp.sqrt(theta))


# 3. Nonlinear system with no closed form: F(x, theta, c) = A x + c x^3 / 3 - theta,
#    dF/dx = A + c diag(x^2) (SPD for c >= 0), dF/dtheta = -I, dF/dc = x^3 / 3.
def nl_F(x, theta, c):
    return A @ x + c * x**3 / 3 - theta


@jax.jit
def nl_newton(init, theta, c):
    return newton(nl_F, init, theta, c, num_steps=40)


NL_THETA = jnp.array([1.0, -2.0, 0.5])
NL_C = jnp.asarray(0.7)


def nl_reference(theta=NL_THETA, c=NL_C):
    """x* and the IFT's closed form (dx*/dtheta, dx*/dc) given x*, in numpy."""
    x = np.asarray(nl_newton(X0, theta, c))
    J = A_NP + float(c) * np.diag(x**2)
    return x, np.linalg.inv(J), -np.linalg.solve(J, x**3 / 3)


def _raises_wrapped(fn, *needles):
    """fn() raises (under jit/vmap: JAX's runtime error wrapping an IFTConditionError); every
    needle occurs in the message."""
    with pytest.raises(Exception) as info:
        jax.block_until_ready(fn())
    msg = str(info.value)
    assert "IFTConditionError" in msg or isinstance(info.value, IFTConditionError), msg
    for needle in needles:
        assert needle in msg, msg
    return info.value


# ------------------------------------------------------------------------- closed-form solutions

def test_linear_value_and_solver_converged():
    x = lin_root(X0, THETA)
    np.testing.assert_allclose(np.asarray(x), np.linalg.solve(A_NP, np.asarray(THETA)), rtol=1e-12)


def test_scalar_sqrt():
    g = jax.grad(sqrt_root, argnums=1)(jnp.asarray(1.0), jnp.asarray(2.0))      # eager
    np.testing.assert_allclose(float(g), 0.5 / np.sqrt(2.0), rtol=RTOL)
    for solver in (sqrt_root, sqrt_root_jnp):
        grad = jax.jit(jax.grad(solver, argnums=1))
        for theta in (2.0, 9.0, 0.01):
            g = grad(jnp.asarray(1.0), jnp.asarray(theta))
            np.testing.assert_allclose(float(g), 0.5 / np.sqrt(theta), rtol=RTOL)


def test_vector_sqrt_jacobian():
    solver = sqrt_root
    theta = jnp.array([0.25, 2.0, 9.0, 100.0])
    x = solver(jnp.ones(4), theta)
    np.testing.assert_allclose(np.asarray(x), np.sqrt(np.asarray(theta)), rtol=1e-14)
    expected = np.diag(0.5 / np.sqrt(np.asarray(theta)))
    jacs = jax.jit(lambda i, t: (jax.jacrev(solver, argnums=1)(i, t), jax.jacfwd(solver, argnums=1)(i, t)))
    for J in jacs(jnp.ones(4), theta):
        np.testing.assert_allclose(np.asarray(J), expected, rtol=RTOL, atol=1e-15)


def test_nonlinear_system_against_central_differences():
    x, dtheta_ref, dc_ref = nl_reference()
    np.testing.assert_allclose(np.asarray(nl_F(jnp.asarray(x), NL_THETA, NL_C)), 0, atol=1e-14)
    root = custom_root(nl_F)(nl_newton)
    dtheta, dc = jax.jit(jax.jacrev(root, argnums=(1, 2)))(X0, NL_THETA, NL_C)
    # the closed form given x*
    np.testing.assert_allclose(np.asarray(dtheta), dtheta_ref, rtol=RTOL)
    np.testing.assert_allclose(np.asarray(dc), dc_ref, rtol=RTOL)
    # central finite differences of the (compiled) solver itself
    solve = nl_newton
    h = 1e-6
    fd_theta = np.stack([
        (np.asarray(solve(X0, NL_THETA + h * e, NL_C)) - np.asarray(solve(X0, NL_THETA - h * e, NL_C)))
        / (2 * h) for e in np.eye(3)], axis=1)
    fd_c = (np.asarray(solve(X0, NL_THETA, NL_C + h)) - np.asarray(solve(X0, NL_THETA, NL_C - h))) / (2 * h)
    np.testing.assert_allclose(np.asarray(dtheta), fd_theta, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(np.asarray(dc), fd_c, rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------------------ transformations

def _loss(theta):
    return jnp.dot(W, lin_root(X0, theta))


GRAD_REF = np.linalg.solve(A_NP.T, np.asarray(W))      # d(w . A^{-1} theta)/dtheta = A^{-T} w
JAC_REF = np.linalg.inv(A_NP)


@pytest.mark.parametrize("transform", ["grad", "jit_grad", "value_and_grad"])
def test_grad_of_scalar_loss(transform):
    if transform == "grad":
        g = jax.grad(_loss)(THETA)
    elif transform == "jit_grad":
        g = jax.jit(jax.grad(_loss))(THETA)
    else:
        v, g = jax.value_and_grad(_loss)(THETA)
        np.testing.assert_allclose(float(v), float(np.asarray(W) @ JAC_REF @ np.asarray(THETA)),
                                   rtol=1e-12)
    np.testing.assert_allclose(np.asarray(g), GRAD_REF, rtol=RTOL)
    np.testing.assert_allclose(np.asarray(g),
                               np.asarray(jax.grad(lambda t: W @ lin_explicit(t))(THETA)), rtol=RTOL)


def test_full_jacobian_eager():
    J = jax.jacrev(lin_root, argnums=1)(X0, THETA)
    np.testing.assert_allclose(np.asarray(J), JAC_REF, rtol=RTOL, atol=1e-14)
    np.testing.assert_allclose(np.asarray(J), np.asarray(jax.jacobian(lin_explicit)(THETA)),
                               rtol=RTOL, atol=1e-14)


def test_full_jacobians_jit():
    jacs = jax.jit(lambda t: [jac(lin_root, argnums=1)(X0, t)
                              for jac in (jax.jacrev, jax.jacfwd, jax.jacobian)])
    for J in jacs(THETA):
        np.testing.assert_allclose(np.asarray(J), JAC_REF, rtol=RTOL, atol=1e-14)


def test_vmap_grad():
    thetas = jnp.asarray(np.random.default_rng(3).standard_normal((5, 3)))
    ws = jnp.asarray(np.random.default_rng(4).standard_normal((5, 3)))
    g = jax.jit(jax.vmap(jax.grad(lambda t, w: jnp.dot(w, lin_root(X0, t)))))(thetas, ws)
    np.testing.assert_allclose(np.asarray(g), np.linalg.solve(A_NP.T, np.asarray(ws).T).T, rtol=RTOL)
    # nonlinear problem: per-example Jacobians under vmap (and jit) against the closed form
    thetas = NL_THETA + 0.3 * thetas
    J = jax.jit(jax.vmap(jax.jacfwd(custom_root(nl_F)(nl_newton), argnums=1), (None, 0, None)))(
        X0, thetas, NL_C)
    for k in range(5):
        np.testing.assert_allclose(np.asarray(J[k]), nl_reference(thetas[k])[1], rtol=RTOL)


def test_jvp_and_vjp():
    v = jnp.array([0.3, -1.0, 2.0])
    x, dx = jax.jvp(lambda t: lin_root(X0, t), (THETA,), (v,))
    np.testing.assert_allclose(np.asarray(x), JAC_REF @ np.asarray(THETA), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(dx), JAC_REF @ np.asarray(v), rtol=RTOL)
    x2, pullback = jax.vjp(lambda t: lin_root(X0, t), THETA)
    np.testing.assert_allclose(np.asarray(x2), np.asarray(x), rtol=1e-14)
    (ct,) = pullback(v)
    np.testing.assert_allclose(np.asarray(ct), JAC_REF.T @ np.asarray(v), rtol=RTOL)
    # same as the explicit solution's jvp / vjp
    np.testing.assert_allclose(np.asarray(dx), np.asarray(jax.jvp(lin_explicit, (THETA,), (v,))[1]),
                               rtol=RTOL)
    np.testing.assert_allclose(np.asarray(ct), np.asarray(jax.vjp(lin_explicit, THETA)[1](v)[0]),
                               rtol=RTOL)


@pytest.mark.parametrize("check", [True, False], ids=["checked", "unchecked"])
@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
@pytest.mark.parametrize("outer, inner", [(jax.jacfwd, jax.jacfwd), (jax.jacfwd, jax.jacrev),
                                          (jax.jacrev, jax.jacrev)], ids=["fwd-fwd", "fwd-rev", "rev-rev"])
def test_second_order(outer, inner, jit, check):
    # Second derivatives come from the IFT applied twice. The solver must not be differentiated
    # at second order: with a stop_gradient solver, differentiating it would silently give 0
    # (fwd-fwd) or fail (regression test for the jvp rule calling the raw solver). The checks
    # are host callbacks, which have no JVP; they must not get in the way of a second derivative.
    roots = [custom_root(sqrt_F, check=check)(solver)
             for solver in (lambda init, theta: jnp.sqrt(jax.lax.stop_gradient(theta)), newton_sqrt)]
    hess = lambda i, t: [outer(inner(root, argnums=1), argnums=1)(i, t) for root in roots]
    d2s = (jax.jit(hess) if jit else hess)(jnp.ones(2), jnp.array([4.0, 9.0]))
    expected = np.zeros((2, 2, 2))
    expected[0, 0, 0], expected[1, 1, 1] = -0.25 * 4.0**-1.5, -0.25 * 9.0**-1.5
    for d2 in d2s:
        np.testing.assert_allclose(np.asarray(d2), expected, rtol=RTOL, atol=1e-15)


def test_second_order_still_checks():
    # a second derivative at a point where the IFT fails must raise, not return numbers
    root = custom_root(sqrt_F)(lambda init, theta: jnp.sqrt(jax.lax.stop_gradient(theta)))
    with pytest.raises((IFTConditionError, jax.errors.JaxRuntimeError), match="condition 3"):
        jax.block_until_ready(jax.jit(jax.hessian(lambda t: root(jnp.ones(2), t).sum()))(
            jnp.array([0.0, 9.0])))


# ------------------------------------------------------------------------------- solve options

def _nl_neumann():
    x, _, _ = nl_reference()
    lam = np.linalg.eigvalsh(A_NP + float(NL_C) * np.diag(x**2))
    step = 2.0 / (lam.min() + lam.max())
    rho = (lam.max() - lam.min()) / (lam.max() + lam.min())
    return make_solver("neumann", step=step, num_terms=int(np.ceil(np.log(1e-15) / np.log(rho))))


def _user_solve(matvec, b):
    """A user-written solve(matvec, b): dense LU via jnp.linalg.solve on the materialized matrix."""
    return solve_dense(matvec, b)


SOLVE_OPTIONS = {
    "dense": lambda: "dense",
    "cg": lambda: "cg",
    "gmres": lambda: "gmres",
    "bicgstab": lambda: "bicgstab",
    "neumann": _nl_neumann,
    "make_solver_cg": lambda: make_solver("cg", tol=1e-13, maxiter=100),   # bound options
    "user_callable": lambda: _user_solve,
}


@pytest.mark.parametrize("option", list(SOLVE_OPTIONS))
def test_every_solve_option_gives_the_same_derivatives(option):
    root = custom_root(nl_F, solve=SOLVE_OPTIONS[option]())(nl_newton)
    _, dtheta_ref, dc_ref = nl_reference()
    rtol = 1e-8

    @jax.jit
    def derivatives(t, c):
        return (jax.jacfwd(root, argnums=(1, 2))(X0, t, c),                         # dF/dx
                jax.grad(lambda t, c: jnp.dot(W, root(X0, t, c)), argnums=(0, 1))(t, c))  # dF/dx^T

    (dtheta, dc), (g_theta, g_c) = derivatives(NL_THETA, NL_C)
    np.testing.assert_allclose(np.asarray(dtheta), dtheta_ref, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(np.asarray(dc), dc_ref, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(np.asarray(g_theta), dtheta_ref.T @ np.asarray(W), rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(float(g_c), dc_ref @ np.asarray(W), rtol=rtol)


def test_nonsymmetric_jacobian_forward_and_reverse():
    # dF/dx = B nonsymmetric: reverse mode must solve with B^T, forward mode with B (the solver
    # only sees a matvec, so one general solver checks the wiring; GMRES is covered above).
    B = jnp.array([[2.0, 1.0, 0.0], [-1.0, 3.0, 0.5], [0.3, 0.0, 1.5]])
    root = custom_root(lambda x, t: B @ x + 0.1 * jnp.sin(x) - t, solve="bicgstab")(
        jax.jit(lambda init, t: jax.lax.fori_loop(
            0, 30, lambda _, x: x - jnp.linalg.solve(B + 0.1 * jnp.diag(jnp.cos(x)),
                                                     B @ x + 0.1 * jnp.sin(x) - t), init)))
    x = np.asarray(root(X0, THETA))
    ref = np.linalg.inv(np.asarray(B) + 0.1 * np.diag(np.cos(x)))
    jacs = jax.jit(lambda t: (jax.jacfwd(root, argnums=1)(X0, t), jax.jacrev(root, argnums=1)(X0, t)))
    for J in jacs(THETA):
        np.testing.assert_allclose(np.asarray(J), ref, rtol=1e-8)


# -------------------------------------------------------------------------------------- pytrees

def tree_F(x, p, c):
    return {"a": x["a"] + x["b"] - p["w"] * c, "b": p["s"] * x["b"] - 1.0}


def tree_explicit(p, c):
    return {"a": p["w"] * c - 1.0 / p["s"], "b": 1.0 / p["s"]}


tree_root = custom_root(tree_F)(
    lambda init, p, c: jax.tree.map(jax.lax.stop_gradient, tree_explicit(p, c)))

P = {"w": jnp.array([0.5, -1.5]), "s": jnp.asarray(4.0)}
C = jnp.array([2.0, 3.0])
TREE_INIT = {"a": jnp.zeros(2), "b": jnp.asarray(0.0)}


def _assert_trees_close(a, b, rtol=RTOL, atol=1e-14):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol,
                                                         atol=atol), a, b)


def test_pytree_x_and_params():
    _assert_trees_close(tree_root(TREE_INIT, P, C), tree_explicit(P, C))
    got = jax.jit(lambda *a: [jac(tree_root, argnums=(1, 2))(*a) for jac in (jax.jacrev, jax.jacfwd)])(
        TREE_INIT, P, C)
    want = jax.jacobian(tree_explicit, argnums=(0, 1))(P, C)
    for g in got:
        _assert_trees_close(g, want)


def test_pytree_grads_wrt_each_argument():
    def loss(p, c):
        x = tree_root(TREE_INIT, p, c)
        return jnp.sum(x["a"] ** 2) + 3.0 * x["b"]

    def loss_explicit(p, c):
        x = tree_explicit(p, c)
        return jnp.sum(x["a"] ** 2) + 3.0 * x["b"]

    gp, gc = jax.jit(jax.grad(loss, argnums=(0, 1)))(P, C)
    assert set(gp) == {"w", "s"} and gp["w"].shape == (2,) and gp["s"].shape == ()
    _assert_trees_close((gp, gc), jax.grad(loss_explicit, argnums=(0, 1))(P, C))


def test_tuple_x_with_several_params():
    # x = (u, v): v = sqrt(s), u = theta * v.
    def F(x, theta, s):
        u, v = x
        return (u - theta * v, v**2 - s)

    def explicit(theta, s):
        return (theta * jnp.sqrt(s), jnp.sqrt(s))

    root = custom_root(F)(
        lambda init, theta, s: jax.tree.map(jax.lax.stop_gradient, explicit(theta, s)))
    theta, s = jnp.array([1.0, -2.0, 0.5]), jnp.asarray(2.25)
    init = (jnp.zeros(3), jnp.asarray(1.0))
    got = jax.jit(lambda *a: [jac(root, argnums=(1, 2))(*a) for jac in (jax.jacfwd, jax.jacrev)])(
        init, theta, s)
    for g in got:
        _assert_trees_close(g, jax.jacobian(explicit, argnums=(0, 1))(theta, s), rtol=1e-9)


def test_integer_param_is_allowed():
    # x^n = theta with an integer exponent n: derivative in theta only.
    root = custom_root(lambda x, theta, n: x**n - theta)(lambda init, theta, n: theta ** (1.0 / n))
    g = jax.jit(jax.grad(root, argnums=1), static_argnums=2)(jnp.asarray(1.0), jnp.asarray(8.0), 3)
    np.testing.assert_allclose(float(g), 1.0 / (3 * 8.0 ** (2 / 3)), rtol=RTOL)
    g = jax.jit(jax.grad(root, argnums=1))(jnp.asarray(1.0), jnp.asarray(8.0), jnp.asarray(3))
    np.testing.assert_allclose(float(g), 1.0 / (3 * 8.0 ** (2 / 3)), rtol=RTOL)


# ---------------------------------------------------------------- the solver is not differentiated

def _host_sqrt(init, theta):
    """A solver JAX cannot differentiate at all: numpy on the host through pure_callback."""
    return jax.pure_callback(lambda t: np.sqrt(np.asarray(t)),
                             jax.ShapeDtypeStruct(jnp.shape(theta), jnp.result_type(theta)),
                             theta, vmap_method="sequential")


def test_non_differentiable_host_solver():
    root = custom_root(sqrt_F)(_host_sqrt)
    theta = jnp.array([0.25, 4.0, 16.0])
    with pytest.raises(Exception):          # the raw solver really is not differentiable ...
        jax.jacfwd(_host_sqrt, argnums=1)(theta, theta)
    expected = np.diag(0.5 / np.sqrt(np.asarray(theta)))   # ... but the wrapped one is
    np.testing.assert_allclose(np.asarray(jax.jacrev(root, argnums=1)(theta, theta)), expected, rtol=RTOL)
    J_fwd, J_rev, g = jax.jit(lambda i, t: (jax.jacfwd(root, argnums=1)(i, t),
                                            jax.jacrev(root, argnums=1)(i, t),
                                            jax.vmap(jax.grad(root, argnums=1))(i, t)))(theta, theta)
    np.testing.assert_allclose(np.asarray(J_fwd), expected, rtol=RTOL)
    np.testing.assert_allclose(np.asarray(J_rev), expected, rtol=RTOL)
    np.testing.assert_allclose(np.asarray(g), np.diag(expected), rtol=RTOL)


def test_while_loop_solver_in_reverse_mode():
    with pytest.raises(ValueError, match="[Rr]everse-mode differentiation does not work"):
        jax.grad(lambda t: jnp.sum(newton_sqrt(jnp.ones(2), t)))(jnp.array([2.0, 3.0]))
    g = jax.jit(jax.grad(lambda t: jnp.sum(sqrt_root(jnp.ones(2), t))))(jnp.array([2.0, 3.0]))
    np.testing.assert_allclose(np.asarray(g), 0.5 / np.sqrt([2.0, 3.0]), rtol=RTOL)


def test_stop_gradient_solver():
    # A solver that stops every gradient would give 0 if it were differentiated.
    root = custom_root(lin_F)(lambda init, t: jax.lax.stop_gradient(jnp.linalg.solve(A, t)))
    np.testing.assert_allclose(np.asarray(jax.jacrev(root, argnums=1)(X0, THETA)), JAC_REF,
                               rtol=RTOL, atol=1e-14)


def test_init_gets_zero_derivative():
    g_init = jax.grad(lambda i: jnp.dot(W, lin_root(i, THETA)))(jnp.array([5.0, -5.0, 1.0]))   # eager
    np.testing.assert_array_equal(np.asarray(g_init), np.zeros(3))
    (J_init, J_theta), J_init_sqrt = jax.jit(lambda i, t: (
        jax.jacfwd(lin_root, argnums=(0, 1))(i, t),
        jax.jacrev(sqrt_root, argnums=0)(jnp.ones(2), jnp.array([2.0, 3.0]))))(jnp.ones(3), THETA)
    np.testing.assert_array_equal(np.asarray(J_init), np.zeros((3, 3)))
    np.testing.assert_allclose(np.asarray(J_theta), JAC_REF, rtol=RTOL, atol=1e-14)
    np.testing.assert_array_equal(np.asarray(J_init_sqrt), np.zeros((2, 2)))


def test_wraps_solver_metadata():
    assert lin_root.__name__ == "lin_root"
    assert "Richardson" in lin_root.__doc__


# --------------------------------------------------------------------------------------- errors

def test_wrong_shape_raises_value_error():
    root = custom_root(lambda x, t: jnp.sum(x**2 - t))(lambda init, t: jnp.sqrt(t))
    theta = jnp.array([1.0, 4.0, 9.0])
    with pytest.raises(ValueError, match="same structure and shapes") as info:
        jax.jacfwd(root, argnums=1)(theta, theta)
    assert "shapes [(3,)]" in str(info.value) and "shapes [()]" in str(info.value)
    with pytest.raises(ValueError, match="same structure and shapes"):
        jax.grad(lambda t: jnp.sum(root(t, t)))(theta)
    # a structure mismatch (dict x, tuple F) too
    bad = custom_root(lambda x, p, c: tuple(tree_F(x, p, c).values()))(tree_root)
    with pytest.raises(ValueError, match="same structure and shapes"):
        jax.jacfwd(bad, argnums=2)(TREE_INIT, P, C)


def test_not_a_solution_raises_condition_1():
    root = custom_root(lin_F)(lambda init, t: init)     # returns its input: not a root
    with pytest.raises(IFTConditionError, match="condition 1") as info:
        jax.grad(lambda t: jnp.sum(root(X0, t)))(THETA)
    assert isinstance(info.value, ValueError)
    with pytest.raises(IFTConditionError, match="condition 1"):
        jax.jvp(lambda t: root(X0, t), (THETA,), (THETA,))


def test_unconverged_solver_raises_condition_1():
    root = custom_root(nl_F)(lambda init, t, c: jax.lax.fori_loop(   # 2 Newton steps only
        0, 2, lambda _, x: x - jnp.linalg.solve(A + c * jnp.diag(x**2), nl_F(x, t, c)), init))
    _raises_wrapped(lambda: jax.jit(jax.jacrev(root, argnums=1))(X0, NL_THETA, NL_C),
                    "condition 1", "not converged")


SINGULAR_ROOTS = {
    "newton": solve_circle,
    "explicit": custom_root(circle_residual)(lambda init, t: jnp.sqrt(1.0 - t**2)),
}


@pytest.mark.parametrize("name", list(SINGULAR_ROOTS))
@pytest.mark.parametrize("theta", [1.0, -1.0])
def test_singular_jacobian_raises_condition_3(name, theta):
    root = SINGULAR_ROOTS[name]
    x = root(0.0, jnp.asarray(theta))
    assert float(x) == 0.0                                # on the circle, where dF/dx = 2x = 0
    with pytest.raises(IFTConditionError, match="condition 3") as info:
        jax.grad(root, argnums=1)(0.0, jnp.asarray(theta))
    assert "singular" in str(info.value)


def test_rank_rtol_option():
    D = jnp.diag(jnp.array([1.0, 1e-6]))
    theta = jnp.array([1.0, 1e-6])
    explicit = lambda init, t: jnp.array([t[0], t[1] * 1e6])
    ok = custom_root(lambda x, t: D @ x - t)(explicit)   # cond 1e6 is fine by default
    np.testing.assert_allclose(np.asarray(jax.jit(jax.jacfwd(ok, argnums=1))(jnp.zeros(2), theta)),
                               np.diag([1.0, 1e6]), rtol=RTOL)
    strict = custom_root(lambda x, t: D @ x - t, rank_rtol=1e-4)(explicit)
    # jacfwd is vmap-based, so even eagerly the error arrives wrapped in JAX's runtime error
    _raises_wrapped(lambda: jax.jacfwd(strict, argnums=1)(jnp.zeros(2), theta), "condition 3")


def test_residual_tol_option():
    approx = lambda init, t: jnp.sqrt(t) + 1e-7            # |F| ~ 2e-7 * sqrt(t)
    theta = jnp.array([1.0, 4.0, 9.0])
    with pytest.raises(IFTConditionError, match="condition 1"):
        jax.jacrev(custom_root(sqrt_F)(approx), argnums=1)(theta, theta)
    J = jax.jit(jax.jacfwd(custom_root(sqrt_F, residual_tol=1e-5)(approx), argnums=1))(theta, theta)
    # the IFT evaluated at the approximate point: 1 / (2 x)
    np.testing.assert_allclose(np.asarray(J), np.diag(0.5 / (np.sqrt([1.0, 4.0, 9.0]) + 1e-7)), rtol=RTOL)


def test_conditions_under_jit():
    root = custom_root(lin_F)(lambda init, t: init)
    _raises_wrapped(lambda: jax.jit(jax.grad(lambda t: jnp.sum(root(X0, t) ** 2)))(THETA),
                    "condition 1")
    _raises_wrapped(lambda: jax.jit(jax.grad(solve_circle, argnums=1))(0.0, 1.0), "condition 3")
    _raises_wrapped(lambda: jax.jit(jax.jacfwd(solve_circle, argnums=1))(0.0, -1.0), "condition 3")


@pytest.mark.parametrize("transform", ["jit_grad_sum", "jit_jacfwd", "jit_jacrev"])
def test_condition_check_survives_dead_code_elimination(transform):
    # F affine in x: the derivative never uses the value of x, so a check tied only to x was
    # dropped by jit (regression test).
    root = custom_root(lin_F)(lambda init, t: init)
    fn = {"jit_grad_sum": jax.jit(jax.grad(lambda t: jnp.sum(root(X0, t)))),
          "jit_jacfwd": jax.jit(jax.jacfwd(lambda t: root(X0, t))),
          "jit_jacrev": jax.jit(jax.jacrev(lambda t: root(X0, t)))}[transform]
    _raises_wrapped(lambda: fn(THETA), "condition 1")


def test_conditions_under_vmap():
    batched = jax.jit(jax.vmap(jax.grad(solve_circle, argnums=1)))
    thetas = jnp.array([0.0, 0.6, 1.0])                  # the last point, (1, 0), is singular
    inits = jnp.array([1.0, 1.0, 0.0])
    _raises_wrapped(lambda: batched(inits, thetas), "condition 3")
    # all fine: one vectorised check for the batch
    thetas = jnp.array([0.0, 0.6, -0.8])
    g = batched(jnp.ones(3), thetas)
    x = np.sqrt(1 - np.asarray(thetas) ** 2)
    np.testing.assert_allclose(np.asarray(g), -np.asarray(thetas) / x, rtol=1e-12, atol=1e-15)


def test_vmap_condition_3_is_per_element():
    # Each element is perfectly conditioned (dF/dx = c, cond 1) but the scales differ by 1e6;
    # in float32 the singularity test must compare each sigma_min with its own scale
    # (regression test: the batch's min sigma_min was compared with its max scale).
    root = custom_root(lambda x, t, c: c * (x - t))(lambda init, t, c: t)
    batched_grad = jax.jit(jax.vmap(jax.grad(root, argnums=1), (None, 0, 0)))
    c = jnp.array([1e-3, 1.0, 1e3], jnp.float32)
    g = batched_grad(jnp.float32(0), jnp.ones(3, jnp.float32), c)
    assert g.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(g), 1.0, rtol=1e-6)
    # ... and a genuinely singular element is still reported
    c = jnp.array([1.0, 0.0, 1e3], jnp.float32)
    _raises_wrapped(lambda: batched_grad(jnp.float32(0), jnp.ones(3, jnp.float32), c), "condition 3")


def test_cg_on_nonsymmetric_indefinite_jacobian_fails_the_solve_check():
    B = jnp.array([[1.0, 2.0], [-2.0, -1.0]])           # symmetric part diag(1, -1): indefinite
    root = custom_root(lambda x, t: B @ x - t, solve="cg")(lambda init, t: jnp.linalg.solve(B, t))
    theta = jnp.array([1.0, 0.5])
    # Note: this check runs inside lax.custom_linear_solve, so even eagerly it arrives wrapped
    # in JAX's runtime error (not as a bare IFTConditionError).
    _raises_wrapped(lambda: jax.grad(lambda t: jnp.sum(root(jnp.zeros(2), t)))(theta), "linear solve")
    _raises_wrapped(lambda: jax.jit(jax.jacfwd(root, argnums=1))(jnp.zeros(2), theta), "linear solve")
    # the dense solve on the same problem is fine
    ok = custom_root(lambda x, t: B @ x - t)(lambda init, t: jnp.linalg.solve(B, t))
    np.testing.assert_allclose(np.asarray(jax.jit(jax.jacfwd(ok, argnums=1))(jnp.zeros(2), theta)),
                               np.linalg.inv(np.asarray(B)), rtol=1e-12)


def test_singular_jacobian_large_m_caught_by_the_solve_check():
    # Above DENSE_CHECK_MAX unknowns the SVD test is skipped; condition 1 is still checked and a
    # singular dF/dx is caught by the linear-solve test.
    m = DENSE_CHECK_MAX + 44
    d = jnp.linspace(1.0, 2.0, m)
    root = custom_root(lambda x, t, d: d * x - t, solve="cg")(lambda init, t, d: t / d)
    theta = jnp.ones(m)
    g = jax.jit(jax.grad(lambda t: jnp.sum(root(jnp.zeros(m), t, d))))(theta)
    np.testing.assert_allclose(np.asarray(g), 1.0 / np.asarray(d), rtol=1e-9)
    # eager: a bare IFTConditionError (regression test: this path used to crash with a
    # TracerArrayConversionError under grad)
    bad = custom_root(lambda x, t, d: d * x - t, solve="cg")(lambda init, t, d: init)
    with pytest.raises(IFTConditionError, match="condition 1"):
        jax.grad(lambda t: jnp.sum(bad(jnp.zeros(m), t, d)))(theta)
    d0 = d.at[7].set(0.0)
    root0 = custom_root(lambda x, t, d: d * x - t)(lambda init, t, d: jnp.where(d == 0, 0.0, t / d))
    t0 = theta.at[7].set(0.0)                                  # so x solves F = 0
    _raises_wrapped(lambda: jax.jit(jax.grad(lambda t: jnp.sum(root0(jnp.zeros(m), t, d0))))(t0),
                    "linear solve")


def test_approximate_neumann_solve_with_solve_rtol_inf():
    B = np.diag([1.0, 2.0, 3.0]) + 0.2
    step, num_terms = 0.3, 5
    solve = make_solver("neumann", num_terms=num_terms, step=step)
    F = lambda x, t: jnp.asarray(B) @ x - t
    exact_solver = lambda init, t: jnp.linalg.solve(jnp.asarray(B), t)
    strict = jax.jit(jax.jacfwd(custom_root(F, solve=solve)(exact_solver), argnums=1))
    _raises_wrapped(lambda: strict(X0, THETA), "linear solve", "solve_rtol=math.inf")   # refused
    root = custom_root(F, solve=solve, solve_rtol=math.inf)(exact_solver)
    neumann = step * sum(np.linalg.matrix_power(np.eye(3) - step * B, k) for k in range(num_terms))
    J_fwd, J_rev = jax.jit(lambda i, t: (jax.jacfwd(root, argnums=1)(i, t),
                                         jax.jacrev(root, argnums=1)(i, t)))(X0, THETA)
    for J in (J_fwd, J_rev):
        np.testing.assert_allclose(np.asarray(J), neumann, rtol=1e-12, atol=1e-15)   # B symmetric
        assert np.abs(np.asarray(J) - np.linalg.inv(B)).max() > 1e-3    # approximate, not exact


def test_check_false_disables_checks():
    root = custom_root(lin_F, check=False)(lambda init, t: init)
    J = jax.jacrev(root, argnums=1)(X0, THETA)                     # no error off the solution
    np.testing.assert_allclose(np.asarray(J), JAC_REF, rtol=RTOL, atol=1e-14)
    jax.block_until_ready(jax.jit(jax.grad(lambda t: jnp.sum(root(X0, t))))(THETA))
    circ = custom_root(circle_residual, check=False)(lambda init, t: jnp.sqrt(1.0 - t**2))
    assert not np.isfinite(float(jax.grad(circ, argnums=1)(0.0, 1.0)))    # the IFT's 0/0
    neu = custom_root(lin_F, solve=make_solver("neumann", num_terms=2, step=0.1), check=False)(
        lambda init, t: jnp.linalg.solve(A, t))
    jax.block_until_ready(jax.jit(jax.jacfwd(neu, argnums=1))(X0, THETA))   # rough solve accepted


def test_primal_call_does_not_check():
    # Checks run where a derivative is taken; a plain call just runs the solver.
    root = custom_root(lin_F)(lambda init, t: init)
    np.testing.assert_array_equal(np.asarray(root(X0 + 1.0, THETA)), np.ones(3))


# ------------------------------------------------------------------------------------ check_ift

def test_check_ift_on_the_circle():
    r = check_ift(circle_residual, 0.8, 0.6)
    assert isinstance(r, IFTReport)
    assert abs(r.residual) <= 1e-15
    np.testing.assert_allclose(r.sigma_min, 1.6, rtol=1e-14)
    np.testing.assert_allclose(r.sigma_max, 1.6, rtol=1e-14)
    np.testing.assert_allclose(r.cond, 1.0, rtol=1e-14)
    np.testing.assert_allclose(r.scale, 2.0, rtol=1e-14)          # |(dF/dx, dF/dtheta)| = |(1.6, 1.2)|
    assert r.m == 1 and r.is_solution and r.jacobian_nonsingular
    assert r.applies and r.failure is None
    assert r.raise_if_failed() is r
    assert "IFT applies" in str(r)


@pytest.mark.parametrize("theta", [1.0, -1.0])
def test_check_ift_at_the_vertical_tangents(theta):
    r = check_ift(circle_residual, 0.0, theta)
    assert r.residual == 0.0 and r.is_solution
    assert r.sigma_min == 0.0 and r.cond == float("inf")
    assert not r.applies and not r.jacobian_nonsingular
    assert "condition 3" in r.failure
    assert "does NOT apply" in str(r)
    with pytest.raises(IFTConditionError, match="condition 3"):
        r.raise_if_failed()


def test_check_ift_off_the_circle():
    r = check_ift(circle_residual, 0.5, 0.5)
    np.testing.assert_allclose(r.residual, 0.5, rtol=1e-14)
    assert not r.applies and not r.is_solution
    assert "condition 1" in r.failure
    with pytest.raises(IFTConditionError, match="condition 1"):
        r.raise_if_failed()
    assert check_ift(circle_residual, 0.5, 0.5, residual_tol=1.0).applies   # custom tolerance
    assert not check_ift(circle_residual, 0.8, 0.6, rank_rtol=0.9).applies  # 1.6 <= 0.9 * 2.0


def test_check_ift_non_finite_residual_fails():
    r = check_ift(circle_residual, jnp.nan, 0.6)
    assert not r.applies and "condition 1" in r.failure


def test_check_ift_pytrees_and_jacobian_values():
    x = tree_explicit(P, C)
    r = check_ift(tree_F, x, P, C)
    assert r.m == 3 and r.applies and r.residual <= 1e-15
    # dF/dx in flat coordinates (a0, a1, b): [[1, 0, 1], [0, 1, 1], [0, 0, s]]
    sv = np.linalg.svd(np.array([[1.0, 0, 1], [0, 1, 1], [0, 0, 4.0]]), compute_uv=False)
    np.testing.assert_allclose([r.sigma_min, r.sigma_max], [sv[-1], sv[0]], rtol=1e-12)
    np.testing.assert_allclose(r.cond, sv[0] / sv[-1], rtol=1e-12)


def test_check_ift_wrong_shape():
    with pytest.raises(ValueError, match="same structure and shapes"):
        check_ift(lambda x, t: jnp.sum(x - t), jnp.ones(2), jnp.ones(2))


@pytest.mark.parametrize("solve", ["dense", "gmres"])
def test_equation_without_params_reverse_mode(solve):
    # the second equation does not involve theta: its jvp right-hand side is a constant zero,
    # which custom_linear_solve cannot transpose unless it is made linear in the tangent
    def F(x, theta):
        y, s = x
        return (y - theta + s, jnp.sum(jnp.exp(y)) - 1.0)

    def exact(init, theta):
        lse = jax.scipy.special.logsumexp(theta)
        return theta - lse, lse

    root = custom_root(F, solve=solve)(exact)
    theta = jnp.array([0.3, -1.0, 2.0])
    init = (jnp.zeros(3), jnp.zeros(()))
    J_rev = jax.jacrev(lambda t: root(init, t)[0])(theta)
    J_fwd = jax.jacfwd(lambda t: root(init, t)[0])(theta)
    J_ref = jax.jacobian(jax.nn.log_softmax)(theta)
    np.testing.assert_allclose(np.asarray(J_rev), np.asarray(J_ref), atol=1e-12)
    np.testing.assert_allclose(np.asarray(J_fwd), np.asarray(J_ref), atol=1e-12)
