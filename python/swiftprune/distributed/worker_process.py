"""Settings of a local worker process, applied once when the pool starts it.

Two things make a worker that compresses one large tensor after another
slower than it needs to be on a small machine:

* threads: every Swift kernel splits its work over ``SWIFTPRUNE_NUM_THREADS``
  (all cores by default); ``workers`` processes doing that at once
  oversubscribe the cores, and the kernels' barriers wait on descheduled
  threads. Each worker gets its share of the cores instead (unless the user
  set ``SWIFTPRUNE_NUM_THREADS``).
* fresh pages: glibc serves every allocation above 32 MiB with its own
  ``mmap`` and returns it on ``free``, so each tensor's buffers are new pages
  the kernel must zero (a third of a worker's CPU time on a 2:4 + int4 job of
  bfloat16 shards, measured with perf). Turning those mmaps off keeps freed
  buffers in the worker's heap, where the next tensor reuses them; the peak
  memory is the same (the largest tensor's buffers), it is just not given
  back between tensors.
"""
from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

from .. import _core
from .jobs import set_progress_sink

__all__ = ["initialize_worker", "threads_per_worker"]

_M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
_M_MMAP_MAX = -4


def threads_per_worker(workers: int) -> int | None:
    """Swift threads for each of ``workers`` processes: the cores shared out,
    at least 1; ``None`` when ``SWIFTPRUNE_NUM_THREADS`` is set (kept)."""
    if os.environ.get("SWIFTPRUNE_NUM_THREADS"):
        return None
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, workers))


def _keep_freed_buffers() -> None:
    """Large allocations from the heap, and the heap never trimmed (glibc only)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): leave the allocator alone
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mallopt(_M_MMAP_MAX, 0)
    mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)


def initialize_worker(sink: Any, threads: int | None) -> None:
    """The pool initializer: progress sink, thread share, allocator settings."""
    set_progress_sink(sink)
    if threads is not None:
        _core.set_num_threads(threads)
    _keep_freed_buffers()
