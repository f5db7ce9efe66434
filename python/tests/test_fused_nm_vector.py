"""The fused pass's vector path (2:4, 1-8 bits, groups of a multiple of 32
columns, any source dtype): every byte it writes equals an independent
reference — NumPy's 2:4 ranking, the staged quantizer and the staged
encoders — on adversarial weights (ties, ±0, zero runs, subnormals, codes
that round to the zero point), with several workers."""
from __future__ import annotations

import numpy as np
import pytest

import swiftprune as sp
from swiftprune import _core
from swiftprune.threads import get_num_threads, set_num_threads
from _fused_reference import assert_encodings_equal_staged, staged_quantized

ml_dtypes = pytest.importorskip("ml_dtypes")


def _keep_2_4(w: np.ndarray) -> np.ndarray:
    """The 2:4 mask by its definition: per run of 4, keep the 2 largest |w|, ties to the lower index."""
    runs = np.abs(w.astype(np.float64)).reshape(-1, 4)
    # stable sort of -|w|: equal magnitudes keep index order, so the lower index ranks first
    order = np.argsort(-runs, axis=1, kind="stable")
    keep = np.zeros(runs.shape, bool)
    np.put_along_axis(keep, order[:, :2], True, axis=1)
    return keep.reshape(w.shape)


def _adversarial(rng: np.random.Generator, rows: int, columns: int) -> np.ndarray:
    w = rng.standard_normal((rows, columns)).astype(np.float32)
    w[rng.random(w.shape) < 0.25] *= 1e-3                   # kept codes that round to the zero point
    w[: rows // 4] = rng.choice(np.array([-1, -0.5, -0.0, 0.0, 0.5, 1], np.float32), size=(rows // 4, columns))
    w[rows // 4: rows // 4 + 2] = 0.0                       # whole zero rows (scale 1)
    w[rows // 2, ::3] = -0.0
    w[rows // 2 + 1] *= 1e-40                               # subnormals
    w[-3:, 32:] *= 1e-4                                      # one group much larger than the rest of its row
    return w


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
@pytest.mark.parametrize("bits, symmetric, group", [(4, True, 128), (2, True, 32), (6, False, 64), (7, True, 96),
                                                    (8, False, 32), (4, False, None)])
def test_vector_path_equals_references(dtype, bits, symmetric, group):
    rng = np.random.default_rng(bits * 10 + (group or 0))
    rows, columns = 200, 384
    w = _adversarial(rng, rows, columns)
    if dtype == "bfloat16":
        w = w.astype(ml_dtypes.bfloat16)
        given = w.view(np.uint16)
    else:
        w = w.astype(dtype)
        given = w
    reference = w.astype(np.float32)
    group_size = group or columns
    previous = get_num_threads()
    set_num_threads(3)  # several workers: the bitmask values of each are moved together
    try:
        scales, zeros, nm_values, positions, mask, values, nonzeros, norm, difference = \
            _core.nm_quantize_encode(given, 2, 4, bits, symmetric, group_size)
    finally:
        set_num_threads(previous)
    keep = _keep_2_4(reference)
    np.testing.assert_array_equal(keep, sp.nm_mask(reference, 2, 4))
    q = staged_quantized(reference, keep, bits, symmetric, group)
    np.testing.assert_array_equal(zeros, q.zero_point.astype(zeros.dtype))
    assert_encodings_equal_staged(q, reference, bits, scales, nm_values, positions, mask, values, nonzeros, norm,
                                  difference)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_vector_path_refuses_inf_and_nan(dtype, bad):
    w = np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32)
    w[9, 45] = bad
    given = w.astype(ml_dtypes.bfloat16).view(np.uint16) if dtype == "bfloat16" else w.astype(dtype)
    with pytest.raises(ValueError, match="NaN or Inf"):
        _core.nm_quantize_encode(given, 2, 4, 4, True, 32)


def test_vector_path_largest_finite_is_not_inf():
    """The Inf test is on the keys' exponent: the largest finite magnitudes pass, and rank as the largest."""
    w = np.random.default_rng(1).standard_normal((8, 32)).astype(np.float32)
    w[2, 5] = np.finfo(np.float32).max
    w[3, 6] = -np.finfo(np.float32).max
    scales, _, _, _, mask, _, _, _, _ = _core.nm_quantize_encode(w, 2, 4, 8, True, 32)
    nonzero = np.unpackbits(mask).reshape(w.shape).astype(bool)
    assert nonzero[2, 5] and nonzero[3, 6]
    assert scales[2, 0] == np.float32(np.float64(np.finfo(np.float32).max) / 127)
