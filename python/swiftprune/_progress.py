"""Progress bars (tqdm when installed, silently nothing otherwise)."""
from __future__ import annotations

from typing import Any, Iterable, Iterator, TypeVar

T = TypeVar("T")

# A bar appears only once a run has taken this long, so quick calls print
# nothing, and then it stays on screen when the run ends (tqdm's leave=True):
# the user sees what the time went to.
DELAY_S = 2.0


def progress(items: Iterable[T], *, total: int, description: str, enabled: bool,
             unit: str = "tensor") -> Iterator[T]:
    """Iterates over ``items``, drawing a tqdm bar on stderr when ``enabled``,
    tqdm is installed, there is more than one item, stderr is a terminal and
    the run has lasted :data:`DELAY_S` seconds; the bar stays when done."""
    if enabled and total > 1:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            yield from tqdm(items, total=total, desc=description, unit=unit, leave=True, delay=DELAY_S,
                            disable=None)
            return
    yield from items


class _NoBar:
    """What :func:`byte_bar` returns when no bar is drawn."""

    total = 0

    def update(self, n: int = 1) -> None:
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        pass


def byte_bar(*, total: int, description: str, enabled: bool) -> Any:
    """A tqdm bar counting bytes (with throughput in B/s) when ``enabled``, tqdm
    is installed and stderr is a terminal (shown after :data:`DELAY_S`, kept
    when done, as :func:`progress`); otherwise an object with the same
    ``update`` / ``refresh`` / ``close`` / ``total`` that draws nothing."""
    if enabled:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024,
                        leave=True, delay=DELAY_S, disable=None)
    return _NoBar()


def step_bar(*, total: int, description: str, enabled: bool) -> Any:
    """A tqdm bar counting the named steps of one long operation (the current
    step's name shown after the count) when ``enabled``, tqdm is installed and
    stderr is a terminal, shown after :data:`DELAY_S` and kept when done, as
    :func:`progress`; otherwise an object with the same ``update`` /
    ``set_postfix_str`` / ``close`` that draws nothing."""
    if enabled:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return tqdm(total=total, desc=description, unit="step", leave=True, delay=DELAY_S, disable=None)
    return _NoBar()
