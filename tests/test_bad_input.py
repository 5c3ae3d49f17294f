"""Bad input through the command line: exit status 2, ONE line on stderr naming the file and
what is wrong, and nothing already written lost. Crowded and empty images are not bad input:
they train and predict. A NaN loss stops training at a named step, last checkpoint untouched."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnpose.checkpoint import load_checkpoint
from rnnpose.cli import main
from rnnpose.config import get_profile
from rnnpose.skeleton import NUM_JOINTS
from rnnpose.train import ae as train_ae_module
from rnnpose.train import rmpp as train_rmpp_module

CROWD = 30


pytestmark = pytest.mark.usefixtures("one_thread")


def one_error_line(capsys, *needles: str) -> str:
    """The single stderr line, which must contain every needle."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for needle in needles:
        assert needle in err[0], (needle, err[0])
    return err[0]


@pytest.fixture(scope="module")
def crowd_data(tiny_synth, tmp_path_factory) -> Path:
    """6 synthetic images: #1 keeps its people, #2 has ZERO people, #3 has 30 people
    (more than the tiny profile's max_people = 12), #4-6 keep theirs."""
    data = json.loads((tiny_synth / "annotations.json").read_text())
    data["images"] = data["images"][:6]
    keep = {1, 4, 5, 6}
    anns = [a for a in data["annotations"] if a["image_id"] in keep]
    rng = np.random.default_rng(0)
    next_id = max(a["id"] for a in data["annotations"]) + 1
    for k in range(CROWD):
        centre = rng.uniform(8, 56, size=2)
        xy = np.clip(centre + rng.normal(0, 3, size=(NUM_JOINTS, 2)), 0, 63)
        kp = np.concatenate([xy, np.full((NUM_JOINTS, 1), 2.0)], 1).round(2)
        x0, y0 = xy.min(0)
        w, h = xy.max(0) - xy.min(0)
        anns.append({"id": next_id + k, "image_id": 3, "keypoints": kp.ravel().tolist(),
                     "num_keypoints": NUM_JOINTS, "bbox": [x0, y0, w, h], "area": w * h,
                     "iscrowd": 0, "category_id": 1})  # fmt: skip
    data["annotations"] = anns
    out = tmp_path_factory.mktemp("crowd")
    (out / "annotations.json").write_text(json.dumps(data))
    shutil.copytree(tiny_synth / "images", out / "images")
    return out


@pytest.fixture(scope="module")
def crowd_runs(crowd_data, tmp_path_factory) -> dict[str, Path]:
    """An AE run and an RMPP run trained (1 epoch each) through the CLI on the crowd set."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("crowd_runs")
    assert main(["train", "ae", "--profile", "tiny", "--data", str(crowd_data), "--out",
                 str(root / "ae"), "--epochs", "1", "--quiet", "--device", "cpu"]) == 0
    assert main(["train", "rmpp", "--ae", str(root / "ae"), "--data", str(crowd_data), "--out",
                 str(root / "rmpp"), "--epochs", "1", "--batch-size", "3", "--T", "2",
                 "--quiet", "--device", "cpu"]) == 0  # fmt: skip
    torch.set_num_threads(before)
    return {"ae": root / "ae", "rmpp": root / "rmpp"}


def _copy_data(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _train_ae(data: Path, out: Path, *extra: str) -> int:
    return main(["train", "ae", "--profile", "tiny", "--data", str(data), "--out", str(out),
                 "--epochs", "1", "--quiet", "--device", "cpu", *extra])  # fmt: skip


# ------------------------------------------------------------------ annotation files


def test_malformed_json(crowd_data, tmp_path, capsys):
    data = _copy_data(crowd_data, tmp_path / "d")
    ann = data / "annotations.json"
    ann.write_text('{"images": [{"id": 1,')
    assert _train_ae(data, tmp_path / "run") == 2
    one_error_line(capsys, str(ann), "malformed JSON at line 1, column 22")
    assert not (tmp_path / "run").exists()
    assert ann.read_text() == '{"images": [{"id": 1,'  # the input is left as it was
    # the same for eval's ground truth
    assert main(["eval", "--gt", str(ann), "--results", str(ann)]) == 2
    one_error_line(capsys, str(ann), "malformed JSON")


def test_keypoints_not_17_by_3(crowd_data, tmp_path, capsys):
    data = _copy_data(crowd_data, tmp_path / "d")
    doc = json.loads((data / "annotations.json").read_text())
    doc["annotations"][1]["keypoints"] = doc["annotations"][1]["keypoints"][:48]
    bad_id = doc["annotations"][1]["id"]
    (data / "annotations.json").write_text(json.dumps(doc))
    assert _train_ae(data, tmp_path / "run") == 2
    one_error_line(capsys, str(data / "annotations.json"), f"annotation {bad_id}:",
                   "'keypoints' must hold 51 numbers (17 joints x (x, y, v)), got 48")
    doc["annotations"][1]["keypoints"] = [[0, 0, 2]] * 17  # nested, not flat
    (data / "annotations.json").write_text(json.dumps(doc))
    assert _train_ae(data, tmp_path / "run") == 2
    one_error_line(capsys, f"annotation {bad_id}:", "got 17")


def test_listed_image_missing(crowd_data, tmp_path, capsys):
    data = _copy_data(crowd_data, tmp_path / "d")
    (data / "images" / "000002.png").unlink()
    assert _train_ae(data, tmp_path / "run") == 2
    one_error_line(capsys, str(data / "annotations.json"), "1 listed image(s) not found",
                   str(data / "images"), "000002.png")
    assert not (tmp_path / "run").exists()


def test_corrupt_image_in_training(crowd_data, tmp_path, capsys):
    data = _copy_data(crowd_data, tmp_path / "d")
    bad = data / "images" / "000002.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    assert _train_ae(data, tmp_path / "run") == 2
    line = one_error_line(capsys, str(bad), "unreadable or corrupt image")
    assert line.count(str(bad)) == 1
    assert not (tmp_path / "run" / "last.pt").exists()


def test_corrupt_image_in_predict_writes_nothing(crowd_runs, crowd_data, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(crowd_data / "images" / "000000.png", folder / "a.png")
    (folder / "b.jpg").write_bytes(b"not a jpeg at all")
    out = tmp_path / "out"
    argv = ["predict", str(folder), "--run", str(crowd_runs["ae"]), "--out", str(out), "--quiet"]
    assert main(argv) == 2
    one_error_line(capsys, str(folder / "b.jpg"), "unreadable or corrupt image")
    assert not out.exists()  # refused before the first figure


def test_empty_dataset_and_empty_folder(crowd_data, tmp_path, capsys):
    data = _copy_data(crowd_data, tmp_path / "d")
    doc = json.loads((data / "annotations.json").read_text())
    doc["images"], doc["annotations"] = [], []
    (data / "annotations.json").write_text(json.dumps(doc))
    assert _train_ae(data, tmp_path / "run") == 2
    one_error_line(capsys, str(data / "annotations.json"), "empty dataset (zero images)")
    empty = tmp_path / "nothing"
    empty.mkdir()
    assert main(["predict", str(empty), "--run", str(tmp_path / "run"), "--out",
                 str(tmp_path / "o"), "--quiet"]) == 2  # fmt: skip
    one_error_line(capsys, str(empty), "no image files")


# ------------------------------------------------------------------ zero and 30 people


def test_zero_and_thirty_people_train_and_predict(crowd_runs, crowd_data, tmp_path):
    prof = get_profile("tiny")
    for name in ("ae", "rmpp"):
        log = json.loads((crowd_runs[name] / "log.jsonl").read_text().splitlines()[-1])
        assert log["epoch"] == 1 and np.isfinite(log["loss" if name == "ae" else "total"])
    # training saw the 30-person image capped to max_people (first 12 in annotation order)
    from rnnpose.data.coco import CocoPoseDataset

    ds = CocoPoseDataset(crowd_data / "annotations.json", crowd_data / "images", 64, 16,
                         max_people=prof.max_people)  # fmt: skip
    assert len(ds[1]["keypoints"]) == 0 and len(ds[2]["keypoints"]) == prof.max_people
    out = tmp_path / "pred"
    images = [str(crowd_data / "images" / f) for f in ("000001.png", "000002.png")]
    for method in ("rmpp", "ae"):
        assert main(["predict", *images, "--run", str(crowd_runs["rmpp"]), "--method", method,
                     "--out", str(out / method), "--quiet", "--device", "cpu"]) == 0
        results = json.loads((out / method / "results.json").read_text())
        for image_id in (1, 2):
            n = sum(r["image_id"] == image_id for r in results)
            assert n <= prof.max_people
        assert (out / method / "000002.png").is_file()
    assert (out / "rmpp" / "000002_iterations.png").is_file()


def test_results_naming_unknown_image_ids(crowd_data, tmp_path, capsys):
    res = tmp_path / "res.json"
    res.write_text(json.dumps([
        {"image_id": 1, "category_id": 1, "keypoints": [1.0] * 51, "score": 0.5},
        {"image_id": 777, "category_id": 1, "keypoints": [1.0] * 51, "score": 0.5},
        {"image_id": 99, "category_id": 1, "keypoints": [1.0] * 51, "score": 0.5},
    ]))  # fmt: skip
    gt = crowd_data / "annotations.json"
    assert main(["eval", "--gt", str(gt), "--results", str(res)]) == 2
    one_error_line(capsys, str(res), "2 result image id(s) not in the ground truth: 99, 777")


# ------------------------------------------------------------------ NaN loss


def test_nan_loss_in_ae_training_keeps_the_last_checkpoint(crowd_data, tmp_path, monkeypatch,
                                                           capsys):  # fmt: skip
    real = train_ae_module.ae_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:  # the first (and only) batch after the resume: epoch 2
            out["total"] = out["total"] * float("nan")
        return out

    run = tmp_path / "run"
    assert _train_ae(crowd_data, run) == 0
    before = (run / "last.pt").read_bytes()
    monkeypatch.setattr(train_ae_module, "ae_loss", poisoned)
    assert _train_ae(crowd_data, run, "--resume", "--epochs", "3") == 1
    one_error_line(capsys, "non-finite loss nan at epoch 2, step 2; training stopped",
                   str(run / "last.pt"))  # fmt: skip
    assert (run / "last.pt").read_bytes() == before
    assert not (run / "epoch_002.pt").exists()


def test_nan_loss_in_rmpp_training_keeps_the_last_checkpoint(crowd_runs, crowd_data, tmp_path,
                                                             monkeypatch, capsys):  # fmt: skip
    real = train_rmpp_module.batched_step
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        res = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # first batch of epoch 2 (2 batches of 3 per epoch)
            res["total"] = float("nan")
        return res

    run = tmp_path / "rmpp"
    argv = ["train", "rmpp", "--ae", str(crowd_runs["ae"]), "--data", str(crowd_data), "--out",
            str(run), "--batch-size", "3", "--T", "2", "--quiet", "--device", "cpu"]
    monkeypatch.setattr(train_rmpp_module, "batched_step", poisoned)
    assert main([*argv, "--epochs", "1"]) == 0
    before = (run / "last.pt").read_bytes()
    assert main([*argv, "--epochs", "2", "--resume"]) == 1
    one_error_line(capsys, "non-finite loss nan at epoch 2, step 3; training stopped",
                   str(run / "last.pt"))  # fmt: skip
    assert (run / "last.pt").read_bytes() == before
    assert load_checkpoint(run / "last.pt")["step"] == 2


# ------------------------------------------------------------------ checkpoints


class _Payload:
    """Unpickling this runs os.mkdir: the kind of code a weights-only load must refuse."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _spoil(run: Path, how: str, marker: Path) -> bytes:
    last = run / "last.pt"
    if how == "truncated":
        last.write_bytes(last.read_bytes()[: 2000])
    else:
        torch.save({"format": "rnnpose-checkpoint-1", "model": _Payload(marker)}, last)
    return last.read_bytes()


@pytest.mark.parametrize("how", ["truncated", "pickled"])
def test_bad_checkpoint_given_to_run_and_resume(crowd_runs, crowd_data, tmp_path, capsys, how):
    marker = tmp_path / "code_ran"
    needle = ("truncated or corrupt checkpoint" if how == "truncated"
              else "refused: the file carries pickled Python objects")  # fmt: skip
    run = tmp_path / "ae"
    shutil.copytree(crowd_runs["ae"], run, ignore=shutil.ignore_patterns("rmpp_features"))
    spoiled = _spoil(run, how, marker)
    config = (run / "config.json").read_text()
    # --run of predict and eval
    image = crowd_data / "images" / "000000.png"
    assert main(["predict", str(image), "--run", str(run), "--out", str(tmp_path / "o"),
                 "--quiet"]) == 2  # fmt: skip
    one_error_line(capsys, str(run / "last.pt"), needle)
    assert not (tmp_path / "o").exists()
    assert main(["eval", "--run", str(run), "--data", str(crowd_data), "--quiet"]) == 2
    one_error_line(capsys, str(run / "last.pt"), needle)
    # --resume of train ae, and an RMPP run whose AE checkpoint is spoiled
    assert _train_ae(crowd_data, run, "--resume", "--epochs", "2") == 2
    one_error_line(capsys, str(run / "last.pt"), needle)
    assert main(["train", "rmpp", "--ae", str(run), "--data", str(crowd_data), "--out",
                 str(tmp_path / "r"), "--quiet"]) == 2  # fmt: skip
    one_error_line(capsys, str(run / "last.pt"), needle)
    # nothing written over, no code run
    assert (run / "last.pt").read_bytes() == spoiled and (run / "config.json").read_text() == config
    assert not marker.exists()


def test_bad_rmpp_checkpoint_given_to_resume(crowd_runs, crowd_data, tmp_path, capsys):
    run = tmp_path / "rmpp"
    shutil.copytree(crowd_runs["rmpp"], run)
    spoiled = _spoil(run, "pickled", tmp_path / "code_ran")
    assert main(["train", "rmpp", "--ae", str(crowd_runs["ae"]), "--data", str(crowd_data),
                 "--out", str(run), "--batch-size", "3", "--T", "2", "--epochs", "2",
                 "--resume", "--quiet"]) == 2  # fmt: skip
    one_error_line(capsys, str(run / "last.pt"), "refused")
    assert (run / "last.pt").read_bytes() == spoiled and not (tmp_path / "code_ran").exists()


def test_run_that_is_not_a_run_folder(crowd_data, tmp_path, capsys):
    image = crowd_data / "images" / "000000.png"
    assert main(["predict", str(image), "--run", str(tmp_path / "nope"), "--out",
                 str(tmp_path / "o"), "--quiet"]) == 2  # fmt: skip
    one_error_line(capsys, str(tmp_path / "nope"), "not a run folder (no config.json)")
    assert main(["train", "rmpp", "--ae", str(tmp_path), "--data", str(crowd_data), "--out",
                 str(tmp_path / "r"), "--quiet"]) == 2  # fmt: skip
    one_error_line(capsys, str(tmp_path), "not a run folder (no config.json)")
