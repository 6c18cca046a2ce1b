"""Count XLA compilations per code cell of a chapter notebook (the load-independent measure of
how much of a chapter's execution time goes to compiling).

    JAX_PLATFORMS=cpu python benchmarks/compile_counts.py chapters/01_unit_circle.ipynb [--top 5]

Runs the notebook's code cells in order in one in-process IPython shell (working directory: the
notebook's folder), with ``jax_log_compiles`` on and no persistent compilation cache, and prints
per cell the number of XLA compilations, their total time and the most frequently compiled
names, then the chapter's total and the names that took the most compile time. Nothing is
written back to the notebook. It compiles with whatever XLA_FLAGS the environment has (the book's
scripts add two compiler flags; scripts/_env.sh says which and why).
"""
from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import pathlib
import re
import sys
import time

os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)   # count real compilations, not cache hits

_FINISHED = re.compile(r"Finished XLA compilation of (.+?) in ([0-9.eE+-]+) sec")


class _Compiles(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.events = []

    def emit(self, record):
        m = _FINISHED.search(record.getMessage())
        if m:
            self.events.append((m.group(1), float(m.group(2))))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebook", type=pathlib.Path)
    ap.add_argument("--top", type=int, default=4, help="names shown per cell")
    ap.add_argument("--json", type=pathlib.Path, help="also write the per-cell counts here")
    args = ap.parse_args(argv)
    path = args.notebook.resolve()
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]

    import jax
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output
    jax.config.update("jax_log_compiles", True)
    handler = _Compiles()
    for name in ("jax._src.interpreters.pxla", "jax._src.dispatch", "jax._src.compiler"):
        lg = logging.getLogger(name)
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
        lg.propagate = False   # the WARNING-level log lines would flood stderr

    os.chdir(path.parent)
    shell = InteractiveShell.instance()
    rows, t_all = [], time.perf_counter()
    for i, cell in enumerate(cells):
        src = "".join(cell["source"])
        start, t0 = len(handler.events), time.perf_counter()
        with capture_output():   # the cells' own output is not what this reports
            result = shell.run_cell(src, silent=True)
        wall = time.perf_counter() - t0
        ev = handler.events[start:]
        if not result.success:
            print(f"cell {i}: FAILED", file=sys.stderr)
            return 1
        top = collections.Counter(n for n, _ in ev).most_common(args.top)
        rows.append({"cell": i, "compiles": len(ev), "compile_s": round(sum(s for _, s in ev), 2),
                     "wall_s": round(wall, 2), "top": top})
        if ev:
            print(f"cell {i:3d}: {len(ev):4d} compiles {sum(s for _, s in ev):7.2f} s "
                  f"(wall {wall:6.2f} s)  " + ", ".join(f"{n} x{c}" for n, c in top))
    total = len(handler.events)
    common = collections.Counter(n for n, _ in handler.events).most_common(args.top * 3)
    print("most compiled: " + ", ".join(f"{n} x{c}" for n, c in common))
    seconds = collections.Counter()
    for n, t in handler.events:
        seconds[n] += t
    print("most compile time: " + ", ".join(f"{n} {t:.1f} s" for n, t in seconds.most_common(args.top * 3)))
    print(f"TOTAL {path.name}: {total} compiles, {sum(s for _, s in handler.events):.1f} s compiling, "
          f"{time.perf_counter() - t_all:.1f} s wall")
    if args.json:
        args.json.write_text(json.dumps({"notebook": path.name, "total": total, "most": common,
                                         "cells": rows},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
