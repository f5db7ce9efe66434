"""Joint refinement (``plan(..., refine=)``): on a synthetic model whose
damages compound it finds the brute-force optimum that the additive knapsack
misses; on the digits CNN it never scores below the unrefined plan, every step
it keeps meets the budget on disk, and it reuses evaluations."""
from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

import swiftprune as sp
from swiftprune import _digits_cnn
from swiftprune.knapsack import solve
from swiftprune.refine import pareto_order, refine_jointly

from test_plan import CANDIDATES, DATA

# Four tensors, three options each (bytes, additive damage): keep, 8-bit-like, 4-bit-like.
COSTS = [[40, 20, 10]] * 4
DAMAGES = [[0.0, 1.0, 3.0], [0.0, 1.0, 3.0], [0.0, 1.2, 2.6], [0.0, 1.2, 2.6]]


def compounding_score(choice):
    """Tensors 0 and 1 sit in series: their damages multiply up (a joint effect the
    additive model cannot see); tensors 2 and 3 add up."""
    d = [DAMAGES[g][j] for g, j in enumerate(choice)]
    return -(d[0] + d[1] + d[2] + d[3] + 3.0 * d[0] * d[1])


def test_pareto_order_keeps_the_non_dominated_options_cheapest_first():
    assert pareto_order([10, 20, 40, 20, 5], [3.0, 1.0, 0.0, 2.0, 3.0]) == [4, 1, 2]
    assert pareto_order([1, 1, 2], [1.0, 1.0, 1.0]) == [0]


def test_refine_finds_the_joint_optimum_the_additive_plan_misses():
    budget = 80
    start = solve(COSTS, DAMAGES, budget, 4096)
    fits = [c for c in itertools.product(range(3), repeat=4) if sum(COSTS[g][j] for g, j in enumerate(c)) <= budget]
    best = max(fits, key=compounding_score)
    assert compounding_score(tuple(start)) < compounding_score(best)  # the additive plan is not the joint optimum
    calls = []

    def score(choice):
        calls.append(choice)
        return compounding_score(choice)

    size = lambda c: sum(COSTS[g][j] for g, j in enumerate(c))  # noqa: E731
    result = refine_jointly(start, COSTS, DAMAGES, score=score, written=size, budget=budget, rounds=5,
                            progress=False)
    assert result.score == pytest.approx(compounding_score(best))
    assert size(result.choice) <= budget and result.bytes == size(result.choice)
    assert len(calls) == len(set(calls)) == result.evaluations  # every plan scored once
    scores = [s for _, s in result.history]
    assert all(b >= a for a, b in zip(scores, scores[1:])) and scores[-1] > scores[0]
    assert refine_jointly(start, COSTS, DAMAGES, score=score, written=size, budget=budget, rounds=0,
                          progress=False).choice == tuple(start)
    with pytest.raises(ValueError, match="refine"):
        refine_jointly(start, COSTS, DAMAGES, score=score, written=size, budget=budget, rounds=-1)


@pytest.fixture(scope="module")
def cnn():
    data = np.load(DATA)
    weights = {name: data[f"cnn/{name}"] for name in _digits_cnn.NAMES}
    _, _, x_test, y_test = _digits_cnn.load_split()
    calls = []

    def evaluate(w):
        """Mean log-likelihood of the true digit (continuous, unlike accuracy on 360 images)."""
        calls.append(1)
        z = _digits_cnn.forward([w[n] for n in _digits_cnn.NAMES], x_test).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(log_p[np.arange(len(y_test)), y_test].mean())

    return weights, evaluate, calls


def test_plan_refine_on_the_digits_cnn(cnn, tmp_path):
    weights, evaluate, calls = cnn
    s = sp.sensitivity(weights, CANDIDATES, measure="weight", progress=False)  # a proxy that ignores the data
    original = sum(a.nbytes for a in weights.values())
    improved = 0
    for ratio in (2.5, 3.0):
        del calls[:]
        refined = sp.plan(weights, target_ratio=ratio, sensitivity=s, evaluate=evaluate, refine=3, progress=False)
        start = refined.refinement.history[0][1]  # what plan() without refine returns: solver vs uniform, checked
        assert refined.score >= start
        improved += refined.score > start
        history = refined.refinement.history  # better, or as good in fewer bytes, at every step
        assert all(b[1] > a[1] or (b[1] == a[1] and b[0] < a[0]) for a, b in zip(history, history[1:]))
        assert all(size <= original / ratio for size, _ in refined.refinement.history)
        # no plan scored twice: at most the refinement's distinct plans plus the uniform recipes it is checked against
        assert len(calls) <= refined.refinement.evaluations + len(refined.uniform)
        path = tmp_path / f"refined{ratio}.safetensors"
        written = sp.compress(weights, refined.recipe, progress=False).save(path)
        assert written == os.path.getsize(path) <= original / ratio
        assert evaluate(sp.load_compressed(path).weights) == refined.score
        assert "joint refinement" in refined.summary()
    assert improved >= 1  # the weight-error proxy misranks this model somewhere; measuring jointly fixes it


def test_plan_refine_errors(cnn):
    weights, evaluate, _ = cnn
    s = sp.sensitivity(weights, ["int8", "int4"], measure="weight", progress=False)
    with pytest.raises(ValueError, match="evaluate"):
        sp.plan(weights, target_ratio=4, sensitivity=s, refine=2)
    with pytest.raises(ValueError, match="byte target"):
        sp.plan(weights, max_damage=0.1, sensitivity=s, evaluate=evaluate, refine=2)
    with pytest.raises(ValueError, match="rounds"):
        sp.plan(weights, target_ratio=4, sensitivity=s, evaluate=evaluate, refine=-1)
