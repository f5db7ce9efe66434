"""Two builds of libswiftprune.so side by side in one process (ctypes, RTLD_LOCAL), one row's calls
alternated ABAB / BABA, with an optional pause before each call (the harness's settle leaves >= 20 ms
idle). On a VM whose speed drifts from process to process, this compares two versions of a kernel under the
same conditions. Wall time median / p10 / p90 and CPU time median of each:

    python benchmarks/ab_inprocess.py ROW THREADS CALLS PAUSE_MS A.so B.so
    python benchmarks/ab_inprocess.py nm 2 80 20 /work/main/python/swiftprune/libswiftprune.so \
        python/swiftprune/libswiftprune.so

ROW: nm (2:4 packed product 4096x4096 @ 4096x64), sgemm (float32 matmul 2048x2048 @ 2048x2048) or structured0 /
structured1 (structured L2 mask of 4096x2560 float32 along axis 0 / 1; structured0fresh / structured1fresh: into a new
mask each call), or svdMxN (thin SVD of a standard normal MxN float32 matrix, the peer bench's input, e.g.
svd1024x1024). The inputs are made with the swiftprune package on PYTHONPATH. A seventh
argument BURST:PAUSE starts thread_probe.py's competitor (busy BURST ms, asleep PAUSE ms, on CPU 0).
"""
import ctypes
import statistics
import subprocess
import sys
import time
from pathlib import Path
import numpy as np
import swiftprune as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from thread_probe import COMPETITOR  # noqa: E402

row, threads, calls, pause = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]) / 1e3
libs = {v: ctypes.CDLL(p, mode=ctypes.RTLD_LOCAL) for v, p in [("A", sys.argv[5]), ("B", sys.argv[6])]}
calls_of = {}
if row.startswith("structured"):
    axis = int(row[len("structured")])
    w = np.random.default_rng(0).standard_normal((4096, 2560), dtype=np.float32)
    shape = np.array(w.shape, np.int64)
    outs = {v: np.empty(w.shape, np.bool_) for v in libs}
    for v, lib in libs.items():
        f = lib.sp_structured_mask_f32
        f.restype = ctypes.c_int
        f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int64, ctypes.c_double, ctypes.c_void_p]
        if row.endswith("fresh"):  # a new mask each call, as swiftprune.structured_mask returns (page faults included)
            def fresh(f=f) -> int:
                mask = np.empty(w.shape, np.bool_)  # alive until the call returns
                return f(w.ctypes.data, shape.ctypes.data, 2, 0.5, axis, 2.0, mask.ctypes.data)
            calls_of[v] = fresh
        else:
            calls_of[v] = (lambda f=f, o=outs[v]: f(w.ctypes.data, shape.ctypes.data, 2, 0.5, axis, 2.0, o.ctypes.data))
elif row.startswith("svd"):
    m, n = (int(t) for t in row[3:].split("x"))
    w = np.random.default_rng(1).standard_normal((m, n), dtype=np.float32)
    r = min(m, n)
    outs = {v: (np.empty((m, r), np.float32), np.empty(r, np.float32), np.empty((r, n), np.float32)) for v in libs}
    for v, lib in libs.items():
        f = lib.sp_svd_f32
        f.restype = ctypes.c_int
        f.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64] + [ctypes.c_void_p] * 3
        calls_of[v] = (lambda f=f, o=outs[v]: f(w.ctypes.data, m, n, *(x.ctypes.data for x in o)))
elif row == "sgemm":
    rng = np.random.default_rng(3)
    a = rng.standard_normal((2048, 2048), dtype=np.float32); b = rng.standard_normal((2048, 2048), dtype=np.float32)
    outs = {v: np.empty((2048, 2048), np.float32) for v in libs}
    for v, lib in libs.items():
        f = lib.sp_matmul_f32
        f.restype = ctypes.c_int
        f.argtypes = [ctypes.c_void_p, ctypes.c_bool, ctypes.c_void_p, ctypes.c_bool] + [ctypes.c_int64] * 3 + [ctypes.c_void_p]
        calls_of[v] = (lambda f=f, o=outs[v]: f(a.ctypes.data, False, b.ctypes.data, False, 2048, 2048, 2048, o.ctypes.data))
else:
    rng = np.random.default_rng(4)
    W = rng.standard_normal((4096, 4096), dtype=np.float32); x = rng.standard_normal((4096, 64), dtype=np.float32)
    nm = sp.NMSparseMatrix.from_dense(W, n=2, m=4)
    nm.matmul(x)
    packed = np.ascontiguousarray(nm._packed)
    outs = {v: np.empty((4096, 64), np.float32) for v in libs}
    for v, lib in libs.items():
        f = lib.sp_nm_packed_matmul_f32
        f.restype = ctypes.c_int
        f.argtypes = [ctypes.c_int64] * 4 + [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
        calls_of[v] = (lambda f=f, o=outs[v]: f(4096, 4096, 2, 4, packed.ctypes.data, packed.nbytes, x.ctypes.data, 4096, 64, o.ctypes.data))
for v, lib in libs.items():
    lib.sp_set_num_threads.argtypes = [ctypes.c_int64]
    lib.sp_set_num_threads(threads)
    for _ in range(3):
        assert calls_of[v]() == 0
if row.startswith("svd"):  # a faster build may round differently: report how far apart, do not require equality
    print("max |A - B| of u, s, vt:", [float(np.abs(a - b).max()) for a, b in zip(outs["A"], outs["B"])])
elif not row.endswith("fresh"):  # (fresh masks are not kept: compare with the plain row)
    assert np.array_equal(outs["A"], outs["B"]), "the two builds disagree"
competitor = None
if len(sys.argv) > 7:
    burst, rest = (float(t) / 1e3 for t in sys.argv[7].split(":"))
    competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR, str(burst), str(rest)])
cpu = {v: [] for v in libs}; wall = {v: [] for v in libs}
for i in range(calls):
    for v in (("A", "B") if i % 2 == 0 else ("B", "A")):
        if pause:
            time.sleep(pause)
        c, t = time.process_time(), time.perf_counter()
        calls_of[v]()
        wall[v].append(time.perf_counter() - t); cpu[v].append(time.process_time() - c)
if competitor is not None:
    competitor.kill()
    competitor.wait()
for v in libs:
    print(f"{v} {row} threads {threads} pause {pause*1e3:.0f} ms: wall median {statistics.median(wall[v])*1e3:.2f} ms "
          f"(p10 {np.percentile(wall[v],10)*1e3:.2f}, p90 {np.percentile(wall[v],90)*1e3:.2f}), cpu median {statistics.median(cpu[v])*1e3:.2f} ms")
