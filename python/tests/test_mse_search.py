"""quantize(method="mse") against a float64 NumPy transcription of its clipping search."""
from __future__ import annotations

import numpy as np
import pytest

import swiftprune as sp
from _reference_quantization import group_errors, reference_mse_search


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bits,symmetric,group", [(2, True, 128), (3, False, 36), (4, True, 36), (4, False, 128),
                                                  (8, False, 36)])
def test_mse_search_matches_float64_reference(dtype, bits, symmetric, group):
    rng = np.random.default_rng(bits * 100 + group)
    rows, cols = 64, group * 6
    # Heavy tails and a shifted half: clipping pays off in some groups, not in others.
    w = rng.standard_t(3, size=(rows, cols)) * 0.02
    w[rows // 2:] += 0.01
    w = w.astype(dtype)
    q = sp.quantize(w, bits, symmetric=symmetric, axis=0, group_size=group, method="mse")
    groups = w.reshape(-1, group)
    scale, zero = np.asarray(q.scale, np.float32).reshape(-1), np.asarray(q.zero_point, np.int64).reshape(-1)
    ours = group_errors(groups, scale, zero, bits, symmetric)
    ref_scale, ref_zero, ref_error = reference_mse_search(groups, bits, symmetric)
    minmax = sp.quantize(w, bits, symmetric=symmetric, axis=0, group_size=group)
    minmax_error = group_errors(groups, np.asarray(minmax.scale).reshape(-1), np.asarray(minmax.zero_point,
                                np.int64).reshape(-1), bits, symmetric)
    # Never worse than minmax, per group; as good as the reference's choice, per group (the sums
    # differ only in rounding: float32 differences against exact float64 ones).
    assert (ours <= minmax_error * (1 + 1e-9)).all()
    np.testing.assert_array_less(ours, ref_error * (1 + 2e-6) + 1e-30)
    # The same clip in nearly every group (a different one only on a near-tie).
    same = (scale == ref_scale) & (zero == ref_zero)
    assert same.mean() >= 0.97, same.mean()
    # The stored codes are the quantizer's for the chosen range.
    np.testing.assert_array_equal(np.asarray(q.values).reshape(-1, group).astype(np.int64),
                                  np.clip(np.round(groups / scale[:, None].astype(groups.dtype)) + zero[:, None],
                                          *((-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1) if symmetric
                                            else (0, 2 ** bits - 1))))
    assert (ours < minmax_error).any() and (~same).sum() <= len(same) * 0.03
