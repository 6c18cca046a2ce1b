#!/usr/bin/env bash
# The Binder path, as a reader without this repository's scripts would take it: a fresh virtual
# environment with nothing but `pip install -r requirements.txt` (what Binder runs, at the
# repository's root), then Chapter 1 executed by that environment's Jupyter from another
# directory. Fails if the install fails, a cell raises, or the chapter needs the scripts' setup.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
cd "$ROOT"
"$PYTHON" -m venv "$SCRATCH/venv"
"$SCRATCH/venv/bin/python" -m pip install --quiet -r requirements.txt
mkdir "$SCRATCH/elsewhere" && cd "$SCRATCH/elsewhere"
# none of _env.sh's settings: no XLA_FLAGS, no compilation cache (a reader on Binder has neither)
env -u PYTHONPATH -u XLA_FLAGS -u JAX_COMPILATION_CACHE_DIR -u JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS \
  -u JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES JAX_PLATFORMS=cpu "$SCRATCH/venv/bin/jupyter" execute \
  "$ROOT/chapters/01_unit_circle.ipynb" --output "$SCRATCH/elsewhere/executed.ipynb"
"$SCRATCH/venv/bin/python" - "$SCRATCH/elsewhere/executed.ipynb" <<'PY'
import json, sys
nb = json.load(open(sys.argv[1]))
code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
assert not errors and all(c.get("execution_count") for c in code), "Chapter 1 did not run cleanly"
print(f"Binder path: fresh venv from requirements.txt, Chapter 1 ran ({len(code)} code cells)")
PY
