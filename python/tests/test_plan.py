"""sensitivity() and plan(): damages against NumPy formulas, budgets measured on
disk, and plans against every uniform recipe on the digits CNN and MLP."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import swiftprune as sp
from swiftprune import _demo, _digits_cnn
from swiftprune.candidates import parse_candidate

DATA = Path(__file__).parent / "data" / "digits_planner_models.npz"
CANDIDATES = ["float16", "int8", "int4", "int3", "int4:g32", "pal16", "pal8", "pal4", "2:4+int8", "lowrank0.5"]


@pytest.fixture(scope="module")
def cnn():
    """The digits CNN of swiftprune._digits_cnn (weights stored by its seeded trainer) and an evaluator."""
    data = np.load(DATA)
    weights = {name: data[f"cnn/{name}"] for name in _digits_cnn.NAMES}
    x_train, _, x_test, y_test = _digits_cnn.load_split()

    def evaluate(w):
        return _digits_cnn.accuracy([w[n] for n in _digits_cnn.NAMES], x_test, y_test)

    return weights, evaluate, _digits_cnn.layer_inputs(list(weights.values()), x_train[:200])


@pytest.fixture(scope="module")
def mlp():
    """The `swiftprune demo` MLP (a Keras get_weights() list) and an evaluator."""
    data = np.load(DATA)
    weights = [data[f"mlp/{i}"] for i in range(4)]
    _, _, x_test, y_test = _demo.load_digits_split()
    return weights, lambda w: _demo.accuracy(w, x_test, y_test)


def test_weight_and_output_and_hessian_damages_match_numpy(cnn):
    weights, _, inputs = cnn
    cands = ["int4", "pal8", "int4:g32"]
    by_measure = {m: sp.sensitivity(weights, cands, measure=m, calibration=inputs, progress=False)
                  for m in ("weight", "hessian", "output")}
    for name in ("conv.kernel", "pointwise.kernel", "dense.kernel", "depthwise.kernel"):
        w = weights[name].astype(np.float64)
        for option in by_measure["weight"].options[name]:
            if not option.stages:
                assert option.damage == 0 and option.bytes == weights[name].nbytes
                continue
            result = sp.compress({name: weights[name]}, [dict(s, include=name) for s in option.stages], progress=False)
            form = result.tensors[name]
            assert option.bytes == form.nbytes == result.report[0]["bytes_after"]
            diff = result.weights[name].astype(np.float64) - w
            assert option.damage == pytest.approx((diff ** 2).sum() / (w ** 2).sum(), rel=1e-6)
            x = inputs[name].astype(np.float64)
            if name == "depthwise.kernel":  # each channel sees its own input channel: h per channel
                h = (x ** 2).sum(0)[None, None, :, None]
                hessian = (h * diff ** 2).sum() / (h * w ** 2).sum()
            else:
                w2, d2 = w.reshape(-1, w.shape[-1]), diff.reshape(-1, w.shape[-1])
                h = (x ** 2).sum(0)[:, None]
                hessian = (h * d2 ** 2).sum() / (h * w2 ** 2).sum()
                output = ((x @ d2) ** 2).sum() / ((x @ w2) ** 2).sum()
                match = [o for o in by_measure["output"].options[name] if o.candidate == option.candidate][0]
                assert match.damage == pytest.approx(output, rel=1e-4)
            match = [o for o in by_measure["hessian"].options[name] if o.candidate == option.candidate][0]
            assert match.damage == pytest.approx(hessian, rel=1e-6)


def test_evaluate_damage_is_the_score_drop_of_one_tensor(cnn):
    weights, evaluate, _ = cnn
    calls = []

    def counting(w):
        calls.append(1)
        return evaluate(w)

    s = sp.sensitivity(weights, ["int3", "pal4"], evaluate=counting, include=["pointwise.kernel"], progress=False)
    assert s.base_score == evaluate(weights)
    assert len(calls) == 1 + 2  # the original, then each candidate once (float32 needs no call)
    for option in s.options["pointwise.kernel"][1:]:
        trial = dict(weights)
        trial["pointwise.kernel"] = sp.compress({"p": weights["pointwise.kernel"]},
                                                [dict(st, include="p") for st in option.stages],
                                                progress=False).weights["p"]
        assert option.damage == pytest.approx(s.base_score - evaluate(trial))


def test_no_candidate_grows_a_tensor_and_biases_are_not_planned(cnn):
    weights, _, _ = cnn
    s = sp.sensitivity(weights, ["lowrank0.9", "lowrank0.5", "int8", "pal256:tensor", "2:4+int8"], progress=False)
    assert set(s.options) == {"conv.kernel", "depthwise.kernel", "pointwise.kernel", "dense.kernel"}
    assert set(s.fixed_bytes) == {"conv.bias", "depthwise.bias", "pointwise.bias", "dense.bias"}
    for name, options in s.options.items():
        for option in options:
            assert option.bytes < weights[name].nbytes or not option.stages
    assert parse_candidate("lowrank0.9").stages_for((2, 2), "keras") is None  # rank 1 stores 4 of 4 values: not smaller
    assert parse_candidate("lowrank0.5").stages_for((2, 2), "keras") is None


def test_plan_recipe_meets_the_budget_on_disk_and_loads_back(cnn, tmp_path):
    weights, evaluate, inputs = cnn
    s = sp.sensitivity(weights, CANDIDATES, calibration=inputs, progress=False)
    original = sum(a.nbytes for a in weights.values())
    overhead = sp.plan.compressed_file_overhead({n: a.ndim for n, a in weights.items()})
    for fraction in (0.12, 0.2, 0.35):
        target = overhead + int(original * fraction)
        p = sp.plan(weights, target_bytes=target, sensitivity=s)
        assert p.bytes <= target
        path = tmp_path / f"plan{fraction}.safetensors"
        result = sp.compress(weights, p.recipe, progress=False)
        result.save(path)
        assert os.path.getsize(path) <= target
        assert os.path.getsize(path) == p.bytes or os.path.getsize(path) < p.bytes  # the plan never under-counts
        assert result.report.totals["bytes_after"] == p.bytes - p.overhead
        streamed = tmp_path / f"streamed{fraction}.safetensors"
        sp.save_weights(tmp_path / "model.safetensors", weights)
        sp.compress_file(tmp_path / "model.safetensors", streamed, p.recipe, progress=False)
        assert os.path.getsize(streamed) <= target
        back = sp.load_compressed(path)
        assert evaluate(back.weights) == evaluate(result.weights)
        assert {r["name"]: r["stages"] for r in result.report if r["stages"] != "-"}.keys() <= set(p.choice)


def uniform_recipes(weights, spellings, layout="keras"):
    """Each candidate applied to every tensor it applies to (the others kept)."""
    names = weights if isinstance(weights, dict) else {str(i): w for i, w in enumerate(weights)}
    out = {}
    for spelling in spellings:
        cand = parse_candidate(spelling)
        recipe = []
        for name, w in names.items():
            if w.ndim >= 2:
                for stage in cand.stages_for(w.shape, layout) or []:
                    recipe.append(dict(stage, include=name))
        if recipe:
            out[spelling] = recipe
    return out


@pytest.mark.parametrize("model", ["cnn", "mlp"])
def test_plan_never_loses_to_a_uniform_recipe_of_its_size(model, cnn, mlp, tmp_path):
    weights, evaluate = (cnn[0], cnn[1]) if model == "cnn" else mlp
    s = sp.sensitivity(weights, CANDIDATES, evaluate=evaluate, progress=False)
    wins = 0
    # the uniform recipes a user tries first (all of CANDIDATES: tens of seconds more)
    for label, recipe in uniform_recipes(weights, ["int8", "int4", "int3", "pal8", "pal4", "2:4+int8"]).items():
        uniform = sp.compress(weights, recipe, progress=False)
        uniform.save(tmp_path / "uniform.safetensors")
        size = os.path.getsize(tmp_path / "uniform.safetensors")
        uniform_score = evaluate(sp.load_compressed(tmp_path / "uniform.safetensors").weights)
        p = sp.plan(weights, target_bytes=size, sensitivity=s, evaluate=evaluate)
        sp.compress(weights, p.recipe, progress=False).save(tmp_path / "plan.safetensors")
        assert os.path.getsize(tmp_path / "plan.safetensors") <= size, label
        planned_score = evaluate(sp.load_compressed(tmp_path / "plan.safetensors").weights)
        assert planned_score >= uniform_score, (label, p.methods)
        wins += planned_score > uniform_score
    assert wins >= 2  # strictly better somewhere, not only equal


def test_damage_budget_gives_the_smallest_plan_within_it(cnn):
    weights, _, inputs = cnn
    s = sp.sensitivity(weights, CANDIDATES, calibration=inputs, progress=False)
    loose = sp.plan(weights, max_damage=0.05, sensitivity=s)
    tight = sp.plan(weights, max_damage=0.001, sensitivity=s)
    assert loose.damage <= 0.05 and tight.damage <= 0.001
    assert loose.bytes < tight.bytes
    # nothing on the front within the damage budget is smaller
    assert all(b >= loose.bytes for b, d in loose.front if d <= 0.05)


def test_plan_summary_plot_and_errors(mlp):
    import matplotlib

    matplotlib.use("Agg")
    weights, _ = mlp
    p = sp.plan(weights, target_ratio=3, candidates=["int8", "int4", "pal16"], progress=False)
    assert isinstance(p, sp.Plan) and set(p.methods) == {"0", "2"}
    text = p.summary()
    assert "planned file" in text and "budget" in text and p.methods["0"] in text
    assert p.plot() is not None
    assert p.ratio >= 3
    with pytest.raises(ValueError, match="exactly one of"):
        sp.plan(weights, candidates=["int8"])
    with pytest.raises(ValueError, match="exactly one of"):
        sp.plan(weights, target_ratio=2, target_bytes=10, candidates=["int8"])
    with pytest.raises(ValueError, match="target_ratio must be a positive"):
        sp.plan(weights, target_ratio=-1, candidates=["int8"])
    with pytest.raises(ValueError, match="smallest plan takes"):
        sp.plan(weights, target_ratio=40, candidates=["int8"], progress=False)
    with pytest.raises(ValueError, match="unknown candidate"):
        sp.plan(weights, target_ratio=2, candidates=["int9"])
    with pytest.raises(ValueError, match="needs calibration"):
        sp.sensitivity(weights, ["int8"], measure="hessian")
    with pytest.raises(ValueError, match="unknown tensor"):
        sp.sensitivity(weights, ["int8"], calibration={"nope": np.ones((2, 2))})
    with pytest.raises(ValueError, match="features"):
        sp.sensitivity(weights, ["int8"], calibration={"0": np.ones((5, 3), np.float32)}, progress=False)


def test_nan_weights_are_an_error_naming_the_tensor():
    with pytest.raises(ValueError, match="'bad' contains NaN"):
        sp.sensitivity({"ok": np.ones((4, 4), np.float32), "bad": np.full((4, 4), np.nan, np.float32)}, ["int8"],
                       progress=False)
