"""The bilevel ridge problem of Chapter 4 (public names of a private module; ``ift_lib.unrolled``
re-exports them): data, inner objective f, its gradient F and Hessian H, the outer loss ell,
gradient descent unrolled or checkpointed, the closed forms, and the argument checks.
The equations are in ``ift_lib.unrolled``'s docstring.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["BilevelData", "random_problem", "inner_objective", "inner_gradient", "inner_hessian",
           "outer_loss", "lipschitz_constant", "default_step_size", "gd_step", "unrolled_solve",
           "checkpointed_solve", "closed_form_solution", "closed_form_hypergradient",
           "check_data", "check_positive_int", "check_step_size", "check_x0"]


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

def shape_of(a) -> tuple:
    return tuple(jnp.shape(a))


def _check_regression(A, b, prefix: str) -> int:
    """A (m, n) and b (m,), or a ValueError naming them (with ``prefix``, e.g. "data."); n."""
    if len(shape_of(A)) != 2:
        raise ValueError(f"{prefix}A must be a 2-D array of shape (m, n), got shape {shape_of(A)}")
    m, n = shape_of(A)
    if shape_of(b) != (m,):
        raise ValueError(f"{prefix}b must have shape (m,) = ({m},) to match {prefix}A of shape "
                         f"{(m, n)}, got shape {shape_of(b)}")
    return n


def check_data(theta, data) -> int:
    """Raise ValueError naming the first badly shaped argument; return n."""
    if not all(hasattr(data, name) for name in BilevelData._fields):
        raise TypeError(f"data must be a BilevelData(A, b, A_val, b_val), got {type(data).__name__}")
    A, b, A_val, b_val = data.A, data.b, data.A_val, data.b_val
    n = _check_regression(A, b, "data.")
    if len(shape_of(A_val)) != 2 or shape_of(A_val)[1] != n:
        raise ValueError(f"data.A_val must have shape (m_val, n) with n = {n} (the columns of "
                         f"data.A), got shape {shape_of(A_val)}")
    if shape_of(b_val) != (shape_of(A_val)[0],):
        raise ValueError(f"data.b_val must have shape (m_val,) = ({shape_of(A_val)[0]},) to match "
                         f"data.A_val, got shape {shape_of(b_val)}")
    check_theta(theta, n)
    return n


def check_theta(theta, n: int) -> None:
    if shape_of(theta) not in ((), (n,)):
        raise ValueError(f"theta must have shape () (ridge: one log weight decay) or (n,) = ({n},) "
                         f"(one log weight decay per feature), got shape {shape_of(theta)}")


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_step_size(step_size) -> None:
    if step_size is None or isinstance(step_size, jax.core.Tracer):
        return   # a traced step size cannot be checked here
    eta = np.asarray(step_size)
    if eta.shape != () or not np.isfinite(eta) or eta <= 0:
        raise ValueError(f"step_size must be a finite scalar > 0 (gradient descent converges for "
                         f"0 < step_size < 2/mu_max(H)), got {step_size!r}")


def check_x0(x0, n: int, dtype):
    if x0 is None:
        return jnp.zeros(n, dtype)
    if shape_of(x0) != (n,):
        raise ValueError(f"x0 must have shape (n,) = ({n},), got shape {shape_of(x0)}")
    return x0


def inner_setup(theta, A, b, num_steps, step_size, x0):
    """Validated (K, eta, x0) for the inner solvers."""
    n = _check_regression(A, b, "")
    check_theta(theta, n)
    K = check_positive_int(num_steps, "num_steps (K)")
    check_step_size(step_size)
    eta = default_step_size(theta, A) if step_size is None else step_size
    return K, eta, check_x0(x0, n, jnp.result_type(A, theta))


# ------------------------------------------------------------------------------- inner solvers

def unrolled_solve(theta, A, b, *, num_steps: int, step_size=None, x0=None):
    """x_K after K gradient-descent steps from x0 (default 0), by ``lax.scan``; shape (n,).

    Differentiable in theta by any JAX mode; reverse mode stores every iterate (K x n)."""
    K, eta, x = inner_setup(theta, A, b, num_steps, step_size, x0)
    step = lambda x, _: (gd_step(x, theta, A, b, eta), None)
    return jax.lax.scan(step, x, None, length=K)[0]


def checkpointed_solve(theta, A, b, *, num_steps: int, step_size=None, x0=None,
                       segment_length: int | None = None):
    """The same x_K as :func:`unrolled_solve`, computed as K // s segments of s steps (default
    s = ceil(sqrt(K))), each under ``jax.checkpoint``, then the K mod s remaining steps.

    Reverse mode stores only the K/s segment inputs and, one segment at a time during the
    backward pass, the s iterates of that segment recomputed: memory O((K/s + s) n), minimal at
    s ~ sqrt(K), for one extra forward pass."""
    K, eta, x = inner_setup(theta, A, b, num_steps, step_size, x0)
    s = math.ceil(math.sqrt(K)) if segment_length is None else check_positive_int(
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


def inner_hessian(theta, A):
    """H(theta) = dF/dx = A^T A/m + diag(exp theta), shape (n, n) (dense)."""
    m, n = shape_of(A)
    check_theta(theta, n)
    return A.T @ A / m + jnp.diag(jnp.broadcast_to(jnp.exp(theta), (n,)))


def closed_form_solution(theta, A, b):
    """x*(theta) = H(theta)^{-1} A^T b/m by a dense solve; shape (n,)."""
    return jnp.linalg.solve(inner_hessian(theta, A), A.T @ b / A.shape[0])


def closed_form_hypergradient(theta, data: BilevelData):
    """d ell(x*(theta))/dtheta by the IFT in closed form (dense solves), shaped like theta:

        v = H^{-1} grad ell(x*),   grad ell(x) = A_val^T (A_val x - b_val)/m_val,
        d ell/dtheta = -(dF/dtheta)^T v = -exp(theta) * x* * v   (summed if theta is a scalar).
    """
    check_data(theta, data)
    A, b, A_val, b_val = data
    H = inner_hessian(theta, A)
    x = jnp.linalg.solve(H, A.T @ b / A.shape[0])
    v = jnp.linalg.solve(H, A_val.T @ (A_val @ x - b_val) / A_val.shape[0])
    g = -jnp.exp(theta) * x * v
    return jnp.sum(g) if jnp.ndim(theta) == 0 else g
