"""What unrolling costs: memory and time per hypergradient, unrolled vs implicit (IFT), and accuracy.

    python benchmarks/unrolled_vs_ift.py            # the full run (a few minutes on 2 cores)
    python benchmarks/unrolled_vs_ift.py --quick    # small sizes, for checking the script

Part 1 (cost): the per-feature weight-decay problem of ift_lib.unrolled at n = 1000 features
(A of shape (m, n) = (1000, 1000), float32), K gradient-descent steps, hypergradient by
  unrolled      reverse mode through the K steps,
  checkpointed  the same with segments of ceil(sqrt(K)) steps recomputed,
  IFT-CG        ift_lib.custom_root at x_K, CG to relative residual 1e-5 (at most 100 iterations).
Memory = XLA's temp_size_in_bytes of the compiled gradient (compiled_temp_bytes); time = median
wall time per gradient after compilation (median_time). The IFT is applied at x_K whether or not
x_K has converged (residual_tol=inf): at small K both gradients are approximations, reported as
their relative difference.

Part 2 (accuracy): ridge regression (one log lambda), 500 samples, 100 correlated features
(AR(1) correlation 0.8), float64: relative error of the hypergradient against the closed form, for
the unrolled and the IFT gradient after K steps, then the IFT with tolerances set for 1e-10, and
the approximate linear solves (CG / Neumann with k terms, identity) at a converged x_K.

Not part of the test suite; the targets printed at the end are checked, not assumed.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# custom_root's IFT checks (n <= 256) take an SVD through LAPACK (OpenBLAS); OpenBLAS's worker
# threads spin after it and starve the checks' host callbacks on a small machine: 140-300 ms
# stalls per gradient instead of ~5 ms, seen here on 2 shared cores. One OpenBLAS thread avoids
# it; XLA's own matrix products (all that the unrolled gradients use) do not go through OpenBLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)   # part 2 needs float64; part 1 uses float32 arrays

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from ift_lib.linear_solve import make_solver  # noqa: E402
from ift_lib.measure import load_average  # noqa: E402
from ift_lib.unrolled import (  # noqa: E402
    BilevelData, closed_form_hypergradient, compiled_temp_bytes, hypergradient, inner_gradient,
    median_time, random_problem, unrolled_solve)


from _report import fmt_time, rel_err, table  # noqa: E402  (benchmarks/ is on sys.path)


def fmt_bytes(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} B"


def repeats_for(K: int) -> int:
    return 20 if K <= 10 else 10 if K <= 100 else 5 if K <= 1000 else 3


# -------------------------------------------------------------------------------------- part 1

def part1_cost(ks: list[int], n: int, m: int) -> dict:
    dtype = jnp.float32
    data = random_problem(0, m=m, n=n, m_val=200, dtype=dtype)
    theta = jnp.asarray(np.random.default_rng(1).uniform(-2.0, 0.0, n), dtype)
    # eta = 1/L computed once, outside the measured functions (it needs an SVD of A)
    L = np.linalg.norm(np.asarray(data.A, np.float64), 2) ** 2 / m + np.exp(np.asarray(theta, np.float64)).max()
    eta = float(1.0 / L)
    cg = make_solver("cg", tol=1e-5, maxiter=100)
    print(f"Part 1: cost per hypergradient, n = {n} features, A of shape ({m}, {n}), float32, "
          f"eta = 1/L = {eta:.4g}, IFT-CG: CG tol 1e-5, maxiter 100")

    def method_fn(method, K):
        options = dict(solve=cg, solve_rtol=np.inf, residual_tol=np.inf) if method == "implicit" else {}
        return lambda t, d: hypergradient(t, d, method=method, num_steps=K, step_size=eta, **options)

    mem, times, extra = {}, {}, {}
    for K in ks:
        t0 = time.perf_counter()
        for method in ("unrolled", "checkpointed", "implicit"):
            fn = method_fn(method, K)
            mem[method, K] = compiled_temp_bytes(fn, theta, data)
            times[method, K] = median_time(fn, theta, data, repeats=repeats_for(K))
        g_unrolled = jax.jit(method_fn("unrolled", K))(theta, data)
        g_ift = jax.jit(method_fn("implicit", K))(theta, data)
        x_K = jax.jit(lambda t, d: unrolled_solve(t, d.A, d.b, num_steps=K, step_size=eta))(theta, data)
        extra[K] = (float(jnp.max(jnp.abs(inner_gradient(x_K, theta, data.A, data.b)))),
                    rel_err(g_ift, g_unrolled))
        print(f"  K = {K}: measured in {time.perf_counter() - t0:.1f} s", flush=True)

    print("\nMemory (XLA temp bytes of the compiled gradient)")
    table(["K", "unrolled", "checkpointed", "IFT-CG", "unrolled/IFT", "checkpointed/IFT"],
          [[str(K), fmt_bytes(mem["unrolled", K]), fmt_bytes(mem["checkpointed", K]),
            fmt_bytes(mem["implicit", K]), f"{mem['unrolled', K] / mem['implicit', K]:.4g}x",
            f"{mem['checkpointed', K] / mem['implicit', K]:.3g}x"] for K in ks])
    print("\nTime (median wall time per gradient, compiled; repeats: "
          + ", ".join(f"K={K}: {repeats_for(K)}" for K in ks) + ")")
    table(["K", "unrolled", "checkpointed", "IFT-CG", "unrolled/IFT", "max|F(x_K)|",
           "rel.diff IFT vs unrolled"],
          [[str(K), fmt_time(times["unrolled", K]), fmt_time(times["checkpointed", K]),
            fmt_time(times["implicit", K]), f"{times['unrolled', K] / times['implicit', K]:.3g}x",
            f"{extra[K][0]:.2e}", f"{extra[K][1]:.2e}"] for K in ks])
    return {"mem": mem, "times": times}


# -------------------------------------------------------------------------------------- part 2

def ridge_data(m: int = 500, n: int = 100, m_val: int = 500, corr: float = 0.8) -> BilevelData:
    """Correlated Gaussian features (AR(1) correlation ``corr``), a sparse true w, unit noise."""
    rng = np.random.default_rng(0)
    C = np.linalg.cholesky(corr ** np.abs(np.subtract.outer(np.arange(n), np.arange(n))))
    A, A_val = rng.standard_normal((m, n)) @ C.T, rng.standard_normal((m_val, n)) @ C.T
    w = rng.standard_normal(n) * (rng.random(n) < 0.2)
    b, b_val = A @ w + rng.standard_normal(m), A_val @ w + rng.standard_normal(m_val)
    return BilevelData(*(jnp.asarray(a, jnp.float64) for a in (A, b, A_val, b_val)))


def part2_accuracy(ks: list[int], k_converged: int) -> dict:
    data = ridge_data()
    m, n = data.A.shape
    lam = 0.1
    theta = jnp.asarray(math.log(lam))
    A = np.asarray(data.A)
    H_eigs = np.linalg.eigvalsh(A.T @ A / m + lam * np.eye(n))
    L = np.linalg.norm(A, 2) ** 2 / m + lam
    eta = 1.0 / L
    ref = closed_form_hypergradient(theta, data)
    print(f"\nPart 2: ridge hypergradient, {m} samples, {n} features (AR(1) correlation 0.8), float64, "
          f"lambda = {lam} (theta = log lambda), cond(H) = {H_eigs[-1] / H_eigs[0]:.3g}, "
          f"eta = 1/L = {eta:.4g}, closed-form dL/dtheta = {float(ref):.10g}")

    cg_tight = make_solver("cg", tol=1e-12, maxiter=1000)

    def fn(method, K, **options):
        return lambda t, d: hypergradient(t, d, method=method, num_steps=K, step_size=eta, **options)

    rows = []
    for K in ks:
        u = fn("unrolled", K)
        i = fn("implicit", K, solve=cg_tight, residual_tol=np.inf)
        x_K = unrolled_solve(theta, data.A, data.b, num_steps=K, step_size=eta)
        res = float(jnp.max(jnp.abs(inner_gradient(x_K, theta, data.A, data.b))))
        rows.append([str(K), f"{res:.2e}", f"{rel_err(jax.jit(u)(theta, data), ref):.2e}",
                     f"{rel_err(jax.jit(i)(theta, data), ref):.2e}",
                     fmt_time(median_time(u, theta, data, repeats=10)),
                     fmt_time(median_time(i, theta, data, repeats=10))])
    print("\nRelative error against the closed form after K steps (IFT at x_K: residual_tol=inf, "
          "CG tol 1e-12)")
    table(["K", "max|F(x_K)|", "unrolled", "IFT at x_K", "t unrolled", "t IFT"], rows)

    # the IFT with tolerances chosen for 1e-10: x_K converged (default residual check on), CG 1e-12
    converged = fn("implicit", k_converged, solve=cg_tight)
    err_converged = rel_err(jax.jit(converged)(theta, data), ref)
    t_converged = median_time(converged, theta, data, repeats=10)
    print(f"\nIFT with tolerances for 1e-10: K = {k_converged} inner steps (custom_root's default "
          f"residual check on), CG tol 1e-12: relative error {err_converged:.2e}, "
          f"time {fmt_time(t_converged)}")

    print(f"\nApproximate linear solves at the converged x_K (K = {k_converged}); k = iterations / terms")
    solves = [("dense", "dense"), ("CG tol 1e-12", cg_tight)]
    solves += [(f"CG k={k}", make_solver("cg", maxiter=k, tol=0.0)) for k in (1, 3, 10, 30)]
    solves += [(f"Neumann k={k}", make_solver("neumann", num_terms=k, step=eta)) for k in (10, 100, 1000)]
    solves += [("identity (eta I)", "identity")]
    rows = []
    for name, solve in solves:
        f = fn("implicit", k_converged, solve=solve, solve_rtol=np.inf)
        rows.append([name, f"{rel_err(jax.jit(f)(theta, data), ref):.2e}"])
    table(["solve", "rel. error"], rows)
    print("(times in part 2 include custom_root's IFT checks, which for n <= 256 take the SVD of dF/dx; "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')})")
    return {"err_converged": err_converged}


# ---------------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script")
    args = parser.parse_args(argv)
    if args.quick:
        ks, n, m, ks2, k_conv = [10, 100, 1000], 300, 300, [10, 100], 3000
    else:
        ks, n, m, ks2, k_conv = [10, 100, 1000, 10000], 1000, 1000, [10, 30, 100, 300, 1000], 3000

    t_start = time.perf_counter()
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, load average at start {load_average()} "
          "(times are wall times: other work on the machine inflates them)\n")
    cost = part1_cost(ks, n, m)
    acc = part2_accuracy(ks2, k_conv)

    mem, times = cost["mem"], cost["times"]
    k_lo, k_hi = ks[0], ks[-1]
    flat = abs(mem["implicit", k_hi] - mem["implicit", k_lo]) / mem["implicit", k_lo]
    ratio = mem["unrolled", k_hi] / mem["implicit", k_hi]
    slower = [K for K in ks if K >= 100 and times["implicit", K] > times["unrolled", K]]
    verdict = lambda ok: "MET    " if ok else "NOT MET"
    print("\nTargets")
    print(f"  {verdict(flat <= 0.05)} IFT memory flat in K: K={k_hi} vs K={k_lo} differ by "
          f"{100 * flat:.2f}% (target <= 5%)")
    print(f"  {verdict(ratio >= 1000)} unrolled/IFT memory at K={k_hi}: {ratio:.4g}x (target >= 1000x)")
    print(f"  {verdict(not slower)} IFT-CG no slower than unrolled at K >= 100: "
          + ", ".join(f"K={K}: {times['unrolled', K] / times['implicit', K]:.3g}x"
                      for K in ks if K >= 100) + " (unrolled time / IFT time)")
    print(f"  {verdict(acc['err_converged'] <= 1e-10)} ridge IFT relative error "
          f"{acc['err_converged']:.2e} (target <= 1e-10)")
    print(f"\nTotal {time.perf_counter() - t_start:.0f} s, load average at the end {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
