"""Low-rank factorization and the dense tensor core: SGEMM against NumPy's
OpenBLAS matmul, svd against SciPy's LAPACK gesdd, randomized_svd against
scikit-learn's randomized_svd. Baselines run with the same thread count as
swiftprune (threadpoolctl, when installed)."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import numpy as np

import swiftprune as sp

from . import Case

# Load every BLAS the baselines use (NumPy's, SciPy's) before threadpoolctl
# scans the process, or the baselines would run with an unlimited thread count.
import scipy.linalg  # noqa: E402,F401

try:
    from sklearn.utils.extmath import randomized_svd as sk_randomized_svd
except ImportError:  # pragma: no cover - optional
    sk_randomized_svd = None

try:
    from threadpoolctl import ThreadpoolController, threadpool_info

    _controller = ThreadpoolController()  # scanning the loaded libraries is slow: once
except ImportError:  # pragma: no cover - optional
    threadpool_info = None
    _controller = None


def limited(threads: int):
    """A context that limits NumPy/SciPy's BLAS to `threads` (no-op without threadpoolctl)."""
    return _controller.limit(limits=threads, user_api="blas") if _controller else contextlib.nullcontext()


def blas_kernel() -> str:
    """Which OpenBLAS kernel(s) NumPy and SciPy run (e.g. SkylakeX, Haswell)."""
    if threadpool_info is None:
        return "unknown (threadpoolctl not installed)"
    kernels = sorted({f"{pool.get('internal_api')} {pool.get('version')} {pool.get('architecture')}"
                      for pool in threadpool_info() if pool.get("user_api") == "blas"})
    return " / ".join(kernels) or "unknown"


def numpy_matmul_with_coretype(n: int, coretype: str, threads: int) -> float:
    """Best time of an n×n float32 matmul in a subprocess with OPENBLAS_CORETYPE forced."""
    code = (
        "import numpy as np, time\n"
        f"a = np.random.default_rng(0).standard_normal(({n}, {n}), dtype=np.float32); b = a.copy()\n"
        "a @ b\nbest = 1e9\n"
        "for _ in range(3):\n    t = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t)\n"
        "print(best)\n"
    )
    env = dict(os.environ, OPENBLAS_CORETYPE=coretype, OPENBLAS_NUM_THREADS=str(threads))
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        return float(out.stdout.strip())
    except (subprocess.SubprocessError, ValueError):
        return float("nan")


def gemm_cases(quick: bool) -> list[Case]:
    out = []
    rng = np.random.default_rng(0)
    for n in ([512] if quick else [1024, 2048, 4096]):
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        for threads in (1, 2):
            def baseline(a=a, b=b, threads=threads):
                with limited(threads):
                    return a @ b

            def note(a=a, b=b, n=n, threads=threads) -> str:
                sp.set_num_threads(threads)
                start = time.perf_counter()
                sp.matmul(a, b)
                mine = time.perf_counter() - start
                sp.set_num_threads(0)
                text = f"{2 * n**3 / mine / 1e9:.0f} GFLOP/s; NumPy kernel: {blas_kernel()}"
                if not quick and n <= 2048:
                    haswell = numpy_matmul_with_coretype(n, "Haswell", threads)
                    text += f"; vs OPENBLAS_CORETYPE=Haswell (AVX2): {haswell / mine:.2f}x"
                return text

            out.append(Case(f"matmul float32 {n}x{n} @ {n}x{n}", lambda a=a, b=b: sp.matmul(a, b), baseline,
                            "NumPy a @ b", threads=threads, note=note, data={"a": a, "b": b}))
    return out


def svd_cases(quick: bool) -> list[Case]:
    out = []
    rng = np.random.default_rng(1)
    shapes = [(256, 256)] if quick else [(512, 512), (1024, 1024), (4096, 1024)]
    for shape in shapes:
        w = rng.standard_normal(shape, dtype=np.float32)
        threads = 2

        def baseline(w=w, threads=threads):
            with limited(threads):
                return scipy.linalg.svd(w, full_matrices=False, lapack_driver="gesdd")

        def note(w=w) -> str:
            s = sp.svd(w)[1].astype(np.float64)
            ref = np.linalg.svd(w.astype(np.float64), compute_uv=False)
            return f"max |s - s_ref| / s_max = {np.abs(s - ref).max() / ref[0]:.1e}"

        out.append(Case(f"svd float32 {shape[0]}x{shape[1]}", lambda w=w: sp.svd(w), baseline,
                        "scipy svd gesdd", threads=threads, note=note, data={"w": w}))
    return out


def randomized_cases(quick: bool) -> list[Case]:
    out = []
    rng = np.random.default_rng(2)
    n = 512 if quick else 2048
    # A weight-like spectrum: power-law decay plus a noise floor.
    u, _ = np.linalg.qr(rng.standard_normal((n, n)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    w = ((u * (1.0 / np.sqrt(1 + np.arange(n)))) @ v.T).astype(np.float32)
    w += 0.01 * rng.standard_normal((n, n), dtype=np.float32) / np.sqrt(n)
    for rank in ([16] if quick else [64, 256]):
        threads = 2

        def baseline(w=w, rank=rank, threads=threads):
            with limited(threads):
                return sk_randomized_svd(w, rank, random_state=0)

        def note(w=w, rank=rank) -> str:
            def error(factors):
                uu, ss, vv = factors
                return np.linalg.norm(w - (uu * ss) @ vv) / np.linalg.norm(w)

            s = np.linalg.svd(w.astype(np.float64), compute_uv=False)
            best = np.sqrt((s[rank:] ** 2).sum()) / np.linalg.norm(s)
            ours = error(sp.randomized_svd(w, rank))
            text = f"rel. error ours {ours:.6f}, optimal {best:.6f}"
            if sk_randomized_svd is not None:
                text += f", sklearn {error(sk_randomized_svd(w, rank, random_state=0)):.6f}"
            return text

        out.append(Case(f"randomized_svd {n}x{n} rank {rank}", lambda w=w, rank=rank: sp.randomized_svd(w, rank),
                        baseline if sk_randomized_svd else None, "sklearn randomized_svd",
                        threads=threads, note=note, data={"w": w}))
    return out


def cases(quick: bool) -> list[Case]:
    return gemm_cases(quick) + svd_cases(quick) + randomized_cases(quick)
