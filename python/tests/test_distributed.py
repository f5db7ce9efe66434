"""Sharded checkpoints: reading, writing, compress_file over shards, exact global pruning in passes.

References are independent of the code under test: the `safetensors` package reads and writes
the shards, NumPy computes global magnitude masks by a stable argsort of the concatenation, and
a pruned model must equal the original with the pruned entries zeroed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import swiftprune as sp
from swiftprune.distributed import GlobalMagnitudePlan, ShardedCheckpoint, compress_sharded, save_sharded
from swiftprune.distributed.layout import parse_size

from _reference_pruning import global_magnitude
from _sharded_models import checkpoint_order, tensors, write_checkpoint

safetensors = pytest.importorskip("safetensors")
from safetensors import safe_open  # noqa: E402


def _files(directory):
    return sorted(f for f in os.listdir(directory))


def _read_all(directory):
    """Every tensor of every shard, through the safetensors package."""
    out = {}
    for file in sorted(f for f in os.listdir(directory) if f.endswith(".safetensors")):
        with safe_open(os.path.join(directory, file), "np") as f:
            for key in f.keys():
                out[key] = f.get_tensor(key)
    return out


# --------------------------------------------------------------------------- #
# Reading and writing sharded checkpoints
# --------------------------------------------------------------------------- #


def test_sharded_checkpoint_reads_what_safetensors_wrote(tmp_path):
    weights = tensors(dtype="float16")
    write_checkpoint(str(tmp_path / "ckpt"), weights, shards=3)
    for source in (tmp_path / "ckpt", tmp_path / "ckpt" / "model.safetensors.index.json"):
        loaded = sp.load_weights(source)
        assert isinstance(loaded, ShardedCheckpoint) and len(loaded.shards) == 3
        assert loaded.names == checkpoint_order(str(tmp_path / "ckpt"))
        assert set(loaded) == set(weights)
        for name, array in weights.items():
            np.testing.assert_array_equal(loaded[name], array)
            assert loaded[name].dtype == array.dtype


def test_index_that_disagrees_with_the_shards_is_an_error(tmp_path):
    write_checkpoint(str(tmp_path / "c"), tensors(), shards=2)
    index = tmp_path / "c" / "model.safetensors.index.json"
    document = json.loads(index.read_text())
    name = next(iter(document["weight_map"]))
    document["weight_map"][name] = "model-00009-of-00009.safetensors"
    index.write_text(json.dumps(document))
    with pytest.raises(FileNotFoundError, match="model-00009"):
        ShardedCheckpoint(tmp_path / "c")
    document["weight_map"][name] = "model-00002-of-00002.safetensors" if name not in _read_shard_names(
        tmp_path / "c" / "model-00002-of-00002.safetensors") else "model-00001-of-00002.safetensors"
    index.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        ShardedCheckpoint(tmp_path / "c")
    del document["weight_map"][name]
    index.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="missing from the weight_map"):
        ShardedCheckpoint(tmp_path / "c")


def _read_shard_names(path):
    with safe_open(str(path), "np") as f:
        return set(f.keys())


def test_save_weights_to_a_folder_writes_bounded_shards_and_a_correct_index(tmp_path):
    weights = tensors(dtype="float32")
    limit = 20_000
    sp.save_weights(tmp_path / "out", weights, max_shard_size=limit)
    files = [f for f in _files(tmp_path / "out") if f.endswith(".safetensors")]
    assert len(files) > 2
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == sum(a.nbytes for a in weights.values())
    assert set(index["weight_map"]) == set(weights)
    for file in files:
        assert file.endswith(f"-of-{len(files):05d}.safetensors")
        with safe_open(str(tmp_path / "out" / file), "np") as f:
            keys = list(f.keys())
            sizes = [f.get_tensor(k).nbytes for k in keys]
        assert sum(sizes) <= limit or len(keys) == 1
        assert all(index["weight_map"][k] == file for k in keys)
    back = _read_all(tmp_path / "out")
    for name, array in weights.items():
        np.testing.assert_array_equal(back[name], array)
    # Saving again with bigger shards removes the old ones.
    sp.save_weights(tmp_path / "out", weights, max_shard_size="1GB")
    assert [f for f in _files(tmp_path / "out") if f.endswith(".safetensors")] == ["model-00001-of-00001.safetensors"]


def test_parse_size():
    assert parse_size("5GB") == 5 * 10**9 and parse_size("2GiB") == 2 * 2**30 and parse_size(123) == 123
    with pytest.raises(ValueError, match="max_shard_size"):
        parse_size("5 parsecs")
    with pytest.raises(ValueError, match="max_shard_size"):
        parse_size(0)


# --------------------------------------------------------------------------- #
# compress_file over shards
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_dense_output_keeps_the_half_precision_dtype_and_zeroes_exactly_the_pruned(tmp_path, dtype):
    weights = tensors(dtype=dtype)
    write_checkpoint(str(tmp_path / "in"), weights, shards=3)
    report = sp.compress_file(tmp_path / "in", tmp_path / "out", [{"prune": {"method": "nm", "n": 2, "m": 4}}],
                              dense=True, progress=False, max_shard_size=8_000)
    out = _read_all(tmp_path / "out")
    assert set(out) == set(weights)
    for name, original in weights.items():
        got = out[name]
        assert got.dtype == original.dtype, name
        if original.ndim >= 2 and original.dtype.kind != "i":
            mask = sp.nm_mask(np.asarray(original, dtype=np.float32), 2, 4)
            bits_in = np.asarray(original).view(np.uint16)
            # The same bits where kept, +0.0 where pruned: bit-exact, no rounding anywhere.
            np.testing.assert_array_equal(got.view(np.uint16), np.where(mask, bits_in, 0), err_msg=name)
        else:
            np.testing.assert_array_equal(got.view(np.uint8), np.asarray(original).view(np.uint8), err_msg=name)
    rows = {r["name"]: r for r in report}
    assert rows["layers.0.attn.q.weight"]["dtype"] == dtype
    assert rows["layers.0.attn.q.weight"]["bytes_before"] == 32 * 64 * 2


def test_dense_bfloat16_after_quantization_is_rounded_to_nearest_even(tmp_path):
    import ml_dtypes

    weights = {"w": np.random.default_rng(1).normal(size=(16, 64)).astype(ml_dtypes.bfloat16)}
    write_checkpoint(str(tmp_path / "in"), weights, shards=1)
    sp.compress_file(tmp_path / "in", tmp_path / "out", [{"quantize": {"bits": 4, "axis": 0}}], dense=True,
                     progress=False)
    reference = sp.quantize(np.asarray(weights["w"], dtype=np.float32), 4, axis=0).dequantize()
    got = _read_all(tmp_path / "out")["w"]
    np.testing.assert_array_equal(got.view(np.uint16), reference.astype(ml_dtypes.bfloat16).view(np.uint16))


def test_compressed_sharded_output_equals_the_in_memory_result(tmp_path):
    weights = tensors(dtype="float32")
    write_checkpoint(str(tmp_path / "in"), weights, shards=3)
    recipe = [{"prune": {"method": "nm"}, "include": "layers.*"}, {"quantize": {"bits": 4, "axis": 0, "group_size": 16}}]
    report = sp.compress_file(tmp_path / "in", tmp_path / "out", recipe, progress=False, max_shard_size=6_000)
    expected = sp.compress(sp.load_weights(tmp_path / "in"), recipe, progress=False)
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1
    got_dense = {}
    for shard in shards:
        part = sp.load_compressed(tmp_path / "out" / shard)
        got_dense.update(part.weights)
        with safe_open(str(tmp_path / "out" / shard), "np") as f:
            assert all(index["weight_map"][k] == shard for k in f.keys())
            assert sum(f.get_tensor(k).nbytes for k in f.keys()) <= 6_000 or len(part.tensors) == 1
    assert set(index["weight_map"]) == {k for s in shards for k in _read_shard_names(tmp_path / "out" / s)}
    assert list(got_dense) == list(expected.weights)
    for name in expected.weights:
        np.testing.assert_array_equal(got_dense[name], expected.weights[name], err_msg=name)
    assert [r["name"] for r in report] == list(expected.weights)
    for row, ref in zip(report, expected.report):
        assert row["nonzeros"] == ref["nonzeros"] and row["bytes_after"] == ref["bytes_after"]
        assert row["relative_error"] == pytest.approx(ref["relative_error"], rel=1e-12)
    # The index stores each shard's checksum, and inspect reads the folder.
    import hashlib
    for shard, digest in index["metadata"]["swiftprune"]["sha256"].items():
        assert hashlib.sha256((tmp_path / "out" / shard).read_bytes()).hexdigest() == digest


def test_sharded_source_to_a_single_file(tmp_path):
    weights = tensors(dtype="float32")
    write_checkpoint(str(tmp_path / "in"), weights, shards=3)
    recipe = [{"prune": {"sparsity": 0.5}}]
    sp.compress_file(tmp_path / "in", tmp_path / "one.safetensors", recipe, progress=False)
    sp.compress_file(tmp_path / "in", tmp_path / "dense.npz", recipe, progress=False)
    expected = sp.compress(sp.load_weights(tmp_path / "in"), recipe, progress=False)
    got = sp.load_compressed(tmp_path / "one.safetensors")
    npz = np.load(tmp_path / "dense.npz")
    for name in expected.weights:
        np.testing.assert_array_equal(got.weights[name], expected.weights[name])
        np.testing.assert_array_equal(npz[name], expected.weights[name])
    assert [f for f in _files(tmp_path) if f.startswith(".")] == []


# --------------------------------------------------------------------------- #
# Exact global magnitude pruning in passes
# --------------------------------------------------------------------------- #


def _plan_masks(arrays, sparsity):
    plan = GlobalMagnitudePlan(sparsity)
    names = [str(i) for i in range(len(arrays))]
    passes = 0
    while not plan.complete:
        plan.merge([(n, plan.statistics(n, a)) for n, a in zip(names, arrays) if plan.needs(n)])
        passes += 1
    return [plan.apply(n, a) for n, a in zip(names, arrays)], passes


@pytest.mark.parametrize("case", range(12))
def test_global_magnitude_plan_equals_numpy_and_the_in_memory_masks(case):
    rng = np.random.default_rng(case)
    kinds = ["normal", "grid", "bf16", "zeros"]
    arrays = []
    for t in range(int(rng.integers(1, 6))):
        size = int(rng.integers(0, 3000))
        kind = kinds[(case + t) % 4]
        w = rng.normal(size=size).astype(np.float32)
        if kind == "grid":
            w = np.round(w * 4) / 4
        elif kind == "bf16":
            w = (w.view(np.uint32) & 0xFFFF0000).view(np.float32)
        elif kind == "zeros":
            w[:] = -0.0 if t % 2 else 0.0
        arrays.append(w.astype(np.float32).reshape(-1, 1) if size % 2 == 0 else w.astype(np.float32))
    for sparsity in (0.0, 0.3, 0.5, 0.9, 1.0, float(rng.random())):
        got, passes = _plan_masks(arrays, sparsity)
        assert passes <= 2
        for g, r, m in zip(got, global_magnitude(arrays, sparsity), sp.global_magnitude_masks(arrays, sparsity)):
            np.testing.assert_array_equal(g, r)
            np.testing.assert_array_equal(g, m)


def test_bfloat16_valued_weights_need_a_single_statistics_pass():
    w = (np.random.default_rng(3).normal(size=10_000).astype(np.float32).view(np.uint32) & 0xFFFF0000).view(np.float32)
    masks, passes = _plan_masks([w, w[::-1].copy()], 0.5)
    assert passes == 1
    for g, r in zip(masks, global_magnitude([w, w[::-1]], 0.5)):
        np.testing.assert_array_equal(g, r)


def test_global_magnitude_plan_rejects_nan_naming_the_tensor():
    plan = GlobalMagnitudePlan(0.5)
    with pytest.raises(ValueError, match="'bad'.*NaN"):
        plan.statistics("bad", np.array([1.0, np.nan], dtype=np.float32))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_global_pruning_over_shards_is_bit_identical_to_in_memory(tmp_path, dtype):
    weights = tensors(dtype=dtype, ties=True)
    write_checkpoint(str(tmp_path / "in"), weights, shards=4)
    recipe = [{"prune": {"method": "global_magnitude", "sparsity": 0.5}}]
    sp.compress_file(tmp_path / "in", tmp_path / "out", recipe, progress=False, max_shard_size=10_000)
    loaded = sp.load_weights(tmp_path / "in")
    order = checkpoint_order(str(tmp_path / "in"))
    selected = [n for n in order if loaded[n].ndim >= 2]
    reference = global_magnitude([np.asarray(loaded[n], dtype=np.float32) for n in selected], 0.5)
    in_memory = sp.compress(loaded, recipe, progress=False)
    got = {}
    for shard in sorted(f for f in os.listdir(tmp_path / "out") if f.endswith(".safetensors")):
        got.update(sp.load_compressed(tmp_path / "out" / shard).tensors)
    assert list(sp.load_compressed(tmp_path / "out").tensors) == order  # the folder, joined
    for name, ref in zip(selected, reference):
        np.testing.assert_array_equal(got[name].mask, ref, err_msg=name)
        np.testing.assert_array_equal(got[name].mask, in_memory.tensors[name].mask, err_msg=name)
    total = sum(loaded[n].size for n in selected)
    assert sum(int((~got[n].mask).sum()) for n in selected) == round(0.5 * total)


def test_global_pruning_after_a_tensor_stage_and_with_two_workers(tmp_path):
    weights = tensors(dtype="float32")
    write_checkpoint(str(tmp_path / "in"), weights, shards=3)
    recipe = [{"prune": {"method": "nm"}, "include": "layers.*"},
              {"prune": {"method": "global_magnitude", "sparsity": 0.7}},
              {"quantize": {"bits": 8, "axis": 0}}]
    sp.compress_file(tmp_path / "in", tmp_path / "w1", recipe, progress=False)
    sp.compress_file(tmp_path / "in", tmp_path / "w2", recipe, progress=False, workers=2)
    assert _files(tmp_path / "w1") == _files(tmp_path / "w2")
    for f in _files(tmp_path / "w1"):
        assert (tmp_path / "w1" / f).read_bytes() == (tmp_path / "w2" / f).read_bytes(), f
    expected = sp.compress(sp.load_weights(tmp_path / "in"), recipe, progress=False)
    got = {}
    for shard in sorted(f for f in os.listdir(tmp_path / "w1") if f.endswith(".safetensors")):
        got.update(sp.load_compressed(tmp_path / "w1" / shard).weights)
    for name in expected.weights:
        np.testing.assert_array_equal(got[name], expected.weights[name], err_msg=name)


# --------------------------------------------------------------------------- #
# Errors, CLI, optional imports
# --------------------------------------------------------------------------- #


def test_errors_are_clear(tmp_path):
    write_checkpoint(str(tmp_path / "in"), tensors(), shards=2)
    with pytest.raises(ValueError, match="holds the source shards"):
        sp.compress_file(tmp_path / "in", tmp_path / "in", [{"prune": {"sparsity": 0.5}}], progress=False)
    with pytest.raises(ValueError, match="workers"):
        compress_sharded(tmp_path / "in", tmp_path / "o", [{"prune": {"sparsity": 0.5}}], workers=0)
    with pytest.raises(ValueError, match="backend"):
        compress_sharded(tmp_path / "in", tmp_path / "o", [{"prune": {"sparsity": 0.5}}], backend="spark")
    with pytest.raises(ValueError, match="pattern 'nothing.*' matches no tensor"):
        sp.compress_file(tmp_path / "in", tmp_path / "o", [{"prune": {"sparsity": 0.5}, "include": "nothing.*"}],
                         progress=False)
    with pytest.raises(FileNotFoundError):
        sp.load_weights(tmp_path / "missing.safetensors.index.json")
    np.savez(tmp_path / "w.npz", a=np.ones((4, 4), np.float32))
    with pytest.raises(ValueError, match="read .safetensors files"):
        sp.compress_file(tmp_path / "w.npz", tmp_path / "o", [{"prune": {"sparsity": 0.5}}], progress=False)
    with pytest.raises(ValueError, match="max_shard_size is for a sharded destination"):
        sp.compress_file(tmp_path / "in", tmp_path / "one.safetensors", [{"prune": {"sparsity": 0.5}}],
                         max_shard_size="1GB", progress=False)
    assert not (tmp_path / "o").exists() or _files(tmp_path / "o") == []


def test_a_failing_stage_leaves_no_shard_and_no_temporary_file(tmp_path):
    weights = tensors()
    weights["layers.2.mlp.up.weight"] = np.ones((64, 30), np.float32)  # 30 is not a multiple of m = 4
    write_checkpoint(str(tmp_path / "in"), weights, shards=3)
    with pytest.raises(ValueError, match=r"layers\.2\.mlp\.up\.weight"):
        # (on_unfit="error": by default a tensor N:M does not fit is skipped with a warning)
        sp.compress_file(tmp_path / "in", tmp_path / "out", [{"prune": {"method": "nm"}, "on_unfit": "error"}],
                         progress=False)
    leftovers = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path / "out") for f in fs]
    assert not [f for f in leftovers if f.endswith((".tmp", ".index.json")) or "-of-" in os.path.basename(f)]


def test_cli_compresses_and_inspects_a_folder(tmp_path):
    write_checkpoint(str(tmp_path / "in"), tensors(dtype="float16"), shards=2)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(sp.__file__)))
    run = subprocess.run([sys.executable, "-m", "swiftprune", "compress", str(tmp_path / "in"), "-o",
                          str(tmp_path / "out"), "--prune", "global_magnitude:0.5", "--max-shard-size", "8KB",
                          "--workers", "2", "--dense", "--no-progress", "-q"],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert len([f for f in _files(tmp_path / "out") if f.endswith(".safetensors")]) > 1
    inspect = subprocess.run([sys.executable, "-m", "swiftprune", "inspect", str(tmp_path / "out"), "--no-progress"],
                             capture_output=True, text=True, env=env)
    assert inspect.returncode == 0, inspect.stderr
    assert "shards" in inspect.stdout and "layers.0.attn.q.weight" in inspect.stdout and "stored report" in inspect.stdout
    bad = subprocess.run([sys.executable, "-m", "swiftprune", "compress", str(tmp_path / "in"), "-o",
                          str(tmp_path / "o2"), "--prune", "0.5", "--workers", "0"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "--workers" in bad.stderr


def test_the_local_path_never_imports_dask(tmp_path):
    write_checkpoint(str(tmp_path / "in"), tensors(), shards=2)
    code = (f"import sys, swiftprune as sp; sp.compress_file({str(tmp_path / 'in')!r}, {str(tmp_path / 'out')!r}, "
            "[{'prune': {'sparsity': 0.5}}], progress=False, workers=2); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(sp.__file__)))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_save_sharded_rejects_bad_dtypes_before_writing(tmp_path):
    with pytest.raises(TypeError, match="'s'"):
        save_sharded(tmp_path / "x", {"a": np.zeros(3, np.float32), "s": np.array(["x"])})
    assert not (tmp_path / "x").exists() or _files(tmp_path / "x") == []


MEMORY_PROBE = r"""
import resource, sys
import numpy as np
import swiftprune as sp
source, out = sys.argv[1], sys.argv[2]
ckpt = sp.load_weights(source)
np.asarray(ckpt[ckpt.names[0]]).sum()          # warm up every code path once on one tensor
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sp.compress_file(source, out, [{"prune": {"method": "nm"}}, {"quantize": {"bits": 4, "axis": 0, "group_size": 128}}],
                 progress=False)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) * 1024)
"""


def test_memory_grows_with_the_largest_tensor_not_the_model(tmp_path):
    """24 tensors of 4 MiB (96 MiB of float32): streaming them must not cost more than a few tensors."""
    rng = np.random.default_rng(0)
    weights = {f"layers.{i}.weight": rng.standard_normal((1024, 1024), dtype=np.float32) for i in range(24)}
    write_checkpoint(str(tmp_path / "in"), weights, shards=4)
    del weights
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(sp.__file__)), SWIFTPRUNE_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(tmp_path / "in"), str(tmp_path / "out")],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    growth = int(run.stdout.strip().splitlines()[-1])
    largest = 4 * 2**20
    assert growth < 12 * largest, f"peak grew by {growth / 2**20:.0f} MiB for a 4 MiB largest tensor (96 MiB model)"


def test_core_streaming_functions_reject_bad_arguments_with_python_errors():
    from swiftprune import _core

    w = np.ones(10, np.float32)
    for args in [(w, 0, 32, 1), (w, 0, -1, 1), (w, 0, 0, 0), (w, 0x7FFFFFFF, 0, 2), (w, -1, 0, 1), (w, 0, 15, 1 << 25)]:
        with pytest.raises((ValueError, OverflowError)):
            _core.magnitude_histogram(*args)
    with pytest.raises(TypeError, match="float32"):
        _core.magnitude_histogram(w.astype(np.float64), 0, 15, 1 << 16)
    with pytest.raises(ValueError):
        _core.magnitude_threshold_mask(w, 0, -1)
    with pytest.raises(ValueError, match="NaN"):
        _core.magnitude_threshold_mask(np.array([np.inf], np.float32), 0, 0)
    counts, low_bits, nonfinite = _core.magnitude_histogram(np.array([1.0, -1.0, 0.5, np.nan], np.float32), 0, 15, 1 << 16)
    assert counts.sum() == 4 and nonfinite == 1 and counts[np.float32(1.0).view(np.uint32) >> 15] == 2


class _RecordingBar:
    def __init__(self, total, description, enabled):
        self.total, self.done, self.closed = total, 0, False

    def update(self, n=1):
        self.done += n

    def refresh(self):
        pass

    def close(self):
        self.closed = True


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_counts_every_byte_read_in_every_pass(tmp_path, monkeypatch, workers):
    weights = tensors(dtype="float32")
    write_checkpoint(str(tmp_path / "in"), weights, shards=3)
    bars = []
    monkeypatch.setattr("swiftprune.distributed.runner.byte_bar",
                        lambda **kw: bars.append(_RecordingBar(kw["total"], kw["description"], kw["enabled"])) or bars[-1])
    sp.compress_file(tmp_path / "in", tmp_path / "out", [{"prune": {"method": "global_magnitude", "sparsity": 0.5}}],
                     workers=workers)
    (bar,) = bars
    total = sum(a.nbytes for a in weights.values())
    selected = sum(a.nbytes for a in weights.values() if a.ndim >= 2)
    assert bar.closed and bar.done == bar.total
    assert total + selected <= bar.total <= total + 2 * selected  # the output pass + one or two statistics passes
