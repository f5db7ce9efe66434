"""A refused thread gives fewer workers, never a hang (round 12).

When the system refuses a new thread (``pthread_create`` fails with EAGAIN),
libdispatch's Linux thread pool, which ran ``parallelFor`` and the save's
background writes, retried on the calling thread forever, a second apart,
before running any of the work: the call hung. Two ways to be refused:

- the per-user process limit (``ulimit -u``, ``RLIMIT_NPROC``), which counts
  threads: a child that drops root for ``nobody`` and sets it to 1 can start
  none. (Root is exempt from it, so this needs root to set up; skipped otherwise.)
- an address-space limit (``RLIMIT_AS``) with room for the call's scratch but
  not for a new thread's 8 MiB stack, set before the first multi-threaded call.

Each scenario runs in a child process under a timeout; the results are checked
against NumPy references computed in the test process.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import swiftprune as sp

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(sp.__file__)))
TIMEOUT = 60

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="libdispatch's retry loop and these limits are Linux's")

# As in test_reliability_memory.py: one malloc arena, fixed thresholds, so that
# the address-space limit refuses what it should (here: a new thread's stack).
MALLOC_SETTINGS = "glibc.malloc.arena_max=1:glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=131072"


def magnitude_mask_reference(w: np.ndarray, sparsity: float) -> np.ndarray:
    """The contract's mask: the round(sparsity * n) smallest |w| pruned, lower index first among ties."""
    k = round(sparsity * w.size)
    order = np.argsort(np.abs(w.astype(np.float64)).ravel(), kind="stable")
    mask = np.ones(w.size, bool)
    mask[order[:k]] = False
    return mask.reshape(w.shape)


def run_child(code: str, tmp_path, *, tunables: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR, OPENBLAS_NUM_THREADS="1", SWIFTPRUNE_NUM_THREADS="2")
    if tunables:
        env["GLIBC_TUNABLES"] = ":".join(filter(None, [os.environ.get("GLIBC_TUNABLES"), tunables]))
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the child hung (> {TIMEOUT} s) when a thread was refused")


def inputs(tmp_path):
    rng = np.random.default_rng(12)
    w = rng.standard_normal(1 << 20).astype(np.float32)
    a = rng.standard_normal((512, 512)).astype(np.float32)
    np.save(tmp_path / "w.npy", w)
    np.save(tmp_path / "a.npy", a)
    return w, a


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="dropping to nobody with RLIMIT_NPROC = 1 needs root")
def test_process_limit_runs_on_the_calling_thread(tmp_path):
    w, a = inputs(tmp_path)
    os.chmod(tmp_path, 0o777)
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else str(tmp_path)
    result = run_child(f"""
        import os, resource, numpy as np
        import swiftprune as sp, swiftprune.distributed, hashlib   # imported as root (the stdlib may be unreadable to nobody)
        w, a = np.load("w.npy"), np.load("a.npy")
        weights = {{"a": a, "w": w}}
        os.setgid(65534); os.setuid(65534)
        resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))   # this process and no thread more
        np.save("mask.npy", sp.magnitude_mask(w, 0.5))
        np.save("product.npy", sp.matmul(a, a))
        sp.save_weights("saved.safetensors", weights)                  # direct writes in the background
        sp.save_weights({shm!r} + "/hyg12-%d.safetensors" % os.getpid(), weights)   # tmpfs: buffered + fdatasync
        back = sp.load_weights({shm!r} + "/hyg12-%d.safetensors" % os.getpid())
        os.unlink({shm!r} + "/hyg12-%d.safetensors" % os.getpid())
        assert all(np.array_equal(back[k], weights[k]) for k in weights)
        print("done")
    """, tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "mask.npy"), magnitude_mask_reference(w, 0.5))
    np.testing.assert_allclose(np.load(tmp_path / "product.npy"), a.astype(np.float64) @ a, rtol=1e-4, atol=1e-3)
    back = sp.load_weights(tmp_path / "saved.safetensors")
    np.testing.assert_array_equal(back["a"], a)
    np.testing.assert_array_equal(back["w"], w)


def test_address_space_limit_without_room_for_a_stack(tmp_path):
    w, _ = inputs(tmp_path)
    result = run_child("""
        import resource, numpy as np, swiftprune as sp
        w = np.load("w.npy")
        def address_space() -> int:
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        # Room for the call's scratch (about 1 MiB here), not for an 8 MiB thread stack.
        resource.setrlimit(resource.RLIMIT_AS, (address_space() + (10 << 20), resource.RLIM_INFINITY))
        try:
            np.save("mask.npy", sp.magnitude_mask(w, 0.5))
            print("done")
        except MemoryError as error:
            print("MemoryError:", error)
    """, tmp_path, tunables=MALLOC_SETTINGS)
    assert result.returncode == 0, result.stderr[-2000:]
    if result.stdout.startswith("MemoryError"):   # also allowed by the standard; not what happens today
        assert "cannot allocate" in result.stdout, result.stdout
    else:
        assert result.stdout.strip() == "done", result.stdout
        np.testing.assert_array_equal(np.load(tmp_path / "mask.npy"), magnitude_mask_reference(w, 0.5))


def test_forked_child_starts_its_own_workers(tmp_path):
    """The pool's helpers stay with the parent at fork: the child must not wait for them."""
    w, _ = inputs(tmp_path)
    result = run_child("""
        import os, numpy as np, swiftprune as sp
        w = np.load("w.npy")
        first = sp.magnitude_mask(w, 0.5)          # the parent's helpers start here
        pid = os.fork()
        if pid == 0:
            ok = all(np.array_equal(sp.magnitude_mask(w, 0.5), first) for _ in range(3))
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        print("child exit", os.waitstatus_to_exitcode(status))
    """, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "child exit 0", result.stdout
