"""The ``paper`` profile end to end on the real samples (``data/samples/``), through the CLI.

pose-ae-train's network (random weights in its checkpoint layout) is imported, one decoder
epoch is trained on its features (section 3.3), both methods are evaluated on the COCO
sample, RMPP on the OCHuman sample multi-scale with AE's refinement, and a photo is
predicted: the README's "Real data" walk, line by line. The cost is capped with the options a
user on a slow machine has (``--subset``, ``--max-iterations``, ``--epochs``), not with
another code path: the networks are the paper's (512-pixel input, 4 stacks of 256 channels,
a 136-channel decoder input at 128 x 128). Four 512-pixel AE passes, one at half the size,
and four decoder iterations; the README gives the measured time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pose_ae_reference as ref
import torch

from rnnpose.cli import main
from rnnpose.features import load_feature_set
from rnnpose.train.common import RunDir


def _cli(argv: list, capsys, times: dict[str, float], name: str) -> str:
    """Run ``rnnpose ARGV`` in-process; exit 0 expected; its stdout."""
    capsys.readouterr()
    t0 = time.perf_counter()
    rc = main([str(a) for a in argv])
    times[name] = time.perf_counter() - t0
    out, err = capsys.readouterr()
    assert rc == 0, (argv, err)
    return out


def test_paper_profile_end_to_end_on_the_samples(tmp_path, real_samples, capsys):
    times: dict[str, float] = {}
    cpu = ["--quiet", "--device", "cpu"]
    coco, och = real_samples / "coco-val2017-sample", real_samples / "ochuman-sample"
    splits = {"coco": (coco / "test_coco.json", coco), "ochuman": (och / "test_ochuman.json", och)}

    # 1. the released network's layout -> an AE run of the paper profile
    ckpt = tmp_path / "checkpoint.pth.tar"
    torch.save({"state_dict": ref.random_state(ref.their_shapes(), seed=5,
                                               prefix="model.module."), "epoch": 1}, ckpt)
    ae = tmp_path / "ae"
    _cli(["import-ae", ckpt, "--out", ae], capsys, times, "import-ae")
    assert json.loads((ae / "config.json").read_text())["profile"]["name"] == "paper"

    # 2. one decoder epoch on the COCO sample's first image, at most 1 iteration per image
    rmpp = tmp_path / "rmpp"
    ann, images = splits["coco"]
    _cli(["train", "rmpp", "--ae", ae, "--ann", ann, "--images", images, "--out", rmpp,
          "--epochs", "1", "--subset", "1", "--max-iterations", "1", *cpu],
         capsys, times, "train rmpp")  # fmt: skip
    config = json.loads((rmpp / "config.json").read_text())
    assert config["profile"]["name"] == "paper" and config["profile"]["input_size"] == 512
    assert config["profile"]["max_iterations"] == 1  # recorded where the run's settings are
    assert config["options"]["subset"] == 1 and config["options"]["max_iterations"] == 1
    feats = load_feature_set(config["features"])  # only the subset's features were computed
    assert feats.image_ids == [785] and feats.features.shape == (1, 136, 128, 128)
    assert [(r["epoch"], r["step"]) for r in RunDir(rmpp).read_log()] == [(1, 1)]
    cache = ae / "rmpp_features"
    assert [p.name for p in cache.iterdir()] == [Path(config["features"]).name]

    # 3. both methods on the COCO sample's first image (RMPP reads back the features it
    # trained on), then RMPP on OCHuman's first image, multi-scale with AE's refinement
    metrics = {}
    ann, images = splits["coco"]
    for method in ("rmpp", "ae"):
        out = _cli(["eval", "--run", rmpp, "--method", method, "--ann", ann, "--images",
                    images, "--subset", "1", "--json", *cpu],
                   capsys, times, f"eval coco {method}")  # fmt: skip
        metrics["coco", method] = json.loads(out)
    assert len(list(cache.iterdir())) == 1  # the features trained on, not computed again
    ann, images = splits["ochuman"]
    out = _cli(["eval", "--run", rmpp, "--ann", ann, "--images", images, "--subset", "1",
                "--scales", "1", "0.5", "--json", *cpu], capsys, times, "eval ochuman multi")
    metrics["ochuman", "multi"] = json.loads(out)
    for m in metrics.values():
        assert m["images"] == 1 and 0.0 <= m["AP"] <= 100.0 and 0.0 <= m["AR"] <= 100.0

    # 4. a sample photo: the figure, the decoder's iteration strip, at most 1 person
    pred = tmp_path / "pred"
    _cli(["predict", coco / "000000000785.jpg", "--run", rmpp, "--out", pred, *cpu],
         capsys, times, "predict")  # fmt: skip
    record = json.loads((pred / "images.json").read_text())
    assert [r["figure"] for r in record] == ["000000000785.png"]
    assert (pred / "000000000785.png").stat().st_size > 0
    assert (pred / record[0]["iterations"]).stat().st_size > 0
    people = json.loads((pred / "results.json").read_text())
    assert len(people) <= 1 and all(len(p["keypoints"]) == 51 for p in people)
    print("paper walk, seconds per command:",
          json.dumps({k: round(v, 1) for k, v in times.items()}))  # fmt: skip
