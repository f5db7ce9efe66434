"""Progress bars (tqdm when installed, silently nothing otherwise)."""
from __future__ import annotations

from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

# A bar appears only once a run has taken this long, so quick calls print
# nothing, and then it stays on screen when the run ends (tqdm's leave=True):
# the user sees what the time went to.
DELAY_S = 2.0


def progress(items: Iterable[T], *, total: int, description: str, enabled: bool) -> Iterator[T]:
    """Iterates over ``items``, drawing a tqdm bar on stderr when ``enabled``,
    tqdm is installed, there is more than one item, stderr is a terminal and
    the run has lasted :data:`DELAY_S` seconds; the bar stays when done."""
    if enabled and total > 1:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            yield from tqdm(items, total=total, desc=description, unit="tensor", leave=True, delay=DELAY_S,
                            disable=None)
            return
    yield from items
