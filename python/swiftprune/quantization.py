"""Quantization: weights as small integers plus per-group scales.

``w ≈ (values - zero_point) * scale``, computed by the Swift core:

* symmetric (default; TFLite's int8 weight convention): integers in
  ``[-qmax, qmax]`` with ``qmax = 2**(bits-1) - 1``, ``scale = max|w| / qmax``,
  ``zero_point = 0``; ``values`` are ``int8``;
* affine (``symmetric=False``): integers in ``[0, 2**bits - 1]``, the range
  widened to include 0, ``scale = (max - min) / (2**bits - 1)``,
  ``zero_point = clamp(round(-min / scale), 0, 2**bits - 1)``; ``values`` are
  ``uint8``.

``values = clamp(round_half_to_even(w / scale) + zero_point)``. Scales are
computed in float64 and rounded to float32; the division ``w / scale`` is
done in float32 for float16/float32 weights and float64 for float64 weights,
so the integers equal NumPy's ``np.round(w / scale)`` bit for bit. A group
whose values are all zero gets ``scale = 1``.

Scale layout (``scale`` and ``zero_point`` always have the rank of ``w``):

* ``axis=None``: one scale, shape ``(1, 1, ...)``;
* ``axis=a``: one per index along ``a``: ``w.shape[a]`` there, 1 elsewhere —
  directly broadcastable against ``values``;
* ``axis=a, group_size=g`` (2-D weights): groups of ``g`` consecutive entries
  along the other dimension ``d``, ``scale.shape[d] = w.shape[d] // g``;
  ``np.repeat(scale, g, axis=d)`` broadcasts it.
* ``axis=a, group_size=g`` on a weight of rank 3 or more (conv kernels): the
  channel axis must be the first or the last. The weight is viewed as the
  2-D matrix of its channel axis against all the other axes flattened in C
  order — the input-channel×kernel dimension ``K`` — and grouped as above
  along ``K`` (``g`` must divide ``K``):

  - Keras ``(kh, kw, in, out)``, ``axis=-1``: the matrix ``(kh·kw·in, out)``,
    input channel fastest, so a group is ``g`` consecutive input channels at
    one kernel position (when ``g`` divides ``in``); ``scale`` has shape
    ``(K // g, 1, 1, out)``;
  - PyTorch/ONNX ``(out, in, kh, kw)``, ``axis=0``: the matrix
    ``(out, in·kh·kw)``, kernel position fastest, so a group is
    ``g / (kh·kw)`` whole input channels (when ``kh·kw`` divides ``g``);
    ``scale`` has shape ``(out, K // g, 1, 1)``.

  In both, the group count sits in the first non-channel axis, and
  ``scale.reshape(matrix_scale_shape)`` is the 2-D layout above.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _core
from ._validation import check_int

_METHODS = {"minmax": 0, "percentile": 1, "mse": 2}


def _check_bits(bits: Any) -> int:
    bits = check_int("bits", bits)
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be in 2..8, got {bits}")
    return bits


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def _check_axis(axis: Any) -> Optional[int]:
    if axis is None:
        return None
    return check_int("axis", axis)


def _check_group_size(group_size: Any, axis: Optional[int]) -> int:
    """The group size as the C layer wants it (0 = no groups)."""
    if group_size is None:
        return 0
    group_size = check_int("group_size", group_size, minimum=1)
    if axis is None:
        raise ValueError("group_size needs an axis (the channel axis of a 2-D weight), got axis=None")
    return group_size


def _float_array(name: str, w: ArrayLike) -> np.ndarray:
    array = np.asarray(w)
    if array.dtype.kind != "f" or array.dtype.itemsize > 8:
        raise TypeError(f"{name} must be a real floating-point array (float16, float32 or float64), "
                        f"got dtype {array.dtype}")
    return array


class QuantizedTensor:
    """A quantized weight: ``values`` (int8 symmetric / uint8 affine, the
    weight's shape), ``scale`` (float32) and ``zero_point`` (the values'
    dtype), both of the scale layout described in the module docstring.

    Build one with :func:`quantize` or :func:`gptq`; :meth:`to_config` /
    :meth:`from_config` round-trip it through plain arrays and scalars (for
    ``.safetensors`` metadata).
    """

    __slots__ = ("values", "scale", "zero_point", "bits", "symmetric", "axis", "group_size", "method", "nm",
                 "scale_dtype")

    def __init__(self, values: NDArray[Any], scale: NDArray[np.float32], zero_point: NDArray[Any], *,
                 bits: int, symmetric: bool, axis: Optional[int] = None, group_size: Optional[int] = None,
                 method: str = "minmax", scale_dtype: str = "float32") -> None:
        """Assemble a quantized tensor from its parts, validating shapes, dtypes and ranges
        (the values are scanned once; results of :func:`quantize` skip this)."""
        bits = _check_bits(bits)
        symmetric = _check_bool("symmetric", symmetric)
        axis = _check_axis(axis)
        group_size = None if group_size is None or group_size == 0 else _check_group_size(group_size, axis)
        dtype = np.int8 if symmetric else np.uint8
        values = np.asarray(values)
        if values.dtype != dtype:
            raise TypeError(f"values must be {np.dtype(dtype).name} for symmetric={symmetric}, got {values.dtype}")
        scale = np.asarray(scale, dtype=np.float32)
        zero_point = np.asarray(zero_point)
        if zero_point.dtype.kind not in "iu":
            raise TypeError(f"zero_point must be an integer array, got dtype {zero_point.dtype}")
        expected = _core_scale_shape(values.shape, axis, group_size)
        if scale.shape != expected or zero_point.shape != expected:
            raise ValueError(f"scale and zero_point must have shape {expected} for values of shape "
                             f"{values.shape}, axis={axis}, group_size={group_size}; got {scale.shape} "
                             f"and {zero_point.shape}")
        if scale.size and not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise ValueError("scale must be positive and finite")
        scale_dtype = _check_scale_dtype(scale_dtype)
        if scale_dtype == "float16" and np.any(_to_float16(scale).astype(np.float32) != scale):
            raise ValueError("scale_dtype is 'float16' but a scale is not a float16 value")
        qmin, qmax = _grid(bits, symmetric)
        for name, array in (("values", values), ("zero_point", zero_point)):
            if array.size and (int(array.min()) < qmin or int(array.max()) > qmax):
                raise ValueError(f"{name} must lie in [{qmin}, {qmax}] for {bits}-bit "
                                 f"{'symmetric' if symmetric else 'affine'} quantization")
        if symmetric and zero_point.size and np.any(zero_point != 0):
            raise ValueError("zero_point must be 0 for symmetric quantization")
        zero_point = zero_point.astype(dtype, copy=False)
        self.values = values
        self.scale = scale
        self.zero_point = zero_point
        self.bits = bits
        self.symmetric = symmetric
        self.axis = axis
        self.group_size = group_size
        self.method = method
        self.nm: Optional[tuple[int, int, int]] = None  # (n, m, axis) of an N:M pattern its zeros follow, if known
        self.scale_dtype = scale_dtype  # how the file stores the scales (their values are float32 either way)

    @classmethod
    def _trusted(cls, values: NDArray[Any], scale: NDArray[np.float32], zero_point: NDArray[Any], *, bits: int,
                 symmetric: bool, axis: Optional[int], group_size: Optional[int], method: str) -> "QuantizedTensor":
        """A tensor from parts the Swift core just produced (already valid)."""
        self = cls.__new__(cls)
        self.values, self.scale, self.zero_point = values, scale, zero_point
        self.bits, self.symmetric, self.axis, self.group_size, self.method = bits, symmetric, axis, group_size, method
        self.nm = None
        self.scale_dtype = "float32"
        return self

    def with_scale_dtype(self, scale_dtype: str) -> "QuantizedTensor":
        """This tensor with its scales stored as ``scale_dtype``.

        ``"float16"`` rounds every scale to the nearest float16 and keeps the
        integer values (GPTQ's are error-compensated for their scales: kept
        as they are); the result dequantizes with exactly the scales the file
        stores, so its error is what :func:`~swiftprune.sensitivity` and the
        report measure. Halves the scales' bytes (1.5% of a 5x budget on a
        compact CNN). A group whose scale rounds to 0 in float16 (below
        ~3e-8: its weights are below ``qmax * 3e-8``, e.g. a channel of
        float32 denormals) is stored as zeros: its values become the zero
        point and its scale 1.

        Raises
        ------
        ValueError
            A scale above float16's range (65504).
        """
        scale_dtype = _check_scale_dtype(scale_dtype)
        if scale_dtype == self.scale_dtype:
            return self
        scale, values = self.scale, self.values
        if scale_dtype == "float16":
            half = _to_float16(scale)
            bad = ~np.isfinite(half)
            if bad.any():
                raise ValueError(f"scale_dtype='float16': a scale of {float(scale[bad].flat[0]):.3g} is beyond "
                                 "float16's range (65504); keep float32 scales for this tensor")
            tiny = half == 0
            if tiny.any():  # weights below float16's resolution of scales: stored as zeros
                values = np.where(self._per_value(tiny), self.zero_points_full(), values).astype(values.dtype)
                half[tiny] = 1.0
            scale = half.astype(np.float32)
        out = QuantizedTensor._trusted(values, scale, self.zero_point, bits=self.bits, symmetric=self.symmetric,
                                       axis=self.axis, group_size=self.group_size, method=self.method)
        out.nm, out.scale_dtype = self.nm, scale_dtype
        return out

    @property
    def shape(self) -> tuple[int, ...]:
        """The weight's shape."""
        return self.values.shape

    def matmul(self, x: ArrayLike, *, out: Optional[NDArray[np.float32]] = None) -> NDArray[np.float32]:
        """``W @ x`` computed from the quantized weights, as a layer would run.

        ``W`` is this tensor as a 2-D ``(out_features, in_features)`` weight
        (PyTorch ``Linear`` layout) and ``x`` has shape ``(in_features, n)``
        or ``(in_features,)``; the result is float32 of shape ``(out_features,
        n)`` or ``(out_features,)``.

        Per-output-channel (``axis=0``) and per-tensor quantization run on the
        int8 kernel :func:`swiftprune.quantized_matmul` (integer dot products
        with activations quantized on the fly; see it for the error).
        Other layouts (``axis=1``, groups) have no int8 kernel: their weights
        are dequantized and multiplied with :func:`swiftprune.matmul`.

        ``out``: a float32 array of the result's shape to write into (and
        return), as :func:`swiftprune.quantized_matmul`'s ``out=`` (same
        checks); only for the layouts that run on the int8 kernel
        (``ValueError`` for the others).
        """
        from .linalg import matmul
        from .sparse import quantized_matmul

        if self.values.ndim != 2:
            raise ValueError(f"matmul needs a 2-D quantized weight, got shape {self.values.shape}")
        if self.group_size is None and self.axis in (None, 0, -2):
            # One value per output row: per-channel already is, per-tensor is broadcast.
            def per_row(a: NDArray[Any]) -> NDArray[Any]:
                return np.ascontiguousarray(np.broadcast_to(a.reshape(-1), (self.values.shape[0],)))

            zero_point = None if self.symmetric else per_row(self.zero_point)
            return quantized_matmul(self.values, per_row(self.scale), x, zero_point, out=out)
        if out is not None:
            raise ValueError(f"out= is supported on the int8 kernel only (per-tensor or axis=0 scales, no groups); "
                             f"this tensor has axis={self.axis}, group_size={self.group_size}")
        x = np.asarray(x)
        if x.ndim == 1:
            return matmul(self.dequantize(), x.reshape(-1, 1)).reshape(-1)
        return matmul(self.dequantize(), x)

    def __matmul__(self, x: ArrayLike) -> NDArray[np.float32]:
        return self.matmul(x)

    def zero_points_full(self) -> NDArray[Any]:
        """The zero point of every value (a read-only broadcast of the values' shape)."""
        return self._per_value(self.zero_point)

    def _per_value(self, per_scale: NDArray[Any]) -> NDArray[Any]:
        """An array of the scale layout (one entry per scale) repeated over the values' shape."""
        zero_point = per_scale
        if self.group_size is not None and self.values.ndim == 2:
            other = 1 - (self.axis % 2)
            zero_point = np.repeat(zero_point, self.group_size, axis=other)
        elif self.group_size and self.values.ndim > 2:
            # A grouped conv kernel: its groups run along the matrix view's other axis (as in dequantize).
            rows, columns, matrix_axis = _group_matrix(self.shape, self.axis % self.values.ndim, self.group_size)
            groups = (rows, columns)[1 - matrix_axis] // self.group_size
            matrix = zero_point.reshape((rows, groups) if matrix_axis == 0 else (groups, columns))
            return np.repeat(matrix, self.group_size, axis=1 - matrix_axis).reshape(self.shape)
        return np.broadcast_to(zero_point, self.values.shape)

    def nonzero_mask(self) -> NDArray[np.bool_]:
        """``True`` where the value dequantizes to a non-zero (is not its zero point)."""
        if self.symmetric:
            return self.values != 0
        return self.values != self.zero_points_full()

    def dequantize(self, out: Optional[NDArray[np.float32]] = None) -> NDArray[np.float32]:
        """``(values - zero_point) * scale`` as float32, computed in Swift.

        ``out``: an optional C-contiguous float32 array of the weight's shape to
        write into (and return), as NumPy's ``out=``; saves the allocation.
        """
        if self.group_size and self.values.ndim > 2:
            # A grouped conv kernel: dequantize its matrix view (see the module docstring).
            rows, columns, matrix_axis = _group_matrix(self.shape, self.axis % self.values.ndim, self.group_size)
            groups = (rows, columns)[1 - matrix_axis] // self.group_size
            scale_shape = (rows, groups) if matrix_axis == 0 else (groups, columns)
            target = None if out is None else out.reshape(rows, columns)
            args = (np.reshape(self.values, (rows, columns)), self.symmetric, matrix_axis, self.group_size,
                    self.scale.reshape(scale_shape), self.zero_point.reshape(scale_shape))
            result = _core.dequantize(*args) if target is None else _core.dequantize(*args, target)
            return result.reshape(self.shape) if out is None else out
        if out is None:
            return _core.dequantize(self.values, self.symmetric, self.axis, self.group_size or 0,
                                    self.scale, self.zero_point)
        return _core.dequantize(self.values, self.symmetric, self.axis, self.group_size or 0,
                                self.scale, self.zero_point, out)

    def packed(self) -> NDArray[np.uint8]:
        """The values as stored: a little-endian stream of ``bits`` bits per
        value (C order; value ``i`` at bits ``[i*bits, (i+1)*bits)``, bit 0 the
        lowest of byte 0; ``bits``-bit two's complement when symmetric), a 1-D
        ``uint8`` array of ``ceil(size * bits / 8)`` bytes. 4-bit values are
        two per byte, low nibble first; 8-bit values one per byte."""
        from ._bitpack import pack_bits

        return pack_bits(self.values, self.bits)

    @classmethod
    def unpack(cls, packed: ArrayLike, shape: tuple[int, ...], bits: int, symmetric: bool) -> NDArray[Any]:
        """The values (of ``shape``) from :meth:`packed` bytes."""
        from ._bitpack import unpack_bits

        bits = _check_bits(bits)
        symmetric = _check_bool("symmetric", symmetric)
        packed = np.asarray(packed, dtype=np.uint8).reshape(-1)
        count = int(np.prod(shape, dtype=np.int64))
        return unpack_bits(packed, count, bits, symmetric).reshape(shape)

    @property
    def nbytes(self) -> int:
        """Bytes of the packed values (``ceil(size * bits / 8)``) plus the
        scales (4 bytes each, 2 with ``scale_dtype="float16"``) and, when
        affine, the one-byte zero points (symmetric zero points are
        implicit). A compressed file may store fewer: sparse values as a bit
        mask plus the packed non-zero ones (see the report)."""
        return (self.values.size * self.bits + 7) // 8 + self.scale_nbytes + (
            0 if self.symmetric else self.zero_point.size)

    @property
    def scale_nbytes(self) -> int:
        """Bytes of the stored scales."""
        return self.scale.size * (2 if self.scale_dtype == "float16" else 4)

    def to_config(self) -> dict[str, Any]:
        """Plain fields that :meth:`from_config` turns back into an equal tensor:
        arrays ``values``, ``scale``, ``zero_point`` and scalars ``bits``,
        ``symmetric``, ``axis``, ``group_size``, ``method``, ``scale_dtype``."""
        return {"values": self.values, "scale": self.scale, "zero_point": self.zero_point, "bits": self.bits,
                "symmetric": self.symmetric, "axis": self.axis, "group_size": self.group_size,
                "method": self.method, "scale_dtype": self.scale_dtype}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "QuantizedTensor":
        """The tensor described by :meth:`to_config`'s fields (validated)."""
        return cls(np.asarray(config["values"]), np.asarray(config["scale"]), np.asarray(config["zero_point"]),
                   bits=int(config["bits"]), symmetric=bool(config["symmetric"]),
                   axis=None if config.get("axis") is None else int(config["axis"]),
                   group_size=None if config.get("group_size") is None else int(config["group_size"]),
                   method=str(config.get("method", "minmax")), scale_dtype=config.get("scale_dtype", "float32"))

    def __repr__(self) -> str:
        kind = "symmetric" if self.symmetric else "affine"
        return (f"QuantizedTensor(shape={self.shape}, dtype={self.values.dtype}, bits={self.bits}, {kind}, "
                f"axis={self.axis}, group_size={self.group_size}, method={self.method!r}, nbytes={self.nbytes})")


SCALE_DTYPES = ("float32", "float16")


def _check_scale_dtype(value: Any) -> str:
    if value not in SCALE_DTYPES:
        raise ValueError(f"scale_dtype must be 'float32' or 'float16', got {value!r}")
    return str(value)


def _to_float16(scale: NDArray[np.float32]) -> NDArray[np.float16]:
    with np.errstate(over="ignore", under="ignore"):  # out of range: checked by the callers
        return np.asarray(scale, dtype=np.float32).astype(np.float16)


def _grid(bits: int, symmetric: bool) -> tuple[int, int]:
    if symmetric:
        q = 2 ** (bits - 1) - 1
        return -q, q
    return 0, 2 ** bits - 1


def _core_scale_shape(shape: tuple[int, ...], axis: Optional[int], group_size: Optional[int]) -> tuple[int, ...]:
    """The scale shape of a layout (validated like :func:`quantize`)."""
    ndim = len(shape)
    if axis is None:
        return (1,) * ndim
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for a tensor of rank {ndim}")
    a = axis % ndim
    out = [1] * ndim
    if group_size is None:
        out[a] = shape[a]
        return tuple(out)
    rows, columns, matrix_axis = _group_matrix(shape, a, group_size)
    other = 1 - matrix_axis
    length = (rows, columns)[other]
    if length % group_size:
        if ndim == 2:
            raise ValueError(f"group_size {group_size} does not divide dimension {other} of shape {shape}")
        raise ValueError(f"group_size {group_size} does not divide the input-channel x kernel dimension "
                         f"{length} of shape {shape} (channel axis {a})")
    out[a] = shape[a]
    out[1 if a == 0 else 0] = length // group_size
    return tuple(out)


def _group_matrix(shape: tuple[int, ...], a: int, group_size: int) -> tuple[int, int, int]:
    """The 2-D matrix ``(rows, columns)`` a grouped weight is quantized as,
    and the channel axis in it (0 or 1); ``a`` is the non-negative channel axis."""
    ndim = len(shape)
    if ndim == 2:
        return shape[0], shape[1], a
    if ndim < 2:
        raise ValueError(f"group_size needs a weight of rank 2 or more, got shape {shape}")
    if a == 0:
        return shape[0], math.prod(shape[1:]), 0
    if a == ndim - 1:
        return math.prod(shape[:-1]), shape[-1], 1
    raise ValueError(f"group_size on a weight of rank {ndim} needs the channel axis first (PyTorch/ONNX "
                     f"(out, in, kh, kw): axis=0) or last (Keras (kh, kw, in, out): axis=-1), got axis {a}")


def quantize(w: ArrayLike, bits: int = 8, *, symmetric: bool = True, axis: Optional[int] = None,
             group_size: Optional[int] = None, method: str = "minmax",
             percentile: float = 99.99, out: Optional[NDArray[Any]] = None,
             scale_dtype: str = "float32") -> QuantizedTensor:
    """Quantize ``w`` to ``bits``-bit integers with per-tensor, per-channel or
    per-group scales.

    Parameters
    ----------
    w : array_like of float16, float32 or float64
        The weights, any shape and memory layout (not modified).
    bits : int in 2..8
        The integer width. Values are held one per ``int8``/``uint8``;
        :meth:`QuantizedTensor.packed` packs them at ``bits`` bits each.
    symmetric : bool
        Symmetric ``[-qmax, qmax]`` with zero point 0 (default), or affine
        ``[0, 2**bits - 1]`` with a zero point.
    axis : int or None
        ``None``: one scale for the tensor; an int (negative counts from the
        end): one scale per index along it (per channel; ``axis=0`` for a
        PyTorch ``(out, in)`` weight, ``axis=-1`` for a Keras ``(in, out)`` one).
    group_size : int or None
        With ``axis``: one scale per ``group_size`` consecutive entries along
        the other dimension of a 2-D weight (GPTQ/AWQ-style int4 groups), or,
        for a conv kernel, along its input-channel×kernel dimension (channel
        axis first or last; see the module docstring for the layout). Must
        divide that dimension.
    method : {"minmax", "percentile", "mse"}
        How each group's clipping range is chosen: its min/max; clipped at
        ``percentile`` of its ``|w|`` (NumPy's linear percentile; a group whose
        clip value is 0 keeps its full range); or the range
        ``[α·min, α·max]`` (α searched on a grid in (0.2, 1]) of least
        reconstruction MSE, never worse than minmax.
    percentile : float in [0, 100]
        Used by ``method="percentile"``.
    out : ndarray, optional
        A C-contiguous, writeable ``int8`` (symmetric) or ``uint8`` (affine)
        array of ``w``'s shape, not sharing memory with ``w``, that receives
        the integers and becomes the result's ``.values`` (as NumPy's
        ``out=``). It saves the allocation: a fresh large array's pages are
        zeroed by the kernel on first touch, which costs as much as the
        quantization itself (see the README's benchmarks).
    scale_dtype : {"float32", "float16"}
        How a compressed file stores the scales: ``"float16"`` rounds them to
        float16 after quantizing (:meth:`QuantizedTensor.with_scale_dtype`).

    Returns
    -------
    QuantizedTensor

    Raises
    ------
    TypeError
        ``w`` is not a real floating array, or an argument has the wrong type.
    ValueError
        ``bits`` outside 2..8, ``axis`` out of range, ``group_size`` without an
        axis / not dividing / with a middle channel axis on a conv kernel, unknown ``method``,
        ``percentile`` outside [0, 100], NaN or Inf in ``w``, an ``out`` of
        another shape, not C-contiguous, read-only or sharing memory with ``w``
        (of another dtype: ``TypeError``).

    Examples
    --------
    >>> q = quantize(w, 8, axis=0)                    # int8 per output channel
    >>> q4 = quantize(w, 4, axis=0, group_size=128)   # int4 groups of 128 inputs
    >>> w_hat = q4.dequantize(); q4.packed().nbytes
    """
    bits = _check_bits(bits)
    symmetric = _check_bool("symmetric", symmetric)
    axis = _check_axis(axis)
    group = _check_group_size(group_size, axis)
    if not isinstance(method, str) or method not in _METHODS:
        raise ValueError(f"method must be one of {sorted(_METHODS)}, got {method!r}")
    if isinstance(percentile, (bool, np.bool_)) or not isinstance(percentile, numbers.Real):
        raise TypeError(f"percentile must be a real number in [0, 100], got {percentile!r}")
    percentile = float(percentile)
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile!r}")
    scale_dtype = _check_scale_dtype(scale_dtype)
    w = _float_array("w", w)
    if group and w.ndim < 2:
        raise ValueError(f"group_size needs a weight of rank 2 or more, got shape {w.shape}")
    if group and w.ndim > 2:
        # A conv kernel: quantize its (channel, input-channel x kernel) matrix view.
        scale_shape = _core_scale_shape(w.shape, axis, group)
        rows, columns, matrix_axis = _group_matrix(w.shape, axis % w.ndim, group)
        target = None if out is None else _out_view(out, w.shape, (rows, columns))
        values, scale, zero_point = _core.quantize(np.reshape(w, (rows, columns)), bits, symmetric, matrix_axis,
                                                   group, _METHODS[method], percentile, target)
        return QuantizedTensor._trusted(values.reshape(w.shape) if out is None else out, scale.reshape(scale_shape),
                                        zero_point.reshape(scale_shape), bits=bits, symmetric=symmetric,
                                        axis=axis, group_size=group_size, method=method).with_scale_dtype(scale_dtype)
    values, scale, zero_point = _core.quantize(w, bits, symmetric, axis, group, _METHODS[method], percentile, out)
    return QuantizedTensor._trusted(values, scale, zero_point, bits=bits, symmetric=symmetric, axis=axis,
                                    group_size=group_size, method=method).with_scale_dtype(scale_dtype)


def _out_view(out: Any, shape: tuple[int, ...], matrix: tuple[int, int]) -> Any:
    """``out`` (checked to have ``shape`` and be C-contiguous) as the ``matrix`` view the core fills."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy int8/uint8 array, got {type(out).__name__}")
    if out.shape != shape or not out.flags.c_contiguous:
        raise ValueError(f"out must be a writeable C-contiguous array of w's shape {shape}, got {out.shape}")
    return out.reshape(matrix)


def cast(w: ArrayLike, dtype: str) -> NDArray[Any]:
    """``w`` rounded to a 16-bit float format, round to nearest, ties to even.

    Parameters
    ----------
    w : array_like of float16, float32 or float64
        Any values: NaN and ±Inf are converted (this is a value conversion,
        not a weight check).
    dtype : {"float16", "bfloat16"}
        ``"float16"``: a ``numpy.float16`` array, bit-identical to
        ``w.astype(np.float16)`` (float64 input is rounded once, directly).
        ``"bfloat16"``: an ``ml_dtypes.bfloat16`` array when ``ml_dtypes`` is
        installed, else the ``uint16`` bit patterns; NaN stays NaN (quiet bit
        set), float64 input is rounded once, directly.

    Returns
    -------
    numpy.ndarray of ``w``'s shape
    """
    if dtype not in ("float16", "bfloat16"):
        raise ValueError(f"dtype must be 'float16' or 'bfloat16', got {dtype!r}")
    w = _float_array("w", w)
    bits = _core.cast(w, dtype == "bfloat16")
    if dtype == "float16":
        return bits.view(np.float16)
    try:
        import ml_dtypes  # type: ignore[import-not-found]
    except ImportError:
        return bits
    return bits.view(ml_dtypes.bfloat16)


def sqnr_db(w: ArrayLike, w_hat: ArrayLike) -> float:
    """Signal-to-quantization-noise ratio ``10·log10(Σw² / Σ(w - ŵ)²)`` in dB.

    A metric, computed with NumPy in float64 (not a kernel). ``inf`` when
    ``ŵ == w`` exactly; ``-inf`` when ``w`` is all zero and ``ŵ`` is not.
    """
    a, b = _metric_pair(w, w_hat)
    noise = float(np.sum((a - b) ** 2))
    signal = float(np.sum(a ** 2))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(signal / noise))


def relative_error(w: ArrayLike, w_hat: ArrayLike) -> float:
    """Relative Frobenius error ``‖w - ŵ‖_F / ‖w‖_F`` (NumPy, float64).

    0 when both are zero; ``inf`` when only ``w`` is zero.
    """
    a, b = _metric_pair(w, w_hat)
    diff = float(np.linalg.norm((a - b).ravel()))
    norm = float(np.linalg.norm(a.ravel()))
    if norm == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / norm


def _metric_pair(w: ArrayLike, w_hat: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a = _float_array("w", w).astype(np.float64)
    b = _float_array("w_hat", w_hat).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"w and w_hat must have the same shape, got {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("w and w_hat must not contain NaN or Inf")
    return a, b


def _centred_hessian(statistics: Any) -> np.ndarray:
    """``xᵀx − n·μμᵀ`` (float64) of an accumulator; an input whose centred variance is below 1e-12 of its
    second moment (constant up to rounding: the subtraction cancels) gets a zero row and column, i.e. is a dead
    column for GPTQ, instead of a rounding-noise entry that could make the matrix indefinite."""
    n = max(statistics.count_, 1)
    hessian = statistics.hessian_ - np.outer(statistics.sum_, statistics.sum_) / n
    constant = np.diag(hessian) <= 1e-12 * np.diag(statistics.hessian_)
    hessian[constant, :] = 0.0
    hessian[:, constant] = 0.0
    return hessian


def gptq(w: ArrayLike, x: Any, bits: int = 4, group_size: Optional[int] = 128, damp: float = 0.01, *,
         symmetric: bool = True, act_order: bool = False, static_groups: bool = False, mse: bool = False,
         block_size: int = 128, scale_dtype: str = "float32", center: bool = False) -> QuantizedTensor:
    """GPTQ: quantize a linear layer's weight using calibration activations.

    Columns (input features) are quantized one at a time; each column's
    rounding error is spread over the columns not yet quantized through the
    inverse Hessian ``H = xᵀx / samples``, so the layer output ``w @ x.T``
    moves much less than with round-to-nearest at the same bits and groups
    (Frantar et al., 2022). Runs in Swift in float32, as the paper's code:
    the Hessian's products (summed in float64), the Cholesky factor of the
    (reversed) damped Hessian and its triangular inverse (the upper Cholesky
    factor of ``H⁻¹``; float64 only if float32 cannot factor it), blocks of
    ``block_size`` columns with rank-1 updates inside a block and one SGEMM
    for the columns after it. ``w`` is rounded to float32 first.

    Parameters
    ----------
    w : array_like, shape (out, in)
        The weight (PyTorch ``Linear`` layout; transpose a Keras kernel).
    x : array_like, shape (samples, in), or HessianAccumulator
        Calibration inputs of the layer, or their accumulated ``xᵀx``
        (:class:`~swiftprune.calibration.HessianAccumulator`).
    bits : int in 2..8
    group_size : int or None
        Groups of ``group_size`` input columns per scale (must divide ``in``);
        ``None``: one scale per output row.
    damp : float >= 0
        ``H += damp * mean(diag(H)) * I`` before factorizing.
    symmetric : bool
        As in :func:`quantize`.
    act_order : bool
        Quantize columns in decreasing order of ``diag(H)`` (the paper's
        "act-order", the reference's ``--act-order``): the inputs with the
        most energy go first, while many columns remain to absorb their
        error. With groups, the group scales are static (below), so the
        stored layout stays groups of consecutive columns.
    static_groups : bool
        Take every group's scale from the weights before any update (the
        reference's ``--static-groups``) instead of when the group is reached.
    mse : bool
        Search each scale's clipping range (shrinks ``1 - k/100`` of the
        min–max range, up to 80%) for the least squared rounding error of its
        group (the reference ``Quantizer(mse=True)``, with norm 2).
    block_size : int >= 1
        Columns per lazy-update block (rounded to a multiple of ``group_size``).
    scale_dtype : {"float32", "float16"}
        As in :func:`quantize`: float16 scales are rounded after the GPTQ
        pass, the error-compensated integers kept.
    center : bool
        Minimize the error on the centred inputs ``x − mean(x)`` (the
        Hessian ``xᵀx − n·μμᵀ``) instead of on ``x``: the part of the output
        error that is a constant shift, ``(W − Ŵ) μ``, is left to
        :func:`~swiftprune.bias_correction`, which removes it exactly, so
        the quantizer spends nothing on it. Use it only followed by bias
        correction (a recipe's gptq stage needs ``bias_correction: true``).
        An input that is constant over the samples is then quantized as
        zero: the corrected bias carries its whole contribution.

    Returns
    -------
    QuantizedTensor
        ``axis=0`` and ``group_size`` as given: the same layout as
        ``quantize(w, bits, axis=0, group_size=group_size)``. Scales are
        computed (minmax) per row when each group starts, from the weights
        updated so far. Input columns that are always zero in ``x`` are
        quantized as zeros.

    Raises
    ------
    TypeError, ValueError
        Bad types or shapes, bits outside 2..8, ``group_size`` not dividing
        ``in``, negative ``damp``, NaN/Inf in ``w`` or ``x``, no samples, or a
        Hessian not positive definite (raise ``damp``).
    """
    bits = _check_bits(bits)
    symmetric = _check_bool("symmetric", symmetric)
    group = 0 if group_size is None else check_int("group_size", group_size, minimum=1)
    if isinstance(damp, (bool, np.bool_)) or not isinstance(damp, numbers.Real):
        raise TypeError(f"damp must be a real number >= 0, got {damp!r}")
    damp = float(damp)
    if not (damp >= 0.0 and np.isfinite(damp)):
        raise ValueError(f"damp must be a finite number >= 0, got {damp!r}")
    act_order = _check_bool("act_order", act_order)
    static_groups = _check_bool("static_groups", static_groups)
    mse = _check_bool("mse", mse)
    block_size = check_int("block_size", block_size, minimum=1)
    scale_dtype = _check_scale_dtype(scale_dtype)
    center = _check_bool("center", center)
    from .calibration.hessian import HessianAccumulator  # (calibration imports this module's types)

    w = _float_array("w", w)
    if isinstance(x, HessianAccumulator):
        if w.ndim != 2:
            raise ValueError(f"gptq needs w of shape (out, in), got {w.shape}")
        if w.shape[1] != x.features:
            raise ValueError(f"layer {x.name!r}: the Hessian has {x.features} features but w has {w.shape[1]} "
                             "input columns (w must be (out, in))")
        x.check()
        statistics, name = x, x.name
    else:
        x = _float_array("x", x)
        if w.ndim != 2 or x.ndim != 2:
            raise ValueError(f"gptq needs w of shape (out, in) and x of shape (samples, in), got {w.shape} and {x.shape}")
        if w.shape[1] != x.shape[1]:
            raise ValueError(f"w has {w.shape[1]} input columns but x has {x.shape[1]} features")
        if x.shape[0] == 0 and w.shape[1] > 0:
            raise ValueError("x needs at least one calibration sample")
        # float32 products, as the paper's code (and float64 inputs give the same result as float32 ones).
        statistics, name = HessianAccumulator(x.shape[1], name="x").update(x.astype(np.float32, copy=False)), None
    hessian = _centred_hessian(statistics) if center else statistics.hessian_
    if group and w.shape[1] % group:
        raise ValueError(f"group_size = {group} does not divide the {w.shape[1]} input columns")
    block_size = min(block_size, max(w.shape[1], 1))  # wider blocks change nothing
    try:
        values, scale, zero_point = _core.gptq_hessian(w, hessian, bits, symmetric, group, damp, block_size,
                                                       act_order, static_groups, 100 if mse else 0)
    except ValueError as error:
        raise ValueError(f"layer {name!r}: {error}" if name else str(error)) from None
    return QuantizedTensor._trusted(values, scale, zero_point, bits=bits, symmetric=symmetric, axis=0,
                                    group_size=group_size, method="gptq").with_scale_dtype(scale_dtype)
