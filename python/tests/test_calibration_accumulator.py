"""HessianAccumulator under stress: the shared partial-sums scratch (every
tile edge of the mirrored add, both dtypes, concurrent threads) against the
float64 NumPy ``xᵀx``, and a MemoryError in the middle of a flush or a large
batch that loses no row and adds none twice."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import swiftprune as sp
from swiftprune import _core
from swiftprune.calibration import HessianAccumulator
from swiftprune.calibration import hessian as hessian_module

RNG = np.random.default_rng(1208)


def gram(*batches):
    x = np.concatenate([np.asarray(b, np.float64).reshape(-1, np.shape(b)[-1]) for b in batches])
    return x.T @ x


def assert_close(actual, expected, dtype):
    tolerance = 1e-13 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tolerance * np.abs(expected).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("features", [1, 5, 63, 64, 65, 130, 200])  # around the 64-wide mirror tiles
def test_hessian_with_a_reused_scratch_matches_numpy(features, dtype):
    h = np.zeros((features, features))
    scratch = np.full(features * features + 3, np.nan, dtype)  # stale contents must not leak into h
    batches = [RNG.standard_normal((rows, features)).astype(dtype) for rows in (1, 7, 300, 4097)]
    for x in batches:
        _core.hessian_accumulate(x, h, scratch)
    assert_close(h, gram(*batches), dtype)
    np.testing.assert_array_equal(h, h.T)
    # the scratch-less call (the core allocates its own) gives the same sums in the same order
    alone = np.zeros((features, features))
    for x in batches:
        _core.hessian_accumulate(x, alone)
    np.testing.assert_array_equal(alone, h)


def test_scratch_is_checked():
    x = np.ones((3, 4), np.float32)
    h = np.zeros((4, 4))
    with pytest.raises(TypeError, match="float32"):
        _core.hessian_accumulate(x, h, np.zeros(16))  # float64 scratch for float32 x
    with pytest.raises(TypeError, match="float64"):
        _core.hessian_accumulate(x.astype(np.float64), h, np.zeros(16, np.float32))
    with pytest.raises(TypeError, match="writeable"):
        _core.hessian_accumulate(x, h, np.zeros(32, np.float32)[::2])
    with pytest.raises(ValueError, match="scratch"):
        _core.hessian_accumulate(x, h, np.zeros(15, np.float32))  # fewer than features² entries
    with pytest.raises(ValueError, match="share memory"):
        _core.hessian_accumulate(x.astype(np.float64), h, h.reshape(-1))
    assert not h.any()


def test_accumulators_of_one_width_share_a_scratch_and_free_it():
    import gc

    a, b = HessianAccumulator(33, name="a"), HessianAccumulator(33, name="b")
    xa, xb = RNG.standard_normal((5000, 33)).astype(np.float32), RNG.standard_normal((4200, 33)).astype(np.float32)
    a.update(xa)
    b.update(xb)
    assert a._scratch is b._scratch
    assert_close(a.hessian_, gram(xa), np.float32)
    assert_close(b.hessian_, gram(xb), np.float32)
    key = (33, np.dtype(np.float32).str)
    assert key in hessian_module._SCRATCHES
    del a, b
    gc.collect()
    assert key not in hessian_module._SCRATCHES  # freed with the last accumulator of that width


def test_concurrent_accumulators_of_one_width_match_numpy():
    sp.set_num_threads(2)
    batches = [[RNG.standard_normal((700, 96)).astype(np.float32) for _ in range(12)] for _ in range(3)]
    accumulators = [HessianAccumulator(96, name=f"t{i}") for i in range(3)]
    start = threading.Barrier(3)

    def work(acc, xs):
        start.wait()
        for x in xs:
            acc.update(x)
        acc.hessian_

    threads = [threading.Thread(target=work, args=pair) for pair in zip(accumulators, batches)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for acc, xs in zip(accumulators, batches):
        assert acc.count_ == 700 * 12
        assert_close(acc.hessian_, gram(*xs), np.float32)


def failing_once(monkeypatch, after_calls):
    """Makes the core's hessian_accumulate raise MemoryError on call number ``after_calls`` (0-based)."""
    real = _core.hessian_accumulate
    calls = {"n": 0}

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == after_calls + 1:
            raise MemoryError("cannot allocate 123 bytes for the packing buffers")
        return real(*args)

    monkeypatch.setattr(hessian_module._core, "hessian_accumulate", flaky)
    return calls


def test_a_flush_failing_in_its_first_chunk_gives_the_batch_back(monkeypatch):
    acc = HessianAccumulator(24, name="blocks.3.fc2")
    batches = [RNG.standard_normal((rows, 24)).astype(np.float32) for rows in (3000, 2000, 3000)]
    acc.update(batches[0])  # pending
    calls = failing_once(monkeypatch, 0)
    with pytest.raises(MemoryError, match=r"blocks\.3\.fc2.*cannot allocate"):
        acc.update(batches[1])  # 5000 pending rows: the flush fails before adding any
    assert acc.count_ == 3000 and calls["n"] == 1  # the batch was not taken: the caller adds it again
    acc.update(batches[1])
    acc.update(batches[2])
    assert acc.count_ == 8000
    assert_close(acc.hessian_, gram(*batches), np.float32)
    np.testing.assert_allclose(acc.sum_, np.concatenate(batches).astype(np.float64).sum(axis=0), rtol=1e-10)


def test_a_flush_failing_after_its_first_chunk_keeps_the_rest_pending(monkeypatch):
    acc = HessianAccumulator(24, name="blocks.3.fc2")
    batches = [RNG.standard_normal((rows, 24)).astype(np.float32) for rows in (3000, 4000, 3000)]
    acc.update(batches[0])
    calls = failing_once(monkeypatch, 1)
    acc.update(batches[1])  # 7000 pending rows: the first 4096 are added, the next chunk fails; the rest waits
    assert acc.count_ == 7000 and calls["n"] == 2
    with pytest.raises(MemoryError, match="blocks.3.fc2"):
        failing_once(monkeypatch, 0)
        acc.hessian_  # still short of memory: the read raises, and keeps the rows
    monkeypatch.undo()
    acc.update(batches[2])
    assert acc.count_ == 10000
    assert_close(acc.hessian_, gram(*batches), np.float32)  # every row once


def test_a_failed_hessian_read_can_be_retried(monkeypatch):
    acc = HessianAccumulator(10, name="head")
    x = RNG.standard_normal((50, 10))
    acc.update(x)
    failing_once(monkeypatch, 0)
    with pytest.raises(MemoryError, match="head"):
        acc.hessian_
    assert_close(acc.hessian_, gram(x), np.float64)  # the retry adds the pending rows


def test_a_large_batch_failing_in_its_first_chunk_adds_nothing(monkeypatch):
    acc = HessianAccumulator(12, name="mlp")
    first = RNG.standard_normal((100, 12)).astype(np.float32)
    acc.update(first)
    big = RNG.standard_normal((9000, 12)).astype(np.float32)
    failing_once(monkeypatch, 1)  # call 0 flushes the pending 100 rows; call 1 is big's first chunk
    with pytest.raises(MemoryError, match="mlp"):
        acc.update(big)
    assert acc.count_ == 100  # the caller may add the same batch again
    acc.update(big)
    assert acc.count_ == 9100
    assert_close(acc.hessian_, gram(first, big), np.float32)


def test_a_large_batch_failing_later_keeps_the_rest_pending(monkeypatch):
    acc = HessianAccumulator(12, name="mlp")
    big = RNG.standard_normal((9000, 12)).astype(np.float32)
    calls = failing_once(monkeypatch, 1)  # the second of big's three chunks
    acc.update(big)  # two chunks cannot be undone: the rest waits for the next flush instead
    assert acc.count_ == 9000 and calls["n"] == 2
    assert_close(acc.hessian_, gram(big), np.float32)
    np.testing.assert_allclose(acc.abs_max_, np.abs(big).max(axis=0))


def test_nan_in_a_later_chunk_of_a_large_batch_adds_nothing():
    acc = HessianAccumulator(6, name="proj")
    big = RNG.standard_normal((9000, 6)).astype(np.float32)
    big[8500, 2] = np.inf
    with pytest.raises(ValueError, match=r"proj.*NaN or Inf"):
        acc.update(big)
    assert acc.count_ == 0 and not acc.hessian_.any()


def test_scratch_refused_is_a_memory_error_naming_the_layer(monkeypatch):
    def refuse(*args, **kwargs):
        raise MemoryError("Unable to allocate")

    acc = HessianAccumulator(7, name="wide")
    x = RNG.standard_normal((20, 7))
    acc.update(x)
    monkeypatch.setattr(hessian_module.np, "empty", refuse)
    with pytest.raises(MemoryError, match=r"wide.*cannot allocate 392 bytes for the Hessian's partial sums"):
        acc.hessian_
    monkeypatch.undo()
    assert_close(acc.hessian_, gram(x), np.float64)


def test_an_accumulator_pickles_and_copies_without_its_scratch():
    import copy
    import pickle

    acc = HessianAccumulator(20, name="sent")
    x, y = RNG.standard_normal((5000, 20)).astype(np.float32), RNG.standard_normal((30, 20)).astype(np.float32)
    acc.update(x)  # flushed: holds the shared scratch
    acc.update(y)  # pending
    for other in (pickle.loads(pickle.dumps(acc)), copy.deepcopy(acc)):  # e.g. returned by a worker process
        assert other.count_ == 5030 and other._scratch is None
        assert_close(other.hessian_, gram(x, y), np.float32)


def refusing_abs_once(monkeypatch):
    """Makes the next ``np.abs`` (the batch's |x| statistics) raise MemoryError, as a refused buffer would."""
    real = np.abs
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise MemoryError("Unable to allocate 2 KiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(hessian_module.np, "abs", flaky)
    return calls


@pytest.mark.parametrize("earlier, rows", [
    ((100,), 9000),  # a large batch: straight into the Hessian (after flushing the pending 100 rows)
    ((100,), 50),  # a small batch that stays pending
    ((3000,), 2000),  # a small batch whose arrival flushes 5000 pending rows
    ((5000, 30), 4500),  # a large batch after a flushed one and pending rows
])
def test_a_memory_error_in_the_statistics_takes_nothing_of_the_batch(monkeypatch, earlier, rows):
    acc = HessianAccumulator(9, name="enc.0.ffn")
    taken = [RNG.standard_normal((n, 9)) + 0.5 for n in earlier]  # float64: the sums are exact to 1e-13
    for batch in taken:
        acc.update(batch)
    state = (acc.count_, acc.sum_.copy(), acc.abs_sum_.copy(), acc.abs_max_.copy())
    batch = RNG.standard_normal((rows, 9)) * 3.0
    calls = refusing_abs_once(monkeypatch)
    with pytest.raises(MemoryError, match=r"enc\.0\.ffn.*Unable to allocate"):
        acc.update(batch)
    monkeypatch.undo()
    assert calls["n"] == 1
    # As before the call: the statistics, and the Hessian (with every row pending before) of the earlier batches.
    assert acc.count_ == state[0]
    for actual, expected in zip((acc.sum_, acc.abs_sum_, acc.abs_max_), state[1:]):
        np.testing.assert_array_equal(actual, expected)
    assert_close(acc.hessian_, gram(*taken), np.float64)
    # The caller adds the batch again: every statistic is the float64 reference over all batches, once.
    acc.update(batch)
    everything = np.concatenate(taken + [batch])
    assert acc.count_ == len(everything)
    assert_close(acc.hessian_, gram(everything), np.float64)
    np.testing.assert_allclose(acc.sum_, everything.sum(axis=0), rtol=0, atol=1e-10)
    np.testing.assert_allclose(acc.abs_sum_, np.abs(everything).sum(axis=0), rtol=1e-13)
    np.testing.assert_array_equal(acc.abs_max_, np.abs(everything).max(axis=0))


def test_a_large_batch_whose_rest_cannot_be_kept_leaves_an_accumulator_that_says_so(monkeypatch):
    acc = HessianAccumulator(12, name="mlp.down")
    big = RNG.standard_normal((9000, 12)).astype(np.float32)
    failing_once(monkeypatch, 1)  # the second of big's three chunks fails: two thirds wait to be kept...
    real_array = np.array

    def refuse_copy(*args, **kwargs):
        raise MemoryError("Unable to allocate 213 KiB")  # ...and their copy is refused too

    monkeypatch.setattr(hessian_module.np, "array", refuse_copy)
    with pytest.raises(MemoryError, match=r"mlp\.down.*4904 rows of a batch of 9000.*incomplete"):
        acc.update(big)
    monkeypatch.setattr(hessian_module.np, "array", real_array)
    monkeypatch.undo()
    # Neither "taken" nor "not taken": adding the batch again would count 4096 rows twice, so every use refuses.
    for use in (lambda: acc.update(big), lambda: acc.hessian_, lambda: acc.check(),
                lambda: HessianAccumulator(12).merge(acc)):
        with pytest.raises(ValueError, match=r"mlp\.down.*incomplete: capture the layer again"):
            use()
