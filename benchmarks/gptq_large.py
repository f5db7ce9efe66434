"""GPTQ on one large layer end to end: time, CPU time and peak memory.

The default shape is a Llama-style MLP projection, ``w`` (14336, 4096) float32
(235 MB) with 4096 calibration samples of correlated inputs. Each contender
runs in its own child process (so ``ru_maxrss`` is its own peak): swiftprune
(``HessianAccumulator`` then ``sp.gptq``, int4, groups of 128) and, with
``--torch``, the straightforward PyTorch CPU implementation of the
reference ``fasterquant`` from ``benchmarks/cases/calibration.py`` (float32,
same inputs). Reported per contender: wall time, CPU time (all threads),
peak RSS, the peak RSS above the inputs, and the output error
``‖(W − Ŵ) Xᵀ‖`` over the first 512 samples.

    PYTHONPATH=python python benchmarks/gptq_large.py [--rows 14336] [--cols 4096] [--samples 4096]
        [--threads 1] [--torch]
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def inputs(rows: int, cols: int, samples: int):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((rows, cols), dtype=np.float32) / np.float32(math.sqrt(cols))
    mix = rng.standard_normal((cols, cols), dtype=np.float32) / np.float32(math.sqrt(cols))
    x = rng.standard_normal((samples, cols), dtype=np.float32) @ mix
    x *= np.exp(0.5 * rng.standard_normal(cols)).astype(np.float32)
    return w, np.ascontiguousarray(x)


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(which: str, rows: int, cols: int, samples: int, threads: int) -> dict:
    w, x = inputs(rows, cols, samples)
    before = rss_mib()
    if which == "swiftprune":
        import swiftprune as sp
        from swiftprune.calibration import HessianAccumulator

        sp.set_num_threads(threads)
        wall, cpu = time.perf_counter(), time.process_time()
        q = sp.gptq(w, HessianAccumulator(cols).update(x), 4, 128)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        w_hat = q.dequantize()
    else:
        import torch

        sys.path.insert(0, str(HERE))
        from cases.calibration import torch_gptq

        torch.set_num_threads(threads)
        wall, cpu = time.perf_counter(), time.process_time()
        w_hat = torch_gptq(w, x)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    error = float(np.linalg.norm((w - w_hat) @ x[:512].T))
    return {"contender": which, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_rss_mib": round(peak),
            "peak_above_inputs_mib": round(peak - before), "output_error": round(error, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=14336)
    parser.add_argument("--cols", type=int, default=4096)
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--torch", action="store_true", help="also run the torch reference")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.rows, args.cols, args.samples, args.threads)))
        return 0
    print(f"w ({args.rows}, {args.cols}) float32 = {args.rows * args.cols * 4 / 2**20:.0f} MiB, "
          f"x ({args.samples}, {args.cols}) float32, int4 g128, {args.threads} thread(s)")
    for which in ["swiftprune"] + (["torch"] if args.torch else []):
        command = [sys.executable, __file__, "--child", which, "--rows", str(args.rows), "--cols", str(args.cols),
                   "--samples", str(args.samples), "--threads", str(args.threads)]
        out = subprocess.run(command, capture_output=True, text=True, env=None)
        if out.returncode:
            print(f"{which}: failed\n{out.stderr[-2000:]}")
            continue
        print(out.stdout.strip().splitlines()[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
