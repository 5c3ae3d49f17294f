"""Bad input through the command line: exit status 2, ONE line on stderr naming the file and
what is wrong, and nothing already written lost. Crowded and empty images are not bad input:
they train and predict. A NaN loss stops training at a named step, last checkpoint untouched."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import zlib
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


# one xdist worker holds the module (``--dist loadgroup``): its module fixtures train once
pytestmark = pytest.mark.xdist_group("bad_input")


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
    root = tmp_path_factory.mktemp("crowd_runs")
    assert main(["train", "ae", "--profile", "tiny", "--data", str(crowd_data), "--out",
                 str(root / "ae"), "--epochs", "1", "--quiet", "--device", "cpu"]) == 0
    assert main(["train", "rmpp", "--ae", str(root / "ae"), "--data", str(crowd_data), "--out",
                 str(root / "rmpp"), "--epochs", "1", "--batch-size", "3", "--T", "2",
                 "--quiet", "--device", "cpu"]) == 0  # fmt: skip
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


def test_empty_dataset_and_empty_folder(crowd_runs, crowd_data, tmp_path, capsys):
    data = _copy_data(crowd_data, tmp_path / "d")
    doc = json.loads((data / "annotations.json").read_text())
    doc["images"], doc["annotations"] = [], []
    (data / "annotations.json").write_text(json.dumps(doc))
    assert _train_ae(data, tmp_path / "run") == 2
    one_error_line(capsys, str(data / "annotations.json"), "empty dataset (zero images)")
    empty = tmp_path / "nothing"
    empty.mkdir()
    assert main(["predict", str(empty), "--run", str(crowd_runs["ae"]), "--out",
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


# ------------------------------------------------------------------ every bad argument (fuzz)


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header claims ``width`` x ``height`` pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))  # fmt: skip

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 8))
            + chunk(b"IEND", b""))  # fmt: skip


@pytest.fixture(scope="module")
def bad(crowd_runs, crowd_data, tmp_path_factory) -> dict[str, Path]:
    """The inputs of the fuzz cases, built once: spoiled copies of the crowd runs, bad results
    and ground-truth files, a decompression bomb, data sets holding it or a wrong image size,
    a regular file, and a folder the test marks read-only (see ``readonly``)."""
    root = tmp_path_factory.mktemp("bad")
    paths = {"root": root, "ae": crowd_runs["ae"], "rmpp": crowd_runs["rmpp"],
             "data": crowd_data, "gt": crowd_data / "annotations.json"}  # fmt: skip
    gt = json.loads(paths["gt"].read_text())
    perfect = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"],
                "score": 1.0} for a in gt["annotations"]]  # fmt: skip

    def results(name: str, edit) -> None:
        recs = json.loads(json.dumps(perfect))
        edit(recs[0])
        (root / name).write_text(json.dumps(recs))

    results("kp_string.json", lambda r: r["keypoints"].__setitem__(4, "12.5"))
    results("score_string.json", lambda r: r.__setitem__("score", "0.9"))
    (root / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (root / "empty_gt.json").write_text(json.dumps({**gt, "images": [], "annotations": []}))
    (root / "perfect.json").write_text(json.dumps(perfect))
    (root / "bomb.png").write_bytes(_png_claiming(100_000, 100_000))
    (root / "a_file").write_text("not a folder\n")
    # run folders whose config.json or checkpoint is wrong in type
    for name in ("config_list", "negative_size", "epoch_string", "fresh_ae"):
        (root / name).mkdir()
        shutil.copy(crowd_runs["ae"] / "config.json", root / name / "config.json")
    # the AE run without its feature cache: a case that extracted features would write one
    shutil.copy(crowd_runs["ae"] / "last.pt", root / "fresh_ae" / "last.pt")
    (root / "config_list" / "config.json").write_text("[1, 2, 3]\n")
    cfg = json.loads((root / "negative_size" / "config.json").read_text())
    cfg["profile"]["input_size"] = -64
    (root / "negative_size" / "config.json").write_text(json.dumps(cfg))
    payload = torch.load(crowd_runs["ae"] / "last.pt", weights_only=True)
    payload["epoch"] = "1"
    torch.save(payload, root / "epoch_string" / "last.pt")
    # issue 20: a run whose weights are NaN; an RMPP run that started on other features; a
    # folder holding only last.pt; ground truth with a non-positive area; bad result fields
    for name in ("nan_weights", "lastonly"):
        (root / name).mkdir()
    shutil.copy(crowd_runs["ae"] / "config.json", root / "nan_weights" / "config.json")
    payload = torch.load(crowd_runs["ae"] / "last.pt", weights_only=True)
    first = next(k for k, v in payload["model"].items() if v.is_floating_point())
    payload["model"][first] = payload["model"][first].clone()
    payload["model"][first].view(-1)[3] = float("nan")
    torch.save(payload, root / "nan_weights" / "last.pt")
    paths["nan_tensor"] = first  # type: ignore[assignment]
    shutil.copy(crowd_runs["ae"] / "last.pt", root / "lastonly" / "last.pt")
    shutil.copytree(crowd_runs["rmpp"], root / "other_features")
    payload = torch.load(crowd_runs["rmpp"] / "last.pt", weights_only=True)
    payload["config"]["features"] = str(Path(payload["config"]["features"]).parent
                                        / "0123456789abcdef.pt")  # fmt: skip
    torch.save(payload, root / "other_features" / "last.pt")
    for name, field, value in (("area_neg.json", "area", -5.0), ("area_zero.json", "area", 0),
                               ("crowd_true.json", "iscrowd", True)):  # fmt: skip
        doc = json.loads(json.dumps(gt))
        doc["annotations"][0][field] = value
        (root / name).write_text(json.dumps(doc))
    results("id_true.json", lambda r: r.__setitem__("image_id", True))
    results("id_string.json", lambda r: r.__setitem__("image_id", "1"))
    results("kp_nested.json", lambda r: r.__setitem__(
        "keypoints", [r["keypoints"][i : i + 3] for i in range(0, 51, 3)]))
    # data sets: the bomb as the first image; a size the annotation does not state; the second
    # image with a valid header but truncated data (met mid-epoch)
    for name in ("bomb_data", "size_data", "truncated_data"):
        shutil.copytree(crowd_data, root / name)
    (root / "bomb_data" / "images" / "000000.png").write_bytes(_png_claiming(100_000, 100_000))
    doc = json.loads((root / "size_data" / "annotations.json").read_text())
    doc["images"][1]["width"] = 65
    (root / "size_data" / "annotations.json").write_text(json.dumps(doc))
    png = root / "truncated_data" / "images" / "000001.png"
    png.write_bytes(png.read_bytes()[:200])
    # a run inside a folder the test reports as read-only
    (root / "readonly").mkdir()
    shutil.copytree(crowd_runs["ae"], root / "readonly" / "ae",
                    ignore=shutil.ignore_patterns("rmpp_features"))  # fmt: skip
    paths.update({p.name: p for p in root.iterdir()})
    return paths


def _tree(*roots: Path) -> dict[str, str]:
    """sha256 of every file (and '<dir>' for every folder) under ``roots``."""
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            out[str(p)] = "<dir>" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


_AE = ["train", "ae", "--profile", "tiny", "--data", "{data}", "--out", "{root}/new",
       "--epochs", "1", "--quiet", "--device", "cpu"]  # fmt: skip
_RMPP = ["train", "rmpp", "--ae", "{ae}", "--data", "{data}", "--out", "{root}/new",
         "--epochs", "1", "--batch-size", "3", "--T", "2", "--quiet", "--device", "cpu"]
_EVAL = ["eval", "--gt", "{gt}", "--results", "{root}/perfect.json"]
_PREDICT = ["predict", "{data}/images/000000.png", "--run", "{ae}", "--out", "{root}/new",
            "--quiet", "--device", "cpu"]  # fmt: skip
_SYNTH = ["synth", "--num", "2", "--size", "64", "--out", "{root}/new", "--quiet"]


def _with(base: list[str], *changes: str) -> list[str]:
    """``base`` with ``--flag value`` pairs replaced or added (a lone ``--flag`` is added)."""
    argv = list(base)
    items = list(changes)
    while items:
        flag = items.pop(0)
        value = items.pop(0) if items and not items[0].startswith("--") else None
        if flag in argv and value is not None:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag] + ([value] if value is not None else [])
    return argv


#: (id, argv, the command named in the error, a piece of the message)
FUZZ: list[tuple[str, list[str], str, str]] = [
    # numbers
    ("ae-epochs-0", _with(_AE, "--epochs", "0"),
     "train ae", "--epochs: must be an integer >= 1"),
    ("ae-seed-neg", _with(_AE, "--seed", "-1"),
     "train ae", "--seed: must be an integer in 0.."),
    ("ae-seed-text", _with(_AE, "--seed", "abc"),
     "train ae", "--seed: expected an integer"),
    ("ae-workers-neg", _with(_AE, "--workers", "-1"),
     "train ae", "--workers: must be an integer >= 0"),
    ("ae-tag-weight-nan", _with(_AE, "--tag-weight", "nan"),
     "train ae", "--tag-weight: must be a finite number"),
    ("ae-tag-weight-neg", _with(_AE, "--tag-weight", "-0.1"),
     "train ae", "--tag-weight: must be a number >= 0"),
    ("ae-device-bogus", _with(_AE, "--device", "bogus"),
     "train ae", "--device: not a device: 'bogus'"),
    ("ae-device-absent", _with(_AE, "--device", "cuda:99"),
     "train ae", "--device: cuda:99: "),
    ("rmpp-T-0", _with(_RMPP, "--T", "0"),
     "train rmpp", "--T: must be an integer >= 1, got 0"),
    ("rmpp-lstm2-depth-0", _with(_RMPP, "--lstm2-depth", "0"),
     "train rmpp", "--lstm2-depth: must be an integer >= 1"),
    ("rmpp-loop-neg", _with(_RMPP, "--loop", "-1"),
     "train rmpp", "--loop: must be an integer >= 0"),
    ("rmpp-omega-nan", _with(_RMPP, "--omega", "nan"),
     "train rmpp", "--omega: must be a finite number in (0, 1)"),
    ("rmpp-omega-1", _with(_RMPP, "--omega", "1"),
     "train rmpp", "--omega: must be a number in (0, 1), got 1"),
    ("rmpp-omega-0", _with(_RMPP, "--omega", "0"),
     "train rmpp", "--omega: must be a number in (0, 1), got 0"),
    ("rmpp-omega-inf", _with(_RMPP, "--omega", "inf"),
     "train rmpp", "--omega: must be a finite number"),
    ("rmpp-batch-0", _with(_RMPP, "--batch-size", "0"),
     "train rmpp", "--batch-size: must be an integer >= 1, got 0"),
    ("rmpp-batch-neg", _with(_RMPP, "--batch-size", "-2"),
     "train rmpp", "--batch-size: must be an integer >= 1, got -2"),
    ("rmpp-max-images-0", _with(_RMPP, "--max-images", "0"),
     "train rmpp", "--max-images: must be an integer >= 1"),
    ("rmpp-subset-0", _with(_RMPP, "--subset", "0"),
     "train rmpp", "--subset: must be an integer >= 1, got 0"),
    ("rmpp-max-iterations-0", _with(_RMPP, "--max-iterations", "0"),
     "train rmpp", "--max-iterations: must be an integer >= 1, got 0"),
    ("rmpp-max-iterations-float", _with(_RMPP, "--max-iterations", "2.5"),
     "train rmpp", "--max-iterations: expected an integer >= 1, got '2.5'"),
    ("rmpp-epochs-0", _with(_RMPP, "--epochs", "0"),
     "train rmpp", "--epochs: must be an integer >= 1"),
    ("rmpp-seed-neg", _with(_RMPP, "--seed", "-1"),
     "train rmpp", "--seed: must be an integer in 0.."),
    ("rmpp-device-bogus", _with(_RMPP, "--device", "gpu"),
     "train rmpp", "--device: not a device: 'gpu'"),
    ("eval-max-dets-0", _with(_EVAL, "--max-dets", "0"),
     "eval", "--max-dets: must be an integer >= 1, got 0"),
    ("eval-max-dets-neg", _with(_EVAL, "--max-dets", "-1"),
     "eval", "--max-dets: must be an integer >= 1, got -1"),
    ("eval-subset-0", _with(_EVAL, "--subset", "0"),
     "eval", "--subset: must be an integer >= 1, got 0"),
    ("eval-run-subset-nan", ["eval", "--run", "{ae}", "--data", "{data}", "--subset", "nan"],
     "eval", "--subset: expected an integer >= 1, got 'nan'"),
    ("eval-run-ann-no-images", ["eval", "--run", "{ae}", "--ann", "{gt}", "--quiet"],
     "eval", "--ann and --images go together"),
    ("eval-run-data-and-ann", ["eval", "--run", "{ae}", "--data", "{data}", "--ann", "{gt}",
                               "--images", "{data}/images", "--quiet"],
     "eval", "--run needs --data DIR or --ann FILE --images DIR (one of them)"),
    ("eval-device-bogus", ["eval", "--run", "{ae}", "--data", "{data}", "--device", "bogus"],
     "eval", "--device: not a device"),
    ("predict-device-bogus", _with(_PREDICT, "--device", "bogus"),
     "predict", "--device: not a device"),
    ("synth-num-0", _with(_SYNTH, "--num", "0"),
     "synth", "--num: must be an integer >= 1, got 0"),
    ("synth-size-8", _with(_SYNTH, "--size", "8"),
     "synth", "--size: must be an integer >= 16, got 8"),
    ("synth-seed-neg", _with(_SYNTH, "--seed", "-1"),
     "synth", "--seed: must be an integer in 0.."),
    ("book-seed-neg", ["book", "--seed", "-1", "--no-html"],
     "book", "--seed: must be an integer in 0.."),
    ("book-device-bogus", ["book", "--device", "bogus", "--no-html"],
     "book", "--device: not a device"),
    # paths
    ("ae-out-is-file", _with(_AE, "--out", "{root}/a_file"),
     "train ae", "a_file: is a file, not a folder"),
    ("ae-out-under-file", _with(_AE, "--out", "{root}/a_file/run"),
     "train ae", "a_file/run: cannot be created: "),
    ("rmpp-out-under-file", _with(_RMPP, "--out", "{root}/a_file/run"),
     "train rmpp", "a_file is a file, not a folder"),
    ("predict-out-is-file", _with(_PREDICT, "--out", "{root}/a_file"),
     "predict", "a_file: is a file, not a folder"),
    ("synth-out-under-file", _with(_SYNTH, "--out", "{root}/a_file/d"),
     "synth", "a_file is a file, not a folder"),
    ("ae-data-missing", _with(_AE, "--data", "{root}/nothing"),
     "train ae", "nothing: no such folder"),
    ("ae-ann-is-folder", _with(_AE, "--ann", "{data}", "--images", "{data}/images"),
     "train ae", "--ann: "),
    ("eval-gt-missing", _with(_EVAL, "--gt", "{root}/nothing.json"),
     "eval", "nothing.json: no such file"),
    ("eval-results-folder", _with(_EVAL, "--results", "{root}"),
     "eval", "is a folder, not a file"),
    ("predict-run-not-run", _with(_PREDICT, "--run", "{data}"),
     "predict", "not a run folder (no config.json)"),
    ("rmpp-ae-is-file", _with(_RMPP, "--ae", "{root}/a_file"),
     "train rmpp", "not a run folder (a file, not a folder)"),
    ("rmpp-init-not-run", _with(_RMPP, "--init", "{data}"),
     "train rmpp", "--init: "),
    ("ae-missing-out", ["train", "ae", "--data", "{data}"],
     "train ae", "the following arguments are required: --out"),
    # no run is overwritten
    ("rmpp-out-holds-rmpp", _with(_RMPP, "--out", "{rmpp}", "--ae", "{fresh_ae}"),
     "train rmpp", "already holds an rmpp run; pass --resume"),
    ("rmpp-out-is-its-ae", _with(_RMPP, "--out", "{ae}"),
     "train rmpp", "already holds an ae run; pass --resume"),
    ("rmpp-resume-into-ae", _with(_RMPP, "--out", "{ae}", "--resume"),
     "train rmpp", "cannot resume: it holds an ae run, not rmpp"),
    ("rmpp-resume-other-T",
     _with(_RMPP, "--out", "{rmpp}", "--resume", "--T", "3", "--ae", "{fresh_ae}"),
     "train rmpp", "cannot resume: the run was started with a different 'profile'"),
    ("rmpp-resume-other-seed", _with(_RMPP, "--out", "{rmpp}", "--resume", "--seed", "5"),
     "train rmpp", "different 'seed'"),
    ("ae-out-holds-rmpp", _with(_AE, "--out", "{rmpp}"),
     "train ae", "already holds an rmpp run; pass --resume"),
    ("ae-out-holds-ae", _with(_AE, "--out", "{ae}"),
     "train ae", "already holds an ae run; pass --resume"),
    ("ae-resume-into-rmpp", _with(_AE, "--out", "{rmpp}", "--resume"),
     "train ae", "cannot resume: it holds an rmpp run, not ae"),
    # read-only output folders (os.access reports them so; see the test)
    ("ae-out-readonly", _with(_AE, "--out", "{readonly}/run"),
     "train ae", "cannot be created: "),
    ("ae-resume-readonly", _with(_AE, "--out", "{readonly}/ae", "--resume", "--epochs", "2"),
     "train ae", "readonly/ae: not writable"),
    ("rmpp-out-readonly", _with(_RMPP, "--out", "{readonly}/run"),
     "train rmpp", "not writable"),
    ("predict-out-readonly", _with(_PREDICT, "--out", "{readonly}/p"),
     "predict", "not writable"),
    ("synth-out-readonly", _with(_SYNTH, "--out", "{readonly}/s"),
     "synth", "not writable"),
    # results and ground-truth files
    ("eval-kp-string", _with(_EVAL, "--results", "{root}/kp_string.json"),
     "eval", "result #0 (image 1): 'keypoints' holds a non-number ('12.5')"),
    ("eval-score-string", _with(_EVAL, "--results", "{root}/score_string.json"),
     "eval", "'score' must be a number, got '0.9'"),
    ("eval-results-deep", _with(_EVAL, "--results", "{root}/deep.json"),
     "eval", "deep.json: JSON nested too deeply to read"),
    ("eval-gt-deep", _with(_EVAL, "--gt", "{root}/deep.json"),
     "eval", "deep.json: JSON nested too deeply to read"),
    ("eval-gt-empty", _with(_EVAL, "--gt", "{root}/empty_gt.json"),
     "eval", "empty_gt.json: empty dataset (zero images)"),
    # run folders and checkpoints of the wrong types
    ("predict-config-list", _with(_PREDICT, "--run", "{config_list}"),
     "predict", "config.json: expected a JSON object, got a list"),
    ("eval-config-list", ["eval", "--run", "{config_list}", "--data", "{data}", "--quiet"],
     "eval", "expected a JSON object, got a list"),
    ("rmpp-ae-config-list", _with(_RMPP, "--ae", "{config_list}"),
     "train rmpp", "expected a JSON object, got a list"),
    ("ae-resume-config-list", _with(_AE, "--out", "{config_list}", "--resume"),
     "train ae", "expected a JSON object, got a list"),
    ("predict-negative-size", _with(_PREDICT, "--run", "{negative_size}"),
     "predict", "field 'input_size' must be a finite number > 0, got -64"),
    ("rmpp-ae-negative-size", _with(_RMPP, "--ae", "{negative_size}"),
     "train rmpp", "field 'input_size' must be a finite number > 0"),
    ("predict-epoch-string", _with(_PREDICT, "--run", "{epoch_string}"),
     "predict", "last.pt: field 'epoch' must be an integer >= 0, got '1'"),
    ("ae-resume-epoch-string", _with(_AE, "--out", "{epoch_string}", "--resume", "--epochs", "2"),
     "train ae", "field 'epoch' must be an integer >= 0"),
    # images: a decompression bomb, a size other than the annotation's, truncated data
    ("predict-bomb", [*_PREDICT[:2], "{root}/bomb.png", *_PREDICT[2:]],
     "predict", "bomb.png: unreadable or corrupt image (decompression-bomb guard: "),
    ("ae-bomb", _with(_AE, "--data", "{bomb_data}"),
     "train ae", "000000.png: unreadable or corrupt image (decompression-bomb guard"),
    ("rmpp-bomb", _with(_RMPP, "--data", "{bomb_data}"),
     "train rmpp", "unreadable or corrupt image (decompression-bomb guard"),
    ("eval-run-bomb",
     ["eval", "--run", "{ae}", "--data", "{bomb_data}", "--quiet", "--device", "cpu"],
     "eval", "decompression-bomb guard"),
    ("ae-size-mismatch", _with(_AE, "--data", "{size_data}"),
     "train ae", "000001.png: image is 64x64 but"),
    ("ae-truncated-image", _with(_AE, "--data", "{truncated_data}"),
     "train ae", "000001.png: unreadable or corrupt image"),
    # ---- issue 20
    # 1. a resume on another AE network's features ("other settings", refused before reading)
    ("rmpp-resume-other-ae", _with(_RMPP, "--out", "{rmpp}", "--resume", "--ae", "{fresh_ae}"),
     "train rmpp", "cannot resume: the run was started with a different 'ae_run'"),
    ("rmpp-resume-other-features", _with(_RMPP, "--out", "{other_features}", "--resume"),
     "train rmpp", "cannot resume: the run was started with different 'features'"),
    # 3. predict and synth never write into a folder that holds a run
    ("predict-out-is-run", _with(_PREDICT, "--out", "{ae}"),
     "predict", "holds a run (config.json, last.pt, log.jsonl or epoch_NNN.pt)"),
    ("predict-out-is-rmpp-run", _with(_PREDICT, "--out", "{rmpp}"),
     "predict", "rmpp: holds a run"),
    ("synth-out-is-run", _with(_SYNTH, "--out", "{ae}"),
     "synth", "already exists and is not empty"),
    # a folder holding only last.pt is a run folder: nothing writes into it without --resume
    ("ae-out-holds-last-only", _with(_AE, "--out", "{lastonly}"),
     "train ae", "lastonly: already holds a run; pass --resume"),
    ("rmpp-out-holds-last-only", _with(_RMPP, "--out", "{lastonly}"),
     "train rmpp", "lastonly: already holds a run; pass --resume"),
    ("predict-out-holds-last-only", _with(_PREDICT, "--out", "{lastonly}"),
     "predict", "lastonly: holds a run"),
    # 4. non-finite weights: named at load
    ("predict-nan-weights", _with(_PREDICT, "--run", "{nan_weights}"),
     "predict", "last.pt: field 'model': tensor '{nan_tensor}' holds non-finite values (nan"),
    ("eval-nan-weights", ["eval", "--run", "{nan_weights}", "--data", "{data}", "--quiet"],
     "eval", "last.pt: field 'model': tensor '{nan_tensor}' holds non-finite values"),
    ("rmpp-ae-nan-weights", _with(_RMPP, "--ae", "{nan_weights}"),
     "train rmpp", "holds non-finite values"),
    # 5. ground truth whose area OKS divides by is not positive
    ("eval-gt-area-negative", _with(_EVAL, "--gt", "{root}/area_neg.json"),
     "eval", "field 'area' must be > 0 for a person with keypoints, got -5.0"),
    ("eval-gt-area-zero", _with(_EVAL, "--gt", "{root}/area_zero.json"),
     "eval", "field 'area' must be > 0 for a person with keypoints, got 0"),
    ("eval-gt-iscrowd-bool", _with(_EVAL, "--gt", "{root}/crowd_true.json"),
     "eval", "field 'iscrowd' must be 0 or 1, got True"),
    # 6. results: bools are not numbers, a string id is named as one, nested keypoints refused
    ("eval-image-id-true", _with(_EVAL, "--results", "{root}/id_true.json"),
     "eval", "result #0: 'image_id' must be an integer, got a boolean (True)"),
    ("eval-image-id-string", _with(_EVAL, "--results", "{root}/id_string.json"),
     "eval", "result #0: 'image_id' must be an integer, got a string ('1')"),
    ("eval-kp-nested", _with(_EVAL, "--results", "{root}/kp_nested.json"),
     "eval", "result #0 (image 1): 'keypoints' must be a flat list of 51 numbers, got a "
     "nested list"),
    # 9. book --only without a name
    ("book-only-empty", ["book", "--only", "--no-html"],
     "book", "argument --only: expected at least one argument"),
    ("book-only-empty-publish", ["book", "--only", "--publish", "{root}/pub", "--no-html"],
     "book", "argument --only: expected at least one argument"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "command", "needle"), [c[1:] for c in FUZZ],
                         ids=[c[0] for c in FUZZ])  # fmt: skip
def test_every_bad_argument_is_one_line_and_exit_2(bad, argv, command, needle, capsys,
                                                   monkeypatch):  # fmt: skip
    """Exit 2, exactly one stderr line ``rnnpose COMMAND: error: ...``, no traceback, and not
    one byte written: every file under the runs, the data and the case's folder keeps its
    sha256, and no file or folder appears (``{root}/new`` is never created)."""
    readonly = bad["readonly"]
    real_access = os.access

    def access(path, mode, *args, **kwargs):  # as root, only a read-only mount refuses writes
        p = Path(path).absolute()
        if mode & os.W_OK and (p == readonly or readonly in p.parents):
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    argv = [a.format(**bad) for a in argv]
    needle = needle.format(**bad)
    watched = (bad["root"], bad["ae"], bad["rmpp"], bad["data"])
    before = _tree(*watched)
    capsys.readouterr()
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and out == ""
    lines = err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"rnnpose {command}: error: "), lines[0]
    assert needle in lines[0], (needle, lines[0])
    assert _tree(*watched) == before


# ------------------------------------------------------------------ not errors, but once lost


def test_predict_keeps_one_output_per_input_when_names_collide(crowd_runs, crowd_data, tmp_path,
                                                               capsys):  # fmt: skip
    """Two inputs named x.png (and an X.PNG) from different folders: three figures, named in
    input order x, X-2, x-3 (compared case-blind), mapped in images.json and printed."""
    for folder, src, name in [("a", "000000.png", "x.png"), ("b", "000001.png", "x.png"),
                              ("b", "000004.png", "X.PNG")]:  # fmt: skip
        (tmp_path / folder).mkdir(exist_ok=True)
        shutil.copy(crowd_data / "images" / src, tmp_path / folder / name)
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "a" / "x.png"), str(tmp_path / "b"), "--run",
                 str(crowd_runs["ae"]), "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    files = json.loads((out / "images.json").read_text())
    inputs = [tmp_path / "a" / "x.png", tmp_path / "b" / "X.PNG", tmp_path / "b" / "x.png"]
    assert [f["file_name"] for f in files] == [str(p) for p in inputs]
    assert [f["figure"] for f in files] == ["x.png", "X-2.png", "x-3.png"]
    assert sorted(p.name for p in out.glob("*.png")) == ["X-2.png", "x-3.png", "x.png"]
    assert f"{inputs[1]}: file name taken by an earlier input; figure X-2.png" in printed
    assert f"{inputs[2]}: file name taken by an earlier input; figure x-3.png" in printed
    # each figure is its own input's: the pictures differ as the inputs do
    from PIL import Image

    figs = [np.asarray(Image.open(out / f["figure"])) for f in files]
    assert not np.array_equal(figs[0], figs[2]) and not np.array_equal(figs[1], figs[2])


def test_output_names_never_meet_an_iteration_strip():
    from rnnpose.predict import output_names

    paths = [Path("a/p_iterations.png"), Path("b/p.png"), Path("c/p.png"), Path("d/P-2.jpg")]
    assert output_names(paths) == ["p_iterations", "p-2", "p-3", "P-2-2"]


@pytest.mark.parametrize("spoil", ["plain_tensor", "other_images", "garbage"])
def test_a_spoiled_feature_cache_is_recomputed(crowd_runs, crowd_data, tmp_path, spoil):
    """A cache file replaced by a plain tensor, one of other images, or bytes that are no
    checkpoint at all: treated as stale, recomputed and rewritten (never a traceback)."""
    from rnnpose.data.coco import CocoPoseDataset
    from rnnpose.features import extract_features, load_feature_set
    from rnnpose.train.ae import load_ae

    model, prof = load_ae(crowd_runs["ae"])
    ds = CocoPoseDataset(crowd_data / "annotations.json", crowd_data / "images", prof.input_size,
                         prof.output_size)  # fmt: skip
    fresh = extract_features(model, ds, batch_size=8)
    cache = tmp_path / "f.pt"
    if spoil == "plain_tensor":
        torch.save(torch.zeros(3), cache)
    elif spoil == "other_images":
        extract_features(model, ds, batch_size=8, cache_file=cache)
        payload = torch.load(cache, weights_only=True)
        payload["image_ids"] = [i + 100 for i in payload["image_ids"]]
        torch.save(payload, cache)
    else:
        cache.write_bytes(b"\x00" * 64)
    got = extract_features(model, ds, batch_size=8, cache_file=cache)
    assert got.image_ids == ds.image_ids and torch.equal(got.features, fresh.features)
    assert load_feature_set(cache).image_ids == ds.image_ids  # rewritten


# ------------------------------------------------------------------ a write the disk refuses


def test_a_refused_write_on_resume_leaves_the_run_as_it_was(crowd_runs, crowd_data, tmp_path):
    """``ulimit -f`` (a full disk, a quota) under ``train ae --resume``: one line, exit 2, and
    every file of the run byte-identical -- config.json never says ``epochs: 2`` while last.pt
    is still epoch 1 (the config is written with the checkpoint it describes)."""
    import resource
    import subprocess
    import sys

    run = tmp_path / "ae"
    shutil.copytree(crowd_runs["ae"], run, ignore=shutil.ignore_patterns("rmpp_features"))
    before = _tree(run)
    size = (run / "last.pt").stat().st_size
    limit = size // 2  # config.json and the log fit, a checkpoint does not

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    cmd = [sys.executable, "-m", "rnnpose", "train", "ae", "--profile", "tiny", "--data",
           str(crowd_data), "--out", str(run), "--resume", "--epochs", "2", "--quiet",
           "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=cap, env=env,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("rnnpose train ae: error: ") and str(run) in lines[0]
    assert "epoch_002.pt: cannot be written (the file system refused the write, e.g. a full " \
           "disk or a file-size limit: unexpected pos " in lines[0]
    assert lines[0].endswith("; nothing was replaced")
    assert _tree(run) == before  # no epoch_002.pt, no temp file, config and log as they were


def test_a_refused_write_in_the_first_epoch_leaves_no_folder(crowd_data, tmp_path, monkeypatch,
                                                              capsys):  # fmt: skip
    """torch.save failing as it does on a full disk (RuntimeError 'unexpected pos'): one line,
    exit 2, and no run folder (config.json was not written ahead of its checkpoint)."""
    import rnnpose.checkpoint as ck

    def full_disk(obj, fh, *args, **kwargs):
        fh.write(b"PK\x03\x04")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")

    monkeypatch.setattr(ck.torch, "save", full_disk)
    run = tmp_path / "run"
    assert _train_ae(crowd_data, run) == 2
    line = one_error_line(capsys, "rnnpose train ae: error: ", str(run / "epoch_001.pt"),
                          "cannot be written (the file system refused the write, e.g. a full "
                          "disk or a file-size limit: unexpected pos 64 vs 0); nothing was "
                          "replaced")  # fmt: skip
    assert "Traceback" not in line
    assert not run.exists()
