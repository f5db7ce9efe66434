"""swiftprune.calibration: HessianAccumulator, array sources, calibrated recipe
methods (gptq / sparsegpt / wanda) through compress() and the CLI, and bad input."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import swiftprune as sp
from swiftprune.calibration import CalibrationWarning, HessianAccumulator, from_arrays, load_calibration
from _reference_calibration import output_error, reference_gptq_hessian
from _reference_pruning import sparsegpt as reference_sparsegpt
from _reference_pruning import wanda as reference_wanda

RNG = np.random.default_rng(12)


def layer(rows, cols, samples, seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    mix = rng.standard_normal((cols, cols)) / np.sqrt(cols)
    scale = np.exp(spread * rng.standard_normal(cols))  # uneven input energy, as real activations
    x = ((rng.standard_normal((samples, cols)) @ mix + 0.1 * rng.standard_normal((samples, cols))) * scale)
    return w, x.astype(np.float32)


# --------------------------------------------------------------------------- #
# HessianAccumulator
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_accumulator_matches_numpy_over_batches(dtype):
    x = RNG.standard_normal((5000, 40)).astype(dtype)  # > one 4096-sample syrk chunk
    acc = HessianAccumulator(40, name="fc")
    for batch in np.array_split(x, 3):
        acc.update(batch.reshape(-1, 2, 40) if batch.shape[0] % 2 == 0 else batch)
    expected = x.astype(np.float64).T @ x.astype(np.float64)
    assert acc.count_ == 5000
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(acc.hessian_, expected, rtol=0, atol=tolerance * np.abs(expected).max())
    np.testing.assert_allclose(acc.column_norms_, np.linalg.norm(x.astype(np.float64), axis=0), rtol=1e-5)
    other = HessianAccumulator(40).update(x[:10])
    acc.merge(other)
    assert acc.count_ == 5010


def test_accumulator_bad_input_names_the_layer():
    acc = HessianAccumulator(8, name="blocks.0.fc1")
    bad = np.ones((4, 8), np.float32)
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match=r"blocks\.0\.fc1.*NaN"):
        acc.update(bad)
    with pytest.raises(ValueError, match=r"blocks\.0\.fc1.*\(4, 7\).*8 input features"):
        acc.update(np.ones((4, 7), np.float32))
    with pytest.raises(TypeError, match="blocks.0.fc1"):
        acc.update(np.ones((4, 8), np.int32))
    assert acc.count_ == 0 and not acc.hessian_.any()  # a failed batch adds nothing
    with pytest.raises(ValueError, match="no calibration samples"):
        sp.gptq(np.ones((2, 8), np.float32), acc, 4, None)


def test_too_few_samples_warns():
    w, x = layer(8, 64, 20)
    with pytest.warns(CalibrationWarning, match="rank-deficient"):
        sp.gptq(w, HessianAccumulator(64, name="small").update(x), 4, 32)


# --------------------------------------------------------------------------- #
# The per-layer algorithms from accumulated statistics
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("act_order,static_groups,mse", [
    (False, False, False), (True, False, False), (False, True, False), (False, False, True), (True, False, True)])
@pytest.mark.parametrize("symmetric,group", [(True, 32), (False, 32), (True, None)])
def test_gptq_options_match_float64_reference(act_order, static_groups, mse, symmetric, group):
    w, x = layer(16, 128, 600, seed=3)
    acc = HessianAccumulator(128).update(x)
    q = sp.gptq(w, acc, 4, group, symmetric=symmetric, act_order=act_order, static_groups=static_groups, mse=mse)
    values, scales, zeros = reference_gptq_hessian(w, acc.hessian_, 4, group, 0.01, symmetric, act_order,
                                                   static_groups, 100 if mse else 0)
    diff = np.abs(q.values.astype(np.int64) - values)
    # float32 (the paper's precision), lazy batching and the blocked inverse change the order of sums:
    # rare +-1 flips only, and scales equal to float32 rounding.
    assert diff.max() <= 1 and np.mean(diff != 0) < 0.01
    assert np.mean(np.abs(q.scale - scales) > 1e-5 * np.abs(scales)) < 0.02


def test_act_order_and_mse_lower_the_output_error():
    w, x = layer(32, 256, 1024, seed=5, spread=1.5)
    acc = HessianAccumulator(256).update(x)
    rtn = output_error(w, sp.quantize(w, 4, axis=0, group_size=32).dequantize(), x)
    plain = output_error(w, sp.gptq(w, acc, 4, 32).dequantize(), x)
    ordered = output_error(w, sp.gptq(w, acc, 4, 32, act_order=True).dequantize(), x)
    searched = output_error(w, sp.gptq(w, acc, 4, 32, act_order=True, mse=True).dequantize(), x)
    assert plain < 0.8 * rtn
    assert ordered < plain
    assert searched < 1.05 * ordered


def test_sparsegpt_and_wanda_from_accumulator_match_references():
    w, x = layer(24, 96, 400, seed=7)
    acc = HessianAccumulator(96).update(x.astype(np.float64))
    np.testing.assert_allclose(sp.sparsegpt(w.astype(np.float64), acc, 0.5), reference_sparsegpt(w, x, 0.5),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(sp.sparsegpt(w.astype(np.float64), acc, nm=(2, 4)),
                               reference_sparsegpt(w, x, 0.5, nm_pattern=(2, 4)), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(sp.wanda_mask(w, acc, 0.5), reference_wanda(w, x, 0.5))


# --------------------------------------------------------------------------- #
# Recipes, compress(), layouts
# --------------------------------------------------------------------------- #


def test_compress_gptq_equals_per_layer_calls_in_both_layouts():
    w, x = layer(16, 64, 300, seed=1)
    weights = {"fc.weight": w, "fc.bias": np.zeros(16, np.float32), "dense/kernel": w.T.copy()}
    calibration = from_arrays({"fc": x})
    calibration._layers["dense"] = HessianAccumulator(64, name="dense", layout="keras").update(x)
    recipe = [{"quantize": {"method": "gptq", "bits": 4, "group_size": 16, "act_order": True}}]
    result = sp.compress(weights, recipe, progress=False, calibration=calibration)
    direct = sp.gptq(w, x, 4, 16, act_order=True)
    torch_q, keras_q = result.tensors["fc.weight"], result.tensors["dense/kernel"]
    np.testing.assert_array_equal(torch_q.values, direct.values)
    assert (torch_q.axis, keras_q.axis) == (0, 1)
    np.testing.assert_array_equal(keras_q.values, direct.values.T)
    np.testing.assert_array_equal(result.weights["dense/kernel"], direct.dequantize().T)
    assert result.tensors["fc.bias"] is weights["fc.bias"] or np.array_equal(result.tensors["fc.bias"], 0)
    assert [r["stages"] for r in result.report] == ["quantize.gptq", "-", "quantize.gptq"]


def test_compress_sparsegpt_then_quantize_keeps_zeros_and_saves(tmp_path):
    w, x = layer(16, 64, 300, seed=2)
    recipe = [{"prune": {"method": "sparsegpt", "n": 2, "m": 4}}, {"quantize": {"bits": 8, "axis": 0}}]
    result = sp.compress({"fc.weight": w}, recipe, progress=False, calibration={"fc": x})
    dense = result.weights["fc.weight"]
    assert (np.count_nonzero(dense.reshape(16, 16, 4), axis=2) <= 2).all()
    pruned = sp.sparsegpt(w, x, nm=(2, 4))
    assert np.array_equal(dense != 0, pruned != 0)
    assert output_error(w, dense, x) < 0.7 * output_error(w, w * sp.nm_mask(w, 2, 4), x)
    result.save(tmp_path / "c.safetensors")
    np.testing.assert_array_equal(sp.load_compressed(tmp_path / "c.safetensors").weights["fc.weight"], dense)


def test_compress_wanda_conv_kernel_through_im2col_view():
    kernel = RNG.standard_normal((3, 3, 4, 8)).astype(np.float32)  # keras (kh, kw, in, out)
    patches = RNG.standard_normal((500, 36)).astype(np.float32)
    calibration = from_arrays({"conv": patches}, layout="keras")
    result = sp.compress({"conv/kernel": kernel}, [{"prune": {"method": "wanda", "sparsity": 0.5}}],
                         progress=False, calibration=calibration)
    expected = reference_wanda(kernel.reshape(36, 8).T, patches, 0.5).T.reshape(kernel.shape)
    np.testing.assert_array_equal(result.weights["conv/kernel"] != 0, expected)


def test_missing_calibration_is_skipped_with_a_warning_or_an_error_when_named():
    w, x = layer(8, 32, 100)
    weights = {"fc.weight": w, "emb.weight": RNG.standard_normal((5, 32)).astype(np.float32)}
    with pytest.warns(CalibrationWarning, match="emb.weight"):
        result = sp.compress(weights, [{"prune": {"method": "wanda", "sparsity": 0.5}}], progress=False,
                             calibration={"fc": x})
    assert result.report[1]["stages"] == "-"
    with pytest.raises(ValueError, match=r"calibration data.*emb\.weight|emb\.weight.*calibration data"):
        sp.compress(weights, [{"prune": {"method": "wanda", "sparsity": 0.5}, "include": ["emb.weight"]}],
                    progress=False, calibration={"fc": x})
    with pytest.raises(ValueError, match="none of the 2 selected tensors"):
        sp.compress(weights, [{"prune": {"method": "wanda", "sparsity": 0.5}}], progress=False,
                    calibration={"other": x})


@pytest.mark.parametrize("recipe,calibration,error,match", [
    ([{"quantize": {"method": "gptq"}}], None, ValueError, "needs calibration data"),
    ([{"prune": {"method": "sparsegpt"}}], "x", ValueError, "give sparsity"),
    ([{"prune": {"method": "sparsegpt", "n": 3, "m": 2}}], "x", ValueError, "1 <= n < m"),
    ([{"quantize": {"method": "gptq", "axis": 0}}], "x", ValueError, "not an option"),
    ([{"quantize": {"method": "gptq", "group_size": 48}}], "x", ValueError, "fc.weight"),
    ([{"prune": {"method": "wanda", "sparsity": 0.5}}], "short", ValueError, r"fc.weight.*layer 'fc'.*31 input"),
    ([{"prune": {"method": "wanda", "sparsity": 0.5}}], 3, TypeError, "calibration must be"),
])
def test_recipe_errors_name_the_stage_and_tensor(recipe, calibration, error, match):
    w, x = layer(8, 32, 100)
    given = {"x": {"fc": x}, "short": {"fc": x[:, :31]}, None: None}.get(calibration, calibration)
    with pytest.raises(error, match=match):
        sp.compress({"fc.weight": w}, recipe, progress=False, calibration=given)


def test_calibration_file_round_trip_and_cli(tmp_path, capsys):
    from swiftprune.cli import main

    w, x = layer(16, 64, 300, seed=4)
    sp.save_weights(tmp_path / "model.safetensors", {"fc.weight": w})
    sp.save_weights(tmp_path / "inputs.npz", {"fc": x})
    from_arrays({"fc": x}).save(tmp_path / "stats.npz")
    stats = load_calibration(tmp_path / "stats.npz")
    np.testing.assert_array_equal(stats["fc"].hessian_, from_arrays({"fc": x})["fc"].hessian_)
    assert stats["fc"].count_ == 300
    for calibration in ("inputs.npz", "stats.npz"):
        code = main(["compress", str(tmp_path / "model.safetensors"), "-o", str(tmp_path / "q.safetensors"),
                     "--quantize", "int4:16:method=gptq:act_order=true", "--calibration",
                     str(tmp_path / calibration), "--no-progress"])
        assert code == 0
        q = sp.load_compressed(tmp_path / "q.safetensors").tensors["fc.weight"]
        np.testing.assert_array_equal(q.values, sp.gptq(w, x, 4, 16, act_order=True).values)
    code = main(["compress", str(tmp_path / "model.safetensors"), "-o", str(tmp_path / "p.npz"),
                 "--prune", "sparsegpt:0.5", "--calibration", str(tmp_path / "inputs.npz"), "--no-progress", "-q"])
    assert code == 0
    np.testing.assert_allclose(sp.load_weights(tmp_path / "p.npz")["fc.weight"], sp.sparsegpt(w, x, 0.5), rtol=1e-4, atol=1e-5)
    capsys.readouterr()
    assert main(["compress", str(tmp_path / "model.safetensors"), "-o", str(tmp_path / "e.npz"),
                 "--prune", "wanda:0.5", "--no-progress"]) == 1
    assert "needs calibration data" in capsys.readouterr().err
