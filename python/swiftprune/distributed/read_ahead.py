"""A job's next tensor read while the current one is compressed.

A job alternates between reading a tensor (``pread``: waiting on the disk)
and compressing it (CPU). With the next tensor read on a background thread
— the Swift read releases the GIL — the two overlap, at the cost of one
more tensor's stored bytes in memory per job.

The buffer a read fills is best allocated on the calling thread
(``allocate``): glibc serves a non-main thread's large allocations with
fresh ``mmap`` pages every time, which the kernel must zero (a sixth of a
2:4 + int4 job's CPU time, measured with perf), while the main thread's
freed buffers are reused (see :mod:`swiftprune._allocator`).
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterator, Optional, Sequence, Tuple, TypeVar

__all__ = ["read_ahead"]

T = TypeVar("T")


def read_ahead(names: Sequence[str], read: Callable[..., T],
               allocate: Optional[Callable[[str], Any]] = None) -> Iterator[Tuple[str, T]]:
    """Yields ``(name, read(name))`` in order, reading the following name on a background thread.

    With ``allocate``, each read is ``read(name, allocate(name))``, the
    allocation made on the calling thread. A read's (or an allocation's)
    exception is raised when its tensor's turn comes (as a plain loop would
    raise it). Closing the iterator early waits for the read in flight and
    drops it.
    """
    names = list(names)
    if not names:
        return

    def submit(pool: ThreadPoolExecutor, name: str) -> Any:
        if allocate is None:
            return pool.submit(read, name)
        try:
            buffer = allocate(name)
        except Exception as error:  # raised at the tensor's turn, like a failed read
            failed: Future = Future()
            failed.set_exception(error)
            return failed
        return pool.submit(read, name, buffer)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="swiftprune-read-ahead") as pool:
        pending = submit(pool, names[0])
        for i, name in enumerate(names):
            value = pending.result()
            pending = submit(pool, names[i + 1]) if i + 1 < len(names) else None
            yield name, value
            value = None  # the caller is done with it: hold at most the next tensor while it is read
