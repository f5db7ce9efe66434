"""Sequential Keras calibration of a transformer encoder built here: the Dense layers reading one tensor
(q/k/v after the norm, gate/up of a gated MLP) captured together, as ``from_keras`` does, or one layer at a
time (``--one-at-a-time``: every layer its own input key, the upstream sets unchanged — the behaviour before
the grouping).

The model: ``--blocks`` pre-norm blocks (multi-head attention from Dense q, k, v and o, ``--heads`` heads, and a
gated MLP: gate, up, down), width ``--width``, seeded random weights, ``--tokens`` tokens per sequence,
``--batches`` batches of ``--batch`` sequences. Timed as ``torch_sequential_capture.py`` times its model: for
every layer in forward order, its statistics, then a commit of a 4-bit round-to-nearest copy of its weight (so
every later layer is captured again through it). Both variants run once untimed (JAX's first-call costs), then
``--repeat`` times, interleaved; prints one
JSON line per run (captures, sub-model calls = captures x batches, CPU seconds of the process, wall seconds)
and the medians.

    KERAS_BACKEND=jax PYTHONPATH=python python benchmarks/keras_sequential_groups.py [--threads 1] [--repeat 3]

``--threads 1`` sets ``XLA_FLAGS`` for a single-threaded XLA CPU backend (before JAX is imported); without it
XLA uses every core.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time


def build_model(keras, blocks: int, width: int, heads: int, tokens: int):
    import numpy as np

    keras.utils.set_random_seed(0)
    head = width // heads
    x = keras.Input((tokens, width), name="x")
    h = x

    def split(t):  # (batch, tokens, width) -> (batch, heads, tokens, head)
        return keras.ops.transpose(keras.ops.reshape(t, (-1, tokens, heads, head)), (0, 2, 1, 3))

    for b in range(blocks):
        n = keras.layers.LayerNormalization(name=f"ln{b}")(h)
        q, k, v = (split(keras.layers.Dense(width, name=f"{p}{b}")(n)) for p in "qkv")
        scores = keras.ops.matmul(q, keras.ops.transpose(k, (0, 1, 3, 2))) / np.sqrt(head)
        attended = keras.ops.reshape(keras.ops.transpose(keras.ops.matmul(keras.ops.softmax(scores, axis=-1), v),
                                                         (0, 2, 1, 3)), (-1, tokens, width))
        h = keras.layers.Add()([h, keras.layers.Dense(width, name=f"o{b}")(attended)])
        n = keras.layers.LayerNormalization(name=f"mlpln{b}")(h)
        gate = keras.layers.Dense(4 * width, name=f"gate{b}")(n)
        up = keras.layers.Dense(4 * width, name=f"up{b}")(n)
        h = keras.layers.Add()([h, keras.layers.Dense(width, name=f"down{b}")(keras.ops.silu(gate) * up)])
    return keras.Model(x, h)


def rtn4(w):
    """Per-output-column symmetric 4-bit round-to-nearest of a Keras (in, out) kernel."""
    import numpy as np

    scale = np.abs(w).max(axis=0, keepdims=True) / 7
    scale[scale == 0] = 1
    return (np.clip(np.round(w / scale), -8, 7) * scale).astype(np.float32)


def run(model, batches, grouped: bool) -> dict:
    import swiftprune as sp

    cal = sp.calibration.from_keras(model, batches)
    if not grouped:
        for name, layer in cal.layers.items():
            layer.input = name
    captures = [0]
    capture = cal._capture

    def counted(layers):
        captures[0] += 1
        return capture(layers)

    cal._capture = counted
    weights = cal.weights()
    cpu, wall = time.process_time(), time.perf_counter()
    for name in cal.order(list(cal.layers)):
        cal.statistics(name)
        cal.commit(name, rtn4(weights[name]))
    return {"grouped": grouped, "layers": len(cal.layers), "captures": captures[0],
            "sub_model_calls": captures[0] * len(batches), "cpu_s": round(time.process_time() - cpu, 2),
            "wall_s": round(time.perf_counter() - wall, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="1: single-threaded XLA; 0: XLA's default")
    parser.add_argument("--one-at-a-time", action="store_true", help="only the ungrouped variant")
    args = parser.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "jax")
    if args.threads == 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1").strip()
    import keras
    import numpy as np

    import swiftprune as sp

    if args.threads:
        sp.set_num_threads(args.threads)
    model = build_model(keras, args.blocks, args.width, args.heads, args.tokens)
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((args.batch, args.tokens, args.width)).astype(np.float32)
               for _ in range(args.batches)]
    variants = [False] if args.one_at_a_time else [True, False]
    runs: dict[bool, list[dict]] = {v: [] for v in variants}
    for grouped in variants:  # warm-up, not counted: JAX's and Keras' first-call costs
        run(model, batches, grouped)
    for _ in range(args.repeat):
        for grouped in variants:
            result = run(model, batches, grouped)
            runs[grouped].append(result)
            print(json.dumps({"threads": args.threads or "default", **result}), flush=True)
    medians = {("grouped" if g else "one at a time"): {"cpu_s": statistics.median(r["cpu_s"] for r in rs),
                                                         "wall_s": statistics.median(r["wall_s"] for r in rs),
                                                         "captures": rs[0]["captures"]}
               for g, rs in runs.items()}
    print(json.dumps({"medians": medians}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
