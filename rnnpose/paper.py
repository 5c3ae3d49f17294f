"""The paper's own numbers (``paper_numbers.json``, copied from the paper) and the
"paper vs reproduced" tables the book prints, with a verdict on each claim's direction."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import cache
from importlib import resources
from typing import Any

import pandas as pd


@cache
def paper_numbers() -> dict[str, Any]:
    """All numbers copied from the paper, keyed by table."""
    return json.loads(resources.files("rnnpose").joinpath("paper_numbers.json").read_text())


def paper_value(table: str, row: str, column: str) -> float:
    t = paper_numbers()[table]
    return float(t["rows"][row][t["columns"].index(column)])


def comparison(
    table: str,
    column: str,
    reproduced: dict[str, float],
    *,
    paper_rows: dict[str, str] | None = None,
    reproduced_label: str = "reproduced",
) -> pd.DataFrame:
    """One column of a paper table beside the reproduced numbers (rows in the paper's order).

    ``paper_rows`` maps a reproduced row name to the paper's row name where they differ.
    """
    paper_rows = paper_rows or {}
    records = []
    for name, value in reproduced.items():
        prow = paper_rows.get(name, name)
        try:
            pv = paper_value(table, prow, column)
        except (KeyError, ValueError):
            pv = float("nan")
        records.append({"setting": name, f"paper ({column})": pv, reproduced_label: value})
    return pd.DataFrame.from_records(records).set_index("setting")


def claim_rows(
    claims: Sequence[tuple[str, Callable[[dict[str, float]], bool]]],
    paper: dict[str, float],
    reproduced: dict[str, float],
) -> pd.DataFrame:
    """Evaluate each claim (text, predicate over a row->AP dict) on the paper's and our numbers.

    The verdict reads ``reproduced`` when the predicate holds on the reproduced numbers as it
    does on the paper's, ``not reproduced`` otherwise.
    """
    records = []
    for text, predicate in claims:
        holds_paper = bool(predicate(paper))
        holds_ours = bool(predicate(reproduced))
        verdict = "reproduced" if holds_ours == holds_paper else "not reproduced"
        records.append(
            {"claim": text, "in the paper": holds_paper, "in this reproduction": holds_ours,
             "verdict": verdict}
        )  # fmt: skip
    return pd.DataFrame.from_records(records).set_index("claim")
