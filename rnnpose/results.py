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
    """A results file, checked at the boundary: a wrong schema or a missing field is a
    :class:`DataError` naming the file and the field."""
    data = read_json(path)
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise DataError(f"{path}: field 'schema': not an rnnpose results file ({SCHEMA})")
    for key in ("header", "tables"):
        if not isinstance(data.get(key), dict):
            raise DataError(f"{path}: field {key!r} missing or not an object")
    for name, table in data["tables"].items():
        numbers = table.get("numbers") if isinstance(table, dict) else None
        if not isinstance(numbers, dict) or not {"index", "columns", "data"} <= set(numbers):
            raise DataError(f"{path}: field 'tables.{name}.numbers' malformed")
    return data


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
    machine = h.get("gpu") or f"CPU ({h.get('cpu') or 'model not recorded'})"
    text = (f"Published column: {snapshot.label[11:-1]}, profile "
            f"`{h.get('profile', {}).get('name', '?')}` ({snapshot.budget()}) on {machine}, "
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
    to paste (myst-nb's ``{glue:any}`` with ``:doc:``), without showing it here; the same
    output format as ``myst_nb.glue(name, Markdown(text), display=False)``, so the kernel
    needs no myst-nb."""
    from IPython.display import display

    display({GLUE_PREFIX + "text/markdown": text, GLUE_PREFIX + "text/plain": text}, raw=True,
            metadata={"scrapbook": {"name": name, "mime_prefix": GLUE_PREFIX}})
