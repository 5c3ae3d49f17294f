"""AE's heuristic grouping on hand-built heatmaps and tags (section 2.2)."""

from __future__ import annotations

import numpy as np

from rnnpose.grouping import adjust, group, match_by_tag, nms, refine, top_candidates

M = 32


def _blob(hm: np.ndarray, j: int, x: int, y: int, peak: float = 1.0, sigma: float = 1.0) -> None:
    yy, xx = np.mgrid[:M, :M]
    g = peak * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    np.maximum(hm[j], g, out=hm[j])


def _scene(people: list[dict], sigma: float = 1.0):
    """people: each {"joints": {j: (x, y)}, "tag": float}; tags painted in a 7x7 patch."""
    hm = np.zeros((17, M, M), np.float32)
    tags = np.zeros((17, M, M), np.float32)
    for person in people:
        for j, (x, y) in person["joints"].items():
            _blob(hm, j, x, y, person.get("peak", 1.0), sigma)
            tags[j, max(y - 3, 0) : y + 4, max(x - 3, 0) : x + 4] = person["tag"]
    return hm, tags


def _person(x0: int, y0: int, tag: float, joints=range(17)):
    return {"joints": {j: (x0 + j % 3, y0 + j // 3) for j in joints}, "tag": tag}


def _as_sets(people: np.ndarray) -> list[set]:
    return [
        {(j, round(float(p[j, 0])), round(float(p[j, 1]))) for j in range(17) if p[j, 2] > 0}
        for p in people
    ]


def test_nms_keeps_only_local_maxima():
    hm = np.zeros((1, 5, 5), np.float32)
    hm[0, 2, 2], hm[0, 2, 3], hm[0, 0, 0] = 0.9, 0.5, 0.3
    out = nms(hm)
    assert out[0, 2, 2] == np.float32(0.9) and out[0, 2, 3] == 0 and out[0, 0, 0] == np.float32(0.3)
    assert np.count_nonzero(out) == 2


def test_top_candidates_sorted_with_positions_and_tags():
    hm = np.zeros((17, M, M), np.float32)
    tags = np.zeros((17, M, M, 1), np.float32)
    for x, y, v in [(3, 4, 0.5), (20, 10, 0.9), (10, 25, 0.7)]:
        hm[2, y, x] = v
        tags[2, y, x, 0] = 10 * v
    loc, val, tag = top_candidates(hm, tags, k=4)
    assert loc.shape == (17, 4, 2) and val.shape == (17, 4) and tag.shape == (17, 4, 1)
    np.testing.assert_allclose(val[2, :3], [0.9, 0.7, 0.5], rtol=1e-6)
    assert loc[2, :3].tolist() == [[20, 10], [10, 25], [3, 4]]
    np.testing.assert_allclose(tag[2, :3, 0], [9, 7, 5], rtol=1e-6)


def test_recovers_known_people():
    people = [_person(2, 2, 0.0), _person(12, 3, 2.0), _person(22, 14, 4.0)]
    hm, tags = _scene(people)
    found, scores = group(hm, tags, adjust_position=False, refine_missing=False)
    assert len(found) == 3
    expect = [{(j, x, y) for j, (x, y) in p["joints"].items()} for p in people]
    assert sorted(map(sorted, _as_sets(found))) == sorted(map(sorted, expect))
    np.testing.assert_allclose(scores, 1.0, rtol=1e-6)
    # tag columns hold each person's tag
    for p in found:
        assert np.ptp(p[p[:, 2] > 0, 3]) == 0


def test_overlapping_people_with_different_tags_are_separated():
    # every joint of person B sits on the pixel next to person A's (adjacent peaks survive a
    # 3x3 NMS only if separated by 2 px, so use a 2-px gap: x and x+2)
    a = {"joints": {j: (4 + j, 10) for j in range(0, 17)}, "tag": 0.0}
    b = {"joints": {j: (4 + j, 12) for j in range(0, 17)}, "tag": 3.0}
    hm = np.zeros((17, M, M), np.float32)
    tags = np.zeros((17, M, M), np.float32)
    for person, peak in ((a, 0.9), (b, 0.8)):
        for j, (x, y) in person["joints"].items():
            hm[j, y, x] = peak
            tags[j, y, x] = person["tag"]
    found, scores = group(hm, tags, adjust_position=False, refine_missing=False)
    assert len(found) == 2
    got = sorted(_as_sets(found), key=lambda s: min(y for _, _, y in s))
    assert got[0] == {(j, x, y) for j, (x, y) in a["joints"].items()}
    assert got[1] == {(j, x, y) for j, (x, y) in b["joints"].items()}
    np.testing.assert_allclose(sorted(scores), [0.8, 0.9], rtol=1e-6)


def test_far_tag_opens_a_new_person_and_threshold_matters():
    person = _person(4, 4, 0.0, joints=range(0, 10))
    stray = {"joints": {5: (25, 25)}, "tag": 1.6}  # a second left shoulder, tag 1.6 away
    hm, tags = _scene([person, stray])
    found, _ = group(hm, tags, adjust_position=False, refine_missing=False)
    assert len(found) == 2
    lone = [p for p in found if (p[:, 2] > 0).sum() == 1]
    assert len(lone) == 1 and tuple(lone[0][5, :2]) == (25, 25)
    # a stray joint of a type the person lacks: a new person at tag_threshold 1, absorbed at 2
    stray2 = {"joints": {10: (25, 25)}, "tag": 1.6}
    hm, tags = _scene([_person(4, 4, 0.0, joints=range(0, 10)), stray2])
    assert len(group(hm, tags, refine_missing=False)[0]) == 2
    assert len(group(hm, tags, tag_threshold=2.0, refine_missing=False)[0]) == 1


def test_detection_threshold_and_ignore_too_much():
    hm, tags = _scene([_person(2, 2, 0.0), {**_person(14, 14, 3.0), "peak": 0.15}])
    assert len(group(hm, tags, refine_missing=False)[0]) == 2  # AE test default 0.1
    assert len(group(hm, tags, detection_threshold=0.2, refine_missing=False)[0]) == 1
    # one person allowed: once it exists, later joint types are skipped
    found, _ = group(hm, tags, max_people=1, refine_missing=False)
    assert len(found) == 1 and (found[0, :, 2] > 0).sum() == 1  # only the nose
    found, _ = group(hm, tags, max_people=1, ignore_too_much=False, refine_missing=False)
    assert (found[0, :, 2] > 0).sum() == 17


def test_adjust_moves_a_quarter_pixel_toward_the_higher_neighbour():
    hm = np.zeros((17, M, M), np.float32)
    hm[3, 10, 10] = 1.0
    hm[3, 10, 11] = 0.6  # right neighbour higher than left
    hm[3, 9, 10] = 0.4  # upper neighbour higher than lower
    person = np.zeros((1, 17, 4), np.float32)
    person[0, 3, :3] = (10, 10, 1.0)
    out = adjust(person, hm)
    assert tuple(out[0, 3, :2]) == (10.25, 9.75)
    assert out[0, 3, 2] == 1.0 and np.all(out[0, 4] == 0)  # undetected joints untouched


def test_refine_fills_a_missing_joint_with_the_matching_tag():
    a = _person(2, 2, 0.0, joints=[j for j in range(17) if j != 9])
    b = _person(16, 16, 3.0)
    hm, tags = _scene([a, b])
    # a weak left wrist of person a below the detection threshold, far from b's wrist (stronger)
    _blob(hm, 9, 6, 25, peak=0.08)
    tags[9, 24:27, 5:8] = 0.0
    found, _ = group(hm, tags, refine_missing=False, adjust_position=False)
    pa = next(p for p in found if p[0, 3] == 0.0)
    assert pa[9, 2] == 0
    filled = refine(pa, hm, tags, adjust_position=False)
    assert tuple(filled[9, :2]) == (6, 25) and np.isclose(filled[9, 2], 0.08)
    assert np.array_equal(filled[np.arange(17) != 9], pa[np.arange(17) != 9])
    # group() refines by default and keeps the score from before refinement
    refined, scores = group(hm, tags, adjust_position=False)
    pa2 = next(p for p in refined if p[0, 3] == 0.0)
    assert tuple(pa2[9, :2]) == (6, 25)
    assert np.isclose(scores[[p[0, 3] == 0.0 for p in refined]][0], 16 / 17)


def test_tie_break_goes_to_the_earlier_person_when_rounded_distances_tie():
    # two people with tags 0 and 0.4 (both within 0.5 of a joint tagged 0.2): rounding makes a tie
    loc = np.zeros((17, 2, 2), np.int64)
    val = np.zeros((17, 2), np.float32)
    tag = np.zeros((17, 2, 1), np.float32)
    val[0] = [0.9, 0.8]
    tag[0, :, 0] = [0.0, 0.4]
    loc[0] = [[1, 1], [5, 5]]
    val[1, 0], tag[1, 0, 0], loc[1, 0] = 0.7, 0.3, (2, 2)
    rounded = match_by_tag(loc, val, tag, tag_threshold=1.0)
    plain = match_by_tag(loc, val, tag, tag_threshold=1.0, use_detection_val=False)
    assert rounded[0, 1, 2] > 0 and rounded[1, 1, 2] == 0  # earlier person wins the tie
    assert plain[1, 1, 2] > 0  # plain distance: 0.1 < 0.3, the second person


def test_empty_heatmaps_give_no_people():
    people, scores = group(np.zeros((17, M, M), np.float32), np.zeros((17, M, M, 2), np.float32))
    assert people.shape == (0, 17, 5) and scores.shape == (0,)


def test_oracle_grouping_takes_the_peak_near_each_annotated_joint():
    from rnnpose.analysis import oracle_grouping

    hm = np.zeros((17, 16, 16), dtype=np.float32)
    hm[0, 5, 6] = 0.9  # person 0, joint 0: peak one pixel right of the annotation (5, 5)
    hm[0, 5, 7] = 0.4  # higher right neighbour -> +0.25 in x
    hm[0, 12, 12] = 0.8  # person 1, joint 0: exactly on the annotation
    hm[1, 2, 2] = 0.7  # joint 1 of person 0 lies 4 px away: outside radius 2
    gt = np.zeros((2, 17, 3))
    gt[0, 0] = (5, 5, 2)
    gt[1, 0] = (12, 12, 1)
    gt[0, 1] = (6, 6, 2)
    gt[1, 2] = (40, 40, 2)  # outside the map
    people = oracle_grouping(hm, gt, radius=2)
    assert people.shape == (2, 17, 3)
    np.testing.assert_allclose(people[0, 0], (6.25, 4.75, 0.9), atol=1e-6)
    np.testing.assert_allclose(people[1, 0, 2], 0.8)
    assert people[0, 1, 2] > 0 and people[0, 1, 2] < 1e-5  # window empty: value floor, found
    assert people[1, 2, 2] == 0 and people[1, 3:, 2].sum() == 0  # unannotated / off the map


def test_a_tag_distance_equal_to_the_threshold_opens_a_new_person():
    """A candidate joins a person only when its tag distance is BELOW ``tag_threshold``
    (section 2.2): at exactly the threshold it opens a person of its own."""
    loc = np.zeros((2, 1, 2), np.int64)
    loc[1, 0] = (5, 5)
    val = np.full((2, 1), 0.9)

    def people(second_tag: float) -> int:
        tag = np.array([[[0.0]], [[second_tag]]])
        return len(match_by_tag(loc, val, tag, tag_threshold=1.0, joint_order=[0, 1]))

    assert people(0.999) == 1  # joined the first person
    assert people(1.0) == 2  # distance == threshold: a new person
    assert people(1.5) == 2
