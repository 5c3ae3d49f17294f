"""Affine helpers: letterbox geometry, inverse, warp/point agreement, flips."""

from __future__ import annotations

import numpy as np
import pytest

from rnnpose.data.transforms import (
    apply_affine,
    compose,
    get_affine,
    invert_affine,
    letterbox_affine,
    scale_affine,
    warp_image,
)


def test_letterbox_keeps_aspect_and_centres():
    A = letterbox_affine(425, 640, 128)  # COCO image 785
    s = 128 / 640
    pts = apply_affine(np.array([[0.0, 0.0], [639.0, 424.0], [319.5, 212.0]]), A)
    # pixel centres: the longer side spans exactly the input, the shorter one is centred
    assert pts[0, 0] == pytest.approx((s - 1) / 2)
    assert pts[1, 0] == pytest.approx(128 - (s + 1) / 2)
    assert pts[2] == pytest.approx([63.5, 63.5])
    assert A[0, 0] == pytest.approx(s) and A[1, 1] == pytest.approx(s)
    assert A[0, 1] == pytest.approx(0) and A[1, 0] == pytest.approx(0)


def test_invert_and_compose_round_trip():
    A = get_affine((40.0, 30.0), 70.0, 23.0, 96, flip=True)
    pts = np.array([[1.0, 2.0, 2.0], [50.5, 7.25, 1.0]])
    back = apply_affine(apply_affine(pts, A), invert_affine(A))
    assert back == pytest.approx(pts)
    assert compose(invert_affine(A), A) == pytest.approx(np.array([[1, 0, 0], [0, 1, 0]]))
    assert apply_affine(pts, A)[:, 2] == pytest.approx([2.0, 1.0])  # v untouched


def test_rotation_and_flip_known_answers():
    # 90 degrees counter-clockwise on screen about the box centre: right of centre -> above
    A = get_affine((10.0, 10.0), 20.0, 90.0, 20)
    assert apply_affine(np.array([[15.0, 10.0]]), A)[0] == pytest.approx([9.5, 4.5])
    F = get_affine((10.0, 10.0), 20.0, 0.0, 20, flip=True)
    N = get_affine((10.0, 10.0), 20.0, 0.0, 20)
    p = np.array([[3.0, 4.0]])
    assert apply_affine(p, F)[0, 0] == pytest.approx(19 - apply_affine(p, N)[0, 0])
    assert apply_affine(p, F)[0, 1] == pytest.approx(apply_affine(p, N)[0, 1])


@pytest.mark.parametrize("rot,flip", [(0.0, False), (90.0, False), (30.0, True)])
def test_warp_image_agrees_with_apply_affine(rot, flip):
    img = np.zeros((30, 40, 3), np.uint8)
    img[7, 11] = 255
    A = get_affine((20.0, 15.0), 40.0, rot, 80, flip=flip)
    out = warp_image(img, A, 80)
    expect = apply_affine(np.array([[11.0, 7.0]]), A)[0]
    w = out[..., 0].astype(float)
    ys, xs = np.mgrid[0:80, 0:80]
    centroid = np.array([(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()])
    assert centroid == pytest.approx(expect, abs=0.35)


def test_warp_fill_and_scale_affine():
    img = np.full((10, 20), 7, np.uint8)
    A = letterbox_affine(10, 20, 40)
    out = warp_image(img, A, 40, fill=1, resample=0)
    assert out.shape == (40, 40)
    assert (out[:5] == 1).all() and (out[-5:] == 1).all() and (out[15:25] == 7).all()
    assert scale_affine(A, 0.25) == pytest.approx(A / 4)
