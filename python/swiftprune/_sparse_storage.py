"""Layouts of sparse compressed tensors in a file, and their exact sizes.

A tensor with many zeros (pruned, then maybe quantized) is stored in the
smallest of these layouts that holds it exactly:

``packed``
    every value at its bit width (``ceil(size * bits / 8)`` bytes);
``bitmask``
    one bit per entry (``np.packbits`` order, C order: 1 = stored) plus the
    stored values packed at their bit width, in C order;
``nm``
    for an N:M pattern along an axis (every run of ``m`` entries along it
    holds at most ``n`` non-zeros): ``n`` values per run, in position order,
    plus each one's position in the run at ``ceil(log2 m)`` bits (2:4 is
    values + 2-bit indices, the layout of sparse tensor cores).

The size functions compute the bytes without building the parts, so a
report can state exactly what the file will hold.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from . import _core
from ._bitpack import pack_bits, packed_size, unpack_bits

__all__ = ["masked_values", "mask_size", "nm_index_bits", "nm_groups", "run_counts", "nm_fits", "nm_select", "nm_scatter",
           "pack_mask", "unpack_mask", "choose", "nm_attr"]


def mask_size(count: int) -> int:
    """Bytes of a bit mask of ``count`` entries."""
    return (int(count) + 7) // 8


def pack_mask(mask: np.ndarray) -> np.ndarray:
    """A bool array as bits (``np.packbits`` order, C order)."""
    return np.packbits(np.asarray(mask, dtype=bool).reshape(-1))


def unpack_mask(bits: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """The bool array of ``shape`` from :func:`pack_mask` bytes (checked)."""
    count = math.prod(shape)
    bits = np.asarray(bits)
    if bits.dtype != np.uint8 or bits.ndim != 1 or bits.size != mask_size(count):
        raise ValueError(f"a packed mask for shape {tuple(shape)} needs {mask_size(count)} uint8 bytes, "
                         f"got {bits.shape} {bits.dtype}")
    return np.unpackbits(bits, count=count).astype(bool).reshape(tuple(shape))


def masked_values(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``values[mask]`` (1-D, C order, ``values``' dtype), compacted by the
    Swift core in one branch-free pass (NumPy's boolean indexing costs ~5x
    more on the large tensors a file holds)."""
    values = np.asarray(values)
    mask = np.asarray(mask, dtype=bool)
    if values.shape != mask.shape:
        raise ValueError(f"a mask of shape {mask.shape} cannot select from values of shape {values.shape}")
    if values.dtype.itemsize not in (1, 2, 4, 8) or values.dtype.kind not in "biuf":
        return values[mask]
    mask = np.ascontiguousarray(mask)
    return _core.mask_compact(np.ascontiguousarray(values), mask, int(np.count_nonzero(mask)))


def nm_index_bits(m: int) -> int:
    """Bits per stored position in a run of ``m``: ``ceil(log2 m)`` (at least 1)."""
    return max(1, math.ceil(math.log2(m)))


def nm_groups(array: np.ndarray, m: int, axis: int) -> Optional[np.ndarray]:
    """``array`` as ``(runs, m)`` with the runs along ``axis`` (a copy when
    ``axis`` is not the last one), or ``None`` when ``m`` does not divide it."""
    if array.ndim == 0 or not -array.ndim <= axis < array.ndim or array.shape[axis] % m:
        return None
    return np.moveaxis(array, axis, -1).reshape(-1, m)


def run_counts(nonzero: np.ndarray, m: int, axis: int) -> Optional[np.ndarray]:
    """The number of True entries in every run of ``m`` along ``axis``
    (uint16; the axis split into ``(runs, m)`` and the ``m`` summed away,
    other axes in place), or ``None`` when ``m`` does not divide that axis.
    Summed slice by slice over a uint8 view, without moving the axis: NumPy's
    reduction along a short axis, or a transposed copy, costs ~10x more."""
    nonzero = np.ascontiguousarray(nonzero, dtype=bool)
    if nonzero.ndim == 0 or not -nonzero.ndim <= axis < nonzero.ndim or nonzero.shape[axis] % m:
        return None
    axis %= nonzero.ndim
    shape = nonzero.shape
    if axis == nonzero.ndim - 1 and m in (4, 8):
        # Runs of 4 or 8 contiguous 0/1 bytes as one integer each: a multiply
        # sums its bytes into the top byte (a byte-wise popcount, no carries).
        word = np.uint32 if m == 4 else np.uint64
        runs = nonzero.reshape(-1).view(word)
        ones = word(0x01010101) if m == 4 else word(0x0101010101010101)
        counts = np.multiply(runs, ones, dtype=word)
        counts >>= word(8 * (m - 1))
        return counts.astype(np.uint16).reshape(shape[:-1] + (shape[-1] // m,))
    split = nonzero.view(np.uint8).reshape(shape[:axis] + (shape[axis] // m, m) + shape[axis + 1:])
    index = [slice(None)] * split.ndim
    index[axis + 1] = 0
    counts = split[tuple(index)].astype(np.uint16)
    for column in range(1, m):
        index[axis + 1] = column
        counts += split[tuple(index)]
    return counts


_FITS_CHUNK = 1 << 22  # entries per step of nm_fits: bounded temporaries on large tensors


def nm_fits(nonzero: np.ndarray, n: int, m: int, axis: int, *, exact: bool = False) -> bool:
    """Whether every run of ``m`` along ``axis`` has at most ``n`` (``exact``:
    exactly ``n``) True entries of ``nonzero`` (checked in slices along
    another axis, so the counts of a large tensor are never all in memory)."""
    nonzero = np.asarray(nonzero, dtype=bool)
    if n >= m or nonzero.ndim == 0 or not -nonzero.ndim <= axis < nonzero.ndim or nonzero.shape[axis] % m:
        return False
    axis %= nonzero.ndim
    split = 1 if axis == 0 and nonzero.ndim > 1 else 0  # slice along an axis the runs do not cross
    if split == axis:  # a 1-D tensor: one piece
        pieces = [nonzero]
    else:
        step = max(1, _FITS_CHUNK // max(1, nonzero.size // max(1, nonzero.shape[split])))
        pieces = [np.take(nonzero, range(start, min(start + step, nonzero.shape[split])), axis=split)
                  if split else nonzero[start:start + step] for start in range(0, nonzero.shape[split], step)]
    for piece in pieces:
        counts = run_counts(piece, m, axis)
        if counts is None or not (np.all(counts == n) if exact else counts.max(initial=0) <= n):
            return False
    return True


def nm_select(values: np.ndarray, nonzero: np.ndarray, n: int, m: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` entries per run that the ``nm`` layout stores: the non-zero
    ones first (a run with fewer is filled with its first zero entries), in
    position order. Returns ``(values, positions)``, each ``(runs * n,)``;
    compacted by the Swift core (``ValueError`` if a run holds more than
    ``n`` non-zeros)."""
    runs = nm_groups(np.asarray(values), m, axis)
    keep = nm_groups(np.asarray(nonzero, dtype=bool), m, axis)
    if runs is None or keep is None:
        raise ValueError(f"m = {m} does not divide axis {axis} of shape {np.shape(values)}")
    return _core.nm_compact(np.ascontiguousarray(runs), np.ascontiguousarray(keep), n, m)


def nm_scatter(fill: np.ndarray, stored: np.ndarray, positions: np.ndarray, n: int, m: int,
               axis: int) -> np.ndarray:
    """Inverse of :func:`nm_select`: ``fill`` (the tensor's zero, of its
    shape) with the stored values put back at their positions."""
    moved = np.moveaxis(fill, axis, -1)
    runs = np.ascontiguousarray(moved).reshape(-1, m)
    if positions.size != runs.shape[0] * n or stored.size != positions.size:
        raise ValueError(f"an {n}:{m} layout of {runs.shape[0]} runs needs {runs.shape[0] * n} values and "
                         f"positions, got {stored.size} and {positions.size}")
    if positions.size and int(positions.max()) >= m:
        raise ValueError(f"stored positions must be < m = {m}")
    index = positions.reshape(-1, n).astype(np.intp)
    if np.any(np.diff(index, axis=1) <= 0):
        raise ValueError("stored positions must increase within each run")
    np.put_along_axis(runs, index, stored.reshape(-1, n), axis=1)
    return np.moveaxis(runs.reshape(moved.shape), -1, axis)


def nm_attr(attrs: Mapping[str, Any], shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The checked ``[n, m, axis]`` of a stored N:M layout."""
    nm = attrs.get("nm")
    if (not isinstance(nm, list) or len(nm) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) for v in nm)
            or not 1 <= nm[0] < nm[1] <= 256 or not -len(shape) <= nm[2] < len(shape) or shape[nm[2]] % nm[1]):
        raise ValueError(f"nm must be [n, m, axis] with 1 <= n < m <= 256 and m dividing that axis of {shape}, "
                         f"got {nm!r}")
    return nm[0], nm[1], nm[2]


def choose(count: int, nonzeros: int, bits: int, nm: Optional[tuple[int, int]] = None,
           allow_packed: bool = True) -> tuple[str, int]:
    """The smallest layout for ``count`` entries of ``bits`` bits with
    ``nonzeros`` non-zeros, and its bytes (values, mask, positions; not
    scales). ``nm=(n, m)`` when that pattern fits; ``allow_packed=False``
    when the zeros must be recorded (a pruned tensor's mask). Ties go to
    ``nm``, then ``packed``."""
    candidates = []
    if nm is not None:
        n, m = nm
        stored = count // m * n
        candidates.append(("nm", packed_size(stored, bits) + packed_size(stored, nm_index_bits(m))))
    if allow_packed:
        candidates.append(("packed", packed_size(count, bits)))
    candidates.append(("bitmask", mask_size(count) + packed_size(nonzeros, bits)))
    return min(candidates, key=lambda c: c[1])  # min keeps the first of equal sizes


def pack_values(values: np.ndarray, bits: int) -> np.ndarray:
    """Integer values at ``bits`` bits (8: the bytes as they are)."""
    return pack_bits(values, bits)


def unpack_values(packed: np.ndarray, count: int, bits: int, signed: bool) -> np.ndarray:
    return unpack_bits(packed, count, bits, signed)
