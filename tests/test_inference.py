"""AE test-time pipeline: letterbox, flip (FLIP_INDEX swap), scales, grouping, original pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rnnpose.config import get_profile
from rnnpose.inference import AEMaps, ae_maps, input_size_for, predict_ae, refine_missing_joints
from rnnpose.models.hourglass import AEOutput, PoseNet
from rnnpose.skeleton import FLIP_INDEX

PROFILE = get_profile("tiny")  # input 64, maps 16, stride 4
LEFT = [j for j in range(17) if FLIP_INDEX[j] > j]
RIGHT = [FLIP_INDEX[j] for j in LEFT]


class DotNet(nn.Module):
    """A stand-in network: joint heatmaps read the red (left joints, nose) or blue (right joints)
    channel at the stride-4 sample points, blurred by a normalised 3x3 kernel so that a lone dot
    is a strict peak of height 1; every joint's tag is 3 * green."""

    def __init__(self, nstack: int = 1, f: int = 2):
        super().__init__()
        self.nstack, self.f = nstack, f
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (k[:, None] * k[None]) / 4.0)

    def forward(self, x):
        sub = x[:, :, ::4, ::4]
        blur = F.conv2d(sub.reshape(-1, 1, *sub.shape[2:]), self.kernel[None, None], padding=1)
        blur = blur.reshape(sub.shape)
        red, blue = blur[:, 0], blur[:, 2]
        hm = torch.stack([blue if j in RIGHT else red for j in range(17)], 1)
        tags = (3 * sub[:, 1:2]).expand(-1, 17, -1, -1)
        feats = torch.zeros(x.shape[0], self.f, *sub.shape[2:])
        rep = lambda t: t[:, None].expand(-1, self.nstack, -1, -1, -1)  # noqa: E731
        return AEOutput(rep(hm), rep(tags), rep(feats))


def _image(dots: list[tuple[int, int, float]], colour=(255, 0, 255)) -> np.ndarray:
    """A 128x128 black image with 4x4 dots on heatmap cells (kx, ky), green = 255 * tag / 3."""
    img = np.zeros((128, 128, 3), np.uint8)
    for kx, ky, person in dots:
        # tiny profile letterboxes 128 -> 64 px: heatmap cell k <-> original pixel 8k + 0.5
        X, Y = 8 * kx, 8 * ky
        img[Y - 1 : Y + 3, X - 1 : X + 3] = (colour[0], round(255 * person), colour[2])
    return img


def test_recovers_dots_in_original_pixels():
    dots = [(3, 4, 0), (11, 6, 1)]
    res = predict_ae(DotNet(), _image(dots), PROFILE, adjust_position=False)
    assert len(res) == 2
    got = sorted((r["keypoints"][0, 0], r["keypoints"][0, 1]) for r in res)
    assert got == [(8 * 3 + 0.5, 8 * 4 + 0.5), (8 * 11 + 0.5, 8 * 6 + 0.5)]
    for r in res:
        assert r["keypoints"].shape == (17, 3) and np.isclose(r["score"], 1.0)
        np.testing.assert_allclose(r["keypoints"][:, :2], r["keypoints"][:1, :2].repeat(17, 0))


def test_flip_averages_with_swapped_joints_and_doubles_tags():
    img = _image([(5, 7, 0)], colour=(255, 0, 0))  # a red dot: 'left' joints only
    plain = ae_maps(DotNet(), img, PROFILE)
    flipped = ae_maps(DotNet(), img, PROFILE, flip=True)
    assert plain.tags.shape == (17, 16, 16, 1) and flipped.tags.shape == (17, 16, 16, 2)
    assert np.isclose(plain.heatmaps[LEFT[0]].max(), 1.0) and plain.heatmaps[RIGHT[0]].max() == 0
    # the mirrored pass reports the red dot as a left joint, i.e. a right joint once swapped
    for j in LEFT + RIGHT:
        assert np.isclose(flipped.heatmaps[j].max(), 0.5)
        assert np.unravel_index(flipped.heatmaps[j].argmax(), (16, 16)) == (7, 5)
    assert np.isclose(flipped.heatmaps[0].max(), 1.0)  # the nose maps to itself


def test_flip_and_second_scale_keep_the_answer():
    dots = [(3, 4, 0), (11, 6, 1), (8, 12, 0.5)]
    img = _image(dots, colour=(255, 0, 255))
    base = predict_ae(DotNet(), img, PROFILE, adjust_position=False)
    both = predict_ae(DotNet(), img, PROFILE, flip=True, scales=(1.0, 2.0), adjust_position=False)
    key = lambda rs: sorted(tuple(np.round(r["keypoints"][0, :2], 6)) for r in rs)  # noqa: E731
    assert len(base) == 3
    assert key(base) == key(both)
    maps = ae_maps(DotNet(), img, PROFILE, flip=True, scales=(1.0, 2.0))
    assert maps.heatmaps.shape == (17, 16, 16) and maps.tags.shape[-1] == 2  # scale 2: no tags
    assert maps.heatmaps.max() <= 1.0


def test_input_size_rounds_up_to_the_hourglass_unit():
    assert input_size_for(PROFILE, 1.0) == 64 and input_size_for(PROFILE, 0.7) == 64
    assert input_size_for(PROFILE, 1.5) == 96 and input_size_for(get_profile("paper"), 2) == 1024


def test_real_network_end_to_end_on_a_rectangular_image():
    torch.manual_seed(0)
    model = PoseNet(PROFILE)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(50, 90, 3), dtype=np.uint8)
    maps = ae_maps(model, img, PROFILE, flip=True)
    assert not model.training
    assert maps.features.shape == (PROFILE.nstack * PROFILE.feat_channels, 16, 16)
    res = predict_ae(model, img, PROFILE, detection_threshold=-1e9, max_people=3)
    assert res and all(r["keypoints"].shape == (17, 3) for r in res)
    xy = np.concatenate([r["keypoints"][:, :2] for r in res])
    # letterboxed: every heatmap cell maps inside the padded square around the image
    assert xy[:, 0].min() > -2 and xy[:, 0].max() < 92 and xy[:, 1].min() > -25


def test_bad_image_is_refused():
    with pytest.raises(ValueError):
        ae_maps(DotNet(), np.zeros((10, 10), np.uint8), PROFILE)


def _refine_case():
    """Decoded people (heatmap px) and hand-built averaged AE maps (16x16, one tag dimension).

    Person A: nose at (3.25, 9.75) and left shoulder at (4, 12), tags 2.0 and 2.2 there (mean
    2.1); person B: nose (12, 2) and left shoulder (13, 4), tags 5.0 (mean 5.0); person C: no
    joint found. Everywhere else the tag is 9. The left wrist (joint 9) is missing for all:
    its averaged heatmap peaks at (7, 6) with 0.9 (tag 5.1) and at (2, 13) with 0.6 (tag 2.0).
    """
    heat = np.zeros((17, 16, 16), np.float32)
    tags = np.full((17, 16, 16, 1), 9.0, np.float32)
    tags[0, 10, 3], tags[5, 12, 4] = 2.0, 2.2  # person A's found joints (x, y) = (3, 10), (4, 12)
    tags[0, 2, 12], tags[5, 4, 13] = 5.0, 5.0  # person B's
    heat[9, 6, 7], tags[9, 6, 7] = 0.9, 5.1  # the stronger wrist, B's tag
    heat[9, 13, 2], tags[9, 13, 2] = 0.6, 2.0  # the weaker wrist, A's tag
    heat[9, 6, 6], heat[9, 5, 7] = 0.4, 0.3  # (7, 6)'s higher neighbours: left and up
    heat[9, 13, 3], heat[9, 14, 2] = 0.3, 0.2  # (2, 13)'s: right and down
    kp = np.zeros((3, 17, 3), np.float32)
    kp[0, 0], kp[0, 5] = (3.25, 9.75, 0.8), (4.0, 12.0, 0.5)
    kp[1, 0], kp[1, 5] = (12.0, 2.0, 0.7), (13.0, 4.0, 0.6)
    maps = AEMaps(heatmaps=heat, tags=tags, features=np.zeros((2, 16, 16), np.float32),
                  to_heatmap=np.array([[0.25, 0, 0], [0, 0.25, 0]]), stride=4)  # fmt: skip
    return kp, maps


def test_refine_missing_joints_fills_each_person_by_its_own_tag():
    kp, maps = _refine_case()
    out = refine_missing_joints(kp, maps)
    assert out.shape == (3, 17, 3) and out.dtype == np.float32
    # the wrist goes to the peak whose tag is the person's, not to the higher one, a quarter
    # pixel toward the higher neighbours, with the averaged heatmap's value as its score
    np.testing.assert_array_equal(out[0, 9], np.float32([2.25, 13.25, 0.6]))
    np.testing.assert_array_equal(out[1, 9], np.float32([6.75, 5.75, 0.9]))
    # found joints unchanged, bit for bit; joints whose heatmap is 0 everywhere stay missing
    for p in (0, 1):
        np.testing.assert_array_equal(out[p, [0, 5]], kp[p, [0, 5]])
        others = [j for j in range(17) if j not in (0, 5, 9)]
        np.testing.assert_array_equal(out[p, others], 0.0)
    np.testing.assert_array_equal(out[2], 0.0)  # nobody to take a tag from: left as it was


def test_refine_missing_joints_without_missing_joints_is_the_identity():
    kp, maps = _refine_case()
    full = np.random.default_rng(0).uniform(0.5, 15, size=(2, 17, 3)).astype(np.float32)
    np.testing.assert_array_equal(refine_missing_joints(full, maps), full)
    assert refine_missing_joints(np.zeros((0, 17, 3)), maps).shape == (0, 17, 3)
    with pytest.raises(ValueError):
        refine_missing_joints(np.zeros((2, 16, 3)), maps)
