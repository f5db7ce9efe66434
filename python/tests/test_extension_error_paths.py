"""The C extension's error paths release what they took (issue 16, round 7).

Every ``core_*`` function converts its inputs (a new reference, or the same
array with one more reference when no conversion is needed), allocates its
outputs with NumPy, then calls Swift; a failure at any step must drop all of
those. Each case below fails after the inputs are converted and, where the
function allocates one before its check, after the output exists: repeated
50 times, a leaked input reference shows in ``sys.getrefcount`` and a leaked
output (about 1 MB each) in ``tracemalloc`` (NumPy reports its data
allocations to it).
"""
from __future__ import annotations

import sys
import tracemalloc

import numpy as np
import pytest

from swiftprune import _core

ROWS, COLS = 512, 512  # a float32 output of 1 MB


def _w():
    return np.ones((ROWS, COLS), np.float32)


def _cases():
    w = _w()
    nan_w = _w()
    nan_w[3, 4] = np.nan
    wrong_x = np.ones((4, COLS + 1), np.float32)
    x = np.ones((4, COLS), np.float32)
    h = np.eye(COLS)
    keep = np.ones(ROWS * COLS, bool)
    return {
        # (callable, the arrays whose references must not leak, the exception)
        "magnitude_mask (Swift error after the output)": (lambda: _core.magnitude_mask(nan_w, 0.5), [nan_w], ValueError),
        "structured_mask (bad axis)": (lambda: _core.structured_mask(w, 0.5, 5, 2.0, True), [w], ValueError),
        "structured_mask (Swift error)": (lambda: _core.structured_mask(nan_w, 0.5, 0, 2.0, False), [nan_w], ValueError),
        "wanda_mask (features differ)": (lambda: _core.wanda_mask(w, wrong_x, 0.5), [w, wrong_x], ValueError),
        "wanda_mask (Swift error)": (lambda: _core.wanda_mask(nan_w, x, 0.5), [nan_w, x], ValueError),
        "sparsegpt (Swift error)": (lambda: _core.sparsegpt(w, x, 1.5, 0, 0, 128, 0.01), [w, x], ValueError),
        "sparsegpt_hessian (h shape)": (lambda: _core.sparsegpt_hessian(w, h[:-1], 0.5, 0, 0, 128, 0.01), [w], ValueError),
        "sparsegpt_hessian (Swift error)": (lambda: _core.sparsegpt_hessian(w, h, 1.5, 0, 0, 128, 0.01), [w, h], ValueError),
        "hessian_accumulate (shape)": (lambda: _core.hessian_accumulate(wrong_x, np.zeros((COLS, COLS))), [wrong_x],
                                       ValueError),
        "quantize (bad axis)": (lambda: _core.quantize(w, 4, True, 5, 0, 0, 99.9), [w], ValueError),
        "quantize (Swift error after the outputs)": (lambda: _core.quantize(nan_w, 4, True, 0, 0, 0, 99.9), [nan_w],
                                                     ValueError),
        "gptq_hessian (Swift error after the outputs)": (
            lambda: _core.gptq_hessian(nan_w, h, 4, True, 128, 0.01, 128, False, False, 0), [nan_w, h], ValueError),
        "gptq (shapes)": (lambda: _core.gptq(w.astype(np.float64), wrong_x.astype(np.float64), 4, True, 128, 0.01), [],
                          ValueError),
        "cluster_fit_rows (not 2-D)": (lambda: _core.cluster_fit_rows(w.ravel(), 4, 0, 10, 0), [w], ValueError),
        "svd (Swift error after the factors)": (lambda: _core.svd(nan_w), [nan_w], ValueError),
        "randomized_svd (rank)": (lambda: _core.randomized_svd(w, ROWS + 1, 8, 2, 0), [w], ValueError),
        "low_rank (Swift error)": (lambda: _core.low_rank(nan_w, 0, 16.0, 0, 0), [nan_w], ValueError),
        "matmul (inner dimensions)": (lambda: _core.matmul(w, wrong_x), [w, wrong_x], ValueError),
        "csr_from_dense (Swift error after indptr)": (lambda: _core.csr_from_dense(nan_w), [nan_w], ValueError),
        "nm_from_dense (m)": (lambda: _core.nm_from_dense(w, 3, 5), [w], ValueError),
        "nm_from_dense (Swift error after the outputs)": (lambda: _core.nm_from_dense(nan_w, 2, 4), [nan_w], ValueError),
        "nm_matmul (short values)": (lambda: _core.nm_matmul(keep[:8].astype(np.float32), keep[:8].view(np.uint8), ROWS, COLS,
                                                             2, 4, x.T.copy()), [], ValueError),
        "nm_to_dense (short indices)": (lambda: _core.nm_to_dense(w, keep[:8].view(np.uint8), ROWS, COLS * 2, 2, 4), [w],
                                        ValueError),
        "mask_compact (kept)": (lambda: _core.mask_compact(w, keep, ROWS * COLS + 1), [w, keep], ValueError),
        "apply_mask (sizes)": (lambda: _core.apply_mask(w, keep[:-1]), [w], ValueError),
        "quantized_matmul (Swift error after y)": (
            lambda: _core.quantized_matmul(np.ones((ROWS, COLS), np.int8), np.ones(ROWS, np.float32), None, nan_w),
            [nan_w], ValueError),
    }


@pytest.mark.parametrize("name", sorted(_cases()))
def test_failed_call_releases_inputs_and_outputs(name):
    call, inputs, error = _cases()[name]
    with pytest.raises(error):
        call()  # warm up: caches, thread pools, interned strings
    before = [sys.getrefcount(a) for a in inputs]
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        for _ in range(50):
            with pytest.raises(error):
                call()
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [sys.getrefcount(a) for a in inputs] == before
    assert end - start < 1 << 20, f"{(end - start) >> 10} KiB still allocated after 50 failed calls"
