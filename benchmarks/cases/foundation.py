"""Foundation: exact magnitude selection against NumPy's partition."""
from __future__ import annotations

import numpy as np

import swiftprune as sp

from . import Case


def numpy_magnitude_mask(w: np.ndarray, sparsity: float) -> np.ndarray:
    """The NumPy way: partition |w| at k, then compare (ties not resolved)."""
    k = round(sparsity * w.size)
    magnitudes = np.abs(w)
    threshold = np.partition(magnitudes.ravel(), k - 1)[k - 1]
    return magnitudes > threshold


def cases(quick: bool) -> list[Case]:
    sizes = [10**6] if quick else [10**6, 10**7, 10**8]
    out = []
    rng = np.random.default_rng(0)
    for n in sizes:
        w = rng.standard_normal(n, dtype=np.float32)
        label = f"1e{len(str(n)) - 1}"
        for threads in (1, 2):
            read_pass: dict = {}

            def ours(w=w) -> object:
                return sp.magnitude_mask(w, 0.5)

            def note(w=w, read_pass=read_pass, threads=threads) -> str:
                # One read pass of memory: np.max touches every byte once with SIMD.
                import time

                best = float("inf")
                for _ in range(3):
                    start = time.perf_counter()
                    np.max(w)
                    best = min(best, time.perf_counter() - start)
                sp.set_num_threads(threads)
                start = time.perf_counter()
                sp.magnitude_mask(w, 0.5)
                mine = time.perf_counter() - start
                sp.set_num_threads(0)
                return f"{mine / best:.1f} read passes (np.max of w: {best * 1e3:.1f} ms)"

            out.append(Case(f"magnitude_mask float32 {label}, 50%", ours,
                            lambda w=w: numpy_magnitude_mask(w, 0.5),
                            "np.partition+compare", threads=threads, note=note, data={"w": w}))
    return out
