"""Joint refinement of a plan, for models whose per-layer damages do not add up.

The knapsack in :mod:`swiftprune.plan` minimizes the *sum* of per-tensor
damages, each measured with every other tensor left intact. On deep models
those damages compound (each layer alone at 4 bits costs nothing, all of them
together a lot), so the sum ranks the choices wrongly. This module measures
in context instead, on the whole compressed model:

1. Start from a plan that fits (``plan`` gives the best-scoring of the
   solver's choice and the uniform recipes) and score it with ``score(choice)``.
2. For every tensor, score its two neighbour moves *with the current plan
   applied to all other tensors*: one step up its Pareto front (more bytes,
   less damage) and one step down. That is the sensitivity re-measured at the
   current plan, for the moves that matter.
3. Build a swap: the upgrades of best measured gain per byte, paid for by
   the downgrades of least measured loss per byte (and any spare bytes),
   while the gain rate beats the loss rate. Score the swapped plan; keep it
   when it scores higher (or as high in fewer bytes), else try the single
   best swap, else stop.

Each round costs about two evaluations per tensor; scores are cached by
choice, so no plan is evaluated twice. A progress bar with a time estimate
runs over each round's evaluations.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from ._progress import progress as _progress

__all__ = ["refine_jointly", "Refinement", "pareto_order"]

Choice = tuple[int, ...]


@dataclass
class Refinement:
    """What :func:`refine_jointly` did.

    Attributes
    ----------
    choice : tuple of int
        The option index per tensor.
    score : float
        Its ``score`` (higher is better).
    bytes : int
        Its size as ``written`` measures it.
    evaluations : int
        How many distinct plans were scored.
    history : list of (int, float)
        ``(bytes, score)`` of the plan after each accepted round (the start first).
    """

    choice: Choice
    score: float
    bytes: int
    evaluations: int
    history: list[tuple[int, float]] = field(default_factory=list)


def pareto_order(costs: Sequence[float], damages: Sequence[float]) -> list[int]:
    """Indices of the non-dominated options, cheapest first (each one strictly
    less damaging than the cheaper ones; ties to the cheaper, then the first)."""
    order = sorted(range(len(costs)), key=lambda j: (costs[j], damages[j], j))
    front: list[int] = []
    for j in order:
        if not front or damages[j] < damages[front[-1]]:
            if front and costs[j] == costs[front[-1]]:
                continue
            front.append(j)
    return front


def _neighbours(current: int, costs: Sequence[float], front: Sequence[int]) -> tuple[Optional[int], Optional[int]]:
    """The next option up and down the tensor's front from ``current`` (which
    may lie off the front: its nearest front options by cost)."""
    cost = costs[current]
    up = next((j for j in front if costs[j] > cost), None)
    down = next((j for j in reversed(front) if costs[j] < cost), None)
    return up, down


def refine_jointly(choice: Sequence[int], costs: Sequence[Sequence[float]], damages: Sequence[Sequence[float]], *,
                   score: Callable[[Choice], float], written: Callable[[Choice], int], budget: float,
                   rounds: int, progress: bool = True, start_score: Optional[float] = None,
                   start_bytes: Optional[int] = None) -> Refinement:
    """Improves ``choice`` by swaps measured on the whole model (see the module docstring).

    Parameters
    ----------
    choice : sequence of int
        The starting option per tensor (it must fit the budget).
    costs, damages : sequences of sequences of float
        Per tensor, every option's stored bytes and its measured (additive)
        damage; the damages only order each tensor's options into its front.
    score : callable
        ``score(choice) -> float`` of the whole model compressed by ``choice``
        (higher is better).
    written : callable
        ``written(choice) -> int``, the size of the file ``choice`` writes.
    budget : float
        The byte budget every accepted plan meets (as ``written`` measures).
    rounds : int
        At most this many rounds (each about two evaluations per tensor).
    progress : bool
        A progress bar (with a time estimate) over each round's evaluations.
    start_score, start_bytes : optional
        ``score(choice)`` / ``written(choice)`` when already known.

    Returns
    -------
    Refinement
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"refine must be a number of rounds >= 0, got {rounds!r}")
    cache: dict[Choice, float] = {}

    def measured(c: Choice) -> float:
        if c not in cache:
            cache[c] = float(score(c))
        return cache[c]

    current: Choice = tuple(int(j) for j in choice)
    if start_score is not None:
        cache[current] = float(start_score)
    current_score = measured(current)
    current_bytes = int(written(current)) if start_bytes is None else int(start_bytes)
    history = [(current_bytes, current_score)]
    fronts = [pareto_order(c, d) for c, d in zip(costs, damages)]
    for round_index in range(rounds):
        moves = []  # (tensor, option, byte change)
        for g, (c, front) in enumerate(zip(costs, fronts)):
            up, down = _neighbours(current[g], c, front)
            for j in (up, down):
                if j is not None:
                    moves.append((g, j, c[j] - c[current[g]]))
        changes = []  # (tensor, option, byte change, score change)
        for g, j, delta in _progress(moves, total=len(moves), description=f"joint refinement {round_index + 1}",
                                     enabled=progress):
            trial = current[:g] + (j,) + current[g + 1:]
            changes.append((g, j, delta, measured(trial) - current_score))
        swaps = _swaps(changes, budget - current_bytes)
        accepted = False
        for attempt in (swaps, swaps[:1]):  # every predicted-good swap at once, else the best one alone
            trial = list(current)
            for group in attempt:
                for g, j in group:
                    trial[g] = j
            candidate = tuple(trial)
            if candidate == current:
                continue
            size = int(written(candidate))
            if size > budget:
                continue
            value = measured(candidate)
            # better, or as good in fewer bytes (spare bytes the next round can spend)
            if value > current_score or (value == current_score and size < current_bytes):
                current, current_score, current_bytes = candidate, value, size
                history.append((current_bytes, current_score))
                accepted = True
                break
        if not accepted:
            break
    return Refinement(current, current_score, current_bytes, len(cache), history)


def _swaps(changes: Sequence[tuple[int, int, float, float]], slack: float) -> list[list[tuple[int, int]]]:
    """Swaps predicted to raise the score, best first: each an upgrade (by measured gain
    per byte) with the downgrades (least measured loss per byte first) that pay for the
    bytes spare ``slack`` does not cover, taken while its gain beats their loss. Downgrades
    that do not lower the score at all come last, as swaps of their own."""
    ups = sorted((c for c in changes if c[2] > 0 and c[3] > 0), key=lambda c: -c[3] / c[2])
    downs = sorted((c for c in changes if c[2] < 0), key=lambda c: max(-c[3], 0.0) / -c[2])
    used: set[int] = set()
    swaps: list[list[tuple[int, int]]] = []
    free, next_down = float(slack), 0
    for g, j, extra, gain in ups:
        if g in used:
            continue
        paid: list[tuple[int, int]] = []
        saved = loss = 0.0
        while free + saved < extra and next_down < len(downs):
            dg, dj, delta, change = downs[next_down]
            next_down += 1
            if dg in used or dg == g:
                continue
            paid.append((dg, dj))
            saved -= delta
            loss += max(-change, 0.0)
        if free + saved < extra or gain <= loss:
            break
        swaps.append([(g, j)] + paid)
        used.update(x for x, _ in swaps[-1])
        free += saved - extra
    for dg, dj, _, change in downs[next_down:]:
        if change >= 0 and dg not in used:
            swaps.append([(dg, dj)])
            used.add(dg)
    return swaps
