"""Chapter 5: exponential families, hidden Markov models and linear-chain CRFs; marginals as
gradients of the log-partition function.

An exponential family p(z; theta) = h(z) exp(<theta, phi(z)> - A(theta)) has

    grad A(theta) = E[phi(z)] = mu            (the mean parameters: marginals, for indicators)
    hess A(theta) = Cov[phi(z)]               (so A is convex)

and A(theta) = max_{mu in M} <theta, mu> - A*(mu) with A* the negative entropy (for h = 1;
otherwise A*(mu) = -H - E[log h]): the maximiser solves theta = grad A*(mu), and the IFT gives
d mu / d theta = (hess A*)^{-1} = hess A.

An HMM with K states, ``initial (K,)`` = p(z_1), ``transition (K, K)`` with
``transition[i, j] = p(z_{t+1} = j | z_t = i)`` and ``log_likelihoods (T, K)`` = log p(x_t | z_t = k)
is, for fixed x, a linear-chain CRF over z with unary scores log_likelihoods (plus log initial at
t = 1) and pairwise scores log transition; its log-partition function is log p(x_{1:T}) and its
gradients are the posterior marginals (the forward algorithm differentiated is forward-backward).

Every function takes leading batch axes (broadcast between the arguments) and vmaps over them.
Values are checked on concrete inputs (eager); under jit, vmap or grad only shapes are checked.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ift_lib._checks import default_residual_tol, is_concrete
from ift_lib._hmm_messages import chain_log_partition, safe_logsumexp

__all__ = ["log_partition", "marginals", "pair_marginals", "hmm_as_crf", "crf_log_partition",
           "crf_marginals", "categorical_log_partition", "hvp", "hessian"]


# ----------------------------------------------------------------------------- input checks

def _as_float(x, name: str, fn: str):
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise TypeError(f"{fn}: {name} must be real, got dtype {x.dtype}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def _need_rank(x, rank: int, name: str, shape: str, fn: str):
    if x.ndim < rank:
        raise ValueError(f"{fn}: {name} must have shape {shape}, got shape {x.shape}")


def _batch_shape(fn: str, **batches):
    try:
        return jnp.broadcast_shapes(*batches.values())
    except ValueError:
        told = ", ".join(f"{k} {v}" for k, v in batches.items())
        raise ValueError(f"{fn}: the leading (batch) axes do not broadcast: {told}") from None


def _check_scores(x, name: str, fn: str):
    """No NaN and no +inf (-inf is allowed: a zero potential, an impossible observation)."""
    if is_concrete(x):
        bad = int(np.sum(np.isnan(x) | (x == np.inf)))
        if bad:
            raise ValueError(f"{fn}: {name} contains {bad} NaN or +inf entr"
                             f"{'y' if bad == 1 else 'ies'}; scores must be finite or -inf")


def _check_distribution(p, name: str, what: str, fn: str):
    """Entries finite and >= 0, and summing to one along the last axis (tolerance sqrt(eps))."""
    if not is_concrete(p):
        return
    p_np = np.asarray(p)
    if not np.all(np.isfinite(p_np)):
        raise ValueError(f"{fn}: {name} contains NaN or infinite entries")
    if np.any(p_np < 0):
        raise ValueError(f"{fn}: {name} has negative entries (min {p_np.min():.3g}); "
                         f"{what} must be probabilities")
    tol = default_residual_tol(p)
    err = np.abs(p_np.sum(axis=-1) - 1.0)
    if np.any(err > tol):
        raise ValueError(f"{fn}: {what} do not sum to one: max |sum - 1| = {err.max():.3g} "
                         f"> {tol:.1e} in {name}")


def _hmm_inputs(initial, transition, log_likelihoods, fn: str):
    initial = _as_float(initial, "initial", fn)
    transition = _as_float(transition, "transition", fn)
    ll = _as_float(log_likelihoods, "log_likelihoods", fn)
    _need_rank(initial, 1, "initial", "(..., K)", fn)
    _need_rank(transition, 2, "transition", "(..., K, K)", fn)
    _need_rank(ll, 2, "log_likelihoods", "(..., T, K)", fn)
    K = ll.shape[-1]
    if transition.shape[-1] != transition.shape[-2]:
        raise ValueError(f"{fn}: transition must be square (..., K, K), got shape {transition.shape}")
    if initial.shape[-1] != K or transition.shape[-1] != K:
        raise ValueError(f"{fn}: mismatched number of states K: initial {initial.shape}, "
                         f"transition {transition.shape}, log_likelihoods {ll.shape} (..., T, K)")
    if ll.shape[-2] < 1 or K < 1:
        raise ValueError(f"{fn}: log_likelihoods needs T >= 1 steps and K >= 1 states, "
                         f"got shape {ll.shape}")
    batch = _batch_shape(fn, initial=initial.shape[:-1], transition=transition.shape[:-2],
                         log_likelihoods=ll.shape[:-2])
    _check_distribution(initial, "initial", "the initial probabilities", fn)
    _check_distribution(transition, "transition", "the rows of the transition matrix", fn)
    _check_scores(ll, "log_likelihoods", fn)
    dtype = jnp.result_type(initial, transition, ll)
    return (jnp.broadcast_to(initial, batch + initial.shape[-1:]).astype(dtype),
            jnp.broadcast_to(transition, batch + transition.shape[-2:]).astype(dtype),
            jnp.broadcast_to(ll, batch + ll.shape[-2:]).astype(dtype), batch)


def _crf_inputs(unary, pairwise, fn: str):
    unary = _as_float(unary, "unary", fn)
    pairwise = _as_float(pairwise, "pairwise", fn)
    _need_rank(unary, 2, "unary", "(..., T, K)", fn)
    _need_rank(pairwise, 2, "pairwise", "(..., K, K) or (..., T-1, K, K)", fn)
    T, K = unary.shape[-2:]
    if T < 1 or K < 1:
        raise ValueError(f"{fn}: unary needs T >= 1 steps and K >= 1 states, got {unary.shape}")
    per_step = pairwise.ndim == unary.ndim + 1
    core = 3 if per_step else 2
    want = (T - 1, K, K) if per_step else (K, K)
    if pairwise.shape[-core:] != want:
        raise ValueError(f"{fn}: pairwise must end in {want} for unary of shape {unary.shape} "
                         f"(T = {T}, K = {K}), got shape {pairwise.shape}")
    batch = _batch_shape(fn, unary=unary.shape[:-2], pairwise=pairwise.shape[:-core])
    _check_scores(unary, "unary", fn)
    _check_scores(pairwise, "pairwise", fn)
    dtype = jnp.result_type(unary, pairwise)
    return (jnp.broadcast_to(unary, batch + unary.shape[-2:]).astype(dtype),
            jnp.broadcast_to(pairwise, batch + pairwise.shape[-core:]).astype(dtype), batch)


def _over_batch(fn: Callable, batch: tuple, *arrays):
    """fn on one chain, vmapped over the (already broadcast) leading ``batch`` axes."""
    n = len(batch)
    flat = [a.reshape((-1,) + a.shape[n:]) for a in arrays]
    out = jax.vmap(fn)(*flat)
    return jax.tree.map(lambda o: o.reshape(batch + o.shape[1:]), out)


# ----------------------------------------------------------------------------- CRF

def _crf_single(unary, pairwise):
    per_step = jnp.broadcast_to(pairwise, (unary.shape[0] - 1,) + pairwise.shape[-2:])
    return jax.grad(chain_log_partition, argnums=(0, 1))(unary, per_step)


def _hmm_single(initial, transition, ll):
    return chain_log_partition(*_hmm_as_crf(initial, transition, ll))


# The computations, compiled once per shape (the checks above run before, in Python). The batch
# axes are read off the scores (unary, log_likelihoods); every argument is already broadcast.
_crf_lp_core = jax.jit(lambda u, w: _over_batch(chain_log_partition, u.shape[:-2], u, w))
_crf_marg_core = jax.jit(lambda u, w: _over_batch(_crf_single, u.shape[:-2], u, w))
_lp_core = jax.jit(lambda i, a, l: _over_batch(_hmm_single, l.shape[:-2], i, a, l))
_marg_core = jax.jit(lambda i, a, l: _over_batch(
    lambda i_, a_, l_: jax.grad(_hmm_single, argnums=2)(i_, a_, l_), l.shape[:-2], i, a, l))
_pair_core = jax.jit(lambda i, a, l: _over_batch(
    lambda *x: _crf_single(*_hmm_as_crf(*x))[1], l.shape[:-2], i, a, l))


def crf_log_partition(unary, pairwise):
    """log Z of a linear-chain CRF:  log sum_z exp( sum_t unary[t, z_t]
    + sum_{t<T} pairwise[(t,) z_t, z_{t+1}] ).

    Forward algorithm in log space with normalised messages: O(T K^2) time; stable for any T.

    Args:
      unary: (..., T, K) scores of the states (finite or -inf).
      pairwise: (..., K, K) shared by every step, or (..., T-1, K, K) one table per step (read
        as per step exactly when it has one more axis than ``unary``).
    Returns:
      (...,) log Z, one per chain of the broadcast batch.
    """
    unary, pairwise, _ = _crf_inputs(unary, pairwise, "crf_log_partition")
    return _crf_lp_core(unary, pairwise)


def crf_marginals(unary, pairwise):
    """Marginals of a linear-chain CRF as gradients of log Z (shapes as :func:`crf_log_partition`).

    Returns:
      (node, edge): node (..., T, K) = d log Z / d unary = p(z_t = k), and edge
      (..., T-1, K, K) = d log Z / d pairwise_t = p(z_t = i, z_{t+1} = j) (per step, also when
      ``pairwise`` is shared).
    """
    unary, pairwise, _ = _crf_inputs(unary, pairwise, "crf_marginals")
    return _crf_marg_core(unary, pairwise)


# ----------------------------------------------------------------------------- HMM

def hmm_as_crf(initial, transition, log_likelihoods):
    """The HMM's posterior over z as a CRF: unary = log_likelihoods with log initial added at
    t = 1, pairwise = log transition (shared). Shapes as :func:`log_partition`; zero
    probabilities become -inf scores. Returns (unary (..., T, K), pairwise (..., K, K))."""
    initial, transition, ll, _ = _hmm_inputs(initial, transition, log_likelihoods, "hmm_as_crf")
    return _hmm_as_crf(initial, transition, ll)


def _hmm_as_crf(initial, transition, ll):
    return ll.at[..., 0, :].add(jnp.log(initial)), jnp.log(transition)


def log_partition(initial, transition, log_likelihoods):
    """log p(x_{1:T}) of an HMM: the forward algorithm in log space, messages normalised at
    every step (O(T K^2) time; in float64 accurate for T = 1e4 with log-likelihoods around -1e3).

        log p(x) = log sum_z p(z_1) prod_t p(z_{t+1} | z_t) prod_t p(x_t | z_t)

    Args:
      initial: (..., K) p(z_1 = k), non-negative, summing to one.
      transition: (..., K, K), ``transition[i, j] = p(z_{t+1} = j | z_t = i)``, rows sum to one.
      log_likelihoods: (..., T, K) log p(x_t | z_t = k), no NaN or +inf.
    Returns:
      (...,) log p(x), over the broadcast leading axes.
    Raises:
      ValueError naming the argument: wrong rank, mismatched K, batch axes that do not
      broadcast; on concrete inputs also negative or non-finite probabilities, rows or
      ``initial`` not summing to one, NaN/+inf log-likelihoods.

    At a zero probability ``jax.grad`` in ``initial`` or ``transition`` returns NaN, although the
    derivative of log p(x) there is finite (p(x) is a polynomial in the probabilities): the
    probabilities enter through their logarithm, and the chain rule divides the (zero) gradient
    in the log-probability by the zero probability. Differentiate in the log-probabilities, or
    through a recursion in the probabilities themselves (Chapter 5, section 5.6).
    """
    return _lp_core(*_hmm_inputs(initial, transition, log_likelihoods, "log_partition")[:3])


def marginals(initial, transition, log_likelihoods):
    """Posterior marginals p(z_t = k | x_{1:T}) = d log p(x) / d log_likelihoods[t, k], computed
    by jax.grad of the forward algorithm (reverse mode of the forward pass is the backward pass
    of forward-backward). Shapes as :func:`log_partition`; returns (..., T, K)."""
    return _marg_core(*_hmm_inputs(initial, transition, log_likelihoods, "marginals")[:3])


def pair_marginals(initial, transition, log_likelihoods):
    """p(z_t = i, z_{t+1} = j | x) = d log p(x) / d log A_t[i, j], the gradient with respect to
    a per-step copy A_t of log transition. Shapes as :func:`log_partition`; returns
    (..., T-1, K, K)."""
    return _pair_core(*_hmm_inputs(initial, transition, log_likelihoods, "pair_marginals")[:3])


# ----------------------------------------------------------------------------- exponential families

def categorical_log_partition(theta):
    """A(theta) = log sum_k exp(theta_k) along the last axis: the categorical distribution
    p(z = k) = exp(theta_k - A), the smallest exponential family (phi(z) = one-hot(z)). Its
    gradient is mu = softmax(theta), its Hessian diag(mu) - mu mu^T.
    theta (..., K) -> (...)."""
    theta = _as_float(theta, "theta", "categorical_log_partition")
    _need_rank(theta, 1, "theta", "(..., K)", "categorical_log_partition")
    _check_scores(theta, "theta", "categorical_log_partition")
    return safe_logsumexp(theta, axis=-1)[..., 0]


def hvp(log_partition_fn: Callable, theta, v):
    """Hessian-vector product (hess A)(theta) v = Cov[phi] v, forward over reverse:
    jax.jvp(jax.grad(A), (theta,), (v,)). Costs a small multiple of one gradient; never forms
    the Hessian. theta, v: the same shape (A scalar-valued) -> that shape."""
    return jax.jvp(jax.grad(log_partition_fn), (theta,), (v,))[1]


def hessian(log_partition_fn: Callable, theta):
    """The Hessian of A at a flat theta (d,), (d, d), as d Hessian-vector products (vmapped):
    for an exponential family, the covariance of the sufficient statistics."""
    theta = jnp.asarray(theta)
    if theta.ndim != 1:
        raise ValueError(f"hessian: theta must be a vector (d,), got shape {theta.shape}")
    return jax.vmap(lambda v: hvp(log_partition_fn, theta, v))(jnp.eye(theta.shape[0],
                                                                       dtype=theta.dtype))
