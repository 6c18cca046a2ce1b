# Sourced by build_book.sh and run_tests.sh: a project-local virtual environment in .venv with
# exactly requirements.txt installed (re-installed only when requirements.txt or pyproject.toml change).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp="$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat .venv/.requirements-stamp 2>/dev/null)" != "$stamp" ]; then
  echo "== installing requirements.txt into .venv (first run: a few minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements.txt
  echo "$stamp" > .venv/.requirements-stamp
fi
export PATH="$ROOT/.venv/bin:$PATH"
export JAX_PLATFORMS=cpu
export PYDEVD_DISABLE_FILE_VALIDATION=1
# OpenBLAS worker threads keep spinning after a LAPACK call (e.g. the SVD of custom_root's checks)
# and starve JAX's host callbacks on a 2-core machine (100+ ms stalls per call); one thread is
# faster here. Override by exporting OPENBLAS_NUM_THREADS yourself.
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
# XLA compiles every jitted function and every op run eagerly; identical programs recur (across
# notebooks, and within one when a loop is traced afresh), so keep compiled programs on disk in
# _build/ for the rest of a build, the test runs (nbval executes every chapter twice more) and
# later builds (keyed by the program and XLA_FLAGS; a cold build starts with it empty).
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$ROOT/_build/.jax_cache}"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0
# Three XLA compiler settings for the build and the tests (a cold build is mostly compilation):
# - `--xla_cpu_use_fusion_emitters=false`: XLA:CPU's older code generator compiles the book's
#   programs about 40% faster at the same run time (Chapter 3, benchmarks/compile_counts.py on an
#   idle machine: 124 -> 73 s of compilation, 169 -> 117 s in all).
# - `--xla_disable_hlo_passes=tree_reduction_rewriter`: XLA:CPU splits every reduction of more
#   than 32 elements into a reduce-window tree, and LLVM unrolls each window into a large kernel
#   (the QP solver at n = m = 50: ten kernels of 300 KB of optimized LLVM IR, of 7 MB in all;
#   compile 7.1 -> 4.2 s). Compilation, compile_counts, idle, one after the other: Chapter 4
#   45.6 -> 37.5 s, Chapter 2 34.2 -> 31.8 s, Chapter 3 76.7 -> 70.6 s. The reductions are then
#   emitted as loops (another summation order; the SSE4_2 pass checks XLA's default one).
# - `--xla_backend_optimization_level=0`: no LLVM optimization passes. Most of the ~2,400
#   programs the chapters compile (compile_counts) run once, for microseconds: compiling them
#   about twice as fast (solve_qp at n = 50: 3.0 -> 1.0 s) is worth more than loops running up to
#   about twice as slowly (that solve: 125 -> 200-260 ms). What a chapter times is compiled at
#   XLA's default level anyway, per program (ift_lib.measure.optimized_jit), so the printed
#   timings are those of default JAX.
# run_tests.sh's second nbval pass (SSE4_2) drops all three, so the chapters are checked under
# XLA's defaults too. Set any of these flags yourself (any value) to override it.
case " ${XLA_FLAGS:-} " in
  *xla_cpu_use_fusion_emitters*) ;;
  *) export XLA_FLAGS="${XLA_FLAGS:+$XLA_FLAGS }--xla_cpu_use_fusion_emitters=false" ;;
esac
case " ${XLA_FLAGS:-} " in
  *xla_disable_hlo_passes*) ;;
  *) export XLA_FLAGS="$XLA_FLAGS --xla_disable_hlo_passes=tree_reduction_rewriter" ;;
esac
case " ${XLA_FLAGS:-} " in
  *xla_backend_optimization_level*) ;;
  *) export XLA_FLAGS="$XLA_FLAGS --xla_backend_optimization_level=0" ;;
esac
