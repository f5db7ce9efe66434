"""Thread count of the Swift core."""
from __future__ import annotations

from . import _core
from ._validation import check_int


def set_num_threads(n: int) -> None:
    """Set how many threads swiftprune's kernels use; ``0`` restores the default.

    The default is the environment variable ``SWIFTPRUNE_NUM_THREADS`` when it
    holds a positive integer, else the number of processors. The setting is
    process-wide and safe to change while other threads run swiftprune calls.
    """
    _core.set_num_threads(check_int("n", n, minimum=0))


def get_num_threads() -> int:
    """The number of threads swiftprune's kernels use (always >= 1)."""
    return int(_core.get_num_threads())
