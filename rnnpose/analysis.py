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


def oracle_grouping(heatmaps: np.ndarray, gt: np.ndarray, radius: int = 2) -> np.ndarray:
    """AE's heatmaps grouped by the ground truth: the upper bound of any grouping.

    For every annotated joint of every ground-truth person ``gt`` [Z,J,3] (heatmap pixels,
    v > 0 annotated) the maximum of that joint's heatmap [J,M,M] within ``radius`` pixels of
    it, then AE's quarter-pixel adjustment. Returns people [Z,J,3] (x, y, detection value;
    zeros where the joint is unannotated or outside the map). What stays wrong is detection
    and localisation; what AE's grouping loses beyond it is the grouping's fault (section 2.2).
    """
    from rnnpose.grouping import adjust

    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    gt = np.asarray(gt, dtype=float)
    n_joints, h, w = heatmaps.shape
    people = np.zeros((len(gt), n_joints, 3), dtype=np.float32)
    for p, person in enumerate(gt):
        for j in range(n_joints):
            if person[j, 2] <= 0:
                continue
            cx, cy = int(round(person[j, 0])), int(round(person[j, 1]))
            x0, x1 = max(0, cx - radius), min(w, cx + radius + 1)
            y0, y1 = max(0, cy - radius), min(h, cy + radius + 1)
            if x0 >= x1 or y0 >= y1:
                continue
            window = heatmaps[j, y0:y1, x0:x1]
            yy, xx = np.unravel_index(int(np.argmax(window)), window.shape)
            people[p, j] = (x0 + xx, y0 + yy, max(float(window[yy, xx]), 1e-6))
    return adjust(people, heatmaps)


def oracle_results(
    run_dir: PathLike, ann_file: PathLike, image_root: PathLike, *, radius: int = 2,
    device: str = "cpu", quiet: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """COCO results of :func:`oracle_grouping` on every image of a split (AE's single-scale
    heatmaps of the run ``run_dir``; person score = mean detection value of its joints)."""
    from pathlib import Path

    from rnnpose.data.coco import load_coco, read_image
    from rnnpose.data.transforms import apply_affine
    from rnnpose.inference import people_to_results
    from rnnpose.predict import Predictor, coco_results
    from rnnpose.progress import progress

    predictor = Predictor(run_dir, method="ae", device=device)
    coco = load_coco(ann_file)
    results: list[dict[str, Any]] = []
    for image_id in progress(sorted(coco.imgs), quiet=quiet, desc="oracle grouping"):
        image = read_image(Path(image_root) / coco.imgs[image_id]["file_name"])
        maps = predictor.predict(image).maps
        anns = [a for a in coco.imgToAnns.get(image_id, []) if a.get("num_keypoints", 0) > 0]
        if not anns:
            continue
        gt = np.array([a["keypoints"] for a in anns], dtype=float).reshape(-1, 17, 3)
        gt[..., :2] = apply_affine(gt[..., :2], maps.to_heatmap)
        people = oracle_grouping(maps.heatmaps, gt, radius)
        found = people[..., 2] > 0
        scores = np.array([p[f, 2].mean() if f.any() else 0.0
                           for p, f in zip(people, found, strict=True)])  # fmt: skip
        results.extend(coco_results(people_to_results(people, scores, maps), image_id))
    return results
