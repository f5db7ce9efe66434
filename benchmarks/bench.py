"""swiftprune benchmarks: every operation timed against its peers (NumPy,
SciPy, scikit-learn, torch CPU, the safetensors package: whichever are
installed) in the same run, contenders interleaved round by round, each with
the same thread count. Reported: median wall time and median CPU time
(process time, all threads) of each, and the ratio best peer time /
swiftprune time (> 1 means swiftprune is faster); the best peer is the one
with the lowest CPU time. Absolute times on shared
machines are noise; ratios taken in one interleaved run are the comparable
number. The goal column's "ok"/"MISS" verdict compares the CPU-time ratio
with the goal (on a shared machine wall time also measures the neighbours).

    python benchmarks/bench.py                 # the foundation cases
    python benchmarks/bench.py --all           # every area, one table
    python benchmarks/bench.py pruning quant   # chosen areas (module names in cases/)
    python benchmarks/bench.py peers -k CSR    # rows whose name contains "CSR"
    python benchmarks/bench.py --quick --all   # small sizes, a smoke run

The `peers` area holds the rows of issue 18 (each against the best peer a
user would pick instead). Before timing, each case's `check` compares the
contenders' outputs; a row whose outputs disagree is reported, not timed.
Memory-bound rows give a floor: the bytes the operation must read and write
once, divided by this machine's measured copy bandwidth (one thread).

Where OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set (some machines set them
for old OpenBLAS builds), unset both in the benchmark command alone, so NumPy
runs its best kernel:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench.py --all

The header prints which BLAS kernel NumPy/SciPy/torch run (threadpoolctl).
Each area is a module ``benchmarks/cases/<area>.py`` with a function
``cases(quick: bool) -> list[Case]``.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import pkgutil
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import swiftprune as sp  # noqa: E402
from cases import Case  # noqa: E402

DEFAULT_AREAS = ["foundation"]


@contextlib.contextmanager
def use_threads(threads: int) -> Iterator[None]:
    """Every library at `threads` threads: swiftprune, torch (when imported),
    and the BLAS/OpenMP pools threadpoolctl sees (NumPy's and SciPy's OpenBLAS)."""
    previous = sp.get_num_threads()
    sp.set_num_threads(threads)
    torch = sys.modules.get("torch")
    torch_previous = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(threads)
    limiter = contextlib.nullcontext()
    controller = _controller()
    if controller is not None:
        limiter = controller.limit(limits=threads)
    try:
        with limiter:
            yield
    finally:
        sp.set_num_threads(previous)
        if torch is not None:
            torch.set_num_threads(torch_previous)


_CONTROLLER: list = []


def _controller():
    """One threadpoolctl controller, made after the cases loaded their libraries (scanning is slow)."""
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER.append(ThreadpoolController())
        except ImportError:
            _CONTROLLER.append(None)
    return _CONTROLLER[0]


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


def interleaved(contenders: list[Callable[[], object]], repeat: int, budget: float) -> list[tuple[float, float]]:
    """Median (wall, CPU) seconds of each contender, timed round-robin.

    One warm-up call each, then up to `repeat` rounds in which every
    contender runs once (the starting contender rotates, so none always runs
    right after another's cache pollution); stops after at least 3 rounds
    once `budget` seconds are spent. CPU time is the process's (all threads);
    each contender starts once the previous one's thread pool stopped spinning
    (``settle``), so neither time includes another library's idle workers.
    """
    for fn in contenders:
        fn()
    walls: list[list[float]] = [[] for _ in contenders]
    cpus: list[list[float]] = [[] for _ in contenders]
    spent = 0.0
    for round_index in range(repeat):
        order = list(range(len(contenders)))
        shift = round_index % len(order)
        for i in order[shift:] + order[:shift]:
            settle()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            contenders[i]()
            wall = time.perf_counter() - wall0
            cpus[i].append(time.process_time() - cpu0)
            walls[i].append(wall)
            spent += wall
        if spent > budget and round_index >= 2:
            break
    return [(statistics.median(w), statistics.median(c)) for w, c in zip(walls, cpus)]


def settle(limit: float = 1.0, window: float = 0.01) -> float:
    """Waits until no thread of this process is burning CPU; returns the seconds waited.

    Thread pools keep their workers spinning after a call returns, waiting for
    more work: OpenBLAS's `blas_thread_server` for about 2^28 cycles (~0.1 s),
    libgomp's for its spin count. In an interleaved round the next contender
    would then share the cores with those spinners, and `process_time` (all
    threads) would charge it their CPU time: measured on this 2-core VM, a
    2-thread `swiftprune.matmul` timed right after NumPy's 2-thread `a @ b`
    took 1.5x the CPU time it takes after a pause. A contender is therefore
    timed only once the process has been idle for two windows of `window`
    seconds in a row (at most `limit` seconds of waiting): on a loaded machine
    a spinning thread may be off its core for one whole window.
    """
    start = time.perf_counter()
    quiet = 0
    while time.perf_counter() - start < limit and quiet < 2:
        cpu0 = time.process_time()
        time.sleep(window)
        quiet = quiet + 1 if time.process_time() - cpu0 < 0.05 * window else 0
    return time.perf_counter() - start


def copy_bandwidth(megabytes: int = 512) -> float:
    """Bytes per second moved (read + written) by one thread copying a large array (best of 5)."""
    src = np.ones(megabytes << 18, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = min(_timed(lambda: np.copyto(dst, src)) for _ in range(5))
    return 2 * src.nbytes / best


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def format_seconds(seconds: float) -> str:
    if seconds != seconds:
        return "n/a"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.3f} s"


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                have = line.split(":", 1)[1].split()
                flags = " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni") if f in have)
    except OSError:
        pass
    versions = [f"NumPy {np.__version__}"]
    for name in ("scipy", "sklearn", "torch", "safetensors"):
        module = sys.modules.get(name)
        if module is not None:
            versions.append(f"{name} {getattr(module, '__version__', '?')}")
    return (f"{cpu} ({flags}), {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
            f"{', '.join(versions)}, swiftprune {sp.__version__}")


def kernel_line() -> str:
    """Which BLAS/OpenMP libraries the peers run, and their kernels (threadpoolctl)."""
    parts = []
    controller = _controller()
    if controller is not None:
        for pool in controller.info():
            arch = pool.get("architecture")
            parts.append(f"{pool.get('internal_api')} {pool.get('version') or ''}"
                         f"{' ' + arch if arch else ''} ({Path(pool.get('filepath', '')).name})")
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            parts.append(f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}, "
                         f"quantized engine {torch.backends.quantized.engine}")
        except AttributeError:
            pass
    coretype = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    if coretype:
        parts.append(f"WARNING: {coretype} set (unset them for the benchmark run)")
    return "; ".join(parts) or "unknown (threadpoolctl not installed)"


HEADER = ("operation", "threads", "swiftprune wall (CPU)", "best peer", "peer wall (CPU)", "ratio wall", "ratio CPU",
          "goal", "x floor", "other peers; note")


def run_case(case: Case, args: argparse.Namespace, bandwidth: float) -> dict:
    peers = case.contenders()
    row = {"name": case.name, "threads": case.threads, "goal": case.goal}
    with use_threads(case.threads):
        if case.check is not None:
            try:
                row["check"] = case.check() or ""
            except AssertionError as error:
                row["check"] = f"MISMATCH: {error}"
                row["mismatch"] = True
                return row
        times = interleaved([case.ours] + [p.run for p in peers], args.repeat, args.budget)
    row["ours"] = times[0]
    row["peers"] = {p.name: t for p, t in zip(peers, times[1:])}
    if peers:
        # The best peer is the one with the lowest CPU time, the basis of the verdict (wall time on a
        # shared machine measures the neighbours too); zero CPU time (unmeasurable) falls back to wall.
        best = min(row["peers"], key=lambda name: (row["peers"][name][1] or row["peers"][name][0], row["peers"][name][0]))
        row["best"] = best
        row["ratio"] = row["peers"][best][0] / times[0][0]
        row["ratio_cpu"] = row["peers"][best][1] / times[0][1] if times[0][1] > 0 else float("nan")
    if case.floor_bytes:
        row["floor"] = case.floor_bytes / bandwidth
    note = case.note() if callable(case.note) else case.note
    row["note"] = "; ".join(x for x in (row.get("check", ""), note) if x)
    return row


def format_row(row: dict) -> tuple:
    if row.get("mismatch"):
        return (row["name"], row["threads"], "-", "-", "-", "-", "-", "-", "-", row["check"])
    wall, cpu = row["ours"]
    best = row.get("best")
    others = [f"{name} {format_seconds(t[0])}" for name, t in row.get("peers", {}).items() if name != best]
    goal = row.get("goal")
    ratio = row.get("ratio")
    verdict = ""
    if goal is not None and ratio is not None:
        # The goals are CPU-time goals: wall time on a shared machine measures the neighbours too.
        verdict = f"{goal:g}x {'ok' if row['ratio_cpu'] >= goal else 'MISS'}"
    floor = f"{wall / row['floor']:.1f}" if row.get("floor") else ""
    return (row["name"], row["threads"], f"{format_seconds(wall)} ({format_seconds(cpu)})",
            best or "-", f"{format_seconds(row['peers'][best][0])} ({format_seconds(row['peers'][best][1])})" if best else "-",
            f"{ratio:.2f}x" if ratio is not None else "-",
            f"{row['ratio_cpu']:.2f}x" if ratio is not None else "-", verdict, floor,
            "; ".join(others + ([row["note"]] if row.get("note") else [])))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("areas", nargs="*", help="areas to run (default: foundation)")
    parser.add_argument("--all", action="store_true", help="run every area")
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("-k", dest="keyword", action="append", default=[],
                        help="only rows whose name contains this text (repeatable: any of them)")
    parser.add_argument("--threads", type=int, action="append", default=[],
                        help="only rows with this thread count (repeatable)")
    parser.add_argument("--repeat", type=int, default=7, help="interleaved rounds per row at most (median kept)")
    parser.add_argument("--budget", type=float, default=10.0, help="seconds per row at most (after 3 rounds)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)

    import cases as package

    available = sorted(m.name for m in pkgutil.iter_modules(package.__path__))
    areas = available if args.all else (args.areas or DEFAULT_AREAS)
    unknown = [a for a in areas if a not in available]
    if unknown:
        parser.error(f"unknown area(s) {unknown}; available: {available}")

    modules = [importlib.import_module(f"cases.{area}") for area in areas]
    bandwidth = copy_bandwidth()
    print(f"# machine: {machine_line()}")
    print(f"# peers run: {kernel_line()}")
    print(f"# copy bandwidth (1 thread, read + write): {bandwidth / 1e9:.1f} GB/s; "
          f"times are medians of interleaved rounds; ratio = best peer (lowest CPU time) / swiftprune")
    if args.markdown:
        print("| " + " | ".join(HEADER) + " |")
        print("|" + "---|" * len(HEADER))
    rows = []
    for module in modules:
        for case in module.cases(args.quick):
            if args.keyword and not any(k in case.name for k in args.keyword):
                case.release()
                continue
            if args.threads and case.threads not in args.threads:
                case.release()
                continue
            row = run_case(case, args, bandwidth)
            rows.append(row)
            cells = format_row(row)
            if args.markdown:
                print("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |", flush=True)
            else:
                print("  ".join(str(c) for c in cells), flush=True)
            case.release()
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_line(), "kernels": kernel_line(),
                                         "bandwidth": bandwidth, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
