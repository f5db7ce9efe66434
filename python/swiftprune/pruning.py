"""Pruning: masks that decide which weights are kept (``True``) or removed.

Every function accepts any real floating array (float16/32/64), of any shape
and memory layout, and never modifies its input. Masks are ``bool`` arrays of
the weight's shape. Ties between equal scores are always broken the same
way: the lower (C-order) index is pruned first.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Mapping, Sequence, Tuple, TypeVar, Union, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core
from ._validation import float_array, check_fraction, check_int

__all__ = [
    "magnitude_mask",
    "prune_magnitude",
    "global_magnitude_masks",
    "random_mask",
    "structured_mask",
    "nm_mask",
    "block_mask",
]

Mask = NDArray[np.bool_]


def _float_array(name: str, value: Any) -> np.ndarray:
    """`value` as a native-byte-order float16/32/64 array (no copy when possible)."""
    return float_array(name, value)


def _check_axis(axis: Any, ndim: int) -> int:
    """`axis` resolved against `ndim` (negative counts from the end)."""
    axis = check_int("axis", axis)
    if ndim == 0:
        raise ValueError("w must have at least one dimension, got a scalar (0-d array)")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for an array of {ndim} dimension(s)")
    return axis % ndim


def _check_norm(norm: Any) -> float:
    if isinstance(norm, str):
        if norm.lower() in ("inf", "infinity"):
            return math.inf
        raise ValueError(f"norm must be 1, 2 or inf, got {norm!r}")
    if isinstance(norm, (bool, np.bool_)) or not isinstance(norm, numbers.Real):
        raise TypeError(f"norm must be 1, 2 or inf, got {norm!r}")
    value = float(norm)
    if value not in (1.0, 2.0, math.inf):
        raise ValueError(f"norm must be 1, 2 or inf, got {norm!r}")
    return value


def magnitude_mask(w: ArrayLike, sparsity: float) -> Mask:
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


K = TypeVar("K")


@overload
def global_magnitude_masks(weights: Mapping[K, ArrayLike], sparsity: float) -> dict[K, Mask]: ...
@overload
def global_magnitude_masks(weights: Sequence[ArrayLike], sparsity: float) -> list[Mask]: ...


def global_magnitude_masks(
    weights: Union[Mapping[Any, ArrayLike], Sequence[ArrayLike]], sparsity: float
) -> Union[dict[Any, Mask], list[Mask]]:
    """Keep-masks from one magnitude threshold over several tensors together.

    Exactly ``k = round(sparsity * total)`` entries are pruned, where
    ``total`` is the number of entries of all tensors together: those of
    smallest ``|w|`` across every tensor, so layers with small weights lose
    more than others. Among equal magnitudes the lower position in the
    concatenation (container order, then C order) is pruned first. No
    concatenated copy is made: the Swift core selects over the tensors in
    place.

    Parameters
    ----------
    weights : mapping of name to array, or sequence of arrays
        float16/32/64 tensors of any shapes. If any is float64 the selection
        runs in float64 (float32 → float64 is exact, so the order is unchanged).
    sparsity : float in [0, 1]
        The fraction of all entries to prune.

    Returns
    -------
    dict or list of numpy.ndarray of bool
        A mapping with the same keys (in the same order) for a mapping input,
        a list otherwise; each mask has its tensor's shape.

    Raises
    ------
    TypeError
        ``weights`` is not a mapping or sequence, or holds a non-float array.
    ValueError
        ``sparsity`` outside [0, 1], or NaN/Inf in any tensor.

    Examples
    --------
    >>> masks = global_magnitude_masks({"fc1": w1, "fc2": w2}, 0.8)  # doctest: +SKIP
    """
    sparsity = check_fraction("sparsity", sparsity)
    if isinstance(weights, Mapping):
        keys = list(weights.keys())
        masks = _core.global_magnitude_masks([weights[key] for key in keys], sparsity)
        return dict(zip(keys, masks))
    if isinstance(weights, (str, bytes, np.ndarray)) or not isinstance(weights, Sequence):
        raise TypeError(f"weights must be a mapping or a sequence of arrays, got {type(weights).__name__}")
    return list(_core.global_magnitude_masks(list(weights), sparsity))


def random_mask(w: ArrayLike, sparsity: float, seed: int = 0) -> Mask:
    """Keep-mask pruning exactly ``round(sparsity * w.size)`` entries at random.

    Every subset of that size is equally likely. The subset is drawn in Swift
    by Floyd's algorithm from a xoshiro256** generator seeded with
    SplitMix64(``seed``): the same seed gives the same mask on every machine
    and release (it is not NumPy's stream). ``w`` is used only for its shape
    and to reject NaN/Inf.

    Parameters
    ----------
    w : array_like of float16, float32 or float64
        The weights, any shape.
    sparsity : float in [0, 1]
        The fraction of entries to prune.
    seed : int in [0, 2**64)
        The random seed.

    Returns
    -------
    numpy.ndarray of bool, shape ``w.shape``

    Raises
    ------
    TypeError
        ``w`` is not a real floating array; ``seed`` is not an integer.
    ValueError
        ``sparsity`` outside [0, 1], ``seed`` out of range, NaN/Inf in ``w``.
    """
    array = _float_array("w", w)
    sparsity = check_fraction("sparsity", sparsity)
    seed = check_int("seed", seed, minimum=0, maximum=2**64 - 1)
    if array.size and not np.isfinite(array).all():
        raise ValueError("w contains NaN or Inf values")
    return _core.random_mask(array.size, sparsity, seed).reshape(array.shape)


def structured_mask(w: ArrayLike, amount: float, axis: int = 0, norm: float = 2) -> Mask:
    """Keep-mask removing whole slices of ``w`` along ``axis`` (channels, rows, filters).

    ``round(amount * w.shape[axis])`` slices are pruned: those with the
    smallest L\\ ``norm`` norm taken over all the other axes, the lower index
    first among equal norms. This is
    ``torch.nn.utils.prune.ln_structured(module, name, amount, n=norm, dim=axis)``
    (with torch's ``dim`` = ``axis``). Norms are accumulated in float64, except
    that slices stored as long contiguous rows (e.g. ``axis=0`` of a C-ordered
    matrix) are first summed in 32 lanes of the input's dtype (float32 lanes for
    float32 weights), then combined in float64.

    Parameters
    ----------
    w : array_like of float16, float32 or float64
        The weights, at least 1-D.
    amount : float in [0, 1]
        The fraction of slices to prune.
    axis : int
        The axis whose slices are pruned (negative counts from the end). For a
        PyTorch ``Conv2d`` weight ``(out, in, kh, kw)`` ``axis=0`` prunes
        filters; for a Keras kernel ``(..., in, out)`` use ``axis=-1``.
    norm : {1, 2, inf}
        The norm that scores each slice.

    Returns
    -------
    numpy.ndarray of bool, shape ``w.shape``
        Constant along every slice.

    Raises
    ------
    TypeError
        ``w`` not a real floating array, ``axis`` not an integer, ``norm`` not a number.
    ValueError
        ``amount`` outside [0, 1], ``w`` a scalar, ``axis`` out of range,
        ``norm`` not 1/2/inf, NaN/Inf in ``w``.
    """
    return _structured(w, amount, axis, norm, per_slice=False)


def structured_keep(w: ArrayLike, amount: float, axis: int = 0, norm: float = 2) -> Mask:
    """One bool per slice along ``axis``: which slices :func:`structured_mask` keeps."""
    return _structured(w, amount, axis, norm, per_slice=True)


def _structured(w: ArrayLike, amount: float, axis: int, norm: float, per_slice: bool) -> Mask:
    """The checked arguments of :func:`structured_mask` / :func:`structured_keep` and the Swift call."""
    amount = check_fraction("amount", amount)
    array = _float_array("w", w)
    axis = _check_axis(axis, array.ndim)
    return _core.structured_mask(array, amount, axis, _check_norm(norm), per_slice)


def nm_mask(w: ArrayLike, n: int = 2, m: int = 4, axis: int = -1) -> Mask:
    """N:M keep-mask: ``n`` of every ``m`` consecutive entries along ``axis`` kept.

    In each group of ``m`` consecutive entries along ``axis`` the ``n`` of
    largest ``|w|`` are kept (among equal magnitudes the lower index is
    kept). 2:4 along the input dimension is the pattern NVIDIA sparse tensor
    cores run at twice the dense speed: for a PyTorch ``Linear`` weight
    ``(out, in)`` that is ``axis=-1``, for a Keras ``Dense`` kernel
    ``(in, out)`` ``axis=0``.

    Parameters
    ----------
    w : array_like of float16, float32 or float64
        The weights, at least 1-D; ``w.shape[axis]`` must be a multiple of ``m``.
    n, m : int
        Keep ``n`` of every ``m``; ``1 <= n < m``.
    axis : int
        The axis the groups run along.

    Returns
    -------
    numpy.ndarray of bool, shape ``w.shape``

    Raises
    ------
    TypeError
        ``w`` not a real floating array; ``n``, ``m`` or ``axis`` not integers.
    ValueError
        ``n``/``m`` out of range, ``w`` a scalar, ``axis`` out of range,
        ``w.shape[axis] % m != 0``, NaN/Inf in ``w``.
    """
    n = check_int("n", n)
    m = check_int("m", m, minimum=2)
    if not 1 <= n < m:
        raise ValueError(f"n must satisfy 1 <= n < m = {m}, got n = {n}")
    array = _float_array("w", w)
    axis = _check_axis(axis, array.ndim)
    if array.shape[axis] % m:
        raise ValueError(f"w.shape[{axis}] = {array.shape[axis]} is not a multiple of m = {m}")
    return _core.nm_mask(array, n, m, axis)


def block_mask(w: ArrayLike, sparsity: float, block: Tuple[int, int] = (1, 4)) -> Mask:
    """Keep-mask pruning whole 2-D blocks of lowest mean magnitude.

    ``w`` is tiled from its top-left corner by ``block = (rows, columns)``
    blocks; each block is scored by the mean ``|w|`` of its entries (a
    partial block at the bottom or right edge by the mean over its own
    entries), and the ``round(sparsity * n_blocks)`` lowest-scored blocks are
    pruned, the lower block index (row-major over the block grid) first among
    equal scores.

    Parameters
    ----------
    w : array_like of float16, float32 or float64, 2-D
        The weights.
    sparsity : float in [0, 1]
        The fraction of blocks to prune.
    block : (int, int)
        Block height and width, each >= 1.

    Returns
    -------
    numpy.ndarray of bool, shape ``w.shape``

    Raises
    ------
    TypeError
        ``w`` not a real floating array; ``block`` not a pair of integers.
    ValueError
        ``w`` not 2-D, block sides < 1, ``sparsity`` outside [0, 1], NaN/Inf.
    """
    sparsity = check_fraction("sparsity", sparsity)
    if isinstance(block, (str, bytes)) or not isinstance(block, Sequence) or len(block) != 2:
        raise TypeError(f"block must be a pair (rows, columns), got {block!r}")
    rows = check_int("block[0]", block[0], minimum=1)
    columns = check_int("block[1]", block[1], minimum=1)
    array = _float_array("w", w)
    if array.ndim != 2:
        raise ValueError(f"block_mask needs a 2-D weight, got shape {array.shape}")
    return _core.block_mask(array, sparsity, rows, columns)
