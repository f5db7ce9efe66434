"""Odd inputs across the whole API: every failure is a clear Python exception.

The grid runs in a child process, so that a crash of the interpreter (a Swift
trap, a segfault) fails this test instead of killing the test run.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

GRID = textwrap.dedent(
    """
    import itertools, warnings
    import numpy as np
    import swiftprune as sp

    warnings.simplefilter("ignore")
    arrays = [np.zeros(0, np.float32), np.float32(3.0), np.ones((1,), np.float64), np.ones((0, 5), np.float32),
              np.ones((5, 0), np.float32), np.arange(12, dtype=np.float16).reshape(3, 4),
              np.full((4, 4), np.nan, np.float32), np.ones((2, 3, 4, 5)), np.arange(6).reshape(2, 3),
              np.ones((3,), bool), np.array([1e38, -1e38], np.float32), np.array([5e-324, 0.0]),
              np.ones((1, 1), np.float32)]
    args = [0.5, -1, 2, 0, 1, 1.0, None, "x", np.nan, 10**20, -10**20, (1, 4), (0, 0), 3.5]

    def width(w):
        return w.shape[-1] if np.ndim(w) else 1

    calls = {
        "magnitude_mask": lambda w, a: sp.magnitude_mask(w, a),
        "random_mask": lambda w, a: sp.random_mask(w, a),
        "structured_mask": lambda w, a: sp.structured_mask(w, 0.5, axis=a),
        "nm_mask": lambda w, a: sp.nm_mask(w, 2, 4, axis=a),
        "block_mask": lambda w, a: sp.block_mask(w, 0.5, block=a),
        "quantize bits": lambda w, a: sp.quantize(w, a),
        "quantize axis": lambda w, a: sp.quantize(w, 4, axis=a),
        "quantize group": lambda w, a: sp.quantize(w, 4, axis=0, group_size=a),
        "cluster": lambda w, a: sp.cluster(w, a),
        "cluster axis": lambda w, a: sp.cluster(w, 4, axis=a),
        "cluster group": lambda w, a: sp.cluster(w, 4, axis=0, group_size=a),
        "quantize conv group": lambda w, a: sp.quantize(w, 4, axis=-1, group_size=a),
        "sensitivity": lambda w, a: sp.sensitivity({"w": w}, ["int4", "pal4:g2", "lowrank0.5"], progress=False,
                                                   calibration={"w": np.ones((3, width(w)))} if a == 1 else None),
        "plan": lambda w, a: sp.plan({"w": w}, target_ratio=a, candidates=["int4", "pal8", "float16"],
                                     progress=False),
        "low_rank rank": lambda w, a: sp.low_rank(w, rank=a),
        "low_rank energy": lambda w, a: sp.low_rank(w, energy=a),
        "low_rank ratio": lambda w, a: sp.low_rank(w, ratio=a),
        "svd": lambda w, a: sp.svd(w),
        "randomized_svd": lambda w, a: sp.randomized_svd(w, a),
        "cast": lambda w, a: sp.cast(w, "bfloat16"),
        "csr": lambda w, a: sp.CSRMatrix.from_dense(w).matmul(np.ones((width(w), 2), np.float32)),
        "nm matrix": lambda w, a: sp.NMSparseMatrix.from_dense(w, 2, 4),
        "matmul": lambda w, a: sp.matmul(w, w.T if np.ndim(w) == 2 else w),
        "wanda": lambda w, a: sp.wanda_mask(w, np.ones((3, width(w))), a),
        "sparsegpt": lambda w, a: sp.sparsegpt(w, np.ones((3, width(w))), a),
        "gptq": lambda w, a: sp.gptq(w, np.ones((3, width(w))), bits=a),
        "global": lambda w, a: sp.global_magnitude_masks([w, w], a),
        "compress": lambda w, a: sp.compress([w], [{"prune": {"sparsity": a}}]),
    }
    unexpected = []
    for (name, call), w, a in itertools.product(calls.items(), arrays, args):
        try:
            call(w, a)
        except (ValueError, TypeError, MemoryError, OverflowError):
            pass
        except Exception as error:
            unexpected.append(f"{name}(shape={np.shape(w)}, dtype={getattr(w, 'dtype', None)}, arg={a!r}): "
                              f"{type(error).__name__}: {error}")
    print("\\n".join(unexpected))
    """
)


def test_odd_inputs_raise_python_errors_and_never_crash():
    result = subprocess.run([sys.executable, "-c", GRID], capture_output=True, text=True, env=dict(os.environ),
                            timeout=600)
    assert result.returncode == 0, f"the interpreter died ({result.returncode}):\n{result.stderr[-2000:]}"
    assert result.stdout.strip() == "", "unexpected exception types:\n" + result.stdout
