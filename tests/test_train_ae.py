"""AE training: loss goes down, resume gives the same weights, NaN guard, CLI, loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rnnpose.checkpoint import load_checkpoint
from rnnpose.cli import main
from rnnpose.config import get_profile
from rnnpose.data.coco import CocoPoseDataset, collate
from rnnpose.losses.ae import ae_loss
from rnnpose.models.hourglass import PoseNet
from rnnpose.train import ae as train_module
from rnnpose.train.ae import batch_targets, epoch_order, load_ae, train_ae
from rnnpose.train.common import NonFiniteLossError, seed_everything

PROFILE = get_profile("tiny", ae_batch_size=4)


@pytest.fixture(scope="module")
def data_dir(tiny_synth, tmp_path_factory):
    """The first 8 images of the shared tiny synthetic set (two batches of 4 per epoch)."""
    data = json.loads((tiny_synth / "annotations.json").read_text())
    keep = {im["id"] for im in data["images"][:8]}
    data["images"] = data["images"][:8]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    out = tmp_path_factory.mktemp("ae8")
    (out / "annotations.json").write_text(json.dumps(data))
    (out / "images").symlink_to(tiny_synth / "images")
    return out


def _fixed_batch_loss(model, data_dir) -> float:
    ds = CocoPoseDataset(data_dir / "annotations.json", data_dir / "images", 64, 16)
    batch = collate([ds[i] for i in range(4)])
    heat, idx = batch_targets(batch, PROFILE)
    model.train()  # batch statistics: comparable before and after a few steps
    with torch.no_grad():
        return ae_loss(model(batch["image"]), heat, batch["mask"], idx)["total"].item()


def test_one_epoch_reduces_the_loss(data_dir, tmp_path):
    seed_everything(0)
    before = _fixed_batch_loss(PoseNet(PROFILE), data_dir)
    run = train_ae(PROFILE, data_dir, tmp_path / "run", epochs=1, quiet=True)
    model, profile = load_ae(run)
    assert profile == PROFILE and not model.training
    after = _fixed_batch_loss(model, data_dir)
    assert after < 0.9 * before  # 0.092 -> 0.072 on CPU, seed 0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log[0]["epoch"] == 1 and log[0]["batches"] == 2
    assert log[0]["loss_last_batch"] < log[0]["loss_first_batch"]
    config = json.loads((run / "config.json").read_text())
    assert config["method"] == "ae" and config["profile"]["name"] == "tiny" and "env" in config
    assert (run / "epoch_001.pt").is_file() and load_checkpoint(run / "last.pt")["step"] == 2


def test_resume_gives_the_same_weights(data_dir, tmp_path):
    prof = PROFILE.replace(ae_lr_drop_epoch=2)  # the rate drops x0.1 in the resumed epoch
    straight = train_ae(prof, data_dir, tmp_path / "a", epochs=2, quiet=True)
    first = load_checkpoint(tmp_path / "a" / "epoch_001.pt")["optimizer"]["param_groups"][0]
    assert first["lr"] == pytest.approx(1e-3)
    train_ae(prof, data_dir, tmp_path / "b", epochs=1, quiet=True)
    resumed = train_ae(prof, data_dir, tmp_path / "b", epochs=2, quiet=True, resume=True)
    a = load_checkpoint(straight / "last.pt")
    b = load_checkpoint(resumed / "last.pt")
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"] == 4
    assert a["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-4)
    assert b["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-4)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    # a finished run resumed again does nothing; a fresh start over it is refused
    train_ae(prof, data_dir, tmp_path / "b", epochs=2, quiet=True, resume=True)
    assert load_checkpoint(resumed / "last.pt")["step"] == 4
    with pytest.raises(Exception, match="already holds an ae run"):
        train_ae(prof, data_dir, tmp_path / "b", epochs=2, quiet=True)


def test_data_order_depends_on_seed_and_epoch_only():
    assert epoch_order(10, 3, 1) == epoch_order(10, 3, 1)
    assert epoch_order(10, 3, 1) != epoch_order(10, 3, 2)
    assert sorted(epoch_order(10, 3, 1)) == list(range(10))


def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(data_dir, tmp_path, monkeypatch):
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        out = ae_loss(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 4:  # second batch of epoch 2
            out["total"] = out["total"] * float("nan")
        return out

    monkeypatch.setattr(train_module, "ae_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match="epoch 2, step 4"):
        train_ae(PROFILE, data_dir, tmp_path / "run", epochs=3, quiet=True)
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["epoch"] == 1 and all(torch.isfinite(v).all() for v in last["model"].values())
    assert not (tmp_path / "run" / "epoch_002.pt").exists()


def test_cli_trains_and_refuses_a_mismatched_resume(data_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["train", "ae", "--profile", "tiny", "--data", str(data_dir), "--out", str(out)]
    assert main([*args, "--epochs", "1", "--quiet"]) == 0
    assert (out / "last.pt").is_file()
    assert main(["train", "ae", "--profile", "cpu", "--data", str(data_dir), "--out", str(out),
                 "--resume", "--quiet"]) == 2  # fmt: skip
    assert "different 'profile'" in capsys.readouterr().err
    assert main([*args[:-2], "--out", str(tmp_path / "x"), "--data", str(tmp_path)]) == 2


def test_real_coco_sample_via_ann_and_images(real_samples, tmp_path):
    sample = real_samples / "coco-val2017-sample"
    run = train_ae(
        PROFILE, None, tmp_path / "coco", epochs=1, quiet=True,
        ann_file=sample / "test_coco.json", image_root=sample,
    )  # fmt: skip
    model, profile = load_ae(run)
    from PIL import Image

    from rnnpose.inference import predict_ae

    image = np.asarray(Image.open(sample / "000000000785.jpg").convert("RGB"))
    people = predict_ae(model, image, profile, flip=True, detection_threshold=-1e9)
    assert people
    h, w = image.shape[:2]
    for person in people:
        xy = person["keypoints"][:, :2]
        # letterboxed to a square: points stay within the padded square around the image
        assert (xy > -max(h, w) / 2).all() and (xy < max(h, w) * 1.5).all()


def test_loss_weights_default_to_ae_and_can_be_overridden():
    from rnnpose.train.ae import loss_weights

    assert loss_weights(get_profile("paper")) == {"push_weight": 1e-3, "pull_weight": 1e-3}
    assert PROFILE.ae_tag_weight == 0.1  # the tiny profile's (short schedule)
    assert loss_weights(PROFILE) == {"push_weight": 0.1, "pull_weight": 0.1}
    extra = PROFILE.replace(extra={"ae_push_weight": 0.5})
    assert loss_weights(extra) == {"push_weight": 0.5, "pull_weight": 0.1}
    assert loss_weights(extra, tag_weight=0.1) == {"push_weight": 0.1, "pull_weight": 0.1}


def test_real_interruption_then_resume_gives_the_same_weights(tiny_synth, tmp_path, monkeypatch,
                                                              capsys):  # fmt: skip
    """Ctrl-C inside epoch 2 (after one more optimiser step), then ``--resume``, through the CLI:
    same weights as an uninterrupted run (16 images, batch 8: 2 steps per epoch)."""
    argv = ["train", "ae", "--profile", "tiny", "--data", str(tiny_synth), "--epochs", "2",
            "--quiet", "--device", "cpu"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    real, calls = train_module.ae_loss, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # second batch of epoch 2: step 3 was already applied
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "ae_loss", interrupted)
    assert main([*argv, "--out", str(tmp_path / "b")]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 1
    monkeypatch.setattr(train_module, "ae_loss", real)
    assert main([*argv, "--out", str(tmp_path / "b"), "--resume"]) == 0
    a = load_checkpoint(tmp_path / "a" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "last.pt")
    assert a["step"] == b["step"] == 4
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for x, y in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(),
                    strict=True):  # fmt: skip
        assert torch.equal(x["exp_avg"], y["exp_avg"])
