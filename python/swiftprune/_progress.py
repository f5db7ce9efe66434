"""Progress bars (tqdm when installed, silently nothing otherwise)."""
from __future__ import annotations

from typing import Iterable, Iterator, TypeVar

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
