"""Pruned tensors stored as kept values plus a bit mask, and the mask packing."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

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

    __slots__ = ("mask", "_values", "_dense")

    def __init__(self, mask: NDArray[np.bool_], values: NDArray[np.float32]) -> None:
        self.mask = mask
        self._values: NDArray[np.float32] | None = values
        self._dense: NDArray[np.float32] | None = None

    @classmethod
    def _from_dense(cls, mask: NDArray[np.bool_], dense: NDArray[np.float32]) -> "PrunedTensor":
        """From the dense pruned weights; the kept values are gathered on first use."""
        tensor = cls(mask, None)  # type: ignore[arg-type]
        tensor._dense = dense
        return tensor

    @property
    def values(self) -> NDArray[np.float32]:
        if self._values is None:
            self._values = self._dense[self.mask]
        return self._values

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.mask.shape)

    @property
    def nbytes(self) -> int:
        """Stored size: the kept float32 values plus one bit per entry."""
        return 4 * int(np.count_nonzero(self.mask)) + (int(self.mask.size) + 7) // 8

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



def pack_mask(mask: np.ndarray) -> np.ndarray:
    return np.packbits(mask.reshape(-1))


def unpack_mask(bits: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    count = math.prod(shape)
    if bits.dtype != np.uint8 or bits.ndim != 1 or bits.size != (count + 7) // 8:
        raise ValueError(f"a packed mask for shape {tuple(shape)} needs {(count + 7) // 8} uint8 bytes, got {bits.shape} {bits.dtype}")
    return np.unpackbits(bits, count=count).astype(bool).reshape(tuple(shape))


def _decode_pruned(parts: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> PrunedTensor:
    mask = unpack_mask(parts["mask"], attrs["shape"])
    values = np.asarray(parts["values"])
    if values.dtype != np.float32 or values.shape != (int(mask.sum()),):
        raise ValueError(f"pruned values must be float32 of shape ({int(mask.sum())},), got {values.dtype} {values.shape}")
    return PrunedTensor(mask, values)


register_codec(Codec(
    kind="pruned", type=PrunedTensor, dense=lambda t: t.to_dense(), nbytes=lambda t: t.nbytes,
    encode=lambda t: ({"values": t.values, "mask": pack_mask(t.mask)}, {"shape": list(t.shape)}),
    decode=_decode_pruned,
))


# --------------------------------------------------------------------------- #
# Methods: one registry entry per operation variant
# --------------------------------------------------------------------------- #
