"""matmul on both SGEMM paths: the AVX-512 micro-kernel (taken where the CPU
has AVX-512) and the portable AVX2 one (forced with SWIFTPRUNE_DISABLE_AVX512=1,
read once per process, hence the subprocesses). Both are checked against
float64 NumPy, and against each other."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import swiftprune

# (m, k, n) around the 6-row and 16/32-column tiles and the 256/512-deep blocks.
SHAPES = [(1, 1, 1), (6, 7, 32), (7, 5, 33), (13, 300, 31), (50, 257, 95), (150, 520, 97), (101, 64, 70), (3, 40, 1100), (0, 4, 3)]
LAYOUTS = ["CC", "FC", "CF", "FF"]  # memory order of a and b: every transposition of the GEMM

CHILD = r"""
import sys
import numpy as np
import swiftprune as sp
data = np.load(sys.argv[1])
out = {}
for key in data.files:
    if key.startswith("a_"):
        name = key[2:]
        layout = name.split("_")[-1]
        a = data[key]; b = data["b_" + name]
        a = np.asfortranarray(a) if layout[0] == "F" else np.ascontiguousarray(a)
        b = np.asfortranarray(b) if layout[1] == "F" else np.ascontiguousarray(b)
        out[name] = sp.matmul(a, b)
np.savez(sys.argv[2], **out)
"""


def run_child(inputs: Path, output: Path, disable: bool) -> dict[str, np.ndarray]:
    env = dict(os.environ)
    env.pop("SWIFTPRUNE_DISABLE_AVX512", None)
    if disable:
        env["SWIFTPRUNE_DISABLE_AVX512"] = "1"
    package_root = str(Path(swiftprune.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = package_root + os.pathsep + env.get("PYTHONPATH", "")
    subprocess.run([sys.executable, "-c", CHILD, str(inputs), str(output)], env=env, check=True, timeout=120)
    with np.load(output) as results:
        return {name: results[name] for name in results.files}


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    rng = np.random.default_rng(7)
    arrays = {}
    for m, k, n in SHAPES:
        for layout in LAYOUTS:
            name = f"{m}x{k}x{n}_{layout}"
            arrays["a_" + name] = rng.uniform(-1, 1, (m, k)).astype(np.float32)
            arrays["b_" + name] = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    folder = tmp_path_factory.mktemp("gemm_avx512")
    np.savez(folder / "inputs.npz", **arrays)
    default = run_child(folder / "inputs.npz", folder / "default.npz", disable=False)
    portable = run_child(folder / "inputs.npz", folder / "portable.npz", disable=True)
    return arrays, default, portable


def test_both_paths_match_float64_numpy(products):
    arrays, default, portable = products
    assert set(default) == set(portable) == {key[2:] for key in arrays if key.startswith("a_")}
    for name, result in default.items():
        a = arrays["a_" + name].astype(np.float64)
        b = arrays["b_" + name].astype(np.float64)
        expected = a @ b
        k = a.shape[1]
        for path, got in (("default", result), ("portable", portable[name])):
            assert got.dtype == np.float32 and got.shape == expected.shape, (name, path)
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6 * max(k, 1) * 4, err_msg=f"{name} {path}")


def test_paths_agree(products):
    arrays, default, portable = products
    if swiftprune._core.cpu_has_avx512() and "SWIFTPRUNE_DISABLE_AVX512" not in os.environ:
        # The AVX-512 path splits the depth in blocks of 512, the portable one
        # in 256: a product with 256 < k rounds differently, which shows the
        # default process really took the AVX-512 path.
        deep = [name for name in default if arrays["a_" + name].shape[1] > 256 and default[name].size]
        assert any(not np.array_equal(default[name], portable[name]) for name in deep)
    for name, result in default.items():
        k = arrays["a_" + name].shape[1]
        if k <= 256:
            # One depth block on both paths: the same operations in the same order.
            np.testing.assert_array_equal(result, portable[name], err_msg=name)
        else:
            np.testing.assert_allclose(result, portable[name], rtol=0, atol=1e-6 * k, err_msg=name)

