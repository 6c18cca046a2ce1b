#!/usr/bin/env bash
# Set up .venv (if needed) and build the HTML book, executing the notebooks, warnings as errors.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"

# jupyter-cache keys on the notebook's code only: drop the cache whenever ift_lib changes,
# so the book can never show outputs computed by an older library.
lib_hash="$(find ift_lib -type f \( -name '*.py' -o -name '*.js' -o -name '*.css' \) -print0 | sort -z \
            | xargs -0 cat | sha256sum | cut -d' ' -f1)"
if [ "$(cat _build/.ift_lib-hash 2>/dev/null)" != "$lib_hash" ]; then
  rm -rf _build/.jupyter_cache
fi
# The HTML serves its own JavaScript (require.js, the widget manager, anywidget, MathJax), so it
# works with no network: npm installs the pinned versions (vendor/package-lock.json) once, and
# _ext/offline_assets.py copies them into _build/html/_static/vendor/.
if ! command -v npm >/dev/null; then
  echo "!! the book build needs Node.js/npm (the pages' JavaScript comes from npm packages): install nodejs and npm" >&2
  exit 1
fi
lock_hash="$(sha256sum vendor/package-lock.json | cut -d' ' -f1)"
if [ "$(cat vendor/node_modules/.lock-hash 2>/dev/null)" != "$lock_hash" ]; then
  echo "== npm ci --prefix vendor (the JavaScript the HTML serves itself)"
  npm ci --prefix vendor --no-audit --no-fund --silent
  echo "$lock_hash" > vendor/node_modules/.lock-hash
fi

build_start=$SECONDS   # installs (.venv, npm) done: execution + rendering are timed
cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)"
echo "== timing on: ${cpu:-$(uname -m)}, $(nproc 2>/dev/null || echo '?') cores (the times below depend on the machine)"
echo "== executing the notebooks not yet in jupyter-cache, in parallel"
python scripts/execute_chapters.py

echo "== jupyter-book build (warnings are errors, nitpicky)"
render_start=$SECONDS
jupyter-book build . -W -n --keep-going
echo "$lib_hash" > _build/.ift_lib-hash
echo "== rendered in $((SECONDS - render_start)) s; execution + rendering took $((SECONDS - build_start)) s"
echo "Book built: $ROOT/_build/html/index.html"
