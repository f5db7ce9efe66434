"""Low-rank factorization: SVD, randomized SVD and rank-k factors of weights.

Everything is computed by the Swift core (its own GEMM, Householder QR and
symmetric eigensolver; no LAPACK), in double precision internally, and
returned as float32.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core
from ._validation import check_int

_SELECT_RANK, _SELECT_ENERGY, _SELECT_RATIO = 0, 1, 2
_METHODS = {"auto": 0, "svd": 1, "randomized": 2}
# randomized_svd's methods, as the C ABI numbers them (SP_RSVD_KRYLOV, SP_RSVD_SUBSPACE).
_RSVD_METHODS = {"krylov": 0, "subspace": 1}
_LAYOUTS = ("keras", "torch")


def _as_matrix(w: ArrayLike, name: str = "w") -> np.ndarray:
    """``w`` as an array of a real floating dtype; TypeError otherwise (values untouched)."""
    array = np.asarray(w)
    if array.dtype.kind != "f" or array.dtype.itemsize > 8:
        raise TypeError(f"{name} must be a real floating-point array (float16, float32 or float64), "
                        f"got dtype {array.dtype}")
    return array


def _check_2d(w: np.ndarray, name: str = "w") -> None:
    if w.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {w.shape}")


def svd(w: ArrayLike) -> Tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """Thin singular value decomposition ``w = u @ diag(s) @ vt``.

    Like ``numpy.linalg.svd(w, full_matrices=False)``: for ``w`` of shape
    ``(m, n)`` and ``r = min(m, n)``, ``u`` is ``(m, r)`` with orthonormal
    columns, ``s`` holds the ``r`` singular values in descending order and
    ``vt`` is ``(r, n)`` with orthonormal rows. Singular vectors are unique
    only up to sign (and rotation within repeated singular values).

    Computed in double precision (the Gram matrix of the thin side, its
    symmetric eigendecomposition, then Cholesky-QR orthonormalization of
    ``w @ v`` unless its columns are already orthonormal to 1e-8, below the
    float32 rounding of the result) and returned as float32; singular values
    are accurate to about ``1e-7 * s[0]``, well below float32 resolution.

    Parameters
    ----------
    w : array_like of float16, float32 or float64, shape (m, n)

    Returns
    -------
    u : numpy.ndarray of float32, shape (m, r)
    s : numpy.ndarray of float32, shape (r,)
    vt : numpy.ndarray of float32, shape (r, n)

    Raises
    ------
    TypeError
        ``w`` is not a real floating array.
    ValueError
        ``w`` is not 2-D or holds NaN or Inf.
    """
    array = _as_matrix(w)
    _check_2d(array)
    return _core.svd(array)


def randomized_svd(
    w: ArrayLike,
    rank: int,
    oversample: int = 10,
    power_iters: Optional[int] = None,
    seed: int = 0,
    method: str = "krylov",
) -> Tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """Rank-``rank`` approximate SVD by random projection.

    Both methods start from Gaussian test vectors and run ``power_iters``
    iterations, each one product with ``wᵀ`` and one with ``w``; as in
    scikit-learn's ``sklearn.utils.extmath.randomized_svd``,
    ``power_iters=None`` uses 7 iterations when ``rank < 0.1 * min(m, n)``
    and 4 otherwise, and a wide matrix is processed through its transpose.

    - ``method="subspace"`` is Halko, Martinsson & Tropp's algorithm, as
      scikit-learn: ``rank + oversample`` test vectors, each iteration
      re-orthonormalized (CholeskyQR, Householder QR when ill-conditioned),
      only the last block kept; the exact SVD of the projected matrix gives
      the leading ``rank`` triplets.
    - ``method="krylov"`` (default) is randomized block Krylov iteration
      (Musco & Musco 2015): every iteration's block is kept
      (orthonormalized against the earlier ones) and the best rank-``rank``
      approximation within their span is returned. With ``power_iters = q``
      the basis holds ``max(rank + oversample, rank * (4 + q) / 4)`` columns
      (twice the rank at ``q = 4``) in blocks of ``max(ceil(rank / 8),
      min(16, ceil(rank / 2)))`` columns and at least ``q + 1`` blocks
      (``q = 0``: one block of ``rank + oversample``), i.e. 30-40% of
      scikit-learn's product work. On weight-like spectra (power-law decay)
      its error is below scikit-learn's (2048², rank 256: 0.51473 against
      0.51639, optimum 0.51430; rank 64: 0.65894 against 0.65907, optimum
      0.65892), and it is tested against scikit-learn on slow-, very slow-
      and fast-decaying spectra; on a Gaussian matrix, which has no decay to
      exploit, rank 256 of 2048² comes out 0.7% above scikit-learn's error
      (float64 model: 0.8032 against 0.7974) — use ``method="subspace"``
      there. The Gram matrix of the Rayleigh-Ritz step is accumulated in
      float32, like every product of the method, and only its block
      tridiagonal band is computed (block Lanczos: the other blocks are zero
      but for float32 rounding). Besides the basis it holds two packed copies
      of ``w`` (``2 * m * n`` float32; one transposed copy on AVX-512 CPUs).
      When the basis would exceed ``min(m, n)``, the subspace method is used
      instead.

    The result is deterministic for a given ``seed`` (and method).

    Parameters
    ----------
    w : array_like of float16, float32 or float64, shape (m, n)
    rank : int in [0, min(m, n)]
    oversample : int >= 0, default 10
    power_iters : int >= 0 or None
    seed : int >= 0, default 0
    method : {"krylov", "subspace"}, default "krylov"

    Returns
    -------
    u : numpy.ndarray of float32, shape (m, rank)
    s : numpy.ndarray of float32, shape (rank,), descending
    vt : numpy.ndarray of float32, shape (rank, n)

    Raises
    ------
    TypeError
        ``w`` is not a real floating array, or an integer argument is not an integer.
    ValueError
        ``w`` is not 2-D or holds NaN/Inf, an argument is out of range, or
        ``method`` is not "krylov" or "subspace".
    """
    if not isinstance(method, str) or method not in _RSVD_METHODS:
        raise ValueError(f"method must be one of {sorted(_RSVD_METHODS)}, got {method!r}")
    array = _as_matrix(w)
    _check_2d(array)
    limit = min(array.shape)
    rank = check_int("rank", rank, minimum=0, maximum=limit)
    oversample = check_int("oversample", oversample, minimum=0, maximum=2**31 - 1)
    iters = -1 if power_iters is None else check_int("power_iters", power_iters, minimum=0, maximum=2**31 - 1)
    seed = check_int("seed", seed, minimum=0, maximum=2**64 - 1)
    return _core.randomized_svd(array, rank, oversample, iters, seed, _RSVD_METHODS[method])


@dataclass(frozen=True, eq=False, repr=False)
class LowRankFactors:
    """Factors ``a`` (``(m, k)``) and ``b`` (``(k, n)``) with ``a @ b ≈ w2d``.

    ``w2d`` is the weight flattened to 2-D (see :func:`low_rank`); ``shape``
    and ``layout`` remember the original weight so that :meth:`reconstruct`
    returns an array of that shape.
    """

    a: NDArray[np.float32]
    b: NDArray[np.float32]
    shape: Tuple[int, ...] = ()
    layout: str = "keras"

    def __post_init__(self) -> None:
        if not self.shape:
            object.__setattr__(self, "shape", (self.a.shape[0], self.b.shape[1]))

    @property
    def rank(self) -> int:
        """The number of columns of ``a`` (rows of ``b``)."""
        return int(self.a.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes taken by the two factors."""
        return int(self.a.nbytes + self.b.nbytes)

    def __repr__(self) -> str:
        return (f"LowRankFactors(shape={tuple(self.shape)}, rank={self.rank}, a={tuple(self.a.shape)}, "
                f"b={tuple(self.b.shape)}, dtype={self.a.dtype}, layout={self.layout!r}, nbytes={self.nbytes})")

    def reconstruct(self) -> NDArray[np.float32]:
        """``a @ b`` (on the Swift GEMM), reshaped to the original weight's shape, float32."""
        from .linalg import matmul

        product = matmul(self.a, self.b)
        return _unflatten(product, self.shape, self.layout)


def _flatten(w: np.ndarray, layout: str) -> np.ndarray:
    """The 2-D matrix a kernel of `layout` is factorized as (a view when possible)."""
    if w.ndim == 2:
        return w
    if w.ndim < 2:
        raise ValueError(f"w must have at least 2 dimensions, got shape {w.shape}")
    if layout == "keras":   # (..., in, out): every input tap of an output unit is a row entry
        return w.reshape(-1, w.shape[-1])
    return w.reshape(w.shape[0], -1)  # torch (out, in, ...): one row per output channel


def _unflatten(w2d: np.ndarray, shape: Tuple[int, ...], layout: str) -> np.ndarray:
    return w2d.reshape(shape)


def _check_fraction_open(name: str, value: Any, upper: Optional[float]) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if upper is not None:
        if not 0.0 <= value <= upper:
            raise ValueError(f"{name} must be in [0, {upper:g}], got {value!r}")
    elif not (value > 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def low_rank(
    w: ArrayLike,
    *,
    rank: Optional[int] = None,
    energy: Optional[float] = None,
    ratio: Optional[float] = None,
    method: str = "auto",
    layout: str = "keras",
    seed: int = 0,
) -> LowRankFactors:
    """Factor a weight into two thin matrices, ``a @ b ≈ w`` (flattened to 2-D).

    Exactly one of ``rank``, ``energy`` or ``ratio`` chooses the rank ``k``:

    - ``rank``: ``k`` itself, in ``[0, min(m, n)]``;
    - ``energy``: the smallest ``k`` with ``sum(s[:k]**2) / sum(s**2) >= energy``
      (``energy`` in [0, 1]; ``k = 0`` for an all-zero weight);
    - ``ratio``: the largest ``k`` with ``k * (m + n) <= ratio * m * n``, i.e.
      the factors hold at most ``ratio`` of the dense parameter count
      (``ratio > 0``; capped at ``min(m, n)``).

    ``a = u[:, :k] * s[:k]`` and ``b = vt[:k]`` from the SVD, so ``a @ b`` is
    the best rank-``k`` approximation (Eckart–Young) for the exact method.

    Kernels with more than two dimensions are flattened first:

    - ``layout="keras"``: Dense ``(in, out)`` as is; Conv ``(kh, kw, in, out)``
      (and Conv1D/3D alike) to ``(kh * kw * in, out)`` — ``a`` is then a
      ``kh × kw`` conv with ``k`` filters and ``b`` a 1×1 conv ``(k, out)``;
    - ``layout="torch"``: Linear ``(out, in)`` as is; Conv2d ``(out, in, kh, kw)``
      to ``(out, in * kh * kw)`` — ``b`` is then a ``kh × kw`` conv with ``k``
      filters and ``a`` a 1×1 conv ``(out, k)``.

    Parameters
    ----------
    w : array_like of float16, float32 or float64, at least 2-D
    rank, energy, ratio : exactly one must be given
    method : {"auto", "svd", "randomized"}
        "svd" is exact; "randomized" is :func:`randomized_svd` with its
        defaults (used for ``rank``/``ratio`` only: ``energy`` needs every
        singular value and always uses the exact SVD); "auto" picks the
        randomized SVD when ``k <= min(m, n) / 4`` and ``min(m, n) >= 128``,
        else the exact one.
    layout : {"keras", "torch"}
    seed : int >= 0
        Seed of the randomized method.

    Returns
    -------
    LowRankFactors
        ``.a`` float32 ``(m, k)``, ``.b`` float32 ``(k, n)``, ``.rank``,
        ``.nbytes``, ``.reconstruct()`` (original shape).

    Raises
    ------
    TypeError
        ``w`` is not a real floating array, or a selector has the wrong type.
    ValueError
        Not exactly one selector, a value out of range, an unknown method or
        layout, fewer than 2 dimensions, or NaN/Inf in ``w``.
    """
    array = _as_matrix(w)
    given = [name for name, value in (("rank", rank), ("energy", energy), ("ratio", ratio)) if value is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of rank, energy or ratio, got {given or 'none'}")
    if not isinstance(method, str) or method not in _METHODS:
        raise ValueError(f"method must be one of {sorted(_METHODS)}, got {method!r}")
    if not isinstance(layout, str) or layout not in _LAYOUTS:
        raise ValueError(f"layout must be 'keras' or 'torch', got {layout!r}")
    seed = check_int("seed", seed, minimum=0, maximum=2**64 - 1)
    w2d = _flatten(array, layout)
    limit = min(w2d.shape)
    if rank is not None:
        selector, value = _SELECT_RANK, float(check_int("rank", rank, minimum=0, maximum=limit))
    elif energy is not None:
        selector, value = _SELECT_ENERGY, _check_fraction_open("energy", energy, 1.0)
    else:
        selector, value = _SELECT_RATIO, _check_fraction_open("ratio", ratio, None)
    a, b = _core.low_rank(w2d, selector, value, _METHODS[method], seed)
    return LowRankFactors(a, b, tuple(array.shape), layout)
