"""Pruning: masks that decide which weights are kept (``True``) or removed.

Every function accepts any real floating array (float16/32/64), of any shape
and memory layout, and never modifies its input.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core
from ._validation import check_fraction


def magnitude_mask(w: ArrayLike, sparsity: float) -> NDArray[np.bool_]:
    """Keep-mask that prunes the smallest-magnitude entries of ``w``.

    Exactly ``k = round(sparsity * w.size)`` entries are pruned (Python's
    ``round``, ties to even, as ``torch.nn.utils.prune.l1_unstructured``
    computes it): those of smallest ``|w|``. Among equal magnitudes the entry
    with the lower flat (C-order) index is pruned first. Selection is exact
    and O(n) (radix select on the float bit patterns), run in Swift with the
    GIL released.

    Parameters
    ----------
    w : array_like of float16, float32 or float64
        The weights, any shape.
    sparsity : float in [0, 1]
        The fraction of entries to prune.

    Returns
    -------
    numpy.ndarray of bool, shape ``w.shape``
        ``True`` where the weight is kept.

    Raises
    ------
    TypeError
        ``w`` is not a real floating array, or ``sparsity`` is not a number.
    ValueError
        ``sparsity`` is outside [0, 1], or ``w`` holds NaN or Inf.
    """
    return _core.magnitude_mask(w, check_fraction("sparsity", sparsity))


def prune_magnitude(w: ArrayLike, sparsity: float) -> NDArray[np.float32]:
    """``w`` with its smallest-magnitude entries set to zero, as float32.

    Equivalent to ``w * magnitude_mask(w, sparsity)``; see
    :func:`magnitude_mask` for the exact selection rule and errors.
    """
    mask = magnitude_mask(w, sparsity)
    return np.multiply(np.asarray(w, dtype=np.float32), mask, dtype=np.float32)
