"""``swiftprune demo``: train a small MLP on the digits data set, compress it
three ways and compare accuracy and size with the original.

The network (64-512-10, ReLU, Keras layout: kernels ``(in, out)``) is
trained in NumPy with Adam from a fixed seed on scikit-learn's bundled 8x8
digits (1,797 images, no download), so every run prints the same numbers.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from ._numpy_training import adam_update, cross_entropy_gradient, digits_split

# (label, recipe). Each runs when every operation it names exists in this build.
RECIPES: list[tuple[str, list[dict[str, Any]]]] = [
    ("80% magnitude pruning", [{"prune": {"method": "magnitude", "sparsity": 0.8}}]),
    ("int8 per-channel", [{"quantize": {"bits": 8, "axis": -1}}]),
    ("4-bit group-32 + 2:4 sparsity", [
        {"prune": {"method": "nm", "n": 2, "m": 4, "axis": 0}},
        {"quantize": {"bits": 4, "axis": -1, "group_size": 32}},
    ]),
]

LAYERS = (64, 512, 10)


def load_digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits as rows of 64 values in [0, 1], split 80/20 by a seeded permutation."""
    return digits_split(images=False, seed=seed)


def forward(weights: Sequence[np.ndarray], x: np.ndarray) -> list[np.ndarray]:
    """Activations of every layer (the last one is the logits)."""
    outs = [x]
    for i in range(0, len(weights), 2):
        z = outs[-1] @ weights[i] + weights[i + 1]
        outs.append(np.maximum(z, 0) if i + 2 < len(weights) else z)
    return outs


def accuracy(weights: Sequence[np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    return float((forward(weights, x)[-1].argmax(axis=1) == y).mean())


def train(x: np.ndarray, y: np.ndarray, *, epochs: int = 30, batch: int = 128, lr: float = 2e-3,
          seed: int = 0) -> list[np.ndarray]:
    """Adam on softmax cross-entropy; returns Keras-style [kernel, bias, ...]."""
    rng = np.random.default_rng(seed)
    weights: list[np.ndarray] = []
    for fan_in, fan_out in zip(LAYERS[:-1], LAYERS[1:]):
        weights.append((rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(np.float32))
        weights.append(np.zeros(fan_out, np.float32))
    m = [np.zeros_like(w) for w in weights]
    v = [np.zeros_like(w) for w in weights]
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch):
            index = order[start:start + batch]
            outs = forward(weights, x[index])
            delta = cross_entropy_gradient(outs[-1], y[index])
            grads: list[np.ndarray] = [np.empty(0)] * len(weights)
            for layer in reversed(range(len(weights) // 2)):
                grads[2 * layer] = outs[layer].T @ delta
                grads[2 * layer + 1] = delta.sum(axis=0)
                if layer:
                    delta = (delta @ weights[2 * layer].T) * (outs[layer] > 0)
            step += 1
            adam_update(weights, grads, m, v, step, lr)
    return weights


def missing_operations(recipe: list[dict[str, Any]]) -> list[str]:
    """The ``stage.method`` names of `recipe` that this build cannot run."""
    from .registry import _DEFAULT_METHOD, STAGES, available_methods

    available = available_methods()
    missing = []
    for spec in recipe:
        for stage in STAGES:
            if stage in spec:
                method = (spec[stage] or {}).get("method", _DEFAULT_METHOD.get(stage))
                if method not in available.get(stage, ()):
                    missing.append(f"{stage}.{method}" if method else stage)
    return missing


def _one_blas_thread() -> Any:
    """Limits BLAS to one thread: the demo's matrices are tiny, and several
    BLAS threads spinning on a busy machine make training 10x slower.
    (threadpoolctl comes with scikit-learn.)"""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _size(n: float) -> str:
    return f"{n / 1024:.1f} KiB"


def run(print_: Callable[[str], None] = print, progress: bool = True) -> int:
    """The demo; returns the exit code."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        print_("swiftprune demo: needs scikit-learn for its data set: pip install 'swiftprune[demo]' "
               "(or pip install scikit-learn)")
        return 1
    from . import __version__
    from .model import compress

    started = time.perf_counter()
    x_train, y_train, x_test, y_test = load_digits_split()
    with _one_blas_thread():
        weights = train(x_train, y_train)
    base_accuracy = accuracy(weights, x_test, y_test)
    # Keras-style names (a get_weights() list works too; its tensors are named "0", "1", ...).
    named = {f"dense{'_' + str(i // 2) if i >= 2 else ''}/{'kernel' if i % 2 == 0 else 'bias'}": w
             for i, w in enumerate(weights)}
    base_bytes = sum(w.nbytes for w in weights)
    print_(f"swiftprune {__version__} demo: a {'-'.join(map(str, LAYERS))} MLP trained on the digits data set "
           f"({len(y_train)} train / {len(y_test)} test images) in {time.perf_counter() - started:.1f} s")
    print_("")
    rows = [("original (float32)", f"{100 * base_accuracy:.1f}%", _size(base_bytes), "1.00x", "")]
    shown_report = None
    for label, recipe in RECIPES:
        missing = missing_operations(recipe)
        if missing:
            rows.append((label, "-", "-", "-", f"skipped: needs {', '.join(missing)} (not in this build)"))
            continue
        result = compress(named, recipe, progress=progress)
        totals = result.report.totals
        compressed = list(result.weights.values())
        rows.append((label, f"{100 * accuracy(compressed, x_test, y_test):.1f}%", _size(totals["bytes_after"]),
                     f"{totals['ratio']:.2f}x", ""))
        shown_report = (label, result.summary())  # the last recipe's: the stages composed
    if shown_report is not None:
        print_(f"Per-tensor report, {shown_report[0]}:")
        print_(shown_report[1])
        print_("")
    headers = ("model", "test accuracy", "size", "smaller by", "")
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(5)]
    print_("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths))).rstrip())
    for row in rows:
        print_("  ".join(c.ljust(w) if i in (0, 4) else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    print_("")
    print_("No fine-tuning after compression. Biases stay float32 (1-D tensors are skipped by default).")
    return 0
