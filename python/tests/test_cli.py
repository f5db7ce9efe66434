"""The command line, run as users run it: ``python -m swiftprune`` in a subprocess."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import swiftprune as sp
from swiftprune import cli

import _reference_models as ref

PACKAGE_DIR = str(Path(sp.__file__).resolve().parent.parent)


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_DIR, env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "swiftprune", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


@pytest.fixture
def model_file(tmp_path) -> Path:
    rng = np.random.default_rng(3)
    path = tmp_path / "model.safetensors"
    sp.save_weights(path, {"fc1.weight": rng.standard_normal((32, 16)).astype(np.float32),
                           "fc1.bias": rng.standard_normal(32).astype(np.float32),
                           "fc2.weight": rng.standard_normal((8, 32)).astype(np.float32)})
    return path


def test_help_has_examples():
    out = run("--help")
    assert out.returncode == 0
    assert "examples:" in out.stdout and "swiftprune compress" in out.stdout
    sub = run("compress", "--help")
    assert sub.returncode == 0 and "--prune" in sub.stdout and "recipe" in sub.stdout and "examples:" in sub.stdout
    assert run("--version").stdout.strip() == f"swiftprune {sp.__version__}"


def test_compress_with_flags(model_file, tmp_path):
    out_path = tmp_path / "small.safetensors"
    out = run("compress", str(model_file), "-o", str(out_path), "--prune", "magnitude:0.75", "--no-progress")
    assert out.returncode == 0, out.stderr
    assert "compression ratio" in out.stdout and "fc1.weight" in out.stdout
    assert f"wrote {out_path}" in out.stdout
    weights = sp.load_weights(model_file)
    loaded = sp.load_compressed(out_path)
    for name in ("fc1.weight", "fc2.weight"):
        np.testing.assert_array_equal(loaded.weights[name], weights[name] * ref.magnitude_mask(weights[name], 0.75))
    np.testing.assert_array_equal(loaded.weights["fc1.bias"], weights["fc1.bias"])


def run_here(capsys, *args: str) -> subprocess.CompletedProcess:
    """cli.main in this process (fast), with the result shaped like run()'s."""
    code = cli.main([*args, "--no-progress"] if args[0] in ("compress", "inspect") else list(args))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out.out, out.err)


def test_compress_with_recipe_file_to_npz(model_file, tmp_path, capsys):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps([{"prune": {"sparsity": 0.5}, "include": "fc2.*"}]))
    out = run_here(capsys, "compress", str(model_file), "-o", str(tmp_path / "out.npz"), "--recipe", str(recipe), "-q")
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""  # quiet
    weights = sp.load_weights(model_file)
    dense = sp.load_weights(tmp_path / "out.npz")
    np.testing.assert_array_equal(dense["fc2.weight"], weights["fc2.weight"] * ref.magnitude_mask(weights["fc2.weight"], 0.5))
    np.testing.assert_array_equal(dense["fc1.weight"], weights["fc1.weight"])


def test_compress_dense_safetensors_and_include(model_file, tmp_path, capsys):
    out_path = tmp_path / "dense.safetensors"
    out = run_here(capsys, "compress", str(model_file), "-o", str(out_path), "--prune", "0.5", "--include", "fc1.*",
              "--min-rank", "1", "--dense", "-q")
    assert out.returncode == 0, out.stderr
    weights = sp.load_weights(model_file)
    dense = sp.load_weights(out_path)
    np.testing.assert_array_equal(dense["fc1.bias"], weights["fc1.bias"] * ref.magnitude_mask(weights["fc1.bias"], 0.5))
    np.testing.assert_array_equal(dense["fc2.weight"], weights["fc2.weight"])


def test_inspect(model_file, tmp_path, capsys):
    out = run_here(capsys, "inspect", str(model_file))
    assert out.returncode == 0, out.stderr
    assert "fc1.weight" in out.stdout and "F32" in out.stdout and "32x16" in out.stdout and "3 tensors" in out.stdout
    run_here(capsys, "compress", str(model_file), "-o", str(tmp_path / "c.safetensors"), "--prune", "0.9", "-q")
    out = run_here(capsys, "inspect", str(tmp_path / "c.safetensors"))
    assert out.returncode == 0 and "stored report" in out.stdout and "swiftprune compressed file" in out.stdout
    row = next(line for line in out.stdout.splitlines() if line.startswith("fc1.weight "))
    assert "pruned f32 bitmask" in row and "90.0%" in row  # the decoded weights' sparsity
    out = run_here(capsys, "inspect", str(tmp_path / "c.safetensors"), "--parts")
    assert "fc1.weight::mask" in out.stdout and "stored report" in out.stdout
    np.savez(tmp_path / "w.npz", a=np.zeros((2, 3)))
    run_here(capsys, "compress", str(model_file), "-o", str(tmp_path / "q.safetensors"), "--prune", "nm:2:4",
             "--quantize", "int4:8", "-q")
    out = run_here(capsys, "inspect", str(tmp_path / "q.safetensors"), "--parts")
    assert "fc1.weight::values" in out.stdout and "fc1.weight::scale" in out.stdout
    assert "prune.nm+quantize.minmax" in out.stdout and "fc1.weight::keep_mask" not in out.stdout
    out = run_here(capsys, "inspect", str(tmp_path / "w.npz"))
    assert out.returncode == 0 and "100.0%" in out.stdout and "float64" in out.stdout


@pytest.mark.parametrize("args,message", [
    (["compress", "{model}", "-o", "{tmp}/o.safetensors"], "nothing to do"),
    (["compress", "{model}", "-o", "{tmp}/o.safetensors", "--prune", "0.5", "--recipe", "r.yaml"], "not both"),
    (["compress", "{model}", "-o", "{tmp}/o.safetensors", "--quantize", "float8"], "--quantize"),
    (["compress", "{model}", "-o", "{tmp}/o.safetensors", "--low-rank", "0.95"], "--low-rank"),
    (["compress", "{model}", "-o", "{tmp}/o.safetensors", "--prune", "magnitude:0.5:0.6"], "unexpected value"),
    (["compress", "{model}", "--prune", "0.5"], "-o"),
    (["compress", "{model}", "-o", "x", "--cluster", "many"], "integer"),
    (["frobnicate"], "invalid choice"),
    ([], "COMMAND"),
])
def test_usage_errors_exit_2(model_file, tmp_path, capsys, args, message):
    args = [a.format(model=model_file, tmp=tmp_path) for a in args]
    code, err = main_in_process(capsys, *args)
    assert code == 2, err
    assert message in err
    assert "Traceback" not in err


def main_in_process(capsys, *args: str) -> tuple[int, str]:
    """cli.main's exit code (argparse's SystemExit included) and stderr."""
    try:
        code = cli.main(list(args))
    except SystemExit as exit:
        code = exit.code
    return code, capsys.readouterr().err


def test_errors_from_a_real_process(model_file, tmp_path):
    out = run("compress", str(model_file), "-o", str(tmp_path / "o.safetensors"), "--quantize", "float8")
    assert out.returncode == 2 and "--quantize" in out.stderr and "Traceback" not in out.stderr
    out = run("compress", str(model_file), "-o", str(tmp_path / "o.safetensors"), "--prune", "1.5")
    assert out.returncode == 1 and out.stderr.strip().splitlines() == [
        "swiftprune: error: recipe stage 0 (prune), field 'sparsity': sparsity must be in [0, 1], got 1.5"]


@pytest.mark.parametrize("args,message", [
    (["compress", "{tmp}/missing.safetensors", "-o", "{tmp}/o.safetensors", "--prune", "0.5"], "missing.safetensors"),
    (["compress", "{model}", "-o", "{tmp}/o.safetensors", "--prune", "1.5"], "stage 0 (prune), field 'sparsity'"),
    (["compress", "{model}", "-o", "{tmp}/o.safetensors", "--prune", "voodoo:0.5"], "unknown method 'voodoo'"),
    (["compress", "{model}", "-o", "{tmp}/o.safetensors", "--prune", "0.5", "--include", "conv*"], "matches no tensor"),
    (["compress", "{model}", "-o", "{tmp}/o.bin", "--prune", "0.5"], "cannot tell"),
    (["compress", "{bad}", "-o", "{tmp}/o.safetensors", "--prune", "0.5"], "header"),
    (["compress", "{model}", "-o", "{tmp}/o.safetensors", "--recipe", "{tmp}/none.yaml"], "none.yaml"),
    (["inspect", "{bad}"], "header"),
    (["inspect", "{tmp}/nothing.safetensors"], "nothing.safetensors"),
])
def test_failures_exit_1_with_one_line(model_file, tmp_path, capsys, args, message):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1}")
    args = [a.format(model=model_file, tmp=tmp_path, bad=bad) for a in args]
    code, err = main_in_process(capsys, *args)
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("swiftprune: error: "), err
    assert message in lines[0]
    assert not (tmp_path / "o.safetensors").exists()


def test_unavailable_stage_fails_cleanly(model_file, tmp_path, capsys, monkeypatch):
    from swiftprune import registry

    monkeypatch.setitem(registry._METHODS, "cluster", {})
    assert cli.main(["compress", str(model_file), "-o", str(tmp_path / "o.safetensors"), "--cluster", "16"]) == 1
    assert "cluster is not available" in capsys.readouterr().err


def test_flag_parsing_builds_recipes():
    assert cli.parse_prune("0.8") == {"method": "magnitude", "sparsity": 0.8}
    assert cli.parse_prune("nm:2:4") == {"method": "nm", "n": 2, "m": 4}
    assert cli.parse_prune("nm:2:4:axis=0") == {"method": "nm", "n": 2, "m": 4, "axis": 0}
    assert cli.parse_prune("structured:0.25:norm=inf") == {"method": "structured", "amount": 0.25, "norm": float("inf")}
    assert cli.parse_prune("structured:0.25", -1) == {"method": "structured", "amount": 0.25, "axis": -1}
    assert cli.parse_prune("structured:0.25:axis=1", -1)["axis"] == 1
    assert cli.parse_prune("block:0.5:block=2x4") == {"method": "block", "sparsity": 0.5, "block": "2x4"}
    assert cli.parse_prune("global_magnitude:0.7", 0) == {"method": "global_magnitude", "sparsity": 0.7}
    assert cli.parse_quantize("int8", 0) == {"bits": 8, "axis": 0}
    assert cli.parse_quantize("int4:128", -1) == {"bits": 4, "axis": -1, "group_size": 128}
    assert cli.parse_quantize("int8:symmetric=false:method=mse", 0) == {"bits": 8, "axis": 0, "symmetric": False,
                                                                         "method": "mse"}
    assert cli.parse_low_rank("energy:0.95") == {"energy": 0.95}
    assert cli.parse_low_rank("rank:64", 0) == {"rank": 64, "layout": "torch"}
    assert cli.parse_low_rank("ratio:0.5:method=svd", -1) == {"ratio": 0.5, "method": "svd", "layout": "keras"}
    args = cli.build_parser().parse_args(["compress", "a", "-o", "b", "--prune", "nm:2:4", "--quantize", "int4:32",
                                          "--include", "*.weight", "--exclude", "head.*", "--min-rank", "1"])
    stages = cli.recipe_from_flags(args)
    assert [next(iter(s)) for s in stages] == ["prune", "quantize"]
    assert all(s["include"] == ["*.weight"] and s["exclude"] == ["head.*"] and s["min_rank"] == 1 for s in stages)
    args = cli.build_parser().parse_args(["compress", "a", "-o", "b", "--cluster", "16", "--prune", "0.5"])
    assert [next(iter(s)) for s in cli.recipe_from_flags(args)] == ["prune", "cluster"]


def main_ok(capsys, *args: str) -> str:
    code = cli.main([*args, "--no-progress"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def test_stage_flags_match_recipes(tmp_path, capsys):
    rng = np.random.default_rng(4)
    weights = {"fc1.weight": rng.standard_normal((16, 32)).astype(np.float32),
               "fc1.bias": rng.standard_normal(16).astype(np.float32),
               "conv.weight": rng.standard_normal((8, 4, 3, 4)).astype(np.float32)}
    source = tmp_path / "m.safetensors"
    sp.save_weights(source, weights)
    cases = [
        (["--prune", "nm:2:4", "--quantize", "int4"],
         [{"prune": {"method": "nm", "n": 2, "m": 4}}, {"quantize": {"bits": 4, "axis": 0}}]),
        (["--prune", "nm:2:4", "--quantize", "int4:16:method=mse", "--include", "fc1.*"],
         [{"prune": {"method": "nm"}, "include": "fc1.*"},
          {"quantize": {"method": "mse", "bits": 4, "axis": 0, "group_size": 16}, "include": "fc1.*"}]),
        (["--quantize", "int8:symmetric=false", "--channel-axis", "-1"],
         [{"quantize": {"bits": 8, "symmetric": False, "axis": -1}}]),
        (["--prune", "0.5", "--cluster", "16"], [{"prune": {"sparsity": 0.5}}, {"cluster": {"n_clusters": 16}}]),
        (["--low-rank", "energy:0.95"], [{"low_rank": {"energy": 0.95, "layout": "torch"}}]),
        (["--low-rank", "rank:2", "--channel-axis", "-1"], [{"low_rank": {"rank": 2, "layout": "keras"}}]),
        (["--prune", "structured:0.25", "--channel-axis", "-1"],
         [{"prune": {"method": "structured", "amount": 0.25, "axis": -1}}]),
        (["--prune", "block:0.5:block=2x4", "--include", "fc1.weight"],
         [{"prune": {"method": "block", "sparsity": 0.5, "block": [2, 4]}, "include": "fc1.weight"}]),
        (["--prune", "global_magnitude:0.7", "--min-rank", "1"],
         [{"prune": {"method": "global_magnitude", "sparsity": 0.7}, "min_rank": 1}]),
        (["--prune", "random:0.3:seed=5"], [{"prune": {"method": "random", "sparsity": 0.3, "seed": 5}}]),
    ]
    for i, (flags, recipe) in enumerate(cases):
        out = tmp_path / f"o{i}.safetensors"
        text = main_ok(capsys, "compress", str(source), "-o", str(out), *flags)
        expected = sp.compress(weights, recipe, progress=False)
        loaded = sp.load_compressed(out)
        # (the relative error is summed in another order by the fused N:M + quantize pass of the command)
        assert [dict(r, relative_error=None) for r in loaded.report] == \
               [dict(r, relative_error=None) for r in expected.report], flags
        for got, want in zip(loaded.report, expected.report):
            assert got["relative_error"] == pytest.approx(want["relative_error"], rel=1e-12, abs=1e-15), flags
        assert expected.report.summary() in text
        for name in weights:
            np.testing.assert_array_equal(loaded.weights[name], expected.weights[name])


@pytest.mark.parametrize("flags,code,message", [
    (["--cluster", "16", "--quantize", "int8"], 2, "--cluster and --quantize both encode"),
    (["--low-rank", "rank:2", "--quantize", "int8"], 2, "--low-rank and --quantize both encode"),
    (["--prune", "0.5", "--low-rank", "rank:2"], 2, "--low-rank cannot keep pruned entries zero"),
    (["--quantize", "int4:5", "--on-unfit", "error"], 1,
     "stage 0 (quantize): tensor 'fc1.weight': quantize.minmax cannot apply: group_size 5 does not divide"),
    (["--quantize", "int4:4", "--min-rank", "1", "--on-unfit", "error"], 1,
     "tensor 'fc1.bias': quantize.minmax cannot apply: group_size needs a weight of rank 2 or more"),
    (["--quantize", "int9"], 1, "stage 0 (quantize), field 'bits': bits must be <= 8, got 9"),
    (["--quantize", "int4:128:symmetric=maybe"], 1, "field 'symmetric'"),
    (["--prune", "nm:4:4"], 1, "stage 0 (prune), field 'n'"),
    (["--prune", "nm:2:4:colour=red"], 1, "field 'colour': not an option of prune method 'nm'"),
    (["--prune", "block:0.5:block=2by4"], 1, "field 'block'"),
    (["--cluster", "0"], 1, "stage 0 (cluster), field 'n_clusters'"),
    (["--low-rank", "energy:2"], 1, "stage 0 (low_rank), field 'energy'"),
])
def test_bad_stage_flags(model_file, tmp_path, capsys, flags, code, message):
    assert cli.main(["compress", str(model_file), "-o", str(tmp_path / "o.safetensors"), "--no-progress", *flags]) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o.safetensors").exists()


def test_help_examples_are_true(tmp_path, capsys, monkeypatch):
    """Every `swiftprune compress/inspect` example of --help runs as written."""
    import shlex

    rng = np.random.default_rng(8)
    monkeypatch.chdir(tmp_path)
    sp.save_weights("model.safetensors", {"fc1.weight": rng.standard_normal((16, 128)).astype(np.float32),
                                          "fc1.bias": rng.standard_normal(16).astype(np.float32),
                                          "fc2.weight": rng.standard_normal((8, 256)).astype(np.float32)})
    np.savez("weights.npz", **{"dense/kernel": rng.standard_normal((8, 4)), "dense/bias": np.zeros(4)})
    sp.save_weights("llama", {f"layers.{i}.weight": rng.standard_normal((16, 128)).astype(np.float16)
                              for i in range(4)}, max_shard_size=8192)  # a sharded checkpoint folder
    (tmp_path / "recipe.yaml").write_text("- prune: {method: magnitude, sparsity: 0.8}\n- quantize: {bits: 8, axis: 0}\n")
    examples = [line.strip() for line in (cli.EPILOG + cli.COMPRESS_EPILOG).splitlines()
                if line.strip().startswith(("swiftprune compress", "swiftprune inspect"))]
    assert len(examples) >= 8
    for example in examples:
        args = shlex.split(example)[1:]
        if "keras.weights.h5" in args:
            pytest.importorskip("h5py")
            sp.save_weights("keras.weights.h5", {"dense/kernel": rng.standard_normal((8, 4)).astype(np.float32)})
        if "x.npz" in args:  # per-layer calibration inputs {layer: (samples, in)}
            np.savez("x.npz", fc1=rng.standard_normal((300, 128)).astype(np.float32),
                     fc2=rng.standard_normal((300, 256)).astype(np.float32))
        if "model.onnx" in args:  # a model whose layer inputs are captured on inputs.npz
            onnx = pytest.importorskip("onnx")
            pytest.importorskip("onnxruntime")
            from onnx import TensorProto, helper, numpy_helper
            graph = helper.make_graph(
                [helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 32])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                [numpy_helper.from_array(rng.standard_normal((32, 16)).astype(np.float32), "W")])
            onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), "model.onnx")
            np.savez("inputs.npz", x=rng.standard_normal((200, 32)).astype(np.float32))
        if args[0] == "compress":
            args.append("--no-progress")
        code = cli.main(args)
        assert code == 0, (example, capsys.readouterr().err)
    capsys.readouterr()


def test_demo_runs(tmp_path):
    pytest.importorskip("sklearn")
    out = run("demo", "--no-progress")
    assert out.returncode == 0, out.stderr
    assert "original (float32)" in out.stdout and "80% magnitude pruning" in out.stdout
    assert "compression ratio" in out.stdout
    rows = {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line.strip()) for line in out.stdout.splitlines())}
    accuracy = {label: float(rows[label][0].rstrip("%")) for label in (
        "original (float32)", "80% magnitude pruning", "int8 per-channel", "4-bit group-32 + 2:4 sparsity")}
    original = accuracy["original (float32)"]
    assert original > 95.0
    assert accuracy["int8 per-channel"] >= original - 1.0
    assert accuracy["4-bit group-32 + 2:4 sparsity"] >= original - 5.0
    assert accuracy["80% magnitude pruning"] >= original - 10.0
    assert "skipped:" not in out.stdout  # every recipe runs in this build
    assert "prune.nm+quantize.minmax" in out.stdout  # the report of the composed recipe


def test_demo_without_scikit_learn(tmp_path):
    # A sitecustomize that hides sklearn from the child interpreter.
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nclass Hide:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'sklearn' or name.startswith('sklearn.'):\n"
        "            raise ImportError('hidden')\n        return None\nsys.meta_path.insert(0, Hide())\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), PACKAGE_DIR])
    out = subprocess.run([sys.executable, "-m", "swiftprune", "demo"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 1
    assert out.stdout.strip().splitlines() == [out.stdout.strip()]  # one line
    assert "scikit-learn" in out.stdout


def test_main_in_process(model_file, tmp_path, capsys):
    assert cli.main(["compress", str(model_file), "-o", str(tmp_path / "o.safetensors"), "--prune", "0.5",
                     "--no-progress"]) == 0
    assert "compression ratio" in capsys.readouterr().out
    assert cli.main(["inspect", str(tmp_path / "missing.npz")]) == 1
    assert "no such file" in capsys.readouterr().err
