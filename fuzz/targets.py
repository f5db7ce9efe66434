"""Fuzz targets for every swiftprune file reader.

Each target takes raw bytes, writes them to a file with the reader's suffix
and runs the reader. The contract under test: for any input the reader
either succeeds or raises ``ValueError`` (the documented error for a
malformed file; ``TypeError`` where the API documents it) — never another
exception, a hang, a crash or unbounded memory. ``check(name, data)``
raises ``AssertionError`` with the escaped exception otherwise.

Used three ways:
- ``python fuzz/fuzz_<target>.py CORPUS_DIR [libFuzzer flags]`` runs an
  atheris (coverage-guided) campaign; see fuzz/README.md;
- ``python fuzz/targets.py replay`` replays the committed corpus;
- ``python/tests/test_fuzz_corpus.py`` replays it (and a few seeded
  mutations) in every CI run.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def _safetensors(path: str) -> None:
    from swiftprune.io import SafetensorsFile

    for mmap in (False, True):
        f = SafetensorsFile(path, mmap=mmap)
        for name in f.names:
            f[name].sum()  # every tensor really read


def _compressed(path: str) -> None:
    import swiftprune as sp

    try:
        result = sp.load_compressed(path)
    except ValueError:
        return
    result.summary()
    for value in (result.weights.values() if isinstance(result.weights, dict) else result.weights):
        value.sum()


def _npz(path: str) -> None:
    import swiftprune as sp

    for value in sp.load_weights(path).values():
        value.sum()


def _h5(path: str) -> None:
    import swiftprune as sp

    for value in sp.load_weights(path).values():
        value.sum()


def _recipe(path: str) -> None:
    try:
        from swiftprune.recipe import load_recipe
    except ImportError:  # before the model.py split
        from swiftprune.model import load_recipe

    load_recipe(path)


#: name -> (file suffix, reader, extra allowed exception types)
TARGETS: dict[str, tuple[str, Callable[[str], None], tuple[type, ...]]] = {
    "safetensors": (".safetensors", _safetensors, ()),
    "compressed": (".safetensors", _compressed, ()),
    "npz": (".npz", _npz, ()),
    "h5": (".weights.h5", _h5, ()),
    "recipe_json": (".json", _recipe, (TypeError,)),
    "recipe_yaml": (".yaml", _recipe, (TypeError,)),
}


def available(name: str) -> bool:
    """Whether the target's optional dependency is installed."""
    modules = {"h5": "h5py", "recipe_yaml": "yaml"}
    if name not in modules:
        return True
    try:
        __import__(modules[name])
    except ImportError:
        return False
    return True


_DIRECTORY = tempfile.mkdtemp(prefix="swiftprune-fuzz-")


def check(name: str, data: bytes) -> None:
    """Runs target ``name`` on ``data``; AssertionError if the contract breaks."""
    suffix, reader, allowed = TARGETS[name]
    path = os.path.join(_DIRECTORY, f"input{suffix}")
    with open(path, "wb") as f:
        f.write(data)
    try:
        reader(path)
    except (ValueError, *allowed):
        pass
    except Exception as error:  # noqa: BLE001 - the point is to catch anything else
        raise AssertionError(f"{name}: {type(error).__name__} escaped the reader: {error!r:.300}") from error


def corpus_files(name: str) -> list[str]:
    directory = os.path.join(CORPUS, name)
    if not os.path.isdir(directory):
        return []
    return sorted(os.path.join(directory, n) for n in os.listdir(directory))


def main_atheris(name: str) -> None:
    """Entry point of ``fuzz_<name>.py``: an atheris campaign on target ``name``."""
    import atheris

    with atheris.instrument_imports():
        import swiftprune  # noqa: F401
        import swiftprune.io  # noqa: F401
        import swiftprune._npz  # noqa: F401
        import swiftprune.compressed_schema  # noqa: F401

    def one(data: bytes) -> None:
        check(name, data)

    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    if sys.argv[1:] == ["replay"]:
        failures = 0
        for target in TARGETS:
            if not available(target):
                continue
            for path in corpus_files(target):
                try:
                    with open(path, "rb") as f:
                        check(target, f.read())
                except AssertionError as error:
                    failures += 1
                    print(f"{path}: {error}")
        print(json.dumps({"failures": failures}))
        sys.exit(1 if failures else 0)
    print("usage: python fuzz/targets.py replay   (campaigns: python fuzz/fuzz_<target>.py CORPUS_DIR)")
