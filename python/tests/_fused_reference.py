"""The staged reference both fused-pass test files compare the kernel's outputs with."""
from __future__ import annotations

import numpy as np
import pytest

import swiftprune as sp
from swiftprune import _sparse_storage
from swiftprune._bitpack import pack_bits


def staged_quantized(w: np.ndarray, keep: np.ndarray, bits: int, symmetric: bool, group: int | None):
    """The 2:4-pruned `w` (float32) quantized by the staged quantizer along inputs."""
    return sp.quantize(np.where(keep, w, np.float32(0)) + np.float32(0), bits, symmetric=symmetric, axis=0,
                       group_size=group)


def assert_encodings_equal_staged(q, w: np.ndarray, bits: int, scales, nm_values, positions, mask, values,
                                  nonzeros, norm, difference) -> None:
    """The kernel's scales, both layouts and error sums equal the staged encoders' on `q` (from `w`)."""
    nonzero = q.nonzero_mask()
    np.testing.assert_array_equal(scales, q.scale)
    assert nonzeros == int(np.count_nonzero(nonzero))
    stored, stored_positions = _sparse_storage.nm_select(q.values, nonzero, 2, 4, -1)
    assert nm_values.tobytes() == pack_bits(stored, bits).tobytes()
    assert positions.tobytes() == pack_bits(stored_positions, 2).tobytes()
    assert mask.tobytes() == np.packbits(nonzero.reshape(-1)).tobytes()
    assert values.tobytes() == pack_bits(q.values[nonzero], bits).tobytes()
    reference = w.astype(np.float64)
    assert norm == pytest.approx(float(np.sum(reference ** 2)), rel=1e-12)
    assert difference == pytest.approx(float(np.sum((reference - q.dequantize()) ** 2)), rel=1e-9)
