"""Pruned tensors stored as kept values plus a bit mask, and the mask packing."""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
from numpy.typing import NDArray

from . import _sparse_storage
from ._bitpack import pack_bits, packed_size, unpack_bits
from .registry import Codec, register_codec

__all__ = ["PrunedTensor", "pack_mask", "unpack_mask"]


class PrunedTensor:
    """A pruned tensor stored as its kept values plus a bit mask.

    Parameters
    ----------
    mask : numpy.ndarray of bool
        ``True`` where the weight is kept; the tensor's shape.
    values : numpy.ndarray of float32, 1-D
        The kept weights in C order (``dense[mask]``).
    """

    __slots__ = ("mask", "_values", "_dense", "nm")

    def __init__(self, mask: NDArray[np.bool_], values: NDArray[np.float32]) -> None:
        self.mask = mask
        self._values: NDArray[np.float32] | None = values
        self._dense: NDArray[np.float32] | None = None
        self.nm: tuple[int, int, int] | None = None  # (n, m, axis) when an N:M prune made the mask

    @classmethod
    def _from_dense(cls, mask: NDArray[np.bool_], dense: NDArray[np.float32]) -> "PrunedTensor":
        """From the dense pruned weights; the kept values are gathered on first use."""
        tensor = cls(mask, None)  # type: ignore[arg-type]
        tensor._dense = dense
        return tensor

    @property
    def values(self) -> NDArray[np.float32]:
        if self._values is None:
            self._values = _sparse_storage.masked_values(self._dense, self.mask)
        return self._values

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.mask.shape)

    @property
    def nbytes(self) -> int:
        """Stored size: the kept float32 values plus one bit per entry, or, for
        an N:M mask keeping exactly n of every m, the kept values plus each
        one's position in its run (``ceil(log2 m)`` bits)."""
        return _pruned_layout(self)[1]

    def to_dense(self) -> NDArray[np.float32]:
        """The dense float32 tensor, zero where pruned."""
        if self._dense is not None:
            return self._dense
        dense = np.zeros(self.mask.shape, dtype=np.float32)
        dense[self.mask] = self.values
        return dense

    def __repr__(self) -> str:
        kept = int(np.count_nonzero(self.mask))
        sparsity = 1 - kept / self.mask.size if self.mask.size else 0.0
        return (f"PrunedTensor(shape={self.shape}, dtype=float32, kept={kept}, sparsity={sparsity:.2%}, "
                f"nbytes={self.nbytes})")


# The mask bit packing is the sparse layouts' own (one implementation, re-exported for the codecs).
pack_mask = _sparse_storage.pack_mask
unpack_mask = _sparse_storage.unpack_mask


def _pruned_layout(t: PrunedTensor) -> tuple[str, int]:
    """``("nm", bytes)`` when the mask keeps exactly n of every m along the N:M axis, else ``("bitmask", bytes)``."""
    kept = int(np.count_nonzero(t.mask))
    if t.nm is not None and _sparse_storage.nm_fits(t.mask, t.nm[0], t.nm[1], t.nm[2], exact=True):
        return "nm", 4 * kept + packed_size(kept, _sparse_storage.nm_index_bits(t.nm[1]))
    return "bitmask", 4 * kept + (int(t.mask.size) + 7) // 8


def _encode_pruned(t: PrunedTensor) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    if _pruned_layout(t)[0] == "nm":
        n, m, axis = t.nm
        values, positions = _sparse_storage.nm_select(t.to_dense(), t.mask, n, m, axis)
        return ({"values": values, "positions": pack_bits(positions, _sparse_storage.nm_index_bits(m))},
                {"shape": list(t.shape), "layout": "nm", "nm": [n, m, axis]})
    return {"values": t.values, "mask": pack_mask(t.mask)}, {"shape": list(t.shape)}


def _decode_nm(parts: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> PrunedTensor:
    shape = tuple(attrs["shape"])
    n, m, axis = _sparse_storage.nm_attr(attrs, shape)
    stored = math.prod(shape) // m * n
    values = np.asarray(parts["values"])
    if values.dtype != np.float32 or values.shape != (stored,):
        raise ValueError(f"pruned values must be float32 of shape ({stored},), got {values.dtype} {values.shape}")
    positions = unpack_bits(np.asarray(parts["positions"]), stored, _sparse_storage.nm_index_bits(m))
    mask = _sparse_storage.nm_scatter(np.zeros(shape, bool), np.ones(stored, bool), positions, n, m, axis)
    dense = _sparse_storage.nm_scatter(np.zeros(shape, np.float32), values, positions, n, m, axis)
    tensor = PrunedTensor(np.ascontiguousarray(mask), np.ascontiguousarray(dense)[mask])
    tensor.nm = (n, m, axis)
    return tensor


def _decode_pruned(parts: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> PrunedTensor:
    if attrs.get("layout", "bitmask") == "nm":
        return _decode_nm(parts, attrs)
    mask = unpack_mask(parts["mask"], attrs["shape"])
    values = np.asarray(parts["values"])
    if values.dtype != np.float32 or values.shape != (int(mask.sum()),):
        raise ValueError(f"pruned values must be float32 of shape ({int(mask.sum())},), got {values.dtype} {values.shape}")
    return PrunedTensor(mask, values)


register_codec(Codec(
    kind="pruned", type=PrunedTensor, dense=lambda t: t.to_dense(), nbytes=lambda t: t.nbytes,
    encode=_encode_pruned, decode=_decode_pruned,
))


# --------------------------------------------------------------------------- #
# Methods: one registry entry per operation variant
# --------------------------------------------------------------------------- #
