"""Every notebook runs under papermill with ``profile="tiny"`` (issue: the book's notebooks
must stay runnable; a failing cell fails the test and names the notebook and the cell)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rnnpose.book import NotebookFailed, execute_notebook, notebook_paths

NOTEBOOKS = notebook_paths()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """One cache for all notebooks, so the tiny AE is trained once."""
    path = tmp_path_factory.mktemp("artifacts")
    old = os.environ.get("RNNPOSE_ARTIFACTS")
    os.environ["RNNPOSE_ARTIFACTS"] = str(path)
    yield path
    if old is None:
        del os.environ["RNNPOSE_ARTIFACTS"]
    else:
        os.environ["RNNPOSE_ARTIFACTS"] = old


def test_there_are_notebooks_with_parameters_cells():
    assert len(NOTEBOOKS) >= 9
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        assert nb["metadata"]["kernelspec"]["name"] == "python3", path.name
        tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, path.name
        for name in ("profile", "data_root", "device", "seed"):
            assert f"{name} = " in "".join(tagged[0]["source"]), (path.name, name)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_on_the_tiny_profile(path: Path, artifacts, tmp_path):
    out = tmp_path / path.name
    params = {"profile": "tiny", "data_root": "", "device": "cpu", "seed": 0, "widgets": False}
    assert execute_notebook(path, out, params, version="test")
    nb = json.loads(out.read_text())
    errors = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]  # fmt: skip
    assert not errors
    assert any("image/png" in o.get("data", {}) or "text/html" in o.get("data", {})
               for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []))


def test_a_failing_notebook_names_the_notebook_and_cell(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("profile = 'tiny'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("raise ValueError('boom')"),
    ])  # fmt: skip
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}  # fmt: skip
    src = tmp_path / "broken.ipynb"
    nbformat.write(nb, src)
    with pytest.raises(NotebookFailed, match=r"broken\.ipynb: cell \d+ raised ValueError: boom"):
        execute_notebook(src, tmp_path / "out.ipynb", {"profile": "tiny"})
    assert not (tmp_path / "out.ipynb").exists()
