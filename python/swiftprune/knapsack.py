"""Multiple-choice knapsack: one option per group, total cost within a budget,
least total damage.

Two solvers, combined by :func:`solve`:

* Lagrangian relaxation: for a price ``λ`` every group independently takes
  the option of least ``damage + λ·cost``; bisection on ``λ`` finds the
  cheapest price whose choice fits. Its solutions are the vertices of the
  lower convex hull of the (cost, damage) front, optimal for their own cost.
* Dynamic programming on costs rounded *up* to ``resolution`` units of the
  budget: exact when the costs are integers no larger than the resolution,
  otherwise within one unit per group of the optimum and always feasible
  (rounding up never lets an infeasible choice through). It closes the gap
  the relaxation leaves between hull vertices.

Both are vectorized NumPy over the budget axis (the group loop is short:
one step per tensor).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

__all__ = ["solve", "lagrangian", "dynamic_programming", "pareto_front"]

Choice = list[int]


def _arrays(costs: Sequence[Sequence[float]], damages: Sequence[Sequence[float]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if len(costs) != len(damages):
        raise ValueError(f"costs and damages need one entry per group, got {len(costs)} and {len(damages)}")
    c = [np.asarray(x, dtype=np.float64) for x in costs]
    d = [np.asarray(x, dtype=np.float64) for x in damages]
    for i, (ci, di) in enumerate(zip(c, d)):
        if ci.ndim != 1 or ci.shape != di.shape or ci.size == 0:
            raise ValueError(f"group {i}: costs and damages must be non-empty 1-D arrays of one length")
        if not (np.all(np.isfinite(ci)) and np.all(ci >= 0)):
            raise ValueError(f"group {i}: costs must be finite and >= 0")
        if np.any(np.isnan(di)):
            raise ValueError(f"group {i}: damages must not be NaN")
    return c, d


def _totals(choice: Choice, c: list[np.ndarray], d: list[np.ndarray]) -> tuple[float, float]:
    return (float(sum(ci[j] for ci, j in zip(c, choice))), float(sum(di[j] for di, j in zip(d, choice))))


def _pick(price: float, c: list[np.ndarray], d: list[np.ndarray]) -> Choice:
    # least damage + price * cost; ties to the cheaper option, then the first
    out = []
    for ci, di in zip(c, d):
        score = di + price * ci
        best = np.flatnonzero(score == score.min())
        out.append(int(best[np.argmin(ci[best])]))
    return out


def lagrangian(costs: Sequence[Sequence[float]], damages: Sequence[Sequence[float]], budget: float,
               iterations: int = 100) -> Optional[Choice]:
    """The Lagrangian choice: the least-damage hull vertex whose cost fits
    ``budget`` (``None`` when even the cheapest options do not fit)."""
    c, d = _arrays(costs, damages)
    cheapest = [int(np.lexsort((di, ci))[0]) for ci, di in zip(c, d)]
    if _totals(cheapest, c, d)[0] > budget:
        return None
    free = _pick(0.0, c, d)
    if _totals(free, c, d)[0] <= budget:
        return free
    spread = max(float(np.ptp(di[np.isfinite(di)])) if np.isfinite(di).any() else 0.0 for di in d)
    low, high = 0.0, 1.0
    while _totals(_pick(high, c, d), c, d)[0] > budget and high < 1e300:
        high *= 4.0 if spread == 0 else 16.0
    if _totals(_pick(high, c, d), c, d)[0] > budget:
        return cheapest
    for _ in range(iterations):
        middle = 0.5 * (low + high)
        if _totals(_pick(middle, c, d), c, d)[0] <= budget:
            high = middle
        else:
            low = middle
        if high - low <= 1e-12 * high:
            break
    return _pick(high, c, d)


def dynamic_programming(costs: Sequence[Sequence[float]], damages: Sequence[Sequence[float]], budget: float,
                        resolution: int = 4096) -> Optional[Choice]:
    """The least-damage choice with costs rounded up to units of
    ``budget / resolution`` (unit 1 when ``budget <= resolution``: exact for
    integer costs). ``None`` when nothing fits."""
    c, d = _arrays(costs, damages)
    if budget < 0:
        return None
    unit = max(1.0, budget / resolution)
    slots = int(math.floor(budget / unit + 1e-9)) + 1
    inf = math.inf
    best = np.full(slots, inf)
    best[0] = 0.0
    choices = np.zeros((len(c), slots), dtype=np.int32)
    for g, (ci, di) in enumerate(zip(c, d)):
        units = np.ceil(ci / unit - 1e-9).astype(np.int64)
        nxt = np.full(slots, inf)
        pick = np.zeros(slots, dtype=np.int32)
        for j in np.argsort(di, kind="stable"):
            u = int(units[j])
            if u >= slots:
                continue
            candidate = np.full(slots, inf)
            candidate[u:] = best[:slots - u] + di[j]
            better = candidate < nxt
            nxt[better] = candidate[better]
            pick[better] = j
        best = nxt
        choices[g] = pick
    if not np.isfinite(best).any():
        return None
    slot = int(np.argmin(best))
    choice = [0] * len(c)
    for g in range(len(c) - 1, -1, -1):
        j = int(choices[g, slot])
        choice[g] = j
        slot -= int(np.ceil(c[g][j] / unit - 1e-9))
    return choice


def solve(costs: Sequence[Sequence[float]], damages: Sequence[Sequence[float]], budget: float,
          resolution: int = 4096, extra: Sequence[Choice] = ()) -> Optional[Choice]:
    """The least-damage choice within ``budget`` among the Lagrangian one, the
    dynamic-programming one and any ``extra`` choices given (e.g. uniform
    assignments); then every group whose option can be improved within the
    budget left is (greedy refinement). ``None`` when nothing fits."""
    c, d = _arrays(costs, damages)
    found = [x for x in (lagrangian(costs, damages, budget), dynamic_programming(costs, damages, budget, resolution))
             if x is not None]
    found += [list(x) for x in extra if _totals(list(x), c, d)[0] <= budget]
    if not found:
        return None
    best = min(found, key=lambda x: (_totals(x, c, d)[1], _totals(x, c, d)[0]))
    return _refine(best, c, d, budget)


def _refine(choice: Choice, c: list[np.ndarray], d: list[np.ndarray], budget: float) -> Choice:
    """Spends leftover budget: repeatedly applies the single-group change that
    lowers the damage most and still fits."""
    choice = list(choice)
    cost, _ = _totals(choice, c, d)
    while True:
        best_gain, best_move = 0.0, None
        for g, (ci, di) in enumerate(zip(c, d)):
            j = choice[g]
            fits = ci - ci[j] <= budget - cost
            gain = np.where(fits, di[j] - di, -np.inf)
            k = int(np.argmax(gain))
            if gain[k] > best_gain:
                best_gain, best_move = float(gain[k]), (g, k)
        if best_move is None:
            return choice
        g, k = best_move
        cost += float(c[g][k] - c[g][choice[g]])
        choice[g] = k


def pareto_front(costs: Sequence[Sequence[float]], damages: Sequence[Sequence[float]], points: int = 40,
                 resolution: int = 2048) -> list[tuple[float, float, Choice]]:
    """Non-dominated ``(cost, damage, choice)`` triples from the cheapest to
    the least-damage choice: the Lagrangian hull vertices plus solutions at
    ``points`` budgets spread between, ascending in cost."""
    c, d = _arrays(costs, damages)
    lowest = _totals([int(np.argmin(ci)) for ci in c], c, d)[0]
    highest = _totals(_pick(0.0, c, d), c, d)[0]
    found = []
    for budget in np.linspace(lowest, max(highest, lowest), points):
        choice = solve(costs, damages, float(budget), resolution)
        if choice is not None:
            found.append(choice)
    triples = sorted({tuple(x): _totals(x, c, d) for x in found}.items(), key=lambda t: (t[1][0], t[1][1]))
    front: list[tuple[float, float, Choice]] = []
    for choice, (cost, damage) in triples:
        if not front or damage < front[-1][1]:
            front.append((cost, damage, list(choice)))
    return front
