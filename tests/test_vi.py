"""ift_lib.vi: the SAVI inner problem and what the IFT says about its derivatives."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from ift_lib import vi

EPS_1D = jnp.array([[-1.0], [1.0]])   # mean 0, mean square 1: the ELBO of a linear decoder is exact


def linear_1d(a=1.5, b=0.3):
    return [(jnp.array([[a]]), jnp.array([b]))]


def closed_form_1d(a, b, x, gamma):
    """The exact posterior of z ~ N(0,1), x | z ~ N(a z + b, gamma), and log p(x)."""
    m = a * (x - b) / (a * a + gamma)
    v = gamma / (a * a + gamma)
    s2 = a * a + gamma
    return jnp.array([m, jnp.log(v)]), -0.5 * jnp.log(2 * jnp.pi * s2) - 0.5 * (x - b) ** 2 / s2


def small_problem(seed=0, d=2, D=3, H=5, S=3):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    theta = vi.init_mlp(k1, (d, H, D))
    x = jax.random.normal(k2, (D,))
    eps = jax.random.normal(k3, (S, d))
    return theta, x, eps, jnp.asarray(0.5), jnp.zeros(2 * d)


def test_closed_form_1d_optimum_evidence_and_envelope():
    a, b, x, gamma = 1.5, 0.3, 1.2, 0.4
    theta, xv = linear_1d(a, b), jnp.array([x])
    lam_exact, log_px = closed_form_1d(a, b, x, gamma)
    lam0 = jnp.array([0.7, -0.2])
    lam = jax.jit(lambda l, th: vi.refine(l, th, xv, EPS_1D, gamma))(lam0, theta)
    np.testing.assert_allclose(lam, lam_exact, atol=1e-12)
    np.testing.assert_allclose(vi.elbo(lam, theta, xv, EPS_1D, gamma), log_px, atol=1e-12)
    # d ELBO(lam*(a), a)/da = d log p(x)/da (envelope theorem + exact posterior)
    star = jax.jit(jax.grad(lambda a_: vi.elbo(vi.refine(lam0, linear_1d(a_, b), xv, EPS_1D, gamma),
                                               linear_1d(a_, b), xv, EPS_1D, gamma)))(a)
    evidence = jax.grad(lambda a_: closed_form_1d(a_, b, x, gamma)[1])(a)
    np.testing.assert_allclose(star, evidence, rtol=1e-10)
    J = jax.jit(jax.jacobian(lambda l: vi.refine(l, theta, xv, EPS_1D, gamma)))(lam0)
    assert np.all(np.asarray(J) == 0.0)


def test_encoder_jacobian_is_zero_by_ift_and_decays_when_unrolled():
    theta, x, eps, gamma, lam0 = small_problem()
    J = jax.jit(jax.jacobian(lambda l: vi.refine(l, theta, x, eps, gamma)))(lam0)
    assert np.all(np.asarray(J) == 0.0)
    norms = [np.linalg.norm(jax.jit(jax.jacobian(lambda l: vi.inner_steps(
        l, theta, x, eps, gamma, step=0.1, num_steps=K)))(lam0), 2) for K in (10, 3000)]
    assert norms[1] < 1e-6 < norms[0]


def test_envelope_identity_and_unrolled_gradient_at_convergence():
    theta, x, eps, gamma, lam0 = small_problem()
    f_ift = jax.jit(jax.grad(lambda th: vi.elbo(vi.refine(lam0, th, x, eps, gamma), th, x, eps,
                                                gamma)))
    lam_star = jax.jit(vi.solve_inner)(lam0, theta, x, eps, gamma)
    envelope = jax.grad(vi.elbo, argnums=1)(lam_star, theta, x, eps, gamma)
    unrolled = jax.jit(jax.grad(lambda th: vi.elbo(
        vi.inner_steps(lam0, th, x, eps, gamma, step=0.1, num_steps=3000), th, x, eps, gamma)))
    g_ift, g_env, g_unr = (ravel_pytree(g)[0] for g in (f_ift(theta), envelope, unrolled(theta)))
    np.testing.assert_allclose(g_ift, g_env, atol=1e-10)
    np.testing.assert_allclose(g_unr, g_env, atol=1e-8)


def test_downstream_loss_gradient_matches_finite_differences_and_unrolled():
    theta, x, eps, gamma, lam0 = small_problem(seed=1)
    down = lambda th, g: vi.reconstruction_loss(vi.refine(lam0, th, x, eps, g), th, x)
    g_th, g_gamma = jax.jit(jax.grad(down, argnums=(0, 1)))(theta, gamma)
    f = jax.jit(down)
    h = 1e-5
    fd_gamma = (f(theta, gamma + h) - f(theta, gamma - h)) / (2 * h)
    np.testing.assert_allclose(g_gamma, fd_gamma, rtol=1e-6)
    flat, unravel = ravel_pytree(theta)
    u = jax.random.normal(jax.random.PRNGKey(5), flat.shape)
    fd_dir = (f(unravel(flat + h * u), gamma) - f(unravel(flat - h * u), gamma)) / (2 * h)
    np.testing.assert_allclose(ravel_pytree(g_th)[0] @ u, fd_dir, rtol=1e-6)
    unr = jax.jit(jax.grad(lambda g: vi.reconstruction_loss(vi.inner_steps(
        lam0, theta, x, eps, g, step=0.1, num_steps=3000), theta, x)))(gamma)
    np.testing.assert_allclose(unr, g_gamma, rtol=1e-8)
    # the implicit term (through lam*) is not negligible here
    lam_star = jax.jit(vi.solve_inner)(lam0, theta, x, eps, gamma)
    explicit = ravel_pytree(jax.grad(lambda th: vi.reconstruction_loss(lam_star, th, x))(theta))[0]
    total = ravel_pytree(g_th)[0]
    assert np.linalg.norm(total - explicit) > 0.05 * np.linalg.norm(total)


def test_unconverged_point_is_refused():
    theta, x, eps, gamma, lam0 = small_problem()
    f = jax.jit(jax.grad(lambda th: vi.elbo(vi.refine(lam0, th, x, eps, gamma, num_steps=1), th,
                                            x, eps, gamma)))
    with pytest.raises(Exception, match="condition 1"):
        jax.block_until_ready(f(theta))


def test_refined_elbo_at_least_amortized_and_training_methods_run():
    true = vi.init_mlp(jax.random.PRNGKey(0), (2, 5, 3))
    data = vi.make_dataset(0, 16, true_theta=true, gamma=0.5, num_samples=3)
    params = (vi.init_mlp(jax.random.PRNGKey(1), (3, 4, 4)),
              vi.init_mlp(jax.random.PRNGKey(2), (2, 5, 3)))
    a, r = jax.jit(vi.evaluate)(params, data)
    assert np.all(np.asarray(r) >= np.asarray(a))
    for method in vi.METHODS:
        value = jax.jit(lambda p: vi.loss(p, data, method=method, step=0.05, num_steps=3))(params)
        assert np.isfinite(float(value)), method
    _, hist = vi.train(params, data, method="amortized", num_epochs=2, eval_every=2)
    assert np.all(np.isfinite(hist["elbo_refined"])) and hist["epoch"].tolist() == [0, 2]


def test_bad_inputs_name_the_argument():
    theta, x, eps, gamma, lam0 = small_problem()
    with pytest.raises(ValueError, match="lam"):
        vi.elbo(jnp.zeros(3), theta, x, eps, gamma)
    with pytest.raises(ValueError, match="eps"):
        vi.elbo(lam0, theta, x, jnp.zeros((3, 5)), gamma)
    with pytest.raises(ValueError, match="x must"):
        vi.elbo(lam0, theta, jnp.zeros(4), eps, gamma)
    with pytest.raises(ValueError, match="gamma"):
        vi.elbo(lam0, theta, x, eps, -1.0)
    with pytest.raises(ValueError, match="theta"):
        vi.elbo(jnp.zeros(6), theta, x, jnp.zeros((3, 3)), gamma)
    with pytest.raises(ValueError, match="num_steps"):
        vi.inner_steps(lam0, theta, x, eps, gamma, step=0.1, num_steps=0)
    with pytest.raises(ValueError, match="method"):
        vi.loss((theta, theta), None, method="magic", step=0.1, num_steps=1)
    assert math.isfinite(float(vi.elbo(lam0, theta, x, eps, gamma)))
