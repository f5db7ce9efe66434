"""Compressed layers that run: CSR, N:M and int8 products against dense NumPy
(OpenBLAS float32 GEMM) and scipy.sparse, W (out, in) @ x (in, batch)."""
from __future__ import annotations

import time

import numpy as np

import swiftprune as sp

from . import Case


def _best(fn, repeat: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _single_threaded(fn):
    """`fn` run with NumPy's BLAS limited to one thread (threadpoolctl), or None."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    controller = ThreadpoolController()

    def run():
        with controller.limit(limits=1, user_api="blas"):
            return fn()

    return run


def cases(quick: bool) -> list[Case]:
    size, batch = (1024, 64) if quick else (4096, 64)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((size, size), dtype=np.float32)
    x = rng.standard_normal((size, batch), dtype=np.float32)
    label = f"{size}x{size} @ {size}x{batch}"
    out: list[Case] = []

    try:
        import scipy.sparse as scipy_sparse
    except ImportError:  # pragma: no cover - SciPy is a test dependency
        scipy_sparse = None

    # CSR across sparsities: ratios against dense give the break-even point.
    ratios: dict[float, float] = {}
    sparsities = [0.5, 0.7, 0.8, 0.9, 0.95]
    for sparsity in sparsities:
        pruned = sp.prune_magnitude(w, sparsity)
        csr = sp.CSRMatrix.from_dense(pruned)

        def note(csr=csr, pruned=pruned, sparsity=sparsity) -> str:
            # Re-measured here (the table's own numbers are not visible to a note).
            ratios[sparsity] = _best(lambda: pruned @ x) / _best(lambda: csr.matmul(x))
            parts = [f"{csr.nbytes / pruned.nbytes:.0%} of dense bytes"]
            if scipy_sparse is not None:
                theirs = scipy_sparse.csr_matrix(pruned)
                parts.append(f"scipy csr: {_best(lambda: theirs @ x) * 1e3:.1f} ms")
            if sparsity == sparsities[-1]:
                points = sorted(ratios.items())
                even = next((s0 + (1 - r0) * (s1 - s0) / (r1 - r0)
                             for (s0, r0), (s1, r1) in zip(points, points[1:]) if r0 < 1 <= r1), None)
                if points and points[0][1] >= 1:
                    parts.append(f"break-even <= {points[0][0]:.0%}")
                elif even is not None:
                    parts.append(f"break-even ~{even:.0%} sparsity")
            return "; ".join(parts)

        out.append(Case(f"CSR matmul {label}, {sparsity:.0%} sparse", lambda csr=csr: csr.matmul(x),
                        lambda pruned=pruned: pruned @ x, "NumPy dense f32", threads=2, note=note,
                        data={"csr": csr, "pruned": pruned}))

    pruned = sp.prune_magnitude(w, 0.9)
    csr = sp.CSRMatrix.from_dense(pruned)
    if scipy_sparse is not None:
        theirs = scipy_sparse.csr_matrix(pruned)
        out.append(Case(f"CSR matmul {label}, 90% sparse", lambda: csr.matmul(x), lambda: theirs @ x,
                        "scipy.sparse csr @ x", threads=2, data={"csr": csr, "theirs": theirs}))
        out.append(Case(f"CSRMatrix.from_dense {size}x{size}, 90%", lambda: sp.CSRMatrix.from_dense(pruned),
                        lambda: scipy_sparse.csr_matrix(pruned), "scipy csr_matrix(w)", threads=2,
                        data={"pruned": pruned}))
    single = _single_threaded(lambda: pruned @ x)
    if single is not None:
        out.append(Case(f"CSR matmul {label}, 90% sparse", lambda: csr.matmul(x), single,
                        "NumPy dense f32, 1 thread", threads=1, data={"csr": csr, "pruned": pruned}))
    nm = sp.NMSparseMatrix.from_dense(w, n=2, m=4)
    nm_dense = nm.to_dense()
    out.append(Case(f"2:4 N:M matmul {label}", lambda: nm.matmul(x), lambda: nm_dense @ x, "NumPy dense f32",
                    threads=2, note=lambda: f"{nm.nbytes / nm_dense.nbytes:.1%} of dense bytes; "
                    f"max |err| vs dense {np.abs(nm.matmul(x) - nm_dense @ x).max():.1e}",
                    data={"nm": nm, "dense": nm_dense}))

    single = _single_threaded(lambda: nm_dense @ x)
    if single is not None:
        out.append(Case(f"2:4 N:M matmul {label}", lambda: nm.matmul(x), single, "NumPy dense f32, 1 thread",
                        threads=1, data={"nm": nm, "dense": nm_dense}))

    scale = (np.abs(w).max(axis=1) / 127).astype(np.float32)
    values = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    dequantized = values.astype(np.float32) * scale[:, None]

    def int8_note() -> str:
        exact = dequantized @ x
        error = np.linalg.norm(sp.quantized_matmul(values, scale, x) - exact) / np.linalg.norm(exact)
        relu = np.maximum(x, 0)
        exact_relu = dequantized @ relu
        error_relu = np.linalg.norm(sp.quantized_matmul(values, scale, relu) - exact_relu) / np.linalg.norm(exact_relu)
        return (f"rel. error vs dequantized f32: {error:.2%} (Gaussian x), {error_relu:.2%} (ReLU x); "
                f"weights {values.nbytes / w.nbytes:.0%} of f32")

    out.append(Case(f"int8 quantized_matmul {label}", lambda: sp.quantized_matmul(values, scale, x),
                    lambda: dequantized @ x, "NumPy dense f32", threads=2, note=int8_note,
                    data={"values": values, "dequantized": dequantized}))
    single = _single_threaded(lambda: dequantized @ x)
    if single is not None:
        out.append(Case(f"int8 quantized_matmul {label}", lambda: sp.quantized_matmul(values, scale, x), single,
                        "NumPy dense f32, 1 thread", threads=1, data={"values": values, "dequantized": dequantized}))
    out.append(Case(f"int8 quantized_matmul {size}x{size} @ {size}", lambda: sp.quantized_matmul(values, scale, x[:, 0]),
                    lambda: dequantized @ x[:, 0], "NumPy dense f32 (GEMV)", threads=2,
                    data={"values": values, "dequantized": dequantized}))
    out.append(Case(f"CSR matvec {size}x{size} @ {size}, 90% sparse", lambda: csr.matmul(x[:, 0]),
                    lambda: pruned @ x[:, 0], "NumPy dense f32 (GEMV)", threads=2, data={"csr": csr}))
    return out
