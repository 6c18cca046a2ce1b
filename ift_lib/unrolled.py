"""Chapter 4: what unrolling costs. Hypergradients of a K-step inner solver, four ways.

Inner problem: regression with one weight decay per feature, theta = log weight decays,

    f(x, theta) = 1/(2m) |A x - b|^2 + 1/2 sum_j exp(theta_j) x_j^2,     A (m, n), b (m,), x (n,)

with theta of shape (n,), or of shape () for ridge regression (one log weight decay for every feature;
the same formulas broadcast). Its optimality condition and Hessian are

    F(x, theta) = grad_x f = A^T (A x - b)/m + exp(theta) * x = 0
    H(theta)    = A^T A/m + diag(exp(theta))

theta enters H, so reverse mode through the solver's iterations has to store them (the step's
Jacobian d x_{k+1}/d theta = -eta exp(theta) * x_k depends on the iterate).
Inner solver: K steps of gradient descent from x_0 (default 0),

    x_{k+1} = x_k - eta F(x_k, theta),     eta = 1/L, L = |A|_2^2/m + max_j exp(theta_j) >= mu_max(H),

L a Lipschitz constant of F (mu_max, mu_min: the largest and smallest eigenvalues of H).

Outer (validation) loss  ell(x) = 1/(2 m_val) |A_val x - b_val|^2,  A_val (m_val, n), b_val (m_val,).
Wanted: the hypergradient d ell(x_K(theta)) / d theta, by one of four methods (``METHODS``):

    "unrolled"      reverse mode through the K steps (lax.scan)    memory O(K n), time ~ 2-3 K steps
    "checkpointed"  reverse mode, segments of ~sqrt(K) steps      memory O(sqrt(K) n), one more forward
                    recomputed in the backward pass (jax.checkpoint)
    "forward"       forward mode (jacfwd) through the K steps     memory O(n^2), time ~ n x forward
    "implicit"      the IFT at x_K (ift_lib.custom_root on F)     memory O(n), flat in K; time K steps
                    with H v = grad ell(x_K), by a chosen ``solve``  + one solve (+ custom_root's checks,
                                                                   dense O(n^2) only for n <= 256)

As K -> infinity all four tend to the closed form (:func:`closed_form_hypergradient`)

    x*(theta)  = H^{-1} A^T b/m
    d ell/dtheta = -(dF/dtheta)^T H^{-1} grad ell(x*) = -exp(theta) * x* * H^{-1} grad ell(x*)
                   (summed over features when theta is a scalar).

:func:`ift_lib.measure.compiled_temp_bytes` and :func:`ift_lib.measure.median_time` (re-exported
here) measure what each method costs.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ift_lib.implicit import custom_root
from ift_lib.linear_solve import Identity, LinearSolver, Neumann, make_solver
from ift_lib.measure import compiled_temp_bytes, median_time

__all__ = [
    "BilevelData", "random_problem", "inner_objective", "inner_gradient", "outer_loss",
    "lipschitz_constant", "default_step_size", "gd_step", "unrolled_solve", "checkpointed_solve",
    "closed_form_solution", "closed_form_hypergradient", "identity_solve",
    "unrolled_hypergradient", "checkpointed_hypergradient", "forward_hypergradient",
    "implicit_hypergradient", "hypergradient", "METHODS", "tune_hyperparameters",
    "compiled_temp_bytes", "median_time",
]


class BilevelData(NamedTuple):
    """Training data (A (m, n), b (m,)) of the inner problem, validation data (A_val (m_val, n),
    b_val (m_val,)) of the outer loss. A pytree: pass it to jitted functions as an argument."""
    A: Any
    b: Any
    A_val: Any
    b_val: Any


def random_problem(seed: int = 0, *, m: int = 40, n: int = 8, m_val: int = 30,
                   noise: float = 0.5, dtype=jnp.float64) -> BilevelData:
    """Gaussian regression data: A, A_val ~ N(0, 1); b = A w + noise * N(0, 1) for one w ~ N(0, 1)
    shared by the training and validation sets (numpy's generator, so the data depend on the seed only)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(n)
    A, A_val = rng.standard_normal((m, n)), rng.standard_normal((m_val, n))
    b = A @ w + noise * rng.standard_normal(m)
    b_val = A_val @ w + noise * rng.standard_normal(m_val)
    return BilevelData(*(jnp.asarray(a, dtype) for a in (A, b, A_val, b_val)))


# ----------------------------------------------------------------------------- the two problems

def inner_objective(x, theta, A, b):
    """f(x, theta) = 1/(2m) |A x - b|^2 + 1/2 sum_j exp(theta_j) x_j^2  (a scalar)."""
    r = A @ x - b
    return 0.5 * jnp.dot(r, r) / A.shape[0] + 0.5 * jnp.sum(jnp.exp(theta) * x**2)


def inner_gradient(x, theta, A, b):
    """F(x, theta) = grad_x f = A^T (A x - b)/m + exp(theta) * x, shape (n,): the optimality condition."""
    # (A x - b) @ A, not A.T @ (A x - b): with the latter XLA on CPU copies A^T into an (n, m)
    # scratch buffer, in a loop once per iteration (2x slower at n = m = 1000).
    return (A @ x - b) @ A / A.shape[0] + jnp.exp(theta) * x


def outer_loss(x, A_val, b_val):
    """ell(x) = 1/(2 m_val) |A_val x - b_val|^2  (a scalar)."""
    r = A_val @ x - b_val
    return 0.5 * jnp.dot(r, r) / A_val.shape[0]


def lipschitz_constant(theta, A):
    """L = |A|_2^2/m + max_j exp(theta_j), an upper bound on mu_max(H) (the largest eigenvalue of
    H): a Lipschitz constant of x -> F(x, theta). Forms the SVD of A (O(m n^2)): for large A compute it once, outside."""
    return jnp.linalg.norm(A, ord=2) ** 2 / A.shape[0] + jnp.max(jnp.exp(theta))


def default_step_size(theta, A):
    """eta = 1/L (gradient descent converges for 0 < eta < 2/mu_max(H)); a constant of the
    algorithm, not differentiated (stop_gradient)."""
    return jax.lax.stop_gradient(1.0 / lipschitz_constant(theta, A))


def gd_step(x, theta, A, b, step_size):
    """One gradient-descent step x - eta F(x, theta), shape (n,)."""
    return x - step_size * inner_gradient(x, theta, A, b)


# ---------------------------------------------------------------------------------- validation

def _shape(a) -> tuple:
    return tuple(jnp.shape(a))


def _check_data(theta, data) -> int:
    """Raise ValueError naming the first badly shaped argument; return n."""
    if not all(hasattr(data, name) for name in BilevelData._fields):
        raise TypeError(f"data must be a BilevelData(A, b, A_val, b_val), got {type(data).__name__}")
    A, b, A_val, b_val = data.A, data.b, data.A_val, data.b_val
    if len(_shape(A)) != 2:
        raise ValueError(f"data.A must be a 2-D array of shape (m, n), got shape {_shape(A)}")
    m, n = _shape(A)
    if _shape(b) != (m,):
        raise ValueError(f"data.b must have shape (m,) = ({m},) to match data.A of shape {(m, n)}, "
                         f"got shape {_shape(b)}")
    if len(_shape(A_val)) != 2 or _shape(A_val)[1] != n:
        raise ValueError(f"data.A_val must have shape (m_val, n) with n = {n} (the columns of "
                         f"data.A), got shape {_shape(A_val)}")
    if _shape(b_val) != (_shape(A_val)[0],):
        raise ValueError(f"data.b_val must have shape (m_val,) = ({_shape(A_val)[0]},) to match "
                         f"data.A_val, got shape {_shape(b_val)}")
    _check_theta(theta, n)
    return n


def _check_theta(theta, n: int) -> None:
    if _shape(theta) not in ((), (n,)):
        raise ValueError(f"theta must have shape () (ridge: one log weight decay) or (n,) = ({n},) "
                         f"(one log weight decay per feature), got shape {_shape(theta)}")


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _check_step_size(step_size) -> None:
    if step_size is None or isinstance(step_size, jax.core.Tracer):
        return   # a traced step size cannot be checked here
    eta = np.asarray(step_size)
    if eta.shape != () or not np.isfinite(eta) or eta <= 0:
        raise ValueError(f"step_size must be a finite scalar > 0 (gradient descent converges for "
                         f"0 < step_size < 2/mu_max(H)), got {step_size!r}")


def _check_x0(x0, n: int, dtype):
    if x0 is None:
        return jnp.zeros(n, dtype)
    if _shape(x0) != (n,):
        raise ValueError(f"x0 must have shape (n,) = ({n},), got shape {_shape(x0)}")
    return x0


def _inner_setup(theta, A, b, num_steps, step_size, x0):
    """Validated (K, eta, x0) for the inner solvers."""
    if len(_shape(A)) != 2:
        raise ValueError(f"A must be a 2-D array of shape (m, n), got shape {_shape(A)}")
    m, n = _shape(A)
    if _shape(b) != (m,):
        raise ValueError(f"b must have shape (m,) = ({m},) to match A of shape {(m, n)}, "
                         f"got shape {_shape(b)}")
    _check_theta(theta, n)
    K = _check_positive_int(num_steps, "num_steps (K)")
    _check_step_size(step_size)
    eta = default_step_size(theta, A) if step_size is None else step_size
    return K, eta, _check_x0(x0, n, jnp.result_type(A, theta))


# ------------------------------------------------------------------------------- inner solvers

def unrolled_solve(theta, A, b, *, num_steps: int, step_size=None, x0=None):
    """x_K after K gradient-descent steps from x0 (default 0), by ``lax.scan``; shape (n,).

    Differentiable in theta by any JAX mode; reverse mode stores every iterate (K x n)."""
    K, eta, x = _inner_setup(theta, A, b, num_steps, step_size, x0)
    step = lambda x, _: (gd_step(x, theta, A, b, eta), None)
    return jax.lax.scan(step, x, None, length=K)[0]


def checkpointed_solve(theta, A, b, *, num_steps: int, step_size=None, x0=None,
                       segment_length: int | None = None):
    """The same x_K as :func:`unrolled_solve`, computed as K // s segments of s steps (default
    s = ceil(sqrt(K))), each under ``jax.checkpoint``, then the K mod s remaining steps.

    Reverse mode stores only the K/s segment inputs and, one segment at a time during the
    backward pass, the s iterates of that segment recomputed: memory O((K/s + s) n), minimal at
    s ~ sqrt(K), for one extra forward pass."""
    K, eta, x = _inner_setup(theta, A, b, num_steps, step_size, x0)
    s = math.ceil(math.sqrt(K)) if segment_length is None else _check_positive_int(
        segment_length, "segment_length")
    s = min(s, K)
    num_segments, rest = divmod(K, s)
    step = lambda x, _: (gd_step(x, theta, A, b, eta), None)

    @jax.checkpoint   # saves the segment's input only; prevent_cse is not needed under scan
    def segment(x):
        return jax.lax.scan(step, x, None, length=s)[0]

    x = jax.lax.scan(lambda x, _: (segment(x), None), x, None, length=num_segments)[0]
    if rest:
        x = jax.lax.scan(step, x, None, length=rest)[0]
    return x


def closed_form_solution(theta, A, b):
    """x*(theta) = (A^T A/m + diag(exp theta))^{-1} A^T b/m by a dense solve; shape (n,)."""
    m, n = _shape(A)
    _check_theta(theta, n)
    H = A.T @ A / m + jnp.diag(jnp.broadcast_to(jnp.exp(theta), (n,)))
    return jnp.linalg.solve(H, A.T @ b / m)


def closed_form_hypergradient(theta, data: BilevelData):
    """d ell(x*(theta))/dtheta by the IFT in closed form (dense solves), shaped like theta:

        v = H^{-1} grad ell(x*),   grad ell(x) = A_val^T (A_val x - b_val)/m_val,
        d ell/dtheta = -(dF/dtheta)^T v = -exp(theta) * x* * v   (summed if theta is a scalar).
    """
    n = _check_data(theta, data)
    A, b, A_val, b_val = data
    m = A.shape[0]
    H = A.T @ A / m + jnp.diag(jnp.broadcast_to(jnp.exp(theta), (n,)))
    x = jnp.linalg.solve(H, A.T @ b / m)
    v = jnp.linalg.solve(H, A_val.T @ (A_val @ x - b_val) / A_val.shape[0])
    g = -jnp.exp(theta) * x * v
    return jnp.sum(g) if jnp.ndim(theta) == 0 else g


# ---------------------------------------------------------------------- the IFT's linear solve

def identity_solve(matvec, b, *, scale=1.0):
    """The cheapest "solve" of H v = b: v = scale * b, i.e. H^{-1} ~ scale * I (``matvec`` unused):
    ``ift_lib.linear_solve.Identity(scale)``.

    Biased unless H = I/scale. With scale = eta (the inner step size) it is the first term of the
    Neumann series (``Neumann(num_terms=1, step=eta)``), and the hypergradient it gives,
    -eta (dF/dtheta)^T grad ell(x_K), is that of one gradient step taken from x_K with x_K
    held fixed (the "T1-T2" approximation of Luketina et al., 2016)."""
    return Identity(scale)(matvec, b)


def _linear_solve(solve: str | LinearSolver, eta) -> LinearSolver:
    """The solver for H v = g: the names "neumann" and "identity" take the inner step size eta
    (H's natural scale here: Neumann(step=eta), Identity(scale=eta)); other names and values are
    ``ift_lib.linear_solve``'s."""
    if solve == "identity":
        return Identity(scale=eta)
    if solve == "neumann":
        return Neumann(step=eta)
    return make_solver(solve)


# ---------------------------------------------------------------------------- hypergradients

def _validation_loss(solve_fn, data: BilevelData, **options):
    A, b, A_val, b_val = data
    return lambda theta: outer_loss(solve_fn(theta, A, b, **options), A_val, b_val)


def unrolled_hypergradient(theta, data: BilevelData, *, num_steps: int, step_size=None, x0=None):
    """jax.grad of theta -> ell(x_K(theta)) through the K unrolled steps; shaped like theta.

    Exact for the K-step map; stores the K iterates (memory grows linearly in K)."""
    _check_data(theta, data)
    return jax.grad(_validation_loss(unrolled_solve, data, num_steps=num_steps,
                                     step_size=step_size, x0=x0))(theta)


def checkpointed_hypergradient(theta, data: BilevelData, *, num_steps: int, step_size=None,
                               x0=None, segment_length: int | None = None):
    """The unrolled hypergradient (same value, up to rounding) with segments of ``segment_length``
    steps (default ceil(sqrt(K))) recomputed in the backward pass: memory O(sqrt(K) n)."""
    _check_data(theta, data)
    return jax.grad(_validation_loss(checkpointed_solve, data, num_steps=num_steps,
                                     step_size=step_size, x0=x0,
                                     segment_length=segment_length))(theta)


def forward_hypergradient(theta, data: BilevelData, *, num_steps: int, step_size=None, x0=None):
    """The unrolled hypergradient by forward mode (jacfwd): one tangent per entry of theta carried
    through the K steps, so no iterate is stored, but time and memory grow with n. For small n."""
    _check_data(theta, data)
    return jax.jacfwd(_validation_loss(unrolled_solve, data, num_steps=num_steps,
                                       step_size=step_size, x0=x0))(theta)


def implicit_hypergradient(theta, data: BilevelData, *, num_steps: int, step_size=None, x0=None,
                           solve: str | LinearSolver = "dense", solve_rtol: float | None = None,
                           residual_tol: float | None = None):
    """The IFT's hypergradient at x_K, the output of K (undifferentiated) gradient-descent steps:

        d ell/dtheta = -(dF/dtheta)^T v,   H v = grad ell(x_K),   H = dF/dx at x_K,

    via ``ift_lib.custom_root(inner_gradient, solve=...)``. ``solve`` chooses the linear solve:
    ``"dense"`` (exact), ``"cg"`` (to tol 1e-10), any ``ift_lib.linear_solve`` name or
    ``solve(matvec, b)`` callable (CG with k iterations: ``CG(maxiter=k)``; Neumann with k
    terms: ``Neumann(num_terms=k, step=eta)``); ``"neumann"`` (50 terms) and ``"identity"``
    (:func:`identity_solve`) use the inner step size eta.

    custom_root checks, raising IFTConditionError: x_K solves F = 0 to ``residual_tol`` (default
    sqrt(eps): K large enough), and the linear solve's relative residual is below ``solve_rtol``
    (None: custom_root's default); pass ``solve_rtol=math.inf`` for an intentionally approximate
    solve (few CG/Neumann terms, identity), ``residual_tol=math.inf`` to differentiate at an
    unconverged x_K.
    """
    n = _check_data(theta, data)
    A, b, A_val, b_val = data
    K = _check_positive_int(num_steps, "num_steps (K)")
    _check_step_size(step_size)
    eta = default_step_size(theta, A) if step_size is None else step_size
    x0 = _check_x0(x0, n, jnp.result_type(A, theta))
    root = custom_root(lambda x, t: inner_gradient(x, t, A, b), solve=_linear_solve(solve, eta),
                       solve_rtol=solve_rtol, residual_tol=residual_tol)(
        lambda init, t: unrolled_solve(t, A, b, num_steps=K, step_size=eta, x0=init))
    return jax.grad(lambda t: outer_loss(root(x0, t), A_val, b_val))(theta)


#: The four methods, by name, for :func:`hypergradient`.
METHODS: dict[str, Callable] = {
    "unrolled": unrolled_hypergradient,
    "checkpointed": checkpointed_hypergradient,
    "forward": forward_hypergradient,
    "implicit": implicit_hypergradient,
}


def hypergradient(theta, data: BilevelData, *, method: str, num_steps: int, **options):
    """d ell(x_K(theta))/dtheta by ``method`` (a key of :data:`METHODS`), shaped like theta.

    ``options`` go to that method's function (e.g. ``solve=`` for "implicit",
    ``segment_length=`` for "checkpointed"; an option the method does not take is a TypeError).

    >>> hypergradient(theta, data, method="implicit", num_steps=1000,
    ...               solve=CG(maxiter=20), solve_rtol=math.inf)
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
    return METHODS[method](theta, data, num_steps=num_steps, **options)


# ------------------------------------------------------------------------- the outer problem

def tune_hyperparameters(theta0, data: BilevelData, *, method: str, num_steps: int,
                         outer_steps: int, learning_rate: float, **options):
    """Gradient descent on the validation loss over theta (log weight decays):

        theta_{t+1} = theta_t - learning_rate * d ell(x_K(theta_t))/dtheta,   t < outer_steps,

    each hypergradient by ``method`` (see :func:`hypergradient`; ``options`` go there). The inner
    problem is re-solved from x0 = 0 with K = ``num_steps`` steps at every outer step.
    Returns (thetas, losses): shapes (outer_steps + 1, *theta.shape) and (outer_steps + 1,), the
    validation loss ell(x_K(theta_t)) of each iterate. One jit-compiled outer step, run in a loop.
    """
    T = _check_positive_int(outer_steps, "outer_steps")
    if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate)
            and learning_rate > 0):
        raise ValueError(f"learning_rate must be a positive finite number, got {learning_rate!r}")
    _check_data(theta0, data)
    theta = jnp.asarray(theta0, jnp.result_type(data.A, theta0))
    eta = options.pop("step_size", None)   # None: 1/L at each theta (default_step_size)

    @jax.jit
    def outer_step(theta):
        loss = outer_loss(unrolled_solve(theta, data.A, data.b, num_steps=num_steps, step_size=eta),
                          data.A_val, data.b_val)
        g = hypergradient(theta, data, method=method, num_steps=num_steps, step_size=eta, **options)
        return theta - learning_rate * g, loss

    thetas, losses = [theta], []
    for _ in range(T):
        theta, loss = outer_step(theta)
        thetas.append(theta)
        losses.append(loss)
    losses.append(outer_loss(unrolled_solve(theta, data.A, data.b, num_steps=num_steps,
                                            step_size=eta), data.A_val, data.b_val))
    return jnp.stack(thetas), jnp.stack(losses)
