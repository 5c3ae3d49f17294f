"""Drawing people: skeletons over images, and a grid of dataset samples.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot state), so the functions work
in notebooks, scripts and tests alike. Joints with v=2 are filled dots; joints with v=1
(labelled, not visible) are hollow and their limbs dashed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from rnnpose.io import PathLike
from rnnpose.skeleton import LIMBS, NUM_JOINTS

#: Distinct colours for people (matplotlib's tab10 followed by Set2), RGB in [0, 1].
PALETTE: tuple[tuple[float, float, float], ...] = (
    (0.122, 0.467, 0.706), (1.000, 0.498, 0.055), (0.173, 0.627, 0.173),
    (0.839, 0.153, 0.157), (0.580, 0.404, 0.741), (0.549, 0.337, 0.294),
    (0.890, 0.467, 0.761), (0.498, 0.498, 0.498), (0.737, 0.741, 0.133),
    (0.090, 0.745, 0.812), (0.400, 0.761, 0.647), (0.988, 0.553, 0.384),
    (0.553, 0.627, 0.796), (0.906, 0.541, 0.765), (0.651, 0.847, 0.329),
    (1.000, 0.851, 0.184),
)  # fmt: skip


def person_color(i: int) -> tuple[float, float, float]:
    """The colour of person ``i`` (cycles through :data:`PALETTE`)."""
    return PALETTE[i % len(PALETTE)]


def drawn_limbs(keypoints: np.ndarray, show_invisible: bool = True) -> int:
    """How many limb lines :func:`draw_people` draws for ``keypoints`` [Z,17,3]."""
    kp = np.asarray(keypoints, dtype=float).reshape(-1, NUM_JOINTS, 3)
    v = kp[..., 2]
    ok = (v >= 2) if not show_invisible else (v > 0)
    return int(sum((ok[:, a] & ok[:, b]).sum() for a, b in LIMBS))


def draw_people(
    ax: Axes,
    image: np.ndarray | None,
    keypoints: np.ndarray,
    colors: Sequence[Any] | None = None,
    scores: Sequence[float | str] | None = None,
    show_invisible: bool = True,
    linewidth: float = 2.0,
    markersize: float = 12.0,
) -> Axes:
    """Draw ``image`` (HxW[x3], may be None) and the skeletons ``keypoints`` [Z,17,3].

    One ``Line2D`` per limb whose two joints are shown (v > 0, or v = 2 without
    ``show_invisible``); dashed when either joint has v = 1. Joints are scatter points:
    filled for v = 2, hollow for v = 1. ``scores`` label each person at their top joint.
    """
    kp = np.asarray(keypoints, dtype=float).reshape(-1, NUM_JOINTS, 3)
    if image is not None:
        ax.imshow(image)
    ax.set_axis_off()
    for z, person in enumerate(kp):
        color = colors[z] if colors is not None else person_color(z)
        v = person[:, 2]
        shown = (v > 0) if show_invisible else (v >= 2)
        for a, b in LIMBS:
            if shown[a] and shown[b]:
                dashed = v[a] < 2 or v[b] < 2
                ax.plot(
                    person[[a, b], 0], person[[a, b], 1], color=color, lw=linewidth,
                    ls="--" if dashed else "-", solid_capstyle="round",
                )  # fmt: skip
        vis = v >= 2
        if vis.any():
            ax.scatter(person[vis, 0], person[vis, 1], s=markersize, c=[color], zorder=3)
        hid = (v == 1) & shown
        if hid.any():
            ax.scatter(person[hid, 0], person[hid, 1], s=markersize, facecolors="none",
                       edgecolors=[color], zorder=3)  # fmt: skip
        if scores is not None and shown.any():
            top = int(np.argmin(np.where(shown, person[:, 1], np.inf)))
            label = scores[z] if isinstance(scores[z], str) else f"{scores[z]:.2f}"
            ax.text(person[top, 0], person[top, 1] - 3, label, color=color,
                    fontsize=7, ha="center", va="bottom")  # fmt: skip
    if image is not None:
        h, w = np.asarray(image).shape[:2]
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
    return ax


def overlay_heatmaps(
    ax: Axes,
    image: np.ndarray,
    heatmaps: np.ndarray,
    alpha: float = 0.55,
    cmap: str = "magma",
    reduce: str = "max",
) -> Axes:
    """Show ``heatmaps`` ([M,M] or [J,M,M], reduced over joints with ``max`` or ``sum``) over
    a square input ``image``. Heatmap pixel i sits at input pixel i * stride (no half-pixel
    shift, as in :mod:`rnnpose.targets`), stride = image side / M (paper fig. 1, 2)."""
    h = np.asarray(heatmaps, dtype=float)
    if h.ndim == 3:
        h = h.max(axis=0) if reduce == "max" else h.sum(axis=0)
    stride = np.asarray(image).shape[1] / h.shape[1]
    ax.imshow(image)
    ax.imshow(
        np.clip(h, 0, None), cmap=cmap, alpha=alpha, interpolation="bilinear",
        extent=(-0.5 * stride, (h.shape[1] - 0.5) * stride, (h.shape[0] - 0.5) * stride,
                -0.5 * stride),
    )  # fmt: skip
    side = np.asarray(image).shape
    ax.set_xlim(-0.5, side[1] - 0.5)
    ax.set_ylim(side[0] - 0.5, -0.5)
    ax.set_axis_off()
    return ax


def sample_grid(
    ann_file: PathLike,
    image_root: PathLike,
    n: int = 6,
    cols: int = 3,
    seed: int | None = None,
    image_ids: Sequence[int] | None = None,
    show_invisible: bool = True,
    panel_size: float = 3.0,
) -> Figure:
    """A figure of ``n`` images of a COCO keypoint file with their annotated people.

    Images are the first ``n`` by id, a seeded random choice with ``seed``, or ``image_ids``.
    Crowd annotations and people without keypoints are not drawn. The figure has exactly one
    axes per image.
    """
    from rnnpose.data.coco import load_coco, read_image

    coco = load_coco(ann_file)
    ids = sorted(coco.imgs)
    if image_ids is not None:
        ids = list(image_ids)
    elif seed is not None:
        rng = np.random.default_rng(seed)
        ids = sorted(rng.choice(ids, size=min(n, len(ids)), replace=False).tolist())
    ids = ids[:n]
    cols = max(1, min(cols, len(ids)))
    rows = max(1, math.ceil(len(ids) / cols))
    fig = Figure(figsize=(panel_size * cols, panel_size * rows))
    for k, image_id in enumerate(ids):
        ax = fig.add_subplot(rows, cols, k + 1)
        rec = coco.imgs[image_id]
        img = read_image(Path(image_root) / rec["file_name"])
        anns = [
            a for a in coco.imgToAnns.get(image_id, [])
            if not a.get("iscrowd", 0) and a.get("num_keypoints", 0) > 0
        ]  # fmt: skip
        kps = np.array([a["keypoints"] for a in anns], dtype=float).reshape(-1, NUM_JOINTS, 3)
        draw_people(ax, img, kps, show_invisible=show_invisible)
        ax.set_title(f"{rec['file_name']} ({len(anns)})", fontsize=8)
    fig.tight_layout()
    return fig


def prediction_figure(image: np.ndarray, prediction: Any, title: str = "",
                      size: float = 5.0) -> Figure:  # fmt: skip
    """An image with predicted people drawn, one colour each, with their scores.

    ``prediction`` is a :class:`rnnpose.predict.Prediction`; for RMPP each person's label is
    its stop probability p_t (section 3.1.1), for AE its grouping score.
    """
    kps = np.array([p["keypoints"] for p in prediction.people], dtype=float).reshape(-1, 17, 3)
    kps = kps.copy()
    kps[..., 2] = np.where(kps[..., 2] > 0, 2.0, 0.0)
    if prediction.decoded:
        p = prediction.decoded["p"].tolist()
        kept = [k for k in range(len(p)) if (prediction.decoded["keypoints"][k, :, 2] > 0).any()]
        labels = [f"p={p[k]:.2f}" for k in kept]
    else:
        labels = [f"{p['score']:.2f}" for p in prediction.people]
    h, w = image.shape[:2]
    fig = Figure(figsize=(size, size * h / max(w, 1) + 0.4))
    ax = fig.add_subplot(1, 1, 1)
    draw_people(ax, image, kps, scores=labels if labels else None)
    ax.set_title(title or f"{len(prediction.people)} people", fontsize=9)
    ax.set_axis_off()
    fig.tight_layout()
    return fig


def input_image(prediction: Any) -> np.ndarray:
    """The network input (letterboxed image) of a prediction, for heatmap overlays."""
    from rnnpose.data.transforms import scale_affine, warp_image

    maps = prediction.maps
    side = maps.heatmaps.shape[-1] * maps.stride
    return warp_image(prediction.image, scale_affine(maps.to_heatmap, maps.stride), side)


def iteration_strip(prediction: Any, assignment: Sequence[int] | None = None,
                    max_panels: int = 10, panel_size: float = 2.2,
                    heatmaps: str = "heatmaps") -> Figure:  # fmt: skip
    """Paper fig. 1: the decoder's person heatmaps (summed over joints), one panel per
    iteration t labelled with its stop probability p_t and, when given, the ground-truth
    person s_t it was matched to (-1: unmatched); a last panel shows the stopping p_t."""
    dec = prediction.decoded
    hm = dec[heatmaps].detach().cpu().numpy()
    p = dec["p"].tolist()
    base = input_image(prediction)
    stop = float(dec.get("p_stop", float("nan")))
    n = min(len(p), max_panels)
    panels = n + (0 if math.isnan(stop) else 1)
    fig = Figure(figsize=(panel_size * max(panels, 1), panel_size + 0.4))
    for t in range(n):
        ax = fig.add_subplot(1, max(panels, 1), t + 1)
        overlay_heatmaps(ax, base, hm[t], reduce="sum")
        s = "" if assignment is None else f", s={assignment[t]}"
        ax.set_title(f"t={t + 1}: p={p[t]:.2f}{s}", fontsize=8)
    if not math.isnan(stop):
        ax = fig.add_subplot(1, panels, panels)
        ax.imshow(base, alpha=0.35)
        ax.set_axis_off()
        ax.set_title(f"t={len(p) + 1}: p={stop:.2f} < omega", fontsize=8)
        ax.text(0.5, 0.5, "stop", ha="center", va="center", transform=ax.transAxes, fontsize=14)
    fig.tight_layout()
    return fig


def joint_panels(base: np.ndarray, heatmaps: np.ndarray, title: str = "",
                 cols: int = 6, panel_size: float = 1.8) -> Figure:  # fmt: skip
    """Paper fig. 2: one iteration's J heatmaps, each over the image, and their sum."""
    from rnnpose.skeleton import JOINT_NAMES

    hm = np.asarray(heatmaps)
    n = hm.shape[0] + 1
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(panel_size * cols, panel_size * rows + 0.3))
    for j in range(n):
        ax = fig.add_subplot(rows, cols, j + 1)
        if j < hm.shape[0]:
            overlay_heatmaps(ax, base, hm[j])
            ax.set_title(JOINT_NAMES[j].replace("_", " "), fontsize=7)
        else:
            overlay_heatmaps(ax, base, hm, reduce="sum")
            ax.set_title("sum over joints", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_tag_candidates(ax: Axes, val: np.ndarray, tag: np.ndarray, threshold: float,
                        owner: np.ndarray | None = None) -> Axes:  # fmt: skip
    """AE's grouping input at a glance: every NMS candidate above ``threshold`` as a dot at
    (joint type, its tag value); ``owner`` [J,k] (ground-truth person index or -1) colours
    them. Good tags put each person on its own horizontal band (section 2.2)."""
    from rnnpose.skeleton import AE_JOINT_ORDER, JOINT_NAMES

    for col, j in enumerate(AE_JOINT_ORDER):
        keep = val[j] > threshold
        if not keep.any():
            continue
        t = tag[j][keep][:, 0]
        colors = ["0.6" if owner is None or owner[j][i] < 0 else person_color(int(owner[j][i]))
                  for i in np.flatnonzero(keep)]  # fmt: skip
        ax.scatter(np.full(len(t), col), t, c=colors, s=18 + 60 * val[j][keep], zorder=3)
    ax.set_xticks(range(len(AE_JOINT_ORDER)))
    ax.set_xticklabels([JOINT_NAMES[j].replace("_", " ") for j in AE_JOINT_ORDER],
                       rotation=70, fontsize=7)  # fmt: skip
    ax.set_ylabel("tag value")
    ax.set_title("candidates in AE's joint order (colour: true person, grey: none)", fontsize=8)
    return ax
