"""Tests for ift_lib.root_finding: Newton's method and bisection, alone and under custom_root."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ift_lib
from ift_lib.root_finding import bisection, newton


def test_newton_scalar_and_vector():
    F = lambda x, t: x**2 - t
    np.testing.assert_allclose(float(newton(F, 1.0, 2.0)), np.sqrt(2.0), rtol=1e-15)
    t = jnp.array([1.0, 4.0, 9.0])
    np.testing.assert_allclose(np.asarray(newton(F, jnp.ones(3), t)), [1.0, 2.0, 3.0], rtol=1e-15)


def test_newton_pytree_system_under_jit_and_vmap():
    # x^2 + y^2 = r^2, y = x: the point (r/sqrt 2, r/sqrt 2)
    F = lambda z, r: {"a": z["x"] ** 2 + z["y"] ** 2 - r**2, "b": z["y"] - z["x"]}
    z = jax.jit(newton, static_argnums=0)(F, {"x": 1.0, "y": 0.5}, 2.0)
    np.testing.assert_allclose([float(z["x"]), float(z["y"])], [np.sqrt(2.0)] * 2, rtol=1e-14)
    zs = jax.vmap(lambda r: newton(F, {"x": 1.0, "y": 0.5}, r))(jnp.array([1.0, 3.0]))
    np.testing.assert_allclose(np.asarray(zs["x"]), np.array([1.0, 3.0]) / np.sqrt(2.0), rtol=1e-14)


def test_bisection_finds_the_bracketed_root():
    g = lambda t, c: t**3 - c
    np.testing.assert_allclose(float(bisection(g, 0.0, 3.0, 8.0)), 2.0, atol=1e-14)
    roots = jax.jit(jax.vmap(lambda c: bisection(g, 0.0, 3.0, c)))(jnp.array([1.0, 8.0, 27.0]))
    np.testing.assert_allclose(np.asarray(roots), [1.0, 2.0, 3.0], atol=1e-14)


def test_bisection_without_a_bracket_is_an_error_or_nan():
    g = lambda t, c: t**2 + c
    with pytest.raises(ValueError, match="brackets no root"):
        bisection(g, -1.0, 1.0, 1.0)
    assert np.isnan(float(jax.jit(lambda c: bisection(g, -1.0, 1.0, c))(1.0)))


def test_bisection_alone_has_zero_derivative_and_custom_root_gives_the_ift():
    g = lambda t, c: t**3 - c
    assert float(jax.grad(lambda c: bisection(g, 0.0, 3.0, c))(8.0)) == 0.0
    root = ift_lib.custom_root(lambda t, c: g(t, c))(
        lambda init, c: bisection(g, 0.0, 3.0, c))
    # t = c^(1/3): dt/dc = 1 / (3 t^2) = 1/12 at c = 8
    np.testing.assert_allclose(float(jax.grad(root, argnums=1)(0.0, 8.0)), 1.0 / 12.0, rtol=1e-12)


def test_newton_with_custom_root_forward_and_reverse():
    F = lambda x, t: x**2 - t
    root = ift_lib.custom_root(F)(lambda init, t: newton(F, init, t))
    np.testing.assert_allclose(float(jax.grad(root, argnums=1)(1.0, 4.0)), 0.25, rtol=1e-14)
    np.testing.assert_allclose(float(jax.jacfwd(root, argnums=1)(1.0, 4.0)), 0.25, rtol=1e-14)


def test_newton_leaves_an_exact_root_alone_even_where_dF_dx_is_singular():
    F = lambda x, t: t**2 + x**2 - 1          # at (t, x) = (1, 0): F = 0 and dF/dx = 0
    assert float(newton(F, 0.0, 1.0)) == 0.0   # not NaN (0/0)
    root = ift_lib.custom_root(F)(lambda init, t: newton(F, init, t))
    with pytest.raises(ift_lib.IFTConditionError, match="condition 3"):
        jax.grad(root, argnums=1)(0.0, 1.0)


def test_bisection_is_elementwise_and_keeps_the_dtype():
    targets = jnp.array([0.5, 2.0, 10.0], jnp.float32)
    roots = jax.jit(lambda lo, hi: bisection(lambda t: t**2 - targets, lo, hi, num_steps=40))(
        jnp.zeros(3, jnp.float32), jnp.full(3, 3.0, jnp.float32))
    assert roots.dtype == jnp.float32
    np.testing.assert_allclose(roots[:2], jnp.sqrt(targets[:2]), rtol=1e-6)
    assert bool(jnp.isnan(roots[2]))                       # 10 is not bracketed by [0, 3]: under jit
    with pytest.raises(ValueError, match="entry 2 of 3"):  # ... and eagerly, entry named
        bisection(lambda t: t**2 - jnp.array([0.5, 2.0, 10.0]), jnp.zeros(3), jnp.full(3, 3.0))
