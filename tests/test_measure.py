"""ift_lib.measure: optimized_jit compiles with XLA's default optimization level whatever
XLA_FLAGS says (the build's scripts set level 0), and the timers call what they are given."""
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ift_lib.measure import (FULL_OPTIMIZATION, best_time, best_times_in_rounds, median_time,
                             optimized_jit, times_in_rounds)


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


def test_best_times_in_rounds_runs_each_in_turns():
    calls = []
    fns = [lambda x, name=name: calls.append(name) or x for name in "ab"]
    times = best_times_in_rounds(fns, jnp.ones(3), rounds=4, repeats=2, warmup=1)
    assert len(times) == 2 and all(0 < t < 10 for t in times)
    # one warm-up of each, then 4 rounds that run a twice, then b twice
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] * 4
    slow = lambda: time.sleep(0.02)
    fast = lambda: None
    t_slow, t_fast = best_times_in_rounds([slow, fast], rounds=2)
    assert t_slow >= 0.02 > t_fast
    assert best_times_in_rounds([], rounds=3) == []


def test_times_in_rounds_reads_every_run_on_every_clock():
    """Wall time and CPU time of the same runs: a sleep costs wall time, not CPU time."""
    sleep = lambda: time.sleep(0.02)
    samples = times_in_rounds([sleep, lambda: None], rounds=3, repeats=2,
                              clocks=(time.perf_counter, time.process_time))
    assert samples.shape == (2, 2, 6)
    assert samples[0, 0].min() >= 0.02 > samples[1, 0].max()       # wall vs CPU of a sleep
    assert best_times_in_rounds([sleep], rounds=2, clock=time.process_time)[0] < 0.02
    with pytest.raises(ValueError, match="clocks"):
        times_in_rounds([sleep], clocks=())


@pytest.mark.parametrize("bad", [dict(rounds=0), dict(repeats=0), dict(rounds=1.5), dict(repeats=True)])
def test_best_times_in_rounds_refuses_bad_counts(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=f"{name} must be an integer >= 1"):
        best_times_in_rounds([lambda: None], **bad)
