"""Dense linear algebra of the tensor core: ``matmul`` on the Swift SGEMM."""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core


def matmul(a: ArrayLike, b: ArrayLike) -> NDArray[np.float32]:
    """Matrix product ``a @ b`` of two 2-D arrays, in float32.

    Runs the tensor core's blocked, packed, multithreaded SGEMM (AVX2 + FMA
    micro-kernel) with the GIL released. Shapes follow NumPy: ``a`` is
    ``(m, k)``, ``b`` is ``(k, n)``, the result ``(m, n)``; sizes of zero are
    valid (``k == 0`` gives zeros). Inputs are converted to float32 once;
    float32 arrays in C or Fortran order are used without a copy.

    Parameters
    ----------
    a : array_like of float16, float32 or float64, shape (m, k)
    b : array_like of float16, float32 or float64, shape (k, n)

    Returns
    -------
    numpy.ndarray of float32, shape (m, n)

    Raises
    ------
    TypeError
        An input is not a real floating array.
    ValueError
        An input is not 2-D, or the inner dimensions differ.
    """
    return _core.matmul(a, b)
