"""Measuring what a computation costs: XLA's compiled scratch memory and wall time.

Shared by the chapters, the widgets and ``benchmarks/``. Timings depend on the machine and its
load: print them, never compare them with stored outputs (tag such cells ``nbval-ignore-output``)
and assert only ratios with a wide margin. Jit what you time with :func:`optimized_jit`: the
book's build compiles everything else without LLVM's optimizations (``scripts/_env.sh``).
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Callable, Sequence

import jax
import numpy as np

__all__ = ["FULL_OPTIMIZATION", "optimized_jit", "compiled_temp_bytes", "median_time", "best_time", "times_in_rounds",
           "best_times_in_rounds", "median_wall_time", "load_average"]

#: XLA's default LLVM optimization level (3), as a per-program compiler option: it overrides a
#: lower level set in ``XLA_FLAGS`` (the book's build and tests set 0, see ``scripts/_env.sh``).
FULL_OPTIMIZATION = {"xla_backend_optimization_level": 3}


def optimized_jit(fn: Callable, **jit_kwargs):
    """``jax.jit(fn, **jit_kwargs)``, compiled with ``FULL_OPTIMIZATION`` whatever ``XLA_FLAGS``
    says: what default JAX gives. Use it for what you time. The book's build compiles every other
    program at level 0 (most run once, for microseconds: compiling them about twice as fast is
    worth more than loops that run up to about twice as slowly); without that setting (e.g. in
    your own session) this is plain ``jax.jit``."""
    return jax.jit(fn, compiler_options=FULL_OPTIMIZATION, **jit_kwargs)


def _check_repeats(repeats, name: str = "repeats") -> int:
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {repeats!r}")
    return repeats


def compiled_temp_bytes(fn: Callable, *args) -> int:
    """Scratch memory (bytes) XLA allocates for ``jax.jit(fn)(*args)``: ``temp_size_in_bytes`` of
    the compiled computation's memory analysis (arguments and outputs not included). Compiles,
    does not run. This, not the process RSS (dominated by compilation), shows how memory grows
    with the number of iterations."""
    stats = jax.jit(fn).lower(*args).compile().memory_analysis()
    if stats is None:
        raise RuntimeError("this JAX backend gives no memory analysis of compiled computations")
    return int(stats.temp_size_in_bytes)


def _run_times(run: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        jax.block_until_ready(run())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(run())
        times.append(time.perf_counter() - t0)
    return times


def median_time(fn: Callable, *args, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time (seconds) of ``optimized_jit(fn)(*args)`` over ``repeats`` runs, compiled
    once beforehand and run ``warmup`` times first; each run waits for its result
    (block_until_ready)."""
    repeats = _check_repeats(repeats)
    compiled = optimized_jit(fn).lower(*args).compile()
    return statistics.median(_run_times(lambda: compiled(*args), repeats, warmup))


def best_time(fn: Callable, *args, repeats: int = 7, warmup: int = 1) -> float:
    """Shortest wall time (seconds) of ``fn(*args)`` over ``repeats`` runs after ``warmup`` runs
    (which compile a jitted ``fn``): the least noisy estimate of the cost itself on a busy
    machine. ``fn`` is called as given (jit it yourself, with :func:`optimized_jit`)."""
    repeats = _check_repeats(repeats)
    return min(_run_times(lambda: fn(*args), repeats, warmup))


def times_in_rounds(fns: Sequence[Callable], *args, rounds: int = 5, repeats: int = 1,
                    warmup: int = 1, clocks: Sequence[Callable[[], float]] = (time.perf_counter,)):
    """Every timing of each ``fn(*args)`` in ``fns``, taken in turns: ``warmup`` runs of each
    (they compile a jitted ``fn``), then ``rounds`` rounds, each of which runs every ``fn``
    ``repeats`` times. A burst of load on a busy machine then weighs on all of them alike, so
    their ratios hold where one-after-the-other timings would not. Each run is read on every
    clock in ``clocks`` (``time.perf_counter``: wall time; ``time.process_time``: this process's
    CPU time, all its threads summed, which other programs' load does not inflate).

    Returns:
      A float array of seconds, shape (len(clocks), len(fns), rounds * repeats).
    """
    rounds = _check_repeats(rounds, "rounds")
    repeats = _check_repeats(repeats)
    if not clocks:
        raise ValueError("clocks must name at least one clock")
    for fn in fns:
        _run_times(lambda: fn(*args), 0, warmup)
    out = np.zeros((len(clocks), len(fns), rounds * repeats))
    for r in range(rounds):
        for j, fn in enumerate(fns):
            for k in range(repeats):
                start = [clock() for clock in clocks]
                jax.block_until_ready(fn(*args))
                out[:, j, r * repeats + k] = [clock() - t0 for clock, t0 in zip(clocks, start)]
    return out


def best_times_in_rounds(fns: Sequence[Callable], *args, rounds: int = 5, repeats: int = 1,
                         warmup: int = 1, clock: Callable[[], float] = time.perf_counter
                         ) -> list[float]:
    """Shortest time (seconds, on ``clock``: wall time by default, ``time.process_time`` for CPU
    time) of each ``fn(*args)`` in ``fns``, timed in turns as :func:`times_in_rounds` does. The
    ``fns`` are called as given (jit them with :func:`optimized_jit`; bind different arguments
    with ``functools.partial``)."""
    samples = times_in_rounds(fns, *args, rounds=rounds, repeats=repeats, warmup=warmup,
                              clocks=(clock,))
    return [float(t) for t in samples[0].min(axis=1)] if fns else []


def median_wall_time(run: Callable[[], object], repeats: int, warmup: int = 1,
                     budget: float = float("inf")) -> float:
    """Median wall time (seconds) of ``run()`` for any callable (JAX, PyTorch, ...), after
    ``warmup`` calls; each call waits for its result (``jax.block_until_ready`` on what it
    returns). When the first warm-up call took longer than ``budget`` seconds, or ``repeats`` is
    0, that call's time is returned instead (for slow baselines)."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 0:
        raise ValueError(f"repeats must be an integer >= 0, got {repeats!r}")
    t0 = time.perf_counter()
    jax.block_until_ready(run())
    first = time.perf_counter() - t0
    if repeats == 0 or first > budget:
        return first
    return statistics.median(_run_times(run, repeats, max(warmup - 1, 0)))


def load_average() -> str:
    """The machine's load average, for printing next to timings ("1.02 / 0.80 / 0.55 (1 / 5 /
    15 min)"): wall times measured under load are inflated."""
    return " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"

