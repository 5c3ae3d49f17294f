"""Small analyses the notebooks show: who owns a grouping candidate, how many people a method
counts per image. Kept here so that notebooks stay walkthroughs."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from rnnpose.io import PathLike


def candidate_owners(loc: np.ndarray, gt: np.ndarray, radius: float = 1.5) -> np.ndarray:
    """For AE's candidates ``loc`` [J,k,2] (heatmap pixels) the index of the ground-truth
    person [Z,J,3] whose same joint lies within ``radius`` pixels (nearest), else -1."""
    gt = np.asarray(gt, dtype=float)
    owners = np.full(loc.shape[:2], -1, dtype=int)
    if len(gt) == 0:
        return owners
    for j in range(loc.shape[0]):
        d = np.linalg.norm(loc[j][:, None, :] - gt[None, :, j, :2], axis=-1)  # [k, Z]
        d[:, gt[:, j, 2] <= 0] = np.inf
        best = d.argmin(axis=1)
        hit = d[np.arange(len(best)), best] <= radius
        owners[j, hit] = best[hit]
    return owners


def count_errors(
    gt_file: PathLike, results: list[dict[str, Any]], min_score: float = 0.0
) -> Counter:
    """Histogram of (people predicted with score >= ``min_score``) - (people annotated) per
    image: the paper's remark that AE over-counts while the decoder learns the count."""
    from rnnpose.evaluate import load_gt

    coco = load_gt(gt_file)
    predicted = Counter(r["image_id"] for r in results if r["score"] >= min_score)
    truth = {i: sum(1 for a in coco.imgToAnns.get(i, []) if a.get("num_keypoints", 0) > 0
                    and not a.get("iscrowd", 0)) for i in coco.imgs}  # fmt: skip
    return Counter(predicted.get(i, 0) - n for i, n in truth.items())


def assignment_labels(
    pred_heatmaps: Any, gt_keypoints_hm: Any, size: int, sigma: float
) -> list[int]:
    """Paper fig. 1's s_t: for each predicted person t, the 1-based index of the ground-truth
    person the Hungarian matching (section 3.2) assigns to it, or -1 when unmatched."""
    from rnnpose.matching import hungarian_match
    from rnnpose.targets import person_heatmaps

    gt = person_heatmaps(gt_keypoints_hm, size, sigma)
    pred_idx, gt_idx = hungarian_match(pred_heatmaps.float().cpu(), gt)
    labels = [-1] * int(pred_heatmaps.shape[0])
    for p, g in zip(pred_idx.tolist(), gt_idx.tolist(), strict=True):
        labels[p] = g + 1
    return labels
