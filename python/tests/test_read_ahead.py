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
