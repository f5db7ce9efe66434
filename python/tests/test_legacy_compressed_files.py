"""Files written by swiftprune <= 0.1.0 still load: their quantized values of
2..4 bits are nibbles (two per byte, low nibble first, whatever the bit
width), 5..8 bits one byte each, and their metadata has no ``packing`` key.

The files are built here by hand (NumPy nibble packing, the old metadata), not
by the current writer, so the test does not depend on the code it checks.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import swiftprune as sp
from swiftprune.io import SafetensorsWriter


def _nibbles(values: np.ndarray) -> np.ndarray:
    """The old layout, in NumPy: low 4 bits of each value, two per byte, low nibble first."""
    flat = values.reshape(-1).view(np.uint8) & 0x0F
    if flat.size % 2:
        flat = np.append(flat, np.uint8(0))
    return (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8)


def _write_old_file(path, name, stored_values, scale, zero_point, shape, bits, symmetric, axis):
    attrs = {"shape": list(shape), "bits": bits, "symmetric": symmetric, "axis": axis, "group_size": None,
             "method": "minmax"}  # no "packing" and no "layout": the 0.1.0 metadata
    parts = {"values": f"{name}::values", "scale": f"{name}::scale"}
    with SafetensorsWriter(path) as writer:
        writer.add(parts["values"], stored_values)
        writer.add(parts["scale"], scale.reshape(-1, 1))  # (rows, 1): per-channel along axis 0
        if not symmetric:
            parts["zero_point"] = f"{name}::zero_point"
            writer.add(parts["zero_point"], zero_point.reshape(-1, 1))
        document = {"format_version": 1, "swiftprune_version": "0.1.0", "container": "mapping",
                    "tensors": [{"name": name, "kind": "quantized", "attrs": attrs, "parts": parts}], "report": []}
        writer.set_metadata("swiftprune", json.dumps(document))


@pytest.mark.parametrize("bits,symmetric,shape", [(4, True, (7, 9)), (3, True, (5, 6)), (2, False, (3, 11)),
                                                   (4, False, (1, 1)), (8, True, (4, 5)), (6, False, (2, 7))])
def test_old_files_load_with_their_values(tmp_path, bits, symmetric, shape):
    rng = np.random.default_rng(bits * 10 + symmetric)
    rows = shape[0]
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        values = rng.integers(-qmax, qmax + 1, size=shape).astype(np.int8)
        zero_point = np.zeros(rows, np.int8)
    else:
        values = rng.integers(0, 2 ** bits, size=shape).astype(np.uint8)
        zero_point = rng.integers(0, 2 ** bits, size=rows).astype(np.uint8)
    scale = rng.uniform(0.01, 0.1, size=rows).astype(np.float32)
    stored = _nibbles(values) if bits <= 4 else values.reshape(-1).view(np.uint8).copy()
    path = tmp_path / "old.safetensors"
    _write_old_file(path, "w", stored, scale, zero_point, shape, bits, symmetric, 0)

    result = sp.load_compressed(path)
    q = result.tensors["w"]
    np.testing.assert_array_equal(q.values, values)
    expected = (values.astype(np.float32) - zero_point[:, None].astype(np.float32)) * scale[:, None]
    np.testing.assert_allclose(result.weights["w"], expected, rtol=1e-6, atol=0)


def test_old_file_with_a_short_nibble_stream_is_a_clear_error(tmp_path):
    values = np.zeros((3, 3), np.int8)
    path = tmp_path / "short.safetensors"
    _write_old_file(path, "w", _nibbles(values)[:-1], np.ones(3, np.float32), None, (3, 3), 4, True, 0)
    with pytest.raises(ValueError, match="'w'"):
        sp.load_compressed(path)
