"""ift_lib.hmm against independent references: brute-force enumeration of every state sequence,
and a plain-numpy scaled forward-backward (Rabiner's), neither of which shares code with the
library. Float64 throughout."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ift_lib import hmm

jax.config.update("jax_enable_x64", True)


# ----------------------------------------------------------------------------- references

def brute_force_crf(unary, pairwise):
    """log Z, node marginals (T, K), edge marginals (T-1, K, K) by enumerating all K^T paths."""
    T, K = unary.shape
    pw = np.broadcast_to(pairwise, (T - 1, K, K)) if pairwise.ndim == 2 else pairwise
    paths = np.array(list(itertools.product(range(K), repeat=T)))
    scores = unary[np.arange(T), paths].sum(axis=1)
    if T > 1:
        scores = scores + pw[np.arange(T - 1), paths[:, :-1], paths[:, 1:]].sum(axis=1)
    top = scores.max()
    w = np.exp(scores - top)
    Z = w.sum()
    p = w / Z
    node = np.zeros((T, K))
    edge = np.zeros((T - 1, K, K))
    for t in range(T):
        np.add.at(node[t], paths[:, t], p)
    for t in range(T - 1):
        np.add.at(edge[t], (paths[:, t], paths[:, t + 1]), p)
    return np.log(Z) + top, node, edge, paths, p


def brute_force_hmm(initial, transition, ll):
    with np.errstate(divide="ignore"):
        unary = ll.copy()
        unary[0] += np.log(initial)
        return brute_force_crf(unary, np.log(transition))[:3]


def numpy_forward_backward(initial, transition, ll):
    """Scaled forward-backward in probability space (Rabiner 1989), each step's likelihoods
    divided by their maximum first: log p(x), marginals (T, K), pair marginals (T-1, K, K)."""
    T, K = ll.shape
    top = ll.max(axis=1, keepdims=True)
    e = np.exp(ll - top)
    alpha = np.zeros((T, K))
    c = np.zeros(T)
    a = initial * e[0]
    c[0] = a.sum()
    alpha[0] = a / c[0]
    for t in range(1, T):
        a = (alpha[t - 1] @ transition) * e[t]
        c[t] = a.sum()
        alpha[t] = a / c[t]
    beta = np.ones((T, K))
    for t in range(T - 2, -1, -1):
        beta[t] = transition @ (e[t + 1] * beta[t + 1]) / c[t + 1]
    gamma = alpha * beta
    xi = (alpha[:-1, :, None] * transition[None] * (e[1:] * beta[1:])[:, None, :]
          / c[1:, None, None])
    return np.sum(np.log(c)) + top.sum(), gamma, xi


def random_hmm(rng, K, T, batch=()):
    initial = rng.dirichlet(np.ones(K))
    transition = rng.dirichlet(np.ones(K), size=K)
    ll = rng.normal(size=batch + (T, K)) * 2.0
    return initial, transition, ll


# ----------------------------------------------------------------------------- HMM

@pytest.mark.parametrize("K,T", [(2, 1), (2, 5), (3, 4)])
def test_hmm_matches_brute_force_and_numpy_forward_backward(K, T):
    rng = np.random.default_rng(K * 10 + T)
    for _ in range(3):
        initial, transition, ll = random_hmm(rng, K, T)
        lz, node, edge = brute_force_hmm(initial, transition, ll)
        lz_fb, gamma, xi = numpy_forward_backward(initial, transition, ll)
        assert abs(lz - lz_fb) < 1e-12 and np.allclose(node, gamma, atol=1e-12)
        assert abs(float(hmm.log_partition(initial, transition, ll)) - lz) < 1e-10
        np.testing.assert_allclose(hmm.marginals(initial, transition, ll), node, atol=1e-10)
        pm = hmm.pair_marginals(initial, transition, ll)
        assert pm.shape == (T - 1, K, K)
        np.testing.assert_allclose(pm, edge, atol=1e-10)
        np.testing.assert_allclose(pm, xi, atol=1e-10)


def test_zero_probabilities_are_allowed_and_exact():
    initial = np.array([1.0, 0.0, 0.0])
    transition = np.array([[0.7, 0.3, 0.0], [0.0, 0.6, 0.4], [0.0, 0.0, 1.0]])   # left to right
    ll = np.random.default_rng(1).normal(size=(5, 3))
    lz, node, edge = brute_force_hmm(initial, transition, ll)
    assert abs(float(hmm.log_partition(initial, transition, ll)) - lz) < 1e-10
    m = hmm.marginals(initial, transition, ll)
    pm = hmm.pair_marginals(initial, transition, ll)
    assert np.all(np.isfinite(m)) and np.all(np.isfinite(pm))
    np.testing.assert_allclose(m, node, atol=1e-10)
    np.testing.assert_allclose(pm, edge, atol=1e-10)
    assert np.all(np.asarray(pm)[:, transition == 0] == 0)


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(2)
    initial, transition, ll = random_hmm(rng, 3, 4)
    f = lambda l: hmm.log_partition(initial, transition, l)
    h = 1e-6
    fd = np.zeros_like(ll)
    for idx in np.ndindex(ll.shape):
        e = np.zeros_like(ll)
        e[idx] = h
        fd[idx] = (float(f(ll + e)) - float(f(ll - e))) / (2 * h)
    np.testing.assert_allclose(jax.grad(f)(ll), fd, atol=1e-8)
    np.testing.assert_allclose(hmm.marginals(initial, transition, ll), fd, atol=1e-8)
    # derivative in the transition probabilities themselves (all positive here)
    # (a perturbed row no longer sums to one: jit, where values are not checked)
    g = jax.grad(lambda a: hmm.log_partition(initial, a, ll))(transition)
    i, j = 1, 2
    e = np.zeros_like(transition)
    e[i, j] = h
    lp = jax.jit(hmm.log_partition)
    fd_a = (float(lp(initial, transition + e, ll)) - float(lp(initial, transition - e, ll))) / (2 * h)
    assert abs(float(g[i, j]) - fd_a) < 1e-7
    # ... which is the expected number of i -> j transitions divided by transition[i, j]
    pm = hmm.pair_marginals(initial, transition, ll)
    np.testing.assert_allclose(g, pm.sum(axis=0) / transition, rtol=1e-10)


def test_long_sequence_is_stable():
    rng = np.random.default_rng(3)
    K, T = 3, 10_000
    initial, transition, _ = random_hmm(rng, K, 1)
    ll = -1000.0 + 5.0 * rng.normal(size=(T, K))
    lz = float(hmm.log_partition(initial, transition, ll))
    m = np.asarray(hmm.marginals(initial, transition, ll))
    assert np.isfinite(lz) and np.all(np.isfinite(m))
    assert np.max(np.abs(m.sum(axis=1) - 1)) < 1e-10
    lz_fb, gamma, _ = numpy_forward_backward(initial, transition, ll)
    assert abs(lz - lz_fb) <= 1e-12 * abs(lz_fb)          # |log p(x)| ~ 1e7: relative accuracy
    assert np.max(np.abs(m - gamma)) < 1e-10
    # the same with probabilities: the unnormalised product underflows at once
    assert np.prod(np.exp(ll[:1].max(axis=1))) == 0.0


def test_batch_axes_broadcast():
    rng = np.random.default_rng(4)
    initial, transition, ll = random_hmm(rng, 3, 4, batch=(2, 3))
    lz = hmm.log_partition(initial, transition, ll)
    m = hmm.marginals(initial, transition, ll)
    pm = hmm.pair_marginals(initial, transition, ll)
    assert lz.shape == (2, 3) and m.shape == (2, 3, 4, 3) and pm.shape == (2, 3, 3, 3, 3)
    for b in np.ndindex(2, 3):
        ref, node, edge = brute_force_hmm(initial, transition, ll[b])
        assert abs(float(lz[b]) - ref) < 1e-10
        np.testing.assert_allclose(m[b], node, atol=1e-10)
        np.testing.assert_allclose(pm[b], edge, atol=1e-10)
    # a batch of transition matrices against one sequence
    trans_b = rng.dirichlet(np.ones(3), size=(2, 3))
    lz_b = hmm.log_partition(initial, trans_b, ll[0, 0])
    assert lz_b.shape == (2,)
    for b in range(2):
        assert abs(float(lz_b[b]) - brute_force_hmm(initial, trans_b[b], ll[0, 0])[0]) < 1e-10


def test_jit_vmap_and_grad_compose():
    rng = np.random.default_rng(5)
    initial, transition, ll = random_hmm(rng, 3, 4, batch=(2,))
    eager = hmm.marginals(initial, transition, ll)
    np.testing.assert_allclose(jax.jit(hmm.marginals)(initial, transition, ll), eager, atol=1e-14)
    by_vmap = jax.vmap(hmm.marginals, in_axes=(None, None, 0))(initial, transition, ll)
    np.testing.assert_allclose(by_vmap, eager, atol=1e-14)
    by_grad = jax.grad(lambda l: hmm.log_partition(initial, transition, l).sum())(ll)
    np.testing.assert_allclose(by_grad, eager, atol=1e-14)


# ----------------------------------------------------------------------------- CRF

@pytest.mark.parametrize("per_step", [False, True])
def test_crf_matches_brute_force(per_step):
    rng = np.random.default_rng(6 + per_step)
    T, K = 4, 3
    unary = rng.normal(size=(T, K))
    pairwise = rng.normal(size=(T - 1, K, K) if per_step else (K, K))
    lz, node, edge, _, _ = brute_force_crf(unary, pairwise)
    assert abs(float(hmm.crf_log_partition(unary, pairwise)) - lz) < 1e-10
    n, e = hmm.crf_marginals(unary, pairwise)
    np.testing.assert_allclose(n, node, atol=1e-10)
    np.testing.assert_allclose(e, edge, atol=1e-10)
    np.testing.assert_allclose(np.asarray(e).sum(axis=2), n[:-1], atol=1e-12)   # consistency
    np.testing.assert_allclose(np.asarray(e).sum(axis=1), n[1:], atol=1e-12)


def test_hmm_is_the_crf_of_its_posterior():
    rng = np.random.default_rng(8)
    initial, transition, ll = random_hmm(rng, 3, 4)
    unary, pairwise = hmm.hmm_as_crf(initial, transition, ll)
    assert abs(float(hmm.crf_log_partition(unary, pairwise))
               - float(hmm.log_partition(initial, transition, ll))) < 1e-12
    n, e = hmm.crf_marginals(unary, pairwise)
    np.testing.assert_allclose(n, hmm.marginals(initial, transition, ll), atol=1e-12)
    np.testing.assert_allclose(e, hmm.pair_marginals(initial, transition, ll), atol=1e-12)


# ----------------------------------------------------------------------------- exponential families

def test_categorical_gradient_is_softmax_and_hessian_is_covariance():
    theta = jnp.array([1.0, 2.0, 0.5, -1.0])
    z = jax.nn.softmax(theta)
    np.testing.assert_allclose(jax.grad(hmm.categorical_log_partition)(theta), z, rtol=1e-14)
    H = jax.jit(lambda t: hmm.hessian(hmm.categorical_log_partition, t))(theta)
    np.testing.assert_allclose(H, jnp.diag(z) - jnp.outer(z, z), atol=1e-15)
    v = jnp.array([0.3, -1.0, 0.2, 0.7])
    np.testing.assert_allclose(hmm.hvp(hmm.categorical_log_partition, theta, v), H @ v, atol=1e-15)
    assert abs(float(hmm.categorical_log_partition(jnp.array([-1000.0, -1000.0]))) + 1000
               - np.log(2)) < 1e-12


def test_crf_hessian_is_covariance_of_sufficient_statistics():
    rng = np.random.default_rng(9)
    T, K = 3, 2
    unary = rng.normal(size=(T, K))
    pairwise = rng.normal(size=(T - 1, K, K))
    split = T * K

    def A(theta):
        return hmm.crf_log_partition(theta[:split].reshape(T, K),
                                     theta[split:].reshape(T - 1, K, K))

    theta = jnp.concatenate([unary.ravel(), pairwise.ravel()])
    _, _, _, paths, p = brute_force_crf(unary, pairwise)
    phi = np.zeros((len(paths), theta.shape[0]))         # indicators of states and of pairs
    for n, z in enumerate(paths):
        phi[n, np.arange(T) * K + z] = 1
        phi[n, split + np.arange(T - 1) * K * K + z[:-1] * K + z[1:]] = 1
    mu = p @ phi
    cov = (phi - mu).T @ ((phi - mu) * p[:, None])
    np.testing.assert_allclose(jax.grad(A)(theta), mu, atol=1e-12)
    np.testing.assert_allclose(jax.jit(lambda t: hmm.hessian(A, t))(theta), cov, atol=1e-12)


# ----------------------------------------------------------------------------- bad input

GOOD_INIT = np.array([0.5, 0.5])
GOOD_TRANS = np.array([[0.9, 0.1], [0.2, 0.8]])
GOOD_LL = np.zeros((3, 2))


@pytest.mark.parametrize("args,match", [
    ((GOOD_INIT, np.array([[0.9, 0.2], [0.2, 0.8]]), GOOD_LL), "rows of the transition.*transition"),
    ((GOOD_INIT, np.array([[1.1, -0.1], [0.2, 0.8]]), GOOD_LL), "transition has negative"),
    ((np.array([-0.5, 1.5]), GOOD_TRANS, GOOD_LL), "initial has negative"),
    ((np.array([0.5, 0.6]), GOOD_TRANS, GOOD_LL), "initial probabilities do not sum"),
    ((np.array([0.5, np.nan]), GOOD_TRANS, GOOD_LL), "initial contains NaN"),
    ((np.ones(3) / 3, GOOD_TRANS, GOOD_LL), "mismatched number of states K"),
    ((GOOD_INIT, GOOD_TRANS, np.zeros((3, 3))), "mismatched number of states K"),
    ((GOOD_INIT, np.ones((2, 3)) / 3, GOOD_LL), "transition must be square"),
    ((GOOD_INIT, GOOD_TRANS, np.zeros(2)), r"log_likelihoods must have shape \(\.\.\., T, K\)"),
    ((0.5, GOOD_TRANS, GOOD_LL), r"initial must have shape"),
    ((GOOD_INIT, np.array([0.5, 0.5]), GOOD_LL), r"transition must have shape"),
    ((GOOD_INIT, GOOD_TRANS, np.zeros((0, 2))), "log_likelihoods needs T >= 1"),
    ((GOOD_INIT, GOOD_TRANS, np.array([[0.0, np.nan]] * 3)), "log_likelihoods contains 3 NaN"),
    ((GOOD_INIT, GOOD_TRANS, np.array([[0.0, np.inf]])), "log_likelihoods contains 1 NaN or \\+inf"),
    ((np.full((2, 2), 0.5), GOOD_TRANS, np.zeros((3, 3, 2))), "batch.*initial"),
])
def test_bad_hmm_input_raises_naming_the_argument(args, match):
    for fn in (hmm.log_partition, hmm.marginals, hmm.pair_marginals):
        with pytest.raises(ValueError, match=match):
            fn(*args)


def test_bad_crf_input_raises_naming_the_argument():
    with pytest.raises(ValueError, match=r"pairwise must end in \(2, 2\)"):
        hmm.crf_log_partition(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"pairwise must end in \(2, 2, 2\)"):
        hmm.crf_marginals(np.zeros((3, 2)), np.zeros((3, 2, 2)))
    with pytest.raises(ValueError, match="unary contains 1 NaN"):
        hmm.crf_log_partition(np.array([[0.0, np.nan]]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="pairwise contains"):
        hmm.crf_log_partition(np.zeros((3, 2)), np.full((2, 2), np.inf))
    with pytest.raises(ValueError, match="unary must have shape"):
        hmm.crf_log_partition(np.zeros(2), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="theta"):
        hmm.categorical_log_partition(jnp.array([0.0, jnp.nan]))


def test_checks_do_not_break_tracing():
    # under jit the values are unknown: only shapes are checked, and the computation compiles
    bad_rows = np.array([[0.9, 0.2], [0.2, 0.8]])
    out = jax.jit(hmm.log_partition)(GOOD_INIT, bad_rows, GOOD_LL)
    assert np.isfinite(float(out))
    with pytest.raises(ValueError, match="mismatched number of states K"):
        jax.jit(hmm.log_partition)(np.ones(3) / 3, GOOD_TRANS, GOOD_LL)
