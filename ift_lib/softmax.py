"""Chapter 2: softmax and sparsemax as argmax problems on the simplex, differentiated by the IFT.

    softmax(theta)   = argmin_z  -z.theta + sum_i z_i log z_i      s.t.  1.z = 1,  z >= 0
    sparsemax(theta) = argmin_z  1/2 |z - theta|^2                 s.t.  1.z = 1,  z >= 0

One sign convention for every KKT system here (and in ``ift_lib.qp``): the Lagrangian is
f(z) + u (1.z - 1) - v.z with v >= 0, so u is the multiplier of the equality and v of z >= 0.

Softmax's KKT point is z = exp(theta - lse(theta)), u = lse(theta) - 1, v = 0 (lse = log-sum-exp).
Written in y = log z its KKT system has Jacobian [[I, 1], [z^T, 0]] whose Schur complement (of the
block I) is 0 - z^T 1 = -1 for every theta: that is the system ``softmax`` differentiates. Its
condition number does not depend on how spread theta is, but it grows with n: it is at most
(2 + sqrt n)(3 + 2 sqrt n) and about n + 1 for uniform z. Sparsemax's KKT point is
z = max(theta - tau, 0), u = tau, v = max(tau - theta, 0), where tau solves sum max(theta - tau, 0) = 1.

All functions take theta of shape (..., n) along ``axis`` and are batched over the other axes.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ift_lib._checks import host_check, is_concrete, tie
from ift_lib.implicit import custom_root
from ift_lib.linear_solve import LinearSolver
from ift_lib.root_finding import bisection

__all__ = ["softmax", "sparsemax", "softmax_kkt_full", "softmax_kkt_reduced", "softmax_kkt_log",
           "softmax_kkt_point", "softmax_mirror_descent", "sparsemax_kkt_full",
           "sparsemax_kkt_point", "sparsemax_threshold"]


# ----------------------------------------------------------------------------- input checks

def _prepare(theta, axis: int, name: str):
    """theta as a float array with ``axis`` moved last; shape and finiteness checked."""
    theta = jnp.asarray(theta)
    if not jnp.issubdtype(theta.dtype, jnp.floating):
        if jnp.issubdtype(theta.dtype, jnp.complexfloating):
            raise TypeError(f"{name}: theta must be real, got dtype {theta.dtype}")
        theta = theta.astype(jnp.result_type(float))
    if theta.ndim == 0:
        raise ValueError(f"{name}: theta must have at least one axis (got a scalar)")
    if not -theta.ndim <= axis < theta.ndim:
        raise ValueError(f"{name}: axis {axis} is out of range for theta of shape {theta.shape}")
    if theta.shape[axis] == 0:
        raise ValueError(f"{name}: the axis {axis} of theta (shape {theta.shape}) is empty; "
                         "there is no probability vector of length 0")
    return jnp.moveaxis(theta, axis, -1)


def _finite_message(name: str):
    def message(num_bad):
        bad = int(np.max(num_bad))
        if bad:
            return (f"{name}: theta contains {bad} NaN or infinite entr{'y' if bad == 1 else 'ies'}; "
                    "the argmax problem on the simplex is only defined for finite theta")
        return None
    return message


def _check_finite(theta, name: str):
    """theta, checked: raise ValueError now (concrete theta) or when the computation runs (traced
    theta). The check is tied into theta, not into the output, so that it also runs when only a
    derivative is used (tied into the output, jit removed it from jit(grad(...)) as dead code)."""
    num_bad = jnp.sum(~jnp.isfinite(theta)).astype(theta.dtype)
    if is_concrete(theta):
        msg = _finite_message(name)(np.asarray(num_bad))
        if msg:
            raise ValueError(msg)
        return theta
    return tie(theta, host_check(_finite_message(name), num_bad, error=ValueError))


# ----------------------------------------------------------------------------- KKT residuals

def softmax_kkt_full(x, theta):
    """All KKT equations of the softmax problem, x = (z, u, v): shapes (n,), (), (n,).

    F(x, theta) = (log z + 1 - theta + u - v,  1.z - 1,  v * z)      (2n + 1 equations).
    Its Jacobian in x is [[diag(1/z), 1, -I], [1^T, 0, 0], [diag(v), 0, diag(z)]].
    """
    z, u, v = x
    return (jnp.log(z) + 1.0 - theta + u - v, jnp.sum(z) - 1.0, v * z)


def softmax_kkt_reduced(x, theta):
    """The KKT system once v = 0 (all z_i > 0), x = (z, u): shapes (n,), ().

    F(x, theta) = (log z + 1 - theta + u,  1.z - 1)                  (n + 1 equations),
    Jacobian [[diag(1/z), 1], [1^T, 0]]: invertible, but its condition grows like 1 / min z.
    """
    z, u = x
    return (jnp.log(z) + 1.0 - theta + u, jnp.sum(z) - 1.0)


def softmax_kkt_log(x, theta):
    """The reduced KKT system in y = log z, x = (y, u): shapes (n,), ().

    F(x, theta) = (y + 1 - theta + u,  sum exp(y) - 1),  Jacobian [[I, 1], [z^T, 0]] with
    Schur complement 0 - z^T 1 = -1: invertible for every finite theta, with a condition number
    that does not depend on the spread of theta (no 1/z entries) but grows like n: at most
    (2 + sqrt n)(3 + 2 sqrt n), about n + 1 for uniform z.
    """
    y, u = x
    return (y + 1.0 - theta + u, jnp.sum(jnp.exp(y)) - 1.0)


def _logsumexp(theta):
    top = jax.lax.stop_gradient(jnp.max(theta, axis=-1, keepdims=True))
    return top + jnp.log(jnp.sum(jnp.exp(theta - top), axis=-1, keepdims=True))


def softmax_kkt_point(theta):
    """The exact KKT point (z, u, v) of the softmax problem for theta of shape (..., n):
    z = exp(theta - lse), u = lse - 1 (shape (...)), v = 0."""
    theta = _prepare(theta, -1, "softmax_kkt_point")
    z = _softmax_value(theta)
    return z, _logsumexp(theta)[..., 0] - 1.0, jnp.zeros_like(z)


def sparsemax_kkt_full(x, theta):
    """All KKT equations of the sparsemax problem, x = (z, u, v): shapes (n,), (), (n,).

    F(x, theta) = (z - theta + u - v,  1.z - 1,  v * z)              (2n + 1 equations).
    Its Jacobian in x is [[I, 1, -I], [1^T, 0, 0], [diag(v), 0, diag(z)]]; singular exactly when
    some i has z_i = v_i = 0 (theta_i on the threshold: a kink of sparsemax).
    """
    z, u, v = x
    return (z - theta + u - v, jnp.sum(z) - 1.0, v * z)


# ----------------------------------------------------------------------------- softmax

def _softmax_value(theta):
    # exp(theta - max) / sum: theta - max is exact, unlike theta - lse (|theta| ~ 1e3 would
    # lose ~1e-13 relative accuracy to the rounding of lse)
    e = jnp.exp(theta - jax.lax.stop_gradient(jnp.max(theta, axis=-1, keepdims=True)))
    return e / jnp.sum(e, axis=-1, keepdims=True)


def softmax_mirror_descent(theta, num_steps: int = 60, step: float = 0.5, init=None):
    """An iterative solver of the softmax problem (for teaching: the IFT ignores how z was found).

    Mirror descent with the entropy mirror map (exponentiated gradient) on the simplex,
        z_{k+1} = z_k^(1 - step) * exp(step * theta) / normaliser,
    so log z_k - log z* shrinks by the factor (1 - step) per step (0 < step <= 1). theta (n,)
    -> z (n,) after ``num_steps`` steps from ``init`` (default: uniform). Plain JAX, so it can
    also be differentiated step by step (unrolled).
    """
    theta = jnp.asarray(theta, jnp.result_type(theta, float))
    if not 0 < step <= 1:
        raise ValueError(f"softmax_mirror_descent: step must be in (0, 1], got {step}")
    log_z = (jnp.full_like(theta, -jnp.log(theta.shape[-1])) if init is None
             else jnp.log(jnp.asarray(init, theta.dtype)))

    def one_step(log_z, _):
        logits = (1.0 - step) * log_z + step * theta
        return logits - _logsumexp(logits), None

    log_z, _ = jax.lax.scan(one_step, log_z, None, length=num_steps)
    return jnp.exp(log_z)


@jax.custom_jvp
def _softmax_schur(theta):
    return _softmax_value(theta)


@_softmax_schur.defjvp
def _softmax_schur_jvp(primals, tangents):
    # IFT on softmax_kkt_log: dy + du 1 = dtheta and z.dy = 0. Eliminating dy = dtheta - du 1
    # leaves z.dtheta + (K/I) du = 0 with the Schur complement K/I = 0 - z.1 = -1, so
    # du = z.dtheta, dy = dtheta - du and dz = z * dy.  O(n).
    (theta,), (dtheta,) = primals, tangents
    z = _softmax_value(theta)
    du = jnp.sum(z * dtheta, axis=-1, keepdims=True)
    return z, z * (dtheta - du)


def _softmax_log_kkt_solution(init, theta):
    """Solver for custom_root: the exact (y, u) of softmax_kkt_log (init is ignored)."""
    lse = _logsumexp(theta)[0]
    return theta - lse, lse - 1.0


@functools.lru_cache(maxsize=None)
def _softmax_by_custom_root(solve, check):
    root = custom_root(softmax_kkt_log, solve=solve, check=check)(_softmax_log_kkt_solution)

    def one(theta):
        y, _ = root((jnp.zeros_like(theta), jnp.zeros((), theta.dtype)), theta)
        return jnp.exp(y)
    return one


def softmax(theta, axis: int = -1, *, solve: str | LinearSolver | None = None, check: bool = True):
    """z = softmax(theta) along ``axis``: the solution of min -z.theta + sum z log z on the simplex.

    Value: the KKT point z = exp(theta - lse(theta)) (stable for any finite theta). Derivative:
    the IFT on the log-space KKT system ``softmax_kkt_log``, dz = z * (dtheta - z.dtheta), i.e.
    J = diag(z) - z z^T. ``solve`` picks how that KKT system is solved:

    * ``None`` (default): block elimination by hand (the Schur complement), O(n) per derivative;
    * any ``ift_lib.linear_solve`` name or callable (``"dense"``, ``"gmres"``, ...): the generic
      ``custom_root`` path on the (n + 1)-equation system, with its IFT checks (dense: forms
      the (n + 1) x (n + 1) matrix, O(n^2), and factors it, O(n^3)).

    ``check=False`` skips every run-time check (the NaN/inf test of theta and, on the
    ``custom_root`` paths, the IFT checks): for timing the bare computations on equal terms.

    Shapes: theta (..., n, ...) -> z of the same shape. Raises ValueError for NaN/inf entries
    (under jit: when the computation runs) and for an empty or out-of-range axis.
    """
    t = _prepare(theta, axis, "softmax")
    if check:
        t = _check_finite(t, "softmax")
    if solve is None:
        z = _softmax_schur(t)
    else:
        one = _softmax_by_custom_root(solve, bool(check))
        z = jax.vmap(one)(t.reshape(-1, t.shape[-1])).reshape(t.shape)
    return jnp.moveaxis(z, -1, axis)


# ----------------------------------------------------------------------------- sparsemax

@jax.jit   # eager sparsemax: one compilation per shape (not one per op and per bisection loop)
def _threshold(theta):
    """tau with sum max(theta - tau, 0) = 1 along the last axis, shape (..., 1): bisection on the
    dual (the function is decreasing in tau, = >= 0 at max - 1 and -1 at max), then the exact
    tau = (sum_S theta - 1) / |S| on the support S = {theta_i > tau} (twice, to settle ties).
    Only the support is found without gradient: the last exact step uses theta itself, so
    dtau = mean_S(dtheta), the IFT derivative of the multiplier u (at a kink: the one-sided
    derivative that ``sparsemax`` uses)."""
    theta_in, theta = theta, jax.lax.stop_gradient(theta)
    top = jnp.max(theta, axis=-1, keepdims=True)

    def excess(tau):
        return jnp.sum(jnp.maximum(theta - tau, 0.0), axis=-1, keepdims=True) - 1.0

    tau = bisection(excess, top - 1.0, top, num_steps=jnp.finfo(theta.dtype).nmant + 10)
    for values in (theta, theta_in):
        support = theta > tau
        size = jnp.sum(support, axis=-1, keepdims=True)
        tau = (jnp.sum(jnp.where(support, values, 0.0), axis=-1, keepdims=True) - 1.0) / size
    return tau


def sparsemax_threshold(theta, axis: int = -1):
    """The threshold tau of sparsemax (the multiplier u of its equality), shape theta's without
    ``axis``."""
    t = _check_finite(_prepare(theta, axis, "sparsemax_threshold"), "sparsemax_threshold")
    return _threshold(t)[..., 0]


def sparsemax_kkt_point(theta):
    """The KKT point (z, u, v) of the sparsemax problem for theta of shape (..., n):
    z = max(theta - tau, 0), u = tau (shape (...)), v = max(tau - theta, 0)."""
    t = _prepare(theta, -1, "sparsemax_kkt_point")
    tau = _threshold(t)
    return jnp.maximum(t - tau, 0.0), tau[..., 0], jnp.maximum(tau - t, 0.0)


@jax.custom_jvp
def _sparsemax_support(theta):
    return jnp.maximum(theta - _threshold(theta), 0.0)


@_sparsemax_support.defjvp
def _sparsemax_support_jvp(primals, tangents):
    # IFT on the KKT system restricted to the support S = {z_i > 0} (there v_S = 0; off it z = 0):
    # dz_S + du = dtheta_S and 1.dz_S = 0, so du = mean_S(dtheta) and
    # dz = 1_S * (dtheta - du), with 1_S the indicator vector of S (``support``).
    (theta,), (dtheta,) = primals, tangents
    z = _sparsemax_support(theta)
    support = (z > 0).astype(z.dtype)
    du = jnp.sum(support * dtheta, axis=-1, keepdims=True) / jnp.sum(support, axis=-1, keepdims=True)
    return z, support * (dtheta - du)


def sparsemax(theta, axis: int = -1):
    """z = sparsemax(theta) along ``axis``: the Euclidean projection of theta onto the simplex.

    Value: z = max(theta - tau, 0) with tau from bisection on the dual plus an exact support
    step (no sort). Derivative: the IFT on the KKT system restricted to the support
    S = {z_i > 0}: J = diag(1_S) - 1_S 1_S^T / |S| (1_S the indicator vector of S), O(n).

    At a kink (some theta_i exactly equal to tau, so z_i = v_i = 0 and the full KKT Jacobian is
    singular) sparsemax has only one-sided derivatives; the rule returns the Jacobian of the
    piece on which i stays outside the support, which is the directional derivative for every
    direction d with d_i <= mean_S(d). Shapes and errors as :func:`softmax`.
    """
    t = _check_finite(_prepare(theta, axis, "sparsemax"), "sparsemax")
    z = _sparsemax_support(t)
    return jnp.moveaxis(z, -1, axis)
