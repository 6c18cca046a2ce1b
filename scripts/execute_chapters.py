"""Execute the book's notebooks into jupyter-cache, two at a time, before `jupyter-book build`.

jupyter-book (myst-nb, execute_notebooks: cache) executes the notebooks it finds uncached one
after another while it reads them; on a machine with two or more cores that leaves cores idle.
This script fills the same cache (_build/.jupyter_cache, the one scripts/build_book.sh clears
when ift_lib changes) with a pool of worker processes, longest notebook first; jupyter-book then
finds every notebook cached ("Using cached notebook") and only renders. The execution settings
are the book's (_config.yml: the notebook's own folder as working directory, the timeout, no
errors allowed); a notebook that fails stops the build here with its traceback.

    python scripts/execute_chapters.py [--jobs N]     # default: one per core
"""
from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
import time
from pathlib import Path

import nbformat
import yaml
from jupyter_cache import get_cache
from jupyter_cache.executors.basic import ExecutionWorkerLocalMProc, ProcessData

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "_build" / ".jupyter_cache"

def last_run_seconds(path: Path, default: float = 60.0) -> float:
    """How long the notebook's committed execution took: from its first cell's start to its last
    cell's end, read from the cells' execution timestamps (notebooks are committed executed);
    ``default`` when they are missing. Only used to start the longest notebook first."""
    from datetime import datetime
    stamps = []
    for cell in nbformat.read(path, as_version=4).cells:
        timing = cell.get("metadata", {}).get("execution", {})
        for key in ("iopub.execute_input", "shell.execute_reply"):
            if key in timing:
                stamps.append(datetime.fromisoformat(timing[key].replace("Z", "+00:00")))
    return (max(stamps) - min(stamps)).total_seconds() if len(stamps) >= 2 else default


def book_notebooks() -> list[Path]:
    """The .ipynb files the table of contents names, longest expected execution first."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node and (ROOT / (node["file"] + ".ipynb")).is_file():
                files.append(ROOT / (node["file"] + ".ipynb"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(toc)
    return sorted(files, key=lambda p: -last_run_seconds(p))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["execute"]
    if config.get("execute_notebooks") != "cache" or config.get("run_in_temp"):
        print("execute_chapters.py: _config.yml no longer says execute_notebooks: cache with "
              "run_in_temp: false; this script would fill a cache the build does not read.", file=sys.stderr)
        return 2

    cache = get_cache(str(CACHE))
    todo = []
    for path in book_notebooks():
        try:
            cache.match_cache_notebook(nbformat.read(path, as_version=4))
            continue                                   # outputs for this exact code are cached
        except KeyError:
            todo.append(cache.add_nb_to_project(str(path)))
    if not todo:
        print("== every notebook is cached (jupyter-cache): nothing to execute")
        return 0

    print(f"== executing {len(todo)} notebook(s), {min(args.jobs, len(todo))} at a time: "
          + ", ".join(Path(r.uri).stem for r in todo), flush=True)
    logging.basicConfig(level=logging.WARNING)
    worker = ExecutionWorkerLocalMProc()             # the notebook's folder as working directory
    jobs = [ProcessData(r.pk, r.uri, cache, config.get("timeout", 30), config.get("allow_errors", False))
            for r in todo]
    start = time.perf_counter()
    with multiprocessing.Pool(min(args.jobs, len(todo))) as pool:   # forked, as jupyter-cache does
        results = pool.map(worker, jobs, chunksize=1)
    wall = time.perf_counter() - start

    failed = [uri for status, uri in results if status != 0]
    for record in todo:
        name = Path(record.uri).stem
        try:
            seconds = cache.match_cache_notebook(nbformat.read(record.uri, as_version=4)).data.get(
                "execution_seconds")
            print(f"   {name:20s} {seconds:6.1f} s")
        except KeyError:
            print(f"   {name:20s} FAILED")
    print(f"== executed in {wall:.0f} s of wall time")
    if failed:
        for uri in failed:
            traceback = cache.get_project_record(uri).traceback or "(no traceback recorded)"
            print(f"\n!! {uri} failed to execute:\n{traceback}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
