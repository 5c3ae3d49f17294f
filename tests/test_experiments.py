"""Experiment's budgets: a split's first images as a file of their own, and which runs are
evaluated on them (the ablation rows, not the main runs)."""

from __future__ import annotations

from rnnpose.config import get_profile
from rnnpose.experiments import Experiment
from rnnpose.io import atomic_write_json, read_json


def test_split_limit_and_the_ablation_evaluation_budget(tmp_path):
    exp = Experiment(get_profile("tiny", rmpp_ablation_eval=5), artifacts=tmp_path, quiet=True)
    full, sub = exp.split("sparse"), exp.split("sparse", limit=5)
    data, part = read_json(full.ann_file), read_json(sub.ann_file)
    first = sorted(im["id"] for im in data["images"])[:5]
    assert sorted(im["id"] for im in part["images"]) == first
    assert part["annotations"] == [a for a in data["annotations"] if a["image_id"] in first]
    assert part["annotations"] and sub.image_root == full.image_root
    assert exp.split("sparse", limit=5).ann_file == sub.ann_file  # made once, then reused

    main, row = tmp_path / "main", tmp_path / "row"
    for run, options in ((main, {"T": None}), (row, {"T": 2, "init": str(main)})):
        atomic_write_json(run / "done.json", {"spec": {"options": options}})
    assert exp._eval_limit(main) == 0 and exp._eval_limit(row) == 5
    assert Experiment("tiny", artifacts=tmp_path)._eval_limit(row) == 0  # no budget: all
