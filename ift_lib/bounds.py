"""Numbers as text that reads the same on every CPU.

A value at rounding level (a residual of 3.3e-14, a singular value of 4.3e-17, the sign of a
zero) depends on the machine's SIMD kernels and BLAS: another CPU prints 6.9e-14. What is
reproducible is the *bound* it was checked against. These helpers check a value against a bound
and return the bound as text, so a notebook prints exactly what it asserted:

    >>> print("max |F|", below(3.3e-14, 1e-12))
    max |F| < 1e-12
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["below", "above", "ceil_pow10", "fmt_bounded"]


def ceil_pow10(value: float) -> float:
    """The smallest power of ten >= value (value > 0): 3.3e-14 -> 1e-13."""
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"ceil_pow10 needs a finite positive value, got {value!r}")
    return 10.0 ** math.ceil(math.log10(value) - 1e-12)


def _fmt_pow10(bound: float) -> str:
    return f"{bound:.0e}".replace("e-0", "e-").replace("e+0", "e+").replace("e+", "e")


def _as_float(value, what: str) -> float:
    arr = np.asarray(value, dtype=float)
    return float(np.max(arr)) if arr.size else 0.0


def below(value, bound: float, what: str = "value") -> str:
    """Assert ``max(value) < bound`` (NaN fails) and return ``"< bound"``, e.g. ``"< 1e-12"``.

    Args:
      value: a scalar or array (its largest entry is compared; give absolute values).
      bound: the asserted upper bound.
      what: a name for the error message.
    Raises:
      AssertionError: naming ``what``, the value and the bound, when the check fails.
    """
    v = _as_float(value, what)
    if not v < bound:
        raise AssertionError(f"{what} = {v:.3e} is not below {bound:.1e}")
    return f"< {_fmt_pow10(bound) if _is_pow10(bound) else f'{bound:g}'}"


def above(value, bound: float, what: str = "value") -> str:
    """Assert ``min(value) > bound`` (NaN fails) and return ``"> bound"``."""
    arr = np.asarray(value, dtype=float)
    v = float(np.min(arr))
    if not v > bound:
        raise AssertionError(f"{what} = {v:.3e} is not above {bound:.1e}")
    return f"> {_fmt_pow10(bound) if _is_pow10(bound) else f'{bound:g}'}"


def _is_pow10(bound: float) -> bool:
    return bound > 0 and abs(math.log10(bound) - round(math.log10(bound))) < 1e-9


def fmt_bounded(value: float, floor: float, digits: int = 2) -> str:
    """``value`` with ``digits`` significant digits, or ``"< 1e-k"`` when it is below ``floor``
    (a rounding-level value: only its bound, the power of ten above ``floor``, is reproducible).
    NaN and inf are printed as such."""
    v = float(value)
    if not math.isfinite(v):
        return str(v)
    if abs(v) < floor:
        return f"< {_fmt_pow10(ceil_pow10(floor))}"
    return f"{v:.{digits - 1}e}"
