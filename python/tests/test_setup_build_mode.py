"""setup.py's choice between the static library and the testable build.

An in-place build with SWIFTPRUNE_BUILD_TESTS unset follows a testable build
already in `.build` (so that it and `swift build --build-tests -Xswiftc
-enable-testing` stop rebuilding each other); a wheel, and any build when no
testable build is there, stays the static library; the variable overrides.
"""
from __future__ import annotations

import pathlib

import pytest

SETUP = pathlib.Path(__file__).resolve().parents[2] / "setup.py"

pytestmark = pytest.mark.skipif(not SETUP.exists(), reason="needs the source tree's setup.py")

# The line SwiftPM 6 writes for the module's compile command, abridged: the
# flags are a JSON array of strings.
TESTABLE = 'args: ["/opt/swift/usr/bin/swiftc","-module-name","SwiftPrune","-O","-g","-enable-testing","-Xcc","-fPIC"]\n'
STATIC = 'args: ["/opt/swift/usr/bin/swiftc","-module-name","SwiftPrune","-O","-g","-static-stdlib","-Xcc","-fPIC"]\n'


@pytest.fixture
def setup_module(monkeypatch):
    """setup.py's functions, without running `setup()`."""
    import setuptools

    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: None)
    namespace = {"__file__": str(SETUP), "__name__": "setup_under_test"}
    exec(compile(SETUP.read_text(encoding="utf-8"), str(SETUP), "exec"), namespace)
    return namespace


@pytest.fixture
def manifests(tmp_path):
    testable, static = tmp_path / "testable.yaml", tmp_path / "static.yaml"
    testable.write_text(TESTABLE)
    static.write_text(STATIC)
    return {"testable": testable, "static": static, "missing": tmp_path / "missing.yaml"}


@pytest.mark.parametrize("setting, inplace, manifest, expected", [
    # Unset: in place follows a testable build, nothing else does.
    (None, True, "testable", True),
    (None, True, "static", False),
    (None, True, "missing", False),
    (None, False, "testable", False),      # a wheel stays the static library
    # Set: the variable decides ("0" off, anything else on), whatever is in .build.
    ("0", True, "testable", False),
    ("0", False, "missing", False),
    ("1", False, "static", True),
    ("1", True, "missing", True),
    ("yes", False, "static", True),
])
def test_build_mode(setup_module, manifests, monkeypatch, setting, inplace, manifest, expected):
    if setting is None:
        monkeypatch.delenv("SWIFTPRUNE_BUILD_TESTS", raising=False)
    else:
        monkeypatch.setenv("SWIFTPRUNE_BUILD_TESTS", setting)
    assert setup_module["wants_test_build"](inplace, manifests[manifest]) is expected


def test_build_commands(setup_module):
    command = setup_module["swift_build_command"]
    # The testable build uses exactly the flags the README's `swift test --skip-build` expects.
    assert command("swift", True) == ["swift", "build", "-c", "release", "-Xswiftc", "-enable-testing", "--build-tests"]
    assert command("swift", False) == ["swift", "build", "-c", "release", "--product", "swiftprune",
                                       "-Xswiftc", "-static-stdlib"]
