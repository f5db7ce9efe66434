"""swiftprune.keras.PruningCallback on tiny Keras 3 models (JAX backend unless
KERAS_BACKEND says otherwise). Skipped only when Keras cannot be imported;
the ``test`` extra installs keras and jax, so CI runs it."""
from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")

import swiftprune as sp  # noqa: E402
from swiftprune.keras import PruningCallback  # noqa: E402

BATCH = 16
SAMPLES = 64
STEPS_PER_EPOCH = SAMPLES // BATCH


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(SAMPLES, 8)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int32) + 2 * (x[:, 2] > 0).astype(np.int32)
    return x, y


def mlp(seed: int = 0) -> "keras.Model":
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input(shape=(8,)),
        keras.layers.Dense(16, activation="relu", name="hidden"),
        keras.layers.Dropout(0.0, name="drop"),
        keras.layers.Dense(4, activation="softmax", name="out"),
    ])
    # Eager steps: the JAX trainer still keeps its state outside the variables
    # (the path the callback must sync), and tiny models skip XLA compilation.
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", jit_compile=False)
    return model


def kernels(model: "keras.Model") -> dict[str, np.ndarray]:
    return {v.path: keras.ops.convert_to_numpy(v.value) for v in model.weights if len(v.shape) >= 2}


class Recorder(keras.callbacks.Callback):
    """Records the model's weights after every batch (after the pruning callback ran)."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshots: list[dict[str, np.ndarray]] = []

    def on_train_batch_end(self, batch: int, logs: object = None) -> None:
        sync = getattr(self.model, "jax_state_sync", None)
        if callable(sync):
            sync()
        self.snapshots.append({v.path: keras.ops.convert_to_numpy(v.value) for v in self.model.weights})


def path(model: "keras.Model", layer: str) -> str:
    """The variable path of a layer's kernel (Keras prefixes the model's name)."""
    return model.get_layer(layer).kernel.path


def zeros(array: np.ndarray) -> int:
    return int(np.count_nonzero(array == 0))


# --------------------------------------------------------------------------- #


def test_keras_is_imported_lazily() -> None:
    # Accessing PruningCallback imports keras: done in this process, by the import at the top.
    code = ("import sys, swiftprune, swiftprune.keras\n"
            "assert 'keras' not in sys.modules, 'import swiftprune(.keras) imported keras'\n"
            "assert 'PruningCallback' in dir(swiftprune.keras)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_missing_keras_is_a_clear_import_error() -> None:
    code = ("import sys\n"
            "sys.modules['keras'] = None  # as if keras were not installed\n"
            "import swiftprune.keras\n"
            "try:\n"
            "    swiftprune.keras.PruningCallback\n"
            "except ImportError as error:\n"
            "    assert 'pip install keras jax' in str(error), error\n"
            "else:\n"
            "    raise AssertionError('no ImportError')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_is_a_keras_callback() -> None:
    callback = PruningCallback(sp.ConstantSparsity(0.5, frequency=1))
    assert isinstance(callback, keras.callbacks.Callback)
    assert callback.step == 0 and callback.pruner is None and callback.masks == {}
    assert "PruningCallback" in repr(callback)


def test_first_masks_are_magnitude_masks_of_the_weights_before_training() -> None:
    model = mlp()
    before = kernels(model)
    callback = PruningCallback(sp.ConstantSparsity(0.5, begin_step=0, frequency=1000))
    x, y = data()
    model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[callback])
    assert callback.step == 2 * STEPS_PER_EPOCH
    masks = callback.masks
    assert set(masks) == set(before) == {path(model, "hidden"), path(model, "out")}
    after = kernels(model)
    for name, w in before.items():
        np.testing.assert_array_equal(masks[name], sp.magnitude_mask(w, 0.5))
        assert zeros(after[name]) == round(0.5 * w.size)
        assert np.all(after[name][~masks[name]] == 0)
        assert np.all(after[name][masks[name]] != 0)  # kept weights trained on, not zeroed


def test_pruned_weights_stay_zero_after_every_step_and_masks_only_grow() -> None:
    model = mlp()
    biases_before = {v.path: keras.ops.convert_to_numpy(v.value) for v in model.weights if len(v.shape) == 1}
    schedule = sp.PolynomialDecay(0.0, 0.75, begin_step=1, end_step=9, frequency=2)
    callback, recorder = PruningCallback(schedule), Recorder()
    x, y = data()
    model.fit(x, y, epochs=3, batch_size=BATCH, verbose=0, callbacks=[callback, recorder])
    assert len(recorder.snapshots) == 3 * STEPS_PER_EPOCH
    previous: dict[str, np.ndarray] = {}
    target = 0.0
    for step, snapshot in enumerate(recorder.snapshots):
        if schedule.should_prune(step):
            target = schedule.sparsity_at(step)
        for name in (path(model, "hidden"), path(model, "out")):
            w = snapshot[name]
            assert zeros(w) == round(target * w.size), (step, name, zeros(w), target)
            if name in previous:
                assert np.all(w[previous[name] == 0] == 0), f"step {step}: a pruned weight of {name} came back"
            previous[name] = w
    assert target == pytest.approx(0.75)
    for name, bias in biases_before.items():
        # biases are trained but never pruned (they start at zero and move away from it)
        assert zeros(recorder.snapshots[-1][name]) < bias.size


def test_second_fit_continues_the_schedule() -> None:
    model = mlp()
    schedule = sp.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=2 * STEPS_PER_EPOCH, frequency=1)
    callback = PruningCallback(schedule)
    x, y = data()
    with pytest.warns(UserWarning, match="stopped at step 3 "):  # end_step 8 is not reached by either fit
        model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=[callback])
    hidden = path(model, "hidden")
    halfway = zeros(kernels(model)[hidden])
    size = kernels(model)[hidden].size
    assert halfway == round(schedule.sparsity_at(STEPS_PER_EPOCH - 1) * size) < round(0.5 * size)
    model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=[callback])  # step 7 rounds to the final count
    assert callback.step == 2 * STEPS_PER_EPOCH
    assert zeros(kernels(model)[hidden]) == round(schedule.sparsity_at(2 * STEPS_PER_EPOCH - 1) * size)


def test_global_magnitude_uses_one_threshold() -> None:
    model = mlp()
    before = kernels(model)
    callback = PruningCallback(sp.ConstantSparsity(0.6, frequency=1000), method="global_magnitude")
    x, y = data()
    model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=[callback])
    total = sum(w.size for w in before.values())
    after = kernels(model)
    assert sum(zeros(w) for w in after.values()) == round(0.6 * total)
    expected = sp.global_magnitude_masks(before, 0.6)
    for name in before:
        np.testing.assert_array_equal(callback.masks[name], expected[name])


@pytest.mark.parametrize("selector", ["name", "layer"])
def test_layers_selects_what_is_pruned(selector: str) -> None:
    model = mlp()
    chosen = "out" if selector == "name" else model.get_layer("out")
    callback = PruningCallback(sp.ConstantSparsity(0.5, frequency=1), layers=[chosen])
    x, y = data()
    model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=[callback])
    after = kernels(model)
    out, hidden = path(model, "out"), path(model, "hidden")
    assert set(callback.masks) == {out}
    assert zeros(after[out]) == round(0.5 * after[out].size)
    assert zeros(after[hidden]) == 0
    assert callback.get_config()["layers"] == ["out"]


def test_conv_and_nested_models() -> None:
    keras.utils.set_random_seed(1)
    inner = keras.Sequential([keras.Input(shape=(6, 6, 2)),
                              keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
                              keras.layers.Flatten(name="flat")], name="inner")
    outer = keras.Sequential([keras.Input(shape=(6, 6, 2)), inner, keras.layers.Dense(3, name="head")])
    outer.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    callback = PruningCallback(sp.ConstantSparsity(0.5, frequency=1))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6, 6, 2)).astype(np.float32)
    y = rng.integers(0, 3, size=32)
    outer.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[callback])
    masks = callback.masks
    conv = inner.get_layer("conv").kernel.path
    assert sorted(masks) == sorted([conv, path(outer, "head")])
    after = kernels(outer)
    assert set(after) == set(masks)
    assert after[conv].shape == (3, 3, 2, 4)
    for name, w in after.items():
        assert zeros(w) == round(0.5 * w.size), name


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="schedule"):
        PruningCallback(0.5)
    with pytest.raises(ValueError, match="method"):
        PruningCallback(sp.ConstantSparsity(0.5), method="random")
    with pytest.raises(TypeError, match="layers"):
        PruningCallback(sp.ConstantSparsity(0.5), layers="hidden")
    with pytest.raises(TypeError, match="layers"):
        PruningCallback(sp.ConstantSparsity(0.5), layers=[3])
    with pytest.raises(ValueError, match="layers is empty"):
        PruningCallback(sp.ConstantSparsity(0.5), layers=[])
    x, y = data()
    for layers, message in [(["nope"], "'nope' is not in model"), (["drop"], "'drop' has no trainable kernel")]:
        with pytest.raises(ValueError, match=message):
            mlp().fit(x, y, epochs=1, batch_size=BATCH, verbose=0,
                      callbacks=[PruningCallback(sp.ConstantSparsity(0.5), layers=layers)])


def test_model_without_kernels() -> None:
    model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Normalization(mean=0.0, variance=1.0)])
    model.compile(optimizer="sgd", loss="mse", jit_compile=False)
    x = np.zeros((8, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="no layer with a trainable kernel"):
        model.fit(x, x, epochs=1, verbose=0, callbacks=[PruningCallback(sp.ConstantSparsity(0.5))])


def readme_blocks(section: str) -> list[str]:
    """The ```python blocks of a README.md "### <section>" subsection."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    start = text.index(f"### {section}\n")
    end = min(i for i in (text.find("\n### ", start + 1), text.find("\n## ", start + 1)) if i != -1)
    return re.findall(r"```python\n(.*?)```", text[start:end], re.S)


def test_readme_keras_examples_run() -> None:
    """The README's two Keras blocks (self-contained; test_readme.py runs them too, in order with the others)."""
    blocks = readme_blocks("Use from Keras")
    assert len(blocks) == 2
    namespace: dict = {}
    exec(blocks[0], namespace)  # train a toy model, compress get_weights(), set_weights()
    model = namespace["model"]
    for w in model.get_weights():
        if w.ndim == 2:  # int8 per output channel: at most 255 distinct values per column
            assert max(len(np.unique(w[:, j])) for j in range(w.shape[1])) <= 255
    assert namespace["result"].report.totals["bytes_after"] < sum(w.nbytes for w in model.get_weights())
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # training passes end_step: no shortfall warning
        exec(blocks[1], namespace)  # fit with PruningCallback
    schedule = namespace["schedule"]
    for kernel in kernels(model).values():  # the README's claim: exactly the final 80% zero
        assert zeros(kernel) == round(schedule.final_sparsity * kernel.size)


def test_warns_when_fit_ends_before_the_final_sparsity() -> None:
    model = mlp()
    x, y = data()
    schedule = sp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=3 * STEPS_PER_EPOCH, frequency=1)
    callback = PruningCallback(schedule)
    last = 2 * STEPS_PER_EPOCH - 1
    reached = round(schedule.sparsity_at(last) * 16 * 8) + round(schedule.sparsity_at(last) * 4 * 16)
    with pytest.warns(UserWarning, match=rf"PruningCallback: final sparsity 80\.0% not reached: training stopped "
                                         rf"at step {last} with sparsity {reached / (16 * 8 + 4 * 16):.1%}"):
        model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[callback])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model.fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[callback])  # passes end_step
    assert all(zeros(k) == round(0.8 * k.size) for k in kernels(model).values())
