"""2x3 affine warps between an original image and the square network input.

Convention: a point's coordinates are pixel indices (pixel ``i`` is centred on ``i``), as in
COCO's keypoints. An affine ``A`` maps original pixels to input pixels, ``q = A @ [x, y, 1]``;
:func:`warp_image` samples the image with the same ``A``, so warped keypoints land on the
warped image, and ``invert_affine(A)`` maps predictions back (section 3.3: every image is
resized to the network's square input, 512 x 512 in the paper).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image


def get_affine(
    center: tuple[float, float] | np.ndarray,
    scale: float,
    rot: float = 0.0,
    out_size: int = 512,
    flip: bool = False,
) -> np.ndarray:
    """The affine that maps a square box (side ``scale`` original pixels, centred on
    ``center``) onto an ``out_size`` x ``out_size`` image, the content turned ``rot`` degrees
    counter-clockwise on screen. ``flip`` then mirrors the result left-right."""
    s = out_size / float(scale)
    r = math.radians(rot)
    c, n = math.cos(r), math.sin(r)
    # y points down, so a counter-clockwise turn on screen is [[c, n], [-n, c]].
    lin = s * np.array([[c, n], [-n, c]], dtype=np.float64)
    mid = out_size / 2.0 - 0.5
    t = np.array([mid, mid]) - lin @ np.asarray(center, dtype=np.float64)
    A = np.concatenate([lin, t[:, None]], axis=1)
    if flip:
        A = compose(np.array([[-1.0, 0.0, out_size - 1.0], [0.0, 1.0, 0.0]]), A)
    return A


def letterbox_affine(height: int, width: int, out_size: int) -> np.ndarray:
    """Keep the aspect ratio, fit the longer side to ``out_size``, centre, pad the rest."""
    return get_affine(((width - 1) / 2.0, (height - 1) / 2.0), max(height, width), 0.0, out_size)


def compose(B: np.ndarray, A: np.ndarray) -> np.ndarray:
    """The affine ``B o A`` (first ``A``, then ``B``)."""
    return B[:, :2] @ A + np.concatenate([np.zeros((2, 2)), B[:, 2:]], axis=1)


def scale_affine(A: np.ndarray, factor: float) -> np.ndarray:
    """``A`` followed by multiplying coordinates by ``factor`` (e.g. 1/stride to heatmaps)."""
    return np.asarray(A, dtype=np.float64) * factor


def invert_affine(A: np.ndarray) -> np.ndarray:
    """The inverse 2x3 affine."""
    A = np.asarray(A, dtype=np.float64)
    lin = np.linalg.inv(A[:, :2])
    return np.concatenate([lin, -lin @ A[:, 2:]], axis=1)


def apply_affine(points: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Map ``points[..., 2]`` (x, y) through ``A``; extra trailing columns (e.g. v) are kept."""
    pts = np.asarray(points, dtype=np.float64)
    out = pts.copy()
    xy = pts[..., :2]
    out[..., :2] = xy @ np.asarray(A)[:, :2].T + np.asarray(A)[:, 2]
    return out


def warp_image(
    img: np.ndarray,
    A: np.ndarray,
    out_size: int | tuple[int, int],
    fill: int | tuple[int, ...] = 0,
    resample: int = Image.Resampling.BILINEAR,
) -> np.ndarray:
    """Warp an HxW(xC) uint8 array with ``A`` into ``out_size`` (int or (w, h)).

    Pillow samples output pixel ``(x, y)`` at ``M(x + .5, y + .5) - .5``; we pass the inverse of
    ``A`` conjugated by that half-pixel shift so both use the pixel-index convention.
    """
    w, h = (out_size, out_size) if isinstance(out_size, int) else out_size
    inv = invert_affine(A)
    shift = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]])
    unshift = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5]])
    M = compose(shift, compose(inv, unshift))
    pil = Image.fromarray(np.ascontiguousarray(img))
    out = pil.transform(
        (w, h), Image.Transform.AFFINE, data=tuple(M.ravel()), resample=resample, fillcolor=fill
    )
    return np.asarray(out)
