"""CocoPoseDataset on the real samples, augmentation, ignore mask and input validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from rnnpose.data.coco import CocoPoseDataset, collate
from rnnpose.data.transforms import apply_affine, invert_affine
from rnnpose.io import DataError
from rnnpose.skeleton import FLIP_INDEX

PEOPLE_COCO = {785: 1, 40083: 2, 196141: 4, 197388: 5}  # num_keypoints > 0, not crowd


def person(image_id, ann_id, xy=(10.0, 12.0), **extra):
    kp = []
    for j in range(17):
        kp += [xy[0] + j, xy[1] + j % 3, 2]
    return {"id": ann_id, "image_id": image_id, "keypoints": kp, "num_keypoints": 17,
            "iscrowd": 0, "category_id": 1, "bbox": [xy[0], xy[1], 17, 3], "area": 51.0,
            **extra}  # fmt: skip


def make_set(tmp_path, anns, images=None, mode="RGB", size=(40, 32)):
    images = images or [{"id": 1, "file_name": "a.png", "width": size[0], "height": size[1]}]
    for im in images:
        if not (tmp_path / im["file_name"]).exists():
            Image.new(mode, (im["width"], im["height"])).save(tmp_path / im["file_name"])
    ann_file = tmp_path / "ann.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": anns}))
    return ann_file


def test_real_coco_samples(real_samples):
    root = real_samples / "coco-val2017-sample"
    ds = CocoPoseDataset(root / "test_coco.json", root, 128, 32)
    assert ds.image_ids == sorted(PEOPLE_COCO) and len(ds) == 4
    for i, image_id in enumerate(ds.image_ids):
        s = ds[i]
        assert s["image_id"] == image_id
        assert s["image"].shape == (3, 128, 128) and s["image"].dtype == torch.float32
        assert 0.0 <= s["image"].min() and s["image"].max() <= 1.0
        assert s["keypoints"].shape == (PEOPLE_COCO[image_id], 17, 3)
        # predictions map back: the inverse affine restores the original labelled joints
        orig = ds.people(image_id)
        back = apply_affine(s["keypoints"].double().numpy(), invert_affine(s["affine"]))
        lab = orig[..., 2] > 0
        assert back[lab][:, :2] == pytest.approx(orig[lab][:, :2], abs=1e-3)
        assert (s["keypoints"][..., 2][torch.from_numpy(~lab)] == 0).all()
        assert s["orig_size"] == ds.load_image(image_id).shape[:2]
    # image 40083 has a person without keypoints (area 491 px): zeroed in the ignore mask
    m = ds[1]["mask"]
    assert m.shape == (32, 32) and 0 < (m == 0).sum() < 20
    assert (ds[0]["mask"] == 1).all()


def test_real_ochuman_samples(real_samples):
    root = real_samples / "ochuman-sample"
    ds = CocoPoseDataset(root / "test_ochuman.json", root, 64, 16)
    assert [len(ds[i]["keypoints"]) for i in range(3)] == [1, 2, 2]
    batch = collate([ds[0], ds[1]])
    assert batch["keypoints"].shape == (2, 2, 17, 3)
    assert batch["num_people"].tolist() == [1, 2]
    assert (batch["keypoints"][0, 1] == 0).all()
    assert batch["image"].shape == (2, 3, 64, 64) and batch["mask"].shape == (2, 16, 16)
    assert batch["image_id"] == [1, 2] and len(batch["affine"]) == 2


def test_augmentation_seeded_and_flip_swaps_joints(real_samples):
    root = real_samples / "coco-val2017-sample"
    ds = CocoPoseDataset(root / "test_coco.json", root, 128, 32, train=True, seed=3)
    a, b = ds[0], ds[0]
    assert torch.equal(a["image"], b["image"]) and np.array_equal(a["affine"], b["affine"])
    ds.set_epoch(1)
    assert not np.array_equal(ds[0]["affine"], a["affine"])
    for epoch in range(20):  # find a flipped draw
        ds.set_epoch(epoch)
        A, flip = ds.sample_affine(0, 425, 640)
        if flip:
            break
    assert flip
    got = ds[0]["keypoints"][0].double().numpy()
    warped = apply_affine(ds.people(785), A)[0]  # mirrored, joints not yet swapped
    for j in range(17):
        if got[j, 2] > 0:
            assert got[j, :2] == pytest.approx(warped[FLIP_INDEX[j], :2], abs=1e-3)
    # the skier of image 785 faces the camera: the left shoulder is right of the right one,
    # with or without the mirror, once left and right are swapped
    plain = CocoPoseDataset(root / "test_coco.json", root, 128, 32)[0]["keypoints"][0]
    assert plain[5, 0] > plain[6, 0] and got[5, 0] > got[6, 0]


def test_greyscale_and_rgba_become_rgb(tmp_path):
    for mode in ("L", "RGBA", "P"):
        d = tmp_path / mode
        d.mkdir()
        ann = make_set(d, [person(1, 1)], mode=mode)
        ds = CocoPoseDataset(ann, d, 32, 8)
        img = ds.load_image(1)
        assert img.shape == (32, 40, 3) and img.dtype == np.uint8
        assert ds[0]["image"].shape == (3, 32, 32)


def test_crowd_and_no_keypoint_people_are_masked(tmp_path):
    crowd = person(1, 2, iscrowd=1, segmentation=[[0, 0, 19, 0, 19, 15, 0, 15]])
    nokp = person(1, 3, num_keypoints=0, bbox=[24, 20, 8, 8])
    nokp["keypoints"] = [0] * 51
    ann = make_set(tmp_path, [person(1, 1), crowd, nokp], size=(32, 32))
    ds = CocoPoseDataset(ann, tmp_path, 32, 8)
    s = ds[0]
    assert len(s["keypoints"]) == 1  # crowd and keypoint-less people are not targets
    m = s["mask"].numpy()
    assert m[:4, :5].max() == 0  # crowd polygon, downsampled by 4
    assert m[5:7, 6:8].max() == 0 and m[7, 6:8].min() == 1  # the person without keypoints
    assert m[5:, :4].min() == 1 and m[:4, 6:].min() == 1


def test_out_of_frame_joints_are_zeroed(tmp_path):
    p = person(1, 1, xy=(30.0, 5.0))  # joints run off the right edge (x up to 46 > 39)
    ann = make_set(tmp_path, [p], size=(40, 40))
    s = CocoPoseDataset(ann, tmp_path, 40, 10)[0]
    kp = s["keypoints"][0]
    assert kp[:10, 2].tolist() == [2.0] * 10
    assert (kp[10:] == 0).all()


@pytest.mark.parametrize(
    "mutate,needle",
    [
        (lambda d: d.pop("annotations"), "missing key 'annotations'"),
        (lambda d: d["annotations"][0].pop("keypoints"), "annotation 7: missing key 'keypoints'"),
        (lambda d: d["annotations"][0].pop("image_id"), "annotation 7: missing key 'image_id'"),
        (lambda d: d["annotations"][0].update(keypoints=[1] * 50),
         "annotation 7: field 'keypoints' must hold 51 numbers"),
        (lambda d: d["annotations"][0].update(image_id=99),
         "annotation 7: field 'image_id' names unknown image id 99"),
        (lambda d: d["annotations"][0]["keypoints"].__setitem__(2, 5), "visibility flag"),
        (lambda d: d["images"][0].pop("file_name"), "missing key 'file_name'"),
        (lambda d: d["images"].append(dict(d["images"][0])), "duplicate image id 1"),
    ],
)  # fmt: skip
def test_validation_names_file_annotation_and_field(tmp_path, mutate, needle):
    ann = make_set(tmp_path, [person(1, 7)])
    data = json.loads(ann.read_text())
    mutate(data)
    ann.write_text(json.dumps(data))
    with pytest.raises(DataError) as err:
        CocoPoseDataset(ann, tmp_path, 32, 8)
    assert needle in str(err.value) and str(ann) in str(err.value)


def test_malformed_json_empty_set_and_missing_images(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    with pytest.raises(DataError, match="bad.json: malformed JSON"):
        CocoPoseDataset(bad, tmp_path, 32, 8)
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(DataError, match="empty dataset"):
        CocoPoseDataset(empty, tmp_path, 32, 8)
    ann = make_set(tmp_path, [person(1, 1)])
    (tmp_path / "a.png").unlink()
    with pytest.raises(DataError, match=r"1 listed image\(s\) not found .*a\.png"):
        CocoPoseDataset(ann, tmp_path, 32, 8)


def test_corrupt_image_raises_on_load(tmp_path):
    ann = make_set(tmp_path, [person(1, 1)])
    ds = CocoPoseDataset(ann, tmp_path, 32, 8)
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DataError, match=r"a\.png: unreadable or corrupt image"):
        ds[0]
    Image.new("RGB", (10, 10)).save(tmp_path / "a.png")  # wrong size for its record
    with pytest.raises(DataError, match="image is 10x10 but"):
        ds.load_image(1)
