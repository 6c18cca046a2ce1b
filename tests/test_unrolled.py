"""Tests for ift_lib.unrolled: the four hypergradients of a K-step gradient-descent solver
(unrolled, checkpointed, forward, implicit) against the closed form and against each other,
the implicit method's linear solves (dense, CG, Neumann, identity), memory growth in K, and
errors for bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ift_lib import IFTConditionError
from ift_lib.linear_solve import make_solver
from ift_lib.unrolled import (
    METHODS, BilevelData, checkpointed_hypergradient, checkpointed_solve, closed_form_hypergradient,
    closed_form_solution, compiled_temp_bytes, default_step_size, forward_hypergradient, gd_step,
    hypergradient, identity_solve, implicit_hypergradient, inner_gradient, inner_objective,
    median_time, outer_loss, random_problem, unrolled_hypergradient, unrolled_solve)

# Few rows per feature (m = 12, n = 8), so H = A^T A/m + diag(exp theta) is not close to a
# multiple of I and gradient descent needs a few hundred steps: K = 1000 converges to rounding.
DATA = random_problem(0, m=12, n=8, m_val=30)
A, B, A_VAL, B_VAL = (np.asarray(a) for a in DATA)
M, N = A.shape
THETAS = {"per_feature": jnp.asarray(np.random.default_rng(1).uniform(-2.0, 0.0, N)),
          "ridge": jnp.asarray(-1.0)}
THETA = THETAS["per_feature"]
ETA = float(default_step_size(THETA, DATA.A))
K_CONVERGED = 1000

# Every hypergradient below is jitted with the data as an argument (one compilation per
# configuration; the data are not baked into the program as constants).


def _rel(got, want):
    return float(np.linalg.norm(np.asarray(got) - np.asarray(want)) / np.linalg.norm(np.asarray(want)))


def _np_pieces(theta):
    """H, x*, grad L(x*), v = H^{-1} grad L(x*) and D = dF/dtheta at x* (n x n, or n x 1 for ridge), numpy."""
    theta = np.asarray(theta)
    H = A.T @ A / M + np.diag(np.broadcast_to(np.exp(theta), (N,)))
    x = np.linalg.solve(H, A.T @ B / M)
    g = A_VAL.T @ (A_VAL @ x - B_VAL) / len(B_VAL)
    D = np.diag(np.exp(theta) * x) if theta.ndim else (np.exp(theta) * x)[:, None]
    return H, x, g, np.linalg.solve(H, g), D


def _reshape_like(g, theta):
    return g.reshape(np.shape(theta))


# ------------------------------------------------------------------------------------ closed form

@pytest.mark.parametrize("kind", list(THETAS))
def test_closed_form_solution_and_hypergradient(kind):
    theta = THETAS[kind]
    x = closed_form_solution(theta, DATA.A, DATA.b)
    np.testing.assert_allclose(np.asarray(inner_gradient(x, theta, DATA.A, DATA.b)), 0, atol=1e-14)
    # the minimiser of f: its gradient (by autodiff of f) vanishes
    np.testing.assert_allclose(np.asarray(jax.grad(inner_objective)(x, theta, DATA.A, DATA.b)), 0,
                               atol=1e-14)
    H, x_np, g, v, D = _np_pieces(theta)
    np.testing.assert_allclose(np.asarray(x), x_np, rtol=1e-12)
    ref = closed_form_hypergradient(theta, DATA)
    assert ref.shape == theta.shape
    np.testing.assert_allclose(np.asarray(ref), _reshape_like(-D.T @ v, theta), rtol=1e-12)
    # autodiff through the dense solve: an independent route to the same derivative
    via_solve = jax.grad(lambda t: outer_loss(closed_form_solution(t, DATA.A, DATA.b), DATA.A_val,
                                              DATA.b_val))(theta)
    np.testing.assert_allclose(np.asarray(ref), np.asarray(via_solve), rtol=1e-12)


# --------------------------------------------------------------------------------------- unrolled

@pytest.mark.parametrize("kind", list(THETAS))
def test_unrolled_is_the_gradient_of_the_k_step_map(kind):
    theta, K = THETAS[kind], 7
    got = unrolled_hypergradient(theta, DATA, num_steps=K, step_size=ETA)
    # forward sensitivities in numpy: J_{k+1} = (I - eta H) J_k - eta dF/dtheta(x_k), J_0 = 0
    th = np.asarray(theta)
    H = A.T @ A / M + np.diag(np.broadcast_to(np.exp(th), (N,)))
    x, J = np.zeros(N), np.zeros((N, th.size))
    for _ in range(K):
        dF = np.diag(np.exp(th) * x) if th.ndim else (np.exp(th) * x)[:, None]
        J = (np.eye(N) - ETA * H) @ J - ETA * dF
        x = x - ETA * (H @ x - A.T @ B / M)
    want = J.T @ (A_VAL.T @ (A_VAL @ x - B_VAL) / len(B_VAL))
    np.testing.assert_allclose(np.asarray(got), _reshape_like(want, theta), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(unrolled_solve(theta, DATA.A, DATA.b, num_steps=K,
                                                         step_size=ETA)), x, rtol=1e-12)

    # jax.grad of the same map written as a Python loop of gd_step
    def k_step_loss(t):
        x = jnp.zeros(N)
        for _ in range(K):
            x = gd_step(x, t, DATA.A, DATA.b, ETA)
        return outer_loss(x, DATA.A_val, DATA.b_val)

    np.testing.assert_allclose(np.asarray(got), np.asarray(jax.grad(k_step_loss)(theta)), rtol=1e-12)


def test_unrolled_converges_to_the_closed_form_as_k_grows():
    ref = closed_form_hypergradient(THETA, DATA)
    grad = jax.jit(unrolled_hypergradient, static_argnames="num_steps")
    errors = [_rel(grad(THETA, DATA, num_steps=K), ref) for K in (10, 30, 100, 300, K_CONVERGED)]
    assert errors[0] > 0.1                                       # K = 10 is far off
    assert errors[0] > errors[1] > errors[2] > errors[3], errors  # then linear convergence
    assert errors[-1] < 1e-12, errors


def test_default_step_size_is_one_over_lipschitz():
    H, *_ = _np_pieces(THETA)
    L = np.linalg.norm(A, 2) ** 2 / M + np.exp(np.asarray(THETA)).max()
    np.testing.assert_allclose(ETA, 1 / L, rtol=1e-12)
    assert np.linalg.eigvalsh(H).max() <= L * (1 + 1e-12)                # an upper bound on mu_max
    # the step size is a constant of the algorithm: not differentiated
    assert float(jax.grad(lambda t: default_step_size(t, DATA.A))(jnp.asarray(0.0))) == 0.0


# ------------------------------------------------------------------- checkpointed and forward mode

@pytest.mark.parametrize("K, segment_length", [(100, None), (97, 10), (12, 1), (12, 50)],
                         ids=["sqrtK", "with-remainder", "every-step", "longer-than-K"])
def test_checkpointed_equals_unrolled(K, segment_length):
    both = jax.jit(lambda t, d: (
        unrolled_hypergradient(t, d, num_steps=K, step_size=ETA),
        checkpointed_hypergradient(t, d, num_steps=K, step_size=ETA, segment_length=segment_length),
        unrolled_solve(t, d.A, d.b, num_steps=K, step_size=ETA),
        checkpointed_solve(t, d.A, d.b, num_steps=K, step_size=ETA, segment_length=segment_length)))
    g_unrolled, g_checkpointed, x_unrolled, x_checkpointed = both(THETA, DATA)
    np.testing.assert_allclose(np.asarray(x_checkpointed), np.asarray(x_unrolled), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(g_checkpointed), np.asarray(g_unrolled), rtol=1e-12)


@pytest.mark.parametrize("kind", list(THETAS))
def test_forward_mode_equals_reverse_mode(kind):
    theta = THETAS[kind]
    fwd, rev = jax.jit(lambda t, d: (forward_hypergradient(t, d, num_steps=50),
                                     unrolled_hypergradient(t, d, num_steps=50)))(theta, DATA)
    assert fwd.shape == rev.shape == theta.shape
    np.testing.assert_allclose(np.asarray(fwd), np.asarray(rev), rtol=1e-12)


# --------------------------------------------------------------------------------------- implicit

@pytest.mark.parametrize("kind", list(THETAS))
def test_all_methods_match_the_closed_form_when_converged(kind):
    theta = THETAS[kind]
    grads = jax.jit(lambda t, d: {m: hypergradient(t, d, method=m, num_steps=K_CONVERGED)
                                  for m in METHODS})(theta, DATA)
    ref = closed_form_hypergradient(theta, DATA)
    for method, g in grads.items():
        assert g.shape == theta.shape
        assert _rel(g, ref) < 1e-10, (method, _rel(g, ref))


def _implicit(solve, solve_rtol=None, num_steps=K_CONVERGED, theta=THETA):
    return jax.jit(lambda t, d: implicit_hypergradient(
        t, d, num_steps=num_steps, step_size=ETA, solve=solve, solve_rtol=solve_rtol))(theta, DATA)


def _neumann_terms_for(tol):
    mu = np.linalg.eigvalsh(_np_pieces(THETA)[0])
    rho = 1 - ETA * mu.min()                    # spectral radius of I - eta H (eta <= 1/mu_max)
    return rho, int(np.ceil(np.log(tol) / np.log(rho)))


def test_implicit_with_converged_iterative_solves():
    ref = closed_form_hypergradient(THETA, DATA)
    assert _rel(_implicit("dense"), ref) < 1e-10
    assert _rel(_implicit(make_solver("cg", tol=1e-14, maxiter=100)), ref) < 1e-10
    assert _rel(_implicit("cg"), ref) < 1e-8                     # CG's default tol=1e-10
    _, terms = _neumann_terms_for(1e-14)
    assert _rel(_implicit(make_solver("neumann", num_terms=terms, step=ETA)), ref) < 1e-10


def test_implicit_with_few_cg_iterations_has_bounded_error():
    # CG after k iterations: |v_k - v|_H <= 2 q^k |v|_H, q = (sqrt(kappa) - 1)/(sqrt(kappa) + 1);
    # the hypergradient's error is |D (v_k - v)| <= |D|_2 |v_k - v|_H / sqrt(mu_min).
    H, x, g, v, D = _np_pieces(THETA)
    mu = np.linalg.eigvalsh(H)
    q = (np.sqrt(mu.max() / mu.min()) - 1) / (np.sqrt(mu.max() / mu.min()) + 1)
    ref = -D.T @ v
    errors = []
    for k in (1, 2, 4):
        err = np.linalg.norm(np.asarray(_implicit(make_solver("cg", maxiter=k, tol=0.0), np.inf)) - ref)
        bound = np.linalg.norm(D, 2) * 2 * q**k * np.sqrt(v @ H @ v) / np.sqrt(mu.min())
        assert 1e-8 * np.linalg.norm(ref) < err <= bound, (k, err, bound)
        errors.append(err)
    assert errors[0] > errors[1] > errors[2]


def test_implicit_with_few_neumann_terms_is_the_truncated_series():
    # k terms: v_k = eta sum_{j<k} (I - eta H)^j g, error (I - eta H)^k v, |.| <= rho^k |v|
    H, x, g, v, D = _np_pieces(THETA)
    rho, _ = _neumann_terms_for(1e-14)
    ref = -D.T @ v
    for k in (1, 5, 20):
        got = np.asarray(_implicit(make_solver("neumann", num_terms=k, step=ETA), np.inf))
        v_k = ETA * sum(np.linalg.matrix_power(np.eye(N) - ETA * H, j) @ g for j in range(k))
        np.testing.assert_allclose(got, -D.T @ v_k, rtol=1e-10)
        err = np.linalg.norm(got - ref)
        assert 1e-8 * np.linalg.norm(ref) < err <= np.linalg.norm(D, 2) * rho**k * np.linalg.norm(v)


def test_identity_approximation_is_one_step_from_x_k_and_biased():
    H, x, g, v, D = _np_pieces(THETA)
    got = np.asarray(_implicit("identity", np.inf))
    # what it claims: H^{-1} replaced by eta I, i.e. -eta (dF/dtheta)^T grad L(x*) ...
    np.testing.assert_allclose(got, -ETA * D.T @ g, rtol=1e-10)
    # ... which is the one-term Neumann series ...
    np.testing.assert_allclose(got, np.asarray(_implicit(make_solver("neumann", num_terms=1, step=ETA),
                                                         np.inf)), rtol=1e-12)
    np.testing.assert_allclose(got, np.asarray(_implicit(
        lambda matvec, b: identity_solve(matvec, b, scale=ETA), np.inf)), rtol=1e-12)
    # ... and the gradient of one gradient step taken from x_K held fixed
    x_K = jax.lax.stop_gradient(unrolled_solve(THETA, DATA.A, DATA.b, num_steps=K_CONVERGED,
                                               step_size=ETA))
    one_step = jax.grad(lambda t: outer_loss(gd_step(x_K, t, DATA.A, DATA.b, ETA), DATA.A_val,
                                             DATA.b_val))(THETA)
    np.testing.assert_allclose(got, np.asarray(one_step), rtol=1e-10)
    # cheap but biased: far from the true hypergradient, and more inner steps do not help
    ref = -D.T @ v
    assert _rel(got, ref) > 0.3, _rel(got, ref)
    np.testing.assert_allclose(np.asarray(_implicit("identity", np.inf, num_steps=500)), got, rtol=1e-10)
    # and the default solve_rtol refuses it as a solve of H v = g
    with pytest.raises(Exception, match="solve_rtol=math.inf"):
        jax.block_until_ready(_implicit("identity"))


def test_implicit_refuses_an_unconverged_inner_solve():
    with pytest.raises((IFTConditionError, jax.errors.JaxRuntimeError), match="condition 1"):
        jax.block_until_ready(_implicit("dense", num_steps=5))
    # a loose residual_tol accepts x_5: the IFT formula evaluated at an unconverged iterate
    g = implicit_hypergradient(THETA, DATA, num_steps=5, step_size=ETA, residual_tol=np.inf)
    assert _rel(g, closed_form_hypergradient(THETA, DATA)) > 1e-3


# ----------------------------------------------------------------------------------------- memory

def test_memory_unrolled_grows_with_k_implicit_stays_flat():
    data = random_problem(3, m=64, n=32, m_val=32)
    theta = jnp.zeros(32)
    eta = float(default_step_size(theta, data.A))
    cg = make_solver("cg", maxiter=10, tol=0.0)

    def temp(method, K, **options):
        fn = lambda t, d: hypergradient(t, d, method=method, num_steps=K, step_size=eta, **options)
        return compiled_temp_bytes(fn, theta, data)

    unrolled = {K: temp("unrolled", K) for K in (10, 1000)}
    implicit = {K: temp("implicit", K, solve=cg, solve_rtol=np.inf, residual_tol=np.inf)
                for K in (10, 1000)}
    checkpointed = temp("checkpointed", 1000)
    assert unrolled[1000] > 10 * unrolled[10], unrolled
    assert unrolled[1000] >= 1000 * 32 * 8                      # at least the K iterates, float64
    assert abs(implicit[1000] - implicit[10]) <= 0.05 * implicit[10], implicit
    assert checkpointed < unrolled[1000] / 4, (checkpointed, unrolled)


def test_measuring_helpers():
    f = lambda x: jnp.sin(x) @ x
    x = jnp.ones((50, 50))
    assert isinstance(compiled_temp_bytes(f, x), int) and compiled_temp_bytes(f, x) > 0
    t = median_time(f, x, repeats=3)
    assert isinstance(t, float) and 0 < t < 10
    with pytest.raises(ValueError, match="repeats"):
        median_time(f, x, repeats=0)


# ----------------------------------------------------------------------------------------- errors

BAD_DATA = {
    "data.A": DATA._replace(A=DATA.A[0]),
    "data.b": DATA._replace(b=DATA.b[:-1]),
    "data.A_val": DATA._replace(A_val=DATA.A_val[:, :-1]),
    "data.b_val": DATA._replace(b_val=DATA.b_val[:, None]),
}


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("name", list(BAD_DATA))
def test_bad_data_shapes_name_the_argument(name, method):
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        hypergradient(THETA, BAD_DATA[name], method=method, num_steps=3)


@pytest.mark.parametrize("theta", [jnp.zeros(N + 1), jnp.zeros((N, 1)), jnp.zeros(1)],
                         ids=["n+1", "column", "one"])
def test_bad_theta_shape(theta):
    for fn in (lambda: hypergradient(theta, DATA, method="unrolled", num_steps=3),
               lambda: closed_form_hypergradient(theta, DATA),
               lambda: unrolled_solve(theta, DATA.A, DATA.b, num_steps=3)):
        with pytest.raises(ValueError, match="theta must have shape"):
            fn()


def test_inner_solver_shape_errors():
    with pytest.raises(ValueError, match="A must be a 2-D"):
        unrolled_solve(THETA, DATA.b, DATA.b, num_steps=3)
    with pytest.raises(ValueError, match="b must have shape"):
        checkpointed_solve(THETA, DATA.A, DATA.b_val, num_steps=3)
    with pytest.raises(ValueError, match="x0 must have shape"):
        unrolled_solve(THETA, DATA.A, DATA.b, num_steps=3, x0=jnp.zeros(N + 1))
    with pytest.raises(TypeError, match="BilevelData"):
        hypergradient(THETA, (DATA.A, DATA.b), method="unrolled", num_steps=3)


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("step_size", [0.0, -0.1, float("nan"), float("inf")])
def test_non_positive_step_size(method, step_size):
    with pytest.raises(ValueError, match="step_size must be a finite scalar > 0"):
        hypergradient(THETA, DATA, method=method, num_steps=3, step_size=step_size)


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("num_steps", [0, -1, 2.0, True])
def test_num_steps_below_one(method, num_steps):
    with pytest.raises(ValueError, match=r"num_steps \(K\) must be an integer >= 1"):
        hypergradient(THETA, DATA, method=method, num_steps=num_steps)


def test_unknown_method_solve_and_options():
    with pytest.raises(ValueError, match="unknown method 'adjoint'"):
        hypergradient(THETA, DATA, method="adjoint", num_steps=3)
    with pytest.raises(ValueError, match="unknown linear solver 'lu'.*identity"):
        hypergradient(THETA, DATA, method="implicit", num_steps=3, solve="lu")
    with pytest.raises(TypeError, match="solve"):          # an option the method does not take
        hypergradient(THETA, DATA, method="unrolled", num_steps=3, solve="cg")
    with pytest.raises(ValueError, match="segment_length must be an integer >= 1"):
        checkpointed_hypergradient(THETA, DATA, num_steps=3, segment_length=0)
    assert isinstance(DATA, BilevelData)


# ------------------------------------------------------------------------ tune_hyperparameters

def test_tune_hyperparameters_follows_the_exact_hypergradient():
    from ift_lib.unrolled import tune_hyperparameters
    theta0, lr, T = jnp.full(N, -1.0), 0.5, 5
    paths = {}
    for method, options in [("implicit", dict(solve="cg")), ("unrolled", {})]:
        thetas, losses = tune_hyperparameters(theta0, DATA, method=method, num_steps=K_CONVERGED,
                                              outer_steps=T, learning_rate=lr, **options)
        assert thetas.shape == (T + 1, N) and losses.shape == (T + 1,)
        paths[method] = np.asarray(thetas)
        # each loss is the validation loss of the corresponding theta
        for t in (0, T):
            x = closed_form_solution(thetas[t], DATA.A, DATA.b)
            assert float(losses[t]) == pytest.approx(float(outer_loss(x, DATA.A_val, DATA.b_val)),
                                                     rel=1e-10)
    # the same path as gradient descent with the closed-form hypergradient
    theta, expected = theta0, [np.asarray(theta0)]
    for _ in range(T):
        theta = theta - lr * closed_form_hypergradient(theta, DATA)
        expected.append(np.asarray(theta))
    for path in paths.values():
        np.testing.assert_allclose(path, np.stack(expected), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kwargs, match", [
    (dict(outer_steps=0, learning_rate=0.1), "outer_steps"),
    (dict(outer_steps=2, learning_rate=-1.0), "learning_rate"),
    (dict(outer_steps=2, learning_rate=float("nan")), "learning_rate"),
])
def test_tune_hyperparameters_errors(kwargs, match):
    from ift_lib.unrolled import tune_hyperparameters
    with pytest.raises(ValueError, match=match):
        tune_hyperparameters(THETA, DATA, method="implicit", num_steps=10, **kwargs)


def test_tune_hyperparameters_refuses_an_unconverged_inner_solve():
    from ift_lib.unrolled import tune_hyperparameters
    with pytest.raises((IFTConditionError, jax.errors.JaxRuntimeError), match="condition 1"):
        tune_hyperparameters(THETA, DATA, method="implicit", num_steps=5, outer_steps=1,
                             learning_rate=0.1)


def test_methods_are_frozen_values_equal_to_their_names():
    from ift_lib.linear_solve import CG
    from ift_lib.unrolled import Checkpointed, Implicit, Unrolled
    assert Implicit(solve=CG(maxiter=20)) == Implicit(solve=CG(maxiter=20))
    assert len({Implicit(), Implicit(), Unrolled(), Checkpointed(3)}) == 3     # hashable by value
    for name, value in [("unrolled", Unrolled()), ("checkpointed", Checkpointed(segment_length=2)),
                        ("implicit", Implicit(residual_tol=np.inf))]:
        options = {k: v for k, v in vars(value).items()}
        by_name = hypergradient(THETA, DATA, method=name, num_steps=5, step_size=ETA, **options)
        np.testing.assert_array_equal(
            by_name, hypergradient(THETA, DATA, method=value, num_steps=5, step_size=ETA))
    with pytest.raises(TypeError, match="go into the method value"):
        hypergradient(THETA, DATA, method=Unrolled(), num_steps=3, solve="cg")
    with pytest.raises(TypeError, match="method must be"):
        hypergradient(THETA, DATA, method=CG(), num_steps=3)
