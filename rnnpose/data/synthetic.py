"""Procedural crowded-people scenes with COCO-format keypoints (the synthetic benchmark).

Each person is an articulated body over the 17 COCO joints: a small 3-D stick figure
(left = +x in the body frame, y down, z forward) with plausible proportions and joint angles
for standing, walking, arms raised, sitting, crouching and lying, turned to face the camera,
away from it or sideways, rolled in the image plane and scaled. It is rendered with Pillow as
filled limbs, a torso and a head, in per-person colours and textures (people sometimes share
them). People are drawn far to near; a joint under a nearer person has v=1, a face joint
turned away from the camera has v=1, a joint outside the image has v=0 and (0, 0), every other
joint v=2 (COCO's flags). Backgrounds carry gradients, noise, shapes and person-like
distractor limbs and blobs.

Presets mirror the paper's two test sets (section 4): ``sparse`` (COCO-like, 1-6 people mostly
apart), ``occluded`` (OCHuman-like: every image has a pair of people with bbox IoU >= 0.5,
mean IoU of such pairs about two thirds) and ``train`` (a mixture of both regimes plus crowds
of up to 12 people). Image ``i`` of a dataset depends only on ``(seed, i)``, so the same seed
gives byte-identical files.

Annotations: ``bbox`` is the box of the person's whole rendered silhouette (clipped to the
image, occluded parts included, like OCHuman's boxes) and ``area`` is that box's area, as in
OCHuman's files. (The stick figures' silhouettes cover a smaller share of their box than a real
person's mask does, so the silhouette area would make COCO's OKS, whose scale is the area,
far stricter than on real people.) ``segmentation`` is the RLE of the visible part. Within an
image, annotations are listed far to near (drawing order). A person whose joints all fall
outside the image keeps an annotation with ``num_keypoints`` 0, so the loader's ignore mask
covers it.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from rnnpose import cli_types
from rnnpose.io import DataError, PathLike, atomic_write_json, check_output_dir, read_json
from rnnpose.skeleton import NUM_JOINTS, person_category

#: Bump when the generator changes what it draws; part of every cache key.
GENERATOR_VERSION = 2
PRESETS: tuple[str, ...] = ("train", "sparse", "occluded")

# Body proportions, as fractions of the standing height H (ankle to crown).
TORSO, SHOULDER, HIP = 0.30, 0.105, 0.065
UPPER_ARM, FOREARM, THIGH, SHIN = 0.165, 0.145, 0.235, 0.235
NECK, HEAD_R = 0.045, 0.065
# Part widths (fractions of H).
W_TORSO, W_UPPER_ARM, W_FOREARM, W_THIGH, W_SHIN, W_NECK = 0.15, 0.06, 0.05, 0.085, 0.065, 0.05
# Part labels in the per-person label image.
SKIN, SHIRT, PANTS, SHOES, HAIR = 1, 2, 3, 4, 5

POSE_KINDS = ("standing", "walking", "arms_raised", "sitting", "crouching", "lying")
POSE_PROBS = (0.33, 0.2, 0.15, 0.11, 0.11, 0.10)


# ----------------------------------------------------------------------------- bodies


def _limb_dir(alpha: float, beta: float, side: float) -> np.ndarray:
    """Unit vector of a limb: ``alpha`` degrees away from the body sideways, ``beta``
    degrees forward, measured from straight down; ``side`` +1 left limb, -1 right."""
    a, b = math.radians(alpha), math.radians(beta)
    return np.array([side * math.sin(a), math.cos(a) * math.cos(b), math.cos(a) * math.sin(b)])


def _pose_angles(rng: np.random.Generator, kind: str) -> dict[str, Any]:
    """Joint angles (degrees) of one pose kind; arms/legs as [left, right]."""
    u = rng.uniform
    if kind == "walking":
        s = u(15, 35)
        k = u(0.5, 1.0)
        left_fwd = rng.random() < 0.5
        sg = 1.0 if left_fwd else -1.0
        return dict(
            pitch=u(0, 10), roll=u(-6, 6),
            arm_a=[u(5, 15), u(5, 15)], arm_b=[-sg * s * k, sg * s * k],
            elbow=[u(10, 50), u(10, 50)], elbow_side=[False, False],
            leg_a=[u(0, 6), u(0, 6)], leg_b=[sg * s, -sg * s],
            knee=[u(0, 10), u(10, 35)] if left_fwd else [u(10, 35), u(0, 10)],
        )  # fmt: skip
    if kind == "sitting":
        return dict(
            pitch=u(-10, 15), roll=u(-6, 6),
            arm_a=[u(5, 25), u(5, 25)], arm_b=[u(10, 60), u(10, 60)],
            elbow=[u(20, 90), u(20, 90)], elbow_side=[False, False],
            leg_a=[u(5, 25), u(5, 25)], leg_b=[u(65, 100), u(65, 100)],
            knee=[u(60, 110), u(60, 110)],
        )  # fmt: skip
    if kind == "crouching":
        return dict(
            pitch=u(20, 50), roll=u(-8, 8),
            arm_a=[u(5, 30), u(5, 30)], arm_b=[u(20, 90), u(20, 90)],
            elbow=[u(20, 100), u(20, 100)], elbow_side=[False, False],
            leg_a=[u(10, 30), u(10, 30)], leg_b=[u(70, 120), u(70, 120)],
            knee=[u(100, 150), u(100, 150)],
        )  # fmt: skip
    # standing, arms_raised and lying start from a standing pose
    ang = dict(
        pitch=u(-5, 8), roll=u(-8, 8),
        arm_a=[u(5, 30), u(5, 30)], arm_b=[u(-20, 20), u(-20, 20)],
        elbow=[u(0, 40), u(0, 40)], elbow_side=[False, False],
        leg_a=[u(0, 12), u(0, 12)], leg_b=[u(-8, 8), u(-8, 8)], knee=[u(0, 12), u(0, 12)],
    )  # fmt: skip
    if kind == "arms_raised":
        raised = [rng.random() < 0.8, rng.random() < 0.8]
        if not any(raised):
            raised[int(rng.integers(2))] = True
        for i in range(2):
            if raised[i]:
                ang["arm_a"][i] = u(95, 170)
                ang["arm_b"][i] = u(-20, 30)
                ang["elbow"][i] = u(0, 70)
                ang["elbow_side"][i] = True
    if kind == "lying":
        ang["arm_a"] = [u(5, 80), u(5, 80)]
        ang["leg_a"] = [u(0, 25), u(0, 25)]
        ang["knee"] = [u(0, 60), u(0, 60)]
        ang["roll"] = float(rng.choice([-1.0, 1.0])) * u(70, 110)
    return ang


@dataclass
class Body:
    """One rendered person, relative to its own origin (the pelvis) in image pixels."""

    joints: np.ndarray  # [17,2]
    face_away: np.ndarray  # [17] bool: a face joint turned away from the camera
    parts: list[tuple]  # ("line", p0, p1, width, label) | ("poly", pts, label), far to near
    lo: np.ndarray  # bounding box min (x, y) of the silhouette
    hi: np.ndarray  # bounding box max (x, y)
    yaw: float = 0.0  # degrees; 0 faces the camera, 180 shows the back
    palette: dict[int, Any] = field(default_factory=dict)
    offset: np.ndarray = field(default_factory=lambda: np.zeros(2))

    def box(self) -> np.ndarray:
        """[x0, y0, x1, y1] in the image."""
        return np.concatenate([self.lo + self.offset, self.hi + self.offset])


def _yaw(rng: np.random.Generator) -> float:
    r = rng.random()
    if r < 0.55:
        return rng.uniform(-50, 50)  # facing the camera
    if r < 0.8:
        return 180 + rng.uniform(-50, 50)  # back to the camera
    return float(rng.choice([-90.0, 90.0])) + rng.uniform(-25, 25)  # side view


def make_body(rng: np.random.Generator, height: float, kind: str | None = None) -> Body:
    """An articulated person of standing height ``height`` pixels (see module docstring)."""
    if kind is None:
        kind = POSE_KINDS[int(rng.choice(len(POSE_KINDS), p=POSE_PROBS))]
    ang = _pose_angles(rng, kind)
    yaw_deg = _yaw(rng)
    yaw = math.radians(yaw_deg)
    head_yaw = math.radians(rng.uniform(-40, 40))
    # Per-person proportions vary a little.
    prop = rng.uniform(0.92, 1.08, size=6)

    p = math.radians(ang["pitch"])  # forward lean of the torso
    up = np.array([0.0, -math.cos(p), math.sin(p)])
    X = np.array([1.0, 0.0, 0.0])
    J = np.zeros((NUM_JOINTS, 3))
    sh_mid = up * TORSO * prop[0]
    J[5], J[6] = sh_mid + X * SHOULDER * prop[1], sh_mid - X * SHOULDER * prop[1]
    J[11], J[12] = X * HIP * prop[2], -X * HIP * prop[2]
    for i, side in enumerate((1.0, -1.0)):
        a, b, e = ang["arm_a"][i], ang["arm_b"][i], ang["elbow"][i]
        d_up = _limb_dir(a, b, side)
        d_lo = _limb_dir(min(a + e, 178.0), b, side) if ang["elbow_side"][i] else _limb_dir(
            a, b + e, side
        )
        J[7 + i] = J[5 + i] + d_up * UPPER_ARM * prop[3]
        J[9 + i] = J[7 + i] + d_lo * FOREARM * prop[3]
        a, b, k = ang["leg_a"][i], ang["leg_b"][i], ang["knee"][i]
        J[13 + i] = J[11 + i] + _limb_dir(a, b, side) * THIGH * prop[4]
        J[15 + i] = J[13 + i] + _limb_dir(a * 0.5, b - k, side) * SHIN * prop[4]
    R = HEAD_R * prop[5]
    head = sh_mid + up * (NECK + R * 1.05)
    F = np.array([math.sin(head_yaw), 0.0, math.cos(head_yaw)])
    L = np.array([math.cos(head_yaw), 0.0, -math.sin(head_yaw)])
    J[0] = head + F * 0.85 * R - up * 0.1 * R
    J[1], J[2] = (head + F * 0.7 * R + s * L * 0.38 * R + up * 0.22 * R for s in (1, -1))
    J[3], J[4] = (head + s * L * 0.95 * R - F * 0.1 * R + up * 0.12 * R for s in (1, -1))
    hands = [J[9 + i] + (J[9 + i] - J[7 + i]) * 0.25 for i in range(2)]
    feet = [J[15 + i] + np.array([0.0, 0.015, 0.07]) for i in range(2)]

    # View: yaw about the vertical axis, orthographic projection, roll in the image plane.
    cy, sy = math.cos(yaw), math.sin(yaw)
    roll = math.radians(ang["roll"])
    cr, sr = math.cos(roll), math.sin(roll)

    def view(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        P = np.atleast_2d(P)
        x = P[:, 0] * cy + P[:, 2] * sy
        z = -P[:, 0] * sy + P[:, 2] * cy
        xy = np.stack([x * cr - P[:, 1] * sr, x * sr + P[:, 1] * cr], axis=1) * height
        return xy, z

    jxy, jz = view(J)
    hz = view(head)[1][0]
    face_away = np.zeros(NUM_JOINTS, dtype=bool)
    face_away[:5] = jz[:5] < hz - 0.3 * R

    fore_label = SHIRT if rng.random() < 0.5 else SKIN  # long or short sleeves
    shin_label = SKIN if rng.random() < 0.25 else PANTS  # shorts
    pieces: list[tuple[float, tuple]] = []  # (depth, part)

    def line(a3: np.ndarray, b3: np.ndarray, width: float, label: int) -> None:
        (a2, b2), z = view(np.stack([a3, b3]))
        pieces.append((float(z.mean()), ("line", a2, b2, width * height, label)))

    hip_mid = (J[11] + J[12]) / 2
    line(sh_mid, hip_mid, W_TORSO, SHIRT)
    torso_xy, _ = view(np.stack([J[5], J[6], J[12], J[11]]))
    pieces.append((0.0, ("poly", torso_xy, SHIRT)))
    line(hip_mid, hip_mid, W_THIGH * 1.6, PANTS)
    line(sh_mid, head, W_NECK, SKIN)
    for i in range(2):
        line(J[5 + i], J[7 + i], W_UPPER_ARM, SHIRT)
        line(J[7 + i], J[9 + i], W_FOREARM, fore_label)
        line(J[9 + i], hands[i], W_FOREARM * 1.1, SKIN)
        line(J[11 + i], J[13 + i], W_THIGH, PANTS)
        line(J[13 + i], J[15 + i], W_SHIN, shin_label)
        line(J[15 + i], feet[i], W_SHIN * 0.8, SHOES)
    # Head: an ellipse (polygon, so it turns with the body), hair on top or all over.
    t = np.linspace(0, 2 * np.pi, 18, endpoint=False)
    hxy = view(head)[0][0]
    e = np.stack([0.85 * R * np.cos(t), R * np.sin(t)], axis=1) * height
    rot = np.array([[cr, -sr], [sr, cr]])
    head_poly = hxy + e @ rot.T
    away = math.cos(yaw + head_yaw) < -0.2
    pieces.append((hz + 0.01, ("poly", head_poly, HAIR if away else SKIN)))
    if not away:
        hair_c = hxy + (np.array([0.0, -0.45 * R]) * height) @ rot.T
        hair = hair_c + (np.stack([0.9 * R * np.cos(t), 0.55 * R * np.sin(t)], axis=1) * height)
        hair = hair_c + (hair - hair_c) @ rot.T
        keep = np.sin(t) < 0.3  # the upper part of the ellipse
        pieces.append((hz + 0.02, ("poly", hair[keep], HAIR)))

    pieces.sort(key=lambda dp: dp[0])
    parts = [pc for _, pc in pieces]
    lo, hi = _parts_extent(parts)
    return Body(jxy, face_away, parts, lo, hi, yaw=yaw_deg)


def _parts_extent(parts: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
    los, his = [], []
    for pt in parts:
        if pt[0] == "line":
            r = pt[3] / 2
            pts = np.stack([pt[1], pt[2]])
            los.append(pts.min(0) - r)
            his.append(pts.max(0) + r)
        else:
            los.append(pt[1].min(0))
            his.append(pt[1].max(0))
    return np.min(los, axis=0), np.max(his, axis=0)


# ----------------------------------------------------------------------------- colours


def _colour(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> np.ndarray:
    return rng.integers(lo, hi, size=3).astype(np.float32)


SKIN_TONES = np.array(
    [[255, 219, 172], [241, 194, 125], [224, 172, 105], [198, 134, 66], [141, 85, 36],
     [96, 56, 30], [255, 205, 180]], dtype=np.float32,
)  # fmt: skip


def make_palette(rng: np.random.Generator) -> dict[str, Any]:
    """Colours and textures of one person's skin, shirt, trousers, shoes and hair."""
    tone = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))] * rng.uniform(0.85, 1.1)

    def cloth() -> dict[str, Any]:
        kind = ("solid", "solid", "stripes", "checks", "gradient")[int(rng.integers(5))]
        return {
            "kind": kind,
            "c1": _colour(rng),
            "c2": _colour(rng),
            "period": rng.uniform(2.0, 6.0),
            "angle": rng.uniform(0, np.pi),
        }

    return {
        SKIN: {"kind": "solid", "c1": np.clip(tone, 0, 255), "c2": None, "period": 0, "angle": 0},
        SHIRT: cloth(),
        PANTS: cloth(),
        SHOES: {"kind": "solid", "c1": _colour(rng, 0, 90), "c2": None, "period": 0, "angle": 0},
        HAIR: {"kind": "solid", "c1": _colour(rng, 0, 120), "c2": None, "period": 0, "angle": 0},
    }


def _texture(spec: dict[str, Any], yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    c1 = spec["c1"]
    if spec["kind"] == "solid":
        return np.broadcast_to(c1, yy.shape + (3,))
    t = xx * math.cos(spec["angle"]) + yy * math.sin(spec["angle"])
    if spec["kind"] == "stripes":
        sel = (t / spec["period"]) % 1.0 < 0.5
    elif spec["kind"] == "checks":
        p = spec["period"]
        sel = ((np.floor(xx / p) + np.floor(yy / p)) % 2) == 0
    else:  # gradient
        w = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        return c1 * (1 - w[..., None]) + spec["c2"] * w[..., None]
    return np.where(sel[..., None], c1, spec["c2"])


# ----------------------------------------------------------------------------- drawing


def _draw_parts(draw: ImageDraw.ImageDraw, parts: list[tuple], shift: np.ndarray) -> None:
    for pt in parts:
        if pt[0] == "line":
            a, b = pt[1] - shift, pt[2] - shift
            w = max(pt[3], 1.0)
            r = w / 2
            draw.line([tuple(a), tuple(b)], fill=pt[4], width=max(int(round(w)), 1))
            for c in (a, b):
                draw.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=pt[4])
        else:
            pts = pt[1] - shift
            draw.polygon([tuple(x) for x in pts], fill=pt[2])


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """Gradient, low-frequency noise, shapes and person-like distractors."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    a = rng.uniform(0, 2 * np.pi)
    t = xx * math.cos(a) + yy * math.sin(a)
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    c1, c2 = _colour(rng), _colour(rng)
    img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    k = int(rng.integers(3, 7))
    low = rng.normal(0, rng.uniform(10, 40), size=(k, k, 3)).astype(np.float32)
    low_img = [
        np.asarray(Image.fromarray(low[..., c]).resize((size, size), Image.Resampling.BILINEAR))
        for c in range(3)
    ]
    img = img + np.stack(low_img, axis=-1)
    if rng.random() < 0.5:  # a floor: the lower part in another colour
        h = int(size * rng.uniform(0.4, 0.8))
        img[h:] = img[h:] * 0.4 + _colour(rng) * 0.6
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for _ in range(int(rng.integers(2, 9))):
        x0, y0 = rng.uniform(-0.1, 1.0, size=2) * size
        w, h = rng.uniform(0.05, 0.5, size=2) * size
        col = tuple(int(c) for c in _colour(rng))
        shape = int(rng.integers(3))
        if shape == 0:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=col)
        elif shape == 1:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=col)
        else:
            pts = rng.uniform(0, 1, size=(int(rng.integers(3, 6)), 2)) * [w, h] + [x0, y0]
            draw.polygon([tuple(p) for p in pts], fill=col)
    # Person-like distractors: limb-like thick segments and head-like blobs.
    for _ in range(int(rng.integers(0, 4))):
        col = tuple(int(c) for c in (SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]
                                     if rng.random() < 0.5 else _colour(rng)))  # fmt: skip
        c = rng.uniform(0, 1, size=2) * size
        if rng.random() < 0.6:
            n = int(rng.integers(1, 3))
            w = rng.uniform(0.02, 0.07) * size
            pts = [c]
            for _ in range(n):
                ang = rng.uniform(0, 2 * np.pi)
                ln = rng.uniform(0.08, 0.2) * size
                pts.append(pts[-1] + ln * np.array([math.cos(ang), math.sin(ang)]))
            draw.line([tuple(p) for p in pts], fill=col, width=max(int(w), 1), joint="curve")
        else:
            r = rng.uniform(0.02, 0.06) * size
            draw.ellipse([c[0] - r, c[1] - 1.2 * r, c[0] + r, c[1] + 1.2 * r], fill=col)
    return pil


# ----------------------------------------------------------------------------- layouts


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two [x0, y0, x1, y1] boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)


def _clip_box(b: np.ndarray, size: int) -> np.ndarray:
    return np.clip(b, 0, size - 1)


def _place_free(
    rng: np.random.Generator, body: Body, placed: list[Body], size: int, max_iou: float,
    margin: float = 0.1, tries: int = 25,
) -> None:  # fmt: skip
    """Put ``body`` somewhere in the image, preferring IoU <= ``max_iou`` with the others."""
    mid = (body.lo + body.hi) / 2
    best, best_iou = None, np.inf
    for _ in range(tries):
        c = rng.uniform(margin, 1 - margin, size=2) * size
        body.offset = c - mid
        box = _clip_box(body.box(), size)
        worst = max((box_iou(box, _clip_box(o.box(), size)) for o in placed), default=0.0)
        if worst <= max_iou:
            return
        if worst < best_iou:
            best, best_iou = body.offset.copy(), worst
    body.offset = best


def _place_inside(rng: np.random.Generator, body: Body, size: int) -> None:
    """Put ``body`` so that its whole box is inside the image where it fits."""
    ext = body.hi - body.lo
    lo = np.minimum(0.0, size - 1 - ext)
    hi = np.maximum(0.0, size - 1 - ext)
    corner = np.where(ext < size - 1, rng.uniform(lo, hi), (size - 1 - ext) / 2)
    body.offset = corner - body.lo


def _place_overlapping(
    rng: np.random.Generator, body: Body, other: Body, size: int, target: float
) -> float:
    """Offset ``body`` from ``other`` so that their (clipped) boxes have IoU ~ ``target``.

    The direction is random, mostly sideways. Returns the IoU reached (below ``target``
    when even a zero offset does not reach it)."""
    ob = _clip_box(other.box(), size)
    centre = (ob[:2] + ob[2:]) / 2
    mid = (body.lo + body.hi) / 2
    ang = rng.uniform(-0.7, 0.7) + (np.pi if rng.random() < 0.5 else 0.0)
    d = np.array([math.cos(ang), math.sin(ang) * 0.6])

    def iou_at(s: float) -> float:
        body.offset = centre + d * s - mid
        return box_iou(ob, _clip_box(body.box(), size))

    if iou_at(0.0) < target:
        return iou_at(0.0)
    lo, hi = 0.0, float(size)
    for _ in range(14):  # IoU falls as the offset grows along d
        m = (lo + hi) / 2
        if iou_at(m) >= target:
            lo = m
        else:
            hi = m
    return iou_at(lo)


def _overlapping_partner(
    rng: np.random.Generator, other: Body, height: float, size: int, target: float
) -> Body:
    """A new body overlapping ``other`` with box IoU about ``target`` (best of a few)."""
    best, best_iou = None, -1.0
    for _ in range(8):
        body = make_body(rng, height * rng.uniform(0.85, 1.15))
        got = _place_overlapping(rng, body, other, size, target)
        if got >= target - 0.02:
            return body
        if got > best_iou:
            best, best_iou = body, got
    return best


def _layout(rng: np.random.Generator, preset: str, size: int) -> list[Body]:
    """Bodies with image offsets, for one image of ``preset``."""
    if preset == "train":
        r = rng.random()
        regime = "sparse" if r < 0.35 else ("occluded" if r < 0.7 else "crowd")
    else:
        regime = preset
    bodies: list[Body] = []
    if regime == "sparse":
        n = int(rng.choice(np.arange(1, 7), p=[0.28, 0.24, 0.18, 0.13, 0.09, 0.08]))
        for _ in range(n):
            body = make_body(rng, size * rng.uniform(0.35, 0.85) * n**-0.3)
            _place_free(rng, body, bodies, size, max_iou=0.1 if rng.random() < 0.85 else 0.3)
            bodies.append(body)
    elif regime == "occluded":
        n = int(rng.choice(np.arange(2, 7), p=[0.35, 0.3, 0.18, 0.1, 0.07]))
        pairs = 2 if n >= 4 and rng.random() < 0.5 else 1
        h = size * rng.uniform(0.45, 0.8) * n**-0.25
        for _ in range(pairs):
            first = make_body(rng, h * rng.uniform(0.9, 1.1))
            if bodies:
                _place_free(rng, first, bodies, size, max_iou=0.1, margin=0.25)
            else:
                _place_inside(rng, first, size)
            second = _overlapping_partner(rng, first, h, size, rng.uniform(0.5, 0.85))
            bodies += [first, second]
        for _ in range(n - 2 * pairs):
            body = make_body(rng, h * rng.uniform(0.7, 1.1))
            _place_free(rng, body, bodies, size, max_iou=0.3)
            bodies.append(body)
    else:  # crowd
        n = int(rng.integers(6, 13))
        h = size * rng.uniform(0.25, 0.5)
        for _ in range(n):
            if bodies and rng.random() < 0.3:
                other = bodies[int(rng.integers(len(bodies)))]
                body = _overlapping_partner(rng, other, h, size, rng.uniform(0.3, 0.85))
            else:
                body = make_body(rng, h * rng.uniform(0.8, 1.2))
                _place_free(rng, body, bodies, size, max_iou=1.0, margin=0.05, tries=1)
            bodies.append(body)
    # Colours: mostly new, sometimes shared with someone else in the image.
    for i, body in enumerate(bodies):
        share = i > 0 and rng.random() < 0.15
        body.palette = bodies[int(rng.integers(i))].palette if share else make_palette(rng)
    return bodies


# ----------------------------------------------------------------------------- scenes


def render_scene(
    rng: np.random.Generator, preset: str, size: int
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One image (size x size x 3 uint8) and its people's annotations (no ids yet).

    ``occluded`` scenes are drawn again (with the same generator, so still deterministic)
    until a pair of rendered boxes has IoU >= 0.5.
    """
    for _ in range(50):
        image, anns = _render_once(rng, preset, size)
        if preset != "occluded" or _max_pair_iou(anns) >= 0.5:
            break
    return image, anns


def _max_pair_iou(anns: list[dict[str, Any]]) -> float:
    if len(anns) < 2:
        return 0.0
    boxes = [a["bbox"] for a in anns]
    iou = mask_utils.iou(boxes, boxes, [0] * len(boxes))
    return float(iou[np.triu_indices(len(boxes), k=1)].max())


def _render_once(
    rng: np.random.Generator, preset: str, size: int
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    bodies = _layout(rng, preset, size)
    # Depth: bigger people tend to be nearer; draw far to near.
    depth = [rng.random() + 0.5 * (b.hi[1] - b.lo[1]) / size for b in bodies]
    order = sorted(range(len(bodies)), key=lambda i: depth[i])
    bodies = [bodies[i] for i in order]
    canvas = np.asarray(_background(rng, size), dtype=np.float32).copy()
    owner = np.full((size, size), -1, dtype=np.int16)
    amodal = []
    for i, body in enumerate(bodies):
        box = body.box()
        x0, y0 = (max(int(math.floor(v)) - 1, 0) for v in box[:2])
        x1, y1 = (min(int(math.ceil(v)) + 2, size) for v in box[2:])
        if x1 <= x0 or y1 <= y0:
            amodal.append((None, 0))
            continue
        lab_img = Image.new("L", (x1 - x0, y1 - y0), 0)
        _draw_parts(ImageDraw.Draw(lab_img), body.parts, np.array([x0, y0]) - body.offset)
        lab = np.asarray(lab_img)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        region = canvas[y0:y1, x0:x1]
        for label in np.unique(lab[lab > 0]):
            sel = lab == label
            region[sel] = _texture(body.palette[int(label)], yy, xx)[sel]
        owner[y0:y1, x0:x1][lab > 0] = i
        ys, xs = np.nonzero(lab)
        if len(xs):
            amodal.append(((x0 + xs.min(), y0 + ys.min(), x0 + xs.max(), y0 + ys.max()), len(xs)))
        else:
            amodal.append((None, 0))
    noise = rng.normal(0, rng.uniform(2, 8), size=canvas.shape).astype(np.float32)
    image = np.clip(canvas + noise, 0, 255).astype(np.uint8)

    anns = []
    for i, body in enumerate(bodies):
        xy = body.joints + body.offset
        rx, ry = np.floor(xy[:, 0] + 0.5).astype(int), np.floor(xy[:, 1] + 0.5).astype(int)
        inside = (rx >= 0) & (rx < size) & (ry >= 0) & (ry < size)
        v = np.full(NUM_JOINTS, 2, dtype=int)
        v[inside & (owner[np.clip(ry, 0, size - 1), np.clip(rx, 0, size - 1)] > i)] = 1
        v[body.face_away] = 1
        v[~inside] = 0
        kp = np.concatenate([np.round(xy, 2), v[:, None]], axis=1)
        kp[~inside] = 0.0
        box, _silhouette_area = amodal[i]
        if box is None:
            continue  # entirely outside the image
        visible = np.asfortranarray((owner == i).astype(np.uint8))
        rle = mask_utils.encode(visible)
        rle["counts"] = rle["counts"].decode("ascii")
        anns.append(
            {
                "keypoints": [float(x) if k % 3 < 2 else int(x) for k, x in enumerate(kp.ravel())],
                "num_keypoints": int((v > 0).sum()),
                "bbox": [int(box[0]), int(box[1]), int(box[2] - box[0] + 1),
                         int(box[3] - box[1] + 1)],
                "area": int((box[2] - box[0] + 1) * (box[3] - box[1] + 1)),
                "iscrowd": 0,
                "category_id": 1,
                "segmentation": rle,
            }
        )  # fmt: skip
    return image, anns


# ----------------------------------------------------------------------------- datasets


def dataset_files(data_dir: PathLike) -> tuple[Path, Path]:
    """``(annotations.json, images/)`` of a generated dataset folder."""
    data_dir = Path(data_dir)
    return data_dir / "annotations.json", data_dir / "images"


def _write_dataset(
    preset: str, num: int, seed: int, size: int, out_dir: Path, quiet: bool
) -> None:
    from rnnpose.progress import progress

    images, annotations = [], []
    img_dir = out_dir / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    for index in progress(range(num), quiet=quiet, desc=f"synth {preset}", unit="img"):
        rng = np.random.default_rng([seed, index])
        image, anns = render_scene(rng, preset, size)
        name = f"{index:06d}.png"
        Image.fromarray(image).save(img_dir / name, compress_level=1)
        image_id = index + 1
        images.append({"id": image_id, "file_name": name, "height": size, "width": size})
        for ann in anns:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
    data = {
        "info": {
            "description": f"rnnpose synthetic people, preset {preset}",
            "preset": preset, "num": num, "seed": seed, "size": size,
            "generator_version": GENERATOR_VERSION,
        },
        "images": images,
        "annotations": annotations,
        "categories": [person_category()],
    }  # fmt: skip
    atomic_write_json(out_dir / "annotations.json", data, indent=None)


def generate(
    preset: str, num: int, seed: int, size: int, out_dir: PathLike, quiet: bool = False
) -> Path:
    """Write ``out_dir/images/*.png`` and ``out_dir/annotations.json``; return ``out_dir``.

    The folder is built beside ``out_dir`` and renamed into place at the end, so an
    interrupted run leaves nothing half-written. ``out_dir`` must not exist or be empty.
    """
    if preset not in PRESETS:
        raise DataError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if num < 1 or size < 16:
        raise DataError(f"need num >= 1 and size >= 16 (got num={num}, size={size})")
    out_dir = check_output_dir(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise DataError(f"{out_dir}: already exists and is not empty; choose another --out")
    check_output_dir(out_dir.parent)  # the dataset is built beside out_dir, then renamed
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        _write_dataset(preset, num, seed, size, tmp, quiet)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def dataset_name(preset: str, num: int, seed: int, size: int) -> str:
    return f"{preset}-n{num}-s{seed}-px{size}-v{GENERATOR_VERSION}"


def ensure_dataset(
    preset: str, num: int, seed: int, size: int, root: PathLike = "artifacts/data",
    quiet: bool = False,
) -> Path:  # fmt: skip
    """The cached dataset folder for these parameters, generating it if needed."""
    out = Path(root) / dataset_name(preset, num, seed, size)
    if (out / "annotations.json").is_file():
        return out
    try:
        return generate(preset, num, seed, size, out, quiet=quiet)
    except DataError:
        if (out / "annotations.json").is_file():  # another process finished it first
            return out
        raise
    except OSError:
        if (out / "annotations.json").is_file():
            return out
        raise


# ----------------------------------------------------------------------------- statistics


def dataset_statistics(ann_file: PathLike) -> dict[str, Any]:
    """Crowding statistics of a COCO keypoint file (for the book and the tests).

    ``people_per_image``: histogram {count: images}; ``frac_images_pair_iou_ge_0.5``: images with
    two people whose boxes have IoU >= 0.5; ``mean_iou_pairs_ge_0.5``: mean IoU over such pairs;
    ``mean_max_iou_ge_0.5``: OCHuman's statistic, the mean over people of their largest IoU
    with anyone else, among people where that is >= 0.5; ``occluded_joint_fraction``: v=1
    among labelled joints.
    """
    data = read_json(ann_file)
    by_image: dict[int, list[dict]] = {im["id"]: [] for im in data["images"]}
    for a in data["annotations"]:
        if not a.get("iscrowd", 0):
            by_image.setdefault(a["image_id"], []).append(a)
    hist = Counter(len(v) for v in by_image.values())
    pair_ious, max_ious, with_pair = [], [], 0
    v_all = np.array([a["keypoints"][2::3] for v in by_image.values() for a in v]).ravel()
    for anns in by_image.values():
        if len(anns) < 2:
            continue
        boxes = [a["bbox"] for a in anns]
        iou = mask_utils.iou(boxes, boxes, [0] * len(boxes))
        np.fill_diagonal(iou, 0.0)
        tri = iou[np.triu_indices(len(boxes), k=1)]
        pair_ious += tri[tri >= 0.5].tolist()
        mx = iou.max(axis=1)
        max_ious += mx[mx >= 0.5].tolist()
        with_pair += bool((tri >= 0.5).any())
    n_img = len(by_image)
    return {
        "n_images": n_img,
        "n_people": int(sum(k * c for k, c in hist.items())),
        "people_per_image": {int(k): int(hist[k]) for k in sorted(hist)},
        "mean_people_per_image": float(sum(k * c for k, c in hist.items()) / max(n_img, 1)),
        "frac_images_pair_iou_ge_0.5": with_pair / max(n_img, 1),
        "n_pairs_iou_ge_0.5": len(pair_ious),
        "mean_iou_pairs_ge_0.5": float(np.mean(pair_ious)) if pair_ious else 0.0,
        "mean_max_iou_ge_0.5": float(np.mean(max_ious)) if max_ious else 0.0,
        "occluded_joint_fraction": float((v_all == 1).sum() / max((v_all > 0).sum(), 1)),
        "outside_joint_fraction": float((v_all == 0).mean()) if v_all.size else 0.0,
    }


# ----------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=PRESETS, default="train")
    parser.add_argument("--num", type=cli_types.integer(1), default=100, help="number of images")
    parser.add_argument("--seed", type=cli_types.seed, default=0)
    parser.add_argument("--size", type=cli_types.integer(16), default=128,
                        help="image side in pixels")  # fmt: skip
    parser.add_argument("--out", type=cli_types.output_folder, required=True,
                        help="output folder (new or empty)")  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--stats", action="store_true", help="print crowding statistics")


def run(args: argparse.Namespace) -> int:
    out = generate(args.preset, args.num, args.seed, args.size, args.out, quiet=args.quiet)
    ann, _ = dataset_files(out)
    print(f"wrote {args.num} images and {ann}")
    if args.stats:
        for k, v in dataset_statistics(ann).items():
            print(f"{k}: {v}")
    return 0
