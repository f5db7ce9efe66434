"""A job's next tensor read while the current one is compressed.

A job alternates between reading a tensor (``pread``: waiting on the disk)
and compressing it (CPU). With the next tensor read on a background thread
— the Swift read releases the GIL — the two overlap, at the cost of one
more tensor's stored bytes in memory per job.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence, Tuple, TypeVar

__all__ = ["read_ahead"]

T = TypeVar("T")


def read_ahead(names: Sequence[str], read: Callable[[str], T]) -> Iterator[Tuple[str, T]]:
    """Yields ``(name, read(name))`` in order, reading the following name on a background thread.

    A read's exception is raised when its tensor's turn comes (as a plain
    loop would raise it). Closing the iterator early waits for the read in
    flight and drops it.
    """
    names = list(names)
    if not names:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="swiftprune-read-ahead") as pool:
        pending = pool.submit(read, names[0])
        for i, name in enumerate(names):
            value = pending.result()
            pending = pool.submit(read, names[i + 1]) if i + 1 < len(names) else None
            yield name, value
            value = None  # the caller is done with it: hold at most the next tensor while it is read
