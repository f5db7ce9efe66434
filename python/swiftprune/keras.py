"""Keras integration: gradual magnitude pruning during ``model.fit``.

:class:`PruningCallback` drives a :class:`swiftprune.GradualPruner` from a
Keras 3 training loop, as TensorFlow Model Optimization's
``UpdatePruningStep`` does for its pruning wrappers, but without wrapping
the layers: the model stays an ordinary Keras model whose pruned kernels
hold exact zeros, ready for ``get_weights()`` and :func:`swiftprune.compress`.

Keras is an optional dependency, imported the first time
:class:`PruningCallback` is used (``import swiftprune`` never imports it).
Any Keras 3 backend works; JAX is the lightest to install
(``pip install keras jax`` and ``KERAS_BACKEND=jax`` set before Keras is
first imported).

Examples
--------
>>> import os; os.environ.setdefault("KERAS_BACKEND", "jax")  # doctest: +SKIP
>>> import swiftprune as sp
>>> from swiftprune.keras import PruningCallback
>>> schedule = sp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=500, frequency=25)
>>> model.fit(x, y, epochs=5, callbacks=[PruningCallback(schedule)])  # doctest: +SKIP
"""
from __future__ import annotations

import importlib
import warnings
from typing import Any

__all__ = ["PruningCallback"]

_CLASS: Any = None


def _import_keras() -> Any:
    try:
        return importlib.import_module("keras")
    except ImportError as error:
        if getattr(error, "name", None) == "keras":
            raise ImportError("swiftprune.keras needs Keras 3: pip install keras jax "
                              "(and set KERAS_BACKEND=jax before importing keras)") from error
        raise ImportError(f"Keras could not be imported ({error}); if its backend is not installed, "
                          "set KERAS_BACKEND to one that is (e.g. KERAS_BACKEND=jax after pip install jax) "
                          "before Keras is first imported") from error


def _build() -> Any:
    keras = _import_keras()
    if not hasattr(keras, "ops") or not hasattr(keras, "Variable"):
        raise ImportError("swiftprune.keras needs Keras 3 (keras.ops); found Keras "
                          f"{getattr(keras, '__version__', 'of unknown version')}")
    ops = keras.ops
    from . import GradualPruner  # public contract: swiftprune.GradualPruner

    def walk(layer: Any) -> Any:
        yield layer
        for child in getattr(layer, "layers", ()) or ():
            yield from walk(child)

    class PruningCallback(keras.callbacks.Callback):
        """Prunes a Keras model's kernels gradually while it trains.

        Every training batch, as TensorFlow Model Optimization does:

        1. before the batch, if ``schedule.should_prune(step)``, the masks
           are updated by :meth:`swiftprune.GradualPruner.step` from the
           current kernel values (an entry pruned once stays pruned) and
           applied;
        2. after the optimizer step, the masks are applied again, so pruned
           weights are exactly zero whenever Keras (or you) look at them.

        ``step`` counts training batches across every ``fit`` that uses this
        callback, so a second ``fit`` continues the schedule. At the end of
        training the kernels hold the final masks' zeros (a ``UserWarning``
        names the step training stopped at when the schedule's final sparsity
        was not reached); ``masks`` gives the
        masks by variable path (``variable.path``, e.g.
        ``"sequential/dense/kernel"``). With ``fit(steps_per_execution=n)``
        Keras calls the batch hooks once per ``n`` batches, so a step is then
        ``n`` optimizer steps and masks are re-applied after each group.

        Parameters
        ----------
        schedule : ConstantSparsity, PolynomialDecay or another PruningSchedule
            When to update the masks and at which sparsity (``step`` =
            training batch, counted from 0).
        method : {"magnitude", "global_magnitude"}, default "magnitude"
            Each kernel at the schedule's sparsity, or one magnitude threshold
            over all the selected kernels together (see ``GradualPruner``).
        layers : sequence of str or keras.layers.Layer, optional
            The layers whose ``kernel`` is pruned, by name or object. Default:
            every layer of the model (nested ones included) that has a
            trainable ``kernel`` of two or more dimensions (Dense, Conv*,
            EinsumDense, ...); biases and normalization vectors are never
            pruned.

        Attributes
        ----------
        step : int
            The next training step (batch) the schedule will see.
        pruner : swiftprune.GradualPruner or None
            Created when training first begins.

        Raises
        ------
        TypeError
            ``schedule`` is not a pruning schedule, or ``layers`` holds
            something other than names and layers.
        ValueError
            Unknown ``method``; a named layer is not in the model or has no
            kernel of two or more dimensions; no layer to prune.

        Examples
        --------
        >>> schedule = sp.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=200, frequency=10)
        >>> callback = PruningCallback(schedule)
        >>> model.fit(x, y, epochs=4, callbacks=[callback])       # doctest: +SKIP
        >>> {name: 1 - m.mean() for name, m in callback.masks.items()}  # doctest: +SKIP
        {'sequential/dense/kernel': 0.8, 'sequential/dense_1/kernel': 0.8}
        """

        def __init__(self, schedule: Any, method: str = "magnitude", layers: Any = None) -> None:
            super().__init__()
            # GradualPruner validates the schedule and the method with its own messages.
            GradualPruner([], schedule, method=method)
            if layers is not None:
                if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
                    raise TypeError(f"layers must be a sequence of layer names or layers, got {layers!r}")
                layers = list(layers)
                for item in layers:
                    if not isinstance(item, (str, keras.layers.Layer)):
                        raise TypeError(f"layers must hold layer names (str) or keras layers, got {item!r}")
                if not layers:
                    raise ValueError("layers is empty: give at least one layer, or None for every kernel")
            self.schedule = schedule
            self.method = method
            self.layers = layers
            self.step = 0
            self.pruner: Any = None
            self._variables: list[Any] = []
            self._masks: list[Any] = []

        # -- selection --------------------------------------------------- #

        def _select(self) -> list[Any]:
            candidates = [layer for layer in walk(self.model) if layer is not self.model]
            if self.layers is None:
                chosen = [layer for layer in candidates if _prunable(layer)]
                if not chosen:
                    raise ValueError("PruningCallback: the model has no layer with a trainable kernel "
                                     "of two or more dimensions to prune")
            else:
                by_name = {layer.name: layer for layer in candidates}
                chosen = []
                for item in self.layers:
                    layer = by_name.get(item) if isinstance(item, str) else item
                    if layer is None or all(layer is not c for c in candidates):
                        raise ValueError(f"PruningCallback: layer {item if isinstance(item, str) else item.name!r} "
                                         f"is not in model {self.model.name!r}")
                    if not _prunable(layer):
                        raise ValueError(f"PruningCallback: layer {layer.name!r} has no trainable kernel "
                                         "of two or more dimensions")
                    if all(layer is not c for c in chosen):
                        chosen.append(layer)
            return [layer.kernel for layer in chosen]

        # -- state ------------------------------------------------------- #

        def _sync(self) -> None:
            # The JAX trainer keeps the training state outside the variables
            # during an epoch; write it back before reading or assigning them.
            # (Recent Keras does this in the `Callback.model` property already;
            # an explicit call keeps older Keras 3 releases right too.)
            sync = getattr(self.model, "jax_state_sync", None)
            if callable(sync):
                sync()

        def _values(self) -> dict[str, Any]:
            return {v.path: ops.convert_to_numpy(v.value) for v in self._variables}

        def _apply(self) -> None:
            self._sync()
            for variable, mask in zip(self._variables, self._masks):
                variable.assign(ops.multiply(variable.value, mask))

        @property
        def masks(self) -> dict[str, Any]:
            """The current keep-masks (bool NumPy arrays) by variable path."""
            if self.pruner is None:
                return {}
            return self.pruner.masks

        # -- Keras hooks -------------------------------------------------- #

        def on_train_begin(self, logs: Any = None) -> None:
            variables = self._select()
            if self.pruner is not None and [v.path for v in variables] == [v.path for v in self._variables]:
                self._variables = variables  # same kernels: keep the masks, continue the schedule
                return
            self._sync()
            self._variables = variables
            paths = [v.path for v in variables]
            if len(set(paths)) != len(paths):
                raise ValueError(f"PruningCallback: kernel variable paths are not unique: {paths}")
            self.pruner = GradualPruner(self._values(), self.schedule, method=self.method)
            self._masks = [ops.ones(v.shape, dtype=v.dtype) for v in variables]

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            if self.schedule.should_prune(self.step):
                self._sync()
                masks = self.pruner.step(self.step, self._values())
                self._masks = [ops.convert_to_tensor(masks[v.path], dtype=v.dtype) for v in self._variables]
                self._apply()

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self._apply()
            self.step += 1

        def on_train_end(self, logs: Any = None) -> None:
            self._apply()
            # Training stopping before the schedule's end leaves the kernels less sparse than asked: say so.
            message = self.pruner._shortfall(self.step - 1 if self.step > 0 else None)
            if message is not None:
                warnings.warn(f"PruningCallback: {message}", UserWarning, stacklevel=2)

        def get_config(self) -> dict[str, Any]:
            """The constructor arguments, layers given by name."""
            layers = None if self.layers is None else [
                item if isinstance(item, str) else item.name for item in self.layers]
            return {"schedule": self.schedule, "method": self.method, "layers": layers}

        def __repr__(self) -> str:
            return f"PruningCallback(schedule={self.schedule!r}, method={self.method!r}, step={self.step})"

    def _prunable(layer: Any) -> bool:
        kernel = getattr(layer, "kernel", None)
        return (isinstance(kernel, keras.Variable) and kernel.trainable and len(kernel.shape) >= 2)

    PruningCallback.__module__ = __name__
    return PruningCallback


def __getattr__(name: str) -> Any:
    global _CLASS
    if name == "PruningCallback":
        if _CLASS is None:
            _CLASS = _build()
        return _CLASS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
