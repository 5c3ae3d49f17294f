"""The diagnosis records the book's chapter 10 reads (rnnpose.diagnosis): checked at the
boundary, averaged over seeds with their range, and the main comparison's spread."""

from __future__ import annotations

import json
import re

import pytest

from rnnpose import diagnosis as dg
from rnnpose.io import DataError


def _record(setting: str, seed: int, sparse: float, occluded: float) -> dict:
    split = {"AP50": 30.0, "AP75": 1.0, "count_exact": 0.25}
    return {"setting": setting, "seed": seed, "images": 1200, "epochs": 2, "adam_steps": 1200,
            "train_seconds": 900.0, "procs": 2, "threads": 1,
            "curve": [{"epoch": 2, "splits": {"sparse": {"AP": sparse, **split},
                                              "occluded": {"AP": occluded, **split}}}]}


def _write(folder, records):
    for r in records:
        (folder / f"{r['setting']}-s{r['seed']}.json").write_text(json.dumps(r))


def test_seeds_are_averaged_with_their_range_and_give_the_spread(tmp_path):
    _write(tmp_path, [_record("m", 0, 10.0, 8.0), _record("m", 1, 12.5, 8.5),
                      _record("m", 2, 11.0, 9.5), _record("other", 0, 1.0, 1.0)])
    runs = dg.load_runs(tmp_path)
    table = dg.summary_table(runs, ["m"], ae={"sparse": {"AP": 20.0}}, splits=("sparse",
                             "occluded"), metrics=("AP",))  # fmt: skip
    assert table.loc["m", "seeds"] == "3" and table.loc["m", "Adam steps"] == "1200"
    assert table.loc["m", "sparse AP"] == "11.2 (2.5)"  # mean (range over the seeds)
    assert table.loc["m", "occluded AP"] == "8.7 (1.5)"
    assert table.loc["AE grouping", "sparse AP"] == "20.0"
    assert dg.seed_spread("m", tmp_path) == pytest.approx(2.5)
    with pytest.raises(DataError, match="1 seed"):
        dg.seed_spread("other", tmp_path)


@pytest.mark.parametrize("spoil,field", [
    (lambda r: r.pop("adam_steps"), "adam_steps"),
    (lambda r: r.update(curve=[]), "curve"),
    (lambda r: r["curve"][0]["splits"]["sparse"].pop("AP75"), "curve[].splits.sparse"),
])  # fmt: skip
def test_a_bad_record_names_the_file_and_field(tmp_path, spoil, field):
    r = _record("m", 0, 1.0, 1.0)
    spoil(r)
    _write(tmp_path, [r])
    with pytest.raises(DataError, match=re.escape(f"m-s0.json: field {field!r}"[:-1])):
        dg.load_runs(tmp_path)


def test_loss_balance_places_the_loss_between_empty_and_hedge(tmp_path):
    recs = []
    for seed, (loss, over) in enumerate(((4.0, 0.5), (3.0, 0.7))):
        r = _record("norm", seed, 10.0 + seed, 8.0)
        r["loss_levels"] = {"zero": 5.0, "hedge": 3.0, "people": 4.0}  # empty 5, hedge 3
        r["log"] = [{"epoch": 2, "heatmap1": loss, "stop": 2.0 + seed}]
        for split in r["curve"][0]["splits"].values():
            split["count_over"] = over
        recs.append(r)
    _write(tmp_path, recs)
    table = dg.loss_balance(dg.load_runs(tmp_path), ["norm", "absent"], splits=("sparse",))
    assert list(table.index) == ["norm"]
    row = table.loc["norm"]
    assert row["heatmap loss: empty -> hedge"] == "75.0 % (50.0)"  # 50 % and 100 % of the way
    assert row["stop loss / image"] == "2.5 (1.0)"
    assert row["AP sparse"] == "10.5 (1.0)"
    assert row["over-counted sparse"] == "60.0 % (20.0)"
