"""Recipe ``include`` / ``exclude`` patterns on the tensor names of a real
encoder (the MiniLM / BERT ``state_dict`` naming): ``*`` matches across dots
(``fnmatch``), which the README's own examples rely on (``"*.weight"`` on
nested names, ``layers.*.weight``), so ``encoder.layer.*.output.dense.weight``
also selects the attention output projection; ``exclude`` separates them.
The expected selections are written out by hand."""
from __future__ import annotations

import numpy as np
import pytest

import swiftprune as sp

HIDDEN, FFN = 8, 16


def minilm_state_dict(layers=2):
    """The 2-D weights and a few 1-D tensors of a BERT-style encoder, named as transformers names them."""
    shapes = {"embeddings.word_embeddings.weight": (30, HIDDEN), "embeddings.LayerNorm.weight": (HIDDEN,)}
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for proj in ("query", "key", "value"):
            shapes[p + f"attention.self.{proj}.weight"] = (HIDDEN, HIDDEN)
            shapes[p + f"attention.self.{proj}.bias"] = (HIDDEN,)
        shapes[p + "attention.output.dense.weight"] = (HIDDEN, HIDDEN)
        shapes[p + "attention.output.LayerNorm.weight"] = (HIDDEN,)
        shapes[p + "intermediate.dense.weight"] = (FFN, HIDDEN)
        shapes[p + "output.dense.weight"] = (HIDDEN, FFN)
        shapes[p + "output.LayerNorm.weight"] = (HIDDEN,)
    shapes["pooler.dense.weight"] = (HIDDEN, HIDDEN)
    rng = np.random.default_rng(4)
    return {name: rng.standard_normal(shape).astype(np.float32) + 3.0 for name, shape in shapes.items()}


def selected(weights, **selection):
    result = sp.compress(weights, [{"prune": {"sparsity": 0.5}, **selection}], progress=False)
    return sorted(r["name"] for r in result.report if r["stages"] == "prune.magnitude")


def test_star_crosses_dots_as_the_documented_examples_need():
    weights = minilm_state_dict()
    two_d = sorted(n for n, w in weights.items() if w.ndim == 2)
    assert selected(weights, include="*.weight") == two_d  # README: "include": "*.weight" on nested names
    assert selected(weights, include="encoder.layer.*.weight") == [n for n in two_d if n.startswith("encoder.")]


def test_a_one_segment_looking_pattern_also_selects_deeper_names():
    weights = minilm_state_dict()
    ffn_out = ["encoder.layer.0.output.dense.weight", "encoder.layer.1.output.dense.weight"]
    attention_out = ["encoder.layer.0.attention.output.dense.weight", "encoder.layer.1.attention.output.dense.weight"]
    assert selected(weights, include="encoder.layer.*.output.dense.weight") == sorted(ffn_out + attention_out)
    # What one segment means is said with exclude (or the exact names, or a list of patterns per layer).
    assert selected(weights, include="encoder.layer.*.output.dense.weight", exclude="*.attention.*") == ffn_out
    assert selected(weights, include=[f"encoder.layer.{i}.output.dense.weight" for i in (0, 1)]) == ffn_out


def test_a_pattern_matching_nothing_is_still_an_error():
    weights = minilm_state_dict()
    with pytest.raises(ValueError, match=r"pattern 'encoder\.layers\.\*' matches no tensor"):
        selected(weights, include="encoder.layers.*")
