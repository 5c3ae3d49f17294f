"""Every number a built book shows, as one file; and the published GPU snapshot beside it.

* While a notebook runs, :func:`record` hands one table's numbers (and its verdicts) to the
  build as an output of its own MIME type, which the HTML does not show. ``rnnpose book``
  gathers them from the executed notebooks (:func:`collect`) into ``_build/results.json``
  (:func:`write_results`), so papermill reruns and scripts read the numbers without parsing HTML.
* ``rnnpose book --publish DIR`` writes the same file, with the GPU, the commit and the wall
  time of each stage, into ``DIR`` (committed as ``book/published/``); every later build shows
  its numbers beside the paper's and its own (:func:`published`), and says when the training
  code has changed since (the snapshot is then stale).

The file (``schema`` ``rnnpose-results-1``)::

    {"schema", "header": {"profile", "seed", "device", "gpu", "torch", "cuda", "commit",
                          "training_code", "created", "stage_seconds": {notebook: s},
                          "total_seconds", "env"},
     "tables": {name: {"numbers": {"index", "columns", "data"}, "verdicts": [{...}], ...}}}
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from rnnpose.io import DataError, PathLike, atomic_write_json, read_json

MIME = "application/vnd.rnnpose.results+json"
SCHEMA = "rnnpose-results-1"
ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "book" / "published"


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def frame_to_json(df: pd.DataFrame) -> dict[str, Any]:
    """A DataFrame as ``{"index", "columns", "data"}`` (tuples of a MultiIndex joined by " | ")."""

    def label(x: Any) -> str:
        return " | ".join(map(str, x)) if isinstance(x, tuple) else str(x)

    return {"index": [label(i) for i in df.index], "columns": [label(c) for c in df.columns],
            "data": _clean(df.to_numpy().tolist())}  # fmt: skip


def frame_from_json(obj: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(obj["data"], index=obj["index"], columns=obj["columns"], dtype=float)


def record(name: str, numbers: pd.DataFrame, verdicts: pd.DataFrame | None = None,
           **meta: Any) -> None:  # fmt: skip
    """Hand one table to the book build: ``numbers`` (rows x columns, reproduced values) and its
    ``verdicts`` (one row per claim and split); shown nowhere, collected by :func:`collect`."""
    from IPython.display import display

    payload: dict[str, Any] = {"name": name, "numbers": frame_to_json(numbers), **_clean(meta)}
    if verdicts is not None:
        payload["verdicts"] = _clean(verdicts.reset_index().to_dict(orient="records"))
    display({MIME: payload}, raw=True)


def collect(notebooks: Iterable[PathLike]) -> dict[str, dict[str, Any]]:
    """Every table recorded in the executed ``notebooks``, by name (a later one wins)."""
    tables: dict[str, dict[str, Any]] = {}
    for path in notebooks:
        nb = read_json(path)
        for cell in nb.get("cells", []):
            for out in cell.get("outputs", []):
                payload = out.get("data", {}).get(MIME)
                if isinstance(payload, dict) and "name" in payload:
                    tables[payload["name"]] = {**payload, "notebook": Path(path).stem}
    return tables


def write_results(path: PathLike, tables: dict[str, Any], header: dict[str, Any]) -> Path:
    return atomic_write_json(path, {"schema": SCHEMA, "header": _clean(header),
                                    "tables": _clean(tables)})  # fmt: skip


def read_results(path: PathLike) -> dict[str, Any]:
    """A results file, checked at the boundary: every field the book reads has its type and
    shape (:func:`check_header`, :func:`check_table`); a wrong one is a :class:`DataError`
    naming the file and the field."""
    data = read_json(path)
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise DataError(f"{path}: field 'schema': not an rnnpose results file ({SCHEMA})")
    for key in ("header", "tables"):
        if not isinstance(data.get(key), dict):
            raise DataError(f"{path}: field {key!r} missing or not an object")
    check_header(data["header"], path)
    for name, table in data["tables"].items():
        check_table(name, table, path)
    return data


def is_number(x: Any) -> bool:
    """A finite int or float; a bool is not a number (the check of every number a book's
    results file or a diagnosis record holds)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _type(x: Any) -> str:
    return "null" if x is None else type(x).__name__


#: header fields that are text or null where present
_HEADER_TEXT = ("device", "gpu", "torch", "cuda", "commit", "training_code", "created",
                "data_root")  # fmt: skip


def check_header(header: dict[str, Any], path: PathLike) -> None:
    """The header fields the book shows (:func:`describe`, :attr:`Snapshot.label`), each
    checked where present: ``profile`` an object (its ``name`` text), ``seed`` an integer,
    ``stage_seconds`` an object of numbers, ``total_seconds`` a number, ``env`` an object,
    the rest text or null."""
    where = f"{path}: field 'header."
    prof = header.get("profile")
    if "profile" in header and not isinstance(prof, dict):
        raise DataError(f"{where}profile' must be an object, got {_type(prof)}")
    if isinstance(prof, dict) and "name" in prof and not isinstance(prof["name"], str):
        raise DataError(f"{where}profile.name' must be text, got {_type(prof['name'])}")
    seed = header.get("seed")
    if "seed" in header and not (isinstance(seed, int) and not isinstance(seed, bool)):
        raise DataError(f"{where}seed' must be an integer, got {_type(seed)}")
    if "total_seconds" in header and not is_number(header["total_seconds"]):
        raise DataError(f"{where}total_seconds' must be a number, got "
                        f"{_type(header['total_seconds'])}")  # fmt: skip
    stages = header.get("stage_seconds")
    if "stage_seconds" in header and not (
        isinstance(stages, dict) and all(is_number(v) for v in stages.values())
    ):
        raise DataError(f"{where}stage_seconds' must map notebooks to numbers of seconds")
    for key in ("env",):
        if key in header and not isinstance(header[key], dict):
            raise DataError(f"{where}{key}' must be an object, got {_type(header[key])}")
    for key in _HEADER_TEXT:
        if header.get(key) is not None and not isinstance(header[key], str):
            raise DataError(f"{where}{key}' must be text or null, got {_type(header[key])}")


def check_table(name: str, table: Any, path: PathLike) -> None:
    """One table: ``numbers`` with ``index`` and ``columns`` lists of distinct labels and
    ``data`` one row per index label, each a list of one number (or null) per column;
    ``verdicts`` (where present) a list of objects whose ``verdict`` is text; ``spread`` a
    number or null; ``notebook`` text."""
    where = f"{path}: field 'tables.{name}"
    if not isinstance(table, dict):
        raise DataError(f"{where}' must be an object, got {_type(table)}")
    numbers = table.get("numbers")
    if not isinstance(numbers, dict) or not {"index", "columns", "data"} <= set(numbers):
        raise DataError(f"{where}.numbers' malformed (an object with index, columns, data)")
    for key in ("index", "columns"):
        labels = numbers[key]
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise DataError(f"{where}.numbers.{key}' must be a list of text labels")
        if len(set(labels)) != len(labels):
            raise DataError(f"{where}.numbers.{key}' repeats a label")
    rows, index, columns = numbers["data"], numbers["index"], numbers["columns"]
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise DataError(f"{where}.numbers.data' must be a list of rows (lists)")
    if len(rows) != len(index):
        raise DataError(f"{where}.numbers.data' has {len(rows)} rows, 'index' {len(index)} "
                        "labels")  # fmt: skip
    for label, row in zip(index, rows, strict=True):
        if len(row) != len(columns):
            raise DataError(f"{where}.numbers.data' row {label!r} has {len(row)} values, "
                            f"'columns' {len(columns)} labels")  # fmt: skip
        bad = next((x for x in row if x is not None and not is_number(x)), _OK)
        if bad is not _OK:
            raise DataError(f"{where}.numbers.data' row {label!r} holds a non-number "
                            f"({repr(bad)[:40]}; numbers or null only)")  # fmt: skip
    verdicts = table.get("verdicts")
    if verdicts is not None:
        if not isinstance(verdicts, list) or not all(isinstance(v, dict) for v in verdicts):
            raise DataError(f"{where}.verdicts' must be a list of objects, got "
                            f"{_type(verdicts)}")  # fmt: skip
        for k, v in enumerate(verdicts):
            if "verdict" in v and not isinstance(v["verdict"], str):
                raise DataError(f"{where}.verdicts[{k}].verdict' must be text")
    if table.get("spread") is not None and not is_number(table["spread"]):
        raise DataError(f"{where}.spread' must be a number or null, got {_type(table['spread'])}")
    if "notebook" in table and not isinstance(table["notebook"], str):
        raise DataError(f"{where}.notebook' must be text")


_OK = object()


@dataclass(frozen=True)
class Snapshot:
    """A published run: its results file and where it lies."""

    folder: Path
    data: dict[str, Any]

    @property
    def header(self) -> dict[str, Any]:
        return self.data["header"]

    @property
    def label(self) -> str:
        """The column heading: the GPU that ran it, or "the <profile> CPU build" (never "GPU"
        for a CPU run)."""
        gpu = self.header.get("gpu")
        if gpu:
            return f"published ({gpu})"
        profile = (self.header.get("profile") or {}).get("name", "?")
        return f"published ({profile} {str(self.header.get('device', '?')).upper()} build)"

    @property
    def machine(self) -> str:
        """The device that made the snapshot: its GPU, else "CPU (<model>)"."""
        return self.header.get("gpu") or f"CPU ({self.header.get('cpu') or 'model not recorded'})"

    def budget(self) -> str:
        """The decoder's budget of the snapshot's main run, from its profile."""
        prof = self.header.get("profile") or {}
        try:
            steps = prof["rmpp_epochs"] * -(-prof["n_train"] // prof["rmpp_batch_size"])
            return (f"decoder {prof['rmpp_epochs']} epochs x {prof['n_train']:,} images at batch "
                    f"{prof['rmpp_batch_size']} ({steps:,} Adam steps), "
                    f"{prof.get('rmpp_seeds', 1)} decoder seed(s)")  # fmt: skip
        except (KeyError, TypeError, ZeroDivisionError):
            return "budget not recorded"

    def numbers(self, name: str) -> pd.DataFrame | None:
        table = self.data["tables"].get(name)
        return None if table is None else frame_from_json(table["numbers"])

    def verdicts(self, name: str) -> list[dict[str, Any]]:
        table = self.data["tables"].get(name) or {}
        return list(table.get("verdicts") or [])

    def stale(self, training_code: str) -> bool:
        """True when the training code has changed since the snapshot was made."""
        return self.header.get("training_code") != training_code


def published(folder: PathLike = PUBLISHED) -> Snapshot | None:
    """The published snapshot in ``folder`` (``results.json``), or None if there is none."""
    path = Path(folder) / "results.json"
    if not path.is_file():
        return None
    return Snapshot(Path(folder), read_results(path))


def describe(snapshot: Snapshot | None, training_code: str) -> str:
    """One paragraph for a chapter head: which commit and machine made the published column."""
    if snapshot is None:
        return ("No published run yet (neither a CUDA build nor the long CPU build): the "
                "'published' columns are empty. `python -m rnnpose.book --profile long --publish "
                "book/published` makes the long CPU build's snapshot (about 4 hours on 2 cores); "
                "`--profile gpu --device cuda` a CUDA build's.")
    h = snapshot.header
    text = (f"Published column: {snapshot.label[11:-1]}, profile "
            f"`{h.get('profile', {}).get('name', '?')}` ({snapshot.budget()}) on "
            f"{snapshot.machine}, "
            f"commit `{str(h.get('commit', '?'))[:12]}`, {h.get('created', '?')}, "
            f"{h.get('total_seconds', 0) / 60:.1f} min in all.")
    if snapshot.stale(training_code):
        text += (" **Stale:** the training code has changed since that run, so its numbers "
                 "come from other code than this build's.")
    return text


def chapter_head(folder: PathLike = PUBLISHED) -> Any:
    """The paragraph a chapter with tables opens with (IPython Markdown): which run made the
    published column, flagged when stale; and where this build's numbers are written."""
    import torch
    from IPython.display import Markdown

    from rnnpose.experiments import training_code
    from rnnpose.io import cpu_model

    return Markdown(describe(published(folder), training_code()) + " This build ran on "
                    f"{cpu_model()} with {torch.get_num_threads()} torch threads (the same "
                    "commit trains to other weights on another CPU model); its numbers are also "
                    "written to `_build/results.json` (README: results file).")


def to_json_text(data: dict[str, Any]) -> str:
    return json.dumps(_clean(data), indent=1)


def publish(results_file: PathLike, folder: PathLike) -> Path:
    """Copy a build's results file into ``folder`` as a published snapshot (checked first:
    a file that is not a results file is refused, nothing is written)."""
    data = read_results(results_file)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "results.json", data)
    return out


#: The MIME prefix of a glued output that is stored, not shown (myst-nb's ``glue`` format).
GLUE_PREFIX = "application/papermill.record/"


def glue_markdown(name: str, text: str) -> None:
    """Store ``text`` (Markdown) in the notebook under ``name`` for other pages of the book
    to paste (myst-nb's ``{glue:any}`` with ``:doc:``), without showing it here; the output
    format of ``myst_nb.glue(name, Markdown(text), display=False)`` plus its HTML, so the
    kernel needs no myst-nb and the other page shows it formatted."""
    from IPython.display import display
    from markdown_it import MarkdownIt

    # myst-nb pastes into another page (``:doc:``) only text/html, images or text/plain (as a
    # code block): the HTML rendering is what a reader of that page sees
    display({GLUE_PREFIX + "text/markdown": text,
             GLUE_PREFIX + "text/html": MarkdownIt("commonmark").render(text),
             GLUE_PREFIX + "text/plain": text}, raw=True,
            metadata={"scrapbook": {"name": name, "mime_prefix": GLUE_PREFIX}})  # fmt: skip
