"""compress() with every built-in operation: the recipe methods, their options
and errors, how the stages compose, and the codecs of the compressed files."""
from __future__ import annotations

import json
import math

import warnings

import numpy as np
import pytest

import swiftprune as sp
from swiftprune import _methods, model, registry, report

import _reference_factorization as ref_lr
import _reference_models as ref
import _reference_pruning as ref_prune
import _reference_quantization as ref_q

RNG = np.random.default_rng(5)


def torch_like() -> dict[str, np.ndarray]:
    return {
        "fc1.weight": RNG.standard_normal((16, 32)).astype(np.float32),
        "fc1.bias": RNG.standard_normal(16).astype(np.float32),
        "conv.weight": RNG.standard_normal((8, 4, 3, 4)).astype(np.float32),
        "fc2.weight": RNG.standard_normal((8, 16)),  # float64
        "steps": np.array(7, dtype=np.int64),
    }


MATRICES = ("fc1.weight", "fc2.weight")
SELECTED = ("fc1.weight", "conv.weight", "fc2.weight")


def run(weights, *stages, **fields):
    return sp.compress(weights, [dict(stage, **fields) for stage in stages], progress=False)


def f32(w: np.ndarray) -> np.ndarray:
    return np.asarray(w, dtype=np.float32)


def pruned(w: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask, f32(w), np.float32(0))


def test_every_operation_is_registered():
    assert model.available_methods() == {
        "prune": ["block", "global_magnitude", "magnitude", "nm", "random", "sparsegpt", "structured", "wanda"],
        "quantize": ["awq", "float16", "gptq", "minmax", "mse", "percentile", "smoothquant"],
        "cluster": ["kmeans"],
        "low_rank": ["auto", "randomized", "svd"],
    }
    assert registry._DEFAULT_METHOD == {"prune": "magnitude", "quantize": "minmax", "cluster": "kmeans",
                                     "low_rank": "auto"}


# --------------------------------------------------------------------------- #
# Prune
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("options,reference", [
    ({"method": "nm"}, lambda w: ref_prune.nm(w, 2, 4, -1)),
    ({"method": "nm", "n": 1, "m": 4, "axis": 0}, lambda w: ref_prune.nm(w, 1, 4, 0)),
    ({"method": "structured", "amount": 0.25}, lambda w: ref_prune.structured(w, 0.25, 0, 2)),
    ({"method": "structured", "amount": 0.5, "axis": -1, "norm": "inf"},
     lambda w: ref_prune.structured(w, 0.5, w.ndim - 1, math.inf)),
    ({"method": "structured", "amount": 0.5, "axis": 1, "norm": 1}, lambda w: ref_prune.structured(w, 0.5, 1, 1)),
])
def test_per_tensor_prune_methods(options, reference):
    weights = torch_like()
    result = run(weights, {"prune": options})
    for name in SELECTED:
        expected = reference(weights[name])
        assert isinstance(result.tensors[name], sp.PrunedTensor)
        np.testing.assert_array_equal(result.tensors[name].mask, expected)
        np.testing.assert_array_equal(result.weights[name], pruned(weights[name], expected))
    assert result.report[0]["stages"] == f"prune.{options['method']}"


def test_block_prune():
    weights = torch_like()
    for options, block in (({}, (1, 4)), ({"block": [2, 3]}, (2, 3)), ({"block": "4x8"}, (4, 8))):
        result = run(weights, {"prune": {"method": "block", "sparsity": 0.5, **options}}, include="fc*")
        for name in MATRICES:
            np.testing.assert_array_equal(result.tensors[name].mask, ref_prune.block(weights[name], 0.5, block))


def test_random_prune():
    weights = torch_like()
    result = run(weights, {"prune": {"method": "random", "sparsity": 0.3, "seed": 9}})
    for name in SELECTED:
        mask = result.tensors[name].mask
        assert mask.sum() == weights[name].size - round(0.3 * weights[name].size)
        np.testing.assert_array_equal(mask, sp.random_mask(weights[name], 0.3, seed=9))
    other = run(weights, {"prune": {"method": "random", "sparsity": 0.3}})
    assert not all(np.array_equal(other.tensors[n].mask, result.tensors[n].mask) for n in SELECTED)


def test_global_magnitude_runs_stage_by_stage(tmp_path, monkeypatch):
    weights = torch_like()
    recipe = [{"prune": {"method": "global_magnitude", "sparsity": 0.7}},
              {"quantize": {"bits": 8, "axis": 0}, "include": "fc*"}]
    calls = []
    for name in ("global_magnitude", "minmax"):
        method = registry._METHODS["prune" if name == "global_magnitude" else "quantize"][name]
        spy = (lambda apply, label: lambda w, **o: (calls.append((label, sorted(w) if isinstance(w, dict) else w.shape)),
                                                    apply(w, **o))[1])(method.apply, name)
        monkeypatch.setitem(registry._METHODS[method.stage], name, model.Method(
            method.stage, name, spy, method.options, method.scope, method.check, method.masked,
            method.accepts_pruned))
    result = sp.compress(weights, recipe, progress=False)
    # One call over every selected tensor, then the per-tensor stage: stage by stage, not tensor by tensor.
    assert calls == [("global_magnitude", sorted(SELECTED)), ("minmax", (16, 32)), ("minmax", (8, 16))]
    masks = ref.global_magnitude_masks({n: f32(weights[n]) for n in SELECTED}, 0.7)
    np.testing.assert_array_equal(result.tensors["conv.weight"].mask, masks["conv.weight"])
    for name in MATRICES:
        q = result.tensors[name]
        expected = ref_q.reference_quantize(pruned(weights[name], masks[name]), 8, axis=0)
        np.testing.assert_array_equal(q.values, expected[0])
        np.testing.assert_array_equal(q.scale, expected[1])
        assert not np.any(result.weights[name][~masks[name]])
    assert [r["stages"] for r in result.report][:4] == [
        "prune.global_magnitude+quantize.minmax", "-", "prune.global_magnitude", "prune.global_magnitude+quantize.minmax"]
    source = tmp_path / "m.safetensors"
    sp.save_weights(source, weights)
    report = sp.compress_file(source, tmp_path / "c.safetensors", recipe, progress=False)
    assert report == result.report
    loaded = sp.load_compressed(tmp_path / "c.safetensors")
    for name in SELECTED:
        np.testing.assert_array_equal(loaded.weights[name], result.weights[name])


# --------------------------------------------------------------------------- #
# Quantize
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("options", [
    {},
    {"bits": 4, "axis": 0},
    {"bits": 4, "axis": 0, "group_size": 8},
    {"bits": 3, "symmetric": False},
    {"bits": 8, "symmetric": False, "axis": -1},
    {"bits": 2, "symmetric": False, "axis": 1, "group_size": 4},
])
def test_minmax_quantize_matches_the_formulas(options):
    weights = torch_like()
    result = run(weights, {"quantize": options}, include="fc*")
    bits, symmetric = options.get("bits", 8), options.get("symmetric", True)
    axis, group = options.get("axis"), options.get("group_size")
    for name in MATRICES:
        w = f32(weights[name])
        q = result.tensors[name]
        values, scale, zero = ref_q.reference_quantize(w, bits, symmetric, axis, group)
        assert isinstance(q, sp.QuantizedTensor) and q.method == "minmax" and q.bits == bits
        np.testing.assert_array_equal(q.values, values)
        np.testing.assert_array_equal(q.scale, scale)
        np.testing.assert_array_equal(q.zero_point, zero)
        np.testing.assert_array_equal(result.weights[name], ref_q.reference_dequantize(values, scale, zero, axis, group))
        row = next(r for r in result.report if r["name"] == name)
        assert row["bytes_after"] == ref_q.reference_stored_bytes(q) and row["stages"] == "quantize.minmax"
        assert row["relative_error"] == pytest.approx(ref.relative_error(weights[name], result.weights[name]), rel=1e-9)


@pytest.mark.parametrize("method,extra", [("percentile", {"percentile": 99.0}), ("percentile", {}), ("mse", {})])
def test_percentile_and_mse_quantize(method, extra):
    weights = torch_like()
    result = run(weights, {"quantize": {"method": method, "bits": 4, "axis": 0, **extra}})
    for name in SELECTED:
        direct = sp.quantize(f32(weights[name]), 4, axis=0, method=method, **extra)
        np.testing.assert_array_equal(result.tensors[name].values, direct.values)
        np.testing.assert_array_equal(result.tensors[name].scale, direct.scale)
        assert result.tensors[name].method == method
    w = f32(weights["fc1.weight"])
    minmax = ref.relative_error(w, sp.quantize(w, 4, axis=0).dequantize())
    assert ref.relative_error(w, result.weights["fc1.weight"]) <= minmax * (1 + 1e-6) or method == "percentile"


# --------------------------------------------------------------------------- #
# Cluster and low rank
# --------------------------------------------------------------------------- #


def test_cluster():
    weights = torch_like()
    result = run(weights, {"cluster": {}})
    for name in SELECTED:
        c = result.tensors[name]
        assert isinstance(c, sp.ClusteredTensor) and c.n_clusters == 16
        w = f32(weights[name]).astype(np.float64)
        direct = sp.cluster(f32(weights[name]), 16)
        np.testing.assert_array_equal(c.centroids, direct.centroids)
        # A Lloyd fixed point: each value at its nearest centroid, each centroid the mean of its values.
        distance = np.abs(w[..., None] - c.centroids.astype(np.float64))
        chosen = np.take_along_axis(distance, c.indices[..., None].astype(int), -1)[..., 0]
        np.testing.assert_array_equal(chosen, distance.min(axis=-1))
        for j in np.unique(c.indices):
            assert c.centroids[j] == pytest.approx(w[c.indices == j].mean(), rel=1e-5, abs=1e-6)
        np.testing.assert_array_equal(result.weights[name], c.centroids[c.indices])
        assert result.report[[r["name"] for r in result.report].index(name)]["bytes_after"] == c.nbytes
    optimal = run(weights, {"prune": {"sparsity": 0.5}}, {"cluster": {"n_clusters": 5, "init": "optimal"}})
    mask = ref.magnitude_mask(weights["conv.weight"], 0.5)
    kept = sp.cluster(f32(weights["conv.weight"])[mask], 4, init="optimal")
    np.testing.assert_array_equal(optimal.tensors["conv.weight"].centroids, np.insert(kept.centroids, 2, 0.0))
    other = run(weights, {"cluster": {"n_clusters": 5, "init": "kmeans++", "seed": 3, "max_iter": 2}})
    direct = sp.cluster(f32(weights["conv.weight"]), 5, init="kmeans++", seed=3, max_iter=2)
    np.testing.assert_array_equal(other.tensors["conv.weight"].centroids, direct.centroids)
    np.testing.assert_array_equal(other.tensors["conv.weight"].indices, direct.indices)


@pytest.mark.parametrize("method", ["auto", "svd", "randomized"])
def test_low_rank(method):
    weights = torch_like()
    w = f32(weights["fc1.weight"])
    result = run(weights, {"low_rank": {"method": method, "rank": 5}}, include="fc1.weight")
    f = result.tensors["fc1.weight"]
    assert isinstance(f, sp.LowRankFactors) and f.rank == 5 and f.a.shape == (16, 5) and f.b.shape == (5, 32)
    np.testing.assert_allclose(result.weights["fc1.weight"], f.a @ f.b, rtol=1e-5, atol=1e-5)
    error = np.linalg.norm(w - result.weights["fc1.weight"])
    assert error <= ref_lr.optimal_error(w.astype(np.float64), 5) * (1.05 if method == "randomized" else 1 + 1e-4)
    assert result.report[0]["bytes_after"] == f.nbytes == 4 * 5 * (16 + 32)


def test_low_rank_energy_ratio_and_conv_layouts():
    weights = torch_like()
    w = f32(weights["fc1.weight"])
    s = np.linalg.svd(w.astype(np.float64), compute_uv=False)
    # Energy 0.9 needs a rank whose factors outgrow this small matrix: kept only under on_unfit="warn".
    with pytest.warns(UserWarning, match=r"fc1.weight.*would grow it from 2,048 to"):
        energy = run(weights, {"low_rank": {"energy": 0.9}}, include="fc1.weight", on_unfit="warn").tensors["fc1.weight"]
    assert energy.rank == ref_lr.reference_energy_rank(s, 0.9)
    assert (energy.a.size + energy.b.size) * 4 > w.nbytes
    ratio = run(weights, {"low_rank": {"ratio": 0.5}}, include="fc1.weight").tensors["fc1.weight"]
    assert ratio.rank == ref_lr.reference_ratio_rank(16, 32, 0.5)
    conv = weights["conv.weight"]
    for layout, flat in (("torch", ref_lr.torch_conv_to_2d(conv)), ("keras", ref_lr.keras_conv_to_2d(conv))):
        result = run(weights, {"low_rank": {"rank": 2, "layout": layout}}, include="conv.weight")
        f = result.tensors["conv.weight"]
        assert (f.a.shape[0], f.b.shape[1]) == flat.shape and f.layout == layout
        assert result.weights["conv.weight"].shape == conv.shape
        np.testing.assert_allclose(result.weights["conv.weight"].reshape(flat.shape), f.a @ f.b, rtol=1e-5, atol=1e-5)
        assert np.linalg.norm(flat - f.a @ f.b) <= ref_lr.optimal_error(flat.astype(np.float64), 2) * (1 + 1e-4)


# --------------------------------------------------------------------------- #
# Composition: pruned entries stay exactly zero
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("method", ["minmax", "percentile", "mse"])
@pytest.mark.parametrize("symmetric", [True, False])
def test_prune_then_quantize_keeps_zeros_without_a_mask(method, symmetric, tmp_path):
    # Shifted weights: affine ranges are lopsided, so zero points are far from the middle.
    weights = {name: (w + 0.8 if w.dtype.kind == "f" and w.ndim > 1 else w) for name, w in torch_like().items()}
    recipe = [{"prune": {"sparsity": 0.6}},
              {"quantize": {"method": method, "bits": 3, "symmetric": symmetric, "axis": 0}}]
    result = sp.compress(weights, recipe, progress=False)
    assert result.masks == {}  # the quantization holds the zeros itself: no mask stored
    for name in SELECTED:
        mask = ref.magnitude_mask(weights[name], 0.6)
        q = result.tensors[name]
        assert q.symmetric is symmetric
        direct = sp.quantize(pruned(weights[name], mask), 3, symmetric=symmetric, axis=0, method=method)
        np.testing.assert_array_equal(q.values, direct.values)
        dense = result.weights[name]
        np.testing.assert_array_equal(dense.view(np.uint32)[~mask], 0)  # exactly +0.0
        np.testing.assert_array_equal(q.dequantize(), dense)
        # Why no mask is needed: a pruned zero quantizes to the zero point, which dequantizes to 0.
        zero_point = np.broadcast_to(q.zero_point, q.shape)
        np.testing.assert_array_equal(q.values[~mask], zero_point[~mask])
        row = next(r for r in result.report if r["name"] == name)
        assert row["bytes_after"] == ref_q.reference_stored_bytes(q) <= q.nbytes and row["nonzeros"] <= mask.sum()
    result.save(tmp_path / "q.safetensors")
    loaded = sp.load_compressed(tmp_path / "q.safetensors")
    assert loaded.masks == {}
    for name in SELECTED:
        np.testing.assert_array_equal(loaded.weights[name], result.weights[name])


@pytest.mark.parametrize("prune", [{"sparsity": 0.6}, {"method": "random", "sparsity": 0.4},
                                   {"method": "nm", "axis": 1}, {"sparsity": 1.0}, {"sparsity": 0.0}])
def test_prune_then_cluster_reserves_a_zero_centroid(prune, tmp_path):
    weights = torch_like()
    # (on_unfit="warn": at high sparsity the clustered form is bigger than the pruned one, kept anyway here)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = run(weights, {"prune": prune}, {"cluster": {"n_clusters": 8}}, include=["fc1.weight", "conv.weight"],
                     on_unfit="warn")
    assert result.masks == {}
    for name in ("fc1.weight", "conv.weight"):
        w = f32(weights[name])
        mask = {"random": lambda: sp.random_mask(w, 0.4), "nm": lambda: ref_prune.nm(w, 2, 4, 1)}.get(
            prune.get("method"), lambda: ref.magnitude_mask(w, prune["sparsity"]))()
        c = result.tensors[name]
        dense = result.weights[name]
        np.testing.assert_array_equal(dense.view(np.uint32)[~mask], 0)
        np.testing.assert_array_equal(dense, c.dequantize())
        assert c.n_clusters <= 8 and np.all(np.diff(c.centroids) >= 0)
        if mask.all():
            direct = sp.cluster(w, 8)
            np.testing.assert_array_equal(c.centroids, direct.centroids)
            continue
        assert 0.0 in c.centroids
        if mask.any():  # the kept values get the other 7 centroids, fitted on them alone
            direct = sp.cluster(w[mask], 7)
            np.testing.assert_array_equal(np.delete(c.centroids, np.searchsorted(c.centroids, 0.0)), direct.centroids)
            np.testing.assert_array_equal(dense[mask], direct.dequantize())
    result.save(tmp_path / "c.safetensors")
    loaded = sp.load_compressed(tmp_path / "c.safetensors")
    for name in ("fc1.weight", "conv.weight"):
        np.testing.assert_array_equal(loaded.tensors[name].indices, result.tensors[name].indices)
        np.testing.assert_array_equal(loaded.weights[name], result.weights[name])


def test_prune_then_cluster_with_one_cluster_keeps_the_mask():
    w = {"w": RNG.standard_normal((6, 8)).astype(np.float32)}
    result = run(w, {"prune": {"sparsity": 0.5}}, {"cluster": {"n_clusters": 1}})
    mask = ref.magnitude_mask(w["w"], 0.5)
    np.testing.assert_array_equal(result.masks["w"], mask)  # one centroid cannot also be zero
    assert not np.any(result.weights["w"][~mask]) and np.all(result.weights["w"][mask] == result.tensors["w"].centroids[0])
    assert result.report[0]["bytes_after"] == result.tensors["w"].nbytes + (48 + 7) // 8


def test_prune_then_low_rank_is_rejected():
    weights = torch_like()
    for recipe in ([{"prune": {"sparsity": 0.5}}, {"low_rank": {"rank": 2}}],
                   [{"prune": {"method": "global_magnitude", "sparsity": 0.5}}, {"low_rank": {"energy": 0.9}}]):
        with pytest.raises(ValueError, match=r"recipe stage 1 \(low_rank\): tensor 'fc1.weight' was pruned "
                                             r"\(prune\.[a-z_]+\), and low_rank.auto cannot keep pruned entries zero"):
            sp.compress(weights, recipe, progress=False)
    # Different tensors for each: fine.
    result = sp.compress(weights, [{"prune": {"sparsity": 0.5}, "include": "conv.*"},
                                   {"low_rank": {"rank": 2}, "include": "fc*"}], progress=False)
    assert [r["stages"] for r in result.report if r["stages"] != "-"] == ["low_rank.auto", "prune.magnitude",
                                                                          "low_rank.auto"]
    with pytest.raises(ValueError, match=r"stage 1 \(prune\): tensor 'fc1.weight' was already encoded by low_rank"):
        sp.compress(weights, [{"low_rank": {"rank": 2}}, {"prune": {"sparsity": 0.5}}], progress=False)
    with pytest.raises(ValueError, match=r"stage 1 \(quantize\): tensor 'fc1.weight' was already encoded by cluster"):
        sp.compress(weights, [{"cluster": {}}, {"quantize": {}}], progress=False)


# --------------------------------------------------------------------------- #
# Options: validation names the stage and the field
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("stage,kind,message", [
    ({"prune": {"method": "nm", "n": 4}}, ValueError, r"\(prune\), field 'n': n must satisfy 1 <= n < m = 4, got n = 4"),
    ({"prune": {"method": "nm", "m": 1}}, ValueError, r"\(prune\), field 'm': m must be >= 2"),
    ({"prune": {"method": "nm", "axis": "last"}}, TypeError, r"\(prune\), field 'axis': axis must be an integer"),
    ({"prune": {"method": "nm", "sparsity": 0.5}}, ValueError, r"field 'sparsity': not an option of prune method 'nm'"),
    ({"prune": {"method": "random", "sparsity": 0.5, "seed": -1}}, ValueError, r"field 'seed': seed must be >= 0"),
    ({"prune": {"method": "structured"}}, ValueError, r"field 'amount': required by prune method 'structured'"),
    ({"prune": {"method": "structured", "amount": 0.5, "norm": 3}}, ValueError, r"field 'norm': norm must be 1, 2 or inf"),
    ({"prune": {"method": "structured", "amount": 0.5, "norm": "two"}}, ValueError, r"field 'norm'"),
    ({"prune": {"method": "block", "sparsity": 0.5, "block": "1y4"}}, ValueError, r"field 'block'.*'1x4'"),
    ({"prune": {"method": "block", "sparsity": 0.5, "block": [0, 4]}}, ValueError, r"field 'block': block\[0\] must be >= 1"),
    ({"prune": {"method": "block", "sparsity": 0.5, "block": 4}}, TypeError, r"field 'block': block must be a pair"),
    ({"prune": {"method": "global_magnitude"}}, ValueError, r"field 'sparsity': required"),
    ({"prune": {"method": "global_magnitude", "sparsity": -0.1}}, ValueError, r"field 'sparsity'"),
    ({"quantize": {"bits": 9}}, ValueError, r"\(quantize\), field 'bits': bits must be <= 8, got 9"),
    ({"quantize": {"bits": 1}}, ValueError, r"\(quantize\), field 'bits': bits must be >= 2"),
    ({"quantize": {"bits": 4.0}}, TypeError, r"field 'bits': bits must be an integer"),
    ({"quantize": {"symmetric": "yes"}}, TypeError, r"field 'symmetric': symmetric must be true or false"),
    ({"quantize": {"group_size": 32}}, ValueError, r"\(quantize\), field 'group_size': group_size needs an axis"),
    ({"quantize": {"group_size": 0, "axis": 0}}, ValueError, r"field 'group_size': group_size must be >= 1"),
    ({"quantize": {"percentile": 99}}, ValueError, r"field 'percentile': not an option of quantize method 'minmax'"),
    ({"quantize": {"method": "percentile", "percentile": 101}}, ValueError, r"field 'percentile': .*\[0, 100\]"),
    ({"quantize": {"method": "kmeans"}}, ValueError, r"field 'method': unknown method 'kmeans' \(available: awq, float16, gptq, minmax"),
    ({"cluster": {"n_clusters": 0}}, ValueError, r"\(cluster\), field 'n_clusters': n_clusters must be >= 1"),
    ({"cluster": {"n_clusters": 70000}}, ValueError, r"field 'n_clusters': n_clusters must be <= 65536"),
    ({"cluster": {"init": "random"}}, ValueError, r"field 'init': init must be one of 'linear', 'kmeans\+\+'"),
    ({"cluster": {"max_iter": -1}}, ValueError, r"field 'max_iter'"),
    ({"low_rank": {}}, ValueError, r"\(low_rank\), field 'rank': give exactly one of 'rank', 'energy' or 'ratio', got none"),
    ({"low_rank": {"rank": 2, "energy": 0.9}}, ValueError, r"field 'energy': give exactly one .* got rank, energy"),
    ({"low_rank": {"energy": 1.5}}, ValueError, r"field 'energy': energy must be in \[0, 1\]"),
    ({"low_rank": {"ratio": 0}}, ValueError, r"field 'ratio': ratio must be a positive"),
    ({"low_rank": {"rank": -1}}, ValueError, r"field 'rank': rank must be >= 0"),
    ({"low_rank": {"rank": 2, "layout": "nchw"}}, ValueError, r"field 'layout': layout must be one of 'keras', 'torch'"),
    ({"low_rank": {"rank": 2, "oversample": 4}}, ValueError, r"field 'oversample': not an option of low_rank"),
])
def test_bad_options_name_the_stage_and_field(stage, kind, message):
    with pytest.raises(kind, match=r"recipe stage 1 " + (message if message.startswith(r"\(") else r".*" + message)):
        sp.compress(torch_like(), [{"prune": {"sparsity": 0.1}, "include": "conv.*"}, stage], progress=False)


@pytest.mark.parametrize("stage,message", [
    ({"prune": {"method": "block", "sparsity": 0.5}}, r"on tensor 'conv.weight'.*2-D"),
    ({"low_rank": {"rank": 9}, "include": "fc2.*"}, r"stage 0 \(low_rank\) on tensor 'fc2.weight'.*rank must be <= 8"),
])
def test_options_bad_for_one_tensor_name_it(stage, message):
    with pytest.raises(ValueError, match=message):
        sp.compress(torch_like(), [stage], progress=False)


UNFIT = [
    ({"prune": {"method": "nm", "m": 3}}, "fc1.weight", r"axis -1 has 32 entries, not a multiple of m = 3"),
    ({"quantize": {"bits": 4, "axis": 0, "group_size": 5}}, "fc1.weight", r"group_size 5 does not divide the \d+ entries per channel"),
    ({"quantize": {"bits": 4, "axis": 4}}, "fc1.weight", r"it has no axis 4"),
    ({"low_rank": {"ratio": 0.05}, "include": "fc2.weight"}, "fc2.weight", r"gives rank 0 \(an all-zero tensor\)"),
    ({"low_rank": {"energy": 0.999}, "include": "fc1.weight"}, "fc1.weight", r"would grow it from 2,048 to"),
]


@pytest.mark.parametrize("stage,name,why", UNFIT)
def test_unfit_tensors_follow_on_unfit(stage, name, why):
    weights = torch_like()
    pattern = r"recipe stage 0 \(\w+\): tensor '" + name.replace(".", r"\.") + "': .*" + why
    with pytest.raises(ValueError, match=pattern + r".*on_unfit='error'"):
        sp.compress(weights, [dict(stage, on_unfit="error")], progress=False)
    # Default "skip": a warning naming the tensor and why; the tensor is left exactly as it was.
    with pytest.warns(UserWarning, match=pattern + r".*left as it was"):
        result = sp.compress(weights, [stage], progress=False)
    np.testing.assert_array_equal(result.weights[name], weights[name])
    row = next(r for r in result.report if r["name"] == name)
    assert row["bytes_after"] == row["bytes_before"] and "skipped:" in row["stages"]
    # "warn": a result that exists is kept (grown or rank 0); a stage that cannot apply is still skipped.
    with pytest.warns(UserWarning, match=pattern):
        kept = sp.compress(weights, [dict(stage, on_unfit="warn")], progress=False)
    applied = "low_rank" in stage
    assert isinstance(kept.tensors[name], np.ndarray) is not applied


def test_on_unfit_is_validated():
    with pytest.raises(ValueError, match=r"recipe stage 0 \(prune\), field 'on_unfit': must be one of"):
        sp.compress(torch_like(), [{"prune": {"sparsity": 0.5}, "on_unfit": "ignore"}], progress=False)


def test_nm_on_a_conv_with_three_input_channels_skips_only_that_tensor():
    # The case: a conv whose 3 input channels are not a multiple of m no longer aborts compress.
    weights = {"conv1.weight": RNG.standard_normal((8, 3, 3, 3)).astype(np.float32),
               "fc.weight": RNG.standard_normal((4, 8)).astype(np.float32)}
    with pytest.warns(UserWarning, match=r"conv1\.weight.*axis 1 has 3 entries"):
        result = sp.compress(weights, [{"prune": {"method": "nm", "n": 2, "m": 4, "axis": 1}}], progress=False)
    np.testing.assert_array_equal(result.weights["conv1.weight"], weights["conv1.weight"])
    np.testing.assert_array_equal(result.weights["fc.weight"] != 0, ref_prune.nm(weights["fc.weight"], 2, 4, 1))


def test_yaml_recipe_with_every_stage(tmp_path):
    pytest.importorskip("yaml")
    weights = torch_like()
    text = """
- prune: {method: global_magnitude, sparsity: 0.5}
  include: ["fc*", "conv.*"]
  exclude: fc2.weight
- prune: {method: nm, n: 2, m: 4, axis: 1}
  include: fc1.weight
- quantize: {method: mse, bits: 4, axis: 0, group_size: 16, symmetric: false}
  include: fc1.weight
- cluster: {n_clusters: 4, init: kmeans++}
  include: conv.*
- low_rank: {method: svd, energy: 0.8, layout: torch}
  include: fc2.weight
- prune: {method: structured, amount: 0.5, norm: inf, axis: 0}
  include: fc1.bias
"""
    (tmp_path / "recipe.yaml").write_text(text)
    recipe = [
        {"prune": {"method": "global_magnitude", "sparsity": 0.5}, "include": ["fc*", "conv.*"], "exclude": "fc2.weight"},
        {"prune": {"method": "nm", "n": 2, "m": 4, "axis": 1}, "include": "fc1.weight"},
        {"quantize": {"method": "mse", "bits": 4, "axis": 0, "group_size": 16, "symmetric": False}, "include": "fc1.weight"},
        {"cluster": {"n_clusters": 4, "init": "kmeans++"}, "include": "conv.*"},
        {"low_rank": {"method": "svd", "energy": 0.8, "layout": "torch"}, "include": "fc2.weight"},
        {"prune": {"method": "structured", "amount": 0.5, "norm": math.inf, "axis": 0}, "include": "fc1.bias"},
    ]
    from_file = sp.compress(weights, tmp_path / "recipe.yaml", progress=False)
    from_list = sp.compress(weights, recipe, progress=False)
    assert from_file.report == from_list.report
    assert [r["stages"] for r in from_file.report] == [
        "prune.global_magnitude+prune.nm+quantize.mse", "prune.structured", "prune.global_magnitude+cluster.kmeans",
        "low_rank.svd", "-"]
    for name in weights:
        np.testing.assert_array_equal(from_file.weights[name], from_list.weights[name])
    global_masks = ref.global_magnitude_masks({n: f32(weights[n]) for n in ("fc1.weight", "conv.weight")}, 0.5)
    mask = global_masks["fc1.weight"] & ref_prune.nm(pruned(weights["fc1.weight"], global_masks["fc1.weight"]), 2, 4, 1)
    assert not np.any(from_file.weights["fc1.weight"][~mask])
    assert not np.any(from_file.weights["conv.weight"][~global_masks["conv.weight"]])
    path = tmp_path / "all.safetensors"
    from_file.save(path)
    loaded = sp.load_compressed(path)
    for name in weights:
        np.testing.assert_array_equal(loaded.weights[name], from_file.weights[name])
    assert loaded.report == from_file.report
    (tmp_path / "bad.yaml").write_text("- quantize: {bits: 4, group_size: 16}\n")
    with pytest.raises(ValueError, match=r"recipe stage 0 \(quantize\), field 'group_size'"):
        sp.compress(weights, tmp_path / "bad.yaml")


# --------------------------------------------------------------------------- #
# Codecs: save -> load_compressed restores exactly what was saved
# --------------------------------------------------------------------------- #


def round_trip(tmp_path, tensors: dict, recipe_name: str = "c"):
    """Saves `tensors` (name -> compressed form) and reads them back."""
    result = sp.CompressionResult(
        weights={n: np.asarray(registry.codec_for(f).dense(f)) for n, f in tensors.items()},
        tensors=tensors)
    path = tmp_path / f"{recipe_name}.safetensors"
    result.save(path)
    return sp.load_compressed(path), path


def stored_parts(path) -> dict[str, np.ndarray]:
    return sp.io.SafetensorsFile(path).to_dict()  # the stored parts themselves


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("symmetric", [True, False])
def test_quantized_codec_is_exact(bits, symmetric, tmp_path):
    w = RNG.standard_normal((6, 12)).astype(np.float32)
    forms = {
        "tensor": sp.quantize(w, bits, symmetric=symmetric),
        "channel": sp.quantize(w, bits, symmetric=symmetric, axis=-1),
        "group": sp.quantize(w, bits, symmetric=symmetric, axis=0, group_size=4),
        "conv": sp.quantize(RNG.standard_normal((3, 2, 3, 3)), bits, symmetric=symmetric, axis=0, method="mse"),
        "odd": sp.quantize(RNG.standard_normal((5, 3)).astype(np.float16), bits, symmetric=symmetric, axis=1),
        "empty": sp.quantize(np.zeros((0, 4), np.float32), bits, symmetric=symmetric, axis=1),
        "gptq": sp.gptq(w, RNG.standard_normal((20, 12)), bits, group_size=6, symmetric=symmetric),
    }
    loaded, path = round_trip(tmp_path, forms)
    parts = stored_parts(path)
    for name, q in forms.items():
        got = loaded.tensors[name]
        assert isinstance(got, sp.QuantizedTensor)
        for field in ("bits", "symmetric", "axis", "group_size", "method", "shape"):
            assert getattr(got, field) == getattr(q, field), field
        for field in ("values", "scale", "zero_point"):
            assert getattr(got, field).dtype == getattr(q, field).dtype
            np.testing.assert_array_equal(getattr(got, field), getattr(q, field))
        np.testing.assert_array_equal(loaded.weights[name], q.dequantize())
        stored = parts[f"{name}::values"]
        if f"{name}::mask" in parts:  # bit mask + the values that are not their zero point
            zero = ref_q.expand(q.zero_point, q.shape, q.axis, q.group_size)
            kept = q.values != zero
            np.testing.assert_array_equal(parts[f"{name}::mask"], np.packbits(kept.reshape(-1)))
            np.testing.assert_array_equal(stored, ref_q.reference_pack_bits(q.values[kept], bits))
        else:
            assert stored.dtype == np.uint8 and stored.size == (q.values.size * bits + 7) // 8
            np.testing.assert_array_equal(stored, ref_q.reference_pack_bits(q.values, bits))
            if bits == 4:
                np.testing.assert_array_equal(stored, ref_q.reference_pack(q.values))
        assert (f"{name}::zero_point" in parts) is (not symmetric)
        size = sum(parts[k].nbytes for k in parts if k.startswith(f"{name}::"))
        assert size == ref_q.reference_stored_bytes(q) <= q.nbytes  # what the report counts is what the file holds


@pytest.mark.parametrize("n_clusters", [1, 2, 3, 4, 5, 16, 17, 200, 256, 257, 1000])
def test_clustered_codec_is_exact(n_clusters, tmp_path):
    w = RNG.standard_normal((40, 37)).astype(np.float32)  # 1480 values: odd bit offsets
    forms = {"w": sp.cluster(w, n_clusters, max_iter=5), "conv": sp.cluster(RNG.standard_normal((2, 3, 3, 3)), 3)}
    loaded, path = round_trip(tmp_path, forms)
    parts = stored_parts(path)
    for name, c in forms.items():
        got = loaded.tensors[name]
        assert got.indices.dtype == c.indices.dtype and got.indices.shape == c.indices.shape
        np.testing.assert_array_equal(got.indices, c.indices)
        np.testing.assert_array_equal(got.centroids, c.centroids)
        assert got.iterations == c.iterations
        np.testing.assert_array_equal(loaded.weights[name], c.dequantize())
        assert parts[f"{name}::indices"].nbytes + parts[f"{name}::centroids"].nbytes == c.nbytes


def reference_pack_indices(indices: np.ndarray, bits: int) -> np.ndarray:
    """Bit by bit: index i's bit j is stream bit i*bits + j, LSB-first within each byte."""
    stream = [(int(v) >> j) & 1 for v in indices.reshape(-1) for j in range(bits)]
    stream += [0] * (-len(stream) % 8)
    return np.array([sum(stream[i + j] << j for j in range(8)) for i in range(0, len(stream), 8)], np.uint8)


@pytest.mark.parametrize("bits", range(1, 17))
def test_index_packing_against_bits(bits, monkeypatch):
    monkeypatch.setattr(_methods, "_CHUNK", 16)  # several chunks
    dtype = np.uint8 if bits <= 8 else np.uint16
    for count in (0, 1, 7, 33, 50):
        indices = RNG.integers(0, 2**bits, size=count).astype(dtype)
        packed = _methods.pack_indices(indices, bits)
        np.testing.assert_array_equal(packed, reference_pack_indices(indices, bits))
        np.testing.assert_array_equal(_methods.unpack_indices(packed, count, bits, dtype), indices)
    with pytest.raises(ValueError, match="packed bytes"):
        _methods.unpack_indices(np.zeros(3, np.uint8), 50, bits, dtype)


def test_low_rank_codec_is_exact(tmp_path):
    forms = {
        "fc": sp.low_rank(RNG.standard_normal((12, 7)), rank=3),
        "keras_conv": sp.low_rank(RNG.standard_normal((3, 3, 4, 6)), energy=0.8),
        "torch_conv": sp.low_rank(RNG.standard_normal((6, 4, 3, 3)), ratio=0.3, layout="torch"),
        "zero_rank": sp.low_rank(RNG.standard_normal((4, 5)), rank=0),
    }
    loaded, path = round_trip(tmp_path, forms)
    for name, f in forms.items():
        got = loaded.tensors[name]
        assert got.shape == f.shape and got.layout == f.layout and got.rank == f.rank
        np.testing.assert_array_equal(got.a, f.a)
        np.testing.assert_array_equal(got.b, f.b)
        np.testing.assert_array_equal(loaded.weights[name], f.reconstruct())
        assert loaded.weights[name].shape == f.shape


def test_every_stage_round_trips_through_compress_file(tmp_path):
    weights = torch_like()
    source = tmp_path / "m.safetensors"
    sp.save_weights(source, weights)
    recipes = [
        [{"prune": {"method": "nm"}}, {"quantize": {"bits": 4, "axis": 0, "group_size": 8}, "include": "fc*"}],
        [{"prune": {"method": "random", "sparsity": 0.5}}, {"cluster": {"n_clusters": 6}}],
        [{"low_rank": {"ratio": 0.4, "layout": "torch"}}],
        [{"quantize": {"bits": 8, "symmetric": False, "axis": 0}, "min_rank": 1}],
    ]
    for i, recipe in enumerate(recipes):
        out = tmp_path / f"out{i}.safetensors"
        report = sp.compress_file(source, out, recipe, progress=False)
        expected = sp.compress(weights, recipe, progress=False)
        # (the relative error is summed in another order by the fused N:M + quantize pass of compress_file)
        assert [dict(row, relative_error=None) for row in report] == \
               [dict(row, relative_error=None) for row in expected.report]
        for got, want in zip(report, expected.report):
            assert got["relative_error"] == pytest.approx(want["relative_error"], rel=1e-12, abs=1e-15)
        loaded = sp.load_compressed(out)
        for name in weights:
            np.testing.assert_array_equal(loaded.weights[name], expected.weights[name])


@pytest.mark.parametrize("kind,attrs,parts,message", [
    ("quantized", {"shape": [2, 2], "bits": 4, "symmetric": True, "axis": None, "group_size": None},
     {"values": np.zeros(3, np.uint8), "scale": np.ones((1, 1), np.float32)}, "packed bytes"),
    ("quantized", {"shape": [2, 2], "bits": 8, "symmetric": True, "axis": None, "group_size": None},
     {"values": np.zeros(4, np.uint8), "scale": np.ones((1, 1), np.float64)}, "'scale' must be float32"),
    ("quantized", {"shape": [2, 2], "bits": 8, "symmetric": True, "axis": 0, "group_size": None},
     {"values": np.zeros(4, np.uint8), "scale": np.ones((1, 1), np.float32)}, "scale and zero_point must have shape"),
    ("quantized", {"shape": [2, 2], "bits": 4, "symmetric": False, "axis": None, "group_size": None},
     {"values": np.zeros(2, np.uint8), "scale": np.ones((1, 1), np.float32)}, "zero_point"),
    ("quantized", {"shape": [2, 2], "bits": 3, "symmetric": True, "axis": None, "group_size": None},
     {"values": np.full(2, 0x88, np.uint8), "scale": np.ones((1, 1), np.float32)}, r"values must lie in \[-3, 3\]"),
    ("quantized", {"shape": "2x2", "bits": 8, "symmetric": True, "axis": None, "group_size": None},
     {"values": np.zeros(4, np.uint8), "scale": np.ones((1, 1), np.float32)}, r"attrs\.shape: expected a list"),
    ("clustered", {"shape": [4], "index_bits": 1, "index_dtype": "uint8"},
     {"indices": np.zeros(1, np.uint8), "centroids": np.zeros(3, np.float32)}, "do not take 1-bit"),
    ("clustered", {"shape": [4], "index_bits": 2, "index_dtype": "uint8"},
     {"indices": np.full(1, 0xFF, np.uint8), "centroids": np.zeros(3, np.float32)}, "out of range for 3 centroids"),
    ("clustered", {"shape": [4], "index_bits": 2, "index_dtype": "int64"},
     {"indices": np.zeros(1, np.uint8), "centroids": np.zeros(3, np.float32)}, "index_dtype"),
    ("clustered", {"shape": [4], "index_bits": 2},  # the metadata schema names the missing field
     {"indices": np.zeros(1, np.uint8), "centroids": np.zeros(3, np.float32)}, r"attrs\.index_dtype"),
    ("low_rank", {"shape": [4, 5], "layout": "keras"},
     {"a": np.zeros((4, 2), np.float32), "b": np.zeros((3, 5), np.float32)}, "do not multiply"),
    ("low_rank", {"shape": [2, 3, 4, 5], "layout": "torch"},
     {"a": np.zeros((24, 1), np.float32), "b": np.zeros((1, 5), np.float32)}, r"\(2, 60\) matrix of a torch weight"),
    ("low_rank", {"shape": [4, 5], "layout": "jax"},
     {"a": np.zeros((4, 1), np.float32), "b": np.zeros((1, 5), np.float32)}, "layout"),
    ("low_rank", {"shape": [4, 5], "layout": "keras"},
     {"a": np.zeros((4, 1), np.float64), "b": np.zeros((1, 5), np.float32)}, "'a' must be float32"),
])
def test_malformed_compressed_parts_are_value_errors(kind, attrs, parts, message, tmp_path):
    layout = {"tensors": [{"name": "t", "kind": kind, "attrs": attrs, "parts": {p: f"t::{p}" for p in parts}}]}
    path = tmp_path / "bad.safetensors"
    sp.save_weights(path, {f"t::{p}": a for p, a in parts.items()}, metadata={"swiftprune": json.dumps(layout)})
    with pytest.raises(ValueError, match=message):
        sp.load_compressed(path)


def test_report_relative_error_is_the_metric_of_the_quantization_area():
    """report.relative_error_chunked (chunked, float64) computes sp.relative_error without its float64 copies."""
    w = RNG.standard_normal((30, 50))
    for original in (w, w.astype(np.float32), w.astype(np.float16), np.asfortranarray(w)[:, ::2]):
        approximation = sp.quantize(original, 3, axis=0).dequantize()
        expected = sp.relative_error(original, approximation)
        assert report.relative_error_chunked(original, approximation, chunk=7) == pytest.approx(expected, rel=1e-12)
        assert report.relative_error_chunked(original, approximation) == pytest.approx(expected, rel=1e-12)
    assert report.relative_error_chunked(np.zeros(4), np.zeros(4)) == sp.relative_error(np.zeros(4), np.zeros(4)) == 0.0
    assert report.relative_error_chunked(np.zeros(4), np.ones(4)) == sp.relative_error(np.zeros(4), np.ones(4)) == math.inf


@pytest.mark.parametrize("recipe", [
    [{"prune": {"method": "random", "sparsity": 0.5}}, {"quantize": {"bits": 4, "axis": 0, "symmetric": False}}],
    [{"prune": {"method": "structured", "amount": 0.5, "axis": 1}}, {"cluster": {"n_clusters": 4}}],
    [{"prune": {"method": "block", "sparsity": 0.5, "block": [2, 2]}}, {"quantize": {"method": "mse", "bits": 3}}],
    [{"prune": {"method": "global_magnitude", "sparsity": 0.5}}, {"quantize": {"method": "percentile", "bits": 8}}],
    [{"low_rank": {"energy": 0.9}}],
])
def test_empty_tiny_odd_and_strided_tensors(recipe, tmp_path):
    base = RNG.standard_normal((6, 10))
    weights = {"empty": np.zeros((0, 4), np.float32), "one": np.full((1, 1), 3.0, np.float32),
               "odd": base[:3, :5].astype(np.float16), "fortran": np.asfortranarray(base),
               "strided": base[::2, ::3], "bias": np.ones(3, np.float32)}
    before = {name: w.copy() for name, w in weights.items()}
    result = sp.compress(weights, recipe, progress=False)
    for name, w in weights.items():
        np.testing.assert_array_equal(w, before[name])  # inputs not modified
        assert result.weights[name].shape == w.shape
    contiguous = sp.compress(dict(weights, fortran=np.ascontiguousarray(base)), recipe, progress=False)
    np.testing.assert_array_equal(result.weights["fortran"], contiguous.weights["fortran"])
    result.save(tmp_path / "c.safetensors")
    loaded = sp.load_compressed(tmp_path / "c.safetensors")
    for name in weights:
        np.testing.assert_array_equal(loaded.weights[name], result.weights[name])
    assert loaded.report == result.report


def test_readme_recipe_runs(tmp_path):
    """The YAML recipe of the README's whole-model section does what its comments say."""
    yaml = pytest.importorskip("yaml")
    from pathlib import Path

    readme = Path(__file__).resolve().parents[2] / "README.md"
    if not readme.exists():
        pytest.skip("no README.md next to the tests")
    section = readme.read_text(encoding="utf-8").split("### Whole models", 1)[1]
    recipe = yaml.safe_load(section.split("```yaml", 1)[1].split("```", 1)[0])
    weights = {
        "embed.weight": RNG.standard_normal((50, 16)).astype(np.float32),
        # Rank 2 (as flattened by the torch layout), so energy 0.95 shrinks it: a full-rank
        # random kernel would grow and be skipped (on_unfit="skip").
        "conv1.weight": (RNG.standard_normal((8, 2)) @ RNG.standard_normal((2, 27))).reshape(8, 3, 3, 3).astype(np.float32),
        "layers.0.attn.weight": RNG.standard_normal((16, 256)).astype(np.float32),
        "layers.0.mlp.up.weight": RNG.standard_normal((32, 256)).astype(np.float32),
        "layers.0.mlp.up.bias": np.zeros(32, np.float32),
    }
    result = sp.compress(weights, recipe, progress=False)
    stages = {r["name"]: r["stages"] for r in result.report}
    assert stages == {"embed.weight": "cluster.kmeans", "conv1.weight": "low_rank.auto",
                      "layers.0.attn.weight": "quantize.minmax", "layers.0.mlp.up.weight": "prune.nm+quantize.minmax",
                      "layers.0.mlp.up.bias": "-"}
    np.testing.assert_array_equal(result.tensors["layers.0.mlp.up.weight"].scale.shape, (32, 2))
    assert result.tensors["conv1.weight"].a.shape[0] == 8  # torch layout: (out, in*kh*kw)
    assert np.count_nonzero(result.weights["layers.0.mlp.up.weight"].reshape(-1, 4), axis=1).max() <= 2
