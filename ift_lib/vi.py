"""Chapter 5b: semi-amortized variational inference (SAVI), and what the IFT says about it.

Model (d latent, D observed dimensions):  z ~ N(0, I_d),  x | z ~ N(MLP_theta(z), gamma I_D).
Variational family q(z) = N(m, diag(exp(logv))), parameters lam = concat(m, logv), shape (2d,).
With S fixed noise draws eps (S, d) and z_s = m + exp(logv / 2) * eps_s, the per-example ELBO

    ELBO(lam, theta, x) = 1/S sum_s log N(x; MLP_theta(z_s), gamma I)
                          + 1/2 sum_j (1 + logv_j - m_j^2 - exp(logv_j))          (= -KL(q || p))

is a deterministic smooth function of lam (the inner problem). SAVI starts from the encoder's
lam_0 = g_phi(x) and takes K gradient-ascent steps  lam_{k+1} = lam_k + eta grad_lam ELBO.
:func:`refine` returns the inner optimum lam* with ``ift_lib.custom_root`` on the optimality
condition

    F(lam, theta, x, eps, gamma) = grad_lam ELBO(lam, theta, x, eps, gamma) = 0,

which does not involve lam_0: by the IFT d lam*/d lam_0 = 0, and d ELBO(lam*(theta), theta)/d theta
= d_theta ELBO (the envelope theorem). How encoder and decoder are trained is a choice
(``METHODS``, see :func:`loss`); :func:`train` runs one on a synthetic data set.
"""
from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ift_lib._checks import is_concrete
from ift_lib.implicit import custom_root
from ift_lib.linear_solve import Dense, LinearSolver

Params = list  # [(W (n_in, n_out), b (n_out,)), ...]

__all__ = ["init_mlp", "mlp", "split", "elbo", "elbo_grad", "inner_steps", "solve_inner",
           "refine", "gaussian_kl", "reconstruction_loss", "Dataset", "make_dataset",
           "METHODS", "loss", "train", "evaluate"]


# ------------------------------------------------------------------------------------ the model

def init_mlp(key, sizes) -> Params:
    """Weights of an MLP with layer widths ``sizes`` (n_0, ..., n_L): W_l ~ N(0, 1/n_{l-1}),
    b_l = 0. Returns a list of L pairs (W (n_{l-1}, n_l), b (n_l,))."""
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"sizes must list at least two positive widths, got {sizes!r}")
    keys = jax.random.split(key, len(sizes) - 1)
    return [(jax.random.normal(k, (a, b)) / math.sqrt(a), jnp.zeros(b))
            for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def mlp(params: Params, z):
    """MLP(z): tanh between layers, linear output. z (..., n_0) -> (..., n_L)."""
    for W, b in params[:-1]:
        z = jnp.tanh(z @ W + b)
    W, b = params[-1]
    return z @ W + b


def split(lam):
    """lam (2d,) -> (m (d,), logv (d,))."""
    d = lam.shape[-1] // 2
    return lam[..., :d], lam[..., d:]


def _check(lam, theta, x, eps, gamma) -> None:
    """ValueError naming the first argument whose shape does not fit the others."""
    if jnp.ndim(lam) != 1 or jnp.shape(lam)[0] % 2:
        raise ValueError(f"lam must have shape (2d,) = concat(m, logv), got shape {jnp.shape(lam)}")
    d = jnp.shape(lam)[0] // 2
    if jnp.ndim(eps) != 2 or jnp.shape(eps)[1] != d:
        raise ValueError(f"eps must have shape (S, d) = (S, {d}), got shape {jnp.shape(eps)}")
    n_in, n_out = jnp.shape(theta[0][0])[0], jnp.shape(theta[-1][0])[1]
    if n_in != d:
        raise ValueError(f"theta (the decoder) takes inputs of size {n_in}, but lam has d = {d}")
    if jnp.shape(x) != (n_out,):
        raise ValueError(f"x must have shape (D,) = ({n_out},) (the decoder's output), got shape "
                         f"{jnp.shape(x)}")
    _check_gamma(gamma)


def _check_gamma(gamma) -> None:
    if jnp.ndim(gamma) != 0:
        raise ValueError(f"gamma must be a scalar, got shape {jnp.shape(gamma)}")
    if is_concrete(gamma) and not float(gamma) > 0:
        raise ValueError(f"gamma (the observation variance) must be > 0, got {float(gamma)}")


def elbo(lam, theta: Params, x, eps, gamma):
    """The per-example ELBO (a scalar), equation in the module docstring.

    Args:
      lam: (2d,) variational parameters concat(m, logv).
      theta: decoder MLP weights (input size d, output size D).
      x: (D,) one observation.
      eps: (S, d) fixed standard-normal draws (the reparameterization noise).
      gamma: scalar > 0, the observation variance.
    Returns:
      a scalar: for random eps an unbiased estimate of the ELBO, a lower bound on log p(x).
    """
    _check(lam, theta, x, eps, gamma)
    m, logv = split(lam)
    z = m + jnp.exp(0.5 * logv) * eps                                   # (S, d)
    r = x - mlp(theta, z)                                               # (S, D)
    D = x.shape[0]
    loglik = -0.5 * D * jnp.log(2 * jnp.pi * gamma) - 0.5 * jnp.sum(r * r, -1) / gamma
    return jnp.mean(loglik) + 0.5 * jnp.sum(1.0 + logv - m * m - jnp.exp(logv))


def elbo_grad(lam, theta: Params, x, eps, gamma):
    """F = grad_lam ELBO, shape (2d,): the inner problem's optimality condition F = 0."""
    return jax.grad(elbo)(lam, theta, x, eps, gamma)


# ---------------------------------------------------------------------------- the inner loop

def inner_steps(lam0, theta: Params, x, eps, gamma, *, step: float, num_steps: int):
    """lam_K after K gradient-ascent steps lam_{k+1} = lam_k + step * F(lam_k), by lax.scan.

    Differentiable by unrolling (reverse mode stores the K iterates). Shape (2d,).
    """
    _check(lam0, theta, x, eps, gamma)
    K = _count(num_steps, "num_steps")
    body = lambda lam, _: (lam + step * elbo_grad(lam, theta, x, eps, gamma), None)
    return jax.lax.scan(body, lam0, None, length=K)[0]


def _count(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def solve_inner(lam0, theta: Params, x, eps, gamma, *, num_steps: int = 30):
    """An inner optimum by ``num_steps`` safeguarded Newton steps (not meant to be
    differentiated: see :func:`refine`). Shape (2d,).

    Each step goes along d = |H|^{-1} F, with H = V diag(mu) V^T the (2d, 2d) Hessian of the
    ELBO and |H| = V diag(max(|mu|, 1e-6 (1 + max|mu|))) V^T: Newton's step where H is negative
    definite, an ascent direction everywhere. It takes the longest of the lengths 1, 1/2, ...,
    2^-19 that raises the ELBO (or the full step, if it halves max |F| while lowering the ELBO
    by at most 1e-12 (1 + |ELBO|), i.e. at rounding level); if none does, it stays. So
    ELBO(result) >= ELBO(lam0) up to rounding, and near a strict maximum the steps are
    Newton's (quadratic convergence)."""
    _check(lam0, theta, x, eps, gamma)
    return _solve_inner(lam0, theta, x, eps, gamma, _count(num_steps, "num_steps"))


_LENGTHS = 2.0 ** -np.arange(20)


@functools.partial(jax.jit, static_argnums=(5,))
def _solve_inner(lam0, theta, x, eps, gamma, num_steps):
    f = lambda l: elbo(l, theta, x, eps, gamma)

    def newton(_, lam):
        g, H = jax.grad(f)(lam), jax.hessian(f)(lam)
        mu, V = jnp.linalg.eigh(0.5 * (H + H.T))
        direction = V @ ((V.T @ g) / jnp.maximum(jnp.abs(mu), 1e-6 * (1 + jnp.max(jnp.abs(mu)))))
        trial = lam + _LENGTHS[:, None] * direction                    # (20, 2d)
        f0 = f(lam)
        gain = jax.vmap(f)(trial) - f0
        # near the optimum the gain drowns in rounding: accept a full step that halves |F| instead
        smaller = jnp.max(jnp.abs(jax.grad(f)(trial[0]))) < 0.5 * jnp.max(jnp.abs(g))
        rounding = (gain[0] > -1e-12 * (1 + jnp.abs(f0))) & smaller
        good = jnp.isfinite(gain) & ((gain > 0) | ((jnp.arange(gain.size) == 0) & rounding))
        best = jnp.argmax(good)                                         # the longest good step
        return jnp.where(good[best], trial[best], lam)

    return jax.lax.fori_loop(0, num_steps, newton, lam0)


def refine(lam0, theta: Params, x, eps, gamma, *, num_steps: int = 30,
           solve: LinearSolver | str = Dense(), **root_options):
    """lam* = argmax_lam ELBO from lam0 (:func:`solve_inner`), differentiated by the IFT:

        d lam* = -H^{-1} (dF/dtheta dtheta + dF/dx dx + dF/dgamma dgamma),   d lam*/d lam0 = 0,

    H = dF/dlam at lam* (negative definite at a strict maximum), one linear solve by ``solve``
    (a value of ift_lib.linear_solve: Dense(), GMRES(...), ...). ``root_options`` go to
    ``custom_root`` (residual_tol, rank_rtol, ...); it raises IFTConditionError where the
    result is not a root of F or H is singular. Jit the caller: eager, every op compiles alone.
    Shape (2d,)."""
    _check(lam0, theta, x, eps, gamma)
    K = _count(num_steps, "num_steps")
    solver = lambda init, th, x_, e, g: _solve_inner(init, th, x_, e, g, K)
    return custom_root(elbo_grad, solve=solve, **root_options)(solver)(lam0, theta, x, eps, gamma)


def gaussian_kl(lam_p, lam_q):
    """KL(N(m_p, diag e^{logv_p}) || N(m_q, diag e^{logv_q})), a scalar; lam_p, lam_q (2d,)."""
    (mp, lp), (mq, lq) = split(lam_p), split(lam_q)
    return 0.5 * jnp.sum(lq - lp + (jnp.exp(lp) + (mp - mq) ** 2) / jnp.exp(lq) - 1.0)


def reconstruction_loss(lam, theta: Params, x):
    """A downstream loss of the variational parameters: |x - MLP_theta(m)|^2 / D at the mean m."""
    r = x - mlp(theta, split(lam)[0])
    return jnp.mean(r * r)


# ------------------------------------------------------------------------------------ training

class Dataset(NamedTuple):
    """x (N, D) observations, eps (N, S, d) each example's fixed noise, gamma the variance."""
    x: Any
    eps: Any
    gamma: Any


def make_dataset(seed: int, n: int, *, true_theta: Params, gamma: float, num_samples: int):
    """n draws x = MLP_true(z) + sqrt(gamma) noise, z ~ N(0, I_d), with eps (n, S, d) for each.
    numpy's generator: the data depend on the seed only."""
    rng = np.random.default_rng(seed)
    d = true_theta[0][0].shape[0]
    z = rng.standard_normal((n, d))
    mean = np.asarray(mlp(true_theta, jnp.asarray(z)))
    x = mean + math.sqrt(gamma) * rng.standard_normal(mean.shape)
    eps = rng.standard_normal((n, num_samples, d))
    return Dataset(jnp.asarray(x), jnp.asarray(eps), jnp.asarray(gamma, jnp.float64))


#: Training objectives (negative, averaged over a batch) for encoder phi and decoder theta:
#:   "amortized"  VAE: ELBO(lam_0, theta), lam_0 = g_phi(x); both by backprop.
#:   "unrolled"   SA-VAE (Kim et al. 2018): ELBO(lam_K, theta), backprop through K ascent steps;
#:                the encoder's gradient exists only because the loop is truncated.
#:   "ift-elbo"   decoder: ELBO(lam*, theta), lam* = refine(lam_0) (IFT; the envelope theorem);
#:                encoder: ELBO(lam_0, theta) with theta held fixed in that term.
#:   "ift-kl"     decoder as "ift-elbo"; encoder: KL(q_{lam*} || q_{lam_0}) with lam* fixed.
METHODS = ("amortized", "unrolled", "ift-elbo", "ift-kl")


def loss(params, data: Dataset, *, method: str, step: float, num_steps: int,
         newton_steps: int = 25):
    """The training loss of ``method`` (see :data:`METHODS`) on a batch; params = (phi, theta).

    ``num_steps`` (K) and ``step`` (eta) are the ascent steps of "unrolled"; ``newton_steps``
    the iterations of :func:`refine` for "ift-*"."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    phi, theta = params
    lam0 = mlp(phi, data.x)                                             # (N, 2d)
    batch_elbo = jax.vmap(elbo, in_axes=(0, None, 0, 0, None))
    if method == "amortized":
        return -jnp.mean(batch_elbo(lam0, theta, data.x, data.eps, data.gamma))
    if method == "unrolled":
        lamK = jax.vmap(lambda l, x, e: inner_steps(l, theta, x, e, data.gamma, step=step,
                                                    num_steps=num_steps))(lam0, data.x, data.eps)
        return -jnp.mean(batch_elbo(lamK, theta, data.x, data.eps, data.gamma))
    lam_star = jax.vmap(lambda l, x, e: refine(l, theta, x, e, data.gamma,
                                               num_steps=newton_steps))(
        jax.lax.stop_gradient(lam0), data.x, data.eps)
    decoder = -jnp.mean(batch_elbo(lam_star, theta, data.x, data.eps, data.gamma))
    if method == "ift-elbo":
        th = jax.lax.stop_gradient(theta)
        encoder = -jnp.mean(batch_elbo(lam0, th, data.x, data.eps, data.gamma))
    else:
        encoder = jnp.mean(jax.vmap(gaussian_kl)(jax.lax.stop_gradient(lam_star), lam0))
    return decoder + encoder


def evaluate(params, data: Dataset, *, num_steps: int = 30):
    """Per-example (ELBO(lam_0), ELBO(lam*)), each (N,): the amortized and the refined ELBO;
    their difference is the amortization gap."""
    phi, theta = params
    lam0 = mlp(phi, data.x)
    lam_star = jax.vmap(lambda l, x, e: solve_inner(l, theta, x, e, data.gamma,
                                                    num_steps=num_steps))(lam0, data.x, data.eps)
    f = jax.vmap(elbo, in_axes=(0, None, 0, 0, None))
    return f(lam0, theta, data.x, data.eps, data.gamma), f(lam_star, theta, data.x, data.eps,
                                                           data.gamma)


def train(params, data: Dataset, *, method: str, num_epochs: int, learning_rate: float = 1e-2,
          step: float = 0.05, num_steps: int = 5, newton_steps: int = 25,
          eval_every: int = 10):
    """Full-batch Adam on :func:`loss` for ``num_epochs`` steps (jit-compiled, deterministic).

    Returns (params, history): history is a dict of arrays over the evaluations (every
    ``eval_every`` epochs and at the end): "epoch", "elbo_amortized", "elbo_refined" (means over
    the data of :func:`evaluate`)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    T = _count(num_epochs, "num_epochs")
    _check_gamma(data.gamma)   # data is an argument of the compiled steps: check its value here
    opts = (("method", method), ("step", step), ("num_steps", num_steps),
            ("newton_steps", newton_steps))
    try:
        hash(opts)
    except TypeError:          # e.g. step given as an array: compiled for this call only
        opts = _Unhashed(opts)
    zeros = jax.tree.map(jnp.zeros_like, params)
    state, hist = (zeros, zeros), {"epoch": [], "elbo_amortized": [], "elbo_refined": []}
    for t in range(T + 1):
        if t % eval_every == 0 or t == T:
            a, r = _score(params, data, newton_steps)
            hist["epoch"].append(t)
            hist["elbo_amortized"].append(float(a))
            hist["elbo_refined"].append(float(r))
        if t < T:
            params, state = _adam_update(params, state, jnp.asarray(t + 1.0), data, opts,
                                         learning_rate)
    return params, {k: np.asarray(v) for k, v in hist.items()}


# train's two steps, compiled once per (options, shapes) and reused by every call of train
# (defined inside train they were compiled again for each call)
_ADAM = (0.9, 0.999, 1e-8)   # b1, b2, tiny


class _Unhashed:
    """Options that cannot be hashed, as a static argument hashed by identity."""

    def __init__(self, pairs):
        self.pairs = pairs

    def __iter__(self):
        return iter(self.pairs)


@functools.partial(jax.jit, static_argnums=(4,))
def _adam_update(params, state, t, data, opts, learning_rate):
    """One full-batch Adam step on :func:`loss` (``opts``: its keyword options, as pairs)."""
    b1, b2, tiny = _ADAM
    g = jax.grad(loss)(params, data, **dict(opts))
    mu, nu = state
    mu = jax.tree.map(lambda a, b: b1 * a + (1 - b1) * b, mu, g)
    nu = jax.tree.map(lambda a, b: b2 * a + (1 - b2) * b * b, nu, g)
    lr = learning_rate * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    params = jax.tree.map(lambda p, a, b: p - lr * a / (jnp.sqrt(b) + tiny), params, mu, nu)
    return params, (mu, nu)


@functools.partial(jax.jit, static_argnums=(2,))
def _score(params, data, newton_steps):
    """The means of :func:`evaluate`'s amortized and refined ELBOs."""
    return tuple(jnp.mean(e) for e in evaluate(params, data, num_steps=newton_steps))
