"""ONNX export on real models: file size and onnxruntime latency, float32 vs
swiftprune's int8 and int4 exports.

Models: the digits MLP and CNN of the tests (python/tests/data) and the
pretrained PP-OCRv4 recognition and detection CNNs that the
``rapidocr-onnxruntime`` wheel on PyPI ships (fetched with ``pip download
--no-deps`` into ``--cache``, or give ``--model PATH`` for any .onnx file).

Recipes are built per weight from the graph: Conv kernels ``(out, in, kh,
kw)`` per output channel (``axis=0``); MatMul weights ``(K, N)`` per output
column (``axis=-1``), in groups of 128 along K for int4 when K allows
(MatMulNBits), else per column. Each export is checked against the float
model with the dequantized weights put in (onnxruntime without graph
optimizations: the exported graph's own arithmetic) and against the float
model itself (relative L2 error of the output, default optimizations; OCR
models get a synthetic line of dark strokes on white, digits models the
digits test split).
Latency: median of interleaved runs, 1 and 2 intra-op threads; the machine
may be shared, so read ratios, not absolute times.

    python benchmarks/export_onnx.py [--model PATH ...] [--repeats 15]
"""
from __future__ import annotations

import argparse
import glob
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python", "tests"))

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import numpy_helper  # noqa: E402

import swiftprune as sp  # noqa: E402
from swiftprune.export.onnx import _lift_constants, float_weights, to_onnx  # noqa: E402


def rapidocr_models(cache: str) -> list[str]:
    os.makedirs(cache, exist_ok=True)
    wheels = glob.glob(os.path.join(cache, "rapidocr_onnxruntime-*.whl"))
    if not wheels:
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                               "rapidocr-onnxruntime==1.4.4", "-d", cache])
        wheels = glob.glob(os.path.join(cache, "rapidocr_onnxruntime-*.whl"))
    out = []
    with zipfile.ZipFile(wheels[0]) as archive:
        for name in archive.namelist():
            if name.endswith(("rec_infer.onnx", "det_infer.onnx")):
                target = os.path.join(cache, os.path.basename(name))
                if not os.path.exists(target):
                    with open(target, "wb") as f:
                        f.write(archive.read(name))
                out.append(target)
    return sorted(out)


def consumers(model) -> dict[str, set[tuple[str, int]]]:
    uses: dict[str, set[tuple[str, int]]] = {}
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            uses.setdefault(name, set()).add((node.op_type, i))
    return uses


def recipe_for(model_path: str, bits: int) -> list[dict]:
    model = onnx.load(model_path)
    _lift_constants(model)
    uses = consumers(model)
    stages = []
    for name, w in float_weights(model_path).items():
        ops = uses.get(name, set())
        if ops and all(op in ("Conv", "ConvTranspose") and i == 1 for op, i in ops) and w.ndim == 4:
            axis = 0 if all(op == "Conv" for op, _ in ops) else 1
            stages.append({"quantize": {"bits": bits, "axis": axis}, "include": name})
        elif ops and all(op in ("MatMul", "Gemm") and i == 1 for op, i in ops) and w.ndim == 2:
            group = 128 if bits == 4 and w.shape[0] % 128 == 0 else None
            stages.append({"quantize": {"bits": bits, "axis": -1, "group_size": group}, "include": name})
    return stages


def text_image(height: int, width: int, rng) -> np.ndarray:
    """A synthetic line of "text" (dark strokes on white), normalized as PP-OCR does: (x - 0.5) / 0.5."""
    image = np.ones((height, width), np.float32)
    x = 4
    while x < width - 12:
        w = int(rng.integers(3, 10))
        top, bottom = int(height * 0.2), int(height * 0.8)
        image[top:bottom, x:x + 2] = 0.0  # a vertical stroke
        image[top + int(rng.integers(0, 6)):top + int(rng.integers(6, 12)), x:x + w] = 0.0
        x += w + int(rng.integers(3, 8))
    image = (image - 0.5) / 0.5
    return np.broadcast_to(image, (1, 3, height, width)).copy()


def input_for(session, rng) -> dict[str, np.ndarray]:
    feeds = {}
    for i in session.get_inputs():
        if len(i.shape) == 4 and i.shape[1] == 3:  # an OCR image (N, 3, H, W)
            det = "det" in session._model_path
            feeds[i.name] = text_image(96 if det else 48, 320, rng)
            if det:
                feeds[i.name] = np.pad(feeds[i.name], ((0, 0), (0, 0), (112, 112), (0, 0)), constant_values=1.0)
        elif len(i.shape) == 4:  # the digits CNN
            feeds[i.name] = digits_inputs().reshape(-1, 1, 8, 8)
        else:
            feeds[i.name] = digits_inputs()
    return feeds


def digits_inputs() -> np.ndarray:
    import _digits_models as digits

    return digits.test_split()[0]


def session(path: str, threads: int, level=None):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if level is not None:
        options.graph_optimization_level = level
    s = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    s._model_path = path
    return s


def with_weights(model_path: str, weights: dict, out: str) -> str:
    model = onnx.load(model_path)
    _lift_constants(model)
    for init in model.graph.initializer:
        if init.name in weights:
            init.CopyFrom(numpy_helper.from_array(np.asarray(weights[init.name], np.float32), init.name))
    onnx.save(model, out)
    return out


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm((a - b).ravel()) / max(np.linalg.norm(b.ravel()), 1e-30))


def measure(model_path: str, label: str, directory: str, repeats: int) -> list[str]:
    rng = np.random.default_rng(0)
    rows = []
    base_size = os.path.getsize(model_path)
    variants = {"float32": model_path}
    checks = {}
    for bits in (8, 4):
        recipe = recipe_for(model_path, bits)
        weights = float_weights(model_path)
        result = sp.compress(weights, recipe, progress=False)
        out = os.path.join(directory, f"{label}.int{bits}.onnx")
        export = to_onnx(model_path, out, result)
        variants[f"int{bits}"] = out
        reference = with_weights(model_path, result.weights, os.path.join(directory, f"{label}.ref{bits}.onnx"))
        exact = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the exported graph's own arithmetic, no fusions
        probe = session(reference, 2, exact)
        feeds = input_for(probe, rng)
        got = session(out, 2, exact).run(None, feeds)[0]
        want = probe.run(None, feeds)[0]
        full = session(model_path, 2).run(None, feeds)[0]
        kinds = sorted(set(v.split(" (")[0] for v in export.weights.values()))
        quantized = session(out, 2).run(None, feeds)[0]
        if label.startswith("digits"):
            import _digits_models as digits

            y = digits.test_split()[1][:len(full)]
            quality = f"accuracy {np.mean(quantized.argmax(1) == y):.1%} (float {np.mean(full.argmax(1) == y):.1%})"
        elif label.endswith("rec"):
            quality = f"per-step argmax = float's: {np.mean(quantized.argmax(-1) == full.argmax(-1)):.1%}"
        else:
            quality = f"output vs float {rel(quantized, full):.1%} (synthetic input)"
        checks[f"int{bits}"] = (rel(got, want), quality, len(export.weights), ", ".join(kinds), export.opset)
    for threads in (1, 2):
        sessions = {name: session(path, threads) for name, path in variants.items()}
        feeds = input_for(sessions["float32"], rng)
        times = {name: [] for name in variants}
        for s in sessions.values():
            s.run(None, feeds)  # warm up
        for _ in range(repeats):  # interleaved, so load changes hit every variant alike
            for name, s in sessions.items():
                start = time.perf_counter()
                s.run(None, feeds)
                times[name].append(time.perf_counter() - start)
        base = statistics.median(times["float32"])
        for name, path in variants.items():
            median = statistics.median(times[name])
            size = os.path.getsize(path)
            check = checks.get(name)
            note = "" if check is None else (f"{check[2]} weights: {check[3]}; opset {check[4]}; output vs "
                                             f"dequantized float model {check[0]:.1e}; {check[1]}")
            rows.append(f"| {label} | {name} | {threads} | {size / 1e6:.2f} MB | {base_size / size:.2f}x | "
                        f"{median * 1e3:.2f} ms | {base / median:.2f}x | {note} |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="an .onnx model (default: digits + rapidocr)")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "swiftprune-bench-models"))
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="swiftprune-export-")
    models = [(os.path.splitext(os.path.basename(p))[0], p) for p in (args.model or [])]
    if not args.model:
        import _digits_models as digits
        from test_export_onnx import cnn_model, mlp_model

        for name, build in (("digits MLP", mlp_model), ("digits CNN", cnn_model)):
            path = os.path.join(directory, name.replace(" ", "_") + ".onnx")
            onnx.save(build(digits.weights()[name.split()[1].lower()]), path)
            models.append((name, path))
        models += [(os.path.basename(p).replace("_infer.onnx", ""), p) for p in rapidocr_models(args.cache)]
    print("| model | weights | threads | file | smaller | latency (median) | speed vs float | export check |")
    print("|---|---|---|---|---|---|---|---|")
    for label, path in models:
        for row in measure(path, label, directory, args.repeats):
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
