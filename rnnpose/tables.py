"""Tables as a reader sees them: narrow, no NaN, the long ones folded.

The book's data functions (:func:`rnnpose.paper.side_by_side`, :func:`rnnpose.paper.verdicts`,
:func:`rnnpose.paper.main_claims`, :func:`rnnpose.diagnosis.summary_table`) return complete
frames, missing values included; this module turns them into what a chapter prints:

* a missing value reads :data:`MISSING` ("–"), never NaN;
* a column that carries nothing on the data at hand (every cell missing) is dropped, and the
  table is preceded by one line saying which and why;
* the side-by-side columns ``"<source> <column>"`` become two header rows (column, source), so
  a header is one short word and a table fits a 1300-pixel window;
* a table may be folded behind a click (``<details>``), for tables that follow a figure.

Sources are matched against :data:`SOURCES`, longest first: a new kind of column (say a
second published run, ``"published (long) sparse"``) needs one entry there.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from typing import Any

import pandas as pd

#: What a missing cell shows.
MISSING = "–"

#: The column sources of the side-by-side tables, in the order they are shown.
SOURCES: tuple[str, ...] = ("paper", "published", "this build")

#: Why a source column can be empty (the note line names it).
WHY_EMPTY = {
    "published": "no published run yet (the long CPU build or a CUDA build, `book/published/`)",
}


def is_missing(value: Any) -> bool:
    """None, NaN, an empty string or pandas' NA."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def cell(value: Any, digits: int = 1) -> str:
    """One cell as text: numbers rounded to ``digits``, booleans as yes/no, missing as "–"."""
    if is_missing(value):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def readable(frame: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """``frame`` with every cell as text (:func:`cell`): no NaN can reach the page."""
    return frame.apply(lambda col: col.map(lambda v: cell(v, digits)))


def _empty_columns(frame: pd.DataFrame) -> list[Any]:
    return [c for c in frame.columns if all(is_missing(v) for v in frame[c])]


def drop_empty(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[Any]]:
    """``frame`` without the columns whose every cell is missing, and the dropped columns."""
    empty = _empty_columns(frame)
    return frame.drop(columns=empty), empty


def split_source(name: str, sources: Sequence[str] = SOURCES) -> tuple[str, str] | None:
    """``"published sparse"`` -> ``("sparse", "published")``; None if no source matches."""
    for source in sorted(sources, key=len, reverse=True):
        if name.startswith(source + " "):
            return name[len(source) + 1:], source
    return None


def by_source(frame: pd.DataFrame, sources: Sequence[str] = SOURCES) -> pd.DataFrame:
    """Columns ``"<source> <column>"`` as two header rows ``(column, source)``, columns in
    their first order and sources in the order of ``sources``. Other columns are kept with an
    empty source."""
    keys = []
    for name in frame.columns:
        parsed = split_source(str(name), sources)
        keys.append(parsed if parsed else (str(name), ""))
    out = frame.copy()
    out.columns = pd.MultiIndex.from_tuples(keys)
    groups = list(dict.fromkeys(k[0] for k in keys))
    rank = {s: i for i, s in enumerate(["", *sources])}
    order = sorted(keys, key=lambda k: (groups.index(k[0]), rank.get(k[1], len(rank))))
    return out[order]


def source_of(column: Any, sources: Sequence[str] = SOURCES) -> str | None:
    """The source a column belongs to: ``("sparse", "published")``, ``"published"`` and
    ``"verdict (published)"`` all belong to ``published``; None for other columns."""
    if isinstance(column, tuple):
        return column[1] or None
    name = str(column)
    inner = re.fullmatch(r".*\((.+)\)", name)
    for candidate in (name, inner.group(1) if inner else None):
        if candidate in sources:
            return candidate
    parsed = split_source(name, sources)
    return parsed[1] if parsed else None


def _label(column: Any) -> str:
    return " ".join(str(c) for c in column if c) if isinstance(column, tuple) else str(column)


def _note(dropped: list[Any], reasons: dict[str, str]) -> str:
    """One line naming the dropped columns: by source where they have one, else by name."""
    if not dropped:
        return ""
    sources = list(dict.fromkeys(s for c in dropped if (s := source_of(c))))
    plain = [_label(c) for c in dropped if not source_of(c)]
    parts = [f"no *{s}* columns: {reasons.get(s, 'no values')}" for s in sources]
    if plain:
        parts.append(f"left out for want of values: {', '.join(plain)}")
    line = "; ".join(parts) + "."
    return line[0].upper() + line[1:]


def inline_markdown(text: str) -> str:
    """The little Markdown a note line uses (``code``, *emphasis*) as HTML, the rest escaped."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", out)


#: A table of more columns than this is set in a smaller type, so that it fits the book's
#: text column (about 700 px; ``tools/browser_check.py`` measures it).
WIDE_COLUMNS = 5
WIDE_STYLE = "font-size: 0.72em"


class Table:
    """A reader-facing table: an optional note line, the table, optionally folded.

    Renders as HTML in notebooks and in the book (``_repr_html_``); the frame it shows is
    :attr:`frame` (text cells), the note :attr:`note`."""

    def __init__(self, frame: pd.DataFrame, note: str = "", fold: str | None = None) -> None:
        self.frame = frame
        self.note = note
        self.fold = fold

    def _repr_html_(self) -> str:
        table = self.frame.to_html(classes="rnnpose-table", border=0, escape=True,
                                   na_rep=MISSING)  # fmt: skip
        if self.frame.shape[1] > WIDE_COLUMNS:  # paper | published | this build per column
            table = table.replace("<table ", f'<table style="{WIDE_STYLE}" ', 1)
        note = inline_markdown(self.note)
        body = (f'<p class="rnnpose-note">{note}</p>' if note else "") + table
        if self.fold:
            return (f"<details class=\"rnnpose-fold\"><summary>{html.escape(self.fold)}"
                    f"</summary>{body}</details>")  # fmt: skip
        return body

    def __repr__(self) -> str:
        return (self.note + "\n" if self.note else "") + self.frame.to_string()


def show(frame: pd.DataFrame, *, digits: int = 1, drop: bool = True, fold: str | None = None,
         reasons: dict[str, str] | None = None, note: str = "") -> Table:  # fmt: skip
    """A frame as a reader-facing :class:`Table`: empty columns dropped (``drop``) with one
    line saying why (``reasons`` by source, else :data:`WHY_EMPTY`), cells as text, folded
    behind a summary line when ``fold`` is given; ``note`` is prepended to that line."""
    dropped: list[Any] = []
    if drop:
        frame, dropped = drop_empty(frame)
    line = _note(dropped, {**WHY_EMPTY, **(reasons or {})})
    return Table(readable(frame, digits), " ".join(x for x in (note, line) if x), fold)


def comparison(side: pd.DataFrame, columns: dict[str, str] | None = None, *,
               fold: str | None = None, constant: dict[str, float] | None = None,
               digits: int = 1) -> Table:  # fmt: skip
    """A side-by-side frame (:func:`rnnpose.paper.side_by_side`: paper | published | this
    build per column) with two header rows, (column, source); ``columns`` (ours -> the paper's,
    as given to ``side_by_side``) puts the paper's column under ours, headed ``ours (paper's)``
    where the names differ. An empty source column is dropped with a note. ``constant``: a
    value every this-build cell of a column equals (COCO's APM/APL read -1 on synthetic
    people): such columns are left out, named in the note."""
    side = side.copy()
    heads: dict[str, str] = {}
    for ours, theirs in (columns or {}).items():
        head = ours if ours == theirs else f"{ours} ({theirs})"
        heads[ours] = head
        side = side.rename(columns={f"paper {theirs}": f"paper {head}"})
    side = side.rename(columns={f"{src} {ours}": f"{src} {head}" for ours, head in heads.items()
                                for src in SOURCES if src != "paper"})  # fmt: skip
    frame = by_source(side)
    note = ""
    if constant:
        gone = [g for g in dict.fromkeys(c[0] for c in frame.columns)
                if (g, "this build") in frame.columns
                and all(v == constant.get(g) for v in frame[(g, "this build")])]  # fmt: skip
        if gone:
            frame = frame.drop(columns=gone, level=0)
            note = (f"Left out: {', '.join(gone)} (this build reads "
                    f"{', '.join(f'{constant[g]:g}' for g in gone)} in every row: "
                    f"no person of the data falls in that size range).")
    return show(frame, digits=digits, fold=fold, note=note)


def verdict_grid(verdicts: pd.DataFrame, *, fold: str | None = None,
                 row_levels: Sequence[str] = ("claim",)) -> Table:  # fmt: skip
    """The verdicts of :func:`rnnpose.paper.verdicts` (one row per claim and split) as a
    grid: rows = claims (``row_levels``), columns = (split, source): *paper* says whether the
    claim holds on the paper's column for that split (yes / no), *this build* and
    *published* are the verdicts. Empty published verdicts are dropped with a note."""
    flat = verdicts.reset_index()
    if "paper column" in flat:
        flat["split"] = [f"{r} ({p})" for r, p in zip(flat["reproduced on"], flat["paper column"],
                                                      strict=True)]  # fmt: skip
    else:
        flat["split"] = flat["reproduced on"]
    if "in the paper" in flat:
        flat["paper"] = flat["in the paper"].map(lambda v: "yes" if bool(v) else "no")
    names = {"paper": "paper", "verdict": "this build", "verdict (published)": "published"}
    values = [c for c in names if c in flat]
    index = list(row_levels)
    grid = flat.pivot_table(index=index, columns="split", values=values, aggfunc="first",
                            sort=False)  # fmt: skip
    grid = grid.rename(columns=names, level=0).swaplevel(0, 1, axis=1)
    splits = list(dict.fromkeys(flat["split"]))
    grid = grid[[(sp, names[v]) for sp in splits for v in values
                 if (sp, names[v]) in grid.columns]]  # fmt: skip
    grid = grid.reindex(list(dict.fromkeys(flat.set_index(index).index)))
    grid.columns.names = [None, None]
    return show(grid, fold=fold)


def count(values: Sequence[str]) -> dict[str, int]:
    """How many of each verdict, in the scheme's order (reproduced, not reproduced,
    inconclusive); other values are not counted."""
    values = list(values)
    return {v: values.count(v) for v in ("reproduced", "not reproduced", "inconclusive")}


class Stack:
    """Several reader-facing objects shown one after another (one notebook output)."""

    def __init__(self, *parts: Any) -> None:
        self.parts = parts

    def _repr_html_(self) -> str:
        return "".join(p._repr_html_() if hasattr(p, "_repr_html_") else
                       f"<p>{html.escape(str(p))}</p>" for p in self.parts)  # fmt: skip

    def __repr__(self) -> str:
        return "\n\n".join(map(repr, self.parts))
