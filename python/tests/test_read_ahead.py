"""The sharded jobs' one-tensor read-ahead: order, errors at the right tensor, bounded look-ahead."""
import threading

import pytest

from swiftprune.distributed.read_ahead import read_ahead


def test_yields_every_name_in_order_with_its_value():
    assert list(read_ahead(["a", "b", "c"], str.upper)) == [("a", "A"), ("b", "B"), ("c", "C")]
    assert list(read_ahead([], str.upper)) == []


def test_reads_at_most_one_tensor_ahead_of_the_caller():
    started: list[str] = []
    lock = threading.Lock()

    def read(name: str) -> str:
        with lock:
            started.append(name)
        return name

    names = [str(i) for i in range(6)]
    for position, (name, _) in enumerate(read_ahead(names, read)):
        with lock:
            seen = list(started)
        assert name == names[position]
        assert len(seen) <= position + 2  # this tensor and at most the next one


def test_a_read_error_surfaces_at_its_own_tensor():
    def read(name: str) -> str:
        if name == "bad":
            raise ValueError("tensor 'bad' is truncated")
        return name

    got = []
    with pytest.raises(ValueError, match="truncated"):
        for name, _ in read_ahead(["ok", "bad", "never"], read):
            got.append(name)
    assert got == ["ok"]


def test_closing_early_waits_for_the_read_in_flight():
    finished = threading.Event()

    def read(name: str) -> str:
        if name == "second":
            finished.set()
        return name

    iterator = read_ahead(["first", "second", "third"], read)
    assert next(iterator) == ("first", "first")
    iterator.close()  # the background read of "second" completes before close returns
    assert finished.is_set()


def test_buffers_are_allocated_on_the_calling_thread_and_filled_by_the_reader():
    caller = threading.get_ident()
    allocated_on: list[int] = []
    read_on: list[int] = []

    def allocate(name: str) -> list:
        allocated_on.append(threading.get_ident())
        return [name]

    def read(name: str, buffer: list) -> str:
        read_on.append(threading.get_ident())
        buffer.append("filled")
        return "/".join(buffer)

    assert list(read_ahead(["a", "b", "c"], read, allocate=allocate)) == [
        ("a", "a/filled"), ("b", "b/filled"), ("c", "c/filled")]
    assert allocated_on == [caller] * 3
    assert read_on and caller not in read_on


def test_an_allocation_error_surfaces_at_its_own_tensor():
    def allocate(name: str) -> None:
        if name == "huge":
            raise MemoryError("cannot allocate tensor 'huge'")

    got = []
    with pytest.raises(MemoryError, match="huge"):
        for name, _ in read_ahead(["ok", "huge", "never"], lambda name, buffer: name, allocate=allocate):
            got.append(name)
    assert got == ["ok"]


def test_safetensors_reads_into_a_given_buffer(tmp_path):
    import numpy as np

    from swiftprune.io import SafetensorsFile, SafetensorsWriter

    w = np.arange(24, dtype=np.float32).reshape(4, 6)
    path = str(tmp_path / "w.safetensors")
    with SafetensorsWriter(path) as writer:
        writer.add("w", w)
    f = SafetensorsFile(path)
    buffer = np.empty(w.nbytes, np.uint8)
    raw = f.raw_bytes("w", buffer)
    assert np.shares_memory(raw, buffer) and raw.tobytes() == w.tobytes()
    for wrong in (np.empty(w.nbytes - 1, np.uint8), np.empty(w.nbytes // 4, np.float32), np.empty(w.nbytes, np.uint8)[::1][:0]):
        with pytest.raises(ValueError, match="out must be"):
            f.raw_bytes("w", wrong)
