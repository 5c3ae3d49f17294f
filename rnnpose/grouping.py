"""Associative Embedding's heuristic grouping: the baseline the paper argues against (section 2.2).

The steps follow pose-ae-train (``utils/group.py`` and the ``refine`` of ``test.py``):

1. **NMS** -- a 3x3 max-pool keeps only local maxima of each joint heatmap;
2. **candidates** -- the ``max_people`` highest maxima per joint, kept if their value exceeds
   ``detection_threshold``;
3. **greedy joint order** -- joints are visited in :data:`~rnnpose.skeleton.AE_JOINT_ORDER`
   (head, shoulders, hips, limbs); the first joint type with candidates opens one person each;
4. **assignment** -- every later joint type is matched to the people found so far by the
   Hungarian algorithm on the distance between each candidate's tag and each person's mean tag
   (root mean square over the tag dimensions); with ``use_detection_val`` the cost is
   ``round(distance) * 100 - detection value`` (AE's tie-break), surplus candidates face padding
   columns of cost 1e10, and a candidate whose distance is not below ``tag_threshold`` (or that
   met a padding column) opens a new person; with ``ignore_too_much`` a joint type is skipped
   once ``max_people`` people exist;
5. **adjust** -- each position moves a quarter pixel toward its higher horizontal and vertical
   neighbour on the (un-suppressed) heatmap;
6. **score** -- a person's score is the mean of its 17 detection values (0 for missing joints);
7. **refine** (optional) -- a missing joint is filled at the argmax of ``heatmap - round(tag
   distance to the person's mean tag)`` (L2 over tag dimensions), then adjusted.

Defaults are those of AE's evaluation (``test.py``: ``HeatmapParser(detection_val=0.1)``, which
sets ``tag_threshold=1``, ``use_detection_val=True``, ``ignore_too_much=True``,
``max_num_people=30``; it always refines). ``Params``' own class default for the detection
threshold is 0.2; pass ``detection_threshold=0.2`` for that.

Note: subtracting the detection value only shifts each row of the cost matrix by a constant and
every candidate row is always assigned, so the optimum is unchanged by it; what changes the
result is the rounding, which makes all people within half a tag unit equally cheap (ties then
go to the earlier person, rows being sorted by detection value).

Speed (same results as the straightforward loops, bit for bit; ``tests/test_grouping_fast.py``
keeps that version as the reference): the 3x3 NMS is a separable maximum of shifted views, and
refine handles all people at once, joint by joint; its search for a person skips every pixel
whose heatmap value is below a lower bound of that person's best score (the score at the
joint's NMS peaks), which cannot win since ``heatmap - round(distance) <= heatmap``.

Coordinates are heatmap pixel indices (the repository's convention, see
:mod:`rnnpose.data.transforms`); pose-ae-train adds half a pixel because its heatmap targets
floor the joint position, ours are centred on the pixel index.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import maximum_filter
from scipy.optimize import linear_sum_assignment

from rnnpose.skeleton import AE_JOINT_ORDER

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


def _window_max(heatmaps: np.ndarray, kernel: int) -> np.ndarray:
    """Maximum over each pixel's ``kernel`` x ``kernel`` window (outside the map: -inf), as
    ``scipy.ndimage.maximum_filter(size=(1, k, k), mode="constant", cval=-inf)``; separable."""
    lo, hi = kernel // 2, kernel - kernel // 2 - 1  # window [i - lo, i + hi], scipy's centring
    j, h, w = heatmaps.shape
    padded = np.full((j, h + lo + hi, w + lo + hi), -np.inf, dtype=heatmaps.dtype)
    padded[:, lo : lo + h, lo : lo + w] = heatmaps
    rows = padded[:, :, 0:w].copy()  # maximum along x
    for d in range(1, lo + hi + 1):
        np.maximum(rows, padded[:, :, d : d + w], out=rows)
    out = rows[:, 0:h].copy()  # then along y
    for d in range(1, lo + hi + 1):
        np.maximum(out, rows[:, d : d + h], out=out)
    return out


def nms(heatmaps: np.ndarray, kernel: int = 3) -> np.ndarray:
    """Zero every pixel that is not the maximum of its ``kernel`` x ``kernel`` neighbourhood."""
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    if heatmaps.ndim != 3 or kernel < 1 or np.isnan(heatmaps).any():
        peaks = maximum_filter(heatmaps, size=(1, kernel, kernel), mode="constant", cval=-np.inf)
    else:
        peaks = _window_max(heatmaps, kernel)
    return np.where(peaks == heatmaps, heatmaps, np.float32(0.0)).astype(np.float32, copy=False)


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

    For each joint, take the pixel maximising ``heatmap - round(||tag - mean tag||_2)`` (the
    first such pixel in row-major order); a missing joint is filled there if its heatmap value
    is positive (its score is that value; AE writes 1). The tags of the filled joints are
    recorded too. Returns a copy.
    """
    person = np.asarray(person, dtype=np.float32)
    return refine_people(person[None], heatmaps, tags, adjust_position=adjust_position)[0]


def _tag_scores(heat: np.ndarray, tag: np.ndarray, means: np.ndarray) -> np.ndarray:
    """``heat - round(||tag - mean||_2)`` for pixels ``heat [K]``, ``tag [K,L]`` and people
    ``means [n,L]`` -> [n, K] (float32, the same operations as AE's per-person search)."""
    dist = np.sqrt(((tag[None] - means[:, None, :]) ** 2).sum(axis=-1))
    return heat[None] - np.round(dist)


def refine_people(
    people: np.ndarray,
    heatmaps: np.ndarray,
    tags: np.ndarray,
    *,
    adjust_position: bool = True,
    probes: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`refine` applied to every person of ``people [P, J, 3+L]`` (each independently).

    The search runs joint by joint over all people missing that joint. ``probes [J, k]`` (flat
    pixel indices, e.g. the NMS candidates; default: each joint's heatmap maximum) give a lower
    bound of each person's best score; only pixels whose heatmap value reaches it are scored,
    which leaves the argmax (and its first-in-row-major-order tie-break) unchanged.
    """
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    tags = _as_tag_maps(tags, heatmaps.shape[0])
    people = np.array(people, dtype=np.float32, copy=True)
    num, num_joints = people.shape[:2]
    if num == 0:
        return people
    _, h, w = heatmaps.shape
    heat_flat = heatmaps.reshape(num_joints, h * w)
    tag_flat = tags.reshape(num_joints, h * w, -1)
    if probes is None:
        probes = heat_flat.argmax(axis=1)[:, None]
    found = people[:, :, 2] > 0
    has = np.nonzero(found.any(axis=1))[0]
    if len(has) == 0:
        return people
    means = np.stack([people[i, found[i], 3:].mean(axis=0) for i in has])  # as refine() does
    lows, highs = heat_flat.min(axis=1), heat_flat.max(axis=1)
    probes = np.asarray(probes)
    # each person's best score at each joint's probes: a lower bound of its best score [n, J]
    rows = np.arange(num_joints)[:, None]
    bounds = _tag_scores(heat_flat[rows, probes].ravel(),
                         tag_flat[rows, probes].reshape(-1, tag_flat.shape[2]), means)
    bounds = bounds.reshape(len(has), num_joints, -1).max(axis=2)
    sel_p, sel_j, sel_flat = [], [], []
    for jt in range(num_joints):
        need = ~found[has, jt]
        if not need.any():
            continue
        who, mu, heat = has[need], means[need], heat_flat[jt]
        bound = bounds[need, jt]
        # "good" people (bound in the top three quarters of the value range) share the pixels
        # reaching their smallest bound: each one's argmax is among them
        hmin, hmax = float(lows[jt]), float(highs[jt])
        good = bound >= hmin + 0.25 * (hmax - hmin)
        tau = bound[good].min() if good.any() else hmin + 0.25 * (hmax - hmin)
        high = heat >= tau
        pix = np.flatnonzero(high)  # ascending: the row-major tie-break is preserved
        sc = _tag_scores(heat[pix], tag_flat[jt, pix], mu)
        arg = sc.argmax(axis=1)
        best = pix[arg]
        if not good.all():
            # the others' best over ``pix`` is S; a pixel below tau can reach S only if
            # round(dist) <= tau - S, so each of its tag coordinates lies within that (+0.5)
            # of the person's mean tag: score those pixels too
            bad = np.nonzero(~good)[0]
            s_bad = sc[bad, arg[bad]].astype(np.float64)
            reach = np.floor(float(tau) - s_bad + 1e-5 * (1 + np.abs(s_bad)))
            lim = reach + 0.5 + 1e-3 * (1 + np.abs(reach))
            todo = np.nonzero(reach >= 0)[0]
            col = np.ascontiguousarray(tag_flat[jt, :, 0]) if len(todo) else None
            for i in todo:  # (few people: one at a time)
                m0 = mu[bad[i], 0]  # (the first coordinate alone: a superset, cheaper)
                near = (col >= m0 - lim[i]) & (col <= m0 + lim[i])
                near &= ~high  # the pixels at or above tau are scored already
                sub = np.flatnonzero(near)
                if len(sub) == 0:
                    continue
                one = _tag_scores(heat[sub], tag_flat[jt, sub], mu[bad[i]][None])[0]
                k = int(one.argmax())
                q = bad[i]
                # the better score wins; a tie goes to the first pixel in row-major order
                if one[k] > sc[q, arg[q]] or (one[k] == sc[q, arg[q]] and sub[k] < best[q]):
                    best[q] = sub[k]
        sel_p.append(who)
        sel_j.append(np.full(len(who), jt))
        sel_flat.append(best)
    if not sel_p:
        return people
    p_idx, joints, flat = (np.concatenate(a) for a in (sel_p, sel_j, sel_flat))
    x, y = flat % w, flat // w
    value = heatmaps[joints, y, x]
    keep = value > 0
    p_idx, joints, x, y, value = p_idx[keep], joints[keep], x[keep], y[keep], value[keep]
    if len(p_idx) == 0:
        return people
    dx, dy = _quarter_offsets(heatmaps, joints, x, y) if adjust_position else (0.0, 0.0)
    people[p_idx, joints, 0] = x + dx
    people[p_idx, joints, 1] = y + dy
    people[p_idx, joints, 2] = value
    people[p_idx, joints, 3:] = tags[joints, y, x]
    return people


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
        _, _, w = heatmaps.shape
        people = refine_people(people, heatmaps, tags, adjust_position=adjust_position,
                               probes=loc[..., 1] * w + loc[..., 0])  # fmt: skip
    return people, scores.astype(np.float32)
