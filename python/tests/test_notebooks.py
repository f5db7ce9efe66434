"""The notebooks in ``notebooks/``: committed without outputs, and each runs
top to bottom in a fresh Jupyter kernel (a failing cell, including the
accuracy assertions in their last cells, fails the test).

The kernel imports the same ``swiftprune`` as these tests: the installed
package in CI, or ``python/`` with ``PYTHONPATH=python`` in a source tree
(the package's parent directory is put first on the kernel's
``PYTHONPATH``, and an injected first cell checks the import).
"""
from __future__ import annotations

import json
import os
import pathlib
import site

import pytest

import swiftprune

NOTEBOOKS_DIR = pathlib.Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
IDS = [path.stem for path in NOTEBOOKS]


def test_notebooks_exist() -> None:
    names = {path.name for path in NOTEBOOKS}
    assert {"01_quickstart.ipynb", "02_accuracy_vs_size.ipynb", "03_keras.ipynb"} <= names, names


def stripped_problems(notebook: dict) -> list[str]:
    """Why a notebook (as parsed JSON) is not stripped of its outputs; empty if it is."""
    problems = []
    for index, cell in enumerate(notebook.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"cell {index} has outputs")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {index} has execution_count {cell['execution_count']}")
        if cell.get("metadata", {}).get("execution"):
            problems.append(f"cell {index} has execution timing metadata")
    if "widgets" in notebook.get("metadata", {}):
        problems.append("notebook metadata holds widget state")
    return problems


def test_stripped_check_can_fail() -> None:
    dirty = {"metadata": {}, "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": "x"},
        {"cell_type": "code", "metadata": {}, "execution_count": 3,
         "outputs": [{"output_type": "stream", "name": "stdout", "text": "1\n"}], "source": "print(1)"},
    ]}
    assert stripped_problems(dirty) == ["cell 1 has outputs", "cell 1 has execution_count 3"]
    clean = {"metadata": {}, "cells": [{"cell_type": "code", "metadata": {}, "execution_count": None,
                                        "outputs": [], "source": "print(1)"}]}
    assert stripped_problems(clean) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_stripped(path: pathlib.Path) -> None:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    assert notebook.get("nbformat") == 4
    problems = stripped_problems(notebook)
    assert not problems, f"{path.name} is not stripped of outputs: {problems}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs(path: pathlib.Path, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")

    package_dir = pathlib.Path(swiftprune.__file__).resolve().parent
    # The kernel inherits this process's environment (monkeypatch undoes it).
    # An installed package is found by the kernel as it is; a source tree
    # (PYTHONPATH=python, possibly relative) goes first on the kernel's path.
    site_dirs = {str(pathlib.Path(d).resolve()) for d in site.getsitepackages() + [site.getusersitepackages()]}
    if str(package_dir.parent) not in site_dirs:
        paths = [str(package_dir.parent)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    monkeypatch.setenv("MPLBACKEND", "Agg")              # no display in CI
    monkeypatch.setenv("KERAS_BACKEND", "jax")           # the backend the test extra installs
    monkeypatch.setenv("SWIFTPRUNE_NUM_THREADS", "2")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    # Small matrices: OpenBLAS threads only spin on a busy 2-core machine
    # (scikit-learn's MLP training went from 2 s to 35 s with them).
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", os.environ.get("OPENBLAS_NUM_THREADS", "1"))

    notebook = nbformat.read(str(path), as_version=4)
    check = nbformat.v4.new_code_cell(
        "import pathlib, swiftprune\n"
        f"assert pathlib.Path(swiftprune.__file__).resolve().parent == pathlib.Path({str(package_dir)!r}), "
        "swiftprune.__file__\n")
    check.pop("id", None)
    notebook.cells.insert(0, check)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute(cwd=str(tmp_path))
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"{path.name}: a cell failed:\n{error}", pytrace=False)
