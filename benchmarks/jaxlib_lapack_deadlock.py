"""Minimal reproduction: two concurrent batched LAPACK calls hang jaxlib 0.10.2 on a 2-core CPU.

    JAX_PLATFORMS=cpu OPENBLAS_NUM_THREADS=1 python benchmarks/jaxlib_lapack_deadlock.py [--batch 64] [--n 50]

Two Python threads call the same jitted batched Cholesky factorization (``jnp.linalg.cholesky``
on ``batch`` symmetric positive definite n x n matrices, float64) 200 times each. Prints "ok"
and exits 0 when both finish within ``--seconds``, prints "HUNG" and exits 1 otherwise.

Why it hangs (jax/jaxlib 0.10.2): a batched LAPACK kernel splits its batch over XLA's intra-op
thread pool (``jax::ParallelBatchMap``) and then blocks the thread that called it until the pieces
are done; the calls themselves run on that pool, which has one thread per core. Two calls at once,
one per pool thread, leave no thread to run the pieces, and both wait for ever (gdb on a hung
``solve_qp``: both pool threads in ``BlockingCounter::Wait`` under ``ParallelBatchMap``). Other
projects report the same stack on jax 0.10.2 and that jax 0.11.2 compiles the parallel path out
of its open-source builds; not checked here: the newest jax on this machine's package index is
0.10.2.

Measured here (2026-11-30, 2 cores, jax 0.10.2, n = 50): batch 16, 32 and 64 hang; batch 2 and
8 finish (0.0-0.1 s), as does batch 64 at n = 10. The same happens inside one program wherever
XLA's runtime runs two batched LAPACK calls side by side, which is why ``ift_lib._qp_linalg``
chains every factorization after the previous one; and it is what keeps ``ift_lib.qp`` on one
core for its factorizations: ``solve_qp`` on the two halves of a batch from two threads, or on a
batch sharded over two CPU devices (``jax_num_cpu_devices = 2``), hangs on its first call the
same way.
"""
from __future__ import annotations

import argparse
import os
import threading
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0, help="how long to wait before 'HUNG'")
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import numpy as np
    jax.config.update("jax_enable_x64", True)

    a = np.random.default_rng(0).normal(size=(args.batch, args.n, args.n))
    H = jnp.asarray(a @ a.transpose(0, 2, 1) + args.n * np.eye(args.n))
    chol = jax.jit(jnp.linalg.cholesky)
    jax.block_until_ready(chol(H))               # compiled, and fine when called alone

    def work():
        for _ in range(200):
            jax.block_until_ready(chol(H))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=work, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + args.seconds
    for t in threads:
        t.join(timeout=max(0.1, deadline - time.monotonic()))
    hung = any(t.is_alive() for t in threads)
    print(f"jax {jax.__version__}, {os.cpu_count()} CPUs, two threads, batch {args.batch}, "
          f"n = {args.n}: " + ("HUNG" if hung else f"ok in {time.perf_counter() - t0:.1f} s"),
          flush=True)
    # os._exit: the interpreter's shutdown would wait for (or abort on) the blocked threads
    os._exit(1 if hung else 0)


if __name__ == "__main__":
    main()
