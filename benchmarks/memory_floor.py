"""Our memory-bound rows of issue 18 next to their memory floors and NumPy, one thread, CPU time.

    python benchmarks/memory_floor.py [--rounds 15]

The floors are plain AVX2 loops (benchmarks/memory_floor.c, compiled here with `cc -O2 -mavx2 -mfma`):
reading the input once and writing the output once with non-temporal stores (no read for ownership).
Everything is timed interleaved, round by round, in one process; medians of CPU time. The table gives
each contender's time over the floor's, so "ours / floor" says how much room is left on this machine
whatever its memory speed. bench.py's "x floor" column instead divides by bytes over np.copyto's
bandwidth, which for outputs written with non-temporal stores is the same traffic (glibc's memcpy
streams large copies), so the two agree within noise.
"""
from __future__ import annotations

import argparse
import ctypes
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import swiftprune as sp


def load_floors() -> ctypes.CDLL:
    source = Path(__file__).with_name("memory_floor.c")
    library = Path(tempfile.mkdtemp(prefix="swiftprune-floor-")) / "memory_floor.so"
    subprocess.run(["cc", "-O2", "-mavx2", "-mfma", "-shared", "-fPIC", str(source), "-o", str(library)], check=True)
    lib = ctypes.CDLL(str(library))
    lib.read_sum_squares.restype = ctypes.c_float
    lib.read_sum_squares.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.stream_fill.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint8]
    lib.dequantize_stream.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_float, ctypes.c_void_p]
    return lib


def aligned(count: int, dtype) -> np.ndarray:
    """A 32-byte aligned array of `count` elements."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.empty(count * itemsize + 64, np.uint8)
    start = (-raw.ctypes.data) % 32
    return raw[start:start + count * itemsize].view(dtype)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    lib = load_floors()
    sp.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows: dict[str, dict[str, callable]] = {}

    w = rng.standard_normal((4096, 2560), dtype=np.float32)
    mask = aligned(w.size, np.uint8)
    for axis in (0, 1):
        def numpy_structured(axis=axis):
            squares = np.einsum("ij,ij->i", w, w) if axis == 0 else np.einsum("ij,ij->j", w, w)
            keep = np.ones(w.shape[axis], bool)
            keep[np.argpartition(squares, w.shape[axis] // 2 - 1)[:w.shape[axis] // 2]] = False
            return np.broadcast_to(keep[:, None] if axis == 0 else keep[None, :], w.shape).copy()
        rows[f"structured_mask L2 4096x2560 axis={axis}"] = {
            "floor": lambda: (lib.read_sum_squares(w.ctypes.data, w.size), lib.stream_fill(mask.ctypes.data, mask.size, 1)),
            "ours": lambda axis=axis: sp.structured_mask(w, 0.5, axis=axis),
            "NumPy": numpy_structured,
        }

    m = rng.standard_normal(10**7, dtype=np.float32)
    mmask = aligned(m.size, np.uint8)
    def numpy_magnitude():
        magnitudes = np.abs(m)
        return magnitudes > np.partition(magnitudes, m.size // 2 - 1)[m.size // 2 - 1]
    rows["magnitude_mask 1e7"] = {
        "floor": lambda: (lib.read_sum_squares(m.ctypes.data, m.size), lib.stream_fill(mmask.ctypes.data, mmask.size, 1)),
        "ours": lambda: sp.magnitude_mask(m, 0.5),
        "NumPy": numpy_magnitude,
    }

    big = rng.standard_normal((4096, 24576), dtype=np.float32)
    q = sp.quantize(big, 8, axis=0)
    del big
    codes = np.ascontiguousarray(q.values)
    scale = np.asarray(q.scale, np.float32).reshape(-1, 1)
    out_floor, out_ours, out_numpy = aligned(codes.size, np.float32), np.empty(codes.shape, np.float32), np.empty(codes.shape, np.float32)
    rows["dequantize int8 4096x24576, out="] = {
        "floor": lambda: lib.dequantize_stream(codes.ctypes.data, codes.size, 0.01, out_floor.ctypes.data),
        "ours": lambda: q.dequantize(out=out_ours),
        "NumPy": lambda: np.multiply(q.values, scale, out=out_numpy, dtype=np.float32),
    }

    print("| operation | floor CPU | ours CPU | NumPy CPU | ours / floor | NumPy / floor | NumPy / ours |")
    print("|---|---|---|---|---|---|---|")
    for name, contenders in rows.items():
        times: dict[str, list[float]] = {k: [] for k in contenders}
        for _ in range(args.rounds):
            for key, fn in contenders.items():
                start = time.process_time()
                fn()
                times[key].append(time.process_time() - start)
        f, o, n = (statistics.median(times[k]) for k in ("floor", "ours", "NumPy"))
        print(f"| {name} | {f * 1e3:.2f} ms | {o * 1e3:.2f} ms | {n * 1e3:.2f} ms | {o / f:.2f} | {n / f:.2f} | {n / o:.2f}x |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
