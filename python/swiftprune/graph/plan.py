"""Which classes to remove: amounts per group or global, round_to, minimum."""
from __future__ import annotations

import fnmatch
import math
import numbers
from typing import Mapping, Union

import numpy as np

from .groups import Dependencies

__all__ = ["select"]


def _fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= float(value) <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def _group_amount(producers, amount) -> float:
    if not isinstance(amount, Mapping):
        return amount
    for pattern, value in amount.items():
        if any(fnmatch.fnmatchcase(p, pattern) for p in producers):
            return value
    return 0.0


def select(deps: Dependencies, scores: np.ndarray, amount: Union[float, Mapping[str, float]], *,
           global_pruning: bool = False, round_to: int = 1, min_channels: int = 1) -> np.ndarray:
    """The classes kept (bool per class).

    In every group, ``round(amount * n)`` of its ``n`` channels are removed,
    the lowest-scored first (ties: the lower class index), frozen ones never;
    the number kept is then rounded up to a multiple of ``round_to`` and is at
    least ``min_channels``. With ``global_pruning``, scores are divided by their
    group's mean and one threshold removes ``round(amount * n_removable)``
    channels over all groups (each group still keeps ``min_channels``).
    ``amount`` may map glob patterns over layer names to amounts (first match;
    groups matching none are not pruned).
    """
    if isinstance(amount, Mapping):
        amount = {str(k): _fraction(f"amount[{k!r}]", v) for k, v in amount.items()}
        if global_pruning:
            raise ValueError("global_pruning takes one amount, not a mapping")
    else:
        amount = _fraction("amount", amount)
    if isinstance(round_to, bool) or not isinstance(round_to, numbers.Integral) or round_to < 1:
        raise ValueError(f"round_to must be a positive integer, got {round_to!r}")
    if isinstance(min_channels, bool) or not isinstance(min_channels, numbers.Integral) or min_channels < 1:
        raise ValueError(f"min_channels must be a positive integer, got {min_channels!r}")
    keep = np.ones(deps.n_classes, dtype=bool)
    removable = [g for g in deps.groups if (~g.frozen).any()]
    targets = {}
    if global_pruning and removable:
        cand = np.concatenate([g.classes[~g.frozen] for g in removable])
        norm = np.concatenate([scores[g.classes[~g.frozen]] / max(scores[g.classes].mean(), 1e-30) for g in removable])
        k = round(amount * cand.size)
        order = np.lexsort((cand, norm))
        chosen = np.zeros(deps.n_classes, dtype=bool)
        chosen[cand[order[:k]]] = True
        for g in removable:
            targets[g.index] = int(chosen[g.classes].sum())
    else:
        for g in removable:
            targets[g.index] = round(_group_amount(g.producers, amount) * g.classes.size)
    for g in removable:
        n = g.classes.size
        kept = n - targets[g.index]
        kept = min(n, max(kept, min_channels, int(g.frozen.sum())))
        if round_to > 1:
            kept = min(n, int(math.ceil(kept / round_to)) * round_to)
        remove = n - kept
        if remove <= 0:
            continue
        free = g.classes[~g.frozen]
        order = np.lexsort((free, scores[free]))
        keep[free[order[:remove]]] = False
    return keep
