"""Our memory-bound rows of issue 18 next to their memory floors and NumPy, one thread, CPU time.

    python benchmarks/memory_floor.py [--rounds 15] [--read-ceiling]

The floors are plain AVX2 loops (benchmarks/memory_floor.c, compiled here with `cc -O2 -mavx2 -mfma`):
reading the input once (as four prefetched streams, the fastest read found by --read-ceiling) and writing
the output once with non-temporal stores (no read for ownership).
Everything is timed interleaved, round by round, in one process; medians of CPU time. The table gives
each contender's time over the floor's, so "ours / floor" says how much room is left on this machine
whatever its memory speed. With --read-ceiling it measures instead how fast one core reads 42 MB
(4096 x 2560 float32, larger than the last-level cache) as 1, 2, 4 or 8 interleaved streams, with and
without software prefetch (memory_floor.c's read_streams): the single-stream loop is not this machine's
read ceiling (issue 18, round 10). bench.py's "x floor" column instead divides by bytes over np.copyto's
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
    lib.read_streams.restype = ctypes.c_float
    lib.read_streams.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
    return lib


READ_VARIANTS = [  # (label, streams, prefetch distance in bytes, hint: 0 prefetcht0, 1 prefetchnta)
    ("1 stream", 1, 0, 0), ("1 stream, t0 512 B", 1, 512, 0), ("1 stream, t0 2 KB", 1, 2048, 0),
    ("1 stream, nta 1 KB", 1, 1024, 1), ("2 streams", 2, 0, 0), ("2 streams, t0 512 B", 2, 512, 0),
    ("4 streams", 4, 0, 0), ("4 streams, t0 256 B", 4, 256, 0), ("4 streams, t0 512 B", 4, 512, 0),
    ("4 streams, t0 1 KB", 4, 1024, 0), ("4 streams, nta 512 B", 4, 512, 1), ("8 streams, t0 512 B", 8, 512, 0),
]


def read_floor(lib: ctypes.CDLL, a: np.ndarray) -> float:
    """Reads `a` once at one core's read ceiling: four streams prefetched 512 B ahead (see --read-ceiling;
    a single stream, read_sum_squares, is 1.3-1.7x slower on this machine)."""
    return lib.read_streams(a.ctypes.data, a.size, 4, 512, 0)


def read_ceiling(lib: ctypes.CDLL, rounds: int) -> None:
    """Prints one core's read time and bandwidth over 42 MB for each READ_VARIANTS entry (CPU time)."""
    w = np.random.default_rng(0).standard_normal((4096, 2560), dtype=np.float32)
    times: dict[str, list[float]] = {label: [] for label, *_ in READ_VARIANTS}
    for _ in range(rounds):
        for label, streams, distance, hint in READ_VARIANTS:
            start = time.process_time()
            lib.read_streams(w.ctypes.data, w.size, streams, distance, hint)
            times[label].append(time.process_time() - start)
    print("| read of 42 MB, 1 thread | CPU median | CPU q1 | GB/s (median) |")
    print("|---|---|---|---|")
    for label, spent in times.items():
        median = statistics.median(spent)
        print(f"| {label} | {median * 1e3:.2f} ms | {statistics.quantiles(spent, n=4)[0] * 1e3:.2f} ms | "
              f"{w.nbytes / median / 1e9:.1f} |")


def aligned(count: int, dtype) -> np.ndarray:
    """A 32-byte aligned array of `count` elements."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.empty(count * itemsize + 64, np.uint8)
    start = (-raw.ctypes.data) % 32
    return raw[start:start + count * itemsize].view(dtype)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--read-ceiling", action="store_true", help="measure one core's read ceiling instead")
    args = parser.parse_args()
    lib = load_floors()
    if args.read_ceiling:
        read_ceiling(lib, args.rounds)
        return 0
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
            "floor": lambda: (read_floor(lib, w), lib.stream_fill(mask.ctypes.data, mask.size, 1)),
            "ours": lambda axis=axis: sp.structured_mask(w, 0.5, axis=axis),
            "NumPy": numpy_structured,
        }

    m = rng.standard_normal(10**7, dtype=np.float32)
    mmask = aligned(m.size, np.uint8)
    def numpy_magnitude():
        magnitudes = np.abs(m)
        return magnitudes > np.partition(magnitudes, m.size // 2 - 1)[m.size // 2 - 1]
    rows["magnitude_mask 1e7"] = {
        "floor": lambda: (read_floor(lib, m), lib.stream_fill(mmask.ctypes.data, mmask.size, 1)),
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
