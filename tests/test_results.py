"""The book's results file: tables recorded by notebooks, collected, written, read back, and
the published snapshot's guard (issue 13)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from rnnpose.io import DataError
from rnnpose.results import (
    MIME,
    collect,
    frame_from_json,
    frame_to_json,
    publish,
    read_results,  # fmt: skip
    write_results,
)


def _notebook(path, payloads):
    cells = [{"cell_type": "code", "source": "", "metadata": {}, "execution_count": 1,
              "outputs": [{"output_type": "display_data", "metadata": {}, "data": {MIME: p}}
                          for p in payloads]}]  # fmt: skip
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4,
                                "nbformat_minor": 5}))  # fmt: skip
    return path


def test_record_collect_write_read(tmp_path):
    frame = pd.DataFrame({"sparse": [1.5, float("nan")]}, index=["AE, SS", "Ours, SS"])
    p = {"name": "main_comparison", "numbers": frame_to_json(frame), "spread": 1.2}
    old = {"name": "main_comparison", "numbers": frame_to_json(frame * 0), "spread": 9.0}
    a = _notebook(tmp_path / "a.ipynb", [old])
    b = _notebook(tmp_path / "b.ipynb", [p, {"no name": 1}])
    tables = collect([a, b])
    assert list(tables) == ["main_comparison"]  # the later notebook wins; nameless ignored
    assert tables["main_comparison"]["spread"] == 1.2
    assert tables["main_comparison"]["notebook"] == "b"
    out = write_results(tmp_path / "r.json", tables, {"device": "cpu", "gpu": None})
    data = read_results(out)
    assert json.loads(out.read_text())["tables"]["main_comparison"]["numbers"]["data"] == [
        [1.5], [None]]  # NaN is written as null: strict JSON
    back = frame_from_json(data["tables"]["main_comparison"]["numbers"])
    assert back.loc["AE, SS", "sparse"] == 1.5 and pd.isna(back.loc["Ours, SS", "sparse"])


@pytest.mark.parametrize("content,field", [
    ([1, 2], "schema"), ({"schema": "other"}, "schema"),
    ({"schema": "rnnpose-results-1", "header": {}}, "tables"),
    ({"schema": "rnnpose-results-1", "header": {}, "tables": {"t": {"numbers": [1]}}},
     "tables.t.numbers"),
])  # fmt: skip
def test_a_bad_results_file_names_the_field(tmp_path, content, field):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(content))
    with pytest.raises(DataError, match=f"{path}: field '{field}"):
        read_results(path)
    with pytest.raises(DataError):  # nothing published from it
        publish(path, tmp_path / "pub")
    assert not (tmp_path / "pub").exists()


def test_book_refuses_a_cpu_snapshot_under_the_published_folder(capsys):
    from rnnpose.book import main
    from rnnpose.results import PUBLISHED

    assert main(["--profile", "tiny", "--device", "cpu", "--publish", str(PUBLISHED)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "long CPU build's" in err[0]


def test_the_published_folder_takes_the_long_cpu_build_unless_it_holds_a_cuda_one(tmp_path):
    from rnnpose.book import check_publishable
    from rnnpose.results import published

    check_publishable("long", "cpu", tmp_path)  # nothing published yet
    check_publishable("gpu", "cuda", tmp_path)
    for profile in ("cpu", "tiny", "gpu"):
        with pytest.raises(DataError, match="long CPU build"):
            check_publishable(profile, "cpu", tmp_path)
    write_results(tmp_path / "results.json", {}, {"device": "cpu", "profile": {
        "name": "long", "rmpp_epochs": 8, "n_train": 1200, "rmpp_batch_size": 2,
        "rmpp_seeds": 2}, "cpu": "AMD EPYC"})  # fmt: skip
    check_publishable("long", "cpu", tmp_path)  # a CPU snapshot may be replaced
    snap = published(tmp_path)
    assert snap.label == "published (long CPU build)"
    assert snap.budget().startswith("decoder 8 epochs x 1,200 images at batch 2 (4,800 Adam")
    write_results(tmp_path / "results.json", {}, {"device": "cuda:0", "gpu": "NVIDIA H100"})
    with pytest.raises(DataError, match="CUDA build, which takes precedence"):
        check_publishable("long", "cpu", tmp_path)
    check_publishable("gpu", "cuda", tmp_path)


def test_book_publish_copies_the_build_results(tmp_path, monkeypatch):
    """``rnnpose book --publish DIR`` writes DIR/results.json from the build's results file
    (the notebooks' execution is stubbed: this checks the command's path, not the book)."""
    import rnnpose.book as book

    built = tmp_path / "_build" / "results.json"
    monkeypatch.setattr(book, "execute_all", lambda params, force, only: {"01_x": 1.5})
    monkeypatch.setattr(book, "write_build_results", lambda params, seconds: write_results(
        built, {}, {"device": params["device"], "stage_seconds": seconds}))
    assert book.main(["--profile", "tiny", "--publish", str(tmp_path / "pub"), "--no-html"]) == 0
    data = read_results(tmp_path / "pub" / "results.json")
    assert data["header"] == {"device": "cpu", "stage_seconds": {"01_x": 1.5}}
