"""Where the CPU time of a durable safetensors save goes, against the package.

Each measurement runs in a fresh process (variants alternate, so a noisy
neighbour hits all of them alike) that builds the same tensors, saves them
once to warm up (the later saves then replace an existing file, as in
``bench.py peers``), then times one more save and reports:

- wall time, and the process's user and system CPU time (``getrusage``),
- the CPU time of every thread of the process that ran during the save
  (``/proc/self/task/*/schedstat``; threads that ended are in the total only),
  which separates the calling thread from background flush threads.

Variants: ``ours`` (``sp.save_weights``: temporary file, flushes, fsync,
rename), ``package`` (``safetensors.numpy.save_file``, no fsync),
``package+fsync`` (the same, then ``os.fsync`` of the file: what it costs the
package to be durable too; rename and directory flush not included).

    PYTHONPATH=python python benchmarks/save_cpu.py --runs 5 --gib 1

``--baseline DIR`` adds the variant ``baseline``: ``sp.save_weights`` imported
from DIR (e.g. a copy of another build's ``python`` folder), for an A/B of two
versions of ours.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

VARIANTS = ("ours", "package", "package+fsync")


def _thread_cpu_ns() -> dict[int, int]:
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                out[int(tid)] = int(f.read().split()[0])
        except OSError:
            pass
    return out


def _child(variant: str, directory: str, gib: float, baseline: str | None) -> None:
    import numpy as np

    count = max(1, round(gib * 64))  # tensors of 16 MiB
    rng = np.random.default_rng(7)
    tensors = {f"layers.{i}.weight": rng.standard_normal((2048, 2048), dtype=np.float32) for i in range(count)}
    path = os.path.join(directory, f"{variant.replace('+', '_')}.safetensors")
    if variant in ("ours", "baseline"):
        if variant == "baseline":
            sys.path.insert(0, baseline)
        import swiftprune as sp

        def save() -> None:
            sp.save_weights(path, tensors)
    else:
        from safetensors.numpy import save_file

        def save() -> None:
            save_file(tensors, path)
            if variant == "package+fsync":
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
    save()
    os.sync()  # the warm-up's data on disk, so the timed save does not inherit its writeback
    time.sleep(0.5)
    me = os.getpid()
    threads0 = _thread_cpu_ns()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.perf_counter()
    save()
    wall = time.perf_counter() - wall0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    threads1 = _thread_cpu_ns()
    per_thread = {("main" if tid == me else "other"): 0.0 for tid in threads1}
    for tid, ns in threads1.items():
        per_thread["main" if tid == me else "other"] += (ns - threads0.get(tid, 0)) / 1e9
    print(json.dumps({"variant": variant, "wall": wall, "user": usage1.ru_utime - usage0.ru_utime,
                      "sys": usage1.ru_stime - usage0.ru_stime, "main": per_thread.get("main", 0.0),
                      "other": per_thread.get("other", 0.0),
                      "size": os.path.getsize(path),
                      "module": sys.modules["swiftprune"].__file__ if "swiftprune" in sys.modules else None}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary folder in /tmp)")
    parser.add_argument("--baseline", default=None, help="a folder to import another swiftprune from (variant 'baseline')")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.dir, args.gib, args.baseline)
        return
    variants = args.variants.split(",") + (["baseline"] if args.baseline else [])
    results: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="swiftprune-save-cpu-", dir=args.dir) as directory:
        for run in range(args.runs):
            for variant in variants:
                done = subprocess.run([sys.executable, __file__, "--child", variant, "--dir", directory,
                                       "--gib", str(args.gib)] + (["--baseline", args.baseline] if args.baseline else []),
                                      capture_output=True, text=True, check=True)
                row = json.loads(done.stdout.strip().splitlines()[-1])
                results[variant].append(row)
                print(f"run {run + 1} {variant:14s} wall {row['wall']:.3f} s  user {row['user']:.3f}  "
                      f"sys {row['sys']:.3f}  main thread {row['main']:.3f}  other threads {row['other']:.3f}",
                      flush=True)
    print("\nmedians (s):")
    print("| variant | wall | user | sys | user+sys | calling thread | other threads |")
    print("|---|---|---|---|---|---|---|")
    for variant, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in ("wall", "user", "sys", "main", "other")}
        cpu = statistics.median(r["user"] + r["sys"] for r in rows)
        print(f"| {variant} | {med['wall']:.3f} | {med['user']:.3f} | {med['sys']:.3f} | {cpu:.3f} | "
              f"{med['main']:.3f} | {med['other']:.3f} |")


if __name__ == "__main__":
    main()
