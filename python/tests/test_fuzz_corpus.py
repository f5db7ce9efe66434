"""Replays the committed fuzz corpus (fuzz/corpus) through every file reader,
plus a few hundred seeded mutations of it: only ValueError may escape.

Long coverage-guided campaigns run with atheris (fuzz/README.md); this is
their regression suite, and every input a campaign finds belongs in the corpus.
"""
from __future__ import annotations

import os
import random
import sys

import pytest

FUZZ = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "fuzz")
sys.path.insert(0, FUZZ)
targets = pytest.importorskip("targets")


def cases():
    for name in targets.TARGETS:
        for path in targets.corpus_files(name):
            yield pytest.param(name, path, id=f"{name}/{os.path.basename(path)}")


def test_every_reader_has_a_corpus():
    for name in targets.TARGETS:
        assert len(targets.corpus_files(name)) >= 4, name


@pytest.mark.parametrize("name,path", list(cases()))
def test_corpus_file(name, path):
    if not targets.available(name):
        pytest.skip(f"{name} needs an optional dependency")
    with open(path, "rb") as f:
        targets.check(name, f.read())


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One libFuzzer-style edit: flip, overwrite with an edge value, insert, delete or truncate."""
    data = bytearray(data)
    kind = rng.randrange(5)
    if not data or kind == 2:
        position = rng.randrange(len(data) + 1)
        data[position:position] = rng.choice([b"\0", b"\xff", b"[", b"{", b"9999999999", b'"', b"-1", b"\x80"])
    elif kind == 0:
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == 1:
        position = rng.randrange(len(data))
        edge = rng.choice([b"\0" * 8, b"\xff" * 8, b"\x7f\xff\xff\xff", b"\0\0\0\x80"])
        data[position:position + len(edge)] = edge
    elif kind == 3:
        start = rng.randrange(len(data))
        del data[start:start + rng.randrange(1, 16)]
    else:
        del data[rng.randrange(len(data)):]
    return bytes(data)


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_seeded_mutations_of_valid_files(name):
    if not targets.available(name):
        pytest.skip(f"{name} needs an optional dependency")
    rng = random.Random(f"issue16-{name}")
    seeds = [open(p, "rb").read() for p in targets.corpus_files(name) if os.path.basename(p).startswith("valid")]
    assert seeds
    for _ in range(150):
        data = rng.choice(seeds)
        for _ in range(rng.randrange(1, 4)):
            data = mutate(data, rng)
        targets.check(name, data)
