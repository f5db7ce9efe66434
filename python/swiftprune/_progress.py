"""Progress bars (tqdm when installed, silently nothing otherwise)."""
from __future__ import annotations

from typing import Any, Iterable, Iterator, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], *, total: int, description: str, enabled: bool) -> Iterator[T]:
    """Iterates over ``items``, drawing a tqdm bar on stderr when ``enabled``,
    tqdm is installed, there is more than one item and stderr is a terminal."""
    if enabled and total > 1:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            yield from tqdm(items, total=total, desc=description, unit="tensor", leave=False, disable=None)
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


def byte_bar(*, total: int, description: str, enabled: bool) -> Any:
    """A tqdm bar counting bytes (with throughput in B/s) when ``enabled``, tqdm
    is installed and stderr is a terminal; otherwise an object with the same
    ``update`` / ``refresh`` / ``close`` / ``total`` that draws nothing."""
    if enabled:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024,
                        leave=False, disable=None)
    return _NoBar()
