"""ift_lib.measure: optimized_jit compiles with XLA's default optimization level whatever
XLA_FLAGS says (the build's scripts set level 0), and the timers call what they are given."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ift_lib.measure import FULL_OPTIMIZATION, best_time, median_time, optimized_jit


def _loop(x):
    return jax.lax.fori_loop(0, 50, lambda i, y: jnp.sin(y) + 0.5 * y, x)


def test_optimized_jit_computes_what_jit_computes():
    x = jnp.linspace(-2.0, 2.0, 101)
    np.testing.assert_allclose(optimized_jit(_loop)(x), jax.jit(_loop)(x), rtol=1e-14, atol=0)
    f = optimized_jit(lambda x, n: x * n, static_argnums=1)       # jit's keywords pass through
    assert float(f(jnp.float32(2.0), 3)) == 6.0


def test_the_option_reaches_xla():
    # XLA parses the per-program options: a misspelt one is refused, the level is accepted
    jax.jit(_loop, compiler_options=FULL_OPTIMIZATION).lower(jnp.ones(3)).compile()
    with pytest.raises(Exception, match="xla_backend_optimisation_level"):
        jax.jit(_loop, compiler_options={"xla_backend_optimisation_level": 3}).lower(
            jnp.ones(3)).compile()
    assert FULL_OPTIMIZATION == {"xla_backend_optimization_level": 3}   # XLA's default level


def test_timers_return_positive_seconds():
    x = jnp.ones(10)
    assert 0 < best_time(optimized_jit(_loop), x, repeats=3) < 10
    assert 0 < median_time(_loop, x, repeats=3) < 10
    with pytest.raises(ValueError, match="repeats"):
        best_time(optimized_jit(_loop), x, repeats=0)
