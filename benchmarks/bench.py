"""swiftprune benchmarks: every operation timed against its NumPy/SciPy way in
the same run, reported as a ratio (baseline time / swiftprune time; > 1 means
swiftprune is faster). Absolute times on shared machines are noise; ratios
taken in one run are the comparable number.

    python benchmarks/bench.py                 # the foundation cases
    python benchmarks/bench.py --all           # every area, one table
    python benchmarks/bench.py pruning quant   # chosen areas (module names in cases/)
    python benchmarks/bench.py --quick --all   # small sizes, a smoke run

Each area is a module ``benchmarks/cases/<area>.py`` with a function
``cases(quick: bool) -> list[Case]``.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import platform
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import swiftprune as sp  # noqa: E402
from cases import Case  # noqa: E402

DEFAULT_AREAS = ["foundation"]


def best_time(fn: Callable[[], object], repeat: int, budget: float) -> float:
    """Best wall time of `fn` over up to `repeat` runs (after one warm-up),
    stopping early once `budget` seconds have been spent."""
    fn()
    best = float("inf")
    spent = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        best = min(best, elapsed)
        spent += elapsed
        if spent > budget:
            break
    return best


def format_seconds(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:8.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:8.2f} ms"
    return f"{seconds:8.3f} s "


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return (f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
            f"NumPy {np.__version__}, swiftprune {sp.__version__}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("areas", nargs="*", help="areas to run (default: foundation)")
    parser.add_argument("--all", action="store_true", help="run every area")
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (best is kept)")
    parser.add_argument("--budget", type=float, default=10.0, help="seconds per measurement at most")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)

    import cases as package

    available = sorted(m.name for m in pkgutil.iter_modules(package.__path__))
    areas = available if args.all else (args.areas or DEFAULT_AREAS)
    unknown = [a for a in areas if a not in available]
    if unknown:
        parser.error(f"unknown area(s) {unknown}; available: {available}")

    print(f"# machine: {machine_line()}")
    rows = []
    header = ("operation", "threads", "swiftprune", "baseline", "baseline time", "ratio", "note")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
    else:
        print(f"{header[0]:<44} {header[1]:>7} {header[2]:>11} {header[3]:>22} {header[4]:>13} {header[5]:>7}  {header[6]}")
    for area in areas:
        module = importlib.import_module(f"cases.{area}")
        for case in module.cases(args.quick):
            previous = sp.get_num_threads()
            sp.set_num_threads(case.threads)
            try:
                ours = best_time(case.ours, args.repeat, args.budget)
            finally:
                sp.set_num_threads(previous)
            theirs = best_time(case.baseline, args.repeat, args.budget) if case.baseline else float("nan")
            ratio = theirs / ours
            note = case.note() if callable(case.note) else case.note
            rows.append((case.name, case.threads, ours, case.baseline_name, theirs, ratio, note))
            if args.markdown:
                print(f"| {case.name} | {case.threads} | {format_seconds(ours).strip()} | {case.baseline_name} | "
                      f"{format_seconds(theirs).strip()} | {ratio:.2f}x | {note} |", flush=True)
            else:
                print(f"{case.name:<44} {case.threads:>7} {format_seconds(ours):>11} {case.baseline_name:>22} "
                      f"{format_seconds(theirs):>13} {ratio:>6.2f}x  {note}", flush=True)
            case.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
