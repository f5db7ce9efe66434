"""Speed of swiftprune.sensitivity on a 100M-parameter model (weight and
Hessian error), wall and CPU time, 1 and 2 threads.

    python benchmarks/sensitivity_speed.py [--params 100e6] [--threads 1 2]

The model: square float32 layers of 2048x2048 (torch layout), as many as make
up --params, with random calibration inputs (256 samples per layer) for the
Hessian measure. Candidates: the ones named in CANDIDATES (quantization at
five widths per channel and in groups, float16) -- each is a full encode,
decode and error pass over every tensor.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import swiftprune as sp

CANDIDATES = ["float16", "int8", "int6", "int5", "int4", "int3", "int4:g128", "int3:g128"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=float, default=100e6)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--side", type=int, default=2048)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    layers = max(1, round(args.params / args.side ** 2))
    weights = {f"layer{i}.weight": rng.standard_normal((args.side, args.side), dtype=np.float32) * 0.02
               for i in range(layers)}
    inputs = {name: rng.standard_normal((256, args.side), dtype=np.float32) for name in weights}
    total = sum(w.size for w in weights.values())
    print(f"{layers} layers of {args.side}x{args.side}: {total / 1e6:.1f}M parameters; "
          f"candidates {', '.join(CANDIDATES)}")
    print(f"{'measure':8s} {'threads':>7s} {'wall s':>8s} {'cpu s':>8s}")
    for threads in args.threads:
        sp.set_num_threads(threads)
        for measure in ("weight", "hessian"):
            wall, cpu = time.perf_counter(), time.process_time()
            s = sp.sensitivity(weights, CANDIDATES, measure=measure, calibration=inputs if measure == "hessian" else None,
                               layout="torch", progress=False)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            assert len(s.options) == layers
            print(f"{measure:8s} {threads:7d} {wall:8.1f} {cpu:8.1f}", flush=True)


if __name__ == "__main__":
    main()
