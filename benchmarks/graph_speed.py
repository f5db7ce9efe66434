"""Channel pruning speed and what it buys.

1. Graph build + pruning of ResNet50 (224×224) from a .keras file (read with json +
   h5py, groups, L2 importance, surgery, write): median seconds (goal < 3 s).
2. onnxruntime CPU latency and file size of ResNet50 and MobileNetV2, pruned 50% vs
   unpruned. The ONNX files are converted from the Keras models by
   ``keras_to_onnx.py`` (NHWC → NCHW), pruned by ``swiftprune.graph`` as .onnx
   files, and checked against the zeroed original. Runs interleaved, medians.

    KERAS_BACKEND=jax PYTHONPATH=python python benchmarks/graph_speed.py [--threads 1 2] [--repeat 30]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402


def prune_time(path: str, out: str, repeat: int = 3):
    from swiftprune.graph import load_graph, plan
    from swiftprune.graph.keras_file import write_keras_file
    parts = {"read": [], "plan": [], "write": [], "total": [], "cpu": []}
    for _ in range(repeat):
        c0 = time.process_time()
        t0 = time.perf_counter()
        graph = load_graph(path)
        t1 = time.perf_counter()
        deps, keep, surgery = plan(graph, 0.5)
        t2 = time.perf_counter()
        write_keras_file(graph, surgery, out)
        t3 = time.perf_counter()
        for key, value in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t3 - t0, time.process_time() - c0)):
            parts[key].append(value)
    return {k: statistics.median(v) for k, v in parts.items()}


def ort_latency(models, x, threads: int, repeat: int):
    import onnxruntime as ort
    sessions = {}
    for label, model in models.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        sessions[label] = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        sessions[label].run(None, {sessions[label].get_inputs()[0].name: x})
    times = {label: [] for label in sessions}
    for _ in range(repeat):                      # interleaved
        for label, s in sessions.items():
            start = time.perf_counter()
            s.run(None, {s.get_inputs()[0].name: x})
            times[label].append(time.perf_counter() - start)
    return {label: statistics.median(v) for label, v in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--models", nargs="+", default=["ResNet50", "MobileNetV2"])
    args = parser.parse_args()
    import keras
    import onnx
    import onnxruntime as ort
    from keras_to_onnx import convert
    from swiftprune.graph import prune_model
    keras.utils.set_random_seed(0)
    print(f"onnxruntime {ort.__version__}, {os.cpu_count()} CPUs (shared machine: numbers are noisy)")
    with tempfile.TemporaryDirectory() as directory:
        for name in args.models:
            model = getattr(keras.applications, name)(weights=None, input_shape=(224, 224, 3))
            path = os.path.join(directory, f"{name}.keras")
            model.save(path)
            del model
            if name == "ResNet50":
                t = prune_time(path, os.path.join(directory, "small.keras"))
                print(f"{name} .keras graph build + 50% pruning + write: median {t['total']:.2f} s wall, "
                      f"{t['cpu']:.2f} s CPU "
                      f"(read {t['read']:.2f}, groups/importance/surgery {t['plan']:.2f}, write {t['write']:.2f})")
            full = convert(path)
            onnx_path, small_path = os.path.join(directory, f"{name}.onnx"), os.path.join(directory, f"{name}-50.onnx")
            onnx.save(full, onnx_path)
            result = prune_model(onnx_path, 0.5, small_path)
            small = onnx.load(small_path)
            x = np.random.default_rng(0).normal(size=(1, 3, 224, 224)).astype(np.float32)
            for threads in args.threads:
                lat = ort_latency({"full": full, "pruned": small}, x, threads, args.repeat)
                print(f"{name} onnxruntime {threads} thread(s): unpruned {1e3 * lat['full']:.1f} ms, "
                      f"pruned 50% {1e3 * lat['pruned']:.1f} ms, speed-up {lat['full'] / lat['pruned']:.2f}x")
            print(f"{name} file size: {os.path.getsize(onnx_path) / 1e6:.1f} MB -> {os.path.getsize(small_path) / 1e6:.1f} MB; "
                  f"params {result.params_before / 1e6:.2f}M -> {result.params_after / 1e6:.2f}M, "
                  f"MACs {result.macs_before / 1e9:.2f}G -> {result.macs_after / 1e9:.2f}G")
    return 0


if __name__ == "__main__":
    sys.exit(main())
