"""Float16 storage: a weight kept as IEEE half-precision values.

The "keep float16" choice of the planner and the recipe stage
``{"quantize": {"method": "float16"}}``: half the bytes of float32, values
rounded to nearest-even by the Swift core (:func:`~swiftprune.cast`).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .quantization import cast


class HalfPrecisionTensor:
    """A weight stored as ``float16`` ``values`` (the weight's shape)."""

    __slots__ = ("values",)

    def __init__(self, values: NDArray[np.float16]) -> None:
        values = np.asarray(values)
        if values.dtype != np.float16:
            raise TypeError(f"values must be float16, got {values.dtype}")
        self.values = values

    @property
    def shape(self) -> tuple[int, ...]:
        """The weight's shape."""
        return self.values.shape

    @property
    def nbytes(self) -> int:
        """Two bytes per value."""
        return int(self.values.size) * 2

    def dequantize(self) -> NDArray[np.float32]:
        """The values as float32 (exact)."""
        return self.values.astype(np.float32)

    def __repr__(self) -> str:
        return f"HalfPrecisionTensor(shape={self.shape}, nbytes={self.nbytes})"


def to_float16(w: ArrayLike) -> HalfPrecisionTensor:
    """``w`` rounded to float16 (nearest, ties to even). Values beyond the
    float16 range (±65504) raise ``ValueError`` instead of becoming ±Inf."""
    half = cast(w, "float16")
    if half.size and not np.all(np.isfinite(half)):
        raise ValueError("the weights exceed the float16 range (|w| > 65504); keep them as float32")
    return HalfPrecisionTensor(half)


def _encode(t: HalfPrecisionTensor) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    return {"values": t.values}, {"shape": list(t.shape)}


def _decode(parts: Any, attrs: Any) -> HalfPrecisionTensor:
    values = np.asarray(parts["values"])
    if values.dtype != np.float16 or list(values.shape) != list(attrs["shape"]):
        raise ValueError(f"stored part 'values' must be float16 of shape {attrs['shape']}, got "
                         f"{values.dtype} {values.shape}")
    return HalfPrecisionTensor(values)
