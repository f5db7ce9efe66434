"""File problems raise the OSError subclass for them (FileNotFoundError,
IsADirectoryError, PermissionError), from every reader and writer: the Swift
safetensors reader/writer (through the C ABI's SP_ERR_OS and errno), .npz,
.weights.h5, recipes, compressed files, compress_file; the CLI exits 1 with
one line."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import swiftprune as sp

WEIGHTS = {"w": np.arange(16, dtype=np.float32).reshape(4, 4)}
RECIPE = [{"prune": {"sparsity": 0.5}}]


def readers(path: str) -> list:
    return [
        ("load_weights", lambda: sp.load_weights(path)),
        ("load_compressed", lambda: sp.load_compressed(path)),
        ("compress_file", lambda: sp.compress_file(path, path + ".out.safetensors", RECIPE)),
    ]


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_missing_file_is_file_not_found(tmp_path: pathlib.Path, suffix: str) -> None:
    path = str(tmp_path / f"missing{suffix}")
    for name, call in readers(path)[: 1 if suffix == ".npz" else 3]:
        with pytest.raises(FileNotFoundError, match="missing") as info:
            call()
        assert isinstance(info.value, OSError), name


def test_missing_h5_and_recipe_are_file_not_found(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("h5py")
    with pytest.raises(FileNotFoundError):
        sp.load_weights(tmp_path / "missing.weights.h5")
    with pytest.raises(FileNotFoundError):
        sp.compress(WEIGHTS, str(tmp_path / "missing.yaml"), progress=False)
    (tmp_path / "dir.weights.h5").mkdir()
    with pytest.raises(IsADirectoryError):
        sp.load_weights(tmp_path / "dir.weights.h5")
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(IsADirectoryError):
        sp.compress(WEIGHTS, str(tmp_path / "dir.yaml"), progress=False)


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_directory_is_a_directory_error(tmp_path: pathlib.Path, suffix: str) -> None:
    directory = tmp_path / f"dir{suffix}"
    directory.mkdir()
    with pytest.raises(IsADirectoryError):
        sp.load_weights(directory)  # a folder, but no sharded checkpoint in it
    assert directory.is_dir() and not list(directory.iterdir())
    if suffix == ".safetensors":
        with pytest.raises(IsADirectoryError):
            sp.load_compressed(directory)
        with pytest.raises(IsADirectoryError):
            sp.compress(WEIGHTS, RECIPE, progress=False).save(directory)
        # (compress_file into a folder writes a sharded checkpoint: test_distributed.py)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a temporary file was left behind"
    # A folder destination of save_weights is a sharded checkpoint (swiftprune.distributed), whatever its name.
    sp.save_weights(directory, WEIGHTS)
    loaded = sp.load_weights(directory)
    assert sorted(loaded) == sorted(WEIGHTS) and np.array_equal(loaded["w"], WEIGHTS["w"])


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_missing_parent_directory_is_file_not_found(tmp_path: pathlib.Path, suffix: str) -> None:
    with pytest.raises(FileNotFoundError):
        sp.save_weights(tmp_path / "no" / f"x{suffix}", WEIGHTS)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads and writes regardless of permissions")
@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_no_permission_is_permission_error(tmp_path: pathlib.Path, suffix: str) -> None:
    path = tmp_path / f"locked{suffix}"
    sp.save_weights(path, WEIGHTS)
    path.chmod(0)
    try:
        with pytest.raises(PermissionError):
            sp.load_weights(path)
    finally:
        path.chmod(0o600)
    locked_dir = tmp_path / "ro"
    locked_dir.mkdir(mode=0o500)
    with pytest.raises(PermissionError):
        sp.save_weights(locked_dir / f"x{suffix}", WEIGHTS)


def test_cli_missing_file_exits_1_with_one_line(tmp_path: pathlib.Path) -> None:
    package_parent = str(pathlib.Path(sp.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=package_parent)
    for arguments in (["inspect", "missing.safetensors"],
                      ["compress", "missing.safetensors", "-o", "out.safetensors", "--prune", "0.5"]):
        done = subprocess.run([sys.executable, "-m", "swiftprune", *arguments], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("swiftprune: error: ") and "missing.safetensors" in lines[0]
