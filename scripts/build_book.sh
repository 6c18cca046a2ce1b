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
echo "== jupyter-book build (warnings are errors, nitpicky)"
jupyter-book build . -W -n --keep-going
echo "$lib_hash" > _build/.ift_lib-hash
echo "Book built: $ROOT/_build/html/index.html"
