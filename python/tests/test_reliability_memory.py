"""Allocation failure is a MemoryError, never an abort (issue 16, item 1).

Each scenario runs in a child process whose address space is limited with
``resource.setrlimit(RLIMIT_AS)`` to what it already uses plus a few hundred
MB, then asks for work whose scratch memory does not fit. Before the fix the
Swift runtime trapped ("Fatal error: failed to allocate ... bytes", SIGABRT);
now the call raises MemoryError and the process goes on working.

The inputs are ``np.zeros`` arrays: calloc'd pages that are only read stay
unbacked, so a 1.6 GB input costs address space (which the limit counts)
but no RAM.

The limit bounds only *new* address space, so the child runs glibc's malloc
with one arena and fixed thresholds (``MALLOC_SETTINGS``): otherwise memory
that is already counted could serve a scenario's request past the limit. A
thread that has exited leaves its arena, a 64 MiB reservation counted in
``VmSize``, on glibc's free list, and a refused main-arena request is retried
there (``arena_get_retry``); Dispatch's idle workers exit after 5 s, so on a
loaded machine a worker of the prelude could be gone by the time of the call,
and the 16 MiB packing buffer of "matmul packing" was then served from its
arena ("the call fit in the limit"; reproduced every time with a 6 s sleep
before ``limit``). A freed large block also raises the dynamic mmap threshold,
after which up to twice that much freed memory stays mapped at the heap top.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import swiftprune as sp

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(sp.__file__)))

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and /proc are Linux's")

# One malloc arena (no other arena's reserved heap to retry a refused request
# in) and the default 128 KiB mmap/trim thresholds held fixed (no freed block
# kept mapped at the heap top): every request the scenario makes past the
# limit needs new address space, so the limit refuses it. See the docstring.
MALLOC_SETTINGS = "glibc.malloc.arena_max=1:glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=131072"

PRELUDE = """
import resource, numpy as np, swiftprune as sp

def address_space() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize")

def limit(headroom: int) -> None:
    target = address_space() + headroom
    resource.setrlimit(resource.RLIMIT_AS, (target, resource.RLIM_INFINITY))

# Start the worker threads (their stacks count too) before limiting. (Not to avoid a
# hang any more: a refused thread means fewer workers, see test_thread_refusal.py.)
sp.set_num_threads(2)
sp.magnitude_mask(np.random.default_rng(0).random(1 << 22, dtype=np.float32), 0.5)
"""

SCENARIOS = {
    # The reproduction: all-equal magnitudes put every entry in the selection bucket.
    "magnitude_mask 4e8": """
        w = np.zeros(400_000_000, np.float32)
        mask = np.empty(w.shape, bool)   # the output, allocated by NumPy before the limit
        limit(600 << 20)
        call = lambda: sp.magnitude_mask(w, 0.5)
    """,
    "global_magnitude_masks": """
        ws = [np.zeros(100_000_000, np.float32) for _ in range(3)]
        limit(500 << 20)
        call = lambda: sp.global_magnitude_masks(ws, 0.5)
    """,
    "cluster optimal": """
        w = np.random.default_rng(1).random(20_000_000, dtype=np.float32)
        limit(700 << 20)
        call = lambda: sp.cluster(w, 16, init="optimal")   # (k - 1) x (n + 1) split table
    """,
    "sparsegpt": """
        w = np.zeros((20_000, 20_000), np.float32)
        x = np.zeros((4, 20_000), np.float32)
        limit(2200 << 20)                          # room for the float32 output (1.6 GB), not more
        call = lambda: sp.sparsegpt(w, x, 0.5)     # the Hessian (3.2 GB) and working copies
    """,
    # GPTQ and SparseGPT (also joint) share one column loop and its allocations.
    "gptq": """
        w = np.zeros((8_192, 4_096), np.float32)
        acc = sp.calibration.HessianAccumulator(4_096).update(np.ones((4, 4_096), np.float32))
        acc.hessian_
        limit(160 << 20)                           # room for the int8 output (32 MB), not for the
        call = lambda: sp.gptq(w, acc, 4, 128)     # float32 working copy (128 MB) and factor (2 x 64 MB)
    """,
    # GEMM's packing buffers come from the fallible allocator too: at 2 workers, B packed
    # once for both row slices (16 MiB for 2048 x 2048).
    "matmul packing": """
        a = np.zeros((2048, 2048), np.float32)
        limit((16 << 20) + (512 << 10))            # room for the 16 MiB output, not for the packing buffers
        call = lambda: sp.matmul(a, a)
        what = "GEMM packing"
    """,
    # The sparse products' x panel (16 MiB for 65536 rows of 64 columns) comes from the fallible
    # allocator: it aborted the process before.
    "csr x panel": """
        csr = sp.CSRMatrix.from_dense(np.eye(4, 65_536, dtype=np.float32))
        x = np.zeros((65_536, 64), np.float32)
        limit(8 << 20)                             # room for the small output, not for the 16 MiB panel
        call = lambda: csr.matmul(x)
    """,
    "nm x panel": """
        nm = sp.NMSparseMatrix.from_dense(np.ones((4, 65_536), np.float32))
        x = np.zeros((65_536, 64), np.float32)
        limit(8 << 20)
        call = lambda: nm.matmul(x)
    """,
    "svd": """
        w = np.zeros((200_000, 2_000), np.float32)
        limit(2200 << 20)                          # room for u (1.6 GB), s and vt
        call = lambda: sp.svd(w)                   # float64 working copy (3.2 GB)
    """,
    # Round 7: scratch that used Swift's trapping allocators. `what` is the allocation that
    # must be refused (its name in the message): the scenario tests that site, not another.
    "wanda_mask workers' scores": """
        w = np.zeros((1, 20_000_000), np.float32)
        x = np.zeros((1, 20_000_000), np.float32)
        limit(400 << 20)                           # room for x's column norms, not the scores (16 B per column)
        call = lambda: sp.wanda_mask(w, x, 0.5)
        what = "wanda's scores"
    """,
    "hessian_accumulate partial sums": """
        from swiftprune import _core
        x = np.ones((4, 12_000), np.float32)
        h = np.zeros((12_000, 12_000))             # calloc'd: address space, no RAM
        limit(200 << 20)                           # the float32 partial Hessian needs 576 MB
        call = lambda: _core.hessian_accumulate(x, h)   # no scratch given: the core allocates one
        what = "the Hessian's partial sums"
    """,
    # The accumulator's shared scratch is NumPy's: its refusal is reported as the core's would be.
    "HessianAccumulator scratch": """
        acc = sp.calibration.HessianAccumulator(12_000)
        acc.update(np.ones((4, 12_000), np.float32))
        limit(200 << 20)                           # the float32 scratch needs 576 MB
        call = lambda: acc.hessian_
        what = "the Hessian's partial sums"
    """,
    "gptq from activations": """
        from swiftprune import _core
        w = np.zeros((4, 16_384))
        x = np.ones((4, 16_384))
        limit(400 << 20)                           # the float64 Hessian needs 2 GB
        call = lambda: _core.gptq(w, x, 4, True, 128, 0.01)
        what = "the GPTQ Hessian"
    """,
    "csr_from_dense row scratch": """
        w = np.zeros((1, 200_000_000), np.float32)
        limit(300 << 20)                           # room for indptr, not the row scratch (8 B per column)
        call = lambda: sp.CSRMatrix.from_dense(w)
        what = "the CSR row scratch"
    """,
    "quantized_matmul activations": """
        values = np.zeros((1, 4_096), np.int8)
        scale = np.ones(1, np.float32)
        x = np.zeros((4_096, 100_000), np.float32)
        limit(200 << 20)                           # room for y (400 KB), not x's int8 codes (400 MB)
        call = lambda: sp.quantized_matmul(values, scale, x)
        what = "the quantized activations"
    """,
}

EPILOGUE = """
try:
    call()
except MemoryError as error:
    print("MemoryError:", error)
    # Raised by the Swift core's allocator, not by NumPy allocating an output.
    assert "cannot allocate" in str(error), error
    assert what in str(error), (what, str(error))
else:
    raise SystemExit("the call fit in the limit: the scenario does not test anything")
# The process is intact: small work still gives the right answer.
small = np.arange(1000, dtype=np.float32)
assert sp.magnitude_mask(small, 0.25).sum() == 750
print("alive")
"""


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_allocation_failure_is_a_memory_error(name):
    code = PRELUDE + 'what = ""\n' + textwrap.dedent(SCENARIOS[name]) + EPILOGUE
    tunables = ":".join(filter(None, [os.environ.get("GLIBC_TUNABLES"), MALLOC_SETTINGS]))
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR, OPENBLAS_NUM_THREADS="1", GLIBC_TUNABLES=tunables)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr[-2000:]}"
    assert "MemoryError: " in result.stdout and result.stdout.rstrip().endswith("alive"), result.stdout
