"""File reliability: no hang on FIFOs, no SIGBUS by default, overwrite
semantics (mode, owner, symlinks), no stray temporary files, kill -9 safety.

Issue 16, items 2, 5, 6 and 7. Child processes run the scenarios that can
kill or block a process, so a regression fails the test instead of the run.
"""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import swiftprune as sp
from swiftprune.io import SafetensorsFile, SafetensorsWriter

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(sp.__file__)))
RNG = np.random.default_rng(16)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux file semantics (O_TMPFILE, /proc, FIFOs)")


def weights() -> dict[str, np.ndarray]:
    return {"a": RNG.standard_normal((64, 32)).astype(np.float32), "b": np.arange(10, dtype=np.int64)}


def child(code: str, timeout: float = 60, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR, SWIFTPRUNE_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def run_child(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR, SWIFTPRUNE_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=timeout)


def leftovers(directory) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.endswith(".tmp"))


# --------------------------------------------------------------------------- #
# Item 6: FIFOs and other non-regular files are refused, never waited on
# --------------------------------------------------------------------------- #


def test_fifo_is_refused_without_blocking(tmp_path):
    names = ["pipe.safetensors", "pipe.npz", "pipe.weights.h5", "pipe", "recipe.json"]
    for name in names:
        os.mkfifo(tmp_path / name)
    # A child, so that a regression (blocking in open) times out instead of hanging the suite.
    result = run_child(f"""
        import contextlib, io, os, swiftprune as sp
        from swiftprune.cli import main
        from swiftprune.recipe import load_recipe
        root = {str(tmp_path)!r}
        for name in {names!r}:
            fifo = os.path.join(root, name)
            calls = [lambda: sp.load_weights(fifo), lambda: sp.io.SafetensorsFile(fifo),
                     lambda: sp.load_weights(fifo, mmap=True), lambda: sp.load_compressed(fifo),
                     lambda: load_recipe(fifo)]
            for call in calls:
                try:
                    call()
                except ValueError as error:
                    assert "not a regular file" in str(error) or "weight-file format" in str(error), error
                else:
                    raise SystemExit(f"{{name}}: no error")
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(["inspect", fifo, "--no-progress"])
            assert code == 1, (name, code, err.getvalue())
            assert "not a regular file" in err.getvalue() or "format" in err.getvalue(), err.getvalue()
        print("ok")
    """, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_directory_is_refused(tmp_path):
    directory = tmp_path / "dir.safetensors"
    directory.mkdir()
    with pytest.raises(IsADirectoryError):
        sp.load_weights(directory)


# --------------------------------------------------------------------------- #
# Item 5: files changed under a reader
# --------------------------------------------------------------------------- #


def test_default_load_is_a_copy_unaffected_by_truncation(tmp_path):
    path = tmp_path / "m.safetensors"
    w = weights()
    sp.save_weights(path, w)
    loaded = sp.load_weights(path)
    os.truncate(path, 0)
    for name, value in w.items():
        np.testing.assert_array_equal(loaded[name], value)  # a SIGBUS here would kill pytest
        assert not loaded[name].flags.writeable


def test_truncation_after_open_is_a_value_error(tmp_path):
    path = tmp_path / "m.safetensors"
    sp.save_weights(path, weights())
    f = SafetensorsFile(path)
    os.truncate(path, 200)
    with pytest.raises(ValueError, match="truncated"):
        f["a"]


def test_rewrite_in_place_changes_nothing_already_loaded(tmp_path):
    path = tmp_path / "m.safetensors"
    w = weights()
    sp.save_weights(path, w)
    loaded = sp.load_weights(path)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:  # in place, same size: what an mmap view would see
        f.seek(size - 100)
        f.write(b"\xff" * 100)
    np.testing.assert_array_equal(loaded["a"], w["a"])


def test_mmap_views_share_the_file_and_carry_the_documented_hazard(tmp_path):
    path = tmp_path / "m.safetensors"
    sp.save_weights(path, {"big": np.ones(1 << 20, np.float32)})
    mapped = sp.load_weights(path, mmap=True)
    assert mapped["big"].base is not None and not mapped["big"].flags.owndata
    # The hazard load_weights documents for mmap=True: a truncated file kills the reader.
    result = run_child(f"""
        import os, swiftprune as sp
        w = sp.load_weights({str(path)!r}, mmap=True)["big"]
        os.truncate({str(path)!r}, 0)
        print(float(w.sum()))
    """)
    assert result.returncode == -signal.SIGBUS


# --------------------------------------------------------------------------- #
# Item 7: overwrite semantics
# --------------------------------------------------------------------------- #


def _save(kind: str, path, w) -> None:
    if kind == "compressed":
        sp.compress(w, [{"prune": {"sparsity": 0.5}}], progress=False).save(path)
    else:
        sp.save_weights(path, w)


KINDS = [("safetensors", ".safetensors"), ("npz", ".npz"), ("compressed", ".safetensors"), ("h5", ".weights.h5")]


@pytest.mark.parametrize("kind,suffix", KINDS)
def test_overwrite_keeps_mode(tmp_path, kind, suffix):
    if kind == "h5":
        pytest.importorskip("h5py")
    path = tmp_path / f"m{suffix}"
    _save(kind, path, weights())
    os.chmod(path, 0o600)
    _save(kind, path, weights())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    os.chmod(path, 0o640)
    _save(kind, path, weights())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("kind,suffix", KINDS)
def test_new_file_mode_follows_umask(tmp_path, kind, suffix):
    if kind == "h5":
        pytest.importorskip("h5py")
    old = os.umask(0o027)
    try:
        _save(kind, tmp_path / f"m{suffix}", weights())
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / f"m{suffix}").st_mode) == 0o640


@pytest.mark.parametrize("kind,suffix", KINDS)
def test_saving_to_a_symlink_writes_its_target(tmp_path, kind, suffix):
    if kind == "h5":
        pytest.importorskip("h5py")
    target_dir = tmp_path / "real"
    target_dir.mkdir()
    target = target_dir / f"m{suffix}"
    link = tmp_path / f"link{suffix}"
    _save(kind, target, {"x": np.zeros(3, np.float32)})
    os.symlink(target, link)
    w = weights()
    _save(kind, link, w)
    assert os.path.islink(link) and os.readlink(link) == str(target)
    loaded = sp.load_compressed(target).weights if kind == "compressed" else sp.load_weights(target)
    assert set(loaded) == set(w)
    # A dangling link: the file is created where it points.
    dangling = tmp_path / f"dangling{suffix}"
    os.symlink(target_dir / f"new{suffix}", dangling)
    _save(kind, dangling, w)
    assert os.path.islink(dangling) and os.path.isfile(target_dir / f"new{suffix}")
    assert leftovers(tmp_path) == [] and leftovers(target_dir) == []


def test_owner_is_kept_where_permitted(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("changing a file's owner needs root")
    path = tmp_path / "m.safetensors"
    sp.save_weights(path, weights())
    os.chown(path, 12345, 23456)
    sp.save_weights(path, weights())
    info = os.stat(path)
    assert (info.st_uid, info.st_gid) == (12345, 23456)


# --------------------------------------------------------------------------- #
# Item 2: kill -9 during a write; stale temporary files
# --------------------------------------------------------------------------- #

WRITERS = {
    # Each child starts a write, says "writing" once data are on disk, and stalls there.
    "safetensors": """
        w = sp.io.SafetensorsWriter(DEST)
        w.add("x", np.ones(1 << 20, np.float32))
        print("writing", flush=True); time.sleep(60)
    """,
    "npz": """
        import numpy.lib.format as fmt
        original = fmt.write_array
        def stall(*args, **kwargs):
            original(*args, **kwargs)
            print("writing", flush=True); time.sleep(60)
        fmt.write_array = stall
        sp.save_weights(DEST, {"x": np.ones(1 << 20, np.float32)})
    """,
    "compressed": """
        import swiftprune.io as io
        original = io.SafetensorsWriter.add
        def stall(self, *args):
            original(self, *args)
            print("writing", flush=True); time.sleep(60)
        io.SafetensorsWriter.add = stall
        sp.compress({"x": np.ones((256, 256), np.float32)}, [{"prune": {"sparsity": 0.5}}], progress=False).save(DEST)
    """,
}


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_kill_9_during_a_write_leaves_the_old_file_and_no_temporary(tmp_path, kind):
    dest = tmp_path / ("m.npz" if kind == "npz" else "m.safetensors")
    old = {"old": np.arange(5, dtype=np.float32)}
    sp.save_weights(dest, old)
    before = dest.read_bytes()
    process = child(f"import time, numpy as np, swiftprune as sp\nDEST = {str(dest)!r}\n" + textwrap.dedent(WRITERS[kind]))
    try:
        line = process.stdout.readline()
        assert line.strip() == "writing", process.stderr.read()
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert dest.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [dest.name], "the killed writer left files behind"


def _dead_pid() -> int:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(finished.stdout)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return pid
    pytest.skip("the finished child's pid is already reused")


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_stale_temporaries_of_dead_writers_are_removed_on_the_next_write(tmp_path, suffix):
    dest = tmp_path / f"m{suffix}"
    dead, alive = _dead_pid(), os.getppid()
    stale = tmp_path / f".m{suffix}.{dead}.7.tmp"
    live = tmp_path / f".m{suffix}.{alive}.7.tmp"          # a running process's: kept
    other = tmp_path / f".other{suffix}.{dead}.7.tmp"      # another destination's: kept
    odd = tmp_path / f".m{suffix}.{dead}.x.tmp"            # not our pattern: kept
    for path in (stale, live, other, odd):
        path.write_bytes(b"partial")
    sp.save_weights(dest, weights())
    assert not stale.exists()
    assert live.exists() and other.exists() and odd.exists()


def test_writer_discard_and_failure_leave_nothing(tmp_path):
    dest = tmp_path / "m.safetensors"
    with pytest.raises(RuntimeError):
        with SafetensorsWriter(dest) as w:
            w.add("x", np.ones(10, np.float32))
            raise RuntimeError("stop")
    assert os.listdir(tmp_path) == []
    with pytest.raises(TypeError):
        sp.save_weights(tmp_path / "m.npz", {"x": np.array(["text"])})
    assert os.listdir(tmp_path) == []
