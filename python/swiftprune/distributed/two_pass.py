"""Model-scope methods as streaming passes: statistics first, then outputs.

A method of ``scope="model"`` (such as ``prune: global_magnitude``) needs
every selected tensor to decide anything. In memory it simply gets them all;
over a sharded checkpoint (or a cluster) it runs as a :class:`TwoPassPlan`:

1. statistics passes: every selected tensor (after the earlier stages) is
   summarized by :meth:`TwoPassPlan.statistics` where it lives (a worker
   process, a Dask worker); the coordinator :meth:`~TwoPassPlan.merge`\\ s
   the summaries, in model order, until the plan is :attr:`~TwoPassPlan.complete`;
2. the output pass: each tensor's output (a keep-mask for ``prune``) comes
   from :meth:`TwoPassPlan.apply` on that tensor alone.

Plans travel to workers by pickling, so they hold small data only.
:func:`register_two_pass` adds the streaming form of a model-scope method.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .. import _core

__all__ = ["TwoPassPlan", "GlobalMagnitudePlan", "register_two_pass", "two_pass_plan"]

_KEY_BITS = 31          # float32 magnitude keys: |x|'s bit pattern, sign cleared
_COARSE_SHIFT = 15      # pass 1 bins on the top 16 key bits ...
_COARSE_BINS = 1 << 16
_FINE_BINS = 1 << 15    # ... a refinement pass, when needed, on the low 15 inside one bin


class TwoPassPlan:
    """The streaming form of one model-scope method (subclass it).

    ``needs(name)`` says whether the current statistics pass wants tensor
    ``name`` (others are not read at all); ``statistics(name, weights)`` runs
    where the tensor is (float32 C-contiguous ``weights``, after the earlier
    stages) and returns a small picklable summary; ``merge(stats)`` receives
    ``[(name, summary), ...]`` for every wanted tensor in model order and
    updates the plan; once :attr:`complete`, ``apply(name, weights)`` returns
    what :attr:`Method.apply <swiftprune.model.Method>` would have returned
    for that tensor.
    """

    complete: bool = False

    def needs(self, name: str) -> bool:
        return True

    def statistics(self, name: str, weights: np.ndarray) -> Any:
        raise NotImplementedError

    def merge(self, stats: Sequence[tuple[str, Any]]) -> None:
        raise NotImplementedError

    def apply(self, name: str, weights: np.ndarray) -> Any:
        raise NotImplementedError


def _check_finite(name: str, nonfinite: int) -> None:
    if nonfinite:
        raise ValueError(f"tensor {name!r}: weights contain {nonfinite} NaN or Inf value(s)")


class GlobalMagnitudePlan(TwoPassPlan):
    """Exact global magnitude pruning in streaming passes.

    Pass 1 counts, per tensor, the top 16 bits of every magnitude key (the
    Swift core's histogram; 64 Ki bins, kept sparse). The merged counts give
    ``k = round(sparsity * total)`` and the bin holding the ``k``-th smallest
    magnitude. If no counted key has low bits set (float16-free data that was
    bfloat16, or zeros), each bin is one value and the threshold is exact;
    otherwise one refinement pass counts the low 15 bits inside that bin, over
    the tensors that have entries there. Masks then need only the threshold
    key and how many entries of exactly that magnitude each tensor prunes:
    the lower position in the concatenation (model order, then C order) is
    pruned first, as :func:`~swiftprune.global_magnitude_masks` does, so the
    masks are the same bit for bit.
    """

    def __init__(self, sparsity: float) -> None:
        self.sparsity = float(sparsity)
        self.complete = False
        self.level = 0
        self.bin = 0            # the coarse bin holding the threshold (level 1)
        self.need = 0           # how many of that bin's keys to prune
        self.wanted: set[str] | None = None
        self.mode = "threshold"  # or "keep" / "prune" (k = 0 / k = total)
        self.threshold = 0
        self.ties: dict[str, int] = {}

    def needs(self, name: str) -> bool:
        return self.wanted is None or name in self.wanted

    def statistics(self, name: str, weights: np.ndarray) -> Any:
        if self.level == 0:
            counts, low_bits, nonfinite = _core.magnitude_histogram(weights, 0, _COARSE_SHIFT, _COARSE_BINS)
            _check_finite(name, nonfinite)
            bins = np.flatnonzero(counts).astype(np.uint32)
            return bins, counts[bins], int(low_bits)
        counts, _, nonfinite = _core.magnitude_histogram(weights, self.bin << _COARSE_SHIFT, 0, _FINE_BINS)
        _check_finite(name, nonfinite)
        bins = np.flatnonzero(counts).astype(np.uint32)
        return bins, counts[bins]

    def merge(self, stats: Sequence[tuple[str, Any]]) -> None:
        if self.level == 0:
            self._merge_coarse(stats)
        else:
            self._merge_fine(stats)

    def _merge_coarse(self, stats: Sequence[tuple[str, Any]]) -> None:
        merged = np.zeros(_COARSE_BINS, dtype=np.int64)
        low_bits = 0
        for _, (bins, counts, bits) in stats:
            np.add.at(merged, bins, counts)
            low_bits |= bits
        total = int(merged.sum())
        k = min(total, int(round(self.sparsity * float(total))))
        if k == 0 or k == total:
            self.mode = "keep" if k == 0 else "prune"
            self.complete = True
            return
        cumulative = np.cumsum(merged)
        b = int(np.searchsorted(cumulative, k))  # first bin whose cumulative count reaches k
        below = int(cumulative[b - 1]) if b > 0 else 0
        self.bin, self.need = b, k - below
        in_bin = [(name, int(counts[np.searchsorted(bins, b)]))
                  for name, (bins, counts, _) in stats
                  if np.searchsorted(bins, b) < bins.size and bins[np.searchsorted(bins, b)] == b]
        if low_bits == 0:
            # Every key is a multiple of 2^15: each bin holds one magnitude, already exact.
            self._allocate(b << _COARSE_SHIFT, self.need, in_bin)
            return
        self.level = 1
        self.wanted = {name for name, _ in in_bin}

    def _merge_fine(self, stats: Sequence[tuple[str, Any]]) -> None:
        merged = np.zeros(_FINE_BINS, dtype=np.int64)
        for _, (bins, counts) in stats:
            np.add.at(merged, bins, counts)
        cumulative = np.cumsum(merged)
        j = int(np.searchsorted(cumulative, self.need))
        below = int(cumulative[j - 1]) if j > 0 else 0
        equal = []
        for name, (bins, counts) in stats:
            at = np.searchsorted(bins, j)
            if at < bins.size and bins[at] == j:
                equal.append((name, int(counts[at])))
        self._allocate((self.bin << _COARSE_SHIFT) + j, self.need - below, equal)

    def _allocate(self, threshold: int, ties: int, equal: Sequence[tuple[str, int]]) -> None:
        """Splits the ``ties`` entries of magnitude key ``threshold`` to prune
        over the tensors holding that key, first tensors first."""
        self.threshold = threshold
        self.ties = {}
        for name, count in equal:
            take = min(ties, count)
            if take:
                self.ties[name] = take
            ties -= take
        self.complete = True
        self.wanted = None

    def apply(self, name: str, weights: np.ndarray) -> np.ndarray:
        if self.mode == "keep":
            return np.ones(weights.shape, dtype=bool)
        if self.mode == "prune":
            return np.zeros(weights.shape, dtype=bool)
        return _core.magnitude_threshold_mask(weights, self.threshold, self.ties.get(name, 0))


_TWO_PASS: dict[tuple[str, str], Callable[..., TwoPassPlan]] = {}


def register_two_pass(stage: str, method: str, factory: Callable[..., TwoPassPlan]) -> None:
    """Registers the streaming form of the model-scope method ``stage.method``:
    ``factory(**options)`` returns a fresh :class:`TwoPassPlan`."""
    _TWO_PASS[(stage, method)] = factory


def two_pass_plan(stage: str, method: str, options: Mapping[str, Any], where: str) -> TwoPassPlan:
    """A fresh plan for a model-scope stage; ``ValueError`` naming the stage when it has no streaming form."""
    factory = _TWO_PASS.get((stage, method))
    if factory is None:
        raise ValueError(f"{where}: method {method!r} needs every tensor at once and has no streaming form for "
                         "sharded checkpoints (register one with swiftprune.distributed.register_two_pass)")
    return factory(**options)


register_two_pass("prune", "global_magnitude", GlobalMagnitudePlan)
