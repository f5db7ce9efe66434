"""README.md's examples run, as a new user would run them.

- Every fenced ``python`` block runs, in README order, in one namespace, in a
  child process whose working directory is a fresh temporary directory (so the
  examples can write files and change global state such as the thread count).
- A block that imports an optional framework which is not installed (torch,
  keras, onnx, ...) is skipped, and a test for that framework skips saying so;
  where the framework is installed the block must run. Such blocks therefore
  define every name they use themselves.
- Every line of a fenced ``sh`` block that starts with ``swiftprune`` runs as
  ``python -m swiftprune ...`` (exit code 0 required), in order, in a
  directory of its own.
- Both directories start with the files the examples name: ``model.safetensors``
  (a small PyTorch-style model, generated here), ``weights.npz`` (Keras-style
  names) and every fenced ``yaml`` block whose first line is a comment naming a
  file (``# recipe.yaml — ...``).

The blocks are picked up from README.md as it is, so sections added later are
checked too.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import numpy as np
import pytest

import swiftprune

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"
# The directory holding the imported swiftprune package: the child processes import the same one.
PACKAGE_PARENT = str(pathlib.Path(swiftprune.__file__).resolve().parents[1])
# Frameworks an example may need that the test environment may lack.
OPTIONAL_MODULES = ("torch", "keras", "jax", "tensorflow", "onnx", "onnxruntime", "dask", "h5py", "ml_dtypes")
CHILD_TIMEOUT_S = 600


@dataclass(frozen=True)
class Block:
    """One fenced code block of README.md: its language, first code line (1-based) and text."""

    language: str
    line: int
    code: str


def fenced_blocks(text: str) -> list[Block]:
    """The fenced (```) code blocks of a Markdown text, in order."""
    blocks = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = re.match(r"^(\s*)(`{3,})\s*([\w+-]*)", lines[index])
        if not opening:
            index += 1
            continue
        indent, fence, language = opening.group(1), opening.group(2), opening.group(3).lower()
        start = index + 1
        index = start
        while index < len(lines) and not lines[index].strip().startswith(fence):
            index += 1
        body = "\n".join(line[len(indent):] if line.startswith(indent) else line for line in lines[start:index])
        blocks.append(Block(language, start + 1, body + "\n"))
        index += 1
    return blocks


def imported_modules(code: str) -> set[str]:
    """Top-level module names a Python block imports (``import a.b`` → ``a``)."""
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
            if node.module == "swiftprune" and any(alias.name == "keras" for alias in node.names):
                names.add("keras")
    if re.search(r"\bswiftprune\.keras\b|\bsp\.keras\b", code):
        names.add("keras")
    return names


def missing_modules(code: str) -> list[str]:
    """The optional frameworks a block imports that are not installed here."""
    return sorted(name for name in imported_modules(code) & set(OPTIONAL_MODULES)
                  if importlib.util.find_spec(name) is None)


def readme_blocks(language: str) -> list[Block]:
    return [block for block in fenced_blocks(README.read_text(encoding="utf-8")) if block.language == language]


def shell_commands() -> list[tuple[int, str]]:
    """(README line, argument string) of every ``swiftprune ...`` line in the sh blocks."""
    commands = []
    for block in readme_blocks("sh") + readme_blocks("bash") + readme_blocks("console"):
        for offset, line in enumerate(block.code.splitlines()):
            if not re.match(r"\s*swiftprune\s", line):
                continue  # other commands (pip, swift, docc) and continuation lines are not run
            words = shlex.split(line, comments=True)
            commands.append((block.line + offset, shlex.join(words[1:])))
    return commands


def write_example_files(directory: pathlib.Path) -> None:
    """The files the README's examples read: a small model in both layouts and the YAML recipes."""
    rng = np.random.default_rng(0)
    torch_style = {
        "embed.weight": rng.normal(size=(64, 32)),
        "conv1.weight": rng.normal(size=(16, 3, 3, 3)),
        "conv1.bias": rng.normal(size=16),
        "layers.0.attn.weight": rng.normal(size=(128, 256)),
        "layers.0.mlp.up.weight": rng.normal(size=(256, 128)),
        "layers.0.mlp.down.weight": rng.normal(size=(128, 256)),
        "layers.0.mlp.down.bias": rng.normal(size=128),
        "head.weight": rng.normal(size=(10, 128)),
    }
    swiftprune.save_weights(directory / "model.safetensors",
                            {name: value.astype(np.float32) for name, value in torch_style.items()})
    keras_style = {
        "dense/kernel": rng.normal(size=(64, 32)).astype(np.float32),
        "dense/bias": np.zeros(32, np.float32),
        "dense_1/kernel": rng.normal(size=(32, 10)).astype(np.float32),
        "dense_1/bias": np.zeros(10, np.float32),
    }
    np.savez(directory / "weights.npz", **keras_style)
    # A sharded float16 checkpoint named as the README's sharding examples name it (every input
    # dimension a multiple of 128, as the int4 group-128 examples need).
    llama_style = {"embed_tokens.weight": rng.normal(size=(256, 128)), "lm_head.weight": rng.normal(size=(256, 128))}
    for layer in range(2):
        llama_style[f"layers.{layer}.attn.weight"] = rng.normal(size=(128, 128))
        llama_style[f"layers.{layer}.mlp.up.weight"] = rng.normal(size=(256, 128))
        llama_style[f"layers.{layer}.mlp.down.weight"] = rng.normal(size=(128, 256))
        llama_style[f"layers.{layer}.norm.weight"] = np.ones(128)
    swiftprune.save_weights(directory / "llama", {name: value.astype(np.float16) for name, value in llama_style.items()},
                            max_shard_size="100KB")
    for block in readme_blocks("yaml"):
        named = re.match(r"#\s*([\w.-]+\.ya?ml)\b", block.code)
        if named:
            (directory / named.group(1)).write_text(block.code, encoding="utf-8")


def child_environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PACKAGE_PARENT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("KERAS_BACKEND", "jax")
    env["MPLBACKEND"] = "Agg"
    return env


# Runs the blocks given as JSON on stdin in one namespace; prints one JSON line per block.
CHILD = textwrap.dedent("""
    import json, sys, traceback
    blocks = json.load(sys.stdin)
    namespace = {"__name__": "__main__"}
    for block in blocks:
        if block["skip"]:
            print(json.dumps({"line": block["line"], "status": "skipped"}), flush=True)
            continue
        try:
            exec(compile(block["code"], "README.md:%d" % block["line"], "exec"), namespace)
        except BaseException:
            print(json.dumps({"line": block["line"], "status": "failed", "error": traceback.format_exc()}), flush=True)
            sys.exit(1)
        print(json.dumps({"line": block["line"], "status": "ok"}), flush=True)
""")


@pytest.fixture(scope="module")
def python_run(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict]:
    """Runs README's python blocks once; maps each block's README line to its outcome."""
    directory = tmp_path_factory.mktemp("readme_python")
    write_example_files(directory)
    blocks = [{"line": b.line, "code": b.code, "skip": bool(missing_modules(b.code))} for b in readme_blocks("python")]
    completed = subprocess.run([sys.executable, "-c", CHILD], input=json.dumps(blocks), capture_output=True,
                               text=True, cwd=directory, env=child_environment(), timeout=CHILD_TIMEOUT_S)
    outcomes = {}
    for line in completed.stdout.splitlines():
        if line.startswith("{"):
            outcome = json.loads(line)
            outcomes[outcome["line"]] = outcome
    if completed.returncode != 0 and not any(o["status"] == "failed" for o in outcomes.values()):
        pytest.fail(f"the README runner crashed (exit {completed.returncode}):\n{completed.stderr[-4000:]}")
    return outcomes


def test_fenced_blocks_parser() -> None:
    text = "intro\n```python\na = 1\n```\n\n  ```sh\n  swiftprune inspect x  # c\n  ```\n```\nplain\n```\n"
    assert fenced_blocks(text) == [Block("python", 3, "a = 1\n"), Block("sh", 7, "swiftprune inspect x  # c\n"),
                                   Block("", 10, "plain\n")]
    assert imported_modules("import torch, numpy as np\nfrom swiftprune.keras import X\n") == {"torch", "numpy",
                                                                                               "swiftprune", "keras"}


def test_readme_has_examples() -> None:
    assert len(readme_blocks("python")) >= 5
    assert len(shell_commands()) >= 3


def test_readme_python_blocks_run_in_order(python_run: dict[int, dict]) -> None:
    failed = [o for o in python_run.values() if o["status"] == "failed"]
    assert not failed, f"README.md python block at line {failed[0]['line']} failed:\n{failed[0]['error']}"
    expected = [b.line for b in readme_blocks("python")]
    assert sorted(python_run) == expected, "the runner stopped before the last block"


@pytest.mark.parametrize("module", ["keras", "torch"])
def test_readme_blocks_needing_a_framework(python_run: dict[int, dict], module: str) -> None:
    lines = [b.line for b in readme_blocks("python") if module in imported_modules(b.code)]
    if not lines:
        pytest.skip(f"no README python block imports {module}")
    missing = [b.line for b in readme_blocks("python") if b.line in lines and missing_modules(b.code)]
    if missing:
        pytest.skip(f"README python blocks at lines {missing} not run: "
                    f"{', '.join(missing_modules(next(b.code for b in readme_blocks('python') if b.line == missing[0])))}"
                    " not installed")
    assert all(python_run[line]["status"] == "ok" for line in lines)


def test_readme_shell_commands_run(tmp_path: pathlib.Path) -> None:
    write_example_files(tmp_path)
    for line, arguments in shell_commands():
        completed = subprocess.run([sys.executable, "-m", "swiftprune", *shlex.split(arguments)], capture_output=True,
                                   text=True, cwd=tmp_path, env=child_environment(), timeout=CHILD_TIMEOUT_S)
        assert completed.returncode == 0, (f"README.md line {line}: `swiftprune {arguments}` exited "
                                           f"{completed.returncode}:\n{completed.stderr[-3000:]}")


REPOSITORY = README.parent
# The consumer package, its link to the repository and its build folder stay at one
# place beside the repository's own .build (git ignores .build*): same paths every run,
# so only the first run compiles SwiftPrune for it (CI's fresh clone: once, ~40 s CPU).
SWIFT_CONSUMER = REPOSITORY / ".build-readme-consumer"
SWIFT_CONSUMER_SCRATCH = SWIFT_CONSUMER / "build"


def swift_quick_start() -> tuple[str, str]:
    """The README's Swift quick start: (Package.swift, main.swift) from its swift blocks."""
    blocks = readme_blocks("swift")
    manifests = [b.code for b in blocks if "import PackageDescription" in b.code]
    programs = [b.code for b in blocks if "import SwiftPrune" in b.code]
    assert len(manifests) == 1 and len(programs) == 1, "the README needs one Package.swift and one main.swift block"
    return manifests[0], programs[0]


def test_readme_swift_quick_start_builds_and_runs() -> None:
    swift = shutil.which("swift") or ("/opt/swift/usr/bin/swift" if os.access("/opt/swift/usr/bin/swift", os.X_OK)
                                      else None)
    if swift is None:
        pytest.skip("swift is not on PATH: the README's Swift quick start is not compiled here")
    if not (REPOSITORY / "Package.swift").exists():
        pytest.skip("not a source tree (no Package.swift beside README.md)")
    manifest, program = swift_quick_start()
    # The README's layout: the consumer package beside a clone named swiftprune.
    SWIFT_CONSUMER.mkdir(exist_ok=True)
    link = SWIFT_CONSUMER / "swiftprune"
    if not link.is_symlink():
        link.symlink_to(REPOSITORY, target_is_directory=True)
    demo = SWIFT_CONSUMER / "demo"
    (demo / "Sources" / "Demo").mkdir(parents=True, exist_ok=True)
    (demo / "Package.swift").write_text(manifest, encoding="utf-8")
    (demo / "Sources" / "Demo" / "main.swift").write_text(program, encoding="utf-8")
    built = subprocess.run([swift, "build", "--package-path", str(demo), "--scratch-path", str(SWIFT_CONSUMER_SCRATCH),
                            "--product", "Demo"], capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, f"swift build of the README quick start failed:\n{built.stdout[-3000:]}{built.stderr[-3000:]}"
    ran = subprocess.run([str(SWIFT_CONSUMER_SCRATCH / "debug" / "Demo")], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    # 32 entries at sparsity 0.5: exactly round(0.5 * 32) = 16 pruned, and the pruned tensor has those 16 zeros.
    assert lines[0] == "pruned 16 of 32; zeros 16", ran.stdout
    # int8, one scale per row: 32 one-byte values + 4 float32 scales = 48 bytes; symmetric stores no zero points.
    assert lines[1] == "int8 bytes 48; rank 2; restored [4, 8]", ran.stdout
    assert lines[2] == "error: invalidValue", ran.stdout
