"""AE at test time: letterbox, forward (optionally flipped and at several scales), group, map back.

As in pose-ae-train's ``test.py`` (``multiperson``), the maps of the last stack are used: the
heatmaps of every pass (flipped and unflipped, every scale) are averaged on the grid of the first
scale and clipped at 1; the tags of the passes at scales within 0.5 of 1 are concatenated, so the
tag dimension doubles with ``flip``. The grouped people (heatmap pixels) go back to original
image pixels through ``heatmap * stride`` and the inverse letterbox affine.

Two details differ from pose-ae-train for exactness on this repository's pixel-index
convention: the flipped pass mirrors the input about ``x = (S - stride) / 2`` so that its
mirrored heatmap lands exactly on the unflipped grid, and the maps of other scales are resampled
through their exact affine relation (bilinear) instead of an image resize.

RMPP at several scales (the paper's "Ours multi scale" rows, end of section 3.3) reuses these
maps: :func:`refine_missing_joints` fills the joints the decoder drops with AE's single-person
refinement on the maps averaged over every pass (see there for the reading of the paper).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rnnpose.config import Profile
from rnnpose.data.transforms import (
    apply_affine,
    compose,
    invert_affine,
    letterbox_affine,
    scale_affine,
    warp_image,
)
from rnnpose.grouping import group, refine_people
from rnnpose.models.hourglass import rmpp_features, tags_per_joint
from rnnpose.skeleton import FLIP_INDEX, NUM_JOINTS


@dataclass
class AEMaps:
    """The AE network's maps for one image, on the heatmap grid of the first scale."""

    heatmaps: np.ndarray  # [17, M, M] averaged over passes, clipped at 1
    tags: np.ndarray  # [17, M, M, L] concatenated over passes
    features: np.ndarray  # [nstack*f, M, M] of the unflipped first-scale pass (RMPP's input)
    to_heatmap: np.ndarray  # 2x3 affine: original pixels -> heatmap pixels
    stride: int

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """Heatmap-pixel points [..., >=2] -> original image pixels (extra columns kept)."""
        return apply_affine(points, invert_affine(self.to_heatmap))


def input_size_for(profile: Profile, scale: float) -> int:
    """Network input side at ``scale``, rounded up to what the hourglass accepts (AE: 64)."""
    unit = profile.stride * 2**profile.hg_depth
    return max(unit, int(math.ceil(scale * profile.input_size / unit)) * unit)


def _grid_affine(A_ref: np.ndarray, A: np.ndarray, stride: int) -> np.ndarray:
    """Affine from the reference heatmap grid to another pass's heatmap grid."""
    ref_heatmap_to_original = invert_affine(scale_affine(A_ref, 1.0 / stride))
    return compose(scale_affine(A, 1.0 / stride), ref_heatmap_to_original)


def _resample(maps: torch.Tensor, T: np.ndarray, size: int) -> torch.Tensor:
    """Bilinear sample of ``maps`` [C,h,w] at ``T @ (x, y, 1)`` for every pixel of a size^2 grid."""
    c, h, w = maps.shape
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    src = apply_affine(np.stack([xs, ys], axis=-1), T)
    gx = 2 * src[..., 0] / max(w - 1, 1) - 1
    gy = 2 * src[..., 1] / max(h - 1, 1) - 1
    grid = torch.from_numpy(np.stack([gx, gy], axis=-1)).to(maps)[None]
    out = F.grid_sample(
        maps[None], grid, mode="bilinear", padding_mode="border", align_corners=True
    )
    return out[0]


@torch.no_grad()
def ae_maps(
    model: torch.nn.Module,
    image: np.ndarray,
    profile: Profile,
    *,
    flip: bool = False,
    scales: Sequence[float] = (1.0,),
    device: str | torch.device = "cpu",
) -> AEMaps:
    """Run the AE network on one HxWx3 uint8 image; puts ``model`` in eval mode."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got {image.dtype} {image.shape}")
    if not scales:
        raise ValueError("scales must not be empty")
    model.eval()
    h, w = image.shape[:2]
    stride = profile.stride
    tag_dim = profile.tag_dim
    heat_sum: torch.Tensor | None = None
    tag_list: list[torch.Tensor] = []
    features = None
    A_ref = None
    size_ref = 0
    tag_scales = [s for s in scales if abs(s - 1) < 0.5] or list(scales)
    n_passes = 0
    for k, s in enumerate(scales):
        S = input_size_for(profile, s)
        A = letterbox_affine(h, w, S)
        if k == 0:
            A_ref, size_ref = A, S // stride
        views = [(A, False)]
        if flip:  # mirror about x = (S - stride)/2: heatmap column i <-> M-1-i exactly
            views.append((compose(np.array([[-1.0, 0, S - stride], [0, 1, 0]]), A), True))
        batch = np.stack([warp_image(image, Av, S) for Av, _ in views])
        x = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float() / 255
        out = model(x)
        hm = out.heatmaps[:, -1].float()  # last stack, as AE
        tg = tags_per_joint(out.tags[:, -1], tag_dim).float()  # [V,17,L,m,m]
        if k == 0:
            features = rmpp_features(out, profile.rmpp_input)[0].float().cpu().numpy()
        if flip:
            idx = torch.tensor(FLIP_INDEX, device=hm.device)
            hm = torch.cat([hm[:1], hm[1:, idx].flip(-1)])
            tg = torch.cat([tg[:1], tg[1:, idx].flip(-1)])
        T = _grid_affine(A_ref, A, stride)
        for v in range(len(views)):
            hv = hm[v] if k == 0 else _resample(hm[v], T, size_ref)
            heat_sum = hv if heat_sum is None else heat_sum + hv
            n_passes += 1
            if s in tag_scales:
                m = tg.shape[-1]
                tv = tg[v].reshape(NUM_JOINTS * tag_dim, m, m)
                tv = tv if k == 0 else _resample(tv, T, size_ref)
                tag_list.append(tv.reshape(NUM_JOINTS, tag_dim, size_ref, size_ref))
    heat = torch.clamp(heat_sum / n_passes, max=1.0)
    tags = torch.cat(tag_list, dim=1).permute(0, 2, 3, 1)  # [17, M, M, L_total]
    return AEMaps(
        heatmaps=heat.cpu().numpy(),
        tags=tags.cpu().numpy(),
        features=features,
        to_heatmap=scale_affine(A_ref, 1.0 / stride),
        stride=stride,
    )


def people_to_results(people: np.ndarray, scores: np.ndarray, maps: AEMaps) -> list[dict[str, Any]]:
    """Grouped people (heatmap pixels) -> ``[{"keypoints": [17,3] original px, "score"}]``.

    Missing joints are put at the mean of the person's found joints with score 0 (AE's
    ``genDtByPred`` places them there too, so that COCO's OKS sees a nearby guess).
    """
    results = []
    for person, score in zip(people, scores, strict=True):
        found = person[:, 2] > 0
        if not found.any():
            continue
        kp = np.zeros((NUM_JOINTS, 3), dtype=np.float64)
        kp[:, :2] = maps.to_original(person[:, :2].astype(np.float64))
        kp[:, 2] = person[:, 2]
        kp[~found, :2] = kp[found, :2].mean(axis=0)
        kp[~found, 2] = 0.0
        results.append({"keypoints": kp, "score": float(score)})
    return results


def predict_ae(
    model: torch.nn.Module,
    image: np.ndarray,
    profile: Profile,
    flip: bool = False,
    scales: Sequence[float] = (1.0,),
    device: str | torch.device = "cpu",
    **group_kw: Any,
) -> list[dict[str, Any]]:
    """People in one image by AE's pipeline: maps (:func:`ae_maps`), grouping
    (:func:`rnnpose.grouping.group`, keywords passed through), then original pixels."""
    maps = ae_maps(model, image, profile, flip=flip, scales=scales, device=device)
    group_kw.setdefault("max_people", profile.max_people)
    people, scores = group(maps.heatmaps, maps.tags, **group_kw)
    return people_to_results(people, scores, maps)


def refine_missing_joints(keypoints: np.ndarray, maps: AEMaps) -> np.ndarray:
    """RMPP's multi-scale evaluation (end of section 3.3): fill each decoded person's missing
    joints by AE's single-person refinement on the AE maps averaged over every pass.

    ``keypoints`` [Z, 17, 3]: the decoder's people (x, y, score) in heatmap pixels of ``maps``
    (the scale-1 grid), score 0 where the joint's maximum fell below tau. A person's tag is
    read off ``maps.tags`` at its found joints (rounded to the pixel); each missing joint goes
    to the argmax of ``heatmap - round(||tag - person's mean tag||_2)``
    (:func:`rnnpose.grouping.refine_people`, pose-ae-train's ``refine``), a quarter pixel
    toward the higher neighbour, with the averaged heatmap's value there as its score (left
    missing where that value is 0). Found joints are returned unchanged; so are people with
    no found joint. Returns a float32 copy [Z, 17, 3].

    Reading of the paper: "we feed-forward the image using multiple scales in AE and average
    the output confidence maps for the single-person refinement". The decoder itself runs on
    the features it was trained on (scale 1, unflipped); only the refinement sees the other
    scales (and the flip).
    """
    kp = np.array(keypoints, dtype=np.float32, copy=True)
    if kp.ndim != 3 or kp.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"keypoints must be [Z,{NUM_JOINTS},3], got {kp.shape}")
    if len(kp) == 0:
        return kp
    _, h, w, dim = maps.tags.shape
    found = kp[..., 2] > 0
    x = np.clip(np.rint(kp[..., 0]).astype(np.int64), 0, w - 1)
    y = np.clip(np.rint(kp[..., 1]).astype(np.int64), 0, h - 1)
    people = np.zeros((*kp.shape[:2], 3 + dim), dtype=np.float32)
    people[..., :3] = kp
    people[..., 3:] = np.where(found[..., None], maps.tags[np.arange(NUM_JOINTS), y, x], 0.0)
    return refine_people(people, maps.heatmaps, maps.tags)[..., :3]
