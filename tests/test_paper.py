"""The paper's numbers file and the paper-vs-reproduced helpers."""

import math

import pandas as pd

from rnnpose.paper import claim_rows, paper_numbers, paper_value, side_by_side


def test_paper_numbers_match_the_paper_tables():
    assert paper_value("table1_coco", "Ours single scale (BU)", "AP") == 60.1
    assert paper_value("table2_ochuman", "AE, SS", "val") == 32.1
    assert paper_value("table6_T", "1", "COCO") == 36.6
    for name, table in paper_numbers().items():
        if name.startswith("table"):
            assert all(len(v) == len(table["columns"]) for v in table["rows"].values())


def test_comparison_and_verdicts():
    ours = pd.DataFrame({"sparse": [10.0, 12.0, 1.0]}, index=["0", "2", "9"])
    df = side_by_side("table5_loop", ours, {"sparse": "COCO"})
    assert df.loc["2", "paper COCO"] == 58.7 and df.loc["2", "reproduced sparse"] == 12.0
    assert math.isnan(df.loc["9", "paper COCO"])
    claims = [("loop helps", lambda r: r["2"] > r["0"]), ("loop hurts", lambda r: r["2"] < r["0"])]
    v = claim_rows(claims, {"0": 54.6, "2": 58.7}, {"0": 12.0, "2": 11.0})
    assert list(v["verdict"]) == ["not reproduced", "not reproduced"]
    v = claim_rows(claims, {"0": 54.6, "2": 58.7}, {"0": 10.0, "2": 12.0})
    assert list(v["verdict"]) == ["reproduced", "reproduced"]


def test_every_claim_holds_on_the_papers_own_coco_numbers():
    from rnnpose.paper import CLAIMS, column, verdict_table

    for table, claims in CLAIMS.items():
        col = "AP" if table == "table1_coco" else ("val" if table == "table2_ochuman" else "COCO")
        paper = column(table, col)
        v = verdict_table(table, col, paper)
        assert list(v["verdict"]) == ["reproduced"] * len(claims), table
        assert all(pred(paper) for _, pred in claims), table


def test_a_tie_is_inconclusive():
    claims = [("loop helps", lambda r: r["2"] > r["0"])]
    v = claim_rows(claims, {"0": 54.6, "2": 58.7}, {"0": 0.0, "2": 0.0})
    assert list(v["verdict"]) == ["inconclusive"]
