"""Activation-aware scaling: AWQ and SmoothQuant, and bias correction.

Both scalings multiply each input column ``j`` of a linear layer's weight
``(out, in)`` by ``s_j`` and return the inverse ``1 / s`` that the operation
feeding the layer must absorb (a preceding LayerNorm's gain and bias, or the
rows of a preceding Linear/Conv's weight and bias): ``W x = (W diag(s))
(diag(1/s) x)``, so the model's function is unchanged before quantization.

- :func:`awq` (Lin et al., 2023, "AWQ: Activation-aware Weight Quantization"):
  ``s = mean|x|^α`` normalized by ``sqrt(max(s)·min(s))``, ``α`` searched on a
  grid for the least output error ``‖(W − Q(W·s)/s) Xᵀ‖``, computed exactly
  from the accumulated Hessian: ``Σ_r ΔW_r H ΔW_rᵀ``.
- :func:`smoothquant` (Xiao et al., 2023): ``s = max|x|^α / max|W_j|^(1−α)``,
  moving activation outliers into the weights for W8A8.
- :func:`bias_correction`: the bias that restores the mean output a
  quantization moved: ``b + (W − Ŵ) E[x]``.

Statistics come from a :class:`~swiftprune.calibration.HessianAccumulator`
(``abs_sum_``, ``abs_max_``, ``sum_``, ``hessian_``); the quantization runs in
the Swift core, the search's error is a float64 NumPy product.
"""
from __future__ import annotations

import numbers
from typing import Any, Optional, Tuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import check_fraction, check_int
from .calibration.hessian import HessianAccumulator, as_accumulator
from .quantization import QuantizedTensor, quantize

__all__ = ["awq", "smoothquant", "bias_correction"]


def _weight(w: ArrayLike, statistics: HessianAccumulator, *, uses_hessian: bool) -> np.ndarray:
    """``w`` checked against ``statistics`` as float32 (out, in). The few-samples
    warning is about a rank-deficient ``xᵀx``: only a method that uses it warns."""
    array = np.asarray(w)
    if array.dtype not in (np.float16, np.float32, np.float64):
        raise TypeError(f"w must be a real floating-point array, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"w must be 2-D (out, in), got shape {array.shape}")
    if array.shape[1] != statistics.features:
        raise ValueError(f"layer {statistics.name!r}: w has {array.shape[1]} input columns but the calibration "
                         f"statistics have {statistics.features} features (w must be (out, in))")
    if not np.isfinite(array).all():
        raise ValueError("w contains NaN or Inf values")
    statistics.check(warn=uses_hessian)
    return array.astype(np.float32)


def _statistics(x: Any) -> HessianAccumulator:
    return x if isinstance(x, HessianAccumulator) else as_accumulator(x, "x")


def output_error(delta: np.ndarray, hessian: np.ndarray) -> float:
    """``‖ΔW Xᵀ‖²`` from ``H = XᵀX``: ``Σ_r ΔW_r H ΔW_rᵀ`` (float64)."""
    d = np.asarray(delta, np.float64)
    return float(np.einsum("ij,ij->", d @ hessian, d))


def awq(w: ArrayLike, x: Any, bits: int = 4, group_size: Optional[int] = 128, *, symmetric: bool = False,
        n_grid: int = 20) -> Tuple[QuantizedTensor, NDArray[np.float32], float]:
    """AWQ: search per-input-channel scales that protect salient weights, then quantize.

    Parameters
    ----------
    w : array_like, shape (out, in)
    x : array_like (samples, in) or HessianAccumulator
        The layer's calibration inputs or their statistics.
    bits, group_size, symmetric
        The quantizer, as :func:`~swiftprune.quantize` with ``axis=0``
        (AWQ's default: 4 bits, groups of 128, affine).
    n_grid : int
        ``α`` is searched over ``k / n_grid`` for ``k < n_grid`` (AWQ: 20).

    Returns
    -------
    (QuantizedTensor, numpy.ndarray, float)
        The quantized scaled weight ``Q(W · s)`` (``s`` per input column),
        the inverse scale ``1 / s`` (float32, shape ``(in,)``) the preceding
        operation must absorb, and the chosen ``α``. ``Q(W·s).dequantize() *
        (1/s)`` is the weight to compare with ``W``.
    """
    statistics = _statistics(x)
    w = _weight(w, statistics, uses_hessian=True)
    n_grid = check_int("n_grid", n_grid, minimum=1)
    hessian = statistics.hessian_
    mean_abs = statistics.abs_sum_ / max(statistics.count_, 1)
    best: Tuple[float, float, np.ndarray, QuantizedTensor] | None = None
    for k in range(n_grid):
        alpha = k / n_grid
        s = np.maximum(mean_abs ** alpha, 1e-4)
        s = s / np.sqrt(s.max() * s.min())
        scaled = (w * s[None, :]).astype(np.float32)
        q = quantize(scaled, bits, symmetric=symmetric, axis=0, group_size=group_size)
        error = output_error(q.dequantize() / s[None, :] - w, hessian)
        if best is None or error < best[0]:
            best = (error, alpha, s, q)
    assert best is not None
    _, alpha, s, q = best
    return q, (1.0 / s).astype(np.float32), alpha


def smoothquant(w: ArrayLike, x: Any, alpha: float = 0.5) -> Tuple[NDArray[np.float32], NDArray[np.float32]]:
    """SmoothQuant: migrate activation outliers into the weight.

    ``s_j = max|x_j|^α / max_i |w_ij|^(1−α)`` (clamped to ≥ 1e-5; ``s_j = 1``
    where the input or the weight column is all zero).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The smoothed weight ``W · diag(s)`` (float32, (out, in)) and the
        inverse scale ``1 / s`` (float32, (in,)) for the preceding operation.
    """
    alpha = check_fraction("alpha", alpha)
    statistics = _statistics(x)
    w = _weight(w, statistics, uses_hessian=False)
    act = statistics.abs_max_
    weight_max = np.abs(w).max(axis=0).astype(np.float64) if w.shape[0] else np.zeros(w.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        s = act ** alpha / weight_max ** (1 - alpha)
    s = np.where((act > 0) & (weight_max > 0) & np.isfinite(s), np.maximum(s, 1e-5), 1.0)
    return (w * s[None, :]).astype(np.float32), (1.0 / s).astype(np.float32)


def bias_correction(w: ArrayLike, w_hat: ArrayLike, x: Any, bias: Optional[ArrayLike] = None) -> NDArray[np.float32]:
    """The bias that keeps a compressed layer's mean output: ``b + (W − Ŵ) E[x]``.

    Parameters
    ----------
    w, w_hat : array_like, shape (out, in)
        The original and the quantized (dequantized) weight; a conv kernel as
        its ``(out, in·kh·kw)`` matrix, with im2col statistics.
    x : array_like (samples, in) or HessianAccumulator
    bias : array_like, shape (out,), optional
        The layer's bias (zero when absent).
    """
    statistics = _statistics(x)
    w = _weight(w, statistics, uses_hessian=False)
    w_hat = np.asarray(w_hat, np.float64)
    if w_hat.shape != w.shape:
        raise ValueError(f"w_hat has shape {w_hat.shape}, w has {w.shape}")
    mean = statistics.sum_ / max(statistics.count_, 1)
    correction = (w.astype(np.float64) - w_hat) @ mean
    if bias is None:
        return correction.astype(np.float32)
    b = np.asarray(bias, np.float64)
    if b.shape != (w.shape[0],):
        raise ValueError(f"bias must have shape ({w.shape[0]},), got {b.shape}")
    return (b + correction).astype(np.float32)
