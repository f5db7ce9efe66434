"""Experiments toward int4 g128 GPTQ >= 0.99 output cosine on all-mpnet-base-v2 (README, "A 768-wide encoder").

Every variant quantizes the 72 linear layers with GPTQ int4 g128 asymmetric, act-order, MSE scales, damp 0.01
(the README's best g128 row), on independent statistics (every layer's inputs from the float model), and prints
the mean / min cosine of the mean-pooled embeddings against the float model on the 64 held-out sentences of
``calibration_mpnet.py``. What changes is an orthogonal rotation applied before GPTQ, exact in float:

  base        no rotation
  vo          per-head Hadamard R (64 x 64) on the value/output pair: V's output rows ``Rᵀ W_v`` (and bias
              ``Rᵀ b_v``), O's input columns ``W_o R``: attention mixes tokens, not channels, so
              ``P (X W_vᵀ R)(Rᵀ W_oᵀ) = P X W_vᵀ W_oᵀ``. V's Hessian is unchanged, O's becomes ``Rᵀ H_o R``.
  qk          the same per-head rotation on the query and key rows (``q R (k R)ᵀ = q kᵀ``)
  vo_rand     per-head random orthogonal matrices (seed 0) instead of Hadamard on the value/output pair
  ffnout      online rotation before the FFN output layer (QuaRot's down_proj trick: ``W x = (W R)(Rᵀ x)`` with a
              runtime op): R = Hadamard over 3072 = 3 blocks of 1024 (``ffnout``) or the full 12 ⊗ 256
              Kronecker Hadamard (``ffnout_full``). It adds an op at run time; the library feature is the recipe
              field ``rotate_input: hadamard`` (``calibration_mpnet.py --online-rotation`` runs it through compress()).
  ffnin, qkvin  online 768-wide Hadamard (12 ⊗ 64) before the FFN input layer / the q, k, v layers (measured
              only, as ffnout)
Variants combine with ``+`` (``vo+qk+ffnout``). ``hw`` (suffix ``+hw``) replaces GPTQ's MSE clip search by a
Hessian-weighted one (NumPy prototype: ``gptq_numpy``), ``hw`` alone on the unrotated model.

The quantized weights are mapped back to the original basis (``R Q(Rᵀ W)``, ``Q(W R) Rᵀ``) and run through the
original NumPy encoder: the same function as the rotated model with its runtime ops, up to float rounding.
Hessians are captured once per token count and cached (``--stats DIR``); rotated Hessians are computed from them
(``Rᵀ H R``), checked once against a real re-capture of the rotated model (``--check``).

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=python python benchmarks/mpnet_rotation_variants.py \
        --cache /work/cache/mpnet --tokens 8192 base vo qk vo+qk
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import calibration_mpnet as cmp  # noqa: E402

import swiftprune as sp  # noqa: E402
from swiftprune.calibration import HessianAccumulator  # noqa: E402

HEAD_DIM = 64
ATTN = "attention.attn."


def normalized_hadamard(n: int) -> np.ndarray:
    """Sylvester's Hadamard for a power of two, H_12 ⊗ H_(n/12) for 12 · 2^k, normalized (the library's)."""
    return sp.head_rotation_matrix(n)


class BlockRotation:
    """A block-diagonal orthogonal matrix: `blocks` (k, b, b), one b x b block per consecutive b features."""

    def __init__(self, blocks: np.ndarray) -> None:
        self.blocks = np.asarray(blocks, np.float64)

    @classmethod
    def repeated(cls, block: np.ndarray, features: int) -> "BlockRotation":
        b = block.shape[0]
        return cls(np.broadcast_to(block, (features // b, b, b)))

    def right(self, w: np.ndarray) -> np.ndarray:
        """w @ R (w: (..., features))."""
        return self._apply(w, self.blocks)

    def right_t(self, w: np.ndarray) -> np.ndarray:
        """w @ Rᵀ."""
        return self._apply(w, self.blocks.transpose(0, 2, 1))

    @staticmethod
    def _apply(w, blocks):
        k, b, _ = blocks.shape
        x = w.reshape(-1, k, b).transpose(1, 0, 2)  # (k, rows, b): one BLAS product per block
        return (x @ blocks).transpose(1, 0, 2).reshape(w.shape)

    def sandwich(self, h: np.ndarray) -> np.ndarray:
        """Rᵀ H R."""
        return self.right(self.right(h.T).T)


def random_orthogonal(b: int, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((count, b, b)))
    return q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]


def capture(weights, calib) -> dict[str, HessianAccumulator]:
    """One accumulator per distinct linear input (q's stands for k and v), float model."""
    out: dict[str, HessianAccumulator] = {}

    def grab(name, x):
        if name.endswith((ATTN + "k.weight", ATTN + "v.weight")):
            return
        if name not in out:
            out[name] = HessianAccumulator(x.shape[1], name=name)
        out[name].update(x)

    for _, chosen in cmp.batches(calib):
        batch = cmp.Batch(weights, chosen)
        h = batch.h
        for layer in range(cmp.LAYERS):
            h = cmp.block(weights, layer, batch, h, grab)
    return out


def load_stats(weights, calib, path: Path) -> dict[str, tuple[np.ndarray, int, np.ndarray]]:
    """{input name: (xᵀx, count, Σx)}, cached in `path`."""
    if path.exists():
        data = np.load(path)
        if any(k.endswith(":sum") for k in data.files):
            return {k: (data[k], int(data[k + ":count"]), data[k + ":sum"]) for k in data.files if ":" not in k}
    t = time.process_time()
    acc = capture(weights, calib)
    print(f"captured {len(acc)} Hessians in {time.process_time() - t:.0f} s CPU", flush=True)
    stats = {k: (a.hessian_.copy(), a.count_, a.sum_.copy()) for k, a in acc.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **{k: v[0] for k, v in stats.items()}, **{k + ":count": np.array(v[1]) for k, v in stats.items()},
             **{k + ":sum": v[2] for k, v in stats.items()})
    tmp.rename(path)
    return stats


def hessian_of(stats, name):
    if name.endswith((ATTN + "k.weight", ATTN + "v.weight")):
        name = name.rsplit(".", 2)[0] + ".q.weight"
    return stats[name]


def accumulator(h: np.ndarray, count: int) -> HessianAccumulator:
    a = HessianAccumulator(h.shape[0])
    a._hessian[...] = h
    a.count_ = count
    return a


# --------------------------------------------------------------------------- #
# Hessian-weighted clip search (prototype)
# --------------------------------------------------------------------------- #


def hw_clip_scales(w: np.ndarray, h: np.ndarray | None, group: int, bits: int = 4, grid: int = 100,
                   maxshrink: float = 0.8):
    """Asymmetric per-group (scale, zero) whose clip ``1 - k/grid`` minimizes the group's rounding error weighted
    by the Hessian's diagonal block of that group, ``(w - q) H_gg (w - q)ᵀ``, per row (instead of the plain squared
    error of GPTQ's ``mse=True``)."""
    out, inn = w.shape
    maxq = 2 ** bits - 1
    wg = w.reshape(out, inn // group, group).astype(np.float64)
    if h is None:  # plain squared error (GPTQ's mse=True), for a like-for-like baseline of this prototype
        hb = np.broadcast_to(np.eye(group), (inn // group, group, group))
    else:
        hb = np.stack([h[g * group:(g + 1) * group, g * group:(g + 1) * group] for g in range(inn // group)])
    lo0 = np.minimum(wg.min(-1), 0)
    hi0 = np.maximum(wg.max(-1), 0)
    best = np.full(lo0.shape, np.inf)
    best_scale = np.zeros_like(lo0)
    best_zero = np.zeros_like(lo0)
    for k in range(int(maxshrink * grid)):
        p = 1 - k / grid
        lo, hi = lo0 * p, hi0 * p
        scale = (hi - lo) / maxq
        scale = np.where(scale == 0, 1.0, scale)
        zero = np.round(-lo / scale)
        q = (np.clip(np.round(wg / scale[..., None]) + zero[..., None], 0, maxq) - zero[..., None]) * scale[..., None]
        d = q - wg
        err = (np.matmul(d.transpose(1, 0, 2), hb).transpose(1, 0, 2) * d).sum(-1)
        better = err < best
        best = np.where(better, err, best)
        best_scale = np.where(better, scale, best_scale)
        best_zero = np.where(better, zero, best_zero)
    return best_scale, best_zero


def gptq_numpy(w: np.ndarray, h: np.ndarray, group: int, scale: np.ndarray, zero: np.ndarray, damp=0.01,
               bits: int = 4, act_order: bool = True) -> np.ndarray:
    """GPTQ (float64, column by column) with given static per-group scales / zeros; act-order permutes columns
    but keeps each column's own group scale. Returns the dequantized weight."""
    w = w.astype(np.float64).copy()
    out, inn = w.shape
    maxq = 2 ** bits - 1
    h = h.astype(np.float64).copy()
    dead = np.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    perm = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(inn)
    h = h[perm][:, perm]
    h[np.diag_indices(inn)] += damp * np.mean(np.diag(h))
    hinv = np.linalg.cholesky(np.linalg.inv(h)).T  # upper
    wp = w[:, perm]
    sp_ = scale[:, perm // group]
    zp = zero[:, perm // group]
    q_out = np.zeros_like(wp)
    for b0 in range(0, inn, 128):
        b1 = min(b0 + 128, inn)
        err = np.zeros((out, b1 - b0))
        for j in range(b0, b1):
            col = wp[:, j]
            q = (np.clip(np.round(col / sp_[:, j]) + zp[:, j], 0, maxq) - zp[:, j]) * sp_[:, j]
            q_out[:, j] = q
            e = (col - q) / hinv[j, j]
            wp[:, j:b1] -= np.outer(e, hinv[j, j:b1])
            err[:, j - b0] = e
        wp[:, b1:] -= err @ hinv[b0:b1, b1:]
    result = np.empty_like(q_out)
    result[:, perm] = q_out
    return result


# --------------------------------------------------------------------------- #
# Variants
# --------------------------------------------------------------------------- #


def plan(variant: str, weights, stats, group: int, seed: int = 0):
    """{weight name: (rotated weight, rotated Hessian, count, back)}: back maps a dequantized rotated weight to the
    original basis."""
    parts = set(variant.split("+"))
    known = {"base", "vo", "qk", "vo_rand", "ffnout", "ffnout_full", "ffnin", "qkvin", "hw", "bc", "center", "npmse", "attn",
             "ffn"}
    if parts - known:
        raise SystemExit(f"unknown variant parts {parts - known}")
    heads = 768 // HEAD_DIM
    had = normalized_hadamard(HEAD_DIM)
    rand = random_orthogonal(HEAD_DIM, heads * cmp.LAYERS, seed) if "vo_rand" in parts else None
    work = {}
    for layer in range(cmp.LAYERS):
        p = f"encoder.layer.{layer}."
        names = {s: p + s + ".weight" for s in cmp.LINEAR}
        for suffix, name in names.items():
            if ("attn" in parts and not suffix.startswith("attention")) or (
                    "ffn" in parts and suffix.startswith("attention")):
                continue  # only that half of the layers quantized
            h, n, total = hessian_of(stats, name)
            mean = total / n
            if "center" in parts:  # the quantizer aims at the centred inputs; the bias restores the mean
                h = h - n * np.outer(mean, mean)
            w = weights[name].astype(np.float64)
            rows = cols = None  # BlockRotation on output rows (W ← Rᵀ W) / input columns (W ← W R)
            if suffix in (ATTN + "v", ATTN + "o"):
                if "vo" in parts:
                    r = BlockRotation.repeated(had, 768)
                elif "vo_rand" in parts:
                    r = BlockRotation(rand[layer * heads:(layer + 1) * heads])
                else:
                    r = None
                if suffix == ATTN + "v":
                    rows = r
                else:
                    cols = r
            if suffix in (ATTN + "q", ATTN + "k") and "qk" in parts:
                rows = BlockRotation.repeated(had, 768)
            if suffix == "output.dense" and ("ffnout" in parts or "ffnout_full" in parts):
                size = 3072 if "ffnout_full" in parts else 1024
                cols = BlockRotation.repeated(normalized_hadamard(size), 3072)
            if suffix == "intermediate.dense" and "ffnin" in parts:
                cols = BlockRotation.repeated(normalized_hadamard(768), 768)
            if suffix in (ATTN + "q", ATTN + "k", ATTN + "v") and "qkvin" in parts:
                assert cols is None
                cols = BlockRotation.repeated(normalized_hadamard(768), 768)
            if rows is not None:
                w = rows.right_t(w.T).T  # Rᵀ W
            if cols is not None:
                w = cols.right(w)
                h = cols.sandwich(h)

            def back(q, rows=rows, cols=cols):
                q = q.astype(np.float64)
                if cols is not None:
                    q = cols.right_t(q)
                if rows is not None:
                    q = rows.right(q.T).T  # R Q
                return q.astype(np.float32)

            work[name] = (w, h, n, back, mean)
    return work


def run(variant, weights, stats, group, evaluation, reference):
    t = time.process_time()
    out = dict(weights)
    rel = []
    parts = variant.split("+")
    for name, (w, h, n, back, mean) in plan(variant, weights, stats, group).items():
        if "hw" in parts or "npmse" in parts:
            hd = h / n
            scale, zero = hw_clip_scales(w, hd if "hw" in parts else None, group)
            q = gptq_numpy(w, hd, group, scale, zero)
        else:
            q = sp.gptq(w.astype(np.float32), accumulator(h, n), 4, group, 0.01, symmetric=False, act_order=True,
                        mse=True).dequantize()
        d = q.astype(np.float64) - w
        rel.append(np.sqrt(((d @ h) * d).sum() / ((w @ h) * w).sum()))
        out[name] = back(q)
        if "bc" in parts or "center" in parts:  # bias correction: b + (W - Ŵ) E[x], in the original basis
            b = name[:-len("weight")] + "bias"
            out[b] = (weights[b] + (weights[name].astype(np.float64) - out[name]) @ mean).astype(np.float32)
    cos = (cmp.embeddings(out, evaluation) * reference).sum(1)
    by_type = np.array(rel).reshape(cmp.LAYERS, -1).mean(0)
    print(f"{variant:24s} g{group} cos {cos.mean():.5f} min {cos.min():.5f}  rel err by type "
          + " ".join(f"{x:.4f}" for x in by_type) + f"  ({time.process_time() - t:.0f} s CPU)", flush=True)
    return cos


def check_recapture(weights, stats, calib):
    """The rotated float model gives the same embeddings; its captured O / FFN-out Hessians equal Rᵀ H R."""
    rotated = dict(weights)
    had = BlockRotation.repeated(normalized_hadamard(HEAD_DIM), 768)
    for layer in range(cmp.LAYERS):
        p = f"encoder.layer.{layer}.{ATTN}"
        for part in "qkv":
            rotated[p + part + ".weight"] = had.right_t(weights[p + part + ".weight"].T.astype(np.float64)).T
            rotated[p + part + ".bias"] = had.right_t(weights[p + part + ".bias"].astype(np.float64))
        rotated[p + "o.weight"] = had.right(weights[p + "o.weight"].astype(np.float64))
    rotated = {k: np.asarray(v, np.float32) for k, v in rotated.items()}
    small = calib[:64]
    a, b = cmp.embeddings(weights, small), cmp.embeddings(rotated, small)
    print(f"rotated float model (q, k, v, o per-head Hadamard): max |embedding diff| {np.abs(a - b).max():.2e}")
    fresh = capture(rotated, calib[:256])
    base = capture(weights, calib[:256])
    for layer in (0, 11):
        name = f"encoder.layer.{layer}.{ATTN}o.weight"
        predicted = had.sandwich(base[name].hessian_)
        err = np.abs(fresh[name].hessian_ - predicted).max() / np.abs(predicted).max()
        print(f"{name}: re-captured Hessian vs Rᵀ H R: max rel diff {err:.2e}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("variants", nargs="*", default=["base"])
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--stats", type=Path, default=Path("/work/cache/enc7"))
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--group", type=int, default=128)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    model = cmp.prepare_model(args.cache or cmp.default_cache())
    tokenizer = cmp.MPNetTokenizer(model / "vocab.txt")
    weights = {k: np.asarray(v, np.float32) for k, v in sp.load_weights(model / "model.safetensors").items()
               if k != "embeddings.position_ids"}
    evaluation = [tokenizer.encode(s) for s in cmp.evaluation_texts()[:64]]
    reference = cmp.embeddings(weights, evaluation)
    calib = cmp.calibration_corpus(tokenizer, model, args.tokens)
    print("calibration tokens", sum(len(c) for c in calib), flush=True)
    if args.check:
        check_recapture(weights, None, calib)
    stats = load_stats(weights, calib, args.stats / f"mpnet_stats_{args.tokens}.npz")
    for v in args.variants:
        run(v, weights, stats, args.group, evaluation, reference)
    return 0


if __name__ == "__main__":
    sys.exit(main())
