"""Schedules (TFMOT formulas) and GradualPruner."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import swiftprune as sp


def tfmot_polynomial(step, initial, final, begin, end, power):
    """TFMOT PolynomialDecay.__call__, transcribed."""
    p = min(1.0, max(0.0, (step - begin) / (end - begin)))
    return final + (initial - final) * (1 - p) ** power


def tfmot_should_prune(step, begin, end, frequency):
    in_range = step >= begin and (step <= end or end < 0)
    return in_range and (step - begin) % frequency == 0


def test_polynomial_decay_formula_and_turns():
    schedule = sp.PolynomialDecay(0.1, 0.9, begin_step=100, end_step=1100, power=3, frequency=50)
    for step in range(0, 1500, 7):
        assert schedule.sparsity_at(step) == pytest.approx(tfmot_polynomial(step, 0.1, 0.9, 100, 1100, 3))
        assert schedule.should_prune(step) == tfmot_should_prune(step, 100, 1100, 50)
    assert schedule.sparsity_at(100) == pytest.approx(0.1)
    assert schedule.sparsity_at(1100) == pytest.approx(0.9)
    assert schedule.sparsity_at(600) == pytest.approx(0.9 - 0.8 * 0.5 ** 3)
    assert schedule.should_prune(1100) and not schedule.should_prune(1150) and not schedule.should_prune(50)


def test_polynomial_decay_power_one_is_linear_and_zero_span():
    linear = sp.PolynomialDecay(0.0, 0.5, 0, 10, power=1, frequency=1)
    assert [linear.sparsity_at(s) for s in (0, 5, 10, 20)] == pytest.approx([0.0, 0.25, 0.5, 0.5])
    instant = sp.PolynomialDecay(0.2, 0.6, 5, 5)
    assert instant.sparsity_at(4) == pytest.approx(0.2) and instant.sparsity_at(5) == pytest.approx(0.6)
    assert instant.should_prune(5) and not instant.should_prune(105)


def test_constant_sparsity():
    schedule = sp.ConstantSparsity(0.7, begin_step=10, frequency=5)
    assert schedule.sparsity_at(0) == 0.7 and schedule.sparsity_at(10**6) == 0.7
    assert not schedule.should_prune(5) and schedule.should_prune(10) and not schedule.should_prune(12)
    assert schedule.should_prune(10**6)  # end_step=-1: forever
    bounded = sp.ConstantSparsity(0.5, 0, 20, 10)
    assert [s for s in range(40) if bounded.should_prune(s)] == [0, 10, 20]


def test_config_round_trip():
    for schedule in (sp.ConstantSparsity(0.3, 2, 50, 4), sp.PolynomialDecay(0.0, 0.8, 0, 100, 2, 10)):
        clone = type(schedule).from_config(schedule.get_config())
        assert clone == schedule and repr(clone) == repr(schedule) and hash(clone) == hash(schedule)
    assert sp.ConstantSparsity(0.3) != sp.ConstantSparsity(0.4)


@pytest.mark.parametrize("make, error", [
    (lambda: sp.ConstantSparsity(1.5), ValueError),
    (lambda: sp.ConstantSparsity(-0.1), ValueError),
    (lambda: sp.ConstantSparsity(float("nan")), ValueError),
    (lambda: sp.ConstantSparsity("0.5"), TypeError),
    (lambda: sp.ConstantSparsity(0.5, begin_step=-1), ValueError),
    (lambda: sp.ConstantSparsity(0.5, begin_step=10, end_step=5), ValueError),
    (lambda: sp.ConstantSparsity(0.5, end_step=-2), ValueError),
    (lambda: sp.ConstantSparsity(0.5, frequency=0), ValueError),
    (lambda: sp.ConstantSparsity(0.5, frequency=1.5), TypeError),
    (lambda: sp.PolynomialDecay(0.0, 0.5, 0, -1), ValueError),
    (lambda: sp.PolynomialDecay(0.0, 1.2, 0, 10), ValueError),
    (lambda: sp.PolynomialDecay(0.0, 0.5, 10, 0), ValueError),
    (lambda: sp.PolynomialDecay(0.0, 0.5, 0, 10, power=float("inf")), ValueError),
])
def test_schedule_validation(make, error):
    with pytest.raises(error):
        make()


def test_step_must_be_an_integer():
    with pytest.raises(TypeError):
        sp.ConstantSparsity(0.5).should_prune(1.5)


def fake_training(pruner, weights, steps, rng):
    """Weights drift each step; returns the mask history."""
    history = []
    for step in range(steps):
        masks = pruner.step(step, weights)
        history.append(masks)
        weights = {k: (v + rng.normal(0, 0.5, v.shape)) * masks[k] for k, v in weights.items()}
    return history


@pytest.mark.parametrize("method", ["magnitude", "global_magnitude"])
def test_gradual_pruner_masks_only_grow_and_reach_the_schedule(method):
    rng = np.random.default_rng(0)
    weights = {"a": rng.standard_normal((20, 30)), "b": rng.standard_normal(50).astype(np.float32)}
    schedule = sp.PolynomialDecay(0.1, 0.8, begin_step=0, end_step=40, frequency=10)
    pruner = sp.GradualPruner(weights, schedule, method=method)
    history = fake_training(pruner, weights, 60, rng)
    total = 650
    for before, after in zip(history, history[1:]):
        for key in weights:
            assert not (after[key] & ~before[key]).any(), "a pruned entry came back"
    for step, masks in enumerate(history):
        pruned = {k: int((~m).sum()) for k, m in masks.items()}
        last = max(s for s in range(step + 1) if schedule.should_prune(s))
        target = schedule.sparsity_at(last)
        if method == "magnitude":
            assert pruned == {"a": round(target * 600), "b": round(target * 50)}
        else:
            assert sum(pruned.values()) == round(target * total)
    assert pruner.last_update_step == 40


def test_gradual_pruner_prunes_smallest_among_the_survivors():
    w = np.array([5.0, 1.0, 4.0, 2.0, 3.0, 6.0])
    pruner = sp.GradualPruner([w], sp.ConstantSparsity(0.5, 0, -1, 1))
    np.testing.assert_array_equal(pruner.step(0, [w])[0], [True, False, True, False, False, True])
    # New weights: the previously pruned stay pruned even if large now.
    w2 = np.array([5.0, 100.0, 0.1, 2.0, 3.0, 6.0])
    pruner.schedule = sp.ConstantSparsity(4 / 6, 0, -1, 1)
    np.testing.assert_array_equal(pruner.step(1, [w2])[0], [True, False, False, False, False, True])


def test_gradual_pruner_zero_ties_do_not_resurrect():
    # Kept zeros before a previously pruned entry must not take its place.
    w = np.array([0.0, 0.0, 9.0, 1.0])
    pruner = sp.GradualPruner([w], sp.ConstantSparsity(0.25, 0, -1, 1))
    first = pruner.step(0, [np.array([5.0, 5.0, 9.0, 1.0])])[0]
    np.testing.assert_array_equal(first, [True, True, True, False])
    pruner.schedule = sp.ConstantSparsity(0.5, 0, -1, 1)
    second = pruner.step(1, [np.array([0.0, 0.0, 9.0, 0.0])])[0]
    assert not second[3] and (~second).sum() == 2


def test_gradual_pruner_sequence_container_and_errors():
    w = [np.ones((2, 2)), np.ones(3)]
    pruner = sp.GradualPruner(w, sp.ConstantSparsity(0.5))
    masks = pruner.step(0, w)
    assert isinstance(masks, list) and [m.shape for m in masks] == [(2, 2), (3,)]
    assert pruner.step(1, w)[0].sum() == 2  # not a pruning step: unchanged
    with pytest.raises(ValueError, match="shape"):
        pruner.step(100, [np.ones((3, 2)), np.ones(3)])
    with pytest.raises(ValueError):
        pruner.step(100, [np.ones((2, 2))])
    with pytest.raises(TypeError):
        sp.GradualPruner(w, schedule=0.5)
    with pytest.raises(ValueError):
        sp.GradualPruner(w, sp.ConstantSparsity(0.5), method="random")
    with pytest.raises(ValueError, match="NaN"):
        sp.GradualPruner(w, sp.ConstantSparsity(0.5)).step(0, [np.full((2, 2), np.nan), np.ones(3)])


@pytest.mark.parametrize("method", ["magnitude", "global_magnitude"])
def test_gradual_pruner_finish_warns_when_training_stopped_early(method):
    rng = np.random.default_rng(3)
    weights = {"a": rng.normal(size=(40, 25)), "b": rng.normal(size=(10, 10))}
    schedule = sp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=1000, frequency=50)
    pruner = sp.GradualPruner(weights, schedule, method=method)
    for step in range(749 + 1):
        pruner.step(step, weights)
    reached = 1 - sum(int(m.sum()) for m in pruner.masks.values()) / 1100
    assert reached == pytest.approx(schedule.sparsity_at(700), abs=1e-3) and reached < 0.8
    with pytest.warns(UserWarning, match=r"final sparsity 80\.0% not reached: training stopped at step 749 with "
                                         rf"sparsity {reached:.1%} \(masks last updated at step 700\).*end_step 1000"):
        assert pruner.finish() is False
    for step in range(750, 1001):
        pruner.step(step, weights)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pruner.finish() is True
    masks = pruner.masks
    if method == "magnitude":
        assert all(int((~m).sum()) == round(0.8 * m.size) for m in masks.values())
    else:
        assert sum(int((~m).sum()) for m in masks.values()) == round(0.8 * 1100)


def test_gradual_pruner_finish_names_a_frequency_that_misses_end_step():
    w = np.arange(1.0, 101.0)
    schedule = sp.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=100, power=1, frequency=30)  # prunes at 0, 30, 60, 90
    pruner = sp.GradualPruner([w], schedule)
    for step in range(200):
        pruner.step(step, [w])
    assert int((~pruner.masks[0]).sum()) == round(schedule.sparsity_at(90) * 100) < 50
    with pytest.warns(UserWarning, match="stopped at step 199.*never lands on its end_step 100"):
        pruner.finish()
    with pytest.warns(UserWarning, match="stopped at step 5 "):
        pruner.finish(step=5)


def test_gradual_pruner_finish_before_any_step_and_constant_schedule():
    w = np.arange(1.0, 11.0)
    pruner = sp.GradualPruner({"w": w}, sp.ConstantSparsity(0.3, begin_step=5))
    assert pruner.final_sparsity() == pytest.approx(0.3)
    with pytest.warns(UserWarning, match="before any step.*never updated.*begin_step 5"):
        pruner.finish()
    pruner.step(5, {"w": w})
    assert pruner.sparsity() == pytest.approx(0.3) and pruner.finish() is True
    assert sp.GradualPruner({"w": w}, sp.ConstantSparsity(0.0)).finish() is True
