"""Which magnitude-mask writer is fastest at which size: the measurement behind
``MagnitudeMaskWriter.chosen`` (Sources/SwiftPrune/Pruning/MagnitudeMaskWriter.swift).

Every writer gives the same masks; ``SWIFTPRUNE_MASK_WRITER`` forces one (read
once per process), so each writer runs in a child process of its own. Rounds
interleave the writers (three-pass, two-pass, sampled, three-pass, ...) so that
load on a shared machine hits them alike; the table gives, per size, the median
over rounds of each child's best time, and the automatic choice's.

    python benchmarks/mask_writers.py                 # 1 and 2 threads, 2^18 .. 2^26 entries
    python benchmarks/mask_writers.py --rounds 5 --max-log2 24
    python benchmarks/mask_writers.py --min-log2 20 --max-log2 23 --step 1   # around the cut-over
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

WRITERS = ["three-pass", "two-pass", "sampled", "auto"]

CHILD = r"""
import json, sys, time
import numpy as np
import swiftprune as sp
sizes, repeat, tensors = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
out = {}
for n in sizes:
    w = rng.normal(size=n).astype(np.float32)
    parts = np.array_split(w, tensors)
    if tensors == 1:
        run = lambda: sp.magnitude_mask(w, 0.5)
    else:
        run = lambda: sp.global_magnitude_masks(parts, 0.8)
    run()
    best = cpu = float("inf")
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        best = min(best, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    out[n] = (best, cpu)
print(json.dumps(out))
"""


def measure(writer: str, sizes: list[int], threads: int, repeat: int, tensors: int) -> dict[int, tuple[float, float]]:
    """Per size, the child's best wall time and best CPU time (all threads), in seconds."""
    env = dict(os.environ, SWIFTPRUNE_NUM_THREADS=str(threads))
    package = str(Path(__file__).resolve().parents[1] / "python")
    env["PYTHONPATH"] = os.pathsep.join([package] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("SWIFTPRUNE_MASK_WRITER", None)
    if writer != "auto":
        env["SWIFTPRUNE_MASK_WRITER"] = writer
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(sizes), str(repeat), str(tensors)], env=env,
                          capture_output=True, text=True, check=True)
    return {int(k): tuple(v) for k, v in json.loads(done.stdout).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per child and size (best kept)")
    parser.add_argument("--min-log2", type=int, default=18)
    parser.add_argument("--max-log2", type=int, default=26)
    parser.add_argument("--step", type=int, default=2, help="log2 step between sizes")
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    args = parser.parse_args()
    sizes = [1 << e for e in range(args.min_log2, args.max_log2 + 1, args.step)]
    print(f"# {os.cpu_count()} CPUs; medians over {args.rounds} interleaved rounds of best-of-{args.repeat}")
    for tensors, what in ((1, "magnitude_mask 50%"), (20, "global_magnitude_masks 20 tensors 80%")):
        for threads in args.threads:
            times: dict[str, dict[int, list[tuple[float, float]]]] = {w: {n: [] for n in sizes} for w in WRITERS}
            for _ in range(args.rounds):
                for writer in WRITERS:
                    for n, t in measure(writer, sizes, threads, args.repeat, tensors).items():
                        times[writer][n].append(t)
            for index, clock in ((0, "wall"), (1, "CPU (all threads)")):
                print(f"\n{what}, {threads} thread(s), {clock} milliseconds (fastest marked *)")
                print("| entries | " + " | ".join(WRITERS) + " |")
                print("|---" * (len(WRITERS) + 1) + "|")
                for n in sizes:
                    medians = {w: statistics.median(t[index] for t in times[w][n]) * 1e3 for w in WRITERS}
                    fastest = min((w for w in WRITERS if w != "auto"), key=medians.get)
                    cells = [f"{medians[w]:.2f}{'*' if w == fastest else ''}" for w in WRITERS]
                    print(f"| 2^{n.bit_length() - 1} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
