"""Weight files: safetensors read/write against the `safetensors` package (or
NumPy's .npz when it is not installed), and streaming compression of a large
file, with peak memory measured in a child process.

The streaming case writes a multi-tensor float32 model (2 GiB; 256 MiB with
--quick) to a temporary directory and compares `swiftprune.compress_file`
(memory-mapped input, one tensor at a time, spooled output) with loading the
whole model, pruning each tensor with NumPy and saving it. Its note gives
each way's peak resident memory (ru_maxrss of a fresh child process).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import swiftprune as sp
from swiftprune.io import SafetensorsWriter

from . import Case

PRUNE = [{"prune": {"sparsity": 0.5}}]


def _write_model(path: Path, tensors: int, rows: int, cols: int) -> None:
    """A float32 model of `tensors` (rows, cols) weights + biases, written tensor by tensor."""
    rng = np.random.default_rng(0)
    with SafetensorsWriter(path) as writer:
        for i in range(tensors):
            writer.add(f"layers.{i}.weight", rng.standard_normal((rows, cols), dtype=np.float32))
            writer.add(f"layers.{i}.bias", rng.standard_normal(rows, dtype=np.float32))


_BASELINE_SCRIPT = """
import sys, numpy as np
src, dst = sys.argv[1], sys.argv[2]
try:
    from safetensors.numpy import load_file, save_file
except ImportError:
    load_file = save_file = None
import swiftprune as sp
weights = load_file(src) if load_file else {k: np.array(v) for k, v in sp.load_weights(src).items()}
out = {}
for name, w in weights.items():
    if w.ndim >= 2:
        k = round(0.5 * w.size)
        a = np.abs(w).ravel()
        t = np.partition(a, k - 1)[k - 1]
        w = np.where(np.abs(w) > t, w, 0).astype(np.float32)
    out[name] = w
if save_file:
    save_file(out, dst)
else:
    np.savez(dst.replace('.safetensors', '.npz'), **out)
"""

_OURS_SCRIPT = """
import sys, swiftprune as sp
sp.compress_file(sys.argv[1], sys.argv[2], [{"prune": {"sparsity": 0.5}}], dense=True, progress=False)
"""

_PEAK = "\nimport resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"


def _peak_mib(script: str, *args: str) -> float:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(Path(sp.__file__).resolve().parent.parent),
                                                    env.get("PYTHONPATH", "")] if p)
    out = subprocess.run([sys.executable, "-c", script + _PEAK, *args], capture_output=True, text=True, env=env,
                         check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def cases(quick: bool) -> list[Case]:
    try:
        from safetensors.numpy import load_file, save_file
        peer = "safetensors"
    except ImportError:
        load_file = save_file = None
        peer = "np.savez/np.load"
    directory = Path(tempfile.mkdtemp(prefix="swiftprune-bench-io-"))
    out: list[Case] = []

    # Read and write a 64 MiB, 32-tensor model.
    rng = np.random.default_rng(1)
    small = {f"t{i}": rng.standard_normal((512, 1024), dtype=np.float32) for i in range(32)}
    st_path = directory / "small.safetensors"
    sp.save_weights(st_path, small)
    npz_path = directory / "small.npz"
    np.savez(npz_path, **small)

    def read_ours() -> float:
        return sum(float(w[0, 0]) + float(w.sum(dtype=np.float64)) for w in sp.load_weights(st_path).values())

    def read_peer() -> float:
        loaded = load_file(str(st_path)) if load_file else dict(np.load(npz_path))
        return sum(float(w[0, 0]) + float(w.sum(dtype=np.float64)) for w in loaded.values())

    out.append(Case("load 64 MiB safetensors + sum every tensor", read_ours, read_peer, peer,
                    note="ours: read into memory (pread), the default"))

    def read_ours_mapped() -> float:
        return sum(float(w[0, 0]) + float(w.sum(dtype=np.float64))
                   for w in sp.load_weights(st_path, mmap=True).values())

    out.append(Case("load 64 MiB safetensors mmap=True + sum every tensor", read_ours_mapped, read_peer, peer,
                    note="ours: zero-copy views of the mapping (SIGBUS if the file is truncated meanwhile)"))

    def write_ours() -> None:
        sp.save_weights(directory / "w_ours.safetensors", small)

    def write_peer() -> None:
        if save_file:
            save_file(small, str(directory / "w_peer.safetensors"))
        else:
            np.savez(directory / "w_peer.npz", **small)

    out.append(Case("save 64 MiB safetensors (atomic, fsync)", write_ours, write_peer, peer,
                    note="ours also fsyncs file and directory"))

    # compress() on an in-memory model (64 MiB, 32 tensors + biases), 80% magnitude.
    model = {}
    for i, (name, w) in enumerate(small.items()):
        model[f"{name}.weight"] = w
        model[f"{name}.bias"] = w[0]

    def compress_ours() -> object:
        return sp.compress(model, [{"prune": {"sparsity": 0.8}}], progress=False)

    def compress_numpy() -> object:
        out = {}
        for name, w in model.items():
            if w.ndim >= 2:
                k = round(0.8 * w.size)
                a = np.abs(w)
                t = np.partition(a.ravel(), k - 1)[k - 1]
                w = np.where(a > t, w, 0).astype(np.float32)
                np.linalg.norm(model[name] - w)  # the report's error
            out[name] = w
        return out

    out.append(Case("compress() 64 MiB model, 80% magnitude + report", compress_ours, compress_numpy,
                    "np.partition per tensor", note="ours: exact ties, report, packed form"))

    # compress() with composed stages: 2:4 pruning, then int4 in groups of 128 (packed), plus the report.
    nm_int4 = [{"prune": {"method": "nm", "n": 2, "m": 4}},
               {"quantize": {"bits": 4, "axis": 0, "group_size": 128}}]

    def nm_int4_ours() -> object:
        result = sp.compress(model, nm_int4, progress=False)
        return [form.packed() for form in result.tensors.values() if isinstance(form, sp.QuantizedTensor)]

    def nm_int4_numpy() -> object:
        packed = []
        for name, w in model.items():
            if w.ndim < 2:
                continue
            groups = np.abs(w).reshape(-1, 4)
            drop = np.argsort(groups, axis=1, kind="stable")[:, :2]
            mask = np.ones_like(groups, dtype=bool)
            np.put_along_axis(mask, drop, False, axis=1)
            pruned = np.where(mask.reshape(w.shape), w, np.float32(0))
            blocks = pruned.reshape(w.shape[0], -1, 128)
            scale = np.abs(blocks).max(axis=2, keepdims=True) / np.float32(7)
            scale[scale == 0] = 1
            q = np.clip(np.round(blocks / scale), -7, 7).astype(np.int8)
            dense = (q * scale).reshape(w.shape)
            np.linalg.norm(w - dense)  # the report's error
            flat = q.reshape(-1).view(np.uint8) & 0xF
            packed.append(flat[0::2] | (flat[1::2] << 4))
        return packed

    out.append(Case("compress() 64 MiB model, 2:4 + int4 group-128 + report", nm_int4_ours, nm_int4_numpy,
                    "NumPy argsort + rounding", note="ours: exact N:M ties, packed nibbles, report"))

    # Saving that result: packed parts to a compressed .safetensors file.
    compressed = sp.compress(model, nm_int4, progress=False)

    def save_compressed_ours() -> None:
        compressed.save(directory / "nm_int4.safetensors")

    def save_compressed_peer() -> None:
        parts = {}
        for name, form in compressed.tensors.items():
            if isinstance(form, sp.QuantizedTensor):
                parts[f"{name}::values"] = form.packed()
                parts[f"{name}::scale"] = form.scale
            else:
                parts[name] = np.ascontiguousarray(form)
        if save_file:
            save_file(parts, str(directory / "nm_int4_peer.safetensors"))
        else:
            np.savez(directory / "nm_int4_peer.npz", **parts)

    out.append(Case("save 2:4 + int4 result (8.5 MiB of parts)", save_compressed_ours, save_compressed_peer, peer,
                    note="ours: packs, writes metadata + report, fsync"))

    # Streaming compression of a large file, with memory.
    tensors, rows, cols = (4, 4096, 4096) if quick else (32, 4096, 4096)  # 64 MiB weights: 256 MiB or 2 GiB
    big = directory / "big.safetensors"
    _write_model(big, tensors, rows, cols)
    size_mib = big.stat().st_size / 2**20
    largest_mib = rows * cols * 4 / 2**20
    state: dict = {}

    def stream_ours() -> None:
        sp.compress_file(big, directory / "big_out.safetensors", PRUNE, dense=True, progress=False)

    def stream_peer() -> None:
        env = dict(os.environ)
        subprocess.run([sys.executable, "-c", _BASELINE_SCRIPT, str(big), str(directory / "big_peer.safetensors")],
                       check=True, env=env)

    def note() -> str:
        if "text" not in state:
            ours = _peak_mib(_OURS_SCRIPT, str(big), str(directory / "mem_ours.safetensors"))
            theirs = _peak_mib(_BASELINE_SCRIPT, str(big), str(directory / "mem_peer.safetensors"))
            state["text"] = (f"peak RSS {ours:.0f} MiB vs {theirs:.0f} MiB load-all "
                             f"(file {size_mib:.0f} MiB, largest tensor {largest_mib:.0f} MiB)")
        return state["text"]

    def release_all() -> None:
        shutil.rmtree(directory, ignore_errors=True)

    out.append(Case(f"compress_file {size_mib / 1024:.2f} GiB, prune 50%, dense out", stream_ours, stream_peer,
                    f"{peer}+NumPy (child)", note=note,
                    data={"cleanup": _Cleanup(release_all)}))
    return out


class _Cleanup:
    """Removes the temporary directory when the case's data are released."""

    def __init__(self, action) -> None:
        self.action = action

    def __del__(self) -> None:
        self.action()
