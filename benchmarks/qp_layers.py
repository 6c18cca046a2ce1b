"""Differentiable QP layers on the CPU: ift_lib.qp vs qpth vs cvxpylayers (Clarabel), time and accuracy.

    python benchmarks/qp_layers.py                  # three sizes and one QP (5-15 min, 2 cores)
    python benchmarks/qp_layers.py --repeats 3      # fewer timing rounds, for checking the script
    python benchmarks/qp_layers.py --sizes 64x50x50x10 --no-single    # one size only

The full run (default sizes, with the single QP) also writes its results, with the date, the
machine and the versions, to benchmarks/qp_layers_results.json (--json PATH elsewhere, --json ''
not at all); Chapter 3 section 3.7 prints its table from that file and checks its prose against it.

Optional dependencies (not in the book's requirements.txt; torch==2.13.0 is the CPU wheel on this
machine's disk), installed after the book's requirements:

    pip install -r requirements.txt
    pip install -r benchmarks/requirements.txt
    pip install --no-deps qpth==0.0.18     # qpth declares numpy<2 (pip can't override that in a
                                           # requirements file); it runs with numpy 2

Problems (fixed seed), for each size BATCHxNxMxP of --sizes (default 64x50x50x10,
128x100x100x20 and 64x100x50x10, then one QP of the first size: batch 1, where Python overhead
dominates): a batch
of random, feasible, strictly convex QPs in float64,

    minimize_z 1/2 z'Qz + q'z   s.t.  Gz <= h  (m rows),  Az = b  (p rows),   z in R^n,

Q = LL' + 0.1 I with L = randn(n, n) / sqrt(n); q, G, A standard normal; h = G z0 + s0 and b = A z0
with z0 standard normal and s0 ~ U(0, SLACK_SCALE), so z0 is strictly feasible. The scale of s0
sets how many constraints are active at the solution (printed; about a quarter). Loss: the sum
over the batch of w'z with a fixed standard-normal w; each layer computes it and its gradient
w.r.t. all of Q, q, G, h, A, b (forward + backward).

Layers (rows of the table):
  ift_lib            ift_lib.qp.solve_qp (primal-dual interior point, IFT derivative by
                     custom_jvp), loss + gradient in jax.jit(jax.value_and_grad(loss,
                     argnums=(0, ..., 5))), defaults (tol 1e-10 in float64, max_iter 100).
                     Compile time is printed separately.
  ift_lib tol=1e-12  the same with tol=1e-12 (a tighter solve: z closer to the exact solution;
                     the derivative is taken at the exact active set either way).
  qpth               qpth.qp.QPFunction (OptNet's batched PDIPM) with its defaults (eps=1e-12,
                     maxIter=20, notImprovedLim=3, check_Q_spd=True), verbose=-1, torch float64.
  cvxpylayers ...    cvxpylayers.torch.CvxpyLayer, diffcp with solve_method="CLARABEL" (diffcp's
                     own default, ECOS, isn't installed) and mode="dense" (cvxpylayers 1.x: both
                     go in solver_args): Clarabel's default tolerances (1e-8), then tightened
                     ones (TIGHT_CLARABEL), then diffcp's default mode="lsqr". diffcp can't take
                     a parametric quad_form, so the objective is 1/2 ||F'z||^2 + q'z with
                     F = cholesky(Q) computed in torch (the gradient reaches Q through it).
                     Building the layer (canonicalization) is excluded from the times.
Time = the shortest wall time of --repeats rounds after one warm-up call of each: every round
calls every layer of the size once, forward + backward then forward only (backward = the
difference), so a burst of load from other processes weighs on all layers alike and the shortest
call is the one least disturbed by it (the median is recorded too). qpth is timed on 1 torch
thread and on torch's default (one per core), and the target is checked against the faster of
the two: with another process loading the 2 shared cores, qpth's forward once took 7.2 s on 2
threads against 0.24 s on 1 (OpenMP threads waiting on each other), so a call whose warm-up takes
more than SLOW_CALL seconds is timed by that one call only. cvxpylayers' (small) torch ops run on
1 thread; XLA and Clarabel use their own defaults.

Reference ("exact KKT gradients", numpy float64, independent of the three layers): each QP is
solved by Clarabel directly (tolerances 1e-12, P = Q), then polished on its active set (constraints with
lam_i > s_i): the equality-constrained KKT system is solved exactly and the result checked
(lam > 0 on the active set, slack > 0 off it). With K = [[Q, G_a', A'], [G_a, 0, 0], [A, 0, 0]]
and (dz, dlam_a, dnu) = -K^-1 [w; 0; 0], the gradient of w'z is

    q: dz    Q: (dz z' + z dz') / 2    G_a: dlam_a z' + lam_a dz'    h_a: -dlam_a
    A: dnu z' + nu dz'                 b: -dnu                        (zero for inactive rows)

These formulas are checked against central finite differences on a small QP first. Accuracy =
||g - g_ref|| / ||g_ref|| per block (Q, q, G, h, A, b); "max" is the largest of the six.

Every variant above runs on the first size; the others run ift_lib, qpth (both thread settings)
and cvxpylayers dense. A summary table lists every size.

Target (from issue 14), checked on every size with a batch > 1: ift_lib at its defaults at least
2x faster than qpth's faster thread setting in the same run (fwd+bwd), with its max relative
gradient error <= ERROR_BOUND (1e-7) and <= qpth's (errors below ACCURACY_FLOOR counting as equal).
Not part of the test suite; the target printed at the end is checked, not assumed.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import importlib.metadata
import io
import json
import os
import platform
import subprocess
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # as in unrolled_vs_ift.py (2 shared cores)

INSTALL_HINT = ("install the optional benchmark dependencies (after the book's requirements.txt):\n"
                "    pip install -r benchmarks/requirements.txt\n"
                "    pip install --no-deps qpth==0.0.18")


from _report import fmt_time, rel_err, table  # noqa: E402  (benchmarks/ is on sys.path)


def _require(modules: list[str]) -> dict:
    """Import the optional dependencies, or exit with a message naming the missing ones."""
    found, missing = {}, []
    for name in modules:
        try:
            found[name] = importlib.import_module(name)
        except ImportError as e:
            missing.append(f"{name} ({e})")
    if missing:
        print("qp_layers.py: missing dependencies: " + ", ".join(missing) + "\n" + INSTALL_HINT,
              file=sys.stderr)
        sys.exit(2)
    return found


_deps = _require(["numpy", "scipy.sparse", "jax", "ift_lib.qp", "torch", "qpth.qp", "cvxpy",
                  "cvxpylayers.torch", "diffcp", "clarabel"])

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import clarabel  # noqa: E402
import cvxpy as cp  # noqa: E402
import diffcp  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sparse  # noqa: E402
import torch  # noqa: E402
from cvxpylayers.torch import CvxpyLayer  # noqa: E402
from qpth.qp import QPFunction  # noqa: E402

from ift_lib.measure import load_average  # noqa: E402
from ift_lib.qp import solve_qp  # noqa: E402

BLOCKS = ("Q", "q", "G", "h", "A", "b")
SLACK_SCALE = 15.0            # s0 ~ U(0, SLACK_SCALE): about a quarter of the constraints active
REFERENCE_CLARABEL = dict(tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12, tol_ktratio=1e-10)
TIGHT_CLARABEL = dict(tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)   # 1e-12: "AlmostSolved"
ACCURACY_FLOOR = 1e-9         # relative errors below this count as equal (float64, cond(K) < 1e2)
SPEEDUP_TARGET = 2.0
REPEATS = 7                   # timing rounds (the shortest of them is kept)
SLOW_CALL = 20.0              # seconds: a call whose warm-up takes longer is timed by it alone
ERROR_BOUND = 1e-7            # the target's bound on ift_lib's largest relative gradient error
# (batch, n, m, p), each checked against the target: issue 14's two sizes (m = n: solve_qp's
# primal Newton form), and fewer inequalities than variables (m = n / 2: its dual form)
SIZES = ((64, 50, 50, 10), (128, 100, 100, 20), (64, 100, 50, 10))
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "qp_layers_results.json")


# ------------------------------------------------------------------------------------ helpers

def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), or the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> dict:
    """What the times were measured on: CPU model and count, the widest vector ISA (x86 flags),
    whether it is a virtual machine (the hypervisor flag), OS and architecture."""
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    isa = next((name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"),
                                        ("sse4_2", "SSE4.2")) if flag in flags), None)
    return dict(cpu=cpu_model(), cpus=os.cpu_count(), isa=isa,
                virtual_machine="hypervisor" in flags if flags else None,
                system=f"{platform.system()} {platform.machine()}")


def qp_version() -> str:
    """Which ift_lib.qp was measured: git commit, and a hash of its files when they differ."""
    path = sys.modules[solve_qp.__module__].__file__
    files = [os.path.join(os.path.dirname(path), f) for f in ("qp.py", "_qp_ipm.py", "_qp_linalg.py")]
    digest = hashlib.sha256(b"".join(open(f, "rb").read() for f in files)).hexdigest()[:12]
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "diff", "--quiet", "HEAD", "--", *files],
                               timeout=10).returncode != 0
    except (OSError, subprocess.SubprocessError):
        return f"sha256 {digest}"
    return f"at {head or '?'}" + (f" with local changes (sha256 {digest})" if dirty else "")


# ------------------------------------------------------------------------------------ problems

def random_qps(seed: int, batch: int, n: int, m: int, p: int,
               slack_scale: float = SLACK_SCALE) -> dict[str, np.ndarray]:
    """A batch of feasible, strictly convex QPs (see the module docstring)."""
    rng = np.random.default_rng(seed)
    L = rng.standard_normal((batch, n, n)) / np.sqrt(n)
    Q = L @ np.swapaxes(L, 1, 2) + 0.1 * np.eye(n)
    Q = 0.5 * (Q + np.swapaxes(Q, 1, 2))
    q = rng.standard_normal((batch, n))
    G = rng.standard_normal((batch, m, n))
    A = rng.standard_normal((batch, p, n))
    z0 = rng.standard_normal((batch, n))
    s0 = rng.uniform(0.0, slack_scale, (batch, m))
    h = np.einsum("bij,bj->bi", G, z0) + s0
    b = np.einsum("bij,bj->bi", A, z0)
    return dict(Q=Q, q=q, G=G, h=h, A=A, b=b)


# ------------------------------------------------------------------------------------ reference

def clarabel_solve(Q, q, G, h, A, b, settings: dict) -> tuple:
    """One QP by Clarabel directly: (z, lam, nu, status, iterations)."""
    p, m = A.shape[0], G.shape[0]
    s = clarabel.DefaultSettings()
    s.verbose = False
    for key, value in settings.items():
        setattr(s, key, value)
    P = sparse.triu(sparse.csc_matrix(Q)).tocsc()
    M = sparse.csc_matrix(np.vstack([A, G]))
    solver = clarabel.DefaultSolver(P, q, M, np.concatenate([b, h]),
                                    [clarabel.ZeroConeT(p), clarabel.NonnegativeConeT(m)], s)
    sol = solver.solve()
    y = np.asarray(sol.z)
    return np.asarray(sol.x), y[p:], y[:p], str(sol.status), sol.iterations


def kkt_matrix(Q, G_act, A):
    n, k, p = Q.shape[0], G_act.shape[0], A.shape[0]
    return np.block([[Q, G_act.T, A.T],
                     [G_act, np.zeros((k, k)), np.zeros((k, p))],
                     [A, np.zeros((p, k)), np.zeros((p, p))]])


def exact_solution(Q, q, G, h, A, b) -> dict:
    """Clarabel at tolerance 1e-12, then polished: the KKT system on the active set solved exactly.
    Raises if the polished point is not optimal (a multiplier <= 0 or a violated constraint)."""
    Q = 0.5 * (Q + Q.T)                       # the QP depends on sym(Q) only
    n, p = Q.shape[0], A.shape[0]
    z, lam, nu, status, iters = clarabel_solve(Q, q, G, h, A, b, REFERENCE_CLARABEL)
    if status not in ("Solved", "AlmostSolved"):      # the polish below makes it exact anyway
        raise RuntimeError(f"reference: Clarabel status {status}")
    active = lam > h - G @ z
    K = kkt_matrix(Q, G[active], A)
    x = np.linalg.solve(K, np.concatenate([-q, h[active], b]))
    k = int(active.sum())
    z, lam_act, nu = x[:n], x[n:n + k], x[n + k:]
    slack = h - G @ z
    lam = np.zeros(G.shape[0])
    lam[active] = lam_act
    margin = min(lam_act.min(initial=np.inf), slack[~active].min(initial=np.inf))
    if margin <= 0:
        raise RuntimeError("reference: the polished point is not optimal (wrong active set)")
    return dict(z=z, lam=lam, nu=nu, active=active, K=K, margin=margin, clarabel_iters=iters)


def exact_gradient(sol: dict, w) -> dict[str, np.ndarray]:
    """Gradient of w'z w.r.t. Q, q, G, h, A, b by the adjoint of the active-set KKT system."""
    z, lam, nu, active, K = sol["z"], sol["lam"], sol["nu"], sol["active"], sol["K"]
    n, m, p, k = z.size, lam.size, nu.size, int(active.sum())
    d = -np.linalg.solve(K.T, np.concatenate([w, np.zeros(k + p)]))
    dz, dlam_act, dnu = d[:n], d[n:n + k], d[n + k:]
    dlam = np.zeros(m)
    dlam[active] = dlam_act
    return dict(Q=0.5 * (np.outer(dz, z) + np.outer(z, dz)), q=dz,
                G=np.outer(dlam, z) + np.outer(lam, dz) * active[:, None], h=-dlam,
                A=np.outer(dnu, z) + np.outer(nu, dz), b=-dnu)


def check_formulas(n: int = 6, m: int = 8, p: int = 2, step: float = 1e-6) -> dict:
    """Central finite differences of w'z(Q, q, G, h, A, b) on a small QP against exact_gradient
    (the first seed whose QP has 2 or more active constraints but leaves z at least 2 degrees of
    freedom, so that every block has a nonzero gradient)."""
    for seed in range(100):
        prob = {k: v[0] for k, v in random_qps(seed, 1, n, m, p, slack_scale=1.0).items()}
        sol = exact_solution(**prob)
        if 2 <= sol["active"].sum() <= n - p - 2:
            break
    w = np.random.default_rng(seed + 1).standard_normal(n)
    grad = exact_gradient(sol, w)
    errors = {}
    for name in BLOCKS:
        fd = np.zeros_like(prob[name])
        for idx in np.ndindex(prob[name].shape):
            vals = []
            for sign in (1.0, -1.0):
                pert = {k: v.copy() for k, v in prob.items()}
                pert[name][idx] += sign * step    # Q: one entry; the solver uses sym(Q)
                vals.append(w @ exact_solution(**pert)["z"])
            fd[idx] = (vals[0] - vals[1]) / (2 * step)
        errors[name] = rel_err(grad[name], fd)
    return dict(errors=errors, active=int(sol["active"].sum()), m=m, n=n, p=p)


# ------------------------------------------------------------------------------------ layers

def run_ift_lib(prob, w, tol: float | None = None) -> dict:
    args = tuple(jnp.asarray(prob[k]) for k in BLOCKS)
    wj = jnp.asarray(w)

    def loss(Q, q, G, h, A, b):
        return jnp.sum(wj * solve_qp(Q, q, G, h, A, b, tol=tol).z)

    t0 = time.perf_counter()
    vg = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3, 4, 5))).lower(*args).compile()
    compile_vg = time.perf_counter() - t0
    t0 = time.perf_counter()
    fwd = jax.jit(lambda *a: solve_qp(*a, tol=tol)).lower(*args).compile()
    compile_fwd = time.perf_counter() - t0

    value, grads = vg(*args)
    sol = fwd(*args)
    jax.block_until_ready((value, grads, sol))
    it = np.asarray(sol.iterations)
    return dict(z=np.asarray(sol.z), grads={k: np.asarray(g) for k, g in zip(BLOCKS, grads)},
                calls=dict(time=lambda: jax.block_until_ready(vg(*args)),
                           forward=lambda: jax.block_until_ready(fwd(*args))),
                notes=[f"compile: value_and_grad {compile_vg:.2f} s, forward only {compile_fwd:.2f} s",
                       f"IPM iterations per QP: min {it.min()}, median {int(np.median(it))}, max "
                       f"{it.max()} (the vmapped while_loop runs max = {it.max()} trips for the "
                       f"batch); statuses {sorted(set(np.asarray(sol.status).tolist()))}; max primal "
                       f"residual {float(np.max(sol.primal_residual)):.1e}, dual "
                       f"{float(np.max(sol.dual_residual)):.1e}, gap {float(np.max(sol.gap)):.1e}"])


def with_threads(threads: int, fn):
    """``fn`` run with ``threads`` torch threads (the previous setting restored after it)."""
    def run():
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return fn()
        finally:
            torch.set_num_threads(previous)
    return run


def run_qpth(prob, w, threads: int) -> dict:
    leaves = [torch.tensor(prob[k], dtype=torch.float64, requires_grad=True) for k in BLOCKS]
    wt = torch.tensor(w, dtype=torch.float64)
    layer = QPFunction(verbose=-1)           # defaults: eps=1e-12, maxIter=20, notImprovedLim=3

    def forward_backward():
        for x in leaves:
            x.grad = None
        z = layer(*leaves)
        (wt * z).sum().backward()
        return z

    def forward():
        return layer(*leaves)

    z = with_threads(threads, forward_backward)()
    grads = {k: x.grad.numpy().copy() for k, x in zip(BLOCKS, leaves)}
    notes = [f"torch {torch.__version__} on {threads} thread(s)"]
    # iterations: verbose=1 prints one line per iteration of the batched loop (diagnostic run)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), torch.no_grad():
        QPFunction(verbose=1)(*leaves)
    lines = [s for s in out.getvalue().splitlines() if s.startswith("iter:")]
    notes.append(f"batched PDIPM loop: {len(lines)} iterations (maxIter 20; the whole batch "
                 f"iterates together); first: {lines[0] if lines else '?'}; last: "
                 f"{lines[-1] if lines else '?'}")
    return dict(z=z.detach().numpy().copy(), grads=grads, notes=notes,
                calls=dict(time=with_threads(threads, forward_backward),
                           forward=with_threads(threads, forward)))


def cvxpylayers_layer(n: int, m: int, p: int, solver_args: dict):
    z = cp.Variable(n)
    F, q = cp.Parameter((n, n)), cp.Parameter(n)
    G, h = cp.Parameter((m, n)), cp.Parameter(m)
    A, b = cp.Parameter((p, n)), cp.Parameter(p)
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(F.T @ z) + q @ z), [G @ z <= h, A @ z == b])
    assert problem.is_dpp()
    return CvxpyLayer(problem, parameters=[F, q, G, h, A, b], variables=[z], solver_args=solver_args)


def run_cvxpylayers(prob, w, tolerances: dict, mode: str = "dense") -> dict:
    batch, m, n = prob["G"].shape
    p = prob["A"].shape[1]
    solver_args = dict(solve_method="CLARABEL", mode=mode, **tolerances)
    t0 = time.perf_counter()
    layer = cvxpylayers_layer(n, m, p, solver_args)
    t_setup = time.perf_counter() - t0
    leaves = [torch.tensor(prob[k], dtype=torch.float64, requires_grad=True) for k in BLOCKS]
    wt = torch.tensor(w, dtype=torch.float64)

    def forward():
        Q, q, G, h, A, b = leaves
        (z,) = layer(torch.linalg.cholesky(Q), q, G, h, A, b)   # Q = F F'
        return z

    def forward_backward():
        for x in leaves:
            x.grad = None
        z = forward()
        (wt * z).sum().backward()
        return z

    # one diagnostic call recording Clarabel's iterations (diffcp calls solve_internal per QP)
    iters, original = [], diffcp.cone_program.solve_internal

    def counting(*a, **k):
        result = original(*a, **k)
        iters.append((result["info"]["iter"], result["info"]["status"]))
        return result

    diffcp.cone_program.solve_internal = counting
    try:
        z = forward_backward()
    finally:
        diffcp.cone_program.solve_internal = original
    grads = {k: x.grad.numpy().copy() for k, x in zip(BLOCKS, leaves)}
    it = np.array([i for i, _ in iters])
    return dict(z=z.detach().numpy().copy(), grads=grads,
                calls=dict(time=forward_backward, forward=forward),
                notes=[f"layer construction (canonicalization) {t_setup:.2f} s, not timed",
                       f"Clarabel iterations per QP: min {it.min()}, median {int(np.median(it))}, "
                       f"max {it.max()}; statuses {sorted(set(s for _, s in iters))}; solver_args "
                       f"{solver_args}"])


# ---------------------------------------------------------------------------------------- main

def parse_size(text: str) -> tuple[int, int, int, int]:
    """"BxNxMxP" -> (batch, n, m, p)."""
    try:
        batch, n, m, p = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size is BATCHxNxMxP, e.g. 64x50x50x10; got {text!r}")
    return batch, n, m, p


def time_in_rounds(runs: dict, rounds: int) -> None:
    """Time every layer's calls in turns: one warm-up call each, then ``rounds`` rounds that call
    each once; store the shortest time (``time``, ``forward``) and the median (``*_median``). A
    call whose warm-up took over SLOW_CALL seconds is timed by that call alone (noted)."""
    calls = [(name, kind, fn) for name, r in runs.items() for kind, fn in r["calls"].items()]
    times = {(name, kind): [] for name, kind, _ in calls}
    slow = set()
    for name, kind, fn in calls:
        t0 = time.perf_counter()
        fn()
        first = time.perf_counter() - t0
        if first > SLOW_CALL or rounds == 0:
            slow.add((name, kind))
            times[name, kind].append(first)
            runs[name]["notes"].append(f"{kind}: its warm-up call took {first:.3g} s, timed by "
                                       "that call alone")
    for _ in range(rounds):
        for name, kind, fn in calls:
            if (name, kind) not in slow:
                t0 = time.perf_counter()
                fn()
                times[name, kind].append(time.perf_counter() - t0)
    for (name, kind), ts in times.items():
        runs[name][kind] = min(ts)
        runs[name][f"{kind}_median"] = float(np.median(ts))


def compare(size, seed: int, repeats: int, default_threads: int, fd_ok: bool, tight_layers: bool):
    """Time and check every layer on one problem size; print the tables; return the runs and
    the problems' statistics (active fraction, complementarity margin, KKT condition number)."""
    B, n, m, p = size
    prob = random_qps(seed, B, n, m, p)
    w = np.random.default_rng(seed + 1).standard_normal((B, n))
    t0 = time.perf_counter()
    sols = [exact_solution(*(prob[k][i] for k in BLOCKS)) for i in range(B)]
    ref_grads = [exact_gradient(s, w[i]) for i, s in enumerate(sols)]
    ref = {k: np.stack([g[k] for g in ref_grads]) for k in BLOCKS}
    z_ref = np.stack([s["z"] for s in sols])
    t_ref = time.perf_counter() - t0
    frac = np.array([s["active"].mean() for s in sols])
    margin = min(s["margin"] for s in sols)
    cond = max(np.linalg.cond(s["K"]) for s in sols)
    print(f"\n===== {B} QP{'s' * (B > 1)}, n = {n}, m = {m} inequalities, p = {p} equalities, "
          f"float64, seed {seed}; load average {load_average()}\nActive constraints at the "
          f"solution: mean {100 * frac.mean():.0f}% (min {100 * frac.min():.0f}%, max "
          f"{100 * frac.max():.0f}%); strict complementarity margin min_i max(lam_i, s_i) = "
          f"{margin:.2e}; max cond(active-set KKT) = {cond:.2e}; reference (Clarabel 1e-12 + "
          f"active-set polish + adjoint) in {t_ref:.2f} s")

    runs = {}
    tight = f"tol {TIGHT_CLARABEL['tol_feas']:g}"
    layers = [
        ("ift_lib", lambda: run_ift_lib(prob, w)),
        *([("ift_lib tol=1e-12", lambda: run_ift_lib(prob, w, tol=1e-12))]
          if tight_layers else []),
        ("qpth 1 thread", lambda: run_qpth(prob, w, 1)),
        *([(f"qpth {default_threads} threads", lambda: run_qpth(prob, w, default_threads))]
          if default_threads > 1 else []),
        ("cvxpylayers dense", lambda: run_cvxpylayers(prob, w, {})),
        *([(f"cvxpylayers dense {tight}", lambda: run_cvxpylayers(prob, w, TIGHT_CLARABEL)),
           ("cvxpylayers lsqr", lambda: run_cvxpylayers(prob, w, {}, mode="lsqr"))]
          if tight_layers else [])]
    for name, fn in layers:
        t0 = time.perf_counter()
        runs[name] = r = fn()
        r["errors"] = {k: rel_err(r["grads"][k], ref[k]) for k in BLOCKS}
        r["max_error"] = max(r["errors"].values())
        r["per_qp"] = np.array([max(rel_err(r["grads"][k][i], ref[k][i]) for k in BLOCKS)
                                for i in range(B)])
        r["z_error"] = float(np.max(np.abs(r["z"] - z_ref)))
        print(f"  {name}: set up and checked in {time.perf_counter() - t0:.1f} s", flush=True)
    t0 = time.perf_counter()
    time_in_rounds(runs, repeats)
    print(f"  timed in {repeats} rounds in {time.perf_counter() - t0:.1f} s", flush=True)

    base = runs["ift_lib"]
    print(f"\nForward + backward of sum(w * z) w.r.t. Q, q, G, h, A, b for the batch (shortest "
          f"of {repeats} rounds after a warm-up; ratios: this method / ift_lib)")
    table(["method", "fwd+bwd", "forward", "backward", "time ratio", "max rel. grad error",
           "error ratio", "max |z - z_ref|"],
          [[name, fmt_time(r["time"]), fmt_time(r["forward"]),
            fmt_time(max(r["time"] - r["forward"], 0.0)), f"{r['time'] / base['time']:.3g}x",
            f"{r['max_error']:.2e}", f"{r['max_error'] / base['max_error']:.3g}x",
            f"{r['z_error']:.1e}"] for name, r in runs.items()])
    print("\nRelative gradient error per block, ||g - g_ref|| / ||g_ref|| over the batch; per QP: the "
          "largest of its six blocks' errors, median and worst over the batch")
    table(["method", *BLOCKS, "per QP: median", "worst"],
          [[name, *(f"{r['errors'][k]:.2e}" for k in BLOCKS), f"{np.median(r['per_qp']):.1e}",
            f"{r['per_qp'].max():.1e}"] for name, r in runs.items()])
    print("\nNotes")
    for name, r in runs.items():
        for note in r["notes"]:
            print(f"  {name}: {note}")
    stats = dict(active_fraction=dict(mean=float(frac.mean()), min=float(frac.min()),
                                      max=float(frac.max())),
                 complementarity_margin=float(margin), max_kkt_condition=float(cond),
                 reference_seconds=t_ref)
    return runs, stats


def verdict(runs: dict, name: str, fd_ok: bool) -> tuple[bool, str]:
    """The target for layer ``name`` against qpth's faster setting in the same runs."""
    qpth_name = min((k for k in runs if k.startswith("qpth")), key=lambda k: runs[k]["time"])
    q, r = runs[qpth_name], runs[name]
    speedup = q["time"] / r["time"]
    accurate = r["max_error"] <= min(ERROR_BOUND, max(q["max_error"], ACCURACY_FLOOR))
    return (speedup >= SPEEDUP_TARGET and accurate and fd_ok,
            f"{name} vs {qpth_name}: time ratio {speedup:.3g}x "
            f"({'>=' if speedup >= SPEEDUP_TARGET else '<'} {SPEEDUP_TARGET:g}x), max relative "
            f"gradient error {r['max_error']:.2e} vs {q['max_error']:.2e} "
            f"({'<= 1e-7 and equal or better' if accurate else 'above 1e-7 or worse'})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=REPEATS,
                        help="timing rounds (every layer called once per round; shortest kept)")
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=list(SIZES),
                        help="problem sizes BATCHxNxMxP (default: %(default)s); the target is "
                             "checked on every size with a batch > 1")
    parser.add_argument("--single", action=argparse.BooleanOptionalAction, default=True,
                        help="also time one QP (batch 1) of the first size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="write the results here ('' for nowhere; default: "
                             "benchmarks/qp_layers_results.json after a full run with the default "
                             "sizes and repeats, nowhere otherwise)")
    args = parser.parse_args(argv)
    full_run = (list(args.sizes) == list(SIZES) and args.single and args.repeats == REPEATS
                and args.seed == 0)
    json_path = args.json if args.json is not None else (RESULTS if full_run else "")
    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)                   # cvxpylayers' small torch ops; qpth sets its own
    t_start = time.perf_counter()
    started = dict(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   load_average=[round(x, 2) for x in os.getloadavg()])
    versions = ", ".join(f"{name} {importlib.metadata.version(name)}" for name in
                         ("jax", "torch", "qpth", "cvxpy", "cvxpylayers", "diffcp", "clarabel"))
    print(f"{versions}; Python {platform.python_version()}, {os.cpu_count()} CPUs ({cpu_model()}), "
          f"JAX backend {jax.default_backend()}, OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS')}, torch default threads {default_threads}; "
          f"ift_lib/qp.py {qp_version()}; {time.strftime('%Y-%m-%d %H:%M %Z')}; load average at "
          f"start {load_average()} (wall times: other work on the machine inflates them)\n")

    # 1. the reference formulas against finite differences
    fd = check_formulas()
    fd_ok = max(fd["errors"].values()) < 1e-6
    print(f"Reference formulas vs central finite differences (n = {fd['n']}, m = {fd['m']}, "
          f"p = {fd['p']}, {fd['active']} active; step 1e-6): relative error "
          + ", ".join(f"{k} {e:.1e}" for k, e in fd["errors"].items())
          + ("  OK" if fd_ok else "  MISMATCH"))

    # 2. each size: the reference, the layers, the tables (the first size with every variant)
    sizes = list(args.sizes) + ([(1,) + tuple(args.sizes[0][1:])] if args.single else [])
    measured = [(size, *compare(size, args.seed, args.repeats, default_threads, fd_ok,
                                tight_layers=k == 0)) for k, size in enumerate(sizes)]
    results = [(size, runs) for size, runs, _ in measured]

    print(f"\n===== Summary (total {time.perf_counter() - t_start:.0f} s, load average at the end "
          f"{load_average()})")
    table(["size (batch x n x m x p)", "method", "fwd+bwd", "forward", "max rel. grad error"],
          [["x".join(map(str, size)), name, fmt_time(r["time"]), fmt_time(r["forward"]),
            f"{r['max_error']:.2e}"] for size, runs in results for name, r in runs.items()])
    all_met = True
    for size, runs in results:
        label = "x".join(map(str, size))
        if size[0] == 1:
            print(f"{label} (one QP: Python and dispatch overhead dominate; not part of the target): "
                  + verdict(runs, "ift_lib", fd_ok)[1])
            continue
        met, text = verdict(runs, "ift_lib", fd_ok)
        all_met &= met
        if "ift_lib tol=1e-12" in runs:
            met_tight, text_tight = verdict(runs, "ift_lib tol=1e-12", fd_ok)
            print(f"{label}, for comparison, {text_tight}: "
                  f"{'would meet' if met_tight else 'would not meet'} the target")
        print(f"{label}: target (ift_lib at its defaults at least {SPEEDUP_TARGET:g}x faster than "
              f"qpth's faster setting, max relative gradient error <= {ERROR_BOUND:g} and <= "
              f"qpth's, errors below {ACCURACY_FLOOR:g} counting as equal): "
              f"{'MET' if met else 'NOT MET'} -- {text}"
              + ("" if fd_ok else "; the reference formulas FAILED the finite-difference check"))
    print(f"Target on every size: {'MET' if all_met else 'NOT MET'}")
    if json_path:
        write_results(json_path, args, started, default_threads, fd, fd_ok, measured,
                      total=time.perf_counter() - t_start, all_met=all_met)
    return 0


def write_results(path: str, args, started: dict, default_threads: int, fd: dict, fd_ok: bool,
                  measured: list, total: float, all_met: bool) -> None:
    """The run as JSON: when, where, with what; per size the problems' statistics and per method
    the times (seconds), the gradient errors and the notes printed above."""
    names = ("jax", "jaxlib", "numpy", "torch", "qpth", "cvxpy", "cvxpylayers", "diffcp", "clarabel")
    sizes = []
    for size, runs, stats in measured:
        batch, n, m, p = size
        methods = [dict(name=name, seconds=r["time"], forward_seconds=r["forward"],
                        median_seconds=r["time_median"],
                        median_forward_seconds=r["forward_median"],
                        max_error=r["max_error"], errors=r["errors"],
                        per_qp_error=dict(median=float(np.median(r["per_qp"])),
                                          worst=float(r["per_qp"].max())),
                        max_z_error=r["z_error"], notes=r["notes"]) for name, r in runs.items()]
        entry = dict(batch=batch, n=n, m=m, p=p, **stats, methods=methods)
        if batch > 1:
            entry["target_met"] = verdict(runs, "ift_lib", fd_ok)[0]
        sizes.append(entry)
    out = dict(
        benchmark="benchmarks/qp_layers.py",
        command="python benchmarks/qp_layers.py" + "".join(
            f" {a}" for a in (argv_tail(args),) if a),
        date=started["date"], machine=machine(),
        load_average=dict(start=started["load_average"],
                          end=[round(x, 2) for x in os.getloadavg()]),
        versions=dict(python=platform.python_version(),
                      **{k: importlib.metadata.version(k) for k in names}),
        ift_lib_qp=qp_version(), torch_default_threads=default_threads,
        openblas_num_threads=os.environ.get("OPENBLAS_NUM_THREADS"),
        rounds=args.repeats,
        timing=(f"shortest wall time of {args.repeats} rounds after one warm-up call; each "
                "round calls every layer of a size in turn (forward + backward, then forward)"),
        seed=args.seed, total_seconds=round(total, 1),
        reference_formula_check=dict(ok=fd_ok, relative_errors=fd["errors"],
                                     n=fd["n"], m=fd["m"], p=fd["p"], active=fd["active"]),
        target=dict(speedup=SPEEDUP_TARGET, error_bound=ERROR_BOUND,
                    accuracy_floor=ACCURACY_FLOOR, met_on_every_size=all_met),
        sizes=sizes)
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"results written to {path}")


def argv_tail(args) -> str:
    """The options of a run that differ from the defaults, as a command line would give them."""
    parts = []
    if list(args.sizes) != list(SIZES):
        parts.append("--sizes " + " ".join("x".join(map(str, s)) for s in args.sizes))
    if not args.single:
        parts.append("--no-single")
    if args.repeats != REPEATS:
        parts.append(f"--repeats {args.repeats}")
    if args.seed != 0:
        parts.append(f"--seed {args.seed}")
    return " ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
