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


def test_record_hands_the_numbers_and_verdicts_to_the_build(tmp_path, monkeypatch):
    """``record`` (what a notebook calls) displays one payload of the results MIME type that
    ``collect`` reads back: the numbers cell for cell, every verdict row, the extra fields."""
    import IPython.display

    from rnnpose.results import record

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: shown.append(obj))
    numbers = pd.DataFrame({"sparse": [21.5, 30.25], "occluded": [float("nan"), 12.0]},
                           index=["AE, SS", "Ours, SS"])  # fmt: skip
    verdicts = pd.DataFrame({"claim": ["RMPP beats AE", "gain larger"],
                             "verdict": ["reproduced", "inconclusive"]}).set_index("claim")
    record("main_comparison", numbers, verdicts, spread=1.5)
    assert len(shown) == 1 and list(shown[0]) == [MIME]
    tables = collect([_notebook(tmp_path / "n.ipynb", [shown[0][MIME]])])
    table = tables["main_comparison"]
    assert table["numbers"] == {"index": ["AE, SS", "Ours, SS"], "columns": ["sparse", "occluded"],
                                "data": [[21.5, None], [30.25, 12.0]]}  # fmt: skip
    assert table["verdicts"] == [{"claim": "RMPP beats AE", "verdict": "reproduced"},
                                 {"claim": "gain larger", "verdict": "inconclusive"}]
    assert table["spread"] == 1.5
    data = read_results(write_results(tmp_path / "r.json", tables, {}))  # and it reads back
    back = frame_from_json(data["tables"]["main_comparison"]["numbers"])
    assert back.loc["Ours, SS", "sparse"] == 30.25


def _table(**changes):
    numbers = {"index": ["AE", "RMPP"], "columns": ["sparse", "occluded"],
               "data": [[1.0, 2.0], [3.0, None]]}  # fmt: skip
    table = {"numbers": numbers, "verdicts": [{"claim": "c", "verdict": "reproduced"}],
             "spread": 1.0, "notebook": "09_results"}  # fmt: skip
    for key, value in changes.items():
        if key in numbers:
            numbers[key] = value
        else:
            table[key] = value
    return table


GOOD_HEADER = {"profile": {"name": "gpu"}, "seed": 0, "device": "cuda", "gpu": "H200",
               "total_seconds": 60.0, "stage_seconds": {"01": 60.0}}  # fmt: skip


@pytest.mark.parametrize("header,table,field", [
    ({}, _table(data={"AE": [1.0, 2.0]}), "tables.t.numbers.data' must be a list of rows"),
    ({}, _table(data=[[1.0, 2.0]]), "tables.t.numbers.data' has 1 rows, 'index' 2"),
    ({}, _table(data=[[1.0, 2.0], [3.0]]), "tables.t.numbers.data' row 'RMPP' has 1 values"),
    ({}, _table(data=[[1.0, 2.0], [3.0, "4"]]), "row 'RMPP' holds a non-number ('4'"),
    ({}, _table(data=[[1.0, 2.0], [3.0, True]]), "row 'RMPP' holds a non-number (True"),
    ({}, _table(index=["AE", "AE"]), "tables.t.numbers.index' repeats a label"),
    ({}, _table(columns="sparse"), "tables.t.numbers.columns' must be a list of text labels"),
    ({}, _table(verdicts="reproduced"), "tables.t.verdicts' must be a list of objects"),
    ({}, _table(verdicts=[{"verdict": 1}]), "tables.t.verdicts[0].verdict' must be text"),
    ({}, _table(spread="1.0"), "tables.t.spread' must be a number or null"),
    ({}, "a table", "tables.t' must be an object"),
    ({"profile": "gpu"}, _table(), "header.profile' must be an object, got str"),
    ({"profile": {"name": 3}}, _table(), "header.profile.name' must be text"),
    ({"total_seconds": "60"}, _table(), "header.total_seconds' must be a number, got str"),
    ({"total_seconds": True}, _table(), "header.total_seconds' must be a number, got bool"),
    ({"stage_seconds": {"01": "1"}}, _table(), "header.stage_seconds' must map notebooks"),
    ({"seed": 1.5}, _table(), "header.seed' must be an integer"),
    ({"gpu": 5}, _table(), "header.gpu' must be text or null"),
])  # fmt: skip
def test_every_field_the_book_reads_is_checked(tmp_path, header, table, field):
    path = tmp_path / "results.json"
    good = {"schema": "rnnpose-results-1", "header": GOOD_HEADER, "tables": {"t": _table()}}
    path.write_text(json.dumps(good))
    read_results(path)  # the unspoiled file passes
    path.write_text(json.dumps({**good, "header": {**GOOD_HEADER, **header},
                                "tables": {"t": table}}))  # fmt: skip
    with pytest.raises(DataError) as err:
        read_results(path)
    message = str(err.value)
    assert len(message.splitlines()) == 1 and message.startswith(f"{path}: field '")
    assert field in message, message
    with pytest.raises(DataError):  # the published snapshot every chapter reads: the same
        from rnnpose.results import published

        published(tmp_path)
