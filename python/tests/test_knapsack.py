"""The multiple-choice knapsack solver against brute force on small instances."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from swiftprune.knapsack import dynamic_programming, lagrangian, pareto_front, solve


def brute_force(costs, damages, budget):
    """The least total damage of any choice within budget (None if none fits)."""
    best = None
    for choice in itertools.product(*[range(len(c)) for c in costs]):
        cost = sum(costs[g][j] for g, j in enumerate(choice))
        if cost <= budget:
            damage = sum(damages[g][j] for g, j in enumerate(choice))
            if best is None or damage < best - 1e-12:
                best = damage
    return best


def instance(seed, groups=5, options=4, integer=True):
    rng = np.random.default_rng(seed)
    costs, damages = [], []
    for _ in range(groups):
        n = int(rng.integers(1, options + 1))
        c = rng.integers(1, 60, n) if integer else rng.uniform(1, 60, n)
        costs.append([float(x) for x in c])
        damages.append([float(x) for x in rng.exponential(1.0, n)])
    return costs, damages


def totals(choice, costs, damages):
    return (sum(costs[g][j] for g, j in enumerate(choice)), sum(damages[g][j] for g, j in enumerate(choice)))


@pytest.mark.parametrize("seed", range(25))
def test_exact_on_integer_costs(seed):
    costs, damages = instance(seed)
    for budget in (0, 20, 60, 100, 150, 400):
        best = brute_force(costs, damages, budget)
        choice = solve(costs, damages, budget)
        if best is None:
            assert choice is None
            continue
        cost, damage = totals(choice, costs, damages)
        assert cost <= budget
        assert damage == pytest.approx(best, rel=1e-9, abs=1e-12)
        dp = dynamic_programming(costs, damages, budget)
        assert totals(dp, costs, damages)[1] == pytest.approx(best, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", range(12))
def test_real_costs_are_feasible_and_near_optimal(seed):
    costs, damages = instance(100 + seed, groups=6, integer=False)
    for budget in (80.0, 150.0, 220.0):
        best = brute_force(costs, damages, budget)
        choice = solve(costs, damages, budget, resolution=64)  # coarse on purpose
        if best is None:
            assert choice is None
            continue
        cost, damage = totals(choice, costs, damages)
        assert cost <= budget + 1e-9
        assert damage <= best + 0.5  # rounding up costs by < 1 unit per group only


@pytest.mark.parametrize("seed", range(10))
def test_lagrangian_is_optimal_for_its_own_cost(seed):
    costs, damages = instance(200 + seed)
    for budget in (60, 120, 200):
        choice = lagrangian(costs, damages, budget)
        if choice is None:
            assert brute_force(costs, damages, budget) is None
            continue
        cost, damage = totals(choice, costs, damages)
        assert cost <= budget
        assert damage == pytest.approx(brute_force(costs, damages, cost), abs=1e-9)


def test_pareto_front_is_non_dominated_and_matches_brute_force_points():
    costs, damages = instance(7, groups=4)
    front = pareto_front(costs, damages, points=60)
    assert all(a[0] < b[0] and a[1] > b[1] for a, b in zip(front, front[1:]))
    for cost, damage, choice in front:
        assert totals(choice, costs, damages) == pytest.approx((cost, damage))
        assert damage == pytest.approx(brute_force(costs, damages, cost))


def test_bad_inputs():
    with pytest.raises(ValueError, match="one entry per group"):
        solve([[1.0]], [[1.0], [2.0]], 3)
    with pytest.raises(ValueError, match="costs must be finite"):
        solve([[-1.0]], [[1.0]], 3)
    with pytest.raises(ValueError, match="non-empty"):
        solve([[]], [[]], 3)
    assert solve([[5.0]], [[0.0]], 4) is None
