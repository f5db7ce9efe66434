"""The Keras source in sequential mode captures the Dense layers that read one symbolic tensor (q/k/v after a
norm, gate/up) together: one capture (one sub-model call per batch) per group. Checked against float64
recomputations of every layer's inputs with NumPy from the weights, the committed ones set by hand; by
counting the captures and the layers each one takes; and against the same source with every layer its own
input key (captured one at a time, as before the grouping): bit-identical compressed weights."""
from __future__ import annotations

import os

import numpy as np
import pytest

import swiftprune as sp

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras", reason="keras is not installed (pip install 'swiftprune[keras]')")

RNG = np.random.default_rng(1112)
WIDTH, INNER, TOKENS, BLOCKS = 8, 12, 5, 2
GROUPS = [["q", "k", "v"], ["o"], ["gate", "up"], ["down"]]  # per block, in forward order
LAYERS = [f"{name}{b}/kernel" for b in range(BLOCKS) for group in GROUPS for name in group]
EPSILON = 1e-3  # (LayerNormalization's default)


def make_model():
    """Pre-norm attention (q, k, v read the norm's output; o) and a gated MLP (gate, up read the second
    norm's output; down), twice, functional."""
    keras.utils.set_random_seed(11)
    rng = np.random.default_rng(11)  # (the same model on every call)
    x = keras.Input((TOKENS, WIDTH), name="x")
    h = x
    for b in range(BLOCKS):
        n = keras.layers.LayerNormalization(epsilon=EPSILON, name=f"ln{b}")(h)
        q, k, v = (keras.layers.Dense(WIDTH, name=f"{p}{b}")(n) for p in "qkv")
        scores = keras.ops.matmul(q, keras.ops.transpose(k, (0, 2, 1))) / np.sqrt(WIDTH)
        attended = keras.ops.matmul(keras.ops.softmax(scores, axis=-1), v)
        h = keras.layers.Add()([h, keras.layers.Dense(WIDTH, name=f"o{b}")(attended)])
        n = keras.layers.LayerNormalization(epsilon=EPSILON, name=f"mlpln{b}")(h)
        gate = keras.layers.Dense(INNER, name=f"gate{b}")(n)
        up = keras.layers.Dense(INNER, name=f"up{b}")(n)
        h = keras.layers.Add()([h, keras.layers.Dense(WIDTH, name=f"down{b}")(keras.ops.silu(gate) * up)])
    model = keras.Model(x, h)
    for layer in model.layers:  # norms that are not the identity at first, as a trained model's
        if isinstance(layer, keras.layers.LayerNormalization):
            layer.gamma.assign(rng.uniform(0.5, 2.0, WIDTH).astype(np.float32))
            layer.beta.assign((0.3 * rng.standard_normal(WIDTH)).astype(np.float32))
    return model


def make_batches(count=3):
    return [RNG.standard_normal((4, TOKENS, WIDTH)).astype(np.float32) for _ in range(count)]


def layer_inputs(weights, batches):
    """Every Dense layer's input rows in float64, computed with NumPy from `weights` (path -> array)."""
    w = {k: np.asarray(v, np.float64) for k, v in weights.items()}

    def dense(name, x):
        return x @ w[f"{name}/kernel"] + w[f"{name}/bias"]

    def norm(name, x):
        centred = x - x.mean(-1, keepdims=True)
        return centred / np.sqrt((centred ** 2).mean(-1, keepdims=True) + EPSILON) * w[f"{name}/gamma"] + w[f"{name}/beta"]

    rows: dict[str, list[np.ndarray]] = {name: [] for name in LAYERS}
    for batch in batches:
        h = batch.astype(np.float64)
        for b in range(BLOCKS):
            n = norm(f"ln{b}", h)
            q, k, v = (dense(f"{p}{b}", n) for p in "qkv")
            scores = q @ k.transpose(0, 2, 1) / np.sqrt(WIDTH)
            p = np.exp(scores - scores.max(-1, keepdims=True))
            attended = (p / p.sum(-1, keepdims=True)) @ v
            n2 = norm(f"mlpln{b}", h + dense(f"o{b}", attended))
            gate, up = dense(f"gate{b}", n2), dense(f"up{b}", n2)
            inner = gate / (1 + np.exp(-gate)) * up
            for name, x in (("q", n), ("k", n), ("v", n), ("o", attended), ("gate", n2), ("up", n2), ("down", inner)):
                rows[f"{name}{b}/kernel"].append(x.reshape(-1, x.shape[-1]))
            h = h + dense(f"o{b}", attended) + dense(f"down{b}", inner)
    return {name: np.concatenate(r) for name, r in rows.items()}


def assert_gram(actual, x):
    expected = x.T @ x
    np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-5 * np.abs(expected).max())


def perturbed(array):
    """A committed tensor far from the original (as a coarse quantization would be)."""
    return (array + 0.5 * array.std() * RNG.standard_normal(array.shape)).astype(np.float32)


def count_captures(cal):
    """The layers each capture of `cal` takes from now on, one list per capture (a capture runs one
    sub-model call per batch)."""
    captures: list[list[str]] = []
    capture = cal._capture

    def counted(layers):
        captures.append(sorted(layer.name for layer in layers))
        return capture(layers)

    cal._capture = counted
    return captures


def test_layers_reading_one_tensor_share_an_input_and_not_each_others_commits():
    cal = sp.calibration.from_keras(make_model(), make_batches(1))
    assert sorted(cal.layers) == sorted(LAYERS)
    for b in range(BLOCKS):
        layer = {name: cal.layers[f"{name}{b}/kernel"] for group in GROUPS for name in group}
        keys = [{layer[name].input for name in group} for group in GROUPS]
        assert all(len(k) == 1 for k in keys) and len(set.union(*keys)) == len(GROUPS)
        assert not {f"{n}{b}/kernel" for n in "qkv"} & layer["k"].upstream
        assert {f"ln{b}/gamma", f"ln{b}/beta"} <= layer["v"].upstream
        assert {f"{n}{b}/kernel" for n in "qkv"} <= layer["o"].upstream


def test_grouped_capture_equals_the_inputs_after_all_earlier_commits_with_one_capture_per_group():
    model = make_model()
    batches = make_batches(3)
    original = {v.path: np.asarray(v.numpy()) for v in model.weights}
    cal = sp.calibration.from_keras(model, batches)
    captures = count_captures(cal)
    weights = dict(original)
    for name in cal.order(LAYERS):
        reference = layer_inputs(weights, batches)
        assert_gram(cal.statistics(name).hessian_, reference[name])
        weights[name] = perturbed(original[name])
        cal.commit(name, weights[name])
    # the first request: every layer through the original model; then one capture per group (the first
    # block's q/k/v were captured through the original model, which no commit since has changed)
    expected = [sorted(LAYERS)] + [sorted(f"{n}{b}/kernel" for n in group)
                                   for b in range(BLOCKS) for group in GROUPS][1:]
    assert captures == expected
    # the commits mattered: the last layer's inputs without them differ by far more than the tolerance
    stale, fresh = layer_inputs(original, batches)[LAYERS[-1]], layer_inputs(weights, batches)[LAYERS[-1]]
    assert np.abs(stale.T @ stale - fresh.T @ fresh).max() > 1e-2 * np.abs(fresh.T @ fresh).max()


def test_a_committed_norm_before_q_k_v_reaches_all_three_in_one_capture():
    model = make_model()
    batches = make_batches(2)
    original = {v.path: np.asarray(v.numpy()) for v in model.weights}
    cal = sp.calibration.from_keras(model, batches)
    qkv = [f"{n}1/kernel" for n in "qkv"]
    for name in qkv:
        cal.statistics(name)
    captures = count_captures(cal)
    s = RNG.uniform(0.25, 4.0, WIDTH)
    weights = dict(original)
    for name in ("ln1/gamma", "ln1/beta"):  # what the AWQ / SmoothQuant fold commits for the op before q/k/v
        weights[name] = (original[name] / s).astype(np.float32)
        cal.commit(name, weights[name])
    weights[qkv[0]] = perturbed(original[qkv[0]])
    cal.commit(qkv[0], weights[qkv[0]])  # q's own commit reaches neither k nor v
    reference = layer_inputs(weights, batches)
    for name in qkv:
        assert_gram(cal.statistics(name).hessian_, reference[name])
    assert captures == [sorted(qkv)]


def test_compress_gives_the_same_weights_with_fewer_captures_than_one_layer_at_a_time():
    batches = make_batches(2)
    recipe = [{"quantize": {"method": "gptq", "bits": 3, "group_size": None}, "include": LAYERS}]
    results, counts = [], []
    for grouped in (True, False):
        cal = sp.calibration.from_keras(make_model(), batches)
        if not grouped:  # every layer its own input key: captured alone, as before the grouping
            for name, layer in cal.layers.items():
                layer.input = name
        captures = count_captures(cal)
        results.append(sp.compress(cal.weights(), recipe, progress=False, calibration=cal).weights)
        counts.append(len(captures))
    for name in LAYERS:
        np.testing.assert_array_equal(results[0][name], results[1][name], err_msg=name)
    # grouped: the first capture, then one per group after block 0's q/k/v; alone: the first capture, then
    # every layer but block 0's q/k/v (captured first, through weights no commit has changed)
    assert counts == [BLOCKS * len(GROUPS), 1 + len(LAYERS) - 3]
