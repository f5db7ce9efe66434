"""Random Keras weights drawn by NumPy, for tests that build large models (keras.applications).

Under the JAX backend each random initializer call compiles a small XLA program per weight shape and dtype:
building ResNet50 with ``weights=None`` spent 20 of its test's 58 s of CPU compiling them, and loading the pruned
file (whose layers Keras builds, initializes, then overwrites) as much again. Inside :func:`numpy_initializers` the
backend's ``uniform`` / ``normal`` / ``truncated_normal`` draw from a seeded NumPy generator instead: the weights
are still random draws of the same distributions, and nothing is compiled to make them. Other backends: no change.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np


@contextlib.contextmanager
def numpy_initializers(seed: int = 0) -> Iterator[None]:
    import keras

    if keras.backend.backend() != "jax":
        yield
        return
    import jax.numpy as jnp
    from keras.src.backend.jax import random as backend_random

    rng = np.random.default_rng(seed)

    def as_array(values: np.ndarray, dtype) -> object:
        return jnp.asarray(values, dtype=dtype or keras.config.floatx())

    def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
        return as_array(rng.uniform(minval, maxval, shape), dtype)

    def normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
        return as_array(rng.normal(mean, stddev, shape), dtype)

    def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
        draws = rng.normal(0.0, 1.0, shape)
        outside = np.abs(draws) > 2.0                       # keras: jax.random.truncated_normal(lower=-2, upper=2)
        while outside.any():
            draws[outside] = rng.normal(0.0, 1.0, int(outside.sum()))
            outside = np.abs(draws) > 2.0
        return as_array(draws * stddev + mean, dtype)

    saved = backend_random.uniform, backend_random.normal, backend_random.truncated_normal
    backend_random.uniform, backend_random.normal, backend_random.truncated_normal = uniform, normal, truncated_normal
    try:
        yield
    finally:
        backend_random.uniform, backend_random.normal, backend_random.truncated_normal = saved
