"""Calibration-aware pruning of linear layers from their input activations.

Both functions take the weight in ``(out, in)`` layout (PyTorch ``Linear``;
transpose a Keras ``Dense`` kernel first) and activations ``x`` of shape
``(samples, in)``: the inputs the layer saw on a few hundred calibration
examples (flatten batch and sequence dimensions into ``samples``), or a
:class:`~swiftprune.calibration.HessianAccumulator` holding their ``xᵀx``.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core
from ._validation import check_fraction, check_int, float_array
from .calibration.hessian import HessianAccumulator
from .quantization import QuantizedTensor, _check_bool

__all__ = ["wanda_mask", "sparsegpt", "sparsegpt_quantize"]


def _check_float(name: str, value: Any) -> np.ndarray:
    """`value` as a native-byte-order float16/32/64 array (no copy when possible)."""
    return float_array(name, value)


def _check_accumulated(w: ArrayLike, x: HessianAccumulator) -> np.ndarray:
    w = _check_float("w", w)
    if w.ndim != 2:
        raise ValueError(f"w must be 2-D (out, in), got shape {w.shape}")
    if x.features != w.shape[1]:
        raise ValueError(f"layer {x.name!r}: the Hessian has {x.features} features but w has {w.shape[1]} input "
                         f"columns (w must be (out, in))")
    x.check()
    return w


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
    x : array_like of float, shape (samples, in), or HessianAccumulator
        The layer's calibration inputs, or their accumulated ``xᵀx``.
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
    if isinstance(x, HessianAccumulator):
        w = _check_accumulated(w, x)
        # One "sample" whose entries are the column norms has the same ‖x_j‖₂.
        norms = x.column_norms_[None, :].astype(np.float64 if w.dtype == np.float64 else np.float32)
        return _core.wanda_mask(w, norms, sparsity)
    w, x = _check_layer(w, x)
    return _core.wanda_mask(w, x, sparsity)


def _pattern(sparsity: Optional[float], nm: Optional[Tuple[int, int]], block_size: int,
             damp: float) -> tuple[float, int, int, int, float]:
    """Validated ``(sparsity, n, m, block_size, damp)`` of a SparseGPT call (``n = m = 0``: unstructured)."""
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
    return sparsity, n, m, block_size, damp


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
    x : array_like of float, shape (samples, in), or HessianAccumulator
        The layer's calibration inputs, or their accumulated ``xᵀx`` (then the
        result is float64 for float64 ``w``, else float32).
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
    sparsity, n, m, block_size, damp = _pattern(sparsity, nm, block_size, damp)
    if isinstance(x, HessianAccumulator):
        w = _check_accumulated(w, x)
        if m and w.shape[1] % m:
            raise ValueError(f"w has {w.shape[1]} input columns, not a multiple of m = {m}")
        if m and block_size % m:
            raise ValueError(f"block_size = {block_size} must be a multiple of m = {m}")
        if not m:
            block_size = min(block_size, max(w.shape[1], 1))  # wider blocks change nothing
        try:
            out = _core.sparsegpt_hessian(w, x.hessian_, sparsity, n, m, block_size, damp)
        except ValueError as error:
            raise ValueError(f"layer {x.name!r}: {error}") from None
        return out.astype(np.float64 if w.dtype == np.float64 else np.float32, copy=False)
    w, x = _check_layer(w, x)
    if m and w.shape[1] % m:
        raise ValueError(f"w has {w.shape[1]} input columns, not a multiple of m = {m}")
    if m and block_size % m:
        raise ValueError(f"block_size = {block_size} must be a multiple of m = {m}")
    out = _core.sparsegpt(w, x, sparsity, n, m, block_size, damp)
    return out.astype(np.float32, copy=False)


def sparsegpt_quantize(
    w: ArrayLike,
    x: Any,
    sparsity: Optional[float] = None,
    nm: Optional[Tuple[int, int]] = None,
    bits: int = 4,
    group_size: Optional[int] = 128,
    *,
    symmetric: bool = True,
    block_size: int = 128,
    damp: float = 0.01,
) -> QuantizedTensor:
    """SparseGPT's joint sparsification and quantization, in one pass.

    Frantar and Alistarh (2023), section 3.5: :func:`sparsegpt`'s column
    loop, where each kept weight is also quantized when its column is
    reached, and its rounding error is compensated by the later columns
    together with the pruning error. Pruned weights are stored as the zero
    point (value 0), so the result's :meth:`~QuantizedTensor.dequantize` is
    exactly zero where pruned. Scales are symmetric or affine min–max, one
    per output row (``group_size=None``, taken from the weights before the
    loop, as the paper's code) or per group of ``group_size`` input columns
    (taken from the updated weights when the group is reached, as
    :func:`~swiftprune.gptq`). Runs in float32, as :func:`sparsegpt`.

    Parameters
    ----------
    w : array_like of float, shape (out, in)
    x : array_like of float, shape (samples, in), or HessianAccumulator
    sparsity, nm, block_size, damp
        As :func:`sparsegpt`. ``block_size`` is rounded down to a multiple of
        ``group_size`` (at least one group).
    bits : int in 2..8
    group_size : int or None
        Must divide ``in``; with ``nm``, a multiple of ``m``.
    symmetric : bool
        As :func:`~swiftprune.quantize`.

    Returns
    -------
    QuantizedTensor
        ``axis=0``, ``group_size`` as given (the layout of ``quantize(w,
        bits, axis=0, group_size=group_size)``).

    Raises
    ------
    TypeError, ValueError
        As :func:`sparsegpt`, plus bits outside 2..8 or a ``group_size`` that
        does not divide ``in``.
    """
    sparsity, n, m, block_size, damp = _pattern(sparsity, nm, block_size, damp)
    bits = check_int("bits", bits, minimum=2)
    if bits > 8:
        raise ValueError(f"bits must be in 2..8, got {bits}")
    group = 0 if group_size is None else check_int("group_size", group_size, minimum=1)
    symmetric = _check_bool("symmetric", symmetric)
    if isinstance(x, HessianAccumulator):
        w = _check_accumulated(w, x)
        name = x.name
        hessian = x.hessian_
    else:
        w, x = _check_layer(w, x)
        if x.shape[0] == 0 and w.shape[1] > 0:
            raise ValueError("x needs at least one calibration sample")
        name = None
        hessian = HessianAccumulator(x.shape[1], name="x").update(x.astype(np.float32, copy=False)).hessian_
    if group and w.shape[1] % group:
        raise ValueError(f"group_size = {group} does not divide the {w.shape[1]} input columns")
    if m and w.shape[1] % m:
        raise ValueError(f"w has {w.shape[1]} input columns, not a multiple of m = {m}")
    if not m:
        block_size = min(block_size, max(w.shape[1], 1))  # wider blocks change nothing
    try:
        values, scale, zero_point = _core.sparsegpt_quant_hessian(w, hessian, sparsity, n, m, block_size, damp, bits,
                                                                  symmetric, group)
    except ValueError as error:
        raise ValueError(f"layer {name!r}: {error}" if name else str(error)) from None
    return QuantizedTensor._trusted(values, scale, zero_point, bits=bits, symmetric=symmetric, axis=0,
                                    group_size=group_size, method="sparsegpt")
