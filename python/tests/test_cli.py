"""The command line, run as users run it: ``python -m swiftprune`` in a subprocess."""
from __future__ import annotations

import json
import os
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


def test_compress_with_recipe_file_to_npz(model_file, tmp_path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps([{"prune": {"sparsity": 0.5}, "include": "fc2.*"}]))
    out = run("compress", str(model_file), "-o", str(tmp_path / "out.npz"), "--recipe", str(recipe), "-q")
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""  # quiet
    weights = sp.load_weights(model_file)
    dense = sp.load_weights(tmp_path / "out.npz")
    np.testing.assert_array_equal(dense["fc2.weight"], weights["fc2.weight"] * ref.magnitude_mask(weights["fc2.weight"], 0.5))
    np.testing.assert_array_equal(dense["fc1.weight"], weights["fc1.weight"])


def test_compress_dense_safetensors_and_include(model_file, tmp_path):
    out_path = tmp_path / "dense.safetensors"
    out = run("compress", str(model_file), "-o", str(out_path), "--prune", "0.5", "--include", "fc1.*",
              "--min-rank", "1", "--dense", "-q")
    assert out.returncode == 0, out.stderr
    weights = sp.load_weights(model_file)
    dense = sp.load_weights(out_path)
    np.testing.assert_array_equal(dense["fc1.bias"], weights["fc1.bias"] * ref.magnitude_mask(weights["fc1.bias"], 0.5))
    np.testing.assert_array_equal(dense["fc2.weight"], weights["fc2.weight"])


def test_inspect(model_file, tmp_path):
    out = run("inspect", str(model_file))
    assert out.returncode == 0, out.stderr
    assert "fc1.weight" in out.stdout and "F32" in out.stdout and "32x16" in out.stdout and "3 tensors" in out.stdout
    run("compress", str(model_file), "-o", str(tmp_path / "c.safetensors"), "--prune", "0.9", "-q")
    out = run("inspect", str(tmp_path / "c.safetensors"))
    assert out.returncode == 0 and "fc1.weight::mask" in out.stdout and "stored report" in out.stdout
    np.savez(tmp_path / "w.npz", a=np.zeros((2, 3)))
    out = run("inspect", str(tmp_path / "w.npz"))
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
def test_usage_errors_exit_2(model_file, tmp_path, args, message):
    args = [a.format(model=model_file, tmp=tmp_path) for a in args]
    out = run(*args)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr


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
def test_failures_exit_1_with_one_line(model_file, tmp_path, args, message):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1}")
    args = [a.format(model=model_file, tmp=tmp_path, bad=bad) for a in args]
    out = run(*args)
    assert out.returncode == 1, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("swiftprune: error: "), out.stderr
    assert message in lines[0]
    assert not (tmp_path / "o.safetensors").exists()


def test_unavailable_stage_fails_cleanly(model_file, tmp_path):
    from swiftprune.model import available_methods

    if "cluster" in available_methods():
        pytest.skip("cluster is available in this build")
    out = run("compress", str(model_file), "-o", str(tmp_path / "o.safetensors"), "--cluster", "16")
    assert out.returncode == 1 and "cluster is not available" in out.stderr


def test_flag_parsing_builds_recipes():
    assert cli.parse_prune("0.8") == {"method": "magnitude", "sparsity": 0.8}
    assert cli.parse_prune("nm:2:4") == {"method": "nm", "n": 2, "m": 4}
    assert cli.parse_prune("nm:2:4:axis=0") == {"method": "nm", "n": 2, "m": 4, "axis": 0}
    assert cli.parse_prune("structured:0.25:norm=inf") == {"method": "structured", "amount": 0.25, "norm": float("inf")}
    assert cli.parse_quantize("int8", 0) == {"bits": 8, "axis": 0}
    assert cli.parse_quantize("int4:128", -1) == {"bits": 4, "axis": -1, "group_size": 128}
    assert cli.parse_low_rank("energy:0.95") == {"energy": 0.95}
    assert cli.parse_low_rank("rank:64") == {"rank": 64}
    args = cli.build_parser().parse_args(["compress", "a", "-o", "b", "--prune", "nm:2:4", "--quantize", "int4:32",
                                          "--low-rank", "ratio:0.5", "--cluster", "16", "--include", "*.weight"])
    stages = cli.recipe_from_flags(args)
    assert [next(iter(s)) for s in stages] == ["prune", "low_rank", "cluster", "quantize"]
    assert all(s["include"] == ["*.weight"] for s in stages)


def test_demo_runs(tmp_path):
    pytest.importorskip("sklearn")
    out = run("demo", "--no-progress")
    assert out.returncode == 0, out.stderr
    assert "original (float32)" in out.stdout and "80% magnitude pruning" in out.stdout
    assert "compression ratio" in out.stdout
    lines = {line.split("  ")[0]: line for line in out.stdout.splitlines()}
    accuracy = float(lines["original (float32)"].split()[2].rstrip("%"))
    assert accuracy > 95.0


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
