"""One thread against two for the memory-bound rows of issue 18 (structured L2 masks, int8 dequantize,
CSR matvec), at several sizes: does the second thread shorten the wall time enough to pay for its CPU?

    python benchmarks/memory_threads.py [--rounds 15] [--only structured|dequantize|matvec] [--near-thresholds]

Each size runs its 1- and 2-thread calls interleaved, round by round, in one process. The table gives
medians and lower quartiles (q1) of wall and CPU time (CPU summed over threads). On a shared machine the
other processes take cores away at random, which hurts 2-thread wall times most; the q1 wall time is the
estimate of a quiet machine's, so the speed-up column is q1 wall (1 thread) / q1 wall (2 threads), and the
CPU column is median CPU (2 threads) / median CPU (1 thread). Run `uptime` before and after; on the shared
VM, `chrt -f 10` (real-time priority: the other sessions' processes wait) stands in for a quiet machine.
With --near-thresholds the sizes are those around the kernels' 1-to-2-worker thresholds instead.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import swiftprune as sp


def structured_calls(rng: np.random.Generator, near: bool) -> dict[str, callable]:
    calls = {}
    sizes = ((256, 2560), (512, 2560), (768, 2560), (1024, 2560), (1536, 2560)) if near else (
        (512, 640), (1024, 1280), (2048, 2560), (4096, 2560), (8192, 4096))
    for rows, columns in sizes:
        w = rng.standard_normal((rows, columns), dtype=np.float32)
        for axis in (0, 1):
            calls[f"structured L2 {rows}x{columns} axis={axis} ({w.nbytes / 1e6:.0f} MB)"] = (
                lambda w=w, axis=axis: sp.structured_mask(w, 0.5, axis=axis))
    return calls


def dequantize_calls(rng: np.random.Generator, near: bool) -> dict[str, callable]:
    calls = {}
    sizes = ((256, 1024), (512, 1024), (1024, 1024), (1024, 2048), (1024, 3072)) if near else (
        (512, 2048), (1024, 4096), (4096, 4096), (4096, 12288), (4096, 24576))
    for rows, columns in sizes:
        q = sp.quantize(rng.standard_normal((rows, columns), dtype=np.float32), 8, axis=0)
        out = np.empty((rows, columns), np.float32)
        calls[f"dequantize int8 {rows}x{columns} out= ({out.nbytes / 1e6:.0f} MB out)"] = (
            lambda q=q, out=out: q.dequantize(out=out))
    return calls


def matvec_calls(rng: np.random.Generator, near: bool) -> dict[str, callable]:
    calls = {}
    for size in ((1024, 1280, 1448, 1700, 2048) if near else (1024, 2048, 4096, 8192)):
        w = rng.standard_normal((size, size), dtype=np.float32)
        csr = sp.CSRMatrix.from_dense(sp.prune_magnitude(w, 0.9))
        del w
        v = rng.standard_normal(size, dtype=np.float32)
        calls[f"CSR 90% {size}x{size} matvec ({csr.nbytes / 1e6:.1f} MB)"] = lambda csr=csr, v=v: csr.matmul(v)
    return calls


SECTIONS = {"structured": structured_calls, "dequantize": dequantize_calls, "matvec": matvec_calls}


def timed(fn: callable, threads: int) -> tuple[float, float]:
    sp.set_num_threads(threads)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def quartile(values: list[float]) -> float:
    return statistics.quantiles(values, n=4)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append")
    parser.add_argument("--near-thresholds", action="store_true", help="sizes around the 1-to-2-worker thresholds")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| call | 1 thread wall med / q1 (CPU) | 2 threads wall med / q1 (CPU) | speed-up (q1 wall) | CPU cost |")
    print("|---|---|---|---|---|")
    for section in args.only or sorted(SECTIONS):
        for name, fn in SECTIONS[section](rng, args.near_thresholds).items():
            fn()  # warm: first-touch page faults and lazily built state out of the timings
            runs: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
            for round_ in range(args.rounds):
                for threads in ((1, 2) if round_ % 2 == 0 else (2, 1)):
                    runs[threads].append(timed(fn, threads))
            cells = []
            for threads in (1, 2):
                walls, cpus = [r[0] for r in runs[threads]], [r[1] for r in runs[threads]]
                cells.append((statistics.median(walls), quartile(walls), statistics.median(cpus)))
            (w1, q1, c1), (w2, q2, c2) = cells
            print(f"| {name} | {w1 * 1e3:.3f} / {q1 * 1e3:.3f} ms ({c1 * 1e3:.3f}) | {w2 * 1e3:.3f} / {q2 * 1e3:.3f} ms "
                  f"({c2 * 1e3:.3f}) | {q1 / q2:.2f}x | {c2 / c1:.2f}x |", flush=True)
    sp.set_num_threads(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
