"""ift_lib: the implicit function theorem and differentiation through optimization, in JAX.

Core (every chapter):  custom_root, check_ift, IFTReport, IFTConditionError, linear_solve,
                       bounds (numbers printed as the bound they were checked against).
Chapter modules:       circle (Ch. 1), softmax (Ch. 2), unrolled (Ch. 4).
"""
from ift_lib import bounds, linear_solve, measure
from ift_lib.implicit import IFTConditionError, IFTReport, check_ift, custom_root, jacobian_in_x

__version__ = "0.1.0"
__all__ = ["custom_root", "check_ift", "jacobian_in_x", "IFTReport", "IFTConditionError", "bounds", "linear_solve", "measure"]
