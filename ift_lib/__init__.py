"""ift_lib: the implicit function theorem and differentiation through optimization, in JAX.

``import ift_lib`` gives every public module:

  implicit      custom_root, custom_fixed_point, root_jvp, root_vjp (JAXopt's API, plus checks
                and forward mode); also at the top level
  diagnose      check_ift, IFTReport, ift_diagnostics, jacobian_in_x: the IFT's conditions, measured
  linear_solve  solvers as values: Dense, CG, GMRES, BiCGStab, Neumann, Identity
  root_finding  Newton's method and bisection
  bounds        numbers printed as the bound they were checked against
  measure       compiled memory and wall time
  plotting      the book's figure style
  circle (Ch. 1), softmax (Ch. 2), qp (Ch. 3), unrolled (Ch. 4), widgets
"""
from ift_lib import bounds, diagnose, implicit, linear_solve, measure, plotting, root_finding
from ift_lib.implicit import (IFTConditionError, IFTReport, check_ift, custom_fixed_point,
                              custom_root, jacobian_in_x, root_jvp, root_vjp)
from ift_lib import circle, qp, softmax, unrolled, widgets  # noqa: E402  (chapter modules last)

__version__ = "0.2.0"
__all__ = ["custom_root", "custom_fixed_point", "root_jvp", "root_vjp", "check_ift",
           "jacobian_in_x", "IFTReport", "IFTConditionError", "bounds", "diagnose", "implicit",
           "linear_solve", "measure", "plotting", "root_finding", "circle", "qp", "softmax",
           "unrolled", "widgets"]
