"""The paper's own numbers (``paper_numbers.json``, copied from the paper) and the
"paper vs reproduced" tables the book prints, with a verdict on each claim's direction."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import cache
from importlib import resources
from typing import Any

import pandas as pd

#: Reproduced rows closer than this (AP points) make a claim's verdict "inconclusive".
INCONCLUSIVE_SPREAD = 0.5


@cache
def paper_numbers() -> dict[str, Any]:
    """All numbers copied from the paper, keyed by table."""
    return json.loads(resources.files("rnnpose").joinpath("paper_numbers.json").read_text())


def paper_value(table: str, row: str, column: str) -> float:
    t = paper_numbers()[table]
    return float(t["rows"][row][t["columns"].index(column)])


def claim_rows(
    claims: Sequence[tuple[str, Callable[[dict[str, float]], bool]]],
    paper: dict[str, float],
    reproduced: dict[str, float],
) -> pd.DataFrame:
    """Evaluate each claim (text, predicate over a row->AP dict) on the paper's and our numbers.

    The verdict reads ``reproduced`` when the predicate holds on the reproduced numbers as it
    does on the paper's, ``not reproduced`` otherwise, and ``inconclusive`` when all the
    reproduced numbers lie within ``INCONCLUSIVE_SPREAD`` AP of each other (a tie decides
    nothing).
    """
    spread = max(reproduced.values()) - min(reproduced.values()) if reproduced else 0.0
    records = []
    for text, predicate in claims:
        holds_paper = bool(predicate(paper))
        holds_ours = bool(predicate(reproduced))
        verdict = "reproduced" if holds_ours == holds_paper else "not reproduced"
        if spread < INCONCLUSIVE_SPREAD:
            verdict = "inconclusive"
        records.append(
            {"claim": text, "in the paper": holds_paper, "in this reproduction": holds_ours,
             "verdict": verdict}
        )  # fmt: skip
    return pd.DataFrame.from_records(records).set_index("claim")


def column(table: str, col: str) -> dict[str, float]:
    """One column of a paper table as ``{row: value}``."""
    t = paper_numbers()[table]
    k = t["columns"].index(col)
    return {row: float(v[k]) for row, v in t["rows"].items()}


def _others(r: dict[str, float], key: str) -> list[float]:
    return [v for k, v in r.items() if k != key]


#: The claims each table supports, as predicates over ``{row: AP}`` with the paper's row names.
#: A verdict compares the predicate on the paper's numbers with the same on the reproduction.
CLAIMS: dict[str, list[tuple[str, Callable[[dict[str, float]], bool]]]] = {
    "table1_coco": [
        ("RMPP beats AE's grouping at single scale",
         lambda r: r["Ours single scale (BU)"] > r["AE single scale (BU)"]),
    ],
    "table2_ochuman": [
        ("RMPP beats AE's grouping at single scale", lambda r: r["Ours, SS"] > r["AE, SS"]),
    ],
    "table3_ordering": [
        ("the learned order is the best LSTM2 input order",
         lambda r: r["learned"] >= max(_others(r, "learned"))),
        ("a random order is within 1 AP of the learned one",
         lambda r: abs(r["learned"] - r["random"]) <= 1.0),
        ("inverse and canonical orders are the two worst",
         lambda r: max(r["inverse"], r["canonical"])
         < min(r["learned"], r["random"], r["confidence"])),
    ],
    "table4_loss_config": [
        ("(a, a') is the best loss configuration", lambda r: r["aa'"] >= max(_others(r, "aa'"))),
        ("(b, b') is the worst loss configuration", lambda r: r["bb'"] <= min(_others(r, "bb'"))),
    ],
    "table5_loop": [
        ("the feedback loop (2 passes) beats no loop", lambda r: r["2"] > r["0"]),
    ],
    "table6_T": [
        ("T = 1 is far worse (> 5 AP) than every T >= 2",
         lambda r: r["1"] < min(_others(r, "1")) - 5.0),
    ],
    "table7_lstm2_depth": [
        ("no consistent winner between learned and random order across depths",
         lambda r: len({r[f"{d}-learned"] > r[f"{d}-random"] for d in (2, 3, 4)}) == 2),
    ],
}  # fmt: skip


def verdict_table(table: str, col: str, reproduced: dict[str, float]) -> pd.DataFrame:
    """The claims of ``table`` judged on its column ``col`` and on the reproduced numbers."""
    return claim_rows(CLAIMS[table], column(table, col), reproduced)


#: Which paper column each evaluation split stands for.
PAPER_COLUMN = {"sparse": "COCO", "occluded": "OC-val", "occluded_test": "OC-test"}


def side_by_side(table: str, reproduced: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """Paper and reproduced numbers next to each other, rows in the reproduced order.

    ``columns`` maps a reproduced column (a split label) to the paper's column it stands for.
    """
    t = paper_numbers()[table]
    out = {}
    for ours, theirs in columns.items():
        k = t["columns"].index(theirs)
        out[f"paper {theirs}"] = [float(t["rows"][r][k]) if r in t["rows"] else float("nan")
                                  for r in reproduced.index]  # fmt: skip
        out[f"reproduced {ours}"] = list(reproduced[ours])
    return pd.DataFrame(out, index=reproduced.index).round(1)


def verdicts(table: str, reproduced: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """Every claim of ``table`` judged per evaluation split (one block of rows per split)."""
    blocks = []
    for ours, theirs in columns.items():
        v = verdict_table(table, theirs, reproduced[ours].to_dict()).reset_index()
        v.insert(1, "paper column", theirs)
        v.insert(2, "reproduced on", ours)
        blocks.append(v)
    return pd.concat(blocks).set_index(["claim", "paper column", "reproduced on"])
