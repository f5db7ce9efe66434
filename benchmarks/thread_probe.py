"""Where a 2-thread call's time goes inside the benchmark harness's pattern.

Runs one issue-18 row (2:4 or int8 product, 4096x4096 @ 4096x64) at 2 threads
in one of three patterns and prints, per call of ours, the wall time, the
process CPU time and each thread's on-CPU time during the call (from
``/proc/self/task/*/schedstat``, nanoseconds), plus the time the second
thread waited for a core:

    back-to-back  ours only, no pause
    settle        ours only, bench.settle() before each call (>= 20 ms idle)
    harness       interleaved with the peers, settle() before each call

    PYTHONPATH=python python benchmarks/thread_probe.py 2:4 harness

A fourth argument BURST:PAUSE (milliseconds) starts a competitor: a process
pinned to CPU 0 that busy-loops BURST ms then sleeps PAUSE ms, at this
process's scheduling policy. Run under `chrt -f 10` it stands for another
program holding the other vCPU at a random phase of each call, the only
competition then (real-time priority keeps everything else off the cores):

    chrt -f 10 env PYTHONPATH=python python benchmarks/thread_probe.py 2:4 settle 30 6:6
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import swiftprune as sp  # noqa: E402
from bench import settle, use_threads  # noqa: E402


def task_times() -> dict[int, tuple[int, int, int]]:
    """(on-CPU ns, run-queue wait ns, CPU last run on) of every thread of this process."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            run, wait, _ = Path(f"/proc/self/task/{tid}/schedstat").read_text().split()
            cpu = int(Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()[36])
        except (OSError, ValueError):
            continue
        out[int(tid)] = (int(run), int(wait), cpu)
    return out


COMPETITOR = """
import os, sys, time
os.sched_setaffinity(0, {0})
burst, pause = float(sys.argv[1]), float(sys.argv[2])
while True:
    end = time.perf_counter() + burst
    while time.perf_counter() < end:
        pass
    time.sleep(pause)
"""


def main() -> None:
    row = sys.argv[1] if len(sys.argv) > 1 else "2:4"
    pattern = sys.argv[2] if len(sys.argv) > 2 else "harness"
    calls = int(sys.argv[3]) if len(sys.argv) > 3 else 15
    competitor = None
    if len(sys.argv) > 4:
        burst, pause = (float(v) / 1e3 for v in sys.argv[4].split(":"))
        competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR, str(burst), str(pause)])
    rng = np.random.default_rng(4)
    w = rng.standard_normal((4096, 4096), dtype=np.float32)
    x = rng.standard_normal((4096, 64), dtype=np.float32)
    peers = []
    if row == "2:4":
        nm = sp.NMSparseMatrix.from_dense(w, n=2, m=4)
        dense = nm.to_dense()
        ours = lambda: nm.matmul(x)  # noqa: E731
        peers.append(lambda: dense @ x)
        try:
            import torch
            td, tx = torch.from_numpy(dense), torch.from_numpy(x)
            peers.append(lambda: torch.mm(td, tx))
        except ImportError:
            pass
    else:
        q = sp.quantize(w, 8, axis=0)
        scale = np.asarray(q.scale, np.float32).reshape(-1)
        values = q.values
        ours = lambda: sp.quantized_matmul(values, scale, x)  # noqa: E731
        try:
            import torch
            sys.path.insert(0, str(Path(__file__).resolve().parent / "cases"))
            from cases.peers import _torch_dynamic_linear
            ql = _torch_dynamic_linear(values, scale)
            xt = torch.from_numpy(np.ascontiguousarray(x.T))
            peers.append(lambda: ql(xt))
        except ImportError:
            pass
    main_tid = os.getpid()
    rows = []
    with use_threads(2):
        for fn in [ours, *peers]:
            fn()
        for _ in range(calls):
            if pattern == "harness":
                for peer in peers:
                    settle()
                    peer()
            if pattern in ("settle", "harness"):
                settle()
            before = task_times()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            ours()
            wall = time.perf_counter() - wall0
            cpu = time.process_time() - cpu0
            after = task_times()
            deltas = []
            for tid, (run, wait, cpu_now) in after.items():
                r0, w0, _ = before.get(tid, (0, 0, -1))
                if run - r0 > 50_000 or tid == main_tid:
                    deltas.append((tid == main_tid, (run - r0) / 1e6, (wait - w0) / 1e6, cpu_now))
            deltas.sort(reverse=True)
            rows.append((wall * 1e3, cpu * 1e3, deltas))
    if competitor is not None:
        competitor.kill()
        competitor.wait()
    for wall, cpu, deltas in rows:
        parts = " ".join(f"{'main' if m else 'w'}:{r:.2f}ms(wait {q:.2f},cpu{c})" for m, r, q, c in deltas)
        print(f"wall {wall:6.2f} ms  cpu {cpu:6.2f} ms  | {parts}")
    print(f"median wall {statistics.median(r[0] for r in rows):.2f} ms, cpu {statistics.median(r[1] for r in rows):.2f} ms")
    # Calls whose worker waited >= 1 ms for a core (it started late) against the others.
    late = [r for r in rows if max((q for m, _, q, _ in r[2] if not m), default=0) >= 1]
    on_time = [r for r in rows if r not in late]
    for label, group in (("worker late (waited >= 1 ms)", late), ("worker on time", on_time)):
        if group:
            waits = [max(q for m, _, q, _ in r[2] if not m) if any(not m for m, *_ in r[2]) else 0 for r in group]
            print(f"{label}: {len(group)} calls, median wall {statistics.median(r[0] for r in group):.2f} ms, "
                  f"cpu {statistics.median(r[1] for r in group):.2f} ms, worker wait {statistics.median(waits):.2f} ms")


if __name__ == "__main__":
    main()
