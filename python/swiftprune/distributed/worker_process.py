"""Settings of a local worker process, applied once when the pool starts it.

Two things make a worker that compresses one large tensor after another
slower than it needs to be on a small machine:

* threads: every Swift kernel splits its work over ``SWIFTPRUNE_NUM_THREADS``
  (all cores by default); ``workers`` processes doing that at once
  oversubscribe the cores, and the kernels' barriers wait on descheduled
  threads. Each worker gets its share of the cores instead (unless the user
  set ``SWIFTPRUNE_NUM_THREADS``).
* fresh pages: each tensor's large buffers would be new pages the kernel
  must zero; see :mod:`swiftprune._allocator`.
"""
from __future__ import annotations

import os
from typing import Any

from .. import _core
from .._allocator import keep_freed_buffers
from .jobs import set_progress_sink

__all__ = ["initialize_worker", "threads_per_worker"]


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


def initialize_worker(sink: Any, threads: int | None) -> None:
    """The pool initializer: progress sink, thread share, allocator settings."""
    set_progress_sink(sink)
    if threads is not None:
        _core.set_num_threads(threads)
    keep_freed_buffers()
