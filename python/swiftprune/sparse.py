"""Compressed layers that run: sparse (CSR, N:M) and int8 matrix products.

Every weight matrix ``W`` here has the layout of a PyTorch ``Linear`` weight,
``(out_features, in_features)``, and ``.matmul(x)`` computes ``W @ x`` for
activations ``x`` of shape ``(in_features, n)`` (one column per sample) or
``(in_features,)``; the result is float32 of shape ``(out_features, n)`` or
``(out_features,)``. For activations stored one row per sample, as a
framework's ``(batch, in_features)`` tensor, use ``W.matmul(x.T).T``.

The compressed arrays live in NumPy arrays held by the Python objects; each
call passes them to the Swift kernels, which run multithreaded with the GIL
released.
"""
from __future__ import annotations

import numbers
from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core
from ._validation import check_int

__all__ = ["CSRMatrix", "NMSparseMatrix", "quantized_matmul"]


def _float_matrix(name: str, w: ArrayLike) -> np.ndarray:
    """`w` as an array, checked to be a 2-D real floating matrix."""
    array = np.asarray(w)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{name} must be a real floating-point array (float16, float32 or float64), got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (out_features, in_features), got shape {array.shape}")
    return array


def _activations(x: ArrayLike, in_features: int) -> np.ndarray:
    """`x` checked to be a 1-D or 2-D real floating array with `in_features` rows."""
    array = np.asarray(x)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"x must be a real floating-point array (float16, float32 or float64), got dtype {array.dtype}")
    if array.ndim not in (1, 2):
        raise ValueError(f"x must be 1-D (in_features,) or 2-D (in_features, n), got shape {array.shape}")
    if array.shape[0] != in_features:
        raise ValueError(f"x has {array.shape[0]} rows but W has {in_features} columns (in_features); "
                         f"W @ x needs x of shape ({in_features}, n), got {array.shape}")
    return array


def _shape(shape: Any) -> tuple[int, int]:
    if not isinstance(shape, (tuple, list)) or len(shape) != 2:
        raise TypeError(f"shape must be a (rows, columns) tuple, got {shape!r}")
    return check_int("shape[0]", shape[0], minimum=0), check_int("shape[1]", shape[1], minimum=0)


def _index_dtype(columns: int) -> type:
    """uint16 column indices when every column fits them (see CSRMatrix's Notes), else int32."""
    return np.uint16 if columns <= 65536 else np.int32


class CSRMatrix:
    """A float32 matrix in compressed sparse row form, executable with :meth:`matmul`.

    The arrays are those of ``scipy.sparse.csr_matrix``: the nonzeros of row
    ``i`` are ``data[indptr[i]:indptr[i + 1]]`` in columns
    ``indices[indptr[i]:indptr[i + 1]]``. Build one with :meth:`from_dense`
    (or from a SciPy matrix's arrays with the constructor).

    Parameters
    ----------
    data : array_like of float
        The stored values (converted to float32).
    indices : array_like of int
        Their column indices, each in ``[0, shape[1])`` (stored as uint16
        when ``shape[1] <= 65536``, else int32: see Notes).
    indptr : array_like of int
        ``shape[0] + 1`` row offsets, non-decreasing from 0 to ``len(data)``
        (stored as int64).
    shape : tuple of int
        ``(out_features, in_features)``.

    Attributes
    ----------
    data, indices, indptr : numpy.ndarray
    shape : tuple of int
    nnz : int
        The number of stored values.
    nbytes : int
        Bytes held by the three arrays.

    Notes
    -----
    The index dtype is chosen at construction, as SciPy chooses between int32
    and int64: uint16 when the column count allows (at most 65536, most
    linear layers), else int32. A one-vector product reads every value and
    index once, so 16-bit indices move 6 bytes per nonzero instead of 8.
    ``scipy.sparse.csr_matrix((data, indices, indptr), shape)`` accepts
    either dtype.

    Examples
    --------
    >>> import numpy as np, swiftprune as sp
    >>> w = sp.prune_magnitude(np.random.default_rng(0).standard_normal((256, 512)), 0.9)
    >>> csr = sp.CSRMatrix.from_dense(w)
    >>> x = np.ones((512, 8), dtype=np.float32)
    >>> np.allclose(csr.matmul(x), w @ x, atol=1e-4)
    True
    """

    __slots__ = ("data", "indices", "indptr", "shape")

    def __init__(self, data: ArrayLike, indices: ArrayLike, indptr: ArrayLike, shape: tuple[int, int]) -> None:
        rows, columns = _shape(shape)
        if columns > np.iinfo(np.int32).max:
            raise ValueError(f"CSRMatrix supports at most {np.iinfo(np.int32).max} columns, got {columns}")
        data = np.asarray(data)
        if data.ndim != 1 or not np.issubdtype(data.dtype, np.floating):
            raise TypeError(f"data must be a 1-D floating-point array, got dtype {data.dtype} and shape {data.shape}")
        indices = np.asarray(indices)
        indptr = np.asarray(indptr)
        for name, array in (("indices", indices), ("indptr", indptr)):
            if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
                raise TypeError(f"{name} must be a 1-D integer array, got dtype {array.dtype} and shape {array.shape}")
        if indptr.size != rows + 1:
            raise ValueError(f"indptr must have shape[0] + 1 = {rows + 1} entries, got {indptr.size}")
        if indices.size != data.size:
            raise ValueError(f"indices ({indices.size}) and data ({data.size}) must have the same length")
        if indices.size and (indices.min() < 0 or indices.max() >= columns):
            raise ValueError(f"column indices must be in [0, {columns}), got values in [{indices.min()}, {indices.max()}]")
        if indptr[0] != 0 or indptr[-1] != data.size or np.any(np.diff(indptr) < 0):
            raise ValueError(f"indptr must be non-decreasing from 0 to len(data) = {data.size}")
        data32 = np.ascontiguousarray(data, dtype=np.float32)
        if not np.all(np.isfinite(data32)):
            raise ValueError("data contains NaN or Inf")
        self.data = data32
        self.indices = np.ascontiguousarray(indices, dtype=_index_dtype(columns))
        self.indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        self.shape = (rows, columns)

    @classmethod
    def from_dense(cls, w: ArrayLike) -> "CSRMatrix":
        """Compress a 2-D dense matrix, keeping its nonzero entries.

        Parameters
        ----------
        w : array_like of float16, float32 or float64, shape (out_features, in_features)
            The (pruned) weights; any memory layout. Converted to float32.

        Returns
        -------
        CSRMatrix
            Column indices ascending within each row.

        Raises
        ------
        TypeError
            ``w`` is not a real floating array.
        ValueError
            ``w`` is not 2-D or holds NaN or Inf.
        """
        w = _float_matrix("w", w)
        indptr, indices, data = _core.csr_from_dense(w)
        if _index_dtype(w.shape[1]) != indices.dtype:
            indices = indices.astype(_index_dtype(w.shape[1]))
        matrix = cls.__new__(cls)
        matrix.data, matrix.indices, matrix.indptr, matrix.shape = data, indices, indptr, (int(w.shape[0]), int(w.shape[1]))
        return matrix

    @property
    def nnz(self) -> int:
        """The number of stored values."""
        return int(self.data.size)

    @property
    def nbytes(self) -> int:
        """Bytes held by ``data``, ``indices`` and ``indptr``."""
        return int(self.data.nbytes + self.indices.nbytes + self.indptr.nbytes)

    def matmul(self, x: ArrayLike) -> NDArray[np.float32]:
        """``W @ x`` for ``x`` of shape ``(in_features, n)`` or ``(in_features,)``.

        Returns float32 of shape ``(out_features, n)`` or ``(out_features,)``.
        ``x`` may be float16/32/64 of any layout (converted to float32).
        NaN/Inf in ``x`` propagate as in a dense product.
        """
        x = _activations(x, self.shape[1])
        return _core.csr_matmul(self.indptr, self.indices, self.data, self.shape[0], self.shape[1], x)

    def __matmul__(self, x: ArrayLike) -> NDArray[np.float32]:
        return self.matmul(x)

    def to_dense(self) -> NDArray[np.float32]:
        """The dense float32 matrix (duplicate entries summed)."""
        return _core.csr_to_dense(self.indptr, self.indices, self.data, self.shape[0], self.shape[1])

    def __repr__(self) -> str:
        return f"CSRMatrix(shape={self.shape}, dtype={self.data.dtype}, nnz={self.nnz}, nbytes={self.nbytes})"


# Columns of x from which NMSparseMatrix.matmul uses the packed layout (the
# row-major kernel gathers straight from x below this; see blockedSparseProduct).
_PACKED_MIN_COLUMNS = 8


def _read_only(array: NDArray[Any]) -> NDArray[Any]:
    """``array`` with its writeable flag cleared (an NMSparseMatrix's cached layout mirrors it)."""
    array.flags.writeable = False
    return array


class NMSparseMatrix:
    """A float32 matrix with N:M structured sparsity, stored compressed.

    In every run of ``m`` consecutive entries of a row (along
    ``in_features``, as NVIDIA's 2:4 sparsity), ``n`` are stored:
    ``values`` has shape ``(out_features, in_features // m * n)`` and
    ``indices`` (uint8, same shape) the position of each value inside its
    group, in ascending order. Value ``values[i, g * n + t]`` sits in column
    ``g * m + indices[i, g * n + t]``.

    Attributes
    ----------
    values : numpy.ndarray of float32
    indices : numpy.ndarray of uint8
    shape : tuple of int
    n, m : int
    nbytes : int
        Bytes held by ``values`` and ``indices`` (for 2:4 float32: 62.5% of dense).

    Notes
    -----
    ``values`` and ``indices`` are read-only: the first :meth:`matmul` with
    ``x`` of 8 or more columns builds, and keeps, a copy of them regrouped in
    the order the product reads them (the same number of bytes again, not
    counted in ``nbytes``), which an in-place change would leave stale. The
    product then streams that one array instead of 64 short row slices per
    block of ``x``. Its sums are those of the row-major kernel: bit for bit
    for 64-column tiles of ``x``, otherwise within float32 rounding.

    Examples
    --------
    >>> import numpy as np, swiftprune as sp
    >>> w = np.random.default_rng(0).standard_normal((64, 128)).astype(np.float32)
    >>> nm = sp.NMSparseMatrix.from_dense(w, n=2, m=4)
    >>> x = np.ones((128, 3), dtype=np.float32)
    >>> np.allclose(nm.matmul(x), nm.to_dense() @ x, atol=1e-4)
    True
    """

    __slots__ = ("values", "indices", "shape", "n", "m", "_packed")

    def __init__(self, values: ArrayLike, indices: ArrayLike, shape: tuple[int, int], n: int = 2, m: int = 4) -> None:
        rows, columns = _shape(shape)
        m = check_int("m", m, minimum=1, maximum=255)
        n = check_int("n", n, minimum=1, maximum=m)
        if columns % m:
            raise ValueError(f"shape[1] = {columns} must be a multiple of m = {m}")
        values = np.asarray(values)
        indices = np.asarray(indices)
        if not np.issubdtype(values.dtype, np.floating):
            raise TypeError(f"values must be a floating-point array, got dtype {values.dtype}")
        if not np.issubdtype(indices.dtype, np.integer):
            raise TypeError(f"indices must be an integer array, got dtype {indices.dtype}")
        expected = (rows, columns // m * n)
        if values.shape != expected or indices.shape != expected:
            raise ValueError(f"values and indices must have shape {expected}, got {values.shape} and {indices.shape}")
        if indices.size and (indices.min() < 0 or indices.max() >= m):
            raise ValueError(f"indices must be in [0, {m}), got values in [{indices.min()}, {indices.max()}]")
        # Copies: the arrays are made read-only, and must not share memory with the caller's.
        values32 = np.array(values, dtype=np.float32, order="C")
        if not np.all(np.isfinite(values32)):
            raise ValueError("values contains NaN or Inf")
        self.values = _read_only(values32)
        self.indices = _read_only(np.array(indices, dtype=np.uint8, order="C"))
        self.shape, self.n, self.m = (rows, columns), n, m
        self._packed: Optional[NDArray[np.uint8]] = None

    @classmethod
    def from_dense(cls, w: ArrayLike, n: int = 2, m: int = 4) -> "NMSparseMatrix":
        """Compress ``w``, keeping in every group of ``m`` entries the ``n`` largest.

        The rule is that of :func:`nm_mask` along the last axis: the ``n``
        entries of largest ``|w|`` per group are kept (ties: the lower index
        is kept), so a matrix that is already N:M sparse is stored exactly,
        and a dense one is pruned to N:M on the way (``to_dense()`` returns
        the pruned weights).

        Parameters
        ----------
        w : array_like of float16, float32 or float64, shape (out_features, in_features)
        n, m : int
            ``1 <= n <= m <= 255``; ``in_features % m == 0``.

        Raises
        ------
        TypeError
            ``w`` is not a real floating array, ``n``/``m`` are not integers.
        ValueError
            ``w`` is not 2-D, holds NaN/Inf, or ``n``/``m`` are out of range.
        """
        w = _float_matrix("w", w)
        m = check_int("m", m, minimum=1, maximum=255)
        n = check_int("n", n, minimum=1, maximum=m)
        if w.shape[1] % m:
            raise ValueError(f"in_features = w.shape[1] = {w.shape[1]} must be a multiple of m = {m}")
        values, indices = _core.nm_from_dense(w, n, m)
        matrix = cls.__new__(cls)
        matrix.values, matrix.indices = _read_only(values), _read_only(indices)
        matrix.shape, matrix.n, matrix.m = (int(w.shape[0]), int(w.shape[1])), n, m
        matrix._packed = None
        return matrix

    @property
    def nbytes(self) -> int:
        """Bytes held by ``values`` and ``indices``."""
        return int(self.values.nbytes + self.indices.nbytes)

    def matmul(self, x: ArrayLike) -> NDArray[np.float32]:
        """``W @ x`` for ``x`` of shape ``(in_features, n)`` or ``(in_features,)`` (float32 result).

        With 8 or more columns the product runs on the packed layout (built on
        the first such call, see the class notes); a vector or a thinner block
        gathers from the row-major arrays, where there is no block of ``x`` to reuse.
        """
        x = _activations(x, self.shape[1])
        rows, columns = self.shape
        if x.ndim == 2 and x.shape[1] >= _PACKED_MIN_COLUMNS:
            if self._packed is None:
                self._packed = _core.nm_pack(self.values, self.indices, rows, columns, self.n, self.m)
            return _core.nm_packed_matmul(self._packed, rows, columns, self.n, self.m, x)
        return _core.nm_matmul(self.values, self.indices, rows, columns, self.n, self.m, x)

    def __matmul__(self, x: ArrayLike) -> NDArray[np.float32]:
        return self.matmul(x)

    def to_dense(self) -> NDArray[np.float32]:
        """The dense float32 matrix, zeros where entries were dropped."""
        return _core.nm_to_dense(self.values, self.indices, self.shape[0], self.shape[1], self.n, self.m)

    def __repr__(self) -> str:
        return (f"NMSparseMatrix(shape={self.shape}, dtype={self.values.dtype}, n={self.n}, m={self.m}, "
                f"nbytes={self.nbytes})")


def quantized_matmul(
    values: ArrayLike, scale: ArrayLike, x: ArrayLike, zero_point: Optional[ArrayLike] = None,
    *, out: Optional[NDArray[np.float32]] = None,
) -> NDArray[np.float32]:
    """``W @ x`` for int8 weights ``W = scale[:, None] * (values - zero_point[:, None])``.

    The activations are quantized on the fly, per column of ``x``, to 7-bit
    unsigned integers with a zero point (``s_b = (max(0, x_b.max()) -
    min(0, x_b.min())) / 127``, ``z_b = clip(rint(-min / s_b), 0, 127)``,
    ``xq = clip(rint(x / s_b) + z_b, 0, 127)``), and the products are exact
    integer dot products (AVX2 ``vpmaddubsw``; the 7-bit range is what it
    multiplies without saturating, FBGEMM's ``reduce_range``). The result
    is therefore ``dequantize(W) @ x`` up to the rounding of ``x``: a relative
    (Frobenius) error of about 1.6 % for Gaussian activations and 0.8 % for
    post-ReLU ones.

    Parameters
    ----------
    values : array_like of int8, shape (out_features, in_features)
        The quantized weights (``QuantizedTensor.values`` for ``axis=0``).
        uint8 values (affine quantization) are accepted and shifted to int8
        together with their zero point.
    scale : float or array_like of float, shape (out_features,) or (out_features, 1)
        One scale per output channel (a single scale is broadcast).
    x : array_like of float, shape (in_features, n) or (in_features,)
    zero_point : int or array_like of int, shape (out_features,), optional
        Integer zero point per output channel; ``None`` means 0 (symmetric).
    out : numpy.ndarray of float32, optional
        A writeable C-contiguous float32 array of the result's shape that
        receives the product and is returned (as NumPy's ``out=``), for a
        layer called repeatedly: it saves allocating, and the kernel faulting
        in, a fresh output per call. The values written are bit-identical to
        the result without ``out``. It must not share memory with the arrays
        the kernel reads (``values``, ``scale``, ``zero_point`` and ``x``
        after their conversion, if any, to int8/float32/int32 C order).

    Returns
    -------
    numpy.ndarray of float32, shape (out_features, n) or (out_features,)
        ``out`` when given.

    Raises
    ------
    TypeError
        ``values`` is not an int8/uint8 array, ``zero_point`` not integer,
        ``x`` or ``scale`` not floating, ``out`` not a float32 ndarray.
    ValueError
        Bad shapes, NaN/Inf in ``scale`` or ``x``; an ``out`` of another
        shape, not C-contiguous, read-only or sharing memory with an input.
    """
    values = np.asarray(values)
    if values.dtype not in (np.int8, np.uint8):
        raise TypeError(f"values must be an int8 (or uint8) array, got dtype {values.dtype}")
    if values.ndim != 2:
        raise ValueError(f"values must be 2-D (out_features, in_features), got shape {values.shape}")
    rows = values.shape[0]
    scale = np.asarray(scale)
    if not (np.issubdtype(scale.dtype, np.floating) or np.issubdtype(scale.dtype, np.integer)) or scale.dtype == bool:
        raise TypeError(f"scale must be a real floating-point array, got dtype {scale.dtype}")
    if scale.size == 1:
        scale = np.full(rows, scale.reshape(()), dtype=np.float32)
    elif scale.shape not in ((rows,), (rows, 1)):
        raise ValueError(f"scale must have one entry per output channel, shape ({rows},) or ({rows}, 1), got {scale.shape}")
    scale = np.ascontiguousarray(scale, dtype=np.float32).reshape(rows)
    if not np.all(np.isfinite(scale)):
        raise ValueError("scale contains NaN or Inf")
    if zero_point is not None:
        zp = np.asarray(zero_point)
        if not np.issubdtype(zp.dtype, np.integer):
            raise TypeError(f"zero_point must be integer, got dtype {zp.dtype}")
        if zp.size == 1:
            zp = np.full(rows, zp.reshape(()), dtype=np.int64)
        elif zp.shape not in ((rows,), (rows, 1)):
            raise ValueError(f"zero_point must have one entry per output channel, shape ({rows},), got {zp.shape}")
        zero_point = zp.astype(np.int64).reshape(rows)
        if zero_point.size and np.abs(zero_point).max() > 1 << 16:
            raise ValueError(f"zero_point must be within ±65536, got {zero_point}")
    if values.dtype == np.uint8:
        # q - zp == (q - 128) - (zp - 128): an exact shift into int8.
        values = np.bitwise_xor(values, np.uint8(0x80)).view(np.int8)
        zero_point = (zero_point if zero_point is not None else np.zeros(rows, dtype=np.int64)) - 128
    x = _activations(x, values.shape[1])
    zp32 = None if zero_point is None else zero_point.astype(np.int32)
    return _core.quantized_matmul(values, scale, zp32, x, out)
