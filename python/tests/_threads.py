"""Test helpers for threading: swiftprune's worker count set for a block, a call's results at several worker
counts, and one piece of work run from several Python threads at once (the GIL is released around every
Swift call, so they do overlap)."""
from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator, Sequence, TypeVar

import swiftprune as sp

T = TypeVar("T")


@contextlib.contextmanager
def num_threads(count: int) -> Iterator[None]:
    """swiftprune's worker count set to `count` inside the block; the previous count restored after, also on failure."""
    previous = sp.get_num_threads()
    sp.set_num_threads(count)
    try:
        yield
    finally:
        sp.set_num_threads(previous)


def per_thread_count(call: Callable[[], T], counts: Sequence[int] = (1, 2)) -> list[T]:
    """`call()` once at each worker count of `counts`, in order."""
    results = []
    for count in counts:
        with num_threads(count):
            results.append(call())
    return results


def run_in_python_threads(work: Callable[[int], T], count: int = 4) -> list[T]:
    """`work(i)` for `i` in `range(count)`, each in its own Python thread, all started before any is joined.

    Returns the results in the order of `i`; the first exception a thread raised is raised again here."""
    results: list = [None] * count
    errors: list[BaseException] = []

    def target(i: int) -> None:
        try:
            results[i] = work(i)
        except BaseException as error:  # pragma: no cover - raised again below
            errors.append(error)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
