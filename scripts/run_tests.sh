#!/usr/bin/env bash
# Set up .venv (if needed) and run every test: build the book (-W), then one pytest run with
#   ift_lib unit tests, nbval (strict) over chapters/, and the browser tests of the built HTML,
# then nbval over chapters/ once more with XLA generating SSE4.2-only kernels: another CPU's
# rounding, so that no stored output depends on this machine's last bits; then the Binder path
# (scripts/binder_path.sh: a fresh venv from requirements.txt alone runs Chapter 1).
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"

if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "!! the browser tests need Debian's chromium at /usr/bin/chromium: apt-get install -y chromium" >&2
  exit 1
fi
bash scripts/build_book.sh

echo "== pytest: ift_lib, nbval (strict) over chapters/, browser tests"
python -m pytest tests chapters --browser --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg \
  --nbval-current-env -p no:cacheprovider "$@"

echo "== nbval (strict) again, as another CPU would round: XLA_FLAGS=--xla_cpu_max_isa=SSE4_2"
echo "   (and with XLA's defaults: _env.sh's three compiler flags dropped)"
xla_default="${XLA_FLAGS//--xla_cpu_use_fusion_emitters=false/}"
xla_default="${xla_default//--xla_disable_hlo_passes=tree_reduction_rewriter/}"
xla_default="${xla_default//--xla_backend_optimization_level=0/}"
xla_default="$(echo $xla_default)"   # squeeze the spaces left behind
XLA_FLAGS="${xla_default:+$xla_default }--xla_cpu_max_isa=SSE4_2" python -m pytest chapters --nbval \
  --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-current-env -p no:cacheprovider -q

echo "== the Binder path: a fresh venv from requirements.txt alone, Chapter 1 run from elsewhere"
bash scripts/binder_path.sh
