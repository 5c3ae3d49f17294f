"""COCO keypoint AP (pycocotools' COCOeval, OKS) and AP by crowding level (section 4).

``evaluate_keypoints`` reports AP, AP50, AP75, APM, APL and AR in percent with at most
``max_dets`` people per image (20, COCO's keypoint default and OCHuman's convention).
pycocotools' own ``summarize`` only works for maxDets=20, so the summary is read from
``COCOeval.eval`` here (same formula: the mean over defined entries, -1 if none).
``ap_by_crowding`` splits images by their largest bounding-box IoU between two people, the
quantity OCHuman is built on, to show where association fails.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import numbers
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from rnnpose import cli_types
from rnnpose.data.coco import coco_from_dict, first_image_ids, validate_coco
from rnnpose.io import DataError, PathLike, read_json
from rnnpose.skeleton import NUM_JOINTS

METRICS: tuple[str, ...] = ("AP", "AP50", "AP75", "APM", "APL", "AR")


def load_gt(gt: PathLike | COCO) -> COCO:
    """A validated ground-truth ``COCO`` (a ``COCO`` object is passed through)."""
    if isinstance(gt, COCO):
        return gt
    coco = coco_from_dict(validate_coco(read_json(gt), gt, need_area=True))
    if not coco.getImgIds():
        raise DataError(f"{gt}: empty dataset (zero images)")
    return coco


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _flat_keypoints(kp: Any) -> list[Any] | None:
    """``kp`` as a flat list: a flat JSON list (a nested ``[[x, y, v]] * 17`` is not one, as
    COCO's format and the training annotations have it) or, from Python, an array; or None."""
    if isinstance(kp, np.ndarray):
        return kp.ravel().tolist()
    if not isinstance(kp, (list, tuple)):
        return None
    return list(kp)


def _describe(x: Any) -> str:
    """A value as an error message shows it: its type for a list or an object."""
    if isinstance(x, (list, tuple, dict)):
        return f"a nested {'list' if isinstance(x, (list, tuple)) else 'object'}"
    return repr(x)[:40]


def check_results(results: Any, coco: COCO, source: str) -> list[dict]:
    """Validate COCO keypoint results against ``coco``; return a cleaned copy."""
    if not isinstance(results, list):
        raise DataError(f"{source}: results must be a JSON list of detections")
    out = []
    for k, r in enumerate(results):
        if not isinstance(r, dict):
            raise DataError(f"{source}: result #{k} is not an object")
        for key in ("image_id", "keypoints", "score"):
            if key not in r:
                raise DataError(
                    f"{source}: result #{k} (image {r.get('image_id')}): missing {key!r}"
                )
        where = f"{source}: result #{k} (image {str(r['image_id'])[:40]})"
        image_id = r["image_id"]
        if not isinstance(image_id, int) or isinstance(image_id, bool):
            kind = {bool: "a boolean", str: "a string", float: "a float", type(None): "null"}.get(
                type(image_id), f"a {type(image_id).__name__}")  # fmt: skip
            raise DataError(f"{source}: result #{k}: 'image_id' must be an integer, got {kind} "
                            f"({repr(image_id)[:40]})")  # fmt: skip
        flat = _flat_keypoints(r["keypoints"])
        if flat is not None and any(isinstance(x, (list, tuple, dict)) for x in flat):
            raise DataError(f"{where}: 'keypoints' must be a flat list of {3 * NUM_JOINTS} "
                            "numbers, got a nested list")  # fmt: skip
        if flat is None or len(flat) != 3 * NUM_JOINTS:
            got = type(r["keypoints"]).__name__ if flat is None else len(flat)
            raise DataError(f"{where}: 'keypoints' must hold {3 * NUM_JOINTS} numbers, got {got}")
        bad = next((x for x in flat if not _is_number(x)), None)
        if bad is not None:
            raise DataError(f"{where}: 'keypoints' holds a non-number ({_describe(bad)})")
        if not _is_number(r["score"]):
            raise DataError(f"{where}: 'score' must be a number, got {_describe(r['score'])}")
        if "category_id" in r and not (isinstance(r["category_id"], int)
                                       and not isinstance(r["category_id"], bool)):  # fmt: skip
            raise DataError(f"{where}: 'category_id' must be an integer")
        kp = np.asarray(flat, dtype=np.float64)
        if not np.isfinite(kp).all() or not np.isfinite(float(r["score"])):
            raise DataError(f"{where}: non-finite value")
        out.append(
            {
                "image_id": r["image_id"],
                "category_id": r.get("category_id", 1),
                "keypoints": kp.tolist(),
                "score": float(r["score"]),
            }
        )
    unknown = sorted(
        {r["image_id"] for r in out} - set(coco.getImgIds()),
        key=lambda i: (0, i, "") if isinstance(i, (int, float)) else (1, 0, str(i)),
    )
    if unknown:
        shown = ", ".join(map(str, unknown[:10])) + (" ..." if len(unknown) > 10 else "")
        raise DataError(
            f"{source}: {len(unknown)} result image id(s) not in the ground truth: {shown}"
        )
    return out


def _summary(E: COCOeval, max_dets: int) -> dict[str, float]:
    p = E.params
    m = list(p.maxDets).index(max_dets)

    def mean(a: np.ndarray) -> float:
        a = a[a > -1]
        return float(np.mean(a)) * 100 if a.size else -1.0

    prec, rec = E.eval["precision"], E.eval["recall"]  # [T,R,K,A,M], [T,K,A,M]
    area = {lbl: i for i, lbl in enumerate(p.areaRngLbl)}
    t50, t75 = (int(np.argmin(np.abs(p.iouThrs - t))) for t in (0.5, 0.75))
    return {
        "AP": mean(prec[:, :, :, area["all"], m]),
        "AP50": mean(prec[t50, :, :, area["all"], m]),
        "AP75": mean(prec[t75, :, :, area["all"], m]),
        "APM": mean(prec[:, :, :, area["medium"], m]),
        "APL": mean(prec[:, :, :, area["large"], m]),
        "AR": mean(rec[:, :, area["all"], m]),
    }


def evaluate_keypoints(
    gt: PathLike | COCO,
    results: list[dict] | PathLike,
    max_dets: int = 20,
    image_ids: list[int] | None = None,
) -> dict[str, float]:
    """COCO keypoint metrics in percent: AP, AP50, AP75, APM, APL, AR.

    ``results`` is a list (or a JSON file) of ``{"image_id", "category_id", "keypoints",
    "score"}``; ``image_ids`` restricts the evaluation to those images. No results: zeros.
    """
    if int(max_dets) < 1:
        raise DataError(f"--max-dets must be >= 1, got {max_dets}")
    coco = load_gt(gt)
    if isinstance(results, (str, Path)):
        source = str(results)
        results = read_json(results)
    else:
        source = "results"
    dets = check_results(results, coco, source)
    ids = sorted(coco.getImgIds()) if image_ids is None else sorted(image_ids)
    keep = set(ids)
    dets = [d for d in dets if d["image_id"] in keep]
    if not dets:  # pycocotools' loadRes cannot take an empty list
        return dict.fromkeys(METRICS, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        res = coco.loadRes(copy.deepcopy(dets))
        E = COCOeval(coco, res, iouType="keypoints")
        E.params.maxDets = [int(max_dets)]
        E.params.imgIds = ids
        E.evaluate()
        E.accumulate()
    return _summary(E, int(max_dets))


def _people_boxes(coco: COCO, image_id: int) -> list[list[float]]:
    anns = coco.imgToAnns.get(image_id, [])
    return [
        a["bbox"] for a in anns if not a.get("iscrowd", 0) and a.get("num_keypoints", 0) > 0
    ]


def pair_ious(boxes: list[list[float]]) -> np.ndarray:
    """IoU of every unordered pair of [x, y, w, h] boxes (upper triangle, flat)."""
    if len(boxes) < 2:
        return np.zeros(0)
    iou = mask_utils.iou(boxes, boxes, [0] * len(boxes))
    return iou[np.triu_indices(len(boxes), k=1)]


def max_pair_iou(gt: PathLike | COCO) -> dict[int, float]:
    """Per image, the largest bbox IoU between two (non-crowd, keypoint-bearing) people."""
    coco = load_gt(gt)
    out = {}
    for i in sorted(coco.getImgIds()):
        ious = pair_ious(_people_boxes(coco, i))
        out[i] = float(ious.max()) if ious.size else 0.0
    return out


def ap_by_crowding(
    gt: PathLike | COCO,
    results: list[dict] | PathLike,
    edges: tuple[float, ...] = (0.1, 0.5),
    max_dets: int = 20,
    image_ids: list[int] | None = None,
) -> list[dict[str, Any]]:
    """Metrics per crowding bucket (``<e0``, ``e0-e1``, ..., ``>=e_last`` of max pair IoU),
    over ``image_ids`` only where given. Buckets without images carry ``None`` metrics.
    """
    coco = load_gt(gt)
    if isinstance(results, (str, Path)):
        source, results = str(results), read_json(results)
    else:
        source = "results"
    dets = check_results(results, coco, source)
    crowd = max_pair_iou(coco)
    if image_ids is not None:
        keep = set(image_ids)
        crowd = {i: v for i, v in crowd.items() if i in keep}
    bounds = [-np.inf, *edges, np.inf]
    names = (
        [f"<{edges[0]:g}"]
        + [f"{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
        + [f">={edges[-1]:g}"]
    )
    rows = []
    for name, lo, hi in zip(names, bounds[:-1], bounds[1:], strict=True):
        ids = [i for i, v in crowd.items() if lo <= v < hi]
        row: dict[str, Any] = {"bucket": name, "n_images": len(ids)}
        if ids:
            row.update(evaluate_keypoints(coco, dets, max_dets=max_dets, image_ids=ids))
        else:
            row.update(dict.fromkeys(METRICS))
        rows.append(row)
    return rows


def format_table(metrics: dict[str, Any] | list[dict[str, Any]], title: str = "") -> str:
    """A plain-text table; one row per dict (a ``bucket`` key, if any, labels the row)."""
    rows = [metrics] if isinstance(metrics, dict) else list(metrics)
    label = "bucket" if any("bucket" in r for r in rows) else ""
    head = [label] * bool(label) + (["images"] if any("n_images" in r for r in rows) else [])
    cols = head + list(METRICS)
    width = 9

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.1f}"
        return str(v)

    lines = [title] if title else []
    lines.append(" ".join(f"{c:>{width}}" for c in cols))
    for r in rows:
        vals = ([r.get("bucket", "")] if label else []) + (
            [r.get("n_images")] if "images" in head else []
        )
        vals += [r.get(m) for m in METRICS]
        lines.append(" ".join(f"{cell(v):>{width}}" for v in vals))
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--gt", type=cli_types.existing_file, help="ground-truth COCO keypoint file")
    src.add_argument("--run", type=cli_types.run_folder,
                     help="a trained run folder (predicts first)")  # fmt: skip
    parser.add_argument("--results", type=cli_types.existing_file,
                        help="COCO keypoint results file (with --gt)")  # fmt: skip
    parser.add_argument("--data", type=cli_types.existing_folder,
                        help="dataset folder to predict on (with --run): annotations.json and "
                        "images/")  # fmt: skip
    parser.add_argument("--ann", type=cli_types.existing_file,
                        help="with --run, instead of --data: a COCO keypoint file (e.g. "
                        "person_keypoints_val2017.json), with --images")  # fmt: skip
    parser.add_argument("--images", type=cli_types.existing_folder,
                        help="with --ann: its image folder (e.g. val2017/)")  # fmt: skip
    parser.add_argument("--subset", type=cli_types.integer(1), metavar="N",
                        help="only the first N images (by id) of the ground truth: predicted "
                        "(with --run) and scored")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--max-dets", type=cli_types.integer(1), default=20,
                        help="people per image (20)")  # fmt: skip
    parser.add_argument(
        "--by-crowding", action="store_true", help="also AP per max-pair-IoU bucket"
    )
    parser.add_argument(
        "--method", choices=["rmpp", "ae"], help="with --run: rmpp or ae (default: the run's)"
    )
    from rnnpose.predict import add_scale_arguments

    add_scale_arguments(parser)  # with --run
    parser.add_argument(
        "--device", type=cli_types.device, default=None,
        help="with --run: cpu, cuda, ... (default: cuda if available)",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    if args.gt is not None:
        if args.results is None or args.data is not None or args.ann or args.images:
            raise DataError("--gt needs --results (and no --data, --ann or --images)")
        if args.flip or args.scales is not None:
            raise DataError("--flip and --scales predict first: they need --run, not --gt")
        gt, results = args.gt, args.results
    else:
        if args.results is not None:
            raise DataError("--run predicts its own results: give --data or --ann/--images, "
                            "not --results")  # fmt: skip
        if (args.data is None) == (args.ann is None and args.images is None):
            raise DataError("--run needs --data DIR or --ann FILE --images DIR (one of them)")
        if (args.ann is None) != (args.images is None):
            raise DataError("--ann and --images go together")
        import torch

        from rnnpose.predict import parse_scales, predict_split
        from rnnpose.train.ae import data_paths

        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        kw: dict[str, Any] = {"flip": True} if args.flip else {}
        if args.scales is not None:
            kw["scales"] = parse_scales(args.scales)
        gt, image_root = data_paths(args.data, args.ann, args.images)
        results = predict_split(args.run, gt, image_root, method=args.method, device=device,
                                quiet=args.quiet, subset=args.subset, **kw)  # fmt: skip
    coco = load_gt(gt)
    ids = first_image_ids(coco, args.subset)
    metrics: dict[str, Any] = evaluate_keypoints(coco, results, max_dets=args.max_dets,
                                                 image_ids=ids)  # fmt: skip
    buckets = (ap_by_crowding(coco, results, max_dets=args.max_dets, image_ids=ids)
               if args.by_crowding else None)  # fmt: skip
    if args.json:
        out = {**metrics, "images": len(ids)}
        if buckets is not None:
            out["by_crowding"] = buckets
        print(json.dumps(out))
    else:
        print(format_table(metrics, title=f"COCO keypoint metrics (%), maxDets={args.max_dets}"
                                          f", {len(ids)} image(s)"))
        if buckets is not None:
            print()
            print(format_table(buckets, title="by crowding (largest bbox IoU of two people)"))
    return 0
