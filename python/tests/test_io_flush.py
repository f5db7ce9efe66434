"""save_weights of a file larger than the background-flush stride (32 MiB):
the data written while earlier data were flushed in the background read back
exactly, through swiftprune and through the safetensors package when installed."""
from __future__ import annotations

import numpy as np

import swiftprune as sp


def test_save_weights_with_background_flush_reads_back(tmp_path) -> None:
    rng = np.random.default_rng(3)
    tensors = {f"layers.{i}.weight": rng.standard_normal((1024, 4096 + i), dtype=np.float32) for i in range(3)}
    tensors["bias"] = rng.standard_normal(7, dtype=np.float32)
    path = tmp_path / "big.safetensors"
    sp.save_weights(path, tensors)
    assert path.stat().st_size > 48 << 20
    loaded = sp.load_weights(path)
    assert sorted(loaded) == sorted(tensors)
    for name, array in tensors.items():
        assert np.array_equal(np.asarray(loaded[name]), array), name
    assert [p.name for p in tmp_path.iterdir()] == ["big.safetensors"]  # no temporary file left
    try:
        from safetensors.numpy import load_file
    except ImportError:
        return
    theirs = load_file(str(path))
    assert all(np.array_equal(theirs[name], array) for name, array in tensors.items())
