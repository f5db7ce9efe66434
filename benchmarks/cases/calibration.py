"""GPTQ and SparseGPT against straightforward PyTorch CPU implementations of
the reference algorithms (Frantar et al.'s gptq.py ``fasterquant`` and
sparsegpt.py ``fasterprune``, float32 as in the papers' code), written here,
same inputs, same thread count (torch.set_num_threads). Both sides start from
the activations: swiftprune accumulates ``xᵀx`` (HessianAccumulator, syrk)
then quantizes/prunes; the reference forms ``H = 2/n · xᵀx`` with torch.
The note compares the output error ``‖(W − Ŵ) Xᵀ‖`` of both.

Also ``quantize(method="mse")`` against ``method="minmax"``.
"""
from __future__ import annotations

import math

import numpy as np

import swiftprune as sp
from swiftprune.calibration import HessianAccumulator

from . import Case

try:
    import torch
except ImportError:  # pragma: no cover - optional
    torch = None


def _torch_hessian(x):
    x = torch.from_numpy(x)
    return (2 / x.shape[0]) * (x.t() @ x)


def _torch_inverse_cholesky(H, W, damp):
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += damp * torch.mean(torch.diag(H)) * torch.eye(H.shape[0])
    L = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(L)
    return torch.linalg.cholesky(H, upper=True)


def torch_gptq(w, x, bits=4, group=128, damp=0.01, block=128):
    """The reference GPTQ (symmetric min-max scales per row and group)."""
    W = torch.from_numpy(w).clone()
    Hinv = _torch_inverse_cholesky(_torch_hessian(x), W, damp)
    rows, cols = W.shape
    qmax = 2 ** (bits - 1) - 1
    Q = torch.zeros_like(W)
    scale = None
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            w_col = W1[:, i]
            d = Hinv1[i, i]
            if (i1 + i) % group == 0:
                g = W[:, i1 + i:i1 + i + group] if i == 0 else torch.cat(
                    [W1[:, i:], W[:, i2:i1 + i + group]], dim=1)[:, :group]
                scale = torch.clamp(g.abs().amax(dim=1), min=1e-12) / qmax
            q = torch.clamp(torch.round(w_col / scale), -qmax, qmax) * scale
            Q1[:, i] = q
            err = (w_col - q) / d
            W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        Q[:, i1:i2] = Q1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return Q.numpy()


def torch_sparsegpt(w, x, sparsity=0.5, damp=0.01, block=128):
    """The reference SparseGPT, unstructured (per-block mask by w² / d²)."""
    W = torch.from_numpy(w).clone()
    Hinv = _torch_inverse_cholesky(_torch_hessian(x), W, damp)
    rows, cols = W.shape
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        tmp = W1 ** 2 / (torch.diag(Hinv1).reshape((1, -1))) ** 2
        thresh = torch.sort(tmp.flatten())[0][int(tmp.numel() * sparsity)]
        mask1 = tmp <= thresh
        for i in range(i2 - i1):
            w_col = W1[:, i]
            d = Hinv1[i, i]
            q = w_col.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err = (w_col - q) / d
            W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return W.numpy()


def output_error(w, w_hat, x, rows=4096):
    """‖(W − Ŵ) Xᵀ‖ in float64, over at most `rows` samples."""
    d = np.asarray(w, np.float64) - np.asarray(w_hat, np.float64)
    return float(np.linalg.norm(d @ np.asarray(x[:rows], np.float64).T))


def layer(n, samples, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, n), dtype=np.float32) / math.sqrt(n)
    # Correlated inputs with uneven channel energy, as real activations.
    mix = rng.standard_normal((n, n), dtype=np.float32) / math.sqrt(n)
    x = (rng.standard_normal((samples, n), dtype=np.float32) @ mix) * np.exp(
        0.5 * rng.standard_normal(n)).astype(np.float32)
    return w, np.ascontiguousarray(x, dtype=np.float32)


def ours_gptq(w, x):
    return sp.gptq(w, HessianAccumulator(x.shape[1]).update(x), 4, 128)


def ours_sparsegpt(w, x):
    return sp.sparsegpt(w, HessianAccumulator(x.shape[1]).update(x), 0.5)


def calibration_cases(quick: bool) -> list[Case]:
    out = []
    sizes = [(256, 512)] if quick else [(1024, 2048), (4096, 4096)]
    for n, samples in sizes:
        w, x = layer(n, samples, n)
        for threads in (1, 2):
            def base_gptq(w=w, x=x, threads=threads):
                torch.set_num_threads(threads)
                return torch_gptq(w, x)

            def note_gptq(w=w, x=x) -> str:
                ours = output_error(w, ours_gptq(w, x).dequantize(), x)
                text = f"output error ours {ours:.4g}"
                if torch is not None:
                    ref = output_error(w, torch_gptq(w, x), x)
                    text += f", torch reference {ref:.4g} (ratio {ours / ref:.3f})"
                return text

            out.append(Case(f"gptq int4 g128 {n}x{n}, {samples} samples", lambda w=w, x=x: ours_gptq(w, x),
                            base_gptq if torch is not None else None, "torch reference GPTQ", threads=threads, goal=2.0,
                            note=note_gptq, data={"w": w, "x": x}))

            def base_sparse(w=w, x=x, threads=threads):
                torch.set_num_threads(threads)
                return torch_sparsegpt(w, x)

            def note_sparse(w=w, x=x) -> str:
                ours = output_error(w, ours_sparsegpt(w, x), x)
                text = f"output error ours {ours:.4g}"
                if torch is not None:
                    ref = output_error(w, torch_sparsegpt(w, x), x)
                    text += f", torch reference {ref:.4g} (ratio {ours / ref:.3f})"
                return text

            out.append(Case(f"sparsegpt 50% {n}x{n}, {samples} samples", lambda w=w, x=x: ours_sparsegpt(w, x),
                            base_sparse if torch is not None else None, "torch reference SparseGPT",
                            threads=threads, note=note_sparse, data={"w": w, "x": x}, goal=2.0))
    return out


def mse_cases(quick: bool) -> list[Case]:
    """The "mse" search against plain minmax (issue 12: at most ~20x its cost, so goal 0.05x)."""
    n = 512 if quick else 4096
    w = np.random.default_rng(3).standard_normal((n, n), dtype=np.float32)
    return [Case(f"quantize int4 g128 method=mse {n}x{n}",
                 lambda: sp.quantize(w, 4, axis=0, group_size=128, method="mse"),
                 lambda: sp.quantize(w, 4, axis=0, group_size=128, method="minmax"),
                 "swiftprune method=minmax", threads=threads, data={"w": w}, goal=0.05)
            for threads in (1, 2)]


def cases(quick: bool) -> list[Case]:
    return calibration_cases(quick) + mse_cases(quick)
