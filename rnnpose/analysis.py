"""Small analyses the notebooks show: who owns a grouping candidate, how many people a method
counts per image. Kept here so that notebooks stay walkthroughs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
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


def _oks(pred: np.ndarray, gt: np.ndarray, area: float) -> float:
    """COCO's object keypoint similarity of one prediction [17,2] with one person [17,3]."""
    from rnnpose.skeleton import OKS_SIGMAS

    vis = gt[:, 2] > 0
    if not vis.any():
        return 0.0
    var = (2 * OKS_SIGMAS) ** 2
    d2 = ((pred[:, :2] - gt[:, :2]) ** 2).sum(1)
    e = d2 / var / (area + np.spacing(1)) / 2
    return float(np.exp(-e[vis]).mean())


def joint_errors(
    gt_file: PathLike, results: list[dict[str, Any]], unit: float = 1.0, min_oks: float = 0.1
) -> dict[str, float]:
    """Where the keypoint AP is lost: each prediction (highest score first) is matched to the
    unmatched annotated person of its image with the highest OKS (at least ``min_oks``), as
    COCO's evaluation does; then, over the labelled joints of the matched pairs:

    * ``dropped`` -- fraction predicted with score 0 (RMPP: below tau; AE: not found);
    * ``err_median`` -- median distance of the kept joints to their annotation, in ``unit``
      pixels (e.g. the heatmap stride);
    * ``within_1`` -- fraction of kept joints within one ``unit`` of their annotation;
    * ``other_person`` -- fraction of kept joints lying nearer to the same joint of ANOTHER
      annotated person of the image than to their own: joints taken from the wrong person;
    * ``oks_ge_50`` / ``oks_ge_75`` -- fraction of annotated people matched at OKS >= 0.5 / 0.75;
    * ``unmatched_predictions`` -- predictions matching nobody (duplicates, false people).
    """
    from rnnpose.evaluate import load_gt

    coco = load_gt(gt_file)
    by_image: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        by_image.setdefault(int(r["image_id"]), []).append(r)
    n_people = kept = dropped = within = other = 0
    errs: list[float] = []
    oks_hits = {50: 0, 75: 0}
    unmatched = 0
    for image_id in coco.getImgIds():
        anns = [a for a in coco.imgToAnns.get(image_id, [])
                if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd", 0)]  # fmt: skip
        gts = [np.asarray(a["keypoints"], dtype=float).reshape(-1, 3) for a in anns]
        n_people += len(gts)
        free = set(range(len(gts)))
        for r in sorted(by_image.get(image_id, []), key=lambda r: -r["score"]):
            kp = np.asarray(r["keypoints"], dtype=float).reshape(-1, 3)
            scores = {g: _oks(kp, gts[g], float(anns[g]["area"])) for g in free}
            best = max(scores, key=scores.get, default=None)
            if best is None or scores[best] < min_oks:
                unmatched += 1
                continue
            free.discard(best)
            oks_hits[50] += scores[best] >= 0.5
            oks_hits[75] += scores[best] >= 0.75
            gt = gts[best]
            for j in np.flatnonzero(gt[:, 2] > 0):
                if kp[j, 2] <= 0:
                    dropped += 1
                    continue
                kept += 1
                d = float(np.hypot(*(kp[j, :2] - gt[j, :2]))) / unit
                errs.append(d)
                within += d <= 1.0
                others = [float(np.hypot(*(kp[j, :2] - g[j, :2]))) / unit
                          for k, g in enumerate(gts) if k != best and g[j, 2] > 0]  # fmt: skip
                other += bool(others) and min(others) < d
    labelled = kept + dropped
    return {
        "people": n_people,
        "dropped": dropped / max(labelled, 1),
        "err_median": float(np.median(errs)) if errs else float("nan"),
        "within_1": within / max(kept, 1),
        "other_person": other / max(kept, 1),
        "oks_ge_50": oks_hits[50] / max(n_people, 1),
        "oks_ge_75": oks_hits[75] / max(n_people, 1),
        "unmatched_predictions": unmatched,
    }


def tag_quality(
    run_dir: PathLike, ann_file: PathLike, image_root: PathLike, *, device: str = "cpu",
    quiet: bool = True,
) -> dict[str, float]:  # fmt: skip
    """How well AE's tags separate people (section 2.1), read at the annotated joints.

    For every annotated person of every image: the tags of its labelled joints (AE's
    single-scale tag maps at the joint's nearest heatmap pixel) and their mean. Returns the
    median within-person deviation (joint tag to own mean), the median distance between two
    people's means in the same image, the fraction of such pairs closer than AE's tag threshold
    (1.0: the grouping cannot tell them apart), and the fraction of joints whose tag is nearer to
    their own person's mean than to every other person's (``joint_own_nearest``; 1 = perfect).
    """
    from rnnpose.data.coco import load_coco, read_image
    from rnnpose.data.transforms import apply_affine
    from rnnpose.predict import Predictor
    from rnnpose.progress import progress

    predictor = Predictor(run_dir, method="ae", device=device)
    coco = load_coco(ann_file)
    within: list[float] = []
    between: list[float] = []
    own = total = 0
    for image_id in progress(sorted(coco.imgs), quiet=quiet, desc="tag quality"):
        anns = [a for a in coco.imgToAnns.get(image_id, []) if a.get("num_keypoints", 0) > 0]
        if not anns:
            continue
        maps = predictor.predict(read_image(Path(image_root) / coco.imgs[image_id]["file_name"])
                                 ).maps  # fmt: skip
        m = maps.heatmaps.shape[-1]
        gt = np.array([a["keypoints"] for a in anns], dtype=float).reshape(-1, 17, 3)
        xy = np.rint(apply_affine(gt[..., :2], maps.to_heatmap)).astype(int)
        ok = (gt[..., 2] > 0) & (xy >= 0).all(-1) & (xy < m).all(-1)
        people = []
        for p in range(len(gt)):
            js = np.flatnonzero(ok[p])
            if len(js):
                people.append(maps.tags[js, xy[p, js, 1], xy[p, js, 0]])  # [k, L]
        means = [t.mean(0) for t in people]
        for p, t in enumerate(people):
            within.extend(np.linalg.norm(t - means[p], axis=1).tolist())
            d = np.stack([np.linalg.norm(t - mu, axis=1) for mu in means], 1)  # [k, people]
            own += int((d.argmin(1) == p).sum()) if len(means) > 1 else len(t)
            total += len(t)
        for p in range(len(means)):
            for q in range(p + 1, len(means)):
                between.append(float(np.linalg.norm(means[p] - means[q])))
    between_a = np.asarray(between)
    return {
        "within_median": float(np.median(within)) if within else float("nan"),
        "between_median": float(np.median(between_a)) if between else float("nan"),
        "pairs_below_1": float((between_a < 1.0).mean()) if between else float("nan"),
        "joint_own_nearest": own / max(total, 1),
    }
