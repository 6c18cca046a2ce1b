"""What ift_lib's safety checks cost: a ridge hypergradient by the IFT, ift_lib vs JAXopt.

    python benchmarks/implicit_vs_jaxopt.py            # about a minute on 2 cores
    python benchmarks/implicit_vs_jaxopt.py --n 300    # another size

Inner problem (float64): x*(theta) = argmin_x  |A x - b|^2 / (2m) + exp(theta) |x|^2 / 2 with A of
shape (m, n) = (5n, n), solved by a Cholesky solve; the optimality condition
F(x, theta) = A^T (A x - b) / m + exp(theta) x = 0. Outer loss |A_val x* - b_val|^2 / 2.
The hypergradient d loss / d theta is taken with jit(grad(...)) by
  JAXopt       jaxopt.implicit_diff.custom_root, CG (its solve_cg), no checks (JAXopt has none);
  ift_lib      ift_lib.custom_root, the same CG, default checks (what a user gets);
  ift_lib off  the same with checks off.
Reported: median time per gradient (forward solve included, the same in every row), the ratio to
JAXopt, and the relative error against the closed form (an exact dense solve). Target (issue 10):
ift_lib with default checks within 2x of JAXopt at relative error <= 1e-10.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import platform
import sys
import warnings

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import ift_lib  # noqa: E402
from ift_lib.measure import median_time  # noqa: E402
from _report import fmt_time, rel_err, table  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")   # JAXopt warns on import that it is no longer maintained
    import jaxopt  # noqa: E402


def problem(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    m = 5 * n
    A, A_val = rng.normal(size=(m, n)), rng.normal(size=(m, n))
    w = rng.normal(size=n)
    b, b_val = A @ w + 0.5 * rng.normal(size=m), A_val @ w + 0.5 * rng.normal(size=m)
    return tuple(jnp.asarray(a) for a in (A, b, A_val, b_val))


def F(x, theta, A, b):
    return A.T @ (A @ x - b) / A.shape[0] + jnp.exp(theta) * x


def inner_solve(init, theta, A, b):
    H = A.T @ A / A.shape[0] + jnp.exp(theta) * jnp.eye(A.shape[1])
    return jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(H), A.T @ b / A.shape[0])


def closed_form(theta, A, b, A_val, b_val):
    x = inner_solve(None, theta, A, b)
    H = A.T @ A / A.shape[0] + jnp.exp(theta) * jnp.eye(A.shape[1])
    dx = -jnp.linalg.solve(H, jnp.exp(theta) * x)
    return (A_val.T @ (A_val @ x - b_val)) @ dx


def hypergradient(solver):
    def loss(theta, A, b, A_val, b_val):
        x = solver(jnp.zeros(A.shape[1]), theta, A, b)
        return 0.5 * jnp.sum((A_val @ x - b_val) ** 2)
    return jax.grad(loss)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args(argv)
    theta = jnp.asarray(-1.0)
    data = problem(args.n)
    want = float(closed_form(theta, *data))
    tol = 1e-12
    jo_cg = lambda matvec, b: jaxopt.linear_solve.solve_cg(matvec, b, tol=tol)
    methods = {
        "JAXopt (CG, no checks)": jaxopt.implicit_diff.custom_root(F, solve=jo_cg)(inner_solve),
        "ift_lib (CG, default checks)": ift_lib.custom_root(
            F, solve=ift_lib.linear_solve.CG(tol=tol))(inner_solve),
        "ift_lib (CG, checks off)": ift_lib.custom_root(
            F, solve=ift_lib.linear_solve.CG(tol=tol), check=False)(inner_solve),
        "ift_lib (dense, default checks)": ift_lib.custom_root(F)(inner_solve),
    }
    rows, times, errs = [], {}, {}
    for name, solver in methods.items():
        g = hypergradient(solver)
        times[name] = median_time(g, theta, *data, repeats=args.repeats, warmup=3)
        errs[name] = rel_err(jax.jit(g)(theta, *data), want)
    base = times["JAXopt (CG, no checks)"]
    for name in methods:
        rows.append([name, fmt_time(times[name]), f"{times[name] / base:.2f}x", f"{errs[name]:.1e}"])
    print(f"ridge hypergradient, n = {args.n}, m = {5 * args.n}, float64; "
          f"{platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__}")
    table(["method", "time / gradient", "vs JAXopt", "rel. error"], rows)
    ratio = times["ift_lib (CG, default checks)"] / base
    ok = ratio <= 2.0 and errs["ift_lib (CG, default checks)"] <= 1e-10
    print(f"target: default-checked ift_lib <= 2x JAXopt at error <= 1e-10: "
          f"{'MET' if ok else 'MISSED'} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
