"""The book's result figures: the main comparison with its seed spread, and AP by crowding
within each split (how many people an image holds, and how much its closest pair overlaps).

Figures are ``matplotlib.figure.Figure`` objects (no pyplot state). The crowding buckets are
computed from a run's cached COCO results (:meth:`rnnpose.experiments.Experiment.results`),
so drawing them evaluates but never predicts again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rnnpose.io import PathLike

#: People per image: bucket label -> (fewest, most) people (inclusive).
PEOPLE_BUCKETS: dict[str, tuple[int, int]] = {"1": (1, 1), "2": (2, 2), "3": (3, 3),
                                              "4-5": (4, 5), "6+": (6, 10**6)}  # fmt: skip

#: Largest bbox IoU of two people of an image: finer than the splits' own 0.1 / 0.5 borders,
#: so that each split falls into several buckets (``sparse`` below 0.3, ``occluded`` above 0.5).
IOU_EDGES: tuple[float, ...] = (0.0, 0.05, 0.1, 0.3, 0.5, 0.6, 0.7)

#: A bucket with fewer images than this is drawn hollow: its AP is too noisy to read.
MIN_IMAGES = 10


def people_per_image(gt: PathLike | Any) -> dict[int, int]:
    """Per image, the annotated people with keypoints (crowd annotations left out)."""
    from rnnpose.evaluate import load_gt

    coco = load_gt(gt)
    return {i: sum(1 for a in coco.imgToAnns.get(i, []) if a.get("num_keypoints", 0) > 0
                   and not a.get("iscrowd", 0)) for i in sorted(coco.getImgIds())}  # fmt: skip


def iou_buckets(values: Mapping[int, float],
                edges: Sequence[float] = IOU_EDGES) -> dict[str, list[int]]:  # fmt: skip
    """Images by their largest pair IoU: ``"0"`` (one person, or no two boxes touch), then
    ``[e_k, e_k+1)`` for the ``edges`` after 0, the last open-ended. Empty buckets included."""
    out: dict[str, list[int]] = {"0": [i for i, v in values.items() if v <= edges[0]]}
    bounds = [*edges, np.inf]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        name = f">={lo:g}" if hi == np.inf else f"{lo:g}-{hi:g}"
        above = (lambda v, lo=lo: v > lo) if lo == edges[0] else (lambda v, lo=lo: v >= lo)
        out[name] = [i for i, v in values.items() if above(v) and v < hi]
    return out


def people_buckets(counts: Mapping[int, int],
                   buckets: Mapping[str, tuple[int, int]] = PEOPLE_BUCKETS,
                   ) -> dict[str, list[int]]:  # fmt: skip
    """Images by their number of people (images without people are left out)."""
    return {name: [i for i, n in counts.items() if lo <= n <= hi]
            for name, (lo, hi) in buckets.items()}  # fmt: skip


def crowding_ap(gt: PathLike | Any, results: list[dict[str, Any]], by: str = "people",
                max_dets: int = 20) -> pd.DataFrame:  # fmt: skip
    """AP of ``results`` per crowding bucket of the split ``gt``: rows = buckets (``by``:
    ``people`` per image or largest pair ``iou``), columns ``images`` and ``AP``; buckets
    without images are left out."""
    from rnnpose.evaluate import evaluate_keypoints, load_gt, max_pair_iou

    coco = load_gt(gt)
    if by == "people":
        groups = people_buckets(people_per_image(coco))
    elif by == "iou":
        groups = iou_buckets(max_pair_iou(coco))
    else:
        raise ValueError(f"by must be 'people' or 'iou', got {by!r}")
    rows = {name: {"images": len(ids),
                   "AP": evaluate_keypoints(coco, results, max_dets, ids)["AP"]}
            for name, ids in groups.items() if ids}  # fmt: skip
    return pd.DataFrame.from_dict(rows, orient="index")


def crowding_figure(tables: Mapping[tuple[str, str, str], pd.DataFrame],
                    panel: tuple[float, float] = (4.0, 2.8)) -> Figure:  # fmt: skip
    """One row of panels per bucketing (``people``, ``iou``) and one column per split; in
    each, AP per bucket with a bar per method, the bucket's image count under its label.
    ``tables``: ``{(method, split, by): crowding_ap(...)}``. Buckets with fewer than
    :data:`MIN_IMAGES` images are drawn hollow."""
    methods = list(dict.fromkeys(k[0] for k in tables))
    splits = list(dict.fromkeys(k[1] for k in tables))
    bys = list(dict.fromkeys(k[2] for k in tables))
    fig = Figure(figsize=(panel[0] * len(splits), panel[1] * len(bys) + 0.3))
    axes = np.asarray(fig.subplots(len(bys), len(splits), squeeze=False))
    width = 0.8 / max(len(methods), 1)
    titles = {"people": "people per image", "iou": "largest IoU of two people"}
    for r, by in enumerate(bys):
        for c, split in enumerate(splits):
            ax = axes[r, c]
            frame = tables[(methods[0], split, by)]
            x = np.arange(len(frame))
            for k, method in enumerate(methods):
                t = tables[(method, split, by)].reindex(frame.index)
                few = (t["images"] < MIN_IMAGES).to_numpy()
                color = f"C{k}"
                ax.bar(x + width * k, t["AP"], width=width, label=method, color=color,
                       edgecolor=color, alpha=1.0)  # fmt: skip
                for xi, ap in zip(x[few] + width * k, t["AP"].to_numpy()[few], strict=True):
                    ax.bar(xi, ap, width=width, color="white", edgecolor=color, hatch="//")
            ax.set_xticks(x + width * (len(methods) - 1) / 2,
                          [f"{b}\nn={n}" for b, n in zip(frame.index, frame["images"],
                                                         strict=True)], fontsize=7)  # fmt: skip
            ax.set_title(f"{split}: by {titles.get(by, by)}", fontsize=9)
            ax.set_ylabel("AP")
            if r == 0 and c == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def main_comparison_figure(ap: pd.DataFrame, spread: float, *,
                           published: pd.DataFrame | None = None,
                           spread_rows: Sequence[str] = ("Ours, SS", "Ours, MS"),
                           size: tuple[float, float] = (7.5, 3.2)) -> Figure:  # fmt: skip
    """AP per method (bars, rows of ``ap``) and split (groups, columns of ``ap``); the rows
    ``spread_rows`` (the decoder's) carry an error bar of +- ``spread``, the seed-to-seed
    range: a gap to AE inside it decides nothing. ``published``: the same frame from the
    published run, drawn as hollow diamonds where it has a value."""
    fig = Figure(figsize=size)
    ax = fig.subplots()
    methods, splits = list(ap.index), list(ap.columns)
    width = 0.8 / max(len(methods), 1)
    x = np.arange(len(splits))
    for k, method in enumerate(methods):
        xs = x + width * k
        values = ap.loc[method].to_numpy(dtype=float)
        err = spread if method in spread_rows else None
        ax.bar(xs, values, width=width, color=f"C{k}", label=method, yerr=err,
               capsize=4 if err else 0, error_kw={"elinewidth": 1.2})  # fmt: skip
        if published is not None and method in published.index:
            pub = published.reindex(columns=splits).loc[method].to_numpy(dtype=float)
            ok = np.isfinite(pub)
            ax.scatter(xs[ok], pub[ok], marker="D", facecolors="none", edgecolors="k",
                       zorder=3, label="published run" if k == 0 else None)  # fmt: skip
    ax.set_xticks(x + width * (len(methods) - 1) / 2, splits)
    ax.set_ylabel("AP")
    ax.set_title(f"error bars: +-{spread:.1f} AP, the decoder's seed-to-seed range "
                 "(a gap inside it decides nothing)", fontsize=8)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def made_on(fig: Figure, machine: str) -> Figure:
    """Write the machine whose numbers ``fig`` shows under its lower right corner (issue 22:
    the same commit trains to weights a few AP apart on another CPU model, so a figure is only
    comparable with figures made on the same one). The text lies below the axes; the inline
    backend's tight bounding box takes it into the image."""
    fig.text(0.995, -0.01, machine, ha="right", va="top", fontsize=7, color="0.35")
    return fig
