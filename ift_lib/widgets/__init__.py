"""Interactive widgets of the book (anywidget: Python computes, JavaScript only draws and looks up).

CircleWidget   Ch. 1: drag a point on the unit circle, see the IFT slope dx/dtheta and the
               local parameterization x(theta) there; where dF/dx = 0 it says the IFT does not apply.
"""
from ift_lib.widgets.circle import CircleWidget

__all__ = ["CircleWidget"]
