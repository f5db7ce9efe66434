"""Channel pruning coverage over keras.applications (weights=None, small inputs).

For every architecture and amount: save a ``.keras`` file, prune it with
``swiftprune.graph.prune_model`` (json + h5py, no Keras on the pruning side),
load the result with ``keras.saving.load_model`` and check **equivalence**:
the pruned model's output equals the original model's output with the
removed channels zeroed (the kernels' input slices that read them set to 0),
BatchNorm in inference mode. Prints the README coverage table.

    KERAS_BACKEND=jax PYTHONPATH=python python benchmarks/graph_coverage.py [--onnx] [NAME ...]

``--onnx`` adds the ONNX path: the .keras file converted to ONNX by
``keras_to_onnx.py`` (checked against Keras first), pruned with the
``swiftprune prune-channels`` command, run in onnxruntime against the zeroed
converted model.
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
    """Non-trivial BatchNorm statistics and scales (fresh ones are identities), and ConvNeXt's layer
    scales (initialized at 1e-6, they would hide every residual branch below float32 rounding)."""
    import keras
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        if type(layer).__name__ == "LayerScale":
            (gamma,) = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype(gamma.dtype)])
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


def zeroed_onnx(model, result):
    """A copy of the ONNX ``model`` whose Conv/Gemm/MatMul weight slices that read removed channels are 0."""
    import onnx
    from onnx import numpy_helper
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    inits = {i.name: i for i in copy.graph.initializer}
    touched = 0
    for index, node in enumerate(copy.graph.node):
        name = node.name or f"{node.op_type}_{index}"        # how swiftprune.graph names unnamed nodes
        if name in result.removed_inputs:
            _, axis, removed = result.removed_inputs[name]
            w = numpy_helper.to_array(inits[node.input[1]]).copy()
            where = [slice(None)] * w.ndim
            where[axis] = removed
            w[tuple(where)] = 0
            inits[node.input[1]].CopyFrom(numpy_helper.from_array(w, node.input[1]))
            touched += 1
    if touched != len(result.removed_inputs):
        raise AssertionError(f"zeroed {touched} of {len(result.removed_inputs)} layers")
    return copy


def check_onnx(model, amount: float, x: np.ndarray, directory: str):
    """The ONNX path: convert ``model``'s .keras file to ONNX (``keras_to_onnx.py``, checked against Keras),
    prune the .onnx with the ``swiftprune prune-channels`` command, run both in onnxruntime and compare with
    the zeroed converted model. Returns max |difference| (or raises NotImplementedError for layers the
    converter does not know)."""
    import onnx
    import onnxruntime as ort
    from keras_to_onnx import convert
    from swiftprune.cli import main as cli
    from swiftprune.graph import prune_model
    source = os.path.join(directory, f"{model.name}.keras")
    if not os.path.exists(source):
        model.save(source)
    converted = convert(source)
    feed = x.transpose(0, 3, 1, 2)

    def run(proto):
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: feed})[0]
    keras_out = np.asarray(model(x, training=False))
    fidelity = float(np.abs(run(converted) - keras_out).max())
    if fidelity > 1e-4 * max(1.0, float(np.abs(keras_out).max())):
        raise AssertionError(f"the converter's ONNX model differs from Keras by {fidelity:.1e}")
    src, dst, ref = (os.path.join(directory, f"{model.name}{s}") for s in (".onnx", f"-{amount}.onnx", "-ref.onnx"))
    onnx.save(converted, src)
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):                 # its summary line: not part of the table
        status = cli(["prune-channels", src, "-o", dst, "--amount", str(amount), "--no-progress"])
    if status != 0:
        raise AssertionError("swiftprune prune-channels failed")
    result = prune_model(src, amount, ref, progress=False)      # the same call: its removed channels
    with open(dst, "rb") as a, open(ref, "rb") as b:
        if a.read() != b.read():
            raise AssertionError("the CLI and prune_model wrote different files")
    return float(np.abs(run(onnx.load(dst)) - run(zeroed_onnx(converted, result))).max()), result


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


def main(names, with_onnx: bool = False) -> int:
    import keras
    keras.utils.set_random_seed(0)
    rows, failures = [], 0
    header = ("| architecture | input | groups (prunable) | frozen channels | amount | params before → after "
              "| MACs before → after | max abs diff | prune s |" + (" ONNX max abs diff |" if with_onnx else ""))
    columns = 10 if with_onnx else 9
    with tempfile.TemporaryDirectory() as directory:
        for name in names:
            try:
                model, shape = build(name)
            except Exception as error:  # an architecture this Keras does not ship
                rows.append(f"| {name} | — | not built: {error} |" + " |" * (columns - 3))
                continue
            randomize_norms(model)
            x = np.random.default_rng(1).normal(size=(2,) + shape).astype(np.float32)
            for amount in (0.3, 0.5):
                try:
                    result, diff, scale, seconds = check(model, amount, x, directory)
                except Exception as error:
                    failures += 1
                    rows.append(f"| {name} | {shape[0]}×{shape[1]} | FAILED at {amount}: {type(error).__name__}: "
                                f"{str(error)[:120]} |" + " |" * (columns - 3))
                    continue
                ok = diff <= 1e-4 * max(1.0, scale)
                failures += not ok
                onnx_cell = ""
                if with_onnx:
                    try:
                        onnx_diff, onnx_result = check_onnx(model, amount, x, directory)
                    except NotImplementedError as error:       # a layer the small converter does not know
                        onnx_cell = f" not converted ({str(error).split(': ', 1)[-1][:60]}) |"
                    except Exception as error:
                        failures += 1
                        onnx_cell = f" FAILED: {type(error).__name__}: {str(error)[:100]} |"
                    else:
                        onnx_ok = onnx_diff <= 1e-4 * max(1.0, scale)
                        failures += not onnx_ok
                        onnx_cell = (f" {onnx_diff:.1e}{'' if onnx_ok else ' ✗'} "
                                     f"({onnx_result.params_after / 1e6:.2f}M params) |")
                rows.append(
                    f"| {name} | {shape[0]}×{shape[1]} | {result.groups} ({result.prunable_groups}) | "
                    f"{result.frozen_channels} / {result.total_channels} | {amount:.0%} | "
                    f"{result.params_before / 1e6:.2f}M → {result.params_after / 1e6:.2f}M | "
                    f"{result.macs_before / 1e6:.1f}M → {result.macs_after / 1e6:.1f}M | "
                    f"{diff:.1e}{'' if ok else ' ✗'} | {seconds:.2f} |" + onnx_cell)
                print(rows[-1], file=sys.stderr, flush=True)
    print(header)
    print("|" + "---|" * columns)
    print("\n".join(rows))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))    # keras_to_onnx
    arguments = [a for a in sys.argv[1:] if a != "--onnx"]
    sys.exit(main(arguments or ["ClassicCNN"] + list(ARCHITECTURES), with_onnx="--onnx" in sys.argv[1:]))
