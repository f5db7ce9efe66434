"""The rows of issue 18: each swiftprune operation against the peer a user
would pick instead (torch CPU, SciPy, scikit-learn, NumPy, the safetensors
package), at 1 and 2 threads, outputs checked to agree before timing.

Peers that are not installed are left out of a row (torch: the CPU wheel,
`pip install torch --index-url .../cpu`, or a local wheel). `goal` is the
ratio (fastest peer / swiftprune) the issue asks for.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import warnings

import numpy as np

import swiftprune as sp

from . import Case, Peer
from .quantization import numpy_quantize_per_channel

try:
    import torch

    # torch.sparse_csr is "beta" and quantized tensor creation "deprecated": known, not news per row.
    warnings.filterwarnings("ignore", message=".*(Sparse CSR tensor support|quantized tensor creation).*")
except ImportError:  # pragma: no cover - optional peer
    torch = None
try:
    import scipy.linalg
    import scipy.sparse
except ImportError:  # pragma: no cover - optional peer
    scipy = None
try:
    from sklearn.utils.extmath import randomized_svd as sk_randomized_svd
except ImportError:  # pragma: no cover - optional peer
    sk_randomized_svd = None
try:
    from safetensors.numpy import save_file as st_save_file
except ImportError:  # pragma: no cover - optional peer
    st_save_file = None

THREADS = (1, 2)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def _agree(name: str, ours: np.ndarray, theirs: np.ndarray, tolerance: float) -> str:
    error = _rel(ours, theirs)
    assert ours.shape == theirs.shape, f"{name}: shape {ours.shape} vs {theirs.shape}"
    assert error <= tolerance, f"{name}: relative difference {error:.2e} > {tolerance:.0e}"
    return f"{name} {error:.0e}"


def _checker(ours, peers: list[tuple[str, object, float]]):
    """A check comparing `ours()` with each peer's output (name, fn returning an array, tolerance)."""
    def check() -> str:
        mine = np.asarray(ours())
        return "agree: " + ", ".join(_agree(name, mine, np.asarray(fn()), tol) for name, fn, tol in peers)
    return check


# --- structured L2 mask ------------------------------------------------------

def numpy_structured_einsum(w: np.ndarray, amount: float, axis: int) -> np.ndarray:
    """NumPy's fastest way: einsum squared norms, argpartition, broadcast the slice mask."""
    squares = np.einsum("ij,ij->i", w, w) if axis == 0 else np.einsum("ij,ij->j", w, w)
    count = round(amount * w.shape[axis])
    keep = np.ones(w.shape[axis], bool)
    if count:
        keep[np.argpartition(squares, count - 1)[:count]] = False
    return np.broadcast_to(keep[:, None] if axis == 0 else keep[None, :], w.shape).copy()


def structured_cases(quick: bool) -> list[Case]:
    shape = (1024, 640) if quick else (4096, 2560)
    w = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    out = []
    for axis in (0, 1):
        for threads in THREADS:
            ours = lambda w=w, axis=axis: sp.structured_mask(w, 0.5, axis=axis)  # noqa: E731
            peer = lambda w=w, axis=axis: numpy_structured_einsum(w, 0.5, axis)  # noqa: E731

            def check(ours=ours, peer=peer) -> str:
                assert np.array_equal(ours(), peer()), "masks differ"
                return "identical masks"

            out.append(Case(f"structured_mask L2 {shape[0]}x{shape[1]} axis={axis}, 50%", ours, peer,
                            "NumPy einsum+argpartition", threads=threads, check=check, goal=2.0,
                            floor_bytes=w.nbytes + w.size, data={"w": w}))
    return out


# --- SVD ---------------------------------------------------------------------

def svd_cases(quick: bool) -> list[Case]:
    rng = np.random.default_rng(1)
    out = []
    for shape in ([(256, 256)] if quick else [(1024, 1024), (4096, 1024)]):
        w = rng.standard_normal(shape, dtype=np.float32)
        peers = [Peer("scipy gesdd", lambda w=w: scipy.linalg.svd(w, full_matrices=False, lapack_driver="gesdd"))]
        if torch is not None:
            tw = torch.from_numpy(w)
            peers.insert(0, Peer("torch.linalg.svd", lambda tw=tw: torch.linalg.svd(tw, full_matrices=False)))

        def check(w=w) -> str:
            u, s, vt = sp.svd(w)
            reference = np.linalg.svd(w.astype(np.float64), compute_uv=False)
            error = np.abs(s - reference).max() / reference[0]
            assert error < 1e-4, f"singular values off by {error:.1e}"
            recon = _rel((u * s) @ vt, w)
            assert recon < 1e-4, f"u s vt off by {recon:.1e}"
            if torch is not None:
                ts = torch.linalg.svd(torch.from_numpy(w), full_matrices=False)[1].numpy()
                assert np.abs(ts - reference).max() / reference[0] < 1e-4, "torch's singular values off"
            return f"max |s - s_f64|/s_max {error:.0e}, |USVt - W|/|W| {recon:.0e}"

        for threads in THREADS:
            out.append(Case(f"svd thin float32 {shape[0]}x{shape[1]}", lambda w=w: sp.svd(w), None,
                            threads=threads, peers=peers, check=check, goal=1.0, data={"w": w}))
    return out


def randomized_cases(quick: bool) -> list[Case]:
    if sk_randomized_svd is None:
        return []
    rng = np.random.default_rng(2)
    n = 512 if quick else 2048
    u, _ = np.linalg.qr(rng.standard_normal((n, n)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    w = ((u * (1.0 / np.sqrt(1 + np.arange(n)))) @ v.T).astype(np.float32)
    w += 0.01 * rng.standard_normal((n, n), dtype=np.float32) / np.sqrt(n)
    s_ref = np.linalg.svd(w.astype(np.float64), compute_uv=False)
    out = []
    for rank in ([16] if quick else [64, 256]):
        def error(factors, w=w) -> float:
            uu, ss, vv = factors
            return float(np.linalg.norm(w - (uu * ss) @ vv) / np.linalg.norm(w))

        def check(w=w, rank=rank) -> str:
            optimal = np.sqrt((s_ref[rank:] ** 2).sum()) / np.linalg.norm(s_ref)
            ours = error(sp.randomized_svd(w, rank))
            theirs = error(sk_randomized_svd(w, rank, random_state=0))
            assert ours <= theirs * 1.01, f"error {ours:.6f} vs scikit-learn's {theirs:.6f}"
            return f"rel. error ours {ours:.5f}, sklearn {theirs:.5f}, optimal {optimal:.5f}"

        for threads in THREADS:
            out.append(Case(f"randomized_svd {n}x{n} rank {rank}", lambda w=w, rank=rank: sp.randomized_svd(w, rank),
                            lambda w=w, rank=rank: sk_randomized_svd(w, rank, random_state=0),
                            "sklearn randomized_svd", threads=threads, check=check, goal=2.0, data={"w": w}))
    return out


# --- dense and sparse products ----------------------------------------------

def gemm_cases(quick: bool) -> list[Case]:
    rng = np.random.default_rng(3)
    shapes = [(512, 512, 512)] if quick else [(2048, 2048, 2048), (4096, 4096, 64)]
    out = []
    for m, k, n in shapes:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        peers = [Peer("NumPy a @ b", lambda a=a, b=b: a @ b)]
        if torch is not None:
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            peers.append(Peer("torch.mm", lambda ta=ta, tb=tb: torch.mm(ta, tb)))
        check = _checker(lambda a=a, b=b: sp.matmul(a, b), [("NumPy", lambda a=a, b=b: a @ b, 1e-5)])
        for threads in THREADS:
            out.append(Case(f"matmul float32 {m}x{k} @ {k}x{n}", lambda a=a, b=b: sp.matmul(a, b), None,
                            threads=threads, peers=peers, check=check, goal=0.9, data={"a": a, "b": b}))
    return out


def _torch_csr(dense: np.ndarray):
    return torch.from_numpy(dense).to_sparse_csr()


def sparse_cases(quick: bool) -> list[Case]:
    size, batch = (1024, 64) if quick else (4096, 64)
    rng = np.random.default_rng(4)
    w = rng.standard_normal((size, size), dtype=np.float32)
    x = rng.standard_normal((size, batch), dtype=np.float32)
    v = np.ascontiguousarray(x[:, 0])
    pruned = sp.prune_magnitude(w, 0.9)
    csr = sp.CSRMatrix.from_dense(pruned)
    out = []

    # Matvec: one vector.
    peers = []
    if scipy is not None:
        theirs = scipy.sparse.csr_matrix(pruned)
        peers.append(Peer("scipy.sparse csr @ x", lambda theirs=theirs: theirs @ v))
    if torch is not None:
        tcsr, tv = _torch_csr(pruned), torch.from_numpy(v)
        peers.append(Peer("torch.sparse_csr mv", lambda: torch.mv(tcsr, tv)))
    check = _checker(lambda: csr.matmul(v), [("dense", lambda: pruned.astype(np.float64) @ v, 1e-5)])
    floor = csr.nbytes + v.nbytes + size * 4
    for threads in THREADS:
        out.append(Case(f"CSR 90% {size}x{size} matvec (one vector)", lambda: csr.matmul(v), None, threads=threads,
                        peers=peers, check=check, goal=1.5, floor_bytes=floor, data={"csr": csr}))

    # CSR @ a 64-column block.
    peers = []
    if torch is not None:
        tx = torch.from_numpy(x)
        peers.append(Peer("torch.sparse_csr @ x", lambda: torch.mm(tcsr, tx)))
    if scipy is not None:
        peers.append(Peer("scipy.sparse csr @ x", lambda theirs=theirs: theirs @ x))
    check = _checker(lambda: csr.matmul(x), [("dense", lambda: pruned.astype(np.float64) @ x, 1e-5)])
    for threads in THREADS:
        out.append(Case(f"CSR 90% {size}x{size} @ {size}x{batch}", lambda: csr.matmul(x), None, threads=threads,
                        peers=peers, check=check, goal=2.0, data={"csr": csr}))

    # 2:4 against the dense product.
    nm = sp.NMSparseMatrix.from_dense(w, n=2, m=4)
    dense24 = nm.to_dense()
    peers = [Peer("NumPy dense @", lambda: dense24 @ x)]
    if torch is not None:
        t24, tx = torch.from_numpy(dense24), torch.from_numpy(x)
        peers.append(Peer("torch.mm dense", lambda: torch.mm(t24, tx)))
    check = _checker(lambda: nm.matmul(x), [("dense", lambda: dense24.astype(np.float64) @ x, 1e-5)])
    for threads in THREADS:
        out.append(Case(f"2:4 {size}x{size} @ {size}x{batch}", lambda: nm.matmul(x), None, threads=threads,
                        peers=peers, check=check, goal=1.6, data={"nm": nm}))

    # int8 weights against FBGEMM's dynamic quantized Linear, same int8 weights and scales.
    q = sp.quantize(w, 8, axis=0)
    scale = np.asarray(q.scale, np.float32).reshape(-1)
    values = q.values
    dequantized = values.astype(np.float32) * scale[:, None]
    peers = []
    if torch is not None:
        qlinear = _torch_dynamic_linear(values, scale)
        xt = torch.from_numpy(np.ascontiguousarray(x.T))
        # torch's Linear takes (batch, in) and returns (batch, out); the transposes are views.
        peers.append(Peer("torch dynamic qLinear (FBGEMM)", lambda: qlinear(xt)))

    def int8_check() -> str:
        exact = dequantized.astype(np.float64) @ x
        ours = _rel(sp.quantized_matmul(values, scale, x), exact)
        assert ours < 0.03, f"ours {ours:.2%} from the dequantized product"
        text = f"rel. error vs dequantized f64: ours {ours:.2%}"
        if torch is not None:
            theirs = _rel(qlinear(xt).numpy().T, exact)
            assert theirs < 0.03, f"torch {theirs:.2%} from the dequantized product"
            text += f", torch {theirs:.2%}"
        return text

    for threads in THREADS:
        out.append(Case(f"int8 weight {size}x{size} @ {size}x{batch}", lambda: sp.quantized_matmul(values, scale, x),
                        None, threads=threads, peers=peers, check=int8_check, goal=1.5,
                        data={"values": values}))
    return out


def _torch_dynamic_linear(values: np.ndarray, scale: np.ndarray):
    """A torch.ao dynamic quantized Linear holding exactly `values` * `scale` (per-channel qint8)."""
    rows, columns = values.shape
    qweight = torch._make_per_channel_quantized_tensor(torch.from_numpy(values.copy()),
                                                       torch.from_numpy(scale.astype(np.float64)),
                                                       torch.zeros(rows, dtype=torch.int64), 0)
    layer = torch.ao.nn.quantized.dynamic.Linear(columns, rows, dtype=torch.qint8)
    layer.set_weight_bias(qweight, None)
    return layer


# --- memory-bound rows -------------------------------------------------------

def numpy_magnitude_mask(w: np.ndarray, sparsity: float) -> np.ndarray:
    """NumPy: partition |w| at k, compare (ties unresolved)."""
    k = round(sparsity * w.size)
    magnitudes = np.abs(w)
    threshold = np.partition(magnitudes.ravel(), k - 1)[k - 1]
    return magnitudes > threshold


def magnitude_cases(quick: bool) -> list[Case]:
    rng = np.random.default_rng(5)
    out = []
    for n in ([10**6] if quick else [10**7, 10**8]):
        w = rng.standard_normal(n, dtype=np.float32)

        def check(w=w) -> str:
            # NumPy's compare drops every entry tied with the threshold; ours keeps exactly
            # n - k (lower index first among ties): the masks agree off the tie.
            ours, theirs = sp.magnitude_mask(w, 0.5), numpy_magnitude_mask(w, 0.5)
            k = round(0.5 * w.size)
            assert int(ours.sum()) == w.size - k, f"keeps {int(ours.sum())}, not {w.size - k}"
            differ = np.flatnonzero(ours != theirs)
            threshold = np.partition(np.abs(w), k - 1)[k - 1]
            assert np.all(np.abs(w[differ]) == threshold), "masks differ away from the threshold"
            return f"identical off the threshold ({differ.size} tied entries resolved)"

        for threads in THREADS:
            out.append(Case(f"magnitude_mask 1e{len(str(n)) - 1}, 50%", lambda w=w: sp.magnitude_mask(w, 0.5),
                            lambda w=w: numpy_magnitude_mask(w, 0.5), "NumPy partition+compare",
                            threads=threads, check=check, goal=4.0, floor_bytes=w.nbytes + w.size, data={"w": w}))
    return out


def quantize_cases(quick: bool) -> list[Case]:
    shape = (1024, 2560) if quick else (4096, 24576)
    w = np.random.default_rng(6).standard_normal(shape, dtype=np.float32)
    t, q8, q_ours = np.empty(shape, np.float32), np.empty(shape, np.int8), np.empty(shape, np.int8)
    bufs = {"t": t, "q": q8}
    q = sp.quantize(w, 8, axis=0)
    scale = np.asarray(q.scale, np.float32).reshape(-1, 1)
    o_ours, o_peer = np.empty(shape, np.float32), np.empty(shape, np.float32)
    label = f"{shape[0]}x{shape[1]}"
    out = []

    def qcheck() -> str:
        assert np.array_equal(sp.quantize(w, 8, axis=0).values, numpy_quantize_per_channel(w, bufs)), "integers differ"
        return "identical integers"

    def dcheck() -> str:
        assert np.array_equal(q.dequantize(out=o_ours), np.multiply(q.values, scale, out=o_peer, dtype=np.float32))
        return "identical floats"

    for threads in THREADS:
        # Both write into buffers allocated once (out=): a fresh 100 MB result's pages are zeroed
        # by the kernel on first touch, which costs as much as the quantization (README).
        out.append(Case(f"quantize int8 per-channel {label}, out=", lambda: sp.quantize(w, 8, axis=0, out=q_ours),
                        lambda: numpy_quantize_per_channel(w, bufs), "NumPy formula, out=", threads=threads, check=qcheck,
                        goal=4.0, floor_bytes=w.nbytes + w.size, data={"w": w}))
        out.append(Case(f"quantize int8 per-channel {label}, fresh result", lambda: sp.quantize(w, 8, axis=0),
                        lambda: numpy_quantize_per_channel(w, bufs), "NumPy formula, out=", threads=threads, check=qcheck,
                        goal=None, floor_bytes=w.nbytes + w.size, data={"w": w}))
    for threads in THREADS:
        out.append(Case(f"dequantize int8 per-channel {label}, out=", lambda: q.dequantize(out=o_ours),
                        lambda: np.multiply(q.values, scale, out=o_peer, dtype=np.float32),
                        "np.multiply(q, s, out=)", threads=threads, check=dcheck, goal=3.0,
                        floor_bytes=w.size + w.nbytes, data={"q": q}))
    return out


def save_cases(quick: bool) -> list[Case]:
    if st_save_file is None:
        return []
    directory = Path(tempfile.mkdtemp(prefix="swiftprune-bench-save-"))
    rng = np.random.default_rng(7)
    count = 4 if quick else 64  # tensors of 16 MiB: 64 MiB or 1 GiB
    tensors = {f"layers.{i}.weight": rng.standard_normal((2048, 2048), dtype=np.float32) for i in range(count)}
    size = sum(a.nbytes for a in tensors.values())

    def ours() -> None:
        sp.save_weights(directory / "ours.safetensors", tensors)

    def package() -> None:
        st_save_file(tensors, str(directory / "peer.safetensors"))

    def package_fsync() -> None:
        path = directory / "peer_sync.safetensors"
        st_save_file(tensors, str(path))
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def check() -> str:
        ours()
        package()
        a = (directory / "ours.safetensors").read_bytes()
        from safetensors.numpy import load_file

        loaded = load_file(str(directory / "ours.safetensors"))
        assert all(np.array_equal(loaded[k], v) for k, v in tensors.items()), "tensors differ"
        return f"same tensors back through the package ({len(a) / 2**30:.2f} GiB file)"

    label = f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"
    return [Case(f"save_weights safetensors {label} (ours atomic + fsync)", ours, package,
                 "safetensors save_file (no fsync)", threads=1, peers=[Peer("safetensors + fsync", package_fsync)],
                 check=check, goal=0.8, data={"cleanup": _Cleanup(directory), "t": tensors})]


class _Cleanup:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __del__(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def cases(quick: bool) -> Iterator[Case]:
    """The rows, built section by section as the run reaches them (the inputs of all
    of them at once would hold several GiB)."""
    for section in (structured_cases, magnitude_cases, quantize_cases, sparse_cases, gemm_cases,
                    randomized_cases, svd_cases, save_cases):
        yield from section(quick)
