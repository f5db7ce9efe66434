"""The per-tensor report of a compression and its text table."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from . import _core
from .registry import codec_for

__all__ = ["Report", "report_row", "human_bytes"]


def stored_bytes(track: Any) -> int:
    """Bytes the file stores for a pipeline track (remembered on the track
    until its encoding changes)."""
    cached = getattr(track, "stored", None)
    if cached is not None:
        return cached
    if track.form is None:
        size = int(track.original.nbytes)
    else:
        size = int(codec_for(track.form).nbytes(track.form))
        if track.keep_mask is not None:
            size += (track.keep_mask.size + 7) // 8
    if hasattr(track, "stored"):
        track.stored = size
    return size


_WIDEN_CHUNK = 1 << 20  # entries of a float16/bfloat16 original widened per step


def relative_error_chunked(original: np.ndarray, approximation: np.ndarray, chunk: int = 1 << 16) -> float:
    """||original - approximation||_F / ||original||_F with float64 sums, as
    :func:`~swiftprune.relative_error` computes it, in bounded memory: float32
    pairs, bfloat16 originals (their bit patterns) and float16 ones (widened
    exactly a chunk at a time) in one pass of the Swift core; float64 ones chunk by chunk through a small
    float64 buffer (no BLAS call: OpenBLAS's threaded ``ddot`` is slow on a
    busy machine). 0 for two zero tensors, inf when only the original is zero."""
    a = np.asarray(original).reshape(-1)
    b = np.asarray(approximation).reshape(-1)
    if b.dtype == np.float32 and str(a.dtype) == "bfloat16":
        norm, difference = _core.squared_error(a.view(np.uint16), b)  # bit patterns, widened in Swift
    elif b.dtype == np.float32 and a.dtype in (np.float32, np.float16):
        norm = difference = 0.0
        step = a.size if a.dtype == np.float32 else _WIDEN_CHUNK
        for start in range(0, a.size, max(step, 1)):
            x = np.asarray(a[start:start + step], dtype=np.float32)
            n, d = _core.squared_error(x, b[start:start + step])
            norm += n
            difference += d
    else:
        buffer = np.empty(min(chunk, a.size), dtype=np.float64)
        norm = difference = 0.0
        for start in range(0, a.size, chunk):
            x = a[start:start + chunk]
            d = buffer[:x.size]
            np.subtract(x, b[start:start + chunk], out=d, dtype=np.float64)
            norm += float(np.einsum("i,i->", x, x, dtype=np.float64))
            difference += float(np.einsum("i,i->", d, d))
    if norm == 0.0:
        return 0.0 if difference == 0.0 else math.inf
    return math.sqrt(difference) / math.sqrt(norm)


def report_row(track: Any) -> dict[str, Any]:
    params = int(track.original.size)
    after = stored_bytes(track)
    touched = track.form is not None
    fused = getattr(track.form, "difference", None) is not None  # the fused pass summed them (see _fused)
    if fused:
        norm, difference = track.form.norm, track.form.difference
        error = 0.0 if norm == 0.0 and difference == 0.0 else (
            math.inf if norm == 0.0 else math.sqrt(difference) / math.sqrt(norm))
    return {
        "name": track.name,
        "shape": tuple(int(d) for d in track.original.shape),
        "dtype": str(track.original.dtype),
        "params": params,
        "nonzeros": track.form.nonzeros if fused else int(np.count_nonzero(track.dense if touched else track.original)),
        "bits": (after * 8 / params) if params else 0.0,
        "bytes_before": int(track.original.nbytes),
        "bytes_after": after,
        "relative_error": error if fused else relative_error_chunked(track.original, track.dense) if touched else 0.0,
        "stages": "+".join(track.labels) or "-",
    }


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


class Report(list):
    """Rows (dicts) of a compression, one per tensor, with :meth:`summary`.

    Row keys: ``name``, ``shape``, ``dtype``, ``params``, ``nonzeros``,
    ``bits`` (stored bits per parameter, overheads included),
    ``bytes_before``, ``bytes_after``, ``relative_error`` (Frobenius norm of
    the change over that of the original; 0 for untouched tensors) and
    ``stages`` (e.g. ``"prune.magnitude+quantize.minmax"``).
    """

    @property
    def totals(self) -> dict[str, Any]:
        """Sums over the rows, with the overall ``ratio`` (bytes before / after)."""
        before = sum(r["bytes_before"] for r in self)
        after = sum(r["bytes_after"] for r in self)
        params = sum(r["params"] for r in self)
        return {"params": params, "nonzeros": sum(r["nonzeros"] for r in self),
                "bytes_before": before, "bytes_after": after,
                "bits": after * 8 / params if params else 0.0,
                "ratio": before / after if after else math.inf}

    #: Set by :func:`~swiftprune.compress_file`: the measured size of the file
    #: written, and whether it holds dense arrays (``bytes_after`` are then
    #: the dense arrays' sizes, not a compressed size).
    file_bytes: int | None = None
    dense_output: bool = False

    def __repr__(self) -> str:
        t = self.totals
        return (f"Report({len(self)} tensors, {human_bytes(t['bytes_before'])} -> {human_bytes(t['bytes_after'])}, "
                f"ratio {t['ratio']:.2f}x)")

    def summary(self) -> str:
        """The report as a text table, with totals and the overall ratio (or,
        for a dense output, the dense size written) and the file's size."""
        headers = ("tensor", "shape", "params", "nonzeros", "bits", "before", "after", "rel. error", "stages")
        lines = [[r["name"], "x".join(map(str, r["shape"])) or "()", f"{r['params']:,}", f"{r['nonzeros']:,}",
                  f"{r['bits']:.2f}", human_bytes(r["bytes_before"]), human_bytes(r["bytes_after"]),
                  f"{r['relative_error']:.4f}", r["stages"]] for r in self]
        t = self.totals
        total = ["total", "", f"{t['params']:,}", f"{t['nonzeros']:,}", f"{t['bits']:.2f}",
                 human_bytes(t["bytes_before"]), human_bytes(t["bytes_after"]), "", ""]
        widths = [max(len(str(row[i])) for row in [headers, total, *lines]) for i in range(len(headers))]
        right = {2, 3, 4, 5, 6, 7}

        def fmt(row: Sequence[str]) -> str:
            return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                             for i, (c, w) in enumerate(zip(row, widths))).rstrip()

        rule = "  ".join("-" * w for w in widths)
        out = [fmt(headers), rule, *map(fmt, lines), rule, fmt(total)]
        if getattr(self, "dense_output", False):
            out.append(f"dense output: {human_bytes(t['bytes_after'])} of dense arrays written (the file is "
                       "not smaller; write .safetensors without --dense for the compressed form)")
        else:
            out.append(f"compression ratio {t['ratio']:.2f}x ({human_bytes(t['bytes_before'])} -> "
                       f"{human_bytes(t['bytes_after'])})")
        file_bytes = getattr(self, "file_bytes", None)
        if file_bytes is not None:
            out.append(f"file: {file_bytes:,} bytes written ({file_bytes - t['bytes_after']:,} bytes of "
                       "header, metadata and container)")
        return "\n".join(out)

