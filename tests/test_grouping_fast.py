"""The optimised :mod:`rnnpose.grouping` returns exactly what the straightforward version
(AE's loops, copied below as the reference; commit 691fd7b) returns: same people, positions,
tags and scores, bit for bit, on random scenes and hand-built edge cases."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from scipy.ndimage import maximum_filter
from scipy.optimize import linear_sum_assignment

from rnnpose import grouping as fast
from rnnpose.skeleton import AE_JOINT_ORDER

# ---- reference: rnnpose/grouping.py as of commit 691fd7b (slow, kept for this test only) ----

#: Cost of a padding column (pose-ae-train's value).
PAD_COST: float = 1e10


def _as_tag_maps(tags: np.ndarray, num_joints: int) -> np.ndarray:
    """Tags as [J, M, M, L] (accepts [J, M, M])."""
    tags = np.asarray(tags, dtype=np.float32)
    if tags.ndim == 3:
        tags = tags[..., None]
    if tags.ndim != 4 or tags.shape[0] != num_joints:
        raise ValueError(f"tags must be [J,M,M] or [J,M,M,L] with J={num_joints}, got {tags.shape}")
    return tags


def nms(heatmaps: np.ndarray, kernel: int = 3) -> np.ndarray:
    """Zero every pixel that is not the maximum of its ``kernel`` x ``kernel`` neighbourhood."""
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    peaks = maximum_filter(heatmaps, size=(1, kernel, kernel), mode="constant", cval=-np.inf)
    return np.where(peaks == heatmaps, heatmaps, 0.0).astype(np.float32)


def top_candidates(
    heatmaps: np.ndarray, tags: np.ndarray, k: int, kernel: int = 3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` best NMS peaks per joint, best first.

    Returns ``loc`` [J,k,2] integer (x, y), ``val`` [J,k] and ``tag`` [J,k,L].
    """
    j, h, w = heatmaps.shape
    flat = nms(heatmaps, kernel).reshape(j, h * w)
    k = min(k, h * w)
    part = np.argpartition(-flat, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(flat, part, 1), axis=1, kind="stable")
    ind = np.take_along_axis(part, order, 1)
    val = np.take_along_axis(flat, ind, 1)
    tag_flat = tags.reshape(j, h * w, -1)
    tag = np.take_along_axis(tag_flat, ind[..., None], 1)
    loc = np.stack([ind % w, ind // w], axis=-1)
    return loc, val, tag


def match_by_tag(
    loc: np.ndarray,
    val: np.ndarray,
    tag: np.ndarray,
    *,
    detection_threshold: float = 0.1,
    tag_threshold: float = 1.0,
    max_people: int = 30,
    use_detection_val: bool = True,
    ignore_too_much: bool = True,
    joint_order: Sequence[int] = AE_JOINT_ORDER,
) -> np.ndarray:
    """Greedy joint-by-joint grouping of candidates (steps 3-4): -> people [P, J, 3+L]
    holding (x, y, detection value, tag...) per joint, zeros for missing joints."""
    num_joints, _, dim = tag.shape
    people: list[np.ndarray] = []  # each [J, 3+L]
    tag_sum: list[np.ndarray] = []  # running sums of the assigned tags
    tag_count: list[int] = []

    def open_person(jt: int, row: np.ndarray) -> None:
        person = np.zeros((num_joints, 3 + dim), dtype=np.float64)
        person[jt] = row
        people.append(person)
        tag_sum.append(row[3:].copy())
        tag_count.append(1)

    for jt in joint_order:
        keep = val[jt] > detection_threshold
        if not keep.any():
            continue
        rows = np.concatenate(
            [loc[jt][keep].astype(np.float64), val[jt][keep, None], tag[jt][keep]], axis=1
        )
        if not people:
            for row in rows:
                open_person(jt, row)
            continue
        n_old = min(len(people), max_people)  # only the first max_people are matched against
        if ignore_too_much and n_old == max_people:
            continue
        means = np.stack(tag_sum[:n_old]) / np.asarray(tag_count[:n_old], dtype=np.float64)[:, None]
        dist = np.sqrt(((rows[:, None, 3:] - means[None]) ** 2).mean(axis=2))  # [n, n_old]
        cost = np.round(dist) * 100 - rows[:, 2:3] if use_detection_val else dist.copy()
        if cost.shape[0] > cost.shape[1]:
            pad = np.full((cost.shape[0], cost.shape[0] - cost.shape[1]), PAD_COST)
            cost = np.concatenate([cost, pad], axis=1)
        for r, c in zip(*linear_sum_assignment(cost), strict=True):
            if c < n_old and dist[r, c] < tag_threshold:
                people[c][jt] = rows[r]
                tag_sum[c] += rows[r, 3:]
                tag_count[c] += 1
            else:
                open_person(jt, rows[r])
    if not people:
        return np.zeros((0, num_joints, 3 + dim), dtype=np.float32)
    return np.stack(people).astype(np.float32)


def _quarter_offsets(heatmaps: np.ndarray, joint: np.ndarray, x: np.ndarray, y: np.ndarray):
    """+-0.25 toward the higher horizontal / vertical neighbour (ties go to -0.25, as AE)."""
    _, h, w = heatmaps.shape
    right = heatmaps[joint, y, np.minimum(x + 1, w - 1)]
    left = heatmaps[joint, y, np.maximum(x - 1, 0)]
    down = heatmaps[joint, np.minimum(y + 1, h - 1), x]
    up = heatmaps[joint, np.maximum(y - 1, 0), x]
    return np.where(right > left, 0.25, -0.25), np.where(down > up, 0.25, -0.25)


def adjust(people: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
    """Step 5: shift every detected joint (value > 0) a quarter pixel toward its higher
    neighbour on the raw heatmaps [J, M, M]; returns a copy."""
    people = np.array(people, dtype=np.float32, copy=True)
    p_idx, j_idx = np.nonzero(people[:, :, 2] > 0)
    if len(p_idx) == 0:
        return people
    x = np.rint(people[p_idx, j_idx, 0]).astype(np.int64)
    y = np.rint(people[p_idx, j_idx, 1]).astype(np.int64)
    dx, dy = _quarter_offsets(heatmaps, j_idx, x, y)
    people[p_idx, j_idx, 0] = x + dx
    people[p_idx, j_idx, 1] = y + dy
    return people


def refine(
    person: np.ndarray, heatmaps: np.ndarray, tags: np.ndarray, *, adjust_position: bool = True
) -> np.ndarray:
    """Step 7: fill the missing joints of one person [J, 3+L] using its mean tag.

    For each joint, take the pixel maximising ``heatmap - round(||tag - mean tag||_2)``; a missing
    joint is filled there if its heatmap value is positive (its score is that value; AE writes
    1). The tags of the filled joints are recorded too. Returns a copy.
    """
    tags = _as_tag_maps(tags, heatmaps.shape[0])
    person = np.array(person, dtype=np.float32, copy=True)
    found = person[:, 2] > 0
    if not found.any():
        return person
    mean_tag = person[found, 3:].mean(axis=0)
    joints = np.nonzero(~found)[0]  # only the missing joints need the search
    _, h, w = heatmaps.shape
    dist = np.sqrt(((tags[joints] - mean_tag) ** 2).sum(axis=-1))  # [n, M, M]
    score = (heatmaps[joints] - np.round(dist)).reshape(len(joints), h * w)
    best = score.argmax(axis=1)
    x, y = best % w, best // w
    value = heatmaps[joints, y, x]
    keep = value > 0
    if not keep.any():
        return person
    joints, x, y, value = joints[keep], x[keep], y[keep], value[keep]
    dx, dy = _quarter_offsets(heatmaps, joints, x, y) if adjust_position else (0.0, 0.0)
    person[joints, 0] = x + dx
    person[joints, 1] = y + dy
    person[joints, 2] = value
    person[joints, 3:] = tags[joints, y, x]
    return person


def group(
    heatmaps: np.ndarray,
    tags: np.ndarray,
    *,
    detection_threshold: float = 0.1,
    tag_threshold: float = 1.0,
    max_people: int = 30,
    use_detection_val: bool = True,
    ignore_too_much: bool = True,
    joint_order: Sequence[int] = AE_JOINT_ORDER,
    nms_kernel: int = 3,
    adjust_position: bool = True,
    refine_missing: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """AE's grouping of one image (steps 1-7 above).

    ``heatmaps`` [J, M, M] and ``tags`` [J, M, M, L] (or [J, M, M]) as numpy arrays.
    Returns ``people`` [P, J, 3+L] -- (x, y, score, tag...) in heatmap pixels, zeros for joints
    that were not found -- and ``scores`` [P] (the mean detection value before refinement).
    """
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    tags = _as_tag_maps(tags, heatmaps.shape[0])
    loc, val, tag = top_candidates(heatmaps, tags, max_people, nms_kernel)
    people = match_by_tag(
        loc, val, tag,
        detection_threshold=detection_threshold, tag_threshold=tag_threshold,
        max_people=max_people, use_detection_val=use_detection_val,
        ignore_too_much=ignore_too_much, joint_order=joint_order,
    )  # fmt: skip
    if adjust_position:
        people = adjust(people, heatmaps)
    scores = people[:, :, 2].mean(axis=1) if len(people) else np.zeros(0, dtype=np.float32)
    if refine_missing:
        for i in range(len(people)):
            people[i] = refine(people[i], heatmaps, tags, adjust_position=adjust_position)
    return people, scores.astype(np.float32)


# ---- the comparison ------------------------------------------------------------------------



def _scene(people: int, size: int, tag_dim: int, seed: int):
    """AE-like maps: Gaussian joints, per-person tags painted (added) around them, noise."""
    rng = np.random.default_rng([seed, people, size, tag_dim])
    heat = np.zeros((17, size, size), np.float32)
    tags = rng.normal(0, 0.05, size=(17, size, size, tag_dim)).astype(np.float32)
    yy, xx = np.mgrid[:size, :size]
    for p in range(people):
        centre = rng.uniform(0.1 * size, 0.9 * size, size=2)
        spread = rng.uniform(0.03, 0.15) * size
        for j in range(17):
            if rng.random() < 0.15:
                continue  # an occluded joint: refine has work to do
            x, y = np.clip(centre + rng.normal(0, spread, size=2), 0, size - 1)
            g = rng.uniform(0.05, 1.0) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8.0)
            np.maximum(heat[j], g, out=heat[j])
            near = (xx - x) ** 2 + (yy - y) ** 2 < 16
            tags[j][near] += 1.5 * p
    return heat, tags


def _same(a, b):
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5])
def test_nms_equals_maximum_filter(kernel):
    rng = np.random.default_rng(kernel)
    hm = rng.normal(size=(3, 9, 11)).astype(np.float32)
    hm[0, 2:5, 2:5] = 0.5  # plateaus: ties
    hm[1] = np.round(hm[1])
    _same([fast.nms(hm, kernel)], [nms(hm, kernel)])


@pytest.mark.parametrize("people", [0, 1, 3, 10, 20])
@pytest.mark.parametrize("tag_dim", [1, 2, 3])
def test_group_equals_reference_on_random_scenes(people, tag_dim):
    heat, tags = _scene(people, 48, tag_dim, seed=people)
    for kw in ({}, {"max_people": 10}, {"adjust_position": False},
               {"detection_threshold": 0.2, "use_detection_val": False}):  # fmt: skip
        _same(fast.group(heat, tags, **kw), group(heat, tags, **kw))


@pytest.mark.parametrize("seed", range(6))
def test_group_equals_reference_on_noise_and_ties(seed):
    rng = np.random.default_rng(seed)
    m, dim = 16, 1 + seed % 3
    heat = rng.normal(0.2, 0.3, size=(17, m, m)).astype(np.float32)  # negative values too
    tags = rng.normal(0, 2, size=(17, m, m, dim)).astype(np.float32)
    if seed % 2:  # quantised maps: many exact ties of heatmap and rounded distance
        heat = np.round(heat * 4) / 4
        tags = np.round(tags * 2) / 2
    for kw in ({}, {"detection_threshold": -1.0}, {"max_people": 5, "nms_kernel": 5}):
        _same(fast.group(heat, tags, **kw), group(heat, tags, **kw))


def test_hand_built_edge_cases():
    m = 12
    flat = np.full((17, m, m), 0.5, np.float32)  # one plateau: every pixel ties
    zero_tags = np.zeros((17, m, m), np.float32)
    _same(fast.group(flat, zero_tags), group(flat, zero_tags))
    empty = np.zeros((17, m, m), np.float32)
    _same(fast.group(empty, zero_tags), group(empty, zero_tags))
    # a lone joint with a far tag: refine picks the best heatmap value minus the distance
    heat = np.zeros((17, m, m), np.float32)
    tags = np.zeros((17, m, m, 2), np.float32)
    heat[0, 3, 3] = 0.9
    tags[0, 3, 3] = 20.0
    heat[5, 8, 2], heat[5, 1, 10] = 0.3, 0.8
    tags[5, 8, 2] = 19.4
    _same(fast.group(heat, tags), group(heat, tags))
    person = np.zeros((17, 5), np.float32)
    person[0] = [3, 3, 0.9, 20.0, 20.0]
    _same([fast.refine(person, heat, tags)], [refine(person, heat, tags)])
    _same([fast.refine(person, heat, tags, adjust_position=False)],
          [refine(person, heat, tags, adjust_position=False)])  # fmt: skip
