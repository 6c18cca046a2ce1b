"""Printing helpers shared by the benchmark scripts (time formatting, aligned tables, errors)."""
import numpy as np


def fmt_time(t: float) -> str:
    return f"{t * 1e3:.3g} ms" if t < 1 else f"{t:.3g} s"


def table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def rel_err(got, want) -> float:
    """||got - want|| / ||want||; NaN results count as infinitely wrong."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    err = float(np.linalg.norm(got - want) / np.linalg.norm(want))
    return err if np.isfinite(err) else np.inf
