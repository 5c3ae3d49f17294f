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
            "curve": [{"epoch": 2, "step": 1200, "splits": {"sparse": {"AP": sparse, **split},
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
    (lambda r: r["curve"][0].pop("step"), "curve[].step"),
    (lambda r: r["curve"][0].update(epoch=True), "curve[].epoch"),
])  # fmt: skip
def test_a_bad_record_names_the_file_and_field(tmp_path, spoil, field):
    r = _record("m", 0, 1.0, 1.0)
    spoil(r)
    _write(tmp_path, [r])
    with pytest.raises(DataError, match=re.escape(f"m-s0.json: field {field!r}"[:-1])):
        dg.load_runs(tmp_path)


def _long(seed: int, aps: list[float], ae_seed: int = 0) -> dict:
    """A long-main record evaluated after every epoch: 600 Adam steps an epoch."""
    r = _record("long-main", seed, 0.0, 0.0)
    r["ae_seed"] = ae_seed
    r["cpu"] = "CPU X, AVX512 kernels"
    r["curve"] = [{"epoch": e, "step": 600 * e,
                   "splits": {"sparse": {"AP": ap, "AP50": 1.0, "AP75": 1.0},
                              "occluded": {"AP": ap / 2, "AP50": 1.0, "AP75": 1.0}}}
                  for e, ap in enumerate(aps, start=1)]  # fmt: skip
    return r


def _ae_eval(folder, seed: int = 0, sparse: float = 20.0) -> None:
    splits = {s: {"ae": {"AP": ap}, "oracle": {"AP": ap + 10}}
              for s, ap in (("sparse", sparse), ("occluded", 15.0))}
    (folder / f"ae-s{seed}-eval.json").write_text(json.dumps({"seed": seed, "splits": splits}))


def test_the_long_campaign_is_read_from_the_folder_with_the_most_seeds(tmp_path):
    assert dg.long_campaign(tmp_path) is None  # no long-budget record anywhere
    one, two = tmp_path / "intel", tmp_path / "epyc"
    one.mkdir(), two.mkdir()
    _write(one, [_long(0, [1.0, 2.0])])
    _ae_eval(one, sparse=99.0)
    _write(two, [_long(0, [5.0, 7.0, 8.0]), _long(1, [6.0, 8.0, 9.0])])
    _ae_eval(two)
    curve, refs, source = dg.long_campaign(tmp_path)
    assert sorted(set(curve["seed"])) == [0, 1] and len(curve) == 2 * 3 * 2
    row = curve[(curve["seed"] == 1) & (curve["step"] == 1800) & (curve["split"] == "occluded")]
    assert list(row["AP"]) == [4.5] and list(row["epoch"]) == [3]
    assert refs == {"AE grouping": {"sparse": 20.0, "occluded": 15.0},
                    "AE heatmaps, ground-truth grouping": {"sparse": 30.0, "occluded": 25.0}}
    assert "2 decoder seeds on CPU X, AVX512 kernels" in source and str(two) in source


def test_a_long_campaign_needs_one_ae_and_its_evaluation(tmp_path):
    _write(tmp_path, [_long(0, [1.0]), _long(1, [2.0], ae_seed=1)])
    with pytest.raises(DataError, match="several AE networks"):
        dg.long_campaign(tmp_path)
    _write(tmp_path, [_long(1, [2.0])])
    with pytest.raises(DataError, match="ae-s0-eval.json"):
        dg.long_campaign(tmp_path)  # no evaluation of the frozen AE
    _ae_eval(tmp_path)
    data = json.loads((tmp_path / "ae-s0-eval.json").read_text())
    data["splits"]["sparse"]["oracle"]["AP"] = "30"
    (tmp_path / "ae-s0-eval.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"field 'splits\.sparse\.oracle\.AP' must be a number"):
        dg.long_campaign(tmp_path)


def test_settings_are_compared_at_the_largest_budget_all_reached():
    main = dg.setting_curve({0: _long(0, [5.0, 7.0, 8.0]), 1: _long(1, [6.0, 8.0, 10.0])})
    aid = dg.setting_curve({0: _long(0, [4.0, 9.0]), 1: _long(1, [5.0, 11.0])})
    assert list(main.columns) == ["seed", "epoch", "step", "split", "AP"] and len(main) == 12
    table = dg.at_budget({"main": main, "aid": aid}, "main")
    assert list(table["Adam steps"]) == ["1200", "1200"]  # aid stops at epoch 2: 1,200 steps
    assert table.loc["main", "AP sparse"] == "7.5 (1.0)"  # mean (range) at 1,200 steps
    assert table.loc["aid", "AP sparse"] == "10.0 (2.0)"
    assert table.loc["aid", "gain sparse"] == "+2.5"
    assert table.loc["main", "gain sparse"] == ""
    assert table.loc["aid", "AP occluded"] == "5.0 (1.0)"
    assert table.loc["aid", "gain occluded"] == "+1.2"  # 5.0 - 3.75
    assert table.loc["aid", "seeds"] == "2"


def test_the_published_long_build_joins_only_a_campaign_on_its_ae(tmp_path):
    _ae_eval(tmp_path)
    r = _long(0, [4.0, 9.0])
    r["setting"] = "long-emit"
    _write(tmp_path, [r])
    pub = dg.setting_curve({0: _long(0, [5.0, 7.0])})
    same = {"AE grouping": {"sparse": 20.0, "occluded": 15.0},
            "AE heatmaps, ground-truth grouping": {"sparse": 30.0, "occluded": 25.0}}
    curves, refs = dg.long_settings(tmp_path, ["long-emit", "long-sum"], (pub, same, "pub"))
    assert list(curves) == ["long-main (published build)", "long-emit"]
    assert refs == same and curves["long-main (published build)"] is pub
    other = {**same, "AE grouping": {"sparse": 20.5, "occluded": 15.0}}  # another AE network
    curves, _ = dg.long_settings(tmp_path, ["long-emit"], (pub, other, "pub"))
    assert list(curves) == ["long-emit"]
    assert list(curves["long-emit"]["AP"][curves["long-emit"]["split"] == "sparse"]) == [4.0, 9.0]


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


def test_paired_gain_compares_the_same_seeds_of_two_settings(tmp_path):
    _write(tmp_path, [_record("sum", 0, 12.0, 9.0), _record("sum", 1, 10.0, 9.5),
                      _record("sum", 5, 99.0, 99.0),  # no partner: left out
                      _record("base", 0, 11.0, 9.5), _record("base", 1, 7.0, 9.0)])
    table = dg.paired_gain(dg.load_runs(tmp_path), "sum", "base", splits=("sparse", "occluded"))
    assert table.loc["sparse", "seeds"] == 2
    assert table.loc["sparse", "mean difference"] == pytest.approx(2.0)  # +1 and +3
    assert (table.loc["sparse", "smallest"], table.loc["sparse", "largest"]) == (1.0, 3.0)
    assert table.loc["sparse", "seeds higher"] == "2 of 2"
    assert table.loc["occluded", "mean difference"] == pytest.approx(0.0)  # -0.5 and +0.5
    assert table.loc["occluded", "seeds higher"] == "1 of 2"


def test_seed_table_lists_every_seed_of_each_setting_in_order(tmp_path):
    _write(tmp_path, [_record("b", 1, 7.0, 6.0), _record("a", 3, 12.0, 9.0),
                      _record("b", 0, 5.0, 4.5), _record("c", 0, 1.0, 1.0)])
    table = dg.seed_table(dg.load_runs(tmp_path), ["b", "a"], splits=("sparse", "occluded"))
    assert list(table.index) == ["b seed 0", "b seed 1", "a seed 3"]  # "c" not asked for
    assert table.loc["b seed 1", "sparse"] == 7.0 and table.loc["a seed 3", "occluded"] == 9.0
    assert list(table.columns) == ["sparse", "occluded"]


def test_plot_paired_draws_one_line_per_shared_seed_coloured_by_its_direction(tmp_path):
    _write(tmp_path, [_record("sum", 0, 12.0, 9.0), _record("sum", 1, 6.0, 9.5),
                      _record("sum", 2, 8.0, 8.0),  # no partner: a lone dot
                      _record("base", 0, 11.0, 9.5), _record("base", 1, 7.0, 9.0)])
    fig = dg.plot_paired(dg.load_runs(tmp_path), "sum", "base", splits=("sparse",))
    (ax,) = fig.axes
    lines = {tuple(ln.get_ydata()): ln.get_color() for ln in ax.get_lines()}
    assert lines == {(11.0, 12.0): "C2", (7.0, 6.0): "C3"}  # seed 0 rose, seed 1 fell
    assert [t.get_text() for t in ax.get_xticklabels()] == ["base", "sum"]


def test_settings_keep_the_per_person_scale_they_were_recorded_with():
    # a setting changes only what it says, whatever scale the profiles train with
    script = _script()
    assert script.setting_profile(script.SETTINGS["cpu-main"]).rmpp_heatmap_norm == "person"
    assert script.setting_profile(script.SETTINGS["cpu-sum"]).rmpp_heatmap_norm == "sum"
    assert script.setting_profile(script.SETTINGS["cpu-joint"]).rmpp_heatmap_norm == "joint"
    assert script.setting_profile(script.SETTINGS["long-emit"]).rmpp_emitted


def test_the_default_runs_spread_comes_from_five_seeds_on_a_named_cpu():
    # issue 22, item 7: the committed campaign behind chapter 9's verdicts keeps >= 5 seeds
    runs = dg.load_runs(dg.DEFAULT_CAMPAIGN)
    assert dg.seeds(runs, dg.DEFAULT_SETTING) >= 5
    aps = [dg.final(r)["sparse"]["AP"] for r in dg.setting_runs_of(runs, "cpu-sum").values()]
    assert dg.default_spread() >= max(aps) - min(aps) > 0
    assert dg.default_spread_machine().startswith("5 seeds of cpu-sum on Intel")


def test_labels_of_close_points_are_spaced_apart_in_order():
    placed = dg._spaced({"a": 12.0, "b": 12.1, "c": 5.0, "d": 12.05}, gap=1.0)
    assert placed == {"c": 5.0, "a": 12.0, "d": 13.0, "b": 14.0}


def _script():
    """``experiments/diagnosis.py`` as a module (it is a script, not part of the package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "diagnosis.py"
    spec = importlib.util.spec_from_file_location("diagnosis_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv,needle", [
    (["run", "nosuch", "--root", "{tmp}"], "run: unknown setting 'nosuch' (see `list`)"),
    (["run", "--root", "{tmp}"], "run: name a setting"),
    (["run", "b1-400"], "--root: required by 'run'"),
    (["ae"], "--root: required by 'ae'"),
    (["run", "b1-400", "--root", "{tmp}"], "ae-s0: not a run folder (no config.json)"),
    (["run", "b1-400", "--root", "{tmp}/a_file"], "--root: "),
    (["table", "--results", "{tmp}/a_file"], "argument --results: "),
    (["run", "b1-400", "--root", "{tmp}", "--threads", "0"],
     "argument --threads: must be an integer >= 1, got 0"),
    (["run", "b1-400", "--root", "{tmp}", "--seed", "x"], "argument --seed: expected an integer"),
    (["nosuch"], "argument what: invalid choice: 'nosuch'"),
    (["relog", "b1-400", "--root", "{tmp}"], "b1-400-s0.json: no such results file"),
    (["table"], "broken.json: malformed JSON at line 1"),
    (["table"], "{results}/bad-ap.json: field 'final.sparse.AP' must be a number, got '1'"),
])  # fmt: skip
def test_the_diagnosis_script_refuses_bad_input_in_one_line(tmp_path, monkeypatch, capsys, argv,
                                                            needle):  # fmt: skip
    """One line ``experiments/diagnosis.py: error: ...``, exit 2, nothing written (the results
    folder and ``--root`` stay as they were)."""
    dg_script = _script()
    results = tmp_path / "results"
    results.mkdir()
    r = _record("ok", 0, 1.0, 1.0)
    r["final"] = r["curve"][-1]["splits"]
    (results / "ok-s0.json").write_text(json.dumps(r))
    if "broken.json" in needle:
        (results / "broken.json").write_text("{")
    if "bad-ap" in needle:
        r["final"]["sparse"]["AP"] = "1"
        (results / "bad-ap.json").write_text(json.dumps(r))
    (tmp_path / "a_file").write_text("x")
    monkeypatch.setattr(dg_script, "RESULTS", results)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    argv = [a.format(tmp=tmp_path, results=results) for a in argv]
    assert dg_script.main(argv) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("experiments/diagnosis.py: error: "), lines
    assert needle.format(results=results) in lines[0], lines[0]
    assert "Traceback" not in out + err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_the_diagnosis_table_and_root_on_a_fresh_clone(tmp_path, monkeypatch, capsys):
    """``table`` prints one line per record with AP per split (other records are skipped);
    ``--root`` sets ROOT_ARTIFACTS for every subcommand (no folder of one machine is
    assumed)."""
    dg_script = _script()
    assert dg_script.ROOT_ARTIFACTS is None
    r = _record("ok", 0, 12.5, 3.0)
    r["final"] = r["curve"][-1]["splits"]
    (tmp_path / "ok-s0.json").write_text(json.dumps(r))
    (tmp_path / "ae-s0-eval.json").write_text(json.dumps({"splits": {"val": {"ae": {}}}}))
    monkeypatch.setattr(dg_script, "RESULTS", tmp_path)
    assert dg_script.main(["table", "--root", str(tmp_path / "elsewhere")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ok-s0") and "spa  12.5" in lines[0]
    assert dg_script.ROOT_ARTIFACTS == tmp_path / "elsewhere" / "artifacts"
    assert dg_script.main(["list"]) == 0 and dg_script.ROOT_ARTIFACTS is None
