"""Builds the Swift shared library (the C ABI) and the CPython extension.

`pip install .` and `pip install -e .` both run `build_ext`, which:
1. runs `swift build -c release --product swiftprune` with the Swift standard
   library linked statically, so the installed package needs no Swift runtime;
   with SWIFTPRUNE_BUILD_TESTS=1 (what CI and the README's test command use)
   it instead runs `swift build -c release -Xswiftc -enable-testing --build-tests`,
   which builds the library *and* the Swift tests once, so that
   `swift test -c release -Xswiftc -enable-testing --skip-build` runs the Swift
   tests against the very build the Python tests load (the Swift runtime is then
   linked dynamically from the toolchain: XCTest cannot link a static stdlib);
2. copies `libswiftprune.so` into the package, next to the extension;
3. builds `swiftprune._core`, linked to it through an `$ORIGIN` rpath.

The two builds share `.build` and each recompiles everything the other
built, since their flags differ. So that a developer alternating
`python setup.py build_ext --inplace` with the Swift tests' `swift build -c
release --build-tests -Xswiftc -enable-testing` does not pay for a full
build each time, an in-place build with SWIFTPRUNE_BUILD_TESTS unset follows
the build already in `.build`: when that one was testable (SwiftPM's build
manifest compiles the module with `-enable-testing`), it builds the testable
way too, incrementally. SWIFTPRUNE_BUILD_TESTS=0 forces the static library;
a wheel (`pip install .`, not in place) is always the static library unless
SWIFTPRUNE_BUILD_TESTS=1.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
SWIFT_LIBRARY = "libswiftprune.so"


def find_swift() -> str:
    """The `swift` driver: $SWIFT, else PATH, else the usual install location."""
    for candidate in (os.environ.get("SWIFT"), shutil.which("swift"), "/opt/swift/usr/bin/swift"):
        if candidate and Path(candidate).exists():
            return candidate
    sys.exit("swiftprune: the Swift toolchain (swift) was not found; install Swift 6 or set $SWIFT")


# The flags `swift test -c release --skip-build` must be given too, so that it
# finds the products of this build (README: the test command).
TEST_BUILD_FLAGS = ["-Xswiftc", "-enable-testing", "--build-tests"]


# SwiftPM's manifest of the last release build in .build (its commands and flags).
RELEASE_MANIFEST = ROOT / ".build" / "release.yaml"


def last_build_was_testable(manifest: Path = RELEASE_MANIFEST) -> bool:
    """Whether the last release build in `.build` compiled with `-enable-testing`
    (`swift build --build-tests -Xswiftc -enable-testing`, or this script with
    SWIFTPRUNE_BUILD_TESTS=1). False when there is no such build or its manifest
    cannot be read: then the default, static build is made."""
    try:
        return '"-enable-testing"' in manifest.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def wants_test_build(inplace: bool, manifest: Path = RELEASE_MANIFEST) -> bool:
    """SWIFTPRUNE_BUILD_TESTS=1: a testable build; =0: the static library; unset:
    an in-place build follows a testable build already in `.build` (see the
    module docstring), anything else builds the static library."""
    setting = os.environ.get("SWIFTPRUNE_BUILD_TESTS", "")
    if setting:
        return setting != "0"
    return inplace and last_build_was_testable(manifest)


def swift_build_command(swift: str, test_build: bool) -> list[str]:
    """The one `swift build` that setup.py runs (see the module docstring)."""
    if test_build:
        return [swift, "build", "-c", "release", *TEST_BUILD_FLAGS]
    return [swift, "build", "-c", "release", "--product", "swiftprune", "-Xswiftc", "-static-stdlib"]


def build_swift_library(test_build: bool) -> Path:
    """Builds the release shared library and returns its path."""
    swift = find_swift()
    command = swift_build_command(swift, test_build)
    if test_build and not os.environ.get("SWIFTPRUNE_BUILD_TESTS"):
        print("swiftprune: .build holds a testable build (swift build --build-tests -Xswiftc -enable-testing): "
              "building the same way, so that neither build redoes the other "
              "(SWIFTPRUNE_BUILD_TESTS=0 forces the static library)", flush=True)
    print("swiftprune: " + " ".join(command), flush=True)
    subprocess.check_call(command, cwd=ROOT)
    bin_dir = subprocess.check_output([swift, "build", "-c", "release", "--show-bin-path"], cwd=ROOT, text=True).strip()
    library = Path(bin_dir) / SWIFT_LIBRARY
    if not library.exists():
        sys.exit(f"swiftprune: swift build did not produce {library}")
    return library


class SwiftBuildExt(build_ext):
    def run(self) -> None:
        library = build_swift_library(wants_test_build(bool(self.inplace)))
        for ext in self.extensions:
            ext.library_dirs.append(str(library.parent))
        # Next to the extension, wherever it goes: build/ for a wheel, the source tree for -e.
        destinations = [Path(self.build_lib) / "swiftprune"]
        if self.inplace:
            destinations.append(ROOT / "python" / "swiftprune")
        for destination in destinations:
            destination.mkdir(parents=True, exist_ok=True)
            # Copy, then rename over: a process that has the old library
            # mapped keeps its (unchanged) file instead of crashing.
            staged = destination / (SWIFT_LIBRARY + ".tmp")
            shutil.copy2(library, staged)
            os.replace(staged, destination / SWIFT_LIBRARY)
        super().run()


core = Extension(
    "swiftprune._core",
    sources=["python/extension/swiftprune_core.c"],
    include_dirs=[numpy.get_include(), "Sources/CSwiftPrune/include"],
    libraries=["swiftprune"],
    extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wno-unused-parameter"],
    extra_link_args=["-Wl,-rpath,$ORIGIN"],
)

setup(ext_modules=[core], cmdclass={"build_ext": SwiftBuildExt})
