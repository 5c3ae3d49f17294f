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
    spread: float = INCONCLUSIVE_SPREAD,
) -> pd.DataFrame:
    """Evaluate each claim (text, predicate over a row->AP dict) on the paper's and our numbers.

    The verdict reads ``reproduced`` when the predicate holds on the reproduced numbers as it
    does on the paper's, ``not reproduced`` otherwise, and ``inconclusive`` when all the
    reproduced numbers lie within ``spread`` AP of each other (the book passes the measured
    seed-to-seed spread of its runs), or within ``INCONCLUSIVE_SPREAD`` whatever the spread:
    a tie decides nothing.
    """
    rng = max(reproduced.values()) - min(reproduced.values()) if reproduced else 0.0
    records = []
    for text, predicate in claims:
        holds_paper = bool(predicate(paper))
        holds_ours = bool(predicate(reproduced))
        verdict = "reproduced" if holds_ours == holds_paper else "not reproduced"
        if rng < max(spread, INCONCLUSIVE_SPREAD):  # a tie, or closer than the noise
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


_DEFAULT = object()


def _snapshot(published: Any) -> Any:
    """``published``: a :class:`rnnpose.results.Snapshot`, None (no published column values),
    or left out: the repository's ``book/published`` snapshot if there is one."""
    if published is _DEFAULT:
        from rnnpose.results import published as load_published

        return load_published()
    return published


def _published_frame(snapshot: Any, table: str) -> pd.DataFrame | None:
    return None if snapshot is None else snapshot.numbers(table)


def side_by_side(table: str, reproduced: pd.DataFrame, columns: dict[str, str],
                 published: Any = _DEFAULT) -> pd.DataFrame:  # fmt: skip
    """Paper | published run | this build, per column, rows in the reproduced order.

    ``columns`` maps a reproduced column (a split label or a metric) to the paper's column it
    stands for. The published column is empty (NaN) where the snapshot lacks the table or the
    row, or when there is no snapshot (``published``: see :func:`_snapshot`).
    """
    t = paper_numbers()[table]
    pub = _published_frame(_snapshot(published), table)
    out = {}
    for ours, theirs in columns.items():
        k = t["columns"].index(theirs)
        out[f"paper {theirs}"] = [float(t["rows"][r][k]) if r in t["rows"] else float("nan")
                                  for r in reproduced.index]  # fmt: skip
        out[f"published {ours}"] = [
            float(pub.loc[r, ours]) if pub is not None and r in pub.index and ours in pub.columns
            else float("nan") for r in reproduced.index
        ]  # fmt: skip
        out[f"this build {ours}"] = list(reproduced[ours])
    return pd.DataFrame(out, index=reproduced.index).round(1)


def verdicts(table: str, reproduced: pd.DataFrame, columns: dict[str, str],
             published: Any = _DEFAULT, spread: float = INCONCLUSIVE_SPREAD,
             record: bool = True) -> pd.DataFrame:  # fmt: skip
    """Every claim of ``table`` judged per evaluation split (one block of rows per split), on
    this build's numbers and, in a second column, on the published run's (blank without one).
    ``spread``: rows closer than this decide nothing (``inconclusive``). ``record``: hand the
    numbers and verdicts to the book's results file (:func:`rnnpose.results.record`)."""
    pub = _published_frame(_snapshot(published), table)
    blocks = []
    for ours, theirs in columns.items():
        v = claim_rows(CLAIMS[table], column(table, theirs), reproduced[ours].to_dict(),
                       spread=spread).reset_index()  # fmt: skip
        v.insert(1, "paper column", theirs)
        v.insert(2, "reproduced on", ours)
        if pub is not None and ours in pub.columns and set(reproduced.index) <= set(pub.index):
            pv = claim_rows(CLAIMS[table], column(table, theirs), pub[ours].to_dict(),
                            spread=spread)  # fmt: skip
            v["verdict (published)"] = list(pv["verdict"])
        else:
            v["verdict (published)"] = ""
        blocks.append(v)
    out = pd.concat(blocks).set_index(["claim", "paper column", "reproduced on"])
    if record:
        from rnnpose.results import record as record_table

        record_table(table, reproduced, out, spread=spread)
    return out


def main_claims(ap: pd.DataFrame, spread: float = INCONCLUSIVE_SPREAD,
                published: pd.DataFrame | None = None) -> pd.DataFrame:  # fmt: skip
    """The claims of tables 1 and 2 on ``ap`` (rows ``AE, SS`` and ``Ours, SS`` at least,
    columns ``sparse`` and ``occluded``): RMPP beats AE's grouping on each dataset, by more on
    OCHuman. A gain within ``spread`` AP (the measured seed-to-seed spread) is
    ``inconclusive``; ``published``: the same frame from the published run (a second verdict
    column, blank without it)."""
    gain_paper = {"COCO": column("table1_coco", "AP")["Ours single scale (BU)"]
                  - column("table1_coco", "AP")["AE single scale (BU)"],
                  "OCHuman": column("table2_ochuman", "val")["Ours, SS"]
                  - column("table2_ochuman", "val")["AE, SS"]}  # fmt: skip

    def gains(frame: pd.DataFrame) -> dict[str, float]:
        return {d: float(frame[s]["Ours, SS"] - frame[s]["AE, SS"])
                for d, s in (("COCO", "sparse"), ("OCHuman", "occluded"))}  # fmt: skip

    spread = max(spread, INCONCLUSIVE_SPREAD)

    def judge(g: dict[str, float]) -> list[str]:
        def beats(x: float) -> str:
            return "inconclusive" if abs(x) < spread else (
                "reproduced" if x > 0 else "not reproduced")  # fmt: skip

        diff = g["OCHuman"] - g["COCO"]
        larger = ("inconclusive" if abs(diff) < spread and g["OCHuman"] > -spread else
                  "reproduced" if g["OCHuman"] > max(g["COCO"], 0) else "not reproduced")
        return [beats(g["COCO"]), beats(g["OCHuman"]), larger]

    ours = gains(ap)
    rows = pd.DataFrame({
        "claim": ["RMPP beats AE's grouping at single scale on COCO",
                  "RMPP beats AE's grouping at single scale on OCHuman",
                  "the gain is larger on OCHuman than on COCO"],
        "paper": [f"{gain_paper['COCO']:+.1f} AP", f"{gain_paper['OCHuman']:+.1f} AP",
                  f"{gain_paper['OCHuman']:+.1f} vs {gain_paper['COCO']:+.1f}"],
        "this build": [f"{ours['COCO']:+.1f} AP", f"{ours['OCHuman']:+.1f} AP",
                       f"{ours['OCHuman']:+.1f} vs {ours['COCO']:+.1f}"],
        "verdict": judge(ours),
    })  # fmt: skip
    if published is not None:
        pub = gains(published)
        rows.insert(2, "published", [f"{pub['COCO']:+.1f} AP", f"{pub['OCHuman']:+.1f} AP",
                                     f"{pub['OCHuman']:+.1f} vs {pub['COCO']:+.1f}"])
        rows["verdict (published)"] = judge(pub)
    else:
        rows.insert(2, "published", "")
        rows["verdict (published)"] = ""
    return rows.set_index("claim")


def headline(claims: pd.DataFrame, spread: float, counts: dict[str, int],
             build: str = "this build") -> str:  # fmt: skip
    """The book's result in a few lines of Markdown, from a build's own numbers: each main
    claim (:func:`main_claims`) with its verdict, this build's gain against the paper's, and
    the seed-to-seed spread; then how many of the book's judged claims (claim x split, the
    main ones included) were reproduced, not reproduced or inconclusive (``counts``)."""
    lines = [f"**What {build} found.** The paper's main claims, judged on this build's "
             f"numbers (a gain inside the decoder's seed-to-seed spread of {spread:.1f} AP "
             f"is inconclusive):", ""]  # fmt: skip
    for claim, row in claims.iterrows():
        lines.append(f"* {claim}: **{row['verdict']}** (this build {row['this build']}; "
                     f"paper {row['paper']})")  # fmt: skip
    total = sum(counts.values())
    lines += ["", f"Of the {total} verdicts in the book (each claim judged on each split): "
              f"{counts.get('reproduced', 0)} reproduced, "
              f"{counts.get('not reproduced', 0)} not reproduced, "
              f"{counts.get('inconclusive', 0)} inconclusive."]  # fmt: skip
    return "\n".join(lines)
