"""Integers of 1 to 8 bits as a little-endian bit stream (packed by the Swift core).

Value ``i`` occupies bits ``[i * bits, (i + 1) * bits)`` of the stream, bit 0
being the lowest bit of byte 0 (the order of ``np.packbits(...,
bitorder="little")``; for 4 bits it is "two per byte, low nibble first", the
GPTQ / llama.cpp convention). ``n`` values take ``ceil(n * bits / 8)`` bytes;
the unused high bits of the last byte are zero. Signed values are stored as
their ``bits``-bit two's complement.
"""
from __future__ import annotations

import numpy as np

from . import _core

__all__ = ["packed_size", "pack_bits", "unpack_bits"]


def packed_size(count: int, bits: int) -> int:
    """Bytes taken by ``count`` values of ``bits`` bits: ``ceil(count * bits / 8)``."""
    return (int(count) * int(bits) + 7) // 8


def _check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 8:
        raise ValueError(f"bits must be an integer in 1..8, got {bits!r}")
    return int(bits)


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """The low ``bits`` bits of each value (1-byte integers or bools, any
    shape, C order) as a 1-D ``uint8`` stream of ``ceil(size * bits / 8)``
    bytes. Higher bits of the inputs are ignored."""
    bits = _check_bits(bits)
    flat = np.ascontiguousarray(values).reshape(-1)
    if flat.dtype.itemsize != 1 or flat.dtype.kind not in "iub":
        raise TypeError(f"pack_bits takes 1-byte integers, got {flat.dtype}")
    flat = flat.view(np.uint8)
    if bits == 8:
        return flat.copy()
    return _core.pack_bits(flat, bits)


def unpack_bits(packed: np.ndarray, count: int, bits: int, signed: bool = False) -> np.ndarray:
    """The inverse of :func:`pack_bits`: ``count`` values, 1-D, ``int8``
    (sign-extended from ``bits`` bits) when ``signed`` else ``uint8``.

    Raises ``ValueError`` when ``packed`` does not hold exactly
    ``ceil(count * bits / 8)`` bytes.
    """
    bits = _check_bits(bits)
    packed = np.asarray(packed)
    if packed.dtype != np.uint8:
        raise TypeError(f"packed values must be uint8, got {packed.dtype}")
    return _core.unpack_bits(packed.reshape(-1), int(count), bits, bool(signed))
