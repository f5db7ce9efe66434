"""Quantization: per-channel int8, int4 groups, dequantization, bfloat16 cast
and 1-D k-means, each against the NumPy (or scikit-learn) way in the same run."""
from __future__ import annotations

import numpy as np

import swiftprune as sp

from . import Case


def numpy_quantize_per_channel(w: np.ndarray, bufs: dict) -> np.ndarray:
    """The NumPy formula with preallocated buffers: absmax per row, divide,
    round half to even, clip, cast."""
    t, q = bufs["t"], bufs["q"]
    np.abs(w, out=t)
    absmax = np.max(t, axis=1, keepdims=True)
    scale = (absmax / 127).astype(np.float32)
    scale[scale == 0] = 1
    np.divide(w, scale, out=t)
    np.rint(t, out=t)
    np.clip(t, -127, 127, out=t)
    np.copyto(q, t, casting="unsafe")
    return q


def numpy_quantize_groups(w: np.ndarray, g: int, bufs: dict) -> np.ndarray:
    rows, cols = w.shape
    t, q = bufs["t"], bufs["q"]
    blocks = w.reshape(rows, cols // g, g)
    tb = t.reshape(rows, cols // g, g)
    np.abs(blocks, out=tb)
    scale = (np.max(tb, axis=2, keepdims=True) / 7).astype(np.float32)
    scale[scale == 0] = 1
    np.divide(blocks, scale, out=tb)
    np.rint(t, out=t)
    np.clip(t, -7, 7, out=t)
    np.copyto(q, t, casting="unsafe")
    return q


def numpy_bfloat16(w: np.ndarray) -> np.ndarray:
    b = w.view(np.uint32)
    rounded = ((b + np.uint32(0x7FFF) + ((b >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(w)
    return np.where(nan, ((b >> 16) | 0x40).astype(np.uint16), rounded)


def cases(quick: bool) -> list[Case]:
    rng = np.random.default_rng(0)
    shapes = [(1024, 2560)] if quick else [(4096, 2560), (4096, 24576)]
    out: list[Case] = []
    for shape in shapes:
        w = rng.standard_normal(shape, dtype=np.float32)
        bufs = {"t": np.empty(shape, np.float32), "q": np.empty(shape, np.int8)}
        label = f"{shape[0]}x{shape[1]}"
        q = sp.quantize(w, 8, axis=0)
        assert np.array_equal(q.values, numpy_quantize_per_channel(w, bufs))
        for threads in (1, 2):
            out.append(Case(f"quantize int8 per-channel {label}", lambda w=w: sp.quantize(w, 8, axis=0),
                            lambda w=w, b=bufs: numpy_quantize_per_channel(w, b), "NumPy formula, out=",
                            threads=threads, note="identical integers", data={"w": w, "b": bufs}))
        for threads in (1, 2):
            out.append(Case(f"dequantize int8 per-channel {label}", q.dequantize,
                            lambda q=q: (q.values.astype(np.float32) - q.zero_point) * q.scale,
                            "(q - zp) * scale", threads=threads, data={"q": q}))
        q_out = np.empty(shape, np.float32)
        q_ours = np.empty(shape, np.float32)
        for threads in (1, 2):
            out.append(Case(f"dequantize int8 per-channel {label}, out=", lambda q=q, o=q_ours: q.dequantize(out=o),
                            lambda q=q, o=q_out: np.multiply(q.values, q.scale, out=o, dtype=np.float32),
                            "np.multiply(q, s, out=)", threads=threads, note="both into preallocated output",
                            data={"q": q, "o": q_out, "o2": q_ours}))
        if shape[1] % 128 == 0:
            q4 = sp.quantize(w, 4, axis=0, group_size=128)
            assert np.array_equal(q4.values, numpy_quantize_groups(w, 128, bufs))
            out.append(Case(f"quantize int4 groups of 128 {label}",
                            lambda w=w: sp.quantize(w, 4, axis=0, group_size=128),
                            lambda w=w, b=bufs: numpy_quantize_groups(w, 128, b), "NumPy formula, out=",
                            threads=2, note="identical integers", data={"w": w, "b": bufs}))
        out.append(Case(f"cast bfloat16 {label}", lambda w=w: sp.cast(w, "bfloat16"),
                        lambda w=w: numpy_bfloat16(w), "NumPy bit formula", threads=2, data={"w": w}))

    n = 100_000 if quick else 1_000_000
    values = rng.standard_normal(n).astype(np.float32)
    try:
        from sklearn.cluster import KMeans
    except ImportError:
        KMeans = None
    results: dict = {}

    def ours(values=values, results=results) -> object:
        results["ours"] = c = sp.cluster(values, 16)
        return c

    def theirs(values=values, results=results) -> object:
        results["theirs"] = km = KMeans(n_clusters=16, n_init=1, random_state=0).fit(values.reshape(-1, 1))
        return km

    def note(values=values, results=results) -> str:
        mse = float(np.mean((results["ours"].dequantize() - values).astype(np.float64) ** 2))
        if "theirs" not in results:
            return f"MSE {mse:.6f} (scikit-learn not installed)"
        km = results["theirs"]
        theirs_mse = float(np.mean((km.cluster_centers_.ravel()[km.labels_] - values).astype(np.float64) ** 2))
        return f"MSE {mse:.6f} vs {theirs_mse:.6f}"

    for threads in (1, 2):
        out.append(Case(f"cluster 16 k-means {n:.0e} values", ours, theirs if KMeans else None,
                        "sklearn KMeans n_init=1", threads=threads, note=note, data={"v": values}))

    def optimal(values=values, results=results) -> object:
        results["ours"] = c = sp.cluster(values, 16, init="optimal")
        return c

    out.append(Case(f"cluster 16 optimal (DP) {n:.0e} values", optimal, theirs if KMeans else None,
                    "sklearn KMeans n_init=1", threads=2, note=note, data={"v": values}))
    return out
