"""Proof for sharded compression: a synthetic ~12 GB bfloat16 checkpoint, 2:4 + int4, 2 workers.

Generates a Llama-7B-shaped checkpoint (bfloat16, hidden 4096, MLP 11008) in a temporary folder
(never committed; deleted at the end), then measures, each from cold page cache for these files
(posix_fadvise DONTNEED on our own files only — the machine is shared):

1. the file read bandwidth: every shard read sequentially in 16 MiB blocks;
2. ``swiftprune compress`` (2:4 along the inputs + int4 groups of 128, compressed form) with
   ``--workers 2``: wall time, GB/s of input, and the peak of the summed RSS of the whole process
   tree (coordinator + workers, sampled every 20 ms);
3. the ``safetensors`` package copying the same shards (``load_file`` + ``save_file``, one shard at
   a time, the copy deleted after each) — the cost of merely rewriting the data with the reference
   library.

Usage: python benchmarks/sharded.py [--gb 12] [--dir /tmp] [--workers 2] [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

HIDDEN, MLP = 4096, 11008


def layer_tensors(layer: int) -> list[tuple[str, tuple[int, ...]]]:
    p = f"model.layers.{layer}"
    return [(f"{p}.self_attn.{n}_proj.weight", (HIDDEN, HIDDEN)) for n in "qkvo"] + [
        (f"{p}.mlp.gate_proj.weight", (MLP, HIDDEN)), (f"{p}.mlp.up_proj.weight", (MLP, HIDDEN)),
        (f"{p}.mlp.down_proj.weight", (HIDDEN, MLP)),
        (f"{p}.input_layernorm.weight", (HIDDEN,)), (f"{p}.post_attention_layernorm.weight", (HIDDEN,))]


def random_bfloat16(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random bfloat16 bit patterns with magnitudes in [2^-8, 2^7) (cheap: integers, no normal draw)."""
    bits = rng.integers(0, 1 << 16, size=shape, dtype=np.uint16)
    # Bits 8-10 step the exponent field (bit 7 up) by 2: biased exponents 119, 121, ..., 133, so
    # magnitudes 2^-8 .. 2^6 times a mantissa in [1, 2), every other binade.
    exponent = (bits & 0x0700) + np.uint16(0x3B80)
    return ((bits & 0x807F) | (exponent & 0x7F80)).astype(np.uint16)


def generate(directory: str, gigabytes: float, shard_bytes: int) -> list[str]:
    import ml_dtypes
    from swiftprune.io import SafetensorsWriter

    rng = np.random.default_rng(0)
    names: list[tuple[str, tuple[int, ...]]] = []
    layer = 0
    while sum(2 * int(np.prod(s)) for _, s in names) < gigabytes * 1e9:
        names.extend(layer_tensors(layer))
        layer += 1
    groups: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for item in names:
        nbytes = 2 * int(np.prod(item[1]))
        if size and size + nbytes > shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(item)
        size += nbytes
    paths, weight_map, total = [], {}, 0
    for i, group in enumerate(groups):
        file = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        path = os.path.join(directory, file)
        with SafetensorsWriter(path, header_reserve=64 * 1024) as writer:
            for name, shape in group:
                writer.add(name, random_bfloat16(rng, shape).view(ml_dtypes.bfloat16))
                weight_map[name] = file
                total += 2 * int(np.prod(shape))
        paths.append(path)
        print(f"  wrote {file} ({os.path.getsize(path) / 1e9:.2f} GB)", flush=True)
    with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
    return paths


def drop_cache(paths: list[str]) -> None:
    """Evicts our own files from the page cache (others' files are untouched)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd) if os.access(path, os.W_OK) else None
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_bandwidth(paths: list[str]) -> tuple[float, int]:
    buffer = bytearray(16 << 20)
    view = memoryview(buffer)
    total = 0
    start = time.perf_counter()
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while True:
                n = f.readinto(view)
                if not n:
                    break
                total += n
    return time.perf_counter() - start, total


def tree_rss(pid: int) -> int:
    """Summed RSS (bytes) of a process and its descendants (walking /proc/PID/task/*/children)."""
    total, stack, page = 0, [pid], os.sysconf("SC_PAGE_SIZE")
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * page
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            pass
    return total


def run_measured(command: list[str]) -> tuple[float, int, subprocess.CompletedProcess, float]:
    """Runs a command; returns wall seconds, peak tree RSS, the result and the CPU seconds (user + system)
    of the command and every process it waited for (its workers), which a busy machine does not inflate."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python")))
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(process.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    start = time.perf_counter()
    sampler.start()
    out, err = process.communicate()
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, peak, subprocess.CompletedProcess(command, process.returncode, out, err), cpu


SAFETENSORS_COPY = r"""
import os, sys
import ml_dtypes  # registers numpy's "bfloat16" dtype name, which safetensors.numpy needs for BF16
from safetensors.numpy import load_file, save_file
for path in sys.argv[2:]:
    target = os.path.join(sys.argv[1], os.path.basename(path))
    save_file(load_file(path), target)
    os.unlink(target)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=12.0)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shard-gb", type=float, default=2.0)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--source", help="use the shards already generated in this folder (by an earlier --keep run)")
    args = parser.parse_args()
    free = shutil.disk_usage(args.dir).free
    need = args.gb * 1e9 * (0.5 if args.source else 1.5)
    if free < need:
        sys.exit(f"{args.dir} has {free / 1e9:.0f} GB free; this needs about {need / 1e9:.0f} GB")
    work = tempfile.mkdtemp(prefix="swiftprune-sharded-", dir=args.dir)
    try:
        source, out, copy = (os.path.join(work, d) for d in ("in", "out", "copy"))
        os.makedirs(copy)
        if args.source:
            source = args.source
            paths = sorted(os.path.join(source, f) for f in os.listdir(source) if f.endswith(".safetensors"))
        else:
            os.makedirs(source)
            print(f"generating ~{args.gb:g} GB of bfloat16 shards in {source}", flush=True)
            paths = generate(source, args.gb, int(args.shard_gb * 1e9))
        size = sum(os.path.getsize(p) for p in paths)

        drop_cache(paths)
        read_s, read_bytes = read_bandwidth(paths)
        read_gbs = read_bytes / read_s / 1e9

        drop_cache(paths)
        command = [sys.executable, "-m", "swiftprune", "compress", source, "-o", out, "--prune", "nm:2:4",
                   "--quantize", "int4:128", "--workers", str(args.workers), "--no-progress", "-q"]
        ours_s, ours_rss, result, ours_cpu = run_measured(command)
        if result.returncode != 0:
            sys.exit(f"swiftprune failed: {result.stderr}")
        out_size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
        shutil.rmtree(out)

        drop_cache(paths)
        base_s, base_rss, result, base_cpu = run_measured([sys.executable, "-c", SAFETENSORS_COPY, copy, *paths])
        if result.returncode != 0:
            sys.exit(f"safetensors copy failed: {result.stderr}")

        largest = max(2 * HIDDEN * MLP, 0)
        print()
        print(f"checkpoint: {len(paths)} shards, {size / 1e9:.2f} GB bfloat16, largest tensor "
              f"{largest / 2**20:.0f} MiB ({largest * 2 / 2**20:.0f} MiB as float32)")
        print(f"file read (cold, 16 MiB blocks): {read_gbs:.2f} GB/s ({read_s:.1f} s)")
        print(f"swiftprune 2:4 + int4/128, {args.workers} workers: {ours_s:.1f} s, {size / ours_s / 1e9:.2f} GB/s "
              f"= {size / ours_s / 1e9 / read_gbs:.0%} of read bandwidth; peak RSS (process tree) "
              f"{ours_rss / 2**20:.0f} MiB; output {out_size / 1e9:.2f} GB; CPU {ours_cpu:.0f} s "
              f"({size / ours_cpu / 1e9:.3f} GB per CPU-second)")
        print(f"safetensors load_file+save_file copy: {base_s:.1f} s, {size / base_s / 1e9:.2f} GB/s; "
              f"peak RSS {base_rss / 2**20:.0f} MiB; CPU {base_cpu:.0f} s ({size / base_cpu / 1e9:.3f} GB per "
              f"CPU-second); ratio (their time / ours) {base_s / ours_s:.2f}x wall, {base_cpu / ours_cpu:.2f}x CPU")
        print(f"machine: {os.cpu_count()} logical CPUs, load average {os.getloadavg()[0]:.1f} at the end "
              "(shared with other jobs: wall times are noisy, CPU seconds less so)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
            if args.source:
                shutil.rmtree(args.source, ignore_errors=True)


if __name__ == "__main__":
    main()
