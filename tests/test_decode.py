"""Decoding people, joints from heatmaps, mapping back to original pixels."""

import numpy as np
import pytest
import torch

from rnnpose.config import get_profile
from rnnpose.decode import decode, heatmaps_to_keypoints, person_scores, to_coco_results
from rnnpose.models.rmpp import RMPP

PROF = get_profile("tiny", lstm1_hidden=16)  # the fixtures below were pinned at this size


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


def _graded_model() -> RMPP:
    """p_t falls slowly and differently per image (fixture features below, seeds 0-3):
    image 0: .472 .363 .315 .284 .260 ..., image 1: .485 .358 .292 .264 ...,
    image 2: .392 .287 .247 ..., image 3: .561 .451 .400 .381 .374 .367 .361."""
    torch.manual_seed(0)
    m = RMPP(PROF)
    with torch.no_grad():
        m.lstm1.stop.weight.mul_(10.0)
        m.lstm1.stop.bias.fill_(1.0)
    return m


def _graded_features() -> torch.Tensor:
    return torch.randn(4, 8, 16, 16, generator=torch.Generator().manual_seed(5))


def test_omega_and_p_stop_at_decode():
    """Z = the iterations before the first p_t < omega; p_stop = that p_t (nan when
    max_iterations ended decoding). The p_t sequence is read off a run with omega = 0 (which
    never stops), so the expectation does not come from decode's own stopping logic."""
    m, feats = _graded_model(), _graded_features()
    full = decode(m, feats, 0.0, max_iterations=7, seeds=[0, 1, 2, 3])
    assert all(len(o["p"]) == 7 and np.isnan(o["p_stop"]) for o in full)
    for omega in (PROF.omega, 0.3, 0.4, 0.5, 0.99):
        out = decode(m, feats, omega, max_iterations=7, seeds=[0, 1, 2, 3])
        for b, o in enumerate(out):
            p = full[b]["p"].tolist()
            below = [t for t, v in enumerate(p) if v < omega]
            z = below[0] if below else 7
            assert len(o["p"]) == z and o["heatmaps"].shape[0] == z, (omega, b)
            torch.testing.assert_close(o["p"], full[b]["p"][:z])
            if below:
                assert o["p_stop"] == pytest.approx(p[z], abs=1e-6) and o["p_stop"] < omega
            else:
                assert np.isnan(o["p_stop"])
    counts = [len(o["p"]) for o in decode(m, feats, PROF.omega, max_iterations=7,
                                            seeds=[0, 1, 2, 3])]  # fmt: skip
    assert counts == [4, 3, 2, 7]  # the paper's omega = sigmoid(-1) on this fixture


@pytest.mark.parametrize("use_lstm2", [False, True])
def test_batch_whose_images_stop_at_different_iterations_equals_single_images(use_lstm2):
    """Images stop at t = 5, 4, 3 and the cap 7: the middle row (image 2) leaves first, so the
    hidden state must be re-indexed by WHICH images are still running, not by how many."""
    m, feats = _graded_model(), _graded_features()
    batch = decode(m, feats, PROF.omega, max_iterations=7, seeds=[0, 1, 2, 3],
                   use_lstm2=use_lstm2)  # fmt: skip
    full = decode(m, feats, 0.0, max_iterations=7, seeds=[0, 1, 2, 3], use_lstm2=False)
    assert [len(o["p"]) for o in batch] == [4, 3, 2, 7]
    for b in range(4):
        alone = decode(m, feats[b : b + 1], PROF.omega, max_iterations=7, seeds=[b],
                       use_lstm2=use_lstm2)[0]  # fmt: skip
        z = len(alone["p"])
        for key in ("heatmaps", "heatmaps1", "p", "keypoints", "scores"):
            torch.testing.assert_close(batch[b][key], alone[key], atol=1e-5, rtol=1e-4,
                                       msg=f"image {b}: {key}")  # fmt: skip
        assert batch[b]["p_stop"] == pytest.approx(alone["p_stop"], abs=1e-6, nan_ok=True)
        # LSTM1's people are those of the never-stopping run, which re-indexes nothing
        torch.testing.assert_close(batch[b]["heatmaps1"], full[b]["heatmaps1"][:z], atol=1e-5,
                                   rtol=1e-4)  # fmt: skip


def test_decode_unrolls_lstm1_passes_times_people_plus_one():
    """Section 3.1.1: with the loop (2 passes), Z people take 2 (Z + 1) LSTM1 steps."""
    m, feats = _graded_model(), _graded_features()[2:3]  # image 2: Z = 2
    calls = []
    m.lstm1.lstm.register_forward_hook(lambda mod, a, out: calls.append(a[0].shape[0]))
    out = decode(m, feats, PROF.omega, max_iterations=7, seeds=[2])[0]
    assert len(out["p"]) == 2 and m.lstm1.passes == PROF.loop == 2
    assert len(calls) == 2 * (2 + 1)


def test_a_stop_probability_equal_to_omega_goes_on():
    """Decoding stops at the first p_t < omega (section 3.2): p_t == omega is a person. The
    stop head is set to logit 0 exactly, so p_t = 0.5 at every iteration."""
    torch.manual_seed(0)
    m = RMPP(PROF)
    with torch.no_grad():
        m.lstm1.stop.weight.zero_()
        m.lstm1.stop.bias.zero_()
    feats = _graded_features()[:2]
    at = decode(m, feats, 0.5, max_iterations=5, use_lstm2=False)
    assert [len(o["p"]) for o in at] == [5, 5] and all(np.isnan(o["p_stop"]) for o in at)
    assert all((o["p"] == 0.5).all() for o in at)
    above = decode(m, feats, float(np.nextafter(0.5, 1.0)), max_iterations=5, use_lstm2=False)
    assert [len(o["p"]) for o in above] == [0, 0] and [o["p_stop"] for o in above] == [0.5, 0.5]
