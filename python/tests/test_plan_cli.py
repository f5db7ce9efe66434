"""`swiftprune compress --target-ratio/--target-bytes`: the plan is printed, then
run, and the written file meets the target as measured on disk."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import swiftprune as sp

PACKAGE_DIR = str(Path(sp.__file__).resolve().parent.parent)


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_DIR, env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "swiftprune", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


@pytest.fixture
def model(tmp_path):
    """A torch-layout model, large enough for the header not to dominate, and layer inputs."""
    rng = np.random.default_rng(0)
    weights = {"conv.weight": rng.standard_normal((64, 32, 3, 3)).astype(np.float32),
               "conv.bias": rng.standard_normal(64).astype(np.float32),
               "fc.weight": (rng.standard_normal((128, 256)) * np.linspace(0.1, 3, 256)).astype(np.float32)}
    sp.save_weights(tmp_path / "model.safetensors", weights)
    np.savez(tmp_path / "inputs.npz", **{"fc.weight": rng.standard_normal((64, 256)).astype(np.float32),
                                         "conv.weight": rng.standard_normal((64, 32)).astype(np.float32)})
    return weights


def test_target_ratio_prints_the_plan_and_meets_it_on_disk(model, tmp_path):
    out = run("compress", "model.safetensors", "-o", "small.safetensors", "--target-ratio", "6",
              "--calibration", "inputs.npz", "--candidates", "int8,int4,int4:g32,int3,pal16,float16",
              "--save-recipe", "recipe.json", "--no-progress", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    original = sum(a.nbytes for a in model.values())
    size = os.path.getsize(tmp_path / "small.safetensors")
    assert size <= original / 6
    plan_text, _, report_text = out.stdout.partition("compression ratio")[0].partition("planned file")
    assert "candidate" in plan_text and "conv.weight" in plan_text and "(hessian)" in report_text
    assert out.stdout.index("planned file") < out.stdout.index("stages")  # the plan comes before the run
    assert f"wrote small.safetensors ({size:,d} bytes)" in out.stdout
    recipe = json.loads((tmp_path / "recipe.json").read_text())
    again = sp.compress(model, recipe, progress=False)
    back = sp.load_compressed(tmp_path / "small.safetensors")
    for name in model:
        np.testing.assert_array_equal(back.weights[name], again.weights[name])


@pytest.mark.parametrize("args,code,message", [
    (["--target-ratio", "6", "--quantize", "int8"], 2, "plans the recipe itself"),
    (["--target-ratio", "6", "--target-bytes", "100"], 2, "give one of"),
    (["--target-ratio", "-2"], 2, "expected a positive number"),
    (["--candidates", "int8"], 2, "go with --target-ratio"),
    (["--target-ratio", "6", "--candidates", "int9"], 1, "unknown candidate 'int9'"),
    (["--target-ratio", "500", "--candidates", "int8"], 1, "smallest plan takes"),
    (["--target-ratio", "6", "--calibration", "model.safetensors"], 1, "--calibration takes an .npz"),
])
def test_plan_flag_errors(model, tmp_path, args, code, message, capsys, monkeypatch):
    from swiftprune import cli

    monkeypatch.chdir(tmp_path)  # in-process: the subprocess path is covered above
    try:
        returned = cli.main(["compress", "model.safetensors", "-o", "o.safetensors", "--no-progress", *args])
    except SystemExit as exit:  # argparse's own usage errors
        returned = exit.code
    assert returned == code
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o.safetensors").exists()
