"""The forward recursion of a linear chain, in log space with normalised messages (a private
module with public names, shared by :mod:`ift_lib.hmm`'s HMM and CRF functions).

For a chain with unary scores u (T, K) and pairwise scores w, either shared (K, K) or per step
(T-1, K, K), the log-partition function is

    log Z = log sum_{z_1..z_T} exp( sum_t u_t[z_t] + sum_{t<T} w_t[z_t, z_{t+1}] ).

The forward messages alpha_t[k] = log sum_{z_1..z_{t-1}} exp(score of the prefix ending in
z_t = k) would grow or shrink without bound with t (underflow in a few hundred steps with scores
around -1, at once with scores around -1e3). Each message is therefore normalised,

    a_1 = u_1 - c_1,   a_{t+1}[j] = u_{t+1}[j] + lse_i(a_t[i] + w_t[i, j]) - c_{t+1},
    c_t = lse of the unnormalised a_t,        log Z = c_1 + ... + c_T,

so every a_t has lse(a_t) = 0 (entries <= 0) and log Z is a running sum of bounded terms.
Time O(T K^2), memory O(T K) for the gradient: each step is rematerialised (jax.checkpoint),
so reverse mode stores only the K-vector a_t per step, not the K x K table of the step.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["safe_logsumexp", "chain_log_partition"]


def safe_logsumexp(x, axis):
    """log sum exp(x) along ``axis`` (kept), stable, with a finite gradient when every entry is
    -inf (the value is then -inf and the gradient 0, where ``jax.nn.logsumexp``'s is NaN)."""
    top = jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    total = jnp.sum(jnp.exp(x - top), axis=axis, keepdims=True)
    positive = total > 0
    return jnp.where(positive, jnp.log(jnp.where(positive, total, 1.0)) + top, -jnp.inf)


def chain_log_partition(unary, pairwise):
    """log Z of one chain: unary (T, K), pairwise (K, K) shared or (T-1, K, K) per step -> ().

    No checks (callers validate). Differentiable: d log Z / d unary[t, k] = p(z_t = k) and
    d log Z / d pairwise[t, i, j] = p(z_t = i, z_{t+1} = j) (per-step pairwise).
    """
    per_step = pairwise.ndim == 3
    a0 = unary[0]
    c0 = safe_logsumexp(a0, axis=-1)
    a0 = a0 - jnp.where(jnp.isfinite(c0), c0, 0.0)

    @jax.checkpoint
    def step(carry, xs):
        a, total = carry
        u_t, w_t = xs if per_step else (xs, pairwise)
        a_new = u_t + safe_logsumexp(a[:, None] + w_t, axis=0)[0]
        c = safe_logsumexp(a_new, axis=-1)
        # c = -inf: no state can explain step t (log Z = -inf); keep a at -inf, not NaN
        return (a_new - jnp.where(jnp.isfinite(c), c, 0.0), total + c[0]), None

    xs = (unary[1:], pairwise) if per_step else unary[1:]
    (_, total), _ = jax.lax.scan(step, (a0, c0[0]), xs)
    return total
