"""Synthetic benchmark: determinism, COCO validity, crowding statistics, visibility flags."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

import rnnpose.data.synthetic as synth
from rnnpose.cli import main
from rnnpose.data.coco import CocoPoseDataset
from rnnpose.evaluate import evaluate_keypoints
from rnnpose.io import DataError


def load(ds_dir):
    return json.loads((ds_dir / "annotations.json").read_text())


def decode(ann):
    return mask_utils.decode({"size": ann["segmentation"]["size"],
                              "counts": ann["segmentation"]["counts"].encode()}).astype(bool)


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = synth.generate("occluded", 6, 11, 64, tmp_path / "a", quiet=True)
    b = synth.generate("occluded", 6, 11, 64, tmp_path / "b", quiet=True)
    c = synth.generate("occluded", 6, 12, 64, tmp_path / "c", quiet=True)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 7
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (a / "images/000000.png").read_bytes() != (c / "images/000000.png").read_bytes()


def test_coco_format_and_gt_scores_100(tiny_synth):
    data = load(tiny_synth)
    assert len(data["images"]) == 16 and data["categories"][0]["name"] == "person"
    for ann in data["annotations"]:
        assert len(ann["keypoints"]) == 51 and ann["iscrowd"] == 0 and ann["category_id"] == 1
        v = np.array(ann["keypoints"][2::3])
        assert ann["num_keypoints"] == int((v > 0).sum())
        assert ann["area"] > 0 and ann["bbox"][2] > 0 and ann["bbox"][3] > 0
    ann_file, images = synth.dataset_files(tiny_synth)
    ds = CocoPoseDataset(ann_file, images, 64, 16)  # loads and validates
    assert ds[0]["image"].shape == (3, 64, 64)
    res = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"],
            "score": 1.0} for a in data["annotations"] if a["num_keypoints"] > 0]
    assert evaluate_keypoints(ann_file, res)["AP"] == pytest.approx(100.0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_visibility_follows_depth_order(tiny_synth):
    """Annotations are written far to near: a labelled joint that lies in a nearer person's
    visible mask has v=1; a v=2 joint is never under a nearer person."""
    data = load(tiny_synth)
    covered = 0
    for im in data["images"]:
        anns = [a for a in data["annotations"] if a["image_id"] == im["id"]]
        masks = [decode(a) for a in anns]
        for i, a in enumerate(anns):
            kp = np.array(a["keypoints"]).reshape(17, 3)
            for x, y, v in kp:
                if v == 0:
                    continue
                px, py = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
                under = any(m[py, px] for m in masks[i + 1 :])
                covered += under
                assert not (under and v == 2)
    assert covered > 10


def test_out_of_frame_joints_are_unlabelled_and_zero(tiny_synth):
    data = load(tiny_synth)
    kp = np.array([a["keypoints"] for a in data["annotations"]]).reshape(-1, 17, 3)
    out = kp[..., 2] == 0
    assert out.sum() > 0 and (kp[out][:, :2] == 0).all()
    lab = kp[~out]
    assert (lab[:, :2] >= -0.5).all() and (lab[:, :2] < 64 - 0.5).all()


def test_presets_statistics(tmp_path):
    occ = synth.generate("occluded", 30, 0, 96, tmp_path / "occ", quiet=True)
    st = synth.dataset_statistics(occ / "annotations.json")
    assert st["frac_images_pair_iou_ge_0.5"] == 1.0  # every image has an overlapping pair
    assert 0.58 <= st["mean_iou_pairs_ge_0.5"] <= 0.75  # OCHuman: 0.67
    assert st["occluded_joint_fraction"] > 0.1
    sparse = synth.generate("sparse", 30, 0, 96, tmp_path / "sparse", quiet=True)
    st = synth.dataset_statistics(sparse / "annotations.json")
    assert st["frac_images_pair_iou_ge_0.5"] <= 0.1
    assert set(st["people_per_image"]) <= set(range(1, 7))
    train = synth.generate("train", 40, 0, 64, tmp_path / "train", quiet=True)
    st = synth.dataset_statistics(train / "annotations.json")
    assert max(st["people_per_image"]) >= 10 and min(st["people_per_image"]) <= 2
    assert 0.2 < st["frac_images_pair_iou_ge_0.5"] < 0.9


def test_people_have_left_right_consistency():
    """Facing the camera, a person's left shoulder is on the image's right; from behind, on
    its left; a face turned away carries v=1 on the nose and eyes."""
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(60):
        body = synth.make_body(rng, 100.0, kind="standing")
        dx = body.joints[5, 0] - body.joints[6, 0]  # left minus right shoulder
        c = np.cos(np.radians(body.yaw))
        if c > 0.5:
            assert dx > 0
            seen.add("front")
        elif c < -0.5:
            assert dx < 0
            seen.add("back")
        if c < -0.9:
            assert body.face_away[0]
    assert seen == {"front", "back"}


def test_ensure_dataset_caches_and_interrupted_runs_leave_nothing(tmp_path, monkeypatch):
    out = synth.ensure_dataset("sparse", 3, 5, 48, root=tmp_path, quiet=True)
    assert out.name == f"sparse-n3-s5-px48-v{synth.GENERATOR_VERSION}"
    stamp = (out / "annotations.json").stat().st_mtime_ns
    assert synth.ensure_dataset("sparse", 3, 5, 48, root=tmp_path, quiet=True) == out
    assert (out / "annotations.json").stat().st_mtime_ns == stamp

    calls = []

    def boom(rng, preset, size):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(rng, preset, size)

    real = synth.render_scene
    monkeypatch.setattr(synth, "render_scene", boom)
    with pytest.raises(KeyboardInterrupt):
        synth.ensure_dataset("sparse", 3, 6, 48, root=tmp_path, quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_cli_and_errors(tmp_path, capsys):
    assert main(["synth", "--preset", "sparse", "--num", "2", "--seed", "1", "--size", "32",
                 "--out", str(tmp_path / "s"), "--quiet"]) == 0  # fmt: skip
    assert len(list((tmp_path / "s/images").glob("*.png"))) == 2
    assert main(["synth", "--num", "2", "--out", str(tmp_path / "s"), "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err
    with pytest.raises(DataError, match="unknown preset"):
        synth.generate("dense", 2, 0, 32, tmp_path / "x")
