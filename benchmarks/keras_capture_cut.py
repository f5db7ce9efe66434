"""Sequential Keras calibration: capture time with sub-models cut at the kept
layer inputs vs running the model from its inputs for every capture.

The model is Keras' MobileNetV2 architecture (``keras.applications``,
``weights=None``: seeded random weights, no download; 96x96 input, alpha
0.35): 36 captured layers (regular and pointwise ``Conv2D`` and the
classifier ``Dense``; the depthwise convs are not captured). Sequential int4
GPTQ (``compress``) runs twice, interleaved per repeat: with the cut (default)
and with ``kept_bytes_limit = 0`` (nothing kept: every capture runs the model
from its inputs, the behaviour before the cut). Reported: the CPU and wall
time spent in captures (summed over ``_capture`` calls) and the whole
``compress``, medians; the compressed weights must be equal.

    KERAS_BACKEND=jax PYTHONPATH=python python benchmarks/keras_capture_cut.py [--repeat 3] [--images 32]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402


def build_model(keras):
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=100)


def run(model, batches, kept_bytes_limit):
    import swiftprune as sp
    from swiftprune.calibration.keras_capture import KerasCalibration

    spent = {"cpu": 0.0, "wall": 0.0, "captures": 0}
    capture = KerasCalibration._capture

    def timed(self, layers):
        c0, t0 = time.process_time(), time.perf_counter()
        try:
            return capture(self, layers)
        finally:
            spent["cpu"] += time.process_time() - c0
            spent["wall"] += time.perf_counter() - t0
            spent["captures"] += 1

    KerasCalibration._capture = timed
    try:
        cal = sp.calibration.from_keras(model, batches)
        if kept_bytes_limit is not None:
            cal.kept_bytes_limit = kept_bytes_limit
        recipe = [{"quantize": {"method": "gptq", "bits": 4, "group_size": None}}]
        c0, t0 = time.process_time(), time.perf_counter()
        result = sp.compress(cal.weights(), recipe, progress=False, calibration=cal)
        spent["compress_cpu"] = time.process_time() - c0
        spent["compress_wall"] = time.perf_counter() - t0
    finally:
        KerasCalibration._capture = capture
    return spent, result, len(cal.layers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    import keras

    model = build_model(keras)
    rng = np.random.default_rng(0)
    images = rng.random((args.images, 96, 96, 3), dtype=np.float32)
    batches = [images[i:i + args.batch] for i in range(0, args.images, args.batch)]
    runs = {"cut": [], "whole model": []}
    results = {}
    layers = 0
    for _ in range(args.repeat):
        for label, limit in (("cut", None), ("whole model", 0)):
            spent, result, layers = run(model, batches, limit)
            runs[label].append(spent)
            results[label] = result
    for name, value in results["cut"].weights.items():
        if not np.array_equal(value, results["whole model"].weights[name]):
            raise SystemExit(f"{name}: the cut and the whole-model run differ")
    print(f"MobileNetV2 96x96 alpha 0.35, {layers} captured layers, {args.images} images in batches of "
          f"{args.batch}, sequential int4 GPTQ, medians of {args.repeat}; weights equal")
    print("| run | captures | capture CPU s | capture wall s | compress CPU s | compress wall s |")
    print("|---|---|---|---|---|---|")
    for label, spent in runs.items():
        med = {k: statistics.median(s[k] for s in spent) for k in spent[0]}
        print(f"| {label} | {med['captures']:.0f} | {med['cpu']:.2f} | {med['wall']:.2f} | "
              f"{med['compress_cpu']:.2f} | {med['compress_wall']:.2f} |")


if __name__ == "__main__":
    main()
