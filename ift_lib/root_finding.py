"""Plain-JAX root finders for F(x, *params) = 0. Deliberately simple: pair them with
``ift_lib.custom_root`` and the way a root was found stops mattering for its derivative.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ift_lib._checks import is_concrete

__all__ = ["newton", "bisection"]


def newton(F: Callable, init, *params, num_steps: int = 50):
    """Newton's method  x <- x - [dF/dx(x)]^{-1} F(x, *params),  ``num_steps`` steps.

    x may be a pytree (F must return one of the same shapes). No line search, no stopping
    test: a fixed number of steps so it runs under jit/vmap; check the residual afterwards. An
    exact root (F = 0 in every entry) is left as it is.
    """
    flat0, unravel = ravel_pytree(init)

    def flat_F(v):
        return ravel_pytree(F(unravel(v), *params))[0]

    def step(_, v):
        r = flat_F(v)
        # An exact root stays put: where dF/dx is also singular (e.g. x = 0 on the circle at
        # theta = +-1) the plain step would be 0/0 = NaN, and the point would be misreported as
        # "not a solution" instead of "dF/dx singular".
        return jnp.where(jnp.all(r == 0), v, v - jnp.linalg.solve(jax.jacfwd(flat_F)(v), r))

    return unravel(jax.lax.fori_loop(0, num_steps, step, flat0))


def bisection(g: Callable, lower, upper, *params, num_steps: int = 60):
    """A root of the scalar function t -> g(t, *params) in [lower, upper], where g changes sign.

    Elementwise: lower and upper may be arrays of brackets (then g must act entrywise, returning
    the same shape), each halved ``num_steps`` times; the result has their (float) dtype.

    Each step halves the bracket with a comparison, so autodiff *through* it sees only
    constants: its derivative with respect to params is exactly 0. With ``custom_root`` the
    derivative is the IFT's. If g(lower) and g(upper) have the same sign there is no bracketed
    root: a ValueError in eager mode, NaN under jit/vmap.
    """
    dtype = jnp.result_type(lower, upper, float)
    lower, upper = jnp.asarray(lower, dtype), jnp.asarray(upper, dtype)
    g_lo, g_hi = g(lower, *params), g(upper, *params)
    brackets = jnp.sign(g_lo) * jnp.sign(g_hi) <= 0
    if is_concrete((g_lo, g_hi)) and not bool(jnp.all(brackets)):
        bad = int(jnp.argmin(brackets.reshape(-1)))
        raise ValueError(f"bisection: g(lower) = {float(g_lo.reshape(-1)[bad]):.3g} and g(upper) = "
                         f"{float(g_hi.reshape(-1)[bad]):.3g} have the same sign, so "
                         f"[lower, upper] brackets no root" + (f" (entry {bad} of {brackets.size})"
                                                                if brackets.size > 1 else ""))

    def step(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        same_sign = jnp.sign(g(mid, *params)) == jnp.sign(g_lo)
        return jnp.where(same_sign, mid, lo), jnp.where(same_sign, hi, mid)

    lo, hi = jax.lax.fori_loop(0, num_steps, step, (lower, upper))
    return jnp.where(brackets, 0.5 * (lo + hi), jnp.nan)
