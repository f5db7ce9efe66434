"""Channel pruning coverage over keras.applications (weights=None, small inputs).

For every architecture and amount: save a ``.keras`` file, prune it with
``swiftprune.graph.prune_model`` (json + h5py, no Keras on the pruning side),
load the result with ``keras.saving.load_model`` and check **equivalence**:
the pruned model's output equals the original model's output with the
removed channels zeroed (the kernels' input slices that read them set to 0),
BatchNorm in inference mode. Prints the README coverage table.

    KERAS_BACKEND=jax PYTHONPATH=python python benchmarks/graph_coverage.py [NAME ...]
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402

ARCHITECTURES = {
    # name: (constructor name, input shape, extra kwargs)
    "VGG16": ("VGG16", (32, 32, 3), {}),
    "ResNet50": ("ResNet50", (32, 32, 3), {}),
    "ResNet50V2": ("ResNet50V2", (32, 32, 3), {}),
    "MobileNet": ("MobileNet", (32, 32, 3), {}),
    "MobileNetV2": ("MobileNetV2", (32, 32, 3), {}),
    "MobileNetV3Small": ("MobileNetV3Small", (32, 32, 3), {}),
    "MobileNetV3Large": ("MobileNetV3Large", (32, 32, 3), {}),
    "EfficientNetB0": ("EfficientNetB0", (32, 32, 3), {}),
    "EfficientNetV2B0": ("EfficientNetV2B0", (32, 32, 3), {}),
    "DenseNet121": ("DenseNet121", (32, 32, 3), {}),
    "InceptionV3": ("InceptionV3", (75, 75, 3), {}),
    "Xception": ("Xception", (71, 71, 3), {}),
    "NASNetMobile": ("NASNetMobile", (32, 32, 3), {}),
    "ConvNeXtTiny": ("ConvNeXtTiny", (32, 32, 3), {}),
    "RegNetX002": ("RegNetX002", (32, 32, 3), {}),
}


def classic_cnn():
    """Conv-Pool-Conv-Pool-Flatten-Dense-Dropout-Dense (the Keras MNIST example)."""
    import keras
    from keras import layers as L
    return keras.Sequential([keras.Input((28, 28, 1), name="image"),
                             L.Conv2D(32, 3, activation="relu", name="conv1"), L.MaxPooling2D(name="pool1"),
                             L.Conv2D(64, 3, activation="relu", name="conv2"), L.MaxPooling2D(name="pool2"),
                             L.Flatten(name="flatten"), L.Dense(128, activation="relu", name="fc1"),
                             L.Dropout(0.5, name="dropout"), L.Dense(10, activation="softmax", name="fc2")],
                            name="classic_cnn")


def randomize_norms(model, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics and scales (fresh ones are identities)."""
    import keras
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            weights = layer.get_weights()
            n = weights[-1].size
            new = []
            if layer.scale:
                new.append(rng.uniform(0.5, 1.5, n))
            if layer.center:
                new.append(rng.normal(0, 0.5, n))
            new += [rng.normal(0, 0.5, n), rng.uniform(0.5, 2.0, n)]
            layer.set_weights([w.astype(weights[0].dtype).reshape(v.shape) for w, v in zip(new, weights)])


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def find_layer(model, path: str):
    """A (possibly nested, 'outer/inner') layer by the graph's node name."""
    layer = model
    for part in path.split("/"):
        layer = layer.get_layer(part)
    return layer


def zeroed_reference(model, result):
    """Set to 0, in ``model``, every kernel input slice that reads a removed channel.

    Returns a function that restores the original weights."""
    saved = []
    for name, (param, axis, removed) in result.removed_inputs.items():
        layer = find_layer(model, name)
        weights = layer.get_weights()
        saved.append((layer, [w.copy() for w in weights]))
        index = {"kernel": 0, "pointwise_kernel": 1}.get(param, 0)
        w = weights[index].copy()
        sl = [slice(None)] * w.ndim
        sl[axis] = removed
        w[tuple(sl)] = 0
        weights[index] = w
        layer.set_weights(weights)

    def restore():
        for layer, weights in saved:
            layer.set_weights(weights)
    return restore


def zeroed_outputs(model, result, x):
    """The original model's outputs on ``x`` with the removed channels zeroed (``model`` is restored)."""
    restore = zeroed_reference(model, result)
    try:
        return np.asarray(model(x, training=False))
    finally:
        restore()


def check(model, amount: float, x: np.ndarray, directory: str, **options):
    """Prune ``model`` (via its .keras file) and compare with the zeroed original.

    Returns (result, max |difference|, max |reference output|, prune seconds)."""
    import keras
    from swiftprune.graph import prune_model
    source = os.path.join(directory, f"{model.name}.keras")
    target = os.path.join(directory, f"{model.name}-{amount}.keras")
    model.save(source)
    start = time.perf_counter()
    result = prune_model(source, amount, target, **options)
    seconds = time.perf_counter() - start
    small = keras.saving.load_model(target, compile=False)
    expected = zeroed_outputs(model, result, x)
    actual = np.asarray(small(x, training=False))
    return result, float(np.abs(expected - actual).max()), float(np.abs(expected).max()), seconds


def build(name: str):
    import keras
    if name == "ClassicCNN":
        return classic_cnn(), (28, 28, 1)
    ctor, shape, kwargs = ARCHITECTURES[name]
    if not hasattr(keras.applications, ctor):
        raise AttributeError(f"keras.applications has no {ctor} in Keras {keras.__version__}")
    try:  # logits, so that the equivalence check compares numbers of a useful size
        model = getattr(keras.applications, ctor)(weights=None, input_shape=shape, classifier_activation=None, **kwargs)
    except TypeError:
        model = getattr(keras.applications, ctor)(weights=None, input_shape=shape, **kwargs)
    return model, shape


def main(names) -> int:
    import keras
    keras.utils.set_random_seed(0)
    rows, failures = [], 0
    header = ("| architecture | input | groups (prunable) | frozen channels | amount | params before → after "
              "| MACs before → after | max abs diff | prune s |")
    with tempfile.TemporaryDirectory() as directory:
        for name in names:
            try:
                model, shape = build(name)
            except Exception as error:  # an architecture this Keras does not ship
                rows.append(f"| {name} | — | not built: {error} | | | | | | |")
                continue
            randomize_norms(model)
            x = np.random.default_rng(1).normal(size=(2,) + shape).astype(np.float32)
            for amount in (0.3, 0.5):
                try:
                    result, diff, scale, seconds = check(model, amount, x, directory)
                except Exception as error:
                    failures += 1
                    rows.append(f"| {name} | {shape[0]}×{shape[1]} | FAILED at {amount}: {type(error).__name__}: "
                                f"{str(error)[:120]} | | | | | | |")
                    continue
                ok = diff <= 1e-4 * max(1.0, scale)
                failures += not ok
                rows.append(
                    f"| {name} | {shape[0]}×{shape[1]} | {result.groups} ({result.prunable_groups}) | "
                    f"{result.frozen_channels} / {result.total_channels} | {amount:.0%} | "
                    f"{result.params_before / 1e6:.2f}M → {result.params_after / 1e6:.2f}M | "
                    f"{result.macs_before / 1e6:.1f}M → {result.macs_after / 1e6:.1f}M | "
                    f"{diff:.1e}{'' if ok else ' ✗'} | {seconds:.2f} |")
                print(rows[-1], file=sys.stderr, flush=True)
    print(header)
    print("|" + "---|" * 9)
    print("\n".join(rows))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["ClassicCNN"] + list(ARCHITECTURES)))
