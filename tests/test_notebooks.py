"""Every notebook runs under papermill with ``profile="tiny"`` (issue: the book's notebooks
must stay runnable; a failing cell fails the test and names the notebook and the cell)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from rnnpose.book import (
    NotebookFailed,
    execute_notebook,
    notebook_paths,
    shared_kernel,
    tag_for_book,
)

NOTEBOOKS = notebook_paths()

# one pytest-xdist worker runs this module (``make test``: ``--dist loadgroup``), so the tiny
# AE in the shared cache is trained once and one kernel serves every notebook
pytestmark = pytest.mark.xdist_group("notebooks")


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


@pytest.fixture(scope="module")
def kernel(artifacts):
    """One kernel for every notebook's run (started after RNNPOSE_ARTIFACTS is set, so it
    reads the shared cache): a kernel start and the imports are paid once, not ten times;
    each notebook still starts from an emptied namespace (``rnnpose.book.shared_kernel``)."""
    with shared_kernel() as km:
        yield km


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
def test_notebook_runs_on_the_tiny_profile(path: Path, artifacts, kernel, tmp_path):
    out = tmp_path / path.name
    params = {"profile": "tiny", "data_root": "", "device": "cpu", "seed": 0, "widgets": False}
    assert execute_notebook(path, out, params, version="test", kernel=kernel)
    nb = json.loads(out.read_text())
    errors = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]  # fmt: skip
    assert not errors
    # the rendered page shows the parameters once: papermill's cell, with the values used
    tags = [c.get("metadata", {}).get("tags", []) for c in nb["cells"]]
    assert [t for t in tags if "parameters" in t] == [["parameters", "remove-cell"]]
    injected = [t for t in tags if "injected-parameters" in t]
    assert injected == [["injected-parameters"]]
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


def test_the_shared_kernel_runs_each_notebook_in_an_empty_namespace(kernel, tmp_path):
    """What one notebook defines is gone when the next runs in the shared kernel, so a
    notebook that leans on another's variables fails here as it would alone."""
    import nbformat

    def notebook(name: str, *sources: str) -> Path:
        nb = nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_code_cell("profile = 'tiny'", metadata={"tags": ["parameters"]}),
            *(nbformat.v4.new_code_cell(src) for src in sources)])  # fmt: skip
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}  # fmt: skip
        nbformat.write(nb, tmp_path / name)
        return tmp_path / name

    first = notebook("first.ipynb", "leak = 41", "import os\nprint(os.getcwd())")
    assert execute_notebook(first, tmp_path / "o1.ipynb", {"profile": "tiny"}, kernel=kernel)
    cells = json.loads((tmp_path / "o1.ipynb").read_text())["cells"]
    printed = "".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []))
    assert printed.strip() == str(Path(__file__).resolve().parents[1])  # run in the repo root
    second = notebook("second.ipynb", "leak + 1")
    with pytest.raises(NotebookFailed, match=r"second\.ipynb: cell \d+ raised NameError"):
        execute_notebook(second, tmp_path / "o2.ipynb", {"profile": "tiny"}, kernel=kernel)


def _code(source: str, *tags: str) -> dict:
    return {"cell_type": "code", "metadata": {"tags": list(tags)} if tags else {},
            "source": source, "outputs": [], "execution_count": None}  # fmt: skip


def test_the_book_shows_the_injected_parameters_not_the_defaults():
    nb = {"cells": [_code('profile = "cpu"', "parameters"),
                    _code('# Parameters\nprofile = "tiny"\n', "injected-parameters"),
                    _code("x = 1"), _code("fig", "hide-input")]}  # fmt: skip
    tagged = tag_for_book(json.loads(json.dumps(nb)))
    assert [c["metadata"].get("tags") for c in tagged["cells"]] == [
        ["parameters", "remove-cell"], ["injected-parameters"], None, ["hide-input"]]
    assert tag_for_book(json.loads(json.dumps(tagged))) == tagged  # idempotent
    # nothing injected (no parameters passed): the defaults are what ran, so they stay
    alone = {"cells": [nb["cells"][0], nb["cells"][2]]}
    assert tag_for_book(json.loads(json.dumps(alone))) == alone


# presentation code: a hand-built matplotlib figure or widget plumbing must be folded; a
# folded cell must hold presentation code (figure, widgets, a DataFrame assembled by hand, a
# reader-facing table or figure of rnnpose.tables / rnnpose.charts / a plot_ helper) and not
# the chapter's set-up, so the package calls that teach the method stay visible. A cell whose
# output is prose (the chapter head, the glued headline) runs hidden (remove-input, issue 23).
MUST_FOLD = re.compile(r"\bFigure\(|\bipywidgets\b")
MAY_FOLD = re.compile(r"\bFigure\(|\bipywidgets\b|\bpd\.(DataFrame|concat)\(|\btables\.\w+\("
                      r"|_figure\(|\bplot_\w+\(|\bsetting_tables\(|\bcurves\.plot\(")
MAY_HIDE = re.compile(r"^chapter_head\(\)$|\bMarkdown\((curves\.)?headline\(")
HIDING = {"hide-input", "hide-cell", "remove-input", "remove-cell"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_plotting_code_is_folded_and_the_method_stays_visible(path: Path):
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    for k, cell in enumerate(cells):
        source, tags = "".join(cell["source"]), set(cell.get("metadata", {}).get("tags", []))
        where = f"{path.name}, code cell {k + 1}: {source.splitlines()[0]!r}"
        if MUST_FOLD.search(source):
            assert "hide-input" in tags, f"{where}: plotting code without hide-input"
        if tags & HIDING == {"remove-input"}:
            assert MAY_HIDE.search(source.strip()), f"{where}: hides code that is not prose"
        elif tags & HIDING:
            assert tags & HIDING == {"hide-input"}, f"{where}: fold the input only"
            assert MAY_FOLD.search(source), f"{where}: folds code that draws nothing"
            assert "Experiment(" not in source, f"{where}: folds the chapter's set-up"
    assert not any("injected-parameters" in c.get("metadata", {}).get("tags", [])
                   for c in cells), f"{path.name}: holds an executed copy's injected cell"


def test_a_new_record_or_snapshot_re_executes_the_chapters(tmp_path, monkeypatch):
    """The executed copies' key covers what the chapters read besides the package: a new
    diagnosis record or published snapshot is a new key (a cached rebuild runs them again)."""
    import rnnpose.book as book

    (tmp_path / "rnnpose").mkdir()
    (tmp_path / "rnnpose" / "m.py").write_text("x = 1\n")
    monkeypatch.setattr(book, "ROOT", tmp_path)
    first = book.code_version()
    results = tmp_path / "experiments" / "results"
    results.mkdir(parents=True)
    (results / "cpu-main-s5.json").write_text("{}")
    second = book.code_version()
    (results / "epyc").mkdir()
    (results / "epyc" / "long-emit-s0.json").write_text("{}")  # a campaign's own folder
    campaign = book.code_version()
    published = tmp_path / "book" / "published"
    published.mkdir(parents=True)
    (published / "results.json").write_text("{}")
    third = book.code_version()
    (published / "results.json").write_text('{"tables": {}}')
    fourth = book.code_version()
    assert len({first, second, campaign, third, fourth}) == 5
    (tmp_path / "notes.md").write_text("not read by a chapter")
    assert book.code_version() == fourth
