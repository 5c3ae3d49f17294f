"""Decoding people, joints from heatmaps, mapping back to original pixels."""

import numpy as np
import pytest
import torch

from rnnpose.config import get_profile
from rnnpose.decode import decode, heatmaps_to_keypoints, person_scores, to_coco_results
from rnnpose.models.rmpp import RMPP

PROF = get_profile("tiny", lstm1_hidden=16)  # the fixtures below were pinned at this size


pytestmark = pytest.mark.usefixtures("one_thread")


def test_keypoints_argmax_threshold_and_subpixel():
    hm = torch.zeros(3, 6, 6)
    hm[0, 2, 3], hm[0, 2, 4], hm[0, 2, 2] = 0.9, 0.5, 0.1  # right neighbour higher
    hm[0, 3, 3] = 0.3  # lower neighbour higher than upper (0) -> y + 0.25
    hm[1, 0, 0] = 0.01  # below tau = 0.015: discarded, on the border: no shift
    hm[2, 5, 1], hm[2, 5, 0] = 0.5, 0.4  # left higher -> x - 0.25; bottom row: no y shift
    kp = heatmaps_to_keypoints(hm, 0.015)
    torch.testing.assert_close(kp[0], torch.tensor([3.25, 2.25, 0.9]))
    torch.testing.assert_close(kp[1], torch.tensor([0.0, 0.0, 0.0]))
    torch.testing.assert_close(kp[2], torch.tensor([0.75, 5.0, 0.5]))


def test_person_score_formula():
    kps = torch.tensor([[[0, 0, 0.8], [0, 0, 0.4], [0, 0, 0.0]], [[0, 0, 0.0]] * 3])
    s = person_scores(kps, torch.tensor([0.5, 0.9]))
    torch.testing.assert_close(s, torch.tensor([0.5 * 0.6, 0.0]))


def test_to_coco_results_inverts_affine():
    A = np.array([[0.5, 0.0, 2.0], [0.0, 0.5, -1.0]])  # original -> input
    kps = torch.zeros(2, 17, 3)
    kps[0, 0] = torch.tensor([3.0, 2.0, 0.7])  # heatmap px -> input (12, 8) -> orig (20, 18)
    people = {"keypoints": kps, "scores": torch.tensor([0.6, 0.0])}
    res = to_coco_results(people, A, 4, image_id=7)
    assert len(res) == 1  # person 2 has no kept joint
    r = res[0]
    assert r["image_id"] == 7 and r["category_id"] == 1 and r["score"] == pytest.approx(0.6)
    assert r["keypoints"][:3] == pytest.approx([20.0, 18.0, 0.7])
    assert r["keypoints"][3:6] == [0.0, 0.0, 0.0]  # discarded joint
    filled = to_coco_results(people, A, 4, 7, fill_dropped=True)[0]
    assert filled["keypoints"][3:6] == pytest.approx([-4.0, 2.0, 0.0])


def _model(bias: float) -> RMPP:
    torch.manual_seed(0)
    m = RMPP(PROF)
    with torch.no_grad():
        m.lstm1.stop.weight.mul_(40.0)
        m.lstm1.stop.bias.fill_(bias)
    return m


def test_decode_counts_and_batch_equals_single():
    feats = torch.randn(3, 8, 16, 16, generator=torch.Generator().manual_seed(5))
    m = _model(5.0)  # p_t pattern (see test_algorithm1): >, < for every image
    out = decode(m, feats, PROF.omega, max_iterations=6, seeds=[0, 1, 2])
    assert [len(o["p"]) for o in out] == [1, 1, 1]
    assert all(o["heatmaps"].shape == (1, 17, 16, 16) for o in out)
    assert all((o["p"] >= PROF.omega).all() for o in out)
    single = decode(m, feats[1:2], PROF.omega, max_iterations=6, seeds=[1])[0]
    torch.testing.assert_close(single["heatmaps"], out[1]["heatmaps"], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(out[1]["heatmaps"], out[1]["heatmaps1"])  # LSTM2 refined
    none = decode(_model(-20.0), feats, PROF.omega, max_iterations=6)
    assert [len(o["p"]) for o in none] == [0, 0, 0] and none[0]["keypoints"].shape == (0, 17, 3)
    many = decode(_model(20.0), feats, PROF.omega, max_iterations=4, use_lstm2=False)
    assert [len(o["p"]) for o in many] == [4, 4, 4]
    torch.testing.assert_close(many[0]["heatmaps"], many[0]["heatmaps1"])


def test_decode_lstm2_order_is_undone():
    feats = torch.randn(2, 8, 16, 16, generator=torch.Generator().manual_seed(6))
    m = _model(20.0)
    learned = decode(m, feats, PROF.omega, max_iterations=3)
    inverse = decode(m, feats, PROF.omega, max_iterations=3, ordering="inverse")
    torch.testing.assert_close(learned[0]["heatmaps1"], inverse[0]["heatmaps1"])
    # LSTM2 saw the persons reversed; its outputs come back in LSTM1's order
    with torch.no_grad():
        ref, _ = m.lstm2.sequence(m.norm(feats[:1]), inverse[0]["heatmaps1"].flip(0))
    torch.testing.assert_close(inverse[0]["heatmaps"], ref.flip(0), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(learned[0]["heatmaps"], inverse[0]["heatmaps"])
