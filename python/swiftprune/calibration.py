"""Calibration-aware pruning of linear layers from their input activations.

Both functions take the weight in ``(out, in)`` layout (PyTorch ``Linear``;
transpose a Keras ``Dense`` kernel first) and activations ``x`` of shape
``(samples, in)``: the inputs the layer saw on a few hundred calibration
examples (flatten batch and sequence dimensions into ``samples``).
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core
from ._validation import float_array, check_fraction, check_int

__all__ = ["wanda_mask", "sparsegpt"]


def _check_float(name: str, value: Any) -> np.ndarray:
    """`value` as a native-byte-order float16/32/64 array (no copy when possible)."""
    return float_array(name, value)


def _check_layer(w: ArrayLike, x: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
    w = _check_float("w", w)
    x = _check_float("x", x)
    if w.ndim != 2:
        raise ValueError(f"w must be 2-D (out, in), got shape {w.shape}")
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (samples, in), got shape {x.shape}")
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"x has {x.shape[1]} features but w has {w.shape[1]} input columns "
                         f"(w must be (out, in), x (samples, in))")
    return w, x


def wanda_mask(w: ArrayLike, x: ArrayLike, sparsity: float) -> NDArray[np.bool_]:
    """Wanda keep-mask: prune by ``|w_ij| · ‖x_j‖₂`` within each output row.

    The score of weight ``w[i, j]`` is its magnitude times the L2 norm of
    input feature ``j`` over the calibration samples (Sun et al., 2023, "A
    Simple and Effective Pruning Approach for Large Language Models"). Every
    row is pruned to the same sparsity: exactly ``round(sparsity * in)``
    entries of smallest score per row, the lower column first among equal
    scores. No weight update; use the mask as is.

    Parameters
    ----------
    w : array_like of float, shape (out, in)
    x : array_like of float, shape (samples, in)
    sparsity : float in [0, 1]
        The fraction of each row to prune.

    Returns
    -------
    numpy.ndarray of bool, shape (out, in)

    Raises
    ------
    TypeError
        ``w`` or ``x`` is not a real floating array.
    ValueError
        Shapes not 2-D or not matching, ``sparsity`` outside [0, 1], NaN/Inf.
    """
    sparsity = check_fraction("sparsity", sparsity)
    w, x = _check_layer(w, x)
    return _core.wanda_mask(w, x, sparsity)


def sparsegpt(
    w: ArrayLike,
    x: ArrayLike,
    sparsity: Optional[float] = None,
    nm: Optional[Tuple[int, int]] = None,
    block_size: int = 128,
    damp: float = 0.01,
) -> NDArray[np.float32]:
    """SparseGPT: prune a linear layer and update the kept weights to compensate.

    Frantar and Alistarh (2023), "SparseGPT: Massive Language Models Can Be
    Accurately Pruned in One-Shot", as its reference implementation: the
    Hessian ``H = xᵀx`` of the layer inputs, damped by ``damp · mean(diag H)``
    (inputs that are always zero get ``H_jj = 1`` and their weights zeroed),
    the upper Cholesky factor ``U`` of ``H⁻¹``, then columns left to right in
    blocks of ``block_size``: each pruned weight's error ``w / U_jj`` is
    spread over the later columns of its row by ``U[j, j+1:]``
    (optimal-brain-surgeon updates). The weights to prune are chosen by the
    smallest ``w² / U_jj²``: jointly over all rows of each column block at
    its start (unstructured), or within each group of ``m`` columns of a row
    when the group is reached (``nm``).

    The result's output error ``‖x wᵀ − x ŵᵀ‖`` is much lower than that of
    magnitude pruning at the same sparsity when inputs are correlated.

    Parameters
    ----------
    w : array_like of float, shape (out, in)
    x : array_like of float, shape (samples, in)
    sparsity : float in [0, 1], optional
        Unstructured: exactly ``round(sparsity * w.size)`` weights are
        pruned. Required unless ``nm`` is given; with ``nm`` it may be given
        only if it equals ``1 - n/m``.
    nm : (int, int), optional
        ``(n, m)``: keep ``n`` of every ``m`` consecutive weights of each row
        (``1 <= n < m``; ``in`` and ``block_size`` multiples of ``m``). (2, 4)
        is the sparse-tensor-core pattern.
    block_size : int
        Columns per block (lazy-update width in the paper), >= 1.
    damp : float
        Damping as a fraction of the mean Hessian diagonal, >= 0.

    Returns
    -------
    numpy.ndarray of float32, shape (out, in)
        The pruned, updated weights (zeros where pruned).

    Raises
    ------
    TypeError
        ``w``/``x`` not real floating arrays; bad argument types.
    ValueError
        Bad shapes, ``sparsity`` outside [0, 1] or inconsistent with ``nm``,
        bad ``nm``/``block_size``/``damp``, NaN/Inf, or a Hessian that is
        not positive definite (raise ``damp``).
    """
    n = m = 0
    if nm is not None:
        if isinstance(nm, (str, bytes)) or not hasattr(nm, "__len__") or len(nm) != 2:
            raise TypeError(f"nm must be a pair (n, m), got {nm!r}")
        n = check_int("nm[0]", nm[0])
        m = check_int("nm[1]", nm[1], minimum=2)
        if not 1 <= n < m:
            raise ValueError(f"nm = {tuple(nm)!r} must satisfy 1 <= n < m")
        if sparsity is not None:
            sparsity = check_fraction("sparsity", sparsity)
            if abs(sparsity - (1 - n / m)) > 1e-6:
                raise ValueError(f"sparsity = {sparsity} does not match nm = ({n}, {m}), which prunes "
                                 f"1 - n/m = {1 - n / m:g}; pass sparsity=None")
        sparsity = 1 - n / m
    elif sparsity is None:
        raise ValueError("give sparsity (unstructured) or nm=(n, m)")
    sparsity = check_fraction("sparsity", sparsity)
    block_size = check_int("block_size", block_size, minimum=1)
    if isinstance(damp, (bool, np.bool_)) or not isinstance(damp, (int, float, np.floating, np.integer)):
        raise TypeError(f"damp must be a real number, got {damp!r}")
    damp = float(damp)
    if not (damp >= 0 and np.isfinite(damp)):
        raise ValueError(f"damp must be >= 0 and finite, got {damp!r}")
    w, x = _check_layer(w, x)
    if m and w.shape[1] % m:
        raise ValueError(f"w has {w.shape[1]} input columns, not a multiple of m = {m}")
    if m and block_size % m:
        raise ValueError(f"block_size = {block_size} must be a multiple of m = {m}")
    out = _core.sparsegpt(w, x, sparsity, n, m, block_size, damp)
    return out.astype(np.float32, copy=False)
