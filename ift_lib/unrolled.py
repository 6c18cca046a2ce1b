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

import dataclasses
import math

import jax
import jax.numpy as jnp

from ift_lib._ridge import (BilevelData, check_data, check_positive_int, check_step_size,
                            check_x0, checkpointed_solve, closed_form_hypergradient,
                            closed_form_solution, default_step_size, gd_step, inner_gradient,
                            inner_hessian, inner_objective, lipschitz_constant, outer_loss,
                            random_problem, unrolled_solve)
from ift_lib.implicit import custom_root
from ift_lib.linear_solve import Identity, LinearSolver, Neumann, make_solver
from ift_lib.measure import compiled_temp_bytes, median_time

__all__ = [
    "BilevelData", "random_problem", "inner_objective", "inner_gradient", "outer_loss",
    "lipschitz_constant", "default_step_size", "gd_step", "unrolled_solve", "checkpointed_solve",
    "closed_form_solution", "closed_form_hypergradient", "inner_hessian", "identity_solve",
    "unrolled_hypergradient", "checkpointed_hypergradient", "forward_hypergradient",
    "implicit_hypergradient", "Unrolled", "Checkpointed", "Forward", "Implicit", "hypergradient",
    "METHODS", "tune_hyperparameters", "compiled_temp_bytes", "median_time",
]


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
    check_data(theta, data)
    return jax.grad(_validation_loss(unrolled_solve, data, num_steps=num_steps,
                                     step_size=step_size, x0=x0))(theta)


def checkpointed_hypergradient(theta, data: BilevelData, *, num_steps: int, step_size=None,
                               x0=None, segment_length: int | None = None):
    """The unrolled hypergradient (same value, up to rounding) with segments of ``segment_length``
    steps (default ceil(sqrt(K))) recomputed in the backward pass: memory O(sqrt(K) n)."""
    check_data(theta, data)
    return jax.grad(_validation_loss(checkpointed_solve, data, num_steps=num_steps,
                                     step_size=step_size, x0=x0,
                                     segment_length=segment_length))(theta)


def forward_hypergradient(theta, data: BilevelData, *, num_steps: int, step_size=None, x0=None):
    """The unrolled hypergradient by forward mode (jacfwd): one tangent per entry of theta carried
    through the K steps, so no iterate is stored, but time and memory grow with n. For small n."""
    check_data(theta, data)
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
    n = check_data(theta, data)
    A, b, A_val, b_val = data
    K = check_positive_int(num_steps, "num_steps (K)")
    check_step_size(step_size)
    eta = default_step_size(theta, A) if step_size is None else step_size
    x0 = check_x0(x0, n, jnp.result_type(A, theta))
    root = custom_root(lambda x, t: inner_gradient(x, t, A, b), solve=_linear_solve(solve, eta),
                       solve_rtol=solve_rtol, residual_tol=residual_tol)(
        lambda init, t: unrolled_solve(t, A, b, num_steps=K, step_size=eta, x0=init))
    return jax.grad(lambda t: outer_loss(root(x0, t), A_val, b_val))(theta)


# ------------------------------------------------------------------- the methods as values
# A method is a small frozen value holding its options (hashable, compared by value, validated
# when the hypergradient is computed); ``hypergradient(..., method=Implicit(solve=CG()))``.

@dataclasses.dataclass(frozen=True)
class Unrolled:
    """Reverse mode through the K steps: :func:`unrolled_hypergradient`."""
    def __call__(self, theta, data, **inner):
        return unrolled_hypergradient(theta, data, **inner)


@dataclasses.dataclass(frozen=True)
class Checkpointed:
    """Reverse mode with recomputed segments: :func:`checkpointed_hypergradient`."""
    segment_length: int | None = None

    def __call__(self, theta, data, **inner):
        return checkpointed_hypergradient(theta, data, segment_length=self.segment_length, **inner)


@dataclasses.dataclass(frozen=True)
class Forward:
    """Forward mode through the K steps: :func:`forward_hypergradient`."""
    def __call__(self, theta, data, **inner):
        return forward_hypergradient(theta, data, **inner)


@dataclasses.dataclass(frozen=True)
class Implicit:
    """The IFT at x_K with the linear solve ``solve``: :func:`implicit_hypergradient`."""
    solve: str | LinearSolver = "dense"
    solve_rtol: float | None = None
    residual_tol: float | None = None

    def __call__(self, theta, data, **inner):
        return implicit_hypergradient(theta, data, solve=self.solve, solve_rtol=self.solve_rtol,
                                      residual_tol=self.residual_tol, **inner)


#: The four methods by name (each name's value built with the options given to hypergradient).
METHODS: dict[str, type] = {"unrolled": Unrolled, "checkpointed": Checkpointed,
                            "forward": Forward, "implicit": Implicit}


def hypergradient(theta, data: BilevelData, *, method, num_steps: int, step_size=None, x0=None,
                  **options):
    """d ell(x_K(theta))/dtheta by ``method``, shaped like theta.

    ``method``: a value (``Unrolled()``, ``Checkpointed(segment_length)``, ``Forward()``,
    ``Implicit(solve, solve_rtol, residual_tol)``) or its name in :data:`METHODS`, then built
    with ``options`` (an option the method does not take is a TypeError). K = ``num_steps``
    gradient-descent steps of size ``step_size`` (default 1/L) from ``x0`` (default 0).

    >>> hypergradient(theta, data, method=Implicit(solve=CG(maxiter=20), solve_rtol=math.inf),
    ...               num_steps=1000)
    """
    if isinstance(method, str):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
        method = METHODS[method](**options)
    elif options:
        raise TypeError(f"options {sorted(options)} go into the method value, e.g. "
                        f"{type(method).__name__}(...), not to hypergradient")
    if not isinstance(method, tuple(METHODS.values())):
        raise TypeError(f"method must be one of {list(METHODS)} or a value of "
                        f"{[c.__name__ for c in METHODS.values()]}, got {method!r}")
    return method(theta, data, num_steps=num_steps, step_size=step_size, x0=x0)


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
    T = check_positive_int(outer_steps, "outer_steps")
    if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate)
            and learning_rate > 0):
        raise ValueError(f"learning_rate must be a positive finite number, got {learning_rate!r}")
    check_data(theta0, data)
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
