"""Tests for ift_lib.softmax: softmax and sparsemax values and derivatives (every solve option,
every transformation, batching and axes), sparsemax against an independent sort-based reference,
its one-sided derivative at a kink, the KKT points and residuals, check_ift, and input errors."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ift_lib import IFTConditionError, check_ift
from ift_lib.linear_solve import make_solver
from ift_lib.softmax import (softmax, softmax_kkt_full, softmax_kkt_log, softmax_kkt_point,
                             softmax_kkt_reduced, sparsemax, sparsemax_kkt_full, sparsemax_kkt_point,
                             sparsemax_threshold)

EPS = np.finfo(np.float64).eps

# As in test_implicit.py, derivatives are taken under jax.jit, and one jitted function serves every
# input of a shape (one XLA compilation instead of eager op-by-op dispatch). The shapes are few and
# shared between tests for the same reason; GMRES, whose IFT derivatives take seconds to compile,
# appears in three tests only.

# Module level: softmax caches its custom_root per solve object, so tests reuse it.
GMRES_CALLABLE = make_solver("gmres", tol=1e-12, restart=5)

KINDS = ["random", "tied", "large", "constant"]


def make_theta(kind, n, seed=0):
    """Test inputs of length n (numpy float64)."""
    rng = np.random.default_rng([seed, n, KINDS.index(kind)])
    if kind == "random":
        return 2.0 * rng.standard_normal(n)
    if kind == "tied":                                    # values in {-1, -0.5, 0, 0.5, 1}
        return 0.5 * rng.integers(-2, 3, n).astype(float)
    if kind == "large":                                   # softmax underflows to exact zeros
        theta = rng.uniform(-1e3, 1e3, n)
        theta[0], theta[-1] = 1e3, -1e3
        return theta
    if kind == "constant":
        return np.full(n, 3.7)
    raise ValueError(kind)


def scale(theta):
    return max(1.0, float(np.max(np.abs(theta))))


def _max_abs(tree):
    return max(float(np.max(np.abs(np.asarray(l)))) for l in jax.tree.leaves(tree))


# ----------------------------------------------------------------------------- references

def softmax_reference(theta):
    """numpy softmax along the last axis."""
    theta = np.asarray(theta, float)
    e = np.exp(theta - theta.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_jacobian_reference(z):
    """The closed form diag(z) - z z^T."""
    z = np.asarray(z)
    return np.diag(z) - np.outer(z, z)


def sparsemax_reference(theta):
    """Sparsemax by sorting (Martins & Astudillo, 2016, Algorithm 1), in numpy, along the last
    axis: u = theta sorted decreasingly, k(theta) = max{k : 1 + k u_k > sum_{j<=k} u_j},
    tau = (sum_{j<=k} u_j - 1) / k, z = max(theta - tau, 0). Returns (z, tau)."""
    theta = np.asarray(theta, float)
    if theta.ndim > 1:
        rows = [sparsemax_reference(t) for t in theta.reshape(-1, theta.shape[-1])]
        return (np.stack([r[0] for r in rows]).reshape(theta.shape),
                np.array([r[1] for r in rows]).reshape(theta.shape[:-1]))
    u = np.sort(theta)[::-1]
    k = np.arange(1, theta.size + 1)
    k_max = k[1 + k * u > np.cumsum(u)][-1]
    tau = (math.fsum(u[:k_max]) - 1.0) / k_max              # a correctly rounded sum
    return np.maximum(theta - tau, 0.0), tau


def sparsemax_jacobian_reference(support):
    """diag(s) - s s^T / |S| for the indicator s of the support S."""
    s = np.asarray(support, float)
    return np.diag(s) - np.outer(s, s) / s.sum()


def kink_gap(theta):
    """min_i |theta_i - tau|: how far theta is from the nearest kink of sparsemax."""
    _, tau = sparsemax_reference(theta)
    return float(np.min(np.abs(np.asarray(theta) - tau)))


def blockwise_jacobian(theta, axis, jac_1d):
    """The Jacobian (shape theta.shape * 2) of a map applied independently along ``axis``,
    assembled from the Jacobian ``jac_1d(row)`` of one row."""
    moved = np.moveaxis(np.asarray(theta), axis, -1)
    rows = moved.reshape(-1, moved.shape[-1])
    b, n = rows.shape
    J = np.zeros((b, n, b, n))
    for i, row in enumerate(rows):
        J[i, :, i, :] = jac_1d(row)
    d = moved.ndim
    J = np.moveaxis(J.reshape(moved.shape + moved.shape), d - 1, axis % d)   # output axis
    return np.moveaxis(J, 2 * d - 1, d + axis % d)                             # input axis


def _raises(fn, error, *needles, wrapped=False):
    """fn() raises ``error`` -- bare when raised eagerly, or (wrapped=True: under jit, vmap, grad
    or inside a linear solve) as JAX's runtime error carrying its name and message; every needle
    occurs in the message."""
    with pytest.raises(Exception) as info:
        jax.block_until_ready(fn())
    msg = str(info.value)
    if wrapped:
        assert isinstance(info.value, jax.errors.JaxRuntimeError), repr(info.value)
        assert error.__name__ in msg, msg
    else:
        assert isinstance(info.value, error), repr(info.value)
    for needle in needles:
        assert needle in msg, msg
    return info.value


_nn_softmax = jax.jit(lambda t: (jax.nn.softmax(t), jax.jacobian(jax.nn.softmax)(t)))


@jax.jit
def _sparsemax_values(t):
    """sparsemax, its threshold, KKT point and KKT residual at one theta (one compilation)."""
    x = sparsemax_kkt_point(t)
    return sparsemax(t), sparsemax_threshold(t), x, sparsemax_kkt_full(x, t)


@jax.jit
def _sparsemax_jacobians(t):
    return sparsemax(t), sparsemax_threshold(t), jax.jacrev(sparsemax)(t), jax.jacfwd(sparsemax)(t)


_sparsemax_rows = jax.jit(jax.vmap(sparsemax))        # a batch of inputs (finite differences)


# ------------------------------------------------------------------------------ softmax values

VALUE_CASES = {   # name: (solve, n, modes, Jacobian atol)
    "schur-2": (None, 2, "fwd+rev", 1e-15),
    "schur-7": (None, 7, "fwd+rev", 1e-15),
    "schur-64": (None, 64, "fwd+rev", 1e-15),
    "dense-2": ("dense", 2, "fwd+rev", 1e-15),
    "dense-64": ("dense", 64, "fwd+rev", 1e-15),
    # GMRES (relative tolerance 1e-10) in forward mode here; its reverse mode is checked at
    # n = 10^4 below (as a make_solver callable; and see the test on tiny cotangents)
    "gmres-7": ("gmres", 7, "fwd", 1e-10),
}


@pytest.mark.parametrize("case", list(VALUE_CASES))
def test_softmax_values_and_jacobians(case):
    solve, n, modes, atol = VALUE_CASES[case]
    sm = lambda t: softmax(t, solve=solve)
    f = jax.jit(lambda t: (sm(t), jax.jacfwd(sm)(t)) + ((jax.jacrev(sm)(t),) if "rev" in modes else ()))
    for kind in KINDS:
        theta = make_theta(kind, n)
        z, *Js = (np.asarray(a) for a in f(jnp.asarray(theta)))
        z_nn, J_nn = (np.asarray(a) for a in _nn_softmax(jnp.asarray(theta)))
        assert np.all(np.isfinite(z)) and np.all(z >= 0)
        np.testing.assert_allclose(z.sum(), 1.0, atol=4 * n * EPS)
        np.testing.assert_allclose(z, z_nn, rtol=1e-12, atol=1e-300, err_msg=kind)
        np.testing.assert_allclose(z, softmax_reference(theta), rtol=1e-12, atol=1e-300, err_msg=kind)
        for J in Js:
            assert np.all(np.isfinite(J))
            np.testing.assert_allclose(J, J_nn, rtol=1e-10, atol=atol, err_msg=kind)
            np.testing.assert_allclose(J, softmax_jacobian_reference(z), rtol=1e-10, atol=atol,
                                       err_msg=kind)
        if kind == "constant":
            np.testing.assert_allclose(z, 1.0 / n, rtol=1e-14)
        if kind == "large":                       # |theta| = 1e3: exact zeros (underflow), no NaN
            assert z[-1] == 0.0 and np.all(Js[0][-1] == 0.0)


@pytest.mark.parametrize("solve", [None, "make_solver"])
def test_softmax_large_n_jvp_and_vjp(solve):
    # n = 10^4: values, one jvp and one vjp (no dense Jacobian; "dense" would be O(n^3)).
    # make_solver: GMRES with bound options, passed as a callable (at n = 10^4 the IFT checks
    # skip the dense singular-value test and rely on the linear-solve residual check)
    n = 10_000
    s = GMRES_CALLABLE if solve == "make_solver" else solve
    rng = np.random.default_rng(7)
    v, g = rng.standard_normal(n), rng.standard_normal(n)

    @jax.jit
    def f(t, v, g):
        z, dz = jax.jvp(lambda u: softmax(u, solve=s), (t,), (v,))
        z2, pullback = jax.vjp(lambda u: softmax(u, solve=s), t)
        return z, dz, z2, pullback(g)[0], jax.nn.softmax(t)

    for kind in ["random", "large", "constant"]:
        theta = make_theta(kind, n)
        z, dz, z2, ct, z_nn = (np.asarray(a) for a in f(*map(jnp.asarray, (theta, v, g))))
        z_ref = softmax_reference(theta)
        np.testing.assert_allclose(z, z_ref, rtol=1e-11, atol=1e-300, err_msg=kind)
        np.testing.assert_allclose(z, z_nn, rtol=1e-11, atol=1e-300, err_msg=kind)
        np.testing.assert_array_equal(z, z2)
        np.testing.assert_allclose(z.sum(), 1.0, atol=1e-12)
        # J = diag(z) - z z^T is symmetric: J v = z * (v - z.v), J^T g = z * (g - z.g)
        atol = 1e-15 if solve is None else 1e-10
        np.testing.assert_allclose(dz, z_ref * (v - z_ref @ v), rtol=1e-9, atol=atol, err_msg=kind)
        np.testing.assert_allclose(ct, z_ref * (g - z_ref @ g), rtol=1e-9, atol=atol, err_msg=kind)
        if kind == "constant":
            np.testing.assert_allclose(z, 1e-4, rtol=1e-12)
        if kind == "large":
            assert np.any(z == 0.0) and np.all(np.isfinite(dz)) and np.all(np.isfinite(ct))


# regression: jax.scipy.sparse.linalg.gmres treats a right-hand side of norm < eps as zero and
# returns 0; ift_lib's solve_gmres normalises b, so tiny cotangents (z_j < 2e-16) work
def test_softmax_gmres_reverse_mode_with_tiny_cotangent():
    theta = jnp.array([0.0, -40.0, 1.0])                       # z_1 = 1.6e-18
    g = jax.jit(jax.grad(lambda t: softmax(t, solve="gmres")[1]))(theta)
    z = softmax_reference(np.asarray(theta))
    np.testing.assert_allclose(np.asarray(g), z[1] * (np.eye(3)[1] - z), rtol=1e-8)


def test_softmax_other_dtypes_and_sizes():
    # integers (and lists) are converted to float; float32 stays float32; n = 1; empty batch
    z = softmax(np.array([3, 1, 0, 1]))
    assert z.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(z), softmax_reference([3.0, 1.0, 0.0, 1.0]), rtol=1e-14)
    np.testing.assert_allclose(np.asarray(jax.jit(softmax)(jnp.arange(4))),
                               softmax_reference(np.arange(4.0)), rtol=1e-14)
    np.testing.assert_array_equal(np.asarray(softmax([3, 1, 0, 1])), np.asarray(z))
    z32 = softmax(jnp.asarray([3.0, 1.0, 0.0, 1.0], jnp.float32))
    assert z32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(z32), np.asarray(z), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(softmax(jnp.array([42.0]))), [1.0])
    assert softmax(jnp.zeros((0, 4))).shape == (0, 4)


# ------------------------------------------------------------------------- softmax transformations

W = np.random.default_rng(11).standard_normal(6)


def _loss(softmax_fn):
    """A scalar of softmax with a nonzero Hessian."""
    return lambda t: jnp.dot(W, softmax_fn(t)) + jnp.sum(softmax_fn(t) ** 2)


@pytest.mark.parametrize("solve", [None, "dense"])
def test_softmax_grad_jit_vmap_and_second_derivatives(solve):
    ours = _loss(lambda t: softmax(t, solve=solve))
    ref = _loss(jax.nn.softmax)
    thetas = jnp.asarray(np.random.default_rng(12).standard_normal((3, 6)))

    @jax.jit
    def derivatives(ts):
        out = [softmax(ts, solve=solve), jax.vmap(lambda t: softmax(t, solve=solve))(ts),
               jax.vmap(jax.grad(ours))(ts), jax.vmap(jax.hessian(ours))(ts)]   # fwd over rev
        if solve is None:                   # (custom_root: see the xfail test below)
            out.append(jax.vmap(jax.jacrev(jax.jacrev(ours)))(ts))             # rev over rev
        return out

    @jax.jit
    def references(ts):
        return jax.nn.softmax(ts), jax.vmap(jax.grad(ref))(ts), jax.vmap(jax.hessian(ref))(ts)

    z, z_vmap, g, *hessians = (np.asarray(a) for a in derivatives(thetas))
    z_ref, g_ref, H_ref = (np.asarray(a) for a in references(thetas))
    tol = dict(rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(z, z_ref, rtol=1e-13)
    np.testing.assert_array_equal(z, z_vmap)         # batching along a leading axis = vmap
    np.testing.assert_allclose(g, g_ref, **tol)
    assert np.abs(H_ref).max() > 1e-2                # a nontrivial Hessian
    for H in hessians:
        np.testing.assert_allclose(H, H_ref, **tol)
        np.testing.assert_allclose(H, np.swapaxes(H, 1, 2), **tol)     # symmetric
    if solve is None:                             # eager (no jit) grad
        np.testing.assert_allclose(np.asarray(jax.grad(ours)(thetas[0])), g_ref[0], **tol)


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="reverse over reverse through custom_root with a tuple x = (y, u): JAX's "
                          "custom_linear_solve transpose rule asserts that every right-hand side "
                          "leaf is linear (solves.py, _linear_solve_transpose_rule: 'assert "
                          "all(ad.is_undefined_primal(x) for x in b)'); jax.hessian works")
def test_softmax_custom_root_reverse_over_reverse():
    theta = jnp.asarray(np.random.default_rng(12).standard_normal(6))
    H = jax.jit(jax.jacrev(jax.jacrev(_loss(lambda t: softmax(t, solve="dense")))))(theta)
    np.testing.assert_allclose(np.asarray(H), np.asarray(jax.hessian(_loss(jax.nn.softmax))(theta)),
                               rtol=1e-10, atol=1e-14)


AXIS_THETA = np.random.default_rng(13).standard_normal((3, 5, 4))
AXIS_THETA[1, :, 2] = AXIS_THETA[1, 0, 2]              # a constant row along axis 1
AXIS_THETA[0, 0, 0] = 800.0                            # underflow along every axis


@pytest.mark.parametrize("solve, axis", [(None, 1), (None, 0), (None, -1), ("dense", 1)])
def test_softmax_batched_along_any_axis(solve, axis):
    theta = jnp.asarray(AXIS_THETA)
    sm = lambda t: softmax(t, axis, solve=solve)
    nn = lambda t: jax.nn.softmax(t, axis=axis)
    z, J, z_nn, J_nn = (np.asarray(a) for a in jax.jit(
        lambda t: (sm(t), jax.jacrev(sm)(t), nn(t), jax.jacobian(nn)(t)))(theta))
    assert z.shape == theta.shape and J.shape == theta.shape * 2
    np.testing.assert_allclose(z, z_nn, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(z.sum(axis=axis), 1.0, atol=1e-15)
    np.testing.assert_allclose(J, J_nn, rtol=1e-12, atol=1e-15)
    J_closed = blockwise_jacobian(AXIS_THETA, axis, lambda row: softmax_jacobian_reference(
        softmax_reference(row)))
    np.testing.assert_allclose(J, J_closed, rtol=1e-12, atol=1e-15)
    if solve is None and axis >= 0:                 # the same axis counted from the end
        np.testing.assert_array_equal(np.asarray(softmax(theta, axis - 3)), z)


# ------------------------------------------------------------------------------ sparsemax values

@pytest.mark.parametrize("n", [2, 40, 10_000])
def test_sparsemax_values_against_sort_reference(n):
    for kind in KINDS:
        theta = make_theta(kind, n)
        z, tau, _, _ = _sparsemax_values(jnp.asarray(theta))
        z, tau = np.asarray(z), float(tau)
        z_ref, tau_ref = sparsemax_reference(theta)
        atol = 8 * EPS * scale(theta)
        np.testing.assert_allclose(tau, tau_ref, rtol=0, atol=atol, err_msg=kind)
        np.testing.assert_allclose(z, z_ref, rtol=0, atol=atol, err_msg=kind)
        assert np.all(z >= 0)
        np.testing.assert_allclose(z.sum(), 1.0, atol=np.sum(z > 0) * atol, err_msg=kind)
        np.testing.assert_array_equal(z, np.maximum(theta - tau, 0.0))   # z = max(theta - tau, 0)
        if kind == "constant":
            np.testing.assert_allclose(z, 1.0 / n, rtol=1e-9)
        if kind == "large":
            assert z[0] > 0 and z[-1] == 0.0


def test_sparsemax_simple_values_and_dtypes():
    cases = [([1.0, 0.5, 0.0], [0.75, 0.25, 0.0]), ([0.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]),
             ([5.0, 1.0, -1.0], [1.0, 0.0, 0.0]), ([1e3, -1e3, 1e3], [0.5, 0.0, 0.5])]
    for theta, want in cases:
        np.testing.assert_allclose(np.asarray(_sparsemax_values(jnp.asarray(theta))[0]), want,
                                   rtol=0, atol=1e-16)
    np.testing.assert_array_equal(np.asarray(sparsemax(jnp.array([42.0]))), [1.0])
    # integers and lists are converted to float; float32 stays float32
    z = sparsemax(np.array([3, 1, 0]))
    assert z.dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(z), [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(np.asarray(sparsemax([1, 0.5, 0])), [0.75, 0.25, 0.0])
    assert float(sparsemax_threshold([2, 2, -5])) == 1.5
    z32 = sparsemax(jnp.asarray([1.0, 0.5, 0.0], jnp.float32))
    assert z32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(z32), [0.75, 0.25, 0.0], atol=1e-6)


def _theta_away_from_kinks(kind, n, seed=0):
    """Inputs with every theta_i at least 1e-3 from tau (asserted)."""
    rng = np.random.default_rng([seed, n])
    if kind == "random":
        theta = 0.5 * rng.standard_normal(n)
    elif kind == "tied":                                        # ties inside and outside S
        theta = rng.choice([0.0, 0.3, 1.1, 1.3], n)
        theta[:3] = [1.3, 1.3, 0.0]
    elif kind == "large":                                       # a cluster near 1e3
        theta = np.where(rng.random(n) < 0.5, 1e3 + 0.4 * rng.standard_normal(n), -1e3)
        theta[:2] = [1e3, -1e3]
    else:
        theta = np.full(n, -123.4)
    assert kink_gap(theta) > 1e-3
    return theta


@pytest.mark.parametrize("n", [7, 40])
@pytest.mark.parametrize("kind", KINDS)
def test_sparsemax_jacobian_away_from_kinks(kind, n):
    theta = _theta_away_from_kinks(kind, n)
    z_ref, _ = sparsemax_reference(theta)
    J_closed = sparsemax_jacobian_reference(z_ref > 0)
    z, _, J_rev, J_fwd = _sparsemax_jacobians(jnp.asarray(theta))
    z, J_rev, J_fwd = np.asarray(z), np.asarray(J_rev), np.asarray(J_fwd)
    np.testing.assert_allclose(z, z_ref, atol=8 * EPS * scale(theta))
    np.testing.assert_allclose(J_rev, J_closed, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(J_fwd, J_closed, rtol=1e-14, atol=1e-15)
    # central finite differences: exact for this piecewise-linear map up to rounding, as h stays
    # well inside the current piece (kink_gap > 1e-3)
    h = 1e-5
    E = np.eye(n)
    zs = np.asarray(_sparsemax_rows(jnp.asarray(np.concatenate([theta + h * E, theta - h * E]))))
    J_fd = (zs[:n] - zs[n:]).T / (2 * h)
    fd_atol = 10 * EPS * scale(theta) / h
    np.testing.assert_allclose(J_rev, J_fd, rtol=0, atol=fd_atol)
    # so the gradient of any scalar w . sparsemax matches the differences too
    w = np.random.default_rng(n).standard_normal(n)
    np.testing.assert_allclose(J_rev.T @ w, J_fd.T @ w, rtol=0, atol=fd_atol * np.abs(w).sum())


def test_sparsemax_grad_vmap_and_second_derivatives():
    thetas = np.stack([_theta_away_from_kinks("random", 7, seed=s) for s in range(3)])
    w = np.random.default_rng(18).standard_normal(7)

    @jax.jit
    def f(ts):
        return (jax.vmap(jax.grad(lambda t: jnp.dot(w, sparsemax(t))))(ts),
                jax.vmap(jax.hessian(lambda t: 0.5 * jnp.sum(sparsemax(t) ** 2)))(ts),
                sparsemax(ts))

    g, H, z = (np.asarray(a) for a in f(jnp.asarray(thetas)))
    np.testing.assert_array_equal(z, np.asarray(_sparsemax_rows(jnp.asarray(thetas))))
    for k in range(3):
        J = sparsemax_jacobian_reference(sparsemax_reference(thetas[k])[0] > 0)
        np.testing.assert_allclose(g[k], J.T @ w, rtol=1e-13, atol=1e-15)
        # piecewise linear: the Hessian of 1/2 |sparsemax|^2 is J^T J
        np.testing.assert_allclose(H[k], J.T @ J, atol=1e-15)


def test_sparsemax_threshold_and_kkt_point_derivatives():
    # d tau / d theta = s / |S| (the IFT derivative of the multiplier u), and the KKT point's z
    # has the sparsemax Jacobian (regression test: tau had a zero gradient)
    theta = _theta_away_from_kinks("random", 7)
    s = (sparsemax_reference(theta)[0] > 0).astype(float)

    @jax.jit
    def f(t):
        return (jax.grad(sparsemax_threshold)(t), jax.jacfwd(lambda u: sparsemax_kkt_point(u)[0])(t),
                jax.grad(lambda u: sparsemax_kkt_point(u)[1])(t),
                jax.jacrev(lambda u: sparsemax_kkt_point(u)[2])(t))

    dtau, Jz, du, Jv = (np.asarray(a) for a in f(jnp.asarray(theta)))
    np.testing.assert_allclose(dtau, s / s.sum(), rtol=1e-14)
    np.testing.assert_allclose(du, s / s.sum(), rtol=1e-14)
    np.testing.assert_allclose(Jz, sparsemax_jacobian_reference(s), rtol=1e-14, atol=1e-15)
    # v = max(tau - theta, 0): dv_i = dtau - dtheta_i off the support, 0 on it
    np.testing.assert_allclose(Jv, (1 - s)[:, None] * (s / s.sum() - np.eye(7)), atol=1e-15)


@pytest.mark.parametrize("axis", [1, 0, -1])
def test_sparsemax_batched_along_any_axis(axis):
    theta = AXIS_THETA

    @jax.jit
    def f(t):
        return (sparsemax(t, axis), jax.jacrev(lambda u: sparsemax(u, axis))(t),
                sparsemax_threshold(t, axis))

    z, J, tau = (np.asarray(a) for a in f(jnp.asarray(theta)))
    z_ref, tau_ref = sparsemax_reference(np.moveaxis(theta, axis, -1))
    np.testing.assert_allclose(z, np.moveaxis(z_ref, -1, axis), atol=1e-13)
    np.testing.assert_allclose(tau, tau_ref, atol=1e-13)
    np.testing.assert_allclose(z.sum(axis=axis), 1.0, atol=1e-14)
    J_closed = blockwise_jacobian(theta, axis, lambda row: sparsemax_jacobian_reference(
        sparsemax_reference(row)[0] > 0))
    np.testing.assert_allclose(J, J_closed, atol=1e-15)


# ------------------------------------------------------------------------------ sparsemax kinks

def test_kink_construction():
    # theta = [1, 0.5, 0]: tau = (1 + 0.5 - 1) / 2 = 0.25 > 0, not a kink; moving the last entry
    # onto the threshold, theta = [1, 0.5, 0.25], keeps tau = 0.25 and makes one.
    assert float(sparsemax_threshold(jnp.array([1.0, 0.5, 0.0]))) == 0.25
    assert kink_gap([1.0, 0.5, 0.0]) == 0.25
    assert float(sparsemax_threshold(jnp.array([1.0, 0.5, 0.25]))) == 0.25
    assert kink_gap([1.0, 0.5, 0.25]) == 0.0


# (theta, kink indices), theta dyadic so that tau and theta_i = tau are exact
KINKS = {
    "one": ([1.0, 0.5, 0.25], [2]),                                      # tau = 0.25
    "two_tied": ([2.0, 1.5, 1.25, 1.25, 0.0, -3.0, 1.0], [2, 3]),       # tau = 1.25
    "shuffled": ([2.5, 1.96875, 2.25, -1.0, 2.125, 0.5, 2.0], [1]),     # tau = 7.875 / 4
}


@pytest.mark.parametrize("name", list(KINKS))
def test_sparsemax_at_a_kink_is_the_one_sided_derivative(name):
    theta, kinks = np.array(KINKS[name][0]), KINKS[name][1]
    n = theta.size
    z, tau, J_rev, J_fwd = _sparsemax_jacobians(jnp.asarray(theta))
    z, tau, J_rev, J_fwd = np.asarray(z), float(tau), np.asarray(J_rev), np.asarray(J_fwd)
    assert np.all(theta[kinks] == tau) and np.all(z[kinks] == 0.0)    # exactly on the threshold
    S = z > 0                                                          # the strict support
    J = sparsemax_jacobian_reference(S)
    np.testing.assert_allclose(J_rev, J, atol=1e-15)
    np.testing.assert_allclose(J_fwd, J, atol=1e-15)
    # Directions d with d_i <= mean_S(d) at every kink (row 0: equality), and one (last row)
    # pushing the first kink index into the support. One-sided differences with a dyadic step
    # are exact up to rounding on the piece that theta + h d lies on.
    rng = np.random.default_rng(15)
    D = rng.standard_normal((2 * n, n))
    mean_S = D[:, S].mean(axis=1)
    D[:, kinks] = mean_S[:, None] - np.abs(rng.standard_normal((2 * n, len(kinks))))
    D[0, kinks] = mean_S[0]
    i = kinks[0]
    D[-1, i] = mean_S[-1] + 1.0
    h = 2.0**-20
    one_sided = (np.asarray(_sparsemax_rows(jnp.asarray(theta + h * D))) - z) / h
    np.testing.assert_allclose(one_sided[:-1], D[:-1] @ J.T, atol=1e-8)
    # from the other side the derivative is the other piece's Jacobian (support S + {i}) ...
    S_other = S.copy()
    S_other[i] = True
    assert D[-1, i] > D[-1, S_other].mean()                            # i does enter the support
    np.testing.assert_allclose(one_sided[-1], sparsemax_jacobian_reference(S_other) @ D[-1], atol=1e-8)
    assert np.abs(one_sided[-1] - J @ D[-1]).max() > 0.1               # ... not the returned one


@pytest.mark.parametrize("theta", [[1.0, 0.5, 0.25], [1.0, 0.0, 0.0]], ids=["one", "two"])
def test_check_ift_sparsemax_at_a_kink_does_not_apply(theta):
    theta = jnp.asarray(theta)
    report = check_ift(sparsemax_kkt_full, sparsemax_kkt_point(theta), theta)
    assert report.is_solution and not report.jacobian_nonsingular and not report.applies
    assert "condition 3" in report.failure and "singular" in report.failure
    assert "does NOT apply" in str(report)
    with pytest.raises(IFTConditionError, match="condition 3"):
        report.raise_if_failed()


# ------------------------------------------------------------------------- KKT points and check_ift

@jax.jit
def _softmax_kkt_residuals(theta):
    z, u, v = softmax_kkt_point(theta)
    y = theta - (u + 1.0)          # log z from the first equation (finite even where z underflows)
    return (z, u, v, softmax_kkt_full((z, u, v), theta), softmax_kkt_reduced((z, u), theta),
            softmax_kkt_log((jnp.log(z), u), theta), softmax_kkt_log((y, u), theta))


@pytest.mark.parametrize("n", [3, 40])
def test_softmax_kkt_point_solves_every_kkt_form(n):
    for kind in KINDS:
        theta = make_theta(kind, n)
        z, u, v, full, reduced, log_z, log_y = _softmax_kkt_residuals(jnp.asarray(theta))
        np.testing.assert_allclose(np.asarray(z), softmax_reference(theta), rtol=1e-12, atol=1e-300)
        lse = np.log(np.sum(np.exp(theta - theta.max()))) + theta.max()
        np.testing.assert_allclose(float(u), lse - 1.0, rtol=1e-14)
        assert np.all(np.asarray(v) == 0.0)                      # v >= 0, and = 0 as z > 0
        tol = 1e-14 * scale(theta)
        assert _max_abs(log_y) <= tol, kind
        if kind == "large":            # some z_i = 0: log z = -inf, only the log form is usable
            assert not np.all(np.isfinite(np.asarray(reduced[0])))
        else:
            assert np.all(np.asarray(z) > 0)
            for residual in (full, reduced, log_z):
                assert _max_abs(residual) <= tol, (kind, residual)


def test_softmax_kkt_point_batched_and_differentiable():
    theta = np.random.default_rng(16).standard_normal((2, 3, 4))
    z, u, v = softmax_kkt_point(theta)
    assert z.shape == v.shape == (2, 3, 4) and u.shape == (2, 3)
    np.testing.assert_allclose(np.asarray(z), softmax_reference(theta), rtol=1e-13)
    # u = lse - 1 has gradient z; z has the softmax Jacobian
    g, J = jax.jit(lambda t: (jax.grad(lambda s: softmax_kkt_point(s)[1])(t),
                              jax.jacfwd(lambda s: softmax_kkt_point(s)[0])(t)))(jnp.asarray(theta[0, 0]))
    z0 = softmax_reference(theta[0, 0])
    np.testing.assert_allclose(np.asarray(g), z0, rtol=1e-13)
    np.testing.assert_allclose(np.asarray(J), softmax_jacobian_reference(z0), atol=1e-15)


@pytest.mark.parametrize("n", [2, 40, 10_000])
def test_sparsemax_kkt_point_solves_the_kkt_system(n):
    for kind in KINDS:
        theta = make_theta(kind, n)
        z_sp, tau, (z, u, v), (r_stat, r_eq, r_comp) = _sparsemax_values(jnp.asarray(theta))
        z, u, v = np.asarray(z), float(u), np.asarray(v)
        z_ref, tau_ref = sparsemax_reference(theta)
        np.testing.assert_allclose(z, z_ref, atol=8 * EPS * scale(theta))
        np.testing.assert_array_equal(z, np.asarray(z_sp))
        assert u == float(tau)
        np.testing.assert_allclose(v, np.maximum(tau_ref - theta, 0.0), atol=8 * EPS * scale(theta))
        assert np.all(z >= 0) and np.all(v >= 0)
        assert np.all(np.asarray(r_comp) == 0.0)                    # v * z = 0 exactly
        assert _max_abs(r_stat) <= 2 * EPS * scale(theta), kind     # ~1e-16 |theta|
        # sum z - 1: every z_i = theta_i - tau carries tau's rounding, so it grows like |S|
        assert abs(float(r_eq)) <= max(1e-14, 2 * np.sum(z > 0) * EPS * scale(theta)), kind


def test_sparsemax_kkt_point_batched():
    theta = np.random.default_rng(17).standard_normal((4, 6))
    z, u, v = sparsemax_kkt_point(theta)
    assert z.shape == v.shape == (4, 6) and u.shape == (4,)
    z_ref, tau_ref = sparsemax_reference(theta)
    np.testing.assert_allclose(np.asarray(z), z_ref, atol=1e-15)
    np.testing.assert_allclose(np.asarray(u), tau_ref, atol=1e-15)
    assert _max_abs(jax.vmap(sparsemax_kkt_full)((z, u, v), jnp.asarray(theta))) <= 1e-14


def test_check_ift_softmax_log_kkt_applies():
    # at random theta, and at every other kind of theta (the log form has Schur complement -1)
    for kind in KINDS:
        theta = jnp.asarray(make_theta(kind, 3, seed=1))
        z, u, _ = softmax_kkt_point(theta)
        report = check_ift(softmax_kkt_log, (theta - (u + 1.0), u), theta)
        assert report.applies and report.failure is None, (kind, str(report))
        assert report.residual <= 1e-14 * scale(theta)
        assert report.cond < 10


def test_check_ift_softmax_full_and_reduced_and_their_conditioning():
    theta = jnp.asarray(make_theta("random", 3, seed=2))
    z, u, v = softmax_kkt_point(theta)
    assert check_ift(softmax_kkt_full, (z, u, v), theta).applies
    assert check_ift(softmax_kkt_reduced, (z, u), theta).applies
    # min z ~ e^-20: the reduced form's condition grows like 1 / min z, the log form's does not
    theta = jnp.array([0.0, -20.0, -1.0])
    z, u, _ = softmax_kkt_point(theta)
    reduced = check_ift(softmax_kkt_reduced, (z, u), theta)
    log_form = check_ift(softmax_kkt_log, (jnp.log(z), u), theta)
    assert reduced.cond > 1e8 and log_form.cond < 10 and log_form.applies


def test_check_ift_sparsemax_applies_away_from_kinks():
    for kind in KINDS:
        theta = jnp.asarray(_theta_away_from_kinks(kind, 3, seed=3))
        report = check_ift(sparsemax_kkt_full, sparsemax_kkt_point(theta), theta)
        assert report.applies, (kind, str(report))


# --------------------------------------------------------------------------------------- errors

FUNCTIONS = {
    "softmax": softmax,
    "softmax_dense": lambda t, axis=-1: softmax(t, axis, solve="dense"),
    "sparsemax": sparsemax,
    "sparsemax_threshold": sparsemax_threshold,
}


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_non_finite_theta_raises(name):
    fn = FUNCTIONS[name]
    prefix = name.replace("_dense", "") + ":"
    jitted = jax.jit(fn)
    for bad in (np.nan, np.inf, -np.inf):
        theta = jnp.array([0.3, bad, -1.0])
        _raises(lambda: fn(theta), ValueError, prefix, "1 NaN or infinite entry")
        _raises(lambda: jitted(theta), ValueError, prefix, "NaN or infinite", wrapped=True)
    _raises(lambda: fn(jnp.array([[0.0, np.nan, 1.0], [np.inf, 1.0, 2.0]])), ValueError,
            "2 NaN or infinite entries")
    _raises(lambda: jax.vmap(fn)(jnp.array([[0.0, 1.0, 2.0], [-np.inf, 1.0, 2.0]])), ValueError,
            "NaN or infinite", wrapped=True)
    # the finite case still runs through the same compiled function
    assert np.all(np.isfinite(np.asarray(jitted(jnp.array([0.3, 0.0, -1.0])))))


@pytest.mark.parametrize("name", ["softmax", "sparsemax", "sparsemax_threshold"])
def test_non_finite_theta_raises_when_only_a_derivative_is_used(name):
    # regression test: the check was tied to the output only, so jit removed it from
    # jit(grad(...)) as dead code, which returned NaN (softmax) or zeros (sparsemax)
    fn = FUNCTIONS[name]
    loss = lambda t: jnp.sum(fn(t) * jnp.array([1.0, 2.0, 3.0]))
    theta = jnp.array([0.3, np.nan, -1.0])
    _raises(lambda: jax.grad(loss)(theta), ValueError, "NaN or infinite", wrapped=True)
    _raises(lambda: jax.jit(jax.grad(loss))(theta), ValueError, "NaN or infinite", wrapped=True)


ALL_FUNCTIONS = dict(FUNCTIONS, softmax_kkt_point=softmax_kkt_point,
                     sparsemax_kkt_point=sparsemax_kkt_point)


@pytest.mark.parametrize("name", list(ALL_FUNCTIONS))
def test_bad_shapes_and_dtypes_raise(name):
    fn = ALL_FUNCTIONS[name]
    _raises(lambda: fn(jnp.zeros((3, 0))), ValueError, "empty", "(3, 0)")
    _raises(lambda: fn(jnp.zeros(0)), ValueError, "empty")
    _raises(lambda: fn(1.5), ValueError, "scalar")
    _raises(lambda: fn(jnp.zeros(3, jnp.complex64)), TypeError, "real", "complex64")
    if "kkt_point" not in name:
        _raises(lambda: fn(jnp.zeros((0, 3)), axis=0), ValueError, "empty", "axis 0")
        _raises(lambda: fn(jnp.zeros((2, 3)), axis=2), ValueError, "axis 2", "out of range")
        _raises(lambda: fn(jnp.zeros((2, 3)), axis=-3), ValueError, "axis -3", "out of range")
        _raises(lambda: jax.jit(fn, static_argnums=1)(jnp.zeros((2, 3)), 5), ValueError,
                "out of range")
    # an integer array is accepted and converted to float
    out, ref = fn(np.array([2, 0, 1])), fn(np.array([2.0, 0.0, 1.0]))
    for o, r in zip(jax.tree.leaves(out), jax.tree.leaves(ref)):
        assert o.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(o), np.asarray(r), rtol=1e-15)


def test_unknown_solve_name():
    with pytest.raises(ValueError, match="unknown linear solver"):
        softmax(jnp.zeros(3), solve="lu")


def test_bicgstab_breaks_down_and_raises():
    # BiCGStab breaks down on the saddle-point system [[I, 1], [z^T, 0]] with right-hand side
    # (dtheta, 0): after one step the residual (0, -z.dtheta) is orthogonal to the shadow
    # residual (dtheta, 0), so rho = 0. The IFT's linear-solve check must refuse the result
    # instead of returning wrong numbers, in both modes.
    theta = jnp.asarray(make_theta("random", 3))
    fwd = jax.jit(jax.jacfwd(lambda t: softmax(t, solve="bicgstab")))
    rev = jax.jit(jax.grad(lambda t: jnp.dot(W[:3], softmax(t, solve="bicgstab"))))
    for fn in (fwd, rev):
        _raises(lambda: fn(theta), IFTConditionError, "IFT linear solve failed", wrapped=True)
    # the value itself does not use the linear solver
    np.testing.assert_allclose(np.asarray(softmax(theta, solve="bicgstab")),
                               softmax_reference(np.asarray(theta)), rtol=1e-14)


# ------------------------------------------------------------ Chapter 2's checks, moved from §2.5

def test_chapter2_checks_against_jax_softmax():
    # formerly a section of the chapter: softmax against jax.nn.softmax on random scores, ties,
    # |theta| ~ 1e3 and a constant vector (values, jacrev, jacfwd); a batch along the middle axis;
    # vmap(jacrev) under jit; the Hessian of a loss through softmax
    cases = {
        "random": jax.random.normal(jax.random.PRNGKey(0), (7,)),
        "ties": jnp.array([2.0, 2.0, -1.0, 2.0]),
        "large": jnp.array([1000.0, -1000.0, 999.0, 0.0]),
        "constant": jnp.full(5, 3.0),
    }
    for name, th in cases.items():
        z = softmax(th)
        J = jax.jacrev(softmax)(th)
        np.testing.assert_allclose(np.asarray(z), np.asarray(jax.nn.softmax(th)), rtol=1e-14,
                                   atol=1e-300, err_msg=name)
        np.testing.assert_allclose(np.asarray(J), np.asarray(jax.jacobian(jax.nn.softmax)(th)),
                                   rtol=1e-12, atol=1e-15, err_msg=name)
        np.testing.assert_allclose(np.asarray(jax.jacfwd(softmax)(th)), np.asarray(J),
                                   rtol=1e-12, atol=1e-15, err_msg=name)
    batch = jax.random.normal(jax.random.PRNGKey(1), (3, 6, 4)) * 5
    np.testing.assert_allclose(np.asarray(softmax(batch, axis=1)),
                               np.asarray(jax.nn.softmax(batch, axis=1)), rtol=1e-13)
    per_example = jax.jit(jax.vmap(jax.jacrev(softmax)))(batch[:, 0])
    np.testing.assert_allclose(np.asarray(per_example),
                               np.asarray(jax.vmap(jax.jacobian(jax.nn.softmax))(batch[:, 0])),
                               atol=1e-14)
    w = jnp.arange(7.0)
    loss = lambda t, f: jnp.sum(w * f(t) ** 2)
    np.testing.assert_allclose(np.asarray(jax.hessian(loss)(cases["random"], softmax)),
                               np.asarray(jax.hessian(loss)(cases["random"], jax.nn.softmax)),
                               rtol=1e-10, atol=1e-13)


def test_chapter2_bad_input_messages():
    _raises(lambda: softmax(jnp.array([1.0, jnp.nan])), ValueError,
            "softmax: theta contains 1 NaN or infinite entry")
    _raises(lambda: softmax(jnp.zeros((3, 0))), ValueError,
            "softmax: the axis -1 of theta (shape (3, 0)) is empty")


@pytest.mark.parametrize("solve", [None, "dense", "gmres"])
def test_softmax_check_false_same_derivative_and_no_checks(solve):
    theta = jnp.asarray(make_theta("random", 5))
    w = jnp.asarray(W[:5])
    grad_on = jax.jit(jax.grad(lambda t: jnp.dot(w, softmax(t, solve=solve))))
    grad_off = jax.jit(jax.grad(lambda t: jnp.dot(w, softmax(t, solve=solve, check=False))))
    np.testing.assert_allclose(np.asarray(grad_off(theta)), np.asarray(grad_on(theta)),
                               rtol=1e-12, atol=1e-15)
    # without checks a NaN is not refused: it propagates
    bad = theta.at[1].set(jnp.nan)
    assert np.all(np.isnan(np.asarray(softmax(bad, solve=solve, check=False))))


def test_softmax_log_kkt_schur_complement_and_conditioning():
    # the Schur complement of I in [[I, 1], [z^T, 0]] is 0 - z.1 = -1 (the sign softmax.py uses),
    # and the condition number does not depend on the spread but grows like n, below
    # (2 + sqrt n)(3 + 2 sqrt n)
    for n in (3, 30, 300):
        for th in (jnp.zeros(n), jnp.linspace(0.0, -700.0, n), jnp.asarray(make_theta("random", n))):
            z, u, _ = softmax_kkt_point(th)
            A = np.asarray(jax.jacfwd(lambda y: jnp.concatenate(
                [jnp.atleast_1d(l) for l in softmax_kkt_log((y[:-1], y[-1]), th)]))(
                jnp.concatenate([jnp.log(z), u[None]])))
            schur = A[n, n] - A[n, :n] @ np.linalg.solve(A[:n, :n], A[:n, n])
            assert abs(schur + 1.0) < 1e-14
            cond = np.linalg.cond(A)
            assert n < cond < (2 + np.sqrt(n)) * (3 + 2 * np.sqrt(n))
        assert abs(np.linalg.cond(np.asarray(jax.jacfwd(lambda y: jnp.concatenate(
            [jnp.atleast_1d(l) for l in softmax_kkt_log((y[:-1], y[-1]), jnp.zeros(n))]))(
            jnp.concatenate([jnp.full(n, -np.log(n)), jnp.zeros(1)])))) / (n + 1) - 1) < 0.05
