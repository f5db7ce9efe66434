"""Candidate encodings of the planner: conv kernels quantized in groups along
input-channel x kernel, per-channel and grouped-channel palettization, float16
storage; against NumPy references, and saved/loaded bit-exactly."""
from __future__ import annotations

import numpy as np
import pytest

import swiftprune as sp
from _reference_quantization import reference_dequantize, reference_kmeans_1d, reference_quantize


def conv_matrix(w, layout):
    """The conv kernel's 2-D matrix view, written from the documented layout."""
    if layout == "keras":  # (kh, kw, in, out) -> (kh*kw*in, out), input channel fastest
        return w.reshape(-1, w.shape[-1]), 1
    return w.reshape(w.shape[0], -1), 0  # (out, in, kh, kw) -> (out, in*kh*kw)


@pytest.mark.parametrize("layout,shape,group", [
    ("keras", (3, 3, 8, 6), 8), ("keras", (3, 3, 8, 6), 24), ("keras", (1, 1, 32, 5), 16),
    ("torch", (6, 4, 3, 3), 12), ("torch", (5, 16, 1, 1), 8), ("torch", (4, 2, 3), 3),
])
@pytest.mark.parametrize("bits,symmetric", [(4, True), (3, False), (8, True)])
def test_conv_groups_match_the_matrix_view_reference(layout, shape, group, bits, symmetric):
    rng = np.random.default_rng(sum(shape) + bits)
    w = rng.standard_normal(shape).astype(np.float32)
    axis = -1 if layout == "keras" else 0
    q = sp.quantize(w, bits, axis=axis, group_size=group, symmetric=symmetric)
    matrix, matrix_axis = conv_matrix(w, layout)
    values, scale, zero = reference_quantize(matrix, bits, symmetric, matrix_axis, group)
    np.testing.assert_array_equal(q.values.reshape(matrix.shape), values)
    np.testing.assert_array_equal(q.scale.reshape(scale.shape), scale)
    # the documented rank-preserving scale layout: groups in the first non-channel axis
    expected = [1] * len(shape)
    expected[axis] = shape[axis]
    expected[1 if axis == 0 else 0] = matrix.size // shape[axis] // group
    assert q.scale.shape == tuple(expected)
    np.testing.assert_array_equal(q.dequantize(),
                                  reference_dequantize(values, scale, zero, matrix_axis, group).reshape(shape))
    # values packed at their bit width, float32 scales, one byte per zero point (affine)
    assert q.nbytes == (w.size * bits + 7) // 8 + 4 * scale.size + (0 if symmetric else scale.size)


def test_conv_group_errors_name_the_problem():
    w = np.ones((6, 4, 3, 3), np.float32)
    with pytest.raises(ValueError, match="input-channel x kernel dimension 36"):
        sp.quantize(w, 4, axis=0, group_size=5)
    with pytest.raises(ValueError, match="channel axis first"):
        sp.quantize(w, 4, axis=1, group_size=4)
    with pytest.raises(ValueError, match="rank 2 or more"):
        sp.quantize(np.ones(8, np.float32), 4, axis=0, group_size=4)


def test_grouped_conv_kernels_beat_per_channel_scales():
    # one outlier input channel: groups confine its large scale to its own group
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 3, 32, 8)).astype(np.float32)
    w[:, :, 0, :] *= 20
    per_channel = sp.quantize(w, 4, axis=-1).dequantize()
    grouped = sp.quantize(w, 4, axis=-1, group_size=8).dequantize()
    assert sp.relative_error(w, grouped) < 0.6 * sp.relative_error(w, per_channel)


@pytest.mark.parametrize("shape,axis,group", [((12, 40), 0, None), ((12, 40), 0, 3), ((3, 3, 6, 8), -1, None),
                                              ((3, 3, 6, 8), -1, 4), ((3, 3, 16, 1), 2, None), ((5, 2, 3, 3), 0, 5)])
@pytest.mark.parametrize("k", [4, 16])
def test_palettes_per_channel_match_one_reference_kmeans_per_group(shape, axis, group, k):
    rng = np.random.default_rng(k + len(shape))
    w = rng.standard_normal(shape).astype(np.float32)
    c = sp.cluster(w, k, axis=axis, group_size=group, max_iter=1000)
    a = axis % w.ndim
    g = group or 1
    palettes = shape[a] // g
    assert c.centroids.shape == (palettes, k) and c.indices.shape == shape
    moved = np.moveaxis(w, a, 0).reshape(palettes, -1)
    got = np.moveaxis(c.dequantize(), a, 0).reshape(palettes, -1)
    for p in range(palettes):
        # the batched kernel equals one unbatched cluster() per palette, bit for bit
        single = sp.cluster(moved[p], k, max_iter=1000)
        np.testing.assert_array_equal(c.centroids[p], single.centroids)
        if moved[p].size >= 20 * k:  # (small rows hit empty-cluster relocation, which plain Lloyd lacks)
            np.testing.assert_allclose(c.centroids[p], reference_kmeans_1d(moved[p], k), rtol=1e-5, atol=1e-6)
        nearest = np.argmin(np.abs(moved[p][:, None].astype(np.float64) - c.centroids[p][None, :]), axis=1)
        np.testing.assert_array_equal(got[p], c.centroids[p][nearest])
    bits = int(np.ceil(np.log2(k)))
    assert c.nbytes == (w.size * bits + 7) // 8 + 4 * palettes * k


def test_depthwise_kernels_need_per_channel_palettes():
    # channels of very different scales: one palette for all destroys the small ones
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((3, 3, 16, 1)) * np.logspace(-2, 1, 16)[None, None, :, None]).astype(np.float32)
    small = slice(0, 4)
    tensor = sp.cluster(w, 16).dequantize()
    channel = sp.cluster(w, 16, axis=2).dequantize()
    assert sp.relative_error(w[:, :, small], channel[:, :, small]) < 0.1
    assert sp.relative_error(w[:, :, small], tensor[:, :, small]) > 0.5


def test_palette_errors():
    w = np.ones((6, 4), np.float32)
    with pytest.raises(ValueError, match="does not divide the 6 channels"):
        sp.cluster(w, 4, axis=0, group_size=4)
    with pytest.raises(ValueError, match="needs an axis"):
        sp.cluster(w, 4, group_size=2)
    with pytest.raises(ValueError, match="out of range"):
        sp.cluster(w, 4, axis=2)
    with pytest.raises(ValueError, match="NaN or Inf"):
        sp.cluster(np.array([[1.0, np.nan]], np.float32), 2, axis=0)
    with pytest.raises(ValueError, match="centroids must have shape"):
        sp.ClusteredTensor(np.zeros((6, 4), np.uint8), np.zeros((5, 4), np.float32), axis=0)


def test_empty_and_tiny_palettes():
    c = sp.cluster(np.zeros((3, 0), np.float32), 4, axis=0)
    assert c.centroids.shape == (3, 4) and c.dequantize().shape == (3, 0)
    w = np.array([[1.0, 2.0], [3.0, 3.0]], np.float32)
    np.testing.assert_array_equal(sp.cluster(w, 4, axis=0).dequantize(), w)  # fewer values than colours: exact


def test_new_encodings_save_and_load_bit_exactly(tmp_path):
    rng = np.random.default_rng(2)
    weights = {"conv": rng.standard_normal((8, 4, 3, 3)).astype(np.float32),
               "kconv": rng.standard_normal((3, 3, 8, 6)).astype(np.float32),
               "dw": rng.standard_normal((3, 3, 16, 1)).astype(np.float32),
               "fc": rng.standard_normal((16, 12)).astype(np.float32),
               "big": rng.standard_normal((40, 40)).astype(np.float32)}
    recipe = [
        {"quantize": {"bits": 4, "axis": 0, "group_size": 12}, "include": "conv"},
        {"cluster": {"n_clusters": 8, "axis": -1, "group_size": 2}, "include": "kconv"},
        # 300 centroids per channel grow a 9-value channel: kept anyway (on_unfit="warn") to test uint16 indices
        {"cluster": {"n_clusters": 300, "axis": 2}, "include": "dw", "on_unfit": "warn"},
        {"quantize": {"method": "float16"}, "include": "fc"},
        {"prune": {"sparsity": 0.5}, "include": "big"},
        {"cluster": {"n_clusters": 4, "axis": 0}, "include": "big"},
    ]
    result = sp.compress(weights, recipe, progress=False)
    np.testing.assert_array_equal(result.weights["fc"], weights["fc"].astype(np.float16).astype(np.float32))
    assert np.all(result.weights["big"][~sp.magnitude_mask(weights["big"], 0.5)] == 0)
    path = tmp_path / "c.safetensors"
    result.save(path)
    back = sp.load_compressed(path)
    for name in weights:
        np.testing.assert_array_equal(back.weights[name], result.weights[name])
    assert back.tensors["kconv"].centroids.shape == (3, 8)
    assert back.tensors["dw"].indices.dtype == np.uint16
    assert [r["bytes_after"] for r in back.report] == [r["bytes_after"] for r in result.report]
    assert result.report[3]["bytes_after"] == weights["fc"].size * 2


def test_float16_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="float16 range"):
        sp.compress({"w": np.full((2, 2), 1e6, np.float32)}, [{"quantize": {"method": "float16"}}], progress=False)
