"""ift_lib: the implicit function theorem and differentiation through optimization, in JAX.

``import ift_lib`` gives every public module (plotting and widgets load on first use):

  implicit      custom_root, custom_fixed_point, root_jvp, root_vjp (JAXopt's API, plus checks
                and forward mode); also at the top level
  diagnose      check_ift, IFTReport, ift_diagnostics, jacobian_in_x: the IFT's conditions, measured
  linear_solve  solvers as values: Dense, CG, GMRES, BiCGStab, Neumann, Identity
  root_finding  Newton's method and bisection
  bounds        numbers printed as the bound they were checked against
  prose         measured numbers glued into the chapters' text (myst-nb glue)
  measure       compiled memory and wall time
  plotting      the book's figure style
  circle (Ch. 1), softmax (Ch. 2), qp (Ch. 3), unrolled (Ch. 4), hmm (Ch. 5: exponential
  families, HMMs and CRFs, marginals as gradients), vi (Ch. 5b: semi-amortized variational
  inference), widgets
"""
import importlib

from ift_lib import bounds, diagnose, implicit, linear_solve, measure, prose, root_finding
from ift_lib.implicit import (IFTConditionError, IFTReport, check_ift, custom_fixed_point,
                              custom_root, jacobian_in_x, root_jvp, root_vjp)
from ift_lib import circle, hmm, qp, softmax, unrolled, vi  # noqa: E402  (chapter modules last)

#: Imported on first use (they load matplotlib and anywidget, about a second).
_LAZY_MODULES = ("plotting", "widgets")


def __getattr__(name: str):
    if name in _LAZY_MODULES:
        return importlib.import_module(f"ift_lib.{name}")
    raise AttributeError(f"module 'ift_lib' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_MODULES))

__version__ = "0.2.0"
__all__ = ["custom_root", "custom_fixed_point", "root_jvp", "root_vjp", "check_ift",
           "jacobian_in_x", "IFTReport", "IFTConditionError", "bounds", "diagnose", "implicit",
           "linear_solve", "measure", "prose", "plotting", "root_finding", "circle", "hmm", "qp", "softmax",
           "unrolled", "vi", "widgets"]
