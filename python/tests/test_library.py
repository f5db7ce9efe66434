"""Package-level behaviour: version, threads, installation layout."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import swiftprune as sp
from swiftprune import _core


def test_version_matches_the_swift_library():
    assert sp.__version__ == _core.version()


def test_thread_count_round_trip():
    before = sp.get_num_threads()
    try:
        sp.set_num_threads(1)
        assert sp.get_num_threads() == 1
        sp.set_num_threads(3)
        assert sp.get_num_threads() == 3
    finally:
        sp.set_num_threads(0)
    assert sp.get_num_threads() == before


def test_bad_thread_counts():
    with pytest.raises(ValueError):
        sp.set_num_threads(-1)
    with pytest.raises(TypeError):
        sp.set_num_threads(1.5)


def test_environment_variable_sets_the_default():
    code = "import swiftprune as sp; print(sp.get_num_threads())"
    env = dict(os.environ, SWIFTPRUNE_NUM_THREADS="3")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "3"


def test_package_ships_py_typed():
    assert os.path.exists(os.path.join(os.path.dirname(sp.__file__), "py.typed"))
