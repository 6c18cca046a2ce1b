"""Interactive widgets of the book (anywidget: Python computes, JavaScript only draws and looks up).

CircleWidget   Ch. 1: drag a point on the unit circle, see the IFT slope dx/dtheta and the
               local parameterization x(theta) there; where dF/dx = 0 it says the IFT does not apply.
SoftmaxWidget  Ch. 2: move the temperature T and pick a score vector theta; see softmax(theta/T) and
               sparsemax(theta/T) side by side, sparsemax's support, and both Jacobians d/dtheta.
KIterationsWidget  Ch. 4: move the number K of gradient-descent steps; see the iterates x_0..x_K
               on the level sets of the inner problem, the unrolled and the IFT hypergradient
               approach the closed form, and the memory of each (unrolled grows with K, IFT flat).
"""
from ift_lib.widgets.circle import CircleWidget
from ift_lib.widgets.k_iterations import KIterationsWidget
from ift_lib.widgets.softmax import SoftmaxWidget

__all__ = ["CircleWidget", "SoftmaxWidget", "KIterationsWidget"]
