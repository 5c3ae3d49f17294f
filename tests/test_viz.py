"""Skeleton drawing and the sample grid, on the real samples."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure

from rnnpose.skeleton import LIMBS
from rnnpose.viz import (
    PALETTE,
    draw_people,
    drawn_limbs,
    overlay_heatmaps,
    person_color,
    sample_grid,
)

matplotlib.use("Agg")


def full_person(offset=0.0):
    kp = np.zeros((17, 3))
    kp[:, 0] = np.arange(17) + offset
    kp[:, 1] = np.arange(17) * 2.0
    kp[:, 2] = 2
    return kp


def test_draw_people_lines_styles_and_markers():
    a, b = full_person(), full_person(20.0)
    b[9, 2] = 0  # left wrist unlabelled: limb (7, 9) goes
    b[13, 2] = 1  # left knee hidden: limbs (15, 13) and (13, 11) dashed
    kps = np.stack([a, b])
    fig = Figure()
    ax = fig.add_subplot()
    draw_people(ax, np.zeros((40, 50, 3), np.uint8), kps, scores=[0.9, 0.4])
    assert len(ax.lines) == drawn_limbs(kps) == 2 * len(LIMBS) - 1
    dashed = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert len(dashed) == 2
    assert ax.lines[0].get_color() == PALETTE[0]
    assert [t.get_text() for t in ax.texts] == ["0.90", "0.40"]
    # filled joints of both people + one hollow marker set for the hidden knee
    assert len(ax.collections) == 3
    ax2 = Figure().add_subplot()
    draw_people(ax2, None, kps, show_invisible=False)
    assert len(ax2.lines) == drawn_limbs(kps, show_invisible=False) == 2 * len(LIMBS) - 1 - 2
    assert person_color(len(PALETTE)) == PALETTE[0]


@pytest.mark.parametrize(
    "folder,name,n,cols",
    [
        ("coco-val2017-sample", "test_coco.json", 4, 3),
        ("ochuman-sample", "test_ochuman.json", 2, 2),
    ],
)
def test_sample_grid_on_real_files(real_samples, folder, name, n, cols):
    root = real_samples / folder
    fig = sample_grid(root / name, root, n=n, cols=cols)
    assert isinstance(fig, Figure) and len(fig.axes) == n
    data = json.loads((root / name).read_text())
    ids = sorted(im["id"] for im in data["images"])[:n]
    for ax, image_id in zip(fig.axes, ids, strict=True):
        kps = np.array([a["keypoints"] for a in data["annotations"]
                        if a["image_id"] == image_id and a["num_keypoints"] > 0]).reshape(-1, 17, 3)
        assert len(ax.lines) == drawn_limbs(kps) > 0
        assert len(ax.images) == 1
    fig.canvas.draw()  # renders without error
    seeded = sample_grid(root / name, root, n=2, seed=0)
    assert len(seeded.axes) == 2


def test_overlay_heatmaps_extent_matches_stride():
    ax = Figure().add_subplot()
    maps = np.zeros((17, 16, 16))
    maps[3, 5, 7] = 1.0
    overlay_heatmaps(ax, np.zeros((64, 64, 3), np.uint8), maps)
    assert len(ax.images) == 2
    assert ax.images[1].get_extent() == [-2.0, 62.0, 62.0, -2.0]
    assert ax.images[1].get_array().max() == 1.0
