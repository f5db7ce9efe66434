"""Benchmark cases, one module per area; see ../bench.py."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Union


@dataclass
class Peer:
    """One competitor of a case: `run` does the same work another library's way."""

    name: str
    run: Callable[[], object]


@dataclass
class Case:
    """One timed comparison.

    `ours` runs swiftprune with `threads` threads; `baseline` does the same
    work the NumPy/SciPy/scikit-learn way (None when no baseline is
    installed) and `peers` adds more competitors (torch, SciPy, ...). Every
    contender runs with the same thread count, interleaved, and the ratio is
    taken against the fastest. `check`, when given, runs before anything is
    timed: it compares the contenders' outputs and raises AssertionError when
    they disagree (the row is then reported as a mismatch, not timed); the
    string it returns describes the agreement. `floor_bytes` is the memory
    traffic the operation cannot avoid (bytes read + written once), for
    memory-bound rows; `goal` the ratio the row is meant to reach. `note` (a
    string, or a callable evaluated after timing) adds context such as an
    error or a bandwidth figure. `data` keeps large inputs alive until
    `release()`.
    """

    name: str
    ours: Callable[[], object]
    baseline: Optional[Callable[[], object]]
    baseline_name: str = "NumPy"
    threads: int = 1
    note: Union[str, Callable[[], str]] = ""
    data: dict = field(default_factory=dict)
    peers: list = field(default_factory=list)
    check: Optional[Callable[[], str]] = None
    floor_bytes: int = 0
    goal: Optional[float] = None

    def contenders(self) -> list[Peer]:
        """The peers to time against (baseline first), without swiftprune itself."""
        out = [Peer(self.baseline_name, self.baseline)] if self.baseline is not None else []
        return out + [p for p in self.peers if p.run is not None]

    def release(self) -> None:
        self.data.clear()
        self.peers = []
        self.check = None
        self.ours = self.baseline = None  # type: ignore[assignment]
