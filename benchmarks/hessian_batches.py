"""Per-batch cost of streaming calibration Hessians (``HessianAccumulator``).

Adds ``--batches`` float32 batches of ``--rows`` x ``--features`` to one
accumulator and reports the CPU and wall time per batch (medians over
``--repeat`` runs), with the final Hessian checked against the float64 NumPy
``xᵀx``. Run it once per checkout to compare two versions, alternating the
processes (the VM is shared: CPU time, medians):

    PYTHONPATH=python python benchmarks/hessian_batches.py --features 4096 --rows 4096 --batches 4
    PYTHONPATH=python python benchmarks/hessian_batches.py --features 2048 --rows 64 --batches 256 --direct

``--direct`` calls the core once per batch (``_core.hessian_accumulate``, no
buffering of small batches in the accumulator), the per-call overhead.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=4096)
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--direct", action="store_true")
    args = parser.parse_args()
    import swiftprune as sp
    from swiftprune import _core

    sp.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    pool = rng.standard_normal((args.rows * 4, args.features), dtype=np.float32)
    batches = [pool[(i % 4) * args.rows:(i % 4 + 1) * args.rows] for i in range(args.batches)]
    cpu, wall = [], []
    for _ in range(args.repeat):
        if args.direct:
            h = np.zeros((args.features, args.features))
            scratch = np.empty(args.features ** 2, np.float32) if "scratch" in (_core.hessian_accumulate.__doc__ or "") else None
            add = (lambda x: _core.hessian_accumulate(x, h, scratch)) if scratch is not None else \
                (lambda x: _core.hessian_accumulate(x, h))
        else:
            acc = sp.calibration.HessianAccumulator(args.features)
            add = acc.update
        c0, t0 = time.process_time(), time.perf_counter()
        for x in batches:
            add(x)
        result = h if args.direct else acc.hessian_
        cpu.append((time.process_time() - c0) / args.batches)
        wall.append((time.perf_counter() - t0) / args.batches)
    x = np.concatenate([b.astype(np.float64) for b in batches])
    expected = x.T @ x
    error = np.abs(result - expected).max() / np.abs(expected).max()
    assert error < 1e-5, error
    print(f"features {args.features} rows {args.rows} x {args.batches} batches, {args.threads} thread(s)"
          f"{' direct' if args.direct else ''}: CPU {1e3 * statistics.median(cpu):.2f} ms/batch, "
          f"wall {1e3 * statistics.median(wall):.2f} ms/batch (medians of {args.repeat}), max rel error {error:.1e}")


if __name__ == "__main__":
    main()
