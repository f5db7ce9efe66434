"""The benchmark times a contender only once the process is idle (`bench.settle`).

Thread pools (OpenBLAS, libgomp) keep spinning after a call returns; without
the wait, the next contender in an interleaved round shared the cores with
them and was charged their CPU time (issue 18: the 2-thread rows that "did not
scale"). Here a Python thread plays the spinning pool.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import Iterator

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import bench  # noqa: E402


def test_settle_returns_at_once_when_idle() -> None:
    assert bench.settle(limit=1.0) < 0.2


@contextlib.contextmanager
def spinning_thread(seconds: float) -> Iterator[None]:
    """A Python thread burning CPU for `seconds` (as a BLAS pool's idle workers do), joined on exit."""
    stop = time.perf_counter() + seconds

    def spin() -> None:
        while time.perf_counter() < stop:
            pass  # the GIL is released every switch interval, and while settle sleeps

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        yield
    finally:
        spinner.join()


def test_settle_waits_for_a_spinning_thread() -> None:
    with spinning_thread(0.3):
        waited = bench.settle(limit=2.0)
    assert waited >= 0.25, f"settle returned after {waited:.3f} s while a thread was still spinning"


def test_settle_gives_up_after_its_limit() -> None:
    with spinning_thread(0.5):
        waited = bench.settle(limit=0.2)
    assert 0.2 <= waited < 0.5
