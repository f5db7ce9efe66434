"""Benchmark cases, one module per area; see ../bench.py."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Union


@dataclass
class Case:
    """One timed comparison.

    `ours` runs swiftprune with `threads` threads; `baseline` does the same
    work the NumPy/SciPy/scikit-learn way (None when no baseline is
    installed). `note` (a string, or a callable evaluated after timing) adds
    context such as an error or a bandwidth figure. `data` keeps large inputs
    alive until `release()`.
    """

    name: str
    ours: Callable[[], object]
    baseline: Optional[Callable[[], object]]
    baseline_name: str = "NumPy"
    threads: int = 1
    note: Union[str, Callable[[], str]] = ""
    data: dict = field(default_factory=dict)

    def release(self) -> None:
        self.data.clear()
        self.ours = self.baseline = None  # type: ignore[assignment]
