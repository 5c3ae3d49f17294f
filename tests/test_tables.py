"""The book as a reader sees it (issue 23): tables without NaN, empty columns dropped with a
line saying why, crowding buckets that split each split, the headline from a build's numbers,
and papermill kernels that do not warn about TCP."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from rnnpose import charts, tables
from rnnpose.paper import headline, main_claims, side_by_side, verdicts
from tests.test_evaluate import FILES, gt_as_results

OURS = pd.DataFrame({"sparse": [10.0, 12.0, 11.0], "occluded": [9.0, 8.0, float("nan")]},
                    index=["0", "2", "3"])  # fmt: skip
COLS = {"sparse": "COCO", "occluded": "OC-val"}


def test_cells_never_show_nan():
    assert [tables.cell(v) for v in (float("nan"), None, "", pd.NA, 1.25, True, "x")] == \
        ["–", "–", "–", "–", "1.2", "yes", "x"]  # fmt: skip
    assert tables.cell(0.126, digits=2) == "0.13"


def test_comparison_drops_the_empty_published_column_and_says_why():
    side = side_by_side("table5_loop", OURS, COLS, published=None)
    assert side["published sparse"].isna().all()  # the data function keeps it, empty
    t = tables.comparison(side, COLS)
    assert list(t.frame.columns) == [("sparse (COCO)", "paper"), ("sparse (COCO)", "this build"),
                                     ("occluded (OC-val)", "paper"),
                                     ("occluded (OC-val)", "this build")]  # fmt: skip
    assert t.frame.loc["0", ("sparse (COCO)", "paper")] == "54.6"  # the paper's loop-0 COCO AP
    assert t.frame.loc["3", ("occluded (OC-val)", "this build")] == "–"  # a missing value
    assert "published" in t.note and "no published run yet" in t.note
    html = t._repr_html_()
    assert "NaN" not in html and "nan" not in html
    assert html.startswith('<p class="rnnpose-note">No <em>published</em> columns')


def test_comparison_keeps_a_published_column_with_values():
    side = side_by_side("table5_loop", OURS, COLS, published=None)
    side["published sparse"] = [1.0, float("nan"), 3.0]
    t = tables.comparison(side, COLS)
    assert ("sparse (COCO)", "published") in t.frame.columns
    assert ("occluded (OC-val)", "published") not in t.frame.columns  # all missing there
    assert list(t.frame[("sparse (COCO)", "published")]) == ["1.0", "–", "3.0"]
    # sources in the order paper | published | this build within each column
    assert [c[1] for c in t.frame.columns[:3]] == ["paper", "published", "this build"]


def test_a_new_source_needs_one_entry(monkeypatch):
    frame = pd.DataFrame({"paper AP": [1.0], "published (long) AP": [2.0],
                          "published AP": [3.0], "this build AP": [4.0]})  # fmt: skip
    monkeypatch.setattr(tables, "SOURCES", ("paper", "published", "published (long)",
                                            "this build"))  # fmt: skip
    out = tables.by_source(frame, tables.SOURCES)
    assert list(out.columns) == [("AP", "paper"), ("AP", "published"),
                                 ("AP", "published (long)"), ("AP", "this build")]


def test_constant_columns_are_left_out_with_a_line():
    t1 = pd.DataFrame({"AP": [1.0, 2.0], "APM": [-1.0, -1.0], "APL": [-1.0, 3.0]},
                      index=["AE single scale (BU)", "Ours single scale (BU)"])  # fmt: skip
    t = tables.comparison(side_by_side("table1_coco", t1, {c: c for c in t1}, published=None),
                          constant={"APM": -1.0, "APL": -1.0})  # fmt: skip
    assert sorted({c[0] for c in t.frame.columns}) == ["AP", "APL"]  # APL has a real value
    assert t.note.startswith("Left out: APM")


def test_verdict_grid_rows_are_claims_columns_are_splits():
    v = verdicts("table5_loop", pd.DataFrame({"sparse": [10.0, 12.0, 11.0],
                                              "occluded": [9.0, 8.0, 7.5]}, index=["0", "2", "3"]),
                 COLS, published=None, record=False)  # fmt: skip
    g = tables.verdict_grid(v)
    assert list(g.frame.index) == ["the feedback loop (2 passes) beats no loop"]
    row = g.frame.iloc[0]
    assert row[("sparse (COCO)", "paper")] == "yes"  # 58.7 > 54.6 in the paper
    assert row[("sparse (COCO)", "this build")] == "reproduced"  # 12 > 10
    assert row[("occluded (OC-val)", "this build")] == "not reproduced"  # 8 < 9
    assert not any(c[1] == "published" for c in g.frame.columns)
    assert "published" in g.note


def test_folded_table_is_a_details_element():
    html = tables.show(pd.DataFrame({"a": [1.0]}), fold="the numbers")._repr_html_()
    assert html.startswith('<details class="rnnpose-fold"><summary>the numbers</summary>')


def test_buckets_split_each_split():
    # by people: one, two, three, four-five, six or more
    got = charts.people_buckets({1: 1, 2: 2, 3: 4, 4: 5, 5: 7, 6: 0})
    assert got == {"1": [1], "2": [2], "3": [], "4-5": [3, 4], "6+": [5]}
    # by largest pair IoU: "0" only for no overlap; 0.05 falls in 0.05-0.1; the last open
    got = charts.iou_buckets({1: 0.0, 2: 0.03, 3: 0.05, 4: 0.55, 5: 0.7, 6: 0.95})
    assert got["0"] == [1] and got["0-0.05"] == [2] and got["0.05-0.1"] == [3]
    assert got["0.5-0.6"] == [4] and got[">=0.7"] == [5, 6]
    assert sum(map(len, got.values())) == 6  # every image in exactly one bucket


def test_crowding_ap_on_real_samples(real_samples):
    gt = real_samples / FILES[1]  # 3 OCHuman images: 1 person, and two overlapping pairs
    res = gt_as_results(gt)
    by_people = charts.crowding_ap(gt, res, "people")
    by_iou = charts.crowding_ap(gt, res, "iou")
    assert by_iou["images"].to_dict() == {"0": 1, "0.5-0.6": 1, ">=0.7": 1}  # 0.59, 0.78
    assert by_people["images"].sum() == 3
    assert list(by_iou["AP"]) == pytest.approx([100.0] * 3)  # the ground truth as results: perfect
    fig = charts.crowding_figure({("AE", "occluded", "people"): by_people,
                                  ("AE", "occluded", "iou"): by_iou})  # fmt: skip
    assert len(fig.axes) == 2


def test_main_comparison_figure_has_the_spread_as_error_bars():
    ap = pd.DataFrame({"sparse": {"AE, SS": 20.0, "Ours, SS": 11.0},
                       "occluded": {"AE, SS": 16.0, "Ours, SS": 10.0}})  # fmt: skip
    fig = charts.main_comparison_figure(ap, 1.7)
    ax = fig.axes[0]
    bars = [c for c in ax.containers if c.__class__.__name__ == "BarContainer"]
    assert [round(b.get_height(), 1) for b in bars[1]] == [11.0, 10.0]
    assert bars[0].errorbar is None and bars[1].errorbar is not None
    lines = bars[1].errorbar.lines[2][0].get_segments()
    assert [round(s[1][1] - s[0][1], 1) for s in lines] == [3.4, 3.4]  # +-1.7


def test_made_on_writes_the_machine_into_the_saved_image():
    """The machine's line lies below the axes and still lands in the image the inline backend
    saves (a tight bounding box): the figure grows downwards to hold it."""
    import io

    from PIL import Image

    def png_height(fig) -> int:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight", dpi=50)
        return Image.open(buf).size[1]

    ap = pd.DataFrame({"sparse": {"AE, SS": 20.0, "Ours, SS": 11.0}})
    plain = png_height(charts.main_comparison_figure(ap, 1.7))
    fig = charts.made_on(charts.main_comparison_figure(ap, 1.7), "this build: AMD EPYC")
    assert [t.get_text() for t in fig.texts] == ["this build: AMD EPYC"]
    assert fig.texts[0].get_position()[1] < 0  # under the axes, not over them
    assert png_height(fig) > plain


@pytest.mark.parametrize("name", ["09_results", "10_diagnosis"])
def test_every_figure_of_chapters_9_and_10_names_its_machine(name):
    """Issue 22: results differ by CPU model, so each figure of the results chapters says
    where its numbers were made (``charts.made_on``)."""
    from rnnpose.book import NOTEBOOKS

    cells = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())["cells"]
    drawn = [src for src in ("".join(c["source"]) for c in cells if c["cell_type"] == "code")
             if any(k in src for k in ("_figure(", "plot_", "curves.plot(", "Figure("))
             and "prediction_figure(" not in src]  # fmt: skip
    assert len(drawn) >= 3
    for src in drawn:
        assert "made_on(" in src, src.splitlines()[0]


def test_headline_from_the_numbers():
    ap = pd.DataFrame({"sparse": {"AE, SS": 20.0, "Ours, SS": 11.1},
                       "occluded": {"AE, SS": 16.4, "Ours, SS": 10.0}})  # fmt: skip
    claims = main_claims(ap, spread=1.7)
    counts = tables.count([*claims["verdict"], "reproduced", "inconclusive", "other"])
    assert counts == {"reproduced": 1, "not reproduced": 3, "inconclusive": 1}
    text = headline(claims, 1.7, counts)
    assert "on COCO: **not reproduced** (this build -8.9 AP; paper +3.5 AP)" in text
    assert "spread of 1.7 AP" in text
    assert "Of the 5 verdicts in the book" in text and "1 inconclusive" in text


def test_papermill_kernel_does_not_warn_about_tcp(tmp_path, capfd):
    from rnnpose.book import execute_notebook

    nb = {"cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "id": "a",
                     "execution_count": None, "outputs": [], "source": ["x = 1"]},
                    {"cell_type": "code", "metadata": {}, "id": "b", "execution_count": None,
                     "outputs": [], "source": ["print(x + 1)"]}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                      "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}  # fmt: skip
    src, out = tmp_path / "n.ipynb", tmp_path / "out.ipynb"
    src.write_text(json.dumps(nb))
    execute_notebook(src, out, {"x": 41}, force=True)
    ran = json.loads(out.read_text())["cells"][-1]["outputs"][0]["text"]
    assert "".join(ran).strip() == "42"
    assert "without encryption" not in capfd.readouterr().err


def test_glue_markdown_is_myst_nb_glue(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    seen = []
    shell.display_pub.publish = lambda data, metadata=None, **kw: seen.append((data, metadata))
    from rnnpose.results import GLUE_PREFIX, glue_markdown

    glue_markdown("headline", "**x** from `y`:\n\n* one")
    data, meta = seen[-1]
    text = "**x** from `y`:\n\n* one"
    assert data == {GLUE_PREFIX + "text/markdown": text, GLUE_PREFIX + "text/plain": text,
                    GLUE_PREFIX + "text/html": "<p><strong>x</strong> from <code>y</code>:</p>\n"
                                               "<ul>\n<li>one</li>\n</ul>\n"}  # fmt: skip
    assert meta == {"scrapbook": {"name": "headline", "mime_prefix": GLUE_PREFIX}}


def test_a_table_of_many_columns_is_set_in_smaller_type():
    """Paper | published | this build for two splits is six columns: too wide for the
    book's text column at the normal size (browser_check measures it), so it is set smaller."""
    narrow = tables.show(pd.DataFrame({c: [1.0] for c in "abcde"}))._repr_html_()
    wide = tables.show(pd.DataFrame({c: [1.0] for c in "abcdef"}))._repr_html_()
    assert "font-size" not in narrow
    assert wide.startswith(f'<table style="{tables.WIDE_STYLE}" ') and "font-size: 0.72em" in wide
